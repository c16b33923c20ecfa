//! Multi-factor authentication (spec 07): TOTP enrolment read back from its QR code,
//! the login's second step with TOTP and backup codes, replay protection, secrets
//! stored encrypted and hashed, forced enrolment, who may do what, threat detection
//! counting wrong codes, and the events. Authenticator codes are computed here
//! (RFC 6238 by hand), not by the server's code. YubiKey logins are in `yubico.rs`,
//! security keys in the Chromium test.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{events_of, eventually};

const USER_PASSWORD: &str = "user-pass-1234";

/// Base32 (RFC 4648, no padding) as authenticator apps read the secret.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32") as u32;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// The 6-digit code of time step `step` (RFC 4226 dynamic truncation).
fn totp_code(secret: &[u8], step: u64) -> String {
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", binary % 1_000_000)
}

fn now_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// The text of the QR code in a base64 PNG, decoded as a phone's camera app would.
fn read_qr(png_base64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png_base64)
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    grids[0].decode().unwrap().1
}

/// Logs in with the password; gives the whole answer.
async fn password_step(server: &TestServer, number: &str) -> (StatusCode, Value) {
    server
        .client()
        .post(
            "/api/auth/login",
            json!({"extension": number, "password": USER_PASSWORD}),
        )
        .await
}

async fn second_step(server: &TestServer, token: &str, code: &str) -> (StatusCode, Value) {
    server
        .client()
        .post("/api/auth/mfa", json!({"mfa_token": token, "code": code}))
        .await
}

