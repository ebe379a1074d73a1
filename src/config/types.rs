//! The typed values of keys that are more than a number or a string: core pinning, log
//! format, auth mode, the feed source, and the TLS pair. Each reads (`FromStr`) and writes
//! (`Display`) the same text, which is what the key table and `config print` rely on.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::ValueError;

/// How the feed thread and shard threads are pinned to cores (`server.pin_cores`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinCores {
    /// Feed thread on the first allowed core, shards on the following ones (wrapping).
    Auto,
    /// No pinning.
    Off,
    /// Explicit cores: the first for the feed thread, the rest for shards (wrapping).
    List(Vec<usize>),
}

impl FromStr for PinCores {
    type Err = ValueError;
    fn from_str(v: &str) -> Result<Self, ValueError> {
        Ok(match v {
            "auto" => PinCores::Auto,
            "off" => PinCores::Off,
            list => PinCores::List(
                list.split(',')
                    .map(|p| p.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|l| !l.is_empty())
                    .ok_or(ValueError::Expected("auto, off, or a comma-separated list of core numbers"))?,
            ),
        })
    }
}

impl fmt::Display for PinCores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinCores::Auto => f.write_str("auto"),
            PinCores::Off => f.write_str("off"),
            PinCores::List(l) => {
                f.write_str(&l.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// Log line format (`server.log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = ValueError;
    fn from_str(v: &str) -> Result<Self, ValueError> {
        match v {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(ValueError::Expected("pretty or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        })
    }
}

/// Which ticks a gateway on a NATS feed takes from the bus (`feed.nats_interest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsInterest {
    /// Every symbol (`<prefix>.>`): one bus subscription, every tick.
    All,
    /// Only the symbols its clients hold: one bus subscription per held symbol.
    Subscribed,
}

impl FromStr for NatsInterest {
    type Err = ValueError;
    fn from_str(v: &str) -> Result<Self, ValueError> {
        match v {
            "all" => Ok(NatsInterest::All),
            "subscribed" => Ok(NatsInterest::Subscribed),
            _ => Err(ValueError::Expected("all or subscribed")),
        }
    }
}

impl fmt::Display for NatsInterest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatsInterest::All => "all",
            NatsInterest::Subscribed => "subscribed",
        })
    }
}

/// How clients authenticate (`auth.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may connect and subscribe to anything.
    None,
    /// An HS256 JWT with `sub`, `exp` and `symbols` is required at the handshake.
    Token,
}

impl FromStr for AuthMode {
    type Err = ValueError;
    fn from_str(v: &str) -> Result<Self, ValueError> {
        match v.trim() {
            "none" => Ok(AuthMode::None),
            "token" => Ok(AuthMode::Token),
            _ => Err(ValueError::Expected("none or token")),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
        })
    }
}

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

impl FromStr for FeedSpec {
    type Err = ValueError;
    fn from_str(v: &str) -> Result<Self, ValueError> {
        let v = v.trim();
        if v == "sim" {
            return Ok(FeedSpec::Sim);
        }
        if let Some(list) = v.strip_prefix("replay:") {
            let paths: Vec<PathBuf> =
                list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
            if paths.is_empty() {
                return Err(ValueError::Rule(
                    "replay: needs at least one capture file, e.g. replay:btcusdt.gz".into(),
                ));
            }
            return Ok(FeedSpec::Replay(paths));
        }
        if let Some(path) = v.strip_prefix("ticks:") {
            if path.trim().is_empty() {
                return Err(ValueError::Rule(
                    "ticks: needs a file, e.g. ticks:feeds/fixtures/sim-20k.ticks".into(),
                ));
            }
            return Ok(FeedSpec::Ticks(PathBuf::from(path.trim())));
        }
        if let Some(rest) = v.strip_prefix("nats://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains(['/', ' ']) {
                return Err(ValueError::Expected("nats://HOST:PORT"));
            }
            return Ok(FeedSpec::Nats(v.trim_end_matches('/').to_string()));
        }
        Err(ValueError::Expected("sim, replay:PATH[,PATH...], ticks:FILE or nats://HOST:PORT"))
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

/// PEM files of the TLS certificate chain and private key (`server.tls_cert`,
/// `server.tls_key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}
