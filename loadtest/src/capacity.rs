//! `--find-capacity`: the largest number of clients at which the gateway→recv p99 stays
//! within a latency objective (`--slo-p99`) with zero integrity violations and every client
//! subscribed.
//!
//! - [`Search`] is the search as a pure state machine (tests drive it with fake results):
//!   start at `--capacity-start`, double while steps pass (capped at `--capacity-max`), then
//!   bisect between the largest pass and the smallest failure down to `--capacity-step`.
//! - [`find`] runs it: each step is a complete, separate load test ([`crate::run()`]) with
//!   its own fresh clients. With `--server-cmd` every step also gets a **fresh server**
//!   (started on a free port, waited for on `/healthz`, stopped with SIGTERM afterwards),
//!   so no step inherits the previous one's heap, caches or TIME_WAIT sockets. Without it,
//!   every step runs against the one running server, with a pause between steps; that is
//!   simpler but less fair (earlier steps warm or fragment the server).
//!
//! The search assumes that passing is monotone in the client count. Noisy steps near the
//! limit can break that; the step table shows every result, so a non-monotone run is
//! visible.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tickgate::clock::now_ns;

use crate::options::Options;
use crate::report::Report;
use crate::stats::fmt_ns;
use crate::sysinfo::{self, Machine};
use crate::ws::url::WsUrl;
use crate::{RunError, run};

/// Parses a duration like `50ms`, `0.05s`, `500us`/`500µs`, `2000000ns` (a unit is required:
/// a bare number is ambiguous).
///
/// # Errors
///
/// A message naming the value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 50ms or 0.05s"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "" => return Err(format!("{s:?} needs a unit: ns, us, ms or s")),
        u => return Err(format!("{s:?}: unknown unit {u:?} (ns, us, ms, s)")),
    };
    let secs = v * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e6) {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The search as a state machine: ask [`Search::next`] for the next client count, run it,
/// tell [`Search::record`] whether it passed; [`Search::result`] once `next` is `None`.
#[derive(Clone, Debug)]
pub struct Search {
    start: usize,
    max: usize,
    step: usize,
    /// Largest client count that passed.
    pass: Option<usize>,
    /// Smallest client count that failed.
    fail: Option<usize>,
    next: Option<usize>,
}

impl Search {
    /// A search from `start` clients, doubling up to `max`, bisecting to `step`.
    ///
    /// # Errors
    ///
    /// Zero values, or `start` above `max`.
    pub fn new(start: usize, max: usize, step: usize) -> Result<Search, String> {
        if start == 0 || step == 0 {
            return Err("--capacity-start and --capacity-step must be at least 1".into());
        }
        if start > max {
            return Err(format!("--capacity-start {start} is above --capacity-max {max}"));
        }
        Ok(Search { start, max, step, pass: None, fail: None, next: Some(start) })
    }

    /// The client count to run next, or `None` when the search is over.
    pub fn next(&self) -> Option<usize> {
        self.next
    }

    /// Records the outcome of a step at `clients` and chooses the next one.
    pub fn record(&mut self, clients: usize, passed: bool) {
        if passed {
            self.pass = Some(self.pass.map_or(clients, |p| p.max(clients)));
        } else {
            self.fail = Some(self.fail.map_or(clients, |f| f.min(clients)));
        }
        self.next = match (self.pass, self.fail) {
            // Doubling: no failure yet.
            (Some(p), None) if p >= self.max => None,
            (Some(p), None) => Some((p * 2).min(self.max)),
            // Bisecting between the largest pass (or nothing) and the smallest failure.
            (p, Some(f)) => {
                let lo = p.unwrap_or(0);
                if f <= lo || f - lo <= self.step {
                    None
                } else {
                    // The midpoint, on the grid of `step` above `lo`, so the last steps are
                    // exactly `step` apart.
                    let half = (f - lo) / 2;
                    let mid = lo + (half / self.step).max(1) * self.step;
                    (mid < f && mid > 0).then_some(mid)
                }
            }
            (None, None) => Some(self.start),
        };
    }

    /// The largest client count that passed (`None` if none did).
    pub fn result(&self) -> Option<usize> {
        self.pass
    }
}

/// How the capacity search runs; built by the command line.
#[derive(Clone, Debug)]
pub struct CapacityOptions {
    /// The workload of every step (its `clients` is replaced per step).
    pub base: Options,
    /// The latency objective on gateway→recv p99.
    pub slo_p99: Duration,
    /// First step.
    pub start: usize,
    /// Largest step.
    pub max: usize,
    /// Resolution of the bisection.
    pub step: usize,
    /// A shell command that starts a fresh server per step; `{port}` is replaced with a
    /// free port, and `{port}` in the URLs with the same port.
    pub server_cmd: Option<String>,
    /// The URLs as given (before `{port}` substitution).
    pub url_templates: Vec<String>,
    /// How long a started server may take to answer `GET /healthz`.
    pub server_ready_timeout: Duration,
    /// Where the servers' stdout/stderr go (appended), if anywhere.
    pub server_log: Option<PathBuf>,
    /// Pause between steps against one running server (no `--server-cmd`).
    pub pause: Duration,
}

/// One step of the search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// Clients asked for.
    pub clients: usize,
    /// Clients that subscribed.
    pub subscribed: usize,
    /// Live updates per second received.
    pub updates_per_sec: f64,
    /// gateway→recv percentiles, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Integrity violations.
    pub violations: u64,
    /// The server's CPU over the step (ramp included), in cores, when we started it.
    pub server_cpu_cores: Option<f64>,
    /// Whether the step met the objective.
    pub passed: bool,
    /// Why not, if it did not.
    pub why: Vec<String>,
}

