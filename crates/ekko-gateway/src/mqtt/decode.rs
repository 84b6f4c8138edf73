//! The pure MQTT decoder: topic + JSON payload → track records. No I/O.

use chrono::{DateTime, Utc};
use ekko_core::Imei;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD, TrackRecord};
use serde_json::{Map, Value};

/// What the bridge subscribes to.
pub const TOPIC_FILTER: &str = "devices/+/tracks";
/// Most records one message may carry.
pub const MAX_RECORDS: usize = 1000;

/// The IMEI in `devices/<imei>/tracks`.
pub fn imei_from_topic(topic: &str) -> Result<Imei, String> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("devices"), Some(id), Some("tracks"), None) => {
            Imei::parse(id).map_err(|e| format!("topic {topic}: {e}"))
        }
        _ => Err(format!(
            "topic {topic} is not devices/<imei>/tracks",
            topic = topic.chars().take(64).collect::<String>()
        )),
    }
}

/// Decodes a message: one record object, or an array of them (oldest first). A record without
/// `recorded_at` is stamped `now`.
pub fn decode_payload(
    imei: &Imei,
    payload: &[u8],
    now: Timestamp,
) -> Result<Vec<TrackRecord>, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("the payload must be a record object or an array of them".into()),
    };
    if items.len() > MAX_RECORDS {
        return Err(format!(
            "a message may carry at most {MAX_RECORDS} records, this one has {}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item
                .as_object()
                .ok_or_else(|| format!("record {i}: must be an object"))?;
            record(imei, obj, now).map_err(|e| format!("record {i}: {e}"))
        })
        .collect()
}

fn record(imei: &Imei, o: &Map<String, Value>, now: Timestamp) -> Result<TrackRecord, String> {
    let recorded_at = match o.get("recorded_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => {
            let t = DateTime::parse_from_rfc3339(s.trim())
                .map_err(|e| format!("recorded_at '{s}' is not an RFC 3339 time: {e}"))?;
            from_unix_ms(t.with_timezone(&Utc).timestamp_millis())
                .ok_or_else(|| format!("recorded_at '{s}' is out of range"))?
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(from_unix_ms)
            .ok_or_else(|| format!("recorded_at {n} is not unix milliseconds"))?,
        Some(_) => {
            return Err("recorded_at must be an RFC 3339 string or unix milliseconds".into());
        }
    };
    let num = |k: &str| -> Result<Option<f64>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("{k} must be a number")),
        }
    };
    let lng = match num("lng")? {
        Some(v) => Some(v),
        None => num("lon")?,
    };
    let coordinates = match (num("lat")?, lng) {
        (Some(lat), Some(lng)) => Some(Coordinates::new(lat, lng).map_err(|e| e.to_string())?),
        (None, None) => None,
        _ => {
            return Err(
                "lat and lng come together (or neither, for a record without a fix)".into(),
            );
        }
    };
    let fields = match o.get("fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(f)) => {
            if f.len() > MAX_FIELDS_PER_RECORD {
                return Err(format!(
                    "a record may carry at most {MAX_FIELDS_PER_RECORD} fields"
                ));
            }
            f.iter()
                .map(|(name, v)| field(name, v))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("fields must be an object {NAME: value}".into()),
    };
    Ok(TrackRecord {
        imei: imei.clone(),
        recorded_at,
        coordinates,
        fields,
    })
}

fn field(name: &str, v: &Value) -> Result<Field, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(format!(
            "field name '{}' must be 1-64 characters A-Z, 0-9, _ (Munic field names)",
            name.chars().take(64).collect::<String>()
        ));
    }
    let value = match v {
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::Int(i),
            None => FieldValue::Float(
                n.as_f64()
                    .ok_or_else(|| format!("field {name}: {n} is out of range"))?,
            ),
        },
        Value::String(s) => FieldValue::Text(s.clone()),
        _ => {
            return Err(format!(
                "field {name}: a value is a boolean, a number or a string"
            ));
        }
    };
    Ok(Field::new(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekko_core::time::rfc3339;

    const IMEI: &str = "359881234567899";

    fn imei() -> Imei {
        Imei::parse(IMEI).unwrap()
    }

    #[test]
    fn the_topic_names_the_device() {
        assert_eq!(
            imei_from_topic("devices/359881234567899/tracks"),
            Ok(imei())
        );
        for bad in [
            "devices/359881234567890/tracks",
            "devices/359881234567899",
            "devices/359881234567899/tracks/x",
            "cars/359881234567899/tracks",
        ] {
            assert!(imei_from_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_carries_time_position_and_typed_fields() {
        let body = br#"{"recorded_at": "2024-05-01T12:00:00.123Z", "lat": 48.85837, "lng": 2.294481,
            "fields": {"GPS_SPEED": 21600, "DIO_IGNITION": true, "GPRMC_VALID": "A", "X_TEMP": 21.5}}"#;
        let r = decode_payload(&imei(), body, ekko_core::time::now_ms()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(rfc3339(&r[0].recorded_at), "2024-05-01T12:00:00.123Z");
        let c = r[0].coordinates.unwrap();
        assert_eq!((c.lat, c.lng), (48.85837, 2.294481));
        assert_eq!(
            r[0].fields,
            vec![
                Field::new("GPS_SPEED", FieldValue::Int(21600)),
                Field::new("DIO_IGNITION", FieldValue::Bool(true)),
                Field::new("GPRMC_VALID", FieldValue::Text("A".into())),
                Field::new("X_TEMP", FieldValue::Float(21.5)),
            ]
        );
    }

    #[test]
    fn an_array_is_several_records_and_missing_time_means_now() {
        let now = from_unix_ms(1_714_564_800_000).unwrap();
        let body = br#"[{"recorded_at": 1714564790000}, {"lat": 1, "lon": 2}]"#;
        let r = decode_payload(&imei(), body, now).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].recorded_at.timestamp_millis(), 1_714_564_790_000);
        assert_eq!(r[0].coordinates, None);
        assert_eq!(r[1].recorded_at, now);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        let body = br#"[{"recorded_at": "2024-05-01T12:00:00.123Z", "lat": 48.8, "lng": 2.2,
            "fields": {"GPS_SPEED": 21600, "DIO_IGNITION": true, "X": "A", "Y": 1.5e308}}]"#;
        let now = ekko_core::time::now_ms();
        for cut in 0..body.len() {
            let _ = decode_payload(&imei(), &body[..cut], now);
        }
        let mut b = body.to_vec();
        for i in 0..b.len() {
            b[i] = b[i].wrapping_mul(31).wrapping_add(7);
            let _ = decode_payload(&imei(), &b, now);
        }
    }

    #[test]
    fn malformed_payloads_are_refused_with_a_reason() {
        let now = ekko_core::time::now_ms();
        for (body, expect) in [
            (&b"nope"[..], "not JSON"),
            (b"42", "record object"),
            (br#"{"lat": 1}"#, "together"),
            (br#"{"lat": 91, "lng": 0}"#, "latitude"),
            (br#"{"fields": {"gps speed": 1}}"#, "field name"),
            (
                br#"{"fields": {"A": null}}"#,
                "boolean, a number or a string",
            ),
            (br#"{"recorded_at": "yesterday"}"#, "RFC 3339"),
        ] {
            let e = decode_payload(&imei(), body, now).unwrap_err();
            assert!(e.contains(expect), "{e}");
        }
    }
}
