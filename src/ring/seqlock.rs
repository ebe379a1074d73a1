//! A seqlock slot holding one [`Tick`] as atomic words.
//!
//! Writer (one at a time): store `version - 1` (odd: "writing"), `Release` fence, store the
//! words relaxed, store `version` (even) with `Release`.
//!
//! Reader: load the stamp with `Acquire`, load the words relaxed, `Acquire` fence, load the
//! stamp again. If both loads agree (and are even) the words are one consistent write: had
//! the reader seen any word of a later write, the writer's `Release` fence (before its words)
//! pairs with the reader's `Acquire` fence (after them), so the second stamp load would see
//! at least the later write's odd stamp. This is the protocol of Boehm, "Can Seqlocks Get
//! Along With Programming Language Memory Models?" (2012), with the payload in atomics so it
//! is data-race free in Rust's model.

use tickgate_feeds::tick::TICK_WORDS;

use super::sync::{AtomicU64, Ordering, fence};

/// A version stamp and `N` words of payload (a tick by default). Aligned to two cache
/// lines (96 bytes for a tick) so neighbouring slots never share a line. Generic over `N`
/// so the protocol can be model-checked with a small payload (`loom_tests`).
#[repr(align(128))]
pub(crate) struct SeqSlot<const N: usize = TICK_WORDS> {
    stamp: AtomicU64,
    words: [AtomicU64; N],
}

#[cfg(not(feature = "loom"))]
const _: () = assert!(std::mem::size_of::<SeqSlot>() == 128);

impl<const N: usize> SeqSlot<N> {
    pub(crate) fn new() -> Self {
        SeqSlot { stamp: AtomicU64::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// The current stamp (for the single writer, to compute its next version).
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.stamp.load(Ordering::Relaxed)
    }

    /// Writes `words` under the even stamp `version` (> current). Single writer only.
    #[inline]
    pub(crate) fn write_words(&self, version: u64, words: &[u64; N]) {
        debug_assert!(version.is_multiple_of(2) && version > 0);
        self.stamp.store(version - 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (cell, &w) in self.words.iter().zip(words) {
            cell.store(w, Ordering::Relaxed);
        }
        self.stamp.store(version, Ordering::Release);
    }

    /// Reads the slot: `(stamp, Some(words))` when the read was consistent under an even
    /// `stamp`, else `(latest stamp seen, None)` (mid-write, or overwritten during the read).
    #[inline]
    pub(crate) fn read_words(&self) -> (u64, Option<[u64; N]>) {
        let s1 = self.stamp.load(Ordering::Acquire);
        if s1 % 2 == 1 {
            return (s1, None);
        }
        let mut w = [0u64; N];
        for (dst, cell) in w.iter_mut().zip(&self.words) {
            *dst = cell.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        let s2 = self.stamp.load(Ordering::Relaxed);
        if s1 == s2 { (s1, Some(w)) } else { (s2, None) }
    }
}
