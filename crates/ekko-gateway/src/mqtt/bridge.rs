//! The MQTT bridge: a client of a broker, subscribed to `devices/+/tracks` with QoS 1. Each
//! message is decoded, stored through [`Ekko::ingest_tracks`], and only then acknowledged
//! (PUBACK).
//!
//! Messages are stored concurrently (up to [`MAX_IN_FLIGHT`] at once), so that the messages of
//! many devices share the store's group commits instead of paying one commit each; but a
//! device's messages are stored one after the other, in the order they arrived, and the PUBACKs
//! leave in the order the messages arrived (as MQTT requires of QoS 1 acknowledgements).
//!
//! A record without `recorded_at` is stamped with its message's reception time; a redelivery
//! (DUP set) of a message received earlier by this process gets the same time again
//! ([`ReceptionTimes`]), so that it is recognised as already stored.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ekko_core::time::Timestamp;
use ekko_core::{DomainError, Ekko};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::decode::{TOPIC_FILTER, decode_payload, imei_from_topic};

/// Largest payload stored; a larger message is acknowledged and dropped (logged).
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// Largest packet read from the broker: MQTT's own maximum. MQTT 3.1.1 cannot tell the broker
/// a smaller one, and a packet the client refuses to read breaks the connection, after which
/// the broker (keeping the session) delivers it again: one oversized message would stall the
/// bridge for good. So every packet is read, and oversized payloads are refused after.
pub const MAX_INCOMING_PACKET: usize = 268_435_455;
const MAX_OUTGOING_PACKET: usize = 64 * 1024;
/// How many recent messages' reception times are remembered for redeliveries.
const RECEPTION_TIMES: usize = 4096;
/// The protocol name recorded for pending devices.
pub const PROTOCOL: &str = "mqtt";
const DEFAULT_CLIENT_ID: &str = "ekko-bridge";
/// Most messages being stored at once; the event loop waits for a slot beyond that.
pub const MAX_IN_FLIGHT: usize = 64;

/// Where and as whom to connect, from `mqtt://host[:port][?client_id=ID]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    /// The broker keeps this client's session (clean_session = false), so messages that were
    /// not acknowledged are delivered again after a reconnection.
    pub client_id: String,
}

impl BrokerConfig {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .trim()
            .strip_prefix("mqtt://")
            .ok_or_else(|| format!("'{url}' is not an mqtt:// URL (e.g. mqtt://127.0.0.1:1883)"))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("'{url}': the port '{p}' is not a number"))?,
            ),
            None => (authority, 1883),
        };
        if host.is_empty() {
            return Err(format!("'{url}' names no host"));
        }
        let mut client_id = DEFAULT_CLIENT_ID.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("client_id", id)) if !id.is_empty() && id.len() <= 64 => {
                    client_id = id.to_owned()
                }
                _ => return Err(format!("'{url}': unknown or empty option '{pair}'")),
            }
        }
        Ok(BrokerConfig {
            host: host.to_owned(),
            port,
            client_id,
        })
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        o
    }
}

/// What to do with a message once handled.
enum Verdict {
    /// Stored, or refused for good (a resend would be refused again): acknowledge.
    Ack,
    /// Storage failed: do not acknowledge; reconnect so the broker delivers it again.
    Retry,
}

/// When each recent message was first received, so that a redelivery (the broker sets DUP)
/// stamps its records without `recorded_at` with the same time as the first delivery did, and
/// the store recognises them as already stored. Bounded; kept across reconnections, not across
/// restarts of Ekko.
#[derive(Default)]
struct ReceptionTimes {
    times: HashMap<(String, u64), Timestamp>,
    order: VecDeque<(String, u64)>,
}

