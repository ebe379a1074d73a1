//! One client connection's protocol as a state machine with no I/O (the `quinn-proto`
//! shape): bytes and time go in, bytes to write and [`Event`]s come out. No socket, no
//! tokio, no clock of its own; the drivers ([`crate::worker`], [`crate::dial::connect`], the
//! `list` fetch in [`run`](mod@crate::run)) read, write, keep time and act on the events,
//! and the tests drive it with crafted bytes.
//!
//! A [`Session`] goes through four phases:
//!
//! ```text
//! Handshake ──101──► Open ──close()──► Closing ──close frame / EOF / CLOSE_WAIT──► Closed
//!     │                │
//!     └── refused ─────┴── server close frame, EOF, I/O error, unparsable stream ──► Closed
//! ```
//!
//! - **Handshake.** [`Session::new`] queues the upgrade request; the response goes to
//!   [`Session::on_handshake_bytes`] (copied: it is small and comes once). The session checks
//!   it ([`crate::ws::handshake`]) and yields [`Event::Connected`] or
//!   [`Event::HandshakeFailed`]; bytes after the response are kept for the frame path.
//! - **Requests.** [`Session::subscribe`], [`Session::unsubscribe`] and [`Session::list`]
//!   write masked request frames ([`crate::request`]), tell the [`Checker`] what was sent,
//!   and remember the request until its reply (`subscribed`, `unsubscribed`, `symbols` or
//!   `error`), which becomes an event naming the request's id.
//! - **Frames.** The hot path. A thread's connections share one [`ReadBuf`]: the driver asks
//!   [`Session::read_buf`] for the space to read into (the session first copies its carried
//!   bytes — an unfinished frame — to the front), reads, and calls [`Session::on_bytes`],
//!   which returns an [`Incoming`] cursor. Each [`Incoming::poll_event`] parses the next
//!   frame **in place** in the read buffer (simd-json for JSON updates, 88-byte records for
//!   binary, [`crate::decode`]), hands the update to the [`Checker`] and returns it with its
//!   [`Verdict`]. Order books (`--depth`: JSON `book` objects, binary records of type 4
//!   that span `units` × 88 bytes) go straight to the checker and are counted
//!   ([`Incoming::books`]); they are not updates and yield no event. Events are produced as
//!   they are polled, so there is no event queue per connection (which would hold
//!   thousands of updates after a 256 KiB read, times 18,000 connections) and no
//!   allocation per update. The worker polls with
//!   [`Incoming::poll_event_with`] instead, which gives each update to a closure by
//!   reference (same events, same order, no copy of the update). When the cursor is
//!   dropped, the bytes of an incomplete frame are carried to the next read.
//! - **Control frames.** A ping is answered with a pong (queued for [`Session::poll_transmit`]);
//!   a server close is counted as an unexpected close, echoed (RFC 6455 §5.5.1) and ends the
//!   session, as does a stream that cannot be followed (a frame over
//!   [`frame::MAX_FRAME`]). A frame that breaks the rules but whose extent is known is
//!   counted as malformed and skipped.
//! - **Closing.** [`Session::close`] writes our close frame; the server's close frame or EOF
//!   ends the session cleanly, and [`Session::on_timeout`] ends it after [`CLOSE_WAIT`]
//!   ([`Session::poll_timeout`] says when). [`Session::on_eof`] and [`Session::on_error`]
//!   report a connection that broke.
//!
//! Everything that breaks the protocol's promises is counted by the [`Checker`] the driver
//! passes in ([`Ctx`]); the events carry what the driver needs for its own bookkeeping
//! (latency, counters, which clients subscribed or failed).

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use tickgate::protocol::Format;
use tickgate::protocol::binary::{self, RECORD_LEN};

use crate::checker::{Checker, ConnId, Verdict};
use crate::decode::{
    self, BOOK_PREFIX, Control, DecodeError, JsonDecoder, SymbolTable, UPDATE_PREFIX, Update,
};
use crate::request;
use crate::ws::frame::{self, opcode};
use crate::ws::handshake::{self, HandshakeError, MAX_RESPONSE_HEADER};
use crate::ws::url::WsUrl;

/// How long a closing session waits for the server's close frame or EOF.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A carried buffer larger than this after a huge frame (the `list` reply) is shrunk back to
/// [`CARRY_KEEP`] bytes once it holds less, so one big frame does not pin memory on each of
/// thousands of connections.
const CARRY_SHRINK_ABOVE: usize = 64 * 1024;

/// What a shrunk carried buffer keeps: more than a few JSON updates.
const CARRY_KEEP: usize = 4096;

/// The largest frame header (2 + 8 length bytes + 4 mask bytes).
const MAX_HEADER: usize = 14;

/// What a session shares with the other sessions of its thread: the integrity checker
/// (indexed by the session's connection id) and the gateway's symbols.
pub struct Ctx<'a> {
    /// Counts violations and follows each connection's symbols.
    pub checker: &'a mut Checker,
    /// Symbol names ↔ ids (the gateway's `list` order).
    pub symbols: &'a SymbolTable,
}

