//! Durable jobs: the routes, and the scheduler that claims queued jobs from the store,
//! runs them like invokes, and records exactly one result per job.

use crate::App;
use crate::api::{CallOptions, Origin, Parent, callable, perform};
use crate::auth::Caller;
use crate::cluster::Change;
use crate::error::{AppResult, store_error};
use crate::extract::{Json, MAX_PAGE, Path, Query, cursor, page_limit};
use crate::openapi::Uuid;
use crate::tree::Acting;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, BlobInfo, ErrorCode, FunctionRef, Job, JobAccepted, JobList, JobStatus, JobsAccepted,
    SubmitJob, SubmitJobs,
};
use swb_store::{JobFinish, JobOutcome, JobQuery, JobRow, NewJob};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// Jobs run at once by this server.
const CONCURRENCY: usize = 256;
/// Jobs a server holds beyond what its own workers can run at once: calls forwarded
/// to other replicas, and the next jobs ready for a worker that frees up. A killed
/// server loses the attempts of the jobs it holds, so it holds no more than this.
const AHEAD: usize = 64;
/// How long a job waits for a worker to appear before it fails with `no_worker`.
const WAIT_FOR_WORKER_MS: i64 = 60 * 60 * 1000;

/// A job this server runs: its attempt (which holds the job) and its cancel signal.
struct Running {
    attempt: u32,
    cancel: Arc<Notify>,
}

/// In-memory state of the job machinery of this server.
pub struct JobQueue {
    wake: Notify,
    /// The jobs this server runs.
    running: Mutex<HashMap<String, Running>>,
    /// Long-pollers waiting for a job to end.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    finishes: mpsc::Sender<JobFinish>,
}

impl JobQueue {
    /// Creates the queue and the receiver its finisher task drains.
    pub fn new() -> (Self, mpsc::Receiver<JobFinish>) {
        let (finishes, rx) = mpsc::channel(10_000);
        (
            Self {
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                waiters: Mutex::new(HashMap::new()),
                finishes,
            },
            rx,
        )
    }

    /// Stops the job if it runs here, and wakes those waiting for it.
    pub(crate) fn cancel_running(&self, id: &str) {
        if let Some(run) = self.running.lock().expect("running lock").get(id) {
            run.cancel.notify_one();
        }
        self.notify_ended([id.to_owned()]);
    }

    pub(crate) fn notify_ended(&self, ids: impl IntoIterator<Item = String>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        for id in ids {
            for w in waiters.remove(&id).unwrap_or_default() {
                let _ = w.send(());
            }
        }
    }
}

/// Starts the scheduler and the finisher (which writes outcomes in batches).
pub fn spawn(app: Arc<App>, mut finishes: mpsc::Receiver<JobFinish>) {
    let writer = app.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(1024);
        while finishes.recv_many(&mut batch, 1024).await > 0 {
            if let Err(e) = writer.store.finish_jobs(&batch).await {
                tracing::error!(error = %e, "could not record job outcomes; their leases will lapse and they will run again");
            }
            let jobs = batch.drain(..).map(|f| f.id).collect();
            // Waiters may be on any replica.
            let _ = writer.changed(Change::JobsEnded { jobs }).await;
            writer.jobs.wake.notify_one();
        }
    });
    tokio::spawn(renew(app.clone()));
    tokio::spawn(schedule(app));
}

