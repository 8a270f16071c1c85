//! Hosted execution through a real server, with a separate worker process and with
//! `swb up`'s in-process worker: hostile guests get the matching error and everyone
//! else keeps being served.

mod common;

use common::{Cluster, assert_code, bin};
use futures_util::future::join_all;
use serde_json::json;
use std::time::{Duration, Instant};
use swb_api::{ErrorCode, FunctionRef, Outcome};
use swb_client::{Client, InvocationFilter};
use swb_testkit::{ServerProc, WorkerProc, connected, deploy, eventually, guests};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_get_matching_errors_and_the_worker_keeps_serving() {
    let c = Cluster::start(true, &[]).await;
    hostile_guests(&c.client, "w1").await;
}

/// The same through `swb up`, whose in-process worker runs ready modules straight
/// from the server's call rather than over the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_in_swb_up_get_the_same_errors() {
    let dir = tempfile::tempdir().unwrap();
    let up = ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    hostile_guests(&up.client(), "local").await;
}

/// Deploys every hostile guest, calls each, and checks the errors, the records and
/// that `worker` kept serving.
async fn hostile_guests(client: &Client, worker: &str) {
    deploy(client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let report = deploy(client, "admin/exits", guests::exits_3(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        report.workers.compiled, 1,
        "the connected worker compiled it at deploy"
    );
    deploy(client, "admin/loop", guests::infinite_loop(), |r| {
        r.limits.timeout_ms = Some(300)
    })
    .await
    .unwrap();
    deploy(client, "admin/sleeps", guests::sleeps(60_000), |r| {
        r.limits.timeout_ms = Some(300)
    })
    .await
    .unwrap();
    deploy(client, "admin/bomb", guests::memory_bomb(), |r| {
        r.limits.memory_mb = Some(16)
    })
    .await
    .unwrap();
    deploy(client, "admin/deep", guests::stack_overflow(), |_| {})
        .await
        .unwrap();
    deploy(client, "admin/flood", guests::stdout_flood(), |_| {})
        .await
        .unwrap();
    deploy(client, "admin/chatty", guests::chatty_stderr(), |_| {})
        .await
        .unwrap();
    deploy(client, "admin/plain", guests::prints("plain text"), |_| {})
        .await
        .unwrap();
    let typed_output = json!({
        "type": "object", "properties": { "greeting": { "type": "string" } }, "required": ["greeting"]
    });
    deploy(client, "admin/not-json", guests::prints("oops"), |r| {
        r.interface.output = Some(typed_output.clone())
    })
    .await
    .unwrap();
    deploy(
        client,
        "admin/wrong-shape",
        guests::prints(r#"{"greeting":5}"#),
        |r| r.interface.output = Some(typed_output.clone()),
    )
    .await
    .unwrap();
    deploy(client, "admin/typed", guests::echo(), |r| {
        r.interface.input = Some(json!({
            "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"]
        }));
    })
    .await
    .unwrap();

    let err = |name: &'static str, input: &'static str| async move {
        client
            .invoke(&f(name), None, input)
            .await
            .unwrap_err()
            .error
    };
    let e = assert_code(err("admin/exits", "").await, ErrorCode::FunctionError);
    assert_eq!(e.details["exit_code"], 3);
    assert!(
        e.details["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("something went wrong"),
        "{e:?}"
    );
    assert_code(err("admin/loop", "").await, ErrorCode::Timeout);
    // Asleep in a host call, out of the epoch's reach: the deadline still holds.
    let e = assert_code(err("admin/sleeps", "").await, ErrorCode::Timeout);
    assert_eq!(e.details["timeout_ms"], 300, "{e:?}");
    let e = assert_code(err("admin/bomb", "").await, ErrorCode::LimitExceeded);
    assert_eq!(e.details["limit"], "memory");
    let e = assert_code(err("admin/deep", "").await, ErrorCode::FunctionError);
    assert!(e.details["trap"].is_string(), "{e:?}");
    let e = assert_code(err("admin/flood", "").await, ErrorCode::LimitExceeded);
    assert_eq!(e.details["limit"], "stdout");
    assert_code(err("admin/not-json", "").await, ErrorCode::BadOutput);
    let e = assert_code(err("admin/wrong-shape", "").await, ErrorCode::BadOutput);
    assert_eq!(e.details["pointer"], "/greeting");
    let e = assert_code(
        err("admin/typed", r#"{"n":"x"}"#).await,
        ErrorCode::InvalidInput,
    );
    assert_eq!(e.details["pointer"], "/n");
    assert_code(
        err("admin/typed", "not json").await,
        ErrorCode::InvalidInput,
    );

    // Outputs without a schema come back as they are, typed by what they parse as.
    let plain = client.invoke(&f("admin/plain"), None, "").await.unwrap();
    assert_eq!(&plain.output[..], b"plain text");
    assert_eq!(
        plain.content_type.as_deref(),
        Some("application/octet-stream")
    );
    let typed = client
        .invoke(&f("admin/typed"), None, r#"{"n":1}"#)
        .await
        .unwrap();
    assert_eq!(&typed.output[..], br#"{"n":1}"#);
    assert_eq!(typed.content_type.as_deref(), Some("application/json"));
    assert_eq!(typed.worker.as_deref(), Some(worker));
    assert_eq!(typed.version, Some(1));

    // Stderr is the invocation's log: bounded, its tail kept.
    let chatty = client.invoke(&f("admin/chatty"), None, "").await.unwrap();
    assert_eq!(&chatty.output[..], b"{}");
    let record = eventually("the chatty record", Duration::from_secs(10), || async {
        client.invocation(&chatty.id).await.ok()
    })
    .await;
    assert!(record.stderr_tail.ends_with("the last line\n"));
    assert!(record.stderr_tail.len() <= 64 << 10);

    // The worker survived all of it.
    let ok = client
        .invoke(&f("admin/echo"), None, "still here")
        .await
        .unwrap();
    assert_eq!(&ok.output[..], b"still here");

    // Every failure is on record with its reason.
    let timeouts = eventually("the timeout record", Duration::from_secs(10), || async {
        let list = client
            .invocations(&InvocationFilter {
                function: Some("admin/loop".into()),
                outcome: Some("timeout".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (!list.invocations.is_empty()).then_some(list.invocations)
    })
    .await;
    assert_eq!(timeouts[0].outcome, Outcome::Error(ErrorCode::Timeout));
    assert_eq!(timeouts[0].worker.as_deref(), Some(worker));
    assert!(
        timeouts[0]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("did not finish within 300 ms")
    );
}

/// `swb up`'s worker keeps its capacity on the direct path: a running call holds
/// its slot, and a call whose client went away gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swb_up_capacity_holds_and_abandoned_calls_free_it() {
    let dir = tempfile::tempdir().unwrap();
    let up =
        ServerProc::start(bin(), "up", &dir.path().join("data"), &["--capacity", "1"]).unwrap();
    let client = up.client();
    deploy(&client, "admin/loop", guests::infinite_loop(), |r| {
        r.limits.timeout_ms = Some(30_000)
    })
    .await
    .unwrap();
    deploy(&client, "admin/echo", guests::echo(), |r| {
        r.limits.timeout_ms = Some(500)
    })
    .await
    .unwrap();
    let running = {
        let client = client.clone();
        tokio::spawn(async move { client.invoke(&f("admin/loop"), None, "").await })
    };
    let in_flight = |n: u32| {
        let client = client.clone();
        async move {
            let workers = client.workers().await.ok()?;
            (workers.workers.first()?.in_flight == n).then_some(())
        }
    };
    eventually("the loop to run", Duration::from_secs(10), || in_flight(1)).await;
    let e = client
        .invoke(&f("admin/echo"), None, "x")
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::NoWorker);
    assert!(e.message.contains("stayed busy"), "{}", e.message);

    // The caller of the loop goes away: its slot comes back long before the loop's
    // 30 s deadline, and the next call runs.
    running.abort();
    eventually("the slot to be free", Duration::from_secs(10), || {
        in_flight(0)
    })
    .await;
    let out = client.invoke(&f("admin/echo"), None, "x").await.unwrap();
    assert_eq!(&out.output[..], b"x");
}

/// Guests run on the server's own threads in `swb up`, yielding at every tick:
/// guests that compute without end leave room for other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swb_up_answers_calls_while_guests_compute() {
    let dir = tempfile::tempdir().unwrap();
    let up = ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    let client = up.client();
    deploy(&client, "admin/loop", guests::infinite_loop(), |r| {
        r.limits.timeout_ms = Some(30_000)
    })
    .await
    .unwrap();
    deploy(&client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.invoke(&f("admin/loop"), None, "").await })
        })
        .collect();
    eventually("four loops to run", Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let workers = client.workers().await.ok()?;
            (workers.workers.first()?.in_flight == 4).then_some(())
        }
    })
    .await;
    let out = client.invoke(&f("admin/echo"), None, "x").await.unwrap();
    assert_eq!(&out.output[..], b"x");
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "the loops were still running"
    );
    for l in loops {
        l.abort();
    }
}

