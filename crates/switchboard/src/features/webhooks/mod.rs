//! Webhooks (spec 06): subscriptions (from config.yml and the API, in the database)
//! and their delivery log. Events are the outbox's (`features::events`): every event
//! is written in the transaction of the change that caused it, and the worker
//! (`worker`) queues a delivery per matching subscription and sends it, signed
//! (`signing`), retried with backoff until delivered or `max_age`, in order per
//! subscription. Nothing is held only in memory, so a crash loses nothing.

mod guard;
pub mod signing;
pub mod worker;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::events::{EventType, emit};
use super::{Actor, ServiceError};
use crate::config::{Config, WebhookSubscriptionConfig, WebhooksConfig};
use crate::crypto::master_key::MasterKey;
use crate::store::webhooks::{self as store, DeliveryRow, SubscriptionRow};
use crate::store::{self as db_store, Db};
use crate::time::Timestamp;

/// The most event patterns a subscription may list.
const MAX_PATTERNS: usize = 64;
const MAX_DESCRIPTION: usize = 200;
/// A subscription whose oldest pending delivery failed this many times is unhealthy.
const UNHEALTHY_AFTER: i64 = 3;

/// Where a subscription is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `features.webhooks.subscriptions`: edited there, not through the API.
    Config,
    Api,
}

/// How a subscription's deliveries are going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// False while its oldest waiting event keeps failing, or when deliveries failed
    /// for good (the log keeps 7 days).
    pub healthy: bool,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    /// The receiver's last answer to the oldest waiting event, when it failed.
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    /// Event names and wildcards (`call.*`, `*`).
    pub events: Vec<String>,
    pub enabled: bool,
    pub description: String,
    pub source: Source,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub health: Health,
}

/// `POST /api/webhooks` and `PUT /api/webhooks/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// `http://` or `https://`.
    pub url: String,
    /// Default `["*"]`.
    pub events: Option<Vec<String>>,
    /// Default `true`.
    pub enabled: Option<bool>,
    /// `whsec_<base64>`; generated when absent (and shown once).
    pub secret: Option<String>,
    pub description: Option<String>,
}

/// A subscription just created (or its secret rotated): the secret is shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    pub secret: String,
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.id,
            subscription_id: r.subscription_id,
            event_id: r.event_id,
            event_type: r.event_type,
            next_attempt_at: (r.status == "pending")
                .then_some(r.next_attempt_at)
                .flatten(),
            status: r.status,
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Whether `event_type` is one `pattern` names: `*`, a prefix with `.*`, or the name.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

fn check_pattern(p: &str) -> bool {
    let name = p.strip_suffix(".*").unwrap_or(p);
    p == "*"
        || (!name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            }))
}

#[derive(Clone)]
pub struct WebhookService {
    db: Db,
    master_key: Arc<MasterKey>,
    config: WebhooksConfig,
    /// Wakes the worker (a test event, a retry) instead of waiting for its next turn.
    wake: Arc<Notify>,
}

