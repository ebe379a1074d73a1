// e2e.test.mjs: the dashboard and tickgate.js in a real browser against a real gateway
// (node --test).
//
// Starts `tickgate serve` on a free port (the binary from $TICKGATE_BIN or target/debug: build
// it first with `cargo build`), drives headless Chromium ($CHROMIUM or /usr/bin/chromium) with
// playwright-core (harness.mjs), and checks:
// - the dashboard: batched JSON by default, rows paced to 20 updates/s and the charted symbol
//   to 60, "all", a symbol's own max rate, symbols added with the picker, the JSON and binary
//   formats, a gateway restart shown as disconnected with the page reconnecting and
//   re-subscribing by itself, preferences kept over a reload (screenshots go to
//   tests/browser/output/);
// - the dashboard shows when the page falls behind (badge, lowered rates);
// - adaptive throttling: a deliberately slow page (2 ms of work per update) catches up within
//   5 s, and without adaptive throttling it stays seconds behind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  freePort, startGateway, waitHealthy, within, stopGateway, launchBrowser, openBarePage,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TICKGATE_BIN || path.resolve(here, '../../target/debug/tickgate');
const OUTPUT = path.join(here, 'output');
const DEFAULTS = ['SPY', 'QQQ', 'AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA'];
const ADDED = ['AMD', 'NFLX']; // not in the default watchlist; active enough to tick every second

/**
 * A gateway on a free port and a browser, both closed after test `t` on every exit path, in
 * order (each step bounded; the 'exit' handler is the last resort if the runner ends the
 * process first). `env.gw` may be replaced (a restart); the latest is stopped.
 */
async function setUp(t) {
  const env = { gw: null, browser: null, port: await freePort() };
  const killGateway = () => env.gw?.proc.kill('SIGKILL');
  process.once('exit', killGateway);
  t.after(async () => {
    await within(env.browser?.close(), 10_000);
    if (env.gw) await within(stopGateway(env.gw, 'SIGKILL'), 5_000);
    process.removeListener('exit', killGateway);
  });
  env.origin = `http://127.0.0.1:${env.port}`;
  env.gw = startGateway(BIN, env.port);
  await waitHealthy(env.gw, env.origin);
  env.browser = await launchBrowser();
  return env;
}

/**
 * Page helpers of the dashboard tests: failures say what was awaited, where things stand, and
 * what the gateway printed.
 */
function dashboard(page, env) {
  const h = {};
  h.connState = () => page.$eval('#conn', (e) => ({ state: e.dataset.state, format: e.dataset.format, text: e.textContent }));
  h.waitConn = async (state, format, ms = 10_000) => {
    const sel = `#conn[data-state="${state}"]${format ? `[data-format="${format}"]` : ''}`;
    await page.waitForSelector(sel, { timeout: ms }).catch(async () => {
      assert.fail(`connection not ${state}${format ? ` (${format})` : ''} within ${ms} ms: ${JSON.stringify(await h.connState())}; gateway output:\n${env.gw.log()}`);
    });
  };
  /** page.waitForFunction with a failure message. */
  h.until = async (what, fn, arg, ms = 10_000) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
    } catch {
      assert.fail(`${what}: not within ${ms} ms; connection: ${JSON.stringify(await h.connState())}; ` +
        `message: "${await page.textContent('#message')}"; gateway output:\n${env.gw.log()}`);
    }
  };
  /** The text of a row's quote cells, or null while it has no quote. */
  h.quote = (symbol) => page.evaluate((sym) => {
    const tr = document.querySelector(`#rows tr[data-symbol="${sym}"]`);
    if (!tr) return null;
    const text = ['c-bid', 'c-ask', 'c-last', 'c-vol'].map((c) => tr.querySelector(`.${c}`).textContent).join(' ');
    return text.includes('–') ? null : text;
  }, symbol);
  /** Waits until every symbol's quote differs from its earlier text, within `ms`. */
  h.quotesChange = async (symbols, what, ms = 10_000) => {
    const before = Object.fromEntries(await Promise.all(symbols.map(async (s) => [s, await h.quote(s)])));
    try {
      await page.waitForFunction(({ syms, before }) => syms.every((sym) => {
        const tr = document.querySelector(`#rows tr[data-symbol="${sym}"]`);
        if (!tr) return false;
        const text = ['c-bid', 'c-ask', 'c-last', 'c-vol'].map((c) => tr.querySelector(`.${c}`).textContent).join(' ');
        return !text.includes('–') && text !== before[sym];
      }), { syms: symbols, before }, { timeout: ms, polling: 100 });
    } catch {
      const now = await Promise.all(symbols.map(h.quote));
      assert.fail(`${what}: quotes of ${symbols} did not change within ${ms} ms (before ${JSON.stringify(before)}, now ${JSON.stringify(now)}); ` +
        `connection: ${await page.textContent('#conn')}; gateway output:\n${env.gw.log()}`);
    }
  };
  /** Waits until `symbol`'s updates/s cell shows a rate in [min, max]; returns it. */
  h.rateWithin = async (symbol, min, max, what, ms = 6_000) => {
    const cell = `#rows tr[data-symbol="${symbol}"] .c-rate`;
    try {
      await page.waitForFunction(({ cell, min, max }) => {
        const r = Number(document.querySelector(cell)?.textContent);
        return r > 0 && r >= min && r <= max;
      }, { cell, min, max }, { timeout: ms, polling: 100 });
    } catch {
      assert.fail(`${what}: ${symbol} not within ${min}..${max} updates/s within ${ms} ms: ${await page.textContent(cell)}`);
    }
    return Number(await page.textContent(cell));
  };
  h.cap = (symbol) => page.textContent(`#rows tr[data-symbol="${symbol}"] .c-cap`);
  return h;
}

