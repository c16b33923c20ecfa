//! The auto attendant on extension 0: its settings over `GET/PUT /api/auto-attendant`
//! (rules, stored, the event; on SQLite and PostgreSQL), and with real peers a SIPp
//! caller who dials 0 and presses a menu key, dials an extension number, or presses
//! nothing, and is handed on to the right SIPp phone: the CDR and `call.transferred`
//! say who answered.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::apps::prompts::Prompts;
use switchboard::config::SipTransport;
use switchboard::features::Actor;
use switchboard::features::auto_attendant::Source;

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{
    SECRET_2001, SECRET_2002, Sipp, callee_waiting, events_of, eventually, installed, quick_timers,
    server_with,
};
use crate::voicemail::wav;

const SECRET_2345: &str = "attendant-secret-2345";

/// How long the prompts `names` play, in milliseconds.
fn played_ms(names: &[&str]) -> u64 {
    let prompts = Prompts::english().unwrap();
    names.iter().map(|n| prompts.get(n).len() as u64 / 8).sum()
}

async fn set_menu(admin: &Client, settings: Value) {
    let (status, body) = admin.put("/api/auto-attendant", settings).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Extension 2001 calls 0 with `scenario`, staying `talk_ms` after its keys.
fn caller(server: &TestServer, scenario: &'static str, talk_ms: u64) -> Sipp {
    Sipp::new(scenario, server.sip_addr(SipTransport::Udp), "0")
        .auth("2001", SECRET_2001)
        .key("caller", "2001")
        .media()
        .pause_ms(talk_ms)
        .timeout(60)
}

/// The one CDR once written, and the one `call.transferred` event.
async fn record_and_transfer(server: &TestServer, admin: &Client) -> (Value, Value) {
    eventually("the CDR", || async {
        let (_, body) = admin.get("/api/cdr").await;
        body["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    let (_, body) = admin.get("/api/cdr").await;
    let transferred = events_of(server, "call.transferred").await;
    assert_eq!(transferred.len(), 1, "{transferred:?}");
    (body["items"][0].clone(), transferred[0].clone())
}

#[tokio::test]
async fn sipp_caller_presses_a_menu_key_and_reaches_its_extension() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    set_menu(
        &admin,
        json!({"menu": [
            {"digit": "1", "action": "extension", "target": "2002"},
            {"digit": "0", "action": "operator"},
        ]}),
    )
    .await;
    let callee = callee_waiting(&server, "call_callee_answer.xml", "2002", SECRET_2002, 60).await;
    // After the key: the wait for more keys, "please hold…", then the callee answers
    // at once and the two talk for a while.
    let talk = 2_000 + played_ms(&["transferring"]) + 2_500;
    let call = caller(&server, "call_caller_attendant_key.xml", talk).spawn();
    call.passed().await;
    callee.passed().await;

    let (record, transferred) = record_and_transfer(&server, &admin).await;
    assert_eq!(record["callee"], "0", "{record}");
    assert_eq!(record["answered_by"], "2002", "{record}");
    assert_eq!(record["disposition"], "answered", "{record}");
    assert_eq!(record["hangup_cause"], "caller hung up", "{record}");
    assert_eq!(transferred["transferred_from"], "0", "{transferred}");
    assert_eq!(transferred["transferred_to"], "2002", "{transferred}");
}

#[tokio::test]
async fn sipp_caller_dials_an_extension_number_at_the_greeting() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    // A number of distinct digits: SIPp replays one pcap per key, and a key sent twice
    // from the same pcap is, by its RTP timestamp, the same press.
    server
        .extension_with_secret(&admin, "2345", SECRET_2345)
        .await;
    let callee = callee_waiting(&server, "call_callee_answer.xml", "2345", SECRET_2345, 60).await;
    let talk = played_ms(&["transferring"]) + 3_000;
    let call = caller(&server, "call_caller_attendant_dial.xml", talk).spawn();
    call.passed().await;
    callee.passed().await;

    let (record, transferred) = record_and_transfer(&server, &admin).await;
    assert_eq!(record["answered_by"], "2345", "{record}");
    assert_eq!(transferred["transferred_to"], "2345", "{transferred}");
}

#[tokio::test]
async fn sipp_caller_who_presses_nothing_hears_the_menu_twice_then_reaches_the_operator() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    set_menu(
        &admin,
        json!({
            "operator": "2002",
            "timeout_seconds": 1,
            "dial_by_extension": false,
            "menu": [{"digit": "0", "action": "operator"}],
        }),
    )
    .await;
    let callee = callee_waiting(&server, "call_callee_answer.xml", "2002", SECRET_2002, 60).await;
    let menu = played_ms(&["aa-for-operator", "aa-press", "digit-0"]) + 1_000;
    let talk = played_ms(&["aa-thank-you-for-calling", "transferring-operator"]) + 2 * menu + 3_000;
    let call = caller(&server, "call_caller_attendant_silent.xml", talk).spawn();
    call.passed().await;
    callee.passed().await;

    let (record, transferred) = record_and_transfer(&server, &admin).await;
    assert_eq!(record["answered_by"], "2002", "{record}");
    assert_eq!(transferred["transferred_to"], "2002", "{transferred}");
}

/// With a recorded greeting of one second, the operator is reached after two plays of
/// it and two timeouts: far sooner than with the spoken menu, which the caller's
/// hang-up would cut short before any transfer.
#[tokio::test]
async fn a_recorded_greeting_replaces_the_spoken_menu() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    set_menu(
        &admin,
        json!({
            "operator": "2002",
            "timeout_seconds": 1,
            "dial_by_extension": false,
            "menu": [{"digit": "0", "action": "operator"}],
        }),
    )
    .await;
    let recorded: Vec<i16> = (0..8000).map(|i| ((i % 20) * 400 - 4000) as i16).collect();
    let (status, body) = admin
        .raw(
            Method::PUT,
            "/api/auto-attendant/greeting",
            "audio/wav",
            wav(&recorded, 8000, 1),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spoken = played_ms(&[
        "aa-thank-you-for-calling",
        "aa-for-operator",
        "aa-press",
        "digit-0",
        "aa-for-operator",
        "aa-press",
        "digit-0",
    ]);
    assert!(
        spoken > 2_000 + 3_000,
        "the spoken menu is the longer by {spoken} ms"
    );
    let callee = callee_waiting(&server, "call_callee_answer.xml", "2002", SECRET_2002, 60).await;
    let talk = 2 * (1_000 + 1_000) + played_ms(&["transferring-operator"]) + 3_000;
    let call = caller(&server, "call_caller_attendant_silent.xml", talk).spawn();
    call.passed().await;
    callee.passed().await;
    let (record, _) = record_and_transfer(&server, &admin).await;
    assert_eq!(record["answered_by"], "2002", "{record}");
}

#[tokio::test]
async fn a_busy_extension_chosen_at_the_menu_takes_a_message_instead() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    set_menu(
        &admin,
        json!({"menu": [{"digit": "1", "action": "extension", "target": "2002"}]}),
    )
    .await;
    let busy = callee_waiting(&server, "call_callee_busy.xml", "2002", SECRET_2002, 60).await;
    // After the key: the wait for more keys, "please hold…", the refusal, then the
    // greeting of a busy mailbox and the tone; then the caller speaks.
    let greeting = played_ms(&[
        "transferring",
        "vm-person-at-extension",
        "digit-2",
        "digit-0",
        "digit-0",
        "digit-2",
        "vm-is-busy",
        "beep",
    ]);
    let call = caller(
        &server,
        "call_caller_attendant_message.xml",
        2_000 + greeting + 800,
    )
    .spawn();
    busy.passed().await;
    call.passed().await;

    eventually("the message", || async {
        admin.get("/api/voicemail/2002").await.1["total"] == 1
    })
    .await;
    let (_, body) = admin.get("/api/voicemail/2002").await;
    let message = &body["items"][0];
    assert_eq!(message["caller"], "2001", "{message}");
    let ms = message["duration_ms"].as_i64().unwrap();
    assert!((7_000..=14_000).contains(&ms), "{message}");
    let id = message["id"].as_str().unwrap();
    let (_, _, _, wav) = admin
        .get_bytes(&format!("/api/voicemail/2002/{id}/audio"))
        .await;
    let samples = switchboard_media::wav::read(&wav).unwrap();
    let loud = samples
        .chunks(160)
        .filter(|frame| {
            let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
            (energy / frame.len() as f64).sqrt() > 300.0
        })
        .count();
    assert!(
        loud >= 100,
        "at least 2 s of the caller's speech, {loud} frames"
    );
    eventually("the CDR", || async {
        admin.get("/api/cdr").await.1["items"][0]["disposition"] == "voicemail"
    })
    .await;
    assert!(events_of(&server, "call.transferred").await.is_empty());
}

