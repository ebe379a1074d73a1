//! `ws://host:port/path?query` targets: parsed and resolved once, before any connection.
//! TLS (`wss://`) is not supported: the gateway speaks plain WebSocket.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// A resolved WebSocket target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// The URL as given.
    pub raw: String,
    /// `host:port` for the `Host` header.
    pub host: String,
    /// The resolved address (the first one the resolver returns).
    pub addr: SocketAddr,
    /// `/path?query` of the upgrade request.
    pub path_and_query: String,
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl WsUrl {
    /// Parses and resolves `raw`: `ws://HOST[:PORT][/PATH][?QUERY]`, port 80 by default,
    /// path `/ws` when none is given.
    ///
    /// # Errors
    ///
    /// A message naming the URL and what is wrong with it.
    pub fn parse(raw: &str) -> Result<WsUrl, String> {
        let rest = raw.strip_prefix("ws://").ok_or_else(|| {
            format!("--url {raw:?}: only ws:// URLs are supported (e.g. ws://127.0.0.1:9000/ws)")
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        if authority.is_empty() {
            return Err(format!("--url {raw:?}: no host"));
        }
        let path_and_query = if path.starts_with('?') { format!("/ws{path}") } else { path.to_string() };
        if path_and_query.contains("format=") {
            return Err(format!(
                "--url {raw:?}: do not put format= in the URL; use --format json|binary|mixed"
            ));
        }
        let host = if authority.starts_with('[')
            || authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("--url {raw:?}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {raw:?}: {host} resolves to no address"))?;
        Ok(WsUrl { raw: raw.to_string(), host, addr, path_and_query })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        // (input, host, path)
        let cases = [
            ("ws://127.0.0.1:9000/ws", "127.0.0.1:9000", "/ws"),
            ("ws://127.0.0.1:9000", "127.0.0.1:9000", "/ws"),
            ("ws://127.0.0.1:9000?x=1", "127.0.0.1:9000", "/ws?x=1"),
            ("ws://localhost:81/feed", "localhost:81", "/feed"),
            ("ws://127.0.0.2", "127.0.0.2:80", "/ws"),
        ];
        for (raw, host, path) in cases {
            let u = WsUrl::parse(raw).unwrap();
            assert_eq!(u.host, host, "{raw}");
            assert_eq!(u.path_and_query, path, "{raw}");
            assert!(u.addr.ip().is_loopback());
        }
        for bad in
            ["http://127.0.0.1:9000/ws", "wss://x/ws", "ws:///ws", "ws://127.0.0.1:9000/ws?format=binary"]
        {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
