//! OsmAnd query/form decoding: bytes → `(name, value)` pairs (as the listener parses a query
//! string or a form body) → `osmand::decode_params`. Also the timestamp parser on its own.
#![no_main]

use ekko_gateway::osmand::decode::{decode_params, parse_timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The raw bytes (a form body: serde_urlencoded::from_bytes) and the lossy text (a query
    // string: serde_urlencoded::from_str), exactly as osmand::listener does.
    if let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) {
        let _ = decode_params(&params);
    }
    if let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(&text) {
        let _ = decode_params(&params);
    }
    // Pairs split without percent-decoding, so raw control characters and odd bytes reach the
    // decoder too: `k=v` separated by '&' (a value may be empty).
    let raw: Vec<(String, String)> = text
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let _ = decode_params(&raw);
    let _ = parse_timestamp("timestamp", &text);
});
