//! The client commands: `swb fn …`, `swb logs`, `swb inv …`, `swb login`.

use crate::run::parse_pair;
use crate::{Global, profile, table};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use swb_api::timestamp::format as time;
use swb_api::{
    DeployRequest, Digest, ErrorBody, FunctionRef, Interface, InvocationRecord, LimitsSpec,
};
use swb_client::{ClientError, InvocationFilter, InvokeError};

#[derive(Subcommand)]
pub enum FnCmd {
    /// Upload a WASI module (only if the server lacks it) and deploy it as a new version
    Deploy(DeployArgs),
    /// Call a function; its output goes to stdout
    Invoke(InvokeArgs),
    /// List functions
    List,
    /// Show a function: active version, interface, limits, versions, workers
    Show { function: FunctionRef },
    /// List a function's versions
    Versions { function: FunctionRef },
    /// Make an earlier version active again
    Rollback { function: FunctionRef, version: u32 },
    /// Delete a function and all its versions
    Rm { function: FunctionRef },
    /// Grant a role on a function to an e-mail (works before they have an account)
    Share(crate::identity::FnShareArgs),
    /// Take back a share
    Unshare {
        function: FunctionRef,
        email: String,
    },
    /// List a function's shares
    Shares { function: FunctionRef },
}

#[derive(Args)]
pub struct DeployArgs {
    /// The module: a WASI preview 1 command (`cargo build --target wasm32-wasip1`)
    module: PathBuf,
    /// Function name as namespace/name
    #[arg(long)]
    name: FunctionRef,
    #[command(flatten)]
    interface: InterfaceArgs,
    /// Deadline per call in milliseconds [server default: 10000]
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory cap per call in MiB [server default: 128]
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Static command-line argument (repeatable)
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Static, non-secret environment variable as KEY=VALUE (repeatable)
    #[arg(long = "env", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// Only workers with this label (key=value, repeatable) receive its calls
    #[arg(long = "require", value_parser = parse_pair)]
    requires: Vec<(String, String)>,
    /// Calls are safe to repeat: retry once on another worker if one is lost
    #[arg(long)]
    idempotent: bool,
    /// A function (ns/name) this one may call through the platform (repeatable);
    /// nested calls of any other are refused
    #[arg(long = "calls", value_name = "FUNCTION")]
    calls: Vec<FunctionRef>,
    /// A secret of the namespace (`swb secret set NAME`) its calls receive as the
    /// environment variable NAME (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Invocation records keep each call's input and output (the first 2 KiB of
    /// each), readable by who may deploy it and by each caller for their own calls
    #[arg(long)]
    keep_io: bool,
}

/// A function's published interface, from files.
#[derive(Args)]
pub struct InterfaceArgs {
    /// JSON Schema the input must match
    #[arg(long, value_name = "FILE")]
    input_schema: Option<PathBuf>,
    /// JSON Schema the output must match
    #[arg(long, value_name = "FILE")]
    output_schema: Option<PathBuf>,
    /// One-line description shown in the catalog
    #[arg(long)]
    description: Option<String>,
}

impl InterfaceArgs {
    pub fn read(self) -> anyhow::Result<Interface> {
        Ok(Interface {
            input: self
                .input_schema
                .as_deref()
                .map(swb_project::read_schema)
                .transpose()?,
            output: self
                .output_schema
                .as_deref()
                .map(swb_project::read_schema)
                .transpose()?,
            description: self.description,
        })
    }
}

#[derive(Args)]
pub struct InvokeArgs {
    function: FunctionRef,
    #[arg(help = crate::input::HELP, value_name = "INPUT")]
    input: Vec<String>,
    /// Call this version instead of the active one
    #[arg(long)]
    version: Option<u32>,
    /// A stored profile to pass to the function (`swb profile`)
    #[arg(long)]
    profile: Option<String>,
    /// Submit a durable job instead of calling now; prints the job's id
    #[arg(long)]
    job: bool,
    /// With --job: an uploaded blob (`swb blob put`) is the input
    #[arg(
        long,
        value_name = "DIGEST",
        requires = "job",
        conflicts_with = "input"
    )]
    blob: Option<Digest>,
    /// With --job: wait for it to end and print its result
    #[arg(long, requires = "job")]
    wait: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    function: FunctionRef,
    /// Keep printing new invocations as they happen
    #[arg(long, short)]
    follow: bool,
    /// Only invocations with this outcome (`ok` or an error code such as `timeout`)
    #[arg(long)]
    outcome: Option<String>,
    /// How many recent invocations to show
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// One JSON document per line, as records arrive (for --follow; --json prints
    /// one document)
    #[arg(long)]
    json_lines: bool,
}

