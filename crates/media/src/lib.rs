//! Sans-IO media library: RTP/RTCP, codecs, DTMF and the relay engine.
//!
//! Like `switchboard-sip` it knows nothing about extensions, databases or sockets: the
//! server reads packets, asks this crate what to do with them, and sends.

pub mod ports;
pub mod relay;
pub mod rtp;
