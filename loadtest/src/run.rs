//! The coordinator: one run from start to report, on the calling thread. [`run()`] reads as
//! the list of stages, each a function:
//!
//! 1. **Setup** (`plan`). Check the options, raise the open-file limit (refuse a client
//!    count that cannot fit), plan source addresses, fetch the universe with `list` over
//!    one connection, read the gateway's RSS (`--gateway-pid`).
//! 2. **Ramp** (`Coordinator::start`, `Coordinator::ramp`). Start the worker threads
//!    ([`crate::worker`]); wait until every client has either subscribed or failed
//!    (bounded by the ramp time plus the connect timeouts).
//! 3. **Measure** (`Coordinator::start_measuring`, `Coordinator::measure`) for
//!    `--duration`: merge the threads' per-second histograms into the total, the interval
//!    log and the live progress.
//! 4. **Drain**, then with `--verify-final` (`Coordinator::verify`): wait for the feed to
//!    end and updates to settle, collect every client's last values and compare them with
//!    `GET /snapshot`.
//! 5. **Close** (`Coordinator::close`, `Coordinator::finish`) every connection (close
//!    handshake), collect the threads' summaries, and build the [`Report`]
//!    (`build_report`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder, Tag};
use tickgate::clock::now_ns;
use tickgate::protocol::Format;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checker::{BookCounts, Checker, TradeCounts, Violations};
use crate::decode::SymbolTable;
use crate::dial;
use crate::options::Options;
use crate::picker::Picker;
use crate::progress::LiveProgress;
use crate::report::{
    ClientCounts, Cpu, GatewayMemory, Histograms, IntervalSummary, REPORT_VERSION, RateSpread, Report,
    RunConfig, VerifySummary,
};
use crate::session::{Ctx, Event, ReadBuf, Session};
use crate::srcaddr::{self, SourcePlan};
use crate::stats::{
    Counters, Hist, Percentiles, RATE_SCALE, fmt_ns, latency_histogram, merge, rate_histogram,
};
use crate::sysinfo::{self, Machine};
use crate::verify;
use crate::worker::{FinalValues, Interval, Stage, ThreadSummary, ToCoord, WorkerShared, run_thread};
use crate::ws::url::WsUrl;

/// Why a run could not be made (as opposed to a run that found problems, which is a
/// [`Report`] that did not pass).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad options (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The clients do not fit the open-file limit (exit code 2).
    #[error("{0}")]
    FdLimit(String),
    /// The gateway could not be reached or answered nonsense before the run started
    /// (exit code 3).
    #[error("{0}")]
    Setup(String),
    /// Threads or files failed (exit code 3).
    #[error("{0}")]
    Internal(String),
}

/// How long the coordinator waits for each thread's final summary after asking every
/// connection to close.
const SUMMARY_WAIT: Duration = Duration::from_secs(20);

type LogWriter<'a, 'b> = IntervalLogWriter<'a, 'b, BufWriter<File>, V2DeflateSerializer>;

/// Runs a load test; see the [module docs](self).
///
/// # Errors
///
/// A [`RunError`] if the run could not be made at all. A run that was made returns its
/// [`Report`] even if it failed ([`Report::passed`]).
pub fn run(opts: Options) -> Result<Report, RunError> {
    let Plan { rt, machine, started_unix, sources, symbols, feed_rate, rss_before } = plan(&opts)?;
    let mut hdr_out = create_hdr_log(&opts)?;
    let mut serializer = V2DeflateSerializer::new();
    let mut coord = Coordinator::start(&opts, symbols, sources)?;
    let ramped = coord.ramp();
    let start = coord.start_measuring();
    let mut log = match hdr_out.as_mut() {
        Some(w) => Some(begin_log(w, &mut serializer, &opts).map_err(RunError::Internal)?),
        None => None,
    };
    let measured = coord.measure(&start, log.as_mut());
    let verify = opts.verify_final.then(|| coord.verify(&rt, log.as_mut()));
    coord.close(log.as_mut());
    drop(log);
    if let Some(mut w) = hdr_out.take()
        && let Err(e) = w.flush()
    {
        coord.warnings.push(format!("writing the HdrHistogram log: {e}"));
    }
    let (shared, agg, warnings) = coord.finish();
    let gateway_memory = ramped.gateway_memory(opts.gateway_pid, rss_before);
    let inputs = Inputs {
        opts: &opts,
        gateway_cpu_cores: measured.gateway_cpu_cores,
        measure_start_unix: start.unix,
        shared: &shared,
        machine,
        started_unix,
        measured: measured.duration,
        cpu_time: measured.cpu_time,
        gateway_memory,
        own_rss: measured.own_rss,
        feed_rate,
    };
    Ok(build_report(inputs, agg, verify, warnings))
}

