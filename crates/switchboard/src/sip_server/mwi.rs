//! Message-waiting indication: the `message-summary` event package (RFC 3842) over
//! SUBSCRIBE/NOTIFY (RFC 6665), so that phones light their voicemail lamp.
//!
//! A phone subscribes to its own mailbox (digest-authenticated like a REGISTER: 401,
//! or 407 credentials when it sends those), gets a 200 with the expiry granted and at
//! once a NOTIFY with the counts; every change of the mailbox (followed in the event
//! outbox, so deposits, reads and deletions made by the API or another node count)
//! sends a NOTIFY to each subscription of the extension, and with
//! `voicemail.unsolicited_mwi` an out-of-dialog NOTIFY to each binding that has none.
//!
//! Subscriptions are soft state, kept in memory only: phones refresh them, and after a
//! restart the next refresh (answered 481) makes them subscribe again.
//!
//! One task ([`run`]) sends every NOTIFY, in order: it reads the counts, then sends, so
//! a phone never sees older counts after newer ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sip::dialog::Dialog;
use switchboard_sip::header::{Contacts, HeaderName};
use switchboard_sip::text::push_hex;
use switchboard_sip::transaction::{
    Config, Incoming, Output, Side, TransactionKey, TransactionLayer,
};
use switchboard_sip::uri::push_escaped_user;
use switchboard_sip::{Host, Message, Method, Uri};
use tokio::sync::{mpsc, watch};

use super::SipCore;
use super::auth::{self, Challenger, Verdict};
use super::calls::{contact, via};
use super::credentials::SipCredential;
use super::transport::{Flow, Outbox, local_for};
use crate::features::voicemail::Counts;
use crate::store;
use crate::time::Timestamp;

/// The event package.
pub const PACKAGE: &str = "message-summary";
/// The body's content type (RFC 3842 §5).
pub const CONTENT_TYPE: &str = "application/simple-message-summary";
/// Expiry granted when the phone asks for none.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Shorter subscriptions are refused with 423.
pub const MIN_EXPIRES: u32 = 60;
/// Longer ones are shortened to this.
pub const MAX_EXPIRES: u32 = 3600;
/// Subscriptions one extension may hold (a phone has one, a few phones a few).
const MAX_PER_EXTENSION: usize = 32;
/// How often the outbox is read for mailbox changes.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// The longest the task sleeps: expired subscriptions are swept at this pace.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The body of a NOTIFY (RFC 3842 §5.2): the lamp, the account, new/old voice
/// messages (urgent ones are not kept apart: always `(0/0)`).
pub fn summary_body(extension: &str, realm: &str, counts: Counts) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: sip:{extension}@{realm}\r\nVoice-Message: {}/{} (0/0)\r\n",
        if counts.new > 0 { "yes" } else { "no" },
        counts.new.max(0),
        counts.saved.max(0),
    )
}

/// A subscription: Call-ID and the phone's From tag.
type SubKey = (String, String);

struct Subscription {
    extension: String,
    dialog: Dialog,
    /// Where NOTIFYs go: the flow the last SUBSCRIBE came over (NAT-friendly, as
    /// the registrar keeps it).
    flow: Flow,
    /// The `Event` header of our NOTIFYs (with the phone's `id`, if any).
    event: String,
    expires_at: Instant,
    /// Unsubscribed (Expires: 0): the next NOTIFY is the last.
    ending: bool,
    /// The counts of the last NOTIFY.
    last: Option<Counts>,
}

/// What a transaction of ours is for.
struct TxUse {
    /// Server: where responses go; client: where the request went.
    flow: Flow,
    /// The subscription a NOTIFY belongs to (none for an unsolicited one).
    sub: Option<SubKey>,
}

#[derive(Default)]
struct State {
    layer: TransactionLayer,
    txs: HashMap<TransactionKey, TxUse>,
    subs: HashMap<SubKey, Subscription>,
    /// Our address towards a peer, per peer, for a wildcard listener.
    local_ips: HashMap<IpAddr, IpAddr>,
}

enum Job {
    /// Send the subscription its (first, refreshed or last) NOTIFY.
    Notify(SubKey),
    /// The mailbox of this extension changed.
    Changed(String),
}

