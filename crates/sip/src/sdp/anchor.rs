//! What a media relay does to the SDP it passes between two legs (RFC 3264 offer/answer
//! through a B2BUA): read where a leg receives, point the description at the relay's
//! ports instead, and keep in an answer only the codecs the offer had.

use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::{Attribute, MediaDescription, SessionDescription};

/// Attributes that name other paths than the relay's (ICE): dropped when anchoring,
/// since the relay is then the only path.
const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "remote-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "end-of-candidates",
];

impl SessionDescription {
    /// Where media section `index` receives RTP: its connection address and port.
    /// `None` for a rejected section (port 0), the RFC 2543 hold address `0.0.0.0`, a
    /// host name, or no such section.
    pub fn media_address(&self, index: usize) -> Option<SocketAddr> {
        let media = self.media.get(index)?;
        let ip = self.connection_for(index)?.ip_addr()?;
        (media.port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, media.port))
    }

    /// Points the description at the relay: every connection address becomes `ip`,
    /// media section `i` gets port `ports[i]` (RTCP on the next port, in `a=rtcp`
    /// when there was one), and ICE attributes go. Rejected sections (port 0) and
    /// sections without a port in `ports` stay rejected. The caller bumps the origin's
    /// version (`Origin::increment_version`) when the description changed.
    pub fn anchor(&mut self, ip: IpAddr, ports: &[u16]) {
        self.set_connection_address(ip);
        self.attributes
            .retain(|a| !ICE_ATTRIBUTES.contains(&a.name.as_str()));
        for (i, media) in self.media.iter_mut().enumerate() {
            media
                .attributes
                .retain(|a| !ICE_ATTRIBUTES.contains(&a.name.as_str()));
            let port = ports.get(i).copied().filter(|_| media.port != 0);
            media.port = port.unwrap_or(0);
            media.num_ports = None;
            match port {
                Some(p) => {
                    for a in media.attributes.iter_mut().filter(|a| a.name == "rtcp") {
                        *a = Attribute::with_value("rtcp", (u32::from(p) + 1).to_string());
                    }
                }
                None => media.attributes.retain(|a| a.name != "rtcp"),
            }
        }
    }
}

impl MediaDescription {
    /// Keeps in this section of an answer only the formats `offer` offered (the same
    /// codec, whatever its payload type number). False when nothing is left: the
    /// stream must then be rejected.
    pub fn keep_offered(&mut self, offer: &MediaDescription) -> bool {
        if !self.is_rtp() {
            return !self.formats.is_empty();
        }
        // Each side's rtpmaps parsed once, not once per pair of formats, into lists
        // that live on the stack for the usual handful of codecs.
        let offered: SmallVec<[super::Rtpmap; 8]> = offer
            .formats
            .iter()
            .filter_map(|f| offer.codec_for(f))
            .collect();
        let codecs: SmallVec<[Option<super::Rtpmap>; 8]> =
            self.formats.iter().map(|f| self.codec_for(f)).collect();
        let mut index = 0;
        self.retain_formats(|_| {
            let keep = codecs[index]
                .as_ref()
                .is_some_and(|codec| offered.iter().any(|o| o.same_codec(codec)));
            index += 1;
            keep
        });
        !self.formats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.168.1.10\r\ns=-\r\n\
        c=IN IP4 192.168.1.10\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8 9 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\na=rtcp:4001\r\na=candidate:1 1 UDP 2130706431 192.168.1.10 4000 typ host\r\n\
        a=ice-ufrag:abcd\r\na=sendrecv\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn a_leg_receives_where_its_sdp_says() {
        let sd = SessionDescription::parse(OFFER).unwrap();
        assert_eq!(
            sd.media_address(0),
            Some("192.168.1.10:4000".parse().unwrap())
        );
        assert_eq!(sd.media_address(1), None, "rejected video");
        assert_eq!(sd.media_address(2), None);
        let hold = OFFER.replace("c=IN IP4 192.168.1.10", "c=IN IP4 0.0.0.0");
        let sd = SessionDescription::parse(&hold).unwrap();
        assert_eq!(sd.media_address(0), None, "RFC 2543 hold");
    }

    #[test]
    fn anchoring_points_every_stream_at_the_relay() {
        let mut sd = SessionDescription::parse(OFFER).unwrap();
        sd.anchor("203.0.113.1".parse().unwrap(), &[30000, 30002]);
        let text = sd.to_string();
        assert!(text.contains("c=IN IP4 203.0.113.1\r\n"), "{text}");
        assert!(!text.contains("192.168.1.10 4000"), "{text}");
        assert!(
            text.contains("m=audio 30000 RTP/AVP 0 8 9 101\r\n"),
            "{text}"
        );
        assert!(text.contains("a=rtcp:30001\r\n"), "{text}");
        assert!(
            !text.contains("a=candidate") && !text.contains("a=ice-ufrag"),
            "{text}"
        );
        assert!(
            text.contains("m=video 0 RTP/AVP 96\r\n"),
            "a rejected stream stays so"
        );
        assert!(text.contains("a=fmtp:101 0-16\r\n") && text.contains("a=sendrecv\r\n"));
        assert_eq!(
            sd.media_address(0),
            Some("203.0.113.1:30000".parse().unwrap())
        );
        // What was written parses again.
        assert_eq!(SessionDescription::parse(&text).unwrap(), sd);
    }

    #[test]
    fn an_answer_keeps_only_offered_codecs_whatever_their_numbers() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        // The answerer (not following RFC 3264) adds G.729 and numbers the events 100.
        let mut answer = SessionDescription::parse(
            "v=0\r\no=bob 2 2 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 18 8 100\r\na=rtpmap:100 telephone-event/8000\r\n\
             a=fmtp:18 annexb=no\r\nm=video 0 RTP/AVP 96\r\n",
        )
        .unwrap();
        assert!(answer.media[0].keep_offered(&offer.media[0]));
        assert_eq!(answer.media[0].formats, ["8", "100"]);
        let text = answer.to_string();
        assert!(
            !text.contains("annexb"),
            "G.729's fmtp goes with it: {text}"
        );
        assert!(text.contains("a=rtpmap:100 telephone-event/8000"));
        // Nothing in common: the caller must reject the stream.
        let mut only_g729 = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 18\r\n",
        )
        .unwrap();
        assert!(!only_g729.media[0].keep_offered(&offer.media[0]));
    }
}
