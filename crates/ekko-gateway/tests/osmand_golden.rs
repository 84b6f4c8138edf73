//! Golden, negative and no-panic tests for the OsmAnd decoder.
//!
//! The golden samples live in `tests/data/osmand.json`: real requests (the Traccar Client's JSON
//! bodies, OsmAnd / Traccar Client query strings) with the `Report` Ekko must decode from each.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ekko_core::fields::{Field, FieldValue};
use ekko_core::time::rfc3339;
use ekko_core::track::MAX_FIELDS_PER_RECORD;
use ekko_gateway::osmand::decode::MAX_EXTRA_VALUE_CHARS;
use ekko_gateway::osmand::{Report, decode_json, decode_params};
use ekko_gateway::problem::Problem;
use serde_json::Value;

const COORDINATE_TOLERANCE: f64 = 1e-9;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses a request target (`/?a=1&b=2`) or a bare query string (`a=1&b=2`) into parameters.
fn params_of(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or(target, |(_, q)| q);
    serde_urlencoded::from_str(query)
        .unwrap_or_else(|e| panic!("test query '{target}' does not parse: {e}"))
}

fn decode_query(target: &str) -> Result<Report, Problem> {
    decode_params(&params_of(target))
}

fn expect_refused(result: Result<Report, Problem>, mentions: &[&str]) -> Problem {
    let problem = match result {
        Ok(report) => panic!("expected a refusal, got {report:?}"),
        Err(p) => p,
    };
    assert_eq!(problem.status.as_u16(), 400, "{problem:?}");
    for m in mentions {
        assert!(
            problem.detail.contains(m),
            "the detail {:?} should mention {m:?}",
            problem.detail
        );
    }
    problem
}

fn load_samples() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/osmand.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    doc["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("{path} has no 'samples' array"))
        .clone()
}

/// An expected field value: integer JSON numbers are `Int`, other numbers `Float`.
fn expected_value(v: &Value) -> Result<FieldValue, String> {
    Ok(match v {
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::Int(i),
            None => FieldValue::Float(n.as_f64().ok_or("number out of range")?),
        },
        Value::String(s) => FieldValue::Text(s.clone()),
        other => return Err(format!("unsupported expected value {other}")),
    })
}

fn expected_fields(v: &Value) -> Result<Vec<Field>, String> {
    v.as_array()
        .ok_or("'fields' is not an array")?
        .iter()
        .map(|f| {
            let name = f["name"].as_str().ok_or("a field has no 'name'")?;
            Ok(Field::new(name, expected_value(&f["value"])?))
        })
        .collect()
}

fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => (x - y).abs() <= 1e-9,
        _ => a == b,
    }
}

