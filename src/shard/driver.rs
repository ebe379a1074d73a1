//! The shard's loop: take in ring data, flush ready clients in bounded slices, repeat.
//!
//! One turn:
//! 1. **Intake**: read up to [`MAX_TICKS_PER_TURN`] ticks from the ring into the core. Each
//!    costs O(1) (a cache update) plus one step per client it wakes. A shard more than
//!    [`MAX_TICK_AGE`] behind reads its whole backlog first (a catch-up); overruns heal from
//!    the last-value cache.
//! 2. Take newly handed-off connections and commands; queue clients whose `max_rate`
//!    deadline passed.
//! 3. **One flush slice**: take clients from the front of the core's FIFO ready queue and
//!    flush each (fill its buffer, **one** write, stamp latency when the write returns),
//!    until [`SLICE_MAX_CLIENTS`] clients or [`SLICE_BUDGET`] of time. A partial write marks
//!    the client blocked; its connection task waits for writability.
//! 4. If anything is left (ring data, ready clients), yield to the connection tasks and go
//!    again; otherwise park on the doorbell, a hand-off, a wake-up or the next deadline.
//!
//! Why slices: a single pass over every ready client would make a tick wait for the whole
//! pass, hold off ring intake and starve connection tasks (control replies, reads) for as
//! long as the pass takes, which grows with the client count. With slices, intake and the
//! connection tasks run every few hundred microseconds, and a tick waits only for the clients
//! ahead of its client in the ready queue: at most one revisit interval, however many
//! clients there are. Because the queue is FIFO, each client is in it at most once, and a
//! served client goes to the back, service is fair.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use super::conn;
use super::handle::{NewConnection, ShardMsg, Socket};
use super::io::{ConnIo, IoCounters, Shared, Stream};
use super::stats::{FlushTotals, FlushWindow};
use crate::clock::now_ns;
use crate::ring::{Consumer, Doorbell, Read};
use crate::stats::latency_histogram;

/// Most ticks one turn reads from the ring before flushing.
///
/// Intake is O(1) per tick (~50 ns), so 1,024 ticks are ~50 µs: the ring is drained many
/// times per millisecond, and a burst never holds off a flush slice for long.
pub const MAX_TICKS_PER_TURN: usize = 1024;

/// Most work units (1 per tick + 1 per client it wakes) per turn before flushing.
pub const FANOUT_BUDGET: usize = 65_536;

/// Most clients flushed in one slice before the loop takes in ring data and yields to the
/// connection tasks. A write costs ~5–10 µs on loopback (mostly the kernel), so 64 clients
/// are ~0.5 ms at most: control replies and reads wait at most that long.
pub const SLICE_MAX_CLIENTS: usize = 64;

/// Longest one flush slice may run before the loop takes in ring data and yields (checked
/// after each client). Bounds the slice when writes are slow (TLS, large batches).
pub const SLICE_BUDGET: Duration = Duration::from_micros(500);

/// Oldest a tick may be (since ingest) when a shard reads it in an ordinary turn. A shard
/// that finds an older one was descheduled or stalled: that turn is a **catch-up**, which
/// reads the whole backlog (up to [`CATCH_UP_TICKS`]) before flushing, so clients get the
/// newest values at once and still every trade in order. Intake is O(1) per tick, so a
/// catch-up of 65,536 ticks (the default ring) takes a few milliseconds; only a ring overrun
/// loses ticks (healed from the last-value cache, trades reported as gaps).
pub const MAX_TICK_AGE: Duration = Duration::from_millis(100);

/// Most ticks one catch-up turn reads (~10 ms of intake). A longer backlog takes more than one
/// catch-up turn, with a flush slice between them.
pub const CATCH_UP_TICKS: usize = 1 << 18;

