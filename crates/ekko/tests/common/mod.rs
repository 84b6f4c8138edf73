//! Test harness: an in-process Ekko server on ephemeral ports with one account and device.
#![allow(dead_code)]

use std::time::Duration;

use ekko::server::{self, RunningServer, ServeOptions};
use ekko_socket::phoenix::SocketConfig;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const EMAIL: &str = "driver.one@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const FULL_NAME: &str = "Driver One";
pub const IMEI: &str = "359881234567899";
pub const OTHER_EMAIL: &str = "other@example.com";
pub const OTHER_IMEI: &str = "356307042441013";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Option<RunningServer>,
    pub base: String,
    pub ws_base: String,
    pub osmand: String,
    /// The Teltonika listener (TCP, and UDP on the same port).
    pub teltonika: std::net::SocketAddr,
    pub http: reqwest::Client,
}

pub async fn start() -> TestServer {
    start_with(SocketConfig::default()).await
}

pub async fn start_with(socket: SocketConfig) -> TestServer {
    start_full(socket, Default::default()).await
}

/// A server with Connect settings (environment, rotation mode, rate limits).
pub async fn start_with_connect(connect: ekko_connect::ConnectConfig) -> TestServer {
    start_full(SocketConfig::default(), connect).await
}

pub async fn start_full(socket: SocketConfig, connect: ekko_connect::ConnectConfig) -> TestServer {
    start_configured(move |o| {
        o.socket = socket;
        o.connect = connect;
    })
    .await
}

/// Starts the test server after `configure` adjusted its options (e.g. `mqtt_url`).
pub async fn start_configured(configure: impl FnOnce(&mut ServeOptions)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ekko, store) = server::open_domain(dir.path()).await.unwrap();
        ekko_connect::accounts::register(&ekko, EMAIL, PASSWORD, FULL_NAME)
            .await
            .unwrap();
        ekko_connect::accounts::register(&ekko, OTHER_EMAIL, PASSWORD, "Someone Else")
            .await
            .unwrap();
        ekko.create_device(IMEI, EMAIL).await.unwrap();
        ekko.create_device(OTHER_IMEI, OTHER_EMAIL).await.unwrap();
        store.close().await;
    }
    let mut opts = ServeOptions {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        osmand_listen: "127.0.0.1:0".parse().unwrap(),
        teltonika_listen: "127.0.0.1:0".parse().unwrap(),
        mqtt_url: None,
        public_url: None,
        socket: SocketConfig::default(),
        presence_timeout: ekko_gateway::presence::DEFAULT_PRESENCE_TIMEOUT,
        connect: Default::default(),
    };
    configure(&mut opts);
    let running = server::start(opts).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    TestServer {
        ws_base: base.replace("http://", "ws://"),
        base,
        osmand: format!("http://{}/", running.osmand_addr),
        teltonika: running.teltonika_addr,
        server: Some(running),
        dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

impl TestServer {
    pub async fn token_response(&self, email: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .json(&json!({"grant_type": "password", "username": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn token(&self) -> String {
        self.token_response(EMAIL).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/services/ekko/v2/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn push(&self, params: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .get(&self.osmand)
            .query(params)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn push_position(&self, imei: &str, lat: f64, lon: f64) -> u16 {
        let (lat, lon) = (lat.to_string(), lon.to_string());
        self.push(&[
            ("id", imei),
            ("lat", &lat),
            ("lon", &lon),
            ("speed", "21.6"),
            ("bearing", "90"),
            ("altitude", "35"),
        ])
        .await
        .0
    }
}

/// Signs arbitrary claims with the server's own key, to forge expired or odd tokens.
pub fn forge(s: &TestServer, claims: Value, header_alg: jsonwebtoken::Algorithm) -> String {
    let keys = ekko_connect::SigningKeys::load_or_create(s.dir.path()).unwrap();
    let mut header = jsonwebtoken::Header::new(header_alg);
    header.kid = Some(keys.current().kid.clone());
    jsonwebtoken::encode(&header, &claims, &keys.current().encoding).unwrap()
}

/// The caller's real token with its lifetime cut to `secs` from now (signed with the server's key).
pub async fn short_lived_token(s: &TestServer, secs: i64) -> String {
    use base64::Engine;
    let token = s.token().await;
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"] = json!(chrono::Utc::now().timestamp() + secs);
    forge(s, claims, jsonwebtoken::Algorithm::RS256)
}

/// Gives a device to another account while the server runs, as `ekko device transfer` does.
pub async fn transfer(s: &TestServer, imei: &str, email: &str) {
    let (ekko, store) = server::open_domain(s.dir.path()).await.unwrap();
    ekko.transfer_device(imei, email).await.unwrap();
    store.close().await;
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(WsMessage::Text(v.to_string().into()))
        .await
        .unwrap();
}

/// The next text frame as JSON (skipping WebSocket control frames).
pub async fn recv(ws: &mut Ws) -> Value {
    recv_within(ws, Duration::from_secs(5))
        .await
        .expect("a frame within 5 s")
}

pub async fn recv_within(ws: &mut Ws, d: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match msg.ok()? {
            WsMessage::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            WsMessage::Close(f) => {
                return Some(
                    json!({"closed": f.map(|f| (u16::from(f.code), f.reason.to_string()))}),
                );
            }
            _ => continue,
        }
    }
}

pub const TRACK_SUBSCRIPTION: &str = r#"subscription($ids: [ID!]!) {
  deviceNotifications(deviceIds: $ids) {
    deviceId
    ... on Track { id recorded_at received_at coordinates { lat lng time } fields { name value coordinates { lat lng time } } }
  }
}"#;

/// A device's stored tracks (newest first, at most 1000), read through a second handle on the
/// server's data directory, as an admin command would.
pub async fn stored_tracks(dir: &std::path::Path, imei: &str) -> Vec<ekko_core::track::Track> {
    let (ekko, store) = server::open_domain(dir).await.unwrap();
    let tracks = ekko
        .store()
        .recent_tracks(&ekko_core::Imei::parse(imei).unwrap(), 1000)
        .await
        .unwrap();
    store.close().await;
    tracks
}
