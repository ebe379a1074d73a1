//! The integrity checker: plain logic, no I/O, no clock. The connection tasks feed it what
//! they send and receive — `(connection, symbol, seq, values)` updates and the control
//! events around them — and it counts every breach of the protocol's delivery promises
//! (docs/PROTOCOL.md, "Sequence numbers and conflation" and "unsubscribe"):
//!
//! - **seq going backwards** for a symbol on a connection (`seq_backwards`), and a *live*
//!   update whose seq is not larger than the previous one (`seq_repeated`; a snapshot may
//!   repeat the seq it already delivered, it may not go below it);
//! - **updates for symbols not subscribed** (`unsubscribed`): a symbol never subscribed,
//!   one whose `subscribed` reply has not arrived yet (the gateway sends the reply before
//!   the symbol's first update), or one whose `unsubscribed` reply has arrived. Between
//!   sending `unsubscribe` and its reply, updates of the symbol are still legal;
//! - after a **re-subscribe** the symbol starts again from nothing (its first update is
//!   usually a snapshot), so the seq history is reset when the `subscribed` reply arrives;
//! - with `--depth N`, **order books** (docs/PROTOCOL.md, "Order books"): per connection and
//!   symbol a book's own `seq` must strictly rise (`book_order`; jumps are conflation, and a
//!   re-subscribe starts the history again), and every book must be well formed
//!   (`book_invalid`): bids strictly descending by price, asks strictly ascending, best bid
//!   below best ask when both sides have levels, at most N levels a side and its `depth`
//!   field equal to the N asked for. A book for a symbol not held counts as `unsubscribed`,
//!   exactly as an update would.
//!
//! The connection tasks add `malformed` frames, `unexpected_closes` and `error_replies`;
//! `--verify-final` adds `final_mismatches`, `final_missing` and, with `--depth`,
//! `final_book_mismatches` (see [`crate::verify`]).
//! The checker also measures conflation: a live update whose seq jumps by more than 1 over
//! the previous update of that symbol on that connection.

use serde::{Deserialize, Serialize};
use tickgate::books::Levels;
use tickgate::feeds::Tick;
use tickgate::protocol::binary::BookRecord;

use crate::decode::Update;

/// Index of a connection in its [`Checker`].
pub type ConnId = usize;

/// Counts of every kind of violation. Any non-zero count fails the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    /// An update's seq was lower than the previous update's of that symbol on that connection.
    pub seq_backwards: u64,
    /// A live update's seq was equal to the previous one's (it must be larger).
    pub seq_repeated: u64,
    /// An update for a symbol the connection did not hold (never subscribed, not yet
    /// acknowledged, or after the `unsubscribed` reply).
    pub unsubscribed: u64,
    /// A frame or message that could not be decoded, or broke the WebSocket rules.
    pub malformed: u64,
    /// A close (or a dropped connection) the client did not initiate at the end of the run.
    pub unexpected_closes: u64,
    /// An `error` reply to a request of ours (every request the tool sends is valid).
    pub error_replies: u64,
    /// `--verify-final`: a client's last value of a symbol differed from `GET /snapshot`.
    pub final_mismatches: u64,
    /// `--verify-final`: the gateway has a value for a symbol the client holds, but the
    /// client never received one.
    pub final_missing: u64,
    /// `--trades`: a trade whose seq was not above the previous trade's of that symbol on
    /// that connection (trades come in feed order, each once).
    #[serde(default)]
    pub trade_order: u64,
    /// `--depth`: a book whose seq was not above the previous book's of that symbol on that
    /// connection (a book's seq rises with every change; jumps are conflation).
    #[serde(default)]
    pub book_order: u64,
    /// `--depth`: a book that is not well formed: bids not strictly descending, asks not
    /// strictly ascending, best bid not below best ask, more levels a side than the depth
    /// asked for, or a `depth` field other than the one asked for.
    #[serde(default)]
    pub book_invalid: u64,
    /// `--verify-final` with `--depth`: a client's last book of a symbol (its levels or its
    /// stale flag) differed from `GET /snapshot?depth=N`, or one of the two had a book and
    /// the other none.
    #[serde(default)]
    pub final_book_mismatches: u64,
}

