//! Hot-desking with real phones (spec 05): a SIPp desk phone registered as 2005 with its
//! MAC in its User-Agent. While 2345 is logged in there, a call to 2345 rings the desk
//! phone and a call from the desk phone is 2345's (CDR, identity); `*55` keyed in by
//! RFC 4733 DTMF logs in, `*57` tells, `*56` logs out.

use reqwest::StatusCode;
use serde_json::json;
use switchboard::config::{Config, SipTransport};

use crate::harness::{Client, TestServer};
use crate::interop::{
    SECRET_2001, Sipp, callee_waiting, cdrs, events_of, eventually, free_port, installed,
    quick_timers, server_with,
};

const DESK_MAC: &str = "00:15:65:12:34:56";
const SECRET_2005: &str = "desk-phone-secret-2005";
const SECRET_2345: &str = "hot-desk-secret-2345";

fn config(config: &mut Config) {
    quick_timers(config);
    config.features.hot_desking.enabled = true;
}

/// The server, 2001 and 2002 (interop's), 2005 (the desk phone's account) and 2345
/// (who hot-desks, PIN 7913); the desk phone registered from its own port.
async fn office() -> (TestServer, Client, u16) {
    let (server, admin) = server_with(config).await;
    server
        .extension_with_secret(&admin, "2005", SECRET_2005)
        .await;
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": "2345", "name": "Phone 2345", "sip_secret": SECRET_2345, "voicemail_pin": "7913"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let desk = free_port();
    Sipp::new(
        "register_desk_phone.xml",
        server.sip_addr(SipTransport::Udp),
        "2005",
    )
    .auth("2005", SECRET_2005)
    .key("mac", DESK_MAC)
    .port(desk)
    .no_retransmissions()
    .passes()
    .await;
    (server, admin, desk)
}

