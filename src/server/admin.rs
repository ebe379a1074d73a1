//! The admin listener (`admin.listen`, default 127.0.0.1:9001): what operators and
//! `tickgate tune` talk to.
//!
//! - `GET /config` — the effective configuration, each key with its source
//!   (`default|file|env|flag|live`), as TOML text.
//! - `POST /config` — body of `key=value` lines (or `?key=value` pairs): validated together,
//!   applied all-or-nothing; keys that need a restart are refused with that reason. Answers
//!   JSON `{"changed":[{"key":..,"old":..,"new":..}]}` or `{"error":..,"key":..}` (400).
//! - `GET /metrics`, `GET /stats`, `GET /healthz` — as on the public listener.
//!
//! With a token configured (`admin.token_file` or `TICKGATE_ADMIN_TOKEN`), every request must
//! carry `Authorization: Bearer <token>`, else 401.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::App;
use super::routes::{Resp, json_resp, metrics, stats, text};
use crate::protocol::json::escape_str;

/// Largest `POST /config` body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// Compares without an early exit, so response time does not leak how much of a guess matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<Incoming>, app: &App) -> bool {
    let Some(token) = &app.admin_token else { return true };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given.trim().as_bytes(), token.as_bytes()))
}

/// Routes one admin request.
pub async fn handle(req: Request<Incoming>, peer: SocketAddr, app: Arc<App>) -> Result<Resp, Infallible> {
    if !authorized(&req, &app) {
        tracing::warn!(%peer, path = req.uri().path(), "admin request without a valid token");
        let mut r =
            text(StatusCode::UNAUTHORIZED, "missing or wrong admin token (Authorization: Bearer ...)\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(r);
    }
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/config") => {
            let (c, sources) = app.live.snapshot();
            text(StatusCode::OK, crate::config::render(&c, &sources))
        }
        (&Method::POST, "/config") => change(req, peer, &app).await,
        (&Method::GET, "/metrics") => metrics(&app),
        (&Method::GET, "/stats") => stats(&app),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (_, "/config" | "/metrics" | "/stats" | "/healthz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET, or POST for /config\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /config, /metrics, /stats, /healthz\n"),
    })
}

/// Parses `key=value` lines (blank lines and `#` comments ignored).
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("expected key=value, got {line:?}"))?;
        pairs.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
    }
    Ok(pairs)
}

async fn change(req: Request<Incoming>, peer: SocketAddr, app: &App) -> Resp {
    let query = req.uri().query().unwrap_or("").replace('&', "\n");
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_BODY} bytes\n")),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "body is not UTF-8\n");
    };
    let mut pairs = match parse_pairs(&query).and_then(|mut q| {
        q.extend(parse_pairs(body)?);
        Ok(q)
    }) {
        Ok(p) => p,
        Err(e) => return error(None, &e),
    };
    pairs.retain(|(k, _)| !k.is_empty());
    if pairs.is_empty() {
        return error(None, "nothing to change: send key=value lines");
    }
    match app.live.apply(&pairs) {
        Ok(changes) => {
            tracing::info!(%peer, changes = changes.len(), "live configuration change via admin");
            let mut out = b"{\"changed\":[".to_vec();
            for (i, c) in changes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"key\":");
                escape_str(&mut out, c.key);
                out.extend_from_slice(b",\"old\":");
                escape_str(&mut out, &c.old);
                out.extend_from_slice(b",\"new\":");
                escape_str(&mut out, &c.new);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
            json_resp(StatusCode::OK, out)
        }
        Err(refused) => {
            tracing::warn!(%peer, key = %refused.key, reason = %refused.reason, "live configuration change refused");
            error(Some(&refused.key), &refused.reason)
        }
    }
}

fn error(key: Option<&str>, reason: &str) -> Resp {
    let mut out = b"{\"error\":".to_vec();
    escape_str(&mut out, reason);
    if let Some(k) = key {
        out.extend_from_slice(b",\"key\":");
        escape_str(&mut out, k);
    }
    out.push(b'}');
    json_resp(StatusCode::BAD_REQUEST, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_reject_garbage() {
        assert_eq!(
            parse_pairs("feed.rate=5\n# c\n\n server.log_level = \"debug\" \n"),
            Ok(vec![("feed.rate".into(), "5".into()), ("server.log_level".into(), "debug".into())])
        );
        assert!(parse_pairs("feed.rate 5").is_err());
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
