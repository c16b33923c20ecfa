//! SDP session descriptions (RFC 8866, formerly RFC 4566): model, parser and writer.
//!
//! Built for a media relay / B2BUA: every line the parser accepts is kept (unknown
//! attributes verbatim, in order) so that `parse(x.to_string()) == x`, and typed helpers
//! cover what the PBX touches: codecs (`rtpmap`/`fmtp`), direction, connection
//! addresses, RTCP.
//!
//! ```
//! use switchboard_sip::sdp::{Direction, SessionDescription};
//!
//! let mut sd = SessionDescription::parse(
//!     "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!      m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
//! )
//! .unwrap();
//! let audio = &mut sd.media[0];
//! assert_eq!(audio.codec_for("8").unwrap().encoding, "PCMA");
//! audio.retain_formats(|pt| pt != "8");
//! audio.set_direction(Direction::SendOnly);
//! assert!(sd.to_string().contains("m=audio 4000 RTP/AVP 0 101\r\n"));
//! ```

mod anchor;
mod attrs;
mod parse;
mod write;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use compact_str::CompactString;

use crate::text::{IP_TEXT_MAX, ip_in};

pub use attrs::{Direction, Fmtp, Rtcp, Rtpmap};
pub use parse::{MAX_ATTRIBUTES, MAX_INPUT_LEN, MAX_MEDIA};

/// A parse error: which line (1-based, when the error is about one) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError {
    /// 1-based line number, `None` for errors about the whole input (size, emptiness).
    pub line: Option<usize>,
    pub message: String,
}

impl SdpError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "SDP line {line}: {}", self.message),
            None => write!(f, "SDP: {}", self.message),
        }
    }
}

impl std::error::Error for SdpError {}

/// A whole session description.
///
/// Invariants the writer relies on (the parser guarantees them): no field contains CR,
/// LF or NUL; space-separated tokens (origin, connection, `m=` fields) are non-empty
/// and contain no whitespace; attribute names are non-empty and contain no `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=`, always 0 in practice.
    pub version: u32,
    /// `o=`.
    pub origin: Origin,
    /// `s=`; may be empty or `"-"`/`" "` (kept verbatim).
    pub session_name: CompactString,
    /// `i=`.
    pub info: Option<String>,
    /// `u=`.
    pub uri: Option<String>,
    /// `e=` lines.
    pub emails: Vec<String>,
    /// `p=` lines.
    pub phones: Vec<String>,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines with their `r=` lines. Empty when the sender omitted `t=` (some
    /// devices do); it is then written without one too.
    pub times: Vec<Timing>,
    /// `z=`, raw.
    pub time_zones: Option<String>,
    /// Session-level `k=` (obsolete), raw.
    pub key: Option<String>,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: CompactString,
    /// Kept as text: ids in the wild exceed 64 bits.
    pub session_id: CompactString,
    /// Kept as text for the same reason; see [`Origin::increment_version`].
    pub session_version: CompactString,
    pub net_type: CompactString,
    pub addr_type: CompactString,
    pub address: CompactString,
}

/// `c=<nettype> <addrtype> <connection-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: CompactString,
    pub addr_type: CompactString,
    /// IPv4/IPv6 address or FQDN, possibly with `/ttl[/count]` (multicast).
    pub address: CompactString,
}

/// `b=<bwtype>:<bandwidth>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `AS`, `CT`, `TIAS`, `RS`, `RR`, …
    pub bwtype: String,
    pub bandwidth: u64,
}

/// `t=<start> <stop>` and the `r=` lines that follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    /// `r=` values, raw.
    pub repeats: Vec<String>,
}

