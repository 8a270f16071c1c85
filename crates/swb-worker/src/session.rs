use crate::handler::{CallContext, Handler, Reply};
use crate::wasm::{Guests, NestedTable};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swb_api::protocol::{
    CallId, HostedCall, PROTOCOL_VERSION, ServedFunction, ServerMsg, WorkerMsg, hello_limits,
};
use swb_api::{ApiError, CacheStats, Digest, ErrorCode, FunctionRef};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::timeout;

const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Most Wasm guests a worker runs at once, per CPU. It may hold more calls (its
/// capacity): the others wait at the worker for a running guest to end. Memory for
/// guests is bounded by those running; the calls held hide the round trip to the
/// server.
pub const GUESTS_PER_CPU: u32 = 8;

/// The CPUs this process may use (2 when the system cannot say).
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Calls held at once: the server sends no more, except nested calls taking the
    /// slots of calls that wait for them. Remote calls run as they come; Wasm calls
    /// run at most [`GUESTS_PER_CPU`] × CPUs at once.
    pub capacity: u32,
    /// Run hosted (Wasm) functions.
    pub wasm: bool,
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
    guests: Option<Arc<Guests>>,
    functions: Vec<(ServedFunction, Arc<dyn Handler>)>,
}

type CodeWaiters = Mutex<HashMap<Digest, Vec<oneshot::Sender<Result<(), String>>>>>;

