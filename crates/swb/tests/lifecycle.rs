//! Code distribution and restarts: the "no code" round trip, warm worker restarts
//! from the disk cache, and state that survives a server restart.

mod common;

use common::{Cluster, assert_code};
use std::time::Duration;
use swb_api::{ErrorCode, FunctionRef, WorkerCodeStatus};
use swb_client::{Client, InvocationFilter};
use swb_testkit::{connected, deploy, eventually, guests};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

async fn cache_of(client: &Client, name: &str) -> swb_api::CacheStats {
    let list = client.workers().await.unwrap();
    list.workers
        .into_iter()
        .find(|w| w.name == name)
        .map(|w| w.code_cache)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_reaches_late_workers_and_restarted_workers_start_warm() {
    let c = Cluster::start(false, &[]).await;
    // Deployed while no worker is connected: nobody has the code.
    let report = deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    assert_eq!((report.workers.compiled, report.workers.pending), (0, 0));

    // A worker that joins later asks for the code on its first call.
    let w1 = c.start_worker("w1", "shared-cache").await;
    let out = c
        .client
        .invoke(&f("admin/echo"), None, "first")
        .await
        .unwrap();
    assert_eq!(&out.output[..], b"first");
    let stats = eventually(
        "w1 to report its compile",
        Duration::from_secs(20),
        || async {
            let s = cache_of(&c.client, "w1").await;
            (s.compiles == 1).then_some(s)
        },
    )
    .await;
    assert_eq!(stats.disk_hits, 0);

    // A restarted worker finds the compiled code on disk and never recompiles.
    w1.kill();
    let _w2 = c.start_worker("w2", "shared-cache").await;
    let detail = c.client.function(&f("admin/echo")).await.unwrap();
    assert_eq!(detail.workers.len(), 1);
    assert_eq!(
        detail.workers[0].status,
        WorkerCodeStatus::Ready,
        "announced as cached"
    );
    let out = c
        .client
        .invoke(&f("admin/echo"), None, "again")
        .await
        .unwrap();
    assert_eq!(
        (&out.output[..], out.worker.as_deref()),
        (&b"again"[..], Some("w2"))
    );
    let stats = eventually(
        "w2 to report a disk hit",
        Duration::from_secs(20),
        || async {
            let s = cache_of(&c.client, "w2").await;
            (s.disk_hits >= 1).then_some(s)
        },
    )
    .await;
    assert_eq!(stats.compiles, 0, "a warm restart does not recompile");

    let metrics = c.client.metrics().await.unwrap();
    assert!(
        metrics.contains("swb_code_cache_compiles_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swb_code_cache_disk_hits_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"swb_invocations_total{function="admin/echo",outcome="ok"} 2"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_rollback_and_delete() {
    let c = Cluster::start(true, &[]).await;
    let echo = f("admin/echo");
    deploy(&c.client, "admin/echo", guests::prints("one"), |_| {})
        .await
        .unwrap();
    let v2 = deploy(&c.client, "admin/echo", guests::prints("two"), |r| {
        r.interface.description = Some("second".into());
        r.limits.timeout_ms = Some(5000);
    })
    .await
    .unwrap();
    assert_eq!(v2.version.version, 2);
    assert_eq!(v2.version.limits.timeout_ms, 5000);
    assert_eq!(
        &c.client.invoke(&echo, None, "").await.unwrap().output[..],
        b"two"
    );
    assert_eq!(
        &c.client.invoke(&echo, Some(1), "").await.unwrap().output[..],
        b"one"
    );

    let detail = c.client.rollback(&echo, 1).await.unwrap();
    assert_eq!(detail.active_version, 1);
    let out = c.client.invoke(&echo, None, "").await.unwrap();
    assert_eq!((&out.output[..], out.version), (&b"one"[..], Some(1)));
    let versions = c.client.versions(&echo).await.unwrap();
    assert_eq!(versions.versions.len(), 2);
    assert_eq!(versions.active_version, 1);
    assert_code(
        c.client.rollback(&echo, 9).await.unwrap_err(),
        ErrorCode::NotFound,
    );

    c.client.delete(&echo).await.unwrap();
    let e = c.client.invoke(&echo, None, "").await.unwrap_err();
    assert_code(e.error, ErrorCode::NotFound);
    assert!(c.client.functions().await.unwrap().functions.is_empty());
    assert_code(
        c.client.delete(&echo).await.unwrap_err(),
        ErrorCode::NotFound,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_server_restart_and_workers_reconnect() {
    let mut c = Cluster::start(true, &[]).await;
    let echo = f("admin/echo");
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let before = c.client.invoke(&echo, None, "before").await.unwrap();
    let token = c.server.token.clone();

    c.server.restart().expect("server restarts");
    assert_eq!(c.server.token, token, "the admin token is written once");
    // The old token still works: it was stored (hashed) in the database.
    let client = c.server.client();
    let list = client.functions().await.unwrap();
    assert_eq!(list.functions.len(), 1);
    assert_eq!(list.functions[0].function, echo);
    // The record written before the restart was flushed on shutdown.
    let record = client.invocation(&before.id).await.unwrap();
    assert_eq!(record.function, echo);

    // The worker process reconnects by itself.
    connected(&client, "w1").await;
    let after = client.invoke(&echo, None, "after").await.unwrap();
    assert_eq!(&after.output[..], b"after");
    let all = client
        .invocations(&InvocationFilter {
            function: Some("admin/echo".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.invocations.iter().any(|r| r.id == before.id));
    assert!(
        c.worker.as_mut().unwrap().try_exit().is_none(),
        "worker kept running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_labels_send_calls_only_to_matching_workers() {
    let c = Cluster::start(true, &[]).await;
    deploy(&c.client, "admin/gpu", guests::echo(), |r| {
        r.requires.insert("gpu".into(), "true".into());
    })
    .await
    .unwrap();
    // w1 has no labels: it may not take the call.
    let e = c
        .client
        .invoke(&f("admin/gpu"), None, "x")
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::NoWorker);
    assert!(e.message.contains("gpu"), "{}", e.message);
    let _gpu = swb_testkit::WorkerProc::start(
        common::bin(),
        &c.server,
        "gpu-box",
        &c.dir.path().join("cache-gpu"),
        &["--label", "gpu=true"],
    )
    .unwrap();
    connected(&c.client, "gpu-box").await;
    for _ in 0..4 {
        let out = c.client.invoke(&f("admin/gpu"), None, "x").await.unwrap();
        assert_eq!(out.worker.as_deref(), Some("gpu-box"));
    }
}
