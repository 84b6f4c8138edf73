//! The Teltonika TCP listener: one task per connection that owns a bounded buffer, performs the
//! IMEI handshake, then for each AVL packet: parse, store every record (one transaction), and
//! only then acknowledge the record count. A packet that fails its CRC or cannot be decoded is
//! not acknowledged (the device resends it); bytes that cannot start a packet close the
//! connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ekko_core::{Ekko, Imei};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::codec::{self, CodecError};
use super::records;

/// Most simultaneous device connections; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 10_000;
/// A connection with no byte received for this long is closed (devices reconnect).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Time allowed for the handshake after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` resolves.
pub async fn serve(listener: TcpListener, ekko: Ekko, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Teltonika TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "Teltonika connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let ekko = ekko.clone();
        tokio::spawn(async move {
            if let Err(reason) = connection(stream, ekko).await {
                tracing::debug!(%peer, %reason, "Teltonika connection closed");
            }
            drop(permit);
        });
    }
}

/// Reads more bytes into `buf` (bounded by the frame limit); `Ok(false)` at end of stream.
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<bool, String> {
    let mut chunk = [0u8; 8192];
    let want = chunk.len().min(codec::MAX_FRAME + 8192 - buf.len());
    match tokio::time::timeout(timeout, stream.read(&mut chunk[..want])).await {
        Err(_) => Err("idle timeout".into()),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Ok(Ok(0)) => Ok(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("write timeout".into()),
    }
}

async fn handshake(stream: &mut TcpStream, buf: &mut Vec<u8>, ekko: &Ekko) -> Result<Imei, String> {
    let (imei, used) = loop {
        match codec::decode_imei(buf) {
            Ok(Some(found)) => break found,
            Ok(None) => {
                if !fill(stream, buf, HANDSHAKE_TIMEOUT).await? {
                    return Err("closed during the handshake".into());
                }
            }
            Err(e) => {
                let _ = write(stream, &[0x00]).await;
                return Err(format!("bad handshake: {e}"));
            }
        }
    };
    buf.drain(..used);
    let registered = match Imei::parse(&imei) {
        Ok(imei) => match ekko.device_is_registered(&imei).await {
            Ok(true) => Some(imei),
            Ok(false) => {
                // Refused, and counted for `ekko device pending`.
                ekko.record_unknown_device(&imei, "teltonika").await;
                None
            }
            Err(e) => return Err(format!("could not check the device: {e}")),
        },
        Err(_) => None,
    };
    match registered {
        Some(imei) => {
            write(stream, &[0x01]).await?;
            Ok(imei)
        }
        None => {
            tracing::debug!(imei = %imei, "Teltonika device refused: not registered");
            let _ = write(stream, &[0x00]).await;
            Err(format!("unknown device {imei}"))
        }
    }
}

async fn connection(mut stream: TcpStream, ekko: Ekko) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let imei = handshake(&mut stream, &mut buf, &ekko).await?;
    loop {
        let len = match codec::check_frame(&buf) {
            Ok(Some(len)) => len,
            Ok(None) => {
                if !fill(&mut stream, &mut buf, IDLE_TIMEOUT).await? {
                    return if buf.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "closed inside a packet ({} bytes unacknowledged)",
                            buf.len()
                        ))
                    };
                }
                continue;
            }
            Err(e) => return Err(format!("cannot read a packet: {e}")),
        };
        let frame: Vec<u8> = buf.drain(..len).collect();
        match handle_packet(&ekko, &imei, &frame).await {
            Ok(count) => write(&mut stream, &codec::tcp_ack(count)).await?,
            Err(PacketError::Refused(reason)) => {
                tracing::warn!(%imei, %reason, "Teltonika packet refused, not acknowledged");
            }
            Err(PacketError::Fatal(reason)) => return Err(reason),
        }
    }
}

pub(super) enum PacketError {
    /// This packet is not acknowledged; the connection stays usable.
    Refused(String),
    /// Storage failed or the device is gone: not acknowledged, and the connection closes.
    Fatal(String),
}

impl From<CodecError> for PacketError {
    fn from(e: CodecError) -> Self {
        PacketError::Refused(e.to_string())
    }
}

/// Decodes a whole TCP frame and stores its records; the record count to acknowledge.
async fn handle_packet(ekko: &Ekko, imei: &Imei, frame: &[u8]) -> Result<u32, PacketError> {
    let packet = codec::parse_tcp_frame(frame)?;
    store(ekko, imei, &packet).await
}

/// Stores decoded records durably; returns how many the packet carried (resends included).
pub(super) async fn store(
    ekko: &Ekko,
    imei: &Imei,
    packet: &codec::AvlPacket,
) -> Result<u32, PacketError> {
    let batch =
        records::to_track_records(imei, packet).map_err(|e| PacketError::Refused(e.to_string()))?;
    let count = batch.len() as u32;
    let outcome = ekko
        .ingest_tracks(batch)
        .await
        .map_err(|e| PacketError::Fatal(format!("records not stored: {e}")))?;
    if outcome.duplicates > 0 {
        tracing::debug!(%imei, duplicates = outcome.duplicates, "Teltonika resend recognised");
    }
    Ok(count)
}
