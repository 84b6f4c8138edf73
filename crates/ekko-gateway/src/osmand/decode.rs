//! Pure OsmAnd decoding (no I/O).

use chrono::{DateTime, NaiveDateTime, Utc};
use ekko_core::fields::{self, Field, FieldValue};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD};
use serde_json::Value;

use crate::problem::Problem;

/// Longest value kept for an unmapped parameter.
pub const MAX_EXTRA_VALUE_CHARS: usize = 256;

/// One decoded OsmAnd report. `device_id` is as sent; the listener resolves it to a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub device_id: String,
    /// `None` when the report carries no timestamp (the server's reception time is used).
    pub recorded_at: Option<Timestamp>,
    pub coordinates: Option<Coordinates>,
    pub fields: Vec<Field>,
}

fn bad(param: &str, value: &str, expected: &str) -> Problem {
    let shown: String = value.chars().take(64).collect();
    Problem::bad_request(format!(
        "parameter '{param}' is malformed: '{shown}' is not {expected}"
    ))
}

fn number(param: &str, value: &str) -> Result<f64, Problem> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad(param, value, "a number"))
}

/// Unix seconds, unix milliseconds, RFC 3339 / ISO-8601, or `yyyy-MM-dd HH:mm:ss` (UTC).
pub fn parse_timestamp(param: &str, value: &str) -> Result<Timestamp, Problem> {
    let v = value.trim();
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err(bad(param, value, "a time"));
        }
        // Seconds until the year 5138; anything larger is milliseconds.
        let ms = if n > 1e11 {
            n.round() as i64
        } else {
            (n * 1000.0).round() as i64
        };
        return from_unix_ms(ms).ok_or_else(|| bad(param, value, "a time"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(bad(
        param,
        value,
        "a time (unix seconds or milliseconds, or ISO-8601)",
    ))
}

/// Names of the fields this decoder produces itself: an unmapped parameter spelled like one of
/// them (`gps_speed=fast`) must not masquerade as it, so it is kept with an `OSMAND_` prefix.
const MAPPED_FIELDS: &[&str] = &[
    fields::GPS_SPEED,
    fields::GPS_DIR,
    fields::GPS_ALTITUDE,
    fields::GPS_ACCURACY,
    fields::GPS_HDOP,
    fields::GPS_FIXED_SAT_NUM,
    fields::BATT,
    fields::BATT_LEVEL,
    fields::DIO_IGNITION,
    fields::ODO_FULL_METER,
    "GPRMC_VALID",
];

fn extra_field_name(upper: String) -> String {
    if MAPPED_FIELDS.contains(&upper.as_str()) {
        format!("OSMAND_{upper}")
    } else {
        upper
    }
}

/// An unmapped parameter's value, typed as best we can.
fn typed(value: &str) -> FieldValue {
    let v = value.trim();
    if let Ok(i) = v.parse::<i64>() {
        return FieldValue::Int(i);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return FieldValue::Float(f);
    }
    match v {
        "true" => FieldValue::Bool(true),
        "false" => FieldValue::Bool(false),
        _ => FieldValue::Text(v.to_owned()),
    }
}

fn truthy(param: &str, value: &str) -> Result<bool, Problem> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad(param, value, "true or false")),
    }
}

fn coordinates(lat: Option<f64>, lon: Option<f64>) -> Result<Option<Coordinates>, Problem> {
    match (lat, lon) {
        (Some(lat), Some(lon)) => Coordinates::new(lat, lon)
            .map(Some)
            .map_err(|e| Problem::bad_request(e.to_string())),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Problem::bad_request(
            "parameter 'lon' is missing: 'lat' was given without it",
        )),
        (None, Some(_)) => Err(Problem::bad_request(
            "parameter 'lat' is missing: 'lon' was given without it",
        )),
    }
}

fn check_field_count(fields: &[Field]) -> Result<(), Problem> {
    if fields.len() > MAX_FIELDS_PER_RECORD {
        return Err(Problem::bad_request(format!(
            "too many parameters: at most {MAX_FIELDS_PER_RECORD} fields per record"
        )));
    }
    Ok(())
}

