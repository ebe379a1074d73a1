//! The command line (clap derive: the doc comments are the `--help` text) and its
//! conversion into validated [`Options`]. Profile values fill in whatever was not given.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::options::{FormatMode, Options, Progress, SourceAddrs};
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
}

fn secs(flag: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{flag} must be a positive number of seconds, got {v}"))
    }
}

impl Args {
    /// The validated options of a run (not for `--merge`).
    ///
    /// # Errors
    ///
    /// A message naming the bad flag.
    pub fn to_options(&self, command_line: String) -> Result<Options, String> {
        let raw: Vec<&str> = if self.urls.is_empty() {
            vec!["ws://127.0.0.1:9000/ws"]
        } else {
            self.urls.iter().map(String::as_str).collect()
        };
        let urls = raw.into_iter().map(WsUrl::parse).collect::<Result<Vec<_>, _>>()?;
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
        o.churn_per_sec = self.churn_per_sec;
        if let Some(d) = self.duration {
            o.duration = secs("--duration", d)?;
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
        ];
        for (args, needle) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
