//! A forwarding thread: one `mio::Poll` over the sockets of the sessions it owns, their
//! `MediaSession`s, and batched reads and sends with no allocation per packet.
//!
//! Each socket is registered (edge-triggered) once, with its descriptor as the token,
//! and stays registered while its pair waits idle for this thread's next call (see
//! `socket`); `by_fd` says which session and socket a descriptor is now: `slot * 4 +
//! socket`, where `socket` is 0 = A's RTP, 1 = A's RTCP, 2 = B's RTP, 3 = B's RTCP, so
//! a packet read from socket `i` leaves from socket `(i + 2) % 4`. A readable socket is read with
//! `recvmmsg` until its queue is empty, [`BATCH`] datagrams a call; the packets of one read
//! all came to one socket and so all leave from one socket, with one `sendmmsg` (or a
//! `send_to` when there is one). A socket that is still not empty after [`TURN`] reads
//! (a flood) waits for its next turn after the other ready sockets, so one source
//! cannot starve the thread's other calls.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use slab::Slab;
use switchboard_media::relay::{MediaSession, Side, Verdict};

use crate::socket::BoundPair;
use crate::{RelayTotals, Shared};

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Receive buffer per datagram: RTP stays under the path MTU (1,500); anything larger
/// arrives cut short (`MSG_TRUNC`) and is dropped.
const BUFFER: usize = 2048;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// Reads of one socket before the other ready sockets get their turn.
const TURN: usize = 4;
/// How soon a snapshot the API was reading at the time is published again.
const REPUBLISH: Duration = Duration::from_millis(1);
/// While a thread has sessions, how long a command may wait for it: it is not woken
/// for each one (an eventfd write and a context switch, several per call, were a tenth
/// of a call storm's CPU). A command is applied before any packet read after it, so
/// only a session's first packets can wait this long, queued in its sockets.
const COMMAND_DELAY: Duration = Duration::from_millis(10);
const WAKER: Token = Token(usize::MAX);
/// `by_fd` of a descriptor registered while its pair is idle: what it reads is dropped.
const IDLE: u32 = u32::MAX - 1;
/// `by_fd` of a descriptor that is not this thread's.
const NONE: u32 = u32::MAX;
const SIDES: [Side; 2] = [Side::A, Side::B];

/// RTP or RTCP: which of a call's two `MediaSession`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Rtp = 0,
    Rtcp = 1,
}

/// What the API asks of a thread.
pub(crate) enum Command {
    Add(Box<NewSession>),
    Signal {
        id: u64,
        side: Side,
        component: Component,
        addr: Option<SocketAddr>,
    },
    Hold {
        id: u64,
        on_hold: bool,
    },
    Remove {
        id: u64,
    },
    Stop,
}

/// A session handed to a thread.
pub(crate) struct NewSession {
    pub(crate) id: u64,
    /// A's pair, B's pair.
    pub(crate) pairs: [BoundPair; 2],
    pub(crate) rtp: MediaSession,
    pub(crate) rtcp: MediaSession,
    pub(crate) shared: Arc<Shared>,
}

/// The API's side of a thread.
pub(crate) struct WorkerHandle {
    commands: Sender<Command>,
    waker: Waker,
    /// The thread sleeps with no timeout (it has no sessions): a command must wake it.
    asleep: Arc<AtomicBool>,
    /// Sessions on this thread (kept by the API: allocation adds, dropping subtracts).
    pub(crate) load: AtomicUsize,
    pub(crate) totals: Arc<SharedTotals>,
}

impl WorkerHandle {
    /// Queues a command and wakes the thread. Fails (dropping the command) when the
    /// thread is gone.
    pub(crate) fn send(&self, command: Command) -> Result<(), ()> {
        let stop = matches!(command, Command::Stop);
        self.commands.send(command).map_err(drop)?;
        // Pairs with the fence in `Worker::sleep_forever`: either the thread sees
        // the command before it sleeps, or this sees that it sleeps.
        fence(Ordering::SeqCst);
        if stop || self.asleep.swap(false, Ordering::AcqRel) {
            // A failed wake-up (never seen in practice) only delays the command to the
            // thread's next readiness event.
            let _ = self.waker.wake();
        }
        Ok(())
    }
}

