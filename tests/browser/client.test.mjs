// client.test.mjs: tests of TickgateClient (src/server/web/tickgate.js) against a scripted fake
// WebSocket (node --test): request ids and replies, error replies, reconnect with re-subscribe
// at each symbol's max rate, seq tracking reset on reconnect, binary symbol ids, batched JSON
// frames, format switch, ping timeout, the gateway clock behind u.age, adaptive throttling
// (cut, resync, retry, switched off), trades and gaps in every format (kept across
// reconnects and rate changes, never dropped by throttling), setMaxBandwidth, and order books
// (subscribe with a depth, books in every format, each replacing the last, seq checks, turned
// off, kept across reconnects and rate changes). The real gateway is exercised by
// e2e.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connect, RECORD_SIZE } from '../../src/server/web/tickgate.js';

/** A WebSocket stand-in the test drives: open(), receive(), serverClose(); sent holds what the client sent. */
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
  receive(data) { this.onmessage?.({ data: typeof data === 'string' ? data : data }); }
  reply(obj) { this.receive(JSON.stringify(obj)); }
  serverClose(code, reason = '') { this.onclose?.({ code, reason }); }
  static last() { return FakeSocket.all[FakeSocket.all.length - 1]; }
}

/** For requests a test does not await: their rejection when the socket closes is expected. */
const quiet = (promise) => promise.catch(() => {});
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** A client on a fresh fake socket, reconnecting without delay; events collected in `seen`. */
function client(options = {}) {
  FakeSocket.all = [];
  const c = connect('ws://gateway.test/ws', {
    WebSocket: FakeSocket, pingInterval: 0, backoff: { random: () => 0 }, ...options,
  });
  const seen = { update: [], state: [], error: [], status: [], trade: [], gap: [], book: [] };
  for (const type of Object.keys(seen)) c.on(type, (v) => seen[type].push(v));
  return { c, seen, ws: FakeSocket.last() };
}

/** One binary L1 record as the gateway encodes it (PROTOCOL.md). */
function record({ id, seq, price = 100_00000000n, snapshot = false, type = 1 }) {
  const v = new DataView(new ArrayBuffer(RECORD_SIZE));
  v.setUint8(0, type);
  v.setUint8(1, snapshot ? 1 : 0);
  v.setUint32(4, id, true);
  v.setBigUint64(8, BigInt(seq), true);
  for (const at of [16, 32, 48]) v.setBigInt64(at, price, true);
  v.setBigUint64(80, 1_800_000_000_000_000_000n, true);
  return new Uint8Array(v.buffer);
}
/** A binary frame of `records` back to back (88 bytes each, a book record a multiple of that). */
const frame = (...records) => {
  const out = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of records) {
    out.set(r, at);
    at += r.length;
  }
  return out.buffer;
};
/** A JSON update; `ts` is ts_gateway in ns (default: a fixed time, far from the test's clock). */
const jsonUpdate = (symbol, seq, snapshot = false, ts = 1800000000000000002n) =>
  `{"type":"update","symbol":"${symbol}","seq":${seq},"bid":1.5,"bid_size":1,"ask":1.6,"ask_size":1,` +
  `"last":1.55,"last_size":1,"volume":10,"ts_event":1800000000000000001,"ts_gateway":${ts},"snapshot":${snapshot}}`;
/** A batched JSON frame of `updates` (jsonUpdate texts). */
const batch = (...updates) => `[${updates.join(',')}]`;
/** ts_gateway of an update the gateway ingested `ms` ago, by this machine's wall clock. */
const agoNs = (ms) => BigInt(Math.round((Date.now() - ms) * 1e6));

test('requests carry fresh ids and replies are matched by id, in any order', async () => {
  const { c, ws } = client();
  assert.equal(ws.url.searchParams.get('format'), 'json-batch', 'batched JSON is the default');
  const listed = c.list(); // queued until the socket opens
  const pinged = c.ping();
  assert.equal(ws.sent.length, 0);
  ws.open();
  assert.deepEqual(ws.sent.map((m) => m.op), ['list', 'ping']);
  const [list, ping] = ws.sent;
  assert.notEqual(list.id, ping.id);
  ws.receive(`{"type":"pong","id":${ping.id},"ts":1800000000000000001}`);
  ws.reply({ type: 'symbols', id: list.id, symbols: ['SPY', 'AAPL'] });
  assert.deepEqual(await listed, ['SPY', 'AAPL']);
  const pong = await pinged;
  assert.equal(pong.ts, 1800000000000000001n, 'the server clock exactly, beyond 2^53');
  assert.ok(pong.rtt >= 0);
  c.close();
});

test('an error reply rejects its request and reaches error listeners', async () => {
  const { c, ws, seen } = client();
  ws.open();
  const p = c.subscribe(['NOPE']);
  const { id } = ws.sent[0];
  ws.reply({ type: 'error', id, code: 'unknown_symbol', message: '1 unknown symbol(s)', symbols: ['NOPE'] });
  await assert.rejects(p, { kind: 'reply', code: 'unknown_symbol', symbols: ['NOPE'] });
  assert.equal(seen.error.length, 1);
  assert.equal(seen.error[0].code, 'unknown_symbol');
  assert.equal(c.subscriptions.size, 0, 'a refused symbol is not held');
  c.close();
});

test('subscribe resolves with the known symbols; unknown ones are not re-subscribed', async () => {
  const { c, ws, seen } = client();
  ws.open();
  const p = c.subscribe(['AAPL', 'NOPE']);
  const { id } = ws.sent[0];
  ws.reply({ type: 'subscribed', id, symbols: { AAPL: 4 } });
  ws.reply({ type: 'error', id, code: 'unknown_symbol', message: 'x', symbols: ['NOPE'] });
  assert.deepEqual(await p, { AAPL: 4 });
  assert.deepEqual(seen.error.map((e) => e.symbols), [['NOPE']]);
  assert.deepEqual([...c.subscriptions.keys()], ['AAPL']);
  c.close();
});

test('after a close it reconnects and re-subscribes each symbol at its max rate', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL', 'MSFT'], { maxRate: 4 }));
  quiet(c.subscribe(['SPY'])); // the server's default rate
  quiet(c.subscribe(['QQQ'], { maxRate: 0 })); // unlimited
  quiet(c.setMaxRate(['MSFT'], 0.5)); // a held symbol: only its rate changes
  assert.deepEqual(ws.sent.at(-1), { op: 'subscribe', symbols: ['MSFT'], max_rate: 0.5, id: ws.sent.at(-1).id });

  ws.serverClose(1001, 'server shutting down');
  const closeErr = seen.error.at(-1);
  assert.equal(closeErr.kind, 'close');
  assert.equal(closeErr.code, 1001);
  assert.match(closeErr.message, /server shutting down/);
  const retry = seen.state.at(-1);
  assert.equal(retry.state, 'reconnecting');
  assert.equal(retry.code, 1001);
  assert.equal(retry.meaning, 'server shutting down');

  await tick(); // backoff with random() = 0: the next attempt at once
  const ws2 = FakeSocket.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  const subs = ws2.sent.map(({ id, ...rest }) => rest);
  assert.deepEqual(subs, [
    { op: 'subscribe', symbols: ['AAPL'], max_rate: 4 },
    { op: 'subscribe', symbols: ['MSFT'], max_rate: 0.5 },
    { op: 'subscribe', symbols: ['SPY'] },
    { op: 'subscribe', symbols: ['QQQ'], max_rate: 0 },
  ]);
  assert.equal(c.stats.connects, 2);
  c.close();
});

