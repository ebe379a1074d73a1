//! A worker thread: a current-thread tokio runtime driving its share of the clients
//! (client `g` belongs to thread `g % threads`), plus three small tasks — the **ramp**
//! (opens its clients on the global schedule `start + g / ramp`), the **interval** tick
//! (once a second, swaps its histograms for empty ones and sends the full ones to the
//! coordinator) and the **churn** tick — and a control loop that follows the coordinator's
//! [`Stage`].
//!
//! This module is the I/O around [`Session`], which holds the protocol (handshake,
//! requests and replies, decoding, the checker hand-off, ping/pong, close). A connection
//! task connects ([`crate::dial::connect`] drives the upgrade), then loops: write what the
//! session asks ([`Session::poll_transmit`]), wait for the socket, a command or the
//! session's timer, feed the session what happened, and act on its [`Event`]s — latency
//! histograms, counters, which clients subscribed or failed.
//!
//! Everything a thread owns is single-threaded (`Rc`/`RefCell`, no borrow held across an
//! `.await`): the [`Checker`], the histograms and counters, and one **read buffer**
//! ([`ReadBuf`]) shared by all its connections. A connection reads into it (its session's
//! unfinished frame, if any, copied in front first), frames are decoded **in place**
//! there, and only the bytes of a frame that is still incomplete are copied back into the
//! session. Per connection that leaves the socket, the task, the session and a few small
//! vectors: well under a few KiB, for 18,000 connections.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tickgate::clock::now_ns;
use tickgate::protocol::Format;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::checker::{Checker, SymState, Verdict};
use crate::decode::{SymbolTable, Update};
use crate::options::{Options, Transport};
use crate::picker::Picker;
use crate::session::{CLOSE_WAIT, CloseKind, Ctx, Event, ReadBuf, Session};
use crate::srcaddr::SourcePlan;
use crate::stats::{Counters, latency_histogram, record_ns};

/// Where the run is; the coordinator moves it forward, never back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Clients connect and subscribe; nothing is measured but connect latency.
    Ramp = 0,
    /// Latency, rates and conflation are recorded; churn runs.
    Measure = 1,
    /// Measurement is over; integrity is still checked.
    Drain = 2,
    /// `--verify-final`: each thread reports every client's last values.
    Collect = 3,
    /// Close every connection, report, exit.
    Close = 4,
}

/// Size of a thread's read buffer ([`ReadBuf`]); one `read` takes at least this much room.
/// Grows for a frame that does not fit (the `list` reply of a huge universe).
pub const SCRATCH: usize = 256 * 1024;

/// Longest one write of ours (requests, pongs, close) may take before the connection is
/// treated as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Period of the churn tick.
const CHURN_TICK: Duration = Duration::from_millis(100);

/// State of the run shared by all worker threads and the coordinator.
pub struct WorkerShared {
    /// The run's options.
    pub opts: Options,
    /// The gateway's symbols.
    pub symbols: SymbolTable,
    /// Symbol picker.
    pub picker: Picker,
    /// Source addresses.
    pub sources: SourcePlan,
    /// The current [`Stage`] as a byte, read on the hot path.
    pub stage: AtomicU8,
    /// Clients whose upgrade completed.
    pub connected: AtomicUsize,
    /// Clients whose first `subscribed` reply arrived.
    pub subscribed: AtomicUsize,
    /// Clients that gave up connecting or lost their connection before subscribing.
    pub failed: AtomicUsize,
    /// Connection attempts retried.
    pub retries: AtomicUsize,
    /// Wall time (ns) of the last update received by any client.
    pub last_update_ns: AtomicU64,
    /// When the ramp started (client `g` connects at `ramp_start + g / ramp`).
    pub ramp_start: Instant,
    /// Interval `i` covers `[epoch + i s, epoch + (i + 1) s)`.
    pub epoch: Instant,
}

impl WorkerShared {
    /// The current stage.
    #[inline]
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Acquire) {
            0 => Stage::Ramp,
            1 => Stage::Measure,
            2 => Stage::Drain,
            3 => Stage::Collect,
            _ => Stage::Close,
        }
    }
}

