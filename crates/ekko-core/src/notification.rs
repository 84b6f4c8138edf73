//! Notifications: what live subscribers receive about a device.
//! Presence, Message and Poke join Track here as the gateway learns to produce them.

use serde::{Deserialize, Serialize};

use crate::ids::Imei;
use crate::track::Track;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DeviceNotification {
    Track(Track),
}

impl DeviceNotification {
    pub fn device(&self) -> &Imei {
        match self {
            DeviceNotification::Track(t) => &t.imei,
        }
    }
}
