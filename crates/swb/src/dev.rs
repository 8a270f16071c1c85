//! The developer loop: `swb new`, `swb deploy`, `swb serve` of a project folder,
//! and `swb dev` (rebuild, redeploy or restart on every save, with the logs).

use crate::cli::{follow, not_found, print_record, publish};
use crate::run::{ExecServe, serve_exec};
use crate::{Global, profile};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser};
use std::path::{Path, PathBuf};
use std::time::Duration;
use swb_api::protocol::ServedFunction;
use swb_api::{DeployRequest, FunctionRef, LimitsSpec};
use swb_client::InvocationFilter;
use swb_project::{Kind, Project, TEMPLATES, Template};
use tokio::sync::mpsc;

#[derive(Args)]
pub struct NewArgs {
    /// What to make
    #[arg(value_parser = templates())]
    template: String,
    /// The function: namespace/name, or a name in your own namespace (asks the
    /// server which that is)
    function: String,
    /// The folder to create [default: ./NAME]
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn templates() -> PossibleValuesParser {
    PossibleValuesParser::new(
        TEMPLATES
            .iter()
            .map(|t| PossibleValue::new(t.name).help(t.about)),
    )
}

#[derive(Args)]
pub struct ProjectArgs {
    /// The project folder [default: this folder, or the nearest above it with a
    /// switchboard.toml]
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl ProjectArgs {
    fn find(&self) -> anyhow::Result<Project> {
        Ok(Project::find(
            self.dir.as_deref().unwrap_or(Path::new(".")),
        )?)
    }
}

/// `swb new TEMPLATE NAME`.
pub async fn new(global: &Global, args: NewArgs) -> anyhow::Result<()> {
    let template = Template::named(&args.template)?;
    let function = match args.function.parse::<FunctionRef>() {
        Ok(f) => f,
        Err(_) if !args.function.contains('/') => own_function(global, &args.function).await?,
        Err(e) => bail!(e),
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(function.name()));
    let files = template.create(&function, &dir)?;
    println!(
        "created {} in {}/ ({}):",
        function,
        dir.display(),
        template.about
    );
    for f in files {
        println!("  {}", f.strip_prefix(&dir).unwrap_or(&f).display());
    }
    println!("next: cd {} and read its README.md", dir.display());
    Ok(())
}

/// `name` in the caller's own namespace.
async fn own_function(global: &Global, name: &str) -> anyhow::Result<FunctionRef> {
    let me = profile::client(global).await?.me().await.with_context(|| {
        format!("to put {name:?} in your namespace the server must say which it is; or name it namespace/{name}")
    })?;
    Ok(FunctionRef::new(&me.user.namespace.to_string(), name)?)
}

/// `swb deploy`: builds the project and deploys it as a new version.
pub async fn deploy(global: &Global, args: ProjectArgs) -> anyhow::Result<()> {
    let project = args.find()?;
    let client = profile::client(global).await?;
    deploy_project(global, &client, project).await
}

async fn deploy_project(
    global: &Global,
    client: &swb_client::Client,
    project: Project,
) -> anyhow::Result<()> {
    let m = &project.manifest;
    if project.kind() != Kind::Hosted {
        bail!(
            "{} is a remote function: its code stays on your machines, so there is nothing \
             to upload. Serve it from its folder with `swb serve` (or `swb dev` while you work)",
            m.name
        );
    }
    if let Some(command) = m.build.as_ref().and_then(|b| b.command.as_ref()) {
        eprintln!("building {}: {command}", m.name);
    }
    let (module, interface, project) = tokio::task::spawn_blocking(move || {
        let module = project.build()?;
        let interface = project.interface()?;
        anyhow::Ok((module, interface, project))
    })
    .await??;
    let m = &project.manifest;
    publish(global, client, &m.name, Bytes::from(module), |artefact| {
        DeployRequest {
            artefact,
            interface,
            limits: LimitsSpec {
                timeout_ms: m.limits.timeout_ms,
                memory_mb: m.limits.memory_mb,
            },
            args: m.args.clone(),
            env: m.env.clone(),
            requires: m.require.clone(),
            idempotent: m.idempotent,
            calls: m.calls.clone(),
            secrets: m.secrets.clone(),
            keep_io: m.keep_io,
        }
    })
    .await?;
    for (name, value) in &m.profiles {
        client.put_profile(&m.name, name, value).await?;
        if !global.json {
            println!("profile {name} set");
        }
    }
    Ok(())
}

/// `swb serve` in a project folder: the exec adapter with the manifest's command,
/// or the manifest's program, which serves the function itself.
pub async fn serve(global: &Global, dir: &Path, name: Option<String>) -> anyhow::Result<()> {
    let project = Project::find(dir)?;
    match project.kind() {
        Kind::Hosted => bail!(
            "{} is a hosted function: the platform runs it. Publish it with `swb deploy`",
            project.manifest.name
        ),
        Kind::Exec => {
            let spec = exec_spec(&project, name, false)?;
            serve_exec(global, spec, crate::run::shutdown_signal()).await
        }
        Kind::Program => {
            let mut child = program(global, &project, false)?;
            let status = child.wait().await?;
            if !status.success() {
                bail!("{} ended: {status}", describe(&project));
            }
            Ok(())
        }
    }
}

/// The exec adapter's settings from a manifest.
fn exec_spec(project: &Project, name: Option<String>, replace: bool) -> anyhow::Result<ExecServe> {
    let m = &project.manifest;
    let serve = m.serve.as_ref().context("no [serve]")?;
    let (program, args) = serve
        .exec
        .as_ref()
        .and_then(|c| c.split_first())
        .context("[serve] has no exec command")?;
    Ok(ExecServe {
        function: ServedFunction {
            function: m.name.clone(),
            interface: project.interface()?,
            replace,
            idempotent: m.idempotent,
            timeout_ms: m.limits.timeout_ms,
            calls: m.calls.clone(),
            secrets: m.secrets.clone(),
            keep_io: m.keep_io,
        },
        exec: swb_worker::Exec::new(program.clone(), args.to_vec()).in_dir(&project.dir),
        concurrency: serve.concurrency.unwrap_or(4),
        labels: serve.labels.clone(),
        name,
        max_backoff_ms: 30_000,
    })
}

/// Starts the manifest's `run` program in the project folder, told where the
/// server is and with which token (and, under `swb dev`, to replace the
/// function's interface when it changed).
fn program(
    global: &Global,
    project: &Project,
    replace: bool,
) -> anyhow::Result<tokio::process::Child> {
    let (program, args) = project
        .manifest
        .serve
        .as_ref()
        .and_then(|s| s.run.as_ref())
        .and_then(|c| c.split_first())
        .context("[serve] has no run command")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&project.dir)
        .env("SWB_URL", profile::server_urls(global)?.join(","))
        .env("SWB_TOKEN", profile::token(global)?)
        .kill_on_drop(true);
    if replace {
        command.env("SWB_REPLACE", "1");
    }
    swb_worker::die_with_this_process(&mut command);
    command
        .spawn()
        .with_context(|| format!("cannot start {}", describe(project)))
}

fn describe(project: &Project) -> String {
    let run = project.manifest.serve.as_ref().and_then(|s| s.run.as_ref());
    format!("`{}`", run.map(|c| c.join(" ")).unwrap_or_default())
}

/// `swb dev`: deploys (hosted) or serves (remote) the project, again on every
/// saved change, and prints the function's calls as they happen.
pub async fn dev(global: &Global, args: ProjectArgs) -> anyhow::Result<()> {
    let mut project = args.find()?;
    let client = profile::client(global).await?;
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let root = project.dir.clone();
    let mut debouncer = notify_debouncer_mini::new_debouncer(
        Duration::from_millis(200),
        move |events: notify_debouncer_mini::DebounceEventResult| {
            let relevant = match events {
                Ok(events) => events
                    .iter()
                    .any(|e| !ignored(e.path.strip_prefix(&root).unwrap_or(&e.path))),
                Err(_) => true,
            };
            if relevant {
                let _ = changed_tx.send(());
            }
        },
    )?;
    for path in project.watched() {
        debouncer
            .watcher()
            .watch(
                &path,
                notify_debouncer_mini::notify::RecursiveMode::Recursive,
            )
            .with_context(|| format!("cannot watch {}", path.display()))?;
    }
    let logs = tokio::spawn(calls_of(client.clone(), project.manifest.name.clone()));
    let stop = crate::run::signal();
    tokio::pin!(stop);
    loop {
        let kind = project.kind();
        eprintln!("-- {} ({})", project.manifest.name, what(kind));
        // Runs until the next change (a remote function), or once (hosted).
        let running = async {
            match kind {
                Kind::Hosted => {
                    if let Err(e) = deploy_project(global, &client, project.clone()).await {
                        eprintln!("error: {e:#}");
                    }
                    std::future::pending::<()>().await;
                }
                Kind::Exec => match exec_spec(&project, None, true) {
                    Ok(spec) => {
                        let stopped = std::future::pending::<()>();
                        if let Err(e) = serve_exec(global, spec, stopped).await {
                            eprintln!("error: {e:#}");
                        }
                    }
                    Err(e) => eprintln!("error: {e:#}"),
                },
                Kind::Program => match program(global, &project, true) {
                    Ok(mut child) => match child.wait().await {
                        Ok(status) => eprintln!("{} ended: {status}", describe(&project)),
                        Err(e) => eprintln!("error: {e}"),
                    },
                    Err(e) => eprintln!("error: {e:#}"),
                },
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = running => unreachable!("runs until a change"),
            _ = changed.recv() => {}
            _ = &mut stop => break,
        }
        // Several saves in a row make one rebuild.
        while changed.try_recv().is_ok() {}
        eprintln!(
            "-- changed: {}",
            if kind == Kind::Hosted {
                "rebuilding"
            } else {
                "restarting"
            }
        );
        match Project::load(&project.dir.join(swb_project::FILE)) {
            Ok(p) => project = p,
            Err(e) => eprintln!("error: {e} (keeping the previous manifest)"),
        }
    }
    logs.abort();
    Ok(())
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Hosted => "hosted: deployed on every save",
        Kind::Exec => "served here by the exec adapter, restarted on every save",
        Kind::Program => "served here by its program, restarted on every save",
    }
}

/// Build output, version control, caches and editors' hidden files do not count
/// as changes (`path` is relative to the project folder).
fn ignored(path: &Path) -> bool {
    path.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c == "target" || c == "__pycache__" || c.starts_with('.') && c.len() > 1 && c != ".."
    })
}

/// Prints the function's calls from now on; before the function exists (a remote
/// one is created when first served), waits for it.
async fn calls_of(client: swb_client::Client, function: FunctionRef) {
    let mut filter = InvocationFilter {
        function: Some(function.to_string()),
        outcome: None,
        after: Some(swb_api::v7_first(swb_api::timestamp::now_ms() as u64)),
        limit: Some(1000),
    };
    loop {
        if let Err(e) = follow(&client, &mut filter, print_record).await
            && !not_found(&e)
        {
            eprintln!("logs: {e:#}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_output_and_hidden_files_are_not_changes() {
        use std::path::Path;
        assert!(super::ignored(Path::new(
            "target/wasm32-wasip1/release/x.wasm"
        )));
        assert!(super::ignored(Path::new("src/.main.rs.swp")));
        assert!(super::ignored(Path::new("__pycache__/main.pyc")));
        assert!(!super::ignored(Path::new("src/main.rs")));
        assert!(!super::ignored(Path::new("./main.sh")));
    }
}