/// One second's measurements of one thread.
pub struct Interval {
    /// The thread.
    pub thread: usize,
    /// Interval number since [`WorkerShared::epoch`].
    pub index: u64,
    /// receive − ts_gateway of live updates during measurement.
    pub gateway: Histogram<u64>,
    /// receive − ts_event of live updates during measurement.
    pub event: Histogram<u64>,
    /// Connect latency (TCP connect + upgrade) of clients that connected.
    pub connect: Histogram<u64>,
    /// Initial subscribe sent → the client's first value (snapshot or live update).
    pub first_value: Histogram<u64>,
    /// Counters.
    pub counters: Counters,
}

/// A client's last values, for `--verify-final`.
pub struct FinalValues {
    /// Global client number.
    pub client: usize,
    /// Index of its URL.
    pub url: usize,
    /// `(symbol, last value)` of every held symbol.
    pub values: Vec<(u32, Option<tickgate::feeds::Tick>)>,
    /// With `--depth`: `(symbol, last book)` of every held symbol (empty without).
    pub books: Vec<(u32, Option<tickgate::books::Levels>)>,
}

/// What a thread reports when it is done.
#[derive(Default)]
pub struct ThreadSummary {
    /// The thread.
    pub thread: usize,
    /// Integrity counts and samples.
    pub checker: Checker,
    /// Live updates each connected client received during measurement.
    pub client_updates: Vec<u64>,
    /// CPU time of this thread during measurement.
    pub cpu: Option<Duration>,
    /// First few connection errors.
    pub errors: Vec<String>,
    /// Close codes of unexpected closes.
    pub close_codes: BTreeMap<u16, u64>,
    /// Connections whose close handshake timed out (the server did not answer our close).
    pub close_timeouts: u64,
}

/// Messages to the coordinator.
pub enum ToCoord {
    /// One interval.
    Interval(Box<Interval>),
    /// `--verify-final` values of a thread's clients.
    Finals(usize, Vec<FinalValues>),
    /// The thread is done.
    Done(Box<ThreadSummary>),
}

/// What the coordinator or the churn tick asks a connection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Churn,
    Close,
}

/// A connection's mailbox.
#[derive(Default)]
struct Ctl {
    notify: Notify,
    cmds: RefCell<Vec<Cmd>>,
}

impl Ctl {
    fn send(&self, c: Cmd) {
        self.cmds.borrow_mut().push(c);
        self.notify.notify_one();
    }
}

/// Per-client bookkeeping, owned by the thread.
struct Client {
    global: usize,
    url: usize,
    format: Format,
    ctl: Rc<Ctl>,
    /// Live updates during measurement.
    measured: u64,
    /// When its initial subscribe was sent (ns, wall clock); 0 once its first value came.
    subscribe_sent_ns: u64,
    /// Connected and the first `subscribed` reply arrived.
    streaming: bool,
    /// Counted in `WorkerShared::subscribed` or `WorkerShared::failed` already.
    settled: bool,
    /// No request of its session awaits a reply (kept in step with the session, for the
    /// churn tick).
    idle: bool,
    alive: bool,
}

/// The thread's measurements of the current interval.
struct Recorder {
    gateway: Histogram<u64>,
    event: Histogram<u64>,
    connect: Histogram<u64>,
    first_value: Histogram<u64>,
    counters: Counters,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            gateway: latency_histogram(),
            event: latency_histogram(),
            connect: latency_histogram(),
            first_value: latency_histogram(),
            counters: Counters::default(),
        }
    }
}

/// Mutable state of a thread.
struct State {
    checker: Checker,
    rec: Recorder,
    clients: Vec<Client>,
    rng: fastrand::Rng,
    errors: Vec<String>,
    close_codes: BTreeMap<u16, u64>,
    close_timeouts: u64,
}

/// A worker thread's context, shared by its tasks.
struct Thread {
    index: usize,
    shared: Arc<WorkerShared>,
    tx: mpsc::Sender<ToCoord>,
    state: RefCell<State>,
    /// The read buffer all the thread's connections share.
    scratch: RefCell<ReadBuf>,
    active: Cell<usize>,
    all_done: Notify,
}

