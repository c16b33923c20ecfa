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
//!
//! ```text
//! cargo run --release -p switchboard-relay --example relay_load -- --target rtpengine \
//!     --ng 127.0.0.1:22222 --calls 1000 --seconds 10
//! ```
//!
//! `--target rtpengine` points the same clients at a running rtpengine instead of the
//! in-process relay: each call is set up with an ng `offer` (SDP naming side A's client
//! socket) and `answer` (side B's), the clients send to the ports of the SDPs rtpengine
//! rewrote, and each call is `delete`d at the end. The CPU measured is then that of all
//! threads of the rtpengine process (`/proc/<pid>/task/<tid>/stat`) over the same window.
//! `--json` adds one line `json: {...}` with the figures (read by `bench/media.py`).

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, ValueEnum};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use nix::unistd::{SysconfVar, sysconf};
use serde::{Deserialize, Serialize};
use switchboard_media::rtp::{HEADER_LEN, RtpHeader};
use switchboard_relay::{Relay, RelayConfig, RelaySession, Side};

/// What relays the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Switchboard's relay (this crate), started in this process.
    Switchboard,
    /// A running rtpengine, set up over its ng control protocol.
    Rtpengine,
}

#[derive(Parser, Debug)]
#[command(about = "Streams G.711 through the media relay (or rtpengine) and measures it")]
struct Args {
    /// What relays the calls.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    target: Target,
    /// rtpengine's ng control address (`--target rtpengine`).
    #[arg(long, default_value = "127.0.0.1:22222")]
    ng: SocketAddr,
    /// rtpengine's pid, whose threads' CPU is measured (default: the only process
    /// named "rtpengine").
    #[arg(long)]
    rtpengine_pid: Option<u32>,
    /// Also print the figures as one line `json: {...}`.
    #[arg(long)]
    json: bool,
    /// Relay forwarding threads (`--target switchboard`).
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

/// The target under test, with the calls set up on it.
enum Backend {
    Relay {
        relay: Relay,
        sessions: Vec<RelaySession>,
    },
    Rtpengine {
        ng: Ng,
        pid: u32,
        /// Call-IDs of the calls set up.
        calls: Vec<String>,
    },
}

impl Backend {
    /// Sets up one call whose sides are signalled at `a` and `b`; returns the addresses
    /// sides A and B send their RTP to.
    fn add_call(&mut self, bind: IpAddr, a: SocketAddr, b: SocketAddr) -> [SocketAddr; 2] {
        match self {
            Backend::Relay { relay, sessions } => {
                let session = relay.allocate().expect("relay session");
                session.set_signalled(Side::A, Some(a));
                session.set_signalled(Side::B, Some(b));
                let port = |side| SocketAddr::new(bind, session.port(side));
                let to = [port(Side::A), port(Side::B)];
                sessions.push(session);
                to
            }
            Backend::Rtpengine { ng, calls, .. } => {
                let call_id = format!("{}-call-{}", ng.prefix, calls.len());
                match ng.call(&call_id, a, b) {
                    Ok(to) => {
                        calls.push(call_id);
                        to
                    }
                    Err(e) => {
                        eprintln!("rtpengine: call {call_id}: {e}");
                        self.finish();
                        std::process::exit(1);
                    }
                }
            }
        }
    }

    /// CPU seconds of the target's threads, by thread name: the relay's `media-N`
    /// threads, or every thread of the rtpengine process.
    fn cpu(&self) -> BTreeMap<String, f64> {
        match self {
            Backend::Relay { .. } => {
                let mut all = thread_cpu("/proc/self/task");
                all.retain(|name, _| name.starts_with("media-"));
                all
            }
            Backend::Rtpengine { pid, .. } => thread_cpu(&format!("/proc/{pid}/task")),
        }
    }

