//! Compact binary encoding of ticks, shared by recorded tick files ([`crate::tickfile`]) and
//! the NATS feed bus payload.
//!
//! A tick is written as the difference from a *previous* tick of the same symbol (in a file)
//! or from the all-zero tick (on the bus, where every message stands alone). Integers are
//! LEB128 varints; signed differences are zigzag-mapped first, so small changes in either
//! direction take one or two bytes.
//!
//! ```text
//! mask      varint   bit 0: kind (1 = trade)
//!                    bits 1..=7: bid, bid_size, ask, ask_size, last, last_size, volume present
//!                    bit 8: ts_gateway present
//!                    bit 9: trades differs from prev's; bit 10: trade_id differs
//!                    bits 11..=12: side (0 unknown, 1 buy, 2 sell)
//! seq       varint   seq - prev.seq (wrapping)
//! fields    zigzag   for each present field in bit order: value - prev.value (wrapping)
//! ts_event  zigzag   ts_event - prev.ts_event (wrapping, as i64)
//! ts_gw     zigzag   if bit 8: ts_gateway - ts_event (wrapping, as i64)
//! trades    varint   if bit 9: trades - prev.trades (wrapping)
//! trade_id  zigzag   if bit 10: trade_id - prev.trade_id (wrapping, as i64)
//! ```
//!
//! A field equal to the previous tick's is omitted. Bits 9–12 were added with trades as their
//! own messages; files and bus messages written before them decode with no trade count, id or
//! side (the gateway's feed thread then counts trades itself). A typical simulated quote takes 9–14
//! bytes against 88 for the fixed binary record. Decoding never panics: truncated or
//! over-long input is an error.

use crate::{Side, Tick, TickKind};

/// Why bytes could not be decoded into a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended inside a tick.
    #[error("truncated tick")]
    Truncated,
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// Mask bits that this version does not define.
    #[error("unknown mask bits {0:#x}")]
    BadMask(u64),
}

const KIND_BIT: u64 = 1;
const TS_GATEWAY_BIT: u64 = 1 << 8;
const FIELD_BITS: u64 = 0x7f << 1;
const TRADES_BIT: u64 = 1 << 9;
const TRADE_ID_BIT: u64 = 1 << 10;
const SIDE_SHIFT: u32 = 11;
const SIDE_BITS: u64 = 0b11 << SIDE_SHIFT;
const KNOWN_BITS: u64 = KIND_BIT | FIELD_BITS | TS_GATEWAY_BIT | TRADES_BIT | TRADE_ID_BIT | SIDE_BITS;

/// Appends `v` as an unsigned LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint from the front of `input`, advancing it.
///
/// # Errors
/// On truncation or a varint over 64 bits.
#[inline]
pub fn get_varint(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = input.split_first() else {
            return Err(CodecError::Truncated);
        };
        *input = rest;
        let low = u64::from(b & 0x7f);
        if i == 9 && low > 1 {
            return Err(CodecError::BadVarint);
        }
        v |= low << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::BadVarint)
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
fn fields(t: &Tick) -> [i64; 7] {
    [t.bid, t.bid_size, t.ask, t.ask_size, t.last, t.last_size, t.volume]
}

/// Appends `t` encoded relative to `prev` (the same symbol's previous tick, or
/// `Tick::default()`). The symbol id is not written: the caller frames it.
pub fn encode(out: &mut Vec<u8>, prev: &Tick, t: &Tick) {
    let (p, n) = (fields(prev), fields(t));
    let mut mask = u64::from(t.kind == TickKind::Trade);
    for i in 0..7 {
        if p[i] != n[i] {
            mask |= 1 << (i + 1);
        }
    }
    if t.ts_gateway != 0 {
        mask |= TS_GATEWAY_BIT;
    }
    if t.trades != prev.trades {
        mask |= TRADES_BIT;
    }
    if t.trade_id != prev.trade_id {
        mask |= TRADE_ID_BIT;
    }
    mask |= u64::from(t.side as u8) << SIDE_SHIFT;
    put_varint(out, mask);
    put_varint(out, t.seq.wrapping_sub(prev.seq));
    for i in 0..7 {
        if mask & (1 << (i + 1)) != 0 {
            put_varint(out, zigzag(n[i].wrapping_sub(p[i])));
        }
    }
    put_varint(out, zigzag(t.ts_event.wrapping_sub(prev.ts_event) as i64));
    if t.ts_gateway != 0 {
        put_varint(out, zigzag(t.ts_gateway.wrapping_sub(t.ts_event) as i64));
    }
    if mask & TRADES_BIT != 0 {
        put_varint(out, t.trades.wrapping_sub(prev.trades));
    }
    if mask & TRADE_ID_BIT != 0 {
        put_varint(out, zigzag(t.trade_id.wrapping_sub(prev.trade_id) as i64));
    }
}

