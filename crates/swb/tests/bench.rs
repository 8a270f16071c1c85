//! `swb bench` runs every scenario end to end (numbers are the suite's business, not
//! the tests': this only checks that each scenario ran and answered).

mod common;

use common::bin;
use serde_json::Value;
use std::process::Command;

#[test]
fn the_suite_runs_every_scenario() {
    let out = Command::new(bin())
        .args(["bench", "suite", "--duration", "1", "--json"])
        .args(["--postgres-url", &swb_testkit::postgres_url()])
        .args(["--nats-url", &swb_testkit::nats_url()])
        .args([
            "--python",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python"),
        ])
        .env("SWB_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |scenario: &str, c: u64| {
        lines.iter().any(|l| {
            l["scenario"] == scenario && l["concurrency"] == c && l["requests"].as_u64() > Some(0)
        })
    };
    for scenario in [
        "ideal_http_echo",
        "ideal_http_wasm",
        "invoke_hosted_inproc",
        "invoke_hosted_worker",
        "invoke_remote",
        "invoke_remote_cross_replica",
        "invoke_remote_python",
    ] {
        assert!(
            has(scenario, 1) && has(scenario, 32),
            "{scenario} missing: {lines:?}"
        );
    }
    // Scenarios compared with an ideal are measured in rounds, in turns with it, and
    // report each round's window (the targets are judged on the rounds' ratios).
    for scenario in ["python_httpx_ideal", "python_client_invoke"] {
        assert!(has(scenario, 1), "{scenario} missing: {lines:?}");
    }
    for scenario in [
        "ideal_http_wasm",
        "invoke_hosted_inproc",
        "invoke_remote",
        "invoke_remote_python",
    ] {
        let l = lines
            .iter()
            .find(|l| l["scenario"] == scenario && l["concurrency"] == 32)
            .unwrap();
        let windows = l["windows"].as_array().expect("windows");
        assert_eq!(windows.len(), 5, "{l}");
        assert!(windows.iter().all(|w| w["rps"].as_f64() > Some(0.0)), "{l}");
    }
    assert!(has("invoke_exec", 8));
    assert!(has("jobs_hosted", 32));
    assert!(has("cold_start_after_deploy", 1));
    assert!(has("cold_start_after_worker_restart", 1));
    let rss = |s: &str| {
        lines
            .iter()
            .find(|l| l["scenario"] == s)
            .and_then(|l| l["rss_mb"].as_f64())
    };
    assert!(rss("idle_memory_server").is_some_and(|mb| mb > 0.0));
    assert!(rss("idle_memory_1000_workers").is_some_and(|mb| mb > 0.0));
}
