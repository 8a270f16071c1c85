//! Remote functions: what a worker runs for a call it serves.

use async_trait::async_trait;
use bytes::Bytes;
use swb_api::protocol::CallLimits;
use swb_api::{ApiError, ErrorCode, FunctionRef, SecretValues};

/// What a handler knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub function: FunctionRef,
    /// The deadline and output bounds the server set for this call.
    pub limits: CallLimits,
    /// The stored profile (settings) the caller named, if any.
    pub profile: Option<serde_json::Value>,
    /// The id of the call's invocation record (`swb inv show <id>`).
    pub invocation: Option<String>,
    /// The call's W3C `traceparent`: its tree's trace, its own span.
    pub traceparent: Option<String>,
    /// The namespace's secrets the function's version is granted (`secrets`); its
    /// `Debug` shows their names only.
    pub secrets: SecretValues,
    /// The server, holding this call's token for nested calls: present when the
    /// function's version declares functions it calls (`calls`).
    pub platform: Option<swb_client::Client>,
}

impl CallContext {
    /// Calls another catalog function through the platform, as part of this call's
    /// tree: it acts for this call's caller, may call only what the version declared,
    /// and has no more time than this call has left. Its failure is a value.
    pub async fn call(&self, function: &str, input: impl Into<Bytes>) -> Result<Bytes, ApiError> {
        let function = FunctionRef::callee(function)?;
        let platform = self.platform.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} declares no functions it calls; serve it with `calls` naming {function}",
                    self.function
                ),
            )
        })?;
        match platform.invoke(&function, None, input).await {
            Ok(invocation) => Ok(invocation.output),
            Err(e) => Err(match e.error {
                swb_client::ClientError::Api(e) => e,
                other => ApiError::new(
                    ErrorCode::WorkerLost,
                    format!("nested call of {function} failed: {other}"),
                ),
            }),
        }
    }
}

/// A call's outcome: the output, or an error from the error table, and the tail of
/// whatever the handler logged (shown in the invocation record).
#[derive(Debug)]
pub struct Reply {
    pub output: Result<Bytes, ApiError>,
    pub stderr_tail: String,
}

impl Reply {
    pub fn ok(output: impl Into<Bytes>) -> Self {
        Self {
            output: Ok(output.into()),
            stderr_tail: String::new(),
        }
    }

    pub fn error(error: ApiError) -> Self {
        Self {
            output: Err(error),
            stderr_tail: String::new(),
        }
    }
}

/// Serves calls of one remote function. A call that is cancelled (its caller went
/// away or its deadline passed) has its future dropped.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn call(&self, ctx: CallContext, input: Bytes) -> Reply;
}
