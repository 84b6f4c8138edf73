#!/usr/bin/env bash
# Client compatibility tests for Ekko Connect, against the built binary:
#   openid-client (npm): discovery, code + PKCE with ID-token validation, refresh
#   authlib (Python) OAuth2Session: password grant and refresh
#   headless Chromium (Debian `chromium`, driven by playwright-core): the code + PKCE flow
#     through the sign-in and consent pages, JavaScript disabled
# Prints PASS/FAIL lines and "oauth-clients: N passed, N failed".
#
#   bash tests/oauth-clients/run.sh target/release/ekko
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-target/release/ekko}")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium"; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd "$HERE" && { [ -d node_modules/openid-client ] || npm ci --no-audit --no-fund --silent; })
VENV=${EKKO_OAUTH_VENV:-$HERE/.venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import authlib, requests' 2>/dev/null; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi

DATA=$(mktemp -d)
PORT=$(free_port)
export EKKO_BASE="http://127.0.0.1:$PORT" EMAIL="oauth.clients@example.com" PASSWORD="client compat password"
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT
EKKO_PASSWORD="$PASSWORD" "$BIN" account create --data-dir "$DATA" --email "$EMAIL" --full-name "OAuth Clients" >/dev/null
EKKO_TELTONIKA_LISTEN=127.0.0.1:0 EKKO_LOG=warn "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --osmand-listen 127.0.0.1:0 2>"$DATA/server.log" &
SERVER=$!
for _ in $(seq 100); do curl -sf "$EKKO_BASE/healthz" >/dev/null && break; sleep 0.1; done

TOKEN=$(curl -s "$EKKO_BASE/oauth/token" -d grant_type=password --data-urlencode "username=$EMAIL" --data-urlencode "password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
CB1=$(free_port); CB2=$(free_port)
APP=$(curl -s "$EKKO_BASE/oauth/applications" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"compat\",\"redirect_uris\":[\"http://127.0.0.1:$CB1/callback\",\"http://127.0.0.1:$CB2/callback\"],\"confidential\":true}")
export CLIENT_ID=$(echo "$APP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
export CLIENT_SECRET=$(echo "$APP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

OUT=$(mktemp)
REDIRECT_URI="http://127.0.0.1:$CB1/callback" node "$HERE/openid_client.mjs" 2>&1 | tee -a "$OUT"
"$VENV/bin/python" "$HERE/authlib_client.py" 2>&1 | tee -a "$OUT"
REDIRECT_URI="http://127.0.0.1:$CB2/callback" timeout 120 node "$HERE/chromium.mjs" 2>&1 | tee -a "$OUT"
P=$(grep -c '^PASS' "$OUT"); F=$(grep -c '^FAIL' "$OUT")
[ "$P" -gt 0 ] || F=$((F + 1))
rm -f "$OUT"
echo "oauth-clients: $P passed, $F failed"
[ "$F" -eq 0 ]