/// Runs worker thread `index` until the coordinator reaches [`Stage::Close`] and every
/// connection has closed; sends its measurements on `tx`.
///
/// # Errors
///
/// If the runtime cannot be built (the thread then reports nothing and the coordinator
/// notices).
pub fn run_thread(
    index: usize,
    shared: Arc<WorkerShared>,
    stage: watch::Receiver<Stage>,
    tx: mpsc::Sender<ToCoord>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build_local(Default::default())?;
    let threads = shared.opts.threads;
    let mine: Vec<usize> = (index..shared.opts.clients).step_by(threads).collect();
    let clients: Vec<Client> = mine
        .iter()
        .map(|&g| Client {
            global: g,
            url: g % shared.opts.urls.len(),
            format: shared.opts.format.for_client(g),
            ctl: Rc::new(Ctl::default()),
            measured: 0,
            subscribe_sent_ns: 0,
            streaming: false,
            settled: false,
            idle: true,
            alive: false,
        })
        .collect();
    let mut checker = Checker::new();
    // The last book of every held symbol is only needed to compare it at the end.
    checker.keep_books(shared.opts.verify_final && shared.opts.depth > 0);
    for _ in &clients {
        checker.add_conn();
    }
    let seed = shared.opts.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let th = Rc::new(Thread {
        index,
        shared,
        tx,
        state: RefCell::new(State {
            checker,
            rec: Recorder::new(),
            clients,
            rng: fastrand::Rng::with_seed(seed),
            errors: Vec::new(),
            close_codes: BTreeMap::new(),
            close_timeouts: 0,
        }),
        scratch: RefCell::new(ReadBuf::new(SCRATCH)),
        active: Cell::new(0),
        all_done: Notify::new(),
    });
    rt.block_on(control(th, stage));
    Ok(())
}

/// The thread's control loop.
async fn control(th: Rc<Thread>, mut stage: watch::Receiver<Stage>) {
    let intervals = tokio::task::spawn_local(interval_task(th.clone()));
    tokio::task::spawn_local(ramp_task(th.clone()));
    tokio::task::spawn_local(churn_task(th.clone()));
    let (mut cpu_start, mut cpu_end) = (None, None);
    loop {
        let s = *stage.borrow_and_update();
        if s >= Stage::Measure && cpu_start.is_none() {
            cpu_start = crate::sysinfo::thread_cpu();
        }
        if s >= Stage::Drain && cpu_end.is_none() {
            cpu_end = crate::sysinfo::thread_cpu();
        }
        if s == Stage::Collect {
            send_finals(&th);
        }
        if s == Stage::Close || stage.changed().await.is_err() {
            break;
        }
    }
    // Close every connection and wait for them, bounded.
    let ctls: Vec<Rc<Ctl>> =
        th.state.borrow().clients.iter().filter(|c| c.alive).map(|c| c.ctl.clone()).collect();
    for c in &ctls {
        c.send(Cmd::Close);
    }
    let deadline = Instant::now() + CLOSE_WAIT + WRITE_TIMEOUT + Duration::from_secs(1);
    while th.active.get() > 0 {
        if tokio::time::timeout_at(deadline, th.all_done.notified()).await.is_err() {
            break;
        }
    }
    intervals.abort();
    flush_interval(&th, u64::MAX);
    let cpu = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let st = &mut *th.state.borrow_mut();
    let summary = ThreadSummary {
        thread: th.index,
        checker: std::mem::take(&mut st.checker),
        client_updates: st.clients.iter().filter(|c| c.streaming).map(|c| c.measured).collect(),
        cpu,
        errors: std::mem::take(&mut st.errors),
        close_codes: std::mem::take(&mut st.close_codes),
        close_timeouts: st.close_timeouts,
    };
    let _ = th.tx.send(ToCoord::Done(Box::new(summary)));
}

