//! The gateway's order books: the best `server.max_depth` levels a side of every symbol whose
//! source keeps a book (capture replays, the simulator with `feed.depth_levels`), shared by the
//! feed thread (the only writer), the shards (which encode books for their clients) and
//! `/snapshot?depth=N`.
//!
//! The source owns the full book and its correctness ([`tickgate_feeds::book`]); this store
//! holds only what clients can be sent. Per symbol it keeps the top levels, a `seq` that rises
//! by one per visible change, and a `stale` flag. On each change the feed thread puts a
//! [`tickgate_feeds::TickKind::Book`] notice on the ring carrying the new `seq` and the
//! shallowest level that changed, so a shard knows which of its clients' depths saw a
//! change without reading the store.
//!
//! Rules that make a sent book safe:
//! - A stale source book (a continuity break, or crossed) is never copied in: the store keeps
//!   the last good levels and sets `stale`, which clients are shown. A book is never crossed
//!   when it is sent.
//! - Levels are copied only when something in the top `max_depth` changed (or the stale flag
//!   did), so a diff deep in the book costs no notice and wakes nobody.
//!
//! One `Mutex` per symbol: the feed thread holds it to copy at most `2 × max_depth` levels,
//! a shard to encode one book, so contention is brief and per symbol.

use std::sync::{Mutex, MutexGuard};

use tickgate_feeds::BookHealth;

/// Levels a side kept when nothing says otherwise (`server.max_depth`'s default).
pub const DEFAULT_MAX_DEPTH: usize = 50;

/// The top of one symbol's book, as published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    /// Rises by 1 per published change; 0 = no book yet.
    pub seq: u64,
    /// The source's book is out of date: these are its last good levels.
    pub stale: bool,
    /// Event time of the change, ns since the Unix epoch.
    pub ts_event: u64,
    /// When the feed thread published it, ns since the Unix epoch.
    pub ts_gateway: u64,
    /// Bids `(price, size)`, best (highest) first, fixed point 10^8.
    pub bids: Vec<(i64, i64)>,
    /// Asks `(price, size)`, best (lowest) first, fixed point 10^8.
    pub asks: Vec<(i64, i64)>,
}

impl Levels {
    /// Whether best bid < best ask (or a side is empty), and each side strictly ordered.
    pub fn is_sane(&self) -> bool {
        let bids_ok = self.bids.windows(2).all(|w| w[0].0 > w[1].0);
        let asks_ok = self.asks.windows(2).all(|w| w[0].0 < w[1].0);
        let uncrossed = match (self.bids.first(), self.asks.first()) {
            (Some(b), Some(a)) => b.0 < a.0,
            _ => true,
        };
        bids_ok && asks_ok && uncrossed
    }
}

/// A published change: the new `seq` and the shallowest level (per side) that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The book's new seq.
    pub seq: u64,
    /// 0 = the touch (or the stale flag) changed: every depth sees it.
    pub first_changed: usize,
}

/// Every symbol's published book top.
#[derive(Debug)]
pub struct BookStore {
    depth: usize,
    entries: Vec<Mutex<Levels>>,
}

