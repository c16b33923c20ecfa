//! Table `extensions`: profile, role, state and credential hashes.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Backend, Conn, Result, flag};
use crate::role::Role;
use crate::time::Timestamp;

/// One row, credentials as stored (hashes only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionRow {
    pub number: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub allow_external: bool,
    pub voicemail_enabled: bool,
    pub forward_target: Option<String>,
    pub forward_when: Option<String>,
    pub active: bool,
    pub ad_synced: bool,
    pub ad_username: Option<String>,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub sip_realm: Option<String>,
    pub sip_ha1_md5: Option<String>,
    pub sip_ha1_sha256: Option<String>,
    pub voicemail_pin_hash: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

macro_rules! columns {
    () => {
        "number, name, email, role, allow_external, voicemail_enabled, forward_target, forward_when, \
         active, ad_synced, ad_username, password_hash, must_change_password, sip_realm, sip_ha1_md5, \
         sip_ha1_sha256, voicemail_pin_hash, created_at, updated_at"
    };
}

macro_rules! insert_sql {
    () => {
        concat!(
            "INSERT INTO extensions (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        )
    };
}

fn from_row(row: &AnyRow) -> Result<ExtensionRow> {
    let role: String = row.try_get("role")?;
    Ok(ExtensionRow {
        number: row.try_get("number")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("role {role}").into()))?,
        allow_external: flag(row, "allow_external")?,
        voicemail_enabled: flag(row, "voicemail_enabled")?,
        forward_target: row.try_get("forward_target")?,
        forward_when: row.try_get("forward_when")?,
        active: flag(row, "active")?,
        ad_synced: flag(row, "ad_synced")?,
        ad_username: row.try_get("ad_username")?,
        password_hash: row.try_get("password_hash")?,
        must_change_password: flag(row, "must_change_password")?,
        sip_realm: row.try_get("sip_realm")?,
        sip_ha1_md5: row.try_get("sip_ha1_md5")?,
        sip_ha1_sha256: row.try_get("sip_ha1_sha256")?,
        voicemail_pin_hash: row.try_get("voicemail_pin_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

pub async fn get<'c>(
    exec: impl Executor<'c, Database = Any>,
    number: &str,
) -> Result<Option<ExtensionRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM extensions WHERE number = $1"
    ))
    .bind(number)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads a row inside a write transaction, locking it on PostgreSQL so concurrent
/// read-modify-write cycles cannot lose an update (SQLite's `BEGIN IMMEDIATE` already
/// serialises writers).
pub async fn get_for_update(
    conn: &mut Conn,
    backend: Backend,
    number: &str,
) -> Result<Option<ExtensionRow>> {
    let sql = match backend {
        Backend::Postgres => concat!(
            "SELECT ",
            columns!(),
            " FROM extensions WHERE number = $1 FOR UPDATE"
        ),
        Backend::Sqlite => concat!("SELECT ", columns!(), " FROM extensions WHERE number = $1"),
    };
    let row = sqlx::query(sql).bind(number).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Case-insensitive match on number, name or e-mail.
    pub search: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

impl ListFilter {
    /// The WHERE clause and its string arguments, numbered from `$1`.
    fn clause(&self) -> (String, Vec<String>) {
        let mut parts = Vec::new();
        let mut args = Vec::new();
        if let Some(search) = &self.search {
            args.push(format!(
                "%{}%",
                search
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ));
            let n = args.len();
            parts.push(format!(
                "(LOWER(number) LIKE ${n} ESCAPE '\\' OR LOWER(name) LIKE ${n} ESCAPE '\\' \
                 OR LOWER(COALESCE(email, '')) LIKE ${n} ESCAPE '\\')"
            ));
        }
        if let Some(role) = self.role {
            args.push(role.as_str().to_owned());
            parts.push(format!("role = ${}", args.len()));
        }
        if let Some(active) = self.active {
            // A literal keeps the argument list all-text; both databases compare it.
            parts.push(if active {
                "active = TRUE".into()
            } else {
                "active = FALSE".into()
            });
        }
        let clause = if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        };
        (clause, args)
    }
}

