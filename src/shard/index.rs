//! The subscription index: per symbol, how many of the shard's clients hold it, and which
//! of them are **armed** to be woken by its next tick.
//!
//! This is what keeps intake O(1) per tick. A client is armed on a symbol when a flush left
//! its slot current (it has been sent the latest value); the symbol's next tick wakes the
//! armed clients, once each, and disarms them. A client already waiting for a flush is not
//! armed, so a tick never costs anything per subscriber: its cost is one cache update plus
//! one wake-up per client it actually wakes, and every wake-up pays for itself with the flush
//! that follows. A symbol nobody on this shard watches costs one bounds-checked lookup.
//!
//! Wake-up entries name a client by (slab key, incarnation), so an entry left behind by a
//! client that has since left (or unsubscribed) is recognised and skipped; lists are
//! compacted when stale entries outnumber live subscribers, so they stay bounded by the
//! subscriber count.

/// A client, as the index names it: its slab key and incarnation (unique per shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientId {
    /// Slab key of the client in the shard core.
    pub key: u32,
    /// Distinguishes clients that reuse a slab key.
    pub incarnation: u32,
}

#[derive(Debug, Default)]
struct SymbolEntry {
    /// Clients of this shard that hold the symbol.
    subscribers: u32,
    /// Clients to wake on the symbol's next tick (some possibly stale).
    armed: Vec<ClientId>,
}

/// Symbol id → subscriber count and armed clients.
#[derive(Debug, Default)]
pub struct SubIndex {
    by_symbol: Vec<SymbolEntry>,
    subscriptions: usize,
}

impl SubIndex {
    /// An index over `symbols` symbol ids.
    pub fn new(symbols: usize) -> SubIndex {
        SubIndex { by_symbol: (0..symbols).map(|_| SymbolEntry::default()).collect(), subscriptions: 0 }
    }

    /// One more client holds `symbol`. Returns true if it is the shard's first.
    pub fn add(&mut self, symbol: u32) -> bool {
        let Some(e) = self.by_symbol.get_mut(symbol as usize) else { return false };
        e.subscribers += 1;
        self.subscriptions += 1;
        e.subscribers == 1
    }

    /// One client fewer holds `symbol`. Returns true if nobody on the shard holds it any more.
    pub fn remove(&mut self, symbol: u32) -> bool {
        let Some(e) = self.by_symbol.get_mut(symbol as usize) else { return false };
        if e.subscribers == 0 {
            return false;
        }
        e.subscribers -= 1;
        self.subscriptions -= 1;
        if e.subscribers == 0 {
            // Nobody left to wake: drop the list and its memory.
            e.armed = Vec::new();
            return true;
        }
        false
    }

    /// Number of this shard's clients that hold `symbol`.
    #[inline]
    pub fn subscribers(&self, symbol: u32) -> usize {
        self.by_symbol.get(symbol as usize).map_or(0, |e| e.subscribers as usize)
    }

    /// Arms `client` on `symbol`: its next tick wakes it. `live` tells whether an entry still
    /// names an armed client (used to compact the list when stale entries pile up).
    #[inline]
    pub fn arm(&mut self, symbol: u32, client: ClientId, live: impl Fn(ClientId) -> bool) {
        let Some(e) = self.by_symbol.get_mut(symbol as usize) else { return };
        if e.armed.len() >= 2 * e.subscribers as usize + 8 {
            // Entries of clients that left or were woken through another entry: bounded by
            // the subscriber count, amortised O(1) per arm.
            e.armed.retain(|c| live(*c));
        }
        e.armed.push(client);
    }

    /// Takes the clients armed on `symbol` (the symbol ticked), leaving the list empty but
    /// keeping its capacity. Give the vector back with [`SubIndex::restore`].
    #[inline]
    pub fn take_armed(&mut self, symbol: u32, into: &mut Vec<ClientId>) {
        into.clear();
        if let Some(e) = self.by_symbol.get_mut(symbol as usize)
            && !e.armed.is_empty()
        {
            std::mem::swap(&mut e.armed, into);
        }
    }

