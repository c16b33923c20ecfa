//! HTTPS: a self-signed certificate generated at first start, or certificate files.

use reqwest::StatusCode;
use serde_json::json;
use switchboard::config::HttpTls;

use crate::harness::{TestDb, TestServer, test_config};

#[tokio::test]
async fn self_signed_https_with_secure_cookies() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.http.tls = HttpTls::SelfSigned;
    let server = TestServer::start_with(db, data_dir, config).await;
    let key = server.config.data_dir.join("tls/http-key.pem");
    assert!(server.config.data_dir.join("tls/http-cert.pem").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600,
            "the private key is private"
        );
    }
    let https = server.base.replace("http://", "https://");
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = http.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let password = server.operator.as_ref().unwrap().password.clone();
    let resp = http
        .post(format!("{https}/api/auth/login"))
        .json(&json!({"extension": "1001", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_err(),
        "plain HTTP is not served"
    );

    // The certificate is kept: a restart serves the same one.
    let before = std::fs::read(&key).unwrap();
    let server = server.restart().await;
    assert_eq!(std::fs::read(&key).unwrap(), before);
    server.stop().await;
}

#[tokio::test]
async fn certificate_files_from_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let crate::harness::PrivateCa {
        cert_file,
        key_file,
        ca_pem,
        ..
    } = crate::harness::private_ca(dir.path());

    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.http.tls = HttpTls::Files {
        cert_file,
        key_file,
    };
    let server = TestServer::start_with(db, data_dir, config).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://localhost:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the chain verifies against the private CA"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_file_is_a_clear_startup_error() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.http.tls = HttpTls::Files {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
    };
    let err = switchboard::server::start(config)
        .await
        .err()
        .expect("refuses to start");
    let text = format!("{err:#}");
    assert!(
        text.contains("/nonexistent/cert.pem") && text.contains("http.tls"),
        "{text}"
    );
}
