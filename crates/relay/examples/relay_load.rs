//! Load test of the media relay: C calls streaming 20 ms G.711 both ways for D seconds.
//!
//! ```text
//! cargo run --release -p switchboard-relay --example relay_load -- --calls 2000 --seconds 10
//! ```
//!
//! Each call gets a relay session whose sides are signalled at client sockets; every
//! 20 ms each side sends one 172-byte RTP packet (12-byte header with its own SSRC,
//! sequence number and timestamp, 160 bytes of payload). The clients are cheap so that
//! the relay is what is measured: a few client threads, each with a few sockets per
//! side shared by many calls (the relay only checks that a call's packets come from its
//! signalled address, which may be the same for many calls), sending with `sendmmsg`
//! in 1 ms slots and reading with `recvmmsg`. Reported: packets relayed per second, loss
//! (sent vs received by the clients) and the CPU time of the relay's "media-N" threads
//! (`/proc/self/task/<tid>/stat`), hence packets per second per core of relay CPU.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use nix::unistd::{SysconfVar, sysconf};
use switchboard_media::rtp::{HEADER_LEN, RtpHeader};
use switchboard_relay::{Relay, RelayConfig, RelaySession, Side};

#[derive(Parser, Debug)]
#[command(about = "Streams G.711 through the media relay and measures it")]
struct Args {
    /// Relay forwarding threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Concurrent calls (two RTP streams each, 50 packets/s per direction).
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// How long to stream.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Sockets per side per client thread.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Relay port range.
    #[arg(long, default_value_t = 20000)]
    port_min: u16,
    #[arg(long, default_value_t = 29999)]
    port_max: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
}

const PACKET: usize = HEADER_LEN + 160;
const PTIME: Duration = Duration::from_millis(20);
/// Send slots per packet time: each call sends in one of them.
const SLOTS: usize = 20;
const BATCH: usize = 32;
/// How long the clients keep reading after they stop sending.
const DRAIN: Duration = Duration::from_millis(300);

/// One call as a client thread sees it.
struct Call {
    /// Index of the client socket pair its sides are signalled at.
    pair: usize,
    /// The relay's RTP ports of sides A and B.
    relay: [SocketAddr; 2],
    ssrc: [u32; 2],
    seq: [u16; 2],
}

struct Plan {
    /// Per pair: the socket of side A's phone, of side B's.
    pairs: Vec<[UdpSocket; 2]>,
    calls: Vec<Call>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    received: u64,
    send_failed: u64,
    /// CPU seconds of the client thread.
    cpu: f64,
}

