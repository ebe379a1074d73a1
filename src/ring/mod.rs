//! The broadcast ring and the last-value cache: how ticks get from the feed thread to the
//! shards without locks and without the feed thread ever waiting for anyone.
//!
//! - [`Ring`]: single producer (the feed thread), many consumers (one [`Consumer`] per shard).
//!   Every consumer sees every tick, in order. The producer overwrites the oldest slot and
//!   never checks on consumers; a consumer lapped by the producer detects it
//!   ([`Read::Overrun`]) and heals from the [`Lvc`].
//! - [`Lvc`]: the last-value cache, the latest tick per symbol, written by the feed thread
//!   and read by shards for snapshots and overrun healing.
//! - [`Doorbell`]: wakes a shard that parked because its consumer was empty.
//!
//! Both the ring and the cache are arrays of seqlock slots (`ring::seqlock`) whose payload is stored in
//! `AtomicU64` words with relaxed ordering and fenced by a version stamp. That keeps the
//! crate free of `unsafe` (a seqlock over plain memory is a data race in Rust's model) at no
//! cost on x86-64, where relaxed atomic loads and stores are plain moves.
//!
//! ## Ordering protocol (the one invariant everything relies on)
//!
//! The feed thread, for each tick: (1) writes it into the [`Lvc`], (2) writes it into ring
//! position `n`, (3) publishes `head = n + 1` with `Release`. So every tick at a position
//! below `head` is already in the cache: a consumer that resumes at `head` after an overrun
//! and then reads the cache for its symbols has lost nothing. The cache may hold ticks the
//! ring has not published yet; consumers therefore drop any tick whose `seq` is not newer
//! than what a client already holds (see `shard::conflate`).
//!
//! Model-checked with loom (`cargo test --features loom --lib ring::loom_tests`) and
//! stress-tested with real threads (`ring::tests`).

mod doorbell;
mod seqlock;
mod sync;

use tickgate_feeds::Tick;
use tickgate_feeds::tick::TICK_WORDS;

pub use doorbell::Doorbell;
use seqlock::SeqSlot;
use sync::{Arc, AtomicU64, Ordering};

/// Default number of ring slots (2^16 × 128 B = 8 MiB): at the default 20,000 ticks/s a shard
/// may stall for over 3 s before it is lapped.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// A `Copy` value stored as `N` 64-bit words: what the ring and the cache carry. Production
/// uses [`Tick`]; the loom tests use a two-word payload so every interleaving of the ring's
/// own logic can be explored.
pub trait Packed<const N: usize>: Copy {
    /// The value as words.
    fn pack(&self) -> [u64; N];
    /// The value back from words written by [`Packed::pack`].
    fn unpack(words: &[u64; N]) -> Self;
}

impl Packed<TICK_WORDS> for Tick {
    #[inline]
    fn pack(&self) -> [u64; TICK_WORDS] {
        self.to_words()
    }
    #[inline]
    fn unpack(words: &[u64; TICK_WORDS]) -> Self {
        Tick::from_words(words)
    }
}

/// Result of [`Consumer::try_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read<T = Tick> {
    /// The next tick, in order.
    Tick(T),
    /// Nothing new has been published yet.
    Empty,
    /// The producer lapped this consumer: `missed` ticks were lost. The consumer has already
    /// moved to the producer's head; the caller must heal from the [`Lvc`].
    Overrun {
        /// How many ring positions were skipped.
        missed: u64,
    },
}

/// The ring's memory, shared by the producer and every consumer: the slots and the head.
struct Slots<const N: usize> {
    slots: Box<[SeqSlot<N>]>,
    mask: u64,
    /// Number of ticks published so far; position of the next write.
    head: AtomicU64,
}

/// A single-producer, multi-consumer broadcast ring of ticks. Cheap to clone (an `Arc`).
pub struct Ring<T = Tick, const N: usize = TICK_WORDS> {
    shared: Arc<Slots<N>>,
    _payload: std::marker::PhantomData<fn() -> T>,
}

impl<T, const N: usize> Clone for Ring<T, N> {
    fn clone(&self) -> Self {
        Ring { shared: self.shared.clone(), _payload: std::marker::PhantomData }
    }
}

impl Ring {
    /// Creates a ring of ticks with `capacity` slots (rounded up to a power of two, at least
    /// 2) and its one producer.
    pub fn with_capacity(capacity: usize) -> (Ring, Producer) {
        Ring::of(capacity)
    }
}

impl<T: Packed<N>, const N: usize> Ring<T, N> {
    /// Creates a ring of any [`Packed`] payload (see [`Ring::with_capacity`]).
    pub fn of(capacity: usize) -> (Ring<T, N>, Producer<T, N>) {
        let cap = capacity.max(2).next_power_of_two();
        let slots = (0..cap).map(|_| SeqSlot::new()).collect::<Vec<_>>().into_boxed_slice();
        let shared = Arc::new(Slots { slots, mask: cap as u64 - 1, head: AtomicU64::new(0) });
        let marker = std::marker::PhantomData;
        (Ring { shared: shared.clone(), _payload: marker }, Producer { shared, next: 0, _payload: marker })
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Number of ticks published so far.
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// A new consumer that starts at the current head (it sees ticks published from now on).
    pub fn consumer(&self) -> Consumer<T, N> {
        Consumer { shared: self.shared.clone(), next: self.head(), _payload: std::marker::PhantomData }
    }
}

/// The ring's only writer. Not `Clone`: single producer by construction.
pub struct Producer<T = Tick, const N: usize = TICK_WORDS> {
    shared: Arc<Slots<N>>,
    next: u64,
    _payload: std::marker::PhantomData<fn() -> T>,
}

impl<T: Packed<N>, const N: usize> Producer<T, N> {
    /// Publishes a tick, overwriting the oldest slot. Never blocks, never waits.
    #[inline]
    pub fn publish(&mut self, tick: &T) {
        let n = self.next;
        let slot = &self.shared.slots[(n & self.shared.mask) as usize];
        slot.write_words(stamp_of(n), &tick.pack());
        self.next = n + 1;
        self.shared.head.store(n + 1, Ordering::Release);
    }