fn send_finals(th: &Thread) {
    let st = th.state.borrow();
    let finals = st
        .clients
        .iter()
        .enumerate()
        .filter(|(_, c)| c.streaming)
        .map(|(i, c)| FinalValues {
            client: c.global,
            url: c.url,
            values: st.checker.final_values(i),
            books: if th.shared.opts.depth > 0 { st.checker.final_books(i) } else { Vec::new() },
        })
        .collect();
    let _ = th.tx.send(ToCoord::Finals(th.index, finals));
}

/// Sends the current interval's measurements as interval `index` and starts new ones.
fn flush_interval(th: &Thread, index: u64) {
    let rec = std::mem::replace(&mut th.state.borrow_mut().rec, Recorder::new());
    let index = if index == u64::MAX {
        (Instant::now().saturating_duration_since(th.shared.epoch)).as_secs()
    } else {
        index
    };
    let _ = th.tx.send(ToCoord::Interval(Box::new(Interval {
        thread: th.index,
        index,
        gateway: rec.gateway,
        event: rec.event,
        connect: rec.connect,
        first_value: rec.first_value,
        counters: rec.counters,
    })));
}

async fn interval_task(th: Rc<Thread>) {
    let mut index = 0u64;
    loop {
        tokio::time::sleep_until(th.shared.epoch + Duration::from_secs(index + 1)).await;
        flush_interval(&th, index);
        index += 1;
    }
}

async fn ramp_task(th: Rc<Thread>) {
    let n = th.state.borrow().clients.len();
    let ramp = th.shared.opts.ramp_per_sec;
    for local in 0..n {
        let global = th.state.borrow().clients[local].global;
        let at = th.shared.ramp_start + Duration::from_secs_f64(global as f64 / ramp);
        tokio::time::sleep_until(at).await;
        if th.shared.stage() >= Stage::Drain {
            // The run is ending before this client's turn.
            let mut st = th.state.borrow_mut();
            for c in &mut st.clients[local..] {
                c.settled = true;
            }
            th.shared.failed.fetch_add(n - local, Ordering::AcqRel);
            return;
        }
        th.active.set(th.active.get() + 1);
        th.state.borrow_mut().clients[local].alive = true;
        tokio::task::spawn_local(client_task(th.clone(), local));
    }
}

async fn churn_task(th: Rc<Thread>) {
    let per_tick = th.shared.opts.churn_per_sec / th.shared.opts.threads as f64 * CHURN_TICK.as_secs_f64();
    if per_tick <= 0.0 {
        return;
    }
    let mut budget = 0.0;
    let mut tick = tokio::time::interval(CHURN_TICK);
    loop {
        tick.tick().await;
        match th.shared.stage() {
            Stage::Ramp => continue,
            Stage::Measure => {}
            _ => return,
        }
        budget += per_tick;
        let mut st = th.state.borrow_mut();
        let n = st.clients.len();
        while budget >= 1.0 && n > 0 {
            budget -= 1.0;
            // A few random tries to find an idle streaming client.
            for _ in 0..8 {
                let i = st.rng.usize(0..n);
                let c = &st.clients[i];
                if c.streaming && c.alive && c.idle {
                    c.ctl.send(Cmd::Churn);
                    break;
                }
            }
        }
    }
}

/// The state of one connection task: the socket and the protocol session it drives.
struct Conn {
    local: usize,
    stream: TcpStream,
    session: Session,
    /// Frames being written (swapped out of the session, allocation reused).
    out: Vec<u8>,
    /// Request id of the initial subscribe: its reply makes the client count as subscribed.
    initial: Option<u32>,
}

/// One client: connect (with retries), subscribe, then read until closed.
async fn client_task(th: Rc<Thread>, local: usize) {
    if let Some(conn) = connect_with_retries(&th, local).await {
        run_conn(&th, conn).await;
    }
    th.state.borrow_mut().clients[local].alive = false;
    th.active.set(th.active.get().saturating_sub(1));
    if th.active.get() == 0 {
        th.all_done.notify_one();
    }
}

/// Counts `client` as failed unless it already counted as subscribed or failed.
fn mark_failed(shared: &WorkerShared, client: &mut Client) {
    if !client.settled {
        client.settled = true;
        shared.failed.fetch_add(1, Ordering::AcqRel);
    }
}

