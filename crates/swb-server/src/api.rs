//! The REST API: routes and handlers. Handlers stay thin: they authenticate,
//! authorize, validate, and call into the store, the routing table and the hub.

use crate::App;
use crate::acl::{Acl, Roles};
use crate::auth::Caller;
use crate::cluster::Change;
use crate::error::{AppError, AppResult, error_response};
use crate::extract::{Body, Json, Path, Query, cursor, page_limit, parse_json};
use crate::hub::{Answer, Target};
use crate::routes::{Route, compile_schema};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, ArtefactInfo, DeployRequest, DeployResponse, Digest, ErrorCode, FunctionDetail,
    FunctionKind, FunctionList, FunctionRef, Health, InvocationList, InvocationRecord, Limits,
    MissingRequest, MissingResponse, Outcome, Role, RollbackRequest, VersionInfo, VersionList,
    VersionSummary, WorkerList, headers,
};
use swb_store::{InvocationQuery, Reach};
use tokio::time::Instant;

/// Most digests one `artefacts/missing` request may ask about.
const MAX_DIGESTS: usize = 10_000;
const MAX_INVOCATIONS_PAGE: u32 = 1_000;

/// Every route: method, path, handler. The router is built from this table, and the
/// authorization tests check that each entry has expectations.
fn table() -> Vec<(Method, &'static str, MethodRouter<Arc<App>>)> {
    use crate::identity as id;
    use crate::{data, jobs};
    vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/v1/openapi.json", get(openapi)),
        (
            Method::POST,
            "/v1/artefacts/missing",
            post(missing_artefacts),
        ),
        (Method::PUT, "/v1/artefacts/{digest}", put(put_artefact)),
        (Method::GET, "/v1/functions", get(list_functions)),
        (Method::GET, "/v1/functions/{ns}/{name}", get(show_function)),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}",
            delete(delete_function),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/versions",
            get(list_versions),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/versions",
            post(deploy),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/rollback",
            post(rollback),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/invoke",
            post(invoke),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/shares",
            get(id::list_function_shares),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/shares",
            post(id::share_function),
        ),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}/shares/{email}",
            delete(id::unshare_function),
        ),
        (Method::GET, "/v1/invocations", get(list_invocations)),
        (Method::GET, "/v1/invocations/{id}", get(show_invocation)),
        (Method::GET, "/v1/workers", get(list_workers)),
        (Method::GET, "/v1/worker/connect", get(crate::ws::connect)),
        (Method::GET, "/v1/me", get(id::me)),
        (Method::GET, "/v1/users", get(id::list_users)),
        (Method::POST, "/v1/users", post(id::create_user)),
        (Method::DELETE, "/v1/users/{email}", delete(id::delete_user)),
        (Method::GET, "/v1/namespaces", get(id::list_namespaces)),
        (Method::POST, "/v1/namespaces", post(id::create_namespace)),
        (
            Method::GET,
            "/v1/namespaces/{ns}/shares",
            get(id::list_namespace_shares),
        ),
        (
            Method::POST,
            "/v1/namespaces/{ns}/shares",
            post(id::share_namespace),
        ),
        (
            Method::DELETE,
            "/v1/namespaces/{ns}/shares/{email}",
            delete(id::unshare_namespace),
        ),
        (Method::GET, "/v1/tokens", get(id::list_tokens)),
        (Method::POST, "/v1/tokens", post(id::create_token)),
        (Method::DELETE, "/v1/tokens/{id}", delete(id::revoke_token)),
        (Method::GET, "/v1/audit", get(id::list_audit)),
        (Method::POST, "/v1/jobs", post(jobs::submit_job)),
        (Method::POST, "/v1/jobs/batch", post(jobs::submit_jobs)),
        (Method::GET, "/v1/jobs", get(jobs::list_jobs)),
        (Method::GET, "/v1/jobs/{id}", get(jobs::show_job)),
        (Method::POST, "/v1/jobs/{id}/cancel", post(jobs::cancel_job)),
        (
            Method::POST,
            "/v1/blobs",
            post(data::upload_blob).layer(DefaultBodyLimit::disable()),
        ),
        (Method::GET, "/v1/blobs", get(data::list_blobs)),
        (Method::GET, "/v1/blobs/{digest}", get(data::download_blob)),
        (
            Method::DELETE,
            "/v1/blobs/{digest}",
            delete(data::delete_blob),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/profiles",
            get(data::list_profiles),
        ),
        (
            Method::PUT,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            put(data::put_profile),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            get(data::get_profile),
        ),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            delete(data::delete_profile),
        ),
    ]
}