    /// Ends every call; returns the RTP packets rtpengine counted for them (none for
    /// the relay, whose totals are read directly).
    fn finish(&mut self) -> u64 {
        match self {
            Backend::Relay { sessions, .. } => {
                sessions.clear();
                0
            }
            Backend::Rtpengine { ng, calls, .. } => {
                let mut packets = 0;
                for call_id in calls.drain(..) {
                    match ng.delete(&call_id) {
                        Ok(n) => packets += n,
                        Err(e) => eprintln!("rtpengine: delete {call_id}: {e}"),
                    }
                }
                packets
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    assert!(args.clients > 0 && args.sockets > 0);
    let mut backend = match args.target {
        Target::Switchboard => Backend::Relay {
            relay: Relay::start(RelayConfig {
                bind_ip: args.bind,
                port_min: args.port_min,
                port_max: args.port_max,
                threads: args.threads,
            })
            .expect("relay start"),
            sessions: Vec::with_capacity(args.calls),
        },
        Target::Rtpengine => {
            let pid = args.rtpengine_pid.unwrap_or_else(|| {
                find_process("rtpengine").unwrap_or_else(|| {
                    eprintln!("no single process named rtpengine: pass --rtpengine-pid");
                    std::process::exit(2);
                })
            });
            let mut ng = Ng::new(args.ng).expect("ng socket");
            if let Err(e) = ng.ping() {
                eprintln!("rtpengine at {}: {e}", args.ng);
                std::process::exit(2);
            }
            Backend::Rtpengine {
                ng,
                pid,
                calls: Vec::with_capacity(args.calls),
            }
        }
    };

    let mut plans: Vec<Plan> = (0..args.clients)
        .map(|_| Plan {
            pairs: (0..args.sockets)
                .map(|_| [client_socket(args.bind), client_socket(args.bind)])
                .collect(),
            calls: Vec::new(),
        })
        .collect();
    let setup = Instant::now();
    for i in 0..args.calls {
        let plan = &mut plans[i % args.clients];
        let pair = (i / args.clients) % args.sockets;
        let [a, b] = &plan.pairs[pair];
        let relay = backend.add_call(args.bind, a.local_addr().unwrap(), b.local_addr().unwrap());
        plan.calls.push(Call {
            pair,
            relay,
            ssrc: [2 * i as u32 + 1, 2 * i as u32 + 2],
            seq: [0, 0],
        });
    }
    let setup = setup.elapsed();
    let what = match args.target {
        Target::Switchboard => format!("relay: {} thread(s)", args.threads),
        Target::Rtpengine => format!("rtpengine (ng {})", args.ng),
    };
    println!(
        "{what}, {} calls ({} streams, {} packets/s offered, set up in {:.2} s), {} client thread(s), {} s",
        args.calls,
        2 * args.calls,
        2 * args.calls * 50,
        setup.as_secs_f64(),
        args.clients,
        args.seconds
    );

    let totals = |backend: &Backend| match backend {
        Backend::Relay { relay, .. } => Some(relay.totals()),
        Backend::Rtpengine { .. } => None,
    };
    let before = totals(&backend);
    let cpu_before = backend.cpu();
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
    let cpu_after = backend.cpu();
    let after = totals(&backend);

    let secs = args.seconds as f64;
    let target_threads: BTreeMap<String, f64> = cpu_after
        .iter()
        .map(|(name, &t)| {
            (
                name.clone(),
                t - cpu_before.get(name).copied().unwrap_or(0.0),
            )
        })
        .collect();
    let target_cpu: f64 = target_threads.values().sum();
    let lost = counts.sent.saturating_sub(counts.received);
    let loss_pct = 100.0 * lost as f64 / counts.sent.max(1) as f64;
    println!(
        "clients: sent {} packets ({} failed), received {}: loss {loss_pct:.3}%",
        counts.sent, counts.send_failed, counts.received,
    );
    let mut extra = serde_json::Map::new();
    // What the target itself counted: packets the relay forwarded, or packets
    // rtpengine received on the calls' RTP ports (from the `delete` answers).
    let counted = match (before, after) {
        (Some(before), Some(after)) => {
            let forwarded = (after.packets - before.packets)
                - (after.no_destination - before.no_destination)
                - (after.send_errors - before.send_errors);
            println!(
                "relay: forwarded {forwarded} packets = {:.0} packets/s (foreign {}, no destination {}, send errors {}, truncated {})",
                forwarded as f64 / secs,
                after.foreign - before.foreign,
                after.no_destination - before.no_destination,
                after.send_errors - before.send_errors,
                after.truncated - before.truncated
            );
            for (k, v) in [
                ("foreign", after.foreign - before.foreign),
                (
                    "no_destination",
                    after.no_destination - before.no_destination,
                ),
                ("send_errors", after.send_errors - before.send_errors),
                ("truncated", after.truncated - before.truncated),
            ] {
                extra.insert(k.into(), v.into());
            }
            forwarded
        }
        _ => {
            let received = backend.finish();
            println!(
                "rtpengine: received {received} RTP packets on the calls' ports = {:.0} packets/s",
                received as f64 / secs
            );
            received
        }
    };
    let per_thread: Vec<String> = target_threads
        .iter()
        .filter(|(_, t)| **t > 0.0)
        .map(|(n, t)| format!("{n} {t:.2} s"))
        .collect();
    // Packets per core: what came out of the target (received by the clients) per
    // second of the target's CPU, the same count for both targets.
    let per_core = if target_cpu > 0.0 {
        counts.received as f64 / target_cpu
    } else {
        f64::NAN
    };
    let streams = 2 * args.calls;
    println!(
        "{} CPU: {target_cpu:.2} s in {secs} s ({}) = {:.0}% of a core; {per_core:.0} packets/s per core of its CPU; {:.1}% of a core per 1,000 streams",
        match args.target {
            Target::Switchboard => "relay",
            Target::Rtpengine => "rtpengine",
        },
        per_thread.join(", "),
        100.0 * target_cpu / secs,
        100.0 * target_cpu / secs / streams as f64 * 1000.0,
    );
    println!("client CPU: {:.2} s", counts.cpu);
    if args.json {
        let json = serde_json::json!({
            "target": format!("{:?}", args.target).to_lowercase(),
            "calls": args.calls,
            "streams": streams,
            "seconds": secs,
            "relay_threads": matches!(args.target, Target::Switchboard).then_some(args.threads),
            "client_threads": args.clients,
            "sockets_per_side": args.sockets,
            "setup_seconds": setup.as_secs_f64(),
            "offered_pps": streams * 50,
            "sent": counts.sent,
            "received": counts.received,
            "send_failed": counts.send_failed,
            "loss_pct": loss_pct,
            "relayed_pps": counts.received as f64 / secs,
            "target_counted": counted,
            "target_cpu_s": target_cpu,
            "target_cores": target_cpu / secs,
            "target_threads_cpu_s": target_threads,
            "pps_per_core": if per_core.is_finite() { Some(per_core) } else { None },
            "cores_per_1000_streams": target_cpu / secs / streams as f64 * 1000.0,
            "client_cpu_s": counts.cpu,
            "relay_counters": extra,
        });
        println!("json: {json}");
    }
    backend.finish();
    if let Backend::Relay { relay, .. } = backend {
        relay.shutdown();
    }
}

/// The pid of the only process whose name (`comm`) is `name`.
fn find_process(name: &str) -> Option<u32> {
    let mut found = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|d| d.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        });
    let pid = found.next()?;
    found.next().is_none().then_some(pid)
}

/// One ng request. serde_bencode writes a struct's fields as a dictionary, with keys
/// sorted as bencode requires; `None`s are left out.
#[derive(Serialize)]
struct NgRequest<'a> {
    command: &'a str,
    #[serde(rename = "call-id", skip_serializing_if = "Option::is_none")]
    call_id: Option<&'a str>,
    #[serde(rename = "from-tag", skip_serializing_if = "Option::is_none")]
    from_tag: Option<&'a str>,
    #[serde(rename = "to-tag", skip_serializing_if = "Option::is_none")]
    to_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sdp: Option<&'a str>,
}

/// The parts of an ng answer used here (the rest is ignored).
#[derive(Deserialize)]
struct NgAnswer {
    result: String,
    #[serde(rename = "error-reason")]
    error_reason: Option<String>,
    sdp: Option<String>,
    totals: Option<NgTotals>,
}

#[derive(Deserialize)]
struct NgTotals {
    #[serde(rename = "RTP")]
    rtp: Option<NgStats>,
}

#[derive(Deserialize)]
struct NgStats {
    packets: u64,
}

/// A client of rtpengine's ng protocol: `<cookie> <bencoded dictionary>` over UDP,
/// answered with the same cookie. rtpengine caches answers by cookie, so a request
/// sent again after a lost answer gets the same answer, not a second call.
struct Ng {
    socket: std::net::UdpSocket,
    /// Makes this run's cookies and Call-IDs unique.
    prefix: String,
    next: u64,
    buf: Vec<u8>,
}

impl Ng {
    fn new(to: SocketAddr) -> std::io::Result<Self> {
        let local: SocketAddr = match to {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(to)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(Self {
            socket,
            prefix: format!("rl{}-{millis}", std::process::id()),
            next: 0,
            buf: vec![0; 65536],
        })
    }

    fn request(&mut self, request: &NgRequest<'_>) -> Result<NgAnswer, String> {
        let cookie = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        let mut message = format!("{cookie} ").into_bytes();
        message.extend(serde_bencode::to_bytes(request).map_err(|e| e.to_string())?);
        for _ in 0..3 {
            self.socket.send(&message).map_err(|e| e.to_string())?;
            loop {
                let n = match self.socket.recv(&mut self.buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break; // send again
                    }
                    Err(e) => return Err(e.to_string()),
                };
                // An answer to an earlier, resent request is skipped.
                let Some(body) = self.buf[..n].strip_prefix(cookie.as_bytes()) else {
                    continue;
                };
                let Some(body) = body.strip_prefix(b" ") else {
                    continue;
                };
                let answer: NgAnswer =
                    serde_bencode::from_bytes(body).map_err(|e| format!("bad answer: {e}"))?;
                return match answer.result.as_str() {
                    "ok" | "pong" => Ok(answer),
                    other => Err(format!(
                        "{other}: {}",
                        answer.error_reason.as_deref().unwrap_or("")
                    )),
                };
            }
        }
        Err("no answer".into())
    }