/// The subscriptions and the NOTIFY transactions.
pub struct Mwi {
    state: std::sync::Mutex<State>,
    jobs: mpsc::UnboundedSender<Job>,
    queue: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl Default for Mwi {
    fn default() -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        Self {
            state: std::sync::Mutex::new(State {
                layer: TransactionLayer::new(Config::default()),
                ..State::default()
            }),
            jobs,
            queue: std::sync::Mutex::new(Some(queue)),
        }
    }
}

impl Mwi {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Active subscriptions of `extension` that have had their first NOTIFY.
    pub fn subscriptions(&self, extension: &str) -> usize {
        self.lock()
            .subs
            .values()
            .filter(|s| s.extension == extension && !s.ending && s.last.is_some())
            .count()
    }

    /// A response to one of our NOTIFYs is handled here; any other is handed back.
    pub fn on_response(&self, resp: Message, out: &mut Outbox) -> Option<Message> {
        if !resp.cseq().is_ok_and(|c| c.method == Method::Notify) {
            return Some(resp);
        }
        let Ok(key) = TransactionKey::client(&resp) else {
            return Some(resp);
        };
        let mut st = self.lock();
        if !st.layer.contains(&key) {
            return Some(resp);
        }
        if let Some((key, outputs)) = st.layer.on_response(resp, Instant::now()) {
            st.client_outputs(&key, outputs, out);
        }
        None
    }

    /// Fires transaction timers and ends expired subscriptions.
    fn on_timeout(&self, core: &SipCore, now: Instant, out: &mut Outbox) {
        let mut st = self.lock();
        for (key, output) in st.layer.handle_timeout(now) {
            match key.side() {
                Side::Client => st.client_outputs(&key, vec![output], out),
                Side::Server => st.server_outputs(&key, vec![output], out),
            }
        }
        let expired: Vec<SubKey> = st
            .subs
            .iter()
            .filter(|(_, s)| s.expires_at <= now && !s.ending)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(mut sub) = st.subs.remove(&k) {
                tracing::debug!(extension = %sub.extension, "MWI subscription expired");
                sub.ending = true;
                let counts = sub.last;
                st.notify(core, &k, &mut sub, counts, now, out);
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let cap = now + SWEEP_EVERY;
        self.lock().layer.poll_timeout().map_or(cap, |t| t.min(cap))
    }
}

impl State {
    fn server_outputs(&mut self, key: &TransactionKey, outputs: Vec<Output>, out: &mut Outbox) {
        for o in outputs {
            match o {
                Output::Send(bytes) => {
                    if let Some(u) = self.txs.get(key) {
                        out.push_bytes(u.flow.clone(), bytes);
                    }
                }
                Output::Terminated => {
                    self.txs.remove(key);
                }
                Output::Deliver(_) | Output::TimedOut => {}
            }
        }
    }

    fn client_outputs(&mut self, key: &TransactionKey, outputs: Vec<Output>, out: &mut Outbox) {
        for o in outputs {
            match o {
                Output::Send(bytes) => {
                    if let Some(u) = self.txs.get(key) {
                        out.push_bytes(u.flow.clone(), bytes);
                    }
                }
                Output::Deliver(resp) => {
                    let code = resp.code().unwrap_or(0);
                    // RFC 6665 §4.1.2.2 / §4.2.2: these end the subscription.
                    let ends = matches!(code, 404 | 405 | 410 | 416 | 480..=485 | 489 | 501 | 604);
                    if ends && let Some(sub) = self.txs.get(key).and_then(|u| u.sub.clone()) {
                        if let Some(s) = self.subs.remove(&sub) {
                            tracing::info!(extension = %s.extension, code, "MWI subscription ended by the phone");
                        }
                    } else if code >= 300 {
                        tracing::debug!(code, "NOTIFY refused");
                    }
                }
                Output::TimedOut => {
                    if let Some(sub) = self.txs.get(key).and_then(|u| u.sub.clone())
                        && let Some(s) = self.subs.remove(&sub)
                    {
                        tracing::info!(extension = %s.extension, "MWI subscription dropped: NOTIFY unanswered");
                    }
                }
                Output::Terminated => {
                    self.txs.remove(key);
                }
            }
        }
    }

