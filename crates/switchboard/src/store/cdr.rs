//! Table `cdr`: one call detail record per call, written in batches by the recorder.

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{Conn, Result};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrRow {
    pub id: String,
    pub caller: String,
    pub caller_name: String,
    pub callee: String,
    pub answered_by: Option<String>,
    pub started_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Timestamp,
    pub duration: i64,
    pub disposition: String,
    pub hangup_cause: String,
    pub codec: Option<String>,
}

const COLUMNS: &str = "id, caller, caller_name, callee, answered_by, started_at, answered_at, \
                       ended_at, duration, disposition, hangup_cause, codec";
const COLUMN_COUNT: usize = 12;
/// Rows per statement, well under both databases' bound-parameter limits.
const INSERT_CHUNK: usize = 200;

fn from_row(r: &AnyRow) -> Result<CdrRow> {
    Ok(CdrRow {
        id: r.try_get("id")?,
        caller: r.try_get("caller")?,
        caller_name: r.try_get("caller_name")?,
        callee: r.try_get("callee")?,
        answered_by: r.try_get("answered_by")?,
        started_at: Timestamp(r.try_get("started_at")?),
        answered_at: r.try_get::<Option<i64>, _>("answered_at")?.map(Timestamp),
        ended_at: Timestamp(r.try_get("ended_at")?),
        duration: r.try_get("duration")?,
        disposition: r.try_get("disposition")?,
        hangup_cause: r.try_get("hangup_cause")?,
        codec: r.try_get("codec")?,
    })
}

/// Inserts records, many per statement. Taken by value: binding moves each text
/// rather than copying it (sqlx copies a bound `&str`, twice).
pub async fn insert_many(conn: &mut Conn, rows: Vec<CdrRow>) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<CdrRow> = rows.by_ref().take(INSERT_CHUNK).collect();
        let mut sql = format!("INSERT INTO cdr ({COLUMNS}) VALUES ");
        sql.push_str(&super::row_placeholders(conn, chunk.len(), COLUMN_COUNT));
        // Only placeholders are added to the SQL; every value is bound.
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.id)
                .bind(r.caller)
                .bind(r.caller_name)
                .bind(r.callee)
                .bind(r.answered_by)
                .bind(r.started_at.0)
                .bind(r.answered_at.map(|t| t.0))
                .bind(r.ended_at.0)
                .bind(r.duration)
                .bind(r.disposition)
                .bind(r.hangup_cause)
                .bind(r.codec);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct CdrFilter {
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub to: Option<Timestamp>,
    /// Calls this extension made, was called on, or answered.
    pub extension: Option<String>,
    pub disposition: Option<String>,
}

/// The WHERE clause for `filter`, with `$1…` placeholders in bind order.
fn where_clause(filter: &CdrFilter) -> (String, usize) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.from.is_some() {
        sql.push_str(&format!(" AND started_at >= {}", next()));
    }
    if filter.to.is_some() {
        sql.push_str(&format!(" AND started_at < {}", next()));
    }
    if filter.extension.is_some() {
        let p = next();
        sql.push_str(&format!(
            " AND (caller = {p} OR callee = {p} OR answered_by = {p})"
        ));
    }
    if filter.disposition.is_some() {
        sql.push_str(&format!(" AND disposition = {}", next()));
    }
    (sql, n)
}

fn bind_filter<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    filter: &CdrFilter,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    if let Some(t) = filter.from {
        q = q.bind(t.0);
    }
    if let Some(t) = filter.to {
        q = q.bind(t.0);
    }
    if let Some(e) = &filter.extension {
        q = q.bind(e.clone());
    }
    if let Some(d) = &filter.disposition {
        q = q.bind(d.clone());
    }
    q
}

/// Records matching `filter`, newest first.
pub async fn list(
    pool: &sqlx::AnyPool,
    filter: &CdrFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<CdrRow>> {
    let (clause, n) = where_clause(filter);
    let sql = format!(
        "SELECT {COLUMNS} FROM cdr{clause} ORDER BY started_at DESC, id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    // Only fixed clauses and placeholders are in the SQL; every value is bound.
    let q = bind_filter(sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)), filter);
    q.bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// How many records match `filter`.
pub async fn count(pool: &sqlx::AnyPool, filter: &CdrFilter) -> Result<i64> {
    let (clause, _) = where_clause(filter);
    let sql = format!("SELECT COUNT(*) AS n FROM cdr{clause}");
    let q = bind_filter(sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)), filter);
    q.fetch_one(pool).await?.try_get("n")
}
