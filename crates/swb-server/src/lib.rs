//! The Switchboard control plane: REST API, authentication, the routing table, the
//! worker hub and the invocation recorder, over a [`swb_store::Store`].

mod acl;
mod api;
mod auth;
mod blobs;
mod budget;
mod cluster;
mod config;
mod conn;
mod data;
mod error;
mod extract;
mod hub;
mod identity;
mod jobs;
pub mod metrics;
mod openapi;
mod recorder;
mod routes;
mod secrets;
mod sessions;
pub mod tls;
mod tree;
mod ws;

pub use api::{openapi_document, routes};
pub use auth::{Authenticator, Caller, issue_token};
pub use config::{Config, TlsFiles, hostname};
pub use conn::HttpLimits;
pub use error::{AppError, error_response, store_error};
pub use extract::{check_declared_length, too_large};
pub use hub::{FromWorker, Hub, ToWorker, from_channel};
pub use tree::{MAX_DEPTH_CAP, TreeLimits};

use anyhow::Context;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swb_api::Namespace;
use swb_api::timestamp::now_ms;
use swb_store::{NewToken, PgStore, SqliteStore, Store, StoreError, User};
use tokio::net::TcpListener;

/// Shared state of every handler.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    routes: routes::Routes,
    /// The key secrets are sealed with.
    secrets: Arc<secrets::Keyring>,
    auth: Authenticator,
    acl: acl::Acl,
    blobs: blobs::Blobs,
    bodies: budget::BodyBudget,
    jobs: jobs::JobQueue,
    recorder: recorder::Recorder,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The link to the other replicas (cluster mode).
    cluster: Option<cluster::Cluster>,
    /// `GET /v1/openapi.json`, built once with this server's bounds.
    openapi: bytes::Bytes,
}

impl App {
    /// The caller of a request with these headers (its bearer token), as every
    /// route authenticates.
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Caller, swb_api::ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        self.auth.authenticate(header).await
    }

    /// Stores `bytes` as a sealed blob of `caller` (functions may read it, nobody
    /// may download it), named `name`.
    pub async fn put_sealed_blob(
        &self,
        caller: &Caller,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<swb_api::BlobInfo, swb_api::ApiError> {
        let size = bytes.len() as u64;
        let digest = self.blobs.put_bytes(bytes).await?;
        let info = swb_api::BlobInfo {
            digest,
            name: Some(name.to_owned()),
            size,
            sealed: true,
            created_at: now_ms(),
        };
        (self.store.put_blob(&caller.user.id, &info).await).map_err(error::store_error)?;
        Ok(info)
    }

    /// A blob's bytes, for the server's own use (never a download).
    pub async fn blob_bytes(
        &self,
        digest: &swb_api::Digest,
    ) -> Result<bytes::Bytes, swb_api::ApiError> {
        self.blobs.get_bytes(digest, u64::MAX).await
    }

    /// Seals `value` with the secrets key, bound to `aad`.
    pub async fn seal(&self, aad: &str, value: &[u8]) -> Result<Vec<u8>, swb_api::ApiError> {
        self.secrets.seal_bytes(&*self.store, aad, value).await
    }

    /// What [`App::seal`] sealed with the same `aad`; `None` when it does not open.
    pub async fn open_sealed(
        &self,
        aad: &str,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, swb_api::ApiError> {
        self.secrets.open_bytes(&*self.store, aad, sealed).await
    }

    /// Appends to the audit log as `caller`.
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        namespace: Option<&Namespace>,
        target: String,
        details: serde_json::Value,
    ) {
        let actor = caller.user.email.clone();
        audit(&*self.store, actor, action, namespace, target, details).await;
    }
}

/// Appends an event to the audit log; a failure is logged, not fatal to the request.
pub(crate) async fn audit(
    store: &dyn Store,
    actor: String,
    action: &str,
    namespace: Option<&Namespace>,
    target: String,
    details: serde_json::Value,
) {
    let event = swb_api::AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        at: now_ms(),
        actor,
        action: action.into(),
        namespace: namespace.cloned(),
        target,
        details,
    };
    if let Err(e) = store.record_audit(&event).await {
        tracing::error!(error = %e, action, "could not write an audit event");
    }
}

/// A server ready to serve: store open, admin bootstrapped.
pub struct Server {
    app: Arc<App>,
    recorder: recorder::RecorderTask,
    /// HTTPS: the acceptor, and the certificate's fingerprint.
    tls: Option<(tokio_rustls::TlsAcceptor, String)>,
}

