//! A shard's counters and gauges: published by the shard thread (atomics, every 100 ms),
//! read by `/stats`, `/metrics` and the stats collector.
//!
//! Besides traffic counters they describe the flush loop: slices (how long one bounded
//! stretch of writing takes, and how many clients it serves), the revisit interval (how
//! long a ready client waits in the ready queue before its flush: a tick's queueing delay in
//! the gateway), writes per second and updates per write.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::core::{CoreCounters, ERROR_CODES, ShardCore};
use super::io::IoCounters;

/// Close codes the gateway counts (index into [`ShardStats::closes`]).
pub const COUNTED_CLOSE_CODES: [u16; 8] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011];

/// A shard's counters and gauges, published by the shard and read by stats/HTTP.
#[derive(Default)]
pub struct ShardStats {
    /// Connected clients (updated on connect/disconnect: used for shard assignment).
    pub clients: AtomicUsize,
    /// Subscriptions (gauge).
    pub subscriptions: AtomicUsize,
    /// Pending conflation slots (gauge).
    pub pending_updates: AtomicUsize,
    /// Bytes buffered in the gateway for this shard's clients (gauge).
    pub buffered_bytes: AtomicUsize,
    /// Clients whose socket is full (gauge).
    pub blocked_clients: AtomicUsize,
    /// Ring ticks not yet read (gauge).
    pub ring_lag: AtomicU64,
    /// Ticks read from the ring.
    pub ticks: AtomicU64,
    /// Live updates written.
    pub delivered: AtomicU64,
    /// Snapshot updates queued.
    pub snapshots: AtomicU64,
    /// Updates conflated away.
    pub conflated: AtomicU64,
    /// Ring overruns.
    pub overruns: AtomicU64,
    /// Catch-up turns after falling more than `MAX_TICK_AGE` behind.
    pub catch_ups: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Client messages handled.
    pub client_msgs: AtomicU64,
    /// Error replies by code (bad_request, unknown_op, unknown_symbol, too_many_symbols,
    /// rate_limited).
    pub errors: [AtomicU64; ERROR_CODES],
    /// Closes sent by the server, by code (see [`COUNTED_CLOSE_CODES`]).
    pub closes: [AtomicU64; 8],
    /// Clients closed as slow consumers.
    pub slow_consumer_closes: AtomicU64,
    /// Clients closed for sending nothing.
    pub idle_closes: AtomicU64,
    /// Clients closed for never subscribing (`server.subscribe_timeout`).
    pub no_subscription_closes: AtomicU64,
    /// Clients closed because their token expired.
    pub token_expired_closes: AtomicU64,
    /// The shard's busiest symbols by updates delivered: (symbol id, updates), refreshed
    /// every second.
    pub top_symbols: std::sync::Mutex<Vec<(u32, u64)>>,
    /// `write` syscalls issued to client sockets (updates/writes shows the batching).
    pub writes: AtomicU64,
    /// Turns of the shard loop (intake, then one flush slice).
    pub turns: AtomicU64,
    /// Flush slices that served at least one client.
    pub slices: AtomicU64,
    /// Time spent in flush slices, ns.
    pub slice_ns: AtomicU64,
    /// Clients taken from the ready queue and flushed.
    pub visits: AtomicU64,
    /// Sum of the time those clients waited in the ready queue, ns.
    pub queue_wait_ns: AtomicU64,
    /// Clients woken by ticks.
    pub wakeups: AtomicU64,
    /// The flush loop over the last window (about a second), published by housekeeping.
    pub window: std::sync::Mutex<FlushWindow>,
    /// JSON encodes performed.
    pub json_encodes: AtomicU64,
    /// Binary encodes performed.
    pub binary_encodes: AtomicU64,
    /// Trades queued for clients (once per client taking them).
    pub trades_sent: AtomicU64,
    /// Order-book messages queued for clients.
    pub books_sent: AtomicU64,
    /// Order-book messages encoded (once per symbol, depth and format per change).
    pub book_encodes: AtomicU64,
    /// Gap notices sent.
    pub trade_gaps: AtomicU64,
    /// Trades reported missed in gap notices.
    pub trades_missed: AtomicU64,
    /// Trades held in the shard's trade logs (gauge).
    pub trade_backlog: AtomicUsize,
    /// Heap bytes of the trade logs (gauge).
    pub trade_backlog_bytes: AtomicUsize,
    /// Flushes cut short or put off by a client's bandwidth cap.
    pub bandwidth_holds: AtomicU64,
    /// The shard's clients that were handed the most bytes, refreshed every second.
    pub top_clients: std::sync::Mutex<Vec<TopClient>>,
}

/// One of a shard's busiest clients by bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopClient {
    /// Its address (`ip:port`, or the proxy's address behind one).
    pub peer: String,
    /// Bytes handed to its socket since it connected.
    pub bytes: u64,
    /// The bandwidth cap in force, bytes/s (0: none).
    pub max_bandwidth: u64,
}

