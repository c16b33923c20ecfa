//! New calls: the INVITE authenticated (407), the call created, the dial plan asked,
//! the callee's phones rung (or forwarding followed, or the call refused).

use super::*;
use crate::sip_server::hot_desk;

/// Who a new call is from.
pub(super) struct CallingParty {
    extension: String,
    name: String,
    device: Option<hot_desk::Device>,
}

impl Engine {
    pub(super) fn new_invite(&mut self, key: &TransactionKey, request: Message, now: Instant) {
        let Some(reply) = self.txs.get(key).map(|t| t.flow.clone()) else {
            return;
        };
        let source = reply.remote.ip();
        // A second INVITE of a call in progress on another branch (a forking proxy in
        // front of us, §8.2.2.2) or a Call-ID reused by a broken phone.
        if request
            .call_id()
            .is_ok_and(|id| self.by_call_id.contains_key(id))
        {
            self.respond_plain(key, &request, 482, Some("Merged request"), now);
            return;
        }
        let caller = request
            .from_addr()
            .ok()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user_decoded()));
        let Some(caller) = caller else {
            self.respond_plain(
                key,
                &request,
                403,
                Some("No extension in the From URI"),
                now,
            );
            return;
        };
        match auth::check(
            &self.core,
            &request,
            source,
            &caller,
            Challenger::Proxy,
            None,
        ) {
            Verdict::Authenticated(credential) => {
                let dialled = request
                    .uri()
                    .and_then(Uri::as_sip)
                    .and_then(|u| u.user_decoded());
                let Some(dialled) = dialled else {
                    self.respond_plain(key, &request, 484, Some("No number dialled"), now);
                    return;
                };
                let caller = self.calling_party(caller, credential.name.clone(), reply.remote);
                self.start_call(key, request, reply, caller, dialled, now);
            }
            Verdict::Challenge { stale } => {
                let challenge =
                    auth::challenge(&self.core, &request, source, stale, Challenger::Proxy);
                self.respond(key, challenge, now);
            }
            Verdict::Forbidden { why, .. } => {
                self.respond_plain(key, &request, 403, Some(why), now)
            }
            Verdict::Lookup => self.look_up(key, caller, now, &request),
        }
    }

    /// Reads `number` into the credential cache off the engine, then resumes `key`.
    pub(super) fn look_up(
        &mut self,
        key: &TransactionKey,
        number: String,
        now: Instant,
        request: &Message,
    ) {
        let lookups = match self.txs.get_mut(key).map(|t| &mut t.role) {
            Some(Role::Server { lookups }) => {
                *lookups += 1;
                *lookups
            }
            _ => 1,
        };
        if lookups > 2 {
            // The cache still misses after a lookup: the database is failing.
            self.respond_plain(key, request, 500, Some("Extension lookup failed"), now);
            return;
        }
        self.spawn_lookup(number, Command::Resume(key.clone()));
    }

    /// Reads `number` into the credential cache off the engine, then hands the engine
    /// `then`.
    pub(super) fn spawn_lookup(&self, number: String, then: Command) {
        let core = self.core.clone();
        tokio::spawn(async move {
            core.credentials.get(&number).await;
            core.calls.resume(&core, then);
        });
    }

    pub(super) fn on_resume(&mut self, key: TransactionKey, now: Instant) {
        let Some(role) = self.txs.get(&key).map(|t| t.role.clone()) else {
            return;
        };
        match role {
            Role::Server { .. } => {
                if let Some(request) = self.layer.request(&key).cloned() {
                    self.new_invite(&key, request, now);
                }
            }
            Role::AInvite(call) => {
                if let Some(number) = self.calls.get(&call).map(|c| c.pending_route.clone()) {
                    self.route(call, number, now);
                }
            }
            _ => {}
        }
    }

    /// Who calls from the phone that authenticated as `account` at `source`: the
    /// extension hot-desked at that phone if there is one (its identity, voicemail and
    /// CDRs; spec 05), else the account itself.
    fn calling_party(&self, account: String, name: String, source: SocketAddr) -> CallingParty {
        if !self.core.app.config.features.hot_desking.enabled {
            return CallingParty {
                extension: account,
                name,
                device: None,
            };
        }
        let device = hot_desk::device_of(&self.core, &account, source);
        match self.core.hot_desks.occupant(&device.key) {
            Some(occupant) => {
                // A call made at the desk is activity there.
                let core = self.core.clone();
                let label = device.label.clone();
                tokio::spawn(async move {
                    if let Err(e) = core.app.hot_desk.activity(&label).await {
                        tracing::debug!(error = %e, device = %label, "hot-desk activity not recorded");
                    }
                });
                CallingParty {
                    extension: occupant.extension,
                    name: occupant.name,
                    device: Some(device),
                }
            }
            None => CallingParty {
                extension: account,
                name,
                device: Some(device),
            },
        }
    }

    /// A call to `extension` is activity at the desks it is logged in at.
    fn touch_desks(&self, extension: &str) {
        if !self.core.app.config.features.hot_desking.enabled {
            return;
        }
        let desks = self.core.hot_desks.devices_of(extension);
        if desks.is_empty() {
            return;
        }
        let core = self.core.clone();
        tokio::spawn(async move {
            for desk in desks {
                if let Err(e) = core.app.hot_desk.activity(&desk).await {
                    tracing::debug!(error = %e, %desk, "hot-desk activity not recorded");
                }
            }
        });
    }

    pub(super) fn start_call(
        &mut self,
        key: &TransactionKey,
        invite: Message,
        reply: Flow,
        caller: CallingParty,
        dialled: String,
        now: Instant,
    ) {
        let CallingParty {
            extension: caller,
            name: caller_name,
            device,
        } = caller;
        let local = self.local_addr(&reply);
        let tag = call::token();
        let contact = call::contact(&reply, local, &dialled);
        let dialog = match Dialog::as_uas(&invite, &tag) {
            Ok(d) => d,
            Err(e) => {
                self.respond_plain(key, &invite, 400, Some(&e.message), now);
                return;
            }
        };
        let offer = call::body_of(&invite);
        let late_offer = offer.is_none();
        let mut media = None;
        let mut offer_sdp = None;
        let sdp = match &offer {
            Some((content_type, body)) if call::is_sdp(content_type) => Some(body),
            _ => None,
        };
        if sdp.is_some() || late_offer {
            if let Some(body) = sdp {
                match SessionDescription::parse_bytes(body) {
                    Ok(p) => offer_sdp = Some(p),
                    Err(e) => {
                        let why = format!("Bad SDP: {e}");
                        self.respond_plain(key, &invite, 488, Some(&why), now);
                        return;
                    }
                }
            }
            match self.core.relay.allocate() {
                Ok(session) => media = Some(Media::new(session, self.browser.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "no media relay ports for a call");
                    self.respond_plain(key, &invite, 503, Some("No media ports available"), now);
                    return;
                }
            }
        }
        let id = self.next_call;
        self.next_call += 1;
        let started_at = Timestamp::now();
        let call = Call {
            uuid: uuid::Uuid::now_v7(),
            phase: Phase::Ringing,
            a_invite_key: key.clone(),
            a_reply: reply.clone(),
            a: Established {
                dialog,
                flow: reply,
                contact,
            },
            b_call_id: call::call_id(),
            b_tag: call::token(),
            forks: Vec::new(),
            abandoned: Vec::new(),
            b: None,
            unacked: [None, None],
            caller: caller.clone(),
            caller_name,
            device,
            dialled: dialled.clone(),
            pending_route: dialled.clone(),
            lookups: 0,
            target: None,
            callee: None,
            forwards: 0,
            started_at,
            answered_at: None,
            ring_deadline: None,
            offer,
            offer_sdp,
            media,
            late_offer,
            b_ack: None,
            transfer: None,
            app: None,
            held_answer: None,
            a_invite: invite,
        };
        self.by_call_id.insert(call.a.dialog.call_id.clone(), id);
        self.by_call_id.insert(call.b_call_id.clone(), id);
        if let Some(t) = self.txs.get_mut(key) {
            t.role = Role::AInvite(id);
        }
        let _ = self.records.send(CallEvent::Started(active(&call)));
        self.core.calls.active.insert(call.uuid, active(&call));
        self.calls.insert(id, Box::new(call));
        self.route(id, dialled, now);
    }

    /// Rings `number` for call `id` (the dialled number, or where forwarding sent it).
    pub(super) fn route(&mut self, id: u64, number: String, now: Instant) {
        let plan = routing::plan(&self.core, &number, Timestamp::now());
        match plan {
            Plan::Ring {
                extension,
                callee,
                bindings,
            } => {
                self.touch_desks(&extension);
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.target = Some(extension.clone());
                call.callee = Some(callee);
                let mut started = 0;
                for binding in bindings {
                    let Ok(target) = Uri::parse(&binding.contact_uri) else {
                        continue;
                    };
                    let local = self.local_addr(&binding.flow);
                    let towards = advertised(self.public_ip, &mut self.local_ips, &binding.flow);
                    let Some(call) = self.calls.get_mut(&id) else {
                        return;
                    };
                    let mut browser = None;
                    let body = match (call.media.as_mut(), &call.offer) {
                        (Some(media), Some((content_type, offer))) => {
                            let mut relayed = match &call.offer_sdp {
                                Some(parsed) => {
                                    media.relay_parsed(Leg::A, offer, parsed.clone(), towards)
                                }
                                None => media.relay_sdp(Leg::A, offer, towards, None),
                            };
                            // A browser phone gets a WebRTC offer from a gateway of its own.
                            if relayed.is_ok() && is_browser(&binding.flow) {
                                relayed = media.offer_to_browser(towards).map(|leg| {
                                    let sdp = leg.local_sdp.clone();
                                    browser = Some(leg);
                                    sdp
                                });
                            }
                            match relayed {
                                Ok(sdp) => Some((content_type.clone(), sdp)),
                                Err(Unusable(why)) => {
                                    self.fail(id, 488, &why, Disposition::Failed, now);
                                    return;
                                }
                            }
                        }
                        (_, offer) => offer.clone(),
                    };
                    let invite = call::fork_invite(
                        &call.origin(),
                        target,
                        &binding.flow,
                        local,
                        &self.core.realm,
                        &extension,
                        body,
                    );
                    if let Some(key) = self.send(invite.clone(), &binding.flow, Role::Fork(id), now)
                    {
                        started += 1;
                        if let Some(call) = self.calls.get_mut(&id) {
                            if let (Some(media), Some(leg)) = (call.media.as_mut(), browser) {
                                media.add_browser_fork(key.clone(), leg);
                            }
                            call.forks
                                .push(Fork::new(key, invite, binding.flow.clone()));
                        }
                    }
                }
                if started == 0 {
                    self.fail(id, 480, "Not reachable", Disposition::Failed, now);
                    return;
                }
                let deadline = now + self.ring_timeout;
                if let Some(call) = self.calls.get_mut(&id) {
                    call.ring_deadline = Some(deadline);
                    self.core.calls.active.update(&call.uuid, |a| {
                        a.ringing.clone_from(&call.target);
                    });
                }
                self.schedule(deadline, Timer::Ring(id));
            }
            Plan::Forward { target } => self.forward(id, target, now),
            Plan::App(app) => self.send_to_app(id, app, now),
            Plan::Refuse { code, reason } => {
                let disposition = if code == 486 {
                    Disposition::Busy
                } else {
                    Disposition::Failed
                };
                self.fail(id, code, reason, disposition, now);
            }
            Plan::Lookup(number) => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.lookups += 1;
                if call.lookups > 2 {
                    // The cache still misses after a lookup: the database is failing.
                    self.fail(id, 500, "Extension lookup failed", Disposition::Failed, now);
                    return;
                }
                call.pending_route = number.clone();
                // The lookup resumes the call through its INVITE's transaction.
                let key = call.a_invite_key.clone();
                self.spawn_lookup(number, Command::Resume(key));
            }
        }
    }

    /// Sends call `id` on to `target` instead of whom it was ringing.
    pub(super) fn forward(&mut self, id: u64, target: String, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.forwards >= MAX_FORWARDS {
            self.fail(id, 482, "Forwarding loop", Disposition::Failed, now);
            return;
        }
        call.forwards += 1;
        let forks: Vec<Fork> = call.forks.drain(..).collect();
        for fork in forks {
            self.abandon(id, fork, now);
        }
        tracing::debug!(call = %self.calls[&id].uuid, %target, "call forwarded");
        self.route(id, target, now);
    }
}

/// Whether a phone reached over `flow` is a browser (SIP over WebSocket), whose media
/// is WebRTC.
fn is_browser(flow: &Flow) -> bool {
    use crate::config::SipTransport;
    matches!(flow.transport, SipTransport::Ws | SipTransport::Wss)
}