test('a failed attempt backs off and tries again; close() stops for good', async () => {
  const { c, ws, seen } = client();
  ws.serverClose(1006); // refused: never opened
  assert.equal(seen.error.length, 0, 'a failed attempt is a state, not an error');
  assert.equal(seen.state.at(-1).state, 'reconnecting');
  assert.equal(seen.state.at(-1).attempt, 1);
  await tick();
  FakeSocket.last().serverClose(1006);
  assert.equal(seen.state.at(-1).attempt, 2);
  c.close();
  const count = FakeSocket.all.length;
  await tick(20);
  assert.equal(FakeSocket.all.length, count, 'no attempt after close()');
  assert.equal(c.state, 'closed');
});

test('a request made while disconnected waits for the next connection; close() rejects it', async () => {
  const { c, ws } = client();
  const listed = c.list();
  ws.serverClose(1006); // the first attempt fails: the request stays queued
  await tick();
  const ws2 = FakeSocket.last();
  ws2.open();
  assert.deepEqual(ws2.sent.map((m) => m.op), ['list']);
  ws2.reply({ type: 'symbols', id: ws2.sent[0].id, symbols: ['SPY'] });
  assert.deepEqual(await listed, ['SPY']);

  ws2.serverClose(1001);
  const queued = c.list();
  c.close();
  await assert.rejects(queued, { kind: 'close' });
});

test('seq tracking: gaps count conflated events, backwards is dropped, a reconnect starts afresh', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL']));
  ws.receive(jsonUpdate('AAPL', 100, true));
  ws.receive(jsonUpdate('AAPL', 103));
  ws.receive(jsonUpdate('AAPL', 102)); // backwards on one connection: a gateway bug
  ws.receive(jsonUpdate('AAPL', 103)); // a live update must move forward
  assert.deepEqual(seen.update.map((u) => [u.seq, u.gap]), [[100n, 0], [103n, 2]]);
  assert.equal(seen.error.at(-1).code, 'seq_backwards');
  assert.equal(c.stats.conflated, 2);

  ws.serverClose(1001);
  await tick();
  const ws2 = FakeSocket.last();
  ws2.open();
  ws2.receive(jsonUpdate('AAPL', 5, true)); // a restarted gateway: its seq starts low
  ws2.receive(jsonUpdate('AAPL', 6));
  assert.deepEqual(seen.update.slice(2).map((u) => [u.seq, u.gap]), [[5n, 0], [6n, 0]]);
  const u = seen.update.at(-1);
  assert.equal(u.symbol, 'AAPL');
  assert.equal(u.bid, '1.5');
  assert.equal(u.num.last, 1.55);
  assert.equal(u.ts_gateway, 1800000000000000002n);
  c.close();
});

test('binary records are named through the subscribed reply; unsubscribed symbols stop at once', async () => {
  const { c, seen } = client({ format: 'binary' });
  const ws = FakeSocket.last();
  assert.equal(ws.url.searchParams.get('format'), 'binary');
  ws.open();
  quiet(c.subscribe(['AAPL', 'SPY']));
  ws.reply({ type: 'subscribed', id: ws.sent[0].id, symbols: { AAPL: 4, SPY: 0 } });
  ws.receive(frame(record({ id: 4, seq: 10, snapshot: true }), record({ id: 0, seq: 7, snapshot: true }),
    record({ id: 99, seq: 1 }), record({ id: 4, seq: 11, type: 9 })));
  assert.deepEqual(seen.update.map((u) => [u.symbol, u.symbol_id, u.seq, u.snapshot]),
    [['AAPL', 4, 10n, true], ['SPY', 0, 7n, true]]);
  assert.equal(seen.update[0].last, '100');
  quiet(c.unsubscribe(['SPY']));
  ws.receive(frame(record({ id: 0, seq: 8 }), record({ id: 4, seq: 12 })));
  assert.deepEqual(seen.update.slice(2).map((u) => u.symbol), ['AAPL']);
  ws.receive(new Uint8Array(87).buffer);
  assert.equal(seen.error.at(-1).kind, 'protocol');
  c.close();
});

test('batched JSON: one update per element, seq tracked across elements and frames', () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL', 'MSFT']));
  ws.receive(batch(jsonUpdate('AAPL', 10, true), jsonUpdate('MSFT', 3, true)));
  ws.receive(` \n${batch(jsonUpdate('AAPL', 12), jsonUpdate('MSFT', 4), jsonUpdate('AAPL', 13))}`);
  ws.receive(batch(jsonUpdate('MSFT', 7), jsonUpdate('AAPL', 11), jsonUpdate('AAPL', 15)));
  assert.deepEqual(seen.update.map((u) => [u.symbol, u.seq, u.gap, u.snapshot]), [
    ['AAPL', 10n, 0, true], ['MSFT', 3n, 0, true],
    ['AAPL', 12n, 1, false], ['MSFT', 4n, 0, false], ['AAPL', 13n, 0, false],
    ['MSFT', 7n, 2, false], ['AAPL', 15n, 1, false], // AAPL 11 went backwards: dropped
  ]);
  assert.equal(seen.error.filter((e) => e.code === 'seq_backwards').length, 1);
  assert.equal(c.stats.messages, 3);
  assert.equal(c.stats.updates, 7);
  assert.equal(seen.update[0].bid, '1.5');
  assert.equal(seen.update[0].num.last, 1.55);

  // An unsubscribed symbol's updates still in flight are not delivered.
  quiet(c.unsubscribe(['MSFT']));
  ws.receive(batch(jsonUpdate('MSFT', 8), jsonUpdate('AAPL', 16)));
  assert.deepEqual(seen.update.slice(7).map((u) => u.symbol), ['AAPL']);
  // A malformed batch is reported and delivers nothing, not even its well-formed start.
  ws.receive(`[${jsonUpdate('AAPL', 17)},{"type":"upd`);
  assert.equal(seen.update.length, 8);
  assert.equal(seen.error.at(-1).kind, 'protocol');
  assert.equal(seen.error.at(-1).code, 'bad_json');
  // Control replies stay single objects beside the batches; single updates are still read.
  ws.reply({ type: 'status', feed: 'down' });
  ws.receive(jsonUpdate('AAPL', 18));
  assert.deepEqual(seen.status, [{ feed: 'down' }]);
  assert.equal(seen.update.at(-1).seq, 18n);
  // An update whose fields come in another order, alone or in a batch, exactly all the same.
  const reordered = (seq) => jsonUpdate('AAPL', seq).replace('{"type":"update",', '{').replace(/}$/, ',"type":"update"}');
  ws.receive(reordered(19));
  ws.receive(batch(reordered(20)));
  assert.deepEqual(seen.update.slice(-2).map((u) => [u.seq, u.ts_gateway, u.bid]),
    [[19n, 1800000000000000002n, '1.5'], [20n, 1800000000000000002n, '1.5']]);
  c.close();
});

