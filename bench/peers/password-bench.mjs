// The password grant under load: the same measurement as ../bench/http-bench.mjs (the shared peers'
// autocannon 9 driver: in-process, pipelining 1, 2 s untimed warm-up, then --duration; req/s =
// autocannon's mean; p50/p99 from every 2xx response's float-ms latency), with one fixed request:
//   POST --url  grant_type=password&username=…&password=…  Authorization: Basic (--basic id:secret)
// Prints ONE summary line, e.g.
//   ekko password: 40 req/s p50 480 ms p99 900 ms (2xx 400, non2xx 0, errors 0, timeouts 0; 20 conns, 10 s)
// and exits non-zero on any non-2xx, error, or a 200 without both access_token and refresh_token.
// Usage (from target/bench-peers/password/, so that autocannon resolves from ../node_modules):
//   BENCH_PASSWORD=… node password-bench.mjs --name ekko --url http://127.0.0.1:PORT/oauth/token \
//     --basic id:secret --username bench@example.com [--duration 10 --connections 20 --warmup 2]
import autocannon from 'autocannon';
import { parseArgs } from '../common/args.mjs';

const a = parseArgs(process.argv.slice(2), { duration: '10', connections: '20', warmup: '2', name: 'target' });
for (const k of ['url', 'basic', 'username']) if (!a[k]) throw new Error(`--${k} required`);
const password = process.env.BENCH_PASSWORD;
if (!password) throw new Error('BENCH_PASSWORD must be set');
let incomplete = 0;
const opts = {
  url: a.url,
  connections: Number(a.connections),
  pipelining: 1,
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(a.basic).toString('base64') },
  body: new URLSearchParams({ grant_type: 'password', username: a.username, password }).toString(),
  requests: [{
    onResponse(status, body) {
      if (status !== 200) return;
      const b = JSON.parse(body);
      if (!b.access_token || !b.refresh_token) incomplete++;
    },
  }],
};
if (Number(a.warmup) > 0) await autocannon({ ...opts, duration: Number(a.warmup) });
incomplete = 0;
let lat = new Float64Array(1 << 16), n = 0;
const inst = autocannon({ ...opts, duration: Number(a.duration) });
inst.on('response', (_client, status, _bytes, ms) => {
  if (status < 200 || status > 299) return;
  if (n === lat.length) { const g = new Float64Array(lat.length * 2); g.set(lat); lat = g; }
  lat[n++] = ms;
});
const r = await inst;
const sorted = lat.subarray(0, n).sort();
const pct = (q) => (n ? sorted[Math.min(n - 1, Math.ceil(q * n) - 1)] : NaN);
const f = (x) => (x >= 10 ? x.toFixed(1) : x.toFixed(2));
console.log(`${a.name} password: ${Math.round(r.requests.average)} req/s p50 ${f(pct(0.5))} ms p99 ${f(pct(0.99))} ms` +
  ` (2xx ${r['2xx']}, non2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}` +
  `${incomplete ? `, ${incomplete} without access_token+refresh_token` : ''}; ${a.connections} conns, ${a.duration} s)`);
if (r['2xx'] === 0 || r.non2xx > 0 || r.errors > 0 || incomplete > 0) process.exitCode = 1;
