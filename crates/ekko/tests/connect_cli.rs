//! Connect as an operator runs it: `ekko keys rotate`, environments side by side, and logs
//! that never contain a password, client secret or token.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_ekko");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ekko(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("EKKO_PASSWORD")
        .env_remove("EKKO_ENVIRONMENT")
        .output()
        .unwrap()
}

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &str, extra: &[&str], log: &str) -> Served {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--osmand-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("EKKO_TELTONIKA_LISTEN", "127.0.0.1:0")
        .env("EKKO_LOG", log)
        .env_remove("EKKO_ENVIRONMENT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Owned by `Served` at once, so that its Drop kills and reaps the process on every path.
    let served = Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return served;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not start");
}

fn create_account(data: &str, env: &str) {
    let o = ekko(&[
        "account",
        "create",
        "--data-dir",
        data,
        "--environment",
        env,
        "--email",
        EMAIL,
        "--password",
        PASSWORD,
        "--full-name",
        FULL_NAME,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

async fn password_token(http: &reqwest::Client, base: &str) -> Value {
    let r = http
        .post(format!("{base}/oauth/token"))
        .json(&json!({"grant_type": "password", "username": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn graphql_status(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/services/ekko/v2/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": "{ account { email } }"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn kid_of(jwt: &str) -> String {
    use base64::Engine;
    let h: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn keys_rotate_adds_a_signing_key_and_tokens_of_the_old_key_keep_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    create_account(d, "production");
    let http = reqwest::Client::new();
    let public_url = format!("http://127.0.0.1:{}", free_port());
    let old_token;
    {
        let s = serve(d, &["--public-url", &public_url], "warn");
        old_token = password_token(&http, &s.base).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let o = ekko(&["keys", "rotate", "--data-dir", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("added signing key"));
    let s = serve(d, &["--public-url", &public_url], "warn");
    let new_token = password_token(&http, &s.base).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(kid_of(&old_token), kid_of(&new_token), "the new key signs");
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(graphql_status(&http, &s.base, &old_token).await.0, 200);
    assert_eq!(graphql_status(&http, &s.base, &new_token).await.0, 200);
}

#[tokio::test]
async fn environments_side_by_side_have_their_own_data_and_refuse_each_others_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    create_account(d, "production");
    create_account(d, "integration");
    assert!(dir.path().join("environments/integration/ekko.db").exists());
    let prod = serve(d, &[], "warn");
    let integ = serve(d, &["--environment", "integration"], "warn");
    let http = reqwest::Client::new();
    let p = password_token(&http, &prod.base).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = password_token(&http, &integ.base).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(kid_of(&p), kid_of(&i), "each environment has its own keys");
    assert_eq!(graphql_status(&http, &prod.base, &p).await.0, 200);
    assert_eq!(graphql_status(&http, &integ.base, &i).await.0, 200);
    let (status, body) = graphql_status(&http, &prod.base, &i).await;
    assert_eq!(status, 401);
    let msg = body["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("'integration' environment") && msg.contains("'production' environment"),
        "{msg}"
    );
    let (status, _) = graphql_status(&http, &integ.base, &p).await;
    assert_eq!(status, 401);
    let disco: Value = http
        .get(format!("{}/.well-known/openid-configuration", integ.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], integ.base.as_str());
}

#[tokio::test]
async fn logs_never_contain_a_password_client_secret_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    create_account(d, "production");
    let mut s = serve(d, &[], "debug");
    let http = reqwest::Client::new();
    let t = password_token(&http, &s.base).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let app: Value = http
        .post(format!("{}/oauth/applications", s.base))
        .bearer_auth(&access)
        .json(&json!({"name": "Logged", "redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    let cc: Value = http
        .post(format!("{}/oauth/token", s.base))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for _ in 0..2 {
        // The second one is a reuse: it is logged as a warning, without the token.
        let _ = http
            .post(format!("{}/oauth/token", s.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .send()
            .await
            .unwrap();
    }
    let _ = http
        .post(format!("{}/oauth/token", s.base))
        .form(&[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", "a wrong password 42"),
        ])
        .send()
        .await
        .unwrap();
    let _ = http
        .post(format!("{}/users/sign_in", s.base))
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let _ = graphql_status(&http, &s.base, &access).await;
    let _ = s.child.kill();
    let mut log = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("DEBUG") || log.contains("INFO"),
        "no log captured: {log}"
    );
    for (what, secret) in [
        ("password", PASSWORD),
        ("wrong password", "a wrong password 42"),
        ("client secret", secret.as_str()),
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("client token", cc["access_token"].as_str().unwrap()),
    ] {
        assert!(!log.contains(secret), "the log contains a {what}");
    }
}
