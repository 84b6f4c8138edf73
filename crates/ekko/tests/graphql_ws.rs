//! graphql-transport-ws and legacy graphql-ws (subscriptions-transport-ws) on the GraphQL path,
//! and GraphQL over SSE there: in-process server, raw frames.

mod common;

use std::time::Duration;

use common::*;
use ekko_socket::phoenix::SocketConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const GQL_PATH: &str = "/services/ekko/v2/graphql";

const ALL_KINDS: &str = r#"subscription($ids: [ID!]!) {
  deviceNotifications(deviceIds: $ids) {
    __typename deviceId
    ... on Track { id fields { name value } }
    ... on Presence { type reason protocol }
    ... on Message { channel sender recipient b64_payload }
    ... on Poke { namespace sender b64_payload }
  }
}"#;

async fn open(s: &TestServer, protocol: &str, auth: Option<&str>) -> (Ws, Option<String>) {
    let mut req = format!("{}{GQL_PATH}", s.ws_base)
        .into_client_request()
        .unwrap();
    if !protocol.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
    }
    if let Some(a) = auth {
        req.headers_mut()
            .insert("Authorization", HeaderValue::from_str(a).unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, chosen)
}

/// Opens a socket and completes `connection_init` with the token in the payload.
async fn acked(s: &TestServer, protocol: &str) -> Ws {
    let token = s.token().await;
    let (mut ws, _) = open(s, protocol, None).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    ws
}

async fn closed_with(ws: &mut Ws) -> (u16, String) {
    let v = recv(ws).await;
    let c = &v["closed"];
    assert!(c.is_array(), "expected a close, got {v}");
    (
        c[0].as_u64().unwrap() as u16,
        c[1].as_str().unwrap().to_owned(),
    )
}

async fn mutate(s: &TestServer, query: &str) -> Value {
    let token = s.token().await;
    let (status, body) = s.graphql(Some(&token), query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body
}

/// Produces, in order: Presence `connect` and a Track (the first OsmAnd record), a Message
/// and a Poke (the owner's mutations).
async fn produce_track_message_and_poke(s: &TestServer) {
    assert_eq!(s.push_position(IMEI, 48.85837, 2.294481).await, 200);
    mutate(
        s,
        &format!(r#"mutation {{ device_message_send(deviceId: "{IMEI}", channel: "com.example.chat", b64_payload: "aGVsbG8=") {{ id }} }}"#),
    )
    .await;
    mutate(
        s,
        &format!(r#"mutation {{ poke_send(deviceId: "{IMEI}", namespace: "campaign::status", b64_payload: "e30=") {{ id }} }}"#),
    )
    .await;
}

/// Collects `n` notifications' `__typename` from `next`/`data` messages of `id`.
async fn typenames(ws: &mut Ws, id: &str, data_type: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = recv(ws).await;
        if m["type"] == "ka" || m["type"] == "ping" {
            continue;
        }
        assert_eq!(m["type"], data_type, "{m}");
        assert_eq!(m["id"], id);
        out.push(m["payload"]["data"]["deviceNotifications"].clone());
    }
    out
}

#[tokio::test]
async fn graphql_transport_ws_delivers_every_notification_kind() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    send(
        &mut ws,
        json!({"id": "a1", "type": "subscribe", "payload": {"query": ALL_KINDS, "variables": {"ids": [IMEI]}, "operationName": null, "extensions": {}}}),
    )
    .await;
    // The subscription is registered once the server has it; give it a moment, then produce.
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce_track_message_and_poke(&s).await;
    let got = typenames(&mut ws, "a1", "next", 4).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|n| n["__typename"].as_str().unwrap())
        .collect();
    // The first record after a silence is preceded by a `connect` presence event.
    assert_eq!(kinds, ["Presence", "Track", "Message", "Poke"], "{got:?}");
    assert_eq!(got[0]["type"], "connect");
    assert_eq!(got[0]["protocol"], "osmand");
    let msg = got.iter().find(|n| n["__typename"] == "Message").unwrap();
    assert_eq!(msg["channel"], "com.example.chat");
    assert_eq!(msg["b64_payload"], "aGVsbG8=");
    assert_eq!(msg["recipient"], IMEI);
    let poke = got.iter().find(|n| n["__typename"] == "Poke").unwrap();
    assert_eq!(poke["namespace"], "campaign::status");
    // Client `complete`: nothing more for that id.
    send(&mut ws, json!({"id": "a1", "type": "complete"})).await;
    assert_eq!(s.push_position(IMEI, 48.0, 2.0).await, 200);
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "pong"}));
}

