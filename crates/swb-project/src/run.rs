//! Running a project's commands: its build and its schema command.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `command` with `sh -c` in `dir`, its output going to ours; fails naming
/// the command and its exit status.
pub(crate) fn status(dir: &Path, command: &str) -> anyhow::Result<()> {
    let status = shell(dir, command)
        .status()
        .with_context(|| format!("cannot run `{command}`"))?;
    if !status.success() {
        bail!("`{command}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` with `sh -c` in `dir` and returns what it printed (its stderr goes
/// to ours).
pub(crate) fn output(dir: &Path, command: &str) -> anyhow::Result<Vec<u8>> {
    let out = shell(dir, command)
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run `{command}`"))?;
    if !out.status.success() {
        bail!("`{command}` failed ({})", out.status);
    }
    Ok(out.stdout)
}

fn shell(dir: &Path, command: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

impl crate::Project {
    /// Runs the build (if the manifest has a command) and reads the artefact.
    pub fn build(&self) -> anyhow::Result<Vec<u8>> {
        let build = self
            .manifest
            .build
            .as_ref()
            .context("this project has no [build]: it is a remote function")?;
        if let Some(command) = &build.command {
            status(&self.dir, command)?;
        }
        let artefact = self.path(&build.artefact);
        std::fs::read(&artefact).with_context(|| {
            format!(
                "cannot read the artefact {} ([build] artefact): did the build make it?",
                artefact.display()
            )
        })
    }
}
