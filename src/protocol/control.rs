//! Control messages: what clients ask for (JSON text frames, parsed by [`parse`]) and what the
//! server answers (JSON text frames, written by the `write_*` functions).
//!
//! # Requests
//!
//! ```text
//! {"op":"subscribe","symbols":["AAPL","MSFT"],"id":1,"max_rate":4,"trades":true}
//! {"op":"unsubscribe","symbols":["AAPL"],"id":2}
//! {"op":"list","id":3}
//! {"op":"ping","id":4}
//! {"op":"set","max_bandwidth":20000,"id":5}
//! ```
//!
//! `id` is an optional integer (`i64`) echoed in the reply. `max_rate` (subscribe only) is an
//! optional cap in quote updates per second per symbol: a number in `(0, 1000]`, or `0` /
//! `null` for no limit. `trades` (subscribe only, default false) asks for every trade of the
//! symbols as well, never conflated. `depth` (subscribe only, default 0) asks for the symbols'
//! order books too, the best `depth` levels a side (`{"type":"book",...}` messages; 0 = none;
//! the shard refuses more than `server.max_depth`). `max_bandwidth` (set) is the client's byte budget per
//! second: a positive integer, or `0` / `null` for the server's default. Fields this version does not know are ignored, so later versions can add some; a
//! field this version knows may appear only once.
//!
//! # Replies
//!
//! ```text
//! {"type":"subscribed","id":1,"symbols":{"AAPL":0,"MSFT":1}}
//! {"type":"unsubscribed","id":2,"symbols":["AAPL"]}
//! {"type":"symbols","id":3,"symbols":["AAPL","MSFT"]}
//! {"type":"pong","id":4,"ts":1732240000123456789}
//! {"type":"settings","id":5,"max_bandwidth":20000}
//! {"type":"error","id":1,"code":"unknown_symbol","message":"...","symbols":["ZZZZ"]}
//! ```
//!
//! `"id"` is left out when the request had no valid id. Error codes are [`ErrorCode`]s.
//!
//! Parsing borrows the symbol names from the request buffer (simd-json unescapes strings in
//! place), so a request costs one parse and no string copies.

use std::borrow::Cow;
use std::fmt;

use simd_json::prelude::ValueAsScalar;
use simd_json::{BorrowedValue as Value, StaticNode};

use super::json::escape_str;

/// Highest `max_rate` a client may ask for, in updates per second per symbol.
pub const MAX_RATE_LIMIT: f64 = 1000.0;

/// A parsed client request. Symbol names are borrowed from the request buffer, as given (not
/// deduplicated, not checked against the universe: the shard maps them to ids and reports
/// `unknown_symbol` itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// `{"op":"subscribe","symbols":[...],"id":1,"max_rate":4}`
    Subscribe {
        /// The request id, echoed in the reply.
        id: Option<i64>,
        /// The symbols to subscribe to; never empty.
        symbols: Vec<&'a str>,
        /// The requested rate cap; `None` when the field was absent.
        max_rate: Option<MaxRate>,
        /// Also deliver every trade of these symbols (`"trades": true`).
        trades: bool,
        /// Also deliver these symbols' order books, this many levels a side (`"depth": N`;
        /// 0 when absent: no books).
        depth: u16,
    },
    /// `{"op":"set","max_bandwidth":20000,"id":5}`: change connection settings.
    Set {
        /// The request id, echoed in the reply.
        id: Option<i64>,
        /// Bytes per second the client wants at most; `Some(0)` = the server's default.
        max_bandwidth: Option<u64>,
    },
    /// `{"op":"unsubscribe","symbols":[...],"id":2}`
    Unsubscribe {
        /// The request id, echoed in the reply.
        id: Option<i64>,
        /// The symbols to unsubscribe from; never empty.
        symbols: Vec<&'a str>,
    },
    /// `{"op":"list","id":3}`: list every symbol of the universe, in id order.
    List {
        /// The request id, echoed in the reply.
        id: Option<i64>,
    },
    /// `{"op":"ping","id":4}`: the server answers with `pong` and its clock.
    Ping {
        /// The request id, echoed in the reply.
        id: Option<i64>,
    },
    /// `{"op":"auth","token":"<JWT>","id":5}`: a fresh token for a connection under token auth.
    Auth {
        /// The request id, echoed in the reply.
        id: Option<i64>,
        /// The token, borrowed from the message.
        token: &'a str,
    },
}

impl ClientMsg<'_> {
    /// The request's id, whatever the op.
    pub fn id(&self) -> Option<i64> {
        match self {
            ClientMsg::Subscribe { id, .. }
            | ClientMsg::Unsubscribe { id, .. }
            | ClientMsg::List { id }
            | ClientMsg::Ping { id }
            | ClientMsg::Auth { id, .. }
            | ClientMsg::Set { id, .. } => *id,
        }
    }
}

/// Minimum interval between updates of one symbol, from max_rate (updates/s).
///
/// `interval_ns` is `round(1e9 / max_rate)`; 0 means unlimited (`max_rate` of `0` or `null`).
/// A very small rate saturates at `u64::MAX` ns, which in practice means "snapshot only".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxRate {
    /// Minimum ns between two updates of one symbol; 0 = no limit.
    pub interval_ns: u64,
}

