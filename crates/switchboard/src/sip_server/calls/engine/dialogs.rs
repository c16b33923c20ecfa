//! Requests within an established call: BYE from either side, re-INVITE, UPDATE,
//! INFO and the like passed to the other leg with their answers, the caller's ACK.

use super::*;

impl Engine {
    /// Finds the call and leg a received in-dialog request belongs to.
    pub(super) fn dialog_of(&self, req: &Message) -> Option<(u64, Leg)> {
        let id = *self.by_call_id.get(req.call_id().ok()?)?;
        let call = self.calls.get(&id)?;
        if call.a.dialog.matches_request(req) {
            return Some((id, Leg::A));
        }
        call.b
            .as_ref()
            .filter(|b| b.dialog.matches_request(req))
            .map(|_| (id, Leg::B))
    }

    pub(super) fn in_dialog(&mut self, key: &TransactionKey, req: &Message, now: Instant) {
        let Some((id, leg)) = self.dialog_of(req) else {
            self.respond_plain(key, req, 481, None, now);
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let in_order = call
            .established_mut(leg)
            .is_some_and(|l| l.dialog.on_request(req));
        if !in_order {
            let resp = reply_in(call, leg, req, 500, Some("CSeq out of order"));
            self.respond(key, resp, now);
            return;
        }
        let method = req.method().cloned().unwrap_or(Method::Bye);
        match method {
            Method::Bye => {
                let resp = reply_in(call, leg, req, 200, None);
                self.respond(key, resp, now);
                if call_phase(&self.calls, id) == Some(Phase::Ringing) {
                    // A caller may end an early dialog with BYE (§15): as a CANCEL.
                    self.caller_cancelled(id, now);
                    return;
                }
                self.bye(id, leg.other(), now);
                let cause = match leg {
                    Leg::A => "caller hung up",
                    Leg::B => "callee hung up",
                };
                self.end(id, Disposition::Answered, cause.into());
            }
            _ => self.relay_request(id, leg, key, req, now),
        }
    }

    /// Sends BYE on `leg` of call `id`.
    pub(super) fn bye(&mut self, id: u64, leg: Leg, now: Instant) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.bye_leg(&mut call, leg, now);
        self.calls.insert(id, call);
    }

    /// Sends BYE on `leg` of `call` (which may be out of the map).
    pub(super) fn bye_leg(&mut self, call: &mut Call, leg: Leg, now: Instant) {
        let Some(target) = call.established_mut(leg) else {
            return;
        };
        let flow = target.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let mut bye = target
            .dialog
            .request(Method::Bye, &call::via(&flow, local), "");
        bye.push_static(HeaderName::ContentLength, "0");
        self.send(bye, &flow, Role::Own, now);
    }

    /// Passes an in-dialog request (re-INVITE, UPDATE, INFO, …) from `from` to the
    /// other leg; its answer comes back through [`Self::relayed_response`].
    pub(super) fn relay_request(
        &mut self,
        id: u64,
        from: Leg,
        key: &TransactionKey,
        req: &Message,
        now: Instant,
    ) {
        let to = from.other();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let method = req.method().cloned().unwrap_or(Method::Info);
        if method == Method::Refer {
            self.refer(id, from, key, req, now);
            return;
        }
        if call.app.is_some() {
            self.app_request(id, key, req, now);
            return;
        }
        let Some(target) = call.established_mut(to) else {
            let resp = reply_in(call, from, req, 491, None);
            self.respond(key, resp, now);
            return;
        };
        let flow = target.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let towards = advertised(self.public_ip, &mut self.local_ips, &flow);
        let mut body = call::body_of(req);
        let mut offer = None;
        if let (Some(media), Some((content_type, sdp))) = (call.media.as_mut(), &body)
            && call::is_sdp(content_type)
        {
            match media.relay_offer(from, sdp, towards) {
                Ok((anchored, original)) => {
                    body = Some((content_type.clone(), anchored));
                    offer = Some(Box::new(original));
                }
                Err(Unusable(why)) => {
                    let resp = reply_in(call, from, req, 488, Some(&why));
                    self.respond(key, resp, now);
                    return;
                }
            }
        }
        let Some(target) = call.established_mut(to) else {
            return;
        };
        let contact = target.contact.clone();
        let mut out = target
            .dialog
            .request(method, &call::via(&flow, local), &contact);
        for name in [
            HeaderName::Event,
            HeaderName::SubscriptionState,
            HeaderName::ContentDisposition,
        ] {
            for value in req.header_values(&name) {
                out.push(name.clone(), value.to_owned());
            }
        }
        match body {
            Some((content_type, body)) => out.set_body(content_type, body),
            None => out.push_static(HeaderName::ContentLength, "0"),
        }
        self.send(
            out,
            &flow,
            Role::Relay {
                call: id,
                to,
                answer: key.clone(),
                offer,
            },
            now,
        );
    }

