//! HTTP routes.
//!
//! - `GET /`, `/app.js`, `/tickgate.js`, `/style.css` — the bundled dashboard (see `web`).
//! - `GET /ws` — the WebSocket endpoint (protocol v1, docs/PROTOCOL.md). Format from
//!   `?format=json|json-batch|binary` or the subprotocol `tickgate.v1.json|json-batch|binary`
//!   (echoed). A plain
//!   request gets 426; an unknown format 400; over `max_connections` 503.
//! - `GET /echo` — only with `server.diagnostic_echo`: a WebSocket echo over the same
//!   connection code (Autobahn conformance runs).
//! - Before an upgrade: Origin allow-list (403), token auth (401), per-IP caps and rates
//!   (429 with `Retry-After`), the connection limit (503).
//! - `GET /healthz` — 200 `ok`.
//! - `GET /snapshot?symbols=AAPL,MSFT` — JSON array of the latest state of each symbol that
//!   has one (same fields as updates, `"snapshot":true`); unknown symbols → 404 listing them.
//!   `&depth=N` adds each symbol's order book (`{"type":"book",...}`, N levels a side) after
//!   its update.
//! - `GET /stats` — JSON counters, gauges, latency percentiles, top symbols.
//! - `GET /metrics` — Prometheus text exposition.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::App;
use super::admit::{Admitted, Denied, Gate, Handshake, admit};
use super::tls::TlsState;
use crate::protocol::{Format, json};
use crate::shard::{ConnectionGuard, NewConnection, Session, Socket};
use crate::stats::Percentiles;

/// A response body: a whole one, or a Server-Sent Events stream.
pub(crate) type Body = http_body_util::Either<Full<Bytes>, super::sse::SseBody>;

pub(crate) type Resp = Response<Body>;

/// A whole body.
pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Either::Left(Full::new(b.into()))
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub(crate) fn json_resp(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Routes one request.
pub async fn handle(
    req: Request<Incoming>,
    client: super::Client,
    app: Arc<App>,
) -> Result<Resp, Infallible> {
    let peer = client_addr(&req, client, &app.guards);
    if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Ok(r);
    }
    if let Some(r) = super::web::asset(req.uri().path(), req.headers()) {
        return Ok(r);
    }
    if let (Some(v), "/ws" | "/sse") = (&app.guards.verifier, req.uri().path()) {
        // A token signed with a key the gateway has not fetched yet (a rotation) waits for
        // one JWKS refetch here, so the admission below sees the new key.
        if let Some(t) = token_of(&req) {
            v.prefetch(&t).await;
        }
    }
    Ok(match req.uri().path() {
        "/ws" => websocket(req, peer, &app, false),
        "/sse" => super::sse::handle(&req, peer, &app),
        "/echo" if app.guards.diagnostic_echo => websocket(req, peer, &app, true),
        "/healthz" if app.shutting_down.load(Ordering::Acquire) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/snapshot" => snapshot(req.uri().query().unwrap_or(""), &app),
        "/stats" => stats(&app),
        "/metrics" => metrics(&app),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /, /ws, /sse?symbols=..., /healthz, /snapshot?symbols=..., /stats, /metrics\n",
        ),
    })
}

/// The client's address: the connection's (or its PROXY header's), or, when the connection
/// comes from a trusted proxy, the one the configured forwarding header names. Addresses
/// from a header carry port 0.
fn client_addr(req: &Request<Incoming>, client: super::Client, guards: &super::Guards) -> SocketAddr {
    use super::client_ip::{ForwardedHeader, client_ip};
    let tcp = client.addr;
    if client.from_proxy_protocol || !guards.trusted_proxies.contains(tcp.ip()) {
        return tcp;
    }
    let values = |name: header::HeaderName| -> Vec<&str> {
        req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    };
    let ip = match guards.client_ip_header {
        ForwardedHeader::XForwardedFor => client_ip(
            tcp.ip(),
            &guards.trusted_proxies,
            &[],
            &values(header::HeaderName::from_static("x-forwarded-for")),
        ),
        ForwardedHeader::Forwarded => {
            client_ip(tcp.ip(), &guards.trusted_proxies, &values(header::FORWARDED), &[])
        }
    };
    if ip == tcp.ip() { tcp } else { SocketAddr::new(ip, 0) }
}

