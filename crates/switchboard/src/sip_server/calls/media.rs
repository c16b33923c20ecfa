//! A call's media anchored at the relay (spec 01, "Media relay"): every SDP that
//! crosses the PBX tells the relay where the sending phone receives (and whether it
//! holds), and leaves pointing at the relay's ports facing the other phone. Only the
//! first audio stream is relayed; other streams are rejected (port 0) on the way.

use std::net::IpAddr;

use bytes::Bytes;
use switchboard_media::relay::Side;
use switchboard_relay::RelaySession;
use switchboard_sip::sdp::{Direction, SessionDescription};

use super::call::Leg;

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
    /// The codec of the last answer (first format of the relayed stream).
    pub codec: Option<String>,
    /// The last SDP each leg's phone sent, as it sent it: a transfer offers the
    /// remaining phone's to whoever takes the other's place.
    pub last_sdp: [Option<Bytes>; 2],
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
            .finish()
    }
}

/// Why an SDP cannot be relayed (answered 488).
#[derive(Debug)]
pub struct Unusable(pub String);

impl Media {
    pub fn new(session: RelaySession) -> Self {
        Self {
            session,
            holding: [false; 2],
            codec: None,
            last_sdp: [None, None],
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
    ) -> Result<(Bytes, SessionDescription), Unusable> {
        let original =
            SessionDescription::parse_bytes(body).map_err(|e| Unusable(format!("Bad SDP: {e}")))?;
        let mut sdp = original.clone();
        let stream = sdp
            .media
            .iter()
            .position(|m| m.media == "audio" && m.port != 0)
            .ok_or_else(|| Unusable("No audio stream to relay".into()))?;
        if let Some(offered) = offer.and_then(|o| o.media.get(stream))
            && !sdp.media[stream].keep_offered(offered)
        {
            return Err(Unusable("No codec in common".into()));
        }
        self.last_sdp[usize::from(from == Leg::B)] = Some(Bytes::copy_from_slice(body));
        let session_side = side(from);
        let address = sdp.media_address(stream);
        self.session.set_signalled(session_side, address);
        // RFC 3264 §8.4 (a=sendonly/inactive) and RFC 2543 (c=0.0.0.0) hold.
        let direction = sdp.media_direction(stream);
        let zero_address = sdp
            .connection_for(stream)
            .and_then(|c| c.ip_addr())
            .is_some_and(|ip| ip.is_unspecified());
        self.holding[usize::from(from == Leg::B)] =
            zero_address || matches!(direction, Direction::SendOnly | Direction::Inactive);
        self.session.set_on_hold(self.holding.iter().any(|h| *h));
        if offer.is_some() {
            let media = &sdp.media[stream];
            self.codec = media
                .formats
                .iter()
                .find_map(|f| media.codec_for(f))
                .map(|c| c.encoding);
        }
        let mut ports = vec![0u16; sdp.media.len()];
        ports[stream] = self.session.port(side(from.other()));
        sdp.anchor(towards, &ports);
        Ok((Bytes::from(sdp.to_string()), original))
    }
}
