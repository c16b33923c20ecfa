//! Who is hot-desked where (spec 05), as the call engine asks on every call: a
//! snapshot of the sessions in memory, read without a database query or a lock held
//! across calls. It is reloaded whole (a table of one row per occupied desk) at once
//! when this process changes a session or an extension, and within
//! [`REFRESH_EVERY`] when the outbox shows a `hot_desk.*` event from elsewhere (another
//! node, the CLI).
//!
//! A device is matched to phones as the API names it: a MAC key (12 hex digits) is the
//! phone whose registration carries that MAC; any other id is the phone registered as
//! that account (a phone without a MAC logging in with `*55`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::SipCore;
use super::location::Binding;
use crate::features::events::Change;
use crate::store::{self, Db};
use crate::time::Timestamp;

/// How often the outbox is read for sessions changed elsewhere.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// The extension logged in at a device, as calls from it present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    pub extension: String,
    /// Its display name (From, P-Asserted-Identity).
    pub name: String,
}

#[derive(Debug, Default)]
struct Snapshot {
    by_device: HashMap<String, Occupant>,
    by_extension: HashMap<String, Vec<String>>,
}

/// A phone calling, as hot-desking names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The key sessions are matched by (a normalised MAC, or the account number).
    pub key: String,
    /// How it is written to the API and events: `00:15:65:12:34:56`, or the account.
    pub label: String,
}

#[derive(Default)]
pub struct HotDesks {
    snapshot: RwLock<Arc<Snapshot>>,
    /// The outbox position last looked at.
    last_seq: AtomicI64,
}

impl HotDesks {
    pub async fn load(db: &Db) -> store::Result<Self> {
        let desks = Self::default();
        desks
            .last_seq
            .store(store::events::max_seq(db.pool()).await?, Ordering::Relaxed);
        desks.reload(db).await?;
        Ok(desks)
    }

    async fn reload(&self, db: &Db) -> store::Result<()> {
        let mut snapshot = Snapshot::default();
        for (device, extension, name) in store::hot_desk::occupants(db.pool()).await? {
            snapshot
                .by_extension
                .entry(extension.clone())
                .or_default()
                .push(device.clone());
            snapshot
                .by_device
                .insert(device, Occupant { extension, name });
        }
        *self.snapshot.write() = Arc::new(snapshot);
        Ok(())
    }

    /// Who is logged in at device `key`.
    pub fn occupant(&self, key: &str) -> Option<Occupant> {
        self.snapshot.read().by_device.get(key).cloned()
    }

    /// The devices `extension` is logged in at.
    pub fn devices_of(&self, extension: &str) -> Vec<String> {
        let snapshot = self.snapshot.read();
        if snapshot.by_extension.is_empty() {
            return Vec::new();
        }
        snapshot
            .by_extension
            .get(extension)
            .cloned()
            .unwrap_or_default()
    }

    /// Reloads when the outbox has `hot_desk.*` events past the last look.
    async fn follow_events(&self, db: &Db) -> store::Result<()> {
        let upto = store::events::max_seq(db.pool()).await?;
        let after = self.last_seq.load(Ordering::Relaxed);
        if upto <= after {
            return Ok(());
        }
        let changed =
            store::events::of_type_between(db.pool(), "hot_desk.", after, upto, 1).await?;
        self.last_seq.store(upto, Ordering::Relaxed);
        if !changed.is_empty() {
            self.reload(db).await?;
        }
        Ok(())
    }
}

/// The device account `account` calls from at `source`: the MAC of its binding
/// registered from that address when it has one, else the account itself.
pub fn device_of(core: &SipCore, account: &str, source: SocketAddr) -> Device {
    let mac = core.location.read(account, |bindings| {
        bindings
            .iter()
            .find(|b| b.flow.remote == source && b.mac.is_some())
            .or_else(|| {
                // A phone behind NAT may register and call from different ports.
                bindings
                    .iter()
                    .find(|b| b.flow.remote.ip() == source.ip() && b.mac.is_some())
            })
            .and_then(|b| b.mac.clone())
    });
    match mac {
        Some(key) => Device {
            label: colon_form(&key),
            key,
        },
        None => Device {
            key: account.to_owned(),
            label: account.to_owned(),
        },
    }
}

/// The live bindings of the phone named by device `key` (see the module notes).
pub fn bindings_of_device(core: &SipCore, key: &str, now: Timestamp) -> Vec<Binding> {
    let is_mac = key.len() == 12 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if is_mac {
        core.location.with_mac(key, now)
    } else {
        core.location.lookup(key, now)
    }
}

/// `001565123456` as `00:15:65:12:34:56`.
fn colon_form(mac: &str) -> String {
    mac.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Keeps the snapshot current (see the module notes).
pub async fn run_refresh(core: Arc<SipCore>, mut stop: watch::Receiver<bool>) {
    let mut local = core.app.changes.subscribe();
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            change = local.recv() => match change {
                // A new name shows on the next call from the desk.
                Ok(Change::HotDesk | Change::Extension(_)) => core.hot_desks.reload(&core.app.db).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => core.hot_desks.reload(&core.app.db).await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => core.hot_desks.follow_events(&core.app.db).await,
            _ = stop.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "hot-desk sessions not reloaded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_written_with_colons() {
        assert_eq!(colon_form("001565123456"), "00:15:65:12:34:56");
    }
}