/// A page of rows ordered numerically where numbers are digits (so 0, 2, 10, 1001), then
/// virtual extensions by name.
pub async fn list<'c>(
    exec: impl Executor<'c, Database = Any>,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<ExtensionRow>> {
    let (clause, args) = filter.clause();
    let n = args.len();
    let sql = format!(
        concat!(
            "SELECT ",
            columns!(),
            " FROM extensions{} ORDER BY LENGTH(number), number LIMIT ${} OFFSET ${}"
        ),
        clause,
        n + 1,
        n + 2
    );
    // Built only from fixed fragments; every value is a bound parameter.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for arg in args {
        query = query.bind(arg);
    }
    let rows = query.bind(limit).bind(offset).fetch_all(exec).await?;
    rows.iter().map(from_row).collect()
}

pub async fn count<'c>(
    exec: impl Executor<'c, Database = Any>,
    filter: &ListFilter,
) -> Result<i64> {
    let (clause, args) = filter.clause();
    let sql = format!("SELECT COUNT(*) AS n FROM extensions{clause}");
    // Built only from fixed fragments; every value is a bound parameter.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for arg in args {
        query = query.bind(arg);
    }
    query.fetch_one(exec).await?.try_get("n")
}

/// Active admins, other than `except` when given.
pub async fn count_active_admins(conn: &mut Conn, except: Option<&str>) -> Result<i64> {
    sqlx::query("SELECT COUNT(*) AS n FROM extensions WHERE role = 'admin' AND active = TRUE AND number <> $1")
        .bind(except.unwrap_or(""))
        .fetch_one(conn)
        .await?
        .try_get("n")
}

pub async fn all_numbers<'c>(exec: impl Executor<'c, Database = Any>) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT number FROM extensions")
        .fetch_all(exec)
        .await?;
    rows.iter().map(|r| r.try_get("number")).collect()
}

fn bind_all<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    r: &'q ExtensionRow,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    query
        .bind(&r.number)
        .bind(&r.name)
        .bind(&r.email)
        .bind(r.role.as_str())
        .bind(r.allow_external)
        .bind(r.voicemail_enabled)
        .bind(&r.forward_target)
        .bind(&r.forward_when)
        .bind(r.active)
        .bind(r.ad_synced)
        .bind(&r.ad_username)
        .bind(&r.password_hash)
        .bind(r.must_change_password)
        .bind(&r.sip_realm)
        .bind(&r.sip_ha1_md5)
        .bind(&r.sip_ha1_sha256)
        .bind(&r.voicemail_pin_hash)
        .bind(r.created_at.millis())
        .bind(r.updated_at.millis())
}

/// Inserts a new row; a duplicate number is a unique violation ([`super::is_unique_violation`]).
pub async fn insert(conn: &mut Conn, row: &ExtensionRow) -> Result<()> {
    bind_all(sqlx::query(insert_sql!()), row)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Inserts unless the number exists; says whether it inserted (first-start seeding,
/// where two nodes may race).
pub async fn insert_if_absent(conn: &mut Conn, row: &ExtensionRow) -> Result<bool> {
    let done = bind_all(
        sqlx::query(concat!(insert_sql!(), " ON CONFLICT (number) DO NOTHING")),
        row,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes every column of an existing row (matched by number).
pub async fn update(conn: &mut Conn, row: &ExtensionRow) -> Result<bool> {
    let sql = "UPDATE extensions SET name = $2, email = $3, role = $4, allow_external = $5, \
         voicemail_enabled = $6, forward_target = $7, forward_when = $8, active = $9, ad_synced = $10, \
         ad_username = $11, password_hash = $12, must_change_password = $13, sip_realm = $14, \
         sip_ha1_md5 = $15, sip_ha1_sha256 = $16, voicemail_pin_hash = $17, created_at = $18, \
         updated_at = $19 WHERE number = $1";
    let done = bind_all(sqlx::query(sql), row).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(conn: &mut Conn, number: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM extensions WHERE number = $1")
        .bind(number)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
