//! The embedded backend: one SQLite file.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::path::Path;
use std::time::Duration;

type Db = Sqlite;
type Backend = SqliteStore;

/// Where SQLite's SQL differs from Postgres'.
mod dialect {
    /// One server owns the file.
    pub const SHARED: bool = false;
    /// One writer at a time (`BEGIN IMMEDIATE`), so there is no row lock to skip.
    pub const SKIP_LOCKED: &str = "";
    /// Appends `$6` (a JSON error) to the job's `attempt_errors` array.
    pub const APPEND_ATTEMPT_ERROR: &str = "json_insert(attempt_errors, '$[#]', json($6))";
}

/// The embedded store: one SQLite file in WAL mode with full syncs (durable commits;
/// throughput comes from batching writes, not from weaker syncs).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A transaction that writes: `IMMEDIATE` takes the write lock up front, so
    /// concurrent writers queue (busy_timeout) instead of failing on a stale read.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

include!("queries.rs");
