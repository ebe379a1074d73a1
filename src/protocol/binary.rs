//! The binary update format: fixed 88-byte little-endian records, one or more back to back
//! in a binary WebSocket frame.
//!
//! ```text
//! offset size field
//!      0    1 type        u8   1 = L1 update (RECORD_L1)
//!      1    1 flags       u8   bit 0 = snapshot (FLAG_SNAPSHOT); bits 1-7 reserved, sent as 0
//!      2    2 reserved    u16  sent as 0
//!      4    4 symbol_id   u32  the id from the "subscribed" reply
//!      8    8 seq         u64
//!     16    8 bid         i64  fixed point, scaled by 10^8
//!     24    8 bid_size    i64  fixed point, scaled by 10^8
//!     32    8 ask         i64  fixed point, scaled by 10^8
//!     40    8 ask_size    i64  fixed point, scaled by 10^8
//!     48    8 last        i64  fixed point, scaled by 10^8
//!     56    8 last_size   i64  fixed point, scaled by 10^8
//!     64    8 volume      i64  fixed point, scaled by 10^8
//!     72    8 ts_event    u64  ns since the Unix epoch
//!     80    8 ts_gateway  u64  ns since the Unix epoch
//!     88      (end)
//! ```
//!
//! The fixed-point fields are the [`Tick`]'s raw values. The tick's `kind` is not on the
//! wire. The decoder here serves the tests, the load generator and Rust clients.
//!
//! A subscription with `"trades": true` also gets trade and gap records, the same length so a
//! client that does not know a type skips it:
//!
//! ```text
//! trade (RECORD_TRADE)                     gap (RECORD_GAP)
//! offset size field                        offset size field
//!      0    1 type       u8  2                  0    1 type       u8  3
//!      1    1 side       u8  0 unknown,         1    3 reserved   sent as 0
//!                            1 buy, 2 sell      4    4 symbol_id  u32
//!      2    2 reserved   u16 sent as 0          8    8 missed     u64 trades dropped
//!      4    4 symbol_id  u32                   16   72 reserved   sent as 0
//!      8    8 seq        u64
//!     16    8 price      i64 fixed point
//!     24    8 size       i64 fixed point
//!     32    8 trade_id   u64 0 = none
//!     40   32 reserved   sent as 0
//!     72    8 ts_event   u64
//!     80    8 ts_gateway u64
//! ```

//!
//! A subscription with `"depth": N` also gets order-book records: an 88-byte header followed by
//! the levels, the whole padded with zeros to a multiple of 88 bytes and its length in 88-byte
//! units in the header, so a walker steps over it in one go (`decode_frame_messages` does):
//!
//! ```text
//! book (RECORD_BOOK)
//! offset size field
//!      0    1 type       u8  4
//!      1    1 flags      u8  bit 1 = stale (FLAG_STALE): the levels are the last good ones
//!      2    2 units      u16 the record's length in 88-byte units, this header included
//!      4    4 symbol_id  u32
//!      8    8 seq        u64 the book's own sequence
//!     16    2 bids       u16 number of bid levels
//!     18    2 asks       u16 number of ask levels
//!     20    2 depth      u16 the depth subscribed to
//!     22   50 reserved   sent as 0
//!     72    8 ts_event   u64
//!     80    8 ts_gateway u64
//!     88      bids (best first) then asks (best first), 16 bytes each: price i64, size i64
//!             (fixed point 10^8); zero padding to units × 88 bytes
//! ```

use crate::books::Levels;
use crate::feeds::{Side, Tick, TickKind};

/// Length of one record in bytes.
pub const RECORD_LEN: usize = 88;
/// Record type of an L1 update (byte 0).
pub const RECORD_L1: u8 = 1;
/// Record type of a trade (byte 0).
pub const RECORD_TRADE: u8 = 2;
/// Record type of a gap notice (byte 0).
pub const RECORD_GAP: u8 = 3;
/// Bit of the flags byte (byte 1) set when the record is a snapshot.
pub const FLAG_SNAPSHOT: u8 = 1;
/// Record type of an order book (byte 0): a header and its levels, several 88-byte units.
pub const RECORD_BOOK: u8 = 4;
/// Bit of a book record's flags byte set when the book is stale.
pub const FLAG_STALE: u8 = 2;

