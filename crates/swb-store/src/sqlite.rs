use crate::{
    FunctionRow, InvocationQuery, NamespaceRow, NewToken, Result, Share, Store, StoreError,
    TokenRow, TokenSummary, User,
};
use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::Path;
use std::time::Duration;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, AuditEvent, Digest, FunctionKind, FunctionRef, FunctionSummary, InvocationRecord,
    Namespace, Outcome, Role, VersionInfo,
};

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

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn kind_from_str(s: &str) -> Result<FunctionKind> {
    match s {
        "hosted" => Ok(FunctionKind::Hosted),
        "remote" => Ok(FunctionKind::Remote),
        other => Err(corrupt(format!("unknown function kind {other:?}"))),
    }
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User> {
    let ns: String = row.try_get("namespace")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        namespace: ns.parse().map_err(corrupt)?,
        is_admin: row.try_get("is_admin")?,
        created_at: row.try_get("created_at")?,
    })
}

fn version_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<VersionInfo> {
    let spec: String = row.try_get("spec")?;
    serde_json::from_str(&spec).map_err(corrupt)
}

fn invocation_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<InvocationRecord> {
    let function: String = row.try_get("function")?;
    let outcome: String = row.try_get("outcome")?;
    let error: Option<String> = row.try_get("error")?;
    let version: Option<i64> = row.try_get("version")?;
    let duration: i64 = row.try_get("duration_us")?;
    Ok(InvocationRecord {
        id: row.try_get("id")?,
        function: function.parse().map_err(corrupt)?,
        version: version.map(|v| v as u32),
        worker: row.try_get("worker")?,
        started_at: row.try_get("started_at")?,
        duration_us: duration as u64,
        outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt(&outcome))?,
        error: error
            .map(|e| serde_json::from_str::<ApiError>(&e))
            .transpose()
            .map_err(corrupt)?,
        stderr_tail: row.try_get("stderr_tail")?,
    })
}

fn push_namespaces(qb: &mut QueryBuilder<'_, Sqlite>, namespaces: &[Namespace]) {
    qb.push(" namespace IN (");
    let mut sep = qb.separated(", ");
    for ns in namespaces {
        sep.push_bind(ns.as_str().to_owned());
    }
    sep.push_unseparated(")");
}

