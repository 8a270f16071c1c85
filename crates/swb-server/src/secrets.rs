//! Secrets: sealed with XChaCha20-Poly1305 under a key kept in a file outside the
//! database, set and listed by name, never read back. A version is granted secrets
//! by name; the routing table opens them when it builds the version's route, so a
//! new value applies to the next call without a deploy.

use crate::App;
use crate::api::forbidden;
use crate::auth::Caller;
use crate::cluster::Change;
use crate::error::{AppResult, store_error};
use crate::extract::{Json, Path, Query};
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, ErrorCode, FunctionRef, MAX_NAMESPACE_SECRETS, MAX_SECRET_CHARS, MAX_VERSION_SECRETS,
    Namespace, Role, SecretInfo, SecretList, SecretQuery, SecretValues, SetSecret,
    check_secret_name,
};
use swb_store::{SecretRow, Store};

const NONCE_BYTES: usize = 24;
/// The setting under which the database remembers which key sealed its secrets.
const KEY_SETTING: &str = "secrets_key";

/// The key secrets are sealed with.
pub struct Keyring {
    cipher: XChaCha20Poly1305,
    /// Names the key without revealing it (a hash), to tell keys apart.
    fingerprint: String,
    path: PathBuf,
    /// Set once the database is known to hold secrets of this key (or none).
    checked: OnceLock<()>,
}

impl Keyring {
    /// Reads the key file (64 hex digits), or creates it (mode 0600) when missing. A
    /// key file others may read is refused. Replicas starting together on one path
    /// end up with the same key: it appears whole, under its name, or not at all.
    pub fn open_or_create(path: &FsPath) -> anyhow::Result<Self> {
        if !path.exists() {
            create_key(path)
                .with_context(|| format!("cannot create the secrets key {}", path.display()))?;
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        refuse_open_permissions(path)?;
        let key = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .with_context(|| {
                format!(
                    "{} does not hold a secrets key (64 hex digits, e.g. from \
                     `openssl rand -hex 32`)",
                    path.display()
                )
            })?;
        let fingerprint =
            hex::encode(&Sha256::digest([b"swb secrets key\0", &key[..]].concat())[..8]);
        Ok(Self {
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key"),
            fingerprint,
            path: path.to_owned(),
            checked: OnceLock::new(),
        })
    }

    /// The associated data: a sealed value opens only as the secret it was sealed as.
    fn aad(namespace: &Namespace, function: Option<&str>, name: &str) -> String {
        format!(
            "swb secret\0{namespace}\0{}\0{name}",
            function.unwrap_or("")
        )
    }

    /// Checks, once, that the database's secrets were sealed with this key (and
    /// claims the database for it when it holds none yet).
    async fn check(&self, store: &dyn Store) -> Result<(), ApiError> {
        if self.checked.get().is_some() {
            return Ok(());
        }
        let theirs = store
            .setting_or_init(KEY_SETTING, &self.fingerprint)
            .await
            .map_err(store_error)?;
        if theirs != self.fingerprint {
            tracing::error!(
                path = %self.path.display(),
                ours = %self.fingerprint,
                database = %theirs,
                "this server's secrets key is not the one the database's secrets were sealed \
                 with: give every server of this database the same --secrets-key-file"
            );
            return Err(ApiError::new(
                ErrorCode::Internal,
                "the secrets key differs from the database's",
            ));
        }
        let _ = self.checked.set(());
        Ok(())
    }

    async fn seal(
        &self,
        store: &dyn Store,
        row: &mut SecretRow,
        value: &str,
    ) -> Result<(), ApiError> {
        let aad = Self::aad(&row.namespace, row.function.as_deref(), &row.name);
        row.sealed = self.seal_bytes(store, &aad, value.as_bytes()).await?;
        Ok(())
    }

    async fn open(&self, store: &dyn Store, row: &SecretRow) -> Result<String, ApiError> {
        let aad = Self::aad(&row.namespace, row.function.as_deref(), &row.name);
        let failed = || {
            tracing::error!(namespace = %row.namespace, secret = %row.name, "a secret does not open with this server's key");
            ApiError::new(ErrorCode::Internal, "a secret could not be opened")
        };
        let plain = (self.open_bytes(store, &aad, &row.sealed).await?).ok_or_else(failed)?;
        String::from_utf8(plain).map_err(|_| failed())
    }

    /// Seals `value` so that it opens only with this key and the same `aad`.
    pub async fn seal_bytes(
        &self,
        store: &dyn Store,
        aad: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        self.check(store).await?;
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ApiError::new(ErrorCode::Internal, "sealing a secret failed"))?;
        Ok([&nonce[..], &sealed].concat())
    }

