//! Decoding what the gateway sends: updates (JSON and binary) and control replies.
//!
//! - **JSON updates** are parsed with simd-json **in place**, in the connection's read
//!   buffer (no copy of the frame), into a reused tape. simd-json reads decimals as `f64`,
//!   which is not exact for every fixed-point value, so the seven price/size fields are
//!   taken from their **raw text** instead, with the gateway's own exact
//!   [`parse_fixed`]: the tape's key strings point into the buffer, so the number after each
//!   key is found without a second scan. The `f64` simd-json produced is kept as a
//!   cross-check (a value that disagrees with its own text is malformed).
//! - **JSON order books** (`--depth`) take the same path: simd-json checks the shape (each
//!   side an array of `[price, size]` pairs) and keeps where the text of `bids` and `asks`
//!   starts; the levels are then read from that raw text with [`parse_fixed`], each
//!   cross-checked against simd-json's `f64`. A book is decoded into its own two vectors
//!   (the checker keeps it as the symbol's last book, so it is not copied again).
//! - **Binary updates** are 88-byte records read straight from the frame payload with
//!   [`tickgate::protocol::binary::decode_record`] (zero-copy: no buffer, no allocation).
//!   A **book record** (type 4) spans `units` × 88 bytes ([`record_len`] says how far to
//!   step) and is decoded with the gateway's [`binary::decode_message`].
//! - **Control replies** (`subscribed`, `unsubscribed`, `symbols`, `pong`, `error`) are
//!   rare and parsed into an owned [`Control`].
//!
//! Symbols are turned into dense ids by a [`SymbolTable`] built from the `list` reply (ids
//! are the list order, which is also the gateway's binary symbol id).

use std::collections::HashMap;
use std::ops::Range;

use simd_json::prelude::*;
use simd_json::{Buffers, Node, StaticNode, Tape};
use tickgate::books::Levels;
use tickgate::feeds::universe::parse_fixed;
use tickgate::feeds::{Tick, TickKind};
use tickgate::protocol::binary::{self, BookRecord, RECORD_LEN};

/// The prefix of every JSON update the gateway writes (its field order is fixed): a cheap
/// way to tell updates from control replies before parsing.
pub const UPDATE_PREFIX: &[u8] = br#"{"type":"update""#;

/// The prefix of every JSON order book the gateway writes (`"depth": N` subscriptions).
pub const BOOK_PREFIX: &[u8] = br#"{"type":"book""#;

/// Symbol names ↔ dense ids (the order of the gateway's `list` reply).
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl SymbolTable {
    /// A table of `names` in order; id = position.
    ///
    /// # Errors
    ///
    /// A duplicate name (the gateway never lists one twice).
    pub fn new(names: Vec<String>) -> Result<SymbolTable, String> {
        let mut t = SymbolTable { names: Vec::with_capacity(names.len()), ids: HashMap::new() };
        for n in names {
            let b: Box<str> = n.into_boxed_str();
            if t.ids.insert(b.clone(), t.names.len() as u32).is_some() {
                return Err(format!("symbol {b:?} listed twice"));
            }
            t.names.push(b);
        }
        Ok(t)
    }

    /// The id of `name`.
    #[inline]
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of `id` (`"?"` if out of range).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One decoded update; `tick.symbol` is the symbol's id in the [`SymbolTable`] (JSON) or the
/// record's symbol id (binary), which are the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    /// The update's values (`kind` is not on the wire and is always `Quote`).
    pub tick: Tick,
    /// Whether it is a snapshot.
    pub snapshot: bool,
}

/// One object of a `GET /snapshot` body: a symbol's latest update or, with `&depth=N`, its
/// order book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An update (a snapshot, in `/snapshot`).
    Update(Update),
    /// An order book.
    Book(BookRecord),
}

/// Why an update or reply could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON, or not the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An update for a symbol the gateway's `list` did not contain.
    #[error("update for unknown symbol {0:?}")]
    UnknownSymbol(String),
}

fn malformed(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(why.into())
}

/// How the gateway prints `i64::MIN` in fixed point.
const I64_MIN_TEXT: &str = "-92233720368.54775808";

/// The seven fixed-point fields, in wire order.
const FIXED_FIELDS: [&str; 7] = ["bid", "bid_size", "ask", "ask_size", "last", "last_size", "volume"];

/// Field presence bits of an update object.
const F_TYPE: u16 = 1 << 0;
const F_SYMBOL: u16 = 1 << 1;
const F_SEQ: u16 = 1 << 2;
const F_TS_EVENT: u16 = 1 << 3;
const F_TS_GATEWAY: u16 = 1 << 4;
const F_SNAPSHOT: u16 = 1 << 5;
const F_FIXED0: u16 = 1 << 6; // .. 1 << 12 for the seven fixed fields
const F_ALL: u16 = (1 << 13) - 1;

/// The two sides of a book, in wire order (`bids` then `asks`).
const BOOK_SIDES: [&str; 2] = ["bids", "asks"];

/// Field presence bits of a book object.
const B_TYPE: u16 = 1 << 0;
const B_SYMBOL: u16 = 1 << 1;
const B_SEQ: u16 = 1 << 2;
const B_DEPTH: u16 = 1 << 3;
const B_STALE: u16 = 1 << 4;
const B_TS_EVENT: u16 = 1 << 5;
const B_TS_GATEWAY: u16 = 1 << 6;
const B_SIDE0: u16 = 1 << 7; // and 1 << 8 for asks
const B_ALL: u16 = (1 << 9) - 1;

/// What the tape walk of one update object found: everything but the fixed-point values,
/// for which it keeps where their text starts and simd-json's `f64` reading.
struct Walked {
    tick: Tick,
    snapshot: bool,
    fixed_at: [usize; 7],
    approx: [f64; 7],
}

