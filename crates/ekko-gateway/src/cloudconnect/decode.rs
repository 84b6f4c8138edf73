//! The pure CloudConnect webhook decoder: a JSON body → events, or per-event errors. No I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use ekko_core::Imei;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::notification::{
    MAX_NAME_CHARS, MAX_PAYLOAD_BYTES, MessageKind, NewMessage, NewPoke, PresenceKind,
};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD, TrackRecord};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Most events one webhook request may carry.
pub const MAX_EVENTS: usize = 10_000;

/// How a field's bytes are read (CloudConnect field metadata types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Big-endian, 1 to 8 bytes, sign-extended by its length.
    Integer,
    /// The first byte is non-zero.
    Boolean,
    /// The raw bytes, Latin-1.
    String,
    /// IEEE 754, big-endian: 8 bytes (or 4).
    Double,
}

/// The field dictionary: Munic's documented fields (ekko-api.md §6.3) and the ones whose type
/// the documented examples show. A field not listed keeps its base64 text as a string value,
/// so nothing is lost.
pub fn field_type(name: &str) -> Option<FieldType> {
    use FieldType::*;
    Some(match name {
        "GPRMC_VALID" | "ODO_PARTIAL_KM" | "DRIVER_ID" | "DIO_IN_TOR" | "MDI_VEHICLE_STATE"
        | "MDI_RECORD_REASON" | "MDI_OBD_PID_1" | "MDI_OBD_PID_2" | "MDI_OBD_PID_3"
        | "MDI_OBD_PID_4" | "MDI_OBD_PID_5" => String,
        "DIO_IGNITION" | "DIO_ALARM" | "MDI_IDLE_STATE" | "MDI_TOW_AWAY" | "MDI_OVERSPEED"
        | "MDI_JOURNEY_STATE" | "MDI_RECORD_DELAYED" => Boolean,
        "MDI_CC_DASHBOARD_FUEL_LEVEL_LITERS"
        | "MDI_CC_DASHBOARD_FUEL_LEVEL_PERCENT"
        | "MDI_CC_DASHBOARD_MILEAGE" => Double,
        "GPS_SPEED"
        | "GPS_DIR"
        | "GPS_ALTITUDE"
        | "BATT"
        | "GPRS_HEADER"
        | "RSSI"
        | "MDI_EXT_BATT_PRESENT"
        | "ODO_FULL"
        | "ODO_FULL_METER"
        | "GPS_HDOP"
        | "GPS_PDOP"
        | "GPS_VDOP"
        | "GPS_FIXED_SAT_NUM"
        | "BATT_VOLT"
        | "MDI_EXT_BATT_VOLTAGE"
        | "MDI_JOURNEY_ID"
        | "MDI_JOURNEY_TIME"
        | "MDI_IDLE_JOURNEY"
        | "MDI_DRIVING_JOURNEY"
        | "MDI_ODO_JOURNEY"
        | "MDI_MAX_SPEED_JOURNEY"
        | "MDI_DASHBOARD_MILEAGE_METERS"
        | "MDI_DASHBOARD_MILEAGE"
        | "MDI_DASHBOARD_FUEL"
        | "MDI_DASHBOARD_FUEL_LEVEL"
        | "MDI_GENERIC_SPEED"
        | "MDI_GENERIC_SPEED_SOURCE"
        | "MDI_GENERIC_ODOMETER"
        | "MDI_GENERIC_ODOMETER_SOURCE"
        | "MDI_GENERIC_FUEL"
        | "MDI_GENERIC_FUEL_SOURCE"
        | "MDI_DASHBOARD_ODO"
        | "MDI_TOTAL_ODO_JOURNEY_METERS"
        | "MDI_TOTAL_DRIVING_JOURNEY" => Integer,
        _ => return None,
    })
}

/// Reads a field's bytes as `ty`.
pub fn decode_value(ty: FieldType, bytes: &[u8]) -> Result<FieldValue, String> {
    match ty {
        FieldType::Integer => {
            if bytes.is_empty() || bytes.len() > 8 {
                return Err(format!(
                    "an integer is 1 to 8 bytes, this one is {}",
                    bytes.len()
                ));
            }
            // Sign-extend from the first byte, then shift the rest in (big-endian).
            let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
            for b in bytes {
                v = (v << 8) | i64::from(*b);
            }
            Ok(FieldValue::Int(v))
        }
        FieldType::Boolean => match bytes.first() {
            Some(b) => Ok(FieldValue::Bool(*b != 0)),
            None => Err("a boolean needs at least 1 byte".into()),
        },
        FieldType::String => Ok(FieldValue::Text(bytes.iter().map(|&b| b as char).collect())),
        FieldType::Double => match bytes.len() {
            8 => Ok(float(f64::from_be_bytes(
                bytes.try_into().expect("8 bytes"),
            ))),
            4 => Ok(float(f64::from(f32::from_be_bytes(
                bytes.try_into().expect("4 bytes"),
            )))),
            n => Err(format!("a double is 8 (or 4) bytes, this one is {n}")),
        },
    }
}

