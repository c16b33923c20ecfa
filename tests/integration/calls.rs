//! Calls through the B2BUA with real SIPp peers: a caller authenticating with 407, a
//! callee that registered as an extension, and what the PBX records (CDR, events,
//! calls in progress). Each test runs its own in-process server (`interop` helpers).

use reqwest::StatusCode;
use serde_json::Value;
use switchboard::config::{Config, SipTransport};

use crate::harness::{Client, TestServer};
use crate::interop::{
    SECRET_2001, SECRET_2002, Sipp, SippRun, events_of, eventually, free_port, installed,
    server_with,
};

/// Short SIP timers, so the transactions of a finished call are gone within seconds
/// (Timer J = 64 × T1, I and K = T4).
fn quick_timers(config: &mut Config) {
    config.sip.timers.t1_ms = 50;
    config.sip.timers.t2_ms = 400;
    config.sip.timers.t4_ms = 500;
}

/// Registers extension 2002 from a port of its own and starts `scenario` there as
/// the callee (SIPp answers where it registered from).
async fn callee(server: &TestServer, scenario: &'static str) -> SippRun {
    let sip = server.sip_addr(SipTransport::Udp);
    let port = free_port();
    Sipp::new("register_digest.xml", sip, "2002")
        .auth("2002", SECRET_2002)
        .port(port)
        .passes()
        .await;
    Sipp::new(scenario, sip, "2002").port(port).spawn()
}

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

/// Extension 2001 dialling `number` with `scenario`.
fn caller(server: &TestServer, scenario: &'static str, number: &str) -> Sipp {
    Sipp::new(scenario, server.sip_addr(SipTransport::Udp), number)
        .auth("2001", SECRET_2001)
        .key("caller", "2001")
}

/// The CDRs, newest first, once there are `n`.
async fn cdrs(admin: &Client, n: usize) -> Vec<Value> {
    eventually(&format!("{n} call records"), || async {
        let (_, body) = admin.get("/api/cdr").await;
        body["items"].as_array().is_some_and(|i| i.len() >= n)
    })
    .await;
    let (status, body) = admin.get("/api/cdr").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
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
    let (status, caller_report, _) = call.finish().await;
    assert!(status.success(), "{caller_report}");
    let (status, callee_report, _) = callee.finish().await;
    assert!(status.success(), "{callee_report}");
    // Each phone saw only the relay's ports (rtp.port_min..=port_max) in the other's SDP.
    let range = server.config.rtp.port_min..=server.config.rtp.port_max;
    for (who, report, direction) in [
        ("callee", &callee_report, "received"),
        ("caller", &caller_report, "received"),
    ] {
        let ports = sdp_ports(report, direction);
        assert!(!ports.is_empty(), "{who} got no SDP:\n{report}");
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "{who}: {ports:?}\n{report}"
        );
    }

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

    all_cleaned_up(&server, &admin).await;
}

#[tokio::test]
async fn sipp_caller_cancels_while_it_rings() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let callee = callee(&server, "call_callee_ring.xml").await;
    caller(&server, "call_caller_cancel.xml", "2002")
        .passes()
        .await;
    callee.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "cancelled", "{r}");
    assert_eq!(r["duration"], 0);
    assert!(r["answered_at"].is_null());
    all_cleaned_up(&server, &admin).await;
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
async fn sipp_hold_and_resume_are_relayed_to_the_other_leg() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let callee = callee(&server, "call_callee_hold.xml").await;
    caller(&server, "call_caller_hold.xml", "2002")
        .passes()
        .await;
    callee.passed().await;
    let r = &cdrs(&admin, 1).await[0];
    assert_eq!(r["disposition"], "answered", "{r}");
    all_cleaned_up(&server, &admin).await;
}
