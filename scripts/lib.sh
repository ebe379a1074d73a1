# Shell helpers shared by scripts/*.sh (sourced, not run): stopping a process and learning
# the address a gateway started with --listen 127.0.0.1:0 bound.

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 10), then SIGKILL; reaps it.
# Returns at once if the process is already gone.
stop_pid() {
  local p=$1 secs=${2:-10} i
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 $((secs * 10))); do
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "pid $p did not stop within ${secs} s; SIGKILL" >&2
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# gateway_addr PID LOG: prints the IP:PORT from the gateway's startup line in LOG
# ("tickgate listening addr=IP:PORT"), waiting up to 30 s. Fails (printing the log's tail to
# stderr) if the gateway exits first or never says.
gateway_addr() {
  local pid=$1 log=$2 addr i
  for i in $(seq 1 300); do
    addr=$(grep -o 'tickgate listening addr=[0-9.:]*' "$log" 2>/dev/null | head -1 | sed 's/.*addr=//') || true
    if [[ -n $addr ]]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$log" >&2
      echo "the gateway exited; see $log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "the gateway did not report its address within 30 s; see $log" >&2
  return 1
}
