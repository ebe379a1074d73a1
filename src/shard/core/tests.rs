//! [`ShardCore`] tested without sockets, driven the way the shard driver drives it.
//!
//! The last-value cache plays the feed thread (`lvc.store`), `on_tick` plays the ring,
//! `handle_text` plays a client's messages, and `fill` / `written` play the writer loop and
//! the socket. A test reads a client's output buffer as a WebSocket client would read the
//! socket: [`split_frame`] walks the unmasked server frames, text payloads are parsed with
//! simd-json and binary payloads with [`binary::decode_frame`]. Every update received is
//! checked against the tick it claims to be (all ticks come from [`tick`]), so a test that
//! compares `(symbol, seq, snapshot)` triples has also checked the values.
//!
//! Layout: helpers; subscribe / unsubscribe; control replies and limits; conflation and
//! back-pressure; encoding; pacing; latency; overrun healing; client removal; regressions;
//! the interleaving property test.

use std::collections::VecDeque;

use proptest::prelude::*;
use simd_json::OwnedValue;
use simd_json::prelude::*;

use super::*;
use crate::books::BookStore;
use crate::feeds::{SCALE, TickKind};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
/// A wall-clock-like start, so latencies against tick stamps look like real ones.
const T0: u64 = 1_732_240_000 * SEC;

const CSV: &str = "AAPL,189.12,0.01\nMSFT,410,0.01\nGOOG,170.5,0.01\nTSLA,250,0.01\nAMZN,180,0.01\n";
const AAPL: u32 = 0;
const MSFT: u32 = 1;
const GOOG: u32 = 2;
const TSLA: u32 = 3;

const SNAP: bool = true;
const LIVE: bool = false;

const FORMATS: [Format; 3] = [Format::Json, Format::JsonBatch, Format::Binary];

/// Generous limits, so only the tests about limits meet them.
const LIMITS: Limits = Limits {
    max_symbols: 100,
    msgs_per_sec: 1000,
    default_interval_ns: 0,
    max_trade_backlog: 1000,
    default_bandwidth: 0,
    bandwidth_ceiling: 0,
};

/// The tick with sequence number `seq` of `symbol`: every field is a function of both, so a
/// received update can be checked against the tick its `(symbol, seq)` names.
fn tick(symbol: u32, seq: u64) -> Tick {
    let s = i64::try_from(seq).unwrap();
    let bid = (100 + i64::from(symbol)) * SCALE + s * (SCALE / 100);
    Tick {
        symbol,
        kind: TickKind::Quote,
        seq,
        bid,
        bid_size: (100 + s) * SCALE,
        ask: bid + SCALE / 100,
        ask_size: 200 * SCALE,
        last: bid,
        last_size: s * SCALE,
        volume: s * 100 * SCALE,
        ts_event: T0 + seq * 1_000,
        ts_gateway: T0 + seq * 1_000 + 500,
        ..Tick::default()
    }
}

/// One message a client received.
#[derive(Clone, Debug, PartialEq)]
enum Msg {
    /// A text frame (control reply or JSON update), parsed.
    Text(OwnedValue),
    /// A binary frame, decoded into its records.
    Binary(Vec<binary::Record>),
    /// A binary frame holding trade or gap records.
    Mixed(Vec<binary::Message>),
}

/// An update as `(symbol, seq, snapshot)`; its values were checked when it was extracted.
type Update = (u32, u64, bool);

/// One side of a book: `(price, size)`, best first.
type Ladder = Vec<(i64, i64)>;

/// A book as `(symbol, seq, bids, asks, stale)`.
type BookMsg = (u32, u64, Vec<(i64, i64)>, Vec<(i64, i64)>, bool);

/// The first complete server frame of `b` as `(opcode, payload, frame length)`, or `None` if
/// `b` holds only part of one. Checks what a client may rely on: FIN set, no RSV bits, no
/// mask, the shortest length form.
fn split_frame(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    assert_eq!(b0 & 0xf0, 0x80, "server frames are final, without RSV bits: {b0:#04x}");
    assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
    let (len, header) = match b1 {
        126 => {
            let l = b.get(2..4)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), 4)
        }
        127 => {
            let l = b.get(2..10)?;
            (usize::try_from(u64::from_be_bytes(l.try_into().unwrap())).unwrap(), 10)
        }
        n => (usize::from(n), 2),
    };
    assert_eq!(header, frame::header_len(len), "shortest length form");
    let payload = b.get(header..header + len)?;
    Some((b0 & 0x0f, payload, header + len))
}

fn decode_payload(opcode: u8, payload: &[u8]) -> Msg {
    match opcode {
        1 => Msg::Text(simd_json::to_owned_value(&mut payload.to_vec()).expect("text frames hold JSON")),
        2 => {
            let msgs: Vec<binary::Message> = binary::decode_frame_messages(payload)
                .collect::<Result<_, _>>()
                .expect("whole 88-byte records");
            if msgs.iter().all(|m| matches!(m, binary::Message::Update(_))) {
                Msg::Binary(
                    msgs.into_iter()
                        .filter_map(|m| if let binary::Message::Update(r) = m { Some(r) } else { None })
                        .collect(),
                )
            } else {
                Msg::Mixed(msgs)
            }
        }
        op => panic!("unexpected opcode {op}"),
    }
}

/// Every frame of `b`, which must hold complete frames only (as a client's `out()` does).
fn parse_frames(mut b: &[u8]) -> Vec<Msg> {
    let mut msgs = Vec::new();
    while !b.is_empty() {
        let (op, payload, n) = split_frame(b).expect("the buffer holds complete frames only");
        msgs.push(decode_payload(op, payload));
        b = &b[n..];
    }
    msgs
}

/// Byte offsets in `b` at which each update ends: each JSON update frame, each binary record.
fn update_ends(mut b: &[u8]) -> Vec<usize> {
    let (mut ends, mut at) = (Vec::new(), 0);
    while let Some((op, payload, n)) = split_frame(b) {
        match op {
            // A batched JSON frame: every update in it ends with the frame.
            1 if payload.first() == Some(&b'[') => {
                let v = simd_json::to_owned_value(&mut payload.to_vec()).expect("a batch is JSON");
                let k = v.as_array().map_or(0, Vec::len);
                ends.extend(std::iter::repeat_n(at + n, k));
            }
            1 => ends.push(at + n),
            _ => {
                let start = at + n - payload.len();
                ends.extend((1..=payload.len() / binary::RECORD_LEN).map(|i| start + i * binary::RECORD_LEN));
            }
        }
        at += n;
        b = &b[n..];
    }
    ends
}

fn json(s: &str) -> OwnedValue {
    simd_json::to_owned_value(&mut s.as_bytes().to_vec()).unwrap()
}

fn type_of(v: &OwnedValue) -> Option<&str> {
    v.get("type").and_then(|t| t.as_str())
}

/// A text reply with its human-readable `message` removed (after checking an error has one),
/// so replies compare with a table's expected JSON.
fn without_message(m: Msg) -> OwnedValue {
    let Msg::Text(mut v) = m else { panic!("expected a text reply, got {m:?}") };
    if type_of(&v) == Some("error") {
        let obj = v.as_object_mut().unwrap();
        let message = obj.remove("message").expect("errors carry a message");
        assert!(message.as_str().is_some_and(|s| !s.is_empty()), "message must be a non-empty string");
    }
    v
}

/// A fixed-point field of a JSON update (prices print exactly; the test values have at most
/// two decimals, well within an f64).
fn fixed(v: &OwnedValue, field: &str) -> i64 {
    (v[field].cast_f64().unwrap() * SCALE as f64).round() as i64
}

