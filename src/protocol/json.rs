//! The JSON update encoder and the JSON string escaper shared with the control replies.
//!
//! An update is written by hand, field by field, into the caller's reused buffer: no
//! serializer, no allocation, and the field order is fixed (clients may rely on it):
//!
//! ```text
//! {"type":"update","symbol":"AAPL","seq":42,"bid":189.12,"bid_size":300,"ask":189.14,
//!  "ask_size":200,"last":189.13,"last_size":100,"volume":1234567,
//!  "ts_event":1732240000123456789,"ts_gateway":1732240000123460000,"snapshot":false}
//! ```
//!
//! (one line on the wire). Prices, sizes and volume are printed exactly from their fixed-point
//! value with `format_fixed` (no exponent, no rounding, trailing zeros trimmed, so an integral
//! value has no decimal point); `seq` and the timestamps (ns since the Unix epoch) are
//! integers.

#[cfg(test)]
use crate::feeds::format_fixed;
use crate::feeds::{FixedBuf, Tick};

/// Upper bound of an encoded update's length apart from the symbol: the fixed text (about
/// 150 bytes) plus 20 digits for each of `seq` and both timestamps and 21 characters for each
/// of the seven fixed-point fields. Reserved up front so the encoder grows `out` at most once.
const UPDATE_MAX_LEN_WITHOUT_SYMBOL: usize = 150 + 3 * 20 + 7 * 21;

/// Appends one complete JSON update object for `tick` to `out`; `symbol` is the tick's symbol
/// name and `snapshot` tells a snapshot (sent on subscribe, or to heal a gap) from a live
/// update.
///
/// `symbol` is written without escaping: symbol names are validated by the universe to
/// `[A-Za-z0-9._/-]`, which needs none (checked by a `debug_assert!`).
#[inline]
pub fn encode_update(out: &mut Vec<u8>, tick: &Tick, symbol: &str, snapshot: bool) {
    debug_assert!(symbol.bytes().all(is_plain_symbol_byte), "symbol {symbol:?} needs JSON escaping");
    // Assemble on the stack and copy out once: ~30 small appends to a Vec each pay a
    // capacity check and a length update; to a fixed array they are plain copies.
    let mut w = StackWriter { buf: [0; UPDATE_MAX_LEN_WITHOUT_SYMBOL + MAX_SYMBOL_LEN], len: 0 };
    let mut int = itoa::Buffer::new();
    let mut fixed = FixedBuf::new();
    w.put(b"{\"type\":\"update\",\"symbol\":\"");
    w.put(&symbol.as_bytes()[..symbol.len().min(MAX_SYMBOL_LEN)]);
    w.put(b"\",\"seq\":");
    w.put(int.format(tick.seq).as_bytes());
    w.put(b",\"bid\":");
    w.put(fixed.format(tick.bid));
    w.put(b",\"bid_size\":");
    w.put(fixed.format(tick.bid_size));
    w.put(b",\"ask\":");
    w.put(fixed.format(tick.ask));
    w.put(b",\"ask_size\":");
    w.put(fixed.format(tick.ask_size));
    w.put(b",\"last\":");
    w.put(fixed.format(tick.last));
    w.put(b",\"last_size\":");
    w.put(fixed.format(tick.last_size));
    w.put(b",\"volume\":");
    w.put(fixed.format(tick.volume));
    w.put(b",\"ts_event\":");
    w.put(int.format(tick.ts_event).as_bytes());
    w.put(b",\"ts_gateway\":");
    w.put(int.format(tick.ts_gateway).as_bytes());
    w.put(if snapshot { b",\"snapshot\":true}" } else { b",\"snapshot\":false}" });
    out.extend_from_slice(&w.buf[..w.len]);
}

