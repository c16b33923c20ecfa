//! G.711 µ-law and A-law (ITU-T G.711), the codecs every phone speaks and the PBX's
//! own prompts, recordings and hold music are sent in.
//!
//! Encoding computes the segment and mantissa from 16-bit linear samples, taking the
//! one's complement of negative samples as the ITU-T reference code (G.191, `g711.c`)
//! does; decoding looks the value up in a table built at compile time.

/// Samples per second of both laws (and the RTP clock rate of their payload types).
pub const CLOCK_RATE: u32 = 8000;

/// One of the two G.711 laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum G711 {
    /// µ-law, PCMU: North America and Japan.
    Ulaw,
    /// A-law, PCMA: everywhere else.
    Alaw,
}

impl G711 {
    /// The static RTP payload type (RFC 3551 §6).
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
        }
    }

    /// The law of a static payload type, `None` for any other type.
    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Ulaw),
            8 => Some(Self::Alaw),
            _ => None,
        }
    }

    /// The encoding name of SDP's `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Ulaw => "PCMU",
            Self::Alaw => "PCMA",
        }
    }

    /// Appends one code byte per sample of `pcm` to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let encode = match self {
            Self::Ulaw => ulaw_encode,
            Self::Alaw => alaw_encode,
        };
        out.extend(pcm.iter().map(|&s| encode(s)));
    }

    /// Appends one sample per code byte of `data` to `out`.
    pub fn decode(self, data: &[u8], out: &mut Vec<i16>) {
        let table = self.table();
        out.extend(data.iter().map(|&b| table[usize::from(b)]));
    }

    /// The linear value of every code byte.
    pub(crate) fn table(self) -> &'static [i16; 256] {
        match self {
            Self::Ulaw => &ULAW_TABLE,
            Self::Alaw => &ALAW_TABLE,
        }
    }
}

/// Added to the magnitude before µ-law's segment search, so that segments start at
/// powers of two (G.711's 33 on 14-bit samples, times four).
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude µ-law represents once biased (0x7fff − bias).
const ULAW_CLIP: i32 = 0x7fff - ULAW_BIAS;

/// The magnitude of `pcm`, with negative samples one's-complemented (so −1 → 0 and the
/// range is 0..=32767 on both sides), and whether `pcm` was non-negative.
fn magnitude(pcm: i16) -> (i32, bool) {
    if pcm >= 0 {
        (i32::from(pcm), true)
    } else {
        (i32::from(!pcm), false)
    }
}

/// The µ-law code of a 16-bit linear sample.
pub fn ulaw_encode(pcm: i16) -> u8 {
    let (magnitude, positive) = magnitude(pcm);
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // `biased >> 7` is 1..=255: its highest set bit is the segment.
    let segment = 31 - (biased >> 7).leading_zeros() as i32;
    let mantissa = (biased >> (segment + 3)) & 0x0f;
    let code = ((segment << 4) | mantissa) as u8;
    // Codes are sent inverted (more ones on the line), the sign bit set for positive.
    if positive { !code } else { !code & 0x7f }
}

/// The 16-bit linear value of a µ-law code.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// The A-law code of a 16-bit linear sample.
pub fn alaw_encode(pcm: i16) -> u8 {
    let (magnitude, positive) = magnitude(pcm);
    // A-law works on 13-bit samples; the first two segments share a step of 2.
    let m13 = magnitude >> 3;
    let (segment, mantissa) = if m13 < 32 {
        (0, (m13 >> 1) & 0x0f)
    } else {
        let segment = 31 - m13.leading_zeros() as i32 - 4;
        (segment, (m13 >> segment) & 0x0f)
    };
    let code = ((segment << 4) | mantissa) as u8;
    // Even bits are inverted on the line, the sign bit set for positive.
    if positive { code ^ 0xd5 } else { code ^ 0x55 }
}

/// The 16-bit linear value of an A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

const ULAW_TABLE: [i16; 256] = ulaw_table();
const ALAW_TABLE: [i16; 256] = alaw_table();

