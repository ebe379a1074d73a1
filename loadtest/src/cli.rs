//! The command line (clap derive: the doc comments are the `--help` text) and its
//! conversion into validated [`Options`]. Profile values fill in whatever was not given.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::capacity::CapacityOptions;
use crate::options::{FormatMode, Options, Progress, SourceAddrs, Transport};
use crate::picker::Pick;
use crate::profile::{self, ProfileName};
use crate::ws::url::WsUrl;

/// Load generator for tickgate: opens many WebSocket clients, subscribes each to some
/// symbols, measures end-to-end latency (receive time − ts_gateway, and − ts_event) in HDR
/// histograms and checks the integrity of what arrives. Exits non-zero on any violation.
#[derive(Debug, Parser)]
#[command(name = "tickgate-loadtest", version, after_help = profile::help_text())]
pub struct Args {
    /// Gateway WebSocket URL; repeat for several gateways (clients round-robin over them).
    /// [default: ws://127.0.0.1:9000/ws]
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,

    /// Workload preset: smoke, dashboard, fanout or connections (see below). Explicit flags
    /// override it.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileName>,

    /// Number of WebSocket clients [default: 1000, or the profile's].
    #[arg(long)]
    pub clients: Option<usize>,

    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 2000.0)]
    pub ramp: f64,

    /// Worker threads, each with its own current-thread runtime [default: number of cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Symbols per client [default: 10, or the profile's].
    #[arg(long)]
    pub symbols_per_client: Option<usize>,

    /// How symbols are picked from the gateway's list: uniform, or zipf (exponent 1.1 over
    /// the list order).
    #[arg(long, value_enum, default_value_t = Pick::Uniform)]
    pub pick: Pick,

    /// Update format: json, binary, or mixed (alternating per client).
    #[arg(long, value_enum, default_value_t = FormatMode::Json)]
    pub format: FormatMode,

    /// Send max_rate R (updates/s per symbol, 0 < R ≤ 1000) with every subscribe.
    #[arg(long, value_name = "R")]
    pub max_rate: Option<f64>,

    /// Subscribe with "trades": true: every trade of the symbols arrives as its own message;
    /// the checker verifies trade order per symbol and counts gaps and missed trades.
    #[arg(long)]
    pub trades: bool,

    /// Subscribe with "depth": N (1 ≤ N ≤ the gateway's server.max_depth, 50 by default):
    /// each symbol's order book arrives too, N levels a side, counted as books (not
    /// updates). The checker fails the run on a book whose seq does not rise (book_order) or
    /// that is not well formed: bids not strictly descending, asks not strictly ascending,
    /// crossed, more than N levels a side, or a depth field other than N (book_invalid).
    /// With --verify-final, every client's last books are compared with
    /// GET /snapshot?depth=N (final_book_mismatches). 0 = no books.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub depth: u16,

    /// Pick symbols only among positions START..END of the gateway's symbol list (e.g.
    /// 0..1000): clients of different runs can hold disjoint slices of the universe.
    #[arg(long, value_name = "START..END")]
    pub symbol_range: Option<String>,

    /// How clients connect: ws (WebSocket) or sse (Server-Sent Events, GET /sse: JSON only,
    /// no churn).
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,

    /// During measurement, C random clients per second unsubscribe one of their symbols and
    /// subscribe another (exercises the control path under load).
    #[arg(long, value_name = "C", default_value_t = 0.0)]
    pub churn_per_sec: f64,

    /// Seconds of measurement after all clients are connected and subscribed
    /// [default: 30, or the profile's].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// For a finite feed (gateway started with --ticks N): after it ends (GET /stats
    /// feed_ended) and updates settle (none for 1 s), compare every client's last value of
    /// every symbol with GET /snapshot.
    #[arg(long)]
    pub verify_final: bool,

    /// How long --verify-final waits for the feed to end.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub verify_timeout: f64,

    /// Limit of one connection attempt (TCP connect + upgrade), seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// The gateway's process id: its RSS (VmRSS) is read before and after connecting and
    /// reported per connection.
    #[arg(long, value_name = "PID")]
    pub gateway_pid: Option<u32>,

    /// Seed for symbol picks, keys and masks [default: random, printed in the report].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Write the machine-readable report (all numbers, serialized histograms, machine,
    /// command line) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one interval per second, tags gateway/event).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Plot the latency percentile distribution to FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Merge these --json reports (by merging their histograms), print the merged table,
    /// and write it with --json / --plot if given. Connects to nothing.
    #[arg(long, value_name = "REPORT", num_args = 1.., conflicts_with_all = ["urls", "profile", "clients"])]
    pub merge: Vec<PathBuf>,

    /// Print the docs/BENCHMARKS.md table row of a --json REPORT and exit.
    #[arg(long, value_name = "REPORT", conflicts_with_all = ["urls", "profile", "clients", "merge"])]
    pub markdown_row: Option<PathBuf>,

    /// Print the gateway flags of --profile (for scripts/bench.sh) and exit.
    #[arg(long, requires = "profile")]
    pub print_gateway_args: bool,

    /// Do not rotate 127.0.0.x source addresses (use the kernel's choice).
    #[arg(long)]
    pub no_source_rotation: bool,

    /// No live progress, only the final table.
    #[arg(long, short)]
    pub quiet: bool,

    /// Capacity search: run steps of --duration (default 10 s here), each a separate
    /// connect → measure → disconnect load test with fresh clients, to find the largest
    /// client count whose gateway→recv p99 is within --slo-p99 with zero violations and
    /// every client subscribed. Doubles from --capacity-start until a step fails (or
    /// --capacity-max), then bisects to --capacity-step. --json writes the step table.
    #[arg(long, requires = "slo_p99", conflicts_with_all = ["clients", "merge", "markdown_row", "verify_final", "hdr_log", "plot"])]
    pub find_capacity: bool,

    /// The latency objective of --find-capacity: p99 of gateway→recv, e.g. 50ms, 0.05s,
    /// 500us.
    #[arg(long, value_name = "DURATION", value_parser = crate::capacity::parse_duration)]
    pub slo_p99: Option<Duration>,

    /// First client count of --find-capacity.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub capacity_start: usize,

    /// Largest client count of --find-capacity (default: the per-process open-file limit
    /// of 20,000 minus headroom; it is also capped at this process's limit).
    #[arg(long, value_name = "N", default_value_t = 19_000)]
    pub capacity_max: usize,

    /// Resolution of the --find-capacity bisection, clients.
    #[arg(long, value_name = "N", default_value_t = 250)]
    pub capacity_step: usize,

    /// --find-capacity: start a fresh server for every step with this shell command
    /// (run as `sh -c 'exec CMD'`), `{port}` replaced by a free port. It must serve
    /// GET /healthz; each step waits for it, runs against --url with `{port}` replaced
    /// (default ws://127.0.0.1:{port}/ws), reads the server's RSS and CPU, and stops it
    /// with SIGTERM. Without it, every step runs against the one running server at --url
    /// (steps then inherit the earlier steps' state: less fair).
    #[arg(long, value_name = "CMD", requires = "find_capacity")]
    pub server_cmd: Option<String>,

    /// --server-cmd: append the servers' stdout and stderr to FILE (default: discarded).
    #[arg(long, value_name = "FILE", requires = "server_cmd")]
    pub server_log: Option<PathBuf>,

    /// --server-cmd: how long a started server may take to answer GET /healthz, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub server_ready_timeout: f64,
}

