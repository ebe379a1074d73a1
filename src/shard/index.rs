//! The subscription index: symbol → the shard's clients subscribed to it.
//!
//! A tick for a symbol nobody on this shard watches costs one bounds-checked lookup of an
//! empty list, so fan-out work is proportional to actual subscribers, never to clients.

/// Symbol id → subscriber client keys (slab keys of the shard's clients).
#[derive(Debug, Default)]
pub struct SubIndex {
    by_symbol: Vec<Vec<usize>>,
}

impl SubIndex {
    /// An index over `symbols` symbol ids.
    pub fn new(symbols: usize) -> SubIndex {
        SubIndex { by_symbol: (0..symbols).map(|_| Vec::new()).collect() }
    }

    /// Adds `client` to `symbol`'s subscribers. The caller guarantees it is not there yet
    /// (the client's own subscription set is the source of truth).
    pub fn add(&mut self, symbol: u32, client: usize) {
        if let Some(list) = self.by_symbol.get_mut(symbol as usize) {
            debug_assert!(!list.contains(&client));
            list.push(client);
        }
    }

    /// Removes `client` from `symbol`'s subscribers: O(subscribers of that symbol). Returns
    /// whether it was there.
    pub fn remove(&mut self, symbol: u32, client: usize) -> bool {
        let Some(list) = self.by_symbol.get_mut(symbol as usize) else { return false };
        match list.iter().position(|c| *c == client) {
            Some(i) => {
                list.swap_remove(i);
                if list.is_empty() {
                    // Give the memory of a hot symbol's list back once nobody watches it.
                    list.shrink_to_fit();
                }
                true
            }
            None => false,
        }
    }

    /// The clients subscribed to `symbol` (empty for unknown ids).
    #[inline]
    pub fn subscribers(&self, symbol: u32) -> &[usize] {
        self.by_symbol.get(symbol as usize).map_or(&[], Vec::as_slice)
    }

    /// Symbol ids with at least one subscriber, in id order.
    pub fn active_symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_symbol.iter().enumerate().filter(|(_, l)| !l.is_empty()).map(|(s, _)| s as u32)
    }

    /// Total (symbol, client) pairs.
    pub fn len(&self) -> usize {
        self.by_symbol.iter().map(Vec::len).sum()
    }

    /// True if nobody subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.by_symbol.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u32, usize),
        Remove(u32, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..6, 0usize..5).prop_map(|(s, c)| Op::Add(s, c)),
            (0u32..8, 0usize..5).prop_map(|(s, c)| Op::Remove(s, c)),
        ]
    }

    proptest! {
        /// The index always equals a straightforward model (a map of sets).
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut idx = SubIndex::new(6);
            let mut model: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Add(s, c) => {
                        if model.entry(s).or_default().insert(c) {
                            idx.add(s, c);
                        }
                    }
                    Op::Remove(s, c) => {
                        let had = model.get_mut(&s).is_some_and(|set| set.remove(&c));
                        prop_assert_eq!(idx.remove(s, c), had);
                    }
                }
            }
            for s in 0..8u32 {
                let got: BTreeSet<usize> = idx.subscribers(s).iter().copied().collect();
                let want = model.get(&s).cloned().unwrap_or_default();
                prop_assert_eq!(got.len(), idx.subscribers(s).len(), "duplicates in index");
                prop_assert_eq!(got, want);
            }
            let active: Vec<u32> = idx.active_symbols().collect();
            let want: Vec<u32> = model.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| *k).collect();
            prop_assert_eq!(active, want);
        }
    }

    #[test]
    fn unknown_symbols_are_harmless() {
        let mut idx = SubIndex::new(2);
        idx.add(9, 1);
        assert!(idx.subscribers(9).is_empty());
        assert!(!idx.remove(9, 1));
        assert!(idx.is_empty());
    }
}