/// State shared by a session's tasks.
struct Shared {
    guests: Option<Arc<Guests>>,
    handlers: HashMap<FunctionRef, Arc<dyn Handler>>,
    out: mpsc::Sender<WorkerMsg>,
    /// The server this session is with, for handlers' nested calls.
    platform: Option<swb_client::Client>,
    in_flight: AtomicU32,
    /// Calls received and not yet answered (running or waiting for a slot).
    outstanding: AtomicU32,
    idle: Notify,
    /// Fired when the server cancels a call: its future is then dropped.
    cancels: Mutex<HashMap<CallId, Arc<Notify>>>,
    waiting_for_code: CodeWaiters,
    reported: Mutex<CacheStats>,
    /// Guests' calls of other functions, waiting for their answers.
    nested: Arc<NestedTable>,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.capacity > 0, "capacity must be at least 1");
        let guests = if config.wasm {
            let running = config.capacity.min(GUESTS_PER_CPU * cpus());
            Some(Arc::new(Guests::new(&config, running)?))
        } else {
            None
        };
        Ok(Self {
            config,
            guests,
            functions: Vec::new(),
        })
    }

    /// Adds a remote function this worker serves, announced in every hello.
    pub fn serve(mut self, function: ServedFunction, handler: Arc<dyn Handler>) -> Self {
        self.functions.push((function, handler));
        self
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The Wasm runtime, shared with the server when the worker runs in its process
    /// (`swb up`): ready modules then run straight from the server's call.
    #[cfg(feature = "wasm")]
    pub fn runtime(&self) -> Option<Arc<swb_runtime::Runtime>> {
        self.guests.as_ref().map(|g| g.runtime.clone())
    }

    /// Runs one session (messages go out on `out`, come in from `inbox`) until it
    /// closes, is refused, or `shutdown` resolves (running calls are then allowed to
    /// finish).
    /// `server` is the server's URL, through which handlers make nested calls.
    pub async fn session(
        &self,
        out: mpsc::Sender<WorkerMsg>,
        mut inbox: impl futures_util::Stream<Item = ServerMsg> + Unpin,
        shutdown: impl std::future::Future<Output = ()>,
        server: Option<&str>,
    ) -> SessionEnd {
        let hello = WorkerMsg::Hello {
            protocol: PROTOCOL_VERSION,
            name: self.config.name.clone(),
            labels: self.config.labels.clone(),
            capacity: self.config.capacity,
            runtimes: self.guests.iter().map(|_| "wasm".to_string()).collect(),
            cached: self
                .guests
                .as_ref()
                .map(|g| {
                    let mut cached = g.cached_on_disk();
                    cached.truncate(hello_limits::MAX_CACHED);
                    cached
                })
                .unwrap_or_default(),
            functions: self.functions.iter().map(|(f, _)| f.clone()).collect(),
        };
        if out.send(hello).await.is_err() {
            return SessionEnd::Closed { welcomed: false };
        }
        let heartbeat_ms = match timeout(WELCOME_TIMEOUT, inbox.next()).await {
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
            guests: self.guests.clone(),
            handlers: self
                .functions
                .iter()
                .map(|(f, h)| (f.function.clone(), h.clone()))
                .collect(),
            out,
            platform: server.map(|url| swb_client::Client::new(url, "")),
            in_flight: AtomicU32::new(0),
            outstanding: AtomicU32::new(0),
            idle: Notify::new(),
            cancels: Mutex::new(HashMap::new()),
            waiting_for_code: Mutex::new(HashMap::new()),
            reported: Mutex::new(CacheStats::default()),
            nested: Arc::default(),
        });
        let mut ticker = tokio::time::interval(Duration::from_millis(heartbeat_ms));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut draining = false;
        loop {
            // While draining, the session ends once every received call is answered.
            let idle = shared.idle.notified();
            if draining && shared.outstanding.load(Ordering::Acquire) == 0 {
                tracing::info!(worker = %self.config.name, "drained");
                return SessionEnd::Shutdown;
            }
            tokio::select! {
                msg = inbox.next() => match msg {
                    None => return SessionEnd::Closed { welcomed: true },
                    Some(ServerMsg::Refused { error }) => return SessionEnd::Refused(error),
                    Some(msg) => shared.handle(msg),
                },
                _ = ticker.tick() => shared.heartbeat().await,
                _ = &mut shutdown, if !draining => {
                    // Stop taking calls, finish those received, then stop.
                    tracing::info!(worker = %self.config.name, "draining");
                    draining = true;
                    let _ = shared.out.send(WorkerMsg::Draining).await;
                }
                _ = idle, if draining => {}
            }
        }
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
                let cancel = self.accept(call);
                let shared = self.clone();
                tokio::spawn(async move {
                    // A guest call's state is kilobytes (4.8 KB): boxed, it is
                    // written to the heap once instead of being copied with the
                    // task as it is spawned and again as it ends.
                    let run = Box::pin(shared.run_hosted(call, hosted, input));
                    shared.answer_unless_cancelled(call, &cancel, run).await;
                });
            }
            ServerMsg::Call {
                call,
                function,
                limits,
                profile,
                invocation,
                token,
                traceparent,
                secrets,
                input,
            } => {
                let cancel = self.accept(call);
                let shared = self.clone();
                let ctx = CallContext {
                    function,
                    limits,
                    profile,
                    invocation,
                    traceparent,
                    secrets,
                    platform: token.and_then(|t| {
                        let platform = self.platform.as_ref()?;
                        Some(platform.with_token(t.expose()))
                    }),
                };
                tokio::spawn(async move {
                    let run = shared.run_remote(ctx, input);
                    shared.answer_unless_cancelled(call, &cancel, run).await;
                });
            }
            ServerMsg::NestedDone {
                nested,
                error,
                output,
            } => {
                self.nested.done(nested, error.map_or(Ok(output), Err));
            }
            ServerMsg::Cancel { call } => {
                if let Some(c) = self.cancels.lock().expect("cancels lock").get(&call) {
                    c.notify_one();
                }
            }
            ServerMsg::Welcome { .. } | ServerMsg::Refused { .. } => {}
        }
    }

    /// Registers a received call so that it can be cancelled and drained.
    fn accept(&self, call: CallId) -> Arc<Notify> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let cancel = Arc::new(Notify::new());
        self.cancels
            .lock()
            .expect("cancels lock")
            .insert(call, cancel.clone());
        cancel
    }

    /// Drops a call's bookkeeping; wakes the drain when it was the last one.
    fn forget(&self, call: CallId) {
        self.cancels.lock().expect("cancels lock").remove(&call);
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }

    /// Answers a call when `run` ends, unless the server cancels it first: dropping
    /// the call's future stops it (a guest at once; the exec adapter kills its
    /// process group).
    async fn answer_unless_cancelled(
        &self,
        call: CallId,
        cancel: &Notify,
        run: impl Future<Output = Timed>,
    ) {
        tokio::select! {
            reply = run => self.finish(call, reply).await,
            _ = cancel.notified() => self.forget(call),
        }
    }

    async fn finish(&self, call: CallId, reply: Timed) {
        let (output, error) = match reply.reply.output {
            Ok(output) => (output, None),
            Err(e) => (Bytes::new(), Some(e)),
        };
        let _ = self
            .out
            .send(WorkerMsg::Done {
                call,
                error,
                stderr_tail: reply.reply.stderr_tail,
                duration_us: reply.duration.as_micros() as u64,
                output,
            })
            .await;
        self.forget(call);
        self.report_cache_changes().await;
    }

    async fn run_remote(&self, ctx: CallContext, input: Bytes) -> Timed {
        let limits = ctx.limits;
        // No semaphore here: the server sends no more calls than the capacity, except
        // nested calls using the slots of calls waiting for them (which must run).
        let _running = Running::new(&self.in_flight);
        let started = std::time::Instant::now();
        let mut reply = match self.handlers.get(&ctx.function) {
            Some(handler) => handler.clone().call(ctx, input).await,
            None => Reply::error(ApiError::not_found(format!(
                "function {} on this worker",
                ctx.function
            ))),
        };
        // Whatever a handler returns, no more than the call's output bound travels.
        if reply
            .output
            .as_ref()
            .is_ok_and(|out| out.len() as u64 > limits.stdout_bytes)
        {
            reply.output = Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("output exceeds {} bytes", limits.stdout_bytes),
            )
            .with_details(
                serde_json::json!({ "limit": "stdout", "limit_bytes": limits.stdout_bytes }),
            ));
        }
        Timed {
            reply,
            duration: started.elapsed(),
        }
    }

    async fn heartbeat(&self) {
        let code_cache = self.guests.as_ref().map(|g| g.stats()).unwrap_or_default();
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
        let Some(guests) = &self.guests else {
            return;
        };
        let now = guests.stats();
        let before = *self.reported.lock().expect("reported lock");
        if now.compiles != before.compiles || now.disk_hits != before.disk_hits {
            self.heartbeat().await;
        }
    }

    async fn compile(&self, digest: Digest, module: Bytes) {
        let result = match &self.guests {
            Some(guests) => guests.compile(digest, module).await,
            None => Err("this worker does not run Wasm".into()),
        };
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

    async fn run_hosted(&self, call: CallId, hosted: Arc<HostedCall>, input: Bytes) -> Timed {
        let _running = Running::new(&self.in_flight);
        let failed = |e| Timed {
            reply: Reply {
                output: Err(e),
                stderr_tail: String::new(),
            },
            duration: Duration::ZERO,
        };
        let Some(guests) = &self.guests else {
            return failed(ApiError::new(
                ErrorCode::Internal,
                "this worker does not run Wasm",
            ));
        };
        let run = || guests.execute(call, &hosted, input.clone(), &self.out, &self.nested);
        let done = match run().await {
            Some(done) => done,
            None => {
                let wait = Duration::from_millis(hosted.limits.timeout_ms);
                if let Err(e) = self.fetch_code(hosted.digest, wait).await {
                    return failed(e);
                }
                match run().await {
                    Some(done) => done,
                    None => {
                        return failed(ApiError::new(
                            ErrorCode::Internal,
                            "module vanished from the worker's cache",
                        ));
                    }
                }
            }
        };
        Timed {
            reply: done.0,
            duration: done.1,
        }
    }
}

/// Counts a call as running for as long as it lives (its future may be dropped).
struct Running<'a>(&'a AtomicU32);

impl<'a> Running<'a> {
    fn new(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reply with how long the call took.
struct Timed {
    reply: Reply,
    duration: Duration,
}
