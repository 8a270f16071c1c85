//! The Switchboard control plane: REST API, authentication, the routing table, the
//! worker hub and the invocation recorder, over a [`swb_store::Store`].

mod acl;
mod api;
mod auth;
mod blobs;
mod config;
mod data;
mod error;
mod extract;
mod hub;
mod identity;
mod jobs;
mod metrics;
mod recorder;
mod routes;
mod sessions;
mod ws;

pub use api::routes;
pub use auth::{Authenticator, Caller, issue_token};
pub use config::Config;
pub use hub::{FromWorker, Hub, ToWorker};

use anyhow::Context;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swb_api::Namespace;
use swb_api::timestamp::now_ms;
use swb_store::{NewToken, SqliteStore, Store, User};
use tokio::net::TcpListener;

/// Shared state of every handler.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    routes: routes::Routes,
    auth: Authenticator,
    acl: acl::Acl,
    blobs: blobs::Blobs,
    jobs: jobs::JobQueue,
    recorder: recorder::Recorder,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl App {
    /// Appends to the audit log; a failure is logged, not fatal to the request.
    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        namespace: Option<&Namespace>,
        target: String,
        details: serde_json::Value,
    ) {
        let event = swb_api::AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            at: now_ms(),
            actor: caller.user.email.clone(),
            action: action.into(),
            namespace: namespace.cloned(),
            target,
            details,
        };
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action, "could not write an audit event");
        }
    }
}

/// A server ready to serve: store open, admin bootstrapped.
pub struct Server {
    app: Arc<App>,
    recorder: recorder::RecorderTask,
}

impl Server {
    /// Opens (or creates) the data directory and its SQLite database, and creates the
    /// admin user on first start.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let db = config.data_dir.join("swb.db");
        let store = SqliteStore::open(&db)
            .await
            .with_context(|| format!("cannot open database {}", db.display()))?;
        Self::with_store(config, Arc::new(store)).await
    }

    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        bootstrap_admin(store.as_ref(), &config.data_dir).await?;
        let (recorder, task) = recorder::Recorder::spawn(store.clone(), config.keep_invocations);
        let acl = acl::Acl::load(store.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("cannot load namespaces and shares: {}", e.message))?;
        let blobs = blobs::Blobs::open(&config.data_dir.join("blobs"), config.max_blob_bytes)?;
        // One server owns an embedded database: jobs it was running when it stopped
        // go back to the queue now rather than when their leases lapse.
        let requeued = store.requeue_running().await?;
        if requeued > 0 {
            tracing::info!(
                jobs = requeued,
                "requeued jobs interrupted by the last shutdown"
            );
        }
        let (jobs, finishes) = jobs::JobQueue::new();
        let app = Arc::new(App {
            acl,
            blobs,
            jobs,
            hub: Arc::new(Hub::new(store.clone(), config.heartbeat)),
            routes: routes::Routes::new(store.clone(), &config),
            auth: Authenticator::new(store.clone()),
            metrics: metrics::handle(),
            recorder,
            store,
            config,
        });
        jobs::spawn(app.clone(), finishes);
        Ok(Self {
            app,
            recorder: task,
        })
    }

    /// Runs a worker session over in-memory channels (the in-process worker of
    /// `swb up`): the same protocol as over a WebSocket.
    pub fn local_worker_session(
        &self,
        tx: ToWorker,
        rx: FromWorker,
    ) -> impl Future<Output = ()> + Send + 'static {
        let app = self.app.clone();
        async move { app.worker_session(None, tx, rx).await }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        admin_token_path(&self.app.config.data_dir)
    }

    /// Serves until `shutdown` resolves, then lets running requests finish and writes
    /// the queued invocation records.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = api::router(self.app.clone());
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("server failed")?;
        self.recorder.finish().await;
        Ok(())
    }
}

pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Creates the admin user and its token on an empty database. The token is written
/// once to `<data-dir>/admin.token` (mode 0600); only its hash is stored.
async fn bootstrap_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email: "admin@localhost".into(),
        namespace: "admin".parse::<Namespace>().expect("valid namespace"),
        is_admin: true,
        created_at: now_ms(),
    };
    let issued = issue_token();
    let path = admin_token_path(data_dir);
    write_secret(&path, &issued.token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    store.create_user(&user).await?;
    store
        .create_token(&NewToken {
            id: issued.id,
            user_id: user.id,
            secret_hash: issued.secret_hash,
            scopes: vec![auth::SCOPE_ALL.into()],
            description: "bootstrap admin token".into(),
            expires_at: None,
        })
        .await?;
    tracing::info!(path = %path.display(), "created the admin user and wrote its token");
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