#[tokio::test]
async fn a_caller_hanging_up_while_the_transfer_rings_stops_the_ringing() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    set_menu(
        &admin,
        json!({"menu": [{"digit": "1", "action": "extension", "target": "2002"}]}),
    )
    .await;
    let ringing = callee_waiting(&server, "call_callee_ring.xml", "2002", SECRET_2002, 60).await;
    let talk = 2_000 + played_ms(&["transferring"]) + 1_500;
    let call = caller(&server, "call_caller_attendant_key.xml", talk).spawn();
    call.passed().await;
    // The phone got its CANCEL (the scenario fails otherwise).
    ringing.passed().await;
    eventually("the CDR", || async {
        admin.get("/api/cdr").await.1["items"]
            .as_array()
            .is_some_and(|i| i.len() == 1)
    })
    .await;
    let (_, body) = admin.get("/api/cdr").await;
    let record = &body["items"][0];
    assert_eq!(record["hangup_cause"], "caller hung up", "{record}");
    assert!(record["answered_by"].is_null(), "{record}");
    assert!(events_of(&server, "call.transferred").await.is_empty());
    eventually("no call in progress", || async {
        admin.get("/api/calls").await.1 == json!([])
    })
    .await;
}

#[tokio::test]
async fn settings_start_from_config_are_checked_stored_and_announced() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        server
            .extension_with_secret(&admin, "2002", "attendant-secret-2002")
            .await;

        let (status, body) = admin.get("/api/auto-attendant").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["source"], "config", "{body}");
        assert_eq!(body["operator"], "1001", "{body}");
        assert_eq!(body["enabled"], true);
        assert_eq!(body["dial_by_extension"], true);
        assert_eq!(body["menu"], json!([{"digit": "0", "action": "operator"}]));

        for (settings, field) in [
            (
                json!({"menu": [{"digit": "#", "action": "operator"}]}),
                "menu[0].digit",
            ),
            (
                json!({"menu": [{"digit": "1", "action": "extension"}]}),
                "menu[0].target",
            ),
            (
                json!({"menu": [{"digit": "1", "action": "extension", "target": "2999"}]}),
                "menu[0].target",
            ),
            (
                json!({"menu": [{"digit": "1", "action": "voicemail", "target": "1001"}, {"digit": "1", "action": "operator"}]}),
                "menu[1].digit",
            ),
            (json!({"operator": "2999"}), "operator"),
            (json!({"operator": "0"}), "operator"),
            (json!({"timeout_seconds": 0}), "timeout_seconds"),
        ] {
            let (status, body) = admin.put("/api/auto-attendant", settings.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}: {body}");
            assert_eq!(body["error"]["field"], field, "{settings}: {body}");
        }
        let (status, body) = admin
            .put(
                "/api/auto-attendant",
                json!({"menu": [{"digit": "1", "action": "dance"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(code(&body), "invalid_field", "{body}");
        assert_eq!(body["error"]["field"], "menu[0].action", "{body}");
        assert_eq!(
            admin.get("/api/auto-attendant").await.1["source"],
            "config",
            "nothing refused was stored"
        );

        let settings = json!({
            "operator": "2002",
            "timeout_seconds": 8,
            "menu": [
                {"digit": "1", "action": "extension", "target": "2002"},
                {"digit": "2", "action": "queue", "target": "8000"},
                {"digit": "3", "action": "voicemail", "target": "1001"},
                {"digit": "*", "action": "operator"},
            ],
        });
        let (status, body) = admin.put("/api/auto-attendant", settings.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, stored) = admin.get("/api/auto-attendant").await;
        assert_eq!(stored, body);
        assert_eq!(stored["source"], "api");
        assert_eq!(stored["operator"], "2002");
        assert_eq!(stored["timeout_seconds"], 8);
        assert_eq!(stored["dial_by_extension"], true, "absent: the default");
        assert_eq!(stored["menu"], settings["menu"]);
        assert!(stored["updated_at"].is_string(), "{stored}");
        assert!(
            stored["updated_by"]
                .as_str()
                .unwrap()
                .starts_with("extension:"),
            "{stored}"
        );
        assert!(stored["greeting"].is_null(), "{stored}");
        let events = events_of(&server, "auto_attendant.updated").await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["settings"]["menu"], settings["menu"]);
        assert_eq!(events[0]["actor"], stored["updated_by"]);

        // A recorded greeting: checked like a mailbox's, stored, given back.
        let tone: Vec<i16> = (0..8000)
            .map(|i| ((i % 40) * 500 - 10_000) as i16)
            .collect();
        let path = "/api/auto-attendant/greeting";
        let (status, body) = admin
            .raw(Method::PUT, path, "audio/wav", wav(&tone, 44_100, 1))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["field"], "greeting", "{body}");
        let (status, _) = admin
            .raw(Method::PUT, path, "text/plain", wav(&tone, 8000, 1))
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(admin.get(path).await.0, StatusCode::NOT_FOUND);
        let (status, body) = admin
            .raw(Method::PUT, path, "audio/wav", wav(&tone, 8000, 1))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["duration_ms"], 1000, "{body}");
        let (status, content_type, _, bytes) = admin.get_bytes(path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("audio/wav"));
        assert_eq!(switchboard_media::wav::read(&bytes).unwrap(), tone);
        assert_eq!(
            admin.get("/api/auto-attendant").await.1["greeting"]["duration_ms"],
            1000
        );

        // Settings and greeting outlive a restart.
        let server = server.restart().await;
        let service = &server.server.as_ref().unwrap().app.auto_attendant;
        let current = service.current().await.unwrap();
        assert_eq!(current.source, Source::Api);
        assert_eq!(current.settings.operator, "2002");
        assert_eq!(current.greeting.map(|g| g.duration_ms), Some(1000));
        assert_eq!(service.greeting().await.unwrap(), Some(tone.clone()));
        service.delete_greeting(&Actor::System).await.unwrap();
        assert_eq!(service.greeting().await.unwrap(), None);
        assert!(service.delete_greeting(&Actor::System).await.is_err());
        server.stop().await;
    }
}
