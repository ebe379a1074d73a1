//! The front door: the TCP listener, HTTP/1.1 (hyper) with its routes, and the WebSocket
//! upgrade that hands each new connection's raw socket to a shard.
//!
//! Runs on its own thread (`tickgate-http`) with a current-thread runtime, so the HTTP work
//! of handshakes and `/snapshot` never competes with a shard's loop on its core.
//!
//! - [`web`]: the bundled dashboard page and `tickgate.js`, embedded in the binary.
//! - [`tls`]: rustls for https:// and wss://, with certificates reloaded on SIGHUP.
//! - [`routes`]: `/ws`, `/healthz`, `/snapshot`, `/stats`, `/metrics`.
//! - [`guard`]: per-client-IP connection caps and rate limits (HTTP 429).
//! - [`proxy_protocol`]: the HAProxy PROXY protocol (v1/v2) header read before TLS and HTTP
//!   when `server.proxy_protocol` is on: the client address a TCP balancer relays.
//! - [`client_ip`]: `server.trusted_proxies` and the `Forwarded` / `X-Forwarded-For` walk that
//!   finds the client behind HTTP reverse proxies.
//! - [`admin`]: the admin listener: `/config` (read and change live settings), `/metrics`,
//!   `/stats`, `/healthz`, behind an optional bearer token.
//!
//! Accept errors such as `EMFILE` (out of file descriptors) back off for
//! [`ACCEPT_BACKOFF`] instead of spinning: the listener stays readable while the backlog
//! holds connections we cannot accept, so retrying at once would burn a core.

pub mod admin;
pub mod admit;
pub mod client_ip;
pub mod guard;
pub mod metrics;
pub mod proxy_protocol;
pub mod routes;
pub mod sse;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tickgate_feeds::Universe;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::feed::FeedStats;
use crate::ring::Lvc;
use crate::shard::ShardHandle;
use crate::stats::Collector;

/// Pause after an accept error (EMFILE, ENFILE, ENOBUFS, ...).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why handshakes were refused, and slow ones dropped (for `/stats` and `/metrics`).
#[derive(Debug, Default)]
pub struct Rejections {
    /// 403: an Origin not in `server.allowed_origins`.
    pub origin: AtomicU64,
    /// 401: a missing or invalid token.
    pub auth: AtomicU64,
    /// 429: the client IP holds `server.max_connections_per_ip`.
    pub ip_connections: AtomicU64,
    /// 429: the client IP opens connections faster than `server.connection_rate_per_ip`.
    pub ip_rate: AtomicU64,
    /// 503: the gateway holds `max_connections`.
    pub capacity: AtomicU64,
    /// Connections dropped for not completing their request head (or TLS handshake) within
    /// `server.handshake_timeout`.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed for a missing or malformed PROXY protocol header, or one from a peer
    /// outside `server.trusted_proxies` (a header that never came counts in
    /// `handshake_timeouts` too).
    pub proxy_protocol: AtomicU64,
}

/// The public listener's guard settings (fixed at start).
#[derive(Debug)]
pub struct Guards {
    /// Per-IP connection caps and rates.
    pub ips: guard::IpGuards,
    /// Allowed browser origins (lowercase); empty = any.
    pub allowed_origins: Vec<String>,
    /// Serve `/echo`.
    pub diagnostic_echo: bool,
    /// Accept → complete request head.
    pub handshake_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Token checks, under token auth.
    pub verifier: Option<Arc<crate::auth::Verifier>>,
    /// Peers whose forwarding headers (and PROXY headers) name the real client.
    pub trusted_proxies: client_ip::TrustedProxies,
    /// The forwarding header those proxies write.
    pub client_ip_header: client_ip::ForwardedHeader,
    /// The PROXY protocol header expected before TLS and HTTP.
    pub proxy_protocol: proxy_protocol::Mode,
    /// Refusal counters.
    pub rejections: Rejections,
}

impl Guards {
    /// The guards a configuration asks for.
    pub fn from_config(
        c: &crate::config::ServerConfig,
        verifier: Option<Arc<crate::auth::Verifier>>,
    ) -> Guards {
        Guards {
            ips: guard::IpGuards::new(c.max_connections_per_ip, c.connection_rate_per_ip),
            allowed_origins: c.allowed_origins.clone(),
            diagnostic_echo: c.diagnostic_echo,
            handshake_timeout: c.handshake_timeout,
            max_header_bytes: c.max_header_bytes,
            verifier,
            // Checked when the configuration was built (`cidr_entries`).
            trusted_proxies: client_ip::TrustedProxies::parse(&c.trusted_proxies).unwrap_or_default(),
            client_ip_header: c.client_ip_header,
            proxy_protocol: c.proxy_protocol,
            rejections: Rejections::default(),
        }
    }
}

