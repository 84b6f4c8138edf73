#!/usr/bin/env bash
# Subscription fan-out: Ekko's Phoenix channels + Absinthe socket against the graphql-ws + graphql Node peer
# (../shared/bench-peers/graphql-ws-fanout), back to back on this machine, for each N in $NS.
#
#   peer: graphql-ws-fanout/server.mjs + the shared client bench/ws-fanout.mjs, run as the peers' run-fanout.sh
#         does (--jwks keys/jwks.json, a minted token), on a free port; a push is its in-memory POST /push.
#   ekko: a fresh data directory with one account and $DEVICES devices (admin CLI), `ekko serve`, a password-grant
#         token, then bench/fanout/phoenix-fanout.mjs: N sockets (Phoenix V2), one `doc` subscription each to device
#         i % DEVICES; a push is an OsmAnd GET on the device gateway (ingest -> SQLite commit -> bus -> socket).
# Both clients: VmRSS of the server before subscribing and after every subscriber got a probe, then $PUSHES pushes
# round-robin over the devices at $RATE/s, push-sent -> frame-received latency of every delivery.
# Writes the results table between <!-- fanout:begin --> and <!-- fanout:end --> in bench/README.md.
#
#   bash bench/fanout.sh [path/to/ekko]
#   env: NS (default "1000 10000 50000"), DEVICES (100), PUSHES (500), RATE (pushes/s, 100), SERVERS ("peer ekko"),
#        LOAD_MAX (1.5) and LOAD_WAIT_N (10000): before every run with N >= LOAD_WAIT_N wait (polling every 30 s, at
#        most 20 min) for the 1-minute load average to drop below LOAD_MAX; README=0 to leave bench/README.md alone;
#        CLIENT_PROCS / SRC_IPS override the ekko client's process and source-address counts (default: as needed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$(realpath "${1:-target/release/ekko}")
NS=${NS:-"1000 10000 50000"}
DEVICES=${DEVICES:-100}; PUSHES=${PUSHES:-500}; RATE=${RATE:-100}
SERVERS=${SERVERS:-"peer ekko"}
LOAD_MAX=${LOAD_MAX:-1.5}; LOAD_WAIT_N=${LOAD_WAIT_N:-10000}
PEERS=$ROOT/target/bench-peers
[ -d "$PEERS" ] || cp -r "$ROOT/../shared/bench-peers" "$PEERS"
(cd "$PEERS" && { [ -d node_modules/ws ] && [ -d node_modules/graphql-ws ] || npm ci --no-audit --no-fund --silent; } && node common/gen-keys.mjs >/dev/null)

# File descriptors: one per socket on both sides. Raise the soft limit as far as the hard limit allows.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/ekko-fanout.XXXXXX)
RESULTS=$WORK/results.jsonl
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT
echo "fanout: work dir $WORK, fd limit $NOFILE, NS=\"$NS\" DEVICES=$DEVICES PUSHES=$PUSHES RATE=$RATE" >&2

wait_load() { # $1 = N
  [ "$1" -ge "$LOAD_WAIT_N" ] || return 0
  for i in $(seq 40); do
    awk -v m="$LOAD_MAX" '{ exit !($1 < m) }' /proc/loadavg && return 0
    [ "$i" -eq 40 ] && break
    echo "fanout: load $(cut -d' ' -f1-3 /proc/loadavg) >= $LOAD_MAX, waiting 30 s ($i/40)" >&2
    sleep 30
  done
  echo "fanout: load still $(cut -d' ' -f1-3 /proc/loadavg) after 20 min; running anyway" >&2
}

# record SERVER N LOAD SERVER_PID CLIENT_OUT CLIENT_ERR CLIENT_RC SERVER_LOG
record() {
  local alive=yes; kill -0 "$4" 2>/dev/null || alive=no
  python3 - "$@" "$alive" >>"$RESULTS" <<'PY'
import json, re, sys
server, n, load, pid, out, err, rc, log, alive = sys.argv[1:10]
out_t = open(out, errors="replace").read(); err_t = open(err, errors="replace").read()
log_t = open(log, errors="replace").read()
line = next((l for l in out_t.splitlines() if " fanout " in l), "")
details = next((l for l in out_t.splitlines() if l.startswith("details: ")), "")
r = {"server": server, "n": int(n), "load": load, "rc": int(rc), "line": line, "details": details[9:],
     "server_alive": alive == "yes"}
m = re.search(r"\(([-0-9.]+) KiB/sub.*p50 ([0-9.NaN]+) ms p99 ([0-9.NaN]+) ms max ([0-9.NaN]+) ms \(received (\d+)/(\d+)", line)
if m:
    r.update(rss_sub=float(m[1]), p50=float(m[2]), p99=float(m[3]), max=float(m[4]), got=int(m[5]), expect=int(m[6]))
# what went wrong, if anything: client stderr (distinct lines, counted) and server errors
lines = [l for l in err_t.splitlines() if l.strip()]
counts = {}
for l in lines:
    k = re.sub(r"\bsub \d+\b", "sub <i>", l)[:300]
    counts[k] = counts.get(k, 0) + 1
r["client_stderr"] = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
slines = [l for l in log_t.splitlines() if re.search(r"ERROR|WARN|panick|error", l)]
scounts = {}
for l in slines:
    k = re.sub(r"^\S+\s+", "", l)[:300]
    scounts[k] = scounts.get(k, 0) + 1
r["server_log"] = sorted(scounts.items(), key=lambda kv: -kv[1])[:8]
r["server_log_lines"] = len(slines)
print(json.dumps(r))
PY
  tail -n 2 "$5" >&2 || true
}

