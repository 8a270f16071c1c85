//! The benchmark suite: every scenario against real processes started from this
//! binary in a temporary directory, each compared with the ideal measured in the
//! same run.

use crate::load::{Load, LoadSpec, Samples, Window, percentile};
use bytes::Bytes;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swb_api::{DeployRequest, JobStatus, SubmitJob};
use swb_client::{Client, JobFilter};
use swb_testkit::{ServerProc, WorkerProc, connected, deploy, guests};

#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Measured time of each load run.
    pub duration: Duration,
    /// Postgres (a URL whose user may create databases) and NATS for the cluster
    /// scenario; it is skipped without them.
    pub cluster: Option<(String, String)>,
    /// A Python interpreter that has the SDK (`sdk/python`), for the Python client
    /// and worker scenarios; they are skipped without one.
    pub python: Option<PathBuf>,
}

/// One line of results.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub scenario: String,
    pub concurrency: usize,
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mb: Option<f64>,
    /// The windows of a scenario measured in rounds with others, in round order:
    /// window `i` of a scenario ran in turn with window `i` of the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

impl Line {
    fn from_load(scenario: &str, l: Load) -> Self {
        Self {
            scenario: scenario.into(),
            concurrency: l.concurrency,
            requests: l.requests,
            rps: l.rps,
            p50_us: l.p50_us,
            p99_us: l.p99_us,
            rss_mb: None,
            windows: l.windows,
        }
    }
}

const BODY: &str = r#"{"hello":"world"}"#;

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Suite {
    bin: PathBuf,
    dir: tempfile::TempDir,
    duration: Duration,
    lines: Vec<Line>,
    report: Box<dyn FnMut(&Line)>,
}

impl Suite {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, mode: &str, name: &str) -> anyhow::Result<ServerProc> {
        ServerProc::start(&self.bin, mode, &self.path(name), &[])
    }

    fn sdk_echo(&self, server: &ServerProc, log: &str) -> anyhow::Result<WorkerProc> {
        WorkerProc::spawn(
            &self.bin,
            &["__sdk-echo"],
            server,
            "bench-echo",
            &self.path(log),
        )
    }

    /// Loads each target at each concurrency. Several targets are measured in turns,
    /// [`ROUNDS`] windows each, so that a machine whose speed drifts over the run (as
    /// a shared VM's does, by ±15 % within a minute) weighs on all of them alike, and a
    /// ratio compares loads measured at the same moments.
    async fn load(&mut self, targets: &[Target<'_>], c: &[usize]) -> anyhow::Result<()> {
        let rounds = if targets.len() > 1 { ROUNDS } else { 1 };
        for &concurrency in c {
            let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
            for _ in 0..rounds {
                for (t, samples) in targets.iter().zip(&mut samples) {
                    let spec = LoadSpec {
                        url: t.url.clone(),
                        token: Some(t.token.to_owned()),
                        body: Bytes::from_static(BODY.as_bytes()),
                        concurrency,
                        duration: self.duration / rounds,
                    };
                    samples.run(&spec).await?;
                }
            }
            for (t, samples) in targets.iter().zip(samples) {
                let l = samples.load(concurrency, self.duration);
                anyhow::ensure!(
                    l.requests > 0,
                    "{}: no request succeeded ({} errors; the first: {})",
                    t.scenario,
                    l.errors,
                    l.first_error.as_deref().unwrap_or("none recorded")
                );
                self.push(Line::from_load(t.scenario, l));
            }
        }
        Ok(())
    }

    /// One Python caller in a closed loop per target (c=1), in turns like
    /// [`Suite::load`]: `python_httpx_ideal` is a bare loop of httpx (the SDK's HTTP
    /// client), any other target a loop of the SDK's sync `Client.invoke`.
    async fn python_loops(&mut self, python: &Path, targets: &[Target<'_>]) -> anyhow::Result<()> {
        let window = self.duration / ROUNDS;
        let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
        for _ in 0..ROUNDS {
            for (t, samples) in targets.iter().zip(&mut samples) {
                let mode = if t.scenario == "python_httpx_ideal" {
                    "httpx"
                } else {
                    "sdk"
                };
                let out = tokio::process::Command::new(python)
                    .args(["-c", PYTHON_LOOP, mode, &t.url, t.token])
                    .arg(window.as_secs_f64().to_string())
                    .output()
                    .await?;
                anyhow::ensure!(
                    out.status.success(),
                    "{}: {}",
                    t.scenario,
                    String::from_utf8_lossy(&out.stderr)
                );
                let latencies: Vec<u32> = serde_json::from_slice(&out.stdout)?;
                samples.add_window(latencies, window);
            }
        }
        for (t, samples) in targets.iter().zip(samples) {
            let l = samples.load(1, self.duration);
            anyhow::ensure!(l.requests > 0, "{}: no call succeeded", t.scenario);
            self.push(Line::from_load(t.scenario, l));
        }
        Ok(())
    }

    fn push(&mut self, line: Line) {
        (self.report)(&line);
        self.lines.push(line);
    }

    fn memory(&mut self, scenario: &str, rss_mb: Option<f64>) {
        self.push(Line {
            scenario: scenario.into(),
            concurrency: 1,
            requests: 0,
            rps: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            rss_mb,
            windows: Vec::new(),
        });
    }

    /// Single calls timed one at a time: their median and the slowest.
    fn cold(&mut self, scenario: &str, mut micros: Vec<f64>) {
        micros.sort_by(f64::total_cmp);
        self.push(Line {
            scenario: scenario.into(),
            concurrency: 1,
            requests: micros.len() as u64,
            rps: 0.0,
            p50_us: micros[micros.len() / 2],
            p99_us: micros[micros.len() - 1],
            rss_mb: None,
            windows: Vec::new(),
        });
    }
}

/// Where a scenario's load goes: the invoke route of `function` on a server.
struct Target<'a> {
    scenario: &'a str,
    url: String,
    token: &'a str,
}

