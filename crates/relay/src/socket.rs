//! The relay's port pairs and their sockets: binding, the leases that give ports back,
//! and the pairs kept bound for reuse.
//!
//! Binding a call's four sockets and closing them afterwards (`socket`, `setsockopt`,
//! `bind`, `close`: the kernel allocates and frees an inode and a socket each time)
//! was a tenth of a call storm's CPU. So an ended call's pairs stay bound, idle, in a
//! queue, and a later call takes them back: oldest first, and no sooner than
//! [`QUARANTINE`] after their call ended, so that the ended call's last packets in
//! flight have arrived; what they queued while idle is discarded before the new call's
//! SDP names them (`drain`). When no idle pair is old enough, a free port is bound afresh;
//! the idle queue holds at most [`IDLE_MAX`] pairs (beyond that a pair is closed), so a
//! storm does not leave thousands of descriptors open for ever.
//!
//! An idle pair also stays registered with the poll of the forwarding thread its call
//! ran on, and goes only to a later call on that thread: registering a call's four
//! sockets and taking them out again afterwards (`epoll_ctl` eight times) was most of
//! the forwarding threads' time in a call storm. So the idle pairs queue per thread.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use switchboard_media::ports::PortPool;

use crate::{RelayError, lock};

/// Kernel receive buffer asked for per socket, so that a pause of the forwarding thread
/// queues packets rather than dropping them: about a thousand small datagrams. Linux
/// caps it at `net.core.rmem_max`, and only charges what is queued.
const RECEIVE_BUFFER: usize = 1 << 20;
/// How long an ended call's pair stays idle before another call may take it (unless
/// no port is free otherwise): RTP still in flight when the call ended arrives within
/// a round trip.
pub(crate) const QUARANTINE: Duration = Duration::from_millis(250);
/// The most pairs kept bound while idle (two descriptors each).
pub(crate) const IDLE_MAX: usize = 4096;

/// The range's pairs: free ones (no sockets) and idle ones (bound, from ended calls,
/// one queue per forwarding thread).
pub(crate) struct Ports {
    free: PortPool,
    idle: Vec<VecDeque<IdlePair>>,
    idle_max: usize,
    /// False once the relay shut down: pairs given back are closed, not kept.
    open: bool,
}

/// A pair bound and ready for its next call. Fields drop in order: the sockets close
/// before the lease frees the port.
pub(crate) struct BoundPair {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
    pub(crate) lease: PortLease,
    /// In the poll of the thread whose idle queue it returns to (set by that thread).
    pub(crate) registered: bool,
}

struct IdlePair {
    pair: BoundPair,
    since: Instant,
}

impl Ports {
    pub(crate) fn new(min: u16, max: u16, threads: usize) -> Self {
        let free = PortPool::new(min, max);
        let idle_max = free.available().min(IDLE_MAX);
        Self {
            free,
            idle: (0..threads).map(|_| VecDeque::new()).collect(),
            idle_max,
            open: true,
        }
    }

    /// Pairs a call could take now (free or idle).
    pub(crate) fn available(&self) -> usize {
        self.free.available() + self.idle()
    }

    /// Pairs bound while idle.
    pub(crate) fn idle(&self) -> usize {
        self.idle.iter().map(VecDeque::len).sum()
    }

    /// The thread a new call goes to: `preferred` (the least loaded), unless the free
    /// ports cannot make a call and `preferred` has fewer idle pairs than another
    /// thread, whose pairs the call then takes.
    pub(crate) fn thread_for(&self, preferred: usize) -> usize {
        if self.free.available() >= 2 || self.idle[preferred].len() >= 2 {
            return preferred;
        }
        (0..self.idle.len())
            .max_by_key(|&t| self.idle[t].len())
            .unwrap_or(preferred)
    }

    /// Closes every idle pair and keeps none from now on. The sockets and leases are
    /// returned to be dropped by the caller, outside the lock (a lease locks it).
    fn close(&mut self) -> Vec<VecDeque<IdlePair>> {
        self.open = false;
        self.idle.iter_mut().map(std::mem::take).collect()
    }
}

/// Stops keeping idle pairs and closes those kept.
pub(crate) fn close_idle(ports: &Mutex<Ports>) {
    let closed = lock(ports).close();
    drop(closed);
}