impl WebhookService {
    pub fn new(db: Db, master_key: Arc<MasterKey>, config: &Config) -> Self {
        Self {
            db,
            master_key,
            config: config.features.webhooks.clone(),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    pub(crate) fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    pub async fn list(&self) -> Result<Vec<Subscription>, ServiceError> {
        let rows = store::all(self.db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Subscription, ServiceError> {
        self.view(self.row(id).await?).await
    }

    async fn row(&self, id: &str) -> Result<SubscriptionRow, ServiceError> {
        store::get(self.db.pool(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("webhook subscription {id}")))
    }

    async fn view(&self, r: SubscriptionRow) -> Result<Subscription, ServiceError> {
        let counts = store::counts(self.db.pool(), &r.id).await?;
        let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let head = store::head(self.db.pool(), &r.id).await?;
        let failing = head.as_ref().is_some_and(|h| h.attempts >= UNHEALTHY_AFTER);
        let health = Health {
            healthy: !failing && count("failed") == 0,
            pending: count("pending"),
            delivered: count("delivered"),
            failed: count("failed"),
            last_status_code: head.as_ref().and_then(|h| h.last_status_code),
            last_error: head.and_then(|h| h.last_error),
        };
        Ok(Subscription {
            id: r.id,
            url: r.url,
            events: serde_json::from_str(&r.events).unwrap_or_default(),
            enabled: r.enabled,
            description: r.description,
            source: if r.source == "config" {
                Source::Config
            } else {
                Source::Api
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            health,
        })
    }

    /// A subscription through the API; it receives events from now on.
    pub async fn create(&self, input: SubscriptionInput) -> Result<WithSecret, ServiceError> {
        let checked = self.check(&input)?;
        let secret = input.secret.clone().unwrap_or_else(signing::new_secret);
        let now = Timestamp::now();
        let row = SubscriptionRow {
            id: uuid::Uuid::now_v7().to_string(),
            url: checked.url,
            events: checked.events,
            enabled: input.enabled.unwrap_or(true),
            secret: self.master_key.encrypt(secret.as_bytes()),
            description: checked.description,
            source: "api".into(),
            after_seq: db_store::events::max_seq(self.db.pool()).await?,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await?;
        store::insert(&mut tx, &row).await?;
        tx.commit().await?;
        tracing::info!(id = %row.id, url = %row.url, "webhook subscription created");
        Ok(WithSecret {
            subscription: self.view(row).await?,
            secret,
        })
    }

    /// Replaces an API subscription's settings (its secret only when one is given).
    pub async fn update(
        &self,
        id: &str,
        input: SubscriptionInput,
    ) -> Result<Subscription, ServiceError> {
        let mut row = self.row(id).await?;
        refuse_config(&row)?;
        let checked = self.check(&input)?;
        let enabled = input.enabled.unwrap_or(true);
        if enabled && !row.enabled {
            // Re-enabled: events from now on, not those of the pause.
            row.after_seq = db_store::events::max_seq(self.db.pool()).await?;
        }
        row.url = checked.url;
        row.events = checked.events;
        row.enabled = enabled;
        row.description = checked.description;
        if let Some(secret) = &input.secret {
            row.secret = self.master_key.encrypt(secret.as_bytes());
        }
        row.updated_at = Timestamp::now();
        let mut tx = self.db.begin().await?;
        store::update(&mut tx, &row).await?;
        tx.commit().await?;
        self.view(row).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ServiceError> {
        let row = self.row(id).await?;
        refuse_config(&row)?;
        let mut tx = self.db.begin().await?;
        store::delete(&mut tx, id).await?;
        tx.commit().await?;
        tracing::info!(id, "webhook subscription deleted");
        Ok(())
    }

    /// A new secret for an API subscription, shown this once.
    pub async fn rotate_secret(&self, id: &str) -> Result<WithSecret, ServiceError> {
        let mut row = self.row(id).await?;
        let config_secret = self
            .config
            .subscriptions
            .iter()
            .any(|c| config_id(&c.url) == row.id && c.secret.is_some());
        if config_secret {
            return Err(ServiceError::conflict(
                "defined_in_config",
                "this subscription's secret is set in config.yml; change it there",
            ));
        }
        let secret = signing::new_secret();
        row.secret = self.master_key.encrypt(secret.as_bytes());
        row.updated_at = Timestamp::now();
        let mut tx = self.db.begin().await?;
        store::update(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(WithSecret {
            subscription: self.view(row).await?,
            secret,
        })
    }

    /// Sends subscription `id` a `webhook.test` event (to it alone); gives its id.
    pub async fn test(&self, by: &Actor, id: &str) -> Result<uuid::Uuid, ServiceError> {
        self.row(id).await?;
        #[derive(Serialize)]
        struct Test<'a> {
            actor: String,
            message: &'static str,
            subscription_id: &'a str,
        }
        let mut tx = self.db.begin().await?;
        let event_id = emit(
            &mut tx,
            EventType::WebhookTest,
            &Test {
                actor: by.label(),
                message: "A test event from Switchboard",
                subscription_id: id,
            },
        )
        .await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(event_id)
    }

    /// The newest deliveries of subscription `id`.
    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, ServiceError> {
        self.row(id).await?;
        if let Some(s) = status
            && !matches!(s, "pending" | "delivered" | "failed")
        {
            return Err(ServiceError::invalid(
                "status",
                "pending, delivered or failed",
            ));
        }
        Ok(store::recent(self.db.pool(), id, status, limit)
            .await?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    /// Queues delivery `id` again, due now, with a fresh `max_age`.
    pub async fn retry(&self, id: &str) -> Result<Delivery, ServiceError> {
        let mut tx = self.db.begin().await?;
        if !store::requeue(&mut tx, id, Timestamp::now()).await? {
            return Err(ServiceError::not_found(format!("webhook delivery {id}")));
        }
        let row = store::delivery_by_id(&mut *tx, id).await?;
        tx.commit().await?;
        self.wake.notify_one();
        row.map(Delivery::from)
            .ok_or_else(|| ServiceError::not_found(format!("webhook delivery {id}")))
    }

    /// Makes the subscriptions of config.yml those in the database with source
    /// `config`: new ones receive events from now on, changed ones are updated, removed
    /// ones deleted with their log.
    pub async fn sync_config(&self) -> Result<(), ServiceError> {
        let stored = store::all(self.db.pool()).await?;
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        for c in &self.config.subscriptions {
            let id = config_id(&c.url);
            let events = serde_json::to_string(&c.events).unwrap_or_else(|_| "[\"*\"]".into());
            match stored.iter().find(|s| s.id == id) {
                Some(existing) => {
                    let mut row = existing.clone();
                    row.events = events;
                    if c.enabled && !row.enabled {
                        row.after_seq = db_store::events::max_seq(&mut *tx).await?;
                    }
                    row.enabled = c.enabled;
                    if let Some(secret) = &c.secret {
                        row.secret = self.master_key.encrypt(secret.expose().as_bytes());
                    }
                    row.updated_at = now;
                    store::update(&mut tx, &row).await?;
                }
                None => {
                    let after_seq = db_store::events::max_seq(&mut *tx).await?;
                    let secret = match &c.secret {
                        Some(s) => s.expose().to_owned(),
                        None => {
                            tracing::warn!(url = %c.url, %id, "webhook subscription in config.yml has no secret: one was generated; set `secret` there, or rotate it with POST /api/webhooks/{id}/secret to learn it");
                            signing::new_secret()
                        }
                    };
                    store::insert(
                        &mut tx,
                        &SubscriptionRow {
                            id,
                            url: c.url.clone(),
                            events,
                            enabled: c.enabled,
                            secret: self.master_key.encrypt(secret.as_bytes()),
                            description: "from config.yml".into(),
                            source: "config".into(),
                            after_seq,
                            created_at: now,
                            updated_at: now,
                        },
                    )
                    .await?;
                }
            }
        }
        for gone in stored.iter().filter(|s| {
            s.source == "config"
                && !self
                    .config
                    .subscriptions
                    .iter()
                    .any(|c| config_id(&c.url) == s.id)
        }) {
            store::delete(&mut tx, &gone.id).await?;
            tracing::info!(url = %gone.url, "webhook subscription removed from config.yml: deleted");
        }
        tx.commit().await?;
        Ok(())
    }

    fn check(&self, input: &SubscriptionInput) -> Result<Checked, ServiceError> {
        let url = check_url(&input.url, self.config.allow_private_targets)?;
        let events = input.events.clone().unwrap_or_else(|| vec!["*".into()]);
        if events.is_empty() || events.len() > MAX_PATTERNS {
            return Err(ServiceError::invalid(
                "events",
                format!("1 to {MAX_PATTERNS} event names or wildcards (call.*, *)"),
            ));
        }
        if let Some((i, bad)) = events.iter().enumerate().find(|(_, p)| !check_pattern(p)) {
            return Err(ServiceError::invalid(
                format!("events[{i}]"),
                format!("`{bad}` is not an event name (call.answered) or wildcard (call.*, *)"),
            ));
        }
        if let Some(secret) = &input.secret
            && signing::key_of(secret).is_none()
        {
            return Err(ServiceError::invalid(
                "secret",
                "a Standard Webhooks secret: whsec_ and the base64 of 24 to 64 random bytes",
            ));
        }
        let description = input.description.clone().unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(ServiceError::invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            ));
        }
        Ok(Checked {
            url,
            events: serde_json::to_string(&events).map_err(|e| sqlx::Error::Encode(e.into()))?,
            description,
        })
    }

    /// The signing key of a stored subscription.
    pub(crate) fn key_of(&self, row: &SubscriptionRow) -> Option<Vec<u8>> {
        let secret = self.master_key.decrypt(&row.secret).ok()?;
        signing::key_of(std::str::from_utf8(&secret).ok()?)
    }
}

struct Checked {
    url: String,
    events: String,
    description: String,
}

fn refuse_config(row: &SubscriptionRow) -> Result<(), ServiceError> {
    if row.source == "config" {
        return Err(ServiceError::conflict(
            "defined_in_config",
            "this subscription is defined in config.yml; change it there",
        ));
    }
    Ok(())
}

/// The id of the config.yml subscription to `url` (stable across restarts).
fn config_id(url: &str) -> String {
    format!(
        "config-{}",
        &crate::crypto::sha256_hex(url.as_bytes())[..16]
    )
}

/// `text` as a receiver URL: http(s) with a host, no credentials; a literal address
/// must be public unless private targets are allowed (names are checked when sent).
fn check_url(text: &str, allow_private: bool) -> Result<String, ServiceError> {
    let bad = |why: &str| ServiceError::invalid("url", why.to_owned());
    let url = reqwest::Url::parse(text.trim()).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "no user or password in the URL; authenticate with the signature",
        ));
    }
    let literal = match url.host() {
        None => return Err(bad("the URL has no host")),
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = literal
        && !allow_private
        && !guard::is_public(ip)
    {
        return Err(bad(&format!(
            "{ip} is a private or local address; set features.webhooks.allow_private_targets to allow it"
        )));
    }
    Ok(url.to_string())
}

/// `cfg.url` is refused or accepted as the API would (config validation).
pub fn config_url_problem(cfg: &WebhookSubscriptionConfig, allow_private: bool) -> Option<String> {
    check_url(&cfg.url, allow_private).err().map(|e| match e {
        ServiceError::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_prefixes_and_everything() {
        assert!(matches("*", "call.started"));
        assert!(matches("call.*", "call.started"));
        assert!(!matches("call.*", "voicemail.received"));
        assert!(matches("hot_desk.login", "hot_desk.login"));
        assert!(!matches("hot_desk.login", "hot_desk.logout"));
        for ok in ["*", "call.*", "hot_desk.login", "voicemail.received"] {
            assert!(check_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "call.",
            ".x",
            "Call.started",
            "call*",
            "call.**",
            "a..b",
        ] {
            assert!(!check_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn receiver_urls_are_checked() {
        assert!(check_url("https://crm.example.com/hook", false).is_ok());
        assert!(check_url("ftp://x", false).is_err());
        assert!(check_url("https://user:pw@x.example/", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", false).is_err());
        assert!(check_url("http://[::1]/", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
    }
}
