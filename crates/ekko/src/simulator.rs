//! A vehicle simulator that drives devices along plausible routes (ignition on while driving,
//! off at stops, a battery that drains) and reports through a real device protocol, so that
//! everything downstream sees genuine ingestion: OsmAnd over HTTP ([`osmand`]), Teltonika
//! Codec 8 over TCP ([`teltonika`]), Munic's CloudConnect webhook ([`cloudconnect`]) or MQTT
//! ([`mqtt`]). Every protocol turns the same [`Report`] into its own wire format, in Munic's
//! units. Used by `ekko demo` and `ekko simulate`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use ekko_core::Imei;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

pub mod cloudconnect;
pub mod mqtt;
pub mod osmand;
pub mod teltonika;

/// The device protocol the simulated vehicles report through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP to `SimulateOptions::osmand_url`.
    #[default]
    Osmand,
    /// Codec 8 over TCP to this Teltonika listener, one connection per vehicle.
    Teltonika(SocketAddr),
    /// One CloudConnect webhook request (a JSON array of `track` events) per round.
    CloudConnect(cloudconnect::Target),
    /// One QoS 1 publish per report to `devices/<imei>/tracks` on this broker
    /// (`mqtt://host[:port]`).
    Mqtt(String),
}

impl Protocol {
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Osmand => "OsmAnd",
            Protocol::Teltonika(_) => "Teltonika",
            Protocol::CloudConnect(_) => "CloudConnect",
            Protocol::Mqtt(_) => "MQTT",
        }
    }
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

/// One report, in OsmAnd query parameters (the simulator's common model: every protocol
/// module converts it into its own wire format).
///
/// `id` (IMEI), `timestamp` (unix seconds, ms precision), `lat`, `lon` (degrees), `speed`
/// (knots), `bearing` (degrees), `altitude` (m), `accuracy` (m), `batt` (percent),
/// `ignition` (`true`/`false`), `odometer` (m).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub params: Vec<(&'static str, String)>,
}

impl Report {
    /// The value of parameter `name`, as sent to an OsmAnd listener.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter `name` as a number (0 when absent or not a number).
    pub fn number(&self, name: &str) -> f64 {
        self.param(name)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// The device's IMEI.
    pub fn imei(&self) -> &str {
        self.param("id").unwrap_or_default()
    }

    /// Is the ignition on (the vehicle is driving)?
    pub fn ignition(&self) -> bool {
        self.param("ignition") == Some("true")
    }

    /// The fields every protocol that speaks Munic's names reports (CloudConnect, MQTT), in
    /// Munic's units: motion, ignition, odometer and a valid fix. Each protocol encodes them
    /// its own way and adds what is its own.
    pub fn munic_fields(&self) -> Vec<ekko_core::fields::Field> {
        use ekko_core::fields::{self, Field, FieldValue};
        vec![
            fields::speed_from_knots(self.number("speed").max(0.0)),
            fields::direction_from_degrees(self.number("bearing")),
            fields::altitude_from_metres(self.number("altitude")),
            Field::new(fields::DIO_IGNITION, FieldValue::Bool(self.ignition())),
            Field::new(
                fields::ODO_FULL_METER,
                FieldValue::Int(self.number("odometer").max(0.0).round() as i64),
            ),
            Field::new(fields::GPRMC_VALID, FieldValue::Text("A".into())),
        ]
    }

    /// The recording time, unix milliseconds.
    pub fn recorded_at_ms(&self) -> i64 {
        (self.number("timestamp") * 1000.0).round() as i64
    }

    /// The recording time, RFC 3339 UTC with milliseconds (Ekko's and Munic's format).
    pub fn recorded_at_rfc3339(&self) -> String {
        ekko_core::time::from_unix_ms(self.recorded_at_ms())
            .map(|t| ekko_core::time::rfc3339(&t))
            .unwrap_or_default()
    }
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

/// What became of one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server (for MQTT: the broker) acknowledged it.
    Acked,
    /// The server refused it for good (an unregistered device, a wrong secret, a malformed
    /// report): sending it again would not help. The reason, as the server gave it.
    Refused(String),
    /// It was not acknowledged (no connection, a timeout, a storage failure): the reason.
    Failed(String),
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// MQTT: "acknowledged" means the broker took the report (PUBACK); Ekko's bridge reads it
    /// from the broker and commits it afterwards.
    pub broker_acks: bool,
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
        )?;
        if self.broker_acks {
            write!(
                f,
                "; MQTT: acknowledged = taken by the broker (PUBACK), Ekko's bridge commits them afterwards"
            )?;
        }
        Ok(())
    }
}

