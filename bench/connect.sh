#!/usr/bin/env bash
# Connect's token endpoint against node oidc-provider (../shared/bench-peers), back to back on
# this machine, with the same load tool (autocannon via the peers' bench/http-bench.mjs), the
# same client authentication (client_secret_basic) and the same grants:
#   refresh_token (rotating, reuse detection on both), client_credentials;
#   password: oidc-provider has none of its own, so bench/peers/oidc-provider-password.mjs (the same
#   peer configuration plus a password grant registered with registerGrantType) verifies an
#   argon2id hash with Ekko's parameters (m=19456 KiB, t=2, p=1) and issues an RS256 JWT access
#   token and a rotating refresh token; both sides are driven by bench/peers/password-bench.mjs.
# bench/peers/ is copied to target/bench-peers/password/ and `npm ci` installs its one extra
# dependency (@node-rs/argon2) there; oidc-provider and autocannon resolve from the shared peers'
# target/bench-peers/node_modules. Appends a results table to bench/README.md.
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
PW=$PEERS/password
mkdir -p "$PW" && cp "$ROOT"/bench/peers/*.mjs "$PW/"
if ! cmp -s "$ROOT/bench/peers/package-lock.json" "$PW/package-lock.json" || [ ! -d "$PW/node_modules/@node-rs/argon2" ]; then
  cp "$ROOT/bench/peers/package.json" "$ROOT/bench/peers/package-lock.json" "$PW/"
  (cd "$PW" && npm ci --no-audit --no-fund --silent)
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OUT=$(mktemp); PID=; DATA=$(mktemp -d)
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap 'stop; rm -rf "$DATA" "$OUT"' EXIT
bench() { node "$PEERS/bench/http-bench.mjs" --duration "$DUR" --connections "$CONNS" "$@" | tee -a "$OUT"; }
# The password grant: one fixed request (the account's username and password), same driver for both.
bench_password() { (cd "$PW" && BENCH_PASSWORD="$PASSWORD" node password-bench.mjs --duration "$DUR" --connections "$CONNS" "$@") | tee -a "$OUT"; }

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
bench_password --name ekko --url "$BASE/oauth/token" --basic "$ID:$SECRET" --username "$EMAIL"
stop

# --- oidc-provider ---
OPORT=$(free_port)
(cd "$PEERS" && exec node oidc-provider/server.mjs --listen "127.0.0.1:$OPORT" >"$DATA/oidc.log" 2>&1) & PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OPORT/" && break; sleep 0.1; done
(cd "$PEERS" && node oidc-provider/get-refresh-tokens.mjs --issuer "http://127.0.0.1:$OPORT" --n $((CONNS * 2)) --out "$DATA/ort.json")
bench --name oidc-provider --scenario refresh --url "http://127.0.0.1:$OPORT/token" --basic bench:bench-secret --tokens "$DATA/ort.json"
bench --name oidc-provider --scenario client-credentials --url "http://127.0.0.1:$OPORT/token" --basic bench:bench-secret --scope user
stop
# The same peer plus the password grant (bench/peers/oidc-provider-password.mjs), same account.
OPORT=$(free_port)
(cd "$PW" && BENCH_PASSWORD="$PASSWORD" exec node oidc-provider-password.mjs --listen "127.0.0.1:$OPORT" --username "$EMAIL" >"$DATA/oidc-password.log" 2>&1) & PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OPORT/" && break; sleep 0.1; done
bench_password --name oidc-provider --url "http://127.0.0.1:$OPORT/token" --basic bench:bench-secret --username "$EMAIL"
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
  for g in refresh client-credentials password; do
    e=$(rate ekko $g); o=$(rate oidc-provider $g)
    echo "| $g | $e | $o | $(python3 -c "print(f'{$e/$o:.2f}')") | $(p99 ekko $g) | $(p99 oidc-provider $g) |"
  done
} | tee -a "$ROOT/bench/README.md"
