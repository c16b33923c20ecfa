use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// Parses, checks the writer reproduces it, and returns it.
fn roundtrip(text: &str) -> SessionDescription {
    let sd = SessionDescription::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let written = sd.to_string();
    assert_eq!(SessionDescription::parse(&written).as_ref(), Ok(&sd));
    sd
}

fn crlf(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

fn error_line(text: &str) -> (Option<usize>, String) {
    let e = SessionDescription::parse(text).expect_err(text);
    (e.line, e.message)
}

const POLYCOM: &[&str] = &[
    "v=0",
    "o=- 1609342067 1609342067 IN IP4 192.168.1.50",
    "s=Polycom IP Phone",
    "c=IN IP4 192.168.1.50",
    "t=0 0",
    "a=sendrecv",
    "m=audio 2222 RTP/AVP 9 0 8 18 101",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
];

#[test]
fn desk_phone_offer() {
    let text = crlf(POLYCOM);
    let sd = roundtrip(&text);
    // Written back byte for byte: the writer uses the same order and spacing.
    assert_eq!(sd.to_string(), text);
    assert_eq!(sd.version, 0);
    assert_eq!(sd.origin.username, "-");
    assert_eq!(sd.origin.session_id, "1609342067");
    assert_eq!(sd.session_name, "Polycom IP Phone");
    assert_eq!(sd.times, vec![Timing::default()]);
    assert_eq!(sd.media.len(), 1);
    let audio = &sd.media[0];
    assert_eq!(audio.media, "audio");
    assert_eq!(audio.port, 2222);
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(audio.formats, ["9", "0", "8", "18", "101"]);
    assert!(audio.is_rtp());
    let names: Vec<String> = audio.rtpmaps().map(|r| r.encoding.to_string()).collect();
    assert_eq!(names, ["G722", "PCMU", "PCMA", "G729", "telephone-event"]);
    assert_eq!(
        audio.codec_for("101"),
        Some(Rtpmap {
            payload_type: 101,
            encoding: "telephone-event".into(),
            clock_rate: 8000,
            channels: None
        })
    );
    assert_eq!(audio.fmtp("18"), Some("annexb=no"));
    assert_eq!(audio.fmtp("101"), Some("0-15"));
    assert_eq!(audio.fmtp("0"), None);
    assert_eq!(audio.ptime(), Some(20));
    assert_eq!(audio.direction(), None);
    assert_eq!(sd.direction(), Some(Direction::SendRecv));
    assert_eq!(sd.media_direction(0), Direction::SendRecv);
    assert_eq!(
        sd.connection_for(0).and_then(Connection::ip_addr),
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 50)))
    );
    assert!(!audio.rtcp_mux());
}

#[test]
fn yealink_offer_with_bare_lf_and_no_final_newline() {
    let text = "v=0\no=- 20045 20045 IN IP4 10.0.0.60\ns=SDP data\nc=IN IP4 10.0.0.60\nt=0 0\n\
                m=audio 11800 RTP/AVP 0 8 9 18 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n\
                a=rtpmap:9 G722/8000\na=rtpmap:18 G729/8000\na=fmtp:18 annexb=no\n\
                a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendrecv";
    let sd = roundtrip(text);
    assert_eq!(sd.to_string(), text.replace('\n', "\r\n") + "\r\n");
    assert_eq!(sd.media[0].direction(), Some(Direction::SendRecv));
    assert_eq!(sd.media[0].codec_for("9").unwrap().encoding, "G722");
}