/** Collects what the page reports as problems: script errors, CSP violations, failed requests. */
function watchProblems(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Refused WebSocket connections while the gateway is down are expected.
    if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().includes('/ws')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  return problems;
}

test('dashboard: batched JSON, pacing, picker, formats, gateway restart', { timeout: 90_000 }, async (t) => {
  const started = Date.now();
  const step = (what) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
  mkdirSync(OUTPUT, { recursive: true });
  const env = await setUp(t);
  step(`gateway healthy on port ${env.port}`);
  const context = await env.browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = watchProblems(page);
  const sockets = []; // every WebSocket the page opens, with counts of frames by kind
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), arrays: 0, objects: 0, binary: 0 };
    sockets.push(s);
    ws.on('framereceived', (f) => {
      if (typeof f.payload !== 'string') s.binary++;
      else if (f.payload.startsWith('[')) s.arrays++;
      else s.objects++;
    });
  });
  const socketsOf = (format) => sockets.filter((s) => new URL(s.url).searchParams.get('format') === format);
  const { waitConn, until, quotesChange, rateWithin, cap } = dashboard(page, env);

  // 1. First visit: the default watchlist, kept to the gateway's universe, streams at once, in
  //    batched JSON; rows are paced to 20 updates/s, the selected (charted) one to 60.
  const loadStart = Date.now();
  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  await until('the default watchlist quoted',
    (n) => [...document.querySelectorAll('#rows td.c-bid')].filter((td) => td.textContent !== '–').length >= n,
    DEFAULTS.length, 5_000);
  step(`default watchlist quoted ${Date.now() - loadStart} ms after navigation`);
  assert.deepEqual(await page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.symbol)), DEFAULTS);
  assert.equal(await page.getAttribute('#rows tr[data-symbol="SPY"]', 'aria-selected'), 'true', 'the first row is selected');
  assert.ok(await page.isChecked('input[name=format][value=json-batch]'), 'batched JSON is the default');
  assert.equal(await page.inputValue('#row-rate'), '20', 'the display rate defaults to 20/s');
  assert.equal(await cap('QQQ'), '20/s');
  assert.equal(await cap('SPY'), '60/s', 'the charted symbol asks for more');
  // SPY and QQQ tick hundreds of times a second here: paced, not starved.
  await rateWithin('QQQ', 10, 22, 'a row at the default display rate');
  await rateWithin('SPY', 30, 62, 'the charted row at 60/s');
  const [batched] = socketsOf('json-batch');
  assert.ok(batched?.arrays > 0, `updates arrive as JSON arrays: ${JSON.stringify(sockets)}`);
  step('batched JSON, paced');

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
  await quotesChange(ADDED, 'after adding with the picker');
  await quotesChange(ADDED, 'still streaming');
  assert.equal(await page.textContent('#chart-symbol'), ADDED.at(-1), 'an added symbol is selected and charted');
  await until('SPY back to the display rate once not selected',
    () => document.querySelector('#rows tr[data-symbol="SPY"] .c-cap').textContent === '20/s', null, 2_000);
  step('added symbols stream');

  // Keyboard: ArrowUp selects the row above; the chart follows.
  await page.focus(`#rows tr[data-symbol="${ADDED.at(-1)}"]`);
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.textContent('#chart-symbol'), ADDED[0]);
  assert.equal(await page.evaluate(() => document.activeElement.dataset.symbol), ADDED[0]);

  // 3. JSON, then binary: the page reconnects with the format and keeps streaming.
  await page.check('input[name=format][value=json]');
  await waitConn('open', 'json');
  await quotesChange(ADDED, 'JSON format');
  assert.ok(socketsOf('json')[0]?.objects > 0, `JSON objects received: ${JSON.stringify(sockets)}`);
  await page.check('input[name=format][value=binary]');
  await waitConn('open', 'binary');
  await quotesChange(ADDED, 'binary format');
  const binary = socketsOf('binary');
  assert.equal(binary.length, 1, `one binary connection: ${JSON.stringify(sockets)}`);
  assert.ok(binary[0].binary > 0, `binary frames received: ${JSON.stringify(binary[0])}`);
  step('JSON and binary formats stream');

  // A symbol's own max rate: SPY charted (60/s), then capped at 2/s.
  await page.click('#rows tr[data-symbol="SPY"] th');
  assert.equal(await page.textContent('#chart-symbol'), 'SPY');
  await rateWithin('SPY', 30, 62, 'SPY charted again');
  await page.selectOption('#max-rate', '2');
  assert.equal(await cap('SPY'), '2/s');
  await rateWithin('SPY', 0, 3.5, 'after setting max rate 2/s');
  // "all": every update of the rows (QQQ ticks hundreds of times a second).
  await page.selectOption('#row-rate', '0');
  assert.equal(await cap('QQQ'), 'all');
  await rateWithin('QQQ', 100, Infinity, 'display rate all');
  step('max rates applied');

  // 4. The gateway goes away (SIGTERM: clients get 1001): the page shows it and retries.
  const exit = await stopGateway(env.gw, 'SIGTERM');
  assert.equal(exit.code, 0, `graceful shutdown exits 0: ${JSON.stringify(exit)}\n${env.gw.log()}`);
  await page.waitForFunction(() => {
    const c = document.getElementById('conn');
    return c.dataset.state !== 'open' && /reconnecting/i.test(c.textContent);
  }, null, { timeout: 5_000 }).catch(async () => assert.fail(`no disconnected state shown: ${JSON.stringify(await page.textContent('#conn'))}`));
  assert.ok(await page.$eval('#watchlist', (t) => t.classList.contains('stale')), 'quotes are marked stale');
  step(`gateway stopped; page shows "${await page.textContent('#conn')}"`);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-disconnected.png') });

  // 5. Same port, new process: the page reconnects and re-subscribes by itself (seq restarts).
  env.gw = startGateway(BIN, env.port);
  await waitHealthy(env.gw, env.origin);
  await waitConn('open', 'binary', 15_000);
  step('page reconnected');
  await quotesChange(ADDED, 'after the gateway restart');
  // Twice, a second apart: a first reading may span the outage and be low by chance.
  await rateWithin('SPY', 0, 3.5, 'after the restart, SPY re-subscribed with its max rate');
  await page.waitForTimeout(1_100);
  const spyRate = Number(await page.textContent('#rows tr[data-symbol="SPY"] .c-rate'));
  assert.ok(spyRate <= 3.5, `a second later, SPY still at its max rate (2/s): ${spyRate} updates/s`);
  assert.equal(await page.textContent('#feed'), 'Feed: live');
  assert.ok(!(await page.$eval('#watchlist', (t) => t.classList.contains('stale'))), 'not stale once reconnected');
  step('re-subscribed: quotes stream again');

  // Persistence: a reload keeps the watchlist, its order, the format and the rates.
  await page.reload();
  await waitConn('open', 'binary');
  assert.deepEqual(await page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.symbol)), [...DEFAULTS, ...ADDED]);
  assert.equal(await cap('SPY'), '2/s', 'a symbol\'s own max rate is kept');
  assert.equal(await page.inputValue('#row-rate'), '0', 'the display rate is kept');
  assert.equal(await page.textContent('#chart-symbol'), 'SPY', 'the selection is kept');
  await quotesChange(ADDED, 'after a reload');

  // Back to the defaults for the screenshots, once the latency figures and the chart have data.
  await page.selectOption('#row-rate', '20');
  await page.check('input[name=format][value=json-batch]');
  await waitConn('open', 'json-batch');
  // Paced again: ~20/s for each of 10 rows and 2/s for SPY (all: thousands).
  await until('updates/s back to the paced rates', () => {
    const rate = Number(document.getElementById('msg-rate').textContent.replace(/,/g, ''));
    return rate > 50 && rate < 400;
  }, null, 5_000);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard.png') });
  await page.setViewportSize({ width: 400, height: 900 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-narrow.png'), fullPage: true });
  assert.ok(!(await page.isVisible('#rows tr[data-symbol="SPY"] .c-vol')), 'volume hidden in a narrow window');
  step('screenshots saved');

  assert.deepEqual(problems, [], 'the page reported problems');
  assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
});

