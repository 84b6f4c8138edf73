//! Grants and access tokens.
//!
//! Access tokens are RS256 JWTs shaped like Munic's (`{exp, scope, user: {uid}}`) plus the
//! registered claims a verifier needs (`iss`, `iat`, `nbf`, `jti`, `sub`), the client they were
//! issued to (`client_id`) and the environment that issued them (`env`). Refresh tokens are
//! opaque random strings; only their SHA-256 is stored, and each use rotates them. ID tokens
//! (OpenID Connect, for the `openid` scope) are RS256 JWTs with `aud` = the client id.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ekko_core::oauth::{
    Application, CodeOutcome, OAuthRegistry, OAuthStore, RefreshGrant, RefreshOutcome, RotationMode,
};
use ekko_core::time::{from_unix_ms, now_ms};
use ekko_core::{AccountId, Caller, DomainError, Ekko};
use jsonwebtoken::{Algorithm, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::OAuthError;
use crate::keys::SigningKeys;
use crate::password;

/// Access-token lifetime, as Munic documents it.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 7200;
/// ID-token lifetime.
pub const ID_TOKEN_TTL_SECS: i64 = 3600;
/// Authorization codes live this long (Doorkeeper's default).
pub const CODE_TTL_SECS: i64 = 600;
/// Scopes Ekko knows. `public` is the default and grants the whole v2 API for the caller's
/// data; `openid` asks for an ID token; `email` and `profile` add those claims to it.
pub const SUPPORTED_SCOPES: &[&str] = &["public", "openid", "email", "profile"];
pub const DEFAULT_SCOPE: &str = "public";
/// The environment a server runs when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// Connect's settings.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// `production` (default) or another name, e.g. `integration`. Tokens carry it and a server
    /// refuses the tokens of another environment, saying so.
    pub environment: String,
    pub rotation: RotationMode,
    /// Rate limits and lockout (see [`crate::limits`]).
    pub limits: crate::limits::LimitConfig,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            environment: DEFAULT_ENVIRONMENT.into(),
            rotation: RotationMode::Immediate,
            limits: Default::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct UserClaim {
    pub uid: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub scope: String,
    /// The resource owner; absent for client_credentials tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// The body of a successful token response. Blank keys are left out (Doorkeeper does so).
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Why a presented access token was refused. Each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be 'Bearer <access token>'")]
    Malformed,
    #[error("the access token has expired; get a new one with the refresh_token grant")]
    Expired,
    #[error("the access token was not issued by this server ({0})")]
    WrongIssuer(String),
    #[error(
        "the access token was issued by the '{token}' environment; this server is the '{server}' environment: get a token from the '{server}' environment's Connect"
    )]
    WrongEnvironment { token: String, server: String },
    #[error("the access token was revoked")]
    Revoked,
    #[error("the access token is invalid: {0}")]
    Invalid(String),
}

/// What a verified access token says, for token info and introspection.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub account: Option<AccountId>,
    pub client_id: Option<String>,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// The grant's outcome before it becomes a response.
struct Grant {
    account: Option<AccountId>,
    client: Option<Application>,
    scope: String,
    refresh: Option<String>,
    nonce: Option<String>,
}

pub struct TokenService {
    registry: OAuthRegistry,
    keys: Arc<SigningKeys>,
    issuer: String,
    config: ConnectConfig,
    /// jti -> exp (unix s) of revoked, unexpired access tokens.
    revoked: RwLock<HashMap<String, i64>>,
    limits: crate::limits::Limits,
    sessions: crate::web::Sessions,
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 as lower-case hex: how refresh tokens, codes and client secrets are stored.
pub fn sha256_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refresh tokens are looked up by this hash; a stolen database does not yield usable tokens.
pub fn hash_refresh_token(token: &str) -> String {
    sha256_hex(token)
}

/// Validates a requested scope string; `None`/empty means the default.
pub fn normalize_scope(requested: Option<&str>) -> Result<String, OAuthError> {
    let requested = requested
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SCOPE);
    let mut scopes: Vec<&str> = requested.split_whitespace().collect();
    if let Some(bad) = scopes.iter().find(|s| !SUPPORTED_SCOPES.contains(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "unknown scope '{bad}'; supported scopes: {}",
            SUPPORTED_SCOPES.join(" ")
        )));
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes.join(" "))
}

fn has_scope(scope: &str, s: &str) -> bool {
    scope.split(' ').any(|x| x == s)
}

