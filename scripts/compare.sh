#!/usr/bin/env bash
# scripts/compare.sh: tickgate against two peer servers (uWebSockets.js and Node ws,
# benches/peers/) and against the raw-TCP limit, with the same load generator and feed.
#
# For every workload (clients x 20 symbols of 1,000, 10,000 ticks/s, JSON, --pick uniform
# and zipf) it runs each server one after the other, each on a fresh process and a free
# port, with the same tickgate-loadtest command. It records the load generator's report,
# the server's CPU over the measurement window (the report's gateway_cpu_cores, from
# /proc/PID/stat), its VmRSS after the run and peak VmHWM, and, when `perf` can count
# syscall tracepoints, its write/writev/sendto calls over the window (perf stat -I 500,
# lined up with the report's measure_start_unix). Then tickgate-rawtcp (the raw-TCP write
# limit) and a --find-capacity search per server (--slo-p99, fresh server per step).
#
# Writes target/compare/<UTC stamp>/ (raw JSON reports, logs, section.md) and appends
# section.md as a new dated section to docs/BENCHMARKS.md.
#
# Usage: scripts/compare.sh [--quick] [--clients "1000 5000"] [--picks "uniform zipf"]
#          [--duration S] [--servers "tickgate uws ws"] [--slo 50ms] [--no-capacity]
#          [--no-rawtcp] [--no-build] [--no-append]
# Environment (same meaning): COMPARE_CLIENTS, COMPARE_PICKS, COMPARE_DURATION,
#   COMPARE_SERVERS, COMPARE_SLO, COMPARE_CAPACITY_DURATION, COMPARE_CAPACITY_MAX,
#   COMPARE_BIN_DIR (prebuilt binaries; implies --no-build), COMPARE_NO_APPEND=1.
# Every wait is bounded; every server, perf and sampler started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
CLIENTS=${COMPARE_CLIENTS:-"1000 5000 10000"}
PICKS=${COMPARE_PICKS:-"uniform zipf"}
DURATION=${COMPARE_DURATION:-15}
SERVERS=${COMPARE_SERVERS:-"tickgate uws ws"}
SLO=${COMPARE_SLO:-50ms}
CAP_DURATION=${COMPARE_CAPACITY_DURATION:-10}
CAP_START=500 CAP_MAX=${COMPARE_CAPACITY_MAX:-19000} CAP_STEP=250
SYMBOLS=1000 RATE=10000 SPC=20
RAW_BATCHES="1 8"
CAPACITY=1 RAWTCP=1 BUILD=1 APPEND=1 QUICK=0
[[ -n ${COMPARE_BIN_DIR:-} ]] && BUILD=0
[[ ${COMPARE_NO_APPEND:-0} == 1 ]] && APPEND=0
BIN=${COMPARE_BIN_DIR:-$ROOT/target/release}

while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --clients) CLIENTS=$2; shift ;;
    --picks) PICKS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --slo) SLO=$2; shift ;;
    --no-capacity) CAPACITY=0 ;;
    --no-rawtcp) RAWTCP=0 ;;
    --no-build) BUILD=0 ;;
    --no-append) APPEND=0 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  # A smoke of the whole pipeline, not a measurement.
  CLIENTS=200 PICKS=uniform DURATION=3
  CAP_DURATION=2 CAP_START=100 CAP_MAX=400 CAP_STEP=100
fi
RAW_DURATION=$(( DURATION < 10 ? DURATION : 10 ))

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/target/compare/$STAMP
mkdir -p "$OUT"
RUNS=$OUT/runs.tsv
: > "$RUNS"
log() { echo "compare: $*" >&2; }

# Everything started here, stopped on exit (by pid, never by name).
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# Clients need descriptors; the servers inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ $BUILD == 1 ]]; then
  log "building tickgate and tickgate-loadtest (release)"
  (cd "$ROOT" && cargo build --release -p tickgate -p tickgate-loadtest)
fi
LT=$BIN/tickgate-loadtest
RAW=$BIN/tickgate-rawtcp
for b in "$LT" "$RAW"; do
  [[ -x $b ]] || { echo "compare.sh: $b is missing (build it, or set COMPARE_BIN_DIR)" >&2; exit 3; }
done
if [[ " $SERVERS " == *" tickgate "* && ! -x $BIN/tickgate ]]; then
  echo "compare.sh: $BIN/tickgate is missing" >&2; exit 3
