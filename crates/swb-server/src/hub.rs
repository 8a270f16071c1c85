//! The worker hub: sessions of connected workers, the code each has ready, and the
//! dispatch of calls to them.
//!
//! A session is transport-agnostic: a channel of protocol messages towards the worker
//! and a stream of its messages. The WebSocket endpoint and the in-process worker of
//! `swb up` both feed [`Hub::run_session`].

use crate::auth::Caller;
use crate::metrics as m;
use crate::tree::{Hop, Node, Slot, Trees};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use swb_api::protocol::{CallId, CallLimits, HostedCall, ServerMsg, WorkerMsg};
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, CacheStats, CompileReport, Digest, ErrorCode, FunctionRef, FunctionWorker,
    SecretValues, WorkerCodeStatus, WorkerFailure, WorkerInfo,
};
use swb_runtime::{CallRequest, NestedCalls, Prepared, Runtime};
use swb_store::Store;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};

/// The runtime a worker must offer to run hosted functions.
pub const WASM: &str = "wasm";
/// A call's answer may arrive this long after its deadline (the worker enforces the
/// deadline itself and reports `timeout`; this covers the trip back).
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Decides whether a worker may receive a function's calls and code, from the
/// identity it connected with (`None`: the in-process worker of `swb up`).
pub type Eligible<'a> = &'a (dyn Fn(Option<&Caller>) -> bool + Send + Sync);

/// Sending half towards a worker.
pub type ToWorker = mpsc::UnboundedSender<ServerMsg>;
/// The messages of a worker, in order; the session ends with the stream.
pub type FromWorker = std::pin::Pin<Box<dyn futures_util::Stream<Item = WorkerMsg> + Send>>;

/// A worker's messages arriving over a channel (the in-process worker, tests).
pub fn from_channel(rx: mpsc::Receiver<WorkerMsg>) -> FromWorker {
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// What a call runs (it travels between replicas as it is). A hosted call is shared
/// with the route it comes from: a call copies it only to change it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// A hosted module, on any Wasm worker allowed to run it.
    Hosted(Arc<HostedCall>),
    /// A remote function, on the workers that serve it.
    Remote {
        function: FunctionRef,
        limits: CallLimits,
        profile: Option<serde_json::Value>,
        /// The call's invocation record, which the worker may name (`SWB_CALL_ID`).
        invocation: Option<String>,
        /// Its W3C `traceparent` (`TRACEPARENT`).
        traceparent: Option<String>,
        /// The secrets granted to the version. Never sent to another replica: one
        /// that runs a forwarded call opens them itself (`Target::with_secrets_of`).
        #[serde(skip)]
        secrets: SecretValues,
    },
}

impl Target {
    /// The same call with a stored profile attached: hosted functions see it as the
    /// environment variable `SWB_PROFILE`, remote ones in their call context.
    pub fn with_profile(mut self, value: serde_json::Value) -> Self {
        match &mut self {
            Target::Hosted(h) => {
                Arc::make_mut(h)
                    .env
                    .push(("SWB_PROFILE".into(), value.to_string()));
            }
            Target::Remote { profile, .. } => *profile = Some(value),
        }
        self
    }

    /// The same call, naming its invocation record and trace context to a remote
    /// function's worker, or to a hosted guest that may call further (`SWB_CALL_ID`,
    /// `TRACEPARENT`).
    pub fn with_invocation(mut self, id: &str, trace: Option<&str>) -> Self {
        let made = || {
            let root = trace.map_or_else(|| swb_api::trace::trace_of(id), str::to_owned);
            swb_api::trace::traceparent(&root, id)
        };
        match &mut self {
            Target::Remote {
                invocation,
                traceparent,
                ..
            } => {
                *invocation = Some(id.to_owned());
                *traceparent = Some(made());
            }
            // A guest in a call tree learns its place (the others share their
            // prebuilt call, and pay nothing).
            Target::Hosted(h) if h.calls => {
                let env = &mut Arc::make_mut(h).env;
                env.push(("SWB_CALL_ID".into(), id.to_owned()));
                env.push(("TRACEPARENT".into(), made()));
            }
            Target::Hosted(_) => {}
        }
        self
    }

    /// The same call with another deadline.
    pub fn with_timeout(mut self, timeout_ms: u64) -> Self {
        match &mut self {
            Target::Hosted(h) => Arc::make_mut(h).limits.timeout_ms = timeout_ms,
            Target::Remote { limits, .. } => limits.timeout_ms = timeout_ms,
        }
        self
    }

    /// The secrets the call carries.
    pub fn secrets(&self) -> &SecretValues {
        match self {
            Target::Hosted(h) => &h.secrets,
            Target::Remote { secrets, .. } => secrets,
        }
    }

    /// The same call without its secrets: what travels to another replica.
    pub fn without_secrets(&self) -> Target {
        let mut target = self.clone();
        match &mut target {
            Target::Hosted(h) if !h.secrets.is_empty() => {
                Arc::make_mut(h).secrets = SecretValues::default();
            }
            Target::Hosted(_) => {}
            Target::Remote { secrets, .. } => *secrets = SecretValues::default(),
        }
        target
    }

    /// The same call with the secrets of `route` (the version's route as this
    /// replica built it).
    pub fn with_secrets_of(mut self, route: &Target) -> Self {
        let values = route.secrets().clone();
        match &mut self {
            Target::Hosted(h) => Arc::make_mut(h).secrets = values,
            Target::Remote { secrets, .. } => *secrets = values,
        }
        self
    }

    pub fn limits(&self) -> CallLimits {
        match self {
            Target::Hosted(h) => h.limits,
            Target::Remote { limits, .. } => *limits,
        }
    }
}

/// A worker's hello, checked and with its functions registered.
pub struct Hello {
    pub protocol: u32,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: u32,
    pub runtimes: Vec<String>,
    pub cached: Vec<Digest>,
    pub functions: Vec<FunctionRef>,
}

/// What a worker has of each module, and what it may fetch, under one lock.
struct CodeTable {
    state: HashMap<Digest, CodeState>,
    /// The modules this worker was sent a call of or pushed: the only code it may
    /// ask for. What it claims to have (`cached`, `compiled`) grants nothing.
    entitled: HashSet<Digest>,
}

#[derive(Debug, Clone)]
enum CodeState {
    Pending,
    Ready,
    Failed(String),
}

/// What a worker answered for a call.
#[derive(Debug)]
pub struct Answer {
    pub worker: String,
    pub result: Result<Bytes, ApiError>,
    pub stderr_tail: String,
}

