//! `tickgate record`: writes the ticks of any source to a tick file
//! (`tickgate_feeds::tickfile`), for reproducible tests, benchmarks and replays.
//!
//! Sources paced by a clock of their own (the simulator, replays) are recorded on a virtual
//! clock: when the source says the next tick is due at time T, the clock jumps to T instead of
//! sleeping, so a minute of simulated feed records in well under a second and the recording
//! keeps the spacing the source asked for. A bus source (NATS) runs in real time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tickgate_feeds::tickfile::TickWriter;
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

/// Records up to `limit` ticks (all of them when `None`) from `source` into `out`, until the
/// source ends or `stop` is set. Returns the number of ticks written.
///
/// # Errors
/// If the file cannot be created or written.
pub fn record(
    source: &mut dyn FeedSource,
    out: &Path,
    limit: Option<u64>,
    clock: Clock,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
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
            // Tick files hold L1 events and trades; order books are not recorded yet.
            FeedPoll::Status { .. } | FeedPoll::Book { .. } => {}
            FeedPoll::End => break,
        }
    }
    let n = w.written();
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
            Clock::Virtual { start_ns: 1_000_000_000 },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(n, 3_000);
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
}
