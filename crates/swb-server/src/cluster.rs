//! Cluster mode: replicas on one Postgres database, joined by NATS.
//!
//! Replicas know nothing of each other but the database and the NATS subjects of
//! their cluster (`swb.<cluster id>.…`, the id stored in the database):
//!
//! - **Calls.** A replica whose workers can run something subscribes, in the queue
//!   group `swb`, to the subject of what they run: `…call.hosted` when it has a Wasm
//!   worker, `…call.fn.<ns>.<name>` per remote function its workers serve. A call
//!   entering a replica with no suitable worker of its own is sent as a NATS request
//!   to that subject; NATS picks one subscribed replica, which runs the call on its
//!   hub and replies. No subscriber means no worker anywhere (`no_worker`). A
//!   caller that goes away before the answer (a client gone, a job cancelled)
//!   publishes the call's id on `…cancel`, and the replica running it stops it.
//! - **Changes.** Every change that other replicas cache (a function's versions,
//!   namespaces and shares, revoked tokens, deleted users, cancelled and ended jobs)
//!   is applied locally and published on `…changes`; the others apply it on receipt.
//!   After a reconnection to NATS, when changes may have been missed, a replica drops
//!   its caches.
//! - **Workers.** Listing workers asks every replica on `…workers` and gathers the
//!   answers that arrive within a short window.

use crate::App;
use crate::api::eligible_for;
use crate::hub::{ANSWER_GRACE, Answer, Target, no_worker};
use crate::tree::Hop;
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use swb_api::protocol::Frame;
use swb_api::{ApiError, Digest, ErrorCode, FunctionRef, Namespace, WorkerInfo};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The queue group every replica joins, so that NATS hands each call to one of them.
const QUEUE: &str = "swb";

/// A change other replicas must apply to their caches at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A function was deployed, rolled back, published by a worker or deleted.
    Function { function: FunctionRef },
    /// A function's active code changed (deploy, rollback): every replica pushes it
    /// to its workers that may run the function, so that they compile it ahead of
    /// the first call.
    Code {
        function: FunctionRef,
        digest: Digest,
    },
    /// Users, namespaces or shares changed.
    Acl,
    /// Tokens stopped being valid: forget them and end the sessions they opened.
    TokensRevoked { tokens: Vec<String> },
    /// A user was deleted, with their tokens, namespaces and functions.
    UserDeleted { user: String, tokens: Vec<String> },
    /// A job was cancelled: stop it where it runs, wake those waiting for it.
    JobCancelled { job: String },
    /// Jobs ended: wake those waiting for them.
    JobsEnded { jobs: Vec<String> },
    /// A namespace's secrets changed: its routes open them again.
    Secrets { namespace: Namespace },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    change: Change,
}

/// A call carried to the replica whose worker runs it.
#[derive(Serialize, Deserialize)]
struct Forward {
    /// Names the call in a cancellation (`…cancel`) should its caller go away.
    #[serde(default)]
    id: String,
    function: FunctionRef,
    /// The call, without its secrets.
    target: Target,
    /// The version whose secrets the replica running the call opens itself, when
    /// it is granted some (secrets never travel between replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets_of: Option<u32>,
    requires: BTreeMap<String, String>,
    timeout_ms: u64,
    /// The call's tree (whether nested; where, if it may call further).
    #[serde(default)]
    hop: Hop,
    #[serde(skip)]
    input: Bytes,
}

/// Its answer.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    worker: Option<String>,
    error: Option<ApiError>,
    stderr_tail: String,
    #[serde(skip)]
    output: Bytes,
}

impl Frame for Forward {
    fn payload(&self) -> Option<&Bytes> {
        Some(&self.input)
    }
    fn payload_mut(&mut self) -> Option<&mut Bytes> {
        Some(&mut self.input)
    }
}

impl Frame for Forwarded {
    fn payload(&self) -> Option<&Bytes> {
        Some(&self.output)
    }
    fn payload_mut(&mut self) -> Option<&mut Bytes> {
        Some(&mut self.output)
    }
}