struct Worker {
    id: String,
    caller: Option<Caller>,
    /// Signalled to end the session (its token was revoked).
    close: Notify,
    name: String,
    labels: BTreeMap<String, String>,
    capacity: u32,
    runtimes: Vec<String>,
    functions: HashSet<FunctionRef>,
    draining: AtomicBool,
    protocol: u32,
    connected_at: i64,
    last_heartbeat_at: AtomicI64,
    alive: AtomicBool,
    /// Calls sent and not yet answered.
    in_flight: AtomicU32,
    /// Of those, calls waiting for nested calls (their slots lent to nested calls).
    lent: AtomicU32,
    cache: Mutex<CacheStats>,
    code: Mutex<CodeTable>,
    calls: Mutex<HashMap<CallId, oneshot::Sender<Answer>>>,
    /// The calls running here that may call further (hosted guests' `nested_call`
    /// names them).
    nodes: Mutex<HashMap<CallId, Arc<Node>>>,
    next_call: AtomicU64,
    tx: ToWorker,
    /// The runtime of the in-process worker of `swb up`: a call whose module it has
    /// ready runs from the caller's task, without the protocol's channel hops.
    local: Option<Arc<Runtime>>,
}

impl Worker {
    fn runs_wasm(&self) -> bool {
        self.runtimes.iter().any(|r| r == WASM)
    }

    fn may_run(&self, eligible: Eligible<'_>) -> bool {
        self.runs_wasm() && eligible(self.caller.as_ref())
    }

    /// Whether this worker may take a call of `target`.
    fn suits(
        &self,
        target: &Target,
        eligible: Eligible<'_>,
        requires: &BTreeMap<String, String>,
    ) -> bool {
        let kind = match target {
            Target::Hosted(_) => self.runs_wasm(),
            Target::Remote { function, .. } => self.functions.contains(function),
        };
        // A closed channel means the session's writer is gone (its socket failed)
        // while the session has not yet been removed: no call may go there.
        kind && !self.draining.load(Ordering::Acquire)
            && !self.tx.is_closed()
            && self.has_labels(requires)
            && eligible(self.caller.as_ref())
    }

    /// Whether this worker carries every label a function requires.
    fn has_labels(&self, requires: &BTreeMap<String, String>) -> bool {
        requires.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    fn is_entitled(&self, digest: &Digest) -> bool {
        self.code
            .lock()
            .expect("code lock")
            .entitled
            .contains(digest)
    }

    fn code_state(&self, digest: &Digest) -> Option<CodeState> {
        self.code
            .lock()
            .expect("code lock")
            .state
            .get(digest)
            .cloned()
    }

    /// Takes one unit of capacity if any is free: for a call from outside, counting
    /// every call the worker holds; for a nested call, not counting those waiting
    /// for nested calls of their own (they lent their slots).
    fn try_reserve(&self, nested: bool) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.busy(n, nested) < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// The slots in use, as a call (nested or not) sees them, with `in_flight` = `n`.
    fn busy(&self, n: u32, nested: bool) -> u32 {
        if nested {
            n.saturating_sub(self.lent.load(Ordering::Acquire))
        } else {
            n
        }
    }

    /// The error of a call this worker did not answer in time (deadline and grace).
    fn missed_deadline(&self) -> ApiError {
        ApiError::new(
            ErrorCode::Timeout,
            format!("worker {} did not answer before the deadline", self.name),
        )
    }

    /// Removes a pending call, releasing its capacity; `None` if already answered.
    fn take_call(&self, call: CallId) -> Option<oneshot::Sender<Answer>> {
        let tx = self.calls.lock().expect("calls lock").remove(&call)?;
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        Some(tx)
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            labels: self.labels.clone(),
            capacity: self.capacity,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            runtimes: self.runtimes.clone(),
            functions: {
                let mut f: Vec<_> = self.functions.iter().cloned().collect();
                f.sort();
                f
            },
            draining: self.draining.load(Ordering::Relaxed),
            replica: None,
            protocol: self.protocol,
            connected_at: self.connected_at,
            last_heartbeat_at: self.last_heartbeat_at.load(Ordering::Relaxed),
            code_cache: *self.cache.lock().expect("cache lock"),
        }
    }
}

pub struct Hub {
    store: Arc<dyn Store>,
    /// The calls of this replica's workers that may make nested calls.
    pub trees: Arc<Trees>,
    heartbeat: Duration,
    workers: RwLock<Vec<Arc<Worker>>>,
    /// Round-robin turns, one counter per hosted module and per remote function, so
    /// that a function's calls rotate over its own suitable workers whatever else is
    /// connected or called.
    turns: Turns,
    /// Signalled when capacity frees up or a worker joins.
    freed: Arc<Freed>,
    /// Signalled when a worker reports on code or leaves.
    compiled: Notify,
    /// Bumped when a worker joins or leaves.
    membership: watch::Sender<u64>,
    /// Runs hosted guests' nested calls (set by the server).
    nested: std::sync::OnceLock<NestedRunner>,
}

