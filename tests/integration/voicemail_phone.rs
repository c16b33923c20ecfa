//! Voicemail by phone, with real peers: a SIPp caller whose call the PBX's voicemail
//! answers hears the greeting and leaves spoken audio (SIPp's g711a.pcap), which must
//! be in the stored message; the CDR and the event say so.

use std::time::Duration;

use reqwest::StatusCode;
use switchboard::apps::prompts::Prompts;
use switchboard::config::SipTransport;

use crate::interop::{
    SECRET_2001, Sipp, events_of, eventually, installed, quick_timers, server_with,
};

/// Root mean square of 20 ms frames.
pub(crate) fn frame_levels(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(160)
        .map(|f| {
            let sum: f64 = f.iter().map(|&s| f64::from(s).powi(2)).sum();
            (sum / f.len() as f64).sqrt()
        })
        .collect()
}

#[tokio::test]
async fn sipp_caller_leaves_a_voicemail_for_an_unregistered_extension() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    // The caller waits out the default greeting for 2002 and the tone.
    let prompts = Prompts::english().unwrap();
    let greeting: usize = [
        "vm-person-at-extension",
        "digit-2",
        "digit-0",
        "digit-0",
        "digit-2",
        "vm-not-available",
        "beep",
    ]
    .iter()
    .map(|p| prompts.get(p).len())
    .sum();
    let greeting_ms = greeting as u64 / 8;
    Sipp::new(
        "call_caller_voicemail.xml",
        server.sip_addr(SipTransport::Udp),
        "2002",
    )
    .auth("2001", SECRET_2001)
    .key("caller", "2001")
    .media()
    .pause_ms(greeting_ms + 300)
    .timeout(60)
    .passes()
    .await;

    eventually("the message is stored", || async {
        let (_, body) = admin.get("/api/voicemail/2002").await;
        body["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    let (_, body) = admin.get("/api/voicemail/2002").await;
    let message = &body["items"][0];
    assert_eq!(message["caller"], "2001", "{message}");
    let id = message["id"].as_str().unwrap();

    let (status, content_type, _, wav) = admin
        .get_bytes(&format!("/api/voicemail/2002/{id}/audio"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("audio/wav"));
    let samples = switchboard_media::wav::read(&wav).unwrap();
    // From the tone to the BYE: the 0.3 s wait, the pcap (7.05 s as captured; SIPp
    // paces it by its own clock), a second of silence.
    let length = Duration::from_millis(samples.len() as u64 / 8);
    let levels = frame_levels(&samples);
    let profile: Vec<u32> = levels
        .chunks(25)
        .map(|c| (c.iter().sum::<f64>() / c.len() as f64) as u32)
        .collect();
    let context = format!("{length:?}; mean level per half second: {profile:?}");
    assert!(
        length >= Duration::from_millis(7_500) && length <= Duration::from_secs(13),
        "{context}"
    );
    assert!(
        levels[..10].iter().all(|&l| l < 100.0),
        "the recording starts after the tone, before the speech: {context}"
    );
    let loud: Vec<usize> = (0..levels.len()).filter(|&i| levels[i] > 300.0).collect();
    assert!(loud.len() >= 100, "at least 2 s of speech: {context}");
    let span = (loud[loud.len() - 1] - loud[0]) * 20;
    assert!(
        span >= 6_000,
        "the speech spans the pcap, {span} ms: {context}"
    );
    assert!(
        levels[levels.len() - 25..].iter().all(|&l| l < 100.0),
        "the last half second is the silence after the speech: {context}"
    );

    let cdr = eventually("the CDR", || async {
        let (_, body) = admin.get("/api/cdr").await;
        body["items"].as_array().is_some_and(|i| !i.is_empty())
    });
    cdr.await;
    let (_, body) = admin.get("/api/cdr").await;
    assert_eq!(body["items"][0]["disposition"], "voicemail", "{body}");
    let received = events_of(&server, "voicemail.received").await;
    assert_eq!(received.len(), 1, "{received:?}");
}

#[tokio::test]
async fn sipp_owner_dials_star_97_keys_in_the_pin_and_hears_the_new_message() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(quick_timers).await;
    let (status, body) = admin
        .put(
            "/api/voicemail/2002/pin",
            serde_json::json!({"pin": "2580"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let vm = &server.server.as_ref().unwrap().app.voicemail;
    let message: Vec<i16> = (0..3 * 8000)
        .map(|i| ((f64::from(i) * 0.3).sin() * 6000.0) as i16)
        .collect();
    let left = vm.deposit("2002", "2001", "Ada", &message).await.unwrap();

    // After the 1: the count, "Message one" and the message; then a margin.
    let prompts = Prompts::english().unwrap();
    let heard: usize = [
        "vm-you-have",
        "digit-1",
        "vm-new-message",
        "vm-message",
        "digit-1",
    ]
    .iter()
    .map(|p| prompts.get(p).len())
    .sum::<usize>()
        + message.len();
    Sipp::new(
        "call_caller_voicemail_listen.xml",
        server.sip_addr(SipTransport::Udp),
        "*97",
    )
    .auth("2002", crate::interop::SECRET_2002)
    .key("caller", "2002")
    .media()
    .pause_ms(heard as u64 / 8 + 1_500)
    .timeout(60)
    .passes()
    .await;

    // The PIN was taken, 1 chose the new messages, and the message was heard to its
    // end: it is saved now.
    let read = vm.get("2002", left.id).await.unwrap();
    assert_eq!(
        read.folder,
        switchboard::features::voicemail::Folder::Saved,
        "{read:?}"
    );
    let events = events_of(&server, "voicemail.read").await;
    assert_eq!(events.len(), 1, "{events:?}");
    eventually("the CDR", || async {
        let (_, body) = admin.get("/api/cdr").await;
        body["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let (_, body) = admin.get("/api/cdr").await;
    assert_eq!(body["items"][0]["callee"], "*97", "{body}");
    assert_eq!(body["items"][0]["disposition"], "answered", "{body}");
}
