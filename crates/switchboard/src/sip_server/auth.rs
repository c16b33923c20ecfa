//! Digest authentication of what phones send (RFC 3261 §22, RFC 8760): the registrar
//! checks REGISTER with 401 / `Authorization`, the call engine INVITE and other
//! out-of-dialog requests with 407 / `Proxy-Authorization`. Nonces are stateless and
//! bound to the source address; nonce counts are remembered to refuse replays.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use switchboard_sip::Message;
use switchboard_sip::digest::{self, Algorithm, DigestFailure, NonceCheck};
use switchboard_sip::header::{DigestChallenge, DigestCredentials, HeaderName, Via};

use super::SipCore;
use super::credentials::SipCredential;
use crate::features::security::{Protocol, Signal};
use crate::time::Timestamp;

/// Which challenge a request gets (§22.1 for a registrar or UAS, §22.3 for a proxy,
/// which is what a PBX is to a phone that places a call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenger {
    /// 401 with `WWW-Authenticate`, answered with `Authorization`.
    Registrar,
    /// 407 with `Proxy-Authenticate`, answered with `Proxy-Authorization`.
    Proxy,
}

impl Challenger {
    fn code(self) -> u16 {
        match self {
            Self::Registrar => 401,
            Self::Proxy => 407,
        }
    }

    fn challenge_header(self) -> HeaderName {
        match self {
            Self::Registrar => HeaderName::WwwAuthenticate,
            Self::Proxy => HeaderName::ProxyAuthenticate,
        }
    }

