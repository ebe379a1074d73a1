//! Configuration: one table of keys, four sources, one validated [`Config`].
//!
//! Every setting is a key in [`KEYS`] (`section.name`), with its type, default, unit and
//! what it bounds. Values are layered with this precedence, highest first:
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
//!
//! By concern:
//! - [`keys`]: the table — each key's section, name, type, default, [`Kind`](value::Kind),
//!   live or restart, and doc — which also declares the [`Config`] structs (`c.feed.rate` is
//!   `[feed] rate` is `TICKGATE_FEED__RATE`);
//! - [`value`]: how each sort of value is parsed and rendered;
//! - [`types`]: the enums and pairs some keys hold;
//! - [`layers`]: the sources, their precedence, [`Layers::build`] and [`cross_check`];
//! - [`render`](render()): the effective configuration as TOML;
//! - [`error`]: [`ValueError`] and [`ConfigError`].

pub mod error;
pub mod keys;
pub mod layers;
mod render;
pub mod types;
pub mod value;

pub use error::{ConfigError, ValueError};
pub use keys::{AdminConfig, AuthConfig, Config, FeedConfig, KEYS, KeyDef, ServerConfig, key_def};
pub use layers::{Layers, Source, Sources, cross_check};
pub use render::render;
pub use types::{AuthMode, FeedSpec, LogFormat, NatsInterest, PinCores, TlsFiles};
pub use value::{log_filter, parse_duration};

/// Environment variable that may hold the token-signing secret (never a flag).
pub const AUTH_SECRET_ENV: &str = "TICKGATE_AUTH_SECRET";

/// Environment variable that may hold the admin token (never a flag, never printed).
pub const ADMIN_TOKEN_ENV: &str = "TICKGATE_ADMIN_TOKEN";

impl Config {
    /// The simulator settings this configuration asks for.
    pub fn sim_config(&self) -> tickgate_feeds::SimConfig {
        let f = &self.feed;
        tickgate_feeds::SimConfig {
            seed: f.seed,
            rate: f.rate,
            burst_factor: f.burst_factor,
            burst_every_ms: f.burst_every.as_millis() as u64,
            burst_len_ms: f.burst_len.as_millis() as u64,
            trade_percent: f.trade_percent,
            volatility: f.volatility,
            zipf_exponent: f.zipf_exponent,
            depth_levels: f.depth_levels,
        }
    }

    /// The TLS certificate and key, if both are set ([`cross_check`] refuses one alone).
    pub fn tls(&self) -> Option<TlsFiles> {
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

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
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.feed.rate, 20_000);
        assert_eq!(c.server.slow_client_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_message_bytes, 64 * 1024);
        assert!(sources.values().all(|s| *s == Source::Default));
    }

    #[test]
    fn toml_lists_of_strings_are_their_strings() {
        let mut l = Layers::new();
        l.add_toml(
            "[server]\nallowed_origins = [\"https://a.example\", \"https://b.example\"]\n\
             trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n[auth]\naudience = [\"tickgate\", \"api\"]\n",
        )
        .unwrap();
        let (c, _) = l.build().unwrap();
        assert_eq!(c.server.allowed_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(c.server.trusted_proxies, ["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(c.auth.audience, ["tickgate", "api"]);
        let mut l = Layers::new();
        l.add_toml("[server]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("server.trusted_proxies") && e.contains("host bits"), "{e}");
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
        assert_eq!(c, Config::default(), "shipped file must hold exactly the defaults");
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