#[tokio::test]
async fn calls_follow_the_user_to_the_desk_and_carry_the_users_identity() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin, desk) = office().await;
    let sip = server.sip_addr(SipTransport::Udp);
    let (status, body) = server
        .client()
        .post(
            "/api/hot-desk/login",
            json!({"extension": "2345", "device_id": "0015.6512.3456", "pin": "7913"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the call engine knows the desk", || async {
        server
            .server
            .as_ref()
            .unwrap()
            .sip
            .core
            .hot_desks
            .devices_of("2345")
            == ["001565123456"]
    })
    .await;

    // 2001 calls 2345: the desk phone (registered as 2005) rings and answers.
    let desk_answers = Sipp::new("call_callee_answer.xml", sip, "2005")
        .port(desk)
        .timeout(30)
        .spawn();
    Sipp::new("call_caller.xml", sip, "2345")
        .auth("2001", SECRET_2001)
        .key("caller", "2001")
        .passes()
        .await;
    desk_answers.passed().await;
    let records = cdrs(&admin, 1).await;
    assert_eq!(records[0]["callee"], "2345", "{}", records[0]);
    assert_eq!(records[0]["answered_by"], "2345", "{}", records[0]);

    // The desk phone calls 2001: the call is 2345's.
    let callee = callee_waiting(&server, "call_callee_answer.xml", "2001", SECRET_2001, 30).await;
    Sipp::new("call_caller.xml", sip, "2001")
        .auth("2005", SECRET_2005)
        .key("caller", "2005")
        .port(desk)
        .passes()
        .await;
    let report = callee.passed().await;
    for header in [
        "From: \"Phone 2345\" <sip:2345@switchboard>",
        "P-Asserted-Identity: \"Phone 2345\" <sip:2345@switchboard>",
    ] {
        assert!(report.contains(header), "{header} missing:\n{report}");
    }
    let records = cdrs(&admin, 2).await;
    assert_eq!(records[0]["caller"], "2345", "{}", records[0]);
    assert_eq!(records[0]["caller_name"], "Phone 2345", "{}", records[0]);

    // Logged out, 2345 is reachable no more at the desk (its voicemail answers).
    let (status, _) = admin
        .post("/api/hot-desk/logout", json!({"extension": "2345"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the call engine forgets the desk", || async {
        server
            .server
            .as_ref()
            .unwrap()
            .sip
            .core
            .hot_desks
            .devices_of("2345")
            .is_empty()
    })
    .await;
    let (status, body) = admin.get("/api/hot-desk/session/001565123456").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn star_55_57_56_log_in_tell_and_log_out_by_dtmf() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin, desk) = office().await;
    let sip = server.sip_addr(SipTransport::Udp);
    let desk_phone = |scenario: &'static str, code: &str| {
        Sipp::new(scenario, sip, code)
            .auth("2005", SECRET_2005)
            .key("caller", "2005")
            .port(desk)
            .media()
            .timeout(40)
    };

    desk_phone("call_caller_hotdesk_login.xml", "*55")
        .passes()
        .await;
    let (status, session) = admin
        .get(&format!("/api/hot-desk/session/{DESK_MAC}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["extension"], "2345", "{session}");
    assert_eq!(session["device_id"], DESK_MAC, "{session}");
    assert_eq!(session["ip_address"], "127.0.0.1", "{session}");
    let logins = events_of(&server, "hot_desk.login").await;
    assert_eq!(logins.len(), 1, "{logins:?}");

    desk_phone("call_caller_feature_code.xml", "*57")
        .passes()
        .await;
    let (_, after_status) = admin
        .get(&format!("/api/hot-desk/session/{DESK_MAC}"))
        .await;
    assert!(
        after_status["last_activity"].as_str() >= session["last_activity"].as_str(),
        "*57 is activity: {after_status}"
    );

    desk_phone("call_caller_feature_code.xml", "*56")
        .passes()
        .await;
    let (status, body) = admin
        .get(&format!("/api/hot-desk/session/{DESK_MAC}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let logouts = events_of(&server, "hot_desk.logout").await;
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert_eq!(logouts[0]["reason"], "user");
    assert_eq!(logouts[0]["extension"], "2345");

    // A wrong PIN by phone counts towards the lockout like one by the API.
    let (status, body) = admin
        .put("/api/voicemail/2345/pin", json!({"pin": "8642"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    desk_phone("call_caller_hotdesk_login.xml", "*55")
        .passes()
        .await;
    let (_, report) = admin.get("/api/hot-desk/reports").await;
    assert_eq!(report["pin_failures"], 1, "{report}");
    let (status, _) = admin
        .get(&format!("/api/hot-desk/session/{DESK_MAC}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn star_97_at_the_desk_opens_the_users_mailbox() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin, desk) = office().await;
    // The voicemail scenario keys in 2580.
    let (status, body) = admin
        .put("/api/voicemail/2345/pin", json!({"pin": "2580"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server
        .client()
        .post(
            "/api/hot-desk/login",
            json!({"extension": "2345", "device_id": DESK_MAC, "pin": "2580"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the call engine knows the desk", || async {
        !server
            .server
            .as_ref()
            .unwrap()
            .sip
            .core
            .hot_desks
            .devices_of("2345")
            .is_empty()
    })
    .await;
    let voicemail = &server.server.as_ref().unwrap().app.voicemail;
    let message: Vec<i16> = (0..2 * 8000)
        .map(|i| ((i % 50) * 300 - 7500) as i16)
        .collect();
    let left = voicemail
        .deposit("2345", "2001", "Phone 2001", &message)
        .await
        .unwrap();

    let prompts = switchboard::apps::prompts::Prompts::english().unwrap();
    let heard: usize = [
        "vm-you-have",
        "digit-1",
        "vm-new-message",
        "vm-message",
        "digit-1",
    ]
    .iter()
    .map(|p| prompts.get(p).len())
    .sum::<usize>()
        + message.len();
    Sipp::new(
        "call_caller_voicemail_listen.xml",
        server.sip_addr(SipTransport::Udp),
        "*97",
    )
    .auth("2005", SECRET_2005)
    .key("caller", "2005")
    .port(desk)
    .media()
    .pause_ms(heard as u64 / 8 + 1_500)
    .timeout(60)
    .passes()
    .await;
    // 2345's message was heard to its end (so saved), from the desk phone of 2005.
    let read = voicemail.get("2345", left.id).await.unwrap();
    assert_eq!(read.folder, switchboard::features::voicemail::Folder::Saved);
}

#[tokio::test]
async fn in_concurrent_mode_the_desk_and_the_users_own_phone_both_ring() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|c| {
        config(c);
        c.features.hot_desking.allow_concurrent_logins = true;
    })
    .await;
    server
        .extension_with_secret(&admin, "2005", SECRET_2005)
        .await;
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": "2345", "name": "Phone 2345", "sip_secret": SECRET_2345, "voicemail_pin": "7913"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sip = server.sip_addr(SipTransport::Udp);
    let desk = free_port();
    Sipp::new("register_desk_phone.xml", sip, "2005")
        .auth("2005", SECRET_2005)
        .key("mac", DESK_MAC)
        .port(desk)
        .no_retransmissions()
        .passes()
        .await;
    // 2345's own phone rings and is cancelled when the desk answers.
    let own = callee_waiting(&server, "call_callee_ring.xml", "2345", SECRET_2345, 30).await;
    let (status, body) = server
        .client()
        .post(
            "/api/hot-desk/login",
            json!({"extension": "2345", "device_id": DESK_MAC, "pin": "7913"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the call engine knows the desk", || async {
        !server
            .server
            .as_ref()
            .unwrap()
            .sip
            .core
            .hot_desks
            .devices_of("2345")
            .is_empty()
    })
    .await;
    let desk_answers = Sipp::new("call_callee_slow.xml", sip, "2005")
        .port(desk)
        .timeout(30)
        .spawn();
    Sipp::new("call_caller.xml", sip, "2345")
        .auth("2001", SECRET_2001)
        .key("caller", "2001")
        .passes()
        .await;
    desk_answers.passed().await;
    own.passed().await;
    let records = cdrs(&admin, 1).await;
    assert_eq!(records[0]["answered_by"], "2345", "{}", records[0]);
}
