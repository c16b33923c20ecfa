//! Matching messages to transactions (RFC 3261 §17.1.3, §17.2.3).

use compact_str::CompactString;

use crate::header::Via;
use crate::message::Message;
use crate::method::Method;

use super::TransactionError;

/// Which end of the transaction this element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// We sent the request.
    Client,
    /// We received the request.
    Server,
}

/// What identifies a transaction. Server keys follow §17.2.3: the top Via branch,
/// its sent-by and the method (ACK counts as INVITE, CANCEL is its own transaction),
/// or without an RFC 3261 branch the RFC 2543 fields. Client keys follow §17.1.3:
/// branch and CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    side: Side,
    method: Method,
    id: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    /// Branch, lowercased (§7.3.1 makes parameter values case-insensitive), and the
    /// digest of the lowercased sent-by ([`Via::sent_by_digest`]). Client keys leave
    /// sent-by 0 (it is our own).
    ///
    /// The branch is a `CompactString`: up to 24 bytes (ours, and most phones') it
    /// lives inline, so making, cloning and comparing keys allocates nothing; a key
    /// is made for every message and cloned into the layer's map, its deadline index
    /// and the engine's. The
    /// sent-by only tells apart clients that chose the same branch (the branch is
    /// meant to be unique by itself), for which 64 bits are plenty.
    Branch {
        branch: CompactString,
        sent_by: u64,
    },
    Rfc2543(Box<Rfc2543>),
}

/// §17.2.3 for requests without the magic cookie: Request-URI, To tag, From tag,
/// Call-ID, CSeq number and top Via. INVITE and ACK leave the To tag out: the ACK
/// carries the tag of our response, which the INVITE lacked, so the transaction
/// checks it instead ([`TransactionKey::server`] docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rfc2543 {
    request_uri: String,
    to_tag: Option<String>,
    from_tag: Option<String>,
    call_id: String,
    cseq: u32,
    /// Transport, sent-by and branch of the top Via: `received`/`rport`, which we
    /// may have added ourselves, do not take part.
    via: String,
}

