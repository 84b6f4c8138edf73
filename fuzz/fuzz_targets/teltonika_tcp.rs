//! Teltonika TCP AVL frames: `codec::check_frame` + `codec::parse_tcp_frame`, fed as a stream
//! the way the TCP listener does (frames back to back in one buffer), then
//! `records::to_track_records`.
#![no_main]

use ekko_core::Imei;
use ekko_gateway::teltonika::codec::{MAX_FRAME, check_frame, parse_tcp_frame};
use ekko_gateway::teltonika::records::to_track_records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let imei = Imei::parse("359881234567899").expect("a valid IMEI");
    // The whole input as one frame, without check_frame first.
    let _ = parse_tcp_frame(data);
    // The input as a stream of frames.
    let mut rest = data;
    while let Ok(Some(len)) = check_frame(rest) {
        assert!(
            len >= 12 && len <= rest.len() && len <= MAX_FRAME,
            "frame length {len}"
        );
        let Ok(packet) = parse_tcp_frame(&rest[..len]) else {
            break;
        };
        // An accepted frame's records are as many as its N1 byte (offset 9) says.
        assert_eq!(packet.records.len(), usize::from(rest[9]));
        if let Ok(tracks) = to_track_records(&imei, &packet) {
            assert_eq!(tracks.len(), packet.records.len());
        }
        rest = &rest[len..];
    }
});
