//! Calls through the B2BUA with real peers: SIPp callers authenticating with 407 and
//! callees registered as extensions, what the PBX records (CDR, events, calls in
//! progress), and two baresip softphones whose audio must cross the media relay both
//! ways while a stranger tries to hijack it. Each test runs its own in-process server
//! (`interop` helpers).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use switchboard::config::{Config, SipTransport};
use switchboard_sip::Message;

use crate::harness::{Client, TestServer};
use crate::interop::{
    Baresip, SECRET_2001, SECRET_2002, Sipp, SippRun, baresip_modules, bindings, callee_as, cdrs,
    events_of, eventually, free_port, installed, quick_timers, server_with,
};

/// Registers extension 2002 from a port of its own and starts `scenario` there as
/// the callee (SIPp answers where it registered from).
async fn callee(server: &TestServer, scenario: &'static str) -> SippRun {
    callee_as(server, scenario, "2002", SECRET_2002).await
}

const SECRET_2003: &str = "calls-secret-2003";

/// The `m=audio` ports of the SDP in the messages SIPp traced as `direction`
/// (`received` or `sent`).
fn sdp_ports(report: &str, direction: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut current = "";
    for line in report.lines() {
        if line.starts_with("UDP message ") {
            current = if line.contains(direction) {
                direction
            } else {
                ""
            };
        } else if let Some(rest) = line.strip_prefix("m=audio ")
            && current == direction
        {
            ports.extend(rest.split(' ').next().and_then(|p| p.parse::<u16>().ok()));
        }
    }
    ports
}

/// Each phone saw SDP from the other, and only the relay's ports
/// (rtp.port_min..=port_max) in it.
fn only_relay_ports_seen(server: &TestServer, caller_report: &str, callee_report: &str) {
    let range = server.config.rtp.port_min..=server.config.rtp.port_max;
    for (who, report) in [("callee", callee_report), ("caller", caller_report)] {
        let ports = sdp_ports(report, "received");
        assert!(!ports.is_empty(), "{who} got no SDP:\n{report}");
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "{who}: {ports:?}\n{report}"
        );
    }
}

/// Extension 2001 dialling `number` with `scenario`.
fn caller(server: &TestServer, scenario: &'static str, number: &str) -> Sipp {
    Sipp::new(scenario, server.sip_addr(SipTransport::Udp), number)
        .auth("2001", SECRET_2001)
        .key("caller", "2001")
}

/// One call from 2001 to 2002 with these scenarios on each side, both passing; its CDR.
async fn call_through(
    server: &TestServer,
    admin: &Client,
    callee_scenario: &'static str,
    caller_scenario: &'static str,
) -> Value {
    let callee = callee(server, callee_scenario).await;
    caller(server, caller_scenario, "2002").passes().await;
    callee.passed().await;
    cdrs(admin, 1).await.remove(0)
}