impl From<Result<Answer, ApiError>> for Forwarded {
    fn from(answer: Result<Answer, ApiError>) -> Self {
        match answer {
            Ok(a) => {
                let (output, error) = match a.result {
                    Ok(output) => (output, None),
                    Err(e) => (Bytes::new(), Some(e)),
                };
                Self {
                    worker: Some(a.worker),
                    error,
                    stderr_tail: a.stderr_tail,
                    output,
                }
            }
            Err(e) => Self {
                worker: None,
                error: Some(e),
                stderr_tail: String::new(),
                output: Bytes::new(),
            },
        }
    }
}

impl From<Forwarded> for Result<Answer, ApiError> {
    fn from(f: Forwarded) -> Self {
        let Some(worker) = f.worker else {
            return Err(f.error.unwrap_or_else(|| {
                ApiError::new(ErrorCode::Internal, "an empty answer from a replica")
            }));
        };
        Ok(Answer {
            worker,
            result: f.error.map_or(Ok(f.output), Err),
            stderr_tail: f.stderr_tail,
        })
    }
}

/// This replica's link to the others.
pub struct Cluster {
    nats: Client,
    /// `swb.<cluster id>`.
    prefix: String,
    replica: String,
    /// This replica's name, shown with its workers.
    name: String,
    /// The calls other replicas carried here that run now, by id: a message on
    /// `…cancel` stops one.
    forwarded: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

/// Tells the replica running a carried call to stop it, if dropped before the answer
/// came (the caller went away, or its job was cancelled).
struct CancelOnDrop<'a> {
    cluster: &'a Cluster,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let nats = self.cluster.nats.clone();
        let subject = format!("{}.cancel", self.cluster.prefix);
        let id = std::mem::take(&mut self.id);
        tokio::spawn(async move {
            if let Err(e) = nats.publish(subject, id.into()).await {
                tracing::warn!(error = %e, "could not cancel a call carried to a replica");
            }
        });
    }
}

/// What `Cluster::connect` hands to `spawn`.
pub struct Links {
    changes: Subscriber,
    workers: Subscriber,
    cancels: Subscriber,
    reconnected: mpsc::UnboundedReceiver<()>,
}

/// Which workers a listing asks for: everyone's, or those one user connected.
#[derive(Serialize, Deserialize)]
struct WorkersQuery {
    user: Option<String>,
    /// The asking replica, which lists its own workers itself.
    from: String,
}

/// How long a listing waits for the first other replica's answer, then for each
/// next one (a busy replica answers in tens of milliseconds: 50 ms missed the
/// workers of replicas under load).
const FIRST_ANSWER: Duration = Duration::from_millis(500);
const NEXT_ANSWER: Duration = Duration::from_millis(250);

