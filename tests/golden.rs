//! Golden bytes for the JavaScript client's binary decoder (`tests/browser/`).
//!
//! Writes one binary frame made by the gateway's own encoder, plus the values a decoder must
//! read from it, into `tests/browser/golden/`. The files are committed; this test fails when
//! the encoder's output no longer matches them (a wire-format change must be deliberate:
//! rerun with `TICKGATE_UPDATE_GOLDEN=1` and say so in the commit). When the files are
//! missing it writes them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use tickgate::feeds::{Tick, format_fixed};
use tickgate::protocol::binary::encode_record;

fn ticks() -> Vec<(Tick, bool)> {
    // The specification's example tick (docs/PROTOCOL.md).
    let base = tickgate::protocol::example_tick();
    vec![
        (base, true),
        // Large ids, seqs and timestamps beyond 2^53; fractional sizes (crypto).
        (
            Tick {
                symbol: 70_000,
                seq: (1 << 53) + 7,
                bid: 6_183_763_000_000,
                bid_size: 378_826_000,
                ask: 6_183_764_000_000,
                ask_size: 1,
                last: 6_183_763_000_000,
                last_size: 2_000_000,
                volume: i64::MAX,
                ts_event: u64::MAX,
                ts_gateway: 1,
                ..Tick::default()
            },
            false,
        ),
        // Negative prices exist (spreads, some futures); no trade yet: last = 0.
        (Tick { symbol: 3, seq: 1, bid: -150_000_000, ask: -1, last: 0, last_size: 0, ..base }, false),
    ]
}

#[test]
fn binary_golden_files_match_the_encoder() {
    let mut frame = Vec::new();
    let mut expected = String::from("[\n");
    for (i, (t, snap)) in ticks().iter().enumerate() {
        encode_record(&mut frame, t, *snap);
        let f = |v: i64| {
            let mut b = Vec::new();
            format_fixed(&mut b, v);
            String::from_utf8(b).unwrap()
        };
        expected.push_str(&format!(
            "  {{\"symbol_id\":{},\"snapshot\":{},\"seq\":\"{}\",\
             \"bid\":\"{}\",\"bid_size\":\"{}\",\"ask\":\"{}\",\"ask_size\":\"{}\",\
             \"last\":\"{}\",\"last_size\":\"{}\",\"volume\":\"{}\",\
             \"ts_event\":\"{}\",\"ts_gateway\":\"{}\"}}{}\n",
            t.symbol,
            snap,
            t.seq,
            f(t.bid),
            f(t.bid_size),
            f(t.ask),
            f(t.ask_size),
            f(t.last),
            f(t.last_size),
            f(t.volume),
            t.ts_event,
            t.ts_gateway,
            if i + 1 < ticks().len() { "," } else { "" }
        ));
    }
    expected.push_str("]\n");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/golden");
    let (bin, json) = (dir.join("binary_frame.bin"), dir.join("binary_frame.json"));
    let update = std::env::var_os("TICKGATE_UPDATE_GOLDEN").is_some();
    if update || !bin.exists() || !json.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&bin, &frame).unwrap();
        std::fs::write(&json, &expected).unwrap();
        eprintln!("wrote golden files under {}", dir.display());
    }
    assert_eq!(std::fs::read(&bin).unwrap(), frame, "binary_frame.bin differs from the encoder's output");
    assert_eq!(std::fs::read_to_string(&json).unwrap(), expected, "binary_frame.json differs");
}
