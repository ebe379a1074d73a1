//! Configuration: one table of keys, four sources, one validated [`Config`].
//!
//! Every setting is a key in [`KEYS`] (`section.name`), with its default, its unit and what it
//! bounds. Values are layered with this precedence, highest first:
//!
//! 1. command-line flag (`--rate 5000`, or the generic `--set feed.rate=5000`),
//! 2. environment (`TICKGATE_FEED__RATE=5000`),
//! 3. the TOML file (`[feed]` / `rate = 5000`),
//! 4. the default in [`KEYS`].
//!
//! The raw values are then parsed and validated **once** into a typed [`Config`] (ripgrep's
//! "low args → high args" shape); the runtime only ever sees that. Errors name the key, the
//! value, where it came from and why it was refused. `config/tickgate.toml` documents every
//! key and is checked against [`KEYS`] by a test so the two cannot drift.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File,
    /// A `TICKGATE_SECTION__KEY` environment variable.
    Env,
    /// A command-line flag.
    Flag,
    /// Changed while running, through the admin listener.
    Live,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
            Source::Live => "live",
        })
    }
}

/// A configuration error: which key, what value, from where, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value was refused.
    #[error("config key `{key}` = {value:?} (from {origin}): {reason}")]
    Invalid {
        /// The key, `section.name`.
        key: String,
        /// The raw value as given.
        value: String,
        /// Where it came from.
        origin: Source,
        /// Why it was refused.
        reason: String,
    },
    /// A key that does not exist.
    #[error("unknown config key `{key}` (from {origin}){hint}")]
    Unknown {
        /// The key as given.
        key: String,
        /// Where it came from.
        origin: Source,
        /// A "did you mean" hint, possibly empty.
        hint: String,
    },
    /// The file could not be read or is not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// One configuration key.
pub struct KeyDef {
    /// `section.name`.
    pub key: &'static str,
    /// The default, as it would be written in TOML (strings without quotes).
    pub default: &'static str,
    /// What it sets and what it bounds (also the `--help` text).
    pub doc: &'static str,
    /// Whether it can be changed while running (`tickgate tune`); others need a restart.
    pub live: bool,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

impl KeyDef {
    /// Parses `value` into `c` (this key only).
    ///
    /// # Errors
    /// Why the value is refused.
    pub fn apply_to(&self, c: &mut Config, value: &str) -> Result<(), String> {
        (self.apply)(c, value)
    }

    /// The command-line flag for this key: `server.` and `feed.` keys by name (`--rate`),
    /// others with their section (`--admin-listen`); `_` → `-`.
    pub fn flag(&self) -> String {
        match self.key.split_once('.') {
            // `--feed sim|replay:..|ticks:..|nats://..` reads better than `--source`.
            Some(("feed", "source")) => "feed".into(),
            // The two main sections' keys are short flags; others keep their section.
            Some(("server" | "feed", name)) => name.replace('_', "-"),
            _ => self.key.replace(['.', '_'], "-"),
        }
    }

    /// Whether the key is a boolean (its flag may be given without a value: `--replay-loop`).
    pub fn is_bool(&self) -> bool {
        matches!(self.default, "true" | "false")
    }

    /// The environment variable for this key: `TICKGATE_SECTION__NAME`.
    pub fn env_var(&self) -> String {
        format!("TICKGATE_{}", self.key.replace('.', "__").to_ascii_uppercase())
    }
}

/// How the feed thread and shard threads are pinned to cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinCores {
    /// Feed thread on the first allowed core, shards on the following ones (wrapping).
    Auto,
    /// No pinning.
    Off,
    /// Explicit cores: the first for the feed thread, the rest for shards (wrapping).
    List(Vec<usize>),
}

/// The effective, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address of the HTTP/WebSocket listener.
    pub listen: SocketAddr,
    /// Maximum concurrent WebSocket connections; 0 = derive from the open-file limit.
    pub max_connections: usize,
    /// Number of shard (writer) threads; 0 = cores − 1, at least 1.
    pub shards: usize,
    /// Core pinning.
    pub pin_cores: PinCores,
    /// Per-socket kernel send buffer (SO_SNDBUF), bytes; 0 = leave the OS default.
    pub send_buffer_bytes: usize,
    /// Largest client message accepted, bytes (whole message, all fragments).
    pub max_message_bytes: usize,
    /// Maximum symbols one client may hold.
    pub max_symbols_per_client: usize,
    /// Client messages per second allowed (token bucket of this size, refilled per second).
    pub max_client_msgs_per_sec: u32,
    /// Default `max_rate` (updates/s per symbol) for subscriptions that give none; 0 = none.
    pub default_max_rate: u32,
    /// Server ping period.
    pub ping_interval: Duration,
    /// Close a connection that sent nothing for this long.
    pub idle_timeout: Duration,
    /// Close a client that made no write progress for this long (code 1008).
    pub slow_client_timeout: Duration,
    /// Period of the summary log line and of histogram merging.
    pub stats_interval: Duration,
    /// Ring slots (rounded up to a power of two).
    pub ring_capacity: usize,
    /// Feed settings.
    pub feed: FeedConfig,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Longest a graceful shutdown may take.
    pub shutdown_grace: Duration,
    /// Admin listener address; `None` = no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// File holding the admin bearer token (empty = none, unless `TICKGATE_ADMIN_TOKEN`).
    pub admin_token_file: Option<PathBuf>,
    /// Guards of the public listener (per-IP limits, timeouts, origins).
    pub guards: GuardConfig,
    /// TLS certificate and key (PEM); both or neither.
    pub tls: Option<TlsFiles>,
    /// Client authentication.
    pub auth: AuthConfig,
}

