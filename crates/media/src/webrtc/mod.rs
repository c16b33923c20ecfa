//! The WebRTC side of the media gateway, sans-IO: one browser phone's audio, terminated
//! by the PBX and bridged without transcoding to the plain-RTP side of the call.
//!
//! A [`WebRtcPeer`] wraps one [`str0m::Rtc`] configured for what the PBX needs and no
//! more: ICE-lite (the server has a reachable address, one host candidate), DTLS-SRTP,
//! RTCP multiplexed on the RTP port, one audio m-line with PCMU, PCMA and RFC 4733
//! telephone-event/8000. str0m runs in RTP mode, so payloads pass through untouched in
//! both directions, keeping the browser's payload-type numbers (see [`Codec`] for
//! mapping them to the plain side's).
//!
//! The caller owns the UDP socket and the clock: it feeds datagrams to
//! [`WebRtcPeer::handle_datagram`], wakes at the [`Output::Timeout`] instant to call
//! [`WebRtcPeer::handle_timeout`], and after each call drains [`WebRtcPeer::poll`] until
//! it returns `Output::Timeout` (transmits go out on the socket, media to the bridge).
//!
//! [`Output::Connected`] is the moment the call may be answered: str0m reports it only
//! once ICE has a working pair **and** the DTLS handshake has finished and the SRTP keys
//! are derived. Before it, [`WebRtcPeer::send_rtp`] refuses with
//! [`WebRtcError::NotConnected`] and no media is received.

mod crypto;
mod sdp;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec as Str0mCodec, FormatParams};
pub use str0m::media::Direction;
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc, RtcConfig};

use crate::g711::G711;

/// The telephone-event payload type we offer (what browsers and most phones use is 101
/// or 126; when the browser offers, its own number is kept).
pub const OFFERED_TELEPHONE_EVENT_PT: u8 = 101;

/// An audio format the gateway passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// RFC 4733 telephone-event at 8000 Hz (DTMF).
    TelephoneEvent,
}

impl Codec {
    /// The G.711 law of an audio codec, `None` for telephone-event.
    pub fn g711(self) -> Option<G711> {
        match self {
            Self::Pcmu => Some(G711::Ulaw),
            Self::Pcma => Some(G711::Alaw),
            Self::TelephoneEvent => None,
        }
    }

    fn of(codec: Str0mCodec) -> Option<Self> {
        match codec {
            Str0mCodec::PCMU => Some(Self::Pcmu),
            Str0mCodec::PCMA => Some(Self::Pcma),
            Str0mCodec::Tele => Some(Self::TelephoneEvent),
            _ => None,
        }
    }
}

impl From<G711> for Codec {
    fn from(law: G711) -> Self {
        match law {
            G711::Ulaw => Self::Pcmu,
            G711::Alaw => Self::Pcma,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pcmu => "PCMU/8000",
            Self::Pcma => "PCMA/8000",
            Self::TelephoneEvent => "telephone-event/8000",
        })
    }
}

/// A codec both sides agreed on, with the payload type it travels under (the
/// browser's number when the browser offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedCodec {
    pub codec: Codec,
    pub payload_type: u8,
}

/// An RTP packet received from the browser, decrypted, header fields as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// What `payload_type` means in this session.
    pub codec: Codec,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// What the caller must do next (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `data` from the local socket `from` to `to`.
    Transmit {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Audio or a telephone-event from the browser.
    Media(RtpPacket),
    /// ICE and DTLS are up and SRTP is keyed: the call may be answered. Reported once.
    Connected,
    /// ICE lost the browser (its consent checks stopped coming): the call should be hung
    /// up. (Should the browser come back, media would resume without a new `Connected`.)
    Disconnected,
    /// The session ended: the browser closed DTLS, [`WebRtcPeer::close`] was called, or a
    /// fatal error. Reported once; the peer is inert afterwards.
    Closed,
    /// Nothing more to do until this instant (or the next datagram): then call
    /// [`WebRtcPeer::handle_timeout`].
    Timeout(Instant),
}

