//! Jobs run once, under fire: jobs of mixed durations, while workers and servers are
//! killed with SIGKILL at random and restarted: an embedded server (SQLite), and the
//! replicas of a cluster (Postgres and NATS). Exec jobs append a line to a
//! side-effect file at every execution; hosted (Wasm) jobs, sandboxed, write their
//! input to stderr, which the call's record keeps. At the end every job has exactly
//! one result, and a job ran more than once only after attempts recorded as lost.
//!
//! Bounded here (about 20 s of chaos, jobs of 0.1 to 2 s); `scripts/chaos` runs it
//! longer through `SWB_CHAOS_SECONDS`, `SWB_CHAOS_JOBS`, `SWB_CHAOS_MAX_JOB_S` and
//! `SWB_CHAOS_KILL_EVERY_MS` (the mean time between kills; a job has 10 attempts).

mod common;

use common::{Cluster, Replicas, all_ended, submit};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use swb_api::{ErrorCode, Job, JobStatus, Outcome, SubmitJob};
use swb_client::InvocationFilter;
use swb_testkit::{ServerProc, WorkerProc, connected, deploy, guests};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator: the same kills in every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % sides
    }
}

/// The command every execution runs: input "<n> <seconds>" records the execution,
/// works, and answers {"n": n}.
fn work(runs: &Path) -> String {
    format!(
        "read -r line; set -- $(echo $line | tr -d '\"'); echo $1 >> {}; sleep $2; echo \"{{\\\"n\\\": $1}}\"",
        runs.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_while_an_embedded_server_and_its_workers_are_killed() {
    let mut c = Cluster::start(false, &["--job-lease", "2s"]).await;
    let dir = c.dir.path().to_owned();
    chaos(std::slice::from_mut(&mut c.server), &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_while_replicas_and_their_workers_are_killed() {
    let mut r = Replicas::start_with(2, &["--job-lease", "2s"]).await;
    let dir = r.dir.path().to_owned();
    chaos(&mut r.servers, &dir).await;
}

/// Two workers serve `admin/work` and a Wasm worker runs the hosted `admin/hosted`,
/// each dialing every server; jobs are submitted; for a while, a worker or a server
/// is killed with SIGKILL and started again; then every job must have ended with
/// its own result, having run at most once more than its lost attempts.
async fn chaos(servers: &mut [ServerProc], dir: &Path) {
    let runs = dir.join("runs");
    let script = work(&runs);
    let cache = dir.join("wasm-cache");
    // `w…` serve the exec function, `h…` run Wasm.
    let spawn = |servers: &[ServerProc], name: &str| {
        let mut args = if name.starts_with('h') {
            vec![
                "worker",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--capacity",
                "8",
            ]
        } else {
            vec![
                "serve",
                "admin/work",
                "--timeout-ms",
                "60000",
                "--concurrency",
                "8",
                "--",
                "sh",
                "-c",
                &script,
            ]
        };
        args.splice(1..1, ["--name", name, "--max-backoff-ms", "300"]);
        let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
        let log = dir.join(format!("{name}.log"));
        let token = &servers[0].token;
        WorkerProc::spawn_to(common::bin(), &args, &urls.join(","), token, name, &log).unwrap()
    };
    let seconds = setting("SWB_CHAOS_SECONDS", 20);
    let n = setting("SWB_CHAOS_JOBS", 40) as usize;
    // A job has 10 attempts: kills must leave most attempts alone, or a job could
    // lose all ten (at these rates a lost attempt is about one in four).
    let longest_job = setting("SWB_CHAOS_MAX_JOB_S", 2);
    let kill_every = setting("SWB_CHAOS_KILL_EVERY_MS", 2500);
    let mut client = servers[0].client();
    deploy(&client, "admin/hosted", guests::echo_after(500), |_| {})
        .await
        .unwrap();
    let mut workers = vec![
        spawn(servers, "w0"),
        spawn(servers, "w1"),
        spawn(servers, "h0"),
    ];
    for w in &workers {
        connected(&client, &w.name).await;
    }
    let mut dice = Dice(7);
    // Jobs 0..n run the command; n..n+n/4 are hosted.
    let hosted = n / 4;
    let jobs: Vec<SubmitJob> = (0..n + hosted)
        .map(|i| SubmitJob {
            max_attempts: Some(10),
            ..if i < n {
                SubmitJob {
                    function: "admin/work".into(),
                    // 0.1 s to `longest_job` of work.
                    input: Some(json!(format!(
                        "{i} {:.1}",
                        0.1 + dice.roll(longest_job * 10) as f64 / 10.0
                    ))),
                    ..SubmitJob::default()
                }
            } else {
                SubmitJob {
                    function: "admin/hosted".into(),
                    input: Some(json!({ "n": i })),
                    ..SubmitJob::default()
                }
            }
        })
        .collect();
    let ids = submit(&client, jobs).await;

    let (mut kills, mut longest_recovery) = (BTreeMap::<String, u32>::new(), Duration::ZERO);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let pause = kill_every / 2 + dice.roll(kill_every + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let since = Instant::now();
        if dice.roll(4) == 0 {
            // Each server in turn.
            let down: u32 = kills
                .iter()
                .filter(|(k, _)| k.starts_with("server"))
                .map(|(_, n)| n)
                .sum();
            let i = down as usize % servers.len();
            servers[i].crash_and_restart().unwrap();
            client = servers[0].client();
            *kills.entry(format!("server {i}")).or_default() += 1;
        } else {
            let i = dice.roll(workers.len() as u64) as usize;
            let name = workers[i].name.clone();
            let killed = std::mem::replace(&mut workers[i], spawn(servers, &name));
            killed.kill();
            *kills.entry("worker".into()).or_default() += 1;
        }
        for w in &workers {
            connected(&client, &w.name).await;
        }
        longest_recovery = longest_recovery.max(since.elapsed());
    }

    let done = all_ended(&client, &ids, Duration::from_secs(180)).await;
    let mut executions = BTreeMap::<usize, u32>::new();
    for line in std::fs::read_to_string(&runs).unwrap().lines() {
        *executions.entry(line.parse().unwrap()).or_default() += 1;
    }
    for (i, ran) in hosted_runs(&client).await {
        *executions.entry(i).or_default() += ran;
    }
    let (mut attempts, mut lost_total) = (0, 0);
    for (i, job) in done.iter().enumerate() {
        assert_eq!(job.status, JobStatus::Succeeded, "job {i}: {job:?}");
        assert_eq!(job.result, Some(json!({ "n": i })), "job {i}: {job:?}");
        let lost = lost(job);
        let ran = executions.get(&i).copied().unwrap_or(0);
        // A hosted call whose server was killed before its record was written has
        // none: records bound a hosted job's executions from below only.
        let least = if i < n { 1 } else { 0 };
        assert!(
            (least..=1 + lost).contains(&ran),
            "job {i} ran {ran} times with {lost} lost attempts: {job:?}"
        );
        attempts += job.attempts;
        lost_total += lost;
    }
    eprintln!(
        "chaos: {} jobs ({hosted} hosted), {} executions, {attempts} attempts ({lost_total} lost), kills {kills:?}, longest recovery {longest_recovery:?}",
        n + hosted,
        executions.values().sum::<u32>()
    );
}

/// Attempts a job lost with its worker or server.
fn lost(job: &Job) -> u32 {
    job.attempt_errors
        .iter()
        .filter(|e| matches!(e.code, ErrorCode::WorkerLost | ErrorCode::LeaseExpired))
        .count() as u32
}

/// Completed executions of `admin/hosted` per job, from the records of its calls
/// (each wrote its input, `{"n": …}`, to stderr).
async fn hosted_runs(client: &swb_client::Client) -> BTreeMap<usize, u32> {
    let filter = InvocationFilter {
        function: Some("admin/hosted".into()),
        limit: Some(1000),
        ..Default::default()
    };
    let records = client.invocations(&filter).await.unwrap().invocations;
    assert!(records.len() < 1000, "every record in one page");
    let mut runs = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Ok(_)))
    {
        let input: serde_json::Value =
            serde_json::from_str(&r.stderr_tail).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        *runs
            .entry(input["n"].as_u64().unwrap() as usize)
            .or_default() += 1;
    }
    runs
}