/// Guards of the public listener against floods, slow handshakes and foreign pages.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardConfig {
    /// WebSocket connections one client IP may hold; 0 = no limit.
    pub max_connections_per_ip: u32,
    /// New connections per second one client IP may open (token bucket, burst = the same);
    /// 0 = no limit.
    pub connection_rate_per_ip: u32,
    /// Accept → completed upgrade (TLS handshake and HTTP request head included).
    pub handshake_timeout: Duration,
    /// Largest HTTP request head, bytes.
    pub max_header_bytes: usize,
    /// Close a WebSocket that holds no subscription this long after opening; zero = never.
    pub subscribe_timeout: Duration,
    /// Origins allowed to open WebSockets (`https://app.example.com`); empty = any.
    pub allowed_origins: Vec<String>,
    /// Serve the diagnostic echo route `/echo` (conformance testing only).
    pub diagnostic_echo: bool,
}

/// PEM files of the TLS certificate chain and private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may connect and subscribe to anything.
    None,
    /// An HS256 JWT with `sub`, `exp` and `symbols` is required at the handshake.
    Token,
}

/// Client authentication settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The mode.
    pub mode: AuthMode,
    /// File holding the HS256 secret (else the `TICKGATE_AUTH_SECRET` environment variable).
    pub secret_file: Option<PathBuf>,
}

/// Environment variable that may hold the token-signing secret (never a flag).
pub const AUTH_SECRET_ENV: &str = "TICKGATE_AUTH_SECRET";

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Environment variable that may hold the admin token (never a flag, never printed).
pub const ADMIN_TOKEN_ENV: &str = "TICKGATE_ADMIN_TOKEN";

/// Where the feed thread's ticks come from (`feed.source`, flag `--feed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedSpec {
    /// The embedded simulator (`sim`).
    Sim,
    /// Binance capture files, merged by capture time (`replay:PATH[,PATH...]`).
    Replay(Vec<PathBuf>),
    /// A recorded tick file (`ticks:FILE`).
    Ticks(PathBuf),
    /// A NATS server carrying ticks from `tickgate feed --publish` (`nats://HOST:PORT`).
    Nats(String),
}

impl std::str::FromStr for FeedSpec {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        let v = v.trim();
        if v == "sim" {
            return Ok(FeedSpec::Sim);
        }
        if let Some(list) = v.strip_prefix("replay:") {
            let paths: Vec<PathBuf> =
                list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
            if paths.is_empty() {
                return Err("replay: needs at least one capture file, e.g. replay:btcusdt.gz".into());
            }
            return Ok(FeedSpec::Replay(paths));
        }
        if let Some(path) = v.strip_prefix("ticks:") {
            if path.trim().is_empty() {
                return Err("ticks: needs a file, e.g. ticks:feeds/fixtures/sim-20k.ticks".into());
            }
            return Ok(FeedSpec::Ticks(PathBuf::from(path.trim())));
        }
        if let Some(rest) = v.strip_prefix("nats://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains(['/', ' ']) {
                return Err("expected nats://HOST:PORT".into());
            }
            return Ok(FeedSpec::Nats(v.trim_end_matches('/').to_string()));
        }
        Err("expected sim, replay:PATH[,PATH...], ticks:FILE or nats://HOST:PORT".into())
    }
}

impl fmt::Display for FeedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedSpec::Sim => f.write_str("sim"),
            FeedSpec::Replay(p) => {
                let names: Vec<_> = p.iter().map(|p| p.display().to_string()).collect();
                write!(f, "replay:{}", names.join(","))
            }
            FeedSpec::Ticks(p) => write!(f, "ticks:{}", p.display()),
            FeedSpec::Nats(u) => f.write_str(u),
        }
    }
}

/// Checks a NATS subject prefix: dot-separated tokens of `A-Z a-z 0-9 _ -`.
fn parse_subject_prefix(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = !v.is_empty()
        && v.split('.')
            .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected dot-separated tokens of A-Z a-z 0-9 _ - (e.g. ticks or md.us)".into())
    }
}

/// Settings of the feed: its source, replay pacing, the NATS bus and the simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedConfig {
    /// Where ticks come from.
    pub source: FeedSpec,
    /// Pace of replayed sources.
    pub replay_speed: tickgate_feeds::Speed,
    /// Replayed sources start again at their end.
    pub replay_loop: bool,
    /// NATS subject prefix: ticks go to `<prefix>.<SYMBOL>`.
    pub nats_prefix: String,
    /// JetStream stream holding the last tick per subject.
    pub nats_stream: String,
    /// How long `serve --feed nats://` waits at start for NATS and the publisher's universe.
    pub nats_wait: Duration,
    /// Number of symbols; 0 = exactly the universe file's symbols.
    pub symbols: usize,
    /// Total ticks/s; 0 = as fast as possible.
    pub rate: u64,
    /// Random seed.
    pub seed: u64,
    /// Stop after this many ticks; `None` = run forever.
    pub ticks: Option<u64>,
    /// Rate multiplier during bursts; 1 = no bursts.
    pub burst_factor: u32,
    /// A burst starts this often.
    pub burst_every: Duration,
    /// Each burst lasts this long.
    pub burst_len: Duration,
    /// Share of events that are trades, percent.
    pub trade_percent: u8,
    /// Annualized volatility of simulated mid prices.
    pub volatility: f64,
    /// Zipf exponent of symbol activity; 0 = uniform.
    pub zipf_exponent: f64,
}

impl Config {
    /// The simulator settings this configuration asks for.
    pub fn sim_config(&self) -> tickgate_feeds::SimConfig {
        tickgate_feeds::SimConfig {
            seed: self.feed.seed,
            rate: self.feed.rate,
            burst_factor: self.feed.burst_factor,
            burst_every_ms: self.feed.burst_every.as_millis() as u64,
            burst_len_ms: self.feed.burst_len.as_millis() as u64,
            trade_percent: self.feed.trade_percent,
            volatility: self.feed.volatility,
            zipf_exponent: self.feed.zipf_exponent,
        }
    }

