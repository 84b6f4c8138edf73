// node oidc-provider 9.x peer for the token endpoint WITH a password grant (RFC 6749 §4.3), so that
// Ekko's password grant has something to be compared with. oidc-provider has no password grant of
// its own; this registers one with provider.registerGrantType() and issues the tokens through
// oidc-provider's own models (Grant, AccessToken, RefreshToken).
//
// Everything else is the configuration of ../oidc-provider/server.mjs (the shared peer), unchanged:
// - client "bench" / "bench-secret", client_secret_basic; grant_types gain 'password'
// - refresh tokens ALWAYS rotate (reuse of a rotated token revokes the grant)
// - access tokens are RS256 JWTs (resource indicators, default resource urn:ekko:api,
//   accessTokenFormat jwt) with the extra claim user:{uid}
// - in-memory adapter (default): grants and tokens live in a Map, an advantage vs Ekko's SQLite.
//
// The password grant:
// - one account (--username, default bench@example.com; password from $BENCH_PASSWORD, default
//   "bench password 123"), hashed ONCE at startup with argon2id and Ekko's parameters
//   (crates/ekko-connect/src/password.rs: argon2 crate Params::DEFAULT = m=19456 KiB, t=2, p=1,
//   32-byte output, v=0x13). @node-rs/argon2 wraps RustCrypto's `argon2` crate (0.5; Ekko uses
//   0.6) and runs hash/verify on libuv's thread pool (Ekko: tokio's blocking pool), off the
//   event loop.
// - every request verifies the password against that hash; an unknown username verifies against
//   a dummy hash of the same cost (as Ekko does), then both answer invalid_grant.
// - success: a Grant (resource scope 'user' on urn:ekko:api), an RS256 JWT access token for that
//   resource server, and a refresh token that the refresh_token grant rotates like any other.
// Usage: node oidc-provider-password.mjs --listen 127.0.0.1:4005 [--key keys/private.jwk.json]
//        [--username bench@example.com]      (run from target/bench-peers/password/; see bench/connect.sh)
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Provider, { errors } from 'oidc-provider';
import { Algorithm, Version, hash, verify } from '@node-rs/argon2';
import { parseArgs, parseListen } from '../common/args.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), { listen: '127.0.0.1:4005', username: 'bench@example.com' });
const { host, port } = parseListen(args.listen);
const jwk = JSON.parse(readFileSync(args.key || join(here, '..', 'keys', 'private.jwk.json'), 'utf8'));
const issuer = args.issuer || `http://${host}:${port}`;
const RESOURCE = 'urn:ekko:api';
const RESOURCE_SERVER = {
  scope: 'user',
  audience: RESOURCE,
  accessTokenTTL: 7200,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};

// --- the account and its argon2id hash (Ekko's parameters) ---
const ARGON2 = { algorithm: Algorithm.Argon2id, version: Version.V0x13, memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 };
const MAX_PASSWORD_BYTES = 1024; // Ekko refuses longer passwords before hashing
const PHC_PREFIX = '$argon2id$v=19$m=19456,t=2,p=1$';
const account = {
  username: String(args.username),
  accountId: '1',
  hash: await hash(process.env.BENCH_PASSWORD || 'bench password 123', ARGON2),
};
const DUMMY_HASH = await hash('peer-dummy-password-for-timing', ARGON2);
for (const h of [account.hash, DUMMY_HASH]) {
  if (!h.startsWith(PHC_PREFIX)) throw new Error(`argon2 produced ${h.slice(0, 40)}…, expected ${PHC_PREFIX}…`);
}
const accounts = new Map([[account.username, account]]);

async function passwordGrant(ctx) {
  const { provider, client, params } = ctx.oidc;
  for (const name of ['username', 'password']) {
    if (!params[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  }
  const found = accounts.get(params.username);
  const ok = Buffer.byteLength(params.password) <= MAX_PASSWORD_BYTES
    && await verify(found ? found.hash : DUMMY_HASH, params.password);
  if (!found || !ok) throw new errors.InvalidGrant('invalid username or password');

  // Scope: the resource server's 'user' (the default, like Ekko's 'public') and offline_access;
  // no openid here (no id_token is signed by any grant of this peer).
  const requested = params.scope ? params.scope.split(' ').filter(Boolean) : ['user'];
  const bad = requested.filter((s) => s !== 'user' && s !== 'offline_access');
  if (bad.length) throw new errors.InvalidScope('requested scope is not allowed', bad.join(' '));

  const grant = new provider.Grant({ accountId: found.accountId, clientId: client.clientId });
  grant.addResourceScope(RESOURCE, 'user');
  grant.addOIDCScope('offline_access');
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId: found.accountId, client, grantId, gty: 'password' });
  at.resourceServer = new provider.ResourceServer(RESOURCE, RESOURCE_SERVER);
  at.scope = grant.getResourceScopeFiltered(RESOURCE, ['user']);
  ctx.oidc.entity('Grant', grant);
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  const rt = new provider.RefreshToken({
    accountId: found.accountId,
    client,
    grantId,
    gty: 'password',
    resource: RESOURCE,
    rotations: 0,
    scope: 'offline_access user',
  });
  ctx.oidc.entity('RefreshToken', rt);
  const refreshToken = await rt.save();

  ctx.body = {
    access_token: accessToken,
    expires_in: at.expiration,
    refresh_token: refreshToken,
    scope: at.scope,
    token_type: at.tokenType,
  };
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials', 'password'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/cb'],
    scope: 'openid offline_access user',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['peer-bench-cookie-key-not-secret'] },
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  scopes: ['openid', 'offline_access', 'user'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => RESOURCE_SERVER,
    },
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  extraTokenClaims: async (_ctx, token) => (token.accountId ? { user: { uid: token.accountId } } : undefined),
  ttl: {
    RefreshToken: 30 * 24 * 3600,
    AccessToken: 7200,
    ClientCredentials: 7200,
    Grant: 30 * 24 * 3600,
    Session: 30 * 24 * 3600,
    Interaction: 3600,
    AuthorizationCode: 600,
  },
  pkce: { required: () => false },
});
provider.registerGrantType('password', passwordGrant, ['username', 'password', 'scope']);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

provider.listen(port, host);
console.log(`oidc-provider password peer listening on ${issuer} (token endpoint ${issuer}/token) pid ${process.pid}`);
