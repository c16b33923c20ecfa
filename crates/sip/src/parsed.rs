//! The typed headers the parser's syntax check builds, kept with the message so that
//! the accessors do not parse them again: without it every typed header of a request
//! is parsed twice, once to check it and once to use it (a quarter of a registrar's
//! time went there).
//!
//! Each entry holds the header value it was parsed from, and an accessor uses it only
//! while the message's header still has exactly that value: the same bytes at the same
//! address, which the held clone keeps alive so that no other value can take its
//! place. A header edited through the public `headers` field is simply parsed again.

use std::fmt;
use std::sync::Arc;

use bytestring::ByteString;

use crate::header::{AuthHeader, CSeq, Contacts, NameAddr, Via};

/// Shared, so cloning a message does not copy its typed headers.
#[derive(Clone, Default)]
pub struct Parsed(Option<Arc<ParsedHeaders>>);

#[derive(Clone, Default)]
pub(crate) struct ParsedHeaders {
    /// The first Via line (its first entry is the top Via).
    pub via: Option<Typed<Vec<Via>>>,
    pub from: Option<Typed<NameAddr>>,
    pub to: Option<Typed<NameAddr>>,
    /// The first Contact line.
    pub contact: Option<Typed<Contacts>>,
    pub cseq: Option<Typed<CSeq>>,
    /// Every Authorization line, in order.
    pub authorization: Vec<Typed<AuthHeader>>,
}

#[derive(Clone)]
pub(crate) struct Typed<T> {
    source: ByteString,
    value: T,
}

impl<T> Typed<T> {
    pub fn new(source: &ByteString, value: T) -> Self {
        Self {
            source: source.clone(),
            value,
        }
    }

    /// The typed value when `header` is still the value it was parsed from. Empty
    /// values are never matched: every empty `Bytes` shares one address.
    pub fn of(&self, header: &str) -> Option<&T> {
        (!header.is_empty()
            && std::ptr::eq(self.source.as_ptr(), header.as_ptr())
            && self.source.len() == header.len())
        .then_some(&self.value)
    }
}

impl Parsed {
    pub(crate) fn new(headers: ParsedHeaders) -> Self {
        Self(Some(Arc::new(headers)))
    }

    pub(crate) fn get(&self) -> Option<&ParsedHeaders> {
        self.0.as_deref()
    }

    /// Takes the kept Vias of `header` out, when no clone of the message shares them.
    pub(crate) fn take_via(&mut self, header: &str) -> Option<Vec<Via>> {
        let headers = Arc::get_mut(self.0.as_mut()?)?;
        headers.via.as_ref()?.of(header)?;
        headers.via.take().map(|t| t.value)
    }

    pub(crate) fn make_mut(&mut self) -> &mut ParsedHeaders {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

/// A cache, not part of the message's value: two messages with the same start line,
/// headers and body are equal whatever was parsed of them.
impl PartialEq for Parsed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Parsed {}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Parsed(typed headers kept)"
        } else {
            "Parsed(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use bytes::Bytes;

    use crate::header::HeaderName;
    use crate::parse_datagram;

    const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb\r\n\
        From: <sip:1001@example.com>;tag=f\r\nTo: <sip:1001@example.com>\r\n\
        Call-ID: c1\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@192.0.2.1>;expires=60\r\n\
        Authorization: Digest username=\"1001\", realm=\"example.com\", nonce=\"n\", \
        uri=\"sip:example.com\", response=\"00\"\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn accessors_use_what_the_parser_built() {
        let m = parse_datagram(Bytes::from_static(REGISTER.as_bytes())).unwrap();
        assert!(matches!(m.to_addr().unwrap(), Cow::Borrowed(_)));
        assert!(matches!(m.from_addr().unwrap(), Cow::Borrowed(_)));
        assert!(matches!(m.top_via().unwrap(), Cow::Borrowed(_)));
        assert!(matches!(m.contacts().unwrap().unwrap(), Cow::Borrowed(_)));
        let auth = m.auth_headers(&HeaderName::Authorization).unwrap();
        assert!(matches!(auth[0], Cow::Borrowed(_)));
        assert_eq!(m.cseq().unwrap().seq, 2);
        // A message built by hand has nothing kept and parses on demand.
        let built = crate::Message::response_to(&m, 200, None);
        assert!(matches!(built.to_addr().unwrap(), Cow::Owned(_)));
        assert_eq!(built.to_addr().unwrap(), m.to_addr().unwrap());
    }

    #[test]
    fn an_edited_header_is_parsed_again_not_read_from_the_cache() {
        let mut m = parse_datagram(Bytes::from_static(REGISTER.as_bytes())).unwrap();
        let to = m
            .headers
            .iter()
            .position(|h| h.name == HeaderName::To)
            .unwrap();
        m.headers[to].value = "<sip:2002@example.com>".into();
        let now = m.to_addr().unwrap();
        assert!(matches!(now, Cow::Owned(_)));
        assert_eq!(now.to_string(), "<sip:2002@example.com>");
        m.set(HeaderName::CSeq, "7 REGISTER");
        assert_eq!(m.cseq().unwrap().seq, 7);
        m.remove(&HeaderName::Contact);
        assert!(m.contacts().unwrap().is_none());
        m.push(HeaderName::Contact, "<sip:a@b>");
        m.push(HeaderName::Contact, "<sip:c@d>");
        let crate::header::Contacts::List(list) = &*m.contacts().unwrap().unwrap() else {
            panic!()
        };
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn editing_the_top_via_rewrites_its_line_and_keeps_it_typed() {
        let mut m = parse_datagram(Bytes::from_static(REGISTER.as_bytes())).unwrap();
        m.edit_top_via(|v| v.params.set("received", Some("203.0.113.5")))
            .unwrap();
        assert_eq!(
            m.header(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;received=203.0.113.5, \
             SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb"
        );
        let top = m.top_via().unwrap();
        assert!(matches!(top, Cow::Borrowed(_)));
        assert_eq!(top.received(), Some("203.0.113.5"));
        assert_eq!(m.vias().unwrap().len(), 2);
        // What was written parses back to what is kept.
        let again = parse_datagram(m.to_bytes()).unwrap();
        assert_eq!(again.top_via().unwrap(), m.top_via().unwrap());
    }
}
