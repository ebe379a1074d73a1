// transport.test.mjs: TickgateClient (src/server/web/tickgate.js) over Server-Sent Events,
// against a scripted fake EventSource, WebSocket and fetch (node --test): the streams it opens
// (one per distinct max rate, trades and depth, their URLs, at most `sseStreams`), the same
// events as over a WebSocket (updates, trades, gaps, books, status, seq tracking), subscription changes
// re-opening only the streams they touch, refusals read with fetch (unknown symbols dropped,
// 503 retried with backoff, a refused token), what cannot be done without sending (list,
// setMaxBandwidth), adaptive throttling, and 'auto': the fallback after WebSocket failures
// while the gateway answers HTTP (and not while it is down), and the probes that bring it
// back to a WebSocket. The real gateway is exercised by sse.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connect, closeMeaning } from '../../src/server/web/tickgate.js';

/** A WebSocket stand-in, as in client.test.mjs. */
class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = new URL(url);
    this.protocols = protocols;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.closedWith = { code, reason }; }
  open() { this.onopen?.({}); }
  receive(data) { this.onmessage?.({ data }); }
  reply(obj) { this.receive(JSON.stringify(obj)); }
  serverClose(code, reason = '') { this.onclose?.({ code, reason }); }
  static last() { return FakeSocket.all.at(-1); }
}

/** An EventSource stand-in the test drives: open(), send(), fail(); `closed` once the client closes it. */
class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.closed = false;
    FakeEventSource.all.push(this);
  }
  close() { this.closed = true; }
  open() { this.onopen?.({}); }
  /** One event: `data` is an object (sent as JSON) or text. */
  send(data) { if (!this.closed) this.onmessage?.({ data: typeof data === 'string' ? data : JSON.stringify(data) }); }
  fail() { this.onerror?.({}); }
  /** Opens and sends the `subscribed` event, with ids 0, 1, ... unless given. */
  accept(ids) {
    this.open();
    this.send({ type: 'subscribed', symbols: ids ?? Object.fromEntries(this.symbols.map((s, i) => [s, i])) });
  }
  get symbols() { return this.url.searchParams.get('symbols').split(','); }
  get query() { return Object.fromEntries(this.url.searchParams); }
  static live() { return FakeEventSource.all.filter((e) => !e.closed); }
  /** The live stream of `symbol`. */
  static of(symbol) { return FakeEventSource.live().find((e) => e.symbols.includes(symbol)); }
}

/**
 * A fetch whose answers the test sets: `http.answer(url) => Response | Error | undefined`
 * (undefined: 200 "ok"); every URL asked is in `http.asked`.
 */
function fakeHttp() {
  const http = { asked: [], answer: () => undefined };
  http.fetch = async (url) => {
    const u = new URL(url);
    http.asked.push(`${u.pathname}${u.search}`);
    const r = http.answer(u);
    if (r instanceof Error) throw r;
    return r ?? new Response('ok\n');
  };
  return http;
}
const refusal = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

/** Fails the client's WebSocket attempts (as a proxy would: 1006, never open) until it falls back. */
async function failWebSockets(c) {
  for (let i = 0; i < 6 && c.transport === 'websocket'; i++) {
    FakeSocket.last().serverClose(1006);
    await tick();
  }
}

const quiet = (promise) => promise.catch(() => {});
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** A client on fakes (SSE changes applied at once, no pings, reconnects without delay); events in `seen`. */
function client(options = {}) {
  FakeSocket.all = [];
  FakeEventSource.all = [];
  const http = fakeHttp();
  const c = connect('http://gateway.test/ws', {
    WebSocket: FakeSocket, EventSource: FakeEventSource, fetch: http.fetch,
    pingInterval: 0, backoff: { random: () => 0 }, sseDebounce: 0, ...options,
  });
  const seen = { update: [], state: [], error: [], status: [], trade: [], gap: [], book: [] };
  for (const type of Object.keys(seen)) c.on(type, (v) => seen[type].push(v));
  return { c, seen, http };
}

const jsonUpdate = (symbol, seq, snapshot = false) =>
  `{"type":"update","symbol":"${symbol}","seq":${seq},"bid":1.5,"bid_size":1,"ask":1.6,"ask_size":1,` +
  `"last":1.55,"last_size":1,"volume":10,"ts_event":1800000000000000001,"ts_gateway":1800000000000000002,"snapshot":${snapshot}}`;
