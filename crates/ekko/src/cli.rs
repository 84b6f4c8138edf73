//! The command line. Each command is a thin layer over the domain (`ekko_core::Ekko`) or the
//! server wiring; errors print one clear line and exit non-zero.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ekko_core::Imei;

use crate::server::{
    self, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_OSMAND_LISTEN, DEFAULT_TELTONIKA_LISTEN,
    ServeOptions,
};

#[derive(Parser, Debug)]
#[command(
    name = "ekko",
    version,
    about = "Ekko: a self-hostable connected-vehicle cloud (Connect OAuth, ekko v2 GraphQL, live subscriptions, device gateway)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (Connect, GraphQL, Phoenix socket) and the device listeners.
    Serve(ServeArgs),
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Manage groups (the tree devices, vehicles and roles live in) and who holds which role,
    /// acting as an account with exactly its rights.
    Group {
        #[command(subcommand)]
        command: crate::fleet_cli::GroupCommand,
    },
    /// Manage vehicles and which device is installed in which, acting as an account.
    Vehicle {
        #[command(subcommand)]
        command: crate::fleet_cli::VehicleCommand,
    },
    /// Manage integrations: machine callers that push device data (CloudConnect webhook).
    Integration {
        #[command(subcommand)]
        command: IntegrationCommand,
    },
    /// Serve a fresh demo: an account, devices, and simulated vehicles driving through the
    /// OsmAnd listener. Prints credentials and ready-to-paste commands.
    Demo(DemoArgs),
    /// Drive simulated vehicles (routes through Paris, Lyon and Marseille; ignition on while
    /// driving, off at stops; a draining battery) over OsmAnd, Teltonika, CloudConnect or MQTT,
    /// with a progress bar and a summary (reports sent, acknowledged, refused, failed, rate).
    ///
    /// What "acknowledged" means: OsmAnd, Teltonika and CloudConnect acknowledge a report only
    /// after Ekko committed it to disk. MQTT: the broker's PUBACK, i.e. the broker took it;
    /// Ekko's bridge (`serve --mqtt-url`) reads it from the broker and commits it afterwards.
    #[command(verbatim_doc_comment)]
    Simulate(SimulateArgs),
    /// Manage Connect's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Add a new RS256 signing key: it signs new tokens from the server's next start; every
    /// older key keeps verifying the tokens it signed (the JWT's `kid` selects the key).
    Rotate {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DataDir {
    /// The data directory (database and signing keys).
    #[arg(long, env = "EKKO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The environment: `production` (the default; data directly in --data-dir) or another
    /// name such as `integration` (data in <data-dir>/environments/<name>). Each environment
    /// has its own database, signing keys and token issuer; tokens of one are refused by the
    /// others.
    #[arg(long, env = "EKKO_ENVIRONMENT", default_value = ekko_connect::tokens::DEFAULT_ENVIRONMENT, value_parser = crate::environment::parse_name)]
    environment: String,
}

impl DataDir {
    /// The directory of the chosen environment.
    pub(crate) fn dir(&self) -> PathBuf {
        crate::environment::data_dir(&self.data_dir, &self.environment)
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Address of the API (Connect, GraphQL, Phoenix socket).
    #[arg(long, env = "EKKO_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address of the OsmAnd (Traccar Client) device listener.
    #[arg(long, env = "EKKO_OSMAND_LISTEN", default_value = DEFAULT_OSMAND_LISTEN)]
    osmand_listen: SocketAddr,
    /// Address of the Teltonika device listener (TCP and UDP, same port).
    #[arg(long, env = "EKKO_TELTONIKA_LISTEN", default_value = DEFAULT_TELTONIKA_LISTEN)]
    teltonika_listen: SocketAddr,
    /// Bridge an MQTT broker: subscribe to devices/<imei>/tracks (QoS 1, acknowledged after
    /// commit), e.g. mqtt://127.0.0.1:1883 (`?client_id=ID` names the session). Off by default.
    #[arg(long, env = "EKKO_MQTT_URL")]
    mqtt_url: Option<String>,
    /// The public base URL of the API, used as the tokens' issuer (default: http://<listen>).
    #[arg(long, env = "EKKO_PUBLIC_URL")]
    public_url: Option<String>,
    /// Refresh-token rotation: `immediate` (a refresh token works once; presenting it again
    /// revokes its family) or `revoke-on-use` (Doorkeeper's mode: the previous refresh token
    /// stays valid until its successor is used).
    #[arg(long, env = "EKKO_REFRESH_ROTATION", default_value = "immediate", value_parser = ["immediate", "revoke-on-use"])]
    refresh_rotation: String,
    /// Password attempts (token endpoint and sign-in page) allowed per IP address per minute.
    #[arg(long, env = "EKKO_SIGNIN_LIMIT_PER_IP", default_value_t = 600)]
    signin_limit_per_ip: u32,
    /// Password attempts allowed per account per minute.
    #[arg(long, env = "EKKO_SIGNIN_LIMIT_PER_ACCOUNT", default_value_t = 120)]
    signin_limit_per_account: u32,
    /// graphql-transport-ws / graphql-ws: seconds to wait for `connection_init` (close 4408).
    #[arg(long, env = "EKKO_WS_INIT_TIMEOUT", default_value_t = 10)]
    ws_init_timeout: u64,
    /// Send keep-alives (graphql-transport-ws `ping`, legacy `ka`, SSE comments) every this many
    /// seconds. Off by default; never on the Phoenix socket.
    #[arg(long, env = "EKKO_WS_KEEPALIVE")]
    ws_keepalive: Option<u64>,
    /// Seconds of silence after which an OsmAnd device is reported disconnected (Presence
    /// `disconnect`, reason `timeout`).
    #[arg(long, env = "EKKO_PRESENCE_TIMEOUT", default_value_t = 300)]
    presence_timeout: u64,
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account (its password is stored as an argon2id hash).
    Create {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        email: String,
        /// At least 8 characters. Prefer the EKKO_PASSWORD environment variable to keep it out
        /// of the process list.
        #[arg(long, env = "EKKO_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        full_name: String,
    },
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Register a device (by IMEI) for an account.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// The device's 15-digit IMEI.
        #[arg(long)]
        imei: String,
        /// Email of the owning account.
        #[arg(long)]
        account: String,
    },
    /// Give a registered device to another account. Its former owner's live subscriptions
    /// to it end with an error at its next record; works while `serve` runs.
    Transfer {
        #[command(flatten)]
        data: DataDir,
        /// The device's 15-digit IMEI.
        #[arg(long)]
        imei: String,
        /// Email of the new owner.
        #[arg(long)]
        account: String,
    },
    /// Give a device a secret (printed once; Ekko keeps only its hash). From then on its
    /// OsmAnd reports must carry `key=<secret>` in the URL, or get 401. `--clear` removes it.
    Secret {
        #[command(flatten)]
        data: DataDir,
        /// The device's 15-digit IMEI.
        #[arg(long)]
        imei: String,
        /// Remove the device's secret instead (it is identified by its IMEI alone again).
        #[arg(long)]
        clear: bool,
    },
    /// List unknown devices that tried to send data (IMEI, protocol, first/last seen,
    /// attempts), for an admin to claim with `ekko device create`.
    Pending {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand, Debug)]
enum IntegrationCommand {
    /// Create an integration for an account and print its secret (shown once), to send as
    /// `Authorization: Bearer <secret>` to POST /ingest/cloudconnect.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// Email of the account whose devices the integration may push data for.
        #[arg(long)]
        account: String,
    },
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo's data here (default: a fresh temporary directory, removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[arg(long, default_value = DEFAULT_OSMAND_LISTEN)]
    pub osmand_listen: SocketAddr,
    /// Teltonika listener (TCP and UDP).
    #[arg(long, default_value = DEFAULT_TELTONIKA_LISTEN)]
    pub teltonika_listen: SocketAddr,
    /// How many simulated vehicles.
    #[arg(long, default_value_t = 5)]
    pub vehicles: usize,
    /// Seconds between two reports of one vehicle.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// The device protocol to report through.
    #[arg(long, value_enum, default_value_t = SimulateProtocol::Osmand)]
    protocol: SimulateProtocol,
    /// Base URL of the OsmAnd listener (--protocol osmand).
    #[arg(long, default_value = "http://127.0.0.1:5055")]
    osmand_url: String,
    /// Address of the Teltonika listener (--protocol teltonika: Codec 8 over TCP).
    #[arg(long, default_value = DEFAULT_TELTONIKA_LISTEN)]
    teltonika_addr: SocketAddr,
    /// The CloudConnect webhook endpoint (--protocol cloudconnect): each round is one POST of
    /// a JSON array of `track` events, one per vehicle.
    #[arg(long, default_value = "http://127.0.0.1:4000/ingest/cloudconnect")]
    cloudconnect_url: String,
    /// The integration's secret, sent as `Authorization: Bearer <secret>` (--protocol
    /// cloudconnect, required; `ekko integration create` prints one). Prefer the environment
    /// variable to keep it out of the process list.
    #[arg(long, env = "EKKO_INTEGRATION_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The MQTT broker (--protocol mqtt): each report is published with QoS 1 to
    /// devices/<imei>/tracks; `?client_id=ID` names the session (default: a fresh
    /// ekko-simulate-… id). Acknowledged = the broker's PUBACK; Ekko's bridge commits the
    /// records afterwards.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// IMEIs of registered devices to drive (repeat the flag, or separate with commas).
    #[arg(long, value_delimiter = ',', required = true)]
    imei: Vec<String>,
    /// Seconds between two reports of one vehicle.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Stop after this many reports per vehicle (default: run until Ctrl-C).
    #[arg(long)]
    rounds: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SimulateProtocol {
    /// HTTP GET to the OsmAnd listener, like the Traccar Client app (--osmand-url).
    Osmand,
    /// A Teltonika tracker: one TCP connection per vehicle, IMEI handshake, one Codec 8 packet
    /// per report (--teltonika-addr).
    Teltonika,
    /// Munic's CloudConnect webhook: one POST of `track` events per round (--cloudconnect-url,
    /// --secret).
    Cloudconnect,
    /// QoS 1 publishes to devices/<imei>/tracks on a broker (--mqtt-url); acknowledged = the
    /// broker's PUBACK.
    Mqtt,
}

fn interval(secs: f64) -> Result<Duration> {
    anyhow::ensure!(
        secs.is_finite() && secs >= 0.01,
        "--interval must be at least 0.01 seconds"
    );
    Ok(Duration::from_secs_f64(secs))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EKKO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn a clean error into a panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve(a) => {
            let opts = ServeOptions {
                data_dir: a.data.dir(),
                listen: a.listen,
                osmand_listen: a.osmand_listen,
                teltonika_listen: a.teltonika_listen,
                mqtt_url: a.mqtt_url,
                public_url: a.public_url,
                socket: ekko_socket::phoenix::SocketConfig {
                    init_timeout: std::time::Duration::from_secs(a.ws_init_timeout),
                    keepalive: a.ws_keepalive.map(std::time::Duration::from_secs),
                    ..Default::default()
                },
                presence_timeout: std::time::Duration::from_secs(a.presence_timeout),
                connect: ekko_connect::ConnectConfig {
                    environment: a.data.environment.clone(),
                    rotation: if a.refresh_rotation == "revoke-on-use" {
                        ekko_core::oauth::RotationMode::RevokeOnUse
                    } else {
                        ekko_core::oauth::RotationMode::Immediate
                    },
                    limits: ekko_connect::limits::LimitConfig {
                        per_ip: a.signin_limit_per_ip,
                        per_account: a.signin_limit_per_account,
                        ..Default::default()
                    },
                },
            };
            server::serve_until(opts, server::shutdown_signal()).await
        }
        Command::Account {
            command:
                AccountCommand::Create {
                    data,
                    email,
                    password,
                    full_name,
                },
        } => {
            let (ekko, store) = server::open_domain(&data.dir()).await?;
            let result =
                ekko_connect::accounts::register(&ekko, &email, &password, &full_name).await;
            store.close().await;
            let account = result?;
            println!("created account {} (uid {})", account.email, account.id);
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Create {
                    data,
                    imei,
                    account,
                },
        } => {
            let (ekko, store) = server::open_domain(&data.dir()).await?;
            let result = ekko.create_device(&imei, &account).await;
            store.close().await;
            let device = result?;
            println!(
                "registered device {} for {}",
                device.imei,
                account.trim().to_lowercase()
            );
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Transfer {
                    data,
                    imei,
                    account,
                },
        } => {
            let (ekko, store) = server::open_domain(&data.dir()).await?;
            let result = ekko.transfer_device(&imei, &account).await;
            store.close().await;
            let (device, changed) = result?;
            if changed {
                println!(
                    "device {} now belongs to {}",
                    device.imei,
                    account.trim().to_lowercase()
                );
            } else {
                println!(
                    "device {} already belongs to {}: nothing changed",
                    device.imei,
                    account.trim().to_lowercase()
                );
            }
            Ok(())
        }
        Command::Device {
            command: DeviceCommand::Secret { data, imei, clear },
        } => {
            let (ekko, store) = server::open_domain(&data.dir()).await?;
            let result = if clear {
                ekko.clear_device_secret(&imei).await.map(|()| None)
            } else {
                ekko.set_device_secret(&imei).await.map(Some)
            };
            store.close().await;
            match result? {
                Some(secret) => {
                    eprintln!(
                        "device {} now needs this secret (shown once): add key=<secret> to its OsmAnd URL",
                        imei.trim()
                    );
                    println!("{secret}");
                }
                None => eprintln!("device {} has no secret any more", imei.trim()),
            }
            Ok(())
        }
        Command::Device {
            command: DeviceCommand::Pending { data },
        } => crate::admin::device_pending(&data.dir()).await,
        Command::Integration {
            command: IntegrationCommand::Create { data, account },
        } => crate::admin::integration_create(&data.dir(), &account).await,
        Command::Group { command } => crate::fleet_cli::group(command).await,
        Command::Vehicle { command } => crate::fleet_cli::vehicle(command).await,
        Command::Demo(a) => crate::demo::run(a).await,
        Command::Keys {
            command: KeysCommand::Rotate { data },
        } => {
            let dir = data.dir();
            server::ensure_data_dir(&dir)?;
            let path = ekko_connect::keys::generate_key_file(&dir)
                .map_err(anyhow::Error::msg)
                .context("adding a signing key")?;
            println!(
                "added signing key {} ({}); it signs new tokens after the server restarts, older keys keep verifying",
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default(),
                path.display()
            );
            Ok(())
        }
        Command::Simulate(a) => {
            let devices = a
                .imei
                .iter()
                .map(|i| Imei::parse(i))
                .collect::<Result<Vec<_>, _>>()
                .context("--imei")?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                server::shutdown_signal().await;
                let _ = tx.send(true);
            });
            let opts = crate::simulator::SimulateOptions {
                osmand_url: a.osmand_url,
                devices,
                interval: interval(a.interval)?,
                rounds: a.rounds,
                progress: true,
                protocol: match a.protocol {
                    SimulateProtocol::Osmand => crate::simulator::Protocol::Osmand,
                    SimulateProtocol::Teltonika => {
                        crate::simulator::Protocol::Teltonika(a.teltonika_addr)
                    }
                    SimulateProtocol::Cloudconnect => {
                        let secret = a
                            .secret
                            .filter(|s| !s.trim().is_empty())
                            .context(
                                "--protocol cloudconnect needs the integration's secret: --secret SECRET \
                                 or EKKO_INTEGRATION_SECRET (`ekko integration create --account EMAIL` prints one)",
                            )?;
                        crate::simulator::Protocol::CloudConnect(
                            crate::simulator::cloudconnect::Target {
                                url: a.cloudconnect_url,
                                secret: secret.trim().to_owned(),
                            },
                        )
                    }
                    SimulateProtocol::Mqtt => crate::simulator::Protocol::Mqtt(a.mqtt_url),
                },
            };
            let summary = crate::simulator::run(opts, rx).await?;
            println!("{summary}");
            anyhow::ensure!(
                summary.failed == 0 && summary.refused == 0,
                "some reports were not acknowledged"
            );
            Ok(())
        }
    }
}

pub(crate) fn demo_interval(secs: f64) -> Result<Duration> {
    interval(secs)
}
