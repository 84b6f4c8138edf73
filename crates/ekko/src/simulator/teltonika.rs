//! The simulator's Teltonika side: each vehicle holds a TCP connection (IMEI handshake first)
//! and sends one Codec 8 packet per report, waiting for its record-count acknowledgement.

use std::net::SocketAddr;
use std::time::Duration;

use ekko_gateway::teltonika::codec::{self, AvlRecord, IoElement, IoValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::Outcome;
use super::Report;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Teltonika IO ids the simulator reports (see the gateway's IO table).
const IO_IGNITION: u16 = 239;
const IO_MOVEMENT: u16 = 240;
const IO_BATTERY_LEVEL: u16 = 113;
const IO_TOTAL_ODOMETER: u16 = 16;

/// The AVL record a Teltonika tracker would send for this report.
pub fn avl_record(r: &Report) -> AvlRecord {
    let moving = r.ignition();
    let u8_io = |id, v: u8| IoElement {
        id,
        value: IoValue::U8(v),
    };
    AvlRecord {
        timestamp_ms: r.recorded_at_ms().max(0) as u64,
        priority: 0,
        longitude: (r.number("lon") * 1e7).round() as i32,
        latitude: (r.number("lat") * 1e7).round() as i32,
        altitude: r.number("altitude").round() as i16,
        angle: r.number("bearing").round() as u16 % 360,
        satellites: 9,
        speed_kmh: (r.number("speed") * 1.852).round() as u16,
        event_io: 0,
        generation: None,
        io: vec![
            u8_io(IO_IGNITION, u8::from(moving)),
            u8_io(IO_MOVEMENT, u8::from(moving)),
            u8_io(IO_BATTERY_LEVEL, r.number("batt").clamp(0.0, 100.0) as u8),
            IoElement {
                id: IO_TOTAL_ODOMETER,
                value: IoValue::U32(r.number("odometer").max(0.0) as u32),
            },
        ],
    }
}

/// One vehicle's link to the Teltonika listener, (re)connected on demand.
#[derive(Default)]
pub struct Link {
    stream: Option<TcpStream>,
}

impl Link {
    async fn connect(addr: SocketAddr, imei: &str) -> Result<Option<TcpStream>, String> {
        let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        s.write_all(&codec::encode_imei(imei))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut answer = [0u8; 1];
        tokio::time::timeout(TIMEOUT, s.read_exact(&mut answer))
            .await
            .map_err(|_| "handshake timeout".to_string())?
            .map_err(|e| format!("handshake: {e}"))?;
        Ok((answer[0] == 0x01).then_some(s))
    }

    /// Sends `report` as one Codec 8 packet and waits for its acknowledgement.
    pub async fn send(&mut self, addr: SocketAddr, report: &Report) -> Outcome {
        let imei = report.imei().to_owned();
        if self.stream.is_none() {
            match Self::connect(addr, &imei).await {
                Ok(Some(s)) => self.stream = Some(s),
                Ok(None) => {
                    return Outcome::Refused(format!(
                        "the server refused device {imei} at the Teltonika handshake (is it registered?)"
                    ));
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Outcome::Failed("not connected".into());
        };
        let frame = codec::encode_tcp_frame(&codec::encode_codec8_data(&[avl_record(report)]));
        let result = async {
            stream.write_all(&frame).await?;
            let mut ack = [0u8; 4];
            stream.read_exact(&mut ack).await?;
            Ok::<u32, std::io::Error>(u32::from_be_bytes(ack))
        };
        match tokio::time::timeout(TIMEOUT, result).await {
            Ok(Ok(1)) => Outcome::Acked,
            Ok(Ok(n)) => {
                self.stream = None;
                Outcome::Failed(format!("acknowledged {n} records instead of 1"))
            }
            Ok(Err(e)) => {
                self.stream = None;
                Outcome::Failed(e.to_string())
            }
            Err(_) => {
                self.stream = None;
                Outcome::Failed("no acknowledgement".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::Vehicle;
    use ekko_core::Imei;

    #[test]
    fn reports_become_codec8_records_that_decode_back() {
        let mut v = Vehicle::new(Imei::parse("359881234567899").unwrap(), 0);
        let report = v.step(1.0, 1_700_000_000.25);
        let rec = avl_record(&report);
        assert_eq!(rec.timestamp_ms, 1_700_000_000_250);
        assert!((f64::from(rec.latitude) / 1e7 - 48.8584).abs() < 0.01);
        let frame = codec::encode_tcp_frame(&codec::encode_codec8_data(std::slice::from_ref(&rec)));
        assert_eq!(codec::parse_tcp_frame(&frame).unwrap().records, vec![rec]);
    }
}
