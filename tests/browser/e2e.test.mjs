// e2e.test.mjs: the dashboard in a real browser against a real gateway (node --test).
//
// Starts `tickgate serve` on a free port (the binary from $TICKGATE_BIN or target/debug: build
// it first with `cargo build`), drives headless Chromium ($CHROMIUM or /usr/bin/chromium) with
// playwright-core, and checks: the default watchlist streams, symbols added with the picker
// stream, the binary format streams, a gateway restart shows as disconnected and the page
// reconnects and re-subscribes by itself. Screenshots go to tests/browser/output/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TICKGATE_BIN || path.resolve(here, '../../target/debug/tickgate');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUTPUT = path.join(here, 'output');
const DEFAULTS = ['SPY', 'QQQ', 'AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA'];
const ADDED = ['AMD', 'NFLX']; // not in the default watchlist; active enough to tick every second

/** A port nobody listens on right now (bind port 0, read it, close). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts the gateway on `port`; `log()` gives its recent output for failure messages. */
function startGateway(port) {
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', 'off', '--pin-cores', 'off', '--shards', '1'];
  // No TICKGATE_* variable reaches it: the gateway reads them as config keys (and refuses
  // unknown ones such as TICKGATE_BIN), and this test wants the default configuration.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TICKGATE_')));
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-4000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  proc.once('error', (e) => keep(`spawn error: ${e.message}`));
  return { proc, exited, log: () => output };
}

