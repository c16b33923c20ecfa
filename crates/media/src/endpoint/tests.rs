use super::*;
use crate::dtmf::TelephoneEvent;
use crate::g711::ulaw_encode;

const DTMF_PT: u8 = 101;
const MS: Duration = Duration::from_millis(1);

fn config(ssrc: u32) -> EndpointConfig {
    EndpointConfig {
        codec: G711::Ulaw,
        dtmf_payload_type: Some(DTMF_PT),
        ssrc,
        // Both wrap during the tests.
        initial_seq: 65_530,
        initial_timestamp: u32::MAX - 1000,
    }
}

/// A network between A and B: what becomes of each packet A sends.
type Network<'a> = &'a mut dyn FnMut(Vec<u8>) -> Vec<Vec<u8>>;

fn direct(packet: Vec<u8>) -> Vec<Vec<u8>> {
    vec![packet]
}

/// Two endpoints wired back to back on a fake clock.
struct Call {
    a: Endpoint,
    b: Endpoint,
    start: Instant,
    /// Time of the next wake-up, from `start`.
    at: Duration,
}

impl Call {
    fn new() -> Self {
        let start = Instant::now();
        Self {
            a: Endpoint::new(config(0xaaaa), start),
            b: Endpoint::new(config(0xbbbb), start),
            start,
            at: Duration::ZERO,
        }
    }

    /// Runs both sides for `duration`, waking every 5 ms: A's packets go through
    /// `network` to B, B's straight to A.
    fn run(&mut self, duration: Duration, network: Network<'_>) {
        let end = self.at + duration;
        let mut out = Vec::new();
        while self.at < end {
            let now = self.start + self.at;
            while self.a.poll_transmit(now, &mut out) {
                for packet in network(out.clone()) {
                    self.b.on_packet(now, &packet);
                }
            }
            while self.b.poll_transmit(now, &mut out) {
                self.a.on_packet(now, &out);
            }
            self.at += 5 * MS;
        }
    }
}

/// `samples` of a sine at `frequency` Hz, off zero at the sample instants.
fn tone(frequency: f64, amplitude: f64, samples: usize) -> Arc<[i16]> {
    (0..samples)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0 + 0.3;
            (amplitude * phase.sin()).round() as i16
        })
        .collect()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// The 20 ms frames of a recording louder than -30 dBFS.
fn voiced(recording: &[i16]) -> Vec<&[i16]> {
    recording
        .chunks(FRAME_SAMPLES)
        .filter(|f| rms(f) > 1000.0)
        .collect()
}

fn packet(payload_type: u8, sequence: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type,
        sequence,
        timestamp: u32::from(sequence) * 160,
        ssrc,
    };
    let mut head = [0u8; rtp::HEADER_LEN];
    header.write(&mut head);
    [&head[..], payload].concat()
}

#[test]
fn a_tone_played_by_one_side_is_recorded_by_the_other() {
    let mut call = Call::new();
    call.b.start_recording();
    call.a.play(tone(1000.0, 10_000.0, 8000));
    assert!(call.a.is_playing());
    call.run(1200 * MS, &mut direct);
    assert!(!call.a.is_playing());

    let recording = call.b.take_recording();
    // Ticks at 0, 20, …, 1180 ms: one frame each, in real time.
    assert_eq!(recording.len(), 60 * FRAME_SAMPLES);
    let tone: Vec<i16> = voiced(&recording).concat();
    assert_eq!(tone.len(), 8000, "the whole second, no more");
    let level = rms(&tone);
    assert!((level - 7071.0).abs() < 150.0, "RMS {level}");
    let crossings = tone.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let frequency = crossings as f64 / 2.0 / (tone.len() as f64 / 8000.0);
    assert!((frequency - 1000.0).abs() < 2.0, "{frequency} Hz");
    // The tone is in one piece, behind a little silence (the jitter buffer's fill).
    let start = recording
        .chunks(FRAME_SAMPLES)
        .position(|f| rms(f) > 1000.0)
        .unwrap();
    assert!((3..=5).contains(&start), "starts at frame {start}");
    assert_eq!(recording[start * FRAME_SAMPLES..][..8000], tone[..]);

    assert!(call.b.take_recording().is_empty(), "taken");
}

