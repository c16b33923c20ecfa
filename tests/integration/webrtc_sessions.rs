//! WebPhone sessions over REST (spec 03, seed 001): the seed's `POST /api/webrtc/session
//! {"extension": "webrtc-admin"}` creating the virtual extension (no SIP secret, no
//! password) and the `registered_phones` row with the seed's markers; who may open, see
//! and end sessions; the configuration switches; expiry by the worker; restarts.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::SipTransport;
use switchboard::store::registered_phones::{self, PhoneFilter};
use switchboard::time::Timestamp;

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{events_of, eventually};
use crate::sip_phone::Phone;

const SEED_BODY: &str = r#"{"extension": "webrtc-admin"}"#;

fn is_session_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The seed's `mac_address`: `webrtc-` and 12 hex digits of SHA-256(session id).
fn marker(session_id: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(session_id.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("webrtc-{}", &hex[..12])
}

async fn open(client: &Client, body: Value) -> Value {
    let (status, session) = client.post("/api/webrtc/session", body).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session
}

async fn phones_of(admin: &Client, ext: &str) -> Vec<Value> {
    let (status, body) = admin
        .get(&format!("/api/registered-phones/extension/{ext}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a plain array").clone()
}

async fn webrtc_phones(admin: &Client) -> Vec<Value> {
    let (status, body) = admin.get("/api/registered-phones/ip/webrtc").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a plain array").clone()
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("{items: [...]}")
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_seed_example_creates_the_virtual_extension_and_its_phone_row() {
    for db in TestDb::all().await {
        let backend = db.backend;
        let mut server = TestServer::start(db).await;
        let admin = server.admin().await;

        // The seed's request, byte for byte.
        let (status, session) = admin
            .raw(
                reqwest::Method::POST,
                "/api/webrtc/session",
                "application/json",
                SEED_BODY,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {session}");
        let id = session["session_id"].as_str().unwrap().to_owned();
        assert!(is_session_id(&id), "{id}");
        assert_eq!(session["extension"], "webrtc-admin");
        assert_eq!(session["ice_servers"], json!([]));
        assert_eq!(session["created_by"], "extension:1001");
        assert_eq!(session["mac_address"], marker(&id));
        assert!(session["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(session["expires_at"].is_string(), "{session}");

        // The virtual extension exists now, with no credential of any kind.
        let (status, ext) = admin.get("/api/extensions/webrtc-admin").await;
        assert_eq!(status, StatusCode::OK, "{ext}");
        assert_eq!(ext["name"], "WebPhone (webrtc-admin)");
        assert_eq!(ext["role"], "user");
        assert_eq!(ext["active"], true);
        assert_eq!(ext["voicemail_enabled"], false);
        assert_eq!(ext["has_sip_secret"], false);
        assert_eq!(ext["has_password"], false);
        assert_eq!(ext["has_voicemail_pin"], false);
        let (_, list) = admin.get("/api/extensions?search=webrtc").await;
        assert_eq!(list["items"][0]["number"], "webrtc-admin", "{list}");
        let created = events_of(&server, "extension.created").await;
        let created: Vec<&Value> = created
            .iter()
            .filter(|e| e["extension"]["number"] == "webrtc-admin")
            .collect();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["actor"], "extension:1001");
        // Nothing can register or log in as it.
        let mut phone = Phone::udp(
            server.sip_addr(SipTransport::Udp),
            "webrtc-admin",
            "any-secret-at-all",
        )
        .await;
        assert_eq!(phone.register(600).await.code(), Some(403));
        let (status, _) = server
            .client()
            .post(
                "/api/auth/login",
                json!({"extension": "webrtc-admin", "password": "any-password-at-all"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Its row in the inventory, with the seed's markers.
        let phones = phones_of(&admin, "webrtc-admin").await;
        assert_eq!(phones.len(), 1, "{phones:?}");
        let row = &phones[0];
        assert_eq!(row["ip_address"], "webrtc");
        assert_eq!(row["mac_address"], marker(&id));
        assert_eq!(
            row["user_agent"],
            format!("WebRTC Browser Client (Session: {id})")
        );
        assert_eq!(row["contact_uri"], format!("<webrtc:webrtc-admin@{id}>"));
        assert_eq!(row["extension_number"], "webrtc-admin");

        let opened = events_of(&server, "webrtc.session_created").await;
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0]["session_id"], id.as_str());
        assert_eq!(opened[0]["extension"], "webrtc-admin");
        assert_eq!(opened[0]["extension_created"], true);
        assert_eq!(opened[0]["actor"], "extension:1001");

        // A second session for the same extension and one for 1001: rows of their own.
        let again = open(&admin, json!({"extension": "webrtc-admin"})).await;
        let again_id = again["session_id"].as_str().unwrap().to_owned();
        assert_ne!(again_id, id);
        let own = open(&admin, json!({"extension": "1001"})).await;
        let own_id = own["session_id"].as_str().unwrap().to_owned();
        assert_eq!(phones_of(&admin, "webrtc-admin").await.len(), 2);
        let of_1001 = phones_of(&admin, "1001").await;
        assert_eq!(of_1001.len(), 1);
        assert_eq!(of_1001[0]["contact_uri"], format!("<webrtc:1001@{own_id}>"));
        assert_eq!(webrtc_phones(&admin).await.len(), 3);
        assert_eq!(
            events_of(&server, "extension.created")
                .await
                .iter()
                .filter(|e| e["extension"]["number"] == "webrtc-admin")
                .count(),
            1,
            "created once"
        );
        let (_, list) = admin.get("/api/webrtc/sessions").await;
        assert_eq!(ids(&list), [id.clone(), again_id.clone(), own_id.clone()]);

        // Activity (what the WebPhone's signalling will report) moves last_seen_at and
        // the inventory row's last registration.
        let webrtc = &server.server.as_ref().unwrap().app.webrtc;
        let before = webrtc.session(&id).await.unwrap().unwrap();
        assert!(webrtc.touch(&id).await.unwrap());
        assert!(
            !webrtc
                .touch("0123456789abcdef0123456789abcdef")
                .await
                .unwrap()
        );
        let after = webrtc.session(&id).await.unwrap().unwrap();
        assert!(
            after.last_seen_at > before.last_seen_at,
            "{before:?} {after:?}"
        );
        let rows = registered_phones::list(
            server.db().pool(),
            &PhoneFilter {
                mac_address: Some(marker(&id)),
                ..Default::default()
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].last_registered, after.last_seen_at);
        assert!(rows[0].first_registered < rows[0].last_registered);

        // Sessions and their rows live in the database: a restart keeps them.
        server = server.restart().await;
        let admin = Client {
            base: server.base.clone(),
            ..admin
        };
        let (status, kept) = admin.get(&format!("/api/webrtc/session/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{kept}");
        assert_eq!(kept["extension"], "webrtc-admin");
        assert_eq!(webrtc_phones(&admin).await.len(), 3);

        // Ending one removes it and its row, with the event.
        let (status, _) = admin.delete(&format!("/api/webrtc/session/{id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = admin.get(&format!("/api/webrtc/session/{id}")).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, _) = admin.delete(&format!("/api/webrtc/session/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let left = phones_of(&admin, "webrtc-admin").await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["mac_address"], marker(&again_id));
        let ended = events_of(&server, "webrtc.session_ended").await;
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["session_id"], id.as_str());
        assert_eq!(ended[0]["reason"], "user", "the admin opened it");
        assert_eq!(ended[0]["actor"], "extension:1001");
        let (_, list) = admin.get("/api/webrtc/sessions").await;
        assert_eq!(ids(&list), [again_id, own_id]);
        server.stop().await;
    }
}

#[tokio::test]
async fn who_may_open_see_and_end_sessions() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let anonymous = server.client();
    for (status, body) in [
        anonymous
            .post("/api/webrtc/session", json!({"extension": "webrtc-admin"}))
            .await,
        anonymous.get("/api/webrtc/sessions").await,
        anonymous
            .get("/api/webrtc/session/0123456789abcdef0123456789abcdef")
            .await,
        anonymous
            .delete("/api/webrtc/session/0123456789abcdef0123456789abcdef")
            .await,
    ] {
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
    }
    let admin = server.admin().await;
    let alice = server.user(&admin, "2001").await;
    let bob = server.user(&admin, "2002").await;

    // A user opens sessions for their own extension (named, or by default) only.
    let a1 = open(&alice, json!({"extension": "2001"})).await;
    assert_eq!(a1["created_by"], "extension:2001");
    let a2 = open(&alice, json!({})).await;
    assert_eq!(a2["extension"], "2001");
    let (status, body) = alice
        .post("/api/webrtc/session", json!({"extension": "2002"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = alice
        .post("/api/webrtc/session", json!({"extension": "webrtc-alice"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = admin.get("/api/extensions/webrtc-alice").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused request creates nothing"
    );
    // An admin opens one for anyone.
    let b1 = open(&admin, json!({"extension": "2002"})).await;
    assert_eq!(b1["created_by"], "extension:1001");

    // Bad input names the field; a missing numbered extension is 404.
    for bad in [
        json!({"extension": "Bad Name"}),
        json!({"extension": ""}),
        json!({"extension": "-x"}),
        json!({"extension": 2001}),
        json!({"extension": "a".repeat(33)}),
        json!({"extension": "0"}),
    ] {
        let (status, body) = admin.post("/api/webrtc/session", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "extension", "{bad}: {body}");
    }
    let (status, body) = admin
        .post(
            "/api/webrtc/session",
            json!({"extension": "2001", "sdp": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin
        .post("/api/webrtc/session", json!({"extension": "2999"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = admin.get("/api/extensions/2999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "numbers are never made up");
    // A deactivated extension gets none.
    let (status, _) = admin
        .post(
            "/api/extensions",
            json!({"number": "2003", "name": "Away", "active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = admin
        .post("/api/webrtc/session", json!({"extension": "2003"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "extension_inactive")
    );

    // Lists: everyone's for the admin, one's own for a user.
    let id = |s: &Value| s["session_id"].as_str().unwrap().to_owned();
    let (status, list) = admin.get("/api/webrtc/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), [id(&a1), id(&a2), id(&b1)]);
    let (_, list) = alice.get("/api/webrtc/sessions").await;
    assert_eq!(ids(&list), [id(&a1), id(&a2)]);
    let (status, list) = bob.get("/api/webrtc/sessions").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids(&list), [id(&b1)]);

    // One session: its extension or an admin; anyone else is told it does not exist.
    let (status, got) = alice.get(&format!("/api/webrtc/session/{}", id(&a1))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["session_id"], a1["session_id"]);
    let (status, got) = bob.get(&format!("/api/webrtc/session/{}", id(&b1))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "opened by the admin, for bob: {got}"
    );
    let (status, body) = bob.get(&format!("/api/webrtc/session/{}", id(&a1))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = bob
        .delete(&format!("/api/webrtc/session/{}", id(&a1)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.get(&format!("/api/webrtc/session/{}", id(&a1))).await;
    assert_eq!(status, StatusCode::OK, "still there");

    // Ending: the owner (`user`), an admin for someone else (`admin`).
    let (status, _) = alice
        .delete(&format!("/api/webrtc/session/{}", id(&a1)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin
        .delete(&format!("/api/webrtc/session/{}", id(&a2)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = bob
        .delete(&format!("/api/webrtc/session/{}", id(&b1)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ended = events_of(&server, "webrtc.session_ended").await;
    let reasons: Vec<(&str, &str)> = ended
        .iter()
        .map(|e| (e["reason"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("user", "extension:2001"),
            ("admin", "extension:1001"),
            ("user", "extension:2002"),
        ]
    );
    assert!(webrtc_phones(&admin).await.is_empty());
    let (_, list) = admin.get("/api/webrtc/sessions").await;
    assert!(ids(&list).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn configuration_decides_virtual_extensions_ice_servers_and_whether_at_all() {
    // No virtual extensions on first use.
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.features.webrtc.auto_create_virtual = false;
        config.features.webrtc.ice_servers = vec![
            "stun:stun.example.com:3478".into(),
            "turn:turn.example.com:3478?transport=tcp".into(),
        ];
        config.features.webrtc.session_idle_timeout = 0;
    })
    .await;
    let admin = server.admin().await;
    let (status, body) = admin
        .post("/api/webrtc/session", json!({"extension": "webrtc-admin"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auto_create_virtual"),
        "{body}"
    );
    let (status, _) = admin.get("/api/extensions/webrtc-admin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // One created beforehand serves.
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": "webrtc-desk", "name": "Desk browser"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = open(&admin, json!({"extension": "webrtc-desk"})).await;
    assert_eq!(
        session["ice_servers"],
        json!([
            {"urls": "stun:stun.example.com:3478"},
            {"urls": "turn:turn.example.com:3478?transport=tcp"}
        ])
    );
    assert_eq!(session["expires_at"], Value::Null, "0: never");
    assert_eq!(
        events_of(&server, "webrtc.session_created").await[0]["extension_created"],
        false
    );

    // Deleting an extension takes its sessions with it (`extension.deleted` says so,
    // no `webrtc.session_ended`), and the sweep clears their inventory rows.
    let (status, _) = admin
        .post(
            "/api/extensions",
            json!({"number": "2001", "name": "Gone soon"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let gone = open(&admin, json!({"extension": "2001"})).await;
    assert_eq!(phones_of(&admin, "2001").await.len(), 1);
    let (status, _) = admin.delete("/api/extensions/2001").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin
        .get(&format!(
            "/api/webrtc/session/{}",
            gone["session_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let webrtc = &server.server.as_ref().unwrap().app.webrtc;
    assert_eq!(webrtc.sweep_expired().await.unwrap(), 0, "0: none expire");
    assert!(phones_of(&admin, "2001").await.is_empty());
    let (_, list) = admin.get("/api/webrtc/sessions").await;
    assert_eq!(ids(&list), [session["session_id"].as_str().unwrap()]);
    assert_eq!(
        phones_of(&admin, "webrtc-desk").await.len(),
        1,
        "others stay"
    );
    assert!(events_of(&server, "webrtc.session_ended").await.is_empty());
    server.stop().await;

    // The WebPhone turned off: no new sessions.
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.features.webrtc.enabled = false;
    })
    .await;
    let admin = server.admin().await;
    let (status, body) = admin
        .post("/api/webrtc/session", json!({"extension": "webrtc-admin"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "webrtc_disabled")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("features.webrtc.enabled"),
        "{body}"
    );
    let (status, _) = admin.get("/api/extensions/webrtc-admin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = admin.get("/api/webrtc/sessions").await;
    assert_eq!((status, list), (StatusCode::OK, json!({"items": []})));
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_ended_by_the_worker() {
    for db in TestDb::all().await {
        let server = TestServer::start_tweaked(db, |config| {
            config.features.webrtc.session_idle_timeout = 1;
        })
        .await;
        let admin = server.admin().await;
        let session = open(&admin, json!({"extension": "webrtc-admin"})).await;
        let id = session["session_id"].as_str().unwrap().to_owned();
        eventually("the idle session ended by the worker", || async {
            let (status, _) = admin.get(&format!("/api/webrtc/session/{id}")).await;
            status == StatusCode::NOT_FOUND
        })
        .await;
        let ended = events_of(&server, "webrtc.session_ended").await;
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0]["session_id"], id.as_str());
        assert_eq!(ended[0]["reason"], "expired");
        assert_eq!(ended[0]["actor"], "system");
        assert!(phones_of(&admin, "webrtc-admin").await.is_empty());
        let (status, _) = admin.get("/api/extensions/webrtc-admin").await;
        assert_eq!(status, StatusCode::OK, "the extension stays");
        server.stop().await;
    }
}
