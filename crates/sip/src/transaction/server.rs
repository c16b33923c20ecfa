//! Server transactions: INVITE (§17.2.1, RFC 6026 §8.5–8.7) and non-INVITE (§17.2.2).

use std::time::{Duration, Instant};

use bytes::Bytes;
use compact_str::CompactString;

use crate::header::HeaderName;
use crate::message::Message;
use crate::method::Method;

use super::timers::after;
use super::{Config, Output, State, Timers, TransactionError};

/// One server transaction. Created by a received request; fed its retransmissions
/// (and for INVITE its ACK), the TU's responses and its timeouts.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    /// The request, until the final response: from then on the transaction only
    /// absorbs retransmissions (for 32 s over UDP, hundreds of thousands of them under
    /// a call storm), which needs nothing of it.
    request: Option<Message>,
    /// Re-sent when the request is retransmitted in Proceeding.
    last_provisional: Option<Bytes>,
    /// Re-sent on request retransmissions in Completed and by Timer G.
    last_final: Option<Bytes>,
    /// The To tag (if any) of the non-2xx final response, once one was sent: an RFC
    /// 2543 ACK must carry it.
    final_tag: Option<Option<CompactString>>,
    /// Timer G (INVITE, Completed, unreliable only).
    retransmit: Option<Instant>,
    interval: Duration,
    /// The state's other timer: H (Completed INVITE), I (Confirmed), J (Completed
    /// non-INVITE) or L (Accepted).
    timeout: Option<Instant>,
    /// When to send `100 Trying` ourselves (INVITE, until the TU responds).
    trying: Option<Instant>,
}

impl ServerTransaction {
    /// Starts a transaction for a received `request` (any method but ACK) and returns
    /// it with [`Output::Deliver`] of the request. `reliable` is the transport it came
    /// on, where responses go back.
    pub fn new(
        request: Message,
        reliable: bool,
        config: &Config,
        now: Instant,
    ) -> Result<(Self, Vec<Output>), TransactionError> {
        let method = request.method().ok_or(TransactionError::NotARequest)?;
        if *method == Method::Ack {
            return Err(TransactionError::AckStartsNoTransaction);
        }
        let invite = *method == Method::Invite;
        let tx = Self {
            invite,
            reliable,
            timers: config.timers,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            last_provisional: None,
            last_final: None,
            final_tag: None,
            retransmit: None,
            interval: config.timers.t1,
            timeout: None,
            trying: if invite {
                config.trying_delay.and_then(|d| after(now, d))
            } else {
                None
            },
            request: Some(request.clone()),
        };
        Ok((tx, vec![Output::Deliver(request)]))
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The request that created the transaction (to build responses from), until a
    /// final response was sent.
    pub fn request(&self) -> Option<&Message> {
        self.request.as_ref()
    }

    /// The To tag of the non-2xx final response sent (the one an RFC 2543 ACK must
    /// carry): `None` before there is one, `Some(None)` for a final without a tag.
    pub fn final_tag(&self) -> Option<Option<&str>> {
        self.final_tag.as_ref().map(Option::as_deref)
    }

    /// A received request matched to this transaction: a retransmission of the
    /// request, or for INVITE an ACK.
    pub fn on_request(&mut self, request: Message, now: Instant) -> Vec<Output> {
        let is_ack = request.method() == Some(&Method::Ack);
        match (self.invite, is_ack, self.state) {
            (true, true, State::Completed) => {
                // The ACK ends Timer G and H; Timer I absorbs its retransmissions,
                // and nothing is sent again.
                self.state = State::Confirmed;
                self.retransmit = None;
                self.timeout = None;
                self.last_final = None; // nothing is sent again
                let mut out = Vec::new();
                let wait = self.timers.i(self.reliable);
                if wait.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.timeout = after(now, wait);
                }
                out
            }
            // RFC 6026 §8.7: an ACK matching an accepted INVITE goes to the TU.
            (true, true, State::Accepted) => vec![Output::Deliver(request)],
            (_, false, State::Proceeding) => self.resend(&self.last_provisional),
            (_, false, State::Completed) => self.resend(&self.last_final),
            // Trying (nothing to resend yet), Accepted (RFC 6026: absorb the INVITE),
            // Confirmed, Terminated, or an ACK the state does not expect.
            _ => Vec::new(),
        }
    }

