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
//   5 s, and without adaptive throttling it stays seconds behind;
// - trades: tickgate.js delivers every trade and gap in all three formats, exactly and alike,
//   through stalls of the page and a byte budget (setMaxBandwidth), each trade accounted for
//   (received + missed = what the symbol traded), and never resyncs them away;
// - the dashboard's time-and-sales tape: the selected symbol's trades (only its), newest
//   first, at most 50, rendered per frame, gap and reconnect lines, trades following the
//   selection;
// - the dashboard's depth ladder: the selected symbol's order book (only its, depth 10; the
//   one selected before turned off with depth 0), at least 5 levels a side, bids strictly
//   descending and asks strictly ascending, best bid < best ask, the exact spread, size bars,
//   live, rendered per frame into rows that are reused, in JSON and binary;
// - the dashboard where WebSockets do not get through: over Server-Sent Events (tickgate.js
//   falls back by itself), quotes, pacing and the tape all the same.
// (sse.test.mjs tests GET /sse and tickgate.js's SSE transport in detail.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BIN, setUp, startGateway, waitHealthy, stopGateway, openBarePage, accountTrades, blockWebSockets,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const OUTPUT = path.join(here, 'output');
const DEFAULTS = ['SPY', 'QQQ', 'AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA'];
const ADDED = ['AMD', 'NFLX']; // not in the default watchlist; active enough to tick every second

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

/**
 * Logs every line added to the dashboard's tape from now on, in the page (window.tapeLog: 't
 * <seq>' for a trade, '<class> <text>' for a gap or note line): at hundreds of trades a second
 * a single line leaves the tape's 50 within a fraction of a second, too soon to poll for.
 */
function logTape(page) {
  return page.evaluate(() => {
    window.tapeLog = [];
    new MutationObserver((records) => {
      for (const r of records) {
        for (const tr of r.addedNodes) window.tapeLog.push(tr.dataset.seq ? `t ${tr.dataset.seq}` : `${tr.className} ${tr.textContent}`);
      }
    }).observe(document.getElementById('tape-rows'), { childList: true });
  });
}

/**
 * Follows the page's WebSockets: `subscribes` collects every subscribe request sent, with
 * `socket`, which of the page's WebSockets sent it (1, 2, ...); `sockets` counts them; each
 * frame received goes to `onReceived(socket, payload)`.
 */
function watchSockets(page, onReceived) {
  const w = { subscribes: [], sockets: 0 };
  page.on('websocket', (ws) => {
    const socket = ++w.sockets;
    ws.on('framesent', (f) => {
      const m = JSON.parse(f.payload);
      if (m.op === 'subscribe') w.subscribes.push({ ...m, socket });
    });
    ws.on('framereceived', (f) => onReceived(socket, f.payload));
  });
  return w;
}

