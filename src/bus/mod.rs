//! The NATS feed bus: one feed publisher, any number of gateways.
//!
//! ```text
//! tickgate feed --publish nats://..   ──►  NATS  ──►  tickgate serve --feed nats://..  (× N)
//!   (any FeedSource; stamps, numbers)      │  core subjects <prefix>.<SYMBOL>: live ticks
//!                                          └─ JetStream stream (one message per subject):
//!                                             the latest tick of every symbol + the universe
//! ```
//!
//! - [`wire`]: the payloads: a tick (version byte + the compact codec of
//!   `tickgate_feeds::codec`), a symbol's order-book top (on `<prefix>.$book.<SYMBOL>`, the
//!   whole top each time, so JetStream's last one is a snapshot) and the universe (JSON, on
//!   `<prefix>.$universe`).
//! - [`publish`]: `tickgate feed`: drives a source, publishes every tick, keeps JetStream's
//!   last values, and republishes the latest tick of every symbol after a reconnect.
//! - [`subscribe`]: [`NatsSource`], the gateway side: takes the universe from JetStream, warms
//!   the last-value cache from it, follows live ticks, and reports the bus going down and up.
//!
//! Per-symbol `seq` orders everything: the gateway's feed thread drops a tick that is not newer
//! than the one it holds, so warm-up and live ticks may interleave freely, and duplicates
//! (a republish after a reconnect) are harmless. A restarted publisher continues each
//! symbol's numbering from JetStream's last value.

pub mod publish;
pub mod subscribe;
pub mod wire;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use hdrhistogram::Histogram;

pub use subscribe::NatsSource;

use crate::config::Config;

/// Bus settings, from the `feed.nats_*` keys.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Subject prefix (`ticks` → `ticks.AAPL`).
    pub prefix: String,
    /// JetStream stream name.
    pub stream: String,
    /// How long to wait at start for the server (and, for a gateway, the universe).
    pub wait: Duration,
    /// A gateway subscribes only to the symbols its clients hold.
    pub interest: bool,
    /// How long such a subscription outlives its last client.
    pub linger: Duration,
    /// Order-book levels a side a publisher sends (`server.max_depth`).
    pub book_depth: usize,
}

impl From<&Config> for BusConfig {
    fn from(c: &Config) -> Self {
        BusConfig {
            prefix: c.feed.nats_prefix.clone(),
            stream: c.feed.nats_stream.clone(),
            wait: c.feed.nats_wait,
            interest: c.feed.nats_interest == crate::config::NatsInterest::Subscribed,
            linger: c.feed.nats_linger,
            book_depth: c.server.max_depth,
        }
    }
}

impl BusConfig {
    /// The subject of `symbol`'s ticks.
    pub fn subject(&self, symbol: &str) -> String {
        format!("{}.{symbol}", self.prefix)
    }

    /// The subject of `symbol`'s order book.
    pub fn book_subject(&self, symbol: &str) -> String {
        format!("{}.$book.{symbol}", self.prefix)
    }

    /// The symbol a book subject names, if it is one of ours.
    pub fn book_symbol_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".$book.")
    }

    /// The subject on which a publisher whose finite feed ended says so (not stored).
    pub fn end_subject(&self) -> String {
        format!("{}.$end", self.prefix)
    }

    /// The subject holding the universe.
    pub fn universe_subject(&self) -> String {
        format!("{}.$universe", self.prefix)
    }

    /// The symbol a tick subject names, if it is one of ours.
    pub fn symbol_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(self.prefix.as_str())?.strip_prefix('.').filter(|s| !s.starts_with('$'))
    }
}

/// Reconnect delay after `attempts` failed attempts: 100 ms doubling to 5 s.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let exp = attempts.min(6) as u32;
    Duration::from_millis(100u64.saturating_mul(1 << exp)).min(Duration::from_secs(5))
}

/// Connects to `url` as `name`, retrying with [`reconnect_delay`] until `deadline`; NATS
/// connection events (disconnected, connected, ...) are sent to `events` from then on.
///
/// # Errors
/// If no connection succeeds before `deadline`.
pub async fn connect(
    url: &str,
    name: &str,
    events: tokio::sync::mpsc::UnboundedSender<async_nats::Event>,
    deadline: std::time::Instant,
) -> anyhow::Result<async_nats::Client> {
    let mut attempt = 0;
    loop {
        let ev = events.clone();
        let opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |e| {
                let ev = ev.clone();
                async move {
                    let _ = ev.send(e);
                }
            });
        match opts.connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if std::time::Instant::now() + reconnect_delay(attempt) < deadline => {
                if attempt == 0 {
                    tracing::warn!(%url, error = %e, "NATS not reachable yet; retrying");
                }
                tokio::time::sleep(reconnect_delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(anyhow::anyhow!("connecting to {url}: {e}")),
        }
    }
}

/// Counters of a gateway's NATS subscription (for `/stats` and `/metrics`).
#[derive(Debug)]
pub struct BusStats {
    /// Connected to NATS now.
    pub connected: AtomicBool,
    /// Times the connection was lost.
    pub disconnects: AtomicU64,
    /// Times it came back.
    pub reconnects: AtomicU64,
    /// Tick messages received (live and warm-up).
    pub received: AtomicU64,
    /// Payload bytes of the live tick messages received.
    pub received_bytes: AtomicU64,
    /// Warm-up ticks read from JetStream.
    pub warmed: AtomicU64,
    /// Messages that could not be decoded, or named a symbol outside the universe.
    pub rejected: AtomicU64,
    /// Publisher stamp → gateway feed thread pickup, ns (merged in about once a second).
    pub hop: Mutex<Histogram<u64>>,
    /// Subject subscriptions held now (1 with `feed.nats_interest = all`).
    pub subscriptions: AtomicU64,
    /// Symbol subscriptions opened (interest mode).
    pub subscribes: AtomicU64,
    /// Symbol subscriptions closed after their linger (interest mode).
    pub unsubscribes: AtomicU64,
}

impl Default for BusStats {
    fn default() -> Self {
        BusStats {
            connected: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            hop: Mutex::new(crate::stats::latency_histogram()),
            subscriptions: AtomicU64::new(0),
            subscribes: AtomicU64::new(0),
            unsubscribes: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_to_symbols_and_back() {
        let c = BusConfig {
            prefix: "md.us".into(),
            stream: "T".into(),
            wait: Duration::ZERO,
            interest: false,
            linger: Duration::ZERO,
            book_depth: 5,
        };
        assert_eq!(c.subject("BRK.B"), "md.us.BRK.B");
        assert_eq!(c.book_subject("BRK.B"), "md.us.$book.BRK.B");
        assert_eq!(c.book_symbol_of("md.us.$book.BRK.B"), Some("BRK.B"));
        assert_eq!(c.symbol_of(&c.book_subject("AAPL")), None, "a book subject is not a tick subject");
        assert_eq!(c.book_symbol_of("md.us.AAPL"), None);
        assert_eq!(c.symbol_of("md.us.BRK.B"), Some("BRK.B"));
        assert_eq!(c.symbol_of(&c.universe_subject()), None);
        assert_eq!(c.symbol_of("md.usX.AAPL"), None);
        assert_eq!(c.symbol_of("other.AAPL"), None);
    }

    #[test]
    fn reconnect_delays_grow_and_cap() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(100));
        assert_eq!(reconnect_delay(1), Duration::from_millis(200));
        assert_eq!(reconnect_delay(100), Duration::from_secs(5));
    }
}
