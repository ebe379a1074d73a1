//! Client control messages (`protocol::control::parse`), the first thing the gateway reads
//! from an untrusted client, and the replies written for them.
//!
//! Invariants checked:
//! - `parse` never panics, whatever the bytes;
//! - a request is accepted only if the buffer was valid UTF-8 (symbols are `&str`s borrowed
//!   from it), and a subscribe/unsubscribe carries at least one symbol;
//! - a limited `max_rate` is at least 1 ms (rates above 1000/s are refused);
//! - an accepted request is valid JSON to serde_json too, with the same `op`, `id` and symbols
//!   (simd-json and a reference parser agree on what the client asked for);
//! - every error has a code and a message, and its error reply is one JSON object carrying
//!   that code, that message and the id;
//! - every reply the gateway writes for an accepted request is valid JSON that gives back the
//!   request's id and symbols exactly (escaping is right for any symbol text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tickgate::protocol::control::{self, ClientMsg, ErrorCode};

/// Parses a reply the gateway wrote; it must be exactly one JSON object.
fn reply(out: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice::<Value>(out) {
        Ok(Value::Object(m)) => m,
        other => panic!("reply is not a JSON object: {other:?}: {}", String::from_utf8_lossy(out)),
    }
}

/// The request as serde_json (the reference parser) reads it: whatever `parse` accepted, or
/// answered with an id, must be JSON to it too.
fn reference(original: &[u8], what: &str) -> Value {
    match serde_json::from_slice(original) {
        Ok(v) => v,
        Err(e) => panic!("{what}, but serde_json rejects it: {e}"),
    }
}

/// An integer as the protocol reads it. serde_json reads `-0` as the float -0.0; the
/// protocol (and JSON's grammar) has it an integer, 0.
fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().filter(|f| *f == 0.0 && f.is_sign_negative()).map(|_| 0))
}

fn check_id(m: &serde_json::Map<String, Value>, id: Option<i64>) {
    assert_eq!(m.get("id").map(|v| v.as_i64().expect("integer id")), id, "reply id");
}

fn check_string_array(v: &Value, want: &[&str]) {
    let got: Vec<&str> =
        v.as_array().expect("symbols array").iter().map(|s| s.as_str().expect("string")).collect();
    assert_eq!(got, want);
}

