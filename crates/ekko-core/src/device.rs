//! Devices: trackers and dongles, identified by IMEI, each in one group of one organization.

use serde::{Deserialize, Serialize};

use crate::fleet::{DeviceStatus, GroupId, OrganizationId};
use crate::ids::Imei;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub imei: Imei,
    pub organization: OrganizationId,
    pub group: GroupId,
    pub name: Option<String>,
    /// The manufacturer's serial number, when known.
    pub serial: Option<String>,
    pub status: DeviceStatus,
    pub created_at: Timestamp,
    /// When the newest record taken in from the device was recorded; `None` before the first.
    pub last_contact: Option<Timestamp>,
}

/// A device about to be registered.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDevice {
    pub imei: Imei,
    pub group: GroupId,
    pub name: Option<String>,
    pub serial: Option<String>,
    pub created_at: Timestamp,
}

/// `device_update`: each `Some` replaces a field; `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceUpdate {
    pub name: Option<Option<String>>,
    pub serial: Option<Option<String>>,
    pub status: Option<DeviceStatus>,
    pub group: Option<GroupId>,
}