/// Appends one order-book record of `book`'s best `depth` levels a side (see the module docs)
/// to `out`; `symbol` is the symbol id.
pub fn encode_book(out: &mut Vec<u8>, symbol: u32, depth: usize, book: &Levels) {
    let (bids, asks) = (&book.bids[..book.bids.len().min(depth)], &book.asks[..book.asks.len().min(depth)]);
    let body = (bids.len() + asks.len()) * 16;
    let units = 1 + body.div_ceil(RECORD_LEN);
    let start = out.len();
    let mut h = [0u8; RECORD_LEN];
    h[0] = RECORD_BOOK;
    h[1] = if book.stale { FLAG_STALE } else { 0 };
    h[2..4].copy_from_slice(&(units.min(usize::from(u16::MAX)) as u16).to_le_bytes());
    h[4..8].copy_from_slice(&symbol.to_le_bytes());
    h[8..16].copy_from_slice(&book.seq.to_le_bytes());
    h[16..18].copy_from_slice(&(bids.len() as u16).to_le_bytes());
    h[18..20].copy_from_slice(&(asks.len() as u16).to_le_bytes());
    h[20..22].copy_from_slice(&(depth.min(usize::from(u16::MAX)) as u16).to_le_bytes());
    h[72..80].copy_from_slice(&book.ts_event.to_le_bytes());
    h[80..88].copy_from_slice(&book.ts_gateway.to_le_bytes());
    out.extend_from_slice(&h);
    for &(p, q) in bids.iter().chain(asks) {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&q.to_le_bytes());
    }
    out.resize(start + units * RECORD_LEN, 0);
}

/// A decoded order-book record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookRecord {
    /// The symbol id.
    pub symbol: u32,
    /// The depth subscribed to.
    pub depth: u16,
    /// The levels, seq, stale flag and timestamps.
    pub book: Levels,
}

/// Decodes one order-book record (`b` holds exactly its `units` × 88 bytes).
fn decode_book(b: &[u8]) -> Result<BookRecord, DecodeError> {
    let h: &[u8; RECORD_LEN] = b
        .get(..RECORD_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::RecordLength { len: b.len() })?;
    let u16_at = |off: usize| usize::from(u16::from_le_bytes([h[off], h[off + 1]]));
    let (units, bids, asks) = (u16_at(2), u16_at(16), u16_at(18));
    // Exactly the units its levels need: a larger count would swallow the records after it.
    if units != 1 + ((bids + asks) * 16).div_ceil(RECORD_LEN) || b.len() != units * RECORD_LEN {
        return Err(DecodeError::BookLength { units, bids, asks, len: b.len() });
    }
    let level = |i: usize| {
        let at = RECORD_LEN + i * 16;
        let mut p = [0u8; 8];
        let mut q = [0u8; 8];
        p.copy_from_slice(&b[at..at + 8]);
        q.copy_from_slice(&b[at + 8..at + 16]);
        (i64::from_le_bytes(p), i64::from_le_bytes(q))
    };
    Ok(BookRecord {
        symbol: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        depth: u16_at(20) as u16,
        book: Levels {
            seq: u64_at(h, 8),
            stale: h[1] & FLAG_STALE != 0,
            ts_event: u64_at(h, 72),
            ts_gateway: u64_at(h, 80),
            bids: (0..bids).map(level).collect(),
            asks: (bids..bids + asks).map(level).collect(),
        },
    })
}

/// Appends one 88-byte trade record for the trade `tick` to `out`.
#[inline]
pub fn encode_trade(out: &mut Vec<u8>, tick: &Tick) {
    out.extend_from_slice(&trade_record(tick));
}

