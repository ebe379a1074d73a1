//! The client-address parsers of `tickgate::server`: PROXY protocol headers
//! (`proxy_protocol::parse_v1`, `parse_v2`, `read_header`), which the listener reads from
//! whoever connects when `server.proxy_protocol` is on, and `client_ip::client_ip` over the
//! `Forwarded` / `X-Forwarded-For` values clients send through trusted proxies.
//!
//! Input layout: the whole input is a connection's first bytes for the PROXY protocol
//! parsers. For `client_ip`, byte 0 picks the peer (`PEERS[b % len]`) and the rest is split
//! at 0x00 into header values, each one's first byte choosing the header (odd: `Forwarded`,
//! even: `X-Forwarded-For`) and the rest being its value (lossy UTF-8).
//!
//! Invariants checked:
//! - nothing panics;
//! - `parse_v1` accepts only a line of at most 107 bytes starting `PROXY ` and ending CRLF;
//! - `parse_v2` accepts only a header of 16 bytes or more within the input, and parsing
//!   exactly those bytes gives the same header;
//! - `read_header` over the input as a stream (which never waits, so one poll finishes it)
//!   consumes exactly the header the sans-IO parsers find and gives the same answer, and a
//!   mode refuses the version it does not accept after reading only 8 bytes;
//! - `client_ip`: an untrusted peer is its own answer; otherwise the answer is the peer or an
//!   address written in one of the header values (some substring, backslashes removed, as
//!   unescaping would, parses to it; checked for values up to 1 KiB in all).
#![no_main]

use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tickgate::server::client_ip::{TrustedProxies, client_ip};
use tickgate::server::proxy_protocol::{
    Header, Mode, ProxyError, V1_MAX_LEN, V2_HEADER_LEN, parse_v1, parse_v2, read_header,
};

/// Peers: trusted (directly, IPv4-mapped, IPv6) and not.
const PEERS: [&str; 6] = ["10.0.0.1", "::ffff:10.0.0.1", "::1", "2001:db8::1", "192.0.2.1", "2001:db9::1"];

fn trusted() -> &'static TrustedProxies {
    static T: OnceLock<TrustedProxies> = OnceLock::new();
    T.get_or_init(|| {
        let list = ["10.0.0.0/8", "::1", "2001:db8::/32", "192.168.0.0/16"].map(String::from);
        TrustedProxies::parse(&list).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// `read_header` over `data` as an in-memory stream: the result and the bytes consumed.
fn read(data: &[u8], mode: Mode) -> (Result<Header, ProxyError>, usize) {
    let mut rest = data;
    let result = {
        let mut fut = pin!(read_header(&mut rest, mode));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("reading from memory waited"),
        }
    };
    (result, data.len() - rest.len())
}

/// Whether `ip` is written in one of `texts`, backslashes removed.
fn written_in(texts: &[&str], ip: IpAddr) -> bool {
    texts.iter().any(|t| {
        let b: Vec<u8> = t.bytes().filter(|&c| c != b'\\').collect();
        (0..b.len()).any(|i| {
            (i + 2..=b.len().min(i + 45))
                .any(|j| std::str::from_utf8(&b[i..j]).ok().and_then(|s| s.parse().ok()) == Some(ip))
        })
    })
}

fuzz_target!(|data: &[u8]| {
    // PROXY protocol, sans-IO.
    let v1 = parse_v1(data);
    if v1.is_ok() {
        assert!(data.len() <= V1_MAX_LEN && data.starts_with(b"PROXY ") && data.ends_with(b"\r\n"));
    }
    let v2 = parse_v2(data);
    if let Ok((h, n)) = v2 {
        assert!((V2_HEADER_LEN..=data.len()).contains(&n), "{n} of {} bytes", data.len());
        assert_eq!(parse_v2(&data[..n]).ok(), Some((h, n)));
    }

    // PROXY protocol, read from a stream: the same answers, exactly the header consumed.
    let (any, used) = read(data, Mode::Any);
    match any {
        Ok(h) if data.starts_with(b"PROXY") => assert_eq!(parse_v1(&data[..used]).ok(), Some(h)),
        Ok(h) => assert_eq!(v2.ok(), Some((h, used))),
        Err(_) => {}
    }
    // Told apart after the first 8 bytes; a shorter input ends the read first.
    let is_v1 = data.len() >= 8 && data.starts_with(b"PROXY");
    let is_v2 = data.len() >= 8 && data[..8] == tickgate::server::proxy_protocol::V2_SIGNATURE[..8];
    for (mode, refused) in [(Mode::V1, is_v2), (Mode::V2, is_v1)] {
        let (r, used) = read(data, mode);
        if refused {
            assert!(matches!(r, Err(ProxyError::NotProxyProtocol { expected }) if expected == mode));
            assert_eq!(used, 8);
        }
    }

    // client_ip.
    let [sel, rest @ ..] = data else { return };
    let peer: IpAddr = PEERS[usize::from(*sel) % PEERS.len()].parse().unwrap_or_else(|e| panic!("{e}"));
    let (mut forwarded, mut xff) = (Vec::new(), Vec::new());
    for value in rest.split(|&b| b == 0) {
        let Some((&which, value)) = value.split_first() else { continue };
        let value = String::from_utf8_lossy(value).into_owned();
        if which % 2 == 1 { forwarded.push(value) } else { xff.push(value) }
    }
    let f: Vec<&str> = forwarded.iter().map(String::as_str).collect();
    let x: Vec<&str> = xff.iter().map(String::as_str).collect();
    let got = client_ip(peer, trusted(), &f, &x);
    if !trusted().contains(peer) {
        assert_eq!(got, peer, "an untrusted peer's headers were believed");
    } else if got != peer && rest.len() <= 1024 {
        assert!(written_in(&[f.as_slice(), &x].concat(), got), "{got} is in no header: {f:?} {x:?}");
    }
});
