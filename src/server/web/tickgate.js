// tickgate.js: a small, dependency-free ES module client for the tickgate market-data gateway
// (protocol v1, docs/PROTOCOL.md). Served by the gateway at GET /tickgate.js, used by its
// dashboard (GET /), documented in docs/CLIENT.md. Copy it into your own dashboards.
//
// It connects, reconnects with exponential backoff and jitter, re-subscribes after a reconnect,
// matches replies to requests by id, pings to measure the round trip, decodes both update
// formats into one normalized update object and tracks seq per symbol. Browsers and Node >= 22
// (global WebSocket); elsewhere pass a WebSocket class in the options.

/** Bytes per record in a binary frame. */
export const RECORD_SIZE = 88;
/** Record type of a Level-1 update; records of other types are skipped. */
export const RECORD_L1 = 1;
/** Prices, sizes and volume are fixed point with 8 decimals on the wire. */
const SCALE = 100_000_000n;

/** What each WebSocket close code means for a tickgate connection. */
export const CLOSE_CODES = Object.freeze({
  1000: 'normal closure',
  1001: 'server shutting down',
  1002: 'protocol error (a malformed frame from the client)',
  1003: 'the client sent a binary message (the protocol is text only)',
  1005: 'closed without a status code',
  1006: 'connection lost or refused (no close frame: gateway down, network, or the handshake refused with HTTP 401/403/429/503)',
  1007: 'the client sent invalid UTF-8',
  1008: 'policy violation: slow consumer, idle timeout, no subscription or token expired (see the reason)',
  1009: 'a client message over max_message_bytes',
  1011: 'server error',
  4000: 'no pong within the ping timeout (closed by tickgate.js)',
});

/** The meaning of a close code: the table above, else a generic description. */
export function closeMeaning(code) {
  return CLOSE_CODES[code] ?? (code >= 4000 ? 'application close' : `close code ${code}`);
}

/**
 * An error reply, an unexpected close, a timeout or a malformed frame.
 * `kind` is 'reply' (an error reply: `code` is e.g. 'unknown_symbol', `symbols` lists the
 * names it concerns), 'close' (`code` is the numeric close code, `reason` the server's text),
 * 'timeout' (no reply in time) or 'protocol' (the server sent something this client cannot read).
 */
