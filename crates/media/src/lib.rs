//! Sans-IO media library: RTP/RTCP, codecs, DTMF and the relay engine.
//!
//! Filled by the calls and media-applications issues; like `switchboard-sip` it
//! knows nothing about extensions, databases or sockets.
