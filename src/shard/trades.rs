//! Trades, never conflated: a per-symbol log of recent trades, encoded once, read by each
//! client from its own cursor.
//!
//! Quotes conflate (the newest value is all a client needs); a time-and-sales tape needs
//! **every** trade, in order. A shard keeps a [`SymbolLog`] for each symbol that at least one
//! of its clients takes trades for (`"trades": true`). A trade from the ring is appended once,
//! with its JSON object and binary record encoded once, and each subscriber's flush copies the
//! entries from its cursor on. Intake stays O(1) in the log; the only per-subscriber work a
//! trade costs is waking its trade subscribers, which DISTINCT delivery needs anyway.
//!
//! Entries are numbered by the tick's per-symbol trade ordinal ([`Tick::trades`]), so a
//! client's cursor is "the next ordinal I have not been sent". Anything between the cursor
//! and the next entry the client can read (dropped from a full log, or never seen by this
//! shard: a ring overrun, a trade lost on the bus) is reported exactly, as `missed`, before
//! the next trade is sent. Memory is bounded per symbol by the backlog cap
//! (`server.max_trade_backlog` entries), and entries every subscriber has read are trimmed.
//!
//! Plain deterministic logic: no I/O, no clocks.

use std::collections::VecDeque;

use tickgate_feeds::{Tick, TickKind};

use super::index::ClientId;
use crate::protocol::{binary, json};

/// One logged trade.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The trade's per-symbol ordinal.
    ordinal: u64,
    ts_gateway: u64,
    /// Absolute offset of its JSON object in the symbol's byte log, and its length.
    json_at: u64,
    json_len: u32,
}

/// The recent trades of one symbol, and who on this shard takes them.
#[derive(Debug, Default)]
pub struct SymbolLog {
    subscribers: Vec<ClientId>,
    entries: VecDeque<Entry>,
    /// The entries' JSON objects back to back; `json[0]` is at absolute offset `json_base`.
    json: Vec<u8>,
    json_base: u64,
    bin: VecDeque<[u8; binary::RECORD_LEN]>,
    /// Highest ordinal logged (0: none yet).
    last: u64,
}

/// One trade as a flush reads it.
#[derive(Clone, Copy, Debug)]
pub struct TradeRef<'a> {
    /// Per-symbol ordinal.
    pub ordinal: u64,
    /// Gateway ingest time of the trade, for latency.
    pub ts_gateway: u64,
    /// The JSON trade object (no frame header).
    pub json: &'a [u8],
    /// The 88-byte binary trade record.
    pub record: &'a [u8],
}

impl SymbolLog {
    /// The trades with ordinal ≥ `from`, oldest first.
    pub fn from(&self, from: u64) -> impl Iterator<Item = TradeRef<'_>> + '_ {
        let skip = self.entries.partition_point(|e| e.ordinal < from);
        self.entries.iter().zip(self.bin.iter()).skip(skip).map(move |(e, rec)| {
            let start = (e.json_at - self.json_base) as usize;
            TradeRef {
                ordinal: e.ordinal,
                ts_gateway: e.ts_gateway,
                json: &self.json[start..start + e.json_len as usize],
                record: rec,
            }
        })
    }

    /// Highest ordinal logged (0: none).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Drops entries with ordinal below `ordinal`.
    fn trim_below(&mut self, ordinal: u64) {
        while self.entries.front().is_some_and(|e| e.ordinal < ordinal) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        self.entries.pop_front();
        self.bin.pop_front();
        let live_from = self.entries.front().map_or(self.json_base + self.json.len() as u64, |e| e.json_at);
        let dead = (live_from - self.json_base) as usize;
        // Compact once the dead prefix is at least half the buffer: amortized O(1) per byte.
        if dead > 0 && dead * 2 >= self.json.len() {
            self.json.drain(..dead);
            self.json_base = live_from;
        }
        if self.entries.is_empty() && self.json.capacity() > 64 * 1024 {
            self.json = Vec::new();
            self.bin = VecDeque::new();
            self.entries = VecDeque::new();
        }
    }

