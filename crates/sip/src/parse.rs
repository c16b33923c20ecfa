//! From bytes to a [`Message`]: framing (datagram or stream), the start line, header
//! lines with folding, and the body by Content-Length (RFC 3261 §7, §18.3).
//!
//! Header values that need no unfolding are slices of the received buffer (no copy).

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::{ErrorKind, ParseError};
use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine, parse_content_length};
use crate::method::Method;
use crate::text::{find_byte_in, is_token_byte, split_byte, split_once_byte};
use crate::uri::Uri;

/// The largest message accepted (spec 01): larger ones get 513 or are dropped.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// At most this many header lines, to bound the work one message can cause.
pub const MAX_HEADERS: usize = 256;

/// Parses one UDP datagram. Extra bytes after the body that Content-Length gives are
/// ignored (RFC 3261 §18.3); a body shorter than Content-Length is an error; without
/// Content-Length the body is the rest of the datagram.
pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError {
            kind: ErrorKind::TooLarge,
            message: format!("message of {} bytes is over 64 KiB", buf.len()),
        });
    }
    let start = skip_keepalive(&buf);
    let header_end = find_header_end(&buf[start..])
        .ok_or_else(|| ParseError::malformed("no empty line ends the headers"))?;
    let (mut msg, body_start) =
        parse_head(&buf, start, start + header_end.0, start + header_end.1)?;
    let available = buf.len() - body_start;
    let body_len = match content_length(&msg)? {
        Length::Absent => available,
        Length::One(len) => {
            if len > available {
                return Err(ParseError::malformed(format!(
                    "Content-Length {len} is larger than the {available} bytes of body"
                )));
            }
            len
        }
        // Conflicting values: keep everything, the application answers 400.
        Length::Conflicting => available,
    };
    msg.body = buf.slice(body_start..body_start + body_len);
    msg.check_and_keep()?;
    Ok(msg)
}

/// What a stream (TCP, TLS) holds at its front.
#[derive(Debug)]
pub enum Framed {
    /// A message, and how many bytes of the buffer it used.
    Message(Box<Message>, usize),
    /// Only CRLF keep-alives so far (RFC 5626 §3.5.1): discard this many bytes.
    KeepAlive(usize),
    /// Not enough bytes yet.
    Incomplete,
}

/// Frames the first message of a stream buffer by its Content-Length (required on
/// streams; absent means an empty body).
pub fn parse_stream(buf: &Bytes) -> Result<Framed, ParseError> {
    let start = skip_keepalive(buf);
    if start == buf.len() {
        return Ok(if start > 0 {
            Framed::KeepAlive(start)
        } else {
            Framed::Incomplete
        });
    }
    let Some((line_end, body_off)) = find_header_end(&buf[start..]) else {
        if buf.len() - start > MAX_MESSAGE_SIZE {
            return Err(ParseError {
                kind: ErrorKind::TooLarge,
                message: "headers over 64 KiB".into(),
            });
        }
        return Ok(Framed::Incomplete);
    };
    let (mut msg, body_start) = parse_head(buf, start, start + line_end, start + body_off)?;
    let len = match content_length(&msg)? {
        Length::Absent => 0,
        Length::One(len) => len,
        Length::Conflicting => {
            return Err(ParseError::malformed(
                "conflicting Content-Length values on a stream",
            ));
        }
    };
    // Saturating: a Content-Length near usize::MAX must be refused, not wrap (found by
    // fuzzing).
    if (body_start - start).saturating_add(len) > MAX_MESSAGE_SIZE {
        return Err(ParseError {
            kind: ErrorKind::TooLarge,
            message: format!("Content-Length {len} makes the message over 64 KiB"),
        });
    }
    if buf.len() < body_start + len {
        return Ok(Framed::Incomplete);
    }
    msg.body = buf.slice(body_start..body_start + len);
    msg.check_and_keep()?;
    Ok(Framed::Message(Box::new(msg), body_start + len))
}

/// The Content-Length: none, one value (repeats of the same value are harmless), or
/// conflicting values.
enum Length {
    Absent,
    One(usize),
    Conflicting,
}

fn content_length(msg: &Message) -> Result<Length, ParseError> {
    let mut out = Length::Absent;
    for v in msg.header_values(&HeaderName::ContentLength) {
        let len = parse_content_length(v)?;
        out = match out {
            Length::Absent => Length::One(len),
            Length::One(l) if l == len => Length::One(l),
            _ => Length::Conflicting,
        };
    }
    Ok(out)
}

fn skip_keepalive(buf: &[u8]) -> usize {
    let mut i = 0;
    while i < buf.len() && (buf[i] == b'\r' || buf[i] == b'\n') {
        i += 1;
    }
    i
}

/// Finds the empty line: returns (end of the last header line, start of the body),
/// both relative to `buf`. Lines end in CRLF or a bare LF.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    for nl in memchr::memchr_iter(b'\n', buf) {
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some((nl, next + 1));
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some((nl, next + 2));
        }
    }
    None
}