export class TickgateError extends Error {
  constructor(kind, code, message, { id, symbols, reason } = {}) {
    super(message);
    this.name = 'TickgateError';
    Object.assign(this, { kind, code, id, symbols, reason });
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers: decoding, formatting, backoff, percentiles. No I/O; unit-tested in Node.

/** The exact decimal text of a fixed-point value (a BigInt scaled by 1e8): 18912000000n -> "189.12". */
export function formatFixed(scaled) {
  const neg = scaled < 0n;
  const abs = neg ? -scaled : scaled;
  let text = (abs / SCALE).toString();
  const frac = abs % SCALE;
  if (frac !== 0n) text += '.' + frac.toString().padStart(8, '0').replace(/0+$/, '');
  return neg ? '-' + text : text;
}

/**
 * Decodes one binary frame (an ArrayBuffer or a byte view) into its L1 records:
 * `{symbol_id, snapshot, seq, bid, bid_size, ask, ask_size, last, last_size, volume, ts_event,
 * ts_gateway}` with `seq` and the timestamps as BigInt and the rest as exact decimal strings.
 * Records of unknown type are skipped. Throws a TickgateError if the length is not a multiple
 * of 88.
 */
export function decodeFrame(frame) {
  const view = ArrayBuffer.isView(frame)
    ? new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
    : new DataView(frame);
  if (view.byteLength % RECORD_SIZE !== 0) {
    throw new TickgateError('protocol', 'bad_frame',
      `binary frame of ${view.byteLength} bytes is not a multiple of ${RECORD_SIZE}`);
  }
  const records = [];
  for (let o = 0; o < view.byteLength; o += RECORD_SIZE) {
    if (view.getUint8(o) !== RECORD_L1) continue; // a later version's record: skip it
    const fixed = (at) => formatFixed(view.getBigInt64(o + at, true));
    records.push({
      symbol_id: view.getUint32(o + 4, true),
      snapshot: (view.getUint8(o + 1) & 1) === 1, // other flag bits are reserved
      seq: view.getBigUint64(o + 8, true),
      bid: fixed(16), bid_size: fixed(24), ask: fixed(32), ask_size: fixed(40),
      last: fixed(48), last_size: fixed(56), volume: fixed(64),
      ts_event: view.getBigUint64(o + 72, true),
      ts_gateway: view.getBigUint64(o + 80, true),
    });
  }
  return records;
}

// JSON updates. JSON.parse would round ts_event and ts_gateway (beyond 2^53) and may not
// reproduce a 19-digit decimal, so the numbers are read from the raw text, which the gateway
// prints as plain decimals (never exponents). The fast path is one regex over the layout the
// gateway prints (PROTOCOL.md: "Fields always appear, in this order"); anything else (an escape
// in the symbol, a later version's extra field) takes the general path: JSON.parse for the
// structure, then the exact text of each numeric field.
const DECIMAL_FIELDS = ['bid', 'bid_size', 'ask', 'ask_size', 'last', 'last_size', 'volume'];
const DEC = '(-?\\d+(?:\\.\\d+)?)';
const UPDATE_LAYOUT = new RegExp(
  '^\\{"type":"update","symbol":"([^"\\\\]*)","seq":(\\d+)' +
  DECIMAL_FIELDS.map((k) => `,"${k}":${DEC}`).join('') +
  ',"ts_event":(\\d+),"ts_gateway":(\\d+),"snapshot":(true|false)\\}$',
);
const EXACT_FIELD = new RegExp(`"(seq|${DECIMAL_FIELDS.join('|')}|ts_event|ts_gateway)":${DEC}`, 'g');
const BIGINT_FIELDS = new Set(['seq', 'ts_event', 'ts_gateway']);

/**
 * Parses the text of a JSON update into the same shape as a binary record, plus `symbol`
 * (`symbol_id` is undefined). Returns null for a message that is not an update; throws on
 * invalid JSON.
 */
export function parseJsonUpdate(text) {
  const m = UPDATE_LAYOUT.exec(text);
  if (m) {
    const u = { symbol: m[1], symbol_id: undefined, snapshot: m[12] === 'true', seq: BigInt(m[2]) };
    DECIMAL_FIELDS.forEach((k, i) => { u[k] = m[3 + i]; });
    u.ts_event = BigInt(m[10]);
    u.ts_gateway = BigInt(m[11]);
    return u;
  }
  const parsed = JSON.parse(text);
  if (parsed?.type !== 'update') return null;
  const u = { symbol: parsed.symbol, symbol_id: undefined, snapshot: parsed.snapshot === true, seq: 0n };
  for (const k of DECIMAL_FIELDS) u[k] = '0';
  u.ts_event = 0n;
  u.ts_gateway = 0n;
  for (const [, key, digits] of text.matchAll(EXACT_FIELD)) {
    u[key] = BIGINT_FIELDS.has(key) ? BigInt(digits) : digits;
  }
  return u;
}

/** Adds `num`: the decimal fields as Numbers, for charts and arithmetic (not for display). */
function withNumbers(u) {
  u.num = {
    bid: Number(u.bid), bid_size: Number(u.bid_size), ask: Number(u.ask),
    ask_size: Number(u.ask_size), last: Number(u.last), last_size: Number(u.last_size),
    volume: Number(u.volume),
  };
  return u;
}

/**
 * A decimal string for display, exactly: pads the fraction to `minFraction` digits and groups
 * the integer part with `group` ('' for none). formatDecimal('1234.5') -> '1,234.50'.
 */
export function formatDecimal(text, { minFraction = 2, group = ',' } = {}) {
  const neg = text.startsWith('-');
  let [int, frac = ''] = (neg ? text.slice(1) : text).split('.');
  if (group) int = int.replace(/\B(?=(\d{3})+(?!\d))/g, group);
  frac = frac.padEnd(minFraction, '0');
  return (neg ? '-' : '') + int + (frac ? '.' + frac : '');
}

/**
 * Delay in ms before reconnect attempt `attempt` (0 = the first retry): exponential growth
 * `base * 2^attempt` capped at `max`, with 'full' jitter (uniform in [0, cap)), 'equal' jitter
 * (uniform in [cap/2, cap)) or 'none'. Deterministic given `random` (returning [0, 1)).
 */
export function backoffDelay(attempt, { base = 250, max = 10_000, jitter = 'full', random = Math.random } = {}) {
  const cap = Math.min(max, base * 2 ** Math.max(0, attempt));
  if (jitter === 'none') return cap;
  if (jitter === 'equal') return cap / 2 + random() * (cap / 2);
  return random() * cap;
}

/** The p-th percentile (0..100, nearest rank) of `values`; NaN when there are none. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Samples over a sliding window: the newest `capacity` samples no older than `span` ms.
 * add() is O(1) (a ring buffer), so it can take every update; percentiles() sorts on demand.
 */
export class SlidingWindow {
  constructor({ span = 10_000, capacity = 4096 } = {}) {
    this.span = span;
    this.values = new Float64Array(capacity);
    this.times = new Float64Array(capacity);
    this.next = 0;
    this.size = 0;
  }
  add(value, now) {
    this.values[this.next] = value;
    this.times[this.next] = now;
    this.next = (this.next + 1) % this.values.length;
    this.size = Math.min(this.size + 1, this.values.length);
  }
  clear() { this.size = 0; }
  /** The percentiles `ps` of the samples taken since `now - span`, e.g. [50, 99] -> [p50, p99]. */
  percentiles(now, ps) {
    const live = [];
    for (let i = 0; i < this.size; i++) if (this.times[i] >= now - this.span) live.push(this.values[i]);
    return ps.map((p) => percentile(live, p));
  }
}

// ---------------------------------------------------------------------------------------------
// The client.

/** Opens a client: `connect('/ws', { format: 'binary' })`. See TickgateClient. */
export function connect(url, options) {
  return new TickgateClient(url, options);
}

/**
 * A connection to a gateway that stays up: it reconnects after any close until close() is
 * called, and re-subscribes to every symbol it holds, each with its max rate.
 *
 * Events, with on(type, listener), which returns a function that removes the listener:
 * - 'update': a normalized update (see docs/CLIENT.md), either format;
 * - 'state':  {state: 'connecting'|'open'|'reconnecting'|'idle'|'closed', format, attempt,
 *              delay, code, reason, meaning}. 'idle': closed for holding no subscription; the
 *              next request reconnects.
 * - 'status': {feed: 'up'|'down'}, the gateway's feed state;
 * - 'pong':   {rtt (ms), ts (server clock, BigInt ns)};
 * - 'error':  a TickgateError: error replies, closes of an open connection, malformed frames.
 */
export class TickgateClient {
  #url;
  #opts;
  #WebSocket;
  #ws = null;
  #listeners = new Map();
  #pending = new Map(); // request id -> {resolve, reject, sent}
  #queue = []; // sends of requests waiting for the connection to open
  #nextId = 1;
  #wanted = new Map(); // symbol -> maxRate (undefined: the server default, 0: unlimited)
  #names = new Map(); // binary symbol id -> symbol, from this connection's `subscribed` replies
  #seqs = new Map(); // symbol -> last seq seen on this connection
  #attempt = 0;
  #openedAt = 0;
  #timer = null; // the reconnect timer
  #pinger = null;
  #closed = false;
  #warnedOrder = false;

  /** 'connecting', 'open', 'reconnecting', 'idle' or 'closed'. */
  state = 'connecting';
  /** The feed state: 'up' (assumed on connect), 'down' after a status message, 'unknown' while away. */
  feed = 'unknown';
  /** Last measured round trip of an app-level ping, ms. */
  rtt = NaN;
  /** Running counters: messages, updates, conflated (events skipped by conflation), connects. */
  stats = { messages: 0, updates: 0, conflated: 0, connects: 0 };

  /**
   * @param {string|URL} url  ws(s):// or http(s):// URL of /ws; relative URLs resolve against
   *   the page's location in a browser.
   * @param {object} [options]
   * @param {'json'|'binary'} [options.format='json']
   * @param {number} [options.pingInterval=10000]  ms between app-level pings; 0 = none.
   * @param {number} [options.pingTimeout=10000]  drop the connection (4000) without a pong by then.
   * @param {number} [options.requestTimeout=10000]  ms before a request's promise rejects.
   * @param {object} [options.backoff]  options of backoffDelay(): {base, max, jitter, random}.
   * @param {string} [options.token]  a JWT for gateways with token auth, offered as the
   *   subprotocol `tickgate.token.<JWT>` (beside the format's); auth() replaces it.
   * @param {Function} [options.WebSocket]  WebSocket class (default: the global one).
   */
  constructor(url, options = {}) {
    const base = globalThis.location?.href;
    this.#url = new URL(url, base);
    this.#url.protocol = this.#url.protocol.replace(/^http/, 'ws');
    this.#opts = { format: 'json', pingInterval: 10_000, pingTimeout: 10_000, requestTimeout: 10_000, ...options };
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.#WebSocket) throw new Error('no WebSocket: use Node >= 22 or pass options.WebSocket');
    this.#open();
  }

  /** The wire format of updates: 'json' or 'binary'. */
  get format() { return this.#opts.format; }
  /** The symbols held (or being re-subscribed), with their max rates. */
  get subscriptions() { return new Map(this.#wanted); }

  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type).delete(listener);
  }

  /**
   * Subscribes to `symbols`; resolves with the `subscribed` reply's map {symbol: id}. Symbols
   * missing from it were unknown (an 'error' event with code unknown_symbol lists them).
   * `maxRate`: updates/s per symbol; 0 = unlimited; omitted = the server's default. A held
   * symbol keeps its subscription and only changes its rate.
   */
  async subscribe(symbols, { maxRate } = {}) {
    const list = [...new Set(symbols)];
    if (list.length === 0) return {};
    const added = list.filter((s) => !this.#wanted.has(s));
    for (const s of list) this.#wanted.set(s, maxRate);
    try {
      const reply = await this.#request(subscribeBody(list, maxRate));
      return reply.symbols;
    } catch (e) {
      // Not executed (too_many_symbols, rate_limited, ...): forget what this call added. After
      // a close the symbols stay: the reconnect subscribes to them.
      if (e.kind === 'reply') for (const s of added) this.#wanted.delete(s);
      throw e;
    }
  }

  /** Changes the max rate of symbols already held (0 = unlimited). */
  setMaxRate(symbols, maxRate) {
    return this.subscribe(symbols.filter((s) => this.#wanted.has(s)), { maxRate });
  }

  /** Unsubscribes; no update of these symbols is delivered after this call. */
  async unsubscribe(symbols) {
    for (const s of symbols) {
      this.#wanted.delete(s);
      this.#seqs.delete(s);
    }
    return (await this.#request({ op: 'unsubscribe', symbols })).symbols;
  }

  /** Every symbol of the gateway's universe, in id order. */
  async list() {
    return (await this.#request({ op: 'list' })).symbols;
  }

  /** An app-level ping; resolves with {rtt (ms), ts (the server's clock, BigInt ns)}. */
  async ping() {
    const t0 = performance.now();
    const reply = await this.#request({ op: 'ping' }, this.#opts.pingTimeout);
    this.rtt = performance.now() - t0;
    const pong = { rtt: this.rtt, ts: reply.ts };
    this.#emit('pong', pong);
    return pong;
  }

  /**
   * Token auth: hands the connection a fresh token before the old one expires (else the
   * gateway closes with 1008 `token expired`); resolves with the `authenticated` reply
   * ({sub, exp}). Later connections offer this token.
   */
  async auth(token) {
    this.#opts.token = token;
    return this.#request({ op: 'auth', token });
  }

  /** Reconnects with the other format ('json' or 'binary'); subscriptions carry over. */
  setFormat(format) {
    if (format !== 'json' && format !== 'binary') throw new Error(`unknown format ${format}`);
    if (format === this.#opts.format) return;
    this.#opts.format = format;
    this.#drop(1000, 'format change');
    this.#attempt = 0;
    this.#open();
  }

  /** Closes for good: no reconnect; pending requests reject. */
  close() {
    this.#closed = true;
    this.#drop(1000, 'client closed');
    this.#queue = [];
    this.#failPending(1000, 'client closed', true);
    this.#setState('closed', {});
  }

  // --- connection lifecycle

  #open() {
    clearTimeout(this.#timer);
    const url = new URL(this.#url);
    url.searchParams.set('format', this.#opts.format);
    this.#setState('connecting', { attempt: this.#attempt });
    // A token goes in a subprotocol entry, beside the format's (PROTOCOL.md, "Token auth").
    const { token, format } = this.#opts;
    let ws;
    try {
      ws = token
        ? new this.#WebSocket(url.href, [`tickgate.v1.${format}`, `tickgate.token.${token}`])
        : new this.#WebSocket(url.href);
    } catch (e) {
      this.#error(new TickgateError('protocol', 'bad_url', `cannot open ${url}: ${e.message}`));
      return this.#retry(1006, '');
    }
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this.#onOpen();
    ws.onmessage = (e) => this.#onMessage(e.data);
    ws.onclose = (e) => this.#onClose(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event always follows, with the code
    this.#ws = ws;
  }

  #onOpen() {
    this.#openedAt = performance.now();
    this.stats.connects++;
    // A new connection may be a new gateway process: symbol ids and seqs start afresh.
    this.#names.clear();
    this.#seqs.clear();
    this.#warnedOrder = false;
    this.feed = 'up'; // no status message on connect while the feed is up (PROTOCOL.md)
    this.#setState('open', {});
    // Re-subscribe: one request per distinct max rate.
    const byRate = new Map();
    for (const [s, rate] of this.#wanted) {
      if (!byRate.has(rate)) byRate.set(rate, []);
      byRate.get(rate).push(s);
    }
    for (const [rate, symbols] of byRate) {
      this.#request(subscribeBody(symbols, rate)).catch(() => {}); // errors reach 'error' listeners
    }
    for (const send of this.#queue.splice(0)) send();
    if (this.#opts.pingInterval > 0) {
      this.#pinger = setInterval(() => {
        this.ping().catch((e) => {
          if (e.kind === 'timeout') this.#drop(4000, 'ping timeout', true);
        });
      }, this.#opts.pingInterval);
    }
  }

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return; // an abandoned socket
    this.#ws = null;
    clearInterval(this.#pinger);
    const wasOpen = this.state === 'open';
    this.feed = 'unknown';
    this.#failPending(code, reason);
    if (this.#closed) return;
    if (wasOpen) {
      const why = reason && reason !== closeMeaning(code) ? ` (${reason})` : '';
      this.#error(new TickgateError('close', code, `connection closed: ${code} ${closeMeaning(code)}${why}`, { reason }));
    }
    if (code === 1008 && reason === 'no subscription' && this.#wanted.size === 0) {
      // Nothing to hold: reconnecting now would only be closed again. The next request does.
      this.#attempt = 0;
      return this.#setState('idle', { code, reason, meaning: closeMeaning(code) });
    }
    this.#retry(code, reason);
  }

  /** Schedules the next connection attempt with backoff. */
  #retry(code, reason) {
    // A connection that stayed up a while resets the backoff; one that failed at once does not,
    // so a gateway that accepts and immediately closes is not hammered.
    if (this.#openedAt && performance.now() - this.#openedAt > 5_000) this.#attempt = 0;
    this.#openedAt = 0;
    const delay = backoffDelay(this.#attempt, this.#opts.backoff);
    this.#setState('reconnecting', { attempt: this.#attempt + 1, delay, code, reason, meaning: closeMeaning(code) });
    this.#attempt++;
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  /** Abandons the current socket now (no waiting for its close handshake). */
  #drop(code, reason, reconnect = false) {
    clearTimeout(this.#timer);
    clearInterval(this.#pinger);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
    this.#failPending(code, reason);
    if (reconnect) {
      this.#error(new TickgateError('close', code, `connection dropped: ${closeMeaning(code)}`, { reason }));
      this.#retry(code, reason);
    }
  }

  /** Rejects the requests sent on the closed connection (all of them when `all`). */
  #failPending(code, reason, all = false) {
    for (const [id, p] of this.#pending) {
      if (!p.sent && !all) continue; // still queued: it goes out on the next connection
      this.#pending.delete(id);
      p.reject(new TickgateError('close', code, `connection closed before the reply to request ${id}`, { id, reason }));
    }
  }

  // --- requests and replies

  /** Sends `body` with a fresh id once the connection is open; resolves with the reply. */
  #request(body, timeout = this.#opts.requestTimeout) {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TickgateError('timeout', 'timeout', `no reply to ${body.op} (id ${id}) within ${timeout} ms`, { id }));
      }, timeout);
      const done = (f) => (v) => { clearTimeout(timer); f(v); };
      const entry = { resolve: done(resolve), reject: done(reject), sent: false };
      this.#pending.set(id, entry);
      const send = () => {
        if (!this.#pending.has(id)) return; // timed out while queued
        entry.sent = true;
        this.#ws.send(JSON.stringify({ ...body, id }));
      };
      if (this.state === 'open') send();
      else this.#queue.push(send);
      if (this.state === 'idle') this.#open();
    });
  }

  #onMessage(data) {
    this.stats.messages++;
    if (typeof data !== 'string') return this.#onBinary(data);
    let update = null;
    let msg;
    try {
      if (data.startsWith('{"type":"update"')) update = parseJsonUpdate(data);
      else msg = JSON.parse(data);
    } catch {
      return this.#error(new TickgateError('protocol', 'bad_json', `unreadable text frame: ${data.slice(0, 80)}`));
    }
    if (update) return this.#deliver(update);
    if (!msg) return;
    switch (msg.type) {
      case 'status':
        this.feed = msg.feed;
        return this.#emit('status', { feed: msg.feed });
      case 'subscribed':
        for (const [name, id] of Object.entries(msg.symbols)) this.#names.set(id, name);
        break;
      case 'pong':
        msg.ts = BigInt(/"ts":(\d+)/.exec(data)?.[1] ?? 0); // exact: beyond 2^53
        break;
      case 'error': {
        const err = new TickgateError('reply', msg.code, `${msg.code}: ${msg.message}`, { id: msg.id, symbols: msg.symbols });
        // Refused symbols are not held (and not re-subscribed after a reconnect).
        if (msg.code === 'unknown_symbol' || msg.code === 'not_entitled') {
          for (const s of msg.symbols ?? []) this.#wanted.delete(s);
        }
        this.#take(msg.id)?.reject(err);
        return this.#error(err);
      }
      default:
        // Reply types of later versions are ignored.
    }
    this.#take(msg.id)?.resolve(msg);
  }

  #take(id) {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
  }

  #onBinary(buf) {
    let records;
    try {
      records = decodeFrame(buf);
    } catch (e) {
      return this.#error(e);
    }
    for (const r of records) {
      r.symbol = this.#names.get(r.symbol_id);
      if (r.symbol !== undefined) this.#deliver(r);
    }
  }

  /** Seq bookkeeping, then the 'update' event. */
  #deliver(u) {
    if (!this.#wanted.has(u.symbol)) return; // unsubscribed while it was in flight
    const prev = this.#seqs.get(u.symbol);
    if (prev !== undefined && (u.seq < prev || (u.seq === prev && !u.snapshot))) {
      // The protocol forbids this on one connection: report it once, drop the stale update.
      if (!this.#warnedOrder) this.#error(new TickgateError('protocol', 'seq_backwards', `${u.symbol}: seq ${u.seq} after ${prev}`));
      this.#warnedOrder = true;
      return;
    }
    this.#seqs.set(u.symbol, u.seq);
    // Events of this symbol the gateway conflated away since the previous update.
    u.gap = prev === undefined ? 0 : Number(u.seq - prev - 1n);
    this.stats.updates++;
    this.stats.conflated += u.gap;
    this.#emit('update', withNumbers(u));
  }

  // --- events

  #setState(state, detail) {
    this.state = state;
    this.#emit('state', { state, format: this.#opts.format, ...detail });
  }

  #error(err) {
    this.#emit('error', err);
  }

  #emit(type, value) {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(value);
      } catch (e) {
        console.error(`tickgate: a '${type}' listener threw`, e);
      }
    }
  }
}

function subscribeBody(symbols, maxRate) {
  const body = { op: 'subscribe', symbols };
  if (maxRate !== undefined) body.max_rate = maxRate ?? 0;
  return body;
}
