// tickgate.test.mjs: unit tests of the pure parts of src/server/web/tickgate.js (node --test):
// the binary decoder against golden bytes from the gateway's own encoder (tests/golden.rs),
// trade and gap records, order-book records (hand-built golden bytes: variable length, padding,
// mixed with other records, malformed lengths), JSON update, trade, gap, book and batch
// parsing, decimal formatting and parsing, the
// backoff schedule, the latency helpers, and the decisions of adaptive throttling
// (AdaptiveRate, effectiveRate).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  RECORD_SIZE, decodeFrame, formatFixed, formatDecimal, parseJsonUpdate, parseJsonBatch, backoffDelay,
  percentile, SlidingWindow, closeMeaning, CLOSE_CODES, TickgateError, AdaptiveRate, effectiveRate, MAX_RATE,
  RECORD_L1, RECORD_TRADE, RECORD_GAP, decodeFrameEvents, parseJsonTrade, parseJsonGap, parseJsonBatchEvents,
  RECORD_BOOK, parseJsonBook, parseFixed,
} from '../../src/server/web/tickgate.js';

const golden = (name) => new URL(`./golden/${name}`, import.meta.url);
const goldenBytes = () => readFileSync(golden('binary_frame.bin')); // a Node Buffer (a Uint8Array)
const goldenValues = JSON.parse(readFileSync(golden('binary_frame.json'), 'utf8'));

/** A record as the golden JSON writes it: integers beyond 2^53 and decimals as strings. */
function asGolden(r) {
  return {
    symbol_id: r.symbol_id, snapshot: r.snapshot, seq: String(r.seq),
    bid: r.bid, bid_size: r.bid_size, ask: r.ask, ask_size: r.ask_size,
    last: r.last, last_size: r.last_size, volume: r.volume,
    ts_event: String(r.ts_event), ts_gateway: String(r.ts_gateway),
  };
}

test('decodeFrame reads the golden frame exactly (3 records, 264 bytes)', () => {
  const bytes = goldenBytes();
  assert.equal(bytes.length, 264);
  const records = decodeFrame(bytes);
  assert.equal(records.length, 3);
  assert.deepEqual(records.map(asGolden), goldenValues);
  // BigInt where the protocol's integers exceed 2^53.
  assert.equal(typeof records[1].seq, 'bigint');
  assert.equal(records[1].seq, 9007199254740999n);
  assert.equal(records[1].ts_event, 18446744073709551615n);
});

test('decodeFrame takes an ArrayBuffer, or a view at an offset into a larger buffer', () => {
  const bytes = goldenBytes();
  const exact = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  assert.deepEqual(decodeFrame(exact).map(asGolden), goldenValues);
  const padded = new Uint8Array(264 + 5);
  padded.set(bytes, 5);
  assert.deepEqual(decodeFrame(padded.subarray(5)).map(asGolden), goldenValues);
});

test('decodeFrame rejects a length that is not a multiple of 88', () => {
  const bytes = goldenBytes();
  for (const len of [1, 87, 89, 176 + 1, 263]) {
    assert.throws(() => decodeFrame(bytes.subarray(0, len)), (e) => {
      assert.ok(e instanceof TickgateError);
      assert.equal(e.kind, 'protocol');
      assert.match(e.message, new RegExp(`${len} bytes is not a multiple of 88`));
      return true;
    }, `length ${len}`);
  }
  assert.deepEqual(decodeFrame(new Uint8Array(0)), []);
});

test('decodeFrame skips records of unknown type and ignores reserved flag bits', () => {
  const bytes = Uint8Array.from(goldenBytes());
  bytes[RECORD_SIZE] = 2; // the second record: a type of a later version
  bytes[1] = 0xfe; // the first record: reserved bits set, snapshot bit clear
  const records = decodeFrame(bytes);
  assert.deepEqual(records.map((r) => r.symbol_id), [0, 3]);
  assert.equal(records[0].snapshot, false);
  bytes[1] = 0xff;
  assert.equal(decodeFrame(bytes)[0].snapshot, true);
});

test('formatFixed prints the exact decimal of a value scaled by 1e8', () => {
  const cases = [
    [0n, '0'], [1n, '0.00000001'], [-1n, '-0.00000001'], [100_000_000n, '1'],
    [-150_000_000n, '-1.5'], [18_912_000_000n, '189.12'], [18_912_345_678n, '189.12345678'],
    [10_000_000_000n, '100'], [1_000_000_001n, '10.00000001'],
    [9_223_372_036_854_775_807n, '92233720368.54775807'], // i64::MAX
    [-9_223_372_036_854_775_808n, '-92233720368.54775808'], // i64::MIN
  ];
  for (const [scaled, text] of cases) assert.equal(formatFixed(scaled), text, String(scaled));
});

test('formatDecimal pads and groups without changing a digit', () => {
  assert.equal(formatDecimal('189.1'), '189.10');
  assert.equal(formatDecimal('1234.5'), '1,234.50');
  assert.equal(formatDecimal('0'), '0.00');
  assert.equal(formatDecimal('-0.00000001'), '-0.00000001');
  assert.equal(formatDecimal('92233720368.54775807'), '92,233,720,368.54775807');
  assert.equal(formatDecimal('1234567', { minFraction: 0 }), '1,234,567');
  assert.equal(formatDecimal('-1234567.5', { minFraction: 0, group: '' }), '-1234567.5');
  assert.equal(formatDecimal('999', { minFraction: 0 }), '999');
});

const JSON_UPDATE =
  '{"type":"update","symbol":"AAPL","seq":9007199254740999,"bid":189.12,"bid_size":300,"ask":189.14,' +
  '"ask_size":0.00000001,"last":0,"last_size":0,"volume":92233720368.54775807,' +
  '"ts_event":1732240000123456789,"ts_gateway":1732240000123460001,"snapshot":true}';