/// `a=<name>` (property attribute) or `a=<name>:<value>` (value attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: CompactString,
    /// `None` for a property attribute; `Some("")` for `a=name:` (kept distinct).
    pub value: Option<CompactString>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `text`, `application`, `message`, …
    pub media: CompactString,
    pub port: u16,
    /// The `/<number of ports>` of `m=<media> <port>/<n> …`.
    pub num_ports: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udp`, …
    pub proto: CompactString,
    /// Payload types for RTP (`"0"`, `"101"`), other tokens otherwise. Never empty in
    /// a parsed description.
    pub formats: Vec<CompactString>,
    /// `i=`.
    pub info: Option<String>,
    /// Media-level `c=`; see [`SessionDescription::connection_for`].
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    /// `k=` (obsolete), raw.
    pub key: Option<String>,
    pub attributes: Vec<Attribute>,
}

impl SessionDescription {
    /// A minimal description: `v=0`, the given origin and name, `t=0 0`, no media.
    pub fn new(origin: Origin, session_name: impl Into<CompactString>) -> Self {
        Self {
            version: 0,
            origin,
            session_name: session_name.into(),
            info: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            times: vec![Timing::default()],
            time_zones: None,
            key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Parses a session description.
    ///
    /// Lines end in CRLF or bare LF (the last may lack one; trailing blank lines are
    /// ignored). Line order is checked against RFC 8866 §5: `v=` `o=` `s=` first, then
    /// the session fields, then the `m=` sections. Tolerated because devices send it:
    /// no `t=` at all, an empty `s=`, runs of blanks between tokens, `z=` inside or
    /// after the time descriptions, an `a=rtpmap` without a clock rate. Rejected: unknown
    /// or misplaced line types, repeated single lines, blank lines inside, bad numbers,
    /// an `m=` without formats, an `a=rtpmap` without a numeric payload type, more
    /// than [`MAX_INPUT_LEN`] bytes, [`MAX_MEDIA`] sections or [`MAX_ATTRIBUTES`]
    /// attributes in a section.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        parse::parse(text)
    }

    /// Like [`parse`](Self::parse) for a raw message body, rejecting non-UTF-8 input.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SdpError> {
        parse::parse_bytes(bytes)
    }

    /// The connection that applies to media section `index`: its own `c=`, else the
    /// session-level one. `None` if there is neither or no such section.
    pub fn connection_for(&self, index: usize) -> Option<&Connection> {
        let media = self.media.get(index)?;
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// Points all media at `ip` (what a relay does before forwarding an offer): sets
    /// the session-level `c=` and rewrites every media-level `c=` that exists. Ports,
    /// `a=rtcp` addresses and `o=` are the caller's business.
    pub fn set_connection_address(&mut self, ip: IpAddr) {
        let connection = Connection::from(ip);
        for media in &mut self.media {
            if media.connection.is_some() {
                media.connection = Some(connection.clone());
            }
        }
        self.connection = Some(connection);
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        direction_in(&self.attributes)
    }

    /// Replaces any session-level direction attribute with `direction`.
    pub fn set_direction(&mut self, direction: Direction) {
        set_direction_in(&mut self.attributes, direction);
    }

    /// The direction in effect for media section `index`: its own attribute, else the
    /// session-level one, else `sendrecv` (RFC 8866 §6.7).
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(MediaDescription::direction)
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// Value of the first session-level attribute `name` (`Some("")` for a property
    /// attribute).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute_in(&self.attributes, name)
    }

    /// Whether a session-level attribute `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// Value of attribute `name` for media section `index`, else at session level:
    /// for attributes allowed at both levels (`fingerprint`, `ice-ufrag`, `ice-pwd`,
    /// `setup`, …).
    pub fn attribute_for(&self, index: usize, name: &str) -> Option<&str> {
        let media = self.media.get(index)?;
        media.attribute(name).or_else(|| self.attribute(name))
    }
}

impl Origin {
    /// Origin with an `IN IP4`/`IN IP6` address.
    pub fn new(
        username: impl Into<CompactString>,
        session_id: impl Into<CompactString>,
        session_version: impl Into<CompactString>,
        address: IpAddr,
    ) -> Self {
        let connection = Connection::from(address);
        Self {
            username: username.into(),
            session_id: session_id.into(),
            session_version: session_version.into(),
            net_type: connection.net_type,
            addr_type: connection.addr_type,
            address: connection.address,
        }
    }

