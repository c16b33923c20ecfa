//! Hot-desking over the API (spec 05, seed 000): the seed's examples replayed field for
//! field, the rules (one user per device, exclusive `moved` / `reject`, concurrent
//! mode, repeated logins), who may call what, the PIN lockout, auto-logout, a restart
//! keeping everyone logged in, the events, reports and history. Every test runs on
//! SQLite and PostgreSQL.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::{Config, ExclusivePolicy};

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{events_of, eventually};

const JOHN_MAC: &str = "00:15:65:12:34:56";
const JANE_MAC: &str = "00:15:65:AB:CD:EF";

async fn start(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_tweaked(db, |config| {
        config.features.hot_desking.enabled = true;
        tweak(config);
    })
    .await
}

/// 1001 as the seed's John Doe with PIN 1234 (written as a hash straight into the
/// store: the API refuses so weak a PIN), and 1002 with PIN 2580.
async fn seed_people(server: &TestServer, admin: &Client) {
    let (status, body) = admin
        .patch(
            "/api/extensions/1001",
            json!({"name": "John Doe", "email": "john@company.com", "allow_external": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sqlx::query("UPDATE extensions SET voicemail_pin_hash = $1 WHERE number = '1001'")
        .bind(switchboard::crypto::hash_pin("1234"))
        .execute(server.db().pool())
        .await
        .unwrap();
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": "1002", "name": "Jane Roe", "voicemail_pin": "2580"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn login_body(extension: &str, device: &str, pin: &str) -> Value {
    json!({"extension": extension, "device_id": device, "ip_address": "192.168.1.100", "pin": pin})
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_seed_examples_get_the_seed_answers() {
    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let phone = server.client();

        let (status, body) = phone
            .post(
                "/api/hot-desk/login",
                json!({"extension": "1001", "device_id": JOHN_MAC, "ip_address": "192.168.1.100", "pin": "1234"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({
                "success": true,
                "message": "Extension 1001 logged in",
                "profile": {
                    "extension": "1001",
                    "name": "John Doe",
                    "email": "john@company.com",
                    "allow_external": true,
                    "voicemail_enabled": true,
                    "call_forwarding": null,
                    "do_not_disturb": false
                }
            })
        );
        let (status, body) = phone
            .post(
                "/api/hot-desk/login",
                json!({"extension": "1002", "device_id": JANE_MAC, "ip_address": "192.168.1.101", "pin": "2580"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let session_keys = set(&[
            "extension",
            "device_id",
            "ip_address",
            "logged_in_at",
            "last_activity",
            "auto_logout_enabled",
        ]);
        let (status, body) = admin.get("/api/hot-desk/sessions").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(keys(&body), set(&["count", "sessions"]));
        assert_eq!(body["count"], 2);
        let john = &body["sessions"][0];
        assert_eq!(keys(john), session_keys);
        assert_eq!(john["extension"], "1001");
        assert_eq!(john["device_id"], JOHN_MAC);
        assert_eq!(john["ip_address"], "192.168.1.100");
        assert_eq!(john["auto_logout_enabled"], true);
        assert_eq!(body["sessions"][1]["device_id"], JANE_MAC);

        // Any MAC format finds the device; it is returned as the login gave it.
        for form in [
            JOHN_MAC,
            "00-15-65-12-34-56",
            "001565123456",
            "0015.6512.3456",
        ] {
            let (status, body) = admin.get(&format!("/api/hot-desk/session/{form}")).await;
            assert_eq!(status, StatusCode::OK, "{form}: {body}");
            assert_eq!(body, *john, "{form}");
        }
        let (status, body) = admin.get("/api/hot-desk/extension/1001").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            keys(&body),
            set(&["extension", "logged_in", "device_count", "sessions"])
        );
        assert_eq!(body["extension"], "1001");
        assert_eq!(body["logged_in"], true);
        assert_eq!(body["device_count"], 1);
        assert_eq!(body["sessions"][0], *john);

        let (status, body) = admin
            .post("/api/hot-desk/logout", json!({"device_id": JOHN_MAC}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"success": true, "message": "Extension 1001 logged out from 1 device(s)"})
        );
        let (status, body) = admin
            .post("/api/hot-desk/logout", json!({"extension": "1002"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"success": true, "message": "Extension 1002 logged out from 1 device(s)"})
        );
        let (status, body) = admin
            .post("/api/hot-desk/logout", json!({"extension": "1002"}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(code(&body), "not_logged_in");
        let (_, body) = admin.get("/api/hot-desk/extension/1001").await;
        assert_eq!(body["logged_in"], false);
        assert_eq!(body["sessions"], json!([]));

        let logins = events_of(&server, "hot_desk.login").await;
        assert_eq!(logins.len(), 2, "{logins:?}");
        assert_eq!(
            keys(&logins[0]),
            set(&["extension", "device_id", "ip_address", "timestamp"])
        );
        assert_eq!(logins[0]["device_id"], JOHN_MAC);
        let logouts = events_of(&server, "hot_desk.logout").await;
        assert_eq!(logouts.len(), 2, "{logouts:?}");
        assert_eq!(
            keys(&logouts[0]),
            set(&["extension", "device_id", "timestamp", "reason"])
        );
        assert_eq!(logouts[0]["reason"], "admin");
        server.stop().await;
    }
}

#[tokio::test]
async fn refusals_name_their_cause_and_keep_success_false() {
    for db in TestDb::all().await {
        let server = start(db, |c| c.features.hot_desking.max_pin_failures = 3).await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let phone = server.client();
        let login = |body: Value| {
            let phone = phone.clone();
            async move { phone.post("/api/hot-desk/login", body).await }
        };

        let (status, wrong_pin) = login(login_body("1002", JANE_MAC, "9999")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong_pin}");
        let (status, unknown) = login(login_body("4444", JANE_MAC, "9999")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{unknown}");
        assert_eq!(
            wrong_pin["message"], unknown["message"],
            "numbers cannot be probed"
        );
        assert_eq!(wrong_pin["success"], false);
        assert_eq!(code(&wrong_pin), "invalid_credentials");
        let (status, body) = login(login_body("0", JANE_MAC, "9999")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the attendant is not loginable: {body}"
        );

        for (body, field) in [
            (
                json!({"extension": "1002", "device_id": "", "pin": "2580"}),
                "device_id",
            ),
            (
                json!({"extension": "10 02", "device_id": JANE_MAC, "pin": "2580"}),
                "extension",
            ),
            (
                json!({"extension": "1002", "device_id": JANE_MAC, "pin": "2580", "ip_address": "nowhere"}),
                "ip_address",
            ),
            (json!({"extension": "1002", "device_id": JANE_MAC}), "pin"),
        ] {
            let (status, err) = login(body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
            assert_eq!(err["error"]["field"], field, "{body}: {err}");
            assert_eq!(err["success"], false);
        }

        // Two more wrong PINs make three: the extension is locked, even for the right one.
        login(login_body("1002", JANE_MAC, "1111")).await;
        login(login_body("1002", JANE_MAC, "2222")).await;
        let response = phone
            .raw_response(
                reqwest::Method::POST,
                "/api/hot-desk/login",
                login_body("1002", JANE_MAC, "2580"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((800..=900).contains(&retry), "{retry}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "pin_locked");
        assert!(
            body["message"].as_str().unwrap().contains("locked"),
            "{body}"
        );
        // Another extension is not locked by 1002's failures.
        let (status, body) = login(login_body("1001", JOHN_MAC, "1234")).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let (status, body) = admin
            .post(
                "/api/extensions",
                json!({"number": "1003", "name": "Gone", "voicemail_pin": "3690", "active": false}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = login(login_body("1003", JOHN_MAC, "3690")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(code(&body), "extension_inactive");
        server.stop().await;
    }
    let db = TestDb::sqlite().await;
    let server = start(db, |c| c.features.hot_desking.enabled = false).await;
    let (status, body) = server
        .client()
        .post("/api/hot-desk/login", login_body("1001", JOHN_MAC, "1234"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "hot_desking_disabled");
    server.stop().await;
}

/// Reasons of the `hot_desk.logout` events, in order.
async fn logout_reasons(server: &TestServer) -> Vec<String> {
    events_of(server, "hot_desk.logout")
        .await
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect()
}

async fn devices_of(admin: &Client, extension: &str) -> Vec<String> {
    let (_, body) = admin
        .get(&format!("/api/hot-desk/extension/{extension}"))
        .await;
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_user_per_device_and_the_modes_of_several_devices() {
    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let phone = server.client();
        let ok = |body: Value| {
            let phone = phone.clone();
            async move {
                let (status, answer) = phone.post("/api/hot-desk/login", body.clone()).await;
                assert_eq!(status, StatusCode::OK, "{body}: {answer}");
            }
        };
        // Exclusive, `moved`: John moves from desk A to desk B.
        ok(login_body("1001", "desk-a", "1234")).await;
        ok(login_body("1001", "desk-b", "1234")).await;
        assert_eq!(devices_of(&admin, "1001").await, ["desk-b"]);
        // Jane at desk B replaces John there.
        ok(login_body("1002", "desk-b", "2580")).await;
        assert!(devices_of(&admin, "1001").await.is_empty());
        assert_eq!(devices_of(&admin, "1002").await, ["desk-b"]);
        // Logging in again where one is refreshes, without a second login.
        ok(login_body("1002", "desk-b", "2580")).await;
        assert_eq!(admin.get("/api/hot-desk/sessions").await.1["count"], 1);
        assert_eq!(events_of(&server, "hot_desk.login").await.len(), 3);
        assert_eq!(logout_reasons(&server).await, ["moved", "replaced"]);
        server.stop().await;
    }

    let server = start(TestDb::sqlite().await, |c| {
        c.features.hot_desking.exclusive_policy = ExclusivePolicy::Reject;
    })
    .await;
    let admin = server.admin().await;
    seed_people(&server, &admin).await;
    let phone = server.client();
    let (status, _) = phone
        .post("/api/hot-desk/login", login_body("1001", "desk-a", "1234"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = phone
        .post("/api/hot-desk/login", login_body("1001", "desk-b", "1234"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["message"], "Extension already logged in");
    assert_eq!(devices_of(&admin, "1001").await, ["desk-a"]);
    server.stop().await;

    let server = start(TestDb::sqlite().await, |c| {
        c.features.hot_desking.allow_concurrent_logins = true;
    })
    .await;
    let admin = server.admin().await;
    seed_people(&server, &admin).await;
    let phone = server.client();
    for device in ["desk-a", "desk-b", "desk-a"] {
        let (status, _) = phone
            .post("/api/hot-desk/login", login_body("1001", device, "1234"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(devices_of(&admin, "1001").await, ["desk-a", "desk-b"]);
    let (_, body) = admin.get("/api/hot-desk/extension/1001").await;
    assert_eq!(body["device_count"], 2, "no double counting: {body}");
    let (_, body) = admin
        .post("/api/hot-desk/logout", json!({"extension": "1001"}))
        .await;
    assert_eq!(
        body["message"],
        "Extension 1001 logged out from 2 device(s)"
    );
    server.stop().await;
}

#[tokio::test]
async fn who_may_log_out_list_and_touch_a_session() {
    let server = start(TestDb::sqlite().await, |_| {}).await;
    let admin = server.admin().await;
    seed_people(&server, &admin).await;
    let jane = server.user(&admin, "2001").await;
    let phone = server.client();
    // The phone logs in from its own address (the test client's, 127.0.0.1).
    let (status, _) = phone
        .post(
            "/api/hot-desk/login",
            json!({"extension": "1001", "device_id": JOHN_MAC, "ip_address": "127.0.0.1", "pin": "1234"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = phone
        .post(
            "/api/hot-desk/login",
            json!({"extension": "1002", "device_id": "desk-far", "ip_address": "10.9.9.9", "pin": "2580"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Another user sees nothing of theirs and may not end them.
    assert_eq!(jane.get("/api/hot-desk/sessions").await.1["count"], 0);
    let (status, body) = jane.get(&format!("/api/hot-desk/session/{JOHN_MAC}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = jane.get("/api/hot-desk/extension/1001").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = jane
        .post("/api/hot-desk/logout", json!({"device_id": JOHN_MAC}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["success"], false);
    // Without credentials only the device itself may: not desk-far from here…
    let (status, body) = phone
        .post("/api/hot-desk/logout", json!({"device_id": "desk-far"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = phone
        .post("/api/hot-desk/logout", json!({"extension": "1002"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // …but John's phone, at its address, may mark activity and log out.
    let before = admin
        .get(&format!("/api/hot-desk/session/{JOHN_MAC}"))
        .await
        .1;
    let (status, body) = phone
        .post(
            "/api/hot-desk/activity",
            json!({"device_id": "001565123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["session"]["last_activity"].as_str() >= before["last_activity"].as_str(),
        "{body}"
    );
    let (status, body) = phone
        .post("/api/hot-desk/logout", json!({"device_id": JOHN_MAC}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(logout_reasons(&server).await, ["user"]);
    let (status, body) = admin
        .post(
            "/api/hot-desk/logout",
            json!({"device_id": JOHN_MAC, "extension": "1001"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_logged_out_and_sessions_outlive_a_restart() {
    for db in TestDb::all().await {
        let server = start(db, |c| {
            c.features.hot_desking.auto_logout_timeout = 2;
            c.features.hot_desking.cleanup_interval = 1;
        })
        .await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let phone = server.client();
        let (status, _) = phone
            .post("/api/hot-desk/login", login_body("1001", JOHN_MAC, "1234"))
            .await;
        assert_eq!(status, StatusCode::OK);
        eventually("the idle session is logged out", || async {
            admin.get("/api/hot-desk/sessions").await.1["count"] == 0
        })
        .await;
        assert_eq!(logout_reasons(&server).await, ["auto_logout"]);
        let (_, history) = admin.get("/api/hot-desk/history?extension=1001").await;
        assert_eq!(
            history["items"][0]["logout_reason"], "auto_logout",
            "{history}"
        );
        assert!(history["items"][0]["duration_seconds"].as_i64().unwrap() >= 2);
        server.stop().await;
    }

    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let (status, _) = server
            .client()
            .post("/api/hot-desk/login", login_body("1001", JOHN_MAC, "1234"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let server = server.restart().await;
        let sessions = server
            .server
            .as_ref()
            .unwrap()
            .app
            .hot_desk
            .sessions()
            .await
            .unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(sessions[0].extension, "1001");
        assert_eq!(sessions[0].device_id, JOHN_MAC);
        server.stop().await;
    }
}

#[tokio::test]
async fn reports_and_history_add_up() {
    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        seed_people(&server, &admin).await;
        let phone = server.client();
        for (ext, device, pin) in [
            ("1001", "desk-a", "1234"),
            ("1002", "desk-b", "2580"),
            ("1001", "desk-b", "1234"),
            ("1002", "desk-a", "0000"),
        ] {
            phone
                .post("/api/hot-desk/login", login_body(ext, device, pin))
                .await;
        }
        let (status, report) = admin.get("/api/hot-desk/reports").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["active_sessions"], 1, "{report}");
        assert_eq!(report["logins"], 3, "{report}");
        assert_eq!(report["pin_failures"], 1, "{report}");
        assert_eq!(report["per_day"][0]["logins"], 3, "{report}");
        // 1001 moved off desk-a, then replaced 1002 on desk-b.
        assert_eq!(report["per_day"][0]["logouts"], 2, "{report}");
        assert_eq!(
            report["most_used_devices"][0]["device_id"], "desk-b",
            "{report}"
        );
        assert_eq!(report["most_used_devices"][0]["logins"], 2);
        let per_hour: i64 = report["peak_hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["logins"].as_i64().unwrap())
            .sum();
        assert_eq!(per_hour, 3);
        let (_, history) = admin.get("/api/hot-desk/history?device_id=desk-b").await;
        let items = history["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{history}");
        assert_eq!(items[0]["extension"], "1001", "newest first");
        assert!(items[0]["logged_out_at"].is_null());
        assert_eq!(items[1]["logout_reason"], "replaced");
        let (status, body) = admin.get("/api/hot-desk/reports?from=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["field"], "from");
        server.stop().await;
    }
}
