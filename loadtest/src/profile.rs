//! Named workloads (`--profile`): the client side (clients, symbols per client, duration)
//! and the feed the gateway should run with (`--symbols`, `--rate` and any other gateway
//! flags), so `scripts/bench.sh` can start the gateway to match
//! (`tickgate-loadtest --profile NAME --print-gateway-args`). Explicit flags override a
//! profile's client-side values. `docs/BENCHMARKS.md` describes them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A profile's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// 50 clients × 10 symbols, 10 s (CI).
    Smoke,
    /// 1,000 clients × 50 symbols of 5,000, feed 20,000 ticks/s, 30 s.
    Dashboard,
    /// 10,000 clients × 20 symbols of 1,000, feed 10,000 ticks/s, 30 s.
    Fanout,
    /// 18,000 clients × 5 symbols of 1,000, feed 5,000 ticks/s, 60 s.
    Connections,
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.profile().name)
    }
}

/// What a profile sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: &'static str,
    /// `--clients`.
    pub clients: usize,
    /// `--symbols-per-client`.
    pub symbols_per_client: usize,
    /// `--duration`, seconds.
    pub duration_secs: u64,
    /// The gateway's `--symbols` (size of the simulated universe).
    pub feed_symbols: usize,
    /// The gateway's `--rate` (ticks/s over all symbols).
    pub feed_rate: u64,
    /// Further gateway flags the profile needs.
    pub gateway_extra: &'static [&'static str],
    /// One line for `--help` and the docs.
    pub about: &'static str,
}

impl Profile {
    /// The gateway flags of this profile: `--symbols S --rate R`, the per-IP guards off (the
    /// generator opens up to 5,000 connections per source address at up to 2,000/s, far over
    /// the gateway's per-IP defaults of 1,000 connections and 100/s), and the extras.
    pub fn gateway_args(&self) -> Vec<String> {
        let mut v = vec![
            "--symbols".to_string(),
            self.feed_symbols.to_string(),
            "--rate".into(),
            self.feed_rate.to_string(),
            "--max-connections-per-ip".into(),
            "0".into(),
            "--connection-rate-per-ip".into(),
            "0".into(),
        ];
        v.extend(self.gateway_extra.iter().map(|s| s.to_string()));
        v
    }
}

static SMOKE: Profile = Profile {
    name: "smoke",
    clients: 50,
    symbols_per_client: 10,
    duration_secs: 10,
    feed_symbols: 1_000,
    feed_rate: 10_000,
    gateway_extra: &[],
    about: "50 clients x 10 symbols, 10 s; feed 1,000 symbols at 10,000 ticks/s (CI)",
};

static DASHBOARD: Profile = Profile {
    name: "dashboard",
    clients: 1_000,
    symbols_per_client: 50,
    duration_secs: 30,
    feed_symbols: 5_000,
    feed_rate: 20_000,
    gateway_extra: &[],
    about: "1,000 clients x 50 symbols of 5,000; feed 20,000 ticks/s; 30 s",
};

static FANOUT: Profile = Profile {
    name: "fanout",
    clients: 10_000,
    symbols_per_client: 20,
    duration_secs: 30,
    feed_symbols: 1_000,
    feed_rate: 10_000,
    gateway_extra: &[],
    about: "10,000 clients x 20 symbols of 1,000; feed 10,000 ticks/s; 30 s",
};

static CONNECTIONS: Profile = Profile {
    name: "connections",
    clients: 18_000,
    symbols_per_client: 5,
    duration_secs: 60,
    feed_symbols: 1_000,
    feed_rate: 5_000,
    gateway_extra: &["--max-connections", "19900", "--idle-timeout", "120s"],
    about: "18,000 clients x 5 symbols of 1,000; feed 5,000 ticks/s; 60 s; gateway RSS per connection",
};

impl ProfileName {
    /// Every profile, in order.
    pub const ALL: [ProfileName; 4] =
        [ProfileName::Smoke, ProfileName::Dashboard, ProfileName::Fanout, ProfileName::Connections];

    /// The profile's settings.
    pub fn profile(self) -> &'static Profile {
        match self {
            ProfileName::Smoke => &SMOKE,
            ProfileName::Dashboard => &DASHBOARD,
            ProfileName::Fanout => &FANOUT,
            ProfileName::Connections => &CONNECTIONS,
        }
    }
}

/// The `--help` text listing every profile.
pub fn help_text() -> String {
    let mut s = String::from("Profiles (explicit flags override them; the feed is the gateway's):\n");
    for p in ProfileName::ALL {
        let p = p.profile();
        s.push_str(&format!(
            "  {:<12} {}\n  {:<12} gateway: {}\n",
            p.name,
            p.about,
            "",
            p.gateway_args().join(" ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_the_issue() {
        // (profile, clients, symbols per client, duration, feed symbols, feed rate)
        let cases = [
            (ProfileName::Smoke, 50, 10, 10, 1_000, 10_000),
            (ProfileName::Dashboard, 1_000, 50, 30, 5_000, 20_000),
            (ProfileName::Fanout, 10_000, 20, 30, 1_000, 10_000),
            (ProfileName::Connections, 18_000, 5, 60, 1_000, 5_000),
        ];
        for (name, clients, k, secs, syms, rate) in cases {
            let p = name.profile();
            assert_eq!(
                (p.clients, p.symbols_per_client, p.duration_secs, p.feed_symbols, p.feed_rate),
                (clients, k, secs, syms, rate),
                "{name}"
            );
            assert_eq!(p.name, name.to_string());
        }
        let args = ProfileName::Connections.profile().gateway_args().join(" ");
        assert_eq!(
            args,
            "--symbols 1000 --rate 5000 --max-connections-per-ip 0 --connection-rate-per-ip 0 \
             --max-connections 19900 --idle-timeout 120s"
        );
    }
}
