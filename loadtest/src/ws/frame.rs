//! WebSocket framing (RFC 6455), client side, with no I/O.
//!
//! - [`parse_header`] reads the header of a **server** frame at the front of a byte slice
//!   without copying anything: the caller gets the payload's position and processes it in
//!   place, in the read buffer.
//! - [`check`] tells whether a parsed header is one a tickgate server may send: final, no
//!   RSV bits, unmasked (RFC 6455 §5.1: a server must not mask), a known opcode, control
//!   frames of at most 125 bytes. The gateway never fragments, so a non-final frame is a
//!   protocol error here too (documented in `docs/BENCHMARKS.md`).
//! - [`write_client_frame`] appends a **masked** client frame (every client frame must be).

use std::ops::Range;

/// Opcodes (RFC 6455 §5.2) as raw header values, taken from the gateway's own
/// [`OpCode`](tickgate::protocol::frame::OpCode) so both sides share one table.
pub mod opcode {
    use tickgate::protocol::frame::OpCode;

    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = OpCode::Continuation as u8;
    /// UTF-8 text message.
    pub const TEXT: u8 = OpCode::Text as u8;
    /// Binary message.
    pub const BINARY: u8 = OpCode::Binary as u8;
    /// Close (control).
    pub const CLOSE: u8 = OpCode::Close as u8;
    /// Ping (control).
    pub const PING: u8 = OpCode::Ping as u8;
    /// Pong (control).
    pub const PONG: u8 = OpCode::Pong as u8;
}

/// Largest payload of a control frame (the gateway's constant).
pub use tickgate::protocol::frame::MAX_CONTROL_PAYLOAD;

/// Largest server frame accepted. The biggest legitimate frame is the `list` reply (about 10
/// bytes per symbol, so 10 MiB for a million symbols); anything larger is treated as a
/// corrupt stream and the connection is dropped.
pub const MAX_FRAME: u64 = 64 << 20;

/// A parsed frame header; the payload is `payload` within the slice given to
/// [`parse_header`], and the whole frame is `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// The three RSV bits (must be 0 without extensions).
    pub rsv: u8,
    /// The opcode nibble.
    pub opcode: u8,
    /// MASK bit (a server must not set it).
    pub masked: bool,
    /// Where the payload lies, relative to the start of the frame.
    pub payload: Range<usize>,
    /// Total frame length (header + mask key + payload).
    pub len: usize,
}

/// Why the byte stream is not a WebSocket frame stream we can follow any further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The declared payload length is larger than [`MAX_FRAME`].
    #[error("server frame of {len} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The declared payload length.
        len: u64,
    },
}

/// Why a frame (whose extent is known, so the stream can go on after it) is not one a
/// server may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// FIN = 0 or a continuation frame: tickgate never fragments.
    #[error("fragmented server frame (opcode {opcode}, fin {fin})")]
    Fragmented {
        /// The opcode.
        opcode: u8,
        /// The FIN bit.
        fin: bool,
    },
    /// RSV bits set without a negotiated extension.
    #[error("server frame with reserved bits {rsv:#05b}")]
    Reserved {
        /// The RSV bits.
        rsv: u8,
    },
    /// A masked server frame (RFC 6455 §5.1).
    #[error("masked server frame")]
    Masked,
    /// A reserved opcode.
    #[error("server frame with reserved opcode {opcode}")]
    BadOpcode {
        /// The opcode.
        opcode: u8,
    },
    /// A control frame over 125 bytes.
    #[error("control frame of {len} bytes (limit 125)")]
    ControlTooLong {
        /// Its payload length.
        len: usize,
    },
}

/// Parses the frame header at the front of `buf`.
///
/// Returns `Ok(None)` if `buf` does not yet hold the whole frame (header and payload), and
/// `Ok(Some(header))` once it does.
///
/// # Errors
///
/// [`StreamError::TooLarge`] if the declared length is over [`MAX_FRAME`]; the stream cannot
/// be followed further.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, StreamError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4usize),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(l) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(l);
                (u64::from_be_bytes(w), 10usize)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2usize),
    };
    if len > MAX_FRAME {
        return Err(StreamError::TooLarge { len });
    }
    if masked {
        at += 4;
    }
    // len <= MAX_FRAME, so this fits a usize on every platform we build for.
    let total = at + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: b0 & 0x0f,
        masked,
        payload: at..total,
        len: total,
    }))
}

/// The total length of the frame at the front of `buf`, if its header is complete (the
/// payload may not be): used to grow a read buffer for a large frame.
pub fn declared_len(buf: &[u8]) -> Option<u64> {
    let b1 = *buf.get(1)?;
    let (len, at) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    Some(len + at + if b1 & 0x80 != 0 { 4 } else { 0 })
}