impl<'a> Target<'a> {
    fn new(scenario: &'a str, server: &ServerProc, function: &str, token: &'a str) -> Self {
        Self {
            scenario,
            url: format!("{}/v1/functions/{function}/invoke", server.url),
            token,
        }
    }
}

/// A Python worker serving `admin/echo-py` with the SDK (`SWB_URL`, `SWB_TOKEN`).
const PYTHON_ECHO_WORKER: &str = r#"
from switchboard import Worker

worker = Worker(name="bench-echo-py", capacity=64)

@worker.function("admin/echo-py", description="echo (benchmark)")
def echo(hello: str) -> dict[str, str]:
    return {"hello": hello}

worker.run()
"#;

/// `python -c PYTHON_LOOP MODE URL TOKEN SECONDS`: calls `URL` in a closed loop for
/// 0.3 s of warm-up and then SECONDS, and prints each measured call's latency (µs)
/// as a JSON list. MODE `httpx` posts the body with a bare `httpx.Client`; `sdk`
/// calls the function of URL with the SDK's `Client.invoke`.
const PYTHON_LOOP: &str = r#"
import json, sys, time
mode, url, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if mode == "httpx":
    import httpx
    http = httpx.Client(headers={"authorization": f"Bearer {token}"})
    body = b'{"hello":"world"}'
    def call():
        http.post(url, content=body).raise_for_status()
else:
    from switchboard import Client
    base, _, rest = url.partition("/v1/functions/")
    client = Client(base, token)
    function = rest.removesuffix("/invoke")
    def call():
        client.invoke(function, {"hello": "world"})
clock = time.perf_counter
warm = clock() + 0.3
while clock() < warm:
    call()
latencies, end = [], clock() + seconds
while (now := clock()) < end:
    call()
    latencies.append(int((clock() - now) * 1e6))
print(json.dumps(latencies))
"#;

/// Cold starts timed of each kind.
const COLD_STARTS: usize = 3;

