//! Login, forced password change, logout, cookies with CSRF, API keys, and sessions
//! that survive a restart.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{NEW_ADMIN_PASSWORD, TestDb, TestServer, code};

#[tokio::test]
async fn first_login_forces_a_password_change() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let banner_password = server.operator.as_ref().unwrap().password.clone();
    assert!(banner_password.starts_with("ChangeMe-Operator-"));
    let mut c = server.client();

    let (status, err) = c
        .post(
            "/api/auth/login",
            json!({"extension": "1001", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (status, err2) = c
        .post(
            "/api/auth/login",
            json!({"extension": "9999", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        err, err2,
        "unknown extensions and wrong passwords look the same"
    );
    let (status, _) = c
        .post(
            "/api/auth/login",
            json!({"extension": "0", "password": "anything-at-all"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the auto attendant cannot log in"
    );

    let (status, session) = c
        .post(
            "/api/auth/login",
            json!({"extension": "1001", "password": banner_password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["role"], "admin");
    assert_eq!(session["name"], "Operator");
    assert_eq!(session["must_change_password"], true);
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));
    let first_token = session["token"].as_str().unwrap().to_owned();
    c.token = Some(first_token.clone());

    let (status, err) = c.get("/api/extensions").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::FORBIDDEN, "password_change_required")
    );
    let (status, err) = c.get("/api/system/status").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::FORBIDDEN, "password_change_required")
    );
    let (status, me) = c.get("/api/auth/me").await;
    assert_eq!(
        (status, me["must_change_password"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    for (body, field) in [
        (
            json!({"current_password": "nope", "new_password": NEW_ADMIN_PASSWORD}),
            "current_password",
        ),
        (
            json!({"current_password": banner_password, "new_password": "short"}),
            "new_password",
        ),
        (
            json!({"current_password": banner_password, "new_password": "1001"}),
            "new_password",
        ),
        (
            json!({"current_password": banner_password, "new_password": banner_password}),
            "new_password",
        ),
    ] {
        let (status, err) = c.post("/api/auth/password", body).await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{err}"
        );
    }
    let (status, new_session) = c
        .post(
            "/api/auth/password",
            json!({"current_password": banner_password, "new_password": NEW_ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{new_session}");
    assert_eq!(new_session["must_change_password"], false);
    let (status, _) = c.get("/api/extensions").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a password change revokes the old token"
    );
    c.token = Some(new_session["token"].as_str().unwrap().to_owned());
    let (status, _) = c.get("/api/extensions").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = c.post("/api/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = c.get("/api/extensions").await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (status, _) = c
        .post(
            "/api/auth/login",
            json!({"extension": "1001", "password": banner_password}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the banner password is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_writes() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    drop(admin);
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let resp = http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"extension": "1001", "password": NEW_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("switchboard_session="))
        .expect("session cookie");
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    assert!(session_cookie.contains("Path=/"));
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("switchboard_csrf="))
        .expect("csrf cookie");
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "the panel reads the CSRF cookie"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let resp = http
        .get(format!("{}/api/extensions", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "reads work with the cookie alone"
    );
    let create = json!({"number": "2001", "name": "Ada"});
    let resp = http
        .post(format!("{}/api/extensions", server.base))
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code(&err), "csrf_failed");
    let resp = http
        .post(format!("{}/api/extensions", server.base))
        .header("X-CSRF-Token", "forged")
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(format!("{}/api/extensions", server.base))
        .header("X-CSRF-Token", &csrf)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let resp = http
        .post(format!("{}/api/auth/logout", server.base))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .get(format!("{}/api/extensions", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let token = admin.token.clone();
        let server = server.restart().await;
        assert!(
            server.operator.is_none(),
            "a second start creates no credentials"
        );
        let mut c = server.client();
        c.token = token;
        let (status, me) = c.get("/api/auth/me").await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["extension"], "1001");
        server.stop().await;
    }
}

#[tokio::test]
async fn deactivation_and_password_resets_end_sessions() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    let user = server.user(&admin, "2001").await;
    let (status, _) = admin
        .patch("/api/extensions/2001", json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = user.get("/api/auth/me").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deactivated extension's session stops working"
    );
    let (status, err) = user
        .post(
            "/api/auth/login",
            json!({"extension": "2001", "password": "user-pass-1234"}),
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::FORBIDDEN, "extension_inactive")
    );
    admin
        .patch("/api/extensions/2001", json!({"active": true}))
        .await;

    let mut user = server.client();
    let (_, s) = user
        .post(
            "/api/auth/login",
            json!({"extension": "2001", "password": "user-pass-1234"}),
        )
        .await;
    user.token = Some(s["token"].as_str().unwrap().to_owned());
    let (status, reset) = admin.post("/api/extensions/2001/password", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let temporary = reset["password"].as_str().unwrap().to_owned();
    let (status, _) = user.get("/api/auth/me").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a reset revokes the user's sessions"
    );
    let (status, s) = user
        .post(
            "/api/auth/login",
            json!({"extension": "2001", "password": temporary}),
        )
        .await;
    assert_eq!(
        (status, s["must_change_password"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    server.stop().await;
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    let (status, created) = admin.post("/api/api-keys", json!({"name": "crm"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sbk_"));
    assert_eq!(created["role"], "admin");

    let mut integration = server.client();
    integration.token = Some(key.clone());
    let (status, _) = integration.get("/api/extensions").await;
    assert_eq!(status, StatusCode::OK);
    let (status, made) = integration
        .post(
            "/api/extensions",
            json!({"number": "2001", "name": "From CRM"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (_, me) = integration.get("/api/auth/me").await;
    assert_eq!(me["via"], "api_key");

    let (status, list) = admin.get("/api/api-keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(&key), "keys are never listed");
    assert!(list[0]["last_used_at"].is_string());

    let (status, err) = admin
        .post("/api/api-keys", json!({"name": "u", "role": "user"}))
        .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("extension"))
    );
    let (status, user_key) = admin
        .post(
            "/api/api-keys",
            json!({"name": "u", "role": "user", "extension": "2001"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut limited = server.client();
    limited.token = Some(user_key["key"].as_str().unwrap().to_owned());
    let (status, _) = limited.get("/api/extensions/2001").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = limited.get("/api/extensions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let id = created["id"].as_str().unwrap();
    let (status, _) = admin.delete(&format!("/api/api-keys/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = integration.get("/api/extensions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}
