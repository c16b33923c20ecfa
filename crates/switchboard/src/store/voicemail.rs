//! Tables `voicemail_messages` and `voicemail_greetings`: the metadata of voicemail
//! messages and custom greetings. The audio itself is a WAV file under
//! `data_dir/voicemail/`, whose name relative to that directory is in `file`.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: String,
    pub extension: String,
    pub caller: String,
    pub caller_name: String,
    pub received_at: Timestamp,
    pub duration_ms: i64,
    /// `new` or `saved`.
    pub folder: String,
    /// Relative to `data_dir/voicemail/`.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreetingRow {
    pub extension: String,
    pub file: String,
    pub duration_ms: i64,
    pub updated_at: Timestamp,
}

const COLUMNS: &str = "id, extension, caller, caller_name, received_at, duration_ms, folder, file";

fn message(r: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        extension: r.try_get("extension")?,
        caller: r.try_get("caller")?,
        caller_name: r.try_get("caller_name")?,
        received_at: Timestamp(r.try_get("received_at")?),
        duration_ms: r.try_get("duration_ms")?,
        folder: r.try_get("folder")?,
        file: r.try_get("file")?,
    })
}

pub async fn insert(conn: &mut Conn, row: &MessageRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO voicemail_messages \
         (id, extension, caller, caller_name, received_at, duration_ms, folder, file) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(&row.extension)
    .bind(&row.caller)
    .bind(&row.caller_name)
    .bind(row.received_at.0)
    .bind(row.duration_ms)
    .bind(&row.folder)
    .bind(&row.file)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Message `id` of `extension`.
pub async fn get<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
    id: &str,
) -> Result<Option<MessageRow>> {
    let sql = format!("SELECT {COLUMNS} FROM voicemail_messages WHERE extension = $1 AND id = $2");
    // Only the fixed column list is formatted in; every value is bound.
    sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(extension)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(message)
        .transpose()
}

/// A page of `extension`'s messages, newest first (`limit` `None`: all of them).
pub async fn list<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
    limit: Option<i64>,
    offset: i64,
) -> Result<Vec<MessageRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM voicemail_messages WHERE extension = $1 \
         ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    // Only the fixed column list is formatted in; every value is bound. No limit is the
    // largest one: `LIMIT ALL` is PostgreSQL's, `LIMIT -1` SQLite's.
    sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(extension)
        .bind(limit.unwrap_or(i64::MAX))
        .bind(offset)
        .fetch_all(exec)
        .await?
        .iter()
        .map(message)
        .collect()
}

/// The ids of every message of `extension` (the orphan-file sweep).
pub async fn ids<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Vec<String>> {
    sqlx::query("SELECT id FROM voicemail_messages WHERE extension = $1")
        .bind(extension)
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// How many messages `extension` has in each folder: `(folder, count)`.
pub async fn counts<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Vec<(String, i64)>> {
    sqlx::query(
        "SELECT folder, COUNT(*) AS n FROM voicemail_messages WHERE extension = $1 GROUP BY folder",
    )
    .bind(extension)
    .fetch_all(exec)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("folder")?, r.try_get("n")?)))
    .collect()
}

/// Moves message `id` of `extension` to `folder` when it is in `from`; whether it was.
pub async fn move_folder(
    conn: &mut Conn,
    extension: &str,
    id: &str,
    from: &str,
    folder: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE voicemail_messages SET folder = $1 WHERE extension = $2 AND id = $3 AND folder = $4",
    )
    .bind(folder)
    .bind(extension)
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes message `id` of `extension`; whether it existed.
pub async fn delete(conn: &mut Conn, extension: &str, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM voicemail_messages WHERE extension = $1 AND id = $2")
        .bind(extension)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn greeting(r: &AnyRow) -> Result<GreetingRow> {
    Ok(GreetingRow {
        extension: r.try_get("extension")?,
        file: r.try_get("file")?,
        duration_ms: r.try_get("duration_ms")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

pub async fn get_greeting<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Option<GreetingRow>> {
    sqlx::query(
        "SELECT extension, file, duration_ms, updated_at FROM voicemail_greetings WHERE extension = $1",
    )
    .bind(extension)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(greeting)
    .transpose()
}

/// Inserts or replaces the greeting of `row.extension`.
pub async fn upsert_greeting(conn: &mut Conn, row: &GreetingRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO voicemail_greetings (extension, file, duration_ms, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (extension) DO UPDATE SET file = excluded.file, \
         duration_ms = excluded.duration_ms, updated_at = excluded.updated_at",
    )
    .bind(&row.extension)
    .bind(&row.file)
    .bind(row.duration_ms)
    .bind(row.updated_at.0)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Deletes the greeting of `extension`; whether there was one.
pub async fn delete_greeting(conn: &mut Conn, extension: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM voicemail_greetings WHERE extension = $1")
        .bind(extension)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
