//! The validated run configuration ([`Options`]) that [`crate::run()`] takes. The command line
//! ([`crate::cli`]) and tests build it; every field is checked once, here, so the run never
//! re-validates.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tickgate::protocol::Format;

use crate::picker::Pick;
use crate::profile::ProfileName;
use crate::ws::url::WsUrl;

/// How the clients connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket (`/ws`).
    #[default]
    Ws,
    /// Server-Sent Events (`GET /sse?symbols=...`): JSON only, the subscription is the
    /// request (no churn).
    Sse,
}

/// Which update format the clients ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatMode {
    /// Every client JSON.
    #[default]
    Json,
    /// Every client binary.
    Binary,
    /// Every client batched JSON (`format=json-batch`: a JSON array of updates per frame).
    #[value(name = "json-batch")]
    #[serde(rename = "json-batch")]
    JsonBatch,
    /// Alternate: even clients JSON, odd clients binary.
    Mixed,
}

impl FormatMode {
    /// The format of client number `client`.
    pub fn for_client(self, client: usize) -> Format {
        match self {
            FormatMode::Json => Format::Json,
            FormatMode::Binary => Format::Binary,
            FormatMode::JsonBatch => Format::JsonBatch,
            FormatMode::Mixed if client.is_multiple_of(2) => Format::Json,
            FormatMode::Mixed => Format::Binary,
        }
    }
}

impl fmt::Display for FormatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormatMode::Json => "json",
            FormatMode::Binary => "binary",
            FormatMode::JsonBatch => "json-batch",
            FormatMode::Mixed => "mixed",
        })
    }
}

/// How source addresses are chosen for loopback targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceAddrs {
    /// A fresh range of 127.0.0.x per run, one address per [`crate::srcaddr::PER_ADDR`]
    /// clients (the default).
    Rotate,
    /// Let the kernel choose (127.0.0.1); TIME_WAIT sockets of a previous run may then
    /// exhaust the ephemeral ports.
    Off,
}

/// Live progress output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar on a terminal, a line every 5 s otherwise.
    Auto,
    /// Nothing until the final table.
    Off,
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct Options {
    /// Targets; client `i` uses `urls[i % urls.len()]`. The universe comes from the first.
    pub urls: Vec<WsUrl>,
    /// The profile the defaults came from, if any.
    pub profile: Option<ProfileName>,
    /// Number of WebSocket clients.
    pub clients: usize,
    /// Connections opened per second during the ramp.
    pub ramp_per_sec: f64,
    /// Worker threads (each with its own current-thread runtime).
    pub threads: usize,
    /// Symbols each client subscribes to.
    pub symbols_per_client: usize,
    /// How the symbols are picked.
    pub pick: Pick,
    /// Update format.
    pub format: FormatMode,
    /// `max_rate` sent with every subscribe (updates/s per symbol), if any.
    pub max_rate: Option<f64>,
    /// Subscribe with `"trades": true` (`--trades`).
    pub trades: bool,
    /// Subscribe with `"depth": N` (`--depth`): each symbol's order book too, N levels a
    /// side, checked and counted as books. 0 (the default): no books.
    pub depth: u16,
    /// Pick symbols only among the gateway's list positions `start..end` (`--symbol-range`).
    pub symbol_range: Option<(usize, usize)>,
    /// WebSocket or Server-Sent Events.
    pub transport: Transport,
    /// Clients per second that swap one symbol for another during measurement.
    pub churn_per_sec: f64,
    /// Measurement time, after every client is connected and subscribed.
    pub duration: Duration,
    /// Compare every client's final values with `GET /snapshot` after a finite feed ends.
    pub verify_final: bool,
    /// How long `--verify-final` waits for the feed to end.
    pub verify_timeout: Duration,
    /// How long to wait with no update at all before comparing (`--verify-final`).
    pub settle: Duration,
    /// Limit of one connection attempt (TCP connect + upgrade).
    pub connect_timeout: Duration,
    /// Connection attempts per client before it counts as failed.
    pub connect_attempts: u32,
    /// The gateway's pid, to read its RSS before and after connecting.
    pub gateway_pid: Option<u32>,
    /// Seed of the symbol picks, keys and masks.
    pub seed: u64,
    /// Progress output.
    pub progress: Progress,
    /// Source addresses.
    pub source_addrs: SourceAddrs,
    /// Write an HdrHistogram interval log here (one interval per second).
    pub hdr_log: Option<PathBuf>,
    /// The command line, for the report.
    pub command_line: String,
}

/// The default duration without a profile.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

impl Options {
    /// Defaults for `profile` (or the plain defaults: 1,000 clients × 10 symbols, 30 s)
    /// against `urls`.
    pub fn new(profile: Option<ProfileName>, urls: Vec<WsUrl>) -> Options {
        let p = profile.map(ProfileName::profile);
        Options {
            urls,
            profile,
            clients: p.map_or(1_000, |p| p.clients),
            ramp_per_sec: 2_000.0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            symbols_per_client: p.map_or(10, |p| p.symbols_per_client),
            pick: Pick::Uniform,
            format: FormatMode::Json,
            max_rate: None,
            trades: false,
            depth: 0,
            symbol_range: None,
            transport: Transport::Ws,
            churn_per_sec: 0.0,
            duration: p.map_or(DEFAULT_DURATION, |p| Duration::from_secs(p.duration_secs)),
            verify_final: false,
            verify_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            gateway_pid: None,
            seed: fastrand::u64(..),
            progress: Progress::Auto,
            source_addrs: SourceAddrs::Rotate,
            hdr_log: None,
            command_line: String::new(),
        }
    }

    /// Checks the values that do not depend on the gateway.
    ///
    /// # Errors
    ///
    /// A message naming the flag and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("at least one --url is needed".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if !(self.ramp_per_sec.is_finite() && self.ramp_per_sec > 0.0) {
            return Err("--ramp must be a positive number of connections per second".into());
        }
        if self.threads == 0 || self.threads > 256 {
            return Err("--threads must be 1..=256".into());
        }
        if self.symbols_per_client == 0 {
            return Err("--symbols-per-client must be at least 1".into());
        }
        if let Some(r) = self.max_rate
            && !(r > 0.0 && r <= 1000.0)
        {
            return Err("--max-rate must be in (0, 1000] updates/s per symbol (the protocol's range)".into());
        }
        if !(self.churn_per_sec.is_finite() && self.churn_per_sec >= 0.0) {
            return Err("--churn-per-sec must be 0 or more".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0 s".into());
        }
        if self.connect_attempts == 0 {
            return Err("connect attempts must be at least 1".into());
        }
        Ok(())
    }
}
