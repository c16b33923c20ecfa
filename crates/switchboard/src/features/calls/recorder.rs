//! Writes what the call engine reports: `call.started`, `call.answered` and
//! `call.transferred` events, and
//! at the end the CDR with its `call.ended` event in one transaction. Batched, so a
//! call storm costs a commit per batch rather than per call; a failed commit is
//! retried, so nothing reported is lost while the server runs.

use std::time::Duration;

use serde::Serialize;
use serde_json::to_string;
use tokio::sync::mpsc;

use super::{ActiveCall, CallEvent, CallRecord, Disposition};
use crate::features::events::{EventType, emit_many};
use crate::store::cdr::{self, CdrRow};
use crate::store::{self, Db};
use crate::time::Timestamp;

/// Reports written per transaction at most: more than [`GATHER`] collects at
/// 5,000 calls/s (three reports per call), so the batch, not the cap, sets the pace.
const BATCH: usize = 2048;
/// How long reports gather before a commit: nothing waits for a CDR, and on SQLite
/// every commit is an fsync and rewrites the tables' and indexes' last pages into the
/// WAL, so a PBX commits at most this often instead of once per call event (measured:
/// a fifth of the CPU at 400 calls/s went to commits). A tenth of a second is still
/// sooner than anyone opens the call log after hanging up.
const GATHER: Duration = Duration::from_millis(100);

pub async fn run_recorder(db: Db, mut rx: mpsc::UnboundedReceiver<CallEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    // Ends when the engine (the only sender) is gone and everything is written.
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(GATHER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        let mut delay = Duration::from_millis(100);
        while let Err(e) = commit(&db, &batch).await {
            tracing::warn!(error = %e, "call records could not be saved; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

/// The data of `call.started`, `call.answered` and `call.transferred`. Serialized
/// straight from the call rather than through a `serde_json::Value` (a tree of maps
/// and strings per event was a tenth of the recorder's CPU); fields in alphabetical
/// order, as a `Value` map writes them.
#[derive(Serialize)]
struct Progress<'a> {
    answered_at: Option<Timestamp>,
    call_id: uuid::Uuid,
    callee: &'a str,
    caller: &'a str,
    caller_name: &'a str,
    ringing: Option<&'a str>,
    started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    transferred_from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transferred_to: Option<&'a str>,
}

impl<'a> Progress<'a> {
    fn of(call: &'a ActiveCall) -> Self {
        Self {
            answered_at: call.answered_at,
            call_id: call.id,
            callee: &call.callee,
            caller: &call.caller,
            caller_name: &call.caller_name,
            ringing: call.ringing.as_deref(),
            started_at: call.started_at,
            transferred_from: None,
            transferred_to: None,
        }
    }
}

/// The data of `call.ended`: the CDR, its id named `call_id` (alphabetical, as above).
#[derive(Serialize)]
struct Ended<'a> {
    answered_at: Option<Timestamp>,
    answered_by: Option<&'a str>,
    call_id: uuid::Uuid,
    callee: &'a str,
    caller: &'a str,
    caller_name: &'a str,
    codec: Option<&'a str>,
    disposition: Disposition,
    duration: i64,
    ended_at: Timestamp,
    hangup_cause: &'a str,
    started_at: Timestamp,
}

impl<'a> Ended<'a> {
    fn of(r: &'a CallRecord) -> Self {
        Self {
            answered_at: r.answered_at,
            answered_by: r.answered_by.as_deref(),
            call_id: r.id,
            callee: &r.callee,
            caller: &r.caller,
            caller_name: &r.caller_name,
            codec: r.codec.as_deref(),
            disposition: r.disposition,
            duration: r.duration,
            ended_at: r.ended_at,
            hangup_cause: &r.hangup_cause,
            started_at: r.started_at,
        }
    }
}

/// An event's type and JSON data.
fn event(report: &CallEvent) -> Result<(EventType, String), serde_json::Error> {
    Ok(match report {
        CallEvent::Started(call) => (EventType::CallStarted, to_string(&Progress::of(call))?),
        CallEvent::Answered(call) => (EventType::CallAnswered, to_string(&Progress::of(call))?),
        CallEvent::Transferred { call, from, to } => {
            let data = Progress {
                transferred_from: Some(from),
                transferred_to: Some(to),
                ..Progress::of(call)
            };
            (EventType::CallTransferred, to_string(&data)?)
        }
        CallEvent::Ended(record) => (EventType::CallEnded, to_string(&Ended::of(record))?),
    })
}

async fn commit(db: &Db, batch: &[CallEvent]) -> store::Result<()> {
    let mut tx = db.begin().await?;
    let rows: Vec<CdrRow> = batch
        .iter()
        .filter_map(|e| match e {
            CallEvent::Ended(r) => Some(r.to_row()),
            _ => None,
        })
        .collect();
    cdr::insert_many(&mut tx, rows).await?;
    let events = batch
        .iter()
        .map(event)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(e.into()))?;
    emit_many(&mut tx, events).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call() -> ActiveCall {
        ActiveCall {
            id: uuid::Uuid::from_u128(7),
            caller: "2001".into(),
            caller_name: "Ann \"A\"".into(),
            callee: "2002".into(),
            ringing: Some("2003".into()),
            state: "answered",
            started_at: Timestamp(1_700_000_000_000),
            answered_at: None,
            media_ports: None,
        }
    }

    #[test]
    fn event_data_is_the_documented_json_with_sorted_keys() {
        let progress = json!({
            "answered_at": null,
            "call_id": "00000000-0000-0000-0000-000000000007",
            "callee": "2002",
            "caller": "2001",
            "caller_name": "Ann \"A\"",
            "ringing": "2003",
            "started_at": Timestamp(1_700_000_000_000).to_rfc3339(),
        });
        let (kind, data) = event(&CallEvent::Started(call())).unwrap();
        assert_eq!(kind, EventType::CallStarted);
        // A `Value` map writes its keys sorted: the same bytes as before.
        assert_eq!(data, progress.to_string());

        let (kind, data) = event(&CallEvent::Transferred {
            call: call(),
            from: "2002".into(),
            to: "2004".into(),
        })
        .unwrap();
        assert_eq!(kind, EventType::CallTransferred);
        let mut transferred = progress.clone();
        transferred["transferred_from"] = json!("2002");
        transferred["transferred_to"] = json!("2004");
        assert_eq!(data, transferred.to_string());

        let record = CallRecord {
            id: uuid::Uuid::from_u128(7),
            caller: "2001".into(),
            caller_name: "Ann".into(),
            callee: "2002".into(),
            answered_by: Some("2003".into()),
            started_at: Timestamp(1_700_000_000_000),
            answered_at: Some(Timestamp(1_700_000_002_000)),
            ended_at: Timestamp(1_700_000_062_000),
            duration: 60,
            disposition: Disposition::Answered,
            hangup_cause: "caller hung up".into(),
            codec: None,
        };
        let mut ended = serde_json::to_value(&record).unwrap();
        let id = ended.as_object_mut().unwrap().remove("id").unwrap();
        ended["call_id"] = id;
        let (kind, data) = event(&CallEvent::Ended(record)).unwrap();
        assert_eq!(kind, EventType::CallEnded);
        assert_eq!(data, ended.to_string(), "the CDR with `call_id` for `id`");
    }
}