#[test]
fn chrome_webrtc_offer() {
    let text = crlf(&[
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 192.168.1.20 rport 54321 generation 0 network-cost 999",
        "a=candidate:3885250869 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-cost 999",
        "a=ice-ufrag:EsAw",
        "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09:DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:- 1f0a7c0e-6d3b-4c1e-9f5a-1b2c3d4e5f60",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6",
    ]);
    let sd = roundtrip(&text);
    assert_eq!(sd.to_string(), text);
    assert_eq!(sd.attribute("group"), Some("BUNDLE 0"));
    assert_eq!(sd.attribute("msid-semantic"), Some(" WMS"));
    assert_eq!(sd.attribute("extmap-allow-mixed"), Some(""));
    let audio = &sd.media[0];
    assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
    assert!(audio.is_rtp());
    assert!(audio.rtcp_mux());
    assert_eq!(
        audio.rtcp(),
        Some(Rtcp {
            port: 9,
            connection: Some(Connection::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
        })
    );
    assert_eq!(audio.candidates().count(), 2);
    assert!(audio.candidates().next().unwrap().contains("typ srflx"));
    assert_eq!(audio.ice_ufrag(), Some("EsAw"));
    assert_eq!(audio.ice_pwd(), Some("bP+XJMM09aR8AiX1jdukzR6Y"));
    assert!(audio.fingerprint().unwrap().starts_with("sha-256 DA:39"));
    assert_eq!(sd.attribute_for(0, "fingerprint"), audio.fingerprint());
    assert_eq!(audio.setup(), Some("actpass"));
    assert_eq!(audio.mid(), Some("0"));
    let opus = audio.codec_for("111").unwrap();
    assert_eq!((opus.clock_rate, opus.channels), (48000, Some(2)));
    assert_eq!(opus.channel_count(), 2);
    let fmtp = Fmtp {
        format: "111".into(),
        params: audio.fmtp("111").unwrap().into(),
    };
    assert_eq!(
        fmtp.params().collect::<Vec<_>>(),
        [("minptime", Some("10")), ("useinbandfec", Some("1"))]
    );
    assert!(sd.connection_for(0).unwrap().is_unspecified());
}

#[test]
fn hold_with_sendonly() {
    let mut lines = POLYCOM.to_vec();
    lines.retain(|l| *l != "a=sendrecv");
    lines.push("a=sendonly");
    let sd = roundtrip(&crlf(&lines));
    assert_eq!(sd.media[0].direction(), Some(Direction::SendOnly));
    assert_eq!(sd.media_direction(0), Direction::SendOnly);
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
    assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
}

#[test]
fn direction_falls_back_to_session_then_sendrecv() {
    let base = crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
    ]);
    let media = "m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 31\r\na=inactive\r\n";
    let sd = roundtrip(&format!("{base}{media}"));
    assert_eq!(sd.media_direction(0), Direction::SendRecv);
    assert_eq!(sd.media_direction(1), Direction::Inactive);
    assert_eq!(sd.media_direction(7), Direction::SendRecv);
    let sd = roundtrip(&format!("{base}a=recvonly\r\n{media}"));
    assert_eq!(sd.media_direction(0), Direction::RecvOnly);
    assert_eq!(sd.media_direction(1), Direction::Inactive);
}

#[test]
fn set_direction_replaces_in_place() {
    let text = crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 192.0.2.1",
        "a=rtpmap:0 PCMU/8000",
        "a=sendrecv",
        "a=ptime:20",
        "a=recvonly",
    ]);
    let mut sd = roundtrip(&text);
    sd.media[0].set_direction(Direction::SendOnly);
    let names: Vec<&str> = sd.media[0]
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["rtpmap", "sendonly", "ptime"]);
    assert_eq!(sd.media_direction(0), Direction::SendOnly);

    let mut media = MediaDescription::new("audio", 4000, "RTP/AVP", vec!["0".into()]);
    media.set_direction(Direction::Inactive);
    media.set_direction(Direction::RecvOnly);
    assert_eq!(media.attributes, [Attribute::flag("recvonly")]);

    sd.set_direction(Direction::Inactive);
    assert_eq!(sd.attributes, [Attribute::flag("inactive")]);
    // The media-level attribute still wins.
    assert_eq!(sd.media_direction(0), Direction::SendOnly);
}

#[test]
fn connection_only_at_media_level() {
    let text = crlf(&[
        "v=0",
        "o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com",
        "s=",
        "t=0 0",
        "m=audio 49172 RTP/AVP 0",
        "c=IN IP4 192.0.2.201",
        "m=video 0 RTP/AVP 31",
        "m=audio 49174 RTP/AVP 8",
        "c=IN IP4 192.0.2.202",
    ]);
    let mut sd = roundtrip(&text);
    assert_eq!(sd.session_name, "");
    assert_eq!(sd.connection, None);
    assert_eq!(sd.connection_for(0).unwrap().address, "192.0.2.201");
    assert_eq!(sd.connection_for(1), None);
    assert!(sd.media[1].is_rejected());
    assert_eq!(sd.connection_for(2).unwrap().address, "192.0.2.202");
    assert_eq!(sd.connection_for(3), None);

    let relay = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    sd.set_connection_address(relay);
    for i in 0..3 {
        assert_eq!(sd.connection_for(i).unwrap().ip_addr(), Some(relay));
    }
    assert_eq!(sd.media[1].connection, None);
    roundtrip(&sd.to_string());
}