/** Collects what the page reports as problems: script errors, CSP violations, failed requests. */
function watchProblems(page) {
  const problems = [];
  // What tickgate.js asks for by itself may fail as expected: its WebSocket while the gateway
  // is down, GET /healthz (is the gateway up? tried after failed WebSockets), and SSE streams
  // (refused, or closed by the client when its subscriptions change: aborted).
  const own = (url) => /^\/(ws|healthz|sse)$/.test(new URL(url).pathname);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text()) && !own(m.location().url || 'about:blank')) {
      problems.push(`console: ${m.text()}`);
    }
  });
  page.on('requestfailed', (r) => {
    if (!own(r.url())) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
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

test('tickgate.js: trades and gaps in every format, each trade accounted for', { timeout: 60_000 }, async (t) => {
  // Every event a trade (a symbol's seq counts its trades), and a trade backlog of only 5 per
  // symbol: a page that stalls loses trades, and is told exactly how many.
  const env = await setUp(t, ['--trade-percent', '100', '--max-trade-backlog', '5', '--rate', '5000']);
  const formats = ['json-batch', 'json', 'binary'];
  // The same three busy symbols, with trades, in a page per format, all at once.
  const pages = await Promise.all(formats.map(async (format) => {
    const page = await env.browser.newPage();
    await openBarePage(page, env.origin, { format, symbols: 3, trades: 1 });
    return page;
  }));
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  const tradeCounts = () => Promise.all(pages.map((p) => p.evaluate(() => window.probe.counts())));
  await pause(1_500);
  const streaming = await tradeCounts();
  t.diagnostic(`streaming: ${formats.map((f, i) => `${f} ${streaming[i].trades} trades, ${streaming[i].tradesMissed} missed`).join('; ')}`);

  // 1. Each page stalls for 1.5 s (its main thread busy): trades pile up in the gateway
  //    beyond the backlog, which drops the oldest and says how many.
  await Promise.all(pages.map((p) => p.evaluate(() => {
    const until = performance.now() + 1_500;
    while (performance.now() < until);
  })));
  await pause(1_500);
  const stalled = await tradeCounts();
  t.diagnostic(`after a stall: ${formats.map((f, i) => `${f} ${stalled[i].trades} trades, ${stalled[i].tradesMissed} missed`).join('; ')}`);
  for (const [i, f] of formats.entries()) {
    assert.ok(stalled[i].tradesMissed > streaming[i].tradesMissed, `${f}: the stall cost trades, reported as gaps`);
  }

  // 2. A byte budget far below what the trades need: gaps again; then back to the default.
  const budgets = await Promise.all(pages.map((p) => p.evaluate(() => window.client.setMaxBandwidth(4_000))));
  assert.deepEqual(budgets, [4_000, 4_000, 4_000], 'the settings reply: the cap in force');
  await pause(1_500);
  const capped = await tradeCounts();
  const defaults = await Promise.all(pages.map((p) => p.evaluate(() => window.client.setMaxBandwidth(null))));
  assert.deepEqual(defaults, [0, 0, 0], 'the server default: unlimited');
  await pause(1_000);
  for (const [i, f] of formats.entries()) {
    assert.ok(capped[i].tradesMissed > stalled[i].tradesMissed, `${f}: the budget cost trades too`);
  }

  // 3. Every trade accounted for, with the right fields, alike in every format.
  const probes = await Promise.all(pages.map((p) => p.evaluate(() => {
    const { symbols, snapshotSeq, events, fieldErrors, errors } = window.probe;
    return { symbols, snapshotSeq, events, fieldErrors, errors, counts: window.probe.counts() };
  })));
  const bySymbol = {}; // symbol -> per format: seq -> fields
  for (const [i, f] of formats.entries()) {
    const p = probes[i];
    assert.deepEqual(p.errors, [], `${f}: no errors`);
    assert.deepEqual(p.fieldErrors, [], `${f}: every trade has the documented fields`);
    assert.equal(p.counts.resyncs, 0, `${f}: adaptive throttling never resyncs trades away`);
    assert.ok(p.counts.updates > 0, `${f}: quotes still flow`);
    let trades = 0;
    let missed = 0;
    for (const s of p.symbols) {
      // Strict: from the snapshot on, every seq is a trade received or counted in a gap.
      const tally = accountTrades(`${f} ${s}`, p.snapshotSeq[s], p.events[s] ?? []);
      assert.ok(tally.trades > 50, `${f} ${s}: trades received (${tally.trades})`);
      trades += tally.trades;
      missed += tally.missed;
      (bySymbol[s] ??= []).push(tally.bySeq);
    }
    assert.equal(trades, p.counts.trades, `${f}: stats.trades`);
    assert.equal(missed, p.counts.tradesMissed, `${f}: stats.tradesMissed`);
    const sides = new Set(Object.values(p.events).flat().filter((e) => e.startsWith('t ')).map((e) => e.split('|')[3]));
    assert.deepEqual([...sides].sort(), ['buy', 'sell'], `${f}: the simulator's trades have sides`);
    t.diagnostic(`${f}: ${trades} trades + ${missed} missed in ${Object.values(p.events).flat().filter((e) => e.startsWith('g ')).length} gaps`);
  }
  // The same trade (symbol and seq) has the same price, size, side, id and times in every format.
  let compared = 0;
  for (const [s, [first, ...others]] of Object.entries(bySymbol)) {
    for (const [seq, fields] of first) {
      for (const [j, other] of others.entries()) {
        if (!other.has(seq)) continue;
        assert.equal(other.get(seq), fields, `${s} seq ${seq}: ${formats[0]} and ${formats[j + 1]} agree`);
        compared++;
      }
    }
  }
  assert.ok(compared > 100, `trades seen in more than one format: ${compared}`);
  const sample = [...Object.values(bySymbol)[0][0].values()][0].split('|');
  assert.match(sample[1], /^\d+(\.\d{1,8})?$/, 'an exact decimal price');
  assert.match(sample[4], /^[1-9]\d*$/, 'a trade id');
  assert.ok(BigInt(sample[6]) >= BigInt(sample[5]) && BigInt(sample[5]) > 1_700_000_000_000_000_000n, 'ns timestamps');
  await Promise.all(pages.map((p) => p.close()));
});

test('dashboard: a live time-and-sales tape of the selected symbol', { timeout: 60_000 }, async (t) => {
  // Every event a trade, hundreds a second for the busiest symbols.
  const env = await setUp(t, ['--trade-percent', '100', '--max-trade-backlog', '5', '--rate', '5000']);
  const page = await (await env.browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' })).newPage();
  const problems = watchProblems(page);
  const { waitConn, until } = dashboard(page, env);
  // What the page asks for, and the trades it is sent, by symbol (JSON formats).
  const tradesOf = {};
  const textFrames = []; // the text frames the first connection received, in order
  const ws = watchSockets(page, (socket, payload) => {
    if (typeof payload !== 'string') return;
    if (socket === 1) textFrames.push(payload);
    for (const [, s] of payload.matchAll(/"type":"trade","symbol":"([^"]+)"/g)) tradesOf[s] = (tradesOf[s] ?? 0) + 1;
  });
  const { subscribes } = ws;
  /** The tape's lines: trades as {seq, cls, time, price, size, side}, others as {cls, text}. */
  const tape = () => page.$$eval('#tape-rows tr', (trs) => trs.map((tr) => (tr.dataset.seq
    ? { seq: tr.dataset.seq, cls: tr.className, ...Object.fromEntries([...tr.cells].map((td) => [td.className.replace('num ', '').slice(2), td.textContent])) }
    : { cls: tr.className, text: tr.textContent })));

  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  await until('a full tape for SPY', () => document.querySelectorAll('#tape-rows tr').length === 50 &&
    document.querySelectorAll('#tape-rows tr[data-seq]').length >= 40, null, 8_000);
  assert.equal(await page.textContent('#tape-symbol'), 'SPY', 'the tape follows the selected (first) row');
  await until('trades/s shown', () => /^[1-9]\d*(\.\d)? trades\/s$/.test(document.getElementById('tape-rate').textContent), null, 2_000);

  // Only the selected symbol takes trades.
  // (Adaptive throttling may re-subscribe at a lower rate meanwhile: the same split again.)
  const withTrades = subscribes.filter((m) => m.trades === true);
  assert.ok(withTrades.length > 0 && withTrades.every((m) => m.symbols.join() === 'SPY'), `subscribes: ${JSON.stringify(subscribes)}`);
  assert.equal(withTrades[0].max_rate, 60, 'the charted symbol\'s rate');
  assert.deepEqual(Object.keys(tradesOf), ['SPY'], 'trades of SPY only');

  // Newest first, at most 50 lines (trades, and a gap line wherever the gateway dropped some
  // for this page), each trade with its time, price, size and side.
  const all = await tape();
  assert.equal(all.length, 50);
  assert.ok(all.every((l) => l.seq || (l.cls === 'gap' && /^[\d,]+ trades? missed$/.test(l.text))), JSON.stringify(all));
  const lines = all.filter((l) => l.seq);
  const seqs = lines.map((l) => BigInt(l.seq));
  assert.ok(seqs.every((s, i) => i === 0 || s < seqs[i - 1]), `newest first: ${seqs.slice(0, 10)}`);
  for (const l of lines) {
    assert.match(l.time, /^\d\d:\d\d:\d\d\.\d{3}$/);
    assert.match(l.price, /^\d{1,3}(,\d{3})*\.\d{2,8}$/);
    assert.match(l.size, /^\d{1,3}(,\d{3})*(\.\d+)?$/);
    assert.equal(l.side, { buy: 'Buy', sell: 'Sell', '': '–' }[l.cls], `side ${l.side} with class "${l.cls}"`);
  }
  assert.ok(lines.some((l) => l.cls === 'buy') && lines.some((l) => l.cls === 'sell'), 'buys and sells');
  // (In one evaluation: the tape drops its oldest lines every frame.)
  const colour = (side) => page.evaluate((s) => getComputedStyle(document.querySelector(`#tape-rows tr.${s} .t-price`)).color, side);
  assert.equal(await colour('buy'), 'rgb(11, 122, 62)', 'buys green (--up)');
  assert.equal(await colour('sell'), 'rgb(179, 38, 30)', 'sells red (--down)');

  // Rendered per animation frame: hundreds of trades a second, at most one insertion into the
  // tape per frame.
  const before = tradesOf.SPY;
  const { inserts, frames } = await page.evaluate(() => new Promise((resolve) => {
    let inserts = 0;
    let frames = 0;
    const obs = new MutationObserver((records) => { inserts += records.filter((r) => r.addedNodes.length > 0).length; });
    obs.observe(document.getElementById('tape-rows'), { childList: true });
    const count = () => { frames++; raf = requestAnimationFrame(count); };
    let raf = requestAnimationFrame(count);
    setTimeout(() => {
      obs.disconnect();
      cancelAnimationFrame(raf);
      resolve({ inserts, frames });
    }, 2_000);
  }));
  const received = tradesOf.SPY - before;
  t.diagnostic(`${received} SPY trades in 2 s, ${inserts} insertions into the tape in ${frames} frames`);
  assert.ok(received > 300, `SPY trades streamed: ${received}`);
  assert.ok(inserts <= frames + 1 && inserts < received / 3, `insertions batched per frame: ${inserts} in ${frames} frames for ${received} trades`);
  assert.ok((await page.$$('#tape-rows tr')).length <= 50, 'at most 50 lines');

  // Another selection: its trades on, SPY's off (re-subscribed without them), a fresh tape.
  await logTape(page);
  const tapeLog = () => page.evaluate(() => window.tapeLog);
  const sent = subscribes.length;
  await page.click('#rows tr[data-symbol="QQQ"] th');
  assert.equal(await page.textContent('#tape-symbol'), 'QQQ');
  assert.ok((await tape()).length === 0, 'the tape starts afresh');
  await until('a full tape of QQQ trades', () => document.querySelectorAll('#tape-rows tr[data-seq]').length >= 40, null, 5_000);
  // (Adaptive throttling may re-subscribe meanwhile, at lower rates: what counts is the last
  // request for each symbol.)
  const changes = subscribes.slice(sent);
  const last = (symbol) => changes.findLast((m) => m.symbols.includes(symbol));
  assert.equal(last('QQQ')?.trades, true, `QQQ's trades on: ${JSON.stringify(changes)}`);
  const off = last('SPY');
  assert.ok(off && !off.trades, `SPY's off: ${JSON.stringify(changes)}`);
  assert.ok(changes.filter((m) => m.trades).every((m) => m.symbols.join() === 'QQQ' || m.id < off.id), `no other trades on: ${JSON.stringify(changes)}`);
  // On one connection, nothing the gateway sends after its reply to a request precedes it: no
  // SPY trade may follow the reply to the one that turned them off.
  await page.waitForTimeout(1_000);
  const reply = textFrames.findIndex((f) => f.startsWith(`{"type":"subscribed","id":${off.id},`));
  assert.ok(reply >= 0, `the reply to request ${off.id}`);
  const late = textFrames.slice(reply + 1).filter((f) => f.includes('"type":"trade","symbol":"SPY"')).length;
  assert.equal(late, 0, `frames with SPY trades after its trades were turned off (of ${textFrames.length - reply - 1} frames)`);
  assert.ok(textFrames.slice(reply + 1).some((f) => f.includes('"type":"trade","symbol":"QQQ"')), 'QQQ trades stream');
  assert.ok((await tape()).every((l) => !l.seq || !lines.some((old) => old.seq === l.seq)), 'none of SPY\'s lines left');

  // A format change replaces the connection: the new one asks for QQQ's trades again, and the
  // tape marks where trades may be missing, with new trades above the mark.
  const logged = (await tapeLog()).length;
  await page.check('input[name=format][value=binary]');
  await waitConn('open', 'binary');
  await until('a note in the tape, then new trades', (from) => {
    const log = window.tapeLog.slice(from);
    const note = log.findIndex((l) => l.startsWith('note '));
    return note >= 0 && log.slice(note + 1).some((l) => l.startsWith('t '));
  }, logged, 5_000);
  const note = (await tapeLog()).slice(logged).find((l) => l.startsWith('note '));
  assert.equal(note, 'note Format changed · trades in between not shown');
  assert.equal(ws.sockets, 2);
  const again = subscribes.filter((m) => m.socket === 2);
  assert.deepEqual(again.filter((m) => m.trades).map((m) => m.symbols), [['QQQ']], `re-subscribed with QQQ's trades: ${JSON.stringify(again)}`);

  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-tape.png') });
  assert.deepEqual(problems, [], 'the page reported problems');
});

test('dashboard: the tape says how many trades the gateway dropped for the page', { timeout: 30_000 }, async (t) => {
  // A byte budget for every client far below what the selected symbol's trades take, and a
  // trade backlog of 5: the gateway drops trades for the page all the time, and says so.
  const env = await setUp(t, ['--trade-percent', '100', '--max-trade-backlog', '5', '--rate', '5000',
    '--default-max-bandwidth', '20000']);
  const page = await env.browser.newPage();
  const problems = watchProblems(page);
  const { waitConn, until } = dashboard(page, env);
  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  await logTape(page);
  await until('a gap line, then trades after it', () => {
    const gap = window.tapeLog.findIndex((l) => /^gap [\d,]+ trades? missed$/.test(l));
    return gap >= 0 && window.tapeLog.slice(gap + 1).some((l) => l.startsWith('t '));
  }, null, 8_000);
  const log = await page.evaluate(() => window.tapeLog);
  const gaps = log.filter((l) => l.startsWith('gap '));
  t.diagnostic(`${log.length - gaps.length} trades and ${gaps.length} gap lines added to the tape, e.g. "${gaps[0]}"`);
  assert.equal(await page.getAttribute('#tape-rows tr.gap td', 'colspan'), '4', 'a gap line spans the tape');
  assert.deepEqual(problems, [], 'the page reported problems');
});

/** The fixed-point value (× 1e8, BigInt) of an exact decimal the page shows (grouping removed). */
function fixedOf(text, what) {
  assert.match(text, /^\d+(\.\d{1,8})?$/, `${what}: an exact decimal, got "${text}"`);
  const [int, frac = ''] = text.split('.');
  return BigInt(int) * 100_000_000n + BigInt(frac.padEnd(8, '0'));
}

/**
 * The depth ladder as the page shows it, read in one evaluation (the page renders between
 * tasks, so this is one frame's ladder): asks and bids best first, {price, size, bar} with the
 * grouping commas removed; its symbol, seq, spread line and stale state.
 */
const readLadder = (page) => page.evaluate(() => {
  const side = (id) => [...document.querySelectorAll(`#${id} tr:not(.l-empty)`)].map((tr) => ({
    price: tr.cells[0].textContent.replaceAll(',', ''),
    size: tr.cells[1].textContent.replaceAll(',', ''),
    bar: tr.querySelector('.l-bar span').style.transform,
  }));
  return {
    symbol: document.getElementById('book-symbol').textContent,
    seq: document.getElementById('book').dataset.seq,
    asks: side('book-asks').reverse(), // shown worst first, the best nearest the spread
    bids: side('book-bids'),
    rows: document.querySelectorAll('#book-asks tr, #book-bids tr').length,
    spread: document.getElementById('book-spread').textContent,
    stale: document.getElementById('book-panel').dataset.stale,
    badge: !document.getElementById('book-stale').hidden,
  };
});

/**
 * Checks a ladder: at least 5 levels a side, bids strictly descending, asks strictly ascending,
 * best bid < best ask, the spread line exactly their difference, positive sizes, bars scaled to
 * the largest size shown, not stale (the simulator's books never break).
 */
function checkLadder(l, symbol, what) {
  const show = JSON.stringify(l);
  assert.equal(l.symbol, symbol, `${what}: the ladder follows the selection`);
  assert.equal(l.rows, 20, `${what}: 10 rows a side (BOOK_DEPTH), built once`);
  assert.ok(l.bids.length >= 5 && l.asks.length >= 5, `${what}: at least 5 levels a side: ${show}`);
  const bids = l.bids.map((b) => fixedOf(b.price, `${what} bid`));
  const asks = l.asks.map((a) => fixedOf(a.price, `${what} ask`));
  assert.ok(bids.every((p, i) => i === 0 || p < bids[i - 1]), `${what}: bids strictly descending: ${show}`);
  assert.ok(asks.every((p, i) => i === 0 || p > asks[i - 1]), `${what}: asks strictly ascending: ${show}`);
  assert.ok(bids[0] < asks[0], `${what}: best bid < best ask: ${show}`);
  const spread = /^Spread ([\d,.]+) · [\d.]+ bps$/.exec(l.spread);
  assert.ok(spread, `${what}: the spread line: "${l.spread}"`);
  assert.equal(fixedOf(spread[1].replaceAll(',', ''), `${what} spread`), asks[0] - bids[0], `${what}: the spread, exactly: ${show}`);
  const levels = [...l.bids, ...l.asks];
  assert.ok(levels.every((x) => fixedOf(x.size, `${what} size`) > 0n), `${what}: sizes: ${show}`);
  const scales = levels.map((x) => Number(/^scaleX\(([\d.]+)\)$/.exec(x.bar)?.[1]));
  assert.ok(scales.every((s) => s > 0 && s <= 1), `${what}: a bar per level, scaled in (0, 1]: ${show}`);
  assert.ok(scales.includes(1), `${what}: the largest size has the full bar: ${show}`);
  assert.equal(l.stale, 'false', `${what}: not stale`);
  assert.equal(l.badge, false, `${what}: no stale badge`);
}

test('dashboard: a live depth ladder of the selected symbol, in JSON and binary', { timeout: 60_000 }, async (t) => {
  mkdirSync(OUTPUT, { recursive: true });
  // No extra flags: the simulator keeps order books by default (feed.depth_levels, 20 a side).
  const env = await setUp(t);
  const page = await (await env.browser.newContext({ viewport: { width: 1280, height: 1100 }, colorScheme: 'light' })).newPage();
  const problems = watchProblems(page);
  const { waitConn, until } = dashboard(page, env);
  const binaryFrames = {}; // socket -> binary frames received
  const ws = watchSockets(page, (socket, payload) => {
    if (typeof payload !== 'string') binaryFrames[socket] = (binaryFrames[socket] ?? 0) + 1;
  });
  const { subscribes } = ws;
  /** Waits until the ladder shows `symbol` with at least 5 levels a side (and a seq other than `notSeq`). */
  const filled = (symbol, what, notSeq = null) => until(`${what}: a depth ladder of ${symbol} with 5 levels a side`,
    ({ symbol, notSeq }) => document.getElementById('book-symbol').textContent === symbol &&
      document.getElementById('book').dataset.seq !== notSeq && document.getElementById('book').dataset.seq !== undefined &&
      document.querySelectorAll('#book-asks tr:not(.l-empty)').length >= 5 &&
      document.querySelectorAll('#book-bids tr:not(.l-empty)').length >= 5,
    { symbol, notSeq }, 8_000);

  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  // The first row (SPY) is selected: its book comes with it.
  await filled('SPY', 'first visit');
  checkLadder(await readLadder(page), 'SPY', 'SPY');
  assert.equal(await page.textContent('#book-hint'), 'top 10 levels a side');

  // Select another row: the ladder follows, fed by a subscription with depth 10; the previous
  // symbol is re-subscribed with depth 0, and no other symbol ever asks for a book.
  const sent = subscribes.length;
  await page.click('#rows tr[data-symbol="QQQ"] th');
  assert.equal(await page.textContent('#book-symbol'), 'QQQ');
  await filled('QQQ', 'after selecting QQQ');
  const first = await readLadder(page);
  checkLadder(first, 'QQQ', 'QQQ');
  const changes = subscribes.slice(sent);
  const last = (symbol) => changes.findLast((m) => m.symbols.includes(symbol));
  assert.equal(last('QQQ')?.depth, 10, `QQQ subscribed with depth 10: ${JSON.stringify(changes)}`);
  assert.equal(last('QQQ')?.trades, true, 'and its trades');
  // (Adaptive throttling may re-subscribe SPY meanwhile: without a depth, which is none too.)
  const spy = changes.filter((m) => m.symbols.includes('SPY'));
  assert.ok(spy.some((m) => m.depth === 0) && !(spy.at(-1).depth > 0), `SPY's book turned off (depth 0): ${JSON.stringify(changes)}`);
  const booked = new Set(subscribes.filter((m) => m.depth > 0).flatMap((m) => m.symbols));
  assert.deepEqual([...booked].sort(), ['QQQ', 'SPY'], `only the selected symbols asked for books: ${JSON.stringify(subscribes)}`);

  // Live, and rendered at most once per animation frame into the same rows: over 2 s, no row
  // is added or removed, and the mutations come in at most one batch per frame.
  const { batches, rowChanges, frames } = await page.evaluate(() => new Promise((resolve) => {
    let batches = 0;
    let rowChanges = 0;
    let frames = 0;
    const sides = [document.getElementById('book-asks'), document.getElementById('book-bids')];
    const obs = new MutationObserver((records) => {
      batches++;
      rowChanges += records.filter((r) => r.type === 'childList' && sides.includes(r.target)).length;
    });
    obs.observe(document.getElementById('book'), { subtree: true, childList: true, characterData: true, attributes: true });
    const count = () => { frames++; raf = requestAnimationFrame(count); };
    let raf = requestAnimationFrame(count);
    setTimeout(() => {
      obs.disconnect();
      cancelAnimationFrame(raf);
      resolve({ batches, rowChanges, frames });
    }, 2_000);
  }));
  t.diagnostic(`the ladder changed in ${batches} batches over ${frames} frames`);
  assert.ok(batches > 0, 'the ladder updates live');
  assert.ok(batches <= frames + 1, `rendered at most once per frame: ${batches} batches in ${frames} frames`);
  assert.equal(rowChanges, 0, 'rows are reused, never added or removed');
  const later = await readLadder(page);
  checkLadder(later, 'QQQ', 'QQQ 2 s later');
  assert.ok(BigInt(later.seq) > BigInt(first.seq), `newer books replace older ones: seq ${first.seq} then ${later.seq}`);

  // Binary: book records (several 88-byte units each) among the others; the ladder goes on.
  await page.check('input[name=format][value=binary]');
  await waitConn('open', 'binary');
  await filled('QQQ', 'binary', later.seq);
  checkLadder(await readLadder(page), 'QQQ', 'QQQ in binary');
  const binarySocket = ws.sockets;
  assert.ok(binaryFrames[binarySocket] > 0, `binary frames received: ${JSON.stringify(binaryFrames)}`);
  assert.equal(subscribes.filter((m) => m.socket === binarySocket && m.symbols.includes('QQQ')).at(-1)?.depth, 10,
    're-subscribed with its depth on the new connection');
  const seq = (await readLadder(page)).seq;
  await until('books keep coming in binary', (s) => document.getElementById('book').dataset.seq !== s, seq, 5_000);
  checkLadder(await readLadder(page), 'QQQ', 'QQQ in binary, later');

  await page.screenshot({ path: path.join(OUTPUT, 'dashboard-depth.png') });
  assert.deepEqual(problems, [], 'the page reported problems');
});

test('dashboard: where WebSockets do not get through, it streams over Server-Sent Events', { timeout: 45_000 }, async (t) => {
  const env = await setUp(t, ['--trade-percent', '50']);
  const page = await (await env.browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await blockWebSockets(page); // as a proxy that breaks the upgrade does
  const problems = watchProblems(page);
  const streams = []; // the query of every SSE stream the page opens
  page.on('request', (r) => { if (r.resourceType() === 'eventsource') streams.push(Object.fromEntries(new URL(r.url()).searchParams)); });
  let sockets = 0;
  page.on('websocket', () => sockets++);
  const { waitConn, until, quotesChange, rateWithin } = dashboard(page, env);

  await page.goto(`${env.origin}/`);
  await waitConn('open', 'json-batch');
  assert.equal(await page.getAttribute('#conn', 'data-transport'), 'sse');
  assert.equal(await page.textContent('#conn'), 'Connected · Server-Sent Events');
  assert.match(await page.textContent('#message'), /Server-Sent Events/);
  // No symbol list over SSE: the default watchlist all the same, quoted and streaming.
  await until('the default watchlist quoted',
    (n) => [...document.querySelectorAll('#rows td.c-bid')].filter((td) => td.textContent !== '–').length >= n,
    DEFAULTS.length, 8_000);
  assert.deepEqual(await page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.symbol)), DEFAULTS);
  await quotesChange(['SPY', 'QQQ', 'AAPL'], 'over SSE');
  // The selected SPY at 60/s with its trades and book, the rows at 20/s: a stream each.
  assert.deepEqual(streams.slice(0, 2), [
    { symbols: 'SPY', trades: '1', max_rate: '60', depth: '10' }, { symbols: DEFAULTS.slice(1).join(','), max_rate: '20' },
  ]);
  await rateWithin('QQQ', 5, 22, 'a row paced to 20/s over SSE');
  await until('a tape of SPY trades', () => document.querySelectorAll('#tape-rows tr[data-seq]').length >= 10, null, 8_000);
  await until('the ping\'s round trip (GET /healthz)', () => /ms$/.test(document.getElementById('rtt').textContent), null, 5_000);

  // Another selection: the streams follow (QQQ's trades on, SPY back among the rows).
  await page.click('#rows tr[data-symbol="QQQ"] th');
  assert.equal(await page.textContent('#tape-symbol'), 'QQQ');
  await until('a tape of QQQ trades', () => document.querySelectorAll('#tape-rows tr[data-seq]').length >= 10, null, 8_000);
  assert.ok(streams.some((q) => q.symbols === 'QQQ' && q.trades === '1'), `QQQ with trades: ${JSON.stringify(streams)}`);
  assert.ok(streams.some((q) => q.symbols.split(',').includes('SPY') && q.trades === undefined), `SPY without: ${JSON.stringify(streams)}`);
  await quotesChange(['SPY', 'QQQ'], 'after the selection moved');
  t.diagnostic(`${streams.length} streams opened; a WebSocket attempted ${await page.evaluate(() => window.blockedWebSockets)} times`);
  assert.equal(sockets, 0, 'no WebSocket got through');
  assert.equal(await page.getAttribute('#conn', 'data-state'), 'open');
  assert.deepEqual(problems, [], 'the page reported problems');
});
