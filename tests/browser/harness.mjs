// harness.mjs: what e2e.test.mjs, sse.test.mjs and bench.mjs share: a gateway process on a
// free port, headless Chromium (playwright-core driving the system's Chromium), the bare page
// (bare-page.js) on the gateway's origin, a WebSocket that a page cannot get through, and the
// accounting of a symbol's trades and gaps.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** The gateway binary: $TICKGATE_BIN or target/debug (build it first: `cargo build -p tickgate`). */
export const BIN = process.env.TICKGATE_BIN || path.resolve(here, '../../target/debug/tickgate');
const BARE_PAGE = readFileSync(path.join(here, 'bare-page.js'), 'utf8');

/** A port nobody listens on right now (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `bin serve` on `port` with one unpinned shard and no admin listener (plus `args`);
 * `log()` gives its recent output for failure messages.
 */
export function startGateway(bin, port, args = []) {
  const argv = ['serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', 'off', '--pin-cores', 'off', '--shards', '1', ...args];
  // No TICKGATE_* variable reaches it: the gateway reads them as config keys (and refuses
  // unknown ones such as TICKGATE_BIN), and the tests want the default configuration.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TICKGATE_')));
  const proc = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-4000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  proc.once('error', (e) => keep(`spawn error: ${e.message}`));
  return { proc, exited, log: () => output };
}

/** Resolves when http://HOST:PORT/healthz answers 200; fails after `ms` with the gateway's output. */
export async function waitHealthy(gw, origin, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (gw.proc.exitCode !== null) break;
    try {
      const r = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gateway at ${origin} not healthy within ${ms} ms (exit code ${gw.proc.exitCode}); its output:\n${gw.log()}`);
}

/** Resolves with `promise`'s value, or with undefined after `ms`. */
export const within = (promise, ms) => Promise.race([promise, new Promise((r) => setTimeout(r, ms).unref())]);

/** Stops the gateway with `signal`; SIGKILL if it has not exited within `ms`. */
export async function stopGateway(gw, signal = 'SIGTERM', ms = 8_000) {
  if (gw.proc.exitCode !== null || gw.proc.signalCode !== null) return gw.exited;
  gw.proc.kill(signal);
  const timer = setTimeout(() => gw.proc.kill('SIGKILL'), ms);
  const result = await gw.exited;
  clearTimeout(timer);
  return result;
}

/** Headless Chromium with no profile (no localStorage from earlier runs). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 20_000,
  });
}

/**
 * Opens the bare page (bare-page.js) in `page` on the gateway at `origin` with the settings
 * `params` (see bare-page.js), and waits until it has subscribed. The document is the
 * gateway's own /healthz, so the page's origin is the gateway's and Chromium lets it open
 * WebSockets to loopback (its Local Network Access checks refuse that to a page Playwright
 * fulfils itself); the module is then added to it.
 */
export async function openBarePage(page, origin, params) {
  const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  await page.goto(`${origin}/healthz?${query}`);
  await page.addScriptTag({ type: 'module', content: BARE_PAGE });
  await page.waitForFunction(() => window.probe && !Number.isNaN(window.probe.subscribedAt), null, { timeout: 10_000 });
}

/**
 * A gateway on a free port (started with `args`) and a browser, both closed after test `t` on
 * every exit path, in order (each step bounded; the 'exit' handler is the last resort if the
 * runner ends the process first). `env.gw` may be replaced (a restart); the latest is stopped.
 */
export async function setUp(t, args = []) {
  const env = { gw: null, browser: null, port: await freePort() };
  const killGateway = () => env.gw?.proc.kill('SIGKILL');
  process.once('exit', killGateway);
  t.after(async () => {
    await within(env.browser?.close(), 10_000);
    if (env.gw) await within(stopGateway(env.gw, 'SIGKILL'), 5_000);
    process.removeListener('exit', killGateway);
  });
  env.origin = `http://127.0.0.1:${env.port}`;
  env.gw = startGateway(BIN, env.port, args);
  await waitHealthy(env.gw, env.origin);
  env.browser = await launchBrowser();
  return env;
}

/**
 * Makes WebSockets fail in `page` (from its next navigation on) the way a proxy that breaks
 * the upgrade does: an error and a close 1006, never open, while `window.blockWebSocket` is
 * true (it starts true); set it to false and they connect again. Requests over HTTP (the
 * page, /sse, /healthz) are untouched.
 */
export function blockWebSockets(page) {
  return page.addInitScript(() => {
    const Real = window.WebSocket;
    window.blockWebSocket = true;
    window.blockedWebSockets = 0;
    window.WebSocket = class extends EventTarget {
      static CONNECTING = 0;
      static OPEN = 1;
      static CLOSING = 2;
      static CLOSED = 3;
      constructor(url, protocols) {
        if (!window.blockWebSocket) return new Real(url, protocols);
        super();
        window.blockedWebSockets++;
        this.url = String(url);
        this.readyState = 0;
        this.binaryType = 'blob';
        setTimeout(() => {
          this.readyState = 3;
          this.onerror?.(new Event('error'));
          this.onclose?.(Object.assign(new Event('close'), { code: 1006, reason: '', wasClean: false }));
        }, 20);
      }
      send() { throw new DOMException('not open', 'InvalidStateError'); }
      close() {}
    };
  });
}

/**
 * Checks one symbol's trades and gaps as bare-page.js recorded them against its seqs: with
 * every event a trade (--trade-percent 100), the first trade is the one after the snapshot's
 * seq and each trade has the previous one's seq + 1, plus what a gap before it said was
 * missed: nothing may be missing without a gap saying so. Returns {trades, missed, gaps,
 * trailingGap, bySeq} (bySeq: seq -> the trade's fields, to compare formats and transports).
 */
export function accountTrades(what, snapshotSeq, events) {
  assert.ok(snapshotSeq !== undefined, `${what}: a snapshot before the trades`);
  let expected = BigInt(snapshotSeq);
  let pendingGap = 0n;
  const tally = { trades: 0, missed: 0, gaps: 0, bySeq: new Map() };
  for (const [i, e] of events.entries()) {
    if (e.startsWith('g ')) {
      const missed = BigInt(e.slice(2));
      assert.ok(missed > 0n, `${what}: a gap of ${missed}`);
      pendingGap += missed;
      tally.missed += Number(missed);
      tally.gaps++;
      continue;
    }
    const fields = e.slice(2);
    const seq = BigInt(fields.split('|')[0]);
    if (seq !== expected + pendingGap + 1n) {
      const where = i === tally.gaps ? `the first trade after the snapshot (seq ${snapshotSeq})` : `event ${i}`;
      assert.fail(`${what}: ${where} is trade seq ${seq}, but after seq ${expected} and ${pendingGap} missed the next is ` +
        `${expected + pendingGap + 1n}; around it: ${JSON.stringify(events.slice(Math.max(0, i - 3), i + 2))}`);
    }
    expected = seq;
    pendingGap = 0n;
    tally.trades++;
    tally.bySeq.set(seq, fields);
  }
  // A gap may be the last event: the pages are read while they stream, and each WebSocket
  // message or SSE event is its own task, so the read can land between a gap and the trade
  // the gateway sent right behind it (CI saw this once). Its count is in `missed` already.
  tally.trailingGap = pendingGap > 0n;
  return tally;
}
