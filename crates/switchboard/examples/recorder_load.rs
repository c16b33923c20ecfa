//! What recording calls costs on SQLite, without SIP: the call engine's reports
//! (`call.started`, `call.answered`, the CDR with `call.ended`) fed to the real
//! recorder at a steady rate, the process's CPU time per call measured. A quick,
//! quiet check of a change to the CDR and event tables, their indexes or the
//! recorder, which the call-storm benchmark would show only through its noise.
//!
//! `cargo run --release -p switchboard --example recorder_load [rate] [calls] [preload] [extensions]`
//!
//! `preload` calls are recorded first and not measured (a busy PBX's tables are not
//! empty); callers and callees are drawn from `extensions` numbers, as in call-storm.
//! `RECORDER_LOAD_SQL` is run after the migrations, to try a schema change (an index
//! dropped, say) before writing its migration.

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use switchboard::features::calls::{ActiveCall, CallEvent, CallRecord, Disposition, run_recorder};
use switchboard::store::Db;
use switchboard::time::Timestamp;
use tokio::sync::mpsc;

// The server's allocator, so that the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(u.user_time()) + t(u.system_time())
}

/// The three reports of call `n`.
fn reports(n: u64, extensions: u64) -> [CallEvent; 3] {
    let caller = (200_000 + n % extensions).to_string();
    let callee = (200_000 + (n + extensions / 2) % extensions).to_string();
    let now = Timestamp::now();
    let call = ActiveCall {
        id: uuid::Uuid::now_v7(),
        caller: caller.clone(),
        caller_name: format!("Extension {caller}"),
        callee: callee.clone(),
        ringing: Some(callee.clone()),
        state: "ringing",
        started_at: now,
        answered_at: None,
        media_ports: None,
    };
    let answered = ActiveCall {
        state: "answered",
        answered_at: Some(now),
        ..call.clone()
    };
    let record = CallRecord {
        id: call.id,
        caller,
        caller_name: call.caller_name.clone(),
        callee: callee.clone(),
        answered_by: Some(callee),
        started_at: now,
        answered_at: Some(now),
        ended_at: now,
        duration: 1,
        disposition: Disposition::Answered,
        hangup_cause: "caller hung up".into(),
        codec: Some("PCMU".into()),
    };
    [
        CallEvent::Started(call),
        CallEvent::Answered(answered),
        CallEvent::Ended(record),
    ]
}

/// Sends `calls` calls' reports at `rate` calls/s from call number `first`.
async fn feed(
    tx: &mpsc::UnboundedSender<CallEvent>,
    first: u64,
    calls: u64,
    rate: u64,
    extensions: u64,
) {
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut next = Instant::now();
    let mut n = first;
    while n < first + calls {
        for _ in 0..per_tick.min(first + calls - n) {
            for report in reports(n, extensions) {
                tx.send(report).expect("the recorder runs");
            }
            n += 1;
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rate, calls, preload, extensions) =
        (arg(1, 2000), arg(2, 40_000), arg(3, 0), arg(4, 4000));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("recorder.db").display());
    let db = Db::connect(&url, 4).await.expect("SQLite");
    db.migrate().await.expect("migrations");
    if let Ok(sql) = std::env::var("RECORDER_LOAD_SQL") {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(db.pool())
            .await
            .expect("RECORDER_LOAD_SQL");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(run_recorder(db.clone(), rx));
    if preload > 0 {
        feed(&tx, 0, preload, rate.max(20_000), extensions).await;
        // Until the preload is written: a marker call, then the CDR count.
        while cdr_count(&db).await < preload {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (cpu0, wall0) = (cpu(), Instant::now());
    feed(&tx, preload, calls, rate, extensions).await;
    drop(tx);
    recorder.await.expect("the recorder ends");
    let (used, wall) = (cpu() - cpu0, wall0.elapsed());
    assert_eq!(cdr_count(&db).await, preload + calls, "every CDR written");
    println!(
        "{calls} calls at {rate}/s after {preload} ({extensions} extensions): {:.1} us CPU per call, {:.2} cores over {:.1} s",
        used.as_secs_f64() * 1e6 / calls as f64,
        used.as_secs_f64() / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
}

async fn cdr_count(db: &Db) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cdr")
        .fetch_one(db.pool())
        .await
        .expect("count");
    n as u64
}