/// One port pair taken from the range; dropping it puts the pair back among the free
/// ones. Whoever holds it last (the forwarding thread, a dropped command, a failed
/// allocation) returns it, so a pair is returned exactly once.
pub(crate) struct PortLease {
    ports: Arc<Mutex<Ports>>,
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
        lock(&self.ports).free.put(self.port);
    }
}

impl BoundPair {
    /// Gives an ended call's pair back from thread `thread`: kept bound (and
    /// registered) for that thread's next call when there is room, else closed (and
    /// its port freed; closing also takes the sockets out of the poll). Returns
    /// whether it was kept.
    pub(crate) fn recycle(self, thread: usize) -> bool {
        let ports = self.lease.ports.clone();
        let mut guard = lock(&ports);
        if guard.open && guard.idle() < guard.idle_max {
            guard.idle[thread].push_back(IdlePair {
                pair: self,
                since: Instant::now(),
            });
            true
        } else {
            drop(guard);
            drop(self); // sockets close, then the lease frees the port
            false
        }
    }

    /// The RTP (0) or RTCP (1) socket.
    pub(crate) fn socket(&self, component: usize) -> &UdpSocket {
        if component == 0 {
            &self.rtp
        } else {
            &self.rtcp
        }
    }

    pub(crate) fn socket_mut(&mut self, component: usize) -> &mut UdpSocket {
        if component == 0 {
            &mut self.rtp
        } else {
            &mut self.rtcp
        }
    }

    /// Discards what an idle pair received since its last call (at most a full
    /// receive buffer's worth per socket, so a flood cannot hold the thread here).
    pub(crate) fn drain(&self) {
        const MOST: usize = RECEIVE_BUFFER / 64;
        let mut scratch = [0u8; 64];
        for socket in [&self.rtp, &self.rtcp] {
            // Cut short or not, each read takes one datagram off the queue.
            for _ in 0..MOST {
                if socket.recv_from(&mut scratch).is_err() {
                    break;
                }
            }
        }
    }
}

/// A pair for a new call on thread `thread`: an idle one of that thread old enough,
/// else a free port bound now, else (ports or descriptors running out) the thread's
/// oldest idle one. Free pairs the OS refuses (in use by another process, or
/// privileged) are kept in `refused`; any other error is returned.
pub(crate) fn take_pair(
    ip: IpAddr,
    ports: &Arc<Mutex<Ports>>,
    thread: usize,
    refused: &mut Vec<PortLease>,
) -> Result<BoundPair, RelayError> {
    // Set when the process has no descriptor left for a fresh pair: an idle one is
    // better than a failed call.
    let mut no_descriptors = false;
    loop {
        let port = {
            let mut guard = lock(ports);
            let ripe = guard.idle[thread]
                .front()
                .is_some_and(|i| i.since.elapsed() >= QUARANTINE);
            if (ripe || no_descriptors || guard.free.available() == 0)
                && let Some(idle) = guard.idle[thread].pop_front()
            {
                drop(guard);
                // Before the port goes into an SDP: later packets are the new call's.
                idle.pair.drain();
                return Ok(idle.pair);
            }
            match guard.free.take() {
                Some(port) => port,
                None => return Err(RelayError::PortsExhausted),
            }
        };
        let lease = PortLease {
            ports: ports.clone(),
            port,
        };
        let bound = bind(SocketAddr::new(ip, port))
            .and_then(|rtp| Ok((rtp, bind(SocketAddr::new(ip, port + 1))?)));
        match bound {
            Ok((rtp, rtcp)) => {
                return Ok(BoundPair {
                    rtp,
                    rtcp,
                    lease,
                    registered: false,
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                ) =>
            {
                refused.push(lease);
            }
            // The lease frees the port again.
            Err(e) if out_of_descriptors(&e) && !no_descriptors => {
                no_descriptors = true;
                if lock(ports).idle[thread].is_empty() {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The process (EMFILE) or the system (ENFILE) has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    let descriptors = [nix::errno::Errno::EMFILE, nix::errno::Errno::ENFILE];
    descriptors
        .iter()
        .any(|&n| e.raw_os_error() == Some(n as i32))
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