const jsonTrade = (symbol, seq) =>
  `{"type":"trade","symbol":"${symbol}","seq":${seq},"price":189.13,"size":100,"side":"buy","trade_id":${1000 + seq},` +
  '"ts_event":1800000000000000001,"ts_gateway":1800000000000000002}';
const jsonGap = (symbol, missed) => `{"type":"gap","symbol":"${symbol}","missed":${missed}}`;

test('transport sse: one stream per distinct max rate and trades, the same events as a WebSocket', async () => {
  const { c, seen, http } = client({ transport: 'sse' });
  assert.equal(c.transport, 'sse');
  assert.equal(FakeSocket.all.length, 0, 'no WebSocket, ever');
  await tick();
  assert.deepEqual(http.asked, ['/healthz'], 'holding nothing, it opens once the gateway answers');
  assert.deepEqual(seen.state.map((s) => [s.state, s.transport]), [['open', 'sse']]); // ('connecting' came before any listener)
  assert.equal(c.feed, 'up');

  const aapl = c.subscribe(['AAPL', 'MSFT'], { maxRate: 4, trades: true });
  const spy = c.subscribe(['SPY']);
  const qqq = c.subscribe(['QQQ'], { maxRate: 0 });
  assert.equal(FakeEventSource.all.length, 0, 'changes wait for the debounce');
  await tick();
  assert.deepEqual(FakeEventSource.all.map((e) => [e.url.origin + e.url.pathname, e.query]), [
    ['http://gateway.test/sse', { symbols: 'AAPL,MSFT', trades: '1', max_rate: '4' }],
    ['http://gateway.test/sse', { symbols: 'SPY' }], // the server's default rate
    ['http://gateway.test/sse', { symbols: 'QQQ', max_rate: '0' }], // unlimited
  ]);
  const [trades, plain, all] = FakeEventSource.all;
  trades.accept({ AAPL: 4, MSFT: 7 });
  assert.deepEqual(await aapl, { AAPL: 4, MSFT: 7 }, 'resolved by the stream\'s subscribed event');
  plain.accept({ SPY: 0 });
  all.accept({ QQQ: 1 });
  assert.deepEqual(await spy, { SPY: 0 });
  assert.deepEqual(await qqq, { QQQ: 1 });

  trades.send(jsonUpdate('AAPL', 10, true));
  trades.send(jsonTrade('AAPL', 11));
  trades.send(jsonGap('AAPL', 3));
  trades.send(jsonTrade('AAPL', 15));
  trades.send(jsonUpdate('AAPL', 16));
  trades.send(jsonUpdate('AAPL', 14)); // backwards: dropped, reported once
  plain.send(jsonUpdate('SPY', 5, true));
  plain.send(jsonTrade('SPY', 6)); // SPY holds no trades: not delivered
  assert.deepEqual(seen.update.map((u) => [u.symbol, u.seq, u.gap, u.snapshot]),
    [['AAPL', 10n, 0, true], ['AAPL', 16n, 5, false], ['SPY', 5n, 0, true]]);
  assert.equal(seen.update[0].bid, '1.5');
  assert.equal(seen.update[0].num.last, 1.55);
  assert.deepEqual(seen.trade.map(({ age, ...t }) => t), [
    { symbol: 'AAPL', seq: 11n, price: '189.13', size: '100', side: 'buy', tradeId: 1011n, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n },
    { symbol: 'AAPL', seq: 15n, price: '189.13', size: '100', side: 'buy', tradeId: 1015n, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n },
  ]);
  assert.deepEqual(seen.gap, [{ symbol: 'AAPL', missed: 3 }]);
  assert.deepEqual(seen.error.map((e) => e.code), ['seq_backwards']);
  assert.equal(c.stats.trades, 2);
  assert.equal(c.stats.tradesMissed, 3);

  // Every stream reports the feed's state: one event per change.
  for (const es of [trades, plain, all]) es.send({ type: 'status', feed: 'down' });
  for (const es of [trades, plain, all]) es.send({ type: 'status', feed: 'up' });
  assert.deepEqual(seen.status, [{ feed: 'down' }, { feed: 'up' }]);
  c.close();
  assert.ok(FakeEventSource.all.every((e) => e.closed), 'close() closes every stream');
  assert.equal(c.state, 'closed');
});

