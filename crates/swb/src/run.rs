//! The long-running commands: `swb up`, `swb server` and `swb worker`.

use crate::{Global, profile, table};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use swb_server::{Config, Server};
use swb_worker::{Backoff, GUESTS_PER_CPU, Worker, WorkerConfig, cpus};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

#[derive(Args)]
pub struct ServerArgs {
    /// The client flags, taken by the global ones' names so that a server's help
    /// does not list them (a server takes none).
    #[command(flatten)]
    _client: HiddenClientFlags,
    /// Directory for the database and the admin token
    #[arg(long, env = "SWB_DATA_DIR", default_value = ".swb")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, env = "SWB_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// This server's name among replicas, shown with its workers in `swb worker
    /// list` [default: host:port]
    #[arg(long, env = "SWB_NAME")]
    name: Option<String>,
    /// Largest request body (artefacts, call inputs), in MiB; a larger declared length
    /// is refused with 413 before the body is read
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_body_mb: u64,
    /// Memory all request bodies being read or held may take at once, in MiB; a
    /// request that finds it spent waits up to --body-timeout, then gets overloaded
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_body_memory_mb: u64,
    /// Largest blob upload (`swb blob put`, streamed to disk), in MiB
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    max_blob_mb: u64,
    /// Largest output of a call (a function's stdout, or a remote function's
    /// answer), in MiB; a larger one fails with limit_exceeded
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_output_mb: u64,
    /// A connection that runs no request for this long is closed: a request head
    /// slower than this, or an idle keep-alive connection
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// A request body that sends nothing for this long fails with request_timeout
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Most HTTP connections at once; past it the one idle longest is closed
    /// [default: 3/4 of the open-file limit]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// On Ctrl-C or SIGTERM, how long running requests may take to finish (a second
    /// signal exits at once)
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Invocation records to keep: at least the newest this many; older ones are
    /// pruned (a whole write of up to 1,000 records at a time)
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keep_invocations: u64,
    /// Deepest call tree: nested calls (functions calling functions) below a call
    /// from outside; one deeper fails with call_depth_exceeded
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=swb_server::MAX_DEPTH_CAP as i64))]
    max_call_depth: u32,
    /// Nested calls one call may have running at once (limit_exceeded past it)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_child_calls: u32,
    /// Nested calls one call tree may have running at once on this server
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_tree_calls: u32,
    /// A running job's lease, renewed by its server every third of it for as long
    /// as the attempt runs: a job whose server stops runs again this long after
    #[arg(long, default_value = "30s", value_parser = lease)]
    job_lease: Duration,
    /// Keep everything in this Postgres database instead of <data-dir>/swb.db
    /// (postgres://user:password@host:port/database); replicas share it
    #[arg(long, env = "SWB_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Join the other replicas on the same database through this NATS server
    /// (nats://host:4222); without it a Postgres-backed server runs alone
    #[arg(long, env = "SWB_NATS_URL", requires = "database_url")]
    nats_url: Option<String>,
    /// Where blob bytes are kept; replicas of a cluster must share it (e.g. a network
    /// file system) [default: <data-dir>/blobs]
    #[arg(long, env = "SWB_BLOB_DIR")]
    blob_dir: Option<PathBuf>,
    /// The key secrets are sealed with (64 hex digits, mode 0600), created when
    /// missing; keep it apart from the database's backups, and give every replica
    /// of a cluster the same one [default: <data-dir>/secrets.key]
    #[arg(long, env = "SWB_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Serve no web console (it is at /console/ otherwise)
    #[arg(long, env = "SWB_NO_CONSOLE")]
    no_console: bool,
    /// Serve HTTPS with this certificate (PEM chain; `swb tls cert` makes a
    /// self-signed one); clients of a self-signed server set SWB_TLS_PIN
    #[arg(long, env = "SWB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, env = "SWB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long each phase of a federated query waits for the other parties before
    /// the query is aborted
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    fed_phase_timeout: Duration,
    /// Append every message this server sends to or receives from another party of
    /// a federation to FILE (JSON lines), for audits
    #[arg(long, value_name = "FILE")]
    fed_trace: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    worker: LocalWorkerArgs,
}