/// A thread's counters, added to once per poll batch.
#[derive(Debug, Default)]
pub(crate) struct SharedTotals {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    foreign: AtomicU64,
    no_destination: AtomicU64,
    send_errors: AtomicU64,
    truncated: AtomicU64,
}

impl SharedTotals {
    fn add(&self, t: &RelayTotals) {
        let add = |a: &AtomicU64, v: u64| {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&self.packets, t.packets);
        add(&self.bytes, t.bytes);
        add(&self.lost, t.lost);
        add(&self.foreign, t.foreign);
        add(&self.no_destination, t.no_destination);
        add(&self.send_errors, t.send_errors);
        add(&self.truncated, t.truncated);
    }

    pub(crate) fn load(&self) -> RelayTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RelayTotals {
            packets: get(&self.packets),
            bytes: get(&self.bytes),
            lost: get(&self.lost),
            foreign: get(&self.foreign),
            no_destination: get(&self.no_destination),
            send_errors: get(&self.send_errors),
            truncated: get(&self.truncated),
        }
    }
}

/// Starts thread "media-`n`".
pub(crate) fn spawn(n: usize) -> io::Result<(Arc<WorkerHandle>, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (commands, receiver) = mpsc::channel();
    let totals = Arc::new(SharedTotals::default());
    let asleep = Arc::new(AtomicBool::new(false));
    let handle = Arc::new(WorkerHandle {
        commands,
        waker,
        asleep: asleep.clone(),
        load: AtomicUsize::new(0),
        totals: totals.clone(),
    });
    let thread = std::thread::Builder::new()
        .name(format!("media-{n}"))
        .spawn(move || {
            // Built here: the batch headers hold raw pointers and stay on this thread.
            let worker = Worker {
                index: n,
                poll,
                by_fd: Vec::new(),
                commands: receiver,
                sessions: Slab::new(),
                ids: HashMap::new(),
                dirty: Vec::new(),
                unfinished: Vec::new(),
                io: BatchIo::new(),
                counters: RelayTotals::default(),
                totals,
                asleep,
                stop: false,
            };
            worker.run(Events::with_capacity(EVENTS));
        })?;
    Ok((handle, thread))
}

/// A session on its thread.
struct Entry {
    id: u64,
    /// A's pair, B's pair: socket `i` (of the token) is `pairs[i / 2].socket(i % 2)`.
    pairs: [BoundPair; 2],
    /// RTP, RTCP.
    media: [MediaSession; 2],
    shared: Arc<Shared>,
    /// Changed since its snapshot was last published.
    dirty: bool,
    /// RTP losses per side already added to the totals.
    lost_reported: [u64; 2],
}

impl Entry {
    fn socket(&self, i: usize) -> &UdpSocket {
        self.pairs[i / 2].socket(i % 2)
    }
}

struct Worker {
    /// This thread's number: its pairs' idle queue.
    index: usize,
    poll: Poll,
    /// What each registered descriptor is: `slot * 4 + socket`, [`IDLE`] or [`NONE`].
    by_fd: Vec<u32>,
    commands: Receiver<Command>,
    sessions: Slab<Entry>,
    ids: HashMap<u64, usize>,
    /// Slots whose snapshot is to be published at the end of the poll batch.
    dirty: Vec<usize>,
    /// Sockets (slot, socket) left readable when their turn ended.
    unfinished: Vec<(usize, usize)>,
    io: BatchIo,
    /// This batch's counts, added to `totals` at its end.
    counters: RelayTotals,
    totals: Arc<SharedTotals>,
    /// Shared with the handle: see `WorkerHandle::asleep`.
    asleep: Arc<AtomicBool>,
    stop: bool,
}