/// The result of a search (the `--json` file in this mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityReport {
    /// Tool and version.
    pub tool: String,
    /// The command line.
    pub command_line: String,
    /// Unix time of the start, seconds.
    pub started_unix: f64,
    /// The objective, ns.
    pub slo_p99_ns: u64,
    /// Search parameters.
    pub start: usize,
    /// Largest step allowed.
    pub max: usize,
    /// Bisection resolution.
    pub step: usize,
    /// Seconds measured per step.
    pub duration_secs: f64,
    /// Symbols per client, pick and format of the workload.
    pub symbols_per_client: usize,
    /// `uniform` or `zipf`.
    pub pick: String,
    /// The per-step server command, if any.
    pub server_cmd: Option<String>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The largest passing client count (`None`: even the smallest step failed).
    pub capacity: Option<usize>,
    /// The machine.
    pub machine: Machine,
}

impl CapacityReport {
    /// The step table and the result, for the terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "capacity search: p99 (gateway→recv) ≤ {}, 0 violations; {} s per step, {} symbols per client ({}){}\n\n",
            fmt_ns(self.slo_p99_ns),
            self.duration_secs,
            self.symbols_per_client,
            self.pick,
            if self.server_cmd.is_some() { ", fresh server per step" } else { ", one running server" }
        );
        s.push_str(&format!(
            "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8}  {}\n",
            "clients", "subscribed", "updates/s", "p50", "p99", "p99.9", "violations", "server", "result"
        ));
        for st in &self.steps {
            s.push_str(&format!(
                "{:>8} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>8}  {}\n",
                st.clients,
                st.subscribed,
                st.updates_per_sec,
                fmt_ns(st.p50_ns),
                fmt_ns(st.p99_ns),
                fmt_ns(st.p999_ns),
                st.violations,
                st.server_cpu_cores.map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
                if st.passed { "pass".to_string() } else { format!("FAIL: {}", st.why.join("; ")) }
            ));
        }
        s.push_str(&match self.capacity {
            Some(c) => format!(
                "\ncapacity: {c} clients (resolution {}; {})\n",
                self.step,
                match self.steps.iter().filter(|s| !s.passed).map(|s| s.clients).min() {
                    Some(f) => format!("{f} failed"),
                    None => format!("no step failed up to --capacity-max {}", self.max),
                }
            ),
            None => format!("\ncapacity: none: even {} clients failed\n", self.start.min(self.max)),
        });
        s
    }
}

