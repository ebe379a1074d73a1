//! Per-client-IP admission at the WebSocket upgrade: a cap on concurrent connections and a
//! token-bucket limit on new connections per second. Plain deterministic logic (the clock is
//! passed in); the HTTP layer turns a refusal into `429 Too Many Requests` with
//! `Retry-After`.
//!
//! Memory is bounded: an IP's entry is dropped once it holds no connection and its bucket
//! is full again (swept every [`SWEEP_EVERY`] admissions), so addresses that came and went
//! leave nothing behind. While many addresses are active the map holds one small entry each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Admissions between sweeps of idle entries.
pub const SWEEP_EVERY: u64 = 1024;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The IP already holds `max` connections.
    TooManyConnections {
        /// The limit.
        max: u32,
    },
    /// The IP opened connections faster than the rate allows; retry after this many seconds.
    RateLimited {
        /// Whole seconds until a token is available (at least 1).
        retry_after_secs: u64,
    },
}

#[derive(Debug)]
struct Entry {
    conns: u32,
    /// Tokens × 10^9 (a token per connection), refilled continuously.
    tokens_e9: u64,
    at_ns: u64,
}

#[derive(Debug, Default)]
struct Table {
    ips: HashMap<IpAddr, Entry>,
    admissions: u64,
}

/// The per-IP limits and their state, shared by the HTTP handlers.
#[derive(Debug)]
pub struct IpGuards {
    max_conns: u32,
    rate: u32,
    table: Arc<Mutex<Table>>,
}

/// Holds one connection of an IP; releases it when dropped.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    table: Arc<Mutex<Table>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock()
            && let Some(e) = t.ips.get_mut(&self.ip)
        {
            e.conns = e.conns.saturating_sub(1);
        }
    }
}

impl IpGuards {
    /// Limits: `max_conns` concurrent connections and `rate` new connections per second per
    /// IP (0 = no limit for either).
    pub fn new(max_conns: u32, rate: u32) -> Self {
        IpGuards { max_conns, rate, table: Arc::default() }
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.max_conns > 0 || self.rate > 0
    }

    /// Admits one new connection from `ip` at `now_ns`, or says why not. A refused attempt
    /// costs no token (a client retrying after `Retry-After` gets in).
    ///
    /// # Errors
    /// The refusal.
    pub fn admit(&self, ip: IpAddr, now_ns: u64) -> Result<Option<IpSlot>, Refusal> {
        if !self.enabled() {
            return Ok(None);
        }
        let Ok(mut t) = self.table.lock() else { return Ok(None) };
        t.admissions += 1;
        if t.admissions.is_multiple_of(SWEEP_EVERY) {
            let rate = self.rate;
            t.ips.retain(|_, e| e.conns > 0 || (rate > 0 && refill(e, rate, now_ns) < full(rate)));
        }
        let rate = self.rate;
        let e = t.ips.entry(ip).or_insert(Entry { conns: 0, tokens_e9: full(rate), at_ns: now_ns });
        if self.max_conns > 0 && e.conns >= self.max_conns {
            return Err(Refusal::TooManyConnections { max: self.max_conns });
        }
        if rate > 0 {
            let tokens = refill(e, rate, now_ns);
            if tokens < 1_000_000_000 {
                // Time until one whole token: (1e9 - tokens) / rate ns, rounded up to seconds.
                let wait_ns = (1_000_000_000 - tokens).div_ceil(u64::from(rate));
                return Err(Refusal::RateLimited {
                    retry_after_secs: wait_ns.div_ceil(1_000_000_000).max(1),
                });
            }
            e.tokens_e9 = tokens - 1_000_000_000;
        }
        e.conns += 1;
        Ok(Some(IpSlot { ip, table: self.table.clone() }))
    }

    /// IPs with an entry (for tests and stats).
    pub fn tracked(&self) -> usize {
        self.table.lock().map_or(0, |t| t.ips.len())
    }
}

fn full(rate: u32) -> u64 {
    u64::from(rate) * 1_000_000_000
}

/// Refills the bucket to `now_ns` and returns the tokens (× 10^9).
fn refill(e: &mut Entry, rate: u32, now_ns: u64) -> u64 {
    let elapsed = now_ns.saturating_sub(e.at_ns);
    e.tokens_e9 = e.tokens_e9.saturating_add(elapsed.saturating_mul(u64::from(rate))).min(full(rate));
    e.at_ns = now_ns.max(e.at_ns);
    e.tokens_e9
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn concurrent_connections_are_capped_per_ip_and_released_on_drop() {
        let g = IpGuards::new(2, 0);
        let a = g.admit(ip(1), 0).unwrap();
        let _b = g.admit(ip(1), 0).unwrap();
        assert_eq!(g.admit(ip(1), 0).unwrap_err(), Refusal::TooManyConnections { max: 2 });
        assert!(g.admit(ip(2), 0).is_ok(), "another IP is unaffected");
        drop(a);
        assert!(g.admit(ip(1), 0).is_ok());
    }

    #[test]
    fn the_rate_is_a_token_bucket_with_a_burst_of_the_rate() {
        let g = IpGuards::new(0, 10);
        let slots: Vec<_> = (0..10).map(|_| g.admit(ip(1), 0).unwrap()).collect();
        assert_eq!(g.admit(ip(1), 0).unwrap_err(), Refusal::RateLimited { retry_after_secs: 1 });
        // One token comes back every 100 ms, whether or not connections closed.
        drop(slots);
        assert!(g.admit(ip(1), 50_000_000).is_err());
        assert!(g.admit(ip(1), 100_000_000).is_ok());
        assert!(g.admit(ip(1), 100_000_000).is_err());
        // A refused attempt costs nothing: after a second the whole burst is back.
        for _ in 0..10 {
            g.admit(ip(1), 1_100_000_000).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let g = IpGuards::new(0, 1);
        g.admit(ip(1), 0).unwrap();
        assert_eq!(g.admit(ip(1), 1).unwrap_err(), Refusal::RateLimited { retry_after_secs: 1 });
        let slow = IpGuards::new(0, 1);
        slow.admit(ip(1), 0).unwrap();
        assert!(slow.admit(ip(1), 999_999_999).is_err());
        assert!(slow.admit(ip(1), 1_000_000_000).is_ok());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let g = IpGuards::new(5, 1000);
        for i in 0..SWEEP_EVERY {
            let _ = g.admit(IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), 0);
        }
        // All those slots were dropped at once; a second later every bucket is full.
        let held = g.admit(ip(1), 2_000_000_000).unwrap();
        for _ in 0..SWEEP_EVERY {
            let _ = g.admit(ip(2), 2_000_000_000);
        }
        assert!(g.tracked() <= 2, "{} entries kept", g.tracked());
        drop(held);
    }

    #[test]
    fn no_limits_means_no_state() {
        let g = IpGuards::new(0, 0);
        assert!(g.admit(ip(1), 0).unwrap().is_none());
        assert_eq!(g.tracked(), 0);
    }
}
