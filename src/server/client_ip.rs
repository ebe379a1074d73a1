//! The client's address behind HTTP reverse proxies: which peers are trusted proxies
//! (`server.trusted_proxies`, a list of CIDRs), and the `Forwarded` (RFC 7239) and
//! `X-Forwarded-For` headers they add.
//!
//! The HTTP layer calls [`client_ip`] at the upgrade with the TCP peer (or the PROXY
//! protocol's source, see [`super::proxy_protocol`]) and the raw header values; the answer
//! keys the per-IP guard ([`super::guard`]) and the logs. Headers count only when the peer is
//! a trusted proxy, and then only the part of each list that trusted proxies wrote: the walk
//! goes from the right (the hop nearest to us) and stops at the first address that is not a
//! trusted proxy, so a client can put anything it likes on the left without effect.
//!
//! Pure functions over strings, no I/O; the work per request is bounded ([`MAX_HOPS`],
//! [`MAX_HEADER_BYTES`]) because the headers come from the client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most hops (list entries) considered, counted from the right; entries further left are
/// ignored. Real chains are a handful of proxies long.
pub const MAX_HOPS: usize = 64;

/// The most bytes of each header kind considered, counted from the right end of the last
/// header (8 KiB: hyper's whole request head is bounded, but a list this long is already
/// abuse, and the proxies' own entries are on the right).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The longest `Forwarded` node value looked at (unquoted). The longest address with a port,
/// `"[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"`, is 53 bytes; longer values
/// (long obfuscated identifiers) are opaque hops.
const MAX_NODE_LEN: usize = 128;

/// An IP network: an address and a prefix length, with no bits set after the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before any `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address or CIDR (like 10.0.0.0/8, 192.0.2.1 or 2001:db8::/32)")]
    NotAnAddress(String),
    /// The part after `/` is not a number.
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    BadPrefix {
        /// The text given.
        text: String,
        /// The longest prefix for the address's family.
        max: u8,
    },
    /// The prefix is longer than the address.
    #[error("{text:?}: prefix length {prefix} is longer than the {max} bits of the address")]
    PrefixTooLong {
        /// The text given.
        text: String,
        /// The prefix length given.
        prefix: u16,
        /// The longest prefix for the address's family.
        max: u8,
    },
    /// Bits are set after the prefix: probably a host address where a network was meant.
    #[error("{text} has host bits set; did you mean {network}?")]
    HostBits {
        /// The text given.
        text: String,
        /// The network the prefix selects.
        network: Cidr,
    },
}

impl Cidr {
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length, in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what
    /// a dual-stack socket reports for an IPv4 peer) is matched as the IPv4 address it holds
    /// against an IPv4 network. An IPv4 address never matches an IPv6 network (so `::/0`
    /// does not trust every IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4_in(net, self.prefix, ip),
            (IpAddr::V4(net), IpAddr::V6(ip)) => {
                ip.to_ipv4_mapped().is_some_and(|ip| v4_in(net, self.prefix, ip))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask6(self.prefix);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

fn v4_in(net: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    let mask = mask4(prefix);
    u32::from(ip) & mask == u32::from(net) & mask
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/PREFIX`, or a bare address for a single host (`/32` or `/128`).
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::NotAnAddress(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let digits = matches!(p.len(), 1..=3) && p.bytes().all(|b| b.is_ascii_digit());
                let n: u16 = match p.parse() {
                    Ok(n) if digits => n,
                    _ => return Err(CidrError::BadPrefix { text: text.to_owned(), max }),
                };
                match u8::try_from(n) {
                    Ok(n) if n <= max => n,
                    _ => return Err(CidrError::PrefixTooLong { text: text.to_owned(), prefix: n, max }),
                }
            }
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask6(prefix))),
        };
        let cidr = Cidr { addr: network, prefix };
        if network != addr {
            return Err(CidrError::HostBits { text: text.to_owned(), network: cidr });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    /// Always `ADDR/PREFIX`, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose forwarding headers are believed (`server.trusted_proxies`). Empty (the
/// default): none, the TCP peer is the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses each entry (surrounding whitespace ignored) as a [`Cidr`].
    ///
    /// # Errors
    ///
    /// The first entry that is not a CIDR, by its text, position and reason.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .enumerate()
            .map(|(i, s)| s.trim().parse::<Cidr>().map_err(|e| format!("trusted proxy entry {}: {e}", i + 1)))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether the list is empty (no peer is trusted).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in one of the networks (see [`Cidr::contains`]).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The networks, in the order given.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.0
    }
}

impl From<Vec<Cidr>> for TrustedProxies {
    fn from(cidrs: Vec<Cidr>) -> Self {
        TrustedProxies(cidrs)
    }
}

/// Which forwarding header the trusted proxies write (`server.client_ip_header`); the other
/// one is ignored, since a proxy passes through whatever a client sent in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`,
    /// most cloud load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = crate::config::ValueError;
    fn from_str(s: &str) -> Result<ForwardedHeader, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(crate::config::ValueError::Expected("x-forwarded-for or forwarded")),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        })
    }
}

