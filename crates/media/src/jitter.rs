//! A small reordering buffer for the audio the PBX receives (to record it or detect
//! speech): packets go in as they arrive, one frame comes out per 20 ms tick, in
//! sequence order.
//!
//! Frame-based, not time-based: every packet is taken as one tick of audio (the PBX
//! offers 20 ms packets). Playout starts once `depth` packets follow the first one (or
//! after `depth` ticks), so a packet may arrive up to `depth` ticks late and still be
//! played; a packet not there by then is reported [`Frame::Missing`] without waiting
//! longer, so a loss does not add delay. Latency that builds up after a burst is shed
//! one frame per tick down to twice the depth. The buffer never holds more than
//! [`CAPACITY`] packets: a jump further than that (or more than [`MAX_LATE`] back)
//! restarts it at the new packet instead of waiting for the gap to fill.

/// Packets the buffer can hold (a power of two, so that slots stay in place across the
/// wrap of the 16-bit sequence number).
pub const CAPACITY: usize = 64;
/// Packets after the expected one that make it count as lost (60 ms).
pub const DEFAULT_DEPTH: u16 = 3;
/// How far back a packet may be and still be taken as late rather than as a restarted
/// stream.
pub const MAX_LATE: u16 = 100;
/// The largest depth allowed: twice of it must leave room in the buffer.
const MAX_DEPTH: u16 = CAPACITY as u16 / 4;

/// What one tick plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The packet of this tick.
    Audio {
        sequence: u16,
        timestamp: u32,
        payload: &'a [u8],
    },
    /// The packet of this tick was lost, or came too late to be played.
    Missing { sequence: u16 },
}

/// A slot of the ring; its payload buffer is kept across packets.
#[derive(Debug, Clone, Default)]
struct Slot {
    filled: bool,
    sequence: u16,
    timestamp: u32,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct JitterBuffer {
    depth: u16,
    /// The packet of sequence `s` lives at `s % CAPACITY`. Filled slots are all within
    /// `next .. next + CAPACITY`.
    slots: Vec<Slot>,
    /// The sequence number to play next; `None` before the first packet.
    next: Option<u16>,
    /// The highest sequence number received (`next - 1` when all is played).
    highest: u16,
    /// Filled slots.
    buffered: usize,
    /// Whether the initial fill is done.
    playing: bool,
    /// Ticks spent waiting for `next` (or, before playing, for the fill).
    waited: u16,
    /// Whether nothing was played (or skipped) since the start: packets before `next`
    /// are then early ones of the stream, not late ones.
    fresh: bool,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_DEPTH)
    }
}

