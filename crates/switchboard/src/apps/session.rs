//! One call's media as an application hears and speaks it: the sans-IO
//! [`Endpoint`] of `switchboard-media` driven over a UDP socket and the clock. An IVR
//! (voicemail, the auto attendant, feature codes) is an async function that calls
//! [`MediaSession::play`], [`MediaSession::collect`] and [`MediaSession::record`] in
//! turn; each returns [`HungUp`] once the caller is gone, so a script ends with `?`.
//!
//! The session talks RTP only with `peer`, the relay's port for this leg: the relay
//! latches onto the phone and guards against strangers, so the session needs no
//! latching of its own and drops anything from elsewhere.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::endpoint::{Endpoint, EndpointConfig, Event};
use switchboard_media::g711::G711;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The caller hung up (or the call ended otherwise): the script stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HungUp;

/// Receive buffer: RTP from a phone is far smaller, but a bigger datagram must not
/// be mistaken for a short one.
const MAX_PACKET: usize = 2048;

/// How a digit string is collected.
#[derive(Debug, Clone)]
pub struct Collect {
    /// Stop after this many digits.
    pub max_digits: usize,
    /// A digit that ends the input early and is not part of it (`#`).
    pub terminator: Option<char>,
    /// How long to wait for the first digit.
    pub first: Duration,
    /// How long to wait for each following digit.
    pub between: Duration,
}

impl Collect {
    /// Up to `max_digits`, ended by `#`, 5 s for the first digit and 3 s between
    /// digits: what phone menus commonly allow.
    pub fn until_hash(max_digits: usize) -> Self {
        Self {
            max_digits,
            terminator: Some('#'),
            first: Duration::from_secs(5),
            between: Duration::from_secs(3),
        }
    }

    /// One key press, waiting up to `wait`.
    pub fn one(wait: Duration) -> Self {
        Self {
            max_digits: 1,
            terminator: None,
            first: wait,
            between: wait,
        }
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEnd {
    /// The caller pressed this key (usually `#`).
    Key(char),
    /// The caller was silent for the silence limit.
    Silence,
    /// The recording reached its longest.
    MaxLength,
    /// The caller hung up: what was said is kept (most messages end this way).
    HungUp,
}

/// What [`MediaSession::record`] heard.
#[derive(Debug, Clone)]
pub struct Recording {
    /// 8 kHz 16-bit samples, the trailing silence that ended it removed.
    pub samples: Vec<i16>,
    pub ended: RecordEnd,
}

impl Recording {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.samples.len() as u64 / 8)
    }
}

pub struct MediaSession {
    endpoint: Endpoint,
    socket: UdpSocket,
    peer: SocketAddr,
    hangup: watch::Receiver<bool>,
    /// Digits pressed and not yet consumed (typed ahead during a prompt).
    digits: VecDeque<char>,
    recv: Vec<u8>,
    send: Vec<u8>,
}

