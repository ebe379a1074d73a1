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
//!   ignores and the encoder sends as 0); the decoded tick's kind is always Quote;
//! - `decode_frame_messages` never panics, and an order-book record it decodes re-encodes
//!   (`encode_book`) to a record that decodes to the same book.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickgate::feeds::TickKind;
use tickgate::protocol::binary::{
    DecodeError, FLAG_SNAPSHOT, Message, RECORD_BOOK, RECORD_GAP, RECORD_L1, RECORD_LEN, RECORD_TRADE,
    decode_frame, decode_frame_messages, decode_message, decode_record, encode_book, encode_record,
};

fuzz_target!(|data: &[u8]| {
    for m in decode_frame_messages(data).flatten() {
        if let Message::Book(b) = m
            && b.book.bids.len().max(b.book.asks.len()) <= usize::from(b.depth)
        {
            let mut enc = Vec::new();
            encode_book(&mut enc, b.symbol, usize::from(b.depth), &b.book);
            assert_eq!(enc.len() % RECORD_LEN, 0);
            assert_eq!(decode_message(&enc), Ok(Message::Book(b)), "decode(encode(book)) != book");
        }
    }
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
            // One 88-byte unit: a book header with no levels, or a length error.
            (RECORD_BOOK, Ok(Message::Book(b))) => assert!(b.book.bids.is_empty() && b.book.asks.is_empty()),
            (RECORD_BOOK, m) => assert!(matches!(m, Err(DecodeError::BookLength { .. })), "{m:?}"),
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
