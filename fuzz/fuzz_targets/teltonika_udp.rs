//! Teltonika UDP datagrams: `codec::parse_udp_datagram`, then `records::to_track_records`.
#![no_main]

use ekko_core::Imei;
use ekko_gateway::teltonika::codec::parse_udp_datagram;
use ekko_gateway::teltonika::records::to_track_records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = parse_udp_datagram(data) else {
        return;
    };
    assert!(!p.imei.is_empty() && p.imei.bytes().all(|b| b.is_ascii_digit()));
    // The record count byte follows the 8-byte header, the IMEI and the codec id.
    let n1 = data[8 + p.imei.len() + 1];
    assert_eq!(p.packet.records.len(), usize::from(n1));
    // The listener converts with the device's IMEI once it is known to be one.
    let imei = Imei::parse(&p.imei)
        .unwrap_or_else(|_| Imei::parse("359881234567899").expect("a valid IMEI"));
    if let Ok(tracks) = to_track_records(&imei, &p.packet) {
        assert_eq!(tracks.len(), p.packet.records.len());
    }
});
