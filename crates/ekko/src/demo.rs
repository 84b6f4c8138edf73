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
/// The demo's second account (an organization of its own), a viewer of the Lyon group.
pub const DEMO_VIEWER_EMAIL: &str = "lyon.dispatch@ekko.example";

/// The demo organization, in a fresh database: `DEMO_EMAIL` (admin) founds "Demo Fleet" with
/// groups Paris > Paris North and Lyon (ids 1 to 4); `count` devices spread over the three
/// subgroups, each named "Van N" and installed in a vehicle of its group; and
/// `DEMO_VIEWER_EMAIL`, a viewer of Lyon. Returns the devices' IMEIs. The README's GraphQL
/// cookbook runs against this data in CI.
pub async fn seed_fleet(
    ekko: &ekko_core::Ekko,
    password: &str,
    count: usize,
) -> Result<Vec<ekko_core::Imei>> {
    use ekko_core::service::fleet::VehicleArgs;
    ekko_connect::accounts::register(ekko, DEMO_EMAIL, password, "Demo Fleet").await?;
    let (me, root) = ekko.act_as(DEMO_EMAIL).await?;
    let me = Some(&me);
    let group = |parent: String, name: &'static str| async move {
        ekko.create_group(me, &parent, name, None)
            .await
            .map(|g| g.id)
    };
    let paris = group(root.to_string(), "Paris").await?;
    let north = group(paris.to_string(), "Paris North").await?;
    let lyon = group(root.to_string(), "Lyon").await?;
    let mut imeis = Vec::new();
    for i in 0..count {
        let imei = imei_with_check_digit(&format!("3598812345{i:04}"))?;
        let home = [north, paris, lyon][i % 3].to_string();
        let name = format!("Van {}", i + 1);
        ekko.add_device(
            me,
            imei.as_str(),
            &home,
            Some(&name),
            Some(&format!("SN-{:05}", i + 1)),
        )
        .await?;
        let vin = format!("VF1KW2R0000{:06}", i + 1);
        let plate = format!("EK-{:03}-KO", i + 1);
        let vehicle = ekko
            .create_vehicle(
                me,
                &home,
                &VehicleArgs {
                    name: Some(&name),
                    vin: Some(&vin),
                    plate: Some(&plate),
                    make: Some("Renault"),
                    model: Some(if i % 2 == 0 {
                        "Kangoo E-Tech"
                    } else {
                        "Master"
                    }),
                    year: Some(2022),
                    fuel_type: Some(if i % 2 == 0 { "electric" } else { "diesel" }),
                },
            )
            .await?;
        ekko.attach_device(me, imei.as_str(), &vehicle.id.to_string())
            .await?;
        imeis.push(imei);
    }
    ekko_connect::accounts::register(ekko, DEMO_VIEWER_EMAIL, password, "Lyon Dispatch").await?;
    ekko.invite(me, &lyon.to_string(), DEMO_VIEWER_EMAIL, "viewer")
        .await?;
    Ok(imeis)
}

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
    // Seed: an organization with groups, devices, vehicles and a second account, through the
    // same domain calls as the API and the CLI.
    let password = random_password();
    let imeis = {
        let (ekko, store) = server::open_domain(&data_dir).await?;
        let seeded = seed_fleet(&ekko, &password, args.vehicles).await;
        store.close().await;
        seeded?
    };

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
  account        : {DEMO_EMAIL}  password: {password}   (admin of the organization)
  second account : {DEMO_VIEWER_EMAIL}  same password   (viewer of the Lyon group)
  groups         : Demo Fleet (1) > Paris (2) > Paris North (3); Demo Fleet (1) > Lyon (4)
  devices        : {devices}   (each installed in a vehicle: `ekko vehicle list`)

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
