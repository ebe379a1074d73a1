//! The result of a run: [`Report`] (serialized to `--json`), the human table, and
//! [`merge`] of several reports — by **merging their HDR histograms**, never by averaging
//! percentiles, so the merged p99 is the p99 of all samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checker::{BookCounts, TradeCounts, Violations};
use crate::options::FormatMode;
use crate::picker::Pick;
use crate::stats::{Hist, Percentiles, RATE_SCALE, fmt_ns, merge as merge_hist, thousands};
use crate::sysinfo::Machine;

/// Version of the report format.
pub const REPORT_VERSION: u32 = 1;

/// Bytes per connection the gateway should stay within (the target).
pub const RSS_TARGET_PER_CONN: u64 = 8 * 1024;

/// The settings of a run, as they were applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Profile name, if one was used.
    pub profile: Option<String>,
    /// Target URLs.
    pub urls: Vec<String>,
    /// Clients requested.
    pub clients: usize,
    /// Symbols per client.
    pub symbols_per_client: usize,
    /// Symbols in the gateway's universe.
    pub universe: usize,
    /// The gateway's feed rate target (ticks/s, `GET /stats` → `feed_rate_target` at the
    /// start), if it could be read.
    pub feed_rate: Option<u64>,
    /// Pick mode.
    pub pick: Pick,
    /// Format mode.
    pub format: FormatMode,
    /// max_rate sent, if any.
    pub max_rate: Option<f64>,
    /// `--depth`: order-book levels a side subscribed to (0: no books).
    #[serde(default)]
    pub depth: u16,
    /// Churn (clients per second).
    pub churn_per_sec: f64,
    /// Requested measurement time, seconds.
    pub duration_secs: f64,
    /// Ramp, connections per second.
    pub ramp_per_sec: f64,
    /// Worker threads.
    pub threads: usize,
    /// `--verify-final`.
    pub verify_final: bool,
    /// Seed.
    pub seed: u64,
    /// Source addresses used (empty: the kernel's choice).
    pub source_addrs: Vec<String>,
}

/// Client counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// Clients requested.
    pub target: usize,
    /// Clients whose upgrade completed.
    pub connected: usize,
    /// Clients whose initial subscription was acknowledged.
    pub subscribed: usize,
    /// Clients that never got to stream (connection refused, timed out, closed early).
    pub failed: usize,
    /// Connection attempts retried.
    pub retries: usize,
}

/// Spread of per-client delivered rates (live updates/s during measurement).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateSpread {
    /// Slowest client.
    pub min: f64,
    /// Median client.
    pub median: f64,
    /// Fastest client.
    pub max: f64,
}

/// The tool's own CPU use during measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Process CPU time / wall time, in % of one core.
    pub pct_of_one_core: f64,
    /// The same in % of all the machine's cores.
    pub pct_of_all_cores: f64,
    /// The worker threads together (the tool's real load, without anything else in the
    /// process such as an in-process gateway in tests), % of one core.
    pub workers_pct: f64,
    /// The busiest worker thread, % of one core.
    pub max_thread_pct: f64,
    /// Worker threads.
    pub threads: usize,
    /// Cores of the machine.
    pub cores: usize,
    /// True when the tool itself was the bottleneck (> 90% of the cores its threads can
    /// use, or one worker thread > 90%): the latencies then include the tool's queueing.
    pub saturated: bool,
}

/// The gateway's memory, read from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayMemory {
    /// The gateway's pid.
    pub pid: u32,
    /// VmRSS before any client connected, bytes.
    pub rss_before: u64,
    /// VmRSS once every client had connected and subscribed, bytes.
    pub rss_after: u64,
    /// Connections counted between the two readings.
    pub connections: usize,
    /// (after − before) / connections.
    pub bytes_per_connection: u64,
}

