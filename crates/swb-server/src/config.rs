use std::path::PathBuf;
use std::time::Duration;

/// Server settings; the CLI fills them from flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// How this server is named among replicas (`host:port`), shown with its workers.
    pub name: String,
    /// Holds the database (`swb.db`) and the bootstrap `admin.token`.
    pub data_dir: PathBuf,
    /// A Postgres database instead of `<data-dir>/swb.db` (cluster mode).
    pub database_url: Option<String>,
    /// NATS, joining this server to the other replicas on the same database.
    pub nats_url: Option<String>,
    /// Where blob bytes live (replicas must share it) [default: `<data-dir>/blobs`].
    pub blob_dir: Option<PathBuf>,
    /// The key secrets are sealed with (replicas must share it), created when
    /// missing [default: `<data-dir>/secrets.key`].
    pub secrets_key_file: Option<PathBuf>,
    /// Largest request body (artefacts, invoke inputs); a larger declared length is
    /// refused before the body is read.
    pub max_body_bytes: usize,
    /// Memory all request bodies being read or held may take at once.
    pub max_body_memory_bytes: u64,
    /// Timeouts, the connection cap and the drain period of the HTTP layer.
    pub http: crate::conn::HttpLimits,
    /// Invocation records kept; older ones are pruned.
    pub keep_invocations: u64,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub default_memory_mb: u32,
    pub max_memory_mb: u32,
    /// Per-call cap on a function's stdout (its output).
    pub stdout_bytes: u64,
    /// Per-call cap on the stderr kept as the invocation's log (its tail is kept).
    pub stderr_bytes: u64,
    /// Interval at which workers report their load.
    pub heartbeat: Duration,
    /// How long a deploy waits for connected workers to compile the new code.
    pub deploy_wait: Duration,
    /// Largest blob.
    pub max_blob_bytes: u64,
    /// Job results up to this size are stored inline; larger ones become blobs.
    pub job_result_inline_bytes: usize,
    /// Finished jobs are removed after this long.
    pub job_retention: Duration,
    /// A running job's lease (renewed every third of it while the attempt runs).
    pub job_lease: Duration,
    /// The bounds of call trees (functions calling functions).
    pub trees: crate::tree::TreeLimits,
    /// Serve HTTPS with this certificate and key (PEM) instead of HTTP.
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate (chain) and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            name: hostname(),
            data_dir,
            database_url: None,
            nats_url: None,
            blob_dir: None,
            secrets_key_file: None,
            max_body_bytes: 64 << 20,
            max_body_memory_bytes: 256 << 20,
            http: crate::conn::HttpLimits::new(),
            keep_invocations: 100_000,
            default_timeout_ms: 10_000,
            max_timeout_ms: 15 * 60 * 1000,
            default_memory_mb: 128,
            max_memory_mb: swb_runtime::MAX_MEMORY_MB,
            stdout_bytes: 8 << 20,
            stderr_bytes: 64 << 10,
            heartbeat: Duration::from_secs(5),
            deploy_wait: Duration::from_secs(30),
            max_blob_bytes: 4 << 30,
            job_result_inline_bytes: 1 << 20,
            job_retention: Duration::from_secs(7 * 24 * 3600),
            job_lease: Duration::from_secs(30),
            trees: crate::tree::TreeLimits::default(),
            tls: None,
        }
    }
}

/// This machine's host name (`/etc/hostname`), or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
