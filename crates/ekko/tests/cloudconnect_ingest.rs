//! `POST /ingest/cloudconnect` end to end, and unknown devices listed as pending.

mod common;

use common::{EMAIL, IMEI, OTHER_IMEI, TestServer};
use serde_json::{Value, json};

/// A valid IMEI that no account registered.
const UNKNOWN_IMEI: &str = "490154203237518";

const MIXED: &str = include_str!("../../ekko-gateway/tests/data/cloudconnect/mixed_batch.json");

async fn secret(t: &TestServer) -> String {
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    let (_, secret) = ekko.create_integration(EMAIL).await.unwrap();
    store.close().await;
    secret
}

async fn post(t: &TestServer, secret: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = t
        .http
        .post(format!("{}/ingest/cloudconnect", t.base))
        .json(body);
    if let Some(s) = secret {
        req = req.bearer_auth(s);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn tracks_of(t: &TestServer, imei: &str) -> Vec<ekko_core::track::Track> {
    common::stored_tracks(t.dir.path(), imei).await
}

async fn pending(t: &TestServer) -> Vec<ekko_core::integration::PendingDevice> {
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    let p = ekko.pending_devices().await.unwrap();
    store.close().await;
    p
}

fn track(imei: &str, at: &str) -> Value {
    json!({"meta": {"account": "municio", "event": "track"},
           "payload": {"id": 1, "id_str": "1", "asset": imei, "recorded_at": at,
                       "loc": [2.29448, 48.85837],
                       "fields": {"MDI_EXT_BATT_VOLTAGE": {"b64_value": "AAAycg=="}}}})
}

#[tokio::test]
async fn a_mixed_webhook_batch_is_stored_and_answered_after_commit() {
    let t = common::start().await;
    let secret = secret(&t).await;
    let body: Value = serde_json::from_str(MIXED).unwrap();
    let (status, answer) = post(&t, Some(&secret), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 6);
    let skipped: Vec<u64> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, vec![3, 7]);
    let tracks = tracks_of(&t, IMEI).await;
    assert_eq!(tracks.len(), 2);
    let newest_fields = serde_json::to_value(&tracks[1].fields).unwrap();
    assert!(
        newest_fields
            .to_string()
            .contains(r#"{"name":"MDI_EXT_BATT_VOLTAGE","value":12914}"#),
        "{newest_fields}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_integration_secret_gets_401() {
    let t = common::start().await;
    let good = secret(&t).await;
    let body = json!([track(IMEI, "2015-05-22T17:29:47Z")]);
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    for s in [None, Some("nope"), Some(tampered.as_str())] {
        let (status, answer) = post(&t, s, &body).await;
        assert_eq!(status, 401, "{s:?}: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap()
                .contains("integration secret")
        );
    }
    assert!(tracks_of(&t, IMEI).await.is_empty());
}

#[tokio::test]
async fn a_batch_naming_a_foreign_or_unknown_device_is_refused_and_stores_nothing() {
    let t = common::start().await;
    let secret = secret(&t).await;
    let body = json!([
        track(IMEI, "2015-05-22T17:29:47Z"),
        track(OTHER_IMEI, "2015-05-22T17:29:48Z"),
        track(UNKNOWN_IMEI, "2015-05-22T17:29:49Z"),
    ]);
    let (status, answer) = post(&t, Some(&secret), &body).await;
    assert_eq!(status, 403, "{answer}");
    let refused: Vec<u64> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, vec![1, 2]);
    assert!(tracks_of(&t, IMEI).await.is_empty());
    assert!(tracks_of(&t, OTHER_IMEI).await.is_empty());
    // The unknown device is pending; the foreign (registered) one is not.
    let p = pending(&t).await;
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].imei.as_str(), p[0].protocol.as_str()),
        (UNKNOWN_IMEI, "cloudconnect")
    );
}

#[tokio::test]
async fn a_malformed_event_refuses_the_batch_with_its_index() {
    let t = common::start().await;
    let secret = secret(&t).await;
    let body = json!([
        track(IMEI, "2015-05-22T17:29:47Z"),
        track(IMEI, "not a time"),
    ]);
    let (status, answer) = post(&t, Some(&secret), &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["index"], 1);
    assert!(tracks_of(&t, IMEI).await.is_empty());
}

#[tokio::test]
async fn unknown_osmand_devices_are_refused_and_counted_as_pending() {
    let t = common::start().await;
    for _ in 0..3 {
        let status = t.push_position(UNKNOWN_IMEI, 48.85, 2.29).await;
        assert_eq!(status, 400);
    }
    assert_eq!(t.push_position(IMEI, 48.85, 2.29).await, 200);
    let p = pending(&t).await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].imei.as_str(), UNKNOWN_IMEI);
    assert_eq!(p[0].protocol, "osmand");
    assert_eq!(p[0].attempts, 3);
    assert!(p[0].first_seen <= p[0].last_seen);
    // Once claimed, it is no longer pending.
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    ekko.create_device(UNKNOWN_IMEI, EMAIL).await.unwrap();
    store.close().await;
    assert!(pending(&t).await.is_empty());
}

#[tokio::test]
async fn a_resent_batch_does_not_store_its_tracks_twice() {
    let t = common::start().await;
    let secret = secret(&t).await;
    let body = json!([
        track(IMEI, "2015-05-22T17:29:47Z"),
        track(IMEI, "2015-05-22T17:29:48Z"),
    ]);
    for _ in 0..2 {
        let (status, answer) = post(&t, Some(&secret), &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(tracks_of(&t, IMEI).await.len(), 2);
}

#[tokio::test]
async fn a_batch_naming_a_suspended_device_is_refused_before_anything_is_stored() {
    const SUSPENDED: &str = "353918057329613";
    let t = common::start().await;
    let secret = secret(&t).await;
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    ekko.create_device(SUSPENDED, EMAIL).await.unwrap();
    store.close().await;
    let token = t.token().await;
    let (status, answer) = t
        .graphql(
            Some(&token),
            &format!(r#"mutation {{ device_update(id: "{SUSPENDED}", status: "suspended") {{ status }} }}"#),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let presence = json!({"meta": {"account": "municio", "event": "presence"},
        "payload": {"id": 2, "asset": SUSPENDED, "type": "connect", "time": "2015-05-22T17:29:48Z"}});
    for body in [
        json!([track(IMEI, "2015-05-22T17:29:47Z"), presence]),
        json!([
            track(IMEI, "2015-05-22T17:29:47Z"),
            track(SUSPENDED, "2015-05-22T17:29:48Z")
        ]),
    ] {
        let (status, answer) = post(&t, Some(&secret), &body).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["errors"][0]["index"], 1, "{answer}");
        let detail = answer["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("suspended"), "{detail}");
        assert!(
            tracks_of(&t, IMEI).await.is_empty(),
            "nothing of the batch is stored"
        );
    }
}
