//! Benchmark: durable records per second through the OsmAnd HTTP listener, and the latency from
//! sending a report to receiving its 200 (which follows the commit).
//!
//! `cargo build --release && cargo run --release -p ekko --example bench_osmand -- [devices]
//! [reports] [runs]` registers `devices` devices in a fresh data directory, starts the release binary
//! (`target/release/ekko serve`) on free loopback ports, and has each device send `reports`
//! reports over its own keep-alive HTTP/1.1 connection, one request in flight at a time (as the
//! Traccar Client app does): first every device in the query form (`GET /?id=…&lat=…`), then,
//! on fresh connections, every device in the JSON form (`POST /` with the Traccar Client body).
//!
//! The load generator is a minimal HTTP/1.1 client on raw sockets (a request is one `write`, the
//! answer is read up to its `content-length`), so that it takes as little as possible of the
//! cores it shares with the server; the CPU time of each side is measured from `/proc` and
//! reported with the table. The whole measurement is repeated `runs` times (a fresh database and
//! server each time) and the runs with the median and the best rate are shown. The results table is written into `bench/README.md` (between the
//! osmand markers) and printed.

use std::time::{Duration, Instant};

use ekko::server;
use ekko_core::ids::imei_with_check_digit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
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

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Query,
    Json,
}

/// The request of report `n` of device `imei`, as the Traccar Client app sends it.
fn request(form: Form, imei: &str, ts_ms: i64, n: usize) -> Vec<u8> {
    let lat = 48.85837 + n as f64 * 1e-6;
    let lon = 2.294481 + n as f64 * 1e-6;
    let speed = (n % 40) as f64 * 0.5;
    let heading = (n % 360) as f64;
    match form {
        Form::Query => format!(
            "GET /?id={imei}&timestamp={ts_ms}&lat={lat:.7}&lon={lon:.7}&speed={speed}\
             &bearing={heading}&altitude=35.0&accuracy=4.0&batt=79.0 HTTP/1.1\r\n\
             Host: ekko\r\nUser-Agent: bench\r\n\r\n"
        )
        .into_bytes(),
        Form::Json => {
            let t = ekko_core::time::rfc3339(&ekko_core::time::from_unix_ms(ts_ms).unwrap());
            let body = format!(
                "{{\"location\":{{\"event\":\"motionchange\",\"is_moving\":true,\"timestamp\":\"{t}\",\
                 \"odometer\":{n},\"coords\":{{\"latitude\":{lat:.7},\"longitude\":{lon:.7},\
                 \"accuracy\":3.8,\"speed\":{speed},\"heading\":{heading},\"altitude\":35.7}},\
                 \"battery\":{{\"is_charging\":false,\"level\":0.79}},\"extras\":{{}}}},\
                 \"device_id\":\"{imei}\"}}"
            );
            let mut r = format!(
                "POST / HTTP/1.1\r\nHost: ekko\r\nUser-Agent: bench\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body.as_bytes());
            r
        }
    }
}

/// Reads one HTTP/1.1 answer from `s` (into `buf`, which keeps any bytes of the next one) and
/// returns its status.
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {head:?}"))?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + length;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "the server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    server_cpu: f64,
    load_cpu: f64,
}

