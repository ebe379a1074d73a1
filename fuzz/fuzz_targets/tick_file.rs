//! Recorded tick files (`tickgate_feeds::tickfile::TickReader`), read from an in-memory
//! cursor: `--feed ticks:FILE` replays whatever file it is given.
//!
//! Invariants checked:
//! - reading never panics and ends (a record consumes at least 2 bytes, so the loop is
//!   bounded by the input length);
//! - the universe of an accepted header is non-empty with valid names; every tick and book
//!   read has a symbol id inside it;
//! - round trip: writing the universe and the records read (ticks and books) with
//!   `TickWriter` and reading that back gives the same universe and the same records (a stale
//!   book without its levels: the writer records none), then a clean end of file; for a
//!   version 2 input the rewrite is no longer than the input.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tickgate_feeds::BookHealth;
use tickgate_feeds::tickfile::{MAGIC, Record, TickReader, TickWriter};
use tickgate_feeds::universe::valid_name;

/// Reads every record of `bytes`; the reader, the records, and whether it ended cleanly.
/// `None` if the header is refused.
fn read_all(bytes: Vec<u8>) -> Option<(TickReader, Vec<Record>, bool)> {
    let len = bytes.len();
    let mut r = TickReader::from_reader(Path::new("fuzz.ticks"), Cursor::new(bytes)).ok()?;
    let mut records = Vec::new();
    for _ in 0..=len / 2 + 1 {
        match r.next_record() {
            Ok(Some(rec)) => {
                let symbol = match &rec {
                    Record::Tick(t) => t.symbol,
                    Record::Book(b) => b.symbol,
                };
                assert!((symbol as usize) < r.universe().len(), "record of symbol {symbol} out of range");
                records.push(rec);
            }
            Ok(None) => {
                // A clean end stays an end.
                assert!(matches!(r.next_record(), Ok(None)));
                return Some((r, records, true));
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return Some((r, records, false));
            }
        }
    }
    panic!("more records than the input can hold ({len} bytes)");
}

fuzz_target!(|data: &[u8]| {
    let Some((reader, records, _clean)) = read_all(data.to_vec()) else { return };
    let u = reader.universe();
    assert!(!u.is_empty());
    for s in u.symbols() {
        assert!(valid_name(&s.name), "{:?}", s.name);
    }

    let mut w = TickWriter::new(Vec::new(), u).expect("writing to a Vec");
    let mut want = Vec::with_capacity(records.len());
    for rec in records {
        match rec {
            Record::Tick(t) => {
                w.write(&t).expect("a tick read from the file must be writable");
                want.push(Record::Tick(t));
            }
            Record::Book(mut b) => {
                w.write_book(&b).expect("a book read from the file must be writable");
                if b.health == BookHealth::Stale {
                    b.bids.clear();
                    b.asks.clear();
                }
                want.push(Record::Book(b));
            }
        }
    }
    let bytes = w.finish().expect("flushing a Vec");
    if data.starts_with(MAGIC) {
        assert!(bytes.len() <= data.len(), "re-encoding is longer: {} > {} bytes", bytes.len(), data.len());
    }
    let (again, records2, clean) = read_all(bytes).expect("the writer's header must be readable");
    assert_eq!(again.universe().symbols(), u.symbols());
    assert_eq!(records2, want, "records changed by a write/read round trip");
    assert!(clean, "the writer's file must end cleanly");
});
