//! Device gateway: the protocols real trackers speak, turned into [`ekko_core::track::TrackRecord`]s.
//!
//! One module per device protocol, each split into a pure decoder (bytes/params → records, no
//! I/O; golden-tested with real frames) and a thin listener that calls
//! [`ekko_core::Ekko::ingest_track`] and acknowledges **only after** it returned (the record is
//! durable by then).
//!
//! | protocol | transport | default listen      | module      |
//! |----------|-----------|---------------------|-------------|
//! | OsmAnd   | HTTP      | 127.0.0.1:5055      | [`osmand`]  |
//! | Teltonika | TCP + UDP | 127.0.0.1:5027 (both) | [`teltonika`] |
//! | CloudConnect webhook | HTTP | the API listener, `POST /ingest/cloudconnect` | [`cloudconnect`] |

pub mod cloudconnect;
pub mod mqtt;
pub mod osmand;
pub mod presence;
pub mod problem;
pub mod teltonika;