    /// What `seal_bytes` sealed, or `None` when it does not open (another key or
    /// `aad`, or damaged).
    pub async fn open_bytes(
        &self,
        store: &dyn Store,
        aad: &str,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, ApiError> {
        self.check(store).await?;
        if sealed.len() < NONCE_BYTES {
            return Ok(None);
        }
        let (nonce, sealed) = sealed.split_at(NONCE_BYTES);
        Ok(self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .ok())
    }

    /// The values of the secrets a version of `function` is granted: the function's
    /// own secret of each name, else the namespace's.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        function: &FunctionRef,
        version: u32,
        names: &[String],
    ) -> Result<SecretValues, ApiError> {
        if names.is_empty() {
            return Ok(SecretValues::default());
        }
        let rows = store
            .secrets(function.namespace())
            .await
            .map_err(store_error)?;
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let row = find(&rows, function, name).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{function}@{version} is granted the secret {name}, which is not set; \
                         set it with `swb secret set {name} --ns {}`",
                        function.namespace()
                    ),
                )
                .with_details(json!({ "secret": name }))
            })?;
            values.push((name.clone(), self.open(store, row).await?));
        }
        Ok(SecretValues::new(values))
    }
}

/// Writes a new key beside `path` and links it into place, unless another process
/// did first.
fn create_key(path: &FsPath) -> std::io::Result<()> {
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    crate::write_secret(&tmp, &hex::encode(key))?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the secrets key");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn refuse_open_permissions(path: &FsPath) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the secrets key {} may be read by others (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// The secret a function's version receives under `name`.
fn find<'a>(rows: &'a [SecretRow], function: &FunctionRef, name: &str) -> Option<&'a SecretRow> {
    let named = |f: Option<&str>| {
        rows.iter()
            .find(|r| r.name == name && r.function.as_deref() == f)
    };
    named(Some(function.name())).or_else(|| named(None))
}

/// The secrets a version asks for, once checked: well-named, few enough, set in its
/// namespace now (else `conflict`), not clashing with its static environment; in
/// order, each once.
pub(crate) async fn check_grants(
    app: &App,
    function: &FunctionRef,
    mut names: Vec<String>,
    env: impl Iterator<Item = &str>,
) -> Result<Vec<String>, ApiError> {
    if names.is_empty() {
        return Ok(names);
    }
    names.sort();
    names.dedup();
    if names.len() > MAX_VERSION_SECRETS {
        return Err(ApiError::invalid_input(format!(
            "at most {MAX_VERSION_SECRETS} secrets per version, got {}",
            names.len()
        )));
    }
    for name in &names {
        check_secret_name(name).map_err(ApiError::invalid_input)?;
    }
    let rows = app
        .store
        .secrets(function.namespace())
        .await
        .map_err(store_error)?;
    for name in &names {
        if find(&rows, function, name).is_none() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "secret {name} is not set in {}; set it first with `swb secret set {name} --ns {}`",
                    function.namespace(),
                    function.namespace()
                ),
            )
            .with_details(json!({ "secret": name })));
        }
    }
    let env: Vec<&str> = env.collect();
    if let Some(name) = names.iter().find(|n| env.contains(&n.as_str())) {
        return Err(ApiError::invalid_input(format!(
            "{name} is both a secret and a static environment variable"
        )));
    }
    Ok(names)
}

/// The namespace and function a request names, once the caller may manage them:
/// `not_found` when they hold no role there at all, `forbidden` without `deploy`.
fn managed(
    app: &App,
    caller: &Caller,
    ns: &str,
    function: Option<&str>,
) -> Result<(Namespace, Option<String>), ApiError> {
    let namespace: Namespace = ns
        .parse()
        .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))?;
    if let Some(f) = function {
        crate::api::function_ref(ns, f)?;
    }
    let roles = caller.roles(&app.acl, &namespace, function);
    if app.acl.owner(&namespace).is_none() || roles.is_empty() {
        return Err(ApiError::not_found(format!("namespace {namespace}")));
    }
    if !roles.has(Role::Deploy) {
        return Err(forbidden(format_args!("manage the secrets of {namespace}")));
    }
    Ok((namespace, function.map(str::to_owned)))
}

fn info(row: &SecretRow) -> SecretInfo {
    SecretInfo {
        name: row.name.clone(),
        function: row.function.clone(),
        updated_at: row.updated_at,
        updated_by: row.updated_by.clone(),
    }
}

fn target(namespace: &Namespace, function: Option<&str>, name: &str) -> String {
    match function {
        Some(f) => format!("{namespace}/{f}/{name}"),
        None => format!("{namespace}/{name}"),
    }
}

pub async fn list_secrets(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(ns): Path<String>,
) -> AppResult<axum::Json<SecretList>> {
    let namespace: Namespace = ns
        .parse()
        .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))?;
    let rows = app.store.secrets(&namespace).await.map_err(store_error)?;
    // A function's own secrets show to those who may deploy that function.
    let secrets: Vec<SecretInfo> = rows
        .iter()
        .filter(|r| {
            caller
                .roles(&app.acl, &namespace, r.function.as_deref())
                .has(Role::Deploy)
        })
        .map(info)
        .collect();
    if secrets.is_empty() {
        managed(&app, &caller, &ns, None)?;
    }
    Ok(axum::Json(SecretList { secrets }))
}

