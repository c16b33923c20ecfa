//! SIP over UDP with batched system calls: a burst of datagrams is read with one
//! `recvmmsg`, processed without awaiting, and the answers leave with one `sendmmsg`.
//! Under load a REGISTER then costs a fraction of a system call each way instead of
//! one; when idle the reader parks on the socket's readiness like any tokio task.

use std::cell::RefCell;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::SipCore;
use super::transport::{Flow, Outbox};
use crate::config::SipTransport;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// The largest UDP payload; bigger SIP messages cannot arrive over UDP at all.
const MAX_DATAGRAM: usize = 65_535;
/// Kernel receive buffer asked for, so a burst (or a pause of the reader) is queued
/// rather than dropped; Linux caps it at `net.core.rmem_max` unless privileged.
const RECEIVE_BUFFER: usize = 8 << 20;

/// Binds a UDP socket with a large receive buffer.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    // Best effort: a smaller buffer still works, it just drops sooner under a burst.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    let _ = socket.set_send_buffer_size(RECEIVE_BUFFER / 2);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What a reader keeps between system calls, so that a burst costs no allocation
/// beyond the datagrams themselves.
struct Receiver {
    bufs: Vec<Vec<u8>>,
    lengths: Vec<(usize, Option<SocketAddr>)>,
}

impl Receiver {
    fn new() -> Self {
        Self {
            bufs: vec![vec![0u8; MAX_DATAGRAM]; BATCH],
            lengths: Vec::with_capacity(BATCH),
        }
    }
}

thread_local! {
    /// The `recvmmsg` and `sendmmsg` headers, reused by every call on this thread
    /// (they hold raw pointers, so they cannot live in a task that moves threads).
    static RECV_HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
        RefCell::new(MultiHeaders::preallocate(BATCH, None));
    static SEND_HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
        RefCell::new(MultiHeaders::preallocate(BATCH, None));
}

/// Reads up to [`BATCH`] datagrams that are already queued (never blocks); each is
/// copied out of the receive buffers into its own `Bytes`, which the parsed message
/// then shares.
fn recv_batch(
    socket: &UdpSocket,
    rx: &mut Receiver,
    out: &mut Vec<(Bytes, SocketAddr)>,
) -> io::Result<usize> {
    rx.lengths.clear();
    RECV_HEADERS.with_borrow_mut(|headers| {
        let mut bufs = rx.bufs.iter_mut();
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                bufs.next().expect("BATCH buffers").as_mut_slice(),
            )]
        });
        let received = recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in received {
            rx.lengths
                .push((msg.bytes, msg.address.as_ref().and_then(to_socket_addr)));
        }
        Ok::<_, io::Error>(())
    })?;
    for (buf, &(len, from)) in rx.bufs.iter().zip(&rx.lengths) {
        if let Some(from) = from {
            out.push((Bytes::copy_from_slice(&buf[..len.min(buf.len())]), from));
        }
    }
    Ok(rx.lengths.len())
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Sends `items` from `socket`, [`BATCH`] per system call. Returns how many went out;
/// the caller queues the rest when the socket buffer was full.
pub fn send_batch(socket: &UdpSocket, items: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    SEND_HEADERS.with_borrow_mut(|headers| {
        let mut sent = 0;
        for chunk in items.chunks(BATCH) {
            let mut slices = [[IoSlice::new(&[])]; BATCH];
            let mut addrs = [None; BATCH];
            for ((slice, addr), (to, data)) in slices.iter_mut().zip(&mut addrs).zip(chunk) {
                *slice = [IoSlice::new(data)];
                *addr = Some(SockaddrStorage::from(*to));
            }
            // Straight to the socket, not through tokio's readiness: a UDP socket is
            // almost always writable, and tokio only learns that after a wait.
            let result = sendmmsg(
                socket.as_raw_fd(),
                headers,
                slices[..chunk.len()].iter(),
                &addrs[..chunk.len()],
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|r| r.count())
            .map_err(io::Error::from);
            match result {
                Ok(n) => {
                    sent += n;
                    if n < chunk.len() {
                        return Ok(sent);
                    }
                }
                Err(e) if sent > 0 => {
                    tracing::debug!(error = %e, "UDP send stopped part-way");
                    return Ok(sent);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    })
}

/// Receives and handles datagrams until `stop`.
pub async fn run(core: Arc<SipCore>, socket: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut rx = Receiver::new();
    let mut got = Vec::with_capacity(BATCH);
    let mut out = Outbox::default();
    loop {
        tokio::select! {
            ready = socket.readable() => if ready.is_err() { return },
            _ = stop.changed() => return,
        }
        loop {
            got.clear();
            match socket.try_io(Interest::READABLE, || {
                recv_batch(&socket, &mut rx, &mut got)
            }) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from earlier sends surface here.
                    tracing::debug!(error = %e, "UDP receive error");
                    break;
                }
            }
            core.metrics.udp_received.increment(got.len() as u64);
            for (data, remote) in got.drain(..) {
                let flow = Flow {
                    transport: SipTransport::Udp,
                    local,
                    remote,
                    conn: None,
                };
                super::ingress::handle(&core, data, flow, &mut out);
            }
            core.transports.send_all(&mut out, &core.metrics);
            // Let the other tasks of this worker run between bursts.
            tokio::task::consume_budget().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_cross_loopback_both_ways() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let items: Vec<(SocketAddr, Bytes)> = (0..70)
            .map(|i| (to, Bytes::from(format!("datagram {i}"))))
            .collect();
        assert_eq!(send_batch(&a, &items).unwrap(), 70);
        let mut rx = Receiver::new();
        let mut got = Vec::new();
        while got.len() < 70 {
            b.readable().await.unwrap();
            let _ = b.try_io(Interest::READABLE, || recv_batch(&b, &mut rx, &mut got));
        }
        assert_eq!(got[0].0, Bytes::from("datagram 0"));
        assert_eq!(got[69].0, Bytes::from("datagram 69"));
        assert!(got.iter().all(|(_, from)| *from == a.local_addr().unwrap()));
    }
}
