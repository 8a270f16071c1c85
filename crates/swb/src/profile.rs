//! Where the CLI finds its server and token: flags and environment first, then the
//! file `swb login` writes, then the admin token of a local `swb up`.

use crate::Global;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use swb_client::Client;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub server: Option<String>,
    pub token: Option<String>,
}

/// `$SWB_CONFIG`, else `$XDG_CONFIG_HOME/swb/config.json`, else `~/.config/swb/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SWB_CONFIG") {
        return Some(PathBuf::from(p));
    }
    Some(user_dir("XDG_CONFIG_HOME", ".config")?.join("config.json"))
}

/// The user's `swb` folder of a kind: `$<xdg>/swb`, else `~/<under_home>/swb`.
pub fn user_dir(xdg: &str, under_home: &str) -> Option<PathBuf> {
    let base = std::env::var_os(xdg)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))?;
    Some(base.join("swb"))
}

pub fn load() -> anyhow::Result<Saved> {
    let Some(path) = config_path() else {
        return Ok(Saved::default());
    };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid swb config file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn save(saved: &Saved) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = config_path().context("cannot tell where to save: set HOME or SWB_CONFIG")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(&serde_json::to_vec_pretty(saved)?)?;
    Ok(path)
}

/// The admin token of a local `swb up` and its file: its `./.swb` here or in a
/// folder above (a project made with `swb new` beside the server's folder finds it).
fn local_admin_token() -> Option<(String, PathBuf)> {
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| swb_server::admin_token_path(&dir.join(crate::default_data_dir())))
        .find_map(|path| Some((read_token(&path).ok()?, path)))
}

pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let token =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(token.trim().to_owned())
}

/// Every server given (`--server` repeated or comma-separated, else the saved ones),
/// in order; never empty.
pub fn server_urls(global: &Global) -> anyhow::Result<Vec<String>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let given: Vec<String> = global.server.iter().flat_map(|s| split(s)).collect();
    if !given.is_empty() {
        return Ok(given);
    }
    let saved = load()?.server.map(|s| split(&s)).unwrap_or_default();
    if !saved.is_empty() {
        return Ok(saved);
    }
    Ok(vec![DEFAULT_SERVER.into()])
}

pub fn token(global: &Global) -> anyhow::Result<String> {
    Ok(token_from(global)?.0)
}

/// The token and where it was found.
pub fn token_from(global: &Global) -> anyhow::Result<(String, String)> {
    if let Some(t) = &global.token {
        return Ok((t.clone(), "--token or SWB_TOKEN".into()));
    }
    if let Some(t) = load()?.token {
        return Ok((t, "the file `swb login` wrote".into()));
    }
    if let Some((t, path)) = local_admin_token() {
        return Ok((t, path.display().to_string()));
    }
    bail!(
        "no API token: pass --token, set SWB_TOKEN, run `swb login`, \
         or run from the folder where `swb up` keeps ./.swb (or one below it)"
    )
}

/// A client of the first server that answers, in the order given (a cluster's
/// replicas); with one server, no question is asked first.
pub async fn client(global: &Global) -> anyhow::Result<Client> {
    let token = token(global)?;
    let urls = server_urls(global)?;
    if let [url] = urls.as_slice() {
        return Ok(Client::new(url, &token));
    }
    for url in &urls {
        let client = Client::new(url, &token);
        let answered =
            tokio::time::timeout(std::time::Duration::from_secs(2), client.health()).await;
        if matches!(answered, Ok(Ok(_))) {
            return Ok(client);
        }
    }
    // None answers: the first one's error will say so.
    Ok(Client::new(&urls[0], &token))
}
