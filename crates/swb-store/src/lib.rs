//! Persistence behind one trait, [`Store`], with two backends: SQLite (the embedded
//! default) and Postgres (cluster mode). Both implement the trait with the same code
//! (`queries.rs`) and pass the same conformance tests. The store knows nothing of HTTP
//! or Wasm.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use bytes::Bytes;
use swb_api::{
    ApiError, AuditEvent, BlobInfo, Digest, FunctionKind, FunctionRef, FunctionSummary,
    InvocationRecord, Job, JobStatus, Namespace, Outcome, ProfileInfo, Role, VersionInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub namespace: Namespace,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub user_id: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: Option<i64>,
    /// The token this one was created with; it dies with its parent.
    pub parent_id: Option<String>,
}

/// A token with its owner, as authentication needs it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub user: User,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Whose artefacts someone may reach: those the user uploaded, and those pinned by a
/// version of a function in one of `namespaces`.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    pub user_id: &'a str,
    pub namespaces: &'a [Namespace],
}

/// A function's catalog entry (its versions are separate rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRow {
    pub function: FunctionRef,
    pub kind: FunctionKind,
    pub active_version: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A namespace and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: Namespace,
    pub owner_id: String,
    pub created_at: i64,
}

/// A grant to an e-mail address on a namespace (`function: None`) or one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub namespace: Namespace,
    pub function: Option<String>,
    /// Lower-case.
    pub email: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: i64,
}

/// A token as its owner may list it (never its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSummary {
    pub id: String,
    pub parent_id: Option<String>,
    pub scopes: Vec<String>,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A secret as stored: sealed by the server, never in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub namespace: Namespace,
    /// The function it belongs to; `None` for a namespace-wide secret.
    pub function: Option<String>,
    pub name: String,
    /// The server's sealed form of the value (nonce and ciphertext).
    pub sealed: Vec<u8>,
    pub updated_at: i64,
    pub updated_by: String,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("namespace", &self.namespace)
            .field("function", &self.function)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub owner_id: String,
    pub function: FunctionRef,
    pub version: Option<u32>,
    pub input: Option<Bytes>,
    pub input_blob: Option<Digest>,
    pub profile: Option<String>,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    pub timeout_ms: Option<u64>,
    pub created_at: i64,
    /// Whom the job's nested calls act for (opaque JSON, the server's).
    pub acting: Option<String>,
}

/// A job with what running it needs.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job: Job,
    pub owner_id: String,
    /// Whom the job's nested calls act for, as submitted.
    pub acting: Option<String>,
    pub input: Option<Bytes>,
    pub input_blob: Option<Digest>,
    pub profile: Option<String>,
    pub timeout_ms: Option<u64>,
    pub cancel_requested: bool,
}

