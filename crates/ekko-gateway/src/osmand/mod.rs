//! OsmAnd protocol: what the Traccar Client app (and OsmAnd's live tracking) sends.
//!
//! Two forms, both decoded by [`decode`] into a [`Report`]:
//! - query/form parameters: `?id=IMEI&lat=..&lon=..&timestamp=..&speed=..&bearing=..&altitude=..
//!   &accuracy=..&batt=..` (GET, or POST with the parameters in the URL or a form body);
//! - JSON, as current Traccar Client versions POST it:
//!   `{device_id, location: {timestamp, coords: {latitude, longitude, speed, heading, accuracy,
//!   altitude}, battery: {level, is_charging}, is_moving, odometer, event, ...}}`.
//!
//! Units: the query form's `speed` is in knots, the JSON form's in m/s. Negative speed, heading
//! or battery level mean "unknown" and produce no field. Query parameters this module does not
//! map are kept as fields under their upper-cased names, never dropped (prefixed `OSMAND_` if
//! the name is one of the mapped Munic fields). The JSON form keeps the keys listed above plus
//! `is_moving`, `event` and `activity.type`; its other keys are not stored yet.

pub mod decode;
pub mod listener;

pub use decode::{Report, decode_json, decode_params};
pub use listener::router;
