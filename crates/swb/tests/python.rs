//! The Python SDK's suite (sdk/python/tests, pytest) against this build's `swb`: real
//! `swb up` servers and real Python worker processes. Its interpreter is
//! `SWB_TEST_PYTHON`, by default the one `.ci/run` prepares in `./.venv` (the SDK
//! installed editable, the pinned tools of `.ci/requirements.txt`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_sdk_suite_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("SWB_TEST_PYTHON")
        .unwrap_or_else(|_| root.join(".venv/bin/python").to_string_lossy().into_owned());
    let status = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(root.join("sdk/python"))
        .env("SWB_BIN", env!("CARGO_BIN_EXE_swb"))
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the Python suite ({python}: {e}); prepare it with `python3 -m venv \
                 .venv && .venv/bin/pip install -r .ci/requirements.txt -e ./sdk/python`, or \
                 name an interpreter that has them in SWB_TEST_PYTHON"
            )
        });
    assert!(status.success(), "the Python SDK suite failed: {status}");
}
