//! SDP parser: line-oriented, one pass, every error names its line.
//!
//! Order is checked as RFC 8866 §5 gives it (v= o= s= first, then the session
//! fields, then `m=` sections each in their own order). Tolerated because real devices
//! send it: a missing `t=`, bare-LF line endings, a missing final line ending, trailing
//! blank lines, runs of spaces/tabs between tokens, `z=` either inside the time
//! descriptions (RFC 8866) or after them (RFC 4566).

use compact_str::CompactString;
use std::str::FromStr;

use crate::text::{split_byte, split_once_byte};

use super::{
    Attribute, Bandwidth, Connection, MediaDescription, Origin, Rtpmap, SdpError,
    SessionDescription, Timing,
};

/// Largest input accepted, in bytes. A SIP body rarely exceeds a few KiB.
pub const MAX_INPUT_LEN: usize = 64 * 1024;
/// Most `m=` sections accepted.
pub const MAX_MEDIA: usize = 64;
/// Most `a=` lines accepted per section (session level or one `m=` section).
pub const MAX_ATTRIBUTES: usize = 1024;

pub(super) fn parse_bytes(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
    check_len(bytes.len())?;
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(SdpError::at(line, "not valid UTF-8"))
        }
    }
}

fn check_len(len: usize) -> Result<(), SdpError> {
    if len > MAX_INPUT_LEN {
        return Err(SdpError::whole(format!(
            "{len} bytes is more than the {MAX_INPUT_LEN} accepted"
        )));
    }
    Ok(())
}

/// One `<type>=<value>` line.
struct Line<'a> {
    number: usize,
    kind: u8,
    value: &'a str,
}

impl Line<'_> {
    fn error(&self, message: impl std::fmt::Display) -> SdpError {
        SdpError::at(self.number, format!("{}= {message}", self.kind as char))
    }
}

fn split_line(number: usize, raw: &str) -> Result<Line<'_>, SdpError> {
    if raw.is_empty() {
        return Err(SdpError::at(number, "empty line"));
    }
    if raw.bytes().any(|b| b == b'\r' || b == 0) {
        return Err(SdpError::at(number, "stray CR or NUL character"));
    }
    match raw.as_bytes() {
        [kind @ b'a'..=b'z', b'=', ..] => Ok(Line {
            number,
            kind: *kind,
            value: &raw[2..],
        }),
        _ => Err(SdpError::at(
            number,
            format!(
                "expected <letter>=<value>, found {:?}",
                raw.chars().take(40).collect::<String>()
            ),
        )),
    }
}

pub(super) fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    check_len(text.len())?;
    // Trailing line endings and blank lines are harmless; a blank line inside is not.
    let body = text.trim_end_matches(['\r', '\n']);
    if body.is_empty() {
        return Err(SdpError::whole("empty session description"));
    }
    let mut raw_lines = split_byte(body, b'\n');
    let mut count = 0;
    let mut lines = std::iter::from_fn(move || {
        let raw = raw_lines.next()?;
        count += 1;
        Some(split_line(count, raw.strip_suffix('\r').unwrap_or(raw)))
    });

    let v = expect(&mut lines, b'v', "protocol version", 0)?;
    let version = digits(v.value).map_err(|e| v.error(e))?;
    let o = expect(&mut lines, b'o', "origin", 1)?;
    let origin = origin(o.value).map_err(|e| o.error(e))?;
    let s = expect(&mut lines, b's', "session name", 2)?;
    // Kept verbatim, empty included: RFC 8866 wants "s= " but phones send "s=".
    let session_name = s.value.into();

    let mut sd = SessionDescription {
        version,
        origin,
        session_name,
        info: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: None,
        bandwidths: Vec::new(),
        times: Vec::new(),
        time_zones: None,
        key: None,
        attributes: Vec::new(),
        media: Vec::new(),
    };
    let mut order = Order::new(b's');
    for line in lines {
        let line = line?;
        if line.kind == b'm' {
            if sd.media.len() == MAX_MEDIA {
                return Err(line.error(format!("more than {MAX_MEDIA} media sections")));
            }
            sd.media.push(media_line(&line)?);
            order = Order::new(b'm');
            continue;
        }
        match sd.media.last_mut() {
            Some(media) => media_field(media, &line, &mut order)?,
            None => session_field(&mut sd, &line, &mut order)?,
        }
    }
    Ok(sd)
}

/// The next line, which must be of type `kind`; `previous` is the last line number.
fn expect<'a>(
    lines: &mut impl Iterator<Item = Result<Line<'a>, SdpError>>,
    kind: u8,
    what: &str,
    previous: usize,
) -> Result<Line<'a>, SdpError> {
    let line = lines.next().ok_or_else(|| {
        SdpError::at(
            previous + 1,
            format!("missing {}= ({what}) line", kind as char),
        )
    })??;
    if line.kind != kind {
        return Err(SdpError::at(
            line.number,
            format!(
                "expected {}= ({what}), found {}=",
                kind as char, line.kind as char
            ),
        ));
    }
    Ok(line)
}

