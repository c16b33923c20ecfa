//! Tables `security_blocked_ips` and `security_threat_events`.

use sqlx::{Any, Executor, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    pub network: String,
    pub reason: String,
    pub source: String,
    pub actor: String,
    pub blocked_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

pub async fn blocks<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<BlockRow>> {
    let rows = sqlx::query(
        "SELECT network, reason, source, actor, blocked_at, expires_at FROM security_blocked_ips \
         ORDER BY blocked_at, network",
    )
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(BlockRow {
                network: r.try_get("network")?,
                reason: r.try_get("reason")?,
                source: r.try_get("source")?,
                actor: r.try_get("actor")?,
                blocked_at: Timestamp(r.try_get("blocked_at")?),
                expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
            })
        })
        .collect()
}

/// Stores a block, replacing one of the same network.
pub async fn put_block(conn: &mut Conn, b: &BlockRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO security_blocked_ips (network, reason, source, actor, blocked_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (network) DO UPDATE SET reason = excluded.reason, \
         source = excluded.source, actor = excluded.actor, blocked_at = excluded.blocked_at, \
         expires_at = excluded.expires_at",
    )
    .bind(&b.network)
    .bind(&b.reason)
    .bind(&b.source)
    .bind(&b.actor)
    .bind(b.blocked_at.0)
    .bind(b.expires_at.map(|t| t.0))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the block of `network`, unless it was replaced by one that ends later than
/// `if_expires_by` (an expiry racing a new block). Whether a row went.
pub async fn delete_block(
    conn: &mut Conn,
    network: &str,
    if_expires_by: Option<Timestamp>,
) -> Result<bool> {
    let done =
        match if_expires_by {
            Some(t) => sqlx::query(
                "DELETE FROM security_blocked_ips WHERE network = $1 AND expires_at IS NOT NULL \
                 AND expires_at <= $2",
            )
            .bind(network)
            .bind(t.0)
            .execute(conn)
            .await?,
            None => {
                sqlx::query("DELETE FROM security_blocked_ips WHERE network = $1")
                    .bind(network)
                    .execute(conn)
                    .await?
            }
        };
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreatRow {
    pub id: String,
    pub ip: String,
    pub kind: String,
    pub protocol: String,
    pub detail: String,
    pub score: i64,
    pub occurred_at: Timestamp,
}

pub async fn add_threat(conn: &mut Conn, t: &ThreatRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO security_threat_events (id, ip, kind, protocol, detail, score, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.ip)
    .bind(&t.kind)
    .bind(&t.protocol)
    .bind(&t.detail)
    .bind(t.score)
    .bind(t.occurred_at.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Threat events since `since`, newest first, optionally of one address.
pub async fn threats<'c>(
    exec: impl Executor<'c, Database = Any>,
    since: Timestamp,
    ip: Option<&str>,
    limit: i64,
) -> Result<Vec<ThreatRow>> {
    let rows = sqlx::query(
        "SELECT id, ip, kind, protocol, detail, score, occurred_at FROM security_threat_events \
         WHERE occurred_at >= $1 AND ($2 IS NULL OR ip = $2) ORDER BY occurred_at DESC, id DESC LIMIT $3",
    )
    .bind(since.0)
    .bind(ip)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ThreatRow {
                id: r.try_get("id")?,
                ip: r.try_get("ip")?,
                kind: r.try_get("kind")?,
                protocol: r.try_get("protocol")?,
                detail: r.try_get("detail")?,
                score: r
                    .try_get::<i64, _>("score")
                    .or_else(|_| r.try_get::<i32, _>("score").map(i64::from))?,
                occurred_at: Timestamp(r.try_get("occurred_at")?),
            })
        })
        .collect()
}

/// Removes threat events older than `before`.
pub async fn prune_threats(conn: &mut Conn, before: Timestamp) -> Result<u64> {
    let done = sqlx::query("DELETE FROM security_threat_events WHERE occurred_at < $1")
        .bind(before.0)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
