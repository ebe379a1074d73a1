//! Prometheus exposition (`GET /metrics`, text format), built with prometheus-client.
//!
//! The gateway already counts everything in plain atomics (`ShardStats`, `FeedStats`) and HDR
//! histograms, so `/metrics` is a custom [`Collector`] that reads them at scrape time: no
//! second set of counters on the data path. Delivery latency is exported two ways: a real
//! Prometheus histogram per shard built from the HDR data since start (so `histogram_quantile`
//! and aggregation across gateways work), and the last stats window's exact quantiles as
//! gauges.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::App;
use crate::counters::{ERROR_CODE_NAMES, FigureKind, SHARD_FIGURES};
use crate::shard::{COUNTED_CLOSE_CODES, ShardStats};

/// Upper bounds of the latency histogram buckets, seconds (+Inf is added).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0,
];

struct GatewayCollector(Arc<App>);

impl std::fmt::Debug for GatewayCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayCollector")
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Fmt {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Fmt {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One metric with a `shard` label per shard.
fn per_shard(
    e: &mut DescriptorEncoder,
    shards: &[Arc<ShardStats>],
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&ShardStats) -> u64,
) -> Fmt {
    let mut fam = e.encode_descriptor(name, help, None, kind)?;
    for (i, s) in shards.iter().enumerate() {
        let labels = [("shard", i.to_string())];
        let enc = fam.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value(s)).encode(enc)?,
            _ => ConstGauge::new(value(s) as i64).encode(enc)?,
        }
    }
    Ok(())
}