/// What [`plan`] prepares before any client connects.
struct Plan {
    /// The coordinator's runtime (`list`, `/stats`, `--verify-final`).
    rt: tokio::runtime::Runtime,
    machine: Machine,
    /// Wall time the run started, in seconds since the Unix epoch.
    started_unix: f64,
    sources: SourcePlan,
    /// The gateway's universe, from `list`.
    symbols: SymbolTable,
    /// `feed_rate_target` from `/stats`, for the report.
    feed_rate: Option<u64>,
    /// The gateway's RSS before any client connected (`--gateway-pid`).
    rss_before: Option<u64>,
}

/// Stage 1, setup: checks the options, raises the open-file limit (refusing a client count
/// that cannot fit), plans source addresses, fetches the universe with `list` over one
/// connection, reads the feed rate and the gateway's RSS.
fn plan(opts: &Options) -> Result<Plan, RunError> {
    opts.validate().map_err(RunError::Config)?;
    let (soft, hard) = sysinfo::raise_fd_limit();
    sysinfo::check_fd_budget(opts.clients, soft, hard).map_err(RunError::FdLimit)?;
    let started_unix = now_ns() as f64 / 1e9;
    let machine = Machine::current();
    let targets: Vec<_> = opts.urls.iter().map(|u| u.addr).collect();
    let sources = srcaddr::plan(opts.source_addrs, opts.clients, &targets);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Internal(format!("building the coordinator's runtime: {e}")))?;

    let names = rt
        .block_on(fetch_universe(&opts.urls[0], sources.for_client(opts.clients), opts.connect_timeout))
        .map_err(RunError::Setup)?;
    let symbols = SymbolTable::new(names).map_err(|e| RunError::Setup(format!("the list reply: {e}")))?;
    if symbols.len() < opts.symbols_per_client {
        return Err(RunError::Config(format!(
            "--symbols-per-client {} is more than the gateway's {} symbols (start it with --symbols N)",
            opts.symbols_per_client,
            symbols.len()
        )));
    }
    // The feed rate, for the report (not needed for the run).
    let feed_rate = rt.block_on(feed_rate_target(&opts.urls[0]));
    let rss_before = match opts.gateway_pid {
        Some(pid) => {
            Some(sysinfo::rss_bytes(pid).map_err(|e| RunError::Setup(format!("--gateway-pid: {e}")))?)
        }
        None => None,
    };
    Ok(Plan { rt, machine, started_unix, sources, symbols, feed_rate, rss_before })
}

/// The `--hdr-log` file, created before the threads start so a bad path fails early.
fn create_hdr_log(opts: &Options) -> Result<Option<BufWriter<File>>, RunError> {
    match &opts.hdr_log {
        Some(p) => Ok(Some(BufWriter::new(
            File::create(p)
                .map_err(|e| RunError::Internal(format!("creating --hdr-log {}: {e}", p.display())))?,
        ))),
        None => Ok(None),
    }
}

/// What the ramp left behind.
struct Ramped {
    /// Clients subscribed when measurement starts.
    subscribed: usize,
    /// The gateway's RSS once they are (`--gateway-pid`).
    rss_after: Option<u64>,
}

impl Ramped {
    /// What the gateway's RSS grew by per subscribed client (`--gateway-pid`), given its
    /// RSS before the ramp.
    fn gateway_memory(&self, pid: Option<u32>, rss_before: Option<u64>) -> Option<GatewayMemory> {
        match (pid, rss_before, self.rss_after) {
            (Some(pid), Some(before), Some(after)) => Some(GatewayMemory {
                pid,
                rss_before: before,
                rss_after: after,
                connections: self.subscribed,
                bytes_per_connection: after.saturating_sub(before) / self.subscribed.max(1) as u64,
            }),
            _ => None,
        }
    }
}