fn float(f: f64) -> FieldValue {
    if f.is_finite() {
        FieldValue::Float(f)
    } else {
        FieldValue::Text(f.to_string())
    }
}

/// One decoded event. `source_id` is CloudConnect's own id (`id_str`/`id`), when sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Track {
        source_id: Option<i64>,
        record: TrackRecord,
    },
    Presence {
        source_id: Option<i64>,
        imei: Imei,
        kind: PresenceKind,
        reason: Option<String>,
        protocol: Option<String>,
    },
    Message {
        source_id: Option<i64>,
        message: NewMessage,
    },
    Poke {
        source_id: Option<i64>,
        poke: NewPoke,
    },
}

impl Event {
    pub fn imei(&self) -> &Imei {
        match self {
            Event::Track { record, .. } => &record.imei,
            Event::Presence { imei, .. } => imei,
            Event::Message { message, .. } => &message.imei,
            Event::Poke { poke, .. } => &poke.imei,
        }
    }
}

/// An event that is well-formed but that Ekko does not store, and why (an unknown event kind,
/// a presence without an asset). Reported in the answer, never dropped silently.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub index: usize,
    pub reason: String,
}

/// What is wrong with the event at `index` (its position in the array, from 0).
#[derive(Clone, Debug, PartialEq)]
pub struct EventError {
    pub index: usize,
    pub detail: String,
}

/// A decoded body: the events to store, in order, each with its index in the array.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Batch {
    pub events: Vec<(usize, Event)>,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// The body as a whole is unusable (not JSON, not an array, too many events).
    Body(String),
    /// Some events are malformed; the batch is refused as a whole.
    Events(Vec<EventError>),
}

/// Decodes a webhook body. Any malformed event refuses the whole batch (every error is listed).
///
/// Track events take a fast path (`fast_track`); every other event, and any track event that
/// path is unsure of, goes through the reference decoder. The result is always the one
/// [`decode_batch_reference`] gives.
pub fn decode_batch(body: &[u8]) -> Result<Batch, DecodeError> {
    let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) else {
        // Not an array of JSON values: the reference decoder words the error.
        return decode_batch_reference(body);
    };
    check_count(items.len())?;
    let mut decoded = Vec::with_capacity(items.len());
    for raw in items {
        let event = match super::fast_track::decode(raw.get()) {
            Some(event) => Ok(Some(event)),
            None => match serde_json::from_str::<Value>(raw.get()) {
                Ok(item) => decode_event(&item),
                Err(_) => return decode_batch_reference(body),
            },
        };
        decoded.push(event);
    }
    collect(decoded)
}

/// The reference decoder: every event read through a `serde_json::Value`. [`decode_batch`]
/// gives the same result faster; this one is public so that tests and the fuzz target can
/// check that.
#[doc(hidden)]
pub fn decode_batch_reference(body: &[u8]) -> Result<Batch, DecodeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError::Body(format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(DecodeError::Body(
            "the body must be a JSON array of events ({meta: {account, event}, payload})".into(),
        ));
    };
    check_count(items.len())?;
    collect(items.iter().map(decode_event).collect())
}

fn check_count(events: usize) -> Result<(), DecodeError> {
    if events > MAX_EVENTS {
        return Err(DecodeError::Body(format!(
            "a request may carry at most {MAX_EVENTS} events, this one has {events}"
        )));
    }
    Ok(())
}

/// The batch from each event's outcome, in array order.
fn collect(decoded: Vec<Result<Option<Event>, Outcome>>) -> Result<Batch, DecodeError> {
    let mut batch = Batch::default();
    let mut errors = Vec::new();
    for (index, outcome) in decoded.into_iter().enumerate() {
        match outcome {
            Ok(Some(event)) => batch.events.push((index, event)),
            Ok(None) => {}
            Err(Outcome::Skip(reason)) => batch.skipped.push(Skipped { index, reason }),
            Err(Outcome::Error(detail)) => errors.push(EventError { index, detail }),
        }
    }
    if errors.is_empty() {
        Ok(batch)
    } else {
        Err(DecodeError::Events(errors))
    }
}

enum Outcome {
    Skip(String),
    Error(String),
}

fn err(msg: impl Into<String>) -> Outcome {
    Outcome::Error(msg.into())
}

