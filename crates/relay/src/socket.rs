//! Binding a session's sockets, and the leases that give their ports back.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use mio::net::UdpSocket;
use switchboard_media::ports::PortPool;

use crate::{RelayError, lock};

/// Kernel receive buffer asked for per socket, so that a pause of the forwarding thread
/// queues packets rather than dropping them: about a thousand small datagrams. Linux
/// caps it at `net.core.rmem_max`, and only charges what is queued.
const RECEIVE_BUFFER: usize = 1 << 20;

/// One port pair taken from the pool; dropping it puts the pair back. Whoever holds it
/// last (the forwarding thread, a dropped command, a failed allocation) returns it, so
/// a pair is returned exactly once.
pub(crate) struct PortLease {
    pool: Arc<Mutex<PortPool>>,
    port: u16,
}

impl PortLease {
    /// The RTP (even) port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        lock(&self.pool).put(self.port);
    }
}

/// Takes pairs from the pool until both of one bind. Pairs the OS refuses (in use by
/// another process, or privileged) are kept in `refused`; any other error is returned.
pub(crate) fn bind_pair(
    ip: IpAddr,
    pool: &Arc<Mutex<PortPool>>,
    refused: &mut Vec<PortLease>,
) -> Result<(PortLease, UdpSocket, UdpSocket), RelayError> {
    loop {
        let Some(port) = lock(pool).take() else {
            return Err(RelayError::PortsExhausted);
        };
        let lease = PortLease {
            pool: pool.clone(),
            port,
        };
        let bound = bind(SocketAddr::new(ip, port))
            .and_then(|rtp| Ok((rtp, bind(SocketAddr::new(ip, port + 1))?)));
        match bound {
            Ok((rtp, rtcp)) => return Ok((lease, rtp, rtcp)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                ) =>
            {
                refused.push(lease);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A non-blocking UDP socket bound to `addr`, with a large receive buffer. No
/// `SO_REUSEADDR`: a port in use must be refused, not shared.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        // Bound to one address anyway; v4-mapped peers are not expected.
        let _ = socket.set_only_v6(true);
    }
    // Best effort: a smaller buffer still works, it just drops sooner under a stall.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}
