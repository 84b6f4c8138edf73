//! The README's GraphQL cookbook, run as written against the demo organization
//! (`ekko::demo::seed_fleet`) with a few records per device: every query must answer without
//! an error, with the data the README promises.

mod common;

use common::*;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::time::now_ms;
use ekko_core::track::{Coordinates, TrackRecord};
use serde_json::{Value, json};

/// The ```graphql blocks between the cookbook markers of README.md.
fn cookbook() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- cookbook:start -->")
        .expect("start marker");
    let end = readme.find("<!-- cookbook:end -->").expect("end marker");
    readme[start..end]
        .split("```graphql")
        .skip(1)
        .map(|block| {
            block[..block.find("```").expect("closing fence")]
                .trim()
                .to_owned()
        })
        .collect()
}

async fn seeded_server() -> TestServer {
    let demo = tempfile::tempdir().unwrap();
    {
        let (ekko, store) = ekko::server::open_domain(demo.path()).await.unwrap();
        let imeis = ekko::demo::seed_fleet(&ekko, PASSWORD, 5).await.unwrap();
        let now = now_ms().timestamp_millis();
        let mut records = vec![];
        for (i, imei) in imeis.iter().enumerate() {
            for k in 0..3i64 {
                records.push(TrackRecord {
                    imei: imei.clone(),
                    recorded_at: ekko_core::time::from_unix_ms(now - (3 - k) * 60_000).unwrap(),
                    coordinates: Some(
                        Coordinates::new(48.85 + i as f64 / 100.0, 2.35 + k as f64 / 1000.0)
                            .unwrap(),
                    ),
                    fields: vec![
                        Field::new("GPS_SPEED", FieldValue::Int(10_000 * k)),
                        Field::new("DIO_IGNITION", FieldValue::Bool(k > 0)),
                        Field::new("ODO_FULL_METER", FieldValue::Int(1_000 + k)),
                    ],
                });
            }
        }
        ekko.ingest_tracks(records).await.unwrap();
        store.close().await;
    }
    let dir = demo.path().to_path_buf();
    let mut s = start_configured(move |o| o.data_dir = dir).await;
    // Keep the demo directory alive as long as the server: it replaces the default one.
    s.dir = demo;
    s
}

#[tokio::test]
async fn every_cookbook_query_answers_with_the_promised_data() {
    let queries = cookbook();
    assert_eq!(queries.len(), 10, "the cookbook has ten queries");
    let s = seeded_server().await;
    let token = s.token_response(ekko::demo::DEMO_EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut answers: Vec<Value> = vec![];
    for q in &queries {
        let (status, body) = s.graphql(Some(&token), q, json!({})).await;
        assert_eq!(status, 200, "{q}\n{body}");
        assert!(body.get("errors").is_none(), "{q}\n{body}");
        assert!(body["data"].is_object(), "{q}\n{body}");
        answers.push(body["data"].clone());
    }
    // 1: the admin of Demo Fleet's root group.
    assert_eq!(answers[0]["account"]["roles"][0]["role"], "admin");
    // 2: the whole tree.
    assert_eq!(answers[1]["groups"]["count"], 4);
    // 3: Paris and Paris North hold Vans 1, 2, 4 and 5, each in a vehicle.
    assert_eq!(answers[2]["devices"]["count"], 4);
    assert!(answers[2]["devices"]["list"][0]["vehicle"]["plate"].is_string());
    assert!(answers[2]["devices"]["list"][0]["last_contact"].is_string());
    // 4: every vehicle knows where its device is.
    assert_eq!(answers[3]["vehicles"]["count"], 5);
    assert!(answers[3]["vehicles"]["list"][0]["device"]["last_position"]["lat"].is_number());
    // 5: the three Kangoos.
    assert_eq!(answers[4]["vehicles"]["count"], 3);
    // 6: current values, in the order asked.
    let values = &answers[5]["device"]["last_values"];
    assert_eq!(values[0]["name"], "GPS_SPEED");
    assert_eq!(values[0]["value"], 20_000);
    assert_eq!(values[0]["unit"], "1/1000 knot");
    assert_eq!(values[0]["decoded"], 37.04);
    assert_eq!(values[0]["decoded_unit"], "km/h");
    assert!(values[1]["decoded"].is_null());
    // 7 and 8: the history and the series.
    assert_eq!(answers[6]["device"]["tracks"]["count"], 3);
    assert_eq!(
        answers[7]["device"]["readings"]["values"],
        json!([0, 10_000, 20_000])
    );
    // 9: the installation history.
    assert_eq!(
        answers[8]["vehicle"]["installations"][0]["device_id"],
        "359881234500007"
    );
    // 10: the viewer invited on Lyon.
    assert_eq!(answers[9]["group"]["roles"][0]["role"], "viewer");
    assert_eq!(
        answers[9]["accounts"]["list"][0]["email"],
        ekko::demo::DEMO_VIEWER_EMAIL
    );
}

#[tokio::test]
async fn the_demo_viewer_sees_lyon_only() {
    let s = seeded_server().await;
    let token = s.token_response(ekko::demo::DEMO_VIEWER_EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = s
        .graphql(
            Some(&token),
            "{ groups { list { name my_role } } devices { list { id } } vehicles { count } }",
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    // Lyon of Demo Fleet as a viewer, and its own organization's root: nothing of Paris.
    let groups = &body["data"]["groups"]["list"];
    assert!(
        groups
            .as_array()
            .unwrap()
            .contains(&json!({"name": "Lyon", "my_role": "viewer"})),
        "{groups}"
    );
    assert!(!groups.to_string().contains("Paris"), "{groups}");
    assert_eq!(
        body["data"]["devices"]["list"],
        json!([{"id": "359881234500023"}])
    );
    assert_eq!(body["data"]["vehicles"]["count"], 1);
}
