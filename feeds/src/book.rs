//! Level-2 order books rebuilt from Binance depth streams: a REST snapshot plus the
//! `depthUpdate` diffs of `<symbol>@depth[@100ms]`, with the update-id continuity checks of
//! Binance's "How to manage a local order book correctly".
//!
//! Pure and deterministic: no I/O, no clock. The caller feeds each symbol's diffs and snapshots
//! to that symbol's [`BookBuilder`] in arrival order and reads back an [`Outcome`] per call.
//!
//! - [`Book`]: one symbol's price levels, bids and asks, fixed point 10^8.
//! - [`BookBuilder`]: Binance's procedure. Diffs are buffered (boundedly) until a [`Snapshot`]
//!   arrives; buffered diffs the snapshot already contains are discarded; the first diff
//!   applied must bridge the snapshot's `lastUpdateId`; every later diff must continue the
//!   previous one ([`Continuity`]). A gap is a *break*: the book goes [`BookState::Stale`],
//!   diffs are buffered again, and the next snapshot rebuilds it.
//! - [`parse_depth_line`]: a capture line (`<capture_ns> <json>`) to a [`DepthEvent`].
//!
//! # The rules, as Binance documents them
//!
//! Spot (`api.binance.com`; update procedure as fixed in binance-spot-api-docs PR #383):
//! discard buffered events with `u <= lastUpdateId`; the first one applied must have
//! `U <= lastUpdateId + 1 <= u`; then ignore events with `u <=` the book's update id and treat
//! `U > id + 1` as a gap. This module is stricter in one place: once live, an event must have
//! `U == prev_u + 1` exactly, so an event overlapping the book (`U <= id < u`), which one
//! connection never sends, is a break and not silently applied. (The current spot page also
//! says the first event "should have `lastUpdateId` within its `[U;u]` range"; read literally
//! that would reject an event starting at exactly `lastUpdateId + 1`, which is the normal case:
//! the ETHUSDT capture of 2024-08-08 bridges that way. `U <= lastUpdateId + 1` is what the
//! update procedure and the older wording say.)
//!
//! USDⓈ-M and COIN-M futures (events carry `pu`, the previous event's `u`): drop events with
//! `u < lastUpdateId` (note: `<`, so an event ending exactly at `lastUpdateId` is kept); the
//! first one applied must have `U <= lastUpdateId <= u`; every later one must have
//! `pu == prev_u`.
//!
//! Applying an event sets each listed level to its absolute quantity; quantity 0 removes the
//! level, and removing a level the book does not hold is normal.
//!
//! # Depth beyond the snapshot
//!
//! A REST snapshot holds the best N levels a side (1000 or 5000); diffs also carry changes
//! deeper than that. They are applied like any other, so the book grows past the snapshot's
//! range, but levels beyond it that did not change since the snapshot are missing: only the
//! levels between the best price and the snapshot's deepest price are complete.
//!
//! # Crossed books
//!
//! A bid at or above the best ask after an event means something is wrong (a missed or
//! misordered update). The builder never repairs it by deleting levels: it reports it in the
//! [`Outcome`] and counts it in [`BookStats::crossed`]; the caller decides.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::binance::LineError;
use crate::universe::parse_fixed;

/// One side of a [`Book`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookSide {
    /// Buy orders, best = highest price.
    Bid,
    /// Sell orders, best = lowest price.
    Ask,
}

/// One symbol's order book: price → size on each side, both fixed point 10^8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
}

impl Book {
    /// An empty book.
    pub fn new() -> Self {
        Book::default()
    }

    /// Sets the level at `price` on `side` to `size`; a size of 0 removes the level (whether
    /// or not it exists). A negative size, which no level can have, also removes it:
    /// [`parse_depth_line`] rejects negative sizes before they get here.
    pub fn apply_level(&mut self, side: BookSide, price: i64, size: i64) {
        let levels = match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        };
        if size > 0 {
            levels.insert(price, size);
        } else {
            levels.remove(&price);
        }
    }

    /// The best (highest) bid as `(price, size)`.
    pub fn best_bid(&self) -> Option<(i64, i64)> {
        self.bids.last_key_value().map(|(p, s)| (*p, *s))
    }

    /// The best (lowest) ask as `(price, size)`.
    pub fn best_ask(&self) -> Option<(i64, i64)> {
        self.asks.first_key_value().map(|(p, s)| (*p, *s))
    }

    /// Whether the best bid is at or above the best ask (false when a side is empty).
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// Fills `bids` with the best `n` bids, highest first, and `asks` with the best `n` asks,
    /// lowest first, as `(price, size)`. Both vectors are cleared first; nothing is allocated
    /// when they already have capacity for `n` levels.
    pub fn top(&self, n: usize, bids: &mut Vec<(i64, i64)>, asks: &mut Vec<(i64, i64)>) {
        bids.clear();
        asks.clear();
        for (p, s) in self.bids.iter().rev().take(n) {
            bids.push((*p, *s));
        }
        for (p, s) in self.asks.iter().take(n) {
            asks.push((*p, *s));
        }
    }

    /// All bids, highest first, as `(price, size)`.
    pub fn bids(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.bids.iter().rev().map(|(p, s)| (*p, *s))
    }

    /// All asks, lowest first, as `(price, size)`.
    pub fn asks(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.asks.iter().map(|(p, s)| (*p, *s))
    }

    /// The number of levels as `(bids, asks)`.
    pub fn levels(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    /// Removes every level.
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Sets each listed level: `bids` then `asks`.
    fn apply_levels(&mut self, bids: &[(i64, i64)], asks: &[(i64, i64)]) {
        for &(p, s) in bids {
            self.apply_level(BookSide::Bid, p, s);
        }
        for &(p, s) in asks {
            self.apply_level(BookSide::Ask, p, s);
        }
    }
}

/// How consecutive diffs are chained, which differs between Binance's markets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Spot: an event continues the book when `U == prev_u + 1`; the first event after a
    /// snapshot must have `U <= lastUpdateId + 1 <= u`.
    Spot,
    /// USDⓈ-M and COIN-M futures: an event continues the book when `pu == prev_u`; the first
    /// event after a snapshot must have `U <= lastUpdateId <= u`.
    Futures,
}

/// One `depthUpdate` event: the levels changed over the update ids `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// First update id in the event (`U`).
    pub first: u64,
    /// Final update id in the event (`u`).
    pub last: u64,
    /// Final update id of the previous event (`pu`, futures only).
    pub prev: Option<u64>,
    /// Bid levels `(price, size)` to set, fixed point 10^8; size 0 removes the level.
    pub bids: Vec<(i64, i64)>,
    /// Ask levels `(price, size)` to set, fixed point 10^8; size 0 removes the level.
    pub asks: Vec<(i64, i64)>,
    /// Binance's event time (`E`), ns since the Unix epoch (millisecond resolution); 0 when
    /// the message has none.
    pub event_time_ns: u64,
}

/// A REST depth snapshot (`GET /api/v3/depth`, `/fapi/v1/depth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The update id the snapshot is consistent with (`lastUpdateId`).
    pub last_update_id: u64,
    /// Bid levels `(price, size)`, fixed point 10^8.
    pub bids: Vec<(i64, i64)>,
    /// Ask levels `(price, size)`, fixed point 10^8.
    pub asks: Vec<(i64, i64)>,
}

