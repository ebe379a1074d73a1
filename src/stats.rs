//! Latency histograms and the periodic summary, off the hot path.
//!
//! Each shard records ingest → write-complete latency into its own plain `Histogram` without
//! locks and, about once a second, swaps it for an empty one and sends the full one here over
//! a crossbeam channel. The collector merges them per shard (`add`) into a window (the
//! current `stats_interval`) and a running total, and logs one summary line per interval:
//! clients, updates/s, p50/p99/p99.9/max, conflated updates, ring overruns — every figure
//! but `clients` over that interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::feed::FeedStats;
use crate::shard::ShardStats;

/// Largest latency the histograms record (60 s); larger values are clamped.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// A fresh latency histogram: 1 ns to 60 s, 3 significant figures (about 216 KiB). The one
/// shape every latency histogram has — the shards', the collector's, the bus hop's, and the
/// load generator's — so any two can be merged.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid; fall back to an auto-resizing one anyway.
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfigs is valid"));
        h.auto(true);
        h
    })
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
}

impl Percentiles {
    /// Reads percentiles off a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Counter values at one instant (for rates).
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: Option<Instant>,
    delivered: u64,
    ticks: u64,
    bytes: u64,
    conflated: u64,
    overruns: u64,
}

/// The collector's state: per-shard windows and totals.
pub struct Collector {
    rx: crossbeam_channel::Receiver<(usize, Histogram<u64>)>,
    window: Vec<Histogram<u64>>,
    total: Vec<Histogram<u64>>,
    last: Sample,
    /// Percentiles of the last completed window, all shards merged.
    pub last_window: Percentiles,
    /// Percentiles of the last completed window, per shard.
    pub last_window_shards: Vec<Percentiles>,
    /// Delivered updates/s over the last completed window.
    pub last_rate: f64,
    /// Feed ticks/s over the last completed window.
    pub last_feed_rate: f64,
    /// Bytes/s written over the last completed window.
    pub last_bytes_rate: f64,
}

impl Collector {
    /// A collector for `shards` shards, receiving histograms on `rx`.
    pub fn new(shards: usize, rx: crossbeam_channel::Receiver<(usize, Histogram<u64>)>) -> Collector {
        Collector {
            rx,
            window: (0..shards).map(|_| latency_histogram()).collect(),
            total: (0..shards).map(|_| latency_histogram()).collect(),
            last: Sample::default(),
            last_window: Percentiles::default(),
            last_window_shards: vec![Percentiles::default(); shards],
            last_rate: 0.0,
            last_feed_rate: 0.0,
            last_bytes_rate: 0.0,
        }
    }

    /// Merges every histogram the shards have sent so far.
    pub fn drain(&mut self) {
        while let Ok((id, h)) = self.rx.try_recv() {
            if let (Some(w), Some(t)) = (self.window.get_mut(id), self.total.get_mut(id)) {
                let _ = w.add(&h);
                let _ = t.add(&h);
            }
        }
    }

    /// Per-shard percentiles since start.
    pub fn shard_totals(&self) -> Vec<Percentiles> {
        self.total.iter().map(Percentiles::of).collect()
    }

    /// Per-shard histograms since start (copies, for exposition).
    pub fn shard_histograms(&self) -> Vec<Histogram<u64>> {
        self.total.clone()
    }

    /// All shards merged, since start.
    pub fn merged_total(&self) -> Percentiles {
        Percentiles::of(&merge(&self.total))
    }

    /// Closes the current window: computes rates and percentiles, resets the window, and
    /// returns the summary line.
    pub fn roll(&mut self, shards: &[Arc<ShardStats>], feed: &FeedStats, connections: usize) -> String {
        self.drain();
        let merged = merge(&self.window);
        self.last_window = Percentiles::of(&merged);
        self.last_window_shards = self.window.iter().map(Percentiles::of).collect();
        for w in &mut self.window {
            w.reset();
        }
        let now = Instant::now();
        let r = Ordering::Relaxed;
        let cur = Sample {
            at: Some(now),
            delivered: shards.iter().map(|s| s.delivered.load(r)).sum(),
            ticks: feed.ticks.load(r),
            bytes: shards.iter().map(|s| s.bytes_written.load(r)).sum(),
            conflated: shards.iter().map(|s| s.conflated.load(r)).sum(),
            overruns: shards.iter().map(|s| s.overruns.load(r)).sum(),
        };
        let secs = self.last.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        if secs > 0.0 {
            self.last_rate = (cur.delivered - self.last.delivered) as f64 / secs;
            self.last_feed_rate = (cur.ticks - self.last.ticks) as f64 / secs;
            self.last_bytes_rate = (cur.bytes - self.last.bytes) as f64 / secs;
        }
        let conflated = cur.conflated - self.last.conflated;
        let overruns = cur.overruns - self.last.overruns;
        self.last = cur;
        let p = self.last_window;
        format!(
            "clients={connections} feed={:.0}/s updates={:.0}/s p50={:.0}us p99={:.0}us p99.9={:.0}us max={:.0}us conflated={conflated} overruns={overruns}",
            self.last_feed_rate, self.last_rate, p.p50_us, p.p99_us, p.p999_us, p.max_us
        )
    }
}

fn merge(hs: &[Histogram<u64>]) -> Histogram<u64> {
    let mut m = latency_histogram();
    for h in hs {
        let _ = m.add(h);
    }
    m
}

/// How often the collector merges (independent of the summary period).
pub const MERGE_PERIOD: Duration = Duration::from_millis(500);

/// The stats loop of the HTTP thread: merges shard histograms every [`MERGE_PERIOD`] and logs
/// the summary line every `server.stats_interval` (live-tunable, so read each time), until
/// `stop` changes.
pub async fn collect(app: Arc<crate::server::App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut merge = tokio::time::interval(MERGE_PERIOD);
    let shard_stats: Vec<_> = app.shards.iter().map(|s| s.stats.clone()).collect();
    let mut next_summary = tokio::time::Instant::now() + app.live.config().server.stats_interval;
    loop {
        tokio::select! {
            _ = merge.tick() => {
                if let Ok(mut c) = app.collector.lock() {
                    c.drain();
                }
            }
            _ = tokio::time::sleep_until(next_summary) => {
                next_summary = tokio::time::Instant::now() + app.live.config().server.stats_interval;
                let connections = app.connections.load(Ordering::Relaxed);
                if let Ok(mut c) = app.collector.lock() {
                    let line = c.roll(&shard_stats, &app.feed, connections);
                    tracing::info!(target: "tickgate::stats", "{line}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