test('over SSE, a change re-opens only the streams it touches, after the debounce; unsubscribe', async () => {
  const { c, seen } = client({ transport: 'sse', sseDebounce: 30 });
  await tick();
  quiet(c.subscribe(['AAPL'], { maxRate: 2 }));
  quiet(c.subscribe(['MSFT'], { maxRate: 2 }));
  await tick(60);
  assert.deepEqual(FakeEventSource.all.map((e) => e.query), [{ symbols: 'AAPL,MSFT', max_rate: '2' }], 'two calls, one stream');
  const both = FakeEventSource.all[0];
  both.accept();
  both.send(jsonUpdate('AAPL', 10, true));
  both.send(jsonUpdate('MSFT', 20, true));
  quiet(c.subscribe(['SPY'], { maxRate: 5 }));
  await tick(60);
  assert.equal(FakeEventSource.all.length, 2, 'a new rate: a stream of its own');
  assert.ok(!both.closed, 'the others are not touched');
  const spy = FakeEventSource.of('SPY');
  spy.accept();

  // MSFT moves to 5/s: its old stream closes before the new ones open; the new snapshot starts its seqs afresh.
  quiet(c.setMaxRate(['MSFT'], 5));
  await tick(60);
  assert.ok(both.closed && spy.closed);
  assert.deepEqual(FakeEventSource.live().map((e) => e.query), [
    { symbols: 'AAPL', max_rate: '2' }, { symbols: 'MSFT,SPY', max_rate: '5' }, // in the order they were subscribed
  ]);
  both.send(jsonUpdate('AAPL', 11)); // a closed stream: nothing more of it
  const [aapl, fives] = FakeEventSource.live();
  aapl.accept();
  fives.accept();
  fives.send(jsonUpdate('MSFT', 3, true)); // another process, perhaps: seqs start afresh
  fives.send(jsonUpdate('MSFT', 4));
  assert.deepEqual(seen.update.slice(2).map((u) => [u.symbol, u.seq, u.gap]), [['MSFT', 3n, 0], ['MSFT', 4n, 0]]);
  assert.equal(seen.error.length, 0);

  // Unsubscribed: nothing more of it at once; its stream re-opens without it later.
  assert.deepEqual(await c.unsubscribe(['SPY']), ['SPY']);
  fives.send(jsonUpdate('SPY', 9));
  assert.equal(seen.update.length, 4);
  await tick(60);
  assert.ok(fives.closed && !aapl.closed);
  assert.deepEqual(FakeEventSource.live().map((e) => e.query.symbols), ['AAPL', 'MSFT']);
  await c.unsubscribe(['AAPL', 'MSFT']);
  await tick(60);
  assert.equal(FakeEventSource.live().length, 0, 'nothing held: no stream');
  assert.equal(c.state, 'open');
  c.close();
});