/// Why a WebRTC operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebRtcError {
    /// The SDP could not be parsed.
    Sdp(String),
    /// No usable audio m-line: none offered, or the answer rejected ours.
    NoAudio,
    /// No G.711 codec in common; carries what the other side offered or answered.
    NoCommonCodec(String),
    /// str0m refused the SDP (for instance no fingerprint, no ICE credentials, or both
    /// sides ICE-lite).
    Negotiation(String),
    /// [`WebRtcPeer::accept_answer`] without an outstanding offer.
    NoPendingOffer,
    /// The local address cannot be an ICE host candidate.
    Candidate(String),
    /// The DTLS certificate could not be made.
    Certificate(String),
    /// Media before [`Output::Connected`].
    NotConnected,
    /// Media with a codec the browser did not accept.
    CodecNotNegotiated(Codec),
    /// The browser does not receive audio in this session (its SDP made the audio
    /// send-only or inactive).
    NotSending,
    /// A datagram that does not belong to this peer (unknown source, not STUN with our
    /// credentials, or not a STUN/DTLS/RTP/RTCP datagram at all). Harmless: dropped.
    NotAccepted,
    /// str0m failed while handling input; the session goes on unless [`Output::Closed`]
    /// follows.
    Rtc(String),
    /// The session is closed.
    Closed,
}

impl fmt::Display for WebRtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sdp(why) => write!(f, "unreadable SDP: {why}"),
            Self::NoAudio => f.write_str("no usable audio m-line in the SDP"),
            Self::NoCommonCodec(offered) if offered.is_empty() => {
                f.write_str("no PCMU or PCMA in the SDP's audio")
            }
            Self::NoCommonCodec(offered) => {
                write!(f, "no PCMU or PCMA in the SDP's audio (it has {offered})")
            }
            Self::Negotiation(why) => write!(f, "SDP negotiation failed: {why}"),
            Self::NoPendingOffer => f.write_str("an SDP answer without an outstanding offer"),
            Self::Candidate(why) => write!(f, "unusable local ICE candidate: {why}"),
            Self::Certificate(why) => write!(f, "no DTLS certificate: {why}"),
            Self::NotConnected => f.write_str("media before ICE and DTLS are connected"),
            Self::CodecNotNegotiated(codec) => write!(f, "{codec} was not negotiated"),
            Self::NotSending => f.write_str("the browser does not receive audio"),
            Self::NotAccepted => f.write_str("a datagram that does not belong to this peer"),
            Self::Rtc(why) => write!(f, "WebRTC error: {why}"),
            Self::Closed => f.write_str("the WebRTC session is closed"),
        }
    }
}

impl std::error::Error for WebRtcError {}

/// One browser's audio session (see the module documentation).
pub struct WebRtcPeer {
    rtc: Rtc,
    /// The audio m-line: ours when we offer, the browser's first audio one when it does.
    mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    codecs: Vec<NegotiatedCodec>,
    outputs: VecDeque<Output>,
    timeout: Instant,
    connected: bool,
    closed: bool,
    /// Why str0m ended the session by itself, if it did.
    error: Option<String>,
    /// Highest extended sequence number sent (16-bit number plus rollover count, which
    /// SRTP needs and the plain side does not carry).
    last_sequence: Option<u64>,
}