impl MaxRate {
    /// No limit.
    pub const UNLIMITED: MaxRate = MaxRate { interval_ns: 0 };

    /// The limit for a rate in updates per second: `Some` for `0 < rate <= 1000` (and
    /// [`MaxRate::UNLIMITED`] for a rate of exactly 0), `None` for anything else (negative,
    /// above 1000, NaN, infinite).
    pub fn from_rate(rate: f64) -> Option<MaxRate> {
        if rate == 0.0 {
            Some(MaxRate::UNLIMITED)
        } else if rate > 0.0 && rate <= MAX_RATE_LIMIT {
            // `as` saturates: a tiny rate gives u64::MAX rather than wrapping.
            Some(MaxRate { interval_ns: (1e9 / rate).round() as u64 })
        } else {
            None
        }
    }

    /// Whether this is no limit at all.
    pub fn is_unlimited(self) -> bool {
        self.interval_ns == 0
    }
}

/// The `"code"` of an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `bad_request`: not JSON, not an object, or a field missing, mistyped or out of range.
    BadRequest,
    /// `unknown_op`: the `"op"` is not one this server knows.
    UnknownOp,
    /// `unknown_symbol`: some requested symbols are not in the universe (the reply lists them).
    UnknownSymbol,
    /// `too_many_symbols`: the subscription would exceed the per-connection limit.
    TooManySymbols,
    /// `rate_limited`: the client sends control messages too fast.
    RateLimited,
    /// `not_entitled`: the client's token does not cover some requested symbols (listed).
    NotEntitled,
    /// `unauthorized`: an `auth` message's token was refused (the connection keeps its
    /// current token until that expires).
    Unauthorized,
}

impl ErrorCode {
    /// The wire spelling, e.g. `"bad_request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotEntitled => "not_entitled",
            ErrorCode::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the server rejects: the error reply to send. It costs the client nothing more;
/// the connection stays open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    /// The request's id when it could be read, echoed in the reply.
    pub id: Option<i64>,
    /// What kind of error.
    pub code: ErrorCode,
    /// A human-readable explanation naming the offending field.
    pub message: String,
}

impl ControlError {
    fn bad_request(id: Option<i64>, message: impl Into<String>) -> Self {
        ControlError { id, code: ErrorCode::BadRequest, message: message.into() }
    }

    /// Appends the error reply for this error to `out` (see [`write_error`]).
    pub fn write(&self, out: &mut Vec<u8>) {
        write_error(out, self.id, self.code, &self.message, None);
    }
}

/// The request fields this version knows, found in one pass over the object.
#[derive(Default)]
struct Fields<'v, 'a> {
    op: Option<&'v Value<'a>>,
    id: Option<&'v Value<'a>>,
    symbols: Option<&'v Value<'a>>,
    max_rate: Option<&'v Value<'a>>,
    token: Option<&'v Value<'a>>,
    trades: Option<&'v Value<'a>>,
    depth: Option<&'v Value<'a>>,
    max_bandwidth: Option<&'v Value<'a>>,
    /// The first known field seen twice.
    duplicate: Option<&'static str>,
    /// Whether `id` was seen twice (then no id is trusted).
    duplicate_id: bool,
}

