//! The shard thread and its loop.
//!
//! One turn of the loop:
//! 1. read up to [`MAX_TICKS_PER_TURN`] ticks from the ring, or fewer if their fan-out costs
//!    more than [`FANOUT_BUDGET`] subscriber touches, into the core (overruns heal from the
//!    last-value cache);
//! 2. take newly handed-off connections and commands;
//! 3. flush: every client with due updates gets its buffer filled and written with **one**
//!    `write` syscall; a partial write marks it blocked and its connection task waits for
//!    writability instead (so a slow socket never stalls the loop);
//! 4. if the ring is empty and nothing is due, park on the doorbell; otherwise yield to the
//!    connection tasks and go again.
//!
//! The bounds keep one turn short (well under a millisecond of work on this machine), so
//! control messages and flushes are never starved by a burst, and each flush batches every
//! update that arrived during the turn into one write per client.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tickgate_feeds::Universe;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use super::conn;
use super::core::{CoreCounters, ERROR_CODES, ShardCore, new_latency_histogram};
use crate::clock::now_ns;
use crate::live::Live;
use crate::protocol::Format;
use crate::ring::{Consumer, Doorbell, Lvc, Read};

/// Most ticks one turn reads from the ring before flushing.
///
/// 1,024 ticks at ~50 ns of core work each is ~50 µs: long enough to batch many updates
/// into each client's write, short enough that a flush follows every tick within a fraction
/// of a millisecond.
pub const MAX_TICKS_PER_TURN: usize = 1024;

/// Most subscriber touches (one tick × one subscriber) per turn before flushing. A tick
/// fanned out to 10,000 clients costs 10,000; 65,536 touches at a few ns each keeps a turn
/// around 0.3 ms even at large fan-out.
pub const FANOUT_BUDGET: usize = 65_536;

/// Oldest a tick may be (since ingest) when a shard reads it. An overloaded shard that falls
/// further behind skips to the ring's head and resyncs every watched symbol from the
/// last-value cache: clients get the newest values instead of a replay of stale history
/// (conflation at the ring). 100 ms keeps worst-case staleness well under the latency
/// operators care about while leaving room for ordinary bursts to be processed in order.
pub const MAX_TICK_AGE: Duration = Duration::from_millis(100);

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
}

/// A socket handed to a shard after a successful upgrade.
pub struct NewConnection {
    /// The upgraded TCP stream.
    pub stream: std::net::TcpStream,
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

/// Close codes the gateway counts (index into [`ShardStats::closes`]).
pub const COUNTED_CLOSE_CODES: [u16; 8] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011];

/// A shard's counters and gauges, published by the shard and read by stats/HTTP.
#[derive(Default)]
pub struct ShardStats {
    /// Connected clients (updated on connect/disconnect: used for shard assignment).
    pub clients: AtomicUsize,
    /// Subscriptions (gauge).
    pub subscriptions: AtomicUsize,
    /// Pending conflation slots (gauge).
    pub pending_updates: AtomicUsize,
    /// Bytes buffered in the gateway for this shard's clients (gauge).
    pub buffered_bytes: AtomicUsize,
    /// Clients whose socket is full (gauge).
    pub blocked_clients: AtomicUsize,
    /// Ring ticks not yet read (gauge).
    pub ring_lag: AtomicU64,
    /// Ticks read from the ring.
    pub ticks: AtomicU64,
    /// Live updates written.
    pub delivered: AtomicU64,
    /// Snapshot updates queued.
    pub snapshots: AtomicU64,
    /// Updates conflated away.
    pub conflated: AtomicU64,
    /// Ring overruns.
    pub overruns: AtomicU64,
    /// Resyncs after falling more than `MAX_TICK_AGE` behind.
    pub resyncs: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Client messages handled.
    pub client_msgs: AtomicU64,
    /// Error replies by code (bad_request, unknown_op, unknown_symbol, too_many_symbols,
    /// rate_limited).
    pub errors: [AtomicU64; ERROR_CODES],
    /// Closes sent by the server, by code (see [`COUNTED_CLOSE_CODES`]).
    pub closes: [AtomicU64; 8],
    /// Clients closed as slow consumers.
    pub slow_consumer_closes: AtomicU64,
    /// Clients closed for sending nothing.
    pub idle_closes: AtomicU64,
    /// Clients closed for never subscribing (`server.subscribe_timeout`).
    pub no_subscription_closes: AtomicU64,
    /// Clients closed because their token expired.
    pub token_expired_closes: AtomicU64,
    /// The shard's busiest symbols by updates delivered: (symbol id, updates), refreshed
    /// every second.
    pub top_symbols: std::sync::Mutex<Vec<(u32, u64)>>,
    /// `write` syscalls issued to client sockets (updates/writes shows the batching).
    pub writes: AtomicU64,
    /// Turns of the shard loop (each ends with at most one write per ready client).
    pub turns: AtomicU64,
    /// JSON encodes performed.
    pub json_encodes: AtomicU64,
    /// Binary encodes performed.
    pub binary_encodes: AtomicU64,
}

