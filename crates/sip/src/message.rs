//! A SIP message: start line, headers in order, body. Typed accessors parse the
//! headers the PBX uses; the writer produces the wire form.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::ParseError;
use crate::header::misc::{self, check_call_id, parse_max_forwards, parse_tokens};
use crate::header::name_addr::parse_delta_seconds;
use crate::header::{
    AuthHeader, CSeq, Contacts, Event, Header, HeaderName, MediaType, NameAddr, Replaces,
    SubscriptionState, Via,
};
use crate::method::Method;
use crate::parsed::{Parsed, ParsedHeaders, Typed};
use crate::uri::Uri;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { code: u16, reason: ByteString },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
    /// Typed headers built by the parser's syntax check (see `parsed`).
    pub(crate) parsed: Parsed,
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// The headers that identify a message's transaction and dialog, which a response
/// copies from its request (RFC 3261 §8.2.6.2).
fn identifies(name: &HeaderName) -> bool {
    matches!(
        name,
        HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
    )
}

impl Message {
    pub fn request(method: Method, uri: Uri) -> Self {
        Self {
            start: StartLine::Request { method, uri },
            // Room for what a request of the PBX carries, so it is not grown 4 times.
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
            parsed: Parsed::default(),
        }
    }

    pub fn response(code: u16, reason: &str) -> Self {
        Self::response_with(code, ByteString::from(reason.to_owned()))
    }

    fn response_with(code: u16, reason: ByteString) -> Self {
        Self {
            start: StartLine::Response { code, reason },
            // The copied headers and the few a response adds, without regrowing.
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
            parsed: Parsed::default(),
        }
    }

    /// A response to `req` (RFC 3261 §8.2.6.2): Via, From, To, Call-ID and CSeq copied;
    /// the caller adds a To tag where the dialog needs one.
    pub fn response_to(req: &Message, code: u16, reason: Option<&str>) -> Self {
        let reason = match reason {
            Some(r) => ByteString::from(r.to_owned()),
            None => ByteString::from_static(reason_phrase(code)),
        };
        let mut resp = Self::response_with(code, reason);
        resp.headers
            .extend(req.headers.iter().filter(|h| identifies(&h.name)).cloned());
        resp
    }

