//! The SIP message parser on arbitrary bytes: no panic, and whatever it accepts
//! re-serialises to a message that parses back equal. Typed header access and the UAS
//! checks must not panic either.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_sip::header::HeaderName;
use switchboard_sip::validate::{UasPolicy, validate_request};
use switchboard_sip::{Framed, Method, parse_datagram, parse_stream};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let _ = parse_stream(&bytes);
    let Ok(msg) = parse_datagram(bytes) else { return };
    let again = parse_datagram(msg.to_bytes()).expect("an accepted message re-parses");
    assert_eq!(again, msg, "parse(write(m)) == m");
    if let Ok(Framed::Message(streamed, _)) = parse_stream(&msg.to_bytes()) {
        assert_eq!(streamed.headers, msg.headers);
    }
    let _ = msg.vias();
    let _ = msg.from_addr();
    let _ = msg.to_addr();
    let _ = msg.cseq();
    let _ = msg.contacts();
    let _ = msg.expires();
    let _ = msg.route_set(&HeaderName::Route);
    let _ = msg.auth_headers(&HeaderName::Authorization);
    let _ = msg.event();
    let _ = msg.replaces();
    let policy = UasPolicy { methods: &[Method::Register, Method::Options], supported: &["path"], accept: &["application/sdp"] };
    if msg.is_request() {
        let _ = validate_request(&msg, &policy);
    }
});
