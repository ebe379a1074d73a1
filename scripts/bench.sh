#!/usr/bin/env bash
# Runs one load-test profile against a fresh release gateway and appends the result to
# docs/BENCHMARKS.md.
#
#   scripts/bench.sh smoke|dashboard|fanout|connections [extra tickgate-loadtest flags...]
#
# Steps: build both binaries in release; start `tickgate serve` on a free port with the
# profile's feed (`tickgate-loadtest --profile P --print-gateway-args`); wait for /healthz;
# run the profile with --json/--plot/--hdr-log into target/bench/; stop the gateway with
# SIGTERM; append one row to docs/BENCHMARKS.md. Every wait is bounded, and the gateway is
# stopped on any exit (trap). Exit code: the load test's (0 = passed).
#
# Environment: BENCH_TIMEOUT (seconds the load test may take, default 900),
# BENCH_NO_APPEND=1 (do not touch docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

PROFILE=${1:-}
case "$PROFILE" in
  smoke | dashboard | fanout | connections) shift ;;
  *)
    echo "usage: scripts/bench.sh smoke|dashboard|fanout|connections [tickgate-loadtest flags...]" >&2
    exit 2
    ;;
esac

OUT=target/bench
mkdir -p "$OUT"
GW=target/release/tickgate
LT=target/release/tickgate-loadtest
GW_LOG="$OUT/$PROFILE.gateway.log"
LT_TIMEOUT=${BENCH_TIMEOUT:-900}
GW_PID=""

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
  if [[ -n "$GW_PID" ]]; then
    log "stopping the gateway (pid $GW_PID) with SIGTERM"
    stop_pid "$GW_PID"
  fi
  GW_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building tickgate and tickgate-loadtest (release)"
timeout 1800 cargo build --release --locked -p tickgate -p tickgate-loadtest

read -r -a GW_ARGS <<<"$("$LT" --profile "$PROFILE" --print-gateway-args)"
log "starting: $GW serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 ${GW_ARGS[*]}"
"$GW" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${GW_ARGS[@]}" >"$GW_LOG" 2>&1 &
GW_PID=$!

# The startup line carries the bound address.
ADDR=$(gateway_addr "$GW_PID" "$GW_LOG") || exit 3

healthy() { curl -sf --max-time 2 "http://$ADDR/healthz" >/dev/null 2>&1; }
for _ in $(seq 1 100); do
  healthy && break
  sleep 0.1
done
healthy || { log "http://$ADDR/healthz did not answer within 10 s"; exit 3; }
log "gateway up at $ADDR (pid $GW_PID)"

rm -f "$OUT/$PROFILE.json"
set +e
timeout --signal=INT --kill-after=30 "$LT_TIMEOUT" "$LT" --profile "$PROFILE" --url "ws://$ADDR/ws" \
  --gateway-pid "$GW_PID" --json "$OUT/$PROFILE.json" --plot "$OUT/$PROFILE.svg" \
  --hdr-log "$OUT/$PROFILE.hlog" "$@"
RC=$?
set -e
log "load test exited with $RC"

cleanup

if [[ -f "$OUT/$PROFILE.json" && "${BENCH_NO_APPEND:-0}" != 1 ]]; then
  "$LT" --markdown-row "$OUT/$PROFILE.json" >>docs/BENCHMARKS.md
  log "appended a row to docs/BENCHMARKS.md (report $OUT/$PROFILE.json, plot $OUT/$PROFILE.svg)"
fi
exit "$RC"