    /// Adds one to the decimal session version, as each new offer in a dialog must
    /// (RFC 3264 §8). Works on the text so any length is fine; returns `false` (and
    /// changes nothing) if the version is not a decimal number.
    pub fn increment_version(&mut self) -> bool {
        let v = &self.session_version;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let mut digits = v.as_bytes().to_vec();
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
        // Only ASCII digits were touched.
        self.session_version = digits.into_iter().map(char::from).collect();
        true
    }
}

impl Connection {
    /// The address without any `/ttl` or `/count` suffix.
    pub fn base_address(&self) -> &str {
        self.address.split('/').next().unwrap_or("")
    }

    /// The address as an IP address, when it is one (not an FQDN). Accepts IPv6 in
    /// brackets, which some devices send.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        let base = self.base_address();
        let base = base
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(base);
        base.parse().ok()
    }

    /// `c=IN IP4 0.0.0.0`: the RFC 2543 way of putting a call on hold, still sent by
    /// some phones.
    pub fn is_unspecified(&self) -> bool {
        self.ip_addr().is_some_and(|ip| ip.is_unspecified())
    }
}

impl From<IpAddr> for Connection {
    fn from(ip: IpAddr) -> Self {
        Self {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip_in(&mut [0; IP_TEXT_MAX], ip).into(),
        }
    }
}

impl Attribute {
    /// A property attribute, `a=<name>`.
    pub fn flag(name: impl Into<CompactString>) -> Self {
        Self {
            name: name.into(),
            value: None,
        }
    }

