//! Tables `device_tokens` and `devices` (migration 0013).

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::time::Timestamp;

fn opt_time(r: &AnyRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(r.try_get::<Option<i64>, _>(column)?.map(Timestamp))
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub code: String,
    pub note: Option<String>,
    pub extension: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub used_by: Option<String>,
}

const TOKEN_COLUMNS: &str =
    "code, note, extension, created_by, created_at, expires_at, used_at, used_by";

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        code: r.try_get("code")?,
        note: r.try_get("note")?,
        extension: r.try_get("extension")?,
        created_by: r.try_get("created_by")?,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: Timestamp(r.try_get("expires_at")?),
        used_at: opt_time(r, "used_at")?,
        used_by: r.try_get("used_by")?,
    })
}

pub async fn insert_token(conn: &mut Conn, t: &TokenRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO device_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)"
    )))
    .bind(&t.code)
    .bind(&t.note)
    .bind(&t.extension)
    .bind(&t.created_by)
    .bind(t.created_at.millis())
    .bind(t.expires_at.millis())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn token<'c>(
    exec: impl Executor<'c, Database = Any>,
    code: &str,
) -> Result<Option<TokenRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM device_tokens WHERE code = $1"
    )))
    .bind(code)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(token_row)
    .transpose()
}

/// Unused tokens that have not expired, newest first.
pub async fn open_tokens<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: Timestamp,
) -> Result<Vec<TokenRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM device_tokens WHERE used_at IS NULL AND expires_at > $1 \
         ORDER BY created_at DESC"
    )))
    .bind(now.millis())
    .fetch_all(exec)
    .await?
    .iter()
    .map(token_row)
    .collect()
}

/// Burns an unused, unexpired token for `device_key`: true for the one request that
/// got it.
pub async fn burn_token(
    conn: &mut Conn,
    code: &str,
    device_key: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE device_tokens SET used_at = $3, used_by = $2 \
         WHERE code = $1 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(code)
    .bind(device_key)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_token(conn: &mut Conn, code: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM device_tokens WHERE code = $1 AND used_at IS NULL")
        .bind(code)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, Default)]
pub struct DeviceRow {
    pub device_key: String,
    pub secret_hash: String,
    pub extension: Option<String>,
    pub note: Option<String>,
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
    pub ip_lan: Option<String>,
    pub ip_public: Option<String>,
    pub mac: Option<String>,
    pub registered_at: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub online: bool,
    pub ssh_pubkey: Option<String>,
    pub ssh_user: Option<String>,
    pub ssh_key_updated_at: Option<Timestamp>,
}

const DEVICE_COLUMNS: &str = "device_key, secret_hash, extension, note, hostname, ip_address, \
     ip_lan, ip_public, mac, registered_at, last_seen, online, ssh_pubkey, ssh_user, \
     ssh_key_updated_at";

fn device_row(r: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        device_key: r.try_get("device_key")?,
        secret_hash: r.try_get("secret_hash")?,
        extension: r.try_get("extension")?,
        note: r.try_get("note")?,
        hostname: r.try_get("hostname")?,
        ip_address: r.try_get("ip_address")?,
        ip_lan: r.try_get("ip_lan")?,
        ip_public: r.try_get("ip_public")?,
        mac: r.try_get("mac")?,
        registered_at: Timestamp(r.try_get("registered_at")?),
        last_seen: opt_time(r, "last_seen")?,
        online: flag(r, "online")?,
        ssh_pubkey: r.try_get("ssh_pubkey")?,
        ssh_user: r.try_get("ssh_user")?,
        ssh_key_updated_at: opt_time(r, "ssh_key_updated_at")?,
    })
}

pub async fn insert_device(conn: &mut Conn, d: &DeviceRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO devices (device_key, secret_hash, extension, note, hostname, ip_address, \
         ip_lan, ip_public, mac, registered_at, online) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, FALSE)",
    )
    .bind(&d.device_key)
    .bind(&d.secret_hash)
    .bind(&d.extension)
    .bind(&d.note)
    .bind(&d.hostname)
    .bind(&d.ip_address)
    .bind(&d.ip_lan)
    .bind(&d.ip_public)
    .bind(&d.mac)
    .bind(d.registered_at.millis())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn device<'c>(
    exec: impl Executor<'c, Database = Any>,
    device_key: &str,
) -> Result<Option<DeviceRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_key = $1"
    )))
    .bind(device_key)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(device_row)
    .transpose()
}

pub async fn devices<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<DeviceRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY device_key"
    )))
    .fetch_all(exec)
    .await?
    .iter()
    .map(device_row)
    .collect()
}

/// Records a heartbeat; gives whether the device was offline before it.
pub async fn heartbeat(conn: &mut Conn, d: &DeviceRow, now: Timestamp) -> Result<bool> {
    let was = sqlx::query("SELECT online FROM devices WHERE device_key = $1")
        .bind(&d.device_key)
        .fetch_one(&mut *conn)
        .await?;
    let was_online = flag(&was, "online")?;
    sqlx::query(
        "UPDATE devices SET last_seen = $2, online = TRUE, ip_address = $3, \
         ip_lan = COALESCE($4, ip_lan), ip_public = COALESCE($5, ip_public), \
         mac = COALESCE($6, mac), note = COALESCE($7, note) WHERE device_key = $1",
    )
    .bind(&d.device_key)
    .bind(now.millis())
    .bind(&d.ip_address)
    .bind(&d.ip_lan)
    .bind(&d.ip_public)
    .bind(&d.mac)
    .bind(&d.note)
    .execute(conn)
    .await?;
    Ok(!was_online)
}

/// Marks offline the devices online but unseen since `before`; gives their keys.
pub async fn mark_offline(conn: &mut Conn, before: Timestamp) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "UPDATE devices SET online = FALSE WHERE online = TRUE AND last_seen < $1 \
         RETURNING device_key",
    )
    .bind(before.millis())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("device_key")).collect()
}

pub async fn set_ssh_key(
    conn: &mut Conn,
    device_key: &str,
    pubkey: &str,
    ssh_user: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE devices SET ssh_pubkey = $2, ssh_user = $3, ssh_key_updated_at = $4 \
         WHERE device_key = $1",
    )
    .bind(device_key)
    .bind(pubkey)
    .bind(ssh_user)
    .bind(now.millis())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn delete_device(conn: &mut Conn, device_key: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM devices WHERE device_key = $1")
        .bind(device_key)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
