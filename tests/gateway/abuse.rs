//! Abuse: malformed messages and frames, floods, slow handshakes and connection floods. Every
//! case asserts the exact reply (`error` code, id echoed where valid) or close code of
//! docs/PROTOCOL.md, while a well-behaved client on the same gateway keeps receiving updates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// What one abuse case sends.
enum Input {
    /// One text message, on the shared well-formed WebSocket connection (control errors never
    /// close it).
    Json(String),
    /// Raw bytes after the handshake, on a fresh connection of its own.
    Frames(Vec<u8>),
    /// This many pings in one write, on a fresh connection (the message-rate limit).
    Flood(usize),
}

/// What the gateway must answer.
#[derive(Debug)]
enum Expect {
    /// `{"type":"error","code":<code>}`, with `"id":<id>` exactly when `Some`.
    Error(&'static str, Option<i64>),
    /// A reply of this type (not an error), with this id.
    Reply(&'static str, Option<i64>),
    /// A close frame with this code.
    Close(u16),
    /// Some replies are `rate_limited` errors (not executed), the rest pongs; the connection
    /// stays up.
    RateLimited,
}

use Expect::*;

// --- Raw frames -----------------------------------------------------------------------------

const MASK: [u8; 4] = [0x5a, 0xa5, 0x3c, 0xc3];

/// A masked client frame whose first byte is `first` (FIN, RSV, opcode), any length.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(first, true, payload.len() as u64);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// An unmasked client frame (forbidden).
fn unmasked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(first, false, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

/// A frame header announcing `len` payload bytes (shortest length form), with the mask key.
fn header(first: u8, mask: bool, len: u64) -> Vec<u8> {
    let m = if mask { 0x80 } else { 0 };
    let mut f = vec![first];
    if len < 126 {
        f.push(m | len as u8);
    } else if len <= 0xffff {
        f.push(m | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    if mask {
        f.extend_from_slice(&MASK);
    }
    f
}

/// A text frame, FIN set.
fn text(payload: &[u8]) -> Vec<u8> {
    frame(0x81, payload)
}

/// A close frame with `code` and `reason` bytes.
fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    frame(0x88, &p)
}

/// Reads server frames until a close frame; returns its code and reason. Every read is
/// bounded; `Err` says what happened instead.
async fn read_close(s: &mut TcpStream) -> Result<(u16, String), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut h = [0u8; 2];
        read_exact_by(s, &mut h, deadline).await?;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            read_exact_by(s, &mut b, deadline).await?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            read_exact_by(s, &mut b, deadline).await?;
            len = u64::from_be_bytes(b);
        }
        let mut p = vec![0u8; len as usize];
        read_exact_by(s, &mut p, deadline).await?;
        if h[0] & 0x0f == 8 {
            return match p.len() {
                0 => Ok((1005, String::new())),
                1 => Err(format!("1-byte close payload {p:?}")),
                _ => Ok((u16::from_be_bytes([p[0], p[1]]), String::from_utf8_lossy(&p[2..]).into_owned())),
            };
        }
    }
}

async fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    match tokio::time::timeout_at(deadline, s.read_exact(buf)).await {
        Err(_) => Err(format!("no close frame within {WAIT:?}")),
        Ok(Err(e)) => Err(format!("connection ended without a close frame: {e}")),
        Ok(Ok(_)) => Ok(()),
    }
}

// --- The bystander --------------------------------------------------------------------------

/// A well-behaved client subscribed to the hottest symbol; after each abuse case it must get
/// an update newer than anything it had received before.
struct Bystander {
    c: Client,
    seq: u64,
    fresh: usize,
}

impl Bystander {
    async fn new(addr: SocketAddr, symbol: &str) -> Bystander {
        let mut c = Client::connect(addr, "").await;
        c.subscribe(&[symbol], "").await;
        Bystander { c, seq: 0, fresh: 0 }
    }

    fn note(&mut self, f: Option<Option<Frame>>, after: &str) -> bool {
        match f {
            None => false,
            Some(Some(Frame::Json(v))) => {
                let u = json_update(&v).unwrap_or_else(|| panic!("bystander got {v} (after {after})"));
                assert!(u.tick.seq >= self.seq, "bystander seq went back (after {after})");
                self.seq = u.tick.seq;
                true
            }
            Some(other) => panic!("bystander got {other:?} after {after}"),
        }
    }

    /// Drains what is buffered, then waits (at most 3 s) for an update with a higher seq.
    async fn fresh(&mut self, after: &str) {
        for _ in 0..100_000 {
            let f = self.c.next_within(Duration::ZERO).await;
            if !self.note(f, after) {
                break;
            }
        }
        let before = self.seq;
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.seq <= before {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = self.c.next_within(left).await;
            assert!(self.note(f, after), "the bystander got no fresh update after {after} (seq {before})");
        }
        self.fresh += 1;
    }
}