test('parseJsonUpdate keeps integers beyond 2^53 and every decimal exactly', () => {
  const u = parseJsonUpdate(JSON_UPDATE);
  assert.deepEqual(u, {
    symbol: 'AAPL', symbol_id: undefined, snapshot: true, seq: 9007199254740999n,
    bid: '189.12', bid_size: '300', ask: '189.14', ask_size: '0.00000001', last: '0',
    last_size: '0', volume: '92233720368.54775807',
    ts_event: 1732240000123456789n, ts_gateway: 1732240000123460001n,
  });
  // What JSON.parse alone would have given: the reason for parsing the text.
  assert.notEqual(BigInt(JSON.parse(JSON_UPDATE).ts_gateway), 1732240000123460001n);
});

test('parseJsonUpdate falls back to JSON.parse for other layouts, still exact', () => {
  // A later version's extra field, fields reordered, and an escaped symbol.
  const text = '{"type":"update","venue":"X","symbol":"A\\"B","snapshot":false,"ts_gateway":1732240000123460001,' +
    '"seq":7,"bid":-1.5,"bid_size":1,"ask":2,"ask_size":1,"last":1.25,"last_size":3,"volume":10,' +
    '"ts_event":1732240000123456789}';
  const u = parseJsonUpdate(text);
  assert.equal(u.symbol, 'A"B');
  assert.equal(u.snapshot, false);
  assert.equal(u.seq, 7n);
  assert.equal(u.bid, '-1.5');
  assert.equal(u.last, '1.25');
  assert.equal(u.ts_gateway, 1732240000123460001n);
  assert.equal(u.ts_event, 1732240000123456789n);
  assert.equal(parseJsonUpdate('{"type":"pong","id":1,"ts":1}'), null);
  assert.throws(() => parseJsonUpdate('{"type":"update",'), SyntaxError);
});

/** An update in the gateway's layout (PROTOCOL.md), as the JSON and batched formats print it. */
const update = (symbol, seq, { bid = '189.12', ts = '1732240000123460001', snapshot = false } = {}) =>
  `{"type":"update","symbol":"${symbol}","seq":${seq},"bid":${bid},"bid_size":300,"ask":189.14,` +
  `"ask_size":0.00000001,"last":0,"last_size":0,"volume":92233720368.54775807,` +
  `"ts_event":1732240000123456789,"ts_gateway":${ts},"snapshot":${snapshot}}`;

test('parseJsonBatch reads every update of a batch, exactly as parseJsonUpdate does', () => {
  const items = [update('AAPL', 9007199254740999n, { snapshot: true }), update('MSFT', 7, { bid: '-0.5' }), update('AAPL', 9007199254741000n)];
  const batch = `[${items.join(',')}]`;
  const updates = parseJsonBatch(batch);
  assert.deepEqual(updates, items.map(parseJsonUpdate));
  assert.deepEqual(updates.map((u) => [u.symbol, u.seq, u.bid]),
    [['AAPL', 9007199254740999n, '189.12'], ['MSFT', 7n, '-0.5'], ['AAPL', 9007199254741000n, '189.12']]);
  assert.equal(updates[1].volume, '92233720368.54775807');
  assert.equal(updates[2].ts_gateway, 1732240000123460001n);
  assert.equal(updates[0].snapshot, true);
  assert.deepEqual(parseJsonBatch(`  ${batch}\n`), updates, 'whitespace around the array');
  assert.deepEqual(parseJsonBatch('[]'), []);
  assert.deepEqual(parseJsonBatch(`[${items[1]}]`), [parseJsonUpdate(items[1])], 'a batch of one');
});

test('parseJsonBatch takes other layouts through the general path, still exact', () => {
  // Whitespace between elements, a later version's fields (one nesting brackets and braces),
  // a symbol whose escapes hold the separators, an element that is not an update.
  const odd = '{"type":"update","symbol":"A\\"},{[B]","extra":{"x":[1,{"y":"]"}]},"seq":5,"bid":1.25,"bid_size":1,' +
    '"ask":2,"ask_size":1,"last":0,"last_size":0,"volume":10,"ts_event":1732240000123456789,' +
    '"ts_gateway":1732240000123460001,"snapshot":false}';
  const text = `[ ${update('SPY', 1)} ,\n${odd}, {"type":"later_kind","n":[1,2]} , ${update('SPY', 2)} ]`;
  const updates = parseJsonBatch(text);
  assert.deepEqual(updates.map((u) => [u.symbol, u.seq]), [['SPY', 1n], ['A"},{[B]', 5n], ['SPY', 2n]]);
  assert.equal(updates[1].bid, '1.25');
  assert.equal(updates[1].ts_gateway, 1732240000123460001n);
  // The gateway's layout up to a point, then another: the whole batch is read the general way.
  const mixed = `[${update('SPY', 1)},${update('SPY', 2).replace('"snapshot":false', '"snapshot":false,"venue":"X"')}]`;
  assert.deepEqual(parseJsonBatch(mixed).map((u) => u.seq), [1n, 2n]);
});

test('parseJsonBatch throws on a malformed batch', () => {
  const u = update('SPY', 1);
  for (const text of ['[', `[${u}`, `[${u},`, `[${u},]`, `[${u}] x`, `[${u}]]`, `[,${u}]`, `[${u},,${u}]`,
    '[}', `[${u.slice(0, -1)}]`, `{"type":"update"}`, '', `[${u}}`]) {
    assert.throws(() => parseJsonBatch(text), SyntaxError, JSON.stringify(text.slice(0, 40) + '…' + text.slice(-10)));
  }
});

// Trades and gaps (subscriptions with trades: true). The layouts, as the gateway prints them:
// src/protocol/json.rs (encode_trade, encode_gap) and src/protocol/binary.rs.
const JSON_TRADE =
  '{"type":"trade","symbol":"AAPL","seq":9007199254740999,"price":92233720368.54775807,"size":0.00000001,' +
  '"side":"buy","trade_id":18446744073709551615,"ts_event":1732240000123456789,"ts_gateway":1732240000123460001}';