impl Violations {
    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.seq_backwards
            + self.seq_repeated
            + self.unsubscribed
            + self.malformed
            + self.unexpected_closes
            + self.error_replies
            + self.final_mismatches
            + self.final_missing
            + self.trade_order
            + self.book_order
            + self.book_invalid
            + self.final_book_mismatches
    }

    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Violations) {
        self.seq_backwards += o.seq_backwards;
        self.seq_repeated += o.seq_repeated;
        self.unsubscribed += o.unsubscribed;
        self.malformed += o.malformed;
        self.unexpected_closes += o.unexpected_closes;
        self.error_replies += o.error_replies;
        self.final_mismatches += o.final_mismatches;
        self.final_missing += o.final_missing;
        self.trade_order += o.trade_order;
        self.book_order += o.book_order;
        self.book_invalid += o.book_invalid;
        self.final_book_mismatches += o.final_book_mismatches;
    }

    /// `(name, count)` pairs, for printing.
    pub fn named(&self) -> [(&'static str, u64); 12] {
        [
            ("seq_backwards", self.seq_backwards),
            ("seq_repeated", self.seq_repeated),
            ("unsubscribed", self.unsubscribed),
            ("malformed", self.malformed),
            ("unexpected_closes", self.unexpected_closes),
            ("error_replies", self.error_replies),
            ("final_mismatches", self.final_mismatches),
            ("final_missing", self.final_missing),
            ("trade_order", self.trade_order),
            ("book_order", self.book_order),
            ("book_invalid", self.book_invalid),
            ("final_book_mismatches", self.final_book_mismatches),
        ]
    }
}

/// Where a symbol stands on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymState {
    /// `subscribe` sent, `subscribed` reply not yet received: no update may arrive.
    Subscribing,
    /// Held: updates arrive.
    Subscribed,
    /// `unsubscribe` sent, reply not yet received: updates may still arrive.
    Unsubscribing,
}

/// What the checker made of one update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A legal update. `conflated`: its seq jumped by more than 1 over the previous update
    /// of the symbol (a live update with a previous one only).
    Ok {
        /// Intermediate updates were conflated away.
        conflated: bool,
    },
    /// seq lower than the previous one.
    SeqBackwards,
    /// A live update with the previous seq.
    SeqRepeated,
    /// The symbol is not held.
    Unsubscribed,
}

#[derive(Clone, Debug)]
struct Slot {
    symbol: u32,
    state: SymState,
    last: Option<Tick>,
    /// Seq of the last trade received (0: none).
    last_trade: u64,
    /// Seq of the last order book accepted in order (`None`: none since subscribing).
    last_book: Option<u64>,
    /// That book's levels, kept only when the checker keeps books (`--verify-final`):
    /// boxed, so a slot without one stays small.
    book: Option<Box<Levels>>,
}

impl Slot {
    fn new(symbol: u32, state: SymState) -> Slot {
        Slot { symbol, state, last: None, last_trade: 0, last_book: None, book: None }
    }

    /// Forgets what was received (a fresh subscription starts from nothing).
    fn reset(&mut self) {
        self.last = None;
        self.last_trade = 0;
        self.last_book = None;
        self.book = None;
    }
}

/// Trades received and gaps reported (`--trades`): not violations, the accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeCounts {
    /// Trades received.
    pub trades: u64,
    /// Gap notices received.
    pub gaps: u64,
    /// Trades reported missed (the sum of the gaps' `missed`).
    pub missed: u64,
}

impl TradeCounts {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &TradeCounts) {
        self.trades += o.trades;
        self.gaps += o.gaps;
        self.missed += o.missed;
    }
}

/// Order books received (`--depth`): not violations, the accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookCounts {
    /// Books received (every book decoded, whether it passed the checks or not).
    pub books: u64,
    /// Of those, books marked stale (the gateway's last good levels of a broken book).
    pub stale: u64,
}

impl BookCounts {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &BookCounts) {
        self.books += o.books;
        self.stale += o.stale;
    }
}

