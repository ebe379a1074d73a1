// client.test.mjs: tests of TickgateClient (src/server/web/tickgate.js) against a scripted fake
// WebSocket (node --test): request ids and replies, error replies, reconnect with re-subscribe
// at each symbol's max rate, seq tracking reset on reconnect, binary symbol ids, format switch,
// ping timeout. The real gateway is exercised by e2e.test.mjs.

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
  const seen = { update: [], state: [], error: [], status: [] };
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
const frame = (...records) => {
  const out = new Uint8Array(records.length * RECORD_SIZE);
  records.forEach((r, i) => out.set(r, i * RECORD_SIZE));
  return out.buffer;
};
const jsonUpdate = (symbol, seq, snapshot = false) =>
  `{"type":"update","symbol":"${symbol}","seq":${seq},"bid":1.5,"bid_size":1,"ask":1.6,"ask_size":1,` +
  `"last":1.55,"last_size":1,"volume":10,"ts_event":1800000000000000001,"ts_gateway":1800000000000000002,"snapshot":${snapshot}}`;

test('requests carry fresh ids and replies are matched by id, in any order', async () => {
  const { c, ws } = client();
  assert.equal(ws.url.searchParams.get('format'), 'json');
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
