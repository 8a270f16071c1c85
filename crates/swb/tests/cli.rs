//! The CLI as a user runs it: `swb up`, then `swb fn …`, `swb logs`, `swb inv show`
//! and `swb worker list` against it.

mod common;

use common::{Cli, bin};
use serde_json::Value;
use std::process::Command;
use swb_testkit::{ServerProc, guests};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deploys_calls_and_reads_logs_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join(".swb"), &[]).unwrap();
    let cli = Cli::new(&server.url, &server.token, dir.path());
    let module = dir.path().join("echo.wasm");
    std::fs::write(&module, guests::echo()).unwrap();
    let failing = dir.path().join("exits.wasm");
    std::fs::write(&failing, guests::exits_3()).unwrap();
    let module = module.to_str().unwrap();

    let deployed = cli.json(&[
        "fn",
        "deploy",
        module,
        "--name",
        "admin/echo",
        "--timeout-ms",
        "2000",
    ]);
    assert_eq!(deployed["version"], 1);
    assert_eq!(
        deployed["workers"]["compiled"], 1,
        "the in-process worker compiled it"
    );
    assert_eq!(deployed["limits"]["timeout_ms"], 2000);
    let text = cli.ok(&["fn", "deploy", module, "--name", "admin/echo"]);
    assert!(text.contains("deployed admin/echo version 2"), "{text}");

    assert_eq!(cli.ok(&["fn", "invoke", "admin/echo", "hello"]), "hello");
    let inv = cli.json(&["fn", "invoke", "admin/echo", r#"{"a":1}"#]);
    assert_eq!(inv["output"]["a"], 1);
    assert_eq!(inv["worker"], "local");

    let list = cli.json(&["fn", "list"]);
    assert_eq!(list["functions"][0]["function"], "admin/echo");
    let show = cli.ok(&["fn", "show", "admin/echo"]);
    assert!(
        show.contains("version:     2 (of 2)") && show.contains("local ready"),
        "{show}"
    );
    let versions = cli.ok(&["fn", "versions", "admin/echo"]);
    assert!(versions.contains("2 *"), "{versions}");
    assert!(
        cli.ok(&["fn", "rollback", "admin/echo", "1"])
            .contains("now runs version 1")
    );

    // A failing call: exit code 1, the error on stderr, and a pointer to its record.
    cli.ok(&[
        "fn",
        "deploy",
        failing.to_str().unwrap(),
        "--name",
        "admin/fails",
    ]);
    let out = cli.run(&["fn", "invoke", "admin/fails"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: function_error"), "{stderr}");
    let id = stderr
        .split("swb inv show ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("the error names the invocation")
        .to_owned();
    let out = cli.run(&["fn", "invoke", "admin/fails", "--json"]);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["code"], "function_error");

    let record = swb_testkit::eventually("the record", std::time::Duration::from_secs(10), || {
        let out = cli.run(&["inv", "show", &id]);
        async move {
            out.status
                .success()
                .then(|| String::from_utf8(out.stdout).unwrap())
        }
    })
    .await;
    assert!(record.contains("outcome:    function_error"), "{record}");
    assert!(record.contains("| boom: something went wrong"), "{record}");
    let logs = cli.ok(&["logs", "admin/fails"]);
    assert!(
        logs.contains("function_error") && logs.contains("| boom"),
        "{logs}"
    );

    // `swb logs --follow` prints calls as they happen.
    let mut follow = Command::new(bin())
        .args(["logs", "admin/echo", "--follow", "--json-lines"])
        .env("SWB_URL", &server.url)
        .env("SWB_TOKEN", &server.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(follow.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let fresh = cli.json(&["fn", "invoke", "admin/echo", "followed"]);
    let id = fresh["invocation_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("the followed call shows up");
        if serde_json::from_str::<Value>(&line).unwrap()["id"] == id.as_str() {
            break;
        }
    }
    follow.kill().unwrap();
    follow.wait().unwrap();

    // `swb bench invoke` loads any function of any server.
    let load = cli.json(&[
        "bench",
        "invoke",
        "admin/echo",
        "--concurrency",
        "2",
        "--duration",
        "1",
    ]);
    assert!(
        load["requests"].as_u64() > Some(0) && load["errors"] == 0,
        "{load}"
    );
    // A load of a function that cannot be called says why before it starts.
    let out = cli.run(&[
        "bench",
        "invoke",
        "admin/nope",
        "--concurrency",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not_found: function admin/nope not found"),
        "{err}"
    );

    let workers = cli.json(&["worker", "list"]);
    assert_eq!(workers["workers"][0]["name"], "local");
    let out = cli.run(&["fn", "show", "admin/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));

    // `swb login` saves the server and token for later commands.
    let out = Command::new(bin())
        .args(["login", "--server", &server.url, "--token-file"])
        .arg(server.data_dir.join("admin.token"))
        .env("SWB_CONFIG", dir.path().join("config.json"))
        .env_remove("SWB_URL")
        .env_remove("SWB_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin())
        .args(["fn", "invoke", "admin/echo", "saved"])
        .env("SWB_CONFIG", dir.path().join("config.json"))
        .env_remove("SWB_URL")
        .env_remove("SWB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "saved");

    let mut server = server;
    assert!(
        server.terminate().unwrap().success(),
        "clean exit on SIGTERM"
    );
}

#[test]
fn capacities_a_server_would_refuse_are_refused_before_starting() {
    for args in [
        &["up", "--capacity", "20000"][..],
        &["worker", "--capacity", "0"],
        &["serve", "admin/x", "--concurrency", "10001", "--", "cat"],
    ] {
        let out = Command::new(bin()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("from 1 to 10000"), "{args:?}: {stderr}");
    }
}

/// Two workers started on one machine without `--name` are told apart: the host
/// name and a short random suffix. `swb worker list` shows their labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_one_host_get_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "server", &dir.path().join("data"), &[]).unwrap();
    let start = |i: u32| {
        let cache = dir.path().join(format!("cache{i}"));
        let args = [
            "worker",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--label",
            "zone=a",
        ];
        let log = dir.path().join(format!("w{i}.log"));
        swb_testkit::WorkerProc::spawn(bin(), &args, &server, "", &log).unwrap()
    };
    let _workers = [start(1), start(2)];
    let client = server.client();
    let names = swb_testkit::eventually(
        "two workers",
        std::time::Duration::from_secs(20),
        || async {
            let list = client.workers().await.ok()?;
            (list.workers.len() == 2)
                .then(|| list.workers.into_iter().map(|w| w.name).collect::<Vec<_>>())
        },
    )
    .await;
    assert_ne!(names[0], names[1]);
    let host = swb_server::hostname();
    for name in &names {
        let suffix = name
            .strip_prefix(&format!("{host}-"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            suffix.len() == 4 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }
    let cli = Cli::new(&server.url, &server.token, dir.path());
    let table = cli.ok(&["worker", "list"]);
    // One server: no replica column.
    assert!(
        table.contains("LABELS") && table.contains("zone=a") && !table.contains("REPLICA"),
        "{table}"
    );
}

/// Scripts can trust the CLI: exit 0 when it worked, 1 when the call, the job or
/// the request failed (with the error on stderr), 3 when the server is out of
/// reach; a closed pipe ends it quietly; `--json` prints one document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_can_trust_the_cli() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join(".swb"), &[]).unwrap();
    let client = server.client();
    let cli = Cli::new(&server.url, &server.token, dir.path());
    swb_testkit::deploy(&client, "admin/fails", guests::exits_3(), |_| {})
        .await
        .unwrap();
    swb_testkit::deploy(&client, "admin/slow", guests::sleeps(30_000), |r| {
        r.limits.timeout_ms = Some(60_000);
    })
    .await
    .unwrap();

    // A failed job: printed, with its error and stderr, and exit 1.
    let out = cli.run(&[
        "job",
        "submit",
        "admin/fails",
        "{}",
        "--max-attempts",
        "1",
        "--wait",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("status:    failed") && stdout.contains("function_error"),
        "{stdout}"
    );
    assert!(
        stdout.contains("boom: something went wrong"),
        "the stderr tail: {stdout}"
    );
    assert!(stderr.contains("failed: function_error"), "{stderr}");

    // Cancelling a running job shows it cancelled, and waiting for it fails.
    let id = cli.ok(&["job", "submit", "admin/slow", "{}"]);
    let id = id.trim();
    swb_testkit::eventually(
        "the job to run",
        std::time::Duration::from_secs(10),
        || async {
            let job = client.job(id, None).await.ok()?;
            (job.status == swb_api::JobStatus::Running).then_some(())
        },
    )
    .await;
    let cancelled = cli.json(&["job", "cancel", id]);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cli.run(&["job", "wait", id]).status.code(), Some(1));

    // A misspelled function is not_found, not an empty log or job list.
    for args in [
        &["logs", "admin/fial"][..],
        &["job", "list", "--function", "admin/fial"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not_found"),
            "{args:?}"
        );
    }
    assert!(
        cli.ok(&["job", "list", "--function", "admin/slow"])
            .contains(id)
    );
    // --json is one document (once the record is written, a moment after the call).
    let filter = swb_client::InvocationFilter {
        function: Some("admin/fails".into()),
        ..Default::default()
    };
    swb_testkit::eventually("the record", std::time::Duration::from_secs(10), || async {
        let list = client.invocations(&filter).await.ok()?;
        (!list.invocations.is_empty()).then_some(())
    })
    .await;
    let logs = cli.json(&["logs", "admin/fails"]);
    assert_eq!(
        logs["invocations"].as_array().map(Vec::len),
        Some(1),
        "{logs}"
    );

    // A benchmark of a misspelled function says so before it starts timing.
    let out = cli.run(&["bench", "invoke", "admin/fial", "--duration", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: not_found:"), "{stderr}");

    // Out of reach: 3.
    let away = Cli::new("http://127.0.0.1:1", &server.token, dir.path());
    let out = away.run(&["fn", "list"]);
    assert_eq!(out.status.code(), Some(3));
    // The cause, said once.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot reach http://127.0.0.1:1: ")
            && stderr.matches("Connection refused").count() == 1,
        "{stderr}"
    );

    // A reader that went away: the output stops quietly (SIGPIPE, as for `head`).
    let mut child = Command::new(bin())
        .args(["job", "list"])
        .env("SWB_URL", &server.url)
        .env("SWB_TOKEN", &server.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(13),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_takes_files_typed_pairs_profiles_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join(".swb"), &[]).unwrap();
    let cli = Cli::new(&server.url, &server.token, dir.path());
    let module = dir.path().join("echo.wasm");
    std::fs::write(&module, guests::echo()).unwrap();
    let schema = dir.path().join("in.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"name":{"type":"string"},"n":{"type":"integer"},
            "loud":{"type":"boolean"},"tags":{"type":"array"}},"additionalProperties":false}"#,
    )
    .unwrap();
    cli.ok(&[
        "fn",
        "deploy",
        module.to_str().unwrap(),
        "--name",
        "admin/echo",
        "--input-schema",
        schema.to_str().unwrap(),
    ]);

    // key=value pairs, typed by the input schema; key:=JSON for any value.
    let out = cli.ok(&[
        "fn",
        "invoke",
        "admin/echo",
        "name=42",
        "n=7",
        "loud=true",
        "tags:=[1]",
    ]);
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        out,
        serde_json::json!({"name": "42", "n": 7, "loud": true, "tags": [1]})
    );
    let bad = cli.run(&["fn", "invoke", "admin/echo", "n=seven"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("n is an integer"));
    // @FILE reads the input from a file.
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"name":"from a file"}"#).unwrap();
    let at = format!("@{}", input.display());
    assert_eq!(
        cli.ok(&["fn", "invoke", "admin/echo", &at]),
        r#"{"name":"from a file"}"#
    );
    // --profile names a stored profile (the echo guest ignores it; an unknown one is refused).
    cli.ok(&["profile", "set", "admin/echo", "casual", r#"{"x":1}"#]);
    cli.ok(&[
        "fn",
        "invoke",
        "admin/echo",
        "--profile",
        "casual",
        "name=Ada",
    ]);
    let unknown = cli.run(&[
        "fn",
        "invoke",
        "admin/echo",
        "--profile",
        "nope",
        "name=Ada",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    // --job submits instead; --wait prints the job's end.
    let job = cli.json(&["fn", "invoke", "admin/echo", "--job", "--wait", "name=Jo"]);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"], serde_json::json!({"name": "Jo"}));
    // The same job again: a new job, the same input.
    let again = cli.ok(&["job", "resubmit", job["id"].as_str().unwrap()]);
    assert_ne!(again.trim(), job["id"].as_str().unwrap());
    let ended = cli.json(&["job", "wait", again.trim()]);
    assert_eq!(
        ended["result"],
        serde_json::json!({"name": "Jo"}),
        "{ended}"
    );
    // A misspelt name: not_found, with the closest visible function.
    let typo = cli.run(&["fn", "invoke", "admin/ecko", "{}"]);
    assert_eq!(typo.status.code(), Some(1));
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("not_found") && err.contains("did you mean admin/echo?"),
        "{err}"
    );
    // Blobs are listed by name (the file's, or --name) with a human size.
    let data = dir.path().join("readings.csv");
    std::fs::write(&data, "x\n".repeat(1500)).unwrap();
    let digest = cli.ok(&["blob", "put", data.to_str().unwrap()]);
    let listed = cli.ok(&["blob", "ls"]);
    assert!(
        listed.contains("readings.csv") && listed.contains("2.9 KiB"),
        "{listed}"
    );
    cli.ok(&["blob", "put", data.to_str().unwrap(), "--name", "march.csv"]);
    let listed = cli.json(&["blob", "ls"]);
    assert_eq!(listed["blobs"][0]["name"], "march.csv", "{listed}");
    assert_eq!(listed["blobs"][0]["digest"], digest.trim());
    // Shell completions.
    let bash = cli.ok(&["completions", "bash"]);
    assert!(bash.contains("complete") && bash.contains("swb"), "{bash}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_it_uses_and_fails_over_between_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join(".swb"), &[]).unwrap();
    // A port nothing listens on (bound, then closed).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };

    let status = Cli::new(&server.url, &server.token, dir.path()).ok(&["status"]);
    assert!(
        status.contains(&format!("{}  answers", server.url)),
        "{status}"
    );
    assert!(
        status.contains("token    from --token or SWB_TOKEN"),
        "{status}"
    );
    assert!(
        status.contains("administrator") && status.contains("workers  1 connected: local"),
        "{status}"
    );

    // A server's help lists no client flags; a client command's does.
    let help = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    for server in ["up", "server"] {
        let h = help(&[server]);
        assert!(
            !h.contains("--token") && !h.contains("--json") && h.contains("--listen"),
            "{h}"
        );
    }
    let h = help(&["fn", "list"]);
    assert!(h.contains("--token") && h.contains("--server"), "{h}");

    // Nothing answers: exit 3 and a hint to start a server.
    let down = Cli::new(&dead, &server.token, dir.path());
    for args in [&["status"][..], &["fn", "list"]] {
        let out = down.run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("swb up") && err.contains(&dead), "{err}");
    }

    // `fn show` names the labels a function requires and only the workers that have them.
    let module = dir.path().join("echo.wasm");
    std::fs::write(&module, guests::echo()).unwrap();
    let cli = Cli::new(&server.url, &server.token, dir.path());
    let m = module.to_str().unwrap();
    cli.ok(&[
        "fn",
        "deploy",
        m,
        "--name",
        "admin/gpu",
        "--require",
        "gpu=true",
    ]);
    let show = cli.ok(&["fn", "show", "admin/gpu"]);
    assert!(
        show.contains("requires:    workers labelled gpu=true"),
        "{show}"
    );
    assert!(
        show.contains("none connected can run it") && !show.contains("local"),
        "{show}"
    );
    cli.ok(&["fn", "deploy", m, "--name", "admin/any"]);
    assert!(
        cli.ok(&["fn", "show", "admin/any"])
            .contains("worker:      local")
    );

    // Several servers: the first that answers is used.
    let both = Cli::new(&format!("{dead},{}", server.url), &server.token, dir.path());
    assert!(both.ok(&["fn", "list"]).contains("FUNCTION"));

    // `swb up` on a taken port says so and creates nothing.
    let taken = server.url.trim_start_matches("http://");
    let data = dir.path().join("second");
    let out = Command::new(bin())
        .args([
            "up",
            "--listen",
            taken,
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another server may run there"), "{err}");
    assert!(!data.exists(), "a refused start left {}", data.display());
}