fi
if [[ " $SERVERS " == *" uws "* || " $SERVERS " == *" ws "* ]]; then
  command -v node >/dev/null || { echo "compare.sh: node is needed for the peers" >&2; exit 3; }
  log "installing the peers' npm packages (benches/peers, from package-lock.json)"
  (cd "$ROOT/benches/peers" && timeout 600 npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
fi

PERF=0
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_write true >/dev/null 2>&1; then
  PERF=1
else
  log "perf cannot count syscall tracepoints here: writes/s will be '-'"
fi
PERF_EVENTS=syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg

# The server command line, with {port} for the port. The peers simulate quotes only, so
# tickgate's simulated order books are off (--depth-levels 0): the same feed for everyone.
server_cmd() {
  case $1 in
    tickgate) echo "$BIN/tickgate serve --listen 127.0.0.1:{port} --admin-listen off --symbols $SYMBOLS --rate $RATE --zipf-exponent 0 --depth-levels 0 --max-connections-per-ip 0 --connection-rate-per-ip 0" ;;
    uws) echo "node $ROOT/benches/peers/uws-server.js --port {port} --symbols $SYMBOLS --rate $RATE" ;;
    ws) echo "node $ROOT/benches/peers/ws-server.js --port {port} --symbols $SYMBOLS --rate $RATE" ;;
    *) echo "compare.sh: unknown server $1 (tickgate, uws, ws)" >&2; return 1 ;;
  esac
}

