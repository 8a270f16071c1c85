use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swb_api::protocol::{CallId, HostedCall, PROTOCOL_VERSION, ServerMsg, WorkerMsg};
use swb_api::{ApiError, CacheStats, Digest, ErrorCode};
use swb_runtime::{CallRequest, Runtime, RuntimeConfig};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::timeout;

const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Calls run at once.
    pub capacity: u32,
    /// Compiled-code cache that survives restarts; `None` keeps code in memory only.
    pub cache_dir: Option<PathBuf>,
}

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The connection closed; the caller may reconnect.
    Closed { welcomed: bool },
    /// The server refused the worker; reconnecting with the same settings is futile.
    Refused(ApiError),
    /// The shutdown signal fired.
    Shutdown,
}

pub struct Worker {
    config: WorkerConfig,
    runtime: Arc<Runtime>,
}

type CodeWaiters = Mutex<HashMap<Digest, Vec<oneshot::Sender<Result<(), String>>>>>;

/// State shared by a session's tasks.
struct Shared {
    runtime: Arc<Runtime>,
    out: mpsc::Sender<WorkerMsg>,
    slots: Semaphore,
    in_flight: AtomicU32,
    cancels: Mutex<HashMap<CallId, Arc<AtomicBool>>>,
    waiting_for_code: CodeWaiters,
    reported: Mutex<CacheStats>,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.capacity > 0, "capacity must be at least 1");
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: config.cache_dir.clone(),
            max_instances: config.capacity.max(8) * 2,
            ..RuntimeConfig::default()
        })?;
        Ok(Self {
            config,
            runtime: Arc::new(runtime),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Runs one session over a pair of channels until it closes, is refused, or
    /// `shutdown` resolves (running calls are then allowed to finish).
    pub async fn session(
        &self,
        out: mpsc::Sender<WorkerMsg>,
        mut inbox: mpsc::UnboundedReceiver<ServerMsg>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> SessionEnd {
        let hello = WorkerMsg::Hello {
            protocol: PROTOCOL_VERSION,
            name: self.config.name.clone(),
            labels: self.config.labels.clone(),
            capacity: self.config.capacity,
            runtimes: vec!["wasm".into()],
            cached: self.runtime.cached_on_disk(),
        };
        if out.send(hello).await.is_err() {
            return SessionEnd::Closed { welcomed: false };
        }
        let heartbeat_ms = match timeout(WELCOME_TIMEOUT, inbox.recv()).await {
            Ok(Some(ServerMsg::Welcome {
                heartbeat_ms,
                worker_id,
                ..
            })) => {
                tracing::info!(worker = %self.config.name, id = %worker_id, "session open");
                heartbeat_ms.max(100)
            }
            Ok(Some(ServerMsg::Refused { error })) => return SessionEnd::Refused(error),
            _ => return SessionEnd::Closed { welcomed: false },
        };
        let shared = Arc::new(Shared {
            runtime: self.runtime.clone(),
            out,
            slots: Semaphore::new(self.config.capacity as usize),
            in_flight: AtomicU32::new(0),
            cancels: Mutex::new(HashMap::new()),
            waiting_for_code: Mutex::new(HashMap::new()),
            reported: Mutex::new(CacheStats::default()),
        });
        let mut ticker = tokio::time::interval(Duration::from_millis(heartbeat_ms));
        let mut shutdown = std::pin::pin!(shutdown);
        let end = loop {
            tokio::select! {
                msg = inbox.recv() => match msg {
                    None => break SessionEnd::Closed { welcomed: true },
                    Some(ServerMsg::Refused { error }) => break SessionEnd::Refused(error),
                    Some(msg) => shared.handle(msg),
                },
                _ = ticker.tick() => shared.heartbeat().await,
                _ = &mut shutdown => break SessionEnd::Shutdown,
            }
        };
        if matches!(end, SessionEnd::Shutdown) {
            // Let running calls finish and report (bounded by their own deadlines).
            let _ = shared.slots.acquire_many(self.config.capacity).await;
        }
        end
    }
}

impl Shared {
    fn handle(self: &Arc<Self>, msg: ServerMsg) {
        match msg {
            ServerMsg::Code { digest, module } => {
                let shared = self.clone();
                tokio::spawn(async move { shared.compile(digest, module).await });
            }
            ServerMsg::Invoke {
                call,
                hosted,
                input,
            } => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.cancels
                    .lock()
                    .expect("cancels lock")
                    .insert(call, cancel.clone());
                let shared = self.clone();
                tokio::spawn(async move { shared.run_call(call, hosted, input, cancel).await });
            }
            ServerMsg::Cancel { call } => {
                if let Some(flag) = self.cancels.lock().expect("cancels lock").get(&call) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            ServerMsg::Welcome { .. } | ServerMsg::Refused { .. } => {}
        }
    }

    async fn heartbeat(&self) {
        let code_cache = self.runtime.stats();
        *self.reported.lock().expect("reported lock") = code_cache;
        let _ = self
            .out
            .send(WorkerMsg::Heartbeat {
                in_flight: self.in_flight.load(Ordering::Relaxed),
                code_cache,
            })
            .await;
    }

    /// Reports the cache counters early when code was compiled or loaded from disk,
    /// so that the server sees cache activity without waiting for a heartbeat.
    async fn report_cache_changes(&self) {
        let now = self.runtime.stats();
        let before = *self.reported.lock().expect("reported lock");
        if now.compiles != before.compiles || now.disk_hits != before.disk_hits {
            self.heartbeat().await;
        }
    }

    async fn compile(&self, digest: Digest, module: Bytes) {
        let runtime = self.runtime.clone();
        let result =
            tokio::task::spawn_blocking(move || runtime.prepare(digest, &module).map(|_| ()))
                .await
                .unwrap_or_else(|e| Err(format!("compiler crashed: {e}")));
        if let Err(e) = &result {
            tracing::warn!(%digest, error = %e, "could not load module");
        }
        let _ = self
            .out
            .send(WorkerMsg::Compiled {
                digest,
                error: result.clone().err(),
            })
            .await;
        let waiters = self
            .waiting_for_code
            .lock()
            .expect("waiters lock")
            .remove(&digest)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(result.clone());
        }
        self.report_cache_changes().await;
    }

    /// The "no code" round trip: asks the server for a module and waits until it has
    /// been compiled.
    async fn fetch_code(&self, digest: Digest, wait: Duration) -> Result<(), ApiError> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut waiters = self.waiting_for_code.lock().expect("waiters lock");
            let list = waiters.entry(digest).or_default();
            list.push(tx);
            list.len() == 1
        };
        if first {
            let _ = self.out.send(WorkerMsg::NeedCode { digest }).await;
        }
        match timeout(wait, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ApiError::new(
                ErrorCode::Internal,
                format!("worker could not load module {digest}: {e}"),
            )),
            Ok(Err(_)) | Err(_) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!("module {digest} did not arrive before the call's deadline"),
            )),
        }
    }

    async fn run_call(
        self: Arc<Self>,
        call: CallId,
        hosted: HostedCall,
        input: Bytes,
        cancel: Arc<AtomicBool>,
    ) {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("semaphore is never closed");
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let hosted = Arc::new(hosted);
        let mut result = self.execute(&hosted, input.clone(), &cancel).await;
        if result.is_none() {
            let wait = Duration::from_millis(hosted.limits.timeout_ms);
            result = Some(match self.fetch_code(hosted.digest, wait).await {
                Ok(()) => self
                    .execute(&hosted, input, &cancel)
                    .await
                    .unwrap_or_else(|| {
                        failed(ApiError::new(
                            ErrorCode::Internal,
                            "module vanished from the worker's cache",
                        ))
                    }),
                Err(e) => failed(e),
            });
        }
        let done = result.expect("set above");
        self.cancels.lock().expect("cancels lock").remove(&call);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let (output, error) = match done.output {
            Ok(output) => (output, None),
            Err(e) => (Bytes::new(), Some(e)),
        };
        let _ = self
            .out
            .send(WorkerMsg::Done {
                call,
                error,
                stderr_tail: String::from_utf8_lossy(&done.stderr_tail).into_owned(),
                duration_us: done.duration.as_micros() as u64,
                output,
            })
            .await;
        self.report_cache_changes().await;
    }

    /// Runs the call on a blocking thread; `None` when the module is not available.
    async fn execute(
        &self,
        hosted: &Arc<HostedCall>,
        input: Bytes,
        cancel: &Arc<AtomicBool>,
    ) -> Option<swb_runtime::CallResult> {
        let (runtime, hosted, cancel) = (self.runtime.clone(), hosted.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            let module = runtime.lookup(&hosted.digest)?;
            Some(runtime.call(
                &module,
                CallRequest {
                    input,
                    args: &hosted.args,
                    env: &hosted.env,
                    limits: hosted.limits,
                    cancel: Some(cancel),
                },
            ))
        })
        .await
        .unwrap_or_else(|e| {
            Some(failed(ApiError::new(
                ErrorCode::Internal,
                format!("call crashed the worker thread: {e}"),
            )))
        })
    }
}

fn failed(error: ApiError) -> swb_runtime::CallResult {
    swb_runtime::CallResult {
        output: Err(error),
        stderr_tail: Bytes::new(),
        duration: Duration::ZERO,
    }
}
