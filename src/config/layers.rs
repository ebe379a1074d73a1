//! Layering: raw values from the four sources, highest precedence first — flag, environment,
//! file, default — then one validation into a [`Config`] ([`Layers::build`]), which runs
//! every key's parser and then [`cross_check`], the rules that involve more than one key
//! (the simulator's own rules included, so `config check` refuses what the feed would).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tickgate_feeds::SimField;

use super::{ADMIN_TOKEN_ENV, AUTH_SECRET_ENV, Config, ConfigError, KEYS, ValueError, key_def};

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

/// Each key's source, by key.
pub type Sources = BTreeMap<&'static str, Source>;

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
                            // The string itself, not its TOML form with quotes.
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => {
                        return Err(ConfigError::Invalid {
                            key,
                            value: other.to_string(),
                            origin: Source::File,
                            reason: ValueError::Expected("a string, number or list"),
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
    pub fn build(&self) -> Result<(Config, Sources), ConfigError> {
        let mut c = Config::default();
        let mut sources = BTreeMap::new();
        for k in KEYS {
            let (value, source) = match self.raw.get(k.key) {
                Some((v, s)) => (v.as_str(), *s),
                None => (k.default, Source::Default),
            };
            k.apply_to(&mut c, value).map_err(|reason| ConfigError::Invalid {
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

/// Rules that involve two keys, and the simulator's own rules (the same check the feed
/// runs, so `config check` refuses exactly what `serve` would).
///
/// # Errors
/// The key to blame and the reason.
pub fn cross_check(c: &Config) -> Result<(), (&'static str, ValueError)> {
    let s = &c.server;
    if s.idle_timeout <= s.ping_interval {
        return Err((
            "server.idle_timeout",
            ValueError::Rule(format!("must exceed server.ping_interval ({}ms)", s.ping_interval.as_millis())),
        ));
    }
    match (&s.tls_cert, &s.tls_key) {
        (None, Some(_)) => {
            return Err((
                "server.tls_cert",
                ValueError::Rule("server.tls_key is set: give the certificate too".into()),
            ));
        }
        (Some(_), None) => {
            return Err((
                "server.tls_key",
                ValueError::Rule("server.tls_cert is set: give the private key too".into()),
            ));
        }
        _ => {}
    }
    c.sim_config().validate().map_err(|e| {
        let key = match e.field {
            SimField::Rate => "feed.rate",
            SimField::BurstFactor => "feed.burst_factor",
            SimField::BurstEvery => "feed.burst_every",
            SimField::BurstLen => "feed.burst_len",
            SimField::TradePercent => "feed.trade_percent",
            SimField::Volatility => "feed.volatility",
            SimField::ZipfExponent => "feed.zipf_exponent",
            SimField::DepthLevels => "feed.depth_levels",
        };
        (key, ValueError::Rule(e.reason))
    })
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
