//! The [`FeedSource`] trait: how the gateway's feed thread pulls normalized ticks.
//!
//! A source is a synchronous, pull-based state machine (the barter-rs shape): the feed
//! thread calls [`FeedSource::poll`] with the current time and gets a tick, a hint of when
//! to come back, or the end of the feed. The clock is passed in so pacing is testable and
//! so live sources (simulator, a network bus) and replayed ones (captures, recorded ticks)
//! run through the same loop.

use crate::{Tick, Universe};

/// What a source has for the feed thread right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedPoll {
    /// The next tick. `ts_gateway` is left for the feed thread to stamp.
    Tick(Tick),
    /// Nothing due yet. Poll again at `until_ns` (ns since the Unix epoch), or as soon as
    /// convenient if `None` (a source that receives from a network would use `None` and a
    /// blocking receive of its own is not allowed: return promptly).
    Pending {
        /// When the next tick is due, if the source knows.
        until_ns: Option<u64>,
    },
    /// The source is exhausted (a finite replay, or a tick limit); it will return `End` again.
    End,
    /// The source's upstream went away (`up: false`: a network bus disconnected; the last
    /// values stay valid but may go stale) or came back (`up: true`, after any catch-up ticks
    /// were returned). Clients are told. Local sources never return this.
    Status {
        /// Whether the upstream is reachable now.
        up: bool,
    },
    /// The order book of `symbol` changed: levels moved, it was rebuilt from a snapshot, or it
    /// went stale. The feed thread reads its top levels with [`FeedSource::book_levels`] before
    /// polling again. Only sources that keep books return this.
    Book {
        /// The symbol id.
        symbol: u32,
        /// Event time at the source, ns since the Unix epoch.
        ts_event: u64,
    },
}

/// Whether a source's order book of a symbol can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookHealth {
    /// Consistent with every event so far, and not crossed.
    Live,
    /// Out of date (a continuity break, or crossed) until it is rebuilt: the levels reported
    /// with it are not to be published.
    Stale,
}

/// Copies the best `depth` levels of a book held as level lists (`book_bids`, `book_asks`,
/// best first) into `bids` and `asks` (cleared first): the [`FeedSource::book_levels`] of a
/// source that keeps whole book tops (a recording, a bus).
pub fn copy_levels(
    book_bids: &[(i64, i64)],
    book_asks: &[(i64, i64)],
    depth: usize,
    bids: &mut Vec<(i64, i64)>,
    asks: &mut Vec<(i64, i64)>,
) {
    bids.clear();
    asks.clear();
    bids.extend(book_bids.iter().take(depth));
    asks.extend(book_asks.iter().take(depth));
}

/// A source of normalized ticks, driven by the gateway's feed thread.
pub trait FeedSource: Send {
    /// The symbols this source produces ticks for. Tick `symbol` ids index into it.
    fn universe(&self) -> &Universe;

    /// Returns the next tick due at `now_ns` (ns since the Unix epoch), or when to come back.
    ///
    /// Per symbol, ticks must come out with `seq` rising by exactly 1, starting at 1, and each
    /// tick must carry the symbol's full L1 state after the event.
    fn poll(&mut self, now_ns: u64) -> FeedPoll;

    /// The best `depth` levels of each side of `symbol`'s order book, best first, written to
    /// `bids` and `asks` (both cleared first); `None` if the source keeps no book of `symbol`
    /// (the default). Prices and sizes are fixed point 10^8.
    fn book_levels(
        &self,
        symbol: u32,
        depth: usize,
        bids: &mut Vec<(i64, i64)>,
        asks: &mut Vec<(i64, i64)>,
    ) -> Option<BookHealth> {
        let _ = (symbol, depth, bids, asks);
        None
    }

    /// A short human description for logs, e.g. `simulated(500 symbols, 20000 ticks/s)`.
    fn describe(&self) -> String;

    /// Changes the source's pace to `ticks_per_sec` from `now_ns` on (live tuning). Sources
    /// paced by something else (a capture's timestamps, a network) refuse.
    ///
    /// # Errors
    /// Why the rate cannot be changed.
    fn set_rate(&mut self, ticks_per_sec: u64, now_ns: u64) -> Result<(), String> {
        let _ = (ticks_per_sec, now_ns);
        Err("this feed source has no adjustable rate".into())
    }
}