/// Decodes one tick written by [`encode`] against the same `prev`, advancing `input`. The
/// result's `symbol` is `prev.symbol`.
///
/// # Errors
/// On truncated or malformed input.
pub fn decode(input: &mut &[u8], prev: &Tick) -> Result<Tick, CodecError> {
    let mask = get_varint(input)?;
    if mask & !KNOWN_BITS != 0 || (mask & SIDE_BITS) >> SIDE_SHIFT == 3 {
        return Err(CodecError::BadMask(mask));
    }
    let mut f = fields(prev);
    let seq = prev.seq.wrapping_add(get_varint(input)?);
    for (i, v) in f.iter_mut().enumerate() {
        if mask & (1 << (i + 1)) != 0 {
            *v = v.wrapping_add(unzigzag(get_varint(input)?));
        }
    }
    let ts_event = prev.ts_event.wrapping_add(unzigzag(get_varint(input)?) as u64);
    let ts_gateway = if mask & TS_GATEWAY_BIT != 0 {
        ts_event.wrapping_add(unzigzag(get_varint(input)?) as u64)
    } else {
        0
    };
    let trades =
        if mask & TRADES_BIT != 0 { prev.trades.wrapping_add(get_varint(input)?) } else { prev.trades };
    let trade_id = if mask & TRADE_ID_BIT != 0 {
        prev.trade_id.wrapping_add(unzigzag(get_varint(input)?) as u64)
    } else {
        prev.trade_id
    };
    let [bid, bid_size, ask, ask_size, last, last_size, volume] = f;
    Ok(Tick {
        symbol: prev.symbol,
        kind: if mask & KIND_BIT != 0 { TickKind::Trade } else { TickKind::Quote },
        seq,
        bid,
        bid_size,
        ask,
        ask_size,
        last,
        last_size,
        volume,
        ts_event,
        ts_gateway,
        trades,
        trade_id,
        side: Side::from_u8(((mask & SIDE_BITS) >> SIDE_SHIFT) as u8),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_tick() -> impl Strategy<Value = Tick> {
        (
            any::<[i64; 7]>(),
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            prop_oneof![Just(0u64), any::<u64>()],
            any::<[u64; 2]>(),
            0u8..3,
        )
            .prop_map(|(f, seq, trade, ts_event, ts_gateway, [trades, trade_id], side)| Tick {
                symbol: 0,
                kind: if trade { TickKind::Trade } else { TickKind::Quote },
                seq,
                bid: f[0],
                bid_size: f[1],
                ask: f[2],
                ask_size: f[3],
                last: f[4],
                last_size: f[5],
                volume: f[6],
                ts_event,
                ts_gateway,
                trades,
                trade_id,
                side: Side::from_u8(side),
            })
    }

    proptest! {
        #[test]
        fn round_trips_against_any_previous_tick(prev in arb_tick(), t in arb_tick()) {
            let mut buf = Vec::new();
            encode(&mut buf, &prev, &t);
            let mut input = &buf[..];
            prop_assert_eq!(decode(&mut input, &prev).unwrap(), t);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn truncated_or_random_input_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut input = &bytes[..];
            let _ = decode(&mut input, &Tick::default());
        }

        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut input = &buf[..];
            prop_assert_eq!(get_varint(&mut input).unwrap(), v);
        }
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        let prev = Tick { seq: 9, bid: 100, ts_event: 1_000, ..Tick::default() };
        let t = Tick { seq: 10, bid: 101, ask: 102, ts_event: 1_500, ts_gateway: 1_600, ..prev };
        let mut buf = Vec::new();
        encode(&mut buf, &prev, &t);
        for n in 0..buf.len() {
            assert_eq!(decode(&mut &buf[..n], &prev), Err(CodecError::Truncated), "prefix {n}");
        }
    }

    #[test]
    fn an_unchanged_quote_is_small() {
        let prev =
            Tick { seq: 9, bid: 18_912_000_000, ask: 18_914_000_000, ts_event: 1_000, ..Tick::default() };
        let t = Tick { seq: 10, bid: 18_913_000_000, ts_event: 51_000, ..prev };
        let mut buf = Vec::new();
        encode(&mut buf, &prev, &t);
        assert!(buf.len() <= 9, "{} bytes", buf.len());
    }

    #[test]
    fn over_long_varints_and_unknown_mask_bits_are_refused() {
        assert_eq!(get_varint(&mut &[0xff; 11][..]), Err(CodecError::BadVarint));
        let mut buf = Vec::new();
        put_varint(&mut buf, 1 << 13);
        assert_eq!(decode(&mut &buf[..], &Tick::default()), Err(CodecError::BadMask(1 << 13)));
        buf.clear();
        put_varint(&mut buf, SIDE_BITS);
        assert_eq!(decode(&mut &buf[..], &Tick::default()), Err(CodecError::BadMask(SIDE_BITS)));
    }
}