/// Tracks where in a section we are, to reject lines out of RFC 8866 order.
struct Order {
    rank: u8,
    last: u8,
}

impl Order {
    fn new(last: u8) -> Self {
        Self { rank: 0, last }
    }

    fn advance(&mut self, line: &Line<'_>, rank: u8) -> Result<(), SdpError> {
        if rank < self.rank {
            return Err(line.error(format!(
                "line out of order: it must come before {}=",
                self.last as char
            )));
        }
        self.rank = rank;
        self.last = line.kind;
        Ok(())
    }
}

fn session_field(
    sd: &mut SessionDescription,
    line: &Line<'_>,
    order: &mut Order,
) -> Result<(), SdpError> {
    let rank = match line.kind {
        b'i' => 1,
        b'u' => 2,
        b'e' => 3,
        b'p' => 4,
        b'c' => 5,
        b'b' => 6,
        b't' | b'r' | b'z' => 7,
        b'k' => 8,
        b'a' => 9,
        b'v' | b'o' | b's' => return Err(line.error("line repeated")),
        _ => return Err(line.error("unknown line type")),
    };
    order.advance(line, rank)?;
    let value = line.value;
    match line.kind {
        b'i' => set_once(&mut sd.info, value.to_owned(), line)?,
        b'u' => set_once(&mut sd.uri, value.to_owned(), line)?,
        b'e' => sd.emails.push(value.to_owned()),
        b'p' => sd.phones.push(value.to_owned()),
        b'c' => set_once(&mut sd.connection, connection(value, line)?, line)?,
        b'b' => sd.bandwidths.push(bandwidth(value, line)?),
        b't' => {
            let Some([start, stop]) = fields(value) else {
                return Err(line.error("expected <start time> <stop time>"));
            };
            sd.times.push(Timing {
                start: digits(start).map_err(|e| line.error(format!("start time: {e}")))?,
                stop: digits(stop).map_err(|e| line.error(format!("stop time: {e}")))?,
                repeats: Vec::new(),
            });
        }
        b'r' => match sd.times.last_mut() {
            Some(timing) => timing.repeats.push(value.to_owned()),
            None => return Err(line.error("without a t= line before it")),
        },
        b'z' => {
            if sd.times.is_empty() {
                return Err(line.error("without a t= line before it"));
            }
            set_once(&mut sd.time_zones, value.to_owned(), line)?;
        }
        b'k' => set_once(&mut sd.key, value.to_owned(), line)?,
        _ => push_attribute(&mut sd.attributes, line, false)?,
    }
    Ok(())
}

fn media_field(
    media: &mut MediaDescription,
    line: &Line<'_>,
    order: &mut Order,
) -> Result<(), SdpError> {
    let rank = match line.kind {
        b'i' => 1,
        b'c' => 2,
        b'b' => 3,
        b'k' => 4,
        b'a' => 5,
        b'v' | b'o' | b's' | b'u' | b'e' | b'p' | b't' | b'r' | b'z' => {
            return Err(line.error("not allowed in a media section (after m=)"));
        }
        _ => return Err(line.error("unknown line type")),
    };
    order.advance(line, rank)?;
    let value = line.value;
    match line.kind {
        b'i' => set_once(&mut media.info, value.to_owned(), line),
        b'c' => set_once(&mut media.connection, connection(value, line)?, line),
        b'b' => {
            media.bandwidths.push(bandwidth(value, line)?);
            Ok(())
        }
        b'k' => set_once(&mut media.key, value.to_owned(), line),
        _ => push_attribute(&mut media.attributes, line, true),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, line: &Line<'_>) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(line.error("appears twice in one section"));
    }
    *slot = Some(value);
    Ok(())
}

fn push_attribute(
    attributes: &mut Vec<Attribute>,
    line: &Line<'_>,
    media_level: bool,
) -> Result<(), SdpError> {
    if attributes.len() == MAX_ATTRIBUTES {
        return Err(line.error(format!(
            "more than {MAX_ATTRIBUTES} attributes in one section"
        )));
    }
    let (name, value) = match split_once_byte(line.value, b':') {
        Some((name, value)) => (name, Some(CompactString::from(value))),
        None => (line.value, None),
    };
    if name.is_empty() {
        return Err(line.error("attribute without a name"));
    }
    if media_level && name == "rtpmap" {
        rtpmap_format(value.as_deref().unwrap_or(""))
            .map_err(|e| line.error(format!("bad rtpmap: {e}")))?;
    }
    attributes.push(Attribute {
        name: name.into(),
        value,
    });
    Ok(())
}