/// What this node's workers can run, as other replicas need to know it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offers {
    /// Some worker runs Wasm (hosted functions).
    pub wasm: bool,
    /// Remote functions some worker serves.
    pub functions: std::collections::BTreeSet<FunctionRef>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, heartbeat: Duration, trees: Arc<Trees>) -> Self {
        Self {
            store,
            trees,
            heartbeat,
            workers: RwLock::new(Vec::new()),
            turns: Turns::default(),
            freed: Arc::default(),
            compiled: Notify::new(),
            membership: watch::Sender::new(0),
            nested: std::sync::OnceLock::new(),
        }
    }

    /// Hands hosted guests' nested calls to `run` (the server's call path).
    pub fn run_nested_with(&self, run: NestedRunner) {
        let _ = self.nested.set(run);
    }

    /// Changes whenever a worker joins or leaves.
    pub fn membership(&self) -> watch::Receiver<u64> {
        self.membership.subscribe()
    }

    pub fn offers(&self) -> Offers {
        let workers = self.workers.read().expect("workers lock");
        Offers {
            wasm: workers.iter().any(|w| w.runs_wasm()),
            functions: workers
                .iter()
                .flat_map(|w| w.functions.iter().cloned())
                .collect(),
        }
    }

    /// The calls this server's workers take at once (draining ones left out).
    pub fn capacity(&self) -> usize {
        let workers = self.workers.read().expect("workers lock");
        workers
            .iter()
            .filter(|w| !w.draining.load(Ordering::Relaxed))
            .map(|w| w.capacity as usize)
            .sum()
    }

    /// Whether some connected worker could take this call (busy or not).
    pub fn has_suitable(
        &self,
        target: &Target,
        requires: &BTreeMap<String, String>,
        eligible: Eligible<'_>,
    ) -> bool {
        let workers = self.workers.read().expect("workers lock");
        workers.iter().any(|w| w.suits(target, eligible, requires))
    }

    fn snapshot(&self) -> Vec<Arc<Worker>> {
        self.workers.read().expect("workers lock").clone()
    }

    /// Workers whose connecting identity passes `visible`.
    pub fn workers(&self, visible: impl Fn(Option<&Caller>) -> bool) -> Vec<WorkerInfo> {
        self.snapshot()
            .iter()
            .filter(|w| visible(w.caller.as_ref()))
            .map(|w| w.info())
            .collect()
    }

    /// Ends the sessions of workers whose identity matches (e.g. a revoked token).
    pub fn close_sessions(&self, matches: impl Fn(&Caller) -> bool) {
        for w in self.snapshot() {
            if w.caller.as_ref().is_some_and(&matches) {
                w.close.notify_one();
            }
        }
    }

    /// Runs one worker session to its end, after its hello was checked (see
    /// `sessions.rs`). `caller` is the identity the worker authenticated as; `None`
    /// for the in-process worker of `swb up`, which also shares its `local` runtime.
    pub async fn run_session(
        self: &Arc<Self>,
        caller: Option<Caller>,
        hello: Hello,
        tx: ToWorker,
        mut rx: FromWorker,
        local: Option<Arc<Runtime>>,
    ) {
        let Hello {
            protocol,
            name,
            labels,
            capacity,
            runtimes,
            cached,
            functions,
        } = hello;
        let now = now_ms();
        let worker = Arc::new(Worker {
            id: uuid::Uuid::now_v7().to_string(),
            caller,
            close: Notify::new(),
            name,
            labels,
            capacity,
            runtimes,
            functions: functions.into_iter().collect(),
            draining: AtomicBool::new(false),
            protocol,
            connected_at: now,
            last_heartbeat_at: AtomicI64::new(now),
            alive: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            lent: AtomicU32::new(0),
            cache: Mutex::new(CacheStats::default()),
            code: Mutex::new(CodeTable {
                state: cached.into_iter().map(|d| (d, CodeState::Ready)).collect(),
                entitled: HashSet::new(),
            }),
            calls: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            tx: tx.clone(),
            local,
        });
        let _ = tx.send(ServerMsg::Welcome {
            protocol,
            worker_id: worker.id.clone(),
            heartbeat_ms: self.heartbeat.as_millis() as u64,
        });
        self.workers
            .write()
            .expect("workers lock")
            .push(worker.clone());
        metrics::gauge!(m::WORKERS_CONNECTED).increment(1.0);
        tracing::info!(worker = %worker.name, id = %worker.id, capacity, "worker connected");
        self.freed.signal();
        self.membership.send_modify(|n| *n += 1);

        // A worker that stays silent for three heartbeats is gone.
        let silence = self.heartbeat * 3;
        loop {
            let msg = tokio::select! {
                msg = timeout(silence, rx.next()) => msg,
                _ = tx.closed() => {
                    tracing::info!(worker = %worker.name, "the worker's socket could not be written; ending its session");
                    break;
                }
                _ = worker.close.notified() => {
                    tracing::info!(worker = %worker.name, "closing the session: its token was revoked");
                    refuse(&tx, ApiError::new(ErrorCode::Unauthenticated, "the worker's token was revoked"));
                    break;
                }
            };
            match msg {
                Ok(Some(msg)) => self.handle(&worker, msg),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(worker = %worker.name, "worker stopped heartbeating");
                    break;
                }
            }
        }
        self.remove(&worker);
    }

    fn remove(&self, worker: &Arc<Worker>) {
        worker.alive.store(false, Ordering::Release);
        self.workers
            .write()
            .expect("workers lock")
            .retain(|w| !Arc::ptr_eq(w, worker));
        let lost: Vec<_> = worker
            .calls
            .lock()
            .expect("calls lock")
            .drain()
            .map(|(_, tx)| tx)
            .collect();
        worker.in_flight.store(0, Ordering::Release);
        for tx in lost {
            let _ = tx.send(Answer {
                worker: worker.name.clone(),
                result: Err(ApiError::new(
                    ErrorCode::WorkerLost,
                    format!("worker {} disconnected during the call", worker.name),
                )),
                stderr_tail: String::new(),
            });
        }
        metrics::gauge!(m::WORKERS_CONNECTED).decrement(1.0);
        tracing::info!(worker = %worker.name, id = %worker.id, "worker disconnected");
        self.compiled.notify_waiters();
        self.membership.send_modify(|n| *n += 1);
    }

    fn handle(self: &Arc<Self>, worker: &Arc<Worker>, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Heartbeat {
                in_flight: _,
                code_cache,
            } => {
                worker.last_heartbeat_at.store(now_ms(), Ordering::Relaxed);
                let before =
                    std::mem::replace(&mut *worker.cache.lock().expect("cache lock"), code_cache);
                m::count_cache(before, code_cache);
            }
            WorkerMsg::Compiled { digest, error } => {
                let state = match error {
                    None => CodeState::Ready,
                    Some(e) => {
                        tracing::warn!(worker = %worker.name, %digest, error = %e, "worker could not load module");
                        CodeState::Failed(e)
                    }
                };
                worker
                    .code
                    .lock()
                    .expect("code lock")
                    .state
                    .insert(digest, state);
                self.compiled.notify_waiters();
            }
            WorkerMsg::NeedCode { digest } => {
                let hub = self.clone();
                let worker = worker.clone();
                if worker.is_entitled(&digest) {
                    tokio::spawn(async move { hub.send_code(&worker, digest).await });
                } else {
                    tracing::warn!(%digest, worker = %worker.name, "refusing code the worker was not sent a call of");
                    tokio::spawn(async move { hub.audit_refused_code(&worker, digest).await });
                }
            }
            WorkerMsg::Done {
                call,
                error,
                stderr_tail,
                duration_us: _,
                output,
            } => {
                if let Some(tx) = worker.take_call(call) {
                    let _ = tx.send(Answer {
                        worker: worker.name.clone(),
                        result: error.map_or(Ok(output), Err),
                        stderr_tail,
                    });
                }
                self.freed.signal();
            }
            WorkerMsg::NestedCall {
                call,
                nested,
                function,
                input,
            } => {
                let node = worker.nodes.lock().expect("nodes lock").get(&call).cloned();
                let answer = match (node, self.nested.get()) {
                    (Some(node), Some(run)) => run(node, function, input),
                    _ => Box::pin(std::future::ready(Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "this call may make no nested calls (its version declares none, or it ended)",
                    )))),
                };
                let reply = worker.tx.clone();
                tokio::spawn(async move {
                    let (error, output) = match answer.await {
                        Ok(output) => (None, output),
                        Err(e) => (Some(e), Bytes::new()),
                    };
                    let _ = reply.send(ServerMsg::NestedDone {
                        nested,
                        error,
                        output,
                    });
                });
            }
            WorkerMsg::Draining => {
                tracing::info!(worker = %worker.name, "worker is draining");
                worker.draining.store(true, Ordering::Release);
            }
            WorkerMsg::Hello { .. } => {
                tracing::warn!(worker = %worker.name, "ignoring a second hello");
            }
        }
    }

    /// Answers a worker's "no code" request from the artefact store, for code the
    /// worker is entitled to (a worker cannot fetch arbitrary artefacts).
    async fn send_code(&self, worker: &Worker, digest: Digest) {
        match self.store.artefact(&digest).await {
            Ok(Some(module)) => {
                worker
                    .code
                    .lock()
                    .expect("code lock")
                    .state
                    .insert(digest, CodeState::Pending);
                let _ = worker.tx.send(ServerMsg::Code { digest, module });
            }
            Ok(None) => {
                tracing::error!(%digest, worker = %worker.name, "worker asked for code the store lacks")
            }
            Err(e) => tracing::error!(%digest, error = %e, "could not read artefact for a worker"),
        }
    }

    /// Records a worker's request for code it was never sent a call of: the audit
    /// log of the namespace-less platform, read by administrators.
    async fn audit_refused_code(&self, worker: &Worker, digest: Digest) {
        let actor = worker
            .caller
            .as_ref()
            .map_or_else(|| "in-process worker".into(), |c| c.user.email.clone());
        let details = serde_json::json!({ "worker": worker.name, "worker_id": worker.id });
        let action = "worker.need_code.refused";
        crate::audit(
            &*self.store,
            actor,
            action,
            None,
            digest.to_string(),
            details,
        )
        .await;
    }

    /// Sends new code to every Wasm worker that lacks it and waits up to `wait` for
    /// their compile reports.
    pub async fn push_code(
        &self,
        digest: Digest,
        module: Bytes,
        wait: Duration,
        eligible: Eligible<'_>,
    ) -> CompileReport {
        let targets: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|w| w.may_run(eligible))
            .collect();
        for w in &targets {
            let mut code = w.code.lock().expect("code lock");
            // Pending code is on its way already (an earlier push, or a call's request).
            if matches!(code.state.get(&digest), None | Some(CodeState::Failed(_))) {
                code.state.insert(digest, CodeState::Pending);
                code.entitled.insert(digest);
                let _ = w.tx.send(ServerMsg::Code {
                    digest,
                    module: module.clone(),
                });
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            let mut notified = pin!(self.compiled.notified());
            notified.as_mut().enable();
            let report = compile_report(&targets, &digest);
            if report.pending == 0 || timeout_at(deadline, notified).await.is_err() {
                return report;
            }
        }
    }

    /// The workers serving a remote function (all ready by definition).
    pub fn serving(&self, function: &FunctionRef, eligible: Eligible<'_>) -> Vec<FunctionWorker> {
        self.snapshot()
            .iter()
            .filter(|w| w.functions.contains(function) && eligible(w.caller.as_ref()))
            .map(|w| FunctionWorker {
                id: w.id.clone(),
                name: w.name.clone(),
                status: WorkerCodeStatus::Ready,
                error: None,
            })
            .collect()
    }

    /// How each Wasm worker that could run a module (labels included) stands with it.
    pub fn code_status(
        &self,
        digest: &Digest,
        requires: &BTreeMap<String, String>,
        eligible: Eligible<'_>,
    ) -> Vec<FunctionWorker> {
        self.snapshot()
            .iter()
            .filter(|w| w.may_run(eligible) && w.has_labels(requires))
            .map(|w| {
                let (status, error) = match w.code_state(digest) {
                    Some(CodeState::Ready) => (WorkerCodeStatus::Ready, None),
                    Some(CodeState::Failed(e)) => (WorkerCodeStatus::Failed, Some(e)),
                    Some(CodeState::Pending) | None => (WorkerCodeStatus::Available, None),
                };
                FunctionWorker {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    status,
                    error,
                }
            })
            .collect()
    }

    /// Runs a call on a worker: among those that suit it and have free capacity,
    /// one with the code ready (hosted), otherwise the next in round robin. Waits for
    /// capacity until `deadline`; the call's own deadline (its `timeout_ms`) counts
    /// from when a worker takes it, so time spent waiting for one does not eat it.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        function: &FunctionRef,
        target: Target,
        requires: &BTreeMap<String, String>,
        input: Bytes,
        deadline: Instant,
        eligible: Eligible<'_>,
        hop: Hop,
    ) -> Result<Answer, ApiError> {
        // The tree's identity, parsed before a slot is taken.
        let acting = match (&hop.place, hop.acting) {
            (Some(place), None) => Some(Caller::acting(&place.acting)?),
            (_, acting) => acting,
        };
        let worker = self
            .acquire(function, &target, requires, deadline, eligible, hop.nested)
            .await?;
        let deadline = Instant::now() + Duration::from_millis(target.limits().timeout_ms);
        // A call that may call further is registered here, where its worker is and
        // its nested calls come back to: a remote function's worker gets a token for
        // them (a guest's come over its session, naming its call).
        let registered = match (hop.place, acting) {
            (Some(place), Some(acting)) => {
                let slot = Box::new(Lent {
                    worker: worker.clone(),
                    freed: self.freed.clone(),
                });
                let tokened = matches!(target, Target::Remote { .. });
                Some(self.trees.register(place, acting, deadline, slot, tokened))
            }
            _ => None,
        };
        let (token, registered) = registered.unzip();
        let token = token.flatten();
        if let Target::Hosted(hosted) = &target
            && let Some(runtime) = &worker.local
            && let Some(module) = runtime.ready(&hosted.digest)
        {
            // A guest that may call further makes its calls from here.
            let calls = registered.as_ref().and_then(|r| {
                let run = self.nested.get()?.clone();
                Some(Arc::new(LocalCalls {
                    node: r.node(),
                    run,
                }) as Arc<dyn NestedCalls>)
            });
            return Ok(self
                .run_local(&worker, runtime, &module, hosted, input, calls)
                .await);
        }
        let call = worker.next_call.fetch_add(1, Ordering::Relaxed);
        // A hosted guest's nested calls come over its session, naming its call.
        let _node = registered
            .as_ref()
            .map(|r| NodeOf::new(&worker, call, r.node()));
        let msg = match target {
            Target::Hosted(hosted) => {
                // The worker may now fetch this module: it is sent a call of it.
                let mut code = worker.code.lock().expect("code lock");
                code.state
                    .entry(hosted.digest)
                    .or_insert(CodeState::Pending);
                code.entitled.insert(hosted.digest);
                drop(code);
                ServerMsg::Invoke {
                    call,
                    hosted,
                    input,
                }
            }
            Target::Remote {
                function,
                limits,
                profile,
                invocation,
                traceparent,
                secrets,
            } => ServerMsg::Call {
                call,
                function,
                limits,
                profile,
                invocation,
                token,
                traceparent,
                secrets,
                input,
            },
        };
        let (tx, rx) = oneshot::channel();
        worker.calls.lock().expect("calls lock").insert(call, tx);
        let _guard = CancelOnDrop {
            worker: &worker,
            call,
            freed: &self.freed,
        };
        if worker.tx.send(msg).is_err() {
            return Err(ApiError::new(
                ErrorCode::WorkerLost,
                format!("worker {} went away", worker.name),
            ));
        }
        match timeout_at(deadline + ANSWER_GRACE, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ApiError::new(
                ErrorCode::WorkerLost,
                format!("worker {} dropped the call", worker.name),
            )),
            Err(_) => Err(worker.missed_deadline()),
        }
    }

    /// Runs a call on the in-process worker's runtime, on the caller's own task, as a
    /// bare server would (the guest yields at every tick; dropping the call stops
    /// it). Capacity and the deadline work as for calls sent over the protocol.
    async fn run_local(
        &self,
        worker: &Worker,
        runtime: &Runtime,
        module: &Prepared,
        hosted: &HostedCall,
        input: Bytes,
        calls: Option<Arc<dyn NestedCalls>>,
    ) -> Answer {
        let _slot = LocalCall {
            worker,
            freed: &self.freed,
        };
        let mut request = CallRequest::hosted(hosted, input);
        if let Some(calls) = calls {
            request = request.with_calls(calls);
        }
        let done = runtime.call(module, request).await;
        Answer {
            worker: worker.name.clone(),
            result: done.output,
            stderr_tail: String::from_utf8_lossy(&done.stderr_tail).into_owned(),
        }
    }

    async fn acquire(
        &self,
        function: &FunctionRef,
        target: &Target,
        requires: &BTreeMap<String, String>,
        deadline: Instant,
        eligible: Eligible<'_>,
        nested: bool,
    ) -> Result<Arc<Worker>, ApiError> {
        // The common case, a worker with room, registers no waiter.
        if let Some(w) = self.try_acquire(function, target, requires, eligible, nested)? {
            return Ok(w);
        }
        let waiting = self.freed.waiting();
        loop {
            // Registered before looking again, so a slot freed in between is seen.
            let mut freed = pin!(waiting.notified());
            freed.as_mut().enable();
            if let Some(w) = self.try_acquire(function, target, requires, eligible, nested)? {
                return Ok(w);
            }
            if timeout_at(deadline, freed).await.is_err() {
                return Err(ApiError::new(
                    ErrorCode::NoWorker,
                    format!(
                        "every worker able to run {function} stayed busy until the call's deadline"
                    ),
                ));
            }
        }
    }

    /// A worker with a slot reserved for the call, `None` while all that suit it are
    /// busy, or why none can take it.
    fn try_acquire(
        &self,
        function: &FunctionRef,
        target: &Target,
        requires: &BTreeMap<String, String>,
        eligible: Eligible<'_>,
        nested: bool,
    ) -> Result<Option<Arc<Worker>>, ApiError> {
        match self.pick(target, requires, eligible, nested) {
            Pick::Worker(w) => Ok(Some(w)),
            Pick::Busy => Ok(None),
            Pick::NoneConnected => Err(no_worker(function, target, requires)),
            Pick::AllFailed(errors) => Err(ApiError::new(
                ErrorCode::NoWorker,
                format!("no connected worker could load the code of {function}"),
            )
            .with_details(serde_json::json!({ "workers": errors }))),
        }
    }

    /// A worker with room for the call, preferring those with its code ready; among
    /// equals, the next in the function's own round robin.
    fn pick(
        &self,
        target: &Target,
        requires: &BTreeMap<String, String>,
        eligible: Eligible<'_>,
        nested: bool,
    ) -> Pick {
        let workers = self.workers.read().expect("workers lock");
        let (mut suitable, mut failed) = (0, Vec::new());
        // Of each kind with room, how many, and the first.
        let mut kinds = [(Fit::Ready, 0, None), (Fit::Cold, 0, None)];
        for w in workers.iter() {
            match w.fit(target, requires, eligible, nested) {
                Fit::Unsuitable => continue,
                Fit::Failed(error) => failed.push(WorkerFailure {
                    worker: w.name.clone(),
                    error,
                }),
                Fit::Full => suitable += 1,
                kind => {
                    suitable += 1;
                    let (_, count, first) = &mut kinds[usize::from(kind == Fit::Cold)];
                    *count += 1;
                    first.get_or_insert(w);
                }
            }
        }
        let turn = self.turns.next(target);
        for (fit, count, first) in kinds {
            let Some(first) = first else { continue };
            // The only one of its kind needs no second look at the workers.
            if count == 1 {
                if first.try_reserve(nested) {
                    return Pick::Worker(first.clone());
                }
                continue;
            }
            // This turn's worker first, then the others of its kind in order.
            let of_kind = || {
                workers
                    .iter()
                    .filter(|w| w.fit(target, requires, eligible, nested) == fit)
            };
            let skip = turn % count;
            for w in of_kind().skip(skip).chain(of_kind().take(skip)) {
                if w.try_reserve(nested) {
                    return Pick::Worker(w.clone());
                }
            }
        }
        match (suitable, failed.is_empty()) {
            (0, true) => Pick::NoneConnected,
            (0, false) => Pick::AllFailed(failed),
            _ => Pick::Busy,
        }
    }
}