test('over SSE, refusals are read with fetch: unknown symbols dropped, 503 retried, a refused token kept out', async () => {
  const { c, seen, http } = client({ transport: 'sse' });
  await tick();
  http.answer = (u) => (u.pathname === '/sse' && u.searchParams.get('symbols').includes('NOPE')
    ? refusal(400, { error: 'unknown_symbol', message: 'unknown symbol(s)', symbols: ['NOPE'] }) : undefined);
  const sub = c.subscribe(['AAPL', 'NOPE']);
  await tick();
  FakeEventSource.all[0].fail(); // an EventSource cannot read a 400
  await tick();
  assert.deepEqual(http.asked.slice(1), ['/sse?symbols=AAPL%2CNOPE']);
  assert.equal(seen.error.length, 1);
  assert.equal(seen.error[0].kind, 'reply');
  assert.equal(seen.error[0].code, 'unknown_symbol');
  assert.deepEqual(seen.error[0].symbols, ['NOPE']);
  assert.deepEqual([...c.subscriptions.keys()], ['AAPL'], 'the known one stays');
  assert.deepEqual(FakeEventSource.live().map((e) => e.query.symbols), ['AAPL']);
  FakeEventSource.live()[0].accept({ AAPL: 4 });
  assert.deepEqual(await sub, { AAPL: 4 });

  // The gateway is full: 503, then the streams are opened again with backoff.
  http.answer = (u) => (u.pathname === '/sse' ? refusal(503, { error: 'capacity', message: 'full' }) : undefined);
  FakeEventSource.live()[0].fail(); // lost after it opened: the connection is lost
  assert.equal(seen.state.at(-1).state, 'reconnecting');
  assert.equal(seen.state.at(-1).code, 1006);
  assert.equal(seen.error.at(-1).kind, 'close');
  await tick();
  FakeEventSource.live()[0].fail(); // the reconnect is refused
  await tick();
  const retry = seen.state.findLast((e) => e.state === 'reconnecting'); // (and, without backoff, 'connecting' again)
  assert.equal(retry.state, 'reconnecting');
  assert.equal(retry.code, 503);
  assert.equal(retry.reason, 'capacity: full');
  assert.equal(retry.meaning, closeMeaning(503));
  assert.match(retry.meaning, /full or shutting down/);
  http.answer = () => undefined;
  await tick();
  FakeEventSource.live()[0].accept({ AAPL: 4 });
  assert.equal(c.state, 'open');
  assert.equal(c.stats.connects, 2);

  // A token that the streams refuse (401): the auth() call fails, the one before is kept.
  const fresh = 'e30.eyJzdWIiOiJib2IiLCJleHAiOjE4MDAwMDAwMDB9.sig'; // {"sub":"bob","exp":1800000000}
  const authed = c.auth(fresh);
  await tick();
  assert.equal(FakeEventSource.live()[0].query.token, fresh, 'the token goes in the URL');
  FakeEventSource.live()[0].accept();
  const claims = await authed;
  assert.deepEqual({ type: claims.type, sub: claims.sub, exp: claims.exp }, { type: 'authenticated', sub: 'bob', exp: 1800000000 }, 'the token\'s claims');
  http.answer = (u) => (u.searchParams.get('token') === 'bad' ? refusal(401, { error: 'unauthorized', message: 'invalid token' }) : undefined);
  const refused = c.auth('bad');
  await tick();
  FakeEventSource.live()[0].fail();
  await assert.rejects(refused, { kind: 'reply', code: 'unauthorized' });
  await tick();
  assert.equal(FakeEventSource.live()[0].query.token, fresh, 'back to the token before');
  c.close();
});

test('over SSE, list and setMaxBandwidth need a WebSocket; ping is an HTTP round trip; setFormat waits for a WebSocket', async () => {
  const { c, http } = client({ transport: 'sse' });
  await tick();
  await assert.rejects(c.list(), { kind: 'unsupported', code: 'websocket_only' });
  await assert.rejects(c.setMaxBandwidth(20_000), { kind: 'unsupported', code: 'websocket_only' });
  const pong = await c.ping();
  assert.ok(pong.rtt >= 0);
  assert.equal(pong.ts, undefined, 'no server clock over HTTP');
  assert.equal(http.asked.at(-1), '/healthz');
  c.setFormat('binary');
  assert.equal(c.format, 'binary');
  assert.equal(c.state, 'open', 'no reconnect: SSE is JSON');
  // A gateway that does not answer the ping: like a missing pong.
  http.answer = () => new TypeError('fetch failed');
  await assert.rejects(c.ping(), { kind: 'timeout' });
  c.close();
});

test('over SSE, at most sseStreams streams: the closest rates merge at the lower one', async () => {
  const { c } = client({ transport: 'sse', sseStreams: 3 });
  await tick();
  quiet(c.subscribe(['A'], { maxRate: 1 }));
  quiet(c.subscribe(['B'], { maxRate: 2 }));
  quiet(c.subscribe(['C'], { maxRate: 100 }));
  quiet(c.subscribe(['D'], { maxRate: 60, trades: true }));
  quiet(c.subscribe(['E'])); // the server's default
  await tick();
  assert.deepEqual(FakeEventSource.all.map((e) => e.query), [
    { symbols: 'A,B', max_rate: '1' }, // 1 and 2 are closest
    { symbols: 'C,E', max_rate: '100' }, // then 100 and the server's default (counted as 2,000)
    { symbols: 'D', trades: '1', max_rate: '60' }, // trades never merge with quotes only
  ]);
  c.close();
});

