// tickgate.js: a small, dependency-free ES module client for the tickgate market-data gateway
// (protocol v1, docs/PROTOCOL.md). Served by the gateway at GET /tickgate.js, used by its
// dashboard (GET /), documented in docs/CLIENT.md. Copy it into your own dashboards.
//
// It connects, reconnects with exponential backoff and jitter, re-subscribes after a reconnect,
// matches replies to requests by id, pings to measure the round trip and the gateway's clock,
// decodes the three update formats (batched JSON by default, JSON, binary) into one normalized
// update object and tracks seq per symbol. Subscriptions may take trades too (never
// conflated): each trade, and each gap notice (trades the gateway dropped for this client),
// is an event of its own. They may take order books too (`depth`: the top N price levels a
// side): each book replaces the symbol's previous one (conflated, never a delta), is an event
// of its own, and the newest is kept per symbol; a stale book (the gateway's copy broke
// continuity with its feed) says so. It measures how far behind the page is and, when the
// page cannot keep up, lowers the max_rate of its subscriptions until it can (adaptive
// throttling, which paces quotes only and never drops a trade; docs/CLIENT.md). Where a
// WebSocket cannot be opened (a proxy that breaks the upgrade) but the gateway answers HTTP,
// it falls back to Server-Sent Events (GET /sse, one stream per distinct max rate, trades and
// depth) with the same events, and tries the WebSocket again now and then. Browsers and
// Node >= 22 (global WebSocket); elsewhere pass a WebSocket class (and an EventSource class)
// in the options.

/** The update formats, the default first: batched JSON, one JSON object per frame, binary. */
export const FORMATS = Object.freeze(['json-batch', 'json', 'binary']);
/**
 * The transports, the default first: 'auto' (a WebSocket, falling back to Server-Sent Events
 * when the WebSocket cannot be opened), 'websocket' (never SSE), 'sse' (never a WebSocket).
 */
export const TRANSPORTS = Object.freeze(['auto', 'websocket', 'sse']);
/** The highest max_rate the protocol accepts, updates/s per symbol. */
export const MAX_RATE = 1000;
/** Bytes per record in a binary frame. */
export const RECORD_SIZE = 88;
/** Record type of a Level-1 update. Records of types this client does not know are skipped. */
export const RECORD_L1 = 1;
/** Record type of a trade (subscriptions with `trades: true`). */
export const RECORD_TRADE = 2;
/** Record type of a gap notice: trades of a symbol the gateway dropped for this client. */
export const RECORD_GAP = 3;
/**
 * Record type of an order book (subscriptions with a `depth`): the only record longer than 88
 * bytes. Its u16 at offset 2 is its length in 88-byte units, header included; its levels
 * follow the header, 16 bytes each.
 */
export const RECORD_BOOK = 4;
/** Bytes per price level of a book record: price, then size, i64 fixed point each. */
const LEVEL_SIZE = 16;
/** A book record's flag bit: the gateway's book of the symbol is out of date. */
const BOOK_STALE = 2;
/** Prices, sizes and volume are fixed point with 8 decimals on the wire. */
const SCALE = 100_000_000n;
/** A trade record's side byte: 0 unknown (no `side`), 1 buy, 2 sell (the aggressor). */
const SIDES = [undefined, 'buy', 'sell'];

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

/**
 * What the HTTP statuses that refuse a Server-Sent Events stream mean (GET /sse answers them
 * before the stream starts). Over SSE, `state` and `'error'` events carry them as the `code`.
 */
export const HTTP_REFUSALS = Object.freeze({
  400: 'HTTP 400: a malformed query, an unknown symbol or too many symbols',
  401: 'HTTP 401: no valid token',
  403: 'HTTP 403: Origin not allowed, or symbols not entitled',
  429: 'HTTP 429: too many connections from this IP, or opened too fast',
  503: 'HTTP 503: the gateway is full or shutting down',
});

/**
 * The meaning of a close code: the tables above (a WebSocket close code; over SSE, the HTTP
 * status that refused a stream), else a generic description.
 */
export function closeMeaning(code) {
  return CLOSE_CODES[code] ?? HTTP_REFUSALS[code] ??
    (code >= 4000 ? 'application close' : code >= 400 && code < 600 ? `HTTP ${code}` : `close code ${code}`);
}

/**
 * An error reply, an unexpected close, a timeout or a malformed frame.
 * `kind` is 'reply' (an error reply: `code` is e.g. 'unknown_symbol', `symbols` lists the
 * names it concerns; over SSE, a stream refused for its symbols), 'close' (`code` is the
 * numeric close code, `reason` the server's text), 'timeout' (no reply in time), 'protocol'
 * (the server sent something this client cannot read) or 'unsupported' (`code`
 * 'websocket_only': a request that needs a WebSocket, made while on Server-Sent Events).
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

// What a frame holds, in order: the events of each kind, as the decoders report them
// internally (parallel arrays `items` and `kinds`; no wrapper object per event).
const UPDATE = 0;
const TRADE = 1;
const GAP = 2;
const BOOK = 3;
const KIND_NAMES = ['update', 'trade', 'gap', 'book'];

/** Decoded events as exported, in order: [{type: 'update'|'trade'|'gap'|'book', value}]. */
const named = ({ items, kinds }) => items.map((value, i) => ({ type: KIND_NAMES[kinds[i]], value }));

/** The exact decimal text of a fixed-point value (a BigInt scaled by 1e8): 18912000000n -> "189.12". */
export function formatFixed(scaled) {
  const neg = scaled < 0n;
  const abs = neg ? -scaled : scaled;
  let text = (abs / SCALE).toString();
  const frac = abs % SCALE;
  if (frac !== 0n) text += '.' + frac.toString().padStart(8, '0').replace(/0+$/, '');
  return neg ? '-' + text : text;
}

const FIXED_TEXT = /^(-?)(\d+)(?:\.(\d{1,8}))?$/;

/**
 * The fixed-point value (a BigInt scaled by 1e8) of an exact decimal string, the inverse of
 * formatFixed: parseFixed('189.12') -> 18912000000n. For exact arithmetic on prices (a
 * spread). Throws a RangeError for anything but a plain decimal with at most 8 decimals.
 */
export function parseFixed(text) {
  const m = FIXED_TEXT.exec(text);
  if (!m) throw new RangeError(`not a decimal with at most 8 decimals: ${text}`);
  const scaled = BigInt(m[2]) * SCALE + BigInt((m[3] ?? '').padEnd(8, '0'));
  return m[1] ? -scaled : scaled;
}

/**
 * A trade as every decoder gives it: `side` ('buy'/'sell', the aggressor) and `tradeId` only
 * when the source has them; `seq`, `tradeId` and the timestamps BigInt, `price` and `size`
 * exact decimal strings.
 */
function makeTrade(symbol, seq, price, size, side, tradeId, tsEvent, tsGateway) {
  const t = { symbol, seq, price, size };
  if (side) t.side = side;
  if (tradeId) t.tradeId = tradeId; // 0n: none
  t.tsEvent = tsEvent;
  t.tsGateway = tsGateway;
  return t;
}

/**
 * An order book as every decoder gives it: `bids` best (highest) first and `asks` best
 * (lowest) first, each level `{price, size}` (exact decimal strings), either side possibly
 * shorter than `depth` (the depth asked for) or empty; `stale`: the gateway's book of the
 * symbol is out of date (these are its last good levels); `seq` (the book's own, rising) and
 * the timestamps BigInt.
 */
function makeBook(symbol, seq, depth, bids, asks, stale, tsEvent, tsGateway) {
  return { symbol, seq, depth, bids, asks, stale, tsEvent, tsGateway };
}

const badFrame = (message) => new TickgateError('protocol', 'bad_frame', message);

/** The DataView of a binary frame; throws a TickgateError if its length is not a multiple of 88. */
function frameView(frame) {
  const view = ArrayBuffer.isView(frame)
    ? new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
    : new DataView(frame);
  if (view.byteLength % RECORD_SIZE !== 0) {
    throw badFrame(`binary frame of ${view.byteLength} bytes is not a multiple of ${RECORD_SIZE}`);
  }
  return view;
}

/**
 * The length in bytes of the book record at `o`, checked: at least one unit, within the
 * frame, and long enough for its levels. Throws a TickgateError (bad_frame) otherwise.
 */
function bookRecordSize(view, o) {
  const units = view.getUint16(o + 2, true);
  const size = units * RECORD_SIZE;
  if (units === 0) throw badFrame(`book record at byte ${o} has a length of 0 units`);
  if (o + size > view.byteLength) {
    throw badFrame(`book record at byte ${o} of ${units} units (${size} bytes) runs past the frame's end (${view.byteLength} bytes)`);
  }
  const bids = view.getUint16(o + 16, true);
  const asks = view.getUint16(o + 18, true);
  if (RECORD_SIZE + (bids + asks) * LEVEL_SIZE > size) {
    throw badFrame(`book record at byte ${o}: ${bids} bids and ${asks} asks do not fit in ${units} units (${size} bytes)`);
  }
  return size;
}

/** `n` levels of a book record from byte `at`: [{price, size}]. */
function readLevels(view, at, n) {
  const levels = new Array(n);
  for (let k = 0; k < n; k++, at += LEVEL_SIZE) {
    levels[k] = { price: formatFixed(view.getBigInt64(at, true)), size: formatFixed(view.getBigInt64(at + 8, true)) };
  }
  return levels;
}

/** The book of the record at `o` (its size checked by bookRecordSize), with `symbolId`. */
function readBook(view, o) {
  const bids = view.getUint16(o + 16, true);
  const asks = view.getUint16(o + 18, true);
  const b = makeBook(undefined, view.getBigUint64(o + 8, true), view.getUint16(o + 20, true),
    readLevels(view, o + RECORD_SIZE, bids), readLevels(view, o + RECORD_SIZE + bids * LEVEL_SIZE, asks),
    (view.getUint8(o + 1) & BOOK_STALE) !== 0, // other flag bits are reserved
    view.getBigUint64(o + 72, true), view.getBigUint64(o + 80, true));
  b.symbolId = view.getUint32(o + 4, true);
  return b;
}

/**
 * Every record of a frame this client knows (L1, trade, gap, book), in order: {items, kinds}.
 * Records are 88 bytes, except a book record: `units` × 88 (walked past even when only L1
 * records are wanted, and checked: a bad length throws).
 */
function decodeRecords(frame, l1Only = false) {
  const view = frameView(frame);
  const items = [];
  const kinds = [];
  for (let o = 0; o < view.byteLength;) {
    const type = view.getUint8(o);
    const fixed = (at) => formatFixed(view.getBigInt64(o + at, true));
    let size = RECORD_SIZE;
    if (type === RECORD_L1) {
      items.push({
        symbol_id: view.getUint32(o + 4, true),
        snapshot: (view.getUint8(o + 1) & 1) === 1, // other flag bits are reserved
        seq: view.getBigUint64(o + 8, true),
        bid: fixed(16), bid_size: fixed(24), ask: fixed(32), ask_size: fixed(40),
        last: fixed(48), last_size: fixed(56), volume: fixed(64),
        ts_event: view.getBigUint64(o + 72, true),
        ts_gateway: view.getBigUint64(o + 80, true),
      });
      kinds.push(UPDATE);
    } else if (type === RECORD_BOOK) {
      size = bookRecordSize(view, o);
      if (!l1Only) {
        items.push(readBook(view, o));
        kinds.push(BOOK);
      }
    } else if (l1Only) {
      // trades, gaps, a later version's records: 88 bytes, skipped
    } else if (type === RECORD_TRADE) {
      const t = makeTrade(undefined, view.getBigUint64(o + 8, true), fixed(16), fixed(24),
        SIDES[view.getUint8(o + 1)], view.getBigUint64(o + 32, true),
        view.getBigUint64(o + 72, true), view.getBigUint64(o + 80, true));
      t.symbolId = view.getUint32(o + 4, true);
      items.push(t);
      kinds.push(TRADE);
    } else if (type === RECORD_GAP) {
      items.push({ symbol: undefined, symbolId: view.getUint32(o + 4, true), missed: Number(view.getBigUint64(o + 8, true)) });
      kinds.push(GAP);
    } // else a later version's record: skip it
    o += size;
  }
  return { items, kinds };
}