impl Cluster {
    /// Connects to NATS and subscribes to the cluster's changes (before the server
    /// serves, so that none is missed).
    pub async fn connect(url: &str, cluster_id: &str, name: &str) -> anyhow::Result<(Self, Links)> {
        let replica = uuid::Uuid::now_v7().to_string();
        let (tx, reconnected) = mpsc::unbounded_channel();
        let nats = ConnectOptions::new()
            .name(format!("swb replica {name} {replica}"))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    match event {
                        Event::Connected => {
                            let _ = tx.send(());
                        }
                        Event::Disconnected => tracing::warn!("lost the connection to NATS"),
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))?;
        let prefix = format!("swb.{cluster_id}");
        let subscribe = |subject: String| {
            let nats = nats.clone();
            async move {
                nats.subscribe(subject)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot subscribe to NATS: {e}"))
            }
        };
        let changes = subscribe(format!("{prefix}.changes")).await?;
        let workers = subscribe(format!("{prefix}.workers")).await?;
        let cancels = subscribe(format!("{prefix}.cancel")).await?;
        tracing::info!(%replica, name, cluster = cluster_id, "joined the cluster over NATS");
        let cluster = Self {
            nats,
            prefix,
            replica,
            name: name.to_owned(),
            forwarded: Mutex::new(HashMap::new()),
        };
        Ok((
            cluster,
            Links {
                changes,
                workers,
                cancels,
                reconnected,
            },
        ))
    }

    fn subject(&self, target: &Target) -> String {
        match target {
            Target::Hosted(_) => format!("{}.call.hosted", self.prefix),
            Target::Remote { function, .. } => self.function_subject(function),
        }
    }

    fn function_subject(&self, function: &FunctionRef) -> String {
        // Namespaces and names are [a-z0-9_-]: valid subject tokens.
        format!(
            "{}.call.fn.{}.{}",
            self.prefix,
            function.namespace(),
            function.name()
        )
    }

    async fn publish(&self, change: &Change) {
        let envelope = Envelope {
            origin: self.replica.clone(),
            change: change.clone(),
        };
        let payload = serde_json::to_vec(&envelope).expect("changes serialize");
        if let Err(e) = self
            .nats
            .publish(format!("{}.changes", self.prefix), payload.into())
            .await
        {
            tracing::error!(error = %e, ?change, "could not tell the other replicas of a change");
        }
    }

    /// The workers of the other replicas (each answers for its own), as many as
    /// answer in time; none if NATS would not carry the question.
    pub async fn workers(&self, user: Option<&str>) -> Vec<WorkerInfo> {
        let mut all = Vec::new();
        let inbox = self.nats.new_inbox();
        let Ok(mut answers) = self.nats.subscribe(inbox.clone()).await else {
            return all;
        };
        let query = serde_json::to_vec(&WorkersQuery {
            user: user.map(str::to_owned),
            from: self.replica.clone(),
        })
        .expect("queries serialize");
        let asked = self
            .nats
            .publish_with_reply(format!("{}.workers", self.prefix), inbox, query.into())
            .await;
        if asked.is_err() {
            return all;
        }
        let mut wait = FIRST_ANSWER;
        while let Ok(Some(msg)) = tokio::time::timeout(wait, answers.next()).await {
            match serde_json::from_slice::<Vec<WorkerInfo>>(&msg.payload) {
                Ok(list) => all.extend(list),
                Err(e) => tracing::warn!(error = %e, "undecodable worker list from a replica"),
            }
            wait = NEXT_ANSWER;
        }
        all
    }

    /// This replica's own workers, marked as its.
    pub fn own(&self, mut workers: Vec<WorkerInfo>) -> Vec<WorkerInfo> {
        for w in &mut workers {
            w.replica = Some(self.name.clone());
        }
        workers
    }

    /// Runs a call on another replica's worker.
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        function: &FunctionRef,
        version: u32,
        target: &Target,
        requires: &BTreeMap<String, String>,
        input: Bytes,
        deadline: Instant,
        hop: Hop,
    ) -> Result<Answer, ApiError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let id = uuid::Uuid::now_v7().to_string();
        let frame = Forward {
            id: id.clone(),
            function: function.clone(),
            target: target.without_secrets(),
            secrets_of: (!target.secrets().is_empty()).then_some(version),
            requires: requires.clone(),
            timeout_ms: remaining.as_millis() as u64,
            hop,
            input,
        }
        .encode();
        let max = self.nats.server_info().max_payload;
        if frame.len() > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "this call ({} bytes) is larger than replicas can pass each other \
                     ({max} bytes, the NATS max_payload); send it to a replica whose \
                     workers run {function}",
                    frame.len()
                ),
            ));
        }
        // The other replica may wait for a free worker until `deadline`, then gives
        // the call its whole timeout from when a worker takes it (as `Hub::call`).
        let run = Duration::from_millis(target.limits().timeout_ms);
        let request = async_nats::Request::new()
            .payload(frame)
            .timeout(Some(remaining + run + ANSWER_GRACE));
        let mut cancel = CancelOnDrop {
            cluster: self,
            id,
            armed: true,
        };
        let reply = self.nats.send_request(self.subject(target), request).await;
        cancel.armed = false;
        let reply = reply.map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => no_worker(function, target, requires),
            // A live replica answers by then, with its own timeout if the call
            // ran too long: silence means it went away with the call.
            async_nats::RequestErrorKind::TimedOut => ApiError::new(
                ErrorCode::WorkerLost,
                format!(
                    "lost the replica running {function}: no answer by the call's \
                         deadline and grace"
                ),
            ),
            _ => ApiError::new(
                ErrorCode::WorkerLost,
                format!("lost the replica running {function}: {e}"),
            ),
        })?;
        match Forwarded::decode(reply.payload) {
            Ok(answer) => answer.into(),
            Err(e) => {
                tracing::error!(error = %e, "undecodable answer from a replica");
                Err(ApiError::new(
                    ErrorCode::Internal,
                    "an undecodable answer from a replica",
                ))
            }
        }
    }
}