/// One second of measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// Seconds since the measurement started (interval start).
    pub t: f64,
    /// Live updates in this second.
    pub updates: u64,
    /// Median gateway→receive latency, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Maximum, ns.
    pub max_ns: u64,
}

/// The `--verify-final` outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// (client, symbol) pairs compared.
    pub compared: u64,
    /// Pairs whose values differed.
    pub mismatches: u64,
    /// Pairs the gateway has a value for but the client never received.
    pub missing: u64,
    /// `--depth`: (client, symbol) books compared.
    #[serde(default)]
    pub books_compared: u64,
    /// `--depth`: books that differed (levels or stale flag), or that only one side had.
    #[serde(default)]
    pub book_mismatches: u64,
    /// Descriptions of the first differences.
    pub samples: Vec<String>,
    /// Why the comparison could not be made (the feed never ended, the snapshot request
    /// failed, ...): a failure of the run.
    pub error: Option<String>,
}

/// The serialized distributions (base64 of V2 + deflate), for `--merge` and plotting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// receive − ts_gateway, ns.
    pub latency_gateway: Hist,
    /// receive − ts_event, ns.
    pub latency_event: Hist,
    /// TCP connect + upgrade, ns.
    pub connect: Hist,
    /// Initial subscribe sent → first value, ns.
    #[serde(default)]
    pub first_value: Hist,
    /// Per-client delivered rate, milli-updates/s.
    pub client_rates: Hist,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            latency_gateway: Hist::default(),
            latency_event: Hist::default(),
            connect: Hist::default(),
            first_value: Hist::default(),
            client_rates: Hist(crate::stats::rate_histogram()),
        }
    }
}

/// Everything a run measured. Fields missing from a loaded report (an older version) read
/// as their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// `tickgate-loadtest <version>`.
    pub tool: String,
    /// The exact command line.
    pub command_line: String,
    /// Start of the run, seconds since the Unix epoch.
    pub started_unix: f64,
    /// The machine.
    pub machine: Machine,
    /// The settings.
    pub config: RunConfig,
    /// Actual measurement time, seconds.
    pub measured_secs: f64,
    /// Client counts.
    pub clients: ClientCounts,
    /// Live updates received during measurement.
    pub updates: u64,
    /// Snapshots received during measurement (churn re-subscribes).
    pub snapshots: u64,
    /// Bytes received during measurement.
    pub bytes: u64,
    /// Data frames received during measurement.
    pub frames: u64,
    /// Live updates whose seq jumped by more than 1.
    pub conflated: u64,
    /// Churn operations sent.
    pub churn_ops: u64,
    /// Server pings answered.
    pub pings: u64,
    /// Live updates per second.
    pub updates_per_sec: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
    /// conflated / updates.
    pub conflation_ratio: f64,
    /// receive − ts_gateway.
    pub latency_gateway: Percentiles,
    /// receive − ts_event.
    pub latency_event: Percentiles,
    /// Connect latency.
    pub connect: Percentiles,
    /// Initial subscribe sent → the client's first value (a snapshot, or the first live
    /// update of a symbol the gateway had no value for yet).
    #[serde(default)]
    pub first_value: Percentiles,
    /// Per-client delivered rates.
    pub rate_spread: RateSpread,
    /// The tool's CPU.
    pub cpu: Cpu,
    /// The gateway's memory (`--gateway-pid`).
    pub gateway_memory: Option<GatewayMemory>,
    /// With `--gateway-pid`: the gateway's CPU time (user + system, all threads) over the
    /// measurement window, in cores (1.0 = one core busy all the time).
    pub gateway_cpu_cores: Option<f64>,
    /// Start of the measurement window, seconds since the Unix epoch (to line up samples
    /// taken outside the tool, e.g. `perf stat -I`, with the window).
    pub measure_start_unix: f64,
    /// This process's own resident memory at the end of measurement, bytes (includes an
    /// in-process gateway in tests).
    pub own_rss_bytes: u64,
    /// Integrity violations (any → failure).
    pub violations: Violations,
    /// `--trades`: trades received and gaps reported over the whole run.
    #[serde(default)]
    pub trades: TradeCounts,
    /// `--depth`: order books received (and stale ones) over the whole run.
    #[serde(default)]
    pub books: BookCounts,
    /// `--depth`: order books received per second during measurement.
    #[serde(default)]
    pub books_per_sec: f64,
    /// Close codes of unexpected closes (1006: dropped without a close frame).
    pub close_codes: BTreeMap<String, u64>,
    /// Connections whose close handshake at the end timed out.
    pub close_timeouts: u64,
    /// `--verify-final`.
    pub verify: Option<VerifySummary>,
    /// Descriptions of the first violations.
    pub violation_samples: Vec<String>,
    /// First connection errors.
    pub errors: Vec<String>,
    /// Warnings (e.g. the tool saturated its cores).
    pub warnings: Vec<String>,
    /// One entry per second of measurement.
    pub intervals: Vec<IntervalSummary>,
    /// For a merged report: the command lines of its parts.
    pub merged_from: Vec<String>,
    /// The distributions.
    pub histograms: Histograms,
}