#[async_trait]
impl Store for SqliteStore {
    async fn count_users(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let conflict = |e: sqlx::Error| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "a user with e-mail {} or a namespace {} exists",
                    user.email, user.namespace
                ))
            } else {
                e.into()
            }
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, namespace, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.namespace.as_str())
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        sqlx::query("INSERT INTO namespaces (name, owner_id, created_at) VALUES (?, ?, ?)")
            .bind(user.namespace.as_str())
            .bind(&user.id)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        tx.commit().await?;
        Ok(())
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM functions WHERE namespace IN (SELECT name FROM namespaces WHERE owner_id = ?)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM shares WHERE namespace IN (SELECT name FROM namespaces WHERE owner_id = ?)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_token(&self, token: &NewToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, secret_hash, scopes, description, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.user_id)
        .bind(&token.secret_hash[..])
        .bind(serde_json::to_string(&token.scopes).expect("strings serialize"))
        .bind(&token.description)
        .bind(now_ms())
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at,
                    u.id, u.email, u.namespace, u.is_admin, u.created_at
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: Vec<u8> = row.try_get("secret_hash")?;
        let scopes: String = row.try_get("scopes")?;
        Ok(Some(TokenRow {
            id: row.try_get("token_id")?,
            user: user_from_row(&row)?,
            secret_hash: hash.try_into().map_err(|_| corrupt("token hash length"))?,
            scopes: serde_json::from_str(&scopes).map_err(corrupt)?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        }))
    }

    async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenSummary>> {
        let rows = sqlx::query("SELECT * FROM tokens WHERE user_id = ? ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let scopes: String = row.try_get("scopes")?;
                Ok(TokenSummary {
                    id: row.try_get("id")?,
                    scopes: serde_json::from_str(&scopes).map_err(corrupt)?,
                    description: row.try_get("description")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, user_id: &str, token_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(token_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_namespace(&self, ns: &NamespaceRow) -> Result<()> {
        sqlx::query("INSERT INTO namespaces (name, owner_id, created_at) VALUES (?, ?, ?)")
            .bind(ns.name.as_str())
            .bind(&ns.owner_id)
            .bind(ns.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("namespace {} is taken", ns.name))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRow>> {
        let rows = sqlx::query("SELECT * FROM namespaces ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(NamespaceRow {
                    name: name.parse().map_err(corrupt)?,
                    owner_id: row.try_get("owner_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn put_share(&self, share: &Share) -> Result<()> {
        sqlx::query(
            "INSERT INTO shares (namespace, function, email, role, created_by, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (namespace, function, email) DO UPDATE SET role = excluded.role",
        )
        .bind(share.namespace.as_str())
        .bind(share.function.as_deref().unwrap_or(""))
        .bind(&share.email)
        .bind(share.role.as_str())
        .bind(&share.created_by)
        .bind(share.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_share(
        &self,
        ns: &Namespace,
        function: Option<&str>,
        email: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM shares WHERE namespace = ? AND function = ? AND email = ?")
                .bind(ns.as_str())
                .bind(function.unwrap_or(""))
                .bind(email)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn shares(&self) -> Result<Vec<Share>> {
        let rows = sqlx::query("SELECT * FROM shares ORDER BY namespace, function, email")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let ns: String = row.try_get("namespace")?;
                let function: String = row.try_get("function")?;
                let role: String = row.try_get("role")?;
                Ok(Share {
                    namespace: ns.parse().map_err(corrupt)?,
                    function: (!function.is_empty()).then_some(function),
                    email: row.try_get("email")?,
                    role: Role::parse(&role).ok_or_else(|| corrupt(&role))?,
                    created_by: row.try_get("created_by")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn submit_jobs(
        &self,
        jobs: &[crate::NewJob],
    ) -> Result<Vec<(String, swb_api::JobStatus)>> {
        self.submit_jobs_impl(jobs).await
    }
    async fn claim_jobs(
        &self,
        now: i64,
        limit: u32,
        default_timeout_ms: u64,
        grace_ms: u64,
    ) -> Result<Vec<crate::JobRow>> {
        self.claim_jobs_impl(now, limit, default_timeout_ms, grace_ms)
            .await
    }
    async fn finish_jobs(&self, finishes: &[crate::JobFinish]) -> Result<u64> {
        self.finish_jobs_impl(finishes).await
    }
    async fn job(&self, id: &str) -> Result<Option<crate::JobRow>> {
        self.job_impl(id).await
    }
    async fn jobs(&self, query: &crate::JobQuery) -> Result<Vec<swb_api::Job>> {
        self.jobs_impl(query).await
    }
    async fn cancel_job(&self, id: &str) -> Result<Option<swb_api::JobStatus>> {
        self.cancel_job_impl(id).await
    }
    async fn requeue_running(&self) -> Result<u64> {
        self.requeue_running_impl().await
    }
    async fn prune_jobs(&self, before: i64) -> Result<u64> {
        self.prune_jobs_impl(before).await
    }
    async fn put_blob(&self, owner_id: &str, info: &swb_api::BlobInfo) -> Result<()> {
        self.put_blob_impl(owner_id, info).await
    }
    async fn blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<swb_api::BlobInfo>> {
        self.blob_impl(owner_id, digest).await
    }
    async fn blobs(&self, owner_id: &str) -> Result<Vec<swb_api::BlobInfo>> {
        self.blobs_impl(owner_id).await
    }
    async fn delete_blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<bool>> {
        self.delete_blob_impl(owner_id, digest).await
    }
    async fn put_profile(
        &self,
        function: &FunctionRef,
        profile: &swb_api::ProfileInfo,
    ) -> Result<()> {
        self.put_profile_impl(function, profile).await
    }
    async fn profile(
        &self,
        function: &FunctionRef,
        name: &str,
    ) -> Result<Option<swb_api::ProfileInfo>> {
        self.profile_impl(function, name).await
    }
    async fn profiles(&self, function: &FunctionRef) -> Result<Vec<swb_api::ProfileInfo>> {
        self.profiles_impl(function).await
    }
    async fn delete_profile(&self, function: &FunctionRef, name: &str) -> Result<bool> {
        self.delete_profile_impl(function, name).await
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (id, at, actor, action, namespace, target, details)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(event.namespace.as_ref().map(|n| n.as_str().to_owned()))
        .bind(&event.target)
        .bind(event.details.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, namespaces: Option<&[Namespace]>, limit: u32) -> Result<Vec<AuditEvent>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM audit WHERE 1 = 1");
        if let Some(namespaces) = namespaces {
            if namespaces.is_empty() {
                return Ok(Vec::new());
            }
            qb.push(" AND");
            push_namespaces(&mut qb, namespaces);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let ns: Option<String> = row.try_get("namespace")?;
                let details: String = row.try_get("details")?;
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    namespace: ns.map(|n| n.parse()).transpose().map_err(corrupt)?,
                    target: row.try_get("target")?,
                    details: serde_json::from_str(&details).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn missing_artefacts(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT digest FROM artefacts WHERE digest IN (");
        let mut sep = qb.separated(", ");
        for d in digests {
            sep.push_bind(d.to_string());
        }
        sep.push_unseparated(")");
        let present: Vec<String> = qb.build_query_scalar().fetch_all(&self.pool).await?;
        let mut missing: Vec<Digest> = digests
            .iter()
            .filter(|d| !present.contains(&d.to_string()))
            .copied()
            .collect();
        missing.dedup();
        Ok(missing)
    }

    async fn put_artefact(&self, digest: &Digest, bytes: &[u8]) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO artefacts (digest, size, bytes, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(bytes.len() as i64)
        .bind(bytes)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn artefact(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM artefacts WHERE digest = ?")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(bytes.map(Bytes::from))
    }

    async fn create_version(
        &self,
        function: &FunctionRef,
        mut info: VersionInfo,
    ) -> Result<VersionInfo> {
        let now = now_ms();
        // IMMEDIATE takes the write lock up front, so two concurrent deploys queue
        // (busy_timeout) instead of failing on a stale read of the version number.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let existing: Option<(i64, String)> =
            sqlx::query_as("SELECT id, kind FROM functions WHERE namespace = ? AND name = ?")
                .bind(function.namespace().as_str())
                .bind(function.name())
                .fetch_optional(&mut *tx)
                .await?;
        let function_id = match existing {
            Some((id, kind)) => {
                let kind = kind_from_str(&kind)?;
                if kind != info.kind {
                    return Err(StoreError::Conflict(format!(
                        "{function} is a {} function; a {} version cannot replace it",
                        kind.as_str(),
                        info.kind.as_str()
                    )));
                }
                id
            }
            None => {
                sqlx::query_scalar(
                    "INSERT INTO functions (namespace, name, kind, active_version, created_at, updated_at)
                     VALUES (?, ?, ?, 0, ?, ?) RETURNING id",
                )
                .bind(function.namespace().as_str())
                .bind(function.name())
                .bind(info.kind.as_str())
                .bind(now)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM versions WHERE function_id = ?")
                .bind(function_id)
                .fetch_one(&mut *tx)
                .await?;
        info.version = last.unwrap_or(0) as u32 + 1;
        info.created_at = now;
        sqlx::query(
            "INSERT INTO versions (function_id, version, spec, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(function_id)
        .bind(info.version as i64)
        .bind(serde_json::to_string(&info).expect("versions serialize"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE functions SET active_version = ?, updated_at = ? WHERE id = ?")
            .bind(info.version as i64)
            .bind(now)
            .bind(function_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn function(&self, function: &FunctionRef) -> Result<Option<FunctionRow>> {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT kind, active_version, created_at, updated_at FROM functions
             WHERE namespace = ? AND name = ?",
        )
        .bind(function.namespace().as_str())
        .bind(function.name())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(kind, active, created_at, updated_at)| {
            Ok(FunctionRow {
                function: function.clone(),
                kind: kind_from_str(&kind)?,
                active_version: active as u32,
                created_at,
                updated_at,
            })
        })
        .transpose()
    }

    async fn version(&self, function: &FunctionRef, version: u32) -> Result<Option<VersionInfo>> {
        let row = sqlx::query(
            "SELECT v.spec FROM versions v JOIN functions f ON f.id = v.function_id
             WHERE f.namespace = ? AND f.name = ? AND v.version = ?",
        )
        .bind(function.namespace().as_str())
        .bind(function.name())
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn versions(&self, function: &FunctionRef) -> Result<Vec<VersionInfo>> {
        let rows = sqlx::query(
            "SELECT v.spec FROM versions v JOIN functions f ON f.id = v.function_id
             WHERE f.namespace = ? AND f.name = ? ORDER BY v.version",
        )
        .bind(function.namespace().as_str())
        .bind(function.name())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn list_functions(
        &self,
        namespaces: Option<&[Namespace]>,
    ) -> Result<Vec<FunctionSummary>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT f.namespace, f.name, f.kind, f.active_version, f.updated_at, v.spec
             FROM functions f JOIN versions v ON v.function_id = f.id AND v.version = f.active_version",
        );
        if let Some(namespaces) = namespaces {
            if namespaces.is_empty() {
                return Ok(Vec::new());
            }
            qb.push(" WHERE f.");
            push_namespaces(&mut qb, namespaces);
        }
        qb.push(" ORDER BY f.namespace, f.name");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let ns: String = row.try_get("namespace")?;
                let name: String = row.try_get("name")?;
                let kind: String = row.try_get("kind")?;
                let active: i64 = row.try_get("active_version")?;
                Ok(FunctionSummary {
                    function: FunctionRef::new(&ns, &name).map_err(corrupt)?,
                    kind: kind_from_str(&kind)?,
                    active_version: active as u32,
                    description: version_from_row(row)?.interface.description,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn set_active_version(&self, function: &FunctionRef, version: u32) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE functions SET active_version = ?1, updated_at = ?2
             WHERE namespace = ?3 AND name = ?4
               AND EXISTS (SELECT 1 FROM versions v WHERE v.function_id = functions.id AND v.version = ?1)",
        )
        .bind(version as i64)
        .bind(now_ms())
        .bind(function.namespace().as_str())
        .bind(function.name())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_function(&self, function: &FunctionRef) -> Result<bool> {
        let done = sqlx::query("DELETE FROM functions WHERE namespace = ? AND name = ?")
            .bind(function.namespace().as_str())
            .bind(function.name())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_invocations(&self, records: &[InvocationRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One transaction (one fsync) per batch. SQLite allows 32766 bound parameters.
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(2000) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO invocations (id, namespace, function, version, worker, started_at,
                 duration_us, outcome, error, stderr_tail) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id.clone())
                    .push_bind(r.function.namespace().as_str().to_owned())
                    .push_bind(r.function.to_string())
                    .push_bind(r.version.map(i64::from))
                    .push_bind(r.worker.clone())
                    .push_bind(r.started_at)
                    .push_bind(r.duration_us as i64)
                    .push_bind(r.outcome.as_str())
                    .push_bind(
                        r.error
                            .as_ref()
                            .map(|e| serde_json::to_string(e).expect("errors serialize")),
                    )
                    .push_bind(r.stderr_tail.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn invocations(&self, query: &InvocationQuery) -> Result<Vec<InvocationRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM invocations WHERE 1 = 1");
        if let Some(f) = &query.function {
            qb.push(" AND function = ").push_bind(f.to_string());
        }
        if let Some(namespaces) = &query.namespaces {
            if namespaces.is_empty() {
                return Ok(Vec::new());
            }
            qb.push(" AND");
            push_namespaces(&mut qb, namespaces);
        }
        if let Some(o) = query.outcome {
            qb.push(" AND outcome = ").push_bind(o.as_str());
        }
        if let Some(after) = &query.after {
            qb.push(" AND id > ").push_bind(after.clone());
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(query.limit as i64);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>> {
        let row = sqlx::query("SELECT * FROM invocations WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(invocation_from_row).transpose()
    }

    async fn prune_invocations(&self, keep: u64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM invocations WHERE id < (SELECT id FROM invocations ORDER BY id DESC LIMIT 1 OFFSET ?)",
        )
        .bind(keep.saturating_sub(1) as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
