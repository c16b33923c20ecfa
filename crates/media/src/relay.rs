//! What the relay does with each packet of an anchored call, sans-IO: the caller reads
//! packets from a leg's port, asks [`MediaSession::on_packet`], and sends the packet
//! unchanged to the address it gets back (or drops it). Time is passed in.
//!
//! Each leg learns where its phone really sends from (symmetric RTP, RFC 4961: behind
//! NAT that is not the address in its SDP) and answers there. Learning is guarded
//! against hijacking ("RTP bleed"): the signalled address is taken at once; any other
//! source must first send [`PROBATION`] packets in sequence (same SSRC, consecutive
//! sequence numbers), and once a leg has latched, other sources are refused until the
//! latched one has been silent for [`RELATCH_AFTER`] (a NAT that moved the phone's port).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtp::{RtpHeader, is_rtcp};

/// Packets in sequence a source other than the signalled one sends before the leg
/// latches to it.
pub const PROBATION: u32 = 4;
/// Silence of the latched source after which another source may be learnt.
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

/// The two sides of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, unchanged, to this address from the other leg's port.
    Forward(SocketAddr),
    /// From a source the leg has not learnt (a stranger, or one still on probation).
    DropForeign,
    /// The other leg has no address yet (no SDP, nothing learnt).
    DropNoDestination,
}

/// Counters of one leg: what arrived on its port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Packets accepted (and forwarded when the other side had an address).
    pub packets: u64,
    pub bytes: u64,
    /// RTP packets missing from the accepted stream (RFC 3550 A.3: expected − received).
    pub lost: u64,
    /// Packets refused from sources the leg had not learnt.
    pub foreign: u64,
}

/// Sequence-number accounting of the accepted RTP stream (RFC 3550 A.1, without the
/// probation, which latching does).
#[derive(Debug, Clone, Copy, Default)]
struct Sequence {
    ssrc: Option<u32>,
    base: u32,
    max: u16,
    cycles: u32,
    received: u64,
    /// Losses of the streams this one replaced (a new SSRC after a re-INVITE).
    lost_before: u64,
}

impl Sequence {
    fn record(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc != Some(ssrc) {
            self.lost_before += self.lost_now();
            *self = Self {
                ssrc: Some(ssrc),
                base: u32::from(seq),
                max: seq,
                cycles: 0,
                received: 0,
                lost_before: self.lost_before,
            };
        } else if seq.wrapping_sub(self.max) < 0x8000 && seq != self.max {
            if seq < self.max {
                self.cycles += 1 << 16;
            }
            self.max = seq;
        }
        self.received += 1;
    }

    fn lost_now(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        let expected = u64::from(self.cycles) + u64::from(self.max) + 1 - u64::from(self.base);
        expected.saturating_sub(self.received)
    }

    fn lost(&self) -> u64 {
        self.lost_before + self.lost_now()
    }
}

/// A source being learnt: how many packets it sent in sequence so far.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    src: SocketAddr,
    ssrc: u32,
    next_seq: Option<u16>,
    run: u32,
}

#[derive(Debug, Clone)]
struct Leg {
    signalled: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    candidate: Option<Candidate>,
    last_accepted: Option<Instant>,
    sequence: Sequence,
    stats: LegStats,
}

impl Leg {
    fn new(signalled: Option<SocketAddr>) -> Self {
        Self {
            signalled,
            latched: None,
            candidate: None,
            last_accepted: None,
            sequence: Sequence::default(),
            stats: LegStats::default(),
        }
    }

    /// Whether a packet from `src` belongs to this leg's phone (learning it if so).
    /// `stream`: the packet's SSRC and (RTP) sequence number; a packet that is neither
    /// RTP nor RTCP is never learnt from.
    fn admit(&mut self, src: SocketAddr, stream: Option<(u32, Option<u16>)>, now: Instant) -> bool {
        if self.latched == Some(src) || self.signalled == Some(src) {
            self.latched = Some(src);
            self.candidate = None;
            return true;
        }
        let latched_alive = self.latched.is_some()
            && self
                .last_accepted
                .is_some_and(|t| now.saturating_duration_since(t) < RELATCH_AFTER);
        if latched_alive {
            return false;
        }
        let Some((ssrc, seq)) = stream else {
            return false;
        };
        let continues = self.candidate.is_some_and(|c| {
            c.src == src && c.ssrc == ssrc && (c.next_seq.is_none() || c.next_seq == seq)
        });
        let run = if continues {
            self.candidate.map_or(1, |c| c.run + 1)
        } else {
            1
        };
        if run >= PROBATION {
            self.latched = Some(src);
            self.candidate = None;
            return true;
        }
        self.candidate = Some(Candidate {
            src,
            ssrc,
            next_seq: seq.map(|s| s.wrapping_add(1)),
            run,
        });
        false
    }

