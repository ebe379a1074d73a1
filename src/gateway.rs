//! Wiring: [`Gateway::start`] builds the ring, cache, shards, feed thread and HTTP thread
//! from one validated [`Config`] and a [`Feed`] (built beside the feed thread, in
//! [`crate::feed`]), and [`Gateway::shutdown`] takes them down in order. The stats loop lives
//! with the stats ([`crate::stats::collect`]); the signal loop of `tickgate serve` in
//! [`crate::signal`].
//!
//! Threads and who owns what:
//! - `tickgate-feed`: owns the [`FeedSource`](tickgate_feeds::FeedSource), the ring's `Producer` and the write side of the
//!   last-value cache.
//! - `tickgate-shard-N`: owns its ring `Consumer`, its clients and their sockets.
//! - `tickgate-http`: owns the listener; runs handshakes, `/snapshot`, `/stats` and the stats
//!   collector.
//!
//! The library entry point takes the configuration (including the listen address, port 0
//! in tests) and returns a handle; the binary only parses the CLI and waits for a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{ADMIN_TOKEN_ENV, Config, PinCores, Source, Sources};
use crate::feed::{Feed, FeedHandle, FeedParts, FeedStats};
use crate::live::Live;
use crate::ring::{Lvc, Ring};
use crate::server::App;
use crate::server::Role;
use crate::shard::{ShardSettings, spawn_shard};
use crate::stats::Collector;

/// Open files kept free for listeners, log files and the like when `max_connections` is
/// derived from the open-file limit.
pub const FD_HEADROOM: u64 = 100;

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    app: Arc<App>,
    feed: FeedHandle,
    http: Option<JoinHandle<()>>,
    stop_http: watch::Sender<bool>,
}

/// Raises the open-file soft limit to the hard limit; returns the resulting (soft, hard)
/// limits. The gateway and the load generator both size themselves by it.
pub fn raise_fd_limit() -> (u64, u64) {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024))
}

/// Chooses cores: (feed, per-shard) from the pinning mode and the cores this process may use.
fn plan_cores(
    mode: &PinCores,
    shards: usize,
) -> (Option<core_affinity::CoreId>, Vec<Option<core_affinity::CoreId>>) {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let pick = |list: &[core_affinity::CoreId], i: usize| list.get(i % list.len().max(1)).copied();
    match mode {
        PinCores::Off => (None, vec![None; shards]),
        PinCores::Auto if ids.is_empty() => (None, vec![None; shards]),
        PinCores::Auto => (pick(&ids, 0), (0..shards).map(|i| pick(&ids, i + 1)).collect()),
        PinCores::List(list) => {
            let chosen: Vec<_> = list.iter().map(|&id| core_affinity::CoreId { id }).collect();
            let rest = if chosen.len() > 1 { &chosen[1..] } else { &chosen[..] };
            (pick(&chosen, 0), (0..shards).map(|i| pick(rest, i)).collect())
        }
    }
}

