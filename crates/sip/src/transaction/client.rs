//! Client transactions: INVITE (§17.1.1, RFC 6026 §8.4) and non-INVITE (§17.1.2).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::header::HeaderName;
use crate::message::Message;
use crate::method::Method;

use super::timers::after;
use super::{Output, State, Timers, TransactionError};

/// One client transaction. Created by sending a request; fed the responses that
/// match its [`TransactionKey::client`](super::TransactionKey::client) and its
/// timeouts.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    /// The request, until a final response: the ACK of a non-2xx is built from it,
    /// and from then on nothing needs it.
    request: Option<Message>,
    /// Timer A or E: the next retransmission of the request (unreliable only).
    retransmit: Option<Instant>,
    /// The interval that led to `retransmit`.
    interval: Duration,
    /// The state's other timer: B or F (no final response), D or K (absorbing
    /// retransmitted finals) or M (Accepted).
    timeout: Option<Instant>,
    /// The request as sent, for its retransmissions (until a response ends them).
    wire: Option<Bytes>,
    /// The ACK of a non-2xx final response, sent again for each retransmission of it.
    ack: Option<Bytes>,
    /// Our top Via's sent-by ([`Via::sent_by_digest`]): responses carrying another
    /// are not ours (§18.1.2).
    ///
    /// [`Via::sent_by_digest`]: crate::header::Via::sent_by_digest
    sent_by: u64,
}

impl ClientTransaction {
    /// Starts a transaction for `request` (any method but ACK) and returns it with
    /// the first [`Output::Send`]. `reliable` is the transport the request goes on:
    /// retransmissions happen only on unreliable ones.
    pub fn new(
        request: Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Output>), TransactionError> {
        let method = request.method().ok_or(TransactionError::NotARequest)?;
        if *method == Method::Ack {
            return Err(TransactionError::AckStartsNoTransaction);
        }
        if request.cseq()?.method != *method {
            return Err(TransactionError::MethodMismatch);
        }
        // The ACK and CANCEL builders need these; refuse now rather than fail later.
        // From and To are copied as they are, so being there is enough (parsing
        // them was a third of the cost of starting a transaction).
        let sent_by = request.top_via()?.sent_by_digest();
        request.call_id()?;
        for name in [HeaderName::From, HeaderName::To] {
            if request.header(&name).is_none() {
                return Err(TransactionError::Malformed(crate::ParseError::malformed(
                    format!("missing {name} header"),
                )));
            }
        }
        let invite = *method == Method::Invite;
        let (state, timeout) = if invite {
            (State::Calling, timers.b())
        } else {
            (State::Trying, timers.f())
        };
        let wire = request.to_bytes();
        let tx = Self {
            invite,
            reliable,
            timers,
            state,
            retransmit: if reliable {
                None
            } else {
                after(now, timers.t1)
            },
            interval: timers.t1,
            timeout: after(now, timeout),
            ack: None,
            // Reliable transports never retransmit.
            wire: (!reliable).then(|| wire.clone()),
            sent_by,
            request: Some(request),
        };
        Ok((tx, vec![Output::Send(wire)]))
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The request the transaction sends, until a final response came.
    pub fn request(&self) -> Option<&Message> {
        self.request.as_ref()
    }

    /// Whether `sent_by` (the digest of a response's top Via) is the one we put in
    /// the request.
    pub(crate) fn sent_by_matches(&self, sent_by: u64) -> bool {
        self.sent_by == sent_by
    }

    /// A response matched to this transaction. Responses the state does not expect
    /// (a 1xx after the final one, a retransmitted final) are absorbed.
    pub fn on_response(&mut self, response: Message, now: Instant) -> Vec<Output> {
        let Some(code) = response.code().filter(|c| (100..=699).contains(c)) else {
            return Vec::new();
        };
        if self.invite {
            self.invite_response(code, response, now)
        } else {
            self.non_invite_response(code, response, now)
        }
    }

    fn invite_response(&mut self, code: u16, response: Message, now: Instant) -> Vec<Output> {
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                // No more retransmissions, and Timer B only guards Calling: from here
                // the TU decides how long to wait (Timer C, CANCEL).
                self.state = State::Proceeding;
                self.stop_retransmitting();
                self.timeout = None;
                vec![Output::Deliver(response)]
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.stop_retransmitting();
                // Never sent again: the TU ACKs the 2xx.
                self.request = None;
                self.timeout = after(now, self.timers.m());
                vec![Output::Deliver(response)]
            }
            (State::Calling | State::Proceeding, _) => {
                self.state = State::Completed;
                self.stop_retransmitting();
                self.ack = self
                    .request
                    .take()
                    .and_then(|request| ack_for(&request, &response).ok())
                    .map(|ack| ack.to_bytes());
                let mut out: Vec<Output> = self.ack.iter().cloned().map(Output::Send).collect();
                out.push(Output::Deliver(response));
                self.wait_then_end(self.timers.d(self.reliable), now, &mut out);
                out
            }
            // A retransmitted final: ACK it again, the TU has it already.
            (State::Completed, 300..) => self.ack.iter().cloned().map(Output::Send).collect(),
            // RFC 6026: further 2xx (retransmissions, other forks) go to the TU, which
            // ACKs them.
            (State::Accepted, 200..=299) => vec![Output::Deliver(response)],
            _ => Vec::new(),
        }
    }

    fn non_invite_response(&mut self, code: u16, response: Message, now: Instant) -> Vec<Output> {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                // Timer E keeps running; it switches to T2 when it next fires.
                self.state = State::Proceeding;
                vec![Output::Deliver(response)]
            }
            (State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.stop_retransmitting();
                self.request = None;
                let mut out = vec![Output::Deliver(response)];
                self.wait_then_end(self.timers.k(self.reliable), now, &mut out);
                out
            }
            _ => Vec::new(),
        }
    }

    fn stop_retransmitting(&mut self) {
        self.retransmit = None;
        self.wire = None;
    }

    /// Starts Timer D or K, or ends at once when it is zero (reliable transports).
    fn wait_then_end(&mut self, wait: Duration, now: Instant, out: &mut Vec<Output>) {
        if wait.is_zero() {
            self.terminate(out);
        } else {
            self.timeout = after(now, wait);
        }
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = State::Terminated;
        self.stop_retransmitting();
        self.timeout = None;
        out.push(Output::Terminated);
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) has
    /// work; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit, self.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the timers due at `now`. Each fires at most once per call, and a late
    /// call sends one retransmission, not a burst.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.timeout.is_some_and(|t| t <= now) {
            self.timeout = None;
            // B or F: no final response came; D, K or M: the waiting is over.
            let timed_out = matches!(
                self.state,
                State::Calling | State::Trying | State::Proceeding
            );
            if timed_out {
                out.push(Output::TimedOut);
            }
            self.terminate(&mut out);
        }
        if self.retransmit.is_some_and(|t| t <= now) {
            out.extend(self.wire.iter().cloned().map(Output::Send));
            self.interval = match (self.invite, self.state) {
                // Timer A doubles without a cap.
                (true, _) => self.interval.saturating_mul(2),
                // Timer E doubles up to T2 while Trying, and is T2 once Proceeding.
                (false, State::Trying) => self.timers.next_capped(self.interval),
                (false, _) => self.timers.t2,
            };
            self.retransmit = after(now, self.interval);
        }
        out
    }
}