test('formats: json-batch, json and binary; anything else is refused', () => {
  assert.throws(() => connect('ws://gateway.test/ws', { WebSocket: FakeSocket, format: 'msgpack' }), /unknown format msgpack/);
  const { c, ws } = client({ token: 'aaa.bbb.ccc' });
  assert.deepEqual(ws.protocols, ['tickgate.v1.json-batch', 'tickgate.token.aaa.bbb.ccc']);
  ws.open();
  for (const format of ['json', 'binary', 'json-batch']) {
    c.setFormat(format);
    assert.equal(FakeSocket.last().url.searchParams.get('format'), format);
    assert.equal(FakeSocket.last().protocols[0], `tickgate.v1.${format}`);
    FakeSocket.last().open();
  }
  assert.throws(() => c.setFormat('JSON'), /unknown format JSON/);
  assert.equal(c.format, 'json-batch');
  c.close();
});

test('u.age is on the gateway\'s clock: the wall clock, moved into the bounds a pong proves', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL']));
  ws.receive(jsonUpdate('AAPL', 1, false, agoNs(20))); // gateway and page share the wall clock
  assert.ok(Math.abs(seen.update[0].age - 20) < 5, `age ${seen.update[0].age}`);
  // A pong consistent with the wall clock keeps it, even one that waited 300 ms behind a
  // backlog on its way back (the midpoint of send and arrival would be 150 ms off).
  let ping = c.ping();
  const stamped = agoNs(0);
  await tick(300);
  ws.receive(`{"type":"pong","id":${ws.sent.at(-1).id},"ts":${stamped}}`);
  assert.ok((await ping).rtt > 250, "the pong waited");
  ws.receive(jsonUpdate('AAPL', 2, false, agoNs(20)));
  assert.ok(Math.abs(seen.update[1].age - 20) < 5, `age ${seen.update[1].age}`);
  // A gateway whose clock is 5 s ahead of this machine's: the pong proves the wall clock
  // wrong, and ages are taken on the gateway's clock.
  ping = c.ping();
  ws.receive(`{"type":"pong","id":${ws.sent.at(-1).id},"ts":${agoNs(-5_000)}}`);
  await ping;
  ws.receive(jsonUpdate('AAPL', 3, false, agoNs(-5_000 + 20)));
  assert.ok(Math.abs(seen.update[2].age - 20) < 5, `age ${seen.update[2].age}`);
  c.close();
});

test('setFormat reconnects with the other format and keeps the subscriptions', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL'], { maxRate: 2 }));
  c.setFormat('binary');
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'format change' });
  const ws2 = FakeSocket.last();
  assert.equal(ws2.url.searchParams.get('format'), 'binary');
  assert.equal(c.format, 'binary');
  ws2.open();
  assert.deepEqual(ws2.sent.map(({ id, ...rest }) => rest), [{ op: 'subscribe', symbols: ['AAPL'], max_rate: 2 }]);
  assert.equal(seen.error.filter((e) => e.kind === 'close').length, 0, 'a switch is not an error');
  assert.equal(seen.state.at(-1).format, 'binary');
  c.close();
});

test('no pong within the timeout drops the connection (4000) and reconnects', async () => {
  const { c, ws, seen } = client({ pingInterval: 10, pingTimeout: 10 });
  ws.open();
  await tick(40);
  assert.equal(ws.sent[0].op, 'ping');
  assert.equal(ws.closedWith?.code, 4000);
  assert.ok(seen.error.some((e) => e.kind === 'close' && e.code === 4000));
  assert.ok(FakeSocket.all.length >= 2, 'a new attempt was made');
  c.close();
});

test('status messages report the feed state; up is assumed on connect', () => {
  const { c, ws, seen } = client();
  assert.equal(c.feed, 'unknown');
  ws.open();
  assert.equal(c.feed, 'up');
  ws.reply({ type: 'status', feed: 'down' });
  ws.reply({ type: 'status', feed: 'up' });
  ws.reply({ type: 'some_later_reply_type', x: 1 }); // ignored
  assert.deepEqual(seen.status, [{ feed: 'down' }, { feed: 'up' }]);
  assert.equal(c.feed, 'up');
  c.close();
});

test('closed for holding no subscription: idle until the next request', async () => {
  const { c, ws, seen } = client();
  ws.open();
  ws.serverClose(1008, 'no subscription');
  assert.equal(c.state, 'idle');
  assert.equal(seen.state.at(-1).state, 'idle');
  await tick();
  assert.equal(FakeSocket.all.length, 1, 'no reconnect while idle');
  const sub = c.subscribe(['AAPL']);
  const ws2 = FakeSocket.last();
  assert.notEqual(ws2, ws, 'a request reconnects');
  ws2.open();
  assert.deepEqual(ws2.sent.map((m) => m.op), ['subscribe', 'subscribe'], 'the re-subscribe, then the queued request');
  ws2.reply({ type: 'subscribed', id: ws2.sent[1].id, symbols: { AAPL: 4 } });
  assert.deepEqual(await sub, { AAPL: 4 });
  // Holding a symbol, the same close reconnects as usual.
  ws2.serverClose(1008, 'no subscription');
  assert.equal(c.state, 'reconnecting');
  c.close();
});

test('token auth: the token rides in a subprotocol beside the format; auth() replaces it', async () => {
  const { c, ws, seen } = client({ token: 'aaa.bbb.ccc', format: 'binary' });
  assert.deepEqual(ws.protocols, ['tickgate.v1.binary', 'tickgate.token.aaa.bbb.ccc']);
  ws.open();
  quiet(c.subscribe(['AAPL', 'BTCUSDT']));
  ws.reply({ type: 'error', id: ws.sent[0].id, code: 'not_entitled', message: 'x', symbols: ['BTCUSDT'] });
  assert.deepEqual([...c.subscriptions.keys()], ['AAPL'], 'a symbol not entitled is not held');
  assert.equal(seen.error.at(-1).code, 'not_entitled');
  const authed = c.auth('ddd.eee.fff');
  assert.deepEqual(ws.sent.at(-1), { op: 'auth', token: 'ddd.eee.fff', id: ws.sent.at(-1).id });
  ws.reply({ type: 'authenticated', id: ws.sent.at(-1).id, sub: 'alice', exp: 1732243600 });
  assert.equal((await authed).sub, 'alice');
  ws.serverClose(1008, 'token expired');
  await tick();
  assert.deepEqual(FakeSocket.last().protocols, ['tickgate.v1.binary', 'tickgate.token.ddd.eee.fff']);
  c.close();
});

/** The next 'lag' event: the client judges its lag once a second while connected. */
const nextLag = (c) => new Promise((resolve) => {
  const off = c.on('lag', (e) => {
    off();
    resolve(e);
  });
});
/** Answers the ping just sent with a pong stamped now: the network's share of the lag is ~0. */
async function pong(c, ws) {
  const p = c.ping();
  ws.receive(`{"type":"pong","id":${ws.sent.at(-1).id},"ts":${agoNs(0)}}`);
  await p;
}