#[test]
fn ipv6() {
    let text = crlf(&[
        "v=0",
        "o=- 2890844526 2890842807 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::2",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0",
        "m=video 51372 RTP/AVP 96",
        "c=IN IP6 ff15::101/3",
        "a=rtpmap:96 H264/90000",
        "a=rtcp:51373 IN IP6 2001:db8::3",
    ]);
    let mut sd = roundtrip(&text);
    assert_eq!(sd.origin.addr_type, "IP6");
    let v6: Ipv6Addr = "2001:db8::2".parse().unwrap();
    assert_eq!(sd.connection_for(0).unwrap().ip_addr(), Some(v6.into()));
    let multicast = sd.connection_for(1).unwrap();
    assert_eq!(multicast.base_address(), "ff15::101");
    assert_eq!(multicast.ip_addr(), Some("ff15::101".parse().unwrap()));
    let rtcp = sd.media[1].rtcp().unwrap();
    assert_eq!(rtcp.port, 51373);
    assert_eq!(rtcp.to_string(), "51373 IN IP6 2001:db8::3");
    sd.set_connection_address(IpAddr::V6(v6));
    assert!(sd.to_string().contains("c=IN IP6 2001:db8::2\r\nt=0 0\r\n"));
    assert_eq!(sd.connection_for(1).unwrap().addr_type, "IP6");

    let bracketed = Connection {
        net_type: "IN".into(),
        addr_type: "IP6".into(),
        address: "[2001:db8::9]".into(),
    };
    assert_eq!(bracketed.ip_addr(), Some("2001:db8::9".parse().unwrap()));
    let fqdn = Connection {
        address: "media.example.com".into(),
        ..bracketed
    };
    assert_eq!(fqdn.ip_addr(), None);
}

#[test]
fn rfc4475_body() {
    // RFC 4475 §3.1.1.1 (wsinv) and others: `a=rtpmap:31 LPC` has no clock rate.
    let text = crlf(&[
        "v=0",
        "o=mhandley 29739 7272939 IN IP4 192.0.2.3",
        "s=-",
        "c=IN IP4 192.0.2.4",
        "t=0 0",
        "m=audio 49217 RTP/AVP 0 12",
        "m=video 3227 RTP/AVP 31",
        "a=rtpmap:31 LPC",
    ]);
    let sd = roundtrip(&text);
    assert_eq!(sd.to_string(), text);
    assert_eq!(sd.media[0].formats, ["0", "12"]);
    assert_eq!(sd.media[0].codec_for("12").unwrap().encoding, "QCELP");
    assert_eq!(sd.media[1].attribute("rtpmap"), Some("31 LPC"));
    // An rtpmap we cannot read is not replaced by the static H261 guess.
    assert_eq!(sd.media[1].codec_for("31"), None);
    assert_eq!(sd.media[1].rtpmaps().count(), 0);
}

#[test]
fn rfc4566_example_with_optional_fields() {
    let text = crlf(&[
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "p=+1 617 555-6011",
        "c=IN IP4 224.2.17.12/127",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=604800 3600 0 90000",
        "r=7d 1h 0 25h",
        "t=0 0",
        "z=2882844526 -1h 2898848070 0",
        "k=prompt",
        "a=recvonly",
        "m=audio 49170 RTP/AVP 0",
        "i=the audio",
        "b=AS:64",
        "k=clear:secret",
        "m=video 51372/2 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    ]);
    let sd = roundtrip(&text);
    assert_eq!(sd.to_string(), text);
    assert_eq!(
        sd.info.as_deref(),
        Some("A Seminar on the session description protocol")
    );
    assert_eq!(sd.emails, ["j.doe@example.com (Jane Doe)"]);
    assert_eq!(sd.phones, ["+1 617 555-6011"]);
    let c = sd.connection.as_ref().unwrap();
    assert_eq!(c.base_address(), "224.2.17.12");
    assert_eq!(c.ip_addr(), Some(IpAddr::V4(Ipv4Addr::new(224, 2, 17, 12))));
    assert_eq!(sd.bandwidths[0].bandwidth, 128);
    assert_eq!(sd.times.len(), 2);
    assert_eq!(sd.times[0].start, 2873397496);
    assert_eq!(sd.times[0].repeats, ["604800 3600 0 90000", "7d 1h 0 25h"]);
    assert_eq!(
        sd.time_zones.as_deref(),
        Some("2882844526 -1h 2898848070 0")
    );
    assert_eq!(sd.key.as_deref(), Some("prompt"));
    assert_eq!(sd.media[0].bandwidths[0].bwtype, "AS");
    assert_eq!(sd.media[0].key.as_deref(), Some("clear:secret"));
    assert_eq!((sd.media[1].port, sd.media[1].num_ports), (51372, Some(2)));
    assert_eq!(sd.media_direction(1), Direction::RecvOnly);
}

#[test]
fn z_line_may_also_sit_inside_the_time_descriptions() {
    // RFC 8866 places z= after the r= of a time description; written after the last.
    let sd = roundtrip(&crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "t=1 2",
        "z=2882844526 -1h",
        "t=3 4",
    ]));
    assert!(
        sd.to_string()
            .ends_with("t=1 2\r\nt=3 4\r\nz=2882844526 -1h\r\n")
    );
}

