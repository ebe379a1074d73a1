//! Binance market-data captures: one line per received WebSocket message,
//! `<capture_ns> <json>` (see `../shared/data/binance-2024-08-08/README.md`), normalized to
//! Level-1 events.
//!
//! [`parse_line`] classifies one line without allocating (the JSON is borrowed):
//! - `trade` and `aggTrade` → [`Event::Trade`] (price `p`, quantity `q`);
//! - `bookTicker` → [`Event::Quote`] (best bid `b`/`B`, best ask `a`/`A`);
//! - order-book diffs (`depthUpdate`), the REST snapshot line (`lastUpdateId`) and any other
//!   well-formed message → [`Event::Skip`], each counted by kind;
//! - anything else (no timestamp, not JSON, a trade without a price, a decimal with more than
//!   8 places) → an error saying what is wrong, for the caller to count and log.
//!
//! Messages come wrapped in the combined-stream envelope `{"stream":..,"data":{..}}` or bare.
//! Fields the normalizer does not use (event and transaction times, ids, maker flags, the
//! futures variants' extra fields) are ignored, so captures of other Binance markets replay
//! without special cases. The kind is taken from the event type `e` when present, else from
//! the shape (a message with string `b`, `B`, `a`, `A` is a book ticker, as spot sends it).
//!
//! [`L1Book`] folds events into full L1 ticks per symbol: bid/ask from the newest quote, last
//! price/size from the newest trade, volume as the running sum of trade quantities.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::universe::parse_fixed;
use crate::{Side, Tick, TickKind};

/// One classified capture line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A trade printed.
    Trade {
        /// Capture time, ns since the Unix epoch.
        capture_ns: u64,
        /// Symbol as sent (`BTCUSDT`).
        symbol: Cow<'a, str>,
        /// Price, fixed point 10^8.
        price: i64,
        /// Quantity, fixed point 10^8.
        qty: i64,
        /// The trade id (`t` of a trade, `a` of an aggTrade), if present.
        trade_id: Option<u64>,
        /// The aggressor, from `m` ("the buyer is the maker": then the seller took).
        side: Side,
    },
    /// The best bid/ask changed.
    Quote {
        /// Capture time, ns since the Unix epoch.
        capture_ns: u64,
        /// Symbol as sent.
        symbol: Cow<'a, str>,
        /// Best bid price, fixed point 10^8.
        bid: i64,
        /// Best bid quantity.
        bid_size: i64,
        /// Best ask price.
        ask: i64,
        /// Best ask quantity.
        ask_size: i64,
    },
    /// A well-formed line the L1 feed does not use.
    Skip(SkipKind),
}

/// Why a well-formed line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// An order-book diff (`depthUpdate`).
    Depth,
    /// A REST order-book snapshot line.
    Snapshot,
    /// Any other message (klines, tickers, subscription acks, ...).
    Other,
}

/// Why a capture line is malformed: a trade or quote line ([`parse_line`]) or a depth line
/// ([`crate::book::parse_depth_line`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line does not start with `<capture_ns> `.
    #[error("no capture timestamp before the message")]
    NoTimestamp,
    /// The message is not valid JSON or has wrongly typed fields.
    #[error("bad JSON: {0}")]
    Json(String),
    /// A message without a field it needs.
    #[error("{kind} without `{field}`")]
    Missing {
        /// `trade`, `bookTicker`, `depthUpdate` or `snapshot`.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A price or quantity that is not an exact decimal with at most 8 places within range.
    #[error("`{field}` is not a decimal with at most 8 places: {value:?}")]
    BadDecimal {
        /// The field (for depth: `b`, `a`, `bids` or `asks`).
        field: &'static str,
        /// Its value (at most 40 characters of it).
        value: String,
    },
    /// A negative quantity.
    #[error("`{field}` is negative")]
    Negative {
        /// The field.
        field: &'static str,
    },
    /// A depth level with a price at or below zero, or a negative quantity.
    #[error("`{field}` has an impossible level: price {price}, quantity {qty} (fixed point 10^8)")]
    BadLevel {
        /// `b`, `a`, `bids` or `asks`.
        field: &'static str,
        /// The price.
        price: i64,
        /// The quantity.
        qty: i64,
    },
    /// A depth update with `U > u`, or an event time beyond `u64` nanoseconds.
    #[error("bad update ids or time: U {first}, u {last}")]
    BadIds {
        /// `U`.
        first: u64,
        /// `u`.
        last: u64,
    },
}