#[test]
fn digits_are_reported_once_each_despite_duplicates_and_a_lost_end() {
    let mut call = Call::new();
    assert!(call.a.send_digit('1', 100 * MS));
    assert!(call.a.send_digit('#', 100 * MS));
    assert!(call.a.is_playing(), "digits count as playing");
    let mut sent = Vec::new();
    let mut dropped_end = false;
    let mut network = |packet: Vec<u8>| {
        let header = RtpHeader::parse(&packet).unwrap();
        sent.push(header);
        if header.payload_type == DTMF_PT {
            let event = TelephoneEvent::parse(rtp::payload(&packet).unwrap()).unwrap();
            if event.event == 1 && event.end && !dropped_end {
                dropped_end = true;
                return vec![];
            }
        }
        vec![packet.clone(), packet]
    };
    call.run(245 * MS, &mut network);
    assert!(call.a.is_playing(), "13 packets sent, one to go");
    call.run(20 * MS, &mut network);
    assert!(!call.a.is_playing(), "the last end packet sent");
    call.run(235 * MS, &mut network);

    let events: Vec<_> = std::iter::from_fn(|| call.b.poll_event()).collect();
    assert_eq!(events, [Event::Digit('1'), Event::Digit('#')]);
    assert_eq!(call.a.poll_event(), None);

    // Audio and events share one sequence space, without gaps.
    assert!(
        sent.windows(2)
            .all(|w| w[1].sequence == w[0].sequence.wrapping_add(1))
    );
    let events: Vec<_> = sent.iter().filter(|h| h.payload_type == DTMF_PT).collect();
    assert_eq!(events.len(), 14);
    let first = config(0).initial_timestamp;
    assert!(events[..7].iter().all(|h| h.timestamp == first));
    assert!(
        events[7..]
            .iter()
            .all(|h| h.timestamp == first.wrapping_add(7 * 160))
    );
    // Audio resumes afterwards, stamped with the time it is sent at.
    let audio = sent[14];
    assert_eq!(audio.payload_type, 0);
    assert_eq!(audio.timestamp, first.wrapping_add(14 * 160));
}

#[test]
fn silence_is_measured_on_what_is_received() {
    let mut call = Call::new();
    call.run(1000 * MS, &mut direct);
    // A sends silence frames: they keep the stream alive but are not speech.
    assert_eq!(call.b.silence_for(), 995 * MS);

    call.a.play(tone(440.0, 3000.0, 4000));
    call.run(300 * MS, &mut direct);
    assert!(call.b.silence_for() < 20 * MS);
    call.run(1000 * MS, &mut direct);
    // The last loud packet left at 1480 ms; the last wake-up was at 2295 ms.
    assert_eq!(call.b.silence_for(), 815 * MS);

    // Quiet (about -64 dBFS) is silence by default, not with a lower threshold.
    call.a.play(tone(440.0, 30.0, 1600));
    call.run(200 * MS, &mut direct);
    assert!(call.b.silence_for() > 1000 * MS);
    call.b.set_silence_threshold(-70.0);
    call.a.play(tone(440.0, 30.0, 1600));
    call.run(200 * MS, &mut direct);
    assert!(call.b.silence_for() < 20 * MS);

    // Silence counts from the start of a recording.
    call.run(500 * MS, &mut direct);
    assert!(call.b.silence_for() > 300 * MS);
    call.b.start_recording();
    assert_eq!(call.b.silence_for(), Duration::ZERO);
}

#[test]
fn reordered_packets_are_recorded_in_order() {
    // Frames of rising levels, further apart than µ-law's largest step.
    let staircase: Arc<[i16]> = (0..25)
        .flat_map(|k| std::iter::repeat_n(1500 + 1100 * k, FRAME_SAMPLES))
        .collect();
    let record = |network: Network<'_>| {
        let mut call = Call::new();
        call.b.start_recording();
        call.a.play(staircase.clone());
        call.run(1000 * MS, network);
        let recording = call.b.take_recording();
        voiced(&recording)
            .iter()
            .map(|f| f.to_vec())
            .collect::<Vec<_>>()
    };
    let in_order = record(&mut direct);
    assert_eq!(in_order.len(), 25);
    assert!(in_order.windows(2).all(|w| w[0][0] < w[1][0]));

    // Every pair of packets swapped.
    let mut held: Option<Vec<u8>> = None;
    let mut swap = |packet: Vec<u8>| match held.take() {
        Some(earlier) => vec![packet, earlier],
        None => {
            held = Some(packet);
            vec![]
        }
    };
    assert_eq!(record(&mut swap), in_order);
}

