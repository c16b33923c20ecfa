//! The PBX's own side of one call's media, sans-IO: what voicemail, the auto attendant
//! and the feature-code prompts play, hear and record.
//!
//! The caller owns the socket and the clock. It sends what [`Endpoint::poll_transmit`]
//! writes, wakes again at [`Endpoint::poll_timeout`], hands every datagram of the call's
//! RTP port to [`Endpoint::on_packet`] and reads [`Endpoint::poll_event`].
//!
//! Everything runs on one 20 ms tick clocked by `poll_transmit`: each tick sends one
//! packet (audio, a telephone-event, or silence when nothing is queued, so that NAT
//! bindings and the relay's latching stay alive) and takes one frame out of the jitter
//! buffer (recorded when recording, dropped otherwise). Ticks fall at the start instant
//! plus n × 20 ms, so pacing does not drift with the caller's wake-ups; a caller late
//! by more than [`MAX_BURST`] ticks sends that many at once and skips the rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dtmf::{DtmfReceiver, DtmfSender, EventPacket, event_of};
use crate::g711::{CLOCK_RATE, G711};
use crate::jitter::{CAPACITY, Frame, JitterBuffer};
use crate::rtp::{self, RtpHeader};
use crate::stream::{FRAME_SAMPLES, PTIME, RtpSender};

/// Packets sent at once by a caller that is late; older missed ticks are skipped.
pub const MAX_BURST: u64 = 5;
/// Level (RMS, relative to a full-scale square wave) above which a received frame is
/// speech rather than line noise.
pub const DEFAULT_SILENCE_THRESHOLD_DBFS: f64 = -45.0;

/// Timestamp units of one tick.
const TICK_SAMPLES: u32 = FRAME_SAMPLES as u32;

/// How the media of one call is set up (from the SDP exchange) and numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The audio codec, in both directions.
    pub codec: G711,
    /// The payload type of telephone-events, in both directions; `None` when the other
    /// side did not accept them (digits are then neither sent nor understood).
    pub dtmf_payload_type: Option<u8>,
    /// Random, drawn by the caller (RFC 3550 §5.1).
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_timestamp: u32,
}

/// What happened on the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The caller pressed a key (reported once per press, at its start).
    Digit(char),
}

/// The PBX's end of one call's RTP stream (see the module documentation).
pub struct Endpoint {
    codec: G711,
    dtmf_payload_type: Option<u8>,

    sender: RtpSender,
    /// The instant of tick 0.
    start: Instant,
    /// The next tick to run.
    tick: u64,
    /// Audio queued to play; the front clip is played from `position`.
    playlist: VecDeque<Arc<[i16]>>,
    position: usize,
    digits: VecDeque<(char, Duration)>,
    dtmf: Option<DtmfSender>,
    /// One frame of audio, then its encoding: reused every tick.
    frame: Vec<i16>,
    payload: Vec<u8>,

    jitter: JitterBuffer,
    /// The SSRC the jitter buffer holds packets of.
    remote_ssrc: Option<u32>,
    dtmf_receiver: DtmfReceiver,
    events: VecDeque<Event>,
    recording: bool,
    recorded: Vec<i16>,
    /// The latest instant passed in: what "now" is for `silence_for`.
    now: Instant,
    last_voice: Instant,
    /// Mean square of a frame's samples above which it is speech.
    voice_mean_square: f64,
}

impl Endpoint {
    /// The first packet is due at `now`.
    pub fn new(config: EndpointConfig, now: Instant) -> Self {
        Self {
            codec: config.codec,
            dtmf_payload_type: config.dtmf_payload_type,
            sender: RtpSender::new(config.ssrc, config.initial_seq, config.initial_timestamp),
            start: now,
            tick: 0,
            playlist: VecDeque::new(),
            position: 0,
            digits: VecDeque::new(),
            dtmf: None,
            frame: Vec::with_capacity(FRAME_SAMPLES),
            payload: Vec::with_capacity(FRAME_SAMPLES),
            jitter: JitterBuffer::default(),
            remote_ssrc: None,
            dtmf_receiver: DtmfReceiver::new(),
            events: VecDeque::new(),
            recording: false,
            recorded: Vec::new(),
            now,
            last_voice: now,
            voice_mean_square: mean_square_of(DEFAULT_SILENCE_THRESHOLD_DBFS),
        }
    }

