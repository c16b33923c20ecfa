//! RFC 4475 torture messages, read in place from `../shared/testdata/rfc4475` (never
//! copied into the repo): every verdict right, no panic, and every accepted message
//! re-serialises and re-parses to the same message.

use std::path::PathBuf;

use bytes::Bytes;
use switchboard_sip::header::HeaderName;
use switchboard_sip::validate::{UasPolicy, validate_request};
use switchboard_sip::{ErrorKind, Message, Method, parse_datagram};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/rfc4475");
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "{} is missing (CI always has ../shared)",
        dir.display()
    );
    eprintln!("SKIPPED: {} is absent", dir.display());
    None
}

/// The policy of a registrar that also answers OPTIONS and handles calls with SDP.
fn policy() -> UasPolicy<'static> {
    UasPolicy {
        methods: &[
            Method::Register,
            Method::Options,
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
        ],
        supported: &["path", "outbound", "gruu", "replaces", "timer"],
        accept: &["application/sdp", "multipart/mixed"],
    }
}

/// Every header the stack uses reads without error.
fn headers_read(m: &Message) -> Result<(), String> {
    let e = |x: switchboard_sip::ParseError| x.message;
    m.vias().map_err(e)?;
    m.from_addr().map_err(e)?;
    m.to_addr().map_err(e)?;
    m.call_id().map_err(e)?;
    m.cseq().map_err(e)?;
    m.contacts().map_err(e)?;
    m.max_forwards().map_err(e)?;
    m.content_length().map_err(e)?;
    m.content_type().map_err(e)?;
    m.route_set(&HeaderName::Route).map_err(e)?;
    m.route_set(&HeaderName::RecordRoute).map_err(e)?;
    m.expires().map_err(e)?;
    Ok(())
}

enum Verdict {
    /// 3.1.1: parses, every header reads.
    Valid,
    /// 3.1.2 and the extra malformed message: refused by the parser or with 400/505.
    Invalid,
    /// 3.2 / 3.4: parses (the transaction layer or RFC 2543 compatibility handles it).
    Parses,
    /// 3.3: parses; the UAS answers with this code (`None` for responses, which a UAS
    /// never answers).
    Answer(Option<u16>),
}

const CASES: &[(&str, Verdict)] = &[
    ("WSINV", Verdict::Valid),
    ("INTMETH", Verdict::Valid),
    ("ESC01_V", Verdict::Valid),
    ("ESCNULL_V", Verdict::Valid),
    ("ESC02_V", Verdict::Valid),
    ("LWSDISP_V", Verdict::Valid),
    ("LONGREQ_V", Verdict::Valid),
    ("DBLREQ", Verdict::Valid),
    ("SEMIURI_V", Verdict::Valid),
    ("TRANSPORTS_V", Verdict::Valid),
    ("MPART01", Verdict::Valid),
    ("UNREASON_V", Verdict::Valid),
    ("NOREASON_V", Verdict::Valid),
    ("BADINV01_I", Verdict::Invalid),
    ("CLERR_I", Verdict::Invalid),
    ("NCL_I", Verdict::Invalid),
    ("SCALAR02_V", Verdict::Invalid),
    ("SCALARLG_V", Verdict::Invalid),
    ("QUOTBAL_I", Verdict::Invalid),
    ("LTGTRURI_I", Verdict::Invalid),
    ("LWSRURI_I", Verdict::Invalid),
    ("LWSSTART_V", Verdict::Invalid),
    ("TRWS_I", Verdict::Invalid),
    ("ESCRURI_V", Verdict::Invalid),
    ("BADDATE_V", Verdict::Invalid),
    ("REGBADCT_I", Verdict::Invalid),
    ("BADASPEC_I", Verdict::Invalid),
    ("BADDN_I", Verdict::Invalid),
    ("BADVERS_V", Verdict::Invalid),
    ("MISMATCH01_V", Verdict::Invalid),
    ("MISMATCH02_V", Verdict::Invalid),
    ("BIGCODE_V", Verdict::Invalid),
    ("BADBRANCH_V", Verdict::Parses),
    ("INSUF_I", Verdict::Answer(Some(400))),
    ("UNKSCM_V", Verdict::Answer(Some(416))),
    ("NOVELSC_V", Verdict::Answer(Some(416))),
    ("UNKSM2_V", Verdict::Parses),
    ("BEXT01_V", Verdict::Answer(Some(420))),
    ("INVUT_V", Verdict::Answer(Some(415))),
    ("REGAUT01_V", Verdict::Answer(None)),
    ("MULTI01_I", Verdict::Answer(Some(400))),
    ("MCL01_I", Verdict::Answer(Some(400))),
    ("BCAST_V", Verdict::Parses),
    ("ZEROMF_V", Verdict::Answer(Some(483))),
    ("CPARAM01_V", Verdict::Answer(None)),
    ("CPARAM02_V", Verdict::Answer(None)),
    ("REGESCRT_V", Verdict::Answer(None)),
    ("SDP01_V", Verdict::Answer(None)),
    ("INV2543_I", Verdict::Parses),
    ("TEST_I", Verdict::Invalid),
];