/// The 88-byte trade record of the trade `tick`.
#[inline]
pub fn trade_record(tick: &Tick) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = RECORD_TRADE;
    r[1] = tick.side as u8;
    r[4..8].copy_from_slice(&tick.symbol.to_le_bytes());
    r[8..16].copy_from_slice(&tick.seq.to_le_bytes());
    r[16..24].copy_from_slice(&tick.last.to_le_bytes());
    r[24..32].copy_from_slice(&tick.last_size.to_le_bytes());
    r[32..40].copy_from_slice(&tick.trade_id.to_le_bytes());
    r[72..80].copy_from_slice(&tick.ts_event.to_le_bytes());
    r[80..88].copy_from_slice(&tick.ts_gateway.to_le_bytes());
    r
}

/// Appends one 88-byte gap record: `missed` trades of `symbol` will not be sent.
pub fn encode_gap(out: &mut Vec<u8>, symbol: u32, missed: u64) {
    out.extend_from_slice(&gap_record(symbol, missed));
}

/// The 88-byte gap record: `missed` trades of `symbol` will not be sent.
pub fn gap_record(symbol: u32, missed: u64) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = RECORD_GAP;
    r[4..8].copy_from_slice(&symbol.to_le_bytes());
    r[8..16].copy_from_slice(&missed.to_le_bytes());
    r
}

/// One decoded record of any type this version knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// An L1 update or snapshot.
    Update(Record),
    /// A trade: `symbol`, `seq`, `last` (price), `last_size` (size), `trade_id`, `side`,
    /// `ts_event` and `ts_gateway` are set, `kind` is [`TickKind::Trade`], the rest is 0.
    Trade(Tick),
    /// `missed` trades of `symbol` were dropped.
    Gap {
        /// The symbol id.
        symbol: u32,
        /// How many.
        missed: u64,
    },
    /// An order book (the record's whole length).
    Book(BookRecord),
}

/// Decodes one 88-byte record of any known type.
///
/// # Errors
///
/// As [`decode_record`]; [`DecodeError::UnknownType`] only for types other than L1, trade
/// and gap.
pub fn decode_message(b: &[u8]) -> Result<Message, DecodeError> {
    if b.first() == Some(&RECORD_BOOK) {
        return decode_book(b).map(Message::Book);
    }
    let r: &[u8; RECORD_LEN] = b.try_into().map_err(|_| DecodeError::RecordLength { len: b.len() })?;
    let symbol = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
    match r[0] {
        RECORD_L1 => decode_record(b).map(Message::Update),
        RECORD_TRADE => Ok(Message::Trade(Tick {
            symbol,
            kind: TickKind::Trade,
            seq: u64_at(r, 8),
            last: u64_at(r, 16) as i64,
            last_size: u64_at(r, 24) as i64,
            trade_id: u64_at(r, 32),
            side: Side::from_u8(r[1]),
            ts_event: u64_at(r, 72),
            ts_gateway: u64_at(r, 80),
            ..Tick::default()
        })),
        RECORD_GAP => Ok(Message::Gap { symbol, missed: u64_at(r, 8) }),
        t => Err(DecodeError::UnknownType { record_type: t }),
    }
}

/// As [`decode_frame`], for records of any known type ([`decode_message`]): a book record is
/// taken whole (its `units`). A payload that is not a whole number of records yields one
/// [`DecodeError::FrameLength`] and nothing else; a book record whose length runs past the
/// frame ends the iteration with a [`DecodeError::BookLength`].
pub fn decode_frame_messages(payload: &[u8]) -> impl Iterator<Item = Result<Message, DecodeError>> + '_ {
    let len = payload.len();
    let mut rest = if len.is_multiple_of(RECORD_LEN) { payload } else { &payload[..0] };
    let mut bad = (!len.is_multiple_of(RECORD_LEN)).then_some(DecodeError::FrameLength { len });
    std::iter::from_fn(move || {
        if let Some(e) = bad.take() {
            return Some(Err(e));
        }
        let first = rest.first()?;
        let units =
            if *first == RECORD_BOOK { usize::from(u16::from_le_bytes([rest[2], rest[3]])) } else { 1 };
        let n = units * RECORD_LEN;
        if units == 0 || n > rest.len() {
            let left = rest.len();
            rest = &rest[..0];
            return Some(Err(DecodeError::BookPastFrame { units, left }));
        }
        let (record, tail) = rest.split_at(n);
        rest = tail;
        Some(decode_message(record))
    })
}

