//! Settings that can change while the gateway runs (`tickgate tune`, the admin listener).
//!
//! [`Live`] holds the effective [`Config`] (with each key's source) as an immutable snapshot
//! behind a version number. A change is validated exactly like start-up configuration (the
//! same key parsers and cross-key rules), applied all-or-nothing by swapping in a new
//! snapshot, logged with old and new value, and counted. Which keys may change is the key
//! table's `live` flag; readers take the value from the snapshot where they use it — a
//! connection's timeouts when it computes its next deadline, the shard limits every
//! housekeeping tick (100 ms), the feed rate once per batch through a [`Watch`] that
//! re-reads only when the version moved. Nothing on the data path takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::{self, Config, Source, Sources};
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

/// The live configuration.
pub struct Live {
    state: Mutex<(Arc<Config>, Sources)>,
    /// Bumped after each applied change (readers compare it to refresh a cached snapshot).
    version: AtomicU64,
    fd_derived_max: usize,
    log_reload: OnceLock<LogReloader>,
    /// Changes applied since start.
    pub changes: AtomicU64,
}

impl Live {
    /// Live settings starting from `config`; `fd_derived_max` is what `max_connections = 0`
    /// resolves to.
    pub fn new(config: Config, sources: Sources, fd_derived_max: usize) -> Live {
        Live {
            state: Mutex::new((Arc::new(config), sources)),
            version: AtomicU64::new(0),
            fd_derived_max,
            log_reload: OnceLock::new(),
            changes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (Arc<Config>, Sources)> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
        self.state().0.clone()
    }

    /// A cached view of the configuration that re-reads it only after a change.
    pub fn watch(self: &Arc<Self>) -> Watch {
        let version = self.version.load(Ordering::Acquire);
        Watch { live: self.clone(), version, config: self.config() }
    }

    /// Installs the function that applies `server.log_level` changes (once).
    pub fn set_log_reloader(&self, f: LogReloader) {
        let _ = self.log_reload.set(f);
    }

    /// The shard core limits now in force.
    pub fn limits(&self) -> Limits {
        let c = self.config();
        Limits {
            max_symbols: c.server.max_symbols_per_client,
            msgs_per_sec: c.server.max_client_msgs_per_sec,
            default_interval_ns: match c.server.default_max_rate {
                0 => 0,
                rate => 1_000_000_000 / u64::from(rate),
            },
            max_trade_backlog: c.server.max_trade_backlog,
            default_bandwidth: c.server.default_max_bandwidth,
            bandwidth_ceiling: c.server.max_bandwidth_ceiling,
        }
    }

    /// Connection limit now in force (`server.max_connections`, 0 resolved to what the
    /// open-file limit allows).
    pub fn max_connections(&self) -> usize {
        match self.config().server.max_connections {
            0 => self.fd_derived_max,
            n => n,
        }
    }

    /// The effective configuration and each key's source.
    pub fn snapshot(&self) -> (Config, Sources) {
        let s = self.state();
        ((*s.0).clone(), s.1.clone())
    }

    /// Validates every `(key, value)` together and, only if all are acceptable, applies them.
    ///
    /// # Errors
    /// The first refused pair: unknown key, a key that needs a restart, or an invalid value
    /// (including cross-key rules); nothing is applied then.
    pub fn apply(&self, pairs: &[(String, String)]) -> Result<Vec<Change>, Refused> {
        let mut guard = self.state();
        let (current, sources) = &mut *guard;
        let mut next = (**current).clone();
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
        config::cross_check(&next).map_err(|(key, r)| Refused { key: key.into(), reason: r.to_string() })?;
        // Values that are fine at start-up but not safe to switch to while serving.
        if next.server.max_connections > self.fd_derived_max {
            return Err(Refused {
                key: "server.max_connections".into(),
                reason: format!(
                    "{} exceeds what the open-file limit allows ({}); raise the limit and restart",
                    next.server.max_connections, self.fd_derived_max
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
            let (old, new) = (def.value_in(current), def.value_in(&next));
            sources.insert(def.key, Source::Live);
            tracing::info!(key = def.key, %old, %new, "configuration changed live");
            changes.push(Change { key: def.key, old, new });
        }
        *current = Arc::new(next);
        self.version.fetch_add(1, Ordering::Release);
        self.changes.fetch_add(changes.len() as u64, Ordering::Relaxed);
        Ok(changes)
    }
}

/// A reader's copy of the live configuration: [`Watch::get`] costs one atomic load unless a
/// change was applied since the last call.
pub struct Watch {
    live: Arc<Live>,
    version: u64,
    config: Arc<Config>,
}

impl Watch {
    /// The configuration now in force.
    pub fn get(&mut self) -> &Config {
        let v = self.live.version.load(Ordering::Acquire);
        if v != self.version {
            self.config = self.live.config();
            self.version = v;
        }
        &self.config
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
        assert_eq!(l.config().feed.rate, 5000);
        assert_eq!(l.config().server.slow_client_timeout, std::time::Duration::from_secs(2));
        assert_eq!(l.snapshot().1["feed.rate"], Source::Live);
        assert_eq!(l.changes.load(Ordering::Relaxed), 2);
        l.apply(&pairs(&[("server.default_max_rate", "4")])).unwrap();
        assert_eq!(l.limits().default_interval_ns, 250_000_000);
    }

    #[test]
    fn a_watch_sees_changes_and_only_rereads_after_one() {
        let l = Arc::new(live());
        let mut w = l.watch();
        assert_eq!(w.get().feed.rate, 20_000);
        let before = Arc::as_ptr(&w.config);
        assert_eq!(w.get().feed.rate, 20_000);
        assert_eq!(Arc::as_ptr(&w.config), before, "no change, no re-read");
        l.apply(&pairs(&[("feed.rate", "7")])).unwrap();
        assert_eq!(w.get().feed.rate, 7);
    }

    #[test]
    fn restart_only_unknown_and_invalid_are_refused_and_nothing_applies() {
        let l = live();
        let e = l.apply(&pairs(&[("feed.rate", "1"), ("server.listen", "127.0.0.1:1")])).unwrap_err();
        assert!(e.to_string().contains("server.listen") && e.reason.contains("restart"), "{e}");
        assert_eq!(l.config().feed.rate, 20_000, "all-or-nothing");
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
