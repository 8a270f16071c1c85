//! SQLite: jobs, blobs and profiles.

use crate::sqlite::{corrupt, is_unique_violation};
use crate::{JobFinish, JobOutcome, JobQuery, JobRow, NewJob, Result, SqliteStore};
use bytes::Bytes;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use swb_api::{ApiError, BlobInfo, Digest, FunctionRef, Job, JobStatus, ProfileInfo};

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow> {
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
        input: input.map(Bytes::from),
        input_blob: digest(text("input_blob")?)?,
        profile: text("profile")?,
        timeout_ms: timeout.map(|t| t as u64),
        cancel_requested: row.try_get("cancel_requested")?,
    })
}

fn blob_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BlobInfo> {
    let digest: String = row.try_get("digest")?;
    let size: i64 = row.try_get("size")?;
    Ok(BlobInfo {
        digest: digest.parse().map_err(corrupt)?,
        size: size as u64,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
    })
}

fn profile_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ProfileInfo> {
    let value: String = row.try_get("value")?;
    Ok(ProfileInfo {
        name: row.try_get("name")?,
        value: serde_json::from_str(&value).map_err(corrupt)?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn apply(conn: &mut SqliteConnection, f: &JobFinish, now: i64) -> Result<u64> {
    let held = " WHERE id = ? AND attempts = ? AND status = 'running'";
    let error_json = |e: &ApiError| serde_json::to_string(e).expect("errors serialize");
    let done = match &f.outcome {
        JobOutcome::Succeeded {
            result,
            result_blob,
            stderr_tail,
        } => {
            sqlx::query(&format!(
                "UPDATE jobs SET status = 'succeeded', result = ?, result_blob = ?, stderr_tail = ?,
                 error = NULL, waiting = NULL, lease_until = NULL, finished_at = ?{held}"
            ))
            .bind(result.as_deref())
            .bind(result_blob.map(|d| d.to_string()))
            .bind(stderr_tail)
            .bind(now)
            .bind(&f.id)
            .bind(f.attempt as i64)
            .execute(&mut *conn)
            .await?
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
            sqlx::query(
                    "UPDATE jobs SET
                     status = CASE WHEN cancel_requested = 1 AND ?1 = 'queued' THEN 'cancelled' ELSE ?1 END,
                     finished_at = CASE WHEN cancel_requested = 1 AND ?1 = 'queued' THEN ?9 ELSE ?6 END,
                     error = ?2, stderr_tail = ?3, run_after = ?4,
                     attempt_errors = json_insert(attempt_errors, '$[#]', json(?5)),
                     waiting = NULL, lease_until = NULL
                     WHERE id = ?7 AND attempts = ?8 AND status = 'running'",
                )
                .bind(status)
                .bind(error_json(error))
                .bind(stderr_tail)
                .bind(run_after)
                .bind(error_json(error))
                .bind(finished)
                .bind(&f.id)
                .bind(f.attempt as i64)
                .bind(now)
                .execute(&mut *conn)
                .await?
        }
        JobOutcome::Wait { reason, run_after } => {
            sqlx::query(&format!(
                "UPDATE jobs SET
                 status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
                 attempts = attempts - 1, waiting = ?, run_after = ?, lease_until = NULL{held}"
            ))
            .bind(reason)
            .bind(run_after)
            .bind(&f.id)
            .bind(f.attempt as i64)
            .execute(&mut *conn)
            .await?
        }
        JobOutcome::Cancelled => {
            sqlx::query(&format!(
                "UPDATE jobs SET status = 'cancelled', lease_until = NULL, finished_at = ?{held}"
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

impl SqliteStore {
    pub(crate) async fn submit_jobs_impl(
        &self,
        jobs: &[NewJob],
    ) -> Result<Vec<(String, JobStatus)>> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            let inserted = sqlx::query(
                "INSERT INTO jobs (id, owner_id, function, namespace, version, input, input_blob,
                 profile, idempotency_key, status, max_attempts, timeout_ms, run_after, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            )
            .bind(&j.id)
            .bind(&j.owner_id)
            .bind(j.function.to_string())
            .bind(j.function.namespace().as_str())
            .bind(j.version.map(i64::from))
            .bind(j.input.as_deref())
            .bind(j.input_blob.map(|d| d.to_string()))
            .bind(&j.profile)
            .bind(&j.idempotency_key)
            .bind(j.max_attempts as i64)
            .bind(j.timeout_ms.map(|t| t as i64))
            .bind(j.created_at)
            .bind(j.created_at)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => out.push((j.id.clone(), JobStatus::Queued)),
                Err(e) if is_unique_violation(&e) && j.idempotency_key.is_some() => {
                    let (id, status): (String, String) = sqlx::query_as(
                        "SELECT id, status FROM jobs WHERE owner_id = ? AND idempotency_key = ?",
                    )
                    .bind(&j.owner_id)
                    .bind(&j.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
                    let status = JobStatus::parse(&status).ok_or_else(|| corrupt(&status))?;
                    out.push((id, status));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn claim_jobs_impl(
        &self,
        now: i64,
        limit: u32,
        default_timeout_ms: u64,
        grace_ms: u64,
    ) -> Result<Vec<JobRow>> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1,
               started_at = COALESCE(started_at, ?1),
               lease_until = ?1 + COALESCE(timeout_ms, ?2) + ?3
             WHERE id IN (
               SELECT id FROM jobs
               WHERE (status = 'queued' AND run_after <= ?1)
                  OR (status = 'running' AND lease_until < ?1)
               ORDER BY run_after, id LIMIT ?4)
             RETURNING *",
        )
        .bind(now)
        .bind(default_timeout_ms as i64)
        .bind(grace_ms as i64)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(crate) async fn finish_jobs_impl(&self, finishes: &[JobFinish]) -> Result<u64> {
        let now = swb_api::timestamp::now_ms();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let mut applied = 0;
        for f in finishes {
            applied += apply(&mut tx, f, now).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    pub(crate) async fn job_impl(&self, id: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub(crate) async fn jobs_impl(&self, q: &JobQuery) -> Result<Vec<Job>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM jobs WHERE 1 = 1");
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
        let rows = qb.build().fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| job_from_row(r).map(|j| j.job))
            .collect()
    }

    pub(crate) async fn cancel_job_impl(&self, id: &str) -> Result<Option<JobStatus>> {
        let now = swb_api::timestamp::now_ms();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        status
            .map(|s| JobStatus::parse(&s).ok_or_else(|| corrupt(&s)))
            .transpose()
    }

    pub(crate) async fn requeue_running_impl(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_until = NULL
             WHERE status = 'running'",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn prune_jobs_impl(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM jobs WHERE finished_at < ?")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn put_blob_impl(&self, owner: &str, b: &BlobInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO blobs (digest, owner_id, size, sealed, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (digest, owner_id) DO UPDATE SET sealed = MAX(sealed, excluded.sealed)",
        )
        .bind(b.digest.to_string())
        .bind(owner)
        .bind(b.size as i64)
        .bind(b.sealed)
        .bind(b.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn blob_impl(&self, owner: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        let row = sqlx::query("SELECT * FROM blobs WHERE digest = ? AND owner_id = ?")
            .bind(digest.to_string())
            .bind(owner)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    pub(crate) async fn blobs_impl(&self, owner: &str) -> Result<Vec<BlobInfo>> {
        let rows =
            sqlx::query("SELECT * FROM blobs WHERE owner_id = ? ORDER BY created_at, digest")
                .bind(owner)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(blob_from_row).collect()
    }

    pub(crate) async fn delete_blob_impl(
        &self,
        owner: &str,
        digest: &Digest,
    ) -> Result<Option<bool>> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("DELETE FROM blobs WHERE digest = ? AND owner_id = ?")
            .bind(digest.to_string())
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((done.rows_affected() == 1).then_some(held > 0))
    }

    pub(crate) async fn put_profile_impl(&self, f: &FunctionRef, p: &ProfileInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO profiles (function, name, value, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (function, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(f.to_string())
        .bind(&p.name)
        .bind(p.value.to_string())
        .bind(p.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn profile_impl(
        &self,
        f: &FunctionRef,
        name: &str,
    ) -> Result<Option<ProfileInfo>> {
        let row = sqlx::query("SELECT * FROM profiles WHERE function = ? AND name = ?")
            .bind(f.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    pub(crate) async fn profiles_impl(&self, f: &FunctionRef) -> Result<Vec<ProfileInfo>> {
        let rows = sqlx::query("SELECT * FROM profiles WHERE function = ? ORDER BY name")
            .bind(f.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    pub(crate) async fn delete_profile_impl(&self, f: &FunctionRef, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM profiles WHERE function = ? AND name = ?")
            .bind(f.to_string())
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
