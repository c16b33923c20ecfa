//! The registrar (RFC 3261 §10.3) with digest authentication: 401 challenges offering
//! SHA-256 and MD5, stateless nonces, nonce-count replay refusal, Min-Expires, several
//! contacts, `Contact: *`, RFC 5626 instance/reg-id replacement, and the inventory.
//!
//! REGISTER is answered statelessly (like a Kamailio `sl` registrar): processing is
//! idempotent, and a retransmission is processed again and gets the same answer. Every
//! 200 OK waits for its bindings to be committed (see `persist`).

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use switchboard_sip::header::{Contacts, HeaderName, NameAddr};
use switchboard_sip::{Message, Uri};

use tokio::sync::mpsc;

use super::SipCore;
use super::auth::{self, Challenger, Verdict};
use super::credentials::SipCredential;
use super::location::{Binding, event_data};
use super::persist::{PersistJob, Reply};
use super::transport::{Flow, Outbox};
use crate::features::events::EventType;
use crate::features::registered_phones::mac;
use crate::store::registered_phones::Sighting;
use crate::time::Timestamp;

/// Expiry granted when the phone asks for none.
const DEFAULT_EXPIRES: u32 = 3600;

/// Handles a REGISTER without waiting: the answer goes into `out`, or (bindings
/// changed) to the batch writer, which sends it once the change is committed. An
/// extension not in the credential cache is looked up on a task of its own, so a
/// scan of unknown numbers never holds up the phones that are known.
pub fn handle(core: &Arc<SipCore>, req: Message, flow: Flow, reply_flow: Flow, out: &mut Outbox) {
    let now = Timestamp::now();
    match register(core, &req, &flow, now, None) {
        Outcome::Lookup(number) => {
            let core = core.clone();
            tokio::spawn(async move {
                let secret = core.credentials.get(&number).await;
                let outcome = register(&core, &req, &flow, Timestamp::now(), Some(secret));
                let mut out = Outbox::default();
                finish(&core, &req, outcome, reply_flow, &mut out);
                core.transports.send_all(&mut out, &core.metrics);
            });
        }
        outcome => finish(core, &req, outcome, reply_flow, out),
    }
}

fn finish(core: &SipCore, req: &Message, outcome: Outcome, reply_flow: Flow, out: &mut Outbox) {
    match outcome {
        Outcome::Reply(resp) => out.push(&reply_flow, &resp),
        Outcome::Lookup(_) => {
            out.push(
                &reply_flow,
                &core.response(req, 500, Some("Credential lookup failed")),
            );
        }
        Outcome::Persist(mut job, resp) => {
            job.reply = Some(Reply {
                flow: reply_flow.clone(),
                ok: resp,
            });
            match core.persist.try_send(*job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The database is behind by a whole queue: ask the phone to wait.
                    let mut busy = core.response(req, 503, Some("Registrar overloaded"));
                    busy.push(HeaderName::RetryAfter, "5");
                    out.push(&reply_flow, &busy);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::warn!("registration writer stopped; REGISTER dropped");
                }
            }
        }
    }
}

enum Outcome {
    /// Answer now (nothing to save).
    Reply(Message),
    /// The extension's credentials must be read from the database first.
    Lookup(String),
    /// Save, then answer.
    Persist(Box<PersistJob>, Message),
}

fn forbidden(core: &SipCore, req: &Message, why: &str) -> Outcome {
    Outcome::Reply(core.response(req, 403, Some(why)))
}

