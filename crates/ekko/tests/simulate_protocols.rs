//! `ekko simulate` over CloudConnect and MQTT, end to end: an in-process server with an account,
//! devices and an integration; the simulator drives vehicles for a few rounds; the tracks are
//! in the store and the summary's counts match. The MQTT test needs a broker on
//! 127.0.0.1:1883 (Mosquitto) and is skipped, with a message, when none listens there.

mod common;

use std::time::Duration;

use common::{EMAIL, OTHER_EMAIL, TestServer};
use ekko::simulator::{Protocol, SimulateOptions, Summary, cloudconnect::Target, run};
use ekko_core::Imei;
use ekko_core::fields::FieldValue;
use ekko_core::ids::imei_with_check_digit;
use ekko_core::track::Track;

const BROKER: &str = "127.0.0.1:1883";

/// A fresh, valid IMEI: tests that share the broker never see each other's devices.
fn fresh_imei() -> Imei {
    let n = rand::random::<u64>() % 1_000_000_000_000;
    imei_with_check_digit(&format!("35{n:012}")).unwrap()
}

/// Registers `n` fresh devices for `email`.
async fn devices(t: &TestServer, email: &str, n: usize) -> Vec<Imei> {
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    let mut imeis = Vec::new();
    for _ in 0..n {
        let imei = fresh_imei();
        ekko.create_device(imei.as_str(), email).await.unwrap();
        imeis.push(imei);
    }
    store.close().await;
    imeis
}

async fn integration_secret(t: &TestServer, email: &str) -> String {
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    let (_, secret) = ekko.create_integration(email).await.unwrap();
    store.close().await;
    secret
}

async fn tracks_of(t: &TestServer, imei: &Imei) -> Vec<Track> {
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    // The store answers newest first; the assertions read oldest first.
    let mut tracks = ekko.store().recent_tracks(imei, 100).await.unwrap();
    store.close().await;
    tracks.reverse();
    tracks
}

async fn simulate(devices: &[Imei], rounds: u64, protocol: Protocol) -> Summary {
    let (_stop, stop) = tokio::sync::watch::channel(false);
    run(
        SimulateOptions {
            osmand_url: String::new(),
            devices: devices.to_vec(),
            interval: Duration::from_millis(20),
            rounds: Some(rounds),
            progress: false,
            protocol,
        },
        stop,
    )
    .await
    .unwrap()
}

fn counts(s: &Summary) -> (u64, u64, u64, u64) {
    (s.sent, s.acked, s.refused, s.failed)
}

fn value<'a>(track: &'a Track, name: &str) -> &'a FieldValue {
    &track
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} in {:?}", track.fields))
        .value
}

/// Every stored track is a plausible position with Munic-typed fields.
fn assert_plausible(tracks: &[Track]) {
    for t in tracks {
        let c = t.coordinates.expect("a fix");
        assert!(
            (43.0..49.0).contains(&c.lat) && (2.0..6.0).contains(&c.lng),
            "{c:?}"
        );
        assert!(matches!(value(t, "GPS_SPEED"), FieldValue::Int(v) if *v >= 0));
        assert!(matches!(value(t, "GPS_DIR"), FieldValue::Int(v) if (0..36000).contains(v)));
        assert!(matches!(value(t, "DIO_IGNITION"), FieldValue::Bool(_)));
        assert_eq!(value(t, "GPRMC_VALID"), &FieldValue::Text("A".into()));
    }
    // Oldest first, one per round, each with its own time.
    assert!(
        tracks
            .windows(2)
            .all(|w| w[0].recorded_at < w[1].recorded_at)
    );
}

#[tokio::test]
async fn the_simulator_posts_cloudconnect_batches_and_every_event_is_stored() {
    let t = common::start().await;
    let imeis = devices(&t, EMAIL, 3).await;
    let secret = integration_secret(&t, EMAIL).await;
    let url = format!("{}/ingest/cloudconnect", t.base);
    let summary = simulate(
        &imeis,
        4,
        Protocol::CloudConnect(Target {
            url: url.clone(),
            secret,
        }),
    )
    .await;
    assert_eq!(counts(&summary), (12, 12, 0, 0), "{summary}");
    assert!(!summary.broker_acks);
    for imei in &imeis {
        let tracks = tracks_of(&t, imei).await;
        assert_eq!(tracks.len(), 4, "{imei}");
        assert_plausible(&tracks);
        for tr in &tracks {
            // Decoded by the field dictionary: integers, not base64 text.
            assert!(
                matches!(value(tr, "MDI_EXT_BATT_VOLTAGE"), FieldValue::Int(mv) if (11_000..15_000).contains(mv))
            );
            assert!(
                matches!(value(tr, "BATT_VOLT"), FieldValue::Int(mv) if (3_400..=4_200).contains(mv))
            );
        }
    }
}

