//! Through real UDP sockets on 127.0.0.1. Each test has its own port range within
//! 30000–31999: below the ephemeral range (32768+), where the test phones' own sockets
//! live, and clear of the load tool's default range (20000–29999), so the two can run
//! side by side.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_media::relay::PROBATION;
use switchboard_media::rtp::{HEADER_LEN, RtpHeader};

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The longest any test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(2);

fn start(port_min: u16, port_max: u16, threads: usize) -> Relay {
    Relay::start(RelayConfig {
        bind_ip: LOCALHOST,
        port_min,
        port_max,
        threads,
    })
    .unwrap()
}

fn phone() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap()
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST, port)
}

/// A G.711 packet: 12-byte header and 160 bytes of payload.
fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut head = [0u8; HEADER_LEN];
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    }
    .write(&mut head);
    let mut p = head.to_vec();
    p.extend((0..160u8).map(|i| i ^ seq as u8));
    p
}

/// An RTCP receiver report from `ssrc`.
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// The next datagram on `socket`, waiting up to [`PATIENCE`].
fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the deadline");
    (buf[..n].to_vec(), from)
}

/// Whether nothing is queued on `socket` right now.
fn nothing_queued(socket: &UdpSocket) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let r = socket.recv_from(&mut buf);
    socket.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Waits up to [`PATIENCE`] for `cond` (a snapshot the forwarding thread publishes).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `packet` from `from` to relay port `port` and expects it, unchanged, at `to`
/// from relay port `out`.
fn crosses(from: &UdpSocket, port: u16, packet: &[u8], to: &UdpSocket, out: u16) {
    from.send_to(packet, at(port)).unwrap();
    let (got, src) = recv(to);
    assert_eq!(got, packet, "bytes arrive unchanged");
    assert_eq!(src, at(out), "from the other side's relay port");
}

/// A session whose sides are signalled at phones `a` and `b` (RTCP at `a_rtcp`/`b_rtcp`
/// when given).
fn signalled(s: &RelaySession, a: &UdpSocket, b: &UdpSocket) {
    s.set_signalled(Side::A, Some(addr(a)));
    s.set_signalled(Side::B, Some(addr(b)));
}

