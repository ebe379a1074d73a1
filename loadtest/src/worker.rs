//! A worker thread: a current-thread tokio runtime driving its share of the clients
//! (client `g` belongs to thread `g % threads`), plus three small tasks — the **ramp**
//! (opens its clients on the global schedule `start + g / ramp`), the **interval** tick
//! (once a second, swaps its histograms for empty ones and sends the full ones to the
//! coordinator) and the **churn** tick — and a control loop that follows the coordinator's
//! [`Stage`].
//!
//! Everything a thread owns is single-threaded (`Rc`/`RefCell`, no borrow held across an
//! `.await`): the [`Checker`], the histograms and counters, and one **scratch read
//! buffer** shared by all its connections. A connection reads into the scratch buffer
//! (its unfinished frame, if any, copied in front first), frames are decoded **in place**
//! there, and only the bytes of a frame that is still incomplete are copied back into the
//! connection's own small buffer. Per connection that leaves the socket, the task and a
//! few small vectors: well under a few KiB, for 18,000 connections.

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
use crate::decode::{self, Control, DecodeError, JsonDecoder, SymbolTable, UPDATE_PREFIX};
use crate::options::Options;
use crate::picker::Picker;
use crate::request;
use crate::srcaddr::SourcePlan;
use crate::stats::{Counters, latency_histogram, record_ns};
use crate::ws::frame::{self, opcode};

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

/// Size of a thread's scratch read buffer; one `read` takes at most this much. Grows for
/// a frame that does not fit (the `list` reply of a huge universe).
pub const SCRATCH: usize = 256 * 1024;

/// How long a closing connection waits for the server's close frame or EOF.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Longest one write of ours (requests, pongs, close) may take before the connection is
/// treated as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Period of the churn tick.
const CHURN_TICK: Duration = Duration::from_millis(100);

/// Request id of each client's initial subscribe.
const FIRST_SUBSCRIBE_ID: u32 = 1;

/// State shared by all threads and the coordinator.
pub struct Shared {
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

impl Shared {
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
    /// Interval number since [`Shared::epoch`].
    pub index: u64,
    /// receive − ts_gateway of live updates during measurement.
    pub gateway: Histogram<u64>,
    /// receive − ts_event of live updates during measurement.
    pub event: Histogram<u64>,
    /// Connect latency (TCP connect + upgrade) of clients that connected.
    pub connect: Histogram<u64>,
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

/// A request awaiting its reply.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Subscribe(u32, u32),
    Unsubscribe(u32, u32),
}

impl Pending {
    fn id(&self) -> u32 {
        match *self {
            Pending::Subscribe(id, _) | Pending::Unsubscribe(id, _) => id,
        }
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
    /// Connected and the first `subscribed` reply arrived.
    streaming: bool,
    /// Counted in `Shared::subscribed` or `Shared::failed` already.
    settled: bool,
    pending: Vec<Pending>,
    next_id: u32,
    alive: bool,
}

/// The thread's measurements of the current interval.
struct Recorder {
    gateway: Histogram<u64>,
    event: Histogram<u64>,
    connect: Histogram<u64>,
    counters: Counters,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            gateway: latency_histogram(),
            event: latency_histogram(),
            connect: latency_histogram(),
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

/// The scratch read buffer and the JSON decoder.
struct Scratch {
    buf: Vec<u8>,
    json: JsonDecoder,
}

/// A worker thread's context, shared by its tasks.
struct Thread {
    index: usize,
    shared: Arc<Shared>,
    tx: mpsc::Sender<ToCoord>,
    state: RefCell<State>,
    scratch: RefCell<Scratch>,
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
    shared: Arc<Shared>,
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
            streaming: false,
            settled: false,
            pending: Vec::new(),
            next_id: FIRST_SUBSCRIBE_ID + 1,
            alive: false,
        })
        .collect();
    let mut checker = Checker::new();
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
        scratch: RefCell::new(Scratch { buf: vec![0; SCRATCH], json: JsonDecoder::new() }),
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
        .map(|(i, c)| FinalValues { client: c.global, url: c.url, values: st.checker.final_values(i) })
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
                if c.streaming && c.alive && c.pending.is_empty() {
                    c.ctl.send(Cmd::Churn);
                    break;
                }
            }
        }
    }
}

