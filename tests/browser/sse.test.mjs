// sse.test.mjs: Server-Sent Events in a real browser against a real gateway (node --test).
//
// Starts `tickgate serve` on a free port and drives headless Chromium (harness.mjs, as
// e2e.test.mjs does), and checks:
// - GET /sse read by Chromium's own EventSource: the `subscribed` event, a snapshot per symbol,
//   live updates and trades, numbered events; max_rate; refusals as HTTP statuses with a JSON
//   body (which an EventSource cannot read: it just stops);
// - a stream the gateway drops (a restart) is resumed by the EventSource by itself, with
//   Last-Event-ID, and starts again from fresh snapshots;
// - tickgate.js with `transport: 'sse'`: updates, trades and gaps through the same events as
//   over a WebSocket, each trade accounted for, and the same trade read alike over both;
// - tickgate.js with `transport: 'auto'` where WebSockets do not get through: it falls back to
//   SSE by itself, and back to a WebSocket once one gets through again.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BIN, setUp, startGateway, waitHealthy, stopGateway, openBarePage, accountTrades, blockWebSockets } from './harness.mjs';

/**
 * Opens `url` with the page's own EventSource; every event goes to window.sse.events as
 * {id, data, t} (t: ms since the stream was created), opens and errors (with readyState) to
 * window.sse.log. window.sse.es is the EventSource.
 */
function openEventSource(page, url) {
  return page.evaluate((url) => {
    const t0 = performance.now();
    const es = new EventSource(url);
    window.sse = { es, events: [], log: [] };
    es.onopen = () => window.sse.log.push(`open @${window.sse.events.length}`);
    es.onerror = () => window.sse.log.push(`error ${es.readyState} @${window.sse.events.length}`);
    es.onmessage = (e) => window.sse.events.push({ id: e.lastEventId, data: e.data, t: performance.now() - t0 });
  }, url);
}

/** Waits until `fn` (run in the page) is true; fails saying `what`, with the page's stream log. */
async function until(page, what, fn, arg, ms = 10_000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch {
    const log = await page.evaluate(() => window.sse?.log ?? window.probe?.states);
    assert.fail(`${what}: not within ${ms} ms; ${JSON.stringify(log)}`);
  }
}

/**
 * Checks one stream's events: numbered 1, 2, ... from `from`; `subscribed` first with every
 * symbol; then per symbol a snapshot before anything else of it; live updates and trades with
 * rising seqs. Returns {snapshots, updates, trades} per symbol.
 */