fn secs(flag: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{flag} must be a positive number of seconds, got {v}"))
    }
}

/// The default --duration of each --find-capacity step.
pub const CAPACITY_DURATION: Duration = Duration::from_secs(10);

impl Args {
    /// The --url values as given, or the default (with `{port}` for --server-cmd).
    fn url_templates(&self) -> Vec<String> {
        match (self.urls.is_empty(), self.server_cmd.is_some()) {
            (false, _) => self.urls.clone(),
            (true, true) => vec!["ws://127.0.0.1:{port}/ws".to_string()],
            (true, false) => vec!["ws://127.0.0.1:9000/ws".to_string()],
        }
    }

    /// The validated options of a --find-capacity search.
    ///
    /// # Errors
    ///
    /// A message naming the bad flag.
    pub fn to_capacity_options(&self, command_line: String) -> Result<CapacityOptions, String> {
        let base = self.to_options(command_line)?;
        let slo_p99 = self.slo_p99.ok_or("--find-capacity needs --slo-p99")?;
        if self.server_cmd.is_none() && self.urls.iter().any(|u| u.contains("{port}")) {
            return Err("{port} in --url needs --server-cmd".into());
        }
        crate::capacity::Search::new(self.capacity_start, self.capacity_max, self.capacity_step)?;
        Ok(CapacityOptions {
            base,
            slo_p99,
            start: self.capacity_start,
            max: self.capacity_max,
            step: self.capacity_step,
            server_cmd: self.server_cmd.clone(),
            url_templates: self.url_templates(),
            server_ready_timeout: secs("--server-ready-timeout", self.server_ready_timeout)?,
            server_log: self.server_log.clone(),
            pause: Duration::from_secs(2),
        })
    }

