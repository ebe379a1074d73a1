//! Throughput of the simulated feed, unpaced: how many ticks per second one core can
//! generate over the default universe. The gateway needs the feed to outrun everything
//! downstream, so the target is at least 1M ticks/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickgate_feeds::{FeedPoll, FeedSource, SimConfig, Simulator, Universe};

/// Ticks generated per iteration.
const BATCH: u64 = 10_000;

fn simulator(c: &mut Criterion) {
    let universe = match Universe::load_default() {
        Ok(u) => u,
        Err(e) => panic!("default universe: {e}"),
    };
    let cfg = SimConfig { rate: 0, ..SimConfig::default() };
    let start = 1_709_251_200_000_000_000u64;
    let mut sim = Simulator::new(universe, cfg, start);
    // The clock advances 1 µs per tick, so mids really move (GBM steps with dt > 0).
    let mut now = start;

    let mut group = c.benchmark_group("simulator");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("unpaced_default_universe", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                now += 1_000;
                if let FeedPoll::Tick(t) = sim.poll(black_box(now)) {
                    black_box(t);
                }
            }
        });
    });
    group.finish();
}

criterion_group!(benches, simulator);
criterion_main!(benches);