/// Waits until no call is in progress and the engine holds no transaction. A client
/// INVITE transaction answered with an error lingers for Timer D (32 s on UDP,
/// whatever T1 is), hence the long deadline.
async fn all_cleaned_up(server: &TestServer, admin: &Client) {
    eventually("no call in progress", || async {
        admin.get("/api/calls").await.1 == serde_json::json!([])
    })
    .await;
    let client = server.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let (_, text) = client.get_text("/metrics").await;
        let gauges: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("switchboard_sip_transactions ")
                    || l.starts_with("switchboard_calls_active ")
            })
            .collect();
        if gauges.contains(&"switchboard_sip_transactions 0")
            && gauges.contains(&"switchboard_calls_active 0")
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "calls or transactions left over: {gauges:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sipp_call_is_authenticated_bridged_recorded_and_cleaned_up() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let callee = callee(&server, "call_callee_answer.xml").await;
    let call = caller(&server, "call_caller.xml", "2002").spawn();

    // During the two seconds of conversation the call is listed as answered.
    eventually("the answered call in /api/calls", || async {
        let (_, calls) = admin.get("/api/calls").await;
        calls.as_array().is_some_and(|c| {
            c.len() == 1
                && c[0]["state"] == "answered"
                && c[0]["caller"] == "2001"
                && c[0]["callee"] == "2002"
        })
    })
    .await;
    let caller_report = call.passed().await;
    let callee_report = callee.passed().await;
    only_relay_ports_seen(&server, &caller_report, &callee_report);

    let records = cdrs(&admin, 1).await;
    let r = &records[0];
    assert_eq!(r["caller"], "2001", "{r}");
    assert_eq!(r["callee"], "2002");
    assert_eq!(r["answered_by"], "2002");
    assert_eq!(r["disposition"], "answered");
    assert_eq!(r["hangup_cause"], "caller hung up");
    assert!(r["duration"].as_i64().unwrap() >= 1, "{r}");
    assert!(r["answered_at"].is_string());
    assert_eq!(r["codec"], "PCMU", "the answer's codec");

    let id = r["id"].as_str().unwrap();
    for kind in ["call.started", "call.answered", "call.ended"] {
        let events = events_of(&server, kind).await;
        assert_eq!(events.len(), 1, "{kind}: {events:?}");
        assert_eq!(events[0]["call_id"], id, "{kind}: {events:?}");
    }
    assert_eq!(
        events_of(&server, "call.ended").await[0]["disposition"],
        "answered"
    );

    // The same record as CSV.
    let (status, csv) = admin.get_text("/api/cdr?format=csv").await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("id,caller,caller_name,callee"),
        "{csv}"
    );
    assert!(lines[1].starts_with(&format!("{id},2001,")), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");

    // Counted, and every disposition exported from the start. The metrics registry is
    // the process's, shared by the tests running beside this one: at least this call.
    let (_, metrics) = server.client().get_text("/metrics").await;
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"))
    };
    for d in [
        "answered",
        "busy",
        "no_answer",
        "voicemail",
        "cancelled",
        "failed",
    ] {
        value(&format!(r#"switchboard_calls_total{{disposition="{d}"}}"#));
    }
    assert!(value(r#"switchboard_calls_total{disposition="answered"}"#) >= 1.0);
    for t in ["call.started", "call.answered", "call.ended"] {
        assert!(
            value(&format!(
                r#"switchboard_events_emitted_total{{event_type="{t}"}}"#
            )) >= 1.0
        );
    }

    all_cleaned_up(&server, &admin).await;
}

/// The 100 Trying lines a SIPp report shows the phone received.
fn tryings(report: &str) -> usize {
    report
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 100 "))
        .count()
}

/// RFC 3261 §17.2.1: an INVITE gets 100 Trying unless a provisional response comes
/// within 200 ms. A callee ringing at once spares the caller the 100; a slow one
/// does not leave the caller without an answer.
#[tokio::test]
async fn sipp_caller_gets_100_trying_only_while_the_callee_is_slow_to_ring() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let slow = callee(&server, "call_callee_slow.xml").await;
    let (status, report) = caller(&server, "call_caller.xml", "2002").run().await;
    assert!(status.success(), "{report}");
    slow.passed().await;
    assert_eq!(tryings(&report), 1, "{report}");

    let quick = callee(&server, "call_callee_answer.xml").await;
    let (status, report) = caller(&server, "call_caller.xml", "2002").run().await;
    assert!(status.success(), "{report}");
    quick.passed().await;
    assert_eq!(tryings(&report), 0, "{report}");
    assert_eq!(cdrs(&admin, 2).await[0]["disposition"], "answered");
}

/// A late offer (RFC 3261 §13.2.1: an INVITE without SDP) is anchored too: the
/// callee's offer reaches the caller in the 200 and the caller's answer reaches the
/// callee in the ACK, both pointing at the relay.
#[tokio::test]
async fn sipp_late_offer_is_anchored_at_the_relay_both_ways() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let callee = callee(&server, "call_callee_late_offer.xml").await;
    let call = caller(&server, "call_caller_late_offer.xml", "2002").spawn();
    let caller_report = call.passed().await;
    let callee_report = callee.passed().await;
    only_relay_ports_seen(&server, &caller_report, &callee_report);
    let records = cdrs(&admin, 1).await;
    assert_eq!(records[0]["disposition"], "answered", "{}", records[0]);
    assert_eq!(records[0]["codec"], "PCMU", "the caller's answer's codec");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_caller_cancels_while_it_rings() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let r = &call_through(
        &server,
        &admin,
        "call_callee_ring.xml",
        "call_caller_cancel.xml",
    )
    .await;
    assert_eq!(r["disposition"], "cancelled", "{r}");
    assert_eq!(r["duration"], 0);
    assert!(r["answered_at"].is_null());
    all_cleaned_up(&server, &admin).await;
}

/// Turns voicemail off for `number`: a call it cannot take is then refused, not
/// answered by its mailbox.
async fn without_voicemail(admin: &Client, number: &str) {
    let (status, body) = admin
        .patch(
            &format!("/api/extensions/{number}"),
            serde_json::json!({"voicemail_enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Runs the refused-call scenario and returns the final response it received.
async fn refused(server: &TestServer, number: &str) -> String {
    let (status, report) = caller(server, "call_caller_refused.xml", number)
        .run()
        .await;
    assert!(status.success(), "{report}");
    let finals: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 4") || l.starts_with("SIP/2.0 5"))
        .filter(|l| !l.starts_with("SIP/2.0 407"))
        .collect();
    finals.last().expect("a final response").to_string()
}

#[tokio::test]
async fn sipp_busy_callee_gives_486() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    without_voicemail(&admin, "2002").await;
    let callee = callee(&server, "call_callee_busy.xml").await;
    assert_eq!(refused(&server, "2002").await, "SIP/2.0 486 Busy Here");
    callee.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "busy", "{r}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_unanswered_call_times_out_with_480() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|c| {
        quick_timers(c);
        c.calls.ring_timeout = 5;
    })
    .await;
    without_voicemail(&admin, "2002").await;
    let callee = callee(&server, "call_callee_ring.xml").await;
    let started = std::time::Instant::now();
    assert_eq!(refused(&server, "2002").await, "SIP/2.0 480 No answer");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    callee.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "no_answer", "{r}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_calls_to_unregistered_and_unknown_numbers_are_refused() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    without_voicemail(&admin, "2002").await;
    assert_eq!(refused(&server, "2002").await, "SIP/2.0 480 Not registered");
    assert_eq!(
        refused(&server, "7777").await,
        "SIP/2.0 404 No such extension"
    );
    let records = cdrs(&admin, 2).await;
    assert!(
        records.iter().all(|r| r["disposition"] == "failed"),
        "{records:?}"
    );
    // Filters: by extension and disposition.
    let (_, body) = admin.get("/api/cdr?extension=7777").await;
    assert_eq!(body["total"], 1, "{body}");
    let (_, body) = admin.get("/api/cdr?disposition=answered").await;
    assert_eq!(body["total"], 0, "{body}");
    let (status, body) = admin.get("/api/cdr?disposition=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "disposition");
    let (status, body) = admin.get("/api/cdr?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "from");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_hold_resume_info_and_update_are_relayed_to_the_other_leg() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let r = &call_through(
        &server,
        &admin,
        "call_callee_hold.xml",
        "call_caller_hold.xml",
    )
    .await;
    assert_eq!(r["disposition"], "answered", "{r}");
    all_cleaned_up(&server, &admin).await;
}

/// `n` samples of white noise at 8 kHz from `seed` (a linear congruential generator):
/// its autocorrelation is one spike, so cross-correlation finds the one true delay.
fn noise(n: usize, seed: u32) -> Vec<i16> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 16) as i16) / 4
        })
        .collect()
}