test('parseJsonTrade keeps every number exactly; side and tradeId only when sent', () => {
  assert.deepEqual(parseJsonTrade(JSON_TRADE), {
    symbol: 'AAPL', seq: 9007199254740999n, price: '92233720368.54775807', size: '0.00000001', side: 'buy',
    tradeId: 18446744073709551615n, tsEvent: 1732240000123456789n, tsGateway: 1732240000123460001n,
  });
  const bare = '{"type":"trade","symbol":"BTCUSDT","seq":7,"price":-1.5,"size":100,"ts_event":1,"ts_gateway":2}';
  const t = parseJsonTrade(bare);
  assert.deepEqual(t, { symbol: 'BTCUSDT', seq: 7n, price: '-1.5', size: '100', tsEvent: 1n, tsGateway: 2n });
  assert.ok(!('side' in t) && !('tradeId' in t), 'absent, not undefined');
  assert.equal(parseJsonTrade(JSON_TRADE.replace('"side":"buy"', '"side":"sell"')).side, 'sell');
  assert.equal(parseJsonTrade(JSON_TRADE.replace(',"trade_id":18446744073709551615', '')).tradeId, undefined);
  assert.equal(parseJsonTrade(JSON_UPDATE), null);
  assert.throws(() => parseJsonTrade('{"type":"trade",'), SyntaxError);
});

test('parseJsonTrade falls back to JSON.parse for other layouts, still exact', () => {
  // Reordered, a later version's field, an escaped symbol.
  const text = '{"ts_gateway":1732240000123460001,"type":"trade","venue":"X","symbol":"A\\"B","side":"sell",' +
    '"size":0.5,"price":189.12345678,"trade_id":9007199254740993,"seq":12,"ts_event":1732240000123456789}';
  assert.deepEqual(parseJsonTrade(text), {
    symbol: 'A"B', seq: 12n, price: '189.12345678', size: '0.5', side: 'sell', tradeId: 9007199254740993n,
    tsEvent: 1732240000123456789n, tsGateway: 1732240000123460001n,
  });
});

test('parseJsonGap reads a gap notice', () => {
  assert.deepEqual(parseJsonGap('{"type":"gap","symbol":"AAPL","missed":12}'), { symbol: 'AAPL', missed: 12 });
  assert.deepEqual(parseJsonGap('{"missed":3,"symbol":"A\\"B","type":"gap"}'), { symbol: 'A"B', missed: 3 });
  assert.equal(parseJsonGap(JSON_TRADE), null);
});

test('parseJsonBatchEvents: updates, trades and gaps of a batch in order; parseJsonBatch keeps the updates', () => {
  const gap = '{"type":"gap","symbol":"AAPL","missed":12}';
  const bare = '{"type":"trade","symbol":"SPY","seq":8,"price":520,"size":100,"ts_event":1,"ts_gateway":2}';
  const items = [update('AAPL', 1, { snapshot: true }), gap, JSON_TRADE, update('AAPL', 9007199254741000n), bare];
  const batch = `[${items.join(',')}]`;
  const want = [
    { type: 'update', value: parseJsonUpdate(items[0]) },
    { type: 'gap', value: { symbol: 'AAPL', missed: 12 } },
    { type: 'trade', value: parseJsonTrade(JSON_TRADE) },
    { type: 'update', value: parseJsonUpdate(items[3]) },
    { type: 'trade', value: parseJsonTrade(bare) },
  ];
  assert.deepEqual(parseJsonBatchEvents(batch), want);
  assert.deepEqual(parseJsonBatch(batch), [want[0].value, want[3].value], 'parseJsonBatch: the updates only');
  // The general path (whitespace, a reordered trade, a later kind) gives the same events.
  const reordered = JSON_TRADE.replace('{"type":"trade",', '{').replace(/}$/, ',"type":"trade"}');
  const odd = `[ ${items[0]},\n${gap} , ${reordered}, {"type":"later_kind"}, ${items[3]}, ${bare} ]`;
  assert.deepEqual(parseJsonBatchEvents(odd), want);
  assert.deepEqual(parseJsonBatchEvents('[]'), []);
  assert.throws(() => parseJsonBatchEvents(`[${JSON_TRADE},]`), SyntaxError);
  assert.throws(() => parseJsonBatchEvents(`[${JSON_TRADE.slice(0, -1)}]`), SyntaxError);
});

/** A trade record as src/protocol/binary.rs lays it out. */
function tradeRecord({ id, seq, price, size, side = 0, tradeId = 0n, tsEvent = 0n, tsGateway = 0n }) {
  const v = new DataView(new ArrayBuffer(RECORD_SIZE));
  v.setUint8(0, RECORD_TRADE);
  v.setUint8(1, side);
  v.setUint32(4, id, true);
  v.setBigUint64(8, seq, true);
  v.setBigInt64(16, price, true);
  v.setBigInt64(24, size, true);
  v.setBigUint64(32, tradeId, true);
  v.setBigUint64(72, tsEvent, true);
  v.setBigUint64(80, tsGateway, true);
  return new Uint8Array(v.buffer);
}

/** A gap record: `missed` trades of symbol `id`. */
function gapRecord(id, missed) {
  const v = new DataView(new ArrayBuffer(RECORD_SIZE));
  v.setUint8(0, RECORD_GAP);
  v.setUint32(4, id, true);
  v.setBigUint64(8, missed, true);
  return new Uint8Array(v.buffer);
}

