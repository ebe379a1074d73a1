//! A shard as the rest of the gateway sees it: its settings, the connections handed to it,
//! and the [`ShardHandle`] that hands them over, stops it and reads its stats.
//! [`spawn_shard`] starts the shard's thread (optionally pinned to a CPU) with its own
//! current-thread tokio runtime running `driver::run`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tickgate_feeds::Universe;
use tokio::sync::{Notify, mpsc};

use super::core::ShardCore;
use super::driver;
use super::io::{ConnTable, IoCounters, Shared};
use super::stats::ShardStats;
use crate::live::Live;
use crate::protocol::Format;
use crate::ring::{Consumer, Doorbell, Lvc};

/// Settings a shard applies to its connections: fixed ones, and the live ones (limits,
/// timeouts, ping period), read where they are used.
#[derive(Clone)]
pub struct ShardSettings {
    /// Largest client message (fixed: bounds buffers of existing connections).
    pub max_message_bytes: usize,
    /// SO_SNDBUF for each socket (0 = OS default).
    pub send_buffer_bytes: usize,
    /// Live-tunable settings.
    pub live: Arc<Live>,
    /// The feed thread's state (whether its upstream is up, told to clients on change).
    pub feed: Arc<crate::feed::FeedStats>,
    /// Close a connection that holds no subscription this long after opening (zero: never).
    pub subscribe_timeout: Duration,
    /// Token checks for `{"op":"auth"}` refreshes (token auth only).
    pub verifier: Option<Arc<crate::auth::Verifier>>,
    /// Where the shard reports the symbols its clients start and stop holding (an
    /// interest-based bus subscription).
    pub interest: Option<Arc<crate::interest::Interest>>,
    /// The published order books (`"depth"` subscriptions are encoded from them).
    pub books: Arc<crate::books::BookStore>,
}

/// A client's socket as the HTTP layer hands it over.
pub enum Socket {
    /// An upgraded WebSocket connection.
    Tcp(std::net::TcpStream),
    /// The shard's end of a Server-Sent Events response's socket pair.
    Pair(std::os::unix::net::UnixStream),
}

/// A socket handed to a shard after a successful upgrade (or an SSE request).
pub struct NewConnection {
    /// The client's socket.
    pub stream: Socket,
    /// Bytes the HTTP layer read past the handshake (the start of the WebSocket stream).
    pub leftover: bytes::Bytes,
    /// Negotiated wire format.
    pub format: Format,
    /// Client address, for logs.
    pub peer: SocketAddr,
    /// Released when the connection ends (the gateway's connection count).
    pub guard: ConnectionGuard,
    /// What the connection is for, and what its token grants.
    pub session: Session,
    /// The TLS session, when the listener serves TLS.
    pub tls: Option<Box<crate::server::tls::TlsState>>,
}

/// What a connection is for and what it may see.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The diagnostic echo route: messages are echoed, nothing is subscribed.
    pub echo: bool,
    /// The verified token's grant, under token auth.
    pub grant: Option<crate::auth::Grant>,
    /// A control message to run as if the client had sent it first (the subscribe of an
    /// SSE request, which cannot send messages).
    pub initial: Option<String>,
}

/// Decrements a shared connection counter when dropped.
/// Also holds the connection's per-IP slot, released with it.
pub struct ConnectionGuard {
    counter: Arc<AtomicUsize>,
    _ip: Option<crate::server::guard::IpSlot>,
}

impl ConnectionGuard {
    /// Counts one connection on `counter` until the guard drops.
    pub fn new(counter: Arc<AtomicUsize>) -> ConnectionGuard {
        counter.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard { counter, _ip: None }
    }

    /// Holds `slot` (the client IP's connection count) for the connection's life too.
    pub fn with_ip(mut self, slot: Option<crate::server::guard::IpSlot>) -> ConnectionGuard {
        self._ip = slot;
        self
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Messages to a shard.
pub(crate) enum ShardMsg {
    Connection(Box<NewConnection>),
    /// Close every client with 1001 and stop within the given time.
    Shutdown(Duration),
    /// Block the shard thread for a while (fault drills and the ring-overrun test).
    Stall(Duration),
}

/// The handle the rest of the gateway holds on a shard.
pub struct ShardHandle {
    /// Shard number.
    pub id: usize,
    tx: mpsc::UnboundedSender<ShardMsg>,
    doorbell: Arc<Doorbell>,
    /// Counters and gauges.
    pub stats: Arc<ShardStats>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ShardHandle {
    /// Hands a connection to this shard. Returns it back if the shard has stopped.
    pub fn hand_off(&self, conn: NewConnection) -> Result<(), Box<NewConnection>> {
        self.stats.clients.fetch_add(1, Ordering::AcqRel);
        self.tx.send(ShardMsg::Connection(Box::new(conn))).map_err(|e| {
            self.stats.clients.fetch_sub(1, Ordering::AcqRel);
            match e.0 {
                ShardMsg::Connection(c) => c,
                _ => unreachable!("we sent a connection"),
            }
        })
    }

    /// The shard's doorbell (the feed thread rings it).
    pub fn doorbell(&self) -> Arc<Doorbell> {
        self.doorbell.clone()
    }

    /// Blocks the shard thread for `d` (fault injection: lets the ring lap it).
    pub fn stall(&self, d: Duration) {
        let _ = self.tx.send(ShardMsg::Stall(d));
        self.doorbell.wake();
    }

    /// Asks the shard to close all clients with 1001 and stop within `grace`.
    pub fn begin_shutdown(&self, grace: Duration) {
        let _ = self.tx.send(ShardMsg::Shutdown(grace));
        self.doorbell.wake();
    }

    /// Waits for the shard thread to finish (after [`ShardHandle::begin_shutdown`]).
    pub fn join(&self) {
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// Starts shard `id` on its own thread (pinned to `core` if given).
///
/// # Errors
/// If the thread or its runtime cannot be created.
pub fn spawn_shard(
    id: usize,
    universe: Arc<Universe>,
    lvc: Arc<Lvc>,
    consumer: Consumer,
    settings: ShardSettings,
    histograms: crossbeam_channel::Sender<(usize, Histogram<u64>)>,
    pin: Option<core_affinity::CoreId>,
) -> std::io::Result<ShardHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let doorbell = Arc::new(Doorbell::new());
    let stats = Arc::new(ShardStats::default());
    let (bell, st) = (doorbell.clone(), stats.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name(format!("tickgate-shard-{id}")).spawn(move || {
        if let Some(core) = pin
            && !core_affinity::set_for_current(core)
        {
            tracing::warn!(shard = id, core = core.id, "could not pin shard thread");
        }
        let mut core = ShardCore::new(universe, lvc, settings.live.limits());
        core.set_verifier(settings.verifier.clone());
        core.set_interest(settings.interest.clone());
        core.set_books(settings.books.clone());
        let shared = Rc::new(Shared {
            core: RefCell::new(core),
            conns: RefCell::new(ConnTable::default()),
            settings,
            stats: st,
            loop_wake: Notify::new(),
            shutting_down: Cell::new(false),
            io: IoCounters::default(),
        });
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, driver::run(id, shared, consumer, bell, rx, histograms));
    })?;
    Ok(ShardHandle { id, tx, doorbell, stats, thread: std::sync::Mutex::new(Some(thread)) })
}