const jsonBook = (symbol, seq, { depth = 10, levels = 1, stale = false } = {}) => {
  const side = (from, step) => `[${Array.from({ length: levels }, (_, i) => `[${from + step * i},1.5]`).join(',')}]`;
  return `{"type":"book","symbol":"${symbol}","seq":${seq},"depth":${depth},"bids":${side(100, -1)},"asks":${side(101, 1)},` +
    `"stale":${stale},"ts_event":1800000000000000001,"ts_gateway":1800000000000000002}`;
};

test('over SSE, books: a stream per depth (in its URL), the same book events; merged streams take the greater depth', async () => {
  const { c, seen } = client({ transport: 'sse' });
  await tick();
  quiet(c.subscribe(['BTCUSDT'], { maxRate: 60, trades: true, depth: 10 }));
  quiet(c.subscribe(['ETHUSDT', 'SOLUSDT'], { maxRate: 20 }));
  quiet(c.subscribe(['XRPUSDT'], { maxRate: 20, depth: 5 }));
  await tick();
  assert.deepEqual(FakeEventSource.all.map((e) => e.query), [
    { symbols: 'BTCUSDT', trades: '1', max_rate: '60', depth: '10' },
    { symbols: 'ETHUSDT,SOLUSDT', max_rate: '20' }, // no depth: no books
    { symbols: 'XRPUSDT', max_rate: '20', depth: '5' }, // a depth of its own: a stream of its own
  ]);
  const [btc, plain, xrp] = FakeEventSource.all;
  for (const es of FakeEventSource.all) es.accept();
  btc.send(jsonBook('BTCUSDT', 3, { levels: 2 }));
  btc.send(jsonBook('BTCUSDT', 2)); // backwards: dropped, counted, reported
  xrp.send(jsonBook('XRPUSDT', 1, { depth: 5, stale: true }));
  plain.send(jsonBook('ETHUSDT', 1)); // not asked for: not delivered
  assert.deepEqual(seen.book.map((b) => [b.symbol, b.seq, b.bids.length, b.stale]), [['BTCUSDT', 3n, 2, false], ['XRPUSDT', 1n, 1, true]]);
  assert.deepEqual(c.book('BTCUSDT').bids, [{ price: '100', size: '1.5' }, { price: '99', size: '1.5' }]);
  assert.equal(c.stats.booksDropped, 1);
  assert.deepEqual(seen.error.map((e) => e.code), ['seq_backwards']);
  // A depth change re-opens the symbol's stream (with a fresh book).
  quiet(c.subscribe(['XRPUSDT'], { maxRate: 20, depth: 20 }));
  await tick();
  assert.ok(xrp.closed);
  assert.deepEqual(FakeEventSource.live().at(-1).query, { symbols: 'XRPUSDT', max_rate: '20', depth: '20' });
  c.close();

  // At most sseStreams: streams of the same depth merge first, whatever their rates...
  const two = client({ transport: 'sse', sseStreams: 3 });
  await tick();
  quiet(two.c.subscribe(['BTCUSDT'], { maxRate: 60, trades: true, depth: 10 }));
  quiet(two.c.subscribe(['ETHUSDT'], { maxRate: 20, depth: 10 }));
  quiet(two.c.subscribe(['XRPUSDT'], { maxRate: 21, depth: 5 }));
  quiet(two.c.subscribe(['SOLUSDT'], { maxRate: 500, depth: 10 }));
  await tick();
  assert.deepEqual(FakeEventSource.all.map((e) => e.query), [
    { symbols: 'BTCUSDT', trades: '1', max_rate: '60', depth: '10' },
    { symbols: 'ETHUSDT,SOLUSDT', max_rate: '20', depth: '10' }, // not ETHUSDT and XRPUSDT, whose rates are closer
    { symbols: 'XRPUSDT', max_rate: '21', depth: '5' },
  ]);
  two.c.close();
  // ...and only then streams of different depths, at the greater: deeper books are trimmed to
  // the depth asked, and symbols without books get none.
  const three = client({ transport: 'sse', sseStreams: 2 });
  await tick();
  quiet(three.c.subscribe(['BTCUSDT'], { maxRate: 60, trades: true, depth: 10 }));
  quiet(three.c.subscribe(['ETHUSDT'], { maxRate: 20, depth: 10 }));
  quiet(three.c.subscribe(['XRPUSDT'], { maxRate: 20, depth: 5 }));
  quiet(three.c.subscribe(['SOLUSDT'], { maxRate: 20 }));
  await tick();
  assert.deepEqual(FakeEventSource.all.map((e) => e.query), [
    { symbols: 'BTCUSDT', trades: '1', max_rate: '60', depth: '10' },
    { symbols: 'ETHUSDT,XRPUSDT,SOLUSDT', max_rate: '20', depth: '10' },
  ]);
  const merged = FakeEventSource.all[1];
  merged.accept();
  merged.send(jsonBook('ETHUSDT', 1, { levels: 10 }));
  merged.send(jsonBook('XRPUSDT', 1, { levels: 10 }));
  merged.send(jsonBook('SOLUSDT', 1, { levels: 10 }));
  assert.deepEqual(three.seen.book.map((b) => [b.symbol, b.depth, b.bids.length, b.asks.length]), [['ETHUSDT', 10, 10, 10], ['XRPUSDT', 5, 5, 5]]);
  assert.deepEqual(three.c.book('XRPUSDT').asks.at(-1), { price: '105', size: '1.5' }, 'the best five kept');
  three.c.close();
});