    fn bytes(&self) -> usize {
        self.json.capacity()
            + self.bin.capacity() * binary::RECORD_LEN
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.subscribers.capacity() * std::mem::size_of::<ClientId>()
    }
}

/// Every symbol's trade log on one shard (created with the symbol's first trade subscriber,
/// dropped with its last).
#[derive(Debug, Default)]
pub struct TradeLogs {
    logs: Vec<Option<Box<SymbolLog>>>,
    /// Trades appended (counter).
    pub logged: u64,
}

impl TradeLogs {
    /// Logs for `symbols` ids, none open.
    pub fn new(symbols: usize) -> Self {
        TradeLogs { logs: (0..symbols).map(|_| None).collect(), ..Default::default() }
    }

    /// The log of `symbol`, if a client here takes its trades.
    #[inline]
    pub fn get(&self, symbol: u32) -> Option<&SymbolLog> {
        self.logs.get(symbol as usize)?.as_deref()
    }

    /// Highest ordinal logged for `symbol` (0: none, or nobody takes its trades).
    #[inline]
    pub fn last(&self, symbol: u32) -> u64 {
        self.get(symbol).map_or(0, SymbolLog::last)
    }

    /// Client `id` takes `symbol`'s trades (opens the log with the first one).
    pub fn add_subscriber(&mut self, symbol: u32, id: ClientId) {
        if let Some(slot) = self.logs.get_mut(symbol as usize) {
            let log = slot.get_or_insert_with(Box::default);
            if !log.subscribers.contains(&id) {
                log.subscribers.push(id);
            }
        }
    }

    /// Client `id` no longer takes `symbol`'s trades (the log closes with the last one).
    pub fn remove_subscriber(&mut self, symbol: u32, id: ClientId) {
        let Some(slot) = self.logs.get_mut(symbol as usize) else { return };
        let Some(log) = slot.as_mut() else { return };
        log.subscribers.retain(|s| *s != id);
        if log.subscribers.is_empty() {
            *slot = None;
        }
    }

    /// Logs `tick` if it is a trade of a symbol someone here takes trades for and newer than
    /// what is logged, encoding it once (`name` is the symbol's name), keeping at most
    /// `cap` entries (the oldest go). The subscribers to wake go into `wake` (cleared first;
    /// left empty if the trade was not logged).
    pub fn append(&mut self, tick: &Tick, name: &str, cap: usize, wake: &mut Vec<ClientId>) {
        wake.clear();
        if tick.kind != TickKind::Trade {
            return;
        }
        let Some(Some(log)) = self.logs.get_mut(tick.symbol as usize) else { return };
        if tick.trades <= log.last {
            // Seen already (a snapshot cannot log trades, but a replayed ring entry could).
            return;
        }
        while log.entries.len() >= cap.max(1) {
            log.pop_front();
        }
        let json_at = log.json_base + log.json.len() as u64;
        json::encode_trade(&mut log.json, tick, name);
        let json_len = (log.json_base + log.json.len() as u64 - json_at) as u32;
        log.bin.push_back(binary::trade_record(tick));
        log.entries.push_back(Entry { ordinal: tick.trades, ts_gateway: tick.ts_gateway, json_at, json_len });
        log.last = tick.trades;
        self.logged += 1;
        wake.extend_from_slice(&log.subscribers);
    }

    /// Drops `symbol`'s entries below `ordinal` (every subscriber has read them).
    pub fn trim_below(&mut self, symbol: u32, ordinal: u64) {
        if let Some(Some(log)) = self.logs.get_mut(symbol as usize) {
            log.trim_below(ordinal);
        }
    }