test('decodeFrameEvents reads trade and gap records exactly and skips unknown types', () => {
  const golden = goldenBytes();
  const unknown = new Uint8Array(RECORD_SIZE);
  unknown[0] = 9; // a later version's record
  const parts = [
    golden.subarray(0, RECORD_SIZE),
    tradeRecord({ id: 4, seq: 9007199254740999n, price: 9_223_372_036_854_775_807n, size: 1n, side: 1,
      tradeId: 18446744073709551615n, tsEvent: 1732240000123456789n, tsGateway: 18446744073709551615n }),
    unknown,
    gapRecord(4, 12n),
    tradeRecord({ id: 7, seq: 3n, price: -150_000_000n, size: 10_000_000_000n, side: 0, tradeId: 0n, tsEvent: 1n, tsGateway: 2n }),
    tradeRecord({ id: 7, seq: 4n, price: 1n, size: 1n, side: 2, tradeId: 5n }),
    tradeRecord({ id: 7, seq: 5n, price: 1n, size: 1n, side: 3 }), // a side this version does not know
  ];
  const bytes = new Uint8Array(parts.length * RECORD_SIZE);
  parts.forEach((p, i) => bytes.set(p, i * RECORD_SIZE));
  const events = decodeFrameEvents(bytes);
  assert.deepEqual(events.map((e) => e.type), ['update', 'trade', 'gap', 'trade', 'trade', 'trade']);
  assert.equal(bytes[0], RECORD_L1);
  assert.deepEqual(asGolden(events[0].value), goldenValues[0]);
  assert.deepEqual(events[1].value, {
    symbol: undefined, seq: 9007199254740999n, price: '92233720368.54775807', size: '0.00000001', side: 'buy',
    tradeId: 18446744073709551615n, tsEvent: 1732240000123456789n, tsGateway: 18446744073709551615n, symbolId: 4,
  });
  assert.deepEqual(events[2].value, { symbol: undefined, symbolId: 4, missed: 12 });
  assert.deepEqual(events[3].value, { symbol: undefined, seq: 3n, price: '-1.5', size: '100', tsEvent: 1n, tsGateway: 2n, symbolId: 7 },
    'side 0 and trade id 0: none');
  assert.equal(events[4].value.side, 'sell');
  assert.equal(events[4].value.tradeId, 5n);
  assert.ok(!('side' in events[5].value), 'an unknown side byte: no side');
  // decodeFrame gives the L1 records only, and both check the length.
  assert.deepEqual(decodeFrame(bytes).map(asGolden), [goldenValues[0]]);
  assert.throws(() => decodeFrameEvents(bytes.subarray(0, 100)), TickgateError);
});

// Order books (subscriptions with a depth): a book record is `units` × 88 bytes (PROTOCOL.md,
// src/protocol/binary.rs encode_book); JSON books are {"type":"book",...} (json.rs encode_book).

/** Bytes from hex strings. */
const hex = (...parts) => Uint8Array.from(parts.join('').match(/../g), (b) => parseInt(b, 16));

// One book record, hand-built from the layout (not by the code under test): 2 bids and 1 ask
// (48 bytes of levels after the 88-byte header) padded to 2 units, 176 bytes.
const GOLDEN_BOOK = hex(
  '04', '00', '0200', '07000000', '1100000000000000', // type 4, flags 0, 2 units, symbol id 7, seq 17
  '0200', '0100', '0a00', '00'.repeat(50), // 2 bids, 1 ask, depth 10, reserved
  'a33eb4ef07e6e917', 'e0f9b4ef07e6e917', // ts_event 1723161254206652067, ts_gateway 1723161254206700000
  'c03affc49f050000', '106d941600000000', // bid 61837.63 × 3.78826
  '80f8efc49f050000', 'a077ad0300000000', // bid 61837.62 × 0.617
  '007d0ec59f050000', '000e270700000000', // ask 61837.64 × 1.2
  '00'.repeat(40), // zero padding to 2 × 88 bytes
);
const GOLDEN_BOOK_VALUE = {
  symbol: undefined, seq: 17n, depth: 10,
  bids: [{ price: '61837.63', size: '3.78826' }, { price: '61837.62', size: '0.617' }],
  asks: [{ price: '61837.64', size: '1.2' }],
  stale: false, tsEvent: 1723161254206652067n, tsGateway: 1723161254206700000n, symbolId: 7,
};

/** A book record built with DataView: levels [[price, size]] as BigInts × 1e8; `units` defaults to the minimum. */
function bookRecord({ id, seq, depth = 10, bids = [], asks = [], flags = 0, units, tsEvent = 0n, tsGateway = 0n }) {
  const need = 1 + Math.ceil(((bids.length + asks.length) * 16) / RECORD_SIZE);
  const v = new DataView(new ArrayBuffer(Math.max(units ?? need, need) * RECORD_SIZE));
  v.setUint8(0, RECORD_BOOK);
  v.setUint8(1, flags);
  v.setUint16(2, units ?? need, true);
  v.setUint32(4, id, true);
  v.setBigUint64(8, seq, true);
  v.setUint16(16, bids.length, true);
  v.setUint16(18, asks.length, true);
  v.setUint16(20, depth, true);
  v.setBigUint64(72, tsEvent, true);
  v.setBigUint64(80, tsGateway, true);
  [...bids, ...asks].forEach(([price, size], i) => {
    v.setBigInt64(RECORD_SIZE + i * 16, price, true);
    v.setBigInt64(RECORD_SIZE + i * 16 + 8, size, true);
  });
  return new Uint8Array(v.buffer);
}

/** Frames of records back to back. */
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

test('decodeFrameEvents reads a book record exactly from golden bytes, padding included', () => {
  assert.equal(GOLDEN_BOOK.length, 2 * RECORD_SIZE);
  assert.equal(RECORD_BOOK, 4);
  assert.deepEqual(decodeFrameEvents(GOLDEN_BOOK), [{ type: 'book', value: GOLDEN_BOOK_VALUE }]);
  // The builder the other tests use agrees with the golden bytes.
  assert.deepEqual(bookRecord({
    id: 7, seq: 17n, bids: [[6183763000000n, 378826000n], [6183762000000n, 61700000n]], asks: [[6183764000000n, 120000000n]],
    tsEvent: 1723161254206652067n, tsGateway: 1723161254206700000n,
  }), GOLDEN_BOOK);
  // The stale flag is bit 1; the other bits are reserved (bit 0, a snapshot in L1 records, too).
  const stale = Uint8Array.from(GOLDEN_BOOK);
  stale[1] = 2;
  assert.equal(decodeFrameEvents(stale)[0].value.stale, true);
  stale[1] = 0xfd; // every bit but the stale one
  assert.equal(decodeFrameEvents(stale)[0].value.stale, false);
  // An ArrayBuffer, and a view at an offset into a larger buffer.
  const padded = new Uint8Array(GOLDEN_BOOK.length + 3);
  padded.set(GOLDEN_BOOK, 3);
  assert.deepEqual(decodeFrameEvents(padded.subarray(3)), decodeFrameEvents(GOLDEN_BOOK));
  assert.deepEqual(decodeFrameEvents(GOLDEN_BOOK.slice().buffer), decodeFrameEvents(GOLDEN_BOOK));
});

