//! Many transactions at once: matching by key, one merged timer, cleanup.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::message::Message;
use crate::method::Method;

use super::{
    ClientTransaction, Config, Output, ServerTransaction, State, TransactionError, TransactionKey,
};

/// What a received request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A new request: its server transaction `key` now exists. Hand `request` to the
    /// TU, which answers with [`TransactionLayer::respond`].
    New {
        key: TransactionKey,
        request: Message,
    },
    /// A new CANCEL, with its own server transaction `key` (answer it 200, or 481
    /// when `invite` is `None`). `invite` is the INVITE server transaction it
    /// targets, when that exists (the TU then answers the INVITE 487 if it has not
    /// sent a final response yet).
    Cancel {
        key: TransactionKey,
        request: Message,
        invite: Option<TransactionKey>,
    },
    /// The request belongs to an existing transaction: a retransmission, or the ACK
    /// of a final response. Act on `outputs` (responses to send again, an ACK to
    /// deliver per RFC 6026, `Terminated`); they are often empty.
    Matched {
        key: TransactionKey,
        outputs: Vec<Output>,
    },
    /// An ACK matching no transaction: the ACK of a 2xx, which the TU (the dialog)
    /// takes, or a late one it drops.
    Ack(Message),
}

#[derive(Debug)]
enum Tx {
    // Boxed: a transaction holds whole messages, and the map stores many.
    Client(Box<ClientTransaction>),
    Server(Box<ServerTransaction>),
}

