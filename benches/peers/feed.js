// Shared by the benchmark peers (uws-server.js, ws-server.js): command line, symbol
// universe, the simulated feed, the tickgate protocol v1 JSON encoding, and the request
// parser. Each peer only adds its own transport and fan-out, so the comparison with
// tickgate is about fan-out, not about different feeds or encoders.
'use strict';

// ns since the Unix epoch: anchored to Date.now() once, then advanced by the monotonic
// hrtime, so stamps are comparable with the load generator's wall clock (same host) and
// never jump with clock adjustments during a run.
const ANCHOR = BigInt(Date.now()) * 1000000n - process.hrtime.bigint();
function nowNs() {
  return ANCHOR + process.hrtime.bigint();
}

function parseArgs(argv) {
  const o = { port: 9000, host: '127.0.0.1', symbols: 1000, rate: 10000, tickMs: 1, maxBuffered: 1 << 20 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k} needs a non-negative number, got ${v}`);
      i++;
      return n;
    };
    switch (k) {
      case '--port': o.port = num(); break;
      case '--host': o.host = v; i++; break;
      case '--symbols': o.symbols = num(); break;
      case '--rate': o.rate = num(); break;
      case '--tick-ms': o.tickMs = num(); break;
      case '--max-buffered': o.maxBuffered = num(); break;
      case '-h': case '--help':
        console.log('usage: node SERVER.js [--port P] [--host H] [--symbols N] [--rate TICKS_PER_SEC] [--tick-ms MS] [--max-buffered BYTES]');
        process.exit(0);
        break;
      default: throw new Error(`unknown flag ${k}`);
    }
  }
  if (o.symbols < 1) throw new Error('--symbols must be at least 1');
  return o;
}

// Fixed-point with 8 decimals, printed like tickgate (no trailing zeros, no exponent).
// Values here are integers of 10^-2 (prices) or whole units (sizes), so only the cents
// part can be non-zero.
function fmtCents(c) {
  const whole = Math.trunc(c / 100);
  const frac = c % 100;
  if (frac === 0) return String(whole);
  return frac % 10 === 0 ? `${whole}.${frac / 10}` : `${whole}.${frac < 10 ? '0' : ''}${frac}`;
}

class Feed {
  constructor(symbols) {
    this.names = [];
    this.ids = new Map();
    this.state = [];
    for (let i = 0; i < symbols; i++) {
      const name = `SYM${String(i).padStart(5, '0')}`;
      this.names.push(name);
      this.ids.set(name, i);
      // Cents; 10.00 .. 500.00, spread 1-2 cents.
      const mid = 1000 + ((i * 7919) % 49000);
      this.state.push({ seq: 0, bid: mid, ask: mid + 1, bidSize: 100, askSize: 100, last: 0, lastSize: 0, volume: 0, tsEvent: 0n, tsGateway: 0n });
    }
    this.ticks = 0;
  }

  // Advances one symbol by one event (a quote, every fourth a trade) and returns its state.
  step(id, ts) {
    const s = this.state[id];
    s.seq += 1;
    const r = Math.random();
    const move = r < 0.33 ? -1 : r < 0.66 ? 1 : 0;
    s.bid = Math.max(1, s.bid + move);
    s.ask = s.bid + 1 + ((s.seq & 1));
    s.bidSize = 100 * (1 + ((s.seq * 31) % 9));
    s.askSize = 100 * (1 + ((s.seq * 17) % 9));
    if ((s.seq & 3) === 0) {
      s.last = s.bid;
      s.lastSize = 100;
      s.volume += 100;
    }
    s.tsEvent = ts;
    s.tsGateway = ts;
    this.ticks++;
    return s;
  }

  encode(id, snapshot) {
    const s = this.state[id];
    return `{"type":"update","symbol":"${this.names[id]}","seq":${s.seq},"bid":${fmtCents(s.bid)},"bid_size":${s.bidSize},"ask":${fmtCents(s.ask)},"ask_size":${s.askSize},"last":${fmtCents(s.last)},"last_size":${s.lastSize},"volume":${s.volume},"ts_event":${s.tsEvent},"ts_gateway":${s.tsGateway},"snapshot":${snapshot}}`;
  }

  hasValue(id) {
    return this.state[id].seq > 0;
  }

  // Runs the feed: every tickMs a timer emits the ticks that are due (rate × elapsed −
  // emitted), each on a uniformly random symbol, calling publish(id, jsonString) once per
  // tick. Pacing by "due" rather than a fixed count per timer keeps the rate right when
  // timers fire late (a loaded event loop).
  start(rate, tickMs, publish) {
    if (rate <= 0) return;
    const t0 = process.hrtime.bigint();
    const n = this.names.length;
    let emitted = 0;
    const pump = () => {
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      // At most one second's worth per turn, so a long stall does not become a burst.
      let due = Math.min(Math.floor(elapsed * rate) - emitted, rate);
      if (due < 0) due = 0;
      const ts = nowNs();
      for (let k = 0; k < due; k++) {
        const id = Math.floor(Math.random() * n);
        this.step(id, ts);
        publish(id, this.encode(id, false));
      }
      emitted = Math.max(emitted + due, Math.floor(elapsed * rate) - rate);
    };
    this.timer = setInterval(pump, tickMs);
  }

  stats(rate, extra) {
    return JSON.stringify({ feed_rate_target: rate, symbols: this.names.length, ticks: this.ticks, feed_ended: false, ...extra });
  }
}

// Parses one client request; returns {op, id, symbols} or {error} (a protocol error reply).
function parseRequest(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (_) {
    return { error: { type: 'error', code: 'bad_request', message: 'not JSON' } };
  }
  if (m === null || typeof m !== 'object' || typeof m.op !== 'string') {
    return { error: { type: 'error', code: 'bad_request', message: 'op missing' } };
  }
  const id = Number.isInteger(m.id) ? m.id : undefined;
  if (m.op === 'subscribe' || m.op === 'unsubscribe') {
    if (!Array.isArray(m.symbols) || m.symbols.length === 0 || !m.symbols.every((s) => typeof s === 'string')) {
      return { error: { type: 'error', id, code: 'bad_request', message: 'symbols must be a non-empty array of strings' } };
    }
  }
  return { op: m.op, id, symbols: m.symbols };
}

// The replies, as tickgate writes them (id only when the request had one).
function reply(obj) {
  if (obj.id === undefined) delete obj.id;
  return JSON.stringify(obj);
}

// Carries out one parsed request `r` of a client that holds the symbol ids in `held` (a
// Set), the same way for both peers: `send(text)` writes to the client, `join(symbol, id)`
// and `leave(symbol, id)` add it to / remove it from the symbol's fan-out. Replies as
// tickgate does: `subscribed` first, then one snapshot per newly held symbol that has a
// value, all synchronously, so no tick can come in between.
function handleRequest(feed, r, held, send, join, leave) {
  switch (r.op) {
    case 'list':
      send(reply({ type: 'symbols', id: r.id, symbols: feed.names }));
      break;
    case 'ping':
      send(reply({ type: 'pong', id: r.id, ts: 0 }).replace('"ts":0', `"ts":${nowNs()}`));
      break;
    case 'subscribe': {
      const acked = {};
      const unknown = [];
      const fresh = [];
      for (const s of r.symbols) {
        const id = feed.ids.get(s);
        if (id === undefined) {
          unknown.push(s);
          continue;
        }
        acked[s] = id;
        if (!held.has(id)) {
          held.add(id);
          join(s, id);
          fresh.push(id);
        }
      }
      send(reply({ type: 'subscribed', id: r.id, symbols: acked }));
      for (const id of fresh) {
        if (feed.hasValue(id)) send(feed.encode(id, true));
      }
      if (unknown.length) {
        send(reply({ type: 'error', id: r.id, code: 'unknown_symbol', message: `${unknown.length} unknown symbol(s)`, symbols: unknown }));
      }
      break;
    }
    case 'unsubscribe': {
      const known = [];
      for (const s of r.symbols) {
        const id = feed.ids.get(s);
        if (id === undefined) continue;
        known.push(s);
        held.delete(id);
        leave(s, id);
      }
      send(reply({ type: 'unsubscribed', id: r.id, symbols: known }));
      break;
    }
    default:
      send(reply({ type: 'error', id: r.id, code: 'unknown_op', message: `unknown op ${r.op}` }));
  }
}

// The command line of a peer named `name`, or exit 2 with the reason.
function optionsOrExit(name, argv) {
  try {
    return parseArgs(argv);
  } catch (e) {
    console.error(`${name}: ${e.message}`);
    process.exit(2);
  }
}

module.exports = { nowNs, parseArgs, optionsOrExit, Feed, parseRequest, reply, handleRequest, fmtCents };
