//! WebSocket framing (RFC 6455), server side, with no I/O: frame writers for the batch buffer
//! and a decoder for client frames.
//!
//! # Writing
//!
//! Server frames are always final (FIN = 1) and unmasked, so a frame is a 2-, 4- or 10-byte
//! header ([`header_len`]) followed by the payload. The shard encodes many frames into one
//! buffer and writes it with one syscall, which is why these are plain functions appending to
//! a `Vec<u8>` rather than a sink.
//!
//! # Reading
//!
//! [`FrameDecoder`] takes bytes as they arrive (in a [`BytesMut`]), consumes complete frames
//! from the front, unmasks them, reassembles fragmented messages (with control frames allowed
//! in between, as the RFC requires) and enforces the protocol rules. A violation is a
//! [`CloseError`]: the close code and reason the server must send before dropping the
//! connection. Sizes are checked as soon as a frame *header* is readable, before its payload
//! is buffered, so a client cannot make the server hold more than
//! [`FrameDecoder::buffered_limit`] bytes of unread input plus one message being reassembled.
//!
//! Text is checked as UTF-8 **as it arrives** ([`Utf8Check`]): a message fails with 1007 on
//! the fragment, or the part of a frame, that breaks it, not when it completes (Autobahn 6.4.x
//! "fail fast"). Not enforced (as most servers): that the extended payload length uses the
//! minimal encoding.

use bytes::{Buf, BytesMut};

/// Close codes the gateway sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: going away (server shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error (a framing rule was broken).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: unsupported data (the client sent a binary message).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1007: invalid payload (text that is not UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: policy violation (slow consumer, idle client).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: message too big.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: internal server error.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest close reason that fits a control frame next to the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Longest client frame header: 2 bytes, a 64-bit extended length and a 4-byte mask key.
pub const MAX_CLIENT_HEADER: usize = 14;

/// A frame opcode (RFC 6455 §5.2). The reserved values 3–7 and 11–15 have no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0,
    /// Starts a UTF-8 text message.
    Text = 1,
    /// Starts a binary message.
    Binary = 2,
    /// Close (control).
    Close = 8,
    /// Ping (control).
    Ping = 9,
    /// Pong (control).
    Pong = 10,
}

impl OpCode {
    /// Decodes the low nibble of a frame's first byte; reserved opcodes are `None`.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0 => Some(OpCode::Continuation),
            1 => Some(OpCode::Text),
            2 => Some(OpCode::Binary),
            8 => Some(OpCode::Close),
            9 => Some(OpCode::Ping),
            10 => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x08 != 0
    }
}

/// The header length of a server (unmasked) frame with a payload of `payload_len` bytes:
/// 2 up to 125 bytes, 4 up to 65535, 10 beyond.
pub const fn header_len(payload_len: usize) -> usize {
    if payload_len <= 125 {
        2
    } else if payload_len <= 0xffff {
        4
    } else {
        10
    }
}

/// Appends the header of a final, unmasked frame of `payload_len` bytes, using the shortest
/// length form (7-, 16- or 64-bit). The caller appends the payload.
#[inline]
pub fn write_header(out: &mut Vec<u8>, op: OpCode, payload_len: usize) {
    debug_assert!(!op.is_control() || payload_len <= MAX_CONTROL_PAYLOAD);
    let b0 = 0x80 | op as u8;
    if payload_len <= 125 {
        out.extend_from_slice(&[b0, payload_len as u8]);
    } else if payload_len <= 0xffff {
        let l = (payload_len as u16).to_be_bytes();
        out.extend_from_slice(&[b0, 126, l[0], l[1]]);
    } else {
        let l = (payload_len as u64).to_be_bytes();
        out.extend_from_slice(&[b0, 127, l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]]);
    }
}

/// The payload of a complete server (unmasked) frame that [`write_frame`] wrote.
#[inline]
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(header..).unwrap_or(&[])
}

