//! Per-client conflation slots: one dense slot per subscribed symbol, nothing per update.
//!
//! A client's [`ClientSubs`] is a vector of [`Subscription`]s sorted by symbol id. A slot
//! remembers the newest `seq` the client was sent, its `max_rate` pacing, and whether it is
//! **armed** (registered with the shard's index to wake the client on the symbol's next
//! tick). A slot holds no pending flag and no queue: what is pending is simply "the shard's
//! cached tick of that symbol is newer than `sent_seq`". Intake therefore never touches a
//! client (a tick only updates the shard's cache and wakes the clients armed on it), and a
//! flush [`drains`](ClientSubs::drain_due) by walking the client's own slots and comparing
//! seqs: memory is O(subscribed symbols), never O(updates), and a client that cannot keep up
//! gets the newest state of everything that changed when it drains. Stale values (seq not
//! newer than what was sent) are never sent, which is what keeps `seq` from going backwards
//! on a connection.
//!
//! A slot with a `depth` (an order-book subscription) also remembers the newest book seq it
//! was sent: its book is pending when the shard's book cache has a newer change within that
//! depth, and goes out in the same drain as the quote, paced together by `max_rate`.
//!
//! Plain deterministic logic: time and the cache's seqs are passed in, nothing here does I/O.

/// One subscribed symbol's state for one client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The symbol id.
    pub symbol: u32,
    /// Registered with the shard's index: the symbol's next tick wakes the client.
    pub armed: bool,
    /// The pacing came from the server default (no `max_rate` given), so a live change of
    /// the default applies to it.
    pub default_pacing: bool,
    /// Newest seq delivered to the client (0 = nothing yet).
    pub sent_seq: u64,
    /// Minimum ns between two updates (0 = unlimited), from `max_rate`.
    pub interval_ns: u64,
    /// Earliest time the next update may go out.
    pub next_due_ns: u64,
    /// Every trade of the symbol is delivered too (`"trades": true`), never conflated and
    /// not paced by `max_rate`.
    pub trades: bool,
    /// The next trade ordinal to deliver (trades below it were sent or reported missed).
    pub trade_next: u64,
    /// Order-book levels a side delivered too (`"depth": N`); 0 = no book.
    pub depth: u16,
    /// Newest book seq delivered (0 = none yet).
    pub book_sent: u64,
}

/// What one [`ClientSubs::drain_due`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Updates emitted.
    pub sent: usize,
    /// Newer values skipped over by the emitted ones (conflated away).
    pub conflated: u64,
    /// Earliest time a value held back by `max_rate` becomes due.
    pub next_due_ns: Option<u64>,
    /// The sink's byte budget ran out before every slot was visited: the rest wait for the
    /// next fill (which starts where this one stopped).
    pub cut_short: bool,
}

/// What a [`ClientSubs::drain_due`] reads from and writes to: the shard's cache, the
/// client's output and the index.
pub trait DrainSink {
    /// The seq of the symbol's latest value (0: none).
    fn latest(&self, symbol: u32) -> u64;
    /// Appends the symbol's latest frame if it is newer than `sent_seq`; returns its seq.
    fn emit(&mut self, symbol: u32, sent_seq: u64) -> Option<u64>;
    /// Registers the client to be woken by the symbol's next tick.
    fn arm(&mut self, symbol: u32);
    /// Appends the symbol's trades from ordinal `*next` on (with a gap notice for any it
    /// cannot send) and advances `*next` past them; returns how many messages it appended.
    /// Called before the symbol's quote, for slots that take trades.
    fn trades(&mut self, _symbol: u32, _next: &mut u64) -> usize {
        0
    }
    /// The newest book seq at which the top `depth` levels of `symbol` changed (0: none).
    fn book_latest(&self, _symbol: u32, _depth: u16) -> u64 {
        0
    }
    /// Appends the symbol's latest book at `depth` if it is newer than `sent`; returns its seq.
    fn emit_book(&mut self, _symbol: u32, _depth: u16, _sent: u64) -> Option<u64> {
        None
    }
    /// Whether the byte budget of this fill is spent (no more messages may be appended).
    fn exhausted(&self) -> bool {
        false
    }
    /// Whether current slots are to be armed at all (false: the client goes straight back to
    /// the ready queue instead, and its slots are left as they are).
    fn arming(&self) -> bool {
        true
    }
}

