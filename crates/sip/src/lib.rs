//! Sans-IO SIP library: bytes and time in, bytes, timers and events out.
//!
//! No sockets, no async runtime, no clock, no PBX knowledge. The parts:
//! [`parse`] (bytes → [`Message`]), [`message`] (model, typed header access, writer),
//! [`uri`], [`header`], [`digest`] (authentication), [`validate`] (what a UAS checks
//! before acting), [`sdp`], the RFC 3261 §17 transactions and [`dialog`] state.

pub mod dialog;
pub mod digest;
pub mod error;
pub mod header;
pub mod message;
pub mod method;
pub mod params;
pub mod parse;
mod parsed;
pub mod sdp;
pub mod text;
pub mod transaction;
pub mod uri;
pub mod validate;

pub use bytestring::ByteString;
pub use error::{ErrorKind, ParseError};
pub use header::{Header, HeaderName};
pub use message::{Message, StartLine};
pub use method::Method;
pub use parse::{Framed, parse_datagram, parse_stream};
pub use uri::{Host, SipUri, Uri};
