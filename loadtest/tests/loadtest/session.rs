//! The client session without sockets: crafted server bytes in (built with the gateway's own
//! encoders), events and client frames out (decoded with the gateway's own decoder). Bytes are
//! fed the way the worker feeds them: `read_buf`, copy, `on_bytes`.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tickgate::books::Levels;
use tickgate::feeds::{Tick, TickKind};
use tickgate::protocol::Format;
use tickgate::protocol::binary::encode_record;
use tickgate::protocol::control::{self, ClientMsg, ErrorCode};
use tickgate::protocol::frame::{FrameDecoder, Message, OpCode, write_close, write_frame};
use tickgate::protocol::json::encode_update;
use tickgate_loadtest::checker::{Checker, SymState, Verdict};
use tickgate_loadtest::decode::{SymbolTable, Update};
use tickgate_loadtest::session::{CLOSE_WAIT, CloseKind, Ctx, Event, ReadBuf, Session};
use tickgate_loadtest::ws::handshake::{HandshakeError, accept_for};
use tickgate_loadtest::ws::url::WsUrl;

const SYMBOLS: [&str; 4] = ["AAPL", "BRK.B", "MSFT", "X"];

/// One session with its own checker, symbols and read buffer (a worker thread in miniature).
struct Client {
    session: Session,
    checker: Checker,
    symbols: SymbolTable,
    rb: ReadBuf,
}

impl Client {
    /// A session in the handshake phase.
    fn new(format: Format) -> Client {
        let mut checker = Checker::new();
        let conn = checker.add_conn();
        let url = WsUrl::parse("ws://127.0.0.1:9000/ws").unwrap();
        Client {
            session: Session::new(conn, &url, format, fastrand::Rng::with_seed(7)),
            checker,
            symbols: SymbolTable::new(SYMBOLS.iter().map(|s| s.to_string()).collect()).unwrap(),
            rb: ReadBuf::new(4096),
        }
    }

    /// An upgraded session (nothing left to write).
    fn open(format: Format) -> Client {
        let mut c = Client::new(format);
        let key = c.key();
        c.session.on_handshake_bytes(response(&key, format.subprotocol()).as_bytes());
        assert_eq!(c.session.poll_event(), Some(Event::Connected));
        assert!(c.session.is_open());
        c
    }

    /// An upgraded session that subscribed to `symbols` (request 1) and got its reply.
    fn holding(format: Format, symbols: &[u32]) -> Client {
        let mut c = Client::open(format);
        assert_eq!(c.subscribe(symbols), Some(1));
        c.written();
        let events = c.feed(&subscribed_reply(Some(1), symbols));
        assert_eq!(events, [Event::Subscribed { id: Some(1), symbols: symbols.len() }]);
        c
    }

    fn subscribe(&mut self, symbols: &[u32]) -> Option<u32> {
        let cx = Ctx { checker: &mut self.checker, symbols: &self.symbols };
        self.session.subscribe(cx, symbols, None)
    }

    fn unsubscribe(&mut self, symbols: &[u32]) -> Option<u32> {
        let cx = Ctx { checker: &mut self.checker, symbols: &self.symbols };
        self.session.unsubscribe(cx, symbols)
    }

    /// What the session asks to write.
    fn written(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        out
    }

    /// The `Sec-WebSocket-Key` of the upgrade request the session wrote.
    fn key(&mut self) -> String {
        let req = String::from_utf8(self.written()).unwrap();
        assert!(req.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"), "{req}");
        req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().to_string()
    }

    /// Feeds `bytes` as the worker does, in as many reads as the read buffer needs; returns
    /// every event (polled with `poll_event`).
    fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.feed_counting(bytes, Poll::Owned).0
    }

    /// [`Client::feed`] polling as the worker does: updates by reference
    /// (`poll_event_with`), turned into events here to compare.
    fn feed_with(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.feed_counting(bytes, Poll::ByRef).0
    }

    /// [`Client::feed`] with either way of polling, and the data frames processed.
    fn feed_counting(&mut self, mut bytes: &[u8], poll: Poll) -> (Vec<Event>, u64) {
        let (mut events, mut frames) = (Vec::new(), 0);
        loop {
            let spare = self.session.read_buf(&mut self.rb);
            let n = bytes.len().min(spare.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            let cx = Ctx { checker: &mut self.checker, symbols: &self.symbols };
            let mut rx = self.session.on_bytes(&mut self.rb, n, cx);
            loop {
                let e = match poll {
                    Poll::Owned => rx.poll_event(),
                    Poll::ByRef => rx.poll_event_with(&mut |u: &Update, verdict| {
                        events.push(Event::Update { update: *u, verdict });
                    }),
                };
                let Some(e) = e else { break };
                events.push(e);
            }
            frames += rx.frames();
            drop(rx);
            if bytes.is_empty() {
                return (events, frames);
            }
        }
    }

    /// The client frames the session wrote, decoded by the gateway (which checks masking).
    fn sent(&mut self) -> Vec<Message> {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut b = BytesMut::from(&self.written()[..]);
        let mut msgs = Vec::new();
        while let Some(m) = dec.decode(&mut b).unwrap() {
            msgs.push(m);
        }
        assert!(b.is_empty(), "a partial client frame");
        msgs
    }
}

/// How a test polls a read's events.
#[derive(Clone, Copy, Debug)]
enum Poll {
    /// `poll_event`: every event owned.
    Owned,
    /// `poll_event_with`: updates by reference (the worker's way).
    ByRef,
}

/// A correct 101 response for `key`, echoing `protocol`.
fn response(key: &str, protocol: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        accept_for(key)
    )
}