impl MediaSession {
    /// A session on `socket` speaking `codec` with `peer`; `dtmf` is the telephone-event
    /// payload type both sides agreed on. Ends when `hangup` turns true or its sender
    /// is dropped.
    pub fn new(
        socket: UdpSocket,
        peer: SocketAddr,
        codec: G711,
        dtmf: Option<u8>,
        hangup: watch::Receiver<bool>,
    ) -> Self {
        let config = EndpointConfig {
            codec,
            dtmf_payload_type: dtmf,
            ssrc: rand::random(),
            initial_seq: rand::random(),
            initial_timestamp: rand::random(),
        };
        Self {
            endpoint: Endpoint::new(config, Instant::now()),
            socket,
            peer,
            hangup,
            digits: VecDeque::new(),
            recv: vec![0; MAX_PACKET],
            send: Vec::with_capacity(MAX_PACKET),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Plays `audio` to the end or, when `interruptible`, until a key is pressed (the
    /// key stays for the next [`Self::collect`]). A menu is interruptible, so callers
    /// who know it need not listen to it.
    pub async fn play(&mut self, audio: Arc<[i16]>, interruptible: bool) -> Result<(), HungUp> {
        self.play_all(std::slice::from_ref(&audio), interruptible)
            .await
    }

    /// Plays several pieces as one prompt (a sentence with a number in it).
    pub async fn play_all(
        &mut self,
        pieces: &[Arc<[i16]>],
        interruptible: bool,
    ) -> Result<(), HungUp> {
        if interruptible && !self.digits.is_empty() {
            return Ok(());
        }
        for piece in pieces {
            self.endpoint.play(piece.clone());
        }
        let result = loop {
            if !self.endpoint.is_playing() {
                break Ok(());
            }
            if interruptible && !self.digits.is_empty() {
                break Ok(());
            }
            if let Err(e) = self.turn(None).await {
                break Err(e);
            }
        };
        self.endpoint.stop_playback();
        result
    }

    /// Plays `audio` over and over until `until` is ready (music while a transfer
    /// rings), then gives its output. Keys pressed meanwhile are dropped.
    pub async fn play_until<T>(
        &mut self,
        audio: Arc<[i16]>,
        until: impl Future<Output = T>,
    ) -> Result<T, HungUp> {
        let mut until = std::pin::pin!(until);
        let result = loop {
            if !self.endpoint.is_playing() {
                self.endpoint.play(audio.clone());
            }
            // `turn` only awaits cancel-safe futures (a datagram, a timer, the hangup
            // watch), so dropping it when `until` is ready loses nothing.
            tokio::select! {
                biased;
                out = &mut until => break Ok(out),
                turned = self.turn(None) => {
                    if let Err(e) = turned {
                        break Err(e);
                    }
                }
            }
        };
        self.endpoint.stop_playback();
        self.digits.clear();
        result
    }

    /// Digits as `how` says; an empty string when none came in time. Digits typed
    /// ahead count.
    pub async fn collect(&mut self, how: &Collect) -> Result<String, HungUp> {
        let mut got = String::new();
        let mut deadline = Instant::now() + how.first;
        loop {
            while let Some(d) = self.digits.pop_front() {
                if Some(d) == how.terminator {
                    return Ok(got);
                }
                got.push(d);
                if got.chars().count() >= how.max_digits {
                    return Ok(got);
                }
                deadline = Instant::now() + how.between;
            }
            if Instant::now() >= deadline {
                return Ok(got);
            }
            self.turn(Some(deadline)).await?;
        }
    }

    /// Records what the caller says until a key, `silence` of silence, `max` or the
    /// caller hanging up. The silence that ended it is cut off; the key is consumed.
    pub async fn record(&mut self, max: Duration, silence: Duration) -> Recording {
        self.digits.clear();
        self.endpoint.start_recording();
        let started = Instant::now();
        let end = started + max;
        let ended = loop {
            if let Some(key) = self.digits.pop_front() {
                break RecordEnd::Key(key);
            }
            let now = Instant::now();
            if now >= end {
                break RecordEnd::MaxLength;
            }
            // Silence counts from the start too: a caller who never speaks is cut off.
            if self.endpoint.silence_for().min(now - started) >= silence {
                break RecordEnd::Silence;
            }
            if self.turn(Some(end)).await.is_err() {
                break RecordEnd::HungUp;
            }
        };
        self.endpoint.stop_recording();
        let mut samples = self.endpoint.take_recording();
        if ended == RecordEnd::Silence {
            let silent = samples_of(silence).min(samples.len());
            samples.truncate(samples.len() - silent);
        }
        Recording { samples, ended }
    }

    /// The first key pressed and not yet collected, if any.
    pub fn take_key(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    /// Waits `how_long` (sending silence), keeping keys pressed meanwhile.
    pub async fn pause(&mut self, how_long: Duration) -> Result<(), HungUp> {
        let end = Instant::now() + how_long;
        while Instant::now() < end {
            self.turn(Some(end)).await?;
        }
        Ok(())
    }

    /// Sends `digits` as RFC 4733 events (to a phone that asked for DTMF).
    pub async fn send_digits(&mut self, digits: &str) -> Result<(), HungUp> {
        for d in digits.chars() {
            self.endpoint.send_digit(d, Duration::from_millis(100));
        }
        while self.endpoint.is_playing() {
            self.turn(None).await?;
        }
        Ok(())
    }

    /// One step: a packet received, packets due sent, or `until` reached.
    async fn turn(&mut self, until: Option<Instant>) -> Result<(), HungUp> {
        if *self.hangup.borrow() {
            return Err(HungUp);
        }
        let due = match until {
            Some(at) => at.min(self.endpoint.poll_timeout()),
            None => self.endpoint.poll_timeout(),
        };
        tokio::select! {
            r = self.socket.recv_from(&mut self.recv) => {
                // Only the relay speaks to this socket; anything else is dropped.
                if let Ok((n, from)) = r
                    && from == self.peer
                {
                    self.endpoint.on_packet(Instant::now(), &self.recv[..n]);
                }
            }
            _ = tokio::time::sleep_until(due.into()) => {}
            changed = self.hangup.changed() => {
                if changed.is_err() || *self.hangup.borrow() {
                    return Err(HungUp);
                }
            }
        }
        let now = Instant::now();
        while self.endpoint.poll_transmit(now, &mut self.send) {
            // Best effort, as RTP is: a full buffer loses one packet, not the call.
            let _ = self.socket.try_send_to(&self.send, self.peer);
        }
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Digit(d) => self.digits.push_back(d),
            }
        }
        Ok(())
    }
}

/// Samples in `d` at 8 kHz.
fn samples_of(d: Duration) -> usize {
    (d.as_millis() as usize) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phone's media on a socket of its own, driven like the session is.
    struct Phone {
        endpoint: Endpoint,
        socket: UdpSocket,
        peer: SocketAddr,
        buf: Vec<u8>,
        out: Vec<u8>,
    }

    impl Phone {
        async fn new(peer: SocketAddr) -> Self {
            let config = EndpointConfig {
                codec: G711::Ulaw,
                dtmf_payload_type: Some(101),
                ssrc: 7,
                initial_seq: 65_500,
                initial_timestamp: 1,
            };
            Self {
                endpoint: Endpoint::new(config, Instant::now()),
                socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
                peer,
                buf: vec![0; MAX_PACKET],
                out: Vec::new(),
            }
        }

        /// Sends and receives for `how_long`.
        async fn run(&mut self, how_long: Duration) {
            let end = Instant::now() + how_long;
            while Instant::now() < end {
                let due = self.endpoint.poll_timeout().min(end);
                tokio::select! {
                    r = self.socket.recv_from(&mut self.buf) => {
                        let (n, _) = r.unwrap();
                        self.endpoint.on_packet(Instant::now(), &self.buf[..n]);
                    }
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
                while self.endpoint.poll_transmit(Instant::now(), &mut self.out) {
                    self.socket.send_to(&self.out, self.peer).await.unwrap();
                }
            }
        }
    }

    async fn session_and_phone() -> (MediaSession, Phone, watch::Sender<bool>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        let phone = Phone::new(at).await;
        let (hangup, watched) = watch::channel(false);
        let peer = phone.socket.local_addr().unwrap();
        let session = MediaSession::new(socket, peer, G711::Ulaw, Some(101), watched);
        (session, phone, hangup)
    }

    fn tone(ms: usize) -> Arc<[i16]> {
        (0..ms * 8)
            .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI / 8.0).sin() * 8000.0) as i16)
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[tokio::test]
    async fn a_prompt_reaches_the_phone_in_real_time() {
        let (mut session, mut phone, _hangup) = session_and_phone().await;
        phone.endpoint.start_recording();
        let started = Instant::now();
        let (played, ()) = tokio::join!(
            session.play(tone(600), false),
            phone.run(Duration::from_millis(900))
        );
        played.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(580),
            "paced, not blasted: {took:?}"
        );
        let heard = phone.endpoint.take_recording();
        let loud = heard.chunks(160).filter(|f| rms(f) > 2000.0).count();
        assert!((26..=32).contains(&loud), "~30 frames of tone, got {loud}");
    }

