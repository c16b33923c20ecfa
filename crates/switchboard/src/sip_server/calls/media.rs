//! A call's media anchored at the relay (spec 01, "Media relay"): every SDP that
//! crosses the PBX tells the relay where the sending phone receives (and whether it
//! holds), and leaves pointing at the relay's ports facing the other phone. Only the
//! first audio stream is relayed; other streams are rejected (port 0) on the way.

use std::net::IpAddr;

use bytes::Bytes;
use switchboard_media::relay::Side;
use switchboard_relay::RelaySession;
use switchboard_sip::sdp::{Direction, SessionDescription};

use super::browser::{self, BrowserLeg};
use super::call::Leg;
use switchboard_sip::transaction::TransactionKey;

/// The relay side facing `leg`'s phone.
pub fn side(leg: Leg) -> Side {
    match leg {
        Leg::A => Side::A,
        Leg::B => Side::B,
    }
}

pub struct Media {
    pub session: RelaySession,
    /// Whether each leg's last SDP put the call on hold.
    holding: [bool; 2],
    /// What the relay was last told, per side: only changes are sent to its thread.
    signalled: [Option<std::net::SocketAddr>; 2],
    on_hold: bool,
    /// The codec of the last answer (first format of the relayed stream).
    pub codec: Option<String>,
    /// The last SDP each leg's phone sent, as it sent it (a browser's as its gateway
    /// turned it to plain RTP): a transfer offers the remaining phone's to whoever
    /// takes the other's place.
    pub last_sdp: [Option<Bytes>; 2],
    /// The WebRTC gateway of a leg that is a browser phone.
    browser: [Option<BrowserLeg>; 2],
    /// Browsers rung with an offer of their own, by fork, until one answers.
    browser_forks: Vec<(TransactionKey, BrowserLeg)>,
    /// Gateways of browsers transferred away, kept for the rest of the call.
    departing: Vec<BrowserLeg>,
    settings: std::sync::Arc<browser::Settings>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("session", &self.session.id())
            .field(
                "ports",
                &(self.session.port(Side::A), self.session.port(Side::B)),
            )
            .field("holding", &self.holding)
            .field("codec", &self.codec)
            .field(
                "browser",
                &[self.browser[0].is_some(), self.browser[1].is_some()],
            )
            .finish()
    }
}

/// Why an SDP cannot be relayed (answered 488).
#[derive(Debug)]
pub struct Unusable(pub String);

impl Media {
    pub fn new(session: RelaySession, settings: std::sync::Arc<browser::Settings>) -> Self {
        Self {
            session,
            holding: [false; 2],
            signalled: [None; 2],
            on_hold: false,
            codec: None,
            last_sdp: [None, None],
            browser: [None, None],
            browser_forks: Vec::new(),
            departing: Vec::new(),
            settings,
        }
    }

    /// Our WebRTC offer for a browser rung as leg B (fork `key` once sent): the
    /// browser's own gateway, towards the relay's port facing leg B.
    pub fn offer_to_browser(&self, towards: IpAddr) -> Result<BrowserLeg, Unusable> {
        BrowserLeg::offer(&self.settings, towards, self.relay_addr(Leg::B)).map_err(Unusable)
    }

    /// Keeps the gateway of the browser rung by fork `key`.
    pub fn add_browser_fork(&mut self, key: TransactionKey, leg: BrowserLeg) {
        self.browser_forks.push((key, leg));
    }

    /// Fork `key` sent SDP: if it is a browser's, its gateway becomes leg B's (the
    /// other browsers' are let go once one answers).
    pub fn browser_fork_answers(&mut self, key: &TransactionKey, final_answer: bool) {
        if let Some(i) = self.browser_forks.iter().position(|(k, _)| k == key) {
            let (_, leg) = self.browser_forks.swap_remove(i);
            self.browser[1] = Some(leg);
        }
        if final_answer {
            self.browser_forks.clear();
        }
    }