impl ReceptionTimes {
    fn stamp(&mut self, p: &Publish) -> Timestamp {
        let mut hasher = std::hash::DefaultHasher::new();
        p.payload.hash(&mut hasher);
        let key = (p.topic.clone(), hasher.finish());
        if p.dup
            && let Some(first) = self.times.get(&key)
        {
            return *first;
        }
        let now = ekko_core::time::now_ms();
        if self.times.insert(key.clone(), now).is_none() {
            self.order.push_back(key);
            if self.order.len() > RECEPTION_TIMES
                && let Some(oldest) = self.order.pop_front()
            {
                self.times.remove(&oldest);
            }
        }
        now
    }
}

async fn handle(ekko: &Ekko, p: &Publish, received_at: Timestamp) -> Verdict {
    let imei = match imei_from_topic(&p.topic) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "MQTT: dropped a message on an unusable topic");
            return Verdict::Ack;
        }
    };
    if p.payload.len() > MAX_PAYLOAD {
        tracing::warn!(%imei, bytes = p.payload.len(), "MQTT: refused a message over {MAX_PAYLOAD} bytes");
        return Verdict::Ack;
    }
    let records = match decode_payload(&imei, &p.payload, received_at) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%imei, error = %e, "MQTT: refused a malformed message");
            return Verdict::Ack;
        }
    };
    // One transaction for the whole message; a redelivered message is not stored twice.
    match ekko.ingest_tracks(records).await {
        Ok(_) => Verdict::Ack,
        Err(DomainError::NotFound(_)) => {
            ekko.record_unknown_device(&imei, PROTOCOL).await;
            Verdict::Ack
        }
        Err(DomainError::Internal(e)) => {
            tracing::error!(%imei, error = %e, "MQTT: storage failed; the message will be redelivered");
            Verdict::Retry
        }
        Err(e) => {
            tracing::warn!(%imei, error = %e, "MQTT: refused a message");
            Verdict::Ack
        }
    }
}