    /// Where packets for this leg's phone go.
    fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }
}

/// The media of one call component (RTP, or RTCP on its own ports) between two legs.
#[derive(Debug, Clone)]
pub struct MediaSession {
    legs: [Leg; 2],
    created: Instant,
    on_hold: bool,
}

impl MediaSession {
    /// `a` and `b`: the addresses the legs' SDP gave (`None` until known).
    pub fn new(a: Option<SocketAddr>, b: Option<SocketAddr>, now: Instant) -> Self {
        Self {
            legs: [Leg::new(a), Leg::new(b)],
            created: now,
            on_hold: false,
        }
    }

    /// A new SDP from `side`'s phone (re-INVITE, UPDATE): what it learnt is forgotten
    /// when the address changed.
    pub fn set_signalled(&mut self, side: Side, addr: Option<SocketAddr>) {
        let leg = &mut self.legs[side.index()];
        if leg.signalled != addr {
            *leg = Leg {
                signalled: addr,
                stats: leg.stats,
                sequence: leg.sequence,
                ..Leg::new(addr)
            };
        }
    }

    /// Hold (either side sent `sendonly`/`inactive`): silence is then expected.
    pub fn set_on_hold(&mut self, on_hold: bool) {
        self.on_hold = on_hold;
    }

    /// A packet arrived on `side`'s port from `src`.
    pub fn on_packet(
        &mut self,
        side: Side,
        src: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) -> Verdict {
        let rtcp = is_rtcp(packet);
        let rtp = (!rtcp).then(|| RtpHeader::parse(packet)).flatten();
        let stream = match rtp {
            Some(h) => Some((h.ssrc, Some(h.sequence))),
            // RTCP: the sender's SSRC follows the first four bytes.
            None if rtcp => Some((
                u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
                None,
            )),
            None => None,
        };
        let leg = &mut self.legs[side.index()];
        if !leg.admit(src, stream, now) {
            leg.stats.foreign += 1;
            return Verdict::DropForeign;
        }
        leg.last_accepted = Some(now);
        leg.stats.packets += 1;
        leg.stats.bytes += packet.len() as u64;
        if let Some(h) = rtp {
            leg.sequence.record(h.ssrc, h.sequence);
            leg.stats.lost = leg.sequence.lost();
        }
        match self.legs[side.other().index()].destination() {
            Some(to) => Verdict::Forward(to),
            None => Verdict::DropNoDestination,
        }
    }

    pub fn stats(&self, side: Side) -> LegStats {
        self.legs[side.index()].stats
    }

    /// The address `side`'s phone was learnt at, if it was.
    pub fn latched(&self, side: Side) -> Option<SocketAddr> {
        self.legs[side.index()].latched
    }

