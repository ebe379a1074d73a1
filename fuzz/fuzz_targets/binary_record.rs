//! The binary update format (`protocol::binary`): `decode_frame` over arbitrary payloads and
//! `decode_record` over each 88-byte slice, with the encoder as the reference.
//!
//! Invariants checked:
//! - neither decoder panics;
//! - `decode_frame` yields exactly one `FrameLength` error for a payload that is not a whole
//!   number of records, else exactly one result per record, equal to `decode_record` of it;
//! - `decode_record` refuses any length but 88 and any type byte but 1;
//! - round trip: a decoded record re-encoded with `encode_record` gives back the same 88
//!   bytes, except the reserved bits (flags bits 1-7 and the reserved u16, which the decoder
//!   ignores and the encoder sends as 0); the decoded tick's kind is always Quote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickgate::feeds::TickKind;
use tickgate::protocol::binary::{
    DecodeError, FLAG_SNAPSHOT, Message, RECORD_GAP, RECORD_L1, RECORD_LEN, RECORD_TRADE, decode_frame,
    decode_message, decode_record, encode_record,
};

fuzz_target!(|data: &[u8]| {
    let results: Vec<_> = decode_frame(data).collect();
    let aligned = data.len().is_multiple_of(RECORD_LEN);
    if aligned {
        assert_eq!(results.len(), data.len() / RECORD_LEN);
    } else {
        assert_eq!(results, vec![Err(DecodeError::FrameLength { len: data.len() })]);
        assert_eq!(decode_record(data), Err(DecodeError::RecordLength { len: data.len() }));
    }
    // The whole records at the front are checked one by one either way.
    let whole = &data[..data.len() / RECORD_LEN * RECORD_LEN];
    let mut out = Vec::with_capacity(RECORD_LEN);
    for (i, raw) in whole.chunks_exact(RECORD_LEN).enumerate() {
        // decode_message: L1 records as decode_record, trades and gaps decoded, others refused.
        match (raw[0], decode_message(raw)) {
            (RECORD_L1, m) => assert_eq!(m, decode_record(raw).map(Message::Update)),
            (RECORD_TRADE, Ok(Message::Trade(t))) => assert_eq!(t.kind, TickKind::Trade),
            (RECORD_GAP, Ok(Message::Gap { symbol, missed })) => {
                assert_eq!(symbol.to_le_bytes(), raw[4..8]);
                assert_eq!(missed.to_le_bytes(), raw[8..16]);
            }
            (t, m) => assert_eq!(m, Err(DecodeError::UnknownType { record_type: t })),
        }
        let r = decode_record(raw);
        if aligned {
            assert_eq!(results[i], r, "decode_frame and decode_record disagree on record {i}");
        }
        match r {
            Err(e) => {
                assert_ne!(raw[0], RECORD_L1);
                assert_eq!(e, DecodeError::UnknownType { record_type: raw[0] });
            }
            Ok(rec) => {
                assert_eq!(rec.tick.kind, TickKind::Quote);
                assert_eq!(rec.snapshot, raw[1] & FLAG_SNAPSHOT != 0);
                out.clear();
                encode_record(&mut out, &rec.tick, rec.snapshot);
                assert_eq!(out.len(), RECORD_LEN);
                let mut want = raw.to_vec();
                want[1] &= FLAG_SNAPSHOT; // flags bits 1-7: reserved, sent as 0
                want[2] = 0; // reserved u16
                want[3] = 0;
                assert_eq!(out, want, "re-encoding record {i} changed it");
                assert_eq!(decode_record(&out), Ok(rec), "decode(encode(r)) != r");
            }
        }
    }
});
