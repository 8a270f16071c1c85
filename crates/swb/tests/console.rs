//! The web console in a real browser: Debian's chromium driven by playwright-core
//! (crates/swb-console/tests/browser, installed by `.ci/run`) against a real
//! `swb up`. The scenarios are in console.mjs; this starts the server and a second
//! user, and fails with the script's report when any scenario fails.

mod common;

use common::bin;
use std::path::Path;
use std::process::Command;
use swb_testkit::{ServerProc, guests};

#[test]
fn the_console_works_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../swb-console/tests/browser");
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix crates/swb-console/tests/browser` (.ci/run does)"
    );
    let chromium =
        std::env::var("SWB_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no chromium at {chromium}: `apt-get install chromium` (.ci/run does), or name it in SWB_TEST_CHROMIUM"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bob = runtime
        .block_on(server.client().create_user("bob@example.com"))
        .unwrap();
    let echo = dir.path().join("echo.wasm");
    std::fs::write(&echo, guests::echo()).unwrap();
    let slow = dir.path().join("slow.wasm");
    std::fs::write(&slow, guests::echo_after(1500)).unwrap();
    let stuck = dir.path().join("stuck.wasm");
    std::fs::write(&stuck, guests::echo_after(30_000)).unwrap();
    let caller = dir.path().join("caller.wasm");
    std::fs::write(&caller, guests::calls("admin/shape-0", 64_000)).unwrap();
    let mut node = Command::new("node");
    node.arg("console.mjs")
        .current_dir(&root)
        .env("SWB_URL", &server.url)
        .env("ADMIN_TOKEN", &server.token)
        .env("BOB_TOKEN", &bob.token)
        .env("ECHO_WASM", &echo)
        .env("SLOW_WASM", &slow)
        .env("CALLER_WASM", &caller)
        .env("STUCK_WASM", &stuck)
        .env("CHROMIUM", &chromium);
    let out = node.output().expect("node runs (Node.js 20)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser suite failed:\n{report}\n{}\n--- server log\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let passed = report.lines().filter(|l| l.starts_with("ok - ")).count();
    assert!(passed >= 25, "{passed} scenarios ran:\n{report}");
}
