//! The simulator's MQTT side: each report is published with QoS 1 to `devices/<imei>/tracks`
//! as the JSON record Ekko's bridge reads (`ekko_gateway::mqtt::decode`), over one connection
//! to the broker (a gateway publishing for its vehicles).
//!
//! A report counts as acknowledged when the **broker's** PUBACK arrives: the broker took it.
//! Ekko's bridge (`ekko serve --mqtt-url`) reads it from the broker and commits it afterwards,
//! so "acknowledged" here does not yet mean "stored".
//!
//! The session is clean: when the connection drops or a PUBACK does not come in time, the
//! round's outstanding reports count as failed and the next round connects afresh, so nothing
//! is republished behind the summary's back.

use std::collections::HashSet;
use std::time::Duration;

use ekko_core::fields;
use ekko_gateway::mqtt::BrokerConfig;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Outcome, Report};

/// How long the broker may stay silent (no connection, no PUBACK) before the round's
/// outstanding reports count as failed.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PACKET: usize = 1024 * 1024;

/// The topic a device's records go to.
pub fn topic(imei: &str) -> String {
    format!("devices/{imei}/tracks")
}

/// The record the bridge reads, in Munic's names and units (the same fields and values the
/// OsmAnd listener derives from the same report, plus `GPRMC_VALID`).
pub fn payload(r: &Report) -> Value {
    let int = |f: fields::Field| f.value.to_json();
    let mut f: Map<String, Value> = r
        .munic_fields()
        .into_iter()
        .map(|field| (field.name, field.value.to_json()))
        .collect();
    f.insert(
        fields::GPS_ACCURACY.into(),
        int(fields::accuracy_from_metres(r.number("accuracy").max(0.0))),
    );
    f.insert(
        fields::BATT_LEVEL.into(),
        int(fields::battery_level_percent(r.number("batt"))),
    );
    json!({
        "recorded_at": r.recorded_at_rfc3339(),
        "lat": r.number("lat"),
        "lng": r.number("lon"),
        "fields": f,
    })
}

/// What the event-loop task tells the round.
enum Notice {
    Connected,
    /// A publish went out with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The connection is gone; `refused`: the broker refused it (CONNACK code).
    Lost {
        reason: String,
        refused: bool,
    },
}

struct Connection {
    client: AsyncClient,
    notices: mpsc::UnboundedReceiver<Notice>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes rounds to one broker, connecting on demand.
pub struct Publisher {
    broker: BrokerConfig,
    connection: Option<Connection>,
}

impl Publisher {
    /// `url`: `mqtt://host[:port][?client_id=ID]`. Without a client id the simulator picks a
    /// fresh one (never the bridge's, which the broker would disconnect).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let mut broker = BrokerConfig::parse(url).map_err(anyhow::Error::msg)?;
        if !url.contains("client_id=") {
            let id = uuid::Uuid::new_v4().simple().to_string();
            broker.client_id = format!("ekko-simulate-{}", &id[..8]);
        }
        Ok(Publisher {
            broker,
            connection: None,
        })
    }