/// The ACK of a non-2xx final response to `request` (§17.1.1.3): the request's
/// Request-URI, Call-ID, From, CSeq number and Route headers, its top Via only, and
/// the To of the response (with the tag the server chose).
pub fn ack_for(request: &Message, response: &Message) -> Result<Message, TransactionError> {
    let to = response
        .header(&HeaderName::To)
        .or_else(|| request.header(&HeaderName::To))
        .unwrap_or_default()
        .to_owned();
    derived_request(request, Method::Ack, to)
}

/// The CANCEL of `request` (§9.1): same Request-URI, Call-ID, From, To, CSeq number
/// and Route headers, and the request's top Via only, so it carries the same branch.
/// It is sent in a client transaction of its own.
pub fn cancel_for(request: &Message) -> Result<Message, TransactionError> {
    let to = request
        .header(&HeaderName::To)
        .unwrap_or_default()
        .to_owned();
    derived_request(request, Method::Cancel, to)
}

fn derived_request(
    request: &Message,
    method: Method,
    to: String,
) -> Result<Message, TransactionError> {
    let uri = request.uri().ok_or(TransactionError::NotARequest)?.clone();
    let via = request.top_via()?;
    let seq = request.cseq()?.seq;
    let from = request
        .header(&HeaderName::From)
        .ok_or(TransactionError::Malformed(crate::ParseError::malformed(
            "missing From header",
        )))?
        .to_owned();
    let call_id = request.call_id()?.to_owned();
    let mut out = Message::request(method.clone(), uri);
    out.push(HeaderName::Via, via.to_string());
    for route in request.header_values(&HeaderName::Route) {
        out.push(HeaderName::Route, route.to_owned());
    }
    // Every request carries Max-Forwards (§8.1.1.6).
    let max_forwards = request.header(&HeaderName::MaxForwards).unwrap_or("70");
    out.push(HeaderName::MaxForwards, max_forwards.to_owned());
    out.push(HeaderName::From, from);
    out.push(HeaderName::To, to);
    out.push(HeaderName::CallId, call_id);
    out.push(HeaderName::CSeq, crate::header::CSeq::text(seq, &method));
    out.push(HeaderName::ContentLength, "0");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::*;

    fn invite() -> Message {
        request("INVITE", "z9hG4bKinv1", 1, None)
    }

    fn options() -> Message {
        request("OPTIONS", "z9hG4bKopt1", 2, None)
    }

    fn start(req: Message, reliable: bool, now: Instant) -> ClientTransaction {
        let (tx, out) =
            ClientTransaction::new(req.clone(), reliable, Timers::default(), now).unwrap();
        assert_eq!(out, vec![Output::Send(req.to_bytes())]);
        tx
    }

    /// Drives the timers until `until`, returning (time, outputs) of each firing.
    fn run(tx: &mut ClientTransaction, until: Instant) -> Vec<(Instant, Vec<Output>)> {
        let mut fired = Vec::new();
        while let Some(t) = tx.poll_timeout().filter(|t| *t <= until) {
            fired.push((t, tx.handle_timeout(t)));
        }
        fired
    }

    #[test]
    fn refuses_what_is_no_transaction() {
        let now = base();
        let t = Timers::default();
        let ack = request("ACK", "z9hG4bKx", 1, None);
        assert_eq!(
            ClientTransaction::new(ack, false, t, now).err(),
            Some(TransactionError::AckStartsNoTransaction)
        );
        let resp = response(&invite(), 200, None);
        assert_eq!(
            ClientTransaction::new(resp, false, t, now).err(),
            Some(TransactionError::NotARequest)
        );
        let mut mismatch = invite();
        mismatch.set(HeaderName::CSeq, "1 BYE");
        assert_eq!(
            ClientTransaction::new(mismatch, false, t, now).err(),
            Some(TransactionError::MethodMismatch)
        );
        let mut no_call_id = invite();
        no_call_id.remove(&HeaderName::CallId);
        assert!(matches!(
            ClientTransaction::new(no_call_id, false, t, now).err(),
            Some(TransactionError::Malformed(_))
        ));
    }

    #[test]
    fn invite_timer_a_doubles_until_timer_b() {
        let t0 = base();
        let mut tx = start(invite(), false, t0);
        assert_eq!(tx.state(), State::Calling);
        assert!(tx.is_invite());
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
        // Nothing before the deadline.
        assert!(tx.handle_timeout(t0 + ms(499)).is_empty());
        let fired = run(&mut tx, t0 + ms(40_000));
        let times: Vec<u64> = fired
            .iter()
            .map(|(t, _)| (*t - t0).as_millis() as u64)
            .collect();
        // A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (no cap at T2); B at 64·T1 = 32 s.
        assert_eq!(times, [500, 1500, 3500, 7500, 15500, 31500, 32000]);
        for (_, out) in &fired[..6] {
            assert_eq!(out, &vec![Output::Send(invite().to_bytes())]);
        }
        assert_eq!(fired[6].1, vec![Output::TimedOut, Output::Terminated]);
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invite_reliable_never_retransmits() {
        let t0 = base();
        let mut tx = start(invite(), true, t0);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        let fired = run(&mut tx, t0 + ms(100_000));
        assert_eq!(
            fired,
            vec![(t0 + ms(32_000), vec![Output::TimedOut, Output::Terminated])]
        );
    }

    #[test]
    fn invite_provisional_stops_retransmissions_and_timer_b() {
        let t0 = base();
        let mut tx = start(invite(), false, t0);
        run(&mut tx, t0 + ms(500));
        let ringing = response(&invite(), 180, Some("b1"));
        let out = tx.on_response(ringing.clone(), t0 + ms(600));
        assert_eq!(out, vec![Output::Deliver(ringing.clone())]);
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(tx.poll_timeout(), None);
        // More provisionals go up too.
        assert_eq!(tx.on_response(ringing.clone(), t0 + ms(700)).len(), 1);
        assert_eq!(tx.state(), State::Proceeding);
    }

    #[test]
    fn invite_non_2xx_is_acked_and_timer_d_absorbs_retransmissions() {
        let t0 = base();
        let mut tx = start(invite(), false, t0);
        tx.on_response(response(&invite(), 100, None), t0 + ms(100));
        let busy = response(&invite(), 486, Some("b1"));
        let out = tx.on_response(busy.clone(), t0 + ms(1000));
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(delivered(&out), vec![&busy]);
        let acks = sent(&out);
        assert_eq!(acks.len(), 1);
        let ack = acks[0].clone();
        // §17.1.1.3 headers.
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.uri(), invite().uri());
        assert_eq!(ack.header_values(&HeaderName::Via).count(), 1);
        assert_eq!(ack.top_via().unwrap(), invite().top_via().unwrap());
        assert_eq!(ack.call_id().unwrap(), "call-1@example.com");
        assert_eq!(
            ack.header(&HeaderName::From),
            invite().header(&HeaderName::From)
        );
        assert_eq!(tag_of(&ack).as_deref(), Some("b1"));
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert_eq!(ack.cseq().unwrap().method, Method::Ack);
        let routes: Vec<&str> = ack.header_values(&HeaderName::Route).collect();
        assert_eq!(
            routes,
            ["<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"]
        );
        assert_eq!(ack.header(&HeaderName::MaxForwards), Some("70"));
        assert!(ack.header(&HeaderName::Contact).is_none());
        assert!(ack.check_syntax().is_ok());
        // A retransmitted final: the ACK again, nothing to the TU.
        let out = tx.on_response(busy.clone(), t0 + ms(2000));
        assert_eq!(out, vec![Output::Send(ack.to_bytes())]);
        // Other responses are absorbed.
        assert!(
            tx.on_response(response(&invite(), 200, Some("b2")), t0 + ms(2100))
                .is_empty()
        );
        // Timer D: 32 s after the final response.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(33_000)));
        assert!(tx.handle_timeout(t0 + ms(32_999)).is_empty());
        assert_eq!(tx.handle_timeout(t0 + ms(33_000)), vec![Output::Terminated]);
        assert_eq!(tx.state(), State::Terminated);
        assert!(tx.on_response(busy, t0 + ms(34_000)).is_empty());
    }

    #[test]
    fn invite_non_2xx_on_reliable_ends_at_once() {
        let t0 = base();
        let mut tx = start(invite(), true, t0);
        let out = tx.on_response(response(&invite(), 603, Some("b1")), t0 + ms(10));
        assert_eq!(sent(&out)[0].method(), Some(&Method::Ack));
        assert!(terminated(&out));
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invite_2xx_is_accepted_with_timer_m() {
        let t0 = base();
        let mut tx = start(invite(), false, t0);
        let ok = response(&invite(), 200, Some("b1"));
        assert_eq!(
            tx.on_response(ok.clone(), t0 + ms(700)),
            vec![Output::Deliver(ok.clone())]
        );
        assert_eq!(tx.state(), State::Accepted);
        // No ACK from the transaction: the TU ACKs a 2xx.
        // Retransmissions and other forks' 2xx still reach the TU (RFC 6026).
        assert_eq!(
            tx.on_response(ok.clone(), t0 + ms(1200)),
            vec![Output::Deliver(ok.clone())]
        );
        let fork = response(&invite(), 200, Some("b2"));
        assert_eq!(
            tx.on_response(fork.clone(), t0 + ms(1300)),
            vec![Output::Deliver(fork)]
        );
        assert!(
            tx.on_response(response(&invite(), 180, Some("b3")), t0 + ms(1400))
                .is_empty()
        );
        assert!(
            tx.on_response(response(&invite(), 486, Some("b3")), t0 + ms(1400))
                .is_empty()
        );
        // Timer M = 64·T1, also on reliable transports.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(700 + 32_000)));
        assert_eq!(tx.handle_timeout(t0 + ms(32_700)), vec![Output::Terminated]);

        let mut tcp = start(invite(), true, t0);
        tcp.on_response(ok, t0 + ms(5));
        assert_eq!(tcp.poll_timeout(), Some(t0 + ms(32_005)));
    }

    #[test]
    fn non_invite_timer_e_doubles_capped_at_t2_until_timer_f() {
        let t0 = base();
        let mut tx = start(options(), false, t0);
        assert_eq!(tx.state(), State::Trying);
        assert!(!tx.is_invite());
        let fired = run(&mut tx, t0 + ms(40_000));
        let times: Vec<u64> = fired
            .iter()
            .map(|(t, _)| (*t - t0).as_millis() as u64)
            .collect();
        // E: 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s; F at 32 s.
        assert_eq!(
            times,
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000
            ]
        );
        assert!(
            fired[..10]
                .iter()
                .all(|(_, o)| o == &vec![Output::Send(options().to_bytes())])
        );
        assert_eq!(fired[10].1, vec![Output::TimedOut, Output::Terminated]);
    }

    #[test]
    fn non_invite_timer_e_is_t2_in_proceeding() {
        let t0 = base();
        let mut tx = start(options(), false, t0);
        run(&mut tx, t0 + ms(500)); // next E at 1.5 s
        let trying = response(&options(), 100, None);
        assert_eq!(
            tx.on_response(trying.clone(), t0 + ms(600)),
            vec![Output::Deliver(trying)]
        );
        assert_eq!(tx.state(), State::Proceeding);
        let fired = run(&mut tx, t0 + ms(20_000));
        let times: Vec<u64> = fired
            .iter()
            .map(|(t, _)| (*t - t0).as_millis() as u64)
            .collect();
        // The pending E fires at 1.5 s, then every T2.
        assert_eq!(times, [1500, 5500, 9500, 13500, 17500]);
        // Timer F still runs in Proceeding.
        let fired = run(&mut tx, t0 + ms(40_000));
        assert_eq!(fired.last().unwrap().0, t0 + ms(32_000));
        assert_eq!(
            fired.last().unwrap().1,
            vec![Output::TimedOut, Output::Terminated]
        );
    }

    #[test]
    fn non_invite_final_then_timer_k() {
        let t0 = base();
        let mut tx = start(options(), false, t0);
        let ok = response(&options(), 200, Some("b"));
        let out = tx.on_response(ok.clone(), t0 + ms(300));
        assert_eq!(out, vec![Output::Deliver(ok.clone())]);
        assert_eq!(tx.state(), State::Completed);
        // Retransmitted finals and late provisionals are absorbed.
        assert!(tx.on_response(ok.clone(), t0 + ms(400)).is_empty());
        assert!(
            tx.on_response(response(&options(), 180, None), t0 + ms(400))
                .is_empty()
        );
        // K = T4 = 5 s, and no retransmission of the request any more.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5300)));
        assert_eq!(tx.handle_timeout(t0 + ms(5300)), vec![Output::Terminated]);

        let mut tcp = start(options(), true, t0);
        assert_eq!(tcp.poll_timeout(), Some(t0 + ms(32_000)));
        let out = tcp.on_response(ok, t0 + ms(5));
        assert_eq!(out.len(), 2);
        assert!(terminated(&out));
    }

    #[test]
    fn non_invite_reliable_never_retransmits() {
        let t0 = base();
        let mut tx = start(options(), true, t0);
        tx.on_response(response(&options(), 100, None), t0 + ms(100));
        let fired = run(&mut tx, t0 + ms(100_000));
        assert_eq!(
            fired,
            vec![(t0 + ms(32_000), vec![Output::TimedOut, Output::Terminated])]
        );
    }

    #[test]
    fn late_timeout_call_sends_one_retransmission() {
        let t0 = base();
        let mut tx = start(options(), false, t0);
        // Called 3 s late: one retransmission, rescheduled from now.
        let out = tx.handle_timeout(t0 + ms(3500));
        assert_eq!(out.len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(4500)));
        // Called after Timer F: only the timeout.
        let out = tx.handle_timeout(t0 + ms(50_000));
        assert_eq!(out, vec![Output::TimedOut, Output::Terminated]);
    }

    #[test]
    fn garbage_responses_are_ignored() {
        let t0 = base();
        let mut tx = start(options(), false, t0);
        let mut weird = response(&options(), 200, None);
        weird.start = crate::StartLine::Response {
            code: 99,
            reason: "x".into(),
        };
        assert!(tx.on_response(weird, t0).is_empty());
        assert!(tx.on_response(options(), t0).is_empty());
        assert_eq!(tx.state(), State::Trying);
    }

    #[test]
    fn cancel_headers() {
        let inv = invite();
        let cancel = cancel_for(&inv).unwrap();
        assert_eq!(cancel.method(), Some(&Method::Cancel));
        assert_eq!(cancel.uri(), inv.uri());
        assert_eq!(
            cancel.vias().unwrap(),
            vec![inv.top_via().unwrap().into_owned()]
        );
        assert_eq!(cancel.header(&HeaderName::To), inv.header(&HeaderName::To));
        assert_eq!(cancel.cseq().unwrap().to_string(), "1 CANCEL");
        assert_eq!(cancel.header_values(&HeaderName::Route).count(), 2);
        assert!(cancel.check_syntax().is_ok());
        // Its server-side key points at the INVITE's.
        use crate::transaction::TransactionKey;
        assert_eq!(
            TransactionKey::cancelled_invite(&cancel).unwrap(),
            TransactionKey::server(&inv).unwrap()
        );
        assert!(cancel_for(&response(&inv, 200, None)).is_err());
    }
}
