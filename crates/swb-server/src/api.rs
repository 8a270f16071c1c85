//! The REST API: routes and handlers. Handlers stay thin: they authenticate,
//! authorize, validate, and call into the store, the routing table and the hub.

use crate::App;
use crate::acl::{Acl, Roles};
use crate::auth::Caller;
use crate::cluster::Change;
use crate::config::Config;
use crate::error::{AppError, AppResult, error_response};
use crate::extract::{Body, Json, MAX_PAGE, Path, Query, cursor, page_limit, parse_json};
use crate::hub::{Answer, Target};
use crate::openapi::{Doc, Uuid};
use crate::routes::{Route, compile_schema};
use crate::tree::{Acting, Hop, Node, Place};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, ArtefactInfo, CallPlace, DeployRequest, DeployResponse, Digest, ErrorCode,
    FunctionDetail, FunctionKind, FunctionList, FunctionRef, Health, InvocationList,
    InvocationRecord, InvocationTree, Limits, MissingRequest, MissingResponse, Outcome, Role,
    RollbackRequest, VersionInfo, VersionList, VersionSummary, WorkerList, headers,
};
use swb_store::{InvocationQuery, Reach};
use tokio::time::Instant;

/// One operation: method, path, handler and its entry in the OpenAPI document.
type Op = (Method, &'static str, MethodRouter<Arc<App>>, Doc);

/// Every operation. The router and the OpenAPI document are built from this table,
/// and the authorization tests check that each entry has expectations.
fn table() -> Vec<Op> {
    use crate::identity as id;
    use crate::{data, jobs, secrets};
    use ErrorCode::*;
    use swb_api as t;
    let sharing = [NotFound, Forbidden];
    vec![
        (
            Method::GET,
            "/healthz",
            get(healthz),
            Doc::new("health", "Liveness: the server answers")
                .public()
                .ok::<Health>(200, "alive"),
        ),
        (
            Method::GET,
            "/metrics",
            get(metrics),
            Doc::new("metrics", "Prometheus metrics (an administrator's token or scope `metrics`)")
                .ok_text("Prometheus text format 0.0.4")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/openapi.json",
            get(openapi),
            Doc::new("openapi", "This document")
                .ok::<serde_json::Map<String, Value>>(200, "the OpenAPI 3.1 document"),
        ),
        (
            Method::POST,
            "/v1/artefacts/missing",
            post(missing_artefacts),
            Doc::new("missingArtefacts", "Which of these digests the caller cannot reach (upload those)")
                .json::<MissingRequest>()
                .ok::<MissingResponse>(200, "the digests to upload")
                .errors(&[Forbidden]),
        ),
        (
            Method::PUT,
            "/v1/artefacts/{digest}",
            put(put_artefact),
            Doc::new("putArtefact", "Upload a module; its bytes must hash to the digest")
                .bytes(0)
                .ok::<ArtefactInfo>(201, "stored")
                .ok::<ArtefactInfo>(200, "already stored; now reachable by the caller")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/functions",
            get(list_functions),
            Doc::new("listFunctions", "The functions the caller can see")
                .ok::<FunctionList>(200, "the catalog"),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}",
            get(show_function),
            Doc::new("showFunction", "A function: active version, versions, workers")
                .ok::<FunctionDetail>(200, "the function")
                .errors(&[NotFound]),
        ),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}",
            delete(delete_function),
            Doc::new("deleteFunction", "Delete a function and its versions (owner)")
                .no_content("deleted")
                .errors(&[NotFound, Forbidden]),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/versions",
            get(list_versions),
            Doc::new("listVersions", "Every version of a function")
                .ok::<VersionList>(200, "the versions")
                .errors(&[NotFound]),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/versions",
            post(deploy),
            Doc::new("deploy", "Deploy a new version of a hosted function from an uploaded artefact")
                .json::<DeployRequest>()
                .ok::<DeployResponse>(201, "the new version, active")
                .errors(&[NotFound, Forbidden, Conflict, InvalidModule]),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/rollback",
            post(rollback),
            Doc::new("rollback", "Make an earlier version the active one")
                .json::<RollbackRequest>()
                .ok::<FunctionDetail>(200, "the function")
                .errors(&[NotFound, Forbidden]),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/invoke",
            post(invoke),
            Doc::new("invoke", "Call a function: the body is its input, the answer its output")
                .bytes(0)
                .query::<InvokeQuery>()
                .ok_output("the function's output (application/json when it is JSON)")
                .invocation()
                .errors(&[
                    NotFound, Forbidden, FunctionError, LimitExceeded, BadOutput, WorkerLost,
                    NoWorker, Timeout, CallDepthExceeded,
                ]),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/shares",
            get(id::list_function_shares),
            Doc::new("listFunctionShares", "Who a function is shared with (owner)")
                .ok::<t::ShareList>(200, "the shares")
                .errors(&sharing),
        ),
        (
            Method::POST,
            "/v1/functions/{ns}/{name}/shares",
            post(id::share_function),
            Doc::new("shareFunction", "Share a function with an e-mail address (owner)")
                .json::<t::ShareRequest>()
                .ok::<t::ShareInfo>(201, "shared with a user")
                .ok::<t::ShareInfo>(202, "pending: it applies when the address becomes a user")
                .errors(&sharing),
        ),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}/shares/{email}",
            delete(id::unshare_function),
            Doc::new("unshareFunction", "Stop sharing a function with an address (owner)")
                .no_content("no longer shared")
                .errors(&sharing),
        ),
        (
            Method::GET,
            "/v1/invocations",
            get(list_invocations),
            Doc::new("listInvocations", "Invocation records the caller may read, newest first")
                .query::<InvocationsQuery>()
                .ok::<InvocationList>(200, "the records"),
        ),
        (
            Method::GET,
            "/v1/invocations/{id}",
            get(show_invocation),
            Doc::new("showInvocation", "One invocation record")
                .ok::<InvocationRecord>(200, "the record")
                .errors(&[NotFound]),
        ),
        (
            Method::GET,
            "/v1/invocations/{id}/tree",
            get(invocation_tree),
            Doc::new(
                "invocationTree",
                "The call tree an invocation belongs to: its root and every nested call, oldest \
                 first; records the caller may not read are left out",
            )
            .ok::<InvocationTree>(200, "the tree")
            .errors(&[NotFound]),
        ),
        (
            Method::GET,
            "/v1/stats",
            get(call_stats),
            Doc::new("callStats", "Calls per minute over the last hour of each function whose records the caller may read (this replica's counts)")
                .ok::<t::CallStatsList>(200, "the counts"),
        ),
        (
            Method::GET,
            "/v1/workers",
            get(list_workers),
            Doc::new("listWorkers", "Connected workers: the caller's (all for an administrator)")
                .ok::<WorkerList>(200, "the workers"),
        ),
        (
            Method::GET,
            "/v1/worker/connect",
            get(crate::ws::connect),
            Doc::new("connectWorker", "A worker's session: a WebSocket (docs/protocol.md)")
                .websocket("switching to the worker protocol")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/me",
            get(id::me),
            Doc::new("me", "The caller: user, token, scopes, namespaces").ok::<t::Me>(200, "the caller"),
        ),
        (
            Method::GET,
            "/v1/users",
            get(id::list_users),
            Doc::new("listUsers", "Every user (administrator)")
                .ok::<t::UserList>(200, "the users")
                .errors(&[Forbidden]),
        ),
        (
            Method::POST,
            "/v1/users",
            post(id::create_user),
            Doc::new("createUser", "Create a user and their first token (administrator)")
                .json::<t::CreateUserRequest>()
                .ok::<t::CreatedUser>(201, "the user and a token, shown once")
                .errors(&[Forbidden, Conflict]),
        ),
        (
            Method::DELETE,
            "/v1/users/{email}",
            delete(id::delete_user),
            Doc::new("deleteUser", "Delete a user and revoke their tokens (administrator)")
                .no_content("deleted")
                .errors(&[NotFound, Forbidden, Conflict]),
        ),
        (
            Method::GET,
            "/v1/namespaces",
            get(id::list_namespaces),
            Doc::new("listNamespaces", "The namespaces the caller holds a role in")
                .ok::<Vec<t::NamespaceInfo>>(200, "the namespaces"),
        ),
        (
            Method::POST,
            "/v1/namespaces",
            post(id::create_namespace),
            Doc::new("createNamespace", "Create a namespace owned by the caller")
                .json::<t::CreateNamespaceRequest>()
                .ok::<t::NamespaceInfo>(201, "created")
                .errors(&[Forbidden, Conflict]),
        ),
        (
            Method::GET,
            "/v1/namespaces/{ns}/shares",
            get(id::list_namespace_shares),
            Doc::new("listNamespaceShares", "Who a namespace is shared with (owner)")
                .ok::<t::ShareList>(200, "the shares")
                .errors(&sharing),
        ),
        (
            Method::POST,
            "/v1/namespaces/{ns}/shares",
            post(id::share_namespace),
            Doc::new("shareNamespace", "Share a namespace with an e-mail address (owner)")
                .json::<t::ShareRequest>()
                .ok::<t::ShareInfo>(201, "shared with a user")
                .ok::<t::ShareInfo>(202, "pending: it applies when the address becomes a user")
                .errors(&sharing),
        ),
        (
            Method::DELETE,
            "/v1/namespaces/{ns}/shares/{email}",
            delete(id::unshare_namespace),
            Doc::new("unshareNamespace", "Stop sharing a namespace with an address (owner)")
                .no_content("no longer shared")
                .errors(&sharing),
        ),
        (
            Method::GET,
            "/v1/tokens",
            get(id::list_tokens),
            Doc::new("listTokens", "The caller's tokens (an unscoped token)")
                .ok::<t::TokenList>(200, "the tokens")
                .errors(&[Forbidden]),
        ),
        (
            Method::POST,
            "/v1/tokens",
            post(id::create_token),
            Doc::new("createToken", "Create a token holding at most what the caller holds (an unscoped token)")
                .json::<t::CreateTokenRequest>()
                .ok::<t::CreatedToken>(201, "the token, shown once")
                .errors(&[Forbidden]),
        ),
        (
            Method::DELETE,
            "/v1/tokens/{id}",
            delete(id::revoke_token),
            Doc::new("revokeToken", "Revoke a token and every token created with it")
                .no_content("revoked")
                .errors(&[NotFound, Forbidden]),
        ),
        (
            Method::GET,
            "/v1/audit",
            get(id::list_audit),
            Doc::new("listAudit", "The audit log of the caller's namespaces (all for an administrator)")
                .query::<id::AuditQuery>()
                .ok::<t::AuditList>(200, "the events, newest first")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/namespaces/{ns}/secrets",
            get(secrets::list_secrets),
            Doc::new("listSecrets", "A namespace's secrets, by name (never their values)")
                .ok::<t::SecretList>(200, "the secrets the caller may manage")
                .errors(&sharing),
        ),
        (
            Method::PUT,
            "/v1/namespaces/{ns}/secrets/{secret}",
            put(secrets::set_secret),
            Doc::new("setSecret", "Set a secret (who may deploy there); it is never read back")
                .json::<t::SetSecret>()
                .ok::<t::SecretInfo>(200, "set; the next call of a version granted it receives it")
                .errors(&[NotFound, Forbidden, Conflict]),
        ),
        (
            Method::DELETE,
            "/v1/namespaces/{ns}/secrets/{secret}",
            delete(secrets::delete_secret),
            Doc::new("deleteSecret", "Delete a secret (calls of versions granted it then fail with conflict)")
                .query::<t::SecretQuery>()
                .no_content("deleted")
                .errors(&sharing),
        ),
        (
            Method::POST,
            "/v1/jobs",
            post(jobs::submit_job),
            Doc::new("submitJob", "Submit a durable job; the same idempotency_key from the same owner returns the same job")
                .json::<t::SubmitJob>()
                .ok::<t::JobAccepted>(202, "accepted")
                .errors(&[NotFound, Forbidden, Conflict]),
        ),
        (
            Method::POST,
            "/v1/jobs/batch",
            post(jobs::submit_jobs),
            Doc::new("submitJobs", "Submit up to 1,000 jobs at once: all are accepted or none")
                .json::<t::SubmitJobs>()
                .ok::<t::JobsAccepted>(202, "accepted")
                .errors(&[NotFound, Forbidden, Conflict]),
        ),
        (
            Method::GET,
            "/v1/jobs",
            get(jobs::list_jobs),
            Doc::new("listJobs", "The caller's jobs, newest first")
                .query::<jobs::JobsQuery>()
                .ok::<t::JobList>(200, "the jobs"),
        ),
        (
            Method::GET,
            "/v1/jobs/{id}",
            get(jobs::show_job),
            Doc::new("showJob", "A job; with wait_s, waits up to that long for it to end")
                .query::<jobs::WaitQuery>()
                .ok::<t::Job>(200, "the job")
                .errors(&[NotFound]),
        ),
        (
            Method::POST,
            "/v1/jobs/{id}/cancel",
            post(jobs::cancel_job),
            Doc::new("cancelJob", "Cancel a job that has not ended")
                .ok::<t::Job>(200, "the job")
                .errors(&[NotFound]),
        ),
        (
            Method::POST,
            "/v1/jobs/{id}/resubmit",
            post(jobs::resubmit_job),
            Doc::new("resubmitJob", "Submit a job again: a new job with the same function, version, input and settings")
                .ok::<t::JobAccepted>(202, "accepted")
                .errors(&[NotFound, Forbidden, Conflict]),
        ),
        (
            Method::POST,
            "/v1/blobs",
            post(data::upload_blob).layer(DefaultBodyLimit::disable()),
            Doc::new("uploadBlob", "Upload a blob (sealed: functions may read it, nobody may download it)")
                .bytes(1)
                .query::<data::UploadQuery>()
                .ok::<t::BlobInfo>(201, "stored")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/blobs",
            get(data::list_blobs),
            Doc::new("listBlobs", "The caller's blobs")
                .ok::<t::BlobList>(200, "the blobs")
                .errors(&[Forbidden]),
        ),
        (
            Method::GET,
            "/v1/blobs/{digest}",
            get(data::download_blob),
            Doc::new("downloadBlob", "A blob's bytes; sealed blobs are never downloaded")
                .ok_bytes("the bytes")
                .errors(&[NotFound, Forbidden, Sealed]),
        ),
        (
            Method::DELETE,
            "/v1/blobs/{digest}",
            delete(data::delete_blob),
            Doc::new("deleteBlob", "Delete the caller's hold on a blob")
                .no_content("deleted")
                .errors(&[NotFound, Forbidden]),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/profiles",
            get(data::list_profiles),
            Doc::new("listProfiles", "A function's profiles (who may deploy it)")
                .ok::<t::ProfileList>(200, "the profiles")
                .errors(&sharing),
        ),
        (
            Method::PUT,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            put(data::put_profile),
            Doc::new("putProfile", "Set a profile: a JSON object passed to the function with each call that names it")
                .json::<serde_json::Map<String, Value>>()
                .ok::<t::ProfileInfo>(200, "set")
                .errors(&sharing),
        ),
        (
            Method::GET,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            get(data::get_profile),
            Doc::new("getProfile", "One profile")
                .ok::<t::ProfileInfo>(200, "the profile")
                .errors(&sharing),
        ),
        (
            Method::DELETE,
            "/v1/functions/{ns}/{name}/profiles/{profile}",
            delete(data::delete_profile),
            Doc::new("deleteProfile", "Delete a profile")
                .no_content("deleted")
                .errors(&sharing),
        ),
    ]
}

