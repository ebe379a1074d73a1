//! Payloads on the NATS bus.
//!
//! **Tick** (subject `<prefix>.<SYMBOL>`): one version byte (`1`), then the tick in the
//! compact codec of `tickgate_feeds::codec`, encoded against the all-zero tick, so every
//! message stands alone. The symbol is the subject's last part, not in the payload; its
//! fields are the full L1 state, `seq` the symbol's sequence number and `ts_gateway` the
//! publisher's stamp (ns since the Unix epoch). A typical quote is 30–45 bytes.
//!
//! **Book** (subject `<prefix>.$book.<SYMBOL>`): a symbol's whole order-book top, so every
//! message stands alone and JetStream's last one is a late gateway's snapshot: one version
//! byte (`1`), a state byte (`0` live, `1` stale: the levels are the last good ones),
//! `ts_event` (u64), the bid and ask counts (u16 each), then the levels, bids then asks, best
//! first, each a price and a size (i64, fixed point 10^8); all little-endian. The publisher
//! sends the top `server.max_depth` levels a side on every change: 50 levels a side are
//! 1.6 KB.
//!
//! **Universe** (subject `<prefix>.$universe`): JSON
//! `{"version":1,"symbols":[{"name":"AAPL","ref_price":18912000000,"tick_size":1000000},...]}`
//! (fixed point 10^8), in id order. Gateways number symbols in this order, so every gateway
//! of a fleet gives a symbol the same id.

use serde::{Deserialize, Serialize};
use tickgate_feeds::codec::{self, CodecError};
use tickgate_feeds::{BookHealth, SymbolInfo, Tick, Universe};

/// Version byte of tick payloads.
pub const TICK_VERSION: u8 = 1;

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// An empty payload or an unknown version byte.
    #[error("unknown tick payload version {0:?}")]
    Version(Option<u8>),
    /// The tick bytes are malformed.
    #[error("bad tick payload: {0}")]
    Codec(#[from] CodecError),
    /// Bytes after the tick.
    #[error("{0} trailing bytes after the tick")]
    Trailing(usize),
    /// The universe JSON is malformed.
    #[error("bad universe payload: {0}")]
    Universe(String),
    /// A book payload that is short, long, or whose levels are out of order or crossed.
    #[error("bad book payload: {0}")]
    Book(&'static str),
}

/// Version byte of book payloads.
pub const BOOK_VERSION: u8 = 1;

/// A book as it travels on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireBook {
    /// Live, or stale (the levels are the last good ones).
    pub health: BookHealth,
    /// Event time of the change, ns since the Unix epoch.
    pub ts_event: u64,
    /// Bids `(price, size)`, best first.
    pub bids: Vec<(i64, i64)>,
    /// Asks `(price, size)`, best first.
    pub asks: Vec<(i64, i64)>,
}

/// Appends the payload of a book to `out`.
pub fn encode_book(
    out: &mut Vec<u8>,
    health: BookHealth,
    ts_event: u64,
    bids: &[(i64, i64)],
    asks: &[(i64, i64)],
) {
    let (bids, asks) =
        (&bids[..bids.len().min(usize::from(u16::MAX))], &asks[..asks.len().min(usize::from(u16::MAX))]);
    out.push(BOOK_VERSION);
    out.push(u8::from(health == BookHealth::Stale));
    out.extend_from_slice(&ts_event.to_le_bytes());
    out.extend_from_slice(&(bids.len() as u16).to_le_bytes());
    out.extend_from_slice(&(asks.len() as u16).to_le_bytes());
    for &(p, q) in bids.iter().chain(asks) {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&q.to_le_bytes());
    }
}

/// Decodes a book payload. A live book must be a book: bids strictly descending, asks
/// strictly ascending, not crossed, sizes positive.
///
/// # Errors
/// On an unknown version, a wrong length, or levels that do not make a book.
pub fn decode_book(payload: &[u8]) -> Result<WireBook, WireError> {
    let Some((&BOOK_VERSION, rest)) = payload.split_first() else {
        return Err(WireError::Version(payload.first().copied()));
    };
    let head: &[u8; 13] =
        rest.get(..13).and_then(|h| h.try_into().ok()).ok_or(WireError::Book("short header"))?;
    let health = match head[0] {
        0 => BookHealth::Live,
        1 => BookHealth::Stale,
        _ => return Err(WireError::Book("unknown state byte")),
    };
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&head[1..9]);
    let (nb, na) = (
        usize::from(u16::from_le_bytes([head[9], head[10]])),
        usize::from(u16::from_le_bytes([head[11], head[12]])),
    );
    let levels = &rest[13..];
    if levels.len() != (nb + na) * 16 {
        return Err(WireError::Book("length does not match the level counts"));
    }
    let level = |c: &[u8]| {
        let (mut p, mut q) = ([0u8; 8], [0u8; 8]);
        p.copy_from_slice(&c[..8]);
        q.copy_from_slice(&c[8..16]);
        (i64::from_le_bytes(p), i64::from_le_bytes(q))
    };
    let mut all = levels.chunks_exact(16).map(level);
    let bids: Vec<(i64, i64)> = all.by_ref().take(nb).collect();
    let asks: Vec<(i64, i64)> = all.collect();
    let ordered = bids.windows(2).all(|w| w[0].0 > w[1].0) && asks.windows(2).all(|w| w[0].0 < w[1].0);
    let uncrossed = match (bids.first(), asks.first()) {
        (Some(b), Some(a)) => b.0 < a.0,
        _ => true,
    };
    let sane = bids.iter().chain(&asks).all(|&(p, q)| p > 0 && q > 0);
    if !(ordered && uncrossed && sane) {
        return Err(WireError::Book("levels out of order, crossed, or not positive"));
    }
    Ok(WireBook { health, ts_event: u64::from_le_bytes(ts), bids, asks })
}