    /// Sends `sub` a NOTIFY with `counts` (no body when unknown).
    fn notify(
        &mut self,
        core: &SipCore,
        key: &SubKey,
        sub: &mut Subscription,
        counts: Option<Counts>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let local = local_for(&mut self.local_ips, &sub.flow);
        let state = if sub.ending || sub.expires_at <= now {
            "terminated;reason=timeout".to_owned()
        } else {
            let left = sub
                .expires_at
                .saturating_duration_since(now)
                .as_secs()
                .max(1);
            format!("active;expires={left}")
        };
        let contact = contact(&sub.flow, local, &sub.extension);
        let mut req = sub
            .dialog
            .request(Method::Notify, &via(&sub.flow, local), &contact);
        req.push(HeaderName::Event, sub.event.clone());
        req.push(HeaderName::SubscriptionState, state);
        req.push_static(HeaderName::UserAgent, USER_AGENT);
        match counts {
            Some(c) => {
                req.set_body(CONTENT_TYPE, summary_body(&sub.extension, &core.realm, c));
                sub.last = Some(c);
            }
            None => req.push_static(HeaderName::ContentLength, "0"),
        }
        self.send(req, &sub.flow, Some(key.clone()), now, out);
    }

    fn send(
        &mut self,
        req: Message,
        flow: &Flow,
        sub: Option<SubKey>,
        now: Instant,
        out: &mut Outbox,
    ) {
        match self.layer.send_request(req, flow.is_reliable(), now) {
            Ok((key, outputs)) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        flow: flow.clone(),
                        sub,
                    },
                );
                self.client_outputs(&key, outputs, out);
            }
            Err(e) => tracing::warn!(error = %e, "cannot send a NOTIFY"),
        }
    }
}

const USER_AGENT: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// A SUBSCRIBE (validated by ingress). What to send goes into `out`.
pub fn handle(core: &Arc<SipCore>, req: Message, flow: Flow, reply_flow: Flow, out: &mut Outbox) {
    let now = Instant::now();
    let (key, request) = {
        let mut st = core.mwi.lock();
        match st.layer.on_request(req, reply_flow.is_reliable(), now) {
            Ok(Incoming::New { key, request }) => {
                st.txs.insert(
                    key.clone(),
                    TxUse {
                        flow: reply_flow.clone(),
                        sub: None,
                    },
                );
                (key, request)
            }
            Ok(Incoming::Matched { key, outputs }) => {
                // A retransmission: the transaction answers it again.
                st.server_outputs(&key, outputs, out);
                return;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(error = %e, "SUBSCRIBE dropped");
                return;
            }
        }
    };
    if let Some(number) = subscribe(core, &key, &request, &flow, &reply_flow, None, now, out) {
        // Not in the credential cache: looked up on a task of its own.
        let core = core.clone();
        tokio::spawn(async move {
            let secret = core.credentials.get(&number).await;
            let mut out = Outbox::default();
            let known = Some(secret);
            if subscribe(
                &core,
                &key,
                &request,
                &flow,
                &reply_flow,
                known,
                Instant::now(),
                &mut out,
            )
            .is_some()
            {
                let resp = core.response(&request, 500, Some("Credential lookup failed"));
                respond(&core, &key, resp, &mut out);
            }
            core.transports.send_all(&mut out, &core.metrics);
        });
    }
}

fn respond(core: &SipCore, key: &TransactionKey, resp: Message, out: &mut Outbox) {
    let mut st = core.mwi.lock();
    let outputs = st.layer.respond(key, resp, Instant::now());
    st.server_outputs(key, outputs, out);
}