impl fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("mid", &self.mid)
            .field("codecs", &self.codecs)
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WebRtcPeer {
    /// Answers a browser's offer (the browser calls). Only its first audio m-line is
    /// accepted (others are answered with port 0), and only PCMU, PCMA and
    /// telephone-event/8000 under the browser's payload types. `local` is the UDP
    /// address the browser must reach, our only (host) candidate.
    ///
    /// Errors ([`WebRtcError::NoAudio`], [`WebRtcError::NoCommonCodec`], …) mean the
    /// offer is not acceptable: answer the call attempt with 488.
    pub fn accept_offer(
        offer_sdp: &str,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), WebRtcError> {
        let narrowed = sdp::narrow_offer(offer_sdp)?;
        let offer = SdpOffer::from_sdp_string(&narrowed.sdp)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let mut peer = Self::new(local, now)?;
        peer.mid = Some(Mid::from(narrowed.mid.as_str()));
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        peer.drain();
        peer.negotiated()?;
        let answer = sdp::reject_in_answer(answer.to_sdp_string(), &narrowed.rejected);
        Ok((peer, answer))
    }

    /// Answers a new offer from the browser within the session (hold, resume): the same
    /// ICE and DTLS go on; only the first audio m-line is kept, as in
    /// [`WebRtcPeer::accept_offer`].
    pub fn accept_reoffer(&mut self, offer_sdp: &str) -> Result<String, WebRtcError> {
        if self.closed {
            return Err(WebRtcError::Closed);
        }
        let narrowed = sdp::narrow_offer(offer_sdp)?;
        let offer = SdpOffer::from_sdp_string(&narrowed.sdp)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let answer = self.rtc.sdp_api().accept_offer(offer);
        self.drain();
        let answer = answer.map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.negotiated()?;
        Ok(sdp::reject_in_answer(
            answer.to_sdp_string(),
            &narrowed.rejected,
        ))
    }

    /// Makes an offer for calling the browser: one send-receive audio m-line with PCMU,
    /// PCMA and telephone-event ([`OFFERED_TELEPHONE_EVENT_PT`]). The browser's answer
    /// goes to [`WebRtcPeer::accept_answer`].
    ///
    /// str0m lets an ICE-lite agent offer: it takes the controlled role and the
    /// browser, a full agent, controls and checks (RFC 8445 §6.1.1); only two lite
    /// agents are refused.
    pub fn offer(local: SocketAddr, now: Instant) -> Result<(Self, String), WebRtcError> {
        let mut peer = Self::new(local, now)?;
        let mut api = peer.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| WebRtcError::Negotiation("nothing to offer".into()))?;
        peer.mid = Some(mid);
        peer.pending = Some(pending);
        peer.drain();
        Ok((peer, offer.to_sdp_string()))
    }

    /// A new offer to the browser within the session, its audio now `direction` as
    /// seen from our side (the other phone holding: send-only; resuming: send-receive).
    /// The answer goes to [`WebRtcPeer::accept_answer`]. `None` when that is the
    /// direction already (str0m makes no offer without a change).
    pub fn reoffer(&mut self, direction: Direction) -> Result<Option<String>, WebRtcError> {
        if self.closed {
            return Err(WebRtcError::Closed);
        }
        let mid = self.mid.ok_or(WebRtcError::NoAudio)?;
        let mut api = self.rtc.sdp_api();
        api.set_direction(mid, direction);
        let Some((offer, pending)) = api.apply() else {
            return Ok(None);
        };
        self.pending = Some(pending);
        self.drain();
        Ok(Some(offer.to_sdp_string()))
    }

    /// Applies the browser's answer to [`WebRtcPeer::offer`]. The offer is used up even
    /// when the answer is refused (unless the answer could not be parsed at all).
    pub fn accept_answer(&mut self, answer_sdp: &str) -> Result<(), WebRtcError> {
        if self.closed {
            return Err(WebRtcError::Closed);
        }
        let answer =
            SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let pending = self.pending.take().ok_or(WebRtcError::NoPendingOffer)?;
        let result = self.rtc.sdp_api().accept_answer(pending, answer);
        self.drain();
        result.map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.negotiated()
    }

    /// Whether `data` from `from` to `to` belongs to this peer: STUN with our ICE
    /// credentials, or anything from the browser's address once ICE knows it. For
    /// demultiplexing several peers on one socket.
    pub fn accepts(&self, from: SocketAddr, to: SocketAddr, data: &[u8], now: Instant) -> bool {
        Receive::new(Protocol::Udp, from, to, data)
            .is_ok_and(|r| self.rtc.accepts(&Input::Receive(now, r)))
    }

    /// Hands over a datagram received on the local socket. Datagrams that are not this
    /// peer's give [`WebRtcError::NotAccepted`] and change nothing.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), WebRtcError> {
        if self.closed {
            return Err(WebRtcError::Closed);
        }
        let receive =
            Receive::new(Protocol::Udp, from, to, data).map_err(|_| WebRtcError::NotAccepted)?;
        let input = Input::Receive(now, receive);
        if !self.rtc.accepts(&input) {
            return Err(WebRtcError::NotAccepted);
        }
        let result = self.rtc.handle_input(input).map_err(|e| e.to_string());
        if let Err(why) = &result
            && !self.rtc.is_alive()
        {
            self.error.get_or_insert_with(|| why.clone());
        }
        self.drain();
        result.map_err(WebRtcError::Rtc)
    }

    /// Advances time: retransmissions, keepalives, RTCP reports, ICE consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(&e.to_string());
        }
        self.drain();
    }

    /// The next thing to do; `Output::Timeout` once there is nothing else.
    pub fn poll(&mut self) -> Output {
        self.outputs
            .pop_front()
            .unwrap_or(Output::Timeout(self.timeout))
    }

    /// Sends one RTP packet to the browser: audio, or a telephone-event, under the
    /// payload type negotiated for `codec`. The payload, timestamp and marker pass
    /// through as given; `sequence` is the plain side's, its rollovers are counted here
    /// for SRTP. `now` is the wallclock for the RTCP sender reports.
    pub fn send_rtp(
        &mut self,
        codec: Codec,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), WebRtcError> {
        if self.closed {
            return Err(WebRtcError::Closed);
        }
        if !self.is_connected() {
            return Err(WebRtcError::NotConnected);
        }
        let pt = self
            .payload_type(codec)
            .ok_or(WebRtcError::CodecNotNegotiated(codec))?;
        let mid = self.mid.ok_or(WebRtcError::NotSending)?;
        let extended = extend_sequence(self.last_sequence, sequence);
        let mut api = self.rtc.direct_api();
        let stream = api
            .stream_tx_by_mid(mid, None)
            .ok_or(WebRtcError::NotSending)?;
        stream.write_rtp(
            RtpWrite::new(
                Pt::from(pt),
                extended.into(),
                timestamp,
                now,
                payload.to_vec(),
            )
            .marker(marker),
        );
        self.last_sequence = Some(self.last_sequence.map_or(extended, |l| l.max(extended)));
        self.drain();
        Ok(())
    }

    /// Whether ICE, DTLS and SRTP are up (from [`Output::Connected`] on, until a
    /// disconnection or close).
    pub fn is_connected(&self) -> bool {
        self.connected && !self.closed && self.rtc.is_connected()
    }

    /// The codecs of the session, in the order of the browser's SDP; empty until the
    /// SDP exchange is complete.
    pub fn codecs(&self) -> &[NegotiatedCodec] {
        &self.codecs
    }

    /// The payload type of `codec` in this session, if negotiated.
    pub fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.codec == codec)
            .map(|c| c.payload_type)
    }

    /// Why the session ended by itself (before [`Output::Closed`]), e.g. a DTLS failure
    /// or a certificate that does not match the SDP's fingerprint. `None` while it runs
    /// and after an orderly close.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Ends the session: RTCP BYE and DTLS close_notify are queued as transmits, then
    /// [`Output::Closed`].
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        if let Err(e) = self.rtc.close() {
            self.fail(&e.to_string());
        }
        self.drain();
    }

    fn new(local: SocketAddr, now: Instant) -> Result<Self, WebRtcError> {
        let candidate =
            Candidate::host(local, "udp").map_err(|e| WebRtcError::Candidate(e.to_string()))?;
        let cert = crypto::generate_certificate().map_err(WebRtcError::Certificate)?;
        let mut config = RtcConfig::new()
            .set_crypto_provider(crypto::provider())
            .set_dtls_cert(cert)
            .set_ice_lite(true)
            // Payloads in and out as they are: no depacketising, no jitter buffer.
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false);
        config.codec_config().add_config(
            Pt::from(OFFERED_TELEPHONE_EVENT_PT),
            None,
            Str0mCodec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = config.build(now);
        if rtc.add_local_candidate(candidate).is_none() {
            return Err(WebRtcError::Candidate(format!("{local} refused")));
        }
        let mut peer = Self {
            rtc,
            mid: None,
            pending: None,
            codecs: Vec::new(),
            outputs: VecDeque::new(),
            timeout: now,
            connected: false,
            closed: false,
            error: None,
            last_sequence: None,
        };
        peer.drain();
        Ok(peer)
    }

    /// Reads the codecs of the audio m-line after an SDP exchange; no G.711 is an error.
    fn negotiated(&mut self) -> Result<(), WebRtcError> {
        let media = self.mid.and_then(|mid| self.rtc.media(mid));
        let Some(media) = media.filter(|m| m.kind() == MediaKind::Audio && !m.disabled()) else {
            return Err(WebRtcError::NoAudio);
        };
        let config = self.rtc.codec_config();
        self.codecs = media
            .remote_pts()
            .iter()
            .filter_map(|&pt| {
                let params = config.find(|p| p.pt() == pt)?;
                Some(NegotiatedCodec {
                    codec: Codec::of(params.spec().codec)?,
                    payload_type: *pt,
                })
            })
            .collect();
        if self.codecs.iter().any(|c| c.codec.g711().is_some()) {
            Ok(())
        } else {
            Err(WebRtcError::NoCommonCodec(String::new()))
        }
    }

    /// Runs str0m until it only has a timeout to give, queueing what it produced. str0m
    /// requires this after every mutation (its "single-mutation invariant"), so every
    /// public mutating call ends here and the caller cannot get it wrong.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(str0m::Output::Timeout(at)) => {
                    self.timeout = at;
                    break;
                }
                Ok(str0m::Output::Transmit(t)) => self.outputs.push_back(Output::Transmit {
                    from: t.source,
                    to: t.destination,
                    data: t.contents.into(),
                }),
                Ok(str0m::Output::Event(event)) => self.on_event(event),
                // The disconnected Rtc answers the next poll with a far timeout.
                Err(e) => self.fail(&e.to_string()),
            }
        }
        if !self.rtc.is_alive() && !self.closed {
            self.closed = true;
            self.outputs.push_back(Output::Closed);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            // Reported once.
            Event::Connected if !self.connected => {
                self.connected = true;
                self.outputs.push_back(Output::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.outputs.push_back(Output::Disconnected);
            }
            Event::RtpPacket(packet) => {
                let pt = packet.header.payload_type;
                // Only what was negotiated: the bridge maps these numbers.
                let Some(negotiated) = self.codecs.iter().find(|c| c.payload_type == *pt) else {
                    return;
                };
                self.outputs.push_back(Output::Media(RtpPacket {
                    codec: negotiated.codec,
                    payload_type: *pt,
                    sequence: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    ssrc: *packet.header.ssrc,
                    payload: packet.payload.to_vec(),
                }));
            }
            Event::Closed => {
                self.closed = true;
                self.outputs.push_back(Output::Closed);
            }
            _ => {}
        }
    }

    /// An error from str0m's output or timers is fatal for the session (str0m has
    /// usually disconnected itself already: DTLS failure, fingerprint mismatch).
    fn fail(&mut self, why: &str) {
        self.error.get_or_insert_with(|| why.to_owned());
        self.rtc.disconnect();
    }
}

/// Extends a 16-bit sequence number to the 64-bit index nearest the highest sent
/// (RFC 3711 §3.3.1's estimate, which the browser's SRTP makes too).
fn extend_sequence(last: Option<u64>, sequence: u16) -> u64 {
    let Some(last) = last else {
        return u64::from(sequence);
    };
    let base = last & !0xffff;
    [
        base.checked_sub(0x1_0000),
        Some(base),
        base.checked_add(0x1_0000),
    ]
    .into_iter()
    .flatten()
    .map(|b| b | u64::from(sequence))
    .min_by_key(|candidate| candidate.abs_diff(last))
    .unwrap_or(u64::from(sequence))
}