/// What the tape walk of one book object found: everything but the levels, for which it
/// keeps where the text of each side starts and simd-json's `f64` readings of its numbers.
struct WalkedBook {
    symbol: u32,
    seq: u64,
    depth: u16,
    stale: bool,
    ts_event: u64,
    ts_gateway: u64,
    /// Where the text after the `bids` and `asks` keys starts.
    side_at: [usize; 2],
    /// Each side's numbers as simd-json read them (price, size, price, ...): ranges of the
    /// decoder's `approx`.
    approx: [Range<usize>; 2],
}

/// One walked object.
enum WalkedMsg {
    Update(Walked),
    Book(WalkedBook),
}

/// Which objects a decode accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    Update,
    Book,
    /// Either, told apart by their `type` (the body of `GET /snapshot?depth=N`).
    Any,
}

/// Decodes JSON updates and books with simd-json, reusing its buffers and tape between
/// calls (no allocation per update once warmed up).
#[derive(Default)]
pub struct JsonDecoder {
    buffers: Option<Buffers>,
    tape: Vec<Node<'static>>,
    /// simd-json's readings of the current books' level numbers (reused).
    approx: Vec<f64>,
}

/// Empties a tape and hands its allocation back with another lifetime (the in-place
/// `collect` reuses the buffer: `Node` has the same layout whatever its lifetime).
fn recycle<'b>(mut v: Vec<Node<'_>>) -> Vec<Node<'b>> {
    v.clear();
    v.into_iter().map(|_| Node::Static(StaticNode::Null)).collect()
}

impl JsonDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> JsonDecoder {
        JsonDecoder::default()
    }

    /// Decodes one JSON update object in `payload`, **in place** (simd-json rewrites
    /// string bytes of `payload`; the frame is not used afterwards).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Malformed`] for anything that is not a complete update object with
    /// exact decimal values, [`DecodeError::UnknownSymbol`] for a symbol not in `symbols`.
    pub fn decode_update(
        &mut self,
        payload: &mut [u8],
        symbols: &SymbolTable,
    ) -> Result<Update, DecodeError> {
        let mut out = None;
        self.decode_objects(payload, symbols, false, Accept::Update, &mut |d| {
            if let Decoded::Update(u) = d {
                out = Some(u);
            }
        })?;
        out.ok_or_else(|| malformed("no update object"))
    }

    /// Decodes one JSON order-book object in `payload`, **in place** (as
    /// [`JsonDecoder::decode_update`]). Every price and size is read exactly from its text.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Malformed`] for anything that is not a complete book object (each side
    /// an array of `[price, size]` pairs of exact decimals, `depth` a u16),
    /// [`DecodeError::UnknownSymbol`] for a symbol not in `symbols`. The book's *content*
    /// (order, crossing, depth) is the checker's business, not the decoder's.
    pub fn decode_book(
        &mut self,
        payload: &mut [u8],
        symbols: &SymbolTable,
    ) -> Result<BookRecord, DecodeError> {
        let mut out = None;
        self.decode_objects(payload, symbols, false, Accept::Book, &mut |d| {
            if let Decoded::Book(b) = d {
                out = Some(b);
            }
        })?;
        out.ok_or_else(|| malformed("no book object"))
    }

    /// Decodes a JSON array of update objects (the body of `GET /snapshot`), calling `each`
    /// for every one, in order.
    ///
    /// # Errors
    ///
    /// As [`JsonDecoder::decode_update`], for the first bad element.
    pub fn decode_update_array(
        &mut self,
        body: &mut [u8],
        symbols: &SymbolTable,
        each: &mut dyn FnMut(Update),
    ) -> Result<(), DecodeError> {
        self.decode_objects(body, symbols, true, Accept::Update, &mut |d| {
            if let Decoded::Update(u) = d {
                each(u);
            }
        })
    }

    /// Decodes the body of `GET /snapshot` (with `&depth=N`: each symbol's update followed by
    /// its book), calling `each` for every object, in order.
    ///
    /// # Errors
    ///
    /// As [`JsonDecoder::decode_update`] and [`JsonDecoder::decode_book`], for the first bad
    /// element.
    pub fn decode_snapshot(
        &mut self,
        body: &mut [u8],
        symbols: &SymbolTable,
        each: &mut dyn FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        self.decode_objects(body, symbols, true, Accept::Any, each)
    }

    fn decode_objects(
        &mut self,
        buf: &mut [u8],
        symbols: &SymbolTable,
        array: bool,
        accept: Accept,
        each: &mut dyn FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        let base = buf.as_ptr() as usize;
        let len = buf.len();
        let buffers = self.buffers.get_or_insert_with(|| Buffers::new(512));
        let approx = &mut self.approx;
        approx.clear();
        let mut tape = Tape(recycle(std::mem::take(&mut self.tape)));
        let parsed = simd_json::fill_tape(buf, buffers, &mut tape)
            .map_err(|e| malformed(format!("not JSON: {e}")))
            .and_then(|()| walk_top(&tape.0, Place { base, len, symbols, accept }, array, approx));
        self.tape = recycle(tape.0);
        // The tape is gone: the buffer can be read again, for the numbers' raw text.
        for w in parsed? {
            match w {
                WalkedMsg::Update(w) => {
                    let mut fixed = [0i64; 7];
                    for (i, f) in fixed.iter_mut().enumerate() {
                        *f = raw_fixed(buf, w.fixed_at[i], w.approx[i], FIXED_FIELDS[i])?;
                    }
                    let mut tick = w.tick;
                    [
                        tick.bid,
                        tick.bid_size,
                        tick.ask,
                        tick.ask_size,
                        tick.last,
                        tick.last_size,
                        tick.volume,
                    ] = fixed;
                    each(Decoded::Update(Update { tick, snapshot: w.snapshot }));
                }
                WalkedMsg::Book(w) => {
                    let mut sides: [Vec<(i64, i64)>; 2] = Default::default();
                    for (side, out) in sides.iter_mut().enumerate() {
                        let approx = self.approx.get(w.approx[side].clone()).unwrap_or(&[]);
                        *out = Vec::with_capacity(approx.len() / 2);
                        raw_levels(buf, w.side_at[side], approx, BOOK_SIDES[side], out)?;
                    }
                    let [bids, asks] = sides;
                    let book = Levels {
                        seq: w.seq,
                        stale: w.stale,
                        ts_event: w.ts_event,
                        ts_gateway: w.ts_gateway,
                        bids,
                        asks,
                    };
                    each(Decoded::Book(BookRecord { symbol: w.symbol, depth: w.depth, book }));
                }
            }
        }
        Ok(())
    }
}