/// What a worker can do for a call.
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    /// Not one that may or can run it.
    Unsuitable,
    /// Tried to load its code and failed.
    Failed(String),
    /// At capacity.
    Full,
    /// Has room and the code ready (remote workers always have theirs).
    Ready,
    /// Has room; fetches and compiles the code first.
    Cold,
}

impl Worker {
    fn fit(
        &self,
        target: &Target,
        requires: &BTreeMap<String, String>,
        eligible: Eligible<'_>,
        nested: bool,
    ) -> Fit {
        if !self.suits(target, eligible, requires) {
            return Fit::Unsuitable;
        }
        let state = match target {
            Target::Hosted(h) => self.code_state(&h.digest),
            Target::Remote { .. } => Some(CodeState::Ready),
        };
        match state {
            Some(CodeState::Failed(e)) => Fit::Failed(e),
            _ if self.busy(self.in_flight.load(Ordering::Acquire), nested) >= self.capacity => {
                Fit::Full
            }
            Some(CodeState::Ready) => Fit::Ready,
            _ => Fit::Cold,
        }
    }
}

/// Round-robin counters by what a call runs.
#[derive(Default)]
struct Turns {
    hosted: RwLock<HashMap<Digest, AtomicUsize>>,
    remote: RwLock<HashMap<FunctionRef, AtomicUsize>>,
}

