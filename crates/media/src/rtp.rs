//! The fixed RTP header (RFC 3550 §5.1), read in place, and where the payload starts.
//! The relay needs the payload type, sequence number and SSRC of each packet to account
//! for it, never the payload; the PBX's own endpoint decodes the payload.

/// The fixed header of an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 12;

impl RtpHeader {
    /// The header of `packet`, or `None` when it is too short or not RTP version 2.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let head: &[u8; HEADER_LEN] = packet.get(..HEADER_LEN)?.try_into().ok()?;
        if head[0] >> 6 != 2 {
            return None;
        }
        Some(Self {
            marker: head[1] & 0x80 != 0,
            payload_type: head[1] & 0x7f,
            sequence: u16::from_be_bytes([head[2], head[3]]),
            timestamp: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
            ssrc: u32::from_be_bytes([head[8], head[9], head[10], head[11]]),
        })
    }

    /// Writes the header (no CSRCs, no extension) to the front of `out`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = 2 << 6;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// The payload of an RTP packet: what follows the fixed header, the CSRC list and any
/// header extension, without the padding. `None` when those lengths do not fit the
/// packet. Phones rarely send CSRCs or extensions, but a payload read without skipping
/// them would be decoded as noise.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    let mut start = HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let extension = packet.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([extension[2], extension[3]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        // The last byte counts the padding, itself included.
        let padding = usize::from(*packet.last()?);
        if padding == 0 {
            return None;
        }
        end = end.checked_sub(padding)?;
    }
    packet.get(start..end)
}

/// Whether a packet on an RTP port is RTCP multiplexed onto it (RFC 5761 §4: the second
/// byte, RTCP's packet type, is 192–223, which RTP payload types with the marker bit
/// never are in practice).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_packets_are_refused() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xfffe,
            timestamp: 160_000,
            ssrc: 0xdead_beef,
        };
        let mut buf = [0u8; HEADER_LEN];
        h.write(&mut buf);
        assert_eq!(RtpHeader::parse(&buf), Some(h));
        let mut packet = buf.to_vec();
        packet.extend_from_slice(&[0xff; 160]);
        assert_eq!(RtpHeader::parse(&packet), Some(h));
        assert_eq!(RtpHeader::parse(&buf[..11]), None, "short");
        let mut v1 = buf;
        v1[0] = 1 << 6;
        assert_eq!(RtpHeader::parse(&v1), None, "version 1");
        assert!(!is_rtcp(&packet));
        // An RTCP receiver report: V=2, RC=0, PT=201, length 1.
        assert!(is_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 1]));
    }

    #[test]
    fn payload_skips_csrcs_extension_and_padding() {
        let mut plain = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        plain.extend_from_slice(b"abc");
        assert_eq!(payload(&plain), Some(&b"abc"[..]));
        assert_eq!(payload(&plain[..12]), Some(&b""[..]));

        // Two CSRCs, a one-word extension and three bytes of padding.
        let mut full = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        full.extend_from_slice(&[0; 8]); // CSRCs
        full.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension
        full.extend_from_slice(b"xyz");
        full.extend_from_slice(&[0, 0, 3]);
        assert_eq!(payload(&full), Some(&b"xyz"[..]));

        assert_eq!(payload(&full[..22]), None, "extension cut short");
        let mut too_much_padding = plain.clone();
        too_much_padding[0] |= 0x20;
        *too_much_padding.last_mut().unwrap() = 200;
        assert_eq!(payload(&too_much_padding), None);
        *too_much_padding.last_mut().unwrap() = 0;
        assert_eq!(payload(&too_much_padding), None, "zero padding length");
        let mut missing_csrcs = plain.clone();
        missing_csrcs[0] |= 15;
        assert_eq!(payload(&missing_csrcs), None);
        assert_eq!(payload(&[]), None);
    }
}