/// Where the objects of a tape come from and which are wanted: the buffer's address and
/// length (to turn the keys' pointers into offsets), the symbols, the kinds accepted.
#[derive(Clone, Copy)]
struct Place<'s> {
    base: usize,
    len: usize,
    symbols: &'s SymbolTable,
    accept: Accept,
}

/// The offset just after `key` (its closing quote) in the buffer at `base` of `len` bytes,
/// where the text of its value follows.
fn key_end(key: &str, base: usize, len: usize, what: &str) -> Result<usize, DecodeError> {
    // Keys point into the buffer (simd-json parses strings in place).
    let at = (key.as_ptr() as usize).wrapping_sub(base).wrapping_add(key.len());
    if at >= len {
        return Err(malformed(format!("cannot locate the text of {what}")));
    }
    Ok(at)
}

/// Walks the top of a tape: one object, or (with `array`) an array of objects.
fn walk_top(
    nodes: &[Node<'_>],
    place: Place<'_>,
    array: bool,
    approx: &mut Vec<f64>,
) -> Result<Vec<WalkedMsg>, DecodeError> {
    match nodes.first() {
        Some(Node::Object { .. }) if !array => Ok(vec![walk_object(nodes, place, approx)?.0]),
        Some(Node::Array { len: n, .. }) if array => {
            let mut out = Vec::with_capacity(*n);
            let mut i = 1;
            for _ in 0..*n {
                let (w, used) = walk_object(nodes.get(i..).unwrap_or(&[]), place, approx)?;
                out.push(w);
                i += used;
            }
            Ok(out)
        }
        _ => Err(malformed(if array { "expected an array of updates" } else { "expected an object" })),
    }
}

/// Walks one object of the kind `place.accept` allows; returns it and the nodes it spans.
fn walk_object(
    nodes: &[Node<'_>],
    place: Place<'_>,
    approx: &mut Vec<f64>,
) -> Result<(WalkedMsg, usize), DecodeError> {
    let book = match place.accept {
        Accept::Update => false,
        Accept::Book => true,
        Accept::Any => object_type(nodes) == Some("book"),
    };
    if book {
        walk_book(nodes, place, approx).map(|(w, n)| (WalkedMsg::Book(w), n))
    } else {
        walk_update(nodes, place.base, place.len, place.symbols).map(|(w, n)| (WalkedMsg::Update(w), n))
    }
}

/// One field of an object on the simd-json tape.
struct Field<'n, 'a> {
    key: &'a str,
    value: &'n Node<'a>,
    /// The value, if it is a number, a boolean or null.
    scalar: Option<StaticNode>,
    /// The nodes inside the value, if it is an array or an object.
    children: &'n [Node<'a>],
}

/// The fields of the object at the start of `nodes`, in order, and the number of nodes the
/// object spans (itself included). `what` names the object in the error for a node that is
/// not one.
fn object_fields<'n, 'a>(
    nodes: &'n [Node<'a>],
    what: &str,
) -> Result<(impl Iterator<Item = Result<Field<'n, 'a>, DecodeError>> + 'n, usize), DecodeError> {
    let Some(&Node::Object { len: fields, count }) = nodes.first() else {
        return Err(malformed(format!("{what} is not an object")));
    };
    let body = nodes.get(1..=count).ok_or_else(|| malformed("truncated tape"))?;
    let mut i = 0;
    let fields = (0..fields).map(move |_| {
        let (Some(Node::String(key)), Some(value)) = (body.get(i), body.get(i + 1)) else {
            return Err(malformed("truncated object"));
        };
        i += 2;
        let (scalar, inner) = match value {
            Node::Static(s) => (Some(*s), 0),
            Node::String(_) => (None, 0),
            Node::Object { count, .. } | Node::Array { count, .. } => (None, *count),
        };
        let children = body.get(i..i + inner).ok_or_else(|| malformed("truncated tape"))?;
        i += inner;
        Ok(Field { key, value, scalar, children })
    });
    Ok((fields, count + 1))
}

/// The `type` of the object at the start of `nodes`, if it has a string one.
fn object_type<'a>(nodes: &[Node<'a>]) -> Option<&'a str> {
    let (mut fields, _) = object_fields(nodes, "message").ok()?;
    fields.find_map(|f| match f {
        Ok(Field { key: "type", value: Node::String(t), .. }) => Some(Some(*t)),
        Ok(Field { key: "type", .. }) | Err(_) => Some(None),
        Ok(_) => None,
    })?
}

