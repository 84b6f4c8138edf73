//! Subscriptions over Phoenix channels + Absinthe, with OsmAnd ingestion feeding them.

mod common;

use std::time::Duration;

use common::*;
use ekko_socket::phoenix::SocketConfig;
use serde_json::{Value, json};

async fn v1_socket(s: &TestServer, token: &str) -> Ws {
    connect(&format!(
        "{}/services/ekko/v2/socket/websocket?Authorization=Bearer+{token}",
        s.ws_base
    ))
    .await
}

async fn join_v1(ws: &mut Ws) {
    send(
        ws,
        json!({"topic": "__absinthe__:control", "event": "phx_join", "payload": {}, "ref": 1}),
    )
    .await;
    let r = recv(ws).await;
    assert_eq!(
        r,
        json!({"topic": "__absinthe__:control", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": 1})
    );
}

async fn subscribe_v1(ws: &mut Ws, reference: i64, imeis: &[&str]) -> Value {
    send(
        ws,
        json!({"topic": "__absinthe__:control", "event": "doc", "ref": reference,
        "payload": {"query": TRACK_SUBSCRIPTION, "variables": {"ids": imeis}}}),
    )
    .await;
    let r = recv(ws).await;
    assert_eq!(r["ref"], reference, "{r}");
    r
}

async fn next_data(ws: &mut Ws) -> Value {
    loop {
        let m = recv(ws).await;
        if m["event"] == "subscription:data" {
            return m;
        }
        assert_eq!(m["event"], "phx_reply", "unexpected {m}");
    }
}

#[tokio::test]
async fn a_track_flows_from_osmand_to_a_v1_subscriber_in_munic_units() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let reply = subscribe_v1(&mut ws, 2, &[IMEI]).await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    let id = reply["payload"]["response"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("__absinthe__:doc:"), "{id}");

    let (status, _) = s
        .push(&[
            ("id", IMEI),
            ("lat", "48.85837"),
            ("lon", "2.294481"),
            ("timestamp", "1700000000123"),
            ("speed", "21.6"),
            ("bearing", "90"),
            ("altitude", "35"),
            ("batt", "80"),
        ])
        .await;
    assert_eq!(status, 200);
    let m = next_data(&mut ws).await;
    assert_eq!(m["topic"], id.as_str());
    assert_eq!(m["ref"], Value::Null);
    assert_eq!(m["payload"]["subscriptionId"], id.as_str());
    let result = &m["payload"]["result"];
    assert_eq!(
        result.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["data"],
        "only data/errors/extensions"
    );
    let note = &result["data"]["deviceNotifications"];
    assert_eq!(note["deviceId"], IMEI);
    assert_eq!(note["recorded_at"], "2023-11-14T22:13:20.123Z");
    let field = |name: &str| {
        note["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {note}"))
            .clone()
    };
    assert_eq!(field("GPS_SPEED")["value"], 21600);
    assert_eq!(field("GPS_DIR")["value"], 9000);
    assert_eq!(field("GPS_ALTITUDE")["value"], 35);
    assert_eq!(field("BATT_LEVEL")["value"], 80);
    assert_eq!(
        field("GPS_SPEED")["coordinates"],
        json!({"lat": 48.85837, "lng": 2.294481, "time": "2023-11-14T22:13:20.123Z"})
    );
}

