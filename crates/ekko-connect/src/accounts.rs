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