/// One entry of a forwarding list: an address, or something else (`unknown`, an obfuscated
/// `_name`, garbage) that says a proxy did not or could not name its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    Ip(IpAddr),
    Opaque,
}

/// The client's address for a connection from `peer` carrying the raw values of every
/// `Forwarded` header (`forwarded`) and every `X-Forwarded-For` header (`x_forwarded_for`),
/// each in the order received.
///
/// - `peer` not a trusted proxy: `peer`; the headers are ignored (a client cannot spoof its
///   way past the per-IP guard).
/// - Otherwise the hops are the `for=` of each `Forwarded` element if any considered element
///   has a `for`, else the `X-Forwarded-For` entries (ports stripped). Walking from the
///   right, trusted proxies are skipped; the first other entry is the client if it is an
///   address; if it is not (`unknown`, `_obfuscated`, garbage) the answer is the nearest
///   trusted hop to its right (`peer` if it was the right-most), the last address known.
/// - Every entry trusted: the left-most considered. No entries: `peer`.
///
/// At most [`MAX_HOPS`] entries and [`MAX_HEADER_BYTES`] of each kind are considered, from
/// the right.
///
/// `Forwarded` is preferred when present, so if the trusted proxies write only
/// `X-Forwarded-For` and pass a client's `Forwarded` through, the client chooses the answer
/// (and the other way round for `X-Forwarded-For` when they write only `Forwarded`). The
/// caller should pass an empty slice for the header its proxies do not set or strip.
pub fn client_ip(
    peer: IpAddr,
    trusted: &TrustedProxies,
    forwarded: &[&str],
    x_forwarded_for: &[&str],
) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    if !forwarded_hops(forwarded, &mut hops) {
        hops.clear();
        xff_hops(x_forwarded_for, &mut hops);
    }
    let mut nearest_trusted = peer;
    for hop in hops {
        match hop {
            Hop::Ip(ip) if trusted.contains(ip) => nearest_trusted = ip,
            Hop::Ip(ip) => return ip,
            Hop::Opaque => return nearest_trusted,
        }
    }
    nearest_trusted
}

/// Optional whitespace around list items and parameters (RFC 9110 OWS).
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Appends the `X-Forwarded-For` hops to `out`, right-most first.
fn xff_hops(headers: &[&str], out: &mut Vec<Hop>) {
    let mut budget = MAX_HEADER_BYTES;
    for header in headers.iter().rev() {
        let bytes = header.as_bytes();
        let cut = bytes.len() > budget;
        let part = &bytes[bytes.len().saturating_sub(budget)..];
        budget -= part.len();
        let mut entries = part.rsplit(|&b| b == b',').peekable();
        while let Some(entry) = entries.next() {
            if cut && entries.peek().is_none() {
                break; // the left-most entry of a cut header is partial
            }
            let entry = trim(entry);
            if entry.is_empty() {
                continue; // empty list elements are ignored (RFC 9110 §5.6.1)
            }
            out.push(xff_entry(entry));
            if out.len() == MAX_HOPS {
                return;
            }
        }
        if budget == 0 {
            return;
        }
    }
}

/// An `X-Forwarded-For` entry: an address, possibly `1.2.3.4:80`, `[::1]` or `[::1]:80`.
fn xff_entry(entry: &[u8]) -> Hop {
    std::str::from_utf8(entry).ok().and_then(xff_addr).map_or(Hop::Opaque, Hop::Ip)
}