/// Where measurement started.
struct MeasureStart {
    t0: Instant,
    /// Wall time, in seconds since the Unix epoch.
    unix: f64,
    /// This process's CPU time.
    cpu: Option<Duration>,
    /// The gateway's CPU time (`--gateway-pid`).
    gateway_cpu: Option<Duration>,
    /// Seconds since [`WorkerShared::epoch`] (where intervals are counted from).
    offset: f64,
}

/// What measurement measured besides the histograms and counters.
struct Measured {
    duration: Duration,
    /// This process's CPU time during measurement.
    cpu_time: Duration,
    /// Cores the gateway used on average (`--gateway-pid`).
    gateway_cpu_cores: Option<f64>,
    /// This process's RSS at the end of measurement.
    own_rss: u64,
}

/// The coordinator once the worker threads run: it moves them through the [`Stage`]s and
/// merges what they send.
struct Coordinator<'o> {
    opts: &'o Options,
    shared: Arc<WorkerShared>,
    stage_tx: watch::Sender<Stage>,
    rx: mpsc::Receiver<ToCoord>,
    handles: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    agg: Aggregator,
    live: LiveProgress,
    warnings: Vec<String>,
}

impl<'o> Coordinator<'o> {
    /// Stage 2 begins: builds the state the threads share and starts them (each assigns
    /// itself clients `g` with `g % threads == index`); the ramp starts 20 ms later.
    fn start(
        opts: &'o Options,
        symbols: SymbolTable,
        sources: SourcePlan,
    ) -> Result<Coordinator<'o>, RunError> {
        let live = LiveProgress::new(opts.progress, opts.clients);
        let now = Instant::now();
        let shared = Arc::new(WorkerShared {
            picker: match opts.symbol_range {
                Some((a, b)) => {
                    let (a, b) = (a.min(symbols.len().saturating_sub(1)), b.min(symbols.len()));
                    Picker::new(opts.pick, b.saturating_sub(a)).shifted(a as u32)
                }
                None => Picker::new(opts.pick, symbols.len()),
            },
            symbols,
            sources,
            opts: opts.clone(),
            stage: AtomicU8::new(Stage::Ramp as u8),
            connected: AtomicUsize::new(0),
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            last_update_ns: AtomicU64::new(0),
            ramp_start: now + Duration::from_millis(20),
            epoch: now,
        });
        let (stage_tx, stage_rx) = watch::channel(Stage::Ramp);
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::with_capacity(opts.threads);
        for i in 0..opts.threads {
            let (sh, st, tx) = (shared.clone(), stage_rx.clone(), tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("loadtest-{i}"))
                .spawn(move || run_thread(i, sh, st, tx))
                .map_err(|e| RunError::Internal(format!("starting worker thread {i}: {e}")))?;
            handles.push(h);
        }
        drop(tx);
        Ok(Coordinator {
            opts,
            shared,
            stage_tx,
            rx,
            handles,
            agg: Aggregator::new(opts.threads),
            live,
            warnings: Vec::new(),
        })
    }

    /// Moves every thread to stage `s`.
    fn set_stage(&self, s: Stage) {
        self.shared.stage.store(s as u8, Ordering::Release);
        let _ = self.stage_tx.send(s);
    }

    /// Stage 2, ramp: waits until every client has subscribed or failed, bounded by the ramp
    /// time plus the connect timeouts.
    fn ramp(&mut self) -> Ramped {
        let opts = self.opts;
        let attempts = f64::from(opts.connect_attempts);
        let ramp_limit = Duration::from_secs_f64(
            opts.clients as f64 / opts.ramp_per_sec
                + opts.connect_timeout.as_secs_f64() * attempts
                + attempts
                + 10.0,
        );
        let ramp_deadline = self.shared.epoch + ramp_limit;
        loop {
            self.agg.pump(&self.rx, Duration::from_millis(100), None);
            let (c, s, f) = counts(&self.shared);
            self.live.update(c, &format!("ramp: {s} subscribed, {f} failed"));
            if s + f >= opts.clients || self.agg.done.len() == opts.threads {
                break;
            }
            if Instant::now() >= ramp_deadline {
                self.warnings.push(format!(
                    "{} clients had neither subscribed nor failed {ramp_limit:?} after the ramp started",
                    opts.clients - s - f
                ));
                break;
            }
        }
        let subscribed = self.shared.subscribed.load(Ordering::Acquire);
        let rss_after = match opts.gateway_pid {
            // Give the gateway a moment to finish the last handshakes' allocations.
            Some(pid) => {
                std::thread::sleep(Duration::from_millis(500));
                sysinfo::rss_bytes(pid).ok()
            }
            None => None,
        };
        Ramped { subscribed, rss_after }
    }

    /// Stage 3 begins: notes the time and CPU, then tells the threads to measure.
    fn start_measuring(&mut self) -> MeasureStart {
        let t0 = Instant::now();
        let unix = now_ns() as f64 / 1e9;
        let cpu = sysinfo::process_cpu();
        let gateway_cpu = self.opts.gateway_pid.and_then(sysinfo::pid_cpu);
        self.set_stage(Stage::Measure);
        let offset = t0.saturating_duration_since(self.shared.epoch).as_secs_f64();
        MeasureStart { t0, unix, cpu, gateway_cpu, offset }
    }

    /// Stage 3, measure for `--duration`: merges the threads' per-second histograms into the
    /// total, the interval log and the live progress; then moves them to [`Stage::Drain`].
    fn measure(&mut self, start: &MeasureStart, mut log: Option<&mut LogWriter<'_, '_>>) -> Measured {
        let opts = self.opts;
        self.agg.window = Some((start.offset, f64::INFINITY));
        let end = start.t0 + opts.duration;
        while Instant::now() < end && self.agg.done.len() < opts.threads {
            let wait = end.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            self.agg.pump(&self.rx, wait, log.as_deref_mut());
            let (c, _, _) = counts(&self.shared);
            self.live.update(
                c,
                &format!(
                    "measuring {:.0}/{:.0} s: {} upd/s, p99 {} (running)",
                    start.t0.elapsed().as_secs_f64(),
                    opts.duration.as_secs_f64(),
                    self.agg.last_rate,
                    self.agg.running_p99.map_or_else(|| "-".to_string(), fmt_ns)
                ),
            );
        }
        self.set_stage(Stage::Drain);
        let t1 = Instant::now();
        let cpu1 = sysinfo::process_cpu();
        let gateway_cpu1 = opts.gateway_pid.and_then(sysinfo::pid_cpu);
        let own_rss = sysinfo::rss_bytes(std::process::id()).unwrap_or(0);
        let duration = t1.saturating_duration_since(start.t0);
        self.agg.window = Some((start.offset, start.offset + duration.as_secs_f64()));
        let cpu_time = match (start.cpu, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        let gateway_cpu_cores = match (start.gateway_cpu, gateway_cpu1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / duration.as_secs_f64().max(1e-9)),
            _ => None,
        };
        Measured { duration, cpu_time, gateway_cpu_cores, own_rss }
    }

    /// Stage 4, `--verify-final`: see [`Coordinator::collect_and_compare`]; a failure is
    /// reported in the summary.
    fn verify(&mut self, rt: &tokio::runtime::Runtime, log: Option<&mut LogWriter<'_, '_>>) -> VerifySummary {
        self.live.update(
            counts(&self.shared).0,
            "verify-final: waiting for the feed to end and updates to settle",
        );
        self.collect_and_compare(rt, log)
            .unwrap_or_else(|e| VerifySummary { error: Some(e), ..VerifySummary::default() })
    }

    /// Waits for the feed to end and updates to settle, collects every client's last values
    /// ([`Stage::Collect`]) and compares them with `GET /snapshot`.
    fn collect_and_compare(
        &mut self,
        rt: &tokio::runtime::Runtime,
        mut log: Option<&mut LogWriter<'_, '_>>,
    ) -> Result<VerifySummary, String> {
        let opts = self.opts;
        let deadline = Instant::now() + opts.verify_timeout;
        for url in &opts.urls {
            let left = deadline.saturating_duration_since(Instant::now());
            rt.block_on(verify::wait_feed_ended(url, left))?;
        }
        // Settle: no update anywhere for `settle`.
        let settle_ns = opts.settle.as_nanos() as u64;
        loop {
            let last = self.shared.last_update_ns.load(Ordering::Relaxed);
            if now_ns().saturating_sub(last) >= settle_ns {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "updates were still arriving {:?} after the measurement",
                    opts.verify_timeout
                ));
            }
            self.agg.pump(&self.rx, Duration::from_millis(50), log.as_deref_mut());
        }
        self.set_stage(Stage::Collect);
        let collect_deadline = Instant::now() + Duration::from_secs(10);
        while self.agg.finals_from < opts.threads {
            if Instant::now() >= collect_deadline
                || !self.agg.pump(&self.rx, Duration::from_millis(50), log.as_deref_mut())
            {
                return Err(format!(
                    "only {} of {} threads reported final values",
                    self.agg.finals_from, opts.threads
                ));
            }
        }
        let finals = &self.agg.finals;
        let mut snapshots: Vec<verify::Snapshot> = Vec::with_capacity(opts.urls.len());
        for (i, url) in opts.urls.iter().enumerate() {
            let mut wanted: Vec<u32> =
                finals.iter().filter(|f| f.url == i).flat_map(|f| f.values.iter().map(|(s, _)| *s)).collect();
            wanted.sort_unstable();
            wanted.dedup();
            snapshots.push(rt.block_on(verify::fetch_snapshots(
                url,
                &wanted,
                &self.shared.symbols,
                opts.depth,
            ))?);
        }
        Ok(verify::compare(finals, &snapshots, &self.shared.symbols))
    }

    /// Stage 5, close: every connection closes (close handshake); collects the threads'
    /// summaries, bounded by [`SUMMARY_WAIT`], and completes the last intervals.
    fn close(&mut self, mut log: Option<&mut LogWriter<'_, '_>>) {
        self.set_stage(Stage::Close);
        self.live.update(counts(&self.shared).0, "closing connections");
        let deadline = Instant::now() + SUMMARY_WAIT;
        while self.agg.done.len() < self.opts.threads && Instant::now() < deadline {
            if !self.agg.pump(&self.rx, Duration::from_millis(100), log.as_deref_mut()) {
                break;
            }
        }
        self.agg.finish(log);
    }

    /// Removes the progress display and joins the threads (unless some did not report);
    /// returns what the report is built from.
    fn finish(mut self) -> (Arc<WorkerShared>, Aggregator, Vec<String>) {
        self.live.finish();
        if self.agg.done.len() < self.opts.threads {
            self.warnings.push(format!(
                "only {} of {} worker threads reported within {SUMMARY_WAIT:?}",
                self.agg.done.len(),
                self.opts.threads
            ));
        } else {
            for h in self.handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.warnings.push(format!("a worker thread failed: {e}")),
                    Err(_) => self.warnings.push("a worker thread panicked".to_string()),
                }
            }
        }
        (self.shared, self.agg, self.warnings)
    }
}