#[test]
fn pacing_follows_the_start_without_drift() {
    let t0 = Instant::now();
    let mut a = Endpoint::new(config(1), t0);
    let mut out = Vec::new();
    assert_eq!(a.poll_timeout(), t0);
    assert!(a.poll_transmit(t0, &mut out));
    assert!(!a.poll_transmit(t0, &mut out));
    assert_eq!(a.poll_timeout(), t0 + 20 * MS);
    assert!(!a.poll_transmit(t0 + 19 * MS, &mut out));

    // Wake-ups 13 to 27 ms apart, never on the tick, for 10 s.
    let init = config(1);
    let mut sent = 1u32;
    let mut at = Duration::ZERO;
    let mut state = 7u32;
    while at < Duration::from_secs(10) {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        at += Duration::from_micros(13_000 + u64::from(state >> 16) % 14_000);
        while a.poll_transmit(t0 + at, &mut out) {
            let h = RtpHeader::parse(&out).unwrap();
            assert_eq!(h.sequence, init.initial_seq.wrapping_add(sent as u16));
            assert_eq!(h.timestamp, init.initial_timestamp.wrapping_add(sent * 160));
            assert!(!h.marker);
            sent += 1;
        }
        assert!(a.poll_timeout() > t0 + at);
    }
    assert_eq!(u128::from(sent), at.as_millis() / 20 + 1);
}

#[test]
fn a_late_caller_gets_a_short_burst_then_skips() {
    let t0 = Instant::now();
    let init = config(1);
    let mut a = Endpoint::new(init, t0);
    let mut out = Vec::new();
    assert!(a.poll_transmit(t0, &mut out));
    a.play(Arc::from(vec![8000i16; 2 * FRAME_SAMPLES]));

    // 200 ms late: ticks 1–10 are due.
    let mut burst = Vec::new();
    while a.poll_transmit(t0 + 200 * MS, &mut out) {
        burst.push((RtpHeader::parse(&out).unwrap(), out[rtp::HEADER_LEN]));
    }
    assert_eq!(burst.len(), MAX_BURST as usize);
    let (first, code) = burst[0];
    assert!(first.marker, "a new spurt after the gap");
    assert_eq!(
        first.sequence,
        init.initial_seq.wrapping_add(1),
        "no sequence gap"
    );
    assert_eq!(
        first.timestamp,
        init.initial_timestamp.wrapping_add(6 * 160)
    );
    assert_eq!(code, ulaw_encode(8000), "the queued audio was not skipped");
    assert_eq!(burst[1].1, ulaw_encode(8000));
    assert_eq!(burst[2].1, ulaw_encode(0));
    let (last, _) = burst[4];
    assert_eq!(
        last.timestamp,
        init.initial_timestamp.wrapping_add(10 * 160)
    );
    assert_eq!(a.poll_timeout(), t0 + 220 * MS);
}

#[test]
fn a_recording_keeps_real_time_when_the_caller_is_very_late() {
    let t0 = Instant::now();
    let mut b = Endpoint::new(config(2), t0);
    b.start_recording();
    let mut out = Vec::new();
    while b.poll_transmit(t0 + Duration::from_secs(10), &mut out) {}
    assert_eq!(b.take_recording().len(), 501 * FRAME_SAMPLES);
}

#[test]
fn playback_queues_in_order_pads_the_last_frame_and_stops() {
    let t0 = Instant::now();
    let mut a = Endpoint::new(config(1), t0);
    let mut out = Vec::new();
    let mut tick = 0;
    let mut next = |a: &mut Endpoint, out: &mut Vec<u8>| {
        assert!(a.poll_transmit(t0 + 20 * MS * tick, out));
        tick += 1;
        rtp::payload(out).unwrap().to_vec()
    };

    a.play(Arc::from(vec![1000i16; 200]));
    a.play(Arc::from(vec![-1000i16; 100]));
    let payload = next(&mut a, &mut out);
    assert_eq!(payload, [ulaw_encode(1000); 160]);
    assert!(a.is_playing());
    let payload = next(&mut a, &mut out);
    let expected = [
        vec![ulaw_encode(1000); 40],
        vec![ulaw_encode(-1000); 100],
        vec![ulaw_encode(0); 20],
    ]
    .concat();
    assert_eq!(payload, expected);
    assert!(!a.is_playing());
    assert_eq!(
        next(&mut a, &mut out),
        [0xff; 160],
        "silence keeps the stream alive"
    );

    a.play(Arc::from(vec![1000i16; 8000]));
    next(&mut a, &mut out);
    a.stop_playback();
    assert!(!a.is_playing());
    assert_eq!(next(&mut a, &mut out), [0xff; 160]);
    // An empty clip is skipped over.
    a.play(Arc::from(Vec::new()));
    a.play(Arc::from(vec![1000i16; 160]));
    assert_eq!(next(&mut a, &mut out), [ulaw_encode(1000); 160]);
}