test('adaptive throttling: far behind, it cuts the rate and resyncs at it', async () => {
  const { c, ws, seen } = client();
  ws.open();
  const judged = nextLag(c);
  quiet(c.subscribe(['AAPL', 'MSFT'], { maxRate: 0 }));
  quiet(c.subscribe(['SPY'], { maxRate: 2 }));
  await pong(c, ws);
  ws.receive(jsonUpdate('AAPL', 1, false, agoNs(0)));
  // 100 updates handled 800 ms after the gateway got them: over resyncMs (500).
  ws.receive(batch(...Array.from({ length: 100 }, (_, i) => jsonUpdate('MSFT', 10 + i, false, agoNs(800)))));
  const e = await judged;
  assert.ok(e.lagMs > 790 && e.lagMs < 900, `lag ${e.lagMs}`);
  assert.equal(e.behind, true);
  assert.equal(e.resync, true);
  // ~101 updates in the first second (longer if the timer ran late) over 3 symbols, halved: ≤ ~17/s.
  assert.ok(e.rate > 5 && e.rate < 18, `rate ${e.rate}`);
  assert.equal(c.rate, e.rate);
  assert.equal(c.behind, true);
  assert.equal(c.lag, e.lagMs);
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'resync' });
  assert.equal(c.stats.resyncs, 1);
  assert.deepEqual(seen.state.at(-1), { state: 'connecting', format: 'json-batch', transport: 'websocket', attempt: 0, reason: 'resync' });
  assert.equal(seen.error.filter((x) => x.kind === 'close').length, 0, 'a resync is not an error');

  const ws2 = FakeSocket.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  assert.deepEqual(ws2.sent.map(({ id, ...rest }) => rest), [
    { op: 'subscribe', symbols: ['AAPL', 'MSFT'], max_rate: e.rate }, // unlimited: the cap
    { op: 'subscribe', symbols: ['SPY'], max_rate: 2 }, // already under it
  ]);
  assert.deepEqual(c.subscriptions, new Map([['AAPL', 0], ['MSFT', 0], ['SPY', 2]]), 'what the app asked for is kept');
  c.close();
});

test('adaptive throttling: a little behind, it re-subscribes at the cap and retries a refused change', async () => {
  const { c, ws, seen } = client();
  ws.open();
  const judged = nextLag(c);
  quiet(c.subscribe(['AAPL', 'MSFT'])); // the server's default rate
  quiet(c.subscribe(['SPY'], { maxRate: 0.5 }));
  const subscribes = ws.sent.length;
  await pong(c, ws);
  ws.receive(jsonUpdate('AAPL', 1, false, agoNs(0)));
  ws.receive(batch(...Array.from({ length: 60 }, (_, i) => jsonUpdate('AAPL', 2 + i, false, agoNs(300)))));
  const cut = await judged;
  assert.equal(cut.behind, true);
  assert.equal(cut.resync, false, '300 ms: under resyncMs');
  assert.ok(cut.rate > 3 && cut.rate < 11, `≤ ~61 updates/s over 3 symbols, halved: ${cut.rate}`);
  assert.equal(FakeSocket.all.length, 1, 'the same connection');
  const change = ws.sent.slice(subscribes + 1); // after the ping
  assert.deepEqual(change.map(({ id, ...rest }) => rest), [{ op: 'subscribe', symbols: ['AAPL', 'MSFT'], max_rate: cut.rate }],
    'SPY (0.5/s) is under the cap already');
  // New subscriptions are capped too.
  quiet(c.subscribe(['QQQ'], { maxRate: 0 }));
  quiet(c.subscribe(['IBM'], { maxRate: 1 }));
  assert.deepEqual(ws.sent.slice(-2).map((m) => [m.symbols, m.max_rate]), [[['QQQ'], cut.rate], [['IBM'], 1]]);

  // The gateway refuses the change (rate_limited): it is asked again at the next judgement.
  ws.reply({ type: 'error', id: change[0].id, code: 'rate_limited', message: 'slow down' });
  assert.equal(seen.error.at(-1).code, 'rate_limited');
  const before = ws.sent.length;
  await nextLag(c);
  assert.deepEqual(ws.sent.slice(before).map((m) => [m.op, m.symbols, m.max_rate]), [['subscribe', ['AAPL', 'MSFT'], cut.rate]]);
  c.close();
});

test('adaptive: false measures the lag but never changes a rate', async () => {
  const { c, ws } = client({ adaptive: false });
  ws.open();
  const judged = nextLag(c);
  const symbols = ['AAPL', ...Array.from({ length: 9 }, (_, i) => `S${i}`)];
  quiet(c.subscribe(symbols));
  const sent = ws.sent.length;
  // Snapshots carry the age of a symbol's last value, not a delay: they are not lag.
  ws.receive(batch(...symbols.map((sym) => jsonUpdate(sym, 1, true, agoNs(60_000)))));
  ws.receive(jsonUpdate('AAPL', 2, false, agoNs(0)));
  ws.receive(batch(...Array.from({ length: 50 }, (_, i) => jsonUpdate('AAPL', 3 + i, false, agoNs(900)))));
  const e = await judged;
  assert.ok(e.lagMs > 890, `lag ${e.lagMs}`);
  assert.equal(e.behind, true);
  assert.equal(e.rate, Infinity);
  assert.equal(e.resync, false);
  assert.ok(e.lagMs < 1_000, `snapshots left out: ${e.lagMs}`);
  assert.equal(c.rate, Infinity);
  assert.equal(ws.sent.length, sent, 'no re-subscribe');
  assert.equal(FakeSocket.all.length, 1, 'no resync');

  // A rate change the gateway refused as rate_limited is made again at the next judgement.
  quiet(c.setMaxRate(['AAPL'], 5));
  ws.reply({ type: 'error', id: ws.sent.at(-1).id, code: 'rate_limited', message: 'slow down' });
  const refused = ws.sent.length;
  await nextLag(c);
  assert.deepEqual(ws.sent.slice(refused).map((m) => [m.op, m.symbols, m.max_rate]), [['subscribe', ['AAPL'], 5]]);
  c.close();
});

test('a gateway far away is not "behind": the network\'s share of the lag is not queueing', async () => {
  const { c, ws } = client();
  ws.open();
  quiet(c.subscribe(['AAPL']));
  // 200 ms each way: the pong is stamped 200 ms after the ping left and arrives 400 ms after.
  const ping = c.ping();
  const stamped = agoNs(-200);
  await tick(400);
  ws.receive(`{"type":"pong","id":${ws.sent.at(-1).id},"ts":${stamped}}`);
  await ping;
  const judged = nextLag(c);
  const sent = ws.sent.length;
  ws.receive(batch(...Array.from({ length: 50 }, (_, i) => jsonUpdate('AAPL', 1 + i, false, agoNs(200 + (i % 10))))));
  const e = await judged;
  assert.ok(e.lagMs > 190 && e.lagMs < 230, `updates are ~200 ms old: ${e.lagMs}`);
  assert.equal(e.behind, false, 'but none of it was spent queued');
  assert.equal(e.rate, Infinity);
  assert.equal(ws.sent.length, sent, 'no re-subscribe');
  c.close();
});

/** A JSON trade as the gateway prints it (side and trade_id only when given). */
const jsonTrade = (symbol, seq, { side = 'buy', tradeId = 1000 + seq, ts = 1800000000000000002n } = {}) =>
  `{"type":"trade","symbol":"${symbol}","seq":${seq},"price":189.13,"size":100` +
  (side ? `,"side":"${side}"` : '') + (tradeId ? `,"trade_id":${tradeId}` : '') +
  `,"ts_event":1800000000000000001,"ts_gateway":${ts}}`;