    fn ping(&mut self) -> Result<(), String> {
        self.request(&NgRequest {
            command: "ping",
            call_id: None,
            from_tag: None,
            to_tag: None,
            sdp: None,
        })
        .map(drop)
    }

    /// `offer` (caller's SDP: side A's socket), then `answer` (callee's SDP: side B's
    /// socket); returns where sides A and B send their RTP, from the SDPs rtpengine
    /// wrote for them (the answer's goes to A, the offer's to B).
    fn call(
        &mut self,
        call_id: &str,
        a: SocketAddr,
        b: SocketAddr,
    ) -> Result<[SocketAddr; 2], String> {
        let offer = self.request(&NgRequest {
            command: "offer",
            call_id: Some(call_id),
            from_tag: Some("caller"),
            to_tag: None,
            sdp: Some(&sdp(a)),
        })?;
        let answer = self.request(&NgRequest {
            command: "answer",
            call_id: Some(call_id),
            from_tag: Some("caller"),
            to_tag: Some("callee"),
            sdp: Some(&sdp(b)),
        })?;
        let media = |answer: &NgAnswer| {
            answer
                .sdp
                .as_deref()
                .and_then(media_addr)
                .ok_or_else(|| format!("no audio address in {:?}", answer.sdp))
        };
        Ok([media(&answer)?, media(&offer)?])
    }

