//! Typed values of the attributes the PBX reads and writes: direction, `rtpmap`,
//! `fmtp`, `rtcp`, and the RFC 3551 static payload types.

use std::fmt;

use compact_str::CompactString;

use super::{Attribute, Connection, SdpError, parse};

/// Media direction attributes (RFC 8866 §6.7; RFC 3264 for offer/answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub payload_type: u8,
    /// Inline (no allocation): an answer's codecs are compared with the offer's for
    /// every call.
    pub encoding: CompactString,
    pub clock_rate: u32,
    /// Encoding parameters: the channel count for audio, absent meaning 1.
    pub channels: Option<u16>,
}

/// `a=fmtp:<format> <parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub format: String,
    pub params: String,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    pub connection: Option<Connection>,
}

impl Direction {
    /// The attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The direction seen from the other end: what an answer to this offer says at
    /// most (RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3551 static payload types: (pt, encoding, clock rate, channels).
const STATIC_PAYLOAD_TYPES: &[(u8, &str, u32, Option<u16>)] = &[
    (0, "PCMU", 8000, None),
    (3, "GSM", 8000, None),
    (4, "G723", 8000, None),
    (5, "DVI4", 8000, None),
    (6, "DVI4", 16000, None),
    (7, "LPC", 8000, None),
    (8, "PCMA", 8000, None),
    (9, "G722", 8000, None),
    (10, "L16", 44100, Some(2)),
    (11, "L16", 44100, None),
    (12, "QCELP", 8000, None),
    (13, "CN", 8000, None),
    (14, "MPA", 90000, None),
    (15, "G728", 8000, None),
    (16, "DVI4", 11025, None),
    (17, "DVI4", 22050, None),
    (18, "G729", 8000, None),
    (25, "CelB", 90000, None),
    (26, "JPEG", 90000, None),
    (28, "nv", 90000, None),
    (31, "H261", 90000, None),
    (32, "MPV", 90000, None),
    (33, "MP2T", 90000, None),
    (34, "H263", 90000, None),
];

impl Rtpmap {
    /// Parses an rtpmap value, `<pt> <encoding>/<clock>[/<channels>]`.
    pub fn parse(value: &str) -> Result<Self, SdpError> {
        parse::rtpmap(value).map_err(SdpError::whole)
    }

    /// The RFC 3551 static assignment of payload type `pt`, if it has one.
    pub fn static_payload(pt: u8) -> Option<Self> {
        STATIC_PAYLOAD_TYPES.iter().find(|(n, ..)| *n == pt).map(
            |&(payload_type, encoding, clock_rate, channels)| Self {
                payload_type,
                encoding: encoding.into(),
                clock_rate,
                channels,
            },
        )
    }

    /// Channel count, 1 when not given.
    pub fn channel_count(&self) -> u16 {
        self.channels.unwrap_or(1)
    }

    /// Same codec regardless of payload type number: encoding names compare
    /// case-insensitively (RFC 4855 §3), an absent channel count is 1.
    pub fn same_codec(&self, other: &Rtpmap) -> bool {
        self.encoding.eq_ignore_ascii_case(&other.encoding)
            && self.clock_rate == other.clock_rate
            && self.channel_count() == other.channel_count()
    }

    /// As an `a=rtpmap` attribute.
    pub fn to_attribute(&self) -> Attribute {
        Attribute::with_value("rtpmap", self.to_string())
    }
}

impl fmt::Display for Rtpmap {
    /// The attribute value, `<pt> <encoding>/<clock>[/<channels>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(itoa::Buffer::new().format(self.payload_type))?;
        f.write_str(" ")?;
        f.write_str(&self.encoding)?;
        f.write_str("/")?;
        f.write_str(itoa::Buffer::new().format(self.clock_rate))?;
        if let Some(channels) = self.channels {
            f.write_str("/")?;
            f.write_str(itoa::Buffer::new().format(channels))?;
        }
        Ok(())
    }
}

impl Fmtp {
    /// Parses an fmtp value, `<format> <params>`; `None` without a format.
    pub fn parse(value: &str) -> Option<Self> {
        Self::split(value).map(|(format, params)| Self {
            format: format.into(),
            params: params.into(),
        })
    }

    pub(super) fn split(value: &str) -> Option<(&str, &str)> {
        let value = value.trim_start();
        let (format, params) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value, ""));
        (!format.is_empty()).then(|| (format, params.trim()))
    }

    /// The `;`-separated parameters as `(name, value)`, e.g. `annexb=no` →
    /// `("annexb", Some("no"))`, `0-15` → `("0-15", None)`.
    pub fn params(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (p, None),
            })
    }
}

impl Rtcp {
    /// Parses an rtcp value, `<port> [<nettype> <addrtype> <address>]`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut tokens = value.split_ascii_whitespace();
        let port = parse::digits(tokens.next()?).ok()?;
        let rest: Vec<&str> = tokens.collect();
        let connection = match rest[..] {
            [] => None,
            [net_type, addr_type, address] => Some(Connection {
                net_type: net_type.into(),
                addr_type: addr_type.into(),
                address: address.into(),
            }),
            _ => return None,
        };
        Some(Self { port, connection })
    }
}

impl fmt::Display for Rtcp {
    /// The attribute value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(c) = &self.connection {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}