# Client process layout: one process unless the sockets exceed the fd limit (then several, each under it), and
# several source addresses when one address's ephemeral ports (ip_local_port_range) would not suffice.
read -r PLO PHI </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PHI - PLO + 1))
procs_for() { local per=$((NOFILE - 200)); echo $(( ($1 + per - 1) / per )); }
ips_for() { local per=$((PORTS - 1000)); echo $(( ($1 + per - 1) / per )); }

run_peer() { # $1 = N
  local n=$1 port load
  wait_load "$n"; load=$(cut -d' ' -f1-3 /proc/loadavg)
  port=$(free_port)
  (cd "$PEERS" && exec node graphql-ws-fanout/server.mjs --listen "127.0.0.1:$port" --jwks keys/jwks.json) \
    >"$WORK/peer-$n.log" 2>&1 & PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/stats" && break; sleep 0.1; done
  echo "fanout: graphql-ws peer, N=$n (load $load)" >&2
  local rc=0
  (cd "$PEERS" && exec timeout 900 node bench/ws-fanout.mjs --name graphql-ws --pid "$PID" \
    --url "ws://127.0.0.1:$port/services/ekko/v2/graphql" --push "http://127.0.0.1:$port/push" \
    --subs "$n" --devices "$DEVICES" --pushes "$PUSHES" --rate "$RATE") >"$WORK/peer-$n.out" 2>"$WORK/peer-$n.err" || rc=$?
  record peer "$n" "$load" "$PID" "$WORK/peer-$n.out" "$WORK/peer-$n.err" "$rc" "$WORK/peer-$n.log"
  stop
}

# One account and $DEVICES devices, created once with the admin CLI; each ekko run starts from a copy.
EMAIL=fanout@example.com; PASSWORD="fanout password 123"
IMEIS=$WORK/imeis.txt
python3 - "$DEVICES" >"$IMEIS" <<'PY'
import sys
def luhn(body):
    s = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9: d -= 9
        s += d
    return str((10 - s % 10) % 10)
for d in range(int(sys.argv[1])):
    body = "3598810" + f"{d:07d}"
    print(body + luhn(body))
PY
TEMPLATE=$WORK/template
if [[ " $SERVERS " == *" ekko "* ]]; then
  mkdir -p "$TEMPLATE"
  EKKO_PASSWORD="$PASSWORD" "$BIN" account create --data-dir "$TEMPLATE" --email "$EMAIL" --full-name "Fanout Bench" >/dev/null
  while read -r imei; do "$BIN" device create --data-dir "$TEMPLATE" --imei "$imei" --account "$EMAIL" >/dev/null; done <"$IMEIS"
fi

