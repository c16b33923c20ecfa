//! The sending side of one RTP stream: sequence numbers, timestamps and the marker bit
//! for the audio and the telephone-events the PBX sends. The SSRC and the initial
//! sequence number and timestamp are random (RFC 3550 §5.1), drawn by the caller.

use std::time::Duration;

use crate::dtmf::EventPacket;
use crate::rtp::{HEADER_LEN, RtpHeader};

/// Packetisation time: the PBX sends (and expects) one packet per 20 ms.
pub const PTIME: Duration = Duration::from_millis(20);
/// Samples in one 20 ms packet at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Numbers the packets of one outgoing stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    /// Sequence number of the next packet.
    sequence: u16,
    /// Timestamp of the next audio packet: the stream's clock.
    timestamp: u32,
    /// Whether the next audio packet starts a talk spurt.
    marker: bool,
}

impl RtpSender {
    pub fn new(ssrc: u32, initial_seq: u16, initial_timestamp: u32) -> Self {
        Self {
            ssrc,
            sequence: initial_seq,
            timestamp: initial_timestamp,
            marker: true,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next audio packet will carry; a telephone-event starting now
    /// takes it as its own.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Writes an audio packet of `samples` samples to `out` (cleared first). The first
    /// packet, and the first after [`Self::resume`], carries the marker bit (a talk
    /// spurt starts, RFC 3551 §4.1), so the receiver resets its playout.
    pub fn audio(&mut self, payload_type: u8, payload: &[u8], samples: u32, out: &mut Vec<u8>) {
        let header = RtpHeader {
            marker: std::mem::take(&mut self.marker),
            payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        write(&header, payload, out);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Writes a telephone-event packet to `out` (cleared first) under the event's own
    /// timestamp and the stream's next sequence number. The stream's clock still moves
    /// on by the `samples` of the tick, so audio after the event is stamped with the
    /// time it is sent at.
    pub fn telephone_event(
        &mut self,
        payload_type: u8,
        packet: &EventPacket,
        samples: u32,
        out: &mut Vec<u8>,
    ) {
        let header = RtpHeader {
            marker: packet.marker,
            payload_type,
            sequence: self.sequence,
            timestamp: packet.timestamp,
            ssrc: self.ssrc,
        };
        write(&header, &packet.payload, out);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Moves the clock on by `samples` without sending: the next audio packet is stamped
    /// later and, being a new talk spurt, carries the marker.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.resume();
    }

    /// Marks the next audio packet as the start of a talk spurt (after a pause in
    /// sending).
    pub fn resume(&mut self) {
        self.marker = true;
    }
}

fn write(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; HEADER_LEN];
    header.write(&mut head);
    out.clear();
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{DtmfSender, TelephoneEvent};
    use crate::rtp;

    #[test]
    fn audio_packets_advance_sequence_and_timestamp_with_a_marker_per_spurt() {
        let mut tx = RtpSender::new(0xfeed, u16::MAX, u32::MAX - 100);
        let mut out = vec![9; 500];
        tx.audio(8, &[0xd5; 160], 160, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 160, "cleared first");
        let h = RtpHeader::parse(&out).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                marker: true,
                payload_type: 8,
                sequence: u16::MAX,
                timestamp: u32::MAX - 100,
                ssrc: 0xfeed
            }
        );
        assert_eq!(rtp::payload(&out), Some(&[0xd5; 160][..]));

        tx.audio(8, &[0xd5; 160], 160, &mut out);
        let h = RtpHeader::parse(&out).unwrap();
        assert!(!h.marker);
        assert_eq!((h.sequence, h.timestamp), (0, 59), "both wrap");

        tx.resume();
        tx.audio(8, &[0xd5; 160], 160, &mut out);
        let h = RtpHeader::parse(&out).unwrap();
        assert!(h.marker);
        assert_eq!((h.sequence, h.timestamp), (1, 219));
        assert_eq!((tx.sequence(), tx.timestamp(), tx.ssrc()), (2, 379, 0xfeed));
    }

    #[test]
    fn skipping_moves_the_clock_and_marks_the_next_packet() {
        let mut tx = RtpSender::new(1, 10, 1000);
        let mut out = Vec::new();
        tx.audio(0, &[0xff; 160], 160, &mut out);
        tx.skip(800);
        tx.audio(0, &[0xff; 160], 160, &mut out);
        let h = RtpHeader::parse(&out).unwrap();
        assert_eq!((h.marker, h.sequence, h.timestamp), (true, 11, 1960));
    }

    #[test]
    fn events_share_the_sequence_space_and_keep_their_timestamp() {
        let mut tx = RtpSender::new(1, 100, 8000);
        let mut out = Vec::new();
        tx.audio(0, &[0xff; 160], 160, &mut out);
        let mut dtmf =
            DtmfSender::new('7', Duration::from_millis(100), 8000, tx.timestamp()).unwrap();
        let mut headers = Vec::new();
        while let Some(packet) = dtmf.next_packet() {
            tx.telephone_event(101, &packet, 160, &mut out);
            headers.push(RtpHeader::parse(&out).unwrap());
            let event = TelephoneEvent::parse(rtp::payload(&out).unwrap()).unwrap();
            assert_eq!(event.event, 7);
        }
        let sequences: Vec<_> = headers.iter().map(|h| h.sequence).collect();
        assert_eq!(sequences, (101..108).collect::<Vec<_>>());
        assert!(
            headers
                .iter()
                .all(|h| h.timestamp == 8160 && h.payload_type == 101)
        );
        assert!(headers[0].marker && headers[1..].iter().all(|h| !h.marker));

        // Audio resumes at the time it is sent, without a new spurt.
        tx.audio(0, &[0xff; 160], 160, &mut out);
        let h = RtpHeader::parse(&out).unwrap();
        assert_eq!(
            (h.marker, h.sequence, h.timestamp),
            (false, 108, 8160 + 7 * 160)
        );
    }
}
