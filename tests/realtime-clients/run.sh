#!/usr/bin/env bash
# Real-time client compatibility tests for Ekko, against the built binary. Each client is a
# real library used unmodified, subscribes deviceNotifications for one device and must receive
# all four kinds (Track, Presence, Message, Poke; Presence both connect and disconnect) within
# RT_TIMEOUT seconds (default 30):
#   gql PhoenixChannelWebsocketsTransport (Python)      /services/ekko/v2/socket/websocket
#   phoenix (serializer V2) + @absinthe/socket (Node)   /services/ekko/v2/socket
#   graphql-ws createClient (graphql-transport-ws)      /services/ekko/v2/graphql
#   subscriptions-transport-ws (legacy graphql-ws)      /services/ekko/v2/graphql
#   graphql-sse createClient (distinct connections)     /services/ekko/v2/graphql
# The events come from a driver in each client (lib.mjs, or gql_phoenix.py itself): OsmAnd
# records (Track, and Presence connect after a silence), the device_message_send and
# poke_send mutations, and silences longer than the server's --presence-timeout 2 (Presence
# disconnect). Only 127.0.0.1 is contacted. Prints PASS/FAIL lines and
# "realtime-clients: N passed, N failed"; exits non-zero on any failure.
#
#   bash tests/realtime-clients/run.sh target/release/ekko
#   env: EKKO_RT_VENV   Python venv to (re)use (default: tests/realtime-clients/.venv)
#        RT_TIMEOUT     seconds each client may take to see all four kinds (default 30)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-target/release/ekko}
[ -x "$BIN" ] || { echo "run.sh: no ekko binary at $BIN (cargo build --release first)"; echo "realtime-clients: 0 passed, 1 failed"; exit 2; }
BIN=$(realpath "$BIN")

(cd "$HERE" && { [ -d node_modules/@absinthe/socket ] && [ -d node_modules/graphql-sse ] || timeout 300 npm ci --no-audit --no-fund --silent; })
VENV=${EKKO_RT_VENV:-$HERE/.venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import gql.transport.phoenix_channel_websockets' 2>/dev/null; then
  timeout 120 python3 -m venv "$VENV" && timeout 600 "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi

DATA=$(mktemp -d); OUT=$(mktemp); SERVER=
cleanup() {
  if [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2>/dev/null
    wait "$SERVER" 2>/dev/null
  fi
  rm -rf "$DATA" "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail_setup() {
  echo "FAIL setup: $*"; [ -f "$DATA/server.log" ] && tail -n 30 "$DATA/server.log"
  echo "realtime-clients: 0 passed, 1 failed"; exit 1
}

# Both ports from one process holding both sockets, so they differ.
read -r PORT OPORT < <(python3 -c 'import socket;a,b=socket.socket(),socket.socket();a.bind(("127.0.0.1",0));b.bind(("127.0.0.1",0));print(a.getsockname()[1],b.getsockname()[1])')
EMAIL=realtime.clients@example.com; PASSWORD='realtime clients password'; IMEI=359881234567899
export EKKO_BASE="http://127.0.0.1:$PORT" EKKO_OSMAND="http://127.0.0.1:$OPORT" EKKO_IMEI="$IMEI"

EKKO_PASSWORD="$PASSWORD" timeout 60 "$BIN" account create --data-dir "$DATA" --email "$EMAIL" --full-name "Realtime Clients" >"$DATA/setup.log" 2>&1 \
  || fail_setup "ekko account create: $(cat "$DATA/setup.log")"
timeout 60 "$BIN" device create --data-dir "$DATA" --imei "$IMEI" --account "$EMAIL" >>"$DATA/setup.log" 2>&1 \
  || fail_setup "ekko device create: $(cat "$DATA/setup.log")"
NO_COLOR=1 EKKO_LOG=warn "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --osmand-listen "127.0.0.1:$OPORT" \
  --teltonika-listen 127.0.0.1:0 --presence-timeout 2 >"$DATA/server.log" 2>&1 &
SERVER=$!
ready=
for _ in $(seq 1 150); do
  curl -fsS --max-time 1 "$EKKO_BASE/healthz" >/dev/null 2>&1 && { ready=1; break; }
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || fail_setup "server not healthy within 15 s"

EKKO_TOKEN=$(curl -sS --max-time 10 "$EKKO_BASE/oauth/token" -d grant_type=password --data-urlencode "username=$EMAIL" \
  --data-urlencode "password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null)
[ -n "$EKKO_TOKEN" ] || fail_setup "no access token from the password grant"
export EKKO_TOKEN

# client NAME CMD...: one client, bounded; a client that dies without its own PASS/FAIL line
# (crash, time limit) gets a FAIL line here.
client() {
  local name=$1 log="$DATA/client.log" rc=0; shift
  (cd "$HERE" && timeout -k 5 90 "$@") >"$log" 2>&1 || rc=$?
  if grep -q '^\(PASS\|FAIL\) ' "$log"; then
    grep '^\(PASS\|FAIL\) ' "$log" | tee -a "$OUT"
    [ $rc -eq 0 ] || grep -v '^\(PASS\|FAIL\) ' "$log" | tail -n 20 | sed 's/^/    | /'
  else
    echo "FAIL $name (exit status $rc, no verdict)" | tee -a "$OUT"
    tail -n 20 "$log" | sed 's/^/    | /'
  fi
}
client "gql PhoenixChannelWebsocketsTransport" "$VENV/bin/python" gql_phoenix.py
client "phoenix (V2) + @absinthe/socket" node phoenix_absinthe.mjs
client "graphql-ws createClient" node graphql_ws.mjs
client "subscriptions-transport-ws SubscriptionClient" node subscriptions_transport_ws.mjs
client "graphql-sse createClient" node graphql_sse.mjs

P=$(grep -c '^PASS' "$OUT"); F=$(grep -c '^FAIL' "$OUT")
[ $((P + F)) -gt 0 ] || F=1
if [ "$F" -ne 0 ]; then echo "--- server log (tail) ---"; tail -n 30 "$DATA/server.log"; fi
echo "realtime-clients: $P passed, $F failed"
[ "$F" -eq 0 ]
