#!/usr/bin/env bash
# Runs the Autobahn WebSocket test suite (wstest in fuzzingclient mode) against tickgate's
# diagnostic echo endpoint and summarises the result.
#
#   scripts/autobahn.sh
#
# wstest (autobahntestsuite) runs only on Python 2.7, which Debian bookworm does not ship.
# So the first run builds a private Python 2.7 under the cache folder, touching nothing
# system-wide:
#   1. downloads bullseye's python2.7 packages with apt-get, using a private apt
#      configuration (its own sources.list, state and cache dirs under the cache folder;
#      /etc/apt is neither read for sources nor written),
#   2. unpacks them with dpkg-deb -x (plus libffi7 and libssl1.1, the shared libraries
#      they need that bookworm lacks, and the -dev headers to compile wsaccel),
#   3. runs PyPI's pip 20.3.4 wheel (the last pip for 2.7) to install pip/setuptools/wheel
#      and then the pinned autobahntestsuite 25.10.1 dependency set into a local prefix.
# Later runs find the stamps and skip all of this (delete the cache folder to redo it).
#
# Then it starts `tickgate serve --diagnostic-echo` on a free loopback port, points wstest's
# fuzzingclient at ws://127.0.0.1:PORT/echo (cases 1-7, 9, 10), writes the reports to
# target/autobahn/ (index.html, index.json, one JSON and HTML file per case, gateway.log),
# prints counts per behavior and close behavior, and exits non-zero if any case's behavior
# or behaviorClose is FAILED or NON-STRICT (listing those cases; NON-STRICT is how wstest marks
# a late verdict, e.g. invalid UTF-8 found only when the message completes), or if wstest did
# not finish in time.
#
# Needs: apt-get, dpkg-deb, flock, timeout, a C compiler (for wsaccel), python3 with pip
# (once, to download the pip 20.3.4 wheel from PyPI), and access to the Debian mirror and
# PyPI on the first run only. Not root-only: apt runs with a private config and no locks.
#
# Environment:
#   AUTOBAHN_CACHE    cache folder (default $HOME/.cache/tickgate-autobahn)
#   AUTOBAHN_TIMEOUT  seconds wstest may run (default 1200)
#   AUTOBAHN_CASES    space-separated case patterns (default "1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*")
#   TICKGATE_BIN      gateway binary (default target/release/tickgate, built if missing)
#   DEBIAN_MIRROR     Debian mirror for the bullseye packages (default http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE=${AUTOBAHN_CACHE:-$HOME/.cache/tickgate-autobahn}
RUN_TIMEOUT=${AUTOBAHN_TIMEOUT:-1200}
CASES=${AUTOBAHN_CASES:-"1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*"}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
OUT=$REPO/target/autobahn
GW_PID=""
TMP=""

# Cases 9.1.6 and 9.2.6 send one 16 MiB (16 * 2^20 byte) message; the gateway closes with
# 1009 only on messages larger than --max-message-bytes, so 16 MiB is exactly enough.
MAX_MESSAGE_BYTES=16777216

# Bullseye packages: the interpreter and its stdlib, the two shared libraries bookworm
# lacks (libffi.so.7 for _ctypes, libssl.so.1.1/libcrypto.so.1.1 for _ssl/_hashlib; every
# other dependency is in bookworm with the same soname), and the headers for wsaccel.
DEBS="python2.7 python2.7-minimal libpython2.7-stdlib libpython2.7-minimal libffi7 libssl1.1
      python2.7-dev libpython2.7-dev"

PIP_BOOTSTRAP="pip==20.3.4 setuptools==44.0.0 wheel==0.37.1"
# autobahntestsuite 25.10.1 pins its direct dependencies (Twisted 19.10.0, autobahn 0.10.9,
# ...); the rest are the newest versions that still install on Python 2.7, pinned so a
# later release cannot break the set. autobahn[accelerate] brings wsaccel (C UTF-8
# validator and XOR masker, which autobahn uses instead of its pure-Python ones; the only
# package here built from source) and ujson.
REQUIREMENTS="autobahntestsuite==25.10.1
autobahn[accelerate,twisted]==0.10.9
Twisted==19.10.0
txaio==2.1.0
zope.interface==4.6.0
six==1.16.0
incremental==16.10.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
attrs==21.4.0
Automat==22.10.0
constantly==15.1.0
hyperlink==21.0.0
idna==2.10
typing==3.10.0.0
PyHamcrest==1.10.1
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
unittest2==1.1.0
traceback2==1.4.0
linecache2==1.0.0
wsaccel==0.6.6
ujson==2.0.3"

log() { printf '[autobahn %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 3
}

