//! The HAProxy PROXY protocol, versions 1 (text) and 2 (binary): the header a TCP load
//! balancer (HAProxy, AWS NLB, GCP, Envoy, stunnel, ...) writes at the start of a connection
//! to say which client it relays, since the gateway itself only sees the balancer's address.
//! The reference is haproxy's `doc/proxy-protocol.txt` (sections cited below as "spec §").
//!
//! When `server.proxy_protocol` is `v1`, `v2` or `any`, the listener calls [`read_header`]
//! on each accepted socket before TLS and HTTP, under its own timeout, and uses the header's
//! source address as the client's (for the per-IP guard and the logs). With `off` nothing is
//! read. The spec forbids guessing whether a header is present (spec §2: it would let anyone
//! spoof an address), so when the mode is on a connection without a valid header is refused.
//!
//! The parsers are plain functions over bytes ([`parse_v1`], [`parse_v2`], and
//! [`v2_payload_len`] + [`parse_v2_payload`] for a reader that reads the fixed part first);
//! [`read_header`] only drives them. It reads exactly the header's bytes and not one more,
//! because the socket goes on to rustls or hyper and then, as a raw `TcpStream`, to a shard's
//! thread: nothing could hand over bytes read ahead into a buffer.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ValueError;

/// The longest version 1 line, CRLF included (spec §2.1: `PROXY UNKNOWN` followed by two
/// IPv6 addresses and two ports). A line without CRLF in this many bytes is refused.
pub const V1_MAX_LEN: usize = 107;

/// The 12 bytes every version 2 header starts with (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a version 2 header: signature, version and command, family and
/// transport, and the big-endian length of what follows.
pub const V2_HEADER_LEN: usize = 16;

/// The longest version 2 payload (addresses and TLVs) accepted, in bytes.
///
/// The spec sizes headers to fit one 536-byte segment, but TLVs can go past that: an
/// AF_UNIX address pair alone is 216 bytes, and a balancer may add the TLS SNI (up to 255),
/// a unique ID (up to 128) and TLS details. 1 KiB holds all of those at once and still
/// bounds what an unauthenticated peer makes the listener read.
pub const V2_MAX_PAYLOAD: usize = 1024;

/// The prefix of the first read: enough to tell the versions apart (spec §2.2: `PROXY` for
/// version 1, the signature for version 2), and never more than the shortest valid header
/// (`PROXY UNKNOWN\r\n`, 15 bytes), so it cannot read past one.
const FIRST_READ: usize = 8;

/// Version 2 command (low nibble of byte 13): the balancer's own connection, e.g. a health
/// check.
const CMD_LOCAL: u8 = 0x0;
/// Version 2 command: relayed on behalf of the client in the address block.
const CMD_PROXY: u8 = 0x1;

/// Version 2 address families (high nibble of byte 14).
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;

/// Version 2 transport (low nibble of byte 14): SOCK_STREAM. UNSPEC is 0x0, DGRAM 0x2.
const TRANSPORT_STREAM: u8 = 0x1;
const TRANSPORT_DGRAM: u8 = 0x2;

/// Which PROXY protocol versions the listener requires (`server.proxy_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No header: clients (or a balancer that does not send one) connect directly.
    #[default]
    Off,
    /// Every connection starts with a version 1 (text) header.
    V1,
    /// Every connection starts with a version 2 (binary) header.
    V2,
    /// Every connection starts with a header of either version.
    Any,
}

impl Mode {
    /// Whether a version 1 header is accepted.
    pub fn accepts_v1(self) -> bool {
        matches!(self, Mode::V1 | Mode::Any)
    }

    /// Whether a version 2 header is accepted.
    pub fn accepts_v2(self) -> bool {
        matches!(self, Mode::V2 | Mode::Any)
    }
}

impl FromStr for Mode {
    type Err = ValueError;

    /// `off`, `v1`, `v2` or `any`; the error lists them (the config layer adds the key and
    /// the value).
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "off" => Ok(Mode::Off),
            "v1" => Ok(Mode::V1),
            "v2" => Ok(Mode::V2),
            "any" => Ok(Mode::Any),
            _ => Err(ValueError::Expected("off, v1, v2 or any")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::V1 => "v1",
            Mode::V2 => "v2",
            Mode::Any => "any",
        })
    }
}

/// What a valid header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Relayed for a client: `source` is the client, `destination` the address it connected
    /// to on the balancer.
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to.
        destination: SocketAddr,
    },
    /// No client address: use the TCP peer's own. Sent for the balancer's own connections
    /// (health checks: the v2 LOCAL command) and for what it cannot describe (v1 `UNKNOWN`;
    /// v2 AF_UNSPEC, AF_UNIX, UDP or an unspecified transport, which the spec lets a
    /// receiver treat as UNSPEC).
    Local,
}