impl Turns {
    fn next(&self, target: &Target) -> usize {
        match target {
            Target::Hosted(h) => Self::bump(&self.hosted, &h.digest),
            Target::Remote { function, .. } => Self::bump(&self.remote, function),
        }
    }

    fn bump<K: std::hash::Hash + Eq + Clone>(
        map: &RwLock<HashMap<K, AtomicUsize>>,
        key: &K,
    ) -> usize {
        if let Some(turn) = map.read().expect("turns lock").get(key) {
            return turn.fetch_add(1, Ordering::Relaxed);
        }
        let mut map = map.write().expect("turns lock");
        map.entry(key.clone())
            .or_default()
            .fetch_add(1, Ordering::Relaxed)
    }
}

enum Pick {
    Worker(Arc<Worker>),
    NoneConnected,
    AllFailed(Vec<WorkerFailure>),
    Busy,
}

/// Wakes the calls waiting for capacity. Every waiting call is woken: each waits for
/// its own set of suitable workers, and waking only one could leave a freed slot idle
/// while a call for that worker sleeps. Freeing a slot ends every call and almost
/// never finds a waiter, so it takes `Notify`'s lock only when one is counted.
#[derive(Default)]
struct Freed {
    notify: Notify,
    waiting: AtomicUsize,
}

