//! Notifications: what live subscribers receive about a device. The four kinds mirror
//! CloudConnect's webhook events (shared/spec/ekko-api.md §6.2): track, presence, message, poke.

use serde::{Deserialize, Serialize};

use crate::ids::Imei;
use crate::time::Timestamp;
use crate::track::Track;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DeviceNotification {
    Track(Track),
    Presence(Presence),
    Message(DeviceMessage),
    Poke(Poke),
}

impl DeviceNotification {
    pub fn device(&self) -> &Imei {
        match self {
            DeviceNotification::Track(t) => &t.imei,
            DeviceNotification::Presence(p) => &p.imei,
            DeviceNotification::Message(m) => &m.imei,
            DeviceNotification::Poke(p) => &p.imei,
        }
    }
}

/// What happened to a device's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceKind {
    Connect,
    Disconnect,
    /// A connection attempt that was refused (unknown device, bad credentials, ...).
    FailedConnect,
    /// The device was seen for the first time.
    DeclareAsset,
}

impl PresenceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PresenceKind::Connect => "connect",
            PresenceKind::Disconnect => "disconnect",
            PresenceKind::FailedConnect => "failed_connect",
            PresenceKind::DeclareAsset => "declare_asset",
        }
    }
}

/// A device connected, disconnected or went silent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub id: i64,
    pub imei: Imei,
    pub kind: PresenceKind,
    /// Free text: from the device on connect, from the server on disconnect (open list).
    pub reason: Option<String>,
    /// The protocol the device speaks (`osmand`, `teltonika`, ...), when known.
    pub protocol: Option<String>,
    pub time: Timestamp,
}

/// Whether a message carries content or acknowledges another message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Message,
    Ack,
}

impl MessageKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::Message => "message",
            MessageKind::Ack => "ack",
        }
    }
}

/// A device ↔ cloud message on a named channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceMessage {
    pub id: i64,
    pub imei: Imei,
    /// Set on replies and acks: the message this one answers.
    pub parent_id: Option<i64>,
    pub channel: String,
    pub kind: MessageKind,
    /// An IMEI, an account id, or `@@component@@` for a cloud service.
    pub sender: String,
    pub recipient: String,
    pub payload: Vec<u8>,
    /// When the device recorded it; always `None` on acks.
    pub recorded_at: Option<Timestamp>,
    pub received_at: Timestamp,
}

/// A change notification injected by a service or a third party ("go and re-read X").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Poke {
    pub id: i64,
    pub imei: Imei,
    /// The injecting application, e.g. "Device Manager".
    pub sender: String,
    /// The sub-service, e.g. "campaign::status".
    pub namespace: String,
    pub payload: Vec<u8>,
    pub received_at: Timestamp,
}

/// Largest message or poke payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Longest channel, namespace, sender or recipient name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// A message to store: a [`DeviceMessage`] before the store gives it an id and a reception time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub imei: Imei,
    pub parent_id: Option<i64>,
    pub channel: String,
    pub kind: MessageKind,
    pub sender: String,
    pub recipient: String,
    pub payload: Vec<u8>,
    pub recorded_at: Option<Timestamp>,
}

/// A poke to store: a [`Poke`] before the store gives it an id and a reception time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPoke {
    pub imei: Imei,
    pub sender: String,
    pub namespace: String,
    pub payload: Vec<u8>,
}

/// A presence event to store: a [`Presence`] before the store gives it an id.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPresence {
    pub imei: Imei,
    pub kind: PresenceKind,
    pub reason: Option<String>,
    pub protocol: Option<String>,
    pub time: Timestamp,
}
