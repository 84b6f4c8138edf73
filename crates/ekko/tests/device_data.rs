//! Reading device data back over GraphQL: `device`, `devices`, and on a device `tracks` (Munic
//! paging, stable under inserts), `last_values`, `last_position` and `readings` (columnar).
//! Records are ingested through the domain (as a gateway does) with exact times and fields.

mod common;

use common::*;
use ekko_core::Imei;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::time::from_unix_ms;
use ekko_core::track::{Coordinates, TrackRecord};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

fn at(minutes: i64) -> String {
    ekko_core::time::rfc3339(&from_unix_ms(T0 + minutes * 60_000).unwrap())
}

fn record(minutes: i64, fix: bool, fields: &[(&str, FieldValue)]) -> TrackRecord {
    TrackRecord {
        imei: Imei::parse(IMEI).unwrap(),
        recorded_at: from_unix_ms(T0 + minutes * 60_000).unwrap(),
        coordinates: fix
            .then(|| Coordinates::new(48.85 + (minutes % 1000) as f64 / 10_000.0, 2.29).unwrap()),
        fields: fields
            .iter()
            .map(|(n, v)| Field::new(*n, v.clone()))
            .collect(),
    }
}

/// Ingests `records` as one batch (a packet), durably, through the domain.
async fn ingest(s: &TestServer, records: Vec<TrackRecord>) {
    let (ekko, store) = ekko::server::open_domain(s.dir.path()).await.unwrap();
    ekko.ingest_tracks(records).await.unwrap();
    store.close().await;
}

/// Ingests one record the way single-record gateways (OsmAnd) do.
async fn ingest_one(s: &TestServer, r: TrackRecord) {
    let (ekko, store) = ekko::server::open_domain(s.dir.path()).await.unwrap();
    ekko.ingest_track(r).await.unwrap();
    store.close().await;
}