/// Appends one JSON trade object for the trade `tick` (a [`crate::feeds::TickKind::Trade`]) to
/// `out`, with the same conventions as [`encode_update`]; `side` and `trade_id` are omitted
/// when the source has none:
///
/// ```text
/// {"type":"trade","symbol":"AAPL","seq":43,"price":189.13,"size":100,"side":"buy",
///  "trade_id":9071,"ts_event":1732240000123456789,"ts_gateway":1732240000123460000}
/// ```
#[inline]
pub fn encode_trade(out: &mut Vec<u8>, tick: &Tick, symbol: &str) {
    debug_assert!(symbol.bytes().all(is_plain_symbol_byte), "symbol {symbol:?} needs JSON escaping");
    let mut w = StackWriter { buf: [0; UPDATE_MAX_LEN_WITHOUT_SYMBOL + MAX_SYMBOL_LEN], len: 0 };
    let mut int = itoa::Buffer::new();
    let mut fixed = FixedBuf::new();
    w.put(b"{\"type\":\"trade\",\"symbol\":\"");
    w.put(&symbol.as_bytes()[..symbol.len().min(MAX_SYMBOL_LEN)]);
    w.put(b"\",\"seq\":");
    w.put(int.format(tick.seq).as_bytes());
    w.put(b",\"price\":");
    w.put(fixed.format(tick.last));
    w.put(b",\"size\":");
    w.put(fixed.format(tick.last_size));
    if let Some(side) = tick.side.as_str() {
        w.put(b",\"side\":\"");
        w.put(side.as_bytes());
        w.put(b"\"");
    }
    if tick.trade_id != 0 {
        w.put(b",\"trade_id\":");
        w.put(int.format(tick.trade_id).as_bytes());
    }
    w.put(b",\"ts_event\":");
    w.put(int.format(tick.ts_event).as_bytes());
    w.put(b",\"ts_gateway\":");
    w.put(int.format(tick.ts_gateway).as_bytes());
    w.put(b"}");
    out.extend_from_slice(&w.buf[..w.len]);
}

/// Appends one JSON order-book object: `book`'s best `depth` levels a side of `symbol`, prices
/// and sizes exact as in updates, bids best (highest) first, asks best (lowest) first:
///
/// ```text
/// {"type":"book","symbol":"BTCUSDT","seq":17,"depth":10,"bids":[[61837.63,3.78826],...],
///  "asks":[[61837.64,1.2],...],"stale":false,"ts_event":...,"ts_gateway":...}
/// ```
///
/// `stale: true`: the gateway's book of the symbol is out of date (a continuity break in the
/// feed), and these are its last good levels. Grows `out` at most once.
pub fn encode_book(out: &mut Vec<u8>, symbol: &str, depth: usize, book: &crate::books::Levels) {
    debug_assert!(symbol.bytes().all(is_plain_symbol_byte), "symbol {symbol:?} needs JSON escaping");
    let (bids, asks) = (&book.bids[..book.bids.len().min(depth)], &book.asks[..book.asks.len().min(depth)]);
    // 45 bytes of a level at most ("[" + 21 + "," + 21 + "],"), 200 of the rest.
    out.reserve(200 + symbol.len() + (bids.len() + asks.len()) * 45);
    let mut int = itoa::Buffer::new();
    let mut fixed = FixedBuf::new();
    out.extend_from_slice(b"{\"type\":\"book\",\"symbol\":\"");
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(int.format(book.seq).as_bytes());
    out.extend_from_slice(b",\"depth\":");
    out.extend_from_slice(int.format(depth).as_bytes());
    for (name, side) in [(&b",\"bids\":["[..], bids), (&b"],\"asks\":["[..], asks)] {
        out.extend_from_slice(name);
        for (i, &(p, q)) in side.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            out.extend_from_slice(fixed.format(p));
            out.push(b',');
            out.extend_from_slice(fixed.format(q));
            out.push(b']');
        }
    }
    out.extend_from_slice(if book.stale { b"],\"stale\":true" } else { b"],\"stale\":false" });
    out.extend_from_slice(b",\"ts_event\":");
    out.extend_from_slice(int.format(book.ts_event).as_bytes());
    out.extend_from_slice(b",\"ts_gateway\":");
    out.extend_from_slice(int.format(book.ts_gateway).as_bytes());
    out.push(b'}');
}

/// Appends a gap notice: `missed` trades of `symbol` were dropped for this client (its trade
/// backlog overflowed, or they never reached the shard) and will not be sent.
///
/// ```text
/// {"type":"gap","symbol":"AAPL","missed":12}
/// ```
pub fn encode_gap(out: &mut Vec<u8>, symbol: &str, missed: u64) {
    out.extend_from_slice(b"{\"type\":\"gap\",\"symbol\":\"");
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"missed\":");
    out.extend_from_slice(itoa::Buffer::new().format(missed).as_bytes());
    out.push(b'}');
}