# Starts server $1 on port $2, logging to $3; prints its pid. Fails if it does not answer
# /healthz within 30 s.
start_server() {
  local cmd pid i
  cmd=$(server_cmd "$1")
  cmd=${cmd//\{port\}/$2}
  echo "$cmd" > "$3.cmd"
  bash -c "exec $cmd" > "$3" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for i in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "exited before answering /healthz: $(tail -3 "$3" | tr '\n' ' ')" > "$3.why"
      return 1
    fi
    if curl -sf --max-time 1 "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then
      echo "$pid"
      return 0
    fi
    sleep 0.1
  done
  echo "no /healthz answer within 30 s" > "$3.why"
  stop_pid "$pid" 5
  return 1
}

proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# One load test of server $1 with $2 clients and pick $3.
run_one() {
  local server=$1 clients=$2 pick=$3 name port pid rc=0 perf_pid="" perf_start="" rss="" hwm="" limit
  name=$server-$clients-$pick
  port=$(free_port)
  log "$name: starting $server on port $port"
  if ! pid=$(start_server "$server" "$port" "$OUT/$name.server.log"); then
    log "$name: server failed to start: $(cat "$OUT/$name.server.log.why" 2>/dev/null)"
    printf '%s\t%s\t%s\t%s\t\t\t\t\t%s\n' "$server" "$clients" "$pick" "start-failed" "$(cat "$OUT/$name.server.log.why" 2>/dev/null)" >> "$RUNS"
    return 0
  fi
  PIDS+=("$pid") # start_server ran in a subshell: register the server here too
  if [[ $PERF == 1 ]]; then
    perf_start=$(date +%s.%N)
    perf stat -I 500 -x, -e "$PERF_EVENTS" -p "$pid" -o "$OUT/$name.perf" 2>/dev/null &
    perf_pid=$!
    PIDS+=("$perf_pid")
  fi
  # Ramp (2,000 connections/s) + measurement + connect timeouts + closing, generously.
  limit=$(( DURATION + clients / 500 + 120 ))
  local cmd=("$LT" --url "ws://127.0.0.1:$port/ws" --clients "$clients" --symbols-per-client "$SPC"
    --pick "$pick" --duration "$DURATION" --gateway-pid "$pid" --json "$OUT/$name.json" -q)
  echo "${cmd[*]}" > "$OUT/$name.loadtest.cmd"
  timeout "$limit" "${cmd[@]}" > "$OUT/$name.loadtest.txt" 2>&1 || rc=$?
  rss=$(proc_kib "$pid" VmRSS)
  hwm=$(proc_kib "$pid" VmHWM)
  [[ -n $perf_pid ]] && { kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; }
  stop_pid "$pid" 5
  log "$name: load generator exit code $rc"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$clients" "$pick" "rc=$rc" "$OUT/$name.json" "$rss" "$hwm" "$perf_start" "$OUT/$name.perf" >> "$RUNS"
}

for clients in $CLIENTS; do
  for pick in $PICKS; do
    for server in $SERVERS; do
      server_cmd "$server" >/dev/null
      run_one "$server" "$clients" "$pick"
      sleep 1 # let TIME_WAIT and the scheduler settle between servers
    done
  done
done

if [[ $RAWTCP == 1 ]]; then
  for clients in $CLIENTS; do
    for b in $RAW_BATCHES; do
      log "raw TCP: $clients sockets, batch $b"
      timeout $(( RAW_DURATION + 60 )) "$RAW" --sockets "$clients" --batch "$b" --frame-bytes 230 \
        --duration "$RAW_DURATION" --json "$OUT/rawtcp-$clients-$b.json" > "$OUT/rawtcp-$clients-$b.txt" 2>&1 \
        || log "raw TCP $clients x $b failed: $(tail -1 "$OUT/rawtcp-$clients-$b.txt")"
    done
  done
fi

if [[ $CAPACITY == 1 ]]; then
  for server in $SERVERS; do
    log "capacity search: $server (p99 <= $SLO)"
    # Steps: doubling then bisection, each ramp + measure + a fresh server.
    timeout $(( 20 * (CAP_DURATION + 60) )) "$LT" --find-capacity --slo-p99 "$SLO" --symbols-per-client "$SPC" \
      --duration "$CAP_DURATION" --capacity-start "$CAP_START" --capacity-max "$CAP_MAX" --capacity-step "$CAP_STEP" \
      --server-cmd "$(server_cmd "$server")" --server-log "$OUT/capacity-$server.server.log" \
      --json "$OUT/capacity-$server.json" -q > "$OUT/capacity-$server.txt" 2>&1 \
      || log "capacity search for $server: exit code $? (see $OUT/capacity-$server.txt)"
  done
fi

SECTION=$OUT/section.md
python3 - "$OUT" "$RUNS" "$SECTION" "$QUICK" "$SLO" "$SYMBOLS" "$RATE" "$SPC" "$DURATION" "$PERF" <<'PY'
# Builds the markdown section from the raw files of this run.
import json, os, platform, sys, time
out, runs, section, quick, slo, symbols, rate, spc, duration, perf = sys.argv[1:11]

def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None

def fmt_ns(ns):
    if ns is None: return "-"
    if ns < 1e3: return f"{ns}ns"
    if ns < 1e6: return f"{ns/1e3:.1f}µs"
    if ns < 1e9: return f"{ns/1e6:.2f}ms"
    return f"{ns/1e9:.2f}s"

def mib(kib):
    return f"{int(kib)/1024:.1f} MiB" if kib else "-"

def perf_writes(path, t_perf, t0, secs):
    """write-like syscalls per second over [t0, t0+secs] from perf stat -I -x, output."""
    if not (path and t_perf and os.path.exists(path)): return None
    total, covered = 0, 0.0
    for line in open(path):
        parts = line.strip().split(",")
        if len(parts) < 4 or line.startswith("#"): continue
        try:
            t, n = float(parts[0]), int(parts[1])
        except ValueError:
            continue
        # Interval (t-0.5, t] relative to perf's start; keep those inside the window.
        end = float(t_perf) + t
        if t0 + 0.25 <= end <= t0 + secs + 0.25:
            total += n
    return total / secs if secs > 0 else None

cpu = "?"
try:
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"): cpu = l.split(":", 1)[1].strip(); break
except Exception: pass
mem = "?"
try:
    for l in open("/proc/meminfo"):
        if l.startswith("MemTotal"): mem = f"{int(l.split()[1])/1048576:.1f} GiB"; break
except Exception: pass

lines = []
title = "smoke (--quick), not a measurement" if quick == "1" else "measurement"
lines.append(f"\n### Comparison: tickgate vs uWebSockets.js vs Node ws ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {title})\n")
lines.append(f"Hardware: {os.cpu_count()} cores ({cpu}), {mem}, kernel {platform.release()}. "
             f"Feed: {symbols} symbols at {rate} ticks/s, uniform activity; clients × {spc} symbols, JSON; "
             f"{duration} s measured per run; every server on a fresh process; load generator on the same machine. "
             f"Raw files: `target/compare/{os.path.basename(out)}/`.\n")
lines.append("| server | clients | pick | updates/s | p50 | p99 | p99.9 | server CPU (cores) | writes/s | updates/write | RSS after | RSS peak | violations |")
lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
cmds = []
for row in open(runs):
    f = row.rstrip("\n").split("\t")
    f += [""] * (9 - len(f))
    server, clients, pick, status, rep, rss, hwm, t_perf, perf_path = f[:9]
    if status == "start-failed":
        lines.append(f"| {server} | {clients} | {pick} | server failed to start: {rep or f[8]} | | | | | | | | | |")
        continue
    r = load(rep)
    if r is None:
        lines.append(f"| {server} | {clients} | {pick} | no report ({status}) | | | | | | | | | |")
        continue
    lg = r.get("latency_gateway", {})
    secs = r.get("measured_secs") or 0
    ups = r.get("updates_per_sec") or 0
    w = perf_writes(perf_path, t_perf, r.get("measure_start_unix") or 0, secs) if perf == "1" else None
    v = r.get("violations", {})
    nviol = sum(x for x in v.values() if isinstance(x, int))
    c = r.get("clients", {})
    viol = str(nviol) if c.get("subscribed") == c.get("target") else f"{nviol}; {c.get('subscribed')}/{c.get('target')} subscribed"
    gcpu = r.get("gateway_cpu_cores")
    lines.append(f"| {server} | {int(clients):,} | {pick} | {ups:,.0f} | {fmt_ns(lg.get('p50'))} | {fmt_ns(lg.get('p99'))} | "
                 f"{fmt_ns(lg.get('p999'))} | {'-' if gcpu is None else f'{gcpu:.2f}'} | "
                 f"{'-' if w is None else f'{w:,.0f}'} | {'-' if not w else f'{ups / w:.2f}'} | {mib(rss)} | {mib(hwm)} | {viol} |")
    scmd = open(rep.replace(".json", ".server.log.cmd")).read().strip() if os.path.exists(rep.replace(".json", ".server.log.cmd")) else "?"
    lcmd = open(rep.replace(".json", ".loadtest.cmd")).read().strip() if os.path.exists(rep.replace(".json", ".loadtest.cmd")) else "?"
    cmds.append((f"{server} {clients} {pick}", scmd, lcmd))
lines.append("")
lines.append("writes/s counts the server's write, writev, sendto and sendmsg calls over the measurement window "
             "(`perf stat -e syscalls:sys_enter_*`); updates/write = updates/s received ÷ writes/s. "
             "Server CPU is utime+stime over the window (/proc/PID/stat). RSS peak is VmHWM.\n")

raws = sorted(p for p in os.listdir(out) if p.startswith("rawtcp-") and p.endswith(".json"))
if raws:
    lines.append("Raw-TCP limit (`tickgate-rawtcp`: one writer thread, ~230-byte WebSocket frames, round-robin, non-blocking):\n")
    lines.append("| sockets | frames/write | writes/s | frames/s | writer CPU (s) | writes per CPU-s | frames per CPU-s |")
    lines.append("|---|---|---|---|---|---|---|")
    for p in sorted(raws, key=lambda p: [int(x) for x in p[7:-5].split("-")]):
        r = load(os.path.join(out, p))
        if r:
            lines.append(f"| {r['sockets']:,} | {r['batch']} | {r['writes_per_sec']:,.0f} | {r['frames_per_sec']:,.0f} | "
                         f"{r['writer_cpu_secs']:.2f} | {r['writes_per_cpu_sec']:,.0f} | {r['frames_per_cpu_sec']:,.0f} |")
    lines.append("")

caps = sorted(p for p in os.listdir(out) if p.startswith("capacity-") and p.endswith(".json"))
if caps:
    lines.append(f"Capacity at p99 ≤ {slo} (`tickgate-loadtest --find-capacity`, fresh server per step, uniform pick):\n")
    lines.append("| server | capacity (clients) | steps (clients: p99, pass/fail) |")
    lines.append("|---|---|---|")
    for p in caps:
        r = load(os.path.join(out, p))
        if not r: continue
        steps = ", ".join(f"{s['clients']}: {fmt_ns(s['p99_ns'])} {'pass' if s['passed'] else 'FAIL'}" for s in r.get("steps", []))
        cap = r.get("capacity")
        lines.append(f"| {p[9:-5]} | {'none' if cap is None else f'{cap:,}'} | {steps} |")
    lines.append("")
for p in sorted(os.listdir(out)):
    if p.startswith("capacity-") and p.endswith(".txt") and not os.path.exists(os.path.join(out, p[:-4] + ".json")):
        last = (open(os.path.join(out, p)).read().strip().splitlines() or ["(no output)"])[-1]
        lines.append(f"Capacity search {p[9:-4]} produced no result: `{last}`\n")

if cmds:
    lines.append("<details><summary>Exact command lines</summary>\n")
    for what, s, l in cmds:
        lines.append(f"- {what}: server `{s}`; load `{l}`")
    lines.append("\n</details>\n")
open(section, "w").write("\n".join(lines) + "\n")
PY

cat "$SECTION"
if [[ $APPEND == 1 ]]; then
  cat "$SECTION" >> "$ROOT/docs/BENCHMARKS.md"
  log "appended to docs/BENCHMARKS.md; raw files in $OUT"
else
  log "not appended (--no-append); section in $SECTION"
fi
