//! Loom model checks of the ring and cache protocols: every interleaving, within a
//! preemption bound, of one producer (or cache writer) and a reader. The payload is two words
//! instead of a tick's eleven: the protocol does not depend on the width, and the narrow
//! payload keeps the state space small enough to explore at bound 3 in seconds.
//! Run with `cargo test --features loom --release --lib ring::loom_tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loom::thread;

use super::*;

/// A two-word payload whose words are both derived from `n`, so a torn read shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair(u64, u64);

impl Pair {
    fn of(n: u64) -> Pair {
        Pair(n, n * 10 + 1)
    }
    fn consistent(&self) -> bool {
        *self == Pair::of(self.0)
    }
}

impl Packed<2> for Pair {
    fn pack(&self) -> [u64; 2] {
        [self.0, self.1]
    }
    fn unpack(w: &[u64; 2]) -> Self {
        Pair(w[0], w[1])
    }
}

/// Explores every interleaving with at most `bound` preemptions.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(f);
}

/// The seqlock itself: a reader racing two writes gets a consistent payload that matches
/// its stamp, or "retry", never a mix.
#[test]
fn seqlock_never_returns_a_torn_payload() {
    model(3, || {
        let slot = Arc::new(super::seqlock::SeqSlot::<2>::new());
        let w = slot.clone();
        let writer = thread::spawn(move || {
            w.write_words(2, &[1, 1]);
            w.write_words(4, &[2, 2]);
        });
        for _ in 0..2 {
            match slot.read_words() {
                (0, Some(words)) => assert_eq!(words, [0, 0]),
                (stamp, Some(words)) => {
                    assert_eq!(words[0], words[1], "torn read");
                    assert_eq!(stamp, words[0] * 2, "payload does not match its stamp");
                }
                (_, None) => {}
            }
        }
        writer.join().unwrap();
        assert_eq!(slot.read_words(), (4, Some([2, 2])));
    });
}

/// A consumer racing a producer that laps a 2-slot ring: every read is consistent and in
/// order, and reads plus reported misses account for every published position.
#[test]
fn ring_reads_are_consistent_ordered_and_accounted() {
    model(3, || {
        let (ring, mut p) = Ring::<Pair, 2>::of(2);
        let mut c = ring.consumer();
        let producer = thread::spawn(move || {
            for n in 0..3 {
                p.publish(&Pair::of(n));
            }
        });
        let (mut seen, mut missed, mut last) = (0u64, 0u64, None);
        let mut check = |r: Read<Pair>, seen: &mut u64, missed: &mut u64| match r {
            Read::Tick(t) => {
                assert!(t.consistent(), "torn read {t:?}");
                assert!(last.is_none_or(|l| t.0 > l), "out of order");
                last = Some(t.0);
                *seen += 1;
                true
            }
            Read::Overrun { missed: m } => {
                *missed += m;
                true
            }
            Read::Empty => false,
        };
        for _ in 0..3 {
            if !check(c.try_read(), &mut seen, &mut missed) {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        while check(c.try_read(), &mut seen, &mut missed) {}
        assert_eq!(seen + missed, 3, "seen {seen} + missed {missed}");
    });
}

/// A cache reader racing two writes never sees a torn value and never goes backwards.
#[test]
fn lvc_reads_are_consistent_and_monotonic() {
    model(3, || {
        let lvc = Arc::new(Lvc::<Pair, 2>::of(1));
        let w = lvc.clone();
        let writer = thread::spawn(move || {
            w.store_at(0, &Pair::of(1));
            w.store_at(0, &Pair::of(2));
        });
        let mut last = 0;
        for _ in 0..2 {
            if let Some(t) = lvc.load(0) {
                assert!(t.consistent(), "torn read {t:?}");
                assert!(t.0 >= last, "went backwards");
                last = t.0;
            }
        }
        writer.join().unwrap();
        assert_eq!(lvc.load(0), Some(Pair::of(2)));
    });
}
