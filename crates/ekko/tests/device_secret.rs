//! Optional per-device secrets on the OsmAnd listener: a device given a secret must send it as
//! `key=`; the key is checked in constant time and never stored as a field.

mod common;

use common::*;
use serde_json::json;

async fn set_secret(s: &TestServer) -> String {
    let (ekko, store) = ekko::server::open_domain(s.dir.path()).await.unwrap();
    let secret = ekko.set_device_secret(IMEI).await.unwrap();
    store.close().await;
    secret
}

fn position<'a>(imei: &'a str, key: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![("id", imei), ("lat", "48.85"), ("lon", "2.29")];
    if let Some(k) = key {
        p.push(("key", k));
    }
    p
}

#[tokio::test]
async fn a_device_with_a_secret_must_send_it_and_the_key_is_never_stored() {
    let s = start().await;
    // Without a secret, the IMEI alone is enough (and a stray key is ignored).
    assert_eq!(s.push(&position(IMEI, None)).await.0, 200);
    let secret = set_secret(&s).await;
    assert!(secret.starts_with("eds_") && secret.len() == 68, "{secret}");

    let (status, body) = s.push(&position(IMEI, None)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("key="), "{body}");
    assert_eq!(s.push(&position(IMEI, Some("eds_wrong"))).await.0, 401);
    let (status, body) = s.push(&position(IMEI, Some(&secret))).await;
    assert_eq!(status, 200, "{body}");
    // Other devices are unaffected.
    assert_eq!(s.push(&position(OTHER_IMEI, None)).await.0, 200);

    // The JSON form (Traccar Client's) takes the key from the URL's query.
    let body = json!({"device_id": IMEI, "location": {"timestamp": "2026-12-04T08:00:00Z",
        "coords": {"latitude": 48.85, "longitude": 2.29}}});
    let post = |key: Option<String>| {
        let mut url = s.osmand.clone();
        if let Some(k) = key {
            url = format!("{url}?key={k}");
        }
        s.http.post(url).json(&body).send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some(secret.clone())).await.unwrap().status(), 200);

    // No stored track carries the key.
    let (ekko, store) = ekko::server::open_domain(s.dir.path()).await.unwrap();
    let tracks = ekko
        .store()
        .recent_tracks(&ekko_core::Imei::parse(IMEI).unwrap(), 100)
        .await
        .unwrap();
    store.close().await;
    assert_eq!(tracks.len(), 3);
    for t in &tracks {
        assert!(
            t.fields.iter().all(|f| !f.name.eq_ignore_ascii_case("key")),
            "{:?}",
            t.fields
        );
    }
}

#[tokio::test]
async fn the_cli_prints_a_secret_once_and_clear_removes_it() {
    let s = start().await;
    let d = s.dir.path().to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_ekko");
    let out = std::process::Command::new(bin)
        .args(["device", "secret", "--data-dir", d, "--imei", IMEI])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        secret.starts_with("eds_"),
        "stdout is the secret alone: {secret}"
    );
    assert_eq!(s.push(&position(IMEI, None)).await.0, 401);
    assert_eq!(s.push(&position(IMEI, Some(&secret))).await.0, 200);

    let out = std::process::Command::new(bin)
        .args([
            "device",
            "secret",
            "--data-dir",
            d,
            "--imei",
            IMEI,
            "--clear",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(s.push(&position(IMEI, None)).await.0, 200);

    let out = std::process::Command::new(bin)
        .args([
            "device",
            "secret",
            "--data-dir",
            d,
            "--imei",
            "356938035643809",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));
}
