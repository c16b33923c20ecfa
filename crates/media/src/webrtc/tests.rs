//! The gateway against a plain str0m `Rtc` standing in for the browser (a full ICE agent,
//! audio send-receive, PCMU/PCMA and telephone-event/8000 under 126 as Chrome numbers it),
//! datagrams exchanged in memory and both sides driven by a simulated clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec as Str0mCodec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc, RtcConfig};

use super::*;

const BROWSER_TELEPHONE_EVENT_PT: u8 = 126;
/// Simulated steps before a test gives up (each is at most 20 ms of simulated time).
const MAX_STEPS: usize = 3_000;

fn browser_addr() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "127.0.0.1:6000".parse().unwrap()
}

fn unknown_addr() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

/// A str0m instance configured like a browser that speaks G.711.
fn browser_rtc(now: Instant, configure: impl FnOnce(RtcConfig) -> RtcConfig) -> Rtc {
    let config = RtcConfig::new()
        .set_crypto_provider(crypto::provider())
        .set_rtp_mode(true)
        .clear_codecs();
    let mut rtc = configure(config).build(now);
    rtc.add_local_candidate(Candidate::host(browser_addr(), "udp").unwrap())
        .unwrap();
    rtc
}

fn g711_browser(config: RtcConfig) -> RtcConfig {
    let mut config = config.enable_pcmu(true, false).enable_pcma(true, false);
    config.codec_config().add_config(
        Pt::from(BROWSER_TELEPHONE_EVENT_PT),
        None,
        Str0mCodec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
    config
}

/// The browser's offer of one audio m-line.
fn browser_offer(rtc: &mut Rtc, kind: MediaKind) -> (Mid, String, SdpPendingOffer) {
    let mut api = rtc.sdp_api();
    let mid = api.add_media(kind, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    (mid, offer.to_sdp_string(), pending)
}

type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// Both ends and the wire between them.
struct Net {
    now: Instant,
    browser: Rtc,
    browser_mid: Mid,
    browser_timeout: Instant,
    browser_events: Vec<Event>,
    server: WebRtcPeer,
    server_timeout: Instant,
    /// Everything the server reported but transmits and timeouts.
    server_outputs: Vec<Output>,
    to_browser: VecDeque<Datagram>,
    to_server: VecDeque<Datagram>,
    /// Datagrams towards the server for which this is true are lost.
    drop_to_server: fn(&[u8]) -> bool,
    /// DTLS records (RFC 7983: first byte 20..=63) delivered to the server.
    dtls_to_server: usize,
    /// Every datagram the server sent, as it went on the wire.
    wire_to_browser: Vec<Vec<u8>>,
}

fn is_dtls(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (20..=63).contains(b))
}

impl Net {
    fn new(now: Instant, browser: Rtc, browser_mid: Mid, server: WebRtcPeer) -> Self {
        let mut net = Self {
            now,
            browser,
            browser_mid,
            browser_timeout: now,
            browser_events: Vec::new(),
            server,
            server_timeout: now,
            server_outputs: Vec::new(),
            to_browser: VecDeque::new(),
            to_server: VecDeque::new(),
            drop_to_server: |_| false,
            dtls_to_server: 0,
            wire_to_browser: Vec::new(),
        };
        net.drain_browser();
        net.drain_server();
        net
    }

    fn drain_browser(&mut self) {
        loop {
            match self.browser.poll_output().unwrap() {
                str0m::Output::Timeout(at) => {
                    self.browser_timeout = at;
                    break;
                }
                str0m::Output::Transmit(t) => {
                    assert_eq!(t.source, browser_addr());
                    self.to_server
                        .push_back((t.source, t.destination, t.contents.into()));
                }
                str0m::Output::Event(e) => self.browser_events.push(e),
            }
        }
    }

    fn drain_server(&mut self) {
        loop {
            match self.server.poll() {
                Output::Timeout(at) => {
                    self.server_timeout = at;
                    break;
                }
                Output::Transmit { from, to, data } => {
                    assert_eq!(from, server_addr());
                    self.wire_to_browser.push(data.clone());
                    self.to_browser.push_back((from, to, data));
                }
                other => self.server_outputs.push(other),
            }
        }
    }

    /// Delivers everything in flight, then advances the clock to the earliest timeout
    /// (at most 20 ms, at least 1 ms) and fires both.
    fn step(&mut self) {
        while !self.to_browser.is_empty() || !self.to_server.is_empty() {
            while let Some((from, to, data)) = self.to_browser.pop_front() {
                let receive = Receive::new(Protocol::Udp, from, to, &data).unwrap();
                self.browser
                    .handle_input(Input::Receive(self.now, receive))
                    .unwrap();
                self.drain_browser();
            }
            while let Some((from, to, data)) = self.to_server.pop_front() {
                if (self.drop_to_server)(&data) {
                    continue;
                }
                if to != server_addr() {
                    continue;
                }
                if is_dtls(&data) {
                    self.dtls_to_server += 1;
                }
                match self.server.handle_datagram(from, to, &data, self.now) {
                    Ok(()) | Err(WebRtcError::Closed) => {}
                    Err(e) => panic!("{e}"),
                }
                self.drain_server();
            }
        }
        let next = self
            .browser_timeout
            .min(self.server_timeout)
            .min(self.now + Duration::from_millis(20));
        self.now = next.max(self.now + Duration::from_millis(1));
        self.browser.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain_browser();
        self.server.handle_timeout(self.now);
        self.drain_server();
    }

    /// Steps until `done` holds; false if it never did within [`MAX_STEPS`].
    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..MAX_STEPS {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
        }
    }

    fn server_connected(&self) -> bool {
        self.server_outputs.contains(&Output::Connected)
    }

    fn connect(&mut self) {
        assert!(self.run_until(|n| n.server_connected() && n.browser.is_connected()));
        assert!(self.server.is_connected());
    }

    fn server_media(&self) -> Vec<&RtpPacket> {
        self.server_outputs
            .iter()
            .filter_map(|o| match o {
                Output::Media(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn browser_rtp(&self) -> Vec<&str0m::rtp::RtpPacket> {
        self.browser_events
            .iter()
            .filter_map(|e| match e {
                Event::RtpPacket(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The browser sends an RTP packet.
    fn browser_send(&mut self, pt: u8, seq: u64, timestamp: u32, payload: &[u8]) {
        let now = self.now;
        let mut api = self.browser.direct_api();
        let stream = api.stream_tx_by_mid(self.browser_mid, None).unwrap();
        stream.write_rtp(RtpWrite::new(
            Pt::from(pt),
            seq.into(),
            timestamp,
            now,
            payload.to_vec(),
        ));
        self.drain_browser();
    }
}

/// The browser offers, we answer, the browser applies the answer.
fn browser_calls(now: Instant) -> (Net, String) {
    let mut browser = browser_rtc(now, g711_browser);
    let (mid, offer, pending) = browser_offer(&mut browser, MediaKind::Audio);
    let (server, answer) = WebRtcPeer::accept_offer(&offer, server_addr(), now).unwrap();
    browser
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    (Net::new(now, browser, mid, server), answer)
}

/// We offer, the browser answers, we apply the answer.
fn we_call(now: Instant) -> Net {
    let (mut server, offer) = WebRtcPeer::offer(server_addr(), now).unwrap();
    let mut browser = browser_rtc(now, g711_browser);
    let answer = browser
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap();
    // str0m keeps the offerer's mid.
    let mid = server.mid.unwrap();
    server.accept_answer(&answer.to_sdp_string()).unwrap();
    Net::new(now, browser, mid, server)
}

fn media_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

/// Audio both ways, telephone-events both ways, payloads and header fields intact.
fn exchange_audio(net: &mut Net) {
    let pcmu = net.server.payload_type(Codec::Pcmu).unwrap();
    let events = net.server.payload_type(Codec::TelephoneEvent).unwrap();

    // Towards the browser: 10 packets of 20 ms, across a sequence-number wrap.
    for i in 0..10u16 {
        let payload = vec![i as u8; 160];
        let seq = 65530u16.wrapping_add(i);
        let ts = 8000 + 160 * u32::from(i);
        net.server
            .send_rtp(Codec::Pcmu, seq, ts, i == 0, &payload, net.now)
            .unwrap();
        net.drain_server();
        net.run_for(Duration::from_millis(20));
    }
    let dtmf = [5u8, 0x8a, 0x03, 0x20];
    net.server
        .send_rtp(Codec::TelephoneEvent, 4, 9600, true, &dtmf, net.now)
        .unwrap();
    net.drain_server();
    assert!(net.run_until(|n| n.browser_rtp().len() >= 11));
    let got = net.browser_rtp();
    for (i, p) in got[..10].iter().enumerate() {
        assert_eq!(*p.header.payload_type, pcmu);
        assert_eq!(p.header.sequence_number, 65530u16.wrapping_add(i as u16));
        assert_eq!(p.header.timestamp, 8000 + 160 * i as u32);
        assert_eq!(p.header.marker, i == 0);
        assert_eq!(&p.payload[..], &vec![i as u8; 160][..]);
    }
    assert_eq!(*got[10].header.payload_type, events);
    assert_eq!(&got[10].payload[..], &dtmf);
    // On the wire it was SRTP: RTP-range datagrams, none carrying the audio in clear.
    assert!(
        net.wire_to_browser
            .iter()
            .any(|d| d.first().is_some_and(|b| (128..=191).contains(b)))
    );
    for i in 0..10u8 {
        let clear = [i; 160];
        assert!(
            !net.wire_to_browser
                .iter()
                .any(|d| d.windows(160).any(|w| w == clear))
        );
    }

    // From the browser.
    for i in 0..5u8 {
        net.browser_send(0, 100 + u64::from(i), 160 * u32::from(i), &[0x55 ^ i; 160]);
        net.run_for(Duration::from_millis(20));
    }
    net.browser_send(events, 105, 800, &dtmf);
    assert!(net.run_until(|n| n.server_media().len() >= 6));
    let got = net.server_media();
    for (i, p) in got[..5].iter().enumerate() {
        assert_eq!(p.codec, Codec::Pcmu);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence, 100 + i as u16);
        assert_eq!(p.timestamp, 160 * i as u32);
        assert_eq!(p.payload, vec![0x55 ^ i as u8; 160]);
    }
    assert_eq!(got[5].codec, Codec::TelephoneEvent);
    assert_eq!(got[5].payload_type, events);
    assert_eq!(got[5].payload, dtmf);
}

#[test]
fn browser_offer_is_answered_ice_lite_and_connects() {
    let now = Instant::now();
    let (mut net, answer) = browser_calls(now);

    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=rtcp-mux"), "{answer}");
    assert!(answer.contains("a=fingerprint:sha-256 "), "{answer}");
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("a=candidate:") && l.contains("127.0.0.1 6000 typ host")),
        "{answer}"
    );
    assert_eq!(
        media_lines(&answer),
        ["m=audio 9 UDP/TLS/RTP/SAVPF 0 8 126"],
        "{answer}"
    );
    let rtpmaps: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=rtpmap:"))
        .collect();
    assert_eq!(
        rtpmaps,
        [
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:126 telephone-event/8000"
        ]
    );
    assert_eq!(
        net.server.codecs(),
        [
            NegotiatedCodec {
                codec: Codec::Pcmu,
                payload_type: 0
            },
            NegotiatedCodec {
                codec: Codec::Pcma,
                payload_type: 8
            },
            NegotiatedCodec {
                codec: Codec::TelephoneEvent,
                payload_type: BROWSER_TELEPHONE_EVENT_PT
            },
        ]
    );

    assert!(!net.server.is_connected());
    net.connect();
    assert_eq!(
        net.server_outputs
            .iter()
            .filter(|o| **o == Output::Connected)
            .count(),
        1
    );
}

#[test]
fn audio_and_telephone_events_flow_both_ways_when_the_browser_calls() {
    let (mut net, _) = browser_calls(Instant::now());
    net.connect();
    exchange_audio(&mut net);
}

#[test]
fn we_offer_as_ice_lite_and_audio_flows() {
    let now = Instant::now();
    let (_, offer) = WebRtcPeer::offer(server_addr(), now).unwrap();
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    assert_eq!(
        media_lines(&offer),
        [format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 {OFFERED_TELEPHONE_EVENT_PT}"
        )],
        "{offer}"
    );

    let mut net = we_call(now);
    assert_eq!(
        net.server.payload_type(Codec::TelephoneEvent),
        Some(OFFERED_TELEPHONE_EVENT_PT)
    );
    net.connect();
    exchange_audio(&mut net);
}

#[test]
fn an_answer_needs_an_offer_and_g711() {
    let now = Instant::now();
    let (mut net, answer) = browser_calls(now);
    assert_eq!(
        net.server.accept_answer(&answer),
        Err(WebRtcError::NoPendingOffer)
    );

    let (mut server, offer) = WebRtcPeer::offer(server_addr(), now).unwrap();
    assert!(matches!(
        server.accept_answer("garbage"),
        Err(WebRtcError::Sdp(_))
    ));
    // A browser that only has Opus cannot answer with audio we take.
    let mut browser = browser_rtc(now, |c| c.enable_opus(true, false));
    let answer = browser
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap());
    // (str0m answers it with the audio m-line rejected.)
    let answer = answer.unwrap().to_sdp_string();
    assert_eq!(
        server.accept_answer(&answer),
        Err(WebRtcError::NoAudio),
        "{answer}"
    );
}

#[test]
fn offers_without_g711_audio_are_refused_clearly() {
    let now = Instant::now();

    let mut video = browser_rtc(now, |c| c.enable_vp8(true));
    let (_, offer, _) = browser_offer(&mut video, MediaKind::Video);
    let err = WebRtcPeer::accept_offer(&offer, server_addr(), now).unwrap_err();
    assert_eq!(err, WebRtcError::NoAudio);
    assert_eq!(err.to_string(), "no usable audio m-line in the SDP");

    let mut opus = browser_rtc(now, |c| c.enable_opus(true, false));
    let (_, offer, _) = browser_offer(&mut opus, MediaKind::Audio);
    let err = WebRtcPeer::accept_offer(&offer, server_addr(), now).unwrap_err();
    assert!(matches!(err, WebRtcError::NoCommonCodec(_)), "{err:?}");
    assert!(err.to_string().contains("PCMU"), "{err}");
    assert!(err.to_string().contains("OPUS/48000"), "{err}");

    for garbage in [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\nm=audio\r\n",
        "m=audio 1 RTP/AVP 0",
    ] {
        let err = WebRtcPeer::accept_offer(garbage, server_addr(), now).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}

/// What Chrome offers for audio plus a camera and a data channel: only the audio is
/// taken, with Chrome's numbers, and the rest is answered with port 0.
#[test]
fn a_chrome_style_offer_keeps_only_its_first_audio_line() {
    let offer = CHROME_OFFER.replace('\n', "\r\n");
    let (peer, answer) = WebRtcPeer::accept_offer(&offer, server_addr(), Instant::now()).unwrap();
    let lines = media_lines(&answer);
    assert_eq!(lines.len(), 3, "{answer}");
    assert_eq!(lines[0], "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 126", "{answer}");
    assert!(lines[1].starts_with("m=video 0 "), "{answer}");
    assert!(lines[2].starts_with("m=application 0 "), "{answer}");
    assert!(answer.contains("a=group:BUNDLE 0\r\n"), "{answer}");
    assert_eq!(peer.payload_type(Codec::TelephoneEvent), Some(126));
    assert_eq!(peer.payload_type(Codec::Pcma), Some(8));
}

const CHROME_OFFER: &str = "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=extmap-allow-mixed
a=msid-semantic: WMS stream
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Kq3b
a=ice-pwd:7Jt0ndbR2jxH8jvJ4y1Fq0xw
a=ice-options:trickle
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:stream track
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:abcdefghijklmnop
a=ssrc:1001 msid:stream track
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Kq3b
a=ice-pwd:7Jt0ndbR2jxH8jvJ4y1Fq0xw
a=ice-options:trickle
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E
a=setup:actpass
a=mid:1
a=sendrecv
a=msid:stream video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:abcdefghijklmnop
a=ssrc:2002 cname:abcdefghijklmnop
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:Kq3b
a=ice-pwd:7Jt0ndbR2jxH8jvJ4y1Fq0xw
a=ice-options:trickle
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E
a=setup:actpass
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
";

/// Deterministic pseudo-random bytes (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A datagram that often looks like STUN, DTLS, RTP or RTCP in its first bytes.
    fn datagram(&mut self) -> Vec<u8> {
        let len = (self.next() % 1500) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        if let Some(first) = data.first_mut() {
            *first = match self.next() % 5 {
                0 => *first & 0x03,          // STUN
                1 => 20 + *first % 44,       // DTLS
                2 => 0x80 | (*first & 0x3f), // RTP/RTCP
                _ => *first,
            };
        }
        if data.len() >= 8 && self.next().is_multiple_of(3) {
            // STUN's magic cookie.
            data[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        }
        data
    }
}

#[test]
fn garbage_datagrams_and_strangers_do_not_disturb_a_session() {
    let (mut net, _) = browser_calls(Instant::now());
    let mut noise = Noise(0x5eed_0f57_17c4_b030);

    // Before and during the handshake…
    for _ in 0..300 {
        let data = noise.datagram();
        let from = if noise.next().is_multiple_of(2) {
            browser_addr()
        } else {
            unknown_addr()
        };
        let _ = net
            .server
            .handle_datagram(from, server_addr(), &data, net.now);
        net.drain_server();
    }
    net.connect();

    // …and once connected: strangers are refused, the browser's garbage is dropped.
    let rtp_like = [0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
    assert!(
        !net.server
            .accepts(unknown_addr(), server_addr(), &rtp_like, net.now)
    );
    assert_eq!(
        net.server
            .handle_datagram(unknown_addr(), server_addr(), &rtp_like, net.now),
        Err(WebRtcError::NotAccepted)
    );
    assert!(
        net.server
            .accepts(browser_addr(), server_addr(), &rtp_like, net.now)
    );
    for _ in 0..2_000 {
        let data = noise.datagram();
        let from = if noise.next().is_multiple_of(2) {
            browser_addr()
        } else {
            unknown_addr()
        };
        let _ = net
            .server
            .handle_datagram(from, server_addr(), &data, net.now);
        net.drain_server();
    }
    assert!(net.server.is_connected());
    assert!(!net.server_outputs.contains(&Output::Closed));
    exchange_audio(&mut net);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_text_as_an_offer_is_answered_or_refused(text in ".{0,400}") {
        let _ = WebRtcPeer::accept_offer(&text, server_addr(), Instant::now());
    }

    /// A real offer with lines dropped or cut short.
    #[test]
    fn a_mangled_offer_is_answered_or_refused(
        drop in proptest::collection::vec(any::<bool>(), 64),
        cut in 0usize..4000,
    ) {
        let offer = CHROME_OFFER.replace('\n', "\r\n");
        let kept: String = offer
            .split_inclusive("\r\n")
            .enumerate()
            .filter(|(i, _)| !drop.get(*i).copied().unwrap_or(false))
            .map(|(_, l)| l)
            .collect();
        let cut = kept.char_indices().map(|(i, _)| i).find(|&i| i >= cut).unwrap_or(kept.len());
        let _ = WebRtcPeer::accept_offer(&kept[..cut], server_addr(), Instant::now());
    }
}

/// The guarantee the server relies on to answer the call: `Connected` needs the DTLS
/// handshake, working ICE alone is not enough, and nothing can be sent before.
#[test]
fn connected_waits_for_dtls_not_just_ice() {
    let (mut net, _) = browser_calls(Instant::now());
    net.drop_to_server = is_dtls;
    net.run_for(Duration::from_secs(10));
    assert!(
        net.browser_events.iter().any(|e| matches!(
            e,
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed
            )
        )),
        "ICE itself works"
    );
    assert!(!net.server_connected());
    assert!(!net.server.is_connected());
    assert_eq!(
        net.server
            .send_rtp(Codec::Pcmu, 1, 160, false, &[0xff; 160], net.now),
        Err(WebRtcError::NotConnected)
    );
    assert!(net.server_media().is_empty());
}

#[test]
fn connected_comes_after_the_dtls_handshake_and_media_only_then() {
    let (mut net, _) = browser_calls(Instant::now());
    let mut steps = 0;
    while !net.server_connected() {
        assert!(steps < MAX_STEPS, "never connected");
        assert_eq!(
            net.server
                .send_rtp(Codec::Pcmu, 1, 160, false, &[0xff; 160], net.now),
            Err(WebRtcError::NotConnected)
        );
        net.step();
        steps += 1;
    }
    // The client's ClientHello and its second flight (key exchange, Finished) at least.
    assert!(net.dtls_to_server >= 2, "{}", net.dtls_to_server);
    assert!(net.server.is_connected());
    assert!(
        net.server
            .send_rtp(Codec::Pcmu, 1, 160, false, &[0xff; 160], net.now)
            .is_ok()
    );
}

/// A browser whose DTLS certificate is not the one its SDP announced is not connected
/// (str0m checks the fingerprint at the end of the handshake) and the session closes.
#[test]
fn a_wrong_fingerprint_never_connects() {
    let now = Instant::now();
    let mut browser = browser_rtc(now, g711_browser);
    let (mid, offer, pending) = browser_offer(&mut browser, MediaKind::Audio);
    let line = offer
        .lines()
        .find(|l| l.starts_with("a=fingerprint:sha-256 "))
        .unwrap();
    let forged = format!("a=fingerprint:sha-256 {}", ["00"; 32].join(":"));
    let offer = offer.replace(line, &forged);
    let (server, answer) = WebRtcPeer::accept_offer(&offer, server_addr(), now).unwrap();
    browser
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let mut net = Net::new(now, browser, mid, server);
    assert!(net.run_until(|n| n.server_outputs.contains(&Output::Closed)));
    assert!(!net.server_connected());
    assert!(!net.server.is_connected());
    assert!(
        net.server
            .error()
            .is_some_and(|e| e.contains("fingerprint"))
    );
}

/// A browser that vanishes (no more consent checks) is reported.
#[test]
fn a_silent_browser_is_reported_disconnected() {
    let (mut net, _) = browser_calls(Instant::now());
    net.connect();
    net.drop_to_server = |_| true;
    assert!(net.run_until(|n| n.server_outputs.contains(&Output::Disconnected)));
    assert!(!net.server.is_connected());
}

#[test]
fn sending_needs_a_negotiated_codec() {
    let now = Instant::now();
    let mut browser = browser_rtc(now, |c| c.enable_pcma(true, false));
    let (mid, offer, pending) = browser_offer(&mut browser, MediaKind::Audio);
    let (server, answer) = WebRtcPeer::accept_offer(&offer, server_addr(), now).unwrap();
    browser
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let mut net = Net::new(now, browser, mid, server);
    net.connect();
    assert_eq!(
        net.server.codecs(),
        [NegotiatedCodec {
            codec: Codec::Pcma,
            payload_type: 8
        }]
    );
    assert_eq!(
        net.server
            .send_rtp(Codec::Pcmu, 1, 160, false, &[0xff; 160], net.now),
        Err(WebRtcError::CodecNotNegotiated(Codec::Pcmu))
    );
    assert_eq!(
        net.server
            .send_rtp(Codec::TelephoneEvent, 1, 160, false, &[0; 4], net.now),
        Err(WebRtcError::CodecNotNegotiated(Codec::TelephoneEvent))
    );
}

#[test]
fn close_says_goodbye_and_goes_inert() {
    let (mut net, _) = browser_calls(Instant::now());
    net.connect();
    net.server.close();
    net.drain_server();
    assert!(net.server_outputs.contains(&Output::Closed));
    assert!(!net.to_browser.is_empty(), "close_notify and BYE go out");
    assert!(!net.server.is_connected());
    assert_eq!(
        net.server
            .send_rtp(Codec::Pcmu, 1, 160, false, &[0xff; 160], net.now),
        Err(WebRtcError::Closed)
    );
    assert!(net.run_until(|n| n.browser_events.iter().any(|e| matches!(e, Event::Closed))));
}

#[test]
fn the_browser_closing_is_reported() {
    let (mut net, _) = browser_calls(Instant::now());
    net.connect();
    net.browser.close().unwrap();
    net.drain_browser();
    assert!(net.run_until(|n| n.server_outputs.contains(&Output::Closed)));
    assert_eq!(
        net.server_outputs
            .iter()
            .filter(|o| **o == Output::Closed)
            .count(),
        1
    );
}

#[test]
fn sequence_numbers_are_extended_across_wraps() {
    assert_eq!(extend_sequence(None, 65535), 65535);
    assert_eq!(extend_sequence(Some(65535), 0), 65536);
    assert_eq!(extend_sequence(Some(65536), 65535), 65535);
    assert_eq!(extend_sequence(Some(3 * 65536 + 10), 20), 3 * 65536 + 20);
    assert_eq!(
        extend_sequence(Some(3 * 65536 + 10), 65530),
        2 * 65536 + 65530
    );
    assert_eq!(extend_sequence(Some(5), 65530), 65530);
}

/// The browser holds (a new offer, send-only) and resumes within the session: each
/// offer is answered by the same peer, ICE and DTLS go on, and audio flows after.
#[test]
fn a_browser_holds_and_resumes_in_the_same_session() {
    let now = Instant::now();
    let (mut net, _) = browser_calls(now);
    net.connect();
    for (direction, answered) in [
        (Direction::SendOnly, "a=recvonly"),
        (Direction::SendRecv, "a=sendrecv"),
    ] {
        let mut api = net.browser.sdp_api();
        api.set_direction(net.browser_mid, direction);
        let (offer, pending) = api.apply().unwrap();
        let answer = net.server.accept_reoffer(&offer.to_sdp_string()).unwrap();
        assert!(answer.contains(answered), "{answer}");
        assert_eq!(media_lines(&answer).len(), 1, "{answer}");
        net.browser
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        net.drain_browser();
        net.drain_server();
    }
    assert!(net.server.is_connected());
    exchange_audio(&mut net);
    // Garbage as a new offer is refused without ending the session.
    assert!(net.server.accept_reoffer("v=0\r\nnonsense").is_err());
    assert!(net.server.is_connected());
}

/// The other phone holds and resumes: our new offers within the session (send-only,
/// then send-receive) are answered by the browser and audio flows after.
#[test]
fn we_hold_and_resume_the_browser_in_the_same_session() {
    let now = Instant::now();
    let (mut net, _) = browser_calls(now);
    net.connect();
    for (direction, answered) in [
        (Direction::SendOnly, "a=recvonly"),
        (Direction::SendRecv, "a=sendrecv"),
    ] {
        let offer = net.server.reoffer(direction).unwrap().expect("an offer");
        let answer = net
            .browser
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap()
            .to_sdp_string();
        assert!(answer.contains(answered), "{answer}");
        net.server.accept_answer(&answer).unwrap();
        net.drain_browser();
        net.drain_server();
    }
    // No change, no offer.
    assert_eq!(net.server.reoffer(Direction::SendRecv).unwrap(), None);
    assert!(net.server.is_connected());
    exchange_audio(&mut net);
}