#[derive(Subcommand)]
pub enum InvCmd {
    /// Show one invocation: outcome, error, duration, worker and stderr
    Show { id: String },
    /// Show the call tree an invocation belongs to: every nested call, with its
    /// function, version, worker, duration and outcome
    Tree { id: String },
}

#[derive(Args)]
pub struct LoginArgs {
    /// Read the token from this file instead of --token / stdin
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a failed command's error: the error table's shape with `--json`.
/// The exit status of a command that failed: 3 when the server could not be
/// reached (or answered what is not Switchboard), 1 for everything else: a call, a
/// job or a request that failed. Usage errors exit with 2 (clap's).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match client_error(e) {
        Some(ClientError::Transport { .. } | ClientError::Protocol { .. }) => 3,
        _ => 1,
    }
}

/// The server's (or the connection's) error a command failed with, if that is how
/// it failed.
fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.downcast_ref::<ClientError>()
        .or_else(|| e.downcast_ref::<InvokeError>().map(|i| &i.error))
}

pub fn report_error(e: &anyhow::Error, json: bool) {
    let api = client_error(e);
    let invocation = e
        .downcast_ref::<InvokeError>()
        .and_then(|i| i.invocation_id.clone());
    match (api, json) {
        (Some(ClientError::Api(error)), true) => {
            let _ = print_json(&ErrorBody {
                error: error.clone(),
            });
        }
        (Some(ClientError::Api(error)), false) => {
            eprintln!("error: {}: {}", error.code, error.message);
            if error.details.as_object().is_some_and(|d| !d.is_empty()) {
                eprintln!("details: {}", error.details);
            }
        }
        (Some(ClientError::Transport { url, error }), false) if error.is_connect() => {
            eprintln!("error: {e:#}");
            if format!("{e:#}").contains("certificate") {
                eprintln!(
                    "hint: {url} has a certificate this CLI does not trust; for a server with a \
                     self-signed one, set SWB_TLS_PIN to its fingerprint (the server prints it \
                     at start; `swb tls fingerprint <cert>`)"
                );
            } else {
                eprintln!(
                    "hint: no server answers at {url}: start one with `swb up`, or point --server \
                     (SWB_URL) at yours; `swb status` shows what this CLI uses"
                );
            }
        }
        _ => eprintln!("error: {e:#}"),
    }
    if let (Some(id), false) = (invocation, json) {
        eprintln!("see `swb inv show {id}` for the invocation record");
    }
    if let (Some(hint), false) = (e.downcast_ref::<Hint>(), json) {
        eprintln!("hint: {hint}");
    }
}

/// A suggestion printed after an error.
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub async fn function(global: &Global, cmd: FnCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    let named = cmd.function().cloned();
    let result = run_function(global, &client, cmd).await;
    match (result, named) {
        (Err(e), Some(named)) if not_found(&e) => match similar(&client, &named).await {
            Some(close) => Err(e.context(Hint(format!("did you mean {close}?")))),
            None => Err(e),
        },
        (result, _) => result,
    }
}

/// Whether a command failed because the server said `not_found`.
pub fn not_found(e: &anyhow::Error) -> bool {
    client_error(e).and_then(ClientError::code) == Some(swb_api::ErrorCode::NotFound)
}

/// The visible function whose name is closest to a misspelt one, if any is close.
async fn similar(client: &swb_client::Client, named: &FunctionRef) -> Option<FunctionRef> {
    let wanted = named.to_string();
    client
        .functions()
        .await
        .ok()?
        .functions
        .into_iter()
        .map(|f| {
            (
                strsim::jaro_winkler(&wanted, &f.function.to_string()),
                f.function,
            )
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, f)| f)
}

impl FnCmd {
    /// The function the command names.
    fn function(&self) -> Option<&FunctionRef> {
        match self {
            FnCmd::Invoke(a) => Some(&a.function),
            FnCmd::Show { function }
            | FnCmd::Versions { function }
            | FnCmd::Rollback { function, .. }
            | FnCmd::Rm { function }
            | FnCmd::Shares { function }
            | FnCmd::Unshare { function, .. } => Some(function),
            FnCmd::Deploy(_) | FnCmd::List | FnCmd::Share(_) => None,
        }
    }
}

