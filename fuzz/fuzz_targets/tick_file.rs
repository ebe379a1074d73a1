//! Recorded tick files (`tickgate_feeds::tickfile::TickReader`), read from an in-memory
//! cursor: `--feed ticks:FILE` replays whatever file it is given.
//!
//! Invariants checked:
//! - reading never panics and ends (a tick consumes at least 2 bytes, so the loop is bounded
//!   by the input length);
//! - the universe of an accepted header is non-empty with valid names; every tick read has a
//!   symbol id inside it;
//! - round trip: writing the universe and the ticks read with `TickWriter` and reading that
//!   back gives the same universe and the same ticks, then a clean end of file.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tickgate_feeds::Tick;
use tickgate_feeds::tickfile::{TickReader, TickWriter};
use tickgate_feeds::universe::valid_name;

/// Reads every tick of `bytes`; the universe's symbols, the ticks, and whether it ended
/// cleanly. `None` if the header is refused.
fn read_all(bytes: Vec<u8>) -> Option<(TickReader, Vec<Tick>, bool)> {
    let len = bytes.len();
    let mut r = TickReader::from_reader(Path::new("fuzz.ticks"), Cursor::new(bytes)).ok()?;
    let mut ticks = Vec::new();
    for _ in 0..=len / 2 + 1 {
        match r.next_tick() {
            Ok(Some(t)) => {
                assert!((t.symbol as usize) < r.universe().len(), "tick of symbol {} out of range", t.symbol);
                ticks.push(t);
            }
            Ok(None) => {
                // A clean end stays an end.
                assert!(matches!(r.next_tick(), Ok(None)));
                return Some((r, ticks, true));
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return Some((r, ticks, false));
            }
        }
    }
    panic!("more ticks than the input can hold ({len} bytes)");
}

fuzz_target!(|data: &[u8]| {
    let Some((reader, ticks, _clean)) = read_all(data.to_vec()) else { return };
    let u = reader.universe();
    assert!(!u.is_empty());
    for s in u.symbols() {
        assert!(valid_name(&s.name), "{:?}", s.name);
    }

    let mut w = TickWriter::new(Vec::new(), u).expect("writing to a Vec");
    for t in &ticks {
        w.write(t).expect("a tick read from the file must be writable");
    }
    let bytes = w.finish().expect("flushing a Vec");
    assert!(bytes.len() <= data.len(), "re-encoding is longer: {} > {} bytes", bytes.len(), data.len());
    let (again, ticks2, clean) = read_all(bytes).expect("the writer's header must be readable");
    assert_eq!(again.universe().symbols(), u.symbols());
    assert_eq!(ticks2, ticks, "ticks changed by a write/read round trip");
    assert!(clean, "the writer's file must end cleanly");
});