/// Method and path of every route.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

pub fn router(app: Arc<App>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .with_state(app)
}

async fn not_found() -> AppError {
    AppError(ApiError::new(
        ErrorCode::NotFound,
        "no such route; see /v1/openapi.json",
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> AppError {
    AppError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {method}; see /v1/openapi.json",
            uri.path()
        ),
    ))
}

async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Prometheus metrics: they name every function, so only an administrator's
/// unscoped token or a `metrics`-scoped one may read them.
async fn metrics(State(app): State<Arc<App>>, caller: Caller) -> AppResult<impl IntoResponse> {
    if !caller.may_scrape() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "metrics need an administrator's token, unscoped or with scope `metrics`",
        )
        .into());
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    ))
}

async fn openapi(_: Caller) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

pub(crate) fn function_ref(ns: &str, name: &str) -> Result<FunctionRef, ApiError> {
    FunctionRef::new(ns, name).map_err(|e| ApiError::invalid_input(e.to_string()))
}

/// The caller's roles on a function; `not_found` when they may not even see it, so
/// that nobody learns what exists in namespaces closed to them.
pub(crate) fn visible(app: &App, caller: &Caller, f: &FunctionRef) -> Result<Roles, ApiError> {
    let roles = caller.roles(&app.acl, f.namespace(), Some(f.name()));
    if roles.is_empty() {
        Err(ApiError::not_found(format!("function {f}")))
    } else {
        Ok(roles)
    }
}

/// Whether a worker with this identity may serve a function (`None`: in-process).
pub(crate) fn check_serve(
    app: &App,
    worker: Option<&Caller>,
    f: &FunctionRef,
) -> Result<(), ApiError> {
    if eligible_for(&app.acl, f)(worker) {
        Ok(())
    } else {
        Err(forbidden(format_args!(
            "serve {f}: the token lacks serve on it"
        )))
    }
}

pub(crate) fn forbidden(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, format!("you may not {what}"))
}

/// Which workers may receive a function's code and calls: platform workers (the
/// in-process one, or one connected with an administrator's unscoped token), and
/// workers whose identity holds `serve` on the function.
pub(crate) fn eligible_for<'a>(
    acl: &'a Acl,
    f: &'a FunctionRef,
) -> impl Fn(Option<&Caller>) -> bool + Send + Sync + 'a {
    move |worker| {
        worker.is_none_or(|c| {
            c.is_platform_admin() || c.roles(acl, f.namespace(), Some(f.name())).has(Role::Serve)
        })
    }
}

// ---- artefacts -------------------------------------------------------------------

async fn missing_artefacts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<MissingRequest>,
) -> AppResult<axum::Json<MissingResponse>> {
    caller.require_uploader()?;
    if req.digests.len() > MAX_DIGESTS {
        return Err(
            ApiError::invalid_input(format!("at most {MAX_DIGESTS} digests per request")).into(),
        );
    }
    let missing = missing_for(&app, &caller, &req.digests).await?;
    Ok(axum::Json(MissingResponse { missing }))
}