    /// When `leg` is a browser whose media is not up yet: runs `then` once it is, and
    /// returns true.
    pub fn when_browser_connected(&self, leg: Leg, then: impl FnOnce() + Send + 'static) -> bool {
        self.browser[usize::from(leg == Leg::B)]
            .as_ref()
            .is_some_and(|b| b.when_connected(then))
    }

    /// `leg` is being transferred away: its browser's gateway, if any, keeps carrying
    /// its media until it is gone, but offers to whoever is rung in its place are
    /// plain.
    pub fn transferring(&mut self, leg: Leg) {
        if let Some(b) = self.browser[usize::from(leg == Leg::B)].take() {
            self.departing.push(b);
        }
    }

    /// The relay's port facing `leg`, as a gateway on this machine reaches it.
    fn relay_addr(&self, leg: Leg) -> std::net::SocketAddr {
        (std::net::Ipv4Addr::LOCALHOST, self.session.port(side(leg))).into()
    }

    /// A browser's WebRTC SDP from `from`, as plain RTP from its gateway: an offer gets
    /// a gateway (and our answer, kept for the browser), an answer completes ours.
    fn plain_from_browser(
        &mut self,
        from: Leg,
        body: &[u8],
        direction: Direction,
        towards: IpAddr,
    ) -> Result<Bytes, Unusable> {
        let relay = self.relay_addr(from);
        let slot = &mut self.browser[usize::from(from == Leg::B)];
        match slot {
            Some(leg) if leg.awaiting_answer => {
                leg.accept_answer(body, direction).map_err(Unusable)?;
                Ok(leg.plain_sdp.clone())
            }
            // The same offer relayed to another phone rung, the same answer again.
            Some(leg) if leg.remote_sdp.as_deref() == Some(body) => Ok(leg.plain_sdp.clone()),
            // A new offer in the call: hold or resume.
            Some(leg) => {
                leg.answer_again(body, direction).map_err(Unusable)?;
                Ok(leg.plain_sdp.clone())
            }
            None => {
                let leg =
                    BrowserLeg::answer(&self.settings, body, towards, relay).map_err(Unusable)?;
                let plain = leg.plain_sdp.clone();
                *slot = Some(leg);
                Ok(plain)
            }
        }
    }

    /// Takes the SDP `from` sent (`body`) and returns it for the other leg, pointed at
    /// the relay port facing it, with `towards` as the address. `offer`: when `body`
    /// is an answer, the offer it answers, whose codecs it is cut to.
    pub fn relay_sdp(
        &mut self,
        from: Leg,
        body: &[u8],
        towards: IpAddr,
        offer: Option<&SessionDescription>,
    ) -> Result<Bytes, Unusable> {
        let sdp = parse(body)?;
        self.relay(from, body, sdp, towards, offer)
    }

    /// [`Self::relay_sdp`] of `body` already parsed (`sdp`): leg A's offer, parsed once
    /// when the call starts and relayed to each phone rung, is copied rather than
    /// parsed again.
    pub fn relay_parsed(
        &mut self,
        from: Leg,
        body: &[u8],
        sdp: SessionDescription,
        towards: IpAddr,
    ) -> Result<Bytes, Unusable> {
        self.relay(from, body, sdp, towards, None)
    }

    /// [`Self::relay_sdp`] of an offer whose answer is to be cut to it: also returns
    /// the offer as the phone sent it. (Only then is the parsed SDP copied before it
    /// is rewritten: every call relays an offer and an answer.)
    pub fn relay_offer(
        &mut self,
        from: Leg,
        body: &[u8],
        towards: IpAddr,
    ) -> Result<(Bytes, SessionDescription), Unusable> {
        let original = parse(body)?;
        let anchored = self.relay(from, body, original.clone(), towards, None)?;
        Ok((anchored, original))
    }

