//! Ring and cache tests with real threads: unit behaviour, then exhaustive stress runs in
//! which every tick's words are derived from its position so any torn or reordered read is
//! detected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use tickgate_feeds::{Tick, TickKind};

use super::*;

/// A tick whose every field is a function of `n`, so a mix of two writes is detectable.
fn tick_for(n: u64) -> Tick {
    Tick {
        symbol: (n % 7) as u32,
        kind: if n.is_multiple_of(2) { TickKind::Quote } else { TickKind::Trade },
        seq: n,
        bid: n as i64,
        bid_size: n as i64 + 1,
        ask: n as i64 + 2,
        ask_size: n as i64 + 3,
        last: n as i64 + 4,
        last_size: n as i64 + 5,
        volume: n as i64 + 6,
        ts_event: n + 7,
        ts_gateway: n + 8,
        ..Tick::default()
    }
}

fn consistent(t: &Tick) -> bool {
    *t == tick_for(t.seq)
}

#[test]
fn consumer_sees_ticks_in_order_then_empty() {
    let (ring, mut p) = Ring::with_capacity(8);
    let mut c = ring.consumer();
    assert_eq!(c.try_read(), Read::Empty);
    for n in 0..5 {
        p.publish(&tick_for(n));
    }
    for n in 0..5 {
        assert_eq!(c.try_read(), Read::Tick(tick_for(n)));
    }
    assert_eq!(c.try_read(), Read::Empty);
    assert_eq!(c.lag(), 0);
}

#[test]
fn new_consumer_starts_at_head() {
    let (ring, mut p) = Ring::with_capacity(4);
    p.publish(&tick_for(0));
    let mut c = ring.consumer();
    assert_eq!(c.try_read(), Read::Empty);
    p.publish(&tick_for(1));
    assert_eq!(c.try_read(), Read::Tick(tick_for(1)));
}

#[test]
fn lapped_consumer_detects_overrun_and_resumes_at_head() {
    let (ring, mut p) = Ring::with_capacity(4);
    let mut c = ring.consumer();
    for n in 0..10 {
        p.publish(&tick_for(n));
    }
    assert_eq!(c.try_read(), Read::Overrun { missed: 10 });
    assert_eq!(c.try_read(), Read::Empty);
    p.publish(&tick_for(10));
    assert_eq!(c.try_read(), Read::Tick(tick_for(10)));
}

#[test]
fn consumer_exactly_one_lap_behind_is_overrun_not_confused() {
    let (ring, mut p) = Ring::with_capacity(4);
    let mut c = ring.consumer();
    for n in 0..4 {
        p.publish(&tick_for(n));
    }
    // Full but not lapped: all four are readable.
    for n in 0..4 {
        assert_eq!(c.try_read(), Read::Tick(tick_for(n)));
    }
    for n in 4..9 {
        p.publish(&tick_for(n));
    }
    // Position 4's slot now holds position 8: lapped by one.
    assert!(matches!(c.try_read(), Read::Overrun { .. }));
}

#[test]
fn capacity_rounds_up_to_power_of_two() {
    assert_eq!(Ring::with_capacity(5).0.capacity(), 8);
    assert_eq!(Ring::with_capacity(0).0.capacity(), 2);
}

#[test]
fn lvc_keeps_latest_per_symbol() {
    let lvc = Lvc::new(3);
    assert_eq!(lvc.load(1), None);
    assert_eq!(lvc.load(99), None);
    let mut t = tick_for(1);
    t.symbol = 1;
    lvc.store(&t);
    t.seq = 2;
    lvc.store(&t);
    assert_eq!(lvc.load(1).map(|t| t.seq), Some(2));
    assert_eq!(lvc.load(0), None);
    t.symbol = 99; // out of range: ignored, no panic
    lvc.store(&t);
}

/// One producer, three consumers on a small ring so they are lapped often: every tick read is
/// internally consistent, positions strictly increase, and reads + missed == published.
#[test]
fn stress_three_consumers_no_torn_reads_in_order_accounted() {
    const TOTAL: u64 = 2_000_000;
    let (ring, mut p) = Ring::with_capacity(64);
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..3)
        .map(|i| {
            let mut c = ring.consumer();
            let done = done.clone();
            thread::spawn(move || {
                let (mut read, mut missed, mut last) = (0u64, 0u64, None::<u64>);
                loop {
                    match c.try_read() {
                        Read::Tick(t) => {
                            assert!(consistent(&t), "torn read: {t:?}");
                            if let Some(l) = last {
                                assert!(t.seq > l, "out of order: {} after {l}", t.seq);
                            }
                            last = Some(t.seq);
                            read += 1;
                        }
                        Read::Overrun { missed: m } => missed += m,
                        Read::Empty => {
                            if done.load(Ordering::Acquire) && c.lag() == 0 {
                                break;
                            }
                            // Consumer 0 is deliberately slow to be lapped more often.
                            if i == 0 {
                                thread::yield_now();
                            }
                            std::hint::spin_loop();
                        }
                    }
                }
                (read, missed)
            })
        })
        .collect();
    for n in 0..TOTAL {
        p.publish(&tick_for(n));
    }
    done.store(true, Ordering::Release);
    for h in consumers {
        let (read, missed) = h.join().unwrap();
        assert_eq!(read + missed, TOTAL, "read {read} + missed {missed}");
    }
}

/// The cache under a writer hammering a few symbols: readers never see a torn tick and each
/// symbol's seq never goes backwards for a reader.
#[test]
fn stress_lvc_readers_see_consistent_monotonic_values() {
    const WRITES: u64 = 1_000_000;
    let lvc = std::sync::Arc::new(Lvc::new(4));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (lvc, done) = (lvc.clone(), done.clone());
            thread::spawn(move || {
                let mut last = [0u64; 4];
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    for s in 0..4u32 {
                        if let Some(t) = lvc.load(s) {
                            let mut want = tick_for(t.seq);
                            want.symbol = s;
                            assert_eq!(t, want, "torn cache read");
                            assert!(t.seq >= last[s as usize], "cache went backwards");
                            last[s as usize] = t.seq;
                            reads += 1;
                        }
                    }
                }
                reads
            })
        })
        .collect();
    for n in 1..=WRITES {
        let mut t = tick_for(n);
        t.symbol = (n % 4) as u32;
        lvc.store(&t);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn doorbell_wakes_a_parked_consumer() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (ring, mut p) = Ring::with_capacity(8);
    let bell = std::sync::Arc::new(Doorbell::new());
    let c = ring.consumer();
    let b2 = bell.clone();
    let feeder = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(20));
        p.publish(&tick_for(0));
        b2.ring();
    });
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), bell.park(&c))
            .await
            .expect("parked consumer was never woken");
    });
    feeder.join().unwrap();
    // Already pending: park returns at once.
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(100), bell.park(&c))
            .await
            .expect("park with pending ticks must not wait");
    });
}
