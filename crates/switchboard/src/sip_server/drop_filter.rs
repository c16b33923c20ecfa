//! Blocked sources dropped by the kernel (spec 08): a classic BPF program on every IPv4
//! SIP UDP socket rejects datagrams from the blocked IPv4 addresses and ranges, so a flood
//! from a blocked address wakes no reader and is never copied to the process. It is
//! rebuilt from the blocklist at each change (replacing the previous one atomically).
//! What it does not cover (IPv6, beyond [`MAX_ENTRIES`] blocks, TCP) is dropped in
//! `ingress` as before, so the filter only makes dropping cheaper.

use std::net::UdpSocket;
use std::sync::Arc;

use ipnet::Ipv4Net;
use socket2::{SockFilter, SockRef};
use tokio::sync::watch;

use super::SipCore;

/// Blocks a filter holds at most (2–4 instructions each; the kernel allows 4,096).
pub const MAX_ENTRIES: usize = 512;

// Classic BPF opcodes (linux/filter.h).
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
const LD_W_ABS: u16 = 0x20;
/// BPF_ALU (0x04) | BPF_AND (0x50) | BPF_K (0x00).
const ALU_AND_K: u16 = 0x54;
/// BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00).
const JMP_JEQ_K: u16 = 0x15;
/// BPF_RET (0x06) | BPF_K (0x00).
const RET_K: u16 = 0x06;
/// The network header, for a filter on a UDP socket (whose data starts at UDP's).
const SKF_NET_OFF: i32 = -0x100000;
/// The IPv4 source address, 12 bytes into the header.
const SOURCE: u32 = (SKF_NET_OFF + 12) as u32;

/// The program: load the source; for each block compare (masked for a range) and
/// return 0 (drop) on a match; else keep the whole datagram. `None` when there are
/// too many blocks for one program (the userspace check does it all then).
pub fn program(blocked: &[Ipv4Net]) -> Option<Vec<SockFilter>> {
    if blocked.len() > MAX_ENTRIES {
        return None;
    }
    let mut p = Vec::with_capacity(blocked.len() * 4 + 2);
    let (hosts, ranges): (Vec<&Ipv4Net>, Vec<&Ipv4Net>) =
        blocked.iter().partition(|n| n.prefix_len() == 32);
    p.push(SockFilter::new(LD_W_ABS, 0, 0, SOURCE));
    for h in hosts {
        p.push(SockFilter::new(JMP_JEQ_K, 0, 1, u32::from(h.addr())));
        p.push(SockFilter::new(RET_K, 0, 0, 0));
    }
    for r in ranges {
        p.push(SockFilter::new(LD_W_ABS, 0, 0, SOURCE));
        p.push(SockFilter::new(ALU_AND_K, 0, 0, u32::from(r.netmask())));
        p.push(SockFilter::new(JMP_JEQ_K, 0, 1, u32::from(r.network())));
        p.push(SockFilter::new(RET_K, 0, 0, 0));
    }
    p.push(SockFilter::new(RET_K, 0, 0, u32::MAX));
    Some(p)
}

/// Keeps the filter of `sockets` (the IPv4 ones) in step with the blocklist until
/// `stop`.
pub async fn run(
    core: Arc<SipCore>,
    sockets: Vec<Arc<UdpSocket>>,
    mut stop: watch::Receiver<bool>,
) {
    let sockets: Vec<Arc<UdpSocket>> = sockets
        .into_iter()
        .filter(|s| s.local_addr().is_ok_and(|a| a.is_ipv4()))
        .collect();
    if sockets.is_empty() {
        return;
    }
    let threats = &core.app.threats;
    let mut changes = threats.watch_blocks();
    loop {
        let Some(blocked) = threats.blocked_v4() else {
            return;
        };
        apply(&sockets, &blocked);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

fn apply(sockets: &[Arc<UdpSocket>], blocked: &[Ipv4Net]) {
    let program = program(blocked);
    for socket in sockets {
        let sock = SockRef::from(socket.as_ref());
        let result = match &program {
            Some(p) => sock.attach_filter(p),
            None => sock.detach_filter(),
        };
        if let Err(e) = result {
            // The userspace check still drops them: slower, not wrong.
            tracing::warn!(error = %e, "kernel drop filter not applied");
        }
    }
    tracing::debug!(blocks = blocked.len(), "kernel drop filter updated");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Sends a datagram from `from` to `to`; whether it arrived.
    fn arrives(to: &UdpSocket, from: &str) -> bool {
        let sender = UdpSocket::bind((from, 0)).unwrap();
        sender.send_to(b"ping", to.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        to.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        to.recv_from(&mut buf).is_ok()
    }

    #[test]
    fn blocked_hosts_and_ranges_are_dropped_by_the_kernel() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let blocked: Vec<Ipv4Net> = ["127.0.0.2/32", "127.0.1.0/24"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        apply(&[Arc::new(socket.try_clone().unwrap())], &blocked);
        assert!(!arrives(&socket, "127.0.0.2"));
        assert!(!arrives(&socket, "127.0.1.77"));
        assert!(arrives(&socket, "127.0.0.3"));
        assert!(arrives(&socket, "127.0.0.1"));
        apply(&[Arc::new(socket.try_clone().unwrap())], &[]);
        assert!(arrives(&socket, "127.0.0.2"), "lifted");
        assert!(program(&vec!["10.0.0.1/32".parse().unwrap(); MAX_ENTRIES + 1]).is_none());
    }
}