/// Parses one client request in place (simd-json rewrites `buf` while unescaping strings, and
/// the returned symbol names borrow from it).
///
/// Checks, in this order: valid JSON, an object, no known field twice, `id` (read first so
/// every later error echoes it), `op`, then the op's own fields. Unknown fields are ignored.
///
/// # Errors
///
/// A [`ControlError`] describing the reply to send: `bad_request` for malformed JSON, a
/// non-object, a missing or mistyped field, an empty `symbols` array or an out-of-range
/// `max_rate`, and `unknown_op` for an op this version does not know. The message names the
/// field at fault. Integers outside the 64-bit range make the request invalid JSON to the
/// parser, hence `bad_request` without an id.
pub fn parse(buf: &mut [u8]) -> Result<ClientMsg<'_>, ControlError> {
    // The JSON parser recurses per nesting level: a hostile `[[[[...` would overflow the
    // shard thread's stack. Our messages nest two levels; refuse anything deep up front.
    if nests_deeper_than(buf, MAX_NESTING) {
        return Err(ControlError::bad_request(None, "JSON nested too deeply"));
    }
    let value =
        simd_json::to_borrowed_value(buf).map_err(|_| ControlError::bad_request(None, "not valid JSON"))?;
    let Value::Object(obj) = &value else {
        return Err(ControlError::bad_request(None, "expected a JSON object"));
    };

    let mut f = Fields::default();
    for (key, v) in obj.iter() {
        let (slot, name) = match key.as_ref() {
            "op" => (&mut f.op, "op"),
            "id" => (&mut f.id, "id"),
            "symbols" => (&mut f.symbols, "symbols"),
            "max_rate" => (&mut f.max_rate, "max_rate"),
            "token" => (&mut f.token, "token"),
            "trades" => (&mut f.trades, "trades"),
            "depth" => (&mut f.depth, "depth"),
            "max_bandwidth" => (&mut f.max_bandwidth, "max_bandwidth"),
            _ => continue,
        };
        if slot.is_some() {
            f.duplicate.get_or_insert(name);
            f.duplicate_id |= name == "id";
        }
        *slot = Some(v);
    }

    // The id first, so every later error can echo it. A duplicated id is not trusted.
    let id = match (f.id, f.duplicate_id) {
        (_, true) | (None, _) => None,
        // `as_i64` is `None` for floats (even `4.0`), booleans, null and integers above
        // `i64::MAX`.
        (Some(Value::Static(n)), _) => Some(n.as_i64().ok_or_else(id_error)?),
        (Some(_), _) => return Err(id_error()),
    };
    if let Some(name) = f.duplicate {
        return Err(ControlError::bad_request(id, format!("duplicate field \"{name}\"")));
    }

    let op = match f.op {
        None => return Err(ControlError::bad_request(id, "missing field \"op\"")),
        Some(Value::String(op)) => op.as_ref(),
        Some(_) => {
            return Err(ControlError::bad_request(id, "field \"op\" must be a string"));
        }
    };
    match op {
        "subscribe" => Ok(ClientMsg::Subscribe {
            id,
            symbols: symbols(id, f.symbols)?,
            max_rate: max_rate(id, f.max_rate)?,
            trades: match f.trades {
                None => false,
                Some(Value::Static(StaticNode::Bool(b))) => *b,
                Some(_) => {
                    return Err(ControlError::bad_request(id, "field \"trades\" must be true or false"));
                }
            },
            depth: match f.depth {
                None => 0,
                Some(Value::Static(n)) if n.as_u64().is_some_and(|d| d <= u64::from(u16::MAX)) => {
                    n.as_u64().map_or(0, |d| d as u16)
                }
                Some(_) => {
                    return Err(ControlError::bad_request(
                        id,
                        "field \"depth\" must be a non-negative integer (order-book levels a side; 0 = none)",
                    ));
                }
            },
        }),
        "set" => match f.max_bandwidth {
            None => Err(ControlError::bad_request(id, "missing field \"max_bandwidth\" (the only setting)")),
            Some(Value::Static(StaticNode::Null)) => Ok(ClientMsg::Set { id, max_bandwidth: Some(0) }),
            Some(Value::Static(n)) if n.as_u64().is_some() => {
                Ok(ClientMsg::Set { id, max_bandwidth: n.as_u64() })
            }
            Some(_) => Err(ControlError::bad_request(
                id,
                "field \"max_bandwidth\" must be a non-negative integer (bytes/s), or 0 or null \
                 for the server's default",
            )),
        },
        "unsubscribe" => Ok(ClientMsg::Unsubscribe { id, symbols: symbols(id, f.symbols)? }),
        "list" => Ok(ClientMsg::List { id }),
        "ping" => Ok(ClientMsg::Ping { id }),
        "auth" => match f.token {
            Some(Value::String(Cow::Borrowed(t))) => Ok(ClientMsg::Auth { id, token: t }),
            Some(_) => Err(ControlError::bad_request(id, "field \"token\" must be a string")),
            None => Err(ControlError::bad_request(id, "missing field \"token\"")),
        },
        other => {
            let mut message = String::with_capacity(other.len() + 40);
            message.push_str("unknown op ");
            push_debug_str(&mut message, other);
            message.push_str(" (expected subscribe, unsubscribe, list, ping, set or auth)");
            Err(ControlError { id, code: ErrorCode::UnknownOp, message })
        }
    }
}

/// Deepest `[`/`{` nesting accepted in a client message (real ones nest 2 levels).
pub const MAX_NESTING: usize = 16;

