//! Table `registrations`: the location service's bindings, written in batches by the
//! registrar and loaded into its cache at start.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    pub extension: String,
    pub binding_key: String,
    pub contact_uri: String,
    pub instance_id: Option<String>,
    pub reg_id: Option<i64>,
    /// Thousandths (q=0.5 → 500).
    pub q: Option<i64>,
    pub expires_at: Timestamp,
    pub call_id: String,
    pub cseq: i64,
    pub transport: String,
    pub source_ip: String,
    pub source_port: i64,
    pub user_agent: Option<String>,
    pub mac_address: Option<String>,
    /// The node holding the phone's flow (scale-out).
    pub node: String,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
}

macro_rules! columns {
    () => {
        "extension, binding_key, contact_uri, instance_id, reg_id, q, expires_at, call_id, cseq, \
         transport, source_ip, source_port, user_agent, mac_address, node, registered_at, updated_at"
    };
}

const COLUMN_COUNT: usize = 17;

fn from_row(r: &AnyRow) -> Result<BindingRow> {
    Ok(BindingRow {
        extension: r.try_get("extension")?,
        binding_key: r.try_get("binding_key")?,
        contact_uri: r.try_get("contact_uri")?,
        instance_id: r.try_get("instance_id")?,
        reg_id: r.try_get("reg_id")?,
        q: r.try_get("q")?,
        expires_at: Timestamp(r.try_get("expires_at")?),
        call_id: r.try_get("call_id")?,
        cseq: r.try_get("cseq")?,
        transport: r.try_get("transport")?,
        source_ip: r.try_get("source_ip")?,
        source_port: r.try_get("source_port")?,
        user_agent: r.try_get("user_agent")?,
        mac_address: r.try_get("mac_address")?,
        node: r.try_get("node")?,
        registered_at: Timestamp(r.try_get("registered_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

/// Rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
const UPSERT_CHUNK: usize = 200;

/// Inserts or refreshes bindings, many per statement (`registered_at` of an existing
/// binding is kept).
pub async fn upsert_many(conn: &mut Conn, rows: &[&BindingRow]) -> Result<()> {
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let mut sql = String::from(concat!(
            "INSERT INTO registrations (",
            columns!(),
            ") VALUES "
        ));
        sql.push_str(&super::row_placeholders(conn, chunk.len(), COLUMN_COUNT));
        sql.push_str(
            " ON CONFLICT (extension, binding_key) DO UPDATE SET contact_uri = excluded.contact_uri, \
             instance_id = excluded.instance_id, reg_id = excluded.reg_id, q = excluded.q, \
             expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq, \
             transport = excluded.transport, source_ip = excluded.source_ip, \
             source_port = excluded.source_port, user_agent = excluded.user_agent, \
             mac_address = excluded.mac_address, node = excluded.node, updated_at = excluded.updated_at",
        );
        // Built from fixed fragments and numbered placeholders only.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.extension)
                .bind(&r.binding_key)
                .bind(&r.contact_uri)
                .bind(&r.instance_id)
                .bind(r.reg_id)
                .bind(r.q)
                .bind(r.expires_at.millis())
                .bind(&r.call_id)
                .bind(r.cseq)
                .bind(&r.transport)
                .bind(&r.source_ip)
                .bind(r.source_port)
                .bind(&r.user_agent)
                .bind(&r.mac_address)
                .bind(&r.node)
                .bind(r.registered_at.millis())
                .bind(r.updated_at.millis());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn delete(conn: &mut Conn, extension: &str, binding_key: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM registrations WHERE extension = $1 AND binding_key = $2")
        .bind(extension)
        .bind(binding_key)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a binding only if it is still expired at `at` (a refresh may have landed).
pub async fn delete_if_expired(
    conn: &mut Conn,
    extension: &str,
    binding_key: &str,
    at: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM registrations WHERE extension = $1 AND binding_key = $2 AND expires_at <= $3",
    )
    .bind(extension)
    .bind(binding_key)
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Bindings still valid at `now` (the registrar's cache is rebuilt from these).
pub async fn live<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: Timestamp,
) -> Result<Vec<BindingRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM registrations WHERE expires_at > $1"
    ))
    .bind(now.millis())
    .fetch_all(exec)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn for_extension<'c>(
    exec: impl Executor<'c, Database = Any>,
    extension: &str,
    now: Timestamp,
) -> Result<Vec<BindingRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM registrations WHERE extension = $1 AND expires_at > $2 ORDER BY registered_at"
    ))
    .bind(extension)
    .bind(now.millis())
    .fetch_all(exec)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn count_live<'c>(
    exec: impl Executor<'c, Database = Any>,
    now: Timestamp,
) -> Result<i64> {
    sqlx::query("SELECT COUNT(*) AS n FROM registrations WHERE expires_at > $1")
        .bind(now.millis())
        .fetch_one(exec)
        .await?
        .try_get("n")
}

/// Whether a live registration from `source_ip` carries the MAC `mac` (normalised): a
/// request from that address comes from the phone itself.
pub async fn mac_registered_from<'c>(
    exec: impl Executor<'c, Database = Any>,
    mac: &str,
    source_ip: &str,
    now: Timestamp,
) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS found FROM registrations \
         WHERE mac_address = $1 AND source_ip = $2 AND expires_at > $3 LIMIT 1",
    )
    .bind(mac)
    .bind(source_ip)
    .bind(now.millis())
    .fetch_optional(exec)
    .await?;
    Ok(row.is_some())
}
