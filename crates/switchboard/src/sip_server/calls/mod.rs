//! The call engine (B2BUA, spec 01 "Calls"): caller and callee legs are separate
//! dialogs bridged by the PBX. `engine` holds the state machine, `call` a call's data
//! and the messages it builds, `routing` the dial plan over the caches. This module
//! runs the engine for the threads that receive messages, drives its timers and gives
//! the rest of the server its handle.

mod browser;
mod call;
mod engine;
mod media;
pub mod routing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use switchboard_sip::Message;
use switchboard_sip::transaction::TransactionKey;
use tokio::sync::{mpsc, watch};

pub use self::call::{contact, via};
pub use self::engine::Engine;
use super::SipCore;
use super::transport::Flow;
use crate::features::calls::{ActiveCalls, CallEvent};

/// The methods the PBX takes within calls, as it advertises them.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, MESSAGE";

/// The longest the timer thread sleeps, so that the gauges stay current when idle.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
/// How late the timer thread may fire a timer, so that one wake-up serves the many
/// deadlines of a busy engine (the readers fire due timers as they pass, too); SIP's
/// shortest timer is T1 (500 ms). At 5 ms the thread woke 200 times a second under
/// load and ran much of what the readers queued, on another core than the one that
/// parsed it (A/B at 2,000 calls/s: 369 → 345 µs per call at 25 ms).
const TIMER_SLACK: Duration = Duration::from_millis(25);

/// How soon the timer thread comes back for messages queued while it held the
/// engine (see `CallsHandle::timer_turn`).
const QUEUE_RECHECK: Duration = Duration::from_millis(1);

/// What a lookup off the engine resumes once the cache has its answer.
#[derive(Debug)]
pub enum Command {
    /// An extension the transaction `key` waited for is now in the cache.
    Resume(TransactionKey),
    /// The extension a transfer of call `call` waited for is now in the cache.
    ResumeTransfer {
        call: u64,
        by_caller: bool,
        number: String,
    },
    /// The application answering call `call` hands it on to `number` (the auto
    /// attendant connecting a caller): `outcome` gets 200 once `number` answered (the
    /// application is then out of the call), else the final code of the attempt.
    AppTransfer {
        call: u64,
        number: String,
        outcome: tokio::sync::oneshot::Sender<u16>,
    },
    /// The call application `call` answers now counts as `disposition` in its CDR (the
    /// auto attendant taking a message).
    AppCountsAs {
        call: u64,
        disposition: crate::features::calls::Disposition,
    },
    /// The application answering call `.0` has finished: the caller is hung up.
    AppDone(u64),
    /// The browser that answered call `.0` has its media up: the caller gets the answer.
    BrowserConnected(u64),
}

/// The rest of the server's view of the engine.
///
/// The engine runs on the threads that receive messages (the UDP readers, the
/// connections' tasks) rather than on a task of its own: handing every message to
/// another thread cost a wake-up and a context switch each way, a fifth of the CPU
/// of a call storm. A receiver queues its messages in `pending` and, after its burst,
/// [`CallsHandle::flush`]es: whichever thread gets into the engine handles what every
/// thread queued and sends what the engine produced before it leaves, so messages go
/// out in the order the engine made them (a 100 after the 180 it preceded confuses
/// phones) and no receiver waits for another (on two cores the holder of a lock is
/// often preempted). Timers are driven by [`run`], woken only when a message sets a
/// deadline earlier than the one it sleeps towards.
#[derive(Default)]
pub struct CallsHandle {
    running: Mutex<Option<Running>>,
    /// Whether `running` holds an engine, read without its lock.
    started: AtomicBool,
    pending: Mutex<Vec<(Message, Flow)>>,
    /// The thread that drives the timers (`run`), unparked for an earlier deadline.
    timers: std::sync::OnceLock<std::thread::Thread>,
    /// Calls in progress, for the API.
    pub active: ActiveCalls,
}

struct Running {
    engine: Engine,
    /// The other buffer of `pending`.
    spare: Vec<(Message, Flow)>,
    /// When the timer thread wakes next.
    timer_at: Instant,
    calls_active: metrics::Gauge,
    transactions: metrics::Gauge,
}

