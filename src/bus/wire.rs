//! Payloads on the NATS bus.
//!
//! **Tick** (subject `<prefix>.<SYMBOL>`): one version byte (`1`), then the tick in the
//! compact codec of `tickgate_feeds::codec`, encoded against the all-zero tick, so every
//! message stands alone. The symbol is the subject's last part, not in the payload; its
//! fields are the full L1 state, `seq` the symbol's sequence number and `ts_gateway` the
//! publisher's stamp (ns since the Unix epoch). A typical quote is 30–45 bytes.
//!
//! **Universe** (subject `<prefix>.$universe`): JSON
//! `{"version":1,"symbols":[{"name":"AAPL","ref_price":18912000000,"tick_size":1000000},...]}`
//! (fixed point 10^8), in id order. Gateways number symbols in this order, so every gateway
//! of a fleet gives a symbol the same id.

use serde::{Deserialize, Serialize};
use tickgate_feeds::codec::{self, CodecError};
use tickgate_feeds::{SymbolInfo, Tick, Universe};

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
