//! The fast path for `track` events, which are nearly all of what a webhook carries.
//!
//! The reference decoder (`decode::decode_event`) reads each event through a
//! `serde_json::Value`: a map allocation per object and a string per key and value. That was
//! half of the server's CPU on the CloudConnect bench. Here a track event is deserialized
//! straight into borrowed structs instead. Only well-formed track events take this path:
//! anything irregular (another event kind, a value of a wrong type, a duplicate key, an
//! invalid time, base64 or IMEI, disagreeing ids, too many fields) returns `None`, and the
//! caller decodes the event with the reference decoder, which then gives the same answer or
//! the same error message as always. `decode_batch` must agree with the reference on every
//! input: a unit test and the `cloudconnect` fuzz target check it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use ekko_core::Imei;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::time::{Timestamp, from_unix_ms};
use ekko_core::track::{Coordinates, MAX_FIELDS_PER_RECORD, TrackRecord};
use serde::de::{Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, de::IgnoredAny};

use super::decode::{Event, decode_value, field_type};

/// A track event, or `None` when the reference decoder must look at it.
pub(super) fn decode(raw: &str) -> Option<Event> {
    if !plainly_parsable(raw) {
        return None;
    }
    let event: ObjectOnly<RawEvent> = serde_json::from_str(raw).ok()?;
    let RawEvent { meta, payload } = event.0;
    if meta.0.event != "track" {
        return None;
    }
    let p = payload.0;
    Some(Event::Track {
        source_id: source_id(p.id_str.as_deref(), p.id)?,
        record: TrackRecord {
            imei: Imei::parse(p.asset.as_deref()?).ok()?,
            recorded_at: match (&p.recorded_at_ms, &p.recorded_at) {
                (Some(ms), _) => time(ms)?,
                (None, Some(s)) => time(s)?,
                (None, None) => return None,
            },
            coordinates: match (p.loc, p.location) {
                (Some(loc), _) | (None, Some(loc)) => match loc {
                    Some((lng, lat)) => Some(Coordinates::new(lat, lng).ok()?),
                    None => None,
                },
                (None, None) => None,
            },
            fields: fields(p.fields)?,
        },
    })
}