// --- 1. The table ---------------------------------------------------------------------------

/// `{"op":"subscribe","symbols":[...],"id":<id>}` with these names.
fn subscribe_json(names: impl IntoIterator<Item = String>, id: i64) -> String {
    let list = names.into_iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(",");
    format!(r#"{{"op":"subscribe","symbols":[{list}],"id":{id}}}"#)
}

fn json(s: &str) -> Input {
    Input::Json(s.to_string())
}

/// Runs one case; returns an error describing a mismatch.
async fn run_case(addr: SocketAddr, shared: &mut Client, input: &Input, want: &Expect) -> Result<(), String> {
    match (input, want) {
        (Input::Json(msg), Error(..) | Reply(..)) => {
            shared.send(msg).await;
            let v = match shared.next_within(WAIT).await {
                Some(Some(Frame::Json(v))) => v,
                other => return Err(format!("expected a JSON reply, got {other:?}")),
            };
            let (ty, code, id) = match want {
                Error(code, id) => ("error", Some(*code), id),
                Reply(ty, id) => (*ty, None, id),
                _ => unreachable!(),
            };
            let short = |v: &serde_json::Value| {
                let s = v.to_string();
                if s.len() > 300 { format!("{}... ({} bytes)", &s[..300], s.len()) } else { s }
            };
            if v["type"] != ty || code.is_some_and(|c| v["code"] != c) {
                return Err(format!("want type {ty} code {code:?}, got {}", short(&v)));
            }
            match id {
                Some(id) if v["id"] != *id => return Err(format!("want id {id}, got {}", short(&v))),
                None if v.get("id").is_some() => return Err(format!("want no id, got {}", short(&v))),
                _ => {}
            }
            if code.is_some() && v["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("error without a message: {}", short(&v)));
            }
            Ok(())
        }
        (Input::Frames(bytes), Close(code)) => {
            let mut s = raw_ws(addr).await;
            // The server may close before it has read everything (1009 is decided from the
            // header): a failed write is fine, the close frame is what counts.
            let _ = s.write_all(bytes).await;
            let (got, reason) = read_close(&mut s).await?;
            if got != *code {
                return Err(format!("want close {code}, got {got} {reason:?}"));
            }
            Ok(())
        }
        (Input::Flood(n), RateLimited) => {
            let mut c = Client::connect(addr, "").await;
            for i in 0..*n {
                c.ws.feed(Message::text(format!(r#"{{"op":"ping","id":{i}}}"#)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            c.ws.flush().await.map_err(|e| e.to_string())?;
            let mut seen = vec![0u8; *n];
            let (mut pongs, mut limited) = (0, 0);
            for _ in 0..*n {
                let v = match c.next_within(WAIT).await {
                    Some(Some(Frame::Json(v))) => v,
                    other => return Err(format!("after {} replies: {other:?}", pongs + limited)),
                };
                let id = v["id"].as_u64().ok_or_else(|| format!("reply without id: {v}"))? as usize;
                seen[id] += 1;
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("pong"), _) => pongs += 1,
                    (Some("error"), Some("rate_limited")) => limited += 1,
                    _ => return Err(format!("unexpected {v}")),
                }
            }
            if seen.iter().any(|&k| k != 1) {
                return Err("each ping must get exactly one reply (pong or rate_limited)".into());
            }
            if limited == 0 || pongs == 0 {
                return Err(format!("{pongs} pongs, {limited} rate_limited"));
            }
            // Not closed: after a moment the bucket has tokens again.
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.send(r#"{"op":"ping","id":-1}"#).await;
            match c.next_within(WAIT).await {
                Some(Some(Frame::Json(v))) if v["type"] == "pong" && v["id"] == -1 => Ok(()),
                other => Err(format!("connection unusable after the flood: {other:?}")),
            }
        }
        _ => Err("bad case: input and expectation do not go together".into()),
    }
}

#[tokio::test]
async fn malformed_messages_and_frames_get_their_exact_error_or_close_code() {
    const MAX_SYMBOLS: usize = 5;
    const MSGS_PER_SEC: usize = 1000;
    let gw = start(&[
        ("feed.rate", "2000"),
        ("server.max_symbols_per_client", "5"),
        ("server.max_client_msgs_per_sec", "1000"),
        ("server.max_message_bytes", "65536"),
    ]);
    let addr = gw.local_addr();
    let u = &gw.app().universe;
    let hot = u.name(0).to_string();
    let all: Vec<String> = (0..u.len() as u32).map(|i| u.name(i).to_string()).collect();
    let mut by = Bystander::new(addr, &hot).await;
    let mut shared = Client::connect(addr, "").await;

    let big = "X".repeat(10 * 1024);
    // Every known symbol, repeated up to ~4,000 entries (under 64 KiB): far over the limit.
    let huge_known = subscribe_json(all.iter().cycle().take(4000.max(all.len())).cloned(), 30);
    assert!(huge_known.len() < 65536, "{} bytes", huge_known.len());
    // 6,000 distinct unknown names (~54 KB).
    let huge_unknown = subscribe_json((0..6000).map(|i| format!("Q{i:05}")), 31);
    let open_brackets = "[".repeat(10_000);
    let mismatched = format!("{}{}", "[".repeat(10_000), "}".repeat(10_000));
    let over = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(70_000));
    let fragment = vec![b'a'; 30_000];

    let cases: Vec<(&str, Input, Expect)> = vec![
        // Wrong JSON shapes.
        ("not JSON", json("hello"), Error("bad_request", None)),
        ("empty text", json(""), Error("bad_request", None)),
        ("array", json(r#"[{"op":"ping","id":1}]"#), Error("bad_request", None)),
        ("string", json(r#""subscribe""#), Error("bad_request", None)),
        ("number", json("42"), Error("bad_request", None)),
        ("null", json("null"), Error("bad_request", None)),
        ("boolean", json("true"), Error("bad_request", None)),
        ("two objects", json(r#"{"op":"ping","id":1}{"op":"ping","id":2}"#), Error("bad_request", None)),
        ("trailing comma", json(r#"{"op":"ping","id":1,}"#), Error("bad_request", None)),
        ("byte order mark", json("\u{feff}{\"op\":\"ping\",\"id\":1}"), Error("bad_request", None)),
        // op.
        ("op missing", json(r#"{"id":1}"#), Error("bad_request", Some(1))),
        ("op missing, empty object", json("{}"), Error("bad_request", None)),
        ("op number", json(r#"{"op":5,"id":2}"#), Error("bad_request", Some(2))),
        ("op null", json(r#"{"op":null,"id":3}"#), Error("bad_request", Some(3))),
        ("op array", json(r#"{"op":["ping"],"id":4}"#), Error("bad_request", Some(4))),
        ("op nested object", json(r#"{"op":{"op":"ping"},"id":5}"#), Error("bad_request", Some(5))),
        ("op unknown", json(r#"{"op":"dance","id":6}"#), Error("unknown_op", Some(6))),
        ("op wrong case", json(r#"{"op":"Ping","id":7}"#), Error("unknown_op", Some(7))),
        ("op empty", json(r#"{"op":"","id":8}"#), Error("unknown_op", Some(8))),
        ("op 10 KB", Input::Json(format!(r#"{{"op":"{big}","id":9}}"#)), Error("unknown_op", Some(9))),
        // symbols.
        ("symbols missing", json(r#"{"op":"subscribe","id":10}"#), Error("bad_request", Some(10))),
        (
            "symbols missing (unsubscribe)",
            json(r#"{"op":"unsubscribe","id":11}"#),
            Error("bad_request", Some(11)),
        ),
        ("symbols empty", json(r#"{"op":"subscribe","symbols":[],"id":12}"#), Error("bad_request", Some(12))),
        (
            "symbols string",
            json(r#"{"op":"subscribe","symbols":"AAPL","id":13}"#),
            Error("bad_request", Some(13)),
        ),
        (
            "symbols null",
            json(r#"{"op":"subscribe","symbols":null,"id":14}"#),
            Error("bad_request", Some(14)),
        ),
        (
            "symbols object",
            json(r#"{"op":"subscribe","symbols":{"0":"AAPL"},"id":15}"#),
            Error("bad_request", Some(15)),
        ),
        (
            "symbols numbers",
            json(r#"{"op":"subscribe","symbols":[1,2],"id":16}"#),
            Error("bad_request", Some(16)),
        ),
        (
            "symbols with a null",
            json(r#"{"op":"subscribe","symbols":["AAPL",null],"id":17}"#),
            Error("bad_request", Some(17)),
        ),
        (
            "symbols nested array",
            json(r#"{"op":"subscribe","symbols":[["AAPL"]],"id":18}"#),
            Error("bad_request", Some(18)),
        ),
        (
            "symbols with an object",
            json(r#"{"op":"unsubscribe","symbols":[{"s":"AAPL"}],"id":19}"#),
            Error("bad_request", Some(19)),
        ),
        (
            "huge array over max_symbols_per_client",
            Input::Json(huge_known),
            Error("too_many_symbols", Some(30)),
        ),
        ("huge array of unknown symbols", Input::Json(huge_unknown), Error("unknown_symbol", Some(31))),
        ("10 KB symbol", Input::Json(subscribe_json([big.clone()], 32)), Error("unknown_symbol", Some(32))),
        (
            "10 KB symbol (unsubscribe)",
            Input::Json(format!(r#"{{"op":"unsubscribe","symbols":["{big}"],"id":33}}"#)),
            Error("unknown_symbol", Some(33)),
        ),
        // Deep nesting that is not valid JSON (valid deep nesting: see
        // `deeply_nested_json_does_not_crash_the_gateway`).
        ("10,000 unclosed [", Input::Json(open_brackets), Error("bad_request", None)),
        ("10,000 [ closed by }", Input::Json(mismatched), Error("bad_request", None)),
        // id.
        ("id float", json(r#"{"op":"ping","id":1.5}"#), Error("bad_request", None)),
        ("id integral float", json(r#"{"op":"ping","id":4.0}"#), Error("bad_request", None)),
        ("id exponent", json(r#"{"op":"ping","id":1e2}"#), Error("bad_request", None)),
        ("id string", json(r#"{"op":"ping","id":"7"}"#), Error("bad_request", None)),
        ("id null", json(r#"{"op":"ping","id":null}"#), Error("bad_request", None)),
        ("id boolean", json(r#"{"op":"ping","id":true}"#), Error("bad_request", None)),
        ("id nested object", json(r#"{"op":"ping","id":{"id":1}}"#), Error("bad_request", None)),
        (
            "id i64::MIN is valid",
            json(r#"{"op":"nope","id":-9223372036854775808}"#),
            Error("unknown_op", Some(i64::MIN)),
        ),
        ("id below i64::MIN", json(r#"{"op":"ping","id":-9223372036854775809}"#), Error("bad_request", None)),
        ("id above i64::MAX", json(r#"{"op":"ping","id":9223372036854775808}"#), Error("bad_request", None)),
        (
            "id far above i64::MAX",
            json(r#"{"op":"ping","id":123456789012345678901234567890}"#),
            Error("bad_request", None),
        ),
        // max_rate (on an unknown symbol: unknown_symbol means the request was valid).
        (
            "max_rate negative",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":-1,"id":40}"#),
            Error("bad_request", Some(40)),
        ),
        (
            "max_rate tiny negative",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":-0.001,"id":41}"#),
            Error("bad_request", Some(41)),
        ),
        (
            "max_rate 0 = no limit",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":0,"id":42}"#),
            Error("unknown_symbol", Some(42)),
        ),
        (
            "max_rate null = no limit",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":null,"id":43}"#),
            Error("unknown_symbol", Some(43)),
        ),
        (
            "max_rate 1000",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":1000,"id":44}"#),
            Error("unknown_symbol", Some(44)),
        ),
        (
            "max_rate 0.001",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":0.001,"id":45}"#),
            Error("unknown_symbol", Some(45)),
        ),
        (
            "max_rate over 1000",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":1000.5,"id":46}"#),
            Error("bad_request", Some(46)),
        ),
        (
            "max_rate huge",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":1e300,"id":47}"#),
            Error("bad_request", Some(47)),
        ),
        (
            "max_rate string",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":"4","id":48}"#),
            Error("bad_request", Some(48)),
        ),
        (
            "max_rate \"NaN\"",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":"NaN","id":49}"#),
            Error("bad_request", Some(49)),
        ),
        (
            "max_rate boolean",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":true,"id":50}"#),
            Error("bad_request", Some(50)),
        ),
        (
            "max_rate object",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":{},"id":51}"#),
            Error("bad_request", Some(51)),
        ),
        // Not JSON at all, so the id cannot be trusted.
        (
            "max_rate NaN",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":NaN,"id":52}"#),
            Error("bad_request", None),
        ),
        (
            "max_rate Infinity",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":Infinity,"id":53}"#),
            Error("bad_request", None),
        ),
        (
            "max_rate 1e400",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":1e400,"id":54}"#),
            Error("bad_request", None),
        ),
        // Duplicated keys.
        ("op twice", json(r#"{"op":"ping","op":"list","id":60}"#), Error("bad_request", Some(60))),
        ("id twice", json(r#"{"op":"ping","id":61,"id":61}"#), Error("bad_request", None)),
        (
            "symbols twice",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"symbols":["NOPE"],"id":62}"#),
            Error("bad_request", Some(62)),
        ),
        (
            "max_rate twice",
            json(r#"{"op":"subscribe","symbols":["NOPE"],"max_rate":1,"max_rate":1,"id":63}"#),
            Error("bad_request", Some(63)),
        ),
        (
            "unknown field twice is ignored",
            json(r#"{"op":"ping","x":1,"x":2,"id":64}"#),
            Reply("pong", Some(64)),
        ),
        // Frames.
        ("invalid UTF-8 text", Input::Frames(text(&[b'{', 0xff, 0xfe, b'}'])), Close(1007)),
        ("surrogate in UTF-8 text", Input::Frames(text(&[0xed, 0xa0, 0x80])), Close(1007)),
        (
            "invalid UTF-8 across fragments",
            Input::Frames([frame(0x01, b"ok"), frame(0x80, &[0xc3])].concat()),
            Close(1007),
        ),
        ("binary frame", Input::Frames(frame(0x82, br#"{"op":"ping"}"#)), Close(1003)),
        ("empty binary frame", Input::Frames(frame(0x82, b"")), Close(1003)),
        ("message over max_message_bytes", Input::Frames(text(over.as_bytes())), Close(1009)),
        (
            "fragments over max_message_bytes",
            Input::Frames([frame(0x01, &fragment), frame(0x00, &fragment), frame(0x80, &fragment)].concat()),
            Close(1009),
        ),
        ("1 GiB length, header only", Input::Frames(header(0x81, true, 1 << 30)), Close(1009)),
        ("length with the top bit set", Input::Frames(header(0x81, true, 1 << 63)), Close(1002)),
        ("RSV1", Input::Frames(frame(0x81 | 0x40, b"{}")), Close(1002)),
        ("RSV2", Input::Frames(frame(0x81 | 0x20, b"{}")), Close(1002)),
        ("RSV3", Input::Frames(frame(0x81 | 0x10, b"{}")), Close(1002)),
        ("RSV on a ping", Input::Frames(frame(0x89 | 0x40, b"")), Close(1002)),
        ("reserved opcode 3", Input::Frames(frame(0x83, b"x")), Close(1002)),
        ("reserved opcode 4", Input::Frames(frame(0x84, b"x")), Close(1002)),
        ("reserved opcode 5", Input::Frames(frame(0x85, b"x")), Close(1002)),
        ("reserved opcode 6", Input::Frames(frame(0x86, b"x")), Close(1002)),
        ("reserved opcode 7", Input::Frames(frame(0x87, b"x")), Close(1002)),
        ("reserved opcode 0xB", Input::Frames(frame(0x8b, b"x")), Close(1002)),
        ("reserved opcode 0xC", Input::Frames(frame(0x8c, b"x")), Close(1002)),
        ("reserved opcode 0xD", Input::Frames(frame(0x8d, b"x")), Close(1002)),
        ("reserved opcode 0xE", Input::Frames(frame(0x8e, b"x")), Close(1002)),
        ("reserved opcode 0xF", Input::Frames(frame(0x8f, b"x")), Close(1002)),
        ("unmasked text", Input::Frames(unmasked(0x81, br#"{"op":"ping"}"#)), Close(1002)),
        ("unmasked close", Input::Frames(unmasked(0x88, &1000u16.to_be_bytes())), Close(1002)),
        ("ping of 126 bytes", Input::Frames(frame(0x89, &[b'p'; 126])), Close(1002)),
        ("close of 126 bytes", Input::Frames(close(1000, &[b'r'; 124])), Close(1002)),
        ("fragmented ping", Input::Frames(frame(0x09, b"x")), Close(1002)),
        ("fragmented close", Input::Frames(frame(0x08, &1000u16.to_be_bytes())), Close(1002)),
        ("continuation without start", Input::Frames(frame(0x80, b"x")), Close(1002)),
        (
            "continuation after a complete message",
            Input::Frames([text(br#"{"op":"ping"}"#), frame(0x80, b"x")].concat()),
            Close(1002),
        ),
        (
            "text inside a fragmented text",
            Input::Frames([frame(0x01, b"{"), text(b"{}")].concat()),
            Close(1002),
        ),
        (
            "binary inside a fragmented text",
            Input::Frames([frame(0x01, b"{"), frame(0x02, b"x")].concat()),
            Close(1002),
        ),
        ("close code 0", Input::Frames(close(0, b"")), Close(1002)),
        ("close code 999", Input::Frames(close(999, b"")), Close(1002)),
        ("close code 1004", Input::Frames(close(1004, b"")), Close(1002)),
        ("close code 1005", Input::Frames(close(1005, b"")), Close(1002)),
        ("close code 1006", Input::Frames(close(1006, b"")), Close(1002)),
        ("close code 1015", Input::Frames(close(1015, b"")), Close(1002)),
        ("close code 1016", Input::Frames(close(1016, b"")), Close(1002)),
        ("close code 2999", Input::Frames(close(2999, b"")), Close(1002)),
        ("close code 5000", Input::Frames(close(5000, b"")), Close(1002)),
        ("close code 65535", Input::Frames(close(65535, b"")), Close(1002)),
        ("close code 3000 is echoed", Input::Frames(close(3000, b"bye")), Close(3000)),
        ("close code 4999 is echoed", Input::Frames(close(4999, b"")), Close(4999)),
        ("close code 1001 is echoed", Input::Frames(close(1001, b"")), Close(1001)),
        ("empty close is answered 1000", Input::Frames(frame(0x88, b"")), Close(1000)),
        ("close payload of 1 byte", Input::Frames(frame(0x88, &[0x03])), Close(1002)),
        ("close reason not UTF-8", Input::Frames(close(1000, &[b'o', b'k', 0xff])), Close(1007)),
        // Flood: more messages than max_client_msgs_per_sec in one burst.
        ("message flood", Input::Flood(MSGS_PER_SEC + 100), RateLimited),
    ];
    assert!(cases.len() >= 30);

    let started = Instant::now();
    let mut failures = Vec::new();
    for (name, input, want) in &cases {
        let t = Instant::now();
        if let Err(e) = run_case(addr, &mut shared, input, want).await {
            failures.push(format!("{name}: {e}"));
        }
        let took = t.elapsed();
        if took > Duration::from_millis(250) {
            eprintln!("abuse case {name:?} took {took:?}");
        }
        by.fresh(name).await;
    }
    eprintln!("{} abuse cases in {:?}", cases.len(), started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(by.fresh, cases.len());

    // The shared connection survived every error, and holds no symbol: neither the huge
    // request (too_many_symbols subscribes nothing) nor any other case subscribed one, so it
    // can still take exactly MAX_SYMBOLS, including ones from the refused request.
    let first: Vec<&str> = all.iter().take(MAX_SYMBOLS).map(String::as_str).collect();
    let ids = shared.subscribe(&first, "").await;
    assert_eq!(ids.len(), MAX_SYMBOLS);
    let mut got = 0;
    collect(&mut shared, &Default::default(), Duration::from_millis(300), |u| {
        assert!(first.contains(&u.symbol.as_str()), "update of {} never subscribed", u.symbol);
        got += 1;
    })
    .await;
    assert!(got > 0);
    let st = stats(addr).await;
    assert!(st["shards"][0]["closes"]["1002"].as_u64().unwrap() >= 30, "{st}");
    by.fresh("everything").await;
    gw.shutdown();
}

/// Set in the child process that runs [`deep_nesting_child`].
const CHILD_ENV: &str = "TICKGATE_ABUSE_NESTING_CHILD";

/// Valid JSON nested 5,000 to 32,000 levels deep (up to 64 KB, within max_message_bytes).
/// The protocol says: a message nesting arrays/objects more than 16 levels deep is refused
/// with `bad_request` (no id: it is refused before parsing), wherever the nesting is, even
/// in an unknown field. A parser that recurses per level overflows
/// the shard thread's stack, and a stack overflow aborts the whole process, so this runs in
/// a child process (this test binary, filtered to [`deep_nesting_child`]): a crash fails this
/// test instead of killing every other test of the binary.
#[test]
fn deeply_nested_json_does_not_crash_the_gateway() {
    let exe = std::env::current_exe().unwrap();
    // Output goes to files, not pipes: nothing can block on a full pipe.
    let dir = std::env::temp_dir();
    let tag = format!("tickgate-abuse-{}", std::process::id());
    let (out_path, err_path) = (dir.join(format!("{tag}.out")), dir.join(format!("{tag}.err")));
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "abuse::deep_nesting_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    assert!(
        status.success(),
        "the gateway process died or the child test failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "the child did not run the test:\n{stdout}\n{stderr}");
}

/// The body of [`deeply_nested_json_does_not_crash_the_gateway`]; does nothing unless run
/// as its child.
#[tokio::test]
async fn deep_nesting_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let gw = start(&[("feed.rate", "2000"), ("server.max_message_bytes", "65536")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut by = Bystander::new(addr, &hot).await;
    let mut shared = Client::connect(addr, "").await;
    let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let cases: Vec<(&str, Input, Expect)> = vec![
        ("1,000 nested arrays", Input::Json(arrays(1_000)), Error("bad_request", None)),
        ("10,000 nested arrays", Input::Json(arrays(10_000)), Error("bad_request", None)),
        ("32,000 nested arrays (64 KB)", Input::Json(arrays(32_000)), Error("bad_request", None)),
        (
            "5,000 nested objects",
            Input::Json(format!("{}1{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000))),
            Error("bad_request", None),
        ),
        (
            "10,000 nested arrays in an unknown field",
            Input::Json(format!(r#"{{"op":"ping","id":42,"x":{}}}"#, arrays(10_000))),
            Error("bad_request", None),
        ),
        (
            "10,000 nested arrays as a symbol",
            Input::Json(format!(r#"{{"op":"subscribe","id":43,"symbols":[{}]}}"#, arrays(10_000))),
            Error("bad_request", None),
        ),
    ];
    let mut failures = Vec::new();
    for (name, input, want) in &cases {
        eprintln!("nesting case: {name}");
        if let Err(e) = run_case(addr, &mut shared, input, want).await {
            failures.push(format!("{name}: {e}"));
        }
        by.fresh(name).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    gw.shutdown();
}

/// The most distinct unknown names (3 lowercase letters or digits, never a listed symbol)
/// that fit one subscribe under 64 KiB: about 10,800.
fn max_unknown_subscribe(id: i64) -> String {
    let chars: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    let mut names = Vec::new();
    'all: for a in &chars {
        for b in &chars {
            for c in &chars {
                if names.len() * 6 > 65_000 {
                    break 'all;
                }
                names.push(format!("{a}{b}{c}"));
            }
        }
    }
    let msg = subscribe_json(names, id);
    assert!(msg.len() < 65_536, "{}", msg.len());
    msg
}

/// A burst of the most expensive valid requests (maximal subscribes of distinct unknown
/// names, well within the message-rate budget) must not stall the shard for its other
/// clients: the bystander sees no gap of a second in its updates.
#[tokio::test]
async fn expensive_requests_do_not_starve_other_clients() {
    const BURST: usize = 8;
    let gw = start(&[("feed.rate", "2000"), ("server.max_message_bytes", "65536")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut by = Bystander::new(addr, &hot).await;
    by.fresh("connecting").await;
    let mut attacker = Client::connect(addr, "").await;
    for i in 0..BURST {
        attacker.ws.feed(Message::text(max_unknown_subscribe(i as i64))).await.unwrap();
    }
    attacker.ws.flush().await.unwrap();
    let sent = Instant::now();
    let mut last = sent;
    let mut worst = Duration::ZERO;
    collect(&mut by.c, &Default::default(), Duration::from_millis(1500), |_| {
        let now = Instant::now();
        worst = worst.max(now - last);
        last = now;
    })
    .await;
    worst = worst.max(last.elapsed().saturating_sub(Duration::from_millis(100)));
    assert!(
        worst < Duration::from_secs(1),
        "the bystander got no update for {worst:?} while the shard handled {BURST} maximal \
         subscribes of unknown names"
    );
    // Every request was answered (each names every one of its symbols as unknown).
    for i in 0..BURST {
        let v = attacker.json().await;
        assert_eq!((v["code"].as_str(), v["id"].as_i64()), (Some("unknown_symbol"), Some(i as i64)));
    }
    gw.shutdown();
}

// --- 2. Slowloris ---------------------------------------------------------------------------

/// Sends an endless HTTP request head one byte every 500 ms; returns how long the gateway
/// took to drop the connection, or `None` if it did not within `limit`.
async fn slowloris(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    let mut bytes = head.bytes().chain(b"X-Slow: 1\r\n".iter().copied().cycle());
    let mut sink = [0u8; 1024];
    while start.elapsed() < limit {
        let b = bytes.next().unwrap();
        if s.write_all(&[b]).await.is_err() {
            return Some(start.elapsed());
        }
        let next = Instant::now() + Duration::from_millis(500);
        // Read whatever the gateway says (e.g. a 408) until the 500 ms tick or EOF.
        loop {
            match tokio::time::timeout_at(next, s.read(&mut sink)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }
    None
}

/// Opens a TCP connection that sends nothing; returns when the gateway closed it.
async fn silent(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(start + limit, s.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn slowloris_handshakes_are_dropped_after_the_handshake_timeout() {
    let gw = start(&[("feed.rate", "2000"), ("server.handshake_timeout", "1s")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut by = Bystander::new(addr, &hot).await;
    let limit = Duration::from_secs(4);
    let mut attack = Vec::new();
    for _ in 0..16 {
        attack.push(tokio::spawn(slowloris(addr, limit)));
    }
    for _ in 0..4 {
        attack.push(tokio::spawn(silent(addr, limit)));
    }
    // During the attack a normal client connects, subscribes and receives updates.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut newcomer = Client::connect(addr, "").await;
    newcomer.subscribe(&[&hot], "").await;
    let mut n = 0;
    collect(&mut newcomer, &Default::default(), Duration::from_millis(300), |_| n += 1).await;
    assert!(n > 0, "a client connecting during the attack got no updates");
    by.fresh("the attack started").await;
    for (i, a) in attack.into_iter().enumerate() {
        let took = a.await.unwrap();
        let took = took.unwrap_or_else(|| panic!("attacker {i} was not dropped within {limit:?}"));
        assert!(
            took >= Duration::from_millis(900) && took <= Duration::from_millis(2500),
            "attacker {i} dropped after {took:?} (handshake_timeout 1s)"
        );
    }
    by.fresh("the attack").await;
    collect(&mut newcomer, &Default::default(), Duration::from_millis(200), |_| n += 1).await;
    gw.shutdown();
}

// --- 3. Connection floods -------------------------------------------------------------------

/// What a handshake got: the WebSocket, or the HTTP status and `Retry-After` of a refusal.
enum Handshake {
    Open(Box<Client>),
    Refused(u16, Option<String>),
}

async fn handshake(addr: SocketAddr, src: IpAddr) -> Handshake {
    match connect_from(addr, "", src).await {
        Ok(c) => Handshake::Open(Box::new(c)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Handshake::Refused(
            resp.status().as_u16(),
            resp.headers().get("retry-after").map(|v| v.to_str().unwrap_or("?").to_string()),
        ),
        Err(e) => panic!("handshake from {src}: {e}"),
    }
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn connections_per_ip_are_capped_with_429() {
    let gw = start(&[
        ("feed.rate", "2000"),
        ("server.max_connections_per_ip", "20"),
        ("server.connection_rate_per_ip", "0"),
    ]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for i in 0..25 {
        match handshake(addr, LOCAL).await {
            Handshake::Open(c) => open.push(c),
            Handshake::Refused(status, retry) => refused.push((i, status, retry)),
        }
    }
    assert_eq!(open.len(), 20, "refused: {refused:?}");
    assert!(refused.iter().all(|(i, status, _)| *i >= 20 && *status == 429), "{refused:?}");
    // Another address is unaffected, and the held connections work.
    let mut by = match handshake(addr, OTHER).await {
        Handshake::Open(c) => c,
        Handshake::Refused(s, _) => panic!("127.0.0.2 refused with {s} while 127.0.0.1 is at its limit"),
    };
    by.subscribe(&[&hot], "").await;
    open[19].subscribe(&[&hot], "").await;
    for c in [&mut by, &mut open[19]] {
        let mut n = 0;
        collect(c, &Default::default(), Duration::from_millis(300), |_| n += 1).await;
        assert!(n > 0);
    }
    // Closing one frees its slot (released when the gateway has closed it).
    let mut first = open.remove(0);
    first.ws.close(None).await.unwrap();
    let _ = first.next_within(Duration::from_secs(2)).await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match handshake(addr, LOCAL).await {
            Handshake::Open(c) => {
                open.push(c);
                break;
            }
            Handshake::Refused(s, _) => {
                assert_eq!(s, 429);
                assert!(Instant::now() < deadline, "a closed connection's slot was not released");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    gw.shutdown();
}

#[tokio::test]
async fn connection_rate_per_ip_gives_429_with_retry_after() {
    let gw = start(&[
        ("feed.rate", "2000"),
        ("server.connection_rate_per_ip", "10"),
        ("server.max_connections_per_ip", "0"),
    ]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    // 30 at once.
    let t = Instant::now();
    let tries: Vec<_> = (0..30).map(|_| tokio::spawn(handshake(addr, LOCAL))).collect();
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Handshake::Open(c) => open.push(c),
            Handshake::Refused(status, retry) => refused.push((status, retry)),
        }
    }
    // A burst of 10, plus 10 tokens a second while the handshakes ran.
    let refill = (t.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (10..=11 + refill).contains(&open.len()),
        "{} admitted with a burst of 10 (+{refill} refilled); refused {refused:?}",
        open.len()
    );
    assert!(!refused.is_empty(), "no 429 among 30 connections");
    for (status, retry) in &refused {
        assert_eq!(*status, 429, "{refused:?}");
        let secs: u64 = retry
            .as_deref()
            .unwrap_or_else(|| panic!("429 without Retry-After: {refused:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("Retry-After {retry:?}: {e}"));
        assert!((1..=2).contains(&secs), "Retry-After {secs}");
    }
    // Another address is unaffected.
    let mut other = match handshake(addr, OTHER).await {
        Handshake::Open(c) => c,
        Handshake::Refused(s, _) => panic!("127.0.0.2 refused with {s} while 127.0.0.1 is rate limited"),
    };
    other.subscribe(&[&hot], "").await;
    let mut n = 0;
    collect(&mut other, &Default::default(), Duration::from_millis(300), |_| n += 1).await;
    assert!(n > 0);
    // The admitted ones work.
    open[0].send(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(open[0].json().await["type"], "pong");
    gw.shutdown();
}

#[tokio::test]
async fn client_without_a_subscription_is_closed_1008_after_subscribe_timeout() {
    let gw = start(&[("feed.rate", "2000"), ("server.subscribe_timeout", "1s")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let t = Instant::now();
    let mut idle = Client::connect(addr, "").await;
    let mut sub = Client::connect(addr, "").await;
    sub.subscribe(&[&hot], "").await;
    // The idle one answers pings (it is read), it just never subscribes.
    let (code, reason) = idle.expect_close().await;
    let took = t.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "no subscription"));
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(2500),
        "closed after {took:?} with subscribe_timeout 1s"
    );
    // The subscribed one is still open and receiving well past the timeout.
    let mut n = 0;
    let last = collect(&mut sub, &Default::default(), Duration::from_millis(1500), |_| n += 1).await;
    assert!(n > 0 && last.contains_key(&hot));
    sub.send(r#"{"op":"ping","id":1}"#).await;
    loop {
        let v = sub.json().await;
        if v["type"] == "pong" {
            break;
        }
        assert_eq!(v["type"], "update", "{v}");
    }
    gw.shutdown();
}
