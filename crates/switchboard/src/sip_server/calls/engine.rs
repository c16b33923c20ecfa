//! The B2BUA: every call-related message and timer passes through [`Engine`], which
//! owns the transactions (crates/sip's layer) and the calls. It is synchronous and
//! single-owner (one task drives it, see `super::run`): a call's state changes in one
//! place and in order, without locks. What it sends goes into an [`Outbox`]; call
//! records and events go to the recorder.

mod transfer;

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sip::dialog::Dialog;
use switchboard_sip::header::HeaderName;
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::transaction::{
    Config, Incoming, Output, TransactionKey, TransactionLayer, cancel_for,
};
use switchboard_sip::{Message, Method, Uri};
use tokio::sync::mpsc;

use super::Command;
use super::call::{self, Call, Established, Fork, Leg, Phase, Unacked};
use super::media::{Media, Unusable};
use super::routing::{self, MAX_FORWARDS, Plan};
use crate::features::calls::{ActiveCall, CallEvent, CallRecord, Disposition, MediaPorts};
use crate::features::extensions::model::ForwardWhen;
use crate::sip_server::SipCore;
use crate::sip_server::auth::{self, Challenger, Verdict};
use crate::sip_server::transport::{Flow, Outbox};
use crate::time::Timestamp;

/// What a transaction is to the engine.
#[derive(Debug, Clone)]
enum Role {
    /// A server transaction not (yet) tied to a call: an INVITE being authenticated,
    /// an in-dialog request, a CANCEL.
    Server { lookups: u8 },
    /// Leg A's INVITE.
    AInvite(u64),
    /// A fork's INVITE.
    Fork(u64),
    /// A request passed on to `to` of call `call`, answering server transaction
    /// `answer` on the other leg.
    Relay {
        call: u64,
        to: Leg,
        answer: TransactionKey,
        /// The SDP offer it carried, which the answer is cut to.
        offer: Option<Box<SessionDescription>>,
    },
    /// An INVITE ringing a blind transfer's target for call `.0`.
    TransferFork(u64),
    /// The re-INVITE moving an attended transfer's party into call `.0`.
    TransferReinvite(u64),
    /// A request of our own (BYE, CANCEL) whose answer needs no action.
    Own,
}

#[derive(Debug, Clone)]
struct TxUse {
    /// Where its messages go: the response flow (server) or the peer (client).
    flow: Flow,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Ring(u64),
    Retransmit(u64, Leg),
    /// Look whether the call's media still flows (`calls.media_timeout`).
    Media(u64),
    /// A blind transfer's ringing ends.
    Transfer(u64),
}

pub struct Engine {
    core: Arc<SipCore>,
    layer: TransactionLayer,
    // foldhash, seeded per process: these are looked up several times per message.
    calls: HashMap<u64, Call, RandomState>,
    by_call_id: HashMap<String, u64, RandomState>,
    txs: HashMap<TransactionKey, TxUse, RandomState>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    next_call: u64,
    out: Outbox,
    /// The local address the kernel picks towards each peer, for a wildcard listener.
    local_ips: HashMap<IpAddr, IpAddr>,
    /// Where lookups resume the engine.
    resume: mpsc::Sender<Command>,
    records: mpsc::UnboundedSender<CallEvent>,
    ring_timeout: Duration,
    media_timeout: Duration,
    /// `rtp.public_address`: written into SDP instead of the local address.
    public_ip: Option<IpAddr>,
}