    pub(super) fn relayed_response(
        &mut self,
        id: u64,
        to: Leg,
        answer: &TransactionKey,
        offer: Option<&SessionDescription>,
        resp: Message,
        now: Instant,
    ) {
        let code = resp.code().unwrap_or(500);
        if code == 100 {
            return;
        }
        let Some(request) = self.layer.request(answer).cloned() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let from = to.other();
        let is_invite = request.method() == Some(&Method::Invite);
        if (200..300).contains(&code)
            && let Some(target) = call.established_mut(to)
        {
            if is_invite {
                // The B2BUA acknowledges its own leg at once.
                ack_reinvite(&mut self.local_ips, &mut self.out, target, &resp);
            } else {
                target.dialog.on_refresh_response(&resp);
            }
        }
        let towards = match self.calls.get(&id).and_then(|c| c.established(from)) {
            Some(leg) => advertised(self.public_ip, &mut self.local_ips, &leg.flow),
            None => return,
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut code = code;
        let mut body = call::body_of(&resp);
        if let (Some(media), Some((content_type, sdp))) = (call.media.as_mut(), &body)
            && call::is_sdp(content_type)
        {
            match media.relay_sdp(to, sdp, towards, offer) {
                Ok(anchored) => body = Some((content_type.clone(), anchored)),
                Err(Unusable(why)) => {
                    tracing::info!(call = %call.uuid, %why, "an answer the relay cannot take");
                    code = 488;
                    body = None;
                }
            }
        }
        let Some(leg) = call.established(from) else {
            return;
        };
        let answer_msg = call::response(&request, code, resp.reason(), leg, body.clone());
        let reply = self.txs.get(answer).map(|t| t.flow.clone());
        let seq = request.cseq().map(|c| c.seq).unwrap_or(0);
        self.respond(answer, answer_msg.clone(), now);
        if is_invite
            && (200..300).contains(&code)
            && let Some(flow) = reply
        {
            self.expect_ack(id, from, &answer_msg, flow, seq, now);
        }
    }

    pub(super) fn on_ack(&mut self, ack: &Message) {
        let Some((id, leg)) = self.dialog_of(ack) else {
            return;
        };
        let seq = ack.cseq().map(|c| c.seq).ok();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let slot = &mut call.unacked[Call::leg_index(leg)];
        if slot.as_ref().is_some_and(|u| Some(u.seq) == seq) {
            *slot = None;
        }
        if leg == Leg::A && call.late_offer && call.b_ack.is_none() {
            self.ack_late_offer(id, ack);
        }
    }

    /// Leg A's ACK to a late offer carries its answer: relayed (anchored) in the ACK
    /// that leg B's 2xx waited for.
    fn ack_late_offer(&mut self, id: u64, a_ack: &Message) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(b) = call.b.as_ref() else {
            return;
        };
        let towards = advertised(self.public_ip, &mut self.local_ips, &b.flow);
        let body = match (call.media.as_mut(), call::body_of(a_ack)) {
            (Some(media), Some((content_type, sdp))) if call::is_sdp(&content_type) => {
                match media.relay_sdp(Leg::A, &sdp, towards, call.offer_sdp.as_ref()) {
                    Ok(anchored) => Some((content_type, anchored)),
                    Err(Unusable(why)) => {
                        // Leg B gets an ACK without an answer and may hang up.
                        tracing::info!(call = %call.uuid, why, "unusable answer in an ACK");
                        None
                    }
                }
            }
            (_, body) => body,
        };
        let flow = b.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let mut ack = b.dialog.ack(b.dialog.local_seq, &call::via(&flow, local));
        match body {
            Some((content_type, body)) => ack.set_body(content_type, body),
            None => ack.push_static(HeaderName::ContentLength, "0"),
        }
        let bytes = ack.to_bytes();
        call.b_ack = Some(bytes.clone());
        self.out.push_bytes(flow, bytes);
    }
}