/// Parses the start line and headers in `buf[start..head_end]`, in one pass over the
/// lines (memchr finds each line end; a folded header is joined as it is met).
fn parse_head(
    buf: &Bytes,
    start: usize,
    head_end: usize,
    body_start: usize,
) -> Result<(Message, usize), ParseError> {
    let mut lines = Lines {
        buf,
        pos: start,
        end: head_end,
    };
    let (first_start, first_end) = lines.next_line()?.expect("a head has a first line");
    let start_line = parse_start_line(&buf[first_start..first_end])?;
    // One UTF-8 check of the whole head instead of one per value: each value is then
    // a slice of it (every value starts and ends at an ASCII byte).
    let text = ByteString::try_from(buf.slice(start..head_end)).ok();

    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut pending = lines.next_line()?;
    while let Some((ls, le)) = pending {
        let line = &buf[ls..le];
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(ParseError::malformed(
                "a header line starts with whitespace and continues nothing",
            ));
        }
        let colon = find_byte_in(line, b':').ok_or_else(|| {
            ParseError::malformed(format!(
                "header line `{}` has no colon",
                String::from_utf8_lossy(line)
            ))
        })?;
        let name_bytes = trim_end_ws(&line[..colon]);
        if name_bytes.is_empty() || !name_bytes.iter().all(|&b| is_token_byte(b)) {
            return Err(ParseError::malformed(format!(
                "`{}` is not a header name",
                String::from_utf8_lossy(name_bytes)
            )));
        }
        // Continuation lines (folding) join the value with a single space.
        let (vs, ve) = trimmed(buf, ls + colon + 1, le);
        let mut joined: Option<Vec<u8>> = None;
        pending = lines.next_line()?;
        while let Some((cs, ce)) = pending
            && buf[cs..ce]
                .first()
                .is_some_and(|&b| b == b' ' || b == b'\t')
        {
            let j = joined.get_or_insert_with(|| buf[vs..ve].to_vec());
            let (cvs, cve) = trimmed(buf, cs, ce);
            if cvs < cve {
                if !j.is_empty() {
                    j.push(b' ');
                }
                j.extend_from_slice(&buf[cvs..cve]);
            }
            pending = lines.next_line()?;
        }
        let value = match (joined, &text) {
            (None, Some(text)) => text.slice_ref(&text[vs - start..ve - start]),
            (None, None) => text_value(buf.slice(vs..ve)),
            (Some(j), _) => text_value(Bytes::from(j)),
        };
        let name = HeaderName::parse(std::str::from_utf8(name_bytes).unwrap_or_default());
        headers.push(Header { name, value });
        if headers.len() > MAX_HEADERS {
            return Err(ParseError::malformed(format!(
                "more than {MAX_HEADERS} header lines"
            )));
        }
    }
    Ok((
        Message {
            start: start_line,
            headers,
            body: Bytes::new(),
            parsed: Default::default(),
        },
        body_start,
    ))
}

/// The lines of a head (CRLF or bare LF), as absolute `(start, end)` without the
/// line ending. A bare CR inside a line is an error.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl Lines<'_> {
    fn next_line(&mut self) -> Result<Option<(usize, usize)>, ParseError> {
        if self.pos > self.end {
            return Ok(None);
        }
        let head = &self.buf[self.pos..self.end];
        let nl = memchr::memchr(b'\n', head).map_or(self.end, |o| self.pos + o);
        let line_end = if nl > self.pos && self.buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let line = (self.pos, line_end);
        if find_byte_in(&self.buf[line.0..line.1], b'\r').is_some() {
            return Err(ParseError::malformed("bare CR inside a line"));
        }
        self.pos = nl + 1;
        Ok(Some(line))
    }
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && (s[end - 1] == b' ' || s[end - 1] == b'\t') {
        end -= 1;
    }
    &s[..end]
}

fn trimmed(buf: &Bytes, mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && (buf[s] == b' ' || buf[s] == b'\t') {
        s += 1;
    }
    while e > s && (buf[e - 1] == b' ' || buf[e - 1] == b'\t') {
        e -= 1;
    }
    (s, e)
}