impl Freed {
    /// After capacity was freed (or a worker joined).
    fn signal(&self) {
        // Paired with the fence in `waiting`: either this sees the waiter counted, or
        // the waiter's next look at the workers (after its fence) sees the free slot.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Counts a call as waiting until the guard drops. Only a counted call can wait
    /// for a signal, and it must look for capacity again after enabling each wait.
    fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Waiting(self)
    }
}

struct Waiting<'a>(&'a Freed);

impl Waiting<'_> {
    /// The next signal; enable it before looking for capacity again.
    fn notified(&self) -> Notified<'_> {
        self.0.notify.notified()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Abandons a call whose caller went away or whose deadline passed: the worker is
/// told to stop and the capacity is released.
struct CancelOnDrop<'a> {
    worker: &'a Worker,
    call: CallId,
    freed: &'a Freed,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.worker.take_call(self.call).is_some() {
            let _ = self.worker.tx.send(ServerMsg::Cancel { call: self.call });
            self.freed.signal();
        }
    }
}

/// A call's slot on its worker, lent to its nested calls while it waits for them.
struct Lent {
    worker: Arc<Worker>,
    freed: Arc<Freed>,
}

impl Slot for Lent {
    fn lend(&self) {
        self.worker.lent.fetch_add(1, Ordering::AcqRel);
        self.freed.signal();
    }

    fn reclaim(&self) {
        self.worker.lent.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A call's entry in its worker's `nodes`, for as long as the call runs.
struct NodeOf<'a> {
    worker: &'a Worker,
    call: CallId,
}

impl<'a> NodeOf<'a> {
    fn new(worker: &'a Worker, call: CallId, node: Arc<Node>) -> Self {
        worker.nodes.lock().expect("nodes lock").insert(call, node);
        Self { worker, call }
    }
}

impl Drop for NodeOf<'_> {
    fn drop(&mut self) {
        self.worker
            .nodes
            .lock()
            .expect("nodes lock")
            .remove(&self.call);
    }
}

/// Runs a nested call that a running call's guest made (`nested_call`), to its
/// answer: the server's call path.
pub type NestedRunner = Arc<
    dyn Fn(
            Arc<Node>,
            FunctionRef,
            Bytes,
        ) -> futures_util::future::BoxFuture<'static, Result<Bytes, ApiError>>
        + Send
        + Sync,
>;

/// Makes the nested calls of a guest run by [`Hub::run_local`]: each on a task of
/// its own (not on the guest's stack), stopped if the guest stops waiting.
struct LocalCalls {
    node: Arc<Node>,
    run: NestedRunner,
}

impl NestedCalls for LocalCalls {
    fn call(
        &self,
        function: String,
        input: Bytes,
    ) -> futures_util::future::BoxFuture<'static, Result<Bytes, ApiError>> {
        let (node, run) = (self.node.clone(), self.run.clone());
        Box::pin(async move {
            let function = FunctionRef::callee(&function)?;
            let task =
                tokio_util::task::AbortOnDropHandle::new(tokio::spawn(run(node, function, input)));
            task.await.unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::Internal,
                    "a nested call's task ended without an answer",
                ))
            })
        })
    }
}

/// Ends a call run by [`Hub::run_local`], finished or abandoned: the capacity is
/// released.
struct LocalCall<'a> {
    worker: &'a Worker,
    freed: &'a Freed,
}

impl Drop for LocalCall<'_> {
    fn drop(&mut self) {
        self.worker.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.freed.signal();
    }
}

/// The answer when no connected worker suits a call.
pub fn no_worker(
    function: &FunctionRef,
    target: &Target,
    requires: &BTreeMap<String, String>,
) -> ApiError {
    let how = match target {
        Target::Hosted(_) => "start one with `swb worker`",
        Target::Remote { .. } => "its owner must start a worker that serves it (`swb serve`)",
    };
    let labels = if requires.is_empty() {
        String::new()
    } else {
        format!(" with labels {requires:?}")
    };
    ApiError::new(
        ErrorCode::NoWorker,
        format!("no connected worker{labels} can run {function}: {how}"),
    )
}

/// Ends a worker session with `refused`, telling the worker why.
pub(crate) fn refuse(tx: &ToWorker, error: ApiError) {
    tracing::warn!(%error, "refusing worker");
    let _ = tx.send(ServerMsg::Refused { error });
}

fn compile_report(targets: &[Arc<Worker>], digest: &Digest) -> CompileReport {
    let mut report = CompileReport::default();
    for w in targets.iter().filter(|w| w.alive.load(Ordering::Acquire)) {
        match w.code_state(digest) {
            Some(CodeState::Ready) => report.compiled += 1,
            Some(CodeState::Failed(error)) => report.failed.push(WorkerFailure {
                worker: w.name.clone(),
                error,
            }),
            Some(CodeState::Pending) | None => report.pending += 1,
        }
    }
    report
}

#[cfg(test)]
mod tests {
    //! Scheduling and session rules, with workers played by the test over the same
    //! channels the in-process worker uses.
    use super::*;
    use swb_api::protocol::CallLimits;
    use swb_store::SqliteStore;