async fn run_function(
    global: &Global,
    client: &swb_client::Client,
    cmd: FnCmd,
) -> anyhow::Result<()> {
    match cmd {
        FnCmd::Share(args) => crate::identity::share_function(global, args).await,
        FnCmd::Unshare { function, email } => {
            crate::identity::unshare_function(global, function, email).await
        }
        FnCmd::Shares { function } => crate::identity::function_shares(global, function).await,
        FnCmd::Deploy(args) => deploy(global, client, args).await,
        FnCmd::Invoke(args) => {
            if args.job {
                let job = swb_api::SubmitJob {
                    function: args.function.to_string(),
                    version: args.version,
                    input: crate::input::read_json(client, &args.function, &args.input).await?,
                    input_blob: args.blob,
                    profile: args.profile,
                    idempotency_key: None,
                    max_attempts: None,
                    timeout_ms: None,
                };
                return crate::data::submit(global, client, &job, args.wait).await;
            }
            let input = crate::input::read(client, &args.function, &args.input).await?;
            let inv = client
                .invoke_with(&args.function, args.version, args.profile.as_deref(), input)
                .await?;
            if global.json {
                let output = serde_json::from_slice::<Value>(&inv.output).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&inv.output).into_owned())
                });
                return print_json(&serde_json::json!({
                    "invocation_id": inv.id,
                    "version": inv.version,
                    "worker": inv.worker,
                    "duration_us": inv.duration_us,
                    "output": output,
                }));
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&inv.output)?;
            if out.is_terminal() && !inv.output.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        FnCmd::List => {
            let list = client.functions().await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .functions
                .iter()
                .map(|f| {
                    vec![
                        f.function.to_string(),
                        f.kind.as_str().into(),
                        f.active_version.to_string(),
                        time(f.updated_at),
                        f.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table::print(
                &["FUNCTION", "KIND", "VERSION", "UPDATED", "DESCRIPTION"],
                &rows,
            );
            Ok(())
        }
        FnCmd::Show { function } => {
            let d = client.function(&function).await?;
            if global.json {
                return print_json(&d);
            }
            let a = &d.active;
            println!("function:    {}", d.function);
            println!("kind:        {}", d.kind.as_str());
            println!(
                "version:     {} (of {})",
                d.active_version,
                d.versions.len()
            );
            if let Some(artefact) = a.artefact {
                println!("artefact:    {artefact}");
            }
            if let Some(desc) = &a.interface.description {
                println!("description: {desc}");
            }
            match d.kind {
                swb_api::FunctionKind::Hosted => println!(
                    "limits:      {} ms, {} MiB",
                    a.limits.timeout_ms, a.limits.memory_mb
                ),
                swb_api::FunctionKind::Remote => {
                    println!("limits:      {} ms", a.limits.timeout_ms)
                }
            }
            if !a.requires.is_empty() {
                let labels: Vec<String> =
                    a.requires.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("requires:    workers labelled {}", labels.join(", "));
            }
            if !a.calls.is_empty() {
                let calls: Vec<String> = a.calls.iter().map(ToString::to_string).collect();
                println!("calls:       {}", calls.join(", "));
            }
            if !a.secrets.is_empty() {
                println!("secrets:     {}", a.secrets.join(", "));
            }
            if a.keep_io {
                println!(
                    "records:     keep each call's input and output (its callers see their own)"
                );
            }
            for (label, schema) in [
                ("input", &a.interface.input),
                ("output", &a.interface.output),
            ] {
                match schema {
                    Some(s) => println!("{label:<12} {s}"),
                    None => println!("{label:<12} any bytes (no schema)"),
                }
            }
            if d.workers.is_empty() {
                println!("workers:     none connected can run it");
            }
            for w in &d.workers {
                let status = serde_json::to_value(w.status)?;
                let status = status.as_str().unwrap_or_default();
                match &w.error {
                    Some(e) => println!("worker:      {} {status}: {e}", w.name),
                    None => println!("worker:      {} {status}", w.name),
                }
            }
            Ok(())
        }
        FnCmd::Versions { function } => {
            let list = client.versions(&function).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .versions
                .iter()
                .map(|v| {
                    vec![
                        format!(
                            "{}{}",
                            v.version,
                            if v.version == list.active_version {
                                " *"
                            } else {
                                ""
                            }
                        ),
                        v.artefact.map(|a| a.to_string()).unwrap_or_default(),
                        format!("{} ms, {} MiB", v.limits.timeout_ms, v.limits.memory_mb),
                        time(v.created_at),
                    ]
                })
                .collect();
            table::print(&["VERSION", "ARTEFACT", "LIMITS", "CREATED"], &rows);
            Ok(())
        }
        FnCmd::Rollback { function, version } => {
            let d = client.rollback(&function, version).await?;
            if global.json {
                return print_json(&d);
            }
            println!("{} now runs version {}", d.function, d.active_version);
            Ok(())
        }
        FnCmd::Rm { function } => {
            client.delete(&function).await?;
            if global.json {
                return print_json(&serde_json::json!({ "deleted": function }));
            }
            println!("deleted {function}");
            Ok(())
        }
    }
}

async fn deploy(
    global: &Global,
    client: &swb_client::Client,
    args: DeployArgs,
) -> anyhow::Result<()> {
    let module = Bytes::from(
        std::fs::read(&args.module)
            .with_context(|| format!("cannot read {}", args.module.display()))?,
    );
    let interface = args.interface.read()?;
    publish(global, client, &args.name, module, |artefact| {
        DeployRequest {
            artefact,
            interface,
            limits: LimitsSpec {
                timeout_ms: args.timeout_ms,
                memory_mb: args.memory_mb,
            },
            args: args.args,
            env: args.env.into_iter().collect(),
            requires: args.requires.into_iter().collect(),
            idempotent: args.idempotent,
            calls: args.calls,
            secrets: args.secrets,
            keep_io: args.keep_io,
        }
    })
    .await
}

/// Uploads a module unless the server has it (saying which, and its size) and
/// deploys it as `function`'s new version.
pub async fn publish(
    global: &Global,
    client: &swb_client::Client,
    function: &FunctionRef,
    module: Bytes,
    request: impl FnOnce(Digest) -> DeployRequest,
) -> anyhow::Result<()> {
    let digest = Digest::of(&module);
    let size = table::size(module.len() as u64);
    let uploaded = !client.missing(vec![digest]).await?.is_empty();
    if uploaded {
        upload(client, digest, module, global.json).await?;
    }
    let response = client.deploy(function, &request(digest)).await?;
    if global.json {
        return print_json(&response);
    }
    if uploaded {
        println!("uploaded the module ({size})");
    } else {
        println!("the server has this module already ({size}): nothing uploaded");
    }
    let w = &response.workers;
    println!(
        "deployed {} version {} ({digest})",
        response.function, response.version.version
    );
    let total = w.compiled as usize + w.failed.len() + w.pending as usize;
    println!("compiled on {}/{total} connected workers", w.compiled);
    if w.pending > 0 {
        println!("{} workers still compiling", w.pending);
    }
    for f in &w.failed {
        println!("worker {} failed to load it: {}", f.worker, f.error);
    }
    Ok(())
}

async fn upload(
    client: &swb_client::Client,
    digest: Digest,
    module: Bytes,
    quiet: bool,
) -> anyhow::Result<()> {
    let len = module.len() as u64;
    let bar = if quiet || len < (1 << 20) {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .expect("valid template"),
        );
        bar
    };
    let progress = bar.clone();
    client
        .put_artefact(&digest, module, move |sent| progress.set_position(sent))
        .await?;
    bar.finish_and_clear();
    Ok(())
}

