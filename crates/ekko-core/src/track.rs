//! Tracks: what a device recorded at one instant (a position and/or field values).

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::fields::Field;
use crate::ids::Imei;
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lng: f64,
}

impl Coordinates {
    /// Checks WGS-84 ranges; `0,0` is accepted (it is a real place, and some devices' "no fix").
    pub fn new(lat: f64, lng: f64) -> Result<Self, DomainError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(DomainError::invalid(
                "lat",
                format!("latitude {lat} is outside -90..90"),
            ));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(DomainError::invalid(
                "lon",
                format!("longitude {lng} is outside -180..180"),
            ));
        }
        Ok(Coordinates { lat, lng })
    }
}

/// A record as a protocol decoder produces it, before it is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    pub imei: Imei,
    pub recorded_at: Timestamp,
    /// `None` when the device had no GPS fix: the record is still a Track.
    pub coordinates: Option<Coordinates>,
    pub fields: Vec<Field>,
}

/// A stored track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub id: i64,
    pub imei: Imei,
    pub recorded_at: Timestamp,
    pub received_at: Timestamp,
    pub coordinates: Option<Coordinates>,
    pub fields: Vec<Field>,
}

/// Most fields one record may carry: bounds memory per record whatever a device sends.
pub const MAX_FIELDS_PER_RECORD: usize = 256;

/// Most records one batch ([`crate::Ekko::ingest_tracks`]) may carry.
pub const MAX_RECORDS_PER_BATCH: usize = 10_000;

impl TrackRecord {
    /// Dated more than `FUTURE_SKEW_MS` after it was received (ingestion flagged it with a
    /// positive `EKKO_CLOCK_SKEW_MS`): a wrong device clock. Such a record is stored and
    /// published, but never becomes the device's current state (`last_values`,
    /// `last_position`), or one record dated 2100 would hide every real one after it.
    pub fn is_future_dated(&self) -> bool {
        self.fields.iter().any(|f| {
            f.name == crate::fields::EKKO_CLOCK_SKEW_MS
                && matches!(f.value, crate::fields::FieldValue::Int(ms) if ms > 0)
        })
    }
}

/// A record ready to be stored by a batch ingestion, with the key that recognises a resend of it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTrack {
    pub record: TrackRecord,
    /// Identifies the record's content as the device sent it (before Ekko added any flag): two
    /// records of one device with the same `recorded_at` and the same key are the same record.
    pub dedup_key: String,
}
