//! The location service: each extension's current bindings, in memory for lookups
//! (sharded, no global lock), persisted through the batch writer, rebuilt from the
//! database at start, and swept when they expire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use serde_json::json;
use tokio::sync::watch;

use super::SipCore;
use super::persist::PersistJob;
use super::transport::Flow;
use crate::config::SipTransport;
use crate::features::events::EventType;
use crate::store::registrations::{self as store, BindingRow};
use crate::store::{self as db_store, Db};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Identity within the extension: instance (+reg-id) or contact URI.
    pub key: String,
    pub contact_uri: String,
    pub instance_id: Option<String>,
    pub reg_id: Option<u32>,
    pub q: Option<u16>,
    pub expires_at: Timestamp,
    pub call_id: String,
    pub cseq: u32,
    /// How to reach the phone: the flow it registered over. After a restart only the
    /// address is known (connections are gone), so `conn` is then `None`.
    pub flow: Flow,
    pub user_agent: Option<String>,
    pub mac: Option<String>,
    pub registered_at: Timestamp,
    /// The expiry the database holds (a frequent refresh may be ahead of it).
    pub stored_expires_at: Timestamp,
}

impl Binding {
    pub fn to_row(&self, extension: &str, node: &str, now: Timestamp) -> BindingRow {
        BindingRow {
            extension: extension.to_owned(),
            binding_key: self.key.clone(),
            contact_uri: self.contact_uri.clone(),
            instance_id: self.instance_id.clone(),
            reg_id: self.reg_id.map(i64::from),
            q: self.q.map(i64::from),
            expires_at: self.expires_at,
            call_id: self.call_id.clone(),
            cseq: i64::from(self.cseq),
            transport: self.flow.transport.as_str().to_owned(),
            source_ip: self.flow.remote.ip().to_string(),
            source_port: i64::from(self.flow.remote.port()),
            user_agent: self.user_agent.clone(),
            mac_address: self.mac.clone(),
            node: node.to_owned(),
            registered_at: self.registered_at,
            updated_at: now,
        }
    }

    fn from_row(r: &BindingRow) -> Option<Self> {
        let transport = match r.transport.as_str() {
            "udp" => SipTransport::Udp,
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            "ws" => SipTransport::Ws,
            "wss" => SipTransport::Wss,
            _ => return None,
        };
        let ip = r.source_ip.parse().ok()?;
        let remote = SocketAddr::new(ip, u16::try_from(r.source_port).ok()?);
        Some(Self {
            key: r.binding_key.clone(),
            contact_uri: r.contact_uri.clone(),
            instance_id: r.instance_id.clone(),
            reg_id: r.reg_id.and_then(|v| u32::try_from(v).ok()),
            q: r.q.and_then(|v| u16::try_from(v).ok()),
            expires_at: r.expires_at,
            call_id: r.call_id.clone(),
            cseq: u32::try_from(r.cseq).unwrap_or(0),
            // The listener is not known after a restart; the transport picks its own.
            flow: Flow {
                transport,
                local: SocketAddr::from(([0, 0, 0, 0], 0)),
                remote,
                conn: None,
            },
            user_agent: r.user_agent.clone(),
            mac: r.mac_address.clone(),
            registered_at: r.registered_at,
            stored_expires_at: r.expires_at,
        })
    }
}

pub struct Location {
    /// foldhash, seeded per process, like every map of the hot path: SipHash's
    /// stronger flood resistance costs a few per cent of a registration.
    bindings: DashMap<String, Vec<Binding>, RandomState>,
}

impl Location {
    /// Loads the live bindings of the database.
    pub async fn load(db: &Db) -> db_store::Result<Self> {
        let rows = store::live(db.pool(), Timestamp::now()).await?;
        let bindings: DashMap<String, Vec<Binding>, RandomState> = DashMap::default();
        for r in &rows {
            if let Some(b) = Binding::from_row(r) {
                bindings.entry(r.extension.clone()).or_default().push(b);
            }
        }
        if !rows.is_empty() {
            tracing::info!(bindings = rows.len(), "registrations restored");
        }
        Ok(Self { bindings })
    }