/// What is wrong with `b` as a book of a subscription at `depth` levels a side, if anything
/// (the `book_invalid` rules; see the [module docs](self)).
pub fn book_problem(b: &BookRecord, depth: u16) -> Option<String> {
    let l = &b.book;
    let n = usize::from(depth);
    if b.depth != depth {
        return Some(format!("depth field {} but {depth} was asked for", b.depth));
    }
    if l.bids.len() > n || l.asks.len() > n {
        return Some(format!("{} bids and {} asks, more than depth {depth}", l.bids.len(), l.asks.len()));
    }
    if let Some(w) = l.bids.windows(2).find(|w| w[0].0 <= w[1].0) {
        return Some(format!("bids not strictly descending: {} then {}", w[0].0, w[1].0));
    }
    if let Some(w) = l.asks.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Some(format!("asks not strictly ascending: {} then {}", w[0].0, w[1].0));
    }
    if let (Some(bid), Some(ask)) = (l.bids.first(), l.asks.first())
        && bid.0 >= ask.0
    {
        return Some(format!("crossed: best bid {} >= best ask {}", bid.0, ask.0));
    }
    None
}

/// One connection's symbols, sorted by symbol id.
#[derive(Clone, Debug, Default)]
struct Conn {
    slots: Vec<Slot>,
}

impl Conn {
    fn find(&self, symbol: u32) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&symbol, |s| s.symbol)
    }
}

/// Longest list of violation descriptions kept (per checker) for the report.
pub const MAX_SAMPLES: usize = 10;

/// The checker for a set of connections (one per worker thread).
#[derive(Clone, Debug, Default)]
pub struct Checker {
    conns: Vec<Conn>,
    /// What was found so far.
    pub violations: Violations,
    /// Descriptions of the first [`MAX_SAMPLES`] violations.
    pub samples: Vec<String>,
    /// Trades and gaps received.
    pub trades: TradeCounts,
    /// Order books received.
    pub books: BookCounts,
    /// Keep each symbol's last book for [`Checker::final_books`] (`--verify-final`); off by
    /// default, as at depth 50 a book is about 1.6 KB per held symbol.
    keep_books: bool,
}

impl Checker {
    /// An empty checker.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Keep (or not) each symbol's last book, for [`Checker::final_books`].
    pub fn keep_books(&mut self, keep: bool) {
        self.keep_books = keep;
    }

    /// Adds a connection; returns its id (0, 1, 2, ...).
    pub fn add_conn(&mut self) -> ConnId {
        self.conns.push(Conn::default());
        self.conns.len() - 1
    }

    fn conn(&mut self, c: ConnId) -> &mut Conn {
        if c >= self.conns.len() {
            self.conns.resize_with(c + 1, Conn::default);
        }
        &mut self.conns[c]
    }

