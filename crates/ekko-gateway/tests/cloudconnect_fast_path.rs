//! `decode_batch` reads track events through a fast path; it must give exactly what the
//! reference decoder (every event through `serde_json::Value`) gives, accepted or refused,
//! with the same error messages. Bodies are built from many variants of every key the track
//! decoder reads, well-formed and not.

use ekko_gateway::cloudconnect::decode::decode_batch_reference;
use ekko_gateway::cloudconnect::decode_batch;

const GOLDEN: &[&[u8]] = &[
    include_bytes!("data/cloudconnect/mixed_batch.json"),
    include_bytes!("data/cloudconnect/malformed_batch.json"),
];

fn pick<'a>(state: &mut u64, options: &[&'a str]) -> &'a str {
    // xorshift64: a fixed sequence, so a failure is reproducible.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    options[(*state % options.len() as u64) as usize]
}

fn many_fields(n: usize) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| format!(r#""F{i}":{{"b64_value":"AQ=="}}"#))
        .collect();
    format!(r#","fields":{{{}}}"#, entries.join(","))
}

fn event(state: &mut u64) -> String {
    let meta = pick(
        state,
        &[
            r#""meta":{"account":"munic","event":"track"}"#,
            r#""meta":{"account":"munic","event":"track"}"#,
            r#""meta":{"account":"munic","event":"track"}"#,
            "any",
        ],
    );
    let meta = if meta != "any" {
        meta
    } else {
        pick(
            state,
            &[
                r#""meta":{"account":"munic","event":"track"}"#,
                r#""meta":{"event":"track"}"#,
                r#""meta":{"event":"presence"}"#,
                r#""meta":["track"]"#,
                r#""meta":{"event":1}"#,
                r#""meta":{"event":"track","event":"track"}"#,
                "",
            ],
        )
    };
    let mut payload = Vec::new();
    for options in [
        &[
            "",
            r#""id":null"#,
            r#""id":123"#,
            r#""id":1.5"#,
            r#""id":"123""#,
            r#""id":9223372036854775807"#,
            r#""id":18446744073709551615"#,
            r#""id":-4"#,
        ][..],
        &[
            "",
            r#""id_str":null"#,
            r#""id_str":"123""#,
            r#""id_str":" 124 ""#,
            r#""id_str":"x""#,
            r#""id_str":5"#,
            r#""id_str":"9223372036854775807""#,
        ][..],
        &[
            r#""asset":"359881234567899""#,
            r#""asset":"359881234567899""#,
            r#""asset":"35988123456789""#,
            r#""asset":null"#,
            r#""asset":359881234567899"#,
            r#""asset":" 359881234567899""#,
            "",
        ][..],
        &[
            "",
            "",
            r#""recorded_at_ms":null"#,
            r#""recorded_at_ms":"2026-12-04T08:00:00.123Z""#,
            r#""recorded_at_ms":"bad""#,
            r#""recorded_at_ms":5"#,
        ][..],
        &[
            r#""recorded_at":"2026-12-04T08:00:00Z""#,
            r#""recorded_at":" 2026-12-04T08:00:00+02:00 ""#,
            r#""recorded_at":null"#,
            r#""recorded_at":"2026-13-04T08:00:00Z""#,
            "",
        ][..],
        &[
            "",
            r#""loc":null"#,
            r#""loc":[2.294481,48.85837]"#,
            r#""loc":[2,48]"#,
            r#""loc":[1,2,3]"#,
            r#""loc":{"lat":1}"#,
            r#""loc":[10,200]"#,
            r#""loc":["a",1]"#,
            r#""loc":[]"#,
        ][..],
        &["", "", r#""location":null"#, r#""location":[2.3,48.9]"#][..],
        &[
            r#""fields":{"GPS_SPEED":{"b64_value":"AAAycg=="}}"#,
            "",
            r#""fields":null"#,
            r#""fields":{}"#,
            r#""fields":{"DIO_IGNITION":{"b64_value":"AQ=="},"X":{"b64_value":" Zm9v "},"GPS_DIR":{"b64_value":"/Bk="}}"#,
            r#""fields":{"A":{"b64_value":"!!"}}"#,
            r#""fields":{"GPS_SPEED":{"b64_value":"AAAycg=="},"GPS_SPEED":{"b64_value":"AQ=="}}"#,
            r#""fields":{"A":["AQ=="]}"#,
            r#""fields":{"A":{"b64_value":null}}"#,
            r#""fields":{"A":{"other":1}}"#,
            r#""fields":{"MDI_CC_DASHBOARD_MILEAGE":{"b64_value":"QCkAAAAAAAA="}}"#,
            r#""fields":{"GPS_SPEED":{"b64_value":""}}"#,
            r#""fields":{"MDI_CC_DASHBOARD_MILEAGE":{"b64_value":"AQ=="}}"#,
            r#""fields":{"A\u0042":{"b64_value":"AQ==","b64_value":"AA=="}}"#,
            r#""fields":{"\u00e9t\u00e9":{"b64_value":"AQ=="}}"#,
            r#""fields":[]"#,
            r#""fields":"x""#,
        ][..],
        &[
            "",
            "",
            r#""received_at":"2026-12-04T08:00:01Z""#,
            r#""asset":"356307042441013""#,
            r#""connection_id":{"nested":[1,2]}"#,
        ][..],
    ] {
        // Mostly the first (well-formed) variant, so that many bodies are accepted whole.
        let part = if pick(state, &["first", "first", "first", "first", "any"]) == "first" {
            options[0]
        } else {
            pick(state, options)
        };
        if !part.is_empty() {
            payload.push(part.to_owned());
        }
    }
    if pick(state, &["", "", "", "", "", "", "", "many"]) == "many" {
        let n = if pick(state, &["at", "over"]) == "at" {
            256
        } else {
            257
        };
        payload.push(many_fields(n).trim_start_matches(',').to_owned());
    }
    let payload = match pick(state, &["object", "object", "object", "array", "missing"]) {
        "object" => format!(r#""payload":{{{}}}"#, payload.join(",")),
        "array" => r#""payload":["359881234567899"]"#.to_owned(),
        _ => String::new(),
    };
    let parts: Vec<&str> = [meta, payload.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[test]
fn the_fast_path_agrees_with_the_reference_decoder_on_every_body() {
    let mut state = 0x9E37_79B9_7F4A_7C15;
    let mut accepted = 0;
    let mut bodies: Vec<Vec<u8>> = GOLDEN.iter().map(|b| b.to_vec()).collect();
    for _ in 0..20_000 {
        let n = 1 + (state % 3) as usize;
        let events: Vec<String> = (0..n).map(|_| event(&mut state)).collect();
        bodies.push(format!("[{}]", events.join(",")).into_bytes());
    }
    bodies.extend(
        [
            &b"[]"[..],
            b"{}",
            b"[1]",
            b"[null]",
            b"not json",
            b"[{}] x",
            b"  [ ]  ",
        ]
        .iter()
        .map(|b| b.to_vec()),
    );
    // Values in keys the fast path ignores that serde_json only checks when it builds a
    // `Value` (the first was found by the fuzz target).
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let long = "9".repeat(400);
    for extra in [
        r#""connection_id":343884097E53235456"#,
        r#""connection_id":1e999"#,
        r#""connection_id":1.5e3"#,
        r#""note":"\ud800""#,
        r#""note":"\u00e9""#,
        &format!(r#""nested":{deep}"#),
        &format!(r#""big":{long}"#),
        r#""small":-0.000001"#,
    ] {
        bodies.push(
            format!(
                r#"[{{"meta":{{"event":"track"}},"payload":{{"asset":"359881234567899","recorded_at":"2026-12-04T08:00:00Z",{extra}}}}}]"#
            )
            .into_bytes(),
        );
    }
    bodies.push(
        include_bytes!("../../../fuzz/regressions/cloudconnect/ignored-number-out-of-range.json")
            .to_vec(),
    );
    for body in &bodies {
        let fast = decode_batch(body);
        let reference = decode_batch_reference(body);
        assert_eq!(fast, reference, "body: {}", String::from_utf8_lossy(body));
        accepted += usize::from(fast.is_ok());
    }
    // The generator reaches both sides.
    assert!(
        accepted > 1000 && accepted < bodies.len() - 1000,
        "{accepted}"
    );
}