/// A field that is a string in the messages we use but may be something else in others
/// (`b`/`a` are arrays in depth updates, `a` is a number in `aggTrade`): the string if it is
/// one, the unsigned integer or the boolean if it is one of those.
#[derive(Debug, Default)]
struct Loose<'a>(Option<Cow<'a, str>>, Option<u64>, Option<bool>);

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Borrowed(v)), None, None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose(Some(Cow::Owned(v.to_owned())), None, None))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Loose(None, None, Some(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Loose::default())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose(None, Some(v), None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A market-data message: the fields the L1 normalizer reads, plus the combined-stream
/// envelope's `stream` and `data`. The envelope's `data` is the same shape with its own
/// `data` ignored (`D = IgnoredAny`), so one definition serves both levels.
#[derive(Debug, Default, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
struct Message<'a, D> {
    #[serde(borrow, default)]
    stream: Loose<'a>,
    #[serde(default)]
    data: Option<D>,
    #[serde(borrow, default)]
    e: Loose<'a>,
    #[serde(borrow, default)]
    s: Loose<'a>,
    #[serde(borrow, default)]
    p: Loose<'a>,
    #[serde(borrow, default)]
    q: Loose<'a>,
    #[serde(borrow, default)]
    b: Loose<'a>,
    #[serde(borrow, default, rename = "B")]
    bq: Loose<'a>,
    #[serde(borrow, default)]
    a: Loose<'a>,
    #[serde(borrow, default, rename = "A")]
    aq: Loose<'a>,
    #[serde(borrow, default)]
    t: Loose<'a>,
    #[serde(borrow, default)]
    m: Loose<'a>,
    #[serde(default, rename = "lastUpdateId")]
    last_update_id: Option<IgnoredAny>,
}

/// The message body: the envelope's `data`, or a bare message itself.
type Fields<'a> = Message<'a, IgnoredAny>;

/// A line's message, possibly wrapped in the envelope.
type Line<'a> = Message<'a, Fields<'a>>;

impl<'a> Line<'a> {
    /// The stream name (if any) and the message body.
    fn body(self) -> (Option<Cow<'a, str>>, Fields<'a>) {
        let stream = self.stream.0.clone();
        match self.data {
            Some(d) => (stream, d),
            None => (
                stream,
                Message {
                    stream: Loose::default(),
                    data: None,
                    e: self.e,
                    s: self.s,
                    p: self.p,
                    q: self.q,
                    b: self.b,
                    bq: self.bq,
                    a: self.a,
                    aq: self.aq,
                    t: self.t,
                    m: self.m,
                    last_update_id: self.last_update_id,
                },
            ),
        }
    }
}

fn decimal(kind: &'static str, field: &'static str, v: &Loose<'_>) -> Result<i64, LineError> {
    let s = v.0.as_deref().ok_or(LineError::Missing { kind, field })?;
    parse_fixed(s).ok_or_else(|| LineError::BadDecimal { field, value: s.chars().take(40).collect() })
}

fn quantity(kind: &'static str, field: &'static str, v: &Loose<'_>) -> Result<i64, LineError> {
    let q = decimal(kind, field, v)?;
    if q < 0 { Err(LineError::Negative { field }) } else { Ok(q) }
}

/// Parses and classifies one capture line (without its trailing newline).
///
/// # Errors
/// When the line is malformed (see [`LineError`]).
pub fn parse_line(line: &str) -> Result<Event<'_>, LineError> {
    let (ts, json) = line.split_once(' ').ok_or(LineError::NoTimestamp)?;
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::NoTimestamp);
    }
    let capture_ns: u64 = ts.parse().map_err(|_| LineError::NoTimestamp)?;
    let msg: Line<'_> = serde_json::from_str(json).map_err(|e| LineError::Json(e.to_string()))?;
    let (stream, f) = msg.body();
    let event = f.e.0.as_deref().unwrap_or("");
    let stream = stream.as_deref().unwrap_or("");
    let is_str = |l: &Loose<'_>| l.0.is_some();
    if event == "trade" || event == "aggTrade" {
        const K: &str = "trade";
        let symbol = f.s.0.ok_or(LineError::Missing { kind: K, field: "s" })?;
        let price = decimal(K, "p", &f.p)?;
        let qty = quantity(K, "q", &f.q)?;
        let trade_id = if event == "aggTrade" { f.a.1 } else { f.t.1 };
        let side = match f.m.2 {
            Some(true) => Side::Sell,
            Some(false) => Side::Buy,
            None => Side::Unknown,
        };
        return Ok(Event::Trade { capture_ns, symbol, price, qty, trade_id, side });
    }
    let shaped_like_ticker =
        event.is_empty() && is_str(&f.b) && is_str(&f.a) && is_str(&f.bq) && is_str(&f.aq);
    if event == "bookTicker" || shaped_like_ticker {
        const K: &str = "bookTicker";
        let symbol = f.s.0.ok_or(LineError::Missing { kind: K, field: "s" })?;
        return Ok(Event::Quote {
            capture_ns,
            bid: decimal(K, "b", &f.b)?,
            bid_size: quantity(K, "B", &f.bq)?,
            ask: decimal(K, "a", &f.a)?,
            ask_size: quantity(K, "A", &f.aq)?,
            symbol,
        });
    }
    if event == "depthUpdate" || stream.contains("@depth") {
        return Ok(Event::Skip(SkipKind::Depth));
    }
    if f.last_update_id.is_some() {
        return Ok(Event::Skip(SkipKind::Snapshot));
    }
    Ok(Event::Skip(SkipKind::Other))
}