const jsonGap = (symbol, missed) => `{"type":"gap","symbol":"${symbol}","missed":${missed}}`;
/** Binary trade and gap records (PROTOCOL.md): side 1 buy, 2 sell; trade id 0 = none. */
function tradeRecord({ id, seq, price = 189_13000000n, size = 100_00000000n, side = 1, tradeId = 0 }) {
  const v = new DataView(new ArrayBuffer(RECORD_SIZE));
  v.setUint8(0, 2);
  v.setUint8(1, side);
  v.setUint32(4, id, true);
  v.setBigUint64(8, BigInt(seq), true);
  v.setBigInt64(16, price, true);
  v.setBigInt64(24, size, true);
  v.setBigUint64(32, BigInt(tradeId), true);
  v.setBigUint64(72, 1_800_000_000_000_000_001n, true);
  v.setBigUint64(80, 1_800_000_000_000_000_002n, true);
  return new Uint8Array(v.buffer);
}
function gapRecord(id, missed) {
  const v = new DataView(new ArrayBuffer(RECORD_SIZE));
  v.setUint8(0, 3);
  v.setUint32(4, id, true);
  v.setBigUint64(8, BigInt(missed), true);
  return new Uint8Array(v.buffer);
}
/** What a socket was sent, without the ids. */
const bodies = (ws, from = 0) => ws.sent.slice(from).map(({ id, ...rest }) => rest);

test('trades: subscribe asks for them; trade and gap events in JSON and batched JSON, in order', () => {
  const { c, ws, seen } = client({ format: 'json' });
  ws.open();
  quiet(c.subscribe(['AAPL', 'MSFT'], { maxRate: 4, trades: true }));
  quiet(c.subscribe(['SPY']));
  assert.deepEqual(bodies(ws), [
    { op: 'subscribe', symbols: ['AAPL', 'MSFT'], max_rate: 4, trades: true },
    { op: 'subscribe', symbols: ['SPY'] }, // trades: false is the protocol's default, not sent
  ]);
  assert.deepEqual(c.tradeSymbols, new Set(['AAPL', 'MSFT']));
  ws.receive(jsonUpdate('AAPL', 10, true));
  ws.receive(jsonTrade('AAPL', 11));
  ws.receive(jsonTrade('AAPL', 12, { side: null, tradeId: 0 })); // the source has neither
  ws.receive(jsonGap('AAPL', 5));
  ws.receive(jsonTrade('AAPL', 18, { side: 'sell' }));
  ws.receive(jsonUpdate('AAPL', 18));
  ws.receive(jsonTrade('SPY', 3)); // SPY holds no trades: not delivered
  ws.receive(jsonGap('SPY', 2));
  assert.deepEqual(seen.trade.map(({ age, ...t }) => t), [
    { symbol: 'AAPL', seq: 11n, price: '189.13', size: '100', side: 'buy', tradeId: 1011n, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n },
    { symbol: 'AAPL', seq: 12n, price: '189.13', size: '100', tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n },
    { symbol: 'AAPL', seq: 18n, price: '189.13', size: '100', side: 'sell', tradeId: 1018n, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n },
  ]);
  assert.ok(seen.trade.every((t) => typeof t.age === 'number'));
  assert.deepEqual(seen.gap, [{ symbol: 'AAPL', missed: 5 }]);
  assert.deepEqual(seen.update.map((u) => [u.seq, u.gap]), [[10n, 0], [18n, 7]], 'quotes keep their own seq tracking');
  assert.equal(c.stats.trades, 3);
  assert.equal(c.stats.tradesMissed, 5);
  assert.equal(c.stats.updates, 2);

  // Batched JSON: the events of a batch in order, whatever their kinds.
  c.setFormat('json-batch');
  const ws2 = FakeSocket.last();
  ws2.open();
  ws2.receive(batch(jsonUpdate('MSFT', 1, true), jsonTrade('MSFT', 2), jsonGap('MSFT', 3), jsonTrade('MSFT', 6), jsonUpdate('MSFT', 6)));
  const order = [];
  c.on('update', (u) => order.push(`u${u.seq}`));
  c.on('trade', (t) => order.push(`t${t.seq}`));
  c.on('gap', (g) => order.push(`g${g.missed}`));
  ws2.receive(batch(jsonTrade('MSFT', 7), jsonUpdate('MSFT', 8), jsonGap('MSFT', 1), jsonTrade('MSFT', 9), jsonTrade('MSFT', 9)));
  assert.deepEqual(order, ['t7', 'u8', 'g1', 't9'], 'a repeated trade seq is dropped');
  assert.equal(seen.error.at(-1).code, 'seq_backwards');
  assert.deepEqual(seen.trade.slice(3).map((t) => [t.symbol, t.seq]), [['MSFT', 2n], ['MSFT', 6n], ['MSFT', 7n], ['MSFT', 9n]]);
  assert.deepEqual(seen.gap.slice(1), [{ symbol: 'MSFT', missed: 3 }, { symbol: 'MSFT', missed: 1 }]);
  // A trade whose fields come in another order: exact all the same.
  ws2.receive(jsonTrade('MSFT', 10).replace('{"type":"trade",', '{').replace(/}$/, ',"type":"trade"}'));
  assert.equal(seen.trade.at(-1).tsGateway, 1800000000000000002n);
  assert.equal(seen.trade.at(-1).seq, 10n);
  c.close();
});

test('trades in binary: records named through the subscribed reply, unknown types skipped', () => {
  const { c, seen } = client({ format: 'binary' });
  const ws = FakeSocket.last();
  ws.open();
  quiet(c.subscribe(['AAPL', 'SPY'], { trades: true }));
  ws.reply({ type: 'subscribed', id: ws.sent[0].id, symbols: { AAPL: 4, SPY: 0 } });
  const unknown = record({ id: 4, seq: 1, type: 9 });
  ws.receive(frame(record({ id: 4, seq: 10, snapshot: true }), tradeRecord({ id: 4, seq: 11, tradeId: 77 }), unknown,
    gapRecord(0, 4), tradeRecord({ id: 0, seq: 20, side: 2, price: -1n }), tradeRecord({ id: 99, seq: 1 }),
    tradeRecord({ id: 4, seq: 12, side: 0 })));
  assert.deepEqual(seen.update.map((u) => [u.symbol, u.seq]), [['AAPL', 10n]]);
  assert.deepEqual(seen.trade.map(({ age, ...t }) => t), [
    { symbol: 'AAPL', seq: 11n, price: '189.13', size: '100', side: 'buy', tradeId: 77n, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n, symbolId: 4 },
    { symbol: 'SPY', seq: 20n, price: '-0.00000001', size: '100', side: 'sell', tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n, symbolId: 0 },
    { symbol: 'AAPL', seq: 12n, price: '189.13', size: '100', tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n, symbolId: 4 },
  ]);
  assert.deepEqual(seen.gap, [{ symbol: 'SPY', symbolId: 0, missed: 4 }]);
  c.close();
});