/// Runs the bridge until `shutdown` turns true, reconnecting after failures.
pub async fn run(ekko: Ekko, config: BrokerConfig, mut shutdown: watch::Receiver<bool>) {
    let mut reception_times = ReceptionTimes::default();
    loop {
        let (client, eventloop) = AsyncClient::new(config.options(), 1024);
        let again = tokio::select! {
            again = session(&ekko, &config, &client, eventloop, &mut reception_times) => again,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        let _ = client.disconnect().await;
        if !again || *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One connection's life. Returns `true` to reconnect.
///
/// The event loop only reads: each message is stored by a task of its own (after the previous
/// message of the same device), and one acknowledging task awaits those tasks in arrival order
/// and sends each PUBACK. The loop waits for an in-flight slot, never for an acknowledgement, so
/// it keeps draining the client's request queue that the PUBACKs go through (waiting on them
/// here would deadlock). When a message could not be stored, acknowledging stops and the session
/// ends: the broker delivers again what was not acknowledged (resends are de-duplicated).
async fn session(
    ekko: &Ekko,
    config: &BrokerConfig,
    client: &AsyncClient,
    mut eventloop: EventLoop,
    reception_times: &mut ReceptionTimes,
) -> bool {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (stored_tx, stored_rx) = mpsc::unbounded_channel::<(Publish, JoinHandle<Verdict>)>();
    let (retry_tx, mut retry_rx) = oneshot::channel::<()>();
    let acker = tokio::spawn(acknowledge_in_order(client.clone(), stored_rx, retry_tx));
    // The outcome of each device's latest message (stored or not), which its next message
    // waits for: after a failure, the later messages are not stored either, so that the
    // redelivery keeps the device's order.
    let mut latest: HashMap<String, oneshot::Receiver<bool>> = HashMap::new();
    let again = loop {
        let event = tokio::select! {
            // The event loop is dropped right after, so an interrupted poll loses nothing.
            _ = &mut retry_rx => break true,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(host = %config.host, port = config.port, "MQTT bridge connected; subscribing to {TOPIC_FILTER}");
                if let Err(e) = client.try_subscribe(TOPIC_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "MQTT: cannot subscribe");
                    break true;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break true;
                };
                if latest.len() > 16 * MAX_IN_FLIGHT {
                    // Forget the devices whose latest message is stored (at most MAX_IN_FLIGHT
                    // are not), so the map stays small however many devices publish.
                    latest.retain(|_, done| match done.try_recv() {
                        Err(oneshot::error::TryRecvError::Empty) => true,
                        Ok(true) => false,
                        // Not stored: the device's later messages must not go ahead of its
                        // redelivery, so the failure is remembered.
                        Ok(false) | Err(oneshot::error::TryRecvError::Closed) => {
                            let (failed, outcome) = oneshot::channel();
                            let _ = failed.send(false);
                            *done = outcome;
                            true
                        }
                    });
                }
                let (done_tx, done_rx) = oneshot::channel();
                let previous = latest.insert(p.topic.clone(), done_rx);
                let ekko = ekko.clone();
                let message = p.clone();
                let received_at = reception_times.stamp(&p);
                let task = tokio::spawn(async move {
                    let previous_stored = match previous {
                        Some(previous) => previous.await == Ok(true),
                        None => true,
                    };
                    let verdict = if previous_stored {
                        handle(&ekko, &message, received_at).await
                    } else {
                        Verdict::Retry
                    };
                    let _ = done_tx.send(matches!(verdict, Verdict::Ack));
                    drop(slot);
                    verdict
                });
                if stored_tx.send((p, task)).is_err() {
                    break true;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(host = %config.host, port = config.port, error = %e, "MQTT connection failed; retrying");
                break true;
            }
        }
    };
    acker.abort();
    // Let the stores under way finish before the next session starts, so that they cannot
    // interleave with the redelivered messages.
    let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
    again
}

/// Sends the PUBACK of each message once it is stored, in arrival order; at the first message
/// that could not be stored, stops and asks the session to reconnect.
async fn acknowledge_in_order(
    client: AsyncClient,
    mut stored: mpsc::UnboundedReceiver<(Publish, JoinHandle<Verdict>)>,
    retry: oneshot::Sender<()>,
) {
    while let Some((p, task)) = stored.recv().await {
        match task.await {
            Ok(Verdict::Ack) => {
                if client.ack(&p).await.is_err() {
                    break;
                }
            }
            Ok(Verdict::Retry) | Err(_) => break,
        }
    }
    let _ = retry.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_is_stamped_with_the_time_of_the_first_delivery() {
        let mut times = ReceptionTimes::default();
        let first = Publish::new("devices/359881234567899/tracks", QoS::AtLeastOnce, "{}");
        let at = times.stamp(&first);
        std::thread::sleep(Duration::from_millis(5));
        let mut again = first.clone();
        again.dup = true;
        assert_eq!(times.stamp(&again), at);
        // The same payload sent anew (not a redelivery) is a new record with its own time.
        assert!(times.stamp(&first) > at);
        let mut other = Publish::new("devices/356307042441013/tracks", QoS::AtLeastOnce, "{}");
        other.dup = true;
        assert!(times.stamp(&other) > at, "another device's message");
    }

    #[test]
    fn reception_times_are_bounded() {
        let mut times = ReceptionTimes::default();
        for i in 0..RECEPTION_TIMES + 10 {
            times.stamp(&Publish::new("t", QoS::AtLeastOnce, i.to_string()));
        }
        assert_eq!(times.times.len(), RECEPTION_TIMES);
        assert_eq!(times.order.len(), RECEPTION_TIMES);
    }

    #[test]
    fn broker_urls_parse_with_defaults() {
        assert_eq!(
            BrokerConfig::parse("mqtt://127.0.0.1:1883").unwrap(),
            BrokerConfig {
                host: "127.0.0.1".into(),
                port: 1883,
                client_id: "ekko-bridge".into()
            }
        );
        let c = BrokerConfig::parse("mqtt://broker.local/?client_id=ekko-2").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.client_id.as_str()),
            ("broker.local", 1883, "ekko-2")
        );
        for bad in ["http://x", "mqtt://", "mqtt://h:port", "mqtt://h?x=1"] {
            assert!(BrokerConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
