//! A browser phone's leg of a call (spec 03, "Media"): the PBX terminates its WebRTC
//! (ICE-lite, DTLS-SRTP, `switchboard_media::webrtc`) and speaks plain RTP to the relay
//! from a loopback socket, so to the rest of the call the browser looks like any phone
//! whose SDP points at that socket. G.711 and telephone-events pass through under the
//! browser's payload numbers, which the plain SDP reuses: nothing is transcoded or
//! renumbered.
//!
//! One task per browser leg owns its two sockets and drives the peer; the call engine
//! reaches the peer (to give it the browser's answer) through a mutex the task takes
//! only briefly per packet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use switchboard_media::rtp::{self, HEADER_LEN, RtpHeader};
use switchboard_media::webrtc::{self, Codec, Output, WebRtcPeer};
use switchboard_sip::sdp::{Direction, SessionDescription};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Where browsers' media sockets are bound and what address their candidates give.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `features.webrtc.public_address`: put in candidates instead of the local address.
    pub public_ip: Option<IpAddr>,
    pub bind_ip: IpAddr,
    /// `rtp.port_min` / `rtp.port_max`: the browser side takes its port from the same range
    /// as the relay, so one firewall rule covers both.
    pub port_min: u16,
    pub port_max: u16,
}

/// `features.webrtc.public_address` as an IP address: itself, or a host name resolved
/// once at start (the candidates of every call give it); `None`, logged, when it does
/// not resolve.
pub fn resolve(address: &str) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = address.parse() {
        return Some(ip);
    }
    let found = (address, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut all| all.find(|a| a.is_ipv4()).or_else(|| all.next()))
        .map(|a| a.ip());
    if found.is_none() {
        tracing::warn!(%address, "features.webrtc.public_address does not resolve; browsers get the local address");
    }
    found
}

/// Whether `sdp`'s first audio stream is WebRTC's (DTLS-SRTP), which only a browser
/// sends.
pub fn is_webrtc(sdp: &SessionDescription) -> bool {
    sdp.media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)
        .is_some_and(|m| m.proto.contains("TLS") || m.proto.ends_with("SAVPF"))
}

/// Run once the browser's media is connected.
type OnConnected = Box<dyn FnOnce() + Send>;

struct Shared {
    peer: Mutex<WebRtcPeer>,
    /// The task has something new to poll (an answer applied) or should stop.
    wake: Notify,
    closed: AtomicBool,
    /// `Some(..)` while someone waits for ICE and DTLS; the flag says they are up.
    connected: Mutex<(bool, Option<OnConnected>)>,
}

/// One browser leg's gateway. Dropping it ends the task and frees its sockets.
pub struct BrowserLeg {
    shared: Arc<Shared>,
    /// Our WebRTC SDP for the browser: the answer to its offer, or our offer to it.
    pub local_sdp: Bytes,
    /// The plain SDP the rest of the call sees: the loopback socket, the browser's
    /// codecs under its numbers.
    pub plain_sdp: Bytes,
    /// The browser's SDP as it sent it: the same offer relayed to several phones, or an
    /// answer repeated from early media in the 200, is converted once.
    pub remote_sdp: Option<Bytes>,
    /// We offered and the browser has not answered yet.
    pub awaiting_answer: bool,
    plain_addr: SocketAddr,
}

impl Drop for BrowserLeg {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl BrowserLeg {
    /// The browser offered (it calls): answers it. `towards` is our address as the
    /// browser reaches us; `relay` the relay's port facing this leg.
    pub fn answer(
        settings: &Settings,
        offer: &[u8],
        towards: IpAddr,
        relay: SocketAddr,
    ) -> Result<Self, String> {
        let text = std::str::from_utf8(offer).map_err(|_| "SDP is not UTF-8".to_owned())?;
        let bound = bind_browser_socket(settings, towards)?;
        let (peer, answer) = WebRtcPeer::accept_offer(text, bound.1, Instant::now())
            .map_err(|e| format!("WebRTC offer refused: {e}"))?;
        let mut leg = Self::start(peer, answer, bound, relay)?;
        leg.remote_sdp = Some(Bytes::copy_from_slice(offer));
        Ok(leg)
    }

    /// We call the browser: our offer, to be answered with [`Self::accept_answer`].
    pub fn offer(settings: &Settings, towards: IpAddr, relay: SocketAddr) -> Result<Self, String> {
        let bound = bind_browser_socket(settings, towards)?;
        let (peer, offer) = WebRtcPeer::offer(bound.1, Instant::now())
            .map_err(|e| format!("WebRTC offer not made: {e}"))?;
        let mut leg = Self::start(peer, offer, bound, relay)?;
        leg.awaiting_answer = true;
        Ok(leg)
    }

