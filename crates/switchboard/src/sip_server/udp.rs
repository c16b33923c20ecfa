//! SIP over UDP with batched system calls: a burst of datagrams is read with one
//! `recvmmsg`, processed without awaiting, and the answers leave with one `sendmmsg`.
//! Under load a REGISTER then costs a fraction of a system call each way instead of
//! one.
//!
//! Each reader is a thread of its own blocked in `recvmmsg` (`MSG_WAITFORONE`), not a
//! tokio task waiting for readiness: a burst then costs one system call to wait and
//! read, instead of an `epoll_wait`, a task wake-up, the read and a last read that
//! finds the queue empty.
//!
//! One reader per socket reads at all times; the others ([`Helpers`]) join only while
//! it falls behind. Readers all blocked in `recvmmsg` share the arrivals one wake-up
//! each: datagrams that came while the first reader was busy woke a second one, which
//! mostly queued them for the call engine that the first still held. With the helpers
//! parked, those datagrams wait in the socket buffer and the busy reader takes them in
//! its next batch without any wake-up (a call storm at 2,800 calls/s, same binary
//! otherwise: 369 instead of 392 µs of CPU per call, and 3,200 calls/s passed where it
//! had not). A full batch (the
//! queue held [`BATCH`] or more) says the reader is behind: it wakes a helper, which
//! reads until its reads come back short, then parks again. Registrations, which do
//! not meet in the engine, still spread over every core under a storm.

use std::cell::RefCell;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
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
/// How long a blocked reader waits before it looks whether the server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// A send that finds the socket buffer full waits at most this long for room.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

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
    // Blocking: readers wait in `recvmmsg`; sends on the hot path pass MSG_DONTWAIT.
    socket.set_read_timeout(Some(STOP_CHECK))?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What a reader keeps between system calls, so that a burst costs no allocation
/// beyond the datagrams themselves. It stays on its thread (the headers hold raw
/// pointers).
struct Receiver {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    lengths: Vec<(usize, Option<SocketAddr>)>,
}

impl Receiver {
    fn new() -> Self {
        Self {
            bufs: vec![vec![0u8; MAX_DATAGRAM]; BATCH],
            headers: MultiHeaders::preallocate(BATCH, None),
            lengths: Vec::with_capacity(BATCH),
        }
    }
}

thread_local! {
    /// The `sendmmsg` headers, reused by every call on this thread.
    // Initialised by one `recvmmsg` (see `switchboard_relay::batch`): counting what
    // `sendmmsg` sent reads them.
    static SEND_HEADERS: RefCell<MultiHeaders<SockaddrStorage>> = RefCell::new(
        switchboard_relay::batch::send_headers(BATCH)
            .unwrap_or_else(|| MultiHeaders::preallocate(BATCH, None)),
    );
}

/// Waits (up to the socket's read timeout) for a datagram, then reads up to
/// [`BATCH`] of those queued; each is copied out of the receive buffers into its own
/// `Bytes`, which the parsed message then shares.
fn recv_batch(
    socket: &UdpSocket,
    rx: &mut Receiver,
    out: &mut Vec<(Bytes, SocketAddr)>,
) -> io::Result<usize> {
    rx.lengths.clear();
    let mut bufs = rx.bufs.iter_mut();
    let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
        [IoSliceMut::new(
            bufs.next().expect("BATCH buffers").as_mut_slice(),
        )]
    });
    let received = recvmmsg(
        socket.as_raw_fd(),
        &mut rx.headers,
        slices.iter_mut(),
        MsgFlags::MSG_WAITFORONE,
        None,
    )
    .map_err(io::Error::from)?;
    for msg in received {
        rx.lengths
            .push((msg.bytes, msg.address.as_ref().and_then(to_socket_addr)));
    }
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

/// The readers of a socket beyond the first, parked until it falls behind.
#[derive(Default)]
pub struct Helpers {
    parked: std::sync::Mutex<Vec<std::thread::Thread>>,
}

impl Helpers {
    /// Wakes one parked helper, if any.
    fn call(&self) {
        let helper = self.parked.lock().ok().and_then(|mut p| p.pop());
        if let Some(thread) = helper {
            thread.unpark();
        }
    }

