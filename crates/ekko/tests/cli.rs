//! The `ekko` binary as an operator uses it: admin commands (also while `serve` runs on the
//! same data directory), their error messages and exit codes, and graceful shutdown.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ekko");

fn ekko(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("EKKO_PASSWORD")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn admin_commands_give_clear_errors_and_nonzero_exits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let ok = ekko(&[
        "account",
        "create",
        "--data-dir",
        d,
        "--email",
        "Ann@Example.com",
        "--password",
        "long enough pw",
        "--full-name",
        "Ann",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ann@example.com"));

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "account",
                "create",
                "--data-dir",
                d,
                "--email",
                "ann@example.com",
                "--password",
                "long enough pw",
                "--full-name",
                "A",
            ],
            "already exists",
        ),
        (
            vec![
                "account",
                "create",
                "--data-dir",
                d,
                "--email",
                "bob@example.com",
                "--password",
                "short",
                "--full-name",
                "B",
            ],
            "at least 8",
        ),
        (
            vec![
                "account",
                "create",
                "--data-dir",
                d,
                "--email",
                "not-an-email",
                "--password",
                "long enough pw",
                "--full-name",
                "B",
            ],
            "not an email",
        ),
        (
            vec![
                "device",
                "create",
                "--data-dir",
                d,
                "--imei",
                "12345",
                "--account",
                "ann@example.com",
            ],
            "15 digits",
        ),
        (
            vec![
                "device",
                "create",
                "--data-dir",
                d,
                "--imei",
                "359881234567898",
                "--account",
                "ann@example.com",
            ],
            "check digit",
        ),
        (
            vec![
                "device",
                "create",
                "--data-dir",
                d,
                "--imei",
                "359881234567899",
                "--account",
                "nobody@example.com",
            ],
            "no account",
        ),
    ];
    for (args, expected) in cases {
        let out = ekko(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let ok = ekko(&[
        "device",
        "create",
        "--data-dir",
        d,
        "--imei",
        "359881234567899",
        "--account",
        "ANN@example.com",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let dup = ekko(&[
        "device",
        "create",
        "--data-dir",
        d,
        "--imei",
        "359881234567899",
        "--account",
        "ann@example.com",
    ]);
    assert!(stderr(&dup).contains("already registered"));
}

#[test]
fn admin_commands_work_while_serve_runs_and_serve_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (http, osmand) = (free_port(), free_port());
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            d,
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--osmand-listen",
            &format!("127.0.0.1:{osmand}"),
            "--teltonika-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second `serve` on the same data directory is refused clearly.
    let second = ekko(&[
        "serve",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--osmand-listen",
        "127.0.0.1:0",
        "--teltonika-listen",
        "127.0.0.1:0",
    ]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    let out = ekko(&[
        "account",
        "create",
        "--data-dir",
        d,
        "--email",
        "live@example.com",
        "--password",
        "long enough pw",
        "--full-name",
        "Live",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ekko(&[
        "device",
        "create",
        "--data-dir",
        d,
        "--imei",
        "359881234567899",
        "--account",
        "live@example.com",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_reports_a_busy_port_clearly() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = ekko(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--osmand-listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("listening on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn device_transfer_gives_a_device_to_another_account_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for email in ["ann@example.com", "bob@example.com"] {
        let o = ekko(&[
            "account",
            "create",
            "--data-dir",
            d,
            "--email",
            email,
            "--password",
            "long enough pw",
            "--full-name",
            "Someone",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let imei = "359881234567899";
    let o = ekko(&[
        "device",
        "create",
        "--data-dir",
        d,
        "--imei",
        imei,
        "--account",
        "ann@example.com",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ekko(&[
        "device",
        "transfer",
        "--data-dir",
        d,
        "--imei",
        imei,
        "--account",
        "Bob@Example.com",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("now belongs to bob@example.com"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    for (imei, account, expected) in [
        (imei, "nobody@example.com", "no account"),
        ("356307042441013", "bob@example.com", "not registered"),
        ("12345", "bob@example.com", "IMEI"),
    ] {
        let o = ekko(&[
            "device",
            "transfer",
            "--data-dir",
            d,
            "--imei",
            imei,
            "--account",
            account,
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(expected), "{expected}: {}", stderr(&o));
    }
}

/// `ekko group …` and `ekko vehicle …` act as an account, with exactly its rights.
#[test]
fn group_and_vehicle_commands_act_with_the_accounts_rights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (email, name) in [("boss@example.com", "Boss"), ("temp@example.com", "Temp")] {
        let o = ekko(&[
            "account",
            "create",
            "--data-dir",
            d,
            "--email",
            email,
            "--password",
            "long enough pw",
            "--full-name",
            name,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", d]);
        ekko(&all)
    };
    let out = |o: &Output| {
        assert!(o.status.success(), "{}", stderr(o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let boss = "boss@example.com";
    // Boss founded organization 1 (root group 1); temp founded its own (root group 2).
    let created = out(&run(&[
        "group",
        "create",
        "--account",
        boss,
        "--name",
        "Depot",
    ]));
    assert!(
        created.contains("created group 3 'Depot' under group 1"),
        "{created}"
    );
    let o = run(&[
        "device",
        "create",
        "--imei",
        "359881234567899",
        "--account",
        boss,
    ]);
    out(&o);
    let v = out(&run(&[
        "vehicle",
        "create",
        "--account",
        boss,
        "--group",
        "3",
        "--name",
        "Van 1",
        "--vin",
        "VF1KW2R0000000001",
        "--fuel-type",
        "electric",
    ]));
    assert!(v.contains("created vehicle 1 in group 3"), "{v}");
    let a = out(&run(&[
        "vehicle",
        "attach",
        "--account",
        boss,
        "--device",
        "359881234567899",
        "--vehicle",
        "1",
    ]));
    assert!(a.contains("installed in vehicle 1"), "{a}");
    let list = out(&run(&[
        "vehicle",
        "list",
        "--account",
        boss,
        "--text",
        "van",
    ]));
    assert!(list.contains("VF1KW2R0000000001"), "{list}");

    // Temp sees nothing of Boss's organization until invited, and then only as a viewer.
    let o = run(&["vehicle", "list", "--account", "temp@example.com"]);
    assert!(!out(&o).contains("Van 1"));
    let i = out(&run(&[
        "group",
        "invite",
        "--account",
        boss,
        "--group",
        "3",
        "--email",
        "temp@example.com",
        "--role",
        "viewer",
    ]));
    assert!(i.contains("now holds the role"), "{i}");
    let groups = out(&run(&["group", "list", "--account", "temp@example.com"]));
    assert!(
        groups.contains("viewer") && groups.contains("Depot"),
        "{groups}"
    );
    let refused = run(&[
        "vehicle",
        "detach",
        "--account",
        "temp@example.com",
        "--device",
        "359881234567899",
    ]);
    assert!(!refused.status.success());
    // The device is in the root group, which a viewer of Depot cannot see.
    assert!(
        stderr(&refused).contains("no device"),
        "{}",
        stderr(&refused)
    );
    // The vehicle is in Depot: visible, but only a manager may delete it.
    let seen = out(&run(&["vehicle", "list", "--account", "temp@example.com"]));
    assert!(seen.contains("Van 1"), "{seen}");
    let refused = run(&[
        "vehicle",
        "delete",
        "--account",
        "temp@example.com",
        "--id",
        "1",
    ]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("manager"), "{}", stderr(&refused));
    let refused = run(&[
        "group",
        "delete",
        "--account",
        "temp@example.com",
        "--id",
        "1",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no group 1"),
        "{}",
        stderr(&refused)
    );
    let unknown = run(&["group", "list", "--account", "nobody@example.com"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no account with email"),
        "{}",
        stderr(&unknown)
    );
    out(&run(&[
        "group",
        "revoke",
        "--account",
        boss,
        "--group",
        "3",
        "--email",
        "temp@example.com",
    ]));
    let groups = out(&run(&["group", "list", "--account", "temp@example.com"]));
    assert!(!groups.contains("Depot"), "{groups}");
}

#[test]
fn a_command_on_a_directory_without_a_database_says_it_created_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("mistyped");
    let d = d.to_str().unwrap();
    let first = ekko(&["device", "pending", "--data-dir", d]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("created a new, empty Ekko database"),
        "{}",
        stderr(&first)
    );
    let again = ekko(&["device", "pending", "--data-dir", d]);
    assert!(
        !stderr(&again).contains("created a new"),
        "{}",
        stderr(&again)
    );
}
