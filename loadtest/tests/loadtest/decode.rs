//! Our decoders against the gateway's own encoders, on random ticks: exact fixed-point
//! equality for JSON (simd-json + raw text) and binary (88-byte records).

use tickgate::feeds::{Tick, TickKind};
use tickgate::protocol::binary::encode_record;
use tickgate::protocol::frame::{OpCode, write_frame};
use tickgate::protocol::json::encode_update;
use tickgate_loadtest::decode::{JsonDecoder, SymbolTable, Update, binary_updates};
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
