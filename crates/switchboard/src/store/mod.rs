//! The store: one pool for SQLite or PostgreSQL, migrations for both, and one module
//! per table group with the SQL kept there.
//!
//! Queries go through sqlx's `Any` driver so one code path serves both databases:
//! placeholders are `$1…` (SQLite accepts them), times are `BIGINT` milliseconds,
//! booleans are read with [`flag`] because SQLite hands them back as integers.

pub mod api_keys;
pub mod auto_attendant;
pub mod cdr;
pub mod devices;
pub mod events;
pub mod extensions;
pub mod hot_desk;
pub mod mfa;
pub mod registered_phones;
pub mod registrations;
pub mod security;
pub mod sessions;
pub mod settings;
pub mod voicemail;
pub mod webhooks;
pub mod webrtc;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row};

pub use sqlx::AnyConnection as Conn;

/// A write transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue on the busy
/// timeout instead of failing when a read lock would have to be upgraded).
pub type Tx = sqlx::Transaction<'static, Any>;

pub type Result<T, E = sqlx::Error> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The database handle every service holds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://…`); a SQLite file and its
    /// directory are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            (Backend::Sqlite, sqlite_url(rest)?)
        } else {
            (Backend::Postgres, url.to_owned())
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. FULL: a commit is on disk
                        // before it is acknowledged, so kill -9 or power loss loses nothing
                        // acknowledged. The busy timeout queues concurrent writers.
                        // Checkpoints every 10,000 WAL pages (40 MiB) rather than 1,000:
                        // under a call storm each commit rewrites hundreds of index pages,
                        // and a page changed again before the checkpoint is copied into
                        // the database once. A 16 MiB page cache keeps the indexes' hot
                        // pages instead of reading them back.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA wal_autocheckpoint = 10000; PRAGMA cache_size = -16384;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn begin(&self) -> Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Readiness: the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://./data/x.db` → a URL that creates the file, after creating its directory.
fn sqlite_url(rest: &str) -> Result<String> {
    let rest = rest.trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// `(…),(…)` placeholders for a multi-row statement of `rows` × `columns` values.
/// SQLite looks a numbered parameter's name up by a linear scan, once per bound
/// value, so `$N` would make a statement of thousands of values quadratic; its
/// anonymous `?` are bound by position. PostgreSQL only knows `$N`.
pub fn row_placeholders(conn: &Conn, rows: usize, columns: usize) -> String {
    use std::fmt::Write as _;
    let numbered = conn.backend_name() != <sqlx::Sqlite as sqlx::Database>::NAME;
    let mut sql = String::with_capacity(rows * columns * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            if numbered {
                let _ = write!(sql, "${}", i * columns + c + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// Reads a boolean column whatever the backend stored it as.
pub fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    match row.try_get::<bool, _>(column) {
        Ok(v) => Ok(v),
        Err(_) => row.try_get::<i64, _>(column).map(|v| v != 0),
    }
}

/// Whether `err` is a UNIQUE / PRIMARY KEY violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::sqlite_url;

    #[test]
    fn sqlite_urls_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/x.db");
        let url = sqlite_url(&format!("//{}", db.display())).unwrap();
        assert!(url.ends_with("x.db?mode=rwc"), "{url}");
        assert!(db.parent().unwrap().is_dir());
        assert_eq!(
            sqlite_url("//:memory:").unwrap(),
            "sqlite://:memory:?mode=rwc"
        );
    }
}