/// Where a [`BookBuilder`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookState {
    /// No snapshot yet: diffs are buffered.
    WaitingForSnapshot,
    /// A snapshot is loaded but no diff has bridged it yet (every buffered diff was older);
    /// the book is not valid until one does.
    Syncing,
    /// The book is consistent with the last applied diff.
    Live,
    /// A continuity break: the book holds its last consistent state but is out of date, diffs
    /// are buffered, and a new snapshot is needed.
    Stale,
}

/// What one [`BookBuilder::on_diff`] or [`BookBuilder::on_snapshot`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The diff was buffered (no snapshot yet, or the book is stale).
    Buffered,
    /// The diff was applied; the book is live.
    Applied {
        /// Whether the best bid or best ask (price or size) changed.
        top_changed: bool,
        /// Whether the book is crossed after the diff (also counted in [`BookStats::crossed`]).
        crossed: bool,
    },
    /// The diff is older than the book (its `u` is already contained), or the snapshot is not
    /// newer than the live book; ignored.
    Dropped,
    /// A gap in the update ids: the book is now [`BookState::Stale`] and needs a new snapshot.
    Break {
        /// The id the rule required: `prev_u + 1` as `U` (spot), `prev_u` as `pu` (futures);
        /// for the first diff after a snapshot, the most its `U` may be.
        expected: u64,
        /// What the diff carried (`U`, or `pu`; 0 when a futures diff has no `pu`).
        got: u64,
    },
    /// The snapshot was loaded, but no buffered diff reaches past it yet: the book is
    /// [`BookState::Syncing`] until the diff that bridges it arrives.
    Loaded {
        /// Buffered diffs discarded because the snapshot already contained them.
        discarded: usize,
    },
    /// The snapshot was loaded and the buffered diffs after it applied: the book is live.
    Rebuilt {
        /// Buffered diffs applied on top of the snapshot.
        replayed: usize,
        /// Buffered diffs discarded because the snapshot already contained them.
        discarded: usize,
        /// Whether the book is crossed afterwards.
        crossed: bool,
    },
}

/// Counters over a [`BookBuilder`]'s life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Snapshots loaded.
    pub snapshots: u64,
    /// Snapshots ignored because they were not newer than the live book.
    pub ignored_snapshots: u64,
    /// Diffs applied to the book.
    pub applied: u64,
    /// Diffs discarded as already contained in the book or snapshot (from the buffer when a
    /// snapshot arrives, or arriving late).
    pub dropped: u64,
    /// Buffered diffs thrown away, oldest first, because the buffer was full.
    pub buffer_overflow: u64,
    /// Continuity breaks.
    pub breaks: u64,
    /// Applied diffs after which the book was crossed.
    pub crossed: u64,
}

/// Diffs buffered per symbol while waiting for a snapshot, by default.
///
/// A `@depth@100ms` stream sends at most 10 events a second, so 10,000 events are over 16
/// minutes of them (2.7 hours of the 1 s stream), while a REST snapshot normally takes well
/// under a second: the bound is never reached by a working feed and only caps memory (a few
/// MB per symbol) when snapshots cannot be fetched.
pub const MAX_BUFFERED: usize = 10_000;

/// Rebuilds one symbol's [`Book`] from its depth diffs and snapshots (see the module docs).
#[derive(Debug, Clone)]
pub struct BookBuilder {
    continuity: Continuity,
    state: BookState,
    book: Book,
    /// The update id the book is consistent with: the snapshot's, then each applied diff's `u`.
    last_update_id: Option<u64>,
    buffer: VecDeque<Diff>,
    buffer_limit: usize,
    stats: BookStats,
}

impl BookBuilder {
    /// A builder waiting for its first snapshot, buffering up to [`MAX_BUFFERED`] diffs.
    pub fn new(continuity: Continuity) -> Self {
        BookBuilder::with_buffer_limit(continuity, MAX_BUFFERED)
    }

    /// A builder buffering at most `limit` diffs (at least 1) while it has no valid book.
    pub fn with_buffer_limit(continuity: Continuity, limit: usize) -> Self {
        BookBuilder {
            continuity,
            state: BookState::WaitingForSnapshot,
            book: Book::new(),
            last_update_id: None,
            buffer: VecDeque::new(),
            buffer_limit: limit.max(1),
            stats: BookStats::default(),
        }
    }

    /// Feeds one diff, in arrival order.
    pub fn on_diff(&mut self, d: &Diff) -> Outcome {
        match self.state {
            BookState::WaitingForSnapshot | BookState::Stale => {
                self.buffer_diff(d.clone());
                Outcome::Buffered
            }
            BookState::Syncing | BookState::Live => {
                let out = self.apply(d);
                if matches!(out, Outcome::Break { .. }) {
                    // The diff that broke the chain may be the one that bridges the next snapshot.
                    self.buffer_diff(d.clone());
                }
                out
            }
        }
    }

    /// Feeds a snapshot: loads it, discards the buffered diffs it already contains, and applies
    /// the rest (the first must bridge the snapshot). A snapshot not newer than a live book is
    /// ignored ([`Outcome::Dropped`]).
    pub fn on_snapshot(&mut self, s: &Snapshot) -> Outcome {
        if self.state == BookState::Live && self.last_update_id.is_some_and(|id| s.last_update_id <= id) {
            self.stats.ignored_snapshots += 1;
            return Outcome::Dropped;
        }
        self.book.clear();
        self.book.apply_levels(&s.bids, &s.asks);
        self.last_update_id = Some(s.last_update_id);
        self.state = BookState::Syncing;
        self.stats.snapshots += 1;
        let (mut replayed, mut discarded) = (0, 0);
        let mut pending = std::mem::take(&mut self.buffer);
        while let Some(d) = pending.pop_front() {
            match self.apply(&d) {
                Outcome::Dropped => discarded += 1,
                Outcome::Applied { .. } => replayed += 1,
                out @ Outcome::Break { .. } => {
                    // Keep the breaking diff and everything after it for the next snapshot.
                    pending.push_front(d);
                    self.buffer = pending;
                    return out;
                }
                // `apply` returns only the three above.
                Outcome::Buffered | Outcome::Loaded { .. } | Outcome::Rebuilt { .. } => {}
            }
        }
        // Reuse the buffer's allocation for the next time diffs must wait.
        self.buffer = pending;
        if self.state == BookState::Live {
            Outcome::Rebuilt { replayed, discarded, crossed: self.book.is_crossed() }
        } else {
            Outcome::Loaded { discarded }
        }
    }

    /// Applies `d` in state `Syncing` or `Live`: [`Outcome::Applied`], [`Outcome::Dropped`] or
    /// [`Outcome::Break`] (which also makes the book stale).
    fn apply(&mut self, d: &Diff) -> Outcome {
        let Some(id) = self.last_update_id else {
            // Unreachable: `Syncing` and `Live` always have an id. Treat it as a break.
            return self.broken(0, d.first);
        };
        let syncing = self.state == BookState::Syncing;
        match self.continuity {
            Continuity::Spot => {
                if d.last <= id {
                    return self.dropped();
                }
                let expected = id.saturating_add(1);
                if (syncing && d.first > expected) || (!syncing && d.first != expected) {
                    return self.broken(expected, d.first);
                }
            }
            Continuity::Futures if syncing => {
                if d.last < id {
                    return self.dropped();
                }
                if d.first > id {
                    return self.broken(id, d.first);
                }
            }
            Continuity::Futures => {
                if d.last <= id {
                    return self.dropped();
                }
                match d.prev {
                    Some(pu) if pu == id => {}
                    got => return self.broken(id, got.unwrap_or(0)),
                }
            }
        }
        let before = (self.book.best_bid(), self.book.best_ask());
        self.book.apply_levels(&d.bids, &d.asks);
        self.last_update_id = Some(d.last);
        self.state = BookState::Live;
        self.stats.applied += 1;
        let crossed = self.book.is_crossed();
        if crossed {
            self.stats.crossed += 1;
        }
        let top_changed = before != (self.book.best_bid(), self.book.best_ask());
        Outcome::Applied { top_changed, crossed }
    }

