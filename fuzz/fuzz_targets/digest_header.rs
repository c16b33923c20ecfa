//! Authorization / WWW-Authenticate values on arbitrary text: no panic, digest views
//! round-trip, and nonce checking never panics on forged input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::digest::{NonceMint, verify};
use switchboard_sip::header::{AuthHeader, DigestChallenge, DigestCredentials};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mint = NonceMint::new([7; 32]);
    let _ = mint.check(text, 1_000, "192.0.2.1".parse().unwrap(), 300);
    let Ok(header) = AuthHeader::parse(text) else { return };
    let reparsed = AuthHeader::parse(&header.to_string()).expect("an accepted header re-parses");
    assert_eq!(reparsed, header);
    if let Ok(creds) = DigestCredentials::from_header(&header) {
        let back = DigestCredentials::from_header(&creds.to_header()).expect("credentials re-parse");
        assert_eq!(back, creds);
        let _ = verify(&creds, "00000000000000000000000000000000", "REGISTER");
    }
    if let Ok(challenge) = DigestChallenge::from_header(&header) {
        let _ = DigestChallenge::from_header(&challenge.to_header());
    }
});
