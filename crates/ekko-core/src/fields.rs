//! Munic field names and units: the one table every device protocol converts into.
//!
//! Values are stored exactly as Munic devices report them (integers in the units below), so that
//! an Ekko Track reads like a CloudConnect track. Decoders never invent their own names for a
//! quantity listed here.
//!
//! | name          | type    | unit / meaning                                         | source |
//! |---------------|---------|--------------------------------------------------------|--------|
//! | GPS_SPEED     | integer | speed, 1/1000 knot                                     | Munic  |
//! | GPS_DIR       | integer | course over ground, 1/100 degree (0..36000)            | Munic  |
//! | GPS_ALTITUDE  | integer | metres above sea level                                  | Munic  |
//! | GPS_HDOP      | integer | horizontal dilution of precision, 1/10                  | Munic  |
//! | GPS_FIXED_SAT_NUM | integer | satellites used in the fix                          | Munic  |
//! | BATT          | integer | 0 = running on the internal battery, 1 = external power| Munic  |
//! | ODO_FULL_METER| integer | GPS odometer, metres                                    | Munic  |
//! | GPS_ACCURACY  | integer | horizontal accuracy radius, centimetres                 | Ekko   |
//! | BATT_LEVEL    | integer | internal battery charge, percent (0..100)               | Ekko   |
//! | DIO_IGNITION  | boolean | ignition input                                          | Munic  |
//! | GPRMC_VALID   | string  | "A" valid fix, "V" invalid                              | Munic  |
//! | MDI_RECORD_DELAYED | boolean | recorded while offline, sent later               | Munic  |
//! | EKKO_CLOCK_SKEW_MS | integer | recorded_at − received_at, ms, when implausible   | Ekko   |
//!
//! Ingestion (`Ekko::ingest_tracks`, `Ekko::ingest_track`) adds the last two itself: `MDI_RECORD_DELAYED = true`
//! when a record reaches Ekko more than [`DELAYED_AFTER_MS`] after it was recorded (buffered on
//! the device), and `EKKO_CLOCK_SKEW_MS` when its `recorded_at` is more than
//! [`FUTURE_SKEW_MS`] in the future or more than [`PAST_SKEW_MS`] in the past (a device clock that
//! is wrong, e.g. a GPS week rollover). Such records are stored and published, never dropped.
//!
//! `BATT` keeps its Munic meaning (a power-source flag), which is why a phone's battery
//! percentage goes to the Ekko field `BATT_LEVEL` instead of overloading `BATT`.
//! Parameters a protocol sends that map to nothing here are kept under their own names
//! (upper-cased) rather than dropped.

use serde::{Deserialize, Serialize};

pub const GPS_SPEED: &str = "GPS_SPEED";
pub const GPS_DIR: &str = "GPS_DIR";
pub const GPS_ALTITUDE: &str = "GPS_ALTITUDE";
pub const GPS_HDOP: &str = "GPS_HDOP";
pub const GPS_FIXED_SAT_NUM: &str = "GPS_FIXED_SAT_NUM";
pub const GPS_ACCURACY: &str = "GPS_ACCURACY";
pub const BATT: &str = "BATT";
pub const BATT_LEVEL: &str = "BATT_LEVEL";
pub const ODO_FULL_METER: &str = "ODO_FULL_METER";
pub const DIO_IGNITION: &str = "DIO_IGNITION";
pub const MDI_RECORD_DELAYED: &str = "MDI_RECORD_DELAYED";
pub const EKKO_CLOCK_SKEW_MS: &str = "EKKO_CLOCK_SKEW_MS";
pub const GPRMC_VALID: &str = "GPRMC_VALID";

/// A record received this long (ms) after it was recorded is marked `MDI_RECORD_DELAYED`.
pub const DELAYED_AFTER_MS: i64 = 10 * 60 * 1000;
/// A record dated this far (ms) in the future gets `EKKO_CLOCK_SKEW_MS`.
pub const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// A record dated this far (ms) in the past gets `EKKO_CLOCK_SKEW_MS`.
pub const PAST_SKEW_MS: i64 = 366 * 24 * 3600 * 1000;

/// A typed field value, as CloudConnect's field metadata types it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl FieldValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Bool(b) => (*b).into(),
            FieldValue::Int(i) => (*i).into(),
            FieldValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Into::into)
                .unwrap_or(serde_json::Value::Null),
            FieldValue::Text(s) => s.clone().into(),
        }
    }
}

/// One named value of a track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: FieldValue,
}

impl Field {
    pub fn new(name: impl Into<String>, value: FieldValue) -> Self {
        Field {
            name: name.into(),
            value,
        }
    }
}

/// A known field's stored unit, and how to read it in everyday units: the one table the API
/// (`unit`, `decoded`, `decoded_unit` on every field) and the README share.
pub struct Unit {
    /// The unit the value is stored and sent in (Munic's).
    pub unit: &'static str,
    /// Multiply the stored value by this to get `everyday`.
    pub factor: f64,
    pub everyday: &'static str,
}

