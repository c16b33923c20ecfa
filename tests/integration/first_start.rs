//! `switchboard` with no arguments in an empty directory: a working PBX, the
//! first-start banner once, no credentials on the second start.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Process, skip_or_fail};

#[tokio::test]
async fn fresh_machine_no_configuration() {
    // This test proves the no-configuration defaults, so it needs port 8080 itself.
    let free = std::net::TcpListener::bind("0.0.0.0:8080").is_ok()
        && std::net::TcpListener::bind("0.0.0.0:5060").is_ok()
        && std::net::UdpSocket::bind("0.0.0.0:5060").is_ok();
    if !free {
        skip_or_fail("ports 8080 or 5060 are in use; the no-configuration test needs them");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = Process::spawn(dir.path(), &[]);
    let running = pbx.wait_for_line("Switchboard is running");
    assert!(running.contains(":8080"), "{running}");
    let password = pbx
        .value_after("Password:  ")
        .expect("banner prints the password after two spaces");
    assert!(
        password.starts_with("ChangeMe-Operator-")
            && password.len() == "ChangeMe-Operator-".len() + 8
    );
    assert_eq!(pbx.value_after("Extension: ").as_deref(), Some("1001"));
    let pin = pbx.value_after("Voicemail PIN: ").unwrap();
    assert!(
        pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()),
        "{pin}"
    );
    assert!(pbx.value_after("SIP secret: ").unwrap().len() >= 20);
    assert!(
        pbx.seen.iter().any(|l| l.contains("/admin/")),
        "the banner gives the admin URL"
    );
    assert!(
        dir.path().join("data/switchboard.db").is_file(),
        "SQLite under ./data"
    );
    // Transparent huge pages are off for the process (see main.rs: their zeroing
    // was a third of a call storm's CPU).
    let status = std::fs::read_to_string(format!("/proc/{}/status", pbx.child.id())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
        "{status}"
    );

    let http = reqwest::Client::new();
    let base = "http://127.0.0.1:8080";
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/",
        "/api/openapi.json",
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    // An OPTIONS over UDP, so the SIP side's own counters have something to count.
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = phone.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKfirst\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: first@x\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    phone.send_to(options.as_bytes(), "127.0.0.1:5060").unwrap();
    phone
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = phone.recv(&mut buf).expect("an answer to OPTIONS");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    // The real binary's metrics include the SIP side's and the call engine's: they are
    // registered at start, which only works once the recorder exists.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("switchboard_media_sessions ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in [
        "switchboard_http_requests_total",
        "switchboard_sip_messages_received_total{transport=\"udp\"}",
        "switchboard_sip_messages_sent_total{transport=\"udp\"}",
        "switchboard_calls_active ",
        "switchboard_sip_transactions ",
        "switchboard_media_sessions ",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert_eq!(
        http.get(format!("{base}/api/extensions"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"extension": "1001", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let status = pbx.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    // Started with the usual low soft limit on open files, it lifts it to the hard
    // one (four sockets per anchored call; see main.rs).
    let mut again = Process::spawn_with_open_files(dir.path(), &[], 256);
    again.wait_for_line("Switchboard is running");
    assert!(
        again.value_after("Password:").is_none(),
        "a second start prints no credentials: {:?}",
        again.seen
    );
    assert!(!again.seen.iter().any(|l| l.contains(&password)));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", again.child.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .expect("a line for open files")
        .split_whitespace()
        .collect();
    assert_eq!(open_files[0], open_files[1], "soft = hard: {limits}");
    assert_ne!(open_files[0], "256", "{limits}");
    assert!(again.terminate().success());
}