/// Answers the SUBSCRIBE of server transaction `key`; `Some(extension)` when its
/// credentials must be looked up first (nothing was answered).
#[allow(clippy::too_many_arguments)]
fn subscribe(
    core: &SipCore,
    key: &TransactionKey,
    req: &Message,
    source: &Flow,
    reply_flow: &Flow,
    known: Option<Option<Arc<SipCredential>>>,
    now: Instant,
    out: &mut Outbox,
) -> Option<String> {
    let reply = |resp: Message, out: &mut Outbox| respond(core, key, resp, out);
    let plain = |code: u16, why: &str, out: &mut Outbox| {
        respond(core, key, core.response(req, code, Some(why)), out)
    };

    // The package first: a phone learns which it may subscribe to without credentials.
    let event = match req.event() {
        Ok(Some(e)) if e.package.eq_ignore_ascii_case(PACKAGE) => e,
        Ok(_) => {
            let mut resp = core.response(req, 489, None);
            resp.push(HeaderName::AllowEvents, PACKAGE);
            reply(resp, out);
            return None;
        }
        Err(e) => {
            plain(400, &e.message, out);
            return None;
        }
    };
    if req.header(&HeaderName::Accept).is_some() {
        let ok = req
            .header_values(&HeaderName::Accept)
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case(CONTENT_TYPE)
                    || t == "*/*"
                    || t.eq_ignore_ascii_case("application/*")
            });
        if !ok {
            let mut resp = core.response(req, 406, None);
            resp.push(HeaderName::Accept, CONTENT_TYPE);
            reply(resp, out);
            return None;
        }
    }
    // The mailbox is the To URI's user: one's own extension only.
    let number = match req.to_addr() {
        Ok(to) => match &to.uri {
            Uri::Sip(aor) => aor.user_decoded(),
            _ => None,
        },
        Err(_) => None,
    };
    let Some(number) = number else {
        plain(404, "No mailbox in the To URI", out);
        return None;
    };
    if let Some(Uri::Sip(target)) = req.uri()
        && let Some(user) = target.user_decoded()
        && user != number
    {
        plain(403, "Only one's own mailbox can be subscribed to", out);
        return None;
    }

    // Digest like the registrar (401), unless the phone sent proxy credentials.
    let challenger = if req.header(&HeaderName::Authorization).is_none()
        && req.header(&HeaderName::ProxyAuthorization).is_some()
    {
        Challenger::Proxy
    } else {
        Challenger::Registrar
    };
    let ip = source.remote.ip();
    match auth::check(core, req, ip, &number, challenger, known) {
        Verdict::Authenticated(_) => {}
        Verdict::Challenge { stale } => {
            reply(auth::challenge(core, req, ip, stale, challenger), out);
            return None;
        }
        Verdict::Lookup => return Some(number),
        Verdict::Forbidden { why, .. } => {
            plain(403, why, out);
            return None;
        }
    }

    let expires = match req.expires() {
        Ok(None) => DEFAULT_EXPIRES,
        Ok(Some(0)) => 0,
        Ok(Some(n)) if n < MIN_EXPIRES => {
            let mut resp = core.response(req, 423, None);
            resp.push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
            reply(resp, out);
            return None;
        }
        Ok(Some(n)) => n.min(MAX_EXPIRES),
        Err(e) => {
            plain(400, &e.message, out);
            return None;
        }
    };
    let (Ok(call_id), Ok(from)) = (req.call_id(), req.from_addr()) else {
        plain(400, "Bad Call-ID or From", out);
        return None;
    };
    let Some(from_tag) = from.tag() else {
        plain(400, "SUBSCRIBE needs a From tag", out);
        return None;
    };
    let sub_key: SubKey = (call_id.to_owned(), from_tag.to_owned());
    let to_tag = req.to_addr().ok().and_then(|t| t.tag().map(str::to_owned));
    let expires_at = now + Duration::from_secs(u64::from(expires));
    let event_value = match event.id() {
        Some(id) => format!("{PACKAGE};id={id}"),
        None => PACKAGE.to_owned(),
    };

    let mut st = core.mwi.lock();
    let local = local_for(&mut st.local_ips, reply_flow);
    let resp = match to_tag {
        Some(tag) => {
            // A refresh (or an unsubscribe) within the dialog.
            let Some(sub) = st
                .subs
                .get_mut(&sub_key)
                .filter(|s| s.dialog.local_tag == tag && s.extension == number)
            else {
                drop(st);
                plain(481, "No such subscription", out);
                return None;
            };
            if !sub.dialog.on_request(req) {
                drop(st);
                plain(500, "CSeq out of order", out);
                return None;
            }
            if let Ok(Some(contacts)) = req.contacts()
                && let Contacts::List(list) = &*contacts
                && let Some(c) = list.first()
            {
                sub.dialog.remote_target = c.uri.clone();
            }
            sub.flow = reply_flow.clone();
            sub.expires_at = expires_at;
            sub.ending = expires == 0;
            sub.event = event_value;
            let mut resp = core.response(req, 200, None);
            resp.push(HeaderName::Expires, expires.to_string());
            resp.push(HeaderName::Contact, contact(reply_flow, local, &number));
            resp
        }
        None => {
            let held = st.subs.values().filter(|s| s.extension == number).count();
            if held >= MAX_PER_EXTENSION {
                drop(st);
                plain(503, "Too many subscriptions", out);
                return None;
            }
            let tag: u64 = rand::random();
            let mut hex = String::with_capacity(16);
            push_hex(&mut hex, tag);
            let dialog = match Dialog::as_uas(req, &hex) {
                Ok(d) => d,
                Err(e) => {
                    drop(st);
                    plain(400, &e.message, out);
                    return None;
                }
            };
            tracing::debug!(extension = %number, expires, "MWI subscription");
            st.subs.insert(
                sub_key.clone(),
                Subscription {
                    extension: number.clone(),
                    dialog,
                    flow: reply_flow.clone(),
                    event: event_value,
                    expires_at,
                    ending: expires == 0,
                    last: None,
                },
            );
            let mut resp = core.response_tagged(req, 200, None, tag);
            resp.push(HeaderName::Expires, expires.to_string());
            resp.push(HeaderName::Contact, contact(reply_flow, local, &number));
            resp
        }
    };
    let outputs = st.layer.respond(key, resp, now);
    st.server_outputs(key, outputs, out);
    drop(st);
    // RFC 6665 §4.2.1: a NOTIFY at once, after the 200: the 200 goes out now, so that
    // the NOTIFY (sent by the MWI task) cannot overtake it.
    core.transports.send_all(out, &core.metrics);
    let _ = core.mwi.jobs.send(Job::Notify(sub_key));
    None
}

