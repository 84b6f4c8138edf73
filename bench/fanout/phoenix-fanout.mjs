// Fan-out bench for Ekko's Phoenix channels + Absinthe socket, the same procedure and the same summary line as
// ../shared/bench-peers/bench/ws-fanout.mjs (the graphql-ws peer's client), so that the numbers compare:
// 1. reads the server's VmRSS (/proc/PID/status) before, 2. opens --subs WebSocket connections (Phoenix
// serializer V2, `?vsn=2.0.0&token=<jwt>`), each joins `__absinthe__:control` and sends one `doc` subscribing to
// deviceNotifications(deviceIds:[IMEI of device i % devices]), 3. waits until a probe push reaches every
// subscriber, reads VmRSS again, 4. sends --pushes pushes (round-robin over devices, paced at --rate/s) and
// records push-sent -> frame-received latency for every delivery. Prints one summary line, then one
// `details:` line (sockets opened/subscribed/closed, close codes and reasons, errors).
//
// A push is an OsmAnd GET on the device gateway (`http://127.0.0.1:O/?id=IMEI&lat=..&lon=..&timestamp=<ms>&speed=..`):
// ingest -> SQLite commit -> bus -> socket. Every push carries a unique `timestamp` (unix ms), which comes back as the
// Track's `recorded_at`; (device, recorded_at) is the key of the send-time map.
//
// The Phoenix socket closes after 60 s without an inbound frame, so every socket sends a `heartbeat` every 30 s
// (staggered: 1/30 of the sockets each second), as phoenix.js does. The peer's protocol needs none.
//
// --procs K (default 1) opens the sockets from K child processes (each under the per-process fd limit); the parent
// pushes and collects receive times (absolute: performance.timeOrigin + performance.now()). --src-ips M (default 1)
// spreads the sockets over source addresses 127.0.0.1..127.0.0.M (65k ephemeral ports per source address).
//
// Usage: node bench/fanout/phoenix-fanout.mjs --pid EKKO_PID --url ws://127.0.0.1:P/services/ekko/v2/socket/websocket
//          --token JWT (or env FANOUT_TOKEN) --push http://127.0.0.1:O/ --imeis FILE (one IMEI a line, >= --devices lines)
//          [--subs 1000] [--devices 100] [--pushes 500] [--rate 100] [--name ekko] [--procs 1] [--src-ips 1]
//          [--peers target/bench-peers] (where node_modules/ws is)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fork } from 'node:child_process';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--')) throw new Error(`unexpected argument ${k}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[k.slice(2)] = true;
    else { out[k.slice(2)] = next; i++; }
  }
  return out;
}

const here = dirname(fileURLToPath(import.meta.url));
const a = parseArgs(process.argv.slice(2), {
  subs: '1000', devices: '100', pushes: '500', rate: '100', name: 'ekko', procs: '1', 'src-ips': '1',
  peers: resolve(here, '../../target/bench-peers'),
});
const WebSocket = createRequire(resolve(a.peers, 'package.json'))('ws');
const SUBS = Number(a.subs), DEVICES = Number(a.devices), PUSHES = Number(a.pushes), RATE = Number(a.rate);
const PROCS = Math.max(1, Number(a.procs)), SRC_IPS = Math.max(1, Math.min(250, Number(a['src-ips'])));
a.token = a.token || process.env.FANOUT_TOKEN;
if (!a.token || !a.url || !a.imeis) throw new Error('--url, --token and --imeis are required');
a.url = `${a.url}${a.url.includes('?') ? '&' : '?'}vsn=2.0.0&token=${encodeURIComponent(a.token)}`;
const now = () => performance.timeOrigin + performance.now(); // comparable across processes
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const QUERY = (imei) =>
  `subscription { deviceNotifications(deviceIds: ["${imei}"]) { deviceId ... on Track { id recorded_at coordinates { lat lng } } } }`;

