// Shared by the Node clients: the subscription every client sends, the driver that produces
// the four notification kinds on the server, and the bookkeeping of what a client received.
// Only the subscription itself goes through the library under test; the driver uses plain
// HTTP (fetch) to 127.0.0.1.
//
// env: EKKO_BASE (http://127.0.0.1:PORT), EKKO_OSMAND (http://127.0.0.1:OPORT), EKKO_TOKEN,
//      EKKO_IMEI, RT_TIMEOUT (seconds a client may take to see all four kinds, default 30),
//      RT_SILENCE (seconds to stay silent after each cycle so that the presence timeout
//      fires, default 3: the server runs with --presence-timeout 2)

export const BASE = process.env.EKKO_BASE ?? "http://127.0.0.1:4000";
export const WS_BASE = BASE.replace(/^http/, "ws");
export const OSMAND = process.env.EKKO_OSMAND ?? "http://127.0.0.1:5055";
export const TOKEN = process.env.EKKO_TOKEN ?? "";
export const IMEI = process.env.EKKO_IMEI ?? "359881234567899";
const TIMEOUT_S = Number(process.env.RT_TIMEOUT ?? 30);
const SILENCE_S = Number(process.env.RT_SILENCE ?? 3);

export const KINDS = ["Track", "Presence", "Message", "Poke"];
// Both Presence types must arrive: `connect` (first record after a silence) and `disconnect`
// with reason `timeout` (after --presence-timeout seconds of silence).
const PRESENCE = ["connect", "disconnect/timeout"];
export const CHANNEL = "ekko-rt";
export const NAMESPACE = "ekko-rt";

export const SUBSCRIPTION = `subscription {
  deviceNotifications(deviceIds: ["${IMEI}"]) {
    __typename
    deviceId
    ... on Track { id recorded_at coordinates { lat lng } fields { name value } }
    ... on Presence { type reason }
    ... on Message { channel b64_payload }
    ... on Poke { namespace b64_payload }
  }
}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64 = (s) => Buffer.from(s, "utf8").toString("base64");

/** What one client received: counts per kind, presence types, payloads, problems. */
export class Tracker {
  constructor(name) {
    this.name = name;
    this.started = Date.now();
    this.counts = Object.fromEntries(KINDS.map((k) => [k, 0]));
    this.presence = new Set();
    this.problems = [];
    this.sentPayloads = new Set();
    this.sentPokes = new Set();
    this.acked = false;
  }

  /** What is still to come: kinds never seen, and each Presence type (connect, disconnect). */
  missing() {
    const missing = KINDS.filter((k) => this.counts[k] === 0 && k !== "Presence");
    for (const p of PRESENCE) if (!this.presence.has(p)) missing.push(`Presence ${p}`);
    return missing;
  }

  done() {
    return this.missing().length === 0 || this.problems.length > 0;
  }

  problem(text) {
    if (this.problems.length < 5) this.problems.push(text);
  }

  /** One subscription result ({data, errors}) as the library delivered it. */
  see(result) {
    if (result?.errors?.length) {
      this.problem(`errors in a result: ${JSON.stringify(result.errors).slice(0, 300)}`);
      return;
    }
    const n = result?.data?.deviceNotifications;
    if (!n || typeof n !== "object") {
      this.problem(`a result without data.deviceNotifications: ${JSON.stringify(result).slice(0, 300)}`);
      return;
    }
    this.seeNotification(n);
  }

  seeNotification(n) {
    const kind = n.__typename;
    if (!KINDS.includes(kind)) return this.problem(`unknown __typename: ${JSON.stringify(n).slice(0, 300)}`);
    if (n.deviceId !== IMEI) return this.problem(`${kind} for deviceId ${JSON.stringify(n.deviceId)}`);
    switch (kind) {
      case "Track":
        if (!n.id || !n.recorded_at || !Array.isArray(n.fields) || Math.abs((n.coordinates?.lat ?? 0) - 48.85) > 0.01)
          return this.problem(`malformed Track: ${JSON.stringify(n).slice(0, 300)}`);
        break;
      case "Presence":
        if (n.type !== "connect" && n.type !== "disconnect") return this.problem(`Presence of type ${n.type}`);
        if (n.type === "disconnect" && n.reason !== "timeout") return this.problem(`disconnect with reason ${n.reason}`);
        this.presence.add(n.type === "disconnect" ? `disconnect/${n.reason}` : n.type);
        break;
      case "Message":
        if (n.channel !== CHANNEL || !this.sentPayloads.has(n.b64_payload))
          return this.problem(`Message we did not send: ${JSON.stringify(n).slice(0, 300)}`);
        break;
      case "Poke":
        if (n.namespace !== NAMESPACE || !this.sentPokes.has(n.b64_payload))
          return this.problem(`Poke we did not send: ${JSON.stringify(n).slice(0, 300)}`);
        break;
    }
    this.counts[kind] += 1;
  }

  summary() {
    const got = KINDS.map((k) => `${k}×${this.counts[k]}`).join(" ");
    const presence = this.presence.size ? ` (presence: ${[...this.presence].join(", ")})` : "";
    return `${got}${presence} in ${((Date.now() - this.started) / 1000).toFixed(1)} s`;
  }

  /** Prints the PASS/FAIL line and returns the exit code. */
  report() {
    const missing = this.missing();
    if (this.problems.length === 0 && missing.length === 0) {
      console.log(`PASS ${this.name}: ${this.summary()}`);
      return 0;
    }
    const why = [];
    if (!this.acked) why.push("never acknowledged by the server (Phoenix: the doc reply; graphql-ws, legacy: connection_ack; SSE: the stream opening)");
    if (missing.length) why.push(`missing ${missing.join(", ")}`);
    why.push(...this.problems);
    console.log(`FAIL ${this.name}: ${why.join("; ")} — got ${this.summary()}`);
    return 1;
  }
}

async function graphql(query, variables) {
  const r = await fetch(`${BASE}/services/ekko/v2/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(5000),
  });
  const body = await r.json();
  if (r.status !== 200 || body.errors) throw new Error(`GraphQL ${r.status}: ${JSON.stringify(body).slice(0, 300)}`);
  return body.data;
}

