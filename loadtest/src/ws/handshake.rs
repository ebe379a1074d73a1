//! The WebSocket opening handshake (RFC 6455 §4.1), client side, with no I/O: build the
//! upgrade request, then check the server's response once its header block is complete.
//!
//! The client offers the subprotocol of its format (`tickgate.v1.json` or
//! `tickgate.v1.binary`, which wins over any `?format=` in the URL, docs/PROTOCOL.md) and
//! requires the server to echo it, so a client never silently receives the wrong format.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};

/// The GUID every server appends to the key (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest response header block accepted.
pub const MAX_RESPONSE_HEADER: usize = 16 * 1024;

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an HTTP/1.1 status line.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// A status other than 101 (e.g. 503 at the connection limit).
    #[error("server answered {status} instead of 101: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body, or the reason phrase.
        body: String,
    },
    /// A required header is missing or wrong.
    #[error("bad upgrade response: {0}")]
    Header(String),
    /// The response header block is larger than [`MAX_RESPONSE_HEADER`].
    #[error("response header larger than {MAX_RESPONSE_HEADER} bytes")]
    TooLarge,
}

/// Checks that `head` is an HTTP/1.x response with status `want`; returns its header lines.
/// Another status is [`HandshakeError::Status`], with the start of the body (`after`).
fn status_is<'h>(
    head: &'h [u8],
    after: &[u8],
    want: u16,
) -> Result<std::str::Split<'h, &'static str>, HandshakeError> {
    let text = std::str::from_utf8(head).map_err(|_| HandshakeError::Malformed("not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HandshakeError::Malformed(format!("status line {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HandshakeError::Malformed(format!("status line {status_line:?}")));
    }
    let status: u16 =
        code.parse().map_err(|_| HandshakeError::Malformed(format!("status line {status_line:?}")))?;
    if status != want {
        let reason = parts.next().unwrap_or("");
        let body = String::from_utf8_lossy(&after[..after.len().min(200)]);
        let body = body.trim();
        return Err(HandshakeError::Status {
            status,
            body: if body.is_empty() { reason.to_string() } else { body.to_string() },
        });
    }
    Ok(lines)
}

/// Checks the response to `GET /sse`: `200`, `Content-Type: text/event-stream`, chunked.
///
/// # Errors
///
/// As [`check_response`], for another status or a missing header.
pub fn check_sse_response(head: &[u8], after: &[u8]) -> Result<(), HandshakeError> {
    let (mut event_stream, mut chunked) = (false, false);
    for line in status_is(head, after, 200)? {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => event_stream = value.starts_with("text/event-stream"),
            "transfer-encoding" => chunked = value.contains("chunked"),
            _ => {}
        }
    }
    if !event_stream {
        return Err(HandshakeError::Header("Content-Type is not text/event-stream".into()));
    }
    if !chunked {
        return Err(HandshakeError::Header("the event stream is not chunked".into()));
    }
    Ok(())
}

/// A random 16-byte key, base64-encoded (24 characters).
pub fn random_key(rng: &mut fastrand::Rng) -> String {
    let mut k = [0u8; 16];
    rng.fill(&mut k);
    B64.encode(k)
}

/// The `Sec-WebSocket-Accept` value a server must send for `key`.
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    B64.encode(h.finalize())
}

/// The upgrade request for `path_and_query` on `host` (as `host:port`), offering
/// `subprotocol`.
pub fn request(host: &str, path_and_query: &str, key: &str, subprotocol: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\
         User-Agent: tickgate-loadtest/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Where the header block of `buf` ends (just past `\r\n\r\n`), if it is complete.
pub fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Checks a complete response header block `head` (up to and including `\r\n\r\n`) against
/// the request's `key` and `subprotocol`. `after` is whatever followed the header block
/// (the body of an error response), used only for the error message.
///
/// # Errors
///
/// A [`HandshakeError`] saying what is wrong.
pub fn check_response(head: &[u8], after: &[u8], key: &str, subprotocol: &str) -> Result<(), HandshakeError> {
    let lines = status_is(head, after, 101)?;
    let (mut upgrade, mut connection, mut accept, mut protocol) = (None, None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = Some(value),
            "connection" => connection = Some(value),
            "sec-websocket-accept" => accept = Some(value),
            "sec-websocket-protocol" => protocol = Some(value),
            _ => {}
        }
    }
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::Header(format!("Upgrade: {upgrade:?}, expected websocket")));
    }
    if !connection.is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))) {
        return Err(HandshakeError::Header(format!("Connection: {connection:?}, expected Upgrade")));
    }
    let want = accept_for(key);
    if accept != Some(want.as_str()) {
        return Err(HandshakeError::Header(format!("Sec-WebSocket-Accept {accept:?}, expected {want:?}")));
    }
    if protocol != Some(subprotocol) {
        return Err(HandshakeError::Header(format!(
            "Sec-WebSocket-Protocol {protocol:?}, expected {subprotocol:?} echoed"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn response(accept: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-accept: {accept}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accepts_a_good_response_and_rejects_bad_ones() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = response(&accept_for(key), "sec-websocket-protocol: tickgate.v1.json\r\n");
        assert_eq!(header_end(good.as_bytes()), Some(good.len()));
        check_response(good.as_bytes(), b"", key, "tickgate.v1.json").unwrap();
        // (response, subprotocol, what the error must mention)
        let cases = [
            (good.clone(), "tickgate.v1.binary", "Protocol"),
            (response("wrong", "sec-websocket-protocol: tickgate.v1.json\r\n"), "tickgate.v1.json", "Accept"),
            (response(&accept_for(key), ""), "tickgate.v1.json", "Protocol"),
            (good.replace("upgrade: websocket", "upgrade: h2c"), "tickgate.v1.json", "Upgrade"),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n".to_string(), "tickgate.v1.json", "503"),
            ("garbage\r\n\r\n".to_string(), "tickgate.v1.json", "status line"),
        ];
        for (resp, proto, needle) in cases {
            let e = check_response(resp.as_bytes(), b"connection limit reached", key, proto).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} should mention {needle}");
        }
    }

    #[test]
    fn keys_are_random_and_well_formed() {
        let mut rng = fastrand::Rng::with_seed(1);
        let a = random_key(&mut rng);
        let b = random_key(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        let req = String::from_utf8(request("127.0.0.1:9000", "/ws", &a, "tickgate.v1.json")).unwrap();
        assert!(req.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(req.contains(&format!("Sec-WebSocket-Key: {a}\r\n")));
    }
}