/// Splits a binary frame's payload into records decoded by `decode`: one
/// [`DecodeError::FrameLength`] and nothing else if it is not a whole number of records.
fn frame_records<T>(
    payload: &[u8],
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> impl Iterator<Item = Result<T, DecodeError>> {
    let len = payload.len();
    let (bad, records) = if len.is_multiple_of(RECORD_LEN) {
        (None, payload)
    } else {
        (Some(DecodeError::FrameLength { len }), &payload[..0])
    };
    bad.map(Err).into_iter().chain(records.chunks_exact(RECORD_LEN).map(decode))
}

/// Appends one 88-byte record for `tick` to `out`. The record is built on the stack and
/// appended with a single copy; `out` is the only thing that may allocate (when it grows).
#[inline]
pub fn encode_record(out: &mut Vec<u8>, tick: &Tick, snapshot: bool) {
    let mut r = [0u8; RECORD_LEN];
    r[0] = RECORD_L1;
    r[1] = if snapshot { FLAG_SNAPSHOT } else { 0 };
    // r[2..4]: reserved, zero.
    r[4..8].copy_from_slice(&tick.symbol.to_le_bytes());
    r[8..16].copy_from_slice(&tick.seq.to_le_bytes());
    r[16..24].copy_from_slice(&tick.bid.to_le_bytes());
    r[24..32].copy_from_slice(&tick.bid_size.to_le_bytes());
    r[32..40].copy_from_slice(&tick.ask.to_le_bytes());
    r[40..48].copy_from_slice(&tick.ask_size.to_le_bytes());
    r[48..56].copy_from_slice(&tick.last.to_le_bytes());
    r[56..64].copy_from_slice(&tick.last_size.to_le_bytes());
    r[64..72].copy_from_slice(&tick.volume.to_le_bytes());
    r[72..80].copy_from_slice(&tick.ts_event.to_le_bytes());
    r[80..88].copy_from_slice(&tick.ts_gateway.to_le_bytes());
    out.extend_from_slice(&r);
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The update; `tick.symbol` is the record's `symbol_id` and `tick.kind` is always
    /// [`TickKind::Quote`] (the kind is not on the wire).
    pub tick: Tick,
    /// Whether the snapshot flag was set.
    pub snapshot: bool,
}

/// Why a binary payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A record slice was not exactly [`RECORD_LEN`] bytes.
    #[error("binary record must be 88 bytes, got {len}")]
    RecordLength {
        /// The length given.
        len: usize,
    },
    /// A frame's payload length is not a multiple of [`RECORD_LEN`].
    #[error("binary frame of {len} bytes is not a whole number of 88-byte records")]
    FrameLength {
        /// The payload length.
        len: usize,
    },
    /// The record's type byte is not one this decoder knows. Records keep their 88-byte
    /// length, so a client may skip such a record and go on with the next.
    #[error("unknown binary record type {record_type}")]
    UnknownType {
        /// The type byte.
        record_type: u8,
    },
    /// A book record whose `units` is not what its levels take.
    #[error("book record of {units} units ({len} bytes) for {bids} bids and {asks} asks: the wrong length")]
    BookLength {
        /// The record's `units` field.
        units: usize,
        /// Its bid count.
        bids: usize,
        /// Its ask count.
        asks: usize,
        /// The bytes it has.
        len: usize,
    },
    /// A book record whose `units` is 0 or runs past the end of its frame.
    #[error("book record of {units} units with {left} bytes left in the frame")]
    BookPastFrame {
        /// The record's `units` field.
        units: usize,
        /// Bytes from the record's start to the frame's end.
        left: usize,
    },
}