    /// The validated options of a run (not for `--merge`).
    ///
    /// # Errors
    ///
    /// A message naming the bad flag.
    pub fn to_options(&self, command_line: String) -> Result<Options, String> {
        // With --server-cmd the port is only known per step; a placeholder lets the URLs be
        // checked now (each step substitutes its own port).
        let raw: Vec<String> = match self.server_cmd {
            Some(_) => self.url_templates().into_iter().map(|u| u.replace("{port}", "9")).collect(),
            None => self.url_templates(),
        };
        let urls = raw.iter().map(|u| WsUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
        let mut o = Options::new(self.profile, urls);
        if let Some(n) = self.clients {
            o.clients = n;
        }
        o.ramp_per_sec = self.ramp;
        if let Some(t) = self.threads {
            o.threads = t;
        }
        if let Some(k) = self.symbols_per_client {
            o.symbols_per_client = k;
        }
        o.pick = self.pick;
        o.format = self.format;
        o.max_rate = self.max_rate;
        o.trades = self.trades;
        o.depth = self.depth;
        if let Some(r) = &self.symbol_range {
            let parsed =
                r.split_once("..").and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
            match parsed {
                Some((a, b)) if a < b => o.symbol_range = Some((a, b)),
                _ => return Err(format!("--symbol-range {r:?}: expected START..END with START < END")),
            }
        }
        o.transport = self.transport;
        o.churn_per_sec = self.churn_per_sec;
        if let Some(d) = self.duration {
            o.duration = secs("--duration", d)?;
        } else if self.find_capacity {
            o.duration = CAPACITY_DURATION;
        }
        o.verify_final = self.verify_final;
        o.verify_timeout = secs("--verify-timeout", self.verify_timeout)?;
        o.connect_timeout = secs("--connect-timeout", self.connect_timeout)?;
        o.gateway_pid = self.gateway_pid;
        if let Some(s) = self.seed {
            o.seed = s;
        }
        o.progress = if self.quiet { Progress::Off } else { Progress::Auto };
        o.source_addrs = if self.no_source_rotation { SourceAddrs::Off } else { SourceAddrs::Rotate };
        o.hdr_log = self.hdr_log.clone();
        o.command_line = command_line;
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let a = Args::try_parse_from(std::iter::once("tickgate-loadtest").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        a.to_options(args.join(" "))
    }

    #[test]
    fn profiles_set_defaults_and_flags_override() {
        let o = parse(&["--profile", "fanout"]).unwrap();
        assert_eq!((o.clients, o.symbols_per_client, o.duration.as_secs()), (10_000, 20, 30));
        let o = parse(&["--profile", "fanout", "--clients", "7", "--duration", "2.5"]).unwrap();
        assert_eq!((o.clients, o.symbols_per_client), (7, 20));
        assert_eq!(o.duration, Duration::from_millis(2500));
        let o = parse(&[]).unwrap();
        assert_eq!((o.clients, o.symbols_per_client, o.duration.as_secs()), (1_000, 10, 30));
        assert_eq!(o.urls[0].path_and_query, "/ws");
        assert_eq!(o.ramp_per_sec, 2000.0);
        assert_eq!(o.depth, 0, "no books unless asked");
        assert_eq!(parse(&["--depth", "10"]).unwrap().depth, 10);
    }

    #[test]
    fn capacity_flags() {
        let a = Args::try_parse_from([
            "t",
            "--find-capacity",
            "--slo-p99",
            "50ms",
            "--server-cmd",
            "srv --port {port}",
            "--symbols-per-client",
            "20",
        ])
        .unwrap();
        let c = a.to_capacity_options(String::new()).unwrap();
        assert_eq!(c.slo_p99, Duration::from_millis(50));
        assert_eq!((c.start, c.max, c.step), (500, 19_000, 250));
        assert_eq!(c.base.duration, CAPACITY_DURATION);
        assert_eq!(c.url_templates, ["ws://127.0.0.1:{port}/ws"]);
        // --slo-p99 is required, and --clients makes no sense with a search.
        assert!(Args::try_parse_from(["t", "--find-capacity"]).is_err());
        assert!(
            Args::try_parse_from(["t", "--find-capacity", "--slo-p99", "5ms", "--clients", "5"]).is_err()
        );
        assert!(Args::try_parse_from(["t", "--find-capacity", "--slo-p99", "5"]).is_err());
        let a = Args::try_parse_from([
            "t",
            "--find-capacity",
            "--slo-p99",
            "5ms",
            "--url",
            "ws://127.0.0.1:{port}/ws",
        ])
        .unwrap();
        assert!(a.to_capacity_options(String::new()).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        // (args, what the error must mention)
        let cases: &[(&[&str], &str)] = &[
            (&["--clients", "0"], "--clients"),
            (&["--max-rate", "0"], "--max-rate"),
            (&["--max-rate", "5000"], "--max-rate"),
            (&["--duration", "0"], "--duration"),
            (&["--ramp=-1"], "--ramp"),
            (&["--url", "http://x"], "ws://"),
            (&["--threads", "0"], "--threads"),
            (&["--format", "xml"], "xml"),
            (&["--depth=-1"], "--depth"),
            (&["--depth", "65536"], "--depth"),
        ];
        for (args, needle) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
