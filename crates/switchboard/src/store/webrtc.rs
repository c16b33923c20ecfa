//! Table `webrtc_sessions` (migration 0014): the browser phone's sessions.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub session_id: String,
    pub extension: String,
    /// The session's `registered_phones` marker (`webrtc-` + 12 hex digits).
    pub phone_mac: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

const COLUMNS: &str = "session_id, extension, phone_mac, created_by, created_at, last_seen_at, \
     user_agent, ip_address";

fn from_row(r: &AnyRow) -> Result<SessionRow> {
    Ok(SessionRow {
        session_id: r.try_get("session_id")?,
        extension: r.try_get("extension")?,
        phone_mac: r.try_get("phone_mac")?,
        created_by: r.try_get("created_by")?,
        created_at: Timestamp(r.try_get("created_at")?),
        last_seen_at: Timestamp(r.try_get("last_seen_at")?),
        user_agent: r.try_get("user_agent")?,
        ip_address: r.try_get("ip_address")?,
    })
}

pub async fn insert(conn: &mut Conn, s: &SessionRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webrtc_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&s.session_id)
    .bind(&s.extension)
    .bind(&s.phone_mac)
    .bind(&s.created_by)
    .bind(s.created_at.millis())
    .bind(s.last_seen_at.millis())
    .bind(&s.user_agent)
    .bind(&s.ip_address)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn get<'c>(
    exec: impl Executor<'c, Database = Any>,
    session_id: &str,
) -> Result<Option<SessionRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webrtc_sessions WHERE session_id = $1"
    )))
    .bind(session_id)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Every session, or those of one extension; oldest first.
pub async fn list<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: Option<&str>,
) -> Result<Vec<SessionRow>> {
    let rows = match extension {
        Some(ext) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM webrtc_sessions WHERE extension = $1 \
                 ORDER BY created_at, session_id"
            )))
            .bind(ext)
            .fetch_all(exec)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM webrtc_sessions ORDER BY created_at, session_id"
            )))
            .fetch_all(exec)
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Records activity; false when the session does not exist (any more).
pub async fn touch(conn: &mut Conn, session_id: &str, now: Timestamp) -> Result<bool> {
    let done = sqlx::query("UPDATE webrtc_sessions SET last_seen_at = $2 WHERE session_id = $1")
        .bind(session_id)
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a session and gives it back; `None` when it was gone already (so of two
/// racing ends, one wins).
pub async fn delete(conn: &mut Conn, session_id: &str) -> Result<Option<SessionRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM webrtc_sessions WHERE session_id = $1 RETURNING {COLUMNS}"
    )))
    .bind(session_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Deletes the sessions idle since before `before` and gives them back.
pub async fn delete_idle(conn: &mut Conn, before: Timestamp) -> Result<Vec<SessionRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM webrtc_sessions WHERE last_seen_at < $1 RETURNING {COLUMNS}"
    )))
    .bind(before.millis())
    .fetch_all(conn)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Removes the `registered_phones` rows of browser sessions that no longer exist (their
/// extension was deleted, which took its sessions with it); gives how many.
pub async fn delete_orphan_phones(conn: &mut Conn) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM registered_phones WHERE ip_address = 'webrtc' \
         AND mac_address LIKE 'webrtc-%' AND NOT EXISTS (SELECT 1 FROM webrtc_sessions w \
         WHERE w.extension = registered_phones.extension_number \
         AND w.phone_mac = registered_phones.mac_address)",
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
