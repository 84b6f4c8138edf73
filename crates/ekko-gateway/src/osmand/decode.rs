//! Pure OsmAnd decoding (no I/O).

use chrono::{DateTime, NaiveDateTime, Utc};
use ekko_core::fields::{self, Field, FieldValue};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD};
use serde_json::Value;

use crate::problem::Problem;

/// Plausibility bounds: a value beyond them is a broken device or a bad request, not data.
pub const MAX_SPEED_KNOTS: f64 = 2000.0;
pub const MIN_ALTITUDE_M: f64 = -20_000.0;
pub const MAX_ALTITUDE_M: f64 = 100_000.0;
pub const MAX_ACCURACY_M: f64 = 1_000_000.0;
pub const MAX_ODOMETER_M: f64 = 1e12;

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
    /// The device's secret (`key=`), when it sent one: checked, never stored as a field.
    pub device_key: Option<String>,
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
///
/// A number below 1e11 is seconds (up to the year 5138); from 1e11 on it is milliseconds
/// (1973 on). A time outside 1970..=9999 cannot be published as RFC 3339 and is refused.
pub fn parse_timestamp(param: &str, value: &str) -> Result<Timestamp, Problem> {
    let v = value.trim();
    let parsed = if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err(bad(param, value, "a time"));
        }
        let ms = if n >= 1e11 {
            n.round()
        } else {
            (n * 1000.0).round()
        };
        if ms > 253_402_300_799_999.0 {
            return Err(bad(
                param,
                value,
                "a time before the year 10000 (unix seconds or milliseconds)",
            ));
        }
        from_unix_ms(ms as i64)
    } else if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        Some(t.with_timezone(&Utc))
    } else {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|fmt| NaiveDateTime::parse_from_str(v, fmt).ok())
            .map(|t| t.and_utc())
    };
    let t = parsed.ok_or_else(|| {
        bad(
            param,
            value,
            "a time (unix seconds or milliseconds, or ISO-8601)",
        )
    })?;
    if !(1970..=9999).contains(&chrono::Datelike::year(&t)) {
        return Err(bad(param, value, "a time between 1970 and 9999"));
    }
    // Millisecond precision, as stored.
    Ok(from_unix_ms(t.timestamp_millis()).unwrap_or(t))
}

/// A number within `min..=max`: values beyond any real device's range are refused rather than
/// saturated into nonsense.
fn ranged(param: &str, value: &str, min: f64, max: f64) -> Result<f64, Problem> {
    let n = number(param, value)?;
    if n < min || n > max {
        return Err(bad(param, value, &format!("within {min}..{max}")));
    }
    Ok(n)
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
    // Parameter names compare case-insensitively, and each may appear once: a repeated `id`
    // would otherwise silently pick one of two devices.
    let mut seen = std::collections::HashSet::new();
    let mut device_key = None;
    for (raw_key, value) in params {
        let key = raw_key.to_ascii_lowercase();
        let canonical = match key.as_str() {
            "deviceid" => "id",
            "heading" => "bearing",
            other => other,
        };
        let clashes_with_location = matches!(canonical, "lat" | "lon") && seen.contains("location")
            || canonical == "location" && (seen.contains("lat") || seen.contains("lon"));
        if !seen.insert(canonical.to_owned()) || clashes_with_location {
            return Err(Problem::bad_request(format!(
                "parameter '{raw_key}' is repeated"
            )));
        }
        let value = value.as_str();
        match canonical {
            "id" => device_id = Some(value.trim().to_owned()),
            "key" => device_key = Some(value.trim().to_owned()),
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
                let knots = ranged("speed", value, f64::NEG_INFINITY, MAX_SPEED_KNOTS)?;
                if knots >= 0.0 {
                    fields.push(fields::speed_from_knots(knots));
                }
            }
            "bearing" => {
                let deg = ranged(raw_key, value, f64::NEG_INFINITY, 360.0)?;
                if deg >= 0.0 {
                    fields.push(fields::direction_from_degrees(deg));
                }
            }
            "altitude" => fields.push(fields::altitude_from_metres(ranged(
                "altitude",
                value,
                MIN_ALTITUDE_M,
                MAX_ALTITUDE_M,
            )?)),
            "accuracy" => {
                let m = ranged("accuracy", value, f64::NEG_INFINITY, MAX_ACCURACY_M)?;
                if m >= 0.0 {
                    fields.push(fields::accuracy_from_metres(m));
                }
            }
            "hdop" => fields.push(Field::new(
                fields::GPS_HDOP,
                FieldValue::Int((ranged("hdop", value, 0.0, 100.0)? * 10.0).round() as i64),
            )),
            "sat" => fields.push(Field::new(
                fields::GPS_FIXED_SAT_NUM,
                FieldValue::Int(ranged("sat", value, 0.0, 255.0)?.round() as i64),
            )),
            "batt" => {
                let p = ranged("batt", value, f64::NEG_INFINITY, 100.0)?;
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
                FieldValue::Int(ranged("odometer", value, 0.0, MAX_ODOMETER_M)?.round() as i64),
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
                if value.chars().any(char::is_control) {
                    return Err(Problem::bad_request(format!(
                        "parameter '{other}' contains control characters"
                    )));
                }
                let name: String = other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
                    .to_ascii_uppercase();
                if !name.is_empty() {
                    let name = extra_field_name(name);
                    if fields.iter().any(|f: &Field| f.name == name) {
                        return Err(Problem::bad_request(format!(
                            "parameter '{raw_key}' is repeated (as field {name})"
                        )));
                    }
                    fields.push(Field::new(name, typed(value)));
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
        device_key,
    })
}

/// A JSON number (or a numeric string, which some clients send). `null`/absent is `None`;
/// anything else is refused, naming the key — never silently dropped.
fn json_number(path: &str, v: Option<&Value>) -> Result<Option<f64>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| bad(path, &n.to_string(), "a number")),
        Some(Value::String(s)) => number(path, s).map(Some),
        Some(other) => Err(bad(path, &other.to_string(), "a number")),
    }
}

