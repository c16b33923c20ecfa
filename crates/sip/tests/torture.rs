//! Our own torture cases, beyond RFC 4475: each is refused cleanly or read right.

use bytes::Bytes;
use switchboard_sip::header::HeaderName;
use switchboard_sip::{ErrorKind, parse_datagram, parse_stream};

fn parse(s: &str) -> Result<switchboard_sip::Message, switchboard_sip::ParseError> {
    parse_datagram(Bytes::from(s.to_owned()))
}

const HEAD: &str = "OPTIONS sip:1001@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@pbx>;tag=1\r\nTo: <sip:1001@pbx>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

#[test]
fn refused_cleanly() {
    let cases = [
        // An unquoted display name with a comma, properly terminated this time.
        format!("{HEAD}Contact: Bell, Alexander <sip:a@b>\r\n\r\n"),
        // A NUL in a header name.
        format!("{HEAD}X-\0Bad: 1\r\n\r\n"),
        // A header name with a space inside.
        format!("{HEAD}X Bad: 1\r\n\r\n"),
        // Content-Length beyond usize.
        format!("{HEAD}Content-Length: 99999999999999999999999\r\n\r\n"),
        // A continuation line before any header.
        "OPTIONS sip:1001@pbx SIP/2.0\r\n folded: x\r\n\r\n".to_owned(),
        // A bare CR in the middle of a line.
        format!("{HEAD}Subject: a\rb\r\n\r\n"),
        // Via port out of range and a Via without a host.
        format!("{HEAD}Via: SIP/2.0/UDP 192.0.2.1:70000\r\n\r\n"),
        format!("{HEAD}Via: SIP/2.0/UDP ;branch=x\r\n\r\n"),
        // Max-Forwards that is not a number, Expires that overflows.
        format!("{HEAD}Max-Forwards: ten\r\n\r\n"),
        format!("{HEAD}Expires: 4294967296\r\n\r\n"),
        // An unterminated IPv6 reference in the Request-URI.
        "OPTIONS sip:[2001:db8::1 SIP/2.0\r\n\r\n".to_owned(),
        // A status line with a two-digit code, and one over 699.
        "SIP/2.0 99 Odd\r\n\r\n".to_owned(),
        "SIP/2.0 700 Odd\r\n\r\n".to_owned(),
        // Contact: * mixed with addresses.
        format!("{HEAD}Contact: *, <sip:a@b>\r\n\r\n"),
        // Digest credentials with an unterminated quote.
        format!("{HEAD}Authorization: Digest username=\"1001, realm=\"pbx\"\r\n\r\n"),
        // An escape that is not %HH in a URI.
        "OPTIONS sip:%G0@pbx SIP/2.0\r\n\r\n".to_owned(),
    ];
    for c in cases {
        assert!(parse(&c).is_err(), "accepted {c:?}");
    }
    let many = format!("{HEAD}{}\r\n", "X-A: 1\r\n".repeat(300));
    assert!(parse(&many).is_err(), "too many header lines");
    let big = format!("{HEAD}X-Big: {}\r\n\r\n", "a".repeat(70_000));
    assert_eq!(parse(&big).unwrap_err().kind, ErrorKind::TooLarge);
}

#[test]
fn read_right() {
    let m = parse(&format!("{HEAD}Contact: <sip:1001@[2001:db8::7]:5062;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1\r\nContent-Length: 0\r\n\r\n")).unwrap();
    let switchboard_sip::header::Contacts::List(c) = m.contacts().unwrap().unwrap().into_owned()
    else {
        panic!()
    };
    assert_eq!(
        c[0].params.get("+sip.instance"),
        Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
    );
    assert_eq!(c[0].uri.as_sip().unwrap().port, Some(5062));
    // Latin-1 in a display name is kept readable instead of refused.
    let mut raw = format!("{HEAD}Content-Length: 0\r\n").into_bytes();
    raw.extend_from_slice(b"Subject: caf\xe9\r\n\r\n");
    let m = parse_datagram(Bytes::from(raw)).unwrap();
    assert_eq!(m.header(&HeaderName::Subject), Some("caf\u{fffd}"));
    // Header names are case-insensitive, compact forms resolve, values keep their case.
    let m = parse("OPTIONS sip:a@b SIP/2.0\r\nVIA: SIP/2.0/UDP h;branch=z9hG4bKAbC\r\nf: <sip:a@b>;tag=Q\r\nt: <sip:a@b>\r\ni: X@y\r\ncseq: 1 OPTIONS\r\n\r\n").unwrap();
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKAbC"));
    assert_eq!(m.call_id().unwrap(), "X@y");
}

#[test]
fn streams_are_not_fooled() {
    // A stream with a conflicting Content-Length cannot be framed: it is an error.
    let s = Bytes::from(format!(
        "{HEAD}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ));
    assert!(parse_stream(&s).is_err());
    // Endless headers without the empty line: an error once past 64 KiB, not a hang.
    let s = Bytes::from(format!("{HEAD}{}", "X-A: 1\r\n".repeat(9000)));
    assert_eq!(parse_stream(&s).unwrap_err().kind, ErrorKind::TooLarge);
}

/// Found by the fuzzer in CI: a multi-byte character straddling byte 4 of the start
/// line used to panic on a `str` slice. Such lines are refused, never a panic.
#[test]
fn multibyte_start_lines_are_refused() {
    for line in [
        "REG\u{7ff} sip:a@b SIP/2.0",
        "SIP\u{e9}/2.0 200 OK",
        "REGISTER sip:a@b SIP\u{e9}/2.0",
        "REGISTER sip:a@b SIP/\u{e9}",
    ] {
        let raw = format!("{line}\r\nCall-ID: x\r\n\r\n");
        assert!(parse(&raw).is_err(), "accepted {raw:?}");
        assert!(
            parse_stream(&Bytes::from(raw.clone())).is_err(),
            "stream accepted {raw:?}"
        );
    }
}
