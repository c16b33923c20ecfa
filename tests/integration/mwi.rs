//! Message-waiting indication (RFC 3842 `message-summary` over RFC 6665): SIPp
//! subscribes, sees the lamp go on when a message is left, and unsubscribes; raw SIP
//! for the refusals (another package, another mailbox, too brief) and for the
//! unsolicited NOTIFY to a phone that only registered.

use std::time::Duration;

use switchboard::config::SipTransport;
use switchboard_sip::header::HeaderName;
use switchboard_sip::{Message, Method, Uri};

use crate::harness::TestServer;
use crate::interop::{SECRET_2001, Sipp, eventually, installed, server_with};
use crate::sip_phone::{Phone, REALM, challenges};

/// Three seconds of a tone: longer than `voicemail.min_message_seconds`.
fn message() -> Vec<i16> {
    (0..24_000)
        .map(|i| ((i % 80) * 200 - 8000) as i16)
        .collect()
}

async fn deposit(server: &TestServer, extension: &str) {
    server
        .server
        .as_ref()
        .unwrap()
        .app
        .voicemail
        .deposit(extension, "2002", "Phone 2002", &message())
        .await
        .expect("the message is deposited");
}

fn subscriptions(server: &TestServer, extension: &str) -> usize {
    server
        .server
        .as_ref()
        .unwrap()
        .sip
        .core
        .mwi
        .subscriptions(extension)
}

