//! Shared setup of the integration tests: the real `swb` binary, started on port 0.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use swb_api::{ApiError, ErrorCode};
use swb_api::{Job, JobStatus, SubmitJob};
use swb_client::{Client, ClientError};
use swb_testkit::{ServerProc, TestDatabase, WorkerProc, connected, nats_url};
use tempfile::TempDir;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_swb"))
}

/// A `swb server` with one `swb worker` process connected to it.
pub struct Cluster {
    pub dir: TempDir,
    pub server: ServerProc,
    pub worker: Option<WorkerProc>,
    pub client: Client,
}

impl Cluster {
    pub async fn start(worker: bool, server_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProc::start(bin(), "server", &dir.path().join("data"), server_args)
            .expect("server starts");
        let client = server.client();
        let mut cluster = Self {
            dir,
            server,
            worker: None,
            client,
        };
        if worker {
            cluster.worker = Some(cluster.start_worker("w1", "cache-w1").await);
        }
        cluster
    }

    /// `swb serve <function> --name <name> <flags…> -- <command…>` against the server.
    pub fn serve(
        &self,
        name: &str,
        function: &str,
        flags: &[&str],
        command: &[&str],
    ) -> WorkerProc {
        let mut args = vec!["serve", function, "--name", name, "--max-backoff-ms", "300"];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        let log = self.dir.path().join(format!("{name}.log"));
        WorkerProc::spawn(bin(), &args, &self.server, name, &log).unwrap()
    }

    pub async fn start_worker(&self, name: &str, cache: &str) -> WorkerProc {
        let worker = WorkerProc::start(
            bin(),
            &self.server,
            name,
            &self.dir.path().join(cache),
            &["--capacity", "4", "--max-backoff-ms", "500"],
        )
        .expect("worker starts");
        connected(&self.client, name).await;
        worker
    }
}

/// Unwraps a client error into the server's API error.
pub fn api_error(e: ClientError) -> ApiError {
    match e {
        ClientError::Api(e) => e,
        other => panic!("expected an API error, got {other}"),
    }
}

pub fn assert_code(e: ClientError, code: ErrorCode) -> ApiError {
    let e = api_error(e);
    assert_eq!(e.code, code, "unexpected error: {e:?}");
    e
}

/// The `swb` CLI pointed at a server with a token, run in `cwd`.
pub struct Cli {
    url: String,
    token: String,
    cwd: PathBuf,
    /// The server certificate's fingerprint, for an HTTPS server (`SWB_TLS_PIN`).
    pin: Option<String>,
}

impl Cli {
    pub fn new(url: &str, token: &str, cwd: &Path) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            cwd: cwd.into(),
            pin: None,
        }
    }

    /// The same, for an HTTPS server with this certificate fingerprint.
    pub fn pinned(mut self, pin: &str) -> Self {
        self.pin = Some(pin.into());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .args(args)
            .current_dir(&self.cwd)
            .env("SWB_URL", &self.url)
            .env("SWB_TOKEN", &self.token)
            .env("SWB_CONFIG", self.cwd.join("config.json"));
        if let Some(pin) = &self.pin {
            command.env("SWB_TLS_PIN", pin);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `swb` with `input` on its stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "swb {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// Whether a process runs (a killed process that is not yet reaped is a zombie, `Z`).
pub fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

pub fn job(function: &str, input: Value) -> SubmitJob {
    SubmitJob {
        function: function.into(),
        input: Some(input),
        ..Default::default()
    }
}

/// Submits `n` echo jobs in batches; returns their ids in order.
pub async fn submit_echo(client: &Client, function: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let jobs = chunk
            .iter()
            .map(|i| job(function, json!({ "n": i })))
            .collect();
        ids.extend(submit(client, jobs).await);
    }
    ids
}

/// Submits jobs in one batch; returns their ids in order.
pub async fn submit(client: &Client, jobs: Vec<SubmitJob>) -> Vec<String> {
    let accepted = client.submit_jobs(jobs).await.unwrap();
    accepted.jobs.into_iter().map(|j| j.id).collect()
}

pub async fn all_ended(client: &Client, ids: &[String], within: Duration) -> Vec<Job> {
    let mut done = Vec::new();
    let end = Instant::now() + within;
    for id in ids {
        loop {
            let left = end.saturating_duration_since(Instant::now()).as_secs();
            assert!(left > 0, "job {id} did not end in time");
            let j = client.job(id, Some(left.min(10))).await.unwrap();
            if j.status.is_final() {
                done.push(j);
                break;
            }
        }
    }
    done
}

pub fn assert_echoed(jobs: &[Job]) {
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.status, JobStatus::Succeeded, "{j:?}");
        assert_eq!(j.result, Some(json!({ "n": i })), "{j:?}");
    }
}