/// Splits a query string into decoded `(key, value)` pairs (`+` and `%XX` decoded).
pub(crate) fn query_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which wire format a handshake asks for, and the subprotocol to echo.
fn negotiate(req: &Request<Incoming>) -> Result<(Format, Option<&'static str>), String> {
    let mut format = Format::Json;
    let mut echo = None;
    for (k, v) in query_pairs(req.uri().query().unwrap_or("")) {
        if k == "format" {
            format = Format::from_query(&v).ok_or_else(|| {
                format!("unknown format {v:?}: use format=json, format=json-batch or format=binary\n")
            })?;
        }
    }
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let mut unknown_ours = None;
    for p in offered {
        match Format::from_subprotocol(p) {
            Some(f) => {
                format = f;
                echo = Some(f.subprotocol());
                break;
            }
            // A token entry (tickgate.token.<JWT>) is read by `token_of`, never selected.
            None if p.starts_with(crate::auth::TOKEN_SUBPROTOCOL) => {}
            None if p.starts_with("tickgate.") => unknown_ours = Some(p.to_string()),
            None => {}
        }
    }
    if echo.is_none()
        && let Some(p) = unknown_ours
    {
        return Err(format!(
            "unknown subprotocol {p:?}: use tickgate.v1.json, tickgate.v1.json-batch or tickgate.v1.binary\n"
        ));
    }
    Ok((format, echo))
}

/// The token a handshake carries: `?token=`, `Authorization: Bearer`, or a
/// `Sec-WebSocket-Protocol` entry `tickgate.token.<JWT>`.
pub(crate) fn token_of(req: &Request<Incoming>) -> Option<String> {
    if let Some((_, t)) = query_pairs(req.uri().query().unwrap_or("")).find(|(k, _)| k == "token") {
        return Some(t);
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if let Some(t) = bearer {
        return Some(t.trim().to_string());
    }
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(crate::auth::TOKEN_SUBPROTOCOL).map(str::to_string))
}

fn websocket(mut req: Request<Incoming>, peer: SocketAddr, app: &Arc<App>, echo_route: bool) -> Resp {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only: send an Upgrade: websocket handshake (see docs/PROTOCOL.md)\n",
        );
        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        return r;
    }
    let (format, echo) = match negotiate(&req) {
        Ok(x) => x,
        Err(reason) => return text(StatusCode::BAD_REQUEST, reason),
    };
    let Admitted { grant, guard } = match admission(&req, peer, app, echo_route) {
        Ok(a) => a,
        Err(denied) => return denied.respond(&app.guards.rejections, |d| text(d.status(), d.body())),
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad WebSocket handshake: {e}\n")),
    };
    tokio::spawn(hand_off(
        upgrade,
        app.clone(),
        NewSession { peer, format, guard, session: Session { echo: echo_route, grant, initial: None } },
    ));
    let (mut parts, _) = response.into_parts();
    if let Some(p) = echo {
        parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    Response::from_parts(parts, full(Bytes::new()))
}

/// Admission of a request that would become a connection (a WebSocket handshake, an SSE
/// stream): Origin, token, per-IP guards and capacity. An admitted request holds its slot.
pub(crate) fn admission(
    req: &Request<Incoming>,
    peer: SocketAddr,
    app: &App,
    echo_route: bool,
) -> Result<Admitted, Denied> {
    let handshake = Handshake {
        // One client whether it arrives over IPv4 or as an IPv4-mapped IPv6 address.
        ip: peer.ip().to_canonical(),
        origin: req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host: req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
        token: token_of(req),
        echo_route,
    };
    let gate = Gate {
        guards: &app.guards,
        shutting_down: app.shutting_down.load(Ordering::Acquire),
        connections: &app.connections,
        max_connections: app.live.max_connections(),
    };
    admit(&handshake, &gate, crate::clock::now_ns()).inspect_err(|denied| {
        tracing::debug!(%peer, reason = ?denied, "handshake refused");
    })
}