#[test]
fn tolerated_quirks() {
    // No t=, trailing blank lines, repeated spaces, huge origin ids, empty s=.
    let text = "v=0\r\no=user 123456789012345678901234567890 99999999999999999999  IN IP4 192.0.2.1\r\ns=\r\n\
                c=IN  IP4 192.0.2.1\r\nm=audio  4000  RTP/AVP  0  8\r\na=rtcp-mux\r\n\r\n\r\n";
    let sd = roundtrip(text);
    assert!(sd.times.is_empty());
    assert_eq!(sd.origin.session_id, "123456789012345678901234567890");
    assert_eq!(sd.media[0].formats, ["0", "8"]);
    assert!(!sd.to_string().contains("t="));
    // Attribute values are kept verbatim, colons and trailing spaces included.
    let sd = roundtrip("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\na=x:y:z \na=empty:\n");
    assert_eq!(sd.attributes[0], Attribute::with_value("x", "y:z "));
    assert_eq!(sd.attributes[1], Attribute::with_value("empty", ""));
    // Non-RTP media: formats are tokens, no static payload guesses.
    let sd = roundtrip(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=application 5000 udp wb\nm=image 6000 udptl t38\n",
    );
    assert_eq!(sd.media[0].formats, ["wb"]);
    assert!(!sd.media[1].is_rtp());
    assert_eq!(sd.media[1].codec_for("0"), None);
    // Attribute names are not checked for rtpmap syntax at session level.
    roundtrip("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\na=rtpmap:x\n");
}

#[test]
fn parse_bytes_rejects_non_utf8() {
    let mut bytes = crlf(POLYCOM).into_bytes();
    assert!(SessionDescription::parse_bytes(&bytes).is_ok());
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    let e = SessionDescription::parse_bytes(&bytes).unwrap_err();
    assert_eq!(e.line, Some(POLYCOM.len()));
    assert!(e.message.contains("UTF-8"));
    assert_eq!(
        e.to_string(),
        format!("SDP line {}: not valid UTF-8", POLYCOM.len())
    );
}

