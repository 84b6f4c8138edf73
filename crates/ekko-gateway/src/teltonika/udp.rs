//! The Teltonika UDP listener: one datagram = one AVL packet, answered with Teltonika's UDP
//! acknowledgement only after its records are stored. Datagrams are handled one at a time, in
//! arrival order (so each device's order is kept); a datagram that cannot be decoded, or from an
//! unknown device, gets no answer.

use std::future::Future;

use ekko_core::{Ekko, Imei};
use tokio::net::UdpSocket;

use super::codec;
use super::tcp::{PacketError, store};

/// Receives datagrams until `shutdown` resolves.
pub async fn serve(socket: UdpSocket, ekko: Ekko, shutdown: impl Future<Output = ()>) {
    let mut buf = vec![0u8; 65_536];
    tokio::pin!(shutdown);
    loop {
        let (n, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "Teltonika UDP receive failed");
                    continue;
                }
            },
        };
        match handle(&ekko, &buf[..n]).await {
            Ok(ack) => {
                if let Err(e) = socket.send_to(&ack, peer).await {
                    tracing::debug!(%peer, error = %e, "Teltonika UDP ack not sent");
                }
            }
            Err(reason) => {
                tracing::warn!(%peer, %reason, "Teltonika UDP datagram refused, not acknowledged")
            }
        }
    }
}

async fn handle(ekko: &Ekko, datagram: &[u8]) -> Result<[u8; 7], String> {
    let p = codec::parse_udp_datagram(datagram).map_err(|e| e.to_string())?;
    let imei = Imei::parse(&p.imei).map_err(|_| format!("unknown device {}", p.imei))?;
    if !ekko
        .device_is_registered(&imei)
        .await
        .map_err(|e| e.to_string())?
    {
        ekko.record_unknown_device(&imei, "teltonika").await;
        return Err(format!("unknown device {imei}"));
    }
    let count = store(ekko, &imei, &p.packet).await.map_err(|e| match e {
        PacketError::Refused(r) | PacketError::Fatal(r) => r,
    })?;
    Ok(codec::udp_ack(
        p.packet_id,
        p.avl_packet_id,
        u8::try_from(count).unwrap_or(u8::MAX),
    ))
}
