//! The shard core: everything a shard decides, with no sockets and no clock of its own.
//!
//! [`ShardCore`] owns the shard's clients (their subscriptions, conflation slots and output
//! buffers), the subscription index, the frame cache, the **ready queue** and the `max_rate`
//! **deadlines**. The driver (`shard::driver`, `shard::conn`) feeds it ticks, client
//! messages and the time, pops the next ready client, asks the core to fill its output
//! buffer, writes that buffer with one syscall, and reports back how many bytes the socket
//! took and when the write returned. Because of that split, fan-out, conflation, fairness,
//! max-rate pacing and the control protocol are all tested and benchmarked here without I/O.
//!
//! **Intake is O(1) per tick.** A tick updates the symbol's cache entry and wakes the
//! clients armed on it ([`super::index`]); it never walks the symbol's subscribers. A woken
//! client joins the back of the ready queue once; a flush walks the client's own dense slots
//! ([`super::conflate`]) and sends every symbol whose cached seq is newer than what it was
//! sent, then re-arms the slots it left current.
//!
//! **The ready queue is FIFO**, each client in it at most once: a client waits for at most
//! one pass over the clients ahead of it (the revisit interval), whatever their number, and
//! no symbol or key order favours the same clients.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

use hdrhistogram::Histogram;
use slab::Slab;
use tickgate_feeds::{Tick, Universe};

use super::cache::SymbolCache;
use super::conflate::{ClientSubs, DrainSink};
use super::depth::{BookCache, BookFormat};
use super::index::{ClientId, SubIndex};
use super::trades::TradeLogs;
use crate::auth::{Grant, Verifier};
use crate::books::BookStore;
use crate::protocol::control::{self, ClientMsg, ControlError, ErrorCode};
use crate::protocol::{Format, binary, frame, json, sse};
use crate::ring::Lvc;
use crate::stats::{LATENCY_MAX_NS, latency_histogram};

/// Per-client and per-shard bounds the core enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Symbols one client may hold.
    pub max_symbols: usize,
    /// Client messages per second (token bucket capacity and refill rate).
    pub msgs_per_sec: u32,
    /// Pacing for subscriptions that give no `max_rate` (0 = unlimited).
    pub default_interval_ns: u64,
    /// Trades per symbol a client may fall behind before the oldest are dropped for it.
    pub max_trade_backlog: usize,
    /// Bytes/s for clients that set no `max_bandwidth` (0 = unlimited).
    pub default_bandwidth: u64,
    /// Highest `max_bandwidth` a client may set (0 = no ceiling).
    pub bandwidth_ceiling: u64,
}

/// Number of distinct control error codes (for counters indexed by [`ErrorCode`]).
pub const ERROR_CODES: usize = 7;

fn code_index(c: ErrorCode) -> usize {
    match c {
        ErrorCode::BadRequest => 0,
        ErrorCode::UnknownOp => 1,
        ErrorCode::UnknownSymbol => 2,
        ErrorCode::TooManySymbols => 3,
        ErrorCode::RateLimited => 4,
        ErrorCode::NotEntitled => 5,
        ErrorCode::Unauthorized => 6,
    }
}

/// Monotonic counters of one shard core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreCounters {
    /// Ticks read from the ring.
    pub ticks: u64,
    /// Live updates fully written to clients' sockets.
    pub delivered: u64,
    /// Snapshot updates queued (on subscribe, for symbols that have a value). Overrun heals
    /// go out as ordinary live updates and count in `delivered`.
    pub snapshots: u64,
    /// Pending updates replaced by a newer one (conflated away).
    pub conflated: u64,
    /// Times the ring lapped this shard.
    pub overruns: u64,
    /// Catch-up turns: times this shard found the next tick older than its staleness bound
    /// and read its whole backlog before flushing (the shard was descheduled or overloaded).
    pub catch_ups: u64,
    /// Clients taken from the ready queue and flushed (visits).
    pub visits: u64,
    /// Sum over visits of the time the client waited in the ready queue, ns.
    pub queue_wait_ns: u64,
    /// Longest wait in the ready queue since the driver last reset it, ns.
    pub queue_wait_max_ns: u64,
    /// Clients woken by ticks (armed slots consumed).
    pub wakeups: u64,
    /// Flushes after which the client went straight back to the ready queue (the shard was
    /// busy: see [`POLL_QUEUE_LEN`]) instead of arming its slots.
    pub polled: u64,
    /// Bytes handed to sockets.
    pub bytes_written: u64,
    /// Trades queued for clients (each trade once per client taking it).
    pub trades_sent: u64,
    /// Gap notices sent (trades a client could not be sent, reported).
    pub trade_gaps: u64,
    /// Trades reported missed in gap notices (the sum of their `missed`).
    pub trades_missed: u64,
    /// Flushes cut short or put off by a client's `max_bandwidth`.
    pub bandwidth_holds: u64,
    /// Order-book messages queued for clients (`"depth"` subscriptions).
    pub books_sent: u64,
    /// Client messages handled.
    pub client_msgs: u64,
    /// Error replies, by code (see [`ERROR_CODES`]).
    pub errors: [u64; ERROR_CODES],
}

/// One client's state inside the core.
pub struct ClientState {
    format: Format,
    /// What the client's token entitles it to (`None`: no token auth, everything).
    grant: Option<Grant>,
    subs: ClientSubs,
    /// Distinguishes this client from earlier ones with the same slab key (index entries,
    /// queue entries and deadlines of a client that left are recognised and skipped).
    incarnation: u32,
    /// Bytes waiting for the socket: control replies, snapshots, update frames. Empty and
    /// without capacity between flushes (the core lends it a buffer while it is in use).
    out: Vec<u8>,
    /// Absolute stream offset of `out[0]` (bytes ever written before it).
    out_base: u64,
    /// (absolute end offset, ts_gateway) of each live update in `out`, for latency.
    marks: VecDeque<(u64, u64)>,
    /// The socket refused part of the last write: don't add updates until it drains (they
    /// would age in our buffer instead of conflating).
    blocked: bool,
    /// In the ready queue.
    queued: bool,
    /// Closing: no longer subscribed to anything and never filled again (only the close
    /// frame and what was already buffered go out).
    closing: bool,
    /// When it joined the ready queue (ns), for the revisit statistics.
    queued_at_ns: u64,
    /// The `max_rate` deadline scheduled for it (0: none).
    deadline_ns: u64,
    /// Token bucket, in nano-tokens, and when it was last refilled.
    tokens: u64,
    tokens_at_ns: u64,
    /// `max_bandwidth` the client set (`None`: the server default applies).
    bandwidth_set: Option<u64>,
    /// Byte budget (may be negative by at most one message) and when it was last refilled.
    bw_tokens: i64,
    bw_at_ns: u64,
    /// Bytes handed to its socket.
    bytes: u64,
    /// Its address, for the operator's view.
    peer: Option<std::net::SocketAddr>,
    /// Server-Sent Events sent so far (the last event's `id`).
    sse_id: u64,
}

impl ClientState {
    /// The client's wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes waiting to be written.
    pub fn out(&self) -> &[u8] {
        &self.out
    }

    /// Subscriptions and their slots.
    pub fn subs(&self) -> &ClientSubs {
        &self.subs
    }