cleanup() {
  if [[ -n "$GW_PID" ]]; then stop_pid "$GW_PID"; fi
  GW_PID=""
  if [[ -n "$TMP" ]]; then rm -rf "$TMP"; fi
  TMP=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Setup (cached under $CACHE; each stage is skipped when its stamp matches its inputs)
# ---------------------------------------------------------------------------------------
PY=$CACHE/py27            # the unpacked .debs: $PY/usr/bin/python2.7
SITE=$CACHE/site          # pip --prefix for autobahntestsuite and its dependencies
SITE_PKGS=$SITE/lib/python2.7/site-packages
PY_LIBS=$PY/usr/lib/x86_64-linux-gnu
PY27=$CACHE/bin/python2.7 # wrapper around the unpacked interpreter
WSTEST=$CACHE/bin/wstest  # wrapper around autobahntestsuite's wstest

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# The unpacked interpreter is not at its build prefix (/usr): it needs PYTHONHOME, and the
# bullseye-only libraries on LD_LIBRARY_PATH. Both wrappers also work by hand.
write_wrappers() {
  mkdir -p "$CACHE/bin"
  cat >"$PY27" <<EOF
#!/bin/sh
unset PYTHONPATH PYTHONSTARTUP
PYTHONHOME='$PY/usr' PYTHONNOUSERSITE=1 LD_LIBRARY_PATH='$PY_LIBS'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec '$PY/usr/bin/python2.7' "\$@"
EOF
  cat >"$WSTEST" <<EOF
#!/bin/sh
exec '$PY27' -c 'import sys; from autobahntestsuite.wstest import run; sys.argv[0] = "wstest"; sys.exit(run())' "\$@"
EOF
  chmod +x "$PY27" "$WSTEST"
}

setup() {
  local t0=$SECONDS
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9 # one setup at a time per cache folder

  # 1. The bullseye .debs, through a private apt configuration.
  local apt=$CACHE/apt debs=$CACHE/debs
  local debs_key
  debs_key="$MIRROR bullseye main: $(echo $DEBS)"
  if ! stamp_ok "$debs/.stamp" "$debs_key"; then
    log "downloading bullseye packages: $(echo $DEBS)"
    [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] ||
      die "/usr/share/keyrings/debian-archive-keyring.gpg is missing (package debian-archive-keyring)"
    rm -rf "$apt" "$debs"
    mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" \
      "$apt/etc/trusted.gpg.d" "$apt/state/lists/partial" "$apt/cache/archives/partial" "$debs"
    : >"$apt/state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main" \
      >"$apt/etc/sources.list"
    cat >"$apt/apt.conf" <<EOF
Dir::Etc "$apt/etc";
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/sources.list.d";
Dir::Etc::Parts "$apt/etc/apt.conf.d";
Dir::Etc::Preferences "$apt/etc/preferences";
Dir::Etc::PreferencesParts "$apt/etc/preferences.d";
Dir::Etc::TrustedParts "$apt/etc/trusted.gpg.d";
Dir::State "$apt/state";
Dir::State::status "$apt/state/status";
Dir::Cache "$apt/cache";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Sandbox::User "$(id -un)";
Acquire::Languages "none";
EOF
    APT_CONFIG=$apt/apt.conf timeout 300 apt-get -qq update >&2 ||
      die "apt-get update with the private configuration ($apt/apt.conf) failed"
    # shellcheck disable=SC2086
    (cd "$debs" && APT_CONFIG=$apt/apt.conf timeout 300 apt-get -qq download $DEBS >&2) ||
      die "apt-get download failed"
    rm -rf "$apt/state/lists" "$apt/cache" # the package lists (~100 MB) are not needed again
    echo "$debs_key" >"$debs/.stamp"
  fi

  # 2. Unpack them.
  local py_key
  py_key=$(cd "$debs" && echo *.deb)
  if ! stamp_ok "$PY/.stamp" "$py_key"; then
    log "unpacking $(echo "$py_key" | wc -w) packages into $PY"
    rm -rf "$PY"
    mkdir -p "$PY"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$PY"; done
    mkdir -p "$PY/usr/lib/python2.7/dist-packages"
    write_wrappers
    "$PY27" -c 'import ssl, ctypes, hashlib, zlib, bz2, json' || die "the unpacked python2.7 does not work"
    echo "$py_key" >"$PY/.stamp"
  fi
  write_wrappers # rewritten on each run in case the cache folder moved
  # A .pth in the interpreter's own dist-packages makes the prefix a site dir, so the .pth
  # files in it (namespace packages such as zope) are processed too.
  echo "import site; site.addsitedir('$SITE_PKGS')" >"$PY/usr/lib/python2.7/dist-packages/tickgate-autobahn.pth"

  # 3. pip for Python 2.7 (PyPI's pip 20.3.4 wheel, run from the wheel file), then the
  #    pinned set. The stamp includes the interpreter's, so new .debs reinstall this too.
  local site_key
  site_key="$py_key | $PIP_BOOTSTRAP | $(echo $REQUIREMENTS)"
  if ! stamp_ok "$SITE/.stamp" "$site_key"; then
    log "installing $PIP_BOOTSTRAP and autobahntestsuite==25.10.1 (pinned set) into $SITE"
    rm -rf "$SITE"
    mkdir -p "$CACHE/wheels" "$SITE"
    local pip_whl=$CACHE/wheels/pip-20.3.4-py2.py3-none-any.whl
    if [[ ! -f "$pip_whl" ]]; then
      command -v python3 >/dev/null || die "python3 (with pip) is needed once, to download the pip 20.3.4 wheel"
      timeout 300 python3 -m pip download -q --no-deps --only-binary :all: -d "$CACHE/wheels" pip==20.3.4 >&2 ||
        die "could not download pip==20.3.4 from PyPI"
    fi
    export PIP_CACHE_DIR=$CACHE/pip-cache PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
    # shellcheck disable=SC2086
    PYTHONWARNINGS=ignore timeout 300 "$PY27" "$pip_whl/pip" install -q --no-warn-script-location \
      --prefix "$SITE" $PIP_BOOTSTRAP >&2 || die "installing $PIP_BOOTSTRAP failed"
    printf '%s\n' "$REQUIREMENTS" >"$SITE/requirements.txt"
    # wsaccel compiles against the bullseye headers (Debian's sysconfig points at /usr/include).
    CFLAGS="-I$PY/usr/include/python2.7 -I$PY/usr/include" PYTHONWARNINGS=ignore \
      timeout 900 "$PY27" -m pip install -q --no-warn-script-location --prefix "$SITE" \
      -r "$SITE/requirements.txt" >&2 || die "pip install -r $SITE/requirements.txt failed"
    echo "$site_key" >"$SITE/.stamp"
  fi

  # Every shared object must resolve: the interpreter, its extension modules, the wheels'.
  local missing
  missing=$(find "$PY/usr/bin/python2.7" "$PY/usr/lib/python2.7/lib-dynload" "$SITE_PKGS" \
    -type f \( -name '*.so' -o -name python2.7 \) -print0 |
    xargs -0 -r env LD_LIBRARY_PATH="$PY_LIBS" ldd 2>/dev/null | grep -e '^/' -e 'not found' |
    grep -B1 'not found' || true)
  [[ -z "$missing" ]] || die "unresolved shared libraries (delete $CACHE to redo the setup):"$'\n'"$missing"
  "$PY27" -c 'import autobahntestsuite.wstest, wsaccel' ||
    die "autobahntestsuite does not import (delete $CACHE to redo the setup)"

  exec 9>&-
  log "setup ready in $((SECONDS - t0)) s (wstest: $WSTEST)"
}

setup

# ---------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------
GW=${TICKGATE_BIN:-target/release/tickgate}
has_echo() { [[ -x "$GW" ]] && "$GW" serve --help 2>/dev/null | grep -q -e '--diagnostic-echo'; }
if [[ -z "${TICKGATE_BIN:-}" ]] && ! has_echo; then
  log "building tickgate (release): $GW is missing or has no --diagnostic-echo"
  timeout 1800 cargo build --release --locked -p tickgate >&2 || die "cargo build --release failed"
fi
has_echo || die "$GW is missing or has no --diagnostic-echo flag"

rm -rf "$OUT"
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tickgate-autobahn.XXXXXX")
GW_LOG=$OUT/gateway.log
# wstest opens one connection per case, back to back (some 300 within seconds, all from
# 127.0.0.1): the default per-IP connection rate (100/s) would answer many upgrades with
# HTTP 429 and fail those cases with "opening handshake was never completed", so the rate
# limit is off here.
GW_ARGS=(serve --listen 127.0.0.1:0 --admin-listen off --pin-cores off --diagnostic-echo
  --max-message-bytes "$MAX_MESSAGE_BYTES" --connection-rate-per-ip 0)
log "starting: $GW ${GW_ARGS[*]}"
"$GW" "${GW_ARGS[@]}" >"$GW_LOG" 2>&1 &
GW_PID=$!

# Port 0 picks a free port; the startup line carries it.
ADDR=$(gateway_addr "$GW_PID" "$GW_LOG") || die "no gateway address; see $GW_LOG"
URL="ws://$ADDR/echo"
log "gateway up at $ADDR (pid $GW_PID)"

# ---------------------------------------------------------------------------------------
# wstest
# ---------------------------------------------------------------------------------------
# No case is excluded. The cases the suite marks informational (7.1.6, 7.13.1, 7.13.2)
# cannot fail, so they run and are counted as INFORMATIONAL. Sections 12 and 13
# (permessage-deflate) are not asked for: tickgate does not negotiate compression.
# (There are no sections 8 and 11.)
read -r -a CASE_LIST <<<"$CASES" # read does not expand the globs
"$PY27" - "$TMP/fuzzingclient.json" "$OUT" "$URL" "${CASE_LIST[@]}" <<'EOF'
import json, sys
path, outdir, url = sys.argv[1:4]
spec = {
    "outdir": outdir,
    "servers": [{"agent": "tickgate", "url": url}],
    "cases": sys.argv[4:],
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
EOF
cp "$TMP/fuzzingclient.json" "$OUT/fuzzingclient.json" # for reference; wstest reads the temp copy

log "running wstest -m fuzzingclient against $URL, cases ${CASE_LIST[*]} (at most ${RUN_TIMEOUT} s; log $OUT/wstest.log)"
T0=$SECONDS
set +e
(cd "$TMP" && timeout --signal=INT --kill-after=30 "$RUN_TIMEOUT" "$WSTEST" -m fuzzingclient -s "$TMP/fuzzingclient.json") \
  >"$OUT/wstest.log" 2>&1
RC=$?
set -e
RUN_SECS=$((SECONDS - T0))
log "wstest exited with $RC after $RUN_SECS s"

GW_ALIVE=1
kill -0 "$GW_PID" 2>/dev/null || GW_ALIVE=0
cleanup

if [[ $GW_ALIVE == 0 ]]; then
  log "the gateway died during the run; the end of $GW_LOG:"
  tail -20 "$GW_LOG" >&2
fi
if grep -q -i 'panicked' "$GW_LOG"; then
  log "the gateway log has panics:"
  grep -i -A3 'panicked' "$GW_LOG" | head -40 >&2
fi
if [[ $RC != 0 || ! -f "$OUT/index.json" ]]; then
  tail -20 "$OUT/wstest.log" >&2
  [[ $RC == 124 ]] && die "wstest did not finish within $RUN_TIMEOUT s (AUTOBAHN_TIMEOUT)"
  die "wstest failed (exit $RC) or wrote no $OUT/index.json"
fi

# ---------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------
set +e
"$PY27" - "$OUT" "$URL" "$RUN_SECS" <<'EOF'
import json, os, sys
outdir, url, secs = sys.argv[1:4]
with open(os.path.join(outdir, "index.json")) as f:
    index = json.load(f)
cases = index["tickgate"]

def key(case_id):
    return [int(p) for p in case_id.split(".")]

def counts(field, order):
    n = {}
    for c in cases.values():
        n[c[field]] = n.get(c[field], 0) + 1
    names = order + sorted(k for k in n if k not in order)
    return ", ".join("%s %d" % (k, n.get(k, 0)) for k in names if k in order or n.get(k))

print("Autobahn wstest: %d cases against %s in %s s" % (len(cases), url, secs))
print("  behavior:      " + counts("behavior", ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]))
print("  behaviorClose: " + counts("behaviorClose", ["OK", "INFORMATIONAL", "UNCLEAN", "WRONG CODE", "FAILED BY CLIENT", "FAILED"]))

def detail(case_id):
    c = cases[case_id]
    try:
        with open(os.path.join(outdir, c["reportfile"])) as f:
            r = json.load(f)
    except Exception:
        r = {}
    print("  %s: behavior %s, behaviorClose %s (close code %s)" % (case_id, c["behavior"], c["behaviorClose"], c.get("remoteCloseCode")))
    for field in ("description", "expectation", "result", "resultClose"):
        if field in r:
            print("      %-12s %s" % (field + ":", r[field]))

# NON-STRICT counts as failed: the gateway must fail fast (e.g. on the fragment that breaks UTF-8).
failed = sorted((i for i, c in cases.items() if {"FAILED", "NON-STRICT"} & {c["behavior"], c["behaviorClose"]}), key=key)
other = sorted((i for i, c in cases.items() if i not in failed and (c["behavior"] not in ("OK", "INFORMATIONAL") or c["behaviorClose"] not in ("OK", "INFORMATIONAL"))), key=key)
if other:
    print("Not failed, but not OK (%d):" % len(other))
    for i in other:
        c = cases[i]
        print("  %s: behavior %s, behaviorClose %s" % (i, c["behavior"], c["behaviorClose"]))
if failed:
    print("FAILED or NON-STRICT (%d):" % len(failed))
    for i in failed:
        detail(i)
print("report: %s" % os.path.join(outdir, "index.html"))
sys.exit(1 if failed else 0)
EOF
SUMMARY_RC=$?
set -e
[[ $GW_ALIVE == 1 ]] || exit 1
exit "$SUMMARY_RC"
