//! Golden tests of the CloudConnect webhook decoder, with bodies shaped like Munic's documented
//! events (ekko-api.md §6.2) and the documented field examples (`AAAycg==` = 12914, ...).

use ekko_core::fields::FieldValue;
use ekko_core::notification::{MessageKind, PresenceKind};
use ekko_gateway::cloudconnect::{DecodeError, Event, decode_batch};

const MIXED: &[u8] = include_bytes!("data/cloudconnect/mixed_batch.json");
const MALFORMED: &[u8] = include_bytes!("data/cloudconnect/malformed_batch.json");

fn field<'a>(fields: &'a [ekko_core::fields::Field], name: &str) -> &'a FieldValue {
    &fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .value
}

fn events() -> Vec<(usize, Event)> {
    decode_batch(MIXED).expect("the mixed batch decodes").events
}

#[test]
fn track_fields_decode_by_the_field_dictionary() {
    let Event::Track { source_id, record } = &events()[0].1 else {
        panic!("a track first")
    };
    assert_eq!(*source_id, Some(343884102010454016));
    assert_eq!(record.imei.as_str(), "359881234567899");
    let f = &record.fields;
    assert_eq!(field(f, "MDI_EXT_BATT_VOLTAGE"), &FieldValue::Int(12914));
    assert_eq!(field(f, "BATT_VOLT"), &FieldValue::Int(4114));
    assert_eq!(field(f, "GPS_FIXED_SAT_NUM"), &FieldValue::Int(9));
    assert_eq!(field(f, "RSSI"), &FieldValue::Int(18));
    assert_eq!(field(f, "GPRMC_VALID"), &FieldValue::Text("A".into()));
    assert_eq!(field(f, "GPS_SPEED"), &FieldValue::Int(21600));
    assert_eq!(field(f, "GPS_DIR"), &FieldValue::Int(9000));
    assert_eq!(field(f, "DIO_IGNITION"), &FieldValue::Bool(true));
    assert_eq!(field(f, "MDI_RECORD_DELAYED"), &FieldValue::Bool(false));
    assert_eq!(
        field(f, "MDI_VEHICLE_STATE"),
        &FieldValue::Text("1:0".into())
    );
    assert_eq!(
        field(f, "MDI_CC_DASHBOARD_MILEAGE"),
        &FieldValue::Float(123456.5)
    );
}

#[test]
fn a_field_outside_the_dictionary_keeps_its_base64_text() {
    let Event::Track { record, .. } = &events()[0].1 else {
        panic!("a track first")
    };
    assert_eq!(
        field(&record.fields, "MDI_SOMETHING_NEW"),
        &FieldValue::Text("AAEC".into())
    );
}

#[test]
fn loc_is_longitude_first_and_recorded_at_ms_wins() {
    let Event::Track { record, .. } = &events()[0].1 else {
        panic!("a track first")
    };
    let c = record.coordinates.expect("coordinates");
    assert_eq!((c.lat, c.lng), (48.85837, 2.29448));
    assert_eq!(
        ekko_core::time::rfc3339(&record.recorded_at),
        "2015-05-22T17:29:47.001Z"
    );
}

#[test]
fn a_track_without_loc_has_no_coordinates_and_negative_altitude_sign_extends() {
    let Event::Track { record, .. } = &events()[1].1 else {
        panic!("a track second")
    };
    assert_eq!(record.coordinates, None);
    assert_eq!(
        ekko_core::time::rfc3339(&record.recorded_at),
        "2015-05-22T17:30:47.000Z"
    );
    assert_eq!(
        field(&record.fields, "GPS_ALTITUDE"),
        &FieldValue::Int(-999)
    );
    assert_eq!(
        field(&record.fields, "GPRMC_VALID"),
        &FieldValue::Text("V".into())
    );
}

#[test]
fn presence_message_ack_and_poke_decode() {
    let ev = events();
    let kinds: Vec<usize> = ev.iter().map(|(i, _)| *i).collect();
    // Index 3 (presence without asset) and 7 (unknown kind) are skipped, not events.
    assert_eq!(kinds, vec![0, 1, 2, 4, 5, 6]);
    let Event::Presence {
        imei, kind, reason, ..
    } = &ev[2].1
    else {
        panic!("presence")
    };
    assert_eq!(imei.as_str(), "359881234567899");
    assert_eq!(*kind, PresenceKind::Connect);
    assert_eq!(reason.as_deref(), Some("reboot"));
    let Event::Message { message, .. } = &ev[3].1 else {
        panic!("message")
    };
    assert_eq!(message.kind, MessageKind::Message);
    assert_eq!(message.channel, "com.mdi.services.demo");
    assert_eq!(message.payload, b"hello cloud");
    assert_eq!(message.recipient, "@@server@@");
    assert!(message.recorded_at.is_some());
    let Event::Message { message: ack, .. } = &ev[4].1 else {
        panic!("ack")
    };
    assert_eq!(ack.kind, MessageKind::Ack);
    assert_eq!(ack.parent_id, Some(343884102010454100));
    assert_eq!(ack.recorded_at, None);
    let Event::Poke { poke, .. } = &ev[5].1 else {
        panic!("poke")
    };
    assert_eq!(poke.sender, "Device Manager");
    assert_eq!(poke.namespace, "campaign::status");
    assert_eq!(poke.payload, br#"{"status":"done"}"#);
}

#[test]
fn unknown_event_kinds_and_anonymous_presences_are_reported_as_skipped() {
    let batch = decode_batch(MIXED).unwrap();
    let skipped: Vec<usize> = batch.skipped.iter().map(|s| s.index).collect();
    assert_eq!(skipped, vec![3, 7]);
    assert!(batch.skipped[1].reason.contains("gossip"));
}

#[test]
fn every_malformed_event_is_named_by_index() {
    let Err(DecodeError::Events(errors)) = decode_batch(MALFORMED) else {
        panic!("the malformed batch is refused")
    };
    let by_index: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| (e.index, e.detail.as_str()))
        .collect();
    assert_eq!(by_index.len(), 7, "{by_index:?}");
    let has = |i: usize, s: &str| by_index.iter().any(|(j, d)| *j == i && d.contains(s));
    assert!(has(1, "check digit"));
    assert!(has(2, "RFC 3339"));
    assert!(has(3, "[longitude, latitude]"));
    assert!(has(4, "base64"));
    assert!(has(5, "disagree"));
    assert!(has(6, "object"));
    assert!(has(7, "namespace"));
}

#[test]
fn a_body_that_is_not_an_array_is_refused_as_a_whole() {
    for body in [&b"{}"[..], b"", b"not json", b"[1"] {
        assert!(matches!(decode_batch(body), Err(DecodeError::Body(_))));
    }
}

#[test]
fn arbitrary_bytes_never_panic_the_decoder() {
    // A small deterministic fuzz: truncations and byte flips of the golden bodies.
    for body in [MIXED, MALFORMED] {
        for cut in (0..body.len()).step_by(7) {
            let _ = decode_batch(&body[..cut]);
        }
        let mut b = body.to_vec();
        for i in (0..b.len()).step_by(13) {
            b[i] = b[i].wrapping_add(17);
            let _ = decode_batch(&b);
        }
    }
}