impl Report {
    /// True when every client streamed and no violation was found.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// Why the run failed, if it did: one line per reason.
    pub fn failures(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.clients.subscribed < self.clients.target {
            v.push(format!(
                "only {} of {} clients connected and subscribed ({} failed)",
                self.clients.subscribed, self.clients.target, self.clients.failed
            ));
        }
        for (name, n) in self.violations.named() {
            if n > 0 {
                v.push(format!("{n} {name} violation(s)"));
            }
        }
        if let Some(e) = self.verify.as_ref().and_then(|v| v.error.as_ref()) {
            v.push(format!("--verify-final could not compare: {e}"));
        }
        v
    }

    /// Reads a report written with `--json`.
    ///
    /// # Errors
    ///
    /// A message naming the file.
    pub fn load(path: &Path) -> Result<Report, String> {
        let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{} is not a loadtest report: {e}", path.display()))
    }

    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    ///
    /// A message naming the file.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| format!("encoding the report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "tickgate-loadtest {}: {} clients x {} symbols (of {}), {} {}, {:.1} s measured, {} threads",
            c.profile.as_deref().unwrap_or("custom"),
            thousands(self.clients.target as u64),
            c.symbols_per_client,
            thousands(c.universe as u64),
            c.format,
            c.pick,
            self.measured_secs,
            c.threads,
        );
        if !self.merged_from.is_empty() {
            let _ = writeln!(s, "merged from {} reports", self.merged_from.len());
        }
        let _ = writeln!(
            s,
            "\n{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
            "latency", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"
        );
        for (name, p) in [("gateway→recv", &self.latency_gateway), ("event→recv", &self.latency_event)] {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
                name,
                fmt_ns(p.p50),
                fmt_ns(p.p90),
                fmt_ns(p.p99),
                fmt_ns(p.p999),
                fmt_ns(p.p9999),
                fmt_ns(p.max),
                thousands(p.count)
            );
        }
        let _ = writeln!(s);
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "{k:<16} {v}");
        };
        row(
            &mut s,
            "updates/s",
            format!(
                "{} ({} live updates, {} snapshots, {} frames)",
                thousands(self.updates_per_sec.round() as u64),
                thousands(self.updates),
                thousands(self.snapshots),
                thousands(self.frames)
            ),
        );
        if self.trades != TradeCounts::default() {
            row(
                &mut s,
                "trades",
                format!(
                    "{} received over the run, {} gap notices for {} missed trades",
                    thousands(self.trades.trades),
                    thousands(self.trades.gaps),
                    thousands(self.trades.missed)
                ),
            );
        }
        if self.books != BookCounts::default() || self.config.depth > 0 {
            row(
                &mut s,
                "books",
                format!(
                    "{} received over the run ({}/s measured, depth {}), {} stale",
                    thousands(self.books.books),
                    thousands(self.books_per_sec.round() as u64),
                    self.config.depth,
                    thousands(self.books.stale)
                ),
            );
        }
        row(
            &mut s,
            "throughput",
            format!("{:.2} MB/s ({} bytes)", self.bytes_per_sec / 1e6, thousands(self.bytes)),
        );
        row(
            &mut s,
            "conflation",
            format!(
                "{:.2} % of live updates skipped seq ({} of {})",
                self.conflation_ratio * 100.0,
                thousands(self.conflated),
                thousands(self.updates)
            ),
        );
        row(
            &mut s,
            "rate spread",
            format!(
                "min {:.1} / median {:.1} / max {:.1} updates/s per client",
                self.rate_spread.min, self.rate_spread.median, self.rate_spread.max
            ),
        );
        row(
            &mut s,
            "connect",
            format!(
                "p50 {}  p99 {}  max {}",
                fmt_ns(self.connect.p50),
                fmt_ns(self.connect.p99),
                fmt_ns(self.connect.max)
            ),
        );
        if self.first_value.count > 0 {
            row(
                &mut s,
                "first value",
                format!(
                    "p50 {}  p99 {}  max {} (subscribe sent -> first update received)",
                    fmt_ns(self.first_value.p50),
                    fmt_ns(self.first_value.p99),
                    fmt_ns(self.first_value.max)
                ),
            );
        }
        row(
            &mut s,
            "clients",
            format!(
                "{}/{} subscribed, {} failed, {} retries",
                thousands(self.clients.subscribed as u64),
                thousands(self.clients.target as u64),
                self.clients.failed,
                self.clients.retries
            ),
        );
        if self.churn_ops > 0 {
            row(&mut s, "churn", format!("{} unsubscribe+subscribe operations", thousands(self.churn_ops)));
        }
        row(
            &mut s,
            "own CPU",
            format!(
                "workers {:.0}% of one core (busiest thread {:.0}%); process {:.0}% of one core, {:.0}% of {} cores{}",
                self.cpu.workers_pct,
                self.cpu.max_thread_pct,
                self.cpu.pct_of_one_core,
                self.cpu.pct_of_all_cores,
                self.cpu.cores,
                if self.cpu.saturated { "  ** SATURATED **" } else { "" }
            ),
        );
        if let Some(m) = &self.gateway_memory {
            let verdict = if m.connections < 1000 {
                ": too few connections for a per-connection figure"
            } else if m.bytes_per_connection <= RSS_TARGET_PER_CONN {
                ": met"
            } else {
                ": MISSED"
            };
            row(
                &mut s,
                "gateway RSS",
                format!(
                    "{:.1} MiB -> {:.1} MiB for {} connections: {} per connection (target <= 8 KiB{verdict})",
                    m.rss_before as f64 / 1048576.0,
                    m.rss_after as f64 / 1048576.0,
                    thousands(m.connections as u64),
                    fmt_bytes(m.bytes_per_connection),
                ),
            );
        }
        if let Some(c) = self.gateway_cpu_cores {
            row(&mut s, "gateway CPU", format!("{c:.2} cores over the measurement window"));
        }
        if self.own_rss_bytes > 0 {
            let per = if self.clients.target >= 1000 {
                format!(
                    " ({} per client, fixed costs included)",
                    fmt_bytes(self.own_rss_bytes / self.clients.target as u64)
                )
            } else {
                String::new()
            };
            row(&mut s, "own RSS", format!("{:.1} MiB{per}", self.own_rss_bytes as f64 / 1048576.0));
        }
        if let Some(v) = &self.verify {
            let text = match &v.error {
                Some(e) => format!("NOT DONE: {e}"),
                None if v.books_compared > 0 => format!(
                    "{} values compared, {} mismatches, {} missing; {} books compared, {} mismatches",
                    thousands(v.compared),
                    v.mismatches,
                    v.missing,
                    thousands(v.books_compared),
                    v.book_mismatches
                ),
                None => format!(
                    "{} values compared, {} mismatches, {} missing",
                    thousands(v.compared),
                    v.mismatches,
                    v.missing
                ),
            };
            row(&mut s, "verify-final", text);
            for x in v.samples.iter().take(5) {
                let _ = writeln!(s, "  mismatch: {x}");
            }
        }
        let total = self.violations.total();
        let detail: Vec<String> = self.violations.named().iter().map(|(k, v)| format!("{k} {v}")).collect();
        row(
            &mut s,
            "integrity",
            format!(
                "{} ({} violations: {})",
                if total == 0 { "OK" } else { "FAILED" },
                total,
                detail.join(", ")
            ),
        );
        if !self.close_codes.is_empty() {
            let codes: Vec<String> = self.close_codes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            row(&mut s, "close codes", codes.join(", "));
        }
        for e in self.violation_samples.iter().take(5) {
            let _ = writeln!(s, "  violation: {e}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: {w}");
        }
        let _ = writeln!(s, "result           {}", if self.passed() { "PASS" } else { "FAIL" });
        s
    }
}

