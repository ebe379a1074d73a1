//! The compact tick codec (`tickgate_feeds::codec`) and the NATS bus payloads built on it
//! (`tickgate::bus::wire::decode_tick` / `decode_universe`): what a gateway reads from the
//! bus, which anyone able to publish on it controls.
//!
//! Every input goes through all three decoders:
//! - `codec::decode` in a loop, each tick against the previous one (as in a tick file);
//! - `wire::decode_tick` of the whole input;
//! - `wire::decode_universe` of the whole input.
//!
//! Invariants checked:
//! - no decoder panics; `codec::decode` consumes at least one byte per tick;
//! - round trip: decode → encode → decode gives the same tick (and the same universe), the
//!   re-encoding is consumed exactly and is never longer than the input it came from (the
//!   encoder writes the shortest form);
//! - a decoded universe has only valid, distinct names, and is never empty.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tickgate::bus::wire::{decode_tick, decode_universe, encode_tick, encode_universe};
use tickgate_feeds::Tick;
use tickgate_feeds::codec::{decode, encode};
use tickgate_feeds::universe::valid_name;

fuzz_target!(|data: &[u8]| {
    // The codec, tick after tick, each against the previous one.
    let mut input = data;
    let mut prev = Tick { symbol: 7, ..Tick::default() };
    let mut enc = Vec::new();
    while !input.is_empty() {
        let before = input.len();
        let Ok(t) = decode(&mut input, &prev) else { break };
        let consumed = before - input.len();
        assert!(consumed > 0);
        assert_eq!(t.symbol, prev.symbol);
        enc.clear();
        encode(&mut enc, &prev, &t);
        assert!(enc.len() <= consumed, "re-encoding is longer ({} > {consumed} bytes)", enc.len());
        let mut again = enc.as_slice();
        assert_eq!(decode(&mut again, &prev), Ok(t), "decode(encode(t)) != t");
        assert!(again.is_empty(), "decode left {} bytes of its own encoding", again.len());
        prev = t;
    }

    // A bus tick payload.
    if let Ok(t) = decode_tick(data, 3) {
        assert_eq!(t.symbol, 3);
        enc.clear();
        encode_tick(&mut enc, &t);
        assert!(enc.len() <= data.len());
        let back = decode_tick(&enc, 3).unwrap_or_else(|e| panic!("re-encoded tick refused: {e}"));
        assert_eq!(back, t);
    }

    // A bus universe payload.
    if let Ok(u) = decode_universe(data) {
        assert!(!u.is_empty());
        let mut names = HashSet::new();
        for (id, s) in u.symbols().iter().enumerate() {
            assert!(valid_name(&s.name), "{:?}", s.name);
            assert!(names.insert(s.name.as_str()), "duplicate {:?}", s.name);
            assert_eq!(u.id(&s.name), Some(id as u32));
        }
        let back = decode_universe(&encode_universe(&u))
            .unwrap_or_else(|e| panic!("re-encoded universe refused: {e}"));
        assert_eq!(back.symbols(), u.symbols());
    }
});
