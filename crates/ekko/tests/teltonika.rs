//! Teltonika end to end, against the in-process server: TCP handshake, AVL packets acknowledged
//! only after their records are stored, refusals without acks, resends stored once, and UDP.

mod common;

use std::time::Duration;

use ekko_core::Imei;
use ekko_core::fields::FieldValue;
use ekko_core::ports::Store;
use ekko_core::track::Track;
use ekko_gateway::teltonika::codec;
use ekko_store::SqliteStore;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use common::{IMEI, TestServer};

/// A real Codec 8 frame of 14 records, two of them without a GPS fix.
fn porto_frame() -> Vec<u8> {
    let data: Value =
        serde_json::from_str(include_str!("../../ekko-gateway/tests/data/teltonika.json")).unwrap();
    let hex = data["frames"][0]["hex"].as_str().unwrap();
    assert_eq!(data["frames"][0]["name"], "traccar-c8-porto-14");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

async fn stored(t: &TestServer) -> Vec<Track> {
    let store = SqliteStore::open(t.dir.path()).await.unwrap();
    let tracks = store
        .recent_tracks(&Imei::parse(IMEI).unwrap(), 1000)
        .await
        .unwrap();
    store.close().await;
    tracks
}

async fn connect(t: &TestServer, imei: &str) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(t.teltonika).await.unwrap();
    s.write_all(&codec::encode_imei(imei)).await.unwrap();
    let mut answer = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut answer))
        .await
        .expect("a handshake answer")
        .unwrap();
    (s, answer[0])
}

async fn read_ack(s: &mut TcpStream, within: Duration) -> Option<u32> {
    let mut ack = [0u8; 4];
    match tokio::time::timeout(within, s.read_exact(&mut ack)).await {
        Ok(Ok(_)) => Some(u32::from_be_bytes(ack)),
        _ => None,
    }
}

#[tokio::test]
async fn a_packet_is_acknowledged_with_its_record_count_once_stored() {
    let t = common::start().await;
    let (mut s, answer) = connect(&t, IMEI).await;
    assert_eq!(answer, 0x01);
    s.write_all(&porto_frame()).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_secs(5)).await, Some(14));
    // The ack came after the commit: every record is already readable.
    let tracks = stored(&t).await;
    assert_eq!(tracks.len(), 14);
    assert_eq!(tracks.iter().filter(|t| t.coordinates.is_none()).count(), 2);
    // Recorded in 2017 and sent now: buffered, so flagged delayed.
    assert!(tracks.iter().all(|t| {
        t.fields
            .iter()
            .any(|f| f.name == "MDI_RECORD_DELAYED" && f.value == FieldValue::Bool(true))
    }));
}

#[tokio::test]
async fn an_unknown_device_is_refused_at_the_handshake_and_listed_as_pending() {
    let t = common::start().await;
    let (mut s, answer) = connect(&t, "353691841005134").await;
    assert_eq!(answer, 0x00);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Counted for `ekko device pending`.
    let (ekko, store) = ekko::server::open_domain(t.dir.path()).await.unwrap();
    let pending = ekko.pending_devices().await.unwrap();
    store.close().await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].imei.as_str(), "353691841005134");
    assert_eq!(pending[0].protocol, "teltonika");
}

#[tokio::test]
async fn a_packet_with_a_bad_crc_is_not_acknowledged_and_its_resend_is() {
    let t = common::start().await;
    let (mut s, _) = connect(&t, IMEI).await;
    let mut bad = porto_frame();
    bad[20] ^= 0xFF;
    s.write_all(&bad).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_millis(500)).await, None);
    assert!(stored(&t).await.is_empty());
    s.write_all(&porto_frame()).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_secs(5)).await, Some(14));
}

#[tokio::test]
async fn a_packet_split_across_reads_is_acknowledged_only_when_whole() {
    let t = common::start().await;
    let (mut s, _) = connect(&t, IMEI).await;
    let frame = porto_frame();
    let (head, tail) = frame.split_at(frame.len() / 2);
    s.write_all(head).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_millis(500)).await, None);
    assert!(stored(&t).await.is_empty());
    s.write_all(tail).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_secs(5)).await, Some(14));
}

#[tokio::test]
async fn a_truncated_packet_stores_nothing() {
    let t = common::start().await;
    let (mut s, _) = connect(&t, IMEI).await;
    let frame = porto_frame();
    s.write_all(&frame[..frame.len() - 3]).await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stored(&t).await.is_empty());
}

#[tokio::test]
async fn a_resent_packet_is_acknowledged_again_and_stored_once() {
    let t = common::start().await;
    let (mut s, _) = connect(&t, IMEI).await;
    s.write_all(&porto_frame()).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_secs(5)).await, Some(14));
    // The device missed the ack and resends, on a new connection.
    drop(s);
    let (mut s, _) = connect(&t, IMEI).await;
    s.write_all(&porto_frame()).await.unwrap();
    assert_eq!(read_ack(&mut s, Duration::from_secs(5)).await, Some(14));
    assert_eq!(stored(&t).await.len(), 14);
}

#[tokio::test]
async fn a_udp_packet_gets_the_teltonika_udp_ack_once_stored() {
    let t = common::start().await;
    let frame = porto_frame();
    let data = &frame[8..frame.len() - 4];
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(
        &codec::encode_udp_datagram(0xABCD, 3, IMEI, data),
        t.teltonika,
    )
    .await
    .unwrap();
    let mut ack = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut ack))
        .await
        .expect("a UDP ack")
        .unwrap();
    assert_eq!(&ack[..n], &codec::udp_ack(0xABCD, 3, 14));
    assert_eq!(stored(&t).await.len(), 14);
    // From an unknown device: no answer, nothing stored.
    udp.send_to(
        &codec::encode_udp_datagram(1, 4, "353691841005134", data),
        t.teltonika,
    )
    .await
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut ack))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_simulator_drives_vehicles_over_teltonika_and_every_report_is_acknowledged() {
    use ekko::simulator::{Protocol, SimulateOptions, run};
    let t = common::start().await;
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let summary = run(
        SimulateOptions {
            osmand_url: String::new(),
            devices: vec![Imei::parse(IMEI).unwrap()],
            interval: Duration::from_millis(20),
            rounds: Some(5),
            progress: false,
            protocol: Protocol::Teltonika(t.teltonika),
        },
        stop,
    )
    .await
    .unwrap();
    assert_eq!((summary.sent, summary.acked, summary.failed), (5, 5, 0));
    let tracks = stored(&t).await;
    assert_eq!(tracks.len(), 5);
    assert!(tracks.iter().all(|t| t.coordinates.is_some()));
}
