# Shell helpers shared by scripts/*.sh (sourced, not run): stopping a process, a free port,
# a nats-server for a fleet, and the address a gateway started with --listen 127.0.0.1:0
# bound.

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nats DIR: starts nats-server with JetStream on a free loopback port, storing under
# DIR/nats and logging to DIR/nats.log; appends its pid to the caller's PIDS array and sets
# NATS_URL. Waits up to 10 s for it to listen; fails if it is not installed or does not.
start_nats() {
  local dir=$1 port i
  command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)" >&2; return 1; }
  port=$(free_port)
  nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/nats" > "$dir/nats.log" 2>&1 &
  PIDS+=($!)
  NATS_URL=nats://127.0.0.1:$port
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nats-server did not listen within 10 s; see $dir/nats.log" >&2
  return 1
}

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