    fn id(&self, key: usize) -> ClientId {
        ClientId { key: key as u32, incarnation: self.incarnation }
    }

    /// Whether the last write was partial.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Bytes handed to its socket so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A snapshot of the shard's gauges (current values, not counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreGauges {
    /// Connected clients.
    pub clients: usize,
    /// (client, symbol) subscriptions.
    pub subscriptions: usize,
    /// Pending conflation slots across clients (bounded by `subscriptions`).
    pub pending_updates: usize,
    /// Bytes buffered in the gateway for clients across the shard.
    pub buffered_bytes: usize,
    /// Clients whose socket is full.
    pub blocked_clients: usize,
    /// Trades held in the shard's trade logs (bounded by max_trade_backlog per symbol).
    pub trade_backlog: usize,
    /// Heap bytes of the trade logs.
    pub trade_backlog_bytes: usize,
}

/// The deterministic part of a shard.
pub struct ShardCore {
    universe: Arc<Universe>,
    lvc: Arc<Lvc>,
    limits: Limits,
    clients: Slab<ClientState>,
    index: SubIndex,
    cache: SymbolCache,
    trades: TradeLogs,
    /// The published order books, and this shard's view of the ones its clients watch.
    books: Arc<BookStore>,
    depth: BookCache,
    /// Clients with something to send, in the order they became ready (each at most once).
    ready: VecDeque<ClientId>,
    /// `max_rate` deadlines: (due ns, client).
    deadlines: BinaryHeap<Reverse<(u64, u32, u32)>>,
    next_incarnation: u32,
    /// The latest time the driver told the core (ns): when a woken client joined the queue.
    now_ns: u64,
    /// Reused by intake: the clients armed on the symbol that ticked.
    woken: Vec<ClientId>,
    /// Reused by fill: the symbols to arm once the client is no longer borrowed.
    to_arm: Vec<u32>,
    /// A buffer lent to the client being filled and taken back once its socket took all of
    /// it, so idle clients hold no output buffer at all.
    spare_out: Vec<u8>,
    spare_marks: VecDeque<(u64, u64)>,
    scratch: Vec<u8>,
    records: Vec<u8>,
    /// Where each message in `records` ends and its `ts_gateway` (reused; no per-flush
    /// allocation).
    stamps: Vec<(usize, u64)>,
    /// Counters, read by the driver for stats.
    pub counters: CoreCounters,
    /// Ingest → write-complete latency of live updates, ns.
    pub latency: Histogram<u64>,
    /// Live updates queued per symbol id (for "top symbols by traffic").
    symbol_updates: Vec<u64>,
    /// The feed's upstream state as this shard last told its clients.
    feed_up: bool,
    /// Checks tokens sent with `{"op":"auth"}` (token auth only).
    verifier: Option<Arc<Verifier>>,
    /// Told when this shard's first client of a symbol arrives and its last one leaves.
    interest: Option<Arc<crate::interest::Interest>>,
}

/// How a subscribe request paces its symbols.
#[derive(Clone, Copy, Debug)]
struct Pacing {
    /// Minimum ns between quote updates (0: unlimited).
    interval_ns: u64,
    /// The interval is the server default (a live change of it applies).
    default_pacing: bool,
    /// Deliver every trade too.
    trades: bool,
    /// Order-book levels a side to deliver too (0: none).
    depth: u16,
}

/// Ready-queue length from which a client that just sent something goes straight back to
/// the queue instead of arming its slots (polling). Under load, a client with a dozen
/// updates per flush is nearly certain to have more by its next turn, so arming its slots
/// and waking it from every tick would be pure overhead; with few clients ready, arming keeps
/// an idle client free. One slice's worth: above it the shard is busy flushing anyway.
pub const POLL_QUEUE_LEN: usize = 64;

/// Largest output buffer kept for lending to the next client (a larger one, grown by a big
/// snapshot, is freed instead).
const MAX_SPARE_BYTES: usize = 256 * 1024;

/// What a fill reads from and writes into: the shard's caches (encode once per format), the
/// client's output ([`Out`]) and the symbols to arm.
struct Sink<'a> {
    cache: &'a mut SymbolCache,
    depth: &'a mut BookCache,
    books: &'a BookStore,
    universe: &'a Universe,
    per_symbol: &'a mut Vec<u64>,
    to_arm: &'a mut Vec<u32>,
    arming: bool,
    trades: &'a TradeLogs,
    counters: &'a mut CoreCounters,
    out: Out<'a>,
}

/// The output side of a fill: the client's buffer (JSON frames, SSE events) or the shard's
/// record scratch (binary records, batched JSON objects), with the byte budget.
struct Out<'a> {
    format: Format,
    buf: &'a mut Vec<u8>,
    marks: &'a mut VecDeque<(u64, u64)>,
    base: u64,
    records: &'a mut Vec<u8>,
    /// Per message in `records`: where it ends in `records` (binary) and its `ts_gateway`.
    stamps: &'a mut Vec<(usize, u64)>,
    /// Bytes this fill may still add (`i64::MAX`: no cap); checked before each message.
    budget: i64,
    /// Bytes added so far (the JSON frame headers of batches and binary frames aside).
    spent: i64,
    /// The client's last SSE event id.
    sse_id: &'a mut u64,
}

impl Out<'_> {
    /// Appends one message (a JSON object, or an 88-byte record) in the client's format;
    /// `ts_gateway` 0 marks a message that is not an update (a gap notice: no latency).
    fn push_message(&mut self, json: &[u8], record: &[u8], ts_gateway: u64) {
        match self.format {
            Format::Sse | Format::JsonBatch | Format::Binary => {
                self.push_encoded(if self.format == Format::Binary { record } else { json }, ts_gateway);
            }
            Format::Json => {
                frame::write_frame(self.buf, frame::OpCode::Text, json);
                if ts_gateway != 0 {
                    self.marks.push_back((self.base + self.buf.len() as u64, ts_gateway));
                }
                self.spent += json.len() as i64 + 4;
            }
        }
    }

    /// Appends one message already encoded for the client's format: a complete text frame
    /// (JSON), an object (batched JSON, SSE) or a record (binary).
    fn push_encoded(&mut self, bytes: &[u8], ts_gateway: u64) {
        self.spent += bytes.len() as i64;
        match self.format {
            Format::Sse => {
                *self.sse_id += 1;
                sse::write_event(self.buf, *self.sse_id, bytes);
                self.spent += sse::EVENT_OVERHEAD as i64;
                if ts_gateway != 0 {
                    self.marks.push_back((self.base + self.buf.len() as u64, ts_gateway));
                }
            }
            Format::Json => {
                self.buf.extend_from_slice(bytes);
                if ts_gateway != 0 {
                    self.marks.push_back((self.base + self.buf.len() as u64, ts_gateway));
                }
            }
            Format::JsonBatch => {
                if json::batch_is_full(self.records, bytes) {
                    finish_batch(self.buf, self.marks, self.base, self.records, self.stamps);
                }
                json::batch_append(self.records, bytes);
                self.spent += 1;
                self.stamps.push((0, ts_gateway));
            }
            Format::Binary => {
                self.records.extend_from_slice(bytes);
                self.stamps.push((self.records.len(), ts_gateway));
            }
        }
    }

    fn exhausted(&self) -> bool {
        self.spent >= self.budget
    }
}