/// Sends the NOTIFYs, follows mailbox changes, fires timers and sweeps expired
/// subscriptions until `stop`.
pub async fn run(core: Arc<SipCore>, mut stop: watch::Receiver<bool>) {
    let Some(mut jobs) = core.mwi.queue.lock().ok().and_then(|mut q| q.take()) else {
        return;
    };
    let mut last_seq = store::events::max_seq(core.app.db.pool())
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the event outbox; MWI follows it from the start");
            0
        });
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = core.mwi.next_deadline(Instant::now());
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            job = jobs.recv() => match job {
                Some(job) => run_job(&core, job).await,
                None => return,
            },
            _ = follow.tick() => {
                match changed_mailboxes(&core, &mut last_seq).await {
                    Ok(changed) => {
                        for ext in changed {
                            run_job(&core, Job::Changed(ext)).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "following voicemail changes failed"),
                }
            }
            _ = stop.changed() => return,
        }
        let mut out = Outbox::default();
        core.mwi.on_timeout(&core, Instant::now(), &mut out);
        core.transports.send_all(&mut out, &core.metrics);
    }
}

/// The extensions whose mailbox changed since `last_seq` (outbox `voicemail.*`).
async fn changed_mailboxes(core: &SipCore, last_seq: &mut i64) -> store::Result<Vec<String>> {
    const PAGE: i64 = 1000;
    let pool = core.app.db.pool();
    let upto = store::events::max_seq(pool).await?;
    let mut changed: Vec<String> = Vec::new();
    while *last_seq < upto {
        let events =
            store::events::of_type_between(pool, "voicemail.", *last_seq, upto, PAGE).await?;
        *last_seq = match events.last() {
            Some(last) if events.len() as i64 == PAGE => last.seq,
            _ => upto,
        };
        for e in &events {
            if let Some(ext) = e.data["extension"].as_str()
                && !changed.iter().any(|c| c == ext)
            {
                changed.push(ext.to_owned());
            }
        }
    }
    Ok(changed)
}

async fn counts_of(core: &SipCore, extension: &str) -> Counts {
    match core.app.voicemail.counts(extension).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(extension, error = %e, "no mailbox counts; the lamp shows none");
            Counts::default()
        }
    }
}