pub(crate) async fn run(
    id: usize,
    shared: Rc<Shared>,
    mut consumer: Consumer,
    doorbell: Arc<Doorbell>,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
    histograms: crossbeam_channel::Sender<(usize, Histogram<u64>)>,
) {
    tokio::task::spawn_local(housekeeping(id, shared.clone(), histograms));
    let mut heal_log = Throttle::default();
    loop {
        let now = now_ns();
        // 1. The ring, bounded.
        intake(id, &shared, &mut consumer, &mut heal_log, now);

        // 2. Hand-offs and commands; max_rate deadlines.
        while let Ok(msg) = rx.try_recv() {
            if let Some(grace) = handle_msg(&shared, msg) {
                return finish(&shared, grace).await;
            }
        }
        let next_due = shared.core.borrow_mut().poll_deadlines(now);

        // 3. One flush slice.
        IoCounters::add(&shared.io.turns, 1);
        flush_slice(&shared);

        // 4. More work, or wait for it.
        if consumer.has_pending() || shared.core.borrow().ready_len() > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = next_due
            .or_else(|| shared.core.borrow().next_deadline())
            .map_or(Duration::from_secs(3600), |d| Duration::from_nanos(d.saturating_sub(now_ns())));
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

/// Reads up to [`MAX_TICKS_PER_TURN`] ticks (or [`FANOUT_BUDGET`] work) from the ring into
/// the core; a catch-up turn (the first tick older than [`MAX_TICK_AGE`]) reads up to
/// [`CATCH_UP_TICKS`] and four times the work.
fn intake(id: usize, shared: &Shared, consumer: &mut Consumer, heal_log: &mut Throttle, now: u64) {
    let mut core = shared.core.borrow_mut();
    core.set_now(now);
    let (mut ticks, mut work) = (0, 0);
    let (mut max_ticks, mut max_work) = (MAX_TICKS_PER_TURN, FANOUT_BUDGET);
    while ticks < max_ticks && work < max_work {
        match consumer.try_read() {
            Read::Tick(t) => {
                if ticks == 0 && now.saturating_sub(t.ts_gateway) > MAX_TICK_AGE.as_nanos() as u64 {
                    (max_ticks, max_work) = (CATCH_UP_TICKS, 4 * FANOUT_BUDGET);
                    core.counters.catch_ups += 1;
                    if heal_log.due(now) {
                        tracing::warn!(
                            shard = id,
                            backlog = consumer.lag() + 1,
                            "shard behind by more than {MAX_TICK_AGE:?}: reading its backlog before flushing"
                        );
                    }
                }
                work += 1 + core.on_tick(&t);
                ticks += 1;
            }
            Read::Overrun { missed } => {
                core.heal_from_lvc();
                if heal_log.due(now) {
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

/// Flushes clients from the front of the ready queue: at most [`SLICE_MAX_CLIENTS`], and
/// no more once [`SLICE_BUDGET`] has passed. One write per client.
fn flush_slice(shared: &Shared) {
    let start = now_ns();
    let budget = SLICE_BUDGET.as_nanos() as u64;
    let conns = shared.conns.borrow();
    let mut served = 0;
    let mut now = start;
    while served < SLICE_MAX_CLIENTS && now.saturating_sub(start) < budget {
        let Some(key) = shared.core.borrow_mut().pop_ready(now) else { break };
        served += 1;
        let wrote_at = conns.get(key).and_then(|io| shared.flush_client(key, io, now).at);
        now = wrote_at.unwrap_or_else(now_ns);
    }
    if served > 0 {
        let took = now.saturating_sub(start);
        IoCounters::add(&shared.io.slices, 1);
        IoCounters::add(&shared.io.slice_ns, took);
        shared.io.slice_max_ns.set(shared.io.slice_max_ns.get().max(took));
    }
}

/// Lets an event through at most once a second (overrun and catch-up warnings: an overloaded
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
    let registered = match stream {
        Socket::Tcp(s) => {
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_tcp_nodelay(true);
            if shared.settings.send_buffer_bytes > 0 {
                let _ = sock.set_send_buffer_size(shared.settings.send_buffer_bytes);
            }
            s.set_nonblocking(true).and_then(|()| TcpStream::from_std(s)).map(Stream::Tcp)
        }
        Socket::Pair(s) => {
            // The same small buffer as a TCP client's: a slow SSE client conflates in the
            // gateway too, instead of ageing in a large pair buffer.
            if shared.settings.send_buffer_bytes > 0 {
                let _ = socket2::SockRef::from(&s).set_send_buffer_size(shared.settings.send_buffer_bytes);
            }
            s.set_nonblocking(true).and_then(|()| tokio::net::UnixStream::from_std(s)).map(Stream::Pair)
        }
    };
    let stream = match registered {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "could not register upgraded socket");
            shared.stats.clients.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    };
    let key = shared.core.borrow_mut().add_client(format, now_ns(), session.grant);
    shared.core.borrow_mut().set_peer(key, peer);
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
    let kind = conn::Kind {
        echo: session.echo,
        sse: format == crate::protocol::Format::Sse,
        initial: session.initial,
    };
    tokio::task::spawn_local(conn::run(shared.clone(), key, io, buf, peer, guard, kind));
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
    let mut last_totals = FlushTotals { at_ns: now_ns(), ..FlushTotals::default() };
    let mut top_clients = Vec::new();
    loop {
        tick.tick().await;
        if shared.shutting_down.get() {
            return;
        }
        let mut core = shared.core.borrow_mut();
        core.set_limits(shared.settings.live.limits());
        core.trim_trades();
        shared.stats.publish(&core, shared.stats.ring_lag.load(Ordering::Relaxed), &shared.io);
        if last_hist.elapsed()
            >= shared.settings.live.config().server.stats_interval.min(Duration::from_secs(1))
        {
            last_hist = tokio::time::Instant::now();
            let totals = FlushTotals {
                at_ns: now_ns(),
                writes: shared.io.writes.get(),
                delivered: core.counters.delivered,
                slices: shared.io.slices.get(),
                slice_ns: shared.io.slice_ns.get(),
                visits: core.counters.visits,
                queue_wait_ns: core.counters.queue_wait_ns,
            };
            let window = FlushWindow::between(
                &last_totals,
                &totals,
                shared.io.slice_max_ns.replace(0),
                std::mem::take(&mut core.counters.queue_wait_max_ns),
            );
            last_totals = totals;
            if let Ok(mut w) = shared.stats.window.lock() {
                *w = window;
            }
            let h = std::mem::replace(&mut core.latency, latency_histogram());
            let _ = histograms.try_send((id, h));
            if let Ok(mut top) = shared.stats.top_symbols.lock() {
                core.top_symbols(10, &mut top);
            }
            core.top_clients(10, &mut top_clients);
            if let Ok(mut top) = shared.stats.top_clients.lock() {
                top.clear();
                top.extend(top_clients.iter().map(|&(peer, bytes, max_bandwidth)| super::TopClient {
                    peer: peer.map_or_else(|| "?".into(), |p| p.to_string()),
                    bytes,
                    max_bandwidth,
                }));
            }
        }
        drop(core);
    }
}