fn counts(shared: &WorkerShared) -> (usize, usize, usize) {
    (
        shared.connected.load(Ordering::Acquire),
        shared.subscribed.load(Ordering::Acquire),
        shared.failed.load(Ordering::Acquire),
    )
}

fn begin_log<'a, 'b>(
    w: &'a mut BufWriter<File>,
    ser: &'b mut V2DeflateSerializer,
    opts: &Options,
) -> Result<LogWriter<'a, 'b>, String> {
    IntervalLogWriterBuilder::new()
        .add_comment(&format!("tickgate-loadtest {}: {}", env!("CARGO_PKG_VERSION"), opts.command_line))
        .add_comment("tags: gateway = receive - ts_gateway, event = receive - ts_event; values in ns")
        .with_start_time(SystemTime::now())
        .with_base_time(SystemTime::now())
        .with_max_value_divisor(1e6)
        .begin_log_with(w, ser)
        .map_err(|e| format!("writing the --hdr-log header: {e}"))
}

/// Merges what the threads send.
struct Aggregator {
    threads: usize,
    gateway: Histogram<u64>,
    event: Histogram<u64>,
    connect: Histogram<u64>,
    first_value: Histogram<u64>,
    counters: Counters,
    /// Intervals not yet heard from every thread: (threads heard, gateway, event, updates).
    pending: BTreeMap<u64, (usize, Histogram<u64>, Histogram<u64>, u64)>,
    /// Measurement window in seconds since the epoch, once measuring.
    window: Option<(f64, f64)>,
    intervals: Vec<IntervalSummary>,
    done: Vec<ThreadSummary>,
    finals: Vec<FinalValues>,
    finals_from: usize,
    last_rate: u64,
    running_p99: Option<u64>,
    errors: Vec<String>,
}