    /// Parks the calling helper until [`Self::call`]ed (true) or [`STOP_CHECK`]
    /// passed (false).
    fn wait(&self) -> bool {
        let me = std::thread::current();
        if let Ok(mut parked) = self.parked.lock() {
            parked.push(me.clone());
        }
        std::thread::park_timeout(STOP_CHECK);
        let Ok(mut parked) = self.parked.lock() else {
            return false;
        };
        // Still listed: nobody called (a wake-up without a call is spurious).
        let listed = parked.iter().position(|t| t.id() == me.id());
        listed.map(|i| parked.swap_remove(i)).is_none()
    }
}

/// What a reader is: the one that always reads, or a helper.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    First,
    Helper,
}

/// Receives and handles datagrams until `stop`, on the calling thread (which has
/// entered the runtime, for the tasks a request may spawn). A helper reads only while
/// the first reader is behind (module docs).
pub fn run(
    core: Arc<SipCore>,
    socket: Arc<UdpSocket>,
    helpers: Arc<Helpers>,
    role: Role,
    stop: watch::Receiver<bool>,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut rx = Receiver::new();
    let mut got = Vec::with_capacity(BATCH);
    let mut out = Outbox::default();
    // A helper starts parked; it stays awake while its reads come back full.
    let mut behind = role == Role::First;
    while !stopping(&stop) {
        if !behind {
            behind = helpers.wait();
            continue;
        }
        got.clear();
        if let Err(e) = recv_batch(&socket, &mut rx, &mut got) {
            if role == Role::Helper {
                behind = false;
            }
            match e.kind() {
                // The read timeout: time to look at `stop`.
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                // ICMP errors from earlier sends surface here, one per error.
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => {
                    tracing::debug!(error = %e, "UDP receive error");
                }
                _ => {
                    // Not expected to repeat, but never spin on it.
                    tracing::warn!(error = %e, "UDP receive failed");
                    std::thread::sleep(STOP_CHECK);
                }
            }
            continue;
        }
        core.metrics.udp_received.increment(got.len() as u64);
        match role {
            Role::First if got.len() == BATCH => helpers.call(),
            Role::Helper if got.len() < BATCH / 2 => behind = false,
            _ => {}
        }
        for (data, remote) in got.drain(..) {
            let flow = Flow {
                transport: SipTransport::Udp,
                local,
                remote,
                conn: None,
            };
            super::ingress::handle(&core, data, flow, &mut out);
        }
        core.calls.flush(&core);
        core.transports.send_all(&mut out, &core.metrics);
    }
}

/// True once the server asked the readers to stop, or is gone.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    stop.has_changed().is_err() || *stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cross_loopback_both_ways() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let items: Vec<(SocketAddr, Bytes)> = (0..70)
            .map(|i| (to, Bytes::from(format!("datagram {i}"))))
            .collect();
        assert_eq!(send_batch(&a, &items).unwrap(), 70);
        // Loopback delivers before the send returns: all 70 are queued, and three
        // reads take them (32 + 32 + 6).
        let mut rx = Receiver::new();
        let mut got = Vec::new();
        let reads: Vec<usize> = (0..3)
            .map(|_| recv_batch(&b, &mut rx, &mut got).unwrap())
            .collect();
        assert_eq!(reads, [32, 32, 6]);
        assert_eq!(got[0].0, Bytes::from("datagram 0"));
        assert_eq!(got[69].0, Bytes::from("datagram 69"));
        assert!(got.iter().all(|(_, from)| *from == a.local_addr().unwrap()));
        // Nothing left: the next read waits for the timeout and says so.
        let e = recv_batch(&b, &mut rx, &mut got).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn a_helper_wakes_when_called_and_only_then() {
        let helpers = Arc::new(Helpers::default());
        assert!(!helpers.wait(), "nobody called: back after STOP_CHECK");
        assert!(helpers.parked.lock().unwrap().is_empty());
        let waiting = {
            let helpers = helpers.clone();
            std::thread::spawn(move || helpers.wait())
        };
        // Called once it is parked (a call before that finds no helper to wake).
        while helpers.parked.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        helpers.call();
        assert!(waiting.join().unwrap(), "called");
        assert!(helpers.parked.lock().unwrap().is_empty());
    }

    #[test]
    fn a_reader_stops_when_asked() {
        let (stop, stopped) = watch::channel(false);
        assert!(!stopping(&stopped));
        stop.send(true).unwrap();
        assert!(stopping(&stopped));
        let (stop, stopped) = watch::channel(false);
        drop(stop);
        assert!(
            stopping(&stopped),
            "a reader whose server is gone stops too"
        );
    }
}
