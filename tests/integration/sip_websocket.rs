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

/// JsSIP in Chromium (`tests/browser/sip_websocket.test.mjs`) registers over `/sip` as
/// 2001 and calls 2002, which is not registered: the voicemail greeting plays to the
/// browser through the WebRTC gateway (about 8 s), and then Chromium's fake microphone
/// is recorded. Then a plain SIP phone here calls the browser, which answers: audio
/// both ways, checked on this side as decoded samples. Last, the browser calls the
/// auto attendant and presses 0 (RFC 4733 through the gateway): the operator's
/// voicemail takes its message.
#[tokio::test]
async fn jssip_in_chromium_calls_through_the_webrtc_gateway() {
    let browser_dir = crate::harness::repo_root().join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !browser_dir.join("node_modules/jssip").is_dir() || !std::path::Path::new(&chromium).exists()
    {
        return crate::harness::skip_or_fail("JsSIP (npm ci in tests/browser) or Chromium missing");
    }
    let (server, admin) = server().await;
    let mut node = tokio::process::Command::new("node")
        .args(["--test", "sip_websocket.test.mjs"])
        .current_dir(&browser_dir)
        .env("SIP_WS_URL", format!("ws://{}/sip", http_addr(&server)))
        .env("SIP_EXTENSION", "2001")
        .env("SIP_SECRET", SECRET_2001)
        .env("SIP_CALLEE", "2002")
        .env("SPEAK_SECONDS", "14")
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");

    // The browser's message, once it has hung up.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = admin.get("/api/voicemail/2002").await;
        if body["items"].as_array().is_some_and(|i| i.len() == 1) {
            break;
        }
        if let Ok(Some(status)) = node.try_wait() {
            panic!("the JsSIP test ended early: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no voicemail from the browser"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, body) = admin.get("/api/voicemail/2002").await;
    let message = &body["items"][0];
    assert_eq!(message["caller"], "2001", "{message}");
    let id = message["id"].as_str().unwrap();
    let (status, _, _, wav) = admin
        .get_bytes(&format!("/api/voicemail/2002/{id}/audio"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let samples = switchboard_media::wav::read(&wav).unwrap();
    let levels = crate::voicemail_phone::frame_levels(&samples);
    // Chromium's fake microphone beeps every second.
    let loud = levels.iter().filter(|&&l| l > 300.0).count();
    assert!(
        loud >= 5,
        "the browser's beeps are in the message: {} frames, {loud} loud",
        levels.len()
    );

    // 2002 calls the browser, which answers; each side hears the other.
    let mut caller = Phone::udp(server.sip_addr(SipTransport::Udp), "2002", SECRET_2002).await;
    let (heard, loud) = call_the_browser(&mut caller).await;
    assert!(heard > 100, "the caller heard the browser: {heard} packets");
    assert!(
        loud >= 5,
        "the browser's beeps reached the caller: {loud} loud frames"
    );
    let status = node.wait().await.unwrap();
    assert!(status.success(), "the JsSIP test failed");
    // Its key 0 took it from the auto attendant to the operator's voicemail.
    eventually("the message to the operator", || async {
        let (_, body) = admin.get("/api/voicemail/1001").await;
        body["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    let (_, body) = admin.get("/api/voicemail/1001").await;
    assert_eq!(body["items"][0]["caller"], "2001", "{body}");
    // The browser's registration ended with its socket.
    eventually("the browser's binding to go", || async {
        bindings(&server, "2001").await.is_empty()
    })
    .await;
    // Each call's gateway came up and is gone with its call.
    let metric = |text: &str, name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    eventually("the gateways to stop", || async {
        let (_, text) = admin.get_text("/metrics").await;
        metric(&text, "switchboard_webrtc_legs") == Some(0.0)
    })
    .await;
    let (_, text) = admin.get_text("/metrics").await;
    let connected = metric(&text, "switchboard_webrtc_connected_total").unwrap_or(0.0);
    assert!(
        connected >= 3.0,
        "three calls connected their media: {connected}"
    );
    let cdrs = admin.get("/api/cdr").await.1;
    let answered = cdrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["callee"] == "2001")
        .cloned();
    assert_eq!(
        answered.as_ref().map(|c| c["disposition"].clone()),
        Some("answered".into()),
        "{cdrs}"
    );
    server.stop().await;
}

/// Calls 2001 (the browser) from `caller` with real RTP: a tone out for 4 s while
/// counting what comes back. Returns the packets received and how many of their 20 ms
/// frames were loud.
async fn call_the_browser(caller: &mut Phone) -> (usize, usize) {
    use switchboard_media::g711::G711;
    use switchboard_media::rtp::{HEADER_LEN, RtpHeader};

    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = format!(
        "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    // The browser is registered again after its first call: wait for it to ring.
    let (invite, ok) = caller.invite("2001", &offer).await;
    assert_eq!(ok.code(), Some(200), "the browser answers: {ok}");
    let dialog = switchboard_sip::dialog::Dialog::as_uac(&invite, &ok).unwrap();
    let mut ack = dialog.ack(2, &caller.via());
    ack.push(HeaderName::ContentLength, "0");
    caller.send(&ack).await;
    let answer = switchboard_sip::sdp::SessionDescription::parse_bytes(&ok.body).unwrap();
    let relay = answer.media_address(0).expect("the relay's address");

    // A 1 kHz tone, 20 ms per packet, for 4 s, while reading what arrives.
    let tone: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * std::f64::consts::TAU / 8.0).sin() * 8000.0) as i16)
        .collect();
    let mut payload = Vec::new();
    G711::Ulaw.encode(&tone, &mut payload);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut buf = [0u8; 2048];
    let (mut heard, mut loud) = (0, 0);
    let mut decoded = Vec::new();
    let mut directions = Vec::new();
    for seq in 0..200u16 {
        tick.tick().await;
        let mut packet = [0u8; HEADER_LEN].to_vec();
        let header = RtpHeader {
            marker: seq == 0,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0x5eed,
        };
        header.write((&mut packet[..HEADER_LEN]).try_into().unwrap());
        packet.extend_from_slice(&payload);
        rtp.send_to(&packet, relay).await.unwrap();
        // The browser holds and resumes: its re-INVITEs are answered in kind.
        while let Some(m) = caller.try_recv(std::time::Duration::from_millis(1)).await {
            if m.method() != Some(&Method::Invite) {
                continue;
            }
            let text = String::from_utf8_lossy(&m.body).into_owned();
            let (theirs, ours) = if text.contains("a=sendonly") {
                ("sendonly", "recvonly")
            } else {
                ("sendrecv", "sendrecv")
            };
            directions.push(theirs);
            let mut ok = Message::response_to(&m, 200, None);
            ok.push(HeaderName::Contact, caller.contact());
            ok.set_body("application/sdp", format!("{offer}a={ours}\r\n"));
            caller.send(&ok).await;
        }
        while let Ok((n, _)) = rtp.try_recv_from(&mut buf) {
            let Some(body) = switchboard_media::rtp::payload(&buf[..n]) else {
                continue;
            };
            heard += 1;
            decoded.clear();
            G711::Ulaw.decode(body, &mut decoded);
            if crate::voicemail_phone::frame_levels(&decoded)
                .first()
                .is_some_and(|&l| l > 300.0)
            {
                loud += 1;
            }
        }
    }
    // Then this phone holds and resumes: the browser gets WebRTC re-offers and answers.
    let mut dialog = dialog;
    let mut answered = Vec::new();
    for direction in ["sendonly", "sendrecv"] {
        let via = caller.via();
        let mut reinvite = dialog.request(Method::Invite, &via, &caller.contact());
        reinvite.set_body("application/sdp", format!("{offer}a={direction}\r\n"));
        caller.send(&reinvite).await;
        let ok = loop {
            let m = caller.recv().await;
            if m.code().is_some_and(|c| c >= 200) {
                break m;
            }
        };
        assert_eq!(
            ok.code(),
            Some(200),
            "the browser takes the re-INVITE: {ok}"
        );
        let text = String::from_utf8_lossy(&ok.body).into_owned();
        answered.push(if text.contains("a=recvonly") {
            "recvonly"
        } else {
            "sendrecv"
        });
        let mut ack = dialog.ack(dialog.local_seq, &caller.via());
        ack.push(HeaderName::ContentLength, "0");
        caller.send(&ack).await;
    }
    assert_eq!(answered, ["recvonly", "sendrecv"], "the browser's answers");
    let via = caller.via();
    let mut bye = dialog.request(Method::Bye, &via, &caller.contact());
    bye.push(HeaderName::ContentLength, "0");
    caller.send(&bye).await;
    loop {
        let m = caller.recv().await;
        if m.code().is_some()
            && m.header(&HeaderName::CSeq)
                .is_some_and(|c| c.ends_with("BYE"))
        {
            break;
        }
    }
    assert_eq!(
        directions,
        ["sendonly", "sendrecv"],
        "the browser's hold and resume reached the caller"
    );
    (heard, loud)
}
