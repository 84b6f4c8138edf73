# gql's PhoenixChannelWebsocketsTransport, unmodified, at /services/ekko/v2/socket/websocket
# with an Authorization header. The driver (plain urllib, in a thread) starts once the
# transport has registered the subscription (its `subscriptions` map holds the id from the
# reply), then produces Track, Presence, Message and Poke until all four arrived or the timeout.
#   env: see lib.mjs (EKKO_BASE, EKKO_OSMAND, EKKO_TOKEN, EKKO_IMEI, RT_TIMEOUT, RT_SILENCE)
import asyncio
import base64
import json
import os
import sys
import time
import urllib.request

from gql import Client, gql
from gql.transport.phoenix_channel_websockets import PhoenixChannelWebsocketsTransport

BASE = os.environ.get("EKKO_BASE", "http://127.0.0.1:4000")
WS_BASE = "ws" + BASE[len("http"):]
OSMAND = os.environ.get("EKKO_OSMAND", "http://127.0.0.1:5055")
TOKEN = os.environ.get("EKKO_TOKEN", "")
IMEI = os.environ.get("EKKO_IMEI", "359881234567899")
TIMEOUT_S = float(os.environ.get("RT_TIMEOUT", "30"))
SILENCE_S = float(os.environ.get("RT_SILENCE", "3"))
KINDS = ["Track", "Presence", "Message", "Poke"]
PRESENCE = ["connect", "disconnect/timeout"]  # both must arrive
CHANNEL = NAMESPACE = "ekko-rt"
NAME = "gql PhoenixChannelWebsocketsTransport"

SUBSCRIPTION = gql(f"""
subscription {{
  deviceNotifications(deviceIds: ["{IMEI}"]) {{
    __typename
    deviceId
    ... on Track {{ id recorded_at coordinates {{ lat lng }} fields {{ name value }} }}
    ... on Presence {{ type reason }}
    ... on Message {{ channel b64_payload }}
    ... on Poke {{ namespace b64_payload }}
  }}
}}""")


class Tracker:
    def __init__(self):
        self.started = time.monotonic()
        self.counts = {k: 0 for k in KINDS}
        self.presence = set()
        self.problems = []
        self.sent_payloads = set()
        self.sent_pokes = set()
        self.acked = False

    def missing(self):
        """Kinds never seen, and each Presence type (connect, disconnect with reason timeout)."""
        missing = [k for k in KINDS if not self.counts[k] and k != "Presence"]
        return missing + [f"Presence {p}" for p in PRESENCE if p not in self.presence]

    def done(self):
        return not self.missing() or bool(self.problems)

    def problem(self, text):
        if len(self.problems) < 5:
            self.problems.append(text)

    def see(self, data):
        n = (data or {}).get("deviceNotifications")
        if not isinstance(n, dict):
            return self.problem(f"a result without deviceNotifications: {json.dumps(data)[:300]}")
        kind = n.get("__typename")
        if kind not in KINDS:
            return self.problem(f"unknown __typename: {json.dumps(n)[:300]}")
        if n.get("deviceId") != IMEI:
            return self.problem(f"{kind} for deviceId {n.get('deviceId')!r}")
        if kind == "Track":
            lat = (n.get("coordinates") or {}).get("lat") or 0
            if not n.get("id") or not n.get("recorded_at") or not isinstance(n.get("fields"), list) or abs(lat - 48.85) > 0.01:
                return self.problem(f"malformed Track: {json.dumps(n)[:300]}")
        elif kind == "Presence":
            if n.get("type") not in ("connect", "disconnect"):
                return self.problem(f"Presence of type {n.get('type')!r}")
            if n["type"] == "disconnect" and n.get("reason") != "timeout":
                return self.problem(f"disconnect with reason {n.get('reason')!r}")
            self.presence.add("disconnect/timeout" if n["type"] == "disconnect" else "connect")
        elif kind == "Message":
            if n.get("channel") != CHANNEL or n.get("b64_payload") not in self.sent_payloads:
                return self.problem(f"Message we did not send: {json.dumps(n)[:300]}")
        elif kind == "Poke":
            if n.get("namespace") != NAMESPACE or n.get("b64_payload") not in self.sent_pokes:
                return self.problem(f"Poke we did not send: {json.dumps(n)[:300]}")
        self.counts[kind] += 1

    def summary(self):
        got = " ".join(f"{k}×{self.counts[k]}" for k in KINDS)
        presence = f" (presence: {', '.join(sorted(self.presence))})" if self.presence else ""
        return f"{got}{presence} in {time.monotonic() - self.started:.1f} s"

    def report(self):
        missing = self.missing()
        if not missing and not self.problems:
            print(f"PASS {NAME}: {self.summary()}", flush=True)
            return 0
        why = []
        if not self.acked:
            why.append("never acknowledged by the server (no subscriptionId in the doc reply)")
        if missing:
            why.append("missing " + ", ".join(missing))
        why += self.problems
        print(f"FAIL {NAME}: {'; '.join(why)} — got {self.summary()}", flush=True)
        return 1