/// A read buffer shared by many sessions (one per worker thread), and the JSON decoder's
/// reusable buffers. Frames are decoded in place here; only an unfinished frame's bytes are
/// copied back into its session.
pub struct ReadBuf {
    buf: Vec<u8>,
    room: usize,
    json: JsonDecoder,
    /// Set by [`Session::read_buf`]: how many carried bytes sit at the front.
    prepared: Option<usize>,
}

impl ReadBuf {
    /// A buffer that offers at least `room` bytes to each read (it grows for a frame that
    /// does not fit).
    pub fn new(room: usize) -> ReadBuf {
        ReadBuf { buf: vec![0; room], room, json: JsonDecoder::new(), prepared: None }
    }
}

/// Why a session ended, as far as the run's accounting is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// We closed first and the server answered (its close frame, or EOF).
    Clean,
    /// We closed first and nothing came back within [`CLOSE_WAIT`].
    TimedOut,
    /// The server closed first: counted as an unexpected close with the server's code.
    Server,
    /// The connection broke before we closed (EOF without a close frame, a read or write
    /// error): counted as an unexpected close, code 1006.
    Dropped,
    /// The connection broke (a read or write error) after our close frame: not a
    /// violation, but not a clean end either.
    DroppedWhileClosing,
    /// The server's byte stream cannot be followed (a frame over [`frame::MAX_FRAME`]):
    /// counted as malformed.
    Broken,
}

impl CloseKind {
    /// Whether the checker counted this end as an unexpected close.
    pub fn is_unexpected(self) -> bool {
        matches!(self, CloseKind::Server | CloseKind::Dropped)
    }
}

/// What a session tells its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The upgrade was accepted (101, the right accept key, our subprotocol echoed).
    Connected,
    /// The upgrade was refused or malformed; the session is closed.
    HandshakeFailed(HandshakeError),
    /// A `subscribed` reply. `id` is the subscribe request it answered, `None` if it matched
    /// no request in flight. `symbols` is how many of its symbols were accepted as held
    /// (one the gateway's `list` does not know, or with another id, is counted as malformed).
    Subscribed {
        /// The subscribe request answered.
        id: Option<u32>,
        /// Symbols now held.
        symbols: usize,
    },
    /// An `unsubscribed` reply to request `id` (`None`: no request in flight matched).
    Unsubscribed {
        /// The unsubscribe request answered.
        id: Option<u32>,
    },
    /// An `error` reply (counted by the checker) to request `id` (`None`: no request in
    /// flight matched). The symbols of a refused request are rolled back in the checker.
    ErrorReply {
        /// The request refused.
        id: Option<u32>,
        /// The gateway's error code.
        code: String,
    },
    /// The `symbols` reply to `list`: every symbol, in id order.
    Symbols(Vec<String>),
    /// One update, already checked.
    Update {
        /// The decoded update.
        update: Update,
        /// What the checker made of it.
        verdict: Verdict,
    },
    /// A ping arrived; its pong is queued.
    Ping,
    /// The session is over: nothing more will be received; a final close frame may still be
    /// queued for [`Session::poll_transmit`].
    Closed {
        /// The server's close code, or 1006 (no close frame) for EOF, errors and time-outs.
        code: u16,
        /// How it ended.
        kind: CloseKind,
    },
}

/// Where the session is.
#[derive(Clone, Debug)]
enum Phase {
    Handshake { key: Box<str>, subprotocol: &'static str },
    Open,
    Closing { since: Instant },
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Subscribe,
    Unsubscribe,
    List,
}

/// A request awaiting its reply.
#[derive(Clone, Debug)]
struct Pending {
    id: u32,
    op: Op,
    /// The symbols it named (rolled back in the checker if it is refused).
    symbols: Box<[u32]>,
}

/// One client connection's protocol state; see the [module docs](self).
#[derive(Debug)]
pub struct Session {
    conn: ConnId,
    phase: Phase,
    /// Bytes of an unfinished frame (or of the upgrade response), carried to the next read.
    carry: Vec<u8>,
    /// Frames to write.
    transmit: Vec<u8>,
    pending: Vec<Pending>,
    /// Events not tied to a frame (handshake, EOF, errors, time-outs).
    events: VecDeque<Event>,
    next_id: u32,
    /// Handshake key and frame masks.
    rng: fastrand::Rng,
    /// Subscribe with `"trades": true` (`--trades`).
    pub trades: bool,
    /// Subscribe with `"depth": N` when N > 0 (`--depth`); books are checked against it.
    pub depth: u16,
    /// The Server-Sent Events transport (`--transport sse`): the body decoder (taken out
    /// while an `Incoming` works on it).
    sse: Option<Box<crate::sse::SseDecoder>>,
    /// This session speaks SSE.
    is_sse: bool,
}

impl Session {
    /// A session for connection `conn` (its id in the [`Checker`]) to `url`, offering
    /// `format`'s subprotocol; the upgrade request is queued. `rng` draws the handshake key
    /// and the frame masks.
    pub fn new(conn: ConnId, url: &WsUrl, format: Format, mut rng: fastrand::Rng) -> Session {
        let key = handshake::random_key(&mut rng);
        let subprotocol = format.subprotocol();
        let transmit = handshake::request(&url.host, &url.path_and_query, &key, subprotocol);
        Session {
            conn,
            phase: Phase::Handshake { key: key.into_boxed_str(), subprotocol },
            carry: Vec::new(),
            transmit,
            pending: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            rng,
            trades: false,
            depth: 0,
            sse: None,
            is_sse: false,
        }
    }

