//! Remote functions served by real worker processes that dial out: the exec adapter
//! (`swb serve`) and the Rust SDK example.

mod common;

use common::{Cluster, assert_code, bin};
use futures_util::future::join_all;
use std::time::Duration;
use swb_api::{ErrorCode, FunctionRef};
use swb_client::{Client, InvocationFilter};
use swb_testkit::{WorkerProc, connected, eventually};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

async fn gone(client: &Client, name: &str) {
    eventually(
        &format!("{name} to leave"),
        Duration::from_secs(20),
        || async {
            let list = client.workers().await.ok()?;
            list.workers.iter().all(|w| w.name != name).then_some(())
        },
    )
    .await
}

/// Calls `n` times, 10 at a time; returns the worker of each successful call.
async fn calls(
    client: &Client,
    function: &FunctionRef,
    n: usize,
) -> Vec<Result<String, ErrorCode>> {
    let mut out = Vec::new();
    for batch in 0..n.div_ceil(10) {
        let results = join_all((0..10.min(n - batch * 10)).map(|i| {
            let input = format!("{{\"n\":{}}}", batch * 10 + i);
            async move {
                match client.invoke(function, None, input.clone()).await {
                    Ok(inv) => {
                        assert_eq!(inv.output, input.as_bytes());
                        Ok(inv.worker.unwrap())
                    }
                    Err(e) => Err(e.error.code().unwrap_or(ErrorCode::Internal)),
                }
            }
        }))
        .await;
        out.extend(results);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_workers_share_calls_survive_each_other_and_come_back() {
    let c = Cluster::start(false, &[]).await;
    let echo = f("admin/echo");
    let _e1 = c.serve(
        "e1",
        "admin/echo",
        &["--idempotent", "--concurrency", "4"],
        &["cat"],
    );
    let mut e2 = c.serve(
        "e2",
        "admin/echo",
        &["--idempotent", "--concurrency", "4"],
        &["cat"],
    );
    connected(&c.client, "e1").await;
    connected(&c.client, "e2").await;

    // Published as a remote function by the first worker; both serve it.
    let detail = c.client.function(&echo).await.unwrap();
    assert_eq!(detail.kind, swb_api::FunctionKind::Remote);
    let mut serving: Vec<_> = detail.workers.iter().map(|w| w.name.as_str()).collect();
    serving.sort();
    assert_eq!(serving, ["e1", "e2"]);
    let workers = c.client.workers().await.unwrap();
    assert!(
        workers
            .workers
            .iter()
            .all(|w| w.functions == [echo.clone()])
    );

    // Round robin: 100 calls split evenly.
    let results = calls(&c.client, &echo, 100).await;
    let on_e1 = results.iter().filter(|r| r.as_deref() == Ok("e1")).count();
    let on_e2 = results.iter().filter(|r| r.as_deref() == Ok("e2")).count();
    assert_eq!(on_e1 + on_e2, 100, "{results:?}");
    assert!((40..=60).contains(&on_e1), "e1 took {on_e1} of 100");

    // kill -9 one under load: the idempotent calls all succeed, on the survivor.
    let load = {
        let (client, echo) = (c.client.clone(), echo.clone());
        tokio::spawn(async move { calls(&client, &echo, 200).await })
    };
    eventually("some calls to run", Duration::from_secs(20), || async {
        let list = c
            .client
            .invocations(&InvocationFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .ok()?;
        (list.invocations.len() > 120).then_some(())
    })
    .await;
    _e1.kill();
    let results = load.await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    gone(&c.client, "e1").await;
    let after = calls(&c.client, &echo, 20).await;
    assert!(after.iter().all(|r| r.as_deref() == Ok("e2")), "{after:?}");

    // Kill the other: no worker, and the message says what to do.
    e2.terminate().unwrap();
    gone(&c.client, "e2").await;
    let e = c.client.invoke(&echo, None, "{}").await.unwrap_err();
    let e = assert_code(e.error, ErrorCode::NoWorker);
    assert!(
        e.message.contains("admin/echo") && e.message.contains("owner must start"),
        "{}",
        e.message
    );

    // A new worker brings it back.
    let _e3 = c.serve("e3", "admin/echo", &["--idempotent"], &["cat"]);
    connected(&c.client, "e3").await;
    let out = c.client.invoke(&echo, None, "{}").await.unwrap();
    assert_eq!(out.worker.as_deref(), Some("e3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_conflict_failures_report_stderr_and_timeouts_kill_the_command() {
    let c = Cluster::start(false, &[]).await;
    let schema = c.dir.path().join("in.json");
    std::fs::write(&schema, r#"{"type":"object","required":["n"]}"#).unwrap();
    let schema = schema.to_str().unwrap();

    let _first = c.serve("first", "admin/tool", &[], &["cat"]);
    connected(&c.client, "first").await;
    // A different interface is refused, and the adapter exits non-zero.
    let mut second = c.serve(
        "second",
        "admin/tool",
        &["--input-schema", schema],
        &["cat"],
    );
    let status = eventually(
        "the conflicting worker to exit",
        Duration::from_secs(20),
        || {
            let s = second.try_exit();
            async move { s }
        },
    )
    .await;
    assert!(!status.success());
    assert!(second.log().contains("conflict"), "{}", second.log());
    // With --replace it becomes the new version.
    let _third = c.serve(
        "third",
        "admin/tool",
        &["--input-schema", schema, "--replace"],
        &["cat"],
    );
    connected(&c.client, "third").await;
    let versions = c.client.versions(&f("admin/tool")).await.unwrap();
    assert_eq!((versions.versions.len(), versions.active_version), (2, 2));
    let e = c
        .client
        .invoke(&f("admin/tool"), None, "{}")
        .await
        .unwrap_err();
    assert_code(e.error, ErrorCode::InvalidInput);
    // A remote name cannot shadow a hosted function.
    swb_testkit::deploy(
        &c.client,
        "admin/hosted",
        swb_testkit::guests::echo(),
        |_| {},
    )
    .await
    .unwrap();
    let mut shadow = c.serve("shadow", "admin/hosted", &[], &["cat"]);
    eventually(
        "the shadowing worker to exit",
        Duration::from_secs(20),
        || {
            let s = shadow.try_exit();
            async move { s }
        },
    )
    .await;
    assert!(shadow.log().contains("hosted function"), "{}", shadow.log());

    // A failing script's stderr reaches the caller and the record.
    let _fails = c.serve(
        "fails",
        "admin/fails",
        &[],
        &["sh", "-c", "echo 'disk on fire' >&2; exit 4"],
    );
    connected(&c.client, "fails").await;
    let e = c
        .client
        .invoke(&f("admin/fails"), None, "{}")
        .await
        .unwrap_err();
    let id = e.invocation_id.clone().unwrap();
    let e = assert_code(e.error, ErrorCode::FunctionError);
    assert_eq!(e.details["exit_code"], 4);
    assert!(
        e.details["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("disk on fire")
    );
    let record = eventually("the record", Duration::from_secs(10), || async {
        c.client.invocation(&id).await.ok()
    })
    .await;
    assert!(record.stderr_tail.contains("disk on fire"));
    assert_eq!(record.worker.as_deref(), Some("fails"));

    // A timed-out call is cancelled on the worker: the command's process is killed.
    let pidfile = c.dir.path().join("sleepy.pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let _sleepy = c.serve(
        "sleepy",
        "admin/sleepy",
        &["--timeout-ms", "500"],
        &["sh", "-c", &script],
    );
    connected(&c.client, "sleepy").await;
    let e = c
        .client
        .invoke(&f("admin/sleepy"), None, "{}")
        .await
        .unwrap_err();
    assert_code(e.error, ErrorCode::Timeout);
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    eventually("the command to be killed", Duration::from_secs(10), || {
        let alive = common::running(&pid);
        async move { (!alive).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_calls_and_the_sdk_serves_typed_calls() {
    let c = Cluster::start(false, &[]).await;
    let mut slow = c.serve("slow", "admin/slow", &[], &["sh", "-c", "sleep 1; cat"]);
    connected(&c.client, "slow").await;
    let call = {
        let client = c.client.clone();
        tokio::spawn(async move { client.invoke(&f("admin/slow"), None, "patience").await })
    };
    eventually(
        "the call to be running",
        Duration::from_secs(10),
        || async {
            let list = c.client.workers().await.ok()?;
            (list.workers.first()?.in_flight == 1).then_some(())
        },
    )
    .await;
    let status = slow.terminate().unwrap();
    assert!(status.success(), "a drained worker exits cleanly: {status}");
    let out = call.await.unwrap().unwrap();
    assert_eq!(&out.output[..], b"patience");
    assert!(slow.log().contains("drained"), "{}", slow.log());

    // The SDK example (crates/swb-worker/examples/greet_service.rs), built by
    // `cargo test --workspace`.
    let example = bin().parent().unwrap().join("examples/greet_service");
    assert!(
        example.exists(),
        "build the examples first: cargo test --workspace builds them"
    );
    let log = c.dir.path().join("sdk.log");
    let _sdk = WorkerProc::spawn(&example, &[], &c.server, "greet-service", &log).unwrap();
    connected(&c.client, "greet-service").await;
    let greet = f("admin/greet-remote");
    let out = c
        .client
        .invoke(&greet, None, r#"{"name":"Ada","excited":true}"#)
        .await
        .unwrap();
    assert_eq!(&out.output[..], br#"{"greeting":"Hello, Ada!"}"#);
    // The interface came from the Rust types: bad input never reaches the handler.
    let e = c
        .client
        .invoke(&greet, None, r#"{"nom":"Ada"}"#)
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::InvalidInput);
    assert!(e.message.contains("name"), "{}", e.message);
    // A handler's own error is a function_error with its message.
    let e = c
        .client
        .invoke(&greet, None, r#"{"name":" "}"#)
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::FunctionError);
    assert!(e.message.contains("blank"), "{}", e.message);
    // A handler calling another function through its context: a nested call.
    let all = c
        .client
        .invoke(
            &f("admin/greet-remote-all"),
            None,
            r#"{"names":["Ada","Grace"]}"#,
        )
        .await
        .unwrap();
    assert_eq!(&all.output[..], br#"["Hello, Ada.","Hello, Grace."]"#);
    let tree = eventually("the call tree", Duration::from_secs(10), || async {
        let t = c.client.invocation_tree(&all.id).await.ok()?;
        (t.invocations.len() == 3).then_some(t)
    })
    .await;
    assert!(
        tree.invocations[1..]
            .iter()
            .all(|r| r.function == greet && r.tree.as_ref().is_some_and(|p| p.parent == all.id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_told_to_stop_answers_the_calls_it_is_running_first() {
    let mut c = Cluster::start(false, &[]).await;
    let slow = f("admin/slow");
    let _worker = c.serve("slow", "admin/slow", &[], &["sh", "-c", "sleep 1; cat"]);
    connected(&c.client, "slow").await;
    let call = tokio::spawn({
        let (client, slow) = (c.client.clone(), slow.clone());
        async move { client.invoke(&slow, None, "in flight").await }
    });
    eventually(
        "the call to reach the worker",
        Duration::from_secs(20),
        || async {
            let list = c.client.workers().await.ok()?;
            list.workers.iter().any(|w| w.in_flight > 0).then_some(())
        },
    )
    .await;

    // SIGTERM: the server stops accepting connections and waits for the request.
    let status = tokio::task::block_in_place(|| c.server.terminate()).unwrap();
    assert!(status.success(), "server exited with {status}");
    let answer = call
        .await
        .unwrap()
        .expect("answered before the server exited");
    assert_eq!(&answer.output[..], b"in flight");
}

/// Sequential calls to a function served by two workers split evenly (within one),
/// whatever else is connected: here `swb up`'s in-process worker, which cannot
/// serve it, and a third worker serving another function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_rotate_over_the_functions_own_workers() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        swb_testkit::ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    let client = server.client();
    let serve = |name: &str, function: &str| {
        let args = ["serve", function, "--name", name, "--", "cat"];
        let log = dir.path().join(format!("{name}.log"));
        WorkerProc::spawn(bin(), &args, &server, name, &log).unwrap()
    };
    let _workers = [
        serve("a", "admin/even"),
        serve("b", "admin/even"),
        serve("other", "admin/other"),
    ];
    for name in ["a", "b", "other"] {
        connected(&client, name).await;
    }
    let (even, other) = (f("admin/even"), f("admin/other"));
    let mut by_worker = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..30 {
        let done = client.invoke(&even, None, "{}").await.unwrap();
        *by_worker.entry(done.worker.unwrap()).or_default() += 1;
        // Calls to another function in between change nothing.
        if i % 3 == 0 {
            client.invoke(&other, None, "{}").await.unwrap();
        }
    }
    assert_eq!(
        by_worker.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "{by_worker:?}"
    );
    assert!(
        by_worker.values().all(|n| n.abs_diff(15) <= 1),
        "{by_worker:?}"
    );
}

/// A command `swb serve` runs dies with it, even when the worker is killed with
/// SIGKILL (no destructor runs): the command's pid is gone within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dies_with_its_killed_worker() {
    let c = Cluster::start(false, &[]).await;
    let pid_file = c.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let worker = c.serve(
        "w",
        "admin/sleepy",
        &["--timeout-ms", "120000"],
        &["sh", "-c", &script],
    );
    connected(&c.client, "w").await;
    let client = c.client.clone();
    let call = tokio::spawn(async move { client.invoke(&f("admin/sleepy"), None, "{}").await });
    let pid: String = eventually("the command to start", Duration::from_secs(10), || async {
        let pid = std::fs::read_to_string(&pid_file).ok()?;
        pid.ends_with('\n').then(|| pid.trim().to_owned())
    })
    .await;
    assert!(common::running(&pid), "the command runs");
    worker.kill();
    eventually("the command to die", Duration::from_secs(1), || async {
        (!common::running(&pid)).then_some(())
    })
    .await;
    let e = common::api_error(call.await.unwrap().unwrap_err().error);
    assert_eq!(e.code, ErrorCode::WorkerLost, "{e:?}");
}

/// Eight workers started at once to serve a new function publish one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_together_publish_one_version() {
    let c = Cluster::start(false, &[]).await;
    let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let _workers: Vec<_> = names
        .iter()
        .map(|name| c.serve(name, "admin/together", &[], &["cat"]))
        .collect();
    for name in &names {
        connected(&c.client, name).await;
    }
    let versions = c.client.versions(&f("admin/together")).await.unwrap();
    assert_eq!(versions.versions.len(), 1, "{versions:?}");
}

/// A command learns its call's invocation id (`SWB_CALL_ID`): the id `swb inv show`
/// takes and the caller got in `swb-invocation-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_knows_its_invocation_id() {
    let c = Cluster::start(false, &[]).await;
    let _w = c.serve(
        "ids",
        "admin/call-id",
        &[],
        &["sh", "-c", r#"printf '"%s"' "$SWB_CALL_ID""#],
    );
    connected(&c.client, "ids").await;
    for _ in 0..2 {
        let inv = c
            .client
            .invoke(&f("admin/call-id"), None, "{}")
            .await
            .unwrap();
        assert_eq!(inv.output, format!("\"{}\"", inv.id).as_bytes());
    }
}
