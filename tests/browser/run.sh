#!/usr/bin/env bash
# run.sh: the browser-side tests of tickgate (tests/browser/), with node's test runner:
#   tickgate.test.mjs  tickgate.js's pure parts: binary decoder (golden bytes; trade, gap and
#                      book records), JSON update/trade/gap/book and batch parsing, formatting,
#                      backoff, the adaptive throttling controller
#   client.test.mjs    the client against a scripted fake WebSocket (batches, clock, throttling,
#                      trades and gaps, setMaxBandwidth, order books)
#   transport.test.mjs the client over Server-Sent Events against a fake EventSource, WebSocket
#                      and fetch: streams per rate, trades and depth, refusals, the 'auto'
#                      fallback and the probes back to a WebSocket
#   e2e.test.mjs       the dashboard (its time-and-sales tape, its depth ladder, and over SSE), a
#                      deliberately slow bare page and trades in every format (bare-page.js) in
#                      headless Chromium against a real gateway (harness.mjs), about 75 s
#   sse.test.mjs       GET /sse in Chromium's own EventSource (a reconnect with Last-Event-ID
#                      too), tickgate.js over SSE and its fallback from a blocked WebSocket, ~20 s
# (bench.mjs, the browser benchmark, is run by scripts/browser-bench.sh, not here.)
#
# Needs Node >= 20.19 and npm (installs playwright-core from package-lock.json with `npm ci`
# when node_modules is missing or stale; it downloads no browser). The end-to-end test needs
#   - the gateway binary, built beforehand: `cargo build` (target/debug/tickgate), or TICKGATE_BIN;
#   - Chromium: /usr/bin/chromium (Debian: apt-get install chromium) or CHROMIUM=/path.
# Without Chromium it fails, unless TICKGATE_SKIP_BROWSER=1: then only the unit tests run.
set -euo pipefail
cd "$(dirname "$0")"

node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  if (a < 20 || (a === 20 && b < 19)) { console.error(`run.sh: Node >= 20.19 needed, this is ${process.version}`); process.exit(1); }'

# npm ci when node_modules is missing or older than the lockfile (npm ci writes
# node_modules/.package-lock.json).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

unit=(tickgate.test.mjs client.test.mjs transport.test.mjs)
if [ "${TICKGATE_SKIP_BROWSER:-0}" = 1 ]; then
  echo "run.sh: TICKGATE_SKIP_BROWSER=1: SKIPPING the browser tests (e2e.test.mjs, sse.test.mjs); running the unit tests only." >&2
  files=("${unit[@]}")
else
  chromium="${CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ]; then
    echo "run.sh: ERROR: no Chromium at $chromium. Install it (apt-get install chromium), set CHROMIUM=/path/to/chromium," >&2
    echo "run.sh: or set TICKGATE_SKIP_BROWSER=1 to run only the unit tests." >&2
    exit 1
  fi
  bin="${TICKGATE_BIN:-../../target/debug/tickgate}"
  if [ ! -x "$bin" ]; then
    echo "run.sh: ERROR: no gateway binary at $bin: run 'cargo build' first (or set TICKGATE_BIN)." >&2
    exit 1
  fi
  # The page is embedded in the binary (include_str!): an older binary serves an older page.
  if [ -n "$(find ../../src/server/web -newer "$bin" -type f 2>/dev/null)" ]; then
    echo "run.sh: WARNING: src/server/web/ changed after $bin was built; run 'cargo build' to test the current page." >&2
  fi
  files=("${unit[@]}" e2e.test.mjs sse.test.mjs)
fi

# --test-force-exit: end when the tests end, even if a failed test left a handle open.
exec node --test --test-force-exit --test-reporter=spec "${files[@]}"