impl ShardStats {
    fn publish(&self, core: &ShardCore, lag: u64, io: &IoCounters) {
        let c: &CoreCounters = &core.counters;
        self.writes.store(io.writes.get(), Ordering::Relaxed);
        self.turns.store(io.turns.get(), Ordering::Relaxed);
        let g = core.gauges();
        let r = Ordering::Relaxed;
        self.subscriptions.store(g.subscriptions, r);
        self.pending_updates.store(g.pending_updates, r);
        self.buffered_bytes.store(g.buffered_bytes, r);
        self.blocked_clients.store(g.blocked_clients, r);
        self.ring_lag.store(lag, r);
        self.ticks.store(c.ticks, r);
        self.delivered.store(c.delivered, r);
        self.snapshots.store(c.snapshots, r);
        self.conflated.store(c.conflated, r);
        self.overruns.store(c.overruns, r);
        self.resyncs.store(c.resyncs, r);
        self.bytes_written.store(c.bytes_written, r);
        self.client_msgs.store(c.client_msgs, r);
        for (a, v) in self.errors.iter().zip(c.errors) {
            a.store(v, r);
        }
        let (j, b) = core.encodes();
        self.json_encodes.store(j, r);
        self.binary_encodes.store(b, r);
    }

    pub(crate) fn count_close(&self, code: u16, reason: &str) {
        if let Some(i) = COUNTED_CLOSE_CODES.iter().position(|c| *c == code) {
            self.closes[i].fetch_add(1, Ordering::Relaxed);
        }
        match reason {
            super::conn::SLOW_CONSUMER => self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed),
            super::conn::IDLE_TIMEOUT => self.idle_closes.fetch_add(1, Ordering::Relaxed),
            super::conn::NO_SUBSCRIPTION => self.no_subscription_closes.fetch_add(1, Ordering::Relaxed),
            super::conn::TOKEN_EXPIRED => self.token_expired_closes.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
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

/// Per-connection I/O state shared between the shard loop and the connection's task.
pub(crate) struct ConnIo {
    pub(crate) stream: TcpStream,
    /// The TLS session over `stream` (wss://), driven synchronously.
    pub(crate) tls: RefCell<Option<Box<crate::server::tls::TlsState>>>,
    /// Wakes the connection task (it became blocked, or must close).
    pub(crate) wake: Notify,
    /// A close the shard asks the connection to perform.
    pub(crate) close_req: Cell<Option<(u16, &'static str)>>,
    /// The socket failed; the connection task must tear down.
    pub(crate) dead: Cell<bool>,
}

/// Syscall-level counters of a shard (single-threaded).
#[derive(Default)]
pub(crate) struct IoCounters {
    pub(crate) writes: Cell<u64>,
    pub(crate) turns: Cell<u64>,
}

/// State shared by the shard loop and its connection tasks (one thread: `Rc`/`RefCell`;
/// no borrow is ever held across an `.await`).
pub(crate) struct Shared {
    pub(crate) core: RefCell<ShardCore>,
    pub(crate) conns: RefCell<HashMap<usize, Rc<ConnIo>>>,
    pub(crate) settings: ShardSettings,
    pub(crate) stats: Arc<ShardStats>,
    /// Rate-limited updates waiting for their time: (due ns, client key).
    pub(crate) deadlines: RefCell<BinaryHeap<Reverse<(u64, usize)>>>,
    /// Wakes the shard loop (a deadline was added, or a client unblocked).
    pub(crate) loop_wake: Notify,
    pub(crate) shutting_down: Cell<bool>,
    pub(crate) io: IoCounters,
}

impl Shared {
    /// Fills and writes one client's buffer with a single `write` syscall. Returns the
    /// number of bytes the socket took.
    pub(crate) fn flush_client(&self, key: usize, io: &ConnIo, now: u64) -> usize {
        let mut core = self.core.borrow_mut();
        if let Some(due) = core.fill(key, now) {
            self.deadlines.borrow_mut().push(Reverse((due, key)));
            self.loop_wake.notify_one();
        }
        let Some(client) = core.client(key) else { return 0 };
        if client.out().is_empty() {
            return 0;
        }
        self.io.writes.set(self.io.writes.get() + 1);
        let n = match io.write(client.out()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                io.dead.set(true);
                io.wake.notify_one();
                return 0;
            }
        };
        if core.written(key, n, now) {
            // Unblocked with updates pending: the shard loop may be parked; wake it so its
            // next flush (not this one: one write per flush) sends them.
            self.loop_wake.notify_one();
        }
        if core.client(key).is_some_and(|c| c.is_blocked()) || io.tls_pending() {
            io.wake.notify_one();
        }
        n
    }
}

impl ConnIo {
    /// Writes `plain` with one write: straight to the socket, or encrypted into TLS records
    /// and those written (a socket still holding earlier records takes nothing new).
    /// Returns the plaintext bytes taken.
    pub(crate) fn write(&self, plain: &[u8]) -> std::io::Result<usize> {
        match self.tls.borrow_mut().as_mut() {
            Some(tls) => tls.send(&self.stream, plain),
            None => self.stream.try_write(plain),
        }
    }

    /// Encrypted bytes wait for the socket (TLS only).
    pub(crate) fn tls_pending(&self) -> bool {
        self.tls.borrow().as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes waiting TLS records (no-op without TLS).
    pub(crate) fn flush_tls(&self) -> std::io::Result<usize> {
        match self.tls.borrow_mut().as_mut() {
            Some(tls) => tls.write_tls(&self.stream),
            None => Ok(0),
        }
    }

    /// Reads what the socket has into `buf` (plaintext), at most `max` bytes.
    pub(crate) fn read(&self, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
        match self.tls.borrow_mut().as_mut() {
            Some(tls) => tls.recv(&self.stream, buf, max),
            None => {
                buf.reserve(max);
                self.stream.try_read_buf(buf)
            }
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
        let shared = Rc::new(Shared {
            core: RefCell::new(core),
            conns: RefCell::new(HashMap::new()),
            settings,
            stats: st,
            deadlines: RefCell::new(BinaryHeap::new()),
            loop_wake: Notify::new(),
            shutting_down: Cell::new(false),
            io: IoCounters::default(),
        });
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, run(id, shared, consumer, bell, rx, histograms));
    })?;
    Ok(ShardHandle { id, tx, doorbell, stats, thread: std::sync::Mutex::new(Some(thread)) })
}

async fn run(
    id: usize,
    shared: Rc<Shared>,
    mut consumer: Consumer,
    doorbell: Arc<Doorbell>,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
    histograms: crossbeam_channel::Sender<(usize, Histogram<u64>)>,
) {
    tokio::task::spawn_local(housekeeping(id, shared.clone(), histograms));
    let mut ready: Vec<usize> = Vec::new();
    let mut heal_log = Throttle::default();
    loop {
        // 1. The ring, bounded.
        {
            let mut core = shared.core.borrow_mut();
            let (mut ticks, mut work) = (0, 0);
            let turn_start = now_ns();
            while ticks < MAX_TICKS_PER_TURN && work < FANOUT_BUDGET {
                match consumer.try_read() {
                    Read::Tick(t)
                        if ticks == 0
                            && turn_start.saturating_sub(t.ts_gateway) > MAX_TICK_AGE.as_nanos() as u64 =>
                    {
                        // Too far behind: skip the stale backlog, take the latest state.
                        let skipped = consumer.skip_to_head() + 1;
                        core.resync_from_lvc();
                        if heal_log.due(turn_start) {
                            tracing::warn!(
                                shard = id,
                                skipped,
                                "shard behind by more than {MAX_TICK_AGE:?}: resynced from last-value cache"
                            );
                        }
                        break;
                    }
                    Read::Tick(t) => {
                        work += core.on_tick(&t).max(1);
                        ticks += 1;
                    }
                    Read::Overrun { missed } => {
                        core.heal_from_lvc();
                        if heal_log.due(now_ns()) {
                            tracing::warn!(
                                shard = id,
                                missed,
                                "ring overrun: shard fell behind, healed from last-value cache"
                            );
                        }
                    }
                    Read::Empty => break,
                }
            }
            shared.stats.ring_lag.store(consumer.lag(), Ordering::Relaxed);
            core.set_feed_up(shared.settings.feed.up.load(Ordering::Acquire));
        }

        // 2. Hand-offs and commands.
        while let Ok(msg) = rx.try_recv() {
            if let Some(grace) = handle_msg(&shared, msg) {
                return finish(&shared, grace).await;
            }
        }

        // 3. Rate-limited updates that came due.
        let now = now_ns();
        {
            let mut dl = shared.deadlines.borrow_mut();
            let mut core = shared.core.borrow_mut();
            while let Some(Reverse((due, key))) = dl.peek().copied() {
                if due > now {
                    break;
                }
                dl.pop();
                core.requeue(key);
            }
        }

        // 4. Flush: one write per ready client.
        shared.io.turns.set(shared.io.turns.get() + 1);
        shared.core.borrow_mut().take_ready(&mut ready);
        for &key in &ready {
            let io = shared.conns.borrow().get(&key).cloned();
            if let Some(io) = io {
                shared.flush_client(key, &io, now);
            }
        }

        // 5. More work, or wait for it.
        if consumer.has_pending() {
            tokio::task::yield_now().await;
            continue;
        }
        let next_due = shared.deadlines.borrow().peek().map(|Reverse((d, _))| *d);
        let sleep =
            next_due.map_or(Duration::from_secs(3600), |d| Duration::from_nanos(d.saturating_sub(now_ns())));
        tokio::select! {
            _ = doorbell.park(&consumer) => {}
            msg = rx.recv() => match msg {
                Some(m) => if let Some(grace) = handle_msg(&shared, m) { return finish(&shared, grace).await },
                None => return finish(&shared, Duration::from_secs(1)).await,
            },
            _ = shared.loop_wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Lets an event through at most once a second (overrun and resync warnings: an overloaded
/// shard would otherwise log every turn).
#[derive(Default)]
struct Throttle {
    last_ns: u64,
}

impl Throttle {
    fn due(&mut self, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.last_ns) > 1_000_000_000 {
            self.last_ns = now_ns;
            return true;
        }
        false
    }
}

/// Handles one message; returns the grace period on shutdown.
fn handle_msg(shared: &Rc<Shared>, msg: ShardMsg) -> Option<Duration> {
    match msg {
        ShardMsg::Connection(c) => {
            accept(shared, *c);
            None
        }
        ShardMsg::Stall(d) => {
            std::thread::sleep(d);
            None
        }
        ShardMsg::Shutdown(grace) => Some(grace),
    }
}

fn accept(shared: &Rc<Shared>, c: NewConnection) {
    let NewConnection { stream, leftover, format, peer, guard, session, tls } = c;
    let sock = socket2::SockRef::from(&stream);
    let _ = sock.set_tcp_nodelay(true);
    if shared.settings.send_buffer_bytes > 0 {
        let _ = sock.set_send_buffer_size(shared.settings.send_buffer_bytes);
    }
    let stream = match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "could not register upgraded socket");
            shared.stats.clients.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    };
    let key = shared.core.borrow_mut().add_client(format, now_ns(), session.grant);
    let mut buf = BytesMut::from(&leftover[..]);
    let tls = tls.map(|mut t| {
        // Plaintext the session decrypted with the upgrade request.
        t.take_buffered(&mut buf);
        t
    });
    let io = Rc::new(ConnIo {
        stream,
        tls: RefCell::new(tls),
        wake: Notify::new(),
        close_req: Cell::new(None),
        dead: Cell::new(false),
    });
    shared.conns.borrow_mut().insert(key, io.clone());
    tracing::debug!(%peer, key, format = format.as_str(), "connection open");
    tokio::task::spawn_local(conn::run(shared.clone(), key, io, buf, peer, guard, session.echo));
}

/// Shutdown: ask every connection to close with 1001 and wait for them, at most `grace`.
async fn finish(shared: &Rc<Shared>, grace: Duration) {
    shared.shutting_down.set(true);
    let conns: Vec<Rc<ConnIo>> = shared.conns.borrow().values().cloned().collect();
    for io in &conns {
        io.close_req.set(Some((crate::protocol::frame::close_code::GOING_AWAY, "server shutting down")));
        io.wake.notify_one();
    }
    // Connection tasks close within their own bounded close handshake; whatever is still
    // open when the grace period ends is dropped with the runtime.
    let deadline = tokio::time::Instant::now() + grace;
    while !shared.conns.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes gauges and counters every 100 ms; hands the latency histogram to the stats
/// collector every `stats_interval`.
async fn housekeeping(
    id: usize,
    shared: Rc<Shared>,
    histograms: crossbeam_channel::Sender<(usize, Histogram<u64>)>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_hist = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if shared.shutting_down.get() {
            return;
        }
        let mut core = shared.core.borrow_mut();
        core.set_limits(shared.settings.live.limits());
        shared.stats.publish(&core, shared.stats.ring_lag.load(Ordering::Relaxed), &shared.io);
        if last_hist.elapsed() >= shared.settings.live.stats_interval().min(Duration::from_secs(1)) {
            last_hist = tokio::time::Instant::now();
            let h = std::mem::replace(&mut core.latency, new_latency_histogram());
            let _ = histograms.try_send((id, h));
            if let Ok(mut top) = shared.stats.top_symbols.lock() {
                core.top_symbols(10, &mut top);
            }
        }
        drop(core);
    }
}