/// Header text is UTF-8 by the grammar; anything else is kept readable (lossy) rather
/// than refused, since old phones send Latin-1 display names.
fn text_value(bytes: Bytes) -> ByteString {
    match ByteString::try_from(bytes.clone()) {
        Ok(text) => text,
        Err(_) => ByteString::from(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

fn is_sip_version(s: &[u8]) -> bool {
    s.eq_ignore_ascii_case(b"SIP/2.0")
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| ParseError::malformed("the start line is not UTF-8"))?;
    if text
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = split_once_byte(text, b' ')
            .ok_or_else(|| ParseError::malformed("status line without a code"))?;
        if !is_sip_version(version.as_bytes()) {
            return Err(ParseError {
                kind: ErrorKind::Version,
                message: format!("{version} is not SIP/2.0"),
            });
        }
        let (code, reason) = split_once_byte(rest, b' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::malformed(format!(
                "status code `{code}` is not three digits"
            )));
        }
        let code: u16 = code
            .parse()
            .map_err(|_| ParseError::malformed("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::malformed(format!(
                "status code {code} is out of range"
            )));
        }
        if reason.bytes().any(|b| b < b' ' && b != b'\t') {
            return Err(ParseError::malformed(
                "control characters in the reason phrase",
            ));
        }
        return Ok(StartLine::Response {
            code,
            reason: ByteString::from(reason.to_owned()),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces, no more.
    let mut parts = split_byte(text, b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::malformed(
            "the request line is not `METHOD URI SIP/2.0` with single spaces",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::malformed(format!("`{method}` is not a method")));
    }
    if !is_sip_version(version.as_bytes()) {
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            return Err(ParseError {
                kind: ErrorKind::Version,
                message: format!("{version} is not SIP/2.0"),
            });
        }
        return Err(ParseError::malformed(format!(
            "`{version}` is not a SIP version"
        )));
    }
    let uri = Uri::parse(uri).map_err(|e| ParseError::malformed(format!("Request-URI: {e}")))?;
    if let Uri::Sip(u) = &uri
        && !u.headers.is_empty()
    {
        return Err(ParseError::malformed(
            "Request-URI: a request URI cannot carry ?headers",
        ));
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        parse_datagram(Bytes::from(s.to_owned())).unwrap()
    }

    const REGISTER: &str = "REGISTER sip:switchboard SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:1001@switchboard>\r\n\
        From: \"Alice\" <sip:1001@switchboard>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 REGISTER\r\n\
        Contact: <sip:1001@192.0.2.10:5060>;expires=3600\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn a_register() {
        let m = msg(REGISTER);
        assert_eq!(m.method(), Some(&Method::Register));
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.from_addr().unwrap().tag(), Some("1928301774"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert!(m.body.is_empty());
        let again = parse_datagram(m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn a_content_length_near_the_maximum_is_too_large_not_an_overflow() {
        let head = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\
                    From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n";
        for len in [usize::MAX.to_string(), (usize::MAX - 55).to_string()] {
            let raw = format!("{head}Content-Length: {len}\r\n\r\nbody");
            let err = parse_stream(&Bytes::from(raw)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::TooLarge, "{len}: {err:?}");
        }
    }

    #[test]
    fn folding_compact_forms_and_lf_only() {
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bKx\ni: x@y\nl: 0\nSubject: one\n  two\n\n",
        );
        assert_eq!(m.call_id().unwrap(), "x@y");
        assert_eq!(m.header(&HeaderName::Subject), Some("one two"));
    }

    #[test]
    fn bodies_and_lengths() {
        let base = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n";
        assert_eq!(
            &msg(&format!("{base}Content-Length: 5\r\n\r\nhello")).body[..],
            b"hello"
        );
        assert_eq!(
            &msg(&format!("{base}Content-Length: 2\r\n\r\nhello")).body[..],
            b"he"
        );
        assert_eq!(&msg(&format!("{base}\r\nhello")).body[..], b"hello");
        assert!(
            parse_datagram(Bytes::from(format!("{base}Content-Length: 9\r\n\r\nhello"))).is_err()
        );
        assert!(parse_datagram(Bytes::from(format!("{base}Content-Length: -1\r\n\r\n"))).is_err());
    }

    #[test]
    fn streams_frame_by_content_length() {
        let two = Bytes::from(format!("\r\n\r\n{}{}", REGISTER, REGISTER));
        let Framed::Message(_, used) = parse_stream(&two).unwrap() else {
            panic!()
        };
        assert_eq!(used, 4 + REGISTER.len());
        let rest = two.slice(used..);
        assert!(
            matches!(parse_stream(&rest).unwrap(), Framed::Message(_, n) if n == REGISTER.len())
        );
        let partial = Bytes::from(REGISTER[..40].to_owned());
        assert!(matches!(
            parse_stream(&partial).unwrap(),
            Framed::Incomplete
        ));
        assert!(matches!(
            parse_stream(&Bytes::from_static(b"\r\n\r\n")).unwrap(),
            Framed::KeepAlive(4)
        ));
        let body_missing = Bytes::from(REGISTER.replace("Content-Length: 0", "Content-Length: 10"));
        assert!(matches!(
            parse_stream(&body_missing).unwrap(),
            Framed::Incomplete
        ));
    }

    #[test]
    fn refusals() {
        for bad in [
            "INVITE  sip:a@b SIP/2.0\r\n\r\n",
            "INVITE sip:a@b SIP/2.0 \r\n\r\n",
            "INVITE <sip:a@b> SIP/2.0\r\n\r\n",
            "INVITE sip:a@b\r\n\r\n",
            "SIP/2.0 4294967301 big\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nFoobar roobar\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\n",
            "",
        ] {
            assert!(
                parse_datagram(Bytes::from(bad.to_owned())).is_err(),
                "{bad:?}"
            );
        }
        let v = parse_datagram(Bytes::from_static(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n")).unwrap_err();
        assert_eq!(v.kind, ErrorKind::Version);
        let big = Bytes::from(vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(parse_datagram(big).unwrap_err().kind, ErrorKind::TooLarge);
    }
}