/// Windows per target when targets are measured in turns: an odd number, for the
/// median of the paired ratios (`swb bench suite` judges the targets by it).
const ROUNDS: u32 = 5;

async fn timed_call(client: &Client, function: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    client
        .invoke(&function.parse()?, None, BODY)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(started.elapsed().as_micros() as f64)
}

/// Runs every scenario; `report` sees each line as soon as it is measured.
pub async fn run_suite(
    bin: &Path,
    opts: &SuiteOptions,
    report: impl FnMut(&Line) + 'static,
) -> anyhow::Result<Vec<Line>> {
    let mut s = Suite {
        bin: bin.to_owned(),
        dir: tempfile::tempdir()?,
        duration: opts.duration,
        lines: Vec::new(),
        report: Box::new(report),
    };
    let both = [1, 32];

    // Every server the ratios compare runs from the start, so that each platform
    // scenario is measured in turns with its ideal. The ideals get the very requests
    // the platform gets (path and token included; they answer on any path and ignore
    // the token), so the load generator spends the same on both sides of a ratio.
    let token = format!("swb_{}_{}", "0".repeat(16), "0".repeat(64));
    let ideal_echo = s.server("__ideal-echo", "ideal_http_echo")?;
    let ideal_wasm = s.server("__ideal-wasm", "ideal_http_wasm")?;
    // The embedded default: server and in-process worker.
    let up = s.server("up", "up")?;
    let up_client = up.client();
    deploy(&up_client, "admin/echo", guests::echo(), |_| {}).await?;
    // f→g: a hosted echo calling the hosted echo through the platform.
    let calls_echo =
        |r: &mut DeployRequest| r.calls = vec!["admin/echo".parse().expect("a valid name")];
    deploy(
        &up_client,
        "admin/echo-nested",
        guests::calls("admin/echo", 64_000),
        calls_echo,
    )
    .await?;
    // A server with separate worker processes: Wasm, and an SDK echo service.
    let server = s.server("server", "server")?;
    let client = server.client();
    let cache = s.path("worker-cache");
    let mut worker = WorkerProc::start(&s.bin, &server, "w1", &cache, &[])?;
    connected(&client, "w1").await;
    deploy(&client, "admin/echo", guests::echo(), |_| {}).await?;
    let sdk = s.sdk_echo(&server, "sdk.log")?;
    connected(&client, "bench-echo").await;
    // f on one Wasm worker calling g on another (labels place them).
    let mut hop_workers = Vec::new();
    for role in ["caller", "callee"] {
        let label = format!("role={role}");
        let w = WorkerProc::start(&s.bin, &server, role, &s.path(role), &["--label", &label])?;
        connected(&client, role).await;
        hop_workers.push(w);
    }
    let placed = |role: &'static str, calls: &'static [&'static str]| {
        move |r: &mut DeployRequest| {
            r.requires.insert("role".into(), role.into());
            r.calls = calls
                .iter()
                .map(|c| c.parse().expect("a valid name"))
                .collect();
        }
    };
    deploy(
        &client,
        "admin/echo-callee",
        guests::echo(),
        placed("callee", &[]),
    )
    .await?;
    let via = guests::calls("admin/echo-callee", 64_000);
    deploy(
        &client,
        "admin/echo-cross",
        via,
        placed("caller", &["admin/echo-callee"]),
    )
    .await?;
    let python_worker = match &opts.python {
        Some(python) => {
            let args = ["-c", PYTHON_ECHO_WORKER];
            let w = WorkerProc::spawn(python, &args, &server, "bench-echo-py", &s.path("py.log"))?;
            connected(&client, "bench-echo-py").await;
            Some(w)
        }
        None => None,
    };

    let hosted = [
        Target::new("ideal_http_wasm", &ideal_wasm, "admin/echo", &token),
        Target::new("invoke_hosted_inproc", &up, "admin/echo", &up.token),
        Target::new("invoke_hosted_worker", &server, "admin/echo", &server.token),
        Target::new("invoke_hosted_nested", &up, "admin/echo-nested", &up.token),
        Target::new(
            "invoke_hosted_nested_cross_worker",
            &server,
            "admin/echo-cross",
            &server.token,
        ),
    ];
    s.load(&hosted, &both).await?;
    drop(hop_workers);
    let mut remote = vec![
        Target::new("ideal_http_echo", &ideal_echo, "admin/echo", &token),
        Target::new("invoke_remote", &server, "admin/echo-remote", &server.token),
    ];
    if python_worker.is_some() {
        remote.push(Target::new(
            "invoke_remote_python",
            &server,
            "admin/echo-py",
            &server.token,
        ));
    }
    s.load(&remote, &both).await?;
    if let Some(python) = &opts.python {
        let loops = [
            Target::new("python_httpx_ideal", &ideal_echo, "admin/echo", &token),
            Target::new("python_client_invoke", &up, "admin/echo", &up.token),
        ];
        s.python_loops(python, &loops).await?;
    }
    drop((ideal_echo, ideal_wasm, sdk, python_worker));
    jobs(&mut s, &up_client).await?;
    drop(up);

    // Cold starts, a few of each (one alone is at the mercy of a busy moment): a new
    // module's first call, and the first call after a worker restart.
    let mut after_deploy = Vec::new();
    for i in 0..COLD_STARTS {
        let name = format!("admin/fresh-{i}");
        let fresh = guests::prints(&format!("{{\"fresh\":{},\"i\":{i}}}", std::process::id()));
        deploy(&client, &name, fresh, |_| {}).await?;
        after_deploy.push(timed_call(&client, &name).await?);
    }
    s.cold("cold_start_after_deploy", after_deploy);
    let mut after_restart = Vec::new();
    for i in 0..COLD_STARTS {
        worker.kill();
        let name = format!("w{}", i + 2);
        worker = WorkerProc::start(&s.bin, &server, &name, &cache, &[])?;
        connected(&client, &name).await;
        after_restart.push(timed_call(&client, "admin/fresh-0").await?);
    }
    s.cold("cold_start_after_worker_restart", after_restart);

    let args = [
        "serve",
        "admin/cat",
        "--name",
        "exec",
        "--concurrency",
        "8",
        "--",
        "cat",
    ];
    let exec = WorkerProc::spawn(&s.bin, &args, &server, "exec", &s.path("exec.log"))?;
    connected(&client, "exec").await;
    let exec_target = Target::new("invoke_exec", &server, "admin/cat", &server.token);
    s.load(&[exec_target], &[8]).await?;
    drop(exec);
    drop(server);

    if let Some((postgres, nats)) = &opts.cluster {
        cross_replica(&mut s, postgres, nats, &both).await?;
    }

    idle_memory(&mut s).await?;
    Ok(s.lines)
}

