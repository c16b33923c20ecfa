//! The checks a UAS makes before acting on a request (RFC 3261 §8.2, RFC 4475 §3.3):
//! mandatory headers present and single, hop count, method, URI scheme, body type,
//! required extensions. Each failure is the response to send.

use crate::header::HeaderName;
use crate::message::Message;
use crate::method::Method;
use crate::uri::Uri;

/// What the element supports; the validation answers everything else.
#[derive(Debug, Clone)]
pub struct UasPolicy<'a> {
    /// Methods handled here; others get 405 (known methods) or 501 (unknown ones).
    pub methods: &'a [Method],
    /// Option tags the element supports (for `Require`).
    pub supported: &'a [&'a str],
    /// Body types accepted, as `type/subtype`.
    pub accept: &'a [&'a str],
}

/// A request refused: the status code, reason phrase and headers to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
    pub headers: Vec<(HeaderName, String)>,
}

impl Rejection {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

const KNOWN: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Register,
    Method::Options,
    Method::Info,
    Method::Update,
    Method::Prack,
    Method::Subscribe,
    Method::Notify,
    Method::Refer,
    Method::Message,
    Method::Publish,
];

/// Checks a parsed request (its syntax was checked by the parser).
pub fn validate_request(req: &Message, policy: &UasPolicy<'_>) -> Result<(), Rejection> {
    let Some(method) = req.method() else {
        return Err(Rejection::new(400, "Not a request"));
    };
    let bad = |e: crate::ParseError| Rejection::new(400, e.message);
    if req.header(&HeaderName::Via).is_none() {
        return Err(Rejection::new(400, "Missing Via header"));
    }
    req.from_addr().map_err(bad)?;
    req.to_addr().map_err(bad)?;
    req.call_id().map_err(bad)?;
    req.cseq().map_err(bad)?;
    req.content_length().map_err(bad)?;
    let max_forwards = req.max_forwards().map_err(bad)?;

    if max_forwards == Some(0) {
        return Err(Rejection::new(483, "Too Many Hops"));
    }
    if !policy.methods.contains(method) {
        let allow = policy
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let code = if KNOWN.contains(method) { 405 } else { 501 };
        return Err(Rejection::new(
            code,
            if code == 405 {
                "Method Not Allowed"
            } else {
                "Not Implemented"
            },
        )
        .with(HeaderName::Allow, allow));
    }
    if let Some(Uri::Other { scheme, .. }) = req.uri() {
        return Err(Rejection::new(
            416,
            format!("Unsupported URI Scheme {scheme}"),
        ));
    }
    if !req.body.is_empty() && *method != Method::Ack {
        let accepted = match req.content_type().map_err(bad)? {
            Some(ct) => policy
                .accept
                .iter()
                .any(|a| a.split_once('/').is_some_and(|(k, s)| ct.is(k, s))),
            None => false,
        };
        if !accepted {
            return Err(Rejection::new(415, "Unsupported Media Type")
                .with(HeaderName::Accept, policy.accept.join(", ")));
        }
    }
    if *method != Method::Ack && *method != Method::Cancel {
        let required = if req.header(&HeaderName::Require).is_some() {
            req.tokens(&HeaderName::Require).map_err(bad)?
        } else {
            Vec::new()
        };
        let unsupported: Vec<String> = required
            .into_iter()
            .filter(|r| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(r)))
            .collect();
        if !unsupported.is_empty() {
            return Err(Rejection::new(420, "Bad Extension")
                .with(HeaderName::Unsupported, unsupported.join(", ")));
        }
    }
    Ok(())
}
