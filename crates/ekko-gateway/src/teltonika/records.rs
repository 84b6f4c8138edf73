//! AVL records → Ekko [`TrackRecord`]s: Munic field names and units (pure, no I/O).
//!
//! GPS element:
//!
//! | Teltonika                | Ekko                                  |
//! |--------------------------|---------------------------------------|
//! | timestamp (unix ms)      | `recorded_at` (ms kept)               |
//! | latitude, longitude (1e-7°) | `coordinates` (null without a fix) |
//! | speed (km/h)             | `GPS_SPEED` (1/1000 knot)             |
//! | angle (°)                | `GPS_DIR` (1/100 °)                   |
//! | altitude (m)             | `GPS_ALTITUDE` (m)                    |
//! | satellites               | `GPS_FIXED_SAT_NUM`                   |
//! | (fix or not)             | `GPRMC_VALID` `"A"` / `"V"`           |
//!
//! A record without a fix (0 satellites, or 0,0) is still a Track: null coordinates,
//! `GPRMC_VALID = "V"`, `GPS_FIXED_SAT_NUM`, and no speed/direction/altitude (they are stale).
//!
//! IO elements of Codec 8 and 8 Extended packets ([`IO_TABLE`]; ids from Teltonika's FMB/FMC/FMM
//! AVL ID list). Codec 16 is sent by older series (FM36, FM63) whose ids mean other things (id 113
//! is not a battery level there), so their elements are all kept as `IO_<id>`:
//!
//! | IO id | Teltonika name     | Ekko field             | unit / value          |
//! |-------|--------------------|------------------------|-----------------------|
//! | 239   | Ignition           | `DIO_IGNITION`         | boolean               |
//! | 240   | Movement           | `MVT_STATE`            | 0 / 1                 |
//! | 66    | External Voltage   | `MDI_EXT_BATT_VOLTAGE` | mV                    |
//! | 67    | Battery Voltage    | `BATT_VOLT`            | mV                    |
//! | 113   | Battery Level      | `BATT_LEVEL`           | percent               |
//! | 16    | Total Odometer     | `ODO_FULL_METER`       | m                     |
//! | 199   | Trip Odometer      | `ODO_PARTIAL_METER`    | m                     |
//! | 181   | GNSS PDOP          | `GPS_PDOP`             | 1/10                  |
//! | 182   | GNSS HDOP          | `GPS_HDOP`             | 1/10                  |
//!
//! Every other IO element is kept as `IO_<id>`: an integer (unsigned, as sent; an 8-byte value
//! above `i64::MAX` becomes its decimal string), or for variable-length values (Codec 8
//! Extended) a lower-case hex string. Priority, the event IO id and Codec 16's generation type
//! are not stored yet.

use ekko_core::Imei;
use ekko_core::fields::{self, Field, FieldValue, GPRMC_VALID, GPS_FIXED_SAT_NUM};
use ekko_core::time::from_unix_ms;
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD, TrackRecord};

use super::codec::{AvlPacket, AvlRecord, Codec, IoElement, IoValue};

/// Why a well-formed packet still cannot become records.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("record {index}: timestamp {ms} ms is not a representable date")]
    BadTimestamp { index: usize, ms: u64 },
    #[error("record {index}: {message}")]
    BadCoordinates { index: usize, message: String },
    #[error(
        "record {index}: {count} IO elements, more than a record may carry ({MAX_FIELDS_PER_RECORD} fields)"
    )]
    TooManyFields { index: usize, count: usize },
}

/// Known IO ids: (id, Ekko field name, is it a boolean?).
pub const IO_TABLE: &[(u16, &str, bool)] = &[
    (239, fields::DIO_IGNITION, true),
    (240, "MVT_STATE", false),
    (66, "MDI_EXT_BATT_VOLTAGE", false),
    (67, "BATT_VOLT", false),
    (113, fields::BATT_LEVEL, false),
    (16, fields::ODO_FULL_METER, false),
    (199, "ODO_PARTIAL_METER", false),
    (181, "GPS_PDOP", false),
    (182, fields::GPS_HDOP, false),
];

fn io_field(e: &IoElement, named: bool) -> Field {
    let int = match &e.value {
        IoValue::U8(v) => Some(u64::from(*v)),
        IoValue::U16(v) => Some(u64::from(*v)),
        IoValue::U32(v) => Some(u64::from(*v)),
        IoValue::U64(v) => Some(*v),
        IoValue::Bytes(_) => None,
    };
    let known = IO_TABLE.iter().find(|(id, _, _)| named && *id == e.id);
    let name = known.map_or_else(|| format!("IO_{}", e.id), |(_, n, _)| (*n).to_string());
    let value = match (int, known) {
        (Some(v), Some((_, _, true))) => FieldValue::Bool(v != 0),
        (Some(v), _) => {
            i64::try_from(v).map_or_else(|_| FieldValue::Text(v.to_string()), FieldValue::Int)
        }
        (None, _) => {
            let IoValue::Bytes(b) = &e.value else {
                unreachable!("only variable-length values have no integer")
            };
            FieldValue::Text(b.iter().map(|x| format!("{x:02x}")).collect())
        }
    };
    Field::new(name, value)
}

/// Converts one decoded record of device `imei`, sent with `codec`. `index` names the record in
/// errors.
pub fn to_track_record(
    imei: &Imei,
    codec: Codec,
    index: usize,
    rec: &AvlRecord,
) -> Result<TrackRecord, RecordError> {
    let recorded_at = i64::try_from(rec.timestamp_ms)
        .ok()
        .and_then(from_unix_ms)
        .ok_or(RecordError::BadTimestamp {
            index,
            ms: rec.timestamp_ms,
        })?;
    let fixed = rec.satellites > 0 && (rec.latitude != 0 || rec.longitude != 0);
    let mut out = Vec::with_capacity(rec.io.len() + 5);
    out.push(Field::new(
        GPS_FIXED_SAT_NUM,
        FieldValue::Int(i64::from(rec.satellites)),
    ));
    let coordinates = if fixed {
        let c = Coordinates::new(
            f64::from(rec.latitude) / 1e7,
            f64::from(rec.longitude) / 1e7,
        )
        .map_err(|e| RecordError::BadCoordinates {
            index,
            message: e.to_string(),
        })?;
        out.push(fields::speed_from_kmh(f64::from(rec.speed_kmh)));
        out.push(fields::direction_from_degrees(f64::from(rec.angle)));
        out.push(fields::altitude_from_metres(f64::from(rec.altitude)));
        out.push(Field::new(GPRMC_VALID, FieldValue::Text("A".into())));
        Some(c)
    } else {
        out.push(Field::new(GPRMC_VALID, FieldValue::Text("V".into())));
        None
    };
    if out.len() + rec.io.len() > MAX_FIELDS_PER_RECORD {
        return Err(RecordError::TooManyFields {
            index,
            count: rec.io.len(),
        });
    }
    let named = codec != Codec::Codec16;
    out.extend(rec.io.iter().map(|e| io_field(e, named)));
    Ok(TrackRecord {
        imei: imei.clone(),
        recorded_at,
        coordinates,
        fields: out,
    })
}

/// Converts every record of a packet, in the device's order.
pub fn to_track_records(imei: &Imei, packet: &AvlPacket) -> Result<Vec<TrackRecord>, RecordError> {
    packet
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| to_track_record(imei, packet.codec, i, r))
        .collect()
}