    /// The built-in defaults (always valid; a test checks it).
    pub fn defaults() -> Config {
        let mut c = Config::blank();
        for k in KEYS {
            // The defaults are validated by a unit test; a bad one would show there.
            let _ = (k.apply)(&mut c, k.default);
        }
        c
    }

    fn blank() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            max_connections: 0,
            shards: 0,
            pin_cores: PinCores::Auto,
            send_buffer_bytes: 0,
            max_message_bytes: 0,
            max_symbols_per_client: 0,
            max_client_msgs_per_sec: 0,
            default_max_rate: 0,
            ping_interval: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            slow_client_timeout: Duration::ZERO,
            stats_interval: Duration::ZERO,
            ring_capacity: 0,
            feed: FeedConfig {
                source: FeedSpec::Sim,
                replay_speed: tickgate_feeds::Speed::Max,
                replay_loop: false,
                nats_prefix: String::new(),
                nats_stream: String::new(),
                nats_wait: Duration::ZERO,
                symbols: 0,
                rate: 0,
                seed: 0,
                ticks: None,
                burst_factor: 1,
                burst_every: Duration::ZERO,
                burst_len: Duration::ZERO,
                trade_percent: 0,
                volatility: 0.0,
                zipf_exponent: 0.0,
            },
            log_level: String::new(),
            log_format: LogFormat::Pretty,
            shutdown_grace: Duration::ZERO,
            admin_listen: None,
            admin_token_file: None,
            guards: GuardConfig {
                max_connections_per_ip: 0,
                connection_rate_per_ip: 0,
                handshake_timeout: Duration::ZERO,
                max_header_bytes: 0,
                subscribe_timeout: Duration::ZERO,
                allowed_origins: Vec::new(),
                diagnostic_echo: false,
            },
            tls: None,
            auth: AuthConfig { mode: AuthMode::None, secret_file: None },
        }
    }
}