#[tokio::test]
async fn cloudconnect_refusals_are_counted_and_nothing_is_stored() {
    let t = common::start().await;
    let mine = devices(&t, EMAIL, 2).await;
    let foreign = devices(&t, OTHER_EMAIL, 1).await;
    let secret = integration_secret(&t, EMAIL).await;
    let url = format!("{}/ingest/cloudconnect", t.base);

    // A wrong secret: 401 for every round.
    let wrong = simulate(
        &mine,
        2,
        Protocol::CloudConnect(Target {
            url: url.clone(),
            secret: "eki_not_a_real_secret".into(),
        }),
    )
    .await;
    assert_eq!(counts(&wrong), (4, 0, 4, 0), "{wrong}");

    // One device of another account in the batch: 403, and the whole batch is refused.
    let mut mixed = mine.clone();
    mixed.extend(foreign.iter().cloned());
    let refused = simulate(
        &mixed,
        2,
        Protocol::CloudConnect(Target {
            url: url.clone(),
            secret: secret.clone(),
        }),
    )
    .await;
    assert_eq!(counts(&refused), (6, 0, 6, 0), "{refused}");
    for imei in &mixed {
        assert!(tracks_of(&t, imei).await.is_empty(), "{imei}");
    }

    // A URL that is not the ingest endpoint: never counted as acknowledged.
    let elsewhere = simulate(
        &mine,
        1,
        Protocol::CloudConnect(Target {
            url: format!("{}/healthz", t.base),
            secret,
        }),
    )
    .await;
    assert_eq!(elsewhere.acked, 0, "{elsewhere}");
    assert_eq!(elsewhere.refused + elsewhere.failed, 2, "{elsewhere}");
}

#[test]
fn the_cli_says_cloudconnect_needs_a_secret() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ekko"))
        .args([
            "simulate",
            "--protocol",
            "cloudconnect",
            "--imei",
            common::IMEI,
            "--rounds",
            "1",
        ])
        .env_remove("EKKO_INTEGRATION_SECRET")
        .env("EKKO_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--secret") && stderr.contains("EKKO_INTEGRATION_SECRET"),
        "{stderr}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ekko"))
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["cloudconnect", "mqtt", "--secret", "--mqtt-url", "PUBACK"] {
        assert!(help.contains(word), "{word} in {help}");
    }
}

fn broker_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(&BROKER.parse().unwrap(), Duration::from_secs(1))
        .is_ok();
    if !up {
        eprintln!("SKIPPED: no MQTT broker on {BROKER} (start Mosquitto to run this test)");
    }
    up
}

/// Polls `check` until it holds, up to 15 s.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn the_simulator_publishes_over_mqtt_and_the_bridge_stores_every_report() {
    if !broker_up() {
        return;
    }
    let client_id = format!("ekko-test-{}", uuid::Uuid::new_v4().simple());
    let t = common::start_configured(move |o| {
        o.mqtt_url = Some(format!("mqtt://{BROKER}?client_id={client_id}"))
    })
    .await;
    let imeis = devices(&t, EMAIL, 2).await;
    // The bridge subscribes asynchronously: a probe device's record is stored once it has.
    let probe = devices(&t, EMAIL, 1).await;
    let url = format!("mqtt://{BROKER}");
    let (server, probe_devices) = (&t, &probe);
    let bridged = eventually(|| {
        let (t, probe, url) = (server, probe_devices, url.clone());
        async move {
            simulate(probe, 1, Protocol::Mqtt(url)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            !tracks_of(t, &probe[0]).await.is_empty()
        }
    })
    .await;
    assert!(bridged, "the bridge subscribed");

    let summary = simulate(&imeis, 3, Protocol::Mqtt(url)).await;
    assert_eq!(counts(&summary), (6, 6, 0, 0), "{summary}");
    assert!(summary.broker_acks);
    assert!(
        summary.to_string().contains("taken by the broker"),
        "{summary}"
    );
    // Acknowledged by the broker; the bridge commits them right after.
    for imei in &imeis {
        let dir = t.dir.path().to_path_buf();
        let stored = eventually(|| {
            let (dir, imei) = (dir.clone(), imei.clone());
            async move {
                let (ekko, store) = ekko::server::open_domain(&dir).await.unwrap();
                let n = ekko.store().recent_tracks(&imei, 100).await.unwrap().len();
                store.close().await;
                n == 3
            }
        })
        .await;
        assert!(stored, "3 tracks of {imei}");
        let tracks = tracks_of(&t, imei).await;
        assert_plausible(&tracks);
        for tr in &tracks {
            assert!(matches!(value(tr, "BATT_LEVEL"), FieldValue::Int(p) if (0..=100).contains(p)));
        }
    }
}