/// What the upgraded connection takes to its shard, besides the socket.
struct NewSession {
    peer: SocketAddr,
    format: Format,
    guard: ConnectionGuard,
    session: Session,
}

/// Waits for the upgrade to complete, detaches the socket (plain TCP, or TLS with its
/// rustls session, which the shard then drives itself) and hands it to the least-loaded
/// shard.
async fn hand_off(upgrade: fastwebsockets::upgrade::UpgradeFut, app: Arc<App>, new: NewSession) {
    let NewSession { peer, format, guard, session } = new;
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "upgrade did not complete");
            return;
        }
    };
    let upgraded = ws.into_inner().into_inner();
    let (stream, leftover, tls) = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => match parts.io.into_inner().into_std() {
            Ok(s) => (s, parts.read_buf, None),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "could not detach upgraded socket");
                return;
            }
        },
        Err(upgraded) => {
            let Ok(parts) =
                upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>()
            else {
                tracing::error!(%peer, "upgraded connection is neither TCP nor TLS");
                return;
            };
            let (tcp, tls_session) = parts.io.into_inner().into_inner();
            match tcp.into_std() {
                Ok(s) => {
                    let state = TlsState::new(tls_session, super::tls::BUFFER_LIMIT);
                    (s, parts.read_buf, Some(Box::new(state)))
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "could not detach upgraded TLS socket");
                    return;
                }
            }
        }
    };
    let Some(shard) = app.pick_shard() else { return };
    let conn = NewConnection { stream: Socket::Tcp(stream), leftover, format, peer, guard, session, tls };
    if shard.hand_off(conn).is_err() {
        tracing::debug!(%peer, "shard stopped; dropping connection");
    }
}

fn snapshot(query: &str, app: &App) -> Resp {
    let mut names: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let max_depth = app.books.depth();
    for (k, v) in query_pairs(query) {
        if k == "symbols" {
            names.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        }
        if k == "depth" {
            match v.parse::<usize>() {
                Ok(d) if d <= max_depth => depth = d,
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "depth must be an integer from 0 (no books) to {max_depth} (server.max_depth), got {v:?}\n"
                        ),
                    );
                }
            }
        }
    }
    if names.is_empty() {
        return text(StatusCode::BAD_REQUEST, "missing ?symbols=AAPL,MSFT (or * for every symbol)\n");
    }
    if names == ["*"] {
        names = app.universe.symbols().iter().map(|s| s.name.clone()).collect();
    }
    let unknown: Vec<&str> =
        names.iter().map(String::as_str).filter(|n| app.universe.id(n).is_none()).collect();
    if !unknown.is_empty() {
        let mut body = b"{\"error\":\"unknown_symbol\",\"symbols\":[".to_vec();
        for (i, n) in unknown.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            json::escape_str(&mut body, n);
        }
        body.extend_from_slice(b"]}");
        return json_resp(StatusCode::NOT_FOUND, body);
    }
    let mut body = vec![b'['];
    let mut first = true;
    for n in &names {
        let Some(id) = app.universe.id(n) else { continue };
        if let Some(t) = app.lvc.load(id) {
            if !first {
                body.push(b',');
            }
            first = false;
            json::encode_update(&mut body, &t, n, true);
        }
        // With ?depth=N, the symbol's order book follows its update (if it has one).
        if depth > 0
            && let Some(book) = app.books.read(id, depth)
        {
            if !first {
                body.push(b',');
            }
            first = false;
            json::encode_book(&mut body, n, depth, &book);
        }
    }
    body.push(b']');
    json_resp(StatusCode::OK, body)
}

#[derive(Serialize)]
struct ShardJson<'a> {
    id: usize,
    /// Every figure of the table in `crate::counters` that has a `/stats` key.
    #[serde(flatten)]
    figures: crate::counters::StatsFigures<'a>,
    /// The flush loop over the last window: writes/s, updates per write, slice length,
    /// clients per slice, revisit interval.
    flush: crate::shard::FlushWindow,
    errors: std::collections::BTreeMap<&'static str, u64>,
    closes: std::collections::BTreeMap<String, u64>,
    latency: Percentiles,
    latency_window: Percentiles,
}

