//! Time helpers. Every timestamp Ekko publishes is an RFC 3339 UTC string with millisecond
//! precision (`2024-05-01T12:00:00.123Z`), as CloudConnect does.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds (the precision Ekko stores).
pub fn now_ms() -> Timestamp {
    from_unix_ms(Utc::now().timestamp_millis()).expect("the current time is representable")
}

pub fn from_unix_ms(ms: i64) -> Option<Timestamp> {
    Utc.timestamp_millis_opt(ms).single()
}

pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
