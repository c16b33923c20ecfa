//! The call engine (B2BUA, spec 01 "Calls"): caller and callee legs are separate
//! dialogs bridged by the PBX. `engine` holds the state machine, `call` a call's data
//! and the messages it builds, `routing` the dial plan over the caches. This module
//! runs the engine on one task and gives the rest of the server its handle.

mod call;
mod engine;
mod media;
mod routing;

use std::sync::Arc;
use std::time::Instant;

use switchboard_sip::Message;
use switchboard_sip::transaction::TransactionKey;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::engine::Engine;
use super::SipCore;
use super::transport::Flow;
use crate::features::calls::{ActiveCalls, CallEvent};

/// The methods the PBX takes within calls, as it advertises them.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, MESSAGE";

/// Messages waiting for the engine before new calls are refused with 503.
const QUEUE: usize = 16_384;
/// Commands handled before what they produced is sent.
const BATCH: usize = 64;

/// What the engine is asked to do.
// Nearly every command is `Sip`: boxing it would add an allocation per message and
// save no memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    /// A SIP message of a call; `reply` is where responses to a request go.
    Sip { msg: Message, reply: Flow },
    /// An extension the transaction `key` waited for is now in the cache.
    Resume(TransactionKey),
    /// The extension a transfer of call `call` waited for is now in the cache.
    ResumeTransfer {
        call: u64,
        by_caller: bool,
        number: String,
    },
    /// Hang up a call (the API); answers whether it existed.
    Hangup {
        id: uuid::Uuid,
        done: oneshot::Sender<bool>,
    },
}

/// The rest of the server's view of the engine.
pub struct CallsHandle {
    tx: mpsc::Sender<Command>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Command>>>,
    /// Calls in progress, for the API.
    pub active: ActiveCalls,
}

impl Default for CallsHandle {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            active: ActiveCalls::default(),
        }
    }
}

impl CallsHandle {
    /// Hands a message to the engine; false when it is overloaded (or stopped).
    pub fn submit(&self, msg: Message, reply: Flow) -> bool {
        self.tx.try_send(Command::Sip { msg, reply }).is_ok()
    }

    /// Hangs up call `id`; false when no such call is in progress.
    pub async fn hang_up(&self, id: uuid::Uuid) -> bool {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Command::Hangup { id, done }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// Runs the engine until `stop`.
pub async fn run(
    core: Arc<SipCore>,
    records: mpsc::UnboundedSender<CallEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut rx) = core.calls.rx.lock().expect("calls receiver").take() else {
        return;
    };
    let mut engine = Engine::new(core.clone(), core.calls.tx.clone(), records);
    let mut batch = Vec::with_capacity(BATCH);
    let calls_active = metrics::gauge!("switchboard_calls_active");
    let transactions = metrics::gauge!("switchboard_sip_transactions");
    loop {
        let deadline = engine.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                let now = Instant::now();
                for command in batch.drain(..) {
                    engine.on_command(command, now);
                }
            }
            () = sleep => engine.on_timeout(Instant::now()),
            _ = stop.changed() => return,
        }
        core.transports.send_all(engine.outbox(), &core.metrics);
        let (calls, txs) = engine.sizes();
        calls_active.set(calls as f64);
        transactions.set(txs as f64);
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
