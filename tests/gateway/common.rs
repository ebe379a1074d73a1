//! Test harness: a real gateway on 127.0.0.1:0 and real WebSocket clients (tokio-tungstenite)
//! over real sockets. Nothing is mocked.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickgate::config::{Config, Layers, Source};
use tickgate::feed::{Feed, simulated_source};
use tickgate::feeds::universe::parse_fixed;
use tickgate::feeds::{Tick, TickKind};
use tickgate::gateway::Gateway;
use tickgate::protocol::binary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Held by the tests that measure time (pacing, bytes per second) and by the ones that load
/// both cores (unpaced replays, floods), so those never run at the same time: on a 2-core
/// machine one would otherwise measure the other.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A configuration for tests (port 0, one shard, no pinning, plus `overrides`), with each
/// key's source.
pub fn config(overrides: &[(&str, &str)]) -> (Config, BTreeMap<&'static str, Source>) {
    let mut l = Layers::new();
    for (k, v) in [
        ("server.listen", "127.0.0.1:0"),
        ("admin.listen", "127.0.0.1:0"),
        ("server.shards", "1"),
        ("server.pin_cores", "off"),
    ]
    .iter()
    .chain(overrides)
    {
        l.set(k, v.to_string(), Source::Flag).unwrap_or_else(|e| panic!("{e}"));
    }
    l.build().unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a gateway on the simulated feed with `overrides`.
pub fn start(overrides: &[(&str, &str)]) -> Gateway {
    let (cfg, sources) = config(overrides);
    let feed = simulated_source(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    Gateway::start(cfg, sources, Feed::local(feed)).unwrap_or_else(|e| panic!("gateway did not start: {e:#}"))
}

/// What a client received.
#[derive(Debug)]
pub enum Frame {
    /// A JSON text message.
    Json(Value),
    /// Binary L1 records.
    Records(Vec<binary::Record>),
    /// A binary frame holding trade or gap records (and maybe L1 ones).
    Messages(Vec<binary::Message>),
    /// A close frame (code, reason).
    Close(u16, String),
}

/// A real WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
    /// Server pings seen.
    pub pings: usize,
}

/// Opens a TCP connection, optionally with a small receive buffer (to make a client slow).
pub async fn tcp(addr: SocketAddr, rcvbuf: Option<usize>) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    TcpStream::from_std(s.into()).unwrap()
}

impl Client {
    /// Connects to `/ws?{query}`.
    pub async fn connect(addr: SocketAddr, query: &str) -> Client {
        Client::connect_with(addr, query, None, None).await.unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// Connects with optional subprotocols and receive buffer size.
    pub async fn connect_with(
        addr: SocketAddr,
        query: &str,
        protocols: Option<&str>,
        rcvbuf: Option<usize>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{addr}/ws?{query}").into_client_request()?;
        if let Some(p) = protocols {
            req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
        }
        let stream = tcp(addr, rcvbuf).await;
        let (ws, _resp) = tokio_tungstenite::client_async(req, stream).await?;
        Ok(Client { ws, pings: 0 })
    }

    /// Sends a text message.
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// The next data or close frame (pings and pongs are counted and skipped). Panics after
    /// [`WAIT`]. `None` when the stream ended without a close frame.
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(WAIT).await.unwrap_or_else(|| panic!("no frame within {WAIT:?}"))
    }

    /// Like [`Client::next`] but returns `None` (outer) on timeout.
    pub async fn next_within(&mut self, d: Duration) -> Option<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(None),
                Ok(Some(Err(_))) => return Some(None),
                Ok(Some(Ok(m))) => m,
            };
            return Some(Some(match msg {
                Message::Text(t) => Frame::Json(
                    serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("bad JSON {t}: {e}")),
                ),
                Message::Binary(b) => {
                    let msgs = binary::decode_frame_messages(&b)
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap_or_else(|e| panic!("bad binary frame: {e}"));
                    if msgs.iter().all(|m| matches!(m, binary::Message::Update(_))) {
                        Frame::Records(
                            msgs.into_iter()
                                .filter_map(|m| match m {
                                    binary::Message::Update(r) => Some(r),
                                    _ => None,
                                })
                                .collect(),
                        )
                    } else {
                        Frame::Messages(msgs)
                    }
                }
                Message::Close(c) => match c {
                    Some(c) => Frame::Close(u16::from(c.code), c.reason.to_string()),
                    None => Frame::Close(1005, String::new()),
                },
                Message::Ping(_) => {
                    self.pings += 1;
                    continue;
                }
                _ => continue,
            }));
        }
    }

    /// The next text message's raw payload, or `None` after `d` (pings are skipped; anything
    /// else panics).
    pub async fn next_text_within(&mut self, d: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_bytes().to_vec()),
                Ok(Some(Ok(Message::Ping(_)))) => self.pings += 1,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// The next JSON message (panics on anything else).
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Some(Frame::Json(v)) => v,
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    /// Reads until a close frame arrives; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Some(Frame::Close(code, reason)) => return (code, reason),
                Some(_) => continue,
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// The universe, in id order, from `{"op":"list"}` (nothing else may be pending).
    pub async fn list(&mut self) -> Vec<String> {
        self.send(r#"{"op":"list"}"#).await;
        let v = self.json().await;
        assert_eq!(v["type"], "symbols", "{v}");
        v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    }

    /// Subscribes and returns the `subscribed` reply's symbol → id map.
    pub async fn subscribe(&mut self, symbols: &[&str], extra: &str) -> HashMap<String, u32> {
        let list = symbols.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(",");
        self.send(&format!("{{\"op\":\"subscribe\",\"symbols\":[{list}],\"id\":1{extra}}}")).await;
        let v = self.json().await;
        assert_eq!(v["type"], "subscribed", "{v}");
        v["symbols"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as u32))
            .collect()
    }
}