/// The header of the results table in `docs/BENCHMARKS.md`; [`Report::markdown_row`]
/// fills one row of it.
pub const MARKDOWN_HEADER: &str = "| date | profile | hardware | clients x symbols | feed | updates/s | p50 | p99 | p99.9 | max | conflation | connect p99 | gateway RSS/conn | violations | command line |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

impl Report {
    /// One row of the `docs/BENCHMARKS.md` results table (see [`MARKDOWN_HEADER`]).
    pub fn markdown_row(&self) -> String {
        let c = &self.config;
        let m = &self.machine;
        let feed = match c.feed_rate {
            Some(r) => format!("{} sym @ {}/s", thousands(c.universe as u64), thousands(r)),
            None => format!("{} sym", thousands(c.universe as u64)),
        };
        let rss = self.gateway_memory.map_or_else(
            || "-".to_string(),
            |g| format!("{} ({} conns)", fmt_bytes(g.bytes_per_connection), thousands(g.connections as u64)),
        );
        let violations = match self.violations.total() {
            0 if self.passed() => "0".to_string(),
            0 => format!("0 ({})", self.failures().join("; ")),
            n => format!("{n} ({})", self.failures().join("; ")),
        };
        let cells = [
            civil_date(self.started_unix),
            c.profile.clone().unwrap_or_else(|| "custom".into()),
            format!(
                "{} cores {}, {:.0} GiB",
                m.cores,
                m.cpu_model,
                m.memory_bytes as f64 / (1u64 << 30) as f64
            ),
            format!("{} x {}", thousands(self.clients.target as u64), c.symbols_per_client),
            feed,
            thousands(self.updates_per_sec.round() as u64),
            fmt_ns(self.latency_gateway.p50),
            fmt_ns(self.latency_gateway.p99),
            fmt_ns(self.latency_gateway.p999),
            fmt_ns(self.latency_gateway.max),
            format!("{:.2} %", self.conflation_ratio * 100.0),
            fmt_ns(self.connect.p99),
            rss,
            violations,
            format!("`{}`", self.command_line),
        ];
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect();
        format!("| {} |", cells.join(" | "))
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn civil_date(unix: f64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix / 86_400.0).floor() as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `1234` → `1.2 KiB`.
pub fn fmt_bytes(b: u64) -> String {
    if b < 1024 { format!("{b} B") } else { format!("{:.1} KiB", b as f64 / 1024.0) }
}

/// Merges reports of **concurrent** runs (several processes against the same gateways):
/// histograms are merged, counts and rates summed, rates spread taken from the merged
/// per-client histogram.
///
/// # Errors
///
/// No reports, or histograms that cannot be merged.
pub fn merge(reports: &[Report]) -> Result<Report, String> {
    let first = reports.first().ok_or("nothing to merge")?;
    let mut m = Report {
        version: REPORT_VERSION,
        tool: first.tool.clone(),
        command_line: String::new(),
        started_unix: reports.iter().map(|r| r.started_unix).fold(f64::INFINITY, f64::min),
        machine: first.machine.clone(),
        config: first.config.clone(),
        histograms: Histograms::default(),
        ..Report::default()
    };
    m.config.clients = 0;
    m.config.threads = 0;
    let mut mem: Option<GatewayMemory> = None;
    for r in reports {
        m.merged_from.push(r.command_line.clone());
        m.measured_secs = m.measured_secs.max(r.measured_secs);
        m.config.clients += r.config.clients;
        m.config.threads += r.config.threads;
        m.clients.target += r.clients.target;
        m.clients.connected += r.clients.connected;
        m.clients.subscribed += r.clients.subscribed;
        m.clients.failed += r.clients.failed;
        m.clients.retries += r.clients.retries;
        m.updates += r.updates;
        m.snapshots += r.snapshots;
        m.bytes += r.bytes;
        m.frames += r.frames;
        m.conflated += r.conflated;
        m.churn_ops += r.churn_ops;
        m.pings += r.pings;
        m.own_rss_bytes += r.own_rss_bytes;
        m.updates_per_sec += r.updates_per_sec;
        m.bytes_per_sec += r.bytes_per_sec;
        m.cpu.pct_of_one_core += r.cpu.pct_of_one_core;
        m.cpu.threads += r.cpu.threads;
        m.cpu.workers_pct += r.cpu.workers_pct;
        m.cpu.max_thread_pct = m.cpu.max_thread_pct.max(r.cpu.max_thread_pct);
        m.cpu.saturated |= r.cpu.saturated;
        m.violations.add(&r.violations);
        m.trades.add(&r.trades);
        m.books.add(&r.books);
        m.books_per_sec += r.books_per_sec;
        m.close_timeouts += r.close_timeouts;
        for (k, v) in &r.close_codes {
            *m.close_codes.entry(k.clone()).or_default() += v;
        }
        m.violation_samples.extend(r.violation_samples.iter().cloned());
        m.errors.extend(r.errors.iter().cloned());
        m.warnings.extend(r.warnings.iter().cloned());
        if let Some(v) = &r.verify {
            let mv = m.verify.get_or_insert_with(VerifySummary::default);
            mv.compared += v.compared;
            mv.mismatches += v.mismatches;
            mv.missing += v.missing;
            mv.books_compared += v.books_compared;
            mv.book_mismatches += v.book_mismatches;
            mv.samples.extend(v.samples.iter().cloned());
            if mv.error.is_none() {
                mv.error.clone_from(&v.error);
            }
        }
        if let Some(g) = r.gateway_memory {
            // Concurrent processes watched the same gateway: the lowest "before" is the
            // baseline, the highest "after" includes everyone's connections.
            let e = mem.get_or_insert(GatewayMemory { rss_before: u64::MAX, ..g });
            e.rss_before = e.rss_before.min(g.rss_before);
            e.rss_after = e.rss_after.max(g.rss_after);
            e.connections += g.connections;
        }
        merge_hist(&mut m.histograms.latency_gateway.0, &r.histograms.latency_gateway.0)?;
        merge_hist(&mut m.histograms.latency_event.0, &r.histograms.latency_event.0)?;
        merge_hist(&mut m.histograms.connect.0, &r.histograms.connect.0)?;
        merge_hist(&mut m.histograms.first_value.0, &r.histograms.first_value.0)?;
        merge_hist(&mut m.histograms.client_rates.0, &r.histograms.client_rates.0)?;
    }
    m.cpu.cores = m.machine.cores;
    m.cpu.pct_of_all_cores = m.cpu.pct_of_one_core / m.cpu.cores.max(1) as f64;
    m.gateway_memory = mem.map(|mut g| {
        g.bytes_per_connection = g.rss_after.saturating_sub(g.rss_before) / g.connections.max(1) as u64;
        g
    });
    m.conflation_ratio = if m.updates == 0 { 0.0 } else { m.conflated as f64 / m.updates as f64 };
    m.latency_gateway = Percentiles::of(&m.histograms.latency_gateway.0);
    m.latency_event = Percentiles::of(&m.histograms.latency_event.0);
    m.connect = Percentiles::of(&m.histograms.connect.0);
    m.first_value = Percentiles::of(&m.histograms.first_value.0);
    m.rate_spread = spread_of(&m.histograms.client_rates.0);
    m.command_line = format!("tickgate-loadtest --merge ({} reports)", reports.len());
    Ok(m)
}

/// Rate spread from a per-client rate histogram (milli-updates/s).
pub fn spread_of(h: &hdrhistogram::Histogram<u64>) -> RateSpread {
    if h.is_empty() {
        return RateSpread::default();
    }
    RateSpread {
        min: h.min() as f64 / RATE_SCALE,
        median: h.value_at_quantile(0.5) as f64 / RATE_SCALE,
        max: h.max() as f64 / RATE_SCALE,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0.0), "1970-01-01");
        assert_eq!(civil_date(951_782_400.0), "2000-02-29");
        assert_eq!(civil_date(1_795_318_367.0), "2026-11-22");
    }

