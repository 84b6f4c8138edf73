//! Teltonika AVL data fields (codec id … N2) past the CRC check: the input is wrapped into a
//! TCP frame with a correct CRC (`codec::encode_tcp_frame`), so the fuzzer reaches the record
//! parser and `records::to_track_records` without having to find CRCs. A decoded Codec 8
//! packet must survive re-encoding (`codec::encode_codec8_data`) unchanged.
#![no_main]

use ekko_core::Imei;
use ekko_gateway::teltonika::codec::{
    Codec, encode_codec8_data, encode_tcp_frame, parse_tcp_frame,
};
use ekko_gateway::teltonika::records::to_track_records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = parse_tcp_frame(&encode_tcp_frame(data)) else {
        return;
    };
    assert_eq!(packet.records.len(), usize::from(data[1]));
    let imei = Imei::parse("359881234567899").expect("a valid IMEI");
    if let Ok(tracks) = to_track_records(&imei, &packet) {
        assert_eq!(tracks.len(), packet.records.len());
    }
    if packet.codec == Codec::Codec8 {
        let again = parse_tcp_frame(&encode_tcp_frame(&encode_codec8_data(&packet.records)))
            .expect("a re-encoded Codec 8 packet parses");
        assert_eq!(again, packet, "Codec 8 re-encoding changed the packet");
    }
});
