//! A vehicle simulator that drives devices along plausible routes and reports through a real
//! device protocol (OsmAnd over HTTP), so that everything downstream sees genuine ingestion.
//! Used by `ekko demo` and `ekko simulate`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use ekko_core::Imei;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

pub mod teltonika;

/// The device protocol the simulated vehicles report through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP to `SimulateOptions::osmand_url`.
    #[default]
    Osmand,
    /// Codec 8 over TCP to this Teltonika listener, one connection per vehicle.
    Teltonika(SocketAddr),
}

/// A closed loop of waypoints (lat, lon) through a real city.
pub struct Route {
    pub name: &'static str,
    pub waypoints: &'static [(f64, f64)],
}

pub const ROUTES: &[Route] = &[
    Route {
        name: "Paris: Tour Eiffel - Arc de Triomphe - Louvre - Notre-Dame",
        waypoints: &[
            (48.858370, 2.294481),
            (48.863690, 2.287500),
            (48.873792, 2.295028),
            (48.869500, 2.307600),
            (48.865633, 2.321236),
            (48.860611, 2.337644),
            (48.856700, 2.347800),
            (48.852968, 2.349902),
            (48.856600, 2.333000),
            (48.861300, 2.310000),
        ],
    },
    Route {
        name: "Lyon: Bellecour - Part-Dieu - Tete d'Or",
        waypoints: &[
            (45.757814, 4.832011),
            (45.760500, 4.843800),
            (45.760600, 4.859400),
            (45.768000, 4.856000),
            (45.777800, 4.852700),
            (45.771000, 4.838000),
            (45.764000, 4.834000),
        ],
    },
    Route {
        name: "Marseille: Vieux-Port - Prado - Corniche",
        waypoints: &[
            (43.295100, 5.374000),
            (43.286000, 5.380500),
            (43.272000, 5.390800),
            (43.260500, 5.375600),
            (43.277500, 5.357000),
            (43.289000, 5.362000),
        ],
    },
];

const EARTH_RADIUS_M: f64 = 6_371_008.8;

fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

fn bearing_deg(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2, dlo) = (a.0.to_radians(), b.0.to_radians(), (b.1 - a.1).to_radians());
    let y = dlo.sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * dlo.cos();
    (y.atan2(x).to_degrees() + 360.0) % 360.0
}

/// One simulated vehicle's state.
pub struct Vehicle {
    pub imei: Imei,
    route: &'static Route,
    segment: usize,
    /// Metres travelled along the current segment.
    along: f64,
    /// Cruising speed, m/s.
    cruise: f64,
    /// Seconds left at the current stop (ignition off while stopped).
    stopped_for: f64,
    battery: f64,
    odometer: f64,
}

/// One report, in OsmAnd query parameters.
pub struct Report {
    pub params: Vec<(&'static str, String)>,
}

impl Vehicle {
    pub fn new(imei: Imei, index: usize) -> Self {
        let route = &ROUTES[index % ROUTES.len()];
        Vehicle {
            imei,
            route,
            segment: index % route.waypoints.len(),
            along: 0.0,
            cruise: 8.0 + (index % 5) as f64 * 1.5, // 29..50 km/h
            stopped_for: 0.0,
            battery: 100.0 - (index % 7) as f64 * 6.0,
            odometer: 0.0,
        }
    }

    fn segment_ends(&self) -> ((f64, f64), (f64, f64)) {
        let w = self.route.waypoints;
        (w[self.segment], w[(self.segment + 1) % w.len()])
    }

    /// Advances `dt` seconds and returns the report for the new position.
    pub fn step(&mut self, dt: f64, now_unix: f64) -> Report {
        let moving = if self.stopped_for > 0.0 {
            self.stopped_for = (self.stopped_for - dt).max(0.0);
            false
        } else {
            let mut left = self.cruise * dt;
            self.odometer += left;
            loop {
                let (a, b) = self.segment_ends();
                let len = haversine_m(a, b);
                if self.along + left < len {
                    self.along += left;
                    break;
                }
                left -= len - self.along;
                self.along = 0.0;
                self.segment = (self.segment + 1) % self.route.waypoints.len();
                // Park at every third waypoint for a while: a stop with the ignition off.
                if self.segment.is_multiple_of(3) {
                    self.stopped_for = 20.0;
                    break;
                }
            }
            true
        };
        let (a, b) = self.segment_ends();
        let len = haversine_m(a, b).max(1e-9);
        let f = (self.along / len).clamp(0.0, 1.0);
        let (lat, lon) = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
        self.battery = (self.battery - dt * 0.002).max(5.0);
        let knots = if moving {
            self.cruise * 3600.0 / 1852.0
        } else {
            0.0
        };
        Report {
            params: vec![
                ("id", self.imei.to_string()),
                ("timestamp", format!("{now_unix:.3}")),
                ("lat", format!("{lat:.6}")),
                ("lon", format!("{lon:.6}")),
                ("speed", format!("{knots:.2}")),
                ("bearing", format!("{:.1}", bearing_deg(a, b))),
                ("altitude", "35".into()),
                ("accuracy", "4.5".into()),
                ("batt", format!("{:.0}", self.battery)),
                ("ignition", moving.to_string()),
                ("odometer", format!("{:.0}", self.odometer)),
            ],
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} reports sent, {} acknowledged, {} refused, {} failed in {:.1} s ({:.1} acked/s)",
            self.sent,
            self.acked,
            self.refused,
            self.failed,
            secs,
            self.acked as f64 / secs
        )
    }
}