/// The capture time of a classified event (`None` for skipped lines).
pub fn capture_ns(e: &Event<'_>) -> Option<u64> {
    match e {
        Event::Trade { capture_ns, .. } | Event::Quote { capture_ns, .. } => Some(*capture_ns),
        Event::Skip(_) => None,
    }
}

/// Per-symbol L1 state built from trades and quotes.
#[derive(Debug, Clone, Default)]
pub struct L1Book {
    state: Vec<Tick>,
}

impl L1Book {
    /// A book for `symbols` dense ids.
    pub fn new(symbols: usize) -> Self {
        L1Book { state: (0..symbols).map(|i| Tick { symbol: i as u32, ..Tick::default() }).collect() }
    }

    /// Applies a trade or quote of symbol `id` and returns the full tick after it, with the
    /// symbol's next `seq` and `ts_event = capture_ns`. Skips return `None`, as do ids
    /// outside the book.
    pub fn apply(&mut self, id: u32, e: &Event<'_>) -> Option<Tick> {
        let t = self.state.get_mut(id as usize)?;
        match *e {
            Event::Trade { capture_ns, price, qty, trade_id, side, .. } => {
                t.kind = TickKind::Trade;
                t.trade_id = trade_id.unwrap_or(0);
                t.side = side;
                t.last = price;
                t.last_size = qty;
                t.volume = t.volume.saturating_add(qty);
                t.ts_event = capture_ns;
            }
            Event::Quote { capture_ns, bid, bid_size, ask, ask_size, .. } => {
                t.kind = TickKind::Quote;
                // A quote carries the last trade's price and size, not its identity.
                t.trade_id = 0;
                t.side = Side::Unknown;
                (t.bid, t.bid_size, t.ask, t.ask_size) = (bid, bid_size, ask, ask_size);
                t.ts_event = capture_ns;
            }
            Event::Skip(_) => return None,
        }
        t.seq += 1;
        Some(*t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TRADE: &str = r#"1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
    const TICKER: &str = r#"1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;
    const DEPTH: &str = r#"1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],"a":[["61837.64000000","1.54698000"]]}}"#;

    #[test]
    fn spot_messages_from_the_capture() {
        assert_eq!(
            parse_line(TRADE).unwrap(),
            Event::Trade {
                capture_ns: 1_723_161_254_087_896_568,
                symbol: "BTCUSDT".into(),
                price: 6_183_763_000_000,
                qty: 2_000_000,
                trade_id: Some(3_735_683_259),
                side: Side::Sell,
            }
        );
        assert_eq!(
            parse_line(TICKER).unwrap(),
            Event::Quote {
                capture_ns: 1_723_161_254_087_891_268,
                symbol: "BTCUSDT".into(),
                bid: 6_183_763_000_000,
                bid_size: 378_826_000,
                ask: 6_183_764_000_000,
                ask_size: 154_698_000
            }
        );
        assert_eq!(parse_line(DEPTH).unwrap(), Event::Skip(SkipKind::Depth));
        let snap = r#"1 {"lastUpdateId":50093239188,"bids":[["61837.63000000","3.7"]],"asks":[]}"#;
        assert_eq!(parse_line(snap).unwrap(), Event::Skip(SkipKind::Snapshot));
    }

    #[test]
    fn other_market_variants_are_understood_without_special_cases() {
        // USD-M futures bookTicker: event type, event and transaction times.
        let fut = r#"5 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}"#;
        assert!(matches!(parse_line(fut).unwrap(), Event::Quote { bid: 2_535_190_000, .. }));
        // aggTrade, bare (raw stream): `a` is a number there.
        let agg = r#"6 {"e":"aggTrade","E":123456789,"s":"ETHUSDT","a":5933014,"p":"0.001","q":"100","f":100,"l":105,"T":123456785,"m":true}"#;
        assert!(matches!(
            parse_line(agg).unwrap(),
            Event::Trade { price: 100_000, trade_id: Some(5_933_014), side: Side::Sell, .. }
        ));
        let buy = r#"9 {"e":"trade","s":"X","t":7,"p":"1","q":"1","m":false}"#;
        assert!(matches!(parse_line(buy).unwrap(), Event::Trade { trade_id: Some(7), side: Side::Buy, .. }));
        let bare = r#"9 {"e":"trade","s":"X","p":"1","q":"1"}"#;
        assert!(matches!(
            parse_line(bare).unwrap(),
            Event::Trade { trade_id: None, side: Side::Unknown, .. }
        ));
        // Extra unknown fields, nested objects and a kline: skipped as other.
        let kline =
            r#"7 {"stream":"btcusdt@kline_1m","data":{"e":"kline","s":"BTCUSDT","k":{"t":1,"o":"1.0"}}}"#;
        assert_eq!(parse_line(kline).unwrap(), Event::Skip(SkipKind::Other));
        let ack = r#"8 {"result":null,"id":1}"#;
        assert_eq!(parse_line(ack).unwrap(), Event::Skip(SkipKind::Other));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "timestamp"),
            ("{\"e\":\"trade\"}", "timestamp"),
            ("12x {}", "timestamp"),
            ("1 {\"stream\":", "JSON"),
            ("1 [1,2]", "JSON"),
            ("1 {\"e\":\"trade\",\"s\":\"X\",\"q\":\"1\"}", "without `p`"),
            ("1 {\"e\":\"trade\",\"s\":\"X\",\"p\":\"1e5\",\"q\":\"1\"}", "decimal"),
            ("1 {\"e\":\"trade\",\"s\":\"X\",\"p\":\"1.123456789\",\"q\":\"1\"}", "decimal"),
            ("1 {\"e\":\"trade\",\"s\":\"X\",\"p\":\"1\",\"q\":\"-1\"}", "negative"),
            ("1 {\"e\":\"bookTicker\",\"s\":\"X\",\"b\":\"1\",\"B\":\"1\",\"a\":\"2\"}", "without `A`"),
            ("1 {\"e\":\"trade\",\"p\":\"1\",\"q\":\"1\"}", "without `s`"),
            ("1 {\"e\":\"trade\",\"e\":\"trade\",\"s\":\"X\",\"p\":\"1\",\"q\":\"1\"}", "JSON"),
        ];
        for (line, want) in cases {
            let err = parse_line(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn the_book_carries_full_state_and_cumulative_volume() {
        let mut book = L1Book::new(1);
        let q = book.apply(0, &parse_line(TICKER).unwrap()).unwrap();
        assert_eq!((q.seq, q.kind, q.bid, q.last, q.volume), (1, TickKind::Quote, 6_183_763_000_000, 0, 0));
        let t = book.apply(0, &parse_line(TRADE).unwrap()).unwrap();
        assert_eq!(
            (t.seq, t.kind, t.bid, t.last, t.volume),
            (2, TickKind::Trade, q.bid, 6_183_763_000_000, 2_000_000)
        );
        let t2 = book.apply(0, &parse_line(TRADE).unwrap()).unwrap();
        assert_eq!((t2.seq, t2.volume), (3, 4_000_000));
        assert!(book.apply(1, &parse_line(TRADE).unwrap()).is_none());
    }
}