impl TransactionKey {
    /// The key of the server transaction a received request belongs to (or creates).
    /// An ACK gets the key of its INVITE. For RFC 2543 requests the ACK's To tag must
    /// also equal that of the final response, which [`super::TransactionLayer`]
    /// checks.
    pub fn server(request: &Message) -> Result<Self, TransactionError> {
        let method = match request.method().ok_or(TransactionError::NotARequest)? {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let via = request.top_via()?;
        let id = if via.has_rfc3261_branch() {
            Id::Branch {
                branch: lowercase(via.branch().unwrap_or_default()),
                sent_by: via.sent_by_digest(),
            }
        } else {
            Id::Rfc2543(Box::new(rfc2543(request, &via, &method)?))
        };
        Ok(Self {
            side: Side::Server,
            method,
            id,
        })
    }

    /// The key of the client transaction of a request we send, or that a received
    /// response belongs to: top Via branch and CSeq method. Fails without an RFC 3261
    /// branch, which every request we send has.
    pub fn client(message: &Message) -> Result<Self, TransactionError> {
        Self::client_and_sent_by(message).map(|(key, _)| key)
    }

    /// [`Self::client`] and the sent-by digest of the top Via it came from (parsed
    /// once per response).
    pub(crate) fn client_and_sent_by(message: &Message) -> Result<(Self, u64), TransactionError> {
        let via = message.top_via()?;
        let cseq = message.cseq()?;
        if !via.has_rfc3261_branch() {
            return Err(TransactionError::NoBranch);
        }
        let key = Self {
            side: Side::Client,
            method: cseq.method,
            id: Id::Branch {
                branch: lowercase(via.branch().unwrap_or_default()),
                sent_by: 0,
            },
        };
        Ok((key, via.sent_by_digest()))
    }

    /// The key of the INVITE server transaction a received CANCEL targets (§9.2:
    /// match the CANCEL as if it had the INVITE's method).
    pub fn cancelled_invite(cancel: &Message) -> Result<Self, TransactionError> {
        if cancel.method() != Some(&Method::Cancel) {
            return Err(TransactionError::NotACancel);
        }
        let mut key = Self::server(cancel)?;
        key.method = Method::Invite;
        if let Id::Rfc2543(k) = &mut key.id {
            // INVITE keys carry no To tag (see `Rfc2543`).
            k.to_tag = None;
        }
        Ok(key)
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The branch (lowercased), unless the key is an RFC 2543 one.
    pub fn branch(&self) -> Option<&str> {
        match &self.id {
            Id::Branch { branch, .. } => Some(branch),
            Id::Rfc2543(_) => None,
        }
    }

    /// Whether the request had no RFC 3261 branch, so RFC 2543 matching applies.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self.id, Id::Rfc2543(_))
    }
}

fn lowercase(s: &str) -> CompactString {
    let mut out = CompactString::from(s);
    out.make_ascii_lowercase();
    out
}

fn rfc2543(request: &Message, via: &Via, method: &Method) -> Result<Rfc2543, TransactionError> {
    let uri = request.uri().ok_or(TransactionError::NotARequest)?;
    let to_tag = if *method == Method::Invite {
        None
    } else {
        request.to_addr()?.tag().map(str::to_owned)
    };
    let mut via_id = format!("{}/{}", via.transport, via.sent_by());
    if let Some(b) = via.branch() {
        via_id.push_str(";branch=");
        via_id.push_str(b);
    }
    Ok(Rfc2543 {
        request_uri: uri.to_string(),
        to_tag,
        from_tag: request.from_addr()?.tag().map(str::to_owned),
        call_id: request.call_id()?.to_owned(),
        cseq: request.cseq()?.seq,
        via: via_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{msg, request};

    #[test]
    fn server_keys_rfc3261() {
        let invite = request("INVITE", "z9hG4bKabc", 1, None);
        let key = TransactionKey::server(&invite).unwrap();
        assert_eq!(key.side(), Side::Server);
        assert_eq!(key.method(), &Method::Invite);
        assert_eq!(key.branch(), Some("z9hg4bkabc"));
        assert!(!key.is_rfc2543());
        // A retransmission, and the ACK of a non-2xx (same branch) match it.
        assert_eq!(TransactionKey::server(&invite.clone()).unwrap(), key);
        let ack = request("ACK", "z9hG4bKabc", 1, Some("srv"));
        assert_eq!(TransactionKey::server(&ack).unwrap(), key);
        // Branch case does not matter, sent-by host case neither.
        let mut upper = invite.clone();
        upper.set(
            crate::HeaderName::Via,
            "SIP/2.0/UDP CLIENT.example.com:5060;branch=Z9HG4BKABC",
        );
        // Not an RFC 3261 branch any more (the cookie is case-sensitive)…
        assert!(TransactionKey::server(&upper).unwrap().is_rfc2543());
        upper.set(
            crate::HeaderName::Via,
            "SIP/2.0/UDP CLIENT.example.com:5060;branch=z9hG4bKABC;received=192.0.2.9",
        );
        assert_eq!(TransactionKey::server(&upper).unwrap(), key);
        // CANCEL is its own transaction but points at the INVITE.
        let cancel = request("CANCEL", "z9hG4bKabc", 1, None);
        let ck = TransactionKey::server(&cancel).unwrap();
        assert_ne!(ck, key);
        assert_eq!(ck.method(), &Method::Cancel);
        assert_eq!(TransactionKey::cancelled_invite(&cancel).unwrap(), key);
        assert_eq!(
            TransactionKey::cancelled_invite(&invite),
            Err(TransactionError::NotACancel)
        );
        // Other sent-by or branch: another transaction.
        let mut other = invite.clone();
        other.set(
            crate::HeaderName::Via,
            "SIP/2.0/UDP client.example.com:5070;branch=z9hG4bKabc",
        );
        assert_ne!(TransactionKey::server(&other).unwrap(), key);
        let other = request("INVITE", "z9hG4bKabd", 1, None);
        assert_ne!(TransactionKey::server(&other).unwrap(), key);
        // The client key of the same message differs (side, no sent-by).
        assert_ne!(TransactionKey::client(&invite).unwrap(), key);
    }

    #[test]
    fn server_keys_rfc2543() {
        // RFC 4475 §3.4 INV2543: no branch at all.
        let invite = msg(concat!(
            "INVITE sip:UserB@example.com SIP/2.0\r\n",
            "Via: SIP/2.0/UDP iftgw.example.com\r\n",
            "From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n",
            "To: sip:+16505552222@ss1.example.net;user=phone\r\n",
            "Call-ID: inv2543.1717@ift.client.example.com\r\n",
            "CSeq: 56 INVITE\r\n",
            "Content-Length: 0\r\n\r\n",
        ));
        let key = TransactionKey::server(&invite).unwrap();
        assert!(key.is_rfc2543());
        assert_eq!(key.branch(), None);
        // The ACK carries our To tag and matches anyway.
        let ack_text = String::from_utf8(invite.to_bytes().to_vec())
            .unwrap()
            .replace("INVITE sip", "ACK sip")
            .replace("56 INVITE", "56 ACK")
            .replace("user=phone\r\nCall", "user=phone;tag=ours\r\nCall");
        let ack = msg(&ack_text);
        assert_eq!(ack.to_addr().unwrap().tag(), Some("ours"));
        assert_eq!(TransactionKey::server(&ack).unwrap(), key);
        // Another CSeq, Call-ID or Request-URI is another transaction.
        for (from, to) in [
            ("56 INVITE", "57 INVITE"),
            ("inv2543.1717@", "inv2543.1718@"),
            ("INVITE sip:UserB@", "INVITE sip:UserC@"),
            ("UDP iftgw", "UDP iftgw2"),
        ] {
            let text = String::from_utf8(invite.to_bytes().to_vec())
                .unwrap()
                .replace(from, to);
            assert_ne!(TransactionKey::server(&msg(&text)).unwrap(), key, "{to}");
        }
        // RFC 4475 §3.2 BADBRANCH: the bare cookie is no RFC 3261 branch.
        let options = msg(concat!(
            "OPTIONS sip:user@example.com SIP/2.0\r\n",
            "To: sip:user@example.com\r\n",
            "From: sip:caller@example.org;tag=33242\r\n",
            "Max-Forwards: 3\r\n",
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n",
            "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n",
            "CSeq: 8 OPTIONS\r\n",
            "l: 0\r\n\r\n",
        ));
        let ok = TransactionKey::server(&options).unwrap();
        assert!(ok.is_rfc2543());
        assert_eq!(TransactionKey::server(&options.clone()).unwrap(), ok);
        // A non-INVITE with a different To tag is another transaction.
        let mut tagged = options.clone();
        tagged.set(crate::HeaderName::To, "sip:user@example.com;tag=x");
        assert_ne!(TransactionKey::server(&tagged).unwrap(), ok);
        // CANCEL of the 2543 INVITE.
        let cancel_text = String::from_utf8(invite.to_bytes().to_vec())
            .unwrap()
            .replace("INVITE sip", "CANCEL sip")
            .replace("56 INVITE", "56 CANCEL");
        let cancel = msg(&cancel_text);
        assert_eq!(TransactionKey::cancelled_invite(&cancel).unwrap(), key);
        assert_ne!(TransactionKey::server(&cancel).unwrap(), key);
    }

    #[test]
    fn client_keys() {
        let req = request("OPTIONS", "z9hG4bKq1", 3, None);
        let key = TransactionKey::client(&req).unwrap();
        assert_eq!(key.side(), Side::Client);
        let resp = Message::response_to(&req, 200, None);
        assert_eq!(TransactionKey::client(&resp).unwrap(), key);
        let no_cookie = request("OPTIONS", "abc", 3, None);
        assert_eq!(
            TransactionKey::client(&no_cookie),
            Err(TransactionError::NoBranch)
        );
        let mut no_via = req.clone();
        no_via.remove(&crate::HeaderName::Via);
        assert!(matches!(
            TransactionKey::client(&no_via),
            Err(TransactionError::Malformed(_))
        ));
        assert!(matches!(
            TransactionKey::server(&no_via),
            Err(TransactionError::Malformed(_))
        ));
        assert_eq!(
            TransactionKey::server(&resp),
            Err(TransactionError::NotARequest)
        );
    }
}