test('trades are kept across reconnects and rate changes, and stop at once when turned off', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['AAPL', 'MSFT'], { maxRate: 4, trades: true }));
  quiet(c.subscribe(['SPY'], { maxRate: 4 }));
  quiet(c.subscribe(['QQQ'], { trades: true }));
  // A rate change keeps each symbol's trades: one request with them, one without.
  const before = ws.sent.length;
  quiet(c.setMaxRate(['AAPL', 'SPY', 'NOPE'], 2));
  assert.deepEqual(bodies(ws, before), [
    { op: 'subscribe', symbols: ['SPY'], max_rate: 2 },
    { op: 'subscribe', symbols: ['AAPL'], max_rate: 2, trades: true },
  ]);
  ws.serverClose(1006);
  await tick();
  const ws2 = FakeSocket.last();
  ws2.open();
  assert.deepEqual(bodies(ws2), [
    { op: 'subscribe', symbols: ['AAPL'], max_rate: 2, trades: true },
    { op: 'subscribe', symbols: ['MSFT'], max_rate: 4, trades: true },
    { op: 'subscribe', symbols: ['SPY'], max_rate: 2 },
    { op: 'subscribe', symbols: ['QQQ'], trades: true },
  ]);
  // Trade seqs start afresh on a new connection (a restarted gateway's start low).
  ws2.receive(jsonTrade('MSFT', 5));
  ws2.receive(jsonTrade('MSFT', 6));
  assert.deepEqual(seen.trade.map((t) => t.seq), [5n, 6n]);
  // Turned off (a subscribe without trades): what is still in flight is not delivered.
  quiet(c.subscribe(['MSFT'], { maxRate: 4 }));
  assert.deepEqual(bodies(ws2).at(-1), { op: 'subscribe', symbols: ['MSFT'], max_rate: 4 });
  assert.deepEqual(c.tradeSymbols, new Set(['AAPL', 'QQQ']));
  ws2.receive(batch(jsonTrade('MSFT', 7), jsonGap('MSFT', 1), jsonUpdate('MSFT', 8)));
  assert.equal(seen.trade.length, 2);
  assert.equal(seen.gap.length, 0);
  assert.equal(seen.update.at(-1).seq, 8n, 'the quotes go on');
  // On again: from the gateway's next trade, whatever seq it has.
  quiet(c.subscribe(['MSFT'], { maxRate: 4, trades: true }));
  ws2.receive(jsonTrade('MSFT', 3));
  assert.equal(seen.trade.at(-1).seq, 3n);
  // Unsubscribed: nothing more of it.
  quiet(c.unsubscribe(['QQQ']));
  ws2.receive(jsonTrade('QQQ', 1));
  assert.equal(seen.trade.length, 3);
  assert.deepEqual(c.tradeSymbols, new Set(['AAPL', 'MSFT']));
  // A subscribe refused as a whole forgets the trades of the symbols it added.
  const refused = c.subscribe(['IBM'], { trades: true });
  ws2.reply({ type: 'error', id: ws2.sent.at(-1).id, code: 'too_many_symbols', message: 'x' });
  await assert.rejects(refused, { code: 'too_many_symbols' });
  assert.ok(!c.tradeSymbols.has('IBM'));
  c.close();
});

test('setMaxBandwidth resolves with the cap in force and is set again on every connection', async () => {
  const { c, ws, seen } = client();
  const early = c.setMaxBandwidth(20_000); // queued until the connection opens
  quiet(c.subscribe(['AAPL'], { trades: true }));
  ws.open();
  // The queued set goes first, once; then the re-subscribe and the queued subscribe (as for any
  // request made before the connection opened).
  assert.deepEqual(bodies(ws), [{ op: 'set', max_bandwidth: 20_000 }, { op: 'subscribe', symbols: ['AAPL'], trades: true },
    { op: 'subscribe', symbols: ['AAPL'], trades: true }]);
  ws.reply({ type: 'settings', id: ws.sent[0].id, max_bandwidth: 20_000 });
  assert.equal(await early, 20_000);
  assert.equal(c.maxBandwidth, 20_000);
  // The gateway may lower it to its ceiling.
  const capped = c.setMaxBandwidth(1_000_000);
  ws.reply({ type: 'settings', id: ws.sent.at(-1).id, max_bandwidth: 500_000 });
  assert.equal(await capped, 500_000);
  assert.equal(c.maxBandwidth, 500_000);
  // A new connection sets it again, before re-subscribing.
  ws.serverClose(1001);
  await tick();
  const ws2 = FakeSocket.last();
  ws2.open();
  assert.deepEqual(bodies(ws2), [{ op: 'set', max_bandwidth: 1_000_000 }, { op: 'subscribe', symbols: ['AAPL'], trades: true }]);
  ws2.reply({ type: 'settings', id: ws2.sent[0].id, max_bandwidth: 500_000 });
  await tick();
  assert.equal(c.maxBandwidth, 500_000);
  // 0 or null: the server's default (not re-sent: a new connection has it anyway).
  for (const value of [0, null]) {
    const reset = c.setMaxBandwidth(value);
    assert.deepEqual(bodies(ws2).at(-1), { op: 'set', max_bandwidth: 0 });
    ws2.reply({ type: 'settings', id: ws2.sent.at(-1).id, max_bandwidth: 0 });
    assert.equal(await reset, 0);
  }
  ws2.serverClose(1001);
  await tick();
  FakeSocket.last().open();
  assert.deepEqual(bodies(FakeSocket.last()).map((b) => b.op), ['subscribe']);
  for (const bad of [-1, 1.5, '20000', NaN]) await assert.rejects(c.setMaxBandwidth(bad), RangeError, String(bad));
  // An error reply rejects and reaches the error listeners.
  const refused = c.setMaxBandwidth(5);
  const ws3 = FakeSocket.last();
  ws3.reply({ type: 'error', id: ws3.sent.at(-1).id, code: 'bad_request', message: 'no' });
  await assert.rejects(refused, { kind: 'reply', code: 'bad_request' });
  assert.equal(seen.error.at(-1).code, 'bad_request');
  c.close();
});

test('adaptive throttling never drops trades: far behind with trades held, it cuts quotes but does not resync', async () => {
  const { c, ws, seen } = client();
  ws.open();
  const judged = nextLag(c);
  quiet(c.subscribe(['AAPL'], { maxRate: 0, trades: true }));
  quiet(c.subscribe(['MSFT'], { maxRate: 0 }));
  await pong(c, ws);
  ws.receive(jsonUpdate('AAPL', 1, false, agoNs(0)));
  // Far behind (800 ms, over resyncMs): without trades this resyncs (see above).
  ws.receive(batch(...Array.from({ length: 100 }, (_, i) => jsonUpdate('MSFT', 10 + i, false, agoNs(800)))));
  // Trades, however old, are not lag samples (only quotes can be paced).
  ws.receive(batch(...Array.from({ length: 50 }, (_, i) => jsonTrade('AAPL', 2 + i, { ts: agoNs(5_000) }))));
  const sent = ws.sent.length;
  const e = await judged;
  assert.ok(e.lagMs > 790 && e.lagMs < 900, `lag of the quotes: ${e.lagMs}`);
  assert.equal(e.behind, true);
  assert.ok(e.rate < 60, `cut: ${e.rate}`);
  assert.equal(e.resync, false, 'no resync while trades are held');
  assert.equal(c.stats.resyncs, 0);
  assert.equal(FakeSocket.all.length, 1, 'the same connection: no trade in its buffers is lost');
  assert.equal(ws.closedWith, null);
  assert.deepEqual(bodies(ws, sent), [
    { op: 'subscribe', symbols: ['AAPL'], max_rate: e.rate, trades: true },
    { op: 'subscribe', symbols: ['MSFT'], max_rate: e.rate },
  ], 'the cut re-subscribes, keeping the trades');
  assert.equal(seen.trade.length, 50, 'every trade delivered');
  c.close();
});

