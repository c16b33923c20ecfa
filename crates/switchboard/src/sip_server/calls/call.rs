//! One bridged call: the caller's dialog (leg A, where the PBX is the UAS), the forks
//! ringing the callee's phones, and the callee's dialog once one answered (leg B,
//! where the PBX is the UAC). Also the messages the PBX builds for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::ByteString;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::header::{HeaderName, Via};
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::text::{push_hex, push_host, write_quoted};
use switchboard_sip::transaction::{TransactionKey, branch_of};
use switchboard_sip::uri::push_escaped_user;
use switchboard_sip::{Host, Message, Method, Uri};

use super::media::Media;
use crate::config::SipTransport;
use crate::sip_server::credentials::SipCredential;
use crate::sip_server::transport::Flow;
use crate::time::Timestamp;

/// The two legs of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller.
    A,
    /// The callee (the phone that answered).
    B,
}

impl Leg {
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Answered,
}

/// One phone of the callee being rung.
#[derive(Debug)]
pub struct Fork {
    pub key: TransactionKey,
    pub invite: Message,
    pub flow: Flow,
    /// A provisional response arrived: a CANCEL may now be sent (RFC 3261 §9.1).
    pub provisional: bool,
    /// The fork is to be cancelled once it may be.
    pub cancel_wanted: bool,
    /// Its final response, once there is one.
    pub final_code: Option<u16>,
}

impl Fork {
    /// A fork whose INVITE (`key`) just went out over `flow`.
    pub fn new(key: TransactionKey, invite: Message, flow: Flow) -> Self {
        Self {
            key,
            invite,
            flow,
            provisional: false,
            cancel_wanted: false,
            final_code: None,
        }
    }
}

/// A leg whose dialog is established.
#[derive(Debug)]
pub struct Established {
    pub dialog: Dialog,
    /// Where requests to this phone go: the flow its INVITE came on (leg A) or the one
    /// it registered over (leg B), so phones behind NAT are reached.
    pub flow: Flow,
    /// Our Contact in this dialog.
    pub contact: String,
}

/// A 2xx the PBX sent and retransmits until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
pub struct Unacked {
    pub bytes: Bytes,
    pub flow: Flow,
    /// The CSeq it answers; the ACK carries the same number.
    pub seq: u32,
    pub interval: std::time::Duration,
    pub next: Instant,
    pub give_up: Instant,
}

#[derive(Debug)]
pub struct Call {
    /// The public id (API, CDR, events).
    pub uuid: uuid::Uuid,
    pub phase: Phase,
    /// The caller's INVITE (server transaction `a_invite_key`).
    pub a_invite: Message,
    pub a_invite_key: TransactionKey,
    /// Where responses to leg A go (by its Via).
    pub a_reply: Flow,
    /// Leg A's dialog as the PBX answers it (our To tag is fixed from the start).
    pub a: Established,
    /// The Call-ID and From tag of every leg-B fork.
    pub b_call_id: String,
    pub b_tag: String,
    pub forks: Vec<Fork>,
    /// Forks no longer wanted (another answered, forwarding moved on) that may still
    /// answer: they are cancelled, or acknowledged and hung up.
    pub abandoned: Vec<Fork>,
    pub b: Option<Established>,
    /// The 2xx to leg A's INVITE (or a re-INVITE) not yet acknowledged, per leg.
    pub unacked: [Option<Unacked>; 2],
    /// The calling extension: the phone's account, or the extension hot-desked at it.
    pub caller: String,
    pub caller_name: String,
    /// The phone calling, as hot-desking names it (when hot-desking is on).
    pub device: Option<crate::sip_server::hot_desk::Device>,
    /// What was dialled.
    pub dialled: String,
    /// The number being routed while its extension is looked up.
    pub pending_route: String,
    /// Extension lookups this call waited for (a database that keeps failing is
    /// given up on).
    pub lookups: u8,
    /// The extension being rung now (forwarding changes it).
    pub target: Option<String>,
    pub callee: Option<Arc<SipCredential>>,
    pub forwards: u8,
    pub started_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    /// When the current forks stop ringing.
    pub ring_deadline: Option<Instant>,
    /// The body of leg A's INVITE (its offer), forwarded to every fork.
    pub offer: Option<Body>,
    /// Leg A's offer as parsed, when it was SDP: answers are cut to it.
    pub offer_sdp: Option<SessionDescription>,
    /// The relay ports the call's media goes through (absent when leg A's INVITE
    /// carried a body that is not SDP).
    pub media: Option<Media>,
    /// A late offer (RFC 3261 §13.2.1: leg A's INVITE had no body): leg B's 2xx
    /// brings the offer and leg A's ACK the answer, so the ACK to leg B waits for it.
    pub late_offer: bool,
    /// That ACK once sent, sent again for each retransmission of leg B's 2xx.
    pub b_ack: Option<Bytes>,
    /// A transfer asked for by one of the legs (REFER), while it is under way.
    pub transfer: Option<Transfer>,
    /// The application answering the call in place of a phone (voicemail, the
    /// auto attendant): leg B is then its socket, not a dialog.
    pub app: Option<super::engine::AppLeg>,
    /// A browser answered, and its answer waits for its media to be up before the
    /// caller gets it (spec 03: the first words are not lost): the body for leg A.
    pub held_answer: Option<Option<Body>>,
}

