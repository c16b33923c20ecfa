//! Threat detection (spec 08): addresses that fail to authenticate over SIP, announce a
//! scanner, or send attacks over HTTP are blocked (their SIP packets go unanswered,
//! their HTTP requests get 403) while the machine itself and trusted networks are not;
//! blocks by an admin, their expiry by the timer, a restart keeping them, the API and
//! the events. Other machines are played by other loopback addresses (127.0.0.2, …).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::{Config, SipTransport};

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::{events_of, eventually};
use crate::sip_phone::Phone;

const SECRET: &str = "threat-test-secret";

async fn start(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_tweaked(db, |config| {
        let td = &mut config.security.threat_detection;
        td.failed_login_threshold = 3;
        td.suspicious_pattern_threshold = 2;
        tweak(config);
    })
    .await
}

/// An HTTP client whose requests come from `ip`.
fn http_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn check(admin: &Client, ip: &str) -> Value {
    let (status, body) = admin.get(&format!("/api/security/check-ip/{ip}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn sip_password_guessing_is_blocked_while_the_machine_itself_keeps_working() {
    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        server.extension_with_secret(&admin, "2001", SECRET).await;
        let sip = server.sip_addr(SipTransport::Udp);

        let mut guesser = Phone::udp_from(sip, "2001", "wrong-guess", "127.0.0.2").await;
        for _ in 0..3 {
            let answer = guesser.register(600).await;
            assert_eq!(answer.code(), Some(403), "{answer}");
        }
        // Blocked: not even a challenge comes back.
        let req = guesser.register_request(&[guesser.contact()], Some(600));
        guesser.send(&req).await;
        assert!(guesser.try_recv(Duration::from_millis(700)).await.is_none());
        let c = check(&admin, "127.0.0.2").await;
        assert_eq!(c["blocked"], true, "{c}");
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .contains("3 failed authentications"),
            "{c}"
        );
        assert!(c["threat_score"].as_u64().unwrap() >= 30, "{c}");
        assert!(c["blocked_until"].is_string(), "{c}");

        // The same extension from the machine itself registers throughout.
        let mut phone = Phone::udp(sip, "2001", SECRET).await;
        assert_eq!(phone.register(600).await.code(), Some(200));

        eventually("the three threat events", || async {
            let (_, events) = admin.get("/api/security/events?ip=127.0.0.2").await;
            events["items"].as_array().is_some_and(|i| i.len() == 3)
        })
        .await;
        let (_, events) = admin.get("/api/security/events?ip=127.0.0.2").await;
        let kinds: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["failed_auth"; 3], "{events}");
        eventually("the block's event", || async {
            !events_of(&server, "security.ip_blocked").await.is_empty()
        })
        .await;
        let blocked = events_of(&server, "security.ip_blocked").await;
        assert_eq!(blocked[0]["ip"], "127.0.0.2");
        assert_eq!(blocked[0]["source"], "auto");

        // A restart keeps the block.
        let server = server.restart().await;
        let threats = &server.server.as_ref().unwrap().app.threats;
        assert!(threats.is_blocked("127.0.0.2".parse().unwrap()));
        server.stop().await;
    }
}

#[tokio::test]
async fn a_sip_scanner_is_blocked_at_its_first_packet_and_blocks_expire() {
    let server = start(TestDb::sqlite().await, |c| {
        c.security.threat_detection.ip_block_duration = 2;
    })
    .await;
    let admin = server.admin().await;
    let sip = server.sip_addr(SipTransport::Udp);
    let mut scanner = Phone::udp_from(sip, "100", "x", "127.0.0.3").await;
    scanner.user_agent = "friendly-scanner".into();
    let req = scanner.register_request(&[scanner.contact()], Some(600));
    scanner.send(&req).await;
    assert!(
        scanner.try_recv(Duration::from_millis(700)).await.is_none(),
        "no answer at all"
    );
    let c = check(&admin, "127.0.0.3").await;
    assert_eq!(c["reason"], "scanner: friendly-scanner", "{c}");

    // The timer lifts it: the address is answered again, as anyone.
    eventually("the block expires", || async {
        check(&admin, "127.0.0.3").await["blocked"] == false
    })
    .await;
    eventually("the unblock's event", || async {
        !events_of(&server, "security.ip_unblocked").await.is_empty()
    })
    .await;
    let unblocked = events_of(&server, "security.ip_unblocked").await;
    assert_eq!(unblocked[0]["reason"], "expired", "{unblocked:?}");
    let mut again = Phone::udp_from(sip, "100", "x", "127.0.0.3").await;
    let req = again.register_request(&[again.contact()], Some(600));
    again.send(&req).await;
    assert_eq!(
        again
            .try_recv(Duration::from_secs(2))
            .await
            .and_then(|m| m.code()),
        Some(401)
    );
    server.stop().await;
}