    /// A value attribute, `a=<name>:<value>`.
    pub fn with_value(name: impl Into<CompactString>, value: impl Into<CompactString>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

impl MediaDescription {
    /// A section with no optional lines.
    pub fn new(
        media: impl Into<CompactString>,
        port: u16,
        proto: impl Into<CompactString>,
        formats: Vec<CompactString>,
    ) -> Self {
        Self {
            media: media.into(),
            port,
            num_ports: None,
            proto: proto.into(),
            formats,
            info: None,
            connection: None,
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        }
    }

    /// Whether the transport is RTP-based (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, …), i.e. the
    /// formats are payload types.
    pub fn is_rtp(&self) -> bool {
        self.proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
    }

    /// Port 0: the stream is rejected or disabled (RFC 3264 §6).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Value of the first attribute `name` (`Some("")` for a property attribute).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute_in(&self.attributes, name)
    }

    /// Values of every attribute `name`, in order (e.g. `candidate`, `ssrc`).
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |a| a.name == name)
            .map(|a| a.value.as_deref().unwrap_or(""))
    }

    /// Whether an attribute `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// The well-formed `a=rtpmap` attributes, in order.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Rtpmap> + '_ {
        self.attribute_values("rtpmap")
            .filter_map(|v| Rtpmap::parse(v).ok())
    }

    /// The codec of payload type `pt`: its `a=rtpmap`, else the RFC 3551 static
    /// assignment (RTP transports only). `None` if `pt` is not a payload type, is
    /// dynamic without an rtpmap, or has a malformed rtpmap (we do not guess then).
    pub fn codec_for(&self, pt: &str) -> Option<Rtpmap> {
        let number = parse::digits::<u8>(pt).ok()?;
        let mut own = self
            .attribute_values("rtpmap")
            .filter(|v| format_of(v).and_then(|f| parse::digits::<u8>(f).ok()) == Some(number))
            .peekable();
        if own.peek().is_some() {
            return own.find_map(|v| Rtpmap::parse(v).ok());
        }
        if self.is_rtp() {
            Rtpmap::static_payload(number)
        } else {
            None
        }
    }

    /// The parameters of `a=fmtp:<format> <params>` for `format`.
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.attribute_values("fmtp")
            .filter_map(Fmtp::split)
            .find(|(f, _)| *f == format)
            .map(|(_, params)| params)
    }

    /// This section's own direction attribute (see
    /// [`SessionDescription::media_direction`] for the effective one).
    pub fn direction(&self) -> Option<Direction> {
        direction_in(&self.attributes)
    }

    /// Replaces any direction attribute of this section with `direction`, at the place
    /// of the first one (appended if there was none).
    pub fn set_direction(&mut self, direction: Direction) {
        set_direction_in(&mut self.attributes, direction);
    }

    /// `a=rtcp`, if present and well-formed.
    pub fn rtcp(&self) -> Option<Rtcp> {
        self.attribute("rtcp").and_then(Rtcp::parse)
    }

    /// `a=rtcp-mux` (RFC 5761): RTP and RTCP share the port.
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// `a=ptime` in milliseconds (a fractional part, which some devices send, is cut).
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime").and_then(millis)
    }

    /// `a=maxptime` in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute("maxptime").and_then(millis)
    }

    /// `a=mid` (RFC 9143 bundling, WebRTC).
    pub fn mid(&self) -> Option<&str> {
        self.attribute("mid")
    }

    /// `a=ice-ufrag` of this section (may also be at session level).
    pub fn ice_ufrag(&self) -> Option<&str> {
        self.attribute("ice-ufrag")
    }

    /// `a=ice-pwd` of this section (may also be at session level).
    pub fn ice_pwd(&self) -> Option<&str> {
        self.attribute("ice-pwd")
    }

    /// `a=fingerprint` of this section (may also be at session level).
    pub fn fingerprint(&self) -> Option<&str> {
        self.attribute("fingerprint")
    }

    /// `a=setup` (RFC 4145: `active`, `passive`, `actpass`, `holdconn`).
    pub fn setup(&self) -> Option<&str> {
        self.attribute("setup")
    }

    /// `a=candidate` values (RFC 8839), raw.
    pub fn candidates(&self) -> impl Iterator<Item = &str> + '_ {
        self.attribute_values("candidate")
    }

    /// Keeps the formats for which `keep` returns true and drops the `a=rtpmap`,
    /// `a=fmtp` and `a=rtcp-fb` attributes of the others: how the B2BUA narrows an
    /// offer to the codecs both sides support. If nothing is kept the caller must
    /// reject the stream instead (an `m=` line needs a format; set the port to 0 and
    /// keep one).
    pub fn retain_formats(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut removed = Vec::new();
        self.formats.retain(|f| {
            let kept = keep(f);
            if !kept {
                removed.push(f.clone());
            }
            kept
        });
        if removed.is_empty() {
            return;
        }
        let formats = &self.formats;
        self.attributes.retain(|a| {
            if !matches!(a.name.as_str(), "rtpmap" | "fmtp" | "rtcp-fb") {
                return true;
            }
            // A format both removed and kept (listed twice) stays described.
            match a.value.as_deref().and_then(format_of) {
                Some(f) => !removed.iter().any(|r| r == f) || formats.iter().any(|k| k == f),
                None => true,
            }
        });
    }
}

/// The leading format / payload type token of an rtpmap, fmtp or rtcp-fb value.
fn format_of(value: &str) -> Option<&str> {
    value.split_ascii_whitespace().next()
}

fn millis(value: &str) -> Option<u32> {
    let value = value.trim();
    let whole = value.split_once('.').map_or(value, |(w, _)| w);
    parse::digits(whole).ok()
}

fn attribute_in<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.value.as_deref().unwrap_or(""))
}

fn direction_in(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_name(&a.name))
}

fn set_direction_in(attributes: &mut Vec<Attribute>, direction: Direction) {
    let first = attributes
        .iter()
        .position(|a| Direction::from_name(&a.name).is_some());
    attributes.retain(|a| Direction::from_name(&a.name).is_none());
    // Removing later duplicates does not move the first one.
    let at = first.unwrap_or(attributes.len());
    attributes.insert(at, Attribute::flag(direction.as_str()));
}