/// Whether `buf` opens more than `max` nested arrays/objects at some point (brackets inside
/// strings, including escaped quotes, do not count). Linear, no allocation.
fn nests_deeper_than(buf: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in buf {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn id_error() -> ControlError {
    ControlError::bad_request(None, "id must be an integer")
}

/// Appends `s` quoted, truncated to 64 bytes (at a char boundary) so a hostile op name cannot
/// make the error reply large.
fn push_debug_str(out: &mut String, s: &str) {
    const MAX: usize = 64;
    let mut end = s.len().min(MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push('"');
    out.push_str(&s[..end]);
    if end < s.len() {
        out.push_str("...");
    }
    out.push('"');
}

/// The `symbols` field: a non-empty array of strings, borrowed from the buffer.
fn symbols<'a>(id: Option<i64>, v: Option<&Value<'a>>) -> Result<Vec<&'a str>, ControlError> {
    let arr = match v {
        None => return Err(ControlError::bad_request(id, "missing field \"symbols\"")),
        Some(Value::Array(arr)) => arr,
        Some(_) => {
            return Err(ControlError::bad_request(id, "field \"symbols\" must be an array of strings"));
        }
    };
    if arr.is_empty() {
        return Err(ControlError::bad_request(id, "field \"symbols\" must not be empty"));
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, s) in arr.iter().enumerate() {
        match s {
            // The borrowed-value parser only ever produces borrowed strings.
            Value::String(Cow::Borrowed(s)) => out.push(*s),
            _ => {
                return Err(ControlError::bad_request(
                    id,
                    format!("field \"symbols\" element {i} must be a string"),
                ));
            }
        }
    }
    Ok(out)
}

/// The `max_rate` field: absent → `None`; `0` or `null` → unlimited; `(0, 1000]` → a limit.
fn max_rate(id: Option<i64>, v: Option<&Value<'_>>) -> Result<Option<MaxRate>, ControlError> {
    let rate = match v {
        None => return Ok(None),
        Some(Value::Static(StaticNode::Null)) => return Ok(Some(MaxRate::UNLIMITED)),
        // Integers and floats alike; `None` for booleans.
        Some(Value::Static(n)) => n.cast_f64(),
        Some(_) => None,
    };
    rate.and_then(MaxRate::from_rate).map(Some).ok_or_else(|| {
        ControlError::bad_request(
            id,
            "field \"max_rate\" must be a number in (0, 1000] (updates/s per symbol), \
             or 0 or null for no limit",
        )
    })
}

/// Writes the reply to `set`: `{"type":"settings","id":5,"max_bandwidth":20000}`, the
/// bandwidth now in force (bytes/s; 0 = unlimited).
pub fn write_settings(out: &mut Vec<u8>, id: Option<i64>, max_bandwidth: u64) {
    open_reply(out, "settings", id);
    out.extend_from_slice(b",\"max_bandwidth\":");
    out.extend_from_slice(itoa::Buffer::new().format(max_bandwidth).as_bytes());
    out.push(b'}');
}

/// Writes `{"type":"<ty>"` and, when present, `,"id":<id>`.
fn open_reply(out: &mut Vec<u8>, ty: &str, id: Option<i64>) {
    out.extend_from_slice(b"{\"type\":");
    escape_str(out, ty);
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }
}

/// Writes `,"symbols":[...]`.
fn symbol_array<'s>(out: &mut Vec<u8>, symbols: impl IntoIterator<Item = &'s str>) {
    out.extend_from_slice(b",\"symbols\":");
    super::json::write_string_array(out, symbols);
}

/// Appends `{"type":"subscribed","id":1,"symbols":{"AAPL":0,"MSFT":1}}`: each subscribed
/// symbol with the numeric id its binary records carry.
pub fn write_subscribed<'s>(
    out: &mut Vec<u8>,
    id: Option<i64>,
    symbols: impl IntoIterator<Item = (&'s str, u32)>,
) {
    open_reply(out, "subscribed", id);
    out.extend_from_slice(b",\"symbols\":{");
    let mut int = itoa::Buffer::new();
    for (i, (s, sid)) in symbols.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape_str(out, s);
        out.push(b':');
        out.extend_from_slice(int.format(sid).as_bytes());
    }
    out.extend_from_slice(b"}}");
}

/// Appends `{"type":"unsubscribed","id":2,"symbols":["AAPL"]}`.
pub fn write_unsubscribed<'s>(
    out: &mut Vec<u8>,
    id: Option<i64>,
    symbols: impl IntoIterator<Item = &'s str>,
) {
    open_reply(out, "unsubscribed", id);
    symbol_array(out, symbols);
    out.push(b'}');
}

/// Appends `{"type":"symbols","id":3,"symbols":["AAPL",...]}`, the reply to `list`.
pub fn write_symbols<'s>(out: &mut Vec<u8>, id: Option<i64>, symbols: impl IntoIterator<Item = &'s str>) {
    open_reply(out, "symbols", id);
    symbol_array(out, symbols);
    out.push(b'}');
}

/// Appends `{"type":"authenticated","id":6,"sub":"alice","exp":1732240000}` (the reply to
/// a successful `auth`; `exp` in seconds since the Unix epoch).
pub fn write_authenticated(out: &mut Vec<u8>, id: Option<i64>, sub: &str, exp: u64) {
    open_reply(out, "authenticated", id);
    out.extend_from_slice(b",\"sub\":");
    escape_str(out, sub);
    out.extend_from_slice(b",\"exp\":");
    out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
    out.push(b'}');
}

/// Appends `{"type":"pong","id":4,"ts":<ts_ns>}`; `ts_ns` is the server's clock in ns since the
/// Unix epoch.
pub fn write_pong(out: &mut Vec<u8>, id: Option<i64>, ts_ns: u64) {
    open_reply(out, "pong", id);
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts_ns).as_bytes());
    out.push(b'}');
}

/// Appends `{"type":"error","id":1,"code":"<code>","message":"..."}`, plus
/// `"symbols":[...]` when `symbols` is given (for `unknown_symbol`: the unknown names).
pub fn write_error(
    out: &mut Vec<u8>,
    id: Option<i64>,
    code: ErrorCode,
    message: &str,
    symbols: Option<&[&str]>,
) {
    open_reply(out, "error", id);
    out.extend_from_slice(b",\"code\":");
    escape_str(out, code.as_str());
    out.extend_from_slice(b",\"message\":");
    escape_str(out, message);
    if let Some(symbols) = symbols {
        symbol_array(out, symbols.iter().copied());
    }
    out.push(b'}');
}