fn write_wav(path: &std::path::Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len().max(1) as f64)
        .sqrt()
}

/// The best normalized cross-correlation of a window of `recorded` (from 1.5 s in)
/// with `source` at any delay, and the recording's RMS over the part that matched.
fn best_match(recorded: &[i16], source: &[i16]) -> (f64, f64) {
    const WINDOW: usize = 2000;
    let start = 12_000.min(recorded.len().saturating_sub(WINDOW));
    let window = &recorded[start..(start + WINDOW).min(recorded.len())];
    let w_energy: f64 = window.iter().map(|s| f64::from(*s).powi(2)).sum();
    let mut best = 0.0f64;
    for lag in 0..source.len().saturating_sub(window.len()) {
        let part = &source[lag..lag + window.len()];
        let dot: f64 = window
            .iter()
            .zip(part)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let p_energy: f64 = part.iter().map(|s| f64::from(*s).powi(2)).sum();
        let c = dot / (w_energy * p_energy).sqrt().max(1.0);
        best = best.max(c);
    }
    (best, rms(window))
}

/// The decoded audio baresip recorded (`sndfile`: `dump-…-dec.wav` in `dir`).
/// How much of what a phone heard its recording holds so far (bytes of the file).
fn recorded_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().to_string_lossy().ends_with("-dec.wav"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn recording(dir: &std::path::Path) -> Vec<i16> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no recording in {}", dir.display()));
    let mut reader = hound::WavReader::open(&file).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000, "{file:?}");
    reader.samples::<i16>().map(|s| s.unwrap()).collect()
}

