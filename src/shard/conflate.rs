//! Per-client conflation slots: at most one pending update per subscribed symbol.
//!
//! A client's [`ClientSubs`] knows, for each symbol it holds, the newest `seq` it was sent,
//! whether an update is pending, and its `max_rate` pacing. When a tick arrives the shard
//! [`offers`](ClientSubs::offer) its seq; when the client can be written, the shard
//! [`drains`](ClientSubs::drain_due) the due symbols and sends each one's *latest* frame.
//! So a client that cannot keep up accumulates nothing beyond one flag per symbol, and when
//! it drains it gets the newest state of everything that changed: memory is
//! O(subscribed symbols), never O(updates). Stale offers (seq not newer than what was sent)
//! are ignored, which is what keeps `seq` from ever going backwards on a connection.
//!
//! Plain deterministic logic: time is passed in, nothing here does I/O.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a symbol id with one multiplication (Fibonacci hashing). Symbol ids are dense and
/// chosen by the gateway, not by clients, so a keyed (DoS-resistant) hash buys nothing here;
/// this lookup sits in the fan-out and fill paths for every subscriber.
#[derive(Default)]
pub struct SymbolHasher(u64);

impl Hasher for SymbolHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SymbolMap<V> = HashMap<u32, V, BuildHasherDefault<SymbolHasher>>;

/// One subscribed symbol's state for one client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Newest seq delivered to the client (0 = nothing yet).
    pub sent_seq: u64,
    /// Minimum ns between two updates (0 = unlimited), from `max_rate`.
    pub interval_ns: u64,
    /// Earliest time the next update may go out.
    pub next_due_ns: u64,
    /// An update is waiting.
    pub pending: bool,
    /// The pacing came from the server default (no `max_rate` given), so a live change of
    /// the default applies to it.
    pub default_pacing: bool,
}

/// What an [`ClientSubs::offer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Not subscribed, or not newer than what the client has: nothing to do.
    Ignored,
    /// The symbol became pending: the client has something new to send.
    Pending,
    /// The symbol was already pending: the newer value replaces it (one update conflated).
    Conflated,
}

/// All subscriptions of one client, with their pending flags.
#[derive(Debug, Default)]
pub struct ClientSubs {
    subs: SymbolMap<Subscription>,
    /// Pending symbols, each at most once, in the order they became pending.
    dirty: Vec<u32>,
}

impl ClientSubs {
    /// Subscribes to `symbol` with pacing `interval_ns`. Returns true if it is new; if it was
    /// already held only the interval changes (live max_rate change).
    pub fn subscribe(&mut self, symbol: u32, interval_ns: u64) -> bool {
        self.subscribe_paced(symbol, interval_ns, false)
    }

    /// As [`ClientSubs::subscribe`]; `default_pacing` marks an interval taken from the server
    /// default, which [`ClientSubs::retune_default`] may change later.
    pub fn subscribe_paced(&mut self, symbol: u32, interval_ns: u64, default_pacing: bool) -> bool {
        match self.subs.get_mut(&symbol) {
            Some(s) => {
                Self::repace(s, interval_ns);
                s.default_pacing = default_pacing;
                false
            }
            None => {
                self.subs
                    .insert(symbol, Subscription { interval_ns, default_pacing, ..Subscription::default() });
                true
            }
        }
    }

    /// A shorter interval applies from now; a longer one from the next send.
    fn repace(s: &mut Subscription, interval_ns: u64) {
        s.next_due_ns = s.next_due_ns.saturating_sub(s.interval_ns.saturating_sub(interval_ns));
        s.interval_ns = interval_ns;
    }

    /// Applies a new server-default pacing to every subscription that uses the default.
    pub fn retune_default(&mut self, interval_ns: u64) {
        for s in self.subs.values_mut().filter(|s| s.default_pacing) {
            Self::repace(s, interval_ns);
        }
    }

