//! The delivery worker: every turn (250 ms, or at once when woken) it queues a delivery
//! for each new outbox event and each enabled subscription that wants it (the fan-out),
//! then sends the oldest due delivery of each subscription that has none in flight.
//!
//! - **Order**: a subscription's deliveries go one at a time, oldest first; one that
//!   fails holds the ones after it until it is delivered or given up (`max_age`).
//! - **Isolation**: each subscription is sent from a task of its own, at most
//!   `max_concurrency` at once, with `timeout` per request: a slow receiver delays
//!   only its own events.
//! - **Outbox gaps**: on PostgreSQL an event may commit after one with a higher
//!   sequence number. The fan-out stops at a gap in the numbers until it is
//!   [`GAP_WAIT`] old (then taken for a rolled-back transaction), so no event is
//!   skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use super::{WebhookService, guard, matches};
use crate::app::App;
use crate::store::events::{self as events_store, EventRow};
use crate::store::webhooks::{self as store, DeliveryRow, SubscriptionRow};
use crate::time::Timestamp;

/// How often the worker looks for work when not woken.
const TURN: Duration = Duration::from_millis(250);
/// Events read per subscription per turn.
const FAN_OUT_PAGE: i64 = 500;
/// How long a gap in the outbox's numbers is waited on.
const GAP_WAIT: Duration = Duration::from_secs(5);
/// Finished deliveries stay in the log this long.
const LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the log is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The longest receiver answer kept in the log.
const MAX_LOGGED_ERROR: usize = 300;

struct Worker {
    app: Arc<App>,
    client: reqwest::Client,
    in_flight: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
}

/// Runs until `stop`.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let service = &app.webhooks;
    if !service.config().enabled {
        tracing::info!(
            "webhooks are disabled (features.webhooks.enabled): events are kept, none sent"
        );
        return;
    }
    if let Err(e) = service.sync_config().await {
        tracing::error!(error = %e, "webhook subscriptions of config.yml not stored");
    }
    let config = service.config().clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(config.timeout))
        .connect_timeout(Duration::from_secs(config.timeout.min(5)))
        .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(guard::GuardedResolver {
            allow_private: config.allow_private_targets,
        }))
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook HTTP client not built: no deliveries");
            return;
        }
    };
    let worker = Arc::new(Worker {
        client,
        in_flight: Arc::default(),
        permits: Arc::new(Semaphore::new(config.max_concurrency)),
        app: app.clone(),
    });
    let wake = service.wake().clone();
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        if let Err(e) = worker.fan_out().await {
            tracing::warn!(error = %e, "webhook fan-out failed");
        }
        if let Err(e) = worker.dispatch().await {
            tracing::warn!(error = %e, "webhook dispatch failed");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(std::time::Instant::now());
            worker.prune().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TURN) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

impl Worker {
    fn service(&self) -> &WebhookService {
        &self.app.webhooks
    }

