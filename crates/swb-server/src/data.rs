//! Blobs (uploaded data, optionally sealed) and profiles (stored settings).

use crate::App;
use crate::api::{forbidden, function_ref, visible};
use crate::auth::Caller;
use crate::error::{AppResult, store_error};
use crate::extract::{Json, Path, Query, check_declared_length};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, BlobInfo, BlobList, Digest, ErrorCode, FunctionRef, ProfileInfo, ProfileList, Role,
};

// ---- blobs -------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// A sealed dataset: functions may read it, nobody may download it.
    #[serde(default)]
    sealed: bool,
    /// What to call it in listings (a file name, say); uploading the same bytes
    /// under another name renames it.
    #[schemars(length(min = 1, max = BLOB_NAME_CHARS), regex(pattern = swb_api::TEXT_PATTERN))]
    name: Option<String>,
}

/// The longest blob name.
const BLOB_NAME_CHARS: usize = 255;

pub async fn upload_blob(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> AppResult<(StatusCode, axum::Json<BlobInfo>)> {
    caller.require_uploader()?;
    if let Some(name) = &q.name {
        swb_api::text_error(name, "/name")?;
        let chars = name.chars().count();
        if !(1..=BLOB_NAME_CHARS).contains(&chars) {
            return Err(ApiError::invalid_input(format!(
                "a blob's name is 1 to {BLOB_NAME_CHARS} characters"
            ))
            .into());
        }
    }
    check_declared_length(
        request.headers(),
        app.config.max_blob_bytes,
        "--max-blob-mb",
    )?;
    let body = request.into_body().into_data_stream();
    let (digest, size) = app.blobs.put_stream(body).await?;
    let info = BlobInfo {
        digest,
        name: q.name,
        size,
        sealed: q.sealed,
        created_at: now_ms(),
    };
    app.store.put_blob(&caller.user.id, &info).await?;
    // Sealing is never undone: answer with what is stored.
    let info = app
        .store
        .blob(&caller.user.id, &digest)
        .await?
        .unwrap_or(info);
    Ok((StatusCode::CREATED, axum::Json(info)))
}

fn digest_of(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))
}

async fn held(app: &App, caller: &Caller, digest: &str) -> Result<BlobInfo, ApiError> {
    caller.require_uploader()?;
    let digest = digest_of(digest)?;
    app.store
        .blob(&caller.user.id, &digest)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("blob {digest}")))
}

pub async fn list_blobs(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> AppResult<axum::Json<BlobList>> {
    caller.require_uploader()?;
    let blobs = app.store.blobs(&caller.user.id).await?;
    Ok(axum::Json(BlobList { blobs }))
}

pub async fn download_blob(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(digest): Path<String>,
) -> AppResult<Response> {
    let info = held(&app, &caller, &digest).await?;
    if info.sealed {
        return Err(ApiError::new(
            ErrorCode::Sealed,
            format!(
                "blob {} is a sealed dataset: functions may read it, nobody may download it",
                info.digest
            ),
        )
        .into());
    }
    let stream = app.blobs.get_stream(&info.digest).await?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (CONTENT_LENGTH, info.size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn delete_blob(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(digest): Path<String>,
) -> AppResult<StatusCode> {
    caller.require_uploader()?;
    let digest = digest_of(&digest)?;
    match app.store.delete_blob(&caller.user.id, &digest).await? {
        None => Err(ApiError::not_found(format!("blob {digest}")).into()),
        Some(still_held) => {
            if !still_held {
                app.blobs.delete(&digest).await?;
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

// ---- profiles ------------------------------------------------------------------------------

/// Profiles are settings of a function: those who may deploy it manage them.
fn deployable(app: &App, caller: &Caller, ns: &str, name: &str) -> Result<FunctionRef, ApiError> {
    let function = function_ref(ns, name)?;
    if visible(app, caller, &function)?.has(Role::Deploy) {
        Ok(function)
    } else {
        Err(forbidden(format_args!("manage the profiles of {function}")))
    }
}

fn profile_name(name: &str) -> Result<String, ApiError> {
    name.parse::<swb_api::Namespace>()
        .map(|_| name.to_owned())
        .map_err(|_| {
            ApiError::invalid_input(format!(
                "bad profile name {name:?}: use 1-63 characters a-z, 0-9, '-' or '_'"
            ))
        })
}

async fn existing(app: &App, function: &FunctionRef) -> Result<(), ApiError> {
    match app.store.function(function).await.map_err(store_error)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("function {function}"))),
    }
}

pub async fn list_profiles(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> AppResult<axum::Json<ProfileList>> {
    let function = deployable(&app, &caller, &ns, &name)?;
    existing(&app, &function).await?;
    let profiles = app.store.profiles(&function).await?;
    Ok(axum::Json(ProfileList { profiles }))
}

pub async fn put_profile(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name, profile)): Path<(String, String, String)>,
    Json(value): Json<Value>,
) -> AppResult<axum::Json<ProfileInfo>> {
    let function = deployable(&app, &caller, &ns, &name)?;
    existing(&app, &function).await?;
    if !value.is_object() {
        return Err(ApiError::invalid_input("a profile is a JSON object").into());
    }
    let info = ProfileInfo {
        name: profile_name(&profile)?,
        value,
        updated_at: now_ms(),
    };
    app.store.put_profile(&function, &info).await?;
    app.audit(
        &caller,
        "profile.set",
        Some(function.namespace()),
        function.to_string(),
        json!({ "profile": info.name }),
    )
    .await;
    Ok(axum::Json(info))
}

pub async fn get_profile(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name, profile)): Path<(String, String, String)>,
) -> AppResult<axum::Json<ProfileInfo>> {
    let function = deployable(&app, &caller, &ns, &name)?;
    let info = app
        .store
        .profile(&function, &profile)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("profile {profile} of {function}")))?;
    Ok(axum::Json(info))
}

pub async fn delete_profile(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name, profile)): Path<(String, String, String)>,
) -> AppResult<StatusCode> {
    let function = deployable(&app, &caller, &ns, &name)?;
    if !app.store.delete_profile(&function, &profile).await? {
        return Err(ApiError::not_found(format!("profile {profile} of {function}")).into());
    }
    app.audit(
        &caller,
        "profile.delete",
        Some(function.namespace()),
        function.to_string(),
        json!({ "profile": profile }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
