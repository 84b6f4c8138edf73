//! `ekko integration create` and `ekko device pending` as an operator uses them.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ekko");

fn ekko(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("EKKO_PASSWORD", "long enough pw")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn integration_create_prints_a_secret_once_and_refuses_unknown_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(ekko(
        d,
        &[
            "account",
            "create",
            "--email",
            "ann@example.com",
            "--full-name",
            "Ann",
        ],
    ));
    let secret = ok(ekko(
        d,
        &["integration", "create", "--account", "Ann@Example.com"],
    ));
    let secret = secret.trim();
    assert!(
        secret.starts_with("eki_") && secret.len() == 4 + 16 + 1 + 64,
        "{secret}"
    );
    let again = ok(ekko(
        d,
        &["integration", "create", "--account", "ann@example.com"],
    ));
    assert_ne!(again.trim(), secret, "each integration has its own secret");
    // Only the hash is stored.
    let db = std::fs::read(d.join("ekko.db")).unwrap();
    let wal = std::fs::read(d.join("ekko.db-wal")).unwrap_or_default();
    let needle = secret.as_bytes();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }
    let refused = ekko(
        d,
        &["integration", "create", "--account", "nobody@example.com"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no account with email"));
}

#[test]
fn device_pending_lists_nothing_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = ekko(dir.path(), &["device", "pending"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pending devices"));
}

#[tokio::test]
async fn device_pending_lists_refused_devices_with_protocol_and_attempts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ekko, store) = ekko::server::open_domain(dir.path()).await.unwrap();
        let imei = ekko_core::Imei::parse("490154203237518").unwrap();
        ekko.record_unknown_device(&imei, "osmand").await;
        ekko.record_unknown_device(&imei, "osmand").await;
        store.close().await;
    }
    let out = ok(ekko(dir.path(), &["device", "pending"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("IMEI"));
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cols[0], "490154203237518");
    assert_eq!(cols[1], "osmand");
    assert_eq!(cols.last(), Some(&"2"));
}
