//! The caller of a socket and when its token stops being valid, so that every transport can
//! close a socket whose token expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ekko_connect::{AuthError, TokenService};
use ekko_core::Caller;
use tokio::time::Instant;

/// A verified caller and the instant its access token expires.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub caller: Caller,
    pub expires_at: Option<Instant>,
}

/// Close code every socket transport uses when the caller's access token expires.
pub const TOKEN_EXPIRED_CODE: u16 = 4401;
pub const TOKEN_EXPIRED_REASON: &str =
    "the access token expired: reconnect with a fresh token (refresh_token grant)";

/// Verifies an `Authorization` value (`Bearer <jwt>`, or a bare token) and reads its expiry.
pub fn authenticate(tokens: &TokenService, value: &str) -> Result<Authenticated, AuthError> {
    let caller = tokens.verify_authorization(value)?;
    // The signature and `exp` were checked above; this only reads `exp` to schedule the close.
    let expires_at = ekko_connect::tokens::bearer_token(value)
        .and_then(jwt_exp)
        .map(instant_of_unix);
    Ok(Authenticated { caller, expires_at })
}

fn jwt_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

fn instant_of_unix(exp: i64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let left = Duration::from_secs(exp.saturating_sub(now_unix).max(0) as u64);
    Instant::now() + left
}

/// Sleeps until `at`, or forever when there is no expiry.
pub async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_from_a_jwt_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"exp":1764787200,"scope":"public"}"#);
        assert_eq!(jwt_exp(&format!("h.{payload}.s")), Some(1764787200));
        assert_eq!(jwt_exp("garbage"), None);
    }
}