pub async fn set_secret(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Json(req): Json<SetSecret>,
) -> AppResult<axum::Json<SecretInfo>> {
    let (namespace, function) = managed(&app, &caller, &ns, req.function.as_deref())?;
    check_secret_name(&name).map_err(ApiError::invalid_input)?;
    if req.value.chars().count() > MAX_SECRET_CHARS {
        return Err(ApiError::invalid_input(format!(
            "a secret holds at most {MAX_SECRET_CHARS} characters"
        ))
        .into());
    }
    if req.value.contains('\0') {
        return Err(ApiError::invalid_input(
            "a secret's value cannot hold a NUL byte (it becomes an environment variable)",
        )
        .into());
    }
    let existing = app.store.secrets(&namespace).await.map_err(store_error)?;
    let replaces = existing
        .iter()
        .any(|r| r.name == name && r.function == function);
    if !replaces && existing.len() >= MAX_NAMESPACE_SECRETS {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{namespace} holds {MAX_NAMESPACE_SECRETS} secrets, the most it may"),
        )
        .into());
    }
    let mut row = SecretRow {
        namespace,
        function,
        name,
        sealed: Vec::new(),
        updated_at: now_ms(),
        updated_by: caller.user.email.clone(),
    };
    app.secrets
        .seal(app.store.as_ref(), &mut row, &req.value)
        .await?;
    app.store.put_secret(&row).await.map_err(store_error)?;
    app.changed(Change::Secrets {
        namespace: row.namespace.clone(),
    })
    .await?;
    app.audit(
        &caller,
        "secret.set",
        Some(&row.namespace),
        target(&row.namespace, row.function.as_deref(), &row.name),
        json!({ "secret": row.name, "function": row.function, "replaced": replaces }),
    )
    .await;
    Ok(axum::Json(info(&row)))
}

pub async fn delete_secret(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<SecretQuery>,
) -> AppResult<StatusCode> {
    let (namespace, function) = managed(&app, &caller, &ns, query.function.as_deref())?;
    let deleted = app
        .store
        .delete_secret(&namespace, function.as_deref(), &name)
        .await
        .map_err(store_error)?;
    let target = target(&namespace, function.as_deref(), &name);
    if !deleted {
        return Err(ApiError::not_found(format!("secret {target}")).into());
    }
    app.changed(Change::Secrets {
        namespace: namespace.clone(),
    })
    .await?;
    app.audit(
        &caller,
        "secret.delete",
        Some(&namespace),
        target,
        json!({ "secret": name, "function": function }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(function: Option<&str>) -> SecretRow {
        SecretRow {
            namespace: "alice".parse().unwrap(),
            function: function.map(Into::into),
            name: "API_KEY".into(),
            sealed: Vec::new(),
            updated_at: 0,
            updated_by: "alice@example.com".into(),
        }
    }

    async fn store(dir: &FsPath) -> Arc<dyn Store> {
        Arc::new(
            swb_store::SqliteStore::open(&dir.join("swb.db"))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn sealed_values_open_only_with_their_key_and_as_their_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let keys = Keyring::open_or_create(&dir.path().join("k")).unwrap();
        let mut sealed = row(None);
        keys.seal(store.as_ref(), &mut sealed, "hunter2")
            .await
            .unwrap();
        assert!(!sealed.sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open(store.as_ref(), &sealed).await.unwrap(), "hunter2");
        // The same key read back from its file opens it too.
        let again = Keyring::open_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(
            again.open(store.as_ref(), &sealed).await.unwrap(),
            "hunter2"
        );
        // Moved to another function's secret, it does not open.
        let moved = SecretRow {
            sealed: sealed.sealed.clone(),
            ..row(Some("etl"))
        };
        assert!(keys.open(store.as_ref(), &moved).await.is_err());
        // Another key is refused before it is even tried on this database.
        let other = Keyring::open_or_create(&dir.path().join("other")).unwrap();
        let error = other.open(store.as_ref(), &sealed).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::Internal);
        // A key file others may read is refused.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("k");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = Keyring::open_or_create(&path).err().unwrap().to_string();
            assert!(refused.contains("chmod 600"), "{refused}");
        }
        std::fs::write(dir.path().join("bad"), "nothex").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let bad = dir.path().join("bad");
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let refused = Keyring::open_or_create(&dir.path().join("bad"))
            .err()
            .unwrap();
        assert!(refused.to_string().contains("64 hex digits"), "{refused}");
    }

    #[test]
    fn a_functions_own_secret_comes_before_its_namespaces() {
        let rows = vec![row(None), row(Some("etl"))];
        let etl: FunctionRef = "alice/etl".parse().unwrap();
        let other: FunctionRef = "alice/other".parse().unwrap();
        assert_eq!(find(&rows, &etl, "API_KEY"), Some(&rows[1]));
        assert_eq!(find(&rows, &other, "API_KEY"), Some(&rows[0]));
        assert_eq!(find(&rows, &other, "NOPE"), None);
    }
}
