//! Calls the PBX answers itself (voicemail, the auto attendant, feature codes): the
//! application is leg B, a socket of its own on the loopback address behind the
//! relay's B port, so leg A's media is anchored, latched and guarded as for any call
//! (docs/architecture.md, "Media application decisions").

use std::net::{Ipv4Addr, UdpSocket};

use bytes::Bytes;
use switchboard_sip::ByteString;

use switchboard_media::g711::G711;
use switchboard_media::relay::Side;
use tokio::sync::{oneshot, watch};

use super::*;
use crate::apps::{self, App, AppCall};

/// What an application speaks, chosen from leg A's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AppMedia {
    pub codec: G711,
    /// The offer's telephone-event payload type, for RFC 4733 digits.
    pub dtmf: Option<u8>,
}

impl AppMedia {
    /// The first G.711 codec of the offer's audio stream (the caller's preference),
    /// and its telephone-event format at 8 kHz if it has one.
    pub fn choose(offer: &SessionDescription) -> Option<Self> {
        let stream = offer
            .media
            .iter()
            .find(|m| m.media == "audio" && m.port != 0)?;
        let codec = stream.formats.iter().find_map(|f| {
            let map = stream.codec_for(f)?;
            if map.clock_rate != 8000 || map.channel_count() != 1 {
                return None;
            }
            match map.encoding.to_ascii_uppercase().as_str() {
                "PCMU" => Some(G711::Ulaw),
                "PCMA" => Some(G711::Alaw),
                _ => None,
            }
        })?;
        let dtmf = stream.formats.iter().find_map(|f| {
            let map = stream.codec_for(f)?;
            (map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == 8000)
                .then_some(map.payload_type)
        });
        Some(Self { codec, dtmf })
    }

    /// The SDP the application would answer with if it were a phone at `at`: the
    /// relay takes it as leg B's answer and rewrites it for leg A.
    pub fn answer_from(&self, at: SocketAddr) -> Bytes {
        let pt = self.codec.payload_type();
        let mut sdp = format!(
            "v=0\r\no=switchboard 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}",
            ip = at.ip(),
            port = at.port(),
        );
        if let Some(dtmf) = self.dtmf {
            sdp.push_str(&format!(" {dtmf}"));
        }
        sdp.push_str(&format!(
            "\r\na=rtpmap:{pt} {}/8000\r\n",
            self.codec.encoding_name()
        ));
        if let Some(dtmf) = self.dtmf {
            sdp.push_str(&format!(
                "a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-15\r\n"
            ));
        }
        sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
        Bytes::from(sdp)
    }
}

/// The application answering a call: dropping it (the call ended) tells the
/// application the caller is gone.
#[derive(Debug)]
pub struct AppLeg {
    /// Turned true when the call ends while the application runs.
    pub hangup: watch::Sender<bool>,
    /// How the call counts in its CDR once answered (`voicemail` for a deposit).
    pub disposition: Disposition,
    /// Its SDP as a phone's answer: a re-INVITE from the caller is answered with
    /// it again, cut to the new offer.
    answer: Bytes,
    /// Waits for the outcome of the transfer the application asked for.
    pub transfer: Option<oneshot::Sender<u16>>,
}

impl AppLeg {
    /// The application's transfer ended with `code` (200: connected).
    pub fn transfer_ended(&mut self, code: u16) {
        if let Some(outcome) = self.transfer.take() {
            let _ = outcome.send(code);
        }
    }
}

impl Engine {
    /// Stops ringing call `id`'s phones and answers it with `app` instead.
    pub(super) fn send_to_app(&mut self, id: u64, app: App, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let forks: Vec<Fork> = call.forks.drain(..).collect();
        for fork in forks {
            self.abandon(id, fork, now);
        }
        self.answer_with_app(id, app, now);
    }