/// Appends the payload of `t` to `out`.
pub fn encode_tick(out: &mut Vec<u8>, t: &Tick) {
    out.push(TICK_VERSION);
    codec::encode(out, &Tick { symbol: t.symbol, ..Tick::default() }, t);
}

/// Decodes a tick payload for symbol id `symbol`.
///
/// # Errors
/// On an unknown version or malformed bytes.
pub fn decode_tick(payload: &[u8], symbol: u32) -> Result<Tick, WireError> {
    let Some((&TICK_VERSION, mut rest)) = payload.split_first() else {
        return Err(WireError::Version(payload.first().copied()));
    };
    let t = codec::decode(&mut rest, &Tick { symbol, ..Tick::default() })?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(t)
}

#[derive(Serialize, Deserialize)]
struct UniverseMsg {
    version: u32,
    symbols: Vec<SymbolEntry>,
}

#[derive(Serialize, Deserialize)]
struct SymbolEntry {
    name: String,
    ref_price: i64,
    tick_size: i64,
}

/// The universe payload.
pub fn encode_universe(u: &Universe) -> Vec<u8> {
    let msg = UniverseMsg {
        version: 1,
        symbols: u
            .symbols()
            .iter()
            .map(|s| SymbolEntry { name: s.name.clone(), ref_price: s.ref_price, tick_size: s.tick_size })
            .collect(),
    };
    serde_json::to_vec(&msg).unwrap_or_default()
}

/// Decodes a universe payload.
///
/// # Errors
/// On malformed JSON, an unknown version, or bad or duplicate symbols.
pub fn decode_universe(payload: &[u8]) -> Result<Universe, WireError> {
    let msg: UniverseMsg = serde_json::from_slice(payload).map_err(|e| WireError::Universe(e.to_string()))?;
    if msg.version != 1 {
        return Err(WireError::Universe(format!("unknown version {}", msg.version)));
    }
    let symbols = msg
        .symbols
        .into_iter()
        .map(|s| SymbolInfo { name: s.name, ref_price: s.ref_price, tick_size: s.tick_size })
        .collect();
    Universe::from_symbols(symbols).map_err(|e| WireError::Universe(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_universes_round_trip() {
        let t = Tick {
            symbol: 3,
            seq: 77,
            bid: 6_183_763_000_000,
            ask: 6_183_764_000_000,
            ts_event: 9,
            ts_gateway: 12,
            ..Tick::default()
        };
        let mut buf = Vec::new();
        encode_tick(&mut buf, &t);
        assert!(buf.len() < 40, "{} bytes", buf.len());
        assert_eq!(decode_tick(&buf, 3).unwrap(), t);
        let u = Universe::load_default().unwrap();
        assert_eq!(decode_universe(&encode_universe(&u)).unwrap().symbols(), u.symbols());
    }

    #[test]
    fn books_round_trip_and_bad_ones_are_refused() {
        let (bids, asks) = (vec![(100, 5), (99, 1)], vec![(101, 2)]);
        let mut buf = Vec::new();
        encode_book(&mut buf, BookHealth::Stale, 42, &bids, &asks);
        assert_eq!(buf.len(), 14 + 3 * 16);
        let b = decode_book(&buf).unwrap();
        assert_eq!(
            b,
            WireBook { health: BookHealth::Stale, ts_event: 42, bids: bids.clone(), asks: asks.clone() }
        );
        assert!(matches!(decode_book(&buf[..buf.len() - 1]), Err(WireError::Book(_))));
        assert!(matches!(decode_book(b"\x02"), Err(WireError::Version(Some(2)))));
        let mut crossed = Vec::new();
        encode_book(&mut crossed, BookHealth::Live, 1, &[(102, 1)], &asks);
        assert!(matches!(decode_book(&crossed), Err(WireError::Book(_))));
        let mut unordered = Vec::new();
        encode_book(&mut unordered, BookHealth::Live, 1, &[(99, 1), (100, 1)], &asks);
        assert!(matches!(decode_book(&unordered), Err(WireError::Book(_))));
        let mut empty = Vec::new();
        encode_book(&mut empty, BookHealth::Live, 1, &[], &[]);
        assert_eq!(decode_book(&empty).unwrap().bids, vec![]);
    }

    #[test]
    fn foreign_payloads_are_refused() {
        assert!(matches!(decode_tick(b"", 0), Err(WireError::Version(None))));
        assert!(matches!(decode_tick(b"\x02abc", 0), Err(WireError::Version(Some(2)))));
        assert!(matches!(decode_tick(b"\x01", 0), Err(WireError::Codec(_))));
        let mut buf = Vec::new();
        encode_tick(&mut buf, &Tick::default());
        buf.push(0);
        assert!(matches!(decode_tick(&buf, 0), Err(WireError::Trailing(1))));
        assert!(decode_universe(b"{\"version\":2,\"symbols\":[]}").is_err());
        assert!(decode_universe(b"{\"version\":1,\"symbols\":[]}").is_err());
        assert!(decode_universe(b"nope").is_err());
    }
}