    fn relay(
        &mut self,
        from: Leg,
        body: &[u8],
        sdp: SessionDescription,
        towards: IpAddr,
        offer: Option<&SessionDescription>,
    ) -> Result<Bytes, Unusable> {
        let to = usize::from(from != Leg::B);
        // Anchoring keeps it: the browser's own, or the one a browser is offered.
        let direction = audio_stream(&sdp).map_or(Direction::SendRecv, |i| sdp.media_direction(i));
        let anchored = if browser::is_webrtc(&sdp) {
            let plain = self.plain_from_browser(from, body, direction, towards)?;
            let sdp = parse(&plain)?;
            self.anchor(from, &plain, sdp, towards, offer)?
        } else {
            self.anchor(from, body, sdp, towards, offer)?
        };
        match &mut self.browser[to] {
            // A browser gets our WebRTC answer to its offer, not the plain one.
            Some(leg) if offer.is_some() => Ok(leg.local_sdp.clone()),
            // An offer towards a browser in the call (the other phone holds or
            // resumes): a new WebRTC offer of the same session, in that direction.
            Some(leg) => {
                if leg.offer_again(direction).map_err(Unusable)? {
                    Ok(leg.local_sdp.clone())
                } else {
                    Err(Unusable(
                        "Nothing changes for the browser phone in this call".into(),
                    ))
                }
            }
            None => Ok(anchored),
        }
    }

    fn anchor(
        &mut self,
        from: Leg,
        body: &[u8],
        mut sdp: SessionDescription,
        towards: IpAddr,
        offer: Option<&SessionDescription>,
    ) -> Result<Bytes, Unusable> {
        let stream =
            audio_stream(&sdp).ok_or_else(|| Unusable("No audio stream to relay".into()))?;
        if let Some(offered) = offer.and_then(|o| o.media.get(stream))
            && !sdp.media[stream].keep_offered(offered)
        {
            return Err(Unusable("No codec in common".into()));
        }
        self.last_sdp[usize::from(from == Leg::B)] = Some(Bytes::copy_from_slice(body));
        let address = sdp.media_address(stream);
        let slot = &mut self.signalled[usize::from(from == Leg::B)];
        if *slot != address {
            *slot = address;
            self.session.set_signalled(side(from), address);
        }
        // RFC 3264 §8.4 (a=sendonly/inactive) and RFC 2543 (c=0.0.0.0) hold.
        let direction = sdp.media_direction(stream);
        let zero_address = sdp
            .connection_for(stream)
            .and_then(|c| c.ip_addr())
            .is_some_and(|ip| ip.is_unspecified());
        self.holding[usize::from(from == Leg::B)] =
            zero_address || matches!(direction, Direction::SendOnly | Direction::Inactive);
        let on_hold = self.holding.iter().any(|h| *h);
        if on_hold != self.on_hold {
            self.on_hold = on_hold;
            self.session.set_on_hold(on_hold);
        }
        if offer.is_some() {
            let media = &sdp.media[stream];
            self.codec = media
                .formats
                .iter()
                .find_map(|f| media.codec_for(f))
                .map(|c| c.encoding.to_string());
        }
        let mut ports = vec![0u16; sdp.media.len()];
        ports[stream] = self.session.port(side(from.other()));
        sdp.anchor(towards, &ports);
        Ok(Bytes::from(switchboard_sip::text::render(&sdp, 512)))
    }
}

/// The stream relayed: the first audio one not refused.
fn audio_stream(sdp: &SessionDescription) -> Option<usize> {
    sdp.media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0)
}