fuzz_target!(|data: &[u8]| {
    let original = data.to_vec();
    let mut buf = data.to_vec();
    let mut out = Vec::new();
    match control::parse(&mut buf) {
        Ok(msg) => {
            assert!(std::str::from_utf8(&original).is_ok(), "accepted a request that is not UTF-8");
            let reference = reference(&original, "accepted a request");
            let obj = reference.as_object().expect("accepted a request that is not an object");
            let op = obj.get("op").and_then(Value::as_str).expect("accepted a request without a string op");
            if let Some(id) = msg.id() {
                assert_eq!(obj.get("id").and_then(integer), Some(id), "id differs from serde_json's");
            }
            match &msg {
                ClientMsg::Subscribe { id, symbols, max_rate, trades, depth } => {
                    assert_eq!(op, "subscribe");
                    assert!(!symbols.is_empty());
                    assert_eq!(obj.get("trades").and_then(Value::as_bool).unwrap_or(false), *trades);
                    assert_eq!(obj.get("depth").and_then(Value::as_u64).unwrap_or(0), u64::from(*depth));
                    check_string_array(&obj["symbols"], symbols);
                    if let Some(r) = max_rate {
                        assert!(r.is_unlimited() || r.interval_ns >= 1_000_000, "{r:?}");
                    }
                    // The subscribed reply, each symbol with an id.
                    control::write_subscribed(&mut out, *id, symbols.iter().copied().zip(0u32..));
                    let m = reply(&out);
                    assert_eq!(m["type"], "subscribed");
                    check_id(&m, *id);
                    let got = m["symbols"].as_object().expect("symbols object");
                    for (i, s) in symbols.iter().enumerate() {
                        // Duplicates keep the last index in a JSON object.
                        let last = symbols.iter().rposition(|x| x == s).unwrap_or(i);
                        assert_eq!(got.get(*s).and_then(Value::as_u64), Some(last as u64), "{s:?}");
                    }
                    // The unknown_symbol error lists names back to the client.
                    out.clear();
                    control::write_error(&mut out, *id, ErrorCode::UnknownSymbol, "unknown", Some(symbols));
                    let m = reply(&out);
                    check_id(&m, *id);
                    assert_eq!(m["code"], "unknown_symbol");
                    check_string_array(&m["symbols"], symbols);
                }
                ClientMsg::Unsubscribe { id, symbols } => {
                    assert_eq!(op, "unsubscribe");
                    assert!(!symbols.is_empty());
                    check_string_array(&obj["symbols"], symbols);
                    control::write_unsubscribed(&mut out, *id, symbols.iter().copied());
                    let m = reply(&out);
                    assert_eq!(m["type"], "unsubscribed");
                    check_id(&m, *id);
                    check_string_array(&m["symbols"], symbols);
                }
                ClientMsg::List { id } => {
                    assert_eq!(op, "list");
                    control::write_symbols(&mut out, *id, ["AAPL", "BRK/B", "x\"y\\z\u{1}"]);
                    let m = reply(&out);
                    assert_eq!(m["type"], "symbols");
                    check_id(&m, *id);
                    check_string_array(&m["symbols"], &["AAPL", "BRK/B", "x\"y\\z\u{1}"]);
                }
                ClientMsg::Ping { id } => {
                    assert_eq!(op, "ping");
                    control::write_pong(&mut out, *id, u64::MAX);
                    let m = reply(&out);
                    assert_eq!(m["type"], "pong");
                    check_id(&m, *id);
                    assert_eq!(m["ts"].as_u64(), Some(u64::MAX));
                }
                ClientMsg::Set { id, max_bandwidth } => {
                    assert_eq!(op, "set");
                    let given = &obj["max_bandwidth"];
                    let want = if given.is_null() { Some(0) } else { given.as_u64() };
                    assert_eq!(*max_bandwidth, want, "max_bandwidth differs from serde_json's");
                    control::write_settings(&mut out, *id, max_bandwidth.unwrap_or(0));
                    let m = reply(&out);
                    assert_eq!(m["type"], "settings");
                    check_id(&m, *id);
                    assert_eq!(m["max_bandwidth"].as_u64(), *max_bandwidth);
                }
                ClientMsg::Auth { id, token } => {
                    assert_eq!(op, "auth");
                    assert_eq!(obj.get("token").and_then(Value::as_str), Some(*token));
                    // The token's text stands in for the subject a JWT would carry.
                    control::write_authenticated(&mut out, *id, token, u64::MAX);
                    let m = reply(&out);
                    assert_eq!(m["type"], "authenticated");
                    check_id(&m, *id);
                    assert_eq!(m["sub"].as_str(), Some(*token));
                    assert_eq!(m["exp"].as_u64(), Some(u64::MAX));
                }
            }
        }
        Err(e) => {
            let code = e.code.as_str();
            assert!(!code.is_empty() && !e.message.is_empty(), "{e:?}");
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownOp),
                "parse may only answer bad_request or unknown_op: {e:?}"
            );
            // An id is echoed only when the request was a JSON object with one integer id.
            if let Some(id) = e.id {
                let reference = reference(&original, "an error echoes an id");
                assert_eq!(reference.get("id").and_then(integer), Some(id), "{e:?}");
            }
            e.write(&mut out);
            let m = reply(&out);
            assert_eq!(m["type"], "error");
            assert_eq!(m["code"], code);
            assert_eq!(m["message"].as_str(), Some(e.message.as_str()));
            check_id(&m, e.id);
        }
    }
});