    struct FakeWorker {
        to_server: mpsc::Sender<WorkerMsg>,
        from_server: mpsc::UnboundedReceiver<ServerMsg>,
    }

    impl FakeWorker {
        async fn join(hub: &Arc<Hub>, name: &str, capacity: u32, cached: Vec<Digest>) -> Self {
            Self::join_labelled(hub, name, BTreeMap::new(), capacity, cached).await
        }

        async fn join_labelled(
            hub: &Arc<Hub>,
            name: &str,
            labels: BTreeMap<String, String>,
            capacity: u32,
            cached: Vec<Digest>,
        ) -> Self {
            let (to_worker, from_server) = mpsc::unbounded_channel();
            let (to_server, from_worker) = mpsc::channel(16);
            let session = hub.clone();
            let hello = Hello {
                protocol: 1,
                name: name.into(),
                labels,
                capacity,
                runtimes: vec![WASM.into()],
                cached,
                functions: vec![],
            };
            tokio::spawn(async move {
                session
                    .run_session(None, hello, to_worker, from_channel(from_worker), None)
                    .await
            });
            let mut w = Self {
                to_server,
                from_server,
            };
            match w.from_server.recv().await.unwrap() {
                ServerMsg::Welcome { .. } | ServerMsg::Refused { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
            w
        }

        /// Receives the next invoke and answers it with `output`.
        async fn answer(&mut self, output: &'static str) {
            loop {
                if let ServerMsg::Invoke { call, .. } = self.from_server.recv().await.unwrap() {
                    self.to_server
                        .send(WorkerMsg::Done {
                            call,
                            error: None,
                            stderr_tail: String::new(),
                            duration_us: 1,
                            output: Bytes::from_static(output.as_bytes()),
                        })
                        .await
                        .unwrap();
                    return;
                }
            }
        }
    }

    async fn hub() -> (Arc<Hub>, tempfile::TempDir) {
        hub_beating(Duration::from_secs(5)).await
    }

    /// A hub that expects a heartbeat from its workers every `beat`.
    async fn hub_beating(beat: Duration) -> (Arc<Hub>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        (
            Arc::new(Hub::new(
                Arc::new(store),
                beat,
                Arc::new(Trees::new(Default::default())),
            )),
            dir,
        )
    }

    fn none() -> &'static BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        &NONE
    }

    fn hosted(digest: Digest) -> Target {
        Target::Hosted(Arc::new(HostedCall {
            digest,
            args: vec![],
            env: vec![],
            limits: CallLimits {
                timeout_ms: 1000,
                memory_mb: 16,
                stdout_bytes: 1024,
                stderr_bytes: 1024,
            },
            calls: false,
            secrets: Default::default(),
        }))
    }

    /// A call of module `d`: no labels, a near deadline, any worker.
    async fn call(hub: &Hub, d: Digest) -> Result<Answer, ApiError> {
        hub.call(
            function(),
            hosted(d),
            none(),
            Bytes::new(),
            soon(),
            &any,
            Hop::default(),
        )
        .await
    }

    fn any(_: Option<&Caller>) -> bool {
        true
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn function() -> &'static FunctionRef {
        static F: std::sync::LazyLock<FunctionRef> =
            std::sync::LazyLock::new(|| "admin/f".parse().unwrap());
        &F
    }

    #[tokio::test]
    async fn a_worker_silent_for_three_heartbeats_is_dropped() {
        let beat = Duration::from_millis(200);
        let (hub, _dir) = hub_beating(beat).await;
        let start = Instant::now();
        let _silent = FakeWorker::join(&hub, "silent", 1, vec![]).await;
        let chatty = FakeWorker::join(&hub, "chatty", 1, vec![]).await;
        let heartbeats = tokio::spawn(async move {
            let heartbeat = || WorkerMsg::Heartbeat {
                in_flight: 0,
                code_cache: CacheStats::default(),
            };
            loop {
                tokio::time::sleep(beat / 4).await;
                if chatty.to_server.send(heartbeat()).await.is_err() {
                    return;
                }
            }
        });
        let listed =
            || -> Vec<String> { hub.workers(|_| true).into_iter().map(|w| w.name).collect() };
        while listed().contains(&"silent".to_string()) {
            assert!(
                start.elapsed() < beat * 20,
                "the silent worker is still listed"
            );
            tokio::time::sleep(beat / 20).await;
        }
        // Never before three heartbeats of silence.
        let gone = start.elapsed();
        assert!(
            gone >= beat * 3,
            "dropped after {gone:?}, heartbeat {beat:?}"
        );
        assert_eq!(listed(), ["chatty"], "a worker that heartbeats stays");
        heartbeats.abort();
    }

    #[tokio::test]
    async fn no_worker_names_the_function() {
        let (hub, _dir) = hub().await;
        let e = hub
            .call(
                function(),
                hosted(Digest::of(b"m")),
                none(),
                Bytes::new(),
                soon(),
                &any,
                Hop::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NoWorker);
        assert!(e.message.contains("admin/f"));
    }

    #[tokio::test]
    async fn workers_with_the_code_ready_are_preferred() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut cold = FakeWorker::join(&hub, "cold", 4, vec![]).await;
        let mut warm = FakeWorker::join(&hub, "warm", 4, vec![d]).await;
        for _ in 0..4 {
            let call = hub.call(
                function(),
                hosted(d),
                none(),
                Bytes::new(),
                soon(),
                &any,
                Hop::default(),
            );
            let (answer, ()) = tokio::join!(call, warm.answer("ok"));
            assert_eq!(answer.unwrap().worker, "warm");
        }
        assert!(
            cold.from_server.try_recv().is_err(),
            "the cold worker got nothing"
        );
    }

