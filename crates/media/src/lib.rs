//! Sans-IO media library: RTP/RTCP, G.711, RFC 4733 DTMF, WAV, jitter buffering, the
//! relay engine, and the PBX's own RTP endpoint built from them (for voicemail, the auto
//! attendant and prompts); and the WebRTC side of the media gateway ([`webrtc`]), which
//! terminates a browser phone's ICE-lite/DTLS-SRTP audio (via str0m) so that its G.711
//! and telephone-events can be bridged to plain RTP without transcoding.
//!
//! Like `switchboard-sip` it knows nothing about extensions, databases or sockets: the
//! server reads packets, asks this crate what to do with them, and sends. Time is passed
//! in as `Instant`s; randomness (SSRCs, initial sequence numbers) by the caller, except in
//! the WebRTC gateway, where str0m draws its ICE credentials and SSRCs and the DTLS key
//! comes from the OS.

pub mod dtmf;
pub mod endpoint;
pub mod g711;
pub mod jitter;
pub mod ports;
pub mod relay;
pub mod rtp;
pub mod stream;
pub mod wav;
pub mod webrtc;