/// `known`: the credentials when the caller already looked them up.
fn register(
    core: &SipCore,
    req: &Message,
    flow: &Flow,
    now: Timestamp,
    known: Option<Option<Arc<SipCredential>>>,
) -> Outcome {
    // The address of record is the To URI: sip(s):<extension>@<anything>.
    let to = match req.to_addr() {
        Ok(t) => t,
        Err(e) => return Outcome::Reply(core.response(req, 400, Some(&e.message))),
    };
    let Uri::Sip(aor) = &to.uri else {
        return Outcome::Reply(core.response(
            req,
            416,
            Some("The address of record must be a SIP URI"),
        ));
    };
    let Some(number) = aor.user_decoded() else {
        return Outcome::Reply(core.response(req, 404, Some("No extension in the To URI")));
    };

    let challenge = |stale| {
        Outcome::Reply(auth::challenge(
            core,
            req,
            flow.remote.ip(),
            stale,
            Challenger::Registrar,
        ))
    };
    match auth::check(
        core,
        req,
        flow.remote.ip(),
        &number,
        Challenger::Registrar,
        known,
    ) {
        Verdict::Authenticated(_) => {}
        Verdict::Challenge { stale } => return challenge(stale),
        Verdict::Lookup => return Outcome::Lookup(number),
        Verdict::Forbidden { why, bad_password } => {
            if bad_password {
                metrics::counter!("switchboard_sip_registrations_total", "result" => "bad_credentials")
                    .increment(1);
            }
            return forbidden(core, req, why);
        }
    }

    apply(core, req, flow, &number, now)
}

/// The binding changes a REGISTER asks for (after authentication).
fn apply(core: &SipCore, req: &Message, flow: &Flow, number: &str, now: Timestamp) -> Outcome {
    let contacts = match req.contacts() {
        Ok(c) => c,
        Err(e) => return Outcome::Reply(core.response(req, 400, Some(&e.message))),
    };
    let (Ok(call_id), Ok(cseq)) = (req.call_id(), req.cseq()) else {
        return Outcome::Reply(core.response(req, 400, Some("Bad Call-ID or CSeq")));
    };
    let header_expires = match req.expires() {
        Ok(e) => e,
        Err(e) => return Outcome::Reply(core.response(req, 400, Some(&e.message))),
    };
    let mut job = PersistJob::default();
    // The first contact bound: (MAC, contact URI) for the inventory.
    let mut seen = None;
    let user_agent = req
        .user_agent()
        .map(|u| u.chars().take(255).collect::<String>());

    let result = match contacts.as_deref() {
        None => Ok(()),
        Some(Contacts::Star) => {
            if header_expires != Some(0) {
                return Outcome::Reply(core.response(
                    req,
                    400,
                    Some("Contact: * needs Expires: 0"),
                ));
            }
            core.location.update(number, |bindings| {
                for b in bindings.drain(..) {
                    job.deletes.push((number.to_owned(), b.key.clone()));
                    job.events.push((
                        EventType::ExtensionUnregistered,
                        event_data(number, &b, Some("user")),
                    ));
                }
            });
            Ok(())
        }
        Some(Contacts::List(list)) => {
            // Check every contact before changing anything: one bad expiry refuses all.
            let mut wanted = Vec::with_capacity(list.len());
            for c in list {
                let asked = c
                    .params
                    .get("expires")
                    .and_then(|e| e.parse::<u32>().ok())
                    .or(header_expires)
                    .unwrap_or(DEFAULT_EXPIRES);
                if asked != 0 && asked < core.min_expires {
                    let mut resp = core.response(req, 423, None);
                    resp.push(HeaderName::MinExpires, core.min_expires.to_string());
                    return Outcome::Reply(resp);
                }
                wanted.push((c, asked.min(core.max_expires)));
            }
            core.location.update(number, |bindings| {
                for (c, expires) in wanted {
                    change_binding(
                        bindings,
                        &mut job,
                        c,
                        expires,
                        number,
                        flow,
                        call_id,
                        cseq.seq,
                        &user_agent,
                        now,
                        &mut seen,
                    )?;
                }
                Ok(())
            })
        }
    };
    if let Err(why) = result {
        return Outcome::Reply(core.response(req, 500, Some(why)));
    }
    for row in &mut job.upserts {
        row.node.clone_from(&core.node);
    }

    // The inventory: one sighting per REGISTER that binds something. It is a record of
    // what was seen, not state the phone relies on: it never delays the answer.
    if let Some((mac_address, contact_uri)) = seen {
        let ip = flow.remote.ip();
        let device = mac_address.as_deref().map_or(Device::Ip(ip), Device::Mac);
        if core
            .inventory
            .due(number, device, ip, &contact_uri, user_agent.as_deref(), now)
        {
            let record = PersistJob {
                sightings: vec![Sighting {
                    extension: number.to_owned(),
                    mac_address,
                    ip_address: ip.to_string(),
                    user_agent: user_agent.clone(),
                    contact_uri: Some(contact_uri),
                    at: now,
                }],
                ..PersistJob::default()
            };
            if core.persist.try_send(record).is_err() {
                tracing::debug!("inventory update skipped: the writer is behind");
            }
        }
    }

    let mut resp = core.response(req, 200, None);
    core.location.read(number, |bindings| {
        for b in bindings.iter().filter(|b| b.expires_at > now) {
            let remaining = (b.expires_at.millis() - now.millis()).max(0) / 1000;
            // By hand: this is every 200 OK, and `format!` costs several times more.
            let mut value = String::with_capacity(b.contact_uri.len() + 22);
            value.push('<');
            value.push_str(&b.contact_uri);
            value.push_str(">;expires=");
            value.push_str(itoa::Buffer::new().format(remaining));
            resp.push(HeaderName::Contact, value);
        }
    });
    resp.push(HeaderName::Date, core.date());
    core.metrics.registrations_ok.increment(1);
    if job.upserts.is_empty() && job.deletes.is_empty() && job.events.is_empty() {
        return Outcome::Reply(resp);
    }
    Outcome::Persist(Box::new(job), resp)
}

