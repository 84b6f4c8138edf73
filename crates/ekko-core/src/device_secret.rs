//! Optional per-device secrets, for the protocols that can carry one (OsmAnd: `key=` in the
//! URL). A device with a secret must present it with every report; a device without one is
//! identified by its IMEI alone. Only the secret's SHA-256 is stored (it has 256 random bits,
//! so a fast hash suffices); the comparison is constant-time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Ekko;
use crate::error::DomainError;
use crate::ids::Imei;

const PREFIX: &str = "eds_";

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Ekko {
    /// Gives a registered device a fresh secret (replacing any previous one) and returns it:
    /// it is not stored and cannot be shown again.
    pub async fn set_device_secret(&self, imei: &str) -> Result<String, DomainError> {
        let imei = Imei::parse(imei)?;
        self.require_registered(&imei).await?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let secret = format!(
            "{PREFIX}{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        self.store()
            .set_device_secret_hash(&imei, Some(&hash(&secret)))
            .await?;
        self.device_changed();
        Ok(secret)
    }

    /// Removes a device's secret: it is identified by its IMEI alone again.
    pub async fn clear_device_secret(&self, imei: &str) -> Result<(), DomainError> {
        let imei = Imei::parse(imei)?;
        self.require_registered(&imei).await?;
        self.store().set_device_secret_hash(&imei, None).await?;
        self.device_changed();
        Ok(())
    }

    /// Checks the key a device presented. A device without a secret passes (whatever it
    /// sent); one with a secret needs exactly that secret. Unknown devices pass here: ingestion
    /// refuses them next (and lists them as pending).
    pub async fn check_device_key(
        &self,
        imei: &Imei,
        presented: Option<&str>,
    ) -> Result<(), DomainError> {
        let Some(expected) = self.device_secret_hash(imei).await? else {
            return Ok(());
        };
        let presented = presented.map(hash).unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(DomainError::Unauthenticated(format!(
                "device {imei} has a secret: send it as key=<secret> in the URL (ekko device secret --imei {imei} makes a new one)"
            )))
        }
    }
}