    fn sample(&mut self, s: impl FnOnce() -> String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(s());
        }
    }

    /// We sent `subscribe` for `symbols`. Symbols already held are left as they are (a
    /// repeated subscribe only changes `max_rate`).
    pub fn subscribe_sent(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            if let Err(at) = conn.find(s) {
                conn.slots.insert(at, Slot::new(s, SymState::Subscribing));
            }
        }
    }

    /// The `subscribed` reply for `symbols` arrived: they are held from now on, and a symbol
    /// that was waiting for this reply starts with no history.
    pub fn subscribed(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            match conn.find(s) {
                Ok(i) => {
                    let slot = &mut conn.slots[i];
                    if slot.state == SymState::Subscribing {
                        slot.reset();
                    }
                    slot.state = SymState::Subscribed;
                }
                Err(at) => conn.slots.insert(at, Slot::new(s, SymState::Subscribed)),
            }
        }
    }

    /// A `subscribe` of ours was refused with an error: its symbols that were still waiting
    /// are dropped.
    pub fn subscribe_failed(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            if let Ok(i) = conn.find(s)
                && conn.slots[i].state == SymState::Subscribing
            {
                conn.slots.remove(i);
            }
        }
    }

    /// We sent `unsubscribe` for `symbols`: updates may still arrive until the reply.
    pub fn unsubscribe_sent(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            if let Ok(i) = conn.find(s) {
                conn.slots[i].state = SymState::Unsubscribing;
            }
        }
    }

    /// The `unsubscribed` reply arrived: any further update of these symbols is a violation.
    pub fn unsubscribed(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            if let Ok(i) = conn.find(s) {
                conn.slots.remove(i);
            }
        }
    }

    /// An `unsubscribe` of ours was refused with an error: the symbols are still held.
    pub fn unsubscribe_failed(&mut self, c: ConnId, symbols: &[u32]) {
        let conn = self.conn(c);
        for &s in symbols {
            if let Ok(i) = conn.find(s)
                && conn.slots[i].state == SymState::Unsubscribing
            {
                conn.slots[i].state = SymState::Subscribed;
            }
        }
    }

    /// Checks one update received on connection `c` and remembers it as the symbol's last
    /// value. Violations are counted (and the first few described).
    pub fn update(&mut self, c: ConnId, u: &Update) -> Verdict {
        let t = &u.tick;
        let conn = self.conn(c);
        let slot = match conn.find(t.symbol) {
            Ok(i) if conn.slots[i].state != SymState::Subscribing => &mut conn.slots[i],
            found => {
                let state = found.ok().map(|i| conn.slots[i].state);
                self.violations.unsubscribed += 1;
                self.sample(|| {
                    format!("conn {c}: update of symbol {} (seq {}) while {:?}", t.symbol, t.seq, state)
                });
                return Verdict::Unsubscribed;
            }
        };
        let verdict = match &slot.last {
            None => Verdict::Ok { conflated: false },
            Some(prev) if t.seq < prev.seq => Verdict::SeqBackwards,
            Some(prev) if t.seq == prev.seq && !u.snapshot => Verdict::SeqRepeated,
            Some(prev) => Verdict::Ok { conflated: !u.snapshot && t.seq > prev.seq.saturating_add(1) },
        };
        let prev_seq = slot.last.map_or(0, |p| p.seq);
        match verdict {
            Verdict::Ok { .. } => slot.last = Some(*t),
            Verdict::SeqBackwards => {
                self.violations.seq_backwards += 1;
                self.sample(|| {
                    format!("conn {c}: symbol {} seq went back {prev_seq} -> {}", t.symbol, t.seq)
                });
            }
            Verdict::SeqRepeated => {
                self.violations.seq_repeated += 1;
                self.sample(|| format!("conn {c}: symbol {} live update repeated seq {}", t.symbol, t.seq));
            }
            Verdict::Unsubscribed => {}
        }
        verdict
    }

    /// Checks a trade received on `c`: of a held symbol, its seq above the previous trade's.
    pub fn trade(&mut self, c: ConnId, symbol: u32, seq: u64) {
        self.trades.trades += 1;
        let conn = self.conn(c);
        let slot = match conn.find(symbol) {
            Ok(i) if conn.slots[i].state != SymState::Subscribing => &mut conn.slots[i],
            _ => {
                self.violations.unsubscribed += 1;
                self.sample(|| format!("conn {c}: trade of symbol {symbol} (seq {seq}) not held"));
                return;
            }
        };
        let prev = slot.last_trade;
        slot.last_trade = slot.last_trade.max(seq);
        if seq <= prev {
            self.violations.trade_order += 1;
            self.sample(|| format!("conn {c}: symbol {symbol} trade seq {seq} after {prev}"));
        }
    }

    /// Checks an order book received on `c` by a subscription at `depth` levels a side: of a
    /// held symbol, its seq above the previous book's, well formed ([`book_problem`]). A book
    /// in order becomes the symbol's last book (kept whole if the checker keeps books), even
    /// if it is malformed: it is what the client shows.
    pub fn book(&mut self, c: ConnId, depth: u16, b: BookRecord) {
        self.books.books += 1;
        self.books.stale += u64::from(b.book.stale);
        let (symbol, seq) = (b.symbol, b.book.seq);
        let problem = book_problem(&b, depth);
        let keep = self.keep_books;
        let conn = self.conn(c);
        let slot = match conn.find(symbol) {
            Ok(i) if conn.slots[i].state != SymState::Subscribing => &mut conn.slots[i],
            found => {
                let state = found.ok().map(|i| conn.slots[i].state);
                self.violations.unsubscribed += 1;
                self.sample(|| format!("conn {c}: book of symbol {symbol} (seq {seq}) while {state:?}"));
                return;
            }
        };
        let prev = slot.last_book;
        if prev.is_none_or(|p| seq > p) {
            slot.last_book = Some(seq);
            if keep {
                // The book is ours: moved in, the previous one's box reused.
                match &mut slot.book {
                    Some(kept) => **kept = b.book,
                    None => slot.book = Some(Box::new(b.book)),
                }
            }
        } else {
            self.violations.book_order += 1;
            self.sample(|| format!("conn {c}: symbol {symbol} book seq {seq} after {}", prev.unwrap_or(0)));
        }
        if let Some(why) = problem {
            self.violations.book_invalid += 1;
            self.sample(|| format!("conn {c}: symbol {symbol} book seq {seq} invalid: {why}"));
        }
    }

    /// Counts a gap notice received on `c` (`missed` trades of `symbol` dropped).
    pub fn gap(&mut self, c: ConnId, symbol: u32, missed: u64) {
        self.trades.gaps += 1;
        self.trades.missed += missed;
        if !self.knows(c, symbol) {
            self.violations.unsubscribed += 1;
            self.sample(|| format!("conn {c}: gap for symbol {symbol} not held"));
        }
    }

    /// Counts an update for a symbol that is not in the gateway's universe at all (it
    /// cannot be held, so it counts as `unsubscribed`).
    pub fn unknown_symbol(&mut self, c: ConnId, name: &str) {
        self.violations.unsubscribed += 1;
        self.sample(|| format!("conn {c}: update for unknown symbol {name:?}"));
    }

    /// Counts a malformed frame or message on `c`.
    pub fn malformed(&mut self, c: ConnId, what: &str) {
        self.violations.malformed += 1;
        self.sample(|| format!("conn {c}: malformed: {what}"));
    }

    /// Counts a close we did not initiate (`code` 1006 for a dropped connection).
    pub fn unexpected_close(&mut self, c: ConnId, code: u16, why: &str) {
        self.violations.unexpected_closes += 1;
        self.sample(|| format!("conn {c}: unexpected close {code}: {why}"));
    }

    /// Counts an `error` reply.
    pub fn error_reply(&mut self, c: ConnId, code: &str, message: &str) {
        self.violations.error_replies += 1;
        self.sample(|| format!("conn {c}: error reply {code}: {message}"));
    }

    /// The symbols of `c` and their states, in symbol order.
    pub fn held(&self, c: ConnId) -> impl Iterator<Item = (u32, SymState)> + '_ {
        self.conns.get(c).into_iter().flat_map(|conn| conn.slots.iter().map(|s| (s.symbol, s.state)))
    }

    /// Whether `c` has `symbol` in any state.
    pub fn knows(&self, c: ConnId, symbol: u32) -> bool {
        self.conns.get(c).is_some_and(|conn| conn.find(symbol).is_ok())
    }

    /// The last value received of every symbol `c` holds (`Subscribed`), `None` for a held
    /// symbol that never received one.
    pub fn final_values(&self, c: ConnId) -> Vec<(u32, Option<Tick>)> {
        self.conns.get(c).map_or_else(Vec::new, |conn| {
            conn.slots
                .iter()
                .filter(|s| s.state == SymState::Subscribed)
                .map(|s| (s.symbol, s.last))
                .collect()
        })
    }

    /// The last book received of every symbol `c` holds (`Subscribed`), `None` for a held
    /// symbol that never received one (or when the checker does not keep books).
    pub fn final_books(&self, c: ConnId) -> Vec<(u32, Option<Levels>)> {
        self.conns.get(c).map_or_else(Vec::new, |conn| {
            conn.slots
                .iter()
                .filter(|s| s.state == SymState::Subscribed)
                .map(|s| (s.symbol, s.book.as_deref().cloned()))
                .collect()
        })
    }

    /// Number of connections.
    pub fn conns(&self) -> usize {
        self.conns.len()
    }
}
