//! CloudConnect webhook bodies: `cloudconnect::decode_batch` (which must agree with the
//! reference decoder, `decode::decode_batch_reference`, on every body), plus the field-value
//! reader (`decode::decode_value`, every type) and the field dictionary on the raw bytes.
#![no_main]

use ekko_gateway::cloudconnect::decode::{
    FieldType, decode_batch_reference, decode_value, field_type,
};
use ekko_gateway::cloudconnect::decode_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_batch(data);
    let text = String::from_utf8_lossy(data);
    if text.as_bytes() != data {
        check_batch(text.as_bytes());
    }
    let _ = field_type(&text);
    let head = &data[..data.len().min(16)];
    for ty in [
        FieldType::Integer,
        FieldType::Boolean,
        FieldType::String,
        FieldType::Double,
    ] {
        let _ = decode_value(ty, head);
    }
});

fn check_batch(body: &[u8]) {
    let decoded = decode_batch(body);
    assert_eq!(decoded, decode_batch_reference(body), "the fast path disagrees");
    let Ok(batch) = decoded else {
        return;
    };
    // Every accepted or skipped event names its position in the array, in order.
    let n = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items.len(),
        other => panic!("decode_batch accepted a body that is not an array: {other:?}"),
    };
    assert!(batch.events.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(batch.events.iter().all(|(i, _)| *i < n));
    assert!(batch.skipped.iter().all(|s| s.index < n));
    assert!(batch.events.len() + batch.skipped.len() <= n);
}