    /// Number of ticks published so far.
    pub fn published(&self) -> u64 {
        self.next
    }
}

/// The stamp a slot carries once position `n` is completely written: even, and unique per
/// position, so a reader can tell "not yet" (smaller) from "lapped" (larger).
#[inline]
fn stamp_of(n: u64) -> u64 {
    2 * n + 2
}

/// One shard's read cursor.
pub struct Consumer<T = Tick, const N: usize = TICK_WORDS> {
    shared: Arc<Slots<N>>,
    next: u64,
    _payload: std::marker::PhantomData<fn() -> T>,
}

impl<T: Packed<N>, const N: usize> Consumer<T, N> {
    /// Reads the next tick if there is one. Wait-free.
    #[inline]
    pub fn try_read(&mut self) -> Read<T> {
        let n = self.next;
        let want = stamp_of(n);
        let (stamp, words) = self.shared.slots[(n & self.shared.mask) as usize].read_words();
        match words {
            Some(w) if stamp == want => {
                self.next = n + 1;
                Read::Tick(T::unpack(&w))
            }
            _ if stamp > want => {
                // Lapped (the slot holds, or is being overwritten with, a later position).
                // Resume at the producer's head: everything before it is in the cache.
                let head = self.shared.head.load(Ordering::Acquire);
                let resume = head.max(n + 1);
                self.next = resume;
                Read::Overrun { missed: resume - n }
            }
            // Older stamp, or position n is being written right now: not published yet.
            _ => Read::Empty,
        }
    }

    /// How many published ticks this consumer has not read yet (its lag).
    pub fn lag(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire).saturating_sub(self.next)
    }

    /// Position of the next tick this consumer will read.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// True if the producer has published past this consumer's position.
    pub fn has_pending(&self) -> bool {
        self.shared.head.load(Ordering::SeqCst) > self.next
    }
}

/// The last-value cache: the latest tick of every symbol, indexed by symbol id.
///
/// One writer (the feed thread, through [`Lvc::store`]; the `&mut`-free API is deliberate so
/// the cache can sit in an `Arc` shared with shards, and the single-writer rule is upheld by
/// the gateway giving the write side to the feed thread alone), many readers.
pub struct Lvc<T = Tick, const N: usize = TICK_WORDS> {
    slots: Box<[SeqSlot<N>]>,
    _payload: std::marker::PhantomData<fn() -> T>,
}

impl Lvc {
    /// A cache for `symbols` symbols, all empty.
    pub fn new(symbols: usize) -> Lvc {
        Lvc::of(symbols)
    }

    /// Stores `tick` as the latest value of `tick.symbol` (ignored if out of range).
    /// Must only be called from one thread at a time (the feed thread).
    #[inline]
    pub fn store(&self, tick: &Tick) {
        self.store_at(tick.symbol, tick);
    }
}

impl<T: Packed<N>, const N: usize> Lvc<T, N> {
    /// A cache of any [`Packed`] payload (see [`Lvc::new`]).
    pub fn of(symbols: usize) -> Lvc<T, N> {
        Lvc {
            slots: (0..symbols).map(|_| SeqSlot::new()).collect::<Vec<_>>().into_boxed_slice(),
            _payload: std::marker::PhantomData,
        }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for a cache of zero symbols.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Stores `value` as the latest value of `symbol` (ignored if out of range). Must only
    /// be called from one thread at a time (the feed thread).
    #[inline]
    pub fn store_at(&self, symbol: u32, value: &T) {
        if let Some(slot) = self.slots.get(symbol as usize) {
            // The stamp doubles as a write counter: the slot's next even version.
            slot.write_words(slot.version() + 2, &value.pack());
        }
    }

    /// The latest tick of `symbol`, or `None` if it has none yet (or is out of range).
    ///
    /// Retries while the feed thread is mid-write; a write is a few dozen nanoseconds, so
    /// this returns promptly. After many failed attempts it yields the thread instead of
    /// spinning (only possible if this thread was descheduled mid-read repeatedly).
    pub fn load(&self, symbol: u32) -> Option<T> {
        let slot = self.slots.get(symbol as usize)?;
        let mut attempts = 0u32;
        loop {
            match slot.read_words() {
                (0, _) => return None,
                (_, Some(w)) => return Some(T::unpack(&w)),
                (_, None) => {
                    attempts += 1;
                    // Under loom every retry must yield, or the model never lets the writer run.
                    if cfg!(feature = "loom") || attempts.is_multiple_of(64) {
                        sync::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests;

#[cfg(all(test, feature = "loom"))]
mod loom_tests;