pub struct SimulateOptions {
    /// Base URL of an OsmAnd listener, e.g. http://127.0.0.1:5055
    pub osmand_url: String,
    pub devices: Vec<Imei>,
    pub interval: Duration,
    /// Stop after this many rounds (one report per device per round); `None`: until stopped.
    pub rounds: Option<u64>,
    pub progress: bool,
    pub protocol: Protocol,
}

/// Runs until `rounds` are done or `stop` turns true.
pub async fn run(opts: SimulateOptions, mut stop: watch::Receiver<bool>) -> Result<Summary> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut vehicles: Vec<Vehicle> = opts
        .devices
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, imei)| Vehicle::new(imei, i))
        .collect();
    let bar = if opts.progress {
        let len = opts.rounds.map(|r| r * vehicles.len() as u64);
        let bar = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos} reports {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let mut links: Vec<teltonika::Link> = vehicles.iter().map(|_| Default::default()).collect();
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut ticker = tokio::time::interval(opts.interval);
    let mut round = 0u64;
    let mut last = Instant::now();
    loop {
        if opts.rounds.is_some_and(|r| round >= r) || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let dt = last
            .elapsed()
            .as_secs_f64()
            .max(opts.interval.as_secs_f64());
        last = Instant::now();
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        if let Protocol::Teltonika(addr) = opts.protocol {
            let sends = vehicles.iter_mut().zip(links.iter_mut()).map(|(v, link)| {
                let report = v.step(dt, now);
                async move { link.send(addr, &report).await }
            });
            for outcome in futures::future::join_all(sends).await {
                summary.sent += 1;
                match outcome {
                    teltonika::Outcome::Acked => summary.acked += 1,
                    teltonika::Outcome::Refused => {
                        summary.refused += 1;
                        if summary.refused == 1 {
                            tracing::warn!(
                                "the server refused a device at the Teltonika handshake (is it registered?)"
                            );
                        }
                    }
                    teltonika::Outcome::Failed(e) => {
                        summary.failed += 1;
                        tracing::debug!(error = %e, "a Teltonika report was not acknowledged");
                    }
                }
            }
            round += 1;
            if let Some(bar) = &bar {
                bar.set_position(summary.sent);
                bar.set_message(format!("({} acked)", summary.acked));
            }
            continue;
        }
        let sends = vehicles.iter_mut().map(|v| {
            let report = v.step(dt, now);
            client.get(&opts.osmand_url).query(&report.params).send()
        });
        for result in futures::future::join_all(sends).await {
            summary.sent += 1;
            match result {
                // An OsmAnd listener acknowledges with an empty 200; a 200 with a body is some
                // other server (e.g. the API port by mistake), which stored nothing.
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(body) if body.is_empty() => summary.acked += 1,
                    _ => {
                        summary.refused += 1;
                        if summary.refused == 1 {
                            tracing::warn!(url = %opts.osmand_url, "this is not an OsmAnd listener: it answered 200 with a body");
                        }
                    }
                },
                Ok(r) if r.status().is_client_error() => {
                    summary.refused += 1;
                    if summary.refused == 1 {
                        let detail = r.text().await.unwrap_or_default();
                        tracing::warn!(%detail, "the server refused a report");
                    }
                }
                Ok(r) => {
                    summary.failed += 1;
                    if summary.failed == 1 {
                        tracing::warn!(status = %r.status(), "a report failed");
                    }
                }
                Err(e) => {
                    summary.failed += 1;
                    if summary.failed == 1 {
                        tracing::warn!(error = %e, "a report could not be sent");
                    }
                }
            }
        }
        round += 1;
        if let Some(bar) = &bar {
            bar.set_position(summary.sent);
            bar.set_message(format!("({} acked)", summary.acked));
        }
    }
    summary.elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_move_plausibly_and_stop_sometimes() {
        let imei = Imei::parse("359881234567899").unwrap();
        let mut v = Vehicle::new(imei, 0);
        let mut last: Option<(f64, f64)> = None;
        let mut stops = 0;
        for i in 0..600 {
            let r = v.step(1.0, 1_700_000_000.0 + i as f64);
            let get = |k: &str| {
                r.params
                    .iter()
                    .find(|(n, _)| *n == k)
                    .unwrap()
                    .1
                    .parse::<f64>()
                    .unwrap()
            };
            let p = (get("lat"), get("lon"));
            if let Some(l) = last {
                // Never more than ~60 m in one second (about 200 km/h).
                assert!(haversine_m(l, p) < 60.0, "jump from {l:?} to {p:?}");
            }
            if get("speed") == 0.0 {
                stops += 1;
            }
            last = Some(p);
        }
        assert!(stops > 0, "a 10-minute drive has stops");
    }

    #[test]
    fn bearing_is_compass_degrees() {
        assert!((bearing_deg((0.0, 0.0), (1.0, 0.0)) - 0.0).abs() < 1e-6);
        assert!((bearing_deg((0.0, 0.0), (0.0, 1.0)) - 90.0).abs() < 1e-6);
    }
}
