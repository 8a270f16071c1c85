//! `switchboard.toml`: what a project folder publishes and how it is built.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use swb_api::{FunctionRef, Interface};

/// The manifest's file name, looked for in a folder and its parents.
pub const FILE: &str = "switchboard.toml";

/// Manifests larger than this are refused before they are parsed.
const MAX_BYTES: u64 = 1 << 20;

/// A project: its manifest and the folder it lives in (every path in the manifest is
/// relative to that folder).
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The function, as namespace/name.
    pub name: FunctionRef,
    /// One line for the catalog.
    pub description: Option<String>,
    /// How the artefact is made (hosted functions).
    pub build: Option<Build>,
    /// Where the JSON Schemas of the interface come from.
    #[serde(default)]
    pub schemas: Schemas,
    #[serde(default)]
    pub limits: Limits,
    /// Static command-line arguments (hosted).
    #[serde(default)]
    pub args: Vec<String>,
    /// Static, non-secret environment variables (hosted).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Only workers with these labels receive its calls (hosted).
    #[serde(default)]
    pub require: BTreeMap<String, String>,
    /// Functions it may call through the platform.
    #[serde(default)]
    pub calls: Vec<FunctionRef>,
    /// The namespace's secrets its calls receive as environment variables, by name
    /// (`swb secret set NAME`; hosted and exec).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Calls are safe to repeat (retried once on another worker if one is lost).
    #[serde(default)]
    pub idempotent: bool,
    /// Invocation records keep each call's input and output (hosted and exec).
    #[serde(default)]
    pub keep_io: bool,
    /// Named settings handed to calls that name them (`swb profile`).
    #[serde(default)]
    pub profiles: BTreeMap<String, Value>,
    /// How a remote function is served from this folder.
    pub serve: Option<Serve>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A shell command run in the project folder (`sh -c`).
    pub command: Option<String>,
    /// The WASI module the build makes.
    pub artefact: PathBuf,
    /// Files and folders whose changes trigger a rebuild under `swb dev` [default:
    /// the whole folder but `target/` and hidden entries].
    #[serde(default)]
    pub watch: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schemas {
    /// A JSON Schema file the input must match.
    pub input: Option<PathBuf>,
    /// A JSON Schema file the output must match.
    pub output: Option<PathBuf>,
    /// A shell command printing `{"input": schema, "output": schema}` (e.g. a Rust
    /// binary printing schemars' schemas of its types); files named above win.
    pub command: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// The exec adapter: this command runs once per call, input on stdin, output on
    /// stdout.
    pub exec: Option<Vec<String>>,
    /// A program that serves the function itself with an SDK (it is given `SWB_URL`
    /// and `SWB_TOKEN`).
    pub run: Option<Vec<String>>,
    /// Calls run at once (exec adapter).
    pub concurrency: Option<u32>,
    /// The worker's labels (exec adapter).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Files and folders whose changes restart it under `swb dev` [default: the
    /// whole folder but hidden entries].
    #[serde(default)]
    pub watch: Vec<PathBuf>,
}

/// What a project publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WASI module the platform runs.
    Hosted,
    /// A command run once per call by `swb serve`'s exec adapter.
    Exec,
    /// A program serving the function with an SDK.
    Program,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "no {FILE} in {0} or any folder above it: run `swb new` to make a project, or pass --dir"
    )]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Project {
    /// The project whose manifest is in `dir` or the nearest folder above it.
    pub fn find(dir: &Path) -> Result<Self, ManifestError> {
        let start = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let mut at = Some(start.as_path());
        while let Some(d) = at {
            let path = d.join(FILE);
            if path.is_file() {
                return Self::load(&path);
            }
            at = d.parent();
        }
        Err(ManifestError::NotFound(start))
    }

    /// The project of the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let read = |source| ManifestError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let manifest = Manifest::parse(&text).map_err(|message| ManifestError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(Self {
            dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
            manifest,
        })
    }

    /// What the project publishes (its manifest was checked for it when parsed).
    pub fn kind(&self) -> Kind {
        self.manifest
            .kind()
            .expect("a parsed manifest says what it publishes")
    }

    /// A path of the manifest, in the project folder.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }

    /// The interface to publish: schemas from their files, else from the schema
    /// command's output.
    pub fn interface(&self) -> anyhow::Result<Interface> {
        use anyhow::Context;
        let s = &self.manifest.schemas;
        let generated = match &s.command {
            Some(command) => {
                let out = crate::run::output(&self.dir, command)
                    .context("the schemas command ([schemas] command) failed")?;
                let mut all: serde_json::Map<String, Value> = serde_json::from_slice(&out)
                    .with_context(|| {
                        format!("the schemas command `{command}` must print a JSON object {{\"input\": …, \"output\": …}}")
                    })?;
                (all.remove("input"), all.remove("output"))
            }
            None => (None, None),
        };
        let file = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| read_schema(&self.path(p)))
                .transpose()
        };
        Ok(Interface {
            input: file(&s.input)?.or(generated.0),
            output: file(&s.output)?.or(generated.1),
            description: self.manifest.description.clone(),
        })
    }

    /// What is watched under `swb dev`: the manifest's list, else the folder.
    pub fn watched(&self) -> Vec<PathBuf> {
        let listed = match (&self.manifest.build, &self.manifest.serve) {
            (Some(b), _) => &b.watch,
            (None, Some(s)) => &s.watch,
            (None, None) => return vec![self.dir.clone()],
        };
        if listed.is_empty() {
            return vec![self.dir.clone()];
        }
        let mut paths: Vec<_> = listed.iter().map(|p| self.path(p)).collect();
        paths.push(self.dir.join(FILE));
        paths
    }
}

