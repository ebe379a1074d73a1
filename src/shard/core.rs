//! The shard core: everything a shard decides, with no sockets and no clock of its own.
//!
//! [`ShardCore`] owns the shard's clients (their subscriptions, conflation slots and output
//! buffers), the subscription index and the frame cache. The driver (`shard::driver`,
//! `shard::conn`) feeds it ticks, client messages and the time, asks it to fill a client's
//! output buffer, writes that buffer with one syscall, and reports back how many bytes the
//! socket took. Because of that split, fan-out, conflation, max-rate pacing and the control
//! protocol are all tested and benchmarked here without I/O.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use hdrhistogram::Histogram;
use slab::Slab;
use tickgate_feeds::{Tick, Universe};

use super::cache::SymbolCache;
use super::conflate::{ClientSubs, Offer};
use super::index::SubIndex;
use crate::auth::{Grant, Verifier};
use crate::protocol::control::{self, ClientMsg, ControlError, ErrorCode};
use crate::protocol::{Format, binary, frame, json};
use crate::ring::Lvc;

/// Per-client and per-shard bounds the core enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Symbols one client may hold.
    pub max_symbols: usize,
    /// Client messages per second (token bucket capacity and refill rate).
    pub msgs_per_sec: u32,
    /// Pacing for subscriptions that give no `max_rate` (0 = unlimited).
    pub default_interval_ns: u64,
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
    /// Times this shard skipped ticks older than its staleness bound and resynced from the
    /// last-value cache (conflation at the ring when the shard is overloaded).
    pub resyncs: u64,
    /// Bytes handed to sockets.
    pub bytes_written: u64,
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
    /// Bytes waiting for the socket: control replies, snapshots, update frames.
    out: Vec<u8>,
    /// Absolute stream offset of `out[0]` (bytes ever written before it).
    out_base: u64,
    /// (absolute end offset, ts_gateway) of each live update in `out`, for latency.
    marks: VecDeque<(u64, u64)>,
    /// The socket refused part of the last write: don't add updates until it drains (they
    /// would age in our buffer instead of conflating).
    blocked: bool,
    /// Already in the ready list.
    queued: bool,
    /// Token bucket, in nano-tokens, and when it was last refilled.
    tokens: u64,
    tokens_at_ns: u64,
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

    /// Subscriptions and pending slots.
    pub fn subs(&self) -> &ClientSubs {
        &self.subs
    }

    /// Whether the last write was partial.
    pub fn is_blocked(&self) -> bool {
        self.blocked
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
}

/// The deterministic part of a shard.
pub struct ShardCore {
    universe: Arc<Universe>,
    lvc: Arc<Lvc>,
    limits: Limits,
    clients: Slab<ClientState>,
    index: SubIndex,
    cache: SymbolCache,
    ready: Vec<usize>,
    scratch: Vec<u8>,
    records: Vec<u8>,
    /// `ts_gateway` of each record in `records` (reused; no per-flush allocation).
    stamps: Vec<u64>,
    symbols_tmp: Vec<u32>,
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
}