/// Enrols TOTP for the user behind `client`; gives the secret and the backup codes
/// and the step the enrolment used.
async fn enrol_totp(client: &Client, number: &str) -> (Vec<u8>, Vec<String>, u64) {
    let (status, body) = client
        .post("/api/mfa/enroll", json!({"extension": number}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = base32_decode(body["secret"].as_str().unwrap());
    let step = now_step();
    let (status, body) = client
        .post(
            "/api/mfa/verify-enrollment",
            json!({"extension": number, "code": totp_code(&secret, step)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes, step)
}

#[tokio::test]
async fn totp_enrolment_and_login_with_replay_protection() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;

        // Enrolment: the URI, and a QR code (PNG and SVG) that reads back as it.
        let (status, body) = user
            .post("/api/mfa/enroll", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let secret_b32 = body["secret"].as_str().unwrap().to_owned();
        let uri = body["provisioning_uri"].as_str().unwrap();
        assert_eq!(
            uri,
            format!("otpauth://totp/Switchboard:2001?secret={secret_b32}&issuer=Switchboard")
        );
        assert_eq!(base32_decode(&secret_b32).len(), 20, "160-bit secret");
        assert_eq!(read_qr(body["qr_png"].as_str().unwrap()), uri);
        assert!(body["qr_svg"].as_str().unwrap().contains("<svg"));
        let (_, status_body) = user.get("/api/mfa/status/2001").await;
        assert_eq!(status_body["totp"], "pending");
        assert_eq!(status_body["enabled"], false);

        // Pending: the password alone still logs in.
        let (status, body) = password_step(&server, "2001").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["token"].is_string(), "{body}");

        let secret = base32_decode(&secret_b32);
        let step = now_step();
        let wrong = totp_code(&secret, step + 5);
        let (status, body) = user
            .post(
                "/api/mfa/verify-enrollment",
                json!({"extension": "2001", "code": wrong}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(code(&body), "invalid_second_factor");
        assert_eq!(body["error"]["field"], "code");
        let (status, body) = user
            .post(
                "/api/mfa/verify-enrollment",
                json!({"extension": "2001", "code": totp_code(&secret, step)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let backup: Vec<String> = body["backup_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(backup.len(), 10);
        for c in &backup {
            assert!(
                c.len() == 9
                    && c.as_bytes()[4] == b'-'
                    && c.chars()
                        .filter(|&ch| ch != '-')
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()),
                "{c}"
            );
        }
        let (_, status_body) = user.get("/api/mfa/status/2001").await;
        assert_eq!(status_body["enabled"], true, "{status_body}");
        assert_eq!(status_body["totp"], "active");
        assert_eq!(status_body["backup_codes_remaining"], 10);
        assert_eq!(status_body["methods"], json!(["totp", "backup_code"]));

        // Stored encrypted and hashed: neither the secret nor a code is in the database.
        let row = sqlx::query("SELECT secret FROM mfa_secrets WHERE extension = '2001'")
            .fetch_one(server.db().pool())
            .await
            .unwrap();
        let stored: String = row.get("secret");
        assert!(stored.starts_with("v1:") && !stored.contains(&secret_b32));
        let hashes: Vec<String> =
            sqlx::query("SELECT code_hash FROM mfa_backup_codes WHERE extension = '2001'")
                .fetch_all(server.db().pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("code_hash"))
                .collect();
        assert_eq!(hashes.len(), 10);
        assert!(hashes.iter().all(|h| !backup.iter().any(|c| h.contains(c))));

        // The password now asks for the second factor, and gives no session.
        let (status, body) = password_step(&server, "2001").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["mfa_required"], true, "{body}");
        assert!(
            body.get("token").is_none(),
            "no session before the second factor"
        );
        assert_eq!(body["methods"], json!(["totp", "backup_code"]));
        let token = body["mfa_token"].as_str().unwrap().to_owned();

        // The enrolment's code is spent; the next step's is good once.
        let (status, body) = second_step(&server, &token, &totp_code(&secret, step)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed: {body}");
        assert_eq!(code(&body), "invalid_second_factor");
        let next = totp_code(&secret, step + 1);
        let (status, body) = second_step(&server, &token, &next).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let session = body["token"].as_str().unwrap().to_owned();
        assert_eq!(body["extension"], "2001");
        let mut logged_in = server.client();
        logged_in.token = Some(session);
        let (status, me) = logged_in.get("/api/auth/me").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["extension"], "2001");

        // The mfa_token was single-use; the same code on a fresh login is a replay.
        let (status, body) = second_step(&server, &token, &next).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code(&body), "mfa_token_invalid");
        let (_, body) = password_step(&server, "2001").await;
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let (status, _) = second_step(&server, &token, &next).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A backup code (typed in lower case without its dash) works once.
        let typed = backup[3].to_lowercase().replace('-', "");
        let (status, body) = second_step(&server, &token, &typed).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = password_step(&server, "2001").await;
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let (status, _) = second_step(&server, &token, &backup[3]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a used backup code");
        let (_, status_body) = user.get("/api/mfa/status/2001").await;
        assert_eq!(status_body["backup_codes_remaining"], 9);

        // Five wrong answers end the login, even for a right code after them.
        for n in 0..4 {
            let (status, body) = second_step(&server, &token, &format!("00000{n}")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
        let (status, body) =
            second_step(&server, &token, &totp_code(&secret, now_step() + 1)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (_, body) = password_step(&server, "2001").await;
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let (status, body) = second_step(&server, &token, "wrong!").await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_second_factor")
        );

        // Regenerated backup codes replace the old set.
        let (status, body) = user
            .post("/api/mfa/backup-codes", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let fresh = body["backup_codes"].as_array().unwrap().clone();
        assert_eq!(fresh.len(), 10);
        let (status, body) = second_step(&server, &token, &backup[0]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "old codes are gone: {body}"
        );
        let (status, body) = second_step(&server, &token, fresh[0].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // POST /api/mfa/verify checks (and spends) a code.
        let (status, body) = user
            .post(
                "/api/mfa/verify",
                json!({"extension": "2001", "code": fresh[1]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"valid": true, "method": "backup_code"}));
        let (_, body) = user
            .post(
                "/api/mfa/verify",
                json!({"extension": "2001", "code": fresh[1]}),
            )
            .await;
        assert_eq!(body, json!({"valid": false, "method": null}));

        // The methods list, and the events.
        let (status, body) = user.get("/api/mfa/methods/2001").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["totp"]["status"], "active");
        assert!(body["totp"]["last_used_at"].is_string(), "{body}");
        // YubiKey OTP is off by default; security keys work on localhost.
        assert_eq!(body["available"], json!(["totp", "backup_code", "fido2"]));
        assert_eq!(body["backup_codes"]["remaining"], 8);
        let added = events_of(&server, "mfa.method_added").await;
        assert_eq!(
            added
                .iter()
                .map(|e| e["method"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["totp", "backup_code"]
        );
        assert_eq!(added[0]["actor"], "extension:2001");
        server.stop().await;
    }
}

#[tokio::test]
async fn disabling_needs_a_second_factor_or_an_admin() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        let other = server.user(&admin, "2002").await;
        let (secret, backup, step) = enrol_totp(&user, "2001").await;

        // Nobody enrols, reads or disables another user's MFA.
        for (path, body) in [
            ("/api/mfa/enroll", json!({"extension": "2001"})),
            (
                "/api/mfa/disable",
                json!({"extension": "2001", "code": backup[0]}),
            ),
            ("/api/mfa/backup-codes", json!({"extension": "2001"})),
            (
                "/api/mfa/verify",
                json!({"extension": "2001", "code": backup[0]}),
            ),
        ] {
            let (status, body) = other.post(path, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (status, _) = other.get("/api/mfa/status/2001").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = other.get("/api/mfa/methods/2001").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An admin reads it but does not enrol for the user.
        let (status, body) = admin.get("/api/mfa/status/2001").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["enabled"], true);
        let (status, _) = admin
            .post("/api/mfa/enroll", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // And without credentials nothing answers.
        let anonymous = server.client();
        for path in ["/api/mfa/enroll", "/api/mfa/disable", "/api/mfa/verify"] {
            let (status, _) = anonymous.post(path, json!({"extension": "2001"})).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, _) = anonymous.get("/api/mfa/status/2001").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // An active authenticator is not replaced by a new enrolment.
        let (status, body) = user
            .post("/api/mfa/enroll", json!({"extension": "2001"}))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "already_enrolled")
        );

        // The user needs a current code to turn it off.
        let (status, body) = user
            .post("/api/mfa/disable", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = user
            .post(
                "/api/mfa/disable",
                json!({"extension": "2001", "code": totp_code(&secret, step)}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a spent code");
        let (status, body) = user
            .post(
                "/api/mfa/disable",
                json!({"extension": "2001", "code": totp_code(&secret, step + 1)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = password_step(&server, "2001").await;
        assert!(body["token"].is_string(), "MFA is off: {body}");

        // A pending enrolment (nothing to prove yet) is dropped without a code.
        let (status, _) = user
            .post("/api/mfa/enroll", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = user
            .post("/api/mfa/disable", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(user.get("/api/mfa/status/2001").await.1["totp"], "none");

        // An admin turns off the MFA of a user who lost their phone, without a code.
        enrol_totp(&user, "2001").await;
        let (status, body) = admin
            .post("/api/mfa/disable", json!({"extension": "2001"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = admin.get("/api/mfa/status/2001").await;
        assert_eq!(body["enabled"], false);
        assert_eq!(body["backup_codes_remaining"], 0);
        let disabled = events_of(&server, "mfa.disabled").await;
        assert_eq!(disabled.len(), 3);
        assert_eq!(disabled[2]["actor"], "extension:1001");
        server.stop().await;
    }
}

#[tokio::test]
async fn required_mfa_makes_admins_enrol_before_anything_else() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.security.mfa.required_for = vec![switchboard::role::Role::Admin];
    })
    .await;
    let admin = server.admin().await;
    let (status, me) = admin.get("/api/auth/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["mfa_enrollment_required"], true);
    let (status, body) = admin.get("/api/extensions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "mfa_enrollment_required");

    // Users are not concerned: admins are (the token from before the rule still
    // works for MFA only, so the admin makes the user through the CLI-free path
    // once enrolled).
    let (secret, _, step) = enrol_totp(&admin, "1001").await;
    let (status, me) = admin.get("/api/auth/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["mfa_enrollment_required"], false);
    let (status, _) = admin.get("/api/extensions").await;
    assert_eq!(status, StatusCode::OK);
    let user = server.user(&admin, "2001").await;
    let (status, _) = user.get("/api/extensions/2001").await;
    assert_eq!(status, StatusCode::OK, "users need not enrol");

    // The admin's next login asks for the code.
    let (status, body) = server
        .client()
        .post(
            "/api/auth/login",
            json!({"extension": "1001", "password": crate::harness::NEW_ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["mfa_token"].as_str().expect("second factor asked");
    let (status, body) = second_step(&server, token, &totp_code(&secret, step + 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_enrollment_required"], false);
    server.stop().await;
}

#[tokio::test]
async fn wrong_second_factors_count_towards_a_block() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.security.threat_detection.failed_login_threshold = 3;
    })
    .await;
    let admin = server.admin().await;
    let user = server.user(&admin, "2001").await;
    enrol_totp(&user, "2001").await;

    // Another machine (127.0.0.2) knows the password but not the second factor.
    let from = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let login = from
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"extension": "2001", "password": USER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = login["mfa_token"].as_str().unwrap();
    for guess in ["111111", "222222", "333333"] {
        let status = from
            .post(format!("{}/api/auth/mfa", server.base))
            .json(&json!({"mfa_token": token, "code": guess}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    eventually("the guesser blocked", || async {
        let (_, body) = admin.get("/api/security/check-ip/127.0.0.2").await;
        body["blocked"] == true
    })
    .await;
    let status = from
        .post(format!("{}/api/auth/mfa", server.base))
        .json(&json!({"mfa_token": token, "code": "444444"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN, "blocked addresses get 403");
    let threats = events_of(&server, "security.threat_detected").await;
    assert!(
        threats
            .iter()
            .any(|t| t["ip"] == "127.0.0.2"
                && t["detail"].as_str().unwrap().contains("second factor")),
        "{threats:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn yubikey_enrolment_and_login_through_the_validation_protocol() {
    const API_KEY: &str = "bWZhIHRlc3Qga2V5IGZvciBodG1hYw==";
    let yubico = crate::yubico::ValidationServer::start("77", API_KEY).await;
    for db in TestDb::all().await {
        let url = yubico.url();
        let server = TestServer::start_tweaked(db, |config| {
            let y = &mut config.security.mfa.yubikey;
            y.enabled = true;
            y.client_id = Some("77".into());
            y.api_key = Some(switchboard::config::Secret::new(API_KEY));
            y.api_urls = vec![url];
        })
        .await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        let key = "vvcccbhkdjrn";

        let (status, body) = user
            .post(
                "/api/mfa/enroll-yubikey",
                json!({"extension": "2001", "otp": "not-an-otp"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("otp"))
        );
        let replayed = yubico.otp(key);
        let (status, body) = user
            .post(
                "/api/mfa/enroll-yubikey",
                json!({"extension": "2001", "otp": replayed, "name": "Desk key"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["public_id"], key);
        assert_eq!(body["name"], "Desk key");
        assert_eq!(
            body["backup_codes"].as_array().map(Vec::len),
            Some(10),
            "the first second factor comes with backup codes"
        );
        // The key belongs to one extension.
        let other = server.user(&admin, "2002").await;
        let (status, body) = other
            .post(
                "/api/mfa/enroll-yubikey",
                json!({"extension": "2002", "otp": yubico.otp(key)}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "already_enrolled")
        );

        let (_, body) = password_step(&server, "2001").await;
        assert_eq!(body["methods"], json!(["backup_code", "yubikey"]), "{body}");
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        // An OTP the server saw already, and one of a key not enrolled here.
        let (status, _) = second_step(&server, &token, &replayed).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = second_step(&server, &token, &yubico.otp("vvcccccccccc")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = second_step(&server, &token, &yubico.otp(key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The server was asked with signed requests carrying our client id.
        let asked = yubico.requests();
        assert!(
            asked
                .iter()
                .all(|r| r["id"] == "77" && r.contains_key("h") && r.contains_key("nonce"))
        );

        let (_, methods) = user.get("/api/mfa/methods/2001").await;
        assert_eq!(methods["yubikeys"][0]["public_id"], key);
        assert!(methods["yubikeys"][0]["last_used_at"].is_string());
        // Removing the only key turns MFA off.
        let (status, _) = other.delete(&format!("/api/mfa/yubikey/2001/{key}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = user.delete(&format!("/api/mfa/yubikey/2001/{key}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, body) = password_step(&server, "2001").await;
        assert!(body["token"].is_string(), "{body}");
        let removed = events_of(&server, "mfa.method_removed").await;
        assert_eq!(removed[0]["method"], "yubikey");
        assert_eq!(events_of(&server, "mfa.disabled").await.len(), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_cli_rescues_an_admin_who_lost_the_second_factor() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    enrol_totp(&admin, "1001").await;
    let login = json!({"extension": "1001", "password": crate::harness::NEW_ADMIN_PASSWORD});
    let (_, body) = server.client().post("/api/auth/login", login.clone()).await;
    assert_eq!(body["mfa_required"], true);

    // The operator on the server, with the same database and data directory (the
    // master key file).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "data_dir: {}\ndatabase:\n  url: {}\n",
            server.config.data_dir.display(),
            server.config.database.url.expose()
        ),
    )
    .unwrap();
    let (ok, out, err) =
        crate::harness::run_cli(dir.path(), &["extension", "disable-mfa", "1001"], None);
    assert!(ok, "{err}");
    assert!(out.contains("second factors removed"), "{out}");
    let (_, body) = server.client().post("/api/auth/login", login).await;
    assert!(body["token"].is_string(), "{body}");
    assert_eq!(events_of(&server, "mfa.disabled").await[0]["actor"], "cli");
    let (ok, _, err) =
        crate::harness::run_cli(dir.path(), &["extension", "disable-mfa", "9999"], None);
    assert!(!ok && err.contains("9999"), "{err}");
    server.stop().await;
}

/// A software FIDO2 security key (packed "none" attestation, ES256), enough to run
/// both WebAuthn ceremonies against the server as a browser and a key would.
mod soft_key {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_cbor_2::Value as Cbor;
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    pub struct SoftKey {
        key: SigningKey,
        id: Vec<u8>,
        pub counter: u32,
        pub origin: String,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn client_data(kind: &str, options: &Value, origin: &str) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        serde_json::to_vec(
            &json!({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false}),
        )
        .unwrap()
    }

    impl SoftKey {
        pub fn new(seed: u8, origin: &str) -> Self {
            Self {
                key: SigningKey::from_slice(&[seed; 32]).unwrap(),
                id: vec![seed; 32],
                counter: 0,
                origin: origin.to_owned(),
            }
        }

        pub fn id(&self) -> String {
            b64(&self.id)
        }

        fn auth_data(&self, rp_id: &str, flags: u8, attested: &[u8]) -> Vec<u8> {
            let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
            data.push(flags);
            data.extend_from_slice(&self.counter.to_be_bytes());
            data.extend_from_slice(attested);
            data
        }

        /// `navigator.credentials.create` with these creation options.
        pub fn create(&self, options: &Value) -> Value {
            let rp_id = options["publicKey"]["rp"]["id"].as_str().unwrap();
            let point = self.key.verifying_key().to_sec1_point(false);
            let xy = point.as_bytes();
            let cose = Cbor::Map(
                [
                    (Cbor::Integer(1), Cbor::Integer(2)),
                    (Cbor::Integer(3), Cbor::Integer(-7)),
                    (Cbor::Integer(-1), Cbor::Integer(1)),
                    (Cbor::Integer(-2), Cbor::Bytes(xy[1..33].to_vec())),
                    (Cbor::Integer(-3), Cbor::Bytes(xy[33..65].to_vec())),
                ]
                .into_iter()
                .collect(),
            );
            let mut attested = vec![0u8; 16];
            attested.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
            attested.extend_from_slice(&self.id);
            attested.extend_from_slice(&serde_cbor_2::to_vec(&cose).unwrap());
            // User present, verified, attested credential data included.
            let auth_data = self.auth_data(rp_id, 0x45, &attested);
            let attestation = Cbor::Map(
                [
                    (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
                    (Cbor::Text("attStmt".into()), Cbor::Map(Default::default())),
                    (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
                ]
                .into_iter()
                .collect(),
            );
            json!({
                "id": self.id(), "rawId": self.id(), "type": "public-key", "extensions": {},
                "response": {
                    "attestationObject": b64(&serde_cbor_2::to_vec(&attestation).unwrap()),
                    "clientDataJSON": b64(&client_data("webauthn.create", options, &self.origin)),
                },
            })
        }

        /// `navigator.credentials.get` with these request options; the signature
        /// counter goes up first.
        pub fn get(&mut self, options: &Value) -> Value {
            self.counter += 1;
            let rp_id = options["publicKey"]["rpId"].as_str().unwrap();
            let auth_data = self.auth_data(rp_id, 0x05, &[]);
            let client_data = client_data("webauthn.get", options, &self.origin);
            let mut signed = auth_data.clone();
            signed.extend_from_slice(&Sha256::digest(&client_data));
            let signature: Signature = self.key.sign(&signed);
            json!({
                "id": self.id(), "rawId": self.id(), "type": "public-key", "extensions": {},
                "response": {
                    "authenticatorData": b64(&auth_data),
                    "clientDataJSON": b64(&client_data),
                    "signature": b64(signature.to_der().as_bytes()),
                    "userHandle": null,
                },
            })
        }
    }
}

#[tokio::test]
async fn security_key_ceremonies_with_a_software_authenticator() {
    use soft_key::SoftKey;
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        // The default relying party: localhost on any port.
        let mut key = SoftKey::new(7, "http://localhost:8443");

        let (status, body) = user
            .post(
                "/api/mfa/enroll-fido2",
                json!({"extension": "2001", "name": "Blue key"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let options = body["options"].clone();
        assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
        // Chromium refuses credProtect "required" beside user verification "preferred".
        assert!(
            options["publicKey"]["extensions"]
                .get("credentialProtectionPolicy")
                .is_none(),
            "{options}"
        );
        // An attestation for another origin is refused, and the registration waits on.
        let mut phishing = SoftKey::new(7, "https://pbx.example.evil");
        let (status, body) = user
            .post(
                "/api/mfa/enroll-fido2/finish",
                json!({"extension": "2001", "credential": phishing.create(&options)}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = user
            .post(
                "/api/mfa/enroll-fido2/finish",
                json!({"extension": "2001", "credential": key.create(&options)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "Blue key");
        assert_eq!(body["backup_codes"].as_array().map(Vec::len), Some(10));
        let key_id = body["id"].as_str().unwrap().to_owned();
        // The ceremony was single-use.
        let (status, body) = user
            .post(
                "/api/mfa/enroll-fido2/finish",
                json!({"extension": "2001", "credential": key.create(&options)}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "no_pending_enrollment")
        );

        // Login: the request options name the key; its assertion gives the session.
        let (_, body) = password_step(&server, "2001").await;
        assert_eq!(body["methods"], json!(["backup_code", "fido2"]), "{body}");
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let request = body["webauthn"].clone();
        assert_eq!(request["publicKey"]["allowCredentials"][0]["id"], key.id());
        let assertion = key.get(&request);
        let mfa = |token: String, credential: Value| {
            let client = server.client();
            async move {
                client
                    .post(
                        "/api/auth/mfa",
                        json!({"mfa_token": token, "credential": credential}),
                    )
                    .await
            }
        };
        let (status, body) = mfa(token.clone(), assertion.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["token"].is_string());

        // The same assertion for a new login's challenge is refused, as is one from
        // another origin, and one whose counter did not go up (a cloned key).
        let (_, body) = password_step(&server, "2001").await;
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let request = body["webauthn"].clone();
        let (status, body) = mfa(token.clone(), assertion).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_second_factor")
        );
        phishing.counter = 10;
        let (status, _) = mfa(token.clone(), phishing.get(&request)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let mut clone = SoftKey::new(7, "http://localhost:8443");
        let (status, _) = mfa(token.clone(), clone.get(&request)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "counter 1 again: a clone");
        let (status, body) = mfa(token, key.get(&request)).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // A second, named key: both are offered; either logs in; removing one leaves
        // the other (and MFA) in place.
        let mut spare = SoftKey::new(9, "http://localhost:8443");
        let (_, body) = user
            .post(
                "/api/mfa/enroll-fido2",
                json!({"extension": "2001", "name": "Spare key"}),
            )
            .await;
        let options = body["options"].clone();
        assert_eq!(
            options["publicKey"]["excludeCredentials"][0]["id"],
            key.id(),
            "the browser is told not to register the first key twice"
        );
        let (status, body) = user
            .post(
                "/api/mfa/enroll-fido2/finish",
                json!({"extension": "2001", "credential": spare.create(&options)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.get("backup_codes").is_none(),
            "not the first second factor"
        );
        let (_, methods) = user.get("/api/mfa/methods/2001").await;
        let names: Vec<&str> = methods["fido2"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Blue key", "Spare key"]);
        assert_eq!(methods["fido2"][0]["id"], key_id.as_str());
        assert!(methods["fido2"][0]["last_used_at"].is_string());
        let (status, _) = user.delete(&format!("/api/mfa/fido2/2001/{key_id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = user.delete(&format!("/api/mfa/fido2/2001/{key_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, body) = password_step(&server, "2001").await;
        let request = body["webauthn"].clone();
        assert_eq!(
            request["publicKey"]["allowCredentials"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        let (status, _) = mfa(token.clone(), key.get(&request)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a removed key");
        let (status, body) = mfa(token, spare.get(&request)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let spare_id = user.get("/api/mfa/methods/2001").await.1["fido2"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _) = user
            .delete(&format!("/api/mfa/fido2/2001/{spare_id}"))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, body) = password_step(&server, "2001").await;
        assert!(
            body["token"].is_string(),
            "the last key removed: MFA off: {body}"
        );
        server.stop().await;
    }
}