impl Header {
    /// The client's address: the header's source, or `peer` (the TCP peer) for
    /// [`Header::Local`].
    pub fn source_or(self, peer: SocketAddr) -> SocketAddr {
        match self {
            Header::Proxied { source, .. } => source,
            Header::Local => peer,
        }
    }
}

/// Why a connection's PROXY protocol header was refused. Every error costs that one
/// connection (the listener closes it); none affects the listener or other connections.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The first bytes are not a header of a version the mode accepts: a client connecting
    /// directly, past the balancer, or a balancer sending the other version.
    #[error(
        "no PROXY protocol header (server.proxy_protocol = {expected}): the first bytes match no accepted version"
    )]
    NotProxyProtocol {
        /// The mode (or, from [`parse_v1`] / [`parse_v2`], the version) that was expected.
        expected: Mode,
    },
    /// The header is of an accepted version but does not follow the spec.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// A version 1 line without CRLF in its first [`V1_MAX_LEN`] bytes, or a version 2
    /// length over [`V2_MAX_PAYLOAD`].
    #[error("PROXY protocol header longer than {limit} bytes")]
    TooLong {
        /// The limit, in bytes, header included.
        limit: usize,
    },
    /// [`read_header`] was called with [`Mode::Off`], which has nothing to read (a bug in
    /// the caller).
    #[error("read_header called with server.proxy_protocol = off")]
    Off,
    /// The socket failed or closed before the header was complete.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(why: impl Into<String>) -> ProxyError {
    ProxyError::Malformed(why.into())
}

/// Parses a whole version 1 line, `"PROXY "` through `"\r\n"` included (spec §2.1).
///
/// Strict, as the spec asks ("any sequence which does not exactly match the protocol must
/// be discarded"): single spaces, upper-case keywords, addresses of the stated family in
/// their usual text form (IPv4 without leading zeros), ports 0 to 65535 in decimal without
/// leading zeros or sign, and the line ends with CRLF and holds no other CR or LF.
/// `PROXY UNKNOWN` may be followed by anything up to the CRLF, which is ignored.
///
/// # Errors
///
/// [`ProxyError::NotProxyProtocol`] if `line` does not start with `PROXY`;
/// [`ProxyError::TooLong`] if it is longer than [`V1_MAX_LEN`]; otherwise
/// [`ProxyError::Malformed`] naming the first thing wrong.
pub fn parse_v1(line: &[u8]) -> Result<Header, ProxyError> {
    let Some(rest) = line.strip_prefix(b"PROXY") else {
        return Err(ProxyError::NotProxyProtocol { expected: Mode::V1 });
    };
    if line.len() > V1_MAX_LEN {
        return Err(ProxyError::TooLong { limit: V1_MAX_LEN });
    }
    let Some(rest) = rest.strip_suffix(b"\r\n") else {
        return Err(malformed("the v1 line does not end with CRLF"));
    };
    if rest.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(malformed("a CR or LF inside the v1 line (the line ends at the first CRLF)"));
    }
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err(malformed("expected a space after PROXY"));
    };
    if let Some(after) = rest.strip_prefix(b"UNKNOWN")
        && (after.is_empty() || after[0] == b' ')
    {
        return Ok(Header::Local);
    }
    let mut fields = rest.split(|&b| b == b' ');
    let family = fields.next().unwrap_or_default();
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(
            "a v1 line has exactly 5 fields after PROXY, one space apart: family, source, \
             destination, source port, destination port",
        ));
    };
    let sport = v1_port(sport).ok_or_else(|| malformed("bad source port in the v1 line"))?;
    let dport = v1_port(dport).ok_or_else(|| malformed("bad destination port in the v1 line"))?;
    let (source, destination) = match family {
        b"TCP4" => {
            let ip = |f: &[u8], which: &str| {
                text(f).and_then(|s| s.parse::<Ipv4Addr>().ok()).ok_or_else(|| {
                    malformed(format!("the v1 {which} address is not an IPv4 address (family TCP4)"))
                })
            };
            (
                SocketAddr::V4(SocketAddrV4::new(ip(src, "source")?, sport)),
                SocketAddr::V4(SocketAddrV4::new(ip(dst, "destination")?, dport)),
            )
        }
        b"TCP6" => {
            let ip = |f: &[u8], which: &str| {
                text(f).and_then(|s| s.parse::<Ipv6Addr>().ok()).ok_or_else(|| {
                    malformed(format!("the v1 {which} address is not an IPv6 address (family TCP6)"))
                })
            };
            (
                SocketAddr::V6(SocketAddrV6::new(ip(src, "source")?, sport, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(ip(dst, "destination")?, dport, 0, 0)),
            )
        }
        _ => return Err(malformed("the v1 family is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Header::Proxied { source, destination })
}

/// A field as text, if it is ASCII (every valid v1 field is).
fn text(field: &[u8]) -> Option<&str> {
    if field.is_ascii() { std::str::from_utf8(field).ok() } else { None }
}

/// A v1 port: 1 to 5 decimal digits, no sign, no leading zero (but "0" itself), ≤ 65535.
fn v1_port(field: &[u8]) -> Option<u16> {
    let ok = matches!(field.len(), 1..=5)
        && field.iter().all(u8::is_ascii_digit)
        && (field.len() == 1 || field[0] != b'0');
    if !ok {
        return None;
    }
    let n = field.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// Checks the fixed 16 bytes of a version 2 header and returns the length of the payload
/// that follows (addresses and TLVs).
///
/// # Errors
///
/// [`ProxyError::NotProxyProtocol`] if the signature does not match;
/// [`ProxyError::Malformed`] for a version other than 2 or a command other than LOCAL or
/// PROXY; [`ProxyError::TooLong`] for a length over [`V2_MAX_PAYLOAD`].
pub fn v2_payload_len(head: &[u8; V2_HEADER_LEN]) -> Result<usize, ProxyError> {
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyError::NotProxyProtocol { expected: Mode::V2 });
    }
    let version = head[12] >> 4;
    if version != 2 {
        return Err(malformed(format!("v2 signature with version {version}, expected 2")));
    }
    let command = head[12] & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(malformed(format!("v2 command {command:#x}, expected 0x0 (LOCAL) or 0x1 (PROXY)")));
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLong { limit: V2_HEADER_LEN + V2_MAX_PAYLOAD });
    }
    Ok(len)
}