/// Starts the replica's cluster tasks: applying others' changes, and offering this
/// replica's workers to the cluster.
pub fn spawn(app: Arc<App>, links: Links) {
    let Links {
        mut changes,
        mut workers,
        mut cancels,
        mut reconnected,
    } = links;
    let listener = app.clone();
    tokio::spawn(async move {
        let Some(cluster) = &listener.cluster else {
            return;
        };
        loop {
            tokio::select! {
                Some(msg) = changes.next() => {
                    match serde_json::from_slice::<Envelope>(&msg.payload) {
                        Ok(e) if e.origin == cluster.replica => {}
                        Ok(e) => {
                            if let Err(err) = listener.apply(&e.change).await {
                                tracing::error!(error = %err.message, change = ?e.change, "could not apply a change");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable change from NATS"),
                    }
                }
                // Answered on its own task: a listing does not wait behind changes.
                Some(msg) = workers.next() => {
                    let listener = listener.clone();
                    tokio::spawn(async move { listener.answer_workers(msg).await });
                }
                Some(msg) = cancels.next() => {
                    let id = String::from_utf8_lossy(&msg.payload);
                    let stop = cluster.forwarded.lock().expect("forwarded lock").remove(&*id);
                    if let Some(stop) = stop {
                        let _ = stop.send(());
                    }
                }
                Some(()) = reconnected.recv() => listener.forget_everything().await,
                else => return,
            }
        }
    });
    tokio::spawn(offer(app));
}

/// Keeps this replica subscribed to the subjects of what its workers run.
async fn offer(app: Arc<App>) {
    let Some(cluster) = &app.cluster else { return };
    let mut membership = app.hub.membership();
    let mut offered: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let offers = app.hub.offers();
        let mut wanted: Vec<String> = offers
            .functions
            .iter()
            .map(|f| cluster.function_subject(f))
            .collect();
        if offers.wasm {
            wanted.push(format!("{}.call.hosted", cluster.prefix));
        }
        // Dropping a subscription (its task) unsubscribes.
        offered.retain(|subject, task| {
            let keep = wanted.contains(subject);
            if !keep {
                task.abort();
            }
            keep
        });
        for subject in wanted {
            if offered.contains_key(&subject) {
                continue;
            }
            match cluster
                .nats
                .queue_subscribe(subject.clone(), QUEUE.into())
                .await
            {
                Ok(sub) => {
                    offered.insert(subject, tokio::spawn(serve_forwarded(app.clone(), sub)));
                }
                Err(e) => tracing::error!(error = %e, subject, "cannot offer calls over NATS"),
            }
        }
        if membership.changed().await.is_err() {
            return;
        }
    }
}

/// Runs calls other replicas send here, each on its own task, until it ends or its
/// caller cancels it.
async fn serve_forwarded(app: Arc<App>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        let app = app.clone();
        tokio::spawn(async move {
            let (Some(reply), Some(cluster)) = (msg.reply, &app.cluster) else {
                return;
            };
            let answer = match Forward::decode(msg.payload) {
                Ok(call) => 'run: {
                    let target = match call.secrets_of {
                        None => call.target,
                        Some(version) => {
                            match app.routes.get(&call.function, Some(version)).await {
                                Ok(route) => call.target.with_secrets_of(&route.target),
                                Err(e) => break 'run Err(e),
                            }
                        }
                    };
                    let (stop, stopped) = oneshot::channel();
                    let forwarded = || cluster.forwarded.lock().expect("forwarded lock");
                    forwarded().insert(call.id.clone(), stop);
                    let eligible = eligible_for(&app.acl, &call.function);
                    let deadline =
                        Instant::now() + std::time::Duration::from_millis(call.timeout_ms);
                    let run = app.hub.call(
                        &call.function,
                        target,
                        &call.requires,
                        call.input,
                        deadline,
                        &eligible,
                        call.hop,
                    );
                    let answer = tokio::select! {
                        answer = run => Some(answer),
                        // Dropping the call cancels it on its worker.
                        _ = stopped => None,
                    };
                    forwarded().remove(&call.id);
                    match answer {
                        Some(answer) => answer,
                        // Nobody waits for an answer.
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "undecodable call from a replica");
                    Err(ApiError::new(
                        ErrorCode::Internal,
                        "an undecodable call between replicas",
                    ))
                }
            };
            let frame = Forwarded::from(answer).encode();
            if let Err(e) = cluster.nats.publish(reply, frame).await {
                tracing::warn!(error = %e, "could not answer a replica's call");
            }
        });
    }
}