/// Decodes one 88-byte record.
///
/// For forward compatibility the reserved bits of `flags` (1–7) and the reserved `u16` are
/// ignored, not checked: a future server may use them for information an older client can
/// safely skip.
///
/// # Errors
///
/// [`DecodeError::RecordLength`] if `b` is not exactly 88 bytes,
/// [`DecodeError::UnknownType`] if the type byte is not [`RECORD_L1`].
pub fn decode_record(b: &[u8]) -> Result<Record, DecodeError> {
    let r: &[u8; RECORD_LEN] = b.try_into().map_err(|_| DecodeError::RecordLength { len: b.len() })?;
    if r[0] != RECORD_L1 {
        return Err(DecodeError::UnknownType { record_type: r[0] });
    }
    let tick = Tick {
        symbol: u32::from_le_bytes([r[4], r[5], r[6], r[7]]),
        kind: TickKind::Quote,
        seq: u64_at(r, 8),
        bid: u64_at(r, 16) as i64,
        bid_size: u64_at(r, 24) as i64,
        ask: u64_at(r, 32) as i64,
        ask_size: u64_at(r, 40) as i64,
        last: u64_at(r, 48) as i64,
        last_size: u64_at(r, 56) as i64,
        volume: u64_at(r, 64) as i64,
        ts_event: u64_at(r, 72),
        ts_gateway: u64_at(r, 80),
        ..Tick::default()
    };
    Ok(Record { tick, snapshot: r[1] & FLAG_SNAPSHOT != 0 })
}

