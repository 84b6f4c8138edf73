// A real browser (headless Chromium, driven by playwright-core) through the authorization-code
// flow with PKCE: the sign-in page, the consent page, the redirect back with code and state,
// then the code exchange.
import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const { EKKO_BASE, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, EMAIL, PASSWORD } = process.env;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const b64url = (b) => b.toString("base64url");
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash("sha256").update(verifier).digest());
const state = b64url(randomBytes(12));

const cb = new URL(REDIRECT_URI);
let resolveCallback;
const gotCallback = new Promise((r) => (resolveCallback = r));
const server = createServer((req, res) => {
  const u = new URL(req.url, REDIRECT_URI);
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><title>done</title><p>Signed in.</p>");
  if (u.pathname === cb.pathname) resolveCallback(u);
});
await new Promise((r) => server.listen(Number(cb.port), cb.hostname, r));

let failed = false;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ javaScriptEnabled: false });
  const authorize = new URL("/oauth/authorize", EKKO_BASE);
  authorize.search = new URLSearchParams({
    response_type: "code",
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: "public openid",
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  await page.goto(authorize.href);
  await page.fill("#email", EMAIL);
  await page.fill("#password", PASSWORD);
  await Promise.all([page.waitForURL(/\/oauth\/authorize/), page.click("button[type=submit]")]);
  if (!(await page.content()).includes("Authorize application")) throw new Error("no consent page");
  await page.click("#allow");
  const back = await Promise.race([gotCallback, new Promise((_, rej) => setTimeout(() => rej(new Error("no redirect")), 15000))]);
  if (back.searchParams.get("state") !== state) throw new Error("state mismatch");
  const code = back.searchParams.get("code");
  const r = await fetch(new URL("/oauth/token", EKKO_BASE), {
    method: "POST",
    headers: { authorization: "Basic " + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64") },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
  });
  const t = await r.json();
  if (r.status !== 200 || !t.access_token || !t.id_token) throw new Error(`token: ${r.status} ${JSON.stringify(t)}`);
  console.log("PASS chromium: sign-in and consent pages without JavaScript, code + PKCE exchanged");
} catch (e) {
  failed = true;
  console.log(`FAIL chromium: ${e?.stack ?? e}`);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