/// The state of one connection task.
struct Conn {
    local: usize,
    stream: TcpStream,
    /// Bytes of an incomplete frame, carried to the next read.
    leftover: Vec<u8>,
    /// Frames to send.
    out: Vec<u8>,
    /// When we sent our close frame.
    closing: Option<Instant>,
    /// The connection is over.
    ended: bool,
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

/// Counts client `local` as failed unless it already counted as subscribed or failed.
fn mark_failed(shared: &Shared, st: &mut State, local: usize) {
    let c = &mut st.clients[local];
    if !c.settled {
        c.settled = true;
        shared.failed.fetch_add(1, Ordering::AcqRel);
    }
}

fn settle_failed(th: &Thread, local: usize) {
    mark_failed(&th.shared, &mut th.state.borrow_mut(), local);
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
    let (stream, leftover, took) = loop {
        attempt += 1;
        let mut rng = fastrand::Rng::with_seed(th.state.borrow_mut().rng.u64(..));
        let t0 = Instant::now();
        let err = match tokio::time::timeout(
            opts.connect_timeout,
            crate::ws::connect(url, source, format, &mut rng),
        )
        .await
        {
            Ok(Ok((s, l))) => break (s, l, t0.elapsed()),
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
    let mut conn = Conn { local, stream, leftover, out: Vec::new(), closing: None, ended: false };
    {
        let st = &mut *th.state.borrow_mut();
        record_ns(&mut st.rec.connect, took.as_nanos() as u64);
        let syms = th.shared.picker.distinct(opts.symbols_per_client, &mut st.rng);
        st.checker.subscribe_sent(local, &syms);
        let c = &mut st.clients[local];
        c.pending.push(Pending::Subscribe(FIRST_SUBSCRIBE_ID, u32::MAX));
        let mask = st.rng.u32(..).to_ne_bytes();
        let names = syms.iter().map(|&s| th.shared.symbols.name(s));
        request::subscribe(&mut conn.out, FIRST_SUBSCRIBE_ID, names, opts.max_rate, mask);
    }
    Some(conn)
}

/// Reads and answers until the connection ends.
async fn run_conn(th: &Rc<Thread>, mut conn: Conn) {
    let ctl = th.state.borrow().clients[conn.local].ctl.clone();
    // Frames that arrived with the handshake response.
    if !conn.leftover.is_empty() {
        on_bytes(th, &mut conn, None);
    }
    loop {
        if !conn.out.is_empty() {
            let out = std::mem::take(&mut conn.out);
            let res = tokio::time::timeout(WRITE_TIMEOUT, conn.stream.write_all(&out)).await;
            conn.out = out;
            conn.out.clear();
            if !matches!(res, Ok(Ok(()))) {
                lost(th, &mut conn, "write failed or timed out");
            }
        }
        if conn.ended {
            break;
        }
        let close_deadline = conn.closing.map(|t| t + CLOSE_WAIT);
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
                    lost(th, &mut conn, "socket error");
                } else {
                    on_bytes(th, &mut conn, Some(()));
                }
            }
            () = sleep_until_opt(close_deadline) => {
                th.state.borrow_mut().close_timeouts += 1;
                conn.ended = true;
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

/// The connection died without a close handshake.
fn lost(th: &Thread, conn: &mut Conn, why: &str) {
    if conn.ended {
        return;
    }
    conn.ended = true;
    if conn.closing.is_none() {
        let st = &mut *th.state.borrow_mut();
        st.checker.unexpected_close(conn.local, 1006, why);
        *st.close_codes.entry(1006).or_default() += 1;
    }
    settle_failed(th, conn.local);
}

fn on_cmd(th: &Thread, conn: &mut Conn, cmd: Cmd) {
    let st = &mut *th.state.borrow_mut();
    match cmd {
        Cmd::Close => {
            if conn.closing.is_none() && !conn.ended {
                let mask = st.rng.u32(..).to_ne_bytes();
                frame::write_client_close(&mut conn.out, 1000, "load test done", mask);
                conn.closing = Some(Instant::now());
            }
        }
        Cmd::Churn => {
            let c = &st.clients[conn.local];
            if th.shared.stage() != Stage::Measure
                || !c.streaming
                || !c.pending.is_empty()
                || conn.closing.is_some()
            {
                return;
            }
            let held: Vec<u32> = st
                .checker
                .held(conn.local)
                .filter(|&(_, s)| s == SymState::Subscribed)
                .map(|(sym, _)| sym)
                .collect();
            if held.is_empty() {
                return;
            }
            let old = held[st.rng.usize(0..held.len())];
            let checker = &st.checker;
            let Some(new) = th.shared.picker.other(&mut st.rng, |s| checker.knows(conn.local, s)) else {
                return;
            };
            let c = &mut st.clients[conn.local];
            let (id_u, id_s) = (c.next_id, c.next_id + 1);
            c.next_id += 2;
            c.pending.push(Pending::Unsubscribe(id_u, old));
            c.pending.push(Pending::Subscribe(id_s, new));
            st.checker.unsubscribe_sent(conn.local, &[old]);
            st.checker.subscribe_sent(conn.local, &[new]);
            let names = &th.shared.symbols;
            let m1 = st.rng.u32(..).to_ne_bytes();
            let m2 = st.rng.u32(..).to_ne_bytes();
            request::unsubscribe(&mut conn.out, id_u, [names.name(old)], m1);
            request::subscribe(&mut conn.out, id_s, [names.name(new)], th.shared.opts.max_rate, m2);
            st.rec.counters.churn_ops += 1;
        }
    }
}

/// Reads what the socket has (unless `read` is `None`: then only the carried bytes are
/// processed) and processes every complete frame in place.
fn on_bytes(th: &Thread, conn: &mut Conn, read: Option<()>) {
    let sc = &mut *th.scratch.borrow_mut();
    let l = conn.leftover.len();
    let need = frame::declared_len(&conn.leftover).map_or(0, |d| d as usize);
    let want = (l + SCRATCH).max(need);
    if sc.buf.len() < want {
        sc.buf.resize(want, 0);
    }
    sc.buf[..l].copy_from_slice(&conn.leftover);
    let filled = match read {
        None => l,
        Some(()) => match conn.stream.try_read(&mut sc.buf[l..]) {
            Ok(0) => {
                if conn.closing.is_some() {
                    conn.ended = true;
                } else {
                    lost(th, conn, "connection closed without a close frame");
                }
                return;
            }
            Ok(n) => l + n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                let why = format!("read failed: {e}");
                lost(th, conn, &why);
                return;
            }
        },
    };
    let now = now_ns();
    let st = &mut *th.state.borrow_mut();
    let measuring = th.shared.stage() == Stage::Measure;
    if measuring {
        st.rec.counters.bytes += (filled - l) as u64;
    }
    let consumed = process_frames(th, st, &mut sc.json, &mut sc.buf[..filled], conn, now, measuring);
    conn.leftover.clear();
    if !conn.ended {
        conn.leftover.extend_from_slice(&sc.buf[consumed..filled]);
        if conn.leftover.capacity() > 64 * 1024 && conn.leftover.len() < 4096 {
            conn.leftover.shrink_to(4096);
        }
    }
}

/// Processes every complete frame at the front of `buf`; returns the bytes consumed.
fn process_frames(
    th: &Thread,
    st: &mut State,
    json: &mut JsonDecoder,
    buf: &mut [u8],
    conn: &mut Conn,
    now: u64,
    measuring: bool,
) -> usize {
    let mut pos = 0;
    let mut any_update = false;
    while !conn.ended {
        let h = match frame::parse_header(&buf[pos..]) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                st.checker.malformed(conn.local, &e.to_string());
                conn.ended = true;
                mark_failed(&th.shared, st, conn.local);
                break;
            }
        };
        let start = pos;
        pos += h.len;
        if let Err(e) = frame::check(&h) {
            st.checker.malformed(conn.local, &e.to_string());
            continue;
        }
        let payload = &mut buf[start + h.payload.start..start + h.payload.end];
        match h.opcode {
            opcode::TEXT => {
                if measuring {
                    st.rec.counters.frames += 1;
                }
                // The gateway writes updates with a fixed field order, so the prefix tells them
                // from replies without parsing. Anything else is parsed as a reply (on a copy:
                // rare) and, should it be an update after all, decoded as one.
                let is_update = payload.starts_with(UPDATE_PREFIX) || {
                    match decode::parse_control(&mut payload.to_vec()) {
                        Ok(Control::Other(t)) if t == "update" => true,
                        Ok(c) => {
                            on_control(th, st, conn, c);
                            false
                        }
                        Err(e) => {
                            st.checker.malformed(conn.local, &e.to_string());
                            false
                        }
                    }
                };
                if is_update {
                    match json.decode_update(payload, &th.shared.symbols) {
                        Ok(u) => {
                            any_update = true;
                            on_update(st, conn.local, &u, now, measuring);
                        }
                        Err(DecodeError::UnknownSymbol(name)) => st.checker.unknown_symbol(conn.local, &name),
                        Err(e) => st.checker.malformed(conn.local, &e.to_string()),
                    }
                }
            }
            opcode::BINARY => {
                if measuring {
                    st.rec.counters.frames += 1;
                }
                for r in decode::binary_updates(payload) {
                    match r {
                        Ok(u) => {
                            // An unknown id is simply not held: the checker counts it.
                            any_update = true;
                            on_update(st, conn.local, &u, now, measuring);
                        }
                        Err(e) => st.checker.malformed(conn.local, &e.to_string()),
                    }
                }
            }
            opcode::PING => {
                st.rec.counters.pings += 1;
                let mask = st.rng.u32(..).to_ne_bytes();
                frame::write_client_frame(&mut conn.out, opcode::PONG, payload, mask);
            }
            opcode::CLOSE => {
                let code = frame::close_code(payload);
                conn.ended = true;
                if conn.closing.is_none() {
                    let code = code.unwrap_or(1002);
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    st.checker.unexpected_close(conn.local, code, &format!("server closed: {reason}"));
                    *st.close_codes.entry(code).or_default() += 1;
                    // Echo the code (RFC 6455 §5.5.1); 1005 is never sent on the wire.
                    let echo = if tickgate::protocol::frame::is_valid_close_code(code) { code } else { 1000 };
                    let mask = st.rng.u32(..).to_ne_bytes();
                    frame::write_client_close(&mut conn.out, echo, "", mask);
                    mark_failed(&th.shared, st, conn.local);
                }
            }
            _ => {} // pong (`check` let no other opcode through)
        }
    }
    if any_update {
        th.shared.last_update_ns.store(now, Ordering::Relaxed);
    }
    pos
}

#[inline]
fn on_update(st: &mut State, local: usize, u: &decode::Update, now: u64, measuring: bool) {
    let verdict = st.checker.update(local, u);
    if !measuring {
        return;
    }
    if u.snapshot {
        st.rec.counters.snapshots += 1;
        return;
    }
    st.rec.counters.updates += 1;
    st.clients[local].measured += 1;
    if verdict == (Verdict::Ok { conflated: true }) {
        st.rec.counters.conflated += 1;
    }
    record_ns(&mut st.rec.gateway, now.saturating_sub(u.tick.ts_gateway));
    record_ns(&mut st.rec.event, now.saturating_sub(u.tick.ts_event));
}

fn on_control(th: &Thread, st: &mut State, conn: &mut Conn, c: Control) {
    let local = conn.local;
    let symbols = &th.shared.symbols;
    let take_pending = |st: &mut State, id: Option<i64>| -> Option<Pending> {
        let id = u32::try_from(id?).ok()?;
        let p = &mut st.clients[local].pending;
        let i = p.iter().position(|x| x.id() == id)?;
        Some(p.remove(i))
    };
    match c {
        Control::Subscribed { id, symbols: list } => {
            let mut ids = Vec::with_capacity(list.len());
            for (name, sid) in &list {
                match symbols.id(name) {
                    Some(s) if s == *sid => ids.push(s),
                    Some(s) => st.checker.malformed(
                        local,
                        &format!("subscribed: {name} has binary id {sid}, but is number {s} in the list"),
                    ),
                    None => st.checker.malformed(local, &format!("subscribed: unknown symbol {name:?}")),
                }
            }
            st.checker.subscribed(local, &ids);
            let p = take_pending(st, id);
            if matches!(p, Some(Pending::Subscribe(FIRST_SUBSCRIBE_ID, _))) {
                let cl = &mut st.clients[local];
                cl.streaming = true;
                if !cl.settled {
                    cl.settled = true;
                    th.shared.subscribed.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        Control::Unsubscribed { id, symbols: list } => {
            let ids: Vec<u32> = list.iter().filter_map(|n| symbols.id(n)).collect();
            st.checker.unsubscribed(local, &ids);
            take_pending(st, id);
        }
        Control::Error { id, code, message } => {
            st.checker.error_reply(local, &code, &message);
            match take_pending(st, id) {
                Some(Pending::Subscribe(FIRST_SUBSCRIBE_ID, _)) => {
                    // The initial subscribe failed: this client will never stream.
                    mark_failed(&th.shared, st, local);
                }
                Some(Pending::Subscribe(_, sym)) => st.checker.subscribe_failed(local, &[sym]),
                Some(Pending::Unsubscribe(_, sym)) => st.checker.unsubscribe_failed(local, &[sym]),
                None => {}
            }
        }
        Control::Symbols { .. } | Control::Pong { .. } | Control::Other(_) => {}
    }
}