/// The unit of a known numeric field; `None` for others (booleans, text, unknown names).
pub fn unit_of(name: &str) -> Option<Unit> {
    let u = |unit, factor, everyday| {
        Some(Unit {
            unit,
            factor,
            everyday,
        })
    };
    match name {
        GPS_SPEED => u("1/1000 knot", 1.852 / 1000.0, "km/h"),
        GPS_DIR => u("1/100 degree", 0.01, "degree"),
        GPS_ALTITUDE => u("metre", 1.0, "metre"),
        GPS_ACCURACY => u("centimetre", 0.01, "metre"),
        GPS_HDOP => u("1/10", 0.1, "hdop"),
        GPS_FIXED_SAT_NUM => u("count", 1.0, "count"),
        BATT_LEVEL => u("percent", 1.0, "percent"),
        ODO_FULL_METER => u("metre", 0.001, "km"),
        _ => None,
    }
}

/// The everyday reading of a numeric value of a known field, e.g. GPS_SPEED 27000 → (50.004,
/// "km/h"); `None` for anything else.
pub fn decode(name: &str, value: &FieldValue) -> Option<(f64, &'static str)> {
    let unit = unit_of(name)?;
    let raw = match value {
        FieldValue::Int(i) => *i as f64,
        FieldValue::Float(f) => *f,
        _ => return None,
    };
    // Rounded to 6 significant decimals: no 50.00400000000001 in a convenience value.
    let v = (raw * unit.factor * 1e6).round() / 1e6;
    v.is_finite().then_some((v, unit.everyday))
}

/// Knots → GPS_SPEED (1/1000 knot), rounded.
pub fn speed_from_knots(knots: f64) -> Field {
    Field::new(GPS_SPEED, FieldValue::Int((knots * 1000.0).round() as i64))
}

/// Metres per second → GPS_SPEED (1/1000 knot). 1 knot = 1852 m / 3600 s.
pub fn speed_from_mps(mps: f64) -> Field {
    speed_from_knots(mps * 3600.0 / 1852.0)
}

/// Kilometres per hour → GPS_SPEED (1/1000 knot). 1 knot = 1.852 km/h.
pub fn speed_from_kmh(kmh: f64) -> Field {
    speed_from_knots(kmh / 1.852)
}

/// Degrees → GPS_DIR (1/100 degree), normalized to 0..36000.
pub fn direction_from_degrees(deg: f64) -> Field {
    let centi = (deg * 100.0).round() as i64;
    Field::new(GPS_DIR, FieldValue::Int(centi.rem_euclid(36000)))
}

/// Metres → GPS_ALTITUDE (metres), rounded.
pub fn altitude_from_metres(m: f64) -> Field {
    Field::new(GPS_ALTITUDE, FieldValue::Int(m.round() as i64))
}

/// Metres → GPS_ACCURACY (centimetres), rounded.
pub fn accuracy_from_metres(m: f64) -> Field {
    Field::new(GPS_ACCURACY, FieldValue::Int((m * 100.0).round() as i64))
}

/// Percent → BATT_LEVEL, clamped to 0..=100.
pub fn battery_level_percent(p: f64) -> Field {
    Field::new(
        BATT_LEVEL,
        FieldValue::Int(p.round().clamp(0.0, 100.0) as i64),
    )
}

/// Is the device on external power? → BATT (1 = external power, 0 = internal battery).
pub fn external_power(on: bool) -> Field {
    Field::new(BATT, FieldValue::Int(i64::from(on)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_decode_into_everyday_units() {
        assert_eq!(
            decode(GPS_SPEED, &FieldValue::Int(27_000)),
            Some((50.004, "km/h"))
        );
        assert_eq!(
            decode(GPS_DIR, &FieldValue::Int(9_050)),
            Some((90.5, "degree"))
        );
        assert_eq!(
            decode(ODO_FULL_METER, &FieldValue::Int(1_500)),
            Some((1.5, "km"))
        );
        assert_eq!(decode(DIO_IGNITION, &FieldValue::Bool(true)), None);
        assert_eq!(decode("IO_240", &FieldValue::Int(1)), None);
    }

    #[test]
    fn units_follow_the_table() {
        assert_eq!(speed_from_knots(21.6).value, FieldValue::Int(21600));
        assert_eq!(speed_from_mps(18.52).value, FieldValue::Int(36000));
        assert_eq!(direction_from_degrees(90.0).value, FieldValue::Int(9000));
        assert_eq!(direction_from_degrees(-90.0).value, FieldValue::Int(27000));
        assert_eq!(direction_from_degrees(360.0).value, FieldValue::Int(0));
        assert_eq!(altitude_from_metres(35.7).value, FieldValue::Int(36));
        assert_eq!(accuracy_from_metres(3.8).value, FieldValue::Int(380));
        assert_eq!(battery_level_percent(79.4).value, FieldValue::Int(79));
    }
}