#[test]
fn rtp_and_rtcp_cross_both_ways_unchanged() {
    let relay = start(30000, 30019, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    assert!(pa.is_multiple_of(2) && pb.is_multiple_of(2) && pa != pb);
    let (a, a_rtcp, b, b_rtcp) = (phone(), phone(), phone(), phone());
    signalled(&s, &a, &b);
    s.set_signalled_rtcp(Side::A, Some(addr(&a_rtcp)));
    s.set_signalled_rtcp(Side::B, Some(addr(&b_rtcp)));

    for seq in 0..5 {
        crosses(&a, pa, &rtp(0xa, seq), &b, pb);
        crosses(&b, pb, &rtp(0xb, 100 + seq), &a, pa);
    }
    crosses(&a_rtcp, pa + 1, &rtcp(0xa), &b_rtcp, pb + 1);
    crosses(&b_rtcp, pb + 1, &rtcp(0xb), &a_rtcp, pa + 1);

    wait_until("the stats", || {
        s.stats(Side::A).packets == 5 && s.stats(Side::B).packets == 5
    });
    let stats = s.stats(Side::A);
    assert_eq!((stats.bytes, stats.lost, stats.foreign), (5 * 172, 0, 0));
    assert_eq!(s.latched(Side::A), Some(addr(&a)));
    assert_eq!(s.latched(Side::B), Some(addr(&b)));
    wait_until("the totals", || relay.totals().packets == 12);
    let t = relay.totals();
    assert_eq!(t.bytes, 10 * 172 + 2 * 8);
    assert_eq!((t.foreign, t.no_destination, t.send_errors), (0, 0, 0));
}

#[test]
fn rtcp_goes_to_the_rtp_port_plus_one_by_default() {
    /// A phone's RTP and RTCP sockets on consecutive ports.
    fn phone_pair() -> (UdpSocket, UdpSocket) {
        for _ in 0..100 {
            let rtp = phone();
            let Some(next) = addr(&rtp).port().checked_add(1) else {
                continue;
            };
            if let Ok(rtcp) = UdpSocket::bind(at(next)) {
                return (rtp, rtcp);
            }
        }
        panic!("no two consecutive free ports");
    }
    let relay = start(30020, 30039, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let ((a, a_rtcp), (b, b_rtcp)) = (phone_pair(), phone_pair());
    signalled(&s, &a, &b);
    crosses(&a_rtcp, pa + 1, &rtcp(0xa), &b_rtcp, pb + 1);
    crosses(&b_rtcp, pb + 1, &rtcp(0xb), &a_rtcp, pa + 1);
}

#[test]
fn a_stranger_cannot_hijack_a_call() {
    let relay = start(30100, 30119, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let (a, b, stranger) = (phone(), phone(), phone());
    signalled(&s, &a, &b);
    // Both phones talk first (before that, a stranger in sequence could be learnt).
    for seq in 0..3 {
        crosses(&a, pa, &rtp(0xa, seq), &b, pb);
        crosses(&b, pb, &rtp(0xb, seq), &a, pa);
    }
    // A well-formed stream in sequence, to both sides' ports.
    for seq in 0..10 {
        stranger.send_to(&rtp(66, seq), at(pa)).unwrap();
        stranger.send_to(&rtp(66, seq), at(pb)).unwrap();
    }
    // The phones' packets, sent after the stranger's, still arrive first: none of the
    // stranger's was forwarded.
    for seq in 3..6 {
        crosses(&a, pa, &rtp(0xa, seq), &b, pb);
        crosses(&b, pb, &rtp(0xb, seq), &a, pa);
    }
    assert!(nothing_queued(&stranger), "the stranger receives nothing");
    assert!(nothing_queued(&a) && nothing_queued(&b));
    wait_until("the foreign count", || {
        s.stats(Side::A).foreign == 10 && s.stats(Side::B).foreign == 10
    });
    assert_eq!(s.latched(Side::A), Some(addr(&a)));
    assert_eq!(s.latched(Side::B), Some(addr(&b)));
    wait_until("the totals", || relay.totals().foreign == 20);
}

#[test]
fn a_phone_behind_nat_is_latched_after_its_probation() {
    let relay = start(30200, 30219, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    // A's SDP names an address it does not send from (its private one behind NAT).
    let (sdp_address, nat, b) = (phone(), phone(), phone());
    s.set_signalled(Side::A, Some(addr(&sdp_address)));
    s.set_signalled(Side::B, Some(addr(&b)));
    // Until A is learnt, B's media goes where A's SDP said.
    crosses(&b, pb, &rtp(0xb, 1), &sdp_address, pa);

    let probation = PROBATION as u16;
    for seq in 0..probation - 1 {
        nat.send_to(&rtp(0xa, seq), at(pa)).unwrap();
    }
    // The packet completing the probation is the first to cross.
    crosses(&nat, pa, &rtp(0xa, probation - 1), &b, pb);
    wait_until("the latch", || s.latched(Side::A) == Some(addr(&nat)));
    // B's media now goes to where A really is.
    crosses(&b, pb, &rtp(0xb, 2), &nat, pa);
    crosses(&nat, pa, &rtp(0xa, probation), &b, pb);
    assert!(nothing_queued(&sdp_address));
    wait_until("the counts", || {
        s.stats(Side::A).foreign == u64::from(PROBATION - 1) && s.stats(Side::A).packets == 2
    });
}

#[test]
fn a_new_sdp_address_applies_to_the_next_packet() {
    let relay = start(30700, 30719, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let (a, b, b2) = (phone(), phone(), phone());
    signalled(&s, &a, &b);
    crosses(&a, pa, &rtp(0xa, 0), &b, pb);
    // A re-INVITE moved B's media: the very next packet goes to the new address.
    s.set_signalled(Side::B, Some(addr(&b2)));
    crosses(&a, pa, &rtp(0xa, 1), &b2, pb);
    assert!(nothing_queued(&b));
}

#[test]
fn losses_and_packets_with_nowhere_to_go_are_counted() {
    let relay = start(30720, 30739, 1);
    let s = relay.allocate().unwrap();
    let pa = s.port(Side::A);
    let a = phone();
    // Only A's SDP is known so far.
    s.set_signalled(Side::A, Some(addr(&a)));
    for seq in [0, 1, 3, 4] {
        a.send_to(&rtp(0xa, seq), at(pa)).unwrap();
    }
    wait_until("the counts", || relay.totals().no_destination == 4);
    assert_eq!(relay.totals().lost, 1);
    assert_eq!(s.stats(Side::A).lost, 1);
    assert_eq!(s.stats(Side::A).packets, 4);
}

#[test]
fn jumbo_datagrams_are_dropped() {
    let relay = start(30800, 30819, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let (a, b) = (phone(), phone());
    signalled(&s, &a, &b);
    let mut jumbo = rtp(0xa, 0);
    jumbo.resize(3000, 0);
    a.send_to(&jumbo, at(pa)).unwrap();
    // A packet just over the Ethernet MTU still fits the buffers and crosses whole.
    let mut big = rtp(0xa, 1);
    big.resize(1600, 7);
    crosses(&a, pa, &big, &b, pb);
    wait_until("the truncated count", || relay.totals().truncated == 1);
    assert_eq!(s.stats(Side::A).packets, 1);
}

#[test]
fn an_ended_calls_ports_are_kept_bound_and_reused_clean() {
    let relay = start(30300, 30307, 1);
    assert_eq!(relay.ports_available(), 4);
    let s = relay.allocate().unwrap();
    assert_eq!((relay.ports_available(), relay.sessions()), (2, 1));
    let ports = [s.port(Side::A), s.port(Side::B)];
    drop(s);
    assert_eq!(relay.sessions(), 0);
    // The thread takes the sockets out of its poll and keeps them, still bound.
    wait_until("the idle pairs", || relay.idle_pairs() == 2);
    assert_eq!(relay.ports_available(), 4);
    for p in ports {
        assert!(UdpSocket::bind(at(p)).is_err(), "{p} still bound");
    }
    // A late packet of the ended call is queued at its port meanwhile.
    let late = phone();
    late.send_to(&rtp(9, 1), at(ports[0])).unwrap();
    // Too soon for those pairs: the next call gets the free ones.
    let t = relay.allocate().unwrap();
    assert!(!ports.contains(&t.port(Side::A)) && !ports.contains(&t.port(Side::B)));
    std::thread::sleep(crate::socket::QUARANTINE);
    let u = relay.allocate().unwrap();
    assert_eq!(
        [u.port(Side::A), u.port(Side::B)],
        ports,
        "oldest idle first"
    );
    assert_eq!(relay.idle_pairs(), 0);
    // The late packet was discarded: the new call's phones latch to themselves and
    // the first packet across is theirs.
    let (a, b) = (phone(), phone());
    signalled(&u, &a, &b);
    crosses(&a, ports[0], &rtp(1, 1), &b, ports[1]);
    assert!(nothing_queued(&b));
    wait_until("the totals", || relay.totals().packets == 1);
    assert_eq!(
        relay.totals().foreign,
        0,
        "the late packet never reached the call"
    );
    drop((t, u));
    wait_until("the idle pairs", || relay.idle_pairs() == 4);
    // Shutting down closes them.
    relay.shutdown();
    assert_eq!((relay.idle_pairs(), relay.ports_available()), (0, 4));
    for p in ports {
        UdpSocket::bind(at(p)).expect("RTP port free again");
        UdpSocket::bind(at(p + 1)).expect("RTCP port free again");
    }
}

#[test]
fn idle_pairs_go_back_to_their_threads_calls() {
    // Two threads, each with one call; both end. An idle pair stays registered with
    // the poll of its thread, so each thread's next call must get that thread's pairs
    // (the other thread would drop what arrives at them as an idle pair's).
    let relay = start(30500, 30507, 2);
    let first: Vec<_> = (0..2).map(|_| relay.allocate().unwrap()).collect();
    let ports: Vec<[u16; 2]> = first
        .iter()
        .map(|s| [s.port(Side::A), s.port(Side::B)])
        .collect();
    drop(first);
    wait_until("the idle pairs", || relay.idle_pairs() == 4);
    assert_eq!(
        relay.ports_available(),
        4,
        "every pair of the range is idle"
    );
    // The range is used up: the next calls can only take idle pairs, however young.
    let again: Vec<_> = (0..2).map(|_| relay.allocate().unwrap()).collect();
    let mut reused: Vec<[u16; 2]> = again
        .iter()
        .map(|s| [s.port(Side::A), s.port(Side::B)])
        .collect();
    reused.sort();
    let mut expected = ports.clone();
    expected.sort();
    assert_eq!(
        reused, expected,
        "each call got the two pairs of one ended call"
    );
    for (i, s) in again.iter().enumerate() {
        let (a, b) = (phone(), phone());
        signalled(s, &a, &b);
        crosses(&a, s.port(Side::A), &rtp(3, i as u16), &b, s.port(Side::B));
        crosses(&b, s.port(Side::B), &rtp(4, i as u16), &a, s.port(Side::A));
    }
    assert!(matches!(relay.allocate(), Err(RelayError::PortsExhausted)));
}

/// The scenario of [`out_of_descriptors_an_idle_pair_is_taken`], run in a process of
/// its own whose limit on open files is low.
#[test]
#[ignore = "run by out_of_descriptors_an_idle_pair_is_taken, with a low open-files limit"]
fn with_few_descriptors() {
    if std::env::var_os("RELAY_FEW_DESCRIPTORS").is_none() {
        return;
    }
    let relay = start(31000, 31999, 1);
    let mut sessions = Vec::new();
    let error = loop {
        match relay.allocate() {
            Ok(s) => sessions.push(s),
            Err(e) => break e,
        }
    };
    let emfile = nix::errno::Errno::EMFILE as i32;
    assert!(
        matches!(&error, RelayError::Io(e) if e.raw_os_error() == Some(emfile)),
        "{error}"
    );
    assert!(
        relay.ports_available() > 2,
        "ports were left, descriptors were not"
    );
    drop(sessions.pop());
    wait_until("the idle pairs", || relay.idle_pairs() == 2);
    // Free ports are left but (the failed allocation's first pair closed again aside)
    // no descriptor to bind them: idle pairs, however young, rather than a failed call.
    let s = relay.allocate().expect("a session on idle pairs");
    assert!(relay.idle_pairs() < 2);
    assert!(matches!(relay.allocate(), Err(RelayError::Io(_))));
    drop(s);
}

#[test]
fn out_of_descriptors_an_idle_pair_is_taken() {
    let test_binary = std::env::current_exe().unwrap();
    let run = std::process::Command::new("prlimit")
        .arg("--nofile=64:")
        .arg("--")
        .arg(test_binary)
        .args([
            "--exact",
            "tests::with_few_descriptors",
            "--include-ignored",
        ])
        .env("RELAY_FEW_DESCRIPTORS", "1")
        .output()
        .expect("prlimit (util-linux) runs the test binary");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn allocation_stops_when_the_ports_run_out() {
    let relay = start(30400, 30405, 1);
    let s = relay.allocate().unwrap();
    // One pair is left; a session needs two.
    assert!(matches!(relay.allocate(), Err(RelayError::PortsExhausted)));
    assert_eq!(relay.ports_available(), 1, "the pair it took went back");
    assert_eq!(relay.sessions(), 1);
    drop(s);
    wait_until("the ports", || relay.ports_available() == 3);
    let _again = relay.allocate().unwrap();
    assert_eq!(
        RelayError::PortsExhausted.to_string(),
        "no free RTP/RTCP port pairs left in the relay's range"
    );
}

#[test]
fn ports_taken_by_another_process_are_skipped() {
    let relay = start(30500, 30507, 1);
    // Pairs 30500, 30502, 30504, 30506; someone else holds 30501 and 30504.
    let squatters = [
        UdpSocket::bind(at(30501)).unwrap(),
        UdpSocket::bind(at(30504)).unwrap(),
    ];
    let s = relay.allocate().unwrap();
    assert_eq!((s.port(Side::A), s.port(Side::B)), (30502, 30506));
    assert_eq!(
        relay.ports_available(),
        2,
        "the refused pairs stay in the pool"
    );
    assert!(matches!(relay.allocate(), Err(RelayError::PortsExhausted)));
    assert_eq!(relay.ports_available(), 2);
    drop(squatters);
    let t = relay.allocate().unwrap();
    assert_eq!((t.port(Side::A), t.port(Side::B)), (30500, 30504));
}

#[test]
fn silence_times_out_but_not_on_hold() {
    let relay = start(30600, 30619, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let (a, a_rtcp, b, b_rtcp) = (phone(), phone(), phone(), phone());
    signalled(&s, &a, &b);
    s.set_signalled_rtcp(Side::A, Some(addr(&a_rtcp)));
    s.set_signalled_rtcp(Side::B, Some(addr(&b_rtcp)));
    let short = Duration::from_millis(100);
    assert!(!s.timed_out(Duration::from_secs(60)));
    wait_until("no media at all to time out", || s.timed_out(short));

    let sent = Instant::now();
    crosses(&a, pa, &rtp(0xa, 0), &b, pb);
    wait_until("the packet to count", || s.stats(Side::A).packets == 1);
    if sent.elapsed() < Duration::from_millis(400) {
        assert!(
            !s.timed_out(Duration::from_millis(500)),
            "media keeps it alive"
        );
    }
    wait_until("silence to time out", || s.timed_out(short));

    // RTCP alone does not keep a call alive.
    crosses(&a_rtcp, pa + 1, &rtcp(0xa), &b_rtcp, pb + 1);
    assert!(s.timed_out(short));

    s.set_on_hold(true);
    assert!(!s.timed_out(short), "silence is expected on hold");
    s.set_on_hold(false);
    assert!(s.timed_out(short));
}

#[test]
fn sessions_spread_over_threads_and_shutdown_releases_everything() {
    let relay = start(30900, 30919, 2);
    let sessions: Vec<_> = (0..4).map(|_| relay.allocate().unwrap()).collect();
    assert_eq!(relay.sessions(), 4);
    assert_eq!(relay.ports_available(), 10 - 8);
    for (i, s) in sessions.iter().enumerate() {
        let (a, b) = (phone(), phone());
        signalled(s, &a, &b);
        crosses(&a, s.port(Side::A), &rtp(1, i as u16), &b, s.port(Side::B));
    }
    // The threads have run by now, and named themselves.
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(names.iter().any(|n| n.trim() == "media-1"), "{names:?}");
    assert_eq!(
        sessions.iter().map(RelaySession::id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    relay.shutdown();
    assert_eq!(
        relay.ports_available(),
        10,
        "the threads closed every socket"
    );
    assert!(matches!(relay.allocate(), Err(RelayError::Io(_))));
    drop(sessions);
    assert_eq!(relay.ports_available(), 10);
    relay.shutdown();
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Relay>();
    check::<RelaySession>();
    check::<RelayError>();
    assert!(
        Relay::start(RelayConfig {
            bind_ip: LOCALHOST,
            port_min: 31000,
            port_max: 31001,
            threads: 0,
        })
        .is_err()
    );
}

#[test]
fn a_burst_longer_than_a_turn_crosses_whole_and_in_order() {
    let relay = start(31100, 31119, 1);
    let s = relay.allocate().unwrap();
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    let (a, b) = (phone(), phone());
    signalled(&s, &a, &b);
    // More than TURN reads of BATCH datagrams, sent faster than they are read.
    let burst = 150u16;
    for seq in 0..burst {
        a.send_to(&rtp(0xa, seq), at(pa)).unwrap();
    }
    for seq in 0..burst {
        let (got, from) = recv(&b);
        assert_eq!((got, from), (rtp(0xa, seq), at(pb)));
    }
    wait_until("the stats", || s.stats(Side::A).packets == u64::from(burst));
    assert_eq!(s.stats(Side::A).lost, 0);
}

#[test]
fn ipv6_works_too() {
    let Ok(a) = UdpSocket::bind("[::1]:0") else {
        return; // no IPv6 loopback here
    };
    let b = UdpSocket::bind("[::1]:0").unwrap();
    let ip: IpAddr = "::1".parse().unwrap();
    let relay = Relay::start(RelayConfig {
        bind_ip: ip,
        port_min: 31200,
        port_max: 31219,
        threads: 1,
    })
    .unwrap();
    let s = relay.allocate().unwrap();
    signalled(&s, &a, &b);
    let (pa, pb) = (s.port(Side::A), s.port(Side::B));
    a.send_to(&rtp(0xa, 0), (ip, pa)).unwrap();
    let (got, from) = recv(&b);
    assert_eq!((got, from), (rtp(0xa, 0), SocketAddr::new(ip, pb)));
    wait_until("the latch", || s.latched(Side::A) == Some(addr(&a)));
}
