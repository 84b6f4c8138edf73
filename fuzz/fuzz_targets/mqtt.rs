//! MQTT bridge messages: `mqtt::decode::decode_payload` (JSON payload) and `imei_from_topic`.
#![no_main]

use ekko_core::Imei;
use ekko_core::time::from_unix_ms;
use ekko_gateway::mqtt::decode::{MAX_RECORDS, decode_payload, imei_from_topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let imei = Imei::parse("359881234567899").expect("a valid IMEI");
    let now = from_unix_ms(1_700_000_000_000).expect("a valid time");
    if let Ok(records) = decode_payload(&imei, data, now) {
        assert!(records.len() <= MAX_RECORDS);
    }
    let text = String::from_utf8_lossy(data);
    if text.as_bytes() != data {
        let _ = decode_payload(&imei, text.as_bytes(), now);
    }
    let _ = imei_from_topic(&text);
});