#[test]
fn a_law_sends_its_own_payload_type_and_silence() {
    let t0 = Instant::now();
    let mut a = Endpoint::new(
        EndpointConfig {
            codec: G711::Alaw,
            ..config(1)
        },
        t0,
    );
    let mut out = Vec::new();
    assert!(a.poll_transmit(t0, &mut out));
    let h = RtpHeader::parse(&out).unwrap();
    assert_eq!((h.payload_type, h.marker), (8, true));
    assert_eq!(rtp::payload(&out).unwrap(), [0xd5; 160]);
}

#[test]
fn digits_need_negotiated_telephone_events() {
    let t0 = Instant::now();
    let without = EndpointConfig {
        dtmf_payload_type: None,
        ..config(1)
    };
    let mut a = Endpoint::new(without, t0);
    assert!(!a.send_digit('5', 100 * MS));
    let mut out = Vec::new();
    assert!(a.poll_transmit(t0, &mut out));
    assert_eq!(RtpHeader::parse(&out).unwrap().payload_type, 0);
    let event = TelephoneEvent {
        event: 5,
        end: false,
        volume: 10,
        duration: 160,
    };
    a.on_packet(t0, &packet(DTMF_PT, 1, 9, &event.write()));
    assert_eq!(a.poll_event(), None);

    let mut b = Endpoint::new(config(2), t0);
    assert!(!b.send_digit('x', 100 * MS));
    b.on_packet(t0, &packet(DTMF_PT, 1, 9, &event.write()));
    assert_eq!(b.poll_event(), Some(Event::Digit('5')));
}

#[test]
fn rtcp_garbage_and_other_payload_types_are_ignored() {
    let t0 = Instant::now();
    let mut b = Endpoint::new(config(2), t0);
    b.start_recording();
    let mut out = Vec::new();
    let loud = [ulaw_encode(20_000); 160];
    for tick in 0..20u16 {
        let now = t0 + 20 * MS * u32::from(tick);
        b.on_packet(now, &[0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]); // RTCP sender report
        b.on_packet(now, b"hello");
        b.on_packet(now, &packet(8, tick, 9, &loud)); // PCMA, not negotiated here
        b.on_packet(now, &packet(13, tick, 9, &[40])); // comfort noise
        assert!(b.poll_transmit(now, &mut out));
    }
    assert_eq!(b.poll_event(), None);
    assert_eq!(b.silence_for(), 380 * MS);
    let recording = b.take_recording();
    assert_eq!(recording.len(), 20 * FRAME_SAMPLES);
    assert!(recording.iter().all(|&s| s == 0));
}

#[test]
fn a_new_ssrc_starts_a_new_stream() {
    let t0 = Instant::now();
    let mut b = Endpoint::new(config(2), t0);
    b.start_recording();
    let mut out = Vec::new();
    let first = [ulaw_encode(8000); 160];
    let second = [ulaw_encode(-8000); 160];
    for tick in 0..40u16 {
        let now = t0 + 20 * MS * u32::from(tick);
        // After a re-INVITE the new stream's numbers are behind the old ones: without
        // starting over they would all be taken for late packets.
        let datagram = match tick {
            0..20 => packet(0, 1000 + tick, 1, &first),
            _ => packet(0, 950 + tick, 2, &second),
        };
        b.on_packet(now, &datagram);
        assert!(b.poll_transmit(now, &mut out));
    }
    let recording = b.take_recording();
    let frames: Vec<i16> = voiced(&recording).iter().map(|f| f[0]).collect();
    // Each stream fills the jitter buffer (3 ticks); what the old one still held when
    // the new one came is dropped.
    let level = |code| crate::g711::ulaw_decode(code);
    let expected = [vec![level(first[0]); 17], vec![level(second[0]); 17]].concat();
    assert_eq!(frames, expected);
}
