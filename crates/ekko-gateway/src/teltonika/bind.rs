//! Binding the Teltonika listeners: TCP and UDP on the same address and port number.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

/// Binds TCP on `addr`, then UDP on the port TCP got. With port 0 (tests), a port free for TCP
/// may be taken for UDP: then another one is tried.
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let mut attempts = 0;
    loop {
        let tcp = TcpListener::bind(addr).await?;
        let bound = tcp.local_addr()?;
        match UdpSocket::bind(bound).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 && attempts < 20 => {
                attempts += 1;
                tracing::debug!(error = %e, %bound, "UDP port taken, trying another");
            }
            Err(e) => return Err(e),
        }
    }
}