/// When a byte bucket at `tokens` (≤ 0), refilled at `rate` bytes/s, holds a byte again: at
/// least 1 ms from `now_ns` (the loop's timer resolution).
fn budget_due(now_ns: u64, tokens: i64, rate: u64) -> u64 {
    let wait = ((1 - tokens) as u128 * 1_000_000_000 / u128::from(rate)) as u64;
    now_ns.saturating_add(wait.max(1_000_000))
}

/// Writes the batched JSON frame built so far in `body` to `out` and marks each of its
/// updates (their `ts_gateway` in `stamps`) as complete at the frame's end.
fn finish_batch(
    out: &mut Vec<u8>,
    marks: &mut VecDeque<(u64, u64)>,
    base: u64,
    body: &mut Vec<u8>,
    stamps: &mut Vec<(usize, u64)>,
) {
    json::batch_finish(out, body);
    let end = base + out.len() as u64;
    marks.extend(stamps.drain(..).map(|(_, t)| (end, t)));
}

impl DrainSink for Sink<'_> {
    #[inline]
    fn arming(&self) -> bool {
        self.arming
    }

    #[inline]
    fn latest(&self, symbol: u32) -> u64 {
        self.cache.seq(symbol)
    }

    fn emit(&mut self, symbol: u32, sent_seq: u64) -> Option<u64> {
        let (bytes, tick) = match self.out.format {
            Format::Json => self.cache.json_frame(symbol, self.universe)?,
            Format::JsonBatch | Format::Sse => self.cache.json_object(symbol, self.universe)?,
            Format::Binary => self.cache.binary_record(symbol)?,
        };
        if tick.seq <= sent_seq {
            return None;
        }
        if let Some(n) = self.per_symbol.get_mut(symbol as usize) {
            *n += 1;
        }
        self.out.push_encoded(bytes, tick.ts_gateway);
        Some(tick.seq)
    }

    #[inline]
    fn book_latest(&self, symbol: u32, depth: u16) -> u64 {
        self.depth.latest(symbol, depth)
    }

    fn emit_book(&mut self, symbol: u32, depth: u16, sent: u64) -> Option<u64> {
        let format = match self.out.format {
            Format::Json => BookFormat::JsonFrame,
            Format::JsonBatch | Format::Sse => BookFormat::JsonObject,
            Format::Binary => BookFormat::Binary,
        };
        let (bytes, seq, ts_gateway) =
            self.depth.message(symbol, depth, format, self.universe, self.books)?;
        if seq <= sent {
            return None;
        }
        // The slot's first book is its snapshot: however old, it is not a latency sample.
        self.out.push_encoded(bytes, if sent == 0 { 0 } else { ts_gateway });
        self.counters.books_sent += 1;
        Some(seq)
    }

    #[inline]
    fn arm(&mut self, symbol: u32) {
        self.to_arm.push(symbol);
    }

    fn exhausted(&self) -> bool {
        self.out.exhausted()
    }

    fn trades(&mut self, symbol: u32, next: &mut u64) -> usize {
        let logs = self.trades;
        let Some(log) = logs.get(symbol) else { return 0 };
        let mut sent = 0;
        let mut gap = [0u8; 96];
        for t in log.from(*next) {
            if self.out.exhausted() {
                break;
            }
            if t.ordinal > *next {
                // Dropped from a full log before this client read them, or never seen here.
                let missed = t.ordinal - *next;
                let name = self.universe.name(symbol);
                let mut text = Vec::with_capacity(0);
                let (json, record): (&[u8], &[u8]) = match self.out.format {
                    Format::Binary => {
                        gap[..binary::RECORD_LEN].copy_from_slice(&binary::gap_record(symbol, missed));
                        (&[], &gap[..binary::RECORD_LEN])
                    }
                    _ => {
                        // Rare (a slow client's overflow): the one allocation off the fast path.
                        json::encode_gap(&mut text, name, missed);
                        (&text, &[])
                    }
                };
                self.out.push_message(json, record, 0);
                self.counters.trade_gaps += 1;
                self.counters.trades_missed += missed;
                sent += 1;
            }
            self.out.push_message(t.json, t.record, t.ts_gateway);
            self.counters.trades_sent += 1;
            *next = t.ordinal + 1;
            sent += 1;
        }
        sent
    }
}

impl ShardCore {
    /// A core for `universe`, reading snapshots from `lvc`.
    pub fn new(universe: Arc<Universe>, lvc: Arc<Lvc>, limits: Limits) -> ShardCore {
        let n = universe.len();
        ShardCore {
            universe,
            lvc,
            limits,
            clients: Slab::new(),
            index: SubIndex::new(n),
            cache: SymbolCache::new(n),
            trades: TradeLogs::new(n),
            books: Arc::new(BookStore::new(n, crate::books::DEFAULT_MAX_DEPTH)),
            depth: BookCache::new(n, crate::books::DEFAULT_MAX_DEPTH),
            ready: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            next_incarnation: 0,
            now_ns: 0,
            woken: Vec::new(),
            to_arm: Vec::new(),
            spare_out: Vec::new(),
            spare_marks: VecDeque::new(),
            scratch: Vec::new(),
            records: Vec::new(),
            stamps: Vec::new(),
            counters: CoreCounters::default(),
            latency: latency_histogram(),
            symbol_updates: vec![0; n],
            feed_up: true,
            verifier: None,
            interest: None,
        }
    }

    /// Reports the symbols this shard's clients start and stop holding to `interest`.
    pub fn set_interest(&mut self, interest: Option<Arc<crate::interest::Interest>>) {
        self.interest = interest;
    }

    /// Reads order books from `books` (the gateway's store; a new core has an empty one of
    /// the default depth). Call before any client subscribes.
    pub fn set_books(&mut self, books: Arc<BookStore>) {
        self.depth = BookCache::new(self.universe.len(), books.depth());
        self.books = books;
    }

    /// Enables `{"op":"auth"}` token refreshes, checked by `verifier`.
    pub fn set_verifier(&mut self, verifier: Option<Arc<Verifier>>) {
        self.verifier = verifier;
    }

    /// When client `key`'s token expires (seconds since the Unix epoch), under token auth.
    pub fn token_expiry(&self, key: usize) -> Option<u64> {
        self.clients.get(key)?.grant.as_ref().map(|g| g.exp)
    }

