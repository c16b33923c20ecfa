//! The registrar over real UDP and TCP sockets: digest challenges, bindings in the
//! database, events, the inventory, and the checks every request meets.

use std::borrow::Cow;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use switchboard::config::SipTransport;
use switchboard::store::{events, registrations};
use switchboard::time::Timestamp;
use switchboard_sip::header::{Contacts, HeaderName};

use crate::harness::{TestDb, TestServer, test_config};
use crate::sip_phone::{Phone, challenges};

const SECRET: &str = "phone-secret-2001";

async fn server_with_phone() -> (TestServer, crate::harness::Client) {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    (server, admin)
}

async fn event_count(server: &TestServer, kind: &str) -> usize {
    events::after(server.db().pool(), 0, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == kind)
        .count()
}

#[tokio::test]
async fn register_with_digest_on_both_databases() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        server.extension_with_secret(&admin, "2001", SECRET).await;
        let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
        phone.user_agent = "Yealink SIP-T46S 66.86.0.15 00:15:65:12:34:56".into();

        let req = phone.register_request(&[phone.contact()], Some(600));
        phone.send(&req).await;
        let challenge = phone.recv().await;
        assert_eq!(challenge.code(), Some(401));
        let offered: Vec<_> = challenges(&challenge)
            .into_iter()
            .map(|c| {
                let qop: Vec<String> = c.qop.iter().map(ToString::to_string).collect();
                (c.algorithm.unwrap().to_string(), qop)
            })
            .collect();
        assert_eq!(
            offered,
            vec![
                ("MD5".to_owned(), vec!["auth".to_owned()]),
                ("SHA-256".to_owned(), vec!["auth".to_owned()])
            ],
            "both, MD5 first (sip.digest_algorithms)"
        );
        let to = challenge.to_addr().unwrap();
        assert!(to.tag().is_some(), "final responses carry a To tag");
        let via = challenge.top_via().unwrap();
        assert_eq!(
            via.params.get("rport"),
            Some(phone.local.port().to_string().as_str()),
            "rport is filled in"
        );

        let ok = phone.register(600).await;
        assert_eq!(ok.code(), Some(200), "{ok}");
        let Some(Contacts::List(bound)) = ok.contacts().unwrap().map(Cow::into_owned) else {
            panic!("{ok}")
        };
        assert_eq!(bound.len(), 1);
        let expires: u32 = bound[0].params.get("expires").unwrap().parse().unwrap();
        assert!((595..=600).contains(&expires), "{expires}");

        // The binding is in the database before the 200 was sent.
        let rows = registrations::for_extension(server.db().pool(), "2001", Timestamp::now())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].mac_address.as_deref(), Some("001565123456"));
        assert_eq!(rows[0].transport, "udp");
        assert_eq!(event_count(&server, "extension.registered").await, 1);

        // SHA-256 works as well, and a refresh does not emit a second event.
        let contact = phone.contact();
        let ok = phone.register_with(&[contact], Some(600), "SHA-256").await;
        assert_eq!(ok.code(), Some(200), "{ok}");
        assert_eq!(event_count(&server, "extension.registered").await, 1);

        // The inventory (seed 004 shape).
        let (status, phones) = admin.get("/api/registered-phones").await;
        assert_eq!(status, StatusCode::OK);
        let list = phones.as_array().expect("a plain array");
        assert_eq!(list.len(), 1, "{phones}");
        assert_eq!(list[0]["mac_address"], "001565123456");
        assert_eq!(list[0]["extension_number"], "2001");
        assert_eq!(list[0]["ip_address"], "127.0.0.1");
        assert_eq!(list[0]["registered_now"], true);
        for path in [
            "/api/registered-phones/mac/00-15-65-12-34-56",
            "/api/registered-phones/ip/127.0.0.1",
            "/api/registered-phones/extension/2001",
        ] {
            let (status, found) = admin.get(path).await;
            assert_eq!(
                (status, found.as_array().map(Vec::len)),
                (StatusCode::OK, Some(1)),
                "{path}"
            );
        }
        let (status, err) = admin.get("/api/registered-phones/mac/not-a-mac").await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("mac"))
        );

        // Unregister: Expires 0 removes the binding and says so.
        let contact = phone.contact();
        let ok = phone.register_with(&[contact], Some(0), "MD5").await;
        assert_eq!(ok.code(), Some(200));
        assert!(ok.contacts().unwrap().is_none(), "no bindings left: {ok}");
        assert!(
            registrations::for_extension(server.db().pool(), "2001", Timestamp::now())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(event_count(&server, "extension.unregistered").await, 1);
        let (_, phones) = admin.get("/api/registered-phones").await;
        assert_eq!(
            phones[0]["registered_now"], false,
            "the inventory keeps the device"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn wrong_password_unknown_user_and_deactivated_extension_are_refused() {
    let (server, admin) = server_with_phone().await;
    let addr = server.sip_addr(SipTransport::Udp);
    let mut wrong = Phone::udp(addr, "2001", "not-the-secret").await;
    assert_eq!(wrong.register(600).await.code(), Some(403));
    let mut ghost = Phone::udp(addr, "7777", "whatever-secret").await;
    let refused = ghost.register(600).await;
    assert_eq!(refused.code(), Some(403));
    let mut auto_attendant = Phone::udp(addr, "0", "anything-at-all").await;
    assert_eq!(
        auto_attendant.register(600).await.code(),
        Some(403),
        "extension 0 has no SIP secret"
    );

    let (status, _) = admin
        .patch("/api/extensions/2001", json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut phone = Phone::udp(addr, "2001", SECRET).await;
    let resp = phone.register(600).await;
    assert_eq!(resp.code(), Some(403), "{resp}");
    assert!(resp.to_string().contains("deactivated"));
    admin
        .patch("/api/extensions/2001", json!({"active": true}))
        .await;
    assert_eq!(
        phone.register(600).await.code(),
        Some(200),
        "the cache follows changes at once"
    );

    // A rotated secret takes effect at once too.
    let (_, rotated) = admin
        .post("/api/extensions/2001/sip-secret", json!({}))
        .await;
    assert_eq!(phone.register(600).await.code(), Some(403));
    phone.secret = rotated["sip_secret"].as_str().unwrap().to_owned();
    assert_eq!(phone.register(600).await.code(), Some(200));
    server.stop().await;
}

/// A change made elsewhere (the CLI, another node) reaches the SIP credential cache
/// through the event outbox, found among the many call events of a busy PBX.
#[tokio::test]
async fn changes_made_elsewhere_reach_the_cache_through_the_outbox() {
    let (server, _admin) = server_with_phone().await;
    let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
    assert_eq!(phone.register(600).await.code(), Some(200));

    let mut conn = server.db().pool().acquire().await.unwrap();
    sqlx::query("UPDATE extensions SET active = $1 WHERE number = $2")
        .bind(false)
        .bind("2001")
        .execute(&mut *conn)
        .await
        .unwrap();
    for i in 0..1500 {
        events::append(
            &mut conn,
            &format!("evt_call_{i}"),
            "call.ended",
            Timestamp::now(),
            r#"{"call":{"id":"x"}}"#,
        )
        .await
        .unwrap();
    }
    events::append(
        &mut conn,
        "evt_elsewhere",
        "extension.updated",
        Timestamp::now(),
        r#"{"extension":{"number":"2001"},"changes":["active"]}"#,
    )
    .await
    .unwrap();
    drop(conn);

    // The cache reads the outbox every 500 ms: wait for the refusal, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = phone.register(600).await;
        if resp.code() == Some(403) {
            assert!(resp.to_string().contains("deactivated"), "{resp}");
            break;
        }
        assert_eq!(resp.code(), Some(200), "{resp}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn replays_retransmissions_and_stale_nonces() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.sip.nonce_lifetime = 1;
    let server = TestServer::start_with(db, data_dir, config).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;

    let contact = phone.contact();
    let req = phone.register_request(std::slice::from_ref(&contact), Some(600));
    phone.send(&req).await;
    let c = challenges(&phone.recv().await).remove(1);
    let mut authed = phone.register_request(std::slice::from_ref(&contact), Some(600));
    phone.authorize(&mut authed, &c, 1);
    phone.send(&authed).await;
    assert_eq!(phone.recv().await.code(), Some(200));
    // The same request again (a retransmission): the same answer.
    phone.send(&authed).await;
    assert_eq!(phone.recv().await.code(), Some(200));
    // The same credentials in a new request (a replay): challenged again.
    let mut replay = phone.register_request(std::slice::from_ref(&contact), Some(600));
    replay.set(
        HeaderName::Authorization,
        authed
            .header(&HeaderName::Authorization)
            .unwrap()
            .to_owned(),
    );
    phone.send(&replay).await;
    let again = phone.recv().await;
    assert_eq!(again.code(), Some(401), "{again}");
    assert!(!challenges(&again)[0].stale);
    // A higher nonce count on the same nonce is fine.
    let mut next = phone.register_request(std::slice::from_ref(&contact), Some(600));
    phone.authorize(&mut next, &c, 2);
    phone.send(&next).await;
    assert_eq!(phone.recv().await.code(), Some(200));

    // Once the nonce outlives sip.nonce_lifetime (1 s here) it is stale.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = phone.register_request(&[contact], Some(600));
    phone.authorize(&mut late, &c, 3);
    phone.send(&late).await;
    let stale = phone.recv().await;
    assert_eq!(stale.code(), Some(401));
    assert!(challenges(&stale).iter().all(|c| c.stale), "{stale}");
    server.stop().await;
}

#[tokio::test]
async fn expiry_rules_several_contacts_and_instances() {
    let (server, _admin) = server_with_phone().await;
    let addr = server.sip_addr(SipTransport::Udp);
    let mut phone = Phone::udp(addr, "2001", SECRET).await;

    let brief = phone.register(30).await;
    assert_eq!(brief.code(), Some(423));
    assert_eq!(brief.min_expires().unwrap(), Some(60));

    let long = phone.register(999_999).await;
    assert_eq!(long.code(), Some(200));
    let Some(Contacts::List(c)) = long.contacts().unwrap().map(Cow::into_owned) else {
        panic!()
    };
    assert_eq!(
        c[0].params.get("expires"),
        Some("3600"),
        "capped at sip.max_expires"
    );

    let a = "<sip:2001@192.0.2.10:5060>;expires=120".to_owned();
    let b = "<sip:2001@192.0.2.11:5060>".to_owned();
    let resp = phone.register_with(&[a, b], Some(300), "MD5").await;
    let Some(Contacts::List(c)) = resp.contacts().unwrap().map(Cow::into_owned) else {
        panic!()
    };
    assert_eq!(c.len(), 3, "{resp}");

    // Contact: * with Expires: 0 removes everything; without Expires: 0 it is refused.
    let bad = phone
        .register_with(&["*".to_owned()], Some(60), "MD5")
        .await;
    assert_eq!(bad.code(), Some(400));
    let gone = phone.register_with(&["*".to_owned()], Some(0), "MD5").await;
    assert_eq!(gone.code(), Some(200));
    assert!(gone.contacts().unwrap().is_none());
    assert!(
        registrations::for_extension(server.db().pool(), "2001", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );

    // RFC 5626: the same instance and reg-id from a new address replaces the binding.
    let inst = "\"<urn:uuid:f81d4fae-7dec-41d0-a765-00a0c91e6bf6>\"";
    let first = format!("<sip:2001@192.0.2.20:5060>;+sip.instance={inst};reg-id=1");
    let moved = format!("<sip:2001@198.51.100.7:6000>;+sip.instance={inst};reg-id=1");
    assert_eq!(
        phone.register_with(&[first], Some(600), "MD5").await.code(),
        Some(200)
    );
    let resp = phone.register_with(&[moved], Some(600), "MD5").await;
    let Some(Contacts::List(c)) = resp.contacts().unwrap().map(Cow::into_owned) else {
        panic!()
    };
    assert_eq!(c.len(), 1, "{resp}");
    assert!(c[0].uri.to_string().contains("198.51.100.7"));
    let rows = registrations::for_extension(server.db().pool(), "2001", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].mac_address, None,
        "a random (v4) instance UUID gives no MAC"
    );

    // A query (no Contact) lists the bindings without changing them.
    let query = phone.register_with(&[], None, "MD5").await;
    assert_eq!(query.code(), Some(200));
    assert_eq!(query.count(&HeaderName::Contact), 1);
    server.stop().await;
}

#[tokio::test]
async fn bindings_survive_a_restart_and_expire_by_themselves() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.sip.min_expires = 1;
    let server = TestServer::start_with(db, data_dir, config).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    server
        .extension_with_secret(&admin, "2002", "phone-secret-2002")
        .await;
    let addr = server.sip_addr(SipTransport::Udp);
    let mut keeper = Phone::udp(addr, "2001", SECRET).await;
    assert_eq!(keeper.register(3600).await.code(), Some(200));
    let mut brief = Phone::udp(addr, "2002", "phone-secret-2002").await;
    assert_eq!(brief.register(2).await.code(), Some(200));

    let server = server.restart().await;
    let sip = server.server.as_ref().unwrap().sip.clone();
    assert_eq!(
        sip.core.location.lookup("2001", Timestamp::now()).len(),
        1,
        "restored from the database"
    );

    // The sweep removes the 2-second binding and says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while event_count(&server, "extension.unregistered").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired binding was never swept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        registrations::for_extension(server.db().pool(), "2002", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(sip.core.location.lookup("2001", Timestamp::now()).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn frequent_refreshes_are_answered_from_memory_and_lose_nothing() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let config = test_config(&db, data_dir.path());
    let server = TestServer::start_with(db, data_dir, config).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
    let stored = || async {
        registrations::for_extension(server.db().pool(), "2001", Timestamp::now())
            .await
            .unwrap()
    };

    assert_eq!(phone.register(3600).await.code(), Some(200));
    let first = stored().await;
    assert_eq!(first.len(), 1);
    // A refresh a moment later moves the expiry by far less than a quarter of the
    // interval: acknowledged, not rewritten.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ok = phone.register(3600).await;
    assert_eq!(ok.code(), Some(200), "{ok}");
    assert_eq!(stored().await, first, "the row is not rewritten");
    let sip = server.server.as_ref().unwrap().sip.clone();
    let held = sip.core.location.lookup("2001", Timestamp::now());
    assert!(
        held[0].expires_at > first[0].expires_at,
        "memory has the new expiry"
    );

    // A shorter interval is a change: written at once.
    assert_eq!(phone.register(600).await.code(), Some(200));
    let shorter = stored().await;
    let left = (shorter[0].expires_at.millis() - Timestamp::now().millis()) / 1000;
    assert!((595..=600).contains(&left), "{left}");
    // So is a refresh from another address (the phone moved): a new binding key here,
    // since the contact URI names the address.
    let mut moved = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
    assert_eq!(moved.register(600).await.code(), Some(200));
    assert_eq!(stored().await.len(), 2);

    // After a restart the binding is there with at least the stored expiry.
    let server = server.restart().await;
    let sip = server.server.as_ref().unwrap().sip.clone();
    assert_eq!(sip.core.location.lookup("2001", Timestamp::now()).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn tcp_registration_and_the_flow_it_came_on() {
    let (server, _admin) = server_with_phone().await;
    let mut phone = Phone::tcp(server.sip_addr(SipTransport::Tcp), "2001", SECRET).await;
    let ok = phone.register(600).await;
    assert_eq!(ok.code(), Some(200), "{ok}");
    let sip = server.server.as_ref().unwrap().sip.clone();
    let bindings = sip.core.location.lookup("2001", Timestamp::now());
    assert_eq!(bindings[0].flow.transport, SipTransport::Tcp);
    assert!(
        bindings[0].flow.conn.is_some(),
        "the phone is reached over its own connection"
    );
    // RFC 5626 keep-alive: a double CRLF gets a CRLF back.
    phone.send_raw(b"\r\n\r\n").await;
    // Too large on a stream: 513, then the stream is closed.
    let mut req = phone.register_request(&[phone.contact()], Some(600));
    req.push(HeaderName::Other("X-Padding".into()), "x".repeat(70_000));
    phone.send(&req).await;
    let too_big = phone.recv().await;
    assert_eq!(too_big.code(), Some(513), "{too_big}");
    server.stop().await;
}

async fn ask(phone: &mut Phone, raw: String) -> switchboard_sip::Message {
    phone.send_raw(raw.as_bytes()).await;
    phone.recv().await
}

fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:2001@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{method}\r\n\
         From: <sip:x@y>;tag=1\r\nTo: <sip:2001@switchboard>\r\nCall-ID: u@x\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn every_request_meets_the_uas_checks() {
    let (server, _admin) = server_with_phone().await;
    let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
    let ok = ask(&mut phone, request("OPTIONS", "Max-Forwards: 70\r\n")).await;
    assert_eq!(ok.code(), Some(200));
    assert!(ok.header(&HeaderName::Allow).unwrap().contains("REGISTER"));
    // A call from a stranger is challenged (the call engine takes INVITE).
    let invite = ask(&mut phone, request("INVITE", "Max-Forwards: 70\r\n")).await;
    assert_eq!(invite.code(), Some(407), "{invite}");
    let not_allowed = ask(&mut phone, request("PUBLISH", "Max-Forwards: 70\r\n")).await;
    assert_eq!(not_allowed.code(), Some(405));
    assert!(not_allowed.header(&HeaderName::Allow).is_some());
    assert_eq!(
        ask(&mut phone, request("FROBNICATE", "Max-Forwards: 70\r\n"))
            .await
            .code(),
        Some(501)
    );
    assert_eq!(
        ask(&mut phone, request("OPTIONS", "Max-Forwards: 0\r\n"))
            .await
            .code(),
        Some(483)
    );
    let ext = ask(&mut phone, request("OPTIONS", "Require: teleportation\r\n")).await;
    assert_eq!(
        (ext.code(), ext.header(&HeaderName::Unsupported)),
        (Some(420), Some("teleportation"))
    );
    // Malformed: a 400 whose reason says what was wrong (it echoes the bad header, so
    // it is read as text).
    phone
        .send_raw(
            request("OPTIONS", "Subject: x\r\n")
                .replace("To: <sip:2001@switchboard>", "To: \"unbalanced <sip:a@b>")
                .as_bytes(),
        )
        .await;
    let malformed = phone.recv_text().await;
    assert!(
        malformed.starts_with("SIP/2.0 400 Bad Request (To: unbalanced quotes"),
        "{malformed}"
    );
    // Garbage that cannot be answered is dropped, and service goes on.
    phone.send_raw(b"\x00\x01garbage").await;
    assert!(phone.try_recv(Duration::from_millis(300)).await.is_none());
    assert_eq!(
        ask(&mut phone, request("OPTIONS", "")).await.code(),
        Some(200)
    );
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.sip.idle_timeout = 1;
    let server = TestServer::start_with(db, data_dir, config).await;
    let mut stream = tokio::net::TcpStream::connect(server.sip_addr(SipTransport::Tcp))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the server closes a silent connection: {read:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.sip.max_connections = 1;
    let server = TestServer::start_with(db, data_dir, config).await;
    let addr = server.sip_addr(SipTransport::Tcp);
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    let mut first = Phone::tcp(addr, "2001", SECRET).await;
    assert_eq!(
        first.register(600).await.code(),
        Some(200),
        "the first connection is served"
    );
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut second, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the second is closed at once: {read:?}"
    );
    assert_eq!(
        first.register(600).await.code(),
        Some(200),
        "and the first still works"
    );
    server.stop().await;
}

#[tokio::test]
async fn sha256_only_when_configured() {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.sip.digest_algorithms = vec![switchboard::config::DigestAlgorithm::Sha256];
    let server = TestServer::start_with(db, data_dir, config).await;
    let admin = server.admin().await;
    server.extension_with_secret(&admin, "2001", SECRET).await;
    let mut phone = Phone::udp(server.sip_addr(SipTransport::Udp), "2001", SECRET).await;
    let req = phone.register_request(&[phone.contact()], Some(600));
    phone.send(&req).await;
    let challenge = phone.recv().await;
    let offered = challenges(&challenge);
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].algorithm.as_deref(), Some("SHA-256"));
    // MD5 credentials computed anyway are not accepted: a new challenge.
    let mut md5 = offered[0].clone();
    md5.algorithm = Some("MD5".into());
    let mut req = phone.register_request(&[phone.contact()], Some(600));
    phone.authorize(&mut req, &md5, 1);
    phone.send(&req).await;
    assert_eq!(phone.recv().await.code(), Some(401));
    let contact = phone.contact();
    assert_eq!(
        phone
            .register_with(&[contact], Some(600), "SHA-256")
            .await
            .code(),
        Some(200)
    );
    server.stop().await;
}
