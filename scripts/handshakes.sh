#!/usr/bin/env bash
# Authenticated handshakes per second of one core, by token algorithm: the gateway's HTTP
# thread (tickgate-http, which accepts, parses, verifies the token and upgrades every
# connection) is timed from /proc while the load generator opens CLIENTS WebSockets as fast as
# it can, once without auth and once each with an HS256, RS256, ES256 and EdDSA token.
#
#   scripts/handshakes.sh [CLIENTS]      (default 15000; KEEP=1 keeps the logs)
#
# handshakes/s on one core = CLIENTS / CPU seconds the HTTP thread spent (user + system).
# Keys come from `openssl genpkey` (RSA 2048, P-256, Ed25519), tokens from `tickgate token`.
# The load generator runs on the same machine; only the HTTP thread's own CPU is counted.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

CLIENTS=${1:-15000}
cargo build --release -q -p tickgate -p tickgate-loadtest
BIN=target/release
DIR=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do stop_pid "$p" 5; done; [[ -n ${KEEP:-} ]] || rm -rf "$DIR"' EXIT
TCK=$(getconf CLK_TCK)

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DIR/rsa.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/ec.key" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$DIR/ed.key" 2>/dev/null
for k in rsa ec ed; do openssl pkey -in "$DIR/$k.key" -pubout -out "$DIR/$k.pem"; done
head -c 48 /dev/urandom | base64 > "$DIR/secret"

# http_cpu PID: clock ticks the gateway's tickgate-http thread has used.
http_cpu() {
  local t
  for t in /proc/"$1"/task/*; do
    if [[ $(cat "$t/comm") == tickgate-http ]]; then
      # Fields after the ")" of the name: utime is the 12th, stime the 13th.
      sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}'
      return 0
    fi
  done
  echo 0
}

printf '| token | handshakes | HTTP thread CPU | handshakes/s on one core | connect p50 | connect p99 |\n'
printf '|---|---|---|---|---|---|\n'
# "none" runs first and last: the spread between the two shows the noise.
for alg in none HS256 RS256 ES256 EdDSA none; do
  auth=()
  token=""
  case $alg in
    HS256) auth=(--auth-mode token --auth-secret-file "$DIR/secret")
           token=$($BIN/tickgate token --sub bench --symbols '*' --secret-file "$DIR/secret") ;;
    RS256) auth=(--auth-mode token --auth-public-key-file "$DIR/rsa.pem")
           token=$($BIN/tickgate token --sub bench --symbols '*' --key-file "$DIR/rsa.key") ;;
    ES256) auth=(--auth-mode token --auth-public-key-file "$DIR/ec.pem")
           token=$($BIN/tickgate token --sub bench --symbols '*' --key-file "$DIR/ec.key") ;;
    EdDSA) auth=(--auth-mode token --auth-public-key-file "$DIR/ed.pem")
           token=$($BIN/tickgate token --sub bench --symbols '*' --key-file "$DIR/ed.key") ;;
  esac
  $BIN/tickgate serve --listen 127.0.0.1:0 --admin-listen off --symbols 100 --rate 100 \
    --max-connections-per-ip 0 --connection-rate-per-ip 0 "${auth[@]}" > "$DIR/gw-$alg.log" 2>&1 &
  gw=$!
  PIDS+=("$gw")
  addr=$(gateway_addr "$gw" "$DIR/gw-$alg.log")
  before=$(http_cpu "$gw")
  $BIN/tickgate-loadtest --url "ws://$addr/ws?token=$token" --clients "$CLIENTS" --ramp 1000000 \
    --symbols-per-client 1 --duration 1 --quiet > "$DIR/lt-$alg.txt" 2>&1 || true
  after=$(http_cpu "$gw")
  stop_pid "$gw" 10
  connected=$(sed -n 's/^clients *\([0-9,]*\)\/.*/\1/p' "$DIR/lt-$alg.txt" | head -1)
  connect=$(sed -n 's/^connect *p50 \([^ ]*\) *p99 \([^ ]*\).*/\1 | \2/p' "$DIR/lt-$alg.txt" | head -1)
  secs=$(awk -v t=$((after - before)) -v k="$TCK" 'BEGIN{printf "%.2f", t / k}')
  rate=$(awk -v n="$CLIENTS" -v t=$((after - before)) -v k="$TCK" 'BEGIN{ if (t > 0) printf "%.0f", n * k / t; else print "?" }')
  printf '| %s | %s | %s s | %s | %s |\n' "$alg" "${connected:-?}" "$secs" "$rate" "${connect:-? | ?}"
done
echo
echo "command: scripts/handshakes.sh $CLIENTS   ($(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'))"