/// Checks that `h` is a frame a tickgate server may send (see the module docs).
///
/// # Errors
///
/// The first rule the frame breaks.
pub fn check(h: &Header) -> Result<(), FrameError> {
    if h.rsv != 0 {
        return Err(FrameError::Reserved { rsv: h.rsv });
    }
    if h.masked {
        return Err(FrameError::Masked);
    }
    match h.opcode {
        opcode::TEXT | opcode::BINARY if h.fin => Ok(()),
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {
            Err(FrameError::Fragmented { opcode: h.opcode, fin: h.fin })
        }
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            let len = h.payload.len();
            if len > MAX_CONTROL_PAYLOAD {
                Err(FrameError::ControlTooLong { len })
            } else if !h.fin {
                Err(FrameError::Fragmented { opcode: h.opcode, fin: h.fin })
            } else {
                Ok(())
            }
        }
        other => Err(FrameError::BadOpcode { opcode: other }),
    }
}

/// Appends a final, masked client frame with `payload`, masked with `mask`.
pub fn write_client_frame(out: &mut Vec<u8>, op: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.reserve(14 + len);
    out.push(0x80 | (op & 0x0f));
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends a masked close frame with `code` and a short `reason` (cut to fit a control
/// frame at a char boundary).
pub fn write_client_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: [u8; 4]) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    write_client_frame(out, opcode::CLOSE, &p, mask);
}

/// The close code of a close frame's payload: 1005 ("no status received", RFC 6455 §7.1.5)
/// when the payload is empty, `None` when it is malformed (one byte).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [] => Some(1005),
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        [_] => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tickgate::protocol::frame::{self as server, OpCode};

    #[test]
    fn parses_what_the_gateway_writes() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = Vec::new();
            server::write_frame(&mut buf, OpCode::Binary, &payload);
            buf.extend_from_slice(b"next");
            let h = parse_header(&buf).unwrap().unwrap();
            assert_eq!(h.opcode, opcode::BINARY, "len {len}");
            assert!(h.fin && !h.masked && h.rsv == 0);
            assert_eq!(&buf[h.payload.clone()], &payload[..]);
            assert_eq!(h.len, buf.len() - 4);
            assert_eq!(declared_len(&buf), Some(h.len as u64));
            check(&h).unwrap();
            // Every strict prefix is incomplete.
            for cut in [0, 1, h.payload.start.saturating_sub(1), h.len - 1] {
                if cut < h.len {
                    assert_eq!(parse_header(&buf[..cut]).unwrap(), None, "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn close_frames_round_trip() {
        let mut buf = Vec::new();
        server::write_close(&mut buf, 1008, "slow consumer");
        let h = parse_header(&buf).unwrap().unwrap();
        assert_eq!(h.opcode, opcode::CLOSE);
        check(&h).unwrap();
        assert_eq!(close_code(&buf[h.payload]), Some(1008));
        assert_eq!(close_code(&[]), Some(1005));
        assert_eq!(close_code(&[3]), None);
    }

    #[test]
    fn rejects_what_a_server_must_not_send() {
        // (bytes, expected error)
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![0x01, 0x00], FrameError::Fragmented { opcode: 1, fin: false }),
            (vec![0x80, 0x00], FrameError::Fragmented { opcode: 0, fin: true }),
            (vec![0xC1, 0x00], FrameError::Reserved { rsv: 4 }),
            (vec![0x81, 0x80, 1, 2, 3, 4], FrameError::Masked),
            (vec![0x83, 0x00], FrameError::BadOpcode { opcode: 3 }),
            (
                vec![0x89, 126, 0, 126].into_iter().chain([0u8; 126]).collect(),
                FrameError::ControlTooLong { len: 126 },
            ),
        ];
        for (bytes, want) in cases {
            let h = parse_header(&bytes).unwrap().unwrap();
            assert_eq!(check(&h), Err(want), "{bytes:02x?}");
        }
        let huge = [0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert!(matches!(parse_header(&huge), Err(StreamError::TooLarge { .. })));
    }

    #[test]
    fn client_frames_are_masked_and_decodable_by_the_gateway() {
        for len in [0usize, 5, 125, 126, 70_000] {
            // The gateway's decoder checks that text is UTF-8: use ASCII payloads.
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Vec::new();
            write_client_frame(&mut out, opcode::TEXT, &text, [9, 8, 7, 6]);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit");
            let mut dec = server::FrameDecoder::new(1 << 20);
            let mut bytes = bytes::BytesMut::from(&out[..]);
            match dec.decode(&mut bytes).unwrap() {
                Some(server::Message::Text(t)) => assert_eq!(t, text, "len {len}"),
                other => panic!("len {len}: {other:?}"),
            }
            assert!(bytes.is_empty());
        }
        let mut out = Vec::new();
        write_client_close(&mut out, 1000, "done", [1, 2, 3, 4]);
        let mut dec = server::FrameDecoder::new(1 << 20);
        let mut bytes = bytes::BytesMut::from(&out[..]);
        match dec.decode(&mut bytes).unwrap() {
            Some(server::Message::Close { code, reason }) => {
                assert_eq!(code, Some(1000));
                assert_eq!(reason, "done");
            }
            other => panic!("{other:?}"),
        }
    }
}