def http(url, body=None):
    headers = {}
    if body is not None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        body = json.dumps(body).encode()
    req = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


MESSAGE = """mutation($d: ID!, $c: String!, $p: String!) {
  device_message_send(deviceId: $d, channel: $c, b64_payload: $p) { id } }"""
POKE = """mutation($d: ID!, $n: String!, $p: String!) {
  poke_send(deviceId: $d, namespace: $n, b64_payload: $p) { id } }"""


def mutate(query, variables):
    status, raw = http(f"{BASE}/services/ekko/v2/graphql", {"query": query, "variables": variables})
    body = json.loads(raw)
    if status != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL {status}: {raw[:300]!r}")


def b64(s):
    return base64.b64encode(s.encode()).decode()


async def drive(tracker):
    deadline = time.monotonic() + TIMEOUT_S
    cycle = 0
    while time.monotonic() < deadline and not tracker.done():
        cycle += 1
        try:
            ts = int(time.time())
            status, _ = await asyncio.to_thread(
                http, f"{OSMAND}/?id={IMEI}&lat=48.85&lon=2.29&timestamp={ts}&speed=10")
            if status != 200:
                tracker.problem(f"OsmAnd record answered {status}")
            p = b64(f"{NAME} message {cycle}")
            tracker.sent_payloads.add(p)
            await asyncio.to_thread(mutate, MESSAGE, {"d": IMEI, "c": CHANNEL, "p": p})
            p = b64(f"{NAME} poke {cycle}")
            tracker.sent_pokes.add(p)
            await asyncio.to_thread(mutate, POKE, {"d": IMEI, "n": NAMESPACE, "p": p})
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            tracker.problem(f"driver: {e}")
        quiet_until = min(deadline, time.monotonic() + SILENCE_S)
        while time.monotonic() < quiet_until and not tracker.done():
            await asyncio.sleep(0.1)


async def main():
    tracker = Tracker()
    transport = PhoenixChannelWebsocketsTransport(
        url=f"{WS_BASE}/services/ekko/v2/socket/websocket",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        async with Client(transport=transport) as session:
            async def consume():
                try:
                    async for data in session.subscribe(SUBSCRIPTION):
                        tracker.see(data)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001
                    tracker.problem(f"subscription ended: {type(e).__name__}: {e}")

            task = asyncio.create_task(consume())
            until = time.monotonic() + 10
            while time.monotonic() < until and not transport.subscriptions and not tracker.problems:
                await asyncio.sleep(0.05)
            tracker.acked = bool(transport.subscriptions)
            if tracker.acked:
                await drive(tracker)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    except Exception as e:  # noqa: BLE001
        tracker.problem(f"{type(e).__name__}: {e}")
    return tracker.report()


sys.exit(asyncio.run(main()))