/// Longest symbol name the universe accepts (longer names are cut, which the universe rules
/// out).
const MAX_SYMBOL_LEN: usize = tickgate_feeds::universe::MAX_SYMBOL_LEN;

/// Appends to a fixed stack array; sized by [`UPDATE_MAX_LEN_WITHOUT_SYMBOL`] so it cannot
/// overflow for any tick.
struct StackWriter {
    buf: [u8; UPDATE_MAX_LEN_WITHOUT_SYMBOL + MAX_SYMBOL_LEN],
    len: usize,
}

impl StackWriter {
    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

/// The bytes a symbol name may contain (the universe's rule), none of which needs escaping.
fn is_plain_symbol_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}

/// Largest payload of one batched JSON frame (`Format::JsonBatch`), bytes. A flush with more
/// updates is split into several frames, each a complete JSON array.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Whether appending `object` to the batch in `body` would take its frame over
/// [`MAX_BATCH_BYTES`] (then finish the batch first). Never true for an empty batch: one
/// object always fits.
#[inline]
pub fn batch_is_full(body: &[u8], object: &[u8]) -> bool {
    !body.is_empty() && body.len() + object.len() + 2 > MAX_BATCH_BYTES
}

/// Appends one already encoded update object to the batch being built in `body` (`[` before
/// the first, `,` between): a batch is concatenation, never re-encoding.
#[inline]
pub fn batch_append(body: &mut Vec<u8>, object: &[u8]) {
    body.push(if body.is_empty() { b'[' } else { b',' });
    body.extend_from_slice(object);
}

/// Closes the batch in `body` (`]`), appends it to `out` as one text frame, and empties
/// `body`. Does nothing for an empty batch.
pub fn batch_finish(out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if body.is_empty() {
        return;
    }
    body.push(b']');
    crate::protocol::frame::write_frame(out, crate::protocol::frame::OpCode::Text, body);
    body.clear();
}

/// Appends `["a","b",...]`: each string escaped with [`escape_str`].
pub fn write_string_array<'s>(out: &mut Vec<u8>, strings: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (i, s) in strings.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape_str(out, s);
    }
    out.push(b']');
}