    #[test]
    fn markdown_row_matches_the_header() {
        let mut r = Report { command_line: "tickgate-loadtest --url a|b".into(), ..Report::default() };
        r.config.profile = Some("smoke".into());
        r.clients.target = 50;
        r.clients.subscribed = 50;
        let row = r.markdown_row();
        let header_cols = MARKDOWN_HEADER.lines().next().unwrap().matches(" | ").count();
        assert_eq!(row.matches(" | ").count(), header_cols, "{row}");
        assert!(row.contains("a\\|b") && row.contains("| smoke |"), "{row}");
        let table = r.table();
        assert!(table.contains("PASS") && table.contains("gateway→recv"), "{table}");
        r.violations.seq_backwards = 2;
        assert!(r.markdown_row().contains("2 (2 seq_backwards"), "{}", r.markdown_row());
        assert!(r.table().contains("FAIL"));
    }

    #[test]
    fn books_are_reported_and_book_violations_fail_the_run() {
        let mut r = Report::default();
        r.clients.target = 1;
        r.clients.subscribed = 1;
        assert!(!r.table().contains("books "), "no books line without --depth");
        r.config.depth = 10;
        r.books = BookCounts { books: 12_345, stale: 3 };
        r.books_per_sec = 411.5;
        let table = r.table();
        assert!(
            table.contains(
                "books            12,345 received over the run (412/s measured, depth 10), 3 stale"
            ),
            "{table}"
        );
        assert!(r.passed());
        for set in [
            |v: &mut Violations| v.book_order = 1,
            |v: &mut Violations| v.book_invalid = 1,
            |v: &mut Violations| v.final_book_mismatches = 1,
        ] {
            let mut bad = r.clone();
            set(&mut bad.violations);
            assert_eq!(bad.violations.total(), 1);
            assert!(!bad.passed(), "{:?}", bad.violations);
        }
        // A report written before books existed still loads.
        let mut v = serde_json::to_value(&r).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("books");
        o.remove("books_per_sec");
        o["violations"].as_object_mut().unwrap().remove("book_order");
        o["config"].as_object_mut().unwrap().remove("depth");
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(
            (back.books, back.config.depth, back.violations.book_order),
            (BookCounts::default(), 0, 0)
        );
        // Merged reports add books up.
        let m = merge(&[r.clone(), r]).unwrap();
        assert_eq!(m.books, BookCounts { books: 24_690, stale: 6 });
        assert_eq!(m.books_per_sec, 823.0);
    }
}