#[derive(Args)]
struct LocalWorkerArgs {
    /// Calls the in-process worker holds at once [default: 8 x CPUs]; at most 8 x
    /// CPUs run at once, the others wait for one to end
    #[arg(long, value_parser = capacity)]
    capacity: Option<u32>,
    /// Compiled-code cache of the in-process worker [default: <data-dir>/code-cache]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerCmd {
    #[command(subcommand)]
    action: Option<WorkerAction>,
    #[command(flatten)]
    run: WorkerArgs,
}

#[derive(Subcommand)]
enum WorkerAction {
    /// List the workers connected to the server
    List,
}

#[derive(Args)]
struct WorkerArgs {
    /// Name shown in `swb worker list` and invocation records [default: the host
    /// name and a short random suffix]
    #[arg(long)]
    name: Option<String>,
    /// Label as key=value (repeatable)
    #[arg(long = "label", value_parser = parse_pair)]
    labels: Vec<(String, String)>,
    /// Calls held at once [default: 32 x CPUs]. At most 8 x CPUs run at once; the
    /// others wait at the worker, so that the next call is ready when one ends
    #[arg(long, value_parser = capacity)]
    capacity: Option<u32>,
    /// Compiled-code cache kept across restarts [default: $XDG_CACHE_HOME/swb/code-cache,
    /// else ~/.cache/swb/code-cache]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Longest wait between reconnection attempts, in milliseconds
    #[arg(long, default_value_t = 30_000)]
    max_backoff_ms: u64,
}

/// Calls a worker may hold: what a server accepts in a hello.
fn capacity(s: &str) -> Result<u32, String> {
    let max = swb_api::protocol::hello_limits::MAX_CAPACITY;
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {max}")),
    }
}

pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// A worker process holds many more calls than it runs: an answer travels to the
/// server and the next call back before a core could start it, and calls already
/// waiting at the worker hide that round trip. It runs at most [`GUESTS_PER_CPU`]
/// Wasm guests per CPU at once; the rest wait there (see BENCHMARKS.md).
fn worker_capacity() -> u32 {
    (cpus() * 32).clamp(32, 1024)
}

/// The in-process worker of `swb up` holds as many calls as it runs, on the server's
/// own task: no round trip to hide, but its cores idle less while calls hand their
/// answers back than while calls queue for a slot (see BENCHMARKS.md).
fn local_worker_capacity() -> u32 {
    (cpus() * GUESTS_PER_CPU).clamp(8, 256)
}

/// Resolves on Ctrl-C or SIGTERM; a second one exits the process at once.
pub async fn shutdown_signal() {
    signal().await;
    tracing::info!("shutting down; a second Ctrl-C or SIGTERM exits at once");
    tokio::spawn(async {
        signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
}

pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn start(args: &ServerArgs) -> anyhow::Result<(Server, TcpListener, String)> {
    let mut config = Config::new(args.data_dir.clone());
    config.max_body_bytes = (args.max_body_mb << 20) as usize;
    config.max_blob_bytes = args.max_blob_mb << 20;
    config.stdout_bytes = args.max_output_mb << 20;
    config.max_body_memory_bytes = args.max_body_memory_mb << 20;
    config.http.header_timeout = args.header_timeout;
    config.http.body_timeout = args.body_timeout;
    config.http.drain = args.drain_timeout;
    if let Some(n) = args.max_connections {
        config.http.max_connections = n as usize;
    }
    config.keep_invocations = args.keep_invocations;
    config.job_lease = args.job_lease;
    config.trees = swb_server::TreeLimits {
        max_depth: args.max_call_depth,
        max_children: args.max_child_calls,
        max_descendants: args.max_tree_calls,
    };
    config.database_url = args.database_url.clone();
    config.nats_url = args.nats_url.clone();
    config.blob_dir = args.blob_dir.clone();
    config.secrets_key_file = args.secrets_key_file.clone();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(swb_server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    // Before anything is created: a taken port leaves no data folder behind.
    let listener = listen(args.listen).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another server may run there: `swb status` tells; --listen picks another address)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {}: {e}{hint}", args.listen)
    })?;
    let addr = listener.local_addr()?;
    config.name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}:{}", swb_server::hostname(), addr.port()));
    let server = Server::open(config).await?;
    let scheme = if server.tls_fingerprint().is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    Ok((server, listener, url))
}

