//! The README as a tested script: every ```sh block preceded by `<!-- tested -->`
//! runs, in order, as bash against a fresh `swb up`, from a folder that has the
//! repository's examples, with `swb` on the PATH (what the README's alias gives).
//! A command whose comment shows its output (`# {"greeting":…}`) must print exactly
//! that; one whose comment says `# error:` must fail. Each block runs in its own
//! subshell from the same folder (a `cd` in one does not move the next); `TOKEN` is
//! set as the README's curl block sets it.

mod common;

use common::bin;
use std::path::Path;
use std::process::Command;
use swb_testkit::ServerProc;

const MARK: &str = "<!-- tested -->";

/// The tested blocks of the README: (line of the block's first command, its lines).
fn tested_blocks(readme: &str) -> Vec<(usize, Vec<String>)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == MARK {
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "README line {}: {MARK} must precede a ```sh block",
                i + 1
            );
            let start = i + 2;
            let end = start
                + lines[start..]
                    .iter()
                    .position(|l| l.trim() == "```")
                    .expect("the block ends");
            blocks.push((
                start + 1,
                lines[start..end].iter().map(|l| l.to_string()).collect(),
            ));
            i = end;
        }
        i += 1;
    }
    blocks
}

/// A block as bash: continued lines joined, commands with a shown output or an
/// expected error turned into checks.
fn script(first_line: usize, lines: &[String]) -> String {
    let mut out = String::new();
    let mut logical = String::new();
    let mut at = first_line;
    for (n, line) in lines.iter().enumerate() {
        if logical.is_empty() {
            at = first_line + n;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        out.push_str(&check(at, &logical));
        out.push('\n');
        logical.clear();
    }
    out
}

fn check(line: usize, command: &str) -> String {
    let Some((cmd, comment)) = command
        .split_once("  #")
        .filter(|(c, _)| !c.trim().is_empty())
    else {
        return command.to_owned();
    };
    let comment = comment.trim();
    let quoted = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    if comment.starts_with('{') || comment.starts_with('[') {
        format!(
            "__out=$({cmd}); [ \"$__out\" = {expected} ] || {{ printf 'README line {line}: expected %s, got %s\\n' {expected} \"$__out\" >&2; exit 1; }}",
            expected = quoted(comment)
        )
    } else if comment.starts_with("error") {
        format!("if {cmd}; then echo 'README line {line}: should have failed' >&2; exit 1; fi")
    } else {
        command.to_owned()
    }
}

#[test]
fn the_readme_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = tested_blocks(&readme);
    assert!(blocks.len() >= 6, "the tested blocks went missing");

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::os::unix::fs::symlink(root.join("examples"), work.join("examples")).unwrap();
    let bin_dir = work.join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin(), bin_dir.join("swb")).unwrap();
    // `swb up` in this folder: its data, and the admin token the CLI finds, in ./.swb.
    let server = ServerProc::start(bin(), "up", &work.join(".swb"), &[]).unwrap();

    let mut all = String::from("set -euo pipefail\nexport TOKEN=$(cat .swb/admin.token)\n");
    for (line, lines) in &blocks {
        all.push_str(&format!("# README line {line}\n(\nset -euo pipefail\n"));
        all.push_str(&script(*line, lines));
        all.push_str(")\n");
    }
    // The README's server address is this test's server.
    let all = all.replace("http://127.0.0.1:7070", &server.url);
    std::fs::write(work.join("readme.sh"), &all).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("readme.sh")
        .current_dir(work)
        .env("PATH", path)
        .env("SWB_URL", &server.url)
        .env_remove("SWB_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- script\n{all}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn shown_outputs_and_errors_become_checks() {
    let lines: Vec<String> = [
        "swb fn invoke a/b '{\"x\":1}'   # {\"x\":1}",
        "swb fn invoke a/b nope   # error: invalid_input",
        "curl -s http://x \\",
        "  -d '{}'   # {\"ok\":true}",
        "# a comment",
        "swb fn list",
    ]
    .map(String::from)
    .to_vec();
    let s = script(10, &lines);
    assert!(s.contains("__out=$(swb fn invoke a/b '{\"x\":1}' )"), "{s}");
    assert!(s.contains("README line 10"), "{s}");
    assert!(s.contains("if swb fn invoke a/b nope "), "{s}");
    assert!(s.contains("README line 12: expected"), "{s}");
    assert!(s.contains("\n# a comment\nswb fn list\n"), "{s}");
}