/// Each code decodes to the middle of the interval of samples it encodes.
const fn ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let code = !(i as u8);
        let segment = ((code >> 4) & 0x07) as i32;
        let mantissa = (code & 0x0f) as i32;
        let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
        table[i] = if code & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        i += 1;
    }
    table
}

const fn alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let code = (i as u8) ^ 0x55;
        let segment = ((code >> 4) & 0x07) as i32;
        let mantissa = (code & 0x0f) as i32;
        let magnitude = match segment {
            0 => (mantissa << 4) + 8,
            _ => ((mantissa << 4) + 0x108) << (segment - 1),
        };
        table[i] = if code & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_and_names() {
        for law in [G711::Ulaw, G711::Alaw] {
            assert_eq!(G711::from_payload_type(law.payload_type()), Some(law));
        }
        assert_eq!(G711::Ulaw.payload_type(), 0);
        assert_eq!(G711::Alaw.payload_type(), 8);
        assert_eq!(G711::Ulaw.encoding_name(), "PCMU");
        assert_eq!(G711::Alaw.encoding_name(), "PCMA");
        assert_eq!(G711::from_payload_type(18), None);
    }

    #[test]
    fn reference_values() {
        // (sample, µ-law, µ-law decoded, A-law, A-law decoded), as ITU-T G.191's g711.c
        // (and, for these samples, Python's audioop) computes them.
        let cases: [(i16, u8, i16, u8, i16); 9] = [
            (0, 0xff, 0, 0xd5, 8),
            (-1, 0x7f, 0, 0x55, -8),
            (100, 0xf2, 104, 0xd3, 104),
            (1000, 0xce, 988, 0xfa, 1008),
            (-1000, 0x4e, -988, 0x7a, -1008),
            (8000, 0xa0, 7932, 0x8a, 8064),
            (-8000, 0x20, -7932, 0x0a, -8064),
            (i16::MAX, 0x80, 32124, 0xaa, 32256),
            (i16::MIN, 0x00, -32124, 0x2a, -32256),
        ];
        for (pcm, u, ud, a, ad) in cases {
            assert_eq!(ulaw_encode(pcm), u, "µ-law of {pcm}");
            assert_eq!(ulaw_decode(u), ud, "µ-law {u:#04x}");
            assert_eq!(alaw_encode(pcm), a, "A-law of {pcm}");
            assert_eq!(alaw_decode(a), ad, "A-law {a:#04x}");
        }
    }

    #[test]
    fn every_sample_comes_back_within_the_quantisation_step() {
        for law in [G711::Ulaw, G711::Alaw] {
            let mut previous = i16::MIN;
            for pcm in i16::MIN..=i16::MAX {
                let mut code = Vec::new();
                law.encode(&[pcm], &mut code);
                let mut back = Vec::new();
                law.decode(&code, &mut back);
                let back = back[0];
                // Half a step: 1/32 of the magnitude at the top of each segment, at
                // least 8 in A-law's first segments; µ-law's clipping stays inside it.
                let bound = (i32::from(pcm).abs() + 256) / 32;
                let error = (i32::from(back) - i32::from(pcm)).abs();
                assert!(error <= bound, "{law:?} {pcm} → {back}");
                assert!(back >= previous, "{law:?} is not monotonic at {pcm}");
                previous = back;
            }
        }
    }

    #[test]
    fn every_code_decodes_and_encodes_to_itself() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
            // µ-law has two zeros; 0x7f, the negative one, encodes back as 0xff.
            let expected = if code == 0x7f { 0xff } else { code };
            assert_eq!(
                ulaw_encode(ulaw_decode(code)),
                expected,
                "µ-law {code:#04x}"
            );
        }
    }

    #[test]
    fn encode_and_decode_append() {
        let mut out = vec![1u8];
        G711::Alaw.encode(&[0, 0], &mut out);
        assert_eq!(out, [1, 0xd5, 0xd5]);
        let mut pcm = vec![7i16];
        G711::Ulaw.decode(&[0xff, 0x80], &mut pcm);
        assert_eq!(pcm, [7, 0, 32124]);
    }
}