    /// A response's reason phrase.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first value of `name`.
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == *name)
            .map(|h| &*h.value)
    }

    /// The first value of `name` as stored: sharing it copies nothing.
    pub fn header_text(&self, name: &HeaderName) -> Option<&ByteString> {
        self.headers
            .iter()
            .find(|h| h.name == *name)
            .map(|h| &h.value)
    }

    /// Every value of `name`, in order.
    pub fn header_values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.clone();
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| &*h.value)
    }

    pub fn count(&self, name: &HeaderName) -> usize {
        self.headers.iter().filter(|h| h.name == *name).count()
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.headers.push(Header::new(name, value));
    }

    /// Appends a Via line of one `via`; the first Via line is kept typed, so that
    /// `top_via` does not parse what was just written (the transaction layer reads
    /// the top Via of every request it sends).
    pub fn push_via(&mut self, via: Via) {
        let value = ByteString::from(crate::text::render(&via, 96));
        if self.header(&HeaderName::Via).is_none() {
            self.parsed.make_mut().via = Some(Typed::new(&value, vec![via]));
        }
        self.headers.push(Header {
            name: HeaderName::Via,
            value,
        });
    }

    /// Replaces every `name` header with one value (at the position of the first).
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let value = value.into();
        match self.headers.iter().position(|h| h.name == name) {
            Some(i) => {
                self.headers[i].value = value;
                let mut seen = false;
                self.headers.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.headers.push(Header::new(name, value)),
        }
    }

    /// Inserts a header before all others (a proxy's Via).
    pub fn prepend(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.headers.insert(0, Header::new(name, value));
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.headers.retain(|h| h.name != *name);
    }

    /// Sets the body and its Content-Type and Content-Length.
    pub fn set_body(&mut self, content_type: impl Into<ByteString>, body: impl Into<Bytes>) {
        self.body = body.into();
        self.set(HeaderName::ContentType, content_type);
        let length = ByteString::from(itoa::Buffer::new().format(self.body.len()));
        self.set(HeaderName::ContentLength, length);
    }

    /// Appends a header whose value is fixed text, shared rather than copied (as
    /// [`Self::push`] copies a `&str`): the constant headers of every message sent.
    pub fn push_static(&mut self, name: HeaderName, value: &'static str) {
        self.headers.push(Header {
            name,
            value: ByteString::from_static(value),
        });
    }

    fn single(&self, name: &HeaderName) -> Result<Option<&str>, ParseError> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ParseError::in_header(
                name.as_str(),
                "appears more than once",
            ));
        }
        Ok(first)
    }

    fn required(&self, name: &HeaderName) -> Result<&str, ParseError> {
        self.single(name)?
            .ok_or_else(|| ParseError::malformed(format!("missing {name} header")))
    }

    /// Every Via, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let mut out = Vec::new();
        for v in self.header_values(&HeaderName::Via) {
            out.extend(Via::parse_list(v).map_err(|e| ParseError::in_header("Via", e))?);
        }
        Ok(out)
    }

    pub fn top_via(&self) -> Result<Cow<'_, Via>, ParseError> {
        let first = self
            .header(&HeaderName::Via)
            .ok_or_else(|| ParseError::malformed("missing Via header"))?;
        if let Some(vias) = self.kept(|p| p.via.as_ref(), first) {
            return vias
                .first()
                .map(Cow::Borrowed)
                .ok_or_else(|| ParseError::malformed("empty Via header"));
        }
        Via::parse_list(first)
            .map_err(|e| ParseError::in_header("Via", e))?
            .into_iter()
            .next()
            .map(Cow::Owned)
            .ok_or_else(|| ParseError::malformed("empty Via header"))
    }

    /// Edits the top Via (a server adding `received` / `rport`) and rewrites its line.
    pub fn edit_top_via<R>(&mut self, edit: impl FnOnce(&mut Via) -> R) -> Result<R, ParseError> {
        let idx = self
            .headers
            .iter()
            .position(|h| h.name == HeaderName::Via)
            .ok_or_else(|| ParseError::malformed("missing Via header"))?;
        let line = &self.headers[idx].value;
        // The kept Vias are taken rather than copied: every request a server receives
        // is edited here, and the copy was a handful of allocations each time.
        let mut vias = match self.parsed.take_via(line) {
            Some(v) => v,
            None => match self.kept(|p| p.via.as_ref(), line) {
                Some(v) => v.clone(),
                None => Via::parse_list(line).map_err(|e| ParseError::in_header("Via", e))?,
            },
        };
        let top = vias
            .first_mut()
            .ok_or_else(|| ParseError::malformed("empty Via header"))?;
        let result = edit(top);
        let mut text = String::with_capacity(line.len() + 40);
        for (i, v) in vias.iter().enumerate() {
            let _ = write!(text, "{}{v}", if i == 0 { "" } else { ", " });
        }
        let value = ByteString::from(text);
        self.parsed.make_mut().via = Some(Typed::new(&value, vias));
        self.headers[idx].value = value;
        Ok(result)
    }

    /// The kept typed value of a header, when `value` is still what it was parsed from.
    fn kept<'a, T: 'a>(
        &'a self,
        pick: impl FnOnce(&'a ParsedHeaders) -> Option<&'a Typed<T>>,
        value: &str,
    ) -> Option<&'a T> {
        self.parsed.get().and_then(pick).and_then(|t| t.of(value))
    }

    pub fn from_addr(&self) -> Result<Cow<'_, NameAddr>, ParseError> {
        self.address(&HeaderName::From, |p| p.from.as_ref())
    }

    pub fn to_addr(&self) -> Result<Cow<'_, NameAddr>, ParseError> {
        self.address(&HeaderName::To, |p| p.to.as_ref())
    }

    /// A single name-addr header (From, To), kept or parsed.
    fn address<'a>(
        &'a self,
        name: &HeaderName,
        pick: impl FnOnce(&'a ParsedHeaders) -> Option<&'a Typed<NameAddr>>,
    ) -> Result<Cow<'a, NameAddr>, ParseError> {
        let v = self.required(name)?;
        if let Some(a) = self.kept(pick, v) {
            return Ok(Cow::Borrowed(a));
        }
        NameAddr::parse(v)
            .map(Cow::Owned)
            .map_err(|e| ParseError::in_header(name.as_str(), e))
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.required(&HeaderName::CallId)?;
        check_call_id(v).map_err(|e| ParseError::in_header("Call-ID", e))?;
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let v = self.required(&HeaderName::CSeq)?;
        if let Some(c) = self.kept(|p| p.cseq.as_ref(), v) {
            return Ok(c.clone());
        }
        CSeq::parse(v).map_err(|e| ParseError::in_header("CSeq", e))
    }

    /// Contact: absent, `*`, or the addresses of all Contact lines.
    pub fn contacts(&self) -> Result<Option<Cow<'_, Contacts>>, ParseError> {
        let mut values = self.header_values(&HeaderName::Contact);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let rest: Vec<&str> = values.collect();
        if rest.is_empty()
            && let Some(c) = self.kept(|p| p.contact.as_ref(), first)
        {
            return Ok(Some(Cow::Borrowed(c)));
        }
        let mut all = Vec::with_capacity(1 + rest.len());
        all.push(first);
        all.extend(rest);
        Contacts::parse(&all)
            .map(|c| Some(Cow::Owned(c)))
            .map_err(|e| ParseError::in_header("Contact", e))
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(&HeaderName::MaxForwards)?
            .map(parse_max_forwards)
            .transpose()
            .map_err(|e| ParseError::in_header("Max-Forwards", e))
    }

    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(&HeaderName::Expires)?
            .map(parse_delta_seconds)
            .transpose()
            .map_err(|e| ParseError::in_header("Expires", e))
    }

    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(&HeaderName::MinExpires)?
            .map(parse_delta_seconds)
            .transpose()
            .map_err(|e| ParseError::in_header("Min-Expires", e))
    }

    /// Content-Length when given (several values are an error).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.single(&HeaderName::ContentLength)?
            .map(parse_content_length)
            .transpose()
    }

    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.single(&HeaderName::ContentType)?
            .map(MediaType::parse)
            .transpose()
            .map_err(|e| ParseError::in_header("Content-Type", e))
    }

    /// Route or Record-Route entries, in order.
    pub fn route_set(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        let mut out = Vec::new();
        for v in self.header_values(name) {
            out.extend(
                NameAddr::parse_list(v).map_err(|e| ParseError::in_header(name.as_str(), e))?,
            );
        }
        Ok(out)
    }

    /// Challenges or credentials of `name` (one per header line).
    pub fn auth_headers(&self, name: &HeaderName) -> Result<Vec<Cow<'_, AuthHeader>>, ParseError> {
        let kept: &[Typed<AuthHeader>] = match (name, self.parsed.get()) {
            (HeaderName::Authorization, Some(p)) => &p.authorization,
            _ => &[],
        };
        self.header_values(name)
            .map(|v| match kept.iter().find_map(|t| t.of(v)) {
                Some(a) => Ok(Cow::Borrowed(a)),
                None => AuthHeader::parse(v)
                    .map(Cow::Owned)
                    .map_err(|e| ParseError::in_header(name.as_str(), e)),
            })
            .collect()
    }

    /// Token-list headers (Allow, Supported, Require, Proxy-Require, Unsupported).
    pub fn tokens(&self, name: &HeaderName) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        for v in self.header_values(name) {
            out.extend(parse_tokens(v).map_err(|e| ParseError::in_header(name.as_str(), e))?);
        }
        Ok(out)
    }

    pub fn event(&self) -> Result<Option<Event>, ParseError> {
        self.single(&HeaderName::Event)?
            .map(Event::parse)
            .transpose()
            .map_err(|e| ParseError::in_header("Event", e))
    }

    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, ParseError> {
        self.single(&HeaderName::SubscriptionState)?
            .map(SubscriptionState::parse)
            .transpose()
            .map_err(|e| ParseError::in_header("Subscription-State", e))
    }

    pub fn refer_to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.single(&HeaderName::ReferTo)?
            .map(NameAddr::parse)
            .transpose()
            .map_err(|e| ParseError::in_header("Refer-To", e))
    }

    pub fn replaces(&self) -> Result<Option<Replaces>, ParseError> {
        self.single(&HeaderName::Replaces)?
            .map(Replaces::parse)
            .transpose()
            .map_err(|e| ParseError::in_header("Replaces", e))
    }

    pub fn p_asserted_identity(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.route_set(&HeaderName::PAssertedIdentity)
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.header(&HeaderName::UserAgent)
    }

    /// Checks the syntax of every header the stack interprets, and that CSeq names the
    /// request's method. Headers that appear more than once where only one is allowed
    /// are left to [`crate::validate`], which answers them with a 400.
    pub fn check_syntax(&self) -> Result<(), ParseError> {
        self.typed_headers().map(drop)
    }

    /// [`Self::check_syntax`], keeping the typed headers it built for the accessors.
    pub(crate) fn check_and_keep(&mut self) -> Result<(), ParseError> {
        self.parsed = Parsed::new(self.typed_headers()?);
        Ok(())
    }

    fn typed_headers(&self) -> Result<ParsedHeaders, ParseError> {
        fn keep<T>(
            slot: &mut Option<Typed<T>>,
            h: &Header,
            r: Result<T, String>,
        ) -> Result<(), String> {
            let value = r?;
            if slot.is_none() {
                *slot = Some(Typed::new(&h.value, value));
            }
            Ok(())
        }
        let mut kept = ParsedHeaders::default();
        for h in &self.headers {
            let v: &str = &h.value;
            let name = h.name.as_str();
            let res: Result<(), String> = match &h.name {
                HeaderName::Via => keep(&mut kept.via, h, Via::parse_list(v)),
                HeaderName::From => keep(&mut kept.from, h, NameAddr::parse(v)),
                HeaderName::To => keep(&mut kept.to, h, NameAddr::parse(v)),
                HeaderName::ReferTo => NameAddr::parse(v).map(drop),
                HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::PAssertedIdentity
                | HeaderName::Path => NameAddr::parse_list(v).map(drop),
                HeaderName::Contact => keep(&mut kept.contact, h, Contacts::parse(&[v])),
                HeaderName::CallId => check_call_id(v),
                HeaderName::CSeq => {
                    let checked = CSeq::parse(v).and_then(|c| match self.method() {
                        Some(m) if *m != c.method => Err(format!(
                            "CSeq method {} does not match the request method {m}",
                            c.method
                        )),
                        _ => Ok(c),
                    });
                    keep(&mut kept.cseq, h, checked)
                }
                HeaderName::MaxForwards => parse_max_forwards(v).map(drop),
                HeaderName::Expires | HeaderName::MinExpires => parse_delta_seconds(v).map(drop),
                HeaderName::ContentLength => {
                    parse_content_length(v).map(drop).map_err(|e| e.message)
                }
                HeaderName::ContentType => MediaType::parse(v).map(drop),
                HeaderName::Date => misc::check_date(v),
                HeaderName::RetryAfter => misc::check_retry_after(v).map(drop),
                HeaderName::Warning => misc::check_warning(v),
                HeaderName::Authorization => AuthHeader::parse(v).map(|a| {
                    kept.authorization.push(Typed::new(&h.value, a));
                }),
                HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate => AuthHeader::parse(v).map(drop),
                HeaderName::Allow
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported => parse_tokens(v).map(drop),
                HeaderName::Event => Event::parse(v).map(drop),
                HeaderName::SubscriptionState => SubscriptionState::parse(v).map(drop),
                HeaderName::Replaces => Replaces::parse(v).map(drop),
                _ => Ok(()),
            };
            res.map_err(|e| ParseError::in_header(name, e))?;
        }
        Ok(kept)
    }

    /// The wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                // Without the formatter: this is every response.
                out.extend_from_slice(b"SIP/2.0 ");
                out.extend_from_slice(itoa::Buffer::new().format(*code).as_bytes());
                out.push(b' ');
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in &self.headers {
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(512 + self.body.len());
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// Content-Length: digits, and not absurd (bodies are capped far below this anyway).
pub(crate) fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    let t = v.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::in_header(
            "Content-Length",
            format!("`{t}` is not a length"),
        ));
    }
    t.parse::<usize>()
        .map_err(|_| ParseError::in_header("Content-Length", format!("{t} is too large")))
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_datagram;

    #[test]
    fn a_pushed_via_is_kept_typed_and_written_as_it_is() {
        let mut m = Message::request(Method::Options, Uri::parse("sip:a@b").unwrap());
        let top = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;rport").unwrap();
        m.push_via(top.clone());
        m.push_via(Via::parse("SIP/2.0/UDP h2;branch=z9hG4bKy").unwrap());
        assert!(matches!(m.top_via().unwrap(), Cow::Borrowed(v) if *v == top));
        let again = parse_datagram(m.to_bytes()).unwrap();
        assert_eq!(again.top_via().unwrap().into_owned(), top);
        assert_eq!(again.vias().unwrap(), m.vias().unwrap());
    }
}