impl Tx {
    fn state(&self) -> State {
        match self {
            Self::Client(c) => c.state(),
            Self::Server(s) => s.state(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::Client(c) => c.poll_timeout(),
            Self::Server(s) => s.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Vec<Output> {
        match self {
            Self::Client(c) => c.handle_timeout(now),
            Self::Server(s) => s.handle_timeout(now),
        }
    }

    fn request(&self) -> Option<&Message> {
        match self {
            Self::Client(c) => c.request(),
            Self::Server(s) => s.request(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: Tx,
    /// Tells apart entries of the deadline index that share an instant.
    id: u64,
    /// The deadline this entry has in the index.
    scheduled: Option<Instant>,
}

/// Client and server transactions by [`TransactionKey`]. Lookups are hash lookups;
/// the earliest deadline of all transactions is kept in an ordered index with one
/// entry per transaction, so nothing scans all transactions. A transaction is
/// removed as soon as it terminates (its last [`Output::Terminated`] says so).
#[derive(Debug, Default)]
pub struct TransactionLayer {
    config: Config,
    // foldhash, seeded per process: SipHash showed in profiles of a call storm.
    entries: HashMap<TransactionKey, Entry, foldhash::fast::RandomState>,
    deadlines: BTreeMap<(Instant, u64), TransactionKey>,
    next_id: u64,
}

impl TransactionLayer {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many transactions are alive.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.entries.contains_key(key)
    }

    pub fn state(&self, key: &TransactionKey) -> Option<State> {
        self.entries.get(key).map(|e| e.tx.state())
    }

    /// The request that created the transaction (e.g. the INVITE a CANCEL targets,
    /// to build its 487), until the transaction had its final response.
    pub fn request(&self, key: &TransactionKey) -> Option<&Message> {
        self.entries.get(key).and_then(|e| e.tx.request())
    }

    /// Drops a transaction without further output, e.g. after a transport error
    /// (§17.1.4, §17.2.4). Returns whether it existed.
    pub fn remove(&mut self, key: &TransactionKey) -> bool {
        match self.entries.remove(key) {
            Some(e) => {
                if let Some(at) = e.scheduled {
                    self.deadlines.remove(&(at, e.id));
                }
                true
            }
            None => false,
        }
    }

    /// A received request. `reliable` is the transport it came on. Fails when the
    /// headers matching needs are missing or bad, or when `request` is a response.
    pub fn on_request(
        &mut self,
        request: Message,
        reliable: bool,
        now: Instant,
    ) -> Result<Incoming, TransactionError> {
        let key = TransactionKey::server(&request)?;
        let is_ack = request.method() == Some(&Method::Ack);
        if let Some(entry) = self.entries.get_mut(&key) {
            let Tx::Server(tx) = &mut entry.tx else {
                // Server keys only ever name server transactions.
                return Ok(Incoming::Matched {
                    key,
                    outputs: Vec::new(),
                });
            };
            if is_ack && key.is_rfc2543() && !rfc2543_ack_matches(tx, &request) {
                return Ok(Incoming::Ack(request));
            }
            let outputs = tx.on_request(request, now);
            self.sync(&key);
            return Ok(Incoming::Matched { key, outputs });
        }
        if is_ack {
            return Ok(Incoming::Ack(request));
        }
        let cancel = (request.method() == Some(&Method::Cancel))
            .then(|| TransactionKey::cancelled_invite(&request).ok())
            .flatten();
        let (tx, outputs) = ServerTransaction::new(request, reliable, &self.config, now)?;
        let Some(Output::Deliver(request)) = outputs.into_iter().next() else {
            // `ServerTransaction::new` always delivers the request.
            return Err(TransactionError::NotARequest);
        };
        self.insert(key.clone(), Tx::Server(Box::new(tx)));
        Ok(match request.method() {
            Some(Method::Cancel) => Incoming::Cancel {
                key,
                request,
                invite: cancel.filter(|k| self.entries.contains_key(k)),
            },
            _ => Incoming::New { key, request },
        })
    }

    /// A response from the TU for server transaction `key`. Returns what to send
    /// (nothing when the transaction is gone or the state forbids the response).
    pub fn respond(
        &mut self,
        key: &TransactionKey,
        response: Message,
        now: Instant,
    ) -> Vec<Output> {
        let Some(Entry {
            tx: Tx::Server(tx), ..
        }) = self.entries.get_mut(key)
        else {
            return Vec::new();
        };
        let out = tx.respond(response, now);
        self.sync(key);
        out
    }

    /// Sends a request in a new client transaction. `request` is final, as it goes on
    /// the wire: its top Via carries our sent-by (responses must echo it) and a fresh
    /// RFC 3261 branch ([`super::branch_from`]). ACK is refused (the TU sends the ACK
    /// of a 2xx directly). Returns the key and the first [`Output::Send`].
    pub fn send_request(
        &mut self,
        request: Message,
        reliable: bool,
        now: Instant,
    ) -> Result<(TransactionKey, Vec<Output>), TransactionError> {
        let key = TransactionKey::client(&request)?;
        if self.entries.contains_key(&key) {
            return Err(TransactionError::Duplicate);
        }
        let (tx, out) = ClientTransaction::new(request, reliable, self.config.timers, now)?;
        self.insert(key.clone(), Tx::Client(Box::new(tx)));
        Ok((key, out))
    }

    /// A received response. `None` when it matches no client transaction (a stray,
    /// to drop: §18.1.2), else the transaction's key and outputs.
    pub fn on_response(
        &mut self,
        response: Message,
        now: Instant,
    ) -> Option<(TransactionKey, Vec<Output>)> {
        response.code()?;
        let (key, sent_by) = TransactionKey::client_and_sent_by(&response).ok()?;
        let Some(Entry {
            tx: Tx::Client(tx), ..
        }) = self.entries.get_mut(&key)
        else {
            return None;
        };
        if !tx.sent_by_matches(sent_by) {
            return None;
        }
        let out = tx.on_response(response, now);
        self.sync(&key);
        Some((key, out))
    }

    /// The earliest deadline of all transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|((at, _), _)| *at)
    }

    /// Fires every timer due at `now`, in deadline order, and returns the outputs
    /// with the key of their transaction.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(TransactionKey, Output)> {
        // Take the due entries first: each transaction fires once per call even if
        // its next deadline is again due.
        let mut due = Vec::new();
        while let Some(first) = self.deadlines.first_entry() {
            if first.key().0 > now {
                break;
            }
            due.push(first.remove());
        }
        let mut out = Vec::new();
        for key in due {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.scheduled = None;
            out.extend(
                entry
                    .tx
                    .handle_timeout(now)
                    .into_iter()
                    .map(|o| (key.clone(), o)),
            );
            self.reindex(Cow::Owned(key));
        }
        out
    }

    fn insert(&mut self, key: TransactionKey, tx: Tx) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.entries.insert(
            key.clone(),
            Entry {
                tx,
                id,
                scheduled: None,
            },
        );
        self.reindex(Cow::Owned(key));
    }

    /// After a transaction changed: drop it if it ended, else move its index entry
    /// to its new deadline.
    fn sync(&mut self, key: &TransactionKey) {
        self.reindex(Cow::Borrowed(key));
    }

    /// [`Self::sync`]. An index entry moved to a new deadline keeps its copy of the
    /// key, and an owned `key` goes into the index as it is: cloning the key's
    /// strings at every change of deadline was an allocation per timer per
    /// transaction.
    fn reindex(&mut self, key: Cow<'_, TransactionKey>) {
        let Some(entry) = self.entries.get_mut(&*key) else {
            return;
        };
        if entry.tx.state() == State::Terminated {
            self.remove(&key);
            return;
        }
        let next = entry.tx.poll_timeout();
        if next != entry.scheduled {
            let indexed = entry
                .scheduled
                .and_then(|at| self.deadlines.remove(&(at, entry.id)));
            if let Some(at) = next {
                let indexed = indexed.unwrap_or_else(|| key.into_owned());
                self.deadlines.insert((at, entry.id), indexed);
            }
            entry.scheduled = next;
        }
    }
}

/// §17.2.3 for RFC 2543: the ACK must also carry the To tag of our final response.
fn rfc2543_ack_matches(tx: &ServerTransaction, ack: &Message) -> bool {
    let Some(tag) = tx.final_tag() else {
        // No non-2xx final yet (Proceeding, or Accepted where RFC 6026 passes
        // ACKs to the TU anyway): the key match suffices.
        return true;
    };
    let ack_tag = ack.to_addr().ok();
    tag == ack_tag.as_ref().and_then(|a| a.tag())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::header::HeaderName;
    use crate::transaction::testutil::*;
    use crate::transaction::{Side, branch_from, cancel_for};

    fn layer() -> TransactionLayer {
        TransactionLayer::new(Config {
            trying_delay: None,
            ..Config::default()
        })
    }

    fn new_key(incoming: Incoming) -> TransactionKey {
        match incoming {
            Incoming::New { key, .. } => key,
            other => panic!("expected New, got {other:?}"),
        }
    }

    /// Runs all timers up to `until`, checking they come out in time order.
    fn run(l: &mut TransactionLayer, until: Instant) -> Vec<(Instant, TransactionKey, Output)> {
        let mut all = Vec::new();
        while let Some(t) = l.poll_timeout().filter(|t| *t <= until) {
            if let Some((last, _, _)) = all.last() {
                assert!(t >= *last, "timers out of order");
            }
            all.extend(l.handle_timeout(t).into_iter().map(|(k, o)| (t, k, o)));
        }
        all
    }

    #[test]
    fn server_new_retransmission_response_and_cleanup() {
        let t0 = base();
        let mut l = layer();
        let bye = request("BYE", "z9hG4bKb1", 5, Some("x"));
        let key = new_key(l.on_request(bye.clone(), false, t0).unwrap());
        assert_eq!(key.side(), Side::Server);
        assert_eq!(l.len(), 1);
        assert_eq!(l.state(&key), Some(State::Trying));
        assert_eq!(l.request(&key), Some(&bye));
        // A retransmission before any response is absorbed.
        assert_eq!(
            l.on_request(bye.clone(), false, t0 + ms(500)).unwrap(),
            Incoming::Matched {
                key: key.clone(),
                outputs: vec![]
            }
        );
        let ok = response(&bye, 200, None);
        assert_eq!(
            l.respond(&key, ok.clone(), t0 + ms(600)),
            vec![Output::Send(ok.to_bytes())]
        );
        // Once answered, the transaction keeps the response, not the request.
        assert_eq!(l.request(&key), None);
        // Then the last response is re-sent.
        assert_eq!(
            l.on_request(bye.clone(), false, t0 + ms(1500)).unwrap(),
            Incoming::Matched {
                key: key.clone(),
                outputs: vec![Output::Send(ok.to_bytes())]
            }
        );
        assert_eq!(l.poll_timeout(), Some(t0 + ms(32_600)));
        let fired = run(&mut l, t0 + ms(60_000));
        assert_eq!(
            fired,
            vec![(t0 + ms(32_600), key.clone(), Output::Terminated)]
        );
        assert_eq!(l.len(), 0);
        assert_eq!(l.poll_timeout(), None);
        // Responding to a gone transaction does nothing.
        assert!(l.respond(&key, ok, t0 + ms(60_000)).is_empty());
    }

    #[test]
    fn reliable_final_removes_at_once() {
        let t0 = base();
        let mut l = layer();
        let reg = request("REGISTER", "z9hG4bKr1", 1, None);
        let key = new_key(l.on_request(reg.clone(), true, t0).unwrap());
        let out = l.respond(&key, response(&reg, 200, Some("t")), t0);
        assert!(terminated(&out));
        assert!(l.is_empty());
        assert!(!l.contains(&key));
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn acks_non_2xx_matched_2xx_passed_up() {
        let t0 = base();
        let mut l = layer();
        let inv = request("INVITE", "z9hG4bKi1", 1, None);
        let key = new_key(l.on_request(inv.clone(), false, t0).unwrap());
        l.respond(&key, response(&inv, 486, Some("s1")), t0 + ms(10));
        let ack = request("ACK", "z9hG4bKi1", 1, Some("s1"));
        assert_eq!(
            l.on_request(ack, false, t0 + ms(20)).unwrap(),
            Incoming::Matched {
                key: key.clone(),
                outputs: vec![]
            }
        );
        assert_eq!(l.state(&key), Some(State::Confirmed));

        // A 2xx: the ACK has a branch of its own and matches nothing.
        let inv2 = request("INVITE", "z9hG4bKi2", 2, None);
        let key2 = new_key(l.on_request(inv2.clone(), false, t0).unwrap());
        l.respond(&key2, response(&inv2, 200, Some("s2")), t0 + ms(10));
        let ack2 = request("ACK", "z9hG4bKa2", 2, Some("s2"));
        assert_eq!(
            l.on_request(ack2.clone(), false, t0 + ms(20)).unwrap(),
            Incoming::Ack(ack2)
        );
        // A retransmitted INVITE is absorbed while Accepted.
        assert_eq!(
            l.on_request(inv2, false, t0 + ms(500)).unwrap(),
            Incoming::Matched {
                key: key2.clone(),
                outputs: vec![]
            }
        );
        // An ACK reusing the INVITE's branch reaches the TU through the transaction.
        let ack_same = request("ACK", "z9hG4bKi2", 2, Some("s2"));
        assert_eq!(
            l.on_request(ack_same.clone(), false, t0 + ms(30)).unwrap(),
            Incoming::Matched {
                key: key2,
                outputs: vec![Output::Deliver(ack_same)]
            }
        );
    }

    #[test]
    fn cancel_finds_its_invite() {
        let t0 = base();
        let mut l = layer();
        let inv = request("INVITE", "z9hG4bKc1", 1, None);
        let inv_key = new_key(l.on_request(inv.clone(), false, t0).unwrap());
        let cancel = cancel_for(&inv).unwrap();
        let Incoming::Cancel {
            key,
            request: got,
            invite,
        } = l.on_request(cancel.clone(), false, t0 + ms(100)).unwrap()
        else {
            panic!("expected Cancel")
        };
        assert_eq!(got, cancel);
        assert_eq!(invite.as_ref(), Some(&inv_key));
        assert_ne!(key, inv_key);
        assert_eq!(l.len(), 2);
        // The TU answers both.
        let ok = response(&cancel, 200, Some("s1"));
        l.respond(&key, ok.clone(), t0 + ms(110));
        let original = l.request(&inv_key).unwrap().clone();
        let terminated = response(&original, 487, Some("s1"));
        assert_eq!(
            sent_codes(&l.respond(&inv_key, terminated, t0 + ms(110))),
            [487]
        );
        // A retransmitted CANCEL gets its 200 again.
        assert_eq!(
            l.on_request(cancel, false, t0 + ms(600)).unwrap(),
            Incoming::Matched {
                key,
                outputs: vec![Output::Send(ok.to_bytes())]
            }
        );
        // A CANCEL for an unknown INVITE.
        let stray = cancel_for(&request("INVITE", "z9hG4bKnone", 1, None)).unwrap();
        let Incoming::Cancel { invite, .. } = l.on_request(stray, false, t0).unwrap() else {
            panic!("expected Cancel")
        };
        assert_eq!(invite, None);
    }

    #[test]
    fn rfc2543_invite_and_ack_matching() {
        let t0 = base();
        let mut l = layer();
        let text = concat!(
            "INVITE sip:UserB@example.com SIP/2.0\r\n",
            "Via: SIP/2.0/UDP iftgw.example.com\r\n",
            "From: <sip:+13035551111@ift.client.example.net;user=phone>;tag=f1\r\n",
            "To: sip:+16505552222@ss1.example.net;user=phone\r\n",
            "Call-ID: inv2543.1717@ift.client.example.com\r\n",
            "CSeq: 56 INVITE\r\n",
            "Content-Length: 0\r\n\r\n",
        );
        let inv = msg(text);
        let key = new_key(l.on_request(inv.clone(), false, t0).unwrap());
        assert!(key.is_rfc2543());
        let busy = response(&inv, 486, Some("ours"));
        l.respond(&key, busy.clone(), t0 + ms(10));
        // The retransmitted INVITE matches and gets the 486 again.
        assert_eq!(
            l.on_request(inv.clone(), false, t0 + ms(500)).unwrap(),
            Incoming::Matched {
                key: key.clone(),
                outputs: vec![Output::Send(busy.to_bytes())]
            }
        );
        let ack_with = |tag: &str| {
            msg(&text
                .replace("INVITE sip", "ACK sip")
                .replace("56 INVITE", "56 ACK")
                .replace(
                    "user=phone\r\nCall",
                    &format!("user=phone;tag={tag}\r\nCall"),
                ))
        };
        // An ACK with another To tag is not for this transaction.
        let wrong = ack_with("theirs");
        assert_eq!(
            l.on_request(wrong.clone(), false, t0 + ms(600)).unwrap(),
            Incoming::Ack(wrong)
        );
        assert_eq!(l.state(&key), Some(State::Completed));
        let right = ack_with("ours");
        assert!(matches!(
            l.on_request(right, false, t0 + ms(700)).unwrap(),
            Incoming::Matched { .. }
        ));
        assert_eq!(l.state(&key), Some(State::Confirmed));
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let t0 = base();
        let mut l = layer();
        let mut no_via = request("OPTIONS", "z9hG4bKx", 1, None);
        no_via.remove(&HeaderName::Via);
        assert!(matches!(
            l.on_request(no_via.clone(), false, t0),
            Err(TransactionError::Malformed(_))
        ));
        assert!(l.send_request(no_via, false, t0).is_err());
        let resp = response(&request("OPTIONS", "z9hG4bKx", 1, None), 200, None);
        assert_eq!(
            l.on_request(resp, false, t0),
            Err(TransactionError::NotARequest)
        );
        // RFC 2543 request without From: no key can be built.
        let mut no_from = request("OPTIONS", "old", 1, None);
        no_from.remove(&HeaderName::From);
        assert!(l.on_request(no_from, false, t0).is_err());
        assert!(
            l.on_response(request("OPTIONS", "z9hG4bKx", 1, None), t0)
                .is_none()
        );
        assert!(l.is_empty());
    }

    #[test]
    fn client_flow_and_strays() {
        let t0 = base();
        let mut l = layer();
        let branch = branch_from(b"call 1");
        let req = request("OPTIONS", &branch, 1, None);
        let (key, out) = l.send_request(req.clone(), false, t0).unwrap();
        assert_eq!(out, vec![Output::Send(req.to_bytes())]);
        assert_eq!(key.side(), Side::Client);
        assert_eq!(
            l.send_request(req.clone(), false, t0),
            Err(TransactionError::Duplicate)
        );
        assert_eq!(
            l.send_request(request("ACK", &branch_from(b"a"), 1, None), false, t0),
            Err(TransactionError::AckStartsNoTransaction)
        );
        assert_eq!(
            l.send_request(request("OPTIONS", "nocookie", 1, None), false, t0),
            Err(TransactionError::NoBranch)
        );
        // RFC 4475 §3.3.15 BCAST: a response to nothing we sent.
        let bcast = msg(concat!(
            "SIP/2.0 200 OK\r\n",
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n",
            "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n",
            "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\r\n",
            "CSeq: 35 INVITE\r\n",
            "From: sip:user@example.com;tag=11141343\r\n",
            "To: sip:user@example.edu;tag=2229\r\n",
            "Content-Length: 0\r\n\r\n",
        ));
        assert_eq!(l.on_response(bcast, t0), None);
        // Right branch, wrong method or wrong sent-by: strays too.
        let mut other_method = response(&req, 200, None);
        other_method.set(HeaderName::CSeq, "1 INVITE");
        assert_eq!(l.on_response(other_method, t0), None);
        let mut other_host = response(&req, 200, None);
        other_host.set(
            HeaderName::Via,
            format!("SIP/2.0/UDP elsewhere.example.com:5060;branch={branch}"),
        );
        assert_eq!(l.on_response(other_host, t0), None);
        // The real response.
        let ok = response(&req, 200, Some("b"));
        let (k, out) = l.on_response(ok.clone(), t0 + ms(100)).unwrap();
        assert_eq!(k, key);
        assert_eq!(out, vec![Output::Deliver(ok.clone())]);
        assert_eq!(l.state(&key), Some(State::Completed));
        // Its retransmission is absorbed, then K ends the transaction.
        assert_eq!(
            l.on_response(ok.clone(), t0 + ms(200)),
            Some((key.clone(), vec![]))
        );
        assert_eq!(
            run(&mut l, t0 + ms(10_000)),
            vec![(t0 + ms(5100), key.clone(), Output::Terminated)]
        );
        assert!(l.is_empty());
        // Once gone, the response is a stray.
        assert_eq!(l.on_response(ok, t0 + ms(10_000)), None);
    }

    #[test]
    fn remove_drops_a_transaction_and_its_timer() {
        let t0 = base();
        let mut l = layer();
        let (key, _) = l
            .send_request(request("INVITE", &branch_from(b"x"), 1, None), false, t0)
            .unwrap();
        assert_eq!(l.poll_timeout(), Some(t0 + ms(500)));
        assert!(l.remove(&key));
        assert!(!l.remove(&key));
        assert_eq!(l.poll_timeout(), None);
        assert!(l.handle_timeout(t0 + ms(60_000)).is_empty());
    }

    #[test]
    fn thousands_of_client_transactions_time_out_in_order() {
        let t0 = base();
        let mut l = layer();
        let n = 5000u64;
        let mut keys = Vec::new();
        for i in 0..n {
            let req = request("OPTIONS", &branch_from(&i.to_le_bytes()), 1, None);
            // Start every 3 ms, half on TCP.
            let (key, _) = l.send_request(req, i % 2 == 0, t0 + ms(3 * i)).unwrap();
            keys.push(key);
        }
        assert_eq!(l.len(), n as usize);
        // Answer one in ten.
        for (i, key) in keys.iter().enumerate().step_by(10) {
            let req = l.request(key).unwrap().clone();
            let ok = response(&req, 200, Some("t"));
            assert!(l.on_response(ok, t0 + ms(3 * i as u64 + 1)).is_some());
        }
        let fired = run(&mut l, t0 + ms(3 * n + 40_000));
        let timeouts: Vec<&TransactionKey> = fired
            .iter()
            .filter(|(_, _, o)| *o == Output::TimedOut)
            .map(|(_, k, _)| k)
            .collect();
        // Everyone unanswered times out once, 32 s after its start, in start order.
        assert_eq!(timeouts.len(), (n - n / 10) as usize);
        let expected: Vec<&TransactionKey> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 0)
            .map(|(_, k)| k)
            .collect();
        assert_eq!(timeouts, expected);
        let index: HashMap<&TransactionKey, u64> = keys.iter().zip(0..).collect();
        for (t, k, o) in &fired {
            if *o == Output::TimedOut {
                let i = index[k];
                assert_eq!(*t, t0 + ms(3 * i) + Duration::from_secs(32));
            }
        }
        // Each transaction terminated exactly once and is gone.
        let ends = fired
            .iter()
            .filter(|(_, _, o)| *o == Output::Terminated)
            .count();
        // The answered ones (even i, so TCP) ended when answered, not by timer.
        assert_eq!(ends, (n - n / 10) as usize);
        assert_eq!(l.len(), 0);
        assert!(l.deadlines.is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn thousands_of_server_transactions_drain() {
        let t0 = base();
        let mut l = TransactionLayer::new(Config::default());
        let n = 3000u32;
        for i in 0..n {
            let method = if i % 3 == 0 { "INVITE" } else { "MESSAGE" };
            let req = request(method, &format!("z9hG4bKs{i}"), i + 1, None);
            let at = t0 + ms(u64::from(i));
            let key = new_key(l.on_request(req.clone(), i % 4 == 0, at).unwrap());
            // One index entry per live transaction with a timer.
            assert!(l.deadlines.len() <= l.len());
            let code = match i % 5 {
                0 => 200,
                1 => 486,
                _ => continue, // INVITEs get a 100 by timer, MESSAGEs wait
            };
            l.respond(&key, response(&req, code, Some("s")), at + ms(1));
        }
        let fired = run(&mut l, t0 + ms(u64::from(n) + 100_000));
        assert!(fired.iter().any(|(_, _, o)| *o == Output::TimedOut));
        // Unanswered server transactions have no timer in RFC 3261 (past the 100
        // Trying): the TU must answer them. The rest drained.
        let waiting = (0..n).filter(|i| i % 5 > 1).count();
        assert_eq!(l.len(), waiting);
        assert!(l.deadlines.is_empty());
    }
}
