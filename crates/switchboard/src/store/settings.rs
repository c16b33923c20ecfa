//! Table `node_settings`: named values of the installation, shared by every node.

use sqlx::Row;

use super::{Conn, Db, Result};

pub async fn get(db: &Db, name: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT value FROM node_settings WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| r.try_get("value")).transpose()
}

/// Stores `value` under `name` unless a value is there already (another node came
/// first); gives the value that is stored.
pub async fn get_or_insert(db: &Db, name: &str, value: &str) -> Result<String> {
    let mut tx = db.begin().await?;
    insert_if_absent(&mut tx, name, value).await?;
    tx.commit().await?;
    Ok(get(db, name).await?.unwrap_or_else(|| value.to_owned()))
}

async fn insert_if_absent(conn: &mut Conn, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO node_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
