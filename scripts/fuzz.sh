#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each one for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20; TARGETs default to every file in fuzz/fuzz_targets/.
# Steps: install cargo-fuzz if missing (`cargo install cargo-fuzz --locked`); without a
# nightly toolchain, print "SKIPPED: no nightly toolchain" and exit 0; build every target with
# `cargo +nightly fuzz build` (release, debug assertions on, AddressSanitizer); run the
# targets one after the other (never two at once) under `nice -n 19`, each on its committed
# seeds (fuzz/seeds/TARGET/, read only) plus a scratch corpus (fuzz/corpus/TARGET/, kept between
# runs, git-ignored), for SECONDS_PER_TARGET with -max_total_time, and print its executions.
#
# Exit code: 0 if no target crashed, 1 if any did (each crash's input is printed: it is in
# fuzz/artifacts/TARGET/; replay it with `cargo +nightly fuzz run TARGET FILE`, shrink it with
# `cargo +nightly fuzz tmin TARGET FILE`), 2 for bad usage. Logs: fuzz/artifacts/logs/.
#
# Total time: the build (about 10 min cold on 2 cores, seconds when up to date) plus
# SECONDS_PER_TARGET per target; each run is also cut by `timeout` at SECONDS_PER_TARGET + 120.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-20}
[[ $# -gt 0 ]] && shift
if ! [[ "$SECS" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

ALL=()
for f in fuzz/fuzz_targets/*.rs; do
  ALL+=("$(basename "$f" .rs)")
done
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
  if [[ ! -f "fuzz/fuzz_targets/$t.rs" ]]; then
    echo "unknown fuzz target '$t' (have: ${ALL[*]})" >&2
    exit 2
  fi
done

log() { printf '[fuzz %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

has_nightly() { rustup toolchain list 2>/dev/null | grep -q '^nightly'; }
has_cargo_fuzz() { cargo +nightly fuzz --version >/dev/null 2>&1 || cargo fuzz --version >/dev/null 2>&1; }

if ! has_nightly || ! has_cargo_fuzz; then
  if ! has_cargo_fuzz; then
    log "installing cargo-fuzz"
    # Outside the project, so rust-toolchain.toml does not pick the toolchain.
    if has_nightly; then
      (cd / && cargo +nightly install cargo-fuzz --locked) || log "cargo-fuzz install failed"
    else
      (cd / && cargo install cargo-fuzz --locked) || log "cargo-fuzz install failed"
    fi
  fi
  if ! has_nightly; then
    echo "################################################################"
    echo "##  SKIPPED: no nightly toolchain (cargo-fuzz needs nightly)  ##"
    echo "################################################################"
    exit 0
  fi
  if ! has_cargo_fuzz; then
    echo "cargo-fuzz is missing and could not be installed" >&2
    exit 1
  fi
fi

log "building ${#ALL[@]} fuzz targets (cargo +nightly fuzz build: release, debug assertions, ASan)"
build_start=$SECONDS
cargo +nightly fuzz build
log "build took $((SECONDS - build_start)) s"

# Run the binaries just built (not `cargo fuzz run`, which would rebuild first if any source
# changed meanwhile, eating the run's time).
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bindir="fuzz/target/$host/release"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
mkdir -p fuzz/artifacts/logs
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/artifacts/$t"
  logf="fuzz/artifacts/logs/$t.log"
  log "$t: ${SECS} s"
  rc=0
  # New inputs go to the first corpus dir (the scratch one); the seeds are only read.
  timeout --kill-after=10 $((SECS + 120)) nice -n 19 \
    "$bindir/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$SECS" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=2048 >"$logf" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logf" | tail -n1)
  if [[ $rc -eq 0 ]]; then
    line=$(printf '%-16s ok     %12s executions  %8s exec/s' "$t" "${execs:-?}" "${rate:-?}")
  else
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logf" | tail -n1)
    line=$(printf '%-16s FAILED (exit %s) after %s executions; input: %s' \
      "$t" "$rc" "${execs:-?}" "${artifact:-none written (see $logf)}")
    failed+=("$t")
    echo "---- $t: end of $logf" >&2
    grep -E -A25 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$logf" | head -n 60 >&2 || tail -n 40 "$logf" >&2
  fi
  summary+=("$line")
  echo "$line"
done

echo
echo "fuzz summary (${SECS} s per target):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "CRASHES in: ${failed[*]}"
  exit 1
fi
echo "no crashes"