    /// The live bindings of `extension`.
    pub fn lookup(&self, extension: &str, now: Timestamp) -> Vec<Binding> {
        self.bindings
            .get(extension)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// The live bindings, of any extension, whose phone has MAC `mac` (normalised): a
    /// hot-desk device. A scan of every binding, made only for calls to an extension
    /// logged in at a device.
    pub fn with_mac(&self, mac: &str, now: Timestamp) -> Vec<Binding> {
        let mut found = Vec::new();
        for entry in self.bindings.iter() {
            found.extend(
                entry
                    .value()
                    .iter()
                    .filter(|b| b.expires_at > now && b.mac.as_deref() == Some(mac))
                    .cloned(),
            );
        }
        found
    }

    /// Runs `f` on the extension's bindings (all of them, expired included) without
    /// copying them.
    pub fn read<R>(&self, extension: &str, f: impl FnOnce(&[Binding]) -> R) -> R {
        match self.bindings.get(extension) {
            Some(entry) => f(entry.value()),
            None => f(&[]),
        }
    }

    /// Runs `f` on the extension's bindings under that extension's lock only.
    pub fn update<R>(&self, extension: &str, f: impl FnOnce(&mut Vec<Binding>) -> R) -> R {
        let mut entry = self.bindings.entry(extension.to_owned()).or_default();
        let out = f(entry.value_mut());
        if entry.is_empty() {
            drop(entry);
            self.bindings.remove_if(extension, |_, v| v.is_empty());
        }
        out
    }

    /// Bindings currently held, all extensions.
    pub fn count(&self) -> usize {
        self.bindings.iter().map(|e| e.len()).sum()
    }

    /// Removes expired bindings from memory and returns them with their extension.
    fn take_expired(&self, now: Timestamp) -> Vec<(String, Binding)> {
        self.take_where(|b| b.expires_at <= now)
    }

    /// Removes the bindings `gone` picks from memory and returns them with their
    /// extension.
    pub fn take_where(&self, gone: impl Fn(&Binding) -> bool) -> Vec<(String, Binding)> {
        let mut out = Vec::new();
        for mut entry in self.bindings.iter_mut() {
            // The extension is copied only for a binding taken: the expiry sweep visits
            // every registered extension every few seconds.
            let (ext, bindings) = entry.pair_mut();
            bindings.retain(|b| {
                if gone(b) {
                    out.push((ext.clone(), b.clone()));
                    false
                } else {
                    true
                }
            });
        }
        self.bindings.retain(|_, v| !v.is_empty());
        out
    }
}

/// The data of `extension.registered` / `extension.unregistered`.
pub fn event_data(extension: &str, b: &Binding, reason: Option<&str>) -> serde_json::Value {
    let mut data = json!({
        "extension": extension,
        "contact": b.contact_uri,
        "transport": b.flow.transport.as_str(),
        "source": b.flow.remote.to_string(),
        "user_agent": b.user_agent,
        "mac_address": b.mac,
        "expires_at": b.expires_at,
    });
    if let Some(r) = reason {
        data["reason"] = json!(r);
    }
    data
}

const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Removes expired bindings every few seconds, from memory and the database, with an
/// `extension.unregistered` event each.
pub async fn run_expiry(core: Arc<SipCore>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Timestamp::now();
        let expired = core.location.take_expired(now);
        metrics::gauge!("switchboard_sip_registrations").set(core.location.count() as f64);
        if expired.is_empty() {
            continue;
        }
        let mut job = PersistJob::default();
        for (ext, b) in &expired {
            tracing::info!(extension = %ext, contact = %b.contact_uri, "registration expired");
            job.expired.push((ext.clone(), b.key.clone(), now));
            job.events.push((
                EventType::ExtensionUnregistered,
                event_data(ext, b, Some("expired")),
            ));
        }
        if core.persist.send(job).await.is_err() {
            return;
        }
    }
}