/// Appends `{"type":"status","feed":"up"}` or `"down"`: sent to every client when the feed's
/// upstream (the NATS bus) goes away or comes back, and on connect while it is away.
pub fn write_status(out: &mut Vec<u8>, feed_up: bool) {
    open_reply(out, "status", None);
    out.extend_from_slice(b",\"feed\":");
    escape_str(out, if feed_up { "up" } else { "down" });
    out.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_byte_is_not_json() {
        let mut msg = b"{\"op\":\"ping\",\"id\":0\0 5}".to_vec();
        let e = parse(&mut msg).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_deeper_than(deep(MAX_NESTING).as_bytes(), MAX_NESTING));
        assert!(nests_deeper_than(deep(MAX_NESTING + 1).as_bytes(), MAX_NESTING));
        // Brackets in strings (escaped quotes included) do not count.
        let s = format!(r#"{{"op":"ping","x":"\"{}"}}"#, "[".repeat(100));
        assert!(!nests_deeper_than(s.as_bytes(), MAX_NESTING));
        let mut msg = format!(r#"{{"op":"ping","id":1,"x":{}}}"#, deep(100_000)).into_bytes();
        let e = parse(&mut msg).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None));
        assert!(e.message.contains("nested too deeply"));
    }
    /// simd-json 0.17.3 accepted each of these, which are not JSON; 0.19 refuses them, and
    /// so must `parse` (found by the `control_message` fuzz target, which now checks every
    /// accepted request against serde_json with no exemption).
    #[test]
    fn refuses_what_simd_json_0_17_let_through() {
        for text in [
            // A NUL after a number ended it and the rest up to `}` was skipped (id 0).
            "{\"op\":\"ping\",\"id\":0\0 5}",
            // Junk after a number of 19+ digits (its slow path) was ignored: 4/s.
            r#"{"op":"subscribe","symbols":["A"],"max_rate":4.0000000000000000000junk}"#,
            // A high surrogate escape without its low half decoded to U+0000.
            r#"{"op":"subscribe","symbols":["A\ud9264"]}"#,
        ] {
            let mut buf = text.as_bytes().to_vec();
            let e = parse(&mut buf).expect_err(text);
            assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None), "{text}");
            assert_eq!(e.message, "not valid JSON", "{text}");
        }
    }

    use simd_json::prelude::*;

    type Want = Result<ClientMsg<'static>, (Option<i64>, ErrorCode, &'static str)>;

    fn sub(id: Option<i64>, symbols: Vec<&'static str>, max_rate: Option<u64>) -> Want {
        Ok(ClientMsg::Subscribe {
            trades: false,
            depth: 0,
            id,
            symbols,
            max_rate: max_rate.map(|interval_ns| MaxRate { interval_ns }),
        })
    }

    fn bad(id: Option<i64>, names: &'static str) -> Want {
        Err((id, ErrorCode::BadRequest, names))
    }

    #[test]
    fn parse_table() {
        use ErrorCode::*;
        // (input, expected): for errors, (id, code, a substring the message must contain).
        let cases: Vec<(&str, Want)> = vec![
            // Valid requests of each op.
            (
                r#"{"op":"subscribe","symbols":["AAPL","MSFT"],"id":1,"max_rate":4}"#,
                sub(Some(1), vec!["AAPL", "MSFT"], Some(250_000_000)),
            ),
            (r#"{"op":"subscribe","symbols":["AAPL"]}"#, sub(None, vec!["AAPL"], None)),
            (r#"{"symbols":["A"],"op":"subscribe","id":-7}"#, sub(Some(-7), vec!["A"], None)),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":2.5}"#, sub(None, vec!["A"], Some(400_000_000))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":3}"#, sub(None, vec!["A"], Some(333_333_333))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1000}"#, sub(None, vec!["A"], Some(1_000_000))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1e3}"#, sub(None, vec!["A"], Some(1_000_000))),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":0.5}"#,
                sub(None, vec!["A"], Some(2_000_000_000)),
            ),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":0}"#, sub(None, vec!["A"], Some(0))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":0.0}"#, sub(None, vec!["A"], Some(0))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":-0}"#, sub(None, vec!["A"], Some(0))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1E2}"#, sub(None, vec!["A"], Some(10_000_000))),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":null}"#, sub(None, vec!["A"], Some(0))),
            (
                r#"{"op":"subscribe","symbols":["A","A","zz"],"id":9223372036854775807,"extra":{"x":[1]}}"#,
                sub(Some(i64::MAX), vec!["A", "A", "zz"], None),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"id":-9223372036854775808}"#,
                sub(Some(i64::MIN), vec!["A"], None),
            ),
            (r#" {"op":"subscribe","symbols":["BRK\/B"]} "#, sub(None, vec!["BRK/B"], None)),
            (
                r#"{"op":"subscribe","symbols":["A"],"trades":true,"max_rate":4}"#,
                Ok(ClientMsg::Subscribe {
                    id: None,
                    symbols: vec!["A"],
                    max_rate: Some(MaxRate { interval_ns: 250_000_000 }),
                    trades: true,
                    depth: 0,
                }),
            ),
            (r#"{"op":"subscribe","symbols":["A"],"trades":false}"#, sub(None, vec!["A"], None)),
            (
                r#"{"op":"subscribe","symbols":["A"],"depth":10}"#,
                Ok(ClientMsg::Subscribe {
                    id: None,
                    symbols: vec!["A"],
                    max_rate: None,
                    trades: false,
                    depth: 10,
                }),
            ),
            (r#"{"op":"subscribe","symbols":["A"],"depth":0}"#, sub(None, vec!["A"], None)),
            (
                r#"{"op":"subscribe","symbols":["A"],"depth":-1,"id":4}"#,
                bad(Some(4), "\"depth\" must be a non-negative integer"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"depth":2.5}"#,
                bad(None, "\"depth\" must be a non-negative integer"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"depth":"5"}"#,
                bad(None, "\"depth\" must be a non-negative integer"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"depth":65536}"#,
                bad(None, "\"depth\" must be a non-negative integer"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"trades":1,"id":3}"#,
                bad(Some(3), "\"trades\" must be true or false"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"trades":true,"trades":false}"#,
                bad(None, "duplicate field \"trades\""),
            ),
            (
                r#"{"op":"set","max_bandwidth":20000,"id":5}"#,
                Ok(ClientMsg::Set { id: Some(5), max_bandwidth: Some(20_000) }),
            ),
            (r#"{"op":"set","max_bandwidth":0}"#, Ok(ClientMsg::Set { id: None, max_bandwidth: Some(0) })),
            (r#"{"op":"set","max_bandwidth":null}"#, Ok(ClientMsg::Set { id: None, max_bandwidth: Some(0) })),
            (r#"{"op":"set","id":6}"#, bad(Some(6), "missing field \"max_bandwidth\"")),
            (r#"{"op":"set","max_bandwidth":-1}"#, bad(None, "non-negative integer")),
            (r#"{"op":"set","max_bandwidth":1.5}"#, bad(None, "non-negative integer")),
            (r#"{"op":"set","max_bandwidth":"fast"}"#, bad(None, "non-negative integer")),
            (
                r#"{"op":"unsubscribe","symbols":["AAPL"],"id":2}"#,
                Ok(ClientMsg::Unsubscribe { id: Some(2), symbols: vec!["AAPL"] }),
            ),
            (
                r#"{"op":"unsubscribe","symbols":["X"],"max_rate":"ignored"}"#,
                Ok(ClientMsg::Unsubscribe { id: None, symbols: vec!["X"] }),
            ),
            (r#"{"op":"list","id":3}"#, Ok(ClientMsg::List { id: Some(3) })),
            (r#"{"op":"list"}"#, Ok(ClientMsg::List { id: None })),
            (r#"{"op":"ping","id":4}"#, Ok(ClientMsg::Ping { id: Some(4) })),
            (r#"{"op":"ping","id":0,"symbols":5}"#, Ok(ClientMsg::Ping { id: Some(0) })),
            (r#"{"op":"ping"}"#, Ok(ClientMsg::Ping { id: None })),
            ("{\"op\":\"ping\",\"id\":-0}\n", Ok(ClientMsg::Ping { id: Some(0) })),
            // Not JSON / not an object.
            ("", bad(None, "not valid JSON")),
            ("{", bad(None, "not valid JSON")),
            (r#"{"op":"ping","id":4,}"#, bad(None, "not valid JSON")),
            ("\u{7f}garbage", bad(None, "not valid JSON")),
            (r#"{"op":"ping"} x"#, bad(None, "not valid JSON")),
            (r#"{"op":"ping"}{"op":"ping"}"#, bad(None, "not valid JSON")),
            ("\u{feff}{\"op\":\"ping\"}", bad(None, "not valid JSON")),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1e400}"#, bad(None, "not valid JSON")),
            (r#"{"op":"ping","id":99999999999999999999999}"#, bad(None, "not valid JSON")),
            (r#"[{"op":"ping"}]"#, bad(None, "expected a JSON object")),
            (r#""ping""#, bad(None, "expected a JSON object")),
            ("42", bad(None, "expected a JSON object")),
            ("null", bad(None, "expected a JSON object")),
            // id.
            (r#"{"op":"ping","id":"4"}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":4.0}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":4.5}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":1e2}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":null}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":true}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":[1]}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","id":9223372036854775808}"#, bad(None, "id must be an integer")),
            (r#"{"op":"ping","op":"list","id":1}"#, bad(Some(1), "duplicate field \"op\"")),
            (r#"{"op":"ping","id":1,"id":2}"#, bad(None, "duplicate field \"id\"")),
            (r#"{"op":"a","op":"b","id":1,"id":2}"#, bad(None, "duplicate field \"op\"")),
            // op.
            (r#"{"id":5}"#, bad(Some(5), "missing field \"op\"")),
            (r#"{}"#, bad(None, "missing field \"op\"")),
            (r#"{"op":1,"id":5}"#, bad(Some(5), "field \"op\" must be a string")),
            (r#"{"op":null,"id":5}"#, bad(Some(5), "field \"op\" must be a string")),
            (r#"{"op":"Subscribe","id":6}"#, Err((Some(6), UnknownOp, "unknown op \"Subscribe\""))),
            (r#"{"op":"","id":6}"#, Err((Some(6), UnknownOp, "unknown op \"\""))),
            // symbols.
            (r#"{"op":"subscribe","id":7}"#, bad(Some(7), "missing field \"symbols\"")),
            (r#"{"op":"unsubscribe","id":7}"#, bad(Some(7), "missing field \"symbols\"")),
            (
                r#"{"op":"subscribe","symbols":"AAPL","id":7}"#,
                bad(Some(7), "field \"symbols\" must be an array"),
            ),
            (r#"{"op":"subscribe","symbols":null}"#, bad(None, "field \"symbols\" must be an array")),
            (
                r#"{"op":"subscribe","symbols":[],"id":7}"#,
                bad(Some(7), "field \"symbols\" must not be empty"),
            ),
            (r#"{"op":"unsubscribe","symbols":[]}"#, bad(None, "field \"symbols\" must not be empty")),
            (r#"{"op":"subscribe","symbols":["A",1],"id":7}"#, bad(Some(7), "field \"symbols\" element 1")),
            (r#"{"op":"subscribe","symbols":[["A"]]}"#, bad(None, "field \"symbols\" element 0")),
            // max_rate.
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":-1,"id":8}"#,
                bad(Some(8), "\"max_rate\" must be a number in (0, 1000]"),
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":-0.5}"#,
                bad(None, "\"max_rate\" must be a number in (0, 1000]"),
            ),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1001,"id":8}"#, bad(Some(8), "\"max_rate\"")),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":1000.001}"#, bad(None, "\"max_rate\"")),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":"4"}"#, bad(None, "\"max_rate\"")),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":true}"#, bad(None, "\"max_rate\"")),
            (r#"{"op":"subscribe","symbols":["A"],"max_rate":[4]}"#, bad(None, "\"max_rate\"")),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_rate":18446744073709551615}"#,
                bad(None, "\"max_rate\""),
            ),
        ];
        assert!(cases.len() >= 25);
        for (input, want) in cases {
            let mut buf = input.as_bytes().to_vec();
            let got = parse(&mut buf);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "input {input}"),
                (Err(g), Err((id, code, needle))) => {
                    assert_eq!((g.id, g.code), (*id, *code), "input {input}: {g:?}");
                    assert!(g.message.contains(needle), "input {input}: message {:?}", g.message);
                }
                _ => panic!("input {input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn symbols_are_unescaped_and_borrowed() {
        let mut buf = br#"{"op":"subscribe","symbols":["A\u0042C","x\"y","\u00e9"]}"#.to_vec();
        let range = buf.as_ptr_range();
        let msg = parse(&mut buf).unwrap();
        let ClientMsg::Subscribe { symbols, .. } = msg else { panic!("{msg:?}") };
        assert_eq!(symbols, vec!["ABC", "x\"y", "é"]);
        for s in symbols {
            assert!(range.contains(&s.as_ptr()), "{s} is not borrowed from the buffer");
        }
    }

    #[test]
    fn unknown_op_name_is_truncated() {
        let long = "x".repeat(1000);
        let mut buf = format!(r#"{{"op":"{long}","id":1}}"#).into_bytes();
        let err = parse(&mut buf).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOp);
        assert!(err.message.len() < 200, "{}", err.message);
    }

    #[test]
    fn max_rate_from_rate() {
        let cases: &[(f64, Option<u64>)] = &[
            (0.0, Some(0)),
            (-0.0, Some(0)),
            (1.0, Some(1_000_000_000)),
            (3.0, Some(333_333_333)),
            (6.0, Some(166_666_667)),
            (1000.0, Some(1_000_000)),
            (1e-300, Some(u64::MAX)),
            (1000.5, None),
            (-1.0, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (f64::NEG_INFINITY, None),
        ];
        for &(rate, want) in cases {
            let got = MaxRate::from_rate(rate).map(|m| m.interval_ns);
            assert_eq!(got, want, "rate {rate}");
        }
        assert!(MaxRate::UNLIMITED.is_unlimited());
    }

    /// Parses a reply with simd-json, checking it is one valid JSON object.
    fn reparse(out: &[u8]) -> simd_json::OwnedValue {
        let mut buf = out.to_vec();
        let v = simd_json::to_owned_value(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)));
        assert!(v.is_object());
        v
    }

    /// A reply writer call under test.
    type Writer = Box<dyn Fn(&mut Vec<u8>)>;

    #[test]
    fn reply_writers_golden() {
        let mut out = Vec::new();
        let cases: Vec<(Writer, &str)> = vec![
            (
                Box::new(|o| write_subscribed(o, Some(1), [("AAPL", 0), ("MSFT", 1)])),
                r#"{"type":"subscribed","id":1,"symbols":{"AAPL":0,"MSFT":1}}"#,
            ),
            (Box::new(|o| write_subscribed(o, None, [])), r#"{"type":"subscribed","symbols":{}}"#),
            (
                Box::new(|o| write_unsubscribed(o, Some(2), ["AAPL"])),
                r#"{"type":"unsubscribed","id":2,"symbols":["AAPL"]}"#,
            ),
            (
                Box::new(|o| write_symbols(o, Some(3), ["AAPL", "MSFT"])),
                r#"{"type":"symbols","id":3,"symbols":["AAPL","MSFT"]}"#,
            ),
            (Box::new(|o| write_symbols(o, None, [])), r#"{"type":"symbols","symbols":[]}"#),
            (
                Box::new(|o| write_settings(o, Some(5), 20_000)),
                r#"{"type":"settings","id":5,"max_bandwidth":20000}"#,
            ),
            (
                Box::new(|o| write_pong(o, Some(4), 1_732_240_000_123_456_789)),
                r#"{"type":"pong","id":4,"ts":1732240000123456789}"#,
            ),
            (Box::new(|o| write_pong(o, None, 0)), r#"{"type":"pong","ts":0}"#),
            (
                Box::new(|o| write_error(o, Some(1), ErrorCode::UnknownSymbol, "unknown", Some(&["ZZ"]))),
                r#"{"type":"error","id":1,"code":"unknown_symbol","message":"unknown","symbols":["ZZ"]}"#,
            ),
            (
                Box::new(|o| write_error(o, None, ErrorCode::BadRequest, "not valid JSON", None)),
                r#"{"type":"error","code":"bad_request","message":"not valid JSON"}"#,
            ),
            (
                Box::new(|o| write_error(o, Some(-3), ErrorCode::TooManySymbols, "", None)),
                r#"{"type":"error","id":-3,"code":"too_many_symbols","message":""}"#,
            ),
            (
                Box::new(|o| write_error(o, Some(5), ErrorCode::RateLimited, "slow down", None)),
                r#"{"type":"error","id":5,"code":"rate_limited","message":"slow down"}"#,
            ),
            (
                Box::new(|o| write_error(o, None, ErrorCode::UnknownOp, "unknown op", None)),
                r#"{"type":"error","code":"unknown_op","message":"unknown op"}"#,
            ),
            (Box::new(|o| write_status(o, true)), r#"{"type":"status","feed":"up"}"#),
            (Box::new(|o| write_status(o, false)), r#"{"type":"status","feed":"down"}"#),
        ];
        for (write, want) in cases {
            out.clear();
            write(&mut out);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
            reparse(&out);
        }
    }

    #[test]
    fn reply_writers_escape_strings() {
        let nasty = ["a\"b", "back\\slash", "ctl\u{1}\n", "é€", ""];
        let mut out = Vec::new();
        write_subscribed(&mut out, Some(1), nasty.iter().map(|s| (*s, 7)));
        let v = reparse(&out);
        let syms = v["symbols"].as_object().unwrap();
        assert_eq!(syms.len(), nasty.len());
        for s in nasty {
            assert_eq!(syms.get(s).and_then(|v| v.as_u64()), Some(7), "{s:?}");
        }

        for write in [write_unsubscribed, write_symbols] {
            out.clear();
            write(&mut out, None, nasty.iter().copied());
            let v = reparse(&out);
            assert!(v.get("id").is_none());
            let got: Vec<&str> =
                v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert_eq!(got, nasty);
        }

        out.clear();
        write_error(&mut out, Some(9), ErrorCode::UnknownSymbol, "bad \"x\"\t", Some(&nasty));
        let v = reparse(&out);
        assert_eq!(v["id"].as_i64(), Some(9));
        assert_eq!(v["code"].as_str(), Some("unknown_symbol"));
        assert_eq!(v["message"].as_str(), Some("bad \"x\"\t"));
        assert_eq!(v["symbols"].as_array().unwrap().len(), nasty.len());
    }

    #[test]
    fn control_error_writes_its_reply() {
        let mut buf = br#"{"op":"nope","id":12}"#.to_vec();
        let err = parse(&mut buf).unwrap_err();
        let mut out = Vec::new();
        err.write(&mut out);
        let v = reparse(&out);
        assert_eq!(v["type"].as_str(), Some("error"));
        assert_eq!(v["id"].as_i64(), Some(12));
        assert_eq!(v["code"].as_str(), Some("unknown_op"));
        assert_eq!(v["message"].as_str(), Some(err.message.as_str()));
        assert_eq!(err.to_string(), format!("unknown_op: {}", err.message));
    }

    #[test]
    fn client_msg_id() {
        let cases: &[(&str, Option<i64>)] = &[
            (r#"{"op":"subscribe","symbols":["A"],"id":1}"#, Some(1)),
            (r#"{"op":"unsubscribe","symbols":["A"],"id":2}"#, Some(2)),
            (r#"{"op":"list","id":3}"#, Some(3)),
            (r#"{"op":"ping"}"#, None),
        ];
        for &(input, id) in cases {
            let mut buf = input.as_bytes().to_vec();
            assert_eq!(parse(&mut buf).unwrap().id(), id, "{input}");
        }
    }
}