/// Which of `digests` the caller cannot reach: not stored, or stored but neither
/// uploaded by them nor pinned by a function in a namespace where they may deploy.
/// Storage deduplicates bytes; access never is.
async fn missing_for(app: &App, caller: &Caller, digests: &[Digest]) -> AppResult<Vec<Digest>> {
    let namespaces = caller.record_namespaces(&app.acl);
    let reach = namespaces.as_deref().map(|namespaces| Reach {
        user_id: &caller.user.id,
        namespaces,
    });
    Ok(app.store.missing_artefacts(digests, reach.as_ref()).await?)
}

async fn put_artefact(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(digest): Path<String>,
    Body(bytes): Body,
) -> AppResult<(StatusCode, axum::Json<ArtefactInfo>)> {
    caller.require_uploader()?;
    let digest: Digest = digest.parse().map_err(|e: swb_api::IdError| {
        ApiError::invalid_input(format!("bad digest in path: {e}"))
    })?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(ApiError::invalid_input(format!(
            "the uploaded bytes hash to {actual}, not {digest}"
        ))
        .with_details(json!({ "expected": digest, "actual": actual }))
        .into());
    }
    let created = app
        .store
        .put_artefact(&digest, &bytes, &caller.user.id)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(ArtefactInfo {
            digest,
            size: bytes.len() as u64,
        }),
    ))
}

// ---- catalog ---------------------------------------------------------------------

async fn list_functions(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> AppResult<axum::Json<FunctionList>> {
    let mut functions = app.store.list_functions(None).await?;
    functions.retain(|f| visible(&app, &caller, &f.function).is_ok());
    Ok(axum::Json(FunctionList { functions }))
}

async fn deploy(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Json(req): Json<DeployRequest>,
) -> AppResult<(StatusCode, axum::Json<DeployResponse>)> {
    let function = function_ref(&ns, &name)?;
    if !caller
        .roles(&app.acl, function.namespace(), Some(function.name()))
        .has(Role::Deploy)
    {
        return Err(forbidden(format_args!("deploy {function}")).into());
    }
    let limits = resolve_limits(&app, &req)?;
    for (schema, at) in [
        (&req.interface.input, "/interface/input"),
        (&req.interface.output, "/interface/output"),
    ] {
        if let Some(schema) = schema {
            compile_schema(schema, at)?;
        }
    }
    // A digest grants nothing: the caller must reach the artefact (have uploaded
    // it, or deploy where it is pinned). Unreachable and absent read the same.
    let absent = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "artefact {} not found; upload it first with PUT /v1/artefacts/{}",
                req.artefact, req.artefact
            ),
        )
    };
    if !missing_for(&app, &caller, &[req.artefact])
        .await?
        .is_empty()
    {
        return Err(absent().into());
    }
    let module = app
        .store
        .artefact(&req.artefact)
        .await?
        .ok_or_else(absent)?;
    swb_runtime::inspect(&module).map_err(|e| {
        ApiError::new(ErrorCode::InvalidModule, e.to_string())
            .with_details(json!({ "reason": e.reason() }))
    })?;
    if let Some(row) = app.store.function(&function).await?
        && row.kind != FunctionKind::Hosted
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{function} is a {} function", row.kind.as_str()),
        )
        .into());
    }
    let version = app
        .store
        .create_version(
            &function,
            VersionInfo {
                version: 0,
                kind: FunctionKind::Hosted,
                artefact: Some(req.artefact),
                interface: req.interface,
                limits,
                args: req.args,
                env: req.env,
                requires: req.requires,
                idempotent: req.idempotent,
                created_at: 0,
            },
        )
        .await?;
    app.changed(Change::Function {
        function: function.clone(),
    })
    .await?;
    tracing::info!(%function, version = version.version, artefact = %req.artefact, "deployed");
    app.audit(
        &caller,
        "function.deploy",
        Some(function.namespace()),
        function.to_string(),
        json!({ "version": version.version, "artefact": req.artefact }),
    )
    .await;
    // Every replica's workers get the code; the answer reports on this replica's,
    // pushed here with the module already in hand.
    app.tell_others(&Change::Code {
        function: function.clone(),
        digest: req.artefact,
    })
    .await;
    let workers = app
        .hub
        .push_code(
            req.artefact,
            module,
            app.config.deploy_wait,
            &eligible_for(&app.acl, &function),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(DeployResponse {
            function,
            version,
            workers,
        }),
    ))
}