#[test]
fn errors_name_the_line() {
    let ok = |extra: &str| format!("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n{extra}");
    let cases: &[(&str, usize, &str)] = &[
        ("o=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n", 1, "expected v="),
        ("v=0\r\ns=-\r\n", 2, "expected o="),
        ("v=0\r\no=- 1 1 IN IP4 h\r\n", 3, "missing s="),
        ("v=x\r\n", 1, "not a number"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", 2, "expected 6 fields"),
        (&ok("m=audio 70000 RTP/AVP 0\r\n"), 5, "out of range"),
        (&ok("m=audio abc RTP/AVP 0\r\n"), 5, "port"),
        (&ok("m=audio 4000/x RTP/AVP 0\r\n"), 5, "number of ports"),
        (&ok("m=audio 4000 RTP/AVP\r\n"), 5, "no media formats"),
        (&ok("m=audio\r\n"), 5, "missing port"),
        (&ok("hello world\r\n"), 5, "expected <letter>=<value>"),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=rtpmap:abc PCMU/8000\r\n"),
            6,
            "payload type",
        ),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n"),
            6,
            "0-127",
        ),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/fast\r\n"),
            6,
            "clock rate",
        ),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0\r\n"),
            6,
            "missing encoding",
        ),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/1/2\r\n"),
            6,
            "too many",
        ),
        (&ok("\r\nm=audio 4000 RTP/AVP 0\r\n"), 5, "empty line"),
        (&ok("x=1\r\n"), 5, "unknown line type"),
        (&ok("c=IN IP4 h\r\n"), 5, "out of order"),
        (&ok("a=x\r\nb=AS:1\r\n"), 6, "out of order"),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\na=x\r\nc=IN IP4 h\r\n"),
            7,
            "out of order",
        ),
        (
            &ok("m=audio 4000 RTP/AVP 0\r\nt=0 0\r\n"),
            6,
            "not allowed in a media section",
        ),
        (&ok("v=0\r\n"), 5, "repeated"),
        (&ok("m=audio 1 RTP/AVP 0\r\nb=AS:x\r\n"), 6, "bandwidth"),
        (
            &ok("m=audio 1 RTP/AVP 0\r\nb=AS64\r\n"),
            6,
            "<bwtype>:<bandwidth>",
        ),
        (&ok("t=1\r\n"), 5, "<start time> <stop time>"),
        (&ok("t=1 99999999999999999999\r\n"), 5, "out of range"),
        (&ok("a=\r\n"), 5, "without a name"),
        (&ok("a=:x\r\n"), 5, "without a name"),
        (&ok("k=a\r\nk=b\r\n"), 6, "twice"),
        (
            &ok("m=audio 1 RTP/AVP 0\r\nc=IN IP4 h\r\nc=IN IP4 h\r\n"),
            7,
            "twice",
        ),
        (
            &ok("m=audio 1 RTP/AVP 0\r\nc=IN IP4\r\n"),
            6,
            "<nettype> <addrtype> <address>",
        ),
        (&ok("a=x\rb\r\n"), 5, "stray CR"),
        (
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1 2 3\r\n",
            4,
            "without a t=",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nz=1 2\r\n",
            4,
            "without a t=",
        ),
    ];
    for (text, line, fragment) in cases {
        let (got_line, message) = error_line(text);
        assert_eq!(got_line, Some(*line), "{text:?}: {message}");
        assert!(
            message.contains(fragment),
            "{text:?}: {message:?} lacks {fragment:?}"
        );
    }
    assert_eq!(error_line("").0, None);
    assert_eq!(error_line("\r\n\r\n").0, None);
}

#[test]
fn limits() {
    let head = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n";
    let media = "m=audio 1 RTP/AVP 0\r\n".repeat(MAX_MEDIA);
    assert!(SessionDescription::parse(&format!("{head}{media}")).is_ok());
    let e =
        SessionDescription::parse(&format!("{head}{media}m=audio 1 RTP/AVP 0\r\n")).unwrap_err();
    assert_eq!(e.line, Some(5 + MAX_MEDIA));

    let attributes = "a=x\r\n".repeat(MAX_ATTRIBUTES);
    assert!(SessionDescription::parse(&format!("{head}{attributes}")).is_ok());
    let e = SessionDescription::parse(&format!("{head}{attributes}a=x\r\n")).unwrap_err();
    assert_eq!(e.line, Some(5 + MAX_ATTRIBUTES));
    // The limit is per section.
    let text = format!("{head}{attributes}m=audio 1 RTP/AVP 0\r\n{attributes}");
    assert!(SessionDescription::parse(&text).is_ok());

    let big = format!("{head}i={}\r\n", "x".repeat(MAX_INPUT_LEN));
    let e = SessionDescription::parse(&big).unwrap_err();
    assert_eq!(e.line, None);
    assert!(SessionDescription::parse_bytes(big.as_bytes()).is_err());
}

#[test]
fn retain_formats_drops_attributes_of_removed_payload_types() {
    let mut sd = roundtrip(&crlf(POLYCOM));
    let audio = &mut sd.media[0];
    audio
        .attributes
        .push(Attribute::with_value("rtcp-fb", "18 nack"));
    audio
        .attributes
        .push(Attribute::with_value("rtcp-fb", "* nack"));
    audio.retain_formats(|pt| matches!(pt, "0" | "101"));
    assert_eq!(audio.formats, ["0", "101"]);
    let kept: Vec<String> = audio.attributes.iter().map(ToString::to_string).collect();
    assert_eq!(
        kept,
        [
            "rtpmap:0 PCMU/8000",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-15",
            "ptime:20",
            "rtcp-fb:* nack",
        ]
    );
    // With its rtpmap gone, 9 falls back to the static table.
    assert_eq!(audio.codec_for("9"), Rtpmap::static_payload(9));
    assert_eq!(audio.fmtp("18"), None);
    roundtrip(&sd.to_string());

    // Nothing removed: attributes untouched, even stray ones.
    let mut media = MediaDescription::new("audio", 1, "RTP/AVP", vec!["0".into()]);
    media
        .attributes
        .push(Attribute::with_value("rtpmap", "96 opus/48000/2"));
    let before = media.clone();
    media.retain_formats(|_| true);
    assert_eq!(media, before);
}