    fn credentials_header(self) -> HeaderName {
        match self {
            Self::Registrar => HeaderName::Authorization,
            Self::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// The result of checking a request's credentials.
#[derive(Debug)]
pub enum Verdict {
    /// The credentials are right for `user`, an active extension.
    Authenticated(Arc<SipCredential>),
    /// Answer with a fresh challenge (`stale`: the nonce only expired, §22.4).
    Challenge { stale: bool },
    /// Answer 403 with this reason. `bad_password`: the digest itself was wrong.
    Forbidden {
        why: &'static str,
        bad_password: bool,
    },
    /// The extension is not in the credential cache: look it up and check again.
    Lookup,
}

/// Checks the digest credentials `req` carries for `user` (the extension the request
/// claims to come from). `known`: the credentials when the caller already looked them up.
pub fn check(
    core: &SipCore,
    req: &Message,
    source: IpAddr,
    user: &str,
    challenger: Challenger,
    known: Option<Option<Arc<SipCredential>>>,
) -> Verdict {
    let creds = req
        .auth_headers(&challenger.credentials_header())
        .unwrap_or_default()
        .iter()
        .filter_map(|h| DigestCredentials::from_header(h).ok())
        .find(|c| c.realm == core.realm);
    let Some(creds) = creds else {
        return Verdict::Challenge { stale: false };
    };
    let now = now_secs();
    match core
        .nonces
        .check(&creds.nonce, now, source, core.nonce_lifetime)
    {
        NonceCheck::Valid => {}
        NonceCheck::Stale => return Verdict::Challenge { stale: true },
        NonceCheck::Invalid => return Verdict::Challenge { stale: false },
    }
    if creds.username != user {
        return Verdict::Forbidden {
            why: "Credentials do not match the address of record",
            bad_password: false,
        };
    }
    let secret = match known {
        Some(s) => s,
        None => match core.credentials.cached(user) {
            Some(s) => s,
            None => return Verdict::Lookup,
        },
    };
    // Unknown and wrong password look the same, so numbers cannot be probed.
    let failed = Verdict::Forbidden {
        why: "Authentication failed",
        bad_password: true,
    };
    let threats = &core.app.threats;
    let Some(secret) = secret else {
        threats.signal(
            source,
            Protocol::Sip,
            Signal::UnknownExtension(user.to_owned()),
        );
        return failed;
    };
    let Some(algorithm) = Algorithm::from_param(creds.algorithm.as_deref())
        .filter(|a| core.digest_algorithms.contains(a))
    else {
        return Verdict::Challenge { stale: false };
    };
    let realm_ok = secret.realm.as_deref() == Some(core.realm.as_str());
    let Some(ha1) = secret.ha1(algorithm).filter(|_| realm_ok) else {
        if !realm_ok && secret.ha1_md5.is_some() {
            tracing::warn!(extension = %user, "SIP secret was set for another realm; rotate it");
        }
        threats.signal(source, Protocol::Sip, Signal::FailedAuth("SIP digest"));
        return failed;
    };
    let method = req.method().map(|m| m.as_str()).unwrap_or_default();
    match digest::verify(&creds, ha1, method) {
        Ok(_) => {}
        Err(DigestFailure::Qop) => return Verdict::Challenge { stale: false },
        Err(_) => {
            tracing::info!(extension = %user, %source, method, "wrong digest credentials");
            threats.signal(source, Protocol::Sip, Signal::FailedAuth("SIP digest"));
            return failed;
        }
    }
    let Some(nc) = creds.nc_value() else {
        return Verdict::Challenge { stale: false };
    };
    if !core.accept_nonce_count(&creds.nonce, nc, request_tag(core, req), now) {
        tracing::info!(extension = %user, %source, "replayed nonce count refused");
        return Verdict::Challenge { stale: false };
    }
    if !secret.active {
        return Verdict::Forbidden {
            why: "Extension is deactivated",
            bad_password: false,
        };
    }
    Verdict::Authenticated(secret)
}

/// A 401 or 407 to `req` with a fresh nonce, one challenge per algorithm offered.
pub fn challenge(
    core: &SipCore,
    req: &Message,
    source: IpAddr,
    stale: bool,
    challenger: Challenger,
) -> Message {
    let mut resp = core.response(req, challenger.code(), None);
    push_challenges(core, &mut resp, source, stale, challenger);
    resp
}

/// A 407 to an INVITE that carries no credentials at all, sent without a
/// transaction (RFC 3261 §8.2.7, as a stateless proxy challenges): a phone's first
/// INVITE of every call is answered so, and a transaction that would only wait for
/// the ACK of its 407 is spared. `None` when the INVITE needs the call engine: it
/// carries credentials (checked there) or is within a dialog.
pub fn stateless_challenge(core: &SipCore, invite: &Message, source: IpAddr) -> Option<Message> {
    let out_of_dialog = invite.to_addr().is_ok_and(|to| to.tag().is_none());
    let uncredentialed = invite
        .header(&Challenger::Proxy.credentials_header())
        .is_none();
    if !(out_of_dialog && uncredentialed) {
        return None;
    }
    let code = Challenger::Proxy.code();
    let mut resp = core.response_tagged(invite, code, None, core.challenge_tag(invite));
    push_challenges(core, &mut resp, source, false, Challenger::Proxy);
    Some(resp)
}

/// One challenge header per algorithm offered, with a fresh nonce bound to `source`.
fn push_challenges(
    core: &SipCore,
    resp: &mut Message,
    source: IpAddr,
    stale: bool,
    challenger: Challenger,
) {
    let nonce = core.nonces.issue(now_secs(), source, rand::random());
    // RFC 8760: in order of preference (sip.digest_algorithms). Browser SIP stacks know
    // only MD5 and read one challenge each (JsSIP the last, SIP.js the first), so over
    // a WebSocket MD5 alone is offered when it is offered at all.
    let browser = resp
        .header(&HeaderName::Via)
        .is_some_and(|v| v.starts_with("SIP/2.0/WS"))
        && core.digest_algorithms.contains(&Algorithm::Md5);
    let offered = core
        .challenges
        .iter()
        .filter(|t| t.stale == stale && (!browser || t.algorithm == Algorithm::Md5));
    for t in offered {
        let mut value = String::with_capacity(t.before.len() + nonce.len() + t.after.len());
        value.push_str(&t.before);
        value.push_str(&nonce);
        value.push_str(&t.after);
        resp.push(challenger.challenge_header(), value);
    }
}

/// A challenge value rendered once with the nonce left out: the header of every 401
/// or 407 is then two copies and the nonce (which is base64url, never escaped).
pub struct ChallengeTemplate {
    stale: bool,
    algorithm: Algorithm,
    before: String,
    after: String,
}

impl ChallengeTemplate {
    pub fn all(realm: &str, algorithms: &[Algorithm]) -> Vec<Self> {
        const HOLE: &str = "\u{1}";
        let mut out = Vec::new();
        for stale in [false, true] {
            for &algorithm in algorithms {
                let text = DigestChallenge {
                    realm: realm.into(),
                    nonce: HOLE.into(),
                    opaque: None,
                    stale,
                    algorithm: Some(algorithm.name().into()),
                    qop: vec!["auth".into()],
                }
                .to_header()
                .to_string();
                let (before, after) = text.split_once(HOLE).expect("the nonce is in the header");
                out.push(Self {
                    stale,
                    algorithm,
                    before: before.to_owned(),
                    after: after.to_owned(),
                });
            }
        }
        out
    }
}

fn now_secs() -> u64 {
    (Timestamp::now().millis() / 1000).max(0) as u64
}

/// A stable number for "this request", to tell a retransmission from a replay.
fn request_tag(core: &SipCore, req: &Message) -> u64 {
    let via = req.top_via().ok();
    core.hasher.hash_one((
        via.as_deref().and_then(Via::branch),
        req.header(&HeaderName::CallId),
        req.header(&HeaderName::CSeq),
    ))
}