/// State shared by the HTTP handlers.
pub struct App {
    /// Live-tunable settings, including the connection limit in force.
    pub live: Arc<crate::live::Live>,
    /// Bearer token the admin listener requires, if any.
    pub admin_token: Option<String>,
    /// The symbol universe.
    pub universe: Arc<Universe>,
    /// The last-value cache.
    pub lvc: Arc<Lvc>,
    /// The published order books.
    pub books: Arc<crate::books::BookStore>,
    /// The shards.
    pub shards: Vec<ShardHandle>,
    /// WebSocket connections currently open (upgraded and not yet closed).
    pub connections: Arc<AtomicUsize>,
    /// The feed thread's counters.
    pub feed: Arc<FeedStats>,
    /// Statistics of the NATS bus when the feed comes from one.
    pub bus: Option<Arc<crate::bus::BusStats>>,
    /// Latency histograms and rates.
    pub collector: std::sync::Mutex<Collector>,
    /// Set when shutting down: new upgrades are refused.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Guards of the public listener.
    pub guards: Guards,
    /// TLS for the public listener, when configured.
    pub tls: Option<TlsListener>,
}

/// The public listener's TLS: the reloadable certificate and the acceptor built on it.
pub struct TlsListener {
    /// The certificate (reloaded on SIGHUP).
    pub certs: Arc<tls::Reloadable>,
    /// Accepts TLS handshakes with `certs`.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    /// TLS from the configured files.
    ///
    /// # Errors
    /// Unreadable or mismatched certificate and key.
    pub fn new(files: crate::config::TlsFiles) -> Result<TlsListener, String> {
        let certs = tls::Reloadable::new(files)?;
        let cfg = tls::server_config(certs.clone())?;
        Ok(TlsListener { certs, acceptor: tokio_rustls::TlsAcceptor::from(cfg) })
    }
}

impl App {
    /// The shard with the fewest connections.
    pub fn pick_shard(&self) -> Option<&ShardHandle> {
        self.shards.iter().min_by_key(|s| s.stats.clients.load(Ordering::Acquire))
    }
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The public listener: WebSocket and read-only HTTP.
    Public,
    /// The admin listener: configuration, metrics, stats.
    Admin,
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, app: Arc<App>, role: Role, mut shutdown: watch::Receiver<bool>) {
    let mut error_logged = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                error_logged = false;
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, app.clone(), role));
            }
            Err(e) => {
                if !error_logged {
                    tracing::warn!(error = %e, "accept failed; backing off (further errors not logged until one succeeds)");
                    error_logged = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One accepted connection: its PROXY header (when expected), TLS (when configured), then HTTP.
/// All of it within one `server.handshake_timeout` from the accept up to a complete request
/// head (a slow client cannot take a timeout per step).
async fn connection(mut stream: tokio::net::TcpStream, tcp_peer: SocketAddr, app: Arc<App>, role: Role) {
    let guards = &app.guards;
    let deadline = tokio::time::Instant::now() + guards.handshake_timeout;
    let mut client = Client { addr: tcp_peer, from_proxy_protocol: false };
    if role == Role::Public && guards.proxy_protocol != proxy_protocol::Mode::Off {
        let refuse = |why: &dyn std::fmt::Display| {
            guards.rejections.proxy_protocol.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %tcp_peer, reason = %why, "connection closed: PROXY protocol");
        };
        if !guards.trusted_proxies.is_empty() && !guards.trusted_proxies.contains(tcp_peer.ip()) {
            return refuse(&"a PROXY header is only taken from server.trusted_proxies");
        }
        match tokio::time::timeout_at(
            deadline,
            proxy_protocol::read_header(&mut stream, guards.proxy_protocol),
        )
        .await
        {
            Ok(Ok(h)) => client = Client { addr: h.source_or(tcp_peer), from_proxy_protocol: true },
            Ok(Err(e)) => return refuse(&e),
            Err(_) => {
                guards.rejections.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                return refuse(&"no PROXY header within server.handshake_timeout");
            }
        }
    }
    match (&app.tls, role) {
        (Some(t), Role::Public) => match tokio::time::timeout_at(deadline, t.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_connection(tls, client, deadline, app, role).await,
            Ok(Err(e)) => tracing::debug!(peer = %client.addr, error = %e, "TLS handshake failed"),
            Err(_) => {
                app.guards.rejections.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %client.addr, "TLS handshake timed out");
            }
        },
        _ => serve_connection(stream, client, deadline, app, role).await,
    }
}

/// Who is on the other end of a connection, as far as the listener knows.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    /// The TCP peer, or the source address of its PROXY header.
    pub addr: SocketAddr,
    /// `addr` came from a PROXY header (forwarding headers are then not consulted).
    pub from_proxy_protocol: bool,
}

/// HTTP on a connection whose request head must be complete by `deadline` (later requests
/// on a kept-alive connection get as long).
async fn serve_connection<S>(
    stream: S,
    client: Client,
    deadline: tokio::time::Instant,
    app: Arc<App>,
    role: Role,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.addr;
    let app2 = app.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move {
            match role {
                Role::Public => routes::handle(req, client, app).await,
                Role::Admin => admin::handle(req, peer, app).await,
            }
        }
    });
    let head_timeout =
        deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(1));
    let max_head = app2.guards.max_header_bytes;
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(max_head)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        if e.is_timeout() {
            app2.guards.rejections.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}
