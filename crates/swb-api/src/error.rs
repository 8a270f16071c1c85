use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one table of error codes. Every failure a client can see has exactly one of
/// these codes, and each code maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    /// A sealed blob (dataset) may be used by functions but never downloaded.
    Sealed,
    NotFound,
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// The client sent its request too slowly (a body that stopped making progress).
    RequestTimeout,
    InvalidInput,
    InvalidModule,
    Conflict,
    PayloadTooLarge,
    FunctionError,
    LimitExceeded,
    BadOutput,
    WorkerLost,
    /// A job's attempt whose server stopped before it ended (its lease lapsed).
    LeaseExpired,
    /// A call stopped before it ended: its client went away, or its job was
    /// cancelled (an invocation record's outcome; nobody is left to answer).
    Cancelled,
    NoWorker,
    /// A nested call would go deeper than the call tree's depth limit (a function
    /// calling itself without end, or a chain too long).
    CallDepthExceeded,
    /// The server is at a limit of its own (memory for request bodies); try again.
    Overloaded,
    Timeout,
    /// A party of a federation refused a query under one of its disclosure rules
    /// (`details.rule`, `details.party`); nothing was released.
    Refused,
    /// A federated query stopped before its result: a party left, restarted, timed out
    /// or disagreed (`details.party`, `details.reason`); nothing was released.
    Aborted,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::Sealed,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::InvalidInput,
        Self::InvalidModule,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::FunctionError,
        Self::LimitExceeded,
        Self::BadOutput,
        Self::WorkerLost,
        Self::LeaseExpired,
        Self::Cancelled,
        Self::NoWorker,
        Self::CallDepthExceeded,
        Self::Overloaded,
        Self::Timeout,
        Self::Refused,
        Self::Aborted,
        Self::Internal,
    ];

    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput | Self::InvalidModule => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden | Self::Sealed => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            // nginx's "client closed request".
            Self::Cancelled => 499,
            Self::PayloadTooLarge => 413,
            Self::FunctionError | Self::LimitExceeded | Self::Refused => 422,
            Self::Internal => 500,
            Self::BadOutput | Self::WorkerLost | Self::LeaseExpired | Self::Aborted => 502,
            Self::NoWorker | Self::Overloaded => 503,
            Self::Timeout => 504,
            // "Loop Detected".
            Self::CallDepthExceeded => 508,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Sealed => "sealed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::InvalidInput => "invalid_input",
            Self::InvalidModule => "invalid_module",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::FunctionError => "function_error",
            Self::LimitExceeded => "limit_exceeded",
            Self::BadOutput => "bad_output",
            Self::WorkerLost => "worker_lost",
            Self::LeaseExpired => "lease_expired",
            Self::Cancelled => "cancelled",
            Self::NoWorker => "no_worker",
            Self::CallDepthExceeded => "call_depth_exceeded",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Aborted => "aborted",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as clients see it. `details` is always a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default = "empty_object")]
    pub details: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: empty_object(),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        debug_assert!(details.is_object(), "error details must be an object");
        self.details = details;
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
}

/// The body of every error response: `{"error":{"code":…,"message":…,"details":{…}}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names_and_round_trip() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(ErrorCode::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorCode::InvalidModule.http_status(), 400);
        assert_eq!(ErrorCode::FunctionError.http_status(), 422);
        assert_eq!(ErrorCode::BadOutput.http_status(), 502);
        assert_eq!(ErrorCode::NoWorker.http_status(), 503);
        assert_eq!(ErrorCode::Timeout.http_status(), 504);
    }

    #[test]
    fn error_body_shape() {
        let body = ErrorBody {
            error: ApiError::new(ErrorCode::NoWorker, "no worker serves alice/resize"),
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_worker");
        assert_eq!(v["error"]["details"], serde_json::json!({}));
    }
}