impl App {
    /// Applies a change here and tells the other replicas.
    pub(crate) async fn changed(&self, change: Change) -> Result<(), ApiError> {
        let applied = self.apply(&change).await;
        self.tell_others(&change).await;
        applied
    }

    /// Tells the other replicas of a change this replica carries out itself in its
    /// own way (a deploy pushes its code here and waits for the compile reports).
    pub(crate) async fn tell_others(&self, change: &Change) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(change).await;
        }
    }

    async fn apply(&self, change: &Change) -> Result<(), ApiError> {
        match change {
            Change::Function { function } => self.routes.invalidate(function),
            Change::Code { function, digest } => self.warm(function, *digest).await?,
            Change::Acl => self.acl.reload(self.store.as_ref()).await?,
            Change::TokensRevoked { tokens } => {
                for t in tokens {
                    self.auth.forget(t);
                }
                self.hub.close_sessions(|c| tokens.contains(&c.token_id));
            }
            Change::UserDeleted { user, tokens } => {
                for t in tokens {
                    self.auth.forget(t);
                }
                self.hub.close_sessions(|c| &c.user.id == user);
                self.routes.clear();
                self.acl.reload(self.store.as_ref()).await?;
            }
            Change::JobCancelled { job } => self.jobs.cancel_running(job),
            Change::JobsEnded { jobs } => self.jobs.notify_ended(jobs.iter().cloned()),
            Change::Secrets { namespace } => self.routes.invalidate_namespace(namespace),
        }
        Ok(())
    }

    /// Pushes a function's code to this replica's workers without waiting for them.
    async fn warm(&self, function: &FunctionRef, digest: Digest) -> Result<(), ApiError> {
        let Some(module) = self
            .store
            .artefact(&digest)
            .await
            .map_err(crate::error::store_error)?
        else {
            return Ok(());
        };
        let eligible = eligible_for(&self.acl, function);
        self.hub
            .push_code(digest, module, Duration::ZERO, &eligible)
            .await;
        Ok(())
    }

    /// Answers another replica's worker listing with this one's workers.
    async fn answer_workers(&self, msg: async_nats::Message) {
        let (Some(reply), Some(cluster)) = (msg.reply, &self.cluster) else {
            return;
        };
        let Ok(q) = serde_json::from_slice::<WorkersQuery>(&msg.payload) else {
            tracing::warn!("undecodable worker query from a replica");
            return;
        };
        if q.from == cluster.replica {
            return;
        }
        let list = cluster.own(self.hub.workers(|w| match &q.user {
            None => true,
            Some(user) => w.is_some_and(|c| &c.user.id == user),
        }));
        let payload = serde_json::to_vec(&list).expect("worker lists serialize");
        if let Err(e) = cluster.nats.publish(reply, payload.into()).await {
            tracing::warn!(error = %e, "could not answer a worker listing");
        }
    }

    /// After changes may have been missed: everything cached is read again.
    async fn forget_everything(&self) {
        self.routes.clear();
        self.auth.clear();
        if let Err(e) = self.acl.reload(self.store.as_ref()).await {
            tracing::error!(error = %e.message, "could not reload namespaces and shares");
        }
    }
}
