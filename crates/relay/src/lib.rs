//! The media relay's I/O: UDP sockets for the RTP/RTCP port pairs of anchored calls and
//! the threads that forward between them. What to do with each packet (symmetric
//! latching guarded against hijack, counters, media timeout) is decided by the sans-IO
//! [`MediaSession`] of `switchboard-media`; this crate only moves bytes.
//!
//! A call anchored at the relay has two legs: side A faces the caller, side B the
//! callee, each with its own RTP port (even) and RTCP port (the next one) on the relay's
//! IP. A packet arriving on A's RTP port is judged by the call's RTP [`MediaSession`]
//! and, when it is to be forwarded, leaves unchanged from B's RTP port; RTCP likewise on
//! the +1 ports with a second [`MediaSession`].
//!
//! # Threads, commands and snapshots
//!
//! [`Relay::start`] starts `threads` forwarding threads ("media-N"), each with one
//! `mio::Poll` over the sockets of the sessions it owns. A session's two
//! `MediaSession`s live on its thread only, so forwarding never takes a lock per
//! packet. The API (tokio tasks on other threads) talks to a thread through a command
//! channel: adding, re-signalling, hold and removal are messages, never a round trip.
//! The thread applies them before every batch it reads, and at least every 10 ms; it
//! is woken (a `mio::Waker`) only from a sleep without sessions, so a call's several
//! commands cost no context switch each.
//!
//! What the API reads back (stats, latched address, media timeout) comes from a
//! per-session snapshot: a `Mutex` holding a copy of the RTP `MediaSession`, which the
//! forwarding thread refreshes once per poll batch for the sessions that saw traffic
//! (with `try_lock`, so a reader never stalls forwarding; a busy snapshot is refreshed
//! on the next batch, at most a millisecond later). A copy of the whole session rather
//! than hand-picked atomics keeps `stats`, `latched` and `timed_out` exactly
//! `MediaSession`'s own logic, at the cost of a ~200-byte copy per active session per
//! batch, negligible next to the system calls.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use switchboard_media::relay::{LegStats, MediaSession, Side};

pub mod batch;
mod socket;
mod worker;

#[cfg(test)]
mod tests;

use worker::{Command, Component, NewSession, WorkerHandle};

/// Where and how the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The address the relay's sockets bind to (the one that goes into the SDP).
    pub bind_ip: IpAddr,
    /// The RTP/RTCP port range (`rtp.port_min..=port_max`).
    pub port_min: u16,
    pub port_max: u16,
    /// Forwarding threads (at least one).
    pub threads: usize,
}

/// Why a session could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Every port pair of the range is in use (by calls, or refused by the OS).
    #[error("no free RTP/RTCP port pairs left in the relay's range")]
    PortsExhausted,
    #[error("media relay socket: {0}")]
    Io(#[from] io::Error),
}

/// Cumulative counters over all sessions ever (for Prometheus counters): they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Packets accepted from the phones (RTP and RTCP), as in [`LegStats::packets`];
    /// all of them were sent on except `no_destination` and `send_errors`.
    pub packets: u64,
    pub bytes: u64,
    /// RTP packets missing from the accepted streams (only increases are added, so a
    /// late packet never makes the counter go back).
    pub lost: u64,
    /// Dropped: from sources a leg had not learnt (strangers, sources on probation).
    pub foreign: u64,
    /// Dropped: accepted, but the other side had no address yet.
    pub no_destination: u64,
    /// Dropped: the send failed (socket buffer full, unreachable destination).
    pub send_errors: u64,
    /// Dropped: larger than the receive buffer (jumbo datagrams cut short by the kernel).
    pub truncated: u64,
}