/// Remote calls entering one replica and answered by a worker of another: two
/// `swb server` replicas on a temporary Postgres database, joined by NATS.
async fn cross_replica(
    s: &mut Suite,
    postgres: &str,
    nats: &str,
    c: &[usize],
) -> anyhow::Result<()> {
    let db = swb_testkit::TestDatabase::create_on(postgres)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a database on {postgres}: {e}"))?;
    let args = ["--database-url", db.url.as_str(), "--nats-url", nats];
    let a = ServerProc::start(&s.bin, "server", &s.path("replica-a"), &args)?;
    let mut b = ServerProc::start(&s.bin, "server", &s.path("replica-b"), &args)?;
    b.token = a.token.clone();
    let sdk = s.sdk_echo(&a, "sdk-a.log")?;
    connected(&a.client(), "bench-echo").await;
    // A nested hop between replicas: a hosted f on B's worker calling the echo
    // served on A (its call enters B and is carried to A).
    let wasm = WorkerProc::start(&s.bin, &b, "wasm-b", &s.path("cache-b"), &[])?;
    connected(&b.client(), "wasm-b").await;
    let via = guests::calls("admin/echo-remote", 64_000);
    deploy(
        &b.client(),
        "admin/echo-remote-via",
        via,
        |r: &mut DeployRequest| {
            r.calls = vec!["admin/echo-remote".parse().expect("a valid name")];
        },
    )
    .await?;
    let targets = [
        Target::new(
            "invoke_remote_cross_replica",
            &b,
            "admin/echo-remote",
            &b.token,
        ),
        Target::new(
            "invoke_nested_cross_replica",
            &b,
            "admin/echo-remote-via",
            &b.token,
        ),
    ];
    s.load(&targets, c).await?;
    drop((sdk, wasm, a, b));
    Ok(())
}