/// Compares a decoded report with a sample's `expect` object; returns every difference.
fn differences(report: &Report, expect: &Value) -> Result<Vec<String>, String> {
    let mut out = Vec::new();

    let device_id = expect["device_id"].as_str().ok_or("'device_id' missing")?;
    if report.device_id != device_id {
        out.push(format!(
            "device_id: got {:?}, expected {device_id:?}",
            report.device_id
        ));
    }

    let got_time = report.recorded_at.as_ref().map(rfc3339);
    let want_time = match &expect["recorded_at"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => {
            return Err(format!(
                "'recorded_at' must be a string or null, not {other}"
            ));
        }
    };
    if got_time != want_time {
        out.push(format!(
            "recorded_at: got {got_time:?}, expected {want_time:?}"
        ));
    }

    let want_coords = match (&expect["lat"], &expect["lng"]) {
        (Value::Null, Value::Null) => None,
        (lat, lng) => Some((
            lat.as_f64().ok_or("'lat' must be a number or null")?,
            lng.as_f64().ok_or("'lng' must be a number or null")?,
        )),
    };
    match (report.coordinates, want_coords) {
        (None, None) => {}
        (Some(c), Some((lat, lng))) => {
            if (c.lat - lat).abs() > COORDINATE_TOLERANCE
                || (c.lng - lng).abs() > COORDINATE_TOLERANCE
            {
                out.push(format!(
                    "coordinates: got {},{}, expected {lat},{lng}",
                    c.lat, c.lng
                ));
            }
        }
        (got, want) => out.push(format!("coordinates: got {got:?}, expected {want:?}")),
    }

    let want_fields = expected_fields(&expect["fields"])?;
    let same_fields = report.fields.len() == want_fields.len()
        && report
            .fields
            .iter()
            .zip(&want_fields)
            .all(|(g, w)| g.name == w.name && same_value(&g.value, &w.value));
    if !same_fields {
        out.push(format!(
            "fields:\n      got      {:?}\n      expected {:?}",
            report.fields, want_fields
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Golden samples
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_samples_decode_as_expected() {
    let samples = load_samples();
    assert!(samples.len() >= 10, "only {} samples", samples.len());
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for sample in &samples {
        let name = sample["name"].as_str().unwrap_or("<unnamed>");
        assert!(
            names.insert(name.to_owned()),
            "duplicate sample name {name}"
        );
        assert!(
            sample["source"].as_str().is_some_and(|s| !s.is_empty()),
            "sample {name} has no 'source'"
        );
        let result = match (&sample["body"], &sample["query"]) {
            (Value::String(body), Value::Null) => decode_json(body.as_bytes()),
            (Value::Null, Value::String(query)) => decode_query(query),
            _ => panic!("sample {name} needs exactly one of 'body' or 'query'"),
        };
        match result {
            Err(p) => failures.push(format!("{name}: refused: {}", p.detail)),
            Ok(report) => match differences(&report, &sample["expect"]) {
                Err(e) => panic!("sample {name} has a malformed 'expect': {e}"),
                Ok(diffs) => failures.extend(diffs.into_iter().map(|d| format!("{name}: {d}"))),
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn golden_queries_decode_the_same_as_a_form_body() {
    // The listener concatenates URL and form parameters; a form body is the same encoding.
    for sample in load_samples() {
        let Some(query) = sample["query"].as_str() else {
            continue;
        };
        let name = sample["name"].as_str().unwrap_or("<unnamed>");
        let body = query.split_once('?').map_or(query, |(_, q)| q);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: form body does not parse: {e}"));
        assert_eq!(decode_params(&form), decode_query(query), "sample {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals: one behaviour per test
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_number_names_the_parameter() {
    let p = expect_refused(decode_query("/?id=1&lat=abc&lon=2"), &["'lat'", "abc"]);
    assert!(p.detail.contains("number"), "{}", p.detail);
    expect_refused(decode_query("/?id=1&lat=1&lon=2&speed=fast"), &["'speed'"]);
    expect_refused(decode_query("/?id=1&batt=NaN"), &["'batt'"]);
    expect_refused(decode_query("/?id=1&altitude=1e999"), &["'altitude'"]);
}

#[test]
fn malformed_location_pair_names_the_parameter() {
    expect_refused(decode_query("/?id=1&location=48.8"), &["'location'"]);
    expect_refused(decode_query("/?id=1&location=48.8,east"), &["'location'"]);
}

#[test]
fn lat_without_lon_is_refused() {
    expect_refused(decode_query("/?id=1&lat=48.8583"), &["'lon'", "missing"]);
}

#[test]
fn lon_without_lat_is_refused() {
    expect_refused(decode_query("/?id=1&lon=2.2945"), &["'lat'", "missing"]);
}

#[test]
fn json_latitude_without_longitude_is_refused() {
    let body = br#"{"device_id":"1","location":{"coords":{"latitude":48.8583}}}"#;
    expect_refused(decode_json(body), &["missing"]);
}

#[test]
fn latitude_out_of_range_is_refused() {
    expect_refused(decode_query("/?id=1&lat=90.0001&lon=2"), &["lat"]);
    expect_refused(decode_query("/?id=1&lat=-91&lon=2"), &["lat"]);
    let body = br#"{"device_id":"1","location":{"coords":{"latitude":123.4,"longitude":2}}}"#;
    expect_refused(decode_json(body), &["lat"]);
}

#[test]
fn longitude_out_of_range_is_refused() {
    expect_refused(decode_query("/?id=1&lat=48&lon=180.5"), &["lon"]);
}

#[test]
fn range_edges_are_accepted() {
    let r = decode_query("/?id=1&lat=-90&lon=180").unwrap();
    let c = r.coordinates.unwrap();
    assert_eq!((c.lat, c.lng), (-90.0, 180.0));
}

#[test]
fn missing_id_is_refused() {
    expect_refused(
        decode_query("/?lat=60.0&lon=30.0&timestamp=1377177267"),
        &["'id'", "missing"],
    );
}

#[test]
fn blank_id_is_refused() {
    expect_refused(decode_query("/?id=%20%20&lat=60.0&lon=30.0"), &["'id'"]);
    expect_refused(decode_query("/?id=&lat=60.0&lon=30.0"), &["'id'"]);
}

#[test]
fn json_missing_device_id_is_refused() {
    expect_refused(
        decode_json(br#"{"location":{}}"#),
        &["device_id", "missing"],
    );
    expect_refused(
        decode_json(br#"{"device_id":null,"location":{}}"#),
        &["device_id"],
    );
}

#[test]
fn json_blank_device_id_is_refused() {
    expect_refused(
        decode_json(br#"{"device_id":"","location":{}}"#),
        &["device_id"],
    );
    expect_refused(
        decode_json(br#"{"device_id":"   ","location":{"coords":{"latitude":1,"longitude":2}}}"#),
        &["device_id"],
    );
}

#[test]
fn json_numeric_device_id_is_accepted() {
    let r = decode_json(br#"{"device_id":658765,"location":{}}"#).unwrap();
    assert_eq!(r.device_id, "658765");
}

#[test]
fn json_missing_location_is_refused() {
    expect_refused(decode_json(br#"{"device_id":"1"}"#), &["'location'"]);
}

#[test]
fn json_location_that_is_not_an_object_is_refused() {
    for location in ["null", "5", "\"here\"", "[]", "true"] {
        let body = format!(r#"{{"device_id":"1","location":{location}}}"#);
        expect_refused(decode_json(body.as_bytes()), &["'location'"]);
    }
}

#[test]
fn invalid_json_body_is_refused() {
    expect_refused(
        decode_json(b"{\"device_id\":\"1\",\"location\":"),
        &["JSON"],
    );
    expect_refused(decode_json(b"id=1&lat=2&lon=3"), &["JSON"]);
    expect_refused(decode_json(b""), &["JSON"]);
    expect_refused(decode_json(b"\xff\xfe{}"), &["JSON"]);
}

#[test]
fn json_body_that_is_not_an_object_is_refused() {
    for body in [
        "[]",
        "42",
        "null",
        "\"x\"",
        "[{\"device_id\":\"1\",\"location\":{}}]",
    ] {
        assert!(decode_json(body.as_bytes()).is_err(), "{body}");
    }
}

#[test]
fn unparseable_timestamp_names_the_parameter() {
    expect_refused(
        decode_query("/?id=1&timestamp=yesterday"),
        &["'timestamp'", "yesterday"],
    );
    expect_refused(decode_query("/?id=1&timestamp=-5"), &["'timestamp'"]);
    expect_refused(
        decode_query("/?id=1&timestamp=2024-13-45T00:00:00Z"),
        &["'timestamp'"],
    );
    expect_refused(decode_query("/?id=1&timestamp=1e300"), &["'timestamp'"]);
    let body = br#"{"device_id":"1","location":{"timestamp":"soon"}}"#;
    expect_refused(decode_json(body), &["location.timestamp"]);
}

#[test]
fn malformed_boolean_names_the_parameter() {
    expect_refused(decode_query("/?id=1&charge=maybe"), &["'charge'"]);
    expect_refused(decode_query("/?id=1&ignition=on"), &["'ignition'"]);
    expect_refused(decode_query("/?id=1&valid=perhaps"), &["'valid'"]);
}

#[test]
fn over_long_extra_value_is_refused() {
    let long = "x".repeat(MAX_EXTRA_VALUE_CHARS + 1);
    expect_refused(
        decode_query(&format!("/?id=1&note={long}")),
        &["'note'", "longer"],
    );
}

#[test]
fn longest_extra_value_is_kept() {
    // The limit counts characters, not bytes.
    let longest = "é".repeat(MAX_EXTRA_VALUE_CHARS);
    let params = vec![
        ("id".to_owned(), "1".to_owned()),
        ("note".to_owned(), longest.clone()),
    ];
    let r = decode_params(&params).unwrap();
    assert_eq!(
        r.fields,
        vec![Field::new("NOTE", FieldValue::Text(longest))]
    );
}

fn id_and_extras(n: usize) -> Vec<(String, String)> {
    let mut params = vec![("id".to_owned(), "1".to_owned())];
    params.extend((0..n).map(|i| (format!("p{i}"), i.to_string())));
    params
}

#[test]
fn too_many_parameters_are_refused() {
    let p = expect_refused(
        decode_params(&id_and_extras(MAX_FIELDS_PER_RECORD + 1)),
        &["too many"],
    );
    assert!(p.detail.contains(&MAX_FIELDS_PER_RECORD.to_string()));
}

#[test]
fn as_many_parameters_as_fields_allowed_are_kept() {
    let r = decode_params(&id_and_extras(MAX_FIELDS_PER_RECORD)).unwrap();
    assert_eq!(r.fields.len(), MAX_FIELDS_PER_RECORD);
}

// ---------------------------------------------------------------------------------------------
// No input makes the decoder panic
// ---------------------------------------------------------------------------------------------

/// xorshift64* (Vigna): tiny, deterministic, good enough to pick test inputs.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const KEYS: &[&str] = &[
    "id",
    "deviceid",
    "timestamp",
    "lat",
    "lon",
    "location",
    "speed",
    "bearing",
    "heading",
    "altitude",
    "accuracy",
    "hdop",
    "sat",
    "batt",
    "charge",
    "ignition",
    "odometer",
    "valid",
    "cell",
    "wifi",
    "rpm",
    "",
    "é",
    "_",
    "gps_speed",
];

const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "-0",
    "1",
    "-1",
    "48.8583",
    "-91",
    "181",
    "90",
    "1e308",
    "-1e308",
    "1e999",
    "NaN",
    "inf",
    "-inf",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "99999999999999999999999999",
    "1720000000",
    "1720000000000",
    "1e11",
    "100000000001",
    "2024-07-03T09:46:40Z",
    "2024-07-03T09:46:40.123+02:00",
    "2024-07-03 09:46:40",
    "262143-12-31T23:59:59Z",
    "true",
    "false",
    "yes",
    "48.8,2.3",
    ",",
    "1,2,3",
    "é",
    "\u{0}",
    "🚗",
];

/// A value that `key` accepts, so that random queries also reach the success path.
fn plausible(rng: &mut XorShift, key: &str) -> String {
    match key {
        "id" | "deviceid" => rng.pick(&["1", "359881234567899", " x "]).to_owned(),
        "timestamp" => rng
            .pick(&[
                "1720000000",
                "1720000000123",
                "2024-07-03T09:46:40Z",
                "2024-07-03 09:46:40",
            ])
            .to_owned(),
        "lat" => format!("{}", (rng.below(180_001) as f64 - 90_000.0) / 1000.0),
        "lon" => format!("{}", (rng.below(360_001) as f64 - 180_000.0) / 1000.0),
        "location" => rng
            .pick(&["48.8583,2.2945", "-33.8568, 151.2153", "0,0"])
            .to_owned(),
        "charge" | "ignition" | "valid" => rng.pick(&["true", "false", "1", "0"]).to_owned(),
        _ => format!(
            "{}",
            (rng.next() as i64) as f64 / (1u64 << rng.below(64)) as f64
        ),
    }
}

fn random_query(rng: &mut XorShift) -> String {
    let n = rng.below(12);
    let mut parts = Vec::with_capacity(n + 1);
    if rng.below(4) != 0 {
        parts.push(format!("id={}", rng.below(1000)));
    }
    for _ in 0..n {
        let key = rng.pick(KEYS);
        let value = match rng.below(6) {
            0 => String::from_utf8_lossy(&rng.bytes(24)).into_owned(),
            1 | 2 => rng.pick(VALUES).to_owned(),
            _ => plausible(rng, key),
        };
        parts.push(serde_urlencoded::to_string([(key, value)]).unwrap());
    }
    parts.join("&")
}

fn random_json(rng: &mut XorShift) -> String {
    fn scalar(rng: &mut XorShift) -> String {
        match rng.below(5) {
            0 => serde_json::to_string(rng.pick(VALUES)).unwrap(),
            1 => rng.pick(&["null", "true", "false", "[]", "{}"]).to_owned(),
            2 => rng
                .pick(&["0", "-1", "0.79", "1", "100", "1e308", "-1e308", "18.67"])
                .to_owned(),
            3 => format!("{}", rng.next() as i64),
            _ => format!("{:e}", f64::from_bits(rng.next()))
                .replace("NaN", "0")
                .replace("inf", "1"),
        }
    }
    let mut coords = Vec::new();
    for key in [
        "latitude",
        "longitude",
        "speed",
        "heading",
        "altitude",
        "accuracy",
    ] {
        if rng.below(3) != 0 {
            // Mostly well-typed values, so that the success path is exercised too.
            let v = if rng.below(4) != 0 {
                format!("{}", rng.below(90))
            } else {
                scalar(rng)
            };
            coords.push(format!("\"{key}\":{v}"));
        }
    }
    let mut loc = vec![format!("\"coords\":{{{}}}", coords.join(","))];
    for (key, plausible) in [
        ("timestamp", "1700000000"),
        ("odometer", "1234"),
        ("is_moving", "true"),
        ("event", "\"motionchange\""),
    ] {
        if rng.below(2) == 0 {
            let v = if rng.below(4) != 0 {
                plausible.to_owned()
            } else {
                scalar(rng)
            };
            loc.push(format!("\"{key}\":{v}"));
        }
    }
    if rng.below(2) == 0 {
        let (level, charging) = if rng.below(4) != 0 {
            ("0.5".to_owned(), "false".to_owned())
        } else {
            (scalar(rng), scalar(rng))
        };
        loc.push(format!(
            "\"battery\":{{\"level\":{level},\"is_charging\":{charging}}}"
        ));
    }
    if rng.below(2) == 0 {
        let kind = if rng.below(4) != 0 {
            "\"still\"".to_owned()
        } else {
            scalar(rng)
        };
        loc.push(format!("\"activity\":{{\"type\":{kind}}}"));
    }
    let location = if rng.below(10) == 0 {
        scalar(rng)
    } else {
        format!("{{{}}}", loc.join(","))
    };
    let id_key = rng.pick(&["device_id", "deviceid", "id"]);
    let mut json = format!("{{\"{id_key}\":{},\"location\":{location}}}", scalar(rng));
    if rng.below(8) == 0 {
        // Damage it a little.
        let cut = rng.below(json.len());
        json.truncate(json.floor_char_boundary(cut));
    }
    json
}

/// Runs `decode`, turning a panic into a test failure that shows the input.
fn must_not_panic<T>(what: &str, input: &str, decode: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(decode))
        .unwrap_or_else(|_| panic!("{what} panicked on input {input:?}"))
}

/// What every accepted report satisfies, whatever the input.
fn check_invariants(report: &Report, input: &str) {
    assert!(
        !report.device_id.trim().is_empty(),
        "blank device id from {input:?}"
    );
    assert!(report.fields.len() <= MAX_FIELDS_PER_RECORD, "{input:?}");
    if let Some(c) = report.coordinates {
        assert!((-90.0..=90.0).contains(&c.lat), "{input:?}");
        assert!((-180.0..=180.0).contains(&c.lng), "{input:?}");
    }
    for f in &report.fields {
        assert!(!f.name.is_empty(), "unnamed field from {input:?}");
        if let FieldValue::Float(v) = f.value {
            assert!(v.is_finite(), "non-finite {} from {input:?}", f.name);
        }
    }
}

const ROUNDS: usize = 2000;

#[test]
fn random_bytes_never_panic_decode_json() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..ROUNDS {
        let bytes = rng.bytes(96);
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(r) = must_not_panic("decode_json", &shown, || decode_json(&bytes)) {
            check_invariants(&r, &shown);
        }
    }
}

#[test]
fn random_bytes_never_panic_decode_params() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for _ in 0..ROUNDS {
        let bytes = rng.bytes(96);
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        // Whatever the URL decoder makes of the bytes, as the listener would see it.
        if let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            && let Ok(r) = must_not_panic("decode_params", &shown, || decode_params(&params))
        {
            check_invariants(&r, &shown);
        }
        // And the raw bytes as one parameter's value, under every key.
        for key in KEYS {
            let params = vec![
                ("id".to_owned(), "1".to_owned()),
                ((*key).to_owned(), shown.clone()),
            ];
            if let Ok(r) = must_not_panic("decode_params", &shown, || decode_params(&params)) {
                check_invariants(&r, &shown);
            }
        }
    }
}

#[test]
fn random_queries_never_panic_decode_params() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut accepted = 0;
    for _ in 0..ROUNDS {
        let query = random_query(&mut rng);
        let params: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
        if let Ok(r) = must_not_panic("decode_params", &query, || decode_params(&params)) {
            check_invariants(&r, &query);
            accepted += 1;
        }
    }
    // The generator must reach the success path too, not only refusals.
    assert!(
        accepted > ROUNDS / 10,
        "only {accepted} random queries were accepted"
    );
}

#[test]
fn random_json_reports_never_panic_decode_json() {
    // Wrongly typed values are refused (never dropped), so fewer random bodies pass than
    // random queries; one in twenty still exercises the success path well.
    let mut rng = XorShift(0xA076_1D64_78BD_642F);
    let mut accepted = 0;
    for _ in 0..ROUNDS {
        let body = random_json(&mut rng);
        if let Ok(r) = must_not_panic("decode_json", &body, || decode_json(body.as_bytes())) {
            check_invariants(&r, &body);
            accepted += 1;
        }
    }
    assert!(
        accepted > ROUNDS / 20,
        "only {accepted} random JSON bodies were accepted"
    );
}

#[test]
fn deeply_nested_json_does_not_overflow_the_stack() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode_json(body.as_bytes()).is_err());
    let body = format!(
        "{{\"device_id\":\"1\",\"location\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(decode_json(body.as_bytes()).is_err());
}

#[test]
fn an_extra_parameter_spelled_like_a_mapped_field_does_not_masquerade_as_it() {
    let params = vec![
        ("id".to_owned(), "359881234567899".to_owned()),
        ("speed".to_owned(), "10".to_owned()),
        ("gps_speed".to_owned(), "fast".to_owned()),
    ];
    let report = ekko_gateway::osmand::decode_params(&params).unwrap();
    let names: Vec<&str> = report.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["GPS_SPEED", "OSMAND_GPS_SPEED"]);
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_repeated_id_is_refused_instead_of_picking_one_device() {
    let e = ekko_gateway::osmand::decode_params(&q(&[
        ("id", "359881234567899"),
        ("id", "359881200000016"),
        ("lat", "1"),
        ("lon", "2"),
    ]))
    .unwrap_err();
    assert!(e.detail.contains("'id' is repeated"), "{}", e.detail);
    let e = ekko_gateway::osmand::decode_params(&q(&[("id", "1"), ("deviceid", "2")])).unwrap_err();
    assert!(e.detail.contains("repeated"), "{}", e.detail);
    let e = ekko_gateway::osmand::decode_params(&q(&[
        ("id", "1"),
        ("lat", "1"),
        ("lat", "2"),
        ("lon", "2"),
    ]))
    .unwrap_err();
    assert!(e.detail.contains("'lat' is repeated"), "{}", e.detail);
    let e =
        ekko_gateway::osmand::decode_params(&q(&[("id", "1"), ("location", "1,2"), ("lat", "3")]))
            .unwrap_err();
    assert!(e.detail.contains("repeated"), "{}", e.detail);
}

#[test]
fn parameter_names_are_case_insensitive_and_fields_stay_unique() {
    let r = ekko_gateway::osmand::decode_params(&q(&[("ID", "1"), ("Speed", "7")])).unwrap();
    assert_eq!(r.fields[0].name, "GPS_SPEED");
    for pairs in [
        vec![("id", "1"), ("foo", "1"), ("FOO", "2")],
        vec![("id", "1"), ("Speed", "7"), ("SPEED", "8")],
        vec![("id", "1"), ("gps_speed", "1"), ("GPS_SPEED", "5")],
    ] {
        let e = ekko_gateway::osmand::decode_params(&q(&pairs)).unwrap_err();
        assert!(e.detail.contains("repeated"), "{pairs:?}: {}", e.detail);
    }
}

#[test]
fn implausible_values_are_refused_not_saturated() {
    for (k, v) in [
        ("speed", "1e300"),
        ("altitude", "1e20"),
        ("bearing", "361"),
        ("batt", "250"),
        ("sat", "1e9"),
        ("odometer", "-5"),
    ] {
        let e = ekko_gateway::osmand::decode_params(&q(&[("id", "1"), (k, v)])).unwrap_err();
        assert!(
            e.detail.contains(&format!("'{k}'")),
            "{k}={v}: {}",
            e.detail
        );
    }
}

#[test]
fn timestamps_outside_1970_to_9999_are_refused_and_seconds_up_to_year_5138_are_seconds() {
    let ts = |v: &str| ekko_gateway::osmand::decode::parse_timestamp("timestamp", v);
    assert!(
        ts("1796322000000000")
            .unwrap_err()
            .detail
            .contains("'timestamp'")
    );
    assert_eq!(
        ts("99999999999").unwrap().to_rfc3339(),
        "5138-11-16T09:46:39+00:00"
    );
    assert_eq!(
        ts("1700000000123").unwrap().timestamp_millis(),
        1_700_000_000_123
    );
    assert!(ts("1969-12-31T23:59:59Z").is_err());
    assert!(ts("+10000-01-01T00:00:00Z").is_err());
}

#[test]
fn control_characters_in_values_are_refused() {
    let e = ekko_gateway::osmand::decode_params(&q(&[("id", "1"), ("note", "a\u{1b}[31mred")]))
        .unwrap_err();
    assert!(e.detail.contains("control"), "{}", e.detail);
    let body = r#"{"device_id":"1","location":{"event":"x\u0000y"}}"#;
    assert!(decode_json(body.as_bytes()).is_err());
}

#[test]
fn json_numbers_sent_as_strings_are_read_and_wrong_types_are_named() {
    let ok = decode_json(
        br#"{"device_id":"1","location":{"coords":{"latitude":"48.8","longitude":"2.3"}}}"#,
    )
    .unwrap();
    assert_eq!(ok.coordinates.map(|c| (c.lat, c.lng)), Some((48.8, 2.3)));
    for (body, key) in [
        (
            r#"{"device_id":"1","location":{"coords":{"latitude":"x","longitude":2}}}"#,
            "latitude",
        ),
        (
            r#"{"device_id":"1","location":{"coords":{"speed":"fast"}}}"#,
            "speed",
        ),
        (
            r#"{"device_id":"1","location":{"coords":{"heading":[1]}}}"#,
            "heading",
        ),
        (
            r#"{"device_id":"1","location":{"is_moving":"maybe"}}"#,
            "is_moving",
        ),
        (
            r#"{"device_id":"1","location":{"battery":{"is_charging":7}}}"#,
            "is_charging",
        ),
        (
            r#"{"device_id":"1","location":{"odometer":"far"}}"#,
            "odometer",
        ),
        (r#"{"device_id":"1","location":{"coords":5}}"#, "coords"),
    ] {
        let e = decode_json(body.as_bytes()).unwrap_err();
        assert!(e.detail.contains(key), "{body}: {}", e.detail);
    }
}
