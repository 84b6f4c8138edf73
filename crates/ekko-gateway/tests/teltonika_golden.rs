//! Golden, negative and no-panic tests for the Teltonika codec and record mapping.
//!
//! `tests/data/teltonika.json` holds real device frames (hex, from the public Traccar test suite)
//! with the records Ekko must make of each: Munic field names and units, hand-checked against
//! the frames' notes and an independent decoder.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ekko_core::Imei;
use ekko_core::time::rfc3339;
use ekko_gateway::teltonika::codec::{
    self, AvlPacket, Codec, CodecError, encode_udp_datagram, parse_tcp_frame, parse_udp_datagram,
};
use ekko_gateway::teltonika::records::to_track_records;
use serde_json::Value;

const IMEI: &str = "356307042441013";
const COORDINATE_TOLERANCE: f64 = 1e-9;

struct Golden {
    name: String,
    frame: Vec<u8>,
    codec: String,
    records: Vec<Value>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn goldens() -> Vec<Golden> {
    let data: Value =
        serde_json::from_str(include_str!("data/teltonika.json")).expect("teltonika.json parses");
    data["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| Golden {
            name: f["name"].as_str().unwrap().to_owned(),
            frame: unhex(f["hex"].as_str().unwrap()),
            codec: f["codec"].as_str().unwrap().to_owned(),
            records: f["records"].as_array().unwrap().clone(),
        })
        .collect()
}

fn data_field(frame: &[u8]) -> &[u8] {
    &frame[8..frame.len() - 4]
}

fn check_records(name: &str, packet: &AvlPacket, expected: &[Value]) {
    let imei = Imei::parse(IMEI).unwrap();
    let records = to_track_records(&imei, packet).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(records.len(), expected.len(), "{name}: record count");
    for (i, (got, want)) in records.iter().zip(expected).enumerate() {
        assert_eq!(
            rfc3339(&got.recorded_at),
            want["recorded_at"].as_str().unwrap(),
            "{name} record {i}: recorded_at"
        );
        match (&got.coordinates, &want["coordinates"]) {
            (None, Value::Null) => {}
            (Some(c), w) if !w.is_null() => {
                assert!(
                    (c.lat - w["lat"].as_f64().unwrap()).abs() < COORDINATE_TOLERANCE
                        && (c.lng - w["lng"].as_f64().unwrap()).abs() < COORDINATE_TOLERANCE,
                    "{name} record {i}: coordinates {c:?} vs {w}"
                );
            }
            (g, w) => panic!("{name} record {i}: coordinates {g:?} vs {w}"),
        }
        assert_eq!(
            serde_json::to_value(&got.fields).unwrap(),
            want["fields"],
            "{name} record {i}: fields"
        );
    }
}

#[test]
fn every_golden_frame_decodes_to_its_expected_records() {
    let goldens = goldens();
    assert!(goldens.len() >= 8);
    for g in &goldens {
        assert_eq!(
            codec::check_frame(&g.frame),
            Ok(Some(g.frame.len())),
            "{}",
            g.name
        );
        let packet = parse_tcp_frame(&g.frame).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(format!("{:?}", packet.codec), g.codec, "{}", g.name);
        check_records(&g.name, &packet, &g.records);
    }
}

#[test]
fn all_three_codecs_are_covered_by_real_frames() {
    let codecs: Vec<String> = goldens().into_iter().map(|g| g.codec).collect();
    for c in [Codec::Codec8, Codec::Codec8Extended, Codec::Codec16] {
        assert!(
            codecs.contains(&format!("{c:?}")),
            "no real frame for {c:?}"
        );
    }
}

#[test]
fn golden_frames_decode_the_same_as_udp_datagrams() {
    for g in goldens() {
        let d = encode_udp_datagram(0x0102, 9, IMEI, data_field(&g.frame));
        let p = parse_udp_datagram(&d).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(
            (p.packet_id, p.avl_packet_id, p.imei.as_str()),
            (0x0102, 9, IMEI)
        );
        check_records(&g.name, &p.packet, &g.records);
    }
}

#[test]
fn a_golden_frame_with_a_corrupted_byte_fails_its_crc() {
    for g in goldens() {
        for at in [10, g.frame.len() / 2, g.frame.len() - 6] {
            let mut bad = g.frame.clone();
            bad[at] ^= 0x5A;
            assert!(
                matches!(parse_tcp_frame(&bad), Err(CodecError::BadCrc { .. })),
                "{} corrupted at {at}",
                g.name
            );
        }
    }
}

#[test]
fn every_prefix_of_a_golden_frame_is_incomplete_not_an_error() {
    for g in goldens() {
        for cut in 0..g.frame.len() {
            assert_eq!(
                codec::check_frame(&g.frame[..cut]),
                Ok(None),
                "{} cut at {cut}",
                g.name
            );
        }
    }
}

#[test]
fn a_truncated_datagram_is_refused() {
    let g = &goldens()[0];
    let d = encode_udp_datagram(1, 1, IMEI, data_field(&g.frame));
    for cut in [0, 1, 5, 20, d.len() - 1] {
        assert!(parse_udp_datagram(&d[..cut]).is_err(), "cut at {cut}");
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn decode_everything(bytes: &[u8]) {
    let imei = Imei::parse(IMEI).unwrap();
    let _ = codec::check_frame(bytes);
    let _ = codec::decode_imei(bytes);
    if let Ok(p) = parse_tcp_frame(bytes) {
        let _ = to_track_records(&imei, &p);
    }
    if let Ok(p) = parse_udp_datagram(bytes) {
        let _ = to_track_records(&imei, &p.packet);
    }
    // The data field alone, re-wrapped with a valid CRC: mutations reach the record parser.
    if bytes.len() > 12 {
        let framed = codec::encode_tcp_frame(&bytes[8..bytes.len() - 4]);
        if let Ok(p) = parse_tcp_frame(&framed) {
            let _ = to_track_records(&imei, &p);
        }
    }
}

#[test]
fn mutated_and_random_input_never_panics_the_decoder() {
    let goldens = goldens();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let mut bytes = if round % 4 == 0 {
            let n = rng.below(300);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            goldens[rng.below(goldens.len())].frame.clone()
        };
        for _ in 0..=rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, rng.next() as u8),
            }
        }
        let result = catch_unwind(AssertUnwindSafe(|| decode_everything(&bytes)));
        assert!(result.is_ok(), "panic on input {bytes:02x?}");
    }
}