#[tokio::test]
async fn legacy_graphql_ws_delivers_data_and_stop_completes() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-ws").await;
    send(
        &mut ws,
        json!({"id": "1", "type": "start", "payload": {"query": ALL_KINDS, "variables": {"ids": [IMEI]}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce_track_message_and_poke(&s).await;
    let got = typenames(&mut ws, "1", "data", 4).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|n| n["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Presence", "Track", "Message", "Poke"], "{got:?}");
    send(&mut ws, json!({"id": "1", "type": "stop"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "complete", "id": "1"}));
    send(&mut ws, json!({"type": "connection_terminate"})).await;
    assert_eq!(closed_with(&mut ws).await.0, 1000);
}

#[tokio::test]
async fn the_subprotocol_is_chosen_by_sec_websocket_protocol() {
    let s = start().await;
    let (_ws, chosen) = open(&s, "graphql-transport-ws", None).await;
    assert_eq!(chosen.as_deref(), Some("graphql-transport-ws"));
    let (_ws, chosen) = open(&s, "graphql-ws", None).await;
    assert_eq!(chosen.as_deref(), Some("graphql-ws"));
    // None offered: upgraded, then closed with 4406.
    let (mut ws, _) = open(&s, "", None).await;
    assert_eq!(closed_with(&mut ws).await.0, 4406);
}

#[tokio::test]
async fn the_upgrade_header_authenticates_when_the_init_payload_has_no_token() {
    let s = start().await;
    let token = s.token().await;
    let (mut ws, _) = open(&s, "graphql-transport-ws", Some(&format!("Bearer {token}"))).await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "q", "type": "subscribe", "payload": {"query": "{ account { email } }"}}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "next", "id": "q", "payload": {"data": {"account": {"email": EMAIL}}}})
    );
    assert_eq!(recv(&mut ws).await, json!({"type": "complete", "id": "q"}));
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let s = start_with(SocketConfig {
        init_timeout: Duration::from_millis(300),
        ..SocketConfig::default()
    })
    .await;
    let (mut ws, _) = open(&s, "graphql-transport-ws", None).await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4408, "Connection initialisation timeout".into())
    );
}

#[tokio::test]
async fn a_bad_token_in_connection_init_closes_with_4403() {
    let s = start().await;
    let (mut ws, _) = open(&s, "graphql-transport-ws", None).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer not.a.jwt"}}),
    )
    .await;
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 4403);
    assert!(reason.starts_with("Forbidden"), "{reason}");
}

#[tokio::test]
async fn subscribe_before_ack_closes_with_4401() {
    let s = start().await;
    let (mut ws, _) = open(&s, "graphql-transport-ws", None).await;
    send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
    )
    .await;
    assert_eq!(closed_with(&mut ws).await, (4401, "Unauthorized".into()));
}

#[tokio::test]
async fn a_duplicate_active_id_closes_with_4409() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    let sub = json!({"id": "dup", "type": "subscribe", "payload": {"query": ALL_KINDS, "variables": {"ids": [IMEI]}}});
    send(&mut ws, sub.clone()).await;
    send(&mut ws, sub).await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4409, "Subscriber for dup already exists".into())
    );
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4429, "Too many initialisation requests".into())
    );
}