pub struct SimulateOptions {
    /// Base URL of an OsmAnd listener, e.g. http://127.0.0.1:5055 (`Protocol::Osmand`).
    pub osmand_url: String,
    pub devices: Vec<Imei>,
    pub interval: Duration,
    /// Stop after this many rounds (one report per device per round); `None`: until stopped.
    pub rounds: Option<u64>,
    pub progress: bool,
    pub protocol: Protocol,
}

/// Each protocol's sender, with whatever it keeps between rounds (connections, ids).
enum Driver {
    Osmand(osmand::Sender),
    Teltonika(SocketAddr, Vec<teltonika::Link>),
    CloudConnect(cloudconnect::Sender),
    Mqtt(mqtt::Publisher),
}

impl Driver {
    fn new(opts: &SimulateOptions) -> Result<Self> {
        Ok(match &opts.protocol {
            Protocol::Osmand => Driver::Osmand(osmand::Sender::new(&opts.osmand_url)?),
            Protocol::Teltonika(addr) => Driver::Teltonika(
                *addr,
                opts.devices.iter().map(|_| Default::default()).collect(),
            ),
            Protocol::CloudConnect(target) => {
                Driver::CloudConnect(cloudconnect::Sender::new(target.clone())?)
            }
            Protocol::Mqtt(url) => Driver::Mqtt(mqtt::Publisher::new(url)?),
        })
    }

    /// Sends one round (one report per vehicle); one outcome per report, in order.
    async fn send(&mut self, reports: &[Report]) -> Vec<Outcome> {
        match self {
            Driver::Osmand(s) => s.send(reports).await,
            Driver::Teltonika(addr, links) => {
                let addr = *addr;
                let sends = links
                    .iter_mut()
                    .zip(reports)
                    .map(|(link, report)| link.send(addr, report));
                futures::future::join_all(sends).await
            }
            Driver::CloudConnect(s) => s.send(reports).await,
            Driver::Mqtt(p) => p.send(reports).await,
        }
    }

    async fn close(self) {
        if let Driver::Mqtt(p) = self {
            p.close().await;
        }
    }
}

/// Runs until `rounds` are done or `stop` turns true.
pub async fn run(opts: SimulateOptions, mut stop: watch::Receiver<bool>) -> Result<Summary> {
    let mut driver = Driver::new(&opts)?;
    let protocol = opts.protocol.name();
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
            ProgressStyle::with_template(&format!(
                "{{spinner}} {{elapsed_precise}} [{{bar:30}}] {{pos}} {protocol} reports {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut summary = Summary {
        broker_acks: matches!(opts.protocol, Protocol::Mqtt(_)),
        ..Default::default()
    };
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
        let reports: Vec<Report> = vehicles.iter_mut().map(|v| v.step(dt, now)).collect();
        for outcome in driver.send(&reports).await {
            summary.sent += 1;
            match outcome {
                Outcome::Acked => summary.acked += 1,
                Outcome::Refused(reason) => {
                    summary.refused += 1;
                    if summary.refused == 1 {
                        tracing::warn!(%reason, "the {protocol} server refused a report");
                    }
                }
                Outcome::Failed(reason) => {
                    summary.failed += 1;
                    if summary.failed == 1 {
                        tracing::warn!(%reason, "a {protocol} report was not acknowledged");
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
    driver.close().await;
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