async fn query(s: &TestServer, token: &str, q: &str, vars: Value) -> Value {
    let (status, body) = s.graphql(Some(token), q, vars).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn data(s: &TestServer, token: &str, q: &str, vars: Value) -> Value {
    let body = query(s, token, q, vars).await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

const TRACKS: &str = r#"query($id: ID!, $size: Int, $page: ID, $since: String, $until: String, $fields: [String!]) {
  device(id: $id) {
    tracks(since: $since, until: $until, fields: $fields, page_size: $size, page_id: $page) {
      count next list { id recorded_at coordinates { lat lng } fields { name value } }
    }
  }
}"#;

#[tokio::test]
async fn tracks_page_in_time_order_and_an_insert_between_pages_shifts_nothing() {
    let s = start().await;
    let token = s.token().await;
    // Recorded out of order (a device's backlog arrives late): listed by recorded_at.
    ingest(
        &s,
        [5, 1, 3, 2, 4]
            .iter()
            .map(|m| record(*m, true, &[("GPS_SPEED", FieldValue::Int(*m * 1000))]))
            .collect(),
    )
    .await;
    let vars = |page: Value| json!({"id": IMEI, "size": 2, "page": page});
    let first = data(&s, &token, TRACKS, vars(Value::Null)).await;
    let t = &first["device"]["tracks"];
    assert_eq!(t["count"], 5);
    let times: Vec<_> = t["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recorded_at"].clone())
        .collect();
    assert_eq!(times, vec![json!(at(1)), json!(at(2))]);

    // Records stored after the first page, before and after its end, do not shift the pages.
    ingest(&s, vec![record(0, true, &[]), record(6, true, &[])]).await;
    let mut seen = times;
    let mut page = t["next"].clone();
    while !page.is_null() {
        let d = data(&s, &token, TRACKS, vars(page)).await;
        let t = &d["device"]["tracks"];
        seen.extend(
            t["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["recorded_at"].clone()),
        );
        page = t["next"].clone();
    }
    let expected: Vec<_> = (1..=6).map(|m| json!(at(m))).collect();
    assert_eq!(
        seen, expected,
        "every track after the cursor once, in order"
    );
}

#[tokio::test]
async fn tracks_take_a_window_and_a_field_filter() {
    let s = start().await;
    let token = s.token().await;
    ingest(
        &s,
        (0..10)
            .map(|m| {
                record(
                    m,
                    m % 2 == 0,
                    &[
                        ("GPS_SPEED", FieldValue::Int(m)),
                        ("BATT", FieldValue::Int(90 - m)),
                    ],
                )
            })
            .collect(),
    )
    .await;
    let d = data(
        &s,
        &token,
        TRACKS,
        json!({"id": IMEI, "since": at(2), "until": at(5), "fields": ["BATT"]}),
    )
    .await;
    let t = &d["device"]["tracks"];
    assert_eq!(t["count"], 3, "since inclusive, until exclusive: {t}");
    assert!(t["next"].is_null());
    let list = t["list"].as_array().unwrap();
    assert_eq!(list[0]["fields"], json!([{"name": "BATT", "value": 88}]));
    assert!(
        list[1]["coordinates"].is_null(),
        "a record without a fix is still a track"
    );
}

#[tokio::test]
async fn last_values_keep_each_fields_newest_value_whenever_it_arrived() {
    let s = start().await;
    let token = s.token().await;
    ingest(
        &s,
        vec![
            record(
                10,
                true,
                &[
                    ("GPS_SPEED", FieldValue::Int(1)),
                    ("ODO", FieldValue::Int(500)),
                ],
            ),
            record(20, false, &[("GPS_SPEED", FieldValue::Int(3))]),
        ],
    )
    .await;
    // A delayed record (older than what is stored) does not replace newer values...
    ingest_one(
        &s,
        record(
            5,
            true,
            &[
                ("GPS_SPEED", FieldValue::Int(99)),
                ("ODO", FieldValue::Int(1)),
            ],
        ),
    )
    .await;
    // ...but a field seen only in it is still the field's last known value.
    ingest_one(
        &s,
        record(1, true, &[("VIN", FieldValue::Text("VF1ABC".into()))]),
    )
    .await;
    let q = r#"query($id: ID!, $f: [String!]) { device(id: $id) {
        last_values(fields: $f) { name value coordinates { lat lng time } }
        last_position { lat lng time } } }"#;
    let d = data(&s, &token, q, json!({"id": IMEI})).await;
    let values = &d["device"]["last_values"];
    let by_name = |n: &str| {
        values
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("GPS_SPEED")["value"], 3);
    assert!(
        by_name("GPS_SPEED")["coordinates"].is_null(),
        "it came with a record without a fix"
    );
    assert_eq!(by_name("ODO")["value"], 500);
    assert_eq!(by_name("ODO")["coordinates"]["time"], at(10));
    assert_eq!(by_name("VIN")["value"], "VF1ABC");
    // The last position is the newest record *with a fix* (minute 10), not the newest record.
    assert_eq!(d["device"]["last_position"]["time"], at(10));

    let d = data(&s, &token, q, json!({"id": IMEI, "f": ["ODO"]})).await;
    assert_eq!(d["device"]["last_values"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn readings_are_columnar_and_page_through_one_field() {
    let s = start().await;
    let token = s.token().await;
    ingest(
        &s,
        (0..7)
            .map(|m| {
                let mut f = vec![("GPS_SPEED", FieldValue::Int(m * 10))];
                if m == 3 {
                    f.clear(); // this record does not carry the field
                }
                record(m, true, &f)
            })
            .collect(),
    )
    .await;
    let q = r#"query($id: ID!, $page: ID) { device(id: $id) {
        readings(field: "GPS_SPEED", page_size: 4, page_id: $page) { field count next timestamps values track_ids } } }"#;
    let d = data(&s, &token, q, json!({"id": IMEI})).await;
    let r = &d["device"]["readings"];
    assert_eq!(r["field"], "GPS_SPEED");
    assert_eq!(r["count"], 6);
    assert_eq!(r["values"], json!([0, 10, 20, 40]));
    assert_eq!(r["timestamps"][3], at(4));
    assert_eq!(r["track_ids"].as_array().unwrap().len(), 4);
    let d = data(&s, &token, q, json!({"id": IMEI, "page": r["next"]})).await;
    let r = &d["device"]["readings"];
    assert_eq!(r["values"], json!([50, 60]));
    assert!(r["next"].is_null());
}

