//! The phones being rung: provisional answers relayed, the first 2xx wins (ACKed,
//! answered to the caller, retransmitted until its ACK), the others cancelled; busy,
//! no answer and failure handling.

use super::*;
use crate::apps::DepositReason;

impl Engine {
    /// Stops ringing a fork: CANCEL now if it may be sent, else once it may.
    pub(super) fn abandon(&mut self, id: u64, mut fork: Fork, now: Instant) {
        if fork.final_code.is_none() {
            if fork.provisional {
                self.cancel_fork(&fork, now);
            } else {
                fork.cancel_wanted = true;
            }
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.abandoned.push(fork);
        }
    }

    pub(super) fn cancel_fork(&mut self, fork: &Fork, now: Instant) {
        if let Ok(cancel) = cancel_for(&fork.invite) {
            self.send(cancel, &fork.flow.clone(), Role::Own, now);
        }
    }

    pub(super) fn on_response(&mut self, key: &TransactionKey, resp: Message, now: Instant) {
        let Some(role) = self.txs.get(key).map(|t| t.role.clone()) else {
            return;
        };
        match role {
            Role::Fork(id) => self.fork_response(id, key, resp, now),
            Role::Relay {
                call,
                to,
                answer,
                offer,
            } => self.relayed_response(call, to, &answer, offer.as_deref(), resp, now),
            Role::TransferFork(call) => self.transfer_fork_response(call, key, resp, now),
            Role::TransferReinvite(call) => self.transfer_reinvite_response(call, resp, now),
            _ => {}
        }
    }

    pub(super) fn fork_response(
        &mut self,
        id: u64,
        key: &TransactionKey,
        resp: Message,
        now: Instant,
    ) {
        let code = resp.code().unwrap_or(500);
        let Some(call) = self.calls.get_mut(&id) else {
            // The call is over: a late answer is acknowledged and hung up.
            if (200..300).contains(&code) {
                self.hang_up_late_answer(key, &resp, now);
            }
            return;
        };
        let current = call.forks.iter().position(|f| &f.key == key);
        let fork = match current {
            Some(i) => &mut call.forks[i],
            None => match call.abandoned.iter_mut().find(|f| &f.key == key) {
                Some(f) => f,
                None => return,
            },
        };
        if code < 200 {
            let first = !fork.provisional;
            fork.provisional = true;
            if first && fork.cancel_wanted {
                let fork = Fork {
                    key: fork.key.clone(),
                    invite: fork.invite.clone(),
                    flow: fork.flow.clone(),
                    provisional: true,
                    cancel_wanted: false,
                    final_code: None,
                };
                self.cancel_fork(&fork, now);
                return;
            }
            if current.is_some() && call.phase == Phase::Ringing && matches!(code, 180 | 183) {
                let towards = advertised(self.public_ip, &mut self.local_ips, &call.a.flow);
                // Early media is relayed like the answer; an unusable one is left out.
                if let Some(media) = call.media.as_mut()
                    && !resp.body.is_empty()
                {
                    media.browser_fork_answers(key, false);
                }
                let body = answer_body(call, &resp, towards).ok().flatten();
                let ringing =
                    call::response(&call.a_invite, code, resp.reason(), &call.a, body.clone());
                let a_key = call.a_invite_key.clone();
                self.respond(&a_key, ringing, now);
            }
            return;
        }
        let retransmission = fork.final_code.is_some();
        fork.final_code = Some(code);
        if (200..300).contains(&code) {
            let (invite, flow) = (fork.invite.clone(), fork.flow.clone());
            if retransmission {
                // Our ACK was lost: send it again (§13.2.2.4); a late offer's carries
                // leg A's answer (none yet: it is still waited for).
                match (call.late_offer, call.b_ack.clone()) {
                    (false, _) => {
                        self.ack_answer(&invite, &resp, &flow);
                    }
                    (true, Some(ack)) => self.out.push_bytes(flow, ack),
                    (true, None) => {}
                }
                return;
            }
            if current.is_some() && call.phase == Phase::Ringing {
                self.answered(id, key, invite, flow, resp, now);
            } else {
                self.hang_up_late_answer(key, &resp, now);
            }
            return;
        }
        if current.is_some()
            && call.phase == Phase::Ringing
            && call.forks.iter().all(|f| f.final_code.is_some())
        {
            self.forks_failed(id, now);
        }
    }

    /// ACKs a 2xx to one of our INVITEs; returns the dialog it established.
    pub(super) fn ack_answer(
        &mut self,
        invite: &Message,
        resp: &Message,
        flow: &Flow,
    ) -> Option<Dialog> {
        let dialog = answer_dialog(invite, resp)?;
        let local = self.local_addr(flow);
        let ack = dialog.ack(dialog.local_seq, &call::via(flow, local));
        let mut ack = ack;
        ack.push_static(HeaderName::ContentLength, "0");
        self.out.push(flow, &ack);
        Some(dialog)
    }

