//! Dialog state (RFC 3261 §12), sans-IO: what a UA remembers of a dialog to match the
//! requests in it and to build its own: Call-ID, both tags, both URIs, CSeq numbers,
//! the remote target and the route set.
//!
//! Only loose routing (`;lr`, RFC 3261) is built; a strict-routing first hop (RFC 2543)
//! is sent loose as well, which every current element accepts.

use bytestring::ByteString;

use crate::error::ParseError;
use crate::header::{CSeq, HeaderName, NameAddr, Via};
use crate::message::Message;
use crate::method::Method;
use crate::uri::Uri;

/// One side's view of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From (in requests we send), tag included, as it goes on the wire: kept
    /// rendered, not formatted again for every request and response of the dialog.
    pub local: ByteString,
    /// The peer's address (our To), tag included, as on the wire.
    pub remote: ByteString,
    /// The CSeq of the last request we sent.
    pub local_seq: u32,
    /// The CSeq of the last request the peer sent, once it sent one.
    pub remote_seq: Option<u32>,
    /// Where our requests go: the peer's Contact.
    pub remote_target: Uri,
    /// Route headers for our requests, in order.
    pub route_set: Vec<NameAddr>,
}

fn missing(what: &str) -> ParseError {
    ParseError::malformed(format!("missing {what}"))
}

/// The value of `name` as received (shared, not copied), for a header that was
/// parsed already.
fn header_text(msg: &Message, name: &HeaderName) -> Result<ByteString, ParseError> {
    msg.header_text(name)
        .cloned()
        .ok_or_else(|| missing(name.as_str()))
}

fn contact_uri(msg: &Message) -> Result<Uri, ParseError> {
    match msg.contacts()?.as_deref() {
        Some(crate::header::Contacts::List(list)) if !list.is_empty() => Ok(list[0].uri.clone()),
        _ => Err(missing("Contact")),
    }
}

impl Dialog {
    /// The dialog a UAS creates by answering `request` (an INVITE) with `local_tag` in
    /// its To (§12.1.1): the route set is the request's Record-Route in order.
    pub fn as_uas(request: &Message, local_tag: &str) -> Result<Self, ParseError> {
        let remote_tag = request.from_addr()?.tag().map(str::to_owned);
        let mut to = request.to_addr()?.into_owned();
        to.params.set("tag", Some(local_tag));
        Ok(Self {
            call_id: request.call_id()?.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: remote_tag.ok_or_else(|| missing("From tag"))?,
            local: to.to_string().into(),
            remote: header_text(request, &HeaderName::From)?,
            local_seq: 0,
            remote_seq: Some(request.cseq()?.seq),
            remote_target: contact_uri(request)?,
            route_set: request.route_set(&HeaderName::RecordRoute)?,
        })
    }

    /// The dialog a UAC holds after `response` (a 101-199 with a To tag, or a 2xx) to
    /// its `request` (§12.1.2): the route set is the response's Record-Route reversed.
    pub fn as_uac(request: &Message, response: &Message) -> Result<Self, ParseError> {
        let local_tag = request.from_addr()?.tag().map(str::to_owned);
        let remote_tag = response.to_addr()?.tag().map(str::to_owned);
        let mut route_set = response.route_set(&HeaderName::RecordRoute)?;
        route_set.reverse();
        Ok(Self {
            call_id: request.call_id()?.to_owned(),
            local_tag: local_tag.ok_or_else(|| missing("From tag"))?,
            remote_tag: remote_tag.ok_or_else(|| missing("To tag"))?,
            local: header_text(request, &HeaderName::From)?,
            remote: header_text(response, &HeaderName::To)?,
            local_seq: request.cseq()?.seq,
            remote_seq: None,
            remote_target: contact_uri(response)?,
            route_set,
        })
    }

    /// Whether `request` (received) belongs to this dialog: same Call-ID, its From tag
    /// is the peer's and its To tag ours.
    pub fn matches_request(&self, request: &Message) -> bool {
        let (Ok(from), Ok(to)) = (request.from_addr(), request.to_addr()) else {
            return false;
        };
        request.call_id().is_ok_and(|c| c == self.call_id)
            && from.tag() == Some(self.remote_tag.as_str())
            && to.tag() == Some(self.local_tag.as_str())
    }

    /// Takes note of a request the peer sent in the dialog. Returns false when its CSeq
    /// is lower than the last one (out of order: answer 500, §12.2.2). A target refresh
    /// (re-INVITE, UPDATE) with a Contact moves the remote target.
    pub fn on_request(&mut self, request: &Message) -> bool {
        let Ok(cseq) = request.cseq() else {
            return false;
        };
        if self.remote_seq.is_some_and(|last| cseq.seq < last) {
            return false;
        }
        self.remote_seq = Some(cseq.seq);
        if matches!(request.method(), Some(Method::Invite | Method::Update))
            && let Ok(target) = contact_uri(request)
        {
            self.remote_target = target;
        }
        true
    }

    /// A target-refresh response (2xx to our re-INVITE or UPDATE) may move the target.
    pub fn on_refresh_response(&mut self, response: &Message) {
        if let Ok(target) = contact_uri(response) {
            self.remote_target = target;
        }
    }