/// What the parser insists on in an rtpmap: a payload type number (the B2BUA keys
/// codecs on it) and an encoding name, numeric clock rate and channels when present.
/// A missing clock rate is tolerated (RFC 4475 §3.1.1.1 sends `a=rtpmap:31 LPC`);
/// [`Rtpmap::parse`] is stricter.
fn rtpmap_format(value: &str) -> Result<(), String> {
    let mut tokens = value.split_ascii_whitespace();
    let pt = tokens.next().ok_or("missing payload type")?;
    payload_type(pt)?;
    let encoding = tokens.next().ok_or("missing encoding name")?;
    if tokens.next().is_some() {
        return Err("unexpected text after the encoding".into());
    }
    let mut parts = split_byte(encoding, b'/');
    if parts.next().is_none_or(str::is_empty) {
        return Err("empty encoding name".into());
    }
    if let Some(clock) = parts.next() {
        digits::<u32>(clock).map_err(|e| format!("clock rate: {e}"))?;
    }
    if let Some(channels) = parts.next() {
        digits::<u16>(channels).map_err(|e| format!("channels: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("too many /-separated parts".into());
    }
    Ok(())
}

pub(super) fn rtpmap(value: &str) -> Result<Rtpmap, String> {
    rtpmap_format(value)?;
    let mut tokens = value.split_ascii_whitespace();
    let (Some(pt), Some(encoding)) = (tokens.next(), tokens.next()) else {
        return Err("expected <payload type> <encoding>/<clock rate>".into());
    };
    let mut parts = split_byte(encoding, b'/');
    let name = parts.next().unwrap_or("");
    let clock = parts.next().ok_or("missing clock rate")?;
    Ok(Rtpmap {
        payload_type: payload_type(pt)?,
        encoding: name.into(),
        clock_rate: digits(clock)?,
        channels: parts.next().map(digits).transpose()?,
    })
}

fn payload_type(pt: &str) -> Result<u8, String> {
    match digits::<u8>(pt) {
        Ok(n) if n <= 127 => Ok(n),
        Ok(_) => Err(format!("payload type {pt} is out of range 0-127")),
        Err(e) => Err(format!("payload type: {e}")),
    }
}

fn media_line(line: &Line<'_>) -> Result<MediaDescription, SdpError> {
    let mut tokens = line.value.split_ascii_whitespace();
    let media = tokens
        .next()
        .ok_or_else(|| line.error("missing media type"))?;
    let port = tokens.next().ok_or_else(|| line.error("missing port"))?;
    let (port, num_ports) = match split_once_byte(port, b'/') {
        Some((port, n)) => (port, Some(n)),
        None => (port, None),
    };
    let port = digits(port).map_err(|e| line.error(format!("port: {e}")))?;
    let num_ports = num_ports
        .map(digits)
        .transpose()
        .map_err(|e| line.error(format!("number of ports: {e}")))?;
    let proto = tokens
        .next()
        .ok_or_else(|| line.error("missing transport protocol"))?;
    let formats: Vec<CompactString> = tokens.map(CompactString::from).collect();
    if formats.is_empty() {
        return Err(line.error("no media formats"));
    }
    Ok(MediaDescription {
        num_ports,
        formats,
        ..MediaDescription::new(media, port, proto, Vec::new())
    })
}

/// Exactly `N` whitespace-separated fields, without collecting them (every SDP has
/// an o=, a c= and a t= line).
fn fields<const N: usize>(value: &str) -> Option<[&str; N]> {
    let mut tokens = value.split_ascii_whitespace();
    let mut out = [""; N];
    for slot in &mut out {
        *slot = tokens.next()?;
    }
    tokens.next().is_none().then_some(out)
}

fn origin(value: &str) -> Result<Origin, String> {
    let Some(
        [
            username,
            session_id,
            session_version,
            net_type,
            addr_type,
            address,
        ],
    ) = fields(value)
    else {
        return Err(format!(
            "expected 6 fields (<username> <sess-id> <sess-version> <nettype> \
             <addrtype> <address>), found {}",
            value.split_ascii_whitespace().count()
        ));
    };
    Ok(Origin {
        username: username.into(),
        session_id: session_id.into(),
        session_version: session_version.into(),
        net_type: net_type.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    })
}

fn connection(value: &str, line: &Line<'_>) -> Result<Connection, SdpError> {
    let Some([net_type, addr_type, address]) = fields(value) else {
        return Err(line.error(format!(
            "expected <nettype> <addrtype> <address>, found {} fields",
            value.split_ascii_whitespace().count()
        )));
    };
    Ok(Connection {
        net_type: net_type.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    })
}

fn bandwidth(value: &str, line: &Line<'_>) -> Result<Bandwidth, SdpError> {
    let (bwtype, bandwidth) =
        split_once_byte(value, b':').ok_or_else(|| line.error("expected <bwtype>:<bandwidth>"))?;
    if bwtype.is_empty() || bwtype.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(line.error(format!("bad bandwidth type {bwtype:?}")));
    }
    Ok(Bandwidth {
        bwtype: bwtype.to_owned(),
        bandwidth: digits(bandwidth).map_err(|e| line.error(format!("bandwidth: {e}")))?,
    })
}

/// An unsigned decimal number, digits only (`str::parse` would also take `+5`).
pub(super) fn digits<T: FromStr>(s: &str) -> Result<T, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{:?} is not a number", truncate(s)));
    }
    s.parse()
        .map_err(|_| format!("{} is out of range", truncate(s)))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
