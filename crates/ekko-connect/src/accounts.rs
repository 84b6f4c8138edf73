//! Account registration: the password policy and hashing Connect owns, then the domain call.
//! The CLI and (later) the sign-up API both go through here.

use ekko_core::account::Account;
use ekko_core::{DomainError, Ekko};

use crate::password;

pub async fn register(
    ekko: &Ekko,
    email: &str,
    password: &str,
    full_name: &str,
) -> Result<Account, DomainError> {
    password::check_policy(password).map_err(|m| DomainError::invalid("password", m))?;
    // Validate the cheap fields before paying for argon2.
    ekko_core::account::normalize_email(email)?;
    ekko_core::account::validate_full_name(full_name)?;
    let hash = password::hash(password.to_owned())
        .await
        .map_err(DomainError::Internal)?;
    ekko.create_account(email, full_name, hash).await
}

/// The caller changes their password: the current one is checked (with the sign-in rate
/// limits), the new one must meet the policy.
pub async fn change_password(
    tokens: &crate::TokenService,
    caller: &ekko_core::Caller,
    current: &str,
    new: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(), crate::OAuthError> {
    use crate::OAuthError;
    let account = tokens
        .ekko()
        .account(Some(caller), None)
        .await
        .map_err(|e| OAuthError::invalid_token(e.to_string()))?;
    let ok = match tokens.check_password(&account.email, current, ip).await {
        Ok(_) => true,
        Err(e) if e.status.as_u16() == 429 => return Err(e),
        Err(_) => false,
    };
    if !ok {
        return Err(OAuthError::invalid_request("the current password is wrong"));
    }
    password::check_policy(new).map_err(OAuthError::invalid_request)?;
    let hash = password::hash(new.to_owned())
        .await
        .map_err(OAuthError::server_error)?;
    tokens
        .registry()
        .change_password(Some(caller), true, hash)
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))
}
