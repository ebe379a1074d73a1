//! A minimal HTTP/1.1 GET client for the gateway's `/stats` and `/snapshot`: one request
//! per connection (`Connection: close`), body by `Content-Length`, chunked encoding, or
//! read to EOF. Bounded in size and time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted.
pub const MAX_RESPONSE: usize = 256 << 20;

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// `GET path` from `addr` (with `host` in the Host header), within `timeout`.
///
/// # Errors
///
/// A message naming the URL: connect, I/O, timeout, or an unparseable response.
pub async fn get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<Response, String> {
    let url = format!("http://{host}{path}");
    match tokio::time::timeout(timeout, get_inner(addr, host, path)).await {
        Ok(r) => r.map_err(|e| format!("GET {url}: {e}")),
        Err(_) => Err(format!("GET {url}: no response within {timeout:?}")),
    }
}

async fn get_inner(addr: SocketAddr, host: &str, path: &str) -> Result<Response, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = parse_complete(&buf)? {
            return Ok(r);
        }
    }
    parse_complete(&buf)?.or_else(|| parse_to_eof(&buf)).ok_or_else(|| "truncated response".to_string())
}

/// A parsed response head.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    body_start: usize,
}

/// Parses the status line and headers, once they are complete.
fn head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response header is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let (mut len, mut chunked) = (None, false);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    Ok(Some(Head { status, content_length: len, chunked, body_start: end + 4 }))
}

/// The response, if `buf` holds all of it (by length or complete chunks).
fn parse_complete(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(Head { status, content_length, chunked, body_start }) = head(buf)? else { return Ok(None) };
    let body = &buf[body_start..];
    if chunked {
        return Ok(dechunk(body).map(|body| Response { status, body }));
    }
    Ok(match content_length {
        Some(n) if body.len() >= n => Some(Response { status, body: body[..n].to_vec() }),
        _ => None,
    })
}

fn parse_to_eof(buf: &[u8]) -> Option<Response> {
    let h = head(buf).ok()??;
    Some(Response { status: h.status, body: buf[h.body_start..].to_vec() })
}

/// The body of a complete chunked encoding, or `None` if incomplete.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_chunks() {
        let r = parse_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA").unwrap().unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        assert_eq!(parse_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nok").unwrap(), None);
        let c =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_complete(c).unwrap().unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"abcde"[..]));
        assert_eq!(parse_complete(&c[..c.len() - 7]).unwrap(), None);
        assert!(parse_complete(b"nonsense\r\n\r\n").is_err());
        let r = parse_to_eof(b"HTTP/1.0 200 OK\r\n\r\nall").unwrap();
        assert_eq!(r.body, b"all");
    }
}
