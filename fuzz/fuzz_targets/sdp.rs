//! The SDP parser on arbitrary bytes: no panic, and what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = SessionDescription::parse_bytes(data) else { return };
    let again = SessionDescription::parse(&sdp.to_string()).expect("an accepted SDP re-parses");
    assert_eq!(again, sdp, "parse(write(s)) == s");
    for m in &sdp.media {
        let _ = m.rtpmaps();
        let _ = m.direction();
        let _ = m.rtcp();
    }
});