/// Largest value the latency histogram records (60 s); larger values are clamped.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// A fresh latency histogram: 1 ns to 60 s, 3 significant figures.
pub fn new_latency_histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid; fall back to an auto-resizing one anyway.
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfigs is valid"));
        h.auto(true);
        h
    })
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
            ready: Vec::new(),
            scratch: Vec::new(),
            records: Vec::new(),
            stamps: Vec::new(),
            symbols_tmp: Vec::new(),
            counters: CoreCounters::default(),
            latency: new_latency_histogram(),
            symbol_updates: vec![0; n],
            feed_up: true,
            verifier: None,
        }
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

    /// Queues client `key` for the next flush (its buffer holds something to send).
    fn mark_ready(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key)
            && !c.queued
            && !c.blocked
        {
            c.queued = true;
            self.ready.push(key);
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
        let key = self.clients.insert(ClientState {
            format,
            grant,
            subs: ClientSubs::default(),
            out: Vec::new(),
            out_base: 0,
            marks: VecDeque::new(),
            blocked: false,
            queued: false,
            tokens: burst,
            tokens_at_ns: now_ns,
        });
        if !self.feed_up {
            self.scratch.clear();
            control::write_status(&mut self.scratch, false);
            self.push_text(key);
            self.mark_ready(key);
        }
        key
    }

    /// Removes a client and all its subscriptions.
    pub fn remove_client(&mut self, key: usize) {
        let Some(c) = self.clients.try_remove(key) else { return };
        for s in c.subs.symbols() {
            self.index.remove(s, key);
            if self.index.subscribers(s).is_empty() {
                self.cache.clear(s);
            }
        }
        self.ready.retain(|k| *k != key);
    }

    /// A client's state.
    pub fn client(&self, key: usize) -> Option<&ClientState> {
        self.clients.get(key)
    }

    /// Keys of all clients.
    pub fn client_keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.clients.iter().map(|(k, _)| k)
    }

    /// Applies one tick from the ring; returns the number of subscribers it touched (the
    /// work it cost, for the driver's per-turn budget).
    #[inline]
    pub fn on_tick(&mut self, tick: &Tick) -> usize {
        self.counters.ticks += 1;
        self.fan_out(tick, None)
    }

    /// Offers `tick` to the symbol's subscribers (all but `skip`) if it is newer than the
    /// shard's cached value.
    fn fan_out(&mut self, tick: &Tick, skip: Option<usize>) -> usize {
        let subscribers = self.index.subscribers(tick.symbol);
        if subscribers.is_empty() || !self.cache.update(tick) {
            return subscribers.len();
        }
        for &key in subscribers {
            if skip == Some(key) {
                continue;
            }
            let Some(c) = self.clients.get_mut(key) else { continue };
            match c.subs.offer(tick.symbol, tick.seq) {
                Offer::Pending => {
                    if !c.queued {
                        c.queued = true;
                        self.ready.push(key);
                    }
                }
                Offer::Conflated => self.counters.conflated += 1,
                Offer::Ignored => {}
            }
        }
        subscribers.len()
    }

    /// After a ring overrun: brings every watched symbol up to the last-value cache, so
    /// clients converge on the latest values despite the ticks this shard missed.
    pub fn heal_from_lvc(&mut self) {
        self.counters.overruns += 1;
        self.refresh_from_lvc();
    }

    /// After a deliberate skip of stale ring entries: the same heal, counted as a resync.
    pub fn resync_from_lvc(&mut self) {
        self.counters.resyncs += 1;
        self.refresh_from_lvc();
    }

    fn refresh_from_lvc(&mut self) {
        let mut symbols = std::mem::take(&mut self.symbols_tmp);
        symbols.clear();
        symbols.extend(self.index.active_symbols());
        for &s in &symbols {
            if let Some(t) = self.lvc.load(s) {
                self.fan_out(&t, None);
            }
        }
        self.symbols_tmp = symbols;
    }

    /// Moves the keys of clients with pending updates into `into` (which is cleared first).
    pub fn take_ready(&mut self, into: &mut Vec<usize>) {
        into.clear();
        std::mem::swap(&mut self.ready, into);
        for &k in into.iter() {
            if let Some(c) = self.clients.get_mut(k) {
                c.queued = false;
            }
        }
    }

    /// Puts client `key` back in the ready list if it has pending updates (a `max_rate`
    /// deadline passed).
    pub fn requeue(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key)
            && !c.queued
            && c.subs.pending() > 0
        {
            c.queued = true;
            self.ready.push(key);
        }
    }

    /// Appends every due pending update of client `key` to its output buffer, unless the
    /// client is blocked. Returns the earliest time a `max_rate`-held update becomes due.
    pub fn fill(&mut self, key: usize, now_ns: u64) -> Option<u64> {
        let c = self.clients.get_mut(key)?;
        if c.blocked || c.subs.pending() == 0 {
            return None;
        }
        let cache = &mut self.cache;
        let universe = &self.universe;
        let per_symbol = &mut self.symbol_updates;
        match c.format {
            Format::Json => {
                let (out, marks, base) = (&mut c.out, &mut c.marks, c.out_base);
                c.subs.drain_due(now_ns, |symbol, sent| {
                    let (bytes, tick) = cache.json_frame(symbol, universe.name(symbol))?;
                    if tick.seq <= sent {
                        return None;
                    }
                    if let Some(n) = per_symbol.get_mut(symbol as usize) {
                        *n += 1;
                    }
                    out.extend_from_slice(bytes);
                    marks.push_back((base + out.len() as u64, tick.ts_gateway));
                    Some(tick.seq)
                })
            }
            Format::Binary => {
                let (records, stamps) = (&mut self.records, &mut self.stamps);
                records.clear();
                stamps.clear();
                let next = c.subs.drain_due(now_ns, |symbol, sent| {
                    let (bytes, tick) = cache.binary_record(symbol)?;
                    if tick.seq <= sent {
                        return None;
                    }
                    if let Some(n) = per_symbol.get_mut(symbol as usize) {
                        *n += 1;
                    }
                    records.extend_from_slice(bytes);
                    stamps.push(tick.ts_gateway);
                    Some(tick.seq)
                });
                if !records.is_empty() {
                    frame::write_header(&mut c.out, frame::OpCode::Binary, records.len());
                    let start = c.out_base + c.out.len() as u64;
                    c.out.extend_from_slice(records);
                    for (i, t) in stamps.iter().enumerate() {
                        let end = start + ((i + 1) * binary::RECORD_LEN) as u64;
                        c.marks.push_back((end, *t));
                    }
                }
                next
            }
        }
    }

    /// Reports that the socket of client `key` took `n` bytes of its output buffer at
    /// `now_ns` (`n` may be 0). Records latency of every live update now fully written,
    /// and sets or clears the client's blocked state. Returns true if the client just
    /// became ready again (unblocked with updates pending): the driver must make sure a
    /// flush follows.
    pub fn written(&mut self, key: usize, n: usize, now_ns: u64) -> bool {
        let Some(c) = self.clients.get_mut(key) else { return false };
        let n = n.min(c.out.len());
        c.out.drain(..n);
        c.out_base += n as u64;
        self.counters.bytes_written += n as u64;
        while let Some(&(end, ts)) = c.marks.front() {
            if end > c.out_base {
                break;
            }
            c.marks.pop_front();
            self.counters.delivered += 1;
            let lat = now_ns.saturating_sub(ts).clamp(1, LATENCY_MAX_NS);
            let _ = self.latency.record(lat);
        }
        c.blocked = !c.out.is_empty();
        if c.out.is_empty() && c.out.capacity() > 64 * 1024 {
            // A large snapshot grew the buffer; give the memory back.
            c.out.shrink_to(4096);
        }
        if !c.blocked && c.subs.pending() > 0 && !c.queued {
            c.queued = true;
            self.ready.push(key);
            return true;
        }
        false
    }

    /// Appends a raw frame (e.g. a close or ping the driver composed) to the client's buffer.
    pub fn push_raw(&mut self, key: usize, bytes: &[u8]) {
        if let Some(c) = self.clients.get_mut(key) {
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
            Ok(ClientMsg::Subscribe { id, symbols, max_rate }) => {
                let (interval, default_pacing) = match max_rate {
                    Some(m) => (m.interval_ns, false),
                    None => (self.limits.default_interval_ns, true),
                };
                self.subscribe(key, id, &symbols, interval, default_pacing, now_ns);
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

    fn subscribe(
        &mut self,
        key: usize,
        id: Option<i64>,
        names: &[&str],
        interval_ns: u64,
        default_pacing: bool,
        now_ns: u64,
    ) {
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
            for &(_, s) in &known {
                if c.subs.subscribe_paced(s, interval_ns, default_pacing) {
                    self.index.add(s, key);
                    fresh.push(s);
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
        let dropped: Vec<u32> = c.subs.symbols().filter(|&s| !grant.allows(self.universe.name(s))).collect();
        for &s in &dropped {
            c.subs.unsubscribe(s);
            self.index.remove(s, key);
            if self.index.subscribers(s).is_empty() {
                self.cache.clear(s);
            }
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
        // then be dropped as stale, so the symbol's *other* subscribers must be offered the
        // snapshot's tick now, or they would sit on an older value until the symbol ticks
        // again.
        let snaps: Vec<Tick> = symbols.iter().filter_map(|&s| self.lvc.load(s)).collect();
        for t in &snaps {
            self.fan_out(t, Some(key));
        }
        let Some(c) = self.clients.get_mut(key) else { return };
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
                Format::Binary => binary::encode_record(&mut self.records, &t, true),
            }
            c.subs.delivered(s, t.seq, now_ns);
            self.counters.snapshots += 1;
        }
        if !self.records.is_empty() {
            frame::write_frame(&mut c.out, frame::OpCode::Binary, &self.records);
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
                        && c.subs.unsubscribe(s)
                    {
                        self.index.remove(s, key);
                        if self.index.subscribers(s).is_empty() {
                            self.cache.clear(s);
                        }
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
            frame::write_frame(&mut c.out, frame::OpCode::Text, &self.scratch);
        }
    }

    /// Current gauges (O(clients); called once per stats period, not per tick).
    pub fn gauges(&self) -> CoreGauges {
        let mut g = CoreGauges { clients: self.clients.len(), ..CoreGauges::default() };
        for (_, c) in &self.clients {
            g.subscriptions += c.subs.len();
            g.pending_updates += c.subs.pending();
            g.buffered_bytes += c.out.len();
            g.blocked_clients += usize::from(c.blocked);
        }
        g
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