const MESSAGE = `mutation($d: ID!, $c: String!, $p: String!) {
  device_message_send(deviceId: $d, channel: $c, b64_payload: $p) { id }
}`;
const POKE = `mutation($d: ID!, $n: String!, $p: String!) {
  poke_send(deviceId: $d, namespace: $n, b64_payload: $p) { id }
}`;

/**
 * Produces events until the tracker has seen every kind (or a problem), or the timeout: each
 * cycle sends one OsmAnd record (a Track, preceded by a Presence `connect` after a silence),
 * a message and a poke, then stays silent long enough for the Presence `disconnect`.
 * Bounded: at most TIMEOUT_S seconds, at most one cycle per SILENCE_S.
 */
export async function drive(tracker) {
  const deadline = Date.now() + TIMEOUT_S * 1000;
  for (let cycle = 1; Date.now() < deadline && !tracker.done(); cycle++) {
    try {
      const ts = Math.floor(Date.now() / 1000);
      const r = await fetch(`${OSMAND}/?id=${IMEI}&lat=48.85&lon=2.29&timestamp=${ts}&speed=10`, {
        signal: AbortSignal.timeout(5000),
      });
      await r.arrayBuffer();
      if (r.status !== 200) tracker.problem(`OsmAnd record answered ${r.status}`);
      const payload = b64(`${tracker.name} message ${cycle}`);
      tracker.sentPayloads.add(payload);
      await graphql(MESSAGE, { d: IMEI, c: CHANNEL, p: payload });
      const poke = b64(`${tracker.name} poke ${cycle}`);
      tracker.sentPokes.add(poke);
      await graphql(POKE, { d: IMEI, n: NAMESPACE, p: poke });
    } catch (e) {
      tracker.problem(`driver: ${e.message}`);
    }
    const quietUntil = Math.min(deadline, Date.now() + SILENCE_S * 1000);
    while (Date.now() < quietUntil && !tracker.done()) await sleep(100);
  }
}

/** Waits (bounded) until `ready()` is true; false on timeout. */
export async function waitFor(ready, seconds = 10) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    if (ready()) return true;
    await sleep(50);
  }
  return ready();
}
