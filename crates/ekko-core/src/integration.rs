//! Integrations (machine callers that push device data, e.g. a CloudConnect webhook) and
//! pending devices (unknown devices that tried to send data, listed for an admin to claim).
//!
//! An integration belongs to one account and may push events only for that account's devices.
//! It authenticates with a secret `eki_<id>_<64 hex>`: the id finds the row, and the secret is
//! checked against the stored SHA-256 hash with a constant-time comparison. Only the hash is
//! stored; the secret is shown once, when the integration is created.
//!
//! Unknown devices are refused by every protocol, and each refusal is counted here (one row per
//! IMEI and protocol, with first/last seen and the number of attempts), so that an admin can
//! claim the device (`ekko device pending`, then `ekko device create`).

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::account::normalize_email;
use crate::error::DomainError;
use crate::ids::{AccountId, Imei};
use crate::service::Ekko;
use crate::time::{Timestamp, now_ms};

/// An integration as stored: never its secret, only the secret's SHA-256 (hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    /// 16 lower-case hex digits, public (it is part of the secret).
    pub id: String,
    pub account: AccountId,
    pub secret_hash: String,
    pub created_at: Timestamp,
}

/// An authenticated integration: what a handler passes back to the domain.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrationCaller {
    pub id: String,
    pub account: AccountId,
}

/// An unknown device that tried to send data over `protocol`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingDevice {
    pub imei: Imei,
    pub protocol: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub attempts: i64,
}

/// Most pending devices kept: refusals of new IMEIs beyond this are counted in the log only,
/// so that a flood of made-up IMEIs cannot grow the database without bound.
pub const MAX_PENDING_DEVICES: i64 = 10_000;

const SECRET_PREFIX: &str = "eki_";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of an integration secret. The secret has 256 random bits, so a fast hash is
/// enough: it cannot be guessed, and a stolen database does not yield usable secrets.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A fresh `(id, secret)` pair.
fn new_secret() -> (String, String) {
    let mut id = [0u8; 8];
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut key);
    let id = hex(&id);
    let secret = format!("{SECRET_PREFIX}{id}_{}", hex(&key));
    (id, secret)
}

/// The id part of a well-formed secret.
fn secret_id(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(SECRET_PREFIX)?;
    let (id, key) = rest.split_once('_')?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (id.len() == 16 && key.len() == 64 && lower_hex(id) && lower_hex(key)).then_some(id)
}

fn bad_secret() -> DomainError {
    DomainError::Unauthenticated(
        "a valid integration secret is required: send 'Authorization: Bearer <secret>' (create one with: ekko integration create --account EMAIL)"
            .into(),
    )
}

impl Ekko {
    /// Creates an integration for the account with `owner_email` (an administrator's
    /// operation). Returns it with its secret, which is not stored and cannot be shown again.
    pub async fn create_integration(
        &self,
        owner_email: &str,
    ) -> Result<(Integration, String), DomainError> {
        let email = normalize_email(owner_email)?;
        let owner = self
            .store()
            .account_by_email(&email)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no account with email {email}")))?;
        let (id, secret) = new_secret();
        let integration = Integration {
            id,
            account: owner.id,
            secret_hash: hash_secret(&secret),
            created_at: now_ms(),
        };
        self.store().insert_integration(&integration).await?;
        Ok((integration, secret))
    }

    /// Who is pushing: the integration whose secret this is. Any malformed, unknown or wrong
    /// secret gets the same `Unauthenticated` error; the comparison is constant-time.
    pub async fn authenticate_integration(
        &self,
        secret: &str,
    ) -> Result<IntegrationCaller, DomainError> {
        let id = secret_id(secret.trim()).ok_or_else(bad_secret)?;
        let presented = hash_secret(secret.trim());
        let stored = self.store().integration_by_id(id).await?;
        // Compare against a dummy hash when the id is unknown, so both paths do the same work.
        let expected = stored
            .as_ref()
            .map(|i| i.secret_hash.clone())
            .unwrap_or_else(|| "0".repeat(64));
        let equal: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        match stored {
            Some(i) if equal => Ok(IntegrationCaller {
                id: i.id,
                account: i.account,
            }),
            _ => Err(bad_secret()),
        }
    }

    /// May `integration` push data for `imei`? Only for a device its account manages (the
    /// manager role on the device's group); unknown and foreign devices are refused alike (an
    /// unknown one is also recorded as pending), and a suspended one is refused too.
    pub async fn authorize_integration_device(
        &self,
        integration: &IntegrationCaller,
        imei: &Imei,
        protocol: &str,
    ) -> Result<(), DomainError> {
        self.authorize_integration_devices(integration, std::slice::from_ref(imei), protocol)
            .await?
            .pop()
            .unwrap_or_else(|| Err(DomainError::Internal("no verdict for the device".into())))
    }

    /// [`Ekko::authorize_integration_device`] for each of `imeis` (one verdict each, in order),
    /// with the integration's rights computed once for them all. The outer error is a storage
    /// failure.
    pub async fn authorize_integration_devices(
        &self,
        integration: &IntegrationCaller,
        imeis: &[Imei],
        protocol: &str,
    ) -> Result<Vec<Result<(), DomainError>>, DomainError> {
        let mut access = None;
        let mut verdicts = Vec::with_capacity(imeis.len());
        for imei in imeis {
            let device = self.known_device(imei).await?.map(|k| k.device);
            let allowed = match &device {
                Some(d) => {
                    if access.is_none() {
                        access = Some(self.access_of(integration.account).await?);
                    }
                    access
                        .as_ref()
                        .is_some_and(|a| a.can(d.group, crate::fleet::Role::Manager))
                }
                None => false,
            };
            verdicts.push(if allowed {
                match device {
                    // Refused here, before anything of the batch is stored, rather than midway.
                    Some(d) if d.status == crate::fleet::DeviceStatus::Suspended => {
                        Err(DomainError::Forbidden(format!(
                            "device {imei} is suspended: its data is refused until a manager sets its status back to active"
                        )))
                    }
                    _ => Ok(()),
                }
            } else {
                if device.is_none() {
                    self.record_unknown_device(imei, protocol).await;
                }
                Err(DomainError::Forbidden(format!(
                    "device {imei} is unknown or does not belong to this integration's account"
                )))
            });
        }
        Ok(verdicts)
    }

    /// Counts a refused attempt by an unregistered device, for `ekko device pending`. Every
    /// protocol calls this on its refusal path. Best effort: a storage failure is logged, and
    /// the device is refused anyway.
    pub async fn record_unknown_device(&self, imei: &Imei, protocol: &str) {
        tracing::info!(%imei, protocol, "refused an unknown device");
        if let Err(e) = self
            .store()
            .record_pending_device(imei, protocol, now_ms(), MAX_PENDING_DEVICES)
            .await
        {
            tracing::warn!(%imei, protocol, error = %e, "could not record a pending device");
        }
    }

    /// Unknown devices that tried to send data, most recently seen first (an admin operation).
    pub async fn pending_devices(&self) -> Result<Vec<PendingDevice>, DomainError> {
        Ok(self.store().pending_devices().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_secret_is_well_formed_and_names_its_id() {
        let (id, secret) = new_secret();
        assert_eq!(secret_id(&secret), Some(id.as_str()));
        assert_eq!(hash_secret(&secret).len(), 64);
    }

    #[test]
    fn malformed_secrets_have_no_id() {
        for s in [
            "",
            "eki_",
            "eki_0123456789abcdef",
            "eki_0123456789abcdef_00",
            "xyz_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "eki_0123456789ABCDEF_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(secret_id(s), None, "{s}");
        }
    }
}
