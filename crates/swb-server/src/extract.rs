//! Request extractors whose rejections speak the error table instead of axum's
//! plain-text defaults.

use crate::App;
use crate::conn::Stalled;
use crate::error::AppError;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;
use swb_api::{ApiError, ErrorCode};

/// Bodies up to this size are read without a reservation from the body budget.
const SMALL_BODY: u64 = 64 << 10;

/// The raw request body, bounded by the server's body limit: a larger declared
/// length is refused before a byte of the body is read (and before `100 Continue`).
pub struct Body(pub Bytes);

impl FromRequest<Arc<App>> for Body {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, AppError> {
        let limit = app.config.max_body_bytes as u64;
        let declared = check_declared_length(req.headers(), limit, "--max-body-mb")?;
        // Memory for the body first: its declared length, or the limit if unknown.
        // Small bodies need none: a connection reads one request at a time, so
        // they hold at most `max_connections` × `SMALL_BODY` (the common case,
        // with no reservation to take and return).
        let reservation = match declared {
            Some(n) if n <= SMALL_BODY => None,
            _ => Some(
                app.bodies
                    .reserve(declared.unwrap_or(limit), app.config.http.body_timeout)
                    .await?,
            ),
        };
        let bytes = Bytes::from_request(req, app)
            .await
            .map_err(|e| AppError(body_rejection(e, limit)))?;
        Ok(Body(match reservation {
            Some(r) => r.hold(bytes),
            None => bytes,
        }))
    }
}

/// Refuses a body whose declared length is over `limit`, without reading it;
/// otherwise the declared length, if any.
pub fn check_declared_length(
    headers: &HeaderMap,
    limit: u64,
    flag: &str,
) -> Result<Option<u64>, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit, flag)
            .with_details(json!({ "limit_bytes": limit, "declared_bytes": n }))),
        _ => Ok(declared),
    }
}

pub fn too_large(limit: u64, flag: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds the server's limit of {limit} bytes ({flag})"),
    )
}

fn body_rejection(e: BytesRejection, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit, "--max-body-mb").with_details(json!({ "limit_bytes": limit }))
    } else {
        body_error(&e)
    }
}

/// A request body that could not be read: it stalled (`request_timeout`) or broke off.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(stalled) = e.downcast_ref::<Stalled>() {
            return ApiError::new(ErrorCode::RequestTimeout, stalled.to_string());
        }
        cause = e.source();
    }
    ApiError::invalid_input(format!("could not read the request body: {e}"))
}

/// A JSON request body. Malformed JSON and wrong shapes are `invalid_input`, with the
/// position of the problem in `details`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, AppError> {
        let Body(bytes) = Body::from_request(req, app).await?;
        parse_json(&bytes).map(Json).map_err(AppError)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid_input(format!("invalid JSON body: {e}"))
            .with_details(json!({ "line": e.line(), "column": e.column() }))
    })
}

/// Refuses a path or query string that decodes to U+0000: no name or id holds it,
/// and no database text column does.
fn no_nul(raw: &str, what: &str) -> Result<(), AppError> {
    if raw.contains("%00") {
        return Err(AppError(ApiError::invalid_input(format!(
            "the {what} may not contain the character U+0000 (%00)"
        ))));
    }
    Ok(())
}

/// Query parameters; a bad query string is `invalid_input`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        no_nul(parts.uri.query().unwrap_or_default(), "query")?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| AppError(ApiError::invalid_input(e.body_text())))
    }
}

/// Path parameters; a path that does not decode (`%ff`) is `invalid_input`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        no_nul(parts.uri.path(), "path")?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| AppError(ApiError::invalid_input(e.body_text())))
    }
}

/// The largest page of a listing.
pub const MAX_PAGE: u32 = 1000;

/// A listing's `limit`: `default` when absent, else between 1 and [`MAX_PAGE`].
pub fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid_input(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        ))
        .with_details(json!({ "parameter": "limit" })))
    }
}

/// A listing's cursor (`cursor`, `after`): the id of a job or invocation, a
/// hyphenated UUID (the form the server issues and the document states).
pub fn cursor(value: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.len() != 36 || uuid::Uuid::try_parse(&v).is_err() => {
            Err(ApiError::invalid_input(format!(
                "{name} must be the id of a listed item (a UUID), got {v:?}"
            ))
            .with_details(json!({ "parameter": name })))
        }
        v => Ok(v),
    }
}