fn settle_failed(th: &Thread, local: usize) {
    mark_failed(&th.shared, &mut th.state.borrow_mut().clients[local]);
}

async fn connect_with_retries(th: &Rc<Thread>, local: usize) -> Option<Conn> {
    let opts = &th.shared.opts;
    let (global, url_i, format) = {
        let st = th.state.borrow();
        let c = &st.clients[local];
        (c.global, c.url, c.format)
    };
    let url = &opts.urls[url_i];
    let source = th.shared.sources.for_client(global);
    let mut attempt = 0;
    // SSE subscribes with its request: its symbols are picked before connecting.
    let sse_syms = (opts.transport == Transport::Sse).then(|| {
        let st = &mut *th.state.borrow_mut();
        th.shared.picker.distinct(opts.symbols_per_client, &mut st.rng)
    });
    let sse_query = sse_syms.as_ref().map(|syms| {
        let names: Vec<&str> = syms.iter().map(|&s| th.shared.symbols.name(s)).collect();
        let mut q = format!("symbols={}", names.join(","));
        if opts.trades {
            q.push_str("&trades=1");
        }
        if let Some(r) = opts.max_rate {
            q.push_str(&format!("&max_rate={r}"));
        }
        if opts.depth > 0 {
            q.push_str(&format!("&depth={}", opts.depth));
        }
        q
    });
    let (stream, mut session, took) = loop {
        attempt += 1;
        let rng = fastrand::Rng::with_seed(th.state.borrow_mut().rng.u64(..));
        let mut session = match &sse_query {
            Some(q) => Session::new_sse(local, url, q, rng),
            None => Session::new(local, url, format, rng),
        };
        session.trades = opts.trades;
        session.depth = opts.depth;
        let t0 = Instant::now();
        let err =
            match tokio::time::timeout(opts.connect_timeout, crate::dial::connect(url, source, &mut session))
                .await
            {
                Ok(Ok(s)) => break (s, session, t0.elapsed()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("connect + upgrade at {url} took over {:?}", opts.connect_timeout),
            };
        if attempt >= opts.connect_attempts || th.shared.stage() >= Stage::Drain {
            let mut st = th.state.borrow_mut();
            if st.errors.len() < 5 {
                st.errors.push(format!("client {global}: {err} (after {attempt} attempts)"));
            }
            drop(st);
            settle_failed(th, local);
            return None;
        }
        th.shared.retries.fetch_add(1, Ordering::Relaxed);
        let jitter = th.state.borrow_mut().rng.u64(0..100);
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt) + jitter)).await;
    };
    th.shared.connected.fetch_add(1, Ordering::AcqRel);
    let initial = {
        let st = &mut *th.state.borrow_mut();
        record_ns(&mut st.rec.connect, took.as_nanos() as u64);
        let cx = Ctx { checker: &mut st.checker, symbols: &th.shared.symbols };
        let id = match &sse_syms {
            Some(syms) => Some(session.sse_subscribed(cx, syms)),
            None => {
                let syms = th.shared.picker.distinct(opts.symbols_per_client, &mut st.rng);
                session.subscribe(cx, &syms, opts.max_rate)
            }
        };
        st.clients[local].idle = session.is_idle();
        st.clients[local].subscribe_sent_ns = now_ns();
        id
    };
    Some(Conn { local, stream, session, out: Vec::new(), initial })
}