async fn run_job(core: &SipCore, job: Job) {
    let now = Instant::now();
    let mut out = Outbox::default();
    match job {
        Job::Notify(key) => {
            let Some(ext) = core.mwi.lock().subs.get(&key).map(|s| s.extension.clone()) else {
                return;
            };
            let counts = counts_of(core, &ext).await;
            let mut st = core.mwi.lock();
            if let Some(mut sub) = st.subs.remove(&key) {
                st.notify(core, &key, &mut sub, Some(counts), now, &mut out);
                if !sub.ending {
                    st.subs.insert(key, sub);
                }
            }
        }
        Job::Changed(ext) => {
            let counts = counts_of(core, &ext).await;
            let mut st = core.mwi.lock();
            let keys: Vec<SubKey> = st
                .subs
                .iter()
                .filter(|(_, s)| s.extension == ext && !s.ending && s.last != Some(counts))
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                if let Some(mut sub) = st.subs.remove(&key) {
                    st.notify(core, &key, &mut sub, Some(counts), now, &mut out);
                    st.subs.insert(key, sub);
                }
            }
            if core.app.config.voicemail.unsolicited_mwi {
                unsolicited(core, &mut st, &ext, counts, now, &mut out);
            }
        }
    }
    core.transports.send_all(&mut out, &core.metrics);
}

/// An out-of-dialog NOTIFY to every binding of `ext` that has no subscription.
fn unsolicited(
    core: &SipCore,
    st: &mut State,
    ext: &str,
    counts: Counts,
    now: Instant,
    out: &mut Outbox,
) {
    for b in core.location.lookup(ext, Timestamp::now()) {
        let subscribed = st.subs.values().any(|s| {
            s.extension == ext
                && (s.flow.remote == b.flow.remote
                    || s.dialog.remote_target.to_string() == b.contact_uri)
        });
        if subscribed {
            continue;
        }
        let Ok(target) = Uri::parse(&b.contact_uri) else {
            continue;
        };
        let local = local_for(&mut st.local_ips, &b.flow);
        let aor = aor(ext, &core.realm);
        let mut tag = String::with_capacity(16);
        push_hex(&mut tag, rand::random());
        let mut call_id = String::with_capacity(32);
        push_hex(&mut call_id, rand::random());
        push_hex(&mut call_id, rand::random());
        let mut req = Message::request(Method::Notify, target);
        req.push_via(via(&b.flow, local));
        req.push_static(HeaderName::MaxForwards, "70");
        req.push(HeaderName::From, format!("{aor};tag={tag}"));
        req.push(HeaderName::To, aor);
        req.push(HeaderName::CallId, call_id);
        req.push_static(HeaderName::CSeq, "1 NOTIFY");
        req.push(HeaderName::Contact, contact(&b.flow, local, ext));
        req.push_static(HeaderName::Event, PACKAGE);
        req.push_static(HeaderName::SubscriptionState, "active");
        req.push_static(HeaderName::UserAgent, USER_AGENT);
        req.set_body(CONTENT_TYPE, summary_body(ext, &core.realm, counts));
        st.send(req, &b.flow, None, now, out);
    }
}

/// `<sip:ext@realm>` (`localhost` when the realm is not a host name).
fn aor(ext: &str, realm: &str) -> String {
    let host = if Host::parse(realm).is_ok() {
        realm
    } else {
        "localhost"
    };
    let mut out = String::with_capacity(ext.len() + host.len() + 8);
    out.push_str("<sip:");
    push_escaped_user(&mut out, ext);
    out.push('@');
    out.push_str(host);
    out.push('>');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipTransport;

    #[test]
    fn the_body_says_whether_messages_wait_and_how_many() {
        assert_eq!(
            summary_body("2001", "pbx.example", Counts { new: 2, saved: 5 }),
            "Messages-Waiting: yes\r\nMessage-Account: sip:2001@pbx.example\r\nVoice-Message: 2/5 (0/0)\r\n"
        );
        assert_eq!(
            summary_body("2001", "switchboard", Counts { new: 0, saved: 3 }),
            "Messages-Waiting: no\r\nMessage-Account: sip:2001@switchboard\r\nVoice-Message: 0/3 (0/0)\r\n"
        );
    }

    #[test]
    fn contacts_and_aors() {
        let flow = Flow {
            transport: SipTransport::Tcp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "198.51.100.7:40000".parse().unwrap(),
            conn: Some(1),
        };
        assert_eq!(
            contact(&flow, flow.local, "2001"),
            "<sip:2001@192.0.2.1:5060;transport=tcp>"
        );
        assert_eq!(aor("2001", "switchboard"), "<sip:2001@switchboard>");
        assert_eq!(aor("2001", "Main office"), "<sip:2001@localhost>");
        assert_eq!(aor("2001", "pbx.example"), "<sip:2001@pbx.example>");
    }
}