fn resolve_limits(app: &App, req: &DeployRequest) -> Result<Limits, ApiError> {
    let c = &app.config;
    let timeout_ms = req.limits.timeout_ms.unwrap_or(c.default_timeout_ms);
    let memory_mb = req.limits.memory_mb.unwrap_or(c.default_memory_mb);
    let out_of_range = |pointer: &str, value: u64, max: u64| {
        ApiError::invalid_input(format!(
            "{pointer} must be between 1 and {max}, got {value}"
        ))
        .with_details(json!({ "pointer": pointer }))
    };
    if !(1..=c.max_timeout_ms).contains(&timeout_ms) {
        return Err(out_of_range(
            "/limits/timeout_ms",
            timeout_ms,
            c.max_timeout_ms,
        ));
    }
    if !(1..=c.max_memory_mb).contains(&memory_mb) {
        return Err(out_of_range(
            "/limits/memory_mb",
            memory_mb.into(),
            c.max_memory_mb.into(),
        ));
    }
    Ok(Limits {
        timeout_ms,
        memory_mb,
    })
}

/// A function's catalog row and all its versions; `not_found` if it does not exist.
async fn function_versions(
    app: &App,
    function: &FunctionRef,
) -> AppResult<(swb_store::FunctionRow, Vec<VersionInfo>)> {
    let row = app
        .store
        .function(function)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("function {function}")))?;
    Ok((row, app.store.versions(function).await?))
}

async fn detail(app: &App, function: FunctionRef) -> AppResult<FunctionDetail> {
    let eligible = eligible_for(&app.acl, &function);
    let (row, versions) = function_versions(app, &function).await?;
    let active = versions
        .iter()
        .find(|v| v.version == row.active_version)
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "active version is missing"))?;
    let workers = match active.artefact {
        Some(digest) => app.hub.code_status(&digest, &eligible),
        None => app.hub.serving(&function, &eligible),
    };
    Ok(FunctionDetail {
        kind: row.kind,
        active_version: row.active_version,
        versions: versions
            .iter()
            .map(|v| VersionSummary {
                version: v.version,
                artefact: v.artefact,
                created_at: v.created_at,
                active: v.version == row.active_version,
            })
            .collect(),
        active,
        workers,
        function: function.clone(),
    })
}