/// Reads, writes and waits for the session until it is closed.
async fn run_conn(th: &Rc<Thread>, mut conn: Conn) {
    let ctl = th.state.borrow().clients[conn.local].ctl.clone();
    // Frames that arrived with the handshake response.
    if conn.session.buffered() > 0 {
        receive(th, &mut conn, false);
    }
    loop {
        if conn.session.poll_transmit(&mut conn.out) {
            let res = tokio::time::timeout(WRITE_TIMEOUT, conn.stream.write_all(&conn.out)).await;
            conn.out.clear();
            if !matches!(res, Ok(Ok(()))) {
                step(th, &mut conn, |s, checker| s.on_error(checker, "write failed or timed out"));
            }
        }
        if conn.session.is_closed() {
            break;
        }
        let close_deadline = conn.session.poll_timeout().map(Instant::from_std);
        tokio::select! {
            biased;
            () = ctl.notify.notified() => {
                let cmds = std::mem::take(&mut *ctl.cmds.borrow_mut());
                for c in cmds {
                    on_cmd(th, &mut conn, c);
                }
            }
            r = conn.stream.readable() => {
                if r.is_err() {
                    step(th, &mut conn, |s, checker| s.on_error(checker, "socket error"));
                } else {
                    receive(th, &mut conn, true);
                }
            }
            () = sleep_until_opt(close_deadline) => {
                let now = Instant::now().into_std();
                step(th, &mut conn, |s, _| s.on_timeout(now));
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn on_cmd(th: &Thread, conn: &mut Conn, cmd: Cmd) {
    match cmd {
        Cmd::Close => {
            let now = Instant::now().into_std();
            step(th, conn, |s, _| s.close(now, 1000, "load test done"));
        }
        Cmd::Churn => churn(th, conn),
    }
}

/// Replaces one held symbol with another (unsubscribe + subscribe), during measurement, on an
/// idle streaming connection.
fn churn(th: &Thread, conn: &mut Conn) {
    let st = &mut *th.state.borrow_mut();
    let (local, session) = (conn.local, &mut conn.session);
    if th.shared.stage() != Stage::Measure
        || session.is_sse()
        || !st.clients[local].streaming
        || !session.is_idle()
        || !session.is_open()
    {
        return;
    }
    let held: Vec<u32> =
        st.checker.held(local).filter(|&(_, s)| s == SymState::Subscribed).map(|(sym, _)| sym).collect();
    if held.is_empty() {
        return;
    }
    let old = held[st.rng.usize(0..held.len())];
    let checker = &st.checker;
    let Some(new) = th.shared.picker.other(&mut st.rng, |s| checker.knows(local, s)) else {
        return;
    };
    let symbols = &th.shared.symbols;
    session.unsubscribe(Ctx { checker: &mut st.checker, symbols }, &[old]);
    session.subscribe(Ctx { checker: &mut st.checker, symbols }, &[new], th.shared.opts.max_rate);
    st.clients[local].idle = session.is_idle();
    st.rec.counters.churn_ops += 1;
}

/// Feeds the session an input other than bytes (EOF, an I/O error, a time-out, our close)
/// and acts on the events it queued.
fn step(th: &Thread, conn: &mut Conn, input: impl FnOnce(&mut Session, &mut Checker)) {
    let st = &mut *th.state.borrow_mut();
    input(&mut conn.session, &mut st.checker);
    let measuring = th.shared.stage() == Stage::Measure;
    let (_, mut sink) = Sink::split(&th.shared, st, conn, now_ns(), measuring);
    while let Some(ev) = conn.session.poll_event() {
        sink.on_event(ev);
    }
}

/// Reads what the socket has (unless `read` is false: then only the bytes the session
/// carries are processed) and acts on the events of every complete frame, decoded in place
/// in the thread's read buffer.
fn receive(th: &Thread, conn: &mut Conn, read: bool) {
    let rb = &mut *th.scratch.borrow_mut();
    let spare = conn.session.read_buf(rb);
    let n = if read {
        match conn.stream.try_read(spare) {
            Ok(0) => return step(th, conn, |s, checker| s.on_eof(checker)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                let why = format!("read failed: {e}");
                return step(th, conn, |s, checker| s.on_error(checker, &why));
            }
        }
    } else {
        0
    };
    let now = now_ns();
    let st = &mut *th.state.borrow_mut();
    let measuring = th.shared.stage() == Stage::Measure;
    if measuring {
        st.rec.counters.bytes += n as u64;
    }
    let (checker, mut sink) = Sink::split(&th.shared, st, conn, now, measuring);
    let cx = Ctx { checker, symbols: &th.shared.symbols };
    let mut rx = conn.session.on_bytes(rb, n, cx);
    loop {
        // Updates go to the sink by reference, the rest as events (see `poll_event_with`).
        let ev = rx.poll_event_with(&mut |u, verdict| sink.on_update(u, verdict));
        let Some(ev) = ev else { break };
        sink.on_event(ev);
    }
    let books = rx.books();
    if measuring {
        sink.rec.counters.frames += rx.frames();
        sink.rec.counters.books += books;
    }
    drop(rx);
    // A book is traffic too: `--verify-final` settles only once books have stopped as well.
    if sink.any_update || books > 0 {
        th.shared.last_update_ns.store(now, Ordering::Relaxed);
    }
    sink.client.idle = conn.session.is_idle();
}

/// What the thread does with a session's events: measurements and client bookkeeping (the
/// session has already told the checker).
struct Sink<'a> {
    shared: &'a WorkerShared,
    rec: &'a mut Recorder,
    client: &'a mut Client,
    close_codes: &'a mut BTreeMap<u16, u64>,
    close_timeouts: &'a mut u64,
    initial: Option<u32>,
    /// Wall time (ns) of the read.
    now: u64,
    measuring: bool,
    any_update: bool,
}

impl<'a> Sink<'a> {
    /// Splits `st` into the checker (for the session) and a sink for `conn`'s events (every
    /// other part).
    fn split(
        shared: &'a WorkerShared,
        st: &'a mut State,
        conn: &Conn,
        now: u64,
        measuring: bool,
    ) -> (&'a mut Checker, Sink<'a>) {
        let State { checker, rec, clients, close_codes, close_timeouts, .. } = st;
        let sink = Sink {
            shared,
            rec,
            client: &mut clients[conn.local],
            close_codes,
            close_timeouts,
            initial: conn.initial,
            now,
            measuring,
            any_update: false,
        };
        (checker, sink)
    }

    #[inline]
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Update { update, verdict } => self.on_update(&update, verdict),
            Event::Ping => self.rec.counters.pings += 1,
            Event::Subscribed { id: Some(id), .. } if Some(id) == self.initial => {
                self.client.streaming = true;
                if !self.client.settled {
                    self.client.settled = true;
                    self.shared.subscribed.fetch_add(1, Ordering::AcqRel);
                }
            }
            // The initial subscribe failed: this client will never stream.
            Event::ErrorReply { id: Some(id), .. } if Some(id) == self.initial => {
                mark_failed(self.shared, self.client);
            }
            Event::Closed { code, kind } => {
                if kind.is_unexpected() {
                    *self.close_codes.entry(code).or_default() += 1;
                }
                match kind {
                    CloseKind::Clean => {}
                    CloseKind::TimedOut => *self.close_timeouts += 1,
                    CloseKind::Server
                    | CloseKind::Dropped
                    | CloseKind::DroppedWhileClosing
                    | CloseKind::Broken => {
                        mark_failed(self.shared, self.client);
                    }
                }
            }
            Event::Connected
            | Event::HandshakeFailed(_)
            | Event::Subscribed { .. }
            | Event::Unsubscribed { .. }
            | Event::ErrorReply { .. }
            | Event::Symbols(_) => {}
        }
    }

    /// Records one update (the checker has seen it already).
    #[inline]
    fn on_update(&mut self, u: &Update, verdict: Verdict) {
        self.any_update = true;
        if self.client.subscribe_sent_ns != 0 {
            record_ns(&mut self.rec.first_value, self.now.saturating_sub(self.client.subscribe_sent_ns));
            self.client.subscribe_sent_ns = 0;
        }
        if !self.measuring {
            return;
        }
        let c = &mut self.rec.counters;
        if u.snapshot {
            c.snapshots += 1;
            return;
        }
        c.updates += 1;
        self.client.measured += 1;
        if verdict == (Verdict::Ok { conflated: true }) {
            c.conflated += 1;
        }
        record_ns(&mut self.rec.gateway, self.now.saturating_sub(u.tick.ts_gateway));
        record_ns(&mut self.rec.event, self.now.saturating_sub(u.tick.ts_event));
    }
}
