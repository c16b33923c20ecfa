//! DTMF as RTP telephone-events (RFC 4733): the keys a caller presses in the PBX's menus
//! and voicemail, and the digits the PBX sends itself.
//!
//! One key press is several packets with the same RTP timestamp: a first one with the
//! marker bit, updates every 20 ms with a growing duration, and an end packet sent three
//! times. The timestamp is what tells presses apart, so a digit pressed twice is two
//! events and the repeats of one event are not.

use std::time::Duration;

use crate::rtp::RtpHeader;
use crate::stream::PTIME;

/// The payload of one telephone-event packet (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code: 0–15 for the DTMF keys (see [`digit_of`]).
    pub event: u8,
    /// Set in the packets that end the event.
    pub end: bool,
    /// Power level as −dBm0, 0–63.
    pub volume: u8,
    /// Length of the event so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// The event at the front of `payload`, `None` when it is shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let &[event, flags, high, low] = payload.get(..4)? else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([high, low]),
        })
    }

    pub fn write(&self) -> [u8; 4] {
        let [high, low] = self.duration.to_be_bytes();
        let flags = (u8::from(self.end) << 7) | (self.volume & 0x3f);
        [self.event, flags, high, low]
    }
}

/// The event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`, letters in either case).
pub fn event_of(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF key of an event code; `None` for the other events (flash, tones, …).
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Turns received telephone-event packets into key presses, each reported once.
///
/// A press is reported at the first of its packets that arrives (whichever it is: the
/// first may be lost), so a menu reacts at the start of the tone rather than after it.
/// Later packets with the same SSRC, timestamp and event (updates, the repeated end
/// packets, duplicates, stragglers of the last few presses) are ignored. A press longer than the 16-bit
/// duration allows (8 s at 8 kHz) is continued by the sender under a new timestamp and
/// would be reported twice; keys are not held that long.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    /// The presses reported last, newest at the back: a packet of any of them is a
    /// repeat. Not "any older timestamp": senders that replay recorded events (SIPp's
    /// DTMF pcaps) go back in time between presses, and each is still a press.
    recent: std::collections::VecDeque<Reported>,
}

/// How many reported presses are remembered (stragglers come from the last few).
const REMEMBERED: usize = 4;

/// A press reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of a packet that starts a new press, `None` for the rest of the press
    /// and for events that are not keys.
    pub fn on_packet(&mut self, header: &RtpHeader, payload: &[u8]) -> Option<char> {
        let event = TelephoneEvent::parse(payload)?;
        // The same timestamp with another event is a sender that does not advance its
        // timestamp between presses: still a new press.
        let press = Reported {
            ssrc: header.ssrc,
            timestamp: header.timestamp,
            event: event.event,
        };
        if self.recent.contains(&press) {
            return None;
        }
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(press);
        digit_of(event.event)
    }
}

/// Power level of the events the PBX sends: −10 dBm0, as phones use.
const VOLUME: u8 = 10;
/// How many times the end packet is sent (RFC 4733 §2.5.1.4).
const END_PACKETS: u8 = 3;

/// One packet of an event, for [`crate::stream::RtpSender::telephone_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Set on the first packet of the event.
    pub marker: bool,
    /// The event's timestamp, the same in all its packets.
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// The packets of one key press, one per 20 ms tick: updates with a growing duration,
/// then the end packet three times. Sequence numbers are not its business: the packets
/// go through the stream's [`crate::stream::RtpSender`], sharing its sequence space.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    timestamp: u32,
    /// Length of the press in timestamp units: the duration of the end packets.
    length: u16,
    /// Timestamp units per packet.
    step: u16,
    /// Duration carried by the last packet, 0 before the first.
    sent: u16,
    /// End packets still to send after the first.
    ends_left: u8,
}

impl DtmfSender {
    /// A press of `digit` lasting `duration` (at least one packet, at most the 16-bit
    /// maximum), starting at `timestamp` of a stream clocked at `clock_rate`; `None` for
    /// a character that is not a DTMF key.
    pub fn new(digit: char, duration: Duration, clock_rate: u32, timestamp: u32) -> Option<Self> {
        let event = event_of(digit)?;
        let units = |d: Duration| {
            let units = d.as_micros() * u128::from(clock_rate) / 1_000_000;
            u16::try_from(units).unwrap_or(u16::MAX).max(1)
        };
        let step = units(PTIME);
        Some(Self {
            event,
            timestamp,
            length: units(duration).max(step),
            step,
            sent: 0,
            ends_left: END_PACKETS - 1,
        })
    }

    /// The timestamp of the event's packets.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Whether the last end packet was given.
    pub fn is_done(&self) -> bool {
        self.sent == self.length && self.ends_left == 0
    }