/// Appends a complete final, unmasked frame.
#[inline]
pub fn write_frame(out: &mut Vec<u8>, op: OpCode, payload: &[u8]) {
    out.reserve(header_len(payload.len()) + payload.len());
    write_header(out, op, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason`, the reason cut to at most
/// [`MAX_CLOSE_REASON`] (123) bytes at a char boundary so the frame stays a valid control
/// frame with a valid UTF-8 reason. Use a code from [`close_code`].
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    write_header(out, OpCode::Close, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// A complete message from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message, already checked to be UTF-8. A `Vec` so the caller can parse it in
    /// place (simd-json needs `&mut [u8]`).
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping; the server answers with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The client closes: `code` is `None` for an empty close payload.
    Close {
        /// The close code, checked to be one valid on the wire.
        code: Option<u16>,
        /// The close reason, possibly empty.
        reason: String,
    },
}

/// A protocol violation by the client: the close the server must send (then it closes the
/// connection). Costs only that one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("websocket close {code}: {reason}")]
pub struct CloseError {
    /// The close code to send, from [`close_code`].
    pub code: u16,
    /// The close reason to send (short, ASCII).
    pub reason: &'static str,
}

const fn protocol_error(reason: &'static str) -> CloseError {
    CloseError { code: close_code::PROTOCOL_ERROR, reason }
}

const RSV_SET: CloseError = protocol_error("reserved bits set");
const RESERVED_OPCODE: CloseError = protocol_error("reserved opcode");
const UNMASKED: CloseError = protocol_error("unmasked client frame");
const FRAGMENTED_CONTROL: CloseError = protocol_error("fragmented control frame");
const CONTROL_TOO_LONG: CloseError = protocol_error("control frame payload over 125 bytes");
const BAD_LENGTH: CloseError = protocol_error("frame length has the top bit set");
const STRAY_CONTINUATION: CloseError = protocol_error("continuation frame without a message");
const EXPECTED_CONTINUATION: CloseError = protocol_error("new message inside a fragmented message");
const CLOSE_ONE_BYTE: CloseError = protocol_error("close payload of 1 byte");
const BAD_CLOSE_CODE: CloseError = protocol_error("invalid close code");
const TOO_BIG: CloseError = CloseError { code: close_code::MESSAGE_TOO_BIG, reason: "message too big" };
const TEXT_NOT_UTF8: CloseError =
    CloseError { code: close_code::INVALID_PAYLOAD, reason: "text message is not valid UTF-8" };
const REASON_NOT_UTF8: CloseError =
    CloseError { code: close_code::INVALID_PAYLOAD, reason: "close reason is not valid UTF-8" };

/// A parsed client frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    op: OpCode,
    /// Header bytes, mask key included.
    len: usize,
    /// Payload bytes; within the size limit (checked while parsing).
    payload_len: usize,
    mask: [u8; 4],
}

/// A fragmented data message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    payload: Vec<u8>,
}

/// Checks UTF-8 text that arrives in pieces, failing on the first byte that cannot be part of
/// valid UTF-8 whatever follows. Keeps the 1–3 bytes of a character cut by a piece boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Check {
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Check {
    /// Takes the next piece of the text.
    ///
    /// # Errors
    ///
    /// 1007 when the text seen so far can no longer be valid UTF-8.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), CloseError> {
        if self.pending_len > 0 {
            // Complete the character cut at the last boundary. Its lead byte was accepted as
            // the start of a valid sequence, so it is C2..=F4 and names the length.
            let need = match self.pending[0] {
                0..0xe0 => 2,
                0xe0..0xf0 => 3,
                _ => 4,
            };
            let take = (need - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(TEXT_NOT_UTF8),
                // Still a valid prefix; the piece ended inside the character.
                Err(_) => return Ok(()),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(TEXT_NOT_UTF8),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Ends the text: an error if it stops inside a character.
    ///
    /// # Errors
    ///
    /// 1007 when the last character is incomplete.
    pub fn finish(&mut self) -> Result<(), CloseError> {
        let complete = self.pending_len == 0;
        *self = Utf8Check::default();
        if complete { Ok(()) } else { Err(TEXT_NOT_UTF8) }
    }
}

/// Decodes client frames into messages; one per connection. See the [module docs](self).
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_bytes: usize,
    partial: Option<Partial>,
    /// The UTF-8 state of the text message being received.
    utf8: Utf8Check,
    /// Payload bytes of the incomplete text frame at the front of the input already fed to
    /// `utf8` (0 when the front frame is not an incomplete text frame).
    front_checked: usize,
    /// The first error; every later call returns it again.
    failed: Option<CloseError>,
}

impl FrameDecoder {
    /// A decoder accepting data messages (text or binary, reassembled) of at most
    /// `max_message_bytes` bytes of payload. Control frames are limited to 125 bytes by the
    /// RFC whatever this limit.
    pub fn new(max_message_bytes: usize) -> Self {
        FrameDecoder {
            max_message_bytes,
            partial: None,
            utf8: Utf8Check::default(),
            front_checked: 0,
            failed: None,
        }
    }

    /// How many bytes of undecoded input the reader may hold in the buffer passed to
    /// [`decode`](Self::decode): the message limit plus the longest header
    /// ([`MAX_CLIENT_HEADER`], 14 bytes), or a full control frame if the limit is below 125
    /// bytes. Every frame the decoder accepts fits; once `decode` has returned `Ok(None)`,
    /// what is left is one partial frame no longer than this.
    pub fn buffered_limit(&self) -> usize {
        self.max_message_bytes.max(MAX_CONTROL_PAYLOAD).saturating_add(MAX_CLIENT_HEADER)
    }

    /// Whether a fragmented message is being reassembled.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Consumes complete frames from the front of `buf` until a message is complete and
    /// returns it; a trailing partial frame stays in `buf`. Call repeatedly until `Ok(None)`
    /// (more input needed), after each read.
    ///
    /// # Errors
    ///
    /// A [`CloseError`] when the client broke the protocol: 1002 for framing violations (RSV
    /// bits, reserved opcodes, unmasked frames, fragmented or over-long control frames, a
    /// 64-bit length with the top bit set, fragments out of order, a close payload of 1 byte
    /// or an invalid close code), 1009 for a message over the limit (detected from the
    /// header alone), 1007 for a text message or close reason that is not UTF-8. The decoder
    /// is then finished: every later call returns the same error, and the caller sends that
    /// close and drops the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CloseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.decode_inner(buf);
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CloseError> {
        // Bounded by the input: every iteration consumes at least one frame (>= 6 bytes).
        loop {
            let Some(h) = self.parse_header(buf)? else {
                return Ok(None);
            };
            // No overflow: payload_len is within the limit (data) or <= 125 (control).
            let total = h.len + h.payload_len;
            let text = match h.op {
                OpCode::Text => true,
                OpCode::Continuation => self.partial.as_ref().is_some_and(|p| p.text),
                _ => false,
            };
            if buf.len() < total {
                if text {
                    // Fail fast: check what has arrived of this frame (a copy, unmasked).
                    self.check_front_frame(&buf[h.len..], h.mask)?;
                }
                return Ok(None);
            }
            // Bytes of this frame's payload already checked while it was incomplete.
            let checked = std::mem::take(&mut self.front_checked);
            let payload = &mut buf[h.len..total];
            let msg = match h.op {
                OpCode::Ping | OpCode::Pong | OpCode::Close => {
                    unmask(payload, h.mask);
                    let p = payload.to_vec();
                    match h.op {
                        OpCode::Ping => Some(Message::Ping(p)),
                        OpCode::Pong => Some(Message::Pong(p)),
                        _ => Some(close_message(&p)?),
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    let mut p = payload.to_vec();
                    unmask(&mut p, h.mask);
                    if text {
                        self.utf8.feed(&p[checked..])?;
                    }
                    if h.fin {
                        Some(self.data_message(text, p)?)
                    } else {
                        self.partial = Some(Partial { text, payload: p });
                        None
                    }
                }
                OpCode::Continuation => {
                    // parse_header checked that a message is in progress.
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(STRAY_CONTINUATION);
                    };
                    let start = partial.payload.len();
                    partial.payload.extend_from_slice(payload);
                    unmask(&mut partial.payload[start..], h.mask);
                    if text {
                        self.utf8.feed(&partial.payload[start + checked..])?;
                    }
                    match (h.fin, self.partial.take()) {
                        (true, Some(p)) => Some(self.data_message(p.text, p.payload)?),
                        (_, p) => {
                            self.partial = p;
                            None
                        }
                    }
                }
            };
            buf.advance(total);
            if msg.is_some() {
                return Ok(msg);
            }
        }
    }

    /// Feeds the UTF-8 check what has arrived since the last call of the incomplete text frame
    /// whose payload starts `payload` (still masked with `mask`).
    fn check_front_frame(&mut self, payload: &[u8], mask: [u8; 4]) -> Result<(), CloseError> {
        let mut chunk = [0u8; 256];
        while let Some(rest) = payload.get(self.front_checked..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(chunk.len());
            for (i, (c, b)) in chunk.iter_mut().zip(&rest[..n]).enumerate() {
                *c = b ^ mask[(self.front_checked + i) & 3];
            }
            self.utf8.feed(&chunk[..n])?;
            self.front_checked += n;
        }
        Ok(())
    }

    /// A complete data message; text has been fed to the UTF-8 check piece by piece.
    fn data_message(&mut self, text: bool, payload: Vec<u8>) -> Result<Message, CloseError> {
        if !text {
            return Ok(Message::Binary(payload));
        }
        self.utf8.finish()?;
        Ok(Message::Text(payload))
    }

    /// Parses and checks the header at the front of `b`; `Ok(None)` if incomplete. Every rule
    /// is checked as soon as the bytes it needs are present.
    fn parse_header(&self, b: &[u8]) -> Result<Option<Header>, CloseError> {
        let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(RSV_SET);
        }
        let op = OpCode::from_u8(b0 & 0x0f).ok_or(RESERVED_OPCODE)?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(UNMASKED);
        }
        let len7 = b1 & 0x7f;
        if op.is_control() {
            if !fin {
                return Err(FRAGMENTED_CONTROL);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(CONTROL_TOO_LONG);
            }
        }
        // Bytes of this message already reassembled, or None if a new message starts here.
        let so_far = match (op, &self.partial) {
            (OpCode::Continuation, Some(p)) => Some(p.payload.len()),
            (OpCode::Continuation, None) => return Err(STRAY_CONTINUATION),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(EXPECTED_CONTINUATION),
            _ => None,
        };
        let (payload_len, ext): (u64, usize) = match len7 {
            126 => match b.get(2..4) {
                Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 2),
                None => return Ok(None),
            },
            127 => match b.get(2..10) {
                Some(l) => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(l);
                    let len = u64::from_be_bytes(w);
                    if len >> 63 != 0 {
                        return Err(BAD_LENGTH);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        if !op.is_control() {
            let room = self.max_message_bytes.saturating_sub(so_far.unwrap_or(0));
            if payload_len > room as u64 {
                return Err(TOO_BIG);
            }
        }
        // Fits in usize: it is at most max_message_bytes or 125.
        let payload_len = payload_len as usize;
        let len = 2 + ext + 4;
        let Some(m) = b.get(2 + ext..len) else {
            return Ok(None);
        };
        Ok(Some(Header { fin, op, len, payload_len, mask: [m[0], m[1], m[2], m[3]] }))
    }
}

/// Decodes an (unmasked) close payload: empty, or a valid code and a UTF-8 reason.
fn close_message(p: &[u8]) -> Result<Message, CloseError> {
    let (code, reason) = match p {
        [] => {
            return Ok(Message::Close { code: None, reason: String::new() });
        }
        [_] => return Err(CLOSE_ONE_BYTE),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(BAD_CLOSE_CODE);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| REASON_NOT_UTF8)?;
    Ok(Message::Close { code: Some(code), reason: reason.to_owned() })
}

/// Whether a close code may appear on the wire: 1000–1003, 1007–1014 (1004 is reserved,
/// 1005, 1006 and 1015 are for local use only), and 3000–4999 (registered and private).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `payload` with the 4-byte masking key (RFC 6455 §5.3), 8 bytes at a time.
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let (words, tail) = payload.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ k).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, so at key byte 0.
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// How a test frame encodes its length.
    #[derive(Clone, Copy)]
    enum Len {
        /// The shortest form, as a correct client does.
        Min,
        /// Force the 16-bit form.
        L16,
        /// Force the 64-bit form.
        L64,
        /// Put this raw value in the 64-bit form (for the top-bit test).
        Raw64(u64),
    }

    /// Builds a client frame: `b0` is the whole first byte (FIN, RSV, opcode).
    fn frame_raw(b0: u8, mask: Option<[u8; 4]>, len: Len, payload: &[u8]) -> Vec<u8> {
        let m = if mask.is_some() { 0x80 } else { 0 };
        let n = payload.len();
        let mut out = vec![b0];
        match len {
            Len::Min if n <= 125 => out.push(m | n as u8),
            Len::Min | Len::L16 if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Min | Len::L16 | Len::L64 => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
            Len::Raw64(v) => {
                out.push(m | 127);
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut p = payload.to_vec();
        if let Some(k) = mask {
            out.extend_from_slice(&k);
            for (i, b) in p.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        out.extend_from_slice(&p);
        out
    }

    /// A masked client frame with the shortest length form.
    fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        frame_raw(u8::from(fin) << 7 | op as u8, Some(MASK), Len::Min, payload)
    }

    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    }

    /// Feeds `input` to a fresh decoder in chunks of `chunk` bytes, decoding after each one.
    /// Returns the messages and the error, if any.
    fn decode_chunked(max: usize, input: &[u8], chunk: usize) -> (Vec<Message>, Option<CloseError>) {
        let mut d = FrameDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut msgs = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(c);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => msgs.push(m),
                    Ok(None) => break,
                    Err(e) => return (msgs, Some(e)),
                }
            }
            assert!(buf.len() <= d.buffered_limit());
        }
        (msgs, None)
    }

    fn decode_all(max: usize, input: &[u8]) -> (Vec<Message>, Option<CloseError>) {
        decode_chunked(max, input, input.len())
    }

    #[test]
    fn header_forms() {
        // (payload_len, expected header)
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (0xffff, &[0x82, 126, 0xff, 0xff]),
            (0x1_0000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (0x0102_0304_0506, &[0x82, 127, 0, 0, 1, 2, 3, 4, 5, 6]),
        ];
        for &(n, want) in cases {
            let mut out = vec![0xee];
            write_header(&mut out, OpCode::Binary, n);
            assert_eq!(&out[1..], want, "len {n}");
            assert_eq!(header_len(n), want.len(), "len {n}");
        }
        let mut out = Vec::new();
        write_header(&mut out, OpCode::Text, 3);
        write_header(&mut out, OpCode::Ping, 0);
        write_header(&mut out, OpCode::Pong, 1);
        write_header(&mut out, OpCode::Close, 2);
        assert_eq!(out, [0x81, 3, 0x89, 0, 0x8a, 1, 0x88, 2]);
    }

    #[test]
    fn write_frame_and_close() {
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Text, b"hi");
        assert_eq!(out, b"\x81\x02hi");

        let big = vec![7u8; 70_000];
        out.clear();
        write_frame(&mut out, OpCode::Binary, &big);
        assert_eq!(out.len(), 10 + big.len());
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);

        out.clear();
        write_close(&mut out, close_code::POLICY_VIOLATION, "slow consumer");
        assert_eq!(out, b"\x88\x0f\x03\xf0slow consumer");

        // Reasons are cut to 123 bytes at a char boundary.
        let cases: &[(String, usize)] = &[
            ("a".repeat(123), 123),
            ("a".repeat(124), 123),
            (format!("{}é", "a".repeat(122)), 122), // é would end at byte 124
            ("€".repeat(50), 123),                  // 41 whole 3-byte chars
            ("😀".repeat(40), 120),
            (String::new(), 0),
        ];
        for (reason, want) in cases {
            out.clear();
            write_close(&mut out, close_code::NORMAL, reason);
            assert_eq!(out[1] as usize, 2 + want, "reason {reason:?}");
            assert_eq!(out.len(), 4 + want);
            assert!(std::str::from_utf8(&out[4..]).is_ok());
            assert!(reason.starts_with(std::str::from_utf8(&out[4..]).unwrap()));
        }
    }

    #[test]
    fn opcode_bytes() {
        for v in 0u8..16 {
            let op = OpCode::from_u8(v);
            assert_eq!(op.is_some(), matches!(v, 0..=2 | 8..=10), "opcode {v}");
            if let Some(op) = op {
                assert_eq!(op as u8, v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
    }

    #[test]
    fn decodes_single_frames() {
        let big16 = vec![b'x'; 300];
        let big64 = vec![0xabu8; 70_000];
        let text16 = "é".repeat(200);
        let cases: Vec<(Vec<u8>, Message)> = vec![
            (frame(true, OpCode::Text, b"hello"), Message::Text(b"hello".to_vec())),
            (frame(true, OpCode::Text, b""), Message::Text(Vec::new())),
            (frame(true, OpCode::Binary, &[0, 1, 2, 255]), Message::Binary(vec![0, 1, 2, 255])),
            (frame(true, OpCode::Ping, b"p"), Message::Ping(b"p".to_vec())),
            (frame(true, OpCode::Ping, &[9; 125]), Message::Ping(vec![9; 125])),
            (frame(true, OpCode::Pong, b""), Message::Pong(Vec::new())),
            (frame(true, OpCode::Close, b""), Message::Close { code: None, reason: String::new() }),
            (
                frame(true, OpCode::Close, &close_payload(1000, b"bye")),
                Message::Close { code: Some(1000), reason: "bye".into() },
            ),
            (
                frame(true, OpCode::Close, &close_payload(4999, "ü".as_bytes())),
                Message::Close { code: Some(4999), reason: "ü".into() },
            ),
            (frame(true, OpCode::Binary, &big16), Message::Binary(big16.clone())),
            (frame(true, OpCode::Text, text16.as_bytes()), Message::Text(text16.clone().into())),
            (frame(true, OpCode::Binary, &big64), Message::Binary(big64.clone())),
            // Non-minimal length encodings are accepted.
            (frame_raw(0x81, Some(MASK), Len::L16, b"ab"), Message::Text(b"ab".to_vec())),
            (frame_raw(0x82, Some(MASK), Len::L64, b"ab"), Message::Binary(b"ab".to_vec())),
            (frame_raw(0x81, Some([0; 4]), Len::Min, b"zero mask"), Message::Text(b"zero mask".to_vec())),
        ];
        for (input, want) in cases {
            let (msgs, err) = decode_all(1 << 20, &input);
            assert_eq!(err, None);
            assert_eq!(msgs, vec![want.clone()]);
            // Byte by byte gives the same result, and consumes everything.
            let (msgs, err) = decode_chunked(1 << 20, &input, 1);
            assert_eq!((msgs, err), (vec![want], None));
        }
    }

    #[test]
    fn leaves_partial_frames_and_consumes_whole_ones() {
        let mut input = frame(true, OpCode::Text, b"one");
        input.extend(frame(true, OpCode::Text, b"two"));
        let cut = input.len() - 2;
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&input[..cut]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Message::Text(b"one".to_vec()))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), cut - 9); // "two" frame minus its last two bytes
        buf.extend_from_slice(&input[cut..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Message::Text(b"two".to_vec()))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn reassembles_fragments_with_interleaved_control_frames() {
        let mut input = frame(false, OpCode::Text, "hé".as_bytes()[..2].as_ref());
        input.extend(frame(true, OpCode::Ping, b"ping!"));
        input.extend(frame(false, OpCode::Continuation, &"hé".as_bytes()[2..])); // splits é
        input.extend(frame(true, OpCode::Pong, b""));
        input.extend(frame(false, OpCode::Continuation, b""));
        input.extend(frame(true, OpCode::Continuation, b" world"));
        input.extend(frame(false, OpCode::Binary, &[1]));
        input.extend(frame(true, OpCode::Continuation, &[2, 3]));
        let want = vec![
            Message::Ping(b"ping!".to_vec()),
            Message::Pong(Vec::new()),
            Message::Text("hé world".into()),
            Message::Binary(vec![1, 2, 3]),
        ];
        for chunk in [1, 2, 3, 7, input.len()] {
            assert_eq!(decode_chunked(100, &input, chunk), (want.clone(), None), "chunk {chunk}");
        }
    }

    #[test]
    fn close_errors() {
        use close_code::*;
        let text = |p: &[u8]| frame(true, OpCode::Text, p);
        let frag = |op, p: &[u8]| frame(false, op, p);
        let mut big_fragments = frag(OpCode::Binary, &[0; 60]);
        big_fragments.extend(frag(OpCode::Continuation, &[0; 40]));
        big_fragments.extend(frame(true, OpCode::Continuation, &[0; 1]));
        let mut exactly = frag(OpCode::Binary, &[0; 60]);
        exactly.extend(frame(true, OpCode::Continuation, &[0; 40]));

        // (name, input, expected code, expected reason, messages decoded before the error)
        let cases: Vec<(&str, Vec<u8>, u16, &str, usize)> = vec![
            ("rsv1", frame_raw(0xc1, Some(MASK), Len::Min, b"x"), PROTOCOL_ERROR, "reserved bits", 0),
            ("rsv2", frame_raw(0xa1, Some(MASK), Len::Min, b"x"), PROTOCOL_ERROR, "reserved bits", 0),
            ("rsv3", frame_raw(0x91, Some(MASK), Len::Min, b"x"), PROTOCOL_ERROR, "reserved bits", 0),
            ("opcode 3", frame_raw(0x83, Some(MASK), Len::Min, b""), PROTOCOL_ERROR, "reserved opcode", 0),
            ("opcode 7", frame_raw(0x87, Some(MASK), Len::Min, b""), PROTOCOL_ERROR, "reserved opcode", 0),
            ("opcode 11", frame_raw(0x8b, Some(MASK), Len::Min, b""), PROTOCOL_ERROR, "reserved opcode", 0),
            ("opcode 15", frame_raw(0x8f, Some(MASK), Len::Min, b""), PROTOCOL_ERROR, "reserved opcode", 0),
            ("unmasked", frame_raw(0x81, None, Len::Min, b"hi"), PROTOCOL_ERROR, "unmasked client frame", 0),
            ("fragmented ping", frag(OpCode::Ping, b""), PROTOCOL_ERROR, "fragmented control", 0),
            ("fragmented close", frag(OpCode::Close, b""), PROTOCOL_ERROR, "fragmented control", 0),
            ("ping of 126", frame(true, OpCode::Ping, &[0; 126]), PROTOCOL_ERROR, "over 125", 0),
            (
                "pong of 126 as 16-bit",
                frame_raw(0x8a, Some(MASK), Len::L16, &[0; 126]),
                PROTOCOL_ERROR,
                "over 125",
                0,
            ),
            (
                "short ping as 16-bit",
                frame_raw(0x89, Some(MASK), Len::L16, b"x"),
                PROTOCOL_ERROR,
                "over 125",
                0,
            ),
            (
                "top length bit",
                frame_raw(0x82, Some(MASK), Len::Raw64(1 << 63), b""),
                PROTOCOL_ERROR,
                "top bit",
                0,
            ),
            (
                "stray continuation",
                frame(true, OpCode::Continuation, b"x"),
                PROTOCOL_ERROR,
                "continuation frame without",
                0,
            ),
            (
                "text inside text",
                [frag(OpCode::Text, b"a"), text(b"b")].concat(),
                PROTOCOL_ERROR,
                "new message inside",
                0,
            ),
            (
                "binary inside text",
                [frag(OpCode::Text, b"a"), frag(OpCode::Binary, b"b")].concat(),
                PROTOCOL_ERROR,
                "new message inside",
                0,
            ),
            (
                "continuation after end",
                [text(b"a"), frame(true, OpCode::Continuation, b"b")].concat(),
                PROTOCOL_ERROR,
                "continuation frame without",
                1,
            ),
            ("frame over limit", frame(true, OpCode::Binary, &[0; 101]), MESSAGE_TOO_BIG, "too big", 0),
            (
                "frame over limit, 16-bit",
                frame(true, OpCode::Text, &[b'a'; 1000]),
                MESSAGE_TOO_BIG,
                "too big",
                0,
            ),
            (
                "frame over limit, 64-bit",
                frame_raw(0x82, Some(MASK), Len::Raw64(u64::MAX >> 1), b""),
                MESSAGE_TOO_BIG,
                "too big",
                0,
            ),
            ("fragments over limit", big_fragments, MESSAGE_TOO_BIG, "too big", 0),
            ("bad utf-8", text(&[b'a', 0xff]), INVALID_PAYLOAD, "not valid UTF-8", 0),
            ("truncated utf-8", text(&"é".as_bytes()[..1]), INVALID_PAYLOAD, "not valid UTF-8", 0),
            ("surrogate", text(&[0xed, 0xa0, 0x80]), INVALID_PAYLOAD, "not valid UTF-8", 0),
            (
                "bad utf-8 fragmented",
                [frag(OpCode::Text, b"ok"), frame(true, OpCode::Continuation, &[0xc3])].concat(),
                INVALID_PAYLOAD,
                "not valid UTF-8",
                0,
            ),
            ("close of 1 byte", frame(true, OpCode::Close, &[3]), PROTOCOL_ERROR, "1 byte", 0),
            (
                "close code 0",
                frame(true, OpCode::Close, &close_payload(0, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 999",
                frame(true, OpCode::Close, &close_payload(999, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 1004",
                frame(true, OpCode::Close, &close_payload(1004, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 1005",
                frame(true, OpCode::Close, &close_payload(1005, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 1006",
                frame(true, OpCode::Close, &close_payload(1006, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 1015",
                frame(true, OpCode::Close, &close_payload(1015, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 1016",
                frame(true, OpCode::Close, &close_payload(1016, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 2999",
                frame(true, OpCode::Close, &close_payload(2999, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 5000",
                frame(true, OpCode::Close, &close_payload(5000, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close code 65535",
                frame(true, OpCode::Close, &close_payload(65535, b"")),
                PROTOCOL_ERROR,
                "invalid close code",
                0,
            ),
            (
                "close reason not utf-8",
                frame(true, OpCode::Close, &close_payload(1000, &[0xff])),
                INVALID_PAYLOAD,
                "close reason",
                0,
            ),
        ];
        for (name, input, code, reason, before) in cases {
            for chunk in [1, input.len()] {
                let (msgs, err) = decode_chunked(100, &input, chunk);
                let err = err.unwrap_or_else(|| panic!("{name}: no error, got {msgs:?}"));
                assert_eq!(err.code, code, "{name}: {err:?}");
                assert!(err.reason.contains(reason), "{name}: {err:?}");
                assert!(err.reason.len() <= MAX_CLOSE_REASON);
                assert_eq!(msgs.len(), before, "{name}");
            }
        }

        // Exactly at the limit is fine, both as one frame and fragmented.
        let (msgs, err) = decode_all(100, &frame(true, OpCode::Binary, &[0; 100]));
        assert_eq!((msgs.len(), err), (1, None));
        let (msgs, err) = decode_all(100, &exactly);
        assert_eq!((msgs, err), (vec![Message::Binary(vec![0; 100])], None));
        // Control frames do not count towards the message limit.
        let (msgs, err) = decode_all(10, &frame(true, OpCode::Ping, &[1; 125]));
        assert_eq!((msgs.len(), err), (1, None));
    }

    #[test]
    fn valid_close_codes() {
        for code in 0..=u16::MAX {
            let want = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(is_valid_close_code(code), want, "code {code}");
        }
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            let (msgs, err) = decode_all(100, &frame(true, OpCode::Close, &close_payload(code, b"")));
            assert_eq!(err, None, "code {code}");
            assert_eq!(msgs, vec![Message::Close { code: Some(code), reason: String::new() }]);
        }
    }

    #[test]
    fn oversize_is_detected_from_the_header_alone() {
        // Only the header of a 1 MiB frame has arrived: the error comes before the payload.
        let header = &frame_raw(0x82, Some(MASK), Len::L64, &[0; 1 << 20])[..14];
        for n in 10..=14 {
            let mut d = FrameDecoder::new(1000);
            let mut buf = BytesMut::from(&header[..n]);
            assert_eq!(d.decode(&mut buf), Err(TOO_BIG), "{n} header bytes");
        }
        // With 9 bytes the length is not known yet.
        let mut d = FrameDecoder::new(1000);
        assert_eq!(d.decode(&mut BytesMut::from(&header[..9])), Ok(None));
        // And a fragmented message: the second header alone trips the limit.
        let mut input = frame(false, OpCode::Text, &[b'a'; 600]);
        input.extend_from_slice(&frame(true, OpCode::Continuation, &[b'a'; 401])[..4]);
        let (msgs, err) = decode_all(1000, &input);
        assert_eq!((msgs, err), (vec![], Some(TOO_BIG)));
    }

    #[test]
    fn rules_are_checked_as_soon_as_their_bytes_arrive() {
        // Two bytes are enough for RSV, opcode, mask and control-frame rules.
        let cases: &[([u8; 2], CloseError)] = &[
            ([0xc1, 0x80], RSV_SET),
            ([0x83, 0x80], RESERVED_OPCODE),
            ([0x81, 0x05], UNMASKED),
            ([0x09, 0x80], FRAGMENTED_CONTROL),
            ([0x89, 0xfe], CONTROL_TOO_LONG),
            ([0x80, 0xff], STRAY_CONTINUATION),
        ];
        for (bytes, want) in cases {
            let mut d = FrameDecoder::new(100);
            assert_eq!(d.decode(&mut BytesMut::from(&bytes[..])), Err(*want), "{bytes:x?}");
        }
        let mut d = FrameDecoder::new(100);
        assert_eq!(d.decode(&mut BytesMut::from(&[0x81u8][..])), Ok(None));
    }

    /// Autobahn 6.4.x: invalid UTF-8 fails the message on the fragment, or the part of a
    /// frame, that breaks it, while the message is still incomplete.
    #[test]
    fn invalid_utf8_fails_fast() {
        // Second fragment breaks it; the final fragment never comes.
        let mut d = FrameDecoder::new(1000);
        let mut buf = BytesMut::from(&frame(false, OpCode::Text, "κόσμε".as_bytes())[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&frame(false, OpCode::Continuation, &[0xce, 0xbc, 0xf4, 0x90])[..]);
        assert_eq!(d.decode(&mut buf), Err(TEXT_NOT_UTF8));

        // One frame, cut: the first part is valid, the second breaks it; the rest never comes.
        let whole = frame(true, OpCode::Text, b"hello\xed\xa0\x80world");
        let mut d = FrameDecoder::new(1000);
        let mut buf = BytesMut::from(&whole[..6 + 3]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&whole[9..6 + 7]);
        assert_eq!(d.decode(&mut buf), Err(TEXT_NOT_UTF8));

        // A character cut by a fragment boundary, and by a read boundary, is fine.
        let mut d = FrameDecoder::new(1000);
        let mut input = frame(false, OpCode::Text, &[b'a', 0xe2, 0x82]);
        input.extend_from_slice(&frame(true, OpCode::Continuation, &[0xac, b'b']));
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in input {
            buf.extend_from_slice(&[b]);
            if let Some(m) = d.decode(&mut buf).unwrap() {
                got = Some(m);
            }
        }
        assert_eq!(got, Some(Message::Text("a€b".as_bytes().to_vec())));

        // Ending inside a character fails when the message ends.
        let mut d = FrameDecoder::new(1000);
        let mut buf = BytesMut::from(&frame(true, OpCode::Text, &[b'a', 0xe2, 0x82])[..]);
        assert_eq!(d.decode(&mut buf), Err(TEXT_NOT_UTF8));
    }

    proptest! {
        /// Fed in any pieces, the check fails exactly when the bytes so far can no longer be
        /// the start of valid UTF-8, and finishes clean exactly when they are valid UTF-8.
        #[test]
        fn utf8_check_matches_std(
            bytes in prop_oneof![
                any::<String>().prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..40),
                prop::collection::vec(prop_oneof![Just(0x80u8), Just(0xc3), Just(0xe0), Just(0xed), Just(0xf0), Just(0xf4), Just(b'a'), 0x80u8..0xc0], 0..20),
            ],
            cuts in prop::collection::vec(0usize..40, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut check = Utf8Check::default();
            let mut from = 0;
            for &to in &cuts {
                let got = check.feed(&bytes[from..to]);
                let broken = std::str::from_utf8(&bytes[..to]).is_err_and(|e| e.error_len().is_some());
                prop_assert_eq!(got.is_err(), broken, "after {} bytes of {:x?}", to, bytes);
                if broken {
                    return Ok(());
                }
                from = to;
            }
            prop_assert_eq!(check.finish().is_ok(), std::str::from_utf8(&bytes).is_ok());
        }
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&frame_raw(0x81, None, Len::Min, b"x")[..]);
        assert_eq!(d.decode(&mut buf), Err(UNMASKED));
        let mut good = BytesMut::from(&frame(true, OpCode::Text, b"ok")[..]);
        assert_eq!(d.decode(&mut good), Err(UNMASKED));
    }

    #[test]
    fn buffered_limit() {
        assert_eq!(FrameDecoder::new(4096).buffered_limit(), 4096 + 14);
        assert_eq!(FrameDecoder::new(10).buffered_limit(), 125 + 14);
        assert_eq!(FrameDecoder::new(usize::MAX).buffered_limit(), usize::MAX);
    }

    #[test]
    fn unmask_matches_bytewise() {
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut fast = orig.clone();
            unmask(&mut fast, MASK);
            let slow: Vec<u8> = orig.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    /// One client message (or control frame) for the property test, with how it is framed.
    #[derive(Clone, Debug)]
    enum Item {
        Data { text: bool, payload: Vec<u8>, cuts: Vec<usize>, ping_after: usize, masks: Vec<[u8; 4]> },
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    fn arb_payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
        prop_oneof![
            4 => any::<String>().prop_map(|s| (true, s.into_bytes())),
            4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|v| (false, v)),
            1 => (any::<u8>(), 126usize..70_000).prop_map(|(b, n)| (false, vec![b; n])),
            1 => (any::<char>(), 40usize..20_000)
                .prop_map(|(c, n)| (true, c.to_string().repeat(n).into_bytes())),
        ]
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        let control = prop::collection::vec(any::<u8>(), 0..=125);
        let codes = prop::sample::select(vec![1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]);
        let cuts = prop::collection::vec(any::<usize>(), 0..4);
        let masks = prop::collection::vec(any::<[u8; 4]>(), 5);
        let data = (arb_payload(), cuts, any::<usize>(), masks).prop_map(
            |((text, payload), mut cuts, ping_after, masks)| {
                for c in &mut cuts {
                    *c %= payload.len() + 1;
                }
                cuts.sort_unstable();
                Item::Data { text, payload, cuts, ping_after, masks }
            },
        );
        prop_oneof![
            6 => data,
            1 => control.clone().prop_map(Item::Ping),
            1 => control.prop_map(Item::Pong),
            1 => prop::option::of((codes, "[a-zA-Zé ]{0,40}")).prop_map(Item::Close),
        ]
    }

    /// Serializes `items` as masked client frames, returning the bytes and the messages a
    /// decoder must produce.
    fn serialize(items: &[Item]) -> (Vec<u8>, Vec<Message>) {
        let mut out = Vec::new();
        let mut want = Vec::new();
        let mask = |k: [u8; 4]| Some(k);
        for item in items {
            match item {
                Item::Data { text, payload, cuts, ping_after, masks } => {
                    let mut bounds = vec![0];
                    bounds.extend(cuts);
                    bounds.push(payload.len());
                    let n = bounds.len() - 1;
                    let ping_after = ping_after % n;
                    for i in 0..n {
                        let fin = i == n - 1;
                        let op = match (i, text) {
                            (0, true) => OpCode::Text,
                            (0, false) => OpCode::Binary,
                            _ => OpCode::Continuation,
                        };
                        let b0 = u8::from(fin) << 7 | op as u8;
                        let p = &payload[bounds[i]..bounds[i + 1]];
                        out.extend(frame_raw(b0, mask(masks[i % masks.len()]), Len::Min, p));
                        if i == ping_after && !fin {
                            out.extend(frame_raw(0x89, mask(masks[0]), Len::Min, b"mid"));
                            want.push(Message::Ping(b"mid".to_vec()));
                        }
                    }
                    want.push(if *text {
                        Message::Text(payload.clone())
                    } else {
                        Message::Binary(payload.clone())
                    });
                }
                Item::Ping(p) => {
                    out.extend(frame_raw(0x89, mask(MASK), Len::Min, p));
                    want.push(Message::Ping(p.clone()));
                }
                Item::Pong(p) => {
                    out.extend(frame_raw(0x8a, mask(MASK), Len::Min, p));
                    want.push(Message::Pong(p.clone()));
                }
                Item::Close(None) => {
                    out.extend(frame_raw(0x88, mask(MASK), Len::Min, b""));
                    want.push(Message::Close { code: None, reason: String::new() });
                }
                Item::Close(Some((code, reason))) => {
                    let p = close_payload(*code, reason.as_bytes());
                    out.extend(frame_raw(0x88, mask(MASK), Len::Min, &p));
                    want.push(Message::Close { code: Some(*code), reason: reason.clone() });
                }
            }
        }
        (out, want)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_chunking_decodes_the_same(
            items in prop::collection::vec(arb_item(), 1..12),
            chunks in prop::collection::vec(1usize..2000, 1..40),
        ) {
            let (input, want) = serialize(&items);
            let mut d = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &input[..];
            let mut sizes = chunks.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(m) = d.decode(&mut buf).unwrap() {
                    got.push(m);
                }
                prop_assert!(buf.len() <= d.buffered_limit());
            }
            prop_assert!(buf.is_empty());
            prop_assert!(!d.in_message());
            prop_assert_eq!(got, want);
        }
    }
}
