//! `swb secret`: a namespace's secrets, set from stdin, listed by name, deleted.
//! Values go to the server and nowhere else: never an argument (shell history, `ps`),
//! never printed.

use crate::cli::print_json;
use crate::{Global, profile, table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read};
use std::path::Path;
use swb_api::timestamp::format as time;
use swb_api::{MAX_SECRET_CHARS, Namespace};

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Set a secret from stdin (`swb secret set API_KEY < key.txt`, or type it:
    /// it is not echoed). Versions granted it (`secrets` in switchboard.toml,
    /// `--secret` on deploy) receive the new value from their next call
    Set {
        /// Its name, which is also the environment variable it arrives in (A-Z, 0-9, _)
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// List secrets: names, who set them and when (values are never shown)
    Ls {
        /// The namespace [default: the project's in this folder, else your own]
        #[arg(long)]
        ns: Option<Namespace>,
    },
    /// Delete a secret (calls of versions granted it then fail until it is set again)
    Rm {
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Args)]
pub struct Where {
    /// The namespace [default: the project's in this folder, else your own]
    #[arg(long)]
    ns: Option<Namespace>,
    /// The secret of this function only (it wins over a namespace-wide one of the
    /// same name)
    #[arg(long)]
    function: Option<String>,
}

pub async fn secret(global: &Global, cmd: SecretCmd) -> anyhow::Result<()> {
    let client = profile::client(global).await?;
    match cmd {
        SecretCmd::Set { name, at } => {
            swb_api::check_secret_name(&name).map_err(anyhow::Error::msg)?;
            let ns = namespace(&client, at.ns).await?;
            let value = read_value(&name)?;
            let info = client.set_secret(&ns, &name, value, at.function).await?;
            if global.json {
                return print_json(&info);
            }
            let whose = match &info.function {
                Some(f) => format!("{ns}/{f}"),
                None => ns.to_string(),
            };
            println!("secret {name} of {whose} set");
        }
        SecretCmd::Ls { ns } => {
            let ns = namespace(&client, ns).await?;
            let list = client.secrets(&ns).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .secrets
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.function.clone().unwrap_or_else(|| "(namespace)".into()),
                        time(s.updated_at),
                        s.updated_by.clone(),
                    ]
                })
                .collect();
            table::print(&["SECRET", "OF", "UPDATED", "BY"], &rows);
        }
        SecretCmd::Rm { name, at } => {
            let ns = namespace(&client, at.ns).await?;
            client
                .delete_secret(&ns, &name, at.function.as_deref())
                .await?;
            println!("deleted secret {name} of {ns}");
        }
    }
    Ok(())
}

/// The namespace named, else the project's in this folder, else the caller's own.
async fn namespace(
    client: &swb_client::Client,
    named: Option<Namespace>,
) -> anyhow::Result<Namespace> {
    if let Some(ns) = named {
        return Ok(ns);
    }
    if let Ok(project) = swb_project::Project::find(Path::new(".")) {
        return Ok(project.manifest.name.namespace().clone());
    }
    let me = client
        .me()
        .await
        .context("to use your own namespace the server must say which it is; or pass --ns")?;
    Ok(me.user.namespace)
}

/// The value from stdin: piped, all of it less one final newline; typed, one line
/// read without echo.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut value = if stdin.is_terminal() {
        eprint!("value of {name} (not shown): ");
        let line = without_echo(|| {
            let mut line = String::new();
            stdin.read_line(&mut line).map(|_| line)
        })?;
        eprintln!();
        line
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(4 * MAX_SECRET_CHARS as u64 + 3)
            .read_to_end(&mut bytes)
            .context("cannot read the value from stdin")?;
        String::from_utf8(bytes).context("a secret's value must be UTF-8 text")?
    };
    for end in ["\n", "\r"] {
        if value.ends_with(end) {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no value on stdin: pipe it in (`swb secret set {name} < file`) or type it");
    }
    if value.chars().count() > MAX_SECRET_CHARS {
        bail!("a secret holds at most {MAX_SECRET_CHARS} characters");
    }
    Ok(value)
}

/// Runs `read` with the terminal's echo off, restoring it after.
fn without_echo<T>(read: impl FnOnce() -> std::io::Result<T>) -> anyhow::Result<T> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn off echo")?;
    let read = read();
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    Ok(read?)
}
