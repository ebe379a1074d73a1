//! Per-update encode cost of protocol v1: a JSON update, a binary record, and a WebSocket
//! frame header, each appended to a reused buffer that is cleared between iterations (as the
//! shard does per flush).
//!
//! Targets: JSON <= 150 ns per update, binary <= 20 ns per record. `format_fixed_x7` shows
//! how much of the JSON update is the printing of its seven fixed-point fields.
//!
//! `cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickgate::feeds::{SCALE, Tick, format_fixed};
use tickgate::protocol::{binary, frame, json};

use tickgate::protocol::example_tick;

/// 256 ticks with varied digit counts and fractions, so the numbers are not the same every
/// iteration (branch predictors learn a single tick).
fn varied_ticks() -> Vec<Tick> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..256)
        .map(|i| {
            let mid = (next() % 500_000_000_000) as i64 + SCALE; // 1 .. 5000, 8 decimals
            let tick_size = [1_000_000i64, 10_000, 1][i % 3];
            let bid = mid / tick_size * tick_size;
            Tick {
                symbol: i as u32,
                seq: next() % 10_000_000,
                bid,
                bid_size: (next() % 10_000) as i64 * SCALE,
                ask: bid + tick_size,
                ask_size: (next() % 10_000) as i64 * SCALE,
                last: bid,
                last_size: (next() % 1000) as i64 * SCALE,
                volume: (next() % 100_000_000) as i64 * SCALE,
                ts_event: 1_732_240_000_000_000_000 + next() % 1_000_000_000_000,
                ts_gateway: 1_732_240_000_000_000_000 + next() % 1_000_000_000_000,
                ..Tick::default()
            }
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let tick = example_tick();
    let varied = varied_ticks();
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));

    g.bench_function("json_update", |b| {
        b.iter(|| {
            out.clear();
            json::encode_update(&mut out, black_box(&tick), black_box("AAPL"), false);
            black_box(&out);
        })
    });

    let mut i = 0usize;
    g.bench_function("json_update_varied", |b| {
        b.iter(|| {
            i = (i + 1) & 255;
            out.clear();
            json::encode_update(&mut out, black_box(&varied[i]), black_box("MSFT"), false);
            black_box(&out);
        })
    });

    g.bench_function("binary_record", |b| {
        b.iter(|| {
            out.clear();
            binary::encode_record(&mut out, black_box(&tick), false);
            black_box(&out);
        })
    });

    g.bench_function("frame_header", |b| {
        b.iter(|| {
            out.clear();
            frame::write_header(&mut out, frame::OpCode::Text, black_box(230));
            black_box(&out);
        })
    });

    // The share of the JSON update spent printing its seven fixed-point fields.
    let fields = [tick.bid, tick.bid_size, tick.ask, tick.ask_size, tick.last, tick.last_size, tick.volume];
    g.bench_function("format_fixed_x7", |b| {
        b.iter(|| {
            out.clear();
            for v in black_box(&fields) {
                format_fixed(&mut out, *v);
            }
            black_box(&out);
        })
    });

    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
