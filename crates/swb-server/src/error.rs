//! Turning failures into the one error shape clients see.

use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use swb_api::{ApiError, ErrorBody, ErrorCode};
use swb_store::StoreError;

/// A handler's error: always rendered as `{"error":{…}}` with the code's status.
#[derive(Debug)]
pub struct AppError(pub ApiError);

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        Self(store_error(e))
    }
}

/// Store failures are internal unless they are conflicts the caller can fix.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(msg) => ApiError::new(ErrorCode::Conflict, msg),
        other => {
            tracing::error!(error = %other, "store failure");
            ApiError::new(ErrorCode::Internal, "internal storage error")
        }
    }
}

pub fn error_response(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // An oversized, stalled or unaffordable body is answered before it is read, and the server then
    // closes the connection: say so, or a client's pool may send its next request on it.
    let close = matches!(
        e.code,
        ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout | ErrorCode::Overloaded
    );
    let mut response = (status, axum::Json(ErrorBody { error: e })).into_response();
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        error_response(self.0)
    }
}

pub type AppResult<T> = Result<T, AppError>;
