//! Fan-out of one tick to N subscribers of one symbol in one shard, syscalls excluded.
//!
//! Setup: a [`ShardCore`] over the default universe with N clients, each subscribed to
//! `AAPL` through a real `subscribe` message, their replies and snapshots already drained.
//! Each iteration is one shard turn for one new tick: `on_tick`, `take_ready`, then for
//! every ready client `fill` and `written` of its whole buffer (what the driver does around
//! the one `write` syscall per client, which is left out). That covers the index lookup,
//! the conflation slot, the encode (once per format, shared), the copy into each client's
//! buffer and the per-update latency sample.
//!
//! Throughput is `Elements(N)`, so criterion reports the cost per subscriber. Cases: JSON
//! for 1, 100 and 10,000 subscribers, binary for 10,000.
//!
//! The `intake` group measures what one tick costs the shard when it arrives for a symbol
//! whose N subscribers are all still waiting for their flush (the overloaded case: every
//! client has something pending and more ticks keep coming). Only `on_tick` runs, so the
//! result is the per-tick intake cost, reported per tick (`Elements(1)`): with O(1) intake it
//! does not grow with N.
//!
//! `cargo bench --bench fanout -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickgate::feeds::{SCALE, Tick, Universe};
use tickgate::protocol::Format;
use tickgate::ring::Lvc;
use tickgate::shard::core::{Limits, ShardCore};

/// A fixed wall-clock-like time: the core takes the clock as an argument.
const NOW: u64 = 1_732_240_000_000_000_000;

/// Limits that never get in the way of the setup.
const LIMITS: Limits = Limits {
    max_symbols: 1_000,
    msgs_per_sec: 1_000,
    default_interval_ns: 0,
    max_trade_backlog: 1_000,
    default_bandwidth: 0,
    bandwidth_ceiling: 0,
};

/// An AAPL-like tick with sequence number `seq`, ingested 20 µs before [`NOW`].
fn tick(symbol: u32, seq: u64) -> Tick {
    let bid = 18_912_000_000 + (seq % 100) as i64 * 1_000_000;
    Tick {
        symbol,
        seq,
        bid,
        bid_size: 300 * SCALE,
        ask: bid + 2_000_000,
        ask_size: 200 * SCALE,
        last: bid + 1_000_000,
        last_size: 100 * SCALE,
        volume: (1_234_567 + seq as i64) * SCALE,
        ts_event: NOW - 50_000,
        ts_gateway: NOW - 20_000,
        ..Tick::default()
    }
}

/// A shard core with `n` clients of `format` subscribed to AAPL, snapshots drained.
/// Returns the core and AAPL's id and last seq.
fn subscribed_core(n: usize, format: Format) -> (ShardCore, u32, u64) {
    let universe = Arc::new(Universe::load_default().unwrap_or_else(|e| panic!("default universe: {e}")));
    let Some(aapl) = universe.id("AAPL") else { panic!("AAPL is not in the default universe") };
    let lvc = Arc::new(Lvc::new(universe.len()));
    // AAPL has a value, so every subscribe also sends a snapshot, as in production.
    lvc.store(&tick(aapl, 1));
    let mut core = ShardCore::new(universe, lvc, LIMITS);
    for _ in 0..n {
        let key = core.add_client(format, NOW, None);
        let mut msg = br#"{"op":"subscribe","symbols":["AAPL"]}"#.to_vec();
        core.handle_text(key, &mut msg, NOW);
        let len = core.client(key).map_or(0, |c| c.out().len());
        assert!(len > 0, "a subscribed reply and a snapshot");
        core.written(key, len, NOW);
    }
    assert_eq!(core.gauges().subscriptions, n);
    (core, aapl, 1)
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    // 10,000 subscribers take about a millisecond per iteration: 20 samples fit in 3 s.
    g.sample_size(20);
    let cases = [(Format::Json, 1), (Format::Json, 100), (Format::Json, 10_000), (Format::Binary, 10_000)];
    for (format, n) in cases {
        let (mut core, aapl, mut seq) = subscribed_core(n, format);
        let mut ready = Vec::with_capacity(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new(format.as_str(), n), |b| {
            b.iter(|| {
                seq += 1;
                core.on_tick(&tick(aapl, seq));
                core.take_ready(&mut ready);
                for &key in &ready {
                    core.fill(key, NOW);
                    let len = core.client(key).map_or(0, |c| c.out().len());
                    core.written(key, len, NOW);
                }
            })
        });
        // Every subscriber got every tick, fully written: nothing was conflated or left behind.
        let g_now = core.gauges();
        assert_eq!((g_now.pending_updates, g_now.buffered_bytes), (0, 0));
        assert_eq!(core.counters.delivered, (seq - 1) * n as u64);
        let (json, binary) = core.encodes();
        assert_eq!(json + binary, seq - 1, "one encode per tick, whatever the subscriber count");
    }
    g.finish();
}

fn intake(c: &mut Criterion) {
    let mut g = c.benchmark_group("intake");
    g.sample_size(20);
    for n in [1, 100, 10_000] {
        let (mut core, aapl, mut seq) = subscribed_core(n, Format::Json);
        // One tick makes every subscriber pending; nobody is flushed afterwards.
        seq += 1;
        core.on_tick(&tick(aapl, seq));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("pending", n), |b| {
            b.iter(|| {
                seq += 1;
                core.on_tick(&tick(aapl, seq))
            })
        });
        assert_eq!(core.gauges().pending_updates, n, "one pending slot per subscriber, however many ticks");
    }
    g.finish();
}

criterion_group!(benches, fanout, intake);
criterion_main!(benches);