    /// Queues audio (8 kHz samples) after what is already queued.
    pub fn play(&mut self, pcm: Arc<[i16]>) {
        self.playlist.push_back(pcm);
    }

    /// Drops the queued audio (not the digits): the next packet is silence.
    pub fn stop_playback(&mut self) {
        self.playlist.clear();
        self.position = 0;
    }

    /// Whether queued audio or digits remain to be sent.
    pub fn is_playing(&self) -> bool {
        !self.playlist.is_empty()
            || !self.digits.is_empty()
            || self.dtmf.as_ref().is_some_and(|d| !d.is_done())
    }

    /// Queues a key press as telephone-events, after the digits already queued; audio
    /// pauses while they are sent. False (nothing queued) when telephone-events were not
    /// negotiated or `digit` is not a DTMF key.
    pub fn send_digit(&mut self, digit: char, duration: Duration) -> bool {
        if self.dtmf_payload_type.is_none() || event_of(digit).is_none() {
            return false;
        }
        self.digits.push_back((digit, duration));
        true
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.tick_instant(self.tick)
    }

    /// Writes the packet due at `now` into `out` and returns true, or returns false when
    /// none is due. Call it until it returns false: a late caller gets up to
    /// [`MAX_BURST`] packets in a row.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        self.observe(now);
        let due = self.ticks_due(now);
        if self.tick >= due {
            return false;
        }
        let missed = due - self.tick;
        if missed > MAX_BURST {
            self.skip(missed - MAX_BURST);
        }
        self.tick += 1;
        self.receive_tick();
        self.transmit_tick(out);
        true
    }

    /// Takes a datagram received on the call's RTP port: RTCP and anything not RTP is
    /// ignored, telephone-events become [`Event::Digit`], audio in the codec goes to the
    /// jitter buffer, other payload types (comfort noise, another codec) are ignored.
    pub fn on_packet(&mut self, now: Instant, packet: &[u8]) {
        self.observe(now);
        if rtp::is_rtcp(packet) {
            return;
        }
        let (Some(header), Some(payload)) = (RtpHeader::parse(packet), rtp::payload(packet)) else {
            return;
        };
        if Some(header.payload_type) == self.dtmf_payload_type {
            if let Some(digit) = self.dtmf_receiver.on_packet(&header, payload) {
                self.events.push_back(Event::Digit(digit));
            }
        } else if header.payload_type == self.codec.payload_type() {
            if self.remote_ssrc != Some(header.ssrc) {
                self.jitter.reset();
                self.remote_ssrc = Some(header.ssrc);
            }
            if self.is_voice(payload) {
                self.last_voice = now;
            }
            self.jitter.push(header.sequence, header.timestamp, payload);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts appending the received audio, one frame per tick (lost or missing frames
    /// as silence, so the recording keeps real time), to what was not taken yet. Silence
    /// is measured from here.
    pub fn start_recording(&mut self) {
        self.recording = true;
        self.last_voice = self.now;
    }

    pub fn stop_recording(&mut self) {
        self.recording = false;
    }

    /// The audio recorded since the last call.
    pub fn take_recording(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.recorded)
    }

    /// How long the other side has been quiet, as of the latest instant passed in: since
    /// the last received frame above the silence threshold, or since the start of the
    /// recording (or of the endpoint) when later.
    pub fn silence_for(&self) -> Duration {
        self.now.saturating_duration_since(self.last_voice)
    }

    /// Sets the level, in dBFS (RMS relative to full scale), above which a received
    /// frame counts as speech (default [`DEFAULT_SILENCE_THRESHOLD_DBFS`]).
    pub fn set_silence_threshold(&mut self, dbfs: f64) {
        self.voice_mean_square = mean_square_of(dbfs);
    }

    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn tick_instant(&self, tick: u64) -> Instant {
        self.start + PTIME.saturating_mul(u32::try_from(tick).unwrap_or(u32::MAX))
    }

    /// How many ticks have fallen due by `now` (tick 0 at the start).
    fn ticks_due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        let ticks = elapsed.as_nanos() / PTIME.as_nanos();
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Gives up on `ticks` ticks the caller missed: nothing is sent for them (the queued
    /// audio waits), but the stream's clock and the received audio move on.
    fn skip(&mut self, ticks: u64) {
        self.tick += ticks;
        // Timestamps are modulo 2³², and so may the product be.
        self.sender.skip((ticks as u32).wrapping_mul(TICK_SAMPLES));
        // The jitter buffer holds at most CAPACITY frames; beyond, the ticks are silence.
        let drained = ticks.min(CAPACITY as u64);
        for _ in 0..drained {
            self.receive_tick();
        }
        if self.recording {
            let silent = usize::try_from(ticks - drained).unwrap_or(usize::MAX);
            let len = self
                .recorded
                .len()
                .saturating_add(silent.saturating_mul(FRAME_SAMPLES));
            self.recorded.resize(len, 0);
        }
    }

    /// One frame out of the jitter buffer, into the recording when recording.
    fn receive_tick(&mut self) {
        let frame = self.jitter.pop();
        if !self.recording {
            return;
        }
        match frame {
            Some(Frame::Audio { payload, .. }) => self.codec.decode(payload, &mut self.recorded),
            Some(Frame::Missing { .. }) | None => {
                let len = self.recorded.len() + FRAME_SAMPLES;
                self.recorded.resize(len, 0);
            }
        }
    }

    /// The packet of one tick: a telephone-event while digits are being sent, else the
    /// next frame of the queued audio (padded with silence) or silence.
    fn transmit_tick(&mut self, out: &mut Vec<u8>) {
        if let Some(payload_type) = self.dtmf_payload_type
            && let Some(packet) = self.next_event_packet()
        {
            self.sender
                .telephone_event(payload_type, &packet, TICK_SAMPLES, out);
            return;
        }
        self.frame.clear();
        while self.frame.len() < FRAME_SAMPLES
            && let Some(clip) = self.playlist.front()
        {
            let take = (FRAME_SAMPLES - self.frame.len()).min(clip.len() - self.position);
            self.frame
                .extend_from_slice(&clip[self.position..self.position + take]);
            self.position += take;
            if self.position == clip.len() {
                self.playlist.pop_front();
                self.position = 0;
            }
        }
        self.frame.resize(FRAME_SAMPLES, 0);
        self.payload.clear();
        self.codec.encode(&self.frame, &mut self.payload);
        self.sender
            .audio(self.codec.payload_type(), &self.payload, TICK_SAMPLES, out);
    }

    /// The next packet of the key press being sent, starting the next queued one (at the
    /// stream's current timestamp) when the last one is done.
    fn next_event_packet(&mut self) -> Option<EventPacket> {
        loop {
            if let Some(packet) = self.dtmf.as_mut().and_then(DtmfSender::next_packet) {
                return Some(packet);
            }
            let (digit, duration) = self.digits.pop_front()?;
            self.dtmf = DtmfSender::new(digit, duration, CLOCK_RATE, self.sender.timestamp());
        }
    }

    /// Whether a received payload is louder than the silence threshold.
    fn is_voice(&self, payload: &[u8]) -> bool {
        if payload.is_empty() {
            return false;
        }
        let table = self.codec.table();
        let sum: i64 = payload
            .iter()
            .map(|&code| {
                let s = i64::from(table[usize::from(code)]);
                s * s
            })
            .sum();
        sum as f64 / payload.len() as f64 > self.voice_mean_square
    }
}

/// The mean square of samples whose RMS is `dbfs` below full scale.
fn mean_square_of(dbfs: f64) -> f64 {
    let rms = 32768.0 * 10f64.powf(dbfs / 20.0);
    rms * rms
}

#[cfg(test)]
mod tests;