#[derive(Serialize)]
struct BusJson {
    connected: bool,
    disconnects: u64,
    reconnects: u64,
    received: u64,
    warmed: u64,
    rejected: u64,
    /// Subject subscriptions held now (interest mode: one per symbol clients hold).
    subscriptions: u64,
    received_bytes: u64,
    subscribes: u64,
    unsubscribes: u64,
    /// Publisher stamp → gateway feed thread, since start.
    hop: Percentiles,
}

#[derive(Serialize)]
struct RejectionsJson {
    origin: u64,
    auth: u64,
    ip_connections: u64,
    ip_rate: u64,
    capacity: u64,
    handshake_timeouts: u64,
    proxy_protocol: u64,
}

/// Token keys (under token auth).
#[derive(Serialize)]
struct AuthJson {
    keys: u64,
    reloads: u64,
    reload_errors: u64,
    jwks_fetches: u64,
    jwks_fetch_errors: u64,
    kid_refetches: u64,
    kid_refetches_throttled: u64,
}

#[derive(Serialize)]
struct StatsJson<'a> {
    /// Handshakes refused (403/401/429/503) and dropped (timeout), since start.
    rejections: RejectionsJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthJson>,
    connections: usize,
    max_connections: usize,
    feed_ticks: u64,
    feed_stale: u64,
    /// Order-book changes published.
    feed_book_changes: u64,
    /// Times a book went stale.
    feed_books_stale: u64,
    feed_ended: bool,
    /// The feed's upstream is reachable (false while the NATS bus is away).
    feed_up: bool,
    feed_outages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bus: Option<BusJson>,
    feed_rate: f64,
    updates_rate: f64,
    bytes_rate: f64,
    pending_updates: u64,
    buffered_bytes: u64,
    conflated: u64,
    overruns: u64,
    catch_ups: u64,
    delivered: u64,
    latency: Percentiles,
    latency_last_window: Percentiles,
    feed_rate_target: u64,
    stats_interval_ms: u64,
    top_symbols: Vec<TopSymbol>,
    top_clients: Vec<TopClientJson>,
    shards: Vec<ShardJson<'a>>,
}

