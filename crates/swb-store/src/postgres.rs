//! The cluster backend: a Postgres database shared by every replica.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

type Db = Postgres;
type Backend = PgStore;

/// Where Postgres' SQL differs from SQLite's.
mod dialect {
    /// Replicas share the database.
    pub const SHARED: bool = true;
    /// Replicas claim jobs at the same time; each skips the rows another is claiming.
    pub const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
    /// Appends the JSON error in parameter `p` to the job's `attempt_errors` array.
    pub fn append_attempt_error(p: &str) -> String {
        format!("(attempt_errors::jsonb || jsonb_build_array({p}::jsonb))::text")
    }
}

/// A store on Postgres, shared by the replicas of a cluster.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and runs pending migrations. Replicas starting together are safe:
    /// migrations run under an advisory lock, one replica after the other.
    pub async fn open(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Writes share the pool with reads.
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Row locks (`FOR UPDATE … SKIP LOCKED`, upserts) order concurrent writers.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

include!("queries.rs");