#[tokio::test]
async fn http_scanners_attacks_and_password_guessing_get_403() {
    let server = start(TestDb::sqlite().await, |_| {}).await;
    let admin = server.admin().await;
    let base = server.base.clone();

    // A scanner's User-Agent: blocked at once, for everything.
    let scanner = http_from("127.0.0.2");
    let r = scanner
        .get(format!("{base}/api/system/status"))
        .header("user-agent", "sqlmap/1.7.2#stable")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = scanner.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "address_blocked");

    // Injection in a query, then in a JSON body: refused, and the second blocks.
    let attacker = http_from("127.0.0.3");
    let r = attacker
        .get(format!(
            "{base}/api/extensions?search=%27%20OR%20%271%27%3D%271"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "suspicious_request");
    let r = attacker
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"extension": "1001' OR 1=1--", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(check(&admin, "127.0.0.3").await["blocked"], true);

    // Three wrong passwords: the fourth request is refused before it is read.
    let guesser = http_from("127.0.0.4");
    for _ in 0..3 {
        let r = guesser
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"extension": "1001", "password": "not-it-at-all"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = guesser.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The machine itself is never blocked, even sending the same.
    let (status, _) = server
        .client()
        .get("/api/extensions?search=%27%20OR%20%271%27%3D%271")
        .await;
    assert_ne!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin.get("/api/system/status").await;
    assert_eq!(status, StatusCode::OK);

    // Threat events are written off the request path: wait for all six.
    eventually("the six threat events", || async {
        let (_, events) = admin.get("/api/security/events?hours=1").await;
        events["items"].as_array().is_some_and(|i| i.len() == 6)
    })
    .await;
    let (_, summary) = admin.get("/api/security/threat-summary?hours=1").await;
    assert_eq!(summary["blocked_count"], 3, "{summary}");
    assert_eq!(summary["events_by_type"]["scanner"], 1, "{summary}");
    assert_eq!(summary["events_by_type"]["sql_injection"], 2, "{summary}");
    assert_eq!(summary["events_by_type"]["failed_auth"], 3, "{summary}");
    assert_eq!(summary["top_offenders"].as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn admins_block_and_unblock_addresses_and_ranges() {
    for db in TestDb::all().await {
        let server = start(db, |_| {}).await;
        let admin = server.admin().await;
        let base = server.base.clone();
        let (status, body) = admin
            .post(
                "/api/security/block-ip",
                json!({"ip": "127.0.0.128/25", "duration_seconds": 0, "reason": "lab range"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ip"], "127.0.0.128/25");
        assert!(body["blocked_until"].is_null(), "permanent: {body}");
        let r = http_from("127.0.0.200")
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = http_from("127.0.0.100")
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let c = check(&admin, "127.0.0.200").await;
        assert_eq!(c["blocked"], true);
        assert_eq!(c["reason"], "lab range");

        let (_, list) = admin.get("/api/security/blocked").await;
        assert_eq!(list["items"][0]["ip"], "127.0.0.128/25", "{list}");
        assert_eq!(list["items"][0]["source"], "manual");

        for (body, status, field) in [
            (
                json!({"ip": "nowhere", "reason": "x"}),
                StatusCode::BAD_REQUEST,
                "ip",
            ),
            (
                json!({"ip": "10.0.0.1", "reason": ""}),
                StatusCode::BAD_REQUEST,
                "reason",
            ),
            (
                json!({"ip": "127.0.0.1", "reason": "oops"}),
                StatusCode::CONFLICT,
                "ip",
            ),
            (
                json!({"ip": "127.0.0.0/8", "reason": "oops"}),
                StatusCode::CONFLICT,
                "ip",
            ),
        ] {
            let (got, err) = admin.post("/api/security/block-ip", body.clone()).await;
            assert_eq!(got, status, "{body}: {err}");
            assert_eq!(err["error"]["field"], field, "{body}: {err}");
        }

        let (status, _) = admin
            .post("/api/security/unblock-ip", json!({"ip": "127.0.0.128/25"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let r = http_from("127.0.0.200")
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (status, _) = admin
            .post("/api/security/unblock-ip", json!({"ip": "127.0.0.128/25"}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let unblocked = events_of(&server, "security.ip_unblocked").await;
        assert_eq!(unblocked.len(), 1);
        assert_eq!(unblocked[0]["reason"], "manual");
        assert!(
            unblocked[0]["actor"]
                .as_str()
                .unwrap()
                .starts_with("extension:")
        );
        server.stop().await;
    }
}

/// Runs SIPVicious's `module` (`svwar`, `svcrack`) from local address `from` with
/// `args`; its output. SIPVicious 0.3.8 accepts `-b` but does not hand it to its
/// scanner classes, so it would send from any address: the class is given the binding
/// address here, everything else is the tool as shipped.
async fn sipvicious(module: &str, class: &str, from: &str, args: &[&str]) -> String {
    const WRAPPER: &str = r#"import importlib, sys
mod = importlib.import_module('sipvicious.' + sys.argv[1])
cls = getattr(mod, sys.argv[2])
ip = sys.argv[3]
init = cls.__init__
def bound(self, *a, **k):
    k['bindingip'] = ip
    init(self, *a, **k)
cls.__init__ = bound
sys.argv = ['sipvicious_' + sys.argv[1]] + sys.argv[4:]
sys.exit(mod.main())
"#;
    // Its own local port: SIPVicious binds 5060 by default, which the test of a PBX
    // started without configuration needs.
    let local_port = crate::interop::free_port().to_string();
    let run = tokio::process::Command::new("python3")
        .args(["-c", WRAPPER, module, class, from])
        .args(args)
        .args(["-P", &local_port])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("{module} did not finish"))
        .unwrap_or_else(|e| panic!("{module} did not run: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The proof of spec 08: SIPVicious's extension scanner and password cracker, from other
/// addresses, are blocked while a phone on the machine keeps registering.
#[tokio::test]
async fn sipvicious_svwar_and_svcrack_are_blocked_and_a_trusted_phone_keeps_working() {
    if !crate::interop::installed("sipvicious_svwar", "sipvicious (pip)") {
        return;
    }
    let server = start(TestDb::sqlite().await, |_| {}).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    let sip = server.sip_addr(SipTransport::Udp);
    let port = sip.port().to_string();
    let mut phone = Phone::udp(sip, "2001", SECRET).await;
    assert_eq!(phone.register(600).await.code(), Some(200));

    let war = sipvicious(
        "svwar",
        "TakeASip",
        "127.0.0.2",
        &[
            "-e",
            "2000-2010",
            "-t",
            "0.2",
            "--maximumtime",
            "10",
            "-p",
            &port,
            "127.0.0.1",
        ],
    )
    .await;
    assert!(!war.contains("| 2001"), "svwar found an extension:\n{war}");
    assert_eq!(
        phone.register(600).await.code(),
        Some(200),
        "the phone keeps registering"
    );

    let crack = sipvicious(
        "svcrack",
        "ASipOfRedWine",
        "127.0.0.3",
        &[
            "-u",
            "2001",
            "-r",
            "1000-1200",
            "-t",
            "0.2",
            "--maximumtime",
            "10",
            "-p",
            &port,
            "127.0.0.1",
        ],
    )
    .await;
    assert!(
        !crack.contains(SECRET),
        "svcrack found the secret:\n{crack}"
    );
    assert_eq!(
        phone.register(600).await.code(),
        Some(200),
        "the phone keeps registering"
    );

    for ip in ["127.0.0.2", "127.0.0.3"] {
        let c = check(&admin, ip).await;
        assert_eq!(
            c["blocked"], true,
            "{ip}: {c}\nsvwar:\n{war}\nsvcrack:\n{crack}"
        );
        assert_eq!(c["reason"], "scanner: friendly-scanner", "{c}");
    }
    eventually("the scanner's threat event", || async {
        let (_, events) = admin.get("/api/security/events?ip=127.0.0.3").await;
        events["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let (_, events) = admin.get("/api/security/events?ip=127.0.0.3").await;
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        1,
        "one packet got through, the first: {events}"
    );
    server.stop().await;
}

#[tokio::test]
async fn floods_over_sip_and_http_are_blocked() {
    let server = start(TestDb::sqlite().await, |c| {
        c.security.threat_detection.sip_flood_rate = 50;
        c.security.threat_detection.http_flood_rate = 30;
    })
    .await;
    let admin = server.admin().await;
    let sip = server.sip_addr(SipTransport::Udp);

    // 120 OPTIONS at once from one address: over 50 in a second.
    let flooder = tokio::net::UdpSocket::bind("127.0.0.5:0").await.unwrap();
    for n in 0..120 {
        let options = format!(
            "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKflood{n}\r\n\
             From: <sip:x@127.0.0.5>;tag={n}\r\nTo: <sip:switchboard>\r\nCall-ID: flood{n}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        flooder.send_to(options.as_bytes(), sip).await.unwrap();
    }
    eventually("the SIP flood is blocked", || async {
        check(&admin, "127.0.0.5").await["blocked"] == true
    })
    .await;
    assert!(
        check(&admin, "127.0.0.5").await["reason"]
            .as_str()
            .unwrap()
            .starts_with("flood")
    );

    // 60 HTTP requests at once: over 30 in a second.
    let client = http_from("127.0.0.6");
    let mut refused = 0;
    for _ in 0..60 {
        let r = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::FORBIDDEN {
            refused += 1;
        }
    }
    assert!(refused >= 25, "{refused} of 60 refused");
    assert_eq!(check(&admin, "127.0.0.6").await["blocked"], true);
    server.stop().await;
}