/// The shallowest index at which `a` and `b` differ (their common length if one is a prefix of
/// the other and they differ in length), or `None` if equal.
fn first_difference(a: &[(i64, i64)], b: &[(i64, i64)]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

impl BookStore {
    /// A store for `symbols` ids keeping `depth` levels a side (`server.max_depth`).
    pub fn new(symbols: usize, depth: usize) -> BookStore {
        BookStore { depth: depth.max(1), entries: (0..symbols).map(|_| Mutex::default()).collect() }
    }

    /// Levels kept per side.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn lock(&self, symbol: u32) -> Option<MutexGuard<'_, Levels>> {
        // A panic while holding the lock cannot leave `Levels` half-written in a way that
        // matters (the worst is a stale copy): keep serving it.
        self.entries.get(symbol as usize).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The feed thread publishes the source's book of `symbol` (its top `depth()` levels, best
    /// first, and its health). Returns the change, or `None` if nothing visible changed.
    pub fn publish(
        &self,
        symbol: u32,
        health: BookHealth,
        bids: &[(i64, i64)],
        asks: &[(i64, i64)],
        ts_event: u64,
        ts_gateway: u64,
    ) -> Option<Change> {
        let mut e = self.lock(symbol)?;
        let first_changed = match health {
            BookHealth::Stale if e.stale => return None,
            BookHealth::Stale => {
                e.stale = true;
                0
            }
            BookHealth::Live => {
                let (bids, asks) = (&bids[..bids.len().min(self.depth)], &asks[..asks.len().min(self.depth)]);
                let diff = match (first_difference(&e.bids, bids), first_difference(&e.asks, asks)) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(usize::MAX).min(b.unwrap_or(usize::MAX))),
                };
                let first = match (diff, e.stale) {
                    (None, false) => return None,
                    (_, true) => 0,
                    (Some(k), false) => k,
                };
                e.stale = false;
                e.bids.clear();
                e.bids.extend_from_slice(bids);
                e.asks.clear();
                e.asks.extend_from_slice(asks);
                first
            }
        };
        e.seq += 1;
        e.ts_event = ts_event;
        e.ts_gateway = ts_gateway;
        Some(Change { seq: e.seq, first_changed })
    }

    /// The book's current seq (0: none).
    pub fn seq(&self, symbol: u32) -> u64 {
        self.lock(symbol).map_or(0, |e| e.seq)
    }

    /// Runs `f` on `symbol`'s published levels under its lock (keep it short: the feed thread
    /// waits for it). `None` for an id outside the universe.
    pub fn with<R>(&self, symbol: u32, f: impl FnOnce(&Levels) -> R) -> Option<R> {
        self.lock(symbol).map(|e| f(&e))
    }

    /// A copy of `symbol`'s book cut to `depth` levels a side, if it has one.
    pub fn read(&self, symbol: u32, depth: usize) -> Option<Levels> {
        self.with(symbol, |e| {
            (e.seq > 0).then(|| Levels {
                bids: e.bids.iter().take(depth).copied().collect(),
                asks: e.asks.iter().take(depth).copied().collect(),
                ..*e
            })
        })
        .flatten()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIVE: BookHealth = BookHealth::Live;

    #[test]
    fn publishes_only_visible_changes_and_names_the_shallowest() {
        let store = BookStore::new(2, 3);
        let c = store.publish(0, LIVE, &[(99, 1), (98, 1)], &[(101, 1)], 1, 2).unwrap();
        assert_eq!(c, Change { seq: 1, first_changed: 0 });
        assert_eq!(store.publish(0, LIVE, &[(99, 1), (98, 1)], &[(101, 1)], 3, 4), None, "nothing changed");
        let c = store.publish(0, LIVE, &[(99, 1), (98, 2)], &[(101, 1)], 5, 6).unwrap();
        assert_eq!(c, Change { seq: 2, first_changed: 1 });
        let c = store.publish(0, LIVE, &[(99, 1), (98, 2)], &[(101, 1), (102, 7)], 7, 8).unwrap();
        assert_eq!(c, Change { seq: 3, first_changed: 1 }, "a level added below the touch");
        // Beyond the store's depth: invisible.
        let deep = [(99, 1), (98, 2), (97, 1), (96, 5)];
        let c = store.publish(0, LIVE, &deep, &[(101, 1), (102, 7)], 9, 10).unwrap();
        assert_eq!(c.first_changed, 2);
        let deeper = [(99, 1), (98, 2), (97, 1), (95, 5)];
        assert_eq!(store.publish(0, LIVE, &deeper, &[(101, 1), (102, 7)], 11, 12), None);
        let l = store.read(0, 2).unwrap();
        assert_eq!((l.seq, l.bids.as_slice(), l.ts_event), (4, &[(99, 1), (98, 2)][..], 9));
        assert!(store.read(1, 2).is_none(), "no book yet");
        assert!(store.read(7, 2).is_none(), "not a symbol");
    }

    #[test]
    fn stale_keeps_the_last_good_levels_and_recovery_notifies_every_depth() {
        let store = BookStore::new(1, 5);
        store.publish(0, LIVE, &[(99, 1)], &[(101, 1)], 1, 1);
        // A crossed source book reported stale: its levels are not copied.
        let c = store.publish(0, BookHealth::Stale, &[(102, 1)], &[(101, 1)], 2, 2).unwrap();
        assert_eq!(c, Change { seq: 2, first_changed: 0 });
        assert_eq!(store.publish(0, BookHealth::Stale, &[], &[], 3, 3), None, "already stale");
        let l = store.read(0, 5).unwrap();
        assert!(l.stale && l.is_sane());
        assert_eq!(l.bids, vec![(99, 1)]);
        // Rebuilt to the very same levels: still a change (the flag), seen at every depth.
        let c = store.publish(0, LIVE, &[(99, 1)], &[(101, 1)], 4, 4).unwrap();
        assert_eq!(c, Change { seq: 3, first_changed: 0 });
        assert!(!store.read(0, 5).unwrap().stale);
    }

    #[test]
    fn sanity_check() {
        let mut l =
            Levels { bids: vec![(99, 1), (98, 1)], asks: vec![(100, 1), (101, 1)], ..Levels::default() };
        assert!(l.is_sane());
        l.asks[0].0 = 99;
        assert!(!l.is_sane(), "crossed");
        l.asks[0].0 = 102;
        assert!(!l.is_sane(), "asks not ascending");
    }
}