pub fn print_record(r: &InvocationRecord) {
    let error = r
        .error
        .as_ref()
        .map(|e| format!("  {}", e.message))
        .unwrap_or_default();
    // A nested call says who made it (`swb inv tree` shows the whole tree).
    let via = r
        .tree
        .as_ref()
        .map(|t| format!("  (called by {})", t.via))
        .unwrap_or_default();
    println!(
        "{}  {}  v{}  {}  {:>8.1} ms  {}{via}{error}",
        time(r.started_at),
        r.id,
        r.version.map_or("-".into(), |v| v.to_string()),
        r.worker.as_deref().unwrap_or("-"),
        r.duration_us as f64 / 1000.0,
        r.outcome.as_str(),
    );
    for line in r.stderr_tail.lines() {
        println!("    | {line}");
    }
}

pub async fn logs(global: &Global, args: LogsArgs) -> anyhow::Result<()> {
    if global.json && (args.follow || args.json_lines) {
        bail!("--json prints one document; follow with --json-lines instead");
    }
    let client = profile::client(global).await?;
    // A misspelled (or invisible) function is not_found, not an empty log.
    client.function(&args.function).await?;
    let filter = InvocationFilter {
        function: Some(args.function.to_string()),
        outcome: args.outcome,
        after: None,
        limit: Some(args.limit),
    };
    if global.json {
        return print_json(&client.invocations(&filter).await?);
    }
    let json_lines = args.json_lines;
    let print = |r: &InvocationRecord| {
        if json_lines {
            println!("{}", serde_json::to_string(r).expect("a record serialises"));
        } else {
            print_record(r);
        }
    };
    if !args.follow {
        let mut records = client.invocations(&filter).await?.invocations;
        records.reverse();
        records.iter().for_each(print);
        return Ok(());
    }
    follow(&client, &mut { filter }, print).await
}

