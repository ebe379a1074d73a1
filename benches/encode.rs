//! Per-update encode cost of protocol v1: a JSON update, a binary record, and a WebSocket
//! frame header, each appended to a reused buffer that is cleared between iterations (as the
//! shard does per flush).
//!
//! Targets: JSON <= 150 ns per update, binary <= 20 ns per record. `format_fixed_x7` shows
//! how much of the JSON update is the printing of its seven fixed-point fields.
//!
//! Order books (`book_*`): one whole `book` message of 10 or 50 levels a side, BTCUSDT-like
//! prices (cents apart) and sizes with up to 8 decimals. A shard encodes each book once per
//! (symbol, depth, format) per change, so this is the cost per change, not per client.
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

    let mut g = c.benchmark_group("encode");
    for depth in [10usize, 50] {
        let book = btc_book(depth);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("book_json_depth{depth}"), |b| {
            b.iter(|| {
                out.clear();
                json::encode_book(&mut out, black_box("BTCUSDT"), depth, black_box(&book));
                black_box(&out);
            })
        });
        g.bench_function(format!("book_binary_depth{depth}"), |b| {
            b.iter(|| {
                out.clear();
                binary::encode_book(&mut out, black_box(7), depth, black_box(&book));
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// A BTCUSDT-like book of `depth` levels a side: the touch at 61837.63 / 61837.64, levels a
/// cent or a few apart, sizes with up to 8 decimals.
fn btc_book(depth: usize) -> tickgate::books::Levels {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut bid, mut ask) = (6_183_763_000_000i64, 6_183_764_000_000i64);
    let mut bids = Vec::new();
    let mut asks = Vec::new();
    for _ in 0..depth {
        bids.push((bid, (next() % 500_000_000) as i64));
        asks.push((ask, (next() % 500_000_000) as i64));
        bid -= 1_000_000 * (1 + (next() % 3) as i64);
        ask += 1_000_000 * (1 + (next() % 3) as i64);
    }
    tickgate::books::Levels {
        seq: 123_456,
        stale: false,
        ts_event: 1_723_161_254_206_652_067,
        ts_gateway: 1_723_161_254_206_700_000,
        bids,
        asks,
    }
}

criterion_group!(benches, encode);
criterion_main!(benches);
