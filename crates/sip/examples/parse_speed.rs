//! How long the parser takes for the REGISTER of `bench/run.py reg-storm` (SIPp's, with
//! digest credentials), and each typed header alone: a quick check of a parser change
//! before the load benchmark. Uses the system allocator (the server uses mimalloc).
//!
//! `cargo run --release -p switchboard-sip --example parse_speed [parts]`

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::header::{AuthHeader, CSeq, Contacts, DigestCredentials, HeaderName};
use switchboard_sip::header::{NameAddr, Via};
use switchboard_sip::parse_datagram;

const REGISTER: &str = "REGISTER sip:bench.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16060;branch=z9hG4bK-12345-1-0\r\n\
Max-Forwards: 70\r\n\
From: <sip:200001@bench.example>;tag=12345-1\r\n\
To: <sip:200001@bench.example>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:200001@127.0.0.1:16060;transport=UDP>\r\n\
Authorization: Digest username=\"200001\",realm=\"bench.example\",uri=\"sip:bench.example\",\
nonce=\"AAAAAGdMHwQxMjM0NTY3OIx3uYqkJ0Zp7Q5c2bG1\",response=\"0123456789abcdef0123456789abcdef\",\
algorithm=MD5,cnonce=\"6b8b4567\",qop=auth,nc=00000001\r\n\
Expires: 3600\r\n\
User-Agent: SIPp reg-storm\r\n\
Content-Length: 0\r\n\r\n";

const AUTH: &str = "Digest username=\"200001\",realm=\"bench.example\",uri=\"sip:bench.example\",\
nonce=\"AAAAAGdMHwQxMjM0NTY3OIx3uYqkJ0Zp7Q5c2bG1\",response=\"0123456789abcdef0123456789abcdef\",\
algorithm=MD5,cnonce=\"6b8b4567\",qop=auth,nc=00000001";

const ROUNDS: u32 = 200_000;

/// The best of five runs of `ROUNDS` calls, in ns per call (the machine is shared).
fn time(name: &str, f: &dyn Fn()) {
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..ROUNDS {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:>28}: {best:7.0} ns");
}

fn main() {
    let data = Bytes::from_static(REGISTER.as_bytes());
    time("parse_datagram (REGISTER)", &|| {
        black_box(parse_datagram(data.clone()).unwrap());
    });
    time("parse + registrar's reads", &|| {
        let m = parse_datagram(data.clone()).unwrap();
        black_box(m.to_addr().unwrap());
        black_box(m.auth_headers(&HeaderName::Authorization).unwrap());
        black_box(m.contacts().unwrap());
        black_box(m.cseq().unwrap());
        black_box(m.top_via().unwrap());
    });
    if std::env::args().nth(1).as_deref() != Some("parts") {
        return;
    }
    time("Authorization", &|| {
        black_box(AuthHeader::parse(AUTH).unwrap());
    });
    time("Authorization + credentials", &|| {
        let a = AuthHeader::parse(AUTH).unwrap();
        black_box(DigestCredentials::from_header(&a).unwrap());
    });
    time("From", &|| {
        black_box(NameAddr::parse("<sip:200001@bench.example>;tag=12345-1").unwrap());
    });
    time("Contact", &|| {
        black_box(Contacts::parse(&["<sip:200001@127.0.0.1:16060;transport=UDP>"]).unwrap());
    });
    time("Via", &|| {
        black_box(Via::parse_list("SIP/2.0/UDP 127.0.0.1:16060;branch=z9hG4bK-12345-1-0").unwrap());
    });
    time("CSeq", &|| {
        black_box(CSeq::parse("2 REGISTER").unwrap());
    });
}