    /// A fork answered after another did (or after the call ended): ACK, then BYE.
    pub(super) fn hang_up_late_answer(
        &mut self,
        key: &TransactionKey,
        resp: &Message,
        now: Instant,
    ) {
        let Some((invite, flow)) = self
            .layer
            .request(key)
            .cloned()
            .zip(self.txs.get(key).map(|t| t.flow.clone()))
        else {
            return;
        };
        if let Some(mut dialog) = self.ack_answer(&invite, resp, &flow) {
            let local = self.local_addr(&flow);
            let mut bye = dialog.request(Method::Bye, &call::via(&flow, local), "");
            bye.push_static(HeaderName::ContentLength, "0");
            self.send(bye, &flow, Role::Own, now);
        }
    }

    pub(super) fn answered(
        &mut self,
        id: u64,
        key: &TransactionKey,
        invite: Message,
        flow: Flow,
        resp: Message,
        now: Instant,
    ) {
        let late_offer = self.calls.get(&id).is_some_and(|c| c.late_offer);
        // A late offer's ACK waits for leg A's answer (`ack_late_offer`).
        let dialog = if late_offer {
            answer_dialog(&invite, &resp)
        } else {
            self.ack_answer(&invite, &resp, &flow)
        };
        let Some(dialog) = dialog else {
            return;
        };
        let contact = invite
            .header(&HeaderName::Contact)
            .unwrap_or_default()
            .to_owned();
        let towards = match self.calls.get(&id) {
            Some(call) => advertised(self.public_ip, &mut self.local_ips, &call.a.flow),
            None => return,
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(media) = call.media.as_mut() {
            media.browser_fork_answers(key, true);
        }
        let body = match answer_body(call, &resp, towards) {
            Ok(body) => body,
            Err(Unusable(why)) => {
                // The phone answered with media the caller cannot take: hang it up.
                if late_offer {
                    self.ack_answer(&invite, &resp, &flow);
                }
                let mut dialog = dialog;
                let local = local_for(&mut self.local_ips, &flow);
                let mut bye = dialog.request(Method::Bye, &call::via(&flow, local), "");
                bye.push_static(HeaderName::ContentLength, "0");
                self.send(bye, &flow, Role::Own, now);
                self.fail(id, 488, &why, Disposition::Failed, now);
                return;
            }
        };
        if late_offer {
            // Leg B's offer: leg A's answer is cut to it.
            call.offer_sdp = call::body_of(&resp)
                .and_then(|(_, body)| SessionDescription::parse_bytes(&body).ok());
        }
        call.phase = Phase::Answered;
        call.answered_at = Some(Timestamp::now());
        call.ring_deadline = None;
        call.b = Some(Established {
            dialog,
            flow,
            contact,
        });
        let others: Vec<Fork> = {
            let (won, rest): (Vec<Fork>, Vec<Fork>) =
                call.forks.drain(..).partition(|f| &f.key == key);
            call.forks = won;
            rest
        };
        // A browser's answer waits for its ICE and DTLS (spec 03), at most a few
        // seconds: until then what the caller says would be lost.
        let core = self.core.clone();
        let wait = call.media.as_ref().is_some_and(|m| {
            m.when_browser_connected(Leg::B, move || {
                core.calls.resume(&core, Command::BrowserConnected(id));
            })
        });
        for fork in others {
            self.abandon(id, fork, now);
        }
        if wait {
            tracing::debug!(call = id, "answer held until the browser's media is up");
            if let Some(call) = self.calls.get_mut(&id) {
                call.held_answer = Some(body);
            }
            self.schedule(now + BROWSER_MEDIA_WAIT, Timer::BrowserMedia(id));
            return;
        }
        self.answer_caller(id, body, now);
    }

    /// The caller's answer held for a browser's media, now (once).
    pub(super) fn release_answer(&mut self, id: u64, now: Instant) {
        if let Some(body) = self.calls.get_mut(&id).and_then(|c| c.held_answer.take()) {
            self.answer_caller(id, body, now);
        }
    }

    /// Leg B answered: leg A gets its 200 with `body`.
    fn answer_caller(&mut self, id: u64, body: Option<call::Body>, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let ok = call::response(&call.a_invite, 200, None, &call.a, body);
        let watch_media = call.media.is_some();
        let a_key = call.a_invite_key.clone();
        let seq = call.a.dialog.remote_seq.unwrap_or(0);
        let a_flow = call.a_reply.clone();
        let answered = active(call);
        self.core.calls.active.update(&call.uuid, |a| {
            a.state = answered.state;
            a.answered_at = answered.answered_at;
            a.ringing.clone_from(&answered.ringing);
            a.media_ports = answered.media_ports;
        });
        let _ = self.records.send(CallEvent::Answered(answered));
        self.respond(&a_key, ok.clone(), now);
        self.expect_ack(id, Leg::A, &ok, a_flow, seq, now);
        if watch_media {
            self.schedule(now + self.media_check_every(), Timer::Media(id));
        }
    }

    /// How often a call's media is looked at: often enough to end a dead call within
    /// a sixth of `calls.media_timeout` of it, rarely enough to cost nothing.
    pub(super) fn media_check_every(&self) -> Duration {
        (self.media_timeout / 6).max(Duration::from_secs(1))
    }

    /// Retransmits `ok` to `leg` until its ACK (§13.3.1.4).
    pub(super) fn expect_ack(
        &mut self,
        id: u64,
        leg: Leg,
        ok: &Message,
        flow: Flow,
        seq: u32,
        now: Instant,
    ) {
        let timers = self.layer.config().timers;
        if flow.is_reliable() {
            return;
        }
        let next = now + timers.t1;
        if let Some(call) = self.calls.get_mut(&id) {
            call.unacked[Call::leg_index(leg)] = Some(Unacked {
                bytes: ok.to_bytes(),
                flow,
                seq,
                interval: timers.t1,
                next,
                give_up: now + timers.t1.saturating_mul(64),
            });
        }
        self.schedule(next, Timer::Retransmit(id, leg));
    }

    pub(super) fn forks_failed(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let codes: Vec<u16> = call.forks.iter().filter_map(|f| f.final_code).collect();
        let busy = codes.iter().any(|c| matches!(c, 486 | 600));
        if busy {
            let forward = call
                .callee
                .as_deref()
                .and_then(|c| routing::forward_on(c, ForwardWhen::Busy));
            match forward {
                Some(target) => self.forward(id, target, now),
                None => match self.voicemail_instead(id, DepositReason::Busy) {
                    Some(app) => self.send_to_app(id, app, now),
                    None => self.fail(id, 486, "Busy Here", Disposition::Busy, now),
                },
            }
            return;
        }
        if codes.iter().all(|c| *c == 408) {
            self.no_answer(id, now);
            return;
        }
        // Otherwise the best answer of §16.7: a 6xx, else the lowest class.
        let code = codes
            .iter()
            .copied()
            .find(|c| *c >= 600)
            .or_else(|| codes.iter().copied().min())
            .unwrap_or(480);
        let disposition = if code == 603 {
            Disposition::Busy
        } else {
            Disposition::Failed
        };
        self.fail(id, code, "", disposition, now);
    }

    pub(super) fn no_answer(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let forward = call
            .callee
            .as_deref()
            .and_then(|c| routing::forward_on(c, ForwardWhen::NoAnswer));
        match forward {
            Some(target) => self.forward(id, target, now),
            None => match self.voicemail_instead(id, DepositReason::Unavailable) {
                Some(app) => self.send_to_app(id, app, now),
                None => self.fail(id, 480, "No answer", Disposition::NoAnswer, now),
            },
        }
    }

    /// The voicemail of the extension call `id` was ringing, when it has one.
    fn voicemail_instead(&self, id: u64, why: DepositReason) -> Option<crate::apps::App> {
        let call = self.calls.get(&id)?;
        routing::voicemail_of(call.target.as_deref()?, call.callee.as_deref()?, why)
    }

    /// Ends an unanswered call with a final response to the caller.
    pub(super) fn fail(
        &mut self,
        id: u64,
        code: u16,
        reason: &str,
        disposition: Disposition,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let reason = (!reason.is_empty()).then_some(reason);
        let resp = call::response(&call.a_invite, code, reason, &call.a, None);
        let key = call.a_invite_key.clone();
        let forks: Vec<Fork> = call.forks.drain(..).collect();
        for fork in forks {
            self.abandon(id, fork, now);
        }
        self.respond(&key, resp, now);
        let cause = format!(
            "{code} {}",
            reason.unwrap_or(switchboard_sip::message::reason_phrase(code))
        );
        self.end(id, disposition, cause);
    }

    pub(super) fn caller_cancelled(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Ringing {
            return; // too late: the 2xx is out, the caller sends BYE
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let resp = call::response(&call.a_invite, 487, None, &call.a, None);
        let key = call.a_invite_key.clone();
        let forks: Vec<Fork> = call.forks.drain(..).collect();
        for fork in forks {
            self.abandon(id, fork, now);
        }
        self.respond(&key, resp, now);
        self.end(id, Disposition::Cancelled, "caller cancelled".into());
    }
}

/// The dialog a 2xx to our `invite` establishes.
fn answer_dialog(invite: &Message, resp: &Message) -> Option<Dialog> {
    Dialog::as_uac(invite, resp)
        .map_err(|e| tracing::warn!(error = %e, "a 2xx that establishes no dialog"))
        .ok()
}