#[tokio::test]
async fn sipp_subscribes_sees_the_lamp_go_on_and_unsubscribes() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, _admin) = server_with(|_| {}).await;
    let run = Sipp::new(
        "mwi_subscribe.xml",
        server.sip_addr(SipTransport::Udp),
        "2001",
    )
    .auth("2001", SECRET_2001)
    .timeout(15)
    .spawn();
    // Once the first NOTIFY (0/0) went out, a message is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while subscriptions(&server, "2001") != 1 {
        if std::time::Instant::now() > deadline {
            let (_, report, _) = run.finish().await;
            panic!("no subscription with its first NOTIFY\n{report}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deposit(&server, "2001").await;
    let report = run.passed().await;
    assert!(report.contains("Voice-Message: 1/0 (0/0)"), "{report}");
    eventually("the subscription to end", || async {
        subscriptions(&server, "2001") == 0
    })
    .await;
    server.stop().await;
}

/// A SUBSCRIBE from `phone` for `mailbox`'s message summary.
fn subscribe(phone: &mut Phone, mailbox: &str, event: Option<&str>, expires: u32) -> Message {
    phone.cseq += 1;
    let uri = Uri::parse(&format!("sip:{mailbox}@{REALM}")).unwrap();
    let mut m = Message::request(Method::Subscribe, uri);
    m.push(HeaderName::Via, phone.via().to_string());
    m.push(HeaderName::MaxForwards, "70");
    m.push(
        HeaderName::From,
        format!(
            "<sip:{}@{REALM}>;tag=mwi-{}",
            phone.ext,
            phone.call_id.split('@').next().unwrap()
        ),
    );
    m.push(HeaderName::To, format!("<sip:{mailbox}@{REALM}>"));
    m.push(HeaderName::CallId, phone.call_id.clone());
    m.push(HeaderName::CSeq, format!("{} SUBSCRIBE", phone.cseq));
    m.push(HeaderName::Contact, phone.contact());
    if let Some(e) = event {
        m.push(HeaderName::Event, e.to_owned());
    }
    m.push(HeaderName::Expires, expires.to_string());
    m.push(HeaderName::ContentLength, "0");
    m
}

/// SUBSCRIBE, 401, SUBSCRIBE with credentials: the final answer.
async fn subscribe_with_credentials(
    phone: &mut Phone,
    mailbox: &str,
    event: Option<&str>,
    expires: u32,
) -> Message {
    let first = subscribe(phone, mailbox, event, expires);
    phone.send(&first).await;
    let challenge = phone.recv().await;
    assert_eq!(challenge.code(), Some(401), "{challenge}");
    let c = challenges(&challenge)
        .into_iter()
        .find(|c| c.algorithm.as_deref() == Some("MD5"))
        .expect("an MD5 challenge");
    let mut second = subscribe(phone, mailbox, event, expires);
    phone.authorize(&mut second, &c, 1);
    phone.send(&second).await;
    phone.recv().await
}

#[tokio::test]
async fn subscriptions_are_refused_for_other_packages_and_other_mailboxes() {
    let (server, _admin) = server_with(|_| {}).await;
    let addr = server.sip_addr(SipTransport::Udp);

    // Another package: 489 with the one we serve, before any credentials.
    let mut phone = Phone::udp(addr, "2001", SECRET_2001).await;
    let req = subscribe(&mut phone, "2001", Some("presence"), 600);
    phone.send(&req).await;
    let resp = phone.recv().await;
    assert_eq!(resp.code(), Some(489), "{resp}");
    assert_eq!(
        resp.header(&HeaderName::AllowEvents),
        Some("message-summary")
    );
    let req = subscribe(&mut phone, "2001", None, 600);
    phone.send(&req).await;
    assert_eq!(phone.recv().await.code(), Some(489));

    // 2001's credentials for 2002's mailbox: 403.
    let mut phone = Phone::udp(addr, "2001", SECRET_2001).await;
    let resp = subscribe_with_credentials(&mut phone, "2002", Some("message-summary"), 600).await;
    assert_eq!(resp.code(), Some(403), "{resp}");

    // A wrong password: 403.
    let mut phone = Phone::udp(addr, "2001", "not-the-secret").await;
    let resp = subscribe_with_credentials(&mut phone, "2001", Some("message-summary"), 600).await;
    assert_eq!(resp.code(), Some(403), "{resp}");

    // Too brief: 423 with Min-Expires.
    let mut phone = Phone::udp(addr, "2001", SECRET_2001).await;
    let resp = subscribe_with_credentials(&mut phone, "2001", Some("message-summary"), 10).await;
    assert_eq!(resp.code(), Some(423), "{resp}");
    assert_eq!(resp.header(&HeaderName::MinExpires), Some("60"));
    assert_eq!(subscriptions(&server, "2001"), 0);

    // Too long: shortened to an hour; the NOTIFY follows with the summary.
    let mut phone = Phone::udp(addr, "2001", SECRET_2001).await;
    let resp =
        subscribe_with_credentials(&mut phone, "2001", Some("message-summary;id=7"), 86_400).await;
    assert_eq!(resp.code(), Some(200), "{resp}");
    assert_eq!(resp.header(&HeaderName::Expires), Some("3600"));
    let notify = phone.recv().await;
    assert_eq!(notify.method(), Some(&Method::Notify), "{notify}");
    assert_eq!(
        notify.header(&HeaderName::Event),
        Some("message-summary;id=7")
    );
    assert_eq!(
        notify.header(&HeaderName::ContentType),
        Some("application/simple-message-summary")
    );
    let body = String::from_utf8_lossy(&notify.body).into_owned();
    assert_eq!(
        body,
        format!(
            "Messages-Waiting: no\r\nMessage-Account: sip:2001@{REALM}\r\nVoice-Message: 0/0 (0/0)\r\n"
        )
    );
    // The phone says the subscription is gone (481): it is dropped.
    phone.answer(&notify, 481).await;
    eventually("the subscription to be dropped", || async {
        subscriptions(&server, "2001") == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn unsolicited_notifies_reach_phones_that_only_register() {
    let (server, _admin) = server_with(|c| c.voicemail.unsolicited_mwi = true).await;
    let addr = server.sip_addr(SipTransport::Udp);
    let mut phone = Phone::udp(addr, "2001", SECRET_2001).await;
    let ok = phone.register(600).await;
    assert_eq!(ok.code(), Some(200), "{ok}");
    deposit(&server, "2001").await;
    let notify = loop {
        let m = phone
            .try_recv(Duration::from_secs(10))
            .await
            .expect("an unsolicited NOTIFY");
        if m.method() == Some(&Method::Notify) {
            break m;
        }
    };
    assert_eq!(notify.header(&HeaderName::Event), Some("message-summary"));
    assert_eq!(
        notify.header(&HeaderName::SubscriptionState),
        Some("active")
    );
    let body = String::from_utf8_lossy(&notify.body).into_owned();
    assert!(body.contains("Messages-Waiting: yes\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 1/0 (0/0)\r\n"), "{body}");
    phone.answer(&notify, 200).await;
    server.stop().await;
}