impl Server {
    /// Opens (or creates) the data directory and the database (its SQLite file, or
    /// the Postgres database of `database_url`), and creates the admin user on first
    /// start.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let store: Arc<dyn Store> =
            match &config.database_url {
                Some(url) => Arc::new(PgStore::open(url).await.with_context(|| {
                    format!("cannot open the Postgres database {}", redact(url))
                })?),
                None => {
                    let db = config.data_dir.join("swb.db");
                    Arc::new(
                        SqliteStore::open(&db)
                            .await
                            .with_context(|| format!("cannot open database {}", db.display()))?,
                    )
                }
            };
        Self::with_store(config, store).await
    }

    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let cluster = match &config.nats_url {
            Some(_) if !store.shared() => {
                anyhow::bail!(
                    "--nats-url joins replicas on one Postgres database: give --database-url too"
                )
            }
            Some(url) => {
                let id = store
                    .setting_or_init("cluster_id", &uuid::Uuid::now_v7().simple().to_string())
                    .await?;
                Some(cluster::Cluster::connect(url, &id, &config.name).await?)
            }
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => {
                let (tls, fingerprint) = tls::server_config(&files.cert, &files.key)?;
                Some((tokio_rustls::TlsAcceptor::from(tls), fingerprint))
            }
            None => None,
        };
        bootstrap_admin(store.as_ref(), &config.data_dir).await?;
        let (recorder, task) = recorder::Recorder::spawn(store.clone(), config.keep_invocations);
        let acl = acl::Acl::load(store.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("cannot load namespaces and shares: {}", e.message))?;
        let blob_dir = (config.blob_dir.clone()).unwrap_or_else(|| config.data_dir.join("blobs"));
        let blobs = blobs::Blobs::open(&blob_dir, config.max_blob_bytes)?;
        // One server owns an embedded database: jobs it was running when it stopped
        // are lost now: they run again, their lost attempts on record. On a shared
        // database, other replicas may be running them: they run again when their
        // leases lapse (their holders stop renewing them).
        if !store.shared() {
            let lost = store.expire_leases().await?;
            if lost > 0 {
                tracing::info!(
                    jobs = lost,
                    "jobs interrupted by the last shutdown run again"
                );
            }
        }
        let (cluster, links) = cluster.unzip();
        let (jobs, finishes) = jobs::JobQueue::new();
        let openapi = api::openapi_document(&config).to_string().into();
        let trees = Arc::new(tree::Trees::new(config.trees));
        let key_file = (config.secrets_key_file.clone())
            .unwrap_or_else(|| config.data_dir.join("secrets.key"));
        let secrets = Arc::new(secrets::Keyring::open_or_create(&key_file)?);
        let app = Arc::new(App {
            openapi,
            acl,
            blobs,
            bodies: budget::BodyBudget::new(config.max_body_memory_bytes),
            jobs,
            hub: Arc::new(Hub::new(store.clone(), config.heartbeat, trees.clone())),
            routes: routes::Routes::new(store.clone(), &config, secrets.clone()),
            secrets,
            auth: Authenticator::new(store.clone(), trees),
            metrics: metrics::handle(),
            recorder,
            store,
            config,
            cluster,
        });
        jobs::spawn(app.clone(), finishes);
        api::serve_nested(&app);
        if let Some(links) = links {
            cluster::spawn(app.clone(), links);
        }
        Ok(Self {
            app,
            recorder: task,
            tls,
        })
    }

    /// Runs a worker session over in-memory channels (the in-process worker of
    /// `swb up`): the same protocol as over a WebSocket, except that calls of modules
    /// ready in the worker's `runtime` run on it directly.
    pub fn local_worker_session(
        &self,
        tx: ToWorker,
        rx: FromWorker,
        runtime: Option<Arc<swb_runtime::Runtime>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let app = self.app.clone();
        async move { app.worker_session(None, tx, rx, runtime).await }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        admin_token_path(&self.app.config.data_dir)
    }

    /// The state every handler shares, for parts mounted beside the REST API.
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// The SHA-256 fingerprint of the TLS certificate, when serving HTTPS.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|(_, f)| f.as_str())
    }

    /// Serves until `shutdown` resolves, then closes idle and half-sent connections,
    /// lets running requests finish (for up to the drain period) and writes the
    /// queued invocation records.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_with(listener, shutdown, |api| api).await;
    }

    /// `serve`, with the REST API's router put in front of by `extend` (the web
    /// console's routes, say).
    pub async fn serve_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        extend: impl FnOnce(axum::Router) -> axum::Router,
    ) {
        let limits = self.app.config.http;
        let router = extend(api::router(self.app.clone()));
        let tls = self.tls.map(|(acceptor, _)| acceptor);
        conn::serve(listener, router, limits, tls, shutdown).await;
        self.recorder.finish().await;
    }
}

pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = credentials.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host}")
}

#[cfg(test)]
#[test]
fn database_urls_lose_their_password_in_messages() {
    assert_eq!(
        redact("postgres://swb:s3cret@db:5432/swb"),
        "postgres://swb@db:5432/swb"
    );
    assert_eq!(redact("postgres://db/swb"), "postgres://db/swb");
}

/// Creates the admin user and its token on an empty database. The token is written
/// once to `<data-dir>/admin.token` (mode 0600); only its hash is stored. Of replicas
/// starting together on an empty database, the first to create the admin wins; the
/// others use the database's users.
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
    match store.create_user(&user).await {
        Err(StoreError::Conflict(_)) => {
            let _ = std::fs::remove_file(&path);
            tracing::info!("another replica created the admin user");
            return Ok(());
        }
        other => other?,
    }
    store
        .create_token(&NewToken {
            id: issued.id,
            user_id: user.id,
            secret_hash: issued.secret_hash,
            scopes: vec![auth::SCOPE_ALL.into()],
            description: "bootstrap admin token".into(),
            expires_at: None,
            parent_id: None,
        })
        .await?;
    tracing::info!(path = %path.display(), "created the admin user and wrote its token");
    Ok(())
}

/// Writes a secret to a file only its owner may read.
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
