//! `swb`: the Switchboard server, worker and CLI in one binary. Thin by design: it
//! parses flags and calls into the library crates.

mod bench;
mod cli;
mod data;
mod dev;
mod fed;
mod identity;
mod input;
mod profile;
mod run;
mod secret;
mod table;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Requests allocate and free many small buffers across threads (a record is built on
/// a runtime thread and freed on the recorder's); mimalloc does that faster than the
/// system allocator. Built without transparent huge pages (`no_thp`): with them its
/// arenas would double an idle server's memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "swb",
    version,
    about = "Switchboard: publish functions to a catalog and call them by name",
    long_about = "Switchboard: publish functions to a catalog and call them by name.\n\n\
        Start here: `swb up` runs a server with an in-process worker on SQLite under ./.swb.\n\
        The other commands talk to a server: they find it from --server/--token, \
        SWB_URL/SWB_TOKEN, the file written by `swb login`, or ./.swb/admin.token."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Server URL [default: from `swb login`, else http://127.0.0.1:7070]. Several,
    /// repeated or comma-separated, are a cluster's replicas: workers (`swb worker`,
    /// `swb serve`) fail over between them, other commands use the first that answers
    #[arg(
        long,
        global = true,
        env = "SWB_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    server: Vec<String>,
    /// API token [default: from `swb login`, else .swb/admin.token here or in a folder above]
    #[arg(long, global = true, env = "SWB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server and an in-process Wasm worker (the embedded default)
    Up(run::UpArgs),
    /// Run a server without a worker (workers connect with `swb worker`)
    Server(run::ServerArgs),
    /// Run a worker that connects to a server, or list connected workers
    Worker(run::WorkerCmd),
    /// Serve a remote function by running a command for each call (the exec adapter)
    Serve(run::ServeArgs),
    /// Make a project for a new function from a template (rust, c, python, exec)
    New(dev::NewArgs),
    /// Build the project in this folder (its switchboard.toml) and deploy it
    Deploy(dev::ProjectArgs),
    /// Work on the project in this folder: deploy or serve it again on every save,
    /// and print its calls as they happen
    Dev(dev::ProjectArgs),
    /// Print a shell completion script: `swb completions bash > ~/.local/share/bash-completion/completions/swb`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Deploy, call and manage functions
    #[command(name = "fn", subcommand)]
    Fn(cli::FnCmd),
    /// Show a function's recent invocations, with their errors and stderr
    Logs(cli::LogsArgs),
    /// Inspect invocations
    #[command(name = "inv", subcommand)]
    Inv(cli::InvCmd),
    /// Save a server URL and token for later commands
    Login(cli::LoginArgs),
    /// Show who the current token belongs to and what it may do
    Me,
    /// Which server this CLI uses and whether it answers, whose token, which workers
    Status,
    /// Manage users (administrators)
    #[command(subcommand)]
    User(identity::UserCmd),
    /// Team namespaces and namespace-wide sharing
    #[command(name = "ns", subcommand)]
    Ns(identity::NsCmd),
    /// Create, list and revoke API tokens
    #[command(subcommand)]
    Token(identity::TokenCmd),
    /// Who deployed, shared, created or revoked what, and when
    Audit(identity::AuditArgs),
    /// Durable jobs: submit, status, wait, list, cancel
    #[command(subcommand)]
    Job(data::JobCmd),
    /// Uploaded data and sealed datasets
    #[command(subcommand)]
    Blob(data::BlobCmd),
    /// Stored settings handed to a function on calls that name them
    #[command(subcommand)]
    Profile(data::ProfileCmd),
    /// Secrets: set from stdin, granted to versions by name, never shown again
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Sealed datasets with typed columns (for federations and functions)
    #[command(subcommand)]
    Dataset(fed::DatasetCmd),
    /// Federations: joint statistics across organisations' servers
    #[command(subcommand)]
    Fed(fed::FedCmd),
    /// A server's TLS certificate: make a self-signed one, print a fingerprint
    #[command(subcommand)]
    Tls(fed::TlsCmd),
    /// Benchmarks: the suite (with the ideal measured in the same run) and a load generator
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    #[command(name = "__ideal-echo", hide = true)]
    IdealEcho(bench::HelperArgs),
    #[command(name = "__ideal-wasm", hide = true)]
    IdealWasm(bench::HelperArgs),
    #[command(name = "__sdk-echo", hide = true)]
    SdkEcho,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Up(_)
            | Command::Server(_)
            | Command::Worker(_)
            | Command::Serve(_)
            | Command::Bench(_)
            | Command::IdealEcho(_)
            | Command::IdealWasm(_)
            | Command::SdkEcho
    ) {
        die_quietly_on_closed_pipes();
    }
    // The suite runs a thousand workers in its own process: their sessions opening
    // are not news. Servers and workers say what they do.
    init_tracing(match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = cli.global.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => on_workers(run::up(args)).await,
            Command::Server(args) => on_workers(run::server(args)).await,
            Command::Worker(cmd) => {
                on_workers(async move { run::worker(&cli.global, cmd).await }).await
            }
            Command::Serve(args) => {
                on_workers(async move { run::serve(&cli.global, args).await }).await
            }
            Command::Completions { shell } => {
                let mut out = std::io::stdout();
                clap_complete::generate(shell, &mut Cli::command(), "swb", &mut out);
                Ok(())
            }
            Command::New(args) => dev::new(&cli.global, args).await,
            Command::Deploy(args) => dev::deploy(&cli.global, args).await,
            Command::Dev(args) => dev::dev(&cli.global, args).await,
            Command::Fn(cmd) => cli::function(&cli.global, cmd).await,
            Command::Logs(args) => cli::logs(&cli.global, args).await,
            Command::Inv(cmd) => cli::invocation(&cli.global, cmd).await,
            Command::Login(args) => cli::login(&cli.global, args).await,
            Command::Me => identity::me(&cli.global).await,
            Command::Status => cli::status(&cli.global).await,
            Command::User(cmd) => identity::user(&cli.global, cmd).await,
            Command::Ns(cmd) => identity::namespace(&cli.global, cmd).await,
            Command::Token(cmd) => identity::token(&cli.global, cmd).await,
            Command::Audit(args) => identity::audit(&cli.global, args).await,
            Command::Job(cmd) => data::job(&cli.global, cmd).await,
            Command::Blob(cmd) => data::blob(&cli.global, cmd).await,
            Command::Profile(cmd) => data::profile(&cli.global, cmd).await,
            Command::Secret(cmd) => secret::secret(&cli.global, cmd).await,
            Command::Dataset(cmd) => fed::dataset(&cli.global, cmd).await,
            Command::Fed(cmd) => fed::fed(&cli.global, cmd).await,
            Command::Tls(cmd) => fed::tls(&cli.global, cmd),
            Command::Bench(cmd) => bench::bench(&cli.global, cmd).await,
            Command::IdealEcho(a) => {
                on_workers(async move { swb_bench::serve_ideal_echo(&a.listen).await }).await
            }
            Command::IdealWasm(a) => {
                on_workers(async move { swb_bench::serve_ideal_wasm(&a.listen).await }).await
            }
            Command::SdkEcho => on_workers(swb_bench::serve_sdk_echo("admin/echo-remote")).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::report_error(&e, json);
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

/// A client command whose output goes to a closed pipe (`swb logs | head`) ends
/// quietly, as other Unix tools do, instead of panicking in `println!`. Servers
/// and workers keep the signal ignored: a peer closing a socket is no reason to die.
fn die_quietly_on_closed_pipes() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called once at start-up, before any thread exists, with the default
    // disposition (no handler runs).
    #[allow(unsafe_code)]
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

/// Runs a long-lived command (a server, a worker) as a task on the runtime's worker
/// threads rather than on the main thread, where a future is woken across threads
/// for every event (a worker's session reads and writes its socket from its future).
async fn on_workers(
    command: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::spawn(command)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the command crashed: {e}")))
}

fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    // wasmtime-wasi opens an INFO span for every WASI call a guest makes (allocated
    // and formatted on the hot path); keep them off unless SWB_LOG names them.
    let mut directives = std::env::var("SWB_LOG").unwrap_or_else(|_| default.into());
    if !directives.contains("wasmtime_wasi") {
        directives.push_str(",wasmtime_wasi=warn");
    }
    let filter = EnvFilter::new(directives);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Where `swb up` and `swb server` keep their data unless told otherwise.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(".swb")
}
