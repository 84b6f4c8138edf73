//! Devices: trackers and dongles, identified by IMEI and owned by one account.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Imei};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub imei: Imei,
    pub owner: AccountId,
    pub created_at: Timestamp,
}