/// A counter family labelled by shard and code; `values` gives each shard's (code, count).
fn per_shard_by_code(
    e: &mut DescriptorEncoder,
    shards: &[Arc<ShardStats>],
    name: &str,
    help: &str,
    values: impl Fn(&ShardStats) -> Vec<(String, u64)>,
) -> Fmt {
    let mut fam = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (i, s) in shards.iter().enumerate() {
        for (code, v) in values(s) {
            let labels = [("shard", i.to_string()), ("code", code)];
            ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Converts an HDR histogram (ns) into Prometheus buckets (seconds): per-bucket counts,
/// the sum (mean × count, the HDR's exactness) and the count.
pub fn prometheus_buckets(h: &Histogram<u64>) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
    let mut below = 0u64;
    for b in LATENCY_BUCKETS {
        let ns = (b * 1e9) as u64;
        let upto = if h.is_empty() { 0 } else { h.count_between(0, ns) };
        buckets.push((b, upto.saturating_sub(below)));
        below = upto.max(below);
    }
    buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
    (h.mean() * h.len() as f64 / 1e9, h.len(), buckets)
}

impl Collector for GatewayCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let app = &self.0;
        let r = Ordering::Relaxed;
        let shards: Vec<Arc<ShardStats>> = app.shards.iter().map(|s| s.stats.clone()).collect();
        use MetricType::{Counter, Gauge};

        for f in SHARD_FIGURES {
            if let Some(name) = f.metric {
                let kind = match f.kind {
                    FigureKind::Counter => Counter,
                    FigureKind::Gauge => Gauge,
                };
                per_shard(&mut e, &shards, name, f.help, kind, f.read)?;
            }
        }
        gauge(
            &mut e,
            "tickgate_connections_max",
            "Connection limit in force.",
            app.live.max_connections() as f64,
        )?;
        let up = !app.feed.ended.load(Ordering::Acquire) && app.feed.up.load(Ordering::Acquire);
        gauge(
            &mut e,
            "tickgate_feed_up",
            "1 while the feed runs and its upstream (NATS) is reachable; 0 once it ended, or while \
             the bus is away.",
            if up { 1.0 } else { 0.0 },
        )?;
        counter(
            &mut e,
            "tickgate_feed_outages",
            "Times the feed's upstream (the NATS bus) went away; clients were told feed down.",
            app.feed.outages.load(r),
        )?;
        if let Some(b) = &app.bus {
            gauge(
                &mut e,
                "tickgate_bus_connected",
                "1 while connected to the NATS feed bus.",
                if b.connected.load(Ordering::Acquire) { 1.0 } else { 0.0 },
            )?;
            counter(&mut e, "tickgate_bus_reconnects", "Reconnects to the NATS bus.", b.reconnects.load(r))?;
            counter(
                &mut e,
                "tickgate_bus_received",
                "Tick messages received from NATS.",
                b.received.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_bus_warmed",
                "Last values read from JetStream at start and after reconnects.",
                b.warmed.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_bus_received_bytes",
                "Payload bytes of the tick messages received from NATS.",
                b.received_bytes.load(r),
            )?;
            gauge(
                &mut e,
                "tickgate_bus_subscriptions",
                "NATS subject subscriptions held (feed.nats_interest = subscribed: one per symbol clients hold).",
                b.subscriptions.load(r) as f64,
            )?;
            counter(
                &mut e,
                "tickgate_bus_subscribes",
                "Symbol subscriptions opened on the bus (interest mode).",
                b.subscribes.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_bus_unsubscribes",
                "Symbol subscriptions closed after their linger (interest mode).",
                b.unsubscribes.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_bus_rejected",
                "NATS messages dropped: undecodable, or a symbol outside the universe.",
                b.rejected.load(r),
            )?;
            let hop = b.hop.lock().map(|h| prometheus_buckets(&h)).ok();
            if let Some((sum, count, buckets)) = hop {
                let mut fam = e.encode_descriptor(
                    "tickgate_bus_hop_seconds",
                    "Publisher stamp to gateway feed thread (the NATS hop), since start.",
                    None,
                    MetricType::Histogram,
                )?;
                let labels: [(&str, String); 0] = [];
                fam.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
            }
        }
        gauge(
            &mut e,
            "tickgate_feed_rate_target",
            "Configured feed rate, ticks/s (0 = unpaced).",
            app.live.config().feed.rate as f64,
        )?;
        counter(
            &mut e,
            "tickgate_feed_ticks",
            "Ticks published by the feed thread.",
            app.feed.ticks.load(r),
        )?;
        counter(
            &mut e,
            "tickgate_feed_stale",
            "Ticks dropped by the feed thread because their seq was not newer.",
            app.feed.stale.load(r),
        )?;
        counter(
            &mut e,
            "tickgate_feed_book_changes",
            "Order-book changes published (a change within server.max_depth levels, or of the stale flag).",
            app.feed.books.load(r),
        )?;
        counter(
            &mut e,
            "tickgate_feed_books_stale",
            "Times a symbol's order book went stale (a continuity break or a crossed book in the \
             source); clients see stale: true until it is rebuilt.",
            app.feed.books_stale.load(r),
        )?;
        {
            let rj = &app.guards.rejections;
            let mut fam = e.encode_descriptor(
                "tickgate_handshakes_rejected",
                "WebSocket handshakes refused, by reason: origin (403), auth (401), ip_connections \
                 and ip_rate (429), capacity (503).",
                None,
                Counter,
            )?;
            for (reason, v) in [
                ("origin", &rj.origin),
                ("auth", &rj.auth),
                ("ip_connections", &rj.ip_connections),
                ("ip_rate", &rj.ip_rate),
                ("capacity", &rj.capacity),
            ] {
                ConstCounter::new(v.load(r)).encode(fam.encode_family(&[("reason", reason)])?)?;
            }
        }
        if let Some(v) = &app.guards.verifier {
            let a = &v.stats;
            gauge(
                &mut e,
                "tickgate_auth_keys",
                "Token verification keys loaded, over all sources.",
                a.keys.load(r) as f64,
            )?;
            counter(
                &mut e,
                "tickgate_auth_key_reloads",
                "Token key files re-read after a change or SIGHUP.",
                a.reloads.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_auth_key_reload_errors",
                "Token key files that could not be read or parsed (the last good keys stayed).",
                a.reload_errors.load(r),
            )?;
            counter(&mut e, "tickgate_auth_jwks_fetches", "JWKS fetches.", a.jwks_fetches.load(r))?;
            counter(
                &mut e,
                "tickgate_auth_jwks_fetch_errors",
                "JWKS fetches that failed (the last good keys stayed in use).",
                a.jwks_fetch_errors.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_auth_kid_refetches",
                "JWKS fetches asked for by tokens naming an unknown kid.",
                a.kid_refetches.load(r),
            )?;
            counter(
                &mut e,
                "tickgate_auth_kid_refetches_throttled",
                "Tokens naming an unknown kid within auth.jwks_min_refresh of the last such fetch.",
                a.kid_refetches_throttled.load(r),
            )?;
        }
        counter(
            &mut e,
            "tickgate_proxy_protocol_errors",
            "Connections closed for a missing or malformed PROXY protocol header, or one from a \
             peer outside server.trusted_proxies.",
            app.guards.rejections.proxy_protocol.load(r),
        )?;
        counter(
            &mut e,
            "tickgate_handshake_timeouts",
            "Connections dropped for not completing their handshake (PROXY header, TLS, request head) within server.handshake_timeout.",
            app.guards.rejections.handshake_timeouts.load(r),
        )?;
        per_shard_by_code(
            &mut e,
            &shards,
            "tickgate_client_errors",
            "Error replies to clients, by code.",
            |s| {
                ERROR_CODE_NAMES
                    .iter()
                    .map(ToString::to_string)
                    .zip(s.errors.iter().map(|v| v.load(r)))
                    .collect()
            },
        )?;
        per_shard_by_code(
            &mut e,
            &shards,
            "tickgate_closes",
            "Close frames sent by the server, by code.",
            |s| {
                COUNTED_CLOSE_CODES
                    .iter()
                    .map(ToString::to_string)
                    .zip(s.closes.iter().map(|v| v.load(r)))
                    .collect()
            },
        )?;
        counter(
            &mut e,
            "tickgate_config_changes",
            "Configuration keys changed while running.",
            app.live.changes.load(r),
        )?;
        let (totals, window) = match app.collector.lock() {
            Ok(mut c) => {
                c.drain();
                (c.shard_histograms(), c.last_window)
            }
            Err(_) => (Vec::new(), Default::default()),
        };
        {
            let mut fam = e.encode_descriptor(
                "tickgate_delivery_latency_seconds",
                "Ingest to write-complete latency of live updates, since start.",
                None,
                MetricType::Histogram,
            )?;
            for (i, h) in totals.iter().enumerate() {
                let (sum, count, buckets) = prometheus_buckets(h);
                let labels = [("shard", i.to_string())];
                fam.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
            }
        }
        {
            let mut fam = e.encode_descriptor(
                "tickgate_delivery_latency_window_seconds",
                "Delivery latency quantiles over the last stats window, all shards.",
                None,
                Gauge,
            )?;
            let q = [
                ("0.5", window.p50_us),
                ("0.9", window.p90_us),
                ("0.99", window.p99_us),
                ("0.999", window.p999_us),
                ("1", window.max_us),
            ];
            for (quantile, us) in q {
                let labels = [("quantile", quantile.to_string())];
                ConstGauge::new(us / 1e6).encode(fam.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Renders every metric in the Prometheus text exposition format.
pub fn render(app: &Arc<App>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GatewayCollector(app.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        out.push_str("# encoding failed\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::latency_histogram;

    #[test]
    fn hdr_histogram_becomes_per_bucket_counts() {
        let mut h = latency_histogram();
        for ns in [50_000u64, 80_000, 200_000, 3_000_000, 2_000_000_000] {
            let _ = h.record(ns);
        }
        let (sum, count, buckets) = prometheus_buckets(&h);
        assert_eq!(count, 5);
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5);
        assert_eq!(buckets[2], (0.00005, 1)); // 50 µs
        assert_eq!(buckets[3], (0.0001, 1)); // 80 µs
        assert_eq!(buckets[4], (0.00025, 1)); // 200 µs
        assert_eq!(buckets[8], (0.005, 1)); // 3 ms
        assert_eq!(buckets.last().map(|b| b.1), Some(1)); // 2 s is above 1 s
        assert!((sum - 2.00333).abs() < 0.01, "{sum}");
    }
}