/** A JSON book as the gateway prints it; levels are [price, size] decimal texts. */
const jsonBook = (symbol, seq, { bids = [['61837.63', '3.78826'], ['61837.62', '0.617']], asks = [['61837.64', '1.2']],
  stale = false, depth = 10, ts = 1800000000000000002n } = {}) => {
  const list = (levels) => `[${levels.map(([p, q]) => `[${p},${q}]`).join(',')}]`;
  return `{"type":"book","symbol":"${symbol}","seq":${seq},"depth":${depth},"bids":${list(bids)},"asks":${list(asks)},` +
    `"stale":${stale},"ts_event":1800000000000000001,"ts_gateway":${ts}}`;
};
/** A binary book record (PROTOCOL.md): levels [[price, size]] as BigInts × 1e8, padded to whole units. */
function bookRecord({ id, seq, depth = 10, bids = [[6_183_763_000_000n, 378_826_000n]], asks = [[6_183_764_000_000n, 120_000_000n]], stale = false }) {
  const units = 1 + Math.ceil(((bids.length + asks.length) * 16) / RECORD_SIZE);
  const v = new DataView(new ArrayBuffer(units * RECORD_SIZE));
  v.setUint8(0, 4);
  v.setUint8(1, stale ? 2 : 0);
  v.setUint16(2, units, true);
  v.setUint32(4, id, true);
  v.setBigUint64(8, BigInt(seq), true);
  v.setUint16(16, bids.length, true);
  v.setUint16(18, asks.length, true);
  v.setUint16(20, depth, true);
  v.setBigUint64(72, 1_800_000_000_000_000_001n, true);
  v.setBigUint64(80, 1_800_000_000_000_000_002n, true);
  [...bids, ...asks].forEach(([price, size], i) => {
    v.setBigInt64(RECORD_SIZE + i * 16, price, true);
    v.setBigInt64(RECORD_SIZE + i * 16 + 8, size, true);
  });
  return new Uint8Array(v.buffer);
}
/** A delivered book without its `age` (which depends on the clock). */
const bookOf = ({ age, ...b }) => b;

test('books: subscribe with a depth asks for them; each book replaces the last, the newest is kept; seq backwards is dropped', () => {
  const { c, ws, seen } = client({ format: 'json' });
  ws.open();
  quiet(c.subscribe(['BTCUSDT'], { depth: 10 }));
  quiet(c.subscribe(['ETHUSDT'], { maxRate: 4, trades: true, depth: 20 }));
  quiet(c.subscribe(['SPY']));
  assert.deepEqual(bodies(ws), [
    { op: 'subscribe', symbols: ['BTCUSDT'], depth: 10 },
    { op: 'subscribe', symbols: ['ETHUSDT'], max_rate: 4, trades: true, depth: 20 },
    { op: 'subscribe', symbols: ['SPY'] }, // no depth: no books, and nothing to turn off
  ]);
  assert.deepEqual(c.bookDepths, new Map([['BTCUSDT', 10], ['ETHUSDT', 20]]));

  ws.receive(jsonBook('BTCUSDT', 17));
  assert.deepEqual(seen.book.map(bookOf), [{
    symbol: 'BTCUSDT', seq: 17n, depth: 10,
    bids: [{ price: '61837.63', size: '3.78826' }, { price: '61837.62', size: '0.617' }], asks: [{ price: '61837.64', size: '1.2' }],
    stale: false, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n,
  }]);
  assert.ok(Number.isFinite(seen.book[0].age));
  assert.equal(c.book('BTCUSDT'), seen.book[0], 'the newest book of the symbol');
  // A full replacement, never a delta: fewer levels, an empty side, stale; seqs may jump.
  ws.receive(jsonBook('BTCUSDT', 25, { bids: [['61837.5', '1']], asks: [], stale: true }));
  assert.deepEqual(bookOf(c.book('BTCUSDT')), {
    symbol: 'BTCUSDT', seq: 25n, depth: 10, bids: [{ price: '61837.5', size: '1' }], asks: [],
    stale: true, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n,
  });
  // The same seq again is taken (the same book, say no longer stale); a lower one is dropped,
  // counted and reported once.
  ws.receive(jsonBook('BTCUSDT', 25, { bids: [['61837.5', '1']], asks: [] }));
  assert.equal(c.book('BTCUSDT').stale, false);
  ws.receive(jsonBook('BTCUSDT', 24));
  ws.receive(jsonBook('BTCUSDT', 3));
  assert.equal(c.book('BTCUSDT').seq, 25n);
  assert.equal(c.stats.booksDropped, 2);
  assert.deepEqual(seen.error.map((e) => [e.kind, e.code]), [['protocol', 'seq_backwards']], 'reported once');
  assert.match(seen.error[0].message, /BTCUSDT: book seq 24 after 25/);
  // Books of a symbol held without depth are not delivered; quotes keep their own seqs.
  ws.receive(jsonBook('SPY', 1));
  ws.receive(jsonUpdate('BTCUSDT', 2, true));
  ws.receive(jsonBook('ETHUSDT', 9, { depth: 20 }));
  assert.deepEqual(seen.book.map((b) => [b.symbol, b.seq]), [['BTCUSDT', 17n], ['BTCUSDT', 25n], ['BTCUSDT', 25n], ['ETHUSDT', 9n]]);
  assert.equal(c.book('SPY'), undefined);
  assert.deepEqual(seen.update.map((u) => [u.symbol, u.seq, u.gap]), [['BTCUSDT', 2n, 0]]);
  assert.equal(c.stats.books, 4);
  assert.equal(c.stats.updates, 1);
  // Another layout (fields reordered, blanks): exact all the same.
  ws.receive(jsonBook('BTCUSDT', 26, { bids: [['1.00000001', '92233720368.54775807']] }).replace('{"type":"book",', '{ ').replace(/}$/, ', "type" : "book"}'));
  assert.deepEqual(c.book('BTCUSDT').bids, [{ price: '1.00000001', size: '92233720368.54775807' }]);
  assert.equal(c.book('BTCUSDT').tsGateway, 1800000000000000002n);
  // A malformed book is reported and replaces nothing.
  for (const bad of [jsonBook('BTCUSDT', 27).replace('[61837.62,0.617]', '[61837.62]'),
    jsonBook('BTCUSDT', 27).replace('{"type":"book",', '{').replace(/}$/, ',"type":"book"}').replace('"seq":27,', '')]) {
    ws.receive(bad);
    assert.equal(seen.error.at(-1).code, 'bad_json');
  }
  assert.equal(c.book('BTCUSDT').seq, 26n);
  c.close();
});