async fn run(
    form: Form,
    addr: std::net::SocketAddr,
    imeis: &[String],
    reports: usize,
    base_ts: i64,
    server_pid: &str,
) -> anyhow::Result<Run> {
    let (server0, load0) = (cpu_seconds(server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let tasks: Vec<_> = imeis
        .iter()
        .cloned()
        .map(|imei| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(4096);
                let mut latencies = Vec::with_capacity(reports);
                for n in 0..reports {
                    // Each form gets its own timestamps, so no report repeats another.
                    let offset = if form == Form::Json { reports } else { 0 };
                    let req = request(form, &imei, base_ts + ((offset + n) * 1000) as i64, n);
                    let t = Instant::now();
                    s.write_all(&req).await?;
                    let status = read_answer(&mut s, &mut buf).await?;
                    latencies.push(t.elapsed());
                    anyhow::ensure!(status == 200, "answer {status}");
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
    latencies.sort();
    Ok(Run {
        elapsed,
        latencies,
        server_cpu: cpu_seconds(server_pid) - server0,
        load_cpu: cpu_seconds("self") - load0,
    })
}

/// What one run of a form gave.
struct Figures {
    secs: f64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu: f64,
    load_cpu: f64,
}

/// One server on a fresh data directory, both forms in turn.
async fn session(devices: usize, reports: usize) -> anyhow::Result<Vec<Figures>> {
    let dir = tempfile::tempdir()?;
    let mut imeis = Vec::new();
    {
        let (ekko, store) = server::open_domain(dir.path()).await?;
        ekko_connect::accounts::register(&ekko, "bench@example.com", "bench password", "Bench")
            .await?;
        for d in 0..devices {
            let imei = imei_with_check_digit(&format!("35988125{d:06}"))?;
            ekko.create_device(imei.as_str(), "bench@example.com")
                .await?;
            imeis.push(imei.to_string());
        }
        store.close().await;
    }
    let free = || -> std::io::Result<std::net::SocketAddr> {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
    };
    let (http, addr) = (free()?, free()?);
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ekko");
    let mut child = std::process::Command::new(&bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &http.to_string()])
        .args(["--osmand-listen", &addr.to_string()])
        .args(["--teltonika-listen", "127.0.0.1:0"])
        .env("EKKO_LOG", "warn")
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting {} (cargo build --release first): {e}",
                bin.display()
            )
        })?;
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Recorded a minute ago: on time (not flagged delayed), as a connected phone sends them.
    let base_ts =
        ekko_core::time::now_ms().timestamp_millis() - 60_000 - (2 * reports as i64) * 1000;
    let mut out = Vec::new();
    for form in [Form::Query, Form::Json] {
        let r = run(form, addr, &imeis, reports, base_ts, &pid).await?;
        let l = &r.latencies;
        let pct = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
        let secs = r.elapsed.as_secs_f64();
        out.push(Figures {
            secs,
            rate: (devices * reports) as f64 / secs,
            p50_ms: pct(0.5).as_secs_f64() * 1000.0,
            p99_ms: pct(0.99).as_secs_f64() * 1000.0,
            server_cpu: 100.0 * r.server_cpu / secs,
            load_cpu: 100.0 * r.load_cpu / secs,
        });
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (devices, reports, runs_n) = (arg(1, 200), arg(2, 200), arg(3, 5).max(1));
    let mut by_form: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs_n {
        for (f, figures) in session(devices, reports).await?.into_iter().enumerate() {
            eprintln!(
                "run {} form {f}: {:.0} records/s, p99 {:.1} ms, server CPU {:.0}%, load generator CPU {:.0}%",
                i + 1,
                figures.rate,
                figures.p99_ms,
                figures.server_cpu,
                figures.load_cpu
            );
            by_form[f].push(figures);
        }
    }
    let total = devices * reports;
    let mut rows = Vec::new();
    for (name, mut runs) in [
        "OsmAnd HTTP, query form (GET)",
        "OsmAnd HTTP, JSON form (POST)",
    ]
    .into_iter()
    .zip(by_form)
    {
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        for (what, r) in [
            (format!("median of {runs_n} runs"), &runs[runs_n / 2]),
            (format!("best of {runs_n} runs"), &runs[runs_n - 1]),
        ] {
            rows.push(format!(
                "| {name} ({what}) | {devices} | {total} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms | {:.0}% | {:.0}% |",
                r.secs, r.rate, r.p50_ms, r.p99_ms, r.server_cpu, r.load_cpu
            ));
        }
    }
    let table = format!(
        "<!-- osmand:begin -->\n\
         Durable records/s through the OsmAnd HTTP listener (`cargo run --release -p ekko --example bench_osmand -- {devices} {reports} {runs_n}`: \
         {runs_n} runs, each on a fresh database and server, the run with the median and the best rate shown; \
         one keep-alive connection per device and one request in flight on each, as the Traccar Client app sends; \
         every report is one record, answered 200 only after its group commit (one SQLite transaction and one fsync \
         shared by the requests waiting at the single writer, `synchronous=FULL`); {} cores, shared with the load \
         generator (and whatever else the machine runs: see the notes); CPU = CPU time over wall time, 100% = one core).\n\n\
         | path | connections | records | time | records/s | p50 answer | p99 answer | server CPU | load generator CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n{}\n\
         <!-- osmand:end -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rows.join("\n")
    );
    println!("{table}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/README.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let (b, e) = ("<!-- osmand:begin -->", "<!-- osmand:end -->\n");
    let new = match (old.find(b), old.find(e)) {
        (Some(a), Some(z)) => format!(
            "{}{table}{}",
            &old[..a],
            &old[(z + e.len()).min(old.len())..]
        ),
        _ => format!("{old}\n## OsmAnd\n\n{table}"),
    };
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, new)?;
    Ok(())
}