    /// Open logs, as (symbol, subscribers).
    pub fn open(&self) -> impl Iterator<Item = (u32, &[ClientId])> + '_ {
        self.logs
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_deref().map(|l| (i as u32, l.subscribers.as_slice())))
    }

    /// Trades held in all logs, and the heap bytes they take.
    pub fn held(&self) -> (usize, usize) {
        self.logs.iter().flatten().fold((0, 0), |(n, b), l| (n + l.entries.len(), b + l.bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn trade(symbol: u32, ordinal: u64) -> Tick {
        Tick {
            symbol,
            kind: TickKind::Trade,
            seq: ordinal * 2,
            last: 100 * ordinal as i64,
            last_size: 1,
            trades: ordinal,
            ts_gateway: 1000 + ordinal,
            ..Tick::default()
        }
    }

    const A: ClientId = ClientId { key: 1, incarnation: 1 };
    const B: ClientId = ClientId { key: 2, incarnation: 1 };

    /// Appends `t` (of symbol `name`) and returns whom it wakes.
    fn append(logs: &mut TradeLogs, t: &Tick, name: &str, cap: usize) -> Vec<ClientId> {
        let mut wake = Vec::new();
        logs.append(t, name, cap, &mut wake);
        wake
    }

    fn ordinals(logs: &TradeLogs, symbol: u32, from: u64) -> Vec<u64> {
        logs.get(symbol).map(|l| l.from(from).map(|t| t.ordinal).collect()).unwrap_or_default()
    }

    #[test]
    fn only_watched_symbols_log_and_each_trade_once() {
        let mut logs = TradeLogs::new(3);
        assert!(append(&mut logs, &trade(0, 1), "X", 8).is_empty(), "nobody takes symbol 0's trades");
        logs.add_subscriber(0, A);
        logs.add_subscriber(0, B);
        logs.add_subscriber(0, A);
        assert_eq!(append(&mut logs, &trade(0, 2), "X", 8), [A, B]);
        assert!(append(&mut logs, &trade(0, 2), "X", 8).is_empty(), "a repeat is not logged twice");
        assert!(append(&mut logs, &Tick { kind: TickKind::Quote, ..trade(0, 3) }, "X", 8).is_empty());
        append(&mut logs, &trade(0, 3), "X", 8);
        assert_eq!(ordinals(&logs, 0, 0), [2, 3]);
        assert_eq!(ordinals(&logs, 0, 3), [3]);
        assert_eq!(logs.logged, 2);
        let t = logs.get(0).unwrap().from(3).next().unwrap();
        let text = std::str::from_utf8(t.json).unwrap();
        assert!(text.starts_with(r#"{"type":"trade","symbol":"X","seq":6,"price":0.000003"#), "{text}");
        // The ordinal is not on the wire.
        assert_eq!(
            binary::decode_message(t.record).unwrap(),
            binary::Message::Trade(Tick { trades: 0, ..trade(0, 3) })
        );
        logs.remove_subscriber(0, A);
        assert!(logs.get(0).is_some());
        logs.remove_subscriber(0, B);
        assert!(logs.get(0).is_none(), "the log closes with its last subscriber");
    }

    #[test]
    fn the_cap_drops_the_oldest_and_trimming_follows_the_slowest_reader() {
        let mut logs = TradeLogs::new(1);
        logs.add_subscriber(0, A);
        for i in 1..=100 {
            append(&mut logs, &trade(0, i), "SYM", 10);
        }
        assert_eq!(ordinals(&logs, 0, 0), (91..=100).collect::<Vec<_>>());
        // Every stored object still decodes after the byte log compacted.
        for t in logs.get(0).unwrap().from(0) {
            let mut v = t.json.to_vec();
            let parsed = simd_json::to_owned_value(&mut v).unwrap();
            use simd_json::prelude::*;
            assert_eq!(parsed.get("seq").and_then(|v| v.as_u64()), Some(t.ordinal * 2));
        }
        logs.trim_below(0, 98);
        assert_eq!(ordinals(&logs, 0, 0), [98, 99, 100]);
        logs.trim_below(0, 101);
        assert_eq!(ordinals(&logs, 0, 0), Vec::<u64>::new());
        assert_eq!(logs.last(0), 100);
        assert_eq!(logs.held().0, 0);
    }
}
