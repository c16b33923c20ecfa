//! Transfers (RFC 3515 REFER, RFC 5589 call flows, RFC 3891 Replaces): the PBX acts on
//! a REFER itself instead of passing it to the other phone, so a transfer works
//! whatever that phone supports, and the media stays on the call's relay ports.
//!
//! Blind: the referrer's place in the call is taken by whoever answers the Refer-To
//! number, rung with the remaining phone's media. Attended: the Refer-To names (with
//! Replaces) the referrer's dialog in a consultation call; the party of that call is
//! re-INVITEd to this call's relay ports and takes the referrer's place, and the
//! consultation call ends. Either way the referrer gets NOTIFYs with the progress
//! (`message/sipfrag`) and a BYE once the transfer is done.

use std::time::Instant;

use switchboard_sip::header::{HeaderName, Replaces};
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::transaction::TransactionKey;
use switchboard_sip::{Message, Method, Uri};

use super::{Engine, Role, Timer, ack_reinvite, active, advertised, local_for, reply_in};
use crate::features::calls::{CallEvent, Disposition};
use crate::sip_server::calls::Command;
use crate::sip_server::calls::call::{
    self, Established, Fork, Leg, Origin, Phase, Transfer, TransferKind,
};
use crate::sip_server::calls::media::Unusable;
use crate::sip_server::calls::routing::{self, Plan};
use crate::time::Timestamp;

