//! Binance capture lines (`tickgate_feeds::binance::parse_line`, `<capture_ns> <json>`), as
//! read from capture files of any origin, and the L1 book they are folded into.
//!
//! The input is split at newlines, like a capture file; each line that is UTF-8 is parsed
//! (a non-UTF-8 line is what the replay's line reader refuses before parsing).
//!
//! Invariants checked:
//! - `parse_line` never panics;
//! - a trade or quote has the timestamp written before the first space, and non-negative
//!   quantities (`q`, `B`, `A`); its symbol (as sent, unescaped) is shorter than the line;
//! - the `L1Book` fed with the events keeps `seq` counting events, `volume` non-negative and
//!   never decreasing, `ts_event` equal to the event's capture time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickgate_feeds::binance::{Event, L1Book, capture_ns, parse_line};

fuzz_target!(|data: &[u8]| {
    let mut book = L1Book::new(1);
    let mut applied = 0u64;
    let mut volume = 0i64;
    for raw in data.split(|&b| b == b'\n') {
        // As the replay reads them: UTF-8, without the line ending.
        let Ok(line) = std::str::from_utf8(raw).map(|l| l.trim_end_matches('\r')) else { continue };
        let Ok(event) = parse_line(line) else { continue };
        let ts: Option<u64> = line.split_once(' ').and_then(|(ts, _)| ts.parse().ok());
        match &event {
            Event::Trade { capture_ns: at, symbol, qty, .. } => {
                assert!(*qty >= 0, "negative trade quantity {qty} from {line:?}");
                assert_eq!(Some(*at), ts);
                assert!(symbol.len() < line.len());
            }
            Event::Quote { capture_ns: at, symbol, bid_size, ask_size, .. } => {
                assert!(*bid_size >= 0 && *ask_size >= 0, "negative quote size from {line:?}");
                assert_eq!(Some(*at), ts);
                assert!(symbol.len() < line.len());
            }
            Event::Skip(_) => assert_eq!(capture_ns(&event), None),
        }
        match book.apply(0, &event) {
            None => assert!(matches!(event, Event::Skip(_))),
            Some(t) => {
                applied += 1;
                assert_eq!(t.seq, applied);
                assert_eq!(Some(t.ts_event), capture_ns(&event));
                assert!(t.volume >= volume, "volume went down: {} -> {}", volume, t.volume);
                volume = t.volume;
                assert!(t.last_size >= 0 && t.bid_size >= 0 && t.ask_size >= 0);
            }
        }
        assert_eq!(book.apply(1, &event), None, "an id outside the book must be ignored");
    }
});
