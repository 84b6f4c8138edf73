//! Wiring: opens the store, loads the signing keys, builds the domain, and serves
//! the main HTTP listener (Connect + GraphQL + Phoenix socket) and the OsmAnd listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use ekko_api::http::{ApiState, GRAPHQL_PATH, SOCKET_PATH};
use ekko_bus::InProcessBus;
use ekko_connect::{SigningKeys, TokenService};
use ekko_core::Ekko;
use ekko_socket::phoenix::{SocketConfig, SocketState};
use ekko_store::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_OSMAND_LISTEN: &str = "127.0.0.1:5055";
pub const DEFAULT_TELTONIKA_LISTEN: &str = "127.0.0.1:5027";
pub const DEFAULT_DATA_DIR: &str = "./ekko-data";

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub osmand_listen: SocketAddr,
    /// Teltonika devices: TCP and UDP on this address and port number.
    pub teltonika_listen: SocketAddr,
    /// The MQTT bridge's broker (`mqtt://host:port[?client_id=ID]`); `None`: no bridge.
    pub mqtt_url: Option<String>,
    /// The `iss` of issued tokens; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    pub socket: SocketConfig,
    /// Silence after which an OsmAnd device is reported disconnected (presence `timeout`).
    pub presence_timeout: Duration,
    /// Connect: environment name, refresh rotation mode, rate limits.
    pub connect: ekko_connect::ConnectConfig,
}

/// Creates the data directory (mode 0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Opens the domain on a data directory (as the admin CLI does, and `serve` too).
pub async fn open_domain(data_dir: &Path) -> Result<(Ekko, SqliteStore)> {
    ensure_data_dir(data_dir)?;
    let is_new = !data_dir.join(ekko_store::sqlite::DB_FILE).exists();
    let store = SqliteStore::open(data_dir)
        .await
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    if is_new {
        // Said out loud: a mistyped --data-dir otherwise looks like a database that lost its data.
        tracing::info!(data_dir = %data_dir.display(), "created a new, empty Ekko database");
    }
    let ekko = Ekko::new(Arc::new(store.clone()), Arc::new(InProcessBus::default()));
    Ok((ekko, store))
}

/// A server that is listening. Dropping the shutdown sender (or sending `true`) stops it.
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub osmand_addr: SocketAddr,
    /// Teltonika TCP, and UDP on the same port number.
    pub teltonika_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: SqliteStore,
    /// Held (locked) while serving: one `serve` per data directory.
    _lock: std::fs::File,
}

impl RunningServer {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            // Open WebSockets are not waited for beyond this.
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.store.close().await;
    }
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": "ok" })),
    )
}

async fn index() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "name": "ekko",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": {
            "token": "/oauth/token",
            "jwks": "/.well-known/jwks.json",
            "graphql": GRAPHQL_PATH,
            "socket": SOCKET_PATH,
            "health": "/healthz",
            "cloudconnect": ekko_gateway::cloudconnect::listener::PATH,
        }
    }))
}

