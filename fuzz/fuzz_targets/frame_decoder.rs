//! The WebSocket frame decoder (`protocol::frame::FrameDecoder`), fed arbitrary client bytes
//! in chunks of a fuzzer-chosen size, as a socket would deliver them.
//!
//! Input layout: byte 0 = chunk size (1..=256), byte 1 picks the message size limit, the rest
//! is the byte stream from the client.
//!
//! Invariants checked:
//! - `decode` never panics and always terminates (each call is bounded by the input);
//! - data messages respect the limit, control payloads 125 bytes, text is UTF-8, a close
//!   carries a valid code and a reason that fits a control frame;
//! - an error is a close code the server may send (1002, 1007 or 1009, all RFC-valid), and
//!   the decoder keeps returning that same error afterwards;
//! - after `Ok(None)` the unread input never exceeds `buffered_limit()`;
//! - chunking does not matter: the same messages and the same error come out when the whole
//!   stream is decoded at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickgate::protocol::frame::{
    CloseError, FrameDecoder, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD, Message, close_code, is_valid_close_code,
};

/// Limits to try: tiny ones (below a control frame), the RFC boundaries and the default.
const LIMITS: [usize; 8] = [0, 1, 16, 125, 126, 1000, 65_535, 65_536];

fn check_message(m: &Message, max: usize) {
    match m {
        Message::Text(p) => {
            assert!(p.len() <= max, "text of {} bytes over the limit {max}", p.len());
            assert!(std::str::from_utf8(p).is_ok(), "text message is not UTF-8");
        }
        Message::Binary(p) => assert!(p.len() <= max, "binary of {} bytes over the limit {max}", p.len()),
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
        Message::Close { code, reason } => {
            match code {
                Some(c) => assert!(is_valid_close_code(*c), "close code {c}"),
                None => assert!(reason.is_empty()),
            }
            assert!(reason.len() <= MAX_CLOSE_REASON);
        }
    }
}

fn check_error(e: &CloseError) {
    assert!(
        matches!(
            e.code,
            close_code::PROTOCOL_ERROR | close_code::INVALID_PAYLOAD | close_code::MESSAGE_TOO_BIG
        ),
        "unexpected close code {e:?}"
    );
    assert!(is_valid_close_code(e.code), "{e:?}");
    assert!(!e.reason.is_empty() && e.reason.len() <= MAX_CLOSE_REASON && e.reason.is_ascii());
}

/// Decodes `stream` in chunks of `chunk` bytes; returns the messages and the error if any.
fn run(max: usize, stream: &[u8], chunk: usize) -> (Vec<Message>, Option<CloseError>) {
    let mut d = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for c in stream.chunks(chunk) {
        buf.extend_from_slice(c);
        // Every message needs at least one 6-byte frame, so this bounds a correct decoder.
        for calls in 0.. {
            assert!(calls <= stream.len() / 6 + 1, "decode does not terminate");
            let before = buf.len();
            match d.decode(&mut buf) {
                Ok(Some(m)) => {
                    assert!(buf.len() < before, "a message without consuming input");
                    check_message(&m, max);
                    msgs.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    check_error(&e);
                    assert_eq!(d.decode(&mut buf), Err(e), "a failed decoder must stay failed");
                    return (msgs, Some(e));
                }
            }
        }
        assert!(
            buf.len() <= d.buffered_limit(),
            "{} bytes buffered, limit {}",
            buf.len(),
            d.buffered_limit()
        );
    }
    (msgs, None)
}

fuzz_target!(|data: &[u8]| {
    let [chunk, limit, stream @ ..] = data else { return };
    let chunk = usize::from(*chunk) + 1;
    let max = LIMITS[usize::from(*limit) % LIMITS.len()];
    let chunked = run(max, stream, chunk);
    let whole = run(max, stream, stream.len().max(1));
    assert_eq!(chunked, whole, "chunking changed the result");
});
