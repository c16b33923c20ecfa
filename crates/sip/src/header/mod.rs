//! Headers: the name, the value as text, and typed views of the ones the PBX uses.

pub mod auth;
pub mod misc;
pub mod name;
pub mod name_addr;
pub mod via;

use bytestring::ByteString;

pub use auth::{AuthHeader, DigestChallenge, DigestCredentials};
pub use misc::{CSeq, Event, MediaType, Replaces, SubscriptionState};
pub use name::HeaderName;
pub use name_addr::{Contacts, NameAddr};
pub use via::Via;

/// One header line: folding undone, surrounding whitespace removed. The value
/// shares the received buffer when it could be taken as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: ByteString,
}

impl Header {
    pub fn new(name: HeaderName, value: impl Into<ByteString>) -> Self {
        Self {
            name,
            value: value.into(),
        }
    }
}
