//! Cluster mode: `swb server` replicas on the machine's real Postgres (a fresh database
//! per test) joined by its real NATS, with real worker processes.

mod common;

use common::{Replicas, all_ended, assert_code, assert_echoed, bin, submit, submit_echo};
use std::time::Duration;
use swb_api::Role;
use swb_api::{CreateTokenRequest, ErrorCode, FunctionRef, WorkerCodeStatus};
use swb_client::{Client, ShareTarget};
use swb_testkit::{ServerProc, TestDatabase, connected, deploy, eventually, guests};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_jobs_and_changes_cross_replicas() {
    // The replicas share one secrets key, as they share the database.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secrets.key");
    let r = Replicas::start_with(2, &["--secrets-key-file", key.to_str().unwrap()]).await;
    let (a, b) = (r.client(0), r.client(1));
    // Workers only on replica A.
    let _svc = r.echo_service("svc", "admin/cat", "0", &r.servers[0].url, &[]);
    let _wasm = r.wasm_worker("wasm", &r.servers[0].url);
    connected(&a, "svc").await;
    connected(&a, "wasm").await;
    // B lists the cluster's workers, although none is connected to it, each with
    // the replica it is connected to (named host:port by default).
    let a_port = r.servers[0].url.rsplit(':').next().unwrap().to_owned();
    let a_name = format!("{}:{a_port}", swb_server::hostname());
    for (listing, client) in [("B", &b), ("A", &a)] {
        let mut workers: Vec<(String, Option<String>)> = client
            .workers()
            .await
            .unwrap()
            .workers
            .into_iter()
            .map(|w| (w.name, w.replica))
            .collect();
        workers.sort();
        assert_eq!(
            workers,
            [
                ("svc".into(), Some(a_name.clone())),
                ("wasm".into(), Some(a_name.clone()))
            ],
            "{listing}'s listing"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let table = common::Cli::new(&r.servers[1].url, &r.servers[1].token, dir.path())
        .ok(&["worker", "list"]);
    assert!(
        table.contains("REPLICA") && table.contains(&a_name),
        "{table}"
    );

    // A remote function published on A is called through B.
    let cat = f("admin/cat");
    let inv = b.invoke(&cat, None, "{\"via\":\"b\"}").await.unwrap();
    assert_eq!(inv.output, "{\"via\":\"b\"}".as_bytes());
    assert_eq!(inv.worker.as_deref(), Some("svc"));

    // A hosted function deployed through B is pushed to A's Wasm worker, which
    // compiles it before any call, and runs there.
    let echo = f("admin/echo");
    deploy(&b, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    eventually(
        "A's worker to compile the code",
        Duration::from_secs(10),
        || {
            let (a, echo) = (&a, &echo);
            async move {
                let detail = a.function(echo).await.ok()?;
                detail
                    .workers
                    .iter()
                    .any(|w| w.name == "wasm" && w.status == WorkerCodeStatus::Ready)
                    .then_some(())
            }
        },
    )
    .await;
    let inv = b.invoke(&echo, None, "{\"n\":1}").await.unwrap();
    assert_eq!(inv.output, "{\"n\":1}".as_bytes());
    assert_eq!(
        (inv.worker.as_deref(), inv.version),
        (Some("wasm"), Some(1))
    );

    // A new version made on A is what B runs next (its route cache was told).
    deploy(&a, "admin/echo", guests::prints("v2"), |_| {})
        .await
        .unwrap();
    let inv = b.invoke(&echo, None, "{}").await.unwrap();
    assert_eq!((inv.version, &inv.output[..]), (Some(2), &b"v2"[..]));

    // Jobs entering B run on A's workers; their records are in the shared database.
    let ids = submit_echo(&b, "admin/cat", 100).await;
    let jobs = all_ended(&a, &ids, Duration::from_secs(60)).await;
    assert_echoed(&jobs);

    // A token revoked on A is refused by B within a second, although B had it cached.
    let token = a
        .create_token(&CreateTokenRequest {
            scopes: vec!["*".into()],
            expires_in_s: None,
            description: "cluster test".into(),
        })
        .await
        .unwrap();
    let on_b = Client::new(&r.servers[1].url, &token.token);
    on_b.me().await.unwrap();
    a.revoke_token(&token.id).await.unwrap();
    eventually(
        "B to refuse the revoked token",
        Duration::from_secs(1),
        || {
            let on_b = &on_b;
            async move { on_b.me().await.err() }
        },
    )
    .await;
    assert_code(on_b.me().await.unwrap_err(), ErrorCode::Unauthenticated);

    // A share removed on A stops bob on B within a second.
    let bob = a.create_user("bob@example.com").await.unwrap();
    let bob_on_b = Client::new(&r.servers[1].url, &bob.token);
    assert_code(
        bob_on_b.invoke(&cat, None, "{}").await.unwrap_err().error,
        ErrorCode::NotFound,
    );
    a.share(ShareTarget::Function(&cat), "bob@example.com", Role::Call)
        .await
        .unwrap();
    eventually("B to let bob call", Duration::from_secs(1), || {
        let bob_on_b = &bob_on_b;
        let cat = &cat;
        async move { bob_on_b.invoke(cat, None, "{}").await.ok() }
    })
    .await;
    a.unshare(ShareTarget::Function(&cat), "bob@example.com")
        .await
        .unwrap();
    eventually("B to stop bob", Duration::from_secs(1), || {
        let bob_on_b = &bob_on_b;
        let cat = &cat;
        async move { bob_on_b.invoke(cat, None, "{}").await.err() }
    })
    .await;

    // A secret set on A reaches a call that enters B and runs on A's worker, and a
    // new value set on B reaches the next one; no message between the replicas
    // carries a value (each replica opens the secrets itself).
    let nats = async_nats::connect(swb_testkit::nats_url()).await.unwrap();
    let mut tap = nats.subscribe(">").await.unwrap();
    let admin_ns = "admin".parse().unwrap();
    let secret = |n: u32| format!("cluster-secret-{n}-{}", std::process::id());
    a.set_secret(&admin_ns, "API_KEY", secret(1), None)
        .await
        .unwrap();
    deploy(&b, "admin/envy", guests::prints_env_reversed(), |d| {
        d.secrets = vec!["API_KEY".into()];
    })
    .await
    .unwrap();
    let envy = f("admin/envy");
    let seen = |output: &[u8]| String::from_utf8(output.iter().rev().copied().collect()).unwrap();
    let inv = b.invoke(&envy, None, "").await.unwrap();
    assert_eq!(inv.worker.as_deref(), Some("wasm"));
    assert!(seen(&inv.output).contains(&format!("API_KEY={}\0", secret(1))));
    b.set_secret(&admin_ns, "API_KEY", secret(2), None)
        .await
        .unwrap();
    eventually(
        "the new value on A's worker",
        Duration::from_secs(2),
        || {
            let (b, envy, want) = (&b, &envy, format!("API_KEY={}\0", secret(2)));
            async move {
                let inv = b.invoke(envy, None, "").await.ok()?;
                seen(&inv.output).contains(&want).then_some(())
            }
        },
    )
    .await;
    nats.flush().await.unwrap();
    tap.unsubscribe().await.unwrap();
    let mut carried = 0;
    while let Some(msg) = futures_util::StreamExt::next(&mut tap).await {
        carried += 1;
        for n in [1, 2] {
            let value = secret(n);
            assert!(
                !msg.payload
                    .windows(value.len())
                    .any(|w| w == value.as_bytes()),
                "{} carried a secret",
                msg.subject
            );
        }
    }
    assert!(carried > 0, "the tap saw the replicas' traffic");

    // With no worker anywhere, B says so.
    let err = b.invoke(&f("admin/nowhere"), None, "{}").await.unwrap_err();
    assert!(err.to_string().contains("admin/nowhere"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_under_load_loses_nothing() {
    let mut r = Replicas::start(2).await;
    let (a, b) = (r.client(0), r.client(1));
    // Workers prefer replica A and fail over to B.
    let _wasm = r.wasm_worker("wasm", &r.urls_from(0));
    // This one is given the replicas as repeated --server flags, which win over
    // SWB_URL (here a dead address).
    let _svc = r.echo_service(
        "svc",
        "admin/slow",
        "0.1",
        "http://127.0.0.1:9",
        &[&r.servers[0].url, &r.servers[1].url],
    );
    connected(&r.client(0), "wasm").await;
    connected(&r.client(0), "svc").await;
    deploy(&b, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();

    // Jobs with short attempts, so that leases held by the dead replica lapse soon.
    // Submitted to A, which claims them at once.
    let jobs: Vec<swb_api::SubmitJob> = (0..300)
        .map(|i| swb_api::SubmitJob {
            timeout_ms: Some(2000),
            max_attempts: Some(5),
            ..common::job(
                if i % 2 == 0 {
                    "admin/echo"
                } else {
                    "admin/slow"
                },
                serde_json::json!({ "n": i }),
            )
        })
        .collect();
    let ids = submit(&a, jobs).await;
    // Kill replica A (-9) while the jobs run: its workers move to B, the jobs it had
    // claimed come back when their leases lapse.
    eventually("some jobs to succeed", Duration::from_secs(30), || async {
        let list = b
            .jobs(&swb_client::JobFilter {
                status: Some("succeeded".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (!list.jobs.is_empty()).then_some(())
    })
    .await;
    let a = r.servers.remove(0);
    drop(a);
    let jobs = all_ended(&b, &ids, Duration::from_secs(90)).await;
    assert_echoed(&jobs);
    assert!(
        jobs.iter().any(|j| j.attempts >= 2),
        "some jobs were running on the killed replica and ran again"
    );
    connected(&b, "wasm").await;
    connected(&b, "svc").await;
    // Calls entering the survivor succeed.
    for function in ["admin/echo", "admin/slow"] {
        let inv = b.invoke(&f(function), None, "{\"after\":1}").await.unwrap();
        assert_eq!(inv.output, "{\"after\":1}".as_bytes());
    }
}

/// Cancelling a job through either replica stops its command, whichever replica
/// claimed the job and whichever runs the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_on_either_replica_stops_its_run() {
    let r = Replicas::start(2).await;
    let pids = r.dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let script = format!("read -r n; echo $$ > {}/$n; exec sleep 60", pids.display());
    // The worker dials replica A only.
    let args = [
        "serve",
        "admin/long",
        "--name",
        "long",
        "--concurrency",
        "8",
        "--timeout-ms",
        "120000",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let _w = r.spawn("long", &args, &r.servers[0].url);
    let (a, b) = (r.client(0), r.client(1));
    connected(&a, "long").await;
    // Several jobs, so that both replicas' schedulers claim some.
    let ids = submit(
        &b,
        (0..6)
            .map(|i| common::job("admin/long", i.into()))
            .collect(),
    )
    .await;
    for (i, id) in ids.iter().enumerate() {
        let pid_file = pids.join(i.to_string());
        let pid = eventually("the command to start", Duration::from_secs(20), || {
            let pid_file = pid_file.clone();
            async move {
                std::fs::read_to_string(pid_file)
                    .ok()
                    .filter(|p| !p.is_empty())
            }
        })
        .await;
        let pid = pid.trim().to_owned();
        assert!(common::running(&pid));
        let via = if i % 2 == 0 { &a } else { &b };
        via.cancel_job(id).await.unwrap();
        eventually("the command to die", Duration::from_secs(5), || {
            let pid = pid.clone();
            async move { (!common::running(&pid)).then_some(()) }
        })
        .await;
    }
}

/// Eight workers started at once on two replicas to serve a new function publish
/// one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_together_on_two_replicas_publish_one_version() {
    let r = Replicas::start(2).await;
    let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let _workers: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let args = [
                "serve",
                "admin/together",
                "--name",
                name,
                "--max-backoff-ms",
                "300",
                "--",
                "cat",
            ];
            r.spawn(name, &args, &r.urls_from(i % 2))
        })
        .collect();
    let a = r.client(0);
    for name in &names {
        connected(&a, name).await;
    }
    for i in 0..2 {
        let versions = r.client(i).versions(&f("admin/together")).await.unwrap();
        assert_eq!(versions.versions.len(), 1, "{versions:?}");
    }
}

/// Without NATS, a server on Postgres runs alone and keeps everything in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_on_postgres_keeps_its_data() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--database-url", db.url.as_str()];
    let mut server = ServerProc::start(bin(), "up", &dir.path().join("data"), &args).unwrap();
    deploy(&server.client(), "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    server.crash_and_restart().unwrap();
    let client = server.client();
    connected(&client, "local").await;
    let inv = client.invoke(&f("admin/echo"), None, "{}").await.unwrap();
    assert_eq!((inv.version, &inv.output[..]), (Some(1), &b"{}"[..]));
    assert!(
        !dir.path().join("data/swb.db").exists(),
        "nothing went to SQLite"
    );
}

#[tokio::test]
async fn a_replica_without_nats_or_database_says_why() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(["server", "--data-dir", data, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SWB_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--nats-url", "nats://127.0.0.1:4222"]);
    assert!(err.contains("--database-url"), "{err}");
    let err = run(&["--database-url", "postgres://postgres@127.0.0.1:1/none"]);
    assert!(err.contains("cannot open the Postgres database"), "{err}");
    let err = run(&[
        "--database-url",
        &db.url,
        "--nats-url",
        "nats://127.0.0.1:1",
    ]);
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{err}"
    );
}

/// A nested call crosses replicas both ways (the caller's worker on one, the
/// callee's on the other) and stays one tree; a job's tree acts for its submitter,
/// and cancelling the job stops the nested call it is waiting on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_cross_replicas_and_a_cancelled_job_stops_its_tree() {
    let r = Replicas::start(2).await;
    let (a, b) = (r.client(0), r.client(1));
    let swb = bin().display().to_string();
    let pid = r.dir.path().join("sleeper.pid");
    // g and the sleeper on replica B, their caller f on replica A.
    let _g = r.spawn(
        "g",
        &["serve", "admin/g", "--name", "g", "--", "cat"],
        &r.servers[1].url,
    );
    let sleeper = format!("echo $$ > {}; exec sleep 60", pid.display());
    let _s = r.spawn(
        "s",
        &[
            "serve",
            "admin/sleeper",
            "--name",
            "s",
            "--timeout-ms",
            "90000",
            "--",
            "sh",
            "-c",
            &sleeper,
        ],
        &r.servers[1].url,
    );
    // f calls g, or the sleeper when its input says so.
    let script = format!(
        r#"read -r x; if [ "$x" = '"sleep"' ]; then echo '{{}}' | {swb} fn invoke admin/sleeper -; else echo "$x" | {swb} fn invoke admin/g -; fi"#
    );
    let _f = r.spawn(
        "f",
        &[
            "serve",
            "admin/f",
            "--name",
            "f",
            "--calls",
            "admin/g",
            "--calls",
            "admin/sleeper",
            "--timeout-ms",
            "60000",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &r.servers[0].url,
    );
    connected(&b, "g").await;
    connected(&b, "s").await;
    connected(&a, "f").await;

    // Called through B: f runs on A, its nested call comes back to A and runs on B.
    let inv = b.invoke(&f("admin/f"), None, "[7]").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&inv.output).trim(), "[7]");
    let tree = eventually("the tree", Duration::from_secs(10), || async {
        let t = a.invocation_tree(&inv.id).await.ok()?;
        (t.invocations.len() == 2).then_some(t)
    })
    .await;
    assert_eq!(tree.invocations[1].function, f("admin/g"));
    assert_eq!(tree.invocations[1].tree.as_ref().unwrap().parent, inv.id);

    // A job of f: its nested call acts for the submitter.
    let ids = submit(&b, vec![common::job("admin/f", serde_json::json!([1]))]).await;
    let done = all_ended(&a, &ids, Duration::from_secs(30)).await;
    assert_eq!(
        done[0].result,
        Some(serde_json::json!([1])),
        "{:?}",
        done[0]
    );

    // A job waiting on a nested call: cancelling it stops the callee's command.
    let ids = submit(&a, vec![common::job("admin/f", "sleep".into())]).await;
    let sleeping = eventually(
        "the nested command to start",
        Duration::from_secs(20),
        || async {
            std::fs::read_to_string(&pid)
                .ok()
                .filter(|p| !p.trim().is_empty())
        },
    )
    .await;
    let sleeping = sleeping.trim().to_owned();
    assert!(common::running(&sleeping));
    b.cancel_job(&ids[0]).await.unwrap();
    eventually("the nested command to die", Duration::from_secs(5), || {
        let sleeping = sleeping.clone();
        async move { (!common::running(&sleeping)).then_some(()) }
    })
    .await;
}
