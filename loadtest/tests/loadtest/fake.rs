//! A misbehaving "gateway" on 127.0.0.1:0 (plain threads and blocking sockets, built from
//! the real gateway's protocol encoders) that sends a seq going backwards and an update for
//! a symbol the client never subscribed: the tool must catch both and fail the run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use tickgate::clock::now_ns;
use tickgate::feeds::Tick;
use tickgate::protocol::control::{self, ClientMsg};
use tickgate::protocol::frame::{FrameDecoder, Message, OpCode, write_close, write_frame};
use tickgate::protocol::json::encode_update;
use tickgate_loadtest::options::Progress;
use tickgate_loadtest::ws::handshake::accept_for;
use tickgate_loadtest::ws::url::WsUrl;
use tickgate_loadtest::{Options, RunError, run};

const SYMBOLS: [&str; 4] = ["AAA", "BBB", "CCC", "DDD"];

fn serve_one(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
            })
            .unwrap_or("")
            .to_string()
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        accept_for(&header("sec-websocket-key")),
        header("sec-websocket-protocol")
    );
    if s.write_all(resp.as_bytes()).is_err() {
        return;
    }
    let mut dec = FrameDecoder::new(1 << 16);
    let mut buf = BytesMut::new();
    loop {
        let msg = match dec.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) => match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&b[..n]);
                    continue;
                }
            },
            Err(_) => return,
        };
        let mut out = Vec::new();
        let mut reply = Vec::new();
        match msg {
            Message::Text(mut t) => match control::parse(&mut t) {
                Ok(ClientMsg::List { id }) => {
                    control::write_symbols(&mut reply, id, SYMBOLS);
                    write_frame(&mut out, OpCode::Text, &reply);
                }
                Ok(ClientMsg::Subscribe { id, symbols, .. }) => {
                    let ids: Vec<(&str, u32)> = symbols
                        .iter()
                        .map(|n| (*n, SYMBOLS.iter().position(|s| s == n).unwrap_or(0) as u32))
                        .collect();
                    control::write_subscribed(&mut reply, id, ids.iter().copied());
                    write_frame(&mut out, OpCode::Text, &reply);
                    let (name, sid) = ids[0];
                    let not_held = SYMBOLS.iter().position(|s| !symbols.contains(s)).unwrap_or(0);
                    let now = now_ns();
                    // seq 5, then 3 (backwards), then a symbol never subscribed.
                    for (sym, n, seq) in
                        [(sid, name, 5), (sid, name, 3), (not_held as u32, SYMBOLS[not_held], 1)]
                    {
                        let t = Tick { symbol: sym, seq, ts_event: now, ts_gateway: now, ..Tick::default() };
                        let mut j = Vec::new();
                        encode_update(&mut j, &t, n, false);
                        write_frame(&mut out, OpCode::Text, &j);
                    }
                }
                _ => {}
            },
            Message::Close { code, .. } => {
                write_close(&mut out, code.unwrap_or(1000), "");
                let _ = s.write_all(&out);
                return;
            }
            _ => {}
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

fn fake_gateway() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_one(s));
        }
    });
    addr
}

fn options(addr: SocketAddr, clients: usize) -> Options {
    let mut o = Options::new(None, vec![WsUrl::parse(&format!("ws://{addr}/ws")).unwrap()]);
    o.clients = clients;
    o.symbols_per_client = 2;
    o.threads = 2;
    o.duration = Duration::from_millis(500);
    o.progress = Progress::Off;
    o
}

#[test]
fn a_misbehaving_gateway_fails_the_run() {
    let r = run(options(fake_gateway(), 6)).unwrap();
    assert_eq!(r.clients.subscribed, 6, "{}", r.table());
    assert_eq!(r.violations.seq_backwards, 6, "{}", r.table());
    assert_eq!(r.violations.unsubscribed, 6, "{}", r.table());
    assert!(!r.passed());
    assert!(r.failures().iter().any(|f| f.contains("seq_backwards")), "{:?}", r.failures());
    assert!(r.table().contains("FAIL"));
}

#[test]
fn refuses_what_cannot_run() {
    // More clients than the open-file limit allows: refused before connecting anyone.
    let unreachable = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    match run(options(unreachable, 50_000_000)) {
        Err(RunError::FdLimit(msg)) => assert!(msg.contains("--merge") && msg.contains("50000000"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // Nobody listening: a setup error naming the address.
    match run(options(unreachable, 1)) {
        Err(RunError::Setup(msg)) => assert!(msg.contains(&unreachable.to_string()), "{msg}"),
        other => panic!("{other:?}"),
    }
}