run_ekko() { # $1 = N
  local n=$1 port oport load data token procs ips
  wait_load "$n"; load=$(cut -d' ' -f1-3 /proc/loadavg)
  data=$WORK/data-$n; rm -rf "$data"; cp -r "$TEMPLATE" "$data"
  port=$(free_port); oport=$(free_port)
  EKKO_LOG=warn "$BIN" serve --data-dir "$data" --listen "127.0.0.1:$port" --osmand-listen "127.0.0.1:$oport" \
    --teltonika-listen 127.0.0.1:0 >"$WORK/ekko-$n.log" 2>&1 & PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  token=$(curl -s "http://127.0.0.1:$port/oauth/token" -d grant_type=password --data-urlencode "username=$EMAIL" \
    --data-urlencode "password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  procs=${CLIENT_PROCS:-$(procs_for "$n")}; ips=${SRC_IPS:-$(ips_for "$n")}
  echo "fanout: ekko, N=$n (load $load; client processes $procs, source addresses $ips)" >&2
  local rc=0
  FANOUT_TOKEN=$token timeout 900 node "$ROOT/bench/fanout/phoenix-fanout.mjs" --name ekko --pid "$PID" --peers "$PEERS" \
    --url "ws://127.0.0.1:$port/services/ekko/v2/socket/websocket" --push "http://127.0.0.1:$oport/" --imeis "$IMEIS" \
    --subs "$n" --devices "$DEVICES" --pushes "$PUSHES" --rate "$RATE" --procs "$procs" --src-ips "$ips" \
    >"$WORK/ekko-$n.out" 2>"$WORK/ekko-$n.err" || rc=$?
  record ekko "$n" "$load" "$PID" "$WORK/ekko-$n.out" "$WORK/ekko-$n.err" "$rc" "$WORK/ekko-$n.log"
  stop
}

for n in $NS; do
  for s in $SERVERS; do "run_$s" "$n"; done
done

# Results table (and the raw lines) between the markers in bench/README.md.
python3 - "$RESULTS" "$ROOT/bench/README.md" "${README:-1}" "$NOFILE" "$DEVICES" "$PUSHES" "$RATE" "$PORTS" <<'PY'
import json, re, subprocess, sys, datetime, os
res_f, readme, write, nofile, devices, pushes, rate, ports = sys.argv[1:9]
rows = [json.loads(l) for l in open(res_f) if l.strip()]
def fmt(x, nd=2): return "—" if x is None else f"{x:.{nd}f}"
def ratio(a, b): return "—" if a is None or b in (None, 0) else f"{a / b:.2f}"
by = {(r["n"], r["server"]): r for r in rows}
name = {"peer": "graphql-ws (Node)", "ekko": "ekko (Phoenix V2)"}
out = []
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
out.append(f"Subscription fan-out, `bash bench/fanout.sh target/release/ekko` ({now}; {os.cpu_count()} cores, {cpu}; "
           f"node {node}; DEVICES={devices}, PUSHES={pushes}, RATE={rate}/s; fd limit {nofile} per process). "
           "Each N: the peer, then ekko, back to back; servers and clients share the cores.")
out.append("")
out.append("| N | devices | server | RSS/sub KiB | p50 ms | p99 ms | max ms | delivered/expected | load (1/5/15 min) | ekko/peer RSS/sub | ekko/peer p50 | ekko/peer p99 |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in sorted({r["n"] for r in rows}):
    p = by.get((n, "peer"))
    for s in ("peer", "ekko"):
        r = by.get((n, s))
        if not r: continue
        if "p50" in r:
            delivered = f"{r['got']}/{r['expect']}"
            cells = [fmt(r["rss_sub"], 1), fmt(r["p50"]), fmt(r["p99"]), fmt(r["max"]), delivered]
        else:
            cells = ["—", "—", "—", "—", "FAILED (see below)"]
        rat = ["", "", ""]
        if s == "ekko":
            pr = p if p and "p50" in p else None
            rat = [ratio(r.get("rss_sub"), pr and pr["rss_sub"]), ratio(r.get("p50"), pr and pr["p50"]), ratio(r.get("p99"), pr and pr["p99"])]
        out.append(f"| {n} | {devices} | {name[s]} | " + " | ".join(cells) + f" | {r['load']} | " + " | ".join(rat) + " |")
out.append("")
out.append("Raw summary lines (and what went wrong, when something did):")
out.append("")
out.append("```")
for r in rows:
    out.append(r["line"] or f"{r['server']} fanout {r['n']}: no summary line (client exit {r['rc']})")
    bad = r["rc"] != 0 or not r["line"] or "FAILED" in r["line"]
    if r["server"] == "ekko" and r["details"]: out.append("  " + r["details"][:1500])
    if bad:
        for k, c in r["client_stderr"]: out.append(f"  client stderr x{c}: {k}")
    if r["server_log"]:
        out.append(f"  server log, {r['server_log_lines']} warning/error lines; most frequent:")
        for k, c in r["server_log"][:4]: out.append(f"    x{c}: {k}")
    if not r["server_alive"]: out.append("  the server process had exited by the end of the run")
out.append("```")
block = "\n".join(out)
print(block)
if write == "1":
    text = open(readme).read() if os.path.exists(readme) else "# Benchmarks\n"
    begin, end = "<!-- fanout:begin -->", "<!-- fanout:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + block + "\n" + text[text.index(end):]
    else:
        text = text.rstrip("\n") + "\n\n## Subscription fan-out (Phoenix vs graphql-ws)\n\n" + begin + "\n" + block + "\n" + end + "\n"
    open(readme, "w").write(text)
PY
