//! A device's stored data as callers read it back: its tracks over a time window, the last known
//! value of each field, and one field's values as a series.

use crate::fields::FieldValue;
use crate::time::Timestamp;
use crate::track::Coordinates;

/// Which tracks of a device a store should return: recorded in `[since, until)`, ordered by
/// (`recorded_at`, id), starting after `after`, at most `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackWindow {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// (recorded_at in unix ms, track id) of the last item already served.
    pub after: Option<(i64, i64)>,
    pub limit: u32,
}

/// The last value a device sent for one field. Devices send a field only when it changes, so
/// this is the field's current value however long ago it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct LastValue {
    pub name: String,
    pub value: FieldValue,
    /// When the record carrying it was recorded.
    pub recorded_at: Timestamp,
    pub track_id: i64,
    /// The position of that record, when it had a fix.
    pub coordinates: Option<Coordinates>,
}

/// One value of one field, with the record it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub track_id: i64,
    pub recorded_at: Timestamp,
    pub value: FieldValue,
}
