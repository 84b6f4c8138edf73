#!/usr/bin/env bash
# Runs every example in examples/ against a live server, as the README promises.
# Builds nothing: give it the path of a built `ekko` binary. It makes a temp data dir,
# creates the README's account and device with the admin CLI, starts `ekko serve` on free
# loopback ports, runs each example (pushing OsmAnd positions in the background while a
# subscription listens), prints one PASS/FAIL line per example and a closing
# 'examples: N passed, N failed' line, stops the server and exits non-zero on any failure.
#
#   usage: examples/run.sh [path/to/ekko]     (default: target/release/ekko)
#   env:   EXAMPLES_VENV     Python venv to (re)use (default: target/examples-venv)
#          EXAMPLES_VERBOSE  1: print every example's output, not only a failing one's
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${1:-$ROOT/target/release/ekko}
[ -x "$BIN" ] || { echo "run.sh: no ekko binary at $BIN (cargo build --release first)"; exit 2; }
BIN=$(realpath "$BIN")
VENV=${EXAMPLES_VENV:-$ROOT/target/examples-venv}
PY_DEPS=("gql[requests,websockets]==4.4.0" websockets requests)

EMAIL=john.doe@example.com; PASSWORD='123456789'; NAME='John Doe'; IMEI=359881234567899
WORK=$(mktemp -d); PID=; PUSHER=
cleanup() {
  stop_pusher
  if [ -n "$PID" ] && kill "$PID" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then echo "note: server still running 5 s after SIGTERM; sent SIGKILL"; kill -KILL "$PID" 2>/dev/null; fi
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Python venv: created once, (re)installed when the dependency list changes.
STAMP="$VENV/.examples-deps"
if [ "$(cat "$STAMP" 2>/dev/null)" != "${PY_DEPS[*]}" ]; then
  [ -x "$VENV/bin/python" ] || timeout 120 python3 -m venv "$VENV"
  timeout 600 "$VENV/bin/pip" install -q "${PY_DEPS[@]}"
  echo "${PY_DEPS[*]}" >"$STAMP"
fi
PY=$VENV/bin/python

# Both ports from one process, holding both sockets, so they cannot be the same port.
read -r HTTP_PORT OSMAND_PORT < <("$PY" -c 'import socket;a,b=socket.socket(),socket.socket();a.bind(("127.0.0.1",0));b.bind(("127.0.0.1",0));print(a.getsockname()[1],b.getsockname()[1]);a.close();b.close()')
export EKKO_BASE="http://127.0.0.1:$HTTP_PORT" EKKO_OSMAND="http://127.0.0.1:$OSMAND_PORT"
export EKKO_EMAIL="$EMAIL" EKKO_PASSWORD="$PASSWORD" EKKO_IMEI="$IMEI"

setup() {
  timeout 60 "$BIN" "$@" >>"$WORK/setup.log" 2>&1 && return
  echo "FAIL setup: ekko $1 $2 exited with status $? (nothing else can run):"; cat "$WORK/setup.log"
  echo "examples: 0 passed, 1 failed"; exit 1
}
setup account create --data-dir "$WORK/data" --email "$EMAIL" --password "$PASSWORD" --full-name "$NAME"
setup device create --data-dir "$WORK/data" --imei "$IMEI" --account "$EMAIL"
NO_COLOR=1 "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$HTTP_PORT" --osmand-listen "127.0.0.1:$OSMAND_PORT" --teltonika-listen 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
PID=$!
ready=
for _ in $(seq 1 150); do
  curl -fsS --max-time 1 "$EKKO_BASE/healthz" >/dev/null 2>&1 && { ready=1; break; }
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "FAIL setup: server not healthy within 15 s:"; tail -n 40 "$WORK/server.log"
  echo "examples: 0 passed, 1 failed"; exit 1
fi

# Positions pushed to the OsmAnd listener every 0.5 s (at most 60 s) while a subscription listens.
start_pusher() {
  (
    for i in $(seq 1 120); do
      curl -sS --max-time 2 -o /dev/null \
        "$EKKO_OSMAND/?id=$IMEI&lat=48.858$((10 + i % 90))&lon=2.294481&timestamp=$(date +%s%3N)&speed=21.6&bearing=90&altitude=35&batt=80" \
        >/dev/null 2>&1 || true
      sleep 0.5
    done
  ) &
  PUSHER=$!
}
stop_pusher() {
  if [ -n "$PUSHER" ]; then kill "$PUSHER" 2>/dev/null || true; wait "$PUSHER" 2>/dev/null || true; PUSHER=; fi
}

PASSED=0; FAILED=0
# run NAME PUSH SECONDS CMD...: run one example with a time limit; PUSH=1 feeds positions meanwhile.
run() {
  local name=$1 push=$2 secs=$3; shift 3
  local log="$WORK/example.$((PASSED + FAILED)).log" rc=0
  [ "$push" = 1 ] && start_pusher
  timeout -k 5 "$secs" "$@" >"$log" 2>&1 || rc=$?
  stop_pusher
  if [ $rc -eq 0 ]; then
    echo "PASS $name"; PASSED=$((PASSED + 1))
    if [ "${EXAMPLES_VERBOSE:-}" = 1 ]; then sed 's/^/    | /' "$log"; fi
  else
    if [ $rc -eq 124 ]; then echo "FAIL $name (timed out after ${secs} s)"; else echo "FAIL $name (exit status $rc)"; fi
    FAILED=$((FAILED + 1))
    sed 's/^/    | /' "$log" | tail -n 30
  fi
}

run curl.sh 0 60 bash "$HERE/curl.sh"

MUNIC_AUTH="Bearer $(curl -sS --max-time 10 "$EKKO_BASE/oauth/token" -H 'Content-Type: application/json' \
  -d "{\"grant_type\":\"password\",\"username\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" \
  | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
export MUNIC_AUTH
run python/query.py 0 60 "$PY" "$HERE/python/query.py"
run "python/subscribe_gql.py --max 1" 1 45 "$PY" "$HERE/python/subscribe_gql.py" --max 1
run "python/getting_started_ws.py --max 1" 1 45 "$PY" "$HERE/python/getting_started_ws.py" --max 1

if [ ! -d "$HERE/js/node_modules" ]; then
  (cd "$HERE/js" && timeout 300 npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1) \
    || { echo "note: npm ci failed:"; tail -n 20 "$WORK/npm.log"; }
fi
run js/subscribe.mjs 1 30 node "$HERE/js/subscribe.mjs"

if [ "$FAILED" -ne 0 ]; then echo "--- server log (tail) ---"; tail -n 40 "$WORK/server.log"; fi
echo "examples: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