/// Jobs per second from submission to recorded result, 32 submitters.
async fn jobs(s: &mut Suite, client: &Client) -> anyhow::Result<()> {
    const SUBMITTERS: usize = 32;
    const BATCH: usize = 100;
    let per = ((s.duration.as_secs_f64() * 8000.0) as usize / (SUBMITTERS * BATCH)).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..per {
                    let batch = (0..BATCH)
                        .map(|i| SubmitJob {
                            function: "admin/echo".into(),
                            input: Some(serde_json::json!({ "i": i })),
                            ..Default::default()
                        })
                        .collect();
                    let accepted = client.submit_jobs(batch).await?;
                    ids.extend(accepted.jobs.into_iter().map(|j| j.id));
                }
                anyhow::Ok(ids)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    let mut latencies = Vec::new();
    // Every job has ended when none is queued or running; then read the latencies.
    loop {
        let pending = |status: &str| {
            let client = client.clone();
            let status = status.to_owned();
            async move {
                let f = JobFilter {
                    status: Some(status),
                    limit: Some(1),
                    ..Default::default()
                };
                client.jobs(&f).await.map(|l| !l.jobs.is_empty())
            }
        };
        if !pending("queued").await? && !pending("running").await? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let sample = Arc::new(ids);
    for id in sample.iter().step_by((sample.len() / 200).max(1)) {
        let job = client.job(id, None).await?;
        anyhow::ensure!(
            job.status == JobStatus::Succeeded,
            "job {id} ended {:?}",
            job.status
        );
        if let Some(done) = job.finished_at {
            latencies.push(((done - job.created_at) * 1000) as f64);
        }
    }
    latencies.sort_by(f64::total_cmp);
    s.push(Line {
        scenario: "jobs_hosted".into(),
        concurrency: SUBMITTERS,
        requests: sample.len() as u64,
        rps: sample.len() as f64 / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies, 0.5),
        p99_us: percentile(&latencies, 0.99),
        rss_mb: None,
        windows: Vec::new(),
    });
    Ok(())
}

/// Server memory idle, and with 1,000 idle workers connected.
async fn idle_memory(s: &mut Suite) -> anyhow::Result<()> {
    let server = s.server("server", "idle")?;
    let client = server.client();
    client.workers().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mb(server.pid());
    s.memory("idle_memory_server", idle);
    let mut handles = Vec::new();
    for i in 0..1000 {
        let worker = swb_worker::Worker::new(swb_worker::WorkerConfig {
            name: format!("idle-{i}"),
            labels: Default::default(),
            capacity: 1,
            wasm: false,
            cache_dir: None,
        })?;
        let (url, token) = (server.url.clone(), server.token.clone());
        handles.push(tokio::spawn(async move {
            let backoff =
                swb_worker::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            swb_worker::run(&worker, &[url], &token, backoff, std::future::pending()).await
        }));
    }
    swb_testkit::eventually(
        "1,000 workers to connect",
        Duration::from_secs(60),
        || async {
            let n = client.workers().await.ok()?.workers.len();
            (n >= 1000).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = rss_mb(server.pid());
    s.memory("idle_memory_1000_workers", loaded);
    for h in handles {
        h.abort();
    }
    Ok(())
}
