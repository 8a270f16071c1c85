//! Hosted (Wasm) calls on a worker: the runtime, its code cache, and guests' nested
//! calls over the session. Built with the `wasm` feature (`swb` has it); without
//! it the worker serves remote functions only and compiles no wasmtime.

use crate::handler::Reply;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swb_api::protocol::{CallId, HostedCall, WorkerMsg};
use swb_api::{ApiError, CacheStats, Digest, ErrorCode, FunctionRef};
use swb_runtime::{CallRequest, NestedCalls, Runtime, RuntimeConfig};
use tokio::sync::{mpsc, oneshot};

/// A worker's Wasm side: shared by its sessions.
pub(crate) struct Guests {
    pub runtime: Arc<Runtime>,
}

/// A session's Wasm side: the guests' nested calls awaiting `nested_done`.
#[derive(Default)]
pub(crate) struct NestedTable {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, ApiError>>>>,
}

impl Guests {
    pub fn new(config: &crate::WorkerConfig, max_instances: u32) -> anyhow::Result<Self> {
        Ok(Self {
            runtime: Arc::new(Runtime::new(RuntimeConfig {
                cache_dir: config.cache_dir.clone(),
                max_instances,
                ..RuntimeConfig::default()
            })?),
        })
    }

    pub fn stats(&self) -> CacheStats {
        self.runtime.stats()
    }

    pub fn cached_on_disk(&self) -> Vec<Digest> {
        self.runtime.cached_on_disk()
    }

    /// Compiles a module (on a blocking thread).
    pub async fn compile(&self, digest: Digest, module: Bytes) -> Result<(), String> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.prepare(digest, &module).map(|_| ()))
            .await
            .unwrap_or_else(|e| Err(format!("compiler crashed: {e}")))
    }

    /// Runs the call on this task; `None` when the module is not here. A guest that
    /// may call further makes its calls over the session (`out`, `table`).
    pub async fn execute(
        &self,
        call: CallId,
        hosted: &HostedCall,
        input: Bytes,
        out: &mpsc::Sender<WorkerMsg>,
        table: &Arc<NestedTable>,
    ) -> Option<(Reply, Duration)> {
        let module = match self.runtime.ready(&hosted.digest) {
            Some(module) => module,
            // Loading from the disk cache reads and maps a file.
            None => {
                let (runtime, digest) = (self.runtime.clone(), hosted.digest);
                tokio::task::spawn_blocking(move || runtime.lookup(&digest))
                    .await
                    .ok()
                    .flatten()?
            }
        };
        let mut request = CallRequest::hosted(hosted, input);
        if hosted.calls {
            request = request.with_calls(Arc::new(GuestCalls {
                call,
                out: out.clone(),
                table: table.clone(),
            }));
        }
        let done = self.runtime.call(&module, request).await;
        let reply = Reply {
            output: done.output,
            stderr_tail: String::from_utf8_lossy(&done.stderr_tail).into_owned(),
        };
        Some((reply, done.duration))
    }
}

impl NestedTable {
    /// A nested call's answer arrived (`nested_done`).
    pub fn done(&self, nested: u64, answer: Result<Bytes, ApiError>) {
        let waiting = self.waiting.lock().expect("nested lock").remove(&nested);
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }
}

/// Makes one hosted call's nested calls over the session.
struct GuestCalls {
    call: CallId,
    out: mpsc::Sender<WorkerMsg>,
    table: Arc<NestedTable>,
}

impl NestedCalls for GuestCalls {
    fn call(
        &self,
        function: String,
        input: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, ApiError>> + Send>> {
        let (call, out, table) = (self.call, self.out.clone(), self.table.clone());
        Box::pin(async move {
            let function = FunctionRef::callee(&function)?;
            let nested = table.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            table
                .waiting
                .lock()
                .expect("nested lock")
                .insert(nested, tx);
            // Forgotten however the call ends (answered, or the guest dropped).
            let _forget = Forget(&table, nested);
            let lost = || ApiError::new(ErrorCode::WorkerLost, "the session with the server ended");
            out.send(WorkerMsg::NestedCall {
                call,
                nested,
                function,
                input,
            })
            .await
            .map_err(|_| lost())?;
            rx.await.unwrap_or_else(|_| Err(lost()))
        })
    }
}

struct Forget<'a>(&'a NestedTable, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.waiting.lock().expect("nested lock").remove(&self.1);
    }
}
