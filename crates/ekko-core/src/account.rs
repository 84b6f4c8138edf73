//! Accounts: the people who sign in to Connect and call the API.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::fleet::OrganizationId;
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
    /// The account's home organization: its own (created with it), or the one whose
    /// invitation it signed up with.
    pub organization: OrganizationId,
    pub profile: AccountProfile,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The last successful password sign-in (Connect's password grant or sign-in page).
    pub last_sign_in_at: Option<Timestamp>,
}

/// What an account may say about itself besides its name (Munic's `Account` fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountProfile {
    pub short_name: Option<String>,
    /// E.164: `+` then 8 to 15 digits.
    pub phone: Option<String>,
    pub company_name: Option<String>,
    /// ISO 3166-1 alpha-2, upper-case (`FR`).
    pub country_code: Option<String>,
    /// A BCP 47 tag (`en`, `fr-FR`).
    pub language: Option<String>,
    /// An IANA zone name (`Europe/Paris`) or `UTC`.
    pub time_zone: Option<String>,
}

/// An account about to be stored; the store gives it its organization.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAccount {
    pub id: AccountId,
    pub email: String,
    pub full_name: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// `account_update`: each `Some` replaces a field; for the optional ones `Some(None)` clears.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileUpdate {
    pub full_name: Option<String>,
    pub short_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub company_name: Option<Option<String>>,
    pub country_code: Option<Option<String>>,
    pub language: Option<Option<String>>,
    pub time_zone: Option<Option<String>>,
}

/// The raw `account_update` arguments, as a caller sent them (`""` clears an optional field).
#[derive(Clone, Debug, Default)]
pub struct ProfileChanges<'a> {
    pub full_name: Option<&'a str>,
    pub short_name: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub company_name: Option<&'a str>,
    pub country_code: Option<&'a str>,
    pub language: Option<&'a str>,
    pub time_zone: Option<&'a str>,
}

impl ProfileChanges<'_> {
    /// Checks every given field; the first broken rule is the error.
    pub fn validate(&self) -> Result<ProfileUpdate, DomainError> {
        use crate::fleet::check_optional;
        let format_checked =
            |field: &str, v: Option<&str>, ok: fn(&str) -> Option<String>, hint: &str| {
                match check_optional(field, v, 64)? {
                    Some(Some(v)) => ok(&v)
                        .map(|v| Some(Some(v)))
                        .ok_or_else(|| DomainError::invalid(field, format!("'{v}' is not {hint}"))),
                    other => Ok(other),
                }
            };
        let update = ProfileUpdate {
            full_name: self.full_name.map(validate_full_name).transpose()?,
            short_name: check_optional("short_name", self.short_name, 60)?,
            company_name: check_optional("company_name", self.company_name, 200)?,
            phone: format_checked(
                "phone",
                self.phone,
                normalize_phone,
                "a phone number in E.164 form, e.g. +33612345678",
            )?,
            country_code: format_checked(
                "country_code",
                self.country_code,
                normalize_country,
                "an ISO 3166-1 alpha-2 country code, e.g. FR",
            )?,
            language: format_checked(
                "language",
                self.language,
                normalize_language,
                "a language tag, e.g. en or fr-FR",
            )?,
            time_zone: format_checked(
                "time_zone",
                self.time_zone,
                check_time_zone,
                "a time zone name, e.g. Europe/Paris or UTC",
            )?,
        };
        if update == ProfileUpdate::default() {
            return Err(DomainError::invalid(
                "account_update",
                "account_update needs at least one field to change (full_name, short_name, phone, company_name, country_code, language, time_zone)",
            ));
        }
        Ok(update)
    }
}

fn normalize_phone(s: &str) -> Option<String> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.'))
        .collect();
    let rest = digits.strip_prefix('+')?;
    (rest.len() >= 8 && rest.len() <= 15 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

fn normalize_country(s: &str) -> Option<String> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic())).then(|| s.to_ascii_uppercase())
}

fn normalize_language(s: &str) -> Option<String> {
    let mut parts = s.split(['-', '_']);
    let primary = parts.next()?;
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = primary.to_ascii_lowercase();
    for p in parts {
        if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        out.push('-');
        out.push_str(&if p.len() == 2 {
            p.to_ascii_uppercase()
        } else {
            p.to_owned()
        });
    }
    Some(out)
}

/// The shape of an IANA zone name (`Area/Location`, `UTC`): Ekko stores it for clients to
/// display in; it never computes with it, so it carries no zone database.
fn check_time_zone(s: &str) -> Option<String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
    };
    let parts: Vec<&str> = s.split('/').collect();
    let single = ["UTC", "GMT", "Etc/UTC"].contains(&s);
    (single || (parts.len() >= 2 && parts.len() <= 3 && parts.iter().all(|p| ok_part(p))))
        .then(|| s.to_owned())
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
    fn profile_fields_are_checked_and_normalized() {
        let u = ProfileChanges {
            phone: Some("+33 6 12 34 56 78"),
            country_code: Some("fr"),
            language: Some("fr_fr"),
            time_zone: Some("Europe/Paris"),
            short_name: Some(""),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(u.phone, Some(Some("+33612345678".into())));
        assert_eq!(u.country_code, Some(Some("FR".into())));
        assert_eq!(u.language, Some(Some("fr-FR".into())));
        assert_eq!(u.short_name, Some(None));
        for bad in [
            ProfileChanges {
                phone: Some("0612"),
                ..Default::default()
            },
            ProfileChanges {
                country_code: Some("FRA"),
                ..Default::default()
            },
            ProfileChanges {
                time_zone: Some("Paris time"),
                ..Default::default()
            },
            ProfileChanges::default(),
        ] {
            assert_eq!(bad.validate().unwrap_err().code(), "BAD_USER_INPUT");
        }
    }

    #[test]
    fn full_name_rules() {
        assert_eq!(validate_full_name("  Ada  ").unwrap(), "Ada");
        assert!(validate_full_name("   ").is_err());
        assert!(validate_full_name(&"x".repeat(201)).is_err());
        assert!(validate_full_name("a\nb").is_err());
    }
}
