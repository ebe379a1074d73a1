//! One table of the per-shard figures operators see: each with its `/stats` key, its
//! Prometheus name, its help text and how to read it from [`ShardStats`]. Both `GET /stats`
//! and `GET /metrics` are driven by [`SHARD_FIGURES`], so a new figure is one entry here
//! (plus the atomic the shard keeps for it).

use std::sync::atomic::Ordering;

use crate::shard::ShardStats;

/// Whether a figure only rises (a Prometheus counter, exported with `_total`) or moves both
/// ways (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FigureKind {
    /// Only rises.
    Counter,
    /// Moves both ways.
    Gauge,
}

/// One per-shard figure.
pub struct ShardFigure {
    /// Its key in each `shards[]` entry of `/stats`; `None` if only in `/metrics`.
    pub stats_key: Option<&'static str>,
    /// Its Prometheus name (counters get `_total`); `None` if only in `/stats`.
    pub metric: Option<&'static str>,
    /// Counter or gauge.
    pub kind: FigureKind,
    /// What it counts (the `/metrics` HELP line).
    pub help: &'static str,
    /// Reads it.
    pub read: fn(&ShardStats) -> u64,
}

const R: Ordering = Ordering::Relaxed;

/// Names of the control error codes, in `ShardStats::errors` order (`/stats` `errors`,
/// `/metrics` `tickgate_client_errors{code}`).
pub const ERROR_CODE_NAMES: [&str; crate::shard::core::ERROR_CODES] = [
    "bad_request",
    "unknown_op",
    "unknown_symbol",
    "too_many_symbols",
    "rate_limited",
    "not_entitled",
    "unauthorized",
];

macro_rules! figure {
    ($stats:expr, $metric:expr, $kind:ident, $help:literal, $read:expr) => {
        ShardFigure { stats_key: $stats, metric: $metric, kind: FigureKind::$kind, help: $help, read: $read }
    };
}