test('a frame of an L1 record, book records and a trade record: every event in order; decodeFrame walks past books', () => {
  const golden = goldenBytes();
  const trade = tradeRecord({ id: 7, seq: 18n, price: 6183764000000n, size: 1n, side: 2, tradeId: 5n, tsEvent: 1n, tsGateway: 2n });
  // 5 bids and 6 asks fill exactly 3 units (88 + 11 × 16 = 264): no padding. Extreme values, exactly.
  const full = bookRecord({
    id: 9, seq: 18446744073709551615n, depth: 50, flags: 2,
    bids: [[9_223_372_036_854_775_807n, 1n], [5n, 2n], [4n, 3n], [3n, 4n], [-9_223_372_036_854_775_808n, 5n]],
    asks: [[6n, 9_223_372_036_854_775_807n], [7n, 1n], [8n, 1n], [9n, 1n], [10n, 1n], [11n, 100_000_000n]],
    tsEvent: 18446744073709551615n, tsGateway: 9007199254740993n,
  });
  assert.equal(full.length, 3 * RECORD_SIZE);
  const empty = bookRecord({ id: 3, seq: 1n, depth: 1 }); // both sides empty: the header alone
  assert.equal(empty.length, RECORD_SIZE);
  const frame = concat(golden.subarray(0, RECORD_SIZE), GOLDEN_BOOK, trade, full, empty, golden.subarray(RECORD_SIZE));
  const events = decodeFrameEvents(frame);
  assert.deepEqual(events.map((e) => e.type), ['update', 'book', 'trade', 'book', 'book', 'update', 'update']);
  assert.deepEqual(asGolden(events[0].value), goldenValues[0]);
  assert.deepEqual(events[1].value, GOLDEN_BOOK_VALUE);
  assert.equal(events[2].value.seq, 18n);
  assert.equal(events[2].value.price, '61837.64');
  assert.equal(events[2].value.side, 'sell');
  assert.deepEqual(events[3].value, {
    symbol: undefined, seq: 18446744073709551615n, depth: 50,
    bids: [
      { price: '92233720368.54775807', size: '0.00000001' }, { price: '0.00000005', size: '0.00000002' },
      { price: '0.00000004', size: '0.00000003' }, { price: '0.00000003', size: '0.00000004' },
      { price: '-92233720368.54775808', size: '0.00000005' },
    ],
    asks: [
      { price: '0.00000006', size: '92233720368.54775807' }, { price: '0.00000007', size: '0.00000001' },
      { price: '0.00000008', size: '0.00000001' }, { price: '0.00000009', size: '0.00000001' },
      { price: '0.0000001', size: '0.00000001' }, { price: '0.00000011', size: '1' },
    ],
    stale: true, tsEvent: 18446744073709551615n, tsGateway: 9007199254740993n, symbolId: 9,
  });
  assert.deepEqual(events[4].value, {
    symbol: undefined, seq: 1n, depth: 1, bids: [], asks: [], stale: false, tsEvent: 0n, tsGateway: 0n, symbolId: 3,
  });
  assert.deepEqual(events.slice(5).map((e) => asGolden(e.value)), goldenValues.slice(1));
  // decodeFrame: the L1 records only, found past the books' variable lengths.
  assert.deepEqual(decodeFrame(frame).map(asGolden), goldenValues);
  // A record longer than it needs to be (more units than its levels take) is walked past whole.
  const roomy = bookRecord({ id: 7, seq: 2n, bids: [[1n, 1n]], units: 4 });
  assert.equal(roomy.length, 4 * RECORD_SIZE);
  assert.deepEqual(decodeFrameEvents(concat(roomy, trade)).map((e) => e.type), ['book', 'trade']);
});