/// An update, decoded from either format, with exact fixed-point values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub symbol: String,
    pub tick: Tick,
    pub snapshot: bool,
}

fn fixed(v: &Value) -> i64 {
    let s = v.to_string();
    parse_fixed(&s).unwrap_or_else(|| panic!("not an exact decimal: {s}"))
}

/// Decodes a JSON `update` object (None for other message types).
pub fn json_update(v: &Value) -> Option<Update> {
    if v["type"] != "update" {
        return None;
    }
    let u = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {v}"));
    Some(Update {
        symbol: v["symbol"].as_str()?.to_string(),
        snapshot: v["snapshot"].as_bool()?,
        tick: Tick {
            symbol: 0,
            kind: TickKind::Quote,
            seq: u("seq"),
            bid: fixed(&v["bid"]),
            bid_size: fixed(&v["bid_size"]),
            ask: fixed(&v["ask"]),
            ask_size: fixed(&v["ask_size"]),
            last: fixed(&v["last"]),
            last_size: fixed(&v["last_size"]),
            volume: fixed(&v["volume"]),
            ts_event: u("ts_event"),
            ts_gateway: u("ts_gateway"),
            ..Tick::default()
        },
    })
}

/// Decodes binary records into updates, naming symbols with the `subscribed` id map.
pub fn record_updates(records: &[binary::Record], names: &HashMap<u32, String>) -> Vec<Update> {
    records
        .iter()
        .map(|r| Update {
            symbol: names
                .get(&r.tick.symbol)
                .cloned()
                .unwrap_or_else(|| panic!("unsubscribed id {}", r.tick.symbol)),
            tick: Tick { symbol: 0, kind: TickKind::Quote, ..r.tick },
            snapshot: r.snapshot,
        })
        .collect()
}

/// Collects updates until `pred` says stop or `d` passes; checks seq never decreases per symbol.
pub async fn collect(
    c: &mut Client,
    names: &HashMap<u32, String>,
    d: Duration,
    mut each: impl FnMut(&Update),
) -> HashMap<String, Update> {
    let mut last: HashMap<String, Update> = HashMap::new();
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return last;
        }
        let ups = match c.next_within(left).await {
            None => return last,
            // Batched JSON: an array of update objects in one frame.
            Some(Some(Frame::Json(serde_json::Value::Array(batch)))) => {
                assert!(!batch.is_empty(), "an empty batch");
                batch.iter().map(|v| json_update(v).unwrap_or_else(|| panic!("not an update: {v}"))).collect()
            }
            Some(Some(Frame::Json(v))) => json_update(&v).into_iter().collect(),
            Some(Some(Frame::Records(r))) => record_updates(&r, names),
            Some(other) => panic!("unexpected {other:?}"),
        };
        for u in ups {
            if let Some(prev) = last.get(&u.symbol) {
                assert!(
                    u.tick.seq >= prev.tick.seq,
                    "seq went backwards for {}: {} after {}",
                    u.symbol,
                    u.tick.seq,
                    prev.tick.seq
                );
                if !u.snapshot {
                    assert!(u.tick.seq > prev.tick.seq, "repeated seq {} for {}", u.tick.seq, u.symbol);
                }
            }
            each(&u);
            last.insert(u.symbol.clone(), u);
        }
    }
}

/// `GET path` over a raw socket; returns (status, headers+body text).
pub async fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// The body of an HTTP response text.
pub fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `GET /stats` parsed.
pub async fn stats(addr: SocketAddr) -> Value {
    let (status, text) = http_get(addr, "/stats", "").await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(body(&text)).unwrap()
}

/// `GET /snapshot?symbols=...` decoded, by symbol.
pub async fn snapshot(addr: SocketAddr, symbols: &[&str]) -> HashMap<String, Update> {
    let (status, text) = http_get(addr, &format!("/snapshot?symbols={}", symbols.join(",")), "").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(body(&text)).unwrap();
    v.as_array().unwrap().iter().filter_map(json_update).map(|u| (u.symbol.clone(), u)).collect()
}

/// Waits until the finite feed has ended.
pub async fn wait_feed_end(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stats(addr).await["feed_ended"].as_bool().unwrap_or(false) {
        assert!(tokio::time::Instant::now() < deadline, "feed did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw WebSocket handshake over TCP, for sending frames a well-behaved client library
/// refuses to send. Returns the stream positioned after the 101 response.
pub async fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// A masked client frame.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![first];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads server frames from a raw stream until a close frame; returns its code.
pub async fn raw_close_code(s: &mut TcpStream) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut h = [0u8; 2];
        tokio::time::timeout_at(deadline, s.read_exact(&mut h)).await.expect("timeout").expect("read");
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut p = vec![0u8; len as usize];
        s.read_exact(&mut p).await.unwrap();
        if h[0] & 0x0f == 8 {
            return u16::from_be_bytes([p[0], p[1]]);
        }
    }
}

/// Opens a TCP connection from source address `src` (e.g. 127.0.0.2, to look like another
/// client IP on loopback).
pub async fn tcp_from(addr: SocketAddr, src: std::net::IpAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    TcpStream::from_std(s.into()).unwrap()
}

/// Connects a WebSocket to `/ws?{query}` from source address `src`. A refused handshake is
/// `Err(Error::Http(response))`, with the status and headers.
pub async fn connect_from(
    addr: SocketAddr,
    query: &str,
    src: std::net::IpAddr,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let req = format!("ws://{addr}/ws?{query}").into_client_request()?;
    let stream = tcp_from(addr, src).await;
    let (ws, _resp) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(Client { ws, pings: 0 })
}
