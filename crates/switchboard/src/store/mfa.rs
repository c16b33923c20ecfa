//! Tables `mfa_secrets`, `mfa_backup_codes`, `mfa_yubikey_devices`,
//! `mfa_fido2_credentials` and `mfa_challenges` (migration 0012).
//!
//! Single use is enforced by the database, not by a read-then-write: a TOTP step, a
//! backup code and a challenge are each taken by one conditional statement, so two
//! nodes (or two requests) cannot both accept the same one.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::time::Timestamp;

fn opt_time(r: &AnyRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(r.try_get::<Option<i64>, _>(column)?.map(Timestamp))
}

#[derive(Debug, Clone)]
pub struct TotpRow {
    /// Encrypted under the master key.
    pub secret: String,
    pub active: bool,
    pub last_step: Option<i64>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

pub async fn totp<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Option<TotpRow>> {
    let row = sqlx::query(
        "SELECT secret, active, last_step, created_at, last_used_at FROM mfa_secrets \
         WHERE extension = $1",
    )
    .bind(extension)
    .fetch_optional(exec)
    .await?;
    row.map(|r| {
        Ok(TotpRow {
            secret: r.try_get("secret")?,
            active: flag(&r, "active")?,
            last_step: r.try_get("last_step")?,
            created_at: Timestamp(r.try_get("created_at")?),
            last_used_at: opt_time(&r, "last_used_at")?,
        })
    })
    .transpose()
}

/// Stores a new pending secret, replacing a pending one (never an active one).
pub async fn put_pending_totp(
    conn: &mut Conn,
    extension: &str,
    secret: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO mfa_secrets (extension, secret, active, created_at) VALUES ($1, $2, FALSE, $3) \
         ON CONFLICT (extension) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
         last_step = NULL, last_used_at = NULL WHERE mfa_secrets.active = FALSE",
    )
    .bind(extension)
    .bind(secret)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes time step `step` for the extension's TOTP: true when it is later than the
/// last step taken (and, with `activate`, turns a pending enrolment active).
pub async fn take_totp_step(
    conn: &mut Conn,
    extension: &str,
    step: i64,
    activate: bool,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE mfa_secrets SET last_step = $2, last_used_at = $3, active = TRUE \
         WHERE extension = $1 AND (last_step IS NULL OR last_step < $2) AND active = $4",
    )
    .bind(extension)
    .bind(step)
    .bind(now.millis())
    .bind(!activate)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_totp(conn: &mut Conn, extension: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM mfa_secrets WHERE extension = $1")
        .bind(extension)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the extension's backup codes with `hashes`.
pub async fn replace_backup_codes(
    conn: &mut Conn,
    extension: &str,
    hashes: &[String],
    now: Timestamp,
) -> Result<()> {
    delete_backup_codes(conn, extension).await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO mfa_backup_codes (extension, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(extension)
        .bind(hash)
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn delete_backup_codes(conn: &mut Conn, extension: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM mfa_backup_codes WHERE extension = $1")
        .bind(extension)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Marks the code with this hash used; false when there is none unused.
pub async fn take_backup_code(
    conn: &mut Conn,
    extension: &str,
    hash: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE mfa_backup_codes SET used_at = $3 \
         WHERE extension = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(extension)
    .bind(hash)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Unused codes left, and when the set was issued.
pub async fn backup_codes_left<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<(i64, Option<Timestamp>)> {
    let r = sqlx::query(
        "SELECT COUNT(*) - COUNT(used_at) AS left_, MAX(created_at) AS created_at \
         FROM mfa_backup_codes WHERE extension = $1",
    )
    .bind(extension)
    .fetch_one(exec)
    .await?;
    Ok((r.try_get("left_")?, opt_time(&r, "created_at")?))
}

#[derive(Debug, Clone)]
pub struct YubikeyRow {
    pub public_id: String,
    pub extension: String,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

fn yubikey_row(r: &AnyRow) -> Result<YubikeyRow> {
    Ok(YubikeyRow {
        public_id: r.try_get("public_id")?,
        extension: r.try_get("extension")?,
        name: r.try_get("name")?,
        created_at: Timestamp(r.try_get("created_at")?),
        last_used_at: opt_time(r, "last_used_at")?,
    })
}

const YUBIKEY_COLUMNS: &str = "public_id, extension, name, created_at, last_used_at";

pub async fn yubikeys<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Vec<YubikeyRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {YUBIKEY_COLUMNS} FROM mfa_yubikey_devices WHERE extension = $1 ORDER BY created_at"
    )))
    .bind(extension)
    .fetch_all(exec)
    .await?
    .iter()
    .map(yubikey_row)
    .collect()
}

pub async fn yubikey<'c>(
    exec: impl Executor<'c, Database = Any>,
    public_id: &str,
) -> Result<Option<YubikeyRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {YUBIKEY_COLUMNS} FROM mfa_yubikey_devices WHERE public_id = $1"
    )))
    .bind(public_id)
    .fetch_optional(exec)
    .await?
    .as_ref()
    .map(yubikey_row)
    .transpose()
}

pub async fn insert_yubikey(conn: &mut Conn, y: &YubikeyRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mfa_yubikey_devices ({YUBIKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    )))
    .bind(&y.public_id)
    .bind(&y.extension)
    .bind(&y.name)
    .bind(y.created_at.millis())
    .bind(y.last_used_at.map(|t| t.millis()))
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn touch_yubikey<'c>(
    exec: impl Executor<'c, Database = Any>,
    public_id: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE mfa_yubikey_devices SET last_used_at = $2 WHERE public_id = $1")
        .bind(public_id)
        .bind(now.millis())
        .execute(exec)
        .await
        .map(|_| ())
}