/// Every configuration key, in file order. `config/tickgate.toml` mirrors this table.
pub static KEYS: &[KeyDef] = &[
    KeyDef {
        key: "server.listen",
        default: "127.0.0.1:9000",
        doc: "Address of the HTTP/WebSocket listener (IP:PORT; port 0 picks a free port).",
        live: false,
        apply: |c, v| {
            c.listen = v.parse().map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:9000".to_string())?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_connections",
        default: "0",
        doc: "Maximum concurrent WebSocket connections; beyond it upgrades get HTTP 503. 0 = the \
              open-file limit (raised to its hard limit at start) minus 100 for listeners, \
              files and the feed.",
        live: true,
        apply: |c, v| {
            c.max_connections = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.shards",
        default: "0",
        doc: "Shard (WebSocket writer) threads, each with its own runtime and clients. 0 = \
              cores - 1, at least 1.",
        live: false,
        apply: |c, v| {
            c.shards = parse_int(v, 0, 256)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.pin_cores",
        default: "auto",
        doc: "Pin threads to cores: auto (feed on the first core, shards on the next ones), off, \
              or a list like 0,1,2 (first = feed, rest = shards, wrapping).",
        live: false,
        apply: |c, v| {
            c.pin_cores = match v {
                "auto" => PinCores::Auto,
                "off" => PinCores::Off,
                list => PinCores::List(
                    list.split(',')
                        .map(|p| p.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .ok()
                        .filter(|l| !l.is_empty())
                        .ok_or("expected auto, off, or a comma-separated list of core numbers")?,
                ),
            };
            Ok(())
        },
    },
    KeyDef {
        key: "server.send_buffer_bytes",
        default: "32768",
        doc: "Kernel send buffer per socket (SO_SNDBUF; Linux doubles it). Small on purpose: \
              when a client cannot keep up, updates conflate in the gateway (latest value wins) \
              instead of ageing in the kernel. 0 = OS default (autotuned, up to MiBs).",
        live: false,
        apply: |c, v| {
            c.send_buffer_bytes = parse_int(v, 0, 64 << 20)?;
            if c.send_buffer_bytes != 0 && c.send_buffer_bytes < 4096 {
                return Err("must be 0 (OS default) or at least 4096".into());
            }
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_message_bytes",
        default: "65536",
        doc: "Largest client message, bytes (all fragments together); larger closes with 1009. \
              Bounds per-connection read buffering.",
        live: false,
        apply: |c, v| {
            c.max_message_bytes = parse_int(v, 128, 16 << 20)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_symbols_per_client",
        default: "1000",
        doc: "Symbols one client may hold; more gets error too_many_symbols. Bounds \
              per-client conflation state.",
        live: true,
        apply: |c, v| {
            c.max_symbols_per_client = parse_int(v, 1, 1_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_client_msgs_per_sec",
        default: "50",
        doc: "Client messages per second (token bucket, burst = the same number); over it a \
              message gets error rate_limited and is not executed.",
        live: true,
        apply: |c, v| {
            c.max_client_msgs_per_sec = parse_int(v, 1, 1_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.default_max_rate",
        default: "0",
        doc: "Updates/s per symbol for subscriptions that give no max_rate; 0 = unlimited.",
        live: true,
        apply: |c, v| {
            c.default_max_rate = parse_int(v, 0, 1000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.ping_interval",
        default: "20s",
        doc: "How often the server pings each client.",
        live: true,
        apply: |c, v| {
            c.ping_interval = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.idle_timeout",
        default: "60s",
        doc: "Close (1008 \"idle timeout\") a client that sent nothing, not even a pong, for this \
              long. Must exceed ping_interval.",
        live: true,
        apply: |c, v| {
            c.idle_timeout = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.slow_client_timeout",
        default: "30s",
        doc: "Close (1008 \"slow consumer\") a client whose socket accepted no data for this long \
              while updates were waiting.",
        live: true,
        apply: |c, v| {
            c.slow_client_timeout = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.stats_interval",
        default: "10s",
        doc: "Period of the summary log line and of latency histogram merging.",
        live: true,
        apply: |c, v| {
            c.stats_interval = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.ring_capacity",
        default: "65536",
        doc: "Ring slots (power of two, 128 B each). A shard further behind than this is \
              overrun and heals from the last-value cache.",
        live: false,
        apply: |c, v| {
            c.ring_capacity = parse_int(v, 16, 1 << 26)?;
            if !c.ring_capacity.is_power_of_two() {
                return Err("must be a power of two".into());
            }
            Ok(())
        },
    },
    KeyDef {
        key: "server.log_level",
        default: "info",
        doc: "Log filter, tracing EnvFilter syntax (e.g. info, debug, tickgate=debug). RUST_LOG, \
              if set, wins.",
        live: true,
        apply: |c, v| {
            log_filter(v)?;
            c.log_level = v.to_string();
            Ok(())
        },
    },
    KeyDef {
        key: "server.log_format",
        default: "pretty",
        doc: "Log line format: pretty (human-readable) or json (one object per line).",
        live: false,
        apply: |c, v| {
            c.log_format = match v {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => return Err("expected pretty or json".into()),
            };
            Ok(())
        },
    },
    KeyDef {
        key: "server.shutdown_grace",
        default: "5s",
        doc: "Longest a graceful shutdown (SIGTERM/SIGINT) may take: clients get close 1001, \
              buffers are flushed, then the process exits 0 even if some never acknowledged.",
        live: true,
        apply: |c, v| {
            c.shutdown_grace = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_connections_per_ip",
        default: "1000",
        doc: "WebSocket connections one client IP may hold; more get HTTP 429. 0 = no limit. \
              Behind a proxy every client has the proxy's IP: raise it or set 0 there.",
        live: false,
        apply: |c, v| {
            c.guards.max_connections_per_ip = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.connection_rate_per_ip",
        default: "100",
        doc: "New connections per second one client IP may open (token bucket, burst = the same); \
              more get HTTP 429 with Retry-After. 0 = no limit. Bounds reconnect storms and floods.",
        live: false,
        apply: |c, v| {
            c.guards.connection_rate_per_ip = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.handshake_timeout",
        default: "10s",
        doc: "Time from accepting a TCP connection to a complete HTTP request head (and TLS \
              handshake); slower clients are dropped (slowloris guard).",
        live: false,
        apply: |c, v| {
            c.guards.handshake_timeout = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.max_header_bytes",
        default: "16384",
        doc: "Largest HTTP request head, bytes (request line and headers); larger gets HTTP 431 \
              and the connection is closed. Bounds per-handshake memory.",
        live: false,
        apply: |c, v| {
            c.guards.max_header_bytes = parse_int(v, 8192, 1 << 20)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.subscribe_timeout",
        default: "30s",
        doc: "Close (1008 \"no subscription\") a WebSocket that holds no subscription this long \
              after it opened; 0s = never. Frees connections that are opened and left idle.",
        live: false,
        apply: |c, v| {
            c.guards.subscribe_timeout = parse_duration(v, Duration::ZERO)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.allowed_origins",
        default: "",
        doc: "Comma-separated Origins allowed to open WebSockets (e.g. https://app.example.com); \
              others get HTTP 403. Empty = any origin. Requests without Origin (non-browser \
              clients) are always allowed.",
        live: false,
        apply: |c, v| {
            c.guards.allowed_origins = parse_origins(v)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.diagnostic_echo",
        default: "false",
        doc: "Serve GET /echo: a WebSocket that echoes every message, over the same connection code \
              as /ws (for the Autobahn conformance suite). Never enable in production.",
        live: false,
        apply: |c, v| {
            c.guards.diagnostic_echo = parse_bool(v)?;
            Ok(())
        },
    },
    KeyDef {
        key: "server.tls_cert",
        default: "",
        doc: "PEM certificate chain: with server.tls_key, the listener serves https:// and wss:// \
              (rustls). Reloaded with the key on SIGHUP; existing connections keep theirs.",
        live: false,
        apply: |c, v| {
            set_tls(c, Some(v), None);
            Ok(())
        },
    },
    KeyDef {
        key: "server.tls_key",
        default: "",
        doc: "PEM private key (PKCS#8, PKCS#1 or SEC1) for server.tls_cert.",
        live: false,
        apply: |c, v| {
            set_tls(c, None, Some(v));
            Ok(())
        },
    },
    KeyDef {
        key: "auth.mode",
        default: "none",
        doc: "Client authentication: none, or token (an HS256 JWT with sub, exp and a symbols \
              claim, given as ?token=, Authorization: Bearer, or a Sec-WebSocket-Protocol entry \
              tickgate.token.<JWT>). Without a valid token the handshake gets HTTP 401.",
        live: false,
        apply: |c, v| {
            c.auth.mode = match v.trim() {
                "none" => AuthMode::None,
                "token" => AuthMode::Token,
                _ => return Err("expected none or token".into()),
            };
            Ok(())
        },
    },
    KeyDef {
        key: "auth.secret_file",
        default: "",
        doc: "File holding the HS256 token secret (at least 32 bytes), else the environment \
              variable TICKGATE_AUTH_SECRET. Never put the secret on the command line.",
        live: false,
        apply: |c, v| {
            c.auth.secret_file = (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
            Ok(())
        },
    },
    KeyDef {
        key: "admin.listen",
        default: "127.0.0.1:9001",
        doc: "Admin listener (live tuning with `tickgate tune`, /config, /metrics, /stats): IP:PORT, \
              or off. Keep it on loopback or a private network.",
        live: false,
        apply: |c, v| {
            c.admin_listen = match v {
                "off" | "" => None,
                a => Some(a.parse().map_err(|_| "expected IP:PORT or off".to_string())?),
            };
            Ok(())
        },
    },
    KeyDef {
        key: "admin.token_file",
        default: "",
        doc: "File holding the bearer token the admin listener requires (empty = none, unless \
              TICKGATE_ADMIN_TOKEN is set). Never put the token itself on the command line.",
        live: false,
        apply: |c, v| {
            c.admin_token_file = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    KeyDef {
        key: "feed.source",
        default: "sim",
        doc: "Where ticks come from: sim (the embedded simulator), replay:PATH[,PATH...] (Binance \
              capture files, .gz or plain, merged by capture time), ticks:FILE (a file made by \
              `tickgate record`), or nats://HOST:PORT (ticks published by `tickgate feed`).",
        live: false,
        apply: |c, v| {
            c.feed.source = v.parse()?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.replay_speed",
        default: "1",
        doc: "Pace of replay: and ticks: sources: 1 = the recording's own spacing, 10 = ten \
              times faster, max = as fast as the gateway takes them.",
        live: false,
        apply: |c, v| {
            c.feed.replay_speed = v.parse()?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.replay_loop",
        default: "false",
        doc: "Start a replay again at its end (time and seq keep rising); false = the feed ends.",
        live: false,
        apply: |c, v| {
            c.feed.replay_loop = parse_bool(v)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.nats_prefix",
        default: "ticks",
        doc: "NATS subject prefix: each tick goes to <prefix>.<SYMBOL>, the universe to \
              <prefix>.$universe.",
        live: false,
        apply: |c, v| {
            c.feed.nats_prefix = parse_subject_prefix(v)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.nats_stream",
        default: "TICKS",
        doc: "JetStream stream over <prefix>.> keeping one message (the latest tick) per subject; \
              the publisher creates it if missing. Bounds the bus's storage to one tick per symbol.",
        live: false,
        apply: |c, v| {
            let v = v.trim();
            if v.is_empty()
                || v.len() > 64
                || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
            {
                return Err("expected 1-64 characters of A-Z a-z 0-9 _ -".into());
            }
            c.feed.nats_stream = v.to_string();
            Ok(())
        },
    },
    KeyDef {
        key: "feed.nats_wait",
        default: "30s",
        doc: "How long serve --feed nats:// waits at start for NATS and for the publisher's \
              universe before giving up (exit 1).",
        live: false,
        apply: |c, v| {
            c.feed.nats_wait = parse_duration(v, Duration::from_millis(100))?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.symbols",
        default: "0",
        doc: "Symbols in the simulated universe; 0 = the universe file's (feeds/data); more adds \
              generated names, fewer truncates.",
        live: false,
        apply: |c, v| {
            c.feed.symbols = parse_int(v, 0, 1_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.rate",
        default: "20000",
        doc: "Simulated ticks per second across all symbols; 0 = as fast as possible.",
        live: true,
        apply: |c, v| {
            c.feed.rate = parse_int(v, 0, 100_000_000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.seed",
        default: "1",
        doc: "Seed of the simulated feed; the same seed gives the same ticks.",
        live: false,
        apply: |c, v| {
            // TOML integers are 64-bit signed: a larger seed could not be written back.
            c.feed.seed = parse_int(v, 0, i64::MAX as u64)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.ticks",
        default: "0",
        doc: "Stop the feed after this many ticks (finite runs for tests and benchmarks); 0 = \
              never.",
        live: false,
        apply: |c, v| {
            let n: u64 = parse_int(v, 0, i64::MAX as u64)?;
            c.feed.ticks = (n > 0).then_some(n);
            Ok(())
        },
    },
    KeyDef {
        key: "feed.burst_factor",
        default: "1",
        doc: "Rate multiplier during bursts; 1 = no bursts.",
        live: false,
        apply: |c, v| {
            c.feed.burst_factor = parse_int(v, 1, 1000)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.burst_every",
        default: "10s",
        doc: "A burst starts this often (with burst_factor > 1).",
        live: false,
        apply: |c, v| {
            c.feed.burst_every = parse_duration(v, Duration::from_millis(1))?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.burst_len",
        default: "500ms",
        doc: "Each burst lasts this long.",
        live: false,
        apply: |c, v| {
            c.feed.burst_len = parse_duration(v, Duration::ZERO)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.trade_percent",
        default: "20",
        doc: "Share of simulated events that are trades, percent (the rest are quotes).",
        live: false,
        apply: |c, v| {
            c.feed.trade_percent = parse_int(v, 0, 100)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.volatility",
        default: "0.3",
        doc: "Annualized volatility of simulated mid prices (0.3 = 30%).",
        live: false,
        apply: |c, v| {
            c.feed.volatility = parse_float(v, 0.0, 10.0)?;
            Ok(())
        },
    },
    KeyDef {
        key: "feed.zipf_exponent",
        default: "1.1",
        doc: "Skew of symbol activity (Zipf exponent; a few hot symbols carry most ticks); 0 = \
              uniform.",
        live: false,
        apply: |c, v| {
            c.feed.zipf_exponent = parse_float(v, 0.0, 5.0)?;
            Ok(())
        },
    },
];

/// Looks a key up in [`KEYS`].
pub fn key_def(key: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.key == key)
}

fn parse_int<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let n: T = v.trim().replace('_', "").parse().map_err(|_| "expected a whole number".to_string())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

/// Records one half of the TLS pair; the other half keeps its value. Both empty = no TLS
/// (`cross_check` refuses exactly one of them).
fn set_tls(c: &mut Config, cert: Option<&str>, key: Option<&str>) {
    let cur = c.tls.take().unwrap_or(TlsFiles { cert: PathBuf::new(), key: PathBuf::new() });
    let cert = cert.map_or(cur.cert, |v| PathBuf::from(v.trim()));
    let key = key.map_or(cur.key, |v| PathBuf::from(v.trim()));
    c.tls = (!cert.as_os_str().is_empty() || !key.as_os_str().is_empty()).then_some(TlsFiles { cert, key });
}

/// Parses a comma-separated list of origins (`scheme://host[:port]`, no path).
fn parse_origins(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains('/') => out.push(o.to_ascii_lowercase()),
            _ => {
                return Err(format!(
                    "{o:?} is not an origin like https://app.example.com (scheme and host, no path)"
                ));
            }
        }
    }
    Ok(out)
}

/// Parses a log filter safely: ASCII only (tracing-subscriber 0.3.23 panics slicing some
/// non-ASCII directives) and without field-value regexes (their automata grow
/// exponentially with the pattern; a 25-byte value took seconds and 100 MB). Both were
/// found by fuzzing `server.log_level`, which is also settable live.
///
/// # Errors
/// Why the filter is refused.
pub fn log_filter(v: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if !v.is_ascii() || v.len() > 1024 {
        return Err("a log filter is ASCII, at most 1024 bytes (e.g. info, tickgate=debug)".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(v)
        .map_err(|e| format!("not a valid log filter: {e}"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_float(v: &str, min: f64, max: f64) -> Result<f64, String> {
    let n: f64 = v.trim().parse().map_err(|_| "expected a number".to_string())?;
    if !n.is_finite() || n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

/// Parses `250ms`, `30s`, `2m`, `1h` (a whole number and a unit).
pub fn parse_duration(v: &str, min: Duration) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| "expected a duration like 500ms, 30s, 2m".to_string())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err("missing unit: write e.g. 500ms, 30s, 2m".into()),
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    if d < min {
        return Err(format!("must be at least {}ms", min.as_millis()));
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err("must be at most 7 days".into());
    }
    Ok(d)
}

/// Collects raw values from the sources, then builds the [`Config`].
#[derive(Clone, Debug, Default)]
pub struct Layers {
    raw: BTreeMap<&'static str, (String, Source)>,
}

impl Layers {
    /// Starts from the defaults only.
    pub fn new() -> Layers {
        Layers::default()
    }

    /// Sets `key` from `source` unless a higher-precedence source already set it.
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] for a key not in [`KEYS`].
    pub fn set(&mut self, key: &str, value: String, source: Source) -> Result<(), ConfigError> {
        let def = key_def(key).ok_or_else(|| unknown(key, source))?;
        match self.raw.get(def.key) {
            Some((_, s)) if *s > source => {}
            _ => {
                self.raw.insert(def.key, (value, source));
            }
        }
        Ok(())
    }

    /// Adds a TOML file's values.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, an unknown section or key, or a value of a non-scalar type.
    pub fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        self.add_toml(&text).map_err(|e| match e {
            ConfigError::File { reason, .. } => file_err(reason),
            other => other,
        })
    }

    /// Adds values from TOML text (see [`Layers::add_file`]).
    ///
    /// # Errors
    /// As for [`Layers::add_file`].
    pub fn add_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        for (section, body) in table {
            let toml::Value::Table(body) = body else {
                return Err(unknown(&section, Source::File));
            };
            for (name, value) in body {
                let key = format!("{section}.{name}");
                let raw = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|v| match v {
                            toml::Value::Integer(i) => i.to_string(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => {
                        return Err(ConfigError::Invalid {
                            key,
                            value: other.to_string(),
                            origin: Source::File,
                            reason: "expected a string, number or list".into(),
                        });
                    }
                };
                self.set(&key, raw, Source::File)?;
            }
        }
        Ok(())
    }

    /// Adds every `TICKGATE_SECTION__KEY` variable from `vars` (pass `std::env::vars()`).
    /// Variables `TICKGATE_SECTION__NAME` that match no key are errors, so typos surface.
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] for an unmatched `TICKGATE_` variable.
    pub fn add_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("TICKGATE_") else { continue };
            // Secrets are not config keys; neither are variables without the section
            // separator `__` (tools' own, like TICKGATE_BIN).
            if name == ADMIN_TOKEN_ENV || name == AUTH_SECRET_ENV || !rest.contains("__") {
                continue;
            }
            let key = rest.to_ascii_lowercase().replacen("__", ".", 1);
            if key_def(&key).is_none() {
                return Err(unknown(&name, Source::Env));
            }
            self.set(&key, value, Source::Env)?;
        }
        Ok(())
    }

    /// Validates every value into a [`Config`], with each key's source.
    ///
    /// # Errors
    /// The first invalid value, as [`ConfigError::Invalid`].
    pub fn build(&self) -> Result<(Config, BTreeMap<&'static str, Source>), ConfigError> {
        let mut c = Config::blank();
        let mut sources = BTreeMap::new();
        for k in KEYS {
            let (value, source) = match self.raw.get(k.key) {
                Some((v, s)) => (v.as_str(), *s),
                None => (k.default, Source::Default),
            };
            (k.apply)(&mut c, value).map_err(|reason| ConfigError::Invalid {
                key: k.key.into(),
                value: value.into(),
                origin: source,
                reason,
            })?;
            sources.insert(k.key, source);
        }
        cross_check(&c).map_err(|(key, reason)| {
            let (value, source) = match self.raw.get(key) {
                Some((v, s)) => (v.clone(), *s),
                None => (key_def(key).map_or("", |k| k.default).to_string(), Source::Default),
            };
            ConfigError::Invalid { key: key.into(), value, origin: source, reason }
        })?;
        Ok((c, sources))
    }
}

/// Rules that involve two keys.
///
/// # Errors
/// The key to blame and the reason.
pub fn cross_check(c: &Config) -> Result<(), (&'static str, String)> {
    if c.idle_timeout <= c.ping_interval {
        return Err((
            "server.idle_timeout",
            format!("must exceed server.ping_interval ({}ms)", c.ping_interval.as_millis()),
        ));
    }
    if let Some(t) = &c.tls {
        if t.cert.as_os_str().is_empty() {
            return Err(("server.tls_cert", "server.tls_key is set: give the certificate too".into()));
        }
        if t.key.as_os_str().is_empty() {
            return Err(("server.tls_key", "server.tls_cert is set: give the private key too".into()));
        }
    }
    if c.feed.burst_factor > 1 && c.feed.burst_len >= c.feed.burst_every {
        return Err(("feed.burst_len", "must be shorter than feed.burst_every".into()));
    }
    Ok(())
}

fn unknown(key: &str, source: Source) -> ConfigError {
    // Normalize `TICKGATE_SERVER__LISTN` to `server.listn`, then suggest the closest key.
    let needle = key.strip_prefix("TICKGATE_").unwrap_or(key).to_ascii_lowercase().replacen("__", ".", 1);
    let hint = KEYS
        .iter()
        .map(|k| (edit_distance(&needle, k.key), k.key))
        .filter(|(d, k)| *d <= 3 || needle.starts_with(k) || k.starts_with(needle.as_str()))
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    ConfigError::Unknown { key: key.into(), origin: source, hint }
}

/// Levenshtein distance (small strings only: config keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Renders the effective configuration as TOML, each key annotated with its source.
pub fn render(c: &Config, sources: &BTreeMap<&'static str, Source>) -> String {
    let mut out = String::new();
    let mut section = "";
    for k in KEYS {
        let (sec, name) = k.key.split_once('.').unwrap_or(("", k.key));
        if sec != section {
            if !section.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{sec}]\n"));
            section = sec;
        }
        let value = effective_value(c, k.key);
        let src = sources.get(k.key).copied().unwrap_or(Source::Default);
        out.push_str(&format!("{name} = {value}  # {src}\n"));
    }
    out
}

/// The effective value of `key` in `c`, rendered as TOML.
pub fn effective_value(c: &Config, key: &str) -> String {
    // A TOML basic string (Rust's `{:?}` escapes such as `\0` or `\u{301}` are not TOML).
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let d = |d: Duration| {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) { q(&format!("{}s", ms / 1000)) } else { q(&format!("{ms}ms")) }
    };
    match key {
        "server.listen" => q(&c.listen.to_string()),
        "server.max_connections" => c.max_connections.to_string(),
        "server.shards" => c.shards.to_string(),
        "server.pin_cores" => match &c.pin_cores {
            PinCores::Auto => q("auto"),
            PinCores::Off => q("off"),
            PinCores::List(l) => q(&l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        },
        "server.send_buffer_bytes" => c.send_buffer_bytes.to_string(),
        "server.max_message_bytes" => c.max_message_bytes.to_string(),
        "server.max_symbols_per_client" => c.max_symbols_per_client.to_string(),
        "server.max_client_msgs_per_sec" => c.max_client_msgs_per_sec.to_string(),
        "server.default_max_rate" => c.default_max_rate.to_string(),
        "server.ping_interval" => d(c.ping_interval),
        "server.idle_timeout" => d(c.idle_timeout),
        "server.slow_client_timeout" => d(c.slow_client_timeout),
        "server.stats_interval" => d(c.stats_interval),
        "server.ring_capacity" => c.ring_capacity.to_string(),
        "server.log_level" => q(&c.log_level),
        "server.log_format" => q(match c.log_format {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }),
        "server.shutdown_grace" => d(c.shutdown_grace),
        "server.max_connections_per_ip" => c.guards.max_connections_per_ip.to_string(),
        "server.connection_rate_per_ip" => c.guards.connection_rate_per_ip.to_string(),
        "server.handshake_timeout" => d(c.guards.handshake_timeout),
        "server.max_header_bytes" => c.guards.max_header_bytes.to_string(),
        "server.subscribe_timeout" => d(c.guards.subscribe_timeout),
        "server.allowed_origins" => q(&c.guards.allowed_origins.join(",")),
        "server.diagnostic_echo" => c.guards.diagnostic_echo.to_string(),
        "server.tls_cert" => q(&c.tls.as_ref().map_or(String::new(), |t| t.cert.display().to_string())),
        "server.tls_key" => q(&c.tls.as_ref().map_or(String::new(), |t| t.key.display().to_string())),
        "auth.mode" => q(match c.auth.mode {
            AuthMode::None => "none",
            AuthMode::Token => "token",
        }),
        "auth.secret_file" => {
            q(&c.auth.secret_file.as_ref().map_or(String::new(), |p| p.display().to_string()))
        }
        "admin.listen" => q(&c.admin_listen.map_or("off".to_string(), |a| a.to_string())),
        "admin.token_file" => {
            q(&c.admin_token_file.as_ref().map_or(String::new(), |p| p.display().to_string()))
        }
        "feed.source" => q(&c.feed.source.to_string()),
        "feed.replay_speed" => q(&match c.feed.replay_speed {
            tickgate_feeds::Speed::Max => "max".to_string(),
            tickgate_feeds::Speed::Factor(f) => f.to_string(),
        }),
        "feed.replay_loop" => c.feed.replay_loop.to_string(),
        "feed.nats_prefix" => q(&c.feed.nats_prefix),
        "feed.nats_stream" => q(&c.feed.nats_stream),
        "feed.nats_wait" => d(c.feed.nats_wait),
        "feed.symbols" => c.feed.symbols.to_string(),
        "feed.rate" => c.feed.rate.to_string(),
        "feed.seed" => c.feed.seed.to_string(),
        "feed.ticks" => c.feed.ticks.unwrap_or(0).to_string(),
        "feed.burst_factor" => c.feed.burst_factor.to_string(),
        "feed.burst_every" => d(c.feed.burst_every),
        "feed.burst_len" => d(c.feed.burst_len),
        "feed.trade_percent" => c.feed.trade_percent.to_string(),
        "feed.volatility" => format!("{:?}", c.feed.volatility),
        "feed.zipf_exponent" => format!("{:?}", c.feed.zipf_exponent),
        _ => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hostile_log_filters_are_refused_quickly() {
        let started = std::time::Instant::now();
        assert!(log_filter(" a\u{c5}=info").is_err(), "non-ASCII must not reach the panicking parser");
        // Field-value regexes are off: this parses as a literal, fast.
        let _ = log_filter("[{a=(a|b)*a..............}]");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(log_filter("info,tickgate=debug").is_ok());
    }

    #[test]
    fn defaults_are_valid_and_match_the_documented_values() {
        let (c, sources) = Layers::new().build().expect("defaults must validate");
        assert_eq!(c, Config::defaults());
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.feed.rate, 20_000);
        assert_eq!(c.slow_client_timeout, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 64 * 1024);
        assert!(sources.values().all(|s| *s == Source::Default));
    }

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        let mut l = Layers::new();
        l.set("feed.rate", "4".into(), Source::Flag).unwrap();
        l.add_env([
            ("TICKGATE_FEED__RATE".to_string(), "3".to_string()),
            ("TICKGATE_FEED__SEED".to_string(), "7".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
        l.add_toml("[feed]\nrate = 2\nseed = 5\nsymbols = 9\n").unwrap();
        let (c, s) = l.build().unwrap();
        assert_eq!((c.feed.rate, s["feed.rate"]), (4, Source::Flag));
        assert_eq!((c.feed.seed, s["feed.seed"]), (7, Source::Env));
        assert_eq!((c.feed.symbols, s["feed.symbols"]), (9, Source::File));
        assert_eq!(s["feed.trade_percent"], Source::Default);
    }

    #[test]
    fn invalid_values_name_the_key_value_source_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("server.listen", "nowhere", "IP:PORT"),
            ("server.shards", "-1", "whole number"),
            ("server.shards", "1000", "between"),
            ("server.pin_cores", "0,x", "list of core numbers"),
            ("server.send_buffer_bytes", "100", "at least 4096"),
            ("server.ping_interval", "20", "missing unit"),
            ("server.ping_interval", "20parsecs", "unknown unit"),
            ("server.ring_capacity", "1000", "power of two"),
            ("feed.trade_percent", "101", "between 0 and 100"),
            ("feed.volatility", "NaN", "between"),
            ("feed.rate", "fast", "whole number"),
        ];
        for (key, value, why) in cases {
            let mut l = Layers::new();
            l.set(key, value.to_string(), Source::Flag).unwrap();
            let e = l.build().expect_err(key).to_string();
            assert!(e.contains(key) && e.contains(value) && e.contains(why) && e.contains("flag"), "{e}");
        }
    }

    #[test]
    fn cross_key_rules_are_checked() {
        let mut l = Layers::new();
        l.set("server.idle_timeout", "10s".into(), Source::Env).unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("server.idle_timeout") && e.contains("ping_interval"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_everywhere() {
        let e = Layers::new().add_toml("[feed]\nrat = 1\n").unwrap_err().to_string();
        assert!(e.contains("feed.rat") && e.contains("did you mean"), "{e}");
        let e = Layers::new().add_toml("[nope]\nx = 1\n").unwrap_err().to_string();
        assert!(e.contains("nope.x"), "{e}");
        let e = Layers::new()
            .add_env([("TICKGATE_FEED__RAET".to_string(), "1".to_string())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TICKGATE_FEED__RAET"), "{e}");
        let e = Layers::new().add_toml("[feed\n").unwrap_err().to_string();
        assert!(e.contains("config file"), "{e}");
    }

    #[test]
    fn shipped_config_file_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tickgate.toml");
        let text = std::fs::read_to_string(&path).expect("config/tickgate.toml");
        let mut l = Layers::new();
        l.add_toml(&text).expect("shipped config must parse");
        let (c, sources) = l.build().expect("shipped config must validate");
        assert_eq!(c, Config::defaults(), "shipped file must hold exactly the defaults");
        for k in KEYS {
            assert_eq!(sources[k.key], Source::File, "{} missing from config/tickgate.toml", k.key);
        }
    }

    #[test]
    fn render_round_trips_through_the_file_parser() {
        let mut l = Layers::new();
        l.set("server.pin_cores", "0,1".into(), Source::Flag).unwrap();
        l.set("feed.burst_len", "250ms".into(), Source::Flag).unwrap();
        let (c, s) = l.build().unwrap();
        let text = render(&c, &s);
        assert!(text.contains("pin_cores = \"0,1\"  # flag"), "{text}");
        let mut l2 = Layers::new();
        l2.add_toml(&text).unwrap();
        assert_eq!(l2.build().unwrap().0, c);
    }

    #[test]
    fn flags_and_env_names_are_unique_and_derived() {
        let mut flags: Vec<_> = KEYS.iter().map(KeyDef::flag).collect();
        flags.sort();
        flags.dedup();
        assert_eq!(flags.len(), KEYS.len(), "flag names must be unique");
        assert_eq!(key_def("feed.rate").unwrap().env_var(), "TICKGATE_FEED__RATE");
        assert_eq!(key_def("server.max_connections").unwrap().flag(), "max-connections");
    }
}
