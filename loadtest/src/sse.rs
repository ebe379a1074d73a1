//! The Server-Sent Events transport (`--transport sse`): a sans-IO decoder for the response
//! body of `GET /sse`, HTTP/1.1 chunked, carrying a `text/event-stream`.
//!
//! [`SseDecoder::push`] takes raw body bytes as they arrive (chunk boundaries anywhere) and
//! de-chunks them; [`SseDecoder::next_event`] yields the `data:` payload of each complete event
//! (comments, `id:` and `retry:` lines are read and dropped), as a range into
//! [`SseDecoder::body`] so it can be decoded in place like a WebSocket frame.

use std::ops::Range;

/// Longest chunk-size line accepted (hex digits and extensions).
const MAX_SIZE_LINE: usize = 64;

/// Largest event accepted, bytes: a stream that never ends an event is malformed.
pub const MAX_EVENT: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting `HEX[;ext]\r\n`.
    Size,
    /// Inside a chunk, this many payload bytes left.
    Data(usize),
    /// Expecting the `\r\n` after a chunk.
    Crlf,
    /// The last chunk (size 0) arrived.
    Ended,
}

/// De-chunks an SSE response body and splits it into events.
#[derive(Debug)]
pub struct SseDecoder {
    raw: Vec<u8>,
    /// De-chunked bytes; events are decoded in place here.
    pub body: Vec<u8>,
    /// Bytes of `body` already yielded.
    consumed: usize,
    state: State,
    /// `id:` of the last event (0: none yet).
    pub last_id: u64,
    /// Comment lines seen (`: ping`).
    pub comments: u64,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder {
            raw: Vec::new(),
            body: Vec::new(),
            consumed: 0,
            state: State::Size,
            last_id: 0,
            comments: 0,
        }
    }
}

impl SseDecoder {
    /// Takes raw body bytes.
    ///
    /// # Errors
    ///
    /// A message if the chunked framing is broken.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.raw.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match self.state {
                State::Ended => break,
                State::Size => {
                    let Some(nl) = self.raw[at..].windows(2).position(|w| w == b"\r\n") else {
                        if self.raw.len() - at > MAX_SIZE_LINE {
                            return Err("chunk size line too long".into());
                        }
                        break;
                    };
                    let line =
                        std::str::from_utf8(&self.raw[at..at + nl]).map_err(|_| "chunk size not ASCII")?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size =
                        usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
                    at += nl + 2;
                    self.state = if size == 0 { State::Ended } else { State::Data(size) };
                }
                State::Data(left) => {
                    let take = left.min(self.raw.len() - at);
                    if take == 0 {
                        break;
                    }
                    self.body.extend_from_slice(&self.raw[at..at + take]);
                    at += take;
                    self.state = if take == left { State::Crlf } else { State::Data(left - take) };
                }
                State::Crlf => {
                    if self.raw.len() - at < 2 {
                        break;
                    }
                    if &self.raw[at..at + 2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    at += 2;
                    self.state = State::Size;
                }
            }
        }
        self.raw.drain(..at);
        if self.body.len() - self.consumed > MAX_EVENT
            && !self.body[self.consumed..].windows(2).any(|w| w == b"\n\n")
        {
            return Err(format!("an event longer than {MAX_EVENT} bytes"));
        }
        Ok(())
    }

    /// The stream's last chunk arrived.
    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The range in [`SseDecoder::body`] of the next complete event's `data:` (one line, as
    /// the gateway writes it); events without data (comments) are skipped. `None` when no
    /// complete event is left: then call [`SseDecoder::compact`].
    pub fn next_event(&mut self) -> Option<Range<usize>> {
        loop {
            let rest = &self.body[self.consumed..];
            let end = rest.windows(2).position(|w| w == b"\n\n")?;
            let (start, stop) = (self.consumed, self.consumed + end);
            self.consumed = stop + 2;
            let mut data = None;
            let mut line_start = start;
            while line_start < stop {
                let line_end = self.body[line_start..stop]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(stop, |i| line_start + i);
                let line = &self.body[line_start..line_end];
                if let Some(d) = line.strip_prefix(b"data: ") {
                    data = Some(line_end - d.len()..line_end);
                } else if let Some(id) = line.strip_prefix(b"id: ") {
                    self.last_id =
                        std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()).unwrap_or(self.last_id);
                } else if line.starts_with(b":") {
                    self.comments += 1;
                }
                line_start = line_end + 1;
            }
            if data.is_some() {
                return data;
            }
        }
    }

    /// Drops the events already yielded (call when [`SseDecoder::next_event`] returns `None`).
    pub fn compact(&mut self) {
        self.body.drain(..self.consumed);
        self.consumed = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chunked(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes());
        }
        out
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let wire = chunked(&[
            "retry: 2000\n\nid: 1\ndata: {\"a\":1}\n\n: pi",
            "ng\n\nid: 2\nda",
            "ta: {\"b\":2}\n\n",
        ]);
        let mut all = Vec::new();
        // Every split point of the raw bytes gives the same events.
        for cut in 0..wire.len() {
            let mut d = SseDecoder::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                d.push(part).unwrap();
                while let Some(r) = d.next_event() {
                    got.push(String::from_utf8(d.body[r].to_vec()).unwrap());
                }
                d.compact();
            }
            assert_eq!(got, ["{\"a\":1}", "{\"b\":2}"], "cut at {cut}");
            assert_eq!((d.last_id, d.comments), (2, 1));
            all.push(got);
        }
        let mut d = SseDecoder::default();
        d.push(b"0\r\n\r\n").unwrap();
        assert!(d.ended());
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert!(SseDecoder::default().push(b"zz\r\n").is_err());
        assert!(SseDecoder::default().push(b"2\r\nabXY").is_err());
        assert!(SseDecoder::default().push(&[b'1'; 100]).is_err());
    }
}