fn main() {
    let args = Args::parse();
    assert!(args.clients > 0 && args.sockets > 0);
    let relay = Relay::start(RelayConfig {
        bind_ip: args.bind,
        port_min: args.port_min,
        port_max: args.port_max,
        threads: args.threads,
    })
    .expect("relay start");

    let mut plans: Vec<Plan> = (0..args.clients)
        .map(|_| Plan {
            pairs: (0..args.sockets)
                .map(|_| [client_socket(args.bind), client_socket(args.bind)])
                .collect(),
            calls: Vec::new(),
        })
        .collect();
    let mut sessions: Vec<RelaySession> = Vec::with_capacity(args.calls);
    for i in 0..args.calls {
        let session = relay.allocate().expect("relay session");
        let plan = &mut plans[i % args.clients];
        let pair = (i / args.clients) % args.sockets;
        let [a, b] = &plan.pairs[pair];
        session.set_signalled(Side::A, Some(a.local_addr().unwrap()));
        session.set_signalled(Side::B, Some(b.local_addr().unwrap()));
        let relay_port = |side| SocketAddr::new(args.bind, session.port(side));
        plan.calls.push(Call {
            pair,
            relay: [relay_port(Side::A), relay_port(Side::B)],
            ssrc: [2 * i as u32 + 1, 2 * i as u32 + 2],
            seq: [0, 0],
        });
        sessions.push(session);
    }
    println!(
        "relay: {} thread(s), {} calls ({} streams, {} packets/s offered), {} client thread(s), {} s",
        args.threads,
        args.calls,
        2 * args.calls,
        2 * args.calls * 50,
        args.clients,
        args.seconds
    );

    let before = relay.totals();
    let cpu_before = thread_cpu();
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(args.seconds);
    let clients: Vec<_> = plans
        .into_iter()
        .enumerate()
        .map(|(n, plan)| {
            std::thread::Builder::new()
                .name(format!("client-{n}"))
                .spawn(move || {
                    let cpu = own_cpu();
                    let mut counts = run_client(plan, start, end);
                    counts.cpu = own_cpu() - cpu;
                    counts
                })
                .unwrap()
        })
        .collect();
    let mut counts = Counts::default();
    for c in clients {
        let c = c.join().unwrap();
        counts.sent += c.sent;
        counts.received += c.received;
        counts.send_failed += c.send_failed;
        counts.cpu += c.cpu;
    }
    // Snapshots and totals are published once per batch: let the last ones land.
    std::thread::sleep(Duration::from_millis(20));
    let cpu_after = thread_cpu();
    let after = relay.totals();

    let secs = args.seconds as f64;
    let forwarded = (after.packets - before.packets)
        - (after.no_destination - before.no_destination)
        - (after.send_errors - before.send_errors);
    let cpu = |prefix: &str| -> (f64, Vec<(String, f64)>) {
        let per: Vec<(String, f64)> = cpu_after
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, &t)| {
                (
                    name.clone(),
                    t - cpu_before.get(name).copied().unwrap_or(0.0),
                )
            })
            .collect();
        (per.iter().map(|(_, t)| t).sum(), per)
    };
    let (relay_cpu, relay_threads) = cpu("media-");
    let lost = counts.sent.saturating_sub(counts.received);
    println!(
        "clients: sent {} packets ({} failed), received {}: loss {:.3}%",
        counts.sent,
        counts.send_failed,
        counts.received,
        100.0 * lost as f64 / counts.sent.max(1) as f64
    );
    println!(
        "relay: forwarded {forwarded} packets = {:.0} packets/s (foreign {}, no destination {}, send errors {}, truncated {})",
        forwarded as f64 / secs,
        after.foreign - before.foreign,
        after.no_destination - before.no_destination,
        after.send_errors - before.send_errors,
        after.truncated - before.truncated
    );
    let per_thread: Vec<String> = relay_threads
        .iter()
        .map(|(n, t)| format!("{n} {t:.2} s"))
        .collect();
    println!(
        "relay CPU: {relay_cpu:.2} s in {secs} s ({}) = {:.0}% of a core; {:.0} packets/s per core of relay CPU",
        per_thread.join(", "),
        100.0 * relay_cpu / secs,
        if relay_cpu > 0.0 {
            forwarded as f64 / relay_cpu
        } else {
            f64::NAN
        }
    );
    println!("client CPU: {:.2} s", counts.cpu);
    drop(sessions);
    relay.shutdown();
}

fn client_socket(ip: IpAddr) -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(ip, 0)),
        socket2::Type::DGRAM,
        None,
    )
    .unwrap();
    // Each receives the streams of many calls.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true).unwrap();
    socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    UdpSocket::from_std(socket.into())
}

fn run_client(mut plan: Plan, start: Instant, end: Instant) -> Counts {
    let mut poll = Poll::new().unwrap();
    for (j, pair) in plan.pairs.iter_mut().enumerate() {
        for (s, socket) in pair.iter_mut().enumerate() {
            poll.registry()
                .register(socket, Token(2 * j + s), Interest::READABLE)
                .unwrap();
        }
    }
    // Which calls send in which slot from which pair.
    let mut groups: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); plan.pairs.len()]; SLOTS];
    for (i, call) in plan.calls.iter().enumerate() {
        groups[i % SLOTS][call.pair].push(i);
    }
    let mut io = ClientIo::new();
    let mut counts = Counts::default();
    let mut events = Events::with_capacity(256);
    let slot_time = PTIME / SLOTS as u32;
    let mut tick: u32 = 0;
    let mut next = start;
    let stop = end + DRAIN;
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        if next < end && now >= next {
            for (j, calls) in groups[tick as usize % SLOTS].iter().enumerate() {
                for side in 0..2 {
                    io.send(
                        &plan.pairs[j][side],
                        &mut plan.calls,
                        calls,
                        side,
                        &mut counts,
                    );
                }
            }
            tick += 1;
            next = start + slot_time * tick;
        }
        // Reads between every two slots, even when behind (then without waiting).
        let until = if next < end { next } else { stop };
        poll.poll(
            &mut events,
            Some(until.saturating_duration_since(Instant::now())),
        )
        .unwrap();
        for event in events.iter() {
            let Token(t) = event.token();
            let socket = &plan.pairs[t / 2][t % 2];
            counts.received += io.drain(socket);
        }
    }
    counts
}

