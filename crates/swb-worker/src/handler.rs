//! Remote functions: what a worker runs for a call it serves.

use async_trait::async_trait;
use bytes::Bytes;
use swb_api::protocol::CallLimits;
use swb_api::{ApiError, FunctionRef};

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