fn decode_event(item: &Value) -> Result<Option<Event>, Outcome> {
    let obj = item
        .as_object()
        .ok_or_else(|| err("an event must be an object {meta, payload}"))?;
    let kind = obj
        .get("meta")
        .and_then(|m| m.get("event"))
        .and_then(Value::as_str)
        .ok_or_else(|| err("meta.event is missing (track, presence, message or poke)"))?;
    let payload = obj
        .get("payload")
        .and_then(Value::as_object)
        .ok_or_else(|| err("payload is missing or not an object"))?;
    let source_id = source_id(payload, "id")?;
    match kind {
        "track" => Ok(Some(Event::Track {
            source_id,
            record: track(payload)?,
        })),
        "presence" => presence(payload, source_id).map(Some),
        "message" => Ok(Some(Event::Message {
            source_id,
            message: message(payload)?,
        })),
        "poke" => Ok(Some(Event::Poke {
            source_id,
            poke: poke(payload)?,
        })),
        other => Err(Outcome::Skip(format!(
            "event kind '{}' is not one Ekko stores",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// `<key>_str` (exact for 64-bit ids) or `<key>`; both present must agree.
fn source_id(p: &Map<String, Value>, key: &str) -> Result<Option<i64>, Outcome> {
    let as_str = match p.get(&format!("{key}_str")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .map_err(|_| err(format!("{key}_str '{s}' is not a 64-bit integer")))?,
        ),
        Some(_) => return Err(err(format!("{key}_str must be a string"))),
    };
    let as_num = match p.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| err(format!("{key} {n} is not a 64-bit integer")))?,
        ),
        Some(_) => return Err(err(format!("{key} must be a number"))),
    };
    match (as_str, as_num) {
        // A JSON parser with doubles only may have rounded `id`; `id_str` is exact.
        (Some(s), Some(n)) if s != n && (s as f64) != (n as f64) => {
            Err(err(format!("{key} ({n}) and {key}_str ({s}) disagree")))
        }
        (Some(s), _) => Ok(Some(s)),
        (None, n) => Ok(n),
    }
}

fn opt_str<'a>(p: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Outcome> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(format!("{key} must be a string"))),
    }
}

fn name(p: &Map<String, Value>, key: &str) -> Result<Option<String>, Outcome> {
    match opt_str(p, key)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) if s.trim().chars().count() > MAX_NAME_CHARS => Err(err(format!(
            "{key} may be at most {MAX_NAME_CHARS} characters"
        ))),
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}

fn asset(p: &Map<String, Value>) -> Result<Imei, Outcome> {
    let a = opt_str(p, "asset")?.ok_or_else(|| err("asset (the device IMEI) is missing"))?;
    Imei::parse(a).map_err(|e| err(format!("asset: {e}")))
}

fn time(p: &Map<String, Value>, key: &str) -> Result<Option<Timestamp>, Outcome> {
    let Some(s) = opt_str(p, key)? else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| err(format!("{key} '{s}' is not an RFC 3339 time: {e}")))?;
    let ms = t.with_timezone(&Utc).timestamp_millis();
    from_unix_ms(ms)
        .map(Some)
        .ok_or_else(|| err(format!("{key} '{s}' is out of range")))
}

fn payload_bytes(p: &Map<String, Value>) -> Result<Vec<u8>, Outcome> {
    let Some(b64) = opt_str(p, "b64_payload")? else {
        return Ok(Vec::new());
    };
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| err(format!("b64_payload is not base64: {e}")))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(err(format!(
            "b64_payload may be at most {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

fn coordinates(p: &Map<String, Value>) -> Result<Option<Coordinates>, Outcome> {
    let loc = match p.get("loc").or_else(|| p.get("location")) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let pair = loc
        .as_array()
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
        .ok_or_else(|| err("loc must be [longitude, latitude]"))?;
    let (lng, lat) = pair;
    Coordinates::new(lat, lng)
        .map(Some)
        .map_err(|e| err(format!("loc: {e}")))
}

fn fields(p: &Map<String, Value>) -> Result<Vec<Field>, Outcome> {
    let obj = match p.get("fields") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(err("fields must be an object")),
    };
    if obj.len() > MAX_FIELDS_PER_RECORD {
        return Err(err(format!(
            "a track may carry at most {MAX_FIELDS_PER_RECORD} fields"
        )));
    }
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        let b64 = v
            .get("b64_value")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("field {name}: b64_value is missing")))?;
        let bytes = B64
            .decode(b64.trim())
            .map_err(|e| err(format!("field {name}: b64_value is not base64: {e}")))?;
        let value = match field_type(name) {
            Some(ty) => decode_value(ty, &bytes).map_err(|e| err(format!("field {name}: {e}")))?,
            None => FieldValue::Text(b64.trim().to_owned()),
        };
        out.push(Field::new(name.clone(), value));
    }
    Ok(out)
}

