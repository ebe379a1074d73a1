//! Settings that can change while the gateway runs (`tickgate tune`, the admin listener).
//!
//! [`Live`] holds the effective [`Config`] (with each key's source) and mirrors the live keys
//! in atomics that the feed thread, the shards and the stats collector read where they use
//! them: a timeout is read when a connection computes its next deadline, the feed rate once
//! per batch, shard limits every housekeeping tick (100 ms). Nothing on the data path takes a
//! lock. A change is validated exactly like start-up configuration (the same key parsers and
//! cross-key rules), applied all-or-nothing, logged with old and new value, and counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::{self, Config, Source};
use crate::shard::core::Limits;

/// Applies a new log filter (installed by the binary, which owns the subscriber).
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// One applied change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: &'static str,
    /// Effective value before.
    pub old: String,
    /// Effective value after.
    pub new: String,
}

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Refused {
    /// The key as given.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// The live-tunable settings.
pub struct Live {
    state: Mutex<(Config, BTreeMap<&'static str, Source>)>,
    fd_derived_max: usize,
    log_reload: OnceLock<LogReloader>,
    /// Simulated feed rate, ticks/s.
    pub feed_rate: AtomicU64,
    default_interval_ns: AtomicU64,
    msgs_per_sec: AtomicU32,
    max_symbols: AtomicUsize,
    max_connections: AtomicUsize,
    ping_interval_ms: AtomicU64,
    idle_timeout_ms: AtomicU64,
    slow_client_timeout_ms: AtomicU64,
    stats_interval_ms: AtomicU64,
    shutdown_grace_ms: AtomicU64,
    /// Changes applied since start.
    pub changes: AtomicU64,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Live {
    /// Live settings starting from `config`; `fd_derived_max` is what `max_connections = 0`
    /// resolves to.
    pub fn new(config: Config, sources: BTreeMap<&'static str, Source>, fd_derived_max: usize) -> Live {
        let live = Live {
            state: Mutex::new((config.clone(), sources)),
            fd_derived_max,
            log_reload: OnceLock::new(),
            feed_rate: AtomicU64::new(0),
            default_interval_ns: AtomicU64::new(0),
            msgs_per_sec: AtomicU32::new(0),
            max_symbols: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(0),
            ping_interval_ms: AtomicU64::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            slow_client_timeout_ms: AtomicU64::new(0),
            stats_interval_ms: AtomicU64::new(0),
            shutdown_grace_ms: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        };
        live.mirror(&config);
        live
    }

    fn mirror(&self, c: &Config) {
        let r = Ordering::Relaxed;
        self.feed_rate.store(c.feed.rate, r);
        self.default_interval_ns.store(
            match c.default_max_rate {
                0 => 0,
                rate => 1_000_000_000 / u64::from(rate),
            },
            r,
        );
        self.msgs_per_sec.store(c.max_client_msgs_per_sec, r);
        self.max_symbols.store(c.max_symbols_per_client, r);
        let max = if c.max_connections > 0 { c.max_connections } else { self.fd_derived_max };
        self.max_connections.store(max, r);
        self.ping_interval_ms.store(ms(c.ping_interval), r);
        self.idle_timeout_ms.store(ms(c.idle_timeout), r);
        self.slow_client_timeout_ms.store(ms(c.slow_client_timeout), r);
        self.stats_interval_ms.store(ms(c.stats_interval), r);
        self.shutdown_grace_ms.store(ms(c.shutdown_grace), r);
    }

    /// Installs the function that applies `server.log_level` changes (once).
    pub fn set_log_reloader(&self, f: LogReloader) {
        let _ = self.log_reload.set(f);
    }

    /// The shard core limits now in force.
    pub fn limits(&self) -> Limits {
        let r = Ordering::Relaxed;
        Limits {
            max_symbols: self.max_symbols.load(r),
            msgs_per_sec: self.msgs_per_sec.load(r),
            default_interval_ns: self.default_interval_ns.load(r),
        }
    }

    /// Connection limit now in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Server ping period.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.load(Ordering::Relaxed))
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// Slow-consumer timeout.
    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_client_timeout_ms.load(Ordering::Relaxed))
    }

    /// Summary-line period.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_millis(self.stats_interval_ms.load(Ordering::Relaxed))
    }

    /// Graceful shutdown bound.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms.load(Ordering::Relaxed))
    }

    /// The effective configuration and each key's source.
    pub fn snapshot(&self) -> (Config, BTreeMap<&'static str, Source>) {
        match self.state.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Validates every `(key, value)` together and, only if all are acceptable, applies them.
    ///
    /// # Errors
    /// The first refused pair: unknown key, a key that needs a restart, or an invalid value
    /// (including cross-key rules); nothing is applied then.
    pub fn apply(&self, pairs: &[(String, String)]) -> Result<Vec<Change>, Refused> {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (current, sources) = &mut *guard;
        let mut next = current.clone();
        let mut defs = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let refuse = |reason: String| Refused { key: key.clone(), reason };
            let def = config::key_def(key).ok_or_else(|| refuse("unknown config key".into()))?;
            if !def.live {
                return Err(refuse("needs a restart: it cannot be changed while running".into()));
            }
            def.apply_to(&mut next, value.trim()).map_err(|r| refuse(format!("{value:?}: {r}")))?;
            defs.push(def);
        }
        config::cross_check(&next).map_err(|(key, reason)| Refused { key: key.into(), reason })?;
        // Values that are fine at start-up but not safe to switch to while serving.
        if next.max_connections > self.fd_derived_max {
            return Err(Refused {
                key: "server.max_connections".into(),
                reason: format!(
                    "{} exceeds what the open-file limit allows ({}); raise the limit and restart",
                    next.max_connections, self.fd_derived_max
                ),
            });
        }
        if next.feed.rate == 0 && current.feed.rate != 0 {
            return Err(Refused {
                key: "feed.rate".into(),
                reason: "0 (unpaced) can only be set at start-up; give a rate".into(),
            });
        }
        if let Some(level) = pairs.iter().find(|(k, _)| k == "server.log_level").map(|(_, v)| v.trim())
            && let Some(reload) = self.log_reload.get()
        {
            reload(level).map_err(|reason| Refused { key: "server.log_level".into(), reason })?;
        }
        let mut changes = Vec::new();
        for def in defs {
            let old = config::effective_value(current, def.key);
            let new = config::effective_value(&next, def.key);
            sources.insert(def.key, Source::Live);
            tracing::info!(key = def.key, %old, %new, "configuration changed live");
            changes.push(Change { key: def.key, old, new });
        }
        self.mirror(&next);
        *current = next;
        self.changes.fetch_add(changes.len() as u64, Ordering::Relaxed);
        Ok(changes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Layers;

    fn live() -> Live {
        let (c, s) = Layers::new().build().unwrap();
        Live::new(c, s, 19_900)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn live_keys_apply_and_report_old_and_new() {
        let l = live();
        assert_eq!(l.max_connections(), 19_900, "0 resolves to the fd-derived limit");
        let ch = l.apply(&pairs(&[("feed.rate", "5000"), ("server.slow_client_timeout", "2s")])).unwrap();
        assert_eq!(ch[0], Change { key: "feed.rate", old: "20000".into(), new: "5000".into() });
        assert_eq!(ch[1].new, "\"2s\"");
        assert_eq!(l.feed_rate.load(Ordering::Relaxed), 5000);
        assert_eq!(l.slow_client_timeout(), Duration::from_secs(2));
        assert_eq!(l.snapshot().1["feed.rate"], Source::Live);
        assert_eq!(l.changes.load(Ordering::Relaxed), 2);
        l.apply(&pairs(&[("server.default_max_rate", "4")])).unwrap();
        assert_eq!(l.limits().default_interval_ns, 250_000_000);
    }

    #[test]
    fn restart_only_unknown_and_invalid_are_refused_and_nothing_applies() {
        let l = live();
        let e = l.apply(&pairs(&[("feed.rate", "1"), ("server.listen", "127.0.0.1:1")])).unwrap_err();
        assert!(e.to_string().contains("server.listen") && e.reason.contains("restart"), "{e}");
        assert_eq!(l.feed_rate.load(Ordering::Relaxed), 20_000, "all-or-nothing");
        let e = l.apply(&pairs(&[("feed.rat", "1")])).unwrap_err();
        assert!(e.reason.contains("unknown"), "{e}");
        let e = l.apply(&pairs(&[("feed.rate", "fast")])).unwrap_err();
        assert!(e.reason.contains("whole number"), "{e}");
        let e = l.apply(&pairs(&[("server.idle_timeout", "1s")])).unwrap_err();
        assert!(e.reason.contains("ping_interval"), "cross-key rule: {e}");
        let e = l.apply(&pairs(&[("server.max_connections", "50000")])).unwrap_err();
        assert!(e.reason.contains("open-file limit"), "{e}");
        let e = l.apply(&pairs(&[("feed.rate", "0")])).unwrap_err();
        assert!(e.reason.contains("start-up"), "{e}");
        assert_eq!(l.changes.load(Ordering::Relaxed), 0);
    }
}