    /// Drops `symbol` and any update pending for it. Returns whether it was held.
    pub fn unsubscribe(&mut self, symbol: u32) -> bool {
        match self.subs.remove(&symbol) {
            Some(s) => {
                if s.pending {
                    self.dirty.retain(|d| *d != symbol);
                }
                true
            }
            None => false,
        }
    }

    /// A tick with `seq` for `symbol` arrived.
    #[inline]
    pub fn offer(&mut self, symbol: u32, seq: u64) -> Offer {
        let Some(s) = self.subs.get_mut(&symbol) else { return Offer::Ignored };
        if seq <= s.sent_seq {
            return Offer::Ignored;
        }
        if s.pending {
            return Offer::Conflated;
        }
        s.pending = true;
        self.dirty.push(symbol);
        Offer::Pending
    }

    /// Records that `seq` of `symbol` was delivered outside a drain (a snapshot). A pending
    /// flag stays set, but the drain sends nothing for it unless a newer tick has arrived
    /// (its `emit` sees `sent_seq` and returns `None`).
    pub fn delivered(&mut self, symbol: u32, seq: u64, now_ns: u64) {
        if let Some(s) = self.subs.get_mut(&symbol) {
            s.sent_seq = s.sent_seq.max(seq);
            s.next_due_ns = now_ns.saturating_add(s.interval_ns);
        }
    }