/// A listener whose queue of connections not yet accepted holds a burst of clients:
/// with the usual 128, a burst of new connections (a fleet of workers reconnecting,
/// a load test) overflows it and the kernel drops their SYNs, which clients resend
/// only after a second.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn announce(url: &str, server: &Server, worker: Option<u32>, console: bool) {
    let token = server.admin_token_path();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Switchboard {} listening on {url}",
        env!("CARGO_PKG_VERSION")
    );
    if console {
        let _ = writeln!(out, "  console:     {url}/console/");
    }
    if let Some(pin) = server.tls_fingerprint() {
        let _ = writeln!(out, "  certificate: {pin}");
    }
    // Missing on a replica joining a database that already has its admin.
    let has_token = token.exists();
    if has_token {
        let _ = writeln!(out, "  admin token: {}", token.display());
    } else {
        let _ = writeln!(
            out,
            "  admin token: in the admin.token of the server that first started on this database"
        );
    }
    match worker {
        Some(capacity) => {
            let _ = writeln!(out, "  worker:      in-process, {capacity} calls at once");
        }
        None => {
            let token = if has_token {
                format!("$(cat {})", token.display())
            } else {
                "<token>".into()
            };
            let _ = writeln!(
                out,
                "  workers:     none yet; start one with\n               SWB_URL={url} SWB_TOKEN={token} swb worker"
            );
        }
    }
    let _ = writeln!(
        out,
        "\nDeploy and call the bundled example (from the repository root):\n  \
         cargo build --release --target wasm32-wasip1 --manifest-path examples/functions/Cargo.toml\n  \
         swb fn deploy examples/functions/target/wasm32-wasip1/release/greet.wasm --name admin/greet \\\n    \
         --input-schema examples/functions/greet/input.schema.json \\\n    \
         --output-schema examples/functions/greet/output.schema.json\n  \
         swb fn invoke admin/greet '{{\"name\":\"Ada\"}}'"
    );
    let _ = out.flush();
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let (server, listener, url) = start(&args).await?;
    serve_http(server, listener, &url, None, &args).await
}

/// Says where the server is, then serves its API (and the console, unless
/// `--no-console`) until a signal stops it.
async fn serve_http(
    server: Server,
    listener: TcpListener,
    url: &str,
    worker: Option<u32>,
    args: &ServerArgs,
) -> anyhow::Result<()> {
    let console = !args.no_console;
    let fed = swb_fed::Fed::open(
        &server,
        swb_fed::Options {
            phase_timeout: args.fed_phase_timeout,
            trace: args.fed_trace.clone(),
        },
    )
    .await?;
    announce(url, &server, worker, console);
    server
        .serve_with(listener, shutdown_signal(), |api| {
            let api = if console {
                swb_console::mount(api)
            } else {
                api
            };
            swb_fed::mount(fed, api)
        })
        .await;
    Ok(())
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let (server, listener, url) = start(&args.server).await?;
    let capacity = args.worker.capacity.unwrap_or_else(local_worker_capacity);
    let worker = Worker::new(WorkerConfig {
        name: "local".into(),
        labels: BTreeMap::new(),
        capacity,
        wasm: true,
        cache_dir: Some(
            args.worker
                .cache_dir
                .unwrap_or_else(|| args.server.data_dir.join("code-cache")),
        ),
    })?;
    // The in-process worker speaks the same protocol over channels instead of a socket.
    let (to_worker, from_server) = mpsc::unbounded_channel();
    let (to_server, from_worker) = mpsc::channel(256);
    let session = tokio::spawn(server.local_worker_session(
        to_worker,
        swb_server::from_channel(from_worker),
        worker.runtime(),
    ));
    let (stop, stopped) = watch::channel(false);
    let local = tokio::spawn(async move {
        let mut stopped = stopped;
        worker
            .session(
                to_server,
                tokio_stream::wrappers::UnboundedReceiverStream::new(from_server),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                None,
            )
            .await
    });
    serve_http(server, listener, &url, Some(capacity), &args.server).await?;
    let _ = stop.send(true);
    let _ = local.await;
    session.abort();
    Ok(())
}