    async fn connect(&self) -> Result<Connection, Outcome> {
        let mut o = MqttOptions::new(&self.broker.client_id, &self.broker.host, self.broker.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, mut events) = AsyncClient::new(o, 64);
        let (tx, mut notices) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let notice = match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Notice::Connected,
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Notice::Sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Notice::Acked(ack.pkid),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Notice::Lost {
                            refused: matches!(e, ConnectionError::ConnectionRefused(_)),
                            reason: e.to_string(),
                        });
                        break;
                    }
                };
                if tx.send(notice).is_err() {
                    break;
                }
            }
        });
        let broker = format!("{}:{}", self.broker.host, self.broker.port);
        match tokio::time::timeout(TIMEOUT, notices.recv()).await {
            Ok(Some(Notice::Connected)) => Ok(Connection {
                client,
                notices,
                task,
            }),
            Ok(Some(Notice::Lost { reason, refused })) => {
                let reason = format!("MQTT broker {broker}: {reason}");
                Err(if refused {
                    Outcome::Refused(reason)
                } else {
                    Outcome::Failed(reason)
                })
            }
            Ok(_) => Err(Outcome::Failed(format!("MQTT broker {broker}: no CONNACK"))),
            Err(_) => {
                task.abort();
                Err(Outcome::Failed(format!(
                    "MQTT broker {broker}: no CONNACK within {} s",
                    TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Publishes one record per report (QoS 1) and waits for the broker's PUBACKs; one outcome
    /// per report (acknowledged first, then the ones that were not).
    pub async fn send(&mut self, reports: &[Report]) -> Vec<Outcome> {
        let n = reports.len();
        if n == 0 {
            return Vec::new();
        }
        let mut connection = match self.connection.take() {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(o) => return vec![o; n],
            },
        };
        let (acked, lost) = publish_round(&mut connection, reports).await;
        match &lost {
            // The connection is healthy and every publish of the round is settled: keep it.
            None => self.connection = Some(connection),
            // Anything outstanding must not be acked later behind the summary's back.
            Some(_) => drop(connection),
        }
        let mut out = vec![Outcome::Acked; acked];
        if let Some(reason) = lost {
            out.extend(vec![Outcome::Failed(reason); n - acked]);
        }
        out
    }

    /// Disconnects politely (the broker then drops the clean session at once).
    pub async fn close(mut self) {
        if let Some(c) = self.connection.take()
            && c.client.disconnect().await.is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while !c.task.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
    }
}

/// Publishes the round and counts its PUBACKs: `(acked, None)` when all came, else
/// `(acked, Some(why the rest did not))`.
async fn publish_round(c: &mut Connection, reports: &[Report]) -> (usize, Option<String>) {
    let mut published = 0;
    for r in reports {
        let body = payload(r).to_string().into_bytes();
        let publish = c
            .client
            .publish(topic(r.imei()), QoS::AtLeastOnce, false, body);
        match tokio::time::timeout(TIMEOUT, publish).await {
            Ok(Ok(())) => published += 1,
            Ok(Err(e)) => return (0, Some(format!("publish: {e}"))),
            Err(_) => {
                return (
                    0,
                    Some("the MQTT client is stuck: publish timed out".into()),
                );
            }
        }
    }
    // Packet ids are reused once acknowledged; each PUBACK settles the publish sent before it
    // with that id.
    let mut in_flight: HashSet<u16> = HashSet::new();
    let mut acked = 0;
    while acked < published {
        match tokio::time::timeout(TIMEOUT, c.notices.recv()).await {
            Ok(Some(Notice::Sent(pkid))) => {
                in_flight.insert(pkid);
            }
            Ok(Some(Notice::Acked(pkid))) => {
                if in_flight.remove(&pkid) {
                    acked += 1;
                }
            }
            Ok(Some(Notice::Connected)) => {}
            Ok(Some(Notice::Lost { reason, .. })) => {
                return (
                    acked,
                    Some(format!("the MQTT connection was lost: {reason}")),
                );
            }
            Ok(None) => return (acked, Some("the MQTT connection was lost".into())),
            Err(_) => {
                return (
                    acked,
                    Some(format!(
                        "no PUBACK from the broker within {} s",
                        TIMEOUT.as_secs()
                    )),
                );
            }
        }
    }
    (acked, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::Vehicle;
    use ekko_core::Imei;
    use ekko_core::fields::FieldValue;
    use ekko_gateway::mqtt::decode::{decode_payload, imei_from_topic};

    #[test]
    fn the_payload_decodes_back_to_what_osmand_would_store() {
        let imei = Imei::parse("359881234567899").unwrap();
        let mut v = Vehicle::new(imei.clone(), 1);
        for s in 0..120 {
            let r = v.step(1.0, 1_700_000_000.5 + s as f64);
            assert_eq!(imei_from_topic(&topic(r.imei())), Ok(imei.clone()));
            let body = payload(&r).to_string();
            let records = decode_payload(&imei, body.as_bytes(), ekko_core::time::now_ms())
                .expect("the bridge decodes the payload");
            assert_eq!(records.len(), 1);
            let rec = &records[0];
            assert_eq!(rec.recorded_at.timestamp_millis(), r.recorded_at_ms());
            let c = rec.coordinates.unwrap();
            assert_eq!((c.lat, c.lng), (r.number("lat"), r.number("lon")));
            let params: Vec<(String, String)> = r
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let mut osmand = ekko_gateway::osmand::decode_params(&params).unwrap().fields;
            osmand.push(fields::Field::new(
                fields::GPRMC_VALID,
                FieldValue::Text("A".into()),
            ));
            let mut mqtt = rec.fields.clone();
            osmand.sort_by(|a, b| a.name.cmp(&b.name));
            mqtt.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(mqtt, osmand, "at second {s}");
        }
    }

    #[test]
    fn the_simulator_never_takes_the_bridge_s_client_id() {
        let p = Publisher::new("mqtt://127.0.0.1:1883").unwrap();
        assert!(p.broker.client_id.starts_with("ekko-simulate-"));
        assert_ne!(
            Publisher::new("mqtt://127.0.0.1:1883")
                .unwrap()
                .broker
                .client_id,
            p.broker.client_id
        );
        let named = Publisher::new("mqtt://broker:1884?client_id=fleet-7").unwrap();
        assert_eq!(
            (named.broker.host.as_str(), named.broker.port),
            ("broker", 1884)
        );
        assert_eq!(named.broker.client_id, "fleet-7");
        assert!(Publisher::new("http://127.0.0.1:1883").is_err());
    }

    #[tokio::test]
    async fn without_a_broker_every_report_fails_with_the_reason() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Publisher::new(&format!("mqtt://127.0.0.1:{port}")).unwrap();
        let mut v = Vehicle::new(Imei::parse("359881234567899").unwrap(), 0);
        let reports = vec![v.step(1.0, 1_700_000_000.0); 3];
        let out = p.send(&reports).await;
        assert_eq!(out.len(), 3);
        assert!(
            out.iter()
                .all(|o| matches!(o, Outcome::Failed(r) if r.contains(&port.to_string()))),
            "{out:?}"
        );
    }
}