/// Judges one step's report against the objective.
pub fn judge(r: &Report, slo: Duration) -> Step {
    let mut why = r.failures();
    let slo_ns = u64::try_from(slo.as_nanos()).unwrap_or(u64::MAX);
    if r.updates == 0 {
        why.push("no live updates".into());
    }
    if r.latency_gateway.p99 > slo_ns {
        why.push(format!("p99 {} > {}", fmt_ns(r.latency_gateway.p99), fmt_ns(slo_ns)));
    }
    Step {
        clients: r.clients.target,
        subscribed: r.clients.subscribed,
        updates_per_sec: r.updates_per_sec,
        p50_ns: r.latency_gateway.p50,
        p99_ns: r.latency_gateway.p99,
        p999_ns: r.latency_gateway.p999,
        violations: r.violations.total(),
        server_cpu_cores: None,
        passed: why.is_empty(),
        why,
    }
}

/// A server started for one step; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // std can only SIGKILL; ask politely first so the server closes its sockets.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("finding a free port: {e}"))
}

/// Starts `cmd` (`{port}` substituted) with `sh -c 'exec …'`, so the child's pid is the
/// server's, and waits until `GET /healthz` on the port answers 200.
fn start_server(opts: &CapacityOptions, cmd: &str, port: u16) -> Result<Server, String> {
    let line = cmd.replace("{port}", &port.to_string());
    let (out, err) = match &opts.server_log {
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("opening --server-log {}: {e}", p.display()))?;
            let f2 = f.try_clone().map_err(|e| format!("--server-log: {e}"))?;
            (Stdio::from(f), Stdio::from(f2))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {line}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting --server-cmd {line:?}: {e}"))?;
    let mut server = Server { child };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let deadline = Instant::now() + opts.server_ready_timeout;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("--server-cmd {line:?} exited ({status}) before answering /healthz"));
        }
        let ok = rt.block_on(crate::http::get(addr, &addr.to_string(), "/healthz", Duration::from_secs(1)));
        if matches!(ok, Ok(ref r) if r.status == 200) {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            server.stop();
            return Err(format!(
                "--server-cmd {line:?} did not answer GET /healthz on port {port} within {:?}",
                opts.server_ready_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The step's options: `clients`, and with a server command the URLs on its port and its pid.
fn step_options(
    opts: &CapacityOptions,
    clients: usize,
    port: Option<u16>,
    pid: Option<u32>,
) -> Result<Options, String> {
    let mut o = opts.base.clone();
    o.clients = clients;
    if let Some(port) = port {
        o.urls = opts
            .url_templates
            .iter()
            .map(|u| WsUrl::parse(&u.replace("{port}", &port.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        o.gateway_pid = pid;
    }
    // Each step gets its own seed, so steps do not all pick the same symbols.
    o.seed = o.seed.wrapping_add(clients as u64);
    o.command_line = format!("{} [step: --clients {clients}]", opts.base.command_line);
    Ok(o)
}

fn process_cpu_of(pid: u32) -> Option<Duration> {
    sysinfo::cpu_from_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Runs the search; prints each step as it finishes (unless `quiet`).
///
/// # Errors
///
/// A step that could not be made at all (server did not start, gateway unreachable, bad
/// options): the search stops there, since its results would mean nothing.
pub fn find(opts: &CapacityOptions, quiet: bool) -> Result<CapacityReport, RunError> {
    let (soft, _) = sysinfo::raise_fd_limit();
    // The clients must fit this process's descriptors (the server, a separate process,
    // has its own, inherited from this raised limit).
    let fd_max = usize::try_from(soft.saturating_sub(64)).unwrap_or(usize::MAX);
    let max = opts.max.min(fd_max);
    let mut search = Search::new(opts.start.min(max), max, opts.step).map_err(RunError::Config)?;
    let mut report = CapacityReport {
        tool: format!("tickgate-loadtest {}", env!("CARGO_PKG_VERSION")),
        command_line: opts.base.command_line.clone(),
        started_unix: now_ns() as f64 / 1e9,
        slo_p99_ns: u64::try_from(opts.slo_p99.as_nanos()).unwrap_or(u64::MAX),
        start: opts.start,
        max,
        step: opts.step,
        duration_secs: opts.base.duration.as_secs_f64(),
        symbols_per_client: opts.base.symbols_per_client,
        pick: format!("{:?}", opts.base.pick).to_lowercase(),
        server_cmd: opts.server_cmd.clone(),
        steps: Vec::new(),
        capacity: None,
        machine: Machine::current(),
    };
    let mut first = true;
    while let Some(clients) = search.next() {
        if !quiet {
            eprintln!("capacity: step {}: {clients} clients ...", report.steps.len() + 1);
        }
        let (server, port) = match &opts.server_cmd {
            Some(cmd) => {
                let port = free_port().map_err(RunError::Setup)?;
                (Some(start_server(opts, cmd, port).map_err(RunError::Setup)?), Some(port))
            }
            None => {
                if !first {
                    std::thread::sleep(opts.pause);
                }
                (None, None)
            }
        };
        first = false;
        let pid = server.as_ref().map(Server::pid);
        let o = step_options(opts, clients, port, pid).map_err(RunError::Config)?;
        let cpu0 = pid.and_then(process_cpu_of);
        let t0 = Instant::now();
        let r = run(o);
        let cpu = match (pid.and_then(process_cpu_of), cpu0) {
            (Some(b), Some(a)) => {
                Some(b.saturating_sub(a).as_secs_f64() / t0.elapsed().as_secs_f64().max(1e-9))
            }
            _ => None,
        };
        drop(server);
        let mut step = judge(&r?, opts.slo_p99);
        step.server_cpu_cores = cpu;
        if !quiet {
            eprintln!(
                "capacity: {clients} clients: p99 {} ({} upd/s, {} violations): {}",
                fmt_ns(step.p99_ns),
                step.updates_per_sec.round(),
                step.violations,
                if step.passed { "pass".to_string() } else { format!("FAIL ({})", step.why.join("; ")) }
            );
        }
        search.record(clients, step.passed);
        report.steps.push(step);
    }
    report.capacity = search.result();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Drives a search against a server whose true capacity is `cap` (passes iff clients ≤
    /// cap); returns the steps tried and the result.
    fn drive(start: usize, max: usize, step: usize, cap: usize) -> (Vec<usize>, Option<usize>) {
        let mut s = Search::new(start, max, step).unwrap();
        let mut tried = Vec::new();
        while let Some(n) = s.next() {
            assert!(tried.len() < 100, "search does not end: {tried:?}");
            tried.push(n);
            s.record(n, n <= cap);
        }
        (tried, s.result())
    }

    #[test]
    fn doubles_then_bisects_to_the_step() {
        let (tried, got) = drive(500, 19_000, 250, 3_100);
        assert_eq!(tried[..4], [500, 1_000, 2_000, 4_000]);
        assert_eq!(got, Some(3_000));
        // Bisection between 2,000 (pass) and 4,000 (fail): 3,000, 3,500, then 3,250.
        assert_eq!(tried[4..], [3_000, 3_500, 3_250]);
    }

    #[test]
    fn finds_the_true_capacity_within_the_step() {
        for cap in [500, 501, 749, 750, 999, 1_000, 4_321, 7_777, 12_345, 18_999] {
            let (tried, got) = drive(500, 19_000, 250, cap);
            let got = got.unwrap();
            assert!(got <= cap && cap - got < 250, "cap {cap}: got {got}, tried {tried:?}");
        }
    }

    #[test]
    fn stops_at_the_max_when_everything_passes() {
        let (tried, got) = drive(500, 19_000, 250, usize::MAX);
        assert_eq!(tried, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 19_000]);
        assert_eq!(got, Some(19_000));
    }

    #[test]
    fn a_failing_start_bisects_down_or_reports_none() {
        let (tried, got) = drive(500, 19_000, 250, 300);
        assert_eq!(tried, [500, 250]);
        assert_eq!(got, Some(250));
        let (tried, got) = drive(500, 19_000, 250, 10);
        assert_eq!(tried, [500, 250]);
        assert_eq!(got, None);
    }

    #[test]
    fn noisy_results_still_end() {
        // Alternating outcomes whatever the count: the interval still shrinks.
        let mut s = Search::new(500, 19_000, 100).unwrap();
        let mut i = 0;
        while let Some(n) = s.next() {
            i += 1;
            assert!(i < 60);
            s.record(n, i % 2 == 1);
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Search::new(0, 10, 1).is_err());
        assert!(Search::new(10, 5, 1).is_err());
        assert!(Search::new(1, 5, 0).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("0.05s").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("500µs").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("2000000ns").unwrap(), Duration::from_millis(2));
        for bad in ["50", "ms", "-5ms", "5 parsecs", "0ms", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
