//! Ring throughput: one producer publishes [`TICKS`] ticks while 1–4 consumer threads each
//! read them, timed over whole runs (`iter_custom`) from the moment all threads are released
//! to the moment the last consumer has passed the last position.
//!
//! Two cases per consumer count:
//!
//! - `lossless`: the producer never laps a consumer. Every 1,024 ticks it checks the slowest
//!   consumer's reported position and waits while it is more than half a ring ahead (the
//!   bench's own pacing; the ring itself never waits). Every consumer reads every tick, and
//!   the bench asserts no overrun happened. **This is the number to hold against the
//!   target**: ticks per second that every consumer actually received.
//! - `unthrottled`: the producer publishes flat out. An `Overrun` counts as progress (its
//!   `missed` positions are skipped, as a shard would heal them from the last-value cache).
//!   A publish is cheaper than a read, so consumers get lapped; the share of positions lost
//!   that way is printed after the case. This measures the producer side, not delivery.
//!
//! Consumers spin on `try_read`; after [`SPINS_BEFORE_YIELD`] empty reads in a row they yield
//! their time slice, since with more threads than cores (the reference machine has 2) a pure
//! spinner would hold a core the producer needs for a whole scheduler quantum.
//!
//! The ring has the gateway's default capacity ([`DEFAULT_CAPACITY`]); its slots are written
//! once when it is built, so page faults are not part of the timing.
//!
//! Target: at least 10 M ticks/s.
//!
//! `cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3`

use std::hint::{black_box, spin_loop};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tickgate::feeds::Tick;
use tickgate::ring::{DEFAULT_CAPACITY, Read, Ring};

/// Ticks published per run: large against the ring (15 laps of 65,536 slots) so the steady
/// state dominates, small enough that a run takes well under a second.
const TICKS: u64 = 1_000_000;

/// Empty reads in a row before a consumer yields its time slice. About 1,024 × ~20 ns: long
/// enough that a consumer on its own core never yields while the producer is publishing.
const SPINS_BEFORE_YIELD: u32 = 1_024;

/// How often (in ticks) a consumer reports its position and the pacing producer checks the
/// slowest one: rare enough to cost nothing, and 1,024 ≪ half the ring, so the producer's
/// view is never stale enough to let it lap anyone.
const REPORT_EVERY: u64 = 1_024;

/// One consumer's reported position, alone on its cache lines (the producer reads it).
#[repr(align(128))]
struct Progress(AtomicU64);

/// The tick published at position `n`: a realistic spread over 512 symbols.
fn tick(n: u64) -> Tick {
    Tick { symbol: (n % 512) as u32, seq: n / 512 + 1, bid: n as i64, ts_gateway: n, ..Tick::default() }
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    elapsed: Duration,
    /// Ticks read, summed over consumers.
    read: u64,
    /// Positions skipped by overruns, summed over consumers.
    missed: u64,
}

/// One run with `consumers` consumer threads; with `lossless` the producer is paced so that
/// no consumer is lapped.
fn run(consumers: usize, lossless: bool) -> Run {
    let (ring, mut producer) = Ring::with_capacity(DEFAULT_CAPACITY);
    let max_ahead = ring.capacity() as u64 / 2;
    let progress: Vec<Progress> = (0..consumers).map(|_| Progress(AtomicU64::new(0))).collect();
    let start = Barrier::new(consumers + 1);
    thread::scope(|s| {
        let workers: Vec<_> = progress
            .iter()
            .map(|report| {
                // Created before anything is published, so each sees every position.
                let mut consumer = ring.consumer();
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let (mut read, mut missed, mut idle) = (0u64, 0u64, 0u32);
                    while consumer.position() < TICKS {
                        match consumer.try_read() {
                            Read::Tick(t) => {
                                black_box(t);
                                read += 1;
                                idle = 0;
                                if read.is_multiple_of(REPORT_EVERY) {
                                    report.0.store(consumer.position(), Ordering::Relaxed);
                                }
                            }
                            Read::Overrun { missed: m } => missed += m,
                            Read::Empty => {
                                idle += 1;
                                if idle.is_multiple_of(SPINS_BEFORE_YIELD) {
                                    report.0.store(consumer.position(), Ordering::Relaxed);
                                    thread::yield_now();
                                } else {
                                    spin_loop();
                                }
                            }
                        }
                    }
                    report.0.store(TICKS, Ordering::Relaxed);
                    (Instant::now(), read, missed)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for n in 0..TICKS {
            if lossless && n.is_multiple_of(REPORT_EVERY) {
                let mut spins = 0u32;
                while n.saturating_sub(slowest(&progress)) > max_ahead {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        thread::yield_now();
                    } else {
                        spin_loop();
                    }
                }
            }
            producer.publish(&tick(n));
        }
        let mut r = Run { elapsed: t0.elapsed(), ..Run::default() };
        for w in workers {
            let Ok((end, read, missed)) = w.join() else { panic!("a consumer thread panicked") };
            r.elapsed = r.elapsed.max(end.duration_since(t0));
            r.read += read;
            r.missed += missed;
        }
        r
    })
}

/// The lowest reported consumer position.
fn slowest(progress: &[Progress]) -> u64 {
    progress.iter().map(|p| p.0.load(Ordering::Relaxed)).min().unwrap_or(TICKS)
}

fn ring_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(TICKS));
    // A run is ~0.1 s: few, equal samples instead of criterion's default 100 rising ones.
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    for (mode, lossless) in [("lossless", true), ("unthrottled", false)] {
        for consumers in 1..=4 {
            let mut total = Run::default();
            g.bench_with_input(BenchmarkId::new(mode, consumers), &consumers, |b, &n| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let r = run(n, lossless);
                        elapsed += r.elapsed;
                        total.read += r.read;
                        total.missed += r.missed;
                    }
                    elapsed
                })
            });
            let seen = (total.read + total.missed).max(1);
            println!(
                "ring/{mode}/{consumers}: {:.3}% of positions read, {:.3}% lost to overruns",
                100.0 * total.read as f64 / seen as f64,
                100.0 * total.missed as f64 / seen as f64,
            );
            if lossless {
                assert_eq!(total.missed, 0, "the paced producer lapped a consumer");
            }
        }
    }
    g.finish();
}

criterion_group!(benches, ring_throughput);
criterion_main!(benches);
