//! Accounts: the people who sign in to Connect and call the API.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::AccountId;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// Normalized (trimmed, lower-cased); unique.
    pub email: String,
    pub full_name: String,
    /// An argon2id PHC string. Never leaves the server.
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub const MAX_FULL_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;

/// Normalizes and checks an email address. Emails compare case-insensitively.
pub fn normalize_email(email: &str) -> Result<String, DomainError> {
    // NFC first, so that visually identical addresses (composed or decomposed accents) are one
    // account; then lower-case, since emails compare case-insensitively here.
    let e = unicode_normalization::UnicodeNormalization::nfc(email.trim())
        .collect::<String>()
        .to_lowercase();
    if e.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "email",
            "an email address must not contain control characters",
        ));
    }
    let bad = || {
        DomainError::invalid(
            "email",
            format!("'{}' is not an email address", email.trim()),
        )
    };
    if e.is_empty() || e.chars().count() > MAX_EMAIL_CHARS || e.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(e)
}

pub fn validate_full_name(name: &str) -> Result<String, DomainError> {
    let n = name.trim();
    if n.is_empty() {
        return Err(DomainError::invalid(
            "full_name",
            "full_name must not be empty",
        ));
    }
    if n.chars().count() > MAX_FULL_NAME_CHARS {
        return Err(DomainError::invalid(
            "full_name",
            format!("full_name is longer than {MAX_FULL_NAME_CHARS} characters"),
        ));
    }
    if n.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "full_name",
            "full_name must not contain control characters",
        ));
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email(" John.Doe@Example.COM ").unwrap(),
            "john.doe@example.com"
        );
        for bad in [
            "",
            "no-at",
            "@x.com",
            "a@",
            "a b@c.d",
            "a@b@c",
            "ctl\u{1b}[31m@x.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn composed_and_decomposed_accents_are_one_address() {
        assert_eq!(
            normalize_email("u\u{0308}n@exa\u{0308}mple.com").unwrap(),
            normalize_email("ün@exämple.com").unwrap()
        );
    }

    #[test]
    fn full_name_rules() {
        assert_eq!(validate_full_name("  Ada  ").unwrap(), "Ada");
        assert!(validate_full_name("   ").is_err());
        assert!(validate_full_name(&"x".repeat(201)).is_err());
        assert!(validate_full_name("a\nb").is_err());
    }
}