    /// Queues the new events each enabled subscription wants.
    async fn fan_out(&self) -> crate::store::Result<()> {
        let db = &self.app.db;
        for sub in store::all(db.pool())
            .await?
            .into_iter()
            .filter(|s| s.enabled)
        {
            let events = events_store::after(db.pool(), sub.after_seq, FAN_OUT_PAGE).await?;
            let (upto, wanted) = wanted(&sub, &events, Timestamp::now());
            if upto == sub.after_seq {
                continue;
            }
            let now = Timestamp::now();
            let rows: Vec<DeliveryRow> = wanted
                .iter()
                .map(|e| DeliveryRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    subscription_id: sub.id.clone(),
                    event_seq: e.seq,
                    event_id: e.event_id.clone(),
                    event_type: e.event_type.clone(),
                    status: "pending".into(),
                    attempts: 0,
                    next_attempt_at: Some(now),
                    last_status_code: None,
                    last_error: None,
                    created_at: now,
                    updated_at: now,
                })
                .collect();
            let mut tx = db.begin().await?;
            store::enqueue(&mut tx, &rows).await?;
            store::set_after_seq(&mut tx, &sub.id, upto).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Starts a sender for each subscription with a due delivery and none in flight.
    async fn dispatch(self: &Arc<Self>) -> crate::store::Result<()> {
        let now = Timestamp::now();
        for sub in store::all(self.app.db.pool())
            .await?
            .into_iter()
            .filter(|s| s.enabled)
        {
            if self.in_flight.lock().contains(&sub.id) {
                continue;
            }
            let Some(head) = store::head(self.app.db.pool(), &sub.id).await? else {
                continue;
            };
            if head.next_attempt_at.is_some_and(|t| t > now) {
                continue;
            }
            self.in_flight.lock().insert(sub.id.clone());
            let worker = self.clone();
            tokio::spawn(async move {
                let id = sub.id.clone();
                if let Err(e) = worker.drain(sub, head).await {
                    tracing::warn!(error = %e, subscription = %id, "webhook delivery failed to record");
                }
                worker.in_flight.lock().remove(&id);
            });
        }
        Ok(())
    }

    /// Sends `head`, and the deliveries after it while they are due and delivered.
    async fn drain(&self, sub: SubscriptionRow, mut head: DeliveryRow) -> crate::store::Result<()> {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Ok(());
        };
        loop {
            let delivered = self.attempt(&sub, &head).await?;
            if !delivered {
                return Ok(());
            }
            match store::head(self.app.db.pool(), &sub.id).await? {
                Some(next) if next.next_attempt_at.is_none_or(|t| t <= Timestamp::now()) => {
                    head = next
                }
                _ => return Ok(()),
            }
        }
    }

    /// One attempt at `d`; records the outcome, gives whether it was delivered.
    async fn attempt(&self, sub: &SubscriptionRow, d: &DeliveryRow) -> crate::store::Result<bool> {
        let db = &self.app.db;
        let config = self.service().config();
        let now = Timestamp::now();
        let event = events_store::by_seq(db.pool(), d.event_seq).await?;
        let key = self.service().key_of(sub);
        let outcome = match (event, key) {
            (None, _) => Err((None, "the event is no longer stored".to_owned())),
            (_, None) => Err((
                None,
                "the subscription's secret cannot be decrypted (master key)".to_owned(),
            )),
            (Some(event), Some(key)) => send(&self.client, sub, &event, &key).await,
        };
        let attempts = d.attempts + 1;
        let mut tx = db.begin().await?;
        let delivered = match outcome {
            Ok(code) => {
                store::record_attempt(
                    &mut tx,
                    &d.id,
                    "delivered",
                    attempts,
                    None,
                    Some(code),
                    None,
                    now,
                )
                .await?;
                true
            }
            Err((code, error)) => {
                let give_up = now >= d.created_at.plus_secs(config.max_age);
                let (status, next) = if give_up {
                    ("failed", None)
                } else {
                    (
                        "pending",
                        Some(now.plus(retry_delay(&config.retry_delays, attempts))),
                    )
                };
                tracing::info!(subscription = %sub.id, event = %d.event_id, attempts, code, %error, status, "webhook not delivered");
                store::record_attempt(
                    &mut tx,
                    &d.id,
                    status,
                    attempts,
                    next,
                    code,
                    Some(&error),
                    now,
                )
                .await?;
                false
            }
        };
        tx.commit().await?;
        Ok(delivered)
    }

    async fn prune(&self) {
        let before = Timestamp::now().minus(LOG_RETENTION);
        let result = async {
            let mut tx = self.app.db.begin().await?;
            let n = store::prune(&mut tx, before).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        };
        match result.await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deliveries = n, "webhook delivery log pruned"),
            Err(e) => tracing::warn!(error = %e, "webhook delivery log not pruned"),
        }
    }
}

