//! `GET /sse?symbols=A,B[&trades=1][&depth=N][&max_rate=R][&format=json][&token=T]`: the same stream as
//! a WebSocket, as Server-Sent Events (`text/event-stream`), for networks whose proxies break
//! WebSocket upgrades.
//!
//! Everything a WebSocket client is promised holds: the same admission (Origin allow-list,
//! token, per-IP guards, capacity), a snapshot per symbol, conflated updates, trades and
//! gaps, `max_rate`, the slow-client rules and the bandwidth default. Errors before the
//! stream starts are HTTP statuses with a JSON body (`{"error":..,"message":..}`), since an
//! `EventSource` cannot read a reply any other way.
//!
//! How: the request becomes a shard connection like any other, of format
//! [`Format::Sse`], whose socket is one end of a Unix socket pair; the HTTP response body
//! ([`SseBody`]) streams from the other end. hyper frames the body (chunked), encrypts it
//! under TLS and applies its own backpressure, so a client that stops reading stops the body
//! from being read, the pair fills, and the shard conflates for it as for a full TCP socket.
//! The subscription is the request itself ([`Session::initial`]); the client sends nothing.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UnixStream;

use super::App;
use super::admit::Admitted;
use super::routes::{Body, Resp, admission, json_resp, query_pairs};
use crate::protocol::control::MaxRate;
use crate::protocol::{Format, json};
use crate::shard::{NewConnection, Session, Socket};

/// What the browser waits before reconnecting a dropped stream (the stream's first line).
const RETRY: &[u8] = b"retry: 2000\n\n";

/// Largest chunk the body hands hyper at once.
const READ_CHUNK: usize = 16 * 1024;

/// What an SSE request asks for.
#[derive(Debug, PartialEq)]
struct Wanted {
    symbols: Vec<String>,
    trades: bool,
    max_rate: Option<String>,
    /// Order-book levels a side (0: none).
    depth: u16,
}

/// A refusal before the stream starts: status, `error` code and message, as JSON.
fn refuse(status: StatusCode, code: &str, message: &str, symbols: &[&str]) -> Resp {
    let mut body = b"{\"error\":".to_vec();
    json::escape_str(&mut body, code);
    body.extend_from_slice(b",\"message\":");
    json::escape_str(&mut body, message);
    if !symbols.is_empty() {
        body.extend_from_slice(b",\"symbols\":");
        json::write_string_array(&mut body, symbols.iter().copied());
    }
    body.push(b'}');
    json_resp(status, body)
}

/// Reads the query. Errors are the `bad_request` message.
fn parse(query: &str) -> Result<Wanted, String> {
    let mut r = Wanted { symbols: Vec::new(), trades: false, max_rate: None, depth: 0 };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "symbols" => {
                r.symbols.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from))
            }
            "trades" => {
                r.trades = match v.as_str() {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    other => return Err(format!("trades must be 1 or 0, got {other:?}")),
                }
            }
            "max_rate" => {
                let ok = v.parse::<f64>().ok().filter(|r| *r == 0.0 || MaxRate::from_rate(*r).is_some());
                if ok.is_none() {
                    return Err(format!("max_rate must be a number in (0, 1000] or 0, got {v:?}"));
                }
                r.max_rate = Some(v);
            }
            "depth" => {
                r.depth =
                    v.parse().map_err(|_| format!("depth must be an integer from 0 to 65535, got {v:?}"))?;
            }
            "format" if v != "json" => {
                return Err(format!("format {v:?} is not available over SSE (only json)"));
            }
            _ => {}
        }
    }
    if r.symbols.is_empty() {
        return Err("missing ?symbols=AAPL,MSFT".into());
    }
    Ok(r)
}