// ---------------------------------------------------------------------------------------------------------------
// Subscriber side: sockets [lo, hi). onData(i, key, t) for every Track received; returns the stats object.
function openSubscribers(lo, hi, imeis, onData) {
  const st = { opened: 0, joined: 0, subscribed: 0, closed: 0, closes: {}, errors: {}, refused: {}, sockets: [] };
  const bump = (m, k) => { k = String(k).slice(0, 200); m[k] = (m[k] || 0) + 1; };
  let ref = 100;
  // heartbeats: each second, the sockets with i % 30 == tick % 30 (every socket every 30 s)
  let tick = 0;
  const hb = setInterval(() => {
    const r = tick++ % 30;
    for (let i = lo + ((r - (lo % 30) + 30) % 30); i < hi; i += 30) {
      const ws = st.sockets[i - lo];
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(`[null,"${ref++}","phoenix","heartbeat",{}]`);
    }
  }, 1000);
  hb.unref();
  st.stopHeartbeats = () => clearInterval(hb);
  const done = (async () => {
    for (let i = lo; i < hi; i++) {
      const d = i % DEVICES;
      const ws = new WebSocket(a.url, {
        localAddress: SRC_IPS > 1 ? `127.0.0.${1 + (i % SRC_IPS)}` : undefined,
        handshakeTimeout: 60000,
      });
      st.sockets.push(ws);
      ws.on('open', () => {
        st.opened++;
        ws.send(JSON.stringify(['1', '1', '__absinthe__:control', 'phx_join', {}]));
        ws.send(JSON.stringify(['1', '2', '__absinthe__:control', 'doc', { query: QUERY(imeis[d]), variables: {} }]));
      });
      ws.on('message', (buf) => {
        const t = now();
        let m;
        try { m = JSON.parse(buf.toString()); } catch { bump(st.errors, 'unparsable frame'); return; }
        const [, r, , event, payload] = m;
        if (event === 'subscription:data') {
          const n = payload?.result?.data?.deviceNotifications;
          if (n?.recorded_at) onData(i, `${d}|${Date.parse(n.recorded_at)}`, t);
          else bump(st.errors, `data without a track: ${JSON.stringify(payload).slice(0, 150)}`);
        } else if (event === 'phx_reply') {
          if (r === '1') { if (payload?.status === 'ok') st.joined++; else bump(st.refused, `join: ${JSON.stringify(payload)}`); }
          else if (r === '2') { if (payload?.status === 'ok') st.subscribed++; else bump(st.refused, `doc: ${JSON.stringify(payload)}`); }
          else if (payload?.status !== 'ok') bump(st.refused, `heartbeat: ${JSON.stringify(payload)}`);
        } else {
          bump(st.errors, `event ${event}: ${JSON.stringify(payload).slice(0, 150)}`);
        }
      });
      ws.on('close', (code, reason) => { st.closed++; if (!st.closing) bump(st.closes, `${code} ${reason}`); });
      ws.on('error', (e) => bump(st.errors, e?.code || e?.message || e));
      if (i % 100 === 99) await sleep(20); // don't open everything in one tick (as ws-fanout.mjs)
    }
  })();
  st.done = done;
  return st;
}
const summary = (st) => ({
  opened: st.opened, joined: st.joined, subscribed: st.subscribed, closed: st.closed,
  closes: st.closes, errors: st.errors, refused: st.refused,
});
function mergeStats(list) {
  const out = { opened: 0, joined: 0, subscribed: 0, closed: 0, closes: {}, errors: {}, refused: {} };
  for (const s of list) {
    for (const k of ['opened', 'joined', 'subscribed', 'closed']) out[k] += s[k];
    for (const k of ['closes', 'errors', 'refused']) for (const [x, n] of Object.entries(s[k])) out[k][x] = (out[k][x] || 0) + n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Worker mode: open [lo, hi), stream [i, key, t] batches to the parent, answer 'stats', exit on 'stop'.
if (a['worker-range']) {
  const [lo, hi] = String(a['worker-range']).split(':').map(Number);
  const imeis = readFileSync(a.imeis, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
  let batch = [];
  const flush = () => { if (batch.length) { process.send({ type: 'data', batch }); batch = []; } };
  setInterval(flush, 20);
  const st = openSubscribers(lo, hi, imeis, (i, key, t) => batch.push([i, key, t]));
  st.done.then(() => process.send({ type: 'opened' }));
  process.on('message', (m) => {
    if (m.type === 'stats') process.send({ type: 'stats', stats: summary(st) });
    if (m.type === 'stop') {
      st.closing = true; st.stopHeartbeats(); flush();
      for (const ws of st.sockets) ws.terminate();
      setTimeout(() => process.exit(0), 200);
    }
  });
} else {
  await main();
}

async function main() {
  const imeis = readFileSync(a.imeis, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
  if (imeis.length < DEVICES) throw new Error(`${a.imeis}: ${imeis.length} IMEIs, need ${DEVICES}`);
  const rssKiB = () => a.pid ? Number(readFileSync(`/proc/${a.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) : NaN;

  const keys = new Map();          // `${device}|${timestamp ms}` -> { probe: round } | { sent: time }
  const latencies = [];
  const probeSeen = new Set();     // subscriber indexes that saw the current probe
  let probeRound = -1;
  const onData = (i, key, t) => {
    const k = keys.get(key);
    if (!k) return;
    if (k.probe !== undefined) { if (k.probe === probeRound) probeSeen.add(i); return; }
    latencies.push(t - k.sent);
  };

  const rssBefore = rssKiB();
  let local = null;
  const workers = [];
  if (PROCS === 1) {
    local = openSubscribers(0, SUBS, imeis, onData);
    await local.done;
  } else {
    const per = Math.ceil(SUBS / PROCS);
    const opened = [];
    for (let w = 0; w < PROCS; w++) {
      const lo = w * per, hi = Math.min(SUBS, lo + per);
      if (lo >= hi) break;
      const args = process.argv.slice(2).filter((x, j, arr) => x !== '--procs' && arr[j - 1] !== '--procs');
      const child = fork(fileURLToPath(import.meta.url), [...args, '--worker-range', `${lo}:${hi}`], { stdio: 'inherit' });
      child.on('message', (m) => { if (m.type === 'data') for (const [i, key, t] of m.batch) onData(i, key, t); });
      opened.push(new Promise((r) => child.on('message', (m) => { if (m.type === 'opened') r(); })));
      workers.push(child);
    }
    await Promise.all(opened);
  }
  const stats = async () => {
    if (local) return summary(local);
    const all = await Promise.all(workers.map((c) => new Promise((r) => {
      const h = (m) => { if (m.type === 'stats') { c.off('message', h); r(m.stats); } };
      c.on('message', h); c.send({ type: 'stats' });
    })));
    return mergeStats(all);
  };
  const stopAll = async () => {
    if (local) { local.closing = true; local.stopHeartbeats(); for (const ws of local.sockets) ws.terminate(); }
    for (const c of workers) c.send({ type: 'stop' });
    await Promise.all(workers.map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.on('exit', r)))));
  };

  // Unique timestamps (unix ms), a minute in the past so no record looks future-dated or delayed.
  let seq = Date.now() - 60000;
  let pushErrors = 0;
  const pushErrorText = {};
  async function push(d, ts, lat) {
    const url = `${a.push}?id=${imeis[d]}&lat=${lat.toFixed(6)}&lon=2.350000&timestamp=${ts}&speed=42.5`;
    const res = await fetch(url);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`push ${res.status}`);
  }

  // wait until every subscriber receives a probe (proves all subscriptions are live)
  const t0 = performance.now();
  let setupFailed = null;
  for (let round = 0; probeSeen.size < SUBS; round++) {
    if (performance.now() - t0 > 60000) { setupFailed = `only ${probeSeen.size}/${SUBS} subscriptions live after 60 s`; break; }
    probeSeen.clear(); probeRound = round;
    for (let d = 0; d < DEVICES; d++) {
      const ts = seq++;
      keys.set(`${d}|${ts}`, { probe: round });
      try { await push(d, ts, 48.8); } catch (e) { pushErrors++; pushErrorText[e.message] = (pushErrorText[e.message] || 0) + 1; }
    }
    await sleep(500);
  }
  const setupS = (performance.now() - t0) / 1000;
  const mib = (k) => (k / 1024).toFixed(1);
  const details = async () => `details: ${JSON.stringify({ ...(await stats()), pushErrors, pushErrorText, procs: PROCS, srcIps: SRC_IPS })}`;
  if (setupFailed) {
    const rss = rssKiB();
    console.log(`${a.name} fanout ${SUBS} subs/${DEVICES} devices: FAILED ${setupFailed} (RSS ${mib(rssBefore)} -> ${mib(rss)} MiB)`);
    console.log(await details());
    await stopAll();
    process.exit(2);
  }
  await sleep(500);
  const rssAfter = rssKiB();

  // timed pushes
  let expect = 0;
  const interval = 1000 / RATE;
  const start = performance.now();
  for (let p = 0; p < PUSHES; p++) {
    const d = p % DEVICES;
    expect += Math.floor(SUBS / DEVICES) + (d < SUBS % DEVICES ? 1 : 0);
    const ts = seq++;
    keys.set(`${d}|${ts}`, { sent: now() });
    push(d, ts, 48.85 + p * 1e-5).catch((e) => { pushErrors++; pushErrorText[e.message] = (pushErrorText[e.message] || 0) + 1; });
    const next = start + (p + 1) * interval;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const deadline = performance.now() + 10000;
  while (latencies.length < expect && performance.now() < deadline) await sleep(50);
  const rssEnd = rssKiB();

  latencies.sort((x, y) => x - y);
  const pct = (q) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)] : NaN;
  console.log(`${a.name} fanout ${SUBS} subs/${DEVICES} devices: RSS ${mib(rssBefore)} -> ${mib(rssAfter)} MiB ` +
    `(${((rssAfter - rssBefore) / SUBS).toFixed(1)} KiB/sub, ${mib(rssEnd)} MiB after pushes); ` +
    `push->receive p50 ${pct(0.5).toFixed(2)} ms p99 ${pct(0.99).toFixed(2)} ms max ${pct(1).toFixed(2)} ms ` +
    `(received ${latencies.length}/${expect}, ${PUSHES} pushes at ${RATE}/s, subscribe+probe ${setupS.toFixed(1)} s)`);
  console.log(await details());
  await stopAll();
  process.exit(latencies.length === expect ? 0 : 1);
}