fn frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, op, payload);
    out
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Text, payload)
}

fn subscribed_reply(id: Option<i64>, symbols: &[u32]) -> Vec<u8> {
    let mut reply = Vec::new();
    control::write_subscribed(&mut reply, id, symbols.iter().map(|&s| (SYMBOLS[s as usize], s)));
    text(&reply)
}

fn tick(symbol: u32, seq: u64) -> Tick {
    Tick {
        symbol,
        kind: TickKind::Quote,
        seq,
        bid: 18_912_000_000,
        bid_size: 300 * 100_000_000,
        ask: 18_914_000_000 + seq as i64,
        ask_size: 1,
        last: -5,
        last_size: 0,
        volume: i64::MAX,
        ts_event: 1_732_240_000_123_456_789,
        ts_gateway: 1_732_240_000_123_460_000 + seq,
        ..Tick::default()
    }
}

fn json_update(t: &Tick, snapshot: bool) -> Vec<u8> {
    let mut j = Vec::new();
    encode_update(&mut j, t, SYMBOLS[t.symbol as usize], snapshot);
    text(&j)
}

fn binary_updates(ticks: &[(Tick, bool)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (t, snap) in ticks {
        encode_record(&mut p, t, *snap);
    }
    frame(OpCode::Binary, &p)
}

fn update(t: Tick, snapshot: bool, verdict: Verdict) -> Event {
    Event::Update { update: Update { tick: t, snapshot }, verdict }
}

const OK: Verdict = Verdict::Ok { conflated: false };

#[test]
fn the_upgrade_request_offers_the_formats_subprotocol() {
    for format in [Format::Json, Format::Binary, Format::JsonBatch] {
        let mut c = Client::new(format);
        let req = String::from_utf8(c.written()).unwrap();
        assert!(req.contains(&format!("Sec-WebSocket-Protocol: {}\r\n", format.subprotocol())), "{req}");
        assert!(req.ends_with("\r\n\r\n"));
        assert!(!c.session.is_open());
        // No request before the upgrade.
        assert_eq!(c.subscribe(&[0]), None);
        assert_eq!(c.session.list(), None);
        assert!(c.written().is_empty());
    }
}

#[test]
fn handshake_accepted_or_refused() {
    // (response for the key, what the session must say)
    type Case = (fn(&str) -> String, Result<(), fn(&HandshakeError) -> bool>);
    let cases: Vec<Case> = vec![
        (|k| response(k, "tickgate.v1.json"), Ok(())),
        (
            |k| {
                response(k, "tickgate.v1.json").replace("HTTP/1.1 101 Switching Protocols", "HTTP/1.1 101 OK")
            },
            Ok(()),
        ),
        (
            |_| {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 24\r\n\r\nconnection limit reached"
                    .into()
            },
            Err(|e| *e == HandshakeError::Status { status: 503, body: "connection limit reached".into() }),
        ),
        (|_| response("another key", "tickgate.v1.json"), Err(|e| e.to_string().contains("Accept"))),
        (|k| response(k, "tickgate.v1.binary"), Err(|e| e.to_string().contains("Protocol"))),
        (|_| "SSH-2.0-OpenSSH_9.6\r\n\r\n".into(), Err(|e| matches!(e, HandshakeError::Malformed(_)))),
        (
            |_| format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(20_000)),
            Err(|e| *e == HandshakeError::TooLarge),
        ),
    ];
    for (i, (resp, want)) in cases.into_iter().enumerate() {
        let mut c = Client::new(Format::Json);
        let key = c.key();
        c.session.on_handshake_bytes(resp(&key).as_bytes());
        match (c.session.poll_event(), want) {
            (Some(Event::Connected), Ok(())) => assert!(c.session.is_open(), "case {i}"),
            (Some(Event::HandshakeFailed(e)), Err(check)) => {
                assert!(check(&e), "case {i}: {e:?}");
                assert!(c.session.is_closed(), "case {i}");
            }
            (got, _) => panic!("case {i}: {got:?}"),
        }
        assert_eq!(c.session.poll_event(), None, "case {i}");
    }
}

