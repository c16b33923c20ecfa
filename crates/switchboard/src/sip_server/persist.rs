//! The registrar's batch writer: registrations are committed to the database, with
//! their events and inventory updates, before the 200 OK that acknowledges them is
//! sent. Jobs queued while a commit runs share the next commit (group commit), so the
//! database sees a few transactions per second under load, not one per REGISTER.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::SipCore;
use super::transport::Flow;
use crate::features::events::{EventType, emit};
use crate::store::registered_phones::{self, Sighting};
use crate::store::registrations::{self, BindingRow};
use crate::time::Timestamp;

/// Jobs waiting for a commit before REGISTERs are pushed back (the UDP reader waits,
/// and the kernel queue absorbs the burst).
pub const QUEUE: usize = 8192;
/// Jobs per transaction at most.
const BATCH: usize = 1024;

#[derive(Debug, Default)]
pub struct PersistJob {
    pub upserts: Vec<BindingRow>,
    /// Bindings removed by the phone: (extension, binding key).
    pub deletes: Vec<(String, String)>,
    /// Bindings that expired: removed only if still expired at that time.
    pub expired: Vec<(String, String, Timestamp)>,
    pub sightings: Vec<Sighting>,
    pub events: Vec<(EventType, serde_json::Value)>,
    /// Sent once the job is committed; replaced by a 500 if the commit fails.
    pub reply: Option<Reply>,
}

#[derive(Debug)]
pub struct Reply {
    pub flow: Flow,
    pub ok: Bytes,
    pub failed: Bytes,
}

/// Commits queued jobs until `stop`; what is queued then is still committed.
pub async fn run_writer(
    core: Arc<SipCore>,
    mut rx: mpsc::Receiver<PersistJob>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = stop.changed() => {
                while let Ok(job) = rx.try_recv() {
                    batch.push(job);
                }
                if !batch.is_empty() {
                    write_batch(&core, &mut batch).await;
                }
                return;
            }
        };
        if got == 0 {
            return;
        }
        write_batch(&core, &mut batch).await;
    }
}

async fn write_batch(core: &SipCore, batch: &mut Vec<PersistJob>) {
    let started = Instant::now();
    let result = commit(core, batch).await;
    metrics::histogram!("switchboard_sip_registration_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("switchboard_sip_registration_commits_total").increment(1);
    if let Err(e) = &result {
        tracing::error!(error = %e, jobs = batch.len(), "registrations could not be saved; answering 500");
    }
    for job in batch.drain(..) {
        if let Some(reply) = job.reply {
            let data = if result.is_ok() {
                reply.ok
            } else {
                reply.failed
            };
            core.send(&reply.flow, data);
        }
    }
}

/// The last operation on each binding in the batch: the order of jobs is kept, and a
/// binding appears once in the statement (a multi-row upsert may not touch a row twice).
enum Op<'a> {
    Upsert(&'a BindingRow),
    Delete,
    DeleteIfExpired(Timestamp),
}

async fn commit(core: &SipCore, batch: &[PersistJob]) -> Result<(), sqlx::Error> {
    let mut last: HashMap<(&str, &str), Op<'_>> = HashMap::new();
    for job in batch {
        for r in &job.upserts {
            last.insert((&r.extension, &r.binding_key), Op::Upsert(r));
        }
        for (ext, key) in &job.deletes {
            last.insert((ext, key), Op::Delete);
        }
        for (ext, key, at) in &job.expired {
            last.insert((ext, key), Op::DeleteIfExpired(*at));
        }
    }
    let mut tx = core.app.db.begin().await?;
    let upserts: Vec<BindingRow> = last
        .values()
        .filter_map(|op| {
            if let Op::Upsert(r) = op {
                Some((*r).clone())
            } else {
                None
            }
        })
        .collect();
    registrations::upsert_many(&mut tx, &upserts).await?;
    for ((ext, key), op) in &last {
        match op {
            Op::Upsert(_) => {}
            Op::Delete => {
                registrations::delete(&mut tx, ext, key).await?;
            }
            Op::DeleteIfExpired(at) => {
                registrations::delete_if_expired(&mut tx, ext, key, *at).await?;
            }
        }
    }
    for job in batch {
        for s in &job.sightings {
            registered_phones::record(&mut tx, s).await?;
        }
        for (event_type, data) in &job.events {
            emit(&mut tx, *event_type, data).await?;
        }
    }
    tx.commit().await
}
