//! The Teltonika TCP handshake: `codec::decode_imei`.
#![no_main]

use ekko_gateway::teltonika::codec::decode_imei;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((imei, used))) = decode_imei(data) {
        assert!(
            used <= data.len(),
            "consumed {used} of {} bytes",
            data.len()
        );
        assert_eq!(used, 2 + imei.len());
        assert!(!imei.is_empty() && imei.len() <= 20);
        assert!(imei.bytes().all(|b| b.is_ascii_digit()), "{imei:?}");
        assert_eq!(imei.as_bytes(), &data[2..used]);
    }
});
