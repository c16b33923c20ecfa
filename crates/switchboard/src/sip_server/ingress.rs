//! Every SIP message starts here: parse, refuse what is malformed with a 400 that says
//! why (or drop it when no response can be built), check what a UAS must check, and
//! hand the message to the registrar or the call engine, or answer it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use switchboard_sip::header::HeaderName;
use switchboard_sip::message::reason_phrase;
use switchboard_sip::text::{IP_TEXT_MAX, display_in, ip_in};
use switchboard_sip::validate::{UasPolicy, validate_request};
use switchboard_sip::{ErrorKind, Message, Method, parse_datagram};

use super::transport::{Flow, Outbox};
use super::{SipCore, auth, mwi, registrar};
use crate::features::security::{Protocol, Signal, patterns};

/// What this element handles; everything else gets 405/501 with this Allow.
pub const METHODS: &[Method] = &[
    Method::Register,
    Method::Options,
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Update,
    Method::Info,
    Method::Refer,
    Method::Notify,
    Method::Message,
    Method::Subscribe,
];
const SUPPORTED: &[&str] = &["path", "outbound"];
/// Bodies taken: SDP, and what calls carry in INFO, MESSAGE and NOTIFY, which the
/// call engine passes to the other phone unread.
const ACCEPT: &[&str] = &[
    "application/sdp",
    "application/dtmf-relay",
    "application/dtmf",
    "application/media_control+xml",
    "message/sipfrag",
    "text/plain",
];

pub fn policy() -> UasPolicy<'static> {
    UasPolicy {
        methods: METHODS,
        supported: SUPPORTED,
        accept: ACCEPT,
    }
}

/// A datagram. What to send in answer goes into `out`.
pub fn handle(core: &Arc<SipCore>, data: Bytes, flow: Flow, out: &mut Outbox) {
    if refused(core, &flow) {
        return;
    }
    match parse_datagram(data.clone()) {
        Ok(msg) => dispatch(core, msg, flow, out),
        Err(e) => {
            metrics::counter!("switchboard_sip_malformed_total").increment(1);
            let code = match e.kind {
                ErrorKind::TooLarge => 513,
                ErrorKind::Version => 505,
                ErrorKind::Malformed => 400,
            };
            tracing::debug!(remote = %flow.remote, error = %e, "malformed SIP message");
            if let Some(reply) = error_reply(&data, code, &e.message) {
                out.push_bytes(flow, reply);
            }
        }
    }
}

/// A message already framed and parsed (streams).
pub fn handle_parsed(core: &Arc<SipCore>, msg: Message, flow: Flow, out: &mut Outbox) {
    metrics::counter!("switchboard_sip_messages_received_total", "transport" => flow.transport.as_str()).increment(1);
    if refused(core, &flow) {
        return;
    }
    dispatch(core, msg, flow, out);
}

/// Threat detection's word on a message from `flow`, before anything else is done with
/// it: a blocked source, or one flooding, is dropped without an answer (spec 08), so a
/// scanner learns nothing and a flood costs one lookup per packet.
fn refused(core: &SipCore, flow: &Flow) -> bool {
    let threats = &core.app.threats;
    let ip = flow.remote.ip();
    if threats.is_blocked(ip) || threats.count_request(ip, Protocol::Sip) {
        core.metrics.blocked_dropped.increment(1);
        return true;
    }
    false
}

/// A request whose User-Agent is a scanner's (spec 08): reported, and dropped.
fn scanner(core: &SipCore, req: &Message, flow: &Flow) -> bool {
    let threats = &core.app.threats;
    let ip = flow.remote.ip();
    if !threats.enabled() || threats.is_trusted(ip) {
        return false;
    }
    let Some(ua) = req.header(&HeaderName::UserAgent) else {
        return false;
    };
    let Some(found) = patterns::scanner(ua, &threats.config().sip_scanner_user_agents) else {
        return false;
    };
    threats.signal(ip, Protocol::Sip, Signal::Scanner(found.to_owned()));
    threats.is_blocked(ip)
}

