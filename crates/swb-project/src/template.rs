//! The project templates of `swb new`, compiled into the binary.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use swb_api::FunctionRef;

/// A template: its name, what it makes, and its files.
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    files: &'static [File],
}

struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! file {
    ($dir:literal, $source:literal => $path:literal) => {
        file!($dir, $source => $path, false)
    };
    ($dir:literal, $source:literal => $path:literal, $executable:literal) => {
        File {
            path: $path,
            text: include_str!(concat!("../templates/", $dir, "/", $source)),
            executable: $executable,
        }
    };
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "rust",
        about: "a hosted function in Rust (WASI module), its schemas generated from its types",
        files: &[
            file!("rust", "switchboard.toml" => "switchboard.toml"),
            file!("rust", "Cargo.toml.tmpl" => "Cargo.toml"),
            file!("rust", "src/lib.rs" => "src/lib.rs"),
            file!("rust", "src/main.rs" => "src/main.rs"),
            file!("rust", "src/bin/schema.rs" => "src/bin/schema.rs"),
            file!("rust", "README.md" => "README.md"),
            file!("rust", "gitignore" => ".gitignore"),
        ],
    },
    Template {
        name: "c",
        about: "a hosted function in C (WASI module, built with clang and wasi-libc)",
        files: &[
            file!("c", "switchboard.toml" => "switchboard.toml"),
            file!("c", "main.c" => "main.c"),
            file!("c", "count.h" => "count.h"),
            file!("c", "test.c" => "test.c"),
            file!("c", "test.sh" => "test.sh", true),
            file!("c", "input.schema.json" => "input.schema.json"),
            file!("c", "output.schema.json" => "output.schema.json"),
            file!("c", "README.md" => "README.md"),
            file!("c", "gitignore" => ".gitignore"),
        ],
    },
    Template {
        name: "python",
        about: "a remote function in Python with the SDK, its interface from type hints",
        files: &[
            file!("python", "switchboard.toml" => "switchboard.toml"),
            file!("python", "main.py" => "main.py"),
            file!("python", "test_main.py" => "test_main.py"),
            file!("python", "README.md" => "README.md"),
            file!("python", "gitignore" => ".gitignore"),
        ],
    },
    Template {
        name: "exec",
        about: "a remote function served by a script, one process per call (exec adapter)",
        files: &[
            file!("exec", "switchboard.toml" => "switchboard.toml"),
            file!("exec", "main.sh" => "main.sh", true),
            file!("exec", "test.sh" => "test.sh", true),
            file!("exec", "input.schema.json" => "input.schema.json"),
            file!("exec", "output.schema.json" => "output.schema.json"),
            file!("exec", "README.md" => "README.md"),
        ],
    },
];

impl Template {
    pub fn named(name: &str) -> anyhow::Result<&'static Template> {
        TEMPLATES.iter().find(|t| t.name == name).with_context(|| {
            let names: Vec<_> = TEMPLATES.iter().map(|t| t.name).collect();
            format!("no template {name:?}: choose one of {}", names.join(", "))
        })
    }

    /// Writes the project for `function` into `dir`, which must not exist or be
    /// empty; returns the files written.
    pub fn create(&self, function: &FunctionRef, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let name = function.name();
        if self.name == "rust" && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            bail!("a Rust package's name starts with a letter: {name:?} does not");
        }
        if dir.exists()
            && std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_some()
        {
            bail!(
                "{} already exists and is not empty: choose another name or --dir",
                dir.display()
            );
        }
        let ident = name.replace('-', "_");
        let mut written = Vec::new();
        for f in self.files {
            let path = dir.join(f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let text = f
                .text
                .replace("{{function}}", &function.to_string())
                .replace("{{name}}", name)
                .replace("{{ident}}", &ident);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if f.executable {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_makes_a_valid_manifest_and_fills_every_placeholder() {
        let function: FunctionRef = "alice/word-count".parse().unwrap();
        for t in TEMPLATES {
            let dir = tempfile::tempdir().unwrap();
            let files = t.create(&function, dir.path()).unwrap();
            for f in &files {
                let text = std::fs::read_to_string(f).unwrap();
                assert!(!text.contains("{{"), "{} keeps a placeholder", f.display());
            }
            let project = crate::Project::find(dir.path()).unwrap();
            assert_eq!(project.manifest.name, function, "{}", t.name);
            // A second time into the same folder is refused, and nothing is lost.
            let again = t.create(&function, dir.path()).unwrap_err();
            assert!(again.to_string().contains("not empty"), "{again}");
        }
        let unknown = Template::named("cobol").err().expect("no such template");
        assert!(
            unknown.to_string().contains("rust, c, python, exec"),
            "{unknown}"
        );
    }
}