impl Aggregator {
    fn new(threads: usize) -> Aggregator {
        Aggregator {
            threads,
            gateway: latency_histogram(),
            event: latency_histogram(),
            connect: latency_histogram(),
            first_value: latency_histogram(),
            counters: Counters::default(),
            pending: BTreeMap::new(),
            window: None,
            intervals: Vec::new(),
            done: Vec::new(),
            finals: Vec::new(),
            finals_from: 0,
            last_rate: 0,
            running_p99: None,
            errors: Vec::new(),
        }
    }

    /// Handles messages for up to `wait`; false once every thread has hung up.
    fn pump(
        &mut self,
        rx: &mpsc::Receiver<ToCoord>,
        wait: Duration,
        mut log: Option<&mut LogWriter<'_, '_>>,
    ) -> bool {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(m) => self.on_msg(m, log.as_deref_mut()),
                Err(mpsc::RecvTimeoutError::Timeout) => return true,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    fn on_msg(&mut self, m: ToCoord, log: Option<&mut LogWriter<'_, '_>>) {
        match m {
            ToCoord::Interval(i) => self.on_interval(*i, log),
            ToCoord::Finals(_, f) => {
                self.finals.extend(f);
                self.finals_from += 1;
            }
            ToCoord::Done(d) => self.done.push(*d),
        }
    }

    fn on_interval(&mut self, i: Interval, log: Option<&mut LogWriter<'_, '_>>) {
        for (into, from, what) in [
            (&mut self.gateway, &i.gateway, "gateway"),
            (&mut self.event, &i.event, "event"),
            (&mut self.connect, &i.connect, "connect"),
            (&mut self.first_value, &i.first_value, "first value"),
        ] {
            if let Err(e) = merge(into, from)
                && self.errors.len() < 5
            {
                self.errors.push(format!("{what} histogram: {e}"));
            }
        }
        self.counters.add(&i.counters);
        let e =
            self.pending.entry(i.index).or_insert_with(|| (0, latency_histogram(), latency_histogram(), 0));
        e.0 += 1;
        let _ = merge(&mut e.1, &i.gateway);
        let _ = merge(&mut e.2, &i.event);
        e.3 += i.counters.updates;
        if e.0 >= self.threads {
            self.complete(i.index, log);
        }
    }

    /// An interval every thread reported: summarize and log it if it overlaps the
    /// measurement window.
    fn complete(&mut self, index: u64, log: Option<&mut LogWriter<'_, '_>>) {
        let Some((_, gw, ev, updates)) = self.pending.remove(&index) else { return };
        let Some((start, end)) = self.window else { return };
        let (a, b) = (index as f64, index as f64 + 1.0);
        if b <= start || a >= end {
            return;
        }
        // The share of this second inside the window, for the rate.
        let inside = (b.min(end) - a.max(start)).max(1e-3);
        self.last_rate = (updates as f64 / inside).round() as u64;
        self.running_p99 = (!self.gateway.is_empty()).then(|| self.gateway.value_at_quantile(0.99));
        let p = Percentiles::of(&gw);
        self.intervals.push(IntervalSummary {
            t: (a - start).max(0.0),
            updates,
            p50_ns: p.p50,
            p99_ns: p.p99,
            max_ns: p.max,
        });
        if let Some(log) = log {
            let ts = Duration::from_secs_f64((a - start).max(0.0));
            let len = Duration::from_secs_f64(inside);
            for (h, tag) in [(&gw, "gateway"), (&ev, "event")] {
                if let Err(e) = log.write_histogram(h, ts, len, Tag::new(tag))
                    && self.errors.len() < 5
                {
                    self.errors.push(format!("writing the --hdr-log: {e}"));
                }
            }
        }
    }

    /// Completes every interval still waiting (threads that stopped early).
    fn finish(&mut self, mut log: Option<&mut LogWriter<'_, '_>>) {
        let left: Vec<u64> = self.pending.keys().copied().collect();
        for i in left {
            self.complete(i, log.as_deref_mut());
        }
    }
}

/// `feed_rate_target` from the gateway's `GET /stats`, if it answers.
async fn feed_rate_target(url: &WsUrl) -> Option<u64> {
    let r = crate::http::get(url.addr, &url.host, "/stats", Duration::from_secs(5)).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v.get("feed_rate_target")?.as_u64()
}

/// Fetches the gateway's symbols with `list` over one connection (a [`Session`] driven
/// here), then closes it.
async fn fetch_universe(
    url: &WsUrl,
    source: Option<std::net::IpAddr>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let work = async {
        let mut session = Session::new(0, url, Format::Json, fastrand::Rng::new());
        let mut stream = dial::connect(url, source, &mut session)
            .await
            .map_err(|e| format!("cannot reach the gateway: {e}"))?;
        // The session's checker and symbol table see nothing of interest here: the universe is
        // what is being fetched.
        let (mut checker, symbols) = (Checker::new(), SymbolTable::default());
        let mut rb = ReadBuf::new(64 * 1024);
        let mut out = Vec::new();
        session.list();
        let mut n = 0;
        let names = loop {
            // Frames that came with the upgrade response first, then what each read brings.
            let mut rx = session.on_bytes(&mut rb, n, Ctx { checker: &mut checker, symbols: &symbols });
            let (mut names, mut closed) = (None, None);
            while let Some(ev) = rx.poll_event() {
                match ev {
                    Event::Symbols(s) => names = Some(s),
                    Event::Closed { code, .. } => closed = Some(code),
                    _ => {}
                }
            }
            drop(rx);
            if let Some(names) = names {
                break names;
            }
            if let Some(code) = closed {
                return Err(format!("{url} closed the connection (code {code}) before answering list"));
            }
            if session.poll_transmit(&mut out) {
                stream.write_all(&out).await.map_err(|e| format!("sending list to {url}: {e}"))?;
            }
            n = stream
                .read(session.read_buf(&mut rb))
                .await
                .map_err(|e| format!("reading from {url}: {e}"))?;
            if n == 0 {
                return Err(format!("{url} closed the connection before answering list"));
            }
        };
        // Close politely; the reply to our close (or EOF) is waited for briefly.
        session.close(std::time::Instant::now(), 1000, "got the list");
        if session.poll_transmit(&mut out) && stream.write_all(&out).await.is_ok() {
            let mut chunk = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        if names.is_empty() {
            return Err(format!("{url} lists no symbols"));
        }
        Ok(names)
    };
    tokio::time::timeout(timeout * 3, work)
        .await
        .map_err(|_| format!("{url} did not answer list within {:?}", timeout * 3))?
}

/// What [`build_report`] needs besides the aggregator.
struct Inputs<'a> {
    opts: &'a Options,
    shared: &'a WorkerShared,
    machine: Machine,
    started_unix: f64,
    measured: Duration,
    cpu_time: Duration,
    gateway_memory: Option<GatewayMemory>,
    own_rss: u64,
    feed_rate: Option<u64>,
    gateway_cpu_cores: Option<f64>,
    measure_start_unix: f64,
}

fn build_report(
    inp: Inputs<'_>,
    mut agg: Aggregator,
    verify: Option<VerifySummary>,
    mut warnings: Vec<String>,
) -> Report {
    let Inputs {
        opts,
        shared,
        machine,
        started_unix,
        measured,
        cpu_time,
        gateway_memory,
        own_rss,
        feed_rate,
        gateway_cpu_cores,
        measure_start_unix,
    } = inp;
    let secs = measured.as_secs_f64().max(1e-9);
    let mut violations = Violations::default();
    let mut trades = TradeCounts::default();
    let mut books = BookCounts::default();
    let mut samples = Vec::new();
    let mut errors = std::mem::take(&mut agg.errors);
    let mut close_codes = BTreeMap::new();
    let mut close_timeouts = 0;
    let mut rates: Vec<f64> = Vec::new();
    let mut rate_hist = rate_histogram();
    let (mut worker_cpu, mut max_thread) = (Duration::ZERO, Duration::ZERO);
    for d in &agg.done {
        violations.add(&d.checker.violations);
        trades.add(&d.checker.trades);
        books.add(&d.checker.books);
        samples.extend(d.checker.samples.iter().cloned());
        errors.extend(d.errors.iter().cloned());
        for (k, v) in &d.close_codes {
            *close_codes.entry(k.to_string()).or_default() += v;
        }
        close_timeouts += d.close_timeouts;
        for &n in &d.client_updates {
            let r = n as f64 / secs;
            rates.push(r);
            rate_hist.saturating_record((r * RATE_SCALE).round() as u64);
        }
        if let Some(c) = d.cpu {
            worker_cpu += c;
            max_thread = max_thread.max(c);
        }
    }
    samples.truncate(20);
    errors.truncate(10);
    rates.sort_by(f64::total_cmp);
    let rate_spread = match (rates.first(), rates.last()) {
        (Some(&min), Some(&max)) => RateSpread { min, median: rates[rates.len() / 2], max },
        _ => RateSpread::default(),
    };
    if let Some(v) = &verify {
        violations.final_mismatches += v.mismatches;
        violations.final_missing += v.missing;
        violations.final_book_mismatches += v.book_mismatches;
    }
    let pct = |d: Duration| d.as_secs_f64() / secs * 100.0;
    let usable = opts.threads.min(machine.cores).max(1) as f64;
    let mut cpu = Cpu {
        pct_of_one_core: pct(cpu_time),
        pct_of_all_cores: pct(cpu_time) / machine.cores.max(1) as f64,
        workers_pct: pct(worker_cpu),
        max_thread_pct: pct(max_thread),
        threads: opts.threads,
        cores: machine.cores,
        saturated: false,
    };
    cpu.saturated = cpu.workers_pct > 90.0 * usable || cpu.max_thread_pct > 90.0;
    if cpu.saturated {
        warnings.push(format!(
            "the load generator itself was saturated (workers at {:.0}% of one core, busiest thread {:.0}%, \
             {} threads on {} cores): latencies include its own queueing. Use more --threads, fewer \
             clients per process (run several and --merge), or another machine for the clients.",
            cpu.workers_pct, cpu.max_thread_pct, opts.threads, machine.cores
        ));
    }
    if opts.depth > 0 && books.books == 0 {
        // Not a violation: a feed without books (tick files, the NATS bus) sends quotes only.
        warnings.push(format!(
            "--depth {} but no order book arrived: does the gateway's feed keep books (a capture \
             replay, or the simulator with feed.depth_levels > 0)?",
            opts.depth
        ));
    }
    let connected = shared.connected.load(Ordering::Acquire);
    let subscribed = shared.subscribed.load(Ordering::Acquire);
    let failed = shared.failed.load(Ordering::Acquire).max(opts.clients.saturating_sub(subscribed));
    let c = agg.counters;
    Report {
        version: REPORT_VERSION,
        tool: format!("tickgate-loadtest {}", env!("CARGO_PKG_VERSION")),
        command_line: opts.command_line.clone(),
        started_unix,
        config: RunConfig {
            profile: opts.profile.map(|p| p.to_string()),
            urls: opts.urls.iter().map(|u| u.raw.clone()).collect(),
            clients: opts.clients,
            symbols_per_client: opts.symbols_per_client,
            universe: shared.symbols.len(),
            feed_rate,
            pick: opts.pick,
            format: opts.format,
            max_rate: opts.max_rate,
            depth: opts.depth,
            churn_per_sec: opts.churn_per_sec,
            duration_secs: opts.duration.as_secs_f64(),
            ramp_per_sec: opts.ramp_per_sec,
            threads: opts.threads,
            verify_final: opts.verify_final,
            seed: opts.seed,
            source_addrs: shared.sources.addrs().iter().map(|a| a.to_string()).collect(),
        },
        machine,
        measured_secs: measured.as_secs_f64(),
        clients: ClientCounts {
            target: opts.clients,
            connected,
            subscribed,
            failed,
            retries: shared.retries.load(Ordering::Acquire),
        },
        updates: c.updates,
        snapshots: c.snapshots,
        bytes: c.bytes,
        frames: c.frames,
        conflated: c.conflated,
        churn_ops: c.churn_ops,
        pings: c.pings,
        updates_per_sec: c.updates as f64 / secs,
        bytes_per_sec: c.bytes as f64 / secs,
        conflation_ratio: if c.updates == 0 { 0.0 } else { c.conflated as f64 / c.updates as f64 },
        latency_gateway: Percentiles::of(&agg.gateway),
        latency_event: Percentiles::of(&agg.event),
        connect: Percentiles::of(&agg.connect),
        first_value: Percentiles::of(&agg.first_value),
        rate_spread,
        cpu,
        gateway_memory,
        gateway_cpu_cores,
        measure_start_unix,
        own_rss_bytes: own_rss,
        violations,
        trades,
        books,
        books_per_sec: c.books as f64 / secs,
        close_codes,
        close_timeouts,
        verify,
        violation_samples: samples,
        errors,
        warnings,
        intervals: std::mem::take(&mut agg.intervals),
        merged_from: Vec::new(),
        histograms: Histograms {
            latency_gateway: Hist(agg.gateway),
            latency_event: Hist(agg.event),
            connect: Hist(agg.connect),
            first_value: Hist(agg.first_value),
            client_rates: Hist(rate_hist),
        },
    }
}