#[test]
fn a_response_split_anywhere_completes_once_and_keeps_the_frames_after_it() {
    let mut c = Client::new(Format::Json);
    let key = c.key();
    let mut bytes = response(&key, "tickgate.v1.json").into_bytes();
    let head = bytes.len();
    bytes.extend(json_update(&tick(0, 1), true));
    for (i, b) in bytes.iter().enumerate() {
        c.session.on_handshake_bytes(std::slice::from_ref(b));
        let ev = c.session.poll_event();
        if i + 1 == head {
            assert_eq!(ev, Some(Event::Connected));
        } else {
            assert_eq!(ev, None, "byte {i}");
        }
    }
    assert_eq!(c.session.buffered(), bytes.len() - head);
    // The update that came with the response is processed by the next `on_bytes`, even with
    // no new bytes (the checker does not hold the symbol: it is counted).
    assert_eq!(c.feed(&[]), [update(tick(0, 1), true, Verdict::Unsubscribed)]);
    assert_eq!(c.checker.violations.unsubscribed, 1);
    assert_eq!(c.session.buffered(), 0);
}

#[test]
fn the_handshake_also_goes_through_on_bytes() {
    let mut c = Client::new(Format::Binary);
    let key = c.key();
    let mut bytes = response(&key, "tickgate.v1.binary").into_bytes();
    bytes.extend(frame(OpCode::Ping, b"p"));
    let split = 30;
    assert!(c.feed(&bytes[..split]).is_empty());
    assert_eq!(c.feed(&bytes[split..]), [Event::Connected, Event::Ping]);
    assert!(c.session.is_open());
}

