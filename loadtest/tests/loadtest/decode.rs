//! Our decoders against the gateway's own encoders, on random ticks and books: exact
//! fixed-point equality for JSON (simd-json + raw text) and binary (88-byte records, and book
//! records of several 88-byte units).

use tickgate::books::Levels;
use tickgate::feeds::{Tick, TickKind};
use tickgate::protocol::binary::{BookRecord, encode_record};
use tickgate::protocol::frame::{OpCode, write_frame};
use tickgate::protocol::json::encode_update;
use tickgate_loadtest::decode::{JsonDecoder, SymbolTable, Update, binary_book, binary_updates, record_len};
use tickgate_loadtest::ws::frame::{check, parse_header};

fn symbols() -> SymbolTable {
    SymbolTable::new((0..50).map(|i| if i % 7 == 0 { format!("BRK.{i}") } else { format!("S{i}") }).collect())
        .unwrap()
}

/// Random ticks: realistic prices, and full-range values (negative, huge, i64 extremes).
fn ticks(n: usize) -> Vec<Tick> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let fixed = |rng: &mut fastrand::Rng| match i % 4 {
            0 => rng.i64(0..1_000_000) * 1_000_000, // cents
            1 => rng.i64(0..100_000_000_000),       // up to 1000.00000000
            2 => rng.i64(..),                       // anything
            _ => [0, 1, -1, i64::MAX, i64::MIN, 100_000_000][rng.usize(0..6)],
        };
        v.push(Tick {
            symbol: rng.u32(0..50),
            kind: TickKind::Quote,
            seq: rng.u64(..),
            bid: fixed(&mut rng),
            bid_size: fixed(&mut rng),
            ask: fixed(&mut rng),
            ask_size: fixed(&mut rng),
            last: fixed(&mut rng),
            last_size: fixed(&mut rng),
            volume: fixed(&mut rng),
            ts_event: rng.u64(..),
            ts_gateway: rng.u64(..),
            ..Tick::default()
        });
    }
    v
}

#[test]
fn json_decoding_matches_the_gateways_encoder() {
    let syms = symbols();
    let mut dec = JsonDecoder::new();
    for (i, t) in ticks(400).into_iter().enumerate() {
        let snapshot = i % 3 == 0;
        // Framed exactly as the gateway writes it, then decoded in place in the frame.
        let mut payload = Vec::new();
        encode_update(&mut payload, &t, syms.name(t.symbol), snapshot);
        let mut wire = Vec::new();
        write_frame(&mut wire, OpCode::Text, &payload);
        let h = parse_header(&wire).unwrap().unwrap();
        check(&h).unwrap();
        let u = dec.decode_update(&mut wire[h.payload], &syms).unwrap_or_else(|e| {
            panic!("tick {t:?}: {e}: {}", String::from_utf8_lossy(&payload));
        });
        assert_eq!(u, Update { tick: t, snapshot }, "{}", String::from_utf8_lossy(&payload));
    }
}

#[test]
fn binary_decoding_matches_the_gateways_encoder() {
    let ticks = ticks(300);
    let mut payload = Vec::new();
    for (i, t) in ticks.iter().enumerate() {
        encode_record(&mut payload, t, i % 5 == 0);
    }
    let mut wire = Vec::new();
    write_frame(&mut wire, OpCode::Binary, &payload);
    let h = parse_header(&wire).unwrap().unwrap();
    let got: Vec<Update> = binary_updates(&wire[h.payload]).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), ticks.len());
    for (i, (u, t)) in got.iter().zip(&ticks).enumerate() {
        assert_eq!(*u, Update { tick: *t, snapshot: i % 5 == 0 });
    }
    // A torn frame is one error, not a partial decode.
    assert_eq!(binary_updates(&payload[..100]).count(), 1);
    assert!(binary_updates(&payload[..100]).all(|r| r.is_err()));
}

/// Random books: realistic ladders, full-range values, empty sides, stale flags.
fn books(n: usize) -> Vec<(u32, usize, Levels)> {
    let mut rng = fastrand::Rng::with_seed(11);
    (0..n)
        .map(|i| {
            let side = |rng: &mut fastrand::Rng| -> Vec<(i64, i64)> {
                (0..rng.usize(0..=12))
                    .map(|_| match i % 3 {
                        0 => (rng.i64(0..10_000_000) * 1_000_000, rng.i64(1..100_000_000_000)),
                        1 => (rng.i64(..), rng.i64(..)),
                        _ => ([i64::MIN, i64::MAX, 0, 1, -1][rng.usize(0..5)], rng.i64(..)),
                    })
                    .collect()
            };
            let book = Levels {
                seq: rng.u64(..),
                stale: rng.bool(),
                ts_event: rng.u64(..),
                ts_gateway: rng.u64(..),
                bids: side(&mut rng),
                asks: side(&mut rng),
            };
            (rng.u32(0..50), rng.usize(12..=60), book)
        })
        .collect()
}

#[test]
fn json_books_decode_exactly_as_the_gateway_encodes_them() {
    let syms = symbols();
    let mut dec = JsonDecoder::new();
    for (symbol, depth, book) in books(300) {
        let mut payload = Vec::new();
        tickgate::protocol::json::encode_book(&mut payload, syms.name(symbol), depth, &book);
        let mut wire = Vec::new();
        write_frame(&mut wire, OpCode::Text, &payload);
        let h = parse_header(&wire).unwrap().unwrap();
        let got = dec.decode_book(&mut wire[h.payload], &syms).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&payload));
        });
        assert_eq!(
            got,
            BookRecord { symbol, depth: depth as u16, book },
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
}

#[test]
fn binary_books_are_walked_between_updates() {
    let ticks = ticks(50);
    let books = books(50);
    let mut payload = Vec::new();
    for (t, (symbol, depth, book)) in ticks.iter().zip(&books) {
        encode_record(&mut payload, t, false);
        tickgate::protocol::binary::encode_book(&mut payload, *symbol, *depth, book);
    }
    let (mut at, mut got_ticks, mut got_books) = (0, Vec::new(), Vec::new());
    while at < payload.len() {
        let len = record_len(&payload[at..]).unwrap();
        let record = &payload[at..at + len];
        if record[0] == tickgate::protocol::binary::RECORD_BOOK {
            got_books.push(binary_book(record).unwrap());
        } else {
            got_ticks.push(binary_updates(record).next().unwrap().unwrap().tick);
        }
        at += len;
    }
    assert_eq!(got_ticks, ticks);
    let want: Vec<BookRecord> = books
        .into_iter()
        .map(|(symbol, depth, book)| BookRecord { symbol, depth: depth as u16, book })
        .collect();
    assert_eq!(got_books, want);
}
