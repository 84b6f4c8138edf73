//! Benchmark: durable records per second through `POST /ingest/cloudconnect` and through the
//! MQTT bridge.
//!
//! `cargo build --release && cargo run --release -p ekko --example bench_cloudconnect_mqtt --
//! [clients] [batches] [records]` registers 50 devices and an integration in a fresh data
//! directory, starts the release binary (`target/release/ekko serve`, with `--mqtt-url` when a
//! broker answers on 127.0.0.1:1883) on free loopback ports, then:
//! - CloudConnect: `clients` concurrent HTTP clients each post `batches` webhook bodies of
//!   `records` tracks, one request in flight per client; latency = request → 200 (after commit);
//! - MQTT: one publisher sends `clients × batches` messages of `records` records (QoS 1); the
//!   time runs until every record is in the database (the bridge handles one message at a time).
//!
//! The results table is written into `bench/README.md` (between the cloudconnect-mqtt markers).

use std::time::{Duration, Instant};

use base64::Engine;
use ekko::server;
use ekko_core::ids::imei_with_check_digit;
use serde_json::json;

const DEVICES: usize = 50;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn track(imei: &str, ts_ms: i64, i: usize) -> serde_json::Value {
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let t = ekko_core::time::rfc3339(&ekko_core::time::from_unix_ms(ts_ms).unwrap());
    json!({"meta": {"account": "bench", "event": "track"},
           "payload": {"id": i, "id_str": i.to_string(), "asset": imei, "recorded_at": t,
                       "recorded_at_ms": t, "loc": [2.294481 + i as f64 * 1e-6, 48.85837],
                       "fields": {"GPS_SPEED": {"b64_value": b64(&((i % 90_000) as u32).to_be_bytes()[1..])},
                                  "MDI_EXT_BATT_VOLTAGE": {"b64_value": "AAAycg=="},
                                  "DIO_IGNITION": {"b64_value": "AQ=="},
                                  "GPRMC_VALID": {"b64_value": "QQ=="}}}})
}