impl Engine {
    /// A REFER from leg `by` of call `id`.
    pub(super) fn refer(
        &mut self,
        id: u64,
        by: Leg,
        key: &TransactionKey,
        req: &Message,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let refusal = if call.phase != Phase::Answered {
            Some((403, "Only an answered call can be transferred"))
        } else if call.transfer.is_some() {
            Some((491, "A transfer is already under way"))
        } else if call.media.is_none() {
            Some((488, "A call without anchored media cannot be transferred"))
        } else {
            None
        };
        let target = req.refer_to().ok().flatten();
        let sip = target.as_ref().and_then(|t| t.uri.as_sip());
        let number = sip.and_then(|u| u.user_decoded());
        let (refusal, number) = match (refusal, number) {
            (Some(r), _) => (Some(r), String::new()),
            (None, None) => (Some((400, "Refer-To must name a number")), String::new()),
            (None, Some(n)) => (None, n),
        };
        if let Some((code, why)) = refusal {
            let resp = reply_in(call, by, req, code, Some(why));
            self.respond(key, resp, now);
            return;
        }
        // `sip:1003@pbx?Replaces=call%40host%3Bto-tag%3Da%3Bfrom-tag%3Db`
        let replaces = sip
            .and_then(|u| {
                u.headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("Replaces"))
            })
            .map(|(_, value)| {
                switchboard_sip::uri::percent_decode(value)
                    .map_err(|e| e.to_string())
                    .and_then(|v| Replaces::parse(&v))
            });
        if let Some(Err(e)) = &replaces {
            let why = format!("Bad Replaces in Refer-To: {e}");
            let resp = reply_in(call, by, req, 400, Some(&why));
            self.respond(key, resp, now);
            return;
        }
        let resp = reply_in(call, by, req, 202, None);
        self.respond(key, resp, now);
        self.notify(id, by, 100, "Trying", false, now);
        match replaces {
            Some(Ok(replaces)) => self.start_attended(id, by, number, &replaces, now),
            _ => self.start_blind(id, by, number, true, now),
        }
    }

    /// Sends the referrer (leg `by`) a NOTIFY with `code reason` as the progress; an
    /// application that asked for the transfer hears only the final code.
    fn notify(&mut self, id: u64, by: Leg, code: u16, reason: &str, done: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(app) = call.app.as_mut().filter(|_| by == Leg::B) {
            if done {
                app.transfer_ended(code);
            }
            return;
        }
        let Some(est) = call.established_mut(by) else {
            return;
        };
        let flow = est.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let msg = notify_request(est, local, code, reason, done);
        self.send(msg, &flow, Role::Own, now);
    }

    /// Rings `number` for a blind transfer; `may_look_up`: an uncached number is read
    /// from the database once, then this runs again.
    pub(super) fn start_blind(
        &mut self,
        id: u64,
        by: Leg,
        number: String,
        may_look_up: bool,
        now: Instant,
    ) {
        let (extension, bindings) = match routing::plan(&self.core, &number, Timestamp::now()) {
            Plan::Ring {
                extension,
                bindings,
                ..
            } => (extension, bindings),
            Plan::Refuse { code, reason } => {
                self.notify(id, by, code, reason, true, now);
                return;
            }
            Plan::Lookup(number) if may_look_up => {
                let then = Command::ResumeTransfer {
                    call: id,
                    by_caller: by == Leg::A,
                    number: number.clone(),
                };
                self.spawn_lookup(number, then);
                return;
            }
            // A transfer target's own forwarding is not followed, nor is a call
            // transferred to a service (voicemail) yet.
            Plan::Forward { .. } | Plan::App(_) | Plan::Lookup(_) => {
                self.notify(id, by, 480, "Temporarily Unavailable", true, now);
                return;
            }
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // The remaining phone is who the transfer target sees calling.
        let stays = by.other();
        let (name, number) = match stays {
            Leg::A => (call.caller_name.clone(), call.caller.clone()),
            Leg::B => (
                call.callee
                    .as_ref()
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                call.target.clone().unwrap_or_else(|| call.dialled.clone()),
            ),
        };
        let (call_id, tag) = (call::call_id(), call::token());
        if let Some(media) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) {
            media.transferring(by);
        }
        let mut forks = Vec::new();
        for binding in bindings {
            let Ok(target) = Uri::parse(&binding.contact_uri) else {
                continue;
            };
            let local = local_for(&mut self.local_ips, &binding.flow);
            let towards = advertised(self.public_ip, &mut self.local_ips, &binding.flow);
            let Some(media) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) else {
                return;
            };
            let Some(sdp) = media.last_sdp[usize::from(stays == Leg::B)].clone() else {
                break;
            };
            let Ok(offer) = media.relay_sdp(stays, &sdp, towards, None) else {
                break;
            };
            let origin = Origin {
                call_id: &call_id,
                tag: &tag,
                name: &name,
                number: &number,
            };
            let invite = call::fork_invite(
                &origin,
                target,
                &binding.flow,
                local,
                &self.core.realm,
                &extension,
                Some(("application/sdp".into(), offer)),
            );
            if let Some(key) = self.send(invite.clone(), &binding.flow, Role::TransferFork(id), now)
            {
                forks.push(Fork::new(key, invite, binding.flow.clone()));
            }
        }
        if forks.is_empty() {
            self.notify(id, by, 480, "Temporarily Unavailable", true, now);
            return;
        }
        let deadline = now + self.ring_timeout;
        self.by_call_id.insert(call_id.clone(), id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.transfer = Some(Transfer {
                by,
                to: extension,
                kind: TransferKind::Blind { call_id, forks },
                deadline,
            });
        }
        self.schedule(deadline, Timer::Transfer(id));
    }

    /// A response to one of the INVITEs ringing a blind transfer's target.
    pub(super) fn transfer_fork_response(
        &mut self,
        id: u64,
        key: &TransactionKey,
        resp: Message,
        now: Instant,
    ) {
        let code = resp.code().unwrap_or(500);
        let fork = self.calls.get_mut(&id).and_then(|c| match &mut c.transfer {
            Some(Transfer {
                kind: TransferKind::Blind { forks, .. },
                ..
            }) => forks.iter_mut().find(|f| &f.key == key),
            _ => None,
        });
        let Some(fork) = fork else {
            if (200..300).contains(&code) {
                self.hang_up_late_answer(key, &resp, now);
            }
            return;
        };
        if code < 200 {
            fork.provisional = true;
            return;
        }
        fork.final_code = Some(code);
        if (200..300).contains(&code) {
            let (invite, flow) = (fork.invite.clone(), fork.flow.clone());
            self.complete_blind(id, key, &invite, flow, &resp, now);
            return;
        }
        let codes: Option<Vec<Option<u16>>> = self.calls.get(&id).and_then(|c| match &c.transfer {
            Some(Transfer {
                kind: TransferKind::Blind { forks, .. },
                ..
            }) => Some(forks.iter().map(|f| f.final_code).collect()),
            _ => None,
        });
        if let Some(codes) = codes
            && codes.iter().all(Option::is_some)
        {
            let code = codes.iter().flatten().copied().min().unwrap_or(480);
            self.transfer_failed(id, code, now);
        }
    }

    fn complete_blind(
        &mut self,
        id: u64,
        key: &TransactionKey,
        invite: &Message,
        flow: crate::sip_server::transport::Flow,
        resp: &Message,
        now: Instant,
    ) {
        let Some(dialog) = self.ack_answer(invite, resp, &flow) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        let TransferKind::Blind { forks, .. } = transfer.kind else {
            return;
        };
        let by = transfer.by;
        let stays = by.other();
        // An application handing the call on leaves it now, before the relay turns
        // to the target, so it sends nothing more into the call.
        if by == Leg::B
            && let Some(mut app) = call.app.take()
        {
            let _ = app.hangup.send(true);
            app.transfer_ended(200);
        }
        // The target's answer tells the relay where it receives, in `by`'s place.
        if let (Some(media), Some((_, body))) = (call.media.as_mut(), call::body_of(resp)) {
            let offer = media.last_sdp[usize::from(stays == Leg::B)]
                .as_ref()
                .and_then(|s| SessionDescription::parse_bytes(s).ok());
            let ip = flow.remote.ip();
            if let Err(Unusable(why)) = media.relay_sdp(by, &body, ip, offer.as_ref()) {
                tracing::info!(call = %call.uuid, %why, "transfer target answered with unusable media");
            }
        }
        let contact = invite
            .header(&HeaderName::Contact)
            .unwrap_or_default()
            .to_owned();
        let joined = Established {
            dialog,
            flow,
            contact,
        };
        let new_call_id = joined.dialog.call_id.clone();
        let old = self.replace_leg(id, by, joined);
        self.by_call_id.insert(new_call_id, id);
        for fork in forks.into_iter().filter(|f| &f.key != key) {
            self.retire_transfer_fork(id, fork, now);
        }
        self.transferred(id, by, transfer.to, old, now);
    }

    /// Leg `by` of call `id` is replaced by `joined`; returns the old leg.
    fn replace_leg(&mut self, id: u64, by: Leg, joined: Established) -> Option<Established> {
        let call = self.calls.get_mut(&id)?;
        call.unacked[call::Call::leg_index(by)] = None;
        let old = match by {
            Leg::A => Some(std::mem::replace(&mut call.a, joined)),
            Leg::B => call.b.replace(joined),
        };
        if let Some(old) = &old
            && self.by_call_id.get(&old.dialog.call_id) == Some(&id)
        {
            self.by_call_id.remove(&old.dialog.call_id);
        }
        old
    }

    /// The transfer is done: the referrer hears so and is hung up on.
    fn transferred(
        &mut self,
        id: u64,
        by: Leg,
        to: String,
        old: Option<Established>,
        now: Instant,
    ) {
        if let Some(mut old) = old {
            let flow = old.flow.clone();
            let local = local_for(&mut self.local_ips, &flow);
            let notify = notify_request(&mut old, local, 200, "OK", true);
            self.send(notify, &flow, Role::Own, now);
            let mut bye = old
                .dialog
                .request(Method::Bye, &call::via(&flow, local), "");
            bye.push_static(HeaderName::ContentLength, "0");
            self.send(bye, &flow, Role::Own, now);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let from = match by {
            Leg::A => call.caller.clone(),
            Leg::B => call.target.clone().unwrap_or_else(|| call.dialled.clone()),
        };
        if by == Leg::B {
            call.target = Some(to.clone());
        }
        tracing::info!(call = %call.uuid, %from, %to, "call transferred");
        let info = active(call);
        self.core.calls.active.insert(call.uuid, info.clone());
        let _ = self.records.send(CallEvent::Transferred {
            call: info,
            from,
            to,
        });
    }

    /// A fork of a transfer no longer wanted: cancelled like the call's own forks.
    fn retire_transfer_fork(&mut self, id: u64, fork: Fork, now: Instant) {
        if let Some(t) = self.txs.get_mut(&fork.key) {
            t.role = Role::Fork(id);
        }
        self.abandon(id, fork, now);
    }

    /// The transfer did not happen (`code`): the referrer hears why; the call goes on.
    fn transfer_failed(&mut self, id: u64, code: u16, now: Instant) {
        let Some(transfer) = self.calls.get_mut(&id).and_then(|c| c.transfer.take()) else {
            return;
        };
        if let TransferKind::Blind { forks, call_id, .. } = transfer.kind {
            if self.by_call_id.get(&call_id) == Some(&id) {
                self.by_call_id.remove(&call_id);
            }
            for fork in forks {
                self.retire_transfer_fork(id, fork, now);
            }
        }
        let reason = switchboard_sip::message::reason_phrase(code);
        self.notify(id, transfer.by, code, reason, true, now);
    }

    /// A blind transfer rang `calls.ring_timeout` without an answer.
    pub(super) fn transfer_timeout(&mut self, id: u64, at: Instant, now: Instant) {
        let due = self
            .calls
            .get(&id)
            .and_then(|c| c.transfer.as_ref())
            .is_some_and(|t| t.deadline == at && matches!(t.kind, TransferKind::Blind { .. }));
        if due {
            self.transfer_failed(id, 480, now);
        }
    }

    fn start_attended(
        &mut self,
        id: u64,
        by: Leg,
        number: String,
        replaces: &Replaces,
        now: Instant,
    ) {
        // The consultation call: where the referrer's phone holds the dialog Replaces
        // names, seen from the phone (from-tag its own, to-tag the PBX's).
        let found = self
            .by_call_id
            .get(&replaces.call_id)
            .copied()
            .filter(|other| *other != id)
            .and_then(|other| {
                let call = self.calls.get(&other)?;
                [Leg::A, Leg::B]
                    .into_iter()
                    .find(|leg| {
                        call.established(*leg).is_some_and(|e| {
                            e.dialog.call_id == replaces.call_id
                                && e.dialog.local_tag == replaces.to_tag
                                && e.dialog.remote_tag == replaces.from_tag
                        })
                    })
                    .map(|leg| (other, leg.other()))
            })
            .filter(|(other, joins)| {
                self.calls
                    .get(other)
                    .is_some_and(|c| c.phase == Phase::Answered && c.established(*joins).is_some())
            });
        let Some((other, joins)) = found else {
            self.notify(id, by, 481, "Call/Transaction Does Not Exist", true, now);
            return;
        };
        let stays = by.other();
        let Some(est) = self.calls.get(&other).and_then(|c| c.established(joins)) else {
            return;
        };
        let flow = est.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let towards = advertised(self.public_ip, &mut self.local_ips, &flow);
        let Some(media) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) else {
            return;
        };
        media.transferring(by);
        let offer = media.last_sdp[usize::from(stays == Leg::B)]
            .clone()
            .and_then(|sdp| media.relay_sdp(stays, &sdp, towards, None).ok());
        let Some(offer) = offer else {
            self.notify(id, by, 488, "Not Acceptable Here", true, now);
            return;
        };
        let Some(est) = self
            .calls
            .get_mut(&other)
            .and_then(|c| c.established_mut(joins))
        else {
            return;
        };
        let contact = est.contact.clone();
        let mut reinvite = est
            .dialog
            .request(Method::Invite, &call::via(&flow, local), &contact);
        reinvite.set_body("application/sdp", offer);
        if let Some(call) = self.calls.get_mut(&id) {
            call.transfer = Some(Transfer {
                by,
                to: number,
                kind: TransferKind::Attended { other, leg: joins },
                deadline: now,
            });
        }
        self.send(reinvite, &flow, Role::TransferReinvite(id), now);
    }

    /// The answer to the re-INVITE that moves the consultation call's party here.
    pub(super) fn transfer_reinvite_response(&mut self, id: u64, resp: Message, now: Instant) {
        let code = resp.code().unwrap_or(500);
        if code < 200 {
            return;
        }
        let attended = self.calls.get(&id).and_then(|c| match &c.transfer {
            Some(Transfer {
                by,
                kind: TransferKind::Attended { other, leg },
                ..
            }) => Some((*by, *other, *leg)),
            _ => None,
        });
        let Some((by, other, joins)) = attended else {
            return;
        };
        if code >= 300 {
            self.transfer_failed(id, code, now);
            return;
        }
        let Some(transfer) = self.calls.get_mut(&id).and_then(|c| c.transfer.take()) else {
            return;
        };
        let Some(mut consultation) = self.calls.remove(&other) else {
            return;
        };
        // Acknowledge the moved party on its dialog, then move it.
        let joined = match joins {
            Leg::A => Some(&mut consultation.a),
            Leg::B => consultation.b.as_mut(),
        };
        let Some(joined) = joined else {
            return;
        };
        let flow = joined.flow.clone();
        ack_reinvite(&mut self.local_ips, &mut self.out, joined, &resp);
        // The referrer's leg of the consultation call ends with it.
        self.bye_leg(&mut consultation, joins.other(), now);
        let record = self.record(&consultation, Disposition::Answered, "transferred".into());
        for call_id in [&consultation.a.dialog.call_id, &consultation.b_call_id] {
            if self.by_call_id.get(call_id) == Some(&other) {
                self.by_call_id.remove(call_id);
            }
        }
        self.core.calls.active.remove(&consultation.uuid);
        let _ = self.records.send(CallEvent::Ended(record));
        let joined = match joins {
            Leg::A => consultation.a,
            Leg::B => match consultation.b {
                Some(b) => b,
                None => return,
            },
        };
        if let Some(call) = self.calls.get_mut(&id)
            && let (Some(media), Some((_, body))) = (call.media.as_mut(), call::body_of(&resp))
        {
            let stays = by.other();
            let offer = media.last_sdp[usize::from(stays == Leg::B)]
                .as_ref()
                .and_then(|s| SessionDescription::parse_bytes(s).ok());
            let _ = media.relay_sdp(by, &body, flow.remote.ip(), offer.as_ref());
        }
        let joined_call_id = joined.dialog.call_id.clone();
        let old = self.replace_leg(id, by, joined);
        self.by_call_id.insert(joined_call_id, id);
        self.transferred(id, by, transfer.to, old, now);
    }
}

/// A NOTIFY of a REFER's progress (RFC 3515 §2.4.4): `code reason` as a sipfrag, the
/// subscription terminated with the final answer.
fn notify_request(
    leg: &mut Established,
    local: std::net::SocketAddr,
    code: u16,
    reason: &str,
    done: bool,
) -> Message {
    let flow = leg.flow.clone();
    let contact = leg.contact.clone();
    let mut msg = leg
        .dialog
        .request(Method::Notify, &call::via(&flow, local), &contact);
    msg.push(HeaderName::Event, "refer");
    msg.push(
        HeaderName::SubscriptionState,
        if done {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        },
    );
    msg.set_body(
        "message/sipfrag;version=2.0",
        format!("SIP/2.0 {code} {reason}\r\n"),
    );
    msg
}