/// Method and path of every route.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _, _)| (m, p)).collect()
}

/// The OpenAPI document of this server.
pub fn openapi_document(config: &Config) -> Value {
    let table = table();
    let ops: Vec<_> = table.iter().map(|(m, p, _, d)| (m, *p, d)).collect();
    crate::openapi::document(&ops, config)
}

pub fn router(app: Arc<App>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler, _)| {
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

async fn openapi(State(app): State<Arc<App>>, _: Caller) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], app.openapi.clone())
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
    if req.digests.len() > MissingRequest::MAX_DIGESTS {
        let max = MissingRequest::MAX_DIGESTS;
        return Err(ApiError::invalid_input(format!("at most {max} digests per request")).into());
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
    let env = req.env.keys().map(String::as_str);
    let secrets = crate::secrets::check_grants(&app, &function, req.secrets, env).await?;
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
                calls: declared_calls(req.calls)?,
                secrets,
                keep_io: req.keep_io,
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
        json!({ "version": version.version, "artefact": req.artefact, "secrets": version.secrets }),
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
        Some(digest) => app.hub.code_status(&digest, &active.requires, &eligible),
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InvokeQuery {
    /// Run this version instead of the active one.
    version: Option<u32>,
    /// Pass this profile of the function with the call.
    #[schemars(regex(pattern = swb_api::TEXT_PATTERN))]
    profile: Option<String>,
    /// This call's deadline in milliseconds instead of the version's (1 to the
    /// server's `--max-timeout`).
    #[schemars(range(min = 1))]
    timeout_ms: Option<u64>,
}

/// A finished call with its record written: what invoke answers and jobs store.
pub(crate) struct Performed {
    pub id: String,
    pub result: Result<(Bytes, &'static str), ApiError>,
    pub worker: Option<String>,
    pub stderr_tail: String,
    pub elapsed: Duration,
}

/// A call under way. It leaves its record (and metrics) when it ends, and also
/// when it is dropped before it ends (its client went away, its job was
/// cancelled), as `cancelled`.
struct Pending<'a> {
    /// The id of the call's record, known from the start.
    id: String,
    app: &'a App,
    function: &'a FunctionRef,
    route: &'a Route,
    started_at: i64,
    clock: Instant,
    ended: bool,
    /// A nested call's place in its tree.
    tree: Option<CallPlace>,
    /// Who made a call from outside.
    caller: Option<String>,
}

impl Pending<'_> {
    /// Ends the call now: counts it in the metrics and returns its record.
    fn record(
        &mut self,
        error: Option<ApiError>,
        worker: Option<String>,
        stderr_tail: String,
    ) -> InvocationRecord {
        self.ended = true;
        let elapsed = self.clock.elapsed();
        let outcome = error
            .as_ref()
            .map_or(Outcome::OK, |e| Outcome::Error(e.code));
        self.route.metrics.record(outcome, elapsed);
        InvocationRecord {
            id: self.id.clone(),
            function: self.function.clone(),
            version: Some(self.route.version.version),
            worker,
            started_at: self.started_at,
            duration_us: elapsed.as_micros() as u64,
            outcome,
            error,
            stderr_tail,
            tree: self.tree.clone(),
            caller: self.caller.clone(),
            io: None,
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let error = ApiError::new(
                ErrorCode::Cancelled,
                "the call was cancelled before it ended (its client went away, or its job was cancelled)",
            );
            let record = self.record(Some(error), None, String::new());
            self.app.recorder.record_now(record);
        }
    }
}