/// All subscriptions of one client, sorted by symbol id.
#[derive(Debug, Default)]
pub struct ClientSubs {
    slots: Vec<Subscription>,
    /// Where the next drain starts: after a drain cut short by a byte budget, the slot it
    /// stopped at, so every symbol gets its turn under a bandwidth cap.
    start: u32,
}

impl ClientSubs {
    fn find(&self, symbol: u32) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&symbol, |s| s.symbol)
    }

    /// Subscribes to `symbol` with pacing `interval_ns`. Returns true if it is new; if it was
    /// already held only the interval changes (live max_rate change).
    pub fn subscribe(&mut self, symbol: u32, interval_ns: u64) -> bool {
        self.subscribe_paced(symbol, interval_ns, false)
    }

    /// As [`ClientSubs::subscribe`]; `default_pacing` marks an interval taken from the server
    /// default, which [`ClientSubs::retune_default`] may change later.
    pub fn subscribe_paced(&mut self, symbol: u32, interval_ns: u64, default_pacing: bool) -> bool {
        match self.find(symbol) {
            Ok(i) => {
                let s = &mut self.slots[i];
                Self::repace(s, interval_ns);
                s.default_pacing = default_pacing;
                false
            }
            Err(i) => {
                let slot = Subscription { symbol, interval_ns, default_pacing, ..Subscription::default() };
                self.slots.insert(i, slot);
                true
            }
        }
    }

    /// Subscribes to every symbol of `symbols` (no duplicates) with one sort, however many
    /// there are; the new ones are appended to `fresh`. Held ones only change their pacing.
    pub fn subscribe_all(
        &mut self,
        symbols: &[u32],
        interval_ns: u64,
        default_pacing: bool,
        fresh: &mut Vec<u32>,
    ) {
        let before = fresh.len();
        for &symbol in symbols {
            match self.find(symbol) {
                Ok(i) => {
                    let s = &mut self.slots[i];
                    Self::repace(s, interval_ns);
                    s.default_pacing = default_pacing;
                }
                Err(_) => fresh.push(symbol),
            }
        }
        self.slots.extend(fresh[before..].iter().map(|&symbol| Subscription {
            symbol,
            interval_ns,
            default_pacing,
            ..Subscription::default()
        }));
        self.slots.sort_unstable_by_key(|s| s.symbol);
    }

    /// Arms `symbol`'s slot (registered with the index by the caller). Returns false if it is
    /// not held or already armed.
    pub fn arm(&mut self, symbol: u32) -> bool {
        match self.find(symbol) {
            Ok(i) if !self.slots[i].armed => {
                self.slots[i].armed = true;
                true
            }
            _ => false,
        }
    }

    /// A shorter interval applies from now; a longer one from the next send.
    fn repace(s: &mut Subscription, interval_ns: u64) {
        s.next_due_ns = s.next_due_ns.saturating_sub(s.interval_ns.saturating_sub(interval_ns));
        s.interval_ns = interval_ns;
    }

    /// Applies a new server-default pacing to every subscription that uses the default.
    pub fn retune_default(&mut self, interval_ns: u64) {
        for s in self.slots.iter_mut().filter(|s| s.default_pacing) {
            Self::repace(s, interval_ns);
        }
    }

    /// Drops `symbol`. Returns its slot if it was held (the caller unregisters an armed slot).
    pub fn unsubscribe(&mut self, symbol: u32) -> Option<Subscription> {
        let i = self.find(symbol).ok()?;
        let s = self.slots.remove(i);
        if self.slots.is_empty() {
            // A client that held many symbols and dropped them all gives the memory back.
            self.slots = Vec::new();
        }
        Some(s)
    }

    /// The symbol ticked and the index woke this slot: it is no longer armed. Returns
    /// whether it was (false: the slot is gone or was re-armed by someone else; a stale
    /// wake-up, ignored).
    #[inline]
    pub fn disarm(&mut self, symbol: u32) -> bool {
        match self.find(symbol) {
            Ok(i) if self.slots[i].armed => {
                self.slots[i].armed = false;
                true
            }
            _ => false,
        }
    }

    /// Records that `seq` of `symbol` was delivered outside a drain (a snapshot).
    pub fn delivered(&mut self, symbol: u32, seq: u64, now_ns: u64) {
        if let Ok(i) = self.find(symbol) {
            let s = &mut self.slots[i];
            s.sent_seq = s.sent_seq.max(seq);
            s.next_due_ns = now_ns.saturating_add(s.interval_ns);
        }
    }

    /// Sends every slot whose symbol has a newer value (`sink.latest(symbol)` > `sent_seq`)
    /// and is due at `now_ns`: `sink.emit(symbol, sent_seq)` appends the symbol's latest frame
    /// and returns that frame's seq (or `None` if there is nothing newer after all). Every
    /// slot that ends up current and is not armed is armed (`sink.arm(symbol)` registers it
    /// with the index); a slot held back by `max_rate` stays unarmed, and the returned
    /// [`Drained::next_due_ns`] says when to come back for it.
    pub fn drain_due(&mut self, now_ns: u64, sink: &mut impl DrainSink) -> Drained {
        let mut d = Drained::default();
        let n = self.slots.len();
        let start = (self.start as usize).min(n);
        self.start = 0;
        for i in (start..n).chain(0..start) {
            if sink.exhausted() {
                d.cut_short = true;
                self.start = i as u32;
                break;
            }
            let s = &mut self.slots[i];
            if s.trades {
                d.sent += sink.trades(s.symbol, &mut s.trade_next);
            }
            let quote_new = sink.latest(s.symbol) > s.sent_seq;
            let book_new = s.depth > 0 && sink.book_latest(s.symbol, s.depth) > s.book_sent;
            if quote_new || book_new {
                if now_ns < s.next_due_ns {
                    d.next_due_ns = Some(d.next_due_ns.map_or(s.next_due_ns, |n| n.min(s.next_due_ns)));
                    continue;
                }
                let mut sent = false;
                if quote_new && let Some(seq) = sink.emit(s.symbol, s.sent_seq) {
                    d.conflated += seq.saturating_sub(s.sent_seq + 1);
                    s.sent_seq = s.sent_seq.max(seq);
                    d.sent += 1;
                    sent = true;
                }
                if book_new
                    && !sink.exhausted()
                    && let Some(seq) = sink.emit_book(s.symbol, s.depth, s.book_sent)
                {
                    s.book_sent = s.book_sent.max(seq);
                    d.sent += 1;
                    sent = true;
                }
                if sent {
                    s.next_due_ns = now_ns.saturating_add(s.interval_ns);
                }
            }
            if !s.armed && sink.arming() {
                s.armed = true;
                sink.arm(s.symbol);
            }
        }
        d
    }

    /// Turns trade delivery for `symbol` on (from ordinal `next`) or off. Returns false if
    /// the symbol is not held.
    pub fn set_trades(&mut self, symbol: u32, on: bool, next: u64) -> bool {
        let Ok(i) = self.find(symbol) else { return false };
        let s = &mut self.slots[i];
        if on && !s.trades {
            s.trade_next = next;
        }
        s.trades = on;
        true
    }

    /// Sets the order-book depth of `symbol`'s slot (0: no book). Returns the depth it had, or
    /// `None` if the symbol is not held. A changed depth is sent afresh (as a snapshot).
    pub fn set_depth(&mut self, symbol: u32, depth: u16) -> Option<u16> {
        let i = self.find(symbol).ok()?;
        let s = &mut self.slots[i];
        let was = s.depth;
        if was != depth {
            s.depth = depth;
            s.book_sent = 0;
        }
        Some(was)
    }

    /// Slots whose book has a newer change within their depth than was sent.
    pub fn books_pending(&self, latest: impl Fn(u32, u16) -> u64) -> usize {
        self.slots.iter().filter(|s| s.depth > 0 && latest(s.symbol, s.depth) > s.book_sent).count()
    }

    /// Symbols whose trades are delivered, with their next ordinal.
    pub fn trade_slots(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.slots.iter().filter(|s| s.trades).map(|s| (s.symbol, s.trade_next))
    }

    /// Whether some trade slot has a trade waiting (`last(symbol)` = highest ordinal logged).
    pub fn trades_pending(&self, last: impl Fn(u32) -> u64) -> bool {
        self.slots.iter().any(|s| s.trades && last(s.symbol) >= s.trade_next)
    }

    /// Number of slots with a newer value than was sent (≤ [`ClientSubs::len`], always).
    pub fn pending(&self, latest: impl Fn(u32) -> u64) -> usize {
        self.slots.iter().filter(|s| latest(s.symbol) > s.sent_seq).count()
    }

    /// Number of subscribed symbols.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if subscribed to nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `symbol` is held.
    pub fn contains(&self, symbol: u32) -> bool {
        self.find(symbol).is_ok()
    }

    /// The state of `symbol`, if held.
    pub fn get(&self, symbol: u32) -> Option<&Subscription> {
        self.find(symbol).ok().map(|i| &self.slots[i])
    }

    /// Subscribed symbol ids, ascending.
    pub fn symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().map(|s| s.symbol)
    }

    /// The slots, ascending by symbol.
    pub fn slots(&self) -> &[Subscription] {
        &self.slots
    }

    /// Bytes of heap this client's slots hold (for the memory accounting in `/stats`).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Subscription>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A cache of latest seqs; records what was emitted and armed.
    #[derive(Default)]
    struct Model {
        latest: HashMap<u32, u64>,
        sent: Vec<(u32, u64)>,
        armed: Vec<u32>,
        /// Check every emit against the history: strictly rising per symbol.
        delivered: HashMap<u32, u64>,
    }

    impl DrainSink for Model {
        fn latest(&self, symbol: u32) -> u64 {
            self.latest.get(&symbol).copied().unwrap_or(0)
        }
        fn emit(&mut self, symbol: u32, sent_seq: u64) -> Option<u64> {
            let l = self.latest(symbol);
            assert!(l > sent_seq, "emitted without anything newer");
            let prev = self.delivered.insert(symbol, l).unwrap_or(0);
            assert!(l > prev, "seq went backwards or repeated");
            self.sent.push((symbol, l));
            Some(l)
        }
        fn arm(&mut self, symbol: u32) {
            self.armed.push(symbol);
        }
    }

    /// Drains against `latest` and returns what was emitted and armed.
    fn drain(
        c: &mut ClientSubs,
        now: u64,
        latest: &HashMap<u32, u64>,
    ) -> (Vec<(u32, u64)>, Vec<u32>, Drained) {
        let mut m = Model { latest: latest.clone(), ..Model::default() };
        let d = c.drain_due(now, &mut m);
        (m.sent, m.armed, d)
    }

    #[test]
    fn sends_only_what_is_newer_and_counts_what_it_skipped() {
        let mut c = ClientSubs::default();
        assert!(c.subscribe(1, 0));
        assert!(c.subscribe(2, 0));
        assert!(!c.subscribe(1, 0), "already held");
        let mut latest = HashMap::from([(1, 1)]);
        let (sent, armed, d) = drain(&mut c, 0, &latest);
        assert_eq!(sent, vec![(1, 1)]);
        assert_eq!(armed, vec![1, 2], "both slots are current afterwards");
        assert_eq!(d.conflated, 0, "seq 1 is the first value: nothing skipped");
        latest.insert(1, 5);
        assert_eq!(c.pending(|s| latest.get(&s).copied().unwrap_or(0)), 1);
        let (sent, armed, d) = drain(&mut c, 0, &latest);
        assert_eq!(sent, vec![(1, 5)]);
        assert!(armed.is_empty(), "still armed: nobody woke them");
        assert_eq!(d.conflated, 3, "seqs 2, 3 and 4 were never sent");
        assert!(c.disarm(1));
        assert!(!c.disarm(1), "a second wake-up is stale");
        assert!(!c.disarm(9), "not held");
    }

    #[test]
    fn max_rate_holds_updates_until_due_and_leaves_them_unarmed() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 500);
        let mut latest = HashMap::from([(1, 1)]);
        assert_eq!(drain(&mut c, 1000, &latest).0, vec![(1, 1)]);
        latest.insert(1, 2);
        c.disarm(1);
        // Sent at 1000, so the next is due at 1500.
        let (sent, armed, d) = drain(&mut c, 1200, &latest);
        assert!(sent.is_empty() && armed.is_empty());
        assert_eq!(d.next_due_ns, Some(1500));
        assert_eq!(drain(&mut c, 1500, &latest).0, vec![(1, 2)]);
    }

    #[test]
    fn resubscribe_changes_interval_live() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 1_000);
        let mut latest = HashMap::from([(1, 1)]);
        drain(&mut c, 0, &latest);
        latest.insert(1, 2);
        assert_eq!(drain(&mut c, 10, &latest).2.next_due_ns, Some(1_000));
        assert!(!c.subscribe(1, 100), "already held");
        // Shorter interval applies at once: due at 100 now.
        assert_eq!(drain(&mut c, 50, &latest).2.next_due_ns, Some(100));
        assert_eq!(drain(&mut c, 100, &latest).0, vec![(1, 2)]);
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
    fn unsubscribe_returns_the_slot() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 0);
        c.subscribe(2, 0);
        drain(&mut c, 0, &HashMap::new());
        assert!(c.unsubscribe(1).is_some_and(|s| s.armed));
        assert!(c.unsubscribe(1).is_none());
        let latest = HashMap::from([(1, 1), (2, 1)]);
        assert_eq!(drain(&mut c, 0, &latest).0, vec![(2, 1)]);
    }

    #[test]
    fn snapshot_delivery_suppresses_older_values() {
        let mut c = ClientSubs::default();
        c.subscribe(1, 0);
        c.delivered(1, 10, 0);
        for (cached, want) in [(9, 0), (10, 0), (11, 1)] {
            assert_eq!(c.pending(|_| cached), want, "cache at {cached}");
        }
    }

    proptest! {
        /// Against a model: the last value always wins, per-symbol order is kept (sent seqs
        /// strictly rise, checked by the model's emit), pending never exceeds the
        /// subscriptions, slots stay sorted, and every symbol that received a newer tick ends
        /// up delivered at its latest seq once drained.
        #[test]
        fn conflation_invariants(
            events in proptest::collection::vec((0u32..8, 0u8..5), 1..400),
            interval in prop_oneof![Just(0u64), 1u64..50],
        ) {
            let mut c = ClientSubs::default();
            for s in [4, 0, 3, 1, 2] { c.subscribe(s, interval); }
            let mut m = Model::default();
            let mut now = 0u64;
            for (symbol, action) in events {
                now += 7;
                match action {
                    0..3 => *m.latest.entry(symbol).or_insert(0) += 1,
                    3 => { c.disarm(symbol); }
                    _ => { c.drain_due(now, &mut m); }
                }
                prop_assert!(c.pending(|s| m.latest(s)) <= c.len());
                prop_assert!(c.slots().windows(2).all(|w| w[0].symbol < w[1].symbol));
            }
            // Drain everything (far in the future so pacing allows it).
            c.drain_due(u64::MAX / 2, &mut m);
            prop_assert_eq!(c.pending(|s| m.latest(s)), 0);
            prop_assert!(c.slots().iter().all(|s| s.armed), "every current slot is armed");
            for s in 0..5u32 {
                prop_assert_eq!(m.delivered.get(&s), m.latest.get(&s), "symbol {} not converged", s);
            }
        }
    }
}
