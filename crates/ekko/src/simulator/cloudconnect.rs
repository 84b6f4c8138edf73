//! The simulator's CloudConnect side: what Munic's cloud would push to a webhook. Each round is
//! one `POST` of a JSON array of `track` events (one per vehicle) with
//! `Authorization: Bearer <integration secret>`. Field values are base64, big-endian integers
//! in Munic's units, exactly as the gateway's decoder (`ekko_gateway::cloudconnect::decode`)
//! reads them with its field dictionary.
//!
//! A 200 (`{"stored": n, "skipped": [..]}`) acknowledges every event of the body; 400, 401 and
//! 403 are refusals (nothing was stored; the answer says why); anything else is a failure.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ekko_core::fields::{self, FieldValue};
use serde_json::{Map, Value, json};

use super::osmand::problem_detail;
use super::{Outcome, Report};

const TIMEOUT: Duration = Duration::from_secs(30);
/// `meta.account`: the Munic account name a webhook carries (Ekko ignores it: the integration
/// decides the account).
const ACCOUNT: &str = "ekko-simulator";

/// Where to post, and as which integration.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// e.g. http://127.0.0.1:4000/ingest/cloudconnect
    pub url: String,
    /// The integration's secret (`ekko integration create`).
    pub secret: String,
}

impl std::fmt::Debug for Target {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An integer field: 4 bytes big-endian (Munic's width), 8 when the value needs it. The
/// gateway sign-extends by the length, so both read back exactly.
fn int(v: i64) -> Value {
    let bytes = match i32::try_from(v) {
        Ok(v) => v.to_be_bytes().to_vec(),
        Err(_) => v.to_be_bytes().to_vec(),
    };
    json!({"b64_value": B64.encode(bytes)})
}

fn boolean(b: bool) -> Value {
    json!({"b64_value": B64.encode([u8::from(b)])})
}

fn text(s: &str) -> Value {
    json!({"b64_value": B64.encode(s.as_bytes())})
}

/// A field value in CloudConnect's encoding.
fn encoded(value: &FieldValue) -> Value {
    match value {
        FieldValue::Int(v) => int(*v),
        FieldValue::Bool(b) => boolean(*b),
        FieldValue::Text(s) => text(s),
        FieldValue::Float(f) => int(f.round() as i64),
    }
}

/// The vehicle battery (MDI_EXT_BATT_VOLTAGE, mV) of a Munic box: the alternator charges it
/// while the engine runs; parked, it rests at a voltage that follows its charge.
fn vehicle_battery_mv(charge_percent: f64, ignition: bool) -> i64 {
    if ignition {
        14_100
    } else {
        (11_900.0 + charge_percent.clamp(0.0, 100.0) * 8.0).round() as i64
    }
}

/// The device's backup battery (BATT_VOLT, mV), a Li-ion cell: 3.4 V empty, 4.2 V full.
fn backup_battery_mv(charge_percent: f64) -> i64 {
    (3_400.0 + charge_percent.clamp(0.0, 100.0) * 8.0).round() as i64
}

/// The `fields` of a track event, in Munic's names and units. BATT_LEVEL (an Ekko field) is
/// not in CloudConnect's dictionary, so the charge is reported as Munic does: voltages.
pub fn fields_of(r: &Report) -> Map<String, Value> {
    let mut f: Map<String, Value> = r
        .munic_fields()
        .into_iter()
        .map(|field| (field.name, encoded(&field.value)))
        .collect();
    f.insert(fields::GPS_FIXED_SAT_NUM.into(), int(9));
    f.insert(
        "MDI_EXT_BATT_VOLTAGE".into(),
        int(vehicle_battery_mv(r.number("batt"), r.ignition())),
    );
    f.insert("BATT_VOLT".into(), int(backup_battery_mv(r.number("batt"))));
    f
}

/// One CloudConnect `track` event for `report`; `id` is CloudConnect's own event id.
pub fn track_event(r: &Report, id: i64) -> Value {
    json!({
        "meta": {"account": ACCOUNT, "event": "track"},
        "payload": {
            "id": id,
            "id_str": id.to_string(),
            "asset": r.imei(),
            "recorded_at": r.recorded_at_rfc3339(),
            "loc": [r.number("lon"), r.number("lat")],
            "fields": fields_of(r),
        }
    })
}

/// The webhook body for one round: one track event per report, ids from `first_id` on.
pub fn body(reports: &[Report], first_id: i64) -> Vec<u8> {
    let events: Vec<Value> = reports
        .iter()
        .zip(first_id..)
        .map(|(r, id)| track_event(r, id))
        .collect();
    serde_json::to_vec(&events).unwrap_or_default()
}

/// What a 200 acknowledged: `stored` plus the `skipped` events, or `None` if the body is not
/// the ingest endpoint's answer.
pub fn acknowledged(answer: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let stored = v.get("stored")?.as_u64()?;
    let skipped = v.get("skipped")?.as_array()?.len() as u64;
    Some(stored + skipped)
}

/// The reason of a refusal: the problem's `detail` and its first per-event error.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    let first = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = v.get("errors")?.get(0)?;
        Some(format!(
            " (event {}: {})",
            e.get("index")?,
            e.get("detail")?.as_str()?
        ))
    });
    format!(
        "{status}: {}{}",
        problem_detail(body),
        first.unwrap_or_default()
    )
}

