//! Message builders and a fake clock for the transaction tests.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::header::HeaderName;
use crate::message::Message;
use crate::parse::parse_datagram;

use super::Output;

pub fn msg(text: &str) -> Message {
    parse_datagram(Bytes::copy_from_slice(text.as_bytes())).expect("test message parses")
}

/// A request from alice's UA through a proxy, branch and CSeq as given.
pub fn request(method: &str, branch: &str, cseq: u32, to_tag: Option<&str>) -> Message {
    let to = match to_tag {
        Some(t) => format!("<sip:bob@example.com>;tag={t}"),
        None => "<sip:bob@example.com>".to_owned(),
    };
    msg(&format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP client.example.com:5060;branch={branch}\r\n\
         Via: SIP/2.0/UDP earlier.example.com;branch=z9hG4bKearlier\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:proxy1.example.com;lr>\r\n\
         Route: <sip:proxy2.example.com;lr>\r\n\
         From: Alice <sip:alice@example.com>;tag=a1\r\n\
         To: {to}\r\n\
         Call-ID: call-1@example.com\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@client.example.com>\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// A response to `req`, with a To tag when given.
pub fn response(req: &Message, code: u16, to_tag: Option<&str>) -> Message {
    let mut resp = Message::response_to(req, code, None);
    if let Some(tag) = to_tag {
        let mut to = resp.to_addr().expect("To").into_owned();
        to.params.set("tag", Some(tag));
        resp.set(HeaderName::To, to.to_string());
    }
    resp.push(HeaderName::ContentLength, "0");
    resp
}

pub fn tag_of(m: &Message) -> Option<String> {
    m.to_addr().ok().and_then(|to| to.tag().map(str::to_owned))
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The codes of the messages sent.
pub fn sent_codes(out: &[Output]) -> Vec<u16> {
    sent(out).iter().filter_map(Message::code).collect()
}

/// The messages sent, parsed back.
pub fn sent(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(wire) => {
                Some(crate::parse_datagram(wire.clone()).expect("sent bytes parse"))
            }
            _ => None,
        })
        .collect()
}

pub fn delivered(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Deliver(m) => Some(m),
            _ => None,
        })
        .collect()
}

pub fn terminated(out: &[Output]) -> bool {
    out.last() == Some(&Output::Terminated)
}

/// A fixed base instant: tests add durations to it and never sleep.
pub fn base() -> Instant {
    Instant::now()
}
