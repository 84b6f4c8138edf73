//! Benchmark: durable records per second through the Teltonika TCP listener, and the latency
//! from sending a packet to receiving its acknowledgement (which follows the commit).
//!
//! `cargo build --release && cargo run --release -p ekko --example bench_teltonika -- [devices]
//! [packets] [records] [runs]` registers `devices` devices in a fresh data directory, starts the release
//! binary (`target/release/ekko serve`) on free loopback ports, and has
//! each send `packets` Codec 8 packets of `records` records over its own connection, one packet
//! in flight at a time (as a real device does). The whole measurement is repeated `runs` times
//! (a fresh database and server each time); the runs with the median and the best rate are shown,
//! with the CPU time of the server and of this load generator. The results table is written into
//! `bench/README.md` (between the Teltonika markers) and printed.

use std::time::{Duration, Instant};

use ekko::server;
use ekko_core::ids::imei_with_check_digit;
use ekko_gateway::teltonika::codec::{self, AvlRecord, IoElement, IoValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn record(ts_ms: u64, i: u64) -> AvlRecord {
    AvlRecord {
        timestamp_ms: ts_ms,
        priority: 0,
        longitude: 22_944_810 + i as i32,
        latitude: 488_583_700 + i as i32,
        altitude: 35,
        angle: (i % 360) as u16,
        satellites: 9,
        speed_kmh: (i % 90) as u16,
        event_io: 0,
        generation: None,
        io: vec![
            IoElement {
                id: 239,
                value: IoValue::U8(1),
            },
            IoElement {
                id: 66,
                value: IoValue::U16(12_800),
            },
            IoElement {
                id: 16,
                value: IoValue::U32(i as u32),
            },
        ],
    }
}

/// CPU seconds (user + system) used so far by process or thread `pid` ("self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds per thread name of process `pid` (e.g. the SQLite worker, tokio's workers).
fn cpu_by_thread(pid: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by = std::collections::BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let tid = t.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            *by.entry(name).or_insert(0.0) += cpu_seconds(&format!("{pid}/task/{tid}"));
        }
    }
    by
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// One measured run, on a fresh data directory and server.
struct Run {
    rate: f64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu: f64,
    load_cpu: f64,
}