fn dispatch(core: &Arc<SipCore>, mut req: Message, flow: Flow, out: &mut Outbox) {
    let Some(method) = req.method().cloned() else {
        // Responses to our message-waiting NOTIFYs are MWI's; the others belong to
        // the call engine's client transactions (strays it drops).
        if let Some(resp) = core.mwi.on_response(req, out) {
            core.calls.submit(resp, flow);
        }
        return;
    };
    if method == Method::Ack {
        // The ACK of a stateless challenge ends here: no transaction waits for it.
        if !core.acks_stateless_challenge(&req) {
            core.calls.submit(req, flow);
        }
        return;
    }
    if scanner(core, &req, &flow) {
        return;
    }
    let Some(reply_flow) = stamp_via(&mut req, &flow) else {
        return;
    };
    if let Err(rejection) = validate_request(&req, &policy()) {
        let mut resp = core.response(&req, rejection.code, Some(&rejection.reason));
        for (name, value) in rejection.headers {
            resp.push(name, value);
        }
        out.push(&reply_flow, &resp);
        return;
    }
    match method {
        Method::Register => registrar::handle(core, req, flow, reply_flow, out),
        Method::Subscribe => mwi::handle(core, req, flow, reply_flow, out),
        Method::Options => {
            let mut resp = core.response(&req, 200, None);
            resp.push(
                HeaderName::Allow,
                METHODS
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            resp.push(HeaderName::Accept, ACCEPT.join(", "));
            resp.push(HeaderName::Supported, SUPPORTED.join(", "));
            resp.push(HeaderName::AllowEvents, mwi::PACKAGE);
            out.push(&reply_flow, &resp);
        }
        Method::Invite
        | Method::Bye
        | Method::Cancel
        | Method::Update
        | Method::Info
        | Method::Refer
        | Method::Notify
        | Method::Message => {
            if method == Method::Invite && !core.calls.running() {
                let mut busy = core.response(&req, 503, Some("Call engine not running"));
                busy.push(HeaderName::RetryAfter, "5");
                out.push(&reply_flow, &busy);
            } else if method == Method::Invite
                && let Some(challenge) = auth::stateless_challenge(core, &req, flow.remote.ip())
            {
                out.push(&reply_flow, &challenge);
            } else {
                core.calls.submit(req, reply_flow);
            }
        }
        _ => {
            let resp = core.response(&req, 501, None);
            out.push(&reply_flow, &resp);
        }
    }
}

/// Adds `received` / `rport` to the top Via (RFC 3261 §18.2.1, RFC 3581) and returns
/// where the response goes: the connection it came on, or for UDP the source address
/// (with `rport`) or the source IP and the Via port.
fn stamp_via(req: &mut Message, flow: &Flow) -> Option<Flow> {
    let src: IpAddr = flow.remote.ip();
    let top = req.top_via().ok()?;
    let rport = top.wants_rport();
    let mut port = top.port.unwrap_or(5060);
    if top.host.ip() != Some(src) || rport {
        // Formatted on the stack: this runs for nearly every request.
        let (mut ip, mut port_text) = ([0u8; IP_TEXT_MAX], [0u8; 8]);
        let received = ip_in(&mut ip, src);
        let remote_port = display_in(&mut port_text, flow.remote.port());
        req.edit_top_via(|top| {
            top.params.set("received", Some(received));
            if rport {
                top.params.set("rport", Some(remote_port));
            }
        })
        .ok()?;
    }
    if rport {
        port = flow.remote.port();
    }
    let mut reply = flow.clone();
    if !flow.is_reliable() {
        reply.remote = SocketAddr::new(src, port);
    }
    Some(reply)
}

/// A response built from the raw lines of a message that did not parse: possible when
/// Via, From, To, Call-ID and CSeq can be found. The reason phrase says what was wrong.
pub fn error_reply(data: &[u8], code: u16, why: &str) -> Option<Bytes> {
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[start..]);
    let (head, _) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let mut lines = head.lines();
    let first = lines.next()?;
    if first.starts_with("SIP/") {
        return None; // never answer a response
    }
    let mut keep = Vec::new();
    let mut found = [false; 5];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match HeaderName::parse(name.trim()) {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        found[slot] = true;
        // Every final response carries a To tag (RFC 3261 §8.2.6.2).
        if slot == 2 && !value.to_ascii_lowercase().contains("tag=") {
            keep.push(format!(
                "{};tag=e{:08x}",
                line.trim_end(),
                rand::random::<u32>()
            ));
        } else {
            keep.push(line.trim_end().to_owned());
        }
    }
    if !found.iter().all(|f| *f) {
        return None;
    }
    let reason: String = format!("{} ({why})", reason_phrase(code))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in keep {
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str(concat!(
        "Server: Switchboard/",
        env!("CARGO_PKG_VERSION"),
        "\r\n"
    ));
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipTransport;

    #[test]
    fn error_replies_carry_the_reason() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: \"open <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let reply = String::from_utf8(
            error_reply(raw, 400, "To: unbalanced quotes")
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(
            reply.starts_with("SIP/2.0 400 Bad Request (To: unbalanced quotes)\r\n"),
            "{reply}"
        );
        assert!(reply.contains("Call-ID: c\r\n") && reply.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(reply.contains("To: \"open <sip:a@b>;tag=e"), "{reply}");
        assert!(error_reply(b"garbage", 400, "x").is_none());
        assert!(error_reply(b"SIP/2.0 200 OK\r\nVia: a\r\n\r\n", 400, "x").is_none());
    }

    #[test]
    fn the_top_via_gets_received_and_rport_and_the_reply_goes_to_the_source() {
        let raw = "INVITE sip:a@b SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\r\n\
            From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let flow = |remote: &str| Flow {
            transport: SipTransport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: remote.parse().unwrap(),
            conn: None,
        };
        for (remote, received) in [
            ("198.51.100.7:40000", "198.51.100.7"),
            ("[2001:db8::7]:40000", "2001:db8::7"),
        ] {
            let mut req = parse_datagram(Bytes::from(raw)).unwrap();
            let reply = stamp_via(&mut req, &flow(remote)).unwrap();
            assert_eq!(reply.remote, remote.parse::<SocketAddr>().unwrap());
            let top = req.top_via().unwrap();
            assert_eq!(top.params.get("received"), Some(received));
            assert_eq!(top.params.get("rport"), Some("40000"));
            assert_eq!(top.branch(), Some("z9hG4bK1"));
            let vias = req.header_values(&HeaderName::Via).next().unwrap();
            assert!(
                vias.ends_with(", SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2"),
                "{vias}"
            );
        }
        // Without rport the reply goes to the source IP and the Via's port.
        let plain = raw.replace(";rport", "");
        let mut req = parse_datagram(Bytes::from(plain)).unwrap();
        let reply = stamp_via(&mut req, &flow("198.51.100.7:40000")).unwrap();
        assert_eq!(
            reply.remote,
            "198.51.100.7:5062".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(req.top_via().unwrap().params.get("rport"), None);
    }
}