impl Gateway {
    /// Starts a gateway on `feed` (usually [`Feed::from_config`], the source `feed.source`
    /// names; tests pass their own). `provenance` says where each setting came from, for
    /// `GET /config` on the admin listener; keys missing from it show as defaults.
    ///
    /// # Errors
    /// A listen address that cannot be bound, unreadable TLS, token or admin token files, or
    /// threads that cannot start.
    pub fn start(config: Config, mut provenance: Sources, feed: Feed) -> anyhow::Result<Gateway> {
        let Feed { source, bus, interest } = feed;
        for k in crate::config::KEYS {
            provenance.entry(k.key).or_insert(Source::Default);
        }
        let (fd_limit, _) = raise_fd_limit();
        let fd_derived = fd_limit.saturating_sub(FD_HEADROOM).max(1) as usize;
        let live = Arc::new(Live::new(config.clone(), provenance, fd_derived));
        let max_connections = live.max_connections();
        let admin_token = admin_token(&config)?;
        let tls = match config.tls() {
            Some(files) => {
                Some(crate::server::TlsListener::new(files.clone()).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        };
        let verifier = match config.auth.mode {
            crate::config::AuthMode::None => None,
            crate::config::AuthMode::Token => {
                let v = Arc::new(
                    crate::auth::Verifier::from_config(&config.auth)
                        .map_err(|e| anyhow::anyhow!("auth: {e}"))?,
                );
                v.start_refresher().context("starting the token key refresher")?;
                Some(v)
            }
        };
        let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
        let shards =
            if config.server.shards > 0 { config.server.shards } else { cores.saturating_sub(1).max(1) };
        let (feed_core, shard_cores) = plan_cores(&config.server.pin_cores, shards);

        let universe = Arc::new(source.universe().clone());
        let lvc = Arc::new(Lvc::new(universe.len()));
        let books = Arc::new(crate::books::BookStore::new(universe.len(), config.server.max_depth));
        let (ring, producer) = Ring::with_capacity(config.server.ring_capacity);

        // Bind first, so a bad address fails before any thread starts.
        let listener = bind(config.server.listen, config.server.listen_backlog)
            .with_context(|| format!("binding {}", config.server.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let admin = match config.admin.listen {
            Some(a) => Some(
                bind(a, config.server.listen_backlog)
                    .with_context(|| format!("binding the admin listener {a} (admin.listen)"))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());

        let feed_stats = Arc::new(FeedStats::default());
        let settings = ShardSettings {
            max_message_bytes: config.server.max_message_bytes,
            send_buffer_bytes: config.server.send_buffer_bytes,
            live: live.clone(),
            feed: feed_stats.clone(),
            subscribe_timeout: config.server.subscribe_timeout,
            verifier: verifier.clone(),
            interest: interest.clone(),
            books: books.clone(),
        };
        let (hist_tx, hist_rx) = crossbeam_channel::bounded(shards * 16);
        let mut handles = Vec::with_capacity(shards);
        for (i, pin) in shard_cores.into_iter().enumerate() {
            let h = spawn_shard(
                i,
                universe.clone(),
                lvc.clone(),
                ring.consumer(),
                settings.clone(),
                hist_tx.clone(),
                pin,
            )
            .with_context(|| format!("starting shard {i}"))?;
            handles.push(h);
        }
        let feed = crate::feed::spawn(FeedParts {
            source,
            producer,
            lvc: lvc.clone(),
            doorbells: handles.iter().map(|h| h.doorbell()).collect(),
            limit: config.feed.ticks,
            pin: feed_core,
            live: live.clone(),
            stats: feed_stats,
            books: books.clone(),
        })
        .context("starting the feed thread")?;

        let app = Arc::new(App {
            live,
            admin_token,
            universe,
            lvc,
            books,
            shards: handles,
            connections: Arc::new(AtomicUsize::new(0)),
            feed: feed.stats.clone(),
            bus,
            collector: std::sync::Mutex::new(Collector::new(shards, hist_rx)),
            shutting_down: AtomicBool::new(false),
            guards: crate::server::Guards::from_config(&config.server, verifier),
            tls,
        });
        let (stop_http, stop_rx) = watch::channel(false);
        let http = spawn_http(listener, admin, app.clone(), stop_rx)?;
        tracing::info!(
            %addr,
            admin = ?admin_addr,
            shards,
            max_connections,
            symbols = app.universe.len(),
            ring = ring.capacity(),
            feed_core = feed_core.map(|c| c.id),
            tls = app.tls.is_some(),
            auth = ?config.auth.mode,
            "tickgate listening"
        );
        Ok(Gateway { addr, admin_addr, app, feed, http: Some(http), stop_http })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Re-reads the TLS certificate and key (SIGHUP). New handshakes use them; existing
    /// connections keep their session. Without TLS this does nothing.
    ///
    /// # Errors
    /// Unreadable or mismatched files; the previous certificate stays in use.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.app.tls {
            Some(t) => t.certs.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Re-reads the token key files and fetches the JWKS URLs again (SIGHUP); `false` without
    /// token auth. Failures are logged; the last good keys stay in use.
    pub fn reload_keys(&self) -> bool {
        match &self.app.guards.verifier {
            Some(v) => {
                v.reload();
                true
            }
            None => false,
        }
    }

    /// The admin listener's address, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Shared state: stats, shards, cache.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Blocks shard `i`'s thread for `d` (fault injection; the ring-overrun test uses it).
    pub fn stall_shard(&self, i: usize, d: Duration) {
        if let Some(s) = self.app.shards.get(i) {
            s.stall(d);
        }
    }

    /// Graceful shutdown: refuse new connections, close every client with 1001 "server
    /// shutting down", flush, stop the feed and the threads, all within `shutdown_grace`
    /// (the shards get the grace minus a margin for the rest).
    pub fn shutdown(mut self) {
        let grace = self.app.live.config().server.shutdown_grace;
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down");
        self.app.shutting_down.store(true, Ordering::Release);
        let _ = self.stop_http.send(true);
        let shard_grace = grace.saturating_sub(Duration::from_millis(300)).max(Duration::from_millis(50));
        for s in &self.app.shards {
            s.begin_shutdown(shard_grace);
        }
        for s in &self.app.shards {
            s.join();
        }
        self.feed.stop();
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        tracing::info!("tickgate stopped");
    }
}

/// The admin token: from `admin.token_file` if set, else `TICKGATE_ADMIN_TOKEN`, else none.
fn admin_token(config: &Config) -> anyhow::Result<Option<String>> {
    let token = match &config.admin.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading admin.token_file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(ADMIN_TOKEN_ENV).ok().map(|t| t.trim().to_string()),
    };
    match token {
        Some(t) if t.is_empty() => {
            anyhow::bail!("the admin token is empty (admin.token_file / {ADMIN_TOKEN_ENV})")
        }
        other => Ok(other),
    }
}

fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn spawn_http(
    listener: std::net::TcpListener,
    admin: Option<std::net::TcpListener>,
    app: Arc<App>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the HTTP runtime")?;
    let thread = std::thread::Builder::new()
        .name("tickgate-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "could not register the listener");
                        return;
                    }
                };
                tokio::spawn(crate::stats::collect(app.clone(), stop.clone()));
                if let Some(admin) = admin {
                    match tokio::net::TcpListener::from_std(admin) {
                        Ok(l) => {
                            tokio::spawn(crate::server::serve(l, app.clone(), Role::Admin, stop.clone()));
                        }
                        Err(e) => tracing::error!(error = %e, "could not register the admin listener"),
                    }
                }
                crate::server::serve(listener, app, Role::Public, stop).await;
            });
        })
        .context("starting the HTTP thread")?;
    Ok(thread)
}
