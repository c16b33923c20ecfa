//! Table `auth_sessions`: web and API login tokens, stored as SHA-256 of the token.

use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::role::Role;
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub extension: &'a str,
    pub csrf_token: &'a str,
    pub now: Timestamp,
    pub expires_at: Timestamp,
    pub ip_address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn insert(conn: &mut Conn, s: &NewSession<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO auth_sessions (token_hash, extension, csrf_token, created_at, last_seen_at, \
         expires_at, ip_address, user_agent) VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
    )
    .bind(s.token_hash)
    .bind(s.extension)
    .bind(s.csrf_token)
    .bind(s.now.millis())
    .bind(s.expires_at.millis())
    .bind(s.ip_address)
    .bind(s.user_agent)
    .execute(conn)
    .await
    .map(|_| ())
}

/// A session with the state of its extension, as authentication needs it.
#[derive(Debug, Clone)]
pub struct SessionWithOwner {
    pub token_hash: String,
    pub extension: String,
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub role: Role,
    pub name: String,
    pub active: bool,
    pub must_change_password: bool,
}

pub async fn find<'c>(
    exec: impl Executor<'c, Database = Any>,
    token_hash: &str,
) -> Result<Option<SessionWithOwner>> {
    let row = sqlx::query(
        "SELECT s.token_hash, s.extension, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at, \
         e.role, e.name, e.active, e.must_change_password \
         FROM auth_sessions s JOIN extensions e ON e.number = s.extension WHERE s.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(exec)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    Ok(Some(SessionWithOwner {
        token_hash: row.try_get("token_hash")?,
        extension: row.try_get("extension")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        role: Role::parse(&role).unwrap_or(Role::User),
        name: row.try_get("name")?,
        active: flag(&row, "active")?,
        must_change_password: flag(&row, "must_change_password")?,
    }))
}

pub async fn touch<'c>(
    exec: impl Executor<'c, Database = Any>,
    token_hash: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE auth_sessions SET last_seen_at = $2 WHERE token_hash = $1")
        .bind(token_hash)
        .bind(now.millis())
        .execute(exec)
        .await
        .map(|_| ())
}

pub async fn delete<'c>(exec: impl Executor<'c, Database = Any>, token_hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(exec)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every session of an extension except `keep` (the one changing its password).
pub async fn delete_for_extension(
    conn: &mut Conn,
    extension: &str,
    keep: Option<&str>,
) -> Result<u64> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE extension = $1 AND token_hash <> $2")
        .bind(extension)
        .bind(keep.unwrap_or(""))
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Removes sessions past their absolute expiry or idle for longer than `idle_secs`.
pub async fn delete_expired<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: Timestamp,
    idle_secs: u64,
) -> Result<u64> {
    let idle_cutoff = now.millis() - (idle_secs as i64) * 1000;
    let done =
        sqlx::query("DELETE FROM auth_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now.millis())
            .bind(idle_cutoff)
            .execute(exec)
            .await?;
    Ok(done.rows_affected())
}