    /// Answers call `id` with application `app` in place of a phone.
    fn answer_with_app(&mut self, id: u64, app: App, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // An INVITE without an offer would need the PBX to offer first; phones
        // calling services send one.
        let Some(chosen) = call.offer_sdp.as_ref().and_then(AppMedia::choose) else {
            let why = "This service needs an SDP offer with G.711 (PCMU or PCMA)";
            self.fail(id, 488, why, Disposition::Failed, now);
            return;
        };
        let socket = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no socket for a media application");
                self.fail(id, 503, "Service unavailable", Disposition::Failed, now);
                return;
            }
        };
        let Ok(at) = socket.local_addr() else {
            self.fail(id, 503, "Service unavailable", Disposition::Failed, now);
            return;
        };
        let towards = advertised(self.public_ip, &mut self.local_ips, &call.a.flow);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(media) = call.media.as_mut() else {
            return;
        };
        let answer = chosen.answer_from(at);
        // The caller's offer through the relay as for a phone: the relay learns where
        // the caller receives (latched at once, not after probation), and keeps the
        // offer for a transfer out of the application to ring the target with.
        if let (Some((_, offer)), Some(parsed)) = (&call.offer, &call.offer_sdp)
            && let Err(Unusable(why)) =
                media.relay_parsed(Leg::A, offer, parsed.clone(), Ipv4Addr::LOCALHOST.into())
        {
            self.fail(id, 488, &why, Disposition::Failed, now);
            return;
        }
        let body = match media.relay_sdp(Leg::B, &answer, towards, call.offer_sdp.as_ref()) {
            Ok(body) => body,
            Err(Unusable(why)) => {
                self.fail(id, 488, &why, Disposition::Failed, now);
                return;
            }
        };
        // The relay sends from the port it receives on, so the application hears
        // only that address.
        let peer = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), media.session.port(Side::B));
        let (hangup, hung_up) = watch::channel(false);
        call.app = Some(AppLeg {
            hangup,
            disposition: app.disposition(),
            answer,
            transfer: None,
        });
        call.phase = Phase::Answered;
        call.answered_at = Some(Timestamp::now());
        call.ring_deadline = None;
        let content_type = ByteString::from_static("application/sdp");
        let ok = call::response(
            &call.a_invite,
            200,
            None,
            &call.a,
            Some((content_type, body)),
        );
        let a_key = call.a_invite_key.clone();
        let seq = call.a.dialog.remote_seq.unwrap_or(0);
        let a_flow = call.a_reply.clone();
        let answered = active(call);
        let who = AppCall {
            engine_id: id,
            uuid: call.uuid,
            caller: call.caller.clone(),
            caller_name: call.caller_name.clone(),
            device: call.device.clone(),
            source: call.a.flow.remote.ip(),
        };
        self.core.calls.active.update(&call.uuid, |a| {
            a.state = answered.state;
            a.answered_at = answered.answered_at;
            a.media_ports = answered.media_ports;
        });
        let _ = self.records.send(CallEvent::Answered(answered));
        self.respond(&a_key, ok.clone(), now);
        self.expect_ack(id, Leg::A, &ok, a_flow, seq, now);
        self.schedule(now + self.media_check_every(), Timer::Media(id));
        let core = self.core.clone();
        tokio::spawn(async move {
            match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => {
                    let session = apps::session::MediaSession::new(
                        socket,
                        peer,
                        chosen.codec,
                        chosen.dtmf,
                        hung_up,
                    );
                    apps::run(&core, app, session, &who).await;
                }
                Err(e) => tracing::warn!(error = %e, "media application socket"),
            }
            core.calls.resume(&core, Command::AppDone(who.engine_id));
        });
    }

    /// A request of the caller within a call an application answers: there is no
    /// phone to pass it to, so the PBX answers it. A re-INVITE or UPDATE (hold,
    /// a new address) gets the application's SDP again, cut to the new offer.
    pub(super) fn app_request(
        &mut self,
        id: u64,
        key: &TransactionKey,
        req: &Message,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(app) = call.app.as_ref() else {
            return;
        };
        let offer = call::body_of(req).filter(|(content_type, _)| call::is_sdp(content_type));
        let (Some(media), Some((_, sdp))) = (call.media.as_mut(), offer) else {
            let resp = reply_in(call, Leg::A, req, 200, None);
            self.respond(key, resp, now);
            return;
        };
        let towards = advertised(self.public_ip, &mut self.local_ips, &call.a.flow);
        // The offer updates where the caller receives and whether it holds.
        let answered = media
            .relay_offer(Leg::A, &sdp, towards)
            .and_then(|(_, offer)| media.relay_sdp(Leg::B, &app.answer, towards, Some(&offer)));
        let resp = match answered {
            Ok(body) => {
                let content_type = ByteString::from_static("application/sdp");
                call::response(req, 200, None, &call.a, Some((content_type, body)))
            }
            Err(Unusable(why)) => reply_in(call, Leg::A, req, 488, Some(&why)),
        };
        let invite = req.method() == Some(&Method::Invite);
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let flow = match self.txs.get(key) {
            Some(t) => t.flow.clone(),
            None => call.a.flow.clone(),
        };
        self.respond(key, resp.clone(), now);
        if invite && resp.code() == Some(200) {
            self.expect_ack(id, Leg::A, &resp, flow, seq, now);
        }
    }

    /// The application answering call `id` connects its caller to `number`: a blind
    /// transfer in which the application is the referrer (leg B), so the target is
    /// rung with the caller's media and takes the application's place. The outcome
    /// goes to `outcome` instead of NOTIFYs (see `transfer.rs`).
    pub(super) fn app_transfer(
        &mut self,
        id: u64,
        number: String,
        outcome: oneshot::Sender<u16>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            let _ = outcome.send(481);
            return;
        };
        let Some(app) = call.app.as_mut() else {
            let _ = outcome.send(481);
            return;
        };
        if call.transfer.is_some() {
            let _ = outcome.send(491);
            return;
        }
        app.transfer = Some(outcome);
        self.start_blind(id, Leg::B, number, true, now);
    }

    /// An application has finished with call `id`: the caller is hung up, unless
    /// the call already ended (the caller hung up first) or moved on.
    pub(super) fn app_done(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.app.is_none() {
            return;
        }
        self.bye(id, Leg::A, now);
        self.end(id, Disposition::Answered, "service ended the call".into());
    }
}
