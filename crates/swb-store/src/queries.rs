// The `Store` implementation shared by both backends, written once. Each backend module
// defines `Db` (the sqlx database), `Backend` (its store type, with `pool` for reads,
// `writer()` for writes and `begin_write`) and the `dialect` constants where their SQL
// differs, then includes this file. Placeholders are `$N`, which SQLite and Postgres
// both accept.

use crate::{
    FunctionRow, InvocationQuery, JobFinish, JobOutcome, JobQuery, JobRow, NamespaceRow, NewJob,
    NewToken, Reach, Result, SecretRow, Share, Store, StoreError, TokenRow, TokenSummary, User,
};
use async_trait::async_trait;
use bytes::Bytes;
use sqlx::{QueryBuilder, Row};
use futures_util::TryStreamExt;
use std::collections::{HashMap, HashSet};
use swb_api::timestamp::now_ms;
use swb_api::{CallIo, 
    ApiError, AuditEvent, BlobInfo, CallPlace, Digest, ErrorCode, FunctionKind, FunctionRef, FunctionSummary,
    InvocationRecord, Job, JobStatus, Namespace, Outcome, ProfileInfo, Role, VersionInfo,
};

type DbRow = <Db as sqlx::Database>::Row;
type Conn = <Db as sqlx::Database>::Connection;

/// Records per stored batch of invocation records.
const BATCH_RECORDS: usize = 1_000;
/// Rows written by one multi-row statement (within both engines' bound-parameter
/// limits: 13 per job row).
const ROWS_PER_STATEMENT: usize = 1_000;
/// Batches read at a time when listing invocation records.
const BATCH_PAGE: i64 = 16;

/// An invocation record as its batch stores it (the function is the batch's), an
/// array: id, version, worker, started_at, duration_us, outcome, error, stderr_tail
/// then its place in the call tree (a nested call's; else null), its caller (a
/// call from outside's; else null) and its input and output (when its version keeps
/// them): batches written before call trees have eight elements, before callers
/// nine, and a record ends after the last of these it has.
struct StoredRecord {
    id: String,
    version: Option<u32>,
    worker: Option<String>,
    started_at: i64,
    duration_us: u64,
    outcome: Outcome,
    error: Option<ApiError>,
    stderr_tail: String,
    tree: Option<CallPlace>,
    caller: Option<String>,
    io: Option<CallIo>,
}

impl<'de> serde::Deserialize<'de> for StoredRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StoredRecord;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a stored invocation record (an array of 8 to 11 elements)")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<StoredRecord, A::Error> {
                use serde::de::Error;
                let mut n = 0;
                let mut next = || {
                    n += 1;
                    n
                };
                macro_rules! field {
                    () => {{
                        let i = next();
                        seq.next_element()?
                            .ok_or_else(|| A::Error::invalid_length(i - 1, &self))?
                    }};
                }
                Ok(StoredRecord {
                    id: field!(),
                    version: field!(),
                    worker: field!(),
                    started_at: field!(),
                    duration_us: field!(),
                    outcome: field!(),
                    error: field!(),
                    stderr_tail: field!(),
                    tree: seq.next_element::<Option<CallPlace>>()?.flatten(),
                    caller: seq.next_element::<Option<String>>()?.flatten(),
                    io: seq.next_element::<Option<CallIo>>()?.flatten(),
                })
            }
        }
        d.deserialize_seq(Visit)
    }
}

fn encode_batch(records: &[&InvocationRecord]) -> String {
    let rows: Vec<_> = records
        .iter()
        .map(|r| {
            let head = (
                &r.id,
                r.version,
                &r.worker,
                r.started_at,
                r.duration_us,
                r.outcome,
                &r.error,
                &r.stderr_tail,
            );
            let mut row = serde_json::to_value(head).expect("records serialize");
            // The optional elements, up to the last one present.
            let tail = [
                serde_json::to_value(&r.tree),
                serde_json::to_value(&r.caller),
                serde_json::to_value(&r.io),
            ];
            let tail: Vec<_> = tail
                .into_iter()
                .map(|v| v.expect("records serialize"))
                .collect();
            let present = tail.iter().rposition(|v| !v.is_null()).map_or(0, |i| i + 1);
            if let Some(row) = row.as_array_mut() {
                row.extend(tail.into_iter().take(present));
            }
            row
        })
        .collect();
    serde_json::to_string(&rows).expect("records serialize")
}

