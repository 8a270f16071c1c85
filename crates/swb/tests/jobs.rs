//! Durable jobs, blobs and profiles through real server and worker processes.

mod common;

use common::{Cluster, all_ended, assert_code, assert_echoed, job, submit_echo};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use swb_api::{ErrorCode, FunctionRef, JobStatus, SubmitJob};
use swb_client::JobFilter;
use swb_testkit::{connected, deploy, eventually, guests};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_succeed_even_when_a_worker_is_killed() {
    let mut c = Cluster::start(true, &[]).await;
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let _w2 = c.start_worker("w2", "cache-w2").await;
    let ids = submit_echo(&c.client, "admin/echo", 1000).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
    // Kill a worker while jobs run: its jobs are retried on the other one.
    eventually("some jobs to finish", Duration::from_secs(30), || async {
        let list = c
            .client
            .jobs(&JobFilter {
                status: Some("succeeded".into()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .ok()?;
        (list.jobs.len() >= 50).then_some(())
    })
    .await;
    c.worker.take().unwrap().kill();
    let jobs = all_ended(&c.client, &ids, Duration::from_secs(120)).await;
    assert_echoed(&jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_loses_nothing() {
    let mut c = Cluster::start(false, &[]).await;
    let _slow = c.serve(
        "slow",
        "admin/slow",
        &["--concurrency", "4"],
        &["sh", "-c", "sleep 0.1; cat"],
    );
    connected(&c.client, "slow").await;
    let ids = submit_echo(&c.client, "admin/slow", 60).await;
    eventually("some jobs to finish", Duration::from_secs(30), || async {
        let list = c
            .client
            .jobs(&JobFilter {
                status: Some("succeeded".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (list.jobs.len() >= 8).then_some(())
    })
    .await;
    c.server.crash_and_restart().unwrap();
    let client = c.server.client();
    connected(&client, "slow").await;
    let jobs = all_ended(&client, &ids, Duration::from_secs(120)).await;
    assert_echoed(&jobs);
}

/// A server holds no more jobs than its workers can run plus a bounded few ahead
/// (64): those are the attempts a killed server loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_holds_only_the_jobs_its_workers_can_take() {
    let c = Cluster::start(false, &[]).await;
    let _slow = c.serve(
        "slow",
        "admin/slow",
        &["--concurrency", "2"],
        &["sh", "-c", "sleep 30; cat"],
    );
    connected(&c.client, "slow").await;
    // One batch, so that one claim could take them all.
    let jobs = (0..150).map(|i| job("admin/slow", json!(i))).collect();
    c.client.submit_jobs(jobs).await.unwrap();
    let running = || async {
        let filter = JobFilter {
            status: Some("running".into()),
            limit: Some(1000),
            ..Default::default()
        };
        c.client.jobs(&filter).await.unwrap().jobs.len()
    };
    eventually("jobs to be claimed", Duration::from_secs(10), || async {
        (running().await > 0).then_some(())
    })
    .await;
    assert_eq!(running().await, 2 + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_promises() {
    let c = Cluster::start(false, &[]).await;
    let client = &c.client;
    deploy(client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();

    // No worker yet: the job waits and says why; cancelling it is immediate.
    let waiting = client
        .submit_job(&job("admin/echo", json!(1)))
        .await
        .unwrap();
    let j = eventually("the wait reason", Duration::from_secs(10), || async {
        let j = client.job(&waiting.id, None).await.ok()?;
        j.waiting.is_some().then_some(j)
    })
    .await;
    assert_eq!(j.status, JobStatus::Queued);
    assert!(j.waiting.unwrap().contains("admin/echo"));
    assert_eq!(
        client.cancel_job(&waiting.id).await.unwrap().status,
        JobStatus::Cancelled
    );

    // Idempotency: the same key returns the same job.
    let keyed = SubmitJob {
        idempotency_key: Some("nightly-1".into()),
        ..job("admin/echo", json!(2))
    };
    let a = client.submit_job(&keyed).await.unwrap();
    let b = client.submit_job(&keyed).await.unwrap();
    assert_eq!(a.id, b.id);

    let _w = c.start_worker("w1", "cache-w1").await;
    // Long-poll: returns as soon as the job ends.
    let started = Instant::now();
    let done = client.job(&a.id, Some(30)).await.unwrap();
    assert_eq!(
        (done.status, done.result),
        (JobStatus::Succeeded, Some(json!(2)))
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Retries stop at max_attempts and keep each attempt's error.
    deploy(client, "admin/fails", guests::exits_3(), |_| {})
        .await
        .unwrap();
    let failing = SubmitJob {
        max_attempts: Some(2),
        ..job("admin/fails", json!(0))
    };
    let id = client.submit_job(&failing).await.unwrap().id;
    let j = all_ended(client, &[id], Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(
        (j.status, j.attempts, j.attempt_errors.len()),
        (JobStatus::Failed, 2, 2)
    );
    assert_eq!(j.error.unwrap().code, ErrorCode::FunctionError);
    assert!(j.stderr_tail.contains("something went wrong"));
    // Invalid input is never retried.
    let typed = swb_testkit::deploy(client, "admin/typed", guests::echo(), |r| {
        r.interface.input = Some(json!({"type": "object"}));
    });
    typed.await.unwrap();
    let e = client
        .submit_job(&job("admin/typed", json!(5)))
        .await
        .unwrap_err();
    assert_code(e, ErrorCode::InvalidInput);

    // Cancelling a running job stops it within a second, and no retry starts.
    let pidfile = c.dir.path().join("sleepy.pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let _sleepy = c.serve(
        "sleepy",
        "admin/sleepy",
        &["--timeout-ms", "60000"],
        &["sh", "-c", &script],
    );
    connected(client, "sleepy").await;
    let id = client
        .submit_job(&job("admin/sleepy", json!({})))
        .await
        .unwrap()
        .id;
    eventually("the job to run", Duration::from_secs(10), || async {
        (pidfile.exists() && client.job(&id, None).await.ok()?.status == JobStatus::Running)
            .then_some(())
    })
    .await;
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let asked = Instant::now();
    client.cancel_job(&id).await.unwrap();
    eventually("the command to be killed", Duration::from_secs(5), || {
        let alive = common::running(&pid);
        async move { (!alive).then_some(()) }
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        asked.elapsed()
    );
    let j = all_ended(client, std::slice::from_ref(&id), Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!((j.status, j.attempts), (JobStatus::Cancelled, 1));

    // Blobs: round trip; a sealed one cannot be downloaded yet feeds a job.
    let data = br#"{"rows":[1,2,3]}"#;
    let plain = client
        .put_blob(data.to_vec().into(), false, None)
        .await
        .unwrap();
    let back = client
        .get_blob(&plain.digest)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&back[..], data);
    let secret = br#"{"secret":42}"#;
    let sealed = client
        .put_blob(secret.to_vec().into(), true, None)
        .await
        .unwrap();
    assert!(sealed.sealed);
    assert_code(
        client.get_blob(&sealed.digest).await.unwrap_err(),
        ErrorCode::Sealed,
    );
    let from_blob = SubmitJob {
        input: None,
        input_blob: Some(sealed.digest),
        ..job("admin/echo", json!(null))
    };
    let id = client.submit_job(&from_blob).await.unwrap().id;
    let j = all_ended(client, &[id], Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(
        j.result,
        Some(json!({"secret": 42})),
        "only results leave the platform"
    );

    // Profiles reach the function: exec adapters see SWB_PROFILE.
    let _show = c.serve(
        "show",
        "admin/show-profile",
        &[],
        &["sh", "-c", "printf '%s' \"$SWB_PROFILE\""],
    );
    connected(client, "show").await;
    let show = f("admin/show-profile");
    client
        .put_profile(&show, "prod", &json!({"level": 3}))
        .await
        .unwrap();
    let with = SubmitJob {
        profile: Some("prod".into()),
        ..job("admin/show-profile", json!({}))
    };
    let id = client.submit_job(&with).await.unwrap().id;
    let j = all_ended(client, &[id], Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(j.result, Some(json!({"level": 3})));
    let out = client
        .invoke_with_profile(&show, "prod", "{}")
        .await
        .unwrap();
    assert_eq!(&out.output[..], br#"{"level":3}"#);
    let e = client
        .submit_job(&SubmitJob {
            profile: Some("nope".into()),
            ..job("admin/show-profile", json!({}))
        })
        .await
        .unwrap_err();
    assert_code(e, ErrorCode::NotFound);
}

/// A job's attempt holds its lease for as long as it runs: with a 2 s lease, a 7 s
/// job (its function's deadline is 60 s) runs once, not every 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_its_lease_runs_once() {
    let c = Cluster::start(false, &["--job-lease", "2s"]).await;
    let runs = c.dir.path().join("runs");
    let script = format!("echo run >> {}; sleep 7; cat", runs.display());
    let _long = c.serve(
        "long",
        "admin/long",
        &["--timeout-ms", "60000"],
        &["sh", "-c", &script],
    );
    connected(&c.client, "long").await;
    let id = c
        .client
        .submit_job(&job("admin/long", json!({ "n": 0 })))
        .await
        .unwrap()
        .id;
    let done = all_ended(&c.client, &[id], Duration::from_secs(60)).await;
    assert_echoed(&done);
    assert_eq!(
        (done[0].attempts, done[0].attempt_errors.len()),
        (1, 0),
        "{:?}",
        done[0]
    );
    let executions = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(executions.lines().count(), 1, "it ran {executions:?}");
    assert_eq!(records(&c, "admin/long").await.len(), 1);
}

/// The invocation records of `function`, once there is one (they are written in
/// batches, a moment after the call).
async fn records(c: &Cluster, function: &str) -> Vec<swb_api::InvocationRecord> {
    eventually("an invocation record", Duration::from_secs(10), || async {
        let list = c
            .client
            .invocations(&swb_client::InvocationFilter {
                function: Some(function.into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (!list.invocations.is_empty()).then_some(list.invocations)
    })
    .await
}

/// A job waiting for a worker is no attempt: its status says why it waits, and it
/// leaves no invocation records until a worker runs it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_a_worker_leaves_no_records() {
    let mut c = Cluster::start(false, &[]).await;
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let id = c
        .client
        .submit_job(&job("admin/echo", json!({ "n": 0 })))
        .await
        .unwrap()
        .id;
    let waiting = eventually("the job to wait", Duration::from_secs(10), || async {
        let j = c.client.job(&id, None).await.ok()?;
        j.waiting.is_some().then_some(j)
    })
    .await;
    assert_eq!((waiting.status, waiting.attempts), (JobStatus::Queued, 0));
    // Let it look for a worker several times (every 0.5 s): no record appears.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let filter = swb_client::InvocationFilter {
        function: Some("admin/echo".into()),
        ..Default::default()
    };
    let none = c.client.invocations(&filter).await.unwrap().invocations;
    assert!(none.is_empty(), "{none:?}");
    c.worker = Some(c.start_worker("w1", "cache-w1").await);
    let done = all_ended(&c.client, &[id], Duration::from_secs(30)).await;
    assert_echoed(&done);
    assert_eq!(done[0].attempts, 1);
    let records = records(&c, "admin/echo").await;
    assert_eq!(records.len(), 1, "{records:?}");
}

/// A call stopped before it ends leaves a record with outcome `cancelled`: a job
/// cancelled while it runs, and an invoke whose client went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_leaves_a_cancelled_record() {
    let c = Cluster::start(false, &[]).await;
    let started = c.dir.path().join("started");
    let script = format!("echo >> {}; exec sleep 60", started.display());
    let _w = c.serve(
        "slow",
        "admin/slow",
        &["--timeout-ms", "120000"],
        &["sh", "-c", &script],
    );
    connected(&c.client, "slow").await;
    let id = c
        .client
        .submit_job(&job("admin/slow", json!({})))
        .await
        .unwrap()
        .id;
    let running = |n: usize| {
        let started = started.clone();
        async move {
            eventually("the command to start", Duration::from_secs(10), || async {
                let text = std::fs::read_to_string(&started).ok()?;
                (text.lines().count() >= n).then_some(())
            })
            .await
        }
    };
    running(1).await;
    c.client.cancel_job(&id).await.unwrap();
    let done = all_ended(&c.client, &[id], Duration::from_secs(10)).await;
    assert_eq!(done[0].status, JobStatus::Cancelled);
    // An invoke whose client gives up after its command started.
    let impatient = swb_client::tls::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let url = format!("{}/v1/functions/admin/slow/invoke", c.server.url);
    let gave_up = impatient
        .post(url)
        .bearer_auth(&c.server.token)
        .body("{}")
        .send()
        .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    let outcomes = eventually("two cancelled records", Duration::from_secs(10), || async {
        let list = c
            .client
            .invocations(&swb_client::InvocationFilter {
                function: Some("admin/slow".into()),
                outcome: Some("cancelled".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        (list.invocations.len() == 2).then_some(list.invocations)
    })
    .await;
    assert!(
        outcomes
            .iter()
            .all(|r| r.outcome == swb_api::Outcome::Error(ErrorCode::Cancelled))
    );
}