    /// `delete`; returns the RTP packets rtpengine counted for the call.
    fn delete(&mut self, call_id: &str) -> Result<u64, String> {
        let answer = self.request(&NgRequest {
            command: "delete",
            call_id: Some(call_id),
            from_tag: Some("caller"),
            to_tag: None,
            sdp: None,
        })?;
        Ok(answer
            .totals
            .and_then(|t| t.rtp)
            .map_or(0, |rtp| rtp.packets))
    }
}

/// A phone's SDP offering PCMA (G.711 A-law) at `at`.
fn sdp(at: SocketAddr) -> String {
    let (family, ip, port) = match at {
        SocketAddr::V4(v4) => ("IP4", v4.ip().to_string(), v4.port()),
        SocketAddr::V6(v6) => ("IP6", v6.ip().to_string(), v6.port()),
    };
    format!(
        "v=0\r\no=- {port} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
    )
}

/// The audio stream's address in an SDP (its `c=` line, session or media level).
fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let (mut ip, mut port) = (None, None);
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(c) = line.strip_prefix("c=IN ") {
            ip = c.split_whitespace().nth(1).and_then(|a| a.parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next().and_then(|p| p.parse().ok());
        }
    }
    Some(SocketAddr::new(ip?, port?))
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
            send_headers: switchboard_relay::batch::send_headers(BATCH)
                .expect("loopback for the sendmmsg headers"),
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

/// CPU seconds (user + system) of each thread of a process, by name, from its
/// `/proc/<pid>/task` directory.
fn thread_cpu(tasks: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(tasks) else {
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
