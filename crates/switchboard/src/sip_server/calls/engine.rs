//! The B2BUA: every call-related message and timer passes through [`Engine`], which
//! owns the transactions (crates/sip's layer) and the calls. It is synchronous and
//! single-owner (the thread holding its lock drives it, see `super::CallsHandle`): a
//! call's state changes in one place and in order. What it sends goes into an [`Outbox`]; call
//! records and events go to the recorder.

mod apps;
mod dialogs;
mod forks;
mod setup;
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
use crate::sip_server::transport::{Flow, Outbox, local_for};
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
    /// A browser's answer held for its media is given to the caller anyway.
    BrowserMedia(u64),
}

/// How long an INVITE waits for a provisional response before the transaction
/// layer sends 100 Trying (RFC 3261 §17.2.1).
const TRYING_DELAY: Duration = Duration::from_millis(200);

/// How long a browser's answer waits for its media (ICE and DTLS take a few round
/// trips; a browser that cannot connect hangs up by itself).
const BROWSER_MEDIA_WAIT: Duration = Duration::from_secs(5);

pub use self::apps::AppLeg;

pub struct Engine {
    core: Arc<SipCore>,
    layer: TransactionLayer,
    // foldhash, seeded per process: these are looked up several times per message.
    // Boxed: a Call is nearly 3 KiB, which the map moved on every insert and growth
    // (and `bye` takes a call out and puts it back).
    calls: HashMap<u64, Box<Call>, RandomState>,
    by_call_id: HashMap<String, u64, RandomState>,
    txs: HashMap<TransactionKey, TxUse, RandomState>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    next_call: u64,
    out: Outbox,
    /// The local address the kernel picks towards each peer, for a wildcard listener.
    local_ips: HashMap<IpAddr, IpAddr>,
    records: mpsc::UnboundedSender<CallEvent>,
    ring_timeout: Duration,
    media_timeout: Duration,
    /// `rtp.public_address`: written into SDP instead of the local address.
    public_ip: Option<IpAddr>,
    /// Where browser phones' media gateways bind.
    browser: Arc<super::browser::Settings>,
}

impl Engine {
    pub fn new(core: Arc<SipCore>, records: mpsc::UnboundedSender<CallEvent>) -> Self {
        let t = &core.app.config.sip.timers;
        let config = Config {
            timers: switchboard_sip::transaction::Timers::from_millis(t.t1_ms, t.t2_ms, t.t4_ms),
            // §17.2.1: no 100 Trying when the TU answers within 200 ms. A callee's 180
            // mostly comes sooner, so most calls save a message each way (built, sent,
            // parsed by the phone); a slow callee or lookup still gets the caller its
            // 100 well before its INVITE's first retransmission (T1, 500 ms).
            trying_delay: Some(TRYING_DELAY),
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
        let settings = &core.app.config;
        let browser = Arc::new(super::browser::Settings {
            public_ip: settings
                .features
                .webrtc
                .public_address
                .as_deref()
                .and_then(super::browser::resolve)
                .or(public_ip),
            bind_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            port_min: settings.rtp.port_min,
            port_max: settings.rtp.port_max,
        });
        Self {
            browser,
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
            Command::Resume(key) => self.on_resume(key, now),
            Command::ResumeTransfer {
                call,
                by_caller,
                number,
            } => {
                let by = if by_caller { Leg::A } else { Leg::B };
                self.start_blind(call, by, number, false, now);
            }
            Command::AppTransfer {
                call,
                number,
                outcome,
            } => self.app_transfer(call, number, outcome, now),
            Command::AppCountsAs { call, disposition } => {
                if let Some(app) = self.calls.get_mut(&call).and_then(|c| c.app.as_mut()) {
                    app.disposition = disposition;
                }
            }
            Command::AppDone(call) => self.app_done(call, now),
            Command::BrowserConnected(call) => self.release_answer(call, now),
        }
    }

    /// A SIP message of a call; `reply` is where responses to a request go.
    pub fn on_sip(&mut self, msg: Message, reply: Flow, now: Instant) {
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
                Output::Send(wire) => {
                    if let Some(t) = self.txs.get(key) {
                        self.out.push_bytes(t.flow.clone(), wire);
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
                Output::Send(wire) => {
                    if let Some(t) = self.txs.get(key) {
                        self.out.push_bytes(t.flow.clone(), wire);
                    }
                }
                Output::Deliver(resp) => self.on_response(key, resp, now),
                Output::TimedOut => {
                    // §8.1.3.1: no answer counts as a 408.
                    if let Some(request) = self.layer.request(key).cloned() {
                        let mut timeout = Message::response_to(&request, 408, None);
                        timeout.push_static(HeaderName::ContentLength, "0");
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
                Timer::BrowserMedia(id) => {
                    if self.calls.get(&id).is_some_and(|c| c.held_answer.is_some()) {
                        tracing::warn!(call = id, "browser media not up in time; answering anyway");
                    }
                    self.release_answer(id, now);
                }
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
    pub fn hangup(&mut self, uuid: uuid::Uuid, now: Instant) -> bool {
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
        if let Some(app) = &call.app {
            let _ = app.hangup.send(true);
        }
        // An answered call to an application counts as what the application is.
        let disposition = match (&call.app, disposition) {
            (Some(app), Disposition::Answered) => app.disposition,
            _ => disposition,
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
        self.core.metrics.call_ended(disposition);
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

fn call_phase(calls: &HashMap<u64, Box<Call>, RandomState>, id: u64) -> Option<Phase> {
    calls.get(&id).map(|c| c.phase)
}

/// A response on `leg`'s dialog of `call`.
fn reply_in(call: &Call, leg: Leg, req: &Message, code: u16, reason: Option<&str>) -> Message {
    match call.established(leg) {
        Some(l) => call::response(req, code, reason, l, None),
        None => {
            let mut resp = Message::response_to(req, code, reason);
            resp.push_static(HeaderName::ContentLength, "0");
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
    ack.push_static(HeaderName::ContentLength, "0");
    out.push(&flow, &ack);
}

/// The body of a response from leg B (an SDP answer relayed towards leg A at
/// `towards`, cut to the caller's offer; any other body as it is).
fn answer_body(
    call: &mut Call,
    resp: &Message,
    towards: IpAddr,
) -> Result<Option<call::Body>, Unusable> {
    let Some((content_type, body)) = call::body_of(resp) else {
        return Ok(None);
    };
    match call.media.as_mut() {
        Some(media) if call::is_sdp(&content_type) => {
            let anchored = media.relay_sdp(Leg::B, &body, towards, call.offer_sdp.as_ref())?;
            Ok(Some((content_type, anchored)))
        }
        _ => Ok(Some((content_type, body))),
    }
}

/// The address written into SDP for the phone at the end of `flow`.
fn advertised(public: Option<IpAddr>, cache: &mut HashMap<IpAddr, IpAddr>, flow: &Flow) -> IpAddr {
    public.unwrap_or_else(|| local_for(cache, flow).ip())
}