pub async fn worker(global: &Global, cmd: WorkerCmd) -> anyhow::Result<()> {
    if let Some(WorkerAction::List) = cmd.action {
        return list_workers(global).await;
    }
    let args = cmd.run;
    let servers = profile::server_urls(global)?;
    let token = profile::token(global)?;
    let name = args.name.unwrap_or_else(default_name);
    let worker = Worker::new(WorkerConfig {
        name,
        labels: args.labels.into_iter().collect(),
        capacity: args.capacity.unwrap_or_else(worker_capacity),
        wasm: true,
        cache_dir: Some(args.cache_dir.unwrap_or_else(user_cache_dir)),
    })?;
    tracing::info!(servers = ?servers, name = worker.name(), "worker starting");
    let backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_millis(args.max_backoff_ms.max(200)),
    );
    swb_worker::run(&worker, &servers, &token, backoff, shutdown_signal()).await?;
    Ok(())
}

#[derive(Args)]
pub struct ServeArgs {
    /// The function to serve, as namespace/name (created on first serve); without
    /// it, the project in this folder (its switchboard.toml) is served
    function: Option<swb_api::FunctionRef>,
    #[command(flatten)]
    interface: crate::cli::InterfaceArgs,
    /// Calls run at once
    #[arg(long, default_value_t = 4, value_parser = capacity)]
    concurrency: u32,
    /// Deadline per call in milliseconds; the command's process group is killed
    /// when it passes [server default: 10000]
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Label as key=value (repeatable)
    #[arg(long = "label", value_parser = parse_pair)]
    labels: Vec<(String, String)>,
    /// Publish this interface as a new version if it differs from the active one
    #[arg(long)]
    replace: bool,
    /// Calls are safe to repeat: retry once on another worker if this one is lost
    #[arg(long)]
    idempotent: bool,
    /// A function (ns/name) the command may call through the platform (repeatable):
    /// it then gets SWB_URL and SWB_TOKEN, so `swb fn invoke` inside it is a nested call
    #[arg(long = "calls", value_name = "FUNCTION")]
    calls: Vec<swb_api::FunctionRef>,
    /// A secret of the namespace (`swb secret set NAME`) each run of the command
    /// receives as the environment variable NAME (repeatable; granting takes a token
    /// that may deploy the function)
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Invocation records keep each call's input and output (the first 2 KiB of
    /// each), readable by who may deploy it and by each caller for their own calls
    #[arg(long)]
    keep_io: bool,
    /// Worker name [default: the host name and a short random suffix]
    #[arg(long)]
    name: Option<String>,
    /// Longest wait between reconnection attempts, in milliseconds
    #[arg(long, default_value_t = 30_000)]
    max_backoff_ms: u64,
    /// The project folder, when no function is named [default: this folder or the
    /// nearest above it with a switchboard.toml]
    #[arg(long, conflicts_with = "function")]
    dir: Option<std::path::PathBuf>,
    /// The command and its arguments: input on stdin, output on stdout
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `--server`, `--token` and `--json` on a server command: accepted as anywhere
/// (they are global), not shown in its help.
#[derive(Args)]
struct HiddenClientFlags {
    #[arg(long, hide = true, env = "SWB_URL", value_delimiter = ',')]
    server: Vec<String>,
    #[arg(long, hide = true, env = "SWB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, hide = true)]
    json: bool,
}

/// One function served by the exec adapter, from flags or from a manifest.
pub struct ExecServe {
    pub function: swb_api::protocol::ServedFunction,
    pub exec: swb_worker::Exec,
    pub concurrency: u32,
    pub labels: BTreeMap<String, String>,
    pub name: Option<String>,
    pub max_backoff_ms: u64,
}

/// `swb serve`: the exec adapter, or the project in a folder.
pub async fn serve(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let Some(function) = args.function else {
        if !args.command.is_empty() {
            anyhow::bail!(
                "name the function to serve with this command: swb serve ns/name -- COMMAND…"
            );
        }
        let dir = args.dir.unwrap_or_else(|| ".".into());
        return crate::dev::serve(global, &dir, args.name).await;
    };
    let Some((program, rest)) = args.command.split_first() else {
        anyhow::bail!(
            "give the command that serves {function} after `--`: swb serve {function} -- COMMAND…"
        );
    };
    let spec = ExecServe {
        function: swb_api::protocol::ServedFunction {
            function,
            interface: args.interface.read()?,
            replace: args.replace,
            idempotent: args.idempotent,
            timeout_ms: args.timeout_ms,
            calls: args.calls,
            secrets: args.secrets,
            keep_io: args.keep_io,
        },
        exec: swb_worker::Exec::new(program.clone(), rest.to_vec()),
        concurrency: args.concurrency,
        labels: args.labels.into_iter().collect(),
        name: args.name,
        max_backoff_ms: args.max_backoff_ms,
    };
    serve_exec(global, spec, shutdown_signal()).await
}

/// Serves one function with the exec adapter until `shutdown`.
pub async fn serve_exec(
    global: &Global,
    spec: ExecServe,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let servers = profile::server_urls(global)?;
    let token = profile::token(global)?;
    let function = spec.function.function.clone();
    let worker = Worker::new(WorkerConfig {
        name: spec.name.unwrap_or_else(default_name),
        labels: spec.labels,
        capacity: spec.concurrency,
        wasm: false,
        cache_dir: None,
    })?
    .serve(spec.function, std::sync::Arc::new(spec.exec));
    tracing::info!(servers = ?servers, %function, "serving");
    let backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_millis(spec.max_backoff_ms.max(200)),
    );
    swb_worker::run(&worker, &servers, &token, backoff, shutdown).await?;
    Ok(())
}