/// Replicas of one cluster, started at the same time on an empty database.
pub struct Replicas {
    pub dir: TempDir,
    pub servers: Vec<ServerProc>,
    _db: TestDatabase,
}

impl Replicas {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, &[]).await
    }

    /// `start`, with more flags for every replica.
    pub async fn start_with(n: usize, extra: &[&str]) -> Self {
        let db = TestDatabase::create().await;
        let dir = tempfile::Builder::new()
            .disable_cleanup(true)
            .tempdir()
            .unwrap();
        let blobs = dir.path().join("blobs");
        let nats = nats_url();
        let mut servers: Vec<ServerProc> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..n)
                .map(|i| {
                    let data = dir.path().join(format!("replica-{i}"));
                    let (db, nats, blobs) = (&db.url, &nats, &blobs);
                    s.spawn(move || {
                        let mut args = vec![
                            "--database-url",
                            db.as_str(),
                            "--nats-url",
                            nats.as_str(),
                            "--blob-dir",
                            blobs.to_str().unwrap(),
                        ];
                        args.extend_from_slice(extra);
                        ServerProc::start(bin(), "server", &data, &args).expect("replica starts")
                    })
                })
                .collect();
            starts.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Exactly one replica created the admin and wrote its token; the others use
        // the same user.
        let tokens: Vec<String> = servers
            .iter()
            .map(|s| s.token.clone())
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(tokens.len(), 1, "one admin token among the replicas");
        for s in &mut servers {
            s.token = tokens[0].clone();
        }
        Self {
            dir,
            servers,
            _db: db,
        }
    }

    pub fn client(&self, i: usize) -> Client {
        self.servers[i].client()
    }

    /// Every replica's URL, comma-separated, starting with replica `first`.
    pub fn urls_from(&self, first: usize) -> String {
        let n = self.servers.len();
        (0..n)
            .map(|i| self.servers[(first + i) % n].url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A worker program dialing `urls` with the admin token.
    pub fn spawn(&self, name: &str, args: &[&str], urls: &str) -> WorkerProc {
        let log = self.dir.path().join(format!("{name}.log"));
        let token = &self.servers[0].token;
        WorkerProc::spawn_to(bin(), args, urls, token, name, &log).unwrap()
    }

    pub fn wasm_worker(&self, name: &str, urls: &str) -> WorkerProc {
        let cache = self.dir.path().join(format!("cache-{name}"));
        let args = [
            "worker",
            "--name",
            name,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--capacity",
            "4",
            "--max-backoff-ms",
            "300",
        ];
        self.spawn(name, &args, urls)
    }

    /// `swb serve <function> [--server URL…] -- sh -c "sleep <delay>; cat"`: an echo
    /// that takes time, dialing `urls` or, when given, the `--server` flags.
    pub fn echo_service(
        &self,
        name: &str,
        function: &str,
        delay: &str,
        urls: &str,
        servers: &[&str],
    ) -> WorkerProc {
        let script = format!("sleep {delay}; cat");
        let mut args = vec![
            "serve",
            function,
            "--name",
            name,
            "--idempotent",
            "--concurrency",
            "8",
            "--max-backoff-ms",
            "300",
        ];
        for s in servers {
            args.extend(["--server", s]);
        }
        args.extend(["--", "sh", "-c", &script]);
        self.spawn(name, &args, urls)
    }
}

/// The files under `dir` (at any depth) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    files_with_bytes(dir, needle.as_bytes())
}

/// The files under `dir` holding these bytes.
pub fn files_with_bytes(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}