async fn stored(dir: &std::path::Path, imeis: &[String]) -> anyhow::Result<usize> {
    let (ekko, store) = server::open_domain(dir).await?;
    let mut n = 0;
    for i in imeis {
        n += ekko
            .store()
            .recent_tracks(&ekko_core::Imei::parse(i)?, u32::MAX)
            .await?
            .len();
    }
    store.close().await;
    Ok(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (clients, batches, per_batch) = (arg(1, 8), arg(2, 20), arg(3, 500));
    let dir = tempfile::tempdir()?;
    let mut imeis = Vec::new();
    let secret;
    {
        let (ekko, store) = server::open_domain(dir.path()).await?;
        ekko_connect::accounts::register(&ekko, "bench@example.com", "bench password", "Bench")
            .await?;
        for d in 0..DEVICES {
            let imei = imei_with_check_digit(&format!("35988124{d:06}"))?;
            ekko.create_device(imei.as_str(), "bench@example.com")
                .await?;
            imeis.push(imei.to_string());
        }
        secret = ekko.create_integration("bench@example.com").await?.1;
        store.close().await;
    }
    let free = || -> std::io::Result<std::net::SocketAddr> {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
    };
    let (http, osmand) = (free()?, free()?);
    let broker_up =
        std::net::TcpStream::connect_timeout(&"127.0.0.1:1883".parse()?, Duration::from_secs(1))
            .is_ok();
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ekko");
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &http.to_string()])
        .args(["--osmand-listen", &osmand.to_string()])
        .args(["--teltonika-listen", "127.0.0.1:0"])
        .env("EKKO_LOG", "warn");
    let client_id = format!("ekko-bench-{}", uuid::Uuid::new_v4().simple());
    if broker_up {
        cmd.args([
            "--mqtt-url",
            &format!("mqtt://127.0.0.1:1883?client_id={client_id}"),
        ]);
    }
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "starting {} (cargo build --release first): {e}",
            bin.display()
        )
    })?;
    let web = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while web
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base_ts = ekko_core::time::now_ms().timestamp_millis() - 3_600_000;
    let mut rows = Vec::new();

    // CloudConnect.
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (web, secret, imeis) = (web.clone(), secret.clone(), imeis.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(batches);
                for b in 0..batches {
                    let body: Vec<_> = (0..per_batch)
                        .map(|i| {
                            let n = (c * batches + b) * per_batch + i;
                            track(&imeis[n % DEVICES], base_ts + n as i64, n)
                        })
                        .collect();
                    let t = Instant::now();
                    let r = web
                        .post(format!("http://{http}/ingest/cloudconnect"))
                        .bearer_auth(&secret)
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 200, "answer {}", r.status());
                    latencies.push(t.elapsed());
                }
                Ok::<Vec<Duration>, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let total = clients * batches * per_batch;
    rows.push(format!(
        "| CloudConnect webhook (HTTP) | {clients} clients | {per_batch} | {total} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms |",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    ));

    // MQTT.
    if broker_up {
        tokio::time::sleep(Duration::from_millis(500)).await; // the bridge subscribes
        let before = stored(dir.path(), &imeis).await?;
        let mut o = rumqttc::MqttOptions::new(format!("{client_id}-pub"), "127.0.0.1", 1883);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = rumqttc::AsyncClient::new(o, 1024);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        let messages = clients * batches;
        let started = Instant::now();
        for m in 0..messages {
            let imei = &imeis[m % DEVICES];
            let body: Vec<_> = (0..per_batch)
                .map(|i| {
                    let n = total + m * per_batch + i;
                    json!({"recorded_at": base_ts + n as i64, "lat": 48.85837, "lng": 2.294481,
                           "fields": {"GPS_SPEED": (n % 90_000), "DIO_IGNITION": true}})
                })
                .collect();
            client
                .publish(
                    format!("devices/{imei}/tracks"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&body)?,
                )
                .await?;
        }
        let want = before + messages * per_batch;
        let deadline = Instant::now() + Duration::from_secs(300);
        while stored(dir.path(), &imeis).await? < want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "MQTT records were not all stored"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        rows.push(format!(
            "| MQTT bridge (QoS 1) | 1 publisher | {per_batch} | {} | {:.2} s | {:.0} | n/a | n/a |",
            messages * per_batch,
            elapsed.as_secs_f64(),
            (messages * per_batch) as f64 / elapsed.as_secs_f64(),
        ));
    } else {
        rows.push(
            "| MQTT bridge (QoS 1) | no broker on 127.0.0.1:1883: not measured | | | | | | |"
                .into(),
        );
    }
    let _ = child.kill();
    let _ = child.wait();

    let table = format!(
        "<!-- cloudconnect-mqtt:begin -->\n\
         Durable records/s through `POST /ingest/cloudconnect` and the MQTT bridge \
         (`cargo run --release -p ekko --example bench_cloudconnect_mqtt -- {clients} {batches} {per_batch}`; \
         {DEVICES} devices; consecutive tracks of a request or message committed in one SQLite transaction with \
         `synchronous=FULL` before the answer / PUBACK; the MQTT time runs from the first publish until every \
         record is readable; {} cores).\n\n\
         | path | load | records/request | records | time | records/s | p50 answer | p99 answer |\n\
         |---|---|---|---|---|---|---|---|\n{}\n<!-- cloudconnect-mqtt:end -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rows.join("\n")
    );
    println!("{table}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/README.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let (b, e) = (
        "<!-- cloudconnect-mqtt:begin -->",
        "<!-- cloudconnect-mqtt:end -->\n",
    );
    let new = match (old.find(b), old.find(e)) {
        (Some(a), Some(z)) => format!(
            "{}{table}{}",
            &old[..a],
            &old[(z + e.len()).min(old.len())..]
        ),
        _ => format!("{old}\n## CloudConnect and MQTT\n\n{table}"),
    };
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, new)?;
    Ok(())
}