/// Parses, checks the verdict, and checks the round trip of what was accepted.
fn check(_name: &str, bytes: &[u8], verdict: &Verdict) -> Result<(), String> {
    let parsed = parse_datagram(Bytes::copy_from_slice(bytes));
    let answer = |m: &Message| -> Option<u16> {
        m.is_request()
            .then(|| validate_request(m, &policy()).err().map_or(200, |r| r.code))
    };
    match (verdict, &parsed) {
        (Verdict::Invalid, Err(_)) => return Ok(()),
        (Verdict::Invalid, Ok(m)) => {
            return match answer(m) {
                Some(400) | Some(505) => Ok(()),
                other => Err(format!("accepted an invalid message (answer {other:?})")),
            };
        }
        (_, Err(e)) => return Err(format!("refused a message it must parse: {e}")),
        (Verdict::Valid, Ok(m)) => headers_read(m)?,
        (Verdict::Parses, Ok(_)) => {}
        (Verdict::Answer(code), Ok(m)) => {
            let got = answer(m);
            match code {
                Some(c) if got != Some(*c) => {
                    return Err(format!("answered {got:?}, expected {c}"));
                }
                None if got.is_some_and(|g| g != 200) && got != Some(415) => {
                    return Err(format!(
                        "answered {got:?}, expected the request to be acted on"
                    ));
                }
                _ => {}
            }
        }
    }
    let m = parsed.unwrap();
    let again = parse_datagram(m.to_bytes())
        .map_err(|e| format!("its own serialisation does not re-parse: {e}"))?;
    if again != m {
        return Err(format!("re-parse differs:\n{m:#?}\n---\n{again:#?}"));
    }
    Ok(())
}

#[test]
fn rfc4475_torture_messages() {
    let Some(dir) = corpus() else { return };
    let mut failures = Vec::new();
    for (name, verdict) in CASES {
        let path = dir.join(format!("TC_{name}.dat"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(name, &bytes, verdict));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(_) => failures.push(format!("{name}: PANIC")),
        }
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    assert_eq!(
        files,
        CASES.len(),
        "every torture message has a verdict here"
    );
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn specific_readings() {
    let Some(dir) = corpus() else { return };
    let read = |n: &str| {
        parse_datagram(Bytes::from(
            std::fs::read(dir.join(format!("TC_{n}.dat"))).unwrap(),
        ))
        .unwrap()
    };
    let m = read("WSINV");
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.vias().unwrap().len(), 3);
    assert_eq!(m.to_addr().unwrap().tag(), Some("1918181833n"));
    assert_eq!(
        m.from_addr().unwrap().display.as_deref(),
        Some("J Rosenberg \\\"")
    );
    let m = read("ESC02_V");
    assert_eq!(m.method().unwrap().as_str(), "RE%47IST%45R");
    assert_eq!(
        m.count(&HeaderName::Contact),
        2,
        "C%6Fntact is another header"
    );
    let m = read("DBLREQ");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(
        m.body.is_empty(),
        "the second request in the datagram is ignored"
    );
    let m = read("ESCNULL_V");
    let switchboard_sip::header::Contacts::List(c) = m.contacts().unwrap().unwrap().into_owned()
    else {
        panic!()
    };
    assert_eq!(
        c[0].uri.as_sip().unwrap().user_decoded().as_deref(),
        Some("\0")
    );
    let m = read("BADBRANCH_V");
    assert!(!m.top_via().unwrap().has_rfc3261_branch());
    let e = parse_datagram(Bytes::from(
        std::fs::read(dir.join("TC_BADVERS_V.dat")).unwrap(),
    ))
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Version);
    let m = read("CPARAM01_V");
    let switchboard_sip::header::Contacts::List(c) = m.contacts().unwrap().unwrap().into_owned()
    else {
        panic!()
    };
    assert!(
        c[0].params.has("unknownparam"),
        "unbracketed: a contact parameter"
    );
    let m = read("REGESCRT_V");
    let switchboard_sip::header::Contacts::List(c) = m.contacts().unwrap().unwrap().into_owned()
    else {
        panic!()
    };
    assert_eq!(c[0].uri.as_sip().unwrap().headers.len(), 1);
}