/// The records of a stored batch.
fn decode_batch(row: &DbRow) -> Result<Vec<InvocationRecord>> {
    let function: String = row.try_get("function")?;
    let function: FunctionRef = function.parse().map_err(corrupt)?;
    let body: String = row.try_get("body")?;
    let records: Vec<StoredRecord> = serde_json::from_str(&body).map_err(corrupt)?;
    Ok(records
        .into_iter()
        .map(|r| InvocationRecord {
            id: r.id,
            function: function.clone(),
            version: r.version,
            worker: r.worker,
            started_at: r.started_at,
            duration_us: r.duration_us,
            outcome: r.outcome,
            error: r.error,
            stderr_tail: r.stderr_tail,
            tree: r.tree,
            caller: r.caller,
            io: r.io,
        })
        .collect())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn kind_from_str(s: &str) -> Result<FunctionKind> {
    match s {
        "hosted" => Ok(FunctionKind::Hosted),
        "remote" => Ok(FunctionKind::Remote),
        other => Err(corrupt(format!("unknown function kind {other:?}"))),
    }
}

fn user_from_row(row: &DbRow) -> Result<User> {
    let ns: String = row.try_get("namespace")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        namespace: ns.parse().map_err(corrupt)?,
        is_admin: row.try_get("is_admin")?,
        created_at: row.try_get("created_at")?,
    })
}

fn version_from_row(row: &DbRow) -> Result<VersionInfo> {
    let spec: String = row.try_get("spec")?;
    serde_json::from_str(&spec).map_err(corrupt)
}

fn job_from_row(row: &DbRow) -> Result<JobRow> {
    let text = |name: &str| -> Result<Option<String>> { Ok(row.try_get(name)?) };
    let function: String = row.try_get("function")?;
    let status: String = row.try_get("status")?;
    let result: Option<Vec<u8>> = row.try_get("result")?;
    let input: Option<Vec<u8>> = row.try_get("input")?;
    let digest = |s: Option<String>| s.map(|d| d.parse::<Digest>()).transpose().map_err(corrupt);
    let attempt_errors: String = row.try_get("attempt_errors")?;
    let version: Option<i64> = row.try_get("version")?;
    let timeout: Option<i64> = row.try_get("timeout_ms")?;
    let attempts: i64 = row.try_get("attempts")?;
    let max_attempts: i64 = row.try_get("max_attempts")?;
    Ok(JobRow {
        job: Job {
            id: row.try_get("id")?,
            function: function.parse().map_err(corrupt)?,
            version: version.map(|v| v as u32),
            status: JobStatus::parse(&status).ok_or_else(|| corrupt(&status))?,
            attempts: attempts as u32,
            max_attempts: max_attempts as u32,
            result: result.map(|r| {
                serde_json::from_slice(&r).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&r).into())
                })
            }),
            result_blob: digest(text("result_blob")?)?,
            error: text("error")?
                .map(|e| serde_json::from_str::<ApiError>(&e))
                .transpose()
                .map_err(corrupt)?,
            attempt_errors: serde_json::from_str(&attempt_errors).map_err(corrupt)?,
            waiting: text("waiting")?,
            stderr_tail: row.try_get("stderr_tail")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        },
        owner_id: row.try_get("owner_id")?,
        acting: row.try_get("acting")?,
        input: input.map(Bytes::from),
        input_blob: digest(text("input_blob")?)?,
        profile: text("profile")?,
        timeout_ms: timeout.map(|t| t as u64),
        cancel_requested: row.try_get("cancel_requested")?,
    })
}

fn blob_from_row(row: &DbRow) -> Result<BlobInfo> {
    let digest: String = row.try_get("digest")?;
    let size: i64 = row.try_get("size")?;
    Ok(BlobInfo {
        name: row.try_get("name")?,
        digest: digest.parse().map_err(corrupt)?,
        size: size as u64,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
    })
}