    /// Sends every pending symbol that is due at `now_ns`: calls `emit(symbol, sent_seq)`,
    /// which appends the symbol's latest frame and returns that frame's seq (or `None` if
    /// there is nothing newer to send after all). Symbols held back by `max_rate` stay
    /// pending; returns the earliest time one of them becomes due.
    pub fn drain_due(&mut self, now_ns: u64, mut emit: impl FnMut(u32, u64) -> Option<u64>) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut keep = 0;
        for i in 0..self.dirty.len() {
            let symbol = self.dirty[i];
            let Some(s) = self.subs.get_mut(&symbol) else { continue };
            if now_ns < s.next_due_ns {
                next = Some(next.map_or(s.next_due_ns, |n| n.min(s.next_due_ns)));
                self.dirty[keep] = symbol;
                keep += 1;
                continue;
            }
            s.pending = false;
            if let Some(seq) = emit(symbol, s.sent_seq) {
                s.sent_seq = s.sent_seq.max(seq);
                s.next_due_ns = now_ns.saturating_add(s.interval_ns);
            }
        }
        self.dirty.truncate(keep);
        next
    }

    /// Number of subscribed symbols.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// True if subscribed to nothing.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Number of pending updates (≤ [`ClientSubs::len`], always).
    pub fn pending(&self) -> usize {
        self.dirty.len()
    }

    /// Whether `symbol` is held.
    pub fn contains(&self, symbol: u32) -> bool {
        self.subs.contains_key(&symbol)
    }

    /// The state of `symbol`, if held.
    pub fn get(&self, symbol: u32) -> Option<&Subscription> {
        self.subs.get(&symbol)
    }

    /// Subscribed symbol ids (arbitrary order).
    pub fn symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.subs.keys().copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pending_then_conflated_then_drained_latest() {
        let mut c = ClientSubs::default();
        assert!(c.subscribe(1, 0));
        assert_eq!(c.offer(1, 1), Offer::Pending);
        assert_eq!(c.offer(1, 2), Offer::Conflated);
        assert_eq!(c.offer(2, 1), Offer::Ignored, "not subscribed");
        let mut sent = vec![];
        c.drain_due(0, |s, _| {
            sent.push(s);
            Some(2)
        });
        assert_eq!(sent, vec![1]);
        assert_eq!(c.offer(1, 2), Offer::Ignored, "not newer than sent");
        assert_eq!(c.offer(1, 3), Offer::Pending);
    }

    #[test]
    fn max_rate_holds_updates_until_due() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 500);
        c.offer(1, 1);
        assert_eq!(c.drain_due(1000, |_, _| Some(1)), None);
        c.offer(1, 2);
        // Sent at 1000, so the next is due at 1500.
        assert_eq!(c.drain_due(1200, |_, _| panic!("too early")), Some(1500));
        assert_eq!(c.pending(), 1);
        let mut n = 0;
        c.drain_due(1500, |_, _| {
            n += 1;
            Some(2)
        });
        assert_eq!((n, c.pending()), (1, 0));
    }

    #[test]
    fn resubscribe_changes_interval_live() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 1_000);
        c.offer(1, 1);
        c.drain_due(0, |_, _| Some(1));
        c.offer(1, 2);
        assert_eq!(c.drain_due(10, |_, _| Some(2)), Some(1_000));
        assert!(!c.subscribe(1, 100), "already held");
        // Shorter interval applies at once: due at 100 now.
        assert_eq!(c.drain_due(50, |_, _| Some(2)), Some(100));
        assert_eq!(c.drain_due(100, |_, _| Some(2)), None);
    }

    #[test]
    fn default_pacing_follows_a_live_default_change_explicit_pacing_does_not() {
        let mut c = ClientSubs::default();
        c.subscribe_paced(1, 1_000, true);
        c.subscribe_paced(2, 1_000, false);
        c.retune_default(100);
        assert_eq!(c.get(1).map(|s| s.interval_ns), Some(100));
        assert_eq!(c.get(2).map(|s| s.interval_ns), Some(1_000));
    }

    #[test]
    fn unsubscribe_drops_pending() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 0);
        c.subscribe(2, 0);
        c.offer(1, 1);
        c.offer(2, 1);
        assert!(c.unsubscribe(1));
        assert!(!c.unsubscribe(1));
        let mut sent = vec![];
        c.drain_due(0, |s, _| {
            sent.push(s);
            Some(1)
        });
        assert_eq!(sent, vec![2]);
    }

    #[test]
    fn snapshot_delivery_suppresses_older_live_ticks() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 0);
        c.delivered(1, 10, 0);
        assert_eq!(c.offer(1, 9), Offer::Ignored);
        assert_eq!(c.offer(1, 10), Offer::Ignored);
        assert_eq!(c.offer(1, 11), Offer::Pending);
    }

    proptest! {
        /// Against a model: the last value always wins, per-symbol order is kept (sent seqs
        /// strictly rise), pending never exceeds the subscriptions, and every symbol that
        /// received a newer tick ends up delivered at its latest seq once drained.
        #[test]
        fn conflation_invariants(
            events in proptest::collection::vec((0u32..8, 0u8..4), 1..400),
            interval in prop_oneof![Just(0u64), 1u64..50],
        ) {
            let mut c = ClientSubs::default();
            for s in 0..5 { c.subscribe(s, interval); }
            let mut latest: HashMap<u32, u64> = HashMap::new();
            let mut delivered: HashMap<u32, u64> = HashMap::new();
            let mut now = 0u64;
            for (symbol, action) in events {
                now += 7;
                if action < 3 {
                    // a tick: seqs rise by one per symbol
                    let seq = latest.entry(symbol).or_insert(0);
                    *seq += 1;
                    let seq = *seq;
                    c.offer(symbol, seq);
                } else {
                    c.drain_due(now, |s, sent| {
                        let l = latest[&s];
                        assert!(l > sent, "emitted without anything newer");
                        let prev = delivered.insert(s, l).unwrap_or(0);
                        assert!(l > prev, "seq went backwards or repeated");
                        Some(l)
                    });
                }
                prop_assert!(c.pending() <= c.len());
            }
            // Drain everything (far in the future so pacing allows it).
            c.drain_due(u64::MAX / 2, |s, _| {
                let l = latest[&s];
                delivered.insert(s, l);
                Some(l)
            });
            prop_assert_eq!(c.pending(), 0);
            for s in 0..5u32 {
                prop_assert_eq!(delivered.get(&s), latest.get(&s), "symbol {} not converged", s);
            }
        }
    }
}