/**
 * Decodes one binary frame (an ArrayBuffer or a byte view) into its L1 records:
 * `{symbol_id, snapshot, seq, bid, bid_size, ask, ask_size, last, last_size, volume, ts_event,
 * ts_gateway}` with `seq` and the timestamps as BigInt and the rest as exact decimal strings.
 * Records of other types (trades, gaps, books, a later version's) are skipped:
 * decodeFrameEvents gives them too. Throws a TickgateError if the length is not a multiple of
 * 88, or a book record's length (`units`) is 0, runs past the frame's end or is too short
 * for its levels.
 */
export function decodeFrame(frame) {
  return decodeRecords(frame, true).items;
}

/**
 * Decodes one binary frame into all of its events, in order: `[{type, value}]` with `type`
 * 'update' (an L1 record as decodeFrame gives it), 'trade' (`{symbol: undefined, seq, price,
 * size, side?, tradeId?, tsEvent, tsGateway, symbolId}`), 'gap' (`{symbol: undefined,
 * symbolId, missed}`) or 'book' (`{symbol: undefined, seq, depth, bids: [{price, size}],
 * asks, stale, tsEvent, tsGateway, symbolId}`). Records of unknown type are skipped. Throws
 * like decodeFrame.
 */
export function decodeFrameEvents(frame) {
  return named(decodeRecords(frame));
}

// JSON updates. JSON.parse would round ts_event and ts_gateway (beyond 2^53) and may not
// reproduce a 19-digit decimal, so the numbers are read from the raw text, which the gateway
// prints as plain decimals (never exponents). The fast path is one regex over the layout the
// gateway prints (PROTOCOL.md: "Fields always appear, in this order"); anything else (an escape
// in the symbol, a later version's extra field) takes the general path: JSON.parse for the
// structure, then the exact text of each numeric field. Trades, gaps and books are read the
// same way.
const DECIMAL_FIELDS = ['bid', 'bid_size', 'ask', 'ask_size', 'last', 'last_size', 'volume'];
const DEC = '(-?\\d+(?:\\.\\d+)?)';
const UPDATE_SOURCE =
  '\\{"type":"update","symbol":"([^"\\\\]*)","seq":(\\d+)' +
  DECIMAL_FIELDS.map((k) => `,"${k}":${DEC}`).join('') +
  ',"ts_event":(\\d+),"ts_gateway":(\\d+),"snapshot":(true|false)\\}';
const UPDATE_LAYOUT = new RegExp(`^${UPDATE_SOURCE}$`);
// The same layout matched at a given position of a batch (sticky), element after element.
const UPDATE_ITEM = new RegExp(UPDATE_SOURCE, 'y');
const EXACT_FIELD = new RegExp(`"(seq|${DECIMAL_FIELDS.join('|')}|ts_event|ts_gateway)":${DEC}`, 'g');
const BIGINT_FIELDS = new Set(['seq', 'ts_event', 'ts_gateway']);
// {"type":"trade","symbol":"AAPL","seq":43,"price":189.13,"size":100,"side":"buy",
//  "trade_id":9071,"ts_event":...,"ts_gateway":...}: side and trade_id only when known.
const TRADE_SOURCE =
  `\\{"type":"trade","symbol":"([^"\\\\]*)","seq":(\\d+),"price":${DEC},"size":${DEC}` +
  '(?:,"side":"([^"\\\\]*)")?(?:,"trade_id":(\\d+))?,"ts_event":(\\d+),"ts_gateway":(\\d+)\\}';
const TRADE_LAYOUT = new RegExp(`^${TRADE_SOURCE}$`);
const TRADE_ITEM = new RegExp(TRADE_SOURCE, 'y');
const TRADE_EXACT_FIELD = new RegExp(`"(seq|price|size|trade_id|ts_event|ts_gateway)":${DEC}`, 'g');
const GAP_SOURCE = '\\{"type":"gap","symbol":"([^"\\\\]*)","missed":(\\d+)\\}';
const GAP_LAYOUT = new RegExp(`^${GAP_SOURCE}$`);
const GAP_ITEM = new RegExp(GAP_SOURCE, 'y');
// {"type":"book","symbol":"BTCUSDT","seq":17,"depth":10,"bids":[[61837.63,3.78826],...],
//  "asks":[[61837.64,1.2]],"stale":false,"ts_event":...,"ts_gateway":...}: levels are
// [price,size] pairs, either list possibly empty.
const NUM = '-?\\d+(?:\\.\\d+)?'; // DEC without its capture
const LEVELS = `((?:\\[${NUM},${NUM}\\](?:,\\[${NUM},${NUM}\\])*)?)`;
const BOOK_SOURCE =
  `\\{"type":"book","symbol":"([^"\\\\]*)","seq":(\\d+),"depth":(\\d+),"bids":\\[${LEVELS}\\],"asks":\\[${LEVELS}\\],` +
  '"stale":(true|false),"ts_event":(\\d+),"ts_gateway":(\\d+)\\}';
const BOOK_LAYOUT = new RegExp(`^${BOOK_SOURCE}$`);
const BOOK_ITEM = new RegExp(BOOK_SOURCE, 'y');
// One level of a list BOOK_SOURCE matched (no blanks); a level and a whole list of any
// layout (blanks allowed), for the general path.
const LEVEL_PAIR = new RegExp(`\\[(${NUM}),(${NUM})\\]`, 'g');
const LEVEL_ANY = new RegExp(`\\[\\s*(${NUM})\\s*,\\s*(${NUM})\\s*\\]`, 'g');
const LEVEL_BARE = `\\[\\s*${NUM}\\s*,\\s*${NUM}\\s*\\]`;
const LEVEL_LIST = new RegExp(`^\\[\\s*(?:${LEVEL_BARE}(?:\\s*,\\s*${LEVEL_BARE})*)?\\s*\\]$`);

/** The update of a match of UPDATE_SOURCE. */
function fromMatch(m) {
  const u = { symbol: m[1], symbol_id: undefined, snapshot: m[12] === 'true', seq: BigInt(m[2]) };
  DECIMAL_FIELDS.forEach((k, i) => { u[k] = m[3 + i]; });
  u.ts_event = BigInt(m[10]);
  u.ts_gateway = BigInt(m[11]);
  return u;
}

/** The trade of a match of TRADE_SOURCE. */
function tradeFromMatch(m) {
  return makeTrade(m[1], BigInt(m[2]), m[3], m[4], m[5], m[6] === undefined ? 0n : BigInt(m[6]), BigInt(m[7]), BigInt(m[8]));
}

/** The levels of a list BOOK_SOURCE matched: [{price, size}]. */
function levelsOf(text) {
  const levels = [];
  if (text === '') return levels;
  for (const [, price, size] of text.matchAll(LEVEL_PAIR)) levels.push({ price, size });
  return levels;
}

/** The book of a match of BOOK_SOURCE. */
function bookFromMatch(m) {
  return makeBook(m[1], BigInt(m[2]), Number(m[3]), levelsOf(m[4]), levelsOf(m[5]), m[6] === 'true', BigInt(m[7]), BigInt(m[8]));
}

/** The gap of a match of GAP_SOURCE. */
function gapFromMatch(m) {
  return { symbol: m[1], missed: Number(m[2]) };
}

/** An update from its parsed JSON (for the structure) and its text (for exact numbers). */
function updateFrom(parsed, text) {
  const u = { symbol: parsed.symbol, symbol_id: undefined, snapshot: parsed.snapshot === true, seq: 0n };
  for (const k of DECIMAL_FIELDS) u[k] = '0';
  u.ts_event = 0n;
  u.ts_gateway = 0n;
  for (const [, key, digits] of text.matchAll(EXACT_FIELD)) {
    u[key] = BIGINT_FIELDS.has(key) ? BigInt(digits) : digits;
  }
  return u;
}

/** A trade from its parsed JSON and its text, as updateFrom. */
function tradeFrom(parsed, text) {
  const f = { seq: '0', price: '0', size: '0', trade_id: '0', ts_event: '0', ts_gateway: '0' };
  for (const [, key, digits] of text.matchAll(TRADE_EXACT_FIELD)) f[key] = digits;
  const side = typeof parsed.side === 'string' ? parsed.side : undefined;
  return makeTrade(parsed.symbol, BigInt(f.seq), f.price, f.size, side, BigInt(f.trade_id), BigInt(f.ts_event), BigInt(f.ts_gateway));
}

/** A gap from its parsed JSON. */
function gapFrom(parsed) {
  return { symbol: parsed.symbol, missed: Number(parsed.missed ?? 0) };
}

/**
 * The text of each top-level field of a JSON object, by name, exactly as it is written (text
 * that JSON.parse accepted: only the nesting and the strings need tracking).
 */
function rawFields(text) {
  const fields = new Map();
  let depth = 0;
  let key = null; // the field being read, once its name has been read
  let from = -1; // where its name, then its value, starts
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // a string: skip it, reading it if it is a field's name
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (depth === 1 && key === null) key = JSON.parse(text.slice(start, i + 1));
    } else if (c === 0x3a && depth === 1) { // ':' after a name: its value starts
      from = i + 1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
    } else if ((c === 0x7d || c === 0x5d) ? --depth === 0 : c === 0x2c && depth === 1) {
      // the end of a field: ',' between fields, or the object's '}'
      if (key !== null) fields.set(key, text.slice(from, i).trim());
      key = null;
    }
  }
  return fields;
}

/**
 * The levels of a `bids` or `asks` list's text, exactly; throws a SyntaxError if it is not a
 * list of [price,size] pairs of plain decimals.
 */
function levelsFrom(text, name) {
  if (text === undefined || !LEVEL_LIST.test(text)) throw new SyntaxError(`book: ${name} is not a list of [price,size]: ${text}`);
  const levels = [];
  for (const [, price, size] of text.matchAll(LEVEL_ANY)) levels.push({ price, size });
  return levels;
}

/**
 * A book from its parsed JSON (for the structure) and its text (for exact numbers). Stricter
 * than the other general paths: a field missing or of the wrong kind is a SyntaxError, not a
 * zero, since a wrong book would replace a good one.
 */
function bookFrom(parsed, text) {
  const raw = rawFields(text);
  const int = (name) => {
    const t = raw.get(name);
    if (t === undefined || !/^\d+$/.test(t)) throw new SyntaxError(`book: ${name} is not an unsigned integer: ${t}`);
    return BigInt(t);
  };
  if (typeof parsed.symbol !== 'string') throw new SyntaxError('book: no symbol');
  return makeBook(parsed.symbol, int('seq'), Number(int('depth')), levelsFrom(raw.get('bids'), 'bids'),
    levelsFrom(raw.get('asks'), 'asks'), parsed.stale === true, int('ts_event'), int('ts_gateway'));
}

/**
 * The event of one JSON object's text: [kind, value], or null for a message that is none of
 * update, trade, gap, book. Throws a SyntaxError on invalid JSON (or a malformed book).
 */
function parseJsonEvent(text) {
  let m = UPDATE_LAYOUT.exec(text);
  if (m) return [UPDATE, fromMatch(m)];
  if ((m = TRADE_LAYOUT.exec(text))) return [TRADE, tradeFromMatch(m)];
  if ((m = BOOK_LAYOUT.exec(text))) return [BOOK, bookFromMatch(m)];
  if ((m = GAP_LAYOUT.exec(text))) return [GAP, gapFromMatch(m)];
  const parsed = JSON.parse(text);
  switch (parsed?.type) {
    case 'update': return [UPDATE, updateFrom(parsed, text)];
    case 'trade': return [TRADE, tradeFrom(parsed, text)];
    case 'gap': return [GAP, gapFrom(parsed)];
    case 'book': return [BOOK, bookFrom(parsed, text)];
    default: return null;
  }
}

/**
 * Parses the text of a JSON update into the same shape as a binary record, plus `symbol`
 * (`symbol_id` is undefined). Returns null for a message that is not an update; throws on
 * invalid JSON.
 */
export function parseJsonUpdate(text) {
  const m = UPDATE_LAYOUT.exec(text);
  if (m) return fromMatch(m);
  const parsed = JSON.parse(text);
  return parsed?.type === 'update' ? updateFrom(parsed, text) : null;
}

/**
 * Parses the text of a JSON trade into `{symbol, seq, price, size, side?, tradeId?, tsEvent,
 * tsGateway}` (BigInt integers, exact decimal strings; `side` and `tradeId` only when the
 * message has them). Returns null for a message that is not a trade; throws on invalid JSON.
 */