/// Binds both listeners and starts serving. Returns once both are accepting connections.
pub async fn start(opts: ServeOptions) -> Result<RunningServer> {
    jsonwebtoken::crypto::CryptoProvider::try_get_default().context(
        "the JWT crypto provider is not configured (build with exactly one jsonwebtoken backend)",
    )?;
    if let Some(url) = &opts.public_url {
        anyhow::ensure!(
            (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > 8
                && !url.contains(char::is_whitespace),
            "--public-url must be an http:// or https:// URL, got '{url}'"
        );
    }
    ensure_data_dir(&opts.data_dir)?;
    let lock_path = opts.data_dir.join("serve.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another `ekko serve` is already running on the data directory {}",
            opts.data_dir.display()
        )
    })?;
    let (ekko, store) = open_domain(&opts.data_dir).await?;
    let keys = SigningKeys::load_or_create(&opts.data_dir)
        .map_err(anyhow::Error::msg)
        .context("loading the signing keys")?;

    let http = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let osmand = TcpListener::bind(opts.osmand_listen)
        .await
        .with_context(|| format!("listening for OsmAnd devices on {}", opts.osmand_listen))?;
    let http_addr = http.local_addr()?;
    let osmand_addr = osmand.local_addr()?;
    let (teltonika_tcp, teltonika_udp) = ekko_gateway::teltonika::bind(opts.teltonika_listen)
        .await
        .with_context(|| {
            format!(
                "listening for Teltonika devices on {} (TCP and UDP)",
                opts.teltonika_listen
            )
        })?;
    let teltonika_addr = teltonika_tcp.local_addr()?;

    let issuer = opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let tokens = Arc::new(TokenService::new(
        ekko.clone(),
        Arc::new(store.clone()),
        Arc::new(keys),
        issuer,
        opts.connect.clone(),
    ));
    tokens
        .load_revocations()
        .await
        .map_err(|e| anyhow::anyhow!("loading revoked tokens: {e}"))?;
    let schema = ekko_api::build_schema(ekko.clone());
    let socket_state = SocketState {
        schema: schema.clone(),
        tokens: tokens.clone(),
        config: Arc::new(opts.socket.clone()),
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .merge(ekko_connect::http::router(tokens.clone()))
        .merge(
            ekko_api::http::router(ApiState {
                schema: schema.clone(),
                tokens: tokens.clone(),
            })
            // WebSocket upgrades (graphql-transport-ws, graphql-ws) and SSE on the GraphQL path.
            .layer(axum::middleware::from_fn_with_state(
                socket_state.clone(),
                ekko_socket::graphql_path::intercept,
            )),
        )
        .merge(ekko_socket::phoenix::router(socket_state))
        .merge(ekko_gateway::cloudconnect::router(ekko.clone()))
        .layer(CatchPanicLayer::new());
    let presence =
        ekko_gateway::presence::PresenceTracker::new(ekko.clone(), "osmand", opts.presence_timeout);
    let gateway = ekko_gateway::osmand::router(ekko.clone())
        .layer(axum::Extension(presence.clone()))
        .layer(CatchPanicLayer::new());

    let (shutdown, rx) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let t1 = tokio::spawn({
        let rx = rx.clone();
        async move {
            if let Err(e) = axum::serve(
                http,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(signal(rx))
            .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
    });
    let t_teltonika_tcp = tokio::spawn(ekko_gateway::teltonika::tcp::serve(
        teltonika_tcp,
        ekko.clone(),
        signal(rx.clone()),
    ));
    let t_teltonika_udp = tokio::spawn(ekko_gateway::teltonika::udp::serve(
        teltonika_udp,
        ekko.clone(),
        signal(rx.clone()),
    ));
    let t_mqtt = match &opts.mqtt_url {
        Some(url) => {
            let broker = ekko_gateway::mqtt::BrokerConfig::parse(url)
                .map_err(anyhow::Error::msg)
                .context("--mqtt-url")?;
            tracing::info!(host = %broker.host, port = broker.port, "MQTT bridge starting");
            Some(tokio::spawn(ekko_gateway::mqtt::run(
                ekko.clone(),
                broker,
                rx.clone(),
            )))
        }
        None => None,
    };
    let t_presence = tokio::spawn(presence.run(signal(rx.clone())));
    let t2 = tokio::spawn(async move {
        if let Err(e) = axum::serve(osmand, gateway)
            .with_graceful_shutdown(signal(rx))
            .await
        {
            tracing::error!(error = %e, "OsmAnd listener failed");
        }
    });
    tracing::info!(%http_addr, "API listening: POST /oauth/token, {GRAPHQL_PATH}, {SOCKET_PATH}");
    tracing::info!(%osmand_addr, "OsmAnd device listener ready");
    tracing::info!(%teltonika_addr, "Teltonika device listener ready (TCP and UDP)");
    Ok(RunningServer {
        http_addr,
        osmand_addr,
        teltonika_addr,
        shutdown,
        tasks: vec![t_teltonika_tcp, t_teltonika_udp, t1, t2, t_presence]
            .into_iter()
            .chain(t_mqtt)
            .collect(),
        store,
        _lock: lock,
    })
}

/// Serves until `stop` resolves, then shuts down gracefully.
pub async fn serve_until(opts: ServeOptions, stop: impl Future<Output = ()>) -> Result<()> {
    let server = start(opts).await?;
    stop.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