#[tokio::test]
async fn an_invalid_message_closes_with_4400() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    send(
        &mut ws,
        json!({"type": "start", "id": "1", "payload": {"query": "{a}"}}),
    )
    .await;
    assert_eq!(closed_with(&mut ws).await.0, 4400);
}

#[tokio::test]
async fn a_forbidden_subscription_gets_an_error_and_the_socket_stays_open() {
    let s = start().await;
    for (protocol, data_type) in [("graphql-transport-ws", "next"), ("graphql-ws", "data")] {
        let mut ws = acked(&s, protocol).await;
        let start = if protocol == "graphql-ws" {
            "start"
        } else {
            "subscribe"
        };
        send(
            &mut ws,
            json!({"id": "x", "type": start, "payload": {"query": ALL_KINDS, "variables": {"ids": [OTHER_IMEI]}}}),
        )
        .await;
        let m = recv(&mut ws).await;
        assert_eq!(m["type"], "error", "{m}");
        assert_eq!(m["id"], "x");
        assert!(
            m["payload"][0]["message"]
                .as_str()
                .unwrap()
                .contains(OTHER_IMEI),
            "{m}"
        );
        assert_eq!(m["payload"][0]["extensions"]["code"], "FORBIDDEN");
        // Still open: the id is free again and a query works.
        send(
            &mut ws,
            json!({"id": "x", "type": start, "payload": {"query": "{ account { email } }"}}),
        )
        .await;
        let m = recv(&mut ws).await;
        assert_eq!(m["type"], data_type, "{m}");
        assert_eq!(m["payload"]["data"]["account"]["email"], EMAIL);
    }
}

#[tokio::test]
async fn a_validation_error_is_an_error_message_not_a_result() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    send(
        &mut ws,
        json!({"id": "v", "type": "subscribe", "payload": {"query": "{ nope }"}}),
    )
    .await;
    let m = recv(&mut ws).await;
    assert_eq!(m["type"], "error", "{m}");
    assert!(m["payload"].is_array());
}

#[tokio::test]
async fn keepalive_is_sent_when_configured() {
    let s = start_with(SocketConfig {
        keepalive: Some(Duration::from_millis(200)),
        ..SocketConfig::default()
    })
    .await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    assert_eq!(recv(&mut ws).await, json!({"type": "ping"}));
    let mut legacy = acked(&s, "graphql-ws").await;
    assert_eq!(recv(&mut legacy).await, json!({"type": "ka"}));
    assert_eq!(recv(&mut legacy).await, json!({"type": "ka"}));
}

#[tokio::test]
async fn no_keepalive_is_sent_by_default() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    assert_eq!(recv_within(&mut ws, Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn plain_graphql_over_http_still_works_on_the_same_path() {
    let s = start().await;
    let token = s.token().await;
    let (status, body) = s
        .graphql(Some(&token), "{ account { email } }", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["account"]["email"], EMAIL);
}

/// Reads SSE events (event name, parsed data) until `complete` or `n` events.
async fn sse_events(mut resp: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream is open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if event.is_empty() {
                continue; // a keep-alive comment
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::Null);
            let done = event == "complete";
            out.push((event, data));
            if done {
                return out;
            }
        }
    }
    out
}

