//! Tables `webhook_subscriptions` and `webhook_deliveries`.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    pub url: String,
    /// JSON array.
    pub events: String,
    pub enabled: bool,
    /// Encrypted under the master key.
    pub secret: String,
    pub description: String,
    pub source: String,
    pub after_seq: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

macro_rules! subscription_columns {
    () => {
        "id, url, events, enabled, secret, description, source, after_seq, created_at, updated_at"
    };
}

fn subscription(r: &AnyRow) -> Result<SubscriptionRow> {
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        events: r.try_get("events")?,
        enabled: flag(r, "enabled")?,
        secret: r.try_get("secret")?,
        description: r.try_get("description")?,
        source: r.try_get("source")?,
        after_seq: r.try_get("after_seq")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

pub async fn all<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<SubscriptionRow>> {
    sqlx::query(concat!(
        "SELECT ",
        subscription_columns!(),
        " FROM webhook_subscriptions ORDER BY created_at, id"
    ))
    .fetch_all(exec)
    .await?
    .iter()
    .map(subscription)
    .collect()
}

pub async fn get<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<SubscriptionRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        subscription_columns!(),
        " FROM webhook_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(subscription).transpose()
}

pub async fn insert(conn: &mut Conn, s: &SubscriptionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, events, enabled, secret, description, source, \
         after_seq, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&s.id)
    .bind(&s.url)
    .bind(&s.events)
    .bind(s.enabled)
    .bind(&s.secret)
    .bind(&s.description)
    .bind(&s.source)
    .bind(s.after_seq)
    .bind(s.created_at.0)
    .bind(s.updated_at.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every field but `id`, `source`, `created_at`.
pub async fn update(conn: &mut Conn, s: &SubscriptionRow) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_subscriptions SET url = $1, events = $2, enabled = $3, secret = $4, \
         description = $5, after_seq = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&s.url)
    .bind(&s.events)
    .bind(s.enabled)
    .bind(&s.secret)
    .bind(&s.description)
    .bind(s.after_seq)
    .bind(s.updated_at.0)
    .bind(&s.id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn delete(conn: &mut Conn, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn set_after_seq(conn: &mut Conn, id: &str, after_seq: i64) -> Result<()> {
    sqlx::query("UPDATE webhook_subscriptions SET after_seq = $1 WHERE id = $2")
        .bind(after_seq)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: String,
    pub subscription_id: String,
    pub event_seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

macro_rules! delivery_columns {
    () => {
        "id, subscription_id, event_seq, event_id, event_type, status, attempts, \
         next_attempt_at, last_status_code, last_error, created_at, updated_at"
    };
}

fn delivery(r: &AnyRow) -> Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        subscription_id: r.try_get("subscription_id")?,
        event_seq: r.try_get("event_seq")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        status: r.try_get("status")?,
        attempts: r
            .try_get::<i64, _>("attempts")
            .or_else(|_| r.try_get::<i32, _>("attempts").map(i64::from))?,
        next_attempt_at: r
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(Timestamp),
        last_status_code: r
            .try_get::<Option<i64>, _>("last_status_code")
            .or_else(|_| {
                r.try_get::<Option<i32>, _>("last_status_code")
                    .map(|v| v.map(i64::from))
            })?,
        last_error: r.try_get("last_error")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

/// Queues deliveries (status `pending`, due now); one already queued for the same
/// subscription and event is left as it is.
pub async fn enqueue(conn: &mut Conn, rows: &[DeliveryRow]) -> Result<()> {
    for d in rows {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, subscription_id, event_seq, event_id, event_type, \
             status, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $7) \
             ON CONFLICT (subscription_id, event_seq) DO NOTHING",
        )
        .bind(&d.id)
        .bind(&d.subscription_id)
        .bind(d.event_seq)
        .bind(&d.event_id)
        .bind(&d.event_type)
        .bind(d.next_attempt_at.map(|t| t.0))
        .bind(d.created_at.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The oldest pending delivery of `subscription_id` (its queue's head).
pub async fn head<'c>(
    exec: impl Executor<'c, Database = Any>,
    subscription_id: &str,
) -> Result<Option<DeliveryRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE subscription_id = $1 AND status = 'pending' \
         ORDER BY event_seq LIMIT 1"
    ))
    .bind(subscription_id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(delivery).transpose()
}

pub async fn delivery_by_id<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<DeliveryRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(delivery).transpose()
}

/// The newest deliveries of `subscription_id`, optionally of one status.
pub async fn recent<'c>(
    exec: impl Executor<'c, Database = Any>,
    subscription_id: &str,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    sqlx::query(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE subscription_id = $1 AND ($2 IS NULL OR status = $2) \
         ORDER BY event_seq DESC LIMIT $3"
    ))
    .bind(subscription_id)
    .bind(status)
    .bind(limit)
    .fetch_all(exec)
    .await?
    .iter()
    .map(delivery)
    .collect()
}

/// Counts of `subscription_id`'s deliveries by status.
pub async fn counts<'c>(
    exec: impl Executor<'c, Database = Any>,
    subscription_id: &str,
) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM webhook_deliveries WHERE subscription_id = $1 GROUP BY status",
    )
    .bind(subscription_id)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect()
}

/// The outcome of an attempt: `status` (`pending` with the next try, `delivered` or
/// `failed`) and what the receiver said.
#[allow(clippy::too_many_arguments)]
pub async fn record_attempt(
    conn: &mut Conn,
    id: &str,
    status: &str,
    attempts: i64,
    next_attempt_at: Option<Timestamp>,
    status_code: Option<u16>,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
         last_status_code = $4, last_error = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(status)
    .bind(attempts)
    .bind(next_attempt_at.map(|t| t.0))
    .bind(status_code.map(i64::from))
    .bind(error)
    .bind(now.0)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues `id` again, due now, with a fresh `max_age` window.
pub async fn requeue(conn: &mut Conn, id: &str, now: Timestamp) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, created_at = $1, \
         updated_at = $1 WHERE id = $2",
    )
    .bind(now.0)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes finished deliveries last changed before `before` (the log's retention).
pub async fn prune(conn: &mut Conn, before: Timestamp) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1")
            .bind(before.0)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}