/// Adds, refreshes or removes the binding for one contact (RFC 3261 §10.3 step 7).
#[allow(clippy::too_many_arguments)]
fn change_binding(
    bindings: &mut Vec<Binding>,
    job: &mut PersistJob,
    contact: &NameAddr,
    expires: u32,
    number: &str,
    flow: &Flow,
    call_id: &str,
    cseq: u32,
    user_agent: &Option<String>,
    now: Timestamp,
    seen: &mut Option<(Option<String>, String)>,
) -> Result<(), &'static str> {
    let instance = contact.params.get("+sip.instance").map(str::to_owned);
    let reg_id = contact
        .params
        .get("reg-id")
        .and_then(|r| r.parse::<u32>().ok());
    // Sized once: a contact URI is rarely longer, and growing it cost more than writing it.
    let mut contact_uri = String::with_capacity(64);
    let _ = write!(contact_uri, "{}", contact.uri);
    // RFC 5626: the same instance (and reg-id) is the same binding, whatever its URI;
    // without an instance the key is the contact URI (None here: not copied).
    let key = match (&instance, reg_id) {
        (Some(i), Some(r)) => Some(format!("{i};reg-id={r}")),
        (Some(i), None) => Some(i.clone()),
        (None, _) => None,
    };
    let key_text = key.as_deref().unwrap_or(&contact_uri);
    let existing = bindings.iter().position(|b| b.key == key_text);
    if let Some(i) = existing {
        let b = &bindings[i];
        if b.call_id == call_id && cseq < b.cseq {
            return Err("Out of order REGISTER");
        }
    }
    if expires == 0 {
        if let Some(i) = existing {
            let b = bindings.remove(i);
            job.deletes.push((number.to_owned(), b.key.clone()));
            job.events.push((
                EventType::ExtensionUnregistered,
                event_data(number, &b, Some("user")),
            ));
        }
        return Ok(());
    }
    let uri_mac = contact
        .uri
        .as_sip()
        .and_then(|u| u.param_value("mac"))
        .map(str::to_owned);
    let mac = mac::find(
        uri_mac.as_deref().or(contact.params.get("mac")),
        instance.as_deref(),
        user_agent.as_deref(),
    );
    let wanted = Wanted {
        contact_uri,
        instance_id: instance,
        reg_id,
        q: contact
            .params
            .get("q")
            .and_then(|q| switchboard_sip::header::name_addr::parse_qvalue(q).ok()),
        flow,
        user_agent,
        mac,
        expires_at: now.plus_secs(u64::from(expires)),
    };
    if let Some(i) = existing
        && refresh_only(&bindings[i], &wanted, expires)
    {
        // Kept in memory only: see `refresh_only`. Nothing is rebuilt or copied but
        // the Call-ID, into the buffer it already has.
        let b = &mut bindings[i];
        b.expires_at = wanted.expires_at;
        b.call_id.clear();
        b.call_id.push_str(call_id);
        b.cseq = cseq;
        *seen = Some((wanted.mac, wanted.contact_uri));
        return Ok(());
    }
    let binding = Binding {
        key: key.unwrap_or_else(|| wanted.contact_uri.clone()),
        contact_uri: wanted.contact_uri,
        instance_id: wanted.instance_id,
        reg_id,
        q: wanted.q,
        expires_at: wanted.expires_at,
        call_id: call_id.to_owned(),
        cseq,
        flow: flow.clone(),
        user_agent: user_agent.clone(),
        mac: wanted.mac,
        registered_at: existing.map_or(now, |i| bindings[i].registered_at),
        stored_expires_at: wanted.expires_at,
    };
    *seen = Some((binding.mac.clone(), binding.contact_uri.clone()));
    job.upserts.push(binding.to_row(number, "", now));
    match existing {
        Some(i) => bindings[i] = binding,
        None => {
            tracing::info!(extension = %number, contact = %binding.contact_uri, source = %flow.remote, "registered");
            job.events.push((
                EventType::ExtensionRegistered,
                event_data(number, &binding, None),
            ));
            bindings.push(binding);
        }
    }
    Ok(())
}