/// Keeps the leases of the jobs this server runs, every third of `--job-lease`,
/// however long their attempts take (a call's own deadline ends it), so that a
/// lease lapses only when its holder is gone; stops the runs whose attempt no
/// longer holds its job (cancelled elsewhere, or taken over after a lapse).
async fn renew(app: Arc<App>) {
    let lease = app.config.job_lease;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let held: Vec<(String, u32)> = {
            let running = app.jobs.running.lock().expect("running lock");
            running
                .iter()
                .map(|(id, run)| (id.clone(), run.attempt))
                .collect()
        };
        if held.is_empty() {
            continue;
        }
        let until = now_ms() + lease.as_millis() as i64;
        match app.store.renew_leases(&held, until).await {
            Ok(lost) => {
                for id in lost {
                    app.jobs.cancel_running(&id);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not renew job leases"),
        }
    }
}

async fn schedule(app: Arc<App>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut last_prune = 0;
    loop {
        let held = CONCURRENCY - slots.available_permits();
        let free = (app.hub.capacity() + AHEAD)
            .min(CONCURRENCY)
            .saturating_sub(held);
        let claimed = if free == 0 {
            Vec::new()
        } else {
            app.store
                .claim_jobs(
                    now_ms(),
                    free as u32,
                    app.config.job_lease.as_millis() as u64,
                )
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not claim jobs");
                    Vec::new()
                })
        };
        let idle = claimed.is_empty();
        for job in claimed {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let app = app.clone();
            tokio::spawn(async move {
                let finish = run(&app, job).await;
                let _ = app.jobs.finishes.send(finish).await;
                drop(permit);
            });
        }
        if now_ms() - last_prune > 3600 * 1000 {
            last_prune = now_ms();
            let before = now_ms() - app.config.job_retention.as_millis() as i64;
            if let Ok(n @ 1..) = app.store.prune_jobs(before).await {
                tracing::info!(removed = n, "pruned finished jobs");
            }
        }
        if idle {
            // New submissions and finished attempts wake the loop; the timer catches
            // retries coming due and lapsed leases.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), app.jobs.wake.notified()).await;
        }
    }
}

fn retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::WorkerLost | ErrorCode::Timeout | ErrorCode::FunctionError
    )
}

async fn run(app: &App, row: JobRow) -> JobFinish {
    let job = &row.job;
    let finish = |outcome| JobFinish {
        id: job.id.clone(),
        attempt: job.attempts,
        outcome,
    };
    if row.cancel_requested {
        return finish(JobOutcome::Cancelled);
    }
    let failed = |error: ApiError| {
        finish(JobOutcome::Failed {
            error,
            stderr_tail: String::new(),
        })
    };
    let route = match app.routes.get(&job.function, job.version).await {
        Ok(route) => route,
        Err(e) => return failed(e),
    };
    let input = match (&row.input, &row.input_blob) {
        (Some(input), _) => Ok(input.clone()),
        (None, Some(digest)) => {
            app.blobs
                .get_bytes(digest, app.config.max_body_bytes as u64)
                .await
        }
        (None, None) => Ok(Bytes::new()),
    };
    // Nested calls act for whoever submitted the job (`None`: it may make none).
    let acting = match row
        .acting
        .as_deref()
        .and_then(|a| serde_json::from_str::<Acting>(a).ok())
    {
        // … and only while the token it was submitted with stands.
        Some(a) if app.auth.stands(&a.token_id).await => Caller::acting(&a).ok(),
        _ => None,
    };
    let cancel = Arc::new(Notify::new());
    app.jobs.running.lock().expect("running lock").insert(
        job.id.clone(),
        Running {
            attempt: job.attempts,
            cancel: cancel.clone(),
        },
    );
    let call = perform(
        app,
        Origin::Job,
        &job.function,
        &route,
        input,
        CallOptions {
            profile: row.profile.as_deref(),
            timeout_ms: row.timeout_ms,
            trace: None,
        },
        Parent::Root(acting),
    );
    let done = tokio::select! {
        done = call => Some(done),
        // Dropping the call cancels it on its worker.
        _ = cancel.notified() => None,
    };
    app.jobs
        .running
        .lock()
        .expect("running lock")
        .remove(&job.id);
    let Some(done) = done else {
        return finish(JobOutcome::Cancelled);
    };
    let outcome = match done.result {
        Ok((output, _)) => match store_result(app, &row.owner_id, output).await {
            Ok((result, result_blob)) => JobOutcome::Succeeded {
                result,
                result_blob,
                stderr_tail: done.stderr_tail,
            },
            Err(error) => JobOutcome::Failed {
                error,
                stderr_tail: done.stderr_tail,
            },
        },
        Err(e)
            if e.code == ErrorCode::NoWorker && now_ms() - job.created_at < WAIT_FOR_WORKER_MS =>
        {
            JobOutcome::Wait {
                reason: e.message,
                run_after: now_ms() + 500,
            }
        }
        Err(error) if retryable(error.code) && job.attempts < job.max_attempts => {
            let backoff = 200u64 << (job.attempts - 1).min(8);
            JobOutcome::Retry {
                error,
                stderr_tail: done.stderr_tail,
                run_after: now_ms() + backoff.min(30_000) as i64,
            }
        }
        Err(error) => JobOutcome::Failed {
            error,
            stderr_tail: done.stderr_tail,
        },
    };
    finish(outcome)
}