/// `GET /metrics`: Prometheus text format.
pub(crate) fn metrics(app: &Arc<App>) -> Resp {
    let mut r = Response::new(full(super::metrics::render(app)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// One of the busiest clients by bytes, in `/stats` `top_clients`.
#[derive(Serialize)]
struct TopClientJson {
    peer: String,
    shard: usize,
    bytes: u64,
    /// The bandwidth cap in force, bytes/s (0: none).
    max_bandwidth: u64,
}

#[derive(Serialize)]
struct TopSymbol {
    symbol: String,
    updates: u64,
}

/// `GET /stats`.
pub(crate) fn stats(app: &App) -> Resp {
    let r = Ordering::Relaxed;
    let (totals, windows, merged, window, rate, feed_rate, bytes_rate) = match app.collector.lock() {
        Ok(mut c) => {
            c.drain();
            (
                c.shard_totals(),
                c.last_window_shards.clone(),
                c.merged_total(),
                c.last_window,
                c.last_rate,
                c.last_feed_rate,
                c.last_bytes_rate,
            )
        }
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "stats unavailable\n"),
    };
    let total =
        |f: &dyn Fn(&crate::shard::ShardStats) -> u64| app.shards.iter().map(|s| f(&s.stats)).sum::<u64>();
    let codes = crate::counters::ERROR_CODE_NAMES;
    let shards: Vec<ShardJson> = app
        .shards
        .iter()
        .map(|s| {
            let st = &s.stats;
            ShardJson {
                id: s.id,
                figures: crate::counters::StatsFigures(st),
                flush: st.window.lock().map(|w| *w).unwrap_or_default(),
                errors: codes.iter().zip(&st.errors).map(|(c, v)| (*c, v.load(r))).collect(),
                closes: crate::shard::COUNTED_CLOSE_CODES
                    .iter()
                    .zip(&st.closes)
                    .map(|(c, v)| (c.to_string(), v.load(r)))
                    .collect(),
                latency: totals.get(s.id).copied().unwrap_or_default(),
                latency_window: windows.get(s.id).copied().unwrap_or_default(),
            }
        })
        .collect();
    let mut top: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for s in &app.shards {
        if let Ok(list) = s.stats.top_symbols.lock() {
            for (sym, n) in list.iter() {
                *top.entry(*sym).or_default() += n;
            }
        }
    }
    let mut top: Vec<TopSymbol> = top
        .into_iter()
        .map(|(s, updates)| TopSymbol { symbol: app.universe.name(s).to_string(), updates })
        .collect();
    top.sort_by(|a, b| b.updates.cmp(&a.updates).then_with(|| a.symbol.cmp(&b.symbol)));
    top.truncate(10);
    let mut top_clients: Vec<TopClientJson> = Vec::new();
    for s in &app.shards {
        if let Ok(list) = s.stats.top_clients.lock() {
            top_clients.extend(list.iter().map(|c| TopClientJson {
                peer: c.peer.clone(),
                shard: s.id,
                bytes: c.bytes,
                max_bandwidth: c.max_bandwidth,
            }));
        }
    }
    top_clients.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.peer.cmp(&b.peer)));
    top_clients.truncate(10);
    let rj = &app.guards.rejections;
    let body = StatsJson {
        rejections: RejectionsJson {
            origin: rj.origin.load(r),
            auth: rj.auth.load(r),
            ip_connections: rj.ip_connections.load(r),
            ip_rate: rj.ip_rate.load(r),
            capacity: rj.capacity.load(r),
            handshake_timeouts: rj.handshake_timeouts.load(r),
            proxy_protocol: rj.proxy_protocol.load(r),
        },
        auth: app.guards.verifier.as_ref().map(|v| AuthJson {
            keys: v.stats.keys.load(r),
            reloads: v.stats.reloads.load(r),
            reload_errors: v.stats.reload_errors.load(r),
            jwks_fetches: v.stats.jwks_fetches.load(r),
            jwks_fetch_errors: v.stats.jwks_fetch_errors.load(r),
            kid_refetches: v.stats.kid_refetches.load(r),
            kid_refetches_throttled: v.stats.kid_refetches_throttled.load(r),
        }),
        connections: app.connections.load(r),
        max_connections: app.live.max_connections(),
        feed_rate_target: app.live.config().feed.rate,
        stats_interval_ms: app.live.config().server.stats_interval.as_millis() as u64,
        top_symbols: top,
        top_clients,
        feed_ticks: app.feed.ticks.load(r),
        feed_stale: app.feed.stale.load(r),
        feed_book_changes: app.feed.books.load(r),
        feed_books_stale: app.feed.books_stale.load(r),
        feed_ended: app.feed.ended.load(Ordering::Acquire),
        feed_up: app.feed.up.load(Ordering::Acquire),
        feed_outages: app.feed.outages.load(r),
        bus: app.bus.as_ref().map(|b| BusJson {
            connected: b.connected.load(Ordering::Acquire),
            disconnects: b.disconnects.load(r),
            reconnects: b.reconnects.load(r),
            received: b.received.load(r),
            warmed: b.warmed.load(r),
            rejected: b.rejected.load(r),
            subscriptions: b.subscriptions.load(r),
            received_bytes: b.received_bytes.load(r),
            subscribes: b.subscribes.load(r),
            unsubscribes: b.unsubscribes.load(r),
            hop: b.hop.lock().map(|h| Percentiles::of(&h)).unwrap_or_default(),
        }),
        feed_rate,
        updates_rate: rate,
        bytes_rate,
        pending_updates: total(&|s| s.pending_updates.load(r) as u64),
        buffered_bytes: total(&|s| s.buffered_bytes.load(r) as u64),
        conflated: total(&|s| s.conflated.load(r)),
        overruns: total(&|s| s.overruns.load(r)),
        catch_ups: total(&|s| s.catch_ups.load(r)),
        delivered: total(&|s| s.delivered.load(r)),
        latency: merged,
        latency_last_window: window,
        shards,
    };
    match simd_json::to_vec(&body) {
        Ok(b) => json_resp(StatusCode::OK, b),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("stats encoding failed: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("AAPL%2CMSFT"), "AAPL,MSFT");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("BRK.B"), "BRK.B");
    }
}