/// A JSON Schema from a file.
pub fn read_schema(path: &Path) -> anyhow::Result<Value> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let kind = manifest.kind()?;
        for name in &manifest.secrets {
            swb_api::check_secret_name(name).map_err(|e| format!("secrets: {e}"))?;
        }
        if kind == Kind::Program && (!manifest.secrets.is_empty() || manifest.keep_io) {
            return Err("secrets, keep_io: a program declares them when it serves the function \
                        (Python: @worker.function(..., secrets=[...], keep_io=True)), not the manifest"
                .into());
        }
        if let Some(serve) = &manifest.serve
            && serve.concurrency == Some(0)
        {
            return Err("[serve] concurrency must be at least 1".into());
        }
        Ok(manifest)
    }

    /// What the manifest publishes: `[build]` with an artefact is hosted, `[serve]`
    /// with `exec` or `run` is remote.
    pub fn kind(&self) -> Result<Kind, String> {
        match (&self.build, &self.serve) {
            (Some(_), Some(_)) => Err(
                "a project is either hosted ([build] with an artefact) or remote ([serve]), not both"
                    .into(),
            ),
            (Some(_), None) => Ok(Kind::Hosted),
            (None, Some(s)) => match (&s.exec, &s.run) {
                (Some(c), None) | (None, Some(c)) if c.is_empty() => {
                    Err("[serve] needs a command: a list such as [\"./main.sh\"]".into())
                }
                (Some(_), None) => Ok(Kind::Exec),
                (None, Some(_)) => Ok(Kind::Program),
                _ => Err("[serve] takes `exec` (a command per call) or `run` (a program serving with an SDK), one of them".into()),
            },
            (None, None) => Err(
                "say how the function is made: [build] with an artefact (hosted) or [serve] with exec or run (remote)"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosted_manifest_parses_with_defaults() {
        let m = Manifest::parse(
            r#"
name = "alice/resize"
description = "Resizes"
calls = ["alice/thumb"]
[build]
command = "cargo build"
artefact = "target/x.wasm"
[limits]
timeout_ms = 500
[profiles.small]
width = 10
"#,
        )
        .unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Hosted);
        assert_eq!(m.name.to_string(), "alice/resize");
        assert_eq!(m.limits.timeout_ms, Some(500));
        assert_eq!(m.profiles["small"], serde_json::json!({"width": 10}));
        assert!(!m.idempotent);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| Manifest::parse(text).unwrap_err();
        assert!(err("name = \"Bad Name\"\n[serve]\nexec=[\"x\"]").contains("invalid"));
        assert!(err("name = \"a/b\"\ncolour = 1\n[serve]\nexec=[\"x\"]").contains("colour"));
        assert!(err("name = \"a/b\"").contains("[build]"));
        assert!(err("name = \"a/b\"\n[serve]\nexec=[]").contains("needs a command"));
        assert!(err("name = \"a/b\"\n[serve]\nexec=[\"a\"]\nrun=[\"b\"]").contains("one of them"));
        assert!(
            err("name = \"a/b\"\n[serve]\nexec=[\"a\"]\n[build]\nartefact=\"x\"")
                .contains("not both")
        );
        let secrets = "name = \"a/b\"\nsecrets = [\"api-key\"]\n[serve]\nexec=[\"a\"]";
        assert!(err(secrets).contains("bad secret name"));
        let program = "name = \"a/b\"\nsecrets = [\"API_KEY\"]\n[serve]\nrun=[\"p\"]";
        assert!(err(program).contains("secrets=[...]"));
        let program = "name = \"a/b\"\nkeep_io = true\n[serve]\nrun=[\"p\"]";
        assert!(err(program).contains("keep_io=True"));
        let exec = "name = \"a/b\"\nsecrets = [\"API_KEY\"]\n[serve]\nexec=[\"a\"]";
        assert_eq!(Manifest::parse(exec).unwrap().secrets, ["API_KEY"]);
    }

    #[test]
    fn a_project_is_found_from_a_subfolder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "name = \"a/b\"\n[serve]\nexec = [\"./main.sh\"]\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let p = Project::find(&dir.path().join("src")).unwrap();
        assert_eq!(p.manifest.kind().unwrap(), Kind::Exec);
        assert_eq!(
            std::fs::canonicalize(&p.dir).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Project::find(empty.path()),
            Err(ManifestError::NotFound(_))
        ));
    }
}