/// Posts rounds to one webhook endpoint.
pub struct Sender {
    client: reqwest::Client,
    target: Target,
    /// The next event id: unique per run (seeded by the start time, then counted).
    next_id: i64,
}

impl Sender {
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&target.url)
            .map_err(|e| anyhow::anyhow!("the CloudConnect URL '{}': {e}", target.url))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "the CloudConnect URL '{}' is not http:// or https://",
            target.url
        );
        Ok(Sender {
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            target,
            next_id: chrono::Utc::now().timestamp_millis() * 1000,
        })
    }

    /// One request for the whole round; one outcome per report, in order.
    pub async fn send(&mut self, reports: &[Report]) -> Vec<Outcome> {
        let n = reports.len();
        if n == 0 {
            return Vec::new();
        }
        let body = body(reports, self.next_id);
        self.next_id += n as i64;
        let sent = self
            .client
            .post(&self.target.url)
            .bearer_auth(&self.target.secret)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let all = |o: Outcome| vec![o; n];
        let r = match sent {
            Ok(r) => r,
            Err(e) => return all(Outcome::Failed(format!("could not send: {e}"))),
        };
        let status = r.status();
        let answer = r.bytes().await.unwrap_or_default();
        match status.as_u16() {
            200 => match acknowledged(&answer) {
                Some(k) => {
                    let k = (k as usize).min(n);
                    let mut out = vec![Outcome::Acked; k];
                    out.extend(vec![
                        Outcome::Failed(format!(
                            "the answer acknowledged {k} of {n} events"
                        ));
                        n - k
                    ]);
                    out
                }
                None => all(Outcome::Refused(format!(
                    "{} is not a CloudConnect ingest endpoint: its 200 is not {{stored, skipped}}",
                    self.target.url
                ))),
            },
            400 | 401 | 403 => all(Outcome::Refused(refusal(
                status,
                &String::from_utf8_lossy(&answer),
            ))),
            _ => all(Outcome::Failed(format!(
                "{status}: {}",
                problem_detail(&String::from_utf8_lossy(&answer))
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::Vehicle;
    use ekko_core::Imei;
    use ekko_core::fields::Field;
    use ekko_gateway::cloudconnect::decode::{Event, decode_batch};

    fn reports(n: usize, seconds: usize) -> Vec<Report> {
        let imeis = ["359881234567899", "356307042441013", "490154203237518"];
        let mut vehicles: Vec<Vehicle> = (0..n)
            .map(|i| Vehicle::new(Imei::parse(imeis[i % 3]).unwrap(), i))
            .collect();
        let mut last = Vec::new();
        for s in 0..seconds {
            last = vehicles
                .iter_mut()
                .map(|v| v.step(1.0, 1_700_000_000.125 + s as f64))
                .collect();
        }
        last
    }

    fn field<'a>(fields: &'a [Field], name: &str) -> &'a FieldValue {
        &fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} in {fields:?}"))
            .value
    }

    #[test]
    fn the_body_decodes_back_to_the_reports_in_munic_units() {
        let reports = reports(3, 30);
        let batch = decode_batch(&body(&reports, 42)).expect("the gateway decodes the body");
        assert!(batch.skipped.is_empty());
        assert_eq!(batch.events.len(), 3);
        for ((index, event), r) in batch.events.iter().zip(&reports) {
            let Event::Track { source_id, record } = event else {
                panic!("a track, not {event:?}");
            };
            assert_eq!(*source_id, Some(42 + *index as i64));
            assert_eq!(record.imei.as_str(), r.imei());
            assert_eq!(record.recorded_at.timestamp_millis(), r.recorded_at_ms());
            assert_eq!(r.recorded_at_ms() % 1000, 125, "milliseconds survive");
            let c = record.coordinates.expect("a fix");
            assert_eq!((c.lat, c.lng), (r.number("lat"), r.number("lon")));
            // The fields the OsmAnd listener derives from the same report, with the same values.
            let params: Vec<(String, String)> = r
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let osmand = ekko_gateway::osmand::decode_params(&params).unwrap();
            for name in [
                fields::GPS_SPEED,
                fields::GPS_DIR,
                fields::GPS_ALTITUDE,
                fields::DIO_IGNITION,
                fields::ODO_FULL_METER,
            ] {
                assert_eq!(
                    field(&record.fields, name),
                    field(&osmand.fields, name),
                    "{name}"
                );
            }
            assert_eq!(
                field(&record.fields, fields::GPRMC_VALID),
                &FieldValue::Text("A".into())
            );
            assert_eq!(
                field(&record.fields, fields::GPS_FIXED_SAT_NUM),
                &FieldValue::Int(9)
            );
            // Every field is one the dictionary knows: none is left as base64 text.
            for f in &record.fields {
                if f.name != fields::GPRMC_VALID {
                    assert!(
                        !matches!(f.value, FieldValue::Text(_)),
                        "{} is typed: {:?}",
                        f.name,
                        f.value
                    );
                }
            }
            let FieldValue::Int(mv) = field(&record.fields, "BATT_VOLT") else {
                panic!("BATT_VOLT is an integer");
            };
            assert!((3_400..=4_200).contains(mv), "{mv}");
        }
    }

    #[test]
    fn ignition_and_vehicle_battery_follow_the_drive() {
        // Over ten minutes a vehicle drives and parks: both ignition states appear, and the
        // vehicle battery charges only while the engine runs.
        let mut v = Vehicle::new(Imei::parse("359881234567899").unwrap(), 0);
        let mut seen = (false, false);
        for s in 0..600 {
            let r = v.step(1.0, 1_700_000_000.0 + s as f64);
            let Event::Track { record, .. } = decode_batch(&body(std::slice::from_ref(&r), 1))
                .unwrap()
                .events
                .remove(0)
                .1
            else {
                panic!("a track");
            };
            let on = field(&record.fields, fields::DIO_IGNITION) == &FieldValue::Bool(true);
            let FieldValue::Int(mv) = *field(&record.fields, "MDI_EXT_BATT_VOLTAGE") else {
                panic!("an integer");
            };
            if on {
                seen.0 = true;
                assert_eq!(mv, 14_100);
                assert_ne!(
                    field(&record.fields, fields::GPS_SPEED),
                    &FieldValue::Int(0)
                );
            } else {
                seen.1 = true;
                assert!((11_900..=12_700).contains(&mv), "{mv}");
                assert_eq!(
                    field(&record.fields, fields::GPS_SPEED),
                    &FieldValue::Int(0)
                );
            }
        }
        assert_eq!(seen, (true, true));
    }

    #[test]
    fn integers_are_four_bytes_unless_they_need_eight() {
        assert_eq!(int(12914), json!({"b64_value": "AAAycg=="}));
        assert_eq!(
            int(-999),
            json!({"b64_value": B64.encode([0xFF, 0xFF, 0xFC, 0x19])})
        );
        assert_eq!(
            int(1 << 40),
            json!({"b64_value": B64.encode((1i64 << 40).to_be_bytes())})
        );
        assert_eq!(boolean(true), json!({"b64_value": "AQ=="}));
        assert_eq!(text("A"), json!({"b64_value": "QQ=="}));
    }

    #[test]
    fn answers_are_counted_as_the_listener_means_them() {
        assert_eq!(acknowledged(br#"{"stored": 3, "skipped": []}"#), Some(3));
        assert_eq!(
            acknowledged(br#"{"stored": 2, "skipped": [{"index": 1, "reason": "x"}]}"#),
            Some(3)
        );
        assert_eq!(acknowledged(br#"{"data": null}"#), None);
        assert_eq!(acknowledged(b""), None);
        let reason = refusal(
            reqwest::StatusCode::FORBIDDEN,
            r#"{"status": 403, "detail": "1 event(s) name devices this integration may not push for; nothing was stored",
                "errors": [{"index": 0, "detail": "device 490154203237518 not found"}]}"#,
        );
        assert!(reason.starts_with("403 Forbidden: 1 event(s)"), "{reason}");
        assert!(
            reason.ends_with("(event 0: device 490154203237518 not found)"),
            "{reason}"
        );
    }

    #[test]
    fn the_secret_is_never_printed() {
        let t = Target {
            url: "http://127.0.0.1:4000/ingest/cloudconnect".into(),
            secret: "eki_very_secret".into(),
        };
        assert!(!format!("{t:?}").contains("eki_very_secret"));
        assert!(!format!("{:?}", super::super::Protocol::CloudConnect(t)).contains("very"));
    }
}