fn profile_from_row(row: &DbRow) -> Result<ProfileInfo> {
    let value: String = row.try_get("value")?;
    Ok(ProfileInfo {
        name: row.try_get("name")?,
        value: serde_json::from_str(&value).map_err(corrupt)?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn push_namespaces(qb: &mut QueryBuilder<'_, Db>, namespaces: &[Namespace]) {
    qb.push(" namespace IN (");
    let mut sep = qb.separated(", ");
    for ns in namespaces {
        sep.push_bind(ns.as_str().to_owned());
    }
    sep.push_unseparated(")");
}

/// A succeeded attempt's columns: job id, attempt, result, result blob, stderr tail.
type Success<'a> = (&'a str, u32, Option<&'a [u8]>, Option<Digest>, &'a str);

fn success(f: &JobFinish) -> Option<Success<'_>> {
    match &f.outcome {
        JobOutcome::Succeeded {
            result,
            result_blob,
            stderr_tail,
        } => Some((&f.id, f.attempt, result.as_deref(), *result_blob, stderr_tail)),
        _ => None,
    }
}

/// Records succeeded attempts in one statement (one round trip, however many jobs),
/// each only if that attempt still holds its job.
async fn finish_succeeded(conn: &mut Conn, succeeded: &[Success<'_>], now: i64) -> Result<u64> {
    let mut qb = QueryBuilder::<Db>::new(
        "WITH done (id, attempt, result, result_blob, stderr_tail) AS (",
    );
    qb.push_values(succeeded, |mut row, &(id, attempt, result, blob, tail)| {
        row.push_bind(id)
            .push_bind(attempt as i64)
            .push_bind(result)
            .push_bind(blob.map(|d| d.to_string()))
            .push_bind(tail);
    });
    qb.push(
        ") UPDATE jobs SET status = 'succeeded', result = done.result,
         result_blob = done.result_blob, stderr_tail = done.stderr_tail, error = NULL,
         waiting = NULL, lease_until = NULL, finished_at = ",
    );
    qb.push_bind(now);
    qb.push(" FROM done WHERE jobs.id = done.id AND jobs.attempts = done.attempt AND jobs.status = 'running'");
    Ok(qb.build().execute(&mut *conn).await?.rows_affected())
}

/// Applies one attempt's outcome if that attempt still holds its job.
async fn apply_finish(conn: &mut Conn, f: &JobFinish, now: i64) -> Result<u64> {
    let held = "id = $2 AND attempts = $3 AND status = 'running'";
    let error_json = |e: &ApiError| serde_json::to_string(e).expect("errors serialize");
    let done = match &f.outcome {
        JobOutcome::Succeeded { .. } => {
            let succeeded = success(f);
            return finish_succeeded(conn, succeeded.as_slice(), now).await;
        }
        JobOutcome::Failed { error, stderr_tail }
        | JobOutcome::Retry {
            error, stderr_tail, ..
        } => {
            let (status, run_after, finished) = match &f.outcome {
                JobOutcome::Retry { run_after, .. } => ("queued", *run_after, None),
                _ => ("failed", now, Some(now)),
            };
            // A job cancelled while its attempt ran is not retried.
            sqlx::query(&format!(
                "UPDATE jobs SET
                 status = CASE WHEN cancel_requested AND $4 = 'queued' THEN 'cancelled' ELSE $4 END,
                 finished_at = CASE WHEN cancel_requested AND $4 = 'queued' THEN $1 ELSE $5 END,
                 error = $6, stderr_tail = $7, run_after = $8,
                 attempt_errors = {},
                 waiting = NULL, lease_until = NULL
                 WHERE {held}",
                dialect::append_attempt_error("$6")
            ))
            .bind(now)
            .bind(&f.id)
            .bind(f.attempt as i64)
            .bind(status)
            .bind(finished)
            .bind(error_json(error))
            .bind(stderr_tail)
            .bind(run_after)
            .execute(&mut *conn)
            .await?
        }
        JobOutcome::Wait { reason, run_after } => {
            sqlx::query(&format!(
                "UPDATE jobs SET
                 status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                 finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END,
                 attempts = attempts - 1, waiting = $4, run_after = $5, lease_until = NULL
                 WHERE {held}"
            ))
            .bind(now)
            .bind(&f.id)
            .bind(f.attempt as i64)
            .bind(reason)
            .bind(run_after)
            .execute(&mut *conn)
            .await?
        }
        JobOutcome::Cancelled => {
            sqlx::query(&format!(
                "UPDATE jobs SET status = 'cancelled', lease_until = NULL, finished_at = $1
                 WHERE {held}"
            ))
            .bind(now)
            .bind(&f.id)
            .bind(f.attempt as i64)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(done.rows_affected())
}

impl Backend {
    /// `create_version` and `publish_version`: the function's row is locked by its
    /// upsert, so concurrent calls for one function run one after the other.
    async fn add_version(
        &self,
        function: &FunctionRef,
        mut info: VersionInfo,
        unless_same: bool,
    ) -> Result<(VersionInfo, bool)> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // The upsert locks the function's row, so concurrent deploys of one function
        // take their version numbers one after the other.
        let (function_id, kind): (i64, String) = sqlx::query_as(
            "INSERT INTO functions (namespace, name, kind, active_version, created_at, updated_at)
             VALUES ($1, $2, $3, 0, $4, $4)
             ON CONFLICT (namespace, name) DO UPDATE SET updated_at = excluded.updated_at
             RETURNING id, kind",
        )
        .bind(function.namespace().as_str())
        .bind(function.name())
        .bind(info.kind.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let kind = kind_from_str(&kind)?;
        if kind != info.kind {
            return Err(StoreError::Conflict(format!(
                "{function} is a {} function; a {} version cannot replace it",
                kind.as_str(),
                info.kind.as_str()
            )));
        }
        if unless_same
            && let Some(active) = active_spec(&mut tx, function_id).await?
            && same_version(&active, &info)
        {
            return Ok((active, false));
        }
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM versions WHERE function_id = $1")
                .bind(function_id)
                .fetch_one(&mut *tx)
                .await?;
        info.version = last.unwrap_or(0) as u32 + 1;
        info.created_at = now;
        sqlx::query(
            "INSERT INTO versions (function_id, version, spec, created_at, artefact)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(function_id)
        .bind(info.version as i64)
        .bind(serde_json::to_string(&info).expect("versions serialize"))
        .bind(now)
        .bind(info.artefact.map(|d| d.to_string()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE functions SET active_version = $1, updated_at = $2 WHERE id = $3")
            .bind(info.version as i64)
            .bind(now)
            .bind(function_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((info, true))
    }
}

/// The active version of a function, if it has one.
async fn active_spec(conn: &mut Conn, function_id: i64) -> Result<Option<VersionInfo>> {
    let spec: Option<String> = sqlx::query_scalar(
        "SELECT v.spec FROM versions v JOIN functions f ON f.id = v.function_id
         WHERE f.id = $1 AND v.version = f.active_version",
    )
    .bind(function_id)
    .fetch_optional(&mut *conn)
    .await?;
    spec.map(|s| serde_json::from_str(&s).map_err(corrupt))
        .transpose()
}

/// Whether two versions say the same, number and time aside.
fn same_version(a: &VersionInfo, b: &VersionInfo) -> bool {
    let spec = |v: &VersionInfo| {
        let mut v = serde_json::to_value(v).expect("versions serialize");
        if let Some(o) = v.as_object_mut() {
            o.remove("version");
            o.remove("created_at");
        }
        v
    };
    spec(a) == spec(b)
}

#[async_trait]
impl Store for Backend {
    fn shared(&self) -> bool {
        dialect::SHARED
    }

    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(init)
            .execute(self.writer())
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

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
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, email, namespace, is_admin, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.namespace.as_str())
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        sqlx::query("INSERT INTO namespaces (name, owner_id, created_at) VALUES ($1, $2, $3)")
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
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        for table in ["functions", "shares"] {
            sqlx::query(&format!(
                "DELETE FROM {table}
                 WHERE namespace IN (SELECT name FROM namespaces WHERE owner_id = $1)"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_token(&self, token: &NewToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_id, secret_hash, scopes, description, created_at, expires_at, parent_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(&token.user_id)
        .bind(&token.secret_hash[..])
        .bind(serde_json::to_string(&token.scopes).expect("strings serialize"))
        .bind(&token.description)
        .bind(now_ms())
        .bind(token.expires_at)
        .bind(&token.parent_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at,
                    u.id, u.email, u.namespace, u.is_admin, u.created_at
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1",
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
        let rows = sqlx::query("SELECT * FROM tokens WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let scopes: String = row.try_get("scopes")?;
                Ok(TokenSummary {
                    id: row.try_get("id")?,
                    parent_id: row.try_get("parent_id")?,
                    scopes: serde_json::from_str(&scopes).map_err(corrupt)?,
                    description: row.try_get("description")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, user_id: &str, token_id: &str) -> Result<Vec<String>> {
        let revoked = sqlx::query_scalar(
            "WITH RECURSIVE tree(id) AS (
                 SELECT id FROM tokens WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL
                 UNION
                 SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id
             )
             UPDATE tokens SET revoked_at = $1
             WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(now_ms())
        .bind(token_id)
        .bind(user_id)
        .fetch_all(self.writer())
        .await?;
        Ok(revoked)
    }

    async fn create_namespace(&self, ns: &NamespaceRow) -> Result<()> {
        sqlx::query("INSERT INTO namespaces (name, owner_id, created_at) VALUES ($1, $2, $3)")
            .bind(ns.name.as_str())
            .bind(&ns.owner_id)
            .bind(ns.created_at)
            .execute(self.writer())
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
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (namespace, function, email) DO UPDATE SET role = excluded.role",
        )
        .bind(share.namespace.as_str())
        .bind(share.function.as_deref().unwrap_or(""))
        .bind(&share.email)
        .bind(share.role.as_str())
        .bind(&share.created_by)
        .bind(share.created_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn delete_share(
        &self,
        ns: &Namespace,
        function: Option<&str>,
        email: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM shares WHERE namespace = $1 AND function = $2 AND email = $3",
        )
        .bind(ns.as_str())
        .bind(function.unwrap_or(""))
        .bind(email)
        .execute(self.writer())
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

    async fn submit_jobs(&self, jobs: &[NewJob]) -> Result<Vec<(String, JobStatus)>> {
        let mut tx = self.begin_write().await?;
        let mut inserted = HashSet::new();
        // Many rows per statement: one round trip to the database per chunk.
        for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Db>::new(
                "INSERT INTO jobs (id, owner_id, function, namespace, version, input, input_blob,
                 profile, idempotency_key, status, max_attempts, timeout_ms, run_after, created_at,
                 acting) ",
            );
            qb.push_values(chunk, |mut row, j| {
                row.push_bind(j.id.as_str())
                    .push_bind(j.owner_id.as_str())
                    .push_bind(j.function.to_string())
                    .push_bind(j.function.namespace().as_str())
                    .push_bind(j.version.map(i64::from))
                    .push_bind(j.input.as_deref())
                    .push_bind(j.input_blob.map(|d| d.to_string()))
                    .push_bind(j.profile.as_deref())
                    .push_bind(j.idempotency_key.as_deref())
                    .push("'queued'")
                    .push_bind(j.max_attempts as i64)
                    .push_bind(j.timeout_ms.map(|t| t as i64))
                    .push_bind(j.created_at)
                    .push_bind(j.created_at)
                    .push_bind(j.acting.as_deref());
            });
            qb.push(
                " ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                 DO NOTHING RETURNING id",
            );
            let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(ids);
        }
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            if inserted.contains(&j.id) {
                out.push((j.id.clone(), JobStatus::Queued));
                continue;
            }
            // The owner already used this idempotency key: answer with that job, if
            // it is the same request.
            let row = sqlx::query(
                "SELECT id, status, function, version, input, input_blob, profile
                 FROM jobs WHERE owner_id = $1 AND idempotency_key = $2",
            )
            .bind(&j.owner_id)
            .bind(&j.idempotency_key)
            .fetch_one(&mut *tx)
            .await?;
            let id: String = row.try_get("id")?;
            let same = row.try_get::<String, _>("function")? == j.function.to_string()
                && row.try_get::<Option<i64>, _>("version")? == j.version.map(i64::from)
                && row.try_get::<Option<Vec<u8>>, _>("input")?.as_deref() == j.input.as_deref()
                && row.try_get::<Option<String>, _>("input_blob")?
                    == j.input_blob.map(|d| d.to_string())
                && row.try_get::<Option<String>, _>("profile")? == j.profile;
            if !same {
                return Err(StoreError::Conflict(format!(
                    "idempotency key {:?} was used for job {id}, of another function or input",
                    j.idempotency_key.as_deref().unwrap_or_default()
                )));
            }
            let status: String = row.try_get("status")?;
            let status = JobStatus::parse(&status).ok_or_else(|| corrupt(&status))?;
            out.push((id, status));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn claim_jobs(&self, now: i64, limit: u32, lease_ms: u64) -> Result<Vec<JobRow>> {
        let lost = serde_json::to_string(&ApiError::new(
            ErrorCode::LeaseExpired,
            "the attempt was lost: the server running it stopped before it ended",
        ))
        .expect("errors serialize");
        let mut tx = self.begin_write().await?;
        // A lapsed lease on the last attempt ends the job: a job that brings down
        // its server each time it runs stops there.
        sqlx::query(&format!(
            "UPDATE jobs SET status = 'failed', finished_at = $1, lease_until = NULL,
               error = $2, attempt_errors = {}
             WHERE status = 'running' AND lease_until < $1 AND attempts >= max_attempts",
            dialect::append_attempt_error("$2")
        ))
        .bind(now)
        .bind(&lost)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1,
               started_at = COALESCE(started_at, $1),
               lease_until = $1 + $2,
               attempt_errors = CASE WHEN status = 'running' THEN {} ELSE attempt_errors END
             WHERE id IN (
               SELECT id FROM jobs
               WHERE (status = 'queued' AND run_after <= $1)
                  OR (status = 'running' AND lease_until < $1)
               ORDER BY run_after, id LIMIT $3{})
             RETURNING *",
            dialect::append_attempt_error("$4"),
            dialect::SKIP_LOCKED
        ))
        .bind(now)
        .bind(lease_ms as i64)
        .bind(limit as i64)
        .bind(&lost)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // RETURNING keeps no order: oldest first, as claimed.
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        Ok(jobs)
    }

    async fn finish_jobs(&self, finishes: &[JobFinish]) -> Result<u64> {
        let now = now_ms();
        let succeeded: Vec<Success<'_>> = finishes.iter().filter_map(success).collect();
        let mut tx = self.begin_write().await?;
        let mut applied = 0;
        for chunk in succeeded.chunks(ROWS_PER_STATEMENT) {
            applied += finish_succeeded(&mut tx, chunk, now).await?;
        }
        for f in finishes.iter().filter(|f| success(f).is_none()) {
            applied += apply_finish(&mut tx, f, now).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM jobs WHERE 1 = 1");
        if let Some(owner) = &q.owner_id {
            qb.push(" AND owner_id = ").push_bind(owner.clone());
        }
        if let Some(f) = &q.function {
            qb.push(" AND function = ").push_bind(f.to_string());
        }
        if let Some(s) = q.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(c) = &q.cursor {
            qb.push(" AND id < ").push_bind(c.clone());
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(q.limit as i64);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| job_from_row(r).map(|j| j.job))
            .collect()
    }

    async fn cancel_job(&self, id: &str) -> Result<Option<JobStatus>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1
             WHERE id = $2 AND status = 'queued'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        status
            .map(|s| JobStatus::parse(&s).ok_or_else(|| corrupt(&s)))
            .transpose()
    }

    async fn expire_leases(&self) -> Result<u64> {
        let done = sqlx::query("UPDATE jobs SET lease_until = 0 WHERE status = 'running'")
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }

    async fn renew_leases(&self, held: &[(String, u32)], until: i64) -> Result<Vec<String>> {
        let mut lost = Vec::new();
        let mut tx = self.begin_write().await?;
        for (id, attempt) in held {
            let done = sqlx::query(
                "UPDATE jobs SET lease_until = $1
                 WHERE id = $2 AND attempts = $3 AND status = 'running' AND NOT cancel_requested",
            )
            .bind(until)
            .bind(id)
            .bind(*attempt as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                lost.push(id.clone());
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn prune_jobs(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM jobs WHERE finished_at < $1")
            .bind(before)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }

    async fn put_blob(&self, owner_id: &str, b: &BlobInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO blobs (digest, owner_id, size, sealed, created_at, name)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (digest, owner_id) DO UPDATE SET sealed = blobs.sealed OR excluded.sealed,
                 name = COALESCE(excluded.name, blobs.name)",
        )
        .bind(b.digest.to_string())
        .bind(owner_id)
        .bind(b.size as i64)
        .bind(b.sealed)
        .bind(b.created_at)
        .bind(b.name.as_deref())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        let row = sqlx::query("SELECT * FROM blobs WHERE digest = $1 AND owner_id = $2")
            .bind(digest.to_string())
            .bind(owner_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    async fn blobs(&self, owner_id: &str) -> Result<Vec<BlobInfo>> {
        let rows =
            sqlx::query("SELECT * FROM blobs WHERE owner_id = $1 ORDER BY created_at, digest")
                .bind(owner_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(blob_from_row).collect()
    }

    async fn delete_blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<bool>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM blobs WHERE digest = $1 AND owner_id = $2")
            .bind(digest.to_string())
            .bind(owner_id)
            .execute(&mut *tx)
            .await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((done.rows_affected() == 1).then_some(held > 0))
    }

    async fn put_profile(&self, function: &FunctionRef, p: &ProfileInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO profiles (function, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (function, name)
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(function.to_string())
        .bind(&p.name)
        .bind(p.value.to_string())
        .bind(p.updated_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn profile(&self, function: &FunctionRef, name: &str) -> Result<Option<ProfileInfo>> {
        let row = sqlx::query("SELECT * FROM profiles WHERE function = $1 AND name = $2")
            .bind(function.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    async fn profiles(&self, function: &FunctionRef) -> Result<Vec<ProfileInfo>> {
        let rows = sqlx::query("SELECT * FROM profiles WHERE function = $1 ORDER BY name")
            .bind(function.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    async fn delete_profile(&self, function: &FunctionRef, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM profiles WHERE function = $1 AND name = $2")
            .bind(function.to_string())
            .bind(name)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_secret(&self, secret: &SecretRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (namespace, function, name, sealed, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (namespace, function, name)
             DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at,
                           updated_by = excluded.updated_by",
        )
        .bind(secret.namespace.as_str())
        .bind(secret.function.as_deref().unwrap_or(""))
        .bind(&secret.name)
        .bind(&secret.sealed[..])
        .bind(secret.updated_at)
        .bind(&secret.updated_by)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn secrets(&self, namespace: &Namespace) -> Result<Vec<SecretRow>> {
        let rows = sqlx::query("SELECT * FROM secrets WHERE namespace = $1 ORDER BY name, function")
            .bind(namespace.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let function: String = row.try_get("function")?;
                Ok(SecretRow {
                    namespace: namespace.clone(),
                    function: (!function.is_empty()).then_some(function),
                    name: row.try_get("name")?,
                    sealed: row.try_get("sealed")?,
                    updated_at: row.try_get("updated_at")?,
                    updated_by: row.try_get("updated_by")?,
                })
            })
            .collect()
    }

    async fn put_document(&self, kind: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO documents (kind, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn insert_document(&self, kind: &str, key: &str, value: &str) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO documents (kind, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, key) DO NOTHING",
        )
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("{kind} {key} exists")));
        }
        Ok(())
    }

    async fn document(&self, kind: &str, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM documents WHERE kind = $1 AND key = $2")
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn documents(&self, kind: &str, prefix: &str, limit: u32) -> Result<Vec<(String, String)>> {
        // Keys from `prefix` up to the first key past every key it starts.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM documents WHERE kind = $1 AND key >= $2 ORDER BY key LIMIT $3",
        )
        .bind(kind)
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().take_while(|(k, _)| k.starts_with(prefix)).collect())
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM documents WHERE kind = $1 AND key = $2")
            .bind(kind)
            .bind(key)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_secret(
        &self,
        namespace: &Namespace,
        function: Option<&str>,
        name: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM secrets WHERE namespace = $1 AND function = $2 AND name = $3",
        )
        .bind(namespace.as_str())
        .bind(function.unwrap_or(""))
        .bind(name)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (id, at, actor, action, namespace, target, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&event.id)
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(event.namespace.as_ref().map(|n| n.as_str().to_owned()))
        .bind(&event.target)
        .bind(event.details.to_string())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn audit(&self, namespaces: Option<&[Namespace]>, limit: u32) -> Result<Vec<AuditEvent>> {
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM audit WHERE 1 = 1");
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

    async fn missing_artefacts(
        &self,
        digests: &[Digest],
        reach: Option<&Reach<'_>>,
    ) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Db>::new("SELECT digest FROM artefacts a WHERE digest IN (");
        let mut sep = qb.separated(", ");
        for d in digests {
            sep.push_bind(d.to_string());
        }
        sep.push_unseparated(")");
        if let Some(reach) = reach {
            qb.push(
                " AND (EXISTS (SELECT 1 FROM artefact_uploads u
                               WHERE u.digest = a.digest AND u.user_id = ",
            )
            .push_bind(reach.user_id)
            .push(")");
            if !reach.namespaces.is_empty() {
                qb.push(
                    " OR EXISTS (SELECT 1 FROM versions v JOIN functions f ON f.id = v.function_id
                                 WHERE v.artefact = a.digest AND f.namespace IN (",
                );
                let mut sep = qb.separated(", ");
                for ns in reach.namespaces {
                    sep.push_bind(ns.as_str());
                }
                sep.push_unseparated("))");
            }
            qb.push(")");
        }
        let present: Vec<String> = qb.build_query_scalar().fetch_all(&self.pool).await?;
        let mut missing: Vec<Digest> = digests
            .iter()
            .filter(|d| !present.contains(&d.to_string()))
            .copied()
            .collect();
        missing.dedup();
        Ok(missing)
    }

    async fn put_artefact(&self, digest: &Digest, bytes: &[u8], uploader: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO artefacts (digest, size, bytes, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(bytes.len() as i64)
        .bind(bytes)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO artefact_uploads (digest, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest, user_id) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(uploader)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn artefact(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM artefacts WHERE digest = $1")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(bytes.map(Bytes::from))
    }

    async fn create_version(
        &self,
        function: &FunctionRef,
        info: VersionInfo,
    ) -> Result<VersionInfo> {
        Ok(self.add_version(function, info, false).await?.0)
    }

    async fn publish_version(
        &self,
        function: &FunctionRef,
        info: VersionInfo,
    ) -> Result<(VersionInfo, bool)> {
        self.add_version(function, info, true).await
    }

    async fn function(&self, function: &FunctionRef) -> Result<Option<FunctionRow>> {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT kind, active_version, created_at, updated_at FROM functions
             WHERE namespace = $1 AND name = $2",
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
             WHERE f.namespace = $1 AND f.name = $2 AND v.version = $3",
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
             WHERE f.namespace = $1 AND f.name = $2 ORDER BY v.version",
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
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT f.namespace, f.name, f.kind, f.active_version, f.updated_at, v.spec
             FROM functions f
             JOIN versions v ON v.function_id = f.id AND v.version = f.active_version",
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
            "UPDATE functions SET active_version = $1, updated_at = $2
             WHERE namespace = $3 AND name = $4
               AND EXISTS (SELECT 1 FROM versions v
                           WHERE v.function_id = functions.id AND v.version = $1)",
        )
        .bind(version as i64)
        .bind(now_ms())
        .bind(function.namespace().as_str())
        .bind(function.name())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_function(&self, function: &FunctionRef) -> Result<bool> {
        let done = sqlx::query("DELETE FROM functions WHERE namespace = $1 AND name = $2")
            .bind(function.namespace().as_str())
            .bind(function.name())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_invocations(&self, records: &[InvocationRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One row per function and up to BATCH_RECORDS of its records, all in one
        // transaction (one sync).
        let mut by_function: HashMap<&FunctionRef, Vec<&InvocationRecord>> = HashMap::new();
        for r in records {
            by_function.entry(&r.function).or_default().push(r);
        }
        let mut tx = self.begin_write().await?;
        for (function, records) in &by_function {
            for chunk in records.chunks(BATCH_RECORDS) {
                let ids = || chunk.iter().map(|r| r.id.as_str());
                sqlx::query(
                    "INSERT INTO invocation_batches
                     (namespace, function, first_id, last_id, records, body)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(function.namespace().as_str())
                .bind(function.to_string())
                .bind(ids().min().expect("a chunk is not empty"))
                .bind(ids().max().expect("a chunk is not empty"))
                .bind(chunk.len() as i64)
                .bind(encode_batch(chunk))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn invocations(&self, query: &InvocationQuery) -> Result<Vec<InvocationRecord>> {
        let limit = query.limit as usize;
        if limit == 0 || query.namespaces.as_ref().is_some_and(|n| n.is_empty()) {
            return Ok(Vec::new());
        }
        // Batches newest first by their newest record. Every record of the batches
        // still to read is older than the current batch's `last_id`, so once `limit`
        // records newer than that are found, the listing is complete. Batches may
        // overlap in time (one per function per write, several replicas), and a
        // record written twice is listed once.
        let mut found: Vec<InvocationRecord> = Vec::new();
        let mut cursor: Option<(String, i64)> = None;
        'pages: loop {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT seq, function, last_id, body FROM invocation_batches WHERE 1 = 1",
            );
            if let Some(f) = &query.function {
                qb.push(" AND function = ").push_bind(f.to_string());
            }
            if let Some(namespaces) = &query.namespaces {
                qb.push(" AND");
                push_namespaces(&mut qb, namespaces);
            }
            if let Some(after) = &query.after {
                qb.push(" AND last_id > ").push_bind(after.clone());
            }
            if let Some((last_id, seq)) = &cursor {
                qb.push(" AND (last_id < ")
                    .push_bind(last_id.clone())
                    .push(" OR (last_id = ")
                    .push_bind(last_id.clone())
                    .push(" AND seq < ")
                    .push_bind(*seq)
                    .push("))");
            }
            qb.push(" ORDER BY last_id DESC, seq DESC LIMIT ")
                .push_bind(BATCH_PAGE);
            let rows = qb.build().fetch_all(&self.pool).await?;
            for row in &rows {
                let last_id: String = row.try_get("last_id")?;
                if found.len() == limit && found[limit - 1].id > last_id {
                    break 'pages;
                }
                found.extend(decode_batch(row)?.into_iter().filter(|r| {
                    query.outcome.is_none_or(|o| o == r.outcome)
                        && query.after.as_ref().is_none_or(|a| r.id > *a)
                        && query.caller.as_ref().is_none_or(|c| r.made_by(c))
                }));
                // Sorted, a record written twice sits beside its copy.
                found.sort_unstable_by(|a, b| b.id.cmp(&a.id));
                found.dedup_by(|a, b| a.id == b.id);
                found.truncate(limit);
                cursor = Some((last_id, row.try_get("seq")?));
            }
            if rows.len() < BATCH_PAGE as usize {
                break;
            }
        }
        Ok(found)
    }

    async fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>> {
        let rows = sqlx::query(
            "SELECT function, body FROM invocation_batches WHERE last_id >= $1 AND first_id <= $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            if let Some(r) = decode_batch(row)?.into_iter().find(|r| r.id == id) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn invocation_tree(
        &self,
        root: &str,
        until: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        // Every call of a tree starts after its root and ends before it: the batches
        // holding them overlap the root's lifetime.
        let mut rows = sqlx::query(
            "SELECT function, body FROM invocation_batches WHERE last_id >= $1 AND first_id <= $2",
        )
        .bind(root)
        .bind(until)
        .fetch(&self.pool);
        let mut found = Vec::new();
        while let Some(row) = rows.try_next().await? {
            found.extend(decode_batch(&row)?.into_iter().filter(|r| {
                r.id.as_str() <= until
                    && (r.id == root || r.tree.as_ref().is_some_and(|t| t.root == root))
            }));
            if found.len() > limit {
                break;
            }
        }
        found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        found.truncate(limit);
        Ok(found)
    }

    async fn prune_invocations(&self, keep: u64) -> Result<u64> {
        // Newest batches first, until they hold `keep` records: every record at or
        // after the oldest of theirs stays (the newest `keep` among them), and only
        // batches wholly older than it go.
        let mut rows =
            sqlx::query("SELECT first_id, records FROM invocation_batches ORDER BY last_id DESC")
                .fetch(&self.pool);
        let (mut held, mut oldest) = (0u64, None::<String>);
        while let Some(row) = rows.try_next().await? {
            let first_id: String = row.try_get("first_id")?;
            let records: i64 = row.try_get("records")?;
            held += records as u64;
            if oldest.as_ref().is_none_or(|o| first_id < *o) {
                oldest = Some(first_id);
            }
            if held >= keep {
                break;
            }
        }
        drop(rows);
        let Some(cutoff) = oldest.filter(|_| held >= keep) else {
            return Ok(0);
        };
        let removed: Vec<i64> =
            sqlx::query_scalar("DELETE FROM invocation_batches WHERE last_id < $1 RETURNING records")
                .bind(cutoff)
                .fetch_all(self.writer())
                .await?;
        Ok(removed.iter().sum::<i64>() as u64)
    }
}