test('a book record whose length is 0 units, runs past the frame or cannot hold its levels is a bad frame', () => {
  const golden = goldenBytes().subarray(0, RECORD_SIZE);
  const check = (bytes, pattern, what) => {
    for (const decode of [decodeFrameEvents, decodeFrame]) {
      assert.throws(() => decode(bytes), (e) => {
        assert.ok(e instanceof TickgateError, what);
        assert.equal(e.kind, 'protocol');
        assert.equal(e.code, 'bad_frame');
        assert.match(e.message, pattern, what);
        return true;
      }, `${what} (${decode.name})`);
    }
  };
  const zero = bookRecord({ id: 1, seq: 1n });
  zero[2] = 0;
  check(concat(golden, zero), /book record at byte 88 has a length of 0 units/, 'units 0');
  const long = Uint8Array.from(GOLDEN_BOOK);
  long[2] = 3; // 3 units in a frame that has 2 after it
  check(long, /book record at byte 0 of 3 units \(264 bytes\) runs past the frame's end \(176 bytes\)/, 'past the end');
  check(concat(golden, long.subarray(0, RECORD_SIZE)), /runs past the frame's end/, 'the header alone');
  const crowded = Uint8Array.from(GOLDEN_BOOK);
  crowded[16] = 10; // 10 bids and 1 ask: 88 + 176 bytes, in 2 units
  check(crowded, /10 bids and 1 asks do not fit in 2 units \(176 bytes\)/, 'levels beyond the record');
  // A frame whose length is not a multiple of 88 is still refused first.
  check(GOLDEN_BOOK.subarray(0, 100), /100 bytes is not a multiple of 88/, 'frame length');
});

const JSON_BOOK =
  '{"type":"book","symbol":"BTCUSDT","seq":17,"depth":10,"bids":[[61837.63,3.78826],[61837.62,0.617]],' +
  '"asks":[[61837.64,1.2]],"stale":false,"ts_event":1723161254206652067,"ts_gateway":1723161254206700000}';
const JSON_BOOK_VALUE = {
  symbol: 'BTCUSDT', seq: 17n, depth: 10,
  bids: [{ price: '61837.63', size: '3.78826' }, { price: '61837.62', size: '0.617' }],
  asks: [{ price: '61837.64', size: '1.2' }],
  stale: false, tsEvent: 1723161254206652067n, tsGateway: 1723161254206700000n,
};

test('parseJsonBook keeps every number exactly, as the binary record does', () => {
  assert.deepEqual(parseJsonBook(JSON_BOOK), JSON_BOOK_VALUE);
  const { symbolId, ...binary } = GOLDEN_BOOK_VALUE;
  assert.deepEqual({ ...parseJsonBook(JSON_BOOK), symbol: undefined }, binary, 'the same book in binary and JSON');
  // Beyond 2^53 and beyond a double's 15-17 digits; integral values without a decimal point;
  // empty sides; stale.
  const extreme = '{"type":"book","symbol":"X","seq":18446744073709551615,"depth":50,' +
    '"bids":[[92233720368.54775807,0.00000001],[189,100]],"asks":[],"stale":true,' +
    '"ts_event":18446744073709551615,"ts_gateway":9007199254740993}';
  assert.deepEqual(parseJsonBook(extreme), {
    symbol: 'X', seq: 18446744073709551615n, depth: 50,
    bids: [{ price: '92233720368.54775807', size: '0.00000001' }, { price: '189', size: '100' }], asks: [],
    stale: true, tsEvent: 18446744073709551615n, tsGateway: 9007199254740993n,
  });
  assert.notEqual(String(JSON.parse(extreme).bids[0][0]), '92233720368.54775807', 'what JSON.parse alone would give');
  const none = parseJsonBook(JSON_BOOK.replace(/"bids":\[.*\],"stale"/, '"bids":[],"asks":[],"stale"'));
  assert.deepEqual([none.bids, none.asks], [[], []]);
  assert.equal(parseJsonBook(JSON_UPDATE), null);
  assert.equal(parseJsonBook(JSON_TRADE), null);
  assert.throws(() => parseJsonBook('{"type":"book",'), SyntaxError);
});

test('parseJsonBook reads other layouts exactly and refuses a malformed book', () => {
  // Reordered, blanks, a later version's fields (one holding a "bids" of its own), an escaped symbol.
  const odd = '{ "stale" : true, "symbol":"A\\"],[B", "extra":{"bids":[[1,2]],"x":"]"},"type":"book",\n' +
    '"asks" : [ [ 2 , 1.5 ] , [2.5,0.00000001] ], "bids":[[1.25,3]], "seq":9007199254740993,"depth":5,' +
    '"ts_gateway":1723161254206700001,"ts_event":1723161254206652067,"venue":[1,{"y":2}]}';
  assert.deepEqual(parseJsonBook(odd), {
    symbol: 'A"],[B', seq: 9007199254740993n, depth: 5,
    bids: [{ price: '1.25', size: '3' }], asks: [{ price: '2', size: '1.5' }, { price: '2.5', size: '0.00000001' }],
    stale: true, tsEvent: 1723161254206652067n, tsGateway: 1723161254206700001n,
  });
  // A wrong book would replace a good one: anything malformed throws instead of reading as 0.
  const bad = {
    'no bids': JSON_BOOK.replace('"bids":[[61837.63,3.78826],[61837.62,0.617]],', ''),
    'bids not pairs': JSON_BOOK.replace('[61837.62,0.617]', '[61837.62]'),
    'a price as a string': JSON_BOOK.replace('[61837.64,1.2]', '["61837.64",1.2]'),
    'an exponent': JSON_BOOK.replace('1.2]', '1.2e0]'),
    'asks not a list': JSON_BOOK.replace('"asks":[[61837.64,1.2]]', '"asks":{}'),
    'no seq': JSON_BOOK.replace('"seq":17,', ''),
    'a negative seq': JSON_BOOK.replace('"seq":17', '"seq":-17'),
    'no symbol': JSON_BOOK.replace('"symbol":"BTCUSDT",', ''),
    'no ts_gateway': JSON_BOOK.replace(',"ts_gateway":1723161254206700000', ''),
  };
  for (const [what, text] of Object.entries(bad)) assert.throws(() => parseJsonBook(text), SyntaxError, what);
});

test('parseJsonBatchEvents: books beside updates, trades and gaps, in order; parseJsonBatch skips them', () => {
  const gap = '{"type":"gap","symbol":"AAPL","missed":2}';
  const stale = JSON_BOOK.replace('"seq":17', '"seq":18').replace('"stale":false', '"stale":true');
  const items = [update('BTCUSDT', 1, { snapshot: true }), JSON_BOOK, JSON_TRADE, stale, gap, update('BTCUSDT', 2)];
  const want = [
    { type: 'update', value: parseJsonUpdate(items[0]) },
    { type: 'book', value: JSON_BOOK_VALUE },
    { type: 'trade', value: parseJsonTrade(JSON_TRADE) },
    { type: 'book', value: { ...JSON_BOOK_VALUE, seq: 18n, stale: true } },
    { type: 'gap', value: { symbol: 'AAPL', missed: 2 } },
    { type: 'update', value: parseJsonUpdate(items[5]) },
  ];
  assert.deepEqual(parseJsonBatchEvents(`[${items.join(',')}]`), want);
  assert.deepEqual(parseJsonBatch(`[${items.join(',')}]`), [want[0].value, want[5].value]);
  // The general path (a blank between elements) gives the same events.
  assert.deepEqual(parseJsonBatchEvents(`[ ${items.join(' , ')} ]`), want);
  assert.deepEqual(parseJsonBatchEvents(`[${JSON_BOOK}]`), [want[1]], 'a batch of one book');
  // A malformed book makes the whole batch malformed, as any malformed element does.
  assert.throws(() => parseJsonBatchEvents(`[${items[0]},${JSON_BOOK.replace('[61837.62,0.617]', '[1]')}]`), SyntaxError);
});

test('parseFixed is the exact inverse of formatFixed', () => {
  const cases = [
    ['0', 0n], ['0.00000001', 1n], ['-0.00000001', -1n], ['1', 100_000_000n], ['189.12', 18_912_000_000n],
    ['61837.64', 6_183_764_000_000n], ['92233720368.54775807', 9_223_372_036_854_775_807n],
    ['-92233720368.54775808', -9_223_372_036_854_775_808n], ['123456789012345678901', 12345678901234567890100000000n],
  ];
  for (const [text, scaled] of cases) {
    assert.equal(parseFixed(text), scaled, text);
    assert.equal(formatFixed(scaled), text, String(scaled));
  }
  assert.equal(parseFixed('1.50'), 150_000_000n, 'trailing zeros');
  assert.equal(formatFixed(parseFixed('61837.64') - parseFixed('61837.63')), '0.01', 'a spread, exactly');
  for (const bad of ['', '-', '1.', '.5', '1.123456789', '1e5', ' 1', '1,000', 'NaN', '+1']) {
    assert.throws(() => parseFixed(bad), RangeError, JSON.stringify(bad));
  }
});

test('effectiveRate: the app\'s rate under the adaptive cap', () => {
  const cases = [
    // asked, cap, asked of the gateway
    [20, Infinity, 20], [0, Infinity, 0], [undefined, Infinity, undefined],
    [20, 5, 5], [2, 5, 2], [0, 5, 5], [undefined, 5, 5], [0.5, 1, 0.5],
  ];
  for (const [asked, cap, want] of cases) assert.equal(effectiveRate(asked, cap), want, `${asked} under ${cap}`);
});

/**
 * Drives an AdaptiveRate with observations one second apart: [lagMs, load] pairs (load's
 * sentMs defaults to the observation's time: the newest handled update was just sent).
 * Returns what each observation returned.
 */
function drive(ctl, steps, start = 1_000) {
  return steps.map(([lag, load = {}], i) => {
    const now = start + i * 1_000;
    return ctl.observe(lag, now, { handled: 480, symbols: 30, sentMs: now, ...load });
  });
}

test('AdaptiveRate cuts to half of what got through per symbol, at once, and flags a resync when far behind', () => {
  const ctl = new AdaptiveRate();
  assert.equal(ctl.rate, Infinity);
  assert.deepEqual(drive(ctl, [[20], [140], [NaN]]), [null, null, null], 'under high, or no evidence: no change');
  assert.equal(ctl.observe(300, 4_000, { handled: 480, symbols: 30, sentMs: 4_000 }), 8, '480/s over 30 symbols, halved');
  assert.equal(ctl.rate, 8);
  assert.equal(ctl.resync, false, 'under resyncMs: the backlog drains');

  const far = new AdaptiveRate();
  assert.equal(far.observe(900, 1_000, { handled: 500, symbols: 200, sentMs: 1_000 }), 1.25);
  assert.equal(far.resync, true, 'over resyncMs (500): drop the backlog');
  assert.equal(new AdaptiveRate({ floor: 2 }).observe(900, 1_000, { handled: 5, symbols: 200 }), 2, 'never under the floor');
  assert.equal(new AdaptiveRate().observe(900, 1_000, { handled: 1e6, symbols: 1 }), MAX_RATE, 'never over MAX_RATE');
  assert.equal(new AdaptiveRate().observe(900, 1_000, { handled: 1000, symbols: 3 }), 167, 'three significant digits');
});

test('AdaptiveRate judges a change only by updates sent after it, and takes the first as a baseline', () => {
  const ctl = new AdaptiveRate();
  assert.equal(ctl.observe(400, 1_000, { handled: 480, symbols: 30, sentMs: 1_000 }), 8);
  // Still working through what was sent before the cut: however far behind, wait.
  assert.equal(ctl.observe(2_000, 2_000, { handled: 480, symbols: 30, sentMs: 999 }), null);
  assert.equal(ctl.observe(3_000, 3_000, { handled: 480, symbols: 30, sentMs: 900 }), null);
  // The first observation of updates sent after it: a baseline, not a reason to cut again.
  assert.equal(ctl.observe(3_500, 4_000, { handled: 480, symbols: 30, sentMs: 1_200 }), null);
  // Behind and not getting better: cut again (half of min(rate, what got through)).
  assert.equal(ctl.observe(3_500, 5_000, { handled: 480, symbols: 30, sentMs: 4_900 }), 4);
  assert.equal(ctl.observe(3_400, 6_000, { handled: 60, symbols: 30, sentMs: 5_900 }), null, 'baseline again');
  assert.equal(ctl.observe(3_400, 7_000, { handled: 60, symbols: 30, sentMs: 6_900 }), 1, 'what got through (2/s) halved');
  assert.equal(ctl.observe(900, 8_000, { handled: 30, symbols: 30, sentMs: 7_900 }), null, 'baseline');
  assert.equal(ctl.observe(900, 9_000, { handled: 30, symbols: 30, sentMs: 8_900 }), null, 'at the floor: nothing left to cut');
  assert.equal(ctl.rate, 1);
});

test('AdaptiveRate leaves a lag that is falling fast enough alone', () => {
  const ctl = new AdaptiveRate();
  drive(ctl, [[400], [3_000], [2_000]]); // cut, baseline (3000), then 1000 ms shed per s
  assert.equal(ctl.rate, 8);
  // 1 s/s: under high (150) from 1,000 ms within 3 s: on course.
  assert.equal(ctl.observe(1_000, 4_000, { handled: 480, symbols: 30, sentMs: 4_000 }), null);
  // 100 ms/s from 900 ms: 7.5 s to go, longer than recoverMs (3 s): cut.
  assert.equal(ctl.observe(900, 5_000, { handled: 480, symbols: 30, sentMs: 5_000 }), 4);
});

test('AdaptiveRate doubles the cap after raiseAfterMs caught up, and lifts it at the ceiling', () => {
  const ctl = new AdaptiveRate(); // low 50, raiseAfterMs 3000
  drive(ctl, [[400, { handled: 300, symbols: 30 }]]); // cut to 5
  assert.equal(ctl.rate, 5);
  const load = { ceiling: 20 };
  // baseline (starts the calm run), then 3 s more under low before the first doubling.
  assert.deepEqual(drive(ctl, [[30, load], [30, load], [30, load], [30, load]], 2_000), [null, null, null, 10]);
  // A lag between low and high restarts the calm run.
  assert.deepEqual(drive(ctl, [[30, load], [30, load], [80, load], [30, load], [30, load], [30, load], [30, load]], 6_000),
    [null, null, null, null, null, null, Infinity]);
  assert.equal(ctl.rate, Infinity, 'doubling to the app\'s ceiling (20) lifts the cap');
  assert.deepEqual(drive(ctl, [[30, load], [30, load], [30, load], [30, load]], 13_000), [null, null, null, null], 'nothing to raise');
});

test('AdaptiveRate with unlimited subscriptions doubles up to MAX_RATE before lifting the cap', () => {
  const ctl = new AdaptiveRate({ raiseAfterMs: 0 });
  ctl.observe(400, 0, { handled: 8_000, symbols: 10, sentMs: 0 }); // cut to 400
  assert.equal(ctl.rate, 400);
  const rates = [];
  for (let t = 1_000; rates.at(-1) !== Infinity && t < 20_000; t += 1_000) {
    const r = ctl.observe(10, t, { ceiling: Infinity, sentMs: t });
    if (r !== null) rates.push(r);
  }
  assert.deepEqual(rates, [800, Infinity]);
});

test('AdaptiveRate is deterministic and checks its options', () => {
  const run = () => {
    const ctl = new AdaptiveRate();
    return drive(ctl, [[10], [400], [700], [900], [900], [40], [40], [40], [40], [40], [200], [40]]);
  };
  assert.deepEqual(run(), run());
  assert.throws(() => new AdaptiveRate({ low: 150, high: 150 }), RangeError);
  assert.throws(() => new AdaptiveRate({ floor: 0 }), RangeError);
  assert.throws(() => new AdaptiveRate({ floor: MAX_RATE + 1 }), RangeError);
  assert.deepEqual({ ...AdaptiveRate.DEFAULTS }, { high: 150, low: 50, floor: 1, raiseAfterMs: 3000, recoverMs: 3000, resyncMs: 500 });
});

test('backoffDelay without jitter doubles from base up to max', () => {
  const opts = { base: 250, max: 10_000, jitter: 'none' };
  const schedule = Array.from({ length: 10 }, (_, i) => backoffDelay(i, opts));
  assert.deepEqual(schedule, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000]);
  assert.equal(backoffDelay(-3, opts), 250, 'a negative attempt counts as the first');
  assert.equal(backoffDelay(1e6, opts), 10_000, 'a huge attempt is capped, not Infinity or NaN');
});

test('backoffDelay with full jitter stays in [0, cap) and follows the injected random', () => {
  const at = (attempt, r) => backoffDelay(attempt, { base: 100, max: 3_000, jitter: 'full', random: () => r });
  assert.equal(at(0, 0), 0);
  assert.equal(at(0, 0.5), 50);
  assert.equal(at(3, 0.5), 400);
  assert.equal(at(10, 0.5), 1_500); // capped at max before the jitter
  assert.ok(at(10, 0.999999) < 3_000);
  // Defaults: base 250, cap 10 s, full jitter.
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(i % 12);
    assert.ok(d >= 0 && d < Math.min(10_000, 250 * 2 ** (i % 12)), `attempt ${i % 12}: ${d}`);
  }
});