fn xff_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip); // IPv4, or IPv6 without brackets (so without a port)
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(port_digits) {
            return None;
        }
        return host.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = s.split_once(':')?;
    if !port_digits(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port: 1 to 5 decimal digits.
fn port_digits(p: &str) -> bool {
    matches!(p.len(), 1..=5) && p.bytes().all(|b| b.is_ascii_digit())
}

/// Splits at `sep` outside quoted strings (a `"` opens one, `\` escapes the next byte inside
/// it, the next unescaped `"` closes it). An unterminated quote runs to the end.
struct Split<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        match top_level(s, self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

fn split(s: &[u8], sep: u8) -> Split<'_> {
    Split { rest: Some(s), sep }
}

/// The index of the first `sep` outside quoted strings.
fn top_level(s: &[u8], sep: u8) -> Option<usize> {
    top_level_from(s, sep, 0)
}

/// The index of the first `sep` outside quoted strings at or after `from` (the bytes before
/// `from` are still scanned, for the quotes).
fn top_level_from(s: &[u8], sep: u8, from: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == sep && i >= from {
            return Some(i);
        }
    }
    None
}

/// Appends the `Forwarded` hops to `out`, right-most first; returns whether any considered
/// element had a `for` parameter.
fn forwarded_hops(headers: &[&str], out: &mut Vec<Hop>) -> bool {
    let mut budget = MAX_HEADER_BYTES;
    let mut any_for = false;
    let mut line = Vec::new();
    for header in headers.iter().rev() {
        let bytes = header.as_bytes();
        let mut part = bytes;
        if bytes.len() > budget {
            // Only the right-most `budget` bytes are parsed. Where the cut falls inside a
            // quoted string is known only from the bytes before it, so those are scanned for
            // quotes (nothing else): the first element boundary after the cut is then a real
            // one, and the client's bytes cannot change how the proxies' elements read.
            let cut = bytes.len() - budget;
            part = match top_level_from(bytes, b',', cut) {
                Some(i) => &bytes[i + 1..],
                None => &[],
            };
        }
        budget = budget.saturating_sub(bytes.len());
        line.clear();
        line.extend(split(part, b',').filter_map(forwarded_element));
        for &(hop, has_for) in line.iter().rev() {
            out.push(hop);
            any_for |= has_for;
            if out.len() == MAX_HOPS {
                return any_for;
            }
        }
        if budget == 0 {
            break;
        }
    }
    any_for
}

/// A `Forwarded` element (`for=...;proto=...;by=...`): its hop and whether it has a `for`;
/// `None` for an empty element (ignored). An element without exactly one well-formed `for`
/// is an opaque hop.
fn forwarded_element(element: &[u8]) -> Option<(Hop, bool)> {
    let element = trim(element);
    if element.is_empty() {
        return None;
    }
    let (mut fors, mut value, mut bad) = (0, &[][..], false);
    for pair in split(element, b';') {
        let pair = trim(pair);
        if pair.is_empty() {
            continue;
        }
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            bad = true;
            continue;
        };
        if trim(&pair[..eq]).eq_ignore_ascii_case(b"for") {
            fors += 1;
            value = trim(&pair[eq + 1..]);
        }
    }
    let hop = if bad || fors != 1 { Hop::Opaque } else { forwarded_node(value) };
    Some((hop, fors > 0))
}