/// Of `events` (in order, after `sub.after_seq`), those `sub` wants, and how far the
/// fan-out may move its position: up to a young gap in the numbers at most.
fn wanted<'e>(
    sub: &SubscriptionRow,
    events: &'e [EventRow],
    now: Timestamp,
) -> (i64, Vec<&'e EventRow>) {
    let patterns: Vec<String> = serde_json::from_str(&sub.events).unwrap_or_default();
    let mut upto = sub.after_seq;
    let mut out = Vec::new();
    for e in events {
        let gap = e.seq != upto + 1;
        if gap && now.since(e.occurred_at) < GAP_WAIT {
            break;
        }
        upto = e.seq;
        let wants = if e.event_type == "webhook.test" {
            e.data["subscription_id"].as_str() == Some(sub.id.as_str())
        } else {
            patterns.iter().any(|p| matches(p, &e.event_type))
        };
        if wants {
            out.push(e);
        }
    }
    (upto, out)
}

/// The wait before retry number `attempts` (1 = the first retry), ±20 %.
fn retry_delay(delays: &[u64], attempts: i64) -> Duration {
    let i = usize::try_from(attempts - 1)
        .unwrap_or(0)
        .min(delays.len().saturating_sub(1));
    let base = delays.get(i).copied().unwrap_or(3600) as f64;
    Duration::from_secs_f64(base * rand::rng().random_range(0.8..1.2))
}

/// POSTs `event` to `sub`: the receiver's 2xx code, or the code (if any) and why not.
async fn send(
    client: &reqwest::Client,
    sub: &SubscriptionRow,
    event: &EventRow,
    key: &[u8],
) -> Result<u16, (Option<u16>, String)> {
    let body = json!({
        "event_id": event.event_id,
        "event_type": event.event_type,
        "timestamp": event.occurred_at,
        "data": event.data,
    })
    .to_string();
    let timestamp = Timestamp::now().0 / 1000;
    let signature = super::signing::sign(key, &event.event_id, timestamp, body.as_bytes());
    let response = client
        .post(&sub.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("x-webhook-event", &event.event_type)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => {
            let code = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let text: String = text.chars().take(MAX_LOGGED_ERROR).collect();
            Err((Some(code), format!("HTTP {code} {text}").trim().to_owned()))
        }
        Err(e) => {
            // The whole chain: "error sending request" alone says nothing.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push_str(": ");
                why.push_str(&s.to_string());
                source = s.source();
            }
            Err((None, why.chars().take(MAX_LOGGED_ERROR).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, kind: &str, age: Duration, now: Timestamp) -> EventRow {
        EventRow {
            seq,
            event_id: format!("e{seq}"),
            event_type: kind.into(),
            occurred_at: now.minus(age),
            data: json!({}),
        }
    }

    #[test]
    fn the_fan_out_waits_on_young_gaps_and_filters_by_pattern() {
        let now = Timestamp(1_000_000_000);
        let sub = SubscriptionRow {
            id: "s".into(),
            url: "http://x".into(),
            events: r#"["call.*"]"#.into(),
            enabled: true,
            secret: String::new(),
            description: String::new(),
            source: "api".into(),
            after_seq: 10,
            created_at: now,
            updated_at: now,
        };
        let old = Duration::from_secs(60);
        let events = [
            event(11, "call.started", old, now),
            event(12, "extension.created", old, now),
            // 13 not committed yet, 14 just written: wait.
            event(14, "call.ended", Duration::ZERO, now),
        ];
        let (upto, wanted_now) = wanted(&sub, &events, now);
        assert_eq!(upto, 12);
        assert_eq!(wanted_now.iter().map(|e| e.seq).collect::<Vec<_>>(), [11]);
        // A gap that old was a rolled-back transaction.
        let events = [
            event(11, "call.started", old, now),
            event(14, "call.ended", old, now),
        ];
        assert_eq!(wanted(&sub, &events, now).0, 14);
    }

    #[test]
    fn retries_back_off_and_keep_the_last_delay() {
        let delays = [5, 30, 120];
        let within = |d: Duration, base: f64| (base * 0.8..=base * 1.2).contains(&d.as_secs_f64());
        assert!(within(retry_delay(&delays, 1), 5.0));
        assert!(within(retry_delay(&delays, 2), 30.0));
        assert!(within(retry_delay(&delays, 9), 120.0));
    }
}