    /// A new request in the dialog (§12.2.1.1), with the next CSeq, `via` on top, and
    /// `contact` for target refreshes. The caller adds the body.
    pub fn request(&mut self, method: Method, via: &Via, contact: &str) -> Message {
        self.local_seq += 1;
        self.build(method, self.local_seq, via, contact)
    }

    /// The ACK of a 2xx to our INVITE with CSeq `seq` (§13.2.2.4): a request of its
    /// own in the dialog, with that CSeq number.
    pub fn ack(&self, seq: u32, via: &Via) -> Message {
        let mut ack = self.build(Method::Ack, seq, via, "");
        ack.remove(&HeaderName::Contact);
        ack
    }

    fn build(&self, method: Method, seq: u32, via: &Via, contact: &str) -> Message {
        let mut msg = Message::request(method.clone(), self.remote_target.clone());
        msg.push_via(via.clone());
        msg.push_static(HeaderName::MaxForwards, "70");
        for route in &self.route_set {
            msg.push(HeaderName::Route, route.to_string());
        }
        msg.push(HeaderName::From, self.local.clone());
        msg.push(HeaderName::To, self.remote.clone());
        msg.push(HeaderName::CallId, self.call_id.clone());
        msg.push(HeaderName::CSeq, CSeq::text(seq, &method));
        if !contact.is_empty() {
            msg.push(HeaderName::Contact, contact.to_owned());
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_datagram;

    fn msg(text: &str) -> Message {
        parse_datagram(bytes::Bytes::from(text.replace('\n', "\r\n"))).unwrap()
    }

    const INVITE: &str = "INVITE sip:1002@pbx SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa
Max-Forwards: 70
From: \"Alice\" <sip:1001@pbx>;tag=alice
To: <sip:1002@pbx>
Call-ID: call-1
CSeq: 7 INVITE
Contact: <sip:1001@10.0.0.1:5060>
Record-Route: <sip:p1;lr>, <sip:p2;lr>
Content-Length: 0

";

    #[test]
    fn uas_dialog_matches_and_builds_in_dialog_requests() {
        let invite = msg(INVITE);
        let mut d = Dialog::as_uas(&invite, "pbx1").unwrap();
        assert_eq!(d.remote_tag, "alice");
        assert_eq!(d.remote_target.to_string(), "sip:1001@10.0.0.1:5060");
        assert_eq!(d.route_set.len(), 2);
        let via = Via::parse("SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKb").unwrap();
        let bye = d.request(Method::Bye, &via, "");
        let text = String::from_utf8(bye.to_bytes().to_vec()).unwrap();
        assert!(
            text.starts_with("BYE sip:1001@10.0.0.1:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("From: <sip:1002@pbx>;tag=pbx1\r\n"), "{text}");
        assert!(
            text.contains("To: \"Alice\" <sip:1001@pbx>;tag=alice\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 BYE\r\n") && text.contains("Route: <sip:p1;lr>\r\n"));

        let bye_in = msg(&INVITE
            .replace("INVITE sip", "BYE sip")
            .replace("To: <sip:1002@pbx>", "To: <sip:1002@pbx>;tag=pbx1")
            .replace("7 INVITE", "8 BYE"));
        assert!(d.matches_request(&bye_in));
        assert!(d.on_request(&bye_in));
        let stale = msg(&INVITE
            .replace("To: <sip:1002@pbx>", "To: <sip:1002@pbx>;tag=pbx1")
            .replace("7 INVITE", "6 INVITE"));
        assert!(!d.on_request(&stale), "a lower CSeq is out of order");
        let other = msg(&INVITE.replace("To: <sip:1002@pbx>", "To: <sip:1002@pbx>;tag=x"));
        assert!(!d.matches_request(&other));
    }

    #[test]
    fn uac_dialog_reverses_the_route_set_and_acks_with_the_invite_cseq() {
        let invite = msg(INVITE);
        let ok_text = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa
From: \"Alice\" <sip:1001@pbx>;tag=alice
To: <sip:1002@pbx>;tag=bob
Call-ID: call-1
CSeq: 7 INVITE
Contact: <sip:1002@10.0.0.2:5062>
Record-Route: <sip:p1;lr>, <sip:p2;lr>
Content-Length: 0

";
        let d = Dialog::as_uac(&invite, &msg(ok_text)).unwrap();
        assert_eq!(d.local_seq, 7);
        assert_eq!(d.route_set[0].to_string(), "<sip:p2;lr>");
        let via = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKc").unwrap();
        let ack = d.ack(7, &via);
        let text = String::from_utf8(ack.to_bytes().to_vec()).unwrap();
        assert!(
            text.starts_with("ACK sip:1002@10.0.0.2:5062 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 7 ACK\r\n") && text.contains("To: <sip:1002@pbx>;tag=bob"));
        let untagged = msg(&ok_text.replace(";tag=bob", ""));
        assert!(
            Dialog::as_uac(&invite, &untagged).is_err(),
            "no To tag, no dialog"
        );
    }
}
