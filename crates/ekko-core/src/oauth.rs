//! Connect's domain: OAuth applications (clients), authorization codes, consents, and the
//! authorization decisions about them (who may register, list, or authorize an application).
//!
//! [`OAuthRegistry`] is the service Connect's transports call; [`OAuthStore`] is its port.
//! Secrets and codes arrive here already hashed: this crate never sees a secret in clear.

use std::sync::Arc;

use async_trait::async_trait;

use crate::account::{Account, normalize_email};
use crate::error::DomainError;
use crate::ids::AccountId;
use crate::ports::StoreResult;
use crate::service::{Caller, Ekko};
use crate::time::{Timestamp, now_ms};

pub const MAX_APP_NAME_CHARS: usize = 200;
pub const MAX_REDIRECT_URIS: usize = 20;
pub const MAX_REDIRECT_URI_CHARS: usize = 2000;
pub const MAX_AUTHORIZED_USERS: usize = 1000;

/// A registered OAuth client.
#[derive(Clone, Debug, PartialEq)]
pub struct Application {
    /// The client id: 64 lower-case hex characters.
    pub uid: String,
    /// SHA-256 (hex) of the client secret; the secret itself is shown once and never stored.
    pub secret_hash: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Confidential clients must authenticate with their secret; public ones (SPAs, native
    /// apps) present only their id and rely on PKCE.
    pub confidential: bool,
    /// Private applications may only be authorized by their owner and `authorized_users`.
    pub private: bool,
    /// Normalized emails.
    pub authorized_users: Vec<String>,
    pub owner: AccountId,
    pub created_at: Timestamp,
}

/// What a caller asks to register.
#[derive(Clone, Debug, Default)]
pub struct NewApplication {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub confidential: bool,
    pub private: bool,
    pub authorized_users: Vec<String>,
}

/// An authorization code as stored (only its hash).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub account: AccountId,
    pub redirect_uri: String,
    pub scope: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// OIDC nonce, echoed in the ID token.
    pub nonce: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What consuming an authorization code found.
#[derive(Clone, Debug, PartialEq)]
pub enum CodeOutcome {
    /// The code was unused and is now spent.
    Consumed(AuthorizationCode),
    /// The code had been used already: the tokens issued from it have been revoked.
    Replayed,
    Unknown,
}

/// A refresh token as Connect stores it (hash only), with the client it was issued to.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshGrant {
    pub token_hash: String,
    pub family: String,
    pub account: Option<AccountId>,
    pub client_id: Option<String>,
    pub scope: String,
    pub created_at: Timestamp,
}

/// What presenting a refresh token for rotation did.
#[derive(Clone, Debug, PartialEq)]
pub enum RefreshOutcome {
    Rotated {
        account: AccountId,
        scope: String,
        family: String,
    },
    /// Spent or revoked: the family is revoked now.
    Reused,
    /// The token was spent moments ago by a concurrent rotation (a retried or duplicated
    /// request): refused, but its family is left alone so the winner's new token keeps working.
    RecentlyRotated,
    /// The token belongs to another client (nothing changed).
    WrongClient,
    Unknown,
}

/// How refresh tokens rotate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RotationMode {
    /// The presented token is spent at once; presenting it again revokes its family.
    #[default]
    Immediate,
    /// Doorkeeper's "revoke on use": the presented token stays valid until its successor is
    /// used, which gives a client that lost a refresh response a grace window.
    RevokeOnUse,
}