impl ShardStats {
    pub(crate) fn publish(&self, core: &ShardCore, lag: u64, io: &IoCounters) {
        let c: &CoreCounters = &core.counters;
        self.writes.store(io.writes.get(), Ordering::Relaxed);
        self.turns.store(io.turns.get(), Ordering::Relaxed);
        self.slices.store(io.slices.get(), Ordering::Relaxed);
        self.slice_ns.store(io.slice_ns.get(), Ordering::Relaxed);
        self.visits.store(c.visits, Ordering::Relaxed);
        self.queue_wait_ns.store(c.queue_wait_ns, Ordering::Relaxed);
        self.wakeups.store(c.wakeups, Ordering::Relaxed);
        let g = core.gauges();
        let r = Ordering::Relaxed;
        self.subscriptions.store(g.subscriptions, r);
        self.pending_updates.store(g.pending_updates, r);
        self.buffered_bytes.store(g.buffered_bytes, r);
        self.blocked_clients.store(g.blocked_clients, r);
        self.ring_lag.store(lag, r);
        self.ticks.store(c.ticks, r);
        self.delivered.store(c.delivered, r);
        self.snapshots.store(c.snapshots, r);
        self.conflated.store(c.conflated, r);
        self.overruns.store(c.overruns, r);
        self.catch_ups.store(c.catch_ups, r);
        self.bytes_written.store(c.bytes_written, r);
        self.client_msgs.store(c.client_msgs, r);
        for (a, v) in self.errors.iter().zip(c.errors) {
            a.store(v, r);
        }
        let (j, b) = core.encodes();
        self.json_encodes.store(j, r);
        self.binary_encodes.store(b, r);
        self.trades_sent.store(c.trades_sent, r);
        self.books_sent.store(c.books_sent, r);
        self.book_encodes.store(core.book_encodes(), r);
        self.trade_gaps.store(c.trade_gaps, r);
        self.trades_missed.store(c.trades_missed, r);
        self.bandwidth_holds.store(c.bandwidth_holds, r);
        self.trade_backlog.store(g.trade_backlog, r);
        self.trade_backlog_bytes.store(g.trade_backlog_bytes, r);
    }

    pub(crate) fn count_close(&self, code: u16, reason: &str) {
        if let Some(i) = COUNTED_CLOSE_CODES.iter().position(|c| *c == code) {
            self.closes[i].fetch_add(1, Ordering::Relaxed);
        }
        match reason {
            super::timers::SLOW_CONSUMER => self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed),
            super::timers::IDLE_TIMEOUT => self.idle_closes.fetch_add(1, Ordering::Relaxed),
            super::timers::NO_SUBSCRIPTION => self.no_subscription_closes.fetch_add(1, Ordering::Relaxed),
            super::timers::TOKEN_EXPIRED => self.token_expired_closes.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// Cumulative flush-loop counters at one instant (the inputs of a [`FlushWindow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushTotals {
    /// When, ns.
    pub at_ns: u64,
    /// Writes to client sockets.
    pub writes: u64,
    /// Live updates fully written.
    pub delivered: u64,
    /// Flush slices.
    pub slices: u64,
    /// Time in flush slices, ns.
    pub slice_ns: u64,
    /// Clients flushed.
    pub visits: u64,
    /// Their total wait in the ready queue, ns.
    pub queue_wait_ns: u64,
}

/// The flush loop over one window: what `/stats` shows per shard under `flush`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct FlushWindow {
    /// Length of the window, seconds.
    pub window_s: f64,
    /// Writes to client sockets per second.
    pub writes_per_sec: f64,
    /// Live updates per write (how much each write batches).
    pub updates_per_write: f64,
    /// Mean length of a flush slice, µs.
    pub slice_us_avg: f64,
    /// Longest flush slice, µs.
    pub slice_us_max: f64,
    /// Clients flushed per slice, mean.
    pub clients_per_slice: f64,
    /// Mean time a ready client waited in the ready queue before its flush (the revisit
    /// interval: a tick's queueing delay inside the gateway), ms.
    pub revisit_ms_avg: f64,
    /// Longest such wait, ms.
    pub revisit_ms_max: f64,
}

impl FlushWindow {
    /// The window between two readings of the totals, with the maxima seen in it.
    pub fn between(a: &FlushTotals, b: &FlushTotals, slice_max_ns: u64, wait_max_ns: u64) -> FlushWindow {
        let secs = b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9;
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        let ratio = |n: f64, m: f64| if m > 0.0 { n / m } else { 0.0 };
        let (writes, slices, visits) = (d(a.writes, b.writes), d(a.slices, b.slices), d(a.visits, b.visits));
        FlushWindow {
            window_s: secs,
            writes_per_sec: ratio(writes, secs),
            updates_per_write: ratio(d(a.delivered, b.delivered), writes),
            slice_us_avg: ratio(d(a.slice_ns, b.slice_ns), slices) / 1e3,
            slice_us_max: slice_max_ns as f64 / 1e3,
            clients_per_slice: ratio(visits, slices),
            revisit_ms_avg: ratio(d(a.queue_wait_ns, b.queue_wait_ns), visits) / 1e6,
            revisit_ms_max: wait_max_ns as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_rates_and_means_of_the_deltas() {
        let a = FlushTotals { at_ns: 1_000_000_000, writes: 100, delivered: 1_000, ..FlushTotals::default() };
        let b = FlushTotals {
            at_ns: 3_000_000_000,
            writes: 300,
            delivered: 3_000,
            slices: 10,
            slice_ns: 2_000_000,
            visits: 200,
            queue_wait_ns: 400_000_000,
        };
        let w = FlushWindow::between(&a, &b, 900_000, 5_000_000);
        assert_eq!(w.window_s, 2.0);
        assert_eq!(w.writes_per_sec, 100.0);
        assert_eq!(w.updates_per_write, 10.0);
        assert_eq!(w.slice_us_avg, 200.0);
        assert_eq!(w.slice_us_max, 900.0);
        assert_eq!(w.clients_per_slice, 20.0);
        assert_eq!(w.revisit_ms_avg, 2.0);
        assert_eq!(w.revisit_ms_max, 5.0);
        let idle = FlushWindow::between(&b, &b, 0, 0);
        assert_eq!(idle.updates_per_write, 0.0, "no division by zero");
    }
}