/// Every per-shard figure, in `/stats` order.
pub static SHARD_FIGURES: &[ShardFigure] = &[
    figure!(Some("clients"), Some("tickgate_connections"), Gauge, "Open WebSocket connections.", |s| {
        s.clients.load(R) as u64
    }),
    figure!(
        Some("subscriptions"),
        Some("tickgate_subscriptions"),
        Gauge,
        "(client, symbol) subscriptions.",
        |s| { s.subscriptions.load(R) as u64 }
    ),
    figure!(
        Some("pending_updates"),
        Some("tickgate_pending_updates"),
        Gauge,
        "Conflation slots holding an update not yet sent (at most one per subscription).",
        |s| s.pending_updates.load(R) as u64
    ),
    figure!(
        Some("buffered_bytes"),
        Some("tickgate_buffered_bytes"),
        Gauge,
        "Bytes buffered in the gateway for clients.",
        |s| s.buffered_bytes.load(R) as u64
    ),
    figure!(
        Some("blocked_clients"),
        Some("tickgate_blocked_clients"),
        Gauge,
        "Clients whose socket is full.",
        |s| { s.blocked_clients.load(R) as u64 }
    ),
    figure!(
        Some("ring_lag"),
        Some("tickgate_ring_lag"),
        Gauge,
        "Ring ticks published but not yet read by the shard.",
        |s| s.ring_lag.load(R)
    ),
    figure!(Some("ticks"), Some("tickgate_ticks_processed"), Counter, "Ticks read from the ring.", |s| s
        .ticks
        .load(R)),
    figure!(
        Some("delivered"),
        Some("tickgate_updates_delivered"),
        Counter,
        "Live updates written to client sockets.",
        |s| s.delivered.load(R)
    ),
    figure!(
        Some("snapshots"),
        Some("tickgate_snapshots"),
        Counter,
        "Snapshot updates sent on subscribe.",
        |s| { s.snapshots.load(R) }
    ),
    figure!(
        Some("conflated"),
        Some("tickgate_conflated_updates"),
        Counter,
        "Pending updates replaced by a newer one.",
        |s| s.conflated.load(R)
    ),
    figure!(
        Some("overruns"),
        Some("tickgate_ring_overruns"),
        Counter,
        "Times the ring lapped a shard (healed from the cache).",
        |s| s.overruns.load(R)
    ),
    figure!(
        Some("catch_ups"),
        Some("tickgate_ring_catch_ups"),
        Counter,
        "Times a shard found ticks older than 100 ms waiting and read its whole backlog before flushing.",
        |s| s.catch_ups.load(R)
    ),
    figure!(
        Some("bytes_written"),
        Some("tickgate_bytes_written"),
        Counter,
        "Bytes written to client sockets.",
        |s| { s.bytes_written.load(R) }
    ),
    figure!(
        Some("trades_sent"),
        Some("tickgate_trades_sent"),
        Counter,
        "Trades queued for clients taking them (once per client), never conflated.",
        |s| s.trades_sent.load(R)
    ),
    figure!(
        Some("books_sent"),
        Some("tickgate_books_sent"),
        Counter,
        "Order-book messages queued for clients watching books (\"depth\"), conflated like quotes.",
        |s| s.books_sent.load(R)
    ),
    figure!(
        Some("book_encodes"),
        Some("tickgate_book_encodes"),
        Counter,
        "Order-book messages encoded: once per symbol, depth and format per change, whatever the clients.",
        |s| s.book_encodes.load(R)
    ),
    figure!(
        Some("trade_gaps"),
        Some("tickgate_trade_gaps"),
        Counter,
        "Gap notices sent: trades a client could not be sent (backlog overflow or upstream loss), reported.",
        |s| s.trade_gaps.load(R)
    ),
    figure!(
        Some("trades_missed"),
        Some("tickgate_trades_missed"),
        Counter,
        "Trades reported missed in gap notices (sum of their missed counts).",
        |s| s.trades_missed.load(R)
    ),
    figure!(
        Some("trade_backlog"),
        Some("tickgate_trade_backlog"),
        Gauge,
        "Trades held in the shard's per-symbol trade logs (at most max_trade_backlog per symbol).",
        |s| s.trade_backlog.load(R) as u64
    ),
    figure!(
        Some("trade_backlog_bytes"),
        Some("tickgate_trade_backlog_bytes"),
        Gauge,
        "Heap bytes of the shard's trade logs.",
        |s| s.trade_backlog_bytes.load(R) as u64
    ),
    figure!(
        Some("bandwidth_holds"),
        Some("tickgate_bandwidth_holds"),
        Counter,
        "Flushes cut short or put off by a client's max_bandwidth.",
        |s| s.bandwidth_holds.load(R)
    ),
    figure!(
        Some("client_msgs"),
        Some("tickgate_client_messages"),
        Counter,
        "Client control messages handled.",
        |s| { s.client_msgs.load(R) }
    ),
    figure!(
        Some("json_encodes"),
        None,
        Counter,
        "JSON encodes performed (one per tick per shard at most).",
        |s| { s.json_encodes.load(R) }
    ),
    figure!(Some("binary_encodes"), None, Counter, "Binary encodes performed.", |s| s.binary_encodes.load(R)),
    figure!(Some("writes"), Some("tickgate_writes"), Counter, "write syscalls to client sockets.", |s| s
        .writes
        .load(R)),
    figure!(Some("turns"), None, Counter, "Turns of the shard loop (intake, then one flush slice).", |s| s
        .turns
        .load(R)),
    figure!(
        Some("slices"),
        Some("tickgate_flush_slices"),
        Counter,
        "Flush slices that served at least one client.",
        |s| s.slices.load(R)
    ),
    figure!(
        Some("visits"),
        Some("tickgate_flush_visits"),
        Counter,
        "Clients taken from the ready queue and flushed (divide by slices: clients per slice).",
        |s| s.visits.load(R)
    ),
    figure!(
        Some("wakeups"),
        Some("tickgate_wakeups"),
        Counter,
        "Clients woken by a tick of a symbol they were armed on.",
        |s| s.wakeups.load(R)
    ),
    figure!(
        Some("slow_consumer_closes"),
        Some("tickgate_slow_consumer_closes"),
        Counter,
        "Clients closed 1008 slow consumer.",
        |s| s.slow_consumer_closes.load(R)
    ),
    figure!(
        Some("idle_closes"),
        Some("tickgate_idle_closes"),
        Counter,
        "Clients closed 1008 idle timeout.",
        |s| { s.idle_closes.load(R) }
    ),
    figure!(
        Some("no_subscription_closes"),
        Some("tickgate_no_subscription_closes"),
        Counter,
        "Clients closed 1008 no subscription (server.subscribe_timeout).",
        |s| s.no_subscription_closes.load(R)
    ),
    figure!(
        Some("token_expired_closes"),
        Some("tickgate_token_expired_closes"),
        Counter,
        "Clients closed 1008 token expired (token auth).",
        |s| s.token_expired_closes.load(R)
    ),
    figure!(
        None,
        Some("tickgate_flush_slice_nanoseconds"),
        Counter,
        "Time spent in flush slices, ns (divide by tickgate_flush_slices_total: mean slice length).",
        |s| s.slice_ns.load(R)
    ),
    figure!(
        None,
        Some("tickgate_ready_wait_nanoseconds"),
        Counter,
        "Time flushed clients waited in the ready queue, ns (divide by visits: the revisit interval).",
        |s| s.queue_wait_ns.load(R)
    ),
    figure!(
        None,
        Some("tickgate_flush_slice_max_nanoseconds"),
        Gauge,
        "Longest flush slice in the last window (about a second), ns.",
        |s| s.window.lock().map_or(0, |w| (w.slice_us_max * 1e3) as u64)
    ),
    figure!(
        None,
        Some("tickgate_ready_wait_max_nanoseconds"),
        Gauge,
        "Longest time a client waited in the ready queue in the last window (the worst revisit \
         interval), ns.",
        |s| s.window.lock().map_or(0, |w| (w.revisit_ms_max * 1e6) as u64)
    ),
];