export function parseJsonTrade(text) {
  const m = TRADE_LAYOUT.exec(text);
  if (m) return tradeFromMatch(m);
  const parsed = JSON.parse(text);
  return parsed?.type === 'trade' ? tradeFrom(parsed, text) : null;
}

/**
 * Parses the text of a gap notice into `{symbol, missed}`. Returns null for a message that is
 * not a gap; throws on invalid JSON.
 */
export function parseJsonGap(text) {
  const m = GAP_LAYOUT.exec(text);
  if (m) return gapFromMatch(m);
  const parsed = JSON.parse(text);
  return parsed?.type === 'gap' ? gapFrom(parsed) : null;
}

/**
 * Parses the text of a JSON order book into `{symbol, seq, depth, bids: [{price, size}],
 * asks, stale, tsEvent, tsGateway}` (BigInt integers, exact decimal strings; `bids` best
 * first, `asks` best first). Returns null for a message that is not a book; throws a
 * SyntaxError on invalid JSON or a book with a field missing or malformed.
 */
export function parseJsonBook(text) {
  const m = BOOK_LAYOUT.exec(text);
  if (m) return bookFromMatch(m);
  const parsed = JSON.parse(text);
  return parsed?.type === 'book' ? bookFrom(parsed, text) : null;
}

const isSpace = (c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/** Index of the first character of `text` at or after `i` that is not JSON whitespace. */
function skipSpace(text, i) {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

// The element layouts a batch's fast path tries, in this order: updates first (most elements
// are), then trades, books, gaps. A sticky regex that does not apply fails within the first
// few characters after "type".
const BATCH_ITEMS = [
  [UPDATE_ITEM, UPDATE, fromMatch], [TRADE_ITEM, TRADE, tradeFromMatch],
  [BOOK_ITEM, BOOK, bookFromMatch], [GAP_ITEM, GAP, gapFromMatch],
];

/**
 * The events of a batched JSON frame, in order: {items, kinds}. The fast path matches the
 * gateway's layouts element after element, in place, without slicing the frame; any other
 * layout takes the general path (arrayItems, then parseJsonEvent per element), for the whole
 * frame. Elements that are none of update, trade, gap, book are skipped.
 */
function scanBatch(text) {
  const items = [];
  const kinds = [];
  let at = skipSpace(text, 0);
  if (text.charCodeAt(at) !== 0x5b) throw new SyntaxError('a batch is a JSON array');
  at++;
  for (;;) {
    let m = null;
    for (let k = 0; k < BATCH_ITEMS.length; k++) {
      const [re, kind, from] = BATCH_ITEMS[k];
      re.lastIndex = at;
      if ((m = re.exec(text))) {
        items.push(from(m));
        kinds.push(kind);
        at = re.lastIndex;
        break;
      }
    }
    if (m === null) break;
    const c = text.charCodeAt(at);
    if (c === 0x2c) { // ',': the next element
      at++;
      continue;
    }
    if (c === 0x5d && skipSpace(text, at + 1) === text.length) return { items, kinds }; // ']' and the end
    break;
  }
  items.length = 0;
  kinds.length = 0;
  for (const item of arrayItems(text)) {
    const e = parseJsonEvent(item);
    if (e === null) continue;
    kinds.push(e[0]);
    items.push(e[1]);
  }
  return { items, kinds };
}

/**
 * Parses a batched JSON frame (format json-batch: a JSON array of update, trade, gap and book
 * objects, PROTOCOL.md) into its updates, in order, each exactly as parseJsonUpdate would give
 * it. Other elements (trades, gaps, books, a later version's) are skipped:
 * parseJsonBatchEvents gives them too. Throws a SyntaxError if the text is not a well-formed
 * array.
 *
 * The fast path matches the gateway's layout element after element, in place, without
 * slicing the frame; any other layout takes the general path (arrayItems, then
 * parseJsonUpdate per element).
 */
export function parseJsonBatch(text) {
  const { items, kinds } = scanBatch(text);
  return kinds.every((k) => k === UPDATE) ? items : items.filter((_, i) => kinds[i] === UPDATE);
}

/**
 * Parses a batched JSON frame into all of its events, in order: `[{type, value}]` with `type`
 * 'update' (as parseJsonUpdate), 'trade' (as parseJsonTrade), 'gap' (as parseJsonGap) or
 * 'book' (as parseJsonBook). Elements of other types are skipped. Throws a SyntaxError if the
 * text is not a well-formed array (or holds a malformed book).
 */
export function parseJsonBatchEvents(text) {
  return named(scanBatch(text));
}

/**
 * The text of each top-level element of a JSON array, in order (strings and nesting are
 * respected; each element's own syntax is left to its parser). Throws a SyntaxError if the
 * array itself is malformed.
 */
function arrayItems(text) {
  const items = [];
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== 0x5b) throw new SyntaxError('a batch is a JSON array');
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === 0x5d) {
    if (skipSpace(text, i + 1) !== text.length) throw new SyntaxError('text after the array');
    return items;
  }
  for (;;) {
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c) i++; // backslash: skip the escaped character
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) {
        inString = true;
      } else if (c === 0x7b || c === 0x5b) {
        depth++;
      } else if (c === 0x7d || c === 0x5d) {
        if (depth === 0) break;
        depth--;
      } else if (c === 0x2c && depth === 0) {
        break;
      }
    }
    const item = text.slice(start, i).trim();
    if (i >= text.length || item === '') throw new SyntaxError('malformed JSON array');
    items.push(item);
    if (text.charCodeAt(i) === 0x7d) throw new SyntaxError('unbalanced } in a JSON array');
    if (text.charCodeAt(i) === 0x5d) {
      if (skipSpace(text, i + 1) !== text.length) throw new SyntaxError('text after the array');
      return items;
    }
    i = skipSpace(text, i + 1); // after ','
  }
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
  clear() {
    this.next = 0;
    this.size = 0;
  }
  /** The percentiles `ps` of the samples taken since `now - span`, e.g. [50, 99] -> [p50, p99]. */
  percentiles(now, ps) {
    const live = [];
    for (let i = 0; i < this.size; i++) if (this.times[i] >= now - this.span) live.push(this.values[i]);
    return ps.map((p) => percentile(live, p));
  }
}

/**
 * The max_rate to ask the gateway for: the app's `asked` rate (undefined: the server's default,
 * 0: unlimited, else updates/s) under the adaptive cap `cap` (Infinity: no cap).
 * effectiveRate(20, 5) -> 5; effectiveRate(0, 5) -> 5; effectiveRate(undefined, Infinity) -> undefined.
 */
export function effectiveRate(asked, cap) {
  if (cap === Infinity) return asked;
  return asked === undefined || asked === 0 ? cap : Math.min(asked, cap);
}

/**
 * The decisions of adaptive throttling, with no I/O and no clock of its own: fed about once a
 * second with how far behind the page is, it answers with a new cap on the max_rate of every
 * subscription (updates/s per symbol; Infinity: no cap) or null for no change. The client
 * applies a new cap by re-subscribing (docs/CLIENT.md, "Adaptive throttling").
 *
 * - Behind (lag over `high`) and not on course to get under `high` within `recoverMs` at the
 *   current slope: halve the rate, measured as what actually got through, `handled / symbols`
 *   updates/s per symbol. A page that falls behind is saturated, so that is about half of what
 *   it can take; the backlog then drains at least as fast as it grew. Never below `floor`.
 * - Caught up (lag under `low`) for `raiseAfterMs`: double the cap; at the app's `ceiling` (or
 *   MAX_RATE) the cap is lifted.
 * - A cut made while the lag is over `resyncMs` also sets `resync`: the client then drops the
 *   backlog by reconnecting, and starts again from snapshots. Updates handled L ms after they
 *   were sent have at least L ms of later ones queued behind them (browser and kernel
 *   buffers hold seconds of updates for a slow page), and the page takes longer than that to
 *   work through them; a snapshot per symbol is cheaper.
 * - A change is judged only by updates the gateway sent after it (`sentMs`, on the same clock
 *   as `nowMs`, is when the newest handled update was sent): until one has been handled, the
 *   page is still working through what was sent before. The first observation after that is a
 *   baseline for the slope; the backlog it shows is not a reason to cut again.
 */
export class AdaptiveRate {
  /** The defaults of the constructor's options. */
  static DEFAULTS = Object.freeze({ high: 150, low: 50, floor: 1, raiseAfterMs: 3000, recoverMs: 3000, resyncMs: 500 });
  /** The cap, updates/s per symbol; Infinity while not throttling. */
  rate = Infinity;
  /** Whether the last change was a cut that should also drop the backlog (see the class). */
  resync = false;
  #prev = null; // the previous observation since the last change: {lagMs, nowMs}
  #changedAt = -Infinity;
  #baseline = false; // the next judged observation only sets #prev
  #calmSince = null; // start of the current run of observations under `low`

  /**
   * @param {object} [options]
   * @param {number} [options.high=150]  ms of lag over which the page is behind.
   * @param {number} [options.low=50]  ms of lag under which the page has caught up.
   * @param {number} [options.floor=1]  the lowest cap, updates/s per symbol.
   * @param {number} [options.raiseAfterMs=3000]  how long caught up before each doubling.
   * @param {number} [options.recoverMs=3000]  a lag falling fast enough to be under `high`
   *   within this long is left to recover by itself.
   * @param {number} [options.resyncMs=500]  a cut with the lag over this also sets `resync`;
   *   Infinity: never.
   */
  constructor(options = {}) {
    const { high, low, floor, raiseAfterMs, recoverMs, resyncMs } = { ...AdaptiveRate.DEFAULTS, ...options };
    if (!(low < high)) throw new RangeError(`adaptive: low (${low}) must be under high (${high})`);
    if (!(floor > 0 && floor <= MAX_RATE)) throw new RangeError(`adaptive: floor ${floor} not in (0, ${MAX_RATE}]`);
    Object.assign(this, { high, low, floor, raiseAfterMs, recoverMs, resyncMs });
  }

  /**
   * One observation: `lagMs`, the page's lag (NaN when no live update was handled: no
   * evidence either way), at `nowMs`; `handled`, updates/s the page handled lately;
   * `symbols`, how many it holds; `ceiling`, the highest rate the app asked for (Infinity if
   * any subscription is unlimited); `sentMs`, see the class. Returns the new cap or null.
   */
  observe(lagMs, nowMs, { handled = 0, symbols = 0, ceiling = Infinity, sentMs = Infinity } = {}) {
    if (!(lagMs >= 0) || sentMs < this.#changedAt) return null;
    const prev = this.#prev;
    this.#prev = { lagMs, nowMs };
    if (lagMs < this.low) this.#calmSince ??= nowMs;
    else this.#calmSince = null;
    if (this.#baseline) {
      this.#baseline = false;
      return null;
    }
    if (lagMs > this.high) {
      if (prev && this.#onCourse(prev, lagMs, nowMs)) return null;
      const got = symbols > 0 ? handled / symbols : Infinity;
      const next = this.#clamp(Math.min(this.rate, got) / 2);
      return next < this.rate ? this.#change(next, nowMs, lagMs > this.resyncMs) : null;
    }
    if (this.rate === Infinity || this.#calmSince === null || nowMs - this.#calmSince < this.raiseAfterMs) return null;
    const next = this.rate * 2;
    return this.#change(next >= Math.min(ceiling, MAX_RATE) ? Infinity : next, nowMs, false);
  }

  /** Is the lag falling fast enough to be under `high` within `recoverMs`? */
  #onCourse(prev, lagMs, nowMs) {
    const slope = (prev.lagMs - lagMs) / (nowMs - prev.nowMs); // ms of lag shed per ms
    return slope > 0 && (lagMs - this.high) / slope <= this.recoverMs;
  }

  /** Within [floor, MAX_RATE], three significant digits (short subscribe messages). */
  #clamp(rate) {
    return Math.min(MAX_RATE, Math.max(this.floor, Number(rate.toPrecision(3))));
  }

  #change(rate, nowMs, resync) {
    this.rate = rate;
    this.resync = resync;
    this.#changedAt = nowMs;
    this.#prev = null;
    this.#baseline = true;
    this.#calmSince = null;
    return rate;
  }
}

// ---------------------------------------------------------------------------------------------
// The client.