/// A transfer under way (RFC 3515 REFER, RFC 5589): the leg `by` asked that the other
/// leg be connected to someone else; that someone takes `by`'s place in the call.
#[derive(Debug)]
pub struct Transfer {
    pub by: Leg,
    /// Who the other leg is being connected to (an extension number).
    pub to: String,
    pub kind: TransferKind,
    /// When a blind transfer stops ringing.
    pub deadline: Instant,
}

#[derive(Debug)]
pub enum TransferKind {
    /// Ring `to`'s phones with the other leg's media.
    Blind { call_id: String, forks: Vec<Fork> },
    /// Attended: leg `leg` of call `other` (the consultation call) joins this call;
    /// it is being re-INVITEd to the relay ports of this call.
    Attended { other: u64, leg: Leg },
}

impl Call {
    pub fn established(&self, leg: Leg) -> Option<&Established> {
        match leg {
            Leg::A => Some(&self.a),
            Leg::B => self.b.as_ref(),
        }
    }

    pub fn established_mut(&mut self, leg: Leg) -> Option<&mut Established> {
        match leg {
            Leg::A => Some(&mut self.a),
            Leg::B => self.b.as_mut(),
        }
    }

    pub fn leg_index(leg: Leg) -> usize {
        match leg {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// Our Server and User-Agent header.
const SERVER: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// A random tag: 64 bits as hex.
pub fn token() -> String {
    random_hex(1)
}

/// A random Call-ID: 128 bits as hex.
pub fn call_id() -> String {
    random_hex(2)
}

fn random_hex(words: usize) -> String {
    let mut out = String::with_capacity(16 * words);
    for _ in 0..words {
        push_hex(&mut out, rand::random());
    }
    out
}

/// A fresh RFC 3261 branch.
pub fn branch() -> String {
    branch_of(rand::random())
}

fn transport_name(t: SipTransport) -> &'static str {
    match t {
        SipTransport::Udp => "UDP",
        SipTransport::Tcp => "TCP",
        SipTransport::Tls => "TLS",
        SipTransport::Ws => "WS",
        SipTransport::Wss => "WSS",
    }
}

/// Our top Via for a request sent over `flow` from `local` (the listener's address as
/// the peer reaches it).
pub fn via(flow: &Flow, local: SocketAddr) -> Via {
    let mut via = Via::new(
        transport_name(flow.transport),
        Host::from(local.ip()),
        Some(local.port()),
        &branch(),
    );
    via.params.set("rport", None);
    via
}

/// Our Contact in a dialog over `flow`.
// Written piece by piece, like `identity`: each call writes several of them.
pub fn contact(flow: &Flow, local: SocketAddr, user: &str) -> String {
    let transport = match flow.transport {
        SipTransport::Udp => "",
        SipTransport::Tcp => ";transport=tcp",
        SipTransport::Tls => ";transport=tls",
        SipTransport::Ws => ";transport=ws",
        SipTransport::Wss => ";transport=wss",
    };
    let mut out = String::with_capacity(64 + user.len());
    out.push_str("<sip:");
    push_escaped_user(&mut out, user);
    out.push('@');
    push_host(&mut out, local.ip());
    out.push(':');
    out.push_str(itoa::Buffer::new().format(local.port()));
    out.push_str(transport);
    out.push('>');
    out
}

/// The identity the callee sees: the calling extension's name and number in our domain
/// (`localhost` when the realm is not a host name).
pub fn identity(name: &str, number: &str, realm: &str) -> String {
    let host = if Host::parse(realm).is_ok() {
        realm
    } else {
        "localhost"
    };
    let mut out = String::with_capacity(name.len() + number.len() + host.len() + 16);
    if !name.is_empty() {
        let _ = write_quoted(&mut out, name);
        out.push(' ');
    }
    out.push_str("<sip:");
    push_escaped_user(&mut out, number);
    out.push('@');
    out.push_str(host);
    out.push('>');
    out
}

/// Who a leg the PBX places comes from, and its dialog identifiers.
pub struct Origin<'a> {
    pub call_id: &'a str,
    pub tag: &'a str,
    pub name: &'a str,
    pub number: &'a str,
}

impl Call {
    /// The origin of the forks ringing the callee: the caller.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            call_id: &self.b_call_id,
            tag: &self.b_tag,
            name: &self.caller_name,
            number: &self.caller,
        }
    }
}