fn track(p: &Map<String, Value>) -> Result<TrackRecord, Outcome> {
    let imei = asset(p)?;
    // recorded_at_ms disambiguates repeats of one record; recorded_at is to the second.
    let recorded_at = match time(p, "recorded_at_ms")? {
        Some(t) => t,
        None => time(p, "recorded_at")?.ok_or_else(|| err("recorded_at is missing"))?,
    };
    Ok(TrackRecord {
        imei,
        recorded_at,
        coordinates: coordinates(p)?,
        fields: fields(p)?,
    })
}

fn presence(p: &Map<String, Value>, source_id: Option<i64>) -> Result<Event, Outcome> {
    let kind = match opt_str(p, "type")? {
        Some("connect") => PresenceKind::Connect,
        Some("disconnect") => PresenceKind::Disconnect,
        Some("failed_connect") => PresenceKind::FailedConnect,
        Some("declare_asset") => PresenceKind::DeclareAsset,
        Some(other) => {
            return Err(Outcome::Skip(format!(
                "presence type '{}' is not one Ekko stores",
                other.chars().take(32).collect::<String>()
            )));
        }
        None => return Err(err("presence type is missing")),
    };
    if matches!(p.get("asset"), None | Some(Value::Null)) {
        return Err(Outcome::Skip(
            "presence without an asset (a failed connection of an unidentified device)".into(),
        ));
    }
    Ok(Event::Presence {
        source_id,
        imei: asset(p)?,
        kind,
        reason: name(p, "reason")?,
        protocol: Some(name(p, "protocol")?.unwrap_or_else(|| "cloudconnect".into())),
    })
}

fn message(p: &Map<String, Value>) -> Result<NewMessage, Outcome> {
    let imei = asset(p)?;
    let kind = match opt_str(p, "type")? {
        None | Some("message") => MessageKind::Message,
        Some("ack") => MessageKind::Ack,
        Some(other) => {
            return Err(err(format!(
                "message type '{}' is neither message nor ack",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let channel = name(p, "channel")?.ok_or_else(|| err("channel is missing"))?;
    Ok(NewMessage {
        parent_id: source_id(p, "parent_id")?,
        sender: name(p, "sender")?.unwrap_or_else(|| imei.to_string()),
        recipient: name(p, "recipient")?.unwrap_or_else(|| "@@cloudconnect@@".into()),
        // Acks never carry a recording time.
        recorded_at: match kind {
            MessageKind::Ack => None,
            MessageKind::Message => time(p, "recorded_at")?,
        },
        payload: payload_bytes(p)?,
        channel,
        kind,
        imei,
    })
}

fn poke(p: &Map<String, Value>) -> Result<NewPoke, Outcome> {
    Ok(NewPoke {
        imei: asset(p)?,
        sender: name(p, "sender")?.unwrap_or_else(|| "cloudconnect".into()),
        namespace: name(p, "namespace")?.ok_or_else(|| err("namespace is missing"))?,
        payload: payload_bytes(p)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_and_sign_extended_by_length() {
        let int = |b: &[u8]| decode_value(FieldType::Integer, b).unwrap();
        assert_eq!(int(&[0x00, 0x00, 0x32, 0x72]), FieldValue::Int(12914));
        assert_eq!(int(&[0xFC, 0x19]), FieldValue::Int(-999));
        assert_eq!(int(&[0xFF, 0xFC, 0x19]), FieldValue::Int(-999));
        assert_eq!(int(&[0x7F]), FieldValue::Int(127));
        assert_eq!(int(&[0x80]), FieldValue::Int(-128));
        assert!(decode_value(FieldType::Integer, &[]).is_err());
        assert!(decode_value(FieldType::Integer, &[0; 9]).is_err());
    }

    #[test]
    fn booleans_strings_and_doubles_decode() {
        assert_eq!(
            decode_value(FieldType::Boolean, &[1]).unwrap(),
            FieldValue::Bool(true)
        );
        assert_eq!(
            decode_value(FieldType::Boolean, &[0]).unwrap(),
            FieldValue::Bool(false)
        );
        assert_eq!(
            decode_value(FieldType::String, b"A").unwrap(),
            FieldValue::Text("A".into())
        );
        assert_eq!(
            decode_value(FieldType::Double, &12.5f64.to_be_bytes()).unwrap(),
            FieldValue::Float(12.5)
        );
    }
}