/** The first ping after a connection opens, ms: after the snapshots, for a clean clock sample. */
const FIRST_PING_MS = 1000;
/** Pongs kept as clock samples (per connection) and round trips (over connections). */
const CLOCK_SAMPLES = 8;
/** The monitor's period, ms: event-loop lag is its lateness; lag is judged every LAG_WINDOW_MS. */
const MONITOR_MS = 250;
/** How often the lag is judged, ms: over the updates handled since the previous judgement. */
const LAG_WINDOW_MS = 1000;

/**
 * The wall clock as an offset to performance.now(), ms (wall = performance.now() + offset).
 * Date.now() has 1 ms steps, so Date.now() - performance.now() is up to 1 ms below the truth;
 * performance.timeOrigin is finer but drifts from the wall clock when that is stepped (NTP, a
 * suspend). So timeOrigin while it lies in Date.now()'s millisecond, else that millisecond's
 * middle. (Chromium coarsens performance.now() to 0.1 ms: hence the tolerance.)
 */
function wallOffset() {
  const floor = Date.now() - performance.now();
  const origin = performance.timeOrigin;
  return origin >= floor - 0.1 && origin < floor + 1.1 ? origin : floor + 0.5;
}

/** Rate changes over SSE are applied together at most this long after the first, ms. */
const SSE_SYNC_MAX_MS = 1000;

/**
 * The URL of another route beside `url` (a URL object): http(s), the last path segment
 * replaced by `name` ('/ws' -> '/sse', '/md/ws' -> '/md/sse'), no `format` and no fragment.
 */
function siblingUrl(url, name) {
  const u = new URL(url);
  u.protocol = u.protocol.replace(/^ws/, 'http');
  u.pathname = u.pathname.replace(/[^/]*$/, name);
  u.searchParams.delete('format');
  u.hash = '';
  return u;
}

/** A max rate's order for merging SSE streams: the server's default and unlimited last. */
const rateRank = (rate) => (rate === undefined || rate === null || rate === 0 ? Infinity : rate);
/** How far apart two ranks are, as a ratio (unlimited counting as twice MAX_RATE). */
const rateDistance = (lo, hi) => (lo === hi ? 1 : Math.min(hi, 2 * MAX_RATE) / lo);

/**
 * Merges SSE stream groups ({rate, trades, depth, symbols}) until there are at most `max`
 * (>= 2): each time the two closest rates of the same trades setting and depth, at the lower
 * rate (a symbol never gets more than it asked for; conflation still brings it the newest
 * value). Only when no two groups share both: two of the same trades setting, at the greater
 * depth (the client trims the deeper books, and drops those of symbols without depth).
 */
function mergeGroups(groups, max) {
  const out = groups.map((g) => ({ ...g, symbols: [...g.symbols] }));
  while (out.length > max) {
    let best = null;
    for (const a of out) {
      for (const b of out) {
        if (a === b || a.trades !== b.trades) continue;
        const [ra, rb] = [rateRank(a.rate), rateRank(b.rate)];
        // a is the lower (the server's default before unlimited when both are unbounded)
        if (ra > rb || (ra === rb && a.rate !== undefined && b.rate === undefined)) continue;
        // Any rates of the same depth are closer than any of different depths.
        const distance = rateDistance(ra, rb) + (a.depth === b.depth ? 0 : 1e9);
        if (best === null || distance < best.distance) best = { a, b, distance };
      }
    }
    best.a.symbols.push(...best.b.symbols);
    best.a.depth = Math.max(best.a.depth, best.b.depth);
    out.splice(out.indexOf(best.b), 1);
  }
  return out;
}

/** The claims of a JWT (not verified: the gateway does that), or {} if it cannot be read. */
function jwtClaims(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')));
  } catch {
    return {};
  }
}

/** Opens a client: `connect('/ws', { format: 'binary' })`. See TickgateClient. */
export function connect(url, options) {
  return new TickgateClient(url, options);
}

/**
 * A connection to a gateway that stays up: it reconnects after any close until close() is
 * called, and re-subscribes to every symbol it holds, each with its max rate.
 *
 * Transports (`transport`, docs/CLIENT.md): a WebSocket; with 'auto' (the default), after
 * `fallbackAfter` WebSocket attempts in a row that failed before the gateway said anything,
 * while the gateway answers HTTP (GET /healthz), Server-Sent Events instead: one GET /sse
 * stream per distinct (max rate, trades, depth) of the subscriptions, re-opened when they
 * change, with the same events; a WebSocket is tried again every `wsRetry` ms. Over SSE the client
 * cannot send: list() and setMaxBandwidth() reject (kind 'unsupported'), ping() is an HTTP
 * round trip to /healthz.
 *
 * Events, with on(type, listener), which returns a function that removes the listener:
 * - 'update': a normalized update (see docs/CLIENT.md), any format;
 * - 'trade':  a trade of a symbol subscribed with `trades: true`, every one, in feed order:
 *              {symbol, seq, price, size, side?, tradeId?, tsEvent, tsGateway, age} (plus
 *              symbolId in binary); never conflated, throttled or dropped by this client;
 * - 'gap':    {symbol, missed}: `missed` trades of the symbol were dropped for this client by
 *              the gateway (its backlog overflowed) and will never come; before the next trade;
 * - 'book':   the order book of a symbol subscribed with a `depth`, replacing its previous one:
 *              {symbol, seq, depth, bids: [{price, size}], asks, stale, tsEvent, tsGateway,
 *              age} (plus symbolId in binary); bids best (highest) first, asks best (lowest)
 *              first, at most `depth` levels a side; `stale`: the gateway's book is out of
 *              date (its last good levels). book(symbol) is the newest;
 * - 'state':  {state: 'connecting'|'open'|'reconnecting'|'idle'|'closed', format, transport,
 *              attempt, delay, code, reason, meaning}. 'idle': closed for holding no
 *              subscription; the next request reconnects. 'connecting' has a reason ('format
 *              change', 'resync', 'transport change') when the client itself replaced an open
 *              connection, and 'fallback' when it turns to SSE. Over SSE, `code` may be the
 *              HTTP status that refused a stream.
 * - 'status': {feed: 'up'|'down'}, the gateway's feed state;
 * - 'pong':   {rtt (ms), ts (server clock, BigInt ns; undefined over SSE)};
 * - 'lag':    {lagMs, rttMs, loopMs, behind, rate, resync} once a second while connected
 *              (see `lag`, `behind`, `rate`; loopMs: the event loop's lag; resync: the client
 *              is reconnecting to drop a backlog);
 * - 'error':  a TickgateError: error replies, closes of an open connection, malformed frames.
 */
export class TickgateClient {
  #url;
  #opts;
  #WebSocket;
  #EventSource;
  #fetch; // (url, init) => Promise<Response>, or null
  #ws = null;
  #listeners = new Map();
  #pending = new Map(); // request id -> {resolve, reject, sent, wait (over SSE: see #checkWaiters)}
  #queue = []; // sends of requests waiting for the connection to open
  #nextId = 1;
  #wanted = new Map(); // symbol -> the max rate the app asked for (undefined: server default, 0: unlimited)
  #tradesWanted = new Set(); // symbols held with trades: true
  #depthWanted = new Map(); // symbol -> the book depth the app asked for (> 0; absent: no books)
  #sent = new Map(); // symbol -> what this connection was last asked: sentKey(max_rate after the adaptive cap, trades, depth)
  // symbol -> the depth (> 0) this connection may have been asked for, until a reply confirms
  // a depth of 0: a request that turns books off says `depth: 0` only to these.
  #depthSent = new Map();
  #bandwidth = 0; // the max_bandwidth the app set (0: the server's default), re-sent on every connection
  #names = new Map(); // binary symbol id -> symbol, from this connection's `subscribed` replies
  #seqs = new Map(); // symbol -> last seq seen on this connection
  #tradeSeqs = new Map(); // symbol -> seq of the last trade delivered on this connection
  #bookSeqs = new Map(); // symbol -> seq of the last book delivered on this connection
  #books = new Map(); // symbol -> the newest book delivered (kept across connections)
  #attempt = 0;
  #openedAt = 0;
  #timer = null; // the reconnect timer
  #pinger = null;
  #monitor = null;
  #monitoring = false; // a connection is open: lag is measured and judged
  #closed = false;
  #warnedOrder = false;
  // The gateway's clock: gateway ms = performance.now() + #offset (see ping()).
  #offset = wallOffset();
  #clock = []; // this connection's pongs as bounds on the offset, {lo, hi}, the newest last
  #rtts = []; // the last pongs' round trips, ms, over connections (the network path)
  // Lag measurement, judged every LAG_WINDOW_MS (by the monitor's timer or after a message).
  #adaptive; // an AdaptiveRate, or null with options.adaptive = false
  #high; // ms: `behind` is the lag over this (the adaptive `high`)
  #ages = new SlidingWindow({ span: Infinity, capacity: 4096 }); // ages of live updates since the last judgement, ms
  #handled = 0; // updates delivered since the last judgement
  #newestTs = -Infinity; // the newest ts_gateway handled on this connection, gateway ms
  #freshest = Infinity; // the smallest (page clock - ts_gateway) of a live update on this connection, ms
  #judgedAt = 0;
  #loopLag = 0; // the monitor's largest lateness since the last judgement, ms
  // The transport: WebSocket attempts that failed before the gateway said anything (in a
  // row), and whether the current socket received anything.
  #wsFailures = 0;
  #wsReceived = false;
  #httpOk = false; // the gateway answered HTTP after the last failure: the next one falls back
  #probeTimer = null; // 'auto' on SSE: the next WebSocket probe
  #probeWs = null;
  // Server-Sent Events (transport 'sse').
  #sseBase; // URL of GET /sse
  #healthUrl; // URL of GET /healthz
  #streams = new Map(); // url -> {url, symbols, es, opened, subscribed, ids, dead}
  #streamOf = new Map(); // symbol -> its stream
  #syncTimer = null; // a debounced #syncStreams
  #syncSince = 0; // when the first change waiting for it was made
  #gen = 0; // numbers the subscribe/auth requests executed over SSE...
  #syncedGen = 0; // ...up to this one are reflected in the streams
  #sseAttempt = 0; // bumped whenever the streams all close: stale asynchronous results are ignored
  #previousToken; // the token before the last auth(): kept if SSE streams refuse the new one

  /** 'connecting', 'open', 'reconnecting', 'idle' or 'closed'. */
  state = 'connecting';
  /**
   * The transport in use, or being tried: 'websocket' or 'sse' (Server-Sent Events). With
   * `transport: 'auto'` it changes when the client falls back to SSE and when it gets a
   * WebSocket again.
   */
  transport = 'websocket';
  /** The feed state: 'up' (assumed on connect), 'down' after a status message, 'unknown' while away. */
  feed = 'unknown';
  /** Last measured round trip of an app-level ping, ms. */
  rtt = NaN;
  /**
   * How far behind the page is, ms: the 90th percentile of the ages of the live updates
   * handled in the last judged second (at most the newest 4,096), taken when they were handed
   * to 'update' listeners (the gateway's clock, estimated from pings, minus ts_gateway). NaN
   * when no live update was handled in it.
   */
  lag = NaN;
  /** Whether the last judged lag (less the network's share, see #judge) was over the adaptive `high` mark. */
  behind = false;
  /**
   * The byte rate the gateway holds this connection to, bytes/s (0: unlimited), as of the last
   * `settings` reply (setMaxBandwidth); undefined before the first.
   */
  maxBandwidth = undefined;
  /**
   * Running counters: messages, updates, conflated (events skipped by conflation), connects,
   * resyncs (reconnects of adaptive throttling to drop a backlog), trades (delivered),
   * tradesMissed (the sum of the gap notices' `missed`), books (delivered), booksDropped
   * (books whose seq went backwards, which the protocol forbids: not delivered).
   */
  stats = { messages: 0, updates: 0, conflated: 0, connects: 0, resyncs: 0, trades: 0, tradesMissed: 0, books: 0, booksDropped: 0 };