    /// Whether no packet was accepted on either leg for `timeout` (`calls.media_timeout`)
    /// while not on hold: the call is dead.
    pub fn timed_out(&self, now: Instant, timeout: Duration) -> bool {
        let last = self
            .legs
            .iter()
            .filter_map(|l| l.last_accepted)
            .max()
            .unwrap_or(self.created);
        !self.on_hold && now.saturating_duration_since(last) >= timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::HEADER_LEN;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

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
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    const PHONE_A: &str = "192.0.2.10:4000";
    const PHONE_B: &str = "198.51.100.20:5000";

    #[test]
    fn packets_from_the_signalled_addresses_cross_at_once() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rtp(1, 100), t),
            Verdict::Forward(addr(PHONE_B))
        );
        assert_eq!(
            s.on_packet(Side::B, addr(PHONE_B), &rtp(2, 7), t),
            Verdict::Forward(addr(PHONE_A))
        );
        assert_eq!(s.stats(Side::A).packets, 1);
        assert_eq!(s.stats(Side::A).bytes, 172);
    }

    #[test]
    fn a_phone_behind_nat_is_learnt_after_its_probation_and_answered_there() {
        let t = Instant::now();
        // A's SDP names its private address; its packets come from the NAT's.
        let mut s = MediaSession::new(Some(addr("10.0.0.5:4000")), Some(addr(PHONE_B)), t);
        let nat = addr("203.0.113.7:61000");
        for seq in 0..PROBATION as u16 - 1 {
            assert_eq!(
                s.on_packet(Side::A, nat, &rtp(9, seq), t),
                Verdict::DropForeign
            );
        }
        assert_eq!(
            s.on_packet(Side::A, nat, &rtp(9, PROBATION as u16 - 1), t),
            Verdict::Forward(addr(PHONE_B))
        );
        assert_eq!(s.latched(Side::A), Some(nat));
        // B's packets now go to where A really is, not to its SDP's private address.
        assert_eq!(
            s.on_packet(Side::B, addr(PHONE_B), &rtp(2, 1), t),
            Verdict::Forward(nat)
        );
    }

    #[test]
    fn a_stranger_cannot_take_over_a_latched_stream() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        s.on_packet(Side::A, addr(PHONE_A), &rtp(1, 1), t);
        let stranger = addr("192.0.2.66:9999");
        // Even a well-formed run of packets in sequence is refused while A talks.
        for seq in 0..20 {
            let now = t + Duration::from_millis(20 * u64::from(seq));
            s.on_packet(Side::A, addr(PHONE_A), &rtp(1, seq + 2), now);
            assert_eq!(
                s.on_packet(Side::A, stranger, &rtp(66, seq), now),
                Verdict::DropForeign
            );
        }
        assert_eq!(s.latched(Side::A), Some(addr(PHONE_A)));
        assert_eq!(s.stats(Side::A).foreign, 20);
        // And it is never where B's packets go.
        assert_eq!(
            s.on_packet(Side::B, addr(PHONE_B), &rtp(2, 1), t),
            Verdict::Forward(addr(PHONE_A))
        );
    }

    #[test]
    fn the_signalled_phone_takes_its_leg_back_from_a_stranger_who_raced_it() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        // A stranger's run of packets arrives before A's first one and is learnt (it
        // cannot be told from A behind NAT)...
        let stranger = addr("192.0.2.66:9999");
        for seq in 0..PROBATION as u16 {
            s.on_packet(Side::A, stranger, &rtp(66, seq), t);
        }
        assert_eq!(s.latched(Side::A), Some(stranger));
        // ...until A speaks from the address its SDP gave: taken at once, and the
        // stranger refused from then on.
        let later = t + Duration::from_millis(40);
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rtp(1, 1), later),
            Verdict::Forward(addr(PHONE_B))
        );
        assert_eq!(
            s.on_packet(Side::A, stranger, &rtp(66, PROBATION as u16), later),
            Verdict::DropForeign
        );
        assert_eq!(
            s.on_packet(Side::B, addr(PHONE_B), &rtp(2, 1), later),
            Verdict::Forward(addr(PHONE_A))
        );
    }

    #[test]
    fn probation_needs_packets_in_sequence_from_one_source() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr("10.0.0.5:4000")), Some(addr(PHONE_B)), t);
        let nat = addr("203.0.113.7:61000");
        let other = addr("203.0.113.8:61000");
        // Interleaved sources, skipped sequence numbers or a new SSRC restart the count.
        s.on_packet(Side::A, nat, &rtp(9, 0), t);
        s.on_packet(Side::A, nat, &rtp(9, 1), t);
        s.on_packet(Side::A, other, &rtp(9, 2), t);
        s.on_packet(Side::A, nat, &rtp(9, 3), t);
        s.on_packet(Side::A, nat, &rtp(9, 5), t);
        s.on_packet(Side::A, nat, &rtp(8, 6), t);
        assert_eq!(s.latched(Side::A), None);
        for seq in 7..7 + PROBATION as u16 - 1 {
            s.on_packet(Side::A, nat, &rtp(8, seq), t);
        }
        assert_eq!(s.latched(Side::A), Some(nat));
    }

    #[test]
    fn a_silent_latched_source_can_be_replaced_after_a_while() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr("10.0.0.5:4000")), Some(addr(PHONE_B)), t);
        let first = addr("203.0.113.7:61000");
        let moved = addr("203.0.113.7:62000");
        for seq in 0..PROBATION as u16 {
            s.on_packet(Side::A, first, &rtp(9, seq), t);
        }
        assert_eq!(s.latched(Side::A), Some(first));
        let soon = t + RELATCH_AFTER / 2;
        for seq in 10..20 {
            s.on_packet(Side::A, moved, &rtp(9, seq), soon);
        }
        assert_eq!(
            s.latched(Side::A),
            Some(first),
            "not while the first one may still talk"
        );
        let later = t + RELATCH_AFTER;
        for seq in 20..20 + PROBATION as u16 {
            s.on_packet(Side::A, moved, &rtp(9, seq), later);
        }
        assert_eq!(s.latched(Side::A), Some(moved));
    }

    #[test]
    fn losses_are_counted_across_wraparound_and_new_streams() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        let mut send = |ssrc, seq| s.on_packet(Side::A, addr(PHONE_A), &rtp(ssrc, seq), t);
        // 65533..=65535 and 0..=4 with 65535 and 2 missing, one late duplicate.
        for seq in [65533u16, 65534, 0, 1, 3, 4, 1] {
            send(1, seq);
        }
        assert_eq!(s.stats(Side::A).lost, 1, "two missing, one duplicate");
        // A new SSRC (say, after a transfer) starts its own count; old losses stay.
        let mut send = |ssrc, seq| s.on_packet(Side::A, addr(PHONE_A), &rtp(ssrc, seq), t);
        for seq in [10u16, 11, 14] {
            send(2, seq);
        }
        assert_eq!(s.stats(Side::A).lost, 3);
    }

    #[test]
    fn what_is_neither_rtp_nor_rtcp_is_never_learnt_from() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr("10.0.0.5:4000")), Some(addr(PHONE_B)), t);
        let stranger = addr("192.0.2.66:9999");
        for _ in 0..10 {
            assert_eq!(
                s.on_packet(Side::A, stranger, b"GET / HTTP/1.0\r\n", t),
                Verdict::DropForeign
            );
        }
        assert_eq!(s.latched(Side::A), None);
    }

    #[test]
    fn rtcp_is_relayed_without_sequence_accounting() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rr, t),
            Verdict::Forward(addr(PHONE_B))
        );
        assert_eq!(s.stats(Side::A).lost, 0);
    }

    #[test]
    fn nowhere_to_send_before_the_other_side_is_known() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr(PHONE_A)), None, t);
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rtp(1, 1), t),
            Verdict::DropNoDestination
        );
        s.set_signalled(Side::B, Some(addr(PHONE_B)));
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rtp(1, 2), t),
            Verdict::Forward(addr(PHONE_B))
        );
    }

    #[test]
    fn a_new_sdp_address_is_taken_at_once_and_forgets_what_was_learnt() {
        let t = Instant::now();
        let mut s = MediaSession::new(Some(addr("10.0.0.5:4000")), Some(addr(PHONE_B)), t);
        let nat = addr("203.0.113.7:61000");
        for seq in 0..PROBATION as u16 {
            s.on_packet(Side::A, nat, &rtp(9, seq), t);
        }
        s.set_signalled(Side::A, Some(addr(PHONE_A)));
        assert_eq!(s.latched(Side::A), None);
        assert_eq!(
            s.on_packet(Side::A, addr(PHONE_A), &rtp(9, 50), t),
            Verdict::Forward(addr(PHONE_B))
        );
        assert_eq!(s.stats(Side::A).packets, 2, "counters survive the change");
    }

    #[test]
    fn silence_ends_the_call_unless_on_hold() {
        let t = Instant::now();
        let timeout = Duration::from_secs(60);
        let mut s = MediaSession::new(Some(addr(PHONE_A)), Some(addr(PHONE_B)), t);
        assert!(!s.timed_out(t + Duration::from_secs(59), timeout));
        assert!(s.timed_out(t + timeout, timeout), "no media at all");
        s.on_packet(
            Side::B,
            addr(PHONE_B),
            &rtp(2, 1),
            t + Duration::from_secs(30),
        );
        assert!(!s.timed_out(t + timeout, timeout));
        assert!(s.timed_out(t + Duration::from_secs(90), timeout));
        s.set_on_hold(true);
        assert!(!s.timed_out(t + Duration::from_secs(900), timeout));
        // A stranger's packets do not keep a dead call alive.
        s.set_on_hold(false);
        let now = t + Duration::from_secs(95);
        s.on_packet(Side::A, addr("192.0.2.66:1"), &rtp(66, 1), now);
        assert!(s.timed_out(now, timeout));
    }
}
