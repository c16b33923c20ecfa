//! Sans-IO media library: RTP/RTCP, G.711, RFC 4733 DTMF, WAV, jitter buffering, the
//! relay engine, and the PBX's own RTP endpoint built from them (for voicemail, the auto
//! attendant and prompts).
//!
//! Like `switchboard-sip` it knows nothing about extensions, databases or sockets: the
//! server reads packets, asks this crate what to do with them, and sends. Time is passed
//! in as `Instant`s; randomness (SSRCs, initial sequence numbers) by the caller.

pub mod dtmf;
pub mod endpoint;
pub mod g711;
pub mod jitter;
pub mod ports;
pub mod relay;
pub mod rtp;
pub mod stream;
pub mod wav;