#[test]
fn subscribed_replies_are_matched_to_their_request() {
    // (reply, event, symbols held afterwards, malformed count, request still in flight)
    let unknown = {
        let mut r = Vec::new();
        control::write_subscribed(&mut r, Some(1), [("AAPL", 0), ("ZZZ", 9), ("MSFT", 2)]);
        text(&r)
    };
    let wrong_id = {
        let mut r = Vec::new();
        control::write_subscribed(&mut r, Some(1), [("AAPL", 0), ("MSFT", 3)]);
        text(&r)
    };
    type Case = (Vec<u8>, Event, Vec<(u32, SymState)>, u64, bool);
    let cases: Vec<Case> = vec![
        (
            subscribed_reply(Some(1), &[0, 2]),
            Event::Subscribed { id: Some(1), symbols: 2 },
            vec![(0, SymState::Subscribed), (2, SymState::Subscribed)],
            0,
            false,
        ),
        (
            unknown,
            Event::Subscribed { id: Some(1), symbols: 2 },
            vec![(0, SymState::Subscribed), (2, SymState::Subscribed)],
            1,
            false,
        ),
        (
            wrong_id,
            Event::Subscribed { id: Some(1), symbols: 1 },
            vec![(0, SymState::Subscribed), (2, SymState::Subscribing)],
            1,
            false,
        ),
        (
            subscribed_reply(Some(7), &[0, 2]),
            Event::Subscribed { id: None, symbols: 2 },
            vec![(0, SymState::Subscribed), (2, SymState::Subscribed)],
            0,
            true,
        ),
    ];
    for (i, (reply, want, held, malformed, in_flight)) in cases.into_iter().enumerate() {
        let mut c = Client::open(Format::Json);
        assert_eq!(c.subscribe(&[0, 2]), Some(1));
        assert!(!c.session.is_idle());
        match &c.sent()[..] {
            [Message::Text(t)] => {
                let mut t = t.clone();
                match control::parse(&mut t).unwrap() {
                    ClientMsg::Subscribe { id, symbols, max_rate, .. } => {
                        assert_eq!((id, symbols, max_rate), (Some(1), vec!["AAPL", "MSFT"], None));
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.feed(&reply), [want], "case {i}");
        assert_eq!(c.checker.held(0).collect::<Vec<_>>(), held, "case {i}");
        assert_eq!(c.checker.violations.malformed, malformed, "case {i}");
        assert_eq!(!c.session.is_idle(), in_flight, "case {i}");
    }
}

#[test]
fn error_replies_roll_back_what_they_refuse() {
    let mut c = Client::holding(Format::Json, &[0]);
    // Churn: replace AAPL by BRK.B.
    assert_eq!(c.unsubscribe(&[0]), Some(2));
    assert_eq!(c.subscribe(&[1]), Some(3));
    assert_eq!(
        c.checker.held(0).collect::<Vec<_>>(),
        [(0, SymState::Unsubscribing), (1, SymState::Subscribing)]
    );
    let mut replies = Vec::new();
    for id in [3, 2] {
        let mut r = Vec::new();
        control::write_error(&mut r, Some(id), ErrorCode::RateLimited, "slow down", None);
        replies.extend(text(&r));
    }
    let code = "rate_limited".to_string();
    assert_eq!(
        c.feed(&replies),
        [Event::ErrorReply { id: Some(3), code: code.clone() }, Event::ErrorReply { id: Some(2), code }]
    );
    assert_eq!(c.checker.held(0).collect::<Vec<_>>(), [(0, SymState::Subscribed)]);
    assert_eq!(c.checker.violations.error_replies, 2);
    assert!(c.session.is_idle());
}

#[test]
fn unsubscribed_and_list_replies() {
    let mut c = Client::holding(Format::Json, &[0, 3]);
    assert_eq!(c.unsubscribe(&[3]), Some(2));
    assert_eq!(c.session.list(), Some(3));
    let msgs = c.sent();
    assert_eq!(msgs.len(), 2);
    let Message::Text(mut t) = msgs[1].clone() else { panic!("{msgs:?}") };
    assert!(matches!(control::parse(&mut t).unwrap(), ClientMsg::List { id: Some(3) }));
    let mut bytes = Vec::new();
    let mut r = Vec::new();
    control::write_unsubscribed(&mut r, Some(2), ["X"]);
    bytes.extend(text(&r));
    r.clear();
    control::write_symbols(&mut r, Some(3), SYMBOLS);
    bytes.extend(text(&r));
    let names: Vec<String> = SYMBOLS.iter().map(|s| s.to_string()).collect();
    assert_eq!(c.feed(&bytes), [Event::Unsubscribed { id: Some(2) }, Event::Symbols(names)]);
    assert_eq!(c.checker.held(0).collect::<Vec<_>>(), [(0, SymState::Subscribed)]);
    // An update of the symbol after its `unsubscribed` reply is a violation.
    assert_eq!(c.feed(&json_update(&tick(3, 9), false)), [update(tick(3, 9), false, Verdict::Unsubscribed)]);
    assert!(c.session.is_idle());
}

#[test]
fn updates_in_json_and_binary() {
    for (format, poll) in [(Format::Json, Poll::Owned), (Format::Binary, Poll::ByRef)] {
        let mut c = Client::holding(format, &[0, 1]);
        let mut bytes = json_update(&tick(1, 5), true);
        bytes.extend(binary_updates(&[(tick(0, 1), true), (tick(0, 2), false), (tick(1, 7), false)]));
        bytes.extend(frame(OpCode::Ping, b""));
        bytes.extend(json_update(&tick(0, 3), false));
        let (events, frames) = c.feed_counting(&bytes, poll);
        assert_eq!(
            events,
            [
                update(tick(1, 5), true, OK),
                update(tick(0, 1), true, OK),
                update(tick(0, 2), false, OK),
                update(tick(1, 7), false, Verdict::Ok { conflated: true }),
                Event::Ping,
                update(tick(0, 3), false, OK),
            ],
            "{poll:?}"
        );
        assert_eq!(frames, 3);
        assert_eq!(c.checker.violations.total(), 0);
        assert_eq!(c.checker.final_values(0), [(0, Some(tick(0, 3))), (1, Some(tick(1, 7)))]);
    }
}

/// A batched JSON frame holding `ticks` as the gateway writes it (`protocol::json::batch_*`).
fn json_batch(ticks: &[(Tick, bool)]) -> Vec<u8> {
    let (mut body, mut out) = (Vec::new(), Vec::new());
    for (t, snapshot) in ticks {
        let mut object = Vec::new();
        encode_update(&mut object, t, SYMBOLS[t.symbol as usize], *snapshot);
        tickgate::protocol::json::batch_append(&mut body, &object);
    }
    tickgate::protocol::json::batch_finish(&mut out, &mut body);
    out
}

#[test]
fn batched_json_updates_are_each_delivered_and_checked() {
    for poll in [Poll::Owned, Poll::ByRef] {
        let mut c = Client::holding(Format::JsonBatch, &[0, 1]);
        let mut bytes = json_batch(&[(tick(1, 5), true), (tick(0, 1), true)]);
        bytes.extend(frame(OpCode::Ping, b""));
        bytes.extend(json_batch(&[(tick(0, 2), false), (tick(1, 7), false), (tick(0, 3), false)]));
        let (events, frames) = c.feed_counting(&bytes, poll);
        assert_eq!(
            events,
            [
                update(tick(1, 5), true, OK),
                update(tick(0, 1), true, OK),
                Event::Ping,
                update(tick(0, 2), false, OK),
                update(tick(1, 7), false, Verdict::Ok { conflated: true }),
                update(tick(0, 3), false, OK),
            ],
            "{poll:?}"
        );
        assert_eq!(frames, 2);
        assert_eq!(c.checker.violations.total(), 0);
        // A batch split at every byte boundary decodes the same.
        let mut c = Client::holding(Format::JsonBatch, &[0, 1]);
        let bytes = json_batch(&[(tick(0, 1), false), (tick(1, 1), false), (tick(0, 2), false)]);
        let mut events = Vec::new();
        for b in &bytes {
            events.extend(c.feed_with(std::slice::from_ref(b)));
        }
        assert_eq!(events.len(), 3, "{poll:?}");
        assert_eq!(c.checker.violations.total(), 0);
    }
    // Going backwards inside one batch is caught.
    let mut c = Client::holding(Format::JsonBatch, &[2]);
    let events = c.feed_with(&json_batch(&[(tick(2, 10), false), (tick(2, 9), false)]));
    assert_eq!(events.last(), Some(&update(tick(2, 9), false, Verdict::SeqBackwards)));
    assert_eq!(c.checker.violations.seq_backwards, 1);
}

#[test]
fn malformed_batches_are_counted_and_the_stream_goes_on() {
    let t = tick(0, 20);
    let mut one = Vec::new();
    encode_update(&mut one, &t, SYMBOLS[0], false);
    let bad: Vec<Vec<u8>> = vec![
        text(b"[]"),
        text(b"["),
        text(b"[1,2]"),
        text(b"[{\"type\":\"pong\",\"id\":1}]"),
        text(&[b"[".as_slice(), &one, b"x"].concat()),
        text(&[b"[".as_slice(), &one, b",]"].concat()),
    ];
    for (i, b) in bad.into_iter().enumerate() {
        let mut c = Client::holding(Format::JsonBatch, &[0]);
        let mut bytes = b;
        let next = tick(0, 21);
        bytes.extend(json_batch(&[(next, false)]));
        let events = c.feed_with(&bytes);
        assert_eq!(events.last(), Some(&update(next, false, OK)), "case {i}: the next batch still arrives");
        assert!(c.checker.violations.malformed >= 1, "case {i}: counted");
    }
}

#[test]
fn what_cannot_be_decoded_is_counted_and_skipped() {
    let mut c = Client::holding(Format::Json, &[0]);
    let mut unknown = Vec::new();
    encode_update(&mut unknown, &tick(0, 1), "NOPE", false);
    // (bytes, malformed, unsubscribed) — each followed by a good update, which must arrive.
    let cases: Vec<(Vec<u8>, u64, u64)> = vec![
        (text(b"{\"type\":\"update\",\"symbol\":\"AAPL\"}"), 1, 0),
        (text(b"not json"), 1, 0),
        (text(&unknown), 0, 1),
        (frame(OpCode::Binary, &[0; 87]), 1, 0),
        (vec![0x81 | 0x40, 0], 1, 0), // RSV1 set
        (text(b"{\"type\":\"status\",\"feed\":\"down\"}"), 0, 0),
    ];
    for (i, (bad, malformed, unsubscribed)) in cases.into_iter().enumerate() {
        let before = c.checker.violations;
        let mut bytes = bad;
        let t = tick(0, 10 + i as u64);
        bytes.extend(json_update(&t, false));
        assert_eq!(c.feed_with(&bytes), [update(t, false, OK)], "case {i}");
        assert_eq!(c.checker.violations.malformed - before.malformed, malformed, "case {i}");
        assert_eq!(c.checker.violations.unsubscribed - before.unsubscribed, unsubscribed, "case {i}");
    }
}

#[test]
fn seq_going_backwards_is_detected() {
    // (seqs of one symbol, live/snapshot, verdict of the last, seq_backwards, seq_repeated)
    let cases: [(&[u64], bool, Verdict, u64, u64); 4] = [
        (&[10, 9], false, Verdict::SeqBackwards, 1, 0),
        (&[10, 11, 3], false, Verdict::SeqBackwards, 1, 0),
        (&[10, 10], false, Verdict::SeqRepeated, 0, 1),
        (&[10, 10], true, OK, 0, 0), // a snapshot may repeat the seq it already delivered
    ];
    for (format, binary) in [(Format::Json, false), (Format::Binary, true)] {
        for (i, (seqs, snapshot, last, backwards, repeated)) in cases.iter().enumerate() {
            let mut c = Client::holding(format, &[2]);
            let ticks: Vec<(Tick, bool)> = seqs.iter().map(|&s| (tick(2, s), *snapshot)).collect();
            let bytes: Vec<u8> = if binary {
                binary_updates(&ticks)
            } else {
                ticks.iter().flat_map(|(t, s)| json_update(t, *s)).collect()
            };
            let events = c.feed_with(&bytes);
            assert_eq!(events.len(), seqs.len(), "{format:?} case {i}");
            assert_eq!(events.last(), Some(&update(ticks[seqs.len() - 1].0, *snapshot, *last)), "case {i}");
            assert_eq!(c.checker.violations.seq_backwards, *backwards, "{format:?} case {i}");
            assert_eq!(c.checker.violations.seq_repeated, *repeated, "{format:?} case {i}");
        }
    }
}

#[test]
fn server_close_codes_are_counted_and_echoed() {
    // (close payload, code reported, code echoed)
    let payload = |code: u16, reason: &str| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        p
    };
    let cases: Vec<(Vec<u8>, u16, u16)> = vec![
        (payload(1008, "slow consumer"), 1008, 1008),
        (payload(1001, "going away"), 1001, 1001),
        (payload(1013, ""), 1013, 1013),
        (payload(4000, "app"), 4000, 4000),
        (vec![], 1005, 1000),            // no status: never echoed as such
        (payload(1006, ""), 1006, 1000), // not valid on the wire
        (vec![0x03], 1002, 1002),        // one byte: a protocol error
    ];
    for (i, (close, code, echo)) in cases.into_iter().enumerate() {
        let mut c = Client::holding(Format::Json, &[0]);
        let mut bytes = frame(OpCode::Close, &close);
        // Nothing after a close frame is processed.
        bytes.extend(json_update(&tick(0, 1), false));
        assert_eq!(c.feed(&bytes), [Event::Closed { code, kind: CloseKind::Server }], "case {i}");
        assert!(c.session.is_closed());
        assert_eq!(c.checker.violations.unexpected_closes, 1, "case {i}");
        assert_eq!(c.checker.final_values(0), [(0, None)], "case {i}");
        match &c.sent()[..] {
            [Message::Close { code: got, reason }] => {
                assert_eq!((*got, reason.as_str()), (Some(echo), ""), "case {i}");
            }
            other => panic!("case {i}: {other:?}"),
        }
        // Later input changes nothing.
        c.session.on_eof(&mut c.checker);
        assert_eq!(c.session.poll_event(), None);
        assert!(c.feed(&json_update(&tick(0, 2), false)).is_empty());
    }
}

#[test]
fn how_a_session_ends() {
    let t0 = Instant::now();
    let closing = || {
        let mut c = Client::holding(Format::Json, &[0]);
        c.session.close(t0, 1000, "load test done");
        match &c.sent()[..] {
            [Message::Close { code, reason }] => {
                assert_eq!((*code, reason.as_str()), (Some(1000), "load test done"))
            }
            other => panic!("{other:?}"),
        }
        assert!(!c.session.is_open() && !c.session.is_closed());
        assert_eq!(c.subscribe(&[1]), None, "no request while closing");
        assert_eq!(c.session.poll_timeout(), Some(t0 + CLOSE_WAIT));
        c
    };
    let mut echo = Vec::new();
    write_close(&mut echo, 1000, "");
    // (the session, what happens to it, the event, unexpected closes)
    type Input = Box<dyn Fn(&mut Client) -> Vec<Event>>;
    let cases: Vec<(Client, Input, Event, u64)> = vec![
        (
            closing(),
            Box::new(move |c| c.feed(&echo)),
            Event::Closed { code: 1000, kind: CloseKind::Clean },
            0,
        ),
        (
            closing(),
            Box::new(|c| {
                c.session.on_eof(&mut c.checker);
                c.session.poll_event().into_iter().collect()
            }),
            Event::Closed { code: 1006, kind: CloseKind::Clean },
            0,
        ),
        (
            closing(),
            Box::new(move |c| {
                c.session.on_timeout(t0 + CLOSE_WAIT - Duration::from_millis(1));
                assert_eq!(c.session.poll_event(), None, "too early");
                c.session.on_timeout(t0 + CLOSE_WAIT);
                c.session.poll_event().into_iter().collect()
            }),
            Event::Closed { code: 1006, kind: CloseKind::TimedOut },
            0,
        ),
        (
            closing(),
            Box::new(|c| {
                c.session.on_error(&mut c.checker, "write failed");
                c.session.poll_event().into_iter().collect()
            }),
            Event::Closed { code: 1006, kind: CloseKind::DroppedWhileClosing },
            0,
        ),
        (
            Client::holding(Format::Json, &[0]),
            Box::new(|c| {
                c.session.on_eof(&mut c.checker);
                c.session.poll_event().into_iter().collect()
            }),
            Event::Closed { code: 1006, kind: CloseKind::Dropped },
            1,
        ),
        (
            Client::holding(Format::Json, &[0]),
            Box::new(|c| {
                c.session.on_error(&mut c.checker, "read failed");
                c.session.poll_event().into_iter().collect()
            }),
            Event::Closed { code: 1006, kind: CloseKind::Dropped },
            1,
        ),
        (
            Client::holding(Format::Json, &[0]),
            // A frame declaring 2^40 bytes: the stream cannot be followed.
            Box::new(|c| c.feed(&[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0])),
            Event::Closed { code: 1006, kind: CloseKind::Broken },
            0,
        ),
    ];
    for (i, (mut c, input, want, unexpected)) in cases.into_iter().enumerate() {
        assert_eq!(input(&mut c), [want], "case {i}");
        assert!(c.session.is_closed(), "case {i}");
        assert_eq!(c.session.poll_timeout(), None, "case {i}");
        assert_eq!(c.checker.violations.unexpected_closes, unexpected, "case {i}");
        assert!(c.written().is_empty(), "case {i}: nothing more to write");
    }
}

#[test]
fn a_ping_is_answered_with_a_pong() {
    let payloads: [&[u8]; 3] = [b"", b"hi", &[7u8; 125]];
    for payload in payloads {
        let mut c = Client::holding(Format::Binary, &[0]);
        assert_eq!(c.feed(&frame(OpCode::Ping, payload)), [Event::Ping]);
        assert_eq!(c.sent(), [Message::Pong(payload.to_vec())]);
    }
    // A pong from the server is ignored.
    let mut c = Client::holding(Format::Binary, &[0]);
    assert!(c.feed(&frame(OpCode::Pong, b"x")).is_empty());
    assert!(c.written().is_empty());
}

#[test]
fn a_stream_split_at_every_byte_boundary_decodes_the_same() {
    let mut stream = subscribed_reply(Some(1), &[0, 1]);
    stream.extend(json_update(&tick(0, 1), true));
    stream.extend(binary_updates(&[(tick(1, 1), true), (tick(1, 2), false), (tick(0, 4), false)]));
    stream.extend(frame(OpCode::Ping, b"ping"));
    stream.extend(json_update(&tick(1, 3), false));
    let start = || {
        let mut c = Client::open(Format::Json);
        c.subscribe(&[0, 1]);
        c.written();
        c
    };
    let whole = start().feed(&stream);
    assert_eq!(
        whole,
        [
            Event::Subscribed { id: Some(1), symbols: 2 },
            update(tick(0, 1), true, OK),
            update(tick(1, 1), true, OK),
            update(tick(1, 2), false, OK),
            update(tick(0, 4), false, Verdict::Ok { conflated: true }),
            Event::Ping,
            update(tick(1, 3), false, OK),
        ]
    );
    assert_eq!(start().feed_with(&stream), whole, "polled by reference");
    for cut in 1..stream.len() {
        for poll in [Poll::Owned, Poll::ByRef] {
            let mut c = start();
            let mut events = c.feed_counting(&stream[..cut], poll).0;
            events.extend(c.feed_counting(&stream[cut..], poll).0);
            assert_eq!(events, whole, "cut at {cut}, {poll:?}");
            assert_eq!(c.session.buffered(), 0, "cut at {cut}");
            assert_eq!(c.checker.violations.total(), 0, "cut at {cut}");
        }
    }
    let mut c = start();
    let events: Vec<Event> = stream.iter().flat_map(|b| c.feed(std::slice::from_ref(b))).collect();
    assert_eq!(events, whole, "byte by byte");
}

#[test]
fn a_frame_larger_than_the_read_buffer_grows_it() {
    let mut c = Client::holding(Format::Json, &[0]);
    let names: Vec<String> = (0..20_000).map(|i| format!("SYM{i}")).collect();
    let mut r = Vec::new();
    control::write_symbols(&mut r, None, names.iter().map(String::as_str));
    let bytes = text(&r);
    assert!(bytes.len() > 100_000);
    // Reads of at most 4096 bytes (the buffer's room) until the header is in, then one read
    // large enough for the rest of the frame.
    assert_eq!(c.feed(&bytes), [Event::Symbols(names)]);
    assert_eq!(c.session.buffered(), 0);
}

/// A book of `symbol` at `seq`: two bids, one ask.
fn levels(seq: u64) -> Levels {
    Levels {
        seq,
        stale: false,
        ts_event: 1_723_161_254_206_652_067,
        ts_gateway: 1_723_161_254_206_700_000 + seq,
        bids: vec![(6_183_763_000_000, 378_826_000), (6_183_762_000_000, 61_700_000)],
        asks: vec![(6_183_764_000_000, 120_000_000)],
    }
}

/// A JSON book object of `symbol` as the gateway writes it, at depth 2.
fn book_object(symbol: u32, book: &Levels) -> Vec<u8> {
    let mut j = Vec::new();
    tickgate::protocol::json::encode_book(&mut j, SYMBOLS[symbol as usize], 2, book);
    j
}

/// One record of a crafted binary frame.
enum Rec {
    /// An L1 update (or snapshot).
    L1(Tick, bool),
    /// A book of a symbol, at depth 2.
    Book(u32, Levels),
}

/// A binary frame holding `records`, in order.
fn binary_mixed(records: &[Rec]) -> Vec<u8> {
    let mut p = Vec::new();
    for r in records {
        match r {
            Rec::L1(t, snap) => encode_record(&mut p, t, *snap),
            Rec::Book(symbol, book) => tickgate::protocol::binary::encode_book(&mut p, *symbol, 2, book),
        }
    }
    assert_eq!(p.len() % 88, 0, "book records are padded to whole units");
    frame(OpCode::Binary, &p)
}

/// Feeds `bytes` and returns the events and the books counted by the read cursors.
fn feed_books(c: &mut Client, mut bytes: &[u8]) -> (Vec<Event>, u64) {
    let (mut events, mut books) = (Vec::new(), 0);
    loop {
        let spare = c.session.read_buf(&mut c.rb);
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        let cx = Ctx { checker: &mut c.checker, symbols: &c.symbols };
        let mut rx = c.session.on_bytes(&mut c.rb, n, cx);
        while let Some(e) = rx.poll_event() {
            events.push(e);
        }
        books += rx.books();
        drop(rx);
        if bytes.is_empty() {
            return (events, books);
        }
    }
}

#[test]
fn subscribe_carries_the_depth() {
    let mut c = Client::open(Format::Json);
    c.session.depth = 10;
    c.subscribe(&[0]);
    match &c.sent()[..] {
        [Message::Text(t)] => {
            let mut t = t.clone();
            assert!(matches!(control::parse(&mut t).unwrap(), ClientMsg::Subscribe { depth: 10, .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_binary_walker_steps_over_book_records() {
    let mut c = Client::holding(Format::Binary, &[0, 1]);
    c.session.depth = 2;
    c.checker.keep_books(true);
    let stale = Levels { stale: true, ..levels(8) };
    let bytes = binary_mixed(&[
        Rec::L1(tick(0, 1), true),
        Rec::Book(1, levels(7)),
        Rec::L1(tick(0, 2), false),
        Rec::Book(1, stale.clone()),
        Rec::Book(0, Levels { bids: vec![], asks: vec![], ..levels(3) }),
        Rec::L1(tick(1, 4), false),
    ]);
    let (events, books) = feed_books(&mut c, &bytes);
    assert_eq!(
        events,
        [update(tick(0, 1), true, OK), update(tick(0, 2), false, OK), update(tick(1, 4), false, OK)]
    );
    assert_eq!(books, 3);
    assert_eq!(c.checker.violations.total(), 0, "{:?}", c.checker.samples);
    assert_eq!((c.checker.books.books, c.checker.books.stale), (3, 1));
    assert_eq!(c.checker.final_books(0)[1], (1, Some(stale)));
    // Split at every byte boundary: the same.
    for cut in 1..bytes.len() {
        let mut c = Client::holding(Format::Binary, &[0, 1]);
        c.session.depth = 2;
        let (mut events, mut books) = feed_books(&mut c, &bytes[..cut]);
        let (more, more_books) = feed_books(&mut c, &bytes[cut..]);
        events.extend(more);
        books += more_books;
        assert_eq!((events.len(), books), (3, 3), "cut at {cut}");
        assert_eq!(c.checker.violations.total(), 0, "cut at {cut}");
    }
}

#[test]
fn a_book_record_of_impossible_length_ends_its_frame() {
    let good = binary_mixed(&[Rec::Book(1, levels(7)), Rec::L1(tick(0, 1), false)]);
    let header = good.len() - 2 * 88 - 88; // the frame header's length
    // (Three units would be legal: the whole payload, the L1 record read as the book's
    // padding. Four run past the frame.)
    for units in [0u16, 4, u16::MAX] {
        let mut c = Client::holding(Format::Binary, &[0, 1]);
        c.session.depth = 2;
        let mut bytes = good.clone();
        bytes[header + 2..header + 4].copy_from_slice(&units.to_le_bytes());
        // The next frame is read as usual.
        bytes.extend(binary_updates(&[(tick(0, 2), false)]));
        let (events, books) = feed_books(&mut c, &bytes);
        assert_eq!(
            events,
            [update(tick(0, 2), false, OK)],
            "units {units}: the rest of the frame is dropped"
        );
        assert_eq!((books, c.checker.violations.malformed), (0, 1), "units {units}");
    }
    // A book record that says it holds more levels than its units: malformed, the walk goes on.
    let mut c = Client::holding(Format::Binary, &[0, 1]);
    c.session.depth = 2;
    let mut bytes = good.clone();
    bytes[header + 16..header + 18].copy_from_slice(&40u16.to_le_bytes());
    let (events, books) = feed_books(&mut c, &bytes);
    assert_eq!(events, [update(tick(0, 1), false, OK)]);
    assert_eq!((books, c.checker.violations.malformed), (0, 1));
}

#[test]
fn json_books_in_frames_and_batches_are_checked() {
    // A book text frame, then a batch holding an update and a book, then an out-of-order book
    // and a crossed one.
    let crossed = Levels { asks: vec![(6_183_763_000_000, 1)], ..levels(9) };
    for format in [Format::Json, Format::JsonBatch] {
        let mut c = Client::holding(format, &[0, 1]);
        c.session.depth = 2;
        let mut bytes = text(&book_object(1, &levels(5)));
        let (mut body, mut batch) = (Vec::new(), Vec::new());
        let mut u = Vec::new();
        encode_update(&mut u, &tick(0, 1), SYMBOLS[0], true);
        tickgate::protocol::json::batch_append(&mut body, &u);
        tickgate::protocol::json::batch_append(&mut body, &book_object(0, &levels(2)));
        tickgate::protocol::json::batch_finish(&mut batch, &mut body);
        bytes.extend(batch);
        bytes.extend(text(&book_object(1, &levels(5))));
        bytes.extend(text(&book_object(1, &crossed)));
        // A book of a symbol not held.
        bytes.extend(text(&book_object(3, &levels(1))));
        let (events, books) = feed_books(&mut c, &bytes);
        assert_eq!(events, [update(tick(0, 1), true, OK)], "{format:?}");
        assert_eq!(books, 5, "{format:?}");
        let v = c.checker.violations;
        assert_eq!((v.book_order, v.book_invalid, v.unsubscribed), (1, 1, 1), "{format:?}");
        assert_eq!(v.total(), 3, "{format:?}: {:?}", c.checker.samples);
        // A malformed book is counted as such.
        let bad = String::from_utf8(book_object(1, &levels(10))).unwrap().replace("61837.63", "6.183763e4");
        let (_, books) = feed_books(&mut c, &text(bad.as_bytes()));
        assert_eq!((books, c.checker.violations.malformed), (0, 1), "{format:?}");
    }
}