/// Walks one book object at the start of `nodes`; returns it and the number of nodes it
/// spans. Each side must be an array of `[number, number]`; their simd-json readings are
/// appended to `approx`.
fn walk_book(
    nodes: &[Node<'_>],
    place: Place<'_>,
    approx: &mut Vec<f64>,
) -> Result<(WalkedBook, usize), DecodeError> {
    let (fields, count) = object_fields(nodes, "book")?;
    let mut w = WalkedBook {
        symbol: 0,
        seq: 0,
        depth: 0,
        stale: false,
        ts_event: 0,
        ts_gateway: 0,
        side_at: [0; 2],
        approx: [0..0, 0..0],
    };
    let mut seen = 0u16;
    let u64_of = |s: Option<StaticNode>, what: &str| {
        s.and_then(|s| s.as_u64()).ok_or_else(|| malformed(format!("book {what} is not a u64")))
    };
    for field in fields {
        let Field { key, value, scalar, children } = field?;
        let bit = match key {
            "type" => {
                if !matches!(value, Node::String("book")) {
                    return Err(malformed("type is not \"book\""));
                }
                B_TYPE
            }
            "symbol" => {
                let Node::String(name) = value else { return Err(malformed("book symbol is not a string")) };
                w.symbol =
                    place.symbols.id(name).ok_or_else(|| DecodeError::UnknownSymbol(name.to_string()))?;
                B_SYMBOL
            }
            "seq" => {
                w.seq = u64_of(scalar, "seq")?;
                B_SEQ
            }
            "depth" => {
                w.depth = scalar
                    .and_then(|s| s.as_u64())
                    .and_then(|d| u16::try_from(d).ok())
                    .ok_or_else(|| malformed("book depth is not a u16"))?;
                B_DEPTH
            }
            "stale" => {
                w.stale = scalar.and_then(|s| s.as_bool()).ok_or_else(|| malformed("stale is not a bool"))?;
                B_STALE
            }
            "ts_event" => {
                w.ts_event = u64_of(scalar, "ts_event")?;
                B_TS_EVENT
            }
            "ts_gateway" => {
                w.ts_gateway = u64_of(scalar, "ts_gateway")?;
                B_TS_GATEWAY
            }
            k @ ("bids" | "asks") => {
                let side = usize::from(k == "asks");
                let not_pairs = || malformed(format!("{k} is not an array of [price, size] pairs"));
                let &Node::Array { len: n, count } = value else { return Err(not_pairs()) };
                let levels = children;
                if count != n.saturating_mul(3) {
                    return Err(not_pairs());
                }
                let start = approx.len();
                for level in levels.chunks_exact(3) {
                    let [Node::Array { len: 2, count: 2 }, Node::Static(p), Node::Static(q)] = level else {
                        return Err(not_pairs());
                    };
                    for v in [p, q] {
                        approx.push(
                            Some(*v)
                                .filter(|s| s.is_number())
                                .and_then(|s| s.cast_f64())
                                .ok_or_else(not_pairs)?,
                        );
                    }
                }
                w.approx[side] = start..approx.len();
                w.side_at[side] = key_end(key, place.base, place.len, k)?;
                B_SIDE0 << side
            }
            _ => 0, // unknown fields are ignored (forward compatibility)
        };
        seen |= bit;
    }
    if seen != B_ALL {
        return Err(malformed(format!("book lacks fields (have {seen:#011b})")));
    }
    Ok((w, count))
}

/// Walks one update object at the start of `nodes`; returns it and the number of nodes it
/// spans.
fn walk_update(
    nodes: &[Node<'_>],
    base: usize,
    len: usize,
    symbols: &SymbolTable,
) -> Result<(Walked, usize), DecodeError> {
    let (fields, count) = object_fields(nodes, "update")?;
    let mut w = Walked { tick: Tick::default(), snapshot: false, fixed_at: [0; 7], approx: [0.0; 7] };
    w.tick.kind = TickKind::Quote;
    let mut seen = 0u16;
    for field in fields {
        let Field { key, value, scalar, .. } = field?;
        let bit = match key {
            "type" => {
                if !matches!(value, Node::String("update")) {
                    return Err(malformed("type is not \"update\""));
                }
                F_TYPE
            }
            "symbol" => {
                let Node::String(name) = value else { return Err(malformed("symbol is not a string")) };
                w.tick.symbol =
                    symbols.id(name).ok_or_else(|| DecodeError::UnknownSymbol(name.to_string()))?;
                F_SYMBOL
            }
            "seq" => {
                w.tick.seq = scalar.and_then(|s| s.as_u64()).ok_or_else(|| malformed("seq is not a u64"))?;
                F_SEQ
            }
            "ts_event" => {
                w.tick.ts_event =
                    scalar.and_then(|s| s.as_u64()).ok_or_else(|| malformed("ts_event is not a u64"))?;
                F_TS_EVENT
            }
            "ts_gateway" => {
                w.tick.ts_gateway =
                    scalar.and_then(|s| s.as_u64()).ok_or_else(|| malformed("ts_gateway is not a u64"))?;
                F_TS_GATEWAY
            }
            "snapshot" => {
                w.snapshot =
                    scalar.and_then(|s| s.as_bool()).ok_or_else(|| malformed("snapshot is not a bool"))?;
                F_SNAPSHOT
            }
            k => match FIXED_FIELDS.iter().position(|f| *f == k) {
                Some(fi) => {
                    w.approx[fi] = scalar
                        .filter(|s| s.is_number())
                        .and_then(|s| s.cast_f64())
                        .ok_or_else(|| malformed(format!("{k} is not a number")))?;
                    // The key points into the buffer (simd-json parses strings in place);
                    // its value follows the closing quote and the colon.
                    w.fixed_at[fi] = key_end(key, base, len, k)?;
                    F_FIXED0 << fi
                }
                None => 0, // unknown fields are ignored (forward compatibility)
            },
        };
        seen |= bit;
    }
    if seen != F_ALL {
        return Err(malformed(format!("update lacks fields (have {seen:#015b})")));
    }
    Ok((w, count))
}

/// The exact fixed-point value whose text follows the key that ends at `at` (its closing
/// quote, then optional spaces, a colon, optional spaces). `approx` is simd-json's reading
/// of the same number, used as a cross-check.
fn raw_fixed(buf: &[u8], at: usize, approx: f64, field: &str) -> Result<i64, DecodeError> {
    let rest = after_colon(buf, at, field)?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
    exact_number(&rest[start..], approx, field).map(|(v, _)| v)
}

/// The text after the colon that follows the key ending at `at` (its closing quote, then
/// optional spaces, the colon).
fn after_colon<'b>(buf: &'b [u8], at: usize, field: &str) -> Result<&'b [u8], DecodeError> {
    let rest = buf.get(at..).unwrap_or(&[]);
    let colon = rest
        .iter()
        .take(16)
        .position(|&b| b == b':')
        .ok_or_else(|| malformed(format!("no ':' after key {field}")))?;
    Ok(&rest[colon + 1..])
}

