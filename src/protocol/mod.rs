//! Protocol v1: what goes over a client's WebSocket, byte for byte. The normative description
//! for client authors is `docs/PROTOCOL.md`; this module is its implementation, and its tests
//! pin the exact bytes.
//!
//! # Summary
//!
//! - **Format**, chosen per connection: `?format=json` (the default), `?format=json-batch` or
//!   `?format=binary`, or the subprotocol `tickgate.v1.json` / `tickgate.v1.json-batch` /
//!   `tickgate.v1.binary` ([`Format`]).
//! - **Client → server**: text frames, one JSON object each, with an `"op"` of `subscribe`,
//!   `unsubscribe`, `list` or `ping` and an optional integer `"id"` echoed in the reply
//!   ([`control::parse`]).
//! - **Server → client control replies**: JSON text frames in both formats: `subscribed`,
//!   `unsubscribed`, `symbols`, `pong`, `error` ([`control`]'s `write_*` functions).
//! - **Updates**: in JSON, one text frame per update with a fixed field order and prices
//!   printed exactly from fixed point ([`json::encode_update`]); in batched JSON, the same
//!   objects, all those of one flush in one text frame holding a JSON array
//!   ([`json::batch_append`]); in binary, one binary frame of one or more 88-byte
//!   little-endian records ([`binary::encode_record`]).
//! - **WebSocket framing** (RFC 6455, server side, no I/O): unmasked server frames written
//!   into a batch buffer, and a decoder for masked client frames that enforces the RFC's
//!   rules and the message size limit, naming the close code to send ([`frame`]).
//!
//! Everything here is plain deterministic logic over byte buffers: no sockets, no clocks (the
//! caller passes the time in), and no allocation on the per-update encode paths beyond the
//! growth of the caller's reused output buffer.

pub mod binary;
pub mod control;
pub mod frame;
pub mod json;
pub mod sse;

/// The data format of one connection's updates. Control replies are JSON text frames in
/// both formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON text frame per update (the default).
    #[default]
    Json,
    /// Binary frames of 88-byte records (see [`binary`]).
    Binary,
    /// The updates of one flush in one text frame: a JSON array of the same update objects
    /// as [`Format::Json`] ([`json::MAX_BATCH_BYTES`] at most per frame). One frame, one
    /// event in a browser instead of one per update.
    JsonBatch,
    /// Server-Sent Events (`GET /sse`): each message (the same JSON objects as
    /// [`Format::Json`]) as one event of a `text/event-stream` ([`sse`]). Never negotiated on
    /// `/ws`.
    Sse,
}

impl Format {
    /// Parses the value of the `format` query parameter: exactly `json`, `json-batch` or
    /// `binary` (case-sensitive). Anything else is `None`.
    pub fn from_query(v: &str) -> Option<Format> {
        match v {
            "json" => Some(Format::Json),
            "binary" => Some(Format::Binary),
            "json-batch" => Some(Format::JsonBatch),
            _ => None,
        }
    }

    /// Parses one offered WebSocket subprotocol: exactly `tickgate.v1.json`,
    /// `tickgate.v1.json-batch` or `tickgate.v1.binary` (case-sensitive). Anything else is
    /// `None`.
    pub fn from_subprotocol(v: &str) -> Option<Format> {
        match v {
            "tickgate.v1.json" => Some(Format::Json),
            "tickgate.v1.binary" => Some(Format::Binary),
            "tickgate.v1.json-batch" => Some(Format::JsonBatch),
            _ => None,
        }
    }

    /// The subprotocol name for this format, as echoed in `Sec-WebSocket-Protocol`.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Format::Json | Format::Sse => "tickgate.v1.json",
            Format::Binary => "tickgate.v1.binary",
            Format::JsonBatch => "tickgate.v1.json-batch",
        }
    }

    /// The query-parameter spelling: `json`, `json-batch` or `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "binary",
            Format::JsonBatch => "json-batch",
            Format::Sse => "sse",
        }
    }
}

/// The example update of docs/PROTOCOL.md as a tick (AAPL at 189.12/189.14, seq 42): shared by
/// the golden tests, the encode benchmark and other clients' decoder tests.
pub fn example_tick() -> crate::feeds::Tick {
    use crate::feeds::{SCALE, Tick};
    Tick {
        symbol: 0,
        seq: 42,
        bid: 18_912_000_000,
        bid_size: 300 * SCALE,
        ask: 18_914_000_000,
        ask_size: 200 * SCALE,
        last: 18_913_000_000,
        last_size: 100 * SCALE,
        volume: 1_234_567 * SCALE,
        ts_event: 1_732_240_000_123_456_789,
        ts_gateway: 1_732_240_000_123_460_000,
        ..Tick::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        let cases: &[(&str, &str, Format)] = &[
            ("json", "tickgate.v1.json", Format::Json),
            ("binary", "tickgate.v1.binary", Format::Binary),
            ("json-batch", "tickgate.v1.json-batch", Format::JsonBatch),
        ];
        for &(query, sub, f) in cases {
            assert_eq!(Format::from_query(query), Some(f));
            assert_eq!(Format::from_subprotocol(sub), Some(f));
            assert_eq!(f.as_str(), query);
            assert_eq!(f.subprotocol(), sub);
        }
        assert_eq!(Format::default(), Format::Json);
    }

    #[test]
    fn format_rejects_other_spellings() {
        for v in ["", "JSON", "Binary", "bin", "json ", "tickgate.v1.json", "msgpack"] {
            assert_eq!(Format::from_query(v), None, "query {v:?}");
        }
        for v in ["", "json", "tickgate.v1", "tickgate.v2.json", "TICKGATE.V1.JSON"] {
            assert_eq!(Format::from_subprotocol(v), None, "subprotocol {v:?}");
        }
    }
}