/// Decodes the query/form parameter form.
pub fn decode_params(params: &[(String, String)]) -> Result<Report, Problem> {
    let mut device_id = None;
    let mut recorded_at = None;
    let (mut lat, mut lon) = (None, None);
    let mut fields = Vec::new();
    for (key, value) in params {
        let value = value.as_str();
        match key.as_str() {
            "id" | "deviceid" => device_id = Some(value.trim().to_owned()),
            "timestamp" => recorded_at = Some(parse_timestamp("timestamp", value)?),
            "lat" => lat = Some(number("lat", value)?),
            "lon" => lon = Some(number("lon", value)?),
            "location" => {
                let (a, b) = value
                    .split_once(',')
                    .ok_or_else(|| bad("location", value, "'lat,lon'"))?;
                lat = Some(number("location", a)?);
                lon = Some(number("location", b)?);
            }
            "speed" => {
                let knots = number("speed", value)?;
                if knots >= 0.0 {
                    fields.push(fields::speed_from_knots(knots));
                }
            }
            "bearing" | "heading" => {
                let deg = number(key, value)?;
                if deg >= 0.0 {
                    fields.push(fields::direction_from_degrees(deg));
                }
            }
            "altitude" => fields.push(fields::altitude_from_metres(number("altitude", value)?)),
            "accuracy" => {
                let m = number("accuracy", value)?;
                if m >= 0.0 {
                    fields.push(fields::accuracy_from_metres(m));
                }
            }
            "hdop" => fields.push(Field::new(
                fields::GPS_HDOP,
                FieldValue::Int((number("hdop", value)? * 10.0).round() as i64),
            )),
            "sat" => fields.push(Field::new(
                fields::GPS_FIXED_SAT_NUM,
                FieldValue::Int(number("sat", value)?.round() as i64),
            )),
            "batt" => {
                let p = number("batt", value)?;
                if p >= 0.0 {
                    fields.push(fields::battery_level_percent(p));
                }
            }
            "charge" => fields.push(fields::external_power(truthy("charge", value)?)),
            "ignition" => fields.push(Field::new(
                fields::DIO_IGNITION,
                FieldValue::Bool(truthy("ignition", value)?),
            )),
            "odometer" => fields.push(Field::new(
                fields::ODO_FULL_METER,
                FieldValue::Int(number("odometer", value)?.round() as i64),
            )),
            "valid" => {
                let v = if truthy("valid", value)? { "A" } else { "V" };
                fields.push(Field::new("GPRMC_VALID", FieldValue::Text(v.into())));
            }
            other => {
                if value.chars().count() > MAX_EXTRA_VALUE_CHARS {
                    return Err(Problem::bad_request(format!(
                        "parameter '{other}' is longer than {MAX_EXTRA_VALUE_CHARS} characters"
                    )));
                }
                let name: String = other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
                    .to_ascii_uppercase();
                if !name.is_empty() {
                    fields.push(Field::new(extra_field_name(name), typed(value)));
                }
            }
        }
    }
    check_field_count(&fields)?;
    let device_id = device_id.filter(|d| !d.is_empty()).ok_or_else(|| {
        Problem::bad_request("parameter 'id' is missing: say which device this is")
    })?;
    Ok(Report {
        device_id,
        recorded_at,
        coordinates: coordinates(lat, lon)?,
        fields,
    })
}

fn json_number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|f| f.is_finite())
}

/// Decodes the JSON form (current Traccar Client).
pub fn decode_json(body: &[u8]) -> Result<Report, Problem> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    let device_id = match v
        .get("device_id")
        .or_else(|| v.get("deviceid"))
        .or_else(|| v.get("id"))
    {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    // Blank is missing, as in the query form.
    if device_id.is_empty() {
        return Err(Problem::bad_request(
            "'device_id' is missing: say which device this is",
        ));
    }
    let loc = match v.get("location") {
        Some(loc @ Value::Object(_)) => loc,
        Some(_) => return Err(Problem::bad_request("'location' is not an object")),
        None => return Err(Problem::bad_request("'location' is missing")),
    };
    let recorded_at = match loc.get("timestamp") {
        Some(Value::String(s)) => Some(parse_timestamp("location.timestamp", s)?),
        Some(Value::Number(n)) => Some(parse_timestamp("location.timestamp", &n.to_string())?),
        _ => None,
    };
    let coords = loc.get("coords");
    let c = |k: &str| json_number(coords.and_then(|c| c.get(k)));
    let mut fields = Vec::new();
    if let Some(mps) = c("speed").filter(|s| *s >= 0.0) {
        fields.push(fields::speed_from_mps(mps));
    }
    if let Some(deg) = c("heading").filter(|h| *h >= 0.0) {
        fields.push(fields::direction_from_degrees(deg));
    }
    if let Some(alt) = c("altitude") {
        fields.push(fields::altitude_from_metres(alt));
    }
    if let Some(acc) = c("accuracy").filter(|a| *a >= 0.0) {
        fields.push(fields::accuracy_from_metres(acc));
    }
    if let Some(level) =
        json_number(loc.get("battery").and_then(|b| b.get("level"))).filter(|l| *l >= 0.0)
    {
        // Traccar Client sends a fraction (0.79); accept a percentage too.
        fields.push(fields::battery_level_percent(if level <= 1.0 {
            level * 100.0
        } else {
            level
        }));
    }
    if let Some(charging) = loc
        .get("battery")
        .and_then(|b| b.get("is_charging"))
        .and_then(Value::as_bool)
    {
        fields.push(fields::external_power(charging));
    }
    if let Some(odo) = json_number(loc.get("odometer")) {
        fields.push(Field::new(
            fields::ODO_FULL_METER,
            FieldValue::Int(odo.round() as i64),
        ));
    }
    if let Some(moving) = loc.get("is_moving").and_then(Value::as_bool) {
        fields.push(Field::new("IS_MOVING", FieldValue::Bool(moving)));
    }
    if let Some(event) = loc.get("event").and_then(Value::as_str) {
        fields.push(Field::new(
            "EVENT",
            FieldValue::Text(event.chars().take(MAX_EXTRA_VALUE_CHARS).collect()),
        ));
    }
    if let Some(activity) = loc
        .get("activity")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
    {
        fields.push(Field::new(
            "ACTIVITY",
            FieldValue::Text(activity.chars().take(MAX_EXTRA_VALUE_CHARS).collect()),
        ));
    }
    check_field_count(&fields)?;
    let coordinates = coordinates(c("latitude"), c("longitude"))?;
    Ok(Report {
        device_id,
        recorded_at,
        coordinates,
        fields,
    })
}