test('over SSE, adaptive throttling re-opens the streams of symbols without trades at the cap', async () => {
  const { c } = client({ transport: 'sse' });
  await tick();
  quiet(c.subscribe(['AAPL', 'MSFT'], { maxRate: 0 }));
  quiet(c.subscribe(['SPY'], { maxRate: 0, trades: true }));
  await tick();
  const [quotes, trades] = FakeEventSource.all;
  quotes.accept();
  trades.accept();
  const judged = new Promise((resolve) => c.on('lag', resolve));
  // One fresh update (the network's share is ~0), then 300 ms behind (over `high`, under
  // `resyncMs`): a cut.
  const ago = (ms) => String(BigInt(Math.round((Date.now() - ms) * 1e6)));
  quotes.send(jsonUpdate('AAPL', 1).replace('1800000000000000002', ago(0)));
  for (let i = 0; i < 60; i++) quotes.send(jsonUpdate('AAPL', 2 + i).replace('1800000000000000002', ago(300)));
  const e = await judged;
  assert.equal(e.behind, true);
  assert.equal(e.resync, false);
  assert.ok(e.rate < 60, `cut: ${e.rate}`);
  await tick();
  assert.ok(quotes.closed, 'the quotes\' stream re-opens at the cap');
  assert.ok(!trades.closed, 'the stream with trades is left alone: no trade in flight is lost');
  assert.deepEqual(FakeEventSource.live().map((s) => s.query), [
    { symbols: 'SPY', trades: '1', max_rate: '0' }, { symbols: 'AAPL,MSFT', max_rate: String(e.rate) },
  ]);
  assert.deepEqual(c.subscriptions, new Map([['AAPL', 0], ['MSFT', 0], ['SPY', 0]]), 'what the app asked for is kept');
  c.close();
});

test('auto: falls back to SSE after WebSocket failures while the gateway answers HTTP, not while it is down', async () => {
  const { c, seen, http } = client();
  assert.equal(c.transport, 'websocket');
  const sub = c.subscribe(['AAPL'], { trades: true }); // queued until a connection opens
  const listed = c.list();
  quiet(listed); // (checked below)
  http.answer = () => new TypeError('connection refused'); // the gateway is down
  for (let i = 0; i < 3; i++) {
    FakeSocket.last().serverClose(1006);
    await tick();
  }
  assert.equal(c.transport, 'websocket', 'a gateway that does not answer HTTP is down, not blocked');
  assert.equal(FakeEventSource.all.length, 0);
  assert.ok(http.asked.every((p) => p === '/healthz'));

  http.answer = () => undefined; // up, but WebSockets do not get through
  FakeSocket.last().serverClose(1006);
  await tick();
  assert.equal(c.transport, 'websocket', 'the gateway answers HTTP: one more attempt at once');
  assert.equal(FakeSocket.all.length, 5);
  assert.equal(seen.state.at(-1).state, 'connecting');
  FakeSocket.last().serverClose(1006);
  assert.equal(c.transport, 'sse', 'and when that fails too, SSE');
  const fallback = seen.state.find((s) => s.reason === 'fallback');
  assert.deepEqual([fallback.state, fallback.transport], ['connecting', 'sse']);
  await tick();
  assert.equal(FakeSocket.all.length, 5, 'no more WebSocket attempts');
  const [es] = FakeEventSource.all;
  assert.deepEqual(es.query, { symbols: 'AAPL', trades: '1' });
  es.accept({ AAPL: 4 });
  assert.equal(c.state, 'open');
  assert.deepEqual(await sub, { AAPL: 4 }, 'a request queued for the WebSocket, settled over SSE');
  await assert.rejects(listed, { kind: 'unsupported' });
  es.send(jsonTrade('AAPL', 5));
  assert.equal(seen.trade.length, 1);
  c.close();
});

