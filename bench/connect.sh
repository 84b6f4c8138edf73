#!/usr/bin/env bash
# Connect's token endpoint against node oidc-provider (../shared/bench-peers), back to back on
# this machine, with the same load tool (autocannon via the peers' bench/http-bench.mjs), the
# same client authentication (client_secret_basic) and the same grants:
#   refresh_token (rotating, reuse detection on both), client_credentials;
#   password (Ekko only: oidc-provider has no password grant; argon2id makes it CPU-bound).
# Appends a results table to bench/README.md.
#
#   bash bench/connect.sh [target/release/ekko]      # env: DUR (s, default 10), CONNS (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$(realpath "${1:-target/release/ekko}")
DUR=${DUR:-10}; CONNS=${CONNS:-20}
PEERS=$ROOT/target/bench-peers
[ -d "$PEERS" ] || cp -r "$ROOT/../shared/bench-peers" "$PEERS"
(cd "$PEERS" && { [ -d node_modules/autocannon ] || npm ci --no-audit --no-fund --silent; } && node common/gen-keys.mjs >/dev/null)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OUT=$(mktemp); PID=; DATA=$(mktemp -d)
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap 'stop; rm -rf "$DATA" "$OUT"' EXIT
bench() { node "$PEERS/bench/http-bench.mjs" --duration "$DUR" --connections "$CONNS" "$@" | tee -a "$OUT"; }

# --- ekko ---
EMAIL=bench@example.com; PASSWORD="bench password 123"
EKKO_PASSWORD="$PASSWORD" "$BIN" account create --data-dir "$DATA" --email "$EMAIL" --full-name Bench >/dev/null
PORT=$(free_port)
EKKO_LOG=warn EKKO_TELTONIKA_LISTEN=127.0.0.1:0 "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
  --osmand-listen 127.0.0.1:0 --signin-limit-per-ip 100000000 --signin-limit-per-account 100000000 2>"$DATA/log" & PID=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -s "$BASE/oauth/token" -d grant_type=password --data-urlencode "username=$EMAIL" --data-urlencode "password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
APP=$(curl -s "$BASE/oauth/applications" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name":"bench","redirect_uris":["http://127.0.0.1/cb"]}')
ID=$(echo "$APP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
SECRET=$(echo "$APP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
python3 - "$BASE" "$ID" "$SECRET" "$EMAIL" "$PASSWORD" $((CONNS * 2)) > "$DATA/rt.json" <<'PY'
import base64, json, sys, urllib.parse, urllib.request
base, cid, sec, email, pw, n = sys.argv[1:7]
auth = "Basic " + base64.b64encode(f"{cid}:{sec}".encode()).decode()
out = []
for _ in range(int(n)):
    body = urllib.parse.urlencode({"grant_type": "password", "username": email, "password": pw}).encode()
    req = urllib.request.Request(f"{base}/oauth/token", data=body, headers={"Authorization": auth})
    out.append(json.load(urllib.request.urlopen(req))["refresh_token"])
print(json.dumps(out))
PY
bench --name ekko --scenario refresh --url "$BASE/oauth/token" --basic "$ID:$SECRET" --tokens "$DATA/rt.json"
bench --name ekko --scenario client-credentials --url "$BASE/oauth/token" --basic "$ID:$SECRET"
# Password grant: the same autocannon settings, one fixed request.
(cd "$PEERS" && node --input-type=module -e "
import autocannon from 'autocannon';
const body = new URLSearchParams({grant_type:'password', username:'$EMAIL', password:'$PASSWORD'}).toString();
const opts = {url:'$BASE/oauth/token', method:'POST', connections:$CONNS, pipelining:1, body,
  headers:{'content-type':'application/x-www-form-urlencoded', authorization:'Basic ' + Buffer.from('$ID:$SECRET').toString('base64')}};
await autocannon({...opts, duration:2});
const r = await autocannon({...opts, duration:$DUR});
console.log('ekko password: ' + Math.round(r.requests.average) + ' req/s p50 ' + r.latency.p50 + ' ms p99 ' + r.latency.p99 + ' ms (2xx ' + r['2xx'] + ', non2xx ' + r.non2xx + '; $CONNS conns, $DUR s)');
") | tee -a "$OUT"
stop

# --- oidc-provider ---
OPORT=$(free_port)
(cd "$PEERS" && node oidc-provider/server.mjs --listen "127.0.0.1:$OPORT" >"$DATA/oidc.log" 2>&1) & PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OPORT/" && break; sleep 0.1; done
(cd "$PEERS" && node oidc-provider/get-refresh-tokens.mjs --issuer "http://127.0.0.1:$OPORT" --n $((CONNS * 2)) --out "$DATA/ort.json")
bench --name oidc-provider --scenario refresh --url "http://127.0.0.1:$OPORT/token" --basic bench:bench-secret --tokens "$DATA/ort.json"
bench --name oidc-provider --scenario client-credentials --url "http://127.0.0.1:$OPORT/token" --basic bench:bench-secret --scope user
stop

[ -f "$ROOT/bench/README.md" ] || printf '# Benchmarks\n\nResults tables written by the bench scripts in this directory (ratios from back-to-back runs\non the same machine; never compare absolute numbers across machines).\n' > "$ROOT/bench/README.md"
rate() { grep "^$1 $2:" "$OUT" | sed -E 's/.*: ([0-9]+) req\/s.*/\1/'; }
p99() { grep "^$1 $2:" "$OUT" | sed -E 's/.*p99 ([0-9.]+) ms.*/\1/'; }
{
  echo
  echo "### Connect token endpoint vs node oidc-provider ($(date -u +%Y-%m-%d), $(nproc) cores, $CONNS connections, $DUR s, autocannon)"
  echo
  echo "| grant | ekko req/s | oidc-provider req/s | ratio ekko/peer | ekko p99 ms | peer p99 ms |"
  echo "|---|---|---|---|---|---|"
  for g in refresh client-credentials; do
    e=$(rate ekko $g); o=$(rate oidc-provider $g)
    echo "| $g | $e | $o | $(python3 -c "print(f'{$e/$o:.2f}')") | $(p99 ekko $g) | $(p99 oidc-provider $g) |"
  done
  echo "| password | $(rate ekko password) | — (no password grant) | — | $(p99 ekko password) | — |"
} | tee -a "$ROOT/bench/README.md"