test('backoffDelay with equal jitter stays in [cap/2, cap)', () => {
  const at = (attempt, r) => backoffDelay(attempt, { base: 200, max: 5_000, jitter: 'equal', random: () => r });
  assert.equal(at(0, 0), 100);
  assert.equal(at(2, 0), 400);
  assert.equal(at(2, 0.5), 600);
  assert.equal(at(20, 0), 2_500);
  assert.ok(at(20, 0.999999) < 5_000);
});

test('backoffDelay is deterministic given a seeded random', () => {
  const seeded = (seed) => () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  const run = () => {
    const random = seeded(42);
    return Array.from({ length: 8 }, (_, i) => backoffDelay(i, { random }));
  };
  assert.deepEqual(run(), run());
});

test('percentile uses the nearest rank and does not touch its input', () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile(values, 0), 1);
  assert.equal(values[0], 100, 'input not sorted in place');
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([3, 1, 2], 50), 2);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('SlidingWindow keeps the newest samples within the span', () => {
  const w = new SlidingWindow({ span: 1000, capacity: 4 });
  w.add(100, 0);
  w.add(1, 500);
  w.add(2, 900);
  assert.deepEqual(w.percentiles(1000, [50, 100]), [2, 100]);
  assert.deepEqual(w.percentiles(1600, [50, 100]), [2, 2], 'older than the span: dropped');
  for (const v of [10, 20, 30, 40, 50]) w.add(v, 1700); // over capacity: the oldest go
  assert.deepEqual(w.percentiles(1700, [0, 100]), [20, 50]);
  w.clear();
  assert.ok(Number.isNaN(w.percentiles(1700, [50])[0]));
});

test('SlidingWindow counts exactly the samples taken after a clear', () => {
  // It once kept writing where it had left off, so the first samples after a clear were read
  // from the wrong slots: here, the 1 and 2 taken before it.
  const w = new SlidingWindow({ span: 1000, capacity: 4 });
  for (const v of [1, 2, 3]) w.add(v, 100);
  w.clear();
  w.add(7, 200);
  assert.deepEqual(w.percentiles(200, [0, 100]), [7, 7]);
  w.add(9, 200);
  assert.deepEqual(w.percentiles(200, [0, 100]), [7, 9]);
});

test('close codes map to their meaning', () => {
  assert.equal(closeMeaning(1001), 'server shutting down');
  assert.match(closeMeaning(1008), /slow consumer, idle timeout, no subscription or token expired/);
  assert.match(closeMeaning(1009), /max_message_bytes/);
  assert.match(closeMeaning(1002), /protocol error/);
  assert.match(closeMeaning(1006), /refused/);
  assert.equal(closeMeaning(4321), 'application close');
  assert.equal(closeMeaning(1234), 'close code 1234');
  for (const code of [1001, 1002, 1003, 1007, 1008, 1009]) assert.ok(CLOSE_CODES[code], `PROTOCOL.md's ${code}`);
});
