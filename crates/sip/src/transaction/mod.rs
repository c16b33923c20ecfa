//! RFC 3261 §17 transactions, with the RFC 6026 Accepted states, sans-IO.
//!
//! Each transaction is a state machine driven by three kinds of input: a message
//! from the network, a message from the transaction user (TU), and the passage of
//! time. Time is an [`Instant`](std::time::Instant) passed in by the caller; every
//! method returns the [`Output`]s to act on, and `poll_timeout` tells when to call
//! `handle_timeout` next. [`TransactionLayer`] keeps many transactions, matches
//! incoming messages to them by [`TransactionKey`] and merges their timers.
//!
//! Not here: the transport (the caller sends [`Output::Send`] to the right place:
//! for a server transaction by the top Via per §18.2.2, for a client one to where the
//! request went), transport failures (§17.1.4: the caller drops the transaction with
//! [`TransactionLayer::remove`] and tells its TU), and randomness (branches come from
//! the caller, see [`branch_from`]).

mod client;
mod key;
mod layer;
mod server;
mod timers;

#[cfg(test)]
mod testutil;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::ParseError;
use crate::header::via::BRANCH_COOKIE;
use crate::message::Message;

pub use client::{ClientTransaction, ack_for, cancel_for};
pub use key::{Side, TransactionKey};
pub use layer::{Incoming, TransactionLayer};
pub use server::ServerTransaction;
pub use timers::Timers;

/// What a transaction asks its caller to do.
// `Deliver` holds a whole Message: an output lives only until the caller acts on it,
// and boxing it would allocate for every message a transaction delivers.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Put this message on the wire to the transaction's peer, as it goes. A
    /// transaction keeps what it may send again serialized, once, rather than as a
    /// `Message` copied for each send.
    Send(Bytes),
    /// Hand this message to the TU: a response for a client transaction, a new
    /// request or an ACK of a 2xx for a server one.
    Deliver(Message),
    /// Timer B, F or H fired: the peer never answered (or never acknowledged). The
    /// TU of a client transaction treats it as a 408 (§8.1.3.1). `Terminated` follows.
    TimedOut,
    /// The transaction is over and can be dropped ([`TransactionLayer`] already has).
    Terminated,
}

/// Transaction states (§17.1.1, §17.1.2, §17.2.1, §17.2.2; `Accepted` is RFC 6026).
/// Each machine uses a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client: the request is out, nothing heard yet.
    Calling,
    /// Non-INVITE client or server: nothing heard (client) / nothing sent (server).
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response (any for non-INVITE, non-2xx for INVITE): absorbing
    /// retransmissions.
    Completed,
    /// INVITE server: the ACK of its non-2xx final response arrived.
    Confirmed,
    /// INVITE, after a 2xx (RFC 6026): Timer L (server) or M (client) running.
    Accepted,
    Terminated,
}

/// Settings shared by every transaction of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub timers: Timers,
    /// When an INVITE server transaction sends `100 Trying` by itself if the TU has
    /// sent no response yet (§17.2.1 says 200 ms); `None` leaves it to the TU.
    pub trying_delay: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            trying_delay: Some(Duration::from_millis(200)),
        }
    }
}

/// Why a message cannot start or be matched to a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionError {
    /// A header transactions need (Via, CSeq, Call-ID, From, To) is missing or bad.
    Malformed(ParseError),
    /// A response where a request was expected.
    NotARequest,
    /// A request where a response was expected.
    NotAResponse,
    /// ACK never starts a transaction: the TU sends the ACK of a 2xx itself and the
    /// client transaction sends the ACK of any other final response (§17.1.1.3).
    AckStartsNoTransaction,
    /// The CSeq method differs from the request method.
    MethodMismatch,
    /// The top Via has no RFC 3261 branch (`z9hG4bK…`); client requests need one.
    NoBranch,
    /// A transaction with this key already exists (the branch was reused).
    Duplicate,
    /// The helper wants a CANCEL request.
    NotACancel,
}

impl From<ParseError> for TransactionError {
    fn from(e: ParseError) -> Self {
        Self::Malformed(e)
    }
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "{e}"),
            Self::NotARequest => f.write_str("not a request"),
            Self::NotAResponse => f.write_str("not a response"),
            Self::AckStartsNoTransaction => f.write_str("ACK does not start a transaction"),
            Self::MethodMismatch => f.write_str("CSeq method differs from the request method"),
            Self::NoBranch => f.write_str("top Via has no RFC 3261 branch"),
            Self::Duplicate => f.write_str("a transaction with this key exists"),
            Self::NotACancel => f.write_str("not a CANCEL request"),
        }
    }
}

impl std::error::Error for TransactionError {}

/// An RFC 3261 branch (`z9hG4bK` + 16 hex digits) derived from `seed`. The crate
/// has no randomness: the caller passes random bytes, or a secret plus a counter.
/// Equal seeds give equal branches, so seeds must be unique. 64 bits keep the
/// branches of the transactions alive at once apart, and 23 characters fit a
/// transaction key's inline string (see `key`).
pub fn branch_from(seed: &[u8]) -> String {
    let digest = Sha256::digest(seed);
    let mut bits = [0u8; 8];
    bits.copy_from_slice(&digest[..8]);
    branch_of(u64::from_be_bytes(bits))
}

/// An RFC 3261 branch of 64 bits the caller made random, written as they are: a
/// hash (as [`branch_from`] spends on a seed that may be guessable) adds nothing to
/// random bits, and a B2BUA makes a branch for every request it sends.
pub fn branch_of(bits: u64) -> String {
    let mut out = String::with_capacity(BRANCH_COOKIE.len() + 16);
    out.push_str(BRANCH_COOKIE);
    crate::text::push_hex(&mut out, bits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Via;

    #[test]
    fn branches() {
        let a = branch_from(b"seed-1");
        assert_eq!(a, branch_from(b"seed-1"));
        assert_ne!(a, branch_from(b"seed-2"));
        assert_eq!(a.len(), 7 + 16);
        let via = Via::parse(&format!("SIP/2.0/UDP h;branch={a}")).unwrap();
        assert!(via.has_rfc3261_branch());
        assert_eq!(branch_of(0x0123_4567_89ab_cdef), "z9hG4bK0123456789abcdef");
    }
}
