//! Table `auto_attendant`: the attendant's settings as last set through the API, one
//! row (id 1) of JSON. No row: config.yml's `auto_attendant` section applies.

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