async fn show_function(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> AppResult<axum::Json<FunctionDetail>> {
    let function = function_ref(&ns, &name)?;
    visible(&app, &caller, &function)?;
    Ok(axum::Json(detail(&app, function).await?))
}

async fn list_versions(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> AppResult<axum::Json<VersionList>> {
    let function = function_ref(&ns, &name)?;
    visible(&app, &caller, &function)?;
    let (row, versions) = function_versions(&app, &function).await?;
    Ok(axum::Json(VersionList {
        versions,
        active_version: row.active_version,
    }))
}

async fn rollback(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Json(req): Json<RollbackRequest>,
) -> AppResult<axum::Json<FunctionDetail>> {
    let function = function_ref(&ns, &name)?;
    if !visible(&app, &caller, &function)?.has(Role::Deploy) {
        return Err(forbidden(format_args!("roll back {function}")).into());
    }
    if !app.store.set_active_version(&function, req.version).await? {
        return Err(ApiError::not_found(format!("version {} of {function}", req.version)).into());
    }
    app.changed(Change::Function {
        function: function.clone(),
    })
    .await?;
    tracing::info!(%function, version = req.version, "rolled back");
    app.audit(
        &caller,
        "function.rollback",
        Some(function.namespace()),
        function.to_string(),
        json!({ "version": req.version }),
    )
    .await;
    let detail = detail(&app, function.clone()).await?;
    if let Some(digest) = detail.active.artefact {
        // Warm the workers (of every replica) without waiting for them.
        app.changed(Change::Code { function, digest }).await?;
    }
    Ok(axum::Json(detail))
}

async fn delete_function(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let function = function_ref(&ns, &name)?;
    if !visible(&app, &caller, &function)?.is_owner() {
        return Err(forbidden(format_args!("delete {function}")).into());
    }
    if !app.store.delete_function(&function).await? {
        return Err(ApiError::not_found(format!("function {function}")).into());
    }
    app.changed(Change::Function {
        function: function.clone(),
    })
    .await?;
    tracing::info!(%function, "deleted");
    app.audit(
        &caller,
        "function.delete",
        Some(function.namespace()),
        function.to_string(),
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- invoke ----------------------------------------------------------------------

/// A finished call, successful or not, with what the record needs.
struct Attempt {
    result: Result<(Bytes, &'static str), ApiError>,
    worker: Option<String>,
    stderr_tail: String,
}

impl Attempt {
    fn failed(e: ApiError) -> Self {
        Self {
            result: Err(e),
            worker: None,
            stderr_tail: String::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeQuery {
    version: Option<u32>,
    profile: Option<String>,
}

/// A finished call with its record written: what invoke answers and jobs store.
pub(crate) struct Performed {
    pub id: String,
    pub result: Result<(Bytes, &'static str), ApiError>,
    pub worker: Option<String>,
    pub stderr_tail: String,
    pub elapsed: Duration,
}

/// Runs one call of a resolved function and leaves its invocation record and metrics.
pub(crate) async fn perform(
    app: &App,
    function: &FunctionRef,
    route: &Route,
    input: Result<Bytes, ApiError>,
    profile: Option<&str>,
    timeout_ms: Option<u64>,
) -> Performed {
    let started_at = now_ms();
    let clock = Instant::now();
    let attempt = match input {
        Ok(input) => match load_profile(app, function, profile).await {
            Ok(profile) => run(app, function, route, input, profile, timeout_ms).await,
            Err(e) => Attempt::failed(e),
        },
        Err(e) => Attempt::failed(e),
    };
    let elapsed = clock.elapsed();
    let id = uuid::Uuid::now_v7().to_string();
    let outcome = match &attempt.result {
        Ok(_) => Outcome::OK,
        Err(e) => Outcome::Error(e.code),
    };
    route.metrics.record(outcome, elapsed);
    app.recorder
        .record(InvocationRecord {
            id: id.clone(),
            function: function.clone(),
            version: Some(route.version.version),
            worker: attempt.worker.clone(),
            started_at,
            duration_us: elapsed.as_micros() as u64,
            outcome,
            error: attempt.result.as_ref().err().cloned(),
            stderr_tail: attempt.stderr_tail.clone(),
        })
        .await;
    Performed {
        id,
        result: attempt.result,
        worker: attempt.worker,
        stderr_tail: attempt.stderr_tail,
        elapsed,
    }
}

async fn load_profile(
    app: &App,
    function: &FunctionRef,
    name: Option<&str>,
) -> Result<Option<Value>, ApiError> {
    let Some(name) = name else { return Ok(None) };
    let profile = app
        .store
        .profile(function, name)
        .await
        .map_err(crate::error::store_error)?
        .ok_or_else(|| ApiError::not_found(format!("profile {name} of {function}")))?;
    Ok(Some(profile.value))
}

/// The function a caller may call, or the error to answer.
pub(crate) fn callable(
    app: &App,
    caller: &Caller,
    f: FunctionRef,
) -> Result<FunctionRef, ApiError> {
    if visible(app, caller, &f)?.has(Role::Call) {
        Ok(f)
    } else {
        Err(forbidden(format_args!("call {f}")))
    }
}

async fn invoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<InvokeQuery>,
    body: Result<Body, AppError>,
) -> Response {
    let function = match function_ref(&ns, &name).and_then(|f| callable(&app, &caller, f)) {
        Ok(f) => f,
        Err(e) => return error_response(e),
    };
    let route = match app.routes.get(&function, q.version).await {
        Ok(route) => route,
        Err(e) => return error_response(e),
    };
    let input = body.map(|Body(b)| b).map_err(|AppError(e)| e);
    let Performed {
        id,
        result,
        worker,
        elapsed,
        ..
    } = perform(&app, &function, &route, input, q.profile.as_deref(), None).await;
    let mut response = match result {
        Ok((output, content_type)) => ([(CONTENT_TYPE, content_type)], output).into_response(),
        Err(e) => error_response(e),
    };
    // Values are moved or formatted straight into header values (no strings between).
    const ID: HeaderName = HeaderName::from_static(headers::INVOCATION_ID);
    const VERSION: HeaderName = HeaderName::from_static(headers::VERSION);
    const WORKER: HeaderName = HeaderName::from_static(headers::WORKER);
    const DURATION: HeaderName = HeaderName::from_static(headers::DURATION_US);
    let h = response.headers_mut();
    let text = |s: String| HeaderValue::from_maybe_shared(Bytes::from(s)).ok();
    if let Some(v) = text(id) {
        h.insert(ID, v);
    }
    h.insert(VERSION, HeaderValue::from(route.version.version));
    if let Some(v) = worker.and_then(text) {
        h.insert(WORKER, v);
    }
    h.insert(DURATION, HeaderValue::from(elapsed.as_micros() as u64));
    response
}

async fn run(
    app: &App,
    function: &FunctionRef,
    route: &Route,
    input: Bytes,
    profile: Option<Value>,
    timeout_ms: Option<u64>,
) -> Attempt {
    if let Some(schema) = &route.input
        && let Err(e) = check_json(schema, &input, ErrorCode::InvalidInput, "input")
    {
        return Attempt::failed(e);
    }
    let eligible = eligible_for(&app.acl, function);
    let mut target = route.target.clone();
    if let Some(profile) = profile {
        target = target.with_profile(profile);
    }
    if let Some(ms) = timeout_ms {
        target = target.with_timeout(ms);
    }
    let deadline = Instant::now() + Duration::from_millis(target.limits().timeout_ms);
    let requires = &route.version.requires;
    let call =
        |input: Bytes| dispatch(app, function, &target, requires, input, deadline, &eligible);
    let lost = |r: &Result<Answer, ApiError>| match r {
        Err(e) => e.code == ErrorCode::WorkerLost,
        Ok(a) => a
            .result
            .as_ref()
            .is_err_and(|e| e.code == ErrorCode::WorkerLost),
    };
    let mut answer = call(input.clone()).await;
    if route.version.idempotent && lost(&answer) {
        tracing::info!(%function, "worker lost; retrying the idempotent call once");
        answer = call(input).await;
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return Attempt::failed(e),
    };
    let result = answer.result.and_then(|output| {
        if let Some(schema) = &route.output {
            check_json(schema, &output, ErrorCode::BadOutput, "output")?;
            Ok((output, "application/json"))
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(&output).is_ok() {
            Ok((output, "application/json"))
        } else {
            Ok((output, "application/octet-stream"))
        }
    });
    Attempt {
        result,
        worker: Some(answer.worker),
        stderr_tail: answer.stderr_tail,
    }
}

/// Runs a call on a worker of this server or, when none here suits it, of another
/// replica of the cluster.
async fn dispatch(
    app: &App,
    function: &FunctionRef,
    target: &Target,
    requires: &BTreeMap<String, String>,
    input: Bytes,
    deadline: Instant,
    eligible: crate::hub::Eligible<'_>,
) -> Result<Answer, ApiError> {
    if let Some(cluster) = &app.cluster
        && !app.hub.has_suitable(target, requires, eligible)
    {
        return cluster
            .forward(function, target, requires, input, deadline)
            .await;
    }
    app.hub
        .call(
            function,
            target.clone(),
            requires,
            input,
            deadline,
            eligible,
        )
        .await
}

/// Checks that `bytes` are JSON matching `schema`; names the failing JSON pointers.
pub(crate) fn check_json(
    schema: &jsonschema::Validator,
    bytes: &[u8],
    code: ErrorCode,
    what: &str,
) -> Result<(), ApiError> {
    let value: Value = parse_json(bytes).map_err(|e| {
        ApiError::new(code, format!("{what} is not JSON: {}", e.message)).with_details(e.details)
    })?;
    let errors: Vec<Value> = schema
        .iter_errors(&value)
        .take(10)
        .map(|e| {
            json!({
                "pointer": e.instance_path().as_str(),
                "schema_pointer": e.schema_path().as_str(),
                "message": e.to_string(),
            })
        })
        .collect();
    match errors.first() {
        None => Ok(()),
        Some(first) => {
            let pointer = first["pointer"].as_str().unwrap_or_default().to_owned();
            let shown = if pointer.is_empty() { "/" } else { &pointer };
            Err(ApiError::new(
                code,
                format!(
                    "{what} does not match the schema at {shown}: {}",
                    first["message"].as_str().unwrap_or_default()
                ),
            )
            .with_details(json!({ "pointer": pointer, "errors": errors })))
        }
    }
}

// ---- invocations and workers -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvocationsQuery {
    function: Option<String>,
    outcome: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

async fn list_invocations(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<InvocationsQuery>,
) -> AppResult<axum::Json<InvocationList>> {
    let function = q
        .function
        .map(|f| {
            f.parse::<FunctionRef>()
                .map_err(|e| ApiError::invalid_input(format!("bad function {f:?}: {e}")))
        })
        .transpose()?;
    let outcome = q
        .outcome
        .map(|o| {
            Outcome::parse(&o).ok_or_else(|| {
                ApiError::invalid_input(format!(
                    "bad outcome {o:?}: use \"ok\" or an error code such as \"timeout\""
                ))
            })
        })
        .transpose()?;
    let limit = page_limit(q.limit, 50, MAX_INVOCATIONS_PAGE)?;
    let invocations = app
        .store
        .invocations(&InvocationQuery {
            function,
            namespaces: caller.record_namespaces(&app.acl),
            outcome,
            after: cursor(q.after, "after")?,
            limit,
        })
        .await?;
    Ok(axum::Json(InvocationList { invocations }))
}

async fn show_invocation(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<axum::Json<InvocationRecord>> {
    let not_found = || ApiError::not_found(format!("invocation {id}"));
    let record = app.store.invocation(&id).await?.ok_or_else(not_found)?;
    if let Some(visible) = caller.record_namespaces(&app.acl)
        && !visible.contains(record.function.namespace())
    {
        return Err(not_found().into());
    }
    Ok(axum::Json(record))
}

/// Admins see every worker, others those they connected; in cluster mode, on every
/// replica.
async fn list_workers(State(app): State<Arc<App>>, caller: Caller) -> axum::Json<WorkerList> {
    let all = caller.is_platform_admin();
    let user = (!all).then_some(caller.user.id.as_str());
    let gathered = match &app.cluster {
        Some(cluster) => cluster.workers(user).await,
        None => None,
    };
    let mut workers = gathered.unwrap_or_else(|| {
        app.hub
            .workers(|w| all || w.is_some_and(|w| w.user.id == caller.user.id))
    });
    workers.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
    axum::Json(WorkerList { workers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(|m| (m.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut served: Vec<(String, String)> = routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_owned()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_error_codes() {
        let doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let documented = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"];
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, &json!(codes));
    }
}