/// Prints the records `filter` selects, oldest first, then each new one as it
/// arrives, until an error.
pub async fn follow(
    client: &swb_client::Client,
    filter: &mut InvocationFilter,
    print: impl Fn(&InvocationRecord),
) -> anyhow::Result<()> {
    loop {
        let mut records = client.invocations(filter).await?.invocations;
        records.reverse();
        records.iter().for_each(&print);
        std::io::stdout().flush()?;
        if let Some(last) = records.last() {
            filter.after = Some(last.id.clone());
        } else if filter.after.is_none() {
            // Nothing yet: follow from now on.
            filter.after = Some(swb_api::v7_first(swb_api::timestamp::now_ms() as u64));
        }
        filter.limit = Some(1000);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn invocation(global: &Global, cmd: InvCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    let id = match cmd {
        InvCmd::Show { id } => id,
        InvCmd::Tree { id } => return tree(global, &client, &id).await,
    };
    let r = client.invocation(&id).await?;
    if global.json {
        return print_json(&r);
    }
    println!("invocation: {}", r.id);
    println!("function:   {}", r.function);
    if let Some(v) = r.version {
        println!("version:    {v}");
    }
    println!("worker:     {}", r.worker.as_deref().unwrap_or("-"));
    println!("started:    {}", time(r.started_at));
    println!("duration:   {:.3} ms", r.duration_us as f64 / 1000.0);
    println!("outcome:    {}", r.outcome.as_str());
    if let Some(caller) = &r.caller {
        println!("caller:     {caller}");
    }
    if let Some(t) = &r.tree {
        println!("called by:  {} ({}, depth {})", t.via, t.parent, t.depth);
        println!("root:       {}", t.root);
        println!("acting for: {}", t.acting_for);
    }
    if let Some(io) = &r.io {
        println!("input:      {}", io.input);
        println!("output:     {}", io.output);
        if io.truncated {
            println!(
                "            (the first {} bytes of each)",
                swb_api::CallIo::MAX_BYTES
            );
        }
    }
    if let Some(e) = &r.error {
        println!("error:      {}: {}", e.code, e.message);
        if e.details.as_object().is_some_and(|d| !d.is_empty()) {
            println!("details:    {}", e.details);
        }
    }
    if !r.stderr_tail.is_empty() {
        println!("stderr:");
        for line in r.stderr_tail.lines() {
            println!("    | {line}");
        }
    }
    Ok(())
}

/// `swb inv tree`: the records of a call tree, drawn under their parents.
async fn tree(global: &Global, client: &swb_client::Client, id: &str) -> anyhow::Result<()> {
    let tree = client.invocation_tree(id).await?;
    if global.json {
        return print_json(&tree);
    }
    let ids: std::collections::HashSet<&str> =
        tree.invocations.iter().map(|r| r.id.as_str()).collect();
    let mut children: std::collections::BTreeMap<Option<&str>, Vec<&swb_api::InvocationRecord>> =
        Default::default();
    for r in &tree.invocations {
        // A record whose parent is hidden from the caller is shown at the top.
        let parent = r
            .tree
            .as_ref()
            .map(|t| t.parent.as_str())
            .filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(r);
    }
    fn draw(
        children: &std::collections::BTreeMap<Option<&str>, Vec<&swb_api::InvocationRecord>>,
        parent: Option<&str>,
        prefix: &str,
        top: bool,
    ) {
        let Some(list) = children.get(&parent) else {
            return;
        };
        for (i, r) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let (branch, next) = match (top, last) {
                (true, _) => ("", String::new()),
                (false, true) => ("└─ ", format!("{prefix}   ")),
                (false, false) => ("├─ ", format!("{prefix}│  ")),
            };
            let version = r.version.map(|v| format!(" v{v}")).unwrap_or_default();
            let outcome = match &r.error {
                Some(e) => format!("{}: {}", e.code, e.message),
                None => r.outcome.as_str().to_owned(),
            };
            println!(
                "{prefix}{branch}{}{version}  {outcome}  {:.3} ms  on {}  {}",
                r.function,
                r.duration_us as f64 / 1000.0,
                r.worker.as_deref().unwrap_or("-"),
                r.id
            );
            draw(children, Some(&r.id), &next, false);
        }
    }
    if tree.invocations.is_empty() {
        println!("no records of the tree of {id} are visible to you");
    }
    draw(&children, None, "", true);
    Ok(())
}

/// `swb status`: which servers this CLI uses and whether they answer, which token
/// and whose it is, and the workers connected.
pub async fn status(global: &Global) -> anyhow::Result<()> {
    let urls = profile::server_urls(global)?;
    let token = profile::token_from(global);
    let mut report = serde_json::Map::new();
    let mut servers = Vec::new();
    let mut reachable = None;
    let mut first_error = None;
    for url in &urls {
        let client = swb_client::Client::new(url, "");
        let health = client.health().await;
        if !global.json {
            match &health {
                Ok(h) => println!("server   {url}  answers (swb {})", h.version),
                Err(e) => println!("server   {url}  does not answer: {e}"),
            }
        }
        servers.push(serde_json::json!({
            "url": url,
            "answers": health.is_ok(),
            "version": health.as_ref().ok().map(|h| h.version.clone()),
        }));
        match health {
            Ok(_) if reachable.is_none() => reachable = Some(url.clone()),
            Err(e) if first_error.is_none() => first_error = Some(e),
            _ => {}
        }
    }
    report.insert("servers".into(), servers.into());
    // Why it cannot go on: no server answers (exit 3, with the hint), or no token.
    let found = match (reachable, first_error) {
        (Some(url), _) => token.map(|t| (url, t)),
        (None, Some(e)) => Err(e.into()),
        (None, None) => unreachable!("server_urls is never empty"),
    };
    let (url, (token, source)) = match found {
        Ok(found) => found,
        Err(e) => {
            if global.json {
                print_json(&report)?;
            }
            return Err(e);
        }
    };
    let client = swb_client::Client::new(&url, &token);
    let me = client.me().await?;
    let workers = client.workers().await?.workers;
    if global.json {
        report.insert("token_from".into(), source.into());
        report.insert("me".into(), serde_json::to_value(&me)?);
        report.insert("workers".into(), serde_json::to_value(&workers)?);
        return print_json(&report);
    }
    println!(
        "token    from {source}: {} (scopes: {})",
        me.token_id,
        me.scopes.join(" ")
    );
    println!(
        "you      {}{}",
        me.user.email,
        if me.user.is_admin {
            ", administrator"
        } else {
            ""
        }
    );
    let busy: Vec<String> = workers
        .iter()
        .map(|w| format!("{} {}/{}", w.name, w.in_flight, w.capacity))
        .collect();
    println!(
        "workers  {} connected{}{}",
        workers.len(),
        if busy.is_empty() { "" } else { ": " },
        busy.join(", ")
    );
    Ok(())
}

pub async fn login(global: &Global, args: LoginArgs) -> anyhow::Result<()> {
    let server = profile::server_urls(global)?.join(",");
    let token = match (&args.token_file, &global.token) {
        (Some(path), _) => profile::read_token(path)?,
        (None, Some(t)) => t.clone(),
        (None, None) => {
            if std::io::stdin().is_terminal() {
                eprint!("token: ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    if token.is_empty() {
        bail!("no token given: use --token, --token-file, or type it on stdin");
    }
    let client = swb_client::Client::new(&server, &token);
    client
        .functions()
        .await
        .context("the server did not accept this token")?;
    let path = profile::save(&profile::Saved {
        server: Some(server.clone()),
        token: Some(token),
    })?;
    if global.json {
        return print_json(&serde_json::json!({ "server": server, "config": path }));
    }
    println!("logged in to {server}; saved to {}", path.display());
    Ok(())
}