test('dashboard: a page that falls behind says so and lowers its rates', { timeout: 60_000 }, async (t) => {
  const env = await setUp(t);
  const page = await (await env.browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const problems = watchProblems(page);
  const { waitConn, until, quotesChange, cap } = dashboard(page, env);
  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  await quotesChange(DEFAULTS, 'the default watchlist');
  await until('the first judgements of the lag: all well', () => document.getElementById('lag').hidden, null, 3_000);

  // Jam the page: 400 ms of other work every 450 ms, so updates wait hundreds of ms.
  await page.evaluate(() => {
    window.jam = setInterval(() => {
      const until = performance.now() + 400;
      while (performance.now() < until);
    }, 450);
  });
  await until('the badge says the page is behind',
    () => ['behind', 'resync'].includes(document.getElementById('lag').dataset.level) && !document.getElementById('lag').hidden,
    null, 8_000);
  assert.match(await page.textContent('#lag'), /^Behind/);
  await until('rows paced below 20/s',
    () => document.querySelector('#rows tr[data-symbol="QQQ"] .c-cap').classList.contains('throttled'), null, 8_000);
  const lowered = await cap('QQQ');
  assert.ok(/\/s$/.test(lowered) && parseFloat(lowered) < 20, `QQQ's max rate lowered: ${lowered}`);

  // Unjammed, it catches up: no longer behind (still paced until it has kept up a while).
  await page.evaluate(() => clearInterval(window.jam));
  await until('the badge no longer says behind', () => {
    const lag = document.getElementById('lag');
    return lag.hidden || lag.dataset.level === 'paced';
  }, null, 6_000);
  await quotesChange(DEFAULTS, 'quotes after catching up');
  assert.deepEqual(problems, [], 'the page reported problems');
});

test('adaptive throttling: a slow page catches up within 5 s; without it, it stays behind', { timeout: 60_000 }, async (t) => {
  const env = await setUp(t);
  // The 30 busiest symbols, every update (no max_rate), 2 ms of work per update: the page can
  // handle ~500 updates/s of the thousands offered. 30 because updates paced alike arrive
  // together: 30 × 2 ms keeps such a burst well under 100 ms.
  const slow = { symbols: 30, busy: 2 };
  const RUN_MS = 8_000;
  /** Runs the bare page for RUN_MS after it subscribed; its 'lag' events, t from the subscribe. */
  async function run(params) {
    const page = await env.browser.newPage();
    await openBarePage(page, env.origin, params);
    await page.waitForTimeout(RUN_MS);
    const { lags, errors, subscribedAt, resyncs } = await page.evaluate(() => {
      const { lags, errors, subscribedAt } = window.probe;
      return { lags, errors, subscribedAt, resyncs: window.probe.counts().resyncs };
    });
    await page.close();
    assert.deepEqual(errors, [], 'no errors');
    return { lags: lags.map((l) => ({ ...l, t: l.t - subscribedAt })), resyncs };
  }
  const show = (lags) => lags.map((l) => `${(l.t / 1000).toFixed(1)}s:${Math.round(l.lagMs)}ms@${l.rate}`).join(' ');

  const on = await run(slow);
  t.diagnostic(`adaptive: ${show(on.lags)}; resyncs ${on.resyncs}`);
  const caughtUp = on.lags.findIndex((l) => l.lagMs < 100);
  assert.ok(caughtUp >= 0 && on.lags[caughtUp].t <= 5_000, `under 100 ms within 5 s: ${show(on.lags)}`);
  assert.ok(on.lags[caughtUp].rate < 60, `by lowering the rate: ${show(on.lags)}`);
  const after = on.lags.slice(caughtUp).filter((l) => Number.isFinite(l.lagMs));
  assert.ok(after.every((l) => l.lagMs < 150), `and it stays caught up: ${show(on.lags)}`);
  assert.ok(after.at(-1).lagMs < 100, `still under 100 ms at the end: ${show(on.lags)}`);

  const off = await run({ ...slow, adaptive: 0 });
  t.diagnostic(`adaptive off: ${show(off.lags)}`);
  const late = off.lags.filter((l) => l.t >= 3_000);
  assert.ok(late.length >= 3, `judged every second: ${show(off.lags)}`);
  assert.ok(late.every((l) => l.lagMs > 500 && l.rate === Infinity), `seconds behind, never throttled: ${show(off.lags)}`);
  assert.equal(off.resyncs, 0);
});