/// A client thread's preallocated packets and batch headers.
struct ClientIo {
    packets: [[u8; PACKET]; BATCH],
    addrs: [Option<SockaddrStorage>; BATCH],
    send_headers: MultiHeaders<SockaddrStorage>,
    recv_bufs: [[u8; 256]; BATCH],
    recv_headers: MultiHeaders<SockaddrStorage>,
}

impl ClientIo {
    fn new() -> Self {
        let mut packets = [[0u8; PACKET]; BATCH];
        for p in &mut packets {
            p[HEADER_LEN..].fill(0xd5); // A-law silence
        }
        Self {
            packets,
            addrs: [None; BATCH],
            send_headers: initialised_headers(),
            recv_bufs: [[0; 256]; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Sends the next packet of each of `calls`' side `side` from `socket`.
    fn send(
        &mut self,
        socket: &UdpSocket,
        all: &mut [Call],
        calls: &[usize],
        side: usize,
        counts: &mut Counts,
    ) {
        for chunk in calls.chunks(BATCH) {
            for (k, &i) in chunk.iter().enumerate() {
                let call = &mut all[i];
                let seq = call.seq[side];
                call.seq[side] = seq.wrapping_add(1);
                let head: &mut [u8; HEADER_LEN] =
                    (&mut self.packets[k][..HEADER_LEN]).try_into().unwrap();
                RtpHeader {
                    marker: seq == 0,
                    payload_type: 8,
                    sequence: seq,
                    timestamp: u32::from(seq).wrapping_mul(160),
                    ssrc: call.ssrc[side],
                }
                .write(head);
                self.addrs[k] = Some(SockaddrStorage::from(call.relay[side]));
            }
            let slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|k| [IoSlice::new(&self.packets[k])]);
            let mut next = 0;
            while next < chunk.len() {
                let result = sendmmsg(
                    socket.as_raw_fd(),
                    &mut self.send_headers,
                    slices[next..chunk.len()].iter(),
                    &self.addrs[next..chunk.len()],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(Iterator::count);
                match result {
                    Ok(n) if n > 0 => next += n,
                    Err(Errno::EINTR) => {}
                    _ => {
                        counts.send_failed += 1;
                        next += 1;
                    }
                }
            }
            counts.sent += chunk.len() as u64;
        }
    }

    /// Reads `socket` until it would block; returns the RTP packets read.
    fn drain(&mut self, socket: &UdpSocket) -> u64 {
        let mut got = 0;
        loop {
            let mut bufs = self.recv_bufs.iter_mut();
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().unwrap())]);
            let Ok(received) = recvmmsg(
                socket.as_raw_fd(),
                &mut self.recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) else {
                return got;
            };
            got += received.filter(|m| m.bytes == PACKET).count() as u64;
        }
    }
}

/// `sendmmsg` headers whose stored addresses one `recvmmsg` initialised (counting
/// what `sendmmsg` sent reads them; see the relay's worker).
fn initialised_headers() -> MultiHeaders<SockaddrStorage> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let me = socket.local_addr().unwrap();
    for _ in 0..BATCH {
        socket.send_to(&[0], me).unwrap();
    }
    let mut headers = MultiHeaders::preallocate(BATCH, None);
    let mut bufs = [[0u8; 1]; BATCH];
    let mut b = bufs.iter_mut();
    let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(b.next().unwrap())]);
    let n = recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .unwrap()
    .count();
    assert_eq!(n, BATCH);
    headers
}

/// CPU seconds (user + system) of each thread of this process, by name.
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Some((name, cpu)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            *out.entry(name).or_insert(0.0) += cpu;
        }
    }
    out
}

/// CPU seconds of the calling thread.
fn own_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0.0, |(_, cpu)| cpu)
}

/// A thread's name and CPU seconds from its `stat` file.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let tick = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100) as f64;
    // "tid (comm) state ppid …": the name may hold spaces, so split after its ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 with state as field 3.
    let ticks: f64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    Some((name, ticks / tick))
}