/// What a REGISTER asks of one binding, before it becomes a [`Binding`]: a refresh
/// (the common case) only compares it with the binding it has.
struct Wanted<'a> {
    contact_uri: String,
    instance_id: Option<String>,
    reg_id: Option<u32>,
    q: Option<u16>,
    flow: &'a Flow,
    user_agent: &'a Option<String>,
    mac: Option<String>,
    expires_at: Timestamp,
}

/// Whether `new` only moves the expiry of `old`, and by less than a quarter of the
/// interval past what the database holds. Such a refresh is acknowledged without a
/// write: a phone refreshing that often (more than four times per interval) refreshes
/// again long before the stored expiry, which is at least three quarters of an
/// interval away, so a restart in between loses nothing it can notice. Phones that
/// refresh at half the interval, as most do, are written every time. Call-ID and
/// CSeq only order the REGISTERs of a running phone, so they need not be stored.
fn refresh_only(old: &Binding, new: &Wanted<'_>, expires: u32) -> bool {
    old.contact_uri == new.contact_uri
        && old.instance_id == new.instance_id
        && old.reg_id == new.reg_id
        && old.q == new.q
        && old.flow == *new.flow
        && old.user_agent == *new.user_agent
        && old.mac == new.mac
        && new.expires_at >= old.stored_expires_at
        && new.expires_at.millis() - old.stored_expires_at.millis() < i64::from(expires) * 250
}

/// When each device was last written to the inventory, and a fingerprint of what
/// was written, so that an unchanged device costs no allocation and no write.
#[derive(Default)]
pub struct InventoryMemo {
    /// Hash of (extension, MAC or IP) → (hash of IP, contact, agent; when written).
    seen: DashMap<u64, (u64, Timestamp), RandomState>,
    key: RandomState,
}

/// The inventory's `last_registered` is kept accurate to this (ms); unchanged devices
/// are not rewritten more often.
const INVENTORY_REFRESH_MS: i64 = 5_000;

/// How the inventory tells a device apart (spec 02): its MAC when known, else its IP.
#[derive(Hash)]
pub enum Device<'a> {
    Mac(&'a str),
    Ip(IpAddr),
}

impl InventoryMemo {
    /// Whether a sighting of `device` must be written: new device, its address,
    /// contact or agent changed, or the last write is stale. Nothing is allocated
    /// when it need not be. (A hash collision between two devices only delays a
    /// refresh of `last_registered`.)
    pub fn due(
        &self,
        extension: &str,
        device: Device<'_>,
        ip: IpAddr,
        contact_uri: &str,
        user_agent: Option<&str>,
        at: Timestamp,
    ) -> bool {
        let key = self.key.hash_one((extension, &device));
        let what = self.key.hash_one((ip, contact_uri, user_agent));
        let mut entry = self.seen.entry(key).or_insert((0, Timestamp(i64::MIN)));
        let (prev, written) = *entry;
        let due =
            prev != what || at.millis().saturating_sub(written.millis()) >= INVENTORY_REFRESH_MS;
        if due {
            *entry = (what, at);
        }
        due
    }
}
