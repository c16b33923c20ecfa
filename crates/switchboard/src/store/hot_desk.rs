//! Tables `hot_desk_sessions` (who is logged in where), `hot_desk_history` (every
//! session, closed with its reason) and `hot_desk_pin_failures`.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The matching key: a normalised MAC, or the id as given.
    pub device_id: String,
    /// The id as the login gave it.
    pub device_label: String,
    pub extension: String,
    pub session_id: String,
    pub ip_address: Option<String>,
    pub logged_in_at: Timestamp,
    pub last_activity: Timestamp,
    pub auto_logout_enabled: bool,
}

macro_rules! session_columns {
    () => {
        "device_id, device_label, extension, session_id, ip_address, logged_in_at, \
         last_activity, auto_logout_enabled"
    };
}

fn session(r: &AnyRow) -> Result<SessionRow> {
    Ok(SessionRow {
        device_id: r.try_get("device_id")?,
        device_label: r.try_get("device_label")?,
        extension: r.try_get("extension")?,
        session_id: r.try_get("session_id")?,
        ip_address: r.try_get("ip_address")?,
        logged_in_at: Timestamp(r.try_get("logged_in_at")?),
        last_activity: Timestamp(r.try_get("last_activity")?),
        auto_logout_enabled: flag(r, "auto_logout_enabled")?,
    })
}

pub async fn all<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<SessionRow>> {
    sqlx::query(concat!(
        "SELECT ",
        session_columns!(),
        " FROM hot_desk_sessions ORDER BY logged_in_at, device_id"
    ))
    .fetch_all(exec)
    .await?
    .iter()
    .map(session)
    .collect()
}

pub async fn by_device<'c>(
    exec: impl Executor<'c, Database = Any>,
    device_id: &str,
) -> Result<Option<SessionRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        session_columns!(),
        " FROM hot_desk_sessions WHERE device_id = $1"
    ))
    .bind(device_id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(session).transpose()
}

pub async fn by_extension<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Vec<SessionRow>> {
    sqlx::query(concat!(
        "SELECT ",
        session_columns!(),
        " FROM hot_desk_sessions WHERE extension = $1 ORDER BY logged_in_at, device_id"
    ))
    .bind(extension)
    .fetch_all(exec)
    .await?
    .iter()
    .map(session)
    .collect()
}

/// Every occupied device with its extension and that extension's name (what the
/// call engine keeps in memory).
pub async fn occupants<'c>(
    exec: impl Executor<'c, Database = Any>,
) -> Result<Vec<(String, String, String)>> {
    let rows = sqlx::query(
        "SELECT s.device_id, s.extension, e.name FROM hot_desk_sessions s \
         JOIN extensions e ON e.number = s.extension ORDER BY s.logged_in_at",
    )
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("device_id")?,
                r.try_get("extension")?,
                r.try_get("name")?,
            ))
        })
        .collect()
}

/// Sessions idle since before `idle_before` that may be logged out automatically.
pub async fn idle<'c>(
    exec: impl Executor<'c, Database = Any>,
    idle_before: Timestamp,
) -> Result<Vec<SessionRow>> {
    sqlx::query(concat!(
        "SELECT ",
        session_columns!(),
        " FROM hot_desk_sessions WHERE last_activity < $1 AND auto_logout_enabled = $2"
    ))
    .bind(idle_before.0)
    .bind(true)
    .fetch_all(exec)
    .await?
    .iter()
    .map(session)
    .collect()
}