    fn dropped(&mut self) -> Outcome {
        self.stats.dropped += 1;
        Outcome::Dropped
    }

    fn broken(&mut self, expected: u64, got: u64) -> Outcome {
        self.stats.breaks += 1;
        self.state = BookState::Stale;
        Outcome::Break { expected, got }
    }

    fn buffer_diff(&mut self, d: Diff) {
        if self.buffer.len() >= self.buffer_limit {
            self.buffer.pop_front();
            self.stats.buffer_overflow += 1;
        }
        self.buffer.push_back(d);
    }

    /// Where the builder stands.
    pub fn state(&self) -> BookState {
        self.state
    }

    /// Whether the book is valid and current ([`BookState::Live`]).
    pub fn is_live(&self) -> bool {
        self.state == BookState::Live
    }

    /// The book. Only valid when [`is_live`](Self::is_live); when stale it holds the last
    /// consistent state, and before a snapshot it is empty.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Continuity breaks so far.
    pub fn breaks(&self) -> u64 {
        self.stats.breaks
    }

    /// The update id the book is consistent with (`None` before the first snapshot).
    pub fn last_update_id(&self) -> Option<u64> {
        self.last_update_id
    }

    /// Diffs currently buffered.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// All counters.
    pub fn stats(&self) -> BookStats {
        self.stats
    }

    /// The continuity rule in use.
    pub fn continuity(&self) -> Continuity {
        self.continuity
    }
}

/// A depth message read from a capture line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepthEvent {
    /// A `depthUpdate`.
    Diff(Diff),
    /// A REST snapshot.
    Snapshot(Snapshot),
}

/// A JSON string, borrowed from the line when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Any JSON value, kept when it is a string: the event type `e` of messages we skip may be
/// anything, and must not make their line an error.
#[derive(Default)]
struct AnyStr<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for AnyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = AnyStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One `[price, quantity]` level as sent. Extra elements (the empty array old spot messages
/// appended) are ignored.
struct RawLevel<'a>(Str<'a>, Str<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for RawLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawLevel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [price, quantity] array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let price =
                    s.next_element::<Str<'de>>()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let qty = s.next_element::<Str<'de>>()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawLevel(price, qty))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// The first look at a line: is it a depth message, and is it wrapped in an envelope?
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    stream: AnyStr<'a>,
    #[serde(borrow, default)]
    data: Option<ProbeBody<'a>>,
    #[serde(borrow, default)]
    e: AnyStr<'a>,
    #[serde(default, rename = "lastUpdateId")]
    last_update_id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ProbeBody<'a> {
    #[serde(borrow, default)]
    e: AnyStr<'a>,
}

#[derive(Deserialize)]
struct DepthEnvelope<'a> {
    #[serde(borrow)]
    data: DepthUpdate<'a>,
}

#[derive(Deserialize)]
struct DepthUpdate<'a> {
    #[serde(borrow, default)]
    s: Option<Cow<'a, str>>,
    #[serde(default, rename = "U")]
    first: Option<u64>,
    #[serde(default, rename = "u")]
    last: Option<u64>,
    #[serde(default)]
    pu: Option<u64>,
    #[serde(default, rename = "E")]
    event_time_ms: Option<u64>,
    #[serde(borrow, default)]
    b: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    a: Option<Vec<RawLevel<'a>>>,
}

#[derive(Deserialize)]
struct RestSnapshot<'a> {
    #[serde(default, rename = "lastUpdateId")]
    last_update_id: Option<u64>,
    #[serde(borrow, default)]
    bids: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    asks: Option<Vec<RawLevel<'a>>>,
}

fn json_err(e: serde_json::Error) -> LineError {
    LineError::Json(e.to_string())
}

fn levels(field: &'static str, raw: &[RawLevel<'_>]) -> Result<Vec<(i64, i64)>, LineError> {
    let fixed = |s: &Str<'_>| {
        parse_fixed(&s.0)
            .ok_or_else(|| LineError::BadDecimal { field, value: s.0.chars().take(40).collect() })
    };
    raw.iter()
        .map(|l| {
            let (price, qty) = (fixed(&l.0)?, fixed(&l.1)?);
            if price <= 0 || qty < 0 {
                return Err(LineError::BadLevel { field, price, qty });
            }
            Ok((price, qty))
        })
        .collect()
}

/// Parses one capture line (`<capture_ns> <json>`, without its newline) into a depth event.
///
/// - A `depthUpdate` (event type `e`, wrapped in the combined-stream envelope or bare) →
///   `Some((symbol, DepthEvent::Diff))`, the symbol from `s` (else the stream name), upper
///   case. `pu` is read when present (futures).
/// - A bare message with `lastUpdateId` (the REST snapshot line) →
///   `Some(("", DepthEvent::Snapshot))`. A REST snapshot names no symbol: the caller attaches
///   it, e.g. with [`capture_symbol`] (one capture file holds one symbol). A `lastUpdateId`
///   message inside an envelope is a partial-depth stream (`@depth5`...), a top-N view that
///   cannot seed a full book: `None`.
/// - Anything else (trades, book tickers, acks) → `None`.
///
/// # Errors
/// When the line has no capture timestamp, is not JSON, or is a depth message with a missing
/// field, a decimal that is not exact to 8 places, a non-positive price, a negative quantity,
/// or `U > u` (see [`LineError`]).
pub fn parse_depth_line(line: &str) -> Result<Option<(String, DepthEvent)>, LineError> {
    let (ts, json) = line.split_once(' ').ok_or(LineError::NoTimestamp)?;
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::NoTimestamp);
    }
    ts.parse::<u64>().map_err(|_| LineError::NoTimestamp)?;
    let probe: Probe<'_> = serde_json::from_str(json).map_err(json_err)?;
    let wrapped = probe.data.is_some();
    let event = match &probe.data {
        Some(body) => body.e.0.as_deref(),
        None => probe.e.0.as_deref(),
    };
    if event == Some("depthUpdate") {
        let u = if wrapped {
            serde_json::from_str::<DepthEnvelope<'_>>(json).map_err(json_err)?.data
        } else {
            serde_json::from_str::<DepthUpdate<'_>>(json).map_err(json_err)?
        };
        const K: &str = "depthUpdate";
        let missing = |field| LineError::Missing { kind: K, field };
        let symbol = match (&u.s, &probe.stream.0) {
            (Some(s), _) => s.to_ascii_uppercase(),
            (None, Some(stream)) => stream.split('@').next().unwrap_or("").to_ascii_uppercase(),
            (None, None) => return Err(missing("s")),
        };
        let first = u.first.ok_or(missing("U"))?;
        let last = u.last.ok_or(missing("u"))?;
        let event_time_ns = match u.event_time_ms {
            Some(ms) => ms.checked_mul(1_000_000).ok_or(LineError::BadIds { first, last })?,
            None => 0,
        };
        if first > last {
            return Err(LineError::BadIds { first, last });
        }
        let diff = Diff {
            first,
            last,
            prev: u.pu,
            bids: levels("b", u.b.as_deref().ok_or(missing("b"))?)?,
            asks: levels("a", u.a.as_deref().ok_or(missing("a"))?)?,
            event_time_ns,
        };
        return Ok(Some((symbol, DepthEvent::Diff(diff))));
    }
    if !wrapped && probe.stream.0.is_none() && probe.last_update_id.is_some() {
        const K: &str = "snapshot";
        let missing = |field| LineError::Missing { kind: K, field };
        let s: RestSnapshot<'_> = serde_json::from_str(json).map_err(json_err)?;
        let snap = Snapshot {
            last_update_id: s.last_update_id.ok_or(missing("lastUpdateId"))?,
            bids: levels("bids", s.bids.as_deref().ok_or(missing("bids"))?)?,
            asks: levels("asks", s.asks.as_deref().ok_or(missing("asks"))?)?,
        };
        return Ok(Some((String::new(), DepthEvent::Snapshot(snap))));
    }
    Ok(None)
}