/// Inlines a small result; a large one becomes a blob of the job's owner.
async fn store_result(
    app: &App,
    owner: &str,
    output: Bytes,
) -> Result<(Option<Bytes>, Option<swb_api::Digest>), ApiError> {
    if output.len() <= app.config.job_result_inline_bytes {
        return Ok((Some(output), None));
    }
    let size = output.len() as u64;
    let digest = app.blobs.put_bytes(output).await?;
    let info = BlobInfo {
        digest,
        name: None,
        size,
        sealed: false,
        created_at: now_ms(),
    };
    app.store
        .put_blob(owner, &info)
        .await
        .map_err(store_error)?;
    Ok((None, Some(digest)))
}

// ---- routes ------------------------------------------------------------------------------

async fn validate(app: &App, caller: &Caller, req: SubmitJob) -> Result<NewJob, ApiError> {
    for (text, pointer) in [
        (&req.profile, "/profile"),
        (&req.idempotency_key, "/idempotency_key"),
    ] {
        swb_api::text_error(text.as_deref().unwrap_or_default(), pointer)?;
    }
    let function: FunctionRef = req
        .function
        .parse()
        .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))?;
    let function = callable(app, caller, function)?;
    let route = app.routes.get(&function, req.version).await?;
    let input = match (req.input, req.input_blob) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_input(
                "give input or input_blob, not both",
            ));
        }
        (Some(value), None) => Some(Bytes::from(value.to_string())),
        (None, Some(digest)) => {
            app.store
                .blob(&caller.user.id, &digest)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::not_found(format!("blob {digest}")))?;
            None
        }
        (None, None) => None,
    };
    if let (Some(schema), Some(input)) = (&route.input, &input) {
        crate::api::check_json(schema, input, ErrorCode::InvalidInput, "input")?;
    }
    if input
        .as_ref()
        .is_some_and(|i| i.len() > app.config.max_body_bytes)
    {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "input exceeds the size limit",
        ));
    }
    let max_attempts = req.max_attempts.unwrap_or(3);
    if !(1..=SubmitJob::MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(ApiError::invalid_input(format!(
            "max_attempts must be between 1 and {}",
            SubmitJob::MAX_ATTEMPTS
        )));
    }
    if req
        .timeout_ms
        .is_some_and(|t| !(1..=app.config.max_timeout_ms).contains(&t))
    {
        return Err(ApiError::invalid_input(format!(
            "timeout_ms must be between 1 and {}",
            app.config.max_timeout_ms
        )));
    }
    if let Some(profile) = &req.profile
        && app
            .store
            .profile(&function, profile)
            .await
            .map_err(store_error)?
            .is_none()
    {
        return Err(ApiError::not_found(format!(
            "profile {profile} of {function}"
        )));
    }
    Ok(NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        owner_id: caller.user.id.clone(),
        function,
        version: req.version.or(Some(route.version.version)),
        input,
        input_blob: req.input_blob,
        profile: req.profile,
        idempotency_key: req.idempotency_key,
        max_attempts,
        timeout_ms: req.timeout_ms,
        created_at: now_ms(),
        // Kept only where nested calls may need it.
        acting: (!route.version.calls.is_empty())
            .then(|| serde_json::to_string(&Acting::of(caller)).expect("acting serializes")),
    })
}

async fn submit(app: &App, caller: &Caller, reqs: Vec<SubmitJob>) -> AppResult<Vec<JobAccepted>> {
    if caller.call.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a call token makes nested calls, not jobs (a job would outlive its call)",
        )
        .into());
    }
    let mut jobs = Vec::with_capacity(reqs.len());
    for req in reqs {
        jobs.push(validate(app, caller, req).await?);
    }
    let accepted = app.store.submit_jobs(&jobs).await?;
    app.jobs.wake.notify_one();
    Ok(accepted
        .into_iter()
        .map(|(id, status)| JobAccepted { id, status })
        .collect())
}

pub async fn submit_job(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<SubmitJob>,
) -> AppResult<(StatusCode, axum::Json<JobAccepted>)> {
    let mut accepted = submit(&app, &caller, vec![req]).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(accepted.remove(0))))
}

