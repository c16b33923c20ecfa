//! How long the parser takes for the REGISTER of `bench/run.py reg-storm` (SIPp's, with
//! digest credentials), the messages of a `call-storm` call, and each typed header
//! alone: a quick check of a parser change before the load benchmark. Uses the system allocator (the server uses mimalloc).
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

/// The call-storm caller's authenticated INVITE (bench/sipp/call_uac.xml).
const INVITE: &str = "INVITE sip:204001@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16060;rport;branch=z9hG4bK-4242-17-2\r\n\
Max-Forwards: 70\r\n\
From: <sip:200001@bench.example>;tag=4242-17\r\n\
To: <sip:204001@bench.example>\r\n\
Call-ID: 17-4242@127.0.0.1\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:200001@127.0.0.1:16060;transport=UDP>\r\n\
Proxy-Authorization: Digest username=\"200001\",realm=\"bench.example\",uri=\"sip:127.0.0.1:5070\",\
nonce=\"AAAAAGdMHwQxMjM0NTY3OIx3uYqkJ0Zp7Q5c2bG1\",response=\"0123456789abcdef0123456789abcdef\",\
algorithm=MD5,cnonce=\"6b8b4567\",qop=auth,nc=00000001\r\n\
User-Agent: SIPp call-storm\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 185\r\n\r\n\
v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

/// The call-storm callee's answer to the PBX's INVITE (bench/sipp/call_uas.xml).
const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK0123456789abcdef;rport=5070\r\n\
From: \"200001\" <sip:200001@bench.example>;tag=5f2a9c0e1d3b4a67\r\n\
To: <sip:204001@bench.example>;tag=5151-17\r\n\
Call-ID: 9a8b7c6d5e4f3a2b@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:17060;transport=UDP>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 141\r\n\r\n\
v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The call-storm caller's BYE.
const BYE: &str = "BYE sip:200001@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16060;rport;branch=z9hG4bK-4242-17-5\r\n\
Max-Forwards: 70\r\n\
From: <sip:200001@bench.example>;tag=4242-17\r\n\
To: <sip:204001@bench.example>;tag=a1b2c3d4e5f60718\r\n\
Call-ID: 17-4242@127.0.0.1\r\n\
CSeq: 3 BYE\r\n\
Content-Length: 0\r\n\r\n";

/// Calls per run; `PARSE_ROUNDS` sets fewer (under callgrind, say).
fn rounds() -> u32 {
    std::env::var("PARSE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000)
}

/// The best of five runs of `rounds()` calls, in ns per call (the machine is shared).
fn time(name: &str, f: &dyn Fn()) {
    let rounds = rounds();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(rounds)
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
    for (name, text) in [
        ("INVITE (call-storm)", INVITE),
        ("200 OK (call-storm)", OK),
        ("BYE (call-storm)", BYE),
    ] {
        let data = Bytes::from_static(text.as_bytes());
        time(name, &|| {
            black_box(parse_datagram(data.clone()).unwrap());
        });
    }
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
