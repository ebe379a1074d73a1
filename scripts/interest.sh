#!/usr/bin/env bash
# The effect of interest-based bus subscriptions (feed.nats_interest), measured.
#
# Starts nats-server (JetStream), one `tickgate feed --publish` (simulated, UNIVERSE symbols,
# uniform activity), then for each mode (all, subscribed) G gateways on the bus, each with a
# load generator whose clients hold symbols from a disjoint slice of the universe
# (--symbol-range), and reports the NATS messages each gateway received per second, the
# delivered updates, and the time from a client's subscribe to its first value (with
# `subscribed`, a symbol's first client waits for the bus subscription and a JetStream read). Everything it starts is stopped at the end.
#
#   scripts/interest.sh                 # 5 gateways, 10,000 symbols, 10% slices
#   G=3 UNIVERSE=2000 RATE=5000 scripts/interest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

G=${G:-5}
UNIVERSE=${UNIVERSE:-10000}
RATE=${RATE:-10000}
CLIENTS=${CLIENTS:-100}
SPC=${SPC:-20}
DURATION=${DURATION:-8}
SLICE=${SLICE:-$((UNIVERSE / 10))}
OUT=target/interest/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

cargo build --release -q -p tickgate -p tickgate-loadtest
BIN=target/release

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT


start_nats "$OUT"
URL=$NATS_URL
$BIN/tickgate feed --publish "$URL" --feed sim --symbols "$UNIVERSE" --rate "$RATE" --zipf-exponent 0 \
  --pin-cores off > "$OUT/publisher.log" 2>&1 &
PIDS+=($!)
sleep 2

echo "| mode | gateway | symbols held (slice) | bus messages/s | delivered updates/s | p99 | first value p50 / p99 | violations |" > "$OUT/table.md"
echo "|---|---:|---|---:|---:|---:|---:|---:|" >> "$OUT/table.md"
for MODE in all subscribed; do
  GW_PIDS=(); PORTS=()
  for i in $(seq 0 $((G - 1))); do
    P=$(free_port)
    $BIN/tickgate serve --listen 127.0.0.1:$P --admin-listen off --feed "$URL" --nats-interest "$MODE" \
      --pin-cores off --shards 1 --max-connections-per-ip 0 --connection-rate-per-ip 0 > "$OUT/gw-$MODE-$i.log" 2>&1 &
    GW_PIDS+=($!); PORTS+=("$P"); PIDS+=($!)
  done
  for P in "${PORTS[@]}"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$P/healthz" >/dev/null && break; sleep 0.2; done
  done
  # Let the start-up warm-up (all: the last value of every symbol from JetStream) and the
  # live messages queued meanwhile drain before counting.
  sleep "${SETTLE:-5}"
  LT=()
  declare -A RX0
  for i in $(seq 0 $((G - 1))); do
    RX0[$i]=$(curl -s "http://127.0.0.1:${PORTS[$i]}/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bus"]["received"])')
    A=$((i * SLICE)); B=$(((i + 1) * SLICE))
    $BIN/tickgate-loadtest --url "ws://127.0.0.1:${PORTS[$i]}/ws" --clients "$CLIENTS" --symbols-per-client "$SPC" \
      --symbol-range "$A..$B" --duration "$DURATION" --threads 1 -q --json "$OUT/lt-$MODE-$i.json" > "$OUT/lt-$MODE-$i.txt" 2>&1 &
    LT+=($!)
  done
  T0=$(date +%s.%N)
  for p in "${LT[@]}"; do wait "$p" || true; done
  T1=$(date +%s.%N)
  for i in $(seq 0 $((G - 1))); do
    RX1=$(curl -s "http://127.0.0.1:${PORTS[$i]}/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bus"]["received"])')
    python3 - "$OUT/lt-$MODE-$i.json" "$MODE" "$i" "$((i * SLICE))..$(((i + 1) * SLICE))" "${RX0[$i]}" "$RX1" "$T0" "$T1" >> "$OUT/table.md" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mode, i, rng, rx0, rx1, t0, t1 = sys.argv[2:9]
secs = float(t1) - float(t0)
v = sum(r["violations"].values())
fv = r.get("first_value") or {}
first = f"{fv.get('p50', 0) / 1e6:.1f} / {fv.get('p99', 0) / 1e6:.1f} ms"
print(f"| {mode} | {i} | {rng} | {(int(rx1) - int(rx0)) / secs:,.0f} | {r['updates_per_sec']:,.0f} | {r['latency_gateway']['p99'] / 1e6:.1f} ms | {first} | {v} |")
PY
  done
  for p in "${GW_PIDS[@]}"; do stop_pid "$p"; done
  unset RX0
done
cat "$OUT/table.md"
echo "raw files: $OUT"