    /// Tells every client that the feed went down or came back up
    /// (`{"type":"status","feed":"down"|"up"}`), if that differs from what they were last
    /// told. New clients that connect while it is down are told on arrival.
    pub fn set_feed_up(&mut self, up: bool) {
        if up == self.feed_up {
            return;
        }
        self.feed_up = up;
        self.scratch.clear();
        control::write_status(&mut self.scratch, up);
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.push_text(key);
            self.mark_ready(key);
        }
    }

    /// Tells the core the current time (ns): used to stamp when woken clients join the ready
    /// queue. The driver calls it once per turn, before intake.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Puts client `key` at the back of the ready queue, unless it is already queued or its
    /// socket is full (a blocked client is queued again when it drains).
    fn mark_ready(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key)
            && !c.queued
            && !c.blocked
            && !c.closing
        {
            c.queued = true;
            c.queued_at_ns = self.now_ns;
            self.ready.push_back(c.id(key));
        }
    }

    /// Changes the limits for new messages (live tuning).
    /// A changed default pacing also applies to existing subscriptions that use the default
    /// (O(subscriptions), only when it changes).
    pub fn set_limits(&mut self, limits: Limits) {
        if limits.default_interval_ns != self.limits.default_interval_ns {
            for (_, c) in self.clients.iter_mut() {
                c.subs.retune_default(limits.default_interval_ns);
            }
        }
        self.limits = limits;
    }

    /// Registers a new client; returns its key.
    pub fn add_client(&mut self, format: Format, now_ns: u64, grant: Option<Grant>) -> usize {
        let burst = u64::from(self.limits.msgs_per_sec) * 1_000_000_000;
        self.next_incarnation = self.next_incarnation.wrapping_add(1);
        let key = self.clients.insert(ClientState {
            format,
            grant,
            subs: ClientSubs::default(),
            incarnation: self.next_incarnation,
            out: Vec::new(),
            out_base: 0,
            marks: VecDeque::new(),
            blocked: false,
            queued: false,
            closing: false,
            queued_at_ns: 0,
            deadline_ns: 0,
            tokens: burst,
            tokens_at_ns: now_ns,
            bandwidth_set: None,
            bw_tokens: 0,
            bw_at_ns: now_ns,
            bytes: 0,
            peer: None,
            sse_id: 0,
        });
        if !self.feed_up {
            self.scratch.clear();
            control::write_status(&mut self.scratch, false);
            self.push_text(key);
            self.mark_ready(key);
        }
        key
    }

    /// The connection is closing: it leaves every symbol now (ticks stop waking it, nothing
    /// is encoded for it) and is never filled again, so a close that lingers (waiting for
    /// the peer, or on a dead socket) costs no memory and sends no data after the close frame.
    pub fn begin_close(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else { return };
        if c.closing {
            return;
        }
        c.closing = true;
        let id = c.id(key);
        let subs = std::mem::take(&mut c.subs);
        for s in subs.slots() {
            self.drop_subscriber(s.symbol, s.depth, id);
        }
    }

    /// The socket failed: drop whatever was buffered for it.
    pub fn discard_output(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key) {
            c.out = Vec::new();
            c.marks = VecDeque::new();
            c.blocked = false;
        }
        self.begin_close(key);
    }

    /// Removes a client and all its subscriptions. Entries naming it in the index, the ready
    /// queue or the deadlines are left to be skipped (its incarnation is gone).
    pub fn remove_client(&mut self, key: usize) {
        let Some(c) = self.clients.try_remove(key) else { return };
        let id = c.id(key);
        for s in c.subs.slots() {
            self.drop_subscriber(s.symbol, s.depth, id);
        }
    }

    /// Client `id` left `symbol` (whose book it watched if `depth` > 0); forget the symbol's
    /// cached value with the last subscriber.
    fn drop_subscriber(&mut self, symbol: u32, depth: u16, id: ClientId) {
        if depth > 0 {
            self.depth.remove_subscriber(symbol, depth);
        }
        self.trades.remove_subscriber(symbol, id);
        if self.index.remove(symbol) {
            self.cache.clear(symbol);
            if let Some(i) = &self.interest {
                i.release(symbol);
            }
        }
    }

    /// A client's state.
    pub fn client(&self, key: usize) -> Option<&ClientState> {
        self.clients.get(key)
    }

    /// Keys of all clients.
    pub fn client_keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.clients.iter().map(|(k, _)| k)
    }

    /// Applies one tick from the ring: O(1) plus one step per client it wakes. Returns the
    /// number of clients it woke (a client already waiting in the ready queue is not
    /// touched), for the driver's per-turn work budget.
    #[inline]
    pub fn on_tick(&mut self, tick: &Tick) -> usize {
        self.counters.ticks += 1;
        if tick.kind == tickgate_feeds::TickKind::Book {
            // Not a quote: the symbol's order book changed. Wakes the clients armed on the
            // symbol only if someone here watches the book at a depth that saw the change.
            return if self.depth.on_notice(tick.symbol, tick.seq, tick.book_first_changed()) {
                self.wake(tick.symbol)
            } else {
                0
            };
        }
        let mut woken = 0;
        if tick.kind == tickgate_feeds::TickKind::Trade && self.trades.get(tick.symbol).is_some() {
            // Trades are DISTINCT: every client taking them is woken, paced or not.
            let name = self.universe.name(tick.symbol);
            let mut ids = std::mem::take(&mut self.woken);
            self.trades.append(tick, name, self.limits.max_trade_backlog, &mut ids);
            for id in &ids {
                if self.clients.get(id.key as usize).is_some_and(|c| c.incarnation == id.incarnation) {
                    self.mark_ready(id.key as usize);
                    woken += 1;
                }
            }
            ids.clear();
            self.woken = ids;
        }
        woken + self.apply(tick)
    }

    /// Stores `tick` in the cache if a client here holds its symbol and it is newer, then
    /// wakes the clients armed on the symbol. Returns how many it woke.
    fn apply(&mut self, tick: &Tick) -> usize {
        if self.index.subscribers(tick.symbol) == 0 || !self.cache.update(tick) {
            return 0;
        }
        self.wake(tick.symbol)
    }

    /// Wakes every client armed on `symbol`: each joins the ready queue (once).
    fn wake(&mut self, symbol: u32) -> usize {
        let mut woken = std::mem::take(&mut self.woken);
        self.index.take_armed(symbol, &mut woken);
        let mut n = 0;
        for id in &woken {
            let key = id.key as usize;
            let Some(c) = self.clients.get_mut(key) else { continue };
            if c.incarnation != id.incarnation || !c.subs.disarm(symbol) {
                continue;
            }
            self.counters.wakeups += 1;
            n += 1;
            if !c.queued && !c.blocked {
                c.queued = true;
                c.queued_at_ns = self.now_ns;
                self.ready.push_back(*id);
            }
        }
        self.index.restore(symbol, &mut woken);
        self.woken = woken;
        n
    }

    /// After a ring overrun: brings every watched symbol up to the last-value cache, so
    /// clients converge on the latest values despite the ticks this shard missed.
    pub fn heal_from_lvc(&mut self) {
        self.counters.overruns += 1;
        self.refresh_from_lvc();
    }

    fn refresh_from_lvc(&mut self) {
        let symbols: Vec<u32> = self.index.active_symbols().collect();
        for s in symbols {
            if let Some(t) = self.lvc.load(s) {
                self.apply(&t);
            }
        }
        let mut moved = Vec::new();
        self.depth.refresh(&self.books, &mut moved);
        for s in moved {
            self.wake(s);
        }
    }

    /// Clients in the ready queue (stale entries included).
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the client at the front of the ready queue, at `now_ns`: its wait is recorded
    /// as a revisit sample. Skips entries of clients that left.
    pub fn pop_ready(&mut self, now_ns: u64) -> Option<usize> {
        while let Some(id) = self.ready.pop_front() {
            let key = id.key as usize;
            let Some(c) = self.clients.get_mut(key) else { continue };
            if c.incarnation != id.incarnation || !c.queued {
                continue;
            }
            c.queued = false;
            // A client queued before the driver ever told the time has no wait to report.
            let wait = if c.queued_at_ns == 0 { 0 } else { now_ns.saturating_sub(c.queued_at_ns) };
            self.now_ns = self.now_ns.max(now_ns);
            self.counters.visits += 1;
            self.counters.queue_wait_ns = self.counters.queue_wait_ns.saturating_add(wait);
            self.counters.queue_wait_max_ns = self.counters.queue_wait_max_ns.max(wait);
            return Some(key);
        }
        None
    }

    /// Moves the keys of every ready client into `into` (cleared first), in queue order.
    pub fn take_ready(&mut self, into: &mut Vec<usize>) {
        into.clear();
        let now = self.now_ns;
        while let Some(k) = self.pop_ready(now) {
            into.push(k);
        }
    }

    /// Puts client `key` back in the ready queue if it has something to send (a `max_rate`
    /// deadline passed, or its socket drained).
    pub fn requeue(&mut self, key: usize) {
        if self.has_pending(key) {
            self.mark_ready(key);
        }
    }

    /// Whether client `key` has bytes buffered or a newer value than it was sent for any
    /// symbol (O(its subscriptions)).
    fn has_pending(&self, key: usize) -> bool {
        let (cache, trades, depth) = (&self.cache, &self.trades, &self.depth);
        self.clients.get(key).is_some_and(|c| {
            !c.out.is_empty()
                || c.subs.pending(|s| cache.seq(s)) > 0
                || c.subs.trades_pending(|s| trades.last(s))
                || c.subs.books_pending(|s, d| depth.latest(s, d)) > 0
        })
    }

    /// Slots of client `key` whose symbol has a newer value (or, watching its book, a newer
    /// book) than it was sent.
    pub fn pending(&self, key: usize) -> usize {
        let (cache, depth) = (&self.cache, &self.depth);
        self.clients
            .get(key)
            .map_or(0, |c| c.subs.pending(|s| cache.seq(s)) + c.subs.books_pending(|s, d| depth.latest(s, d)))
    }

    /// Queues every client whose `max_rate` deadline is at or before `now_ns`. Returns the
    /// next deadline still ahead, if any.
    pub fn poll_deadlines(&mut self, now_ns: u64) -> Option<u64> {
        self.now_ns = self.now_ns.max(now_ns);
        while let Some(&Reverse((due, key, inc))) = self.deadlines.peek() {
            if due > now_ns {
                return Some(due);
            }
            self.deadlines.pop();
            let key = key as usize;
            let Some(c) = self.clients.get_mut(key) else { continue };
            if c.incarnation != inc || c.deadline_ns != due {
                continue;
            }
            c.deadline_ns = 0;
            self.requeue(key);
        }
        None
    }

    /// The earliest scheduled `max_rate` deadline (stale ones included: waking for one is
    /// harmless).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Lends the spare output buffers to client `c` if it holds none.
    fn lend(c: &mut ClientState, spare_out: &mut Vec<u8>, spare_marks: &mut VecDeque<(u64, u64)>) {
        if c.out.capacity() == 0 {
            std::mem::swap(&mut c.out, spare_out);
        }
        if c.marks.capacity() == 0 {
            std::mem::swap(&mut c.marks, spare_marks);
        }
    }

    /// Takes back the buffers of client `c`, whose output is empty: they become the spares
    /// (or are freed, if a spare is already held or a large snapshot grew them).
    fn give_back(c: &mut ClientState, spare_out: &mut Vec<u8>, spare_marks: &mut VecDeque<(u64, u64)>) {
        let out = std::mem::take(&mut c.out);
        if spare_out.capacity() == 0 && out.capacity() <= MAX_SPARE_BYTES {
            *spare_out = out;
        }
        if c.marks.is_empty() {
            let marks = std::mem::take(&mut c.marks);
            if spare_marks.capacity() == 0 && marks.capacity() <= MAX_SPARE_BYTES / 16 {
                *spare_marks = marks;
            }
        }
    }

    /// Appends every due update of client `key` to its output buffer, unless the client is
    /// blocked, and arms the slots it leaves current. Returns the earliest time a
    /// `max_rate`-held update becomes due (also scheduled: [`ShardCore::poll_deadlines`]
    /// queues the client then).
    pub fn fill(&mut self, key: usize, now_ns: u64) -> Option<u64> {
        self.now_ns = self.now_ns.max(now_ns);
        let c = self.clients.get_mut(key)?;
        if c.blocked || c.closing {
            return None;
        }
        // The byte budget (max_bandwidth): refill, and come back later if it is spent.
        let rate = Self::bandwidth_of(c, &self.limits);
        let budget = if rate == 0 {
            i64::MAX
        } else {
            let elapsed = now_ns.saturating_sub(c.bw_at_ns);
            let refill = (u128::from(elapsed) * u128::from(rate) / 1_000_000_000) as i64;
            // At most 10 ms worth (at least one full frame) may accumulate: over any second the
            // client gets its cap plus that and one message.
            let cap = (rate / 100).max(1500) as i64;
            if refill > 0 {
                c.bw_tokens = c.bw_tokens.saturating_add(refill).min(cap);
                c.bw_at_ns = now_ns;
            }
            if c.bw_tokens <= 0 {
                let due = budget_due(now_ns, c.bw_tokens, rate);
                self.counters.bandwidth_holds += 1;
                let id = c.id(key);
                if c.deadline_ns == 0 || due < c.deadline_ns {
                    c.deadline_ns = due;
                    self.deadlines.push(Reverse((due, id.key, id.incarnation)));
                }
                return Some(due);
            }
            c.bw_tokens
        };
        Self::lend(c, &mut self.spare_out, &mut self.spare_marks);
        self.to_arm.clear();
        self.records.clear();
        self.stamps.clear();
        let polling = self.ready.len() >= POLL_QUEUE_LEN;
        let out_before = c.out.len();
        let mut sink = Sink {
            cache: &mut self.cache,
            depth: &mut self.depth,
            books: &self.books,
            universe: &self.universe,
            per_symbol: &mut self.symbol_updates,
            to_arm: &mut self.to_arm,
            arming: !polling,
            trades: &self.trades,
            counters: &mut self.counters,
            out: Out {
                format: c.format,
                buf: &mut c.out,
                marks: &mut c.marks,
                base: c.out_base,
                records: &mut self.records,
                stamps: &mut self.stamps,
                budget,
                spent: 0,
                sse_id: &mut c.sse_id,
            },
        };
        let mut d = c.subs.drain_due(now_ns, &mut sink);
        if polling && d.sent == 0 {
            // Nothing to send after all: go idle, armed, like any other client.
            sink.arming = true;
            d = c.subs.drain_due(now_ns, &mut sink);
        }
        if c.format == Format::JsonBatch {
            finish_batch(&mut c.out, &mut c.marks, c.out_base, &mut self.records, &mut self.stamps);
        } else if !self.records.is_empty() {
            frame::write_header(&mut c.out, frame::OpCode::Binary, self.records.len());
            let start = c.out_base + c.out.len() as u64;
            c.out.extend_from_slice(&self.records);
            for &(end, t) in &self.stamps {
                c.marks.push_back((start + end as u64, t));
            }
        }
        self.counters.conflated += d.conflated;
        if rate != 0 {
            c.bw_tokens = c.bw_tokens.saturating_sub((c.out.len() - out_before) as i64);
            if d.cut_short {
                // Left for later: come back when the budget allows.
                self.counters.bandwidth_holds += 1;
                let due = budget_due(now_ns, c.bw_tokens.min(0), rate);
                d.next_due_ns = Some(d.next_due_ns.map_or(due, |n| n.min(due)));
            }
        }
        let id = c.id(key);
        if let Some(due) = d.next_due_ns
            && (c.deadline_ns == 0 || due < c.deadline_ns)
        {
            c.deadline_ns = due;
            self.deadlines.push(Reverse((due, id.key, id.incarnation)));
        }
        let clients = &self.clients;
        for &s in &self.to_arm {
            self.index.arm(s, id, |other| {
                clients.get(other.key as usize).is_some_and(|o| {
                    o.incarnation == other.incarnation && o.subs.get(s).is_some_and(|slot| slot.armed)
                })
            });
        }
        if polling && d.sent > 0 {
            self.counters.polled += 1;
            self.mark_ready(key);
        }
        d.next_due_ns
    }

    /// Reports that the socket of client `key` took `n` bytes of its output buffer, in a
    /// write that returned at `now_ns` (`n` may be 0). Records the latency of every live
    /// update now fully written (ingest → the return of the write that completed it), and
    /// sets or clears the client's blocked state. Returns true if the client just became
    /// ready again (unblocked with updates pending; it is back in the ready queue).
    pub fn written(&mut self, key: usize, n: usize, now_ns: u64) -> bool {
        let Some(c) = self.clients.get_mut(key) else { return false };
        let n = n.min(c.out.len());
        c.out.drain(..n);
        c.out_base += n as u64;
        c.bytes += n as u64;
        self.counters.bytes_written += n as u64;
        while let Some(&(end, ts)) = c.marks.front() {
            if end > c.out_base {
                break;
            }
            c.marks.pop_front();
            if ts == 0 {
                // A gap notice in a batch or binary frame: not an update.
                continue;
            }
            self.counters.delivered += 1;
            let lat = now_ns.saturating_sub(ts).clamp(1, LATENCY_MAX_NS);
            let _ = self.latency.record(lat);
        }
        let was_blocked = c.blocked;
        c.blocked = !c.out.is_empty();
        if c.out.is_empty() {
            // An idle client holds no output memory.
            Self::give_back(c, &mut self.spare_out, &mut self.spare_marks);
        }
        if was_blocked && !c.blocked && !c.queued {
            if self.has_pending(key) {
                self.mark_ready(key);
                return true;
            }
            // A client that blocked while polling has no armed slots: arm them now.
            self.fill(key, now_ns);
        }
        false
    }

    /// Appends a raw frame (e.g. a close or ping the driver composed) to the client's buffer.
    pub fn push_raw(&mut self, key: usize, bytes: &[u8]) {
        if let Some(c) = self.clients.get_mut(key) {
            Self::lend(c, &mut self.spare_out, &mut self.spare_marks);
            c.out.extend_from_slice(bytes);
        }
    }

    /// Handles one complete text message from client `key`. Replies (and snapshots) are
    /// appended to the client's output buffer.
    pub fn handle_text(&mut self, key: usize, payload: &mut [u8], now_ns: u64) {
        let Some(c) = self.clients.get_mut(key) else { return };
        self.counters.client_msgs += 1;
        let rate = u64::from(self.limits.msgs_per_sec);
        let cap = rate * 1_000_000_000;
        c.tokens =
            c.tokens.saturating_add(now_ns.saturating_sub(c.tokens_at_ns).saturating_mul(rate)).min(cap);
        c.tokens_at_ns = now_ns;
        let limited = c.tokens < 1_000_000_000;
        if !limited {
            c.tokens -= 1_000_000_000;
        }
        let parsed = control::parse(payload);
        if limited {
            // Over the budget nothing is executed, malformed or not; echo the id if any.
            let id = match &parsed {
                Ok(msg) => msg.id(),
                Err(e) => e.id,
            };
            let e = ControlError {
                id,
                code: ErrorCode::RateLimited,
                message: format!(
                    "over {} messages per second; this message was not executed",
                    self.limits.msgs_per_sec
                ),
            };
            return self.reply_error(key, &e, None);
        }
        match parsed {
            Err(e) => self.reply_error(key, &e, None),
            Ok(ClientMsg::Subscribe { id, symbols, max_rate, trades, depth }) => {
                let (interval, default_pacing) = match max_rate {
                    Some(m) => (m.interval_ns, false),
                    None => (self.limits.default_interval_ns, true),
                };
                if usize::from(depth) > self.depth.max_depth() {
                    let e = ControlError {
                        id,
                        code: ErrorCode::BadRequest,
                        message: format!(
                            "depth {depth} is over this server's max_depth ({}); nothing was subscribed",
                            self.depth.max_depth()
                        ),
                    };
                    return self.reply_error(key, &e, None);
                }
                self.subscribe(
                    key,
                    id,
                    &symbols,
                    Pacing { interval_ns: interval, default_pacing, trades, depth },
                    now_ns,
                );
            }
            Ok(ClientMsg::Set { id, max_bandwidth }) => {
                let Some(c) = self.clients.get_mut(key) else { return };
                c.bandwidth_set = max_bandwidth.filter(|&b| b != 0);
                c.bw_tokens = 0;
                c.bw_at_ns = now_ns;
                let effective = Self::bandwidth_of(c, &self.limits);
                self.scratch.clear();
                control::write_settings(&mut self.scratch, id, effective);
                self.push_text(key);
            }
            Ok(ClientMsg::Unsubscribe { id, symbols }) => self.unsubscribe(key, id, &symbols),
            Ok(ClientMsg::List { id }) => {
                self.scratch.clear();
                let grant = self.clients.get(key).and_then(|c| c.grant.as_ref());
                control::write_symbols(
                    &mut self.scratch,
                    id,
                    self.universe
                        .symbols()
                        .iter()
                        .map(|s| s.name.as_str())
                        .filter(|n| grant.is_none_or(|g| g.allows(n))),
                );
                self.push_text(key);
            }
            Ok(ClientMsg::Auth { id, token }) => self.reauthenticate(key, id, token),
            Ok(ClientMsg::Ping { id }) => {
                self.scratch.clear();
                control::write_pong(&mut self.scratch, id, now_ns);
                self.push_text(key);
            }
        }
    }

    fn subscribe(&mut self, key: usize, id: Option<i64>, names: &[&str], pacing: Pacing, now_ns: u64) {
        let Pacing { interval_ns, default_pacing, trades, depth } = pacing;
        // Each name is classified once; the sets keep large requests linear (a 64 KiB message
        // can carry ~10,000 names, and a quadratic dedup would stall the whole shard).
        let mut known: Vec<(&str, u32)> = Vec::with_capacity(names.len());
        let mut unknown: Vec<&str> = Vec::new();
        let mut denied: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
        let Some(c) = self.clients.get(key) else { return };
        for &n in names {
            if !seen.insert(n) {
                continue;
            }
            match self.universe.id(n) {
                Some(_) if c.grant.as_ref().is_some_and(|g| !g.allows(n)) => denied.push(n),
                Some(s) => known.push((n, s)),
                None => unknown.push(n),
            }
        }
        let new = known.iter().filter(|(_, s)| !c.subs.contains(*s)).count();
        if c.subs.len() + new > self.limits.max_symbols {
            let e = ControlError {
                id,
                code: ErrorCode::TooManySymbols,
                message: format!(
                    "subscribing {new} more symbols would exceed max_symbols_per_client ({}); \
                     nothing was subscribed",
                    self.limits.max_symbols
                ),
            };
            return self.reply_error(key, &e, None);
        }
        let mut fresh: Vec<u32> = Vec::new();
        if let Some(c) = self.clients.get_mut(key) {
            let symbols: Vec<u32> = known.iter().map(|&(_, s)| s).collect();
            c.subs.subscribe_all(&symbols, interval_ns, default_pacing, &mut fresh);
            for &s in &fresh {
                if self.index.add(s)
                    && let Some(i) = &self.interest
                {
                    i.hold(s);
                }
            }
        }
        if !known.is_empty() {
            self.scratch.clear();
            control::write_subscribed(&mut self.scratch, id, known.iter().copied());
            self.push_text(key);
        }
        let note =
            if known.is_empty() { "; nothing was subscribed" } else { "; the known ones were subscribed" };
        self.reply_unknown(key, id, &unknown, note);
        self.reply_not_entitled(key, id, &denied, "; the others were subscribed");
        self.send_snapshots(key, &fresh, now_ns);
        // Books as asked for the listed symbols: a new or changed depth is sent at once (the
        // next flush), as the book's snapshot; 0 stops the book.
        let mut book_fresh = false;
        if let Some(c) = self.clients.get_mut(key) {
            for &(_, s) in &known {
                let Some(was) = c.subs.set_depth(s, depth) else { continue };
                if was == depth {
                    continue;
                }
                if was > 0 {
                    self.depth.remove_subscriber(s, was);
                }
                if depth > 0 {
                    self.depth.add_subscriber(s, depth, &self.books);
                    book_fresh = true;
                }
            }
        }
        self.arm_fresh(key, &fresh);
        if book_fresh {
            self.requeue(key);
        }
        // Trades as asked for the listed symbols: from the trade after the one the shard's
        // cache holds (a new symbol's cache holds its snapshot, so: after the trade the
        // snapshot shows as `last`). Every later trade still comes through this shard's ring
        // and log, so none is skipped; reading the last-value cache again here instead would
        // skip the trades the feed published in between.
        let Some(c) = self.clients.get_mut(key) else { return };
        let cid = c.id(key);
        for &(_, s) in &known {
            let was = c.subs.get(s).is_some_and(|slot| slot.trades);
            if trades == was {
                continue;
            }
            let next = self.cache.latest(s).map_or(0, |t| t.trades) + 1;
            c.subs.set_trades(s, trades, next);
            if trades {
                self.trades.add_subscriber(s, cid);
            } else {
                self.trades.remove_subscriber(s, cid);
            }
        }
    }

    /// The byte rate client `c` is held to (0: unlimited): what it set, else the server
    /// default, within the ceiling.
    fn bandwidth_of(c: &ClientState, limits: &Limits) -> u64 {
        let wanted = c.bandwidth_set.unwrap_or(limits.default_bandwidth);
        match (wanted, limits.bandwidth_ceiling) {
            (w, 0) => w,
            (0, ceiling) => ceiling,
            (w, ceiling) => w.min(ceiling),
        }
    }

    /// Drops the trades every reader has passed (called by the driver's housekeeping, about
    /// ten times a second; O(trade subscriptions)).
    pub fn trim_trades(&mut self) {
        let mut mins: Vec<(u32, u64)> = Vec::new();
        for (symbol, subs) in self.trades.open() {
            let min = subs
                .iter()
                .filter_map(|id| {
                    let c = self.clients.get(id.key as usize).filter(|c| c.incarnation == id.incarnation)?;
                    c.subs.get(symbol).filter(|s| s.trades).map(|s| s.trade_next)
                })
                .min()
                .unwrap_or(u64::MAX);
            mins.push((symbol, min));
        }
        for (symbol, min) in mins {
            self.trades.trim_below(symbol, min);
        }
    }

    /// Arms the new slots of client `key` that are current (their next tick wakes it), or
    /// queues the client if one already has something newer to send.
    fn arm_fresh(&mut self, key: usize, fresh: &[u32]) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let id = c.id(key);
        let mut behind = false;
        for &s in fresh {
            if c.subs.get(s).is_some_and(|slot| slot.sent_seq < self.cache.seq(s)) {
                behind = true;
                continue;
            }
            if c.subs.arm(s) {
                // Fresh slots of a live client: nothing stale to compact here.
                self.index.arm(s, id, |_| true);
            }
        }
        if behind {
            self.mark_ready(key);
        }
    }

    /// The `not_entitled` error listing `denied` (nothing if it is empty).
    fn reply_not_entitled(&mut self, key: usize, id: Option<i64>, denied: &[&str], note: &str) {
        self.reply_symbols(
            key,
            id,
            ErrorCode::NotEntitled,
            denied,
            "symbol(s) not covered by your token",
            note,
        );
    }

    /// `{"op":"auth"}`: replaces the client's token. Subscriptions the new token does not
    /// cover are dropped (and listed in a `not_entitled` error).
    fn reauthenticate(&mut self, key: usize, id: Option<i64>, token: &str) {
        let Some(verifier) = self.verifier.clone() else {
            let e = ControlError {
                id,
                code: ErrorCode::BadRequest,
                message: "this gateway does not use token auth".into(),
            };
            return self.reply_error(key, &e, None);
        };
        let grant = match verifier.verify(token) {
            Ok(g) => g,
            Err(err) => {
                let e = ControlError {
                    id,
                    code: ErrorCode::Unauthorized,
                    message: format!("{err}; the current token stays in force until it expires"),
                };
                return self.reply_error(key, &e, None);
            }
        };
        let Some(c) = self.clients.get_mut(key) else { return };
        let cid = c.id(key);
        let dropped: Vec<u32> = c.subs.symbols().filter(|&s| !grant.allows(self.universe.name(s))).collect();
        let slots: Vec<(u32, u16)> = dropped
            .iter()
            .filter_map(|&s| c.subs.unsubscribe(s))
            .map(|slot| (slot.symbol, slot.depth))
            .collect();
        for (s, depth) in slots {
            self.drop_subscriber(s, depth, cid);
        }
        self.scratch.clear();
        control::write_authenticated(&mut self.scratch, id, &grant.sub, grant.exp);
        if let Some(c) = self.clients.get_mut(key) {
            c.grant = Some(grant);
        }
        self.push_text(key);
        let universe = self.universe.clone();
        let names: Vec<&str> = dropped.iter().map(|&s| universe.name(s)).collect();
        self.reply_not_entitled(key, id, &names, "; they were unsubscribed");
    }

    /// Sends a snapshot (the last-value cache's tick, flagged `snapshot`) of each symbol in
    /// `symbols` that has a value, and primes the shard cache with it.
    fn send_snapshots(&mut self, key: usize, symbols: &[u32], now_ns: u64) {
        // The cache may be ahead of the ring (the feed writes it first). Taking a snapshot
        // from it moves this shard's frame cache forward, and the ring's older ticks will
        // then be dropped as stale, so the symbol's *other* subscribers must be woken by the
        // snapshot's tick now, or they would sit on an older value until the symbol ticks
        // again. (The new slots are not armed yet, so this client is not woken by it.)
        let snaps: Vec<Tick> = symbols.iter().filter_map(|&s| self.lvc.load(s)).collect();
        for t in &snaps {
            self.apply(t);
        }
        let Some(c) = self.clients.get_mut(key) else { return };
        Self::lend(c, &mut self.spare_out, &mut self.spare_marks);
        self.records.clear();
        for t in &snaps {
            let s = t.symbol;
            let t = *t;
            match c.format {
                Format::Json => {
                    self.scratch.clear();
                    json::encode_update(&mut self.scratch, &t, self.universe.name(s), true);
                    frame::write_frame(&mut c.out, frame::OpCode::Text, &self.scratch);
                }
                Format::Sse => {
                    self.scratch.clear();
                    json::encode_update(&mut self.scratch, &t, self.universe.name(s), true);
                    c.sse_id += 1;
                    sse::write_event(&mut c.out, c.sse_id, &self.scratch);
                }
                Format::JsonBatch => {
                    self.scratch.clear();
                    json::encode_update(&mut self.scratch, &t, self.universe.name(s), true);
                    if json::batch_is_full(&self.records, &self.scratch) {
                        json::batch_finish(&mut c.out, &mut self.records);
                    }
                    json::batch_append(&mut self.records, &self.scratch);
                }
                Format::Binary => binary::encode_record(&mut self.records, &t, true),
            }
            c.subs.delivered(s, t.seq, now_ns);
            self.counters.snapshots += 1;
        }
        match c.format {
            Format::JsonBatch => json::batch_finish(&mut c.out, &mut self.records),
            Format::Binary if !self.records.is_empty() => {
                frame::write_frame(&mut c.out, frame::OpCode::Binary, &self.records);
            }
            Format::Json | Format::Binary | Format::Sse => {}
        }
    }

    fn unsubscribe(&mut self, key: usize, id: Option<i64>, names: &[&str]) {
        let mut done: Vec<&str> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
        for &n in names {
            if !seen.insert(n) {
                continue;
            }
            match self.universe.id(n) {
                Some(s) => {
                    if let Some(c) = self.clients.get_mut(key)
                        && let Some(slot) = c.subs.unsubscribe(s)
                    {
                        let cid = c.id(key);
                        self.drop_subscriber(s, slot.depth, cid);
                    }
                    done.push(n);
                }
                None => unknown.push(n),
            }
        }
        if !done.is_empty() {
            self.scratch.clear();
            control::write_unsubscribed(&mut self.scratch, id, done.iter().copied());
            self.push_text(key);
        }
        self.reply_unknown(key, id, &unknown, "");
    }

    /// The `unknown_symbol` error listing `unknown` (nothing if it is empty).
    fn reply_unknown(&mut self, key: usize, id: Option<i64>, unknown: &[&str], note: &str) {
        self.reply_symbols(key, id, ErrorCode::UnknownSymbol, unknown, "unknown symbol(s)", note);
    }

    /// An error with `code` listing `symbols` ("N what note"); nothing if the list is empty.
    fn reply_symbols(
        &mut self,
        key: usize,
        id: Option<i64>,
        code: ErrorCode,
        symbols: &[&str],
        what: &str,
        note: &str,
    ) {
        if symbols.is_empty() {
            return;
        }
        let e = ControlError { id, code, message: format!("{} {what}{note}", symbols.len()) };
        self.reply_error(key, &e, Some(symbols));
    }

    fn reply_error(&mut self, key: usize, e: &ControlError, symbols: Option<&[&str]>) {
        self.counters.errors[code_index(e.code)] += 1;
        self.scratch.clear();
        control::write_error(&mut self.scratch, e.id, e.code, &e.message, symbols);
        self.push_text(key);
    }

    /// Frames `self.scratch` as a text message into the client's buffer.
    fn push_text(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key) {
            Self::lend(c, &mut self.spare_out, &mut self.spare_marks);
            if c.format == Format::Sse {
                c.sse_id += 1;
                sse::write_event(&mut c.out, c.sse_id, &self.scratch);
            } else {
                frame::write_frame(&mut c.out, frame::OpCode::Text, &self.scratch);
            }
        }
    }

    /// Order-book messages encoded so far.
    pub fn book_encodes(&self) -> u64 {
        self.depth.encodes
    }

    /// Current gauges (O(clients); called once per stats period, not per tick).
    pub fn gauges(&self) -> CoreGauges {
        let mut g = CoreGauges { clients: self.clients.len(), ..CoreGauges::default() };
        let cache = &self.cache;
        for (_, c) in &self.clients {
            g.subscriptions += c.subs.len();
            g.pending_updates += c.subs.pending(|s| cache.seq(s));
            g.buffered_bytes += c.out.len();
            g.blocked_clients += usize::from(c.blocked);
        }
        (g.trade_backlog, g.trade_backlog_bytes) = self.trades.held();
        g
    }

    /// Records client `key`'s address (shown in the operator's view).
    pub fn set_peer(&mut self, key: usize, peer: std::net::SocketAddr) {
        if let Some(c) = self.clients.get_mut(key) {
            c.peer = Some(peer);
        }
    }

    /// The `n` clients that were handed the most bytes, most first, as (address, bytes, its
    /// `max_bandwidth` in force (0: none)), into `out` (O(clients); about once a second).
    pub fn top_clients(&self, n: usize, out: &mut Vec<(Option<std::net::SocketAddr>, u64, u64)>) {
        out.clear();
        for (_, c) in &self.clients {
            let e = (c.peer, c.bytes, Self::bandwidth_of(c, &self.limits));
            if out.len() < n {
                out.push(e);
            } else if out.last().is_some_and(|l| e.1 > l.1) {
                out.pop();
                out.push(e);
            } else {
                continue;
            }
            out.sort_by_key(|e| std::cmp::Reverse(e.1));
        }
    }

    /// The `n` symbols with the most live updates queued so far, busiest first, into `out`
    /// (O(symbols); called about once a second).
    pub fn top_symbols(&self, n: usize, out: &mut Vec<(u32, u64)>) {
        out.clear();
        for (s, &count) in self.symbol_updates.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if out.len() < n {
                out.push((s as u32, count));
                out.sort_by_key(|e| std::cmp::Reverse(e.1));
            } else if out.last().is_some_and(|l| count > l.1) {
                out.pop();
                out.push((s as u32, count));
                out.sort_by_key(|e| std::cmp::Reverse(e.1));
            }
        }
    }

    /// Encodes performed so far: (JSON, binary).
    pub fn encodes(&self) -> (u64, u64) {
        (self.cache.json_encodes, self.cache.binary_encodes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
