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
    /// Appends the JSON error in parameter `p` to the job's `attempt_errors` array.
    pub fn append_attempt_error(p: &str) -> String {
        format!("json_insert(attempt_errors, '$[#]', json({p}))")
    }
}

/// The embedded store: one SQLite file in WAL mode with full syncs (durable commits;
/// throughput comes from batching writes, not from weaker syncs).
///
/// Writes go through a pool of one connection, so that writers wait their turn in
/// order on it rather than in SQLite's busy handler, which polls the lock with sleeps.
/// Reads use the other connections (WAL: readers never wait for the writer).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
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
            // Readers may still meet a lock briefly (a checkpoint); the writer does not.
            .busy_timeout(Duration::from_secs(10));
        // A connection to a local file does not go stale: no ping (a round trip to
        // the connection's thread) before each use.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self { pool, writer })
    }

    /// The one writer connection's pool.
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A transaction that writes, on the one writer connection (`IMMEDIATE`: the
    /// write lock is taken up front, never upgraded from a stale read).
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

include!("queries.rs");