/// Reads the levels of one book side from the raw text after its key (ending at `at`): an
/// array of `[price, size]` pairs, as many as `approx` (simd-json's readings, two a level)
/// says, each number exact ([`exact_number`]) and cross-checked. Appends them to `out`.
fn raw_levels(
    buf: &[u8],
    at: usize,
    approx: &[f64],
    field: &str,
    out: &mut Vec<(i64, i64)>,
) -> Result<(), DecodeError> {
    let text = after_colon(buf, at, field)?;
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while text.get(*i).is_some_and(|b| b.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    let expect = |i: &mut usize, want: u8| {
        skip_ws(i);
        if text.get(*i) == Some(&want) {
            *i += 1;
            Ok(())
        } else {
            Err(malformed(format!("{field}: expected '{}' in the levels' text", want as char)))
        }
    };
    let number = |i: &mut usize, approx: f64| {
        skip_ws(i);
        let (v, used) = exact_number(text.get(*i..).unwrap_or(&[]), approx, field)?;
        *i += used;
        Ok::<i64, DecodeError>(v)
    };
    expect(&mut i, b'[')?;
    for (k, pair) in approx.chunks_exact(2).enumerate() {
        if k > 0 {
            expect(&mut i, b',')?;
        }
        expect(&mut i, b'[')?;
        let price = number(&mut i, pair[0])?;
        expect(&mut i, b',')?;
        let size = number(&mut i, pair[1])?;
        expect(&mut i, b']')?;
        out.push((price, size));
    }
    expect(&mut i, b']')
}

/// The exact fixed-point value of the number whose text starts `rest`, and its length.
/// `approx` is simd-json's reading of the same number, used as a cross-check.
fn exact_number(rest: &[u8], approx: f64, field: &str) -> Result<(i64, usize), DecodeError> {
    let end =
        rest.iter().position(|&b| !(b.is_ascii_digit() || b == b'-' || b == b'.')).unwrap_or(rest.len());
    if !matches!(rest.get(end), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')) {
        return Err(malformed(format!("{field} is not a plain decimal (no exponents)")));
    }
    let text = std::str::from_utf8(&rest[..end]).unwrap_or("");
    // `parse_fixed` reads the magnitude as an i64, so the one value whose magnitude does
    // not fit, i64::MIN, needs its own case.
    let v = parse_fixed(text).or_else(|| (text == I64_MIN_TEXT).then_some(i64::MIN)).ok_or_else(|| {
        malformed(format!("{field} {text:?} is not an exact decimal with at most 8 places"))
    })?;
    let back = v as f64 / 1e8;
    if (back - approx).abs() > 1e-9 * approx.abs().max(1.0) {
        return Err(malformed(format!("{field}: text {text:?} disagrees with its parsed value {approx}")));
    }
    Ok((v, end))
}

/// Iterates over the records of a binary frame payload in place.
///
/// # Errors
///
/// Yields one error and nothing else if the payload is not a whole number of records; an
/// unknown record type yields an error for that record only.
pub fn binary_updates(payload: &[u8]) -> impl Iterator<Item = Result<Update, binary::DecodeError>> + '_ {
    binary::decode_frame(payload).map(|r| r.map(|r| Update { tick: r.tick, snapshot: r.snapshot }))
}

/// Decodes one 88-byte record of a binary frame, in place (the session walks a frame's
/// records one at a time; [`binary_updates`] does the whole frame).
///
/// # Errors
///
/// As [`binary::decode_record`]: a slice that is not 88 bytes, or an unknown record type.
#[inline]
pub fn binary_update(record: &[u8]) -> Result<Update, binary::DecodeError> {
    binary::decode_record(record).map(|r| Update { tick: r.tick, snapshot: r.snapshot })
}

/// 88-byte units in a binary payload (for byte accounting; a book record is several).
pub fn record_count(payload: &[u8]) -> usize {
    payload.len() / RECORD_LEN
}

/// How far to step over the record at the start of `rest` (the records of a binary frame
/// not walked yet, a whole number of 88-byte units): 88 bytes, or for a book record
/// (type [`binary::RECORD_BOOK`]) its `units` × 88 (bytes 2..4, u16 little-endian).
///
/// # Errors
///
/// [`binary::DecodeError::RecordLength`] if `rest` is shorter than one record;
/// [`binary::DecodeError::BookPastFrame`] for a book record whose `units` is 0 or runs past
/// `rest`: the rest of the frame cannot be walked.
#[inline]
pub fn record_len(rest: &[u8]) -> Result<usize, binary::DecodeError> {
    let (Some(&kind), Some(units)) = (rest.first(), rest.get(2..4)) else {
        return Err(binary::DecodeError::RecordLength { len: rest.len() });
    };
    if rest.len() < RECORD_LEN {
        return Err(binary::DecodeError::RecordLength { len: rest.len() });
    }
    if kind != binary::RECORD_BOOK {
        return Ok(RECORD_LEN);
    }
    let units = usize::from(u16::from_le_bytes([units[0], units[1]]));
    let len = units * RECORD_LEN;
    if units == 0 || len > rest.len() {
        return Err(binary::DecodeError::BookPastFrame { units, left: rest.len() });
    }
    Ok(len)
}

/// Decodes one whole book record (`record` is exactly its `units` × 88 bytes, as
/// [`record_len`] measured it) with the gateway's decoder.
///
/// # Errors
///
/// As [`binary::decode_message`] (lengths that do not add up); a record of another type is
/// [`binary::DecodeError::UnknownType`].
pub fn binary_book(record: &[u8]) -> Result<BookRecord, binary::DecodeError> {
    match binary::decode_message(record)? {
        binary::Message::Book(b) => Ok(b),
        _ => Err(binary::DecodeError::UnknownType { record_type: record.first().copied().unwrap_or(0) }),
    }
}

/// A trade or a gap notice (for `--trades`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradeMsg {
    /// A trade of `symbol` at feed event `seq`.
    Trade {
        /// Symbol id.
        symbol: u32,
        /// The trade's seq.
        seq: u64,
    },
    /// `missed` trades of `symbol` were dropped.
    Gap {
        /// Symbol id.
        symbol: u32,
        /// How many.
        missed: u64,
    },
}