/// Parses a version 2 header from its fixed part and its payload (exactly the
/// [`v2_payload_len`] bytes that follow it).
///
/// LOCAL gives [`Header::Local`] whatever the family (spec §2.2: the receiver "must use
/// the real connection endpoints"). PROXY over TCP/IPv4 or TCP/IPv6 gives the addresses;
/// TLVs after them are skipped. AF_UNSPEC, AF_UNIX, UDP and the unspecified transport give
/// [`Header::Local`] (the spec lets a receiver treat what it does not support as UNSPEC).
///
/// # Errors
///
/// Those of [`v2_payload_len`]; [`ProxyError::Malformed`] if `payload` is not the announced
/// length, for a family or transport the spec does not define, or for a payload too short
/// for the family's addresses (12 bytes for IPv4, 36 for IPv6, 216 for AF_UNIX).
pub fn parse_v2_payload(head: &[u8; V2_HEADER_LEN], payload: &[u8]) -> Result<Header, ProxyError> {
    let len = v2_payload_len(head)?;
    if payload.len() != len {
        return Err(malformed(format!("v2 payload of {} bytes, the header announces {len}", payload.len())));
    }
    if head[12] & 0x0F == CMD_LOCAL {
        return Ok(Header::Local);
    }
    let family = head[13] >> 4;
    let transport = head[13] & 0x0F;
    if transport > TRANSPORT_DGRAM {
        return Err(malformed(format!("v2 transport {transport:#x} is not defined")));
    }
    let (need, name) = match family {
        AF_UNSPEC => return Ok(Header::Local),
        AF_INET => (12, "AF_INET"),
        AF_INET6 => (36, "AF_INET6"),
        AF_UNIX => (216, "AF_UNIX"),
        _ => return Err(malformed(format!("v2 address family {family:#x} is not defined"))),
    };
    if len < need {
        return Err(malformed(format!("v2 payload of {len} bytes is too short for {name} ({need} bytes)")));
    }
    if family == AF_UNIX || transport != TRANSPORT_STREAM {
        return Ok(Header::Local);
    }
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    let (source, destination) = if family == AF_INET {
        let ip = |at: usize| Ipv4Addr::new(payload[at], payload[at + 1], payload[at + 2], payload[at + 3]);
        (
            SocketAddr::V4(SocketAddrV4::new(ip(0), port(8))),
            SocketAddr::V4(SocketAddrV4::new(ip(4), port(10))),
        )
    } else {
        let ip = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&payload[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        (
            SocketAddr::V6(SocketAddrV6::new(ip(0), port(32), 0, 0)),
            SocketAddr::V6(SocketAddrV6::new(ip(16), port(34), 0, 0)),
        )
    };
    Ok(Header::Proxied { source, destination })
}

/// Parses a version 2 header at the start of `buf`; returns it and its length in bytes
/// (16 + payload). Bytes after the header are left alone.
///
/// # Errors
///
/// Those of [`v2_payload_len`] and [`parse_v2_payload`]; [`ProxyError::Malformed`] if
/// `buf` ends before the header does, [`ProxyError::NotProxyProtocol`] if it is too short
/// even to hold the signature it does not match.
pub fn parse_v2(buf: &[u8]) -> Result<(Header, usize), ProxyError> {
    let Some(head) = buf.first_chunk::<V2_HEADER_LEN>() else {
        let n = buf.len().min(V2_SIGNATURE.len());
        return Err(if buf[..n] == V2_SIGNATURE[..n] {
            malformed(format!("truncated v2 header: {} of {V2_HEADER_LEN} bytes", buf.len()))
        } else {
            ProxyError::NotProxyProtocol { expected: Mode::V2 }
        });
    };
    let total = V2_HEADER_LEN + v2_payload_len(head)?;
    let Some(payload) = buf.get(V2_HEADER_LEN..total) else {
        return Err(malformed(format!("truncated v2 header: {} of {total} bytes", buf.len())));
    };
    Ok((parse_v2_payload(head, payload)?, total))
}

/// Reads one header of a version `mode` accepts from the start of `stream`, consuming
/// exactly its bytes: what follows (a TLS ClientHello, an HTTP request) is left unread.
///
/// Reads 8 bytes to tell the versions apart, then for version 2 the other 8 of the fixed
/// part and exactly the announced payload; for version 1 one byte at a time up to the CRLF
/// (at most 99 one-byte reads, once per connection: reading more at once could take bytes
/// of the next protocol, and there is no buffer to hand them on in). The caller bounds the
/// time it may take.
///
/// # Errors
///
/// [`ProxyError::Off`] for [`Mode::Off`] (nothing is read);
/// [`ProxyError::NotProxyProtocol`] if the stream starts with neither signature, or with
/// one `mode` refuses; [`ProxyError::Io`] if the stream fails or ends first (EOF is
/// `UnexpectedEof`); and those of [`parse_v1`] and [`parse_v2_payload`].
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S, mode: Mode) -> Result<Header, ProxyError> {
    if mode == Mode::Off {
        return Err(ProxyError::Off);
    }
    let mut head = [0u8; V2_HEADER_LEN];
    stream.read_exact(&mut head[..FIRST_READ]).await?;
    if head.starts_with(b"PROXY") && mode.accepts_v1() {
        read_v1_line(stream, &head[..FIRST_READ]).await
    } else if head[..FIRST_READ] == V2_SIGNATURE[..FIRST_READ] && mode.accepts_v2() {
        stream.read_exact(&mut head[FIRST_READ..]).await?;
        let len = v2_payload_len(&head)?;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await?;
        parse_v2_payload(&head, &payload)
    } else {
        Err(ProxyError::NotProxyProtocol { expected: mode })
    }
}

