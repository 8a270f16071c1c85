//! The machine's real Postgres and NATS for cluster tests. Their URLs come from
//! `SWB_TEST_POSTGRES_URL` and `SWB_TEST_NATS_URL` (`.ci/run` sets both; the defaults
//! are this machine's). A test that needs them fails, never skips, when they are
//! unreachable.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The Postgres server tests use: a URL whose database may create databases.
pub fn postgres_url() -> String {
    std::env::var("SWB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The NATS server tests use.
pub fn nats_url() -> String {
    std::env::var("SWB_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A fresh, empty database, dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDatabase {
    /// On the tests' Postgres; panics (failing the test) when it is unreachable.
    pub async fn create() -> Self {
        let admin = postgres_url();
        Self::create_on(&admin).await.unwrap_or_else(|e| {
            panic!("Postgres at {admin} (SWB_TEST_POSTGRES_URL) is unreachable: {e}")
        })
    }

    /// On the Postgres server of `admin` (a URL whose user may create databases).
    pub async fn create_on(admin: &str) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect(admin).await?;
        let name = format!("swb_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
        let (server, _db) = base.rsplit_once('/').expect("a URL with a database");
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        Ok(Self {
            url,
            name,
            admin: admin.to_owned(),
        })
    }
}

impl TestDatabase {
    /// Runs `sql` (one statement) on this database.
    pub async fn execute(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url).await.expect("connects");
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect("the statement runs");
        let _ = conn.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread
        // with its own runtime does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