    /// A new offer from the browser in the call (hold, resume): answered by the same
    /// peer; the plain SDP then carries the browser's direction, which the relay and
    /// the other phone take as hold or resume.
    pub fn answer_again(&mut self, offer: &[u8], direction: Direction) -> Result<(), String> {
        let text = std::str::from_utf8(offer).map_err(|_| "SDP is not UTF-8".to_owned())?;
        let (answer, plain) = {
            let mut peer = lock(&self.shared);
            let answer = peer
                .accept_reoffer(text)
                .map_err(|e| format!("WebRTC offer refused: {e}"))?;
            (answer, plain_sdp(&peer, self.plain_addr, direction))
        };
        self.local_sdp = Bytes::from(answer);
        self.plain_sdp = plain;
        self.remote_sdp = Some(Bytes::copy_from_slice(offer));
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Our new offer within the call (the other phone holds or resumes): `false`
    /// when the browser's audio is that way already, so there is nothing to offer.
    pub fn offer_again(&mut self, direction: Direction) -> Result<bool, String> {
        let offer = {
            let mut peer = lock(&self.shared);
            peer.reoffer(match direction {
                Direction::SendRecv => webrtc::Direction::SendRecv,
                Direction::SendOnly => webrtc::Direction::SendOnly,
                Direction::RecvOnly => webrtc::Direction::RecvOnly,
                Direction::Inactive => webrtc::Direction::Inactive,
            })
            .map_err(|e| format!("no WebRTC offer: {e}"))?
        };
        let Some(offer) = offer else {
            return Ok(false);
        };
        self.local_sdp = Bytes::from(offer);
        self.awaiting_answer = true;
        self.shared.wake.notify_one();
        Ok(true)
    }

    /// The browser's answer to our offer; the plain SDP then names its codecs.
    pub fn accept_answer(&mut self, answer: &[u8], direction: Direction) -> Result<(), String> {
        let text = std::str::from_utf8(answer).map_err(|_| "SDP is not UTF-8".to_owned())?;
        let plain = {
            let mut peer = lock(&self.shared);
            peer.accept_answer(text)
                .map_err(|e| format!("WebRTC answer refused: {e}"))?;
            plain_sdp(&peer, self.plain_addr, direction)
        };
        self.plain_sdp = plain;
        self.remote_sdp = Some(Bytes::copy_from_slice(answer));
        self.awaiting_answer = false;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Runs `then` once ICE and DTLS are up (from the gateway's task) and returns
    /// true; false, without keeping it, when they are up already.
    pub fn when_connected(&self, then: impl FnOnce() + Send + 'static) -> bool {
        let mut state = self
            .shared
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 {
            return false;
        }
        state.1 = Some(Box::new(then));
        true
    }

    fn start(
        peer: WebRtcPeer,
        local_sdp: String,
        (browser_socket, candidate): (std::net::UdpSocket, SocketAddr),
        relay: SocketAddr,
    ) -> Result<Self, String> {
        let plain_socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("no loopback socket for the browser's media: {e}"))?;
        let plain_addr = plain_socket
            .local_addr()
            .map_err(|e| format!("loopback socket: {e}"))?;
        let plain_sdp = plain_sdp(&peer, plain_addr, Direction::SendRecv);
        let shared = Arc::new(Shared {
            peer: Mutex::new(peer),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            connected: Mutex::new((false, None)),
        });
        for s in [&browser_socket, &plain_socket] {
            s.set_nonblocking(true)
                .map_err(|e| format!("media socket: {e}"))?;
        }
        let browser_socket = UdpSocket::from_std(browser_socket).map_err(|e| e.to_string())?;
        let plain_socket = UdpSocket::from_std(plain_socket).map_err(|e| e.to_string())?;
        let task_shared = shared.clone();
        metrics::gauge!("switchboard_webrtc_legs").increment(1.0);
        tokio::spawn(async move {
            run(task_shared, browser_socket, plain_socket, relay, candidate).await;
            metrics::gauge!("switchboard_webrtc_legs").decrement(1.0);
        });
        Ok(Self {
            shared,
            local_sdp: Bytes::from(local_sdp),
            plain_sdp,
            remote_sdp: None,
            awaiting_answer: false,
            plain_addr,
        })
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, WebRtcPeer> {
    // A panic while holding it cannot leave the peer half-updated in a way that
    // matters more than losing the call's media; carry on with it.
    shared
        .peer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A UDP socket in the RTP port range for the browser's side, and the address its ICE
/// candidate gives.
fn bind_browser_socket(
    settings: &Settings,
    towards: IpAddr,
) -> Result<(std::net::UdpSocket, SocketAddr), String> {
    let span = u32::from(settings.port_max.saturating_sub(settings.port_min)) + 1;
    let start: u32 = rand::random::<u32>() % span;
    // The relay holds most of the range in pairs: a few tries find a free port.
    for i in 0..span.min(64) {
        let port = settings.port_min + ((start + i) % span) as u16;
        if let Ok(socket) = std::net::UdpSocket::bind((settings.bind_ip, port)) {
            let ip = settings.public_ip.unwrap_or(towards);
            return Ok((socket, SocketAddr::new(ip, port)));
        }
    }
    Err("no free port for the browser's media (rtp.port_min, rtp.port_max)".into())
}

/// The plain side's SDP: the loopback socket, the negotiated codecs under their numbers,
/// the browser's direction.
fn plain_sdp(peer: &WebRtcPeer, at: SocketAddr, direction: Direction) -> Bytes {
    let codecs = peer.codecs();
    let mut formats = String::new();
    let mut maps = String::new();
    for c in codecs {
        formats.push(' ');
        formats.push_str(&c.payload_type.to_string());
        maps.push_str(&format!("a=rtpmap:{} {}\r\n", c.payload_type, c.codec));
        if c.codec == Codec::TelephoneEvent {
            maps.push_str(&format!("a=fmtp:{} 0-16\r\n", c.payload_type));
        }
    }
    let ip = at.ip();
    let direction = match direction {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    };
    Bytes::from(format!(
        "v=0\r\no=- {port} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP{formats}\r\n{maps}a=ptime:20\r\na={direction}\r\n",
        port = at.port()
    ))
}

/// Moves packets both ways until the leg is dropped or the browser goes away.
/// `candidate`: the address our ICE candidate gives (datagrams are handed to the peer
/// as sent there, which a wildcard or NATed socket does not say).
async fn run(
    shared: Arc<Shared>,
    browser: UdpSocket,
    plain: UdpSocket,
    relay: SocketAddr,
    candidate: SocketAddr,
) {
    let ssrc: u32 = rand::random();
    let mut from_browser = vec![0u8; 2048];
    let mut from_relay = vec![0u8; 2048];
    let mut towards_relay = Vec::with_capacity(HEADER_LEN + 1024);
    loop {
        if shared.closed.load(Ordering::Acquire) {
            lock(&shared).close();
            let _ = drain(&shared, &browser, &plain, relay, ssrc, &mut towards_relay);
            return;
        }
        let Some((deadline, connected)) =
            drain(&shared, &browser, &plain, relay, ssrc, &mut towards_relay)
        else {
            return;
        };
        if connected {
            // Outside the peer's lock: the call engine takes it while it holds its own.
            let then = {
                let mut state = shared
                    .connected
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                state.0 = true;
                state.1.take()
            };
            if let Some(then) = then {
                then();
            }
        }
        tokio::select! {
            got = browser.recv_from(&mut from_browser) => {
                let Ok((n, from)) = got else { continue };
                let mut peer = lock(&shared);
                let data = &from_browser[..n];
                if peer.accepts(from, candidate, data, Instant::now()) {
                    let _ = peer.handle_datagram(from, candidate, data, Instant::now());
                }
            }
            got = plain.recv_from(&mut from_relay) => {
                let Ok((n, from)) = got else { continue };
                if from != relay {
                    continue;
                }
                let packet = &from_relay[..n];
                if rtp::is_rtcp(packet) {
                    continue; // str0m makes the browser's RTCP itself
                }
                let (Some(header), Some(payload)) = (RtpHeader::parse(packet), rtp::payload(packet)) else {
                    continue;
                };
                let mut peer = lock(&shared);
                let codec = peer
                    .codecs()
                    .iter()
                    .find(|c| c.payload_type == header.payload_type)
                    .map(|c| c.codec);
                if let Some(codec) = codec {
                    // Before the browser is connected, audio has nowhere to go.
                    let _ = peer.send_rtp(codec, header.sequence, header.timestamp, header.marker, payload, Instant::now());
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                lock(&shared).handle_timeout(Instant::now());
            }
            _ = shared.wake.notified() => {}
        }
    }
}

/// Does what the peer asks until it only has a timeout left (returned, with whether
/// the media connected meanwhile); `None` once the session is over.
fn drain(
    shared: &Shared,
    browser: &UdpSocket,
    plain: &UdpSocket,
    relay: SocketAddr,
    ssrc: u32,
    buf: &mut Vec<u8>,
) -> Option<(Instant, bool)> {
    let mut peer = lock(shared);
    let mut connected = false;
    loop {
        match peer.poll() {
            Output::Transmit { to, data, .. } => {
                let _ = browser.try_send_to(&data, to);
            }
            Output::Media(packet) => {
                let header = RtpHeader {
                    marker: packet.marker,
                    payload_type: packet.payload_type,
                    sequence: packet.sequence,
                    timestamp: packet.timestamp,
                    ssrc,
                };
                let mut head = [0u8; HEADER_LEN];
                header.write(&mut head);
                buf.clear();
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&packet.payload);
                let _ = plain.try_send_to(buf, relay);
            }
            Output::Connected => {
                tracing::debug!(%relay, "browser media connected");
                metrics::counter!("switchboard_webrtc_connected_total").increment(1);
                connected = true;
            }
            Output::Disconnected => {
                tracing::debug!(%relay, "browser media lost");
                metrics::counter!("switchboard_webrtc_disconnected_total").increment(1);
            }
            Output::Closed => return None,
            Output::Timeout(at) => return Some((at, connected)),
        }
    }
}