/// A worker process holds more calls than it runs guests: with room for every call,
/// the server sends them all at once (none waits there for an answer to come back
/// first), and the worker runs 8 guests per CPU at most, the others waiting at the
/// worker for one to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_more_calls_than_it_runs_guests() {
    const NAP: Duration = Duration::from_millis(1000);
    let c = Cluster::start(false, &[]).await;
    let at_once = 8 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let calls = at_once + 4;
    let capacity = calls.to_string();
    let cache = c.dir.path().join("cache-holder");
    let _worker = WorkerProc::start(
        bin(),
        &c.server,
        "holder",
        &cache,
        &["--capacity", &capacity],
    )
    .expect("worker starts");
    connected(&c.client, "holder").await;
    deploy(
        &c.client,
        "admin/nap",
        guests::sleeps(NAP.as_millis() as u64),
        |r| r.limits.timeout_ms = Some(30_000),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let naps = join_all((0..calls).map(|_| {
        let client = c.client.clone();
        async move {
            client.invoke(&f("admin/nap"), None, "").await.unwrap();
            started.elapsed()
        }
    }));
    let held = eventually(
        "every call to be at the worker",
        Duration::from_secs(10),
        || async {
            let workers = c.client.workers().await.ok()?;
            (workers.workers.first()?.in_flight as usize == calls).then_some(())
        },
    );
    let (mut ended, ()) = tokio::join!(naps, held);
    ended.sort();
    // A call beyond the guests running started when one of them ended: two naps.
    for (i, took) in ended.iter().enumerate().skip(at_once) {
        assert!(
            *took >= 2 * NAP,
            "call {i} of {calls} ended after {took:?}: more than {at_once} guests ran at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_invokes_are_all_correct() {
    let c = Cluster::start(true, &[]).await;
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let echo = f("admin/echo");
    let calls = (0..200).map(|i| {
        let (client, echo) = (c.client.clone(), echo.clone());
        async move {
            let input = format!("{{\"call\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 10));
            let out = client.invoke(&echo, None, input.clone()).await.unwrap();
            assert_eq!(out.output, input.as_bytes(), "call {i}");
        }
    });
    join_all(calls).await;
    let recorded = eventually("200 records", Duration::from_secs(20), || async {
        let list = c
            .client
            .invocations(&InvocationFilter {
                function: Some("admin/echo".into()),
                outcome: Some("ok".into()),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .ok()?;
        (list.invocations.len() >= 200).then_some(list.invocations.len())
    })
    .await;
    assert_eq!(recorded, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_mid_call_is_worker_lost_and_another_takes_over() {
    let mut c = Cluster::start(true, &[]).await;
    deploy(&c.client, "admin/loop", guests::infinite_loop(), |r| {
        r.limits.timeout_ms = Some(60_000)
    })
    .await
    .unwrap();
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let pending = {
        let client = c.client.clone();
        tokio::spawn(async move { client.invoke(&f("admin/loop"), None, "").await })
    };
    eventually(
        "the call to be running",
        Duration::from_secs(20),
        || async {
            let workers = c.client.workers().await.ok()?;
            (workers.workers.first()?.in_flight == 1).then_some(())
        },
    )
    .await;
    c.worker.take().unwrap().kill();
    let e = pending.await.unwrap().unwrap_err();
    assert_code(e.error, ErrorCode::WorkerLost);

    let e = c
        .client
        .invoke(&f("admin/echo"), None, "x")
        .await
        .unwrap_err();
    assert_code(e.error, ErrorCode::NoWorker);
    let _w2 = c.start_worker("w2", "cache-w2").await;
    let out = c.client.invoke(&f("admin/echo"), None, "x").await.unwrap();
    assert_eq!(out.worker.as_deref(), Some("w2"));
}