fn store_err(e: ekko_core::error::StoreError) -> OAuthError {
    OAuthError::server_error(DomainError::from(e).to_string())
}

fn domain_err(e: DomainError) -> OAuthError {
    match e {
        DomainError::Internal(m) => OAuthError::server_error(m),
        other => OAuthError::invalid_request(other.to_string()),
    }
}

/// The S256 code challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// base64url(SHA-256(verifier)) == challenge, in constant time (RFC 7636 S256).
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = pkce_challenge(verifier);
    subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes()).into()
}

impl TokenService {
    pub fn new(
        ekko: Ekko,
        store: Arc<dyn OAuthStore>,
        keys: Arc<SigningKeys>,
        issuer: String,
        config: ConnectConfig,
    ) -> Self {
        TokenService {
            registry: OAuthRegistry::new(ekko, store),
            keys,
            issuer,
            limits: crate::limits::Limits::new(config.limits.clone()),
            config,
            revoked: RwLock::new(HashMap::new()),
            sessions: Default::default(),
        }
    }

    /// Loads the revoked access tokens that have not expired yet.
    pub async fn load_revocations(&self) -> Result<(), DomainError> {
        let jtis = self
            .registry
            .store()
            .revoked_access_tokens(now_ms())
            .await?;
        let far = i64::MAX;
        let mut set = self.revoked.write().expect("revocation lock");
        for j in jtis {
            set.insert(j, far);
        }
        Ok(())
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn config(&self) -> &ConnectConfig {
        &self.config
    }

    pub fn registry(&self) -> &OAuthRegistry {
        &self.registry
    }

    pub fn ekko(&self) -> &Ekko {
        self.registry.ekko()
    }

    pub(crate) fn limits(&self) -> &crate::limits::Limits {
        &self.limits
    }

    pub(crate) fn sessions(&self) -> &crate::web::Sessions {
        &self.sessions
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, OAuthError> {
        self.keys.current().sign_jwt(claims).map_err(|e| {
            tracing::error!(error = %e, "signing a token failed");
            OAuthError::server_error("could not sign the token")
        })
    }

    fn sign_access_token(
        &self,
        account: Option<AccountId>,
        client: Option<&str>,
        scope: &str,
        now: i64,
    ) -> Result<String, OAuthError> {
        let sub = account
            .map(|a| a.to_string())
            .or_else(|| client.map(str::to_owned))
            .unwrap_or_default();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scope.to_owned(),
            user: account.map(|a| UserClaim { uid: a.to_string() }),
            client_id: client.map(str::to_owned),
            env: Some(self.config.environment.clone()),
        };
        self.sign(&claims)
    }

    async fn id_token(
        &self,
        account: AccountId,
        client: &str,
        scope: &str,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String, OAuthError> {
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "sub": account.to_string(),
            "aud": client,
            "exp": now + ID_TOKEN_TTL_SECS,
            "iat": now,
            "auth_time": now,
        });
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        if has_scope(scope, "email") || has_scope(scope, "profile") {
            let a = self
                .ekko()
                .account_by_id(account)
                .await
                .map_err(domain_err)?
                .ok_or_else(|| OAuthError::invalid_grant("the account no longer exists"))?;
            if has_scope(scope, "email") {
                claims["email"] = a.email.into();
                claims["email_verified"] = false.into();
            }
            if has_scope(scope, "profile") {
                claims["name"] = a.full_name.into();
                claims["updated_at"] = a.updated_at.timestamp().into();
            }
        }
        self.sign(&claims)
    }

    async fn respond(&self, g: Grant) -> Result<TokenResponse, OAuthError> {
        let now = now_ms().timestamp();
        let client = g.client.as_ref().map(|c| c.uid.as_str());
        let id_token = match (g.account, client) {
            (Some(a), Some(c)) if has_scope(&g.scope, "openid") => Some(
                self.id_token(a, c, &g.scope, g.nonce.as_deref(), now)
                    .await?,
            ),
            _ => None,
        };
        Ok(TokenResponse {
            access_token: self.sign_access_token(g.account, client, &g.scope, now)?,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            refresh_token: g.refresh,
            scope: g.scope,
            created_at: now,
            id_token,
        })
    }

    async fn new_refresh(
        &self,
        account: AccountId,
        client: Option<&Application>,
        scope: &str,
        family: String,
    ) -> Result<String, OAuthError> {
        let refresh = random_token();
        self.registry
            .store()
            .insert_refresh(&RefreshGrant {
                token_hash: hash_refresh_token(&refresh),
                family,
                account: Some(account),
                client_id: client.map(|c| c.uid.clone()),
                scope: scope.to_owned(),
                created_at: now_ms(),
            })
            .await
            .map_err(store_err)?;
        Ok(refresh)
    }