#[tokio::test]
async fn devices_list_only_the_callers_and_foreign_devices_are_not_found() {
    let s = start().await;
    let mine = s.token().await;
    let other = s.token_response(OTHER_EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = "query($size: Int, $page: ID) { devices(page_size: $size, page_id: $page) { count next list { id imei created_at } } }";
    let d = data(&s, &mine, q, json!({})).await;
    assert_eq!(d["devices"]["count"], 1);
    assert_eq!(d["devices"]["list"][0]["id"], IMEI);
    assert!(d["devices"]["next"].is_null());
    let d = data(&s, &other, q, json!({})).await;
    assert_eq!(
        d["devices"]["list"],
        json!([{"id": OTHER_IMEI, "imei": OTHER_IMEI, "created_at": d["devices"]["list"][0]["created_at"]}])
    );

    // Someone else's device, an unknown one and a malformed id all look the same.
    for id in [IMEI, "356938035643809", "not-an-imei"] {
        let body = query(
            &s,
            &other,
            "query($id: ID!) { device(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(error_code(&body), "NOT_FOUND", "{id}: {body}");
    }
    let body = query(&s, &other, TRACKS, json!({"id": IMEI})).await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    // Anonymous callers are asked to authenticate.
    let (_, body) = s.graphql(None, q, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn bad_paging_and_time_arguments_get_clear_bad_user_input_errors() {
    let s = start().await;
    let token = s.token().await;
    let devices_q =
        "query($size: Int, $page: ID) { devices(page_size: $size, page_id: $page) { count } }";
    let cases = [
        (TRACKS, json!({"id": IMEI, "size": 0}), "between 1 and 1000"),
        (
            TRACKS,
            json!({"id": IMEI, "size": 1001}),
            "between 1 and 1000",
        ),
        (TRACKS, json!({"id": IMEI, "page": "garbage"}), "page_id"),
        (
            TRACKS,
            json!({"id": IMEI, "since": "yesterday"}),
            "RFC 3339",
        ),
        (
            TRACKS,
            json!({"id": IMEI, "since": at(5), "until": at(1)}),
            "until",
        ),
        (devices_q, json!({"size": 501}), "between 1 and 500"),
    ];
    for (q, vars, expected) in cases {
        let body = query(&s, &token, q, vars.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{vars}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{vars}: {message}");
    }
    // A cursor of one list is refused by another.
    ingest(&s, (0..3).map(|m| record(m, true, &[])).collect()).await;
    let d = data(&s, &token, TRACKS, json!({"id": IMEI, "size": 1})).await;
    let cursor = d["device"]["tracks"]["next"].clone();
    let body = query(&s, &token, devices_q, json!({"page": cursor})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn device_ids_given_as_json_numbers_are_read_exactly() {
    let s = start().await;
    let token = s.token().await;
    // An IMEI as a number, and an 18-digit id (beyond 2^53, like Munic's trip ids): not a digit lost.
    let d = data(
        &s,
        &token,
        "query($id: ID!) { device(id: $id) { id } }",
        json!({"id": 359881234567899u64}),
    )
    .await;
    assert_eq!(d["device"]["id"], IMEI);
    let body = query(
        &s,
        &token,
        "query($id: ID!) { device(id: $id) { id } }",
        json!({"id": 123456789123456789u64}),
    )
    .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("123456789123456789"),
        "{body}"
    );
}

#[tokio::test]
async fn a_future_dated_or_invalid_fix_never_becomes_the_current_state() {
    let s = start().await;
    let token = s.token().await;
    let now_min = (chrono::Utc::now().timestamp_millis() - T0) / 60_000;
    ingest_one(
        &s,
        record(now_min - 2, true, &[("BATT_LEVEL", FieldValue::Int(55))]),
    )
    .await;
    // A wrong clock: dated in 2100 (stored, flagged), then a fix the device marks invalid.
    let mut wrong_clock = record(0, true, &[("BATT_LEVEL", FieldValue::Int(7))]);
    wrong_clock.recorded_at = from_unix_ms(4_102_444_800_000).unwrap();
    ingest_one(&s, wrong_clock).await;
    ingest_one(
        &s,
        record(
            now_min - 1,
            true,
            &[("GPRMC_VALID", FieldValue::Text("V".into()))],
        ),
    )
    .await;
    let q = r#"query($id: ID!) { device(id: $id) {
        last_values(fields: ["BATT_LEVEL", "GPRMC_VALID"]) { name value }
        last_position { time }
        tracks(since: "2099-01-01T00:00:00Z") { count list { fields { name value } } } } }"#;
    let d = data(&s, &token, q, json!({"id": IMEI})).await;
    let dev = &d["device"];
    assert_eq!(
        dev["last_values"],
        json!([{"name": "BATT_LEVEL", "value": 55}, {"name": "GPRMC_VALID", "value": "V"}]),
        "asked order, current values"
    );
    assert_eq!(dev["last_position"]["time"], at(now_min - 2));
    // The wrong-clock record is kept, flagged with its skew.
    let flagged = dev["tracks"]["list"][0]["fields"].to_string();
    assert!(flagged.contains("EKKO_CLOCK_SKEW_MS"), "{flagged}");
}

#[tokio::test]
async fn a_tracks_cursor_pages_only_the_device_it_came_from() {
    let s = start().await;
    let token = s.token().await;
    transfer(&s, OTHER_IMEI, EMAIL).await;
    ingest(&s, (0..3).map(|m| record(m, true, &[])).collect()).await;
    let d = data(&s, &token, TRACKS, json!({"id": IMEI, "size": 1})).await;
    let cursor = d["device"]["tracks"]["next"].clone();
    assert!(cursor.is_string());
    let body = query(
        &s,
        &token,
        TRACKS,
        json!({"id": OTHER_IMEI, "page": cursor}),
    )
    .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn window_bounds_finer_than_a_millisecond_are_rounded_up() {
    let s = start().await;
    let token = s.token().await;
    ingest(&s, (0..3).map(|m| record(m, true, &[])).collect()).await;
    let just_after = |m: i64| at(m).replace(".000Z", ".0001Z");
    let d = data(
        &s,
        &token,
        TRACKS,
        json!({"id": IMEI, "since": just_after(0), "until": just_after(2)}),
    )
    .await;
    let times: Vec<_> = d["device"]["tracks"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["recorded_at"].clone())
        .collect();
    assert_eq!(
        times,
        vec![json!(at(1)), json!(at(2))],
        "(0, 2]: since excludes minute 0, until includes minute 2"
    );
}
