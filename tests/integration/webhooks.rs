//! Webhooks (spec 06) against a receiver written here: subscriptions over the API
//! (rules, health, test event), Standard Webhooks signatures checked by the receiver
//! with its own HMAC, retries while the receiver is down with every event arriving in
//! order once it is back, `max_age` and re-delivery, the SSRF guard, and the real
//! binary killed with SIGKILL while events wait: all of them arrive after the restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::config::Config;

use crate::harness::{Client, Process, TestDb, TestServer, code};
use crate::interop::{eventually, free_port};

/// What the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    raw: Vec<u8>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Whether `webhook-signature` is the HMAC of `id.timestamp.body` under `secret`.
    fn signed_with(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        let signed = format!(
            "{}.{}.",
            self.header("webhook-id"),
            self.header("webhook-timestamp")
        );
        mac.update(signed.as_bytes());
        mac.update(&self.raw);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
    }
}

/// An HTTP receiver answering `answer` (200 unless changed).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
    /// How long it takes to answer, in milliseconds.
    delay_ms: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> Self {
        Self::start_at(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    async fn start_at(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().fallback({
            let got = got.clone();
            let answer = answer.clone();
            let delay_ms = delay_ms.clone();
            move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                let answer = answer.clone();
                let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                async move {
                    tokio::time::sleep(delay).await;
                    got.lock().push(Received {
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        raw: body.to_vec(),
                        headers,
                    });
                    let code = AxumStatus::from_u16(answer.load(Ordering::SeqCst)).unwrap();
                    let mut response = axum::response::Response::builder().status(code);
                    if code.is_redirection() {
                        // Somewhere a webhook must never be led.
                        response = response.header("location", "http://169.254.169.254/latest");
                    }
                    response.body(axum::body::Body::empty()).unwrap()
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            got,
            answer,
            delay_ms,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn of_type(&self, kind: &str) -> Vec<Received> {
        self.got
            .lock()
            .iter()
            .filter(|r| r.body["event_type"] == kind)
            .cloned()
            .collect()
    }
}

fn quick(config: &mut Config) {
    config.features.webhooks.allow_private_targets = true;
    config.features.webhooks.retry_delays = vec![1];
}

async fn subscribe(admin: &Client, url: &str, events: Value) -> (String, String) {
    let (status, body) = admin
        .post("/api/webhooks", json!({"url": url, "events": events}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn new_extension(admin: &Client, number: &str) {
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": number, "name": format!("Hook {number}")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn subscribers_get_signed_events_they_asked_for() {
    for db in TestDb::all().await {
        let server = TestServer::start_tweaked(db, quick).await;
        let admin = server.admin().await;
        let crm = Receiver::start().await;
        let audit = Receiver::start().await;
        let (crm_id, crm_secret) = subscribe(&admin, &crm.url(), json!(["extension.*"])).await;
        assert!(crm_secret.starts_with("whsec_"));
        let (audit_id, _) = subscribe(&admin, &audit.url(), json!(["voicemail.received"])).await;

        new_extension(&admin, "2001").await;
        eventually("the CRM gets extension.created", || async {
            !crm.of_type("extension.created").is_empty()
        })
        .await;
        let r = crm.of_type("extension.created").remove(0);
        assert_eq!(
            r.body
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            ["data", "event_id", "event_type", "timestamp"]
        );
        assert_eq!(r.body["data"]["extension"]["number"], "2001");
        assert_eq!(r.header("webhook-id"), r.body["event_id"].as_str().unwrap());
        assert_eq!(r.header("x-webhook-event"), "extension.created");
        assert_eq!(r.header("content-type"), "application/json");
        assert!(
            r.header("user-agent").starts_with("Switchboard/"),
            "{:?}",
            r.headers
        );
        let age =
            chrono::Utc::now().timestamp() - r.header("webhook-timestamp").parse::<i64>().unwrap();
        assert!((0..60).contains(&age), "{age}");
        assert!(r.signed_with(&crm_secret), "{:?}", r.headers);
        assert!(!r.signed_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

        // The test event goes to the one subscription; the audit log wanted no
        // extension events.
        let (status, body) = admin
            .post(&format!("/api/webhooks/{audit_id}/test"), json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        eventually("the audit receiver gets its test", || async {
            !audit.of_type("webhook.test").is_empty()
        })
        .await;
        assert_eq!(audit.got.lock().len(), 1, "only the test event");
        assert!(crm.of_type("webhook.test").is_empty());

        let (_, list) = admin.get("/api/webhooks").await;
        let crm_view = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == crm_id.as_str())
            .unwrap()
            .clone();
        assert_eq!(crm_view["source"], "api");
        assert_eq!(crm_view["health"]["healthy"], true);
        assert!(
            crm_view.get("secret").is_none(),
            "the secret is shown once only"
        );
        let (_, log) = admin
            .get(&format!("/api/webhooks/{crm_id}/deliveries"))
            .await;
        assert_eq!(log["items"][0]["status"], "delivered", "{log}");
        assert_eq!(log["items"][0]["attempts"], 1);
        assert_eq!(log["items"][0]["last_status_code"], 200);

        for (body, field) in [
            (json!({"url": "ftp://x.example"}), "url"),
            (json!({"url": crm.url(), "events": []}), "events"),
            (json!({"url": crm.url(), "events": ["Call.*"]}), "events[0]"),
            (json!({"url": crm.url(), "secret": "plain"}), "secret"),
        ] {
            let (status, err) = admin.post("/api/webhooks", body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
            assert_eq!(err["error"]["field"], field, "{body}: {err}");
        }
        let (status, body) = admin
            .put(
                &format!("/api/webhooks/{crm_id}"),
                json!({"url": crm.url(), "events": ["*"], "enabled": false}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["enabled"], false);
        let (status, _) = admin.delete(&format!("/api/webhooks/{crm_id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = admin.get(&format!("/api/webhooks/{crm_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(code(&body), "not_found");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_in_order() {
    for db in TestDb::all().await {
        let server = TestServer::start_tweaked(db, quick).await;
        let admin = server.admin().await;
        let crm = Receiver::start().await;
        crm.answer.store(503, Ordering::SeqCst);
        let (id, secret) = subscribe(&admin, &crm.url(), json!(["extension.created"])).await;
        for n in ["2001", "2002", "2003", "2004"] {
            new_extension(&admin, n).await;
        }
        // The first event is retried (and holds the others back) and the subscription
        // shows as unhealthy.
        eventually("three failed attempts", || async {
            let (_, sub) = admin.get(&format!("/api/webhooks/{id}")).await;
            sub["health"]["healthy"] == false && sub["health"]["last_status_code"] == 503
        })
        .await;
        assert!(
            crm.got
                .lock()
                .iter()
                .all(|r| r.body["data"]["extension"]["number"] == "2001"),
            "nothing overtakes the first event"
        );
        crm.answer.store(200, Ordering::SeqCst);
        eventually("all four delivered", || async {
            let (_, log) = admin
                .get(&format!("/api/webhooks/{id}/deliveries?status=delivered"))
                .await;
            log["items"].as_array().unwrap().len() == 4
        })
        .await;
        let delivered: Vec<Received> = crm.got.lock().clone();
        let mut order = Vec::new();
        for r in &delivered {
            assert!(r.signed_with(&secret));
            let n = r.body["data"]["extension"]["number"]
                .as_str()
                .unwrap()
                .to_owned();
            if order.last() != Some(&n) {
                order.push(n);
            }
        }
        assert_eq!(
            order,
            ["2001", "2002", "2003", "2004"],
            "in order, retries of the first only"
        );
        let (_, sub) = admin.get(&format!("/api/webhooks/{id}")).await;
        assert_eq!(sub["health"]["healthy"], true, "{sub}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_slow_receiver_holds_back_no_one_else() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |c| {
        quick(c);
        c.features.webhooks.timeout = 30;
    })
    .await;
    let admin = server.admin().await;
    let slow = Receiver::start().await;
    slow.delay_ms.store(20_000, Ordering::SeqCst);
    let quick_one = Receiver::start().await;
    subscribe(&admin, &slow.url(), json!(["extension.created"])).await;
    subscribe(&admin, &quick_one.url(), json!(["extension.created"])).await;
    for n in ["2001", "2002", "2003"] {
        new_extension(&admin, n).await;
    }
    let started = std::time::Instant::now();
    eventually("the quick receiver has all three", || async {
        quick_one.of_type("extension.created").len() == 3
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the quick receiver waited on the slow one: {:?}",
        started.elapsed()
    );
    assert!(
        slow.of_type("extension.created").len() <= 1,
        "the slow one is still on its first"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_event_past_max_age_fails_and_can_be_delivered_again() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |c| {
        quick(c);
        c.features.webhooks.max_age = 1;
    })
    .await;
    let admin = server.admin().await;
    let crm = Receiver::start().await;
    crm.answer.store(500, Ordering::SeqCst);
    let (id, _) = subscribe(&admin, &crm.url(), json!(["extension.created"])).await;
    new_extension(&admin, "2001").await;
    eventually("the delivery failed for good", || async {
        let (_, log) = admin
            .get(&format!("/api/webhooks/{id}/deliveries?status=failed"))
            .await;
        log["items"].as_array().unwrap().len() == 1
    })
    .await;
    let (_, log) = admin.get(&format!("/api/webhooks/{id}/deliveries")).await;
    let failed = &log["items"][0];
    assert_eq!(failed["last_status_code"], 500, "{failed}");
    assert!(failed["next_attempt_at"].is_null());
    crm.answer.store(200, Ordering::SeqCst);
    let delivery = failed["id"].as_str().unwrap();
    let (status, body) = admin
        .post(
            &format!("/api/webhooks/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually("delivered on retry", || async {
        let (_, log) = admin.get(&format!("/api/webhooks/{id}/deliveries")).await;
        log["items"][0]["status"] == "delivered"
    })
    .await;
    let (status, _) = admin
        .post("/api/webhooks/deliveries/no-such-delivery/retry", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn private_targets_and_redirects_are_refused() {
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |c| {
        c.features.webhooks.retry_delays = vec![1];
    })
    .await;
    let admin = server.admin().await;
    let inside = Receiver::start().await;
    let (status, body) = admin
        .post("/api/webhooks", json!({"url": inside.url()}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "url");
    // A name resolving to loopback passes the form check, but is never connected to.
    let by_name = format!("http://localhost:{}/hook", inside.addr.port());
    let (id, _) = subscribe(&admin, &by_name, json!(["extension.created"])).await;
    new_extension(&admin, "2001").await;
    eventually("the attempt is refused", || async {
        let (_, log) = admin.get(&format!("/api/webhooks/{id}/deliveries")).await;
        log["items"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("private or local"))
    })
    .await;
    assert!(
        inside.got.lock().is_empty(),
        "nothing reached the private receiver"
    );
    server.stop().await;

    // With private targets allowed, a redirect is still not followed.
    let server = TestServer::start_tweaked(TestDb::sqlite().await, quick).await;
    let admin = server.admin().await;
    let redirecting = Receiver::start().await;
    redirecting.answer.store(302, Ordering::SeqCst);
    let (id, _) = subscribe(&admin, &redirecting.url(), json!(["extension.created"])).await;
    new_extension(&admin, "2001").await;
    eventually("the redirect counts as a failure", || async {
        let (_, log) = admin.get(&format!("/api/webhooks/{id}/deliveries")).await;
        log["items"][0]["last_status_code"] == 302 && log["items"][0]["status"] == "pending"
    })
    .await;
    server.stop().await;
}

fn http_addr(line: &str) -> String {
    line.rsplit("HTTP on ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .trim()
        .to_owned()
}

#[tokio::test]
async fn events_waiting_for_a_receiver_survive_sigkill() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "http:\n  listen: 127.0.0.1:0\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\n\
             features:\n  webhooks:\n    allow_private_targets: true\n    retry_delays: [1]\n    \
             subscriptions:\n      - url: http://127.0.0.1:{port}/hook\n        \
             events: [\"extension.*\"]\n        secret: {SECRET}\n"
        ),
    )
    .unwrap();
    let mut pbx = Process::spawn(dir.path(), &["--config", "config.yml"]);
    let base = format!(
        "http://{}",
        http_addr(&pbx.wait_for_line("Switchboard is running"))
    );
    let password = pbx.value_after("Password:  ").expect("banner password");
    let http = reqwest::Client::new();
    let token = crate::harness::banner_admin_token(&http, &base, &password).await;
    for n in ["2001", "2002", "2003"] {
        let status = http
            .post(format!("{base}/api/extensions"))
            .bearer_auth(&token)
            .json(&json!({"number": n, "name": format!("Kill {n}")}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    // The receiver is down: the deliveries wait in the database when the PBX dies.
    let db_url = format!(
        "sqlite://{}",
        dir.path().join("data/switchboard.db").display()
    );
    let db = switchboard::store::Db::connect(&db_url, 1).await.unwrap();
    let expected: Vec<String> = switchboard::store::events::after(db.pool(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.event_type == "extension.created"
                && e.data["extension"]["number"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("200"))
        })
        .map(|e| e.event_id)
        .collect();
    assert_eq!(expected.len(), 3, "{expected:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    pbx.child.kill().unwrap();
    pbx.child.wait().unwrap();

    let receiver = Receiver::start_at(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    let mut pbx = Process::spawn(dir.path(), &["--config", "config.yml"]);
    pbx.wait_for_line("Switchboard is running");
    eventually("every event arrives after the restart", || async {
        let got: std::collections::HashSet<String> = receiver
            .got
            .lock()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        expected.iter().all(|id| got.contains(id))
    })
    .await;
    for r in receiver.got.lock().iter() {
        assert!(r.signed_with(SECRET), "{:?}", r.headers);
    }
    let numbers: Vec<String> = receiver
        .of_type("extension.created")
        .iter()
        .map(|r| {
            r.body["data"]["extension"]["number"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut unique = numbers.clone();
    unique.dedup();
    assert_eq!(unique, ["2001", "2002", "2003"], "in order: {numbers:?}");
    assert!(pbx.terminate().success());
}