impl Engine {
    pub fn new(
        core: Arc<SipCore>,
        resume: mpsc::Sender<Command>,
        records: mpsc::UnboundedSender<CallEvent>,
    ) -> Self {
        let t = &core.app.config.sip.timers;
        let config = Config {
            timers: switchboard_sip::transaction::Timers::from_millis(t.t1_ms, t.t2_ms, t.t4_ms),
            // The engine sends 100 Trying itself, at once.
            trying_delay: None,
        };
        let ring_timeout = Duration::from_secs(core.app.config.calls.ring_timeout);
        let media_timeout = Duration::from_secs(core.app.config.calls.media_timeout);
        let public_ip = core
            .app
            .config
            .rtp
            .public_address
            .as_deref()
            .and_then(|a| a.parse().ok());
        Self {
            core,
            layer: TransactionLayer::new(config),
            calls: HashMap::default(),
            by_call_id: HashMap::default(),
            txs: HashMap::default(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_call: 1,
            out: Outbox::default(),
            local_ips: HashMap::new(),
            resume,
            records,
            ring_timeout,
            media_timeout,
            public_ip,
        }
    }

    /// What to send now.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    /// Calls in progress and transactions alive (for tests and metrics: both return
    /// to zero when every call is over).
    pub fn sizes(&self) -> (usize, usize) {
        (self.calls.len(), self.layer.len())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.first_key_value().map(|((at, _), _)| *at);
        match (timer, self.layer.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn on_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Sip { msg, reply } => self.on_sip(msg, reply, now),
            Command::Resume(key) => self.on_resume(key, now),
            Command::ResumeTransfer {
                call,
                by_caller,
                number,
            } => {
                let by = if by_caller { Leg::A } else { Leg::B };
                self.start_blind(call, by, number, false, now);
            }
            Command::Hangup { id, done } => {
                let _ = done.send(self.hangup(id, now));
            }
        }
    }

    fn on_sip(&mut self, msg: Message, reply: Flow, now: Instant) {
        if msg.code().is_some() {
            if let Some((key, outputs)) = self.layer.on_response(msg, now) {
                self.client_outputs(&key, outputs, now);
            }
            return;
        }
        let reliable = reply.is_reliable();
        match self.layer.on_request(msg, reliable, now) {
            Ok(Incoming::New { key, request }) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        flow: reply,
                        role: Role::Server { lookups: 0 },
                    },
                );
                let in_dialog = request.to_addr().is_ok_and(|to| to.tag().is_some());
                if in_dialog {
                    self.in_dialog(&key, &request, now);
                } else if request.method() == Some(&Method::Invite) {
                    self.new_invite(&key, request, now);
                } else {
                    // Out of any dialog the PBX only takes calls (REGISTER and OPTIONS
                    // are answered before the engine).
                    self.respond_plain(&key, &request, 481, None, now);
                }
            }
            Ok(Incoming::Cancel {
                key,
                request,
                invite,
            }) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        flow: reply,
                        role: Role::Server { lookups: 0 },
                    },
                );
                let call =
                    invite
                        .as_ref()
                        .and_then(|k| self.txs.get(k))
                        .and_then(|t| match t.role {
                            Role::AInvite(call) => Some(call),
                            _ => None,
                        });
                match call {
                    Some(call) => {
                        self.respond_plain(&key, &request, 200, None, now);
                        self.caller_cancelled(call, now);
                    }
                    None => self.respond_plain(&key, &request, 481, None, now),
                }
            }
            Ok(Incoming::Matched { key, outputs }) => self.server_outputs(&key, outputs),
            Ok(Incoming::Ack(ack)) => self.on_ack(&ack),
            Err(e) => tracing::debug!(error = %e, "request outside any transaction rule"),
        }
    }

    /// Handles what a server transaction asks for.
    fn server_outputs(&mut self, key: &TransactionKey, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(msg) => {
                    if let Some(t) = self.txs.get(key) {
                        self.out.push(&t.flow, &msg);
                    }
                }
                // An ACK of a 2xx that reused the INVITE's branch (RFC 6026 §8.2).
                Output::Deliver(ack) => self.on_ack(&ack),
                Output::TimedOut => {}
                Output::Terminated => {
                    self.txs.remove(key);
                }
            }
        }
    }

    fn client_outputs(&mut self, key: &TransactionKey, outputs: Vec<Output>, now: Instant) {
        for output in outputs {
            match output {
                Output::Send(msg) => {
                    if let Some(t) = self.txs.get(key) {
                        self.out.push(&t.flow, &msg);
                    }
                }
                Output::Deliver(resp) => self.on_response(key, resp, now),
                Output::TimedOut => {
                    // §8.1.3.1: no answer counts as a 408.
                    if let Some(request) = self.layer.request(key).cloned() {
                        let mut timeout = Message::response_to(&request, 408, None);
                        timeout.push(HeaderName::ContentLength, "0");
                        self.on_response(key, timeout, now);
                    }
                }
                Output::Terminated => {
                    self.txs.remove(key);
                }
            }
        }
    }

    fn respond(&mut self, key: &TransactionKey, resp: Message, now: Instant) {
        let outputs = self.layer.respond(key, resp, now);
        self.server_outputs(key, outputs);
    }

    /// A response outside any call's dialog (the PBX's stateless To tag).
    fn respond_plain(
        &mut self,
        key: &TransactionKey,
        req: &Message,
        code: u16,
        reason: Option<&str>,
        now: Instant,
    ) {
        let resp = self.core.response(req, code, reason);
        self.respond(key, resp, now);
    }

    /// Sends a request in a new client transaction over `flow`.
    fn send(
        &mut self,
        request: Message,
        flow: &Flow,
        role: Role,
        now: Instant,
    ) -> Option<TransactionKey> {
        match self.layer.send_request(request, flow.is_reliable(), now) {
            Ok((key, outputs)) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        flow: flow.clone(),
                        role,
                    },
                );
                self.client_outputs(&key, outputs, now);
                Some(key)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot send a request");
                None
            }
        }
    }

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    /// The address of ours a peer reaches over `flow`: the listener's, or for a
    /// wildcard listener the one the kernel routes from towards the peer.
    fn local_addr(&mut self, flow: &Flow) -> SocketAddr {
        local_for(&mut self.local_ips, flow)
    }

    // ----- new calls -----

    fn new_invite(&mut self, key: &TransactionKey, request: Message, now: Instant) {
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
                self.start_call(
                    key,
                    request,
                    reply,
                    caller,
                    credential.name.clone(),
                    dialled,
                    now,
                );
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
    fn look_up(&mut self, key: &TransactionKey, number: String, now: Instant, request: &Message) {
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
    fn spawn_lookup(&self, number: String, then: Command) {
        let (core, resume) = (self.core.clone(), self.resume.clone());
        tokio::spawn(async move {
            core.credentials.get(&number).await;
            let _ = resume.send(then).await;
        });
    }

    fn on_resume(&mut self, key: TransactionKey, now: Instant) {
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

    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        key: &TransactionKey,
        invite: Message,
        reply: Flow,
        caller: String,
        caller_name: String,
        dialled: String,
        now: Instant,
    ) {
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
        let mut media = None;
        let mut offer_sdp = None;
        if let Some((content_type, body)) = &offer
            && call::is_sdp(content_type)
        {
            let parsed = match SessionDescription::parse_bytes(body) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("Bad SDP: {e}");
                    self.respond_plain(key, &invite, 488, Some(&why), now);
                    return;
                }
            };
            match self.core.relay.allocate() {
                Ok(session) => media = Some(Media::new(session)),
                Err(e) => {
                    tracing::warn!(error = %e, "no media relay ports for a call");
                    self.respond_plain(key, &invite, 503, Some("No media ports available"), now);
                    return;
                }
            }
            offer_sdp = Some(parsed);
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
            b_call_id: format!("{}{}", call::token(), call::token()),
            b_tag: call::token(),
            forks: Vec::new(),
            abandoned: Vec::new(),
            b: None,
            unacked: [None, None],
            caller: caller.clone(),
            caller_name,
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
            transfer: None,
            a_invite: invite,
        };
        self.by_call_id.insert(call.a.dialog.call_id.clone(), id);
        self.by_call_id.insert(call.b_call_id.clone(), id);
        if let Some(t) = self.txs.get_mut(key) {
            t.role = Role::AInvite(id);
        }
        let trying = call::response(&call.a_invite, 100, None, &call.a, None);
        let _ = self.records.send(CallEvent::Started(active(&call)));
        self.core.calls.active.insert(call.uuid, active(&call));
        self.calls.insert(id, call);
        self.respond(key, trying, now);
        self.route(id, dialled, now);
    }

    /// Rings `number` for call `id` (the dialled number, or where forwarding sent it).
    fn route(&mut self, id: u64, number: String, now: Instant) {
        let plan = routing::plan(&self.core, &number, Timestamp::now());
        match plan {
            Plan::Ring {
                extension,
                callee,
                bindings,
            } => {
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
                    let body = match (call.media.as_mut(), &call.offer) {
                        (Some(media), Some((content_type, offer))) => {
                            match media.relay_sdp(Leg::A, offer, towards, None) {
                                Ok((sdp, _)) => Some((content_type.clone(), sdp)),
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
                    let info = active(call);
                    self.core.calls.active.insert(call.uuid, info);
                }
                self.schedule(deadline, Timer::Ring(id));
            }
            Plan::Forward { target } => self.forward(id, target, now),
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
    fn forward(&mut self, id: u64, target: String, now: Instant) {
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

    // ----- forks -----

    /// Stops ringing a fork: CANCEL now if it may be sent, else once it may.
    fn abandon(&mut self, id: u64, mut fork: Fork, now: Instant) {
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

    fn cancel_fork(&mut self, fork: &Fork, now: Instant) {
        if let Ok(cancel) = cancel_for(&fork.invite) {
            self.send(cancel, &fork.flow.clone(), Role::Own, now);
        }
    }

    fn on_response(&mut self, key: &TransactionKey, resp: Message, now: Instant) {
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

    fn fork_response(&mut self, id: u64, key: &TransactionKey, resp: Message, now: Instant) {
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
                let body = answer_body(call, &resp, towards).ok().flatten();
                let ringing = call::response(
                    &call.a_invite,
                    code,
                    resp.reason(),
                    &call.a,
                    body.as_ref().map(|(t, b)| (t.as_str(), b.clone())),
                );
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
                // Our ACK was lost: send it again (§13.2.2.4).
                self.ack_answer(&invite, &resp, &flow);
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
    fn ack_answer(&mut self, invite: &Message, resp: &Message, flow: &Flow) -> Option<Dialog> {
        let dialog = match Dialog::as_uac(invite, resp) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "a 2xx that establishes no dialog");
                return None;
            }
        };
        let local = self.local_addr(flow);
        let ack = dialog.ack(dialog.local_seq, &call::via(flow, local));
        let mut ack = ack;
        ack.push(HeaderName::ContentLength, "0");
        self.out.push(flow, &ack);
        Some(dialog)
    }

    /// A fork answered after another did (or after the call ended): ACK, then BYE.
    fn hang_up_late_answer(&mut self, key: &TransactionKey, resp: &Message, now: Instant) {
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
            bye.push(HeaderName::ContentLength, "0");
            self.send(bye, &flow, Role::Own, now);
        }
    }

    fn answered(
        &mut self,
        id: u64,
        key: &TransactionKey,
        invite: Message,
        flow: Flow,
        resp: Message,
        now: Instant,
    ) {
        let Some(dialog) = self.ack_answer(&invite, &resp, &flow) else {
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
        let body = match answer_body(call, &resp, towards) {
            Ok(body) => body,
            Err(Unusable(why)) => {
                // The phone answered with media the caller cannot take: hang it up.
                let mut dialog = dialog;
                let local = local_for(&mut self.local_ips, &flow);
                let mut bye = dialog.request(Method::Bye, &call::via(&flow, local), "");
                bye.push(HeaderName::ContentLength, "0");
                self.send(bye, &flow, Role::Own, now);
                self.fail(id, 488, &why, Disposition::Failed, now);
                return;
            }
        };
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
        let ok = call::response(
            &call.a_invite,
            200,
            None,
            &call.a,
            body.as_ref().map(|(t, b)| (t.as_str(), b.clone())),
        );
        let watch_media = call.media.is_some();
        let a_key = call.a_invite_key.clone();
        let seq = call.a.dialog.remote_seq.unwrap_or(0);
        let a_flow = call.a_reply.clone();
        let _ = self.records.send(CallEvent::Answered(active(call)));
        self.core.calls.active.insert(call.uuid, active(call));
        for fork in others {
            self.abandon(id, fork, now);
        }
        self.respond(&a_key, ok.clone(), now);
        self.expect_ack(id, Leg::A, &ok, a_flow, seq, now);
        if watch_media {
            self.schedule(now + self.media_check_every(), Timer::Media(id));
        }
    }

    /// How often a call's media is looked at: often enough to end a dead call within
    /// a sixth of `calls.media_timeout` of it, rarely enough to cost nothing.
    fn media_check_every(&self) -> Duration {
        (self.media_timeout / 6).max(Duration::from_secs(1))
    }

    /// Retransmits `ok` to `leg` until its ACK (§13.3.1.4).
    fn expect_ack(&mut self, id: u64, leg: Leg, ok: &Message, flow: Flow, seq: u32, now: Instant) {
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

    fn forks_failed(&mut self, id: u64, now: Instant) {
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
                None => self.fail(id, 486, "Busy Here", Disposition::Busy, now),
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

    fn no_answer(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let forward = call
            .callee
            .as_deref()
            .and_then(|c| routing::forward_on(c, ForwardWhen::NoAnswer));
        match forward {
            Some(target) => self.forward(id, target, now),
            None => self.fail(id, 480, "No answer", Disposition::NoAnswer, now),
        }
    }

    /// Ends an unanswered call with a final response to the caller.
    fn fail(&mut self, id: u64, code: u16, reason: &str, disposition: Disposition, now: Instant) {
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

    fn caller_cancelled(&mut self, id: u64, now: Instant) {
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

    // ----- in-dialog -----

    /// Finds the call and leg a received in-dialog request belongs to.
    fn dialog_of(&self, req: &Message) -> Option<(u64, Leg)> {
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

    fn in_dialog(&mut self, key: &TransactionKey, req: &Message, now: Instant) {
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
    fn bye(&mut self, id: u64, leg: Leg, now: Instant) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.bye_leg(&mut call, leg, now);
        self.calls.insert(id, call);
    }

    /// Sends BYE on `leg` of `call` (which may be out of the map).
    fn bye_leg(&mut self, call: &mut Call, leg: Leg, now: Instant) {
        let Some(target) = call.established_mut(leg) else {
            return;
        };
        let flow = target.flow.clone();
        let local = local_for(&mut self.local_ips, &flow);
        let mut bye = target
            .dialog
            .request(Method::Bye, &call::via(&flow, local), "");
        bye.push(HeaderName::ContentLength, "0");
        self.send(bye, &flow, Role::Own, now);
    }

    /// Passes an in-dialog request (re-INVITE, UPDATE, INFO, …) from `from` to the
    /// other leg; its answer comes back through [`Self::relayed_response`].
    fn relay_request(
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
            match media.relay_sdp(from, sdp, towards, None) {
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
            Some((content_type, body)) => out.set_body(&content_type, body),
            None => out.push(HeaderName::ContentLength, "0"),
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

    fn relayed_response(
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
                Ok((anchored, _)) => body = Some((content_type.clone(), anchored)),
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
        let answer_msg = call::response(
            &request,
            code,
            resp.reason(),
            leg,
            body.as_ref().map(|(t, b)| (t.as_str(), b.clone())),
        );
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

    fn on_ack(&mut self, ack: &Message) {
        let Some((id, leg)) = self.dialog_of(ack) else {
            return;
        };
        let seq = ack.cseq().map(|c| c.seq).ok();
        if let Some(call) = self.calls.get_mut(&id) {
            let slot = &mut call.unacked[Call::leg_index(leg)];
            if slot.as_ref().is_some_and(|u| Some(u.seq) == seq) {
                *slot = None;
            }
        }
    }

    // ----- timers and the end -----

    pub fn on_timeout(&mut self, now: Instant) {
        for (key, output) in self.layer.handle_timeout(now) {
            match key.side() {
                switchboard_sip::transaction::Side::Client => {
                    self.client_outputs(&key, vec![output], now)
                }
                switchboard_sip::transaction::Side::Server => {
                    self.server_outputs(&key, vec![output])
                }
            }
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), timer) = entry.remove_entry();
            match timer {
                Timer::Ring(id) => {
                    let due = self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.phase == Phase::Ringing && c.ring_deadline == Some(at));
                    if due {
                        self.no_answer(id, now);
                    }
                }
                Timer::Retransmit(id, leg) => self.retransmit(id, leg, at, now),
                Timer::Media(id) => self.check_media(id, now),
                Timer::Transfer(id) => self.transfer_timeout(id, at, now),
            }
        }
    }

    /// Ends an answered call whose media stopped (not on hold) for `calls.media_timeout`.
    fn check_media(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(media) = &call.media else {
            return;
        };
        if media.session.timed_out(self.media_timeout) {
            tracing::info!(call = %call.uuid, "no media for calls.media_timeout; hanging up");
            self.bye(id, Leg::A, now);
            self.bye(id, Leg::B, now);
            self.end(id, Disposition::Answered, "media timeout".into());
        } else {
            self.schedule(now + self.media_check_every(), Timer::Media(id));
        }
    }

    fn retransmit(&mut self, id: u64, leg: Leg, at: Instant, now: Instant) {
        let timers = self.layer.config().timers;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(u) = call.unacked[Call::leg_index(leg)].as_mut() else {
            return;
        };
        if u.next != at {
            return;
        }
        if now >= u.give_up {
            // §13.3.1.4: no ACK within 64*T1 ends the dialog.
            call.unacked[Call::leg_index(leg)] = None;
            tracing::info!(call = %call.uuid, "no ACK for the 2xx; hanging up");
            self.bye(id, Leg::A, now);
            self.bye(id, Leg::B, now);
            self.end(id, Disposition::Answered, "no ACK".into());
            return;
        }
        self.out.push_bytes(u.flow.clone(), u.bytes.clone());
        u.interval = timers.next_capped(u.interval);
        u.next = now + u.interval;
        let next = u.next;
        self.schedule(next, Timer::Retransmit(id, leg));
    }

    /// Hangs up call `uuid` (the API's DELETE): BYE when answered, else the caller gets
    /// 480 and the forks are cancelled.
    fn hangup(&mut self, uuid: uuid::Uuid, now: Instant) -> bool {
        let Some(id) = self
            .calls
            .iter()
            .find(|(_, c)| c.uuid == uuid)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        match self.calls[&id].phase {
            Phase::Ringing => self.fail(
                id,
                480,
                "Call ended by an administrator",
                Disposition::Failed,
                now,
            ),
            Phase::Answered => {
                self.bye(id, Leg::A, now);
                self.bye(id, Leg::B, now);
                self.end(
                    id,
                    Disposition::Answered,
                    "ended by an administrator".into(),
                );
            }
        }
        true
    }

    /// The call is over: forget it and record it.
    fn end(&mut self, id: u64, disposition: Disposition, cause: String) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        // Only the ids still pointing here: a transfer may have moved a dialog on.
        let mut ids = vec![&call.a.dialog.call_id, &call.b_call_id];
        ids.extend(call.b.as_ref().map(|b| &b.dialog.call_id));
        if let Some(call::Transfer {
            kind: call::TransferKind::Blind { call_id, .. },
            ..
        }) = &call.transfer
        {
            ids.push(call_id);
        }
        for call_id in ids {
            if self.by_call_id.get(call_id) == Some(&id) {
                self.by_call_id.remove(call_id);
            }
        }
        self.core.calls.active.remove(&call.uuid);
        metrics::counter!("switchboard_calls_total", "disposition" => disposition.as_str())
            .increment(1);
        let record = self.record(&call, disposition, cause);
        let _ = self.records.send(CallEvent::Ended(record));
        // A transfer still ringing stops ringing.
        if let Some(call::Transfer {
            kind: call::TransferKind::Blind { forks, .. },
            ..
        }) = call.transfer
        {
            for fork in forks
                .iter()
                .filter(|f| f.final_code.is_none() && f.provisional)
            {
                self.cancel_fork(fork, Instant::now());
            }
        }
    }

    /// The call detail record of `call`, ending now.
    fn record(&self, call: &Call, disposition: Disposition, cause: String) -> CallRecord {
        let ended_at = Timestamp::now();
        CallRecord {
            id: call.uuid,
            caller: call.caller.clone(),
            caller_name: call.caller_name.clone(),
            callee: call.dialled.clone(),
            answered_by: call.answered_at.and(call.target.clone()),
            started_at: call.started_at,
            answered_at: call.answered_at,
            ended_at,
            duration: call
                .answered_at
                .map(|a| ((ended_at.millis() - a.millis()) / 1000).max(0))
                .unwrap_or(0),
            disposition,
            hangup_cause: cause,
            codec: call.media.as_ref().and_then(|m| m.codec.clone()),
        }
    }
}

fn call_phase(calls: &HashMap<u64, Call, RandomState>, id: u64) -> Option<Phase> {
    calls.get(&id).map(|c| c.phase)
}

/// A response on `leg`'s dialog of `call`.
fn reply_in(call: &Call, leg: Leg, req: &Message, code: u16, reason: Option<&str>) -> Message {
    match call.established(leg) {
        Some(l) => call::response(req, code, reason, l, None),
        None => {
            let mut resp = Message::response_to(req, code, reason);
            resp.push(HeaderName::ContentLength, "0");
            resp
        }
    }
}

fn active(call: &Call) -> ActiveCall {
    ActiveCall {
        id: call.uuid,
        caller: call.caller.clone(),
        caller_name: call.caller_name.clone(),
        callee: call.dialled.clone(),
        ringing: call.target.clone(),
        state: match call.phase {
            Phase::Ringing => "ringing",
            Phase::Answered => "answered",
        },
        started_at: call.started_at,
        answered_at: call.answered_at,
        media_ports: call.media.as_ref().map(|m| MediaPorts {
            caller: m.session.port(switchboard_media::relay::Side::A),
            callee: m.session.port(switchboard_media::relay::Side::B),
        }),
    }
}

/// ACKs the 2xx `resp` to a re-INVITE the PBX sent on `leg` (which may move the
/// remote target).
fn ack_reinvite(
    local_ips: &mut HashMap<IpAddr, IpAddr>,
    out: &mut Outbox,
    leg: &mut Established,
    resp: &Message,
) {
    leg.dialog.on_refresh_response(resp);
    let flow = leg.flow.clone();
    let local = local_for(local_ips, &flow);
    let seq = resp.cseq().map(|c| c.seq).unwrap_or(leg.dialog.local_seq);
    let mut ack = leg.dialog.ack(seq, &call::via(&flow, local));
    ack.push(HeaderName::ContentLength, "0");
    out.push(&flow, &ack);
}

/// The body of a response from leg B (an SDP answer relayed towards leg A at
/// `towards`, cut to the caller's offer; any other body as it is).
fn answer_body(
    call: &mut Call,
    resp: &Message,
    towards: IpAddr,
) -> Result<Option<(String, bytes::Bytes)>, Unusable> {
    let Some((content_type, body)) = call::body_of(resp) else {
        return Ok(None);
    };
    match call.media.as_mut() {
        Some(media) if call::is_sdp(&content_type) => {
            let (anchored, _) = media.relay_sdp(Leg::B, &body, towards, call.offer_sdp.as_ref())?;
            Ok(Some((content_type, anchored)))
        }
        _ => Ok(Some((content_type, body))),
    }
}

/// The address written into SDP for the phone at the end of `flow`.
fn advertised(public: Option<IpAddr>, cache: &mut HashMap<IpAddr, IpAddr>, flow: &Flow) -> IpAddr {
    public.unwrap_or_else(|| local_for(cache, flow).ip())
}

/// Our address as the peer of `flow` reaches it: the listener's, or for a wildcard
/// listener the one the kernel routes from towards the peer (cached per peer).
fn local_for(cache: &mut HashMap<IpAddr, IpAddr>, flow: &Flow) -> SocketAddr {
    if !flow.local.ip().is_unspecified() {
        return flow.local;
    }
    let peer = flow.remote.ip();
    if cache.len() >= 10_000 && !cache.contains_key(&peer) {
        cache.clear(); // bounded: a scan from many addresses cannot grow it
    }
    let ip = *cache.entry(peer).or_insert_with(|| route_source(peer));
    SocketAddr::new(ip, flow.local.port())
}

/// The source address the kernel would use towards `peer` (a connected UDP socket
/// sends nothing; it only asks the routing table).
fn route_source(peer: IpAddr) -> IpAddr {
    let any: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect((peer, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(peer)
}
