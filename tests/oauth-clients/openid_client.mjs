// openid-client (the certified OpenID Connect relying party for Node): discovery, the
// authorization-code flow with PKCE (the browser's part done with plain HTTP requests through
// Ekko's HTML forms), ID-token validation, and refresh.
import * as client from "openid-client";

const { EKKO_BASE, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, EMAIL, PASSWORD } = process.env;
let failed = false;
const pass = (name) => console.log(`PASS openid-client: ${name}`);
const fail = (name, e) => {
  failed = true;
  console.log(`FAIL openid-client: ${name}: ${e?.stack ?? e}`);
};

function hiddenFields(html) {
  const out = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    const un = (s) => s.replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
    out.append(un(m[1]), un(m[2]));
  }
  return out;
}

try {
  const config = await client.discovery(new URL(EKKO_BASE), CLIENT_ID, CLIENT_SECRET, undefined, {
    execute: [client.allowInsecureRequests],
  });
  const meta = config.serverMetadata();
  if (meta.issuer !== EKKO_BASE) throw new Error(`issuer ${meta.issuer}`);
  pass("discovery");

  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: "openid public email",
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
    nonce,
  });
  // The browser: sign in, consent, follow the redirect.
  let r = await fetch(url, { redirect: "manual" });
  if (r.status !== 303) throw new Error(`authorize: ${r.status}`);
  const signIn = new URL(r.headers.get("location"), EKKO_BASE);
  const returnTo = signIn.searchParams.get("return_to");
  r = await fetch(new URL("/users/sign_in", EKKO_BASE), {
    method: "POST",
    redirect: "manual",
    body: new URLSearchParams({ email: EMAIL, password: PASSWORD, return_to: returnTo }),
  });
  const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0];
  if (r.status !== 303 || !cookie) throw new Error(`sign in: ${r.status}`);
  r = await fetch(new URL(r.headers.get("location"), EKKO_BASE), { headers: { cookie }, redirect: "manual" });
  const form = hiddenFields(await r.text());
  form.append("decision", "allow");
  r = await fetch(new URL("/oauth/authorize", EKKO_BASE), { method: "POST", headers: { cookie }, body: form, redirect: "manual" });
  const callback = new URL(r.headers.get("location"));

  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  if (!claims?.sub || claims.email !== EMAIL) throw new Error(`claims ${JSON.stringify(claims)}`);
  pass("authorization code + PKCE, ID token validated");

  const me = await fetch(new URL("/api/v1/users/me.json", EKKO_BASE), {
    headers: { authorization: `Bearer ${tokens.access_token}` },
  }).then((x) => x.json());
  if (me.uid !== claims.sub) throw new Error(`me.json uid ${me.uid} != sub ${claims.sub}`);
  pass("access token works on me.json");

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  if (!refreshed.access_token || refreshed.refresh_token === tokens.refresh_token) throw new Error("no rotation");
  pass("refresh");
} catch (e) {
  fail("flow", e);
}
process.exit(failed ? 1 : 0);