function checkStream(events, symbols, from = 0) {
  const seen = Object.fromEntries(symbols.map((s) => [s, { snapshots: 0, updates: 0, trades: 0, seq: -1n, tradeSeq: -1n, snapshotSeq: null }]));
  events.slice(from).forEach(({ id, data }, i) => {
    assert.equal(id, String(i + 1), `event ${i + 1}'s id`);
    const m = JSON.parse(data);
    if (i === 0) {
      assert.equal(m.type, 'subscribed', `the first event: ${data}`);
      assert.deepEqual(Object.keys(m.symbols).sort(), [...symbols].sort());
      return;
    }
    assert.ok(['update', 'trade', 'gap', 'status'].includes(m.type), `a message a format=json WebSocket gets: ${data}`);
    if (m.type === 'status') return;
    const s = seen[m.symbol];
    assert.ok(s, `a subscribed symbol: ${data}`);
    const seq = BigInt(/"seq":(\d+)/.exec(data)?.[1] ?? -1);
    if (m.type === 'update' && m.snapshot) {
      assert.equal(s.snapshots + s.updates + s.trades, 0, `${m.symbol}: the snapshot comes first`);
      s.snapshots++;
      s.seq = seq;
      s.snapshotSeq = seq;
    } else if (m.type === 'update') {
      assert.ok(s.snapshots === 1 && seq > s.seq, `${m.symbol}: a live update after the snapshot, seq rising: ${seq} after ${s.seq}`);
      s.updates++;
      s.seq = seq;
    } else if (m.type === 'trade') {
      assert.ok(s.snapshots === 1 && seq > s.snapshotSeq && seq > s.tradeSeq, `${m.symbol}: trade ${seq} after the snapshot (${s.snapshotSeq}) and the trade before (${s.tradeSeq})`);
      assert.match(data, /^\{"type":"trade","symbol":"[^"]+","seq":\d+,"price":[\d.]+,"size":[\d.]+(,"side":"(buy|sell)")?(,"trade_id":\d+)?,"ts_event":\d+,"ts_gateway":\d+\}$/);
      s.trades++;
      s.tradeSeq = seq;
    }
  });
  return seen;
}

test('GET /sse in Chromium\'s EventSource: subscribed, snapshots, updates, trades; refusals are HTTP statuses', { timeout: 30_000 }, async (t) => {
  const env = await setUp(t, ['--trade-percent', '50']);
  const page = await env.browser.newPage();
  const streams = [];
  page.on('request', (r) => { if (r.resourceType() === 'eventsource') streams.push(r.url()); });
  await page.goto(`${env.origin}/healthz`);
  const symbols = ['SPY', 'QQQ', 'AAPL'];
  await openEventSource(page, `/sse?symbols=${symbols.join(',')}&trades=1`);
  await until(page, 'live updates and trades of every symbol', (syms) => syms.every((s) =>
    window.sse.events.some((e) => e.data.includes(`"symbol":"${s}"`) && e.data.includes('"snapshot":false')) &&
    window.sse.events.some((e) => e.data.startsWith(`{"type":"trade","symbol":"${s}"`))), symbols);
  const { events, log } = await page.evaluate(() => window.sse);
  assert.deepEqual(log, ['open @0'], 'one stream, open from the start');
  assert.equal(streams.length, 1);
  const seen = checkStream(events, symbols);
  for (const s of symbols) {
    assert.equal(seen[s].snapshots, 1, `${s}: one snapshot`);
    assert.ok(seen[s].updates > 0 && seen[s].trades > 0, `${s}: ${JSON.stringify(seen[s], (k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  }
  t.diagnostic(`${events.length} events in ${Math.round(events.at(-1).t)} ms: ${symbols.map((s) => `${s} ${seen[s].updates} updates, ${seen[s].trades} trades`).join('; ')}`);

  // max_rate paces quote updates (SPY ticks hundreds of times a second here); trades=0 has none.
  await page.evaluate(() => window.sse.es.close());
  await openEventSource(page, '/sse?symbols=SPY&max_rate=2&trades=0');
  await page.waitForTimeout(2_500);
  const paced = await page.evaluate(() => window.sse.events.map((e) => ({ ...JSON.parse(e.data), t: e.t })));
  const live = paced.filter((m) => m.type === 'update' && !m.snapshot);
  assert.equal(paced[0].type, 'subscribed');
  assert.ok(paced.every((m) => m.type !== 'trade'), 'no trades without trades=1');
  assert.ok(live.length >= 2 && live.length <= 7, `about 2 updates/s over 2.5 s: ${live.length}`);

  // Refusals: a status and a JSON body, before any stream. An EventSource cannot read them: it
  // stops (readyState CLOSED) without retrying.
  const refused = await page.evaluate(async () => Promise.all(['/sse?symbols=SPY,NOPE', '/sse', '/sse?symbols=SPY&max_rate=5000', '/sse?symbols=SPY&format=binary']
    .map(async (url) => {
      const r = await fetch(url);
      return { status: r.status, type: r.headers.get('content-type'), body: await r.json() };
    })));
  assert.deepEqual(refused.map((r) => [r.status, r.type, r.body.error]), [
    [400, 'application/json', 'unknown_symbol'], [400, 'application/json', 'bad_request'],
    [400, 'application/json', 'bad_request'], [400, 'application/json', 'bad_request'],
  ]);
  assert.deepEqual(refused[0].body.symbols, ['NOPE']);
  assert.ok(refused.every((r) => typeof r.body.message === 'string'));
  await page.evaluate(() => window.sse.es.close());
  await openEventSource(page, '/sse?symbols=NOPE');
  await until(page, 'the EventSource gives up', () => window.sse.log.includes('error 2 @0'));
  await page.waitForTimeout(2_500); // longer than the stream's retry (2 s): no second attempt
  assert.deepEqual(await page.evaluate(() => window.sse.log), ['error 2 @0']);
  assert.equal(streams.filter((u) => u.includes('NOPE')).length, 1, 'not retried');
});

test('GET /sse: a dropped stream resumes by itself with Last-Event-ID, from fresh snapshots', { timeout: 40_000 }, async (t) => {
  const env = await setUp(t, ['--trade-percent', '50']);
  const page = await env.browser.newPage();
  const requests = []; // the EventSource's requests, with their Last-Event-ID
  page.on('request', async (r) => {
    if (r.resourceType() === 'eventsource') requests.push({ url: r.url(), lastEventId: (await r.allHeaders())['last-event-id'] });
  });
  await page.goto(`${env.origin}/healthz`);
  const symbols = ['SPY', 'QQQ'];
  await openEventSource(page, `/sse?symbols=${symbols.join(',')}&trades=1`);
  await until(page, 'live updates', () => window.sse.events.filter((e) => e.data.includes('"snapshot":false')).length > 20);

  // The gateway goes away (the stream ends), and comes back on the same port.
  const exit = await stopGateway(env.gw, 'SIGTERM');
  assert.equal(exit.code, 0);
  await until(page, 'the EventSource notices', () => window.sse.log.some((l) => l.startsWith('error')));
  const before = await page.evaluate(() => window.sse.events.length);
  const lastId = await page.evaluate(() => window.sse.events.at(-1).id);
  assert.equal(lastId, String(before), 'numbered from 1, one by one');
  t.diagnostic(`stream dropped after ${before} events; log ${JSON.stringify(await page.evaluate(() => window.sse.log))}`);
  env.gw = startGateway(BIN, env.port, ['--trade-percent', '50']);
  await waitHealthy(env.gw, env.origin);
  await until(page, 'a new stream with fresh snapshots and live updates', (n) => {
    const after = window.sse.events.slice(n);
    return after.filter((e) => e.data.includes('"snapshot":true')).length >= 2 && after.some((e) => e.data.includes('"snapshot":false'));
  }, before, 15_000);

  const { events, log } = await page.evaluate(() => window.sse);
  // The EventSource reconnected by itself (readyState CONNECTING, then open), sending the id
  // of the last event it had; the gateway answered with a new stream: `subscribed` (id 1),
  // then a snapshot of every symbol (the current state: the gateway conflates, nothing to replay).
  assert.equal(log[0], 'open @0');
  assert.ok(log.slice(1).every((l) => l.startsWith('error 0') || l.startsWith('open')), `reconnecting, never given up: ${JSON.stringify(log)}`);
  assert.equal(log.at(-1), `open @${before}`);
  const resumed = requests.filter((r) => r.lastEventId !== undefined);
  assert.ok(resumed.length >= 1, `a request with Last-Event-ID: ${JSON.stringify(requests)}`);
  assert.ok(resumed.every((r) => r.lastEventId === lastId && r.url === requests[0].url), `the same URL, Last-Event-ID ${lastId}: ${JSON.stringify(requests)}`);
  const seen = checkStream(events, symbols, before);
  for (const s of symbols) assert.equal(seen[s].snapshots, 1, `${s}: a fresh snapshot`);
  t.diagnostic(`resumed with Last-Event-ID ${lastId} after ${requests.length - 1} attempt(s); snapshots: ${symbols.map((s) => `${s} seq ${seen[s].snapshotSeq}`).join(', ')}`);
});

test('tickgate.js over SSE: updates, trades and gaps through the same events as over a WebSocket', { timeout: 60_000 }, async (t) => {
  // Every event a trade and a trade backlog of 5 per symbol, as in e2e.test.mjs: a page that
  // stalls loses trades, and is told exactly how many.
  const env = await setUp(t, ['--trade-percent', '100', '--max-trade-backlog', '5', '--rate', '5000']);
  const ws = await env.browser.newPage();
  await openBarePage(ws, env.origin, { transport: 'websocket', format: 'json', symbols: 3, trades: 1 });
  const names = await ws.evaluate(() => window.probe.symbols);
  const sse = await env.browser.newPage();
  const sockets = [];
  sse.on('websocket', (w) => sockets.push(w.url()));
  await openBarePage(sse, env.origin, { transport: 'sse', names: names.join(','), trades: 1 });
  const counts = (p) => p.evaluate(() => window.probe.counts());
  await sse.waitForTimeout(1_500);
  const streaming = await counts(sse);
  // A stall of the page: trades pile up in the gateway beyond the backlog.
  await sse.evaluate(() => {
    const until = performance.now() + 2_000;
    while (performance.now() < until);
  });
  await sse.waitForTimeout(1_500);
  const after = await counts(sse);
  t.diagnostic(`SSE: ${streaming.trades} trades, ${streaming.tradesMissed} missed; after a stall ${after.trades} trades, ${after.tradesMissed} missed`);
  assert.ok(after.tradesMissed > streaming.tradesMissed, 'the stall cost trades, reported as gaps');

  const probes = await Promise.all([ws, sse].map((p) => p.evaluate(() => {
    const { symbols, snapshotSeq, events, fieldErrors, errors, states } = window.probe;
    return { symbols, snapshotSeq, events, fieldErrors, errors, states, counts: window.probe.counts(), transport: window.client.transport };
  })));
  const [overWs, overSse] = probes;
  assert.equal(overSse.transport, 'sse');
  assert.deepEqual(sockets, [], 'no WebSocket at all');
  assert.deepEqual(overSse.states.map((s) => [s.state, s.transport]), [['open', 'sse']]);
  assert.deepEqual(overSse.symbols, overWs.symbols);
  const bySymbol = {};
  for (const [name, p] of [['websocket', overWs], ['sse', overSse]]) {
    assert.deepEqual(p.errors, [], `${name}: no errors`);
    assert.deepEqual(p.fieldErrors, [], `${name}: every trade has the documented fields`);
    assert.ok(p.counts.updates > 0, `${name}: quotes flow`);
    let trades = 0;
    let missed = 0;
    for (const s of p.symbols) {
      const tally = accountTrades(`${name} ${s}`, p.snapshotSeq[s], p.events[s] ?? []);
      assert.ok(tally.trades > 50, `${name} ${s}: trades received (${tally.trades})`);
      trades += tally.trades;
      missed += tally.missed;
      (bySymbol[s] ??= []).push(tally.bySeq);
    }
    assert.equal(trades, p.counts.trades, `${name}: stats.trades`);
    assert.equal(missed, p.counts.tradesMissed, `${name}: stats.tradesMissed`);
    t.diagnostic(`${name}: ${trades} trades + ${missed} missed, ${p.counts.updates} updates`);
  }
  // The same trade (symbol and seq) reads the same over both transports.
  let compared = 0;
  for (const [s, [a, b]] of Object.entries(bySymbol)) {
    for (const [seq, fields] of a) {
      if (!b.has(seq)) continue;
      assert.equal(b.get(seq), fields, `${s} seq ${seq}: WebSocket and SSE agree`);
      compared++;
    }
  }
  assert.ok(compared > 100, `trades seen over both: ${compared}`);
  // What needs a WebSocket says so.
  const unsupported = await sse.evaluate(() => Promise.all([window.client.list(), window.client.setMaxBandwidth(1000)]
    .map((p) => p.then(() => 'resolved', (e) => `${e.kind} ${e.code}`))));
  assert.deepEqual(unsupported, ['unsupported websocket_only', 'unsupported websocket_only']);
  await Promise.all([ws.close(), sse.close()]);
});

test('tickgate.js auto: WebSockets blocked, it falls back to SSE; once they get through, back to a WebSocket', { timeout: 60_000 }, async (t) => {
  const env = await setUp(t, ['--trade-percent', '100', '--rate', '5000']);
  const page = await env.browser.newPage();
  const opened = []; // WebSockets that reached the gateway
  page.on('websocket', (w) => opened.push(w.url()));
  await blockWebSockets(page);
  await openBarePage(page, env.origin, { names: 'SPY,QQQ,AAPL', symbols: 3, trades: 1, wsretry: 1_500 });
  const probe = () => page.evaluate(() => {
    const { snapshotSeq, events, errors, states, symbols } = window.probe;
    return { snapshotSeq, events, errors, states, symbols, counts: window.probe.counts(), transport: window.client.transport, blocked: window.blockedWebSockets };
  });
  await page.waitForTimeout(1_000);
  const onSse = await probe();
  t.diagnostic(`states ${JSON.stringify(onSse.states)}; ${onSse.blocked} WebSockets blocked`);
  assert.equal(onSse.transport, 'sse');
  assert.ok(onSse.blocked >= 2, 'WebSockets tried first');
  assert.deepEqual(opened, []);
  const fallback = onSse.states.findIndex((s) => s.reason === 'fallback');
  assert.ok(fallback >= 0, `a fallback: ${JSON.stringify(onSse.states)}`);
  assert.deepEqual(onSse.states.slice(fallback).map((s) => [s.state, s.transport]), [['connecting', 'sse'], ['open', 'sse']]);
  assert.deepEqual(onSse.errors, []);
  assert.ok(onSse.counts.updates > 0, 'updates over SSE');
  for (const s of onSse.symbols) {
    const tally = accountTrades(`SSE ${s}`, onSse.snapshotSeq[s], onSse.events[s] ?? []);
    assert.ok(tally.trades > 20, `SSE ${s}: trades (${tally.trades})`);
  }

  // The way is clear again: the next probe (within 1.5 s) gets through, and the client moves
  // back to a WebSocket with its subscriptions and trades.
  await page.evaluate(() => { window.blockWebSocket = false; });
  await until(page, 'back on a WebSocket', () => window.probe.states.some((s) => s.state === 'open' && s.transport === 'websocket'), null, 6_000);
  const moved = await probe();
  await page.waitForTimeout(1_000);
  const onWs = await probe();
  const back = onWs.states.findIndex((s) => s.reason === 'transport change');
  assert.deepEqual(onWs.states.slice(back).map((s) => [s.state, s.transport]), [['connecting', 'websocket'], ['open', 'websocket']]);
  assert.equal(onWs.transport, 'websocket');
  assert.ok(opened.length >= 2, `a probe, then the connection: ${JSON.stringify(opened)}`);
  assert.ok(onWs.counts.trades > moved.counts.trades && onWs.counts.updates > moved.counts.updates, 'trades and updates go on');
  assert.deepEqual(onWs.errors, []);
  await page.close();
});
