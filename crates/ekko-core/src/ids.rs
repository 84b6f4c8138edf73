//! Identifiers. Each one validates on construction so that the rest of the code can trust it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;

/// An account's public identifier: the UUID published as `user.uid` in access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub Uuid);

impl AccountId {
    pub fn new_random() -> Self {
        AccountId(Uuid::new_v4())
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Uuid::parse_str(s.trim())
            .map(AccountId)
            .map_err(|_| DomainError::invalid("id", format!("'{s}' is not an account id (a UUID)")))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lower-case, hyphenated: the form Munic publishes in `user.uid`.
        write!(f, "{}", self.0.hyphenated())
    }
}

/// A device identifier: a 15-digit IMEI whose last digit is the Luhn check digit.
///
/// Devices are physical objects, so an IMEI is unique across all tenants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Imei(String);

impl Imei {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if s.len() != 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::invalid(
                "imei",
                format!("'{s}' is not an IMEI: an IMEI is exactly 15 digits"),
            ));
        }
        if !luhn_valid(s) {
            return Err(DomainError::invalid(
                "imei",
                format!("'{s}' is not an IMEI: its check digit (the last one) does not match"),
            ));
        }
        Ok(Imei(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Imei {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Imei::parse(&s)
    }
}

impl From<Imei> for String {
    fn from(i: Imei) -> String {
        i.0
    }
}

impl fmt::Display for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Computes the Luhn check digit for 14 leading digits (used by the simulator and demo).
pub fn imei_with_check_digit(first14: &str) -> Result<Imei, DomainError> {
    for d in 0..10 {
        let candidate = format!("{first14}{d}");
        if luhn_valid(&candidate) {
            return Imei::parse(&candidate);
        }
    }
    Err(DomainError::invalid(
        "imei",
        format!("'{first14}' is not 14 digits"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_imeis() {
        for s in ["359881234567899", "356307042441013", " 352094087982671 "] {
            assert!(Imei::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_wrong_length_letters_and_bad_check_digit() {
        let e = Imei::parse("12345").unwrap_err().to_string();
        assert!(e.contains("15 digits"), "{e}");
        assert!(Imei::parse("35988123456789a").is_err());
        let e = Imei::parse("359881234567898").unwrap_err().to_string();
        assert!(e.contains("check digit"), "{e}");
    }

    #[test]
    fn check_digit_is_computed() {
        assert_eq!(
            imei_with_check_digit("35988123456789").unwrap().as_str(),
            "359881234567899"
        );
    }

    #[test]
    fn account_id_round_trips_lowercase() {
        let id = AccountId::parse("9EF074F3-7952-45A3-BAB1-D9B91B1746FA").unwrap();
        assert_eq!(id.to_string(), "9ef074f3-7952-45a3-bab1-d9b91b1746fa");
    }
}
