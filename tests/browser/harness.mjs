// harness.mjs: what e2e.test.mjs and bench.mjs share: a gateway process on a free port,
// headless Chromium (playwright-core driving the system's Chromium), and the bare page
// (bare-page.js) on the gateway's origin.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
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