    /// Checks a user's password (argon2id, constant cost for unknown users) with rate limits
    /// and lockout; the error never says which of the two was wrong.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<ekko_core::account::Account, OAuthError> {
        self.limits.check(username, ip)?;
        let account = self
            .ekko()
            .account_for_sign_in(username)
            .await
            .map_err(domain_err)?;
        let ok = password::verify(
            password.to_owned(),
            account.as_ref().map(|a| a.password_hash.clone()),
        )
        .await;
        match (ok, account) {
            (true, Some(a)) => {
                self.limits.succeeded(username);
                // `last_sign_in_at` is bookkeeping: written off the response path.
                let ekko = self.ekko().clone();
                let id = a.id;
                tokio::spawn(async move { ekko.record_sign_in(id).await });
                Ok(a)
            }
            _ => {
                self.limits.failed(username, ip);
                Err(OAuthError::invalid_grant(
                    "the username or password is wrong",
                ))
            }
        }
    }

    /// `grant_type=password`, with or without an authenticated client.
    pub async fn password_grant(
        &self,
        client: Option<Application>,
        username: &str,
        password: &str,
        scope: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = normalize_scope(scope)?;
        let account = self.check_password(username, password, ip).await?;
        if let Some(app) = &client {
            self.registry
                .may_authorize(&account, app)
                .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
        }
        let refresh = self
            .new_refresh(
                account.id,
                client.as_ref(),
                &scope,
                uuid::Uuid::new_v4().to_string(),
            )
            .await?;
        self.respond(Grant {
            account: Some(account.id),
            client,
            scope,
            refresh: Some(refresh),
            nonce: None,
        })
        .await
    }

    /// `grant_type=client_credentials`: a confidential client acting for itself. Never a
    /// refresh token.
    pub async fn client_credentials_grant(
        &self,
        client: Option<Application>,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let Some(app) = client else {
            return Err(OAuthError::invalid_client(
                "the client_credentials grant needs client authentication (HTTP Basic or client_id and client_secret)",
            ));
        };
        if !app.confidential {
            return Err(OAuthError::unauthorized_client(
                "a public client cannot use the client_credentials grant",
            ));
        }
        let scope = normalize_scope(scope)?;
        if has_scope(&scope, "openid") {
            return Err(OAuthError::invalid_scope(
                "the openid scope needs a user; client_credentials has none",
            ));
        }
        self.respond(Grant {
            account: None,
            client: Some(app),
            scope,
            refresh: None,
            nonce: None,
        })
        .await
    }

    /// `grant_type=authorization_code` with PKCE (S256).
    pub async fn authorization_code_grant(
        &self,
        client: Option<Application>,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let Some(app) = client else {
            return Err(OAuthError::invalid_client(
                "the authorization_code grant needs the client: send client_id (and client_secret for a confidential client)",
            ));
        };
        let code_hash = sha256_hex(code);
        let now = now_ms();
        let stored = match self
            .registry
            .store()
            .consume_code(&code_hash, now)
            .await
            .map_err(store_err)?
        {
            CodeOutcome::Consumed(c) => c,
            CodeOutcome::Replayed => {
                tracing::warn!(client_id = %app.uid, "an authorization code was replayed; tokens issued from it are revoked");
                return Err(OAuthError::invalid_grant(
                    "the authorization code was already used (tokens issued from it are revoked)",
                ));
            }
            CodeOutcome::Unknown => {
                return Err(OAuthError::invalid_grant(
                    "the authorization code is invalid",
                ));
            }
        };
        if stored.expires_at < now {
            return Err(OAuthError::invalid_grant(
                "the authorization code has expired; start the authorization again",
            ));
        }
        if stored.client_id != app.uid {
            return Err(OAuthError::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        match redirect_uri {
            Some(r) if r == stored.redirect_uri => {}
            Some(_) => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri does not match the one of the authorization request",
                ));
            }
            None => {
                return Err(OAuthError::invalid_request(
                    "missing required parameter 'redirect_uri'",
                ));
            }
        }
        let Some(verifier) = verifier.filter(|v| !v.is_empty()) else {
            return Err(OAuthError::invalid_request(
                "missing required parameter 'code_verifier' (PKCE)",
            ));
        };
        if !pkce_s256_matches(verifier, &stored.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let refresh = self
            .new_refresh(stored.account, Some(&app), &stored.scope, code_hash)
            .await?;
        self.respond(Grant {
            account: Some(stored.account),
            client: Some(app),
            scope: stored.scope,
            refresh: Some(refresh),
            nonce: stored.nonce,
        })
        .await
    }

    /// `grant_type=refresh_token`: rotates the token. Presenting a spent token revokes its
    /// family. A token issued to a client must be refreshed by that client.
    pub async fn refresh_grant(
        &self,
        client: Option<Application>,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        // Validate the requested scope before spending the token: a typo must not log the user out.
        if let Some(req) = scope.map(str::trim).filter(|s| !s.is_empty()) {
            normalize_scope(Some(req))?;
        }
        let next = random_token();
        let outcome = self
            .registry
            .store()
            .rotate_refresh(
                &hash_refresh_token(refresh_token),
                &hash_refresh_token(&next),
                client.as_ref().map(|c| c.uid.as_str()),
                self.config.rotation,
                now_ms(),
            )
            .await
            .map_err(store_err)?;
        let (account, granted) = match outcome {
            RefreshOutcome::Rotated { account, scope, .. } => (account, scope),
            RefreshOutcome::Reused => {
                tracing::warn!(
                    "a spent refresh token was presented again; its token family is revoked"
                );
                return Err(OAuthError::invalid_grant(
                    "the refresh token was already used or revoked; sign in again (for safety, every refresh token of this sign-in is revoked too)",
                ));
            }
            RefreshOutcome::RecentlyRotated => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was just rotated by another request; use the refresh_token from that response",
                ));
            }
            RefreshOutcome::WrongClient => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued to another client; authenticate as that client",
                ));
            }
            RefreshOutcome::Unknown => {
                return Err(OAuthError::invalid_grant("the refresh token is invalid"));
            }
        };
        // A refresh may narrow the scope but never widen it (RFC 6749 §6).
        let scope = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => granted,
            Some(req) => {
                let req = normalize_scope(Some(req))?;
                if !req.split(' ').all(|s| has_scope(&granted, s)) {
                    return Err(OAuthError::invalid_scope(
                        "a refresh cannot ask for scopes the original grant did not have",
                    ));
                }
                req
            }
        };
        self.respond(Grant {
            account: Some(account),
            client,
            scope,
            refresh: Some(next),
            nonce: None,
        })
        .await
    }

    /// Revokes an access token (by its jti, until it expires) or a refresh token (its family).
    /// `client`: the authenticated client, if any; a token of another client is refused.
    /// Unknown tokens succeed silently (RFC 7009 §2.2).
    pub async fn revoke(
        &self,
        client: Option<&Application>,
        token: &str,
    ) -> Result<(), OAuthError> {
        let unauthorized =
            || OAuthError::unauthorized_client_403("You are not authorized to revoke this token");
        let client_id = client.map(|c| c.uid.as_str());
        if let Ok(info) = self.inspect_access_token(token) {
            if info.client_id.is_some() && info.client_id.as_deref() != client_id {
                return Err(unauthorized());
            }
            self.registry
                .store()
                .revoke_access_token(
                    &info.jti,
                    from_unix_ms(info.exp.saturating_mul(1000)).unwrap_or_else(now_ms),
                )
                .await
                .map_err(store_err)?;
            self.revoked
                .write()
                .expect("revocation lock")
                .insert(info.jti, info.exp);
            return Ok(());
        }
        if let Some(g) = self
            .registry
            .store()
            .refresh_grant(&hash_refresh_token(token))
            .await
            .map_err(store_err)?
        {
            if g.client_id.is_some() && g.client_id.as_deref() != client_id {
                return Err(unauthorized());
            }
            self.registry
                .store()
                .revoke_refresh_family(&g.family, now_ms())
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    /// RFC 7662 introspection: the JSON answer for `token`.
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value, OAuthError> {
        if let Ok(info) = self.inspect_access_token(token) {
            let mut v = serde_json::json!({
                "active": true,
                "scope": info.scope,
                "client_id": info.client_id,
                "token_type": "Bearer",
                "exp": info.exp,
                "iat": info.iat,
                "iss": self.issuer,
                "jti": info.jti,
            });
            if let Some(a) = info.account {
                v["sub"] = a.to_string().into();
            }
            return Ok(v);
        }
        if let Some(g) = self
            .registry
            .store()
            .refresh_grant(&hash_refresh_token(token))
            .await
            .map_err(store_err)?
        {
            return Ok(serde_json::json!({
                "active": true,
                "scope": g.scope,
                "client_id": g.client_id,
                "iat": g.created_at.timestamp(),
                "sub": g.account.map(|a| a.to_string()),
            }));
        }
        Ok(serde_json::json!({"active": false}))
    }

    /// Verifies an access token and returns what it says (any token: user or client).
    pub fn inspect_access_token(&self, token: &str) -> Result<TokenInfo, AuthError> {
        // Read `alg` ourselves first: a header naming an algorithm the JWT library does not
        // know (`none`) must still get a message that says why it was refused.
        let raw_header = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
            .ok_or_else(|| AuthError::Invalid("not a JWT".into()))?;
        let alg = raw_header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        if alg != "RS256" {
            return Err(AuthError::Invalid(format!(
                "algorithm '{alg}' is not accepted (RS256 only)"
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("not a JWT".into()))?;
        // A token of another environment is named as such (before its key is looked up: the
        // other environment's keys are not ours).
        let unverified_env = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .and_then(|p| p.get("env").and_then(|e| e.as_str()).map(str::to_owned));
        if let Some(env) = unverified_env
            && env != self.config.environment
        {
            return Err(AuthError::WrongEnvironment {
                token: env,
                server: self.config.environment.clone(),
            });
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("no key id (kid) in the header".into()))?;
        let key = self.keys.by_kid(&kid).ok_or_else(|| {
            AuthError::Invalid("signed by a key this server does not have".into())
        })?;
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = 30;
        v.validate_aud = false;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss"]);
        v.set_issuer(&[self.issuer.as_str()]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidIssuer => {
                    AuthError::WrongIssuer(format!("expected issuer {}", self.issuer))
                }
                ErrorKind::ImmatureSignature => {
                    AuthError::Invalid("not valid yet (nbf is in the future)".into())
                }
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                _ => AuthError::Invalid(e.to_string()),
            }
        })?;
        let c = data.claims;
        if self
            .revoked
            .read()
            .expect("revocation lock")
            .contains_key(&c.jti)
        {
            return Err(AuthError::Revoked);
        }
        let account = match &c.user {
            Some(u) => Some(
                AccountId::parse(&u.uid)
                    .map_err(|_| AuthError::Invalid("user.uid is not a UUID".into()))?,
            ),
            None => None,
        };
        Ok(TokenInfo {
            account,
            client_id: c.client_id,
            scope: c.scope,
            exp: c.exp,
            iat: c.iat,
            jti: c.jti,
        })
    }

    /// Verifies an access token (signature with the key named by `kid`, expiry, issuer,
    /// environment, revocation) for an API call on behalf of a user.
    pub fn verify_access_token(&self, token: &str) -> Result<Caller, AuthError> {
        let info = self.inspect_access_token(token)?;
        let account = info.account.ok_or_else(|| {
            AuthError::Invalid(
                "this is a client_credentials token: it acts for an application, not a user".into(),
            )
        })?;
        Ok(Caller {
            account,
            scopes: info.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// Parses an `Authorization` value (`Bearer <jwt>`, `Bearer+<jwt>`, or a bare JWT) and
    /// verifies it.
    pub fn verify_authorization(&self, value: &str) -> Result<Caller, AuthError> {
        self.verify_access_token(bearer_token(value).ok_or(AuthError::Malformed)?)
    }
}

/// Extracts the token from an Authorization value. Accepts `Bearer <t>`, `Bearer+<t>` (the
/// getting-started URL form when `+` was not decoded), any case of "bearer", and a bare token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let rest = if v.len() > 6 && v[..6].eq_ignore_ascii_case("bearer") {
        let r = &v[6..];
        r.strip_prefix(' ')
            .or_else(|| r.strip_prefix('+'))
            .or_else(|| r.strip_prefix("%20"))?
            .trim_start()
    } else {
        v
    };
    (!rest.is_empty() && !rest.contains(char::is_whitespace)).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer+abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic a b"), None);
    }

    #[test]
    fn scopes() {
        assert_eq!(normalize_scope(None).unwrap(), "public");
        assert_eq!(normalize_scope(Some(" public public ")).unwrap(), "public");
        assert_eq!(
            normalize_scope(Some("admin")).unwrap_err().error,
            "invalid_scope"
        );
    }
}
