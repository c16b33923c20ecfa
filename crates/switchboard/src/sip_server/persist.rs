//! The registrar's batch writer: registrations are committed to the database, with
//! their events and inventory updates, before the 200 OK that acknowledges them is
//! sent. Jobs queued while a commit runs share the next commit (group commit), so the
//! database sees a few transactions per second under load, not one per REGISTER.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sip::Message;
use tokio::sync::{mpsc, watch};

use super::SipCore;
use super::transport::{Flow, Outbox};
use crate::features::events::{EventType, emit};
use crate::store::registered_phones::{self, Sighting};
use crate::store::registrations::{self, BindingRow};
use crate::time::Timestamp;

/// Jobs waiting for a commit; beyond that a REGISTER is answered 503.
pub const QUEUE: usize = 65_536;
/// Jobs per transaction at most.
const BATCH: usize = 4096;
/// Under load, commits start at most this often, so each carries many jobs (one
/// fsync and a few statements for hundreds of REGISTERs); an idle registrar
/// commits at once. The price is at most this much added latency.
const COMMIT_INTERVAL: Duration = Duration::from_millis(10);

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
    /// The answer once committed; a 500 made from its headers if the commit fails.
    pub ok: Message,
}

/// Commits queued jobs until `stop`; what is queued then is still committed.
pub async fn run_writer(
    core: Arc<SipCore>,
    mut rx: mpsc::Receiver<PersistJob>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_commit = Instant::now() - COMMIT_INTERVAL;
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
        let due = last_commit + COMMIT_INTERVAL;
        if batch.len() < BATCH && Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        last_commit = Instant::now();
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
    let mut out = Outbox::default();
    for job in batch.drain(..) {
        if let Some(reply) = job.reply {
            if result.is_ok() {
                out.push(&reply.flow, &reply.ok);
            } else {
                let failed = core.response(&reply.ok, 500, Some("Registration could not be saved"));
                out.push(&reply.flow, &failed);
            }
        }
    }
    core.transports.send_all(&mut out, &core.metrics);
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
    let upserts: Vec<&BindingRow> = last
        .values()
        .filter_map(|op| match op {
            Op::Upsert(r) => Some(*r),
            _ => None,
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
    let sightings: Vec<&Sighting> = batch.iter().flat_map(|job| &job.sightings).collect();
    registered_phones::record_many(&mut tx, &sightings).await?;
    for job in batch {
        for (event_type, data) in &job.events {
            emit(&mut tx, *event_type, data).await?;
        }
    }
    tx.commit().await
}
