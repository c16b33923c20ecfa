//! What the SIP side needs of each extension (active, HA1s, and for calls its name,
//! forwarding and voicemail), cached in memory so a REGISTER or INVITE costs no
//! database read. Loaded at start; kept current by following the
//! event outbox (changes made by the API, the CLI or another node all pass through
//! it); a miss is looked up once and remembered, absent numbers included.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use switchboard_sip::digest::Algorithm;
use tokio::sync::watch;

use super::SipCore;
use crate::features::events::Change;
use crate::features::extensions::model::{CallForwarding, Extension};
use crate::store::{self, Db};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipCredential {
    pub active: bool,
    /// The realm the HA1s were computed for.
    pub realm: Option<String>,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
    /// The display name callers see.
    pub name: String,
    pub forwarding: Option<CallForwarding>,
    pub voicemail_enabled: bool,
}

impl SipCredential {
    pub fn ha1(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Md5 => self.ha1_md5.as_deref(),
            Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        }
    }
}

/// Absent numbers remembered at most this many, so scans of random numbers cannot
/// grow the cache without bound.
const MAX_NEGATIVE: usize = 50_000;

pub struct CredentialCache {
    db: Db,
    /// `None` = known not to exist.
    entries: DashMap<String, Option<Arc<SipCredential>>, RandomState>,
    negatives: std::sync::atomic::AtomicUsize,
    /// The last outbox event seen.
    last_seq: std::sync::atomic::AtomicI64,
}

fn credential(row: &store::extensions::ExtensionRow) -> SipCredential {
    SipCredential {
        active: row.active,
        realm: row.sip_realm.clone(),
        ha1_md5: row.sip_ha1_md5.clone(),
        ha1_sha256: row.sip_ha1_sha256.clone(),
        name: row.name.clone(),
        forwarding: Extension::from(row).call_forwarding,
        voicemail_enabled: row.voicemail_enabled,
    }
}

impl CredentialCache {
    pub async fn load(db: Db) -> store::Result<Self> {
        let last_seq = store::events::max_seq(db.pool()).await?;
        let rows = store::extensions::list(db.pool(), &Default::default(), i64::MAX, 0).await?;
        let entries = DashMap::with_capacity_and_hasher(rows.len(), RandomState::default());
        for row in &rows {
            entries.insert(row.number.clone(), Some(Arc::new(credential(row))));
        }
        Ok(Self {
            db,
            entries,
            negatives: 0.into(),
            last_seq: last_seq.into(),
        })
    }

    /// What the cache knows: `Some(None)` for a number known not to exist, `None`
    /// when the database must be asked ([`Self::get`]).
    pub fn cached(&self, number: &str) -> Option<Option<Arc<SipCredential>>> {
        self.entries.get(number).map(|e| e.clone())
    }

    /// The extension's credentials, `None` when it does not exist.
    pub async fn get(&self, number: &str) -> Option<Arc<SipCredential>> {
        if let Some(e) = self.entries.get(number) {
            return e.clone();
        }
        let found = match store::extensions::get(self.db.pool(), number).await {
            Ok(row) => row.map(|r| Arc::new(credential(&r))),
            Err(e) => {
                tracing::warn!(error = %e, "credential lookup failed");
                return None;
            }
        };
        if found.is_none() {
            let n = self
                .negatives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n >= MAX_NEGATIVE {
                self.entries.retain(|_, v| v.is_some());
                self.negatives
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.entries.insert(number.to_owned(), found.clone());
        found
    }

    /// Forgets `number` so the next use reads the database.
    pub fn invalidate(&self, number: &str) {
        if let Some((_, None)) = self.entries.remove(number) {
            self.negatives
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Invalidates the extensions named by outbox events since the last call.
    pub async fn follow_events(&self) -> store::Result<usize> {
        const PAGE: i64 = 1000;
        let mut changed = 0;
        let upto = store::events::max_seq(self.db.pool()).await?;
        loop {
            let after = self.last_seq.load(std::sync::atomic::Ordering::Relaxed);
            if after >= upto {
                return Ok(changed);
            }
            let events =
                store::events::of_type_between(self.db.pool(), "extension.", after, upto, PAGE)
                    .await?;
            let seen = match events.last() {
                Some(last) if events.len() as i64 == PAGE => last.seq,
                _ => upto,
            };
            self.last_seq
                .store(seen, std::sync::atomic::Ordering::Relaxed);
            for e in &events {
                if e.event_type.ends_with("registered") {
                    continue;
                }
                let number = e.data["extension"]["number"]
                    .as_str()
                    .or_else(|| e.data["number"].as_str());
                if let Some(n) = number {
                    self.invalidate(n);
                    changed += 1;
                }
            }
        }
    }
}

/// How often the outbox is read for credential changes.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// Keeps the cache current: at once for changes made in this process, within
/// [`REFRESH_EVERY`] for changes made elsewhere (CLI, other nodes).
pub async fn run_refresh(core: Arc<SipCore>, mut stop: watch::Receiver<bool>) {
    let mut local = core.app.changes.subscribe();
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = local.recv() => match change {
                Ok(Change::Extension(n)) => core.credentials.invalidate(&n),
                Ok(Change::HotDesk) => {}
                // Missed notices: the outbox catches up on the next tick.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if let Err(e) = core.credentials.follow_events().await {
                    tracing::warn!(error = %e, "following extension changes failed");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
