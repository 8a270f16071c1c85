//! The Rust SDK for remote functions: register typed handlers, then `run`.
//!
//! ```no_run
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct In { name: String }
//! #[derive(Serialize, JsonSchema)]
//! struct Out { greeting: String }
//!
//! # async fn run() -> anyhow::Result<()> {
//! swb_worker::sdk::Service::new("greeter")
//!     .function("alice/greet", "Greets someone", |i: In| async move {
//!         Ok::<_, String>(Out { greeting: format!("Hello, {}!", i.name) })
//!     })?
//!     .run_from_env()
//!     .await
//! # }
//! ```

use crate::handler::{CallContext, Handler, Reply};
use crate::{Backoff, Worker, WorkerConfig};
use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use swb_api::protocol::ServedFunction;
use swb_api::{ApiError, ErrorCode, FunctionRef, Interface};

/// A set of typed remote functions served by one worker.
pub struct Service {
    config: WorkerConfig,
    functions: Vec<(ServedFunction, Arc<dyn Handler>)>,
}

struct Typed<I, O, F> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

#[async_trait]
impl<I, O, E, F, Fut> Handler for Typed<I, O, F>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Fn(CallContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
{
    async fn call(&self, ctx: CallContext, input: Bytes) -> Reply {
        // The server validated the input against the schema generated from `I`.
        let input: I = match serde_json::from_slice(&input) {
            Ok(i) => i,
            Err(e) => return Reply::error(ApiError::invalid_input(format!("bad input: {e}"))),
        };
        match (self.f)(ctx, input).await {
            Ok(out) => match serde_json::to_vec(&out) {
                Ok(bytes) => Reply::ok(bytes),
                Err(e) => Reply::error(ApiError::new(ErrorCode::Internal, e.to_string())),
            },
            Err(e) => Reply::error(
                ApiError::new(ErrorCode::FunctionError, e.to_string())
                    .with_details(serde_json::json!({ "stderr_tail": e.to_string() })),
            ),
        }
    }
}

impl Service {
    /// A service whose worker is called `name` (shown in `swb worker list`).
    pub fn new(name: &str) -> Self {
        Self {
            config: WorkerConfig {
                name: name.into(),
                labels: Default::default(),
                capacity: 16,
                wasm: false,
                cache_dir: None,
            },
            functions: Vec::new(),
        }
    }

    pub fn capacity(mut self, capacity: u32) -> Self {
        self.config.capacity = capacity;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }

    /// Serves `function` (`ns/name`) with a typed handler; the interface (JSON Schemas
    /// of input and output) is generated from the types.
    pub fn function<I, O, E, F, Fut>(
        self,
        function: &str,
        description: &str,
        f: F,
    ) -> anyhow::Result<Self>
    where
        I: DeserializeOwned + JsonSchema + Send + 'static,
        O: Serialize + JsonSchema + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        self.function_calling(function, description, &[], move |_, i| f(i))
    }

    /// Serves `function` with a typed handler that also gets its call's context and
    /// may call the functions in `calls` (`ns/name`) through it:
    /// `ctx.call("alice/add", input).await`.
    pub fn function_calling<I, O, E, F, Fut>(
        mut self,
        function: &str,
        description: &str,
        calls: &[&str],
        f: F,
    ) -> anyhow::Result<Self>
    where
        I: DeserializeOwned + JsonSchema + Send + 'static,
        O: Serialize + JsonSchema + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(CallContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        let function: FunctionRef = function.parse()?;
        let calls = calls
            .iter()
            .map(|c| c.parse())
            .collect::<Result<Vec<FunctionRef>, _>>()?;
        let interface = Interface {
            input: Some(serde_json::to_value(schemars::schema_for!(I))?),
            output: Some(serde_json::to_value(schemars::schema_for!(O))?),
            description: Some(description.into()),
        };
        let handler = Typed {
            f,
            _types: PhantomData,
        };
        self.functions.push((
            ServedFunction {
                function,
                interface,
                replace: true,
                idempotent: false,
                timeout_ms: None,
                calls,
                secrets: Vec::new(),
                keep_io: false,
            },
            Arc::new(handler),
        ));
        Ok(self)
    }

    /// Grants the function added last the namespace's secrets `names`: each call's
    /// context holds their values (`ctx.secrets.get("API_KEY")`). Granting takes a
    /// token that may deploy the function.
    pub fn secrets(mut self, names: &[&str]) -> Self {
        if let Some((served, _)) = self.functions.last_mut() {
            served.secrets = names.iter().map(|n| (*n).to_owned()).collect();
        }
        self
    }

    /// Connects to `SWB_URL` (several servers: comma-separated, failed over in turn)
    /// with `SWB_TOKEN` and serves until Ctrl-C, draining running calls before it
    /// returns.
    pub async fn run_from_env(self) -> anyhow::Result<()> {
        let servers: Vec<String> = std::env::var("SWB_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:7070".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let token = std::env::var("SWB_TOKEN").map_err(|_| {
            anyhow::anyhow!("set SWB_TOKEN to a token that may serve the functions")
        })?;
        let mut worker = Worker::new(self.config)?;
        for (served, handler) in self.functions {
            worker = worker.serve(served, handler);
        }
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::run(&worker, &servers, &token, backoff, stop).await?;
        Ok(())
    }
}