pub async fn submit_jobs(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<SubmitJobs>,
) -> AppResult<(StatusCode, axum::Json<JobsAccepted>)> {
    if !(1..=SubmitJobs::MAX_JOBS).contains(&req.jobs.len()) {
        let max = SubmitJobs::MAX_JOBS;
        return Err(ApiError::invalid_input(format!("a batch holds 1 to {max} jobs")).into());
    }
    let jobs = submit(&app, &caller, req.jobs).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(JobsAccepted { jobs })))
}

/// The job if the caller owns it (or is an administrator); `not_found` otherwise.
async fn owned(app: &App, caller: &Caller, id: &str) -> Result<JobRow, ApiError> {
    let row = app.store.job(id).await.map_err(store_error)?;
    // Owners see their jobs, through tokens that may call the job's function.
    row.filter(|r| {
        caller.is_platform_admin()
            || (r.owner_id == caller.user.id
                && callable(app, caller, r.job.function.clone()).is_ok())
    })
    .ok_or_else(|| ApiError::not_found(format!("job {id}")))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Wait up to this many seconds (at most 60) for the job to end.
    wait_s: Option<u64>,
}

pub async fn show_job(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> AppResult<axum::Json<Job>> {
    let wait = Duration::from_secs(q.wait_s.unwrap_or(0).min(60));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register before reading, so an end between the two is not missed.
        let (tx, rx) = oneshot::channel();
        if !wait.is_zero() {
            app.jobs
                .waiters
                .lock()
                .expect("waiters lock")
                .entry(id.clone())
                .or_default()
                .push(tx);
        }
        let row = owned(&app, &caller, &id).await?;
        if wait.is_zero() || row.job.status.is_final() {
            return Ok(axum::Json(row.job));
        }
        if tokio::time::timeout_at(deadline, rx).await.is_err() {
            return Ok(axum::Json(owned(&app, &caller, &id).await?.job));
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only this function's jobs.
    #[schemars(with = "Option<FunctionRef>")]
    function: Option<String>,
    /// Only jobs in this state.
    #[schemars(with = "Option<JobStatus>")]
    status: Option<String>,
    /// `next_cursor` of the previous page.
    #[schemars(with = "Option<Uuid>")]
    cursor: Option<String>,
    /// 1 to 1,000; 50 when absent.
    #[schemars(range(min = 1, max = MAX_PAGE))]
    limit: Option<u32>,
}

pub async fn list_jobs(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<JobsQuery>,
) -> AppResult<axum::Json<JobList>> {
    let limit = page_limit(q.limit, 50)?;
    let query = JobQuery {
        owner_id: (!caller.is_platform_admin()).then(|| caller.user.id.clone()),
        function: q
            .function
            .map(|f| {
                f.parse()
                    .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))
            })
            .transpose()?,
        status: q
            .status
            .map(|s| {
                JobStatus::parse(&s).ok_or_else(|| {
                    ApiError::invalid_input(format!(
                        "bad status {s:?}: use queued, running, succeeded, failed or cancelled"
                    ))
                })
            })
            .transpose()?,
        cursor: cursor(q.cursor, "cursor")?,
        limit,
    };
    let jobs = app.store.jobs(&query).await?;
    let next_cursor = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id.clone()))
        .flatten();
    Ok(axum::Json(JobList { jobs, next_cursor }))
}

/// `POST /v1/jobs/{id}/resubmit`: a new job of the same function, version, input,
/// profile, attempts and deadline, for the caller.
pub async fn resubmit_job(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, axum::Json<JobAccepted>)> {
    let row = owned(&app, &caller, &id).await?;
    let input = row
        .input
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()
        .map_err(|_| ApiError::new(ErrorCode::Internal, "a stored job input is not JSON"))?;
    let again = SubmitJob {
        function: row.job.function.to_string(),
        version: row.job.version,
        input,
        input_blob: row.input_blob,
        profile: row.profile,
        idempotency_key: None,
        max_attempts: Some(row.job.max_attempts),
        timeout_ms: row.timeout_ms,
    };
    let mut accepted = submit(&app, &caller, vec![again]).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(accepted.remove(0))))
}

pub async fn cancel_job(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<axum::Json<Job>> {
    owned(&app, &caller, &id).await?;
    app.store.cancel_job(&id).await?;
    // The job may be running on another replica.
    app.changed(Change::JobCancelled { job: id.clone() })
        .await?;
    Ok(axum::Json(owned(&app, &caller, &id).await?.job))
}
