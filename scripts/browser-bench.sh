#!/usr/bin/env bash
# The browser benchmark: what a page sees of the gateway's stream, in headless Chromium.
#
#   scripts/browser-bench.sh [--no-append] [--no-build] [--seconds S]
#
# Starts the release gateway on its defaults (simulated feed, 20,000 ticks/s) on a free port,
# then tests/browser/bench.mjs measures, S seconds per cell (default 8): the dashboard on its
# defaults; the dashboard and a bare tickgate.js page (adaptive throttling off, every update)
# at 9, 50 and 200 symbols in json, json-batch and binary; and a page slowed to 2 ms per
# update recovering with adaptive throttling. It prints a markdown table and appends it to
# docs/BENCHMARKS.md with the date, the machine and the command (not with --no-append).
# bench.mjs's header says what each figure is.
#
# Needs Node >= 20.19 and Chromium (/usr/bin/chromium, or CHROMIUM=/path); installs
# playwright-core in tests/browser with npm when it is missing. About 20 cells: ~4 minutes at
# 8 s each. Every wait is bounded, and the gateway is stopped on any exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

INVOCATION="scripts/browser-bench.sh${*:+ $*}"
APPEND=1
BUILD=1
SECONDS_PER_CELL=8
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-append) APPEND=0 ;;
    --no-build) BUILD=0 ;;
    --seconds) SECONDS_PER_CELL=${2:?--seconds needs a value}; shift ;;
    *)
      echo "usage: scripts/browser-bench.sh [--no-append] [--no-build] [--seconds S]" >&2
      exit 2
      ;;
  esac
  shift
done

OUT=target/browser-bench
mkdir -p "$OUT"
GW=target/release/tickgate
GW_LOG="$OUT/gateway.log"
GW_PID=""
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

log() { printf '[browser-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
  if [[ -n "$GW_PID" ]]; then
    log "stopping the gateway (pid $GW_PID)"
    stop_pid "$GW_PID"
  fi
  GW_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x "$CHROMIUM" ]] || { echo "no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM=/path)" >&2; exit 1; }
if [[ ! -f tests/browser/node_modules/playwright-core/package.json ]]; then
  log "installing playwright-core in tests/browser (npm ci)"
  (cd tests/browser && timeout 600 npm ci --no-audit --no-fund)
fi
if [[ $BUILD == 1 ]]; then
  log "building tickgate (release)"
  timeout 1800 cargo build --release --locked -p tickgate
fi
[[ -x "$GW" ]] || { echo "no $GW: build it (cargo build --release -p tickgate) or drop --no-build" >&2; exit 1; }

GW_CMD=("$GW" serve --listen 127.0.0.1:0 --admin-listen off)
log "starting: ${GW_CMD[*]}"
"${GW_CMD[@]}" >"$GW_LOG" 2>&1 &
GW_PID=$!
ADDR=$(gateway_addr "$GW_PID" "$GW_LOG") || exit 3
healthy() { curl -sf --max-time 2 "http://$ADDR/healthz" >/dev/null 2>&1; }
for _ in $(seq 1 100); do
  healthy && break
  sleep 0.1
done
healthy || { log "http://$ADDR/healthz did not answer within 10 s"; exit 3; }
log "gateway up at $ADDR (pid $GW_PID)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TABLE="$OUT/$STAMP.md"
# ~20 cells of SECONDS_PER_CELL plus page loads; bounded all the same.
timeout --kill-after=30 $((60 + 30 * SECONDS_PER_CELL * 3)) \
  node tests/browser/bench.mjs --origin "http://$ADDR" --seconds "$SECONDS_PER_CELL" --json "$OUT/$STAMP.json" >"$TABLE"
cleanup
cat "$TABLE"

if [[ $APPEND == 1 ]]; then
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  mem=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
  {
    [[ -z $(tail -n 1 docs/BENCHMARKS.md) ]] || echo
    echo "### Browser benchmark ($(date -u '+%Y-%m-%d %H:%M') UTC)"
    echo
    echo "Machine: $(nproc) cores ($cpu), $mem GiB, kernel $(uname -r); the gateway and Chromium share it."
    echo "Gateway: \`${GW_CMD[*]}\` (simulated feed, 20,000 ticks/s, Zipf activity: the first symbols are the busiest)."
    echo "Command: \`$INVOCATION\` ($SECONDS_PER_CELL s per cell); raw results: \`$OUT/$STAMP.json\`."
    echo "Latency: an update's age when the page's listener runs (the gateway's clock, estimated from pings, minus \`ts_gateway\`); the bare page's figures cover every live update after a 2 s warm-up, the dashboard's are the ones it displays (live updates since it connected). How each figure is taken: \`tests/browser/bench.mjs\`."
    echo
    cat "$TABLE"
  } >>docs/BENCHMARKS.md
  log "appended the table to docs/BENCHMARKS.md"
fi
