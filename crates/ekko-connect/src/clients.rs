//! OAuth clients (applications): credentials and client authentication.
//!
//! Client ids and secrets are 64 hex characters (256 random bits each, as Munic's). The secret
//! is shown once and stored as its SHA-256: for 256-bit random secrets a fast hash is as safe as
//! a slow one, and keeps the token endpoint fast. Comparisons are constant-time.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekko_core::oauth::{Application, OAuthRegistry};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::error::OAuthError;
use crate::tokens::sha256_hex;

fn random_hex64() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new client id and secret.
pub fn new_credentials() -> (String, String) {
    (random_hex64(), random_hex64())
}

/// Does `secret` hash to `stored_hash`? Constant-time in the hash comparison.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    sha256_hex(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Client credentials as presented, before they are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
}

fn form_decode(s: &str) -> Result<String, OAuthError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={s}"))
        .ok()
        .and_then(|v| v.into_iter().next().map(|(_, v)| v))
        .ok_or_else(|| OAuthError::invalid_client("the Basic credentials are malformed"))
}

/// Reads client credentials from an `Authorization: Basic` value or body parameters
/// (`client_id`, `client_secret`). Using both mechanisms at once is refused (RFC 6749 §2.3).
pub fn presented(
    authorization: Option<&str>,
    params: &HashMap<String, String>,
) -> Result<Option<Presented>, OAuthError> {
    let basic = authorization
        .map(str::trim)
        .filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
    let body_id = params.get("client_id").filter(|v| !v.is_empty());
    let body_secret = params.get("client_secret").filter(|v| !v.is_empty());
    if let Some(b) = basic {
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "the client authenticated with more than one mechanism (HTTP Basic and client_secret); use one",
            ));
        }
        let raw = STANDARD
            .decode(b[6..].trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| OAuthError::invalid_client("the Basic credentials are malformed"))?;
        let (id, secret) = raw
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("the Basic credentials are malformed"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded.
        let (id, secret) = (form_decode(id)?, form_decode(secret)?);
        if body_id.is_some_and(|b| *b != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the HTTP Basic client",
            ));
        }
        return Ok(Some(Presented {
            client_id: id,
            secret: Some(secret),
        }));
    }
    Ok(body_id.map(|id| Presented {
        client_id: id.clone(),
        secret: body_secret.cloned(),
    }))
}

const INVALID_CLIENT: &str = "client authentication failed: unknown client, wrong secret, or no client authentication included";

/// Authenticates presented credentials. A confidential client must present its secret; a
/// public one presents its id only (a secret it presents must still be right).
pub async fn authenticate(
    registry: &OAuthRegistry,
    presented: Option<Presented>,
) -> Result<Option<Application>, OAuthError> {
    let Some(p) = presented else {
        return Ok(None);
    };
    let app = registry
        .application(&p.client_id)
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let Some(app) = app else {
        return Err(OAuthError::invalid_client(INVALID_CLIENT));
    };
    match p.secret.as_deref() {
        Some(s) if secret_matches(s, &app.secret_hash) => Ok(Some(app)),
        Some(_) => Err(OAuthError::invalid_client(INVALID_CLIENT)),
        None if !app.confidential => Ok(Some(app)),
        None => Err(OAuthError::invalid_client(
            "this client is confidential: authenticate with its client_secret (HTTP Basic or client_secret)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_64_hex_and_secrets_match_their_hash_only() {
        let (id, secret) = new_credentials();
        for v in [&id, &secret] {
            assert_eq!(v.len(), 64);
            assert!(
                v.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        let h = sha256_hex(&secret);
        assert!(secret_matches(&secret, &h));
        assert!(!secret_matches(&id, &h));
    }

    #[test]
    fn basic_and_body_credentials_are_read_and_mixing_them_is_refused() {
        let mut p = HashMap::new();
        let basic = format!("Basic {}", STANDARD.encode("my%20id:s%3Acret"));
        assert_eq!(
            presented(Some(&basic), &p).unwrap(),
            Some(Presented {
                client_id: "my id".into(),
                secret: Some("s:cret".into())
            })
        );
        p.insert("client_id".to_owned(), "abc".to_owned());
        assert_eq!(
            presented(None, &p).unwrap(),
            Some(Presented {
                client_id: "abc".into(),
                secret: None
            })
        );
        p.insert("client_secret".to_owned(), "x".to_owned());
        assert_eq!(
            presented(Some(&basic), &p).unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(
            presented(Some("Basic !!!"), &HashMap::new())
                .unwrap_err()
                .error,
            "invalid_client"
        );
    }
}
