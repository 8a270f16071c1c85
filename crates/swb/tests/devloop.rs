//! The developer loop through the real binary: `swb new` for each template, the
//! project's own test, `swb deploy` / `swb serve` from its switchboard.toml, and
//! `swb dev` redeploying (hosted) or restarting (remote) on a saved change.

mod common;

use common::{Cli, Cluster, bin};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use swb_api::FunctionRef;
use swb_client::Client;
use swb_testkit::{eventually, guests};

const BUILD_DEADLINE: Duration = Duration::from_secs(600);

/// A long-running `swb` command in a project (`swb dev`, `swb serve`), its output in
/// a file; stopped with SIGTERM when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(cluster: &Cluster, args: &[&str], log: PathBuf, path: Option<&str>) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("SWB_URL", &cluster.server.url)
            .env("SWB_TOKEN", &cluster.server.token)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        Self {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Ctrl-C would: it stops what it runs and exits cleanly.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn answers(client: &Client, function: &str, input: Value, expected: Value, what: &str) {
    let f: FunctionRef = function.parse().unwrap();
    let input = serde_json::to_vec(&input).unwrap();
    eventually(what, Duration::from_secs(60), || async {
        let out = client.invoke(&f, None, input.clone()).await.ok()?;
        let got: Value = serde_json::from_slice(&out.output).ok()?;
        (got == expected).then_some(())
    })
    .await;
}

/// A call the function's input schema refuses: `invalid_input`, never run.
async fn refuses(client: &Client, function: &str, input: &'static str) {
    let f: FunctionRef = function.parse().unwrap();
    let e = client.invoke(&f, None, input).await.unwrap_err();
    assert_eq!(
        common::api_error(e.error).code,
        swb_api::ErrorCode::InvalidInput
    );
}

fn new_project(cli: &Cli, template: &str, function: &str, dir: &Path) -> String {
    cli.ok(&["new", template, function, "--dir", dir.to_str().unwrap()])
}

/// Runs a program in `dir` (with `PATH` if given), which must succeed; its stdout.
fn run_in(dir: &Path, program: &str, args: &[&str], path: Option<&str>) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_project_is_served_and_restarted_on_every_save() {
    let c = Cluster::start(false, &[]).await;
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let dir = c.dir.path().join("words");
    let made = new_project(&cli, "exec", "admin/words", &dir);
    assert!(
        made.contains("main.sh") && made.contains("switchboard.toml"),
        "{made}"
    );
    // Its own test passes as made.
    run_in(&dir, "./test.sh", &[], None);
    // A second `swb new` into the folder is refused and changes nothing.
    let again = cli.run(&["new", "exec", "admin/words", "--dir", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // A remote project has nothing to deploy: the error says what to do instead.
    let deploy = cli.run(&["deploy", "--dir", dir.to_str().unwrap()]);
    assert!(!deploy.status.success());
    assert!(
        String::from_utf8_lossy(&deploy.stderr).contains("swb serve"),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    let dev = Running::start(
        &c,
        &["dev", "--dir", dir.to_str().unwrap()],
        c.dir.path().join("dev.log"),
        None,
    );
    answers(
        &c.client,
        "admin/words",
        json!({"text": "one two three"}),
        json!({"words": 3}),
        "the served command to count words",
    )
    .await;
    // The manifest's schema is published: a wrong input never reaches the command.
    refuses(&c.client, "admin/words", r#"{"txt":"x"}"#).await;

    // A saved change restarts it; the next calls run the new command.
    std::fs::write(
        dir.join("main.sh"),
        "#!/bin/sh\ncat > /dev/null\necho '{\"words\": 99}'\n",
    )
    .unwrap();
    answers(
        &c.client,
        "admin/words",
        json!({"text": "a b"}),
        json!({"words": 99}),
        "the changed command to be served",
    )
    .await;
    // The calls are printed as they happen, with the command's log.
    eventually(
        "swb dev to print the calls",
        Duration::from_secs(10),
        || async {
            let log = dev.log();
            (log.contains("-- changed: restarting") && log.contains("counting the words"))
                .then_some(())
        },
    )
    .await;
    let status = dev.stop();
    assert!(status.success(), "swb dev ended with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_project_is_redeployed_on_every_save() {
    let c = Cluster::start(true, &[]).await;
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let dir = c.dir.path().join("hello");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/module.wasm"), guests::prints("one")).unwrap();
    std::fs::write(
        dir.join("switchboard.toml"),
        r#"
name = "admin/hello"
description = "Says a number"
[build]
command = "cp src/module.wasm built.wasm"
artefact = "built.wasm"
watch = ["src"]
[limits]
timeout_ms = 3000
[profiles.loud]
volume = 11
"#,
    )
    .unwrap();
    // `swb deploy` builds and deploys, then says the module is there already.
    let first = cli.ok(&["deploy", "--dir", dir.to_str().unwrap()]);
    assert!(first.contains("uploaded the module"), "{first}");
    assert!(first.contains("deployed admin/hello version 1"), "{first}");
    assert!(first.contains("profile loud set"), "{first}");
    let second = cli.ok(&["deploy", "--dir", dir.to_str().unwrap()]);
    assert!(second.contains("nothing uploaded"), "{second}");
    let f: FunctionRef = "admin/hello".parse().unwrap();
    let detail = c.client.function(&f).await.unwrap();
    assert_eq!(
        detail.active.interface.description.as_deref(),
        Some("Says a number")
    );
    assert_eq!(detail.active.limits.timeout_ms, 3000);
    let loud = c.client.profile(&f, "loud").await.unwrap();
    assert_eq!(loud.value, json!({"volume": 11}));

    let dev = Running::start(
        &c,
        &["dev", "--dir", dir.to_str().unwrap()],
        c.dir.path().join("dev.log"),
        None,
    );
    eventually("swb dev to deploy", Duration::from_secs(30), || async {
        dev.log().contains("version 3").then_some(())
    })
    .await;
    std::fs::write(dir.join("src/module.wasm"), guests::prints("two")).unwrap();
    eventually(
        "the saved change to be deployed",
        Duration::from_secs(30),
        || async {
            let out = c.client.invoke(&f, None, "").await.ok()?;
            (&out.output[..] == b"two").then_some(())
        },
    )
    .await;
    // A broken build is reported and the loop goes on; the last version keeps serving.
    std::fs::remove_file(dir.join("src/module.wasm")).unwrap();
    eventually(
        "the failed build to be reported",
        Duration::from_secs(30),
        || async { dev.log().contains("failed").then_some(()) },
    )
    .await;
    let out = c.client.invoke(&f, None, "").await.unwrap();
    assert_eq!(&out.output[..], b"two");
    assert!(dev.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_project_deploys_with_schemas_from_its_types() {
    let c = Cluster::start(true, &[]).await;
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    // Without a namespace the function goes into the caller's own.
    let dir = c.dir.path().join("greeter");
    let made = new_project(&cli, "rust", "greeter", &dir);
    assert!(made.contains("admin/greeter"), "{made}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_in(&dir, &cargo, &["test", "--quiet"], None);
    let deployed = tokio::task::spawn_blocking({
        let dir = dir.clone();
        let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
        move || cli.ok(&["deploy", "--dir", dir.to_str().unwrap()])
    });
    let deployed = tokio::time::timeout(BUILD_DEADLINE, deployed)
        .await
        .expect("the build to end")
        .unwrap();
    assert!(
        deployed.contains("deployed admin/greeter version 1"),
        "{deployed}"
    );
    answers(
        &c.client,
        "admin/greeter",
        json!({"name": "Ada"}),
        json!({"greeting": "Hello, Ada."}),
        "the Rust template to greet",
    )
    .await;
    // The input schema is the Rust type's: unknown fields and a missing name are refused.
    let f: FunctionRef = "admin/greeter".parse().unwrap();
    let detail = c.client.function(&f).await.unwrap();
    let input = detail.active.interface.input.expect("an input schema");
    assert_eq!(input["required"], json!(["name"]), "{input}");
    refuses(&c.client, "admin/greeter", r#"{"nam":"Ada"}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_project_deploys_and_counts() {
    let c = Cluster::start(true, &[]).await;
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let dir = c.dir.path().join("wc");
    new_project(&cli, "c", "admin/wc", &dir);
    run_in(&dir, "./test.sh", &[], None);
    let deployed = cli.ok(&["deploy", "--dir", dir.to_str().unwrap()]);
    assert!(
        deployed.contains("deployed admin/wc version 1"),
        "{deployed}"
    );
    answers(
        &c.client,
        "admin/wc",
        json!("one two\nthree"),
        json!({"bytes": 13, "words": 3, "lines": 1}),
        "the C template to count",
    )
    .await;
    // The input schema says a string: an object never reaches the module.
    refuses(&c.client, "admin/wc", r#"{"text":"x"}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_project_is_served_with_the_sdk() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("SWB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    let venv_bin = python.parent().unwrap().to_owned();
    // `python3` in the manifest is the venv's, with the SDK.
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let c = Cluster::start(false, &[]).await;
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let dir = c.dir.path().join("hello-py");
    new_project(&cli, "python", "admin/hello-py", &dir);
    run_in(
        &dir,
        python.to_str().unwrap(),
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
        None,
    );
    let serve = Running::start(
        &c,
        &["serve", "--dir", dir.to_str().unwrap()],
        c.dir.path().join("serve.log"),
        Some(&path),
    );
    answers(
        &c.client,
        "admin/hello-py",
        json!({"name": "Ada", "excited": true}),
        json!({"greeting": "Hello, Ada!"}),
        "the Python template to greet",
    )
    .await;
    drop(serve);
}

#[test]
fn mistakes_in_a_project_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new("http://127.0.0.1:9", "swb_x", dir.path());
    // No manifest: say how to make one.
    let out = cli.run(&["deploy", "--dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("swb new"));
    // A manifest with a misspelt key names it.
    std::fs::write(
        dir.path().join("switchboard.toml"),
        "name = \"admin/x\"\ndescripton = \"typo\"\n[serve]\nexec = [\"./x\"]\n",
    )
    .unwrap();
    let out = cli.run(&["serve", "--dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("descripton") && err.contains("switchboard.toml"),
        "{err}"
    );
    // An unknown template lists the real ones.
    let out = cli.run(&["new", "cobol", "admin/x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        ["rust", "c", "python", "exec"]
            .iter()
            .all(|t| err.contains(t)),
        "{err}"
    );
}

/// A program serving its own functions with the Rust SDK compiles no wasmtime
/// (hosted calls are the `wasm` feature, which only `swb` turns on): that is what
/// keeps its cold build short.
#[test]
fn the_rust_sdk_builds_without_wasmtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |features: &[&str]| {
        let mut args = vec![
            "tree",
            "--locked",
            "--offline",
            "-p",
            "swb-worker",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ];
        args.extend_from_slice(features);
        run_in(Path::new(env!("CARGO_MANIFEST_DIR")), &cargo, &args, None)
    };
    let sdk = tree(&[]);
    assert!(sdk.contains("swb-client"), "{sdk}");
    assert!(
        !sdk.contains("wasmtime") && !sdk.contains("swb-runtime"),
        "{sdk}"
    );
    // The check can fail: with the feature the runtime is there.
    assert!(tree(&["--features", "wasm"]).contains("wasmtime"));
}