test('auto: a WebSocket constructor that throws counts as a failure; WebSocket-only never falls back', async () => {
  class Throwing { constructor() { throw new Error('blocked'); } }
  const { c, seen } = client({ WebSocket: Throwing });
  await tick(20);
  assert.equal(c.transport, 'sse');
  assert.ok(seen.error.some((e) => e.code === 'bad_url'));
  c.close();
  const ws = client({ transport: 'websocket' });
  for (let i = 0; i < 4; i++) {
    FakeSocket.last().serverClose(1006);
    await tick();
  }
  assert.equal(ws.c.transport, 'websocket');
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(ws.http.asked.length, 0);
  ws.c.close();
  assert.throws(() => connect('ws://gateway.test/ws', { transport: 'carrier-pigeon', WebSocket: FakeSocket }), /unknown transport/);
  assert.throws(() => connect('ws://gateway.test/ws', { transport: 'sse', EventSource: null }), /no EventSource/);
});

test('auto on SSE: a WebSocket probe every wsRetry ms; an answer brings the client back to a WebSocket', async () => {
  const { c, seen, http } = client({ wsRetry: 30 });
  quiet(c.subscribe(['AAPL'], { maxRate: 4 }));
  await failWebSockets(c);
  assert.equal(c.transport, 'sse');
  FakeEventSource.all[0].accept();
  const sockets = FakeSocket.all.length;
  await tick(50);
  const probe = FakeSocket.last();
  assert.equal(FakeSocket.all.length, sockets + 1, 'a probe');
  assert.equal(probe.url.searchParams.get('format'), 'json');
  probe.serverClose(1006); // still blocked
  assert.equal(c.transport, 'sse');
  await tick(50);
  const again = FakeSocket.last();
  assert.notEqual(again, probe, 'another probe, later');
  again.open();
  assert.deepEqual(again.sent.map((m) => m.op), ['ping']);
  again.reply({ type: 'pong', id: 1, ts: 1 });
  assert.deepEqual(again.closedWith, { code: 1000, reason: 'probe' });
  assert.equal(c.transport, 'websocket');
  assert.ok(FakeEventSource.all.every((e) => e.closed), 'the streams close');
  const back = seen.state.at(-1);
  assert.deepEqual([back.state, back.reason, back.transport], ['connecting', 'transport change', 'websocket']);
  const ws = FakeSocket.last();
  assert.notEqual(ws, again);
  ws.open();
  assert.deepEqual(ws.sent.map(({ id, ...rest }) => rest), [{ op: 'subscribe', symbols: ['AAPL'], max_rate: 4 }]);
  assert.equal(http.asked.filter((p) => p === '/healthz').length, 1, 'one check before the fallback');
  c.close();
});

test('auto on SSE: a gateway that stops answering sends the client back to trying a WebSocket', async () => {
  const { c, http } = client();
  quiet(c.subscribe(['AAPL']));
  await failWebSockets(c);
  FakeEventSource.all[0].accept();
  assert.equal(c.transport, 'sse');
  http.answer = () => new TypeError('connection refused');
  FakeEventSource.all[0].fail(); // lost
  await tick();
  FakeEventSource.live()[0].fail(); // the reconnect: refused, and no answer to fetch either
  await tick();
  assert.equal(c.transport, 'websocket', 'down, not blocked: a WebSocket first again');
  await tick();
  const ws = FakeSocket.last();
  ws.open();
  ws.reply({ type: 'subscribed', id: ws.sent[0].id, symbols: { AAPL: 4 } });
  assert.equal(c.state, 'open');
  assert.equal(c.transport, 'websocket');
  c.close();
});
