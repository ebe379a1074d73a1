//! The shard's per-symbol frame cache: the latest tick of every symbol this shard's clients
//! watch, with its encoded JSON frame and binary record.
//!
//! Encoding is lazy and happens **at most once per tick per format**: the first client
//! flushed after a tick arrives encodes it, every other subscriber copies the bytes. A tick
//! superseded before any flush is never encoded at all (conflation at the shard level).

use tickgate_feeds::{Tick, Universe};

use crate::protocol::{binary, frame, json};

#[derive(Default)]
struct Entry {
    tick: Tick,
    /// A complete WebSocket text frame (header + JSON) of `tick`, valid if `json_seq == tick.seq`.
    json: Vec<u8>,
    json_seq: u64,
    /// The 88-byte binary record of `tick`, valid if `bin_seq == tick.seq`.
    bin: Vec<u8>,
    bin_seq: u64,
}

/// Latest tick and its encodings, per symbol id.
#[derive(Default)]
pub struct SymbolCache {
    entries: Vec<Entry>,
    /// `entries[s].tick.seq`, dense: a flush compares every slot of a client against it, so
    /// it is kept apart from the large entries (8 bytes per symbol, cache-resident).
    seqs: Vec<u64>,
    scratch: Vec<u8>,
    /// Number of JSON encodes performed (for tests and stats).
    pub json_encodes: u64,
    /// Number of binary encodes performed.
    pub binary_encodes: u64,
}

impl SymbolCache {
    /// A cache over `symbols` ids, all empty.
    pub fn new(symbols: usize) -> SymbolCache {
        SymbolCache {
            entries: (0..symbols).map(|_| Entry::default()).collect(),
            seqs: vec![0; symbols],
            ..Default::default()
        }
    }

    /// Stores `tick` if it is newer than the cached one; returns whether it was.
    #[inline]
    pub fn update(&mut self, tick: &Tick) -> bool {
        match self.entries.get_mut(tick.symbol as usize) {
            Some(e) if tick.seq > e.tick.seq => {
                e.tick = *tick;
                if let Some(s) = self.seqs.get_mut(tick.symbol as usize) {
                    *s = tick.seq;
                }
                true
            }
            _ => false,
        }
    }

    /// The seq of `symbol`'s cached tick (0: none).
    #[inline]
    pub fn seq(&self, symbol: u32) -> u64 {
        self.seqs.get(symbol as usize).copied().unwrap_or(0)
    }

    /// The cached tick of `symbol`, if any.
    #[inline]
    pub fn latest(&self, symbol: u32) -> Option<&Tick> {
        self.entries.get(symbol as usize).map(|e| &e.tick).filter(|t| t.seq > 0)
    }

    /// The latest tick's JSON update as a complete text frame, encoding it if needed.
    /// `universe` names the symbol (looked up only when encoding).
    pub fn json_frame(&mut self, symbol: u32, universe: &Universe) -> Option<(&[u8], &Tick)> {
        let e = self.entries.get_mut(symbol as usize).filter(|e| e.tick.seq > 0)?;
        if e.json_seq != e.tick.seq {
            self.scratch.clear();
            json::encode_update(&mut self.scratch, &e.tick, universe.name(symbol), false);
            e.json.clear();
            frame::write_frame(&mut e.json, frame::OpCode::Text, &self.scratch);
            e.json_seq = e.tick.seq;
            self.json_encodes += 1;
        }
        Some((&e.json, &e.tick))
    }

    /// The latest tick's JSON update object (the payload of [`SymbolCache::json_frame`]'s
    /// frame, for batched JSON), encoding it if needed.
    pub fn json_object(&mut self, symbol: u32, universe: &Universe) -> Option<(&[u8], &Tick)> {
        self.json_frame(symbol, universe).map(|(f, t)| (frame::payload_of(f), t))
    }

    /// The latest tick's 88-byte binary record, encoding it if needed.
    pub fn binary_record(&mut self, symbol: u32) -> Option<(&[u8], &Tick)> {
        let e = self.entries.get_mut(symbol as usize).filter(|e| e.tick.seq > 0)?;
        if e.bin_seq != e.tick.seq {
            e.bin.clear();
            binary::encode_record(&mut e.bin, &e.tick, false);
            e.bin_seq = e.tick.seq;
            self.binary_encodes += 1;
        }
        Some((&e.bin, &e.tick))
    }

    /// Forgets `symbol`'s value and encodings (when its last subscriber leaves), so a later
    /// subscriber starts from the last-value cache instead of a stale copy.
    pub fn clear(&mut self, symbol: u32) {
        if let Some(e) = self.entries.get_mut(symbol as usize) {
            *e = Entry::default();
        }
        if let Some(s) = self.seqs.get_mut(symbol as usize) {
            *s = 0;
        }
    }
}
