//! `tickgate record`: writes the ticks of any source to a tick file
//! (`tickgate_feeds::tickfile`), for reproducible tests, benchmarks and replays. A source that
//! keeps order books has every book change recorded too (its top `server.max_depth` levels
//! a side), so a replay of the file rebuilds the same books.
//!
//! Sources paced by a clock of their own (the simulator, replays) are recorded on a virtual
//! clock: when the source says the next tick is due at time T, the clock jumps to T instead of
//! sleeping, so a minute of simulated feed records in well under a second and the recording
//! keeps the spacing the source asked for. A bus source (NATS) runs in real time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tickgate_feeds::tickfile::{BookRecord, TickWriter};
use tickgate_feeds::{FeedPoll, FeedSource};

use crate::clock::now_ns;

/// The clock a recording runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Starts at `start_ns` and jumps to whenever the source says its next tick is due.
    Virtual {
        /// The first poll's time, ns since the Unix epoch.
        start_ns: u64,
    },
    /// The wall clock (sources paced by a network).
    Wall,
}

/// What a recording wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Ticks.
    pub ticks: u64,
    /// Order-book changes.
    pub books: u64,
}

/// Records up to `limit` ticks (all of them when `None`) from `source` into `out`, with its
/// book changes (`book_depth` levels a side), until the source ends or `stop` is set.
///
/// # Errors
/// If the file cannot be created or written.
pub fn record(
    source: &mut dyn FeedSource,
    out: &Path,
    limit: Option<u64>,
    book_depth: usize,
    clock: Clock,
    stop: &AtomicBool,
) -> anyhow::Result<Recorded> {
    let mut book = BookRecord {
        symbol: 0,
        health: tickgate_feeds::BookHealth::Live,
        ts_event: 0,
        bids: Vec::new(),
        asks: Vec::new(),
    };
    let mut w =
        TickWriter::create(out, source.universe()).with_context(|| format!("creating {}", out.display()))?;
    let virtual_clock = clock != Clock::Wall;
    let mut now = match clock {
        Clock::Virtual { start_ns } => start_ns,
        Clock::Wall => now_ns(),
    };
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| w.written() < l) {
        if !virtual_clock {
            now = now_ns();
        }
        match source.poll(now) {
            FeedPoll::Tick(t) => w.write(&t).with_context(|| format!("writing {}", out.display()))?,
            FeedPoll::Pending { until_ns: Some(t) } if virtual_clock => now = now.max(t),
            FeedPoll::Pending { .. } => std::thread::sleep(Duration::from_micros(250)),
            FeedPoll::Book { symbol, ts_event } => {
                if let Some(health) = source.book_levels(symbol, book_depth, &mut book.bids, &mut book.asks) {
                    (book.symbol, book.health, book.ts_event) = (symbol, health, ts_event);
                    w.write_book(&book).with_context(|| format!("writing {}", out.display()))?;
                }
            }
            FeedPoll::Status { .. } => {}
            FeedPoll::End => break,
        }
    }
    let n = Recorded { ticks: w.written(), books: w.books() };
    w.finish().with_context(|| format!("writing {}", out.display()))?;
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tickgate_feeds::{ReplayOptions, SimConfig, Simulator, Speed, TickReplay, Universe};

    #[test]
    fn recording_then_replaying_gives_identical_ticks() {
        let mut u = Universe::load_default().unwrap();
        u.extend_to(100);
        let make =
            || Simulator::new(u.clone(), SimConfig { rate: 20_000, ..SimConfig::default() }, 1_000_000_000);
        let path = std::env::temp_dir().join(format!("tickgate-record-{}.ticks", std::process::id()));
        let n = record(
            &mut make(),
            &path,
            Some(3_000),
            50,
            Clock::Virtual { start_ns: 1_000_000_000 },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(n, Recorded { ticks: 3_000, books: 0 });
        // The same simulator, driven the same way, is the reference.
        let mut reference = make();
        let (mut want, mut now) = (Vec::new(), 1_000_000_000);
        while want.len() < 3_000 {
            match reference.poll(now) {
                FeedPoll::Tick(t) => want.push(t),
                FeedPoll::Pending { until_ns: Some(t) } => now = now.max(t),
                other => panic!("{other:?}"),
            }
        }
        let mut replay =
            TickReplay::open(path.clone(), ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
        assert_eq!(replay.universe().symbols(), u.symbols());
        let mut got = Vec::new();
        loop {
            match replay.poll(0) {
                FeedPoll::Tick(t) => got.push(t),
                FeedPoll::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, want);
        let _ = std::fs::remove_file(path);
    }

    /// Every tick and book a source yields (a book as its top 50 levels), polling on the
    /// virtual clock, until `n` ticks.
    fn drain(src: &mut dyn FeedSource, n: usize) -> Vec<(Option<tickgate_feeds::Tick>, Option<BookRecord>)> {
        let (mut out, mut ticks, mut now) = (Vec::new(), 0, 1_000_000_000);
        while ticks < n {
            match src.poll(now) {
                FeedPoll::Tick(t) => {
                    ticks += 1;
                    out.push((Some(t), None));
                }
                FeedPoll::Book { symbol, ts_event } => {
                    let (mut bids, mut asks) = (Vec::new(), Vec::new());
                    let health = src.book_levels(symbol, 50, &mut bids, &mut asks).unwrap();
                    out.push((None, Some(BookRecord { symbol, health, ts_event, bids, asks })));
                }
                FeedPoll::Pending { until_ns: Some(t) } => now = now.max(t),
                FeedPoll::Pending { until_ns: None } => now += 1,
                FeedPoll::End => break,
                FeedPoll::Status { .. } => {}
            }
        }
        out
    }

    #[test]
    fn a_recorded_simulator_with_books_replays_the_same_ticks_and_books() {
        let mut u = Universe::load_default().unwrap();
        u.extend_to(30);
        let cfg = SimConfig { rate: 20_000, depth_levels: 8, ..SimConfig::default() };
        let make = || Simulator::new(u.clone(), cfg.clone(), 1_000_000_000);
        let path = std::env::temp_dir().join(format!("tickgate-record-books-{}.ticks", std::process::id()));
        let n = record(
            &mut make(),
            &path,
            Some(2_000),
            50,
            Clock::Virtual { start_ns: 1_000_000_000 },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(n, Recorded { ticks: 2_000, books: 1_999 });
        let want = drain(&mut make(), 2_000);
        let mut replay =
            TickReplay::open(path.clone(), ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
        let got = drain(&mut replay, 2_000);
        assert_eq!(
            got.iter().filter(|g| g.1.is_some()).count(),
            1_999,
            "a book after every event (the last one's is past the limit)"
        );
        assert_eq!(got, want);
        let _ = std::fs::remove_file(path);
    }
}