    /// A Server-Sent Events session: `GET {path}?{query}` (`query` names the symbols and
    /// options; the subscription is the request itself) is queued. Register it with
    /// [`Session::sse_subscribed`] once connected.
    pub fn new_sse(conn: ConnId, url: &WsUrl, query: &str, rng: fastrand::Rng) -> Session {
        let mut s = Session::new(conn, url, Format::Json, rng);
        s.transmit = format!(
            "GET /sse?{query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nUser-Agent: tickgate-loadtest\r\n\r\n",
            url.host
        )
        .into_bytes();
        s.sse = Some(Box::default());
        s.is_sse = true;
        s
    }

    /// Whether this is an SSE session.
    pub fn is_sse(&self) -> bool {
        self.is_sse
    }

    /// An SSE session's subscription, made by its request: the symbols are pending until the
    /// stream's `subscribed` event. Returns the request id standing for it.
    pub fn sse_subscribed(&mut self, cx: Ctx<'_>, symbols: &[u32]) -> u32 {
        let id = self.request_id();
        self.pending.push(Pending { id, op: Op::Subscribe, symbols: symbols.into() });
        cx.checker.subscribe_sent(self.conn, symbols);
        id
    }

    /// The connection id in the [`Checker`].
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Upgraded, and neither closing nor closed: requests may be sent.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Over: nothing more is received (a last frame may still wait in
    /// [`Session::poll_transmit`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// No request is waiting for its reply.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes received but not processed yet (an unfinished frame, or frames that came with
    /// the upgrade response).
    pub fn buffered(&self) -> usize {
        self.carry.len()
    }

    // ---- Input -------------------------------------------------------------------------

    /// Bytes of the upgrade response, as read. Once the header block is complete the
    /// session yields [`Event::Connected`] or [`Event::HandshakeFailed`] (from
    /// [`Session::poll_event`]); what follows the header block is kept for
    /// [`Session::on_bytes`]. After the handshake, bytes given here are simply kept for it.
    pub fn on_handshake_bytes(&mut self, bytes: &[u8]) {
        self.carry.extend_from_slice(bytes);
        let Phase::Handshake { key, subprotocol } = &self.phase else { return };
        let Some(end) = handshake::header_end(&self.carry) else {
            if self.carry.len() > MAX_RESPONSE_HEADER {
                self.fail_handshake(HandshakeError::TooLarge);
            }
            return;
        };
        let checked = if self.is_sse {
            handshake::check_sse_response(&self.carry[..end], &self.carry[end..])
        } else {
            handshake::check_response(&self.carry[..end], &self.carry[end..], key, subprotocol)
        };
        match checked {
            Ok(()) => {
                // A new, exactly sized vector: the response's allocation is not kept.
                self.carry = self.carry.split_off(end);
                self.phase = Phase::Open;
                self.events.push_back(Event::Connected);
            }
            Err(e) => self.fail_handshake(e),
        }
    }

    fn fail_handshake(&mut self, e: HandshakeError) {
        self.phase = Phase::Closed;
        self.carry = Vec::new();
        self.events.push_back(Event::HandshakeFailed(e));
    }

    /// Gets `rb` ready for a read on this session: copies the carried bytes to its front
    /// (growing it to hold a large frame whose header has arrived) and returns the free
    /// space after them. Call [`Session::on_bytes`] next, before another session uses `rb`.
    pub fn read_buf<'b>(&self, rb: &'b mut ReadBuf) -> &'b mut [u8] {
        let l = self.carry.len();
        // A header is only carried if `parse_header` accepted its length, but bytes that came
        // with the upgrade response have not been parsed yet: never grow past a legal frame.
        let cap = MAX_HEADER.saturating_add(usize::try_from(frame::MAX_FRAME).unwrap_or(usize::MAX));
        let need = frame::declared_len(&self.carry).map_or(0, |d| usize::try_from(d).unwrap_or(cap).min(cap));
        let want = (l + rb.room).max(need);
        if rb.buf.len() < want {
            rb.buf.resize(want, 0);
        }
        rb.buf[..l].copy_from_slice(&self.carry);
        rb.prepared = Some(l);
        &mut rb.buf[l..]
    }