    /// Returns the (emptied) vector taken by [`SubIndex::take_armed`] so its capacity is
    /// reused, unless the symbol already armed new clients meanwhile.
    #[inline]
    pub fn restore(&mut self, symbol: u32, taken: &mut Vec<ClientId>) {
        taken.clear();
        if let Some(e) = self.by_symbol.get_mut(symbol as usize)
            && e.armed.is_empty()
            && e.subscribers > 0
        {
            std::mem::swap(&mut e.armed, taken);
        }
    }

    /// Symbol ids with at least one subscriber, in id order.
    pub fn active_symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_symbol.iter().enumerate().filter(|(_, e)| e.subscribers > 0).map(|(s, _)| s as u32)
    }

    /// Total (symbol, client) pairs.
    pub fn len(&self) -> usize {
        self.subscriptions
    }

    /// True if no client holds anything.
    pub fn is_empty(&self) -> bool {
        self.subscriptions == 0
    }

    /// Entries in the armed lists, stale ones included (for tests and memory accounting).
    pub fn armed_entries(&self) -> usize {
        self.by_symbol.iter().map(|e| e.armed.len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn id(key: u32) -> ClientId {
        ClientId { key, incarnation: 0 }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u32),
        Remove(u32),
        Arm(u32, u32),
        Tick(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..6).prop_map(Op::Add),
            (0u32..8).prop_map(Op::Remove),
            (0u32..6, 0u32..5).prop_map(|(s, c)| Op::Arm(s, c)),
            (0u32..8).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Counts match a model, a tick wakes exactly the clients armed since the previous
        /// tick, and the armed lists never outgrow twice the subscriber count plus a constant.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 0..300)) {
            let mut idx = SubIndex::new(6);
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            let mut armed: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
            let mut taken = Vec::new();
            for op in ops {
                match op {
                    Op::Add(s) => {
                        *counts.entry(s).or_default() += 1;
                        idx.add(s);
                    }
                    Op::Remove(s) => {
                        let n = counts.entry(s).or_default();
                        let emptied = *n == 1;
                        *n = n.saturating_sub(1);
                        if emptied { armed.remove(&s); }
                        prop_assert_eq!(idx.remove(s), emptied);
                    }
                    Op::Arm(s, c) if counts.get(&s).copied().unwrap_or(0) > 0
                        && !armed.get(&s).is_some_and(|set| set.contains(&c)) => {
                        // As in the core, a client is armed on a symbol at most once until the
                        // symbol ticks. The model's "live" set is what was armed and not woken.
                        let set = armed.entry(s).or_default();
                        let live = set.clone();
                        set.insert(c);
                        idx.arm(s, id(c), |x| live.contains(&x.key));
                    }
                    Op::Arm(..) => {}
                    Op::Tick(s) => {
                        idx.take_armed(s, &mut taken);
                        let got: BTreeSet<u32> = taken.iter().map(|c| c.key).collect();
                        prop_assert_eq!(got, armed.remove(&s).unwrap_or_default());
                        idx.restore(s, &mut taken);
                    }
                }
                for s in 0..6u32 {
                    let n = counts.get(&s).copied().unwrap_or(0);
                    prop_assert_eq!(idx.subscribers(s), n);
                }
            }
            prop_assert_eq!(idx.len(), counts.values().sum::<usize>());
            let active: Vec<u32> = idx.active_symbols().collect();
            let want: Vec<u32> = counts.iter().filter(|(_, v)| **v > 0).map(|(k, _)| *k).collect();
            prop_assert_eq!(active, want);
            prop_assert!(idx.armed_entries() <= 2 * idx.len() + 6 * 9);
        }
    }

    #[test]
    fn unknown_symbols_are_harmless() {
        let mut idx = SubIndex::new(2);
        idx.add(9);
        assert_eq!(idx.subscribers(9), 0);
        assert!(!idx.remove(9));
        idx.arm(9, id(1), |_| true);
        let mut v = Vec::new();
        idx.take_armed(9, &mut v);
        assert!(v.is_empty() && idx.is_empty());
    }
}