/// Whether a JSON object is a trade or a gap notice (by its fixed prefix).
pub fn is_trade_or_gap(object: &[u8]) -> bool {
    object.starts_with(br#"{"type":"trade""#) || object.starts_with(br#"{"type":"gap""#)
}

/// Parses a JSON trade or gap object.
///
/// # Errors
///
/// [`DecodeError::UnknownSymbol`] for a symbol outside `symbols`, [`DecodeError::Malformed`]
/// for anything but a trade with a `seq`, `price` and `size`, or a gap with `missed` ≥ 1.
pub fn parse_trade(payload: &mut [u8], symbols: &SymbolTable) -> Result<TradeMsg, DecodeError> {
    let v = simd_json::to_borrowed_value(payload).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let name = v.get_str("symbol").ok_or_else(|| malformed("trade or gap without a symbol"))?;
    let symbol = symbols.id(name).ok_or_else(|| DecodeError::UnknownSymbol(name.to_string()))?;
    match v.get_str("type") {
        Some("trade") => {
            let seq = v.get_u64("seq").ok_or_else(|| malformed("trade without a seq"))?;
            if v.get("price").and_then(|p| p.cast_f64()).is_none()
                || v.get("size").and_then(|p| p.cast_f64()).is_none()
            {
                return Err(malformed("trade without a numeric price and size"));
            }
            Ok(TradeMsg::Trade { symbol, seq })
        }
        Some("gap") => match v.get_u64("missed") {
            Some(missed) if missed > 0 => Ok(TradeMsg::Gap { symbol, missed }),
            _ => Err(malformed("gap without a positive missed count")),
        },
        _ => Err(malformed("not a trade or a gap")),
    }
}

/// A control reply from the gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// `subscribed`: each symbol with its binary id.
    Subscribed {
        /// The request id.
        id: Option<i64>,
        /// `(name, id)` pairs.
        symbols: Vec<(String, u32)>,
    },
    /// `unsubscribed`.
    Unsubscribed {
        /// The request id.
        id: Option<i64>,
        /// The symbols.
        symbols: Vec<String>,
    },
    /// `symbols`: the reply to `list`.
    Symbols {
        /// The request id.
        id: Option<i64>,
        /// Every symbol, in id order.
        symbols: Vec<String>,
    },
    /// `pong`.
    Pong {
        /// The request id.
        id: Option<i64>,
    },
    /// `error`.
    Error {
        /// The request id.
        id: Option<i64>,
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// A reply type this client does not know (clients must ignore those).
    Other(String),
}

/// Parses a control reply (any text frame that is not an update).
///
/// # Errors
///
/// [`DecodeError::Malformed`] if it is not a JSON object with a string `type` of the
/// expected shape.
pub fn parse_control(payload: &mut [u8]) -> Result<Control, DecodeError> {
    let v = simd_json::to_borrowed_value(payload).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let ty = v.get_str("type").ok_or_else(|| malformed("reply without a string type"))?;
    let id = v.get_i64("id");
    let strings = |field: &str| -> Result<Vec<String>, DecodeError> {
        let arr = v.get_array(field).ok_or_else(|| malformed(format!("{ty}: {field} is not an array")))?;
        arr.iter()
            .map(|s| {
                s.as_str().map(String::from).ok_or_else(|| malformed(format!("{ty}: non-string symbol")))
            })
            .collect()
    };
    Ok(match ty {
        "subscribed" => {
            let obj =
                v.get_object("symbols").ok_or_else(|| malformed("subscribed: symbols is not an object"))?;
            let mut symbols = Vec::with_capacity(obj.len());
            for (k, sid) in obj.iter() {
                let sid =
                    sid.as_u32().ok_or_else(|| malformed(format!("subscribed: id of {k} is not a u32")))?;
                symbols.push((k.to_string(), sid));
            }
            Control::Subscribed { id, symbols }
        }
        "unsubscribed" => Control::Unsubscribed { id, symbols: strings("symbols")? },
        "symbols" => Control::Symbols { id, symbols: strings("symbols")? },
        "pong" => Control::Pong { id },
        "error" => Control::Error {
            id,
            code: v.get_str("code").unwrap_or("").to_string(),
            message: v.get_str("message").unwrap_or("").to_string(),
        },
        other => Control::Other(other.to_string()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tickgate::protocol::json::encode_update;

    fn table() -> SymbolTable {
        SymbolTable::new(vec!["AAPL".into(), "BRK.B".into(), "X".into()]).unwrap()
    }

    fn tick() -> Tick {
        Tick {
            symbol: 1,
            kind: TickKind::Quote,
            seq: 42,
            bid: 18_912_000_000,
            bid_size: 300 * 100_000_000,
            ask: 18_914_000_000,
            ask_size: 200 * 100_000_000,
            last: 0,
            last_size: 0,
            volume: 1_234_567 * 100_000_000,
            ts_event: 1_732_240_000_123_456_789,
            ts_gateway: 1_732_240_000_123_460_000,
            ..Tick::default()
        }
    }

    #[test]
    fn decodes_the_gateways_json() {
        let syms = table();
        let mut d = JsonDecoder::new();
        for (t, snap) in
            [(tick(), false), (Tick { bid: -1, ask: i64::MAX, volume: i64::MIN, ..tick() }, true)]
        {
            let mut buf = Vec::new();
            encode_update(&mut buf, &t, syms.name(t.symbol), snap);
            assert!(buf.starts_with(UPDATE_PREFIX));
            let u = d.decode_update(&mut buf, &syms).unwrap();
            assert_eq!(u, Update { tick: t, snapshot: snap });
        }
    }

    #[test]
    fn tolerates_spacing_and_order_but_not_missing_fields() {
        let syms = table();
        let mut d = JsonDecoder::new();
        let mut reordered = br#"{ "snapshot" : false, "symbol":"X","type":"update","seq":7,"bid" : 1.5,"bid_size":1,
            "ask":2,"ask_size":3,"last":0.00000001,"last_size":4,"volume":5,"ts_event":1,"ts_gateway":2,"extra":[1,{"a":2}]}"#
            .to_vec();
        let u = d.decode_update(&mut reordered, &syms).unwrap();
        assert_eq!(u.tick.symbol, 2);
        assert_eq!(u.tick.bid, 150_000_000);
        assert_eq!(u.tick.last, 1);
        assert_eq!(u.tick.volume, 500_000_000);
        let cases: &[&[u8]] = &[
            br#"{"type":"update","symbol":"X","seq":7}"#,
            br#"{"type":"update","symbol":"X","seq":7,"bid":1e3,"bid_size":1,"ask":2,"ask_size":3,"last":0,"last_size":4,"volume":5,"ts_event":1,"ts_gateway":2,"snapshot":false}"#,
            br#"{"type":"update","symbol":"X","seq":-7,"bid":1,"bid_size":1,"ask":2,"ask_size":3,"last":0,"last_size":4,"volume":5,"ts_event":1,"ts_gateway":2,"snapshot":false}"#,
            br#"{"type":"update","symbol":"X","seq":7,"bid":0.000000001,"bid_size":1,"ask":2,"ask_size":3,"last":0,"last_size":4,"volume":5,"ts_event":1,"ts_gateway":2,"snapshot":false}"#,
            br#"[1,2]"#,
            br#"{"type":"update""#,
        ];
        for c in cases {
            let mut b = c.to_vec();
            assert!(
                matches!(d.decode_update(&mut b, &syms), Err(DecodeError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        let mut unknown = Vec::new();
        let syms2 = SymbolTable::new(vec!["ZZZ".into()]).unwrap();
        encode_update(&mut unknown, &tick(), "ZZZ", false);
        assert_eq!(d.decode_update(&mut unknown, &syms), Err(DecodeError::UnknownSymbol("ZZZ".into())));
        assert!(syms2.id("ZZZ").is_some());
    }

    #[test]
    fn decodes_snapshot_arrays() {
        let syms = table();
        let mut body = b"[".to_vec();
        encode_update(&mut body, &tick(), "BRK.B", true);
        body.push(b',');
        encode_update(&mut body, &Tick { symbol: 0, seq: 1, ..tick() }, "AAPL", true);
        body.push(b']');
        let mut got = Vec::new();
        JsonDecoder::new().decode_update_array(&mut body, &syms, &mut |u| got.push(u)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].tick, tick());
        assert_eq!(got[1].tick.symbol, 0);
        let mut empty = b"[]".to_vec();
        JsonDecoder::new().decode_update_array(&mut empty, &syms, &mut |_| panic!()).unwrap();
    }

    fn book(seq: u64) -> Levels {
        Levels {
            seq,
            stale: false,
            ts_event: 1_723_161_254_206_652_067,
            ts_gateway: 1_723_161_254_206_700_000,
            bids: vec![(6_183_763_000_000, 378_826_000), (6_183_762_000_000, 61_700_000)],
            asks: vec![(6_183_764_000_000, 120_000_000)],
        }
    }

    #[test]
    fn decodes_the_gateways_json_books_exactly() {
        let syms = table();
        let mut d = JsonDecoder::new();
        // (levels, depth): the documented example, extremes, one side empty, both empty, and
        // values whose f64 is not exact (0.1, 1e-8, 92233720368.54775807).
        let cases: Vec<(Levels, usize)> = vec![
            (book(17), 10),
            (
                Levels {
                    bids: vec![(i64::MAX, 1), (10_000_000, 1), (1, i64::MAX)],
                    asks: vec![(-1, 3), (0, 0), (i64::MIN, i64::MIN)],
                    stale: true,
                    ..book(u64::MAX)
                },
                3,
            ),
            (Levels { asks: vec![], ..book(1) }, 50),
            (Levels { bids: vec![], asks: vec![], ..book(2) }, 1),
        ];
        for (levels, depth) in cases {
            let mut buf = Vec::new();
            tickgate::protocol::json::encode_book(&mut buf, "BRK.B", depth, &levels);
            assert!(buf.starts_with(BOOK_PREFIX), "{}", String::from_utf8_lossy(&buf));
            let text = String::from_utf8_lossy(&buf).into_owned();
            let b = d.decode_book(&mut buf, &syms).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(b, BookRecord { symbol: 1, depth: depth as u16, book: levels }, "{text}");
        }
        // The documented example, spaced out and reordered, with an unknown field.
        let mut spaced =
            br#"{ "depth" : 10, "type":"book", "bids" : [ [ 61837.63 , 3.78826 ] ,[61837.62,0.617] ],
            "asks":[[61837.64,1.2]], "extra":{"a":[1,2]}, "symbol":"BRK.B","seq":17,"stale":false,
            "ts_event":1723161254206652067,"ts_gateway":1723161254206700000}"#
                .to_vec();
        let b = d.decode_book(&mut spaced, &syms).unwrap();
        assert_eq!(b, BookRecord { symbol: 1, depth: 10, book: book(17) });
        // A book is not an update, nor the other way round.
        let mut buf = Vec::new();
        tickgate::protocol::json::encode_book(&mut buf, "X", 5, &book(3));
        assert!(matches!(d.decode_update(&mut buf.clone(), &syms), Err(DecodeError::Malformed(_))));
        let mut u = Vec::new();
        encode_update(&mut u, &tick(), "X", false);
        assert!(matches!(d.decode_book(&mut u, &syms), Err(DecodeError::Malformed(_))));
        let syms2 = SymbolTable::new(vec!["ZZZ".into()]).unwrap();
        assert_eq!(d.decode_book(&mut buf, &syms2), Err(DecodeError::UnknownSymbol("X".into())));
    }

    #[test]
    fn malformed_books_are_errors() {
        let syms = table();
        let mut d = JsonDecoder::new();
        let good = r#"{"type":"book","symbol":"X","seq":17,"depth":10,"bids":[[61837.63,3.78826]],"asks":[[61837.64,1.2]],"stale":false,"ts_event":1,"ts_gateway":2}"#;
        assert!(d.decode_book(&mut good.as_bytes().to_vec(), &syms).is_ok());
        // (what to replace in the good book, with what)
        let cases: &[(&str, &str)] = &[
            ("61837.63", "6.183763e4"),                 // an exponent
            ("61837.63", "61837.630000001"),            // more than 8 places
            ("61837.63", "\"61837.63\""),               // a string
            ("61837.63", "null"),                       // not a number
            ("[61837.63,3.78826]", "[61837.63]"),       // a level without a size
            ("[61837.63,3.78826]", "[1,2,3]"),          // three numbers
            ("[61837.63,3.78826]", "61837.63"),         // not a pair
            ("[[61837.64,1.2]]", "{}"),                 // a side that is not an array
            ("[[61837.64,1.2]]", "[[61837.64,[1.2]]]"), // a nested size
            ("\"seq\":17", "\"seq\":-17"),
            ("\"seq\":17", "\"seq\":1.5"),
            ("\"depth\":10", "\"depth\":65536"),
            ("\"depth\":10", "\"depth\":-1"),
            ("\"stale\":false", "\"stale\":0"),
            ("\"stale\":false,", ""), // a field missing
            ("\"type\":\"book\"", "\"type\":\"books\""),
            ("\"symbol\":\"X\"", "\"symbol\":7"),
            ("\"ts_gateway\":2}", "\"ts_gateway\":2"), // truncated
        ];
        for (from, to) in cases {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from} not found");
            assert!(
                matches!(d.decode_book(&mut bad.as_bytes().to_vec(), &syms), Err(DecodeError::Malformed(_))),
                "{bad}"
            );
        }
        for bad in ["[]", "", "nope", "{}"] {
            assert!(d.decode_book(&mut bad.as_bytes().to_vec(), &syms).is_err(), "{bad}");
        }
        // The decoder is not left in a bad state.
        assert!(d.decode_book(&mut good.as_bytes().to_vec(), &syms).is_ok());
    }

    #[test]
    fn decodes_snapshots_with_books() {
        let syms = table();
        let mut body = b"[".to_vec();
        encode_update(&mut body, &tick(), "BRK.B", true);
        body.push(b',');
        tickgate::protocol::json::encode_book(&mut body, "BRK.B", 2, &book(5));
        body.push(b',');
        encode_update(&mut body, &Tick { symbol: 0, ..tick() }, "AAPL", true);
        body.push(b']');
        let mut got = Vec::new();
        JsonDecoder::new().decode_snapshot(&mut body.clone(), &syms, &mut |x| got.push(x)).unwrap();
        assert_eq!(
            got,
            [
                Decoded::Update(Update { tick: tick(), snapshot: true }),
                Decoded::Book(BookRecord { symbol: 1, depth: 2, book: book(5) }),
                Decoded::Update(Update { tick: Tick { symbol: 0, ..tick() }, snapshot: true }),
            ]
        );
        // An array of updates only has no room for a book.
        assert!(JsonDecoder::new().decode_update_array(&mut body, &syms, &mut |_| {}).is_err());
    }

    #[test]
    fn binary_records_are_stepped_over_by_their_length() {
        let mut frame = Vec::new();
        tickgate::protocol::binary::encode_record(&mut frame, &tick(), false);
        let at = frame.len();
        tickgate::protocol::binary::encode_book(&mut frame, 2, 10, &book(9));
        let len = frame.len() - at;
        assert_eq!(len, 2 * RECORD_LEN, "a header and 3 levels of 16 bytes");
        assert_eq!(record_len(&frame), Ok(RECORD_LEN));
        assert_eq!(record_len(&frame[at..]), Ok(len));
        assert_eq!(binary_book(&frame[at..]), Ok(BookRecord { symbol: 2, depth: 10, book: book(9) }));
        assert!(binary_book(&frame[..at]).is_err(), "not a book");
        // units 0, or more than the frame holds: the frame cannot be walked further.
        for units in [0u16, 3, u16::MAX] {
            let mut bad = frame[at..].to_vec();
            bad[2..4].copy_from_slice(&units.to_le_bytes());
            assert!(
                matches!(record_len(&bad), Err(binary::DecodeError::BookPastFrame { .. })),
                "units {units}"
            );
        }
        assert!(record_len(&frame[..RECORD_LEN - 1]).is_err());
        assert!(record_len(&[]).is_err());
    }

    #[test]
    fn parses_control_replies() {
        let cases: Vec<(&str, Control)> = vec![
            (
                r#"{"type":"subscribed","id":1,"symbols":{"AAPL":0,"X":2}}"#,
                Control::Subscribed { id: Some(1), symbols: vec![("AAPL".into(), 0), ("X".into(), 2)] },
            ),
            (
                r#"{"type":"unsubscribed","id":3,"symbols":["AAPL"]}"#,
                Control::Unsubscribed { id: Some(3), symbols: vec!["AAPL".into()] },
            ),
            (
                r#"{"type":"symbols","symbols":["A","B"]}"#,
                Control::Symbols { id: None, symbols: vec!["A".into(), "B".into()] },
            ),
            (r#"{"type":"pong","id":5,"ts":1}"#, Control::Pong { id: Some(5) }),
            (
                r#"{"type":"error","id":1,"code":"rate_limited","message":"slow down"}"#,
                Control::Error { id: Some(1), code: "rate_limited".into(), message: "slow down".into() },
            ),
            (r#"{"type":"status","feed":"up"}"#, Control::Other("status".into())),
        ];
        for (text, want) in cases {
            let mut b = text.as_bytes().to_vec();
            assert_eq!(parse_control(&mut b).unwrap(), want, "{text}");
        }
        for bad in [r#"{"id":1}"#, "nope", r#"{"type":"subscribed","symbols":[]}"#] {
            let mut b = bad.as_bytes().to_vec();
            assert!(parse_control(&mut b).is_err(), "{bad}");
        }
    }
}
