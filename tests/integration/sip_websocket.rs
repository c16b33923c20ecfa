//! SIP over WebSocket (RFC 7118) at `/sip`: a browser-like phone registers with digest
//! auth, is reached through its connection (its Contact host is made up), and its
//! registration ends with the connection.

use reqwest::StatusCode;
use switchboard::config::SipTransport;
use switchboard_sip::{HeaderName, Message, Method};

use crate::harness::{TestDb, TestServer};
use crate::interop::{bindings, events_of, eventually};
use crate::sip_phone::{Phone, connect_sip_websocket};

const SECRET_2001: &str = "websocket-secret-2001";
const SECRET_2002: &str = "websocket-secret-2002";

async fn server() -> (TestServer, crate::harness::Client) {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    server
        .extension_with_secret(&admin, "2001", SECRET_2001)
        .await;
    server
        .extension_with_secret(&admin, "2002", SECRET_2002)
        .await;
    (server, admin)
}

fn http_addr(server: &TestServer) -> std::net::SocketAddr {
    server.server.as_ref().unwrap().http_addr
}

#[tokio::test]
async fn a_browser_phone_registers_over_websocket_and_takes_a_call() {
    let (server, _admin) = server().await;
    let mut browser = Phone::ws(http_addr(&server), "2001", SECRET_2001).await;
    let ok = browser.register(300).await;
    assert_eq!(ok.code(), Some(200), "{ok}");
    let rows = bindings(&server, "2001").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].transport, "ws");
    assert!(rows[0].contact_uri.contains(".invalid"), "{rows:?}");

    // A UDP phone calls it: the INVITE can only go down the WebSocket.
    let mut caller = Phone::udp(server.sip_addr(SipTransport::Udp), "2002", SECRET_2002).await;
    let calling = tokio::spawn(async move {
        let dialog = caller.call("2001").await;
        (caller, dialog)
    });
    let invite = loop {
        let m = browser.recv().await;
        if m.method() == Some(&Method::Invite) {
            break m;
        }
    };
    assert!(
        invite.to_string().contains(".invalid;transport=ws"),
        "the INVITE is for the browser's contact: {invite}"
    );
    let via = invite.header(&HeaderName::Via).unwrap_or_default();
    assert!(via.starts_with("SIP/2.0/WS "), "{via}");
    let mut ringing = Message::response_to(&invite, 180, None);
    ringing.push(HeaderName::ContentLength, "0");
    browser.send(&ringing).await;
    let mut answer = Message::response_to(&invite, 200, None);
    let to = format!("{};tag=browser1", invite.header(&HeaderName::To).unwrap());
    answer.set(HeaderName::To, to);
    answer.push(HeaderName::Contact, browser.contact());
    answer.set_body(
        "application/sdp",
        "v=0\r\no=browser 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            .to_owned(),
    );
    browser.send(&answer).await;
    let ack = browser.recv().await;
    assert_eq!(ack.method(), Some(&Method::Ack), "{ack}");
    let (mut caller, mut dialog) = calling.await.unwrap();

    // The caller hangs up; the BYE reaches the browser the same way.
    let via = caller.via();
    let mut bye = dialog.request(Method::Bye, &via, &caller.contact());
    bye.push(HeaderName::ContentLength, "0");
    caller.send(&bye).await;
    let bye = browser.recv().await;
    assert_eq!(bye.method(), Some(&Method::Bye), "{bye}");
    browser.answer(&bye, 200).await;
    let done = caller.recv().await;
    assert_eq!(done.code(), Some(200), "{done}");
    server.stop().await;
}

#[tokio::test]
async fn closing_the_socket_ends_the_registration_at_once() {
    let (server, _admin) = server().await;
    let mut browser = Phone::ws(http_addr(&server), "2001", SECRET_2001).await;
    assert_eq!(browser.register(3600).await.code(), Some(200));
    assert_eq!(bindings(&server, "2001").await.len(), 1);
    drop(browser);
    eventually("the binding to go", || async {
        bindings(&server, "2001").await.is_empty()
    })
    .await;
    let gone = events_of(&server, "extension.unregistered").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["reason"], "connection_closed");
    assert_eq!(gone[0]["transport"], "ws");
    server.stop().await;
}

#[tokio::test]
async fn a_restart_forgets_websocket_registrations_but_keeps_udp_ones() {
    let (server, _admin) = server().await;
    let mut browser = Phone::ws(http_addr(&server), "2001", SECRET_2001).await;
    assert_eq!(browser.register(3600).await.code(), Some(200));
    let mut desk = Phone::udp(server.sip_addr(SipTransport::Udp), "2002", SECRET_2002).await;
    assert_eq!(desk.register(3600).await.code(), Some(200));
    let server = server.restart().await;
    // The old process's sockets are gone: nothing could reach the browser any more.
    eventually("the WebSocket binding to go", || async {
        bindings(&server, "2001").await.is_empty()
    })
    .await;
    assert_eq!(bindings(&server, "2002").await.len(), 1);
    drop(browser);
    server.stop().await;
}

#[tokio::test]
async fn the_upgrade_needs_the_sip_subprotocol_and_webrtc_turned_on() {
    let (server, admin) = server().await;
    let http = http_addr(&server);
    let refused = connect_sip_websocket(http, None).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("an HTTP refusal: {refused:?}");
    };
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
    assert!(body.contains("sip_subprotocol_required"), "{body}");
    // A plain GET is no upgrade.
    let (status, body) = admin.get("/sip").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "not_a_websocket");
    server.stop().await;

    let off = TestServer::start_tweaked(TestDb::sqlite().await, |c| {
        c.features.webrtc.enabled = false;
    })
    .await;
    let refused = connect_sip_websocket(http_addr(&off), Some("sip"))
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("an HTTP refusal: {refused:?}");
    };
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    off.stop().await;
}
