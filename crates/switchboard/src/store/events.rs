//! Table `events`: the transactional outbox. Rows are appended in the transaction of
//! the change they describe; delivery (webhooks, live panel) reads them by `seq`.

use sqlx::{Any, Executor, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub data: serde_json::Value,
}

pub async fn append(
    conn: &mut Conn,
    event_id: &str,
    event_type: &str,
    at: Timestamp,
    data: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (event_id, event_type, occurred_at, data) VALUES ($1, $2, $3, $4)",
    )
    .bind(event_id)
    .bind(event_type)
    .bind(at.millis())
    .bind(data)
    .execute(conn)
    .await
    .map(|_| ())
}

/// One event to append: id, type, time, JSON data. Owned, so that binding moves the
/// text rather than copying it (sqlx copies a bound `&str`, twice).
pub type NewEvent = (String, &'static str, Timestamp, String);

/// Rows per statement, well under both databases' bound-parameter limits.
const APPEND_CHUNK: usize = 200;

/// Appends `events` in order, many per statement (a call storm writes three per call).
pub async fn append_many(conn: &mut Conn, events: Vec<NewEvent>) -> Result<()> {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<NewEvent> = events.by_ref().take(APPEND_CHUNK).collect();
        let mut sql =
            String::from("INSERT INTO events (event_id, event_type, occurred_at, data) VALUES ");
        sql.push_str(&super::row_placeholders(conn, chunk.len(), 4));
        // Only placeholders are added to the SQL; every value is bound.
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for (id, event_type, at, data) in chunk {
            q = q.bind(id).bind(event_type).bind(at.millis()).bind(data);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The event numbered `seq`, if it is still stored.
pub async fn by_seq<'c>(
    exec: impl Executor<'c, Database = Any>,
    seq: i64,
) -> Result<Option<EventRow>> {
    let row = sqlx::query(
        "SELECT seq, event_id, event_type, occurred_at, data FROM events WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(event_row).transpose()
}

/// Events after `after_seq` in commit-sequence order, at most `limit`.
pub async fn after<'c>(
    exec: impl Executor<'c, Database = Any>,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let rows = sqlx::query(
        "SELECT seq, event_id, event_type, occurred_at, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.iter().map(event_row).collect()
}

/// Events whose type starts with `prefix`, with `after_seq < seq <= upto`, in order,
/// at most `limit`. Filtered in the database: a follower of a few types (the SIP
/// credential cache) must not fetch and decode every call event of a call storm.
pub async fn of_type_between<'c>(
    exec: impl Executor<'c, Database = Any>,
    prefix: &str,
    after_seq: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    // The prefix matched literally: LIKE's wildcards in it (`_` of `hot_desk.`) escaped.
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("{escaped}%");
    let rows = sqlx::query(
        "SELECT seq, event_id, event_type, occurred_at, data FROM events \
         WHERE seq > $1 AND seq <= $2 AND event_type LIKE $3 ESCAPE '\\' ORDER BY seq LIMIT $4",
    )
    .bind(after_seq)
    .bind(upto)
    .bind(pattern)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.iter().map(event_row).collect()
}

fn event_row(r: &sqlx::any::AnyRow) -> Result<EventRow> {
    let data: String = r.try_get("data")?;
    Ok(EventRow {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        occurred_at: Timestamp(r.try_get("occurred_at")?),
        data: serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(e.into()))?,
    })
}

/// The newest event's sequence number (0 when there is none).
pub async fn max_seq<'c>(exec: impl Executor<'c, Database = Any>) -> Result<i64> {
    let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM events")
        .fetch_one(exec)
        .await?;
    row.try_get("n")
}
