#!/usr/bin/env bash
# A fleet on one machine: nats-server (JetStream), one `tickgate feed --publish` (finite
# simulated feed), G gateways on the bus and G load generator processes (one per gateway:
# each process holds at most ~19,900 sockets too), then --merge of their reports.
#
# Default: 5 gateways x 18,000 clients = 90,000 connections, 5 symbols each (uniform symbol
# activity, ZIPF=0, so every client receives), held for 60 s,
# with --verify-final on every load generator (every client ends on its gateway's final
# values) and a check that every gateway ends on the same values (the publisher's).
# Reports per-gateway RSS, CPU, bus messages and bytes, delivered updates/s and the merged
# latency percentiles, and stops everything it started.
#
#   scripts/fleet.sh                              # the 90,000-connection run
#   G=2 CLIENTS=2000 DURATION=10 scripts/fleet.sh # a quick one
#   INTEREST=subscribed scripts/fleet.sh          # gateways follow only held symbols
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

G=${G:-5}
CLIENTS=${CLIENTS:-18000}
SPC=${SPC:-5}
UNIVERSE=${UNIVERSE:-1000}
RATE=${RATE:-300}
DURATION=${DURATION:-60}
INTEREST=${INTEREST:-all}
RAMP=${RAMP:-2000}
# The feed outlasts the ramp and the measurement, then ends (for --verify-final).
RAMP_SECS=$(( CLIENTS / RAMP + 15 ))
TICKS=${TICKS:-$(( RATE * (RAMP_SECS + DURATION + 10) ))}
OUT=target/fleet/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

cargo build --release -q -p tickgate -p tickgate-loadtest
BIN=target/release

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_nats "$OUT"
URL=$NATS_URL
echo "fleet: $G gateways x $CLIENTS clients x $SPC symbols of $UNIVERSE, feed $RATE ticks/s for $TICKS ticks, interest $INTEREST; files in $OUT"

$BIN/tickgate feed --publish "$URL" --feed sim --symbols "$UNIVERSE" --rate "$RATE" --ticks "$TICKS" --zipf-exponent "${ZIPF:-0}" \
  --pin-cores off > "$OUT/publisher.log" 2>&1 &
PUB=$!; PIDS+=($PUB)

GWS=(); PORTS=()
for i in $(seq 0 $((G - 1))); do
  P=$(free_port)
  $BIN/tickgate serve --listen 127.0.0.1:$P --admin-listen off --feed "$URL" --nats-interest "$INTEREST" \
    --pin-cores off --shards 1 --max-connections 19900 --max-connections-per-ip 0 --connection-rate-per-ip 0 \
    --idle-timeout 600s > "$OUT/gateway-$i.log" 2>&1 &
  GWS+=($!); PORTS+=("$P"); PIDS+=($!)
done
for P in "${PORTS[@]}"; do
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$P/healthz" >/dev/null && break; sleep 0.2; done
done

T0=$(date +%s.%N)
LTS=()
for i in $(seq 0 $((G - 1))); do
  $BIN/tickgate-loadtest --url "ws://127.0.0.1:${PORTS[$i]}/ws" --clients "$CLIENTS" --symbols-per-client "$SPC" \
    --duration "$DURATION" --ramp "$RAMP" --threads 1 --verify-final --verify-timeout 900 \
    --gateway-pid "${GWS[$i]}" -q --json "$OUT/lt-$i.json" > "$OUT/lt-$i.txt" 2>&1 &
  LTS+=($!)
done
FAIL=0
for p in "${LTS[@]}"; do wait "$p" || FAIL=1; done
T1=$(date +%s.%N)

# Every gateway must end on the same values (the publisher's last ones); with interest,
# each gateway knows only what its clients held, which --verify-final already checked.
if [[ $INTEREST == all ]]; then
  python3 - "${PORTS[@]}" <<'PY' > "$OUT/converge.txt" || FAIL=1
import json, sys, urllib.request
ports = sys.argv[1:]
def get(p, path):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}{path}", timeout=60))
for p in ports:
    assert get(p, "/stats").get("feed_ended"), f"gateway :{p} did not see the feed end"
def state(p):
    # Everything but ts_gateway, which each gateway stamps itself.
    return {u["symbol"]: {k: v for k, v in u.items() if k != "ts_gateway"} for u in get(p, "/snapshot?symbols=*")}
first = state(ports[0])
for p in ports[1:]:
    other = state(p)
    diff = [k for k in first if first[k] != other.get(k)]
    assert not diff and len(other) == len(first), f"gateway :{p} differs from :{ports[0]} on {len(diff)} symbols, e.g. {diff[:3]}"
print(f"all {len(ports)} gateways saw the feed end and hold the same {len(first)} final values")
PY
  cat "$OUT/converge.txt"
fi

python3 - "$OUT" "$G" "$T0" "$T1" "$(getconf CLK_TCK)" "${GWS[@]}" "${PORTS[@]}" <<'PY' > "$OUT/gateways.md"
import json, sys, urllib.request
out, g, t0, t1, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
pids, ports = sys.argv[6:6 + g], sys.argv[6 + g:6 + 2 * g]
secs = t1 - t0
print("| gateway | clients | RSS after | RSS/conn | CPU (cores, measured window) | bus messages/s | bus MB/s | delivered updates/s | p99 | violations |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for i in range(g):
    r = json.load(open(f"{out}/lt-{i}.json"))
    s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ports[i]}/stats", timeout=30))
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pids[i]}/status") if l.startswith("VmRSS:")) * 1024
    mem = r.get("gateway_memory") or {}
    per = mem.get("bytes_per_connection")
    bus = s.get("bus") or {}
    v = sum(r["violations"].values()) + (r.get("verify") or {}).get("mismatches", 0)
    print(f"| {i} | {r['clients']['subscribed']:,} | {rss / 2**20:.0f} MiB | {per / 1024 if per else 0:.1f} KiB | "
          f"{r.get('gateway_cpu_cores') or 0:.2f} | {bus.get('received', 0) / secs:,.0f} | {bus.get('received_bytes', 0) / secs / 1e6:.2f} | "
          f"{r['updates_per_sec']:,.0f} | {r['latency_gateway']['p99'] / 1e6:.1f} ms | {v} |")
PY
$BIN/tickgate-loadtest --merge $(for i in $(seq 0 $((G - 1))); do echo "$OUT/lt-$i.json"; done) --json "$OUT/merged.json" > "$OUT/merged.txt" 2>&1 || FAIL=1
cat "$OUT/gateways.md"
grep -E "latency|gateway→recv|updates/s|clients|integrity|result" "$OUT/merged.txt" || true
[[ $FAIL == 0 ]] || { echo "fleet.sh: FAILED (see $OUT)" >&2; exit 1; }