/** Resolves when /healthz answers 200; fails after `ms` with the gateway's output. */
async function waitHealthy(gw, port, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (gw.proc.exitCode !== null) break;
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gateway on port ${port} not healthy within ${ms} ms (exit code ${gw.proc.exitCode}); its output:\n${gw.log()}`);
}

/** Resolves with `promise`'s value, or with undefined after `ms`. */
const within = (promise, ms) => Promise.race([promise, new Promise((r) => setTimeout(r, ms).unref())]);

/** Stops the gateway with `signal`; SIGKILL if it has not exited within `ms`. */
async function stopGateway(gw, signal = 'SIGTERM', ms = 8_000) {
  if (gw.proc.exitCode !== null || gw.proc.signalCode !== null) return gw.exited;
  gw.proc.kill(signal);
  const timer = setTimeout(() => gw.proc.kill('SIGKILL'), ms);
  const result = await gw.exited;
  clearTimeout(timer);
  return result;
}

test('dashboard: watchlist, picker, binary format, gateway restart', { timeout: 90_000 }, async (t) => {
  const started = Date.now();
  const step = (what) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
  mkdirSync(OUTPUT, { recursive: true });

  // Cleanup on every exit path, in order: the browser, then the gateway. Each step is bounded;
  // the 'exit' handler is the last resort if the runner ends the process first.
  let gw = null;
  let browser = null;
  const killGateway = () => gw?.proc.kill('SIGKILL');
  process.once('exit', killGateway);
  t.after(async () => {
    await within(browser?.close(), 10_000);
    if (gw) await within(stopGateway(gw, 'SIGKILL'), 5_000);
    process.removeListener('exit', killGateway);
  });

  const port = await freePort();
  gw = startGateway(port);
  await waitHealthy(gw, port);
  step(`gateway healthy on port ${port}`);

  // A fresh browser and context: no profile, no localStorage from earlier runs.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 20_000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);

  // Problems the page reports: script errors, CSP violations (console errors), failed requests.
  // Refused WebSocket connections while the gateway is down are expected.
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().includes('/ws')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  const sockets = []; // every WebSocket the page opens, with counts of frames by kind
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), text: 0, binary: 0 };
    sockets.push(s);
    ws.on('framereceived', (f) => { if (typeof f.payload === 'string') s.text++; else s.binary++; });
  });

  /** The text of a row's quote cells, or null while it has no quote. */
  const quote = (symbol) => page.evaluate((sym) => {
    const tr = document.querySelector(`#rows tr[data-symbol="${sym}"]`);
    if (!tr) return null;
    const text = ['c-bid', 'c-ask', 'c-last', 'c-vol'].map((c) => tr.querySelector(`.${c}`).textContent).join(' ');
    return text.includes('–') ? null : text;
  }, symbol);
  /** Waits until every symbol's quote differs from `before` (its earlier text), within `ms`. */
  async function quotesChange(symbols, what, ms = 10_000) {
    const before = Object.fromEntries(await Promise.all(symbols.map(async (s) => [s, await quote(s)])));
    try {
      await page.waitForFunction(({ syms, before }) => syms.every((sym) => {
        const tr = document.querySelector(`#rows tr[data-symbol="${sym}"]`);
        if (!tr) return false;
        const text = ['c-bid', 'c-ask', 'c-last', 'c-vol'].map((c) => tr.querySelector(`.${c}`).textContent).join(' ');
        return !text.includes('–') && text !== before[sym];
      }), { syms: symbols, before }, { timeout: ms, polling: 100 });
    } catch {
      const now = await Promise.all(symbols.map(quote));
      assert.fail(`${what}: quotes of ${symbols} did not change within ${ms} ms (before ${JSON.stringify(before)}, now ${JSON.stringify(now)}); ` +
        `connection: ${await page.textContent('#conn')}; gateway output:\n${gw.log()}`);
    }
  }
  /** Waits until `symbol`'s updates/s cell shows a rate in (0, max]; returns it. */
  async function rateAtMost(symbol, max, what, ms = 6_000) {
    const cell = `#rows tr[data-symbol="${symbol}"] .c-rate`;
    try {
      await page.waitForFunction(({ cell, max }) => {
        const r = Number(document.querySelector(cell)?.textContent);
        return r > 0 && r <= max;
      }, { cell, max }, { timeout: ms, polling: 100 });
    } catch {
      assert.fail(`${what}: ${symbol} not at most ${max} updates/s within ${ms} ms: ${await page.textContent(cell)}`);
    }
    return Number(await page.textContent(cell));
  }
  /** page.waitForFunction with a failure message that says what was awaited and where things stand. */
  async function until(what, fn, arg, ms = 10_000) {
    try {
      await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
    } catch {
      assert.fail(`${what}: not within ${ms} ms; connection: ${JSON.stringify(await connState())}; ` +
        `message: "${await page.textContent('#message')}"; gateway output:\n${gw.log()}`);
    }
  }
  const connState = () => page.$eval('#conn', (e) => ({ state: e.dataset.state, format: e.dataset.format, text: e.textContent }));
  async function waitConn(state, format, ms = 10_000) {
    const sel = `#conn[data-state="${state}"]${format ? `[data-format="${format}"]` : ''}`;
    await page.waitForSelector(sel, { timeout: ms }).catch(async () => {
      assert.fail(`connection not ${state}${format ? ` (${format})` : ''} within ${ms} ms: ${JSON.stringify(await connState())}; gateway output:\n${gw.log()}`);
    });
  }

  // 1. First visit: the default watchlist, kept to the gateway's universe, streams at once.
  const loadStart = Date.now();
  await page.goto(`http://127.0.0.1:${port}/`);
  await waitConn('open', 'json');
  await until('the default watchlist quoted',
    (n) => [...document.querySelectorAll('#rows td.c-bid')].filter((td) => td.textContent !== '–').length >= n,
    DEFAULTS.length, 5_000);
  const firstQuotesMs = Date.now() - loadStart;
  step(`default watchlist quoted ${firstQuotesMs} ms after navigation`);
  assert.deepEqual(await page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.symbol)), DEFAULTS);
  assert.equal(await page.getAttribute('#rows tr[data-symbol="SPY"]', 'aria-selected'), 'true', 'the first row is selected');

  // 2. Add two symbols with the picker (typed in lower case, Enter); an unknown one is refused.
  assert.ok(await page.$$eval('#symbol-list option', (o) => o.length) > 800, 'the picker lists the universe');
  for (const s of ADDED) {
    await page.fill('#symbol-input', s.toLowerCase());
    await page.press('#symbol-input', 'Enter');
    await until(`a row for ${s} added with the picker`, (sym) => document.querySelector(`#rows tr[data-symbol="${sym}"]`), s);
  }
  await page.fill('#symbol-input', 'ZZZZZ');
  await page.press('#symbol-input', 'Enter');
  await until('an unknown symbol refused', () => /Unknown symbol ZZZZZ/.test(document.getElementById('message').textContent));
  assert.equal(await page.$('#rows tr[data-symbol="ZZZZZ"]'), null);
  await quotesChange(ADDED, 'JSON, after adding with the picker');
  await quotesChange(ADDED, 'JSON, still streaming');
  assert.equal(await page.textContent('#chart-symbol'), ADDED.at(-1), 'an added symbol is selected and charted');
  step('added symbols stream (JSON)');

  // Keyboard: ArrowUp selects the row above; the chart follows.
  await page.focus(`#rows tr[data-symbol="${ADDED.at(-1)}"]`);
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.textContent('#chart-symbol'), ADDED[0]);
  assert.equal(await page.evaluate(() => document.activeElement.dataset.symbol), ADDED[0]);

  // 3. Binary: the page reconnects with ?format=binary and keeps streaming.
  await page.check('input[name=format][value=binary]');
  await waitConn('open', 'binary');
  await quotesChange(ADDED, 'binary format');
  const binary = sockets.filter((s) => new URL(s.url).searchParams.get('format') === 'binary');
  assert.equal(binary.length, 1, `one binary connection: ${JSON.stringify(sockets)}`);
  assert.ok(binary[0].binary > 0, `binary frames received: ${JSON.stringify(binary[0])}`);
  step('binary format streams');

  // A per-subscription max rate: SPY (some 1,800 updates/s here) capped at 2/s.
  await page.click('#rows tr[data-symbol="SPY"] th');
  assert.equal(await page.textContent('#chart-symbol'), 'SPY');
  assert.ok(Number(await page.textContent('#rows tr[data-symbol="SPY"] .c-rate')) > 50, 'SPY is busy before the cap');
  await page.selectOption('#max-rate', '2');
  assert.equal(await page.textContent('#rows tr[data-symbol="SPY"] .c-cap'), '2/s');
  await rateAtMost('SPY', 3.5, 'after setting max rate 2/s');
  step('max rate applied');

  // 4. The gateway goes away (SIGTERM: clients get 1001): the page shows it and retries.
  const exit = await stopGateway(gw, 'SIGTERM');
  assert.equal(exit.code, 0, `graceful shutdown exits 0: ${JSON.stringify(exit)}\n${gw.log()}`);
  await page.waitForFunction(() => {
    const c = document.getElementById('conn');
    return c.dataset.state !== 'open' && /reconnecting/i.test(c.textContent);
  }, null, { timeout: 5_000 }).catch(async () => assert.fail(`no disconnected state shown: ${JSON.stringify(await connState())}`));
  assert.ok(await page.$eval('#watchlist', (t) => t.classList.contains('stale')), 'quotes are marked stale');
  step(`gateway stopped; page shows "${(await connState()).text}"`);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-disconnected.png') });

  // 5. Same port, new process: the page reconnects and re-subscribes by itself (seq restarts).
  gw = startGateway(port);
  await waitHealthy(gw, port);
  await waitConn('open', 'binary', 15_000);
  step('page reconnected');
  await quotesChange(ADDED, 'after the gateway restart');
  // Twice, a second apart: a first reading may span the outage and be low by chance.
  await rateAtMost('SPY', 3.5, 'after the restart, SPY re-subscribed with its max rate');
  await page.waitForTimeout(1_100);
  const spyRate = Number(await page.textContent('#rows tr[data-symbol="SPY"] .c-rate'));
  assert.ok(spyRate <= 3.5, `a second later, SPY still at its max rate (2/s): ${spyRate} updates/s`);
  assert.equal(await page.textContent('#feed'), 'Feed: live');
  assert.ok(!(await page.$eval('#watchlist', (t) => t.classList.contains('stale'))), 'not stale once reconnected');
  step('re-subscribed: quotes stream again');

  // Persistence: a reload keeps the watchlist, its order, and the format.
  await page.reload();
  await waitConn('open', 'binary');
  assert.deepEqual(await page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.symbol)), [...DEFAULTS, ...ADDED]);
  assert.equal(await page.textContent('#rows tr[data-symbol="SPY"] .c-cap'), '2/s', 'the max rate is kept');
  assert.equal(await page.textContent('#chart-symbol'), 'SPY', 'the selection is kept');
  await quotesChange(ADDED, 'after a reload');

  // Wait a moment so the latency figures and the chart have data, then take the screenshots.
  await until('latency figures shown', () => /ms$/.test(document.getElementById('lat-p99').textContent), null, 5_000);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard.png') });
  await page.setViewportSize({ width: 400, height: 900 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-narrow.png'), fullPage: true });
  assert.ok(!(await page.isVisible('#rows tr[data-symbol="SPY"] .c-vol')), 'volume hidden in a narrow window');
  step('screenshots saved');

  assert.deepEqual(problems, [], 'the page reported problems');
  assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
});