/// How an attempt ended. Applied only if the job is still running that attempt.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Succeeded {
        result: Option<Bytes>,
        result_blob: Option<Digest>,
        stderr_tail: String,
    },
    Failed {
        error: ApiError,
        stderr_tail: String,
    },
    /// Failed, to be tried again from `run_after`.
    Retry {
        error: ApiError,
        stderr_tail: String,
        run_after: i64,
    },
    /// Could not start (e.g. no worker): back to the queue, the attempt not counted.
    Wait {
        reason: String,
        run_after: i64,
    },
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct JobFinish {
    pub id: String,
    pub attempt: u32,
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Only this owner's jobs; `None` means everyone's.
    pub owner_id: Option<String>,
    pub function: Option<FunctionRef>,
    pub status: Option<JobStatus>,
    /// Only jobs older than this id.
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct InvocationQuery {
    pub function: Option<FunctionRef>,
    /// Only invocations of functions in these namespaces; `None` means all.
    pub namespaces: Option<Vec<Namespace>>,
    pub outcome: Option<Outcome>,
    /// Only records with an id greater than this (for following new records).
    pub after: Option<String>,
    /// Only the calls this user (by e-mail) made, or that act for them.
    pub caller: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether other servers may use this database at the same time (replicas of a
    /// cluster). When not, a starting server may take back whatever was left running.
    fn shared(&self) -> bool;
    /// The value of a shared setting; the first caller's `init` becomes it.
    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String>;

    async fn count_users(&self) -> Result<u64>;
    /// Creates the user and their personal namespace. Fails with `Conflict` when the
    /// e-mail or namespace is taken.
    async fn create_user(&self, user: &User) -> Result<()>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Deletes the user, their tokens, the namespaces they own and the functions in
    /// them. `false` when there was no such user.
    async fn delete_user(&self, id: &str) -> Result<bool>;
    async fn create_token(&self, token: &NewToken) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<TokenRow>>;
    async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenSummary>>;
    /// Marks a live token of this user revoked, and every live token created with it
    /// (their children, and so on); returns the ids revoked, none when there is no
    /// such live token.
    async fn revoke_token(&self, user_id: &str, token_id: &str) -> Result<Vec<String>>;

    /// Fails with `Conflict` when the name is taken.
    async fn create_namespace(&self, ns: &NamespaceRow) -> Result<()>;
    async fn namespaces(&self) -> Result<Vec<NamespaceRow>>;
    /// Creates or replaces (the role) a share.
    async fn put_share(&self, share: &Share) -> Result<()>;
    /// `false` when there was no such share.
    async fn delete_share(
        &self,
        ns: &Namespace,
        function: Option<&str>,
        email: &str,
    ) -> Result<bool>;
    async fn shares(&self) -> Result<Vec<Share>>;

    /// Enqueues jobs; a job whose owner already used its idempotency key is not
    /// added, and the existing job's id and status are returned in its place.
    async fn submit_jobs(&self, jobs: &[NewJob]) -> Result<Vec<(String, JobStatus)>>;
    /// Claims up to `limit` runnable jobs (queued and due, or running with a lapsed
    /// lease): marks them running, counts the attempt, and leases them for
    /// `lease_ms`, which their holder renews while the attempt runs. A lapsed
    /// attempt is recorded as lost (`lease_expired`); on its last attempt the job
    /// fails instead of running again.
    async fn claim_jobs(&self, now: i64, limit: u32, lease_ms: u64) -> Result<Vec<JobRow>>;
    /// Extends the leases of the attempts this server runs (`(job, attempt)`) to
    /// `until`; returns the jobs whose attempt no longer holds them (cancelled, or
    /// claimed again after a lapse), whose runs should stop.
    async fn renew_leases(&self, held: &[(String, u32)], until: i64) -> Result<Vec<String>>;
    /// Records attempts' outcomes in one transaction; returns how many applied (an
    /// outcome for an attempt that no longer holds its job is ignored).
    async fn finish_jobs(&self, finishes: &[JobFinish]) -> Result<u64>;
    async fn job(&self, id: &str) -> Result<Option<JobRow>>;
    /// Newest first.
    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>>;
    /// Cancels a queued job at once, or flags a running one; returns the status after.
    async fn cancel_job(&self, id: &str) -> Result<Option<JobStatus>>;
    /// Lets every running job's lease lapse now (single-node start-up: no other
    /// server can be running them), so that the next claim records the lost attempt
    /// and runs the job again.
    async fn expire_leases(&self) -> Result<u64>;
    /// Removes jobs that ended before `before`.
    async fn prune_jobs(&self, before: i64) -> Result<u64>;

    async fn put_blob(&self, owner_id: &str, info: &BlobInfo) -> Result<()>;
    async fn blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<BlobInfo>>;
    async fn blobs(&self, owner_id: &str) -> Result<Vec<BlobInfo>>;
    /// Drops the owner's hold; returns whether anyone still holds the blob, or
    /// `None` when the owner did not hold it.
    async fn delete_blob(&self, owner_id: &str, digest: &Digest) -> Result<Option<bool>>;

    async fn put_profile(&self, function: &FunctionRef, profile: &ProfileInfo) -> Result<()>;
    async fn profile(&self, function: &FunctionRef, name: &str) -> Result<Option<ProfileInfo>>;
    async fn profiles(&self, function: &FunctionRef) -> Result<Vec<ProfileInfo>>;
    async fn delete_profile(&self, function: &FunctionRef, name: &str) -> Result<bool>;

    /// Sets a secret (replacing one of the same namespace, function and name).
    async fn put_secret(&self, secret: &SecretRow) -> Result<()>;
    /// Every secret of a namespace (its own and its functions'), by name.
    async fn secrets(&self, namespace: &Namespace) -> Result<Vec<SecretRow>>;
    async fn delete_secret(
        &self,
        namespace: &Namespace,
        function: Option<&str>,
        name: &str,
    ) -> Result<bool>;

    /// Sets the document `kind`/`key` (JSON text), replacing it.
    async fn put_document(&self, kind: &str, key: &str, value: &str) -> Result<()>;
    /// Creates the document `kind`/`key`; `Conflict` when it exists.
    async fn insert_document(&self, kind: &str, key: &str, value: &str) -> Result<()>;
    async fn document(&self, kind: &str, key: &str) -> Result<Option<String>>;
    /// The documents of a kind whose keys start with `prefix`, by key, at most `limit`.
    async fn documents(
        &self,
        kind: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>>;
    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool>;

    async fn record_audit(&self, event: &AuditEvent) -> Result<()>;
    /// Newest first; `namespaces: None` means all.
    async fn audit(&self, namespaces: Option<&[Namespace]>, limit: u32) -> Result<Vec<AuditEvent>>;

    /// Which of `digests` are missing for someone: not stored, or (with `reach`) not
    /// reachable by them. `None` reaches everything (an administrator).
    async fn missing_artefacts(
        &self,
        digests: &[Digest],
        reach: Option<&Reach<'_>>,
    ) -> Result<Vec<Digest>>;
    /// Stores an artefact and records that `uploader` holds its bytes; `false` when
    /// it was already stored.
    async fn put_artefact(&self, digest: &Digest, bytes: &[u8], uploader: &str) -> Result<bool>;
    async fn artefact(&self, digest: &Digest) -> Result<Option<Bytes>>;

    /// Appends a version (numbered one past the highest so far) and makes it active.
    /// `info.version` and `info.created_at` are assigned here.
    async fn create_version(
        &self,
        function: &FunctionRef,
        info: VersionInfo,
    ) -> Result<VersionInfo>;
    /// Like `create_version`, unless the active version already is `info` (number
    /// and time aside): then that one is returned and nothing is written. Atomic, so
    /// workers publishing one remote function at once create one version. Returns
    /// the active version and whether it is new.
    async fn publish_version(
        &self,
        function: &FunctionRef,
        info: VersionInfo,
    ) -> Result<(VersionInfo, bool)>;
    async fn function(&self, function: &FunctionRef) -> Result<Option<FunctionRow>>;
    async fn version(&self, function: &FunctionRef, version: u32) -> Result<Option<VersionInfo>>;
    async fn versions(&self, function: &FunctionRef) -> Result<Vec<VersionInfo>>;
    async fn list_functions(
        &self,
        namespaces: Option<&[Namespace]>,
    ) -> Result<Vec<FunctionSummary>>;
    /// `false` when the function or the version does not exist.
    async fn set_active_version(&self, function: &FunctionRef, version: u32) -> Result<bool>;
    /// `false` when the function does not exist.
    async fn delete_function(&self, function: &FunctionRef) -> Result<bool>;

    async fn record_invocations(&self, records: &[InvocationRecord]) -> Result<()>;
    /// Newest first.
    async fn invocations(&self, query: &InvocationQuery) -> Result<Vec<InvocationRecord>>;
    async fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>>;
    /// The records of a call tree: the root `root` and every nested call under it
    /// whose record id is at most `until` (a call tree's records are no newer than
    /// its root's end), oldest first, at most `limit`.
    async fn invocation_tree(
        &self,
        root: &str,
        until: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>>;
    /// Keeps the newest `keep` records, returns how many were removed.
    async fn prune_invocations(&self, keep: u64) -> Result<u64>;
}

#[cfg(test)]
mod conformance;
