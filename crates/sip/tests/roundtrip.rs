//! Property tests: `parse(write(m)) == m` for generated messages, and no input makes
//! the parser panic (whatever it accepts round-trips too).

use bytes::Bytes;
use proptest::prelude::*;
use switchboard_sip::header::{CSeq, HeaderName, NameAddr, Via};
use switchboard_sip::params::Params;
use switchboard_sip::text::Scanner;
use switchboard_sip::uri::{Host, SipUri, UriParam};
use switchboard_sip::{Message, Method, Uri, parse_datagram, parse_stream};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}".prop_filter("no bare %", |s| !s.contains('%'))
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,2}".prop_map(|d| Host::Domain(d.into())),
        any::<[u8; 4]>().prop_map(|o| Host::V4(o.into())),
        any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
    ]
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        proptest::option::of("[a-z0-9][a-z0-9._-]{0,10}"),
        host(),
        proptest::option::of(1u16..),
        proptest::collection::vec(
            (
                "[a-z][a-z0-9-]{0,6}",
                proptest::option::of("[a-z0-9.]{1,6}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(secure, user, host, port, params)| SipUri {
            secure,
            user: user.map(Into::into),
            password: None,
            host,
            port,
            params: params
                .into_iter()
                .map(|(name, value)| UriParam {
                    name: name.into(),
                    value: value.map(Into::into),
                })
                .collect(),
            headers: Vec::new(),
        })
}

fn params() -> impl Strategy<Value = Params> {
    proptest::collection::vec(
        (
            token(),
            proptest::option::of(prop_oneof![token(), "[ -~]{0,10}"]),
        ),
        0..3,
    )
    .prop_map(|ps| {
        let mut p = Params::new();
        for (name, value) in ps {
            if !p.has(&name) {
                p.set(&name, value.as_deref());
            }
        }
        p
    })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (proptest::option::of("[ -~]{0,12}"), sip_uri(), params()).prop_map(|(display, uri, params)| {
        NameAddr {
            display: display
                .map(|d| compact_str::CompactString::from(d.trim()))
                .filter(|d| !d.is_empty()),
            uri: Uri::Sip(uri),
            params,
        }
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Bye),
        "[A-Z]{3,9}".prop_map(|m| Method::from_token(&m)),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        method(),
        sip_uri(),
        proptest::collection::vec((host(), proptest::option::of(1u16..), token()), 1..3),
        name_addr(),
        name_addr(),
        "[a-zA-Z0-9.-]{1,20}(@[a-z0-9.]{1,10})?",
        0u32..(1 << 31),
        proptest::collection::vec(("X-[A-Za-z]{1,8}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, uri, vias, from, to, call_id, seq, extra, body)| {
            let mut m = Message::request(method.clone(), Uri::Sip(uri));
            for (h, p, branch) in vias {
                m.push(
                    HeaderName::Via,
                    Via::new("UDP", h, p, &format!("z9hG4bK{branch}")).to_string(),
                );
            }
            m.push(HeaderName::From, from.to_string());
            m.push(HeaderName::To, to.to_string());
            m.push(HeaderName::CallId, call_id);
            m.push(HeaderName::CSeq, CSeq { seq, method }.to_string());
            for (name, value) in extra {
                m.push(HeaderName::parse(&name), value);
            }
            if !body.is_empty() {
                m.set_body("application/octet-stream", body);
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn written_messages_parse_back(m in message()) {
        let parsed = parse_datagram(m.to_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{m}")))?;
        prop_assert_eq!(&parsed, &m);
        // Framed from a stream, the same.
        let switchboard_sip::Framed::Message(streamed, used) = parse_stream(&m.to_bytes()).unwrap() else { panic!() };
        prop_assert_eq!(used, m.to_bytes().len());
        prop_assert_eq!(*streamed, m);
    }

    #[test]
    fn typed_headers_survive(m in message()) {
        let parsed = parse_datagram(m.to_bytes()).unwrap();
        prop_assert_eq!(parsed.from_addr().unwrap(), m.from_addr().unwrap());
        prop_assert_eq!(parsed.vias().unwrap(), m.vias().unwrap());
        prop_assert_eq!(parsed.cseq().unwrap(), m.cseq().unwrap());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let bytes = Bytes::from(data);
        if let Ok(m) = parse_datagram(bytes.clone()) {
            let again = parse_datagram(m.to_bytes()).expect("what was accepted re-parses");
            prop_assert_eq!(again, m);
        }
        let _ = parse_stream(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut raw = m.to_bytes().to_vec();
        let i = cut.index(raw.len());
        raw[i] = byte;
        if let Ok(m) = parse_datagram(Bytes::from(raw.clone())) {
            let _ = m.vias();
            let _ = m.contacts();
            let again = parse_datagram(m.to_bytes()).expect("what was accepted re-parses");
            prop_assert_eq!(again, m);
        }
        raw.truncate(i);
        let _ = parse_stream(&Bytes::from(raw));
    }

    #[test]
    fn scanner_is_total(s in "\\PC{0,40}") {
        let mut sc = Scanner::new(&s);
        let _ = sc.quoted();
        let _ = sc.until_unquoted(b',');
        let _ = Params::parse(&mut Scanner::new(&s));
        let _ = NameAddr::parse(&s);
        let _ = Uri::parse(&s);
    }
}