impl JitterBuffer {
    /// A buffer that waits up to `depth` packets (clamped to 1–16) for a missing one.
    pub fn new(depth: u16) -> Self {
        Self {
            depth: depth.clamp(1, MAX_DEPTH),
            slots: vec![Slot::default(); CAPACITY],
            next: None,
            highest: 0,
            buffered: 0,
            playing: false,
            waited: 0,
            fresh: true,
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.buffered
    }

    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// Forgets everything, for a new stream (a new SSRC).
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            slot.filled = false;
        }
        self.next = None;
        self.buffered = 0;
        self.playing = false;
        self.waited = 0;
        self.fresh = true;
    }

    /// Takes a received packet (copying its payload). Duplicates and packets older than
    /// the one played last are dropped.
    pub fn push(&mut self, sequence: u16, timestamp: u32, payload: &[u8]) {
        match self.next {
            None => self.restart(sequence),
            Some(next) => {
                let distance = sequence.wrapping_sub(next) as i16;
                if distance < 0 {
                    let behind_highest = self.highest.wrapping_sub(sequence);
                    if self.fresh && behind_highest <= self.depth {
                        // Nothing played yet: the stream's first packets came reordered.
                        self.next = Some(sequence);
                    } else if distance.unsigned_abs() <= MAX_LATE {
                        return;
                    } else {
                        self.restart(sequence);
                    }
                } else if distance as usize >= CAPACITY {
                    self.restart(sequence);
                }
            }
        }
        let slot = &mut self.slots[usize::from(sequence) % CAPACITY];
        if slot.filled {
            // Within the window a filled slot holds this very sequence number.
            return;
        }
        slot.filled = true;
        slot.sequence = sequence;
        slot.timestamp = timestamp;
        slot.payload.clear();
        slot.payload.extend_from_slice(payload);
        self.buffered += 1;
        if sequence.wrapping_sub(self.highest) as i16 > 0 {
            self.highest = sequence;
        }
    }

    /// The frame of this tick: to be called once per 20 ms. `None` when there is nothing
    /// to play yet (no stream, filling, or waiting for a late packet).
    pub fn pop(&mut self) -> Option<Frame<'_>> {
        let next = self.next?;
        let depth = i32::from(self.depth);
        let mut ahead = i32::from(self.highest.wrapping_sub(next) as i16);
        if ahead < 0 {
            // All played: the stream paused. Fill again when it resumes.
            self.playing = false;
            self.waited = 0;
            return None;
        }
        if !self.playing {
            if ahead < depth && self.waited < self.depth {
                self.waited += 1;
                return None;
            }
            self.playing = true;
            self.waited = 0;
        }
        if ahead > 2 * depth {
            // Too much latency: drop the oldest frame.
            self.advance();
            ahead -= 1;
        }
        let next = self.next?;
        let index = usize::from(next) % CAPACITY;
        if self.slots[index].filled {
            self.advance();
            let slot = &self.slots[index];
            return Some(Frame::Audio {
                sequence: slot.sequence,
                timestamp: slot.timestamp,
                payload: &slot.payload,
            });
        }
        if ahead >= depth || self.waited >= self.depth {
            self.advance();
            return Some(Frame::Missing { sequence: next });
        }
        self.waited += 1;
        None
    }

    /// Starts over at `sequence`, forgetting what is held.
    fn restart(&mut self, sequence: u16) {
        self.reset();
        self.next = Some(sequence);
        self.highest = sequence.wrapping_sub(1);
    }

    /// Moves past the next frame, emptying its slot.
    fn advance(&mut self) {
        let Some(next) = self.next else { return };
        let slot = &mut self.slots[usize::from(next) % CAPACITY];
        if slot.filled {
            slot.filled = false;
            self.buffered -= 1;
        }
        self.next = Some(next.wrapping_add(1));
        self.waited = 0;
        self.fresh = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one tick gave, by sequence number.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tick {
        Audio(u16),
        Missing(u16),
        Nothing,
    }

    fn tick(jb: &mut JitterBuffer) -> Tick {
        match jb.pop() {
            Some(Frame::Audio {
                sequence,
                timestamp,
                payload,
            }) => {
                assert_eq!(timestamp, u32::from(sequence) * 160, "timestamp kept");
                assert_eq!(payload, sequence.to_be_bytes(), "payload kept");
                Tick::Audio(sequence)
            }
            Some(Frame::Missing { sequence }) => Tick::Missing(sequence),
            None => Tick::Nothing,
        }
    }

    fn push(jb: &mut JitterBuffer, sequence: u16) {
        jb.push(sequence, u32::from(sequence) * 160, &sequence.to_be_bytes());
    }

    /// Runs the buffer for one tick per entry of `arrivals` (the packets arriving during
    /// that tick, pushed before the tick's pop), then `extra` ticks without arrivals.
    fn run(jb: &mut JitterBuffer, arrivals: &[&[u16]], extra: usize) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for packets in arrivals {
            for &s in *packets {
                push(jb, s);
            }
            ticks.push(tick(jb));
        }
        for _ in 0..extra {
            ticks.push(tick(jb));
        }
        ticks
    }

    fn audio(range: impl IntoIterator<Item = u16>) -> Vec<Tick> {
        range.into_iter().map(Tick::Audio).collect()
    }

    #[test]
    fn plays_in_order_after_filling_to_the_depth() {
        let mut jb = JitterBuffer::default();
        assert_eq!(jb.pop(), None, "no stream yet");
        let arrivals: Vec<Vec<u16>> = (0..10).map(|s| vec![s]).collect();
        let arrivals: Vec<&[u16]> = arrivals.iter().map(Vec::as_slice).collect();
        let ticks = run(&mut jb, &arrivals, 0);
        let mut expected = vec![Tick::Nothing; 3];
        expected.extend(audio(0..7));
        assert_eq!(ticks, expected);
        assert_eq!(jb.len(), 3);
    }

    #[test]
    fn reordered_packets_are_played_in_order() {
        let mut jb = JitterBuffer::default();
        let ticks = run(
            &mut jb,
            &[&[1], &[0], &[2], &[4, 3], &[6], &[5], &[7], &[9, 8]],
            10,
        );
        let played: Vec<_> = ticks.into_iter().filter(|t| *t != Tick::Nothing).collect();
        assert_eq!(played, audio(0..10), "even the first two swapped");
    }

    #[test]
    fn a_lost_packet_is_reported_on_its_tick_without_adding_delay() {
        let mut jb = JitterBuffer::default();
        let ticks = run(
            &mut jb,
            &[&[0], &[1], &[2], &[3], &[4], &[], &[6], &[7], &[8]],
            0,
        );
        assert_eq!(
            ticks,
            [
                Tick::Nothing,
                Tick::Nothing,
                Tick::Nothing,
                Tick::Audio(0),
                Tick::Audio(1),
                Tick::Audio(2),
                Tick::Audio(3),
                Tick::Audio(4),
                Tick::Missing(5),
            ]
        );
        assert_eq!(tick(&mut jb), Tick::Audio(6));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut jb = JitterBuffer::default();
        let ticks = run(&mut jb, &[&[0, 0], &[1], &[1, 0], &[2, 3], &[3, 2, 4]], 10);
        let played: Vec<_> = ticks.into_iter().filter(|t| *t != Tick::Nothing).collect();
        assert_eq!(played, audio(0..5));
        assert!(jb.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut jb = JitterBuffer::default();
        let ticks = run(
            &mut jb,
            &[&[65533], &[65535], &[65534], &[0], &[2], &[1], &[3]],
            10,
        );
        let played: Vec<_> = ticks.into_iter().filter(|t| *t != Tick::Nothing).collect();
        let mut expected = audio(65533..=65535);
        expected.extend(audio(0..4));
        assert_eq!(played, expected);
    }

    #[test]
    fn a_packet_after_its_tick_is_dropped() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[&[0], &[1], &[2], &[3], &[5], &[6], &[7]], 0);
        assert_eq!(tick(&mut jb), Tick::Missing(4));
        push(&mut jb, 4);
        assert_eq!(jb.len(), 3, "4 was not kept");
        assert_eq!(
            run(&mut jb, &[], 5),
            [audio(5..8), vec![Tick::Nothing; 2]].concat()
        );
    }

    #[test]
    fn a_big_jump_restarts_instead_of_waiting() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[&[10], &[11], &[12], &[13], &[14]], 0);
        // The sender jumped (or restarted without a new SSRC): both ways.
        for start in [10_000u16, 9_000] {
            let arrivals: Vec<Vec<u16>> = (start..start + 8).map(|s| vec![s]).collect();
            let arrivals: Vec<&[u16]> = arrivals.iter().map(Vec::as_slice).collect();
            let ticks = run(&mut jb, &arrivals, 0);
            assert_eq!(ticks[..3], [Tick::Nothing; 3], "filling again");
            assert_eq!(ticks[3..], audio(start..start + 5));
        }
    }

    #[test]
    fn a_stream_that_ends_after_a_gap_is_played_out() {
        let mut jb = JitterBuffer::default();
        let ticks = run(&mut jb, &[&[0], &[2]], 8);
        let played: Vec<_> = ticks.into_iter().filter(|t| *t != Tick::Nothing).collect();
        assert_eq!(played, [Tick::Audio(0), Tick::Missing(1), Tick::Audio(2)]);
        // Silence from the sender (nothing to play), then it resumes: filled again.
        assert_eq!(run(&mut jb, &[], 3), [Tick::Nothing; 3]);
        let ticks = run(&mut jb, &[&[3], &[4], &[5], &[6]], 0);
        assert_eq!(
            ticks,
            [Tick::Nothing, Tick::Nothing, Tick::Nothing, Tick::Audio(3)]
        );
    }

    #[test]
    fn latency_after_a_burst_is_shed() {
        let mut jb = JitterBuffer::default();
        // 20 packets at once, then one per tick.
        let burst: Vec<u16> = (0..20).collect();
        let mut arrivals: Vec<Vec<u16>> = vec![burst];
        arrivals.extend((20..60).map(|s| vec![s]));
        let arrivals: Vec<&[u16]> = arrivals.iter().map(Vec::as_slice).collect();
        let ticks = run(&mut jb, &arrivals, 0);
        assert!(
            jb.len() <= 2 * usize::from(DEFAULT_DEPTH) + 1,
            "held {}",
            jb.len()
        );
        // What was played is in order, with nothing missing: frames were dropped, not lost.
        let played: Vec<u16> = ticks
            .iter()
            .map(|t| match t {
                Tick::Audio(s) => *s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(played.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let mut jb = JitterBuffer::default();
        for s in 0..1000u16 {
            push(&mut jb, s);
            assert!(jb.len() <= CAPACITY);
        }
        // The tail of the flood is played, in order, up to the last packet.
        let played: Vec<_> = run(&mut jb, &[], 40)
            .into_iter()
            .filter(|t| *t != Tick::Nothing)
            .collect();
        assert_eq!(played.last(), Some(&Tick::Audio(999)));
        assert!(played.len() >= 3 && played.len() < 40);
        assert!(
            played
                .windows(2)
                .all(|w| matches!(w, [Tick::Audio(a), Tick::Audio(b)] if a < b))
        );
    }

    #[test]
    fn reset_forgets_the_stream() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[&[100], &[101], &[102], &[103]], 0);
        jb.reset();
        assert!(jb.is_empty());
        // Sequence numbers of the new stream are taken whatever they are.
        let ticks = run(&mut jb, &[&[90], &[91], &[92], &[93]], 0);
        assert_eq!(ticks[3], Tick::Audio(90));
    }
}