/// The symbol a capture file holds, from its name: the part before the first `_`, upper
/// case (`btcusdt_20240808.gz` → `BTCUSDT`). `None` when the name has no `_` or is not UTF-8.
pub fn capture_symbol(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (sym, _) = name.split_once('_')?;
    (!sym.is_empty()).then(|| sym.to_ascii_uppercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const P: i64 = crate::SCALE;

    fn spot(first: u64, last: u64, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> Diff {
        Diff { first, last, prev: None, bids: bids.to_vec(), asks: asks.to_vec(), event_time_ns: 0 }
    }

    fn fut(first: u64, last: u64, prev: u64, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> Diff {
        Diff { prev: Some(prev), ..spot(first, last, bids, asks) }
    }

    fn snap(id: u64, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> Snapshot {
        Snapshot { last_update_id: id, bids: bids.to_vec(), asks: asks.to_vec() }
    }

    /// A snapshot with bids 99/98 and asks 101/102, size 1 each, at update id `id`.
    fn base(id: u64) -> Snapshot {
        snap(id, &[(99 * P, P), (98 * P, P)], &[(101 * P, P), (102 * P, P)])
    }

    fn applied(o: Outcome) -> bool {
        matches!(o, Outcome::Applied { .. })
    }

    #[test]
    fn levels_are_set_replaced_and_removed() {
        let mut b = Book::new();
        b.apply_level(BookSide::Bid, 100, 5);
        b.apply_level(BookSide::Bid, 101, 7);
        b.apply_level(BookSide::Ask, 103, 1);
        assert_eq!((b.best_bid(), b.best_ask(), b.levels()), (Some((101, 7)), Some((103, 1)), (2, 1)));
        b.apply_level(BookSide::Bid, 101, 9);
        assert_eq!(b.best_bid(), Some((101, 9)));
        b.apply_level(BookSide::Bid, 101, 0);
        assert_eq!(b.best_bid(), Some((100, 5)));
        // Removing a level the book does not hold is normal.
        b.apply_level(BookSide::Ask, 555, 0);
        assert_eq!(b.levels(), (1, 1));
        b.clear();
        assert_eq!((b.best_bid(), b.best_ask(), b.levels()), (None, None, (0, 0)));
    }

    #[test]
    fn top_orders_bids_down_and_asks_up_without_allocating() {
        let mut b = Book::new();
        for p in [5, 1, 4, 2, 3] {
            b.apply_level(BookSide::Bid, p, p * 10);
            b.apply_level(BookSide::Ask, p + 10, p);
        }
        let (mut bids, mut asks) = (Vec::with_capacity(3), Vec::with_capacity(3));
        bids.push((0, 0)); // cleared first
        let (bp, ap) = (bids.as_ptr(), asks.as_ptr());
        b.top(3, &mut bids, &mut asks);
        assert_eq!(bids, [(5, 50), (4, 40), (3, 30)]);
        assert_eq!(asks, [(11, 1), (12, 2), (13, 3)]);
        assert_eq!((bids.as_ptr(), asks.as_ptr(), bids.capacity()), (bp, ap, 3), "reallocated");
        b.top(10, &mut bids, &mut asks);
        assert_eq!((bids.len(), asks.len()), (5, 5));
        assert_eq!(bids.first(), Some(&(5, 50)));
        assert_eq!(asks.last(), Some(&(15, 5)));
        b.top(0, &mut bids, &mut asks);
        assert!(bids.is_empty() && asks.is_empty());
        assert_eq!(b.bids().map(|l| l.0).collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
        assert_eq!(b.asks().map(|l| l.0).collect::<Vec<_>>(), [11, 12, 13, 14, 15]);
    }

    #[test]
    fn crossed_means_best_bid_at_or_above_best_ask() {
        let cases: &[(&[i64], &[i64], bool)] = &[
            (&[], &[], false),
            (&[10], &[], false),
            (&[], &[10], false),
            (&[9], &[10], false),
            (&[10], &[10], true),
            (&[11, 3], &[10, 20], true),
        ];
        for (bids, asks, want) in cases {
            let mut b = Book::new();
            bids.iter().for_each(|p| b.apply_level(BookSide::Bid, *p, 1));
            asks.iter().for_each(|p| b.apply_level(BookSide::Ask, *p, 1));
            assert_eq!(b.is_crossed(), *want, "{bids:?} {asks:?}");
        }
    }

    #[test]
    fn spot_buffers_until_the_snapshot_then_discards_and_bridges() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        assert_eq!((bb.state(), bb.last_update_id()), (BookState::WaitingForSnapshot, None));
        // Diffs 1..=5 and 6..=12 are in the snapshot (id 10) or older; 11..=14 bridges it.
        assert_eq!(bb.on_diff(&spot(1, 5, &[(97 * P, 7)], &[])), Outcome::Buffered);
        assert_eq!(bb.on_diff(&spot(6, 10, &[(96 * P, 7)], &[])), Outcome::Buffered);
        assert_eq!(bb.on_diff(&spot(11, 14, &[(99 * P, 2 * P)], &[(101 * P, 0)])), Outcome::Buffered);
        assert_eq!(bb.on_diff(&spot(15, 15, &[], &[(100 * P, 3)])), Outcome::Buffered);
        assert_eq!(bb.buffered(), 4);
        assert!(bb.book().best_bid().is_none(), "nothing applied before the snapshot");
        assert_eq!(bb.on_snapshot(&base(10)), Outcome::Rebuilt { replayed: 2, discarded: 2, crossed: false });
        assert_eq!((bb.state(), bb.last_update_id(), bb.buffered()), (BookState::Live, Some(15), 0));
        assert_eq!(bb.book().best_bid(), Some((99 * P, 2 * P)));
        assert_eq!(bb.book().best_ask(), Some((100 * P, 3)));
        assert_eq!(bb.book().levels(), (2, 2), "levels of discarded diffs must not appear");
        assert_eq!(
            bb.on_diff(&spot(16, 18, &[(98 * P, 0)], &[])),
            Outcome::Applied { top_changed: false, crossed: false }
        );
        assert_eq!(
            bb.on_diff(&spot(19, 19, &[(99 * P, 1)], &[])),
            Outcome::Applied { top_changed: true, crossed: false }
        );
        let s = bb.stats();
        assert_eq!((s.snapshots, s.applied, s.dropped, s.breaks, s.crossed), (1, 4, 2, 0, 0));
    }

    #[test]
    fn spot_first_event_must_bridge_the_snapshot() {
        // (first buffered diff U..u, snapshot id) → outcome of the snapshot.
        let cases: &[((u64, u64), u64, Outcome)] = &[
            // U == id + 1: the normal case.
            ((11, 12), 10, Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: false }),
            // id + 1 == u.
            ((5, 11), 10, Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: false }),
            // id strictly inside.
            ((5, 20), 10, Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: false }),
            // u == id: contained in the snapshot.
            ((5, 10), 10, Outcome::Loaded { discarded: 1 }),
            // The stream is past the snapshot: a gap between id and U.
            ((12, 15), 10, Outcome::Break { expected: 11, got: 12 }),
        ];
        for &((first, last), id, want) in cases {
            let mut bb = BookBuilder::new(Continuity::Spot);
            bb.on_diff(&spot(first, last, &[], &[]));
            assert_eq!(bb.on_snapshot(&base(id)), want, "U {first} u {last} id {id}");
        }
    }

    #[test]
    fn spot_syncing_waits_for_the_bridging_diff() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        assert_eq!(bb.on_snapshot(&base(10)), Outcome::Loaded { discarded: 0 });
        assert_eq!(bb.state(), BookState::Syncing);
        assert_eq!(bb.book().best_bid(), Some((99 * P, P)), "the snapshot is loaded");
        assert_eq!(bb.on_diff(&spot(8, 10, &[(90 * P, 1)], &[])), Outcome::Dropped);
        assert_eq!(bb.state(), BookState::Syncing);
        assert!(applied(bb.on_diff(&spot(9, 12, &[(90 * P, 1)], &[]))));
        assert_eq!((bb.state(), bb.last_update_id()), (BookState::Live, Some(12)));
        // The same, but the first newer diff leaves a gap.
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_snapshot(&base(10));
        assert_eq!(bb.on_diff(&spot(13, 14, &[], &[])), Outcome::Break { expected: 11, got: 13 });
        assert_eq!((bb.state(), bb.breaks(), bb.buffered()), (BookState::Stale, 1, 1));
    }

    #[test]
    fn spot_gap_breaks_goes_stale_and_a_new_snapshot_rebuilds() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_snapshot(&base(10));
        assert!(applied(bb.on_diff(&spot(11, 12, &[(99 * P, 5)], &[]))));
        // 13..=14 is lost.
        assert_eq!(bb.on_diff(&spot(15, 16, &[(97 * P, 1)], &[])), Outcome::Break { expected: 13, got: 15 });
        assert_eq!(bb.state(), BookState::Stale);
        // Stale: the book keeps its last consistent state and diffs are buffered, not applied.
        assert_eq!(bb.on_diff(&spot(17, 17, &[(99 * P, 6)], &[])), Outcome::Buffered);
        assert_eq!(bb.on_diff(&spot(18, 20, &[(96 * P, 1)], &[])), Outcome::Buffered);
        assert_eq!((bb.book().best_bid(), bb.last_update_id()), (Some((99 * P, 5)), Some(12)));
        assert_eq!((bb.breaks(), bb.buffered()), (1, 3));
        // A snapshot at 16 contains 15..=16 (buffered at the break) and bridges to 17.
        let out = bb.on_snapshot(&snap(16, &[(99 * P, 5), (97 * P, 1)], &[(101 * P, 1)]));
        assert_eq!(out, Outcome::Rebuilt { replayed: 2, discarded: 1, crossed: false });
        assert_eq!((bb.state(), bb.last_update_id(), bb.breaks()), (BookState::Live, Some(20), 1));
        let mut bids = Vec::new();
        bb.book().top(10, &mut bids, &mut Vec::new());
        assert_eq!(bids, [(99 * P, 6), (97 * P, 1), (96 * P, 1)]);
    }

    #[test]
    fn a_gap_inside_the_buffer_breaks_during_the_rebuild() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        for (u0, u1) in [(11, 12), (13, 14), (17, 18), (19, 19)] {
            bb.on_diff(&spot(u0, u1, &[], &[]));
        }
        assert_eq!(bb.on_snapshot(&base(10)), Outcome::Break { expected: 15, got: 17 });
        assert_eq!((bb.state(), bb.last_update_id(), bb.buffered()), (BookState::Stale, Some(14), 2));
        // The diffs from the gap on were kept: a snapshot at 16 bridges them.
        assert_eq!(bb.on_snapshot(&base(16)), Outcome::Rebuilt { replayed: 2, discarded: 0, crossed: false });
        assert_eq!(bb.last_update_id(), Some(19));
    }

    #[test]
    fn late_and_duplicate_diffs_are_dropped_when_live() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_snapshot(&base(10));
        assert!(applied(bb.on_diff(&spot(11, 15, &[], &[]))));
        for (u0, u1) in [(11, 15), (12, 14), (1, 3), (15, 15)] {
            assert_eq!(bb.on_diff(&spot(u0, u1, &[(50 * P, 1)], &[])), Outcome::Dropped, "{u0}..={u1}");
        }
        assert_eq!((bb.state(), bb.book().levels(), bb.stats().dropped), (BookState::Live, (2, 2), 4));
        // An overlapping event (U inside the book, u beyond) is not a continuation.
        assert_eq!(bb.on_diff(&spot(14, 20, &[], &[])), Outcome::Break { expected: 16, got: 14 });
    }

    #[test]
    fn the_buffer_is_bounded_and_drops_the_oldest() {
        let mut bb = BookBuilder::with_buffer_limit(Continuity::Spot, 3);
        for i in 0..5 {
            assert_eq!(bb.on_diff(&spot(11 + i, 11 + i, &[(90 * P + i as i64, 1)], &[])), Outcome::Buffered);
        }
        assert_eq!((bb.buffered(), bb.stats().buffer_overflow), (3, 2));
        // 11 and 12 were lost, so a snapshot at 10 cannot be bridged...
        assert_eq!(bb.on_snapshot(&base(10)), Outcome::Break { expected: 11, got: 13 });
        // ...but one at 12 can.
        assert_eq!(bb.on_snapshot(&base(12)), Outcome::Rebuilt { replayed: 3, discarded: 0, crossed: false });
        assert_eq!(bb.book().levels(), (5, 2));
        // The default bound.
        let mut bb = BookBuilder::new(Continuity::Spot);
        for i in 0..MAX_BUFFERED as u64 + 7 {
            bb.on_diff(&spot(i + 1, i + 1, &[], &[]));
        }
        assert_eq!((bb.buffered(), bb.stats().buffer_overflow), (MAX_BUFFERED, 7));
    }

    #[test]
    fn a_crossed_book_is_reported_and_counted_not_repaired() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_snapshot(&base(10));
        assert_eq!(
            bb.on_diff(&spot(11, 11, &[(101 * P, 4)], &[])),
            Outcome::Applied { top_changed: true, crossed: true }
        );
        assert_eq!(bb.book().best_bid(), Some((101 * P, 4)));
        assert_eq!(bb.book().best_ask(), Some((101 * P, P)), "no level deleted");
        assert_eq!((bb.stats().crossed, bb.state()), (1, BookState::Live));
        assert_eq!(
            bb.on_diff(&spot(12, 12, &[], &[(101 * P, 0)])),
            Outcome::Applied { top_changed: true, crossed: false }
        );
        assert_eq!(bb.stats().crossed, 1);
        // A rebuild that ends crossed says so.
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_diff(&spot(11, 11, &[], &[(98 * P, 1)]));
        assert_eq!(bb.on_snapshot(&base(10)), Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: true });
        assert_eq!(bb.stats().crossed, 1);
    }

    #[test]
    fn a_snapshot_not_newer_than_the_live_book_is_ignored() {
        let mut bb = BookBuilder::new(Continuity::Spot);
        bb.on_snapshot(&base(10));
        bb.on_diff(&spot(11, 20, &[(99 * P, 9)], &[]));
        assert_eq!(bb.on_snapshot(&base(20)), Outcome::Dropped);
        assert_eq!(bb.on_snapshot(&base(15)), Outcome::Dropped);
        assert_eq!((bb.book().best_bid(), bb.stats().ignored_snapshots), (Some((99 * P, 9)), 2));
        // A newer one is loaded (the caller resynced); the next diff must bridge it.
        assert_eq!(bb.on_snapshot(&base(25)), Outcome::Loaded { discarded: 0 });
        assert_eq!(bb.on_diff(&spot(21, 25, &[], &[])), Outcome::Dropped);
        assert!(applied(bb.on_diff(&spot(26, 26, &[], &[]))));
    }

    #[test]
    fn futures_bridge_with_u_at_the_snapshot_and_chain_by_pu() {
        let mut bb = BookBuilder::new(Continuity::Futures);
        // Futures ids are not contiguous between events: chaining is by `pu`.
        bb.on_diff(&fut(90, 95, 80, &[(97 * P, 1)], &[])); // u < id: dropped
        bb.on_diff(&fut(96, 100, 95, &[(99 * P, 3)], &[])); // u == id: kept, bridges (U <= id <= u)
        bb.on_diff(&fut(104, 110, 100, &[], &[(101 * P, 0)]));
        let out = bb.on_snapshot(&base(100));
        assert_eq!(out, Outcome::Rebuilt { replayed: 2, discarded: 1, crossed: false });
        assert_eq!((bb.last_update_id(), bb.book().best_bid()), (Some(110), Some((99 * P, 3))));
        assert_eq!(bb.book().best_ask(), Some((102 * P, P)));
        assert!(applied(bb.on_diff(&fut(115, 120, 110, &[], &[]))));
        assert_eq!(bb.on_diff(&fut(111, 120, 110, &[], &[])), Outcome::Dropped, "u already applied");
        // pu does not match the previous u: something was lost.
        assert_eq!(bb.on_diff(&fut(130, 140, 125, &[], &[])), Outcome::Break { expected: 120, got: 125 });
        assert_eq!((bb.state(), bb.breaks()), (BookState::Stale, 1));
        // A futures diff without `pu` cannot be chained.
        let mut bb = BookBuilder::new(Continuity::Futures);
        bb.on_snapshot(&base(100));
        assert!(applied(bb.on_diff(&fut(99, 105, 90, &[], &[]))));
        assert_eq!(bb.on_diff(&spot(106, 107, &[], &[])), Outcome::Break { expected: 105, got: 0 });
    }

    #[test]
    fn futures_first_event_must_bridge_the_snapshot() {
        let cases: &[((u64, u64), u64, Outcome)] = &[
            ((90, 100), 100, Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: false }),
            ((100, 120), 100, Outcome::Rebuilt { replayed: 1, discarded: 0, crossed: false }),
            ((80, 99), 100, Outcome::Loaded { discarded: 1 }),
            // Spot would accept U == id + 1; futures needs U <= id.
            ((101, 120), 100, Outcome::Break { expected: 100, got: 101 }),
        ];
        for &((first, last), id, want) in cases {
            let mut bb = BookBuilder::new(Continuity::Futures);
            bb.on_diff(&fut(first, last, first - 1, &[], &[]));
            assert_eq!(bb.on_snapshot(&base(id)), want, "U {first} u {last} id {id}");
        }
    }

    #[test]
    fn futures_lines_in_the_documented_format() {
        // The USDⓈ-M `<symbol>@depth` payload as documented (event and transaction times, `pu`),
        // in the combined-stream envelope, and the `/fapi/v1/depth` snapshot (which has `E`, `T`).
        let line = |u0: u64, u1: u64, pu: u64, bid: &str| {
            format!(
                r#"1 {{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":{u0},"u":{u1},"pu":{pu},"b":[["{bid}","10"]],"a":[["0.0026","100"]]}}}}"#
            )
        };
        let snapshot = r#"2 {"lastUpdateId":1027024,"E":1589436922972,"T":1589436922959,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}"#;
        let lines = [
            line(1027000, 1027010, 1026990, "0.0020"),
            line(1027011, 1027024, 1027010, "0.0021"),
            snapshot.to_string(),
            line(1027030, 1027040, 1027024, "0.0022"),
            line(1027041, 1027050, 1027040, "0.0023"),
            line(1027060, 1027070, 1027055, "0.0019"),
        ];
        let mut bb = BookBuilder::new(Continuity::Futures);
        let mut outs = Vec::new();
        for l in &lines {
            let (sym, ev) = parse_depth_line(l).unwrap().unwrap();
            outs.push(match ev {
                DepthEvent::Diff(d) => {
                    assert_eq!((sym.as_str(), d.event_time_ns), ("BTCUSDT", 123_456_789_000_000));
                    bb.on_diff(&d)
                }
                DepthEvent::Snapshot(s) => {
                    assert_eq!(sym, "");
                    bb.on_snapshot(&s)
                }
            });
        }
        assert_eq!(
            outs,
            [
                Outcome::Buffered,
                Outcome::Buffered,
                Outcome::Rebuilt { replayed: 1, discarded: 1, crossed: false },
                Outcome::Applied { top_changed: false, crossed: false },
                Outcome::Applied { top_changed: false, crossed: false },
                Outcome::Break { expected: 1027050, got: 1027055 },
            ]
        );
        assert_eq!((bb.state(), bb.breaks(), bb.last_update_id()), (BookState::Stale, 1, Some(1027050)));
        assert_eq!(bb.book().best_bid(), Some((240_000, 10 * P)));
        assert_eq!(bb.book().levels(), (4, 1));
    }

    const DEPTH: &str = r#"1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"],["61730.17000000","1.5"]],"a":[["61837.64000000","1.54698000"]]}}"#;

    #[test]
    fn parses_spot_diffs_and_snapshots_and_skips_the_rest() {
        let (sym, ev) = parse_depth_line(DEPTH).unwrap().unwrap();
        assert_eq!(sym, "BTCUSDT");
        assert_eq!(
            ev,
            DepthEvent::Diff(Diff {
                first: 50_093_239_189,
                last: 50_093_239_202,
                prev: None,
                bids: vec![(6_173_763_000_000, 0), (6_173_017_000_000, 150_000_000)],
                asks: vec![(6_183_764_000_000, 154_698_000)],
                event_time_ns: 1_723_161_255_208_000_000,
            })
        );
        let snap = r#"1 {"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"]],"asks":[]}"#;
        assert_eq!(
            parse_depth_line(snap).unwrap(),
            Some((
                String::new(),
                DepthEvent::Snapshot(Snapshot {
                    last_update_id: 50_093_239_218,
                    bids: vec![(6_183_763_000_000, 378_826_000)],
                    asks: vec![]
                })
            ))
        );
        // Raw stream (no envelope), no `s`: still a diff. Legacy levels with a third element.
        let bare = r#"5 {"e":"depthUpdate","E":1,"s":"ethusdt","U":7,"u":7,"b":[["1.5","2",[]]],"a":[]}"#;
        let (sym, ev) = parse_depth_line(bare).unwrap().unwrap();
        let want = Diff { event_time_ns: 1_000_000, ..spot(7, 7, &[(150_000_000, 2 * P)], &[]) };
        assert_eq!((sym.as_str(), ev), ("ETHUSDT", DepthEvent::Diff(want)));
        let no_s = r#"5 {"stream":"ethusdt@depth","data":{"e":"depthUpdate","U":7,"u":8,"b":[],"a":[]}}"#;
        assert_eq!(parse_depth_line(no_s).unwrap().unwrap().0, "ETHUSDT");
        let skipped = [
            r#"1 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":3,"p":"61837.63000000","q":"0.02000000","T":1,"m":true,"M":true}}"#,
            r#"1 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#,
            r#"1 {"stream":"btcusdt@depth5","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}"#,
            r#"1 {"e":"aggTrade","s":"ETHUSDT","a":5933014,"p":"0.001","q":"100","m":true}"#,
            r#"1 {"result":null,"id":1}"#,
            r#"1 {"e":7,"data":null}"#,
        ];
        for l in skipped {
            assert_eq!(parse_depth_line(l).unwrap(), None, "{l}");
        }
    }

    #[test]
    fn malformed_depth_lines_say_what_is_wrong() {
        let d =
            |body: &str| format!(r#"1 {{"stream":"x@depth","data":{{"e":"depthUpdate","s":"X",{body}}}}}"#);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "timestamp"),
            ("{}".into(), "timestamp"),
            ("1x {}".into(), "timestamp"),
            ("1 {\"stream\":".into(), "JSON"),
            (d(r#""u":2,"b":[],"a":[]"#), "without `U`"),
            (d(r#""U":1,"b":[],"a":[]"#), "without `u`"),
            (d(r#""U":1,"u":2,"a":[]"#), "without `b`"),
            (d(r#""U":3,"u":2,"b":[],"a":[]"#), "bad update ids"),
            (d(r#""U":-1,"u":2,"b":[],"a":[]"#), "JSON"),
            (d(r#""U":1,"u":2,"b":[["1.123456789","1"]],"a":[]"#), "decimal"),
            (d(r#""U":1,"u":2,"b":[["1e5","1"]],"a":[]"#), "decimal"),
            (d(r#""U":1,"u":2,"b":[["99999999999999","1"]],"a":[]"#), "decimal"),
            (d(r#""U":1,"u":2,"b":[],"a":[["1","-1"]]"#), "impossible level"),
            (d(r#""U":1,"u":2,"b":[],"a":[["0","1"]]"#), "impossible level"),
            (d(r#""U":1,"u":2,"b":[["1"]],"a":[]"#), "JSON"),
            (d(r#""U":1,"u":2,"b":[[1.5,"1"]],"a":[]"#), "JSON"),
            (d(r#""U":1,"u":2,"E":18446744073709551615,"b":[],"a":[]"#), "bad update ids"),
            (r#"1 {"lastUpdateId":5,"bids":[]}"#.into(), "without `asks`"),
            (r#"1 {"lastUpdateId":5,"bids":[["1","x"]],"asks":[]}"#.into(), "decimal"),
            (r#"1 {"e":"depthUpdate","U":1,"u":2,"b":[],"a":[]}"#.into(), "without `s`"),
        ];
        for (line, want) in &cases {
            let err = parse_depth_line(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn capture_symbols_come_from_file_names() {
        assert_eq!(capture_symbol(Path::new("/d/btcusdt_20240808.gz")).as_deref(), Some("BTCUSDT"));
        assert_eq!(capture_symbol(Path::new("ethusdt_x")).as_deref(), Some("ETHUSDT"));
        assert_eq!(capture_symbol(Path::new("nounderscore.gz")), None);
        assert_eq!(capture_symbol(Path::new("_x.gz")), None);
    }

    /// Real captures: `../shared/data/binance-2024-08-08` beside the repository.
    mod real {
        use std::collections::HashMap;
        use std::io::{BufRead, BufReader};
        use std::path::PathBuf;

        use super::super::*;

        fn data_dir() -> Option<PathBuf> {
            let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/binance-2024-08-08");
            if d.join("btcusdt_20240808.gz").exists() {
                Some(d)
            } else {
                eprintln!(
                    "SKIPPED: the shared Binance captures are not at {} (they live beside the \
                     repository, in ../shared/data); the real-data order-book checks did not run",
                    d.display()
                );
                None
            }
        }

        /// The lines of `<symbol>_20240808.gz` then `<symbol>_20240809.gz`.
        fn capture(symbol: &str) -> Option<Vec<String>> {
            let dir = data_dir()?;
            let mut lines = Vec::new();
            for day in ["20240808", "20240809"] {
                let path = dir.join(format!("{symbol}_{day}.gz"));
                let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap());
                lines.extend(BufReader::new(gz).lines().map(Result::unwrap));
            }
            Some(lines)
        }

        /// `(price, size)` levels, fixed point 10^8.
        type Levels = Vec<(i64, i64)>;

        /// Exact decimal → 10^8, written separately from the crate's parser.
        fn naive_fixed(s: &str) -> i64 {
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            assert!(frac.len() <= 8, "{s}");
            format!("{int}{frac:0<8}").parse().unwrap()
        }

        /// The reference: a generic JSON parse and two hash maps, no continuity logic beyond
        /// "skip what the snapshot contains, apply the rest".
        #[derive(Default)]
        struct Naive {
            bids: HashMap<i64, i64>,
            asks: HashMap<i64, i64>,
            last: Option<u64>,
            pending: Vec<serde_json::Value>,
        }

        impl Naive {
            fn levels(v: &serde_json::Value) -> Vec<(i64, i64)> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|l| (naive_fixed(l[0].as_str().unwrap()), naive_fixed(l[1].as_str().unwrap())))
                    .collect()
            }
            fn set(side: &mut HashMap<i64, i64>, levels: Vec<(i64, i64)>) {
                for (p, q) in levels {
                    if q == 0 {
                        side.remove(&p);
                    } else {
                        side.insert(p, q);
                    }
                }
            }
            fn diff(&mut self, d: serde_json::Value) {
                let Some(last) = self.last else { return self.pending.push(d) };
                if d["u"].as_u64().unwrap() > last {
                    Naive::set(&mut self.bids, Naive::levels(&d["b"]));
                    Naive::set(&mut self.asks, Naive::levels(&d["a"]));
                    self.last = d["u"].as_u64();
                }
            }
            fn line(&mut self, line: &str) {
                let v: serde_json::Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
                if let Some(id) = v.get("lastUpdateId") {
                    Naive::set(&mut self.bids, Naive::levels(&v["bids"]));
                    Naive::set(&mut self.asks, Naive::levels(&v["asks"]));
                    self.last = id.as_u64();
                    for d in std::mem::take(&mut self.pending) {
                        self.diff(d);
                    }
                } else if v["data"]["e"] == "depthUpdate" {
                    self.diff(v["data"].clone());
                }
            }
            fn top(&self, n: usize) -> (Levels, Levels) {
                let mut bids: Vec<_> = self.bids.iter().map(|(p, q)| (*p, *q)).collect();
                let mut asks: Vec<_> = self.asks.iter().map(|(p, q)| (*p, *q)).collect();
                bids.sort_by(|a, b| b.cmp(a));
                asks.sort();
                bids.truncate(n);
                asks.truncate(n);
                (bids, asks)
            }
        }

        /// The book tickers of a capture by update id: `u → (bid, bid size, ask, ask size)`.
        fn tickers(lines: &[String]) -> HashMap<u64, (i64, i64, i64, i64)> {
            let mut out = HashMap::new();
            for l in lines.iter().filter(|l| l.contains("@bookTicker")) {
                let v: serde_json::Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
                let d = &v["data"];
                let f = |k: &str| naive_fixed(d[k].as_str().unwrap());
                out.insert(d["u"].as_u64().unwrap(), (f("b"), f("B"), f("a"), f("A")));
            }
            out
        }

        #[derive(Debug, Default)]
        struct Run {
            diffs: u64,
            buffered: u64,
            applied: u64,
            discarded_at_snapshot: usize,
            replayed_at_snapshot: usize,
            crossed_after_applied: u64,
            breaks: Vec<(u64, u64)>,
            ticker_checked: u64,
            ticker_mismatch: u64,
        }

        /// Feeds `lines` to `bb`, checking the book after every applied diff.
        fn run(
            bb: &mut BookBuilder,
            symbol: &str,
            lines: &[String],
            tickers: &HashMap<u64, (i64, i64, i64, i64)>,
        ) -> Run {
            let mut r = Run::default();
            for line in lines {
                let Some((sym, ev)) = parse_depth_line(line).unwrap() else { continue };
                let out = match ev {
                    DepthEvent::Diff(d) => {
                        assert_eq!(sym, symbol);
                        r.diffs += 1;
                        bb.on_diff(&d)
                    }
                    DepthEvent::Snapshot(s) => bb.on_snapshot(&s),
                };
                match out {
                    Outcome::Buffered => r.buffered += 1,
                    Outcome::Applied { crossed, .. } => {
                        r.applied += 1;
                        r.crossed_after_applied += u64::from(crossed);
                        assert_eq!(crossed, bb.book().is_crossed());
                    }
                    Outcome::Rebuilt { replayed, discarded, crossed } => {
                        r.applied += replayed as u64;
                        r.discarded_at_snapshot += discarded;
                        r.replayed_at_snapshot += replayed;
                        r.crossed_after_applied += u64::from(crossed);
                    }
                    Outcome::Break { expected, got } => r.breaks.push((expected, got)),
                    Outcome::Loaded { discarded } => r.discarded_at_snapshot += discarded,
                    Outcome::Dropped => {}
                }
                // Where a book ticker carries the update id the book is now at, its best bid and
                // ask must be the book's.
                if matches!(out, Outcome::Applied { .. } | Outcome::Rebuilt { .. })
                    && let Some(&(b, bq, a, aq)) = tickers.get(&bb.last_update_id().unwrap())
                {
                    r.ticker_checked += 1;
                    if bb.book().best_bid() != Some((b, bq)) || bb.book().best_ask() != Some((a, aq)) {
                        r.ticker_mismatch += 1;
                    }
                }
            }
            r
        }

        fn fmt_level((p, q): (i64, i64)) -> String {
            let mut f = crate::FixedBuf::new();
            let p = String::from_utf8_lossy(f.format(p)).into_owned();
            format!("{p} x {}", String::from_utf8_lossy(f.format(q)))
        }

        fn replay_matches_reference(symbol: &str) {
            let Some(lines) = capture(symbol) else { return };
            let upper = symbol.to_ascii_uppercase();
            let tickers = tickers(&lines);
            let mut bb = BookBuilder::new(Continuity::Spot);
            let r = run(&mut bb, &upper, &lines, &tickers);
            let mut naive = Naive::default();
            lines.iter().for_each(|l| naive.line(l));
            let s = bb.stats();
            eprintln!("{upper}: {r:?}");
            eprintln!(
                "{upper}: {s:?}, levels {:?}, last update id {:?}",
                bb.book().levels(),
                bb.last_update_id()
            );
            let (mut bids, mut asks) = (Vec::with_capacity(20), Vec::with_capacity(20));
            bb.book().top(5, &mut bids, &mut asks);
            for (i, (b, a)) in bids.iter().zip(&asks).enumerate() {
                eprintln!("{upper} top {}: bid {:>28} | ask {:>28}", i + 1, fmt_level(*b), fmt_level(*a));
            }
            assert_eq!(bb.state(), BookState::Live);
            assert_eq!((bb.breaks(), r.breaks.len()), (0, 0), "{:?}", r.breaks);
            assert_eq!(r.crossed_after_applied, 0, "crossed after {} applied diffs", r.crossed_after_applied);
            assert_eq!((s.crossed, s.buffer_overflow, s.snapshots), (0, 0, 1));
            assert_eq!(r.applied + s.dropped, r.diffs, "every diff applied or contained in the snapshot");
            assert_eq!(r.ticker_mismatch, 0, "book tickers disagree ({} checked)", r.ticker_checked);
            assert!(r.ticker_checked > 100, "too few book tickers to check: {}", r.ticker_checked);
            bb.book().top(20, &mut bids, &mut asks);
            let (nb, na) = naive.top(20);
            assert_eq!((bids.len(), asks.len()), (20, 20));
            assert_eq!((&bids, &asks), (&nb, &na), "top 20 differs from the reference");
            assert_eq!(naive.last, bb.last_update_id());
            // The whole book, not just the top.
            assert_eq!(bb.book().levels(), (naive.bids.len(), naive.asks.len()));
            assert!(bb.book().bids().all(|(p, q)| naive.bids.get(&p) == Some(&q)));
            assert!(bb.book().asks().all(|(p, q)| naive.asks.get(&p) == Some(&q)));
        }

        #[test]
        fn real_btcusdt_book_matches_the_reference() {
            replay_matches_reference("btcusdt");
        }

        #[test]
        fn real_ethusdt_book_matches_the_reference() {
            replay_matches_reference("ethusdt");
        }

        #[test]
        fn real_capture_missing_one_diff_breaks_once_then_a_snapshot_rebuilds() {
            let Some(lines) = capture("btcusdt") else { return };
            let depth: Vec<usize> =
                lines.iter().enumerate().filter(|(_, l)| l.contains("depthUpdate")).map(|(i, _)| i).collect();
            // The 1000th diff: ~95 s after the snapshot (line 8), well inside the first file.
            let gone = depth[999];
            let gone_diff = match parse_depth_line(&lines[gone]).unwrap().unwrap().1 {
                DepthEvent::Diff(d) => d,
                DepthEvent::Snapshot(_) => unreachable!(),
            };
            let cut: Vec<String> =
                lines.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, l)| l.clone()).collect();
            let none = HashMap::new();
            let mut broken = BookBuilder::new(Continuity::Spot);
            let r = run(&mut broken, "BTCUSDT", &cut, &none);
            assert_eq!(r.breaks, [(gone_diff.first, gone_diff.last + 1)]);
            assert_eq!((broken.breaks(), broken.state()), (1, BookState::Stale));
            assert_eq!(broken.last_update_id(), Some(gone_diff.first - 1), "stopped before the gap");
            // Everything from the break on waits for a new snapshot.
            assert_eq!(broken.buffered(), depth.len() - 1000);

            // A fresh snapshot, taken from an unbroken book 500 diffs later, rebuilds it.
            let (head, tail) = lines.split_at(depth[1499] + 1);
            let mut whole = BookBuilder::new(Continuity::Spot);
            run(&mut whole, "BTCUSDT", head, &none);
            let fresh = Snapshot {
                last_update_id: whole.last_update_id().unwrap(),
                bids: whole.book().bids().collect(),
                asks: whole.book().asks().collect(),
            };
            let out = broken.on_snapshot(&fresh);
            assert_eq!(
                out,
                Outcome::Rebuilt { replayed: depth.len() - 1500, discarded: 500, crossed: false },
                "buffered: the diff after the gap to the last one"
            );
            run(&mut whole, "BTCUSDT", tail, &none);
            assert_eq!((broken.state(), broken.breaks()), (BookState::Live, 1));
            assert_eq!(broken.last_update_id(), whole.last_update_id());
            assert_eq!(broken.book(), whole.book());
            eprintln!("BTCUSDT without diff #1000: {r:?}; rebuilt: {out:?}");
        }
    }
}