/// `GET /sse`.
pub(crate) fn handle(req: &Request<Incoming>, peer: SocketAddr, app: &Arc<App>) -> Resp {
    let wanted = match parse(req.uri().query().unwrap_or("")) {
        Ok(w) => w,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, "bad_request", &m, &[]),
    };
    let Admitted { grant, guard } = match admission(req, peer, app, false) {
        Ok(a) => a,
        Err(denied) => {
            return denied
                .respond(&app.guards.rejections, |d| refuse(d.status(), d.code(), d.body().trim_end(), &[]));
        }
    };
    let names: Vec<&str> = wanted.symbols.iter().map(String::as_str).collect();
    let unknown: Vec<&str> = names.iter().copied().filter(|n| app.universe.id(n).is_none()).collect();
    if !unknown.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "unknown_symbol", "unknown symbol(s)", &unknown);
    }
    if let Some(g) = &grant {
        let denied: Vec<&str> = names.iter().copied().filter(|n| !g.allows(n)).collect();
        if !denied.is_empty() {
            return refuse(
                StatusCode::FORBIDDEN,
                "not_entitled",
                "symbol(s) not covered by your token",
                &denied,
            );
        }
    }
    if usize::from(wanted.depth) > app.books.depth() {
        let m = format!("depth {} is over this server's max_depth ({})", wanted.depth, app.books.depth());
        return refuse(StatusCode::BAD_REQUEST, "bad_request", &m, &[]);
    }
    let max = app.live.config().server.max_symbols_per_client;
    if names.len() > max {
        let m = format!("{} symbols; at most {max} (server.max_symbols_per_client)", names.len());
        return refuse(StatusCode::BAD_REQUEST, "too_many_symbols", &m, &[]);
    }
    if let Some(last) = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()) {
        // The gateway conflates: a reconnecting client needs the current state (fresh
        // snapshots, which every stream starts with), not a replay from its last event.
        tracing::debug!(%peer, last, "SSE reconnect: fresh snapshots");
    }
    let mut subscribe = br#"{"op":"subscribe","symbols":"#.to_vec();
    json::write_string_array(&mut subscribe, names.iter().copied());
    if wanted.trades {
        subscribe.extend_from_slice(br#","trades":true"#);
    }
    if let Some(r) = &wanted.max_rate {
        subscribe.extend_from_slice(format!(r#","max_rate":{r}"#).as_bytes());
    }
    if wanted.depth > 0 {
        subscribe.extend_from_slice(format!(r#","depth":{}"#, wanted.depth).as_bytes());
    }
    subscribe.push(b'}');
    let initial = String::from_utf8(subscribe).ok();

    let (shard_end, body_end) = match std::os::unix::net::UnixStream::pair() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "SSE: no socket pair");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "capacity", "no socket available; retry", &[]);
        }
    };
    let body_end = match body_end.set_nonblocking(true).and_then(|()| UnixStream::from_std(body_end)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "SSE: could not register the socket pair");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "capacity", "no socket available; retry", &[]);
        }
    };
    let Some(shard) = app.pick_shard() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "server shutting down", &[]);
    };
    let conn = NewConnection {
        stream: Socket::Pair(shard_end),
        leftover: Bytes::new(),
        format: Format::Sse,
        peer,
        guard,
        session: Session { echo: false, grant, initial },
        tls: None,
    };
    if shard.hand_off(conn).is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "server shutting down", &[]);
    }
    let mut r =
        Response::new(Body::Right(SseBody { pair: body_end, prefix: Some(Bytes::from_static(RETRY)) }));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    // nginx and friends: do not buffer this response.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The body of an SSE response: what the shard writes into its end of the socket pair.
/// Ends when the shard closes its end (the connection closed); dropped by hyper when the
/// client goes away, which the shard sees as a failed write.
pub struct SseBody {
    pair: UnixStream,
    /// The `retry:` line, sent first.
    prefix: Option<Bytes>,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.pair).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(buf.filled()))))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_strictly() {
        let ok = parse("symbols=AAPL,MSFT&trades=1&max_rate=2.5&format=json&depth=10").unwrap();
        assert_eq!(
            ok,
            Wanted {
                symbols: vec!["AAPL".into(), "MSFT".into()],
                trades: true,
                max_rate: Some("2.5".into()),
                depth: 10,
            }
        );
        assert_eq!(parse("symbols=A&symbols=B").unwrap().symbols, ["A", "B"]);
        for (q, want) in [
            ("", "missing ?symbols"),
            ("symbols=", "missing ?symbols"),
            ("symbols=A&trades=yes", "trades must be 1 or 0"),
            ("symbols=A&max_rate=5000", "max_rate must be"),
            ("symbols=A&max_rate=fast", "max_rate must be"),
            ("symbols=A&format=binary", "not available over SSE"),
            ("symbols=A&depth=-1", "depth must be"),
            ("symbols=A&depth=ten", "depth must be"),
        ] {
            assert!(parse(q).unwrap_err().contains(want), "{q}");
        }
    }
}
