#!/usr/bin/env bash
# The README's curl examples, as a script that fails on the first unexpected answer.
#
#   env: EKKO_BASE      API base URL          (default http://127.0.0.1:4000)
#        EKKO_OSMAND    OsmAnd listener URL   (default http://127.0.0.1:5055)
#        EKKO_EMAIL / EKKO_PASSWORD / EKKO_IMEI  (defaults: the README's account and device)
set -euo pipefail
BASE=${EKKO_BASE:-http://127.0.0.1:4000}
OSMAND=${EKKO_OSMAND:-http://127.0.0.1:5055}
EMAIL=${EKKO_EMAIL:-john.doe@example.com}
PASSWORD=${EKKO_PASSWORD:-123456789}
IMEI=${EKKO_IMEI:-359881234567899}

fail() { echo "curl.sh: FAIL: $*" >&2; exit 1; }
# json EXPR: evaluate a Python expression over the JSON document `d` read from stdin.
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); v='"$1"'; print(v if v is not None else "")'; }
# post URL BODY [curl args...]: POST a JSON body; prints the body, then the status on a last line.
post() {
  local url=$1 body=$2; shift 2
  curl -sS --max-time 10 "$url" -H 'Content-Type: application/json' "$@" \
    --data-raw "$body" -w '\n%{http_code}'
}
split() { RESP=$(printf '%s\n' "$1" | sed '$d'); CODE=$(printf '%s\n' "$1" | tail -n 1); }
creds=$(python3 -c 'import json,sys; print(json.dumps({"grant_type": "password", "username": sys.argv[1], "password": sys.argv[2]}))' "$EMAIL" "$PASSWORD")

# 1. Get a token.
split "$(post "$BASE/oauth/token" "$creds" --header 'Accept: application/json')"
echo "token: HTTP $CODE $RESP"
[ "$CODE" = 200 ] || fail "token: expected HTTP 200, got $CODE"
ACCESS=$(printf '%s' "$RESP" | json 'd.get("access_token")') || fail "token: not JSON"
REFRESH=$(printf '%s' "$RESP" | json 'd.get("refresh_token")')
[ -n "$ACCESS" ] || fail "token: no access_token"
[ -n "$REFRESH" ] || fail "token: no refresh_token"

# 2. Refresh it.
split "$(post "$BASE/oauth/token" "{\"grant_type\": \"refresh_token\", \"refresh_token\": \"$REFRESH\"}")"
echo "refresh: HTTP $CODE $RESP"
[ "$CODE" = 200 ] || fail "refresh: expected HTTP 200, got $CODE"
NEW=$(printf '%s' "$RESP" | json 'd.get("access_token")') || fail "refresh: not JSON"
[ -n "$NEW" ] || fail "refresh: no access_token"

# 3. Query and mutate, with a fresh token.
TOKEN=$(curl -sS --max-time 10 "$BASE/oauth/token" -H 'Content-Type: application/json' \
  -d "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') \
  || fail "token for the query: no access_token"
gql() { post "$BASE/services/ekko/v2/graphql" "$1" -H "Authorization: Bearer $TOKEN"; }
split "$(gql '{"query": "{ account(id: \"me\") { full_name email } }"}')"
echo "query: HTTP $CODE $RESP"
[ "$CODE" = 200 ] || fail "query: expected HTTP 200, got $CODE"
GOT=$(printf '%s' "$RESP" | json '(d.get("data") or {}).get("account", {}).get("email")') || fail "query: not JSON"
[ "$GOT" = "$EMAIL" ] || fail "query: expected email $EMAIL, got '$GOT'"
OLD_NAME=$(printf '%s' "$RESP" | json 'd["data"]["account"]["full_name"]')

rename() {
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"query": "mutation($n: String!) { account_update(full_name: $n) { full_name } }", "variables": {"n": sys.argv[1]}}))' "$1")
  split "$(gql "$body")"
  echo "mutation: HTTP $CODE $RESP"
  [ "$CODE" = 200 ] || fail "mutation: expected HTTP 200, got $CODE"
  GOT=$(printf '%s' "$RESP" | json '(d.get("data") or {}).get("account_update", {}).get("full_name")') || fail "mutation: not JSON"
  [ "$GOT" = "$1" ] || fail "mutation: expected full_name '$1', got '$GOT'"
}
# The README's mutation, verbatim...
split "$(gql '{"query": "mutation { account_update(full_name: \"My new name\") { full_name } }"}')"
echo "mutation: HTTP $CODE $RESP"
[ "$CODE" = 200 ] || fail "mutation: expected HTTP 200, got $CODE"
GOT=$(printf '%s' "$RESP" | json '(d.get("data") or {}).get("account_update", {}).get("full_name")') || fail "mutation: not JSON"
[ "$GOT" = "My new name" ] || fail "mutation: expected full_name 'My new name', got '$GOT'"
# ...then put the name back (a variable, so any name round-trips).
rename "$OLD_NAME"

# 4. Send a position as a device would.
CODE=$(curl -sS --max-time 10 "$OSMAND/?id=$IMEI&lat=48.85837&lon=2.294481&timestamp=$(date +%s)&speed=21.6&bearing=90&altitude=35&batt=80" -o /dev/null -w '%{http_code}') || CODE=000
echo "osmand: HTTP $CODE"
[ "$CODE" = 200 ] || fail "osmand: expected HTTP 200, got $CODE"
echo "curl.sh: all steps passed"
