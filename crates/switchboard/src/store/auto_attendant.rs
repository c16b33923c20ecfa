//! Tables `auto_attendant`: the attendant's settings as last set through the API, one
//! row (id 1) of JSON (no row: config.yml's `auto_attendant` section applies); and
//! `auto_attendant_greeting`: its recorded greeting, if any (the audio is a file).

use sqlx::Row;

use super::{Conn, Db, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsRow {
    /// The settings, as the API's JSON.
    pub settings: String,
    pub updated_at: Timestamp,
    /// Who set them ([`Actor::label`](crate::features::Actor::label)).
    pub updated_by: String,
}

pub async fn get(db: &Db) -> Result<Option<SettingsRow>> {
    let row =
        sqlx::query("SELECT settings, updated_at, updated_by FROM auto_attendant WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| {
        Ok(SettingsRow {
            settings: r.try_get("settings")?,
            updated_at: Timestamp(r.try_get("updated_at")?),
            updated_by: r.try_get("updated_by")?,
        })
    })
    .transpose()
}

pub async fn put(conn: &mut Conn, row: &SettingsRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO auto_attendant (id, settings, updated_at, updated_by) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(&row.settings)
    .bind(row.updated_at.0)
    .bind(&row.updated_by)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreetingRow {
    pub duration_ms: i64,
    pub updated_at: Timestamp,
}

pub async fn get_greeting(db: &Db) -> Result<Option<GreetingRow>> {
    let row =
        sqlx::query("SELECT duration_ms, updated_at FROM auto_attendant_greeting WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| {
        Ok(GreetingRow {
            duration_ms: r.try_get("duration_ms")?,
            updated_at: Timestamp(r.try_get("updated_at")?),
        })
    })
    .transpose()
}

pub async fn put_greeting(conn: &mut Conn, row: &GreetingRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO auto_attendant_greeting (id, duration_ms, updated_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET duration_ms = excluded.duration_ms, \
         updated_at = excluded.updated_at",
    )
    .bind(row.duration_ms)
    .bind(row.updated_at.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether there was a greeting to delete.
pub async fn delete_greeting(conn: &mut Conn) -> Result<bool> {
    let done = sqlx::query("DELETE FROM auto_attendant_greeting WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