/// The little-endian `u64` at `off` (a constant offset, at most `RECORD_LEN - 8`).
#[inline]
fn u64_at(r: &[u8; RECORD_LEN], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&r[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Decodes every record of a binary frame's payload, in order.
///
/// If the payload length is not a multiple of [`RECORD_LEN`], the iterator yields a single
/// [`DecodeError::FrameLength`] and nothing else (no partial decoding of a corrupt frame).
/// Otherwise it yields one result per record; an [`DecodeError::UnknownType`] record does not
/// stop the iteration. An empty payload yields nothing.
pub fn decode_frame(payload: &[u8]) -> impl Iterator<Item = Result<Record, DecodeError>> {
    frame_records(payload, decode_record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The specification's example tick, on symbol 7 (any id works in a record).
    fn example_tick() -> Tick {
        Tick { symbol: 7, ..crate::protocol::example_tick() }
    }

    #[test]
    fn book_records_round_trip_walk_whole_and_refuse_a_wrong_length() {
        let book = Levels {
            seq: 9,
            stale: true,
            ts_event: 1,
            ts_gateway: 2,
            bids: vec![(100, 1), (99, 2), (98, 3)],
            asks: vec![(101, 4), (102, 5), (103, 6), (104, 7)],
        };
        let mut frame = Vec::new();
        encode_record(&mut frame, &example_tick(), false);
        encode_book(&mut frame, 7, 3, &book);
        encode_trade(&mut frame, &Tick { kind: TickKind::Trade, ..example_tick() });
        // 3 + 3 levels (cut to the depth): 96 bytes, so a header and two units.
        assert_eq!(frame.len(), RECORD_LEN * (1 + 3 + 1));
        assert_eq!(u16::from_le_bytes([frame[RECORD_LEN + 2], frame[RECORD_LEN + 3]]), 3);
        let msgs: Vec<_> = decode_frame_messages(&frame).collect();
        let cut = Levels { asks: book.asks[..3].to_vec(), ..book.clone() };
        assert_eq!(msgs.len(), 3);
        assert!(matches!(msgs[0], Ok(Message::Update(_))));
        assert_eq!(msgs[1], Ok(Message::Book(BookRecord { symbol: 7, depth: 3, book: cut })));
        assert!(matches!(msgs[2], Ok(Message::Trade(_))));
        // A units field one too large: that record is refused (it would swallow the trade).
        let mut bad = frame.clone();
        bad[RECORD_LEN + 2] = 4;
        let msgs: Vec<_> = decode_frame_messages(&bad).collect();
        assert!(
            matches!(msgs[1], Err(DecodeError::BookLength { units: 4, bids: 3, asks: 3, .. })),
            "{msgs:?}"
        );
        // Past the frame's end: the walk stops there.
        bad[RECORD_LEN + 2] = 9;
        let msgs: Vec<_> = decode_frame_messages(&bad).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1], Err(DecodeError::BookPastFrame { units: 9, left: 4 * RECORD_LEN }));
    }

    #[test]
    fn golden_layout() {
        let t = Tick {
            symbol: 0x0403_0201,
            kind: TickKind::Trade,
            seq: 0x0102_0304_0506_0708,
            bid: -1,
            bid_size: 2,
            ask: i64::MIN,
            ask_size: i64::MAX,
            last: 0x11,
            last_size: 0x22,
            volume: 0x1_0000_0000,
            ts_event: u64::MAX,
            ts_gateway: 0xAABB,
            ..Tick::default()
        };
        let mut out = Vec::new();
        encode_record(&mut out, &t, true);
        assert_eq!(out.len(), RECORD_LEN);
        // (offset, expected bytes)
        let cases: &[(usize, &[u8])] = &[
            (0, &[1]),
            (1, &[1]),
            (2, &[0, 0]),
            (4, &[1, 2, 3, 4]),
            (8, &[8, 7, 6, 5, 4, 3, 2, 1]),
            (16, &[0xff; 8]),
            (24, &[2, 0, 0, 0, 0, 0, 0, 0]),
            (32, &[0, 0, 0, 0, 0, 0, 0, 0x80]),
            (40, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            (48, &[0x11, 0, 0, 0, 0, 0, 0, 0]),
            (56, &[0x22, 0, 0, 0, 0, 0, 0, 0]),
            (64, &[0, 0, 0, 0, 1, 0, 0, 0]),
            (72, &[0xff; 8]),
            (80, &[0xBB, 0xAA, 0, 0, 0, 0, 0, 0]),
        ];
        let mut covered = 0;
        for &(off, want) in cases {
            assert_eq!(&out[off..off + want.len()], want, "offset {off}");
            covered += want.len();
        }
        assert_eq!(covered, RECORD_LEN);

        out.clear();
        encode_record(&mut out, &t, false);
        assert_eq!(out[1], 0, "snapshot flag clear");
    }

    #[test]
    fn example_round_trips() {
        let mut out = Vec::new();
        encode_record(&mut out, &example_tick(), false);
        encode_record(&mut out, &example_tick(), true);
        let recs: Vec<_> = decode_frame(&out).collect();
        assert_eq!(
            recs,
            vec![
                Ok(Record { tick: example_tick(), snapshot: false }),
                Ok(Record { tick: example_tick(), snapshot: true }),
            ]
        );
    }

    #[test]
    fn trade_and_gap_records_round_trip_and_keep_their_layout() {
        let t = Tick {
            symbol: 0x0403_0201,
            kind: TickKind::Trade,
            seq: 43,
            last: 0x11,
            last_size: 0x22,
            trade_id: 0x0a0b,
            side: Side::Sell,
            ts_event: 5,
            ts_gateway: 6,
            ..Tick::default()
        };
        let mut out = Vec::new();
        encode_trade(&mut out, &t);
        encode_gap(&mut out, 9, 1234);
        assert_eq!(out.len(), 2 * RECORD_LEN);
        assert_eq!(&out[..4], &[RECORD_TRADE, 2, 0, 0]);
        assert_eq!(&out[4..8], &[1, 2, 3, 4]);
        assert_eq!(&out[32..34], &[0x0b, 0x0a]);
        assert!(out[40..72].iter().all(|&b| b == 0), "reserved bytes are zero");
        assert_eq!(out[RECORD_LEN], RECORD_GAP);
        let got: Vec<_> = decode_frame_messages(&out).collect();
        assert_eq!(got, vec![Ok(Message::Trade(t)), Ok(Message::Gap { symbol: 9, missed: 1234 })]);
        // An L1-only decoder skips them as unknown types, as the protocol promises.
        let old: Vec<_> = decode_frame(&out).collect();
        assert_eq!(old[0], Err(DecodeError::UnknownType { record_type: RECORD_TRADE }));
        assert_eq!(old[1], Err(DecodeError::UnknownType { record_type: RECORD_GAP }));
    }

    #[test]
    fn kind_is_not_on_the_wire() {
        let t = Tick { kind: TickKind::Trade, ..example_tick() };
        let mut out = Vec::new();
        encode_record(&mut out, &t, false);
        let r = decode_record(&out).unwrap();
        assert_eq!(r.tick.kind, TickKind::Quote);
        assert_eq!(r.tick, Tick { kind: TickKind::Quote, ..t });
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let mut out = Vec::new();
        encode_record(&mut out, &example_tick(), false);
        out[1] = 0xfe; // every reserved flag bit, snapshot clear
        out[2] = 0xff;
        out[3] = 0xff;
        let r = decode_record(&out).unwrap();
        assert_eq!(r, Record { tick: example_tick(), snapshot: false });
        out[1] = 0xff;
        assert!(decode_record(&out).unwrap().snapshot);
    }

    #[test]
    fn record_errors() {
        let mut rec = Vec::new();
        encode_record(&mut rec, &example_tick(), false);
        let cases: &[(&[u8], DecodeError)] = &[
            (&[], DecodeError::RecordLength { len: 0 }),
            (&rec[..87], DecodeError::RecordLength { len: 87 }),
            (&[1u8; 89], DecodeError::RecordLength { len: 89 }),
        ];
        for (b, want) in cases {
            assert_eq!(decode_record(b), Err(*want));
        }
        for ty in [0u8, 2, 0xff] {
            let mut r = rec.clone();
            r[0] = ty;
            assert_eq!(decode_record(&r), Err(DecodeError::UnknownType { record_type: ty }));
        }
    }

    #[test]
    fn frame_errors() {
        let mut two = Vec::new();
        encode_record(&mut two, &example_tick(), false);
        encode_record(&mut two, &example_tick(), false);
        for len in [1usize, 87, 89, 175, 177] {
            let payload = vec![1u8; len.max(two.len())];
            let payload = if len <= two.len() { &two[..len] } else { &payload[..len] };
            let got: Vec<_> = decode_frame(payload).collect();
            assert_eq!(got, vec![Err(DecodeError::FrameLength { len })], "len {len}");
        }
        assert_eq!(decode_frame(&[]).count(), 0);
        // An unknown record type does not stop the iteration.
        two[0] = 9;
        let got: Vec<_> = decode_frame(&two).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(DecodeError::UnknownType { record_type: 9 }));
        assert!(got[1].is_ok());
    }

    proptest! {
        #[test]
        fn round_trip(
            symbol in any::<u32>(),
            seq in any::<u64>(),
            v in any::<[i64; 7]>(),
            ts in any::<[u64; 2]>(),
            snapshot in any::<bool>(),
        ) {
            let t = Tick {
                symbol, kind: TickKind::Quote, seq,
                bid: v[0], bid_size: v[1], ask: v[2], ask_size: v[3],
                last: v[4], last_size: v[5], volume: v[6],
                ts_event: ts[0], ts_gateway: ts[1],
                ..Tick::default()
            };
            let mut out = vec![0xAA]; // appends after existing content
            encode_record(&mut out, &t, snapshot);
            prop_assert_eq!(out.len(), 1 + RECORD_LEN);
            prop_assert_eq!(decode_record(&out[1..]), Ok(Record { tick: t, snapshot }));
        }
    }
}
