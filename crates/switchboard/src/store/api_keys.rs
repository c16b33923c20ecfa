//! Table `api_keys`: long-lived bearer keys for integrations, stored as SHA-256.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::Result;
use crate::role::Role;
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    pub role: Role,
    pub extension: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

fn from_row(row: &AnyRow) -> Result<ApiKeyRow> {
    let role: String = row.try_get("role")?;
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        role: Role::parse(&role).unwrap_or(Role::User),
        extension: row.try_get("extension")?,
        created_by: row.try_get("created_by")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
    })
}

macro_rules! columns {
    () => {
        "id, name, key_hash, role, extension, created_by, created_at, last_used_at"
    };
}

pub async fn insert<'c>(exec: impl Executor<'c, Database = Any>, k: &ApiKeyRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, role, extension, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.id)
    .bind(&k.name)
    .bind(&k.key_hash)
    .bind(k.role.as_str())
    .bind(&k.extension)
    .bind(&k.created_by)
    .bind(k.created_at.millis())
    .execute(exec)
    .await
    .map(|_| ())
}

pub async fn find_by_hash<'c>(
    exec: impl Executor<'c, Database = Any>,
    key_hash: &str,
) -> Result<Option<ApiKeyRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys WHERE key_hash = $1"
    ))
    .bind(key_hash)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<ApiKeyRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys ORDER BY created_at, id"
    ))
    .fetch_all(exec)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn touch<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now.millis())
        .execute(exec)
        .await
        .map(|_| ())
}

pub async fn delete<'c>(exec: impl Executor<'c, Database = Any>, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id)
        .execute(exec)
        .await?;
    Ok(done.rows_affected() == 1)
}
