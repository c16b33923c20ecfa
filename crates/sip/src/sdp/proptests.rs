//! Property tests: the writer's output always parses back to the same value, and the
//! parser never panics.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::*;

/// A whitespace-free token (origin fields, addresses, protocols, formats).
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.+/_:*#-]{1,12}"
}

/// Free text as found in `s=`, `i=`, attribute values: anything but CR, LF and NUL.
fn text() -> impl Strategy<Value = String> {
    "[^\r\n\u{0}]{0,24}"
}

fn connection() -> impl Strategy<Value = Connection> {
    (token(), token(), token()).prop_map(|(net_type, addr_type, address)| Connection {
        net_type: net_type.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    })
}

fn bandwidth() -> impl Strategy<Value = Bandwidth> {
    ("[A-Za-z0-9_-]{1,8}", any::<u64>())
        .prop_map(|(bwtype, bandwidth)| Bandwidth { bwtype, bandwidth })
}

/// Any attribute except `rtpmap`, whose value the parser checks (see [`rtpmap`]).
fn attribute() -> impl Strategy<Value = Attribute> {
    ("[A-Za-z0-9_.-]{1,12}", option::of(text()))
        .prop_filter("rtpmap values are generated separately", |(name, _)| {
            name != "rtpmap"
        })
        .prop_map(|(name, value)| Attribute {
            name: name.into(),
            value: value.map(Into::into),
        })
}

fn rtpmap() -> impl Strategy<Value = Attribute> {
    (
        0u8..=127,
        "[A-Za-z0-9._-]{1,12}",
        any::<u32>(),
        option::of(any::<u16>()),
    )
        .prop_map(|(payload_type, encoding, clock_rate, channels)| {
            Rtpmap {
                payload_type,
                encoding: encoding.into(),
                clock_rate,
                channels,
            }
            .to_attribute()
        })
}

fn media() -> impl Strategy<Value = MediaDescription> {
    (
        (token(), any::<u16>(), option::of(any::<u16>()), token()),
        vec(token(), 1..5),
        (
            option::of(text()),
            option::of(connection()),
            vec(bandwidth(), 0..3),
            option::of(text()),
        ),
        vec(prop_oneof![3 => attribute(), 1 => rtpmap()], 0..6),
    )
        .prop_map(
            |(
                (media, port, num_ports, proto),
                formats,
                (info, connection, bandwidths, key),
                attributes,
            )| {
                MediaDescription {
                    media: media.into(),
                    port,
                    num_ports,
                    proto: proto.into(),
                    formats: formats.into_iter().map(Into::into).collect(),
                    info,
                    connection,
                    bandwidths,
                    key,
                    attributes,
                }
            },
        )
}

fn session() -> impl Strategy<Value = SessionDescription> {
    let origin = (token(), token(), token(), token(), token(), token()).prop_map(
        |(username, session_id, session_version, net_type, addr_type, address)| Origin {
            username: username.into(),
            session_id: session_id.into(),
            session_version: session_version.into(),
            net_type: net_type.into(),
            addr_type: addr_type.into(),
            address: address.into(),
        },
    );
    let timing =
        (any::<u64>(), any::<u64>(), vec(text(), 0..3)).prop_map(|(start, stop, repeats)| Timing {
            start,
            stop,
            repeats,
        });
    (
        (
            any::<u32>(),
            origin,
            text(),
            option::of(text()),
            option::of(text()),
        ),
        (
            vec(text(), 0..3),
            vec(text(), 0..3),
            option::of(connection()),
            vec(bandwidth(), 0..3),
        ),
        (vec(timing, 0..3), option::of(text()), option::of(text())),
        (vec(attribute(), 0..6), vec(media(), 0..4)),
    )
        .prop_map(
            |(
                (version, origin, session_name, info, uri),
                (emails, phones, connection, bandwidths),
                (times, time_zones, key),
                (attributes, media),
            )| {
                SessionDescription {
                    version,
                    origin,
                    session_name: session_name.into(),
                    info,
                    uri,
                    emails,
                    phones,
                    connection,
                    bandwidths,
                    // z= only means something after a t=, and the parser insists.
                    time_zones: time_zones.filter(|_| !times.is_empty()),
                    times,
                    key,
                    attributes,
                    media,
                }
            },
        )
}

/// Lines that look like SDP, in any order, to reach deep into the parser.
fn sdp_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("v=0".to_owned()),
        Just("o=- 1 1 IN IP4 192.0.2.1".to_owned()),
        Just("s=-".to_owned()),
        Just("t=0 0".to_owned()),
        Just("m=audio 4000 RTP/AVP 0 8".to_owned()),
        "[a-z]=[ -~]{0,30}",
        "a=(rtpmap|fmtp|rtcp|ptime|sendonly):[ -~]{0,20}",
        "[cm]=[ A-Za-z0-9/.]{0,30}",
        "[^\n]{0,10}",
    ];
    let header = prop_oneof![
        Just(""),
        Just("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n"),
        Just("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n"),
    ];
    (
        header,
        vec(line, 0..20),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(header, lines, end)| header.replace('\n', end) + &lines.join(end))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_descriptions_parse_back(sd in session()) {
        let text = sd.to_string();
        prop_assert_eq!(SessionDescription::parse(&text), Ok(sd.clone()));
        prop_assert_eq!(SessionDescription::parse_bytes(text.as_bytes()), Ok(sd));
    }

    #[test]
    fn parse_never_panics_on_strings(text in any::<String>()) {
        let _ = SessionDescription::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in vec(any::<u8>(), 0..512)) {
        let _ = SessionDescription::parse_bytes(&bytes);
    }

    #[test]
    fn parse_never_panics_on_sdp_like_input(text in sdp_like()) {
        if let Ok(sd) = SessionDescription::parse(&text) {
            // Whatever is accepted also round-trips.
            prop_assert_eq!(SessionDescription::parse(&sd.to_string()), Ok(sd));
        }
    }

    #[test]
    fn parse_never_panics_on_damaged_descriptions(
        sd in session(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = sd.to_string().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1).max(i));
        if let Ok(parsed) = SessionDescription::parse_bytes(&bytes) {
            prop_assert_eq!(SessionDescription::parse(&parsed.to_string()), Ok(parsed));
        }
    }
}