/// The rest of a version 1 line after its first bytes, `start`.
async fn read_v1_line<S: AsyncRead + Unpin>(stream: &mut S, start: &[u8]) -> Result<Header, ProxyError> {
    let mut line = [0u8; V1_MAX_LEN];
    let mut len = start.len();
    line[..len].copy_from_slice(start);
    // A line feed in the first read ends the line there (invalid: too short).
    if let Some(lf) = start.iter().position(|&b| b == b'\n') {
        return parse_v1(&line[..=lf]);
    }
    while len < V1_MAX_LEN {
        let b = stream.read_u8().await?;
        line[len] = b;
        len += 1;
        if b == b'\n' {
            return parse_v1(&line[..len]);
        }
        if line[len - 2] == b'\r' {
            return Err(malformed("a CR not followed by LF in the v1 line"));
        }
    }
    Err(ProxyError::TooLong { limit: V1_MAX_LEN })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use proptest::prelude::*;

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied { source: sa(src), destination: sa(dst) }
    }

    /// A version 2 header: `ver_cmd`, `fam`, then `payload` with its length.
    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The encoder a balancer would be: PROXY over TCP, `tlvs` after the addresses.
    fn encode_v2(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        let fam = match (source.ip(), destination.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                0x21
            }
            _ => panic!("mixed families"),
        };
        p.extend_from_slice(&source.port().to_be_bytes());
        p.extend_from_slice(&destination.port().to_be_bytes());
        p.extend_from_slice(tlvs);
        v2(0x21, fam, &p)
    }

    /// A TLV: type, big-endian length, value.
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// Runs `read_header` over an in-memory stream, which never waits, so one poll finishes
    /// it. Returns the result and the bytes left unread.
    fn read_sync(bytes: &[u8], mode: Mode) -> (Result<Header, ProxyError>, &[u8]) {
        let mut rest = bytes;
        let result = {
            let mut fut = pin!(read_header(&mut rest, mode));
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(r) => r,
                Poll::Pending => panic!("an in-memory read waited"),
            }
        };
        (result, rest)
    }

    #[test]
    fn mode_text_round_trips() {
        for m in [Mode::Off, Mode::V1, Mode::V2, Mode::Any] {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        assert_eq!(Mode::default(), Mode::Off);
        let e = "V1".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("off, v1, v2 or any"), "{e}");
        assert!("".parse::<Mode>().is_err());
        assert!(Mode::Any.accepts_v1() && Mode::Any.accepts_v2());
        assert!(Mode::V1.accepts_v1() && !Mode::V1.accepts_v2());
        assert!(!Mode::V2.accepts_v1() && Mode::V2.accepts_v2());
        assert!(!Mode::Off.accepts_v1() && !Mode::Off.accepts_v2());
    }

    #[test]
    fn v1_valid_lines() {
        let cases: &[(&[u8], Header)] = &[
            // The spec's example (§2.1).
            (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", proxied("192.168.0.1:56324", "192.168.0.11:443")),
            // The spec's longest TCP4 line, and the smallest values.
            (
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", proxied("0.0.0.0:0", "0.0.0.0:0")),
            (b"PROXY TCP6 2001:db8::1 ::1 1234 443\r\n", proxied("[2001:db8::1]:1234", "[::1]:443")),
            // Upper-case hex, and an IPv4-mapped address (valid IPv6 text).
            (b"PROXY TCP6 2001:DB8::A ::ffff:10.0.0.1 80 8080\r\n", proxied("[2001:db8::a]:80", "[::ffff:10.0.0.1]:8080")),
            (
                b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                proxied(
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                ),
            ),
            // UNKNOWN: the short form, and anything up to the CRLF ignored.
            (b"PROXY UNKNOWN\r\n", Header::Local),
            (b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", Header::Local),
            (b"PROXY UNKNOWN whatever  it says\r\n", Header::Local),
        ];
        for (line, want) in cases {
            let got = parse_v1(line).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn v1_worst_case_is_107_bytes() {
        let worst = format!("PROXY UNKNOWN {0} {0} 65535 65535\r\n", "ffff:".repeat(7) + "ffff");
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(parse_v1(worst.as_bytes()).unwrap(), Header::Local);
        let over = format!("PROXY UNKNOWN {0} {0} 65535 655350\r\n", "ffff:".repeat(7) + "ffff");
        assert!(matches!(parse_v1(over.as_bytes()), Err(ProxyError::TooLong { limit: V1_MAX_LEN })));
    }

    #[test]
    fn v1_malformed_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "CR without LF"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "no line end"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\r\n", "two line ends"),
            (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CR inside"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\n2\r\n", "LF inside"),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad family"),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "lower-case family"),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "UDP"),
            (b"PROXY UNKNOWNX\r\n", "UNKNOWN glued to more"),
            (b"PROXY unknown\r\n", "lower-case UNKNOWN"),
            (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "v4 addresses in TCP6"),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", "v6 addresses in TCP4"),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "mixed families"),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "octet over 255"),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "leading zero in an octet"),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "three octets"),
            (b"PROXY TCP6 [::1] ::1 1 2\r\n", "bracketed IPv6"),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "zone id"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port 65536"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "port 99999"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "leading zero in a port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "signed port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "negative port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n", "hex port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "six-digit port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "two spaces"),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "two spaces after PROXY"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "trailing space"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "six fields"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "four fields"),
            (b"PROXY TCP4\r\n", "family only"),
            (b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "tab"),
            (b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "tab between fields"),
            (b"PROXY\r\n", "nothing after PROXY"),
            (b"PROXY \r\n", "empty family"),
            (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no space after PROXY"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.\xff 1 2\r\n", "non-ASCII"),
        ];
        for (line, why) in cases {
            match parse_v1(line) {
                Err(ProxyError::Malformed(m)) => assert!(!m.is_empty()),
                other => panic!("{why}: {:?} gave {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn v1_not_proxy_or_too_long() {
        for line in [&b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..], b"GET / HTTP/1.1\r\n", b"", b"PROX"] {
            assert!(
                matches!(parse_v1(line), Err(ProxyError::NotProxyProtocol { expected: Mode::V1 })),
                "{line:?}"
            );
        }
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(matches!(parse_v1(long.as_bytes()), Err(ProxyError::TooLong { limit: 107 })));
    }

    #[test]
    fn v2_proxy_ipv4_and_ipv6() {
        let h = encode_v2(sa("10.1.2.3:51000"), sa("192.0.2.7:443"), &[]);
        assert_eq!(h.len(), 28);
        assert_eq!(parse_v2(&h).unwrap(), (proxied("10.1.2.3:51000", "192.0.2.7:443"), 28));
        // The bytes the spec's example sender (haproxy) writes, from a capture.
        let captured = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
            0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50, b'G', b'E', b'T',
        ];
        assert_eq!(parse_v2(&captured).unwrap(), (proxied("172.19.0.1:42578", "172.19.0.3:80"), 28));

        let h = encode_v2(sa("[2001:db8::5]:1"), sa("[2001:db8::1]:65535"), &[]);
        assert_eq!(h.len(), 52);
        assert_eq!(parse_v2(&h).unwrap(), (proxied("[2001:db8::5]:1", "[2001:db8::1]:65535"), 52));
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut tlvs = tlv(0x02, b"feed.example.com"); // PP2_TYPE_AUTHORITY
        tlvs.extend(tlv(0x04, &[0; 5])); // PP2_TYPE_NOOP
        tlvs.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef")); // AWS VPC endpoint
        let h = encode_v2(sa("[2001:db8::5]:4000"), sa("[::1]:443"), &tlvs);
        assert_eq!(parse_v2(&h).unwrap(), (proxied("[2001:db8::5]:4000", "[::1]:443"), 52 + tlvs.len()));
        // TLVs are not parsed: a malformed one after valid addresses does not matter.
        let h = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"), &[0x01, 0xFF]);
        assert_eq!(parse_v2(&h).unwrap().0, proxied("1.2.3.4:5", "6.7.8.9:10"));
    }

    #[test]
    fn v2_local_and_unsupported_families_use_the_peer() {
        let ipv4 = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        let cases: &[(u8, u8, &[u8], &str)] = &[
            (0x20, 0x00, &[], "LOCAL, AF_UNSPEC, empty"),
            (0x20, 0x11, &ipv4, "LOCAL with addresses (ignored)"),
            (0x20, 0x11, &[], "LOCAL claiming AF_INET without addresses (family ignored)"),
            (0x20, 0xFF, &[1, 2, 3], "LOCAL with an undefined family (ignored)"),
            (0x21, 0x00, &[], "PROXY, AF_UNSPEC"),
            (0x21, 0x00, &[9; 40], "PROXY, AF_UNSPEC with bytes (ignored)"),
            (0x21, 0x01, &[], "PROXY, AF_UNSPEC over STREAM"),
            (0x21, 0x12, &ipv4, "PROXY, UDP over IPv4"),
            (0x21, 0x10, &ipv4, "PROXY, IPv4, unspecified transport"),
            (0x21, 0x22, &[0; 36], "PROXY, UDP over IPv6"),
            (0x21, 0x31, &[0; 216], "PROXY, AF_UNIX stream"),
            (0x21, 0x32, &[0; 216], "PROXY, AF_UNIX datagram"),
        ];
        for (ver_cmd, fam, payload, why) in cases {
            let h = v2(*ver_cmd, *fam, payload);
            assert_eq!(parse_v2(&h).unwrap(), (Header::Local, 16 + payload.len()), "{why}");
        }
    }

    #[test]
    fn v2_malformed_headers() {
        let ipv4 = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        let cases: &[(Vec<u8>, &str)] = &[
            (v2(0x11, 0x11, &ipv4), "version 1 in the binary format"),
            (v2(0x31, 0x11, &ipv4), "version 3"),
            (v2(0x01, 0x11, &ipv4), "version 0"),
            (v2(0x22, 0x11, &ipv4), "command 2"),
            (v2(0x2F, 0x11, &ipv4), "command 15"),
            (v2(0x21, 0x41, &ipv4), "family 4"),
            (v2(0x21, 0xF1, &ipv4), "family 15"),
            (v2(0x21, 0x13, &ipv4), "transport 3"),
            (v2(0x21, 0x11, &ipv4[..11]), "11 bytes for IPv4"),
            (v2(0x21, 0x11, &[]), "no bytes for IPv4"),
            (v2(0x21, 0x21, &ipv4), "12 bytes for IPv6"),
            (v2(0x21, 0x21, &[0; 35]), "35 bytes for IPv6"),
            (v2(0x21, 0x22, &[0; 35]), "35 bytes for UDP over IPv6"),
            (v2(0x21, 0x31, &[0; 215]), "215 bytes for AF_UNIX"),
        ];
        for (h, why) in cases {
            match parse_v2(h) {
                Err(ProxyError::Malformed(m)) => assert!(!m.is_empty()),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn v2_truncated_too_long_or_not_v2() {
        let h = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"), &[]);
        for n in 0..h.len() {
            match parse_v2(&h[..n]) {
                Err(ProxyError::Malformed(m)) => assert!(m.contains("truncated"), "{n}: {m}"),
                other => panic!("{n} bytes: {other:?}"),
            }
        }
        // The largest accepted payload, and one byte more.
        let h = v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD]);
        assert_eq!(parse_v2(&h).unwrap().1, V2_HEADER_LEN + V2_MAX_PAYLOAD);
        let mut h = v2(0x21, 0x11, &[0; 12]);
        h[14..16].copy_from_slice(&u16::try_from(V2_MAX_PAYLOAD + 1).unwrap().to_be_bytes());
        assert!(matches!(parse_v2(&h), Err(ProxyError::TooLong { limit: 1040 })));
        h[14..16].copy_from_slice(&[0xFF, 0xFF]);
        assert!(matches!(parse_v2(&h), Err(ProxyError::TooLong { .. })));
        // Payload length must match exactly when given separately.
        let h = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"), &[]);
        let head: &[u8; 16] = h.first_chunk().unwrap();
        assert!(matches!(parse_v2_payload(head, &h[16..27]), Err(ProxyError::Malformed(_))));
        assert!(parse_v2_payload(head, &h[16..]).is_ok());
        // Signatures off by one byte, and other protocols.
        for i in 0..12 {
            let mut bad = h.clone();
            bad[i] ^= 0x20;
            assert!(
                matches!(parse_v2(&bad), Err(ProxyError::NotProxyProtocol { expected: Mode::V2 })),
                "{i}"
            );
        }
        for other in
            [&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
        {
            assert!(matches!(parse_v2(other), Err(ProxyError::NotProxyProtocol { .. })));
        }
    }

    #[test]
    fn reader_leaves_the_rest_unread() {
        const NEXT: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut tlvs = tlv(0x02, b"feed.example.com");
        tlvs.extend(tlv(0x05, &[7; 32]));
        let cases: &[(Vec<u8>, Header)] = &[
            (
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (b"PROXY TCP6 2001:db8::1 ::1 1234 443\r\n".to_vec(), proxied("[2001:db8::1]:1234", "[::1]:443")),
            (b"PROXY UNKNOWN\r\n".to_vec(), Header::Local),
            (encode_v2(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[]), proxied("10.0.0.1:1", "10.0.0.2:2")),
            (encode_v2(sa("[::2]:1"), sa("[::3]:2"), &tlvs), proxied("[::2]:1", "[::3]:2")),
            (v2(0x20, 0x00, &[]), Header::Local),
        ];
        for (header, want) in cases {
            let mut bytes = header.clone();
            bytes.extend_from_slice(NEXT);
            let (got, rest) = read_sync(&bytes, Mode::Any);
            assert_eq!(got.unwrap(), *want);
            assert_eq!(rest, NEXT, "after {:?}", String::from_utf8_lossy(header));
            let only = if header.starts_with(b"PROXY") { Mode::V1 } else { Mode::V2 };
            let (got, rest) = read_sync(&bytes, only);
            assert_eq!(got.unwrap(), *want);
            assert_eq!(rest, NEXT);
        }
    }

    #[tokio::test]
    async fn reader_over_a_socket_pair_in_pieces() {
        for header in [
            b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 443\r\n".to_vec(),
            encode_v2(sa("203.0.113.9:40000"), sa("192.0.2.1:443"), &tlv(0x04, &[0; 3])),
        ] {
            let (mut client, mut server) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Fragmented, as a slow path may deliver it.
                for piece in header.chunks(5) {
                    client.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
                client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
                client
            });
            let h = read_header(&mut server, Mode::Any).await.unwrap();
            assert_eq!(h, proxied("203.0.113.9:40000", "192.0.2.1:443"));
            assert_eq!(h.source_or(sa("10.0.0.1:1")), sa("203.0.113.9:40000"));
            let _client = writer.await.unwrap();
            let mut next = [0u8; 16];
            server.read_exact(&mut next).await.unwrap();
            assert_eq!(&next, b"GET / HTTP/1.1\r\n");
        }
    }

    #[test]
    fn reader_refuses_what_the_mode_does_not_accept() {
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET".to_vec();
        let v2 = encode_v2(sa("1.2.3.4:1"), sa("5.6.7.8:2"), &[]);
        for (bytes, mode) in [(&v1, Mode::V2), (&v2, Mode::V1)] {
            let (got, rest) = read_sync(bytes, mode);
            assert!(matches!(got, Err(ProxyError::NotProxyProtocol { expected }) if expected == mode));
            assert_eq!(rest, &bytes[8..], "only the first 8 bytes are read");
        }
        let get = b"GET / HTTP/1.1\r\n";
        let (got, rest) = read_sync(get, Mode::Any);
        assert!(matches!(got, Err(ProxyError::NotProxyProtocol { expected: Mode::Any })));
        assert_eq!(rest, &get[8..]);
        let (got, rest) = read_sync(&v1, Mode::Off);
        assert!(matches!(got, Err(ProxyError::Off)));
        assert_eq!(rest, &v1[..], "Off reads nothing");
        assert_eq!(Header::Local.source_or(sa("10.0.0.1:1")), sa("10.0.0.1:1"));
    }

    #[test]
    fn reader_errors() {
        // Closed before the header ends.
        for bytes in
            [&b"PROXY TCP4 1.2.3.4"[..], b"PROX", &encode_v2(sa("1.2.3.4:1"), sa("5.6.7.8:2"), &[])[..20]]
        {
            let (got, _) = read_sync(bytes, Mode::Any);
            match got {
                Err(ProxyError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // A bare LF, a CR without LF: refused at once, without reading on.
        let (got, rest) = read_sync(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET", Mode::V1);
        assert!(matches!(got, Err(ProxyError::Malformed(_))));
        assert_eq!(rest, b"GET");
        let (got, rest) = read_sync(b"PROXY TCP4 1.2.3.4\rX 5.6.7.8 1 2\r\n", Mode::V1);
        assert!(matches!(got, Err(ProxyError::Malformed(_))));
        assert_eq!(rest, b" 5.6.7.8 1 2\r\n");
        let (got, _) = read_sync(b"PROXY\r\nGET / HTTP/1.1\r\n", Mode::V1);
        assert!(matches!(got, Err(ProxyError::Malformed(_))));
        // No CRLF in 107 bytes: stops reading there.
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
        let (got, rest) = read_sync(&long, Mode::V1);
        assert!(matches!(got, Err(ProxyError::TooLong { limit: 107 })));
        assert_eq!(rest.len(), long.len() - V1_MAX_LEN);
        // A v2 length over the limit: the payload is not read.
        let mut h = v2(0x21, 0x11, &[0; 12]);
        h[14..16].copy_from_slice(&[0xFF, 0xFF]);
        let (got, rest) = read_sync(&h, Mode::V2);
        assert!(matches!(got, Err(ProxyError::TooLong { .. })));
        assert_eq!(rest.len(), 12);
        // Bad version after a matching signature.
        let (got, _) = read_sync(&v2(0x11, 0x11, &[0; 12]), Mode::Any);
        assert!(matches!(got, Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn errors_read_well() {
        let e = ProxyError::NotProxyProtocol { expected: Mode::V2 }.to_string();
        assert!(e.contains("server.proxy_protocol = v2"), "{e}");
        let e = parse_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n").unwrap_err().to_string();
        assert_eq!(e, "malformed PROXY protocol header: bad source port in the v1 line");
        let e = parse_v2(&v2(0x21, 0x21, &[0; 12])).unwrap_err().to_string();
        assert!(e.contains("12 bytes is too short for AF_INET6 (36 bytes)"), "{e}");
    }

    fn any_socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(a, p, b, q)| (SocketAddr::from((a, p)), SocketAddr::from((b, q)))),
            (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(a, p, b, q)| (SocketAddr::from((a, p)), SocketAddr::from((b, q)))),
        ]
    }

    /// Checks `read_header` over `bytes` against the sans-IO parsers: the same answer, and
    /// exactly the header consumed.
    fn reader_agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        let (got, rest) = read_sync(bytes, Mode::Any);
        let used = bytes.len() - rest.len();
        prop_assert!(used <= V2_HEADER_LEN + V2_MAX_PAYLOAD);
        if let Ok(h) = got {
            if bytes.starts_with(b"PROXY") {
                prop_assert_eq!(parse_v1(&bytes[..used]).unwrap(), h);
            } else {
                prop_assert_eq!(parse_v2(bytes).unwrap(), (h, used));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_v1(&bytes);
            let _ = parse_v2(&bytes);
            reader_agrees(&bytes)?;
        }

        #[test]
        fn arbitrary_bytes_after_a_signature_never_panic(
            v1 in any::<bool>(),
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let bytes = if v1 {
                [b"PROXY ".as_slice(), &bytes].concat()
            } else {
                [V2_SIGNATURE.as_slice(), &bytes].concat()
            };
            let _ = parse_v1(&bytes);
            if let Ok((_, n)) = parse_v2(&bytes) {
                prop_assert!((V2_HEADER_LEN..=bytes.len()).contains(&n));
            }
            reader_agrees(&bytes)?;
        }

        #[test]
        fn v1_lines_near_valid_never_panic(line in "PROXY (TCP4|TCP6|UNKNOWN)( [0-9a-fA-F.:]{0,12}){0,5}(\r\n|\n|\r|)") {
            let _ = parse_v1(line.as_bytes());
            reader_agrees(line.as_bytes())?;
        }

        #[test]
        fn v2_round_trip(
            (source, destination) in any_socket_pair(),
            tlvs in prop::collection::vec(any::<u8>(), 0..200),
            after in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let header = encode_v2(source, destination, &tlvs);
            let bytes = [header.as_slice(), &after].concat();
            prop_assert_eq!(parse_v2(&bytes).unwrap(), (Header::Proxied { source, destination }, header.len()));
            let (got, rest) = read_sync(&bytes, Mode::V2);
            prop_assert_eq!(got.unwrap(), Header::Proxied { source, destination });
            prop_assert_eq!(rest, &after[..]);
        }

        #[test]
        fn v1_round_trip(
            (source, destination) in any_socket_pair(),
            after in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            let line = format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(), destination.ip(), source.port(), destination.port()
            );
            prop_assert_eq!(parse_v1(line.as_bytes()).unwrap(), Header::Proxied { source, destination });
            let bytes = [line.as_bytes(), &after].concat();
            let (got, rest) = read_sync(&bytes, Mode::V1);
            prop_assert_eq!(got.unwrap(), Header::Proxied { source, destination });
            prop_assert_eq!(rest, &after[..]);
        }
    }
}