    #[tokio::test]
    async fn round_robin_spreads_calls_when_no_worker_has_the_code() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut a = FakeWorker::join(&hub, "a", 4, vec![]).await;
        let mut b = FakeWorker::join(&hub, "b", 4, vec![]).await;
        let two_calls = async {
            tokio::join!(
                hub.call(
                    function(),
                    hosted(d),
                    none(),
                    Bytes::new(),
                    soon(),
                    &any,
                    Hop::default()
                ),
                hub.call(
                    function(),
                    hosted(d),
                    none(),
                    Bytes::new(),
                    soon(),
                    &any,
                    Hop::default()
                ),
            )
        };
        // Each worker must receive one of the two calls for both to be answered.
        let ((r1, r2), (), ()) = tokio::join!(two_calls, a.answer("a"), b.answer("b"));
        let mut names = [r1.unwrap().worker, r2.unwrap().worker];
        names.sort();
        assert_eq!(names, ["a".to_string(), "b".to_string()]);
    }

    #[tokio::test]
    async fn a_busy_worker_makes_calls_wait_until_their_deadline() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut w = FakeWorker::join(&hub, "w", 1, vec![d]).await;
        let first = {
            let hub = hub.clone();
            tokio::spawn(async move { call(&hub, d).await })
        };
        // The first call occupies the only slot…
        let invoke = w.from_server.recv().await.unwrap();
        let ServerMsg::Invoke { call, .. } = invoke else {
            panic!("expected an invoke, got {invoke:?}")
        };
        // …so a second call with a short deadline gives up with no_worker.
        let deadline = Instant::now() + Duration::from_millis(50);
        let e = hub
            .call(
                function(),
                hosted(d),
                none(),
                Bytes::new(),
                deadline,
                &any,
                Hop::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NoWorker);
        assert!(e.message.contains("busy"), "{}", e.message);
        w.to_server
            .send(WorkerMsg::Done {
                call,
                error: None,
                stderr_tail: String::new(),
                duration_us: 1,
                output: Bytes::from_static(b"done"),
            })
            .await
            .unwrap();
        assert_eq!(&first.await.unwrap().unwrap().result.unwrap()[..], b"done");
    }

    #[tokio::test]
    async fn a_freed_slot_reaches_a_call_waiting_for_that_worker() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let zone = |z: &str| BTreeMap::from([("zone".to_string(), z.to_string())]);
        let (in_a, in_b) = (zone("a"), zone("b"));
        let mut a = FakeWorker::join_labelled(&hub, "a", zone("a"), 1, vec![d]).await;
        let _b = FakeWorker::join_labelled(&hub, "b", zone("b"), 1, vec![d]).await;
        let later = Instant::now() + Duration::from_secs(30);
        let call = |requires: BTreeMap<String, String>| {
            let hub = hub.clone();
            tokio::spawn(async move {
                hub.call(
                    function(),
                    hosted(d),
                    &requires,
                    Bytes::new(),
                    later,
                    &any,
                    Hop::default(),
                )
                .await
            })
        };
        // Both workers busy; then a call for b waits, then one for a.
        let on_a = call(in_a.clone());
        let _on_b = call(in_b.clone());
        tokio::task::yield_now().await;
        let _waits_for_b = call(in_b);
        tokio::task::yield_now().await;
        let waits_for_a = call(in_a);
        tokio::task::yield_now().await;
        // a finishes its call: its slot must go to the call waiting for a, although
        // the call waiting for b started waiting first.
        a.answer("first").await;
        assert_eq!(
            on_a.await.unwrap().unwrap().result.unwrap(),
            Bytes::from_static(b"first")
        );
        let second = timeout(Duration::from_secs(5), a.answer("second")).await;
        assert!(second.is_ok(), "the call waiting for a was not woken");
        assert_eq!(
            waits_for_a.await.unwrap().unwrap().result.unwrap(),
            Bytes::from_static(b"second")
        );
    }

    #[tokio::test]
    async fn a_worker_joining_takes_a_call_waiting_for_capacity() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut busy = FakeWorker::join(&hub, "busy", 1, vec![d]).await;
        let later = Instant::now() + Duration::from_secs(30);
        let call = || {
            let hub = hub.clone();
            tokio::spawn(async move {
                hub.call(
                    function(),
                    hosted(d),
                    none(),
                    Bytes::new(),
                    later,
                    &any,
                    Hop::default(),
                )
                .await
            })
        };
        let _first = call();
        assert!(matches!(
            busy.from_server.recv().await,
            Some(ServerMsg::Invoke { .. })
        ));
        let waiting = call();
        tokio::task::yield_now().await;
        let mut joined = FakeWorker::join(&hub, "joined", 1, vec![d]).await;
        let sent = timeout(Duration::from_secs(5), joined.answer("to the newcomer")).await;
        assert!(sent.is_ok(), "the waiting call was not woken by the join");
        let answer = waiting.await.unwrap().unwrap();
        assert_eq!(answer.worker, "joined");
        assert_eq!(
            answer.result.unwrap(),
            Bytes::from_static(b"to the newcomer")
        );
    }

    #[tokio::test]
    async fn a_session_ending_fails_its_calls_with_worker_lost() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut w = FakeWorker::join(&hub, "w", 2, vec![d]).await;
        let call = {
            let hub = hub.clone();
            tokio::spawn(async move { call(&hub, d).await })
        };
        assert!(matches!(
            w.from_server.recv().await,
            Some(ServerMsg::Invoke { .. })
        ));
        drop(w);
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.result.unwrap_err().code, ErrorCode::WorkerLost);
        assert!(hub.workers(|_| true).is_empty());
    }

    #[tokio::test]
    async fn a_worker_whose_socket_cannot_be_written_gets_no_calls_and_is_removed() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let broken = FakeWorker::join(&hub, "broken", 4, vec![d]).await;
        let mut fine = FakeWorker::join(&hub, "fine", 4, vec![d]).await;
        // The writer side is gone (as when writing to a killed worker fails) while the
        // read side has not yet seen the end of the socket.
        let FakeWorker {
            to_server: _still_open,
            from_server,
        } = broken;
        drop(from_server);
        for _ in 0..4 {
            let call = hub.call(
                function(),
                hosted(d),
                none(),
                Bytes::new(),
                soon(),
                &any,
                Hop::default(),
            );
            let (answer, ()) = tokio::join!(call, fine.answer("ok"));
            assert_eq!(answer.unwrap().worker, "fine");
        }
        // Its session ends without waiting for the read side or the heartbeat.
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.workers(|_| true).len() != 1 {
            assert!(
                Instant::now() < deadline,
                "the broken session was not removed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_worker_failing_to_load_code_is_skipped_and_reported() {
        let (hub, _dir) = hub().await;
        let d = Digest::of(b"m");
        let mut w = FakeWorker::join(&hub, "w", 2, vec![]).await;
        let push = hub.push_code(d, Bytes::from_static(b"wasm"), Duration::from_secs(5), &any);
        let worker_side = async {
            assert!(matches!(
                w.from_server.recv().await,
                Some(ServerMsg::Code { .. })
            ));
            w.to_server
                .send(WorkerMsg::Compiled {
                    digest: d,
                    error: Some("compile failed: bad".into()),
                })
                .await
                .unwrap();
        };
        let (report, ()) = tokio::join!(push, worker_side);
        assert_eq!((report.compiled, report.pending), (0, 0));
        assert_eq!(report.failed[0].error, "compile failed: bad");
        assert_eq!(
            hub.code_status(&d, &BTreeMap::new(), &any)[0].status,
            WorkerCodeStatus::Failed
        );
        let e = call(&hub, d).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NoWorker);
        assert_eq!(e.details["workers"][0]["worker"], "w");
    }
}