/// Whether the keys this path ignores are sure to be valid for the reference decoder too.
/// serde_json skips an ignored value without the checks it makes when it builds a `Value`:
/// the range of numbers (`1e999`, a 400-digit integer), `\u` escapes (a lone surrogate), and
/// its nesting limit. So an event with an exponent, a long number, a `\u` escape or deep
/// nesting anywhere goes to the reference decoder (found by the fuzz target).
fn plainly_parsable(raw: &str) -> bool {
    const MAX_DEPTH: usize = 32;
    const MAX_DIGITS: usize = 19;
    let (mut in_string, mut escaped) = (false, false);
    let (mut depth, mut digits) = (0usize, 0usize);
    for &b in raw.as_bytes() {
        if in_string {
            match b {
                _ if escaped => {
                    if b == b'u' {
                        return false;
                    }
                    escaped = false;
                }
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > MAX_DIGITS {
                    return false;
                }
                continue;
            }
            b'e' | b'E' if digits > 0 => return false,
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        // A number's digits before and after its '.' count together.
        if b != b'.' {
            digits = 0;
        }
    }
    true
}

/// `id_str` (exact) or `id`, as `decode::source_id` reads them; `None` when they disagree.
fn source_id(id_str: Option<&str>, id: Option<i64>) -> Option<Option<i64>> {
    let exact = match id_str {
        Some(s) => Some(s.trim().parse::<i64>().ok()?),
        None => None,
    };
    match (exact, id) {
        (Some(s), Some(n)) if s != n && (s as f64) != (n as f64) => None,
        (Some(s), _) => Some(Some(s)),
        (None, n) => Some(n),
    }
}

fn time(s: &str) -> Option<Timestamp> {
    let t = DateTime::parse_from_rfc3339(s.trim()).ok()?;
    from_unix_ms(t.with_timezone(&Utc).timestamp_millis())
}

fn fields(raw: Option<ObjectOnly<RawFields>>) -> Option<Vec<Field>> {
    let Some(ObjectOnly(RawFields(entries))) = raw else {
        return Some(Vec::new());
    };
    if entries.len() > MAX_FIELDS_PER_RECORD || has_duplicate_names(&entries) {
        return None;
    }
    entries
        .into_iter()
        .map(|(name, value)| {
            let b64 = value.0.b64_value;
            let bytes = B64.decode(b64.trim()).ok()?;
            let value = match field_type(&name) {
                Some(ty) => decode_value(ty, &bytes).ok()?,
                None => FieldValue::Text(b64.trim().to_owned()),
            };
            Some(Field::new(name.into_owned(), value))
        })
        .collect()
}

/// A repeated field name: the reference decoder keeps the last value at the first position.
fn has_duplicate_names(entries: &[(Cow<str>, ObjectOnly<RawField>)]) -> bool {
    if entries.len() <= 16 {
        entries
            .iter()
            .enumerate()
            .any(|(i, (a, _))| entries[..i].iter().any(|(b, _)| a == b))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        !entries.iter().all(|(name, _)| seen.insert(name.as_ref()))
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    meta: ObjectOnly<RawMeta<'a>>,
    #[serde(borrow)]
    payload: ObjectOnly<RawTrack<'a>>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
}

/// The payload keys the reference decoder reads for a track; others are ignored by both.
#[derive(Deserialize)]
struct RawTrack<'a> {
    id: Option<i64>,
    #[serde(borrow)]
    id_str: Option<Cow<'a, str>>,
    #[serde(borrow)]
    asset: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recorded_at_ms: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recorded_at: Option<Cow<'a, str>>,
    /// Absent (`None`) differs from `null` (`Some(None)`): a `null` loc hides `location`.
    #[serde(default, deserialize_with = "present")]
    loc: Option<Option<(f64, f64)>>,
    #[serde(default, deserialize_with = "present")]
    location: Option<Option<(f64, f64)>>,
    #[serde(borrow)]
    fields: Option<ObjectOnly<RawFields<'a>>>,
}

#[derive(Deserialize)]
struct RawField<'a> {
    #[serde(borrow)]
    b64_value: Cow<'a, str>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The `fields` object's entries, in document order.
struct RawFields<'a>(Vec<(Cow<'a, str>, ObjectOnly<RawField<'a>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Entries<'a> {
            type Value = RawFields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    if entries.len() > MAX_FIELDS_PER_RECORD {
                        // Too many: the reference decoder says so; skip the rest cheaply.
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    entries.push((name, map.next_value()?));
                }
                Ok(RawFields(entries))
            }
        }
        d.deserialize_map(Entries(PhantomData))
    }
}

/// `T` read from a JSON object only. serde's derived structs also accept an array (its
/// elements taken as the fields in order), which the reference decoder refuses.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(PhantomData)).map(ObjectOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_track_takes_the_fast_path_and_anything_else_does_not() {
        let track = r#"{"meta":{"account":"munic","event":"track"},"payload":{"id":342,"id_str":"342",
            "asset":"359881234567899","recorded_at":"2026-12-04T08:00:00Z","recorded_at_ms":"2026-12-04T08:00:00.250Z",
            "received_at":"2026-12-04T08:00:01Z","loc":[2.294481,48.85837],
            "fields":{"GPS_SPEED":{"b64_value":"AAAycg=="},"DIO_IGNITION":{"b64_value":"AQ=="}}}}"#;
        let Some(Event::Track { source_id, record }) = decode(track) else {
            panic!("not decoded by the fast path");
        };
        assert_eq!(source_id, Some(342));
        assert_eq!(record.recorded_at.timestamp_millis() % 1000, 250);
        assert_eq!(record.fields.len(), 2);
        assert_eq!(record.fields[0].value, FieldValue::Int(12914));
        let coordinates = record.coordinates.unwrap();
        assert_eq!((coordinates.lat, coordinates.lng), (48.85837, 2.294481));
        for other in [
            r#"{"meta":{"event":"presence"},"payload":{"asset":"359881234567899","type":"connect"}}"#,
            r#"{"meta":{"event":"track"},"payload":["359881234567899"]}"#,
            r#"{"meta":{"event":"track"},"payload":{"asset":"359881234567899"}}"#,
            r#"{"meta":{"event":"track"},"payload":{"asset":"1","recorded_at":"2026-12-04T08:00:00Z"}}"#,
        ] {
            assert!(decode(other).is_none(), "{other}");
        }
    }
}