    /// The packet of the next tick, `None` once the last end packet was given.
    pub fn next_packet(&mut self) -> Option<EventPacket> {
        let marker = self.sent == 0;
        if self.sent < self.length {
            self.sent = self.sent.saturating_add(self.step).min(self.length);
        } else if self.ends_left > 0 {
            self.ends_left -= 1;
        } else {
            return None;
        }
        let event = TelephoneEvent {
            event: self.event,
            end: self.sent == self.length,
            volume: VOLUME,
            duration: self.sent,
        };
        Some(EventPacket {
            marker,
            timestamp: self.timestamp,
            payload: event.write(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ssrc: u32, sequence: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 101,
            sequence,
            timestamp,
            ssrc,
        }
    }

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .write()
    }

    #[test]
    fn events_parse_and_write() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 0x1234,
        };
        assert_eq!(e.write(), [11, 0xbf, 0x12, 0x34]);
        assert_eq!(TelephoneEvent::parse(&e.write()), Some(e));
        // The reserved bit is ignored; a longer payload is read from the front.
        assert_eq!(
            TelephoneEvent::parse(&[5, 0x4a, 0, 160, 0xff]),
            Some(TelephoneEvent {
                event: 5,
                end: false,
                volume: 10,
                duration: 160
            })
        );
        assert_eq!(TelephoneEvent::parse(&[5, 0, 0]), None);
    }

    #[test]
    fn digits_map_to_events_and_back() {
        let keys = "0123456789*#ABCD";
        for (code, key) in keys.chars().enumerate() {
            assert_eq!(event_of(key), Some(code as u8));
            assert_eq!(digit_of(code as u8), Some(key));
        }
        assert_eq!(event_of('b'), Some(13));
        assert_eq!(event_of('E'), None);
        assert_eq!(event_of(' '), None);
        assert_eq!(digit_of(16), None, "flash is not a key");
    }

    #[test]
    fn a_press_is_reported_once_at_its_first_packet() {
        let mut rx = DtmfReceiver::new();
        let h = header(7, 1, 8000);
        assert_eq!(rx.on_packet(&h, &payload(1, false, 160)), Some('1'));
        assert_eq!(rx.on_packet(&h, &payload(1, false, 160)), None, "duplicate");
        assert_eq!(rx.on_packet(&h, &payload(1, false, 320)), None);
        for _ in 0..3 {
            assert_eq!(rx.on_packet(&h, &payload(1, true, 800)), None, "end");
        }
        // The same key again: a new timestamp.
        let again = header(7, 9, 9600);
        assert_eq!(rx.on_packet(&again, &payload(1, true, 800)), Some('1'));
        // A straggler of the first press.
        assert_eq!(rx.on_packet(&h, &payload(1, true, 800)), None);
        // Another key under the same timestamp (a sender that does not advance it).
        assert_eq!(rx.on_packet(&again, &payload(11, false, 160)), Some('#'));
    }

    #[test]
    fn replayed_presses_going_back_in_time_still_count() {
        // SIPp's dtmf_2833_N.pcap files, played one after the other: one SSRC, each
        // press with the timestamp it was captured with.
        let mut rx = DtmfReceiver::new();
        let mut got = String::new();
        for (event, timestamp) in [
            (2, 23_200),
            (5, 43_200),
            (8, 60_800),
            (0, 17_632),
            (1, 13_280),
        ] {
            let h = header(0x0e05_384e, 1, timestamp);
            for duration in [160, 320, 480] {
                got.extend(rx.on_packet(&h, &payload(event, false, duration)));
            }
            for _ in 0..3 {
                got.extend(rx.on_packet(&h, &payload(event, true, 640)));
            }
        }
        assert_eq!(got, "25801");
    }

    #[test]
    fn timestamps_wrap_and_streams_change() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.on_packet(&header(7, 1, u32::MAX - 100), &payload(2, false, 160)),
            Some('2')
        );
        assert_eq!(
            rx.on_packet(&header(7, 2, 60), &payload(3, false, 160)),
            Some('3')
        );
        assert_eq!(
            rx.on_packet(&header(7, 3, u32::MAX - 100), &payload(2, true, 800)),
            None
        );
        // A new SSRC (a re-INVITE, a transfer) may start anywhere.
        assert_eq!(
            rx.on_packet(&header(8, 1, 0), &payload(3, false, 160)),
            Some('3')
        );
    }

    #[test]
    fn other_events_and_bad_payloads_are_not_keys() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.on_packet(&header(7, 1, 0), &payload(16, false, 160)),
            None
        );
        assert_eq!(rx.on_packet(&header(7, 2, 160), &[1, 0]), None);
        assert_eq!(
            rx.on_packet(&header(7, 3, 320), &payload(9, false, 160)),
            Some('9')
        );
    }

    #[test]
    fn a_press_is_sent_as_updates_then_three_ends() {
        let mut tx = DtmfSender::new('#', Duration::from_millis(100), 8000, 4242).unwrap();
        assert_eq!(tx.timestamp(), 4242);
        let mut packets = Vec::new();
        while !tx.is_done() {
            packets.push(tx.next_packet().unwrap());
        }
        let events: Vec<_> = packets
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        let durations: Vec<_> = events.iter().map(|e| e.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<_> = events.iter().map(|e| e.end).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        let markers: Vec<_> = packets.iter().map(|p| p.marker).collect();
        assert_eq!(markers, [true, false, false, false, false, false, false]);
        assert!(packets.iter().all(|p| p.timestamp == 4242));
        assert!(events.iter().all(|e| e.event == 11 && e.volume == VOLUME));
        assert_eq!(tx.next_packet(), None, "stays done");
    }

    #[test]
    fn short_and_long_presses_are_clamped() {
        let mut short = DtmfSender::new('5', Duration::from_millis(1), 8000, 0).unwrap();
        let packets: Vec<_> = std::iter::from_fn(|| short.next_packet()).collect();
        assert_eq!(packets.len(), 3, "only the end packets");
        assert!(packets[0].marker && !packets[1].marker);
        let first = TelephoneEvent::parse(&packets[0].payload).unwrap();
        assert!(first.end);
        assert_eq!(first.duration, 160);

        let mut long = DtmfSender::new('5', Duration::from_secs(60), 8000, 0).unwrap();
        let last = std::iter::from_fn(|| long.next_packet()).last().unwrap();
        assert_eq!(
            TelephoneEvent::parse(&last.payload).unwrap().duration,
            u16::MAX
        );

        assert!(DtmfSender::new('x', Duration::from_millis(100), 8000, 0).is_none());
    }
}