test('books in batched JSON and binary, in order with the other events; kept across connections', () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['BTCUSDT'], { trades: true, depth: 5 }));
  const order = [];
  c.on('update', (u) => order.push(`u${u.seq}`));
  c.on('trade', (t) => order.push(`t${t.seq}`));
  c.on('book', (b) => order.push(`b${b.seq}${b.stale ? ' stale' : ''}`));
  ws.receive(batch(jsonUpdate('BTCUSDT', 2, true), jsonBook('BTCUSDT', 3, { depth: 5 }), jsonTrade('BTCUSDT', 4),
    jsonBook('BTCUSDT', 5, { depth: 5, stale: true, bids: [] })));
  assert.deepEqual(order, ['u2', 'b3', 't4', 'b5 stale']);
  assert.deepEqual(c.book('BTCUSDT').bids, []);
  assert.deepEqual(c.book('BTCUSDT').asks, [{ price: '61837.64', size: '1.2' }]);

  // Binary: book records among 88-byte ones, named through the subscribed reply.
  c.setFormat('binary');
  const ws2 = FakeSocket.last();
  ws2.open();
  assert.deepEqual(bodies(ws2), [{ op: 'subscribe', symbols: ['BTCUSDT'], trades: true, depth: 5 }], 're-subscribed with its depth');
  assert.equal(c.book('BTCUSDT').seq, 5n, 'the last book is kept across connections until replaced');
  ws2.reply({ type: 'subscribed', id: ws2.sent[0].id, symbols: { BTCUSDT: 9 } });
  const bids = [[6_183_763_000_000n, 378_826_000n], [6_183_762_000_000n, 61_700_000n], [6_183_761_000_000n, 100_000_000n]];
  ws2.receive(frame(record({ id: 9, seq: 1, snapshot: true }), bookRecord({ id: 9, seq: 2, depth: 5, bids }),
    tradeRecord({ id: 9, seq: 3 }), bookRecord({ id: 9, seq: 4, depth: 5, bids: [], asks: [], stale: true }),
    bookRecord({ id: 99, seq: 1 }), record({ id: 9, seq: 5 })));
  assert.deepEqual(order.slice(4), ['u1', 'b2', 't3', 'b4 stale', 'u5'], 'a new connection: book seqs start afresh');
  assert.deepEqual(bookOf(seen.book.at(-2)), {
    symbol: 'BTCUSDT', seq: 2n, depth: 5,
    bids: [{ price: '61837.63', size: '3.78826' }, { price: '61837.62', size: '0.617' }, { price: '61837.61', size: '1' }],
    asks: [{ price: '61837.64', size: '1.2' }],
    stale: false, tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n, symbolId: 9,
  });
  assert.deepEqual(bookOf(c.book('BTCUSDT')), {
    symbol: 'BTCUSDT', seq: 4n, depth: 5, bids: [], asks: [], stale: true,
    tsEvent: 1800000000000000001n, tsGateway: 1800000000000000002n, symbolId: 9,
  });
  // A book record whose length is wrong: the frame is reported and delivers nothing.
  const broken = bookRecord({ id: 9, seq: 6 });
  broken[2] = 0;
  const delivered = order.length;
  ws2.receive(frame(record({ id: 9, seq: 6 }), broken));
  assert.equal(order.length, delivered);
  assert.deepEqual([seen.error.at(-1).kind, seen.error.at(-1).code], ['protocol', 'bad_frame']);
  assert.equal(c.stats.books, 4);
  c.close();
});

test('books: turned off with depth 0 (said once), kept through rate changes and reconnects, gone when unsubscribed', async () => {
  const { c, ws, seen } = client();
  ws.open();
  quiet(c.subscribe(['BTCUSDT', 'ETHUSDT'], { maxRate: 4, depth: 10 }));
  quiet(c.subscribe(['SPY'], { maxRate: 4, trades: true }));
  ws.receive(jsonBook('BTCUSDT', 1));
  // A rate change keeps each symbol's depth and trades: one request per distinct pair.
  const before = ws.sent.length;
  quiet(c.setMaxRate(['SPY', 'BTCUSDT', 'NOPE'], 2));
  assert.deepEqual(bodies(ws, before), [
    { op: 'subscribe', symbols: ['BTCUSDT'], max_rate: 2, depth: 10 },
    { op: 'subscribe', symbols: ['SPY'], max_rate: 2, trades: true },
  ]);
  // A subscribe without depth turns the books off, saying so (depth 0); the book still in
  // flight is not delivered, and the newest is forgotten.
  const off = c.subscribe(['BTCUSDT'], { maxRate: 4 });
  assert.deepEqual(bodies(ws).at(-1), { op: 'subscribe', symbols: ['BTCUSDT'], max_rate: 4, depth: 0 });
  assert.equal(c.book('BTCUSDT'), undefined);
  assert.deepEqual(c.bookDepths, new Map([['ETHUSDT', 10]]));
  ws.receive(jsonBook('BTCUSDT', 2));
  assert.deepEqual(seen.book.map((b) => b.seq), [1n]);
  // Once the gateway confirmed it, no need to say it again.
  ws.reply({ type: 'subscribed', id: ws.sent.at(-1).id, symbols: { BTCUSDT: 0 } });
  await off;
  quiet(c.subscribe(['BTCUSDT'], { maxRate: 3 }));
  assert.deepEqual(bodies(ws).at(-1), { op: 'subscribe', symbols: ['BTCUSDT'], max_rate: 3 });

  // A reconnect re-subscribes each symbol with its depth; book seqs start afresh.
  ws.receive(jsonBook('ETHUSDT', 50));
  ws.serverClose(1006);
  await tick();
  const ws2 = FakeSocket.last();
  ws2.open();
  assert.deepEqual(bodies(ws2), [
    { op: 'subscribe', symbols: ['BTCUSDT'], max_rate: 3 },
    { op: 'subscribe', symbols: ['ETHUSDT'], max_rate: 4, depth: 10 },
    { op: 'subscribe', symbols: ['SPY'], max_rate: 2, trades: true },
  ]);
  ws2.receive(jsonBook('ETHUSDT', 7));
  assert.equal(c.book('ETHUSDT').seq, 7n);
  // Depth changes: the deeper or shallower book replaces the one before.
  quiet(c.subscribe(['ETHUSDT'], { maxRate: 4, depth: 3 }));
  assert.deepEqual(bodies(ws2).at(-1), { op: 'subscribe', symbols: ['ETHUSDT'], max_rate: 4, depth: 3 });
  ws2.receive(jsonBook('ETHUSDT', 7, { depth: 3 }));
  assert.equal(c.book('ETHUSDT').depth, 3);
  // Unsubscribed: nothing more of it, and a new subscription starts without books.
  quiet(c.unsubscribe(['ETHUSDT']));
  ws2.receive(jsonBook('ETHUSDT', 8));
  assert.equal(c.book('ETHUSDT'), undefined);
  assert.equal(seen.book.at(-1).seq, 7n);
  quiet(c.subscribe(['ETHUSDT']));
  assert.deepEqual(bodies(ws2).at(-1), { op: 'subscribe', symbols: ['ETHUSDT'] });
  // A depth that is not a non-negative integer is refused before anything is sent or held.
  const sent = ws2.sent.length;
  for (const bad of [-1, 2.5, '10', NaN, true]) {
    await assert.rejects(c.subscribe(['IBM'], { depth: bad }), RangeError, String(bad));
  }
  assert.equal(ws2.sent.length, sent);
  assert.ok(!c.subscriptions.has('IBM'));
  quiet(c.subscribe(['IBM'], { depth: null })); // null: none, as 0
  assert.deepEqual(bodies(ws2).at(-1), { op: 'subscribe', symbols: ['IBM'] });
  // A subscribe refused as a whole forgets the depth of the symbols it added.
  const refused = c.subscribe(['QQQ'], { depth: 5 });
  ws2.reply({ type: 'error', id: ws2.sent.at(-1).id, code: 'bad_request', message: 'depth over server.max_depth' });
  await assert.rejects(refused, { code: 'bad_request' });
  assert.ok(!c.bookDepths.has('QQQ'));
  c.close();
});