async fn run(devices: usize, packets: usize, per_packet: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let mut imeis = Vec::new();
    {
        let (ekko, store) = server::open_domain(dir.path()).await?;
        ekko_connect::accounts::register(&ekko, "bench@example.com", "bench password", "Bench")
            .await?;
        for d in 0..devices {
            let imei = imei_with_check_digit(&format!("35988123{d:06}"))?;
            ekko.create_device(imei.as_str(), "bench@example.com")
                .await?;
            imeis.push(imei.to_string());
        }
        store.close().await;
    }
    let free = || -> std::io::Result<std::net::SocketAddr> {
        let t = std::net::TcpListener::bind("127.0.0.1:0")?;
        let a = t.local_addr()?;
        std::net::UdpSocket::bind(a)?;
        Ok(a)
    };
    let (http, osmand, addr) = (free()?, free()?, free()?);
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ekko");
    let mut child = std::process::Command::new(&bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen",
            &http.to_string(),
            "--osmand-listen",
            &osmand.to_string(),
        ])
        .args(["--teltonika-listen", &addr.to_string()])
        .env("EKKO_LOG", "warn")
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting {} (cargo build --release first): {e}",
                bin.display()
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let base_ts = ekko_core::time::now_ms().timestamp_millis() as u64;
    let (server0, load0, threads0) = (cpu_seconds(&pid), cpu_seconds("self"), cpu_by_thread(&pid));
    let started = Instant::now();
    let tasks: Vec<_> = imeis
        .into_iter()
        .map(|imei| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                s.write_all(&codec::encode_imei(&imei)).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                anyhow::ensure!(b[0] == 1, "device refused");
                let mut latencies = Vec::with_capacity(packets);
                for p in 0..packets {
                    let recs: Vec<AvlRecord> = (0..per_packet)
                        .map(|i| {
                            let n = (p * per_packet + i) as u64;
                            record(base_ts - 3_600_000 + n * 10, n)
                        })
                        .collect();
                    let frame = codec::encode_tcp_frame(&codec::encode_codec8_data(&recs));
                    let t = Instant::now();
                    s.write_all(&frame).await?;
                    let mut ack = [0u8; 4];
                    s.read_exact(&mut ack).await?;
                    latencies.push(t.elapsed());
                    anyhow::ensure!(u32::from_be_bytes(ack) as usize == per_packet, "short ack");
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
    let secs = elapsed.as_secs_f64();
    let server_cpu = 100.0 * (cpu_seconds(&pid) - server0) / secs;
    let load_cpu = 100.0 * (cpu_seconds("self") - load0) / secs;
    // Where the server's CPU went, per thread name (diagnostic, not in the table).
    for (name, cpu) in cpu_by_thread(&pid) {
        let before = threads0.get(&name).copied().unwrap_or(0.0);
        eprintln!(
            "server thread {name}: {:.0}% of a core",
            100.0 * (cpu - before) / secs
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let total = devices * packets * per_packet;
    Ok(Run {
        rate: total as f64 / secs,
        secs,
        p50_ms: pct(0.5).as_secs_f64() * 1000.0,
        p99_ms: pct(0.99).as_secs_f64() * 1000.0,
        server_cpu,
        load_cpu,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (devices, packets, per_packet) = (arg(1, 50), arg(2, 40), arg(3, 50));
    let runs_n = arg(4, 5).max(1);
    let mut runs = Vec::new();
    for i in 0..runs_n {
        let r = run(devices, packets, per_packet).await?;
        eprintln!(
            "run {}: {:.0} records/s, p99 {:.1} ms, server CPU {:.0}%, load generator CPU {:.0}%",
            i + 1,
            r.rate,
            r.p99_ms,
            r.server_cpu,
            r.load_cpu
        );
        runs.push(r);
    }
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let total = devices * packets * per_packet;
    let row = |what: &str, r: &Run| {
        format!(
            "| Teltonika TCP, Codec 8 ({what}) | {devices} | {per_packet} | {total} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms | {:.0}% | {:.0}% |",
            r.secs, r.rate, r.p50_ms, r.p99_ms, r.server_cpu, r.load_cpu
        )
    };
    let row = format!(
        "{}\n{}",
        row(&format!("median of {runs_n} runs"), &runs[runs_n / 2]),
        row(&format!("best of {runs_n} runs"), &runs[runs_n - 1])
    );
    let table = format!(
        "<!-- teltonika:begin -->\n\
         Durable records/s through the Teltonika TCP listener (`cargo run --release -p ekko --example bench_teltonika -- {devices} {packets} {per_packet} {runs_n}`: \
         {runs_n} runs, each on a fresh database and server, the run with the median and the best rate shown; \
         one packet in flight per connection; the packets waiting at the single writer are group-committed \
         (one SQLite transaction and one fsync, `synchronous=FULL`), each acknowledged after that commit; {} cores, \
         shared with the load generator (and whatever else the machine runs: see the notes); \
         CPU = CPU time over wall time, 100% = one core).\n\n\
         | path | connections | records/packet | records | time | records/s | p50 ack | p99 ack | server CPU | load generator CPU |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{row}\n\n\
         records/s is the records of all packets over the wall time (see the notes below the table).\n\
         <!-- teltonika:end -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{table}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/README.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match (
        old.find("<!-- teltonika:begin -->"),
        old.find("<!-- teltonika:end -->"),
    ) {
        (Some(a), Some(b)) => {
            let end = b + "<!-- teltonika:end -->\n".len();
            format!("{}{table}{}", &old[..a], &old[end.min(old.len())..])
        }
        _ => format!("{old}\n## Teltonika\n\n{table}"),
    };
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, new)?;
    Ok(())
}
