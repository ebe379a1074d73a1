//! Loom model checks of the ring and cache protocols: every interleaving (within a preemption
//! bound) of one producer and a consumer on a tiny ring. Run with
//! `cargo test --features loom --release --lib ring::loom_tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loom::thread;
use tickgate_feeds::Tick;

use super::*;

fn tick_for(n: u64) -> Tick {
    Tick { seq: n, bid: n as i64, ask: n as i64 + 1, volume: n as i64 + 2, ..Tick::default() }
}

fn consistent(t: &Tick) -> bool {
    *t == tick_for(t.seq)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Consumer racing a producer that laps a 2-slot ring: every read is consistent and in
/// order, and reads plus reported misses account for every published tick.
#[test]
fn ring_reads_are_consistent_ordered_and_accounted() {
    model(|| {
        let (ring, mut p) = Ring::with_capacity(2);
        let mut c = ring.consumer();
        let producer = thread::spawn(move || {
            for n in 0..3 {
                p.publish(&tick_for(n));
            }
        });
        let (mut seen, mut missed, mut last) = (0u64, 0u64, None);
        for _ in 0..4 {
            match c.try_read() {
                Read::Tick(t) => {
                    assert!(consistent(&t));
                    assert!(last.is_none_or(|l| t.seq > l));
                    last = Some(t.seq);
                    seen += 1;
                }
                Read::Overrun { missed: m } => missed += m,
                Read::Empty => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        // Drain what is left now that the producer is done.
        loop {
            match c.try_read() {
                Read::Tick(t) => {
                    assert!(consistent(&t));
                    seen += 1;
                }
                Read::Overrun { missed: m } => missed += m,
                Read::Empty => break,
            }
        }
        assert_eq!(seen + missed, 3);
    });
}

/// A cache reader racing two writes never sees a torn value and never goes backwards.
#[test]
fn lvc_reads_are_consistent_and_monotonic() {
    model(|| {
        let lvc = Arc::new(Lvc::new(1));
        let w = lvc.clone();
        let writer = thread::spawn(move || {
            w.store(&tick_for(1));
            w.store(&tick_for(2));
        });
        let mut last = 0;
        for _ in 0..2 {
            if let Some(t) = lvc.load(0) {
                assert!(consistent(&t));
                assert!(t.seq >= last);
                last = t.seq;
            }
        }
        writer.join().unwrap();
        assert_eq!(lvc.load(0).map(|t| t.seq), Some(2));
    });
}