#[tokio::test]
async fn sse_answers_a_query_with_next_then_complete() {
    let s = start().await;
    let token = s.token().await;
    let resp = s
        .http
        .post(format!("{}{GQL_PATH}", s.base))
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .json(&json!({"query": "{ account { email } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(resp, 5).await;
    assert_eq!(events[0].0, "next");
    assert_eq!(events[0].1["data"]["account"]["email"], EMAIL);
    assert_eq!(events[1].0, "complete");
}

#[tokio::test]
async fn sse_subscription_streams_every_notification_kind() {
    let s = start().await;
    let token = s.token().await;
    let resp = s
        .http
        .post(format!("{}{GQL_PATH}", s.base))
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .json(&json!({"query": ALL_KINDS, "variables": {"ids": [IMEI]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Response headers arrive once the subscription is registered.
    produce_track_message_and_poke(&s).await;
    let events = sse_events(resp, 4).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|(e, d)| {
            assert_eq!(e, "next");
            d["data"]["deviceNotifications"]["__typename"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, ["Presence", "Track", "Message", "Poke"]);
}

#[tokio::test]
async fn sse_reports_a_forbidden_subscription_as_a_next_event() {
    let s = start().await;
    let token = s.token().await;
    let resp = s
        .http
        .post(format!("{}{GQL_PATH}", s.base))
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .json(&json!({"query": ALL_KINDS, "variables": {"ids": [OTHER_IMEI]}}))
        .send()
        .await
        .unwrap();
    let events = sse_events(resp, 5).await;
    assert_eq!(events[0].0, "next");
    assert_eq!(events[0].1["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(events[1].0, "complete");
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_1008_and_others_keep_receiving() {
    let s = start_with(SocketConfig {
        send_timeout: Duration::from_millis(300),
        ..SocketConfig::default()
    })
    .await;
    let pokes = r#"subscription($ids: [ID!]!) { deviceNotifications(deviceIds: $ids) { ... on Poke { id b64_payload } } }"#;
    const N: usize = 60;
    let mut slow = acked(&s, "graphql-transport-ws").await;
    let mut fast = acked(&s, "graphql-transport-ws").await;
    for ws in [&mut slow, &mut fast] {
        send(
            ws,
            json!({"id": "p", "type": "subscribe", "payload": {"query": pokes, "variables": {"ids": [IMEI]}}}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The healthy client reads all along.
    let reader = tokio::spawn(async move {
        for _ in 0..N {
            let m = recv_within(&mut fast, Duration::from_secs(20))
                .await
                .expect("a result");
            assert_eq!(m["type"], "next", "{m}");
        }
    });
    // 200 KiB payloads fill the socket buffers of a client that does not read within a few
    // dozen messages; the server gives up on it after the send timeout instead of buffering.
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 200 * 1024]);
    let token = s.token().await;
    for _ in 0..N {
        let (status, body) = s
            .graphql(
                Some(&token),
                &format!(r#"mutation {{ poke_send(deviceId: "{IMEI}", namespace: "n", b64_payload: "{payload}") {{ id }} }}"#),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    reader.await.unwrap();
    // The slow client finally reads: some results, then the end of the connection (its close
    // frame, 1008, when it still fitted in the socket buffers).
    let mut got = 0;
    while let Some(m) = recv_within(&mut slow, Duration::from_secs(10)).await {
        if m["type"] == "next" {
            got += 1;
            continue;
        }
        assert_eq!(m["closed"][0], 1008, "{m}");
        assert!(m["closed"][1].as_str().unwrap().contains("too slow"));
        break;
    }
    assert!(got < N, "the slow client got everything ({got})");
}

#[tokio::test]
async fn a_transferred_device_ends_the_former_owners_subscription_with_forbidden() {
    let s = start().await;
    let mut ws = acked(&s, "graphql-transport-ws").await;
    send(
        &mut ws,
        json!({"id": "t1", "type": "subscribe", "payload": {"query": ALL_KINDS, "variables": {"ids": [IMEI]}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A first record while the device is still ours: a Presence connect and a Track.
    assert_eq!(s.push_position(IMEI, 48.85837, 2.294481).await, 200);
    assert_eq!(typenames(&mut ws, "t1", "next", 2).await.len(), 2);
    transfer(&s, IMEI, OTHER_EMAIL).await;
    // One record after the transfer: the last result, then `complete` without waiting for
    // another record.
    assert_eq!(s.push_position(IMEI, 48.85837, 2.294481).await, 200);
    let m = recv(&mut ws).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["id"], "t1");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{m}"
    );
    let done = recv(&mut ws).await;
    assert_eq!(done, json!({"id": "t1", "type": "complete"}));
    // The socket stays open: the new owner's device data never reaches it, a ping is answered.
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
}
