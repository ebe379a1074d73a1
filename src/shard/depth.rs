//! The shard's view of the order books its clients watch (`"depth": N` subscriptions): per
//! symbol, which book seq each depth last changed at, and the encoded book messages.
//!
//! The feed thread's ring notices ([`tickgate_feeds::TickKind::Book`]) carry a book's new seq
//! and the shallowest level that changed; [`BookCache::on_notice`] turns that into
//! `changed[d]` = the newest seq at which the top `d` levels changed, for every `d` up to
//! `server.max_depth`. A client at depth `d` has something to receive when `changed[d]` is
//! newer than the book seq it was sent, so a change at level 30 wakes nobody watching 10
//! levels. Like quotes, what a client gets is the *latest* book (conflation): the levels are
//! read from the [`BookStore`] when encoded, never queued.
//!
//! **Encoded once per (symbol, depth, format)** per change: the first client flushed after a
//! change encodes the book at its depth and format, every other one copies the bytes, until
//! the next change at that depth.
//!
//! Plain deterministic logic over the store: no sockets, no clock.

use tickgate_feeds::Universe;

use crate::books::{BookStore, Levels};
use crate::protocol::{binary, frame, json};

/// The encodings a message is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookFormat {
    /// A complete WebSocket text frame of the JSON object.
    JsonFrame,
    /// The JSON object alone (for batched JSON and SSE).
    JsonObject,
    /// The binary book record.
    Binary,
}

#[derive(Debug)]
struct Encoded {
    depth: u16,
    format: BookFormat,
    /// The book seq encoded (0: nothing yet).
    seq: u64,
    ts_gateway: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Clients of this shard watching the symbol's book (at any depth).
    subscribers: u32,
    /// `depths[d]`: how many of them watch `d` levels (index 0 unused).
    depths: Vec<u32>,
    /// `changed[d]`: the newest book seq at which the top `d` levels changed (index 0 unused).
    changed: Vec<u64>,
    encoded: Vec<Encoded>,
}

/// Book state per symbol id, for the symbols some client of this shard watches at depth.
#[derive(Debug, Default)]
pub struct BookCache {
    entries: Vec<Entry>,
    max_depth: usize,
    scratch: Vec<u8>,
    levels: Levels,
    /// Book messages encoded (for tests and stats).
    pub encodes: u64,
}

impl BookCache {
    /// A cache over `symbols` ids for depths up to `max_depth`.
    pub fn new(symbols: usize, max_depth: usize) -> BookCache {
        BookCache {
            entries: (0..symbols).map(|_| Entry::default()).collect(),
            max_depth,
            ..BookCache::default()
        }
    }

    /// The deepest depth a client may ask for.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// A client of this shard starts watching `depth` levels of `symbol`'s book. The first
    /// one primes the symbol's state from the store (the ring's notices before now were not
    /// tracked).
    pub fn add_subscriber(&mut self, symbol: u32, depth: u16, store: &BookStore) {
        let max = self.max_depth;
        let Some(e) = self.entries.get_mut(symbol as usize) else { return };
        e.subscribers += 1;
        if e.subscribers == 1 {
            e.changed = vec![store.seq(symbol); max + 1];
            e.depths = vec![0; max + 1];
        }
        if let Some(n) = e.depths.get_mut(usize::from(depth).min(max)) {
            *n += 1;
        }
    }

    /// A client stops watching `depth` levels of `symbol`'s book; the last one frees its
    /// state.
    pub fn remove_subscriber(&mut self, symbol: u32, depth: u16) {
        let max = self.max_depth;
        let Some(e) = self.entries.get_mut(symbol as usize) else { return };
        if let Some(n) = e.depths.get_mut(usize::from(depth).min(max)) {
            *n = n.saturating_sub(1);
        }
        e.subscribers = e.subscribers.saturating_sub(1);
        if e.subscribers == 0 {
            *e = Entry::default();
        }
    }

    /// Clients here watching `symbol`'s book.
    pub fn subscribers(&self, symbol: u32) -> u32 {
        self.entries.get(symbol as usize).map_or(0, |e| e.subscribers)
    }

    /// A ring notice: book `seq` of `symbol` changed from level `first_changed` down. Returns
    /// whether a client here watches more levels than that (the caller wakes the symbol's
    /// clients).
    pub fn on_notice(&mut self, symbol: u32, seq: u64, first_changed: usize) -> bool {
        let Some(e) = self.entries.get_mut(symbol as usize).filter(|e| e.subscribers > 0) else {
            return false;
        };
        let from = first_changed.saturating_add(1).min(e.changed.len());
        let mut newer = false;
        for c in &mut e.changed[from..] {
            if seq > *c {
                *c = seq;
                newer = true;
            }
        }
        newer && e.depths.get(from..).is_some_and(|d| d.iter().any(|&n| n > 0))
    }

    /// After missed notices (a ring overrun): every depth of every watched book
    /// catches up with the store. Returns the symbols that moved (to wake their clients).
    pub fn refresh(&mut self, store: &BookStore, moved: &mut Vec<u32>) {
        for (s, e) in self.entries.iter_mut().enumerate() {
            if e.subscribers == 0 {
                continue;
            }
            let seq = store.seq(s as u32);
            let mut any = false;
            for c in e.changed.iter_mut().skip(1) {
                if seq > *c {
                    *c = seq;
                    any = true;
                }
            }
            if any {
                moved.push(s as u32);
            }
        }
    }

    /// The newest book seq at which the top `depth` levels of `symbol` changed (0: none).
    #[inline]
    pub fn latest(&self, symbol: u32, depth: u16) -> u64 {
        self.entries
            .get(symbol as usize)
            .and_then(|e| e.changed.get(usize::from(depth).min(self.max_depth)))
            .copied()
            .unwrap_or(0)
    }