fn json_ranged(path: &str, v: Option<&Value>, min: f64, max: f64) -> Result<Option<f64>, Problem> {
    match json_number(path, v)? {
        Some(n) if n < min || n > max => {
            Err(bad(path, &n.to_string(), &format!("within {min}..{max}")))
        }
        other => Ok(other),
    }
}

fn json_bool(path: &str, v: Option<&Value>) -> Result<Option<bool>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => truthy(path, s).map(Some),
        Some(other) => Err(bad(path, &other.to_string(), "true or false")),
    }
}

fn json_text(path: &str, v: Option<&Value>) -> Result<Option<String>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(Problem::bad_request(
            format!("'{path}' contains control characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.chars().take(MAX_EXTRA_VALUE_CHARS).collect())),
        Some(other) => Err(bad(path, &other.to_string(), "a string")),
    }
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
    let coords = match loc.get("coords") {
        None | Some(Value::Null) => None,
        Some(c @ Value::Object(_)) => Some(c),
        Some(_) => return Err(Problem::bad_request("'location.coords' is not an object")),
    };
    let c = |k: &str| coords.and_then(|c| c.get(k));
    let battery = loc.get("battery");
    let mut fields = Vec::new();
    let max_speed_mps = MAX_SPEED_KNOTS * 1852.0 / 3600.0;
    if let Some(mps) = json_ranged(
        "location.coords.speed",
        c("speed"),
        f64::NEG_INFINITY,
        max_speed_mps,
    )?
    .filter(|s| *s >= 0.0)
    {
        fields.push(fields::speed_from_mps(mps));
    }
    if let Some(deg) = json_ranged(
        "location.coords.heading",
        c("heading"),
        f64::NEG_INFINITY,
        360.0,
    )?
    .filter(|h| *h >= 0.0)
    {
        fields.push(fields::direction_from_degrees(deg));
    }
    if let Some(alt) = json_ranged(
        "location.coords.altitude",
        c("altitude"),
        MIN_ALTITUDE_M,
        MAX_ALTITUDE_M,
    )? {
        fields.push(fields::altitude_from_metres(alt));
    }
    if let Some(acc) = json_ranged(
        "location.coords.accuracy",
        c("accuracy"),
        f64::NEG_INFINITY,
        MAX_ACCURACY_M,
    )?
    .filter(|a| *a >= 0.0)
    {
        fields.push(fields::accuracy_from_metres(acc));
    }
    let level = json_ranged(
        "location.battery.level",
        battery.and_then(|b| b.get("level")),
        f64::NEG_INFINITY,
        100.0,
    )?;
    if let Some(level) = level.filter(|l| *l >= 0.0) {
        // Traccar Client sends a fraction (0.79); accept a percentage too.
        fields.push(fields::battery_level_percent(if level <= 1.0 {
            level * 100.0
        } else {
            level
        }));
    }
    if let Some(charging) = json_bool(
        "location.battery.is_charging",
        battery.and_then(|b| b.get("is_charging")),
    )? {
        fields.push(fields::external_power(charging));
    }
    if let Some(odo) = json_ranged(
        "location.odometer",
        loc.get("odometer"),
        0.0,
        MAX_ODOMETER_M,
    )? {
        fields.push(Field::new(
            fields::ODO_FULL_METER,
            FieldValue::Int(odo.round() as i64),
        ));
    }
    if let Some(moving) = json_bool("location.is_moving", loc.get("is_moving"))? {
        fields.push(Field::new("IS_MOVING", FieldValue::Bool(moving)));
    }
    if let Some(event) = json_text("location.event", loc.get("event"))? {
        fields.push(Field::new("EVENT", FieldValue::Text(event)));
    }
    if let Some(activity) = json_text(
        "location.activity.type",
        loc.get("activity").and_then(|a| a.get("type")),
    )? {
        fields.push(Field::new("ACTIVITY", FieldValue::Text(activity)));
    }
    check_field_count(&fields)?;
    let lat = json_number("location.coords.latitude", c("latitude"))?;
    let lon = json_number("location.coords.longitude", c("longitude"))?;
    let coordinates = coordinates(lat, lon)?;
    Ok(Report {
        device_id,
        recorded_at,
        coordinates,
        fields,
        // The JSON form carries no key; the listener reads `key=` from the URL's query.
        device_key: None,
    })
}
