//! Durability under crashes: `ekko serve` (the release binary, as a child process) takes many
//! concurrent OsmAnd reports and is killed with SIGKILL at random moments, 20 times; after each
//! restart, and at the end, every report it acknowledged (HTTP 200) must be in the database.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekko_core::Imei;
use ekko_core::fields::FieldValue;

const BIN: &str = env!("CARGO_BIN_EXE_ekko");
const IMEI: &str = "359881234567899";
const ROUNDS: usize = 20;
const SENDERS: usize = 16;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn admin(dir: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("EKKO_PASSWORD", "crash test password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(dir: &Path, api: u16, osmand: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--osmand-listen", &format!("127.0.0.1:{osmand}")])
        .args(["--teltonika-listen", "127.0.0.1:0"])
        .env("EKKO_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(http: &reqwest::Client, api: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{api}/healthz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server exited on start"
        );
        assert!(
            Instant::now() < deadline,
            "the server did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sequence numbers of every stored record (the `SEQ` extra parameter).
async fn stored_sequences(dir: &Path) -> BTreeSet<i64> {
    let (ekko, store) = ekko::server::open_domain(dir).await.unwrap();
    let tracks = ekko
        .store()
        .recent_tracks(&Imei::parse(IMEI).unwrap(), u32::MAX)
        .await
        .unwrap();
    store.close().await;
    tracks
        .iter()
        .flat_map(|t| t.fields.iter())
        .filter(|f| f.name == "SEQ")
        .filter_map(|f| match &f.value {
            FieldValue::Int(i) => Some(*i),
            FieldValue::Text(s) => s.parse().ok(),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_record_is_lost_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    admin(
        dir.path(),
        &[
            "account",
            "create",
            "--email",
            "crash@example.com",
            "--full-name",
            "Crash",
        ],
    );
    admin(
        dir.path(),
        &[
            "device",
            "create",
            "--imei",
            IMEI,
            "--account",
            "crash@example.com",
        ],
    );
    let (api, osmand) = (free_port(), free_port());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let next_seq = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let base_ms = 1_700_000_000_000i64;
    let mut kills_during_ingest = 0;

    for round in 0..ROUNDS {
        let mut child = serve(dir.path(), api, osmand);
        wait_healthy(&http, api, &mut child).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            let (http, acked, next_seq, stop) =
                (http.clone(), acked.clone(), next_seq.clone(), stop.clone());
            senders.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seq = next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (s, ts) = (seq.to_string(), (base_ms + seq).to_string());
                    let r = http
                        .get(format!("http://127.0.0.1:{osmand}/"))
                        .query(&[
                            ("id", IMEI),
                            ("lat", "48.85837"),
                            ("lon", "2.294481"),
                            ("timestamp", &ts),
                            ("seq", &s),
                        ])
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(seq);
                        }
                        // Refused or cut off: not acknowledged, so nothing is promised.
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        // Kill at a random moment while the senders are busy.
        let before = acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(fastrand_ms(round))).await;
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        if acked.lock().unwrap().len() > before {
            kills_during_ingest += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
        // After each crash: everything acknowledged so far is on disk.
        let stored = stored_sequences(dir.path()).await;
        let acked_now = acked.lock().unwrap().clone();
        let lost: Vec<_> = acked_now.difference(&stored).take(10).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost after SIGKILL: {lost:?}"
        );
    }
    let total = acked.lock().unwrap().len();
    eprintln!(
        "{ROUNDS} SIGKILLs ({kills_during_ingest} during ingestion): {total} acknowledged records, none lost"
    );
    assert!(
        total > ROUNDS * 10,
        "enough records were acknowledged ({total})"
    );
    assert!(
        kills_during_ingest >= ROUNDS / 2,
        "most kills happened during ingestion ({kills_during_ingest}/{ROUNDS})"
    );
}

/// A pseudo-random delay in 50..450 ms, different each round (no extra dependency).
fn fastrand_ms(round: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    50 + (nanos ^ (round as u64).wrapping_mul(0x9E37_79B9)) % 400
}
