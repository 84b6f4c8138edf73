//! Grants and access tokens.
//!
//! Access tokens are RS256 JWTs shaped like Munic's (`{exp, scope, user: {uid}}`) plus the
//! registered claims a verifier needs (`iss`, `iat`, `jti`, `sub`). Refresh tokens are opaque
//! random strings; only their SHA-256 is stored, and each use rotates them.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ekko_core::ports::{RefreshTokenRecord, RotateOutcome};
use ekko_core::time::now_ms;
use ekko_core::{AccountId, Caller, Ekko};
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::OAuthError;
use crate::keys::SigningKeys;
use crate::password;

/// Access-token lifetime, as Munic documents it.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 7200;
/// Scopes Ekko knows. `public` is the default and grants the whole v2 API for the caller's data.
pub const SUPPORTED_SCOPES: &[&str] = &["public"];
pub const DEFAULT_SCOPE: &str = "public";

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
    pub user: UserClaim,
}

/// The body of a successful token response.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: String,
    pub created_at: i64,
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
    #[error("the access token is invalid: {0}")]
    Invalid(String),
}

pub struct TokenService {
    ekko: Ekko,
    keys: Arc<SigningKeys>,
    issuer: String,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Refresh tokens are looked up by this hash; a stolen database does not yield usable tokens.
pub fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

impl TokenService {
    pub fn new(ekko: Ekko, keys: Arc<SigningKeys>, issuer: String) -> Self {
        TokenService { ekko, keys, issuer }
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn sign_access_token(
        &self,
        account: AccountId,
        scope: &str,
        now: i64,
    ) -> Result<String, OAuthError> {
        let key = self.keys.current();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(key.kid.clone());
        let uid = account.to_string();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: uid.clone(),
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scope.to_owned(),
            user: UserClaim { uid },
        };
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| {
            tracing::error!(error = %e, "signing an access token failed");
            OAuthError::server_error("could not sign the access token")
        })
    }

    async fn issue(
        &self,
        account: AccountId,
        scope: String,
        refresh_token: String,
    ) -> Result<TokenResponse, OAuthError> {
        let now = now_ms().timestamp();
        Ok(TokenResponse {
            access_token: self.sign_access_token(account, &scope, now)?,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            refresh_token,
            scope,
            created_at: now,
        })
    }

    /// `grant_type=password`.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = normalize_scope(scope)?;
        let account = self
            .ekko
            .account_for_sign_in(username)
            .await
            .map_err(|e| OAuthError::server_error(e.to_string()))?;
        let ok = password::verify(
            password.to_owned(),
            account.as_ref().map(|a| a.password_hash.clone()),
        )
        .await;
        let account = match (ok, account) {
            (true, Some(a)) => a,
            _ => {
                return Err(OAuthError::invalid_grant(
                    "the username or password is wrong",
                ));
            }
        };
        let refresh = random_token();
        self.ekko
            .store()
            .insert_refresh_token(&RefreshTokenRecord {
                token_hash: hash_refresh_token(&refresh),
                family: uuid::Uuid::new_v4().to_string(),
                account: account.id,
                scope: scope.clone(),
                created_at: now_ms(),
            })
            .await
            .map_err(|e| OAuthError::server_error(ekko_core::DomainError::from(e).to_string()))?;
        self.issue(account.id, scope, refresh).await
    }

    /// `grant_type=refresh_token`: rotates the token. Presenting a spent token revokes its family.
    pub async fn refresh_grant(
        &self,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let next = random_token();
        let replacement = RefreshTokenRecord {
            token_hash: hash_refresh_token(&next),
            family: String::new(), // the store keeps the presented token's family
            account: AccountId(uuid::Uuid::nil()),
            scope: String::new(),
            created_at: now_ms(),
        };
        let outcome = self
            .ekko
            .store()
            .rotate_refresh_token(&hash_refresh_token(refresh_token), &replacement)
            .await
            .map_err(|e| OAuthError::server_error(ekko_core::DomainError::from(e).to_string()))?;
        let (account, granted) = match outcome {
            RotateOutcome::Rotated { account, scope } => (account, scope),
            RotateOutcome::Reused => {
                tracing::warn!(
                    "a spent refresh token was presented again; its token family is revoked"
                );
                return Err(OAuthError::invalid_grant(
                    "the refresh token was already used or revoked; sign in again (for safety, tokens issued from it are revoked too)",
                ));
            }
            RotateOutcome::Unknown => {
                return Err(OAuthError::invalid_grant("the refresh token is invalid"));
            }
        };
        // A refresh may narrow the scope but never widen it (RFC 6749 §6).
        let scope = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => granted,
            Some(req) => {
                let req = normalize_scope(Some(req))?;
                if !req.split(' ').all(|s| granted.split(' ').any(|g| g == s)) {
                    return Err(OAuthError::invalid_scope(
                        "a refresh cannot ask for scopes the original grant did not have",
                    ));
                }
                req
            }
        };
        self.issue(account, scope, next).await
    }

    /// Verifies an access token (signature with the key named by `kid`, expiry, issuer).
    pub fn verify_access_token(&self, token: &str) -> Result<Caller, AuthError> {
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
        let account = AccountId::parse(&data.claims.user.uid)
            .map_err(|_| AuthError::Invalid("user.uid is not a UUID".into()))?;
        Ok(Caller {
            account,
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
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
