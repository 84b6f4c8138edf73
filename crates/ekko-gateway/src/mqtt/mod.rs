//! MQTT: a bridge to a broker (`ekko serve --mqtt-url mqtt://127.0.0.1:1883`, off by default).
//!
//! The bridge subscribes to `devices/+/tracks` with QoS 1 (client session kept by the broker:
//! `clean_session = false`, client id `ekko-bridge` or `?client_id=` in the URL). A device (or
//! its gateway) publishes to `devices/<imei>/tracks` a JSON record, or an array of them:
//!
//! ```json
//! {"recorded_at": "2024-05-01T12:00:00.123Z", "lat": 48.85837, "lng": 2.294481,
//!  "fields": {"GPS_SPEED": 21600, "GPS_DIR": 9000, "DIO_IGNITION": true, "GPRMC_VALID": "A"}}
//! ```
//!
//! `recorded_at` is RFC 3339 or unix milliseconds (absent: the time of reception); `lat`/`lng`
//! (or `lon`) come together or not at all (a record without a fix); `fields` use Munic names
//! and units (`ekko_core::fields`) with boolean, number or string values.
//!
//! The PUBACK is sent **only after every record of the message is committed**. A message that
//! can never be stored (bad topic, malformed JSON, unknown device — counted as pending) is
//! acknowledged and logged, since a redelivery would be refused again; when storage fails the
//! message is not acknowledged and the bridge reconnects, so the broker delivers it again. A
//! message's records are stored in one transaction, and a redelivered message is not stored
//! twice (`Ekko::ingest_tracks` de-duplicates resends).

pub mod bridge;
pub mod decode;

pub use bridge::{BrokerConfig, run};