fn parse(body: &[u8]) -> Result<SessionDescription, Unusable> {
    SessionDescription::parse_bytes(body).map_err(|e| Unusable(format!("Bad SDP: {e}")))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use switchboard_relay::{Relay, RelayConfig};

    use super::*;

    fn relay() -> Relay {
        Relay::start(RelayConfig {
            bind_ip: Ipv4Addr::LOCALHOST.into(),
            port_min: 42_000,
            port_max: 42_099,
            threads: 1,
        })
        .unwrap()
    }

    fn sdp(port: u16, formats: &str, extra: &str) -> String {
        let mut text = format!(
            "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n"
        );
        for f in formats.split(' ') {
            let name = match f {
                "0" => "PCMU/8000",
                "8" => "PCMA/8000",
                _ => "telephone-event/8000",
            };
            text.push_str(&format!("a=rtpmap:{f} {name}\r\n"));
        }
        text + extra
    }

    fn settings() -> std::sync::Arc<browser::Settings> {
        std::sync::Arc::new(browser::Settings {
            public_ip: None,
            bind_ip: Ipv4Addr::LOCALHOST.into(),
            port_min: 42_100,
            port_max: 42_199,
        })
    }

    const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));

    #[test]
    fn an_offer_leaves_pointed_at_the_port_facing_the_other_phone() {
        let relay = relay();
        let mut media = Media::new(relay.allocate().unwrap(), settings());
        let offer = sdp(4000, "0 8 101", "");
        let (out, original) = media.relay_offer(Leg::A, offer.as_bytes(), PBX).unwrap();
        assert_eq!(
            original,
            SessionDescription::parse(&offer).unwrap(),
            "as sent"
        );
        // The offer parsed once and relayed again (to another phone rung) is written
        // the same as when it is parsed there.
        let again = media
            .relay_parsed(Leg::A, offer.as_bytes(), original.clone(), PBX)
            .unwrap();
        assert_eq!(again, out);
        let out = SessionDescription::parse_bytes(&out).unwrap();
        assert_eq!(
            out.media_address(0),
            Some(std::net::SocketAddr::new(PBX, media.session.port(Side::B)))
        );
        assert_eq!(out.media[0].formats, ["0", "8", "101"]);
        assert!(media.last_sdp[0].is_some() && media.last_sdp[1].is_none());
    }

    #[test]
    fn answers_are_cut_to_the_offer_and_hold_is_seen() {
        let relay = relay();
        let mut media = Media::new(relay.allocate().unwrap(), settings());
        let offer = SessionDescription::parse(&sdp(4000, "0 101", "")).unwrap();
        // The answer names PCMA, which was not offered: only PCMU and events remain.
        let answer = sdp(5000, "8 0 101", "a=sendonly\r\n");
        let out = media
            .relay_sdp(Leg::B, answer.as_bytes(), PBX, Some(&offer))
            .unwrap();
        let out = SessionDescription::parse_bytes(&out).unwrap();
        assert_eq!(out.media[0].formats, ["0", "101"]);
        assert_eq!(media.codec.as_deref(), Some("PCMU"));
        assert_eq!(media.holding, [false, true]);
        // Resumed.
        media
            .relay_sdp(Leg::B, sdp(5000, "0", "").as_bytes(), PBX, None)
            .unwrap();
        assert_eq!(media.holding, [false, false]);
        // RFC 2543 hold: c=0.0.0.0.
        let zero = sdp(5000, "0", "").replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0");
        media.relay_sdp(Leg::A, zero.as_bytes(), PBX, None).unwrap();
        assert_eq!(media.holding, [true, false]);
    }

    #[test]
    fn unusable_sdp_is_refused_with_a_reason() {
        let relay = relay();
        let mut media = Media::new(relay.allocate().unwrap(), settings());
        let garbage = media.relay_sdp(Leg::A, b"v=0\r\nnonsense", PBX, None);
        assert!(garbage.unwrap_err().0.starts_with("Bad SDP"));
        let video = sdp(4000, "0", "").replace("m=audio", "m=video");
        let no_audio = media.relay_sdp(Leg::A, video.as_bytes(), PBX, None);
        assert_eq!(no_audio.unwrap_err().0, "No audio stream to relay");
        let offer = SessionDescription::parse(&sdp(4000, "0", "")).unwrap();
        let disjoint = media.relay_sdp(Leg::B, sdp(5000, "8", "").as_bytes(), PBX, Some(&offer));
        assert_eq!(disjoint.unwrap_err().0, "No codec in common");
    }
}
