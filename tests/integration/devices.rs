//! Devices (spec 11, seed 003), server side: enrolment tokens burned on use (one winner
//! of two racing requests), heartbeats with the device secret and field validation,
//! online/offline by the worker with events, the list, unregistering, SSH keys.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{events_of, eventually};

async fn token(admin: &Client) -> String {
    let (status, body) = admin
        .post("/api/devices/tokens", json!({"note": "lobby door phone"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token_code"].as_str().unwrap().to_owned()
}

fn as_device(server: &TestServer, secret: &str) -> Client {
    let mut c = server.client();
    c.token = Some(secret.to_owned());
    c
}

async fn register(server: &TestServer, key: &str, body: Value) -> (StatusCode, Value) {
    server
        .client()
        .post(&format!("/api/devices/{key}/register"), body)
        .await
}

#[tokio::test]
async fn tokens_enrol_one_device_each_and_heartbeats_need_its_secret() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        let (status, _) = user.post("/api/devices/tokens", json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let code_ = token(&admin).await;
        assert_eq!(code_.len(), 6);
        assert!(
            code_
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'9').contains(&b)),
            "{code_}"
        );
        let (_, list) = admin.get("/api/devices/tokens").await;
        assert_eq!(list["items"][0]["token_code"], code_.as_str());

        // Bad input names the field; unknown tokens are 401.
        let (status, body) =
            register(&server, "device-1a2b3c4d", json!({"token_code": "ABC"})).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("token_code"))
        );
        let (status, body) = register(
            &server,
            "device-1a2b3c4d",
            json!({"token_code": code_, "device_info": {"mac": "00-11-22-33-44-55"}}),
        )
        .await;
        assert_eq!(body["error"]["field"], "device_info.mac", "{body}");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) =
            register(&server, "device-1a2b3c4d", json!({"token_code": "ZZZZZZ"})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_token")
        );

        // Two devices race for one token: exactly one wins.
        let info =
            json!({"ip_lan": "192.168.1.20", "mac": "00:1A:2B:3C:4D:5E", "hostname": "door-1"});
        let (a, b) = tokio::join!(
            register(
                &server,
                "device-aaaa0001",
                json!({"token_code": code_.to_lowercase(), "device_info": info})
            ),
            register(
                &server,
                "device-bbbb0002",
                json!({"token_code": code_, "device_info": info})
            ),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{a:?} {b:?}"
        );
        let (key, won) = if a.0 == StatusCode::OK {
            ("device-aaaa0001", a.1)
        } else {
            ("device-bbbb0002", b.1)
        };
        assert_eq!(won["ok"], true);
        assert_eq!(won["message"], "Device registered");
        let secret = won["device_secret"].as_str().unwrap().to_owned();
        let (status, body) = register(&server, key, json!({"token_code": code_})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        // The token as a query parameter (the seed's flow); the key is taken already.
        let fresh = token(&admin).await;
        let (status, body) = server
            .client()
            .post(
                &format!("/api/devices/{key}/register?token_code={fresh}"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "device_registered")
        );
        let (status, body) = server
            .client()
            .post(
                &format!("/api/devices/device-cccc0003/register?token_code={fresh}"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Stored hashed.
        let stored: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM devices")
            .fetch_all(server.db().pool())
            .await
            .unwrap();
        assert!(stored.iter().all(|h| h.len() == 64 && *h != secret));

        // Heartbeats: the secret, validated fields, the connection's address by default.
        let device = as_device(&server, &secret);
        let online = format!("/api/devices/{key}/online");
        let (status, body) = server.client().post(&online, json!({})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        let (status, _) = as_device(&server, "sbd_wrong")
            .post(&online, json!({}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = device
            .post("/api/devices/device-nope/online", json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = device
            .post(&online, json!({"ip_address": "300.1.1.1"}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("ip_address"))
        );
        let (status, body) = device.post(&online, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["message"], "Heartbeat received");
        assert_eq!(body["ip_address"], "127.0.0.1");
        assert!(body["last_seen"].is_string());
        let (_, got) = device.get(&format!("/api/devices/{key}")).await;
        assert_eq!(got["status"], "online");
        assert_eq!(got["mac"], "00:1a:2b:3c:4d:5e");
        assert_eq!(got["note"], "lobby door phone", "the token's note");
        // A device sees itself only; an admin sees all, filtered.
        let (status, _) = device.get("/api/devices/device-cccc0003").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, all) = admin.get("/api/devices?status=online").await;
        assert_eq!(all["items"].as_array().unwrap().len(), 1);
        let (status, _) = admin.get("/api/devices?status=sideways").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(events_of(&server, "device.online").await.len(), 1);

        // SSH keys: checked, stored, exported.
        let ssh = format!("/api/devices/{key}/ssh-key");
        let (status, body) = device
            .put(&ssh, json!({"pubkey": "ssh-ed25519 AAAA"}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("pubkey"))
        );
        let pubkey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl door@lobby";
        let (status, body) = device
            .put(&ssh, json!({"pubkey": pubkey, "ssh_user": "pi"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = admin.get(&ssh).await;
        assert_eq!(body["pubkey"], pubkey);
        let (status, keys) = admin.get_text("/api/devices/authorized-keys").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            keys,
            format!("{} {key}\n", &pubkey[..pubkey.rfind(' ').unwrap()])
        );

        // Unregistered: the secret stops working.
        let (status, _) = admin.delete(&format!("/api/devices/{key}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = device.post(&online, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(events_of(&server, "device.deleted").await.len(), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back_with_events() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.devices.heartbeat_interval = 1;
    })
    .await;
    let admin = server.admin().await;
    let code_ = token(&admin).await;
    let (_, body) = register(&server, "device-0ff11e00", json!({"token_code": code_})).await;
    let device = as_device(&server, body["device_secret"].as_str().unwrap());
    let online = "/api/devices/device-0ff11e00/online";
    let (status, _) = device.post(online, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    // Three missed one-second heartbeats: the worker marks it offline.
    eventually("the device offline", || async {
        admin.get("/api/devices/device-0ff11e00").await.1["status"] == "offline"
    })
    .await;
    let offline = events_of(&server, "device.offline").await;
    assert_eq!(offline[0]["device_key"], "device-0ff11e00");
    device.post(online, json!({})).await;
    assert_eq!(
        admin.get("/api/devices/device-0ff11e00").await.1["status"],
        "online"
    );
    assert_eq!(events_of(&server, "device.online").await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_server_ssh_host_keys_are_served_as_text() {
    let keys = tempfile::tempdir().unwrap();
    let ed =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@pbx";
    std::fs::write(
        keys.path().join("ssh_host_ed25519_key.pub"),
        format!("{ed}\n"),
    )
    .unwrap();
    std::fs::write(keys.path().join("ssh_host_junk_key.pub"), "not a key\n").unwrap();
    let pattern = format!("{}/ssh_host_*_key.pub", keys.path().display());
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.devices.ssh_host_key_files = vec![pattern];
        config.http.public_url = Some("https://pbx.example.com".into());
    })
    .await;
    let (status, text) = server.client().get_text("/api/ssh-hostkey").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text,
        format!("pbx.example.com {}\n", &ed[..ed.rfind(' ').unwrap()])
    );
    server.stop().await;

    let none = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.devices.ssh_host_key_files = vec!["/nonexistent/*.pub".into()];
    })
    .await;
    let (status, _) = none.client().get_text("/api/ssh-hostkey").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    none.stop().await;
}

#[tokio::test]
async fn guessing_enrolment_tokens_gets_the_address_blocked() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.security.threat_detection.failed_login_threshold = 3;
    })
    .await;
    let admin = server.admin().await;
    let from = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for guess in ["AAAAAA", "BBBBBB", "CCCCCC"] {
        let status = from
            .post(format!("{}/api/devices/device-guess/register", server.base))
            .json(&json!({"token_code": guess}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    eventually("the guesser blocked", || async {
        admin.get("/api/security/check-ip/127.0.0.2").await.1["blocked"] == true
    })
    .await;
    let threats = events_of(&server, "security.threat_detected").await;
    assert!(
        threats
            .iter()
            .any(|t| t["detail"] == "device enrolment token"),
        "{threats:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn old_clients_without_a_secret_only_with_the_legacy_switch() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.devices.legacy_key_only_auth = true;
    })
    .await;
    let admin = server.admin().await;
    let code_ = token(&admin).await;
    let (status, _) = register(&server, "device-01d0c1e0", json!({"token_code": code_})).await;
    assert_eq!(status, StatusCode::OK);
    // The seed's client sends the key alone.
    let (status, body) = server
        .client()
        .post("/api/devices/device-01d0c1e0/online", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A wrong secret is still wrong.
    let (status, _) = as_device(&server, "sbd_wrong")
        .post("/api/devices/device-01d0c1e0/online", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}