/// Storage for Connect's objects.
#[async_trait]
pub trait OAuthStore: Send + Sync + 'static {
    async fn insert_application(&self, app: &Application) -> StoreResult<()>;
    async fn application(&self, uid: &str) -> StoreResult<Option<Application>>;
    async fn applications_of(&self, owner: AccountId) -> StoreResult<Vec<Application>>;

    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Atomically spends a code. A replay revokes the refresh family issued from it (the
    /// family id is the code hash).
    async fn consume_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeOutcome>;

    async fn has_consent(
        &self,
        account: AccountId,
        client_id: &str,
        scope: &str,
    ) -> StoreResult<bool>;
    async fn insert_consent(
        &self,
        account: AccountId,
        client_id: &str,
        scope: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    async fn insert_refresh(&self, grant: &RefreshGrant) -> StoreResult<()>;
    /// Rotates a refresh token presented by `client` (None: no client authenticated). Two
    /// concurrent rotations of one token: exactly one wins (in `Immediate` mode).
    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        replacement_hash: &str,
        client: Option<&str>,
        mode: RotationMode,
        now: Timestamp,
    ) -> StoreResult<RefreshOutcome>;
    /// The live refresh token with this hash, if any.
    async fn refresh_grant(&self, token_hash: &str) -> StoreResult<Option<RefreshGrant>>;
    /// Revokes a refresh token's whole family.
    async fn revoke_refresh_family(&self, family: &str, now: Timestamp) -> StoreResult<()>;

    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    /// Revoked access tokens that have not expired yet.
    async fn revoked_access_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>>;

    async fn update_password_hash(
        &self,
        account: AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

/// Connect's domain service.
#[derive(Clone)]
pub struct OAuthRegistry {
    ekko: Ekko,
    store: Arc<dyn OAuthStore>,
}

fn require(caller: Option<&Caller>) -> Result<&Caller, DomainError> {
    caller.ok_or_else(|| {
        DomainError::Unauthenticated(
            "authentication required: send 'Authorization: Bearer <access token>'".into(),
        )
    })
}

/// A redirect URI must be absolute, without a fragment; plain http only for loopback hosts
/// or custom schemes of native apps (RFC 8252).
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let u = uri.trim();
    if u.is_empty() || u.len() > MAX_REDIRECT_URI_CHARS {
        return Err(format!(
            "a redirect URI must be 1 to {MAX_REDIRECT_URI_CHARS} characters"
        ));
    }
    if u.contains('#') {
        return Err(format!("redirect URI '{u}' must not contain a fragment"));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("redirect URI '{u}' must not contain spaces"));
    }
    let Some((scheme, rest)) = u.split_once(':') else {
        return Err(format!(
            "redirect URI '{u}' must be absolute (scheme://...)"
        ));
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(format!("redirect URI '{u}' has no valid scheme"));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "javascript" || scheme == "data" {
        return Err(format!("redirect URI '{u}' uses a forbidden scheme"));
    }
    if scheme == "http" || scheme == "https" {
        let host = rest
            .strip_prefix("//")
            .ok_or_else(|| format!("redirect URI '{u}' must be absolute (scheme://host/...)"))?;
        let host = host.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() {
            return Err(format!("redirect URI '{u}' has no host"));
        }
    }
    Ok(())
}

impl OAuthRegistry {
    pub fn new(ekko: Ekko, store: Arc<dyn OAuthStore>) -> Self {
        OAuthRegistry { ekko, store }
    }

    pub fn ekko(&self) -> &Ekko {
        &self.ekko
    }

    pub fn store(&self) -> &Arc<dyn OAuthStore> {
        &self.store
    }

    /// Registers an application for the caller. `uid` and `secret_hash` come from Connect.
    pub async fn register_application(
        &self,
        caller: Option<&Caller>,
        new: NewApplication,
        uid: String,
        secret_hash: String,
    ) -> Result<Application, DomainError> {
        let caller = require(caller)?;
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > MAX_APP_NAME_CHARS {
            return Err(DomainError::invalid(
                "name",
                format!("name must be 1 to {MAX_APP_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "name",
                "name must not contain control characters",
            ));
        }
        if new.redirect_uris.is_empty() || new.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(DomainError::invalid(
                "redirect_uris",
                format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"),
            ));
        }
        let mut uris = Vec::new();
        for u in &new.redirect_uris {
            validate_redirect_uri(u).map_err(|m| DomainError::invalid("redirect_uris", m))?;
            let u = u.trim().to_owned();
            if !uris.contains(&u) {
                uris.push(u);
            }
        }
        if new.authorized_users.len() > MAX_AUTHORIZED_USERS {
            return Err(DomainError::invalid(
                "authorized_users",
                format!("authorized_users may list at most {MAX_AUTHORIZED_USERS} emails"),
            ));
        }
        let mut users = Vec::new();
        for e in &new.authorized_users {
            let e = normalize_email(e)
                .map_err(|m| DomainError::invalid("authorized_users", m.to_string()))?;
            if !users.contains(&e) {
                users.push(e);
            }
        }
        let app = Application {
            uid,
            secret_hash,
            name: name.to_owned(),
            redirect_uris: uris,
            confidential: new.confidential,
            private: new.private,
            authorized_users: users,
            owner: caller.account,
            created_at: now_ms(),
        };
        self.store.insert_application(&app).await?;
        Ok(app)
    }

    /// The caller's applications.
    pub async fn applications(
        &self,
        caller: Option<&Caller>,
    ) -> Result<Vec<Application>, DomainError> {
        let caller = require(caller)?;
        Ok(self.store.applications_of(caller.account).await?)
    }

    /// An application by client id (for client authentication; not an API listing).
    pub async fn application(&self, uid: &str) -> Result<Option<Application>, DomainError> {
        if uid.len() > 128 {
            return Ok(None);
        }
        Ok(self.store.application(uid).await?)
    }

    /// May `account` authorize `app`? Public apps: anyone. Private apps: the owner and the
    /// allow-list.
    pub fn may_authorize(&self, account: &Account, app: &Application) -> Result<(), DomainError> {
        if !app.private || app.owner == account.id || app.authorized_users.contains(&account.email)
        {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "the application '{}' is private and {} is not among its authorized users",
                app.name, account.email
            )))
        }
    }

    /// The caller changes their own password; `check` verifies the current one (Connect owns
    /// password hashing), `new_hash` is the new argon2id hash.
    pub async fn change_password(
        &self,
        caller: Option<&Caller>,
        current_ok: bool,
        new_hash: String,
    ) -> Result<(), DomainError> {
        let caller = require(caller)?;
        if !current_ok {
            return Err(DomainError::invalid(
                "current_password",
                "the current password is wrong",
            ));
        }
        if self
            .store
            .update_password_hash(caller.account, &new_hash, now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound(
                "your account no longer exists".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_absolute_without_fragment() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8080/callback",
            "com.example.app:/oauth",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/relative",
            "https://x.com/cb#frag",
            "javascript:alert(1)",
            "https:///nohost",
            "https://a b",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