/// A `for` value, a token or a quoted string holding a node (RFC 7239 §6): `1.2.3.4`,
/// `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80` (ports may be obfuscated, `:_x`) are
/// addresses; `unknown`, `_obfuscated` and anything malformed are opaque.
fn forwarded_node(value: &[u8]) -> Hop {
    let mut buf = [0u8; MAX_NODE_LEN];
    let Some(node) = unquote(value, &mut buf) else { return Hop::Opaque };
    let (host, after) = match node.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => return Hop::Opaque,
        },
        None => match node.iter().position(|&b| b == b':') {
            Some(i) => (&node[..i], &node[i..]),
            None => (node, &[][..]),
        },
    };
    let port_ok = match after {
        [] => true,
        [b':', b'_', name @ ..] => {
            !name.is_empty()
                && name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        [b':', digits @ ..] => matches!(digits.len(), 1..=5) && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let Ok(host) = std::str::from_utf8(host) else { return Hop::Opaque };
    let bracketed = node.starts_with(b"[");
    let ip = if bracketed {
        host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    };
    match ip {
        Some(ip) if port_ok => Hop::Ip(ip),
        _ => Hop::Opaque,
    }
}

/// The value of a token or quoted string, unescaped into `buf`; `None` if it is malformed
/// (an unterminated quote, bytes after the closing quote, a quote inside a token) or longer
/// than `buf`.
fn unquote<'b>(value: &[u8], buf: &'b mut [u8; MAX_NODE_LEN]) -> Option<&'b [u8]> {
    let mut len = 0;
    let mut push = |b: u8| -> Option<()> {
        *buf.get_mut(len)? = b;
        len += 1;
        Some(())
    };
    match value {
        [b'"', inner @ ..] => {
            let mut bytes = inner.iter();
            loop {
                match *bytes.next()? {
                    b'\\' => push(*bytes.next()?)?,
                    b'"' => break,
                    b => push(b)?,
                }
            }
            if bytes.next().is_some() {
                return None;
            }
        }
        token => {
            for &b in token {
                if b == b'"' || b == b'\\' {
                    return None;
                }
                push(b)?;
            }
        }
    }
    Some(&buf[..len])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cidr_parses_and_displays() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.0.2.1/32", "192.0.2.1/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
            ("10.0.0.0/08", "10.0.0.0/8"),
        ];
        for (text, shown) in cases {
            let c: Cidr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.to_string(), shown);
            assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c, "Display round-trips");
        }
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((c.addr(), c.prefix()), (ip("10.0.0.0"), 8));
    }

    #[test]
    fn cidr_errors_name_the_text_and_the_reason() {
        let cases = [
            ("10.0.0.1/8", "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"),
            ("2001:db8::1/32", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"),
            ("0.0.0.1/0", "0.0.0.1/0 has host bits set; did you mean 0.0.0.0/0?"),
            ("10.0.0.0/33", "\"10.0.0.0/33\": prefix length 33 is longer than the 32 bits of the address"),
            ("::/129", "\"::/129\": prefix length 129 is longer than the 128 bits of the address"),
            ("::/999", "\"::/999\": prefix length 999 is longer than the 128 bits of the address"),
            ("10.0.0.0/", "\"10.0.0.0/\": the prefix length must be a number from 0 to 32"),
            ("10.0.0.0/-1", "\"10.0.0.0/-1\": the prefix length must be a number from 0 to 32"),
            ("10.0.0.0/+8", "\"10.0.0.0/+8\": the prefix length must be a number from 0 to 32"),
            ("::/1000", "\"::/1000\": the prefix length must be a number from 0 to 128"),
            ("10.0.0.0/8/8", "\"10.0.0.0/8/8\": the prefix length must be a number from 0 to 32"),
            ("10.0.0.0/ 8", "\"10.0.0.0/ 8\": the prefix length must be a number from 0 to 32"),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Cidr>().unwrap_err().to_string(), want);
        }
        for text in [
            "",
            "/8",
            "localhost",
            "10.0.0",
            "10.0.0.0.0/8",
            "[::1]",
            "::1%eth0",
            " 10.0.0.0/8",
            "010.0.0.0/8",
        ] {
            match text.parse::<Cidr>() {
                Err(e @ CidrError::NotAnAddress(_)) => {
                    assert!(e.to_string().starts_with(&format!("{text:?} is not an IP address")), "{e}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn cidr_contains_edges() {
        let cases = [
            ("0.0.0.0/0", "255.255.255.255", true),
            ("0.0.0.0/0", "0.0.0.0", true),
            ("0.0.0.0/0", "::1", false),
            ("0.0.0.0/0", "::ffff:8.8.8.8", true),
            ("::/0", "2001:db8::1", true),
            ("::/0", "8.8.8.8", false),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "::ffff:11.0.0.1", false),
            ("10.0.0.0/8", "::a00:1", false), // IPv4-compatible, not mapped
            ("10.0.0.0/8", "64:ff9b::a00:1", false), // NAT64, not mapped
            ("192.0.2.1/32", "192.0.2.1", true),
            ("192.0.2.1/32", "192.0.2.0", false),
            ("192.0.2.1/32", "192.0.2.2", false),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("::1/128", "127.0.0.1", false),
            ("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db8::/32", "2001:db9::", false),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
            ("::ffff:0:0/96", "::ffff:1.2.3.4", true),
            ("::ffff:0:0/96", "1.2.3.4", false),
        ];
        for (net, addr, want) in cases {
            assert_eq!(net.parse::<Cidr>().unwrap().contains(ip(addr)), want, "{net} ∋ {addr}");
        }
    }

    #[test]
    fn trusted_proxies_parse() {
        let t = trusted(&["10.0.0.0/8", " ::1 ", "192.168.0.0/16"]);
        assert!(!t.is_empty());
        assert_eq!(t.cidrs().len(), 3);
        assert!(t.contains(ip("10.1.2.3")) && t.contains(ip("::1")) && t.contains(ip("192.168.9.9")));
        assert!(!t.contains(ip("8.8.8.8")));
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        let e = TrustedProxies::parse(&["10.0.0.0/8".into(), "10.0.0.1/8".into()]).unwrap_err();
        assert_eq!(e, "trusted proxy entry 2: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?");
        let e = TrustedProxies::parse(&["proxy.internal".into()]).unwrap_err();
        assert!(e.starts_with("trusted proxy entry 1: \"proxy.internal\" is not an IP address"), "{e}");
        let from: TrustedProxies = vec!["::1".parse().unwrap()].into();
        assert_eq!(from, trusted(&["::1"]));
    }

    /// (what, peer, Forwarded values, X-Forwarded-For values, answer)
    type Case = (&'static str, &'static str, &'static [&'static str], &'static [&'static str], &'static str);

    #[test]
    fn client_ip_table() {
        let t = trusted(&["10.0.0.0/8", "2001:db8:ffff::/48", "127.0.0.1"]);
        let cases: &[Case] = &[
            ("untrusted peer: headers ignored", "203.0.113.5", &["for=1.1.1.1"], &["1.2.3.4"], "203.0.113.5"),
            ("untrusted v6 peer", "2001:db8::9", &[], &["10.0.0.1"], "2001:db8::9"),
            ("trusted peer, no headers", "10.0.0.1", &[], &[], "10.0.0.1"),
            ("trusted peer, empty headers", "10.0.0.1", &[""], &["", " , "], "10.0.0.1"),
            ("XFF one address", "10.0.0.1", &[], &["1.2.3.4"], "1.2.3.4"),
            ("XFF spoofed left part ignored", "10.0.0.1", &[], &["6.6.6.6, 1.2.3.4, 10.0.0.2"], "1.2.3.4"),
            ("XFF across headers", "10.0.0.1", &[], &["6.6.6.6, 1.2.3.4", "10.0.0.2"], "1.2.3.4"),
            ("XFF all trusted: left-most", "10.0.0.1", &[], &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            ("XFF with ports", "10.0.0.1", &[], &["1.2.3.4:5678, 10.0.0.2:80"], "1.2.3.4"),
            ("XFF IPv6 bracketed with port", "10.0.0.1", &[], &["[2001:db8::7]:443"], "2001:db8::7"),
            ("XFF IPv6 bracketed", "10.0.0.1", &[], &["[2001:db8::7]"], "2001:db8::7"),
            ("XFF IPv6 bare", "10.0.0.1", &[], &["2001:db8::7, 2001:db8:ffff::1"], "2001:db8::7"),
            ("XFF tabs and spaces", "10.0.0.1", &[], &["\t1.2.3.4 ,\t 10.0.0.2\t"], "1.2.3.4"),
            ("XFF empty elements", "10.0.0.1", &[], &[",1.2.3.4,,"], "1.2.3.4"),
            (
                "XFF garbage at the client's place",
                "10.0.0.1",
                &[],
                &["1.2.3.4, nonsense, 10.0.0.2"],
                "10.0.0.2",
            ),
            ("XFF garbage right-most: peer", "10.0.0.1", &[], &["1.2.3.4, unknown"], "10.0.0.1"),
            ("XFF garbage left of the client", "10.0.0.1", &[], &["junk, 1.2.3.4"], "1.2.3.4"),
            ("XFF bad port", "10.0.0.1", &[], &["1.2.3.4:http"], "10.0.0.1"),
            ("XFF six-digit port", "10.0.0.1", &[], &["1.2.3.4:123456"], "10.0.0.1"),
            ("XFF port on bare IPv6 is an address", "10.0.0.1", &[], &["::1:80"], "::1:80"),
            ("XFF zone id", "10.0.0.1", &[], &["fe80::1%eth0"], "10.0.0.1"),
            ("XFF leading zero", "10.0.0.1", &[], &["01.2.3.4"], "10.0.0.1"),
            ("XFF mapped client", "10.0.0.1", &[], &["::ffff:1.2.3.4"], "::ffff:1.2.3.4"),
            ("XFF mapped trusted hop", "10.0.0.1", &[], &["1.2.3.4, ::ffff:10.9.9.9"], "1.2.3.4"),
            ("IPv4-mapped trusted peer", "::ffff:10.0.0.1", &[], &["1.2.3.4"], "1.2.3.4"),
            ("IPv4-mapped untrusted peer", "::ffff:8.8.8.8", &[], &["1.2.3.4"], "::ffff:8.8.8.8"),
            ("trusted v6 peer", "2001:db8:ffff::1", &[], &["198.51.100.1"], "198.51.100.1"),
            (
                "Forwarded simple",
                "10.0.0.1",
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                &[],
                "192.0.2.60",
            ),
            (
                "Forwarded quoted IPv6 with port",
                "10.0.0.1",
                &["for=\"[2001:db8:cafe::17]:4711\""],
                &[],
                "2001:db8:cafe::17",
            ),
            ("Forwarded quoted IPv6", "10.0.0.1", &["For=\"[2001:db8:cafe::17]\""], &[], "2001:db8:cafe::17"),
            ("Forwarded quoted IPv4 with port", "10.0.0.1", &["for=\"192.0.2.60:8080\""], &[], "192.0.2.60"),
            ("Forwarded obfuscated port", "10.0.0.1", &["for=\"192.0.2.60:_p1\""], &[], "192.0.2.60"),
            ("Forwarded mixed-case name", "10.0.0.1", &["FOR=192.0.2.43, fOr=10.0.0.5"], &[], "192.0.2.43"),
            ("Forwarded list", "10.0.0.1", &["for=6.6.6.6, for=192.0.2.43, for=10.0.0.5"], &[], "192.0.2.43"),
            (
                "Forwarded across headers",
                "10.0.0.1",
                &["for=6.6.6.6, for=192.0.2.43", "for=10.0.0.5;proto=https"],
                &[],
                "192.0.2.43",
            ),
            ("Forwarded all trusted", "10.0.0.1", &["for=10.1.1.1", "for=10.0.0.5"], &[], "10.1.1.1"),
            (
                "Forwarded unknown at the client's place",
                "10.0.0.1",
                &["for=1.2.3.4, for=unknown, for=10.0.0.5"],
                &[],
                "10.0.0.5",
            ),
            ("Forwarded unknown right-most", "10.0.0.1", &["for=1.2.3.4, for=unknown"], &[], "10.0.0.1"),
            ("Forwarded UNKNOWN", "10.0.0.1", &["for=UNKNOWN"], &[], "10.0.0.1"),
            (
                "Forwarded obfuscated",
                "10.0.0.1",
                &["for=1.2.3.4, for=_hidden, for=10.0.0.5"],
                &[],
                "10.0.0.5",
            ),
            ("Forwarded quoted obfuscated", "10.0.0.1", &["for=\"_SEVKISEK\""], &[], "10.0.0.1"),
            (
                "Forwarded spaces around ; and ,",
                "10.0.0.1",
                &["for=1.2.3.4 ; proto=https ,\tfor=10.0.0.5 "],
                &[],
                "1.2.3.4",
            ),
            ("Forwarded empty elements", "10.0.0.1", &[", for=1.2.3.4,,"], &[], "1.2.3.4"),
            ("Forwarded escapes", "10.0.0.1", &["for=\"1\\.2.3.4\""], &[], "1.2.3.4"),
            (
                "Forwarded comma inside quotes",
                "10.0.0.1",
                &["for=1.2.3.4, for=\"a,b\", for=10.0.0.5"],
                &[],
                "10.0.0.5",
            ),
            ("Forwarded ; inside quotes", "10.0.0.1", &["for=\"x;for=9.9.9.9\""], &[], "10.0.0.1"),
            ("Forwarded unbracketed IPv6 is opaque", "10.0.0.1", &["for=\"2001:db8::1\""], &[], "10.0.0.1"),
            ("Forwarded IPv4 in brackets is opaque", "10.0.0.1", &["for=\"[1.2.3.4]\""], &[], "10.0.0.1"),
            ("Forwarded unterminated quote", "10.0.0.1", &["for=\"1.2.3.4"], &[], "10.0.0.1"),
            ("Forwarded bytes after the quote", "10.0.0.1", &["for=\"1.2.3.4\"x"], &[], "10.0.0.1"),
            ("Forwarded two fors in an element", "10.0.0.1", &["for=1.2.3.4;for=5.6.7.8"], &[], "10.0.0.1"),
            ("Forwarded pair without =", "10.0.0.1", &["for=1.2.3.4;secure"], &[], "10.0.0.1"),
            ("Forwarded empty for", "10.0.0.1", &["for="], &[], "10.0.0.1"),
            ("Forwarded element without for", "10.0.0.1", &["for=1.2.3.4, proto=https"], &[], "10.0.0.1"),
            ("Forwarded preferred over XFF", "10.0.0.1", &["for=192.0.2.1"], &["198.51.100.1"], "192.0.2.1"),
            (
                "Forwarded without for: XFF",
                "10.0.0.1",
                &["proto=https;by=10.0.0.1"],
                &["198.51.100.1"],
                "198.51.100.1",
            ),
            ("Forwarded unparsable: XFF", "10.0.0.1", &["garbage"], &["198.51.100.1"], "198.51.100.1"),
            (
                "Forwarded for=unknown counts as present",
                "10.0.0.1",
                &["for=unknown"],
                &["198.51.100.1"],
                "10.0.0.1",
            ),
        ];
        for (what, peer, fwd, xff, want) in cases {
            assert_eq!(
                client_ip(ip(peer), &t, fwd, xff),
                ip(want),
                "{what}: peer {peer}, Forwarded {fwd:?}, XFF {xff:?}"
            );
        }
    }

    #[test]
    fn nothing_trusted_means_the_peer() {
        let none = TrustedProxies::default();
        assert_eq!(client_ip(ip("10.0.0.1"), &none, &["for=1.2.3.4"], &["1.2.3.4"]), ip("10.0.0.1"));
    }

    #[test]
    fn only_64_hops_are_considered() {
        let t = trusted(&["10.0.0.0/8"]);
        let chain = |trusted_hops: usize| {
            let mut list = vec!["1.2.3.4".to_owned()];
            list.extend((0..trusted_hops).map(|i| format!("10.0.{}.{}", i / 256, i % 256)));
            list
        };
        // 1 + 63 trusted: the client is the 64th hop from the right.
        let xff = chain(63).join(", ");
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[xff.as_str()]), ip("1.2.3.4"));
        // 1 + 64: the client is beyond the bound; the left-most considered hop answers.
        let xff = chain(64).join(", ");
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[xff.as_str()]), ip("10.0.0.0"));
        let fwd = chain(64).iter().map(|h| format!("for={h}")).collect::<Vec<_>>().join(", ");
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[fwd.as_str()], &[]), ip("10.0.0.0"));
        let fwd = chain(63).iter().map(|h| format!("for={h}")).collect::<Vec<_>>();
        let fwd: Vec<&str> = fwd.iter().map(String::as_str).collect();
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &fwd, &[]), ip("1.2.3.4"));
    }

    #[test]
    fn only_the_last_8_kib_are_considered() {
        let t = trusted(&["10.0.0.0/8"]);
        let padding = "6.6.6.6, ".repeat(2000); // 18 000 bytes
        // The client and proxy on the right survive any padding on the left.
        let xff = format!("{padding}1.2.3.4, 10.0.0.2");
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[xff.as_str()]), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[padding.as_str(), "1.2.3.4"]), ip("1.2.3.4"));
        // A cut inside an address never yields a shortened one: "116.6.6.6" cut to "6.6.6.6".
        let long = format!("{}, 10.0.0.2", "116.6.6.6, 10.1.1.1, ".repeat(500)); // > 8 KiB
        let got = client_ip(ip("10.0.0.1"), &t, &[], &[long.as_str()]);
        assert!(got == ip("116.6.6.6") || t.contains(got), "{got}");
        let trusted_only = "10.1.1.1, ".repeat(1000);
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[trusted_only.as_str(), "10.0.0.9"]), ip("10.1.1.1"));

        // Forwarded: a cut inside the client's quoted string does not change how the
        // proxies' elements on its right read.
        let quoted = format!("for=\"_{}\"", "x, for=6.6.6.6, ".repeat(600)); // ~9 KiB, one element
        let fwd = format!("{quoted}, for=1.2.3.4, for=10.0.0.2");
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[fwd.as_str()], &[]), ip("1.2.3.4"));
        // And one that opens a quote only in the part cut away.
        let fwd = format!("for=\"{}\", for=\"a\\\"b\", for=1.2.3.4", "y".repeat(9000));
        assert_eq!(client_ip(ip("10.0.0.1"), &t, &[fwd.as_str()], &[]), ip("1.2.3.4"));
    }

    /// Whether `ip` is written in one of `texts` (backslashes removed, as unescaping would
    /// remove them): some substring of at most 45 characters, the longest address text,
    /// parses to it.
    fn written_in(texts: &[String], ip: IpAddr) -> bool {
        texts.iter().any(|t| {
            let t: Vec<char> = t.chars().filter(|&c| c != '\\').collect();
            (0..t.len()).any(|i| {
                (i + 2..=t.len().min(i + 45)).any(|j| t[i..j].iter().collect::<String>().parse() == Ok(ip))
            })
        })
    }

    fn header_value() -> impl Strategy<Value = String> {
        let item = prop_oneof![
            any::<IpAddr>().prop_map(|ip| ip.to_string()),
            (any::<IpAddr>(), any::<u16>())
                .prop_map(|(ip, p)| std::net::SocketAddr::from((ip, p)).to_string()),
            (0u8..=255).prop_map(|b| format!("10.0.0.{b}")),
            Just("::ffff:10.0.0.7".to_owned()),
            any::<IpAddr>().prop_map(|ip| format!("for={ip}")),
            any::<std::net::SocketAddr>().prop_map(|a| format!("for=\"{a}\"")),
            (0u8..=255).prop_map(|b| format!("For=10.9.9.{b};proto=https")),
            Just("for=unknown".to_owned()),
            Just("for=_hidden".to_owned()),
            "[ -~]{0,16}",
            "[0-9a-fA-F.:\\[\\]\",;=_\\\\ ]{0,20}",
            ".{0,8}",
        ];
        prop::collection::vec(item, 0..6).prop_map(|items| items.join(", "))
    }

    fn peer() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just(ip("10.0.0.1")),
            Just(ip("::ffff:10.0.0.1")),
            Just(ip("::1")),
            Just(ip("8.8.8.8")),
            any::<IpAddr>(),
        ]
    }

    proptest! {
        #[test]
        fn answer_is_the_peer_or_written_in_a_header(
            peer in peer(),
            fwd in prop::collection::vec(header_value(), 0..3),
            xff in prop::collection::vec(header_value(), 0..3),
        ) {
            let t = trusted(&["10.0.0.0/8", "::1"]);
            let f: Vec<&str> = fwd.iter().map(String::as_str).collect();
            let x: Vec<&str> = xff.iter().map(String::as_str).collect();
            let got = client_ip(peer, &t, &f, &x);
            if !t.contains(peer) {
                prop_assert_eq!(got, peer);
            } else if got != peer {
                prop_assert!(written_in(&[fwd.clone(), xff.clone()].concat(), got), "{got} is in no header: {f:?} {x:?}");
            }
        }

        #[test]
        fn a_trusted_proxy_names_the_client(client in any::<IpAddr>(), port in any::<u16>(), left in header_value()) {
            let t = trusted(&["10.0.0.0/8"]);
            prop_assume!(!t.contains(client));
            // Whatever the client put on the left, the proxy's entry on the right wins.
            let xff = format!("{left}, {}", std::net::SocketAddr::from((client, port)));
            prop_assert_eq!(client_ip(ip("10.0.0.1"), &t, &[], &[left.as_str(), xff.as_str()]), client);
            let fwd = format!("for=\"{}\"", std::net::SocketAddr::from((client, port)));
            prop_assert_eq!(client_ip(ip("10.0.0.1"), &t, &[left.as_str(), fwd.as_str()], &[]), client);
        }
    }
}