/// Appends `s` to `out` as a JSON string literal, quotes included.
///
/// Escapes exactly what JSON requires: `"` as `\"`, `\` as `\\`, and every control character
/// U+0000–U+001F as `\u00XX` (lowercase hex). Everything else, including non-ASCII UTF-8 and
/// `/`, is copied unchanged.
pub fn escape_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::feeds::SCALE;
    use proptest::prelude::*;
    use simd_json::BorrowedValue;
    use simd_json::prelude::*;

    use crate::protocol::example_tick;

    const GOLDEN: &str = concat!(
        r#"{"type":"update","symbol":"AAPL","seq":42,"bid":189.12,"bid_size":300,"#,
        r#""ask":189.14,"ask_size":200,"last":189.13,"last_size":100,"volume":1234567,"#,
        r#""ts_event":1732240000123456789,"ts_gateway":1732240000123460000,"snapshot":false}"#
    );

    #[test]
    fn trade_and_gap_golden() {
        use crate::feeds::{Side, TickKind};
        let t = Tick { kind: TickKind::Trade, seq: 43, trade_id: 9071, side: Side::Buy, ..example_tick() };
        let mut out = Vec::new();
        encode_trade(&mut out, &t, "AAPL");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"type":"trade","symbol":"AAPL","seq":43,"price":189.13,"size":100,"side":"buy","#,
                r#""trade_id":9071,"ts_event":1732240000123456789,"ts_gateway":1732240000123460000}"#
            )
        );
        // Fields the source lacks are omitted.
        let mut out = Vec::new();
        encode_trade(&mut out, &Tick { trade_id: 0, side: Side::Unknown, ..t }, "AAPL");
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("side") && !text.contains("trade_id"), "{text}");
        let mut v = text.into_bytes();
        let parsed = simd_json::to_borrowed_value(&mut v).unwrap();
        assert_eq!(parsed.get("type").and_then(|v| v.as_str()), Some("trade"));
        let mut out = Vec::new();
        encode_gap(&mut out, "AAPL", 12);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"type":"gap","symbol":"AAPL","missed":12}"#);
    }

    fn encode(tick: &Tick, symbol: &str, snapshot: bool) -> String {
        let mut out = Vec::new();
        encode_update(&mut out, tick, symbol, snapshot);
        String::from_utf8(out).unwrap()
    }

    /// The raw text of a top-level numeric field of an encoded update.
    fn raw_field<'a>(json: &'a str, name: &str) -> &'a str {
        let key = format!("\"{name}\":");
        let start = json.find(&key).unwrap() + key.len();
        let rest = &json[start..];
        let end = rest.find([',', '}']).unwrap();
        &rest[..end]
    }

    /// Parses a decimal string back to fixed point exactly (no floats): `-?\d+(\.\d{1,8})?`
    /// with no trailing zero in the fraction.
    fn parse_fixed(s: &str) -> i64 {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()), "{s}");
        assert!(frac.len() <= 8 && frac.bytes().all(|b| b.is_ascii_digit()), "{s}");
        assert!(!frac.ends_with('0'), "trailing zero in {s}");
        assert!(int == "0" || !int.starts_with('0'), "leading zero in {s}");
        let mut mag: i128 = int.parse::<i128>().unwrap() * i128::from(SCALE);
        if !frac.is_empty() {
            let f: i128 = frac.parse().unwrap();
            mag += f * 10i128.pow(8 - frac.len() as u32);
        }
        let v = if neg { -mag } else { mag };
        assert!(!(neg && v == 0), "negative zero {s}");
        i64::try_from(v).unwrap()
    }

    #[test]
    fn golden_update_matches_spec() {
        assert_eq!(encode(&example_tick(), "AAPL", false), GOLDEN);
        let snap = encode(&example_tick(), "AAPL", true);
        assert_eq!(snap, GOLDEN.replace("\"snapshot\":false", "\"snapshot\":true"));
    }

    #[test]
    fn golden_update_parses_with_the_right_fields() {
        let mut buf = encode(&example_tick(), "AAPL", false).into_bytes();
        let v: BorrowedValue = simd_json::to_borrowed_value(&mut buf).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 13);
        assert_eq!(v["type"].as_str(), Some("update"));
        assert_eq!(v["symbol"].as_str(), Some("AAPL"));
        assert_eq!(v["seq"].as_u64(), Some(42));
        assert_eq!(v["bid"].cast_f64(), Some(189.12));
        assert_eq!(v["bid_size"].as_u64(), Some(300));
        assert_eq!(v["ask"].cast_f64(), Some(189.14));
        assert_eq!(v["ask_size"].as_u64(), Some(200));
        assert_eq!(v["last"].cast_f64(), Some(189.13));
        assert_eq!(v["last_size"].as_u64(), Some(100));
        assert_eq!(v["volume"].as_u64(), Some(1_234_567));
        assert_eq!(v["ts_event"].as_u64(), Some(1_732_240_000_123_456_789));
        assert_eq!(v["ts_gateway"].as_u64(), Some(1_732_240_000_123_460_000));
        assert_eq!(v["snapshot"].as_bool(), Some(false));
    }

    #[test]
    fn fixed_point_fields_print_exactly() {
        // (value, printed): negative, zero, sub-cent, all eight decimals, extremes.
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (-18_912_000_000, "-189.12"),
            (1, "0.00000001"),
            (-1, "-0.00000001"),
            (500_000, "0.005"),
            (12_345_678, "0.12345678"),
            (98_765_432_123_456_789, "987654321.23456789"),
            (SCALE, "1"),
            (-SCALE, "-1"),
            (10, "0.0000001"),
            (i64::MAX, "92233720368.54775807"),
            (i64::MIN, "-92233720368.54775808"),
        ];
        for &(v, want) in cases {
            let tick = Tick {
                bid: v,
                bid_size: v,
                ask: v,
                ask_size: v,
                last: v,
                last_size: v,
                volume: v,
                ..example_tick()
            };
            let json = encode(&tick, "X", false);
            for f in ["bid", "bid_size", "ask", "ask_size", "last", "last_size", "volume"] {
                assert_eq!(raw_field(&json, f), want, "field {f} of {v}");
                assert_eq!(parse_fixed(raw_field(&json, f)), v);
            }
            let mut buf = json.clone().into_bytes();
            assert!(simd_json::to_borrowed_value(&mut buf).is_ok(), "{json}");
        }
    }

    #[test]
    fn integers_print_in_full() {
        let tick = Tick { seq: u64::MAX, ts_event: 0, ts_gateway: u64::MAX, ..example_tick() };
        let json = encode(&tick, "BRK.B", true);
        assert_eq!(raw_field(&json, "seq"), "18446744073709551615");
        assert_eq!(raw_field(&json, "ts_event"), "0");
        assert_eq!(raw_field(&json, "ts_gateway"), "18446744073709551615");
        assert_eq!(raw_field(&json, "symbol"), "\"BRK.B\"");
    }

    #[test]
    fn encode_appends() {
        let mut out = b"prefix".to_vec();
        encode_update(&mut out, &example_tick(), "AAPL", false);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(&out[6..], GOLDEN.as_bytes());
    }

    #[test]
    fn escape_str_table() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("AAPL", r#""AAPL""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("\n\r\t", r#""\u000a\u000d\u0009""#),
            ("\u{0}\u{1f}", r#""\u0000\u001f""#),
            ("\u{7f}", "\"\u{7f}\""),
            ("/é€😀", "\"/é€😀\""),
            ("\"\"", r#""\"\"""#),
            ("end\\", r#""end\\""#),
        ];
        for &(input, want) in cases {
            let mut out = Vec::new();
            escape_str(&mut out, input);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want, "input {input:?}");
            // And it parses back to the input.
            let v: BorrowedValue = simd_json::to_borrowed_value(&mut out).unwrap();
            assert_eq!(v.as_str(), Some(input));
        }
    }

    fn arb_tick() -> impl Strategy<Value = Tick> {
        (
            any::<u64>(),
            any::<[i64; 7]>(),
            any::<u64>(),
            any::<u64>(),
            prop_oneof![Just(0i64), -1_000_000_000_000i64..1_000_000_000_000],
        )
            .prop_map(|(seq, v, ts_event, ts_gateway, small)| Tick {
                seq,
                bid: v[0],
                bid_size: v[1],
                ask: v[2],
                ask_size: v[3],
                last: small,
                last_size: v[5],
                volume: v[6],
                ts_event,
                ts_gateway,
                ..Tick::default()
            })
    }

    proptest! {
        #[test]
        fn encode_update_is_json_and_exact(
            tick in arb_tick(),
            symbol in "[A-Za-z0-9._/-]{1,16}",
            snapshot in any::<bool>(),
        ) {
            let json = encode(&tick, &symbol, snapshot);
            let mut buf = json.clone().into_bytes();
            let v: BorrowedValue = simd_json::to_borrowed_value(&mut buf).unwrap();
            prop_assert_eq!(v.as_object().map(|o| o.len()), Some(13));
            prop_assert_eq!(v["type"].as_str(), Some("update"));
            prop_assert_eq!(v["symbol"].as_str(), Some(symbol.as_str()));
            prop_assert_eq!(v["seq"].as_u64(), Some(tick.seq));
            prop_assert_eq!(v["ts_event"].as_u64(), Some(tick.ts_event));
            prop_assert_eq!(v["ts_gateway"].as_u64(), Some(tick.ts_gateway));
            prop_assert_eq!(v["snapshot"].as_bool(), Some(snapshot));
            let fixed = [
                ("bid", tick.bid), ("bid_size", tick.bid_size), ("ask", tick.ask),
                ("ask_size", tick.ask_size), ("last", tick.last),
                ("last_size", tick.last_size), ("volume", tick.volume),
            ];
            for (name, value) in fixed {
                prop_assert!(v[name].is_number(), "{} is not a number", name);
                let raw = raw_field(&json, name);
                let mut want = Vec::new();
                format_fixed(&mut want, value);
                prop_assert_eq!(raw.as_bytes(), &want[..]);
                prop_assert_eq!(parse_fixed(raw), value);
            }
        }
    }
}
