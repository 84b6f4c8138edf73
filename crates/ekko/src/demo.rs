//! `ekko demo`: a fresh data directory, a demo account, several devices, the server, and
//! simulated vehicles reporting through the OsmAnd listener (the real ingestion path).

use anyhow::{Context, Result};
use ekko_core::ids::imei_with_check_digit;
use rand::Rng;
use tokio::sync::watch;

use crate::cli::DemoArgs;
use crate::server::{self, ServeOptions};
use crate::simulator::{self, SimulateOptions};

pub const DEMO_EMAIL: &str = "demo@ekko.example";

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub async fn run(args: DemoArgs) -> Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.vehicles),
        "--vehicles must be between 1 and 1000"
    );
    let interval = crate::cli::demo_interval(args.interval)?;
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => {
            anyhow::ensure!(
                !d.join(ekko_store::sqlite::DB_FILE).exists(),
                "{} already holds Ekko data; the demo needs a fresh directory",
                d.display()
            );
            d.clone()
        }
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };

    // The temporary directory holds a private key and a database: remove it however the demo
    // ends, including a failed start (a port in use, say).
    let result = serve_demo(&args, &data_dir, interval).await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

async fn serve_demo(
    args: &DemoArgs,
    data_dir: &std::path::Path,
    interval: std::time::Duration,
) -> Result<()> {
    let data_dir = data_dir.to_path_buf();
    // Seed: one account and its devices, through the same domain calls as the CLI.
    let password = random_password();
    let mut imeis = Vec::new();
    {
        let (ekko, store) = server::open_domain(&data_dir).await?;
        ekko_connect::accounts::register(&ekko, DEMO_EMAIL, &password, "Demo Driver").await?;
        for i in 0..args.vehicles {
            let imei = imei_with_check_digit(&format!("3598812345{i:04}"))?;
            ekko.create_device(imei.as_str(), DEMO_EMAIL).await?;
            imeis.push(imei);
        }
        store.close().await;
    }

    let opts = ServeOptions {
        data_dir: data_dir.clone(),
        listen: args.listen,
        osmand_listen: args.osmand_listen,
        teltonika_listen: args.teltonika_listen,
        mqtt_url: None,
        public_url: None,
        socket: Default::default(),
        presence_timeout: ekko_gateway::presence::DEFAULT_PRESENCE_TIMEOUT,
        connect: Default::default(),
    };
    let running = server::start(opts).await?;
    let base = format!("http://{}", running.http_addr);
    let first = &imeis[0];
    println!(
        r#"
Ekko demo is running.
  data directory : {data}
  API            : {base}   (GraphQL editor: {base}/services/ekko/v2/graphql)
  OsmAnd listener: http://{osmand}
  account        : {DEMO_EMAIL}  password: {password}
  devices        : {devices}

Get a token:
  curl -s {base}/oauth/token -H 'Content-Type: application/json' \
    -d '{{"grant_type":"password","username":"{DEMO_EMAIL}","password":"{password}"}}'

Then query (paste the access_token):
  curl -s {base}/services/ekko/v2/graphql -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{{"query":"{{ account(id: \"me\") {{ full_name email }} }}"}}'

Subscribe to live tracks of {first} over {ws}/services/ekko/v2/socket/websocket (see README).
Press Ctrl-C to stop.
"#,
        data = data_dir.display(),
        osmand = running.osmand_addr,
        devices = imeis
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        ws = base.replace("http://", "ws://"),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let sim = tokio::spawn(simulator::run(
        SimulateOptions {
            osmand_url: format!("http://{}/", running.osmand_addr),
            devices: imeis,
            interval,
            rounds: None,
            progress: false,
            protocol: Default::default(),
        },
        stop_rx,
    ));
    server::shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Ok(Ok(summary)) = sim.await {
        println!("simulator: {summary}");
    }
    running.stop().await;
    Ok(())
}

/// A fresh, private temporary directory (removed by `run` on exit).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ekko-demo-{}-{:08x}",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    server::ensure_data_dir(&dir).context("creating the demo directory")?;
    Ok(dir)
}