/// Who a call is for: a client that waits on it, or a job, which waits for a
/// worker rather than failing; a job's call that finds none (`no_worker`) is no
/// attempt and leaves no record (the job's status says why it waits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Invoke,
    Job,
}

/// How a call is asked for: a profile, a deadline of its own, the trace it joins.
#[derive(Default, Clone, Copy)]
pub(crate) struct CallOptions<'a> {
    pub profile: Option<&'a str>,
    pub timeout_ms: Option<u64>,
    /// The caller's W3C trace id (a root's; nested calls are in their tree's).
    pub trace: Option<&'a str>,
}

/// Where a call comes from in its call tree.
pub(crate) enum Parent {
    /// A call from outside (or a job's), acting for this caller: if its version
    /// declares calls, its nested calls act for them.
    Root(Option<Caller>),
    /// A nested call made by this running call (its call token).
    Call(Arc<Node>),
}

/// Runs one call of a resolved function and leaves its invocation record and metrics.
pub(crate) async fn perform(
    app: &App,
    origin: Origin,
    function: &FunctionRef,
    route: &Route,
    input: Result<Bytes, ApiError>,
    options: CallOptions<'_>,
    parent: Parent,
) -> Performed {
    let id = uuid::Uuid::now_v7().to_string();
    let calls = &route.version.calls;
    // The tree's trace: the caller's, the parent's, or (made only where needed) the
    // root's own id.
    let trace = match (&parent, options.trace) {
        (Parent::Call(node), _) => Some(node.place.trace.clone()),
        (Parent::Root(_), trace) => trace.map(str::to_owned),
    };
    let caller = match &parent {
        Parent::Root(Some(c)) => Some(c.user.email.clone()),
        _ => None,
    };
    let (hop, admitted, node) = match parent {
        Parent::Root(acting) => {
            let place = match &acting {
                Some(c) if !calls.is_empty() => Some(Place {
                    id: id.clone(),
                    root: id.clone(),
                    trace: trace
                        .clone()
                        .unwrap_or_else(|| swb_api::trace::trace_of(&id)),
                    chain: vec![function.clone()],
                    calls: calls.clone(),
                    acting: Acting::of(c),
                }),
                _ => None,
            };
            let hop = Hop {
                nested: false,
                place,
                acting,
            };
            (hop, Ok(None), None)
        }
        Parent::Call(node) => {
            let hop = Hop {
                nested: true,
                place: (!calls.is_empty()).then(|| node.child_place(&id, function, calls)),
                acting: Some(node.acting().clone()),
            };
            let admitted = app.hub.trees.admit(&node, function).map(Some);
            (hop, admitted, Some(node))
        }
    };
    // The input its record keeps, if its version keeps them (a cheap clone of Bytes).
    let kept_input = match &input {
        Ok(input) if route.version.keep_io => Some(input.clone()),
        _ => None,
    };
    let mut pending = Pending {
        tree: node.as_ref().map(|n| n.child_record()),
        caller,
        id,
        app,
        function,
        route,
        started_at: now_ms(),
        clock: Instant::now(),
        ended: false,
    };
    let attempt = async {
        let child = admitted?;
        let input = input?;
        let profile = load_profile(app, function, options.profile).await?;
        // A nested call has no more time than its parent has left.
        let timeout_ms = match &child {
            Some(child) => {
                let budget = child.budget.as_millis().max(1) as u64;
                Some(
                    options
                        .timeout_ms
                        .unwrap_or(route.version.limits.timeout_ms)
                        .min(budget),
                )
            }
            None => options.timeout_ms,
        };
        let run = run(
            app,
            function,
            route,
            input,
            profile,
            timeout_ms,
            (pending.id.as_str(), trace.as_deref()),
            hop,
        );
        let attempt = match &node {
            // A nested call ends with its parent, whatever ends the parent.
            Some(node) => tokio::select! {
                attempt = run => attempt,
                _ = node.ended() => Attempt::failed(ApiError::new(
                    ErrorCode::Cancelled,
                    format!("the call of {} that made this call ended first", node.function()),
                )),
            },
            None => run.await,
        };
        drop(child);
        Ok::<_, ApiError>(attempt)
    }
    .await
    .unwrap_or_else(Attempt::failed);
    if origin == Origin::Job
        && let Err(e) = &attempt.result
        && e.code == ErrorCode::NoWorker
    {
        pending.ended = true;
        return Performed {
            id: String::new(),
            result: attempt.result,
            worker: None,
            stderr_tail: String::new(),
            elapsed: pending.clock.elapsed(),
        };
    }
    let mut record = pending.record(
        attempt.result.as_ref().err().cloned(),
        attempt.worker.clone(),
        attempt.stderr_tail.clone(),
    );
    if let Some(input) = kept_input {
        let output = attempt.result.as_ref().map_or(&[][..], |(o, _)| &o[..]);
        record.io = Some(swb_api::CallIo::of(&input, output));
    }
    let (id, elapsed) = (record.id.clone(), Duration::from_micros(record.duration_us));
    app.recorder.record(record).await;
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

/// A version's declared callees, checked and in order.
pub(crate) fn declared_calls(mut calls: Vec<FunctionRef>) -> Result<Vec<FunctionRef>, ApiError> {
    if calls.len() > swb_api::MAX_CALLS {
        return Err(ApiError::invalid_input(format!(
            "a version may declare at most {} functions it calls, not {}",
            swb_api::MAX_CALLS,
            calls.len()
        ))
        .with_details(json!({ "field": "calls" })));
    }
    calls.sort();
    calls.dedup();
    Ok(calls)
}

/// The function a caller may call, or the error to answer.
pub(crate) fn callable(
    app: &App,
    caller: &Caller,
    f: FunctionRef,
) -> Result<FunctionRef, ApiError> {
    // A nested call is told `forbidden` whether or not the callee exists: what it
    // may call is what its version declared, which it knows.
    if let Some(node) = &caller.call {
        let roles = caller.roles(&app.acl, f.namespace(), Some(f.name()));
        return if roles.has(Role::Call) {
            Ok(f)
        } else if !node.declares(f.namespace(), Some(f.name())) {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} may not call {f}: its version does not declare it (deploy or serve it with --calls {f})",
                    node.function()
                ),
            ))
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} may not call {f}: nested calls act for {}, who may not call it",
                    node.function(),
                    caller.user.email
                ),
            ))
        };
    }
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
    headers: axum::http::HeaderMap,
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
    let max = app.config.max_timeout_ms;
    if let Some(t) = q.timeout_ms.filter(|t| !(1..=max).contains(t)) {
        return error_response(
            ApiError::invalid_input(format!("timeout_ms must be between 1 and {max}, got {t}"))
                .with_details(json!({ "parameter": "timeout_ms" })),
        );
    }
    let input = body.map(|Body(b)| b).map_err(|AppError(e)| e);
    let Performed {
        id,
        result,
        worker,
        elapsed,
        ..
    } = perform(
        &app,
        Origin::Invoke,
        &function,
        &route,
        input,
        CallOptions {
            profile: q.profile.as_deref(),
            timeout_ms: q.timeout_ms,
            trace: headers
                .get(headers::TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .and_then(swb_api::trace::trace_id),
        },
        match &caller.call {
            Some(node) => Parent::Call(node.clone()),
            None => Parent::Root(Some(caller.clone())),
        },
    )
    .await;
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

#[allow(clippy::too_many_arguments)]
async fn run(
    app: &App,
    function: &FunctionRef,
    route: &Route,
    input: Bytes,
    profile: Option<Value>,
    timeout_ms: Option<u64>,
    (invocation, trace): (&str, Option<&str>),
    hop: Hop,
) -> Attempt {
    if let Some(schema) = &route.input
        && let Err(e) = check_json(schema, &input, ErrorCode::InvalidInput, "input")
    {
        return Attempt::failed(e);
    }
    let eligible = eligible_for(&app.acl, function);
    let mut target = route.target.clone().with_invocation(invocation, trace);
    if let Some(profile) = profile {
        target = target.with_profile(profile);
    }
    if let Some(ms) = timeout_ms {
        target = target.with_timeout(ms);
    }
    let deadline = Instant::now() + Duration::from_millis(target.limits().timeout_ms);
    let call = |input: Bytes| {
        let hop = hop.clone();
        dispatch(
            app, function, route, &target, input, deadline, &eligible, hop,
        )
    };
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

/// Runs the nested calls hosted guests make (`swb.call`), each on its own task:
/// the same path as a call token's invoke.
pub(crate) fn serve_nested(app: &Arc<App>) {
    let app_of = Arc::downgrade(app);
    app.hub
        .run_nested_with(Arc::new(move |node, function, input| {
            let app_of = app_of.clone();
            Box::pin(async move {
                let app = app_of.upgrade().ok_or_else(|| {
                    ApiError::new(ErrorCode::Overloaded, "the server is stopping")
                })?;
                nested_call(&app, node, function, input).await
            })
        }));
}

/// One nested call of a running call, as its token would make it.
async fn nested_call(
    app: &App,
    node: Arc<Node>,
    function: FunctionRef,
    input: Bytes,
) -> Result<Bytes, ApiError> {
    let caller = node.acting().nested(node.clone());
    let function = callable(app, &caller, function)?;
    let route = app.routes.get(&function, None).await?;
    let performed = perform(
        app,
        Origin::Invoke,
        &function,
        &route,
        Ok(input),
        CallOptions::default(),
        Parent::Call(node),
    )
    .await;
    performed.result.map(|(output, _)| output)
}

/// Runs a call on a worker of this server or, when none here suits it, of another
/// replica of the cluster.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    app: &App,
    function: &FunctionRef,
    route: &Route,
    target: &Target,
    input: Bytes,
    deadline: Instant,
    eligible: crate::hub::Eligible<'_>,
    hop: Hop,
) -> Result<Answer, ApiError> {
    let requires = &route.version.requires;
    if let Some(cluster) = &app.cluster
        && !app.hub.has_suitable(target, requires, eligible)
    {
        let version = route.version.version;
        return cluster
            .forward(function, version, target, requires, input, deadline, hop)
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
            hop,
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InvocationsQuery {
    /// Only this function's records.
    #[schemars(with = "Option<FunctionRef>")]
    function: Option<String>,
    /// Only records with this outcome: `ok` or an error code.
    #[schemars(with = "Option<Outcome>")]
    outcome: Option<String>,
    /// Records older than this one (the id of the last record of a page).
    #[schemars(with = "Option<Uuid>")]
    after: Option<String>,
    /// 1 to 1,000; 50 when absent.
    #[schemars(range(min = 1, max = MAX_PAGE))]
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
    let limit = page_limit(q.limit, 50)?;
    let mut namespaces = caller.record_namespaces(&app.acl);
    let mut own = None;
    // A function's records are its deployers'; one who may only call it reads the
    // records of their own calls.
    if let (Some(f), Some(visible)) = (&function, &namespaces)
        && !visible.contains(f.namespace())
        && reads_own(&app, &caller, f)
    {
        namespaces = None;
        own = Some(caller.user.email.clone());
    }
    let invocations = app
        .store
        .invocations(&InvocationQuery {
            function,
            namespaces,
            outcome,
            after: cursor(q.after, "after")?,
            caller: own,
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
    Ok(axum::Json(readable_record(&app, &caller, &id).await?))
}

/// A record the caller may read; `not_found` for one they may not, as if absent.
async fn readable_record(
    app: &App,
    caller: &Caller,
    id: &str,
) -> Result<InvocationRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("invocation {id}"));
    let record = app
        .store
        .invocation(id)
        .await
        .map_err(crate::error::store_error)?
        .ok_or_else(not_found)?;
    if !may_read(
        app,
        caller,
        caller.record_namespaces(&app.acl).as_deref(),
        &record,
    ) {
        return Err(not_found());
    }
    Ok(record)
}

/// Whether the caller may read a record: the deployers of its function may (`visible`:
/// their namespaces, `None` for all), and so may whoever made the call or whom it
/// acts for, with their unscoped token (a scoped one is narrowed to what it names,
/// and calling is not reading records) while they may still call the function.
fn may_read(
    app: &App,
    caller: &Caller,
    visible: Option<&[swb_api::Namespace]>,
    record: &InvocationRecord,
) -> bool {
    visible.is_none_or(|v| v.contains(record.function.namespace()))
        || reads_own(app, caller, &record.function) && record.made_by(&caller.user.email)
}

/// Whether the caller reads the records of their own calls of `function`.
fn reads_own(app: &App, caller: &Caller, function: &FunctionRef) -> bool {
    caller.is_unscoped() && visible(app, caller, function).is_ok_and(|r| r.has(Role::Call))
}

/// The most records a call tree answer holds.
const MAX_TREE: usize = 10_000;
/// Replicas' clocks may differ by this much: a tree's records are looked for this
/// long after its root ended.
const CLOCK_SLACK_MS: i64 = 5_000;

async fn invocation_tree(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<axum::Json<InvocationTree>> {
    let record = readable_record(&app, &caller, &id).await?;
    let root = match &record.tree {
        Some(place) => place.root.clone(),
        None => record.id.clone(),
    };
    // Every nested call ends before its root does (or is cancelled when it ends).
    let end = match app.store.invocation(&root).await? {
        Some(r) => r.started_at + (r.duration_us / 1000) as i64,
        None => now_ms(),
    };
    let until = swb_api::v7_last((end + CLOCK_SLACK_MS) as u64);
    let visible = caller.record_namespaces(&app.acl);
    let invocations = app
        .store
        .invocation_tree(&root, &until, MAX_TREE)
        .await?
        .into_iter()
        .filter(|r| may_read(&app, &caller, visible.as_deref(), r))
        .collect();
    Ok(axum::Json(InvocationTree { root, invocations }))
}

/// Admins see every worker, others those they connected; in cluster mode, on every
/// replica.
async fn call_stats(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> axum::Json<swb_api::CallStatsList> {
    // Counts are the records' summary: those who may read every record see them.
    let readable = |f: &FunctionRef| {
        caller
            .roles(&app.acl, f.namespace(), Some(f.name()))
            .has(Role::Deploy)
    };
    let functions = app.routes.stats.last_hour(readable);
    axum::Json(swb_api::CallStatsList { functions })
}

async fn list_workers(State(app): State<Arc<App>>, caller: Caller) -> axum::Json<WorkerList> {
    let all = caller.is_platform_admin();
    let user = (!all).then_some(caller.user.id.as_str());
    // This replica's workers, and those the other replicas report.
    let mut workers = app
        .hub
        .workers(|w| all || w.is_some_and(|w| w.user.id == caller.user.id));
    if let Some(cluster) = &app.cluster {
        workers = cluster.own(workers);
        workers.extend(cluster.workers(user).await);
    }
    workers.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
    axum::Json(WorkerList { workers })
}