/// The user's cache folder for compiled code, wherever the worker is started.
fn user_cache_dir() -> PathBuf {
    profile::user_dir("XDG_CACHE_HOME", ".cache")
        .unwrap_or_else(|| PathBuf::from(".swb-worker").join("swb"))
        .join("code-cache")
}

/// A worker's default name: the host's, and a short random suffix, so that two
/// workers on one machine are told apart everywhere (`vm-3f2a`, `vm-81c0`).
fn default_name() -> String {
    format!("{}-{:04x}", swb_server::hostname(), rand::random::<u16>())
}

async fn list_workers(global: &Global) -> anyhow::Result<()> {
    let list = profile::client(global).await?.workers().await?;
    if global.json {
        return crate::cli::print_json(&list);
    }
    // Cluster mode names each worker's replica.
    let replicas = list.workers.iter().any(|w| w.replica.is_some());
    let rows: Vec<Vec<String>> = list
        .workers
        .iter()
        .map(|w| {
            let mut row = vec![
                w.name.clone(),
                w.id.clone(),
                format!("{}/{}", w.in_flight, w.capacity),
                w.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                {
                    let mut serves = w.runtimes.clone();
                    serves.extend(w.functions.iter().map(ToString::to_string));
                    if w.draining {
                        serves.push("(draining)".into());
                    }
                    serves.join(",")
                },
                format!(
                    "{} compiled, {} from disk",
                    w.code_cache.compiles, w.code_cache.disk_hits
                ),
                swb_api::timestamp::format(w.connected_at),
            ];
            if replicas {
                row.push(w.replica.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut header = vec![
        "NAME",
        "ID",
        "BUSY",
        "LABELS",
        "SERVES",
        "CODE CACHE",
        "CONNECTED",
    ];
    if replicas {
        header.push("REPLICA");
    }
    table::print(&header, &rows);
    Ok(())
}

/// A job lease: a duration of at least a second.
fn lease(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err("a lease is at least 1s".into()),
        Err(e) => Err(e.to_string()),
    }
}