    #[tokio::test]
    async fn keys_pressed_during_an_interruptible_prompt_stop_it_and_are_collected() {
        let (mut session, mut phone, _hangup) = session_and_phone().await;
        let started = Instant::now();
        let script = async {
            session.play(tone(5_000), true).await.unwrap();
            let stopped = started.elapsed();
            let digits = session.collect(&Collect::until_hash(6)).await.unwrap();
            (stopped, digits)
        };
        let caller = async {
            phone.run(Duration::from_millis(200)).await;
            for d in "42#".chars() {
                phone.endpoint.send_digit(d, Duration::from_millis(100));
            }
            phone.run(Duration::from_millis(1_500)).await;
        };
        let ((stopped, digits), ()) = tokio::join!(script, caller);
        assert!(
            stopped < Duration::from_secs(1),
            "the prompt stopped at the key: {stopped:?}"
        );
        assert_eq!(digits, "42");
    }

    #[tokio::test]
    async fn collecting_gives_up_after_the_first_timeout() {
        let (mut session, mut phone, _hangup) = session_and_phone().await;
        let how = Collect {
            first: Duration::from_millis(300),
            ..Collect::until_hash(4)
        };
        let (digits, ()) =
            tokio::join!(session.collect(&how), phone.run(Duration::from_millis(500)));
        assert_eq!(digits.unwrap(), "");
    }

