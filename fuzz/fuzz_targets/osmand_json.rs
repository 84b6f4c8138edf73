//! OsmAnd JSON decoding (current Traccar Client's POST body): `osmand::decode_json`.
#![no_main]

use ekko_gateway::osmand::decode_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_json(data);
    let text = String::from_utf8_lossy(data);
    if text.as_bytes() != data {
        let _ = decode_json(text.as_bytes());
    }
});
