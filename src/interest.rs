//! Which symbols this gateway's clients hold, across its shards: what an interest-based bus
//! subscription (`feed.nats_interest = subscribed`) follows.
//!
//! A shard calls [`Interest::hold`] when its first client of a symbol subscribes and
//! [`Interest::release`] when its last one leaves, so the cost is per (shard, symbol)
//! transition, never per tick or per client. The bus task takes the symbols whose holder
//! count crossed zero ([`Interest::take_changed`]) after [`Interest::changed`] wakes it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Per-symbol count of shards holding it, and the symbols that crossed zero since the bus
/// task last looked.
#[derive(Debug)]
pub struct Interest {
    holders: Vec<AtomicU32>,
    changed: Mutex<Vec<u32>>,
    notify: tokio::sync::Notify,
}

impl Interest {
    /// No symbol held, over `symbols` ids.
    pub fn new(symbols: usize) -> Interest {
        Interest {
            holders: (0..symbols).map(|_| AtomicU32::new(0)).collect(),
            changed: Mutex::new(Vec::new()),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn crossed(&self, symbol: u32) {
        if let Ok(mut c) = self.changed.lock() {
            c.push(symbol);
        }
        self.notify.notify_one();
    }

    /// A shard's first client of `symbol` subscribed.
    pub fn hold(&self, symbol: u32) {
        if let Some(h) = self.holders.get(symbol as usize)
            && h.fetch_add(1, Ordering::AcqRel) == 0
        {
            self.crossed(symbol);
        }
    }

    /// A shard's last client of `symbol` left.
    pub fn release(&self, symbol: u32) {
        if let Some(h) = self.holders.get(symbol as usize)
            && h.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) == Ok(1)
        {
            self.crossed(symbol);
        }
    }

    /// Whether any shard holds `symbol` now.
    pub fn held(&self, symbol: u32) -> bool {
        self.holders.get(symbol as usize).is_some_and(|h| h.load(Ordering::Acquire) > 0)
    }

    /// Every symbol held now.
    pub fn held_symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.holders.iter().enumerate().filter(|(_, h)| h.load(Ordering::Acquire) > 0).map(|(i, _)| i as u32)
    }

    /// Moves the symbols that crossed zero (either way) since the last call into `out`
    /// (cleared first; a symbol may appear more than once: look at [`Interest::held`]).
    pub fn take_changed(&self, out: &mut Vec<u32>) {
        out.clear();
        if let Ok(mut c) = self.changed.lock() {
            std::mem::swap(&mut *c, out);
        }
    }

    /// Waits until a symbol crosses zero (returns at once if one did since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_zero_crossings_are_reported() {
        let i = Interest::new(3);
        i.hold(1);
        i.hold(1);
        i.release(1);
        i.hold(2);
        i.release(0);
        i.hold(7);
        let mut c = Vec::new();
        i.take_changed(&mut c);
        assert_eq!(c, [1, 2], "1 went 0→1 once, 2 too; a release below zero and an id outside are ignored");
        assert!(i.held(1) && i.held(2) && !i.held(0));
        i.release(1);
        i.take_changed(&mut c);
        assert_eq!(c, [1]);
        assert!(!i.held(1));
        assert_eq!(i.held_symbols().collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn a_crossing_wakes_the_waiter() {
        let i = std::sync::Arc::new(Interest::new(1));
        let j = i.clone();
        let waiter = tokio::spawn(async move { j.changed().await });
        i.hold(0);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