#[test]
fn static_payload_types() {
    let media = MediaDescription::new("audio", 1, "RTP/AVP", vec!["0".into()]);
    let expect = [
        ("0", "PCMU"),
        ("3", "GSM"),
        ("4", "G723"),
        ("8", "PCMA"),
        ("9", "G722"),
        ("18", "G729"),
    ];
    for (pt, name) in expect {
        let codec = media.codec_for(pt).unwrap();
        assert_eq!(codec.encoding, name);
        assert_eq!(codec.clock_rate, 8000);
        assert_eq!(codec.payload_type.to_string(), pt);
    }
    assert_eq!(media.codec_for("96"), None);
    assert_eq!(media.codec_for("x"), None);
    assert_eq!(media.codec_for("300"), None);
    assert_eq!(Rtpmap::static_payload(10).unwrap().channel_count(), 2);
    // An rtpmap overrides the static table, and codec comparison ignores case.
    let mut media = media;
    media
        .attributes
        .push(Attribute::with_value("rtpmap", "0 pcmu/8000/1"));
    let pcmu = media.codec_for("0").unwrap();
    assert_eq!(pcmu.encoding, "pcmu");
    assert!(pcmu.same_codec(&Rtpmap::static_payload(0).unwrap()));
    assert!(!pcmu.same_codec(&Rtpmap::static_payload(8).unwrap()));
    assert_eq!(pcmu.to_attribute().to_string(), "rtpmap:0 pcmu/8000/1");
}

#[test]
fn typed_attribute_parsers() {
    assert_eq!(
        Rtcp::parse("5000"),
        Some(Rtcp {
            port: 5000,
            connection: None
        })
    );
    assert_eq!(Rtcp::parse("5000 IN IP4"), None);
    assert_eq!(Rtcp::parse("x"), None);
    assert!(Rtpmap::parse("96 opus").is_err());
    assert_eq!(
        Rtpmap::parse("96 opus/48000/2").unwrap().to_string(),
        "96 opus/48000/2"
    );
    assert_eq!(
        Fmtp::parse("101 0-15"),
        Some(Fmtp {
            format: "101".into(),
            params: "0-15".into()
        })
    );
    assert_eq!(Fmtp::parse("  "), None);
    let fmtp = Fmtp::parse("18 annexb=no").unwrap();
    assert_eq!(fmtp.params().collect::<Vec<_>>(), [("annexb", Some("no"))]);
    let mut media = MediaDescription::new("audio", 1, "RTP/AVP", vec!["0".into()]);
    media
        .attributes
        .push(Attribute::with_value("ptime", "20.0"));
    media
        .attributes
        .push(Attribute::with_value("maxptime", "x"));
    assert_eq!(media.ptime(), Some(20));
    assert_eq!(media.maxptime(), None);
}

#[test]
fn builders_and_version_increment() {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut origin = Origin::new("switchboard", "42", "9", ip);
    assert!(origin.increment_version());
    assert_eq!(origin.session_version, "10");
    origin.session_version = "99999999999999999999999".into();
    assert!(origin.increment_version());
    assert_eq!(origin.session_version, "100000000000000000000000");
    origin.session_version = "v1".into();
    assert!(!origin.increment_version());
    origin.session_version = "0".into();

    let mut sd = SessionDescription::new(origin, "-");
    sd.connection = Some(ip.into());
    let mut audio =
        MediaDescription::new("audio", 30000, "RTP/AVP", vec!["0".into(), "101".into()]);
    audio
        .attributes
        .push(Rtpmap::static_payload(0).unwrap().to_attribute());
    audio
        .attributes
        .push(Attribute::with_value("rtpmap", "101 telephone-event/8000"));
    audio
        .attributes
        .push(Attribute::with_value("fmtp", "101 0-16"));
    audio.set_direction(Direction::SendRecv);
    sd.media.push(audio);
    assert_eq!(
        sd.to_string(),
        crlf(&[
            "v=0",
            "o=switchboard 42 0 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=sendrecv",
        ])
    );
    roundtrip(&sd.to_string());
}
