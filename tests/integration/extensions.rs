//! Extensions through the REST API: CRUD, validation, conflicts, permissions, events
//! and bulk import, on both databases.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::store::events;

use crate::harness::{TestDb, TestServer, code};

async fn event_types(server: &TestServer) -> Vec<(String, Value)> {
    events::after(server.db().pool(), 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_type, e.data))
        .collect()
}

#[tokio::test]
async fn crud_with_generated_credentials_and_events() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;

        let (status, created) = admin
            .post(
                "/api/extensions",
                json!({"number": "2001", "name": "Ada Lovelace", "email": "ada@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["number"], "2001");
        assert_eq!(created["role"], "user");
        assert_eq!(
            created["must_change_password"], true,
            "a generated password must be changed"
        );
        let creds = &created["credentials"];
        assert!(creds["password"].as_str().unwrap().len() >= 16);
        assert!(creds["sip_secret"].as_str().unwrap().len() >= 20);
        assert_eq!(creds["voicemail_pin"].as_str().unwrap().len(), 6);
        assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

        // Given credentials are not echoed back.
        let (status, given) = admin
            .post(
                "/api/extensions",
                json!({"number": "2002", "name": "Bob", "password": "bob-password-1", "sip_secret": "bob-sip-secret", "voicemail_pin": "4829"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{given}");
        assert_eq!(given["credentials"], json!({}));
        assert_eq!(given["must_change_password"], false);

        let (status, got) = admin.get("/api/extensions/2001").await;
        assert_eq!(status, StatusCode::OK);
        let text = got.to_string();
        for secret in [&creds["password"], &creds["sip_secret"]] {
            assert!(
                !text.contains(secret.as_str().unwrap()),
                "GET never returns secrets"
            );
        }
        assert_eq!(got["has_sip_secret"], true);
        assert!(got.get("credentials").is_none());

        let (status, patched) = admin
            .patch(
                "/api/extensions/2001",
                json!({"name": "Ada King", "call_forwarding": {"target": "2002", "when": "busy"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(patched["name"], "Ada King");
        assert_eq!(
            patched["call_forwarding"],
            json!({"target": "2002", "when": "busy"})
        );
        assert_eq!(
            patched["email"], "ada@example.com",
            "PATCH keeps what it does not name"
        );
        let (_, cleared) = admin
            .patch(
                "/api/extensions/2001",
                json!({"email": null, "call_forwarding": null}),
            )
            .await;
        assert_eq!(cleared["email"], Value::Null);
        assert_eq!(cleared["call_forwarding"], Value::Null);

        let (status, replaced) = admin
            .put(
                "/api/extensions/2001",
                json!({"name": "Ada", "role": "user", "allow_external": true, "voicemail_enabled": false, "active": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(
            (
                replaced["allow_external"].as_bool(),
                replaced["voicemail_enabled"].as_bool()
            ),
            (Some(true), Some(false))
        );
        let (status, body) = admin
            .put("/api/extensions/2001", json!({"name": "Ada"}))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_field")
        );
        assert_eq!(body["error"]["field"], "role");

        let (status, list) = admin.get("/api/extensions?limit=2&offset=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["total"], 4, "0, 1001, 2001, 2002: {list}");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        assert_eq!(list["items"][0]["number"], "1001");
        let (_, found) = admin.get("/api/extensions?search=ada").await;
        assert_eq!(found["total"], 1);

        let (status, rotated) = admin
            .post("/api/extensions/2001/sip-secret", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(rotated["sip_secret"], creds["sip_secret"]);
        let (status, _) = admin
            .put("/api/voicemail/2001/pin", json!({"pin": "583920"}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = admin
            .put("/api/voicemail/2001/pin", json!({"pin": "1234"}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("pin"))
        );

        let (status, _) = admin.delete("/api/extensions/2002").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = admin.get("/api/extensions/2002").await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

        let evs = event_types(&server).await;
        let kinds: Vec<&str> = evs.iter().map(|(t, _)| t.as_str()).collect();
        assert!(
            kinds.starts_with(&["extension.created", "extension.created"]),
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "extension.deleted").count(),
            1
        );
        let created_ev = evs
            .iter()
            .find(|(t, d)| t == "extension.created" && d["extension"]["number"] == "2001")
            .unwrap();
        assert_eq!(created_ev.1["actor"], "extension:1001");
        assert!(
            !created_ev
                .1
                .to_string()
                .contains(creds["sip_secret"].as_str().unwrap()),
            "events carry no secrets"
        );
        let updates: Vec<&Value> = evs
            .iter()
            .filter(|(t, _)| t == "extension.updated")
            .map(|(_, d)| &d["changes"])
            .collect();
        assert!(updates.contains(&&json!(["sip_secret"])), "{updates:?}");
        assert!(updates.contains(&&json!(["voicemail_pin"])));
        server.stop().await;
    }
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    let cases = [
        (json!({"number": "20 01", "name": "x"}), "number"),
        (json!({"number": "Webrtc", "name": "x"}), "number"),
        (json!({"number": "2001", "name": ""}), "name"),
        (
            json!({"number": "2001", "name": "x", "email": "not-an-email"}),
            "email",
        ),
        (
            json!({"number": "2001", "name": "x", "role": "root"}),
            "role",
        ),
        (
            json!({"number": "2001", "name": "x", "password": "short"}),
            "password",
        ),
        (
            json!({"number": "2001", "name": "x", "voicemail_pin": "1111"}),
            "voicemail_pin",
        ),
        (
            json!({"number": "2001", "name": "x", "sip_secret": "2001"}),
            "sip_secret",
        ),
        (
            json!({"number": "2001", "name": "x", "allow_external": "yes"}),
            "allow_external",
        ),
        (
            json!({"number": "2001", "name": "x", "favourite_colour": "blue"}),
            "favourite_colour",
        ),
        (json!({"number": "2001"}), "name"),
        (
            json!({"number": "2001", "name": "x", "call_forwarding": {"target": "2002", "when": "sometimes"}}),
            "call_forwarding.when",
        ),
        (
            json!({"number": "2001", "name": "x", "call_forwarding": {"target": "2001", "when": "busy"}}),
            "call_forwarding.target",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = admin.post("/api/extensions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {err}");
        assert_eq!(err["error"]["field"], field, "{body} → {err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, err) = admin
        .raw(
            Method::POST,
            "/api/extensions",
            "application/json",
            "{\"number\": ",
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let (status, err) = admin
        .raw(Method::POST, "/api/extensions", "text/plain", "number=1")
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (status, err) = admin.get("/api/extensions?limit=abc").await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let (status, err) = admin.get("/api/extensions?limit=5000").await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let (status, err) = admin.get("/api/no-such-thing").await;
    assert_eq!((status, code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, err) = admin.send(Method::PATCH, "/api/auth/login", None).await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    let (status, _) = admin
        .post("/api/extensions", json!({"number": "2001", "name": "Ada"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, err) = admin
        .post(
            "/api/extensions",
            json!({"number": "2001", "name": "Ada again"}),
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::CONFLICT, "duplicate_number")
    );
    assert_eq!(err["error"]["field"], "number");
    server.stop().await;
}

#[tokio::test]
async fn the_last_admin_and_the_auto_attendant_are_protected() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        for (method, path, body) in [
            (Method::DELETE, "/api/extensions/1001", None),
            (
                Method::PATCH,
                "/api/extensions/1001",
                Some(json!({"role": "user"})),
            ),
            (
                Method::PATCH,
                "/api/extensions/1001",
                Some(json!({"active": false})),
            ),
        ] {
            let (status, err) = admin.send(method, path, body).await;
            assert_eq!(
                (status, code(&err)),
                (StatusCode::CONFLICT, "last_admin"),
                "{path} {err}"
            );
        }
        let (status, err) = admin.delete("/api/extensions/0").await;
        assert_eq!(
            (status, code(&err)),
            (StatusCode::CONFLICT, "protected_extension")
        );
        let (_, zero) = admin.get("/api/extensions/0").await;
        assert_eq!(
            (
                zero["has_password"].as_bool(),
                zero["has_sip_secret"].as_bool()
            ),
            (Some(false), Some(false))
        );

        // With a second admin, the first may step down.
        let (status, _) = admin
            .post(
                "/api/extensions",
                json!({"number": "1002", "name": "Deputy", "role": "admin"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = admin
            .patch("/api/extensions/1001", json!({"role": "user"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        server.stop().await;
    }
}

#[tokio::test]
async fn users_see_and_edit_only_their_own_profile() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    let user = server.user(&admin, "2001").await;
    let (status, _) = user.get("/api/extensions/2001").await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = user.get("/api/extensions/1001").await;
    assert_eq!((status, code(&err)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, err) = user.get("/api/extensions").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::FORBIDDEN, "admin_required")
    );
    let (status, me) = user
        .patch(
            "/api/extensions/2001",
            json!({"name": "New Name", "email": "me@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    for (field, value) in [
        ("role", json!("admin")),
        ("active", json!(false)),
        ("allow_external", json!(true)),
    ] {
        let (status, err) = user
            .patch("/api/extensions/2001", json!({ field: value }))
            .await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::FORBIDDEN, Some(field)),
            "{err}"
        );
    }
    let (status, _) = user
        .put("/api/voicemail/2001/pin", json!({"pin": "583920"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = user
        .put("/api/voicemail/1001/pin", json!({"pin": "583920"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = user.delete("/api/extensions/2001").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn bulk_import_of_ten_thousand_rows() {
    for db in TestDb::all().await {
        let backend = db.backend;
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let mut csv = String::from("number,name,email,sip_secret,voicemail_pin\n");
        for i in 0..10_000 {
            let n = 100_000 + i;
            // Every tenth row sets a PIN: credentials are hashed only when given.
            let pin = if i % 10 == 0 { "583920" } else { "" };
            csv.push_str(&format!(
                "{n},Person {n},p{n}@example.com,secret-{n}-x,{pin}\n"
            ));
        }
        csv.push_str("bad number,Broken,,,\n100005,Duplicate,,,\n1001,Operator Renamed,,,\n");
        let started = std::time::Instant::now();
        let (status, report) = admin
            .raw(Method::POST, "/api/extensions/import", "text/csv", csv)
            .await;
        let elapsed = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{report}");
        eprintln!("import of 10,000 rows on {backend:?}: {elapsed:?}");
        assert_eq!(
            (
                report["created"].as_u64(),
                report["updated"].as_u64(),
                report["skipped"].as_u64()
            ),
            (Some(10_000), Some(1), Some(2))
        );
        let skipped = report["skipped_rows"].as_array().unwrap();
        assert_eq!(skipped[0]["row"], 10_001);
        assert!(skipped[0]["reason"].as_str().unwrap().contains("number"));
        assert!(
            skipped[1]["reason"]
                .as_str()
                .unwrap()
                .contains("duplicate of row 6"),
            "{skipped:?}"
        );
        // A regression to hashing every row (or one transaction per row) costs minutes.
        assert!(elapsed.as_secs() < 60, "10,000 rows took {elapsed:?}");

        let (_, ext) = admin.get("/api/extensions/100000").await;
        assert_eq!(
            (
                ext["has_sip_secret"].as_bool(),
                ext["has_voicemail_pin"].as_bool()
            ),
            (Some(true), Some(true))
        );
        let (_, ext) = admin.get("/api/extensions/100001").await;
        assert_eq!(
            (
                ext["has_voicemail_pin"].as_bool(),
                ext["has_password"].as_bool()
            ),
            (Some(false), Some(false))
        );
        let (_, op) = admin.get("/api/extensions/1001").await;
        assert_eq!(op["name"], "Operator Renamed");
        let evs = event_types(&server).await;
        let renamed = evs
            .iter()
            .find(|(t, d)| t == "extension.updated" && d["extension"]["name"] == "Operator Renamed")
            .expect("the import's update of 1001 is an event");
        assert_eq!(renamed.1["changes"], json!(["name"]));
        assert_eq!(
            evs.iter().filter(|(t, _)| t == "extension.created").count(),
            2 + 10_000
        );
        assert_eq!(op["role"], "admin", "fields a row leaves out are kept");

        let (status, err) = admin
            .raw(
                Method::POST,
                "/api/extensions/import",
                "text/csv",
                "number,colour\n1,red\n",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"]["message"].as_str().unwrap().contains("colour"));
        let (status, report) = admin
            .raw(
                Method::POST,
                "/api/extensions/import",
                "application/json",
                json!([{"number": "3001", "name": "Json Person", "role": "admin"}, {"number": "3002"}]).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(
            (report["created"].as_u64(), report["skipped"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(
            report["skipped_rows"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("name")
        );
        let (status, err) = admin
            .raw(
                Method::POST,
                "/api/extensions/import",
                "application/json",
                r#"[{"number": 5}]"#,
            )
            .await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("[0].number"))
        );
        server.stop().await;
    }
}
