//! Batch ingestion: many records from devices committed in one transaction, then published.
//!
//! A gateway that acknowledges a whole packet at once (Teltonika acks "N records") calls
//! [`Ekko::ingest_tracks`] and acknowledges only after it returned: by then every record of the
//! packet is durable. Resends are recognised (same device, same `recorded_at`, same content as
//! the device sent it) and stored once; the resend is still a success, so the device gets its ack.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Ekko;
use crate::error::DomainError;
use crate::fields::{
    DELAYED_AFTER_MS, EKKO_CLOCK_SKEW_MS, FUTURE_SKEW_MS, Field, FieldValue, MDI_RECORD_DELAYED,
    PAST_SKEW_MS,
};
use crate::ids::Imei;
use crate::notification::DeviceNotification;
use crate::time::{Timestamp, now_ms};
use crate::track::{MAX_FIELDS_PER_RECORD, MAX_RECORDS_PER_BATCH, NewTrack, TrackRecord};

/// What a batch ingestion did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IngestOutcome {
    /// Records stored (and published, in the order they were given) by this call.
    pub stored: usize,
    /// Records that were already stored (resends): not stored or published again.
    pub duplicates: usize,
}

/// The key that recognises a resent record: SHA-256 of its coordinates and fields as the device
/// sent them, serialized as JSON, in lower-case hex (the device and `recorded_at` are compared
/// separately). Stored with every track: its definition must not change, or resends that
/// straddle an upgrade would be stored twice.
pub fn dedup_key(record: &TrackRecord) -> String {
    let mut hasher = Sha256::new();
    // The JSON is written straight into the hash, never held in memory.
    serde_json::to_writer(&mut hasher, &(&record.coordinates, &record.fields))
        .expect("coordinates and fields always serialize");
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(digest.len() * 2);
    for b in digest {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    key
}

/// Adds Ekko's timing flags to a record received at `now` (see `fields`' table).
pub(super) fn flag_timing(record: &mut TrackRecord, now: &Timestamp) {
    let skew = record.recorded_at.timestamp_millis() - now.timestamp_millis();
    let has = |r: &TrackRecord, name: &str| r.fields.iter().any(|f| f.name == name);
    if -skew > DELAYED_AFTER_MS && !has(record, MDI_RECORD_DELAYED) {
        record
            .fields
            .push(Field::new(MDI_RECORD_DELAYED, FieldValue::Bool(true)));
    }
    if (skew > FUTURE_SKEW_MS || -skew > PAST_SKEW_MS) && !has(record, EKKO_CLOCK_SKEW_MS) {
        record
            .fields
            .push(Field::new(EKKO_CLOCK_SKEW_MS, FieldValue::Int(skew)));
    }
}

impl Ekko {
    /// Is this device registered? (A gateway's handshake asks before accepting a connection.)
    pub async fn device_is_registered(&self, imei: &Imei) -> Result<bool, DomainError> {
        Ok(self.store.device_by_imei(imei).await?.is_some())
    }

    /// Stores a batch of records from devices in one transaction (durable when this returns),
    /// then publishes the newly stored ones in order. Refused as a whole (nothing stored) if a
    /// record is invalid or names an unregistered device. Resends are not stored twice.
    pub async fn ingest_tracks(
        &self,
        records: Vec<TrackRecord>,
    ) -> Result<IngestOutcome, DomainError> {
        if records.len() > MAX_RECORDS_PER_BATCH {
            return Err(DomainError::invalid(
                "records",
                format!("a batch may carry at most {MAX_RECORDS_PER_BATCH} records"),
            ));
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.fields.len() > MAX_FIELDS_PER_RECORD)
        {
            return Err(DomainError::invalid(
                "fields",
                format!(
                    "a record may carry at most {MAX_FIELDS_PER_RECORD} fields (device {} sent {})",
                    r.imei,
                    r.fields.len()
                ),
            ));
        }
        let mut owners = BTreeMap::new();
        for r in &records {
            if !owners.contains_key(&r.imei) {
                let device = self.require_active(&r.imei).await?;
                owners.insert(r.imei.clone(), device.group);
            }
        }
        let now = now_ms();
        let batch: Vec<NewTrack> = records
            .into_iter()
            .map(|mut record| {
                let dedup_key = dedup_key(&record);
                flag_timing(&mut record, &now);
                NewTrack { record, dedup_key }
            })
            .collect();
        let given = batch.len();
        let stored = self.store.insert_tracks(batch, now).await?;
        let outcome = IngestOutcome {
            stored: stored.len(),
            duplicates: given - stored.len(),
        };
        for track in stored {
            self.publish(owners[&track.imei], DeviceNotification::Track(track));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_unix_ms;

    fn record(recorded_at: Timestamp) -> TrackRecord {
        TrackRecord {
            imei: Imei::parse("359881234567899").unwrap(),
            recorded_at,
            coordinates: None,
            fields: vec![],
        }
    }

    #[test]
    fn records_buffered_on_the_device_are_marked_delayed() {
        let now = from_unix_ms(1_700_000_000_000).unwrap();
        let mut r = record(from_unix_ms(1_700_000_000_000 - DELAYED_AFTER_MS - 1).unwrap());
        flag_timing(&mut r, &now);
        assert_eq!(
            r.fields,
            vec![Field::new(MDI_RECORD_DELAYED, FieldValue::Bool(true))]
        );
        let mut fresh = record(from_unix_ms(1_700_000_000_000 - 1000).unwrap());
        flag_timing(&mut fresh, &now);
        assert!(fresh.fields.is_empty());
    }

    #[test]
    fn records_from_the_future_or_far_past_carry_their_clock_skew() {
        let now = from_unix_ms(1_700_000_000_000).unwrap();
        let mut future = record(from_unix_ms(1_700_000_000_000 + FUTURE_SKEW_MS + 1).unwrap());
        flag_timing(&mut future, &now);
        assert_eq!(
            future.fields,
            vec![Field::new(
                EKKO_CLOCK_SKEW_MS,
                FieldValue::Int(FUTURE_SKEW_MS + 1)
            )]
        );
        let mut old = record(from_unix_ms(1_700_000_000_000 - PAST_SKEW_MS - 1).unwrap());
        flag_timing(&mut old, &now);
        assert_eq!(old.fields.len(), 2, "delayed and skewed: {:?}", old.fields);
    }

    #[test]
    fn dedup_key_is_the_sha256_of_the_records_json_as_stored_by_earlier_versions() {
        let mut r = record(from_unix_ms(1_000).unwrap());
        r.coordinates = Some(crate::track::Coordinates {
            lat: 48.85,
            lng: 2.29,
        });
        r.fields
            .push(Field::new("GPS_SPEED", FieldValue::Int(12_000)));
        let canonical = serde_json::to_vec(&(&r.coordinates, &r.fields)).unwrap();
        let expected: String = Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(dedup_key(&r), expected);
    }

    #[test]
    fn dedup_key_ignores_flags_added_by_ekko_and_sees_content() {
        let t = from_unix_ms(1_000).unwrap();
        let a = record(t);
        let mut b = record(t);
        let key = dedup_key(&a);
        flag_timing(&mut b, &now_ms());
        assert_eq!(key, dedup_key(&a));
        let mut c = record(t);
        c.fields.push(Field::new("X", FieldValue::Int(1)));
        assert_ne!(key, dedup_key(&c));
    }
}