    /// Processes the carried bytes and the `n` bytes just read into the space
    /// [`Session::read_buf`] returned (`n` = 0: only the carried bytes). Poll the returned
    /// cursor until it yields `None`; dropping it carries an unfinished frame to the next
    /// call. (Without a `read_buf` call first, only the carried bytes are processed.)
    pub fn on_bytes<'a>(&'a mut self, rb: &'a mut ReadBuf, n: usize, cx: Ctx<'a>) -> Incoming<'a> {
        let carried = match rb.prepared.take() {
            Some(l) => l,
            None => {
                debug_assert_eq!(n, 0, "on_bytes with new bytes but without read_buf");
                self.read_buf(rb);
                rb.prepared.take().unwrap_or(0)
            }
        };
        let mut filled = (carried + n).min(rb.buf.len());
        if matches!(self.phase, Phase::Handshake { .. }) {
            // The upgrade response: checked on the copying path, then any frames after it are
            // processed here like any other.
            self.carry.clear();
            self.on_handshake_bytes(&rb.buf[..filled]);
            filled = 0;
            if self.is_open() {
                filled = self.carry.len();
                rb.buf[..filled].copy_from_slice(&self.carry);
                self.carry.clear();
            }
        }
        let ReadBuf { buf, json, .. } = rb;
        let conn = self.conn;
        Incoming {
            session: self,
            buf: &mut buf[..filled],
            json,
            cx,
            pos: 0,
            records: 0..0,
            batch: 0..0,
            frames: 0,
            books: 0,
            conn,
        }
    }

    /// The server closed the TCP connection (a read returned 0).
    pub fn on_eof(&mut self, checker: &mut Checker) {
        match self.phase {
            Phase::Closed => {}
            Phase::Closing { .. } => self.end(1006, CloseKind::Clean),
            Phase::Handshake { .. } | Phase::Open => {
                self.lost(checker, "connection closed without a close frame")
            }
        }
    }

    /// Reading or writing failed (`why` says how).
    pub fn on_error(&mut self, checker: &mut Checker, why: &str) {
        match self.phase {
            Phase::Closed => {}
            Phase::Closing { .. } => self.end(1006, CloseKind::DroppedWhileClosing),
            Phase::Handshake { .. } | Phase::Open => self.lost(checker, why),
        }
    }

    /// Time passed: a close not answered within [`CLOSE_WAIT`] ends the session.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Phase::Closing { since } = self.phase
            && now >= since + CLOSE_WAIT
        {
            self.end(1006, CloseKind::TimedOut);
        }
    }

    fn lost(&mut self, checker: &mut Checker, why: &str) {
        if self.is_open() {
            checker.unexpected_close(self.conn, 1006, why);
        }
        self.end(1006, CloseKind::Dropped);
    }

    fn end(&mut self, code: u16, kind: CloseKind) {
        self.phase = Phase::Closed;
        self.carry = Vec::new();
        self.events.push_back(Event::Closed { code, kind });
    }

    // ---- Commands ----------------------------------------------------------------------

    fn request_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn mask(&mut self) -> [u8; 4] {
        self.rng.u32(..).to_ne_bytes()
    }

    /// Sends `subscribe` for `symbols` (ids in `cx.symbols`) with an optional `max_rate`;
    /// returns the request id, or `None` if the session is not open.
    pub fn subscribe(&mut self, cx: Ctx<'_>, symbols: &[u32], max_rate: Option<f64>) -> Option<u32> {
        if !self.is_open() {
            return None;
        }
        let id = self.request_id();
        self.pending.push(Pending { id, op: Op::Subscribe, symbols: symbols.into() });
        cx.checker.subscribe_sent(self.conn, symbols);
        let mask = self.mask();
        let names = symbols.iter().map(|&s| cx.symbols.name(s));
        request::subscribe(&mut self.transmit, id, names, (max_rate, self.trades, self.depth), mask);
        Some(id)
    }

    /// Sends `unsubscribe` for `symbols`; returns the request id, or `None` if the session
    /// is not open.
    pub fn unsubscribe(&mut self, cx: Ctx<'_>, symbols: &[u32]) -> Option<u32> {
        if !self.is_open() {
            return None;
        }
        let id = self.request_id();
        self.pending.push(Pending { id, op: Op::Unsubscribe, symbols: symbols.into() });
        cx.checker.unsubscribe_sent(self.conn, symbols);
        let mask = self.mask();
        request::unsubscribe(&mut self.transmit, id, symbols.iter().map(|&s| cx.symbols.name(s)), mask);
        Some(id)
    }

    /// Sends `list`; returns the request id, or `None` if the session is not open.
    pub fn list(&mut self) -> Option<u32> {
        if !self.is_open() {
            return None;
        }
        let id = self.request_id();
        self.pending.push(Pending { id, op: Op::List, symbols: Box::default() });
        let mask = self.mask();
        request::list(&mut self.transmit, id, mask);
        Some(id)
    }

    /// Starts the close handshake with `code` and `reason` at `now`. Before the upgrade
    /// completes there is nothing to close politely: the session just ends (cleanly).
    pub fn close(&mut self, now: Instant, code: u16, reason: &str) {
        match self.phase {
            // An SSE stream is closed by closing the socket: nothing to say first.
            Phase::Open if self.is_sse => self.end(code, CloseKind::Clean),
            Phase::Open => {
                let mask = self.mask();
                frame::write_client_close(&mut self.transmit, code, reason, mask);
                self.phase = Phase::Closing { since: now };
            }
            Phase::Handshake { .. } => self.end(1006, CloseKind::Clean),
            Phase::Closing { .. } | Phase::Closed => {}
        }
    }

    // ---- Output ------------------------------------------------------------------------

    /// Moves the bytes to write into `out` (cleared first; its allocation is reused for the
    /// next frames); false if there is nothing to write.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        out.clear();
        std::mem::swap(out, &mut self.transmit);
        true
    }

    /// The next event not tied to a frame: the handshake's outcome, or the end of the
    /// session after [`Session::on_eof`], [`Session::on_error`], [`Session::on_timeout`] or
    /// [`Session::close`]. (Frame events come from [`Incoming::poll_event`].)
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::on_timeout`] must be called next: the end of the close wait.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closing { since } => Some(since + CLOSE_WAIT),
            _ => None,
        }
    }

    // ---- Replies -----------------------------------------------------------------------

    /// Removes and returns the request `id` replies to.
    fn take_pending(&mut self, id: Option<i64>) -> Option<Pending> {
        // An SSE stream's `subscribed` answers its request, which had no id.
        let id = match (id, self.is_sse) {
            (None, true) => i64::from(self.pending.first()?.id),
            (id, _) => id?,
        };
        let id = u32::try_from(id).ok()?;
        let i = self.pending.iter().position(|p| p.id == id)?;
        Some(self.pending.remove(i))
    }

    fn on_control(&mut self, cx: &mut Ctx<'_>, c: Control) -> Option<Event> {
        let conn = self.conn;
        match c {
            Control::Subscribed { id, symbols: list } => {
                let mut ids = Vec::with_capacity(list.len());
                for (name, sid) in &list {
                    match cx.symbols.id(name) {
                        Some(s) if s == *sid => ids.push(s),
                        Some(s) => cx.checker.malformed(
                            conn,
                            &format!("subscribed: {name} has binary id {sid}, but is number {s} in the list"),
                        ),
                        None => cx.checker.malformed(conn, &format!("subscribed: unknown symbol {name:?}")),
                    }
                }
                cx.checker.subscribed(conn, &ids);
                let id = self.take_pending(id).filter(|p| p.op == Op::Subscribe).map(|p| p.id);
                Some(Event::Subscribed { id, symbols: ids.len() })
            }
            Control::Unsubscribed { id, symbols: list } => {
                let ids: Vec<u32> = list.iter().filter_map(|n| cx.symbols.id(n)).collect();
                cx.checker.unsubscribed(conn, &ids);
                let id = self.take_pending(id).map(|p| p.id);
                Some(Event::Unsubscribed { id })
            }
            Control::Error { id, code, message } => {
                cx.checker.error_reply(conn, &code, &message);
                let p = self.take_pending(id);
                match &p {
                    Some(Pending { op: Op::Subscribe, symbols, .. }) => {
                        cx.checker.subscribe_failed(conn, symbols)
                    }
                    Some(Pending { op: Op::Unsubscribe, symbols, .. }) => {
                        cx.checker.unsubscribe_failed(conn, symbols);
                    }
                    Some(Pending { op: Op::List, .. }) | None => {}
                }
                Some(Event::ErrorReply { id: p.map(|p| p.id), code })
            }
            Control::Symbols { id, symbols } => {
                self.take_pending(id);
                Some(Event::Symbols(symbols))
            }
            Control::Pong { .. } | Control::Other(_) => None,
        }
    }
}

/// The events of one read, produced as they are polled; see [`Session::on_bytes`].
pub struct Incoming<'a> {
    session: &'a mut Session,
    /// The carried bytes and the new ones; frames are decoded in place.
    buf: &'a mut [u8],
    json: &'a mut JsonDecoder,
    cx: Ctx<'a>,
    /// Start of the first frame not processed yet.
    pos: usize,
    /// The records of the current binary frame not yielded yet.
    records: Range<usize>,
    /// The objects of a batched JSON frame not decoded yet (after its `[`, before its `]`).
    batch: Range<usize>,
    /// Data (text and binary) frames processed.
    frames: u64,
    /// Order books decoded (each handed to the checker).
    books: u64,
    /// The session's connection id (read on every update).
    conn: ConnId,
}

/// What one step of an [`Incoming`] did.
enum Step {
    /// An update went to the caller's closure.
    Update,
    /// Any other event.
    Event(Event),
    /// Every complete frame is processed.
    Done,
}

impl Incoming<'_> {
    /// Data frames (text and binary) processed so far in this read.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Order books decoded so far in this read (checked, not returned as events).
    pub fn books(&self) -> u64 {
        self.books
    }

    /// The next event of this read: updates (checked), replies, pings, the end of the
    /// session; `None` once every complete frame is processed. Frames that break the rules
    /// are counted as malformed and skipped; they yield nothing.
    pub fn poll_event(&mut self) -> Option<Event> {
        let mut update = None;
        let step = self.step::<_, true>(&mut |u: &Update, verdict| {
            update = Some(Event::Update { update: *u, verdict });
        });
        match step {
            Step::Update => update,
            Step::Event(e) => Some(e),
            Step::Done => None,
        }
    }

    /// [`Incoming::poll_event`] for the hot path: every update (checked) goes to
    /// `on_update` by reference, from where it was decoded, and the next other event is
    /// returned. Same events, same order; what it saves is copying each update (about 100
    /// bytes) through an [`Event`] and returning to the caller for each one, which costs a
    /// binary client about a third of its time per update.
    #[inline]
    pub fn poll_event_with<F: FnMut(&Update, Verdict)>(&mut self, on_update: &mut F) -> Option<Event> {
        match self.step::<F, false>(on_update) {
            Step::Event(e) => Some(e),
            Step::Update | Step::Done => None,
        }
    }

    #[inline(always)]
    fn deliver<F: FnMut(&Update, Verdict)>(&mut self, u: &Update, on_update: &mut F) {
        let verdict = self.cx.checker.update(self.conn, u);
        on_update(u, verdict);
    }

    /// Processes frames and records until an event other than an update, or (with `ONE`)
    /// until the first update, which goes to `on_update`.
    fn step<F: FnMut(&Update, Verdict), const ONE: bool>(&mut self, on_update: &mut F) -> Step {
        if let Some(e) = self.session.events.pop_front() {
            return Step::Event(e);
        }
        if let Some(mut dec) = self.session.sse.take() {
            let step = self.sse_step::<F, ONE>(&mut dec, on_update);
            self.session.sse = Some(dec);
            return step;
        }
        loop {
            if !self.records.is_empty() {
                let at = self.records.start;
                if self.buf[at] != binary::RECORD_L1 {
                    self.binary_other();
                    continue;
                }
                self.records.start += RECORD_LEN;
                match decode::binary_update(&self.buf[at..at + RECORD_LEN]) {
                    // An unknown id is simply not held: the checker counts it.
                    Ok(u) => {
                        self.deliver(&u, on_update);
                        if ONE {
                            return Step::Update;
                        }
                    }
                    Err(e) => self.cx.checker.malformed(self.session.conn, &e.to_string()),
                }
                continue;
            }
            if !self.batch.is_empty() {
                match next_object(&self.buf[..self.batch.end], &mut self.batch) {
                    Some(object) => {
                        if self.batch_update(object, on_update) && ONE {
                            return Step::Update;
                        }
                    }
                    None => {
                        self.cx
                            .checker
                            .malformed(self.session.conn, "batched JSON frame is not an array of objects");
                        self.batch = 0..0;
                    }
                }
                continue;
            }
            if self.session.is_closed() {
                return Step::Done;
            }
            let h = match frame::parse_header(&self.buf[self.pos..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Step::Done,
                Err(e) => {
                    self.cx.checker.malformed(self.session.conn, &e.to_string());
                    self.session.phase = Phase::Closed;
                    return Step::Event(Event::Closed { code: 1006, kind: CloseKind::Broken });
                }
            };
            let start = self.pos;
            self.pos += h.len;
            if let Err(e) = frame::check(&h) {
                self.cx.checker.malformed(self.session.conn, &e.to_string());
                continue;
            }
            let payload = start + h.payload.start..start + h.payload.end;
            match h.opcode {
                opcode::TEXT => {
                    self.frames += 1;
                    match self.text(payload, on_update) {
                        Some(Step::Update) if !ONE => {}
                        Some(step) => return step,
                        None => {}
                    }
                }
                opcode::BINARY => {
                    self.frames += 1;
                    if payload.len().is_multiple_of(RECORD_LEN) {
                        self.records = payload;
                    } else {
                        // One error for the whole frame, as `binary_updates` reports it.
                        for r in decode::binary_updates(&self.buf[payload]) {
                            if let Err(e) = r {
                                self.cx.checker.malformed(self.session.conn, &e.to_string());
                            }
                        }
                    }
                }
                opcode::PING => {
                    let mask = self.session.mask();
                    frame::write_client_frame(
                        &mut self.session.transmit,
                        opcode::PONG,
                        &self.buf[payload],
                        mask,
                    );
                    return Step::Event(Event::Ping);
                }
                opcode::CLOSE => return Step::Event(self.close_frame(payload)),
                _ => {} // pong (`check` let no other opcode through)
            }
        }
    }

    /// The record at the start of `records` when it is not an L1 update: a book (`units` ×
    /// 88 bytes), a trade or a gap (88). A book whose length cannot be right leaves the rest
    /// of the frame unwalkable: counted as malformed, the frame's other records dropped.
    fn binary_other(&mut self) {
        let at = self.records.start;
        let len = match decode::record_len(&self.buf[self.records.clone()]) {
            Ok(len) => len,
            Err(e) => {
                self.cx.checker.malformed(self.session.conn, &e.to_string());
                self.records = 0..0;
                return;
            }
        };
        self.records.start += len;
        if self.buf[at] != binary::RECORD_BOOK {
            self.binary_trade(at);
            return;
        }
        match decode::binary_book(&self.buf[at..at + len]) {
            Ok(b) => {
                self.books += 1;
                self.cx.checker.book(self.session.conn, self.session.depth, b);
            }
            Err(e) => self.cx.checker.malformed(self.session.conn, &e.to_string()),
        }
    }

    /// A trade or gap record (or an unknown type, counted as malformed).
    fn binary_trade(&mut self, at: usize) {
        let conn = self.session.conn;
        match binary::decode_message(&self.buf[at..at + RECORD_LEN]) {
            Ok(binary::Message::Trade(t)) => self.cx.checker.trade(conn, t.symbol, t.seq),
            Ok(binary::Message::Gap { symbol, missed }) => self.cx.checker.gap(conn, symbol, missed),
            Ok(binary::Message::Update(_) | binary::Message::Book(_)) => {}
            Err(e) => self.cx.checker.malformed(conn, &e.to_string()),
        }
    }

    /// A JSON trade or gap object (decoded on a copy: trades are far rarer than updates).
    fn json_trade(&mut self, range: Range<usize>) {
        check_json_trade(&mut self.cx, self.session.conn, &self.buf[range]);
    }

    /// A JSON book object, decoded in place and handed to the checker.
    fn json_book(&mut self, range: Range<usize>) {
        let who = (self.session.conn, self.session.depth);
        self.books += u64::from(check_json_book(self.json, &mut self.cx, who, &mut self.buf[range]));
    }

    /// The SSE transport's step: de-chunks what was read, then handles complete events one by
    /// one (each `data:` is the JSON object a WebSocket text frame would carry).
    fn sse_step<F: FnMut(&Update, Verdict), const ONE: bool>(
        &mut self,
        dec: &mut crate::sse::SseDecoder,
        on_update: &mut F,
    ) -> Step {
        let conn = self.session.conn;
        if self.pos < self.buf.len() {
            let pushed = dec.push(&self.buf[self.pos..]);
            self.pos = self.buf.len();
            if let Err(e) = pushed {
                self.cx.checker.malformed(conn, &e);
                self.session.phase = Phase::Closed;
                return Step::Event(Event::Closed { code: 1006, kind: CloseKind::Broken });
            }
        }
        while let Some(r) = dec.next_event() {
            self.frames += 1;
            let data = &mut dec.body[r];
            if decode::is_trade_or_gap(data) {
                check_json_trade(&mut self.cx, conn, data);
                continue;
            }
            if data.starts_with(BOOK_PREFIX) {
                self.books +=
                    u64::from(check_json_book(self.json, &mut self.cx, (conn, self.session.depth), data));
                continue;
            }
            if data.starts_with(UPDATE_PREFIX) {
                if let Some(u) = decode_json_update(self.json, &mut self.cx, conn, data) {
                    self.deliver(&u, on_update);
                    if ONE {
                        return Step::Update;
                    }
                }
                continue;
            }
            match decode::parse_control(&mut data.to_vec()) {
                Ok(Control::Other(t)) if t == "book" => {
                    let who = (conn, self.session.depth);
                    self.books += u64::from(check_json_book(self.json, &mut self.cx, who, data));
                }
                Ok(c) => {
                    if let Some(e) = self.session.on_control(&mut self.cx, c) {
                        return Step::Event(e);
                    }
                }
                Err(e) => self.cx.checker.malformed(conn, &e.to_string()),
            }
        }
        dec.compact();
        if dec.ended() && self.session.is_open() {
            self.cx.checker.unexpected_close(conn, 1006, "the SSE stream ended");
            self.session.phase = Phase::Closed;
            return Step::Event(Event::Closed { code: 1006, kind: CloseKind::Server });
        }
        Step::Done
    }

    /// One object of a batched JSON frame: an update, a book, a trade or a gap. True if an
    /// update was delivered.
    fn batch_update<F: FnMut(&Update, Verdict)>(&mut self, range: Range<usize>, on_update: &mut F) -> bool {
        if decode::is_trade_or_gap(&self.buf[range.clone()]) {
            self.json_trade(range);
            return false;
        }
        if self.buf[range.clone()].starts_with(BOOK_PREFIX) {
            self.json_book(range);
            return false;
        }
        if !self.buf[range.clone()].starts_with(UPDATE_PREFIX) {
            let conn = self.session.conn;
            self.cx.checker.malformed(conn, "a batched JSON frame holds something other than updates");
            return false;
        }
        self.json_update(range, on_update)
    }

    /// Decodes the JSON update in `range` in place and delivers it; unknown symbols and
    /// malformed updates are counted. True if one was delivered.
    fn json_update<F: FnMut(&Update, Verdict)>(&mut self, range: Range<usize>, on_update: &mut F) -> bool {
        match decode_json_update(self.json, &mut self.cx, self.session.conn, &mut self.buf[range]) {
            Some(u) => {
                self.deliver(&u, on_update);
                true
            }
            None => false,
        }
    }

    /// A text frame: an update, a book, a batch of updates (queued for `step`), or a reply
    /// (`None`: nothing to report yet, e.g. malformed, a book or a batch).
    fn text<F: FnMut(&Update, Verdict)>(&mut self, range: Range<usize>, on_update: &mut F) -> Option<Step> {
        let conn = self.session.conn;
        if self.buf.get(range.start) == Some(&b'[') {
            if range.len() < 2 || self.buf[range.end - 1] != b']' {
                self.cx.checker.malformed(conn, "batched JSON frame is not an array");
                return None;
            }
            self.batch = range.start + 1..range.end - 1;
            if self.batch.is_empty() {
                self.cx.checker.malformed(conn, "empty batched JSON frame");
            }
            return None;
        }
        if decode::is_trade_or_gap(&self.buf[range.clone()]) {
            self.json_trade(range);
            return None;
        }
        if self.buf[range.clone()].starts_with(BOOK_PREFIX) {
            self.json_book(range);
            return None;
        }
        let payload = &mut self.buf[range.clone()];
        // The gateway writes updates with a fixed field order, so the prefix tells them from
        // replies without parsing. Anything else is parsed as a reply (on a copy: rare) and,
        // should it be an update after all, decoded as one.
        if !payload.starts_with(UPDATE_PREFIX) {
            match decode::parse_control(&mut payload.to_vec()) {
                Ok(Control::Other(t)) if t == "update" => {}
                Ok(Control::Other(t)) if t == "book" => {
                    self.json_book(range);
                    return None;
                }
                Ok(c) => return self.session.on_control(&mut self.cx, c).map(Step::Event),
                Err(e) => {
                    self.cx.checker.malformed(conn, &e.to_string());
                    return None;
                }
            }
        }
        self.json_update(range, on_update).then_some(Step::Update)
    }

    /// The server's close frame: the end of our close handshake, or an unexpected close
    /// (counted, echoed).
    fn close_frame(&mut self, range: Range<usize>) -> Event {
        let s = &mut *self.session;
        let payload = &self.buf[range];
        let code = frame::close_code(payload);
        let was_closing = matches!(s.phase, Phase::Closing { .. });
        s.phase = Phase::Closed;
        if was_closing {
            return Event::Closed { code: code.unwrap_or(1002), kind: CloseKind::Clean };
        }
        let code = code.unwrap_or(1002);
        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
        self.cx.checker.unexpected_close(s.conn, code, &format!("server closed: {reason}"));
        // Echo the code (RFC 6455 §5.5.1); 1005 is never sent on the wire.
        let echo = if tickgate::protocol::frame::is_valid_close_code(code) { code } else { 1000 };
        let mask = s.mask();
        frame::write_client_close(&mut s.transmit, echo, "", mask);
        Event::Closed { code, kind: CloseKind::Server }
    }
}

/// Checks a JSON trade or gap object (decoded on a copy: trades are far rarer than updates)
/// and counts it; malformed ones and unknown symbols count as violations.
fn check_json_trade(cx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
    match decode::parse_trade(&mut data.to_vec(), cx.symbols) {
        Ok(decode::TradeMsg::Trade { symbol, seq }) => cx.checker.trade(conn, symbol, seq),
        Ok(decode::TradeMsg::Gap { symbol, missed }) => cx.checker.gap(conn, symbol, missed),
        Err(DecodeError::UnknownSymbol(name)) => cx.checker.unknown_symbol(conn, &name),
        Err(e) => cx.checker.malformed(conn, &e.to_string()),
    }
}

/// Decodes the JSON book in `data` in place and hands it to the checker as received on
/// connection `who.0` subscribed at depth `who.1`; unknown symbols and malformed books are
/// counted. True if a book was decoded.
fn check_json_book(json: &mut JsonDecoder, cx: &mut Ctx<'_>, who: (ConnId, u16), data: &mut [u8]) -> bool {
    let (conn, depth) = who;
    match json.decode_book(data, cx.symbols) {
        Ok(b) => {
            cx.checker.book(conn, depth, b);
            true
        }
        Err(DecodeError::UnknownSymbol(name)) => {
            cx.checker.unknown_symbol(conn, &name);
            false
        }
        Err(e) => {
            cx.checker.malformed(conn, &e.to_string());
            false
        }
    }
}

/// Decodes the JSON update in `data` in place; unknown symbols and malformed updates are
/// counted (then `None`).
fn decode_json_update(
    json: &mut JsonDecoder,
    cx: &mut Ctx<'_>,
    conn: ConnId,
    data: &mut [u8],
) -> Option<Update> {
    match json.decode_update(data, cx.symbols) {
        Ok(u) => Some(u),
        Err(DecodeError::UnknownSymbol(name)) => {
            cx.checker.unknown_symbol(conn, &name);
            None
        }
        Err(e) => {
            cx.checker.malformed(conn, &e.to_string());
            None
        }
    }
}

/// The next object of a batch: skips a separating `,`, then returns the range of one
/// `{...}` (brace depth and strings respected) and moves `rest` past it. `None` if what is
/// left is not an object.
fn next_object(buf: &[u8], rest: &mut Range<usize>) -> Option<Range<usize>> {
    let mut i = rest.start;
    if buf.get(i) == Some(&b',') && i > 0 && buf[i - 1] == b'}' {
        i += 1;
    }
    if buf.get(i) != Some(&b'{') {
        return None;
    }
    let start = i;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    while i < rest.end {
        let b = buf[i];
        i += 1;
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    rest.start = i;
                    // Between objects only a comma may stand.
                    if rest.start < rest.end && buf[rest.start] != b',' {
                        return None;
                    }
                    return Some(start..i);
                }
            }
            _ => {}
        }
    }
    None
}

impl Drop for Incoming<'_> {
    /// Carries the bytes not processed (an unfinished frame) to the session's next read.
    /// Records of a binary frame not polled yet are lost: poll until `None`.
    fn drop(&mut self) {
        let s = &mut *self.session;
        match s.phase {
            Phase::Closed => s.carry.clear(),
            // The partial upgrade response stays where `on_handshake_bytes` put it.
            Phase::Handshake { .. } => {}
            Phase::Open | Phase::Closing { .. } => {
                s.carry.clear();
                s.carry.extend_from_slice(self.buf.get(self.pos..).unwrap_or(&[]));
                if s.carry.capacity() > CARRY_SHRINK_ABOVE && s.carry.len() < CARRY_KEEP {
                    s.carry.shrink_to(CARRY_KEEP);
                }
            }
        }
    }
}
