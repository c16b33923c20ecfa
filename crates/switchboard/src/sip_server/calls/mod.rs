//! The call engine (B2BUA, spec 01 "Calls"): caller and callee legs are separate
//! dialogs bridged by the PBX. `engine` holds the state machine, `call` a call's data
//! and the messages it builds, `routing` the dial plan over the caches. This module
//! runs the engine on one task and gives the rest of the server its handle.

mod call;
mod engine;
mod media;
mod routing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchboard_sip::Message;
use switchboard_sip::transaction::TransactionKey;
use tokio::sync::{Notify, mpsc, watch};

pub use self::engine::Engine;
use super::SipCore;
use super::transport::{Flow, Outbox};
use crate::features::calls::{ActiveCalls, CallEvent};

/// The methods the PBX takes within calls, as it advertises them.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, MESSAGE";

/// The longest the timer task sleeps, so that the gauges stay current when idle.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);

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
}

/// The rest of the server's view of the engine.
///
/// The engine runs on the thread that received the message (a UDP reader, a
/// connection's task), under a lock, rather than on a task of its own: handing every
/// message to another thread cost a wake-up and a context switch each way, a fifth of
/// the CPU of a call storm. Timers are driven by [`run`], which is woken only when a
/// message sets a deadline earlier than the one it sleeps towards.
#[derive(Default)]
pub struct CallsHandle {
    running: Mutex<Option<Running>>,
    timer: Notify,
    /// Calls in progress, for the API.
    pub active: ActiveCalls,
}

struct Running {
    engine: Engine,
    /// When the timer task wakes next.
    timer_at: Instant,
    calls_active: metrics::Gauge,
    transactions: metrics::Gauge,
}

impl Running {
    /// After the engine ran: due timers fired, what it sends moved to `out`, the
    /// gauges set. True when the timer task must wake earlier than it planned.
    fn settle(&mut self, now: Instant, out: &mut Outbox) -> bool {
        let mut next = self.engine.next_deadline();
        if next.is_some_and(|at| at <= now) {
            self.engine.on_timeout(now);
            next = self.engine.next_deadline();
        }
        out.append(self.engine.outbox());
        let (calls, txs) = self.engine.sizes();
        self.calls_active.set(calls as f64);
        self.transactions.set(txs as f64);
        match next {
            Some(at) if at < self.timer_at => {
                self.timer_at = at;
                true
            }
            _ => false,
        }
    }
}

impl CallsHandle {
    /// Runs `f` on the engine now, on this thread; what it sends goes into `out`.
    /// `None` when the engine is not running (starting or stopped).
    pub fn with<R>(
        &self,
        out: &mut Outbox,
        f: impl FnOnce(&mut Engine, Instant) -> R,
    ) -> Option<R> {
        let mut guard = self.running.lock();
        let running = guard.as_mut()?;
        let now = Instant::now();
        let result = f(&mut running.engine, now);
        let wake = running.settle(now, out);
        drop(guard);
        if wake {
            self.timer.notify_one();
        }
        Some(result)
    }

    /// Hands a message of a call to the engine; false when it is not running.
    pub fn submit(&self, msg: Message, reply: Flow, out: &mut Outbox) -> bool {
        self.with(out, |engine, now| engine.on_sip(msg, reply, now))
            .is_some()
    }

    /// Hangs up call `id` (the API); false when no such call is in progress.
    pub fn hang_up(&self, core: &SipCore, id: uuid::Uuid) -> bool {
        let mut out = Outbox::default();
        let found = self.with(&mut out, |engine, now| engine.hangup(id, now));
        core.transports.send_all(&mut out, &core.metrics);
        found.unwrap_or(false)
    }

    /// Resumes what waited for a lookup.
    pub fn resume(&self, core: &SipCore, command: Command) {
        let mut out = Outbox::default();
        self.with(&mut out, |engine, now| engine.on_command(command, now));
        core.transports.send_all(&mut out, &core.metrics);
    }
}

/// Starts the engine and drives its timers until `stop`; then stops it (which ends
/// the recorder once it has written what it was sent).
pub async fn run(
    core: Arc<SipCore>,
    records: mpsc::UnboundedSender<CallEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let handle = &core.calls;
    *handle.running.lock() = Some(Running {
        engine: Engine::new(core.clone(), records),
        timer_at: Instant::now(),
        calls_active: metrics::gauge!("switchboard_calls_active"),
        transactions: metrics::gauge!("switchboard_sip_transactions"),
    });
    let mut out = Outbox::default();
    loop {
        let wake_at = {
            let mut guard = handle.running.lock();
            let Some(running) = guard.as_mut() else {
                return;
            };
            let now = Instant::now();
            running.engine.on_timeout(now);
            running.timer_at = now + GAUGE_REFRESH;
            running.settle(now, &mut out);
            running.timer_at
        };
        core.transports.send_all(&mut out, &core.metrics);
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = handle.timer.notified() => {}
            _ = stop.changed() => break,
        }
    }
    handle.running.lock().take();
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
    }
}
