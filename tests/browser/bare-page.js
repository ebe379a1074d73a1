// bare-page.js: a bare page on tickgate.js (no dashboard), run in Chromium by e2e.test.mjs and
// the browser benchmark (bench.mjs). They serve it with harness.mjs's openBarePage on the
// gateway's own origin, so it imports the client the gateway embeds (/tickgate.js).
//
// Settings, from the query string:
//   format    json-batch | json | binary (default: the client's)
//   symbols   how many of the gateway's first symbols to subscribe to (the busiest: the
//             simulator's activity falls with the list order), default 9
//   busy      ms of busy work per update (a deliberately slow page), default 0
//   adaptive  0 turns adaptive throttling off
//   ping      ms between pings (default: the client's)
//   from      index in the list of the first symbol to subscribe to (default 0)
//   trades    1: subscribe with trades: true, and record every trade and gap (below)
//   transport auto | websocket | sse (default: the client's, auto)
//   wsretry   ms between the WebSocket probes of 'auto' on SSE (default: the client's)
//   names     comma-separated symbols to subscribe to (with `from` and `symbols`) in place of
//             the gateway's list, which needs a WebSocket (over SSE, list() is unavailable)
//
// What it measures goes to window.probe (read with page.evaluate): every live update's age
// (u.age: the gateway's clock, estimated from pings, minus ts_gateway, when the listener ran)
// with the time it was taken, each 'lag' event and each pong; counts() reads the client's
// running counts. With trades=1, per symbol: the seq of its first snapshot (snapshotSeq), and
// its trades and gaps in the order delivered (events: 't <seq>|<price>|<size>|<side>|<tradeId>|
// <tsEvent>|<tsGateway>' and 'g <missed>'); fieldErrors lists trades whose fields have the wrong
// types. probe.states lists the 'state' events ({state, transport, reason, code}).
// window.client is the client, for page.evaluate.

import { connect } from '/tickgate.js';

const q = new URLSearchParams(location.search);
const num = (key, fallback) => (q.has(key) ? Number(q.get(key)) : fallback);
const busyMs = num('busy', 0);
const options = { adaptive: q.get('adaptive') !== '0' };
if (q.has('format')) options.format = q.get('format');
if (q.has('ping')) options.pingInterval = num('ping');
if (q.has('transport')) options.transport = q.get('transport');
if (q.has('wsretry')) options.wsRetry = num('wsretry');

const client = connect('/ws', options);
const t0 = performance.now();
const probe = {
  format: client.format,
  universe: [], // the gateway's symbols, in list order
  symbols: [], // those subscribed
  subscribedAt: NaN, // ms since the page's start, like every `t` below
  ageT: [], // when each live update was handled (ms since the page's start)
  ages: [], // and its age, ms
  lags: [], // 'lag' events, with t
  pongs: [], // [t, rtt ms]
  errors: [],
  counts: () => ({ t: performance.now() - t0, ...client.stats }),
  snapshotSeq: {}, // trades=1: symbol -> seq of its first snapshot, as a string
  events: {}, // trades=1: symbol -> its trades and gaps, in order (see above)
  fieldErrors: [],
  states: [],
};
window.probe = probe;
window.client = client;
const trades = q.get('trades') === '1';

client.on('update', (u) => {
  if (busyMs > 0) {
    const until = performance.now() + busyMs;
    while (performance.now() < until); // the slow page's work
  }
  if (!u.snapshot) {
    probe.ageT.push(performance.now() - t0);
    probe.ages.push(u.age);
  } else if (trades && !(u.symbol in probe.snapshotSeq)) {
    probe.snapshotSeq[u.symbol] = String(u.seq);
  }
});
if (trades) {
  const decimal = /^-?\d+(\.\d+)?$/;
  client.on('trade', (t) => {
    const ok = typeof t.symbol === 'string' && typeof t.seq === 'bigint' && decimal.test(t.price) &&
      decimal.test(t.size) && (t.side === undefined || t.side === 'buy' || t.side === 'sell') &&
      (t.tradeId === undefined || typeof t.tradeId === 'bigint') && typeof t.tsEvent === 'bigint' &&
      typeof t.tsGateway === 'bigint' && Number.isFinite(t.age);
    if (!ok && probe.fieldErrors.length < 10) probe.fieldErrors.push(JSON.stringify(t, (k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
    (probe.events[t.symbol] ??= []).push(`t ${t.seq}|${t.price}|${t.size}|${t.side}|${t.tradeId}|${t.tsEvent}|${t.tsGateway}`);
  });
  client.on('gap', (g) => (probe.events[g.symbol] ??= []).push(`g ${g.missed}`));
}
client.on('lag', (e) => probe.lags.push({ t: performance.now() - t0, ...e }));
client.on('pong', ({ rtt }) => probe.pongs.push([performance.now() - t0, rtt]));
client.on('error', (e) => probe.errors.push(`${e.kind} ${e.code}: ${e.message}`));
client.on('state', ({ state, transport, reason, code }) => probe.states.push({ state, transport, reason, code }));

probe.universe = q.has('names') ? q.get('names').split(',') : await client.list();
const from = num('from', 0);
probe.symbols = probe.universe.slice(from, from + num('symbols', 9));
await client.subscribe(probe.symbols, { trades }); // no max_rate: the server's default, every update
probe.subscribedAt = performance.now() - t0;