    /// `symbol`'s book at `depth` in `format`, encoding it from the store unless an encoding
    /// as new as the latest change at that depth is cached. Returns the bytes, the book seq
    /// they show and its `ts_gateway`; `None` if the store has no book for the symbol.
    pub fn message(
        &mut self,
        symbol: u32,
        depth: u16,
        format: BookFormat,
        universe: &Universe,
        store: &BookStore,
    ) -> Option<(&[u8], u64, u64)> {
        let want = self.latest(symbol, depth);
        let e = self.entries.get_mut(symbol as usize).filter(|e| e.subscribers > 0)?;
        let i = match e.encoded.iter().position(|x| x.depth == depth && x.format == format) {
            Some(i) => i,
            None => {
                e.encoded.push(Encoded { depth, format, seq: 0, ts_gateway: 0, bytes: Vec::new() });
                e.encoded.len() - 1
            }
        };
        let enc = &mut e.encoded[i];
        if enc.seq == 0 || enc.seq < want {
            let levels = &mut self.levels;
            let d = usize::from(depth);
            let found = store.with(symbol, |l| {
                levels.clone_from(l);
                levels.bids.truncate(d);
                levels.asks.truncate(d);
            });
            if found.is_none() || levels.seq == 0 {
                return None;
            }
            enc.bytes.clear();
            match format {
                BookFormat::Binary => binary::encode_book(&mut enc.bytes, symbol, d, levels),
                BookFormat::JsonObject => json::encode_book(&mut enc.bytes, universe.name(symbol), d, levels),
                BookFormat::JsonFrame => {
                    self.scratch.clear();
                    json::encode_book(&mut self.scratch, universe.name(symbol), d, levels);
                    frame::write_frame(&mut enc.bytes, frame::OpCode::Text, &self.scratch);
                }
            }
            enc.seq = levels.seq;
            enc.ts_gateway = levels.ts_gateway;
            self.encodes += 1;
        }
        Some((&enc.bytes, enc.seq, enc.ts_gateway))
    }

    /// Heap bytes held (for the memory accounting in `/stats`).
    pub fn heap_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| {
                e.changed.capacity() * 8
                    + e.depths.capacity() * 4
                    + e.encoded.iter().map(|x| x.bytes.capacity() + 48).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tickgate_feeds::{BookHealth, SCALE, SymbolInfo};

    use super::*;

    fn universe() -> Universe {
        let s = |n: &str| SymbolInfo { name: n.into(), ref_price: 100, tick_size: 1 };
        Universe::from_symbols(vec![s("A"), s("B")]).unwrap()
    }

    fn levels(n: i64) -> Vec<(i64, i64)> {
        (0..n).map(|i| ((100 - i) * SCALE, SCALE)).collect()
    }
    const ASK: (i64, i64) = (101 * SCALE, SCALE);

    #[test]
    fn depths_see_only_changes_within_them_and_encode_once() {
        let (u, store) = (universe(), BookStore::new(2, 10));
        let mut cache = BookCache::new(2, 10);
        store.publish(0, BookHealth::Live, &levels(5), &[ASK], 1, 1);
        cache.add_subscriber(0, 4, &store);
        assert_eq!((cache.latest(0, 2), cache.latest(0, 10)), (1, 1), "primed from the store");
        assert!(!cache.on_notice(1, 9, 0), "nobody watches symbol 1");
        // A change at level 3 (0-based): depth 2 does not see it, depth 4 does.
        let mut b = levels(5);
        b[3].1 = 7 * SCALE;
        let c = store.publish(0, BookHealth::Live, &b, &[ASK], 2, 2).unwrap();
        assert_eq!(c.first_changed, 3);
        assert!(cache.on_notice(0, c.seq, c.first_changed));
        assert_eq!((cache.latest(0, 2), cache.latest(0, 3), cache.latest(0, 4)), (1, 1, 2));
        // Encoded once per (depth, format) per change.
        let (bytes, seq, _) = cache.message(0, 4, BookFormat::JsonObject, &u, &store).unwrap();
        assert_eq!(seq, 2);
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"book","symbol":"A","seq":2,"depth":4,"bids":[[100,1],[99,1],[98,1],[97,7]]"#
            ),
            "{text}"
        );
        cache.message(0, 4, BookFormat::JsonObject, &u, &store).unwrap();
        cache.message(0, 2, BookFormat::JsonObject, &u, &store).unwrap();
        cache.message(0, 2, BookFormat::Binary, &u, &store).unwrap();
        assert_eq!(cache.encodes, 3);
        // The last subscriber leaving frees the state.
        cache.remove_subscriber(0, 4);
        assert_eq!((cache.subscribers(0), cache.latest(0, 4)), (0, 0));
        assert!(cache.message(0, 4, BookFormat::Binary, &u, &store).is_none(), "not watched: not encoded");
        assert_eq!(cache.heap_bytes(), 0);
    }

    #[test]
    fn refresh_catches_up_after_missed_notices() {
        let store = BookStore::new(2, 5);
        let mut cache = BookCache::new(2, 5);
        cache.add_subscriber(1, 5, &store);
        store.publish(1, BookHealth::Live, &levels(2), &[ASK], 1, 1);
        store.publish(1, BookHealth::Live, &levels(3), &[ASK], 2, 2);
        let mut moved = Vec::new();
        cache.refresh(&store, &mut moved);
        assert_eq!(moved, vec![1]);
        assert_eq!(cache.latest(1, 1), 2);
        // The late notices change nothing.
        assert!(!cache.on_notice(1, 1, 0));
    }
}