impl Running {
    /// After the engine ran: due timers fired, what it produced sent, the gauges
    /// set. True when the timer thread must wake earlier than it planned.
    fn settle(&mut self, core: &SipCore, now: Instant) -> bool {
        let mut next = self.engine.next_deadline();
        if next.is_some_and(|at| at <= now) {
            self.engine.on_timeout(now);
            next = self.engine.next_deadline();
        }
        core.transports
            .send_all(self.engine.outbox(), &core.metrics);
        let (calls, txs) = self.engine.sizes();
        self.calls_active.set(calls as f64);
        self.transactions.set(txs as f64);
        match next {
            Some(at) if at + TIMER_SLACK < self.timer_at => {
                self.timer_at = at + TIMER_SLACK;
                true
            }
            _ => false,
        }
    }
}

impl CallsHandle {
    /// Whether the engine takes messages (not while the server starts or stops).
    pub fn running(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Queues a message of a call for the engine ([`Self::flush`] hands it over); it
    /// is dropped when the engine is not running.
    pub fn submit(&self, msg: Message, reply: Flow) {
        if self.running() {
            self.pending.lock().push((msg, reply));
        }
    }

    /// Runs the engine over every queued message and sends what it produced, unless
    /// another thread is in the engine (it does this before it leaves).
    pub fn flush(&self, core: &SipCore) {
        while !self.pending.lock().is_empty() {
            let Some(mut guard) = self.running.try_lock() else {
                return;
            };
            self.run_pending(core, &mut guard);
        }
    }

    fn run_pending(&self, core: &SipCore, guard: &mut MutexGuard<'_, Option<Running>>) {
        let Some(running) = guard.as_mut() else {
            self.pending.lock().clear(); // stopped: dropped, as the closed sockets would
            return;
        };
        // Swapped with a spare that keeps its capacity: a queue grown afresh for every
        // burst reallocated large messages into new pages, which the kernel zeroes.
        let mut batch = std::mem::take(&mut running.spare);
        std::mem::swap(&mut batch, &mut *self.pending.lock());
        let now = Instant::now();
        for (msg, reply) in batch.drain(..) {
            running.engine.on_sip(msg, reply, now);
        }
        running.spare = batch;
        if running.settle(core, now) {
            self.wake_timers();
        }
    }

    /// Runs `f` on the engine, waiting for it if another thread is in it; then what
    /// is queued. `None` when the engine is not running.
    fn with<R>(&self, core: &SipCore, f: impl FnOnce(&mut Running, Instant) -> R) -> Option<R> {
        let mut guard = self.running.lock();
        self.run_pending(core, &mut guard);
        let running = guard.as_mut()?;
        let now = Instant::now();
        let result = f(running, now);
        if running.settle(core, now) {
            self.wake_timers();
        }
        drop(guard);
        self.flush(core);
        Some(result)
    }

    /// One turn of the timer thread: due timers fired and one turn of the queue
    /// run, unless a reader is in the engine (it fires due timers itself, in
    /// `settle`). Returns when to come back; `None` once the engine stopped.
    ///
    /// It never waits for the engine and never stays to drain the queue: a timer
    /// thread that did became the engine's thread under load, handling on one core
    /// what the readers kept queuing on the other (at 2,600 calls/s it held the
    /// engine for 0.3 cores' worth, the reader 0.1, and the CPU per call rose).
    /// Messages queued after its turn wait at most [`QUEUE_RECHECK`] (or for a
    /// reader's next burst, whichever comes first).
    fn timer_turn(&self, core: &SipCore) -> Option<Instant> {
        let Some(mut guard) = self.running.try_lock() else {
            return Some(Instant::now() + TIMER_SLACK);
        };
        self.run_pending(core, &mut guard);
        let running = guard.as_mut()?;
        let refresh = Instant::now() + GAUGE_REFRESH;
        running.timer_at = running
            .engine
            .next_deadline()
            .map_or(refresh, |at| refresh.min(at + TIMER_SLACK));
        let wake_at = running.timer_at;
        drop(guard);
        if self.pending.lock().is_empty() {
            Some(wake_at)
        } else {
            Some(wake_at.min(Instant::now() + QUEUE_RECHECK))
        }
    }

    fn wake_timers(&self) {
        if let Some(thread) = self.timers.get() {
            thread.unpark();
        }
    }

    /// Hangs up call `id` (the API); false when no such call is in progress.
    pub fn hang_up(&self, core: &SipCore, id: uuid::Uuid) -> bool {
        self.with(core, |r, now| r.engine.hangup(id, now))
            .unwrap_or(false)
    }

    /// Resumes what waited for a lookup.
    pub fn resume(&self, core: &SipCore, command: Command) {
        self.with(core, |r, now| r.engine.on_command(command, now));
    }

    /// Asks the engine to connect the caller of call `call`, which an application
    /// answers, to `number` ([`Command::AppTransfer`]); the receiver gets the outcome.
    pub fn transfer_app(
        &self,
        core: &SipCore,
        call: u64,
        number: String,
    ) -> tokio::sync::oneshot::Receiver<u16> {
        let (outcome, heard) = tokio::sync::oneshot::channel();
        self.resume(
            core,
            Command::AppTransfer {
                call,
                number,
                outcome,
            },
        );
        heard
    }
}

/// Starts the engine and drives its timers until `stop`; then stops it (which ends
/// the recorder once it has written what it was sent).
///
/// The timers run on a thread of their own, not a task: under load the thread that
/// holds the engine also runs what the readers queued meanwhile, and that must not
/// occupy a worker of the runtime that serves HTTP and the database.
pub async fn run(
    core: Arc<SipCore>,
    records: mpsc::UnboundedSender<CallEvent>,
    mut stop: watch::Receiver<bool>,
) {
    *core.calls.running.lock() = Some(Running {
        engine: Engine::new(core.clone(), records),
        spare: Vec::new(),
        timer_at: Instant::now(),
        calls_active: metrics::gauge!("switchboard_calls_active"),
        transactions: metrics::gauge!("switchboard_sip_transactions"),
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Handle::current();
    let spawned = {
        let (core, stopping) = (core.clone(), stopping.clone());
        std::thread::Builder::new()
            .name("sip-timers".into())
            .spawn(move || {
                // Lookups the timers start are tasks.
                let _runtime = runtime.enter();
                drive_timers(&core, &stopping);
                drop(done);
            })
    };
    match spawned {
        Ok(thread) => {
            let _ = core.calls.timers.set(thread.thread().clone());
            core.calls.started.store(true, Ordering::Release);
            let _ = stop.changed().await;
            stopping.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = finished.await;
        }
        Err(e) => tracing::error!(error = %e, "cannot start the call engine's timer thread"),
    }
    core.calls.started.store(false, Ordering::Release);
    core.calls.running.lock().take();
}

/// Fires the engine's timers until `stopping`, sleeping until the next deadline (in
/// [`TIMER_SLACK`] steps, at most [`GAUGE_REFRESH`]) or an unpark for an earlier one.
fn drive_timers(core: &SipCore, stopping: &AtomicBool) {
    while !stopping.load(Ordering::Acquire) {
        let Some(wake_at) = core.calls.timer_turn(core) else {
            return;
        };
        // An unpark since the last park (an earlier deadline) returns at once.
        std::thread::park_timeout(wake_at.saturating_duration_since(Instant::now()));
    }
}

/// Copies the relay's counters into Prometheus every second.
pub async fn publish_media_metrics(core: Arc<SipCore>, mut stop: watch::Receiver<bool>) {
    let packets = metrics::counter!("switchboard_media_packets_total");
    let bytes = metrics::counter!("switchboard_media_bytes_total");
    let lost = metrics::counter!("switchboard_media_lost_packets_total");
    let dropped = |reason: &'static str| metrics::counter!("switchboard_media_dropped_packets_total", "reason" => reason);
    let (foreign, no_destination, send_errors, truncated) = (
        dropped("foreign"),
        dropped("no_destination"),
        dropped("send_error"),
        dropped("truncated"),
    );
    let sessions = metrics::gauge!("switchboard_media_sessions");
    let idle_pairs = metrics::gauge!("switchboard_media_idle_port_pairs");
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let t = core.relay.totals();
        packets.absolute(t.packets);
        bytes.absolute(t.bytes);
        lost.absolute(t.lost);
        foreign.absolute(t.foreign);
        no_destination.absolute(t.no_destination);
        send_errors.absolute(t.send_errors);
        truncated.absolute(t.truncated);
        sessions.set(core.relay.sessions() as f64);
        idle_pairs.set(core.relay.idle_pairs() as f64);
    }
}
