//! Real `swb` processes for integration tests: a server (`up` or `server`) and
//! workers, on port 0, each in its own temporary directory. Processes are killed
//! when dropped; readiness is polled with deadlines, never slept for.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use swb_client::Client;

/// How long a process may take to start listening or connecting.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str], log: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(log)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env_remove("SWB_URL")
            .env_remove("SWB_TOKEN")
            .env("SWB_LOG", "info,swb=debug");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self { child })
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.sigterm()?;
        Ok(self.child.wait()?)
    }

    fn sigterm(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// The exit status once the process has exited, polled until `deadline`.
    fn exited_within(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `swb up` or `swb server`.
pub struct ServerProc {
    proc: Proc,
    pub url: String,
    pub data_dir: PathBuf,
    pub token: String,
    bin: PathBuf,
    mode: String,
    extra: Vec<String>,
}

impl ServerProc {
    /// Starts `swb <mode> --data-dir <dir> --listen 127.0.0.1:0 <extra…>` and waits
    /// until it prints the URL it listens on.
    pub fn start(bin: &Path, mode: &str, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(bin, mode, data_dir, "127.0.0.1:0", extra)
    }

    fn start_on(
        bin: &Path,
        mode: &str,
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let dir = data_dir.to_str().context("utf-8 path")?;
        let mut args = vec![mode, "--data-dir", dir, "--listen", listen];
        args.extend_from_slice(extra);
        let log = data_dir.join(format!("{mode}.log"));
        let mut proc = Proc::spawn(bin, &args, &log, &[])?;
        let stdout = proc.child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(START_DEADLINE) {
            Ok(url) => url,
            Err(_) => bail!(
                "swb {mode} did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        // Helper servers (the benchmark's ideal ones) have no token.
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(Self {
            proc,
            url,
            data_dir: data_dir.to_owned(),
            token,
            bin: bin.to_owned(),
            mode: mode.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        })
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, &self.token)
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Stops the server with SIGTERM and starts it again on the same address and
    /// data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let status = self.proc.terminate()?;
        anyhow::ensure!(status.success(), "server exited with {status} on SIGTERM");
        self.start_again()
    }

    /// Kills the server (SIGKILL, as a crash would) and starts it again.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.proc.child.kill()?;
        self.proc.child.wait()?;
        self.start_again()
    }

    fn start_again(&mut self) -> anyhow::Result<()> {
        let listen = (self.url.split_once("://"))
            .map_or(self.url.as_str(), |(_, a)| a)
            .to_owned();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut next = Self::start_on(&self.bin, &self.mode, &self.data_dir, &listen, &extra)?;
        // A replica that did not create the admin has no token file: keep the token.
        if next.token.is_empty() {
            next.token = std::mem::take(&mut self.token);
        }
        std::mem::swap(self, &mut next);
        // `next` now holds the stopped process; dropping it is harmless.
        Ok(())
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.proc.terminate()
    }

    /// Sends SIGTERM without waiting for the process to exit.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.proc.sigterm()
    }

    /// The exit status if the server exits within `deadline`.
    pub fn exited_within(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        self.proc.exited_within(deadline)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(format!("{}.log", self.mode)))
            .unwrap_or_default()
    }
}

/// A running `swb worker` process.
pub struct WorkerProc {
    proc: Proc,
    pub name: String,
    log: PathBuf,
}

impl WorkerProc {
    /// Starts `swb worker --name <name> --cache-dir <cache_dir> <extra…>` against a
    /// server; it dials out with the server's admin token unless `extra` gives one.
    pub fn start(
        bin: &Path,
        server: &ServerProc,
        name: &str,
        cache_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let cache = cache_dir.to_str().context("utf-8 path")?;
        let mut args = vec!["worker", "--name", name, "--cache-dir", cache];
        args.extend_from_slice(extra);
        Self::spawn(bin, &args, server, name, &cache_dir.with_extension("log"))
    }

    /// Starts any worker program (`swb serve …`, an SDK service) with `SWB_URL` and
    /// `SWB_TOKEN` pointing at the server; its stderr goes to `log`.
    pub fn spawn(
        program: &Path,
        args: &[&str],
        server: &ServerProc,
        name: &str,
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_to(program, args, &server.url, &server.token, name, log)
    }

    /// Like `spawn`, with `SWB_URL` set to `urls` (several: comma-separated).
    pub fn spawn_to(
        program: &Path,
        args: &[&str],
        urls: &str,
        token: &str,
        name: &str,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let envs = [("SWB_URL", urls), ("SWB_TOKEN", token)];
        let proc = Proc::spawn(program, args, log, &envs)?;
        Ok(Self {
            proc,
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    /// Asks the worker to stop (SIGTERM: drain, then exit) and waits for it.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.proc.terminate()
    }

    /// Kills the worker abruptly (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Whether the process has exited, with its status.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until a worker of this name is connected to the server; returns its id.
pub async fn connected(client: &Client, name: &str) -> String {
    eventually(
        &format!("worker {name} to connect"),
        START_DEADLINE,
        || async {
            let list = client.workers().await.ok()?;
            list.workers
                .into_iter()
                .find(|w| w.name == name)
                .map(|w| w.id)
        },
    )
    .await
}