/// A new session and its history row.
pub async fn insert(conn: &mut Conn, s: &SessionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO hot_desk_sessions (device_id, device_label, extension, session_id, ip_address, \
         logged_in_at, last_activity, auto_logout_enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.device_id)
    .bind(&s.device_label)
    .bind(&s.extension)
    .bind(&s.session_id)
    .bind(&s.ip_address)
    .bind(s.logged_in_at.0)
    .bind(s.last_activity.0)
    .bind(s.auto_logout_enabled)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO hot_desk_history (session_id, extension, device_id, device_label, ip_address, \
         logged_in_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.session_id)
    .bind(&s.extension)
    .bind(&s.device_id)
    .bind(&s.device_label)
    .bind(&s.ip_address)
    .bind(s.logged_in_at.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// A repeated login on the same device, or activity: `last_activity` (and the address
/// when given) move on.
pub async fn touch(
    conn: &mut Conn,
    device_id: &str,
    at: Timestamp,
    ip_address: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE hot_desk_sessions SET last_activity = $1, ip_address = COALESCE($2, ip_address) \
         WHERE device_id = $3",
    )
    .bind(at.0)
    .bind(ip_address)
    .bind(device_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends the session on `device_id` (if it is still `session_id`): the row goes, its
/// history row is closed with `reason`. Whether it was there.
pub async fn end(
    conn: &mut Conn,
    device_id: &str,
    session_id: &str,
    at: Timestamp,
    reason: &str,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM hot_desk_sessions WHERE device_id = $1 AND session_id = $2")
            .bind(device_id)
            .bind(session_id)
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE hot_desk_history SET logged_out_at = $1, logout_reason = $2 WHERE session_id = $3",
    )
    .bind(at.0)
    .bind(reason)
    .bind(session_id)
    .execute(conn)
    .await?;
    Ok(true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub session_id: String,
    pub extension: String,
    pub device_id: String,
    pub device_label: String,
    pub ip_address: Option<String>,
    pub logged_in_at: Timestamp,
    pub logged_out_at: Option<Timestamp>,
    pub logout_reason: Option<String>,
}

/// Sessions that began in `[from, to)`, newest first, optionally of one extension or
/// device.
pub async fn history<'c>(
    exec: impl Executor<'c, Database = Any>,
    from: Timestamp,
    to: Timestamp,
    extension: Option<&str>,
    device_id: Option<&str>,
    limit: i64,
) -> Result<Vec<HistoryRow>> {
    let rows = sqlx::query(
        "SELECT session_id, extension, device_id, device_label, ip_address, logged_in_at, \
         logged_out_at, logout_reason FROM hot_desk_history \
         WHERE logged_in_at >= $1 AND logged_in_at < $2 \
         AND ($3 IS NULL OR extension = $3) AND ($4 IS NULL OR device_id = $4) \
         ORDER BY logged_in_at DESC, session_id DESC LIMIT $5",
    )
    .bind(from.0)
    .bind(to.0)
    .bind(extension)
    .bind(device_id)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                session_id: r.try_get("session_id")?,
                extension: r.try_get("extension")?,
                device_id: r.try_get("device_id")?,
                device_label: r.try_get("device_label")?,
                ip_address: r.try_get("ip_address")?,
                logged_in_at: Timestamp(r.try_get("logged_in_at")?),
                logged_out_at: r.try_get::<Option<i64>, _>("logged_out_at")?.map(Timestamp),
                logout_reason: r.try_get("logout_reason")?,
            })
        })
        .collect()
}

pub async fn add_pin_failure(
    conn: &mut Conn,
    extension: &str,
    ip_address: Option<&str>,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO hot_desk_pin_failures (extension, ip_address, failed_at) VALUES ($1, $2, $3)",
    )
    .bind(extension)
    .bind(ip_address)
    .bind(at.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Failures for `extension` since `since`, and the time of the latest.
pub async fn pin_failures_since<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
    since: Timestamp,
) -> Result<(i64, Option<Timestamp>)> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MAX(failed_at) AS latest FROM hot_desk_pin_failures \
         WHERE extension = $1 AND failed_at >= $2",
    )
    .bind(extension)
    .bind(since.0)
    .fetch_one(exec)
    .await?;
    Ok((
        row.try_get("n")?,
        row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
    ))
}

/// Failures in `[from, to)` (the reports).
pub async fn pin_failures_between<'c>(
    exec: impl Executor<'c, Database = Any>,
    from: Timestamp,
    to: Timestamp,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM hot_desk_pin_failures WHERE failed_at >= $1 AND failed_at < $2",
    )
    .bind(from.0)
    .bind(to.0)
    .fetch_one(exec)
    .await?;
    row.try_get("n")
}

/// Forgets failures older than `before` (they no longer lock nor count in reports of
/// the retention window).
pub async fn prune_pin_failures(conn: &mut Conn, before: Timestamp) -> Result<u64> {
    let done = sqlx::query("DELETE FROM hot_desk_pin_failures WHERE failed_at < $1")
        .bind(before.0)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