/// A core over a five-symbol universe and the last-value cache it reads.
struct Rig {
    core: ShardCore,
    lvc: Arc<Lvc>,
    universe: Arc<Universe>,
    /// The order books, 10 levels a side.
    books: Arc<BookStore>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_limits(LIMITS)
    }

    fn with_limits(limits: Limits) -> Rig {
        let universe = Arc::new(Universe::parse_csv(CSV).unwrap());
        let lvc = Arc::new(Lvc::new(universe.len()));
        let books = Arc::new(BookStore::new(universe.len(), 10));
        let mut core = ShardCore::new(universe.clone(), lvc.clone(), limits);
        core.set_books(books.clone());
        Rig { core, lvc, universe, books }
    }

    /// The feed publishes a book of `symbol` (stale if `levels` is `None`) and the ring
    /// delivers its notice at once, if it changed anything. Returns the book's seq.
    fn book(&mut self, symbol: u32, levels: Option<(&Ladder, &Ladder)>) -> u64 {
        let empty = Ladder::new();
        let (health, bids, asks) = match levels {
            Some((b, a)) => (tickgate_feeds::BookHealth::Live, b, a),
            None => (tickgate_feeds::BookHealth::Stale, &empty, &empty),
        };
        if let Some(c) = self.books.publish(symbol, health, bids, asks, T0, T0 + 1) {
            self.core.on_tick(&Tick::book_notice(symbol, c.seq, c.first_changed, T0, T0 + 1));
        }
        self.books.seq(symbol)
    }

    /// A flush's books.
    fn flush_books(&mut self, key: usize, now: u64) -> Vec<BookMsg> {
        let msgs = self.flush(key, now);
        self.books_in(&msgs)
    }

    /// The books among `msgs`, in any format: (symbol, seq, bids, asks, stale).
    fn books_in(&self, msgs: &[Msg]) -> Vec<BookMsg> {
        let from_json = |v: &OwnedValue| -> Option<BookMsg> {
            (type_of(v) == Some("book")).then(|| {
                let side = |name: &str| -> Vec<(i64, i64)> {
                    v[name]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| {
                            let f = |i: usize| (l[i].cast_f64().unwrap() * SCALE as f64).round() as i64;
                            (f(0), f(1))
                        })
                        .collect()
                };
                let symbol = self.universe.id(v["symbol"].as_str().unwrap()).unwrap();
                (
                    symbol,
                    v["seq"].as_u64().unwrap(),
                    side("bids"),
                    side("asks"),
                    v["stale"].as_bool().unwrap(),
                )
            })
        };
        let mut out = Vec::new();
        for m in msgs {
            match m {
                Msg::Text(v) if v.as_array().is_some() => {
                    out.extend(v.as_array().unwrap().iter().filter_map(from_json));
                }
                Msg::Text(v) => out.extend(from_json(v)),
                Msg::Mixed(ms) => out.extend(ms.iter().filter_map(|m| match m {
                    binary::Message::Book(b) => {
                        Some((b.symbol, b.book.seq, b.book.bids.clone(), b.book.asks.clone(), b.book.stale))
                    }
                    _ => None,
                })),
                Msg::Binary(_) => {}
            }
        }
        out
    }

    /// The feed publishes `t` and the ring delivers it at once. Returns `on_tick`'s result.
    fn feed(&mut self, t: &Tick) -> usize {
        self.lvc.store(t);
        self.core.on_tick(t)
    }

    fn client(&mut self, format: Format) -> usize {
        self.core.add_client(format, T0, None)
    }

    fn send(&mut self, key: usize, msg: &str, now: u64) {
        let mut payload = msg.as_bytes().to_vec();
        self.core.handle_text(key, &mut payload, now);
    }

    fn out(&self, key: usize) -> Vec<u8> {
        self.core.client(key).unwrap().out().to_vec()
    }

    /// The socket takes everything buffered for `key`; returns what it carried.
    fn take(&mut self, key: usize, now: u64) -> Vec<Msg> {
        let bytes = self.out(key);
        self.core.written(key, bytes.len(), now);
        parse_frames(&bytes)
    }

    /// A flush: `fill`, then the socket takes everything.
    fn flush(&mut self, key: usize, now: u64) -> Vec<Msg> {
        self.core.fill(key, now);
        self.take(key, now)
    }

    /// The updates a [`take`](Self::take) carried.
    fn taken(&mut self, key: usize, now: u64) -> Vec<Update> {
        let msgs = self.take(key, now);
        self.updates(&msgs)
    }

    /// The updates a [`flush`](Self::flush) carried.
    fn flushed(&mut self, key: usize, now: u64) -> Vec<Update> {
        let msgs = self.flush(key, now);
        self.updates(&msgs)
    }

    /// Sends `msg` and returns everything the client then had buffered (replies, snapshots).
    fn request(&mut self, key: usize, msg: &str, now: u64) -> Vec<Msg> {
        self.send(key, msg, now);
        self.take(key, now)
    }

    /// Subscribes `key` to `names` and consumes the replies and snapshots.
    fn subscribe(&mut self, key: usize, names: &[&str]) {
        let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(",");
        let msgs = self.request(key, &format!(r#"{{"op":"subscribe","symbols":[{list}]}}"#), T0);
        assert_eq!(
            msgs.first().and_then(|m| if let Msg::Text(v) = m { type_of(v) } else { None }),
            Some("subscribed")
        );
    }

    /// The updates among `msgs`, each checked against [`tick`].
    fn updates(&self, msgs: &[Msg]) -> Vec<Update> {
        let mut ups = Vec::new();
        for m in msgs {
            match m {
                Msg::Text(v) if type_of(v) == Some("update") => ups.push(self.json_update(v)),
                Msg::Text(v) if v.as_array().is_some() => {
                    let batch = v.as_array().map(Vec::as_slice).unwrap_or_default();
                    assert!(!batch.is_empty(), "an empty batch frame");
                    for u in batch {
                        assert_eq!(type_of(u), Some("update"), "a batch holds updates only: {u:?}");
                        ups.push(self.json_update(u));
                    }
                }
                Msg::Text(_) => {}
                Msg::Binary(records) => ups.extend(records.iter().map(record_update)),
                Msg::Mixed(_) => panic!("trade records where only updates were expected"),
            }
        }
        ups
    }

    fn json_update(&self, v: &OwnedValue) -> Update {
        let symbol = self.universe.id(v["symbol"].as_str().unwrap()).expect("a universe symbol");
        let seq = v["seq"].as_u64().unwrap();
        let want = tick(symbol, seq);
        let got = [
            fixed(v, "bid"),
            fixed(v, "bid_size"),
            fixed(v, "ask"),
            fixed(v, "ask_size"),
            fixed(v, "last"),
            fixed(v, "last_size"),
            fixed(v, "volume"),
        ];
        let expected =
            [want.bid, want.bid_size, want.ask, want.ask_size, want.last, want.last_size, want.volume];
        assert_eq!(got, expected, "values of update {symbol}/{seq}");
        assert_eq!(v["ts_event"].as_u64(), Some(want.ts_event));
        assert_eq!(v["ts_gateway"].as_u64(), Some(want.ts_gateway));
        (symbol, seq, v["snapshot"].as_bool().unwrap())
    }

    fn ready(&mut self) -> Vec<usize> {
        let mut ready = Vec::new();
        self.core.take_ready(&mut ready);
        ready
    }
}

fn record_update(r: &binary::Record) -> Update {
    assert_eq!(r.tick, tick(r.tick.symbol, r.tick.seq), "values of record {}/{}", r.tick.symbol, r.tick.seq);
    (r.tick.symbol, r.tick.seq, r.snapshot)
}

// ---------------------------------------------------------------------------------------------
// Subscribe and unsubscribe
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_replies_with_the_id_map_then_snapshots_symbols_that_have_a_value() {
    for format in FORMATS {
        let mut r = Rig::new();
        r.lvc.store(&tick(AAPL, 5));
        r.lvc.store(&tick(MSFT, 3));
        let c = r.client(format);
        let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL","MSFT","GOOG"],"id":7}"#, T0);

        assert_eq!(
            msgs[0],
            Msg::Text(json(r#"{"type":"subscribed","id":7,"symbols":{"AAPL":0,"MSFT":1,"GOOG":2}}"#)),
            "{format:?}: the reply comes first"
        );
        // GOOG has no value yet: subscribed, but no snapshot.
        assert_eq!(r.updates(&msgs[1..]), vec![(AAPL, 5, SNAP), (MSFT, 3, SNAP)], "{format:?}");
        let frames = match format {
            Format::Json => 1 + 2,      // one text frame per snapshot
            Format::Binary => 1 + 1,    // one binary frame holding both records
            Format::JsonBatch => 1 + 1, // one text frame holding both, as a JSON array
            Format::Sse => panic!("SSE is tested on its own"),
        };
        assert_eq!(msgs.len(), frames, "{format:?}");
        assert_eq!(r.core.counters.snapshots, 2);
        let subs = r.core.client(c).unwrap().subs();
        for s in [AAPL, MSFT, GOOG] {
            assert!(subs.contains(s));
            assert_eq!(r.core.index.subscribers(s), 1);
        }
        assert_eq!(r.core.pending(c), 0, "the snapshots are the latest values");
    }
}

#[test]
fn subscribing_twice_to_a_symbol_sends_no_second_snapshot() {
    let mut r = Rig::new();
    r.lvc.store(&tick(AAPL, 5));
    let c = r.client(Format::Json);
    let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL","AAPL"],"id":1}"#, T0);
    assert_eq!(msgs[0], Msg::Text(json(r#"{"type":"subscribed","id":1,"symbols":{"AAPL":0}}"#)));
    assert_eq!(r.updates(&msgs), vec![(AAPL, 5, SNAP)]);
    let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL"],"id":2}"#, T0);
    assert_eq!(msgs, vec![Msg::Text(json(r#"{"type":"subscribed","id":2,"symbols":{"AAPL":0}}"#))]);
    assert_eq!(r.core.index.subscribers(AAPL), 1);
    assert_eq!(r.core.counters.snapshots, 1);
}

#[test]
fn live_ticks_reach_only_the_subscribers_of_their_symbol() {
    for format in FORMATS {
        let mut r = Rig::new();
        let (a, b) = (r.client(format), r.client(format));
        r.subscribe(a, &["AAPL"]);
        r.subscribe(b, &["MSFT"]);

        assert_eq!(r.feed(&tick(AAPL, 1)), 1, "touched one subscriber");
        assert_eq!(r.feed(&tick(GOOG, 1)), 0, "nobody watches GOOG");
        assert_eq!(r.ready(), vec![a]);
        assert_eq!(r.flushed(a, T0), vec![(AAPL, 1, LIVE)], "{format:?}");
        assert!(r.flush(b, T0).is_empty(), "{format:?}: b does not watch AAPL");

        r.feed(&tick(MSFT, 1));
        assert_eq!(r.ready(), vec![b]);
        assert_eq!(r.flushed(b, T0), vec![(MSFT, 1, LIVE)]);
        assert!(r.flush(a, T0).is_empty());
        assert_eq!(r.core.counters.ticks, 3);
    }
}

#[test]
fn unsubscribe_replies_and_drops_a_pending_update() {
    for format in FORMATS {
        let mut r = Rig::new();
        let c = r.client(format);
        r.subscribe(c, &["AAPL", "MSFT"]);
        r.feed(&tick(AAPL, 1));
        r.feed(&tick(MSFT, 1));
        assert_eq!(r.core.pending(c), 2);

        let msgs = r.request(c, r#"{"op":"unsubscribe","symbols":["AAPL"],"id":9}"#, T0);
        assert_eq!(msgs, vec![Msg::Text(json(r#"{"type":"unsubscribed","id":9,"symbols":["AAPL"]}"#))]);
        assert_eq!(r.core.index.subscribers(AAPL), 0);
        assert_eq!(r.flushed(c, T0), vec![(MSFT, 1, LIVE)], "{format:?}: the AAPL update was dropped");

        assert_eq!(r.feed(&tick(AAPL, 2)), 0);
        assert!(r.flush(c, T0).is_empty(), "{format:?}: nothing after unsubscribing");
        assert_eq!(r.core.gauges().subscriptions, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Control replies and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn control_replies() {
    let now = T0 + 42;
    let names: Vec<String> =
        Universe::parse_csv(CSV).unwrap().symbols().iter().map(|s| s.name.clone()).collect();
    let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(",");
    // (request, expected replies without their `message`, subscriptions afterwards)
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        (
            r#"{"op":"subscribe","symbols":["AAPL","NOPE","ZZZ","NOPE","MSFT"],"id":3}"#,
            vec![
                r#"{"type":"subscribed","id":3,"symbols":{"AAPL":0,"MSFT":1}}"#.into(),
                r#"{"type":"error","id":3,"code":"unknown_symbol","symbols":["NOPE","ZZZ"]}"#.into(),
            ],
            2,
        ),
        (
            r#"{"op":"subscribe","symbols":["NOPE"],"id":3}"#,
            vec![r#"{"type":"error","id":3,"code":"unknown_symbol","symbols":["NOPE"]}"#.into()],
            0,
        ),
        (r#"{"op":"frobnicate","id":4}"#, vec![r#"{"type":"error","id":4,"code":"unknown_op"}"#.into()], 0),
        (r#"{"op":"subscribe","id":5}"#, vec![r#"{"type":"error","id":5,"code":"bad_request"}"#.into()], 0),
        (
            r#"{"op":"subscribe","symbols":[],"id":6}"#,
            vec![r#"{"type":"error","id":6,"code":"bad_request"}"#.into()],
            0,
        ),
        (
            r#"{"op":"subscribe","symbols":["AAPL"],"max_rate":-1,"id":7}"#,
            vec![r#"{"type":"error","id":7,"code":"bad_request"}"#.into()],
            0,
        ),
        (r#"{"id":8}"#, vec![r#"{"type":"error","id":8,"code":"bad_request"}"#.into()], 0),
        ("not json", vec![r#"{"type":"error","code":"bad_request"}"#.into()], 0),
        (r#"{"op":"list","id":9}"#, vec![format!(r#"{{"type":"symbols","id":9,"symbols":[{list}]}}"#)], 0),
        (r#"{"op":"ping","id":10}"#, vec![format!(r#"{{"type":"pong","id":10,"ts":{now}}}"#)], 0),
        (r#"{"op":"ping"}"#, vec![format!(r#"{{"type":"pong","ts":{now}}}"#)], 0),
        (
            r#"{"op":"unsubscribe","symbols":["NOPE","AAPL"],"id":11}"#,
            vec![
                r#"{"type":"unsubscribed","id":11,"symbols":["AAPL"]}"#.into(),
                r#"{"type":"error","id":11,"code":"unknown_symbol","symbols":["NOPE"]}"#.into(),
            ],
            0,
        ),
    ];
    for (request, want, subscriptions) in cases {
        let mut r = Rig::new();
        let c = r.client(Format::Json);
        let got: Vec<OwnedValue> = r.request(c, request, now).into_iter().map(without_message).collect();
        let want: Vec<OwnedValue> = want.iter().map(|w| json(w)).collect();
        assert_eq!(got, want, "request {request}");
        assert_eq!(r.core.gauges().subscriptions, subscriptions, "request {request}");
        let errors: u64 = r.core.counters.errors.iter().sum();
        let error_replies = want.iter().filter(|v| type_of(v) == Some("error")).count() as u64;
        assert_eq!(errors, error_replies, "request {request}");
        assert_eq!(r.core.counters.client_msgs, 1);
    }
}

#[test]
fn too_many_symbols_subscribes_nothing() {
    let mut r = Rig::with_limits(Limits { max_symbols: 2, ..LIMITS });
    r.lvc.store(&tick(AAPL, 1));
    let c = r.client(Format::Json);
    let too_many = |id: u32| json(&format!(r#"{{"type":"error","id":{id},"code":"too_many_symbols"}}"#));
    // (request, expected replies without message and updates, subscriptions afterwards)
    let steps: Vec<(&str, Vec<OwnedValue>, usize)> = vec![
        (r#"{"op":"subscribe","symbols":["AAPL","MSFT","GOOG"],"id":1}"#, vec![too_many(1)], 0),
        (
            r#"{"op":"subscribe","symbols":["AAPL","AAPL","MSFT"],"id":2}"#,
            vec![json(r#"{"type":"subscribed","id":2,"symbols":{"AAPL":0,"MSFT":1}}"#)],
            2,
        ),
        (
            r#"{"op":"subscribe","symbols":["MSFT"],"id":3}"#,
            vec![json(r#"{"type":"subscribed","id":3,"symbols":{"MSFT":1}}"#)],
            2,
        ),
        (r#"{"op":"subscribe","symbols":["GOOG"],"id":4}"#, vec![too_many(4)], 2),
        (
            r#"{"op":"unsubscribe","symbols":["MSFT"],"id":5}"#,
            vec![json(r#"{"type":"unsubscribed","id":5,"symbols":["MSFT"]}"#)],
            1,
        ),
        (
            r#"{"op":"subscribe","symbols":["GOOG"],"id":6}"#,
            vec![json(r#"{"type":"subscribed","id":6,"symbols":{"GOOG":2}}"#)],
            2,
        ),
    ];
    for (i, (request, want, subscriptions)) in steps.into_iter().enumerate() {
        let msgs = r.request(c, request, T0);
        let got: Vec<OwnedValue> = msgs
            .into_iter()
            .filter(|m| !matches!(m, Msg::Text(v) if type_of(v) == Some("update")))
            .map(without_message)
            .collect();
        assert_eq!(got, want, "step {i}: {request}");
        assert_eq!(r.core.client(c).unwrap().subs().len(), subscriptions, "step {i}");
        assert_eq!(r.core.index.len(), subscriptions, "step {i}: the index follows");
    }
    assert_eq!(r.core.counters.errors[code_index(ErrorCode::TooManySymbols)], 2);
    assert_eq!(r.core.counters.snapshots, 1, "AAPL once, when it was finally subscribed");
}

#[test]
fn rate_limited_messages_are_not_executed_and_tokens_refill() {
    let mut r = Rig::with_limits(Limits { msgs_per_sec: 3, ..LIMITS });
    let c = r.client(Format::Json);
    let reply = |r: &mut Rig, msg: &str, now: u64| {
        let msgs = r.request(c, msg, now);
        assert_eq!(msgs.len(), 1, "{msg}");
        without_message(msgs.into_iter().next().unwrap())
    };
    let limited = |id: u32| json(&format!(r#"{{"type":"error","id":{id},"code":"rate_limited"}}"#));
    let pong = |id: u32, now: u64| json(&format!(r#"{{"type":"pong","id":{id},"ts":{now}}}"#));

    // A burst of three in the same instant, then the fourth is refused and not executed.
    for id in 1..=3 {
        assert_eq!(reply(&mut r, &format!(r#"{{"op":"ping","id":{id}}}"#), T0), pong(id, T0));
    }
    assert_eq!(reply(&mut r, r#"{"op":"subscribe","symbols":["AAPL"],"id":4}"#, T0), limited(4));
    assert_eq!(r.core.gauges().subscriptions, 0, "a rate-limited subscribe does nothing");

    // One second later the bucket is full again: three more, then refused.
    let t1 = T0 + SEC;
    assert_eq!(
        reply(&mut r, r#"{"op":"subscribe","symbols":["AAPL"],"id":5}"#, t1),
        json(r#"{"type":"subscribed","id":5,"symbols":{"AAPL":0}}"#)
    );
    assert_eq!(reply(&mut r, r#"{"op":"ping","id":6}"#, t1), pong(6, t1));
    assert_eq!(reply(&mut r, r#"{"op":"ping","id":7}"#, t1), pong(7, t1));
    assert_eq!(reply(&mut r, r#"{"op":"unsubscribe","symbols":["AAPL"],"id":8}"#, t1), limited(8));
    assert_eq!(r.core.gauges().subscriptions, 1, "the refused unsubscribe did nothing");

    // A third of a second refills one token (3 per second), not two.
    let t2 = t1 + SEC / 3 + 1;
    assert_eq!(reply(&mut r, r#"{"op":"ping","id":9}"#, t2), pong(9, t2));
    assert_eq!(reply(&mut r, r#"{"op":"ping","id":10}"#, t2), limited(10));
    assert_eq!(r.core.counters.errors[code_index(ErrorCode::RateLimited)], 3);
    assert_eq!(r.core.counters.client_msgs, 10);
}

// ---------------------------------------------------------------------------------------------
// Conflation and back-pressure
// ---------------------------------------------------------------------------------------------

#[test]
fn conflation_sends_one_update_with_the_newest_seq() {
    for format in FORMATS {
        let mut r = Rig::new();
        let c = r.client(format);
        r.subscribe(c, &["AAPL", "MSFT"]);
        for seq in 1..=100 {
            r.feed(&tick(AAPL, seq));
            let g = r.core.gauges();
            assert_eq!(g.pending_updates, 1, "one slot per symbol, however many ticks");
            assert!(g.pending_updates <= g.subscriptions);
        }
        assert_eq!(r.ready(), vec![c], "queued once");
        let msgs = r.flush(c, T0 + SEC);
        assert_eq!(msgs.len(), 1, "{format:?}: exactly one frame");
        assert_eq!(r.updates(&msgs), vec![(AAPL, 100, LIVE)], "{format:?}");
        assert_eq!(r.core.counters.conflated, 99);
        let want_encodes = if format == Format::Binary { (0, 1) } else { (1, 0) };
        assert_eq!(r.core.encodes(), want_encodes, "only the newest tick was encoded");
        assert_eq!(r.core.gauges().pending_updates, 0);
    }
}

#[test]
fn blocked_client_grows_nothing_and_gets_only_the_latest_values_after_draining() {
    for format in FORMATS {
        let mut r = Rig::new();
        let c = r.client(format);
        r.subscribe(c, &["AAPL", "MSFT"]);
        let now = T0 + SEC;
        r.feed(&tick(AAPL, 1));
        r.feed(&tick(MSFT, 1));
        r.core.fill(c, now);
        let first = r.out(c);
        assert!(first.len() > 10);

        // The socket takes 10 bytes only.
        r.core.written(c, 10, now);
        assert!(r.core.client(c).unwrap().is_blocked(), "{format:?}");
        assert_eq!(r.core.gauges().blocked_clients, 1);
        assert_eq!(r.out(c), first[10..]);

        for seq in 2..=20 {
            r.feed(&tick(AAPL, seq));
        }
        for seq in 2..=5 {
            r.feed(&tick(MSFT, seq));
        }
        for k in r.ready() {
            assert_eq!(r.core.fill(k, now), None);
        }
        assert_eq!(r.out(c), first[10..], "{format:?}: fill adds nothing while blocked");
        assert_eq!(r.core.pending(c), 2, "the updates wait, conflated");

        // The socket drains: unblocked and queued again.
        let rest = r.out(c).len();
        r.core.written(c, rest, now);
        assert!(!r.core.client(c).unwrap().is_blocked());
        assert_eq!(r.ready(), vec![c], "{format:?}: draining requeues a client with pending updates");
        assert_eq!(r.updates(&parse_frames(&first)), vec![(AAPL, 1, LIVE), (MSFT, 1, LIVE)]);
        assert_eq!(r.flushed(c, now), vec![(AAPL, 20, LIVE), (MSFT, 5, LIVE)], "{format:?}");
        assert_eq!(r.core.counters.conflated, 18 + 3, "seqs skipped over by what was sent");
        assert_eq!(r.core.gauges(), CoreGauges { clients: 1, subscriptions: 2, ..CoreGauges::default() });
    }
}

#[test]
fn seq_never_goes_backwards_after_a_snapshot() {
    for format in FORMATS {
        let mut r = Rig::new();
        // The cache is ahead of the ring (the feed thread writes the cache first).
        r.lvc.store(&tick(AAPL, 10));
        let c = r.client(format);
        let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL"]}"#, T0);
        assert_eq!(r.updates(&msgs), vec![(AAPL, 10, SNAP)]);

        // The ring catches up with ticks the snapshot already covered.
        r.core.on_tick(&tick(AAPL, 9));
        r.core.on_tick(&tick(AAPL, 10));
        assert!(r.ready().is_empty(), "{format:?}");
        assert_eq!(r.core.fill(c, T0), None);
        assert!(r.out(c).is_empty(), "{format:?}: nothing older or equal is sent");

        r.feed(&tick(AAPL, 11));
        assert_eq!(r.flushed(c, T0), vec![(AAPL, 11, LIVE)], "{format:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

#[test]
fn batched_json_splits_at_the_cap_and_carries_every_update_once() {
    // 600 symbols of ~250-byte updates: about 150 KB in one flush, so three frames.
    let csv: String = (0..600).map(|i| format!("S{i},100,0.01\n")).collect();
    let universe = Arc::new(Universe::parse_csv(&csv).unwrap());
    let lvc = Arc::new(Lvc::new(universe.len()));
    let limits = Limits { max_symbols: 1000, ..LIMITS };
    let books = Arc::new(BookStore::new(universe.len(), 10));
    let mut r = Rig { core: ShardCore::new(universe.clone(), lvc.clone(), limits), lvc, universe, books };
    let c = r.client(Format::JsonBatch);
    let names: Vec<String> = (0..600).map(|i| format!("S{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    r.subscribe(c, &names);
    for s in 0..600 {
        r.feed(&tick(s, 1));
    }
    r.core.fill(c, T0 + SEC);
    let out = r.out(c);
    let (mut b, mut frames) = (&out[..], 0);
    while let Some((op, payload, n)) = split_frame(b) {
        assert_eq!(op, 1, "text frames");
        assert!(payload.len() <= crate::protocol::json::MAX_BATCH_BYTES, "{} bytes", payload.len());
        frames += 1;
        b = &b[n..];
    }
    assert!(b.is_empty());
    assert_eq!(frames, 3, "split at the cap, and only there");
    let ups = r.updates(&parse_frames(&out));
    assert_eq!(ups, (0..600).map(|s| (s, 1, LIVE)).collect::<Vec<_>>());
    assert_eq!(r.core.encodes(), (600, 0), "batching reuses the JSON encodings");
}

#[test]
fn one_encode_per_format_for_any_number_of_subscribers() {
    let mut r = Rig::new();
    let json_clients: Vec<usize> = (0..50).map(|_| r.client(Format::Json)).collect();
    let binary_clients: Vec<usize> = (0..50).map(|_| r.client(Format::Binary)).collect();
    for &c in json_clients.iter().chain(&binary_clients) {
        r.subscribe(c, &["AAPL"]);
    }
    assert_eq!(r.feed(&tick(AAPL, 1)), 100);
    let ready = r.ready();
    assert_eq!(ready.len(), 100);
    for &k in &ready {
        r.core.fill(k, T0);
    }
    assert_eq!(r.core.encodes(), (1, 1));

    for group in [&json_clients, &binary_clients] {
        let first = r.out(group[0]);
        assert_eq!(r.updates(&parse_frames(&first)), vec![(AAPL, 1, LIVE)]);
        for &c in group.iter() {
            assert_eq!(r.out(c), first, "every client of a format gets identical bytes");
        }
    }
}

#[test]
fn binary_fill_is_one_frame_of_records() {
    let mut r = Rig::new();
    let c = r.client(Format::Binary);
    r.subscribe(c, &["AAPL", "MSFT", "GOOG", "TSLA"]);
    for seq in 1..=3 {
        r.feed(&tick(AAPL, seq));
    }
    r.feed(&tick(MSFT, 1));
    r.feed(&tick(GOOG, 7));
    r.feed(&tick(TSLA, 2));
    r.core.fill(c, T0);

    let out = r.out(c);
    let payload_len = 4 * binary::RECORD_LEN;
    assert_eq!(out[..4], [0x82, 126, 0x01, 0x60], "one final binary frame of 352 bytes");
    assert_eq!(out.len(), 4 + payload_len);
    let msgs = parse_frames(&out);
    let Msg::Binary(records) = &msgs[0] else { panic!("expected a binary frame") };
    let ticks: Vec<Tick> = records.iter().map(|rec| rec.tick).collect();
    // In the order the symbols became pending; the values are the ticks themselves.
    assert_eq!(ticks, vec![tick(AAPL, 3), tick(MSFT, 1), tick(GOOG, 7), tick(TSLA, 2)]);
    assert!(records.iter().all(|rec| !rec.snapshot));
}

// ---------------------------------------------------------------------------------------------
// Pacing (max_rate)
// ---------------------------------------------------------------------------------------------

#[test]
fn max_rate_holds_updates_and_resubscribing_shortens_the_interval() {
    let mut r = Rig::new();
    let c = r.client(Format::Json);
    let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL"],"max_rate":2,"id":1}"#, T0);
    assert_eq!(msgs, vec![Msg::Text(json(r#"{"type":"subscribed","id":1,"symbols":{"AAPL":0}}"#))]);

    let t = T0 + SEC;
    r.feed(&tick(AAPL, 1));
    assert_eq!(r.core.fill(c, t), None, "the first update goes out at once");
    assert_eq!(r.taken(c, t), vec![(AAPL, 1, LIVE)]);

    r.feed(&tick(AAPL, 2));
    assert_eq!(r.core.fill(c, t + 100 * MS), Some(t + 500 * MS), "2/s: the next is due 500 ms later");
    assert!(r.out(c).is_empty());
    assert_eq!(r.core.fill(c, t + 500 * MS - 1), Some(t + 500 * MS));
    r.ready();
    r.core.requeue(c);
    assert_eq!(r.ready(), vec![c], "the driver requeues at the deadline");
    assert_eq!(r.core.fill(c, t + 500 * MS), None);
    assert_eq!(r.taken(c, t + 500 * MS), vec![(AAPL, 2, LIVE)]);

    // Sent at t + 500 ms, so the next is due at t + 1 s; a faster max_rate applies at once.
    r.feed(&tick(AAPL, 3));
    assert_eq!(r.core.fill(c, t + 550 * MS), Some(t + SEC));
    let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL"],"max_rate":10,"id":2}"#, t + 550 * MS);
    assert_eq!(
        msgs,
        vec![Msg::Text(json(r#"{"type":"subscribed","id":2,"symbols":{"AAPL":0}}"#))],
        "acknowledged, and no second snapshot"
    );
    assert_eq!(r.core.fill(c, t + 550 * MS), Some(t + 600 * MS), "10/s: due 100 ms after the last send");
    assert_eq!(r.core.fill(c, t + 600 * MS), None);
    assert_eq!(r.taken(c, t + 600 * MS), vec![(AAPL, 3, LIVE)]);
}

#[test]
fn pacing_interval_comes_from_max_rate_or_the_default() {
    // (default_interval_ns, max_rate field, expected interval; None = unlimited)
    let cases: &[(u64, &str, Option<u64>)] = &[
        (0, "", None),
        (250 * MS, "", Some(250 * MS)),
        (250 * MS, r#","max_rate":0"#, None),
        (250 * MS, r#","max_rate":null"#, None),
        (0, r#","max_rate":4"#, Some(250 * MS)),
        (0, r#","max_rate":1000"#, Some(MS)),
        (0, r#","max_rate":0.5"#, Some(2 * SEC)),
    ];
    for &(default_interval_ns, field, want) in cases {
        let mut r = Rig::with_limits(Limits { default_interval_ns, ..LIMITS });
        let c = r.client(Format::Json);
        r.request(c, &format!(r#"{{"op":"subscribe","symbols":["AAPL"]{field}}}"#), T0);
        let t = T0 + SEC;
        r.feed(&tick(AAPL, 1));
        r.flush(c, t);
        r.feed(&tick(AAPL, 2));
        let due = r.core.fill(c, t + 1);
        assert_eq!(due, want.map(|i| t + i), "default {default_interval_ns} max_rate {field:?}");
        let sent = r.taken(c, t + 1);
        assert_eq!(sent.is_empty(), want.is_some(), "default {default_interval_ns} max_rate {field:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

#[test]
fn latency_is_recorded_once_per_live_update_fully_written() {
    for format in FORMATS {
        let mut r = Rig::new();
        r.lvc.store(&tick(AAPL, 1));
        let c = r.client(format);
        let msgs = r.request(c, r#"{"op":"subscribe","symbols":["AAPL","MSFT"]}"#, T0);
        assert_eq!(r.updates(&msgs), vec![(AAPL, 1, SNAP)]);
        assert_eq!(r.core.latency.len(), 0, "{format:?}: snapshots are not sampled");
        assert_eq!(r.core.counters.delivered, 0);

        r.feed(&tick(AAPL, 2));
        r.feed(&tick(MSFT, 1));
        let now = T0 + 10 * MS;
        r.core.fill(c, now);
        let ends = update_ends(&r.out(c));
        assert_eq!(ends.len(), 2);
        let mut written = 0;
        // (socket takes up to, samples afterwards). A batch's updates complete together.
        let steps = if format == Format::JsonBatch {
            assert_eq!(ends[0], ends[1], "one frame");
            vec![(ends[0] - 1, 0), (ends[0], 2)]
        } else {
            vec![(ends[0] - 1, 0), (ends[0], 1), (ends[1] - 1, 1), (ends[1], 2)]
        };
        for (upto, samples) in steps {
            r.core.written(c, upto - written, now);
            written = upto;
            assert_eq!(r.core.latency.len(), samples, "{format:?}: after {upto} bytes");
        }
        assert_eq!(r.core.counters.delivered, 2);
        // ns from each tick's ts_gateway to the write.
        for (h, want) in [
            (r.core.latency.min(), now - tick(AAPL, 2).ts_gateway),
            (r.core.latency.max(), now - tick(MSFT, 1).ts_gateway),
        ] {
            assert!(r.core.latency.equivalent(h, want), "{format:?}: {h} vs {want}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Overrun healing
// ---------------------------------------------------------------------------------------------

#[test]
fn heal_from_lvc_brings_clients_to_the_newest_values() {
    let mut r = Rig::new();
    r.feed(&tick(AAPL, 1));
    r.feed(&tick(MSFT, 1));
    let clients = [r.client(Format::Json), r.client(Format::Binary)];
    for c in clients {
        r.subscribe(c, &["AAPL", "MSFT", "GOOG"]);
    }
    // The feed goes on but the ring entries are lost to this shard.
    for seq in 2..=5 {
        r.lvc.store(&tick(AAPL, seq));
    }
    for seq in 2..=3 {
        r.lvc.store(&tick(MSFT, seq));
    }
    r.core.heal_from_lvc();
    assert_eq!(r.core.counters.overruns, 1);
    let mut ready = r.ready();
    ready.sort_unstable();
    assert_eq!(ready, clients);
    for c in clients {
        assert_eq!(r.flushed(c, T0), vec![(AAPL, 5, LIVE), (MSFT, 3, LIVE)]);
    }

    // Late ring entries change nothing; a second heal with nothing new queues nothing.
    r.core.on_tick(&tick(AAPL, 4));
    r.core.heal_from_lvc();
    assert_eq!(r.core.counters.overruns, 2);
    assert!(r.ready().is_empty());
    for c in clients {
        assert!(r.flush(c, T0).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Client removal
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_client_removes_its_subscriptions() {
    let mut r = Rig::new();
    let (a, b) = (r.client(Format::Json), r.client(Format::Binary));
    r.subscribe(a, &["AAPL", "MSFT"]);
    r.subscribe(b, &["AAPL"]);
    r.feed(&tick(AAPL, 1));
    r.core.remove_client(a);

    assert!(r.core.client(a).is_none());
    assert_eq!(r.core.index.subscribers(AAPL), 1);
    assert_eq!(r.core.index.subscribers(MSFT), 0);
    assert_eq!(r.core.index.active_symbols().collect::<Vec<_>>(), vec![AAPL]);
    assert_eq!(r.ready(), vec![b], "a left the ready list");
    assert_eq!(
        r.core.gauges(),
        CoreGauges { clients: 1, subscriptions: 1, pending_updates: 1, ..Default::default() }
    );

    assert_eq!(r.feed(&tick(AAPL, 2)), 0, "b already waits in the ready queue: a tick touches nobody");
    assert_eq!(r.feed(&tick(MSFT, 1)), 0, "nobody watches MSFT any more");
    assert_eq!(r.core.fill(a, T0), None);
    assert_eq!(r.flushed(b, T0), vec![(AAPL, 2, LIVE)]);

    // Removing twice, or a key never used, is harmless.
    r.core.remove_client(a);
    r.core.remove_client(999);
    assert_eq!(r.core.client_keys().collect::<Vec<_>>(), vec![b]);
}

// ---------------------------------------------------------------------------------------------
// Regressions (bugs found and fixed; each test failed before its fix)
// ---------------------------------------------------------------------------------------------

/// A late subscriber's snapshot must not strand an earlier subscriber on an older value.
///
/// The feed thread writes the last-value cache before the ring, so a snapshot can be newer
/// than the ring ticks the shard has applied. The bug: the snapshot primed the shard cache
/// without offering it to the symbol's other subscribers, and when the ring then delivered
/// those ticks they were dropped as "not newer than the cache", so the earlier subscriber
/// kept the old value until the symbol ticked again.
#[test]
fn late_subscriber_snapshot_does_not_strand_earlier_subscribers() {
    for format in FORMATS {
        let mut r = Rig::new();
        let a = r.client(format);
        r.subscribe(a, &["AAPL"]);
        r.feed(&tick(AAPL, 1));
        assert_eq!(r.flushed(a, T0), vec![(AAPL, 1, LIVE)]);

        // The feed thread has published seq 2 to the cache; the ring entry is in flight.
        r.lvc.store(&tick(AAPL, 2));
        let b = r.client(format);
        let msgs = r.request(b, r#"{"op":"subscribe","symbols":["AAPL"]}"#, T0);
        assert_eq!(r.updates(&msgs), vec![(AAPL, 2, SNAP)]);

        // The ring delivers seq 2: `a` must get it.
        r.core.on_tick(&tick(AAPL, 2));
        assert_eq!(r.flushed(a, T0), vec![(AAPL, 2, LIVE)], "{format:?}: a is stranded at seq 1");
    }
}

/// The token bucket refill must not overflow after a long idle period.
///
/// The bug: the refill computed `tokens + elapsed.saturating_mul(rate)`; the product
/// saturated but the sum did not, so with `msgs_per_sec` = 1,000,000 (the configured
/// maximum) a client idle for more than ~5.1 h panicked the shard thread in debug builds
/// ("attempt to add with overflow") and wrapped in release builds.
#[test]
fn token_refill_after_a_long_idle_does_not_overflow() {
    let mut r = Rig::with_limits(Limits { msgs_per_sec: 1_000_000, ..LIMITS });
    let c = r.client(Format::Json);
    let later = T0 + 6 * 3_600 * SEC;
    let msgs = r.request(c, r#"{"op":"ping","id":1}"#, later);
    assert_eq!(msgs, vec![Msg::Text(json(&format!(r#"{{"type":"pong","id":1,"ts":{later}}}"#)))]);
}

// ---------------------------------------------------------------------------------------------
// Interleavings (property test)
// ---------------------------------------------------------------------------------------------

/// Symbols the property test uses (ids 0..4).
const MODEL_SYMBOLS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// The feed publishes the next tick of a symbol (cache, then ring).
    Tick(u32),
    /// The ring delivers up to `n` published ticks to the shard (with a lagging ring only;
    /// otherwise every tick is delivered as soon as it is published).
    Deliver(usize),
    /// A driver turn: every ready client is filled, then this client's socket takes all.
    Flush(usize),
    /// A driver turn in which this client's socket takes only so many bytes.
    Partial(usize, usize),
    /// The client unsubscribes from the symbol if it holds it, else subscribes.
    Toggle(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u32..MODEL_SYMBOLS as u32).prop_map(Op::Tick),
        2 => (1usize..6).prop_map(Op::Deliver),
        2 => (0usize..2).prop_map(Op::Flush),
        2 => (0usize..2, 0usize..400).prop_map(|(c, n)| Op::Partial(c, n)),
        1 => (0usize..2, 0u32..MODEL_SYMBOLS as u32).prop_map(|(c, s)| Op::Toggle(c, s)),
    ]
}

/// One model client: what it asked for, and what it has seen on its socket.
struct ModelClient {
    key: usize,
    /// What the server holds for it (every request succeeds in this model).
    requested: [bool; MODEL_SYMBOLS],
    /// Bytes its socket took that do not form a complete frame yet.
    wire: Vec<u8>,
    /// What it holds, by the replies it has read.
    held: [bool; MODEL_SYMBOLS],
    /// Newest seq received per symbol, ever and in the current subscription.
    last: [Option<u64>; MODEL_SYMBOLS],
    last_in_subscription: [Option<u64>; MODEL_SYMBOLS],
}

impl ModelClient {
    /// Reads every complete frame off the wire, checking each update as it comes.
    fn read(&mut self, rig: &Rig) {
        let mut at = 0;
        while let Some((op, payload, n)) = split_frame(&self.wire[at..]) {
            let msg = decode_payload(op, payload);
            at += n;
            match &msg {
                Msg::Text(v) => match type_of(v) {
                    Some("subscribed") => {
                        for (name, _) in v["symbols"].as_object().unwrap().iter() {
                            let s = rig.universe.id(name).unwrap() as usize;
                            assert!(!self.held[s], "subscribed twice to {name}");
                            self.held[s] = true;
                            self.last_in_subscription[s] = None;
                        }
                    }
                    Some("unsubscribed") => {
                        for name in v["symbols"].as_array().unwrap() {
                            self.held[rig.universe.id(name.as_str().unwrap()).unwrap() as usize] = false;
                        }
                    }
                    Some("update") => {}
                    other => panic!("unexpected reply {other:?}: {v:?}"),
                },
                Msg::Binary(_) => {}
                Msg::Mixed(m) => panic!("trade records without a trades subscription: {m:?}"),
            }
            for (symbol, seq, snapshot) in rig.updates(std::slice::from_ref(&msg)) {
                let s = symbol as usize;
                assert!(self.held[s], "client {} got {symbol}/{seq} without holding it", self.key);
                if let Some(prev) = self.last_in_subscription[s] {
                    assert!(seq > prev, "client {}: seq {seq} after {prev} for {symbol}", self.key);
                    assert!(!snapshot, "a snapshot only opens a subscription");
                }
                if let Some(prev) = self.last[s] {
                    assert!(seq >= prev, "client {}: seq {seq} went back from {prev} for {symbol}", self.key);
                }
                self.last[s] = Some(seq);
                self.last_in_subscription[s] = Some(seq);
            }
        }
        self.wire.drain(..at);
    }
}

/// Moves up to `n` buffered bytes of `client` to its socket and reads what completed.
fn socket_takes(rig: &mut Rig, client: &mut ModelClient, n: usize, now: u64) {
    let out = rig.out(client.key);
    let n = n.min(out.len());
    rig.core.written(client.key, n, now);
    client.wire.extend_from_slice(&out[..n]);
    client.read(rig);
}

/// A driver turn's fill step: every ready client is filled.
fn fill_ready(rig: &mut Rig, now: u64) {
    for k in rig.ready() {
        rig.core.fill(k, now);
    }
}

/// Runs `ops` against a core with two clients (JSON and binary) over four symbols and checks
/// per-symbol order as it goes and convergence to the last ticks after a final drain.
/// With `lagging_ring` the ring delivers published ticks only on [`Op::Deliver`], so the
/// last-value cache (and thus snapshots) can be ahead of what the shard has applied.
fn run_interleaving(ops: &[Op], lagging_ring: bool) {
    let mut rig = Rig::new();
    let mut clients: Vec<ModelClient> = [Format::Json, Format::Binary]
        .into_iter()
        .map(|f| ModelClient {
            key: rig.client(f),
            requested: [false; MODEL_SYMBOLS],
            wire: Vec::new(),
            held: [false; MODEL_SYMBOLS],
            last: [None; MODEL_SYMBOLS],
            last_in_subscription: [None; MODEL_SYMBOLS],
        })
        .collect();
    let mut seqs = [0u64; MODEL_SYMBOLS];
    let mut ring: VecDeque<Tick> = VecDeque::new();
    let mut now = T0;
    for op in ops {
        now += MS;
        match *op {
            Op::Tick(s) => {
                seqs[s as usize] += 1;
                let t = tick(s, seqs[s as usize]);
                rig.lvc.store(&t);
                ring.push_back(t);
                if !lagging_ring {
                    rig.core.on_tick(&t);
                    ring.clear();
                }
            }
            Op::Deliver(n) => {
                for t in ring.drain(..n.min(ring.len())) {
                    rig.core.on_tick(&t);
                }
            }
            Op::Flush(c) => {
                fill_ready(&mut rig, now);
                socket_takes(&mut rig, &mut clients[c], usize::MAX, now);
            }
            Op::Partial(c, n) => {
                fill_ready(&mut rig, now);
                socket_takes(&mut rig, &mut clients[c], n, now);
            }
            Op::Toggle(c, s) => {
                let client = &mut clients[c];
                let verb = if client.requested[s as usize] { "unsubscribe" } else { "subscribe" };
                client.requested[s as usize] ^= true;
                let name = rig.universe.name(s).to_string();
                rig.send(client.key, &format!(r#"{{"op":"{verb}","symbols":["{name}"]}}"#), now);
            }
        }
        let g = rig.core.gauges();
        assert!(g.pending_updates <= g.subscriptions, "pending {g:?}");
        for c in &clients {
            let subs = rig.core.client(c.key).unwrap().subs();
            assert!(rig.core.pending(c.key) <= subs.len());
        }
    }

    // Final drain: the ring delivers everything, then driver turns until nothing is left.
    // Only the ready list says who to fill, so a lost wake-up would show as a pending update.
    for t in ring.drain(..) {
        rig.core.on_tick(&t);
    }
    for _ in 0..4 {
        now += MS;
        fill_ready(&mut rig, now);
        for c in &mut clients {
            socket_takes(&mut rig, c, usize::MAX, now);
        }
    }
    assert!(rig.ready().is_empty(), "nothing left to do");
    for c in &clients {
        let state = rig.core.client(c.key).unwrap();
        assert_eq!(rig.core.pending(c.key), 0, "client {}: an update was never sent", c.key);
        assert!(state.out().is_empty() && c.wire.is_empty());
        assert_eq!(c.held, c.requested, "client {}: replies match requests", c.key);
        for (s, &last_tick) in seqs.iter().enumerate() {
            if !c.held[s] {
                continue;
            }
            let want = (last_tick > 0).then_some(last_tick);
            assert_eq!(c.last_in_subscription[s], want, "client {} symbol {s}: not the last tick", c.key);
        }
    }
}

/// The case proptest shrank `interleavings_with_a_lagging_ring_converge` to: client 0
/// resubscribes (snapshot at seq 7, ring still behind), seq 8 is published, client 1
/// subscribes (snapshot at seq 8 primes the shard cache), and when the ring finally delivers
/// seqs 1–8 the shard drops them all, leaving client 0 at seq 7.
#[test]
fn lagging_ring_regression() {
    let mut ops = vec![Op::Toggle(0, 0), Op::Toggle(0, 0)];
    ops.extend(std::iter::repeat_n(Op::Tick(0), 7));
    ops.extend([Op::Toggle(0, 0), Op::Tick(0), Op::Toggle(1, 0)]);
    run_interleaving(&ops, true);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The ring delivers each tick as it is published: per client and symbol, seqs strictly
    /// rise within a subscription (and never fall across one), and after a final drain every
    /// held symbol shows its last tick.
    #[test]
    fn interleavings_keep_order_and_converge(ops in proptest::collection::vec(op(), 1..300)) {
        run_interleaving(&ops, false);
    }

    /// The same with a ring that lags the last-value cache, as it does in production.
    #[test]
    fn interleavings_with_a_lagging_ring_converge(ops in proptest::collection::vec(op(), 1..300)) {
        run_interleaving(&ops, true);
    }
}

// ---- Token auth: entitlements ----------------------------------------------------------

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn grant(patterns: &[&str], exp: u64) -> Grant {
    let symbols = patterns.iter().map(|p| crate::auth::Pattern::parse(p).unwrap()).collect();
    Grant { sub: "alice".into(), exp, symbols }
}

fn texts(msgs: &[Msg]) -> Vec<OwnedValue> {
    msgs.iter().filter_map(|m| if let Msg::Text(v) = m { Some(v.clone()) } else { None }).collect()
}

#[test]
fn entitlements_filter_subscribe_and_list() {
    let mut r = Rig::new();
    let key = r.core.add_client(Format::Json, T0, Some(grant(&["AAPL", "G*"], u64::MAX)));
    r.feed(&tick(AAPL, 1));
    r.feed(&tick(MSFT, 1));
    let msgs = r.request(key, r#"{"op":"subscribe","symbols":["AAPL","MSFT","GOOG","NOPE"],"id":7}"#, T0);
    let t = texts(&msgs);
    assert_eq!(type_of(&t[0]), Some("subscribed"));
    assert_eq!(t[0]["symbols"].as_object().unwrap().len(), 2, "{:?}", t[0]);
    let errors: Vec<(&str, Vec<&str>)> = t
        .iter()
        .filter(|v| type_of(v) == Some("error"))
        .map(|v| {
            let syms = v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            (v["code"].as_str().unwrap(), syms)
        })
        .collect();
    assert_eq!(errors, [("unknown_symbol", vec!["NOPE"]), ("not_entitled", vec!["MSFT"])]);
    assert!(t.iter().all(|v| type_of(v) != Some("error") || v["id"] == 7));
    // Only the entitled symbol that has a value gets a snapshot; MSFT never flows.
    assert_eq!(r.updates(&msgs).iter().map(|u| u.0).collect::<Vec<_>>(), [AAPL]);
    r.feed(&tick(MSFT, 2));
    assert!(r.flushed(key, T0).is_empty());
    let list = texts(&r.request(key, r#"{"op":"list"}"#, T0));
    let names: Vec<&str> =
        list[0]["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(names, ["AAPL", "GOOG"]);
    assert_eq!(r.core.counters.errors[code_index(ErrorCode::NotEntitled)], 1);
}

#[test]
fn a_fresh_token_replaces_the_grant_and_drops_what_it_no_longer_covers() {
    let mut r = Rig::new();
    r.core.set_verifier(Some(Arc::new(Verifier::new(SECRET).unwrap())));
    let key = r.core.add_client(Format::Json, T0, Some(grant(&["*"], 1)));
    r.subscribe(key, &["AAPL", "MSFT"]);
    assert_eq!(r.core.token_expiry(key), Some(1));
    let exp = crate::clock::now_ns() / 1_000_000_000 + 3600;
    let token = crate::auth::mint(SECRET, "alice", &["AAPL".into()], exp).unwrap();
    let t = texts(&r.request(key, &format!(r#"{{"op":"auth","token":"{token}","id":3}}"#), T0));
    assert_eq!(type_of(&t[0]), Some("authenticated"));
    assert_eq!(
        (t[0]["sub"].as_str(), t[0]["exp"].as_u64(), t[0]["id"].as_i64()),
        (Some("alice"), Some(exp), Some(3))
    );
    assert_eq!(t[1]["code"], "not_entitled");
    assert_eq!(t[1]["symbols"].as_array().unwrap().len(), 1);
    assert_eq!(r.core.token_expiry(key), Some(exp));
    r.feed(&tick(MSFT, 1));
    r.feed(&tick(AAPL, 1));
    assert_eq!(r.flushed(key, T0).iter().map(|u| u.0).collect::<Vec<_>>(), [AAPL]);
    // A bad token is refused; the current grant stays.
    let t = texts(&r.request(key, r#"{"op":"auth","token":"nope","id":4}"#, T0));
    assert_eq!((t[0]["code"].as_str(), t[0]["id"].as_i64()), (Some("unauthorized"), Some(4)));
    assert_eq!(r.core.token_expiry(key), Some(exp));
}

#[test]
fn auth_without_token_auth_is_a_bad_request() {
    let mut r = Rig::new();
    let key = r.client(Format::Json);
    let t = texts(&r.request(key, r#"{"op":"auth","token":"x"}"#, T0));
    assert_eq!(t[0]["code"], "bad_request");
}

// ---- Polling under load -------------------------------------------------------------------

/// With more clients ready than [`POLL_QUEUE_LEN`], a client that sent something goes
/// straight back to the queue instead of arming its slots; once the ticks stop, every client
/// drains, goes idle armed, and the next tick wakes each exactly once.
#[test]
fn busy_shards_poll_and_idle_clients_are_armed_again() {
    use crate::shard::core::POLL_QUEUE_LEN;
    let mut r = Rig::new();
    let n = POLL_QUEUE_LEN * 2;
    let clients: Vec<usize> = (0..n).map(|_| r.client(Format::Json)).collect();
    for &c in &clients {
        r.subscribe(c, &["AAPL", "MSFT"]);
    }
    assert_eq!(r.feed(&tick(AAPL, 1)), n, "every client was armed and is woken once");
    assert_eq!(r.core.ready_len(), n);
    // Serve one client while the queue is long: it sent an update, so it is queued again.
    let first = r.core.pop_ready(T0).unwrap();
    assert_eq!(r.flushed(first, T0), vec![(AAPL, 1, LIVE)]);
    assert_eq!(r.core.counters.polled, 1);
    assert_eq!(r.core.ready_len(), n, "back at the end of the queue");
    // MSFT slots were armed at subscribe; polling leaves them as they are (the polled client
    // is already queued, so its wake-up is a no-op).
    assert_eq!(r.feed(&tick(MSFT, 1)), n);
    assert_eq!(r.core.ready_len(), n, "nobody queued twice");

    // Drain: every queued client is flushed until nobody is left.
    let mut got: std::collections::HashMap<usize, Vec<Update>> = std::collections::HashMap::new();
    let mut rounds = 0;
    while let Some(k) = r.core.pop_ready(T0) {
        let ups = r.flushed(k, T0);
        got.entry(k).or_default().extend(ups);
        rounds += 1;
        assert!(rounds < 10 * n, "the queue must drain");
    }
    for &c in &clients {
        let mut ups = got.remove(&c).unwrap_or_default();
        if c == first {
            ups.insert(0, (AAPL, 1, LIVE));
        }
        ups.sort_unstable();
        assert_eq!(ups, vec![(AAPL, 1, LIVE), (MSFT, 1, LIVE)], "client {c}");
        assert!(r.core.client(c).unwrap().subs().slots().iter().all(|s| s.armed), "idle and armed");
    }
    assert_eq!(r.feed(&tick(AAPL, 2)), n, "every idle client is woken again");
}

/// What a trade subscriber sees, format-independently.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    /// A quote update (symbol, seq).
    Quote(u32, u64),
    /// A trade (symbol, seq, trade id, side).
    Trade(u32, u64, u64, Option<String>),
    /// A gap notice (symbol, missed).
    Gap(u32, u64),
    /// An order book (symbol, book seq).
    Book(u32, u64),
}

impl Rig {
    /// Every update, trade and gap among `msgs`, in order (snapshots and replies left out).
    fn events(&self, msgs: &[Msg]) -> Vec<Ev> {
        let json_ev = |v: &OwnedValue| {
            let symbol = || self.universe.id(v["symbol"].as_str().unwrap()).unwrap();
            match type_of(v) {
                Some("update") if v["snapshot"].as_bool() == Some(false) => {
                    Some(Ev::Quote(symbol(), v["seq"].as_u64().unwrap()))
                }
                Some("trade") => Some(Ev::Trade(
                    symbol(),
                    v["seq"].as_u64().unwrap(),
                    v.get("trade_id").and_then(|t| t.as_u64()).unwrap_or(0),
                    v.get("side").and_then(|s| s.as_str()).map(str::to_string),
                )),
                Some("gap") => Some(Ev::Gap(symbol(), v["missed"].as_u64().unwrap())),
                Some("book") => Some(Ev::Book(symbol(), v["seq"].as_u64().unwrap())),
                _ => None,
            }
        };
        let mut out = Vec::new();
        for m in msgs {
            match m {
                Msg::Text(v) if v.as_array().is_some() => {
                    out.extend(v.as_array().unwrap().iter().filter_map(json_ev))
                }
                Msg::Text(v) => out.extend(json_ev(v)),
                Msg::Binary(records) => {
                    out.extend(
                        records.iter().filter(|r| !r.snapshot).map(|r| Ev::Quote(r.tick.symbol, r.tick.seq)),
                    );
                }
                Msg::Mixed(ms) => out.extend(ms.iter().filter_map(|m| match m {
                    binary::Message::Update(r) if !r.snapshot => Some(Ev::Quote(r.tick.symbol, r.tick.seq)),
                    binary::Message::Update(_) => None,
                    binary::Message::Trade(t) => {
                        Some(Ev::Trade(t.symbol, t.seq, t.trade_id, t.side.as_str().map(str::to_string)))
                    }
                    binary::Message::Gap { symbol, missed } => Some(Ev::Gap(*symbol, *missed)),
                    binary::Message::Book(b) => Some(Ev::Book(b.symbol, b.book.seq)),
                })),
            }
        }
        out
    }

    /// A flush, as events.
    fn flush_events(&mut self, key: usize, now: u64) -> Vec<Ev> {
        let msgs = self.flush(key, now);
        self.events(&msgs)
    }

    /// Feeds trade number `n` of `symbol` (as its tick `seq`), with trade id `1000 + n`.
    fn trade(&mut self, symbol: u32, seq: u64, n: u64) {
        let side = if n.is_multiple_of(2) { crate::feeds::Side::Buy } else { crate::feeds::Side::Sell };
        let t = Tick { kind: TickKind::Trade, trades: n, trade_id: 1000 + n, side, ..tick(symbol, seq) };
        self.feed(&t);
    }
}

fn side(n: u64) -> Option<String> {
    Some(if n.is_multiple_of(2) { "buy" } else { "sell" }.to_string())
}

#[test]
fn trades_reach_only_their_subscribers_in_order_in_every_format_while_quotes_conflate() {
    for format in FORMATS {
        let mut r = Rig::new();
        let (taker, quoter) = (r.client(format), r.client(format));
        let msgs = r.request(taker, r#"{"op":"subscribe","symbols":["AAPL"],"trades":true}"#, T0);
        assert!(matches!(&msgs[0], Msg::Text(v) if type_of(v) == Some("subscribed")));
        r.subscribe(quoter, &["AAPL"]);
        // Quote, trade, trade, quote, trade: seqs 1..=5, trades numbered 1..=3.
        r.feed(&tick(AAPL, 1));
        r.trade(AAPL, 2, 1);
        r.trade(AAPL, 3, 2);
        r.feed(&tick(AAPL, 4));
        r.trade(AAPL, 5, 3);
        let got = r.flush(taker, T0);
        let want = vec![
            Ev::Trade(AAPL, 2, 1001, side(1)),
            Ev::Trade(AAPL, 3, 1002, side(2)),
            Ev::Trade(AAPL, 5, 1003, side(3)),
            Ev::Quote(AAPL, 5),
        ];
        assert_eq!(r.events(&got), want, "{format:?}: every trade in order, then the latest quote");
        assert_eq!(r.flush_events(quoter, T0), vec![Ev::Quote(AAPL, 5)], "{format:?}: quotes only");
        assert_eq!(r.core.counters.trades_sent, 3);
        // Trades off again: the next trade is not sent as a trade.
        r.request(taker, r#"{"op":"subscribe","symbols":["AAPL"]}"#, T0);
        r.trade(AAPL, 6, 4);
        assert_eq!(r.flush_events(taker, T0), vec![Ev::Quote(AAPL, 6)], "{format:?}");
        assert_eq!(r.core.gauges().trade_backlog, 0, "the log closed with its last reader");
    }
}

#[test]
fn trades_start_after_the_snapshot_and_are_not_paced_by_max_rate() {
    let mut r = Rig::new();
    r.trade(AAPL, 1, 1);
    r.trade(AAPL, 2, 2);
    let c = r.client(Format::Json);
    // One quote update per 10 s at most; trades are not paced.
    r.request(c, r#"{"op":"subscribe","symbols":["AAPL"],"trades":true,"max_rate":0.1}"#, T0);
    r.trade(AAPL, 3, 3);
    assert_eq!(r.core.pop_ready(T0), Some(c), "a trade wakes a paced client");
    assert_eq!(
        r.flush_events(c, T0),
        vec![Ev::Trade(AAPL, 3, 1003, side(3))],
        "trades 1-2 predate the snapshot"
    );
    r.trade(AAPL, 4, 4);
    r.trade(AAPL, 5, 5);
    let got = r.flush(c, T0 + SEC);
    assert_eq!(r.events(&got), vec![Ev::Trade(AAPL, 4, 1004, side(4)), Ev::Trade(AAPL, 5, 1005, side(5))]);
}

#[test]
fn a_client_behind_its_trade_backlog_is_told_exactly_what_it_missed() {
    for format in FORMATS {
        let mut r = Rig::with_limits(Limits { max_trade_backlog: 3, ..LIMITS });
        let (slow, fast) = (r.client(format), r.client(format));
        for c in [slow, fast] {
            r.request(c, r#"{"op":"subscribe","symbols":["AAPL","MSFT"],"trades":true}"#, T0);
        }
        let mut fast_got = Vec::new();
        for n in 1..=10 {
            r.trade(AAPL, n, n);
            fast_got.extend(r.flush_events(fast, T0));
        }
        assert_eq!(fast_got.iter().filter(|e| matches!(e, Ev::Trade(..))).count(), 10, "{format:?}");
        // Trades that never reached the shard (a ring overrun, a loss on the bus) are gaps too.
        r.trade(MSFT, 1, 1);
        r.trade(MSFT, 2, 5);
        let got = r.flush_events(slow, T0);
        let want = vec![
            Ev::Gap(AAPL, 7),
            Ev::Trade(AAPL, 8, 1008, side(8)),
            Ev::Trade(AAPL, 9, 1009, side(9)),
            Ev::Trade(AAPL, 10, 1010, side(10)),
            Ev::Quote(AAPL, 10),
            Ev::Trade(MSFT, 1, 1001, side(1)),
            Ev::Gap(MSFT, 3),
            Ev::Trade(MSFT, 2, 1005, side(5)),
            Ev::Quote(MSFT, 2),
        ];
        assert_eq!(got, want, "{format:?}");
        assert_eq!((r.core.counters.trade_gaps, r.core.counters.trades_missed), (2, 7 + 3), "{format:?}");
        // Trimming follows the slowest reader: the fast one has not read MSFT's trades yet.
        r.core.trim_trades();
        assert_eq!(r.core.gauges().trade_backlog, 2, "{format:?}");
        r.flush(fast, T0);
        r.core.trim_trades();
        assert_eq!(r.core.gauges().trade_backlog, 0, "{format:?}");
        // A gap is not an update: `delivered` counts trades and quotes only (fast: 10 trades
        // and 10 quotes, then 2 trades and a quote; slow: 3 + 1 and 2 + 1).
        assert_eq!(r.core.counters.delivered, 20 + 3 + 7, "{format:?}");
    }
}

#[test]
fn a_bandwidth_cap_holds_bytes_per_second_and_quotes_converge() {
    const CAP: u64 = 5_000;
    for format in FORMATS {
        let mut r = Rig::with_limits(Limits { bandwidth_ceiling: 50_000, ..LIMITS });
        let c = r.client(format);
        let msgs = r.request(c, &format!(r#"{{"op":"set","max_bandwidth":{CAP},"id":1}}"#), T0);
        assert_eq!(msgs, vec![Msg::Text(json(r#"{"type":"settings","id":1,"max_bandwidth":5000}"#))]);
        r.subscribe(c, &["AAPL", "MSFT", "GOOG", "TSLA", "AMZN"]);
        // 5 s of 1,000 quotes/s over the five symbols; the driver's loop every millisecond.
        let mut per_second = [0u64; 6];
        let mut seq = [0u64; 5];
        let mut now = T0;
        for ms in 0..5_000u64 {
            now = T0 + ms * 1_000_000;
            let s = (ms % 5) as u32;
            seq[s as usize] += 1;
            r.feed(&Tick { ts_gateway: now, ..tick(s, seq[s as usize]) });
            r.core.poll_deadlines(now);
            while let Some(k) = r.core.pop_ready(now) {
                r.core.fill(k, now);
                let n = r.out(k).len();
                r.core.written(k, n, now);
                per_second[(ms / 1000) as usize] += n as u64;
            }
        }
        for (i, &b) in per_second[..5].iter().enumerate() {
            assert!(b <= CAP + 1_500 + 300, "{format:?} second {i}: {b} bytes over a {CAP} B/s cap");
            assert!(b >= CAP * 8 / 10, "{format:?} second {i}: only {b} bytes");
        }
        assert!(r.core.counters.conflated > 0, "{format:?}: quotes conflate under the cap");
        // The feed stops: within a second the client holds every latest value.
        let mut last = std::collections::HashMap::new();
        for ms in 1..=1_000u64 {
            let t = now + ms * 1_000_000;
            r.core.poll_deadlines(t);
            while let Some(k) = r.core.pop_ready(t) {
                for e in r.flush_events(k, t) {
                    if let Ev::Quote(s, q) = e {
                        last.insert(s, q);
                    }
                }
            }
        }
        for s in 0..5u32 {
            assert_eq!(last.get(&s).copied(), Some(seq[s as usize]), "{format:?}: symbol {s} converged");
        }
    }
}

#[test]
fn an_sse_client_gets_numbered_events_holding_the_json_messages() {
    let mut r = Rig::new();
    r.feed(&tick(AAPL, 1));
    let c = r.client(Format::Sse);
    r.send(c, r#"{"op":"subscribe","symbols":["AAPL"],"trades":true}"#, T0);
    r.trade(AAPL, 2, 1);
    r.core.fill(c, T0);
    let out = String::from_utf8(r.out(c)).unwrap();
    let events: Vec<&str> = out.split_terminator("\n\n").collect();
    let mut datas = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (id, data) = e.split_once('\n').unwrap();
        assert_eq!(id, format!("id: {}", i + 1), "ids count the events");
        datas.push(json(data.strip_prefix("data: ").unwrap()));
    }
    let types: Vec<&str> = datas.iter().map(|d| type_of(d).unwrap()).collect();
    assert_eq!(types, ["subscribed", "update", "trade", "update"], "{out}");
    assert_eq!(datas[1]["snapshot"].as_bool(), Some(true));
    assert_eq!((datas[2]["seq"].as_u64(), datas[3]["seq"].as_u64()), (Some(2), Some(2)));
    // The latency of live messages is stamped when the bytes are written, as on a WebSocket.
    let n = r.out(c).len();
    r.core.written(c, n, T0 + MS);
    assert_eq!(r.core.counters.delivered, 2, "the trade and the update");
}

// ---------------------------------------------------------------------------------------------
// Order books ("depth")
// ---------------------------------------------------------------------------------------------

/// `n` levels a side around 100/101, the size of each level `size`.
fn ladder(n: i64, size: i64) -> (Ladder, Ladder) {
    (
        (0..n).map(|i| ((100 - i) * SCALE, size * SCALE)).collect(),
        (0..n).map(|i| ((101 + i) * SCALE, size * SCALE)).collect(),
    )
}

#[test]
fn depth_gets_the_book_on_subscribe_then_each_change_within_its_depth_in_every_format() {
    for format in FORMATS {
        let mut rig = Rig::new();
        let (b, a) = ladder(6, 1);
        rig.book(AAPL, Some((&b, &a)));
        let c = rig.client(format);
        rig.send(c, r#"{"op":"subscribe","symbols":["AAPL"],"depth":3}"#, T0);
        let books = rig.flush_books(c, T0);
        assert_eq!(
            books,
            vec![(AAPL, 1, b[..3].to_vec(), a[..3].to_vec(), false)],
            "{format:?}: the book on subscribe"
        );
        assert_eq!(rig.ready(), vec![c], "queued by the subscribe (the flush above served it)");
        // A change at level 4 (0-based): not within 3 levels, nobody is woken.
        let mut b2 = b.clone();
        b2[4].1 = 9 * SCALE;
        rig.book(AAPL, Some((&b2, &a)));
        assert!(rig.ready().is_empty(), "{format:?}: a change below the client's depth wakes nobody");
        assert!(rig.flush_books(c, T0).is_empty());
        // A change of the touch: the client gets the latest book.
        b2[0].1 = 5 * SCALE;
        let seq = rig.book(AAPL, Some((&b2, &a)));
        assert_eq!(rig.ready(), vec![c]);
        let books = rig.flush_books(c, T0);
        assert_eq!(books, vec![(AAPL, seq, b2[..3].to_vec(), a[..3].to_vec(), false)], "{format:?}");
        // Stale: every depth is told, with the last good levels.
        let seq = rig.book(AAPL, None);
        let books = rig.flush_books(c, T0);
        assert_eq!(books, vec![(AAPL, seq, b2[..3].to_vec(), a[..3].to_vec(), true)], "{format:?}");
    }
}

#[test]
fn a_stalled_depth_client_gets_the_latest_book_once_not_a_queue() {
    let mut rig = Rig::new();
    let c = rig.client(Format::Json);
    rig.book(MSFT, Some((&ladder(10, 1).0, &ladder(10, 1).1)));
    rig.send(c, r#"{"op":"subscribe","symbols":["MSFT"],"depth":10}"#, T0);
    rig.flush(c, T0);
    let mut last = 0;
    for size in 2..500 {
        let (b, a) = ladder(10, size);
        last = rig.book(MSFT, Some((&b, &a)));
    }
    assert!(rig.core.pending(c) <= 2, "one slot, not hundreds of books");
    let books = rig.flush_books(c, T0);
    assert_eq!(books.len(), 1);
    assert_eq!((books[0].1, books[0].2[0].1), (last, 499 * SCALE), "the newest book");
}

#[test]
fn each_book_is_encoded_once_per_depth_and_format_per_change() {
    let mut rig = Rig::new();
    let (b, a) = ladder(8, 1);
    rig.book(GOOG, Some((&b, &a)));
    let mut clients = Vec::new();
    for (format, depth) in [(Format::Json, 3), (Format::Binary, 3), (Format::Json, 5), (Format::JsonBatch, 3)]
    {
        for _ in 0..5 {
            let c = rig.client(format);
            rig.send(c, &format!(r#"{{"op":"subscribe","symbols":["GOOG"],"depth":{depth}}}"#), T0);
            rig.flush(c, T0);
            clients.push(c);
        }
    }
    let before = rig.core.depth.encodes;
    let (b2, a2) = ladder(8, 2);
    rig.book(GOOG, Some((&b2, &a2)));
    for &c in &clients {
        assert_eq!(rig.flush_books(c, T0).len(), 1);
    }
    // JSON frame at 3 and 5, JSON object (batch) at 3, binary at 3.
    assert_eq!(rig.core.depth.encodes - before, 4);
}

#[test]
fn depth_over_the_maximum_is_refused_zero_stops_books_and_leaving_frees_them() {
    let mut rig = Rig::new();
    let (b, a) = ladder(4, 1);
    rig.book(TSLA, Some((&b, &a)));
    let c = rig.client(Format::Json);
    let msgs = rig.request(c, r#"{"op":"subscribe","symbols":["TSLA"],"depth":11,"id":5}"#, T0);
    let v = without_message(msgs.into_iter().next().unwrap());
    assert_eq!(v, json(r#"{"type":"error","id":5,"code":"bad_request"}"#));
    assert!(rig.core.client(c).unwrap().subs().is_empty(), "nothing was subscribed");
    rig.send(c, r#"{"op":"subscribe","symbols":["TSLA"],"depth":2}"#, T0);
    assert_eq!(rig.flush_books(c, T0).len(), 1);
    assert_eq!(rig.core.depth.subscribers(TSLA), 1);
    // A new depth is sent afresh; depth 0 stops the book but keeps the quotes.
    rig.send(c, r#"{"op":"subscribe","symbols":["TSLA"],"depth":4}"#, T0);
    let books = rig.flush_books(c, T0);
    assert_eq!(books.iter().map(|b| b.2.len()).collect::<Vec<_>>(), vec![4]);
    rig.send(c, r#"{"op":"subscribe","symbols":["TSLA"]}"#, T0);
    assert_eq!(rig.core.depth.subscribers(TSLA), 0);
    let (b2, a2) = ladder(4, 3);
    rig.book(TSLA, Some((&b2, &a2)));
    assert!(rig.flush_books(c, T0).is_empty());
    // Unsubscribing and closing give the book state back.
    let d = rig.client(Format::Binary);
    rig.send(d, r#"{"op":"subscribe","symbols":["TSLA","AAPL"],"depth":2}"#, T0);
    rig.send(c, r#"{"op":"subscribe","symbols":["TSLA"],"depth":1}"#, T0);
    assert_eq!(rig.core.depth.subscribers(TSLA), 2);
    rig.send(c, r#"{"op":"unsubscribe","symbols":["TSLA"]}"#, T0);
    rig.core.begin_close(d);
    rig.core.remove_client(d);
    assert_eq!((rig.core.depth.subscribers(TSLA), rig.core.depth.subscribers(AAPL)), (0, 0));
    assert_eq!(rig.core.depth.heap_bytes(), 0);
}

#[test]
fn an_overrun_catches_depth_clients_up_from_the_store() {
    let mut rig = Rig::new();
    let (b, a) = ladder(3, 1);
    rig.book(AAPL, Some((&b, &a)));
    let c = rig.client(Format::Json);
    rig.send(c, r#"{"op":"subscribe","symbols":["AAPL"],"depth":3}"#, T0);
    rig.flush(c, T0);
    rig.ready();
    // The feed publishes, but the shard misses the notice (lapped by the ring).
    let (b2, a2) = ladder(3, 7);
    rig.books.publish(AAPL, tickgate_feeds::BookHealth::Live, &b2, &a2, T0, T0);
    assert!(rig.ready().is_empty());
    rig.core.heal_from_lvc();
    assert_eq!(rig.ready(), vec![c]);
    let books = rig.flush_books(c, T0);
    assert_eq!(books, vec![(AAPL, 2, b2, a2, false)]);
}