impl Worker {
    fn run(mut self, mut events: Events) {
        let mut turn = Vec::new();
        while !self.stop {
            let timeout = if !self.unfinished.is_empty() {
                Some(Duration::ZERO)
            } else if !self.dirty.is_empty() {
                Some(REPUBLISH)
            } else if !self.sessions.is_empty() {
                Some(COMMAND_DELAY)
            } else if self.sleep_forever() {
                None
            } else {
                continue; // commands came in meanwhile
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // epoll_wait itself failing is not something a retry fixes.
                break;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        self.apply_commands();
                    }
                    Token(fd) => self.on_readable(fd),
                }
                if self.stop {
                    break;
                }
            }
            // Sockets whose turn ended continue now, after everyone else.
            std::mem::swap(&mut turn, &mut self.unfinished);
            for (slot, socket) in turn.drain(..) {
                self.read_socket(slot, socket);
            }
            self.apply_commands();
            self.publish();
        }
        self.publish();
        // The sessions drop with the worker: sockets close, ports go back to the pool.
    }

    /// A registered descriptor is readable: a session's socket is read; an idle
    /// pair's (late packets of its last call, or strangers) is emptied. Commands are
    /// applied first, so that a pair just handed to a call reads as the call's.
    fn on_readable(&mut self, fd: usize) {
        self.apply_commands();
        match self.by_fd.get(fd).copied().unwrap_or(NONE) {
            NONE => {}
            IDLE => self.discard(fd),
            t => self.read_socket(t as usize / 4, t as usize % 4),
        }
    }

    /// Drops what an idle socket received, a turn's worth at most (the rest, under a
    /// flood, waits for the next arrival's event or the drain when a call takes it).
    fn discard(&mut self, fd: usize) {
        for _ in 0..TURN {
            match self.io.recv(fd as RawFd) {
                Ok(n) if n == BATCH => {}
                _ => return,
            }
        }
    }

    /// Reads socket `socket` of session `slot` until it is empty or its turn ends.
    /// Queued commands are applied before each read, so that a change made through
    /// the API applies to every packet read after it.
    ///
    /// "Empty" is a read that returned fewer than [`BATCH`] datagrams, not only one
    /// that would block: `recvmmsg` with `MSG_DONTWAIT` stops short only when the
    /// queue ran dry (an unconnected UDP socket without `IP_RECVERR` reports no
    /// errors), and Linux then signals the socket's epoll entry again when the next
    /// datagram is queued (UDP wakes its waiters whenever its receive queue goes from
    /// empty to not empty), exactly as after a read that would block. At 50 packets a
    /// second per socket most reads bring one datagram, so this saves a third of the
    /// relay's system calls (measured: about 10% of its CPU per packet). This leans on
    /// Linux's epoll, which the batch calls tie the crate to anyway; mio's portable
    /// rule is to read until `WouldBlock`.
    fn read_socket(&mut self, slot: usize, socket: usize) {
        for _ in 0..TURN {
            self.apply_commands();
            if self.stop {
                return;
            }
            // Gone (or a stale event of a reused slot: the read then finds nothing).
            let Some(entry) = self.sessions.get_mut(slot) else {
                return;
            };
            match forward(entry, socket, &mut self.io, &mut self.counters) {
                Ok(n) => {
                    if !entry.dirty {
                        entry.dirty = true;
                        self.dirty.push(slot);
                    }
                    // A short read found the queue empty: the next datagram makes a
                    // new edge (see `read_socket`), so a read only to see WouldBlock
                    // would be a wasted system call per packet.
                    if n < BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Nothing else is expected from an unconnected UDP socket; stop reading
                // it until its next packet rather than spin.
                Err(_) => return,
            }
        }
        self.unfinished.push((slot, socket));
    }

    /// Says the thread is about to sleep with no timeout; false (and awake) when
    /// commands arrived meanwhile, which it has then applied.
    fn sleep_forever(&mut self) -> bool {
        self.asleep.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        let before = self.sessions.len();
        let applied = self.apply_commands();
        if applied || self.stop || self.sessions.len() != before {
            self.asleep.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Applies the queued commands; true when there were any.
    fn apply_commands(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.commands.try_recv() {
                Ok(command) => {
                    any = true;
                    self.apply(command);
                }
                Err(TryRecvError::Empty) => return any,
                Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    return any;
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Add(new) => self.add(*new),
            Command::Signal {
                id,
                side,
                component,
                addr,
            } => self.change(id, |e| {
                e.media[component as usize].set_signalled(side, addr)
            }),
            Command::Hold { id, on_hold } => self.change(id, |e| {
                for m in &mut e.media {
                    m.set_on_hold(on_hold);
                }
            }),
            Command::Remove { id } => {
                if let Some(slot) = self.ids.remove(&id) {
                    let mut entry = self.sessions.remove(slot);
                    report_lost(&mut entry, &mut self.counters);
                    for pair in entry.pairs {
                        let fds = [pair.rtp.as_raw_fd(), pair.rtcp.as_raw_fd()];
                        // Still registered: closing a socket also unregisters it.
                        let state = if pair.recycle(self.index) { IDLE } else { NONE };
                        for fd in fds {
                            self.set_fd(fd, state);
                        }
                    }
                }
            }
            Command::Stop => self.stop = true,
        }
    }

    fn add(&mut self, new: NewSession) {
        let NewSession {
            id,
            mut pairs,
            rtp,
            rtcp,
            shared,
        } = new;
        let slot = self.sessions.vacant_key();
        for pair in &mut pairs {
            for c in 0..2 {
                let fd = pair.socket(c).as_raw_fd();
                if !pair.registered
                    && self
                        .poll
                        .registry()
                        .register(pair.socket_mut(c), Token(fd as usize), Interest::READABLE)
                        .is_err()
                {
                    // Out of epoll watches: the session cannot forward. Its sockets
                    // close (which also unregisters them) and its ports go back; the
                    // call sees no media and times out.
                    return;
                }
            }
            pair.registered = true;
        }
        for (i, pair) in pairs.iter().enumerate() {
            for c in 0..2 {
                self.set_fd(pair.socket(c).as_raw_fd(), (slot * 4 + i * 2 + c) as u32);
            }
        }
        self.sessions.insert(Entry {
            id,
            pairs,
            media: [rtp, rtcp],
            shared,
            dirty: false,
            lost_reported: [0; 2],
        });
        self.ids.insert(id, slot);
    }

    fn set_fd(&mut self, fd: RawFd, state: u32) {
        let fd = fd as usize;
        if self.by_fd.len() <= fd {
            self.by_fd.resize(fd + 1, NONE);
        }
        self.by_fd[fd] = state;
    }

    fn change(&mut self, id: u64, f: impl FnOnce(&mut Entry)) {
        let Some(&slot) = self.ids.get(&id) else {
            return;
        };
        let entry = &mut self.sessions[slot];
        debug_assert_eq!(entry.id, id);
        f(entry);
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Publishes the snapshots of the sessions changed in this batch and adds the
    /// batch's counts to the totals. A snapshot the API holds locked right now is left
    /// for the next batch (at most [`REPUBLISH`] later) rather than waited for.
    fn publish(&mut self) {
        let sessions = &mut self.sessions;
        let counters = &mut self.counters;
        self.dirty.retain(|&slot| {
            let Some(entry) = sessions.get_mut(slot) else {
                return false;
            };
            if !entry.dirty {
                return false;
            }
            report_lost(entry, counters);
            let mut snapshot = match entry.shared.rtp.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return true,
            };
            snapshot.clone_from(&entry.media[Component::Rtp as usize]);
            drop(snapshot);
            entry.dirty = false;
            false
        });
        if self.counters != RelayTotals::default() {
            self.totals.add(&self.counters);
            self.counters = RelayTotals::default();
        }
    }
}

/// Adds what the session lost since last time to the totals (only increases: a late
/// packet lowers a stream's loss, never the counter).
fn report_lost(entry: &mut Entry, counters: &mut RelayTotals) {
    for (i, side) in SIDES.into_iter().enumerate() {
        let lost = entry.media[Component::Rtp as usize].stats(side).lost;
        if lost > entry.lost_reported[i] {
            counters.lost += lost - entry.lost_reported[i];
            entry.lost_reported[i] = lost;
        }
    }
}

/// One read of `socket` and the forwarding of what it brought. Returns how many
/// datagrams were read (an error `WouldBlock` when none were queued).
fn forward(
    entry: &mut Entry,
    socket: usize,
    io: &mut BatchIo,
    counters: &mut RelayTotals,
) -> io::Result<usize> {
    let n = io.recv(entry.socket(socket).as_raw_fd())?;
    let now = Instant::now();
    let side = SIDES[socket / 2];
    let media = &mut entry.media[socket % 2];
    let mut out = 0;
    for k in 0..n {
        let Received {
            len,
            from,
            truncated,
        } = io.got[k];
        if truncated {
            counters.truncated += 1;
            continue;
        }
        let Some(from) = from else {
            // No source address: not a UDP datagram from anyone to answer.
            counters.foreign += 1;
            continue;
        };
        match media.on_packet(side, from, &io.bufs[k][..len], now) {
            Verdict::Forward(to) => {
                counters.packets += 1;
                counters.bytes += len as u64;
                io.out[out] = (k, to);
                out += 1;
            }
            Verdict::DropNoDestination => {
                counters.packets += 1;
                counters.bytes += len as u64;
                counters.no_destination += 1;
            }
            Verdict::DropForeign => counters.foreign += 1,
        }
    }
    if out > 0 {
        let sent = io.send(entry.socket((socket + 2) % 4), out);
        counters.send_errors += (out - sent) as u64;
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy)]
struct Received {
    len: usize,
    from: Option<SocketAddr>,
    truncated: bool,
}

/// The buffers and system-call headers of a thread's reads and sends, allocated once.
struct BatchIo {
    bufs: Vec<[u8; BUFFER]>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    /// Separate from `recv_headers`: `sendmmsg` points their address fields at its
    /// arguments, which `recvmmsg` does not reset. `None` when they could not be
    /// initialised (see [`crate::batch::send_headers`]): sends then go one by one.
    send_headers: Option<MultiHeaders<SockaddrStorage>>,
    got: [Received; BATCH],
    /// Packets to send: index into `bufs`/`got`, destination.
    out: [(usize, SocketAddr); BATCH],
}

impl BatchIo {
    fn new() -> Self {
        let nowhere = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Self {
            bufs: vec![[0; BUFFER]; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: crate::batch::send_headers(BATCH),
            got: [Received {
                len: 0,
                from: None,
                truncated: false,
            }; BATCH],
            out: [(0, nowhere); BATCH],
        }
    }

    /// Reads up to [`BATCH`] queued datagrams from `fd` into `bufs`/`got`.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut bufs = self.bufs.iter_mut();
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                bufs.next().expect("BATCH buffers").as_mut_slice(),
            )]
        });
        let received = recvmmsg(
            fd,
            &mut self.recv_headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut n = 0;
        for msg in received {
            self.got[n] = Received {
                len: msg.bytes.min(BUFFER),
                from: msg.address.as_ref().and_then(to_socket_addr),
                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
            };
            n += 1;
        }
        Ok(n)
    }

    /// Sends the first `count` packets of `out` from `socket`; returns how many left.
    /// Nothing is queued for later: a late RTP packet is worth nothing.
    fn send(&mut self, socket: &UdpSocket, count: usize) -> usize {
        let Some(headers) = self.send_headers.as_mut().filter(|_| count > 1) else {
            return self.out[..count]
                .iter()
                .filter(|&&(k, to)| socket.send_to(packet(&self.bufs, &self.got, k), to).is_ok())
                .count();
        };
        let fd = socket.as_raw_fd();
        let mut sent = 0;
        let mut next = 0;
        while next < count {
            let chunk = &self.out[next..count];
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(chunk.get(i).map_or(&[][..], |&(k, _)| {
                    packet(&self.bufs, &self.got, k)
                }))]
            });
            let addrs: [Option<SockaddrStorage>; BATCH] =
                std::array::from_fn(|i| chunk.get(i).map(|&(_, to)| SockaddrStorage::from(to)));
            let result = sendmmsg(
                fd,
                headers,
                slices[..chunk.len()].iter(),
                &addrs[..chunk.len()],
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count);
            match result {
                Ok(0) => next += 1,
                Ok(n) => {
                    sent += n;
                    next += n;
                }
                Err(Errno::EINTR) => {}
                // The socket buffer is full: the rest would not fit either.
                Err(Errno::EAGAIN) => break,
                // This datagram was refused (say, an unroutable destination); the
                // ones after it may well go.
                Err(_) => next += 1,
            }
        }
        sent
    }
}

/// Packet `k` of a batch.
fn packet<'b>(bufs: &'b [[u8; BUFFER]], got: &[Received; BATCH], k: usize) -> &'b [u8] {
    &bufs[k][..got[k].len]
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