  /**
   * @param {string|URL} url  ws(s):// or http(s):// URL of /ws; relative URLs resolve against
   *   the page's location in a browser.
   * @param {object} [options]
   * @param {'json-batch'|'json'|'binary'} [options.format='json-batch']
   * @param {boolean|object} [options.adaptive=true]  adaptive throttling: lower the max_rate
   *   of every subscription while the page falls behind (false: never). An object sets the
   *   AdaptiveRate options {high, low, floor, raiseAfterMs, recoverMs, resyncMs}.
   * @param {number} [options.pingInterval=10000]  ms between app-level pings (the first after
   *   FIRST_PING_MS, or sooner with a shorter interval); 0 = none.
   * @param {number} [options.pingTimeout=10000]  drop the connection (4000) without a pong by then.
   * @param {number} [options.requestTimeout=10000]  ms before a request's promise rejects.
   * @param {object} [options.backoff]  options of backoffDelay(): {base, max, jitter, random}.
   * @param {string} [options.token]  a JWT for gateways with token auth, offered as the
   *   subprotocol `tickgate.token.<JWT>` (beside the format's); auth() replaces it. Over SSE
   *   it goes in the stream's URL (`?token=`): an EventSource cannot set headers.
   * @param {'auto'|'websocket'|'sse'} [options.transport='auto']  see the class.
   * @param {number} [options.fallbackAfter=2]  'auto': WebSocket attempts in a row that fail
   *   before the gateway says anything, while it answers HTTP, before falling back to SSE.
   * @param {number} [options.wsRetry=60000]  'auto' on SSE: ms between WebSocket probes (open
   *   one, ping); the first that hears from the gateway brings the client back to a WebSocket.
   *   0: never.
   * @param {string|URL} [options.sseUrl]  URL of GET /sse (default: the WebSocket URL with
   *   http(s) and its last path segment replaced by `sse`: /ws -> /sse). /healthz is beside it.
   * @param {number} [options.sseDebounce=100]  ms: subscription changes over SSE re-open the
   *   streams they touch this long after the last one (at most 1 s after the first).
   * @param {number} [options.sseStreams=4]  at most this many SSE streams (>= 2): a browser
   *   holds 6 HTTP/1.1 connections per host; more distinct rates are merged at the lower one.
   * @param {Function} [options.WebSocket]  WebSocket class (default: the global one).
   * @param {Function} [options.EventSource]  EventSource class (default: the global one).
   * @param {Function} [options.fetch]  fetch function (default: the global one), for /healthz
   *   and to read why a stream was refused.
   */
  constructor(url, options = {}) {
    const base = globalThis.location?.href;
    this.#url = new URL(url, base);
    this.#url.protocol = this.#url.protocol.replace(/^http/, 'ws');
    this.#opts = {
      format: FORMATS[0], adaptive: true, pingInterval: 10_000, pingTimeout: 10_000, requestTimeout: 10_000,
      transport: TRANSPORTS[0], fallbackAfter: 2, wsRetry: 60_000, sseDebounce: 100, sseStreams: 4, ...options,
    };
    if (!FORMATS.includes(this.#opts.format)) throw new Error(`unknown format ${this.#opts.format}`);
    if (!TRANSPORTS.includes(this.#opts.transport)) throw new Error(`unknown transport ${this.#opts.transport}`);
    const { adaptive, transport } = this.#opts;
    this.#adaptive = adaptive ? new AdaptiveRate(adaptive === true ? {} : adaptive) : null;
    this.#high = (this.#adaptive ?? AdaptiveRate.DEFAULTS).high;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#EventSource = options.EventSource ?? globalThis.EventSource;
    const fetch = options.fetch ?? globalThis.fetch;
    this.#fetch = fetch ? (u, init) => fetch(u, init) : null;
    const sse = options.sseUrl ? new URL(options.sseUrl, base) : siblingUrl(this.#url, 'sse');
    sse.protocol = sse.protocol.replace(/^ws/, 'http');
    this.#sseBase = sse;
    this.#healthUrl = siblingUrl(sse, 'healthz');
    this.#healthUrl.search = '';
    if (transport === 'sse' || (transport === 'auto' && !this.#WebSocket && this.#EventSource)) {
      if (!this.#EventSource) throw new Error('no EventSource: pass options.EventSource');
      this.transport = 'sse';
    } else if (!this.#WebSocket) {
      throw new Error('no WebSocket: use Node >= 22 or pass options.WebSocket');
    }
    this.#open();
  }

  /** The wire format of updates: 'json-batch', 'json' or 'binary'. */
  get format() { return this.#opts.format; }
  /** The symbols held (or being re-subscribed), with the max rates the app asked for. */
  get subscriptions() { return new Map(this.#wanted); }
  /** The symbols held with `trades: true` (a copy). */
  get tradeSymbols() { return new Set(this.#tradesWanted); }
  /** The symbols held with order books: symbol -> the depth asked for (a copy). */
  get bookDepths() { return new Map(this.#depthWanted); }
  /**
   * The newest order book delivered of `symbol` (as the 'book' event gave it), or undefined.
   * Kept across reconnects until the next one replaces it; forgotten when the symbol's books
   * are turned off or it is unsubscribed. Check `stale`, and the connection's state.
   */
  book(symbol) { return this.#books.get(symbol); }
  /**
   * The adaptive cap on every subscription's max_rate, updates/s per symbol; Infinity while
   * not throttling (and always with adaptive: false). effectiveRate(asked, client.rate) is the
   * rate a symbol gets.
   */
  get rate() { return this.#adaptive?.rate ?? Infinity; }

  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type).delete(listener);
  }

  /**
   * Subscribes to `symbols`; resolves with the `subscribed` reply's map {symbol: id}. Symbols
   * missing from it were unknown (an 'error' event with code unknown_symbol lists them).
   * `maxRate`: quote updates/s per symbol; 0 = unlimited; omitted = the server's default.
   * `trades`: true to get every trade of these symbols as well ('trade' and 'gap' events).
   * `depth`: N > 0 to get their order books as well, the top N levels a side ('book'
   * events; the gateway refuses more than its maximum, 50 by default, as bad_request); 0 or
   * omitted: none. Like `maxRate`, `trades` and `depth` hold for the symbols of this call, so
   * a call without them turns their trades and books off. A held symbol keeps its
   * subscription and only changes its rate, trades and depth. While adaptive throttling caps
   * the rate, the gateway is asked for effectiveRate(maxRate, client.rate); trades are never
   * paced. A depth that is not a non-negative integer rejects with a RangeError.
   */
  async subscribe(symbols, { maxRate, trades = false, depth = 0 } = {}) {
    depth ??= 0;
    if (!Number.isSafeInteger(depth) || depth < 0) {
      throw new RangeError(`depth must be a non-negative integer (levels a side), 0 or null: ${depth}`);
    }
    const list = [...new Set(symbols)];
    if (list.length === 0) return {};
    trades = trades === true;
    const added = list.filter((s) => !this.#wanted.has(s));
    const rate = effectiveRate(maxRate, this.rate);
    for (const s of list) {
      this.#wanted.set(s, maxRate);
      this.#setTrades(s, trades);
      this.#setDepth(s, depth);
      this.#sent.set(s, sentKey(rate, trades, depth));
    }
    try {
      const reply = await this.#request(this.#subscribeBody(list, rate, trades, depth));
      if (depth === 0) this.#booksOff(list);
      return reply.symbols;
    } catch (e) {
      // Not executed (too_many_symbols, rate_limited, ...): forget what this call added. After
      // a close the symbols stay: the reconnect subscribes to them.
      if (e.kind === 'reply') {
        for (const s of added) {
          this.#wanted.delete(s);
          this.#tradesWanted.delete(s);
          this.#setDepth(s, 0);
        }
      }
      // Rate limited: the held ones are asked again at the next judgement (#syncRates).
      if (e.code === 'rate_limited') for (const s of list) this.#sent.delete(s);
      throw e;
    }
  }

  /**
   * Changes the max rate of symbols already held (0 = unlimited); each keeps its trades and
   * depth (one request per distinct trades and depth: those without trades first).
   */
  async setMaxRate(symbols, maxRate) {
    const groups = new Map(); // `${trades}/${depth}` -> {trades, depth, list}
    for (const s of symbols) {
      if (!this.#wanted.has(s)) continue;
      const trades = this.#tradesWanted.has(s);
      const depth = this.#depthWanted.get(s) ?? 0;
      const key = `${trades}/${depth}`;
      if (!groups.has(key)) groups.set(key, { trades, depth, list: [] });
      groups.get(key).list.push(s);
    }
    const ordered = [...groups.values()].sort((a, b) => a.trades - b.trades || a.depth - b.depth);
    const replies = await Promise.all(ordered.map(({ list, trades, depth }) => this.subscribe(list, { maxRate, trades, depth })));
    return Object.assign({}, ...replies);
  }

  /** Unsubscribes; no update, trade, gap or book of these symbols is delivered after this call. */
  async unsubscribe(symbols) {
    for (const s of symbols) {
      this.#wanted.delete(s);
      this.#tradesWanted.delete(s);
      this.#setDepth(s, 0);
      this.#depthSent.delete(s); // a new subscription starts without books
      this.#sent.delete(s);
      this.#seqs.delete(s);
      this.#tradeSeqs.delete(s);
    }
    return (await this.#request({ op: 'unsubscribe', symbols })).symbols;
  }

  /**
   * Sets this connection's byte budget, bytes/s (`{"op":"set","max_bandwidth":...}`): under
   * it the gateway conflates quotes harder and holds trades back (up to its trade backlog,
   * beyond which it drops the oldest and says so with a gap). 0 or null: the server's
   * default. Resolves with the cap in force from the `settings` reply (the gateway may lower
   * it to its ceiling; 0 = unlimited), also kept in `maxBandwidth`. Later connections set it
   * again.
   */
  async setMaxBandwidth(bytesPerSec) {
    const value = bytesPerSec ?? 0;
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`max bandwidth must be a non-negative integer (bytes/s), 0 or null: ${bytesPerSec}`);
    }
    this.#bandwidth = value;
    const reply = await this.#request({ op: 'set', max_bandwidth: value });
    this.maxBandwidth = reply.max_bandwidth;
    return reply.max_bandwidth;
  }

  /** Every symbol of the gateway's universe, in id order. */
  async list() {
    return (await this.#request({ op: 'list' })).symbols;
  }

  /**
   * An app-level ping; resolves with {rtt (ms), ts (the server's clock, BigInt ns)}.
   *
   * Each pong also bounds the gateway's clock: stamped `ts` between the ping's send (t0) and
   * its reply's arrival (t1), it proves offset = gateway - page clock in [ts - t1, ts - t0].
   * The page's wall clock (in sync with the gateway's on one host or with NTP) is used,
   * moved into the intersection of the connection's last 8 such intervals when it lies
   * outside. Not the midpoint ts - (t0 + t1) / 2: on a page that is behind, the pong waits
   * behind the backlog (seconds), and the midpoint would be off by half of that.
   *
   * Over SSE: a GET of /healthz; `ts` is undefined and the page's wall clock is used.
   */
  async ping() {
    const t0 = performance.now();
    const reply = await this.#request({ op: 'ping' }, this.#opts.pingTimeout);
    const t1 = performance.now();
    this.rtt = t1 - t0;
    this.#rtts.push(this.rtt);
    if (this.#rtts.length > CLOCK_SAMPLES) this.#rtts.shift();
    if (reply.ts !== undefined) { // (over SSE: an HTTP round trip, no server clock)
      const ts = Number(reply.ts) / 1e6;
      this.#clock.push({ lo: ts - t1, hi: ts - t0 });
      if (this.#clock.length > CLOCK_SAMPLES) this.#clock.shift();
      let lo = Math.max(...this.#clock.map((c) => c.lo));
      let hi = Math.min(...this.#clock.map((c) => c.hi));
      if (lo > hi) ({ lo, hi } = this.#clock.at(-1)); // the clocks drifted apart or jumped
      this.#offset = Math.min(hi, Math.max(lo, wallOffset()));
    }
    const pong = { rtt: this.rtt, ts: reply.ts };
    this.#emit('pong', pong);
    return pong;
  }

  /**
   * Token auth: hands the connection a fresh token before the old one expires (else the
   * gateway closes with 1008 `token expired`); resolves with the `authenticated` reply
   * ({sub, exp}). Later connections offer this token. Over SSE: the streams are opened again
   * with it, and the promise resolves with the token's own claims once they are.
   */
  async auth(token) {
    this.#previousToken = this.#opts.token;
    this.#opts.token = token;
    return this.#request({ op: 'auth', token });
  }

  /**
   * Reconnects with another format ('json-batch', 'json' or 'binary'); subscriptions carry over.
   * Over SSE (always JSON) it only records the format for the next WebSocket.
   */
  setFormat(format) {
    if (!FORMATS.includes(format)) throw new Error(`unknown format ${format}`);
    if (format === this.#opts.format) return;
    this.#opts.format = format;
    if (this.transport === 'sse') return;
    this.#drop(1000, 'format change');
    this.#attempt = 0;
    this.#open('format change');
  }

  /** Closes for good: no reconnect; pending requests reject. */
  close() {
    this.#closed = true;
    this.#stopProbe();
    this.#drop(1000, 'client closed');
    this.#queue = [];
    this.#failPending(1000, 'client closed', true);
    this.#setState('closed', {});
  }

  // --- connection lifecycle

  /**
   * Opens a new socket (or, on SSE, the streams); `reason` says why when it is not a
   * (re)connect: 'format change', 'resync', 'fallback' (to SSE) or 'transport change' (back to
   * a WebSocket).
   */
  #open(reason) {
    clearTimeout(this.#timer);
    if (this.transport === 'sse') return this.#openSse(reason);
    this.#wsReceived = false;
    const url = new URL(this.#url);
    url.searchParams.set('format', this.#opts.format);
    this.#setState('connecting', reason ? { attempt: this.#attempt, reason } : { attempt: this.#attempt });
    // A token goes in a subprotocol entry, beside the format's (PROTOCOL.md, "Token auth").
    const { token, format } = this.#opts;
    let ws;
    try {
      ws = token
        ? new this.#WebSocket(url.href, [`tickgate.v1.${format}`, `tickgate.token.${token}`])
        : new this.#WebSocket(url.href);
    } catch (e) {
      this.#error(new TickgateError('protocol', 'bad_url', `cannot open ${url}: ${e.message}`));
      this.#retry(1006, '');
      return this.#wsFailed();
    }
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this.#onOpen();
    ws.onmessage = (e) => {
      if (!this.#wsReceived) { // the gateway answers on this path: no fallback
        this.#wsReceived = true;
        this.#wsFailures = 0;
        this.#httpOk = false;
      }
      this.#onMessage(e.data);
      this.#judgeIfDue(); // a saturated page runs its timers late: judge by the data too
    };
    ws.onclose = (e) => this.#onClose(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event always follows, with the code
    this.#ws = ws;
  }

  #onOpen() {
    this.#openedAt = performance.now();
    this.stats.connects++;
    // A new connection may be a new gateway process: symbol ids and seqs start afresh, and
    // its clock is sampled afresh (the last estimate stands until then).
    this.#names.clear();
    this.#seqs.clear();
    this.#tradeSeqs.clear(); // trades sent while away are not recoverable: docs/CLIENT.md
    this.#bookSeqs.clear();
    this.#depthSent.clear(); // a new connection has no books until asked
    this.#clock = [];
    this.#ages.clear();
    this.#newestTs = -Infinity;
    this.#freshest = Infinity;
    this.#warnedOrder = false;
    this.feed = 'up'; // no status message on connect while the feed is up (PROTOCOL.md)
    this.#setState('open', {});
    this.#sent.clear();
    // The byte budget first, so it applies from the snapshots on: a request to set it that
    // waits in the queue, else the app's last setting again.
    const queued = this.#queue.splice(0);
    const sets = queued.filter((send) => send.op === 'set');
    if (sets.length > 0) for (const send of sets) send();
    else if (this.#bandwidth > 0) {
      this.#request({ op: 'set', max_bandwidth: this.#bandwidth })
        .then((r) => { this.maxBandwidth = r.max_bandwidth; }, () => {}); // errors reach 'error' listeners
    }
    this.#syncRates(); // re-subscribe: one request per distinct max rate (and trades, depth)
    for (const send of queued) if (send.op !== 'set') send();
    this.#startPinger();
    this.#startMonitor();
  }

  /**
   * Pings now and then while open; on a WebSocket, a ping without a pong drops the connection
   * (4000). (Over SSE a ping is a GET of /healthz, which says nothing about the streams and
   * can wait behind them for one of the browser's few connections per host: only the RTT.)
   */
  #startPinger() {
    if (this.#opts.pingInterval > 0) {
      const every = this.#opts.pingInterval;
      const beat = () => {
        this.ping().catch((e) => {
          if (e.kind === 'timeout' && this.transport === 'websocket') this.#drop(4000, 'ping timeout', true);
        });
        this.#pinger = setTimeout(beat, every);
      };
      this.#pinger = setTimeout(beat, Math.min(FIRST_PING_MS, every));
    }
  }

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return; // an abandoned socket
    this.#ws = null;
    this.#stopTimers();
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
    // Lost without a close frame and without a message: refused, or broken on the way.
    if (!this.#wsReceived && (code === 1006 || code === 1015)) this.#wsFailed();
  }

  /** Schedules the next connection attempt with backoff (at least `minDelay` ms). */
  #retry(code, reason, minDelay = 0) {
    // A connection that stayed up a while resets the backoff; one that failed at once does not,
    // so a gateway that accepts and immediately closes is not hammered.
    if (this.#openedAt && performance.now() - this.#openedAt > 5_000) this.#attempt = 0;
    this.#openedAt = 0;
    const delay = Math.max(minDelay, backoffDelay(this.#attempt, this.#opts.backoff));
    this.#setState('reconnecting', { attempt: this.#attempt + 1, delay, code, reason, meaning: closeMeaning(code) });
    this.#attempt++;
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  /** Abandons the current socket (or SSE streams) now (no waiting for its close handshake). */
  #drop(code, reason, reconnect = false) {
    clearTimeout(this.#timer);
    this.#stopTimers();
    this.#closeStreams();
    const onWs = this.transport === 'websocket';
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
      if (onWs && !this.#wsReceived) this.#wsFailed(); // opened, but nothing came through
    }
  }

  /** Stops what runs only while a connection is open: the pinger, the lag monitor, SSE changes. */
  #stopTimers() {
    clearTimeout(this.#pinger);
    clearTimeout(this.#monitor);
    this.#monitoring = false;
    clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
  }

  /** Rejects the requests sent on the closed connection (all of them when `all`). */
  #failPending(code, reason, all = false) {
    for (const [id, p] of this.#pending) {
      if (!p.sent && !all) continue; // still queued: it goes out on the next connection
      this.#pending.delete(id);
      p.reject(new TickgateError('close', code, `connection closed before the reply to request ${id}`, { id, reason }));
    }
  }

  // --- transports: the fallback to Server-Sent Events, and back

  /**
   * A WebSocket attempt failed before the gateway said anything: refused (a proxy that
   * breaks the upgrade, or the gateway down), lost without a close frame, or not even
   * constructed. With 'auto', after `fallbackAfter` in a row: does the gateway answer HTTP
   * (GET /healthz)? If not, it is down: keep trying WebSockets. If it does, one more attempt
   * at once; when that fails too, WebSockets are blocked on the way: fall back to SSE.
   */
  #wsFailed() {
    this.#wsFailures++;
    const { transport, fallbackAfter } = this.#opts;
    if (transport !== 'auto' || !this.#EventSource || this.#wsFailures < fallbackAfter) return;
    if (this.#httpOk) {
      this.#httpOk = false;
      this.#drop(1000, 'fallback');
      this.transport = 'sse';
      return this.#open('fallback');
    }
    this.#reachable().then((ok) => {
      if (!ok || this.#closed || this.transport !== 'websocket' || this.state !== 'reconnecting' ||
        this.#wsFailures < fallbackAfter) return;
      this.#httpOk = true;
      this.#open();
    });
  }

  /** Whether the gateway answers HTTP (GET /healthz, any status) within `ms`; true if it cannot be told (no fetch). */
  async #reachable(ms = this.#opts.requestTimeout) {
    if (!this.#fetch) return true;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ms);
    try {
      const r = await this.#fetch(this.#healthUrl.href, { cache: 'no-store', signal: abort.signal });
      try { await r.text?.(); } catch { /* the answer is what counts */ }
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** 'auto' on SSE: a WebSocket probe in `wsRetry` ms, unless one is under way. */
  #scheduleProbe() {
    const { transport, wsRetry } = this.#opts;
    if (transport !== 'auto' || this.transport !== 'sse' || !this.#WebSocket || !(wsRetry > 0) || this.#closed) return;
    if (this.#probeTimer !== null || this.#probeWs !== null) return;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = null;
      this.#probe();
    }, wsRetry);
  }

  #stopProbe() {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
    const ws = this.#probeWs;
    this.#probeWs = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(1000, 'probe'); } catch { /* already closing */ }
    }
  }

  /**
   * Opens a WebSocket beside the SSE streams and pings: any message back proves that
   * WebSockets get through again, and the client moves back to one (state 'connecting',
   * reason 'transport change'; like a reconnect, trades in flight are not delivered). Else
   * another probe `wsRetry` ms later.
   */
  #probe() {
    if (this.transport !== 'sse' || this.#closed) return;
    const url = new URL(this.#url);
    url.searchParams.set('format', 'json');
    const { token } = this.#opts;
    let ws;
    try {
      ws = token
        ? new this.#WebSocket(url.href, ['tickgate.v1.json', `tickgate.token.${token}`])
        : new this.#WebSocket(url.href);
    } catch {
      return this.#scheduleProbe();
    }
    this.#probeWs = ws;
    const finish = (ok) => {
      if (this.#probeWs !== ws) return;
      clearTimeout(timer);
      this.#stopProbe();
      if (this.#closed || this.transport !== 'sse') return;
      if (!ok) return this.#scheduleProbe();
      this.#drop(1000, 'transport change');
      this.transport = 'websocket';
      this.#wsFailures = 0;
      this.#attempt = 0;
      this.#open('transport change');
    };
    const timer = setTimeout(() => finish(false), this.#opts.pingTimeout);
    ws.onopen = () => ws.send('{"op":"ping","id":1}');
    ws.onmessage = () => finish(true);
    ws.onclose = () => finish(false);
    ws.onerror = () => {};
  }

  // --- Server-Sent Events: one GET /sse stream per distinct (max rate, trades, depth)

  /** Opens the SSE streams of the subscriptions; holding none, checks that the gateway answers. */
  #openSse(reason) {
    this.#setState('connecting', reason ? { attempt: this.#attempt, reason } : { attempt: this.#attempt });
    this.#closeStreams();
    const attempt = this.#sseAttempt;
    // A new connection, as when a WebSocket opens: ids, seqs and the clock start afresh.
    this.#names.clear();
    this.#seqs.clear();
    this.#tradeSeqs.clear();
    this.#bookSeqs.clear();
    this.#clock = [];
    this.#ages.clear();
    this.#newestTs = -Infinity;
    this.#freshest = Infinity;
    this.#warnedOrder = false;
    this.feed = 'unknown';
    if (this.#wanted.size > 0) return this.#syncStreams();
    this.#reachable().then((ok) => {
      if (attempt !== this.#sseAttempt || this.state !== 'connecting' || this.#closed) return;
      if (ok) this.#sseOpened();
      else this.#sseFail(1006, '', { unreachable: true });
    });
  }

  /** Every stream has its `subscribed` event: the SSE connection is open (#onOpen's part). */
  #sseOpened() {
    this.#openedAt = performance.now();
    this.stats.connects++;
    if (this.feed === 'unknown') this.feed = 'up'; // unless a stream said 'down' already
    this.#setState('open', {});
    this.#sent.clear();
    for (const send of this.#queue.splice(0)) send(); // over SSE: #sseExecute
    this.#startPinger();
    this.#startMonitor();
    this.#scheduleProbe();
  }

  /** The SSE connection failed (a stream lost, or refused): close every stream, reconnect with backoff. */
  #sseFail(code, reason, { unreachable = false, retryAfter = 0 } = {}) {
    const wasOpen = this.state === 'open';
    this.#closeStreams();
    this.#stopTimers();
    this.feed = 'unknown';
    this.#failPending(code, reason);
    if (this.#closed) return;
    if (wasOpen) {
      const why = reason ? ` (${reason})` : '';
      this.#error(new TickgateError('close', code, `stream closed: ${code} ${closeMeaning(code)}${why}`, { reason }));
    }
    // No answer at all: the gateway may be down rather than WebSockets blocked, so ('auto')
    // the next attempt is a WebSocket again.
    if (unreachable && this.#opts.transport === 'auto' && this.#WebSocket) {
      this.#stopProbe();
      this.transport = 'websocket';
      this.#wsFailures = 0;
    }
    this.#retry(code, reason, retryAfter);
  }

  /**
   * A request over SSE, which cannot send: subscribe (and unsubscribe, setMaxRate) change the
   * streams; auth opens them again with the new token; ping is an HTTP round trip; list and
   * set need a WebSocket.
   */
  #sseExecute(id, entry, body) {
    switch (body.op) {
      case 'subscribe': // settled by the streams' `subscribed` events (#checkWaiters)
        entry.wait = { symbols: body.symbols, gen: ++this.#gen };
        return this.#scheduleSync();
      case 'auth': // the token is in the streams' URLs
        entry.wait = { symbols: [...this.#wanted.keys()], gen: ++this.#gen, token: body.token };
        return this.#scheduleSync();
      case 'unsubscribe': // #deliver delivers nothing more of them already
        this.#scheduleSync();
        return this.#take(id)?.resolve({ type: 'unsubscribed', id, symbols: body.symbols });
      case 'ping':
        return void this.#reachable(this.#opts.pingTimeout).then((ok) => {
          if (ok) this.#take(id)?.resolve({ type: 'pong', id });
          else this.#take(id)?.reject(new TickgateError('timeout', 'timeout', `no answer from ${this.#healthUrl}`, { id }));
        });
      default: // list, set
        return this.#take(id)?.reject(new TickgateError('unsupported', 'websocket_only',
          `${body.op} needs a WebSocket; this client is on Server-Sent Events`, { id }));
    }
  }

  /** #syncStreams after `sseDebounce` ms without another change, at most SSE_SYNC_MAX_MS after the first. */
  #scheduleSync() {
    if (this.state !== 'open' || this.transport !== 'sse') return; // opening makes them all
    const now = performance.now();
    if (this.#syncTimer === null) this.#syncSince = now;
    clearTimeout(this.#syncTimer);
    const wait = Math.max(0, Math.min(this.#opts.sseDebounce, this.#syncSince + SSE_SYNC_MAX_MS - now));
    this.#syncTimer = setTimeout(() => this.#syncStreams(), wait);
  }

  /**
   * Makes the streams match the subscriptions: one per distinct (max rate after the adaptive
   * cap, trades, depth), at most `sseStreams`. A stream whose URL does not change stays; the
   * others close, then their replacements open (fresh snapshots of their symbols; their trades
   * in flight are not delivered, as across a reconnect).
   */
  #syncStreams() {
    clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
    const urls = new Map();
    for (const g of this.#groups()) urls.set(this.#streamUrl(g), g.symbols);
    for (const [url, st] of this.#streams) if (!urls.has(url)) this.#closeStream(st);
    this.#streamOf.clear();
    for (const [url, symbols] of urls) {
      const st = this.#streams.get(url) ?? this.#openStream(url, symbols);
      for (const s of symbols) this.#streamOf.set(s, st);
    }
    this.#syncedGen = this.#gen;
    this.#checkWaiters();
    this.#checkOpen();
  }

  /** The streams the subscriptions need: [{rate, trades, depth, symbols}]. */
  #groups() {
    const cap = this.rate;
    const byKey = new Map();
    for (const [s, asked] of this.#wanted) {
      const trades = this.#tradesWanted.has(s);
      const depth = this.#depthWanted.get(s) ?? 0;
      // A new rate is a new stream, which would lose the trades in flight: adaptive
      // throttling leaves the rates of symbols with trades alone over SSE.
      const app = asked === null ? 0 : asked; // (null: unlimited, as in subscribeBody)
      const rate = trades ? app : effectiveRate(app, cap);
      const key = `${rate}/${trades}/${depth}`;
      if (!byKey.has(key)) byKey.set(key, { rate, trades, depth, symbols: [] });
      byKey.get(key).symbols.push(s);
    }
    return mergeGroups([...byKey.values()], Math.max(2, this.#opts.sseStreams));
  }

  /** GET /sse?symbols=..[&trades=1][&max_rate=R][&depth=N][&token=JWT] for a group. */
  #streamUrl({ rate, trades, depth, symbols }) {
    const url = new URL(this.#sseBase);
    url.searchParams.set('symbols', symbols.join(','));
    if (trades) url.searchParams.set('trades', '1');
    if (rate !== undefined) url.searchParams.set('max_rate', String(rate));
    if (depth > 0) url.searchParams.set('depth', String(depth));
    if (this.#opts.token) url.searchParams.set('token', this.#opts.token);
    return url.href;
  }

  #openStream(url, symbols) {
    const st = { url, symbols, es: null, opened: false, subscribed: false, ids: {}, dead: false };
    this.#streams.set(url, st);
    try {
      const es = new this.#EventSource(url);
      es.onopen = () => { st.opened = true; };
      es.onmessage = (e) => this.#onSseMessage(st, e.data);
      es.onerror = () => this.#onStreamError(st);
      st.es = es;
    } catch {
      setTimeout(() => this.#onStreamError(st), 0); // as if refused
    }
    return st;
  }

  #closeStream(st) {
    st.dead = true;
    st.es?.close();
    if (this.#streams.get(st.url) === st) this.#streams.delete(st.url);
  }

  #closeStreams() {
    for (const st of this.#streams.values()) this.#closeStream(st);
    this.#streamOf.clear();
    this.#sseAttempt++;
  }

  /** While connecting over SSE: open once every stream has its `subscribed` event. */
  #checkOpen() {
    if (this.state !== 'connecting' || this.transport !== 'sse') return;
    for (const st of this.#streams.values()) if (!st.subscribed) return;
    this.#sseOpened();
  }

  /** One event of a stream: the same JSON objects as on a format=json WebSocket. */
  #onSseMessage(st, data) {
    if (st.dead) return;
    if (!data.startsWith('{"type":"update"') && !data.startsWith('{"type":"trade"') && !data.startsWith('{"type":"book"') &&
      !data.startsWith('{"type":"gap"')) {
      let msg = null;
      try { msg = JSON.parse(data); } catch { /* #onMessage reports it */ }
      if (msg?.type === 'subscribed') {
        this.stats.messages++;
        st.subscribed = true;
        st.ids = msg.symbols ?? {};
        // A new stream (perhaps of another gateway process): its symbols' seqs start afresh.
        for (const s of st.symbols) {
          this.#seqs.delete(s);
          this.#tradeSeqs.delete(s);
          this.#bookSeqs.delete(s);
        }
        this.#checkWaiters();
        return this.#checkOpen();
      }
      if (msg?.type === 'status' && msg.feed === this.feed) { // every stream says it: once is enough
        this.stats.messages++;
        return;
      }
    }
    this.#onMessage(data);
    this.#judgeIfDue();
  }

  /**
   * A stream failed. Lost after it opened: the connection is lost (the gateway ended it or
   * the network did). Refused: why, from fetch (an EventSource cannot read the response).
   */
  async #onStreamError(st) {
    if (st.dead) return;
    st.dead = true;
    st.es?.close();
    if (st.opened) return this.#sseFail(1006, '');
    const why = await this.#whyRefused(st.url);
    if (this.#streams.get(st.url) !== st || this.#closed) return; // replaced or dropped meanwhile
    this.#streams.delete(st.url);
    this.#onRefused(st, why);
  }

  /**
   * Why GET `url` is refused: {code: the HTTP status, error, message, symbols, retryAfter
   * (ms)} from the gateway's JSON body; code 1006 when it does not answer (`unreachable`), or
   * now accepts the stream (dropped at once: the failure passed).
   */
  async #whyRefused(url) {
    if (!this.#fetch) return { code: 1006 };
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.#opts.requestTimeout);
    try {
      const r = await this.#fetch(url, { cache: 'no-store', signal: abort.signal });
      if (r.ok) {
        abort.abort();
        return { code: 1006 };
      }
      let body = null;
      try { body = await r.json(); } catch { /* not JSON: a proxy's page */ }
      const retryAfter = Number(r.headers?.get('retry-after'));
      return {
        code: r.status, error: body?.error, message: body?.message ?? r.statusText ?? '', symbols: body?.symbols,
        retryAfter: retryAfter > 0 ? retryAfter * 1000 : 0,
      };
    } catch {
      return { code: 1006, unreachable: true };
    } finally {
      clearTimeout(timer);
    }
  }

  /** A refused stream: what an error reply would do on a WebSocket, else the connection fails. */
  #onRefused(st, { code, error, message, symbols, retryAfter, unreachable }) {
    const text = `${error}: ${message}`;
    if (error === 'unknown_symbol' || error === 'not_entitled') {
      // As an error reply to a subscribe: these symbols are not held, the others stay.
      const refused = symbols?.length > 0 ? symbols : st.symbols;
      this.#forget(refused);
      this.#error(new TickgateError('reply', error, text, { symbols: refused }));
      return this.#syncStreams();
    }
    if (error === 'too_many_symbols' || error === 'bad_request') {
      // Refused as a whole: the subscribe requests waiting for this stream fail and their
      // symbols are forgotten (all of the stream's if none waits).
      const err = new TickgateError('reply', error, text, {});
      const drop = new Set();
      for (const [id, e] of this.#pending) {
        const mine = e.wait && e.wait.token === undefined ? e.wait.symbols.filter((s) => st.symbols.includes(s)) : [];
        if (mine.length === 0) continue;
        for (const s of mine) drop.add(s);
        this.#take(id).reject(err);
      }
      this.#forget(drop.size > 0 ? [...drop] : st.symbols);
      this.#error(err);
      return this.#syncStreams();
    }
    if (code === 401) {
      const auth = [...this.#pending].find(([, e]) => e.wait?.token !== undefined);
      if (auth) {
        // A refused token (auth()): keep the one before, as a WebSocket connection does.
        this.#opts.token = this.#previousToken;
        const err = new TickgateError('reply', 'unauthorized', text, { id: auth[0] });
        this.#take(auth[0]).reject(err);
        this.#error(err);
        return this.#syncStreams();
      }
    }
    this.#sseFail(code, error ? text : '', { unreachable, retryAfter });
  }

  /** Symbols no longer held (refused over SSE). */
  #forget(symbols) {
    for (const s of symbols) {
      this.#wanted.delete(s);
      this.#tradesWanted.delete(s);
      this.#setDepth(s, 0);
      this.#sent.delete(s);
      this.#seqs.delete(s);
      this.#tradeSeqs.delete(s);
    }
  }

  /** Settles the subscribe and auth requests executed over SSE whose streams are all subscribed. */
  #checkWaiters() {
    for (const [id, e] of this.#pending) {
      if (!e.wait || e.wait.gen > this.#syncedGen) continue;
      const ids = {};
      let ready = true;
      for (const s of e.wait.symbols) {
        if (!this.#wanted.has(s)) continue; // refused (or unsubscribed) since
        const st = this.#streamOf.get(s);
        if (!st?.subscribed) {
          ready = false;
          break;
        }
        if (st.ids[s] !== undefined) ids[s] = st.ids[s];
      }
      if (!ready) continue;
      this.#take(id);
      if (e.wait.token === undefined) e.resolve({ type: 'subscribed', id, symbols: ids });
      else {
        const { sub, exp } = jwtClaims(e.wait.token);
        e.resolve({ type: 'authenticated', id, sub, exp });
      }
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
        if (this.transport === 'sse') this.#sseExecute(id, entry, body);
        else this.#ws.send(JSON.stringify({ ...body, id }));
      };
      send.op = body.op;
      if (this.state === 'open') send();
      else this.#queue.push(send);
      if (this.state === 'idle') this.#open();
    });
  }

  /**
   * Asks the gateway for each held symbol's effective rate, trades and depth where they
   * differ from what this connection was last asked: one subscribe per distinct rate, trades
   * and depth, in the order of the symbols. Called on open, when the adaptive cap changes and
   * at every judgement (so a request the gateway refused as rate_limited is made again a
   * second later).
   */
  #syncRates() {
    if (this.state !== 'open') return; // #onOpen asks for every symbol
    if (this.transport === 'sse') return this.#scheduleSync(); // new rates: new streams
    const cap = this.rate;
    const byKey = new Map(); // sentKey -> {rate, trades, depth, symbols}
    for (const [s, asked] of this.#wanted) {
      const rate = effectiveRate(asked, cap);
      const trades = this.#tradesWanted.has(s);
      const depth = this.#depthWanted.get(s) ?? 0;
      const key = sentKey(rate, trades, depth);
      if (this.#sent.has(s) && this.#sent.get(s) === key) continue; // (undefined: the server's default rate)
      if (!byKey.has(key)) byKey.set(key, { rate, trades, depth, symbols: [] });
      byKey.get(key).symbols.push(s);
      this.#sent.set(s, key);
    }
    for (const [key, { rate, trades, depth, symbols }] of byKey) {
      this.#request(this.#subscribeBody(symbols, rate, trades, depth)).then(() => {
        if (depth === 0) this.#booksOff(symbols);
      }, (e) => { // errors reach 'error' listeners
        if (e.code !== 'rate_limited') return;
        for (const s of symbols) if (this.#sent.get(s) === key) this.#sent.delete(s);
      });
    }
  }

  /**
   * A subscribe request's body. `depth` goes in when it is > 0 (every time: a request for a
   * held symbol says what it should have), or as 0 when books of one of the symbols may be on.
   */
  #subscribeBody(symbols, rate, trades, depth) {
    const off = depth === 0 && symbols.some((s) => this.#depthSent.has(s));
    if (depth > 0) for (const s of symbols) this.#depthSent.set(s, depth);
    return subscribeBody(symbols, rate, trades, depth > 0 || off ? depth : undefined);
  }

  /** A reply confirmed depth 0 for `symbols`: those still without books need no `depth: 0`. */
  #booksOff(symbols) {
    for (const s of symbols) if (!this.#depthWanted.has(s)) this.#depthSent.delete(s);
  }

  /** Records the depth `symbol` takes (0: no books); turning books off forgets its book. */
  #setDepth(symbol, depth) {
    if (depth > 0) {
      this.#depthWanted.set(symbol, depth);
      return;
    }
    this.#depthWanted.delete(symbol);
    this.#bookSeqs.delete(symbol);
    this.#books.delete(symbol);
  }

  /** Records whether `symbol` takes trades; turning them on starts its trade seqs afresh. */
  #setTrades(symbol, on) {
    if (!on) this.#tradesWanted.delete(symbol);
    else if (!this.#tradesWanted.has(symbol)) {
      this.#tradesWanted.add(symbol);
      this.#tradeSeqs.delete(symbol);
    }
  }

  #onMessage(data) {
    this.stats.messages++;
    if (typeof data !== 'string') return this.#onBinary(data);
    let batch = null; // {items, kinds}
    let kind = -1; // a single event: its kind and value
    let value;
    let msg;
    try {
      if (data.charCodeAt(skipSpace(data, 0)) === 0x5b) batch = scanBatch(data); // '[': a batch
      else if (data.startsWith('{"type":"update"')) { kind = UPDATE; value = parseJsonUpdate(data); }
      else if (data.startsWith('{"type":"trade"')) { kind = TRADE; value = parseJsonTrade(data); }
      else if (data.startsWith('{"type":"gap"')) { kind = GAP; value = parseJsonGap(data); }
      else if (data.startsWith('{"type":"book"')) { kind = BOOK; value = parseJsonBook(data); }
      else {
        msg = JSON.parse(data);
        // A book whose fields are in another order: exact (and checked) all the same.
        if (msg?.type === 'book') { kind = BOOK; value = bookFrom(msg, data); }
      }
    } catch {
      return this.#error(new TickgateError('protocol', 'bad_json', `unreadable text frame: ${data.slice(0, 80)}`));
    }
    if (kind >= 0) return this.#dispatch(kind, value);
    if (batch) {
      const { items, kinds } = batch;
      for (let i = 0; i < items.length; i++) this.#dispatch(kinds[i], items[i]);
      return;
    }
    if (!msg) return;
    switch (msg.type) {
      // Events whose fields are in another order than the gateway prints them: exact numbers
      // from the text all the same.
      case 'update':
        return this.#deliver(updateFrom(msg, data));
      case 'trade':
        return this.#deliverTrade(tradeFrom(msg, data));
      case 'gap':
        return this.#deliverGap(gapFrom(msg));
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
          for (const s of msg.symbols ?? []) {
            this.#wanted.delete(s);
            this.#setDepth(s, 0);
            this.#sent.delete(s);
          }
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
    let decoded;
    try {
      decoded = decodeRecords(buf);
    } catch (e) {
      return this.#error(e);
    }
    const { items, kinds } = decoded;
    for (let i = 0; i < items.length; i++) {
      const r = items[i];
      r.symbol = this.#names.get(kinds[i] === UPDATE ? r.symbol_id : r.symbolId);
      if (r.symbol !== undefined) this.#dispatch(kinds[i], r);
    }
  }

  #dispatch(kind, value) {
    if (kind === UPDATE) this.#deliver(value);
    else if (kind === TRADE) this.#deliverTrade(value);
    else if (kind === BOOK) this.#deliverBook(value);
    else this.#deliverGap(value);
  }

  /**
   * The 'trade' event: every trade of a symbol held with trades, in order (one going
   * backwards, which the protocol forbids, is reported once and dropped, as for updates).
   * Not part of the lag measurement, which only quotes can act on.
   */
  #deliverTrade(t) {
    if (!this.#tradesWanted.has(t.symbol)) return; // unsubscribed, or trades turned off, while in flight
    const prev = this.#tradeSeqs.get(t.symbol);
    if (prev !== undefined && t.seq <= prev) {
      if (!this.#warnedOrder) this.#error(new TickgateError('protocol', 'seq_backwards', `${t.symbol}: trade seq ${t.seq} after ${prev}`));
      this.#warnedOrder = true;
      return;
    }
    this.#tradeSeqs.set(t.symbol, t.seq);
    t.age = performance.now() + this.#offset - Number(t.tsGateway) / 1e6;
    this.stats.trades++;
    this.#emit('trade', t);
  }

  /**
   * The 'book' event: the symbol's order book, replacing the one before (books are conflated
   * full replacements, so seqs may jump). One whose seq goes backwards (which the protocol
   * forbids) is counted (stats.booksDropped), reported once and dropped, as for updates; an
   * equal seq is taken (a book may say again that it is stale, or come at a new depth). A
   * book deeper than asked (an SSE stream shared with a deeper subscription) is trimmed to
   * the depth asked. Not part of the lag measurement, as trades.
   */
  #deliverBook(b) {
    const depth = this.#depthWanted.get(b.symbol);
    if (depth === undefined) return; // unsubscribed, or books turned off, while in flight
    const prev = this.#bookSeqs.get(b.symbol);
    if (prev !== undefined && b.seq < prev) {
      this.stats.booksDropped++;
      if (!this.#warnedOrder) this.#error(new TickgateError('protocol', 'seq_backwards', `${b.symbol}: book seq ${b.seq} after ${prev}`));
      this.#warnedOrder = true;
      return;
    }
    this.#bookSeqs.set(b.symbol, b.seq);
    if (b.bids.length > depth || b.asks.length > depth) {
      b.bids.length = Math.min(b.bids.length, depth);
      b.asks.length = Math.min(b.asks.length, depth);
      b.depth = depth;
    }
    b.age = performance.now() + this.#offset - Number(b.tsGateway) / 1e6;
    this.#books.set(b.symbol, b);
    this.stats.books++;
    this.#emit('book', b);
  }

  /** The 'gap' event: `missed` trades of the symbol will never come. */
  #deliverGap(g) {
    if (!this.#tradesWanted.has(g.symbol)) return;
    this.stats.tradesMissed += g.missed;
    this.#emit('gap', g);
  }

  /** Seq bookkeeping and the lag sample, then the 'update' event. */
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
    // Taken now, after the listeners of the updates before it ran: a page slower than the
    // stream sees its ages grow. (As a Number, ts_gateway is off by < 256 ns.)
    const now = performance.now();
    const ts = Number(u.ts_gateway) / 1e6;
    u.age = now + this.#offset - ts;
    this.#handled++;
    if (!u.snapshot) { // a snapshot's age is that of the symbol's last value, not a delay
      this.#ages.add(u.age, now);
      if (ts > this.#newestTs) this.#newestTs = ts;
      if (now - ts < this.#freshest) this.#freshest = now - ts; // free of the offset's changes
    }
    this.stats.updates++;
    this.stats.conflated += u.gap;
    this.#emit('update', withNumbers(u));
  }

  // --- lag: measured on every update, judged once a second

  /**
   * While a connection is open, a timer every MONITOR_MS: its lateness is the event loop's lag.
   * The lag is judged every LAG_WINDOW_MS, by this timer or after a message, whichever comes
   * first.
   */
  #startMonitor() {
    this.#judgedAt = performance.now();
    this.#handled = 0;
    this.#loopLag = 0;
    this.#monitoring = true;
    let due = this.#judgedAt + MONITOR_MS;
    const tick = () => {
      const now = performance.now();
      this.#loopLag = Math.max(this.#loopLag, now - due);
      due = now + MONITOR_MS;
      this.#monitor = setTimeout(tick, MONITOR_MS); // before judging: a resync clears it
      this.#judgeIfDue();
    };
    this.#monitor = setTimeout(tick, MONITOR_MS);
  }

  #judgeIfDue() {
    const now = performance.now();
    if (this.#monitoring && now - this.#judgedAt >= LAG_WINDOW_MS) this.#judge(now);
  }

  /**
   * The lag of the last second: `lag`, `behind`, the adaptive cap (re-subscribing where it
   * changes a rate, or resyncing: a new connection at the new rates), and the 'lag' event.
   *
   * `behind` and the controller judge the time updates spent queued: the lag less the
   * network's share, which no max_rate can shorten. Two measures bound that share from above,
   * and the smaller is used: half the smallest of the last pongs' round trips, and the age of
   * the freshest update of the connection (which also absorbs an error of the clock offset).
   * Each can be inflated by queueing (a pong waits behind a backlog; a page busy from its
   * first update never sees a fresh one), rarely both.
   */
  #judge(now) {
    const secs = (now - this.#judgedAt) / 1000;
    this.#judgedAt = now;
    const [lag] = this.#ages.percentiles(now, [90]);
    this.#ages.clear();
    this.lag = lag;
    const network = Math.min(this.#freshest + this.#offset, Math.min(...this.#rtts) / 2);
    const queued = Math.max(0, lag - network);
    if (queued >= 0) this.behind = queued > this.#high; // NaN: no news, no change
    const handled = this.#handled / secs;
    this.#handled = 0;
    const loopMs = this.#loopLag;
    this.#loopLag = 0;
    const change = this.#adaptive?.observe(queued, now, {
      handled,
      symbols: this.#wanted.size,
      ceiling: this.#ceiling(),
      sentMs: this.#newestTs - this.#offset,
    });
    // A resync would drop the trades in the backlog with the quotes: not while any are held
    // (the cut still applies, by re-subscribing).
    const resync = change != null && this.#adaptive.resync && this.#tradesWanted.size === 0;
    this.#emit('lag', { lagMs: lag, rttMs: this.rtt, loopMs, behind: this.behind, rate: this.rate, resync });
    if (resync) {
      // Drop the backlog: what the buffers hold is older than the snapshots a new connection
      // starts with. It subscribes at the new rates.
      this.stats.resyncs++;
      this.#drop(1000, 'resync');
      this.#attempt = 0;
      this.#open('resync');
    } else {
      this.#syncRates(); // a new cap, or a refused request to make again
    }
  }

  /** The highest rate the app asked for; Infinity if any subscription is unlimited or the server's default. */
  #ceiling() {
    let top = 0;
    for (const asked of this.#wanted.values()) {
      if (asked === undefined || asked === 0) return Infinity;
      top = Math.max(top, asked);
    }
    return top;
  }

  // --- events

  #setState(state, detail) {
    this.state = state;
    this.#emit('state', { state, format: this.#opts.format, transport: this.transport, ...detail });
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

function subscribeBody(symbols, maxRate, trades = false, depth = undefined) {
  const body = { op: 'subscribe', symbols };
  if (maxRate !== undefined) body.max_rate = maxRate ?? 0;
  if (trades) body.trades = true; // omitted: false, the protocol's default
  if (depth !== undefined) body.depth = depth; // omitted: no books
  return body;
}

/** What a connection was asked for a symbol: its max_rate (after the cap), trades and depth. */
const sentKey = (rate, trades, depth = 0) =>
  (trades || depth > 0 ? `${rate}${trades ? '+trades' : ''}${depth > 0 ? `+depth${depth}` : ''}` : rate);