#[tokio::test]
async fn v2_serializer_echoes_join_ref_and_string_refs() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = connect(&format!(
        "{}/services/ekko/v2/socket/websocket?vsn=2.0.0&token={t}",
        s.ws_base
    ))
    .await;
    send(
        &mut ws,
        json!(["3", "3", "__absinthe__:control", "phx_join", {}]),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!(["3", "3", "__absinthe__:control", "phx_reply", {"status": "ok", "response": {}}])
    );
    send(&mut ws, json!([null, "4", "phoenix", "heartbeat", {}])).await;
    assert_eq!(
        recv(&mut ws).await,
        json!([null, "4", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
    );
    send(&mut ws, json!(["3", "5", "__absinthe__:control", "doc", {"query": TRACK_SUBSCRIPTION, "variables": {"ids": [IMEI]}}])).await;
    let reply = recv(&mut ws).await;
    assert_eq!(
        (reply[0].clone(), reply[1].clone(), reply[3].clone()),
        (json!("3"), json!("5"), json!("phx_reply"))
    );
    let id = reply[4]["response"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.push_position(IMEI, 1.5, 2.5).await, 200);
    let data = recv(&mut ws).await;
    assert_eq!(
        (
            data[0].clone(),
            data[1].clone(),
            data[2].clone(),
            data[3].clone()
        ),
        (
            Value::Null,
            Value::Null,
            json!(id),
            json!("subscription:data")
        )
    );
    assert_eq!(
        data[4]["result"]["data"]["deviceNotifications"]["coordinates"]["lat"],
        1.5
    );
    // Leave: reply, then phx_close for the join.
    send(
        &mut ws,
        json!(["3", "6", "__absinthe__:control", "phx_leave", {}]),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!(["3", "6", "__absinthe__:control", "phx_reply", {"status": "ok", "response": {}}])
    );
    assert_eq!(
        recv(&mut ws).await,
        json!(["3", "3", "__absinthe__:control", "phx_close", {}])
    );
}

#[tokio::test]
async fn identical_docs_get_distinct_ids_and_unsubscribe_removes_exactly_one() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let a = subscribe_v1(&mut ws, 2, &[IMEI]).await["payload"]["response"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = subscribe_v1(&mut ws, 3, &[IMEI]).await["payload"]["response"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(a, b);
    send(&mut ws, json!({"topic": "__absinthe__:control", "event": "unsubscribe", "ref": 4, "payload": {"subscriptionId": a}})).await;
    assert_eq!(
        recv(&mut ws).await["payload"],
        json!({"status": "ok", "response": {"subscriptionId": a}})
    );
    assert_eq!(s.push_position(IMEI, 10.0, 20.0).await, 200);
    let m = next_data(&mut ws).await;
    assert_eq!(m["topic"], b.as_str());
    // Exactly one delivery: nothing else arrives for this event.
    assert!(
        recv_within(&mut ws, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn subscribing_to_a_foreign_device_is_an_error_reply_and_the_socket_survives() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let reply = subscribe_v1(&mut ws, 2, &[IMEI, OTHER_IMEI]).await;
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let msg = reply["payload"]["response"]["errors"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains(OTHER_IMEI) && !msg.contains(&format!("{IMEI},")),
        "{msg}"
    );
    // Nothing leaks from the foreign device, and the socket still answers.
    assert_eq!(s.push_position(OTHER_IMEI, 1.0, 1.0).await, 200);
    send(
        &mut ws,
        json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": 9}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["ref"], 9);
}

#[tokio::test]
async fn queries_and_mutations_over_doc_follow_absinthe_reply_rules() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    send(&mut ws, json!({"topic": "__absinthe__:control", "event": "doc", "ref": 2, "payload": {"query": "{ account { email } }"}})).await;
    assert_eq!(
        recv(&mut ws).await["payload"],
        json!({"status": "ok", "response": {"data": {"account": {"email": EMAIL}}}})
    );
    send(&mut ws, json!({"topic": "__absinthe__:control", "event": "doc", "ref": 3, "payload": {"query": "{ nope }", "variables": null}})).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["payload"]["status"], "error");
    assert!(
        r["payload"]["response"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    send(&mut ws, json!({"topic": "__absinthe__:control", "event": "doc", "ref": 4, "payload": {"query": "{ account { email } }", "variables": [1]}})).await;
    assert_eq!(
        recv(&mut ws).await["payload"],
        json!({"status": "error", "response": {"error": "Could not parse variables as map"}})
    );
    send(&mut ws, json!({"topic": "__absinthe__:control", "event": "doc", "ref": 5,
        "payload": {"query": "query A { account { email } } query B { account { full_name } }", "operationName": "B"}})).await;
    assert_eq!(
        recv(&mut ws).await["payload"]["response"]["data"]["account"]["full_name"],
        FULL_NAME
    );
}

#[tokio::test]
async fn heartbeats_are_answered_with_the_same_ref_without_a_join() {
    let s = start().await;
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    for (event, reference) in [
        ("heartbeat", json!(1)),
        ("phx_pong", json!("7")),
        ("phx_ping", json!(8)),
    ] {
        send(
            &mut ws,
            json!({"topic": "phoenix", "event": event, "payload": {}, "ref": reference}),
        )
        .await;
        let r = recv(&mut ws).await;
        assert_eq!(
            r,
            json!({"topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": reference})
        );
    }
    // Unjoined topics and subscription topics are refused with a reason.
    send(
        &mut ws,
        json!({"topic": "__absinthe__:control", "event": "doc", "payload": {}, "ref": 2}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await["payload"]["response"]["reason"],
        "unmatched topic"
    );
    send(
        &mut ws,
        json!({"topic": "__absinthe__:doc:1:AB", "event": "phx_join", "payload": {}, "ref": 3}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["payload"]["status"], "error");
}

#[tokio::test]
async fn anonymous_sockets_cannot_subscribe() {
    let s = start().await;
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    join_v1(&mut ws).await;
    let r = subscribe_v1(&mut ws, 2, &[IMEI]).await;
    assert_eq!(r["payload"]["status"], "error");
    assert_eq!(
        r["payload"]["response"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn bad_tokens_bad_vsn_and_plain_gets_are_refused_before_the_upgrade() {
    let s = start().await;
    let url = format!("{}/services/ekko/v2/socket/websocket", s.ws_base);
    for bad in [
        format!("{url}?Authorization=Bearer+nope"),
        format!("{url}?vsn=3.0.0"),
        format!("{url}?vsn=2"),
    ] {
        match tokio_tungstenite::connect_async(&bad).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "{bad}")
            }
            other => panic!("{bad}: expected HTTP 403, got {other:?}"),
        }
    }
    let r = s
        .http
        .get(format!("{}/services/ekko/v2/socket/websocket", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_graphql_ws_frame_on_the_phoenix_socket_closes_cleanly_with_a_reason() {
    let s = start().await;
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    send(&mut ws, json!({"type": "connection_init", "payload": {}})).await;
    let closed = recv(&mut ws).await;
    assert_eq!(closed["closed"][0], 4400, "{closed}");
    assert!(closed["closed"][1].as_str().unwrap().contains("graphql-ws"));
    // A V2 array on a V1 socket is named, too.
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    send(
        &mut ws,
        json!(["1", "1", "__absinthe__:control", "phx_join", {}]),
    )
    .await;
    let closed = recv(&mut ws).await;
    assert!(
        closed["closed"][1].as_str().unwrap().contains("vsn=2.0.0"),
        "{closed}"
    );
}

#[tokio::test]
async fn an_idle_socket_is_closed_and_traffic_keeps_it_open() {
    let s = start_with(SocketConfig {
        idle_timeout: Duration::from_millis(600),
        ..SocketConfig::default()
    })
    .await;
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(
            &mut ws,
            json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": i}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["ref"], i);
    }
    let closed = recv(&mut ws).await;
    assert!(
        closed["closed"][1].as_str().unwrap().contains("idle"),
        "{closed}"
    );
}

#[tokio::test]
async fn osmand_refuses_unknown_devices_and_names_malformed_parameters() {
    let s = start().await;
    let (status, body) = s
        .push(&[("id", "352094087982671"), ("lat", "1"), ("lon", "2")])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("not registered"), "{body}");
    let (status, body) = s
        .push(&[("id", IMEI), ("lat", "north"), ("lon", "2")])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("'lat'"), "{body}");
    let (status, body) = s
        .push(&[
            ("id", IMEI),
            ("lat", "1"),
            ("lon", "2"),
            ("timestamp", "yesterday"),
        ])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("'timestamp'"), "{body}");
    let (status, _) = s
        .push(&[
            ("id", IMEI),
            ("timestamp", "2024-05-01T12:00:00Z"),
            ("batt", "50"),
        ])
        .await;
    assert_eq!(status, 200, "a report without a fix is still a track");
    let r = s
        .http
        .post(&s.osmand)
        .form(&[("id", IMEI), ("lat", "3"), ("lon", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "POST form");
}

#[tokio::test]
async fn a_subscription_with_two_root_fields_or_a_root_fragment_is_refused() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let docs = [
        format!(
            r#"subscription {{ deviceNotifications(deviceIds:["{IMEI}"]) {{ deviceId }} x: deviceNotifications(deviceIds:["{IMEI}"]) {{ deviceId }} }}"#
        ),
        format!(
            r#"subscription {{ ...F }} fragment F on Subscription {{ deviceNotifications(deviceIds:["{IMEI}"]) {{ deviceId }} }}"#
        ),
    ];
    for (i, query) in docs.iter().enumerate() {
        let reference = 10 + i as i64;
        send(&mut ws, json!({"topic": "__absinthe__:control", "event": "doc", "ref": reference, "payload": {"query": query}})).await;
        let r = recv(&mut ws).await;
        assert_eq!(r["payload"]["status"], "error", "{r}");
        assert!(
            r["payload"]["response"]["errors"][0]["message"]
                .as_str()
                .is_some(),
            "{r}"
        );
    }
}

#[tokio::test]
async fn a_frame_over_the_size_limit_is_closed_with_1009() {
    let s = start().await;
    let mut ws = connect(&format!("{}/services/ekko/v2/socket/websocket", s.ws_base)).await;
    let huge = json!({"topic": "phoenix", "event": "heartbeat", "payload": {"x": "a".repeat(2 * 1024 * 1024)}, "ref": 1});
    send(&mut ws, huge).await;
    let closed = recv(&mut ws).await;
    assert_eq!(closed["closed"][0], 1009, "{closed}");
}

#[tokio::test]
async fn phx_leave_is_answered_then_the_channel_closes() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    send(
        &mut ws,
        json!({"topic": "__absinthe__:control", "event": "phx_leave", "payload": {}, "ref": 7}),
    )
    .await;
    let reply = recv(&mut ws).await;
    assert_eq!(reply["event"], "phx_reply", "{reply}");
    assert_eq!(reply["ref"], 7);
    assert_eq!(reply["payload"]["status"], "ok");
    let close = recv(&mut ws).await;
    assert_eq!(close["event"], "phx_close", "{close}");
    assert_eq!(close["topic"], "__absinthe__:control");
    // A doc on the left channel is no longer accepted; the socket itself is still usable.
    send(
        &mut ws,
        json!({"topic": "__absinthe__:control", "event": "doc", "ref": 8,
        "payload": {"query": TRACK_SUBSCRIPTION, "variables": {"ids": [IMEI]}}}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["payload"]["status"], "error", "{r}");
    send(
        &mut ws,
        json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": 9}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["payload"]["status"], "ok");
}

#[tokio::test]
async fn an_unmatched_topic_gets_an_error_reply_and_the_socket_survives() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    send(
        &mut ws,
        json!({"topic": "rooms:lobby", "event": "phx_join", "payload": {}, "ref": 3}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["event"], "phx_reply", "{r}");
    assert_eq!(r["ref"], 3);
    assert_eq!(r["payload"]["status"], "error");
    assert_eq!(r["payload"]["response"]["reason"], "unmatched topic", "{r}");
    join_v1(&mut ws).await;
}

#[tokio::test]
async fn operation_name_picks_the_operation_or_gets_a_clear_error() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let doc = "query Me { account { email } } query Other { account { full_name } }";
    send(
        &mut ws,
        json!({"topic": "__absinthe__:control", "event": "doc", "ref": 2,
        "payload": {"query": doc, "variables": {}, "operationName": "Other"}}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["payload"]["status"], "ok", "{r}");
    assert_eq!(
        r["payload"]["response"]["data"],
        json!({"account": {"full_name": FULL_NAME}})
    );
    send(
        &mut ws,
        json!({"topic": "__absinthe__:control", "event": "doc", "ref": 3,
        "payload": {"query": doc, "variables": {}}}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["payload"]["status"], "error", "{r}");
    let text = r["payload"]["response"].to_string();
    assert!(text.to_lowercase().contains("operation"), "{r}");
}

#[tokio::test]
async fn a_socket_is_closed_with_4401_when_its_token_expires() {
    let s = start().await;
    let t = short_lived_token(&s, 2).await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let reply = subscribe_v1(&mut ws, 2, &[IMEI]).await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    let closed = recv_within(&mut ws, Duration::from_secs(10))
        .await
        .expect("a close within 10 s");
    let c = &closed["closed"];
    assert_eq!(c[0], 4401, "{closed}");
    assert!(c[1].as_str().unwrap().contains("expired"), "{closed}");
}

#[tokio::test]
async fn a_device_given_to_another_account_stops_flowing_to_its_former_owner() {
    let s = start().await;
    let t = s.token().await;
    let mut ws = v1_socket(&s, &t).await;
    join_v1(&mut ws).await;
    let reply = subscribe_v1(&mut ws, 2, &[IMEI]).await;
    let id = reply["payload"]["response"]["subscriptionId"].clone();
    assert_eq!(s.push_position(IMEI, 48.85, 2.29).await, 200);
    assert!(next_data(&mut ws).await["payload"]["result"]["data"].is_object());

    transfer(&s, IMEI, OTHER_EMAIL).await;
    assert_eq!(s.push_position(IMEI, 48.86, 2.30).await, 200);
    let last = next_data(&mut ws).await;
    assert_eq!(last["topic"], id);
    let errors = &last["payload"]["result"]["errors"];
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{last}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains(IMEI),
        "{last}"
    );
    assert!(last["payload"]["result"]["data"].is_null(), "{last}");
    // Nothing more flows to the former owner, and the socket stays open.
    assert_eq!(s.push_position(IMEI, 48.87, 2.31).await, 200);
    send(
        &mut ws,
        json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": 9}),
    )
    .await;
    let hb = recv(&mut ws).await;
    assert_eq!(hb["topic"], "phoenix", "no data after the withdrawal: {hb}");
    // A new subscription to the device is refused now.
    let again = subscribe_v1(&mut ws, 10, &[IMEI]).await;
    assert_eq!(again["payload"]["status"], "error", "{again}");
}
