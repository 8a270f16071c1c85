//! The exec adapter: any program becomes a remote function. Each call runs the
//! command with the input on stdin and takes its stdout as the output.

use crate::handler::{CallContext, Handler, Reply};
use async_trait::async_trait;
use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use swb_api::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

pub struct Exec {
    program: String,
    args: Vec<String>,
    dir: Option<std::path::PathBuf>,
}

impl Exec {
    pub fn new(program: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            dir: None,
        }
    }

    /// Runs the command in `dir` (a relative program path is found there too)
    /// instead of the worker's own folder.
    pub fn in_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        if self.program.contains('/') {
            self.program = dir.join(&self.program).to_string_lossy().into_owned();
        }
        self.dir = Some(dir);
        self
    }
}

/// Has the kernel kill the command when this process dies, however it dies (`kill
/// -9` included, when no destructor runs). The signal comes when the thread that
/// spawned the command ends: commands are spawned by calls on the runtime's worker
/// threads, which live as long as the process.
pub fn die_with_this_process(command: &mut Command) {
    let parent = nix::unistd::getpid();
    let arm = move || {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // The parent may have died before the signal was armed.
        if nix::unistd::getppid() != parent {
            // An OS error number: no allocation in the forked child.
            return Err(nix::errno::Errno::ESRCH.into());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(arm);
    }
}

/// Kills the command's whole process group when the call ends early (cancelled,
/// timed out) or the handler's future is dropped.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Reads up to `cap` bytes; `Err(())` if the stream had more.
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> Result<Vec<u8>, Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(buf),
            Ok(n) if buf.len() + n > cap => {
                buf.extend_from_slice(&chunk[..cap - buf.len()]);
                return Err(buf);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads everything, keeping the last `cap` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    while let Ok(n @ 1..) = r.read(&mut chunk).await {
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * cap {
            buf.drain(..buf.len() - cap);
        }
    }
    if buf.len() > cap {
        buf.drain(..buf.len() - cap);
    }
    buf
}

#[async_trait]
impl Handler for Exec {
    async fn call(&self, ctx: CallContext, input: Bytes) -> Reply {
        let mut command = Command::new(&self.program);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        if let Some(profile) = &ctx.profile {
            command.env("SWB_PROFILE", profile.to_string());
        }
        if let Some(id) = &ctx.invocation {
            command.env("SWB_CALL_ID", id);
        }
        if let Some(traceparent) = &ctx.traceparent {
            command.env("TRACEPARENT", traceparent);
        }
        command.envs(ctx.secrets.iter());
        // Nested calls: `swb fn invoke` (or curl) in the command is part of this call.
        // Otherwise the command gets no token at all (not the worker's own).
        match &ctx.platform {
            Some(platform) => command
                .env("SWB_URL", platform.base_url())
                .env("SWB_TOKEN", platform.token()),
            None => command.env_remove("SWB_URL").env_remove("SWB_TOKEN"),
        };
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        die_with_this_process(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Reply::error(ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot start {}: {e}", self.program),
                ));
            }
        };
        let mut guard = GroupGuard(child.id().map(|id| id as i32));
        let mut stdin = child.stdin.take().expect("piped");
        let feed = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
        let stdout = read_capped(
            child.stdout.take().expect("piped"),
            ctx.limits.stdout_bytes as usize,
        );
        let stderr = read_tail(
            child.stderr.take().expect("piped"),
            ctx.limits.stderr_bytes as usize,
        );
        let deadline = Duration::from_millis(ctx.limits.timeout_ms);
        let run = async {
            let (out, err) = tokio::join!(stdout, stderr);
            (out, err, child.wait().await)
        };
        let (out, err, status) = match tokio::time::timeout(deadline, run).await {
            Ok(done) => done,
            Err(_) => {
                return Reply::error(
                    ApiError::new(
                        ErrorCode::Timeout,
                        format!("command did not finish within {} ms", ctx.limits.timeout_ms),
                    )
                    .with_details(json!({ "timeout_ms": ctx.limits.timeout_ms })),
                );
            }
        };
        feed.abort();
        let stderr_tail = String::from_utf8_lossy(&err).into_owned();
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                return Reply::error(ApiError::new(
                    ErrorCode::Internal,
                    format!("wait failed: {e}"),
                ));
            }
        };
        // The command is done; nothing of its group needs killing unless it left
        // children behind, which the guard still takes care of.
        if status.success() {
            guard.0 = None;
        }
        let output = match (status.code(), out) {
            (Some(0), Ok(out)) => Ok(Bytes::from(out)),
            (Some(0), Err(_)) => Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("output exceeds {} bytes", ctx.limits.stdout_bytes),
            )
            .with_details(json!({ "limit": "stdout", "limit_bytes": ctx.limits.stdout_bytes }))),
            (Some(code), _) => Err(ApiError::new(
                ErrorCode::FunctionError,
                format!("command exited with code {code}"),
            )
            .with_details(json!({ "exit_code": code, "stderr_tail": stderr_tail }))),
            (None, _) => Err(ApiError::new(
                ErrorCode::FunctionError,
                "command was killed by a signal",
            )
            .with_details(json!({ "signal": std::os::unix::process::ExitStatusExt::signal(&status), "stderr_tail": stderr_tail }))),
        };
        Reply {
            output,
            stderr_tail,
        }
    }
}