pub async fn delete_yubikey(conn: &mut Conn, extension: &str, public_id: &str) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM mfa_yubikey_devices WHERE extension = $1 AND public_id = $2")
            .bind(extension)
            .bind(public_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone)]
pub struct Fido2Row {
    pub id: String,
    pub extension: String,
    pub credential_id: String,
    pub name: String,
    /// webauthn-rs `SecurityKey` as JSON.
    pub credential: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

const FIDO2_COLUMNS: &str =
    "id, extension, credential_id, name, credential, created_at, last_used_at";

fn fido2_row(r: &AnyRow) -> Result<Fido2Row> {
    Ok(Fido2Row {
        id: r.try_get("id")?,
        extension: r.try_get("extension")?,
        credential_id: r.try_get("credential_id")?,
        name: r.try_get("name")?,
        credential: r.try_get("credential")?,
        created_at: Timestamp(r.try_get("created_at")?),
        last_used_at: opt_time(r, "last_used_at")?,
    })
}

pub async fn fido2_keys<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<Vec<Fido2Row>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FIDO2_COLUMNS} FROM mfa_fido2_credentials WHERE extension = $1 ORDER BY created_at"
    )))
    .bind(extension)
    .fetch_all(exec)
    .await?
    .iter()
    .map(fido2_row)
    .collect()
}

pub async fn insert_fido2(conn: &mut Conn, k: &Fido2Row) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mfa_fido2_credentials ({FIDO2_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&k.id)
    .bind(&k.extension)
    .bind(&k.credential_id)
    .bind(&k.name)
    .bind(&k.credential)
    .bind(k.created_at.millis())
    .bind(k.last_used_at.map(|t| t.millis()))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Stores a key's new state (its signature counter) after a login.
pub async fn update_fido2_use<'c>(
    exec: impl Executor<'c, Database = Any>,
    credential_id: &str,
    credential: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE mfa_fido2_credentials SET credential = $2, last_used_at = $3 WHERE credential_id = $1",
    )
    .bind(credential_id)
    .bind(credential)
    .bind(now.millis())
    .execute(exec)
    .await
    .map(|_| ())
}

pub async fn delete_fido2(conn: &mut Conn, extension: &str, id: &str) -> Result<Option<String>> {
    let row = sqlx::query(
        "DELETE FROM mfa_fido2_credentials WHERE extension = $1 AND id = $2 RETURNING name",
    )
    .bind(extension)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("name")).transpose()
}

/// Whether the extension has a primary second factor (active TOTP, a YubiKey, a FIDO2 key).
pub async fn has_primary<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM mfa_secrets WHERE extension = $1 AND active = TRUE) \
         + (SELECT COUNT(*) FROM mfa_yubikey_devices WHERE extension = $1) \
         + (SELECT COUNT(*) FROM mfa_fido2_credentials WHERE extension = $1) AS n",
    )
    .bind(extension)
    .fetch_one(exec)
    .await?;
    Ok(r.try_get::<i64, _>("n")? > 0)
}

pub async fn delete_all(conn: &mut Conn, extension: &str) -> Result<()> {
    for table in [
        "mfa_secrets",
        "mfa_backup_codes",
        "mfa_yubikey_devices",
        "mfa_fido2_credentials",
        "mfa_challenges",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE extension = $1"
        )))
        .bind(extension)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct ChallengeRow {
    pub id: String,
    pub kind: String,
    pub extension: String,
    pub state: Option<String>,
    pub failures: i64,
    pub expires_at: Timestamp,
}

pub async fn put_challenge(conn: &mut Conn, c: &ChallengeRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO mfa_challenges (id, kind, extension, state, failures, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, \
         extension = excluded.extension, state = excluded.state, failures = excluded.failures, \
         expires_at = excluded.expires_at",
    )
    .bind(&c.id)
    .bind(&c.kind)
    .bind(&c.extension)
    .bind(&c.state)
    .bind(c.failures)
    .bind(c.expires_at.millis())
    .execute(conn)
    .await
    .map(|_| ())
}

/// The live challenge `id` of `kind` (expired ones are not returned).
pub async fn challenge<'c>(
    exec: impl Executor<'c, Database = Any>,
    id: &str,
    kind: &str,
    now: Timestamp,
) -> Result<Option<ChallengeRow>> {
    let row = sqlx::query(
        "SELECT id, kind, extension, state, failures, expires_at FROM mfa_challenges \
         WHERE id = $1 AND kind = $2 AND expires_at > $3",
    )
    .bind(id)
    .bind(kind)
    .bind(now.millis())
    .fetch_optional(exec)
    .await?;
    row.map(|r| {
        Ok(ChallengeRow {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            extension: r.try_get("extension")?,
            state: r.try_get("state")?,
            failures: r.try_get("failures")?,
            expires_at: Timestamp(r.try_get("expires_at")?),
        })
    })
    .transpose()
}

/// Takes (deletes) a challenge: true for the one request that got it.
pub async fn take_challenge<'c>(exec: impl Executor<'c, Database = Any>, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM mfa_challenges WHERE id = $1")
        .bind(id)
        .execute(exec)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a wrong answer; gives the failures so far (0 when the challenge is gone).
pub async fn fail_challenge<'c>(exec: impl Executor<'c, Database = Any>, id: &str) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE mfa_challenges SET failures = failures + 1 WHERE id = $1 RETURNING failures",
    )
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.map(|r| r.try_get("failures")).transpose()?.unwrap_or(0))
}

pub async fn delete_expired_challenges<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: Timestamp,
) -> Result<u64> {
    let done = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(exec)
        .await?;
    Ok(done.rows_affected())
}