    #[tokio::test]
    async fn a_recording_ends_on_silence_and_leaves_the_silence_out() {
        let (mut session, mut phone, _hangup) = session_and_phone().await;
        let caller = async {
            phone.endpoint.play(tone(1_000));
            phone.run(Duration::from_millis(2_500)).await;
        };
        let (recording, ()) = tokio::join!(
            session.record(Duration::from_secs(10), Duration::from_millis(700)),
            caller
        );
        assert_eq!(recording.ended, RecordEnd::Silence);
        let d = recording.duration();
        assert!(
            d >= Duration::from_millis(850) && d <= Duration::from_millis(1_300),
            "about the second of tone: {d:?}"
        );
        assert!(rms(&recording.samples) > 2000.0, "the tone, not silence");
    }

    #[tokio::test]
    async fn a_recording_ends_on_hash() {
        let (mut session, mut phone, _hangup) = session_and_phone().await;
        let caller = async {
            phone.endpoint.play(tone(500));
            phone.run(Duration::from_millis(600)).await;
            phone.endpoint.send_digit('#', Duration::from_millis(100));
            phone.run(Duration::from_millis(400)).await;
        };
        let (recording, ()) = tokio::join!(
            session.record(Duration::from_secs(10), Duration::from_secs(5)),
            caller
        );
        assert_eq!(recording.ended, RecordEnd::Key('#'));
    }

    #[tokio::test]
    async fn hanging_up_ends_the_script() {
        let (mut session, _phone, hangup) = session_and_phone().await;
        let script = async { session.play(tone(10_000), false).await };
        let hang = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            hangup.send(true).unwrap();
        };
        let (played, ()) = tokio::join!(script, hang);
        assert_eq!(played, Err(HungUp));
    }

    #[tokio::test]
    async fn a_caller_hanging_up_keeps_what_was_recorded() {
        let (mut session, mut phone, hangup) = session_and_phone().await;
        let caller = async {
            phone.endpoint.play(tone(2_000));
            phone.run(Duration::from_millis(700)).await;
            hangup.send(true).unwrap();
        };
        let (recording, ()) = tokio::join!(
            session.record(Duration::from_secs(10), Duration::from_secs(5)),
            caller
        );
        assert_eq!(recording.ended, RecordEnd::HungUp);
        assert!(
            recording.duration() >= Duration::from_millis(500),
            "{:?}",
            recording.duration()
        );
        assert!(rms(&recording.samples) > 2000.0);
    }

    #[tokio::test]
    async fn keys_from_a_stranger_are_ignored() {
        let (mut session, _phone, _hangup) = session_and_phone().await;
        let mut stranger = Phone::new(session.local_addr().unwrap()).await;
        let how = Collect {
            first: Duration::from_millis(600),
            ..Collect::until_hash(4)
        };
        let caller = async {
            stranger
                .endpoint
                .send_digit('9', Duration::from_millis(100));
            stranger.run(Duration::from_millis(700)).await;
        };
        let (digits, ()) = tokio::join!(session.collect(&how), caller);
        assert_eq!(digits.unwrap(), "", "only the relay's port is heard");
    }
}