/// The INVITE that rings a phone of `callee` (`target`: its contact URI) with `body`
/// (the offer, anchored for this phone).
pub fn fork_invite(
    origin: &Origin<'_>,
    target: Uri,
    flow: &Flow,
    local: SocketAddr,
    realm: &str,
    callee: &str,
    body: Option<Body>,
) -> Message {
    let mut msg = Message::request(Method::Invite, target);
    msg.push_via(via(flow, local));
    msg.push_static(HeaderName::MaxForwards, "70");
    let from = identity(origin.name, origin.number, realm);
    let mut tagged = String::with_capacity(from.len() + 5 + origin.tag.len());
    tagged.push_str(&from);
    tagged.push_str(";tag=");
    tagged.push_str(origin.tag);
    msg.push(HeaderName::From, tagged);
    msg.push(HeaderName::To, identity("", callee, realm));
    msg.push(HeaderName::CallId, origin.call_id.to_owned());
    msg.push_static(HeaderName::CSeq, "1 INVITE");
    msg.push(HeaderName::Contact, contact(flow, local, origin.number));
    msg.push(HeaderName::PAssertedIdentity, from);
    msg.push_static(HeaderName::Allow, super::ALLOW);
    msg.push_static(HeaderName::UserAgent, SERVER);
    match body {
        Some((content_type, body)) => msg.set_body(content_type, body),
        None => msg.push_static(HeaderName::ContentLength, "0"),
    }
    msg
}

/// Whether a body's Content-Type is SDP.
pub fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// A response of the PBX on leg A's dialog to `req` (the INVITE or an in-dialog
/// request): our To tag, our Contact on 1xx/2xx of dialog-forming requests.
pub fn response(
    req: &Message,
    code: u16,
    reason: Option<&str>,
    leg: &Established,
    body: Option<Body>,
) -> Message {
    let mut resp = Message::response_to(req, code, reason);
    resp.set(HeaderName::To, leg.dialog.local.clone());
    if (101..300).contains(&code)
        && matches!(
            req.method(),
            Some(Method::Invite | Method::Update | Method::Subscribe)
        )
    {
        resp.push(HeaderName::Contact, leg.contact.clone());
        resp.push_static(HeaderName::Allow, super::ALLOW);
    }
    resp.push_static(HeaderName::Server, SERVER);
    match body {
        Some((content_type, body)) => resp.set_body(content_type, body),
        None => resp.push_static(HeaderName::ContentLength, "0"),
    }
    resp
}

/// A body and its Content-Type, both shared with the message they came in.
pub type Body = (ByteString, Bytes);

/// The body of `msg` with its Content-Type, when it has one.
pub fn body_of(msg: &Message) -> Option<Body> {
    if msg.body.is_empty() {
        return None;
    }
    let content_type = msg
        .header_text(&HeaderName::ContentType)
        .cloned()
        .unwrap_or_else(|| ByteString::from_static("application/sdp"));
    Some((content_type, msg.body.clone()))
}

#[cfg(test)]
mod tests {
    use switchboard_sip::SipUri;
    use switchboard_sip::header::NameAddr;

    use super::*;

    #[test]
    fn identities_and_contacts_are_what_the_typed_headers_write() {
        for (name, number, realm) in [
            ("", "2001", "pbx.example"),
            ("Ann \"The\" Operator\\", "2001", "pbx.example"),
            ("Bob", "+49 30#1", "192.0.2.1"),
            ("Eve", "2002", "not a host"),
        ] {
            let host = Host::parse(realm).unwrap_or_else(|_| Host::parse("localhost").unwrap());
            let mut addr = NameAddr::new(Uri::Sip(SipUri::new(Some(number), host)));
            if !name.is_empty() {
                addr.display = Some(name.into());
            }
            let written = identity(name, number, realm);
            assert_eq!(written, addr.to_string());
            assert_eq!(NameAddr::parse(&written).unwrap(), addr, "{written}");
        }
        let flow = |transport| Flow {
            transport,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "192.0.2.9:5060".parse().unwrap(),
            conn: None,
        };
        let v4: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:5061".parse().unwrap();
        assert_eq!(
            contact(&flow(SipTransport::Udp), v4, "20 01"),
            "<sip:20%2001@192.0.2.1:5060>"
        );
        assert_eq!(
            contact(&flow(SipTransport::Tls), v6, "2001"),
            "<sip:2001@[2001:db8::1]:5061;transport=tls>"
        );
        assert_eq!(token().len(), 16);
        assert_eq!(call_id().len(), 32);
        assert!(call_id().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
