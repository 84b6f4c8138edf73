//! Presence from the OsmAnd gateway: `connect` before the first record after a silence,
//! `disconnect` (reason `timeout`) after the presence timeout; and the domain producers.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::json;

const PRESENCE: &str = r#"subscription($ids: [ID!]!) {
  deviceNotifications(deviceIds: $ids) {
    __typename deviceId
    ... on Presence { id type reason protocol time }
  }
}"#;

async fn subscribe(s: &TestServer) -> Ws {
    let token = s.token().await;
    let mut ws = connect(&format!(
        "{}/services/ekko/v2/socket/websocket?vsn=2.0.0&token={token}",
        s.ws_base
    ))
    .await;
    send(
        &mut ws,
        json!(["1", "1", "__absinthe__:control", "phx_join", {}]),
    )
    .await;
    assert_eq!(recv(&mut ws).await[4]["status"], "ok");
    send(
        &mut ws,
        json!(["1", "2", "__absinthe__:control", "doc", {"query": PRESENCE, "variables": {"ids": [IMEI]}}]),
    )
    .await;
    assert_eq!(recv(&mut ws).await[4]["status"], "ok");
    ws
}

async fn next_notification(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = recv(ws).await;
        if m[3] == "subscription:data" {
            return m[4]["result"]["data"]["deviceNotifications"].clone();
        }
    }
}

#[tokio::test]
async fn osmand_reports_connect_then_disconnect_after_the_presence_timeout() {
    let s = start_configured(|o| o.presence_timeout = Duration::from_millis(400)).await;
    let mut ws = subscribe(&s).await;
    assert_eq!(s.push_position(IMEI, 48.85, 2.29).await, 200);
    assert_eq!(s.push_position(IMEI, 48.86, 2.29).await, 200);
    let connect = next_notification(&mut ws).await;
    assert_eq!(connect["__typename"], "Presence");
    assert_eq!(connect["type"], "connect");
    assert_eq!(connect["protocol"], "osmand");
    assert_eq!(connect["deviceId"], IMEI);
    // Only one connect for consecutive records; the selection names Presence only, so the
    // Tracks are not delivered and the next notification is the disconnect after the timeout.
    let disconnect = next_notification(&mut ws).await;
    assert_eq!(disconnect["type"], "disconnect");
    assert_eq!(disconnect["reason"], "timeout");
    assert!(
        disconnect["id"].as_str().unwrap().parse::<i64>().unwrap()
            > connect["id"].as_str().unwrap().parse::<i64>().unwrap()
    );
    // Heard again: connected again.
    assert_eq!(s.push_position(IMEI, 48.87, 2.29).await, 200);
    assert_eq!(next_notification(&mut ws).await["type"], "connect");
    ws.close(None).await.ok();
    let _ = ws.next().await;
}

#[tokio::test]
async fn messages_and_pokes_are_refused_for_devices_that_are_not_yours() {
    let s = start().await;
    let token = s.token().await;
    for q in [
        format!(
            r#"mutation {{ device_message_send(deviceId: "{OTHER_IMEI}", channel: "c", b64_payload: "") {{ id }} }}"#
        ),
        format!(
            r#"mutation {{ poke_send(deviceId: "{OTHER_IMEI}", namespace: "n", b64_payload: "") {{ id }} }}"#
        ),
    ] {
        let (status, body) = s.graphql(Some(&token), &q, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_message_payload_that_is_not_base64_is_a_bad_input() {
    let s = start().await;
    let token = s.token().await;
    let q = format!(
        r#"mutation {{ device_message_send(deviceId: "{IMEI}", channel: "c", b64_payload: "%%%") {{ id }} }}"#
    );
    let (_, body) = s.graphql(Some(&token), &q, json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
}

#[tokio::test]
async fn sent_messages_and_pokes_get_store_ids_and_name_the_sender() {
    let s = start().await;
    let token = s.token().await;
    let q = format!(
        r#"mutation {{ a: device_message_send(deviceId: "{IMEI}", channel: "chat", b64_payload: "aGk=") {{ id sender recipient type channel b64_payload received_at }} b: poke_send(deviceId: "{IMEI}", namespace: "campaign::status", b64_payload: "e30=") {{ id sender namespace }} }}"#
    );
    let (status, body) = s.graphql(Some(&token), &q, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let m = &body["data"]["a"];
    assert!(m["id"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(m["recipient"], IMEI);
    assert_eq!(m["type"], "message");
    assert_eq!(m["b64_payload"], "aGk=");
    let me = s
        .graphql(Some(&token), "{ account { id } }", json!({}))
        .await
        .1;
    assert_eq!(m["sender"], me["data"]["account"]["id"]);
    assert_eq!(body["data"]["b"]["namespace"], "campaign::status");
}