#[tokio::test]
async fn baresip_audio_crosses_the_relay_both_ways_and_a_stranger_cannot_hijack_it() {
    if !installed("baresip", "baresip") {
        return;
    }
    let Some(modules) = baresip_modules() else {
        return;
    };
    // baresip 1.0 (libre 1.x) knows only MD5 (see interop.rs).
    let (server, admin) = server_with(|c| {
        c.sip.digest_algorithms = vec![switchboard::config::DigestAlgorithm::Md5];
    })
    .await;
    let target = server.sip_addr(SipTransport::Udp);
    let audio = tempfile::tempdir().unwrap();
    // Each phone says 12 s of its own noise; the call lasts about 7.
    let says = [noise(12 * 8000, 1), noise(12 * 8000, 2)];
    // Where each phone's sndfile module writes what it heard.
    let heard = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config = |who: usize, rtp: &str| {
        let file = audio.path().join(format!("says-{who}.wav"));
        write_wav(&file, &says[who]);
        format!(
            "module\tg711.so\nmodule\taufile.so\nmodule\taubridge.so\nmodule\tsndfile.so\nmodule\tmenu.so\n\
             audio_source\taufile,{}\naudio_player\taubridge,nowhere\naudio_alert\taubridge,nowhere\n\
             rtp_ports\t{rtp}\naudio_path\t{}\nsnd_path\t{}\n",
            file.display(),
            audio.path().display(),
            heard[who].path().display(),
        )
    };
    let callee_config = config(1, "31000-31099");
    let mut callee = Baresip::start_with(
        &modules,
        &format!("<sip:2002@{target}>;auth_pass={SECRET_2002};answermode=auto;regint=600"),
        &callee_config,
        &[],
    );
    eventually("baresip 2002 registered", || async {
        !bindings(&server, "2002").await.is_empty()
    })
    .await;
    let dial = format!("/dial sip:2002@{target}");
    let caller_config = config(0, "31100-31199");
    let mut caller = Baresip::start_with(
        &modules,
        &format!("<sip:2001@{target}>;auth_pass={SECRET_2001};regint=0"),
        &caller_config,
        &["-e", &dial, "-t", "9"],
    );

    // While they talk, a stranger sends loud RTP to both relay ports. "Talk": each
    // phone's recording of what it hears grows, so each leg has learnt its phone (a
    // stranger racing a phone's very first packet is the relay's probation's business,
    // tested in crates/media).
    eventually("the answered call", || async {
        admin.get("/api/calls").await.1[0]["state"] == "answered"
    })
    .await;
    eventually("each phone hearing the other", || async {
        heard.iter().all(|dir| recorded_bytes(dir.path()) > 8000)
    })
    .await;
    let (_, calls) = admin.get("/api/calls").await;
    let port = |side: &str| calls[0]["media_ports"][side].as_u64().unwrap() as u16;
    let (caller_port, callee_port) = (port("caller"), port("callee"));
    let stranger = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for seq in 0..150u16 {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet.extend([0x00u8; 160]); // µ-law 0x00: full scale
        for port in [caller_port, callee_port] {
            stranger
                .send_to(&packet, ("127.0.0.1", port))
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut buf = [0u8; 2048];
    let echoed = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        stranger.recv_from(&mut buf),
    )
    .await;
    assert!(echoed.is_err(), "the relay sent the stranger media");

    // The caller quits (-t), hanging up; both write out their recordings.
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), caller.wait())
        .await
        .expect("the caller quits after -t");
    assert!(status.success(), "{}", caller.output());
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "answered", "{r}\n{}", caller.output());
    assert_eq!(r["codec"], "PCMU");
    callee.terminate().await;

    for (who, dir, said) in [
        ("callee hears the caller", heard[1].path(), &says[0]),
        ("caller hears the callee", heard[0].path(), &says[1]),
    ] {
        let heard = recording(dir);
        assert!(
            heard.len() > 3 * 8000,
            "{who}: only {} samples",
            heard.len()
        );
        let (correlation, level) = best_match(&heard, said);
        let ratio_db = 20.0 * (level / rms(said)).log10();
        assert!(correlation > 0.9, "{who}: correlation {correlation:.3}");
        assert!(ratio_db.abs() < 3.0, "{who}: level {ratio_db:.1} dB off");
    }
    let (_, metrics) = server.client().get_text("/metrics").await;
    let foreign = metrics
        .lines()
        .find(|l| l.starts_with("switchboard_media_dropped_packets_total{reason=\"foreign\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(foreign >= 300.0, "stranger packets dropped: {foreign}");
}

#[tokio::test]
async fn sipp_callee_hangs_up_and_the_caller_gets_bye() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let r = &call_through(
        &server,
        &admin,
        "call_callee_hangs_up.xml",
        "call_caller_hung_up.xml",
    )
    .await;
    assert_eq!(r["hangup_cause"], "callee hung up", "{r}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn an_admin_hangs_up_a_call_through_the_api_and_users_may_not() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let user = server.user(&admin, "3001").await;
    let callee = callee(&server, "call_callee_answer.xml").await;
    let call = caller(&server, "call_caller_hung_up.xml", "2002").spawn();
    eventually("the answered call", || async {
        admin.get("/api/calls").await.1[0]["state"] == "answered"
    })
    .await;
    let (_, calls) = admin.get("/api/calls").await;
    let id = calls[0]["id"].as_str().unwrap().to_owned();
    // Another extension's user sees none of it and may not end it.
    assert_eq!(user.get("/api/calls").await.1, serde_json::json!([]));
    let (status, _) = user.delete(&format!("/api/calls/{id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.client().delete(&format!("/api/calls/{id}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = admin.delete("/api/calls/not-a-call").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "id");

    let (status, body) = admin.delete(&format!("/api/calls/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Both phones got a BYE and answered it.
    call.passed().await;
    callee.passed().await;
    let (status, _) = admin.delete(&format!("/api/calls/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["hangup_cause"], "ended by an administrator", "{r}");
    // A user sees the records of their own calls only.
    let (_, mine) = user.get("/api/cdr").await;
    assert_eq!(mine["total"], 0, "{mine}");
    let (status, _) = user.get("/api/cdr?extension=2001").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    all_cleaned_up(&server, &admin).await;
}

/// A server where 2002 forwards to 2003 `when`.
async fn forwarding_server(when: &str, tweak: impl FnOnce(&mut Config)) -> (TestServer, Client) {
    let (server, admin) = server_with(|c| {
        quick_timers(c);
        tweak(c);
    })
    .await;
    server
        .extension_with_secret(&admin, "2003", SECRET_2003)
        .await;
    let (status, body) = admin
        .patch(
            "/api/extensions/2002",
            serde_json::json!({"call_forwarding": {"target": "2003", "when": when}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (server, admin)
}

#[tokio::test]
async fn sipp_forwarding_always_rings_the_target_instead() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = forwarding_server("always", |_| {}).await;
    let target = callee_as(&server, "call_callee_answer.xml", "2003", SECRET_2003).await;
    caller(&server, "call_caller.xml", "2002").passes().await;
    target.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["callee"], "2002", "{r}");
    assert_eq!(r["answered_by"], "2003", "{r}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_forwarding_on_busy_and_on_no_answer() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    for (when, scenario) in [
        ("busy", "call_callee_busy.xml"),
        ("no_answer", "call_callee_ring.xml"),
    ] {
        let (server, admin) = forwarding_server(when, |c| c.calls.ring_timeout = 5).await;
        let first = callee(&server, scenario).await;
        let target = callee_as(&server, "call_callee_answer.xml", "2003", SECRET_2003).await;
        caller(&server, "call_caller.xml", "2002").passes().await;
        first.passed().await;
        target.passed().await;
        let r = &cdrs(&admin, 1).await[0];
        assert_eq!(r["answered_by"], "2003", "{when}: {r}");
        assert_eq!(r["disposition"], "answered", "{when}: {r}");
        all_cleaned_up(&server, &admin).await;
    }
}

#[tokio::test]
async fn sipp_every_phone_of_the_callee_rings_and_the_first_answer_wins() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    // Two phones registered for 2002: one answers, the other is cancelled.
    let ringing = callee(&server, "call_callee_ring.xml").await;
    let answering = callee(&server, "call_callee_answer.xml").await;
    assert_eq!(crate::interop::bindings(&server, "2002").await.len(), 2);
    caller(&server, "call_caller.xml", "2002").passes().await;
    answering.passed().await;
    ringing.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "answered", "{r}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_blind_transfer_connects_the_caller_to_the_target() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    server
        .extension_with_secret(&admin, "2003", SECRET_2003)
        .await;
    let target = callee_as(&server, "call_callee_answer.xml", "2003", SECRET_2003).await;
    let sip = server.sip_addr(SipTransport::Udp);
    let port = free_port();
    Sipp::new("register_digest.xml", sip, "2002")
        .auth("2002", SECRET_2002)
        .port(port)
        .no_retransmissions()
        .passes()
        .await;
    let transferor = Sipp::new("call_callee_transfers.xml", sip, "2002")
        .port(port)
        .key("target", "2003")
        .spawn();
    // The caller talks for six seconds, to 2002 and then to 2003, and hangs up.
    caller(&server, "call_caller_long.xml", "2002")
        .passes()
        .await;
    transferor.passed().await;
    target.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["answered_by"], "2003", "{r}");
    assert_eq!(r["hangup_cause"], "caller hung up", "{r}");
    let transferred = events_of(&server, "call.transferred").await;
    assert_eq!(transferred.len(), 1, "{transferred:?}");
    assert_eq!(transferred[0]["transferred_from"], "2002");
    assert_eq!(transferred[0]["transferred_to"], "2003");
    assert_eq!(transferred[0]["call_id"], r["id"]);
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn attended_transfer_joins_the_two_other_parties() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    server
        .extension_with_secret(&admin, "2003", SECRET_2003)
        .await;
    let y = callee(&server, "call_callee_answer.xml").await;
    let z = callee_as(&server, "call_callee_reinvited.xml", "2003", SECRET_2003).await;
    // 2001 calls 2002, then consults 2003, then transfers 2002 to 2003.
    let mut x =
        crate::sip_phone::Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET_2001).await;
    let mut first = x.call("2002").await;
    let consultation = x.call("2003").await;
    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        consultation.call_id.replace('@', "%40"),
        consultation.remote_tag,
        consultation.local_tag
    );
    let via = x.via();
    let mut refer = first.request(switchboard_sip::Method::Refer, &via, &x.contact());
    refer.push(
        switchboard_sip::HeaderName::ReferTo,
        format!("<sip:2003@switchboard?Replaces={replaces}>"),
    );
    refer.push(switchboard_sip::HeaderName::ContentLength, "0");
    x.send(&refer).await;
    // 202, two NOTIFYs (100, then 200 once 2003 is moved), a BYE in each call.
    let mut seen = Vec::new();
    let mut byes = 0;
    while byes < 2 {
        let m = x.recv().await;
        match (m.method().cloned(), m.code()) {
            (None, Some(code)) => seen.push(code.to_string()),
            (Some(method), _) => {
                if method == switchboard_sip::Method::Bye {
                    byes += 1;
                }
                if method == switchboard_sip::Method::Notify {
                    seen.push(String::from_utf8_lossy(&m.body).trim().to_owned());
                }
                x.answer(&m, 200).await;
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        ["202", "SIP/2.0 100 Trying", "SIP/2.0 200 OK"],
        "what 2001 heard"
    );
    // 2002 and 2003 now talk in the first call; the consultation call is over.
    eventually("one call left", || async {
        admin.get("/api/calls").await.1.as_array().map(Vec::len) == Some(1)
    })
    .await;
    let (_, calls) = admin.get("/api/calls").await;
    let id = calls[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = admin.delete(&format!("/api/calls/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    y.passed().await;
    z.passed().await;
    let records = cdrs(&admin, 2).await;
    let consult = records.iter().find(|r| r["callee"] == "2003").unwrap();
    assert_eq!(consult["hangup_cause"], "transferred", "{records:?}");
    let main = records.iter().find(|r| r["callee"] == "2002").unwrap();
    assert_eq!(main["answered_by"], "2002", "{records:?}");
    let transferred = events_of(&server, "call.transferred").await;
    assert_eq!(transferred.len(), 1, "{transferred:?}");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn hostile_sdp_is_refused_with_488_and_leaves_no_port_behind() {
    let (server, admin) = server_with(quick_timers).await;
    let sip = server.sip_addr(SipTransport::Udp);
    // 2002 is registered (a test phone that never answers: nothing reaches it).
    let mut callee = crate::sip_phone::Phone::udp(sip, "2002", SECRET_2002).await;
    assert_eq!(callee.register(600).await.code(), Some(200));
    let mut x = crate::sip_phone::Phone::udp(sip, "2001", SECRET_2001).await;
    let audio = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    for (sdp, reason) in [
        ("v=0\r\nthis is not SDP\r\n", "Bad SDP"),
        (
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
            "Bad SDP",
        ),
        (
            &audio.replace("m=audio", "m=video") as &str,
            "No audio stream to relay",
        ),
        (
            &audio.replace("m=audio 4000", "m=audio 0") as &str,
            "No audio stream to relay",
        ),
    ] {
        let (_, answer) = x.invite("2002", sdp).await;
        assert_eq!(answer.code(), Some(488), "{sdp:?}: {answer}");
        assert!(answer.reason().unwrap().starts_with(reason), "{answer}");
    }
    assert!(
        callee
            .try_recv(std::time::Duration::from_millis(200))
            .await
            .is_none(),
        "a refused call rang the phone"
    );
    let client = server.client();
    eventually("every relay port back", || async {
        let (_, text) = client.get_text("/metrics").await;
        text.lines().any(|l| l == "switchboard_media_sessions 0")
    })
    .await;
    let records = cdrs(&admin, 2).await;
    assert!(
        records.iter().all(|r| r["disposition"] == "failed"),
        "{records:?}"
    );
}

#[tokio::test]
async fn calls_are_challenged_with_sha256_and_md5_and_either_answer_works() {
    let (server, admin) = server_with(quick_timers).await;
    let sip = server.sip_addr(SipTransport::Udp);
    let mut x = crate::sip_phone::Phone::udp(sip, "2001", SECRET_2001).await;
    // To a number nobody has: the answer after authenticating is 404 either way.
    for algorithm in ["SHA-256", "MD5"] {
        x.call_algorithm = algorithm;
        let (invite, answer) = x.invite("7777", "").await;
        assert!(
            invite
                .header(&switchboard_sip::HeaderName::ProxyAuthorization)
                .is_some_and(|h| h.contains(&format!("algorithm={algorithm}"))),
            "{invite}"
        );
        assert_eq!(answer.code(), Some(404), "{algorithm}: {answer}");
    }
    // Wrong credentials: 403, and nothing is routed.
    x.secret = "not-the-secret".into();
    let (_, answer) = x.invite("7777", "").await;
    assert_eq!(answer.code(), Some(403), "{answer}");
    assert_eq!(cdrs(&admin, 2).await.len(), 2);
}

#[tokio::test]
async fn a_first_invite_is_challenged_without_a_transaction() {
    let (server, _admin) = server_with(quick_timers).await;
    let sip = server.sip_addr(SipTransport::Udp);
    let mut x = crate::sip_phone::Phone::udp(sip, "2001", SECRET_2001).await;
    let invite = x.invite_request("7777", "", "stateless@test", "f1", 1);
    x.send(&invite).await;
    let first = x.recv().await;
    assert_eq!(first.code(), Some(407), "{first}");
    // Not acknowledged: an INVITE transaction would send its 407 again every T1 (50 ms
    // here, Timer G); a stateless answer is never repeated.
    let again = x.try_recv(Duration::from_millis(600)).await;
    assert!(again.is_none(), "the 407 came again: {again:?}");
    // The INVITE retransmitted is answered again, with the same To tag (§8.2.7).
    x.send(&invite).await;
    let second = x.recv().await;
    assert_eq!(second.code(), Some(407), "{second}");
    let tag = |m: &Message| m.to_addr().unwrap().tag().map(str::to_owned);
    assert!(tag(&first).is_some());
    assert_eq!(tag(&first), tag(&second));
    // Its ACK is absorbed: nothing answers it.
    let ack = switchboard_sip::transaction::ack_for(&invite, &second).unwrap();
    x.send(&ack).await;
    let after_ack = x.try_recv(Duration::from_millis(300)).await;
    assert!(after_ack.is_none(), "{after_ack:?}");
    // A stateful answer's ACK still reaches its transaction: the 404 after
    // authenticating is not repeated once acknowledged (`invite` ACKs it).
    let (_, answer) = x.invite("7777", "").await;
    assert_eq!(answer.code(), Some(404), "{answer}");
    let repeated = x.try_recv(Duration::from_millis(600)).await;
    assert!(repeated.is_none(), "the 404 came again: {repeated:?}");
}

#[tokio::test]
async fn sipp_the_200_is_retransmitted_until_the_caller_acks() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let callee = callee(&server, "call_callee_answer.xml").await;
    let (status, report) = caller(&server, "call_caller_late_ack.xml", "2002")
        .run()
        .await;
    assert!(status.success(), "{report}");
    callee.passed().await;
    // T1 is 50 ms here: within the 1.2 s before the ACK, the 200 came several times.
    let oks = report
        .split("UDP message received")
        .filter(|m| m.contains("SIP/2.0 200 OK") && m.contains("CSeq: 2 INVITE"))
        .count();
    assert!(oks >= 3, "the 200 came {oks} times:\n{report}");
    assert_eq!(cdrs(&admin, 1).await[0]["disposition"], "answered");
    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_a_call_without_media_is_ended_after_the_media_timeout() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    // SIPp sends no RTP: after calls.media_timeout (its minimum, 5 s) the PBX hangs up.
    let (server, admin) = server_with(|c| {
        quick_timers(c);
        c.calls.media_timeout = 5;
    })
    .await;
    let started = std::time::Instant::now();
    let r = &call_through(
        &server,
        &admin,
        "call_callee_answer.xml",
        "call_caller_hung_up.xml",
    )
    .await;
    assert_eq!(r["hangup_cause"], "media timeout", "{r}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    all_cleaned_up(&server, &admin).await;
}