/// The running relay: a cheap handle (an `Arc` inside), `Send + Sync`. The threads stop
/// when [`Relay::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    bind_ip: IpAddr,
    ports: Arc<Mutex<socket::Ports>>,
    workers: Vec<Arc<WorkerHandle>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relay {
    /// Starts `config.threads` forwarding threads named "media-0", "media-1", …
    pub fn start(config: RelayConfig) -> io::Result<Relay> {
        if config.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the media relay needs at least one thread",
            ));
        }
        let ports = Arc::new(Mutex::new(socket::Ports::new(
            config.port_min,
            config.port_max,
            config.threads,
        )));
        let mut workers = Vec::with_capacity(config.threads);
        let mut threads = Vec::with_capacity(config.threads);
        for n in 0..config.threads {
            let (handle, thread) = match worker::spawn(n) {
                Ok(started) => started,
                Err(e) => {
                    stop_all(&workers, threads);
                    return Err(e);
                }
            };
            workers.push(handle);
            threads.push(thread);
        }
        Ok(Relay {
            inner: Arc::new(Inner {
                bind_ip: config.bind_ip,
                ports,
                workers,
                threads: Mutex::new(threads),
                next_id: AtomicU64::new(1),
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// Takes two port pairs (an ended call's, still bound, or free ports bound now,
    /// skipping ports the OS refuses, e.g. in use by another process; those go back to
    /// the pool's end: see `socket`) and hands them to the least-loaded thread (or,
    /// when only idle pairs are left, to the thread that has them: see `socket`).
    pub fn allocate(&self) -> Result<RelaySession, RelayError> {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Acquire) {
            return Err(shut_down().into());
        }
        // Refused pairs stay out of the pool until this call ends, so that one call
        // never tries a pair twice; dropping the leases then puts them back.
        let least_loaded = (0..inner.workers.len())
            .min_by_key(|&t| inner.workers[t].load.load(Ordering::Relaxed))
            .expect("at least one thread");
        let thread = lock(&inner.ports).thread_for(least_loaded);
        let mut refused = Vec::new();
        let a = socket::take_pair(inner.bind_ip, &inner.ports, thread, &mut refused)?;
        let b = socket::take_pair(inner.bind_ip, &inner.ports, thread, &mut refused)?;
        drop(refused);
        let ports = [a.lease.port(), b.lease.port()];
        let worker = inner.workers[thread].clone();
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let rtp = MediaSession::new(None, None, Instant::now());
        let shared = Arc::new(Shared {
            rtp: Mutex::new(rtp.clone()),
            on_hold: AtomicBool::new(false),
        });
        let new = NewSession {
            id,
            pairs: [a, b],
            rtcp: rtp.clone(),
            rtp,
            shared: shared.clone(),
        };
        worker.load.fetch_add(1, Ordering::Relaxed);
        if worker.send(Command::Add(Box::new(new))).is_err() {
            // The thread is gone (shut down meanwhile): the command, and with it the
            // sockets and leases, was dropped, which returned the ports.
            worker.load.fetch_sub(1, Ordering::Relaxed);
            return Err(shut_down().into());
        }
        Ok(RelaySession {
            id,
            ports,
            worker,
            shared,
        })
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.inner
            .workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .sum()
    }

    /// Port pairs a session could take (a session takes two): free ones and those
    /// of ended calls kept bound for reuse.
    pub fn ports_available(&self) -> usize {
        lock(&self.inner.ports).available()
    }

    /// Pairs of ended calls kept bound for reuse (two sockets each).
    pub fn idle_pairs(&self) -> usize {
        lock(&self.inner.ports).idle()
    }

    /// Counters over all sessions ever, as of the threads' last batches.
    pub fn totals(&self) -> RelayTotals {
        let mut t = RelayTotals::default();
        for w in &self.inner.workers {
            let s = w.totals.load();
            t.packets += s.packets;
            t.bytes += s.bytes;
            t.lost += s.lost;
            t.foreign += s.foreign;
            t.no_destination += s.no_destination;
            t.send_errors += s.send_errors;
            t.truncated += s.truncated;
        }
        t
    }

    /// Stops the threads and waits for them; their sockets close and all ports go back
    /// to the pool. Sessions still held then forward nothing. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("bind_ip", &self.inner.bind_ip)
            .field("threads", &self.inner.workers.len())
            .field("sessions", &self.sessions())
            .field("ports_available", &self.ports_available())
            .finish()
    }
}

impl Inner {
    fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        stop_all(&self.workers, threads);
        socket::close_idle(&self.ports);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stop_all(workers: &[Arc<WorkerHandle>], threads: Vec<JoinHandle<()>>) {
    for w in workers {
        let _ = w.send(Command::Stop);
    }
    for t in threads {
        let _ = t.join();
    }
}

fn shut_down() -> io::Error {
    io::Error::other("the media relay is shut down")
}

/// What a session's thread publishes for the API to read.
pub(crate) struct Shared {
    /// The RTP `MediaSession` as of the thread's last batch that touched it.
    pub(crate) rtp: Mutex<MediaSession>,
    /// Hold as the API last set it: authoritative at once for `timed_out`, whatever the
    /// snapshot's age.
    pub(crate) on_hold: AtomicBool,
}

/// One anchored call: four sockets on a forwarding thread. `Send + Sync`. Dropping it
/// ends the call's forwarding and gives both port pairs back, exactly once: the thread
/// takes the sockets out of its poll, microseconds after the drop, and keeps the pairs
/// bound for a later call, or closes them and frees their ports (see `socket`); the
/// pool's leases travel with the sockets, so a port is never handed out twice.
pub struct RelaySession {
    id: u64,
    ports: [u16; 2],
    worker: Arc<WorkerHandle>,
    shared: Arc<Shared>,
}

impl RelaySession {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// That side's RTP port (RTCP is the next one): what goes into the SDP sent to
    /// that side's phone.
    pub fn port(&self, side: Side) -> u16 {
        self.ports[side_index(side)]
    }

    /// The address from that side's SDP (c= and m= port), `None` when unknown. Also
    /// sets that side's RTCP address to the RTP port + 1; call
    /// [`set_signalled_rtcp`](Self::set_signalled_rtcp) afterwards for an explicit
    /// `a=rtcp` port.
    ///
    /// Takes effect for every packet the thread reads after this returns: the thread
    /// applies its queued commands before each batch it reads (and within 10 ms when
    /// no packet comes). Packets already read in the batch under way at that moment —
    /// at most 32, microseconds' worth — still go by the old address.
    pub fn set_signalled(&self, side: Side, rtp: Option<SocketAddr>) {
        let rtcp = rtp.and_then(|a| a.port().checked_add(1).map(|p| SocketAddr::new(a.ip(), p)));
        self.command(Command::Signal {
            id: self.id,
            side,
            component: Component::Rtp,
            addr: rtp,
        });
        self.command(Command::Signal {
            id: self.id,
            side,
            component: Component::Rtcp,
            addr: rtcp,
        });
    }

    /// That side's RTCP address when its SDP has an explicit `a=rtcp` attribute. Takes
    /// effect like [`set_signalled`](Self::set_signalled).
    pub fn set_signalled_rtcp(&self, side: Side, rtcp: Option<SocketAddr>) {
        self.command(Command::Signal {
            id: self.id,
            side,
            component: Component::Rtcp,
            addr: rtcp,
        });
    }

    /// Hold (either side sent `sendonly`/`inactive`): silence is then not a timeout.
    /// [`timed_out`](Self::timed_out) sees it at once.
    pub fn set_on_hold(&self, on_hold: bool) {
        self.shared.on_hold.store(on_hold, Ordering::Release);
        self.command(Command::Hold {
            id: self.id,
            on_hold,
        });
    }

    /// RTP counters of that side (what arrived on its RTP port), as of the thread's
    /// last batch.
    pub fn stats(&self, side: Side) -> LegStats {
        lock(&self.shared.rtp).stats(side)
    }

    /// The address that side's phone was learnt at (RTP), if it was, as of the
    /// thread's last batch (so a [`set_signalled`](Self::set_signalled) that forgets
    /// what was learnt shows here once the thread has applied it, within 10 ms).
    pub fn latched(&self, side: Side) -> Option<SocketAddr> {
        lock(&self.shared.rtp).latched(side)
    }

    /// Whether no RTP was accepted on either side for `timeout` while not on hold
    /// ([`MediaSession::timed_out`] of the RTP session: RTCP does not keep a call
    /// alive).
    pub fn timed_out(&self, timeout: Duration) -> bool {
        let mut rtp = lock(&self.shared.rtp).clone();
        rtp.set_on_hold(self.shared.on_hold.load(Ordering::Acquire));
        rtp.timed_out(Instant::now(), timeout)
    }

    fn command(&self, command: Command) {
        // A thread that is gone (relay shut down) has nothing left to change.
        let _ = self.worker.send(command);
    }
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        self.command(Command::Remove { id: self.id });
        self.worker.load.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for RelaySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySession")
            .field("id", &self.id)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

pub(crate) fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}