    fn resend(&self, response: &Option<Bytes>) -> Vec<Output> {
        response.iter().cloned().map(Output::Send).collect()
    }

    /// Keeps `response`, a non-2xx final, to send again, and its To tag.
    fn keep_final(&mut self, response: &Message) -> Bytes {
        self.final_tag = Some(
            response
                .to_addr()
                .ok()
                .and_then(|to| to.tag().map(CompactString::from)),
        );
        let wire = response.to_bytes();
        self.last_final = Some(wire.clone());
        wire
    }

    /// A response from the TU. Returns what to send; a response the state does not
    /// allow (a second final, a 1xx after the final) is dropped. After a 2xx to
    /// INVITE the TU may pass retransmissions of its 2xx while Accepted.
    pub fn respond(&mut self, response: Message, now: Instant) -> Vec<Output> {
        let Some(code) = response.code().filter(|c| (100..=699).contains(c)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match (self.invite, self.state, code) {
            (_, State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.trying = None;
                let wire = response.to_bytes();
                self.last_provisional = Some(wire.clone());
                out.push(Output::Send(wire));
            }
            (true, State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.trying = None;
                self.last_provisional = None;
                self.request = None;
                self.timeout = after(now, self.timers.l());
                out.push(Output::Send(response.to_bytes()));
            }
            (true, State::Proceeding, _) => {
                self.state = State::Completed;
                self.trying = None;
                self.last_provisional = None;
                self.request = None;
                let wire = self.keep_final(&response);
                if !self.reliable {
                    self.interval = self.timers.g();
                    self.retransmit = after(now, self.interval);
                }
                self.timeout = after(now, self.timers.h());
                out.push(Output::Send(wire));
            }
            (true, State::Accepted, 200..=299) => out.push(Output::Send(response.to_bytes())),
            (false, State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.last_provisional = None;
                self.request = None;
                let wire = self.keep_final(&response);
                out.push(Output::Send(wire));
                let wait = self.timers.j(self.reliable);
                if wait.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.timeout = after(now, wait);
                }
            }
            _ => {}
        }
        out
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.state = State::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.trying = None;
        out.push(Output::Terminated);
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) has
    /// work; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit, self.timeout, self.trying]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires the timers due at `now`, each at most once per call.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.trying.is_some_and(|t| t <= now) {
            self.trying = None;
            if self.state == State::Proceeding
                && self.last_provisional.is_none()
                && let Some(trying) = self.trying_response()
            {
                let trying = trying.to_bytes();
                self.last_provisional = Some(trying.clone());
                out.push(Output::Send(trying));
            }
        }
        if self.timeout.is_some_and(|t| t <= now) {
            // H: the ACK never came. I, J, L: the waiting is over.
            if self.invite && self.state == State::Completed {
                out.push(Output::TimedOut);
            }
            self.terminate(&mut out);
        }
        if self.retransmit.is_some_and(|t| t <= now) {
            out.extend(self.resend(&self.last_final));
            self.interval = self.timers.next_capped(self.interval);
            self.retransmit = after(now, self.interval);
        }
        out
    }

    /// `100 Trying` (§8.2.6.1): no To tag, the request's Timestamp copied. Only sent
    /// in Proceeding, where the request is kept.
    fn trying_response(&self) -> Option<Message> {
        let request = self.request.as_ref()?;
        let mut resp = Message::response_to(request, 100, None);
        if let Some(ts) = request.header(&HeaderName::Timestamp) {
            resp.push(HeaderName::Timestamp, ts.to_owned());
        }
        resp.push(HeaderName::ContentLength, "0");
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::*;

    fn invite() -> Message {
        request("INVITE", "z9hG4bKsinv", 1, None)
    }

    fn ack() -> Message {
        request("ACK", "z9hG4bKsinv", 1, Some("s1"))
    }

    fn bye() -> Message {
        request("BYE", "z9hG4bKsbye", 2, Some("s1"))
    }

    fn no_trying() -> Config {
        Config {
            trying_delay: None,
            ..Config::default()
        }
    }

    fn start(req: Message, reliable: bool, config: &Config, now: Instant) -> ServerTransaction {
        let (tx, out) = ServerTransaction::new(req.clone(), reliable, config, now).unwrap();
        assert_eq!(out, vec![Output::Deliver(req)]);
        tx
    }

    fn run(tx: &mut ServerTransaction, until: Instant) -> Vec<(Instant, Vec<Output>)> {
        let mut fired = Vec::new();
        while let Some(t) = tx.poll_timeout().filter(|t| *t <= until) {
            fired.push((t, tx.handle_timeout(t)));
        }
        fired
    }

    fn millis(fired: &[(Instant, Vec<Output>)], t0: Instant) -> Vec<u64> {
        fired
            .iter()
            .map(|(t, _)| (*t - t0).as_millis() as u64)
            .collect()
    }

    #[test]
    fn refuses_ack_and_responses() {
        let now = base();
        let c = Config::default();
        assert_eq!(
            ServerTransaction::new(ack(), false, &c, now).err(),
            Some(TransactionError::AckStartsNoTransaction)
        );
        assert_eq!(
            ServerTransaction::new(response(&invite(), 200, None), false, &c, now).err(),
            Some(TransactionError::NotARequest)
        );
    }

    #[test]
    fn invite_sends_100_trying_after_200_ms() {
        let t0 = base();
        let mut req = invite();
        req.push(HeaderName::Timestamp, "54");
        let mut tx = start(req.clone(), false, &Config::default(), t0);
        assert!(tx.is_invite());
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(200)));
        assert!(tx.handle_timeout(t0 + ms(199)).is_empty());
        let out = tx.handle_timeout(t0 + ms(200));
        assert_eq!(sent_codes(&out), [100]);
        let trying = sent(&out)[0].clone();
        assert_eq!(tag_of(&trying), None);
        assert_eq!(trying.header(&HeaderName::Timestamp), Some("54"));
        assert_eq!(trying.cseq().unwrap(), req.cseq().unwrap());
        assert_eq!(tx.poll_timeout(), None);
        // A retransmitted INVITE gets the 100 again.
        assert_eq!(
            tx.on_request(req, t0 + ms(500)),
            vec![Output::Send(trying.to_bytes())]
        );
    }

    #[test]
    fn invite_no_100_when_the_tu_answers_first_or_disabled() {
        let t0 = base();
        let mut tx = start(invite(), false, &Config::default(), t0);
        let ringing = response(&invite(), 180, Some("s1"));
        assert_eq!(
            tx.respond(ringing.clone(), t0 + ms(50)),
            vec![Output::Send(ringing.to_bytes())]
        );
        assert_eq!(tx.poll_timeout(), None);
        assert!(tx.handle_timeout(t0 + ms(200)).is_empty());
        // The retransmitted INVITE gets the last provisional.
        assert_eq!(
            tx.on_request(invite(), t0 + ms(500)),
            vec![Output::Send(ringing.to_bytes())]
        );
        let r183 = response(&invite(), 183, Some("s1"));
        tx.respond(r183.clone(), t0 + ms(600));
        assert_eq!(
            tx.on_request(invite(), t0 + ms(1500)),
            vec![Output::Send(r183.to_bytes())]
        );

        let mut off = start(invite(), false, &no_trying(), t0);
        assert_eq!(off.poll_timeout(), None);
        // Nothing to resend yet.
        assert!(off.on_request(invite(), t0 + ms(500)).is_empty());
    }

    #[test]
    fn invite_non_2xx_timer_g_doubles_capped_until_ack() {
        let t0 = base();
        let mut tx = start(invite(), false, &no_trying(), t0);
        let busy = response(&invite(), 486, Some("s1"));
        assert_eq!(
            tx.respond(busy.clone(), t0),
            vec![Output::Send(busy.to_bytes())]
        );
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(tx.final_tag(), Some(Some("s1")), "the 486 with its To tag");
        let fired = run(&mut tx, t0 + ms(16_000));
        // G: 0.5, 1.5, 3.5, 7.5, then every T2.
        assert_eq!(millis(&fired, t0), [500, 1500, 3500, 7500, 11500, 15500]);
        assert!(
            fired
                .iter()
                .all(|(_, o)| o == &vec![Output::Send(busy.to_bytes())])
        );
        // A retransmitted INVITE: the final again.
        assert_eq!(
            tx.on_request(invite(), t0 + ms(16_000)),
            vec![Output::Send(busy.to_bytes())]
        );
        // Later responses from the TU are dropped.
        assert!(
            tx.respond(response(&invite(), 200, Some("s1")), t0 + ms(16_000))
                .is_empty()
        );
        // The ACK: Confirmed, G and H stop, I = T4.
        assert!(tx.on_request(ack(), t0 + ms(17_000)).is_empty());
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(22_000)));
        // ACK and INVITE retransmissions are absorbed.
        assert!(tx.on_request(ack(), t0 + ms(18_000)).is_empty());
        assert!(tx.on_request(invite(), t0 + ms(18_000)).is_empty());
        assert_eq!(tx.handle_timeout(t0 + ms(22_000)), vec![Output::Terminated]);
        assert_eq!(tx.state(), State::Terminated);
    }

    #[test]
    fn invite_timer_h_without_ack() {
        let t0 = base();
        let mut tx = start(invite(), false, &no_trying(), t0);
        tx.respond(response(&invite(), 404, Some("s1")), t0 + ms(100));
        let fired = run(&mut tx, t0 + ms(60_000));
        // G at 0.6, 1.6, 3.6, 7.6, 11.6 … 31.6; H at 32.1 s.
        let last = fired.last().unwrap();
        assert_eq!(last.0, t0 + ms(32_100));
        assert_eq!(last.1, vec![Output::TimedOut, Output::Terminated]);
        assert_eq!(millis(&fired[..fired.len() - 1], t0).last(), Some(&31_600));
        assert_eq!(tx.state(), State::Terminated);
        assert!(tx.on_request(ack(), t0 + ms(33_000)).is_empty());
    }

    #[test]
    fn invite_reliable_no_g_and_i_is_zero() {
        let t0 = base();
        let mut tx = start(invite(), true, &no_trying(), t0);
        tx.respond(response(&invite(), 480, Some("s1")), t0);
        // Only H runs on reliable transports.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(tx.on_request(ack(), t0 + ms(10)), vec![Output::Terminated]);
        assert_eq!(tx.state(), State::Terminated);

        let mut lost = start(invite(), true, &no_trying(), t0);
        lost.respond(response(&invite(), 480, Some("s1")), t0);
        let fired = run(&mut lost, t0 + ms(100_000));
        assert_eq!(
            fired,
            vec![(t0 + ms(32_000), vec![Output::TimedOut, Output::Terminated])]
        );
    }

    #[test]
    fn invite_2xx_accepted_absorbs_invites_and_passes_acks() {
        let t0 = base();
        let mut tx = start(invite(), false, &Config::default(), t0);
        let ok = response(&invite(), 200, Some("s1"));
        assert_eq!(
            tx.respond(ok.clone(), t0 + ms(100)),
            vec![Output::Send(ok.to_bytes())]
        );
        assert_eq!(tx.state(), State::Accepted);
        // No 100 Trying after the final, no Timer G: only L = 64·T1.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_100)));
        // Retransmitted INVITEs are absorbed, not passed up, not answered.
        assert!(tx.on_request(invite(), t0 + ms(600)).is_empty());
        // The TU retransmits its 2xx through the transaction.
        assert_eq!(
            tx.respond(ok.clone(), t0 + ms(600)),
            vec![Output::Send(ok.to_bytes())]
        );
        assert!(
            tx.respond(response(&invite(), 486, Some("s1")), t0 + ms(700))
                .is_empty()
        );
        assert!(
            tx.respond(response(&invite(), 180, Some("s1")), t0 + ms(700))
                .is_empty()
        );
        // An ACK matching the transaction goes to the TU.
        assert_eq!(
            tx.on_request(ack(), t0 + ms(800)),
            vec![Output::Deliver(ack())]
        );
        assert_eq!(tx.state(), State::Accepted);
        assert_eq!(tx.handle_timeout(t0 + ms(32_100)), vec![Output::Terminated]);

        // L does not depend on the transport.
        let mut tcp = start(invite(), true, &no_trying(), t0);
        tcp.respond(ok, t0);
        assert_eq!(tcp.poll_timeout(), Some(t0 + ms(32_000)));
    }

    #[test]
    fn non_invite_states_and_timer_j() {
        let t0 = base();
        let mut tx = start(bye(), false, &Config::default(), t0);
        assert!(!tx.is_invite());
        assert_eq!(tx.state(), State::Trying);
        // No automatic 100 for non-INVITE.
        assert_eq!(tx.poll_timeout(), None);
        // Retransmission in Trying: absorbed.
        assert!(tx.on_request(bye(), t0 + ms(500)).is_empty());
        let trying = response(&bye(), 100, None);
        assert_eq!(
            tx.respond(trying.clone(), t0 + ms(600)),
            vec![Output::Send(trying.to_bytes())]
        );
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(
            tx.on_request(bye(), t0 + ms(1500)),
            vec![Output::Send(trying.to_bytes())]
        );
        let ok = response(&bye(), 200, None);
        assert_eq!(
            tx.respond(ok.clone(), t0 + ms(2000)),
            vec![Output::Send(ok.to_bytes())]
        );
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(
            tx.on_request(bye(), t0 + ms(3500)),
            vec![Output::Send(ok.to_bytes())]
        );
        assert!(
            tx.respond(response(&bye(), 500, None), t0 + ms(3600))
                .is_empty()
        );
        // J = 64·T1, and no response retransmissions by timer.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(34_000)));
        assert_eq!(tx.handle_timeout(t0 + ms(34_000)), vec![Output::Terminated]);
        assert!(tx.on_request(bye(), t0 + ms(35_000)).is_empty());
    }

    #[test]
    fn non_invite_final_from_trying_and_reliable_j_is_zero() {
        let t0 = base();
        let mut tx = start(bye(), true, &Config::default(), t0);
        let ok = response(&bye(), 200, None);
        assert_eq!(
            tx.respond(ok.clone(), t0),
            vec![Output::Send(ok.to_bytes()), Output::Terminated]
        );
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn ack_does_not_touch_non_invite() {
        let t0 = base();
        let mut tx = start(bye(), false, &Config::default(), t0);
        assert!(tx.on_request(ack(), t0).is_empty());
        assert_eq!(tx.state(), State::Trying);
        let mut inv = start(invite(), false, &no_trying(), t0);
        // An ACK before any final is meaningless.
        assert!(inv.on_request(ack(), t0).is_empty());
        assert_eq!(inv.state(), State::Proceeding);
        assert!(inv.respond(invite(), t0).is_empty());
    }
}