/// A shard's `/stats` figures, in table order, serialized as JSON object members.
pub struct StatsFigures<'a>(pub &'a ShardStats);

impl serde::Serialize for StatsFigures<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for f in SHARD_FIGURES {
            if let Some(k) = f.stats_key {
                m.serialize_entry(k, &(f.read)(self.0))?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_figure_is_shown_somewhere() {
        let mut keys: Vec<_> = SHARD_FIGURES.iter().filter_map(|f| f.stats_key).collect();
        let mut metrics: Vec<_> = SHARD_FIGURES.iter().filter_map(|f| f.metric).collect();
        let (k, m) = (keys.len(), metrics.len());
        keys.sort_unstable();
        keys.dedup();
        metrics.sort_unstable();
        metrics.dedup();
        assert_eq!((keys.len(), metrics.len()), (k, m), "duplicate names");
        for f in SHARD_FIGURES {
            assert!(f.stats_key.is_some() || f.metric.is_some(), "{}", f.help);
            assert!(f.metric.is_none_or(|m| m.starts_with("tickgate_") && !m.ends_with("_total")));
        }
    }

    #[test]
    fn stats_json_reads_each_figure() {
        let s = ShardStats::default();
        s.delivered.store(7, R);
        s.clients.store(3, R);
        let v = serde_json::to_value(StatsFigures(&s)).unwrap();
        assert_eq!(v["delivered"], 7);
        assert_eq!(v["clients"], 3);
        assert_eq!(
            v.as_object().unwrap().len(),
            SHARD_FIGURES.iter().filter(|f| f.stats_key.is_some()).count()
        );
    }
}
