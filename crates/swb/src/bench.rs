//! `swb bench`: the benchmark suite and a load generator for any Switchboard.

use crate::{Global, profile};
use clap::{Args, Subcommand};
use std::time::Duration;
use swb_bench::{Line, Load, LoadSpec, SuiteOptions, Window};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Run every scenario against processes started in a temporary directory
    Suite {
        /// Measured seconds per scenario and concurrency; scenarios compared with an
        /// ideal split them into five rounds, in turns with it
        #[arg(long, default_value_t = 3)]
        duration: u64,
        /// Also measure calls between replicas (invoke_remote_cross_replica) on this
        /// Postgres server: a URL whose user may create databases (a temporary one is
        /// created and dropped)
        #[arg(long, requires = "nats_url")]
        postgres_url: Option<String>,
        /// The NATS server joining the replicas of the cluster scenario
        #[arg(long, requires = "postgres_url")]
        nats_url: Option<String>,
        /// A Python interpreter that has the SDK (sdk/python), for the Python client
        /// and worker scenarios [default: ./.venv/bin/python if it has it; else they
        /// are skipped]
        #[arg(long)]
        python: Option<std::path::PathBuf>,
    },
    /// Load a function on any server with concurrent calls
    Invoke(InvokeArgs),
    /// Three federation parties on this machine (HTTPS, each its own store and a
    /// dataset of --rows rows: y and ten predictors), then a researcher's
    /// statistics timed end to end
    Federation {
        /// Rows per party
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Latency added between parties, each way (proxies hold every chunk)
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        latency: Duration,
    },
}

#[derive(Args)]
pub struct InvokeArgs {
    /// Function name as namespace/name
    function: swb_api::FunctionRef,
    /// Callers, each with one keep-alive connection, calling in a closed loop
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The request body
    #[arg(long, default_value = r#"{"hello":"world"}"#)]
    input: String,
}

/// Hidden helper processes the suite starts.
#[derive(Args)]
pub struct HelperArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Accepted (and ignored) so the suite starts helpers like servers.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

fn print(line: &impl serde::Serialize, json: bool, text: String) {
    if json {
        println!("{}", serde_json::to_string(line).expect("serializes"));
    } else {
        println!("{text}");
    }
}

fn text(scenario: &str, l: &Load) -> String {
    format!(
        "{scenario:<34} c={:<3} {:>9.0} req/s  p50 {:>8.0} µs  p99 {:>8.0} µs  ({} requests, {} errors)",
        l.concurrency, l.rps, l.p50_us, l.p99_us, l.requests, l.errors
    )
}

pub async fn bench(global: &Global, cmd: BenchCmd) -> anyhow::Result<()> {
    let json = global.json;
    match cmd {
        BenchCmd::Federation { rows, latency } => {
            let bin = std::env::current_exe()?;
            for l in swb_bench::federation(&bin, rows, latency).await? {
                let text = format!(
                    "{:<34} {} rows, +{} ms  {:>8.3} s",
                    l.scenario, l.rows, l.latency_ms, l.seconds
                );
                print(&l, json, text);
            }
        }
        BenchCmd::Invoke(a) => {
            let client = profile::client(global).await?;
            // One call first: an unknown function, or one that fails, is said at once
            // rather than after the whole duration.
            let input = bytes::Bytes::from(a.input);
            client.invoke(&a.function, None, input.clone()).await?;
            let url = format!("{}/v1/functions/{}/invoke", client.base_url(), a.function);
            let l = swb_bench::run_load(&LoadSpec {
                url,
                token: Some(client.token().to_owned()),
                body: input,
                concurrency: a.concurrency,
                duration: Duration::from_secs(a.duration),
            })
            .await?;
            let first = l.first_error.as_deref().unwrap_or("none recorded");
            anyhow::ensure!(
                l.requests > 0,
                "no call of {} succeeded ({} failed); the first failure: {first}",
                a.function,
                l.errors
            );
            print(&l, json, text(&a.function.to_string(), &l));
            if l.errors > 0 {
                eprintln!("warning: {} calls failed; the first: {first}", l.errors);
            }
        }
        BenchCmd::Suite {
            duration,
            postgres_url,
            nats_url,
            python,
        } => {
            let bin = std::env::current_exe()?;
            let opts = SuiteOptions {
                duration: Duration::from_secs(duration),
                cluster: postgres_url.zip(nats_url),
                python: python_with_sdk(python)?,
            };
            let lines = swb_bench::run_suite(&bin, &opts, move |l| {
                let t = match l.rss_mb {
                    Some(mb) => format!("{:<34} rss {mb:.1} MB", l.scenario),
                    None if l.rps == 0.0 => format!(
                        "{:<34} {:.0} µs (median of {}, slowest {:.0} µs)",
                        l.scenario, l.p50_us, l.requests, l.p99_us
                    ),
                    None => format!(
                        "{:<34} c={:<3} {:>9.0} /s  p50 {:>8.0} µs  p99 {:>8.0} µs",
                        l.scenario, l.concurrency, l.rps, l.p50_us, l.p99_us
                    ),
                };
                print(l, json, t);
            })
            .await?;
            if !json {
                summary(&lines);
            }
        }
    }
    Ok(())
}

/// A platform scenario against its ideal: the median of the ratios of the windows
/// measured in the same round, and their range. A burst of the host's own load moves
/// one round's ratio, not the verdict; the range shows how steady the run was.
fn paired(platform: &Line, ideal: &Line, of: fn(&Window) -> f64) -> (f64, Option<(f64, f64)>) {
    let whole = |l: &Line| Window {
        rps: l.rps,
        p50_us: l.p50_us,
    };
    let mut ratios: Vec<f64> = platform
        .windows
        .iter()
        .zip(&ideal.windows)
        .map(|(p, i)| of(p) / of(i))
        .filter(|r| r.is_finite())
        .collect();
    let paired_up = platform.windows.len() == ideal.windows.len();
    if !paired_up || ratios.is_empty() || ratios.len() != platform.windows.len() {
        return (of(&whole(platform)) / of(&whole(ideal)), None);
    }
    ratios.sort_by(f64::total_cmp);
    let range = (ratios[0], ratios[ratios.len() - 1]);
    (ratios[ratios.len() / 2], Some(range))
}

/// The interpreter for the Python scenarios: the one named (which must have the SDK),
/// else `./.venv/bin/python` if it has it.
fn python_with_sdk(
    named: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let has_sdk = |python: &std::path::Path| {
        std::process::Command::new(python)
            .args(["-c", "import switchboard"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match named {
        Some(python) => {
            anyhow::ensure!(
                has_sdk(&python),
                "{} cannot import switchboard: install it with `pip install ./sdk/python`",
                python.display()
            );
            Ok(Some(python))
        }
        None => {
            let venv = std::path::PathBuf::from(".venv/bin/python");
            if has_sdk(&venv) {
                return Ok(Some(venv));
            }
            eprintln!(
                "note: the Python scenarios are skipped: ./.venv/bin/python cannot import \
                 switchboard (give --python)"
            );
            Ok(None)
        }
    }
}

/// The targets of the benchmark issue, as ratios to the ideal measured in this run.
fn summary(lines: &[Line]) {
    let get = |s: &str, c: usize| lines.iter().find(|l| l.scenario == s && l.concurrency == c);
    let (Some(wasm32), Some(wasm1), Some(echo32)) = (
        get("ideal_http_wasm", 32),
        get("ideal_http_wasm", 1),
        get("ideal_http_echo", 32),
    ) else {
        return;
    };
    println!(
        "\ntargets (ratios to the ideal measured in this run: the median of the rounds, \
         and their range):"
    );
    let row = |name: &str, value: f64, target: &str, ok: bool, range: Option<(f64, f64)>| {
        let range = range.map_or(String::new(), |(lo, hi)| {
            format!("  (rounds {lo:.2}-{hi:.2})")
        });
        // Three decimals for ratios, so that one just under its target does not
        // print as the target itself.
        let value = if value.abs() < 10.0 {
            format!("{value:.3}")
        } else {
            format!("{value:.1}")
        };
        println!(
            "  {name:<44} {value:>8}  target {target:<10} {}{range}",
            if ok { "met" } else { "MISSED" }
        );
    };
    let rps: fn(&Window) -> f64 = |w| w.rps;
    if let Some(l) = get("invoke_hosted_inproc", 32) {
        let (r, range) = paired(l, wasm32, rps);
        row(
            "invoke_hosted_inproc c=32 rps / ideal_wasm",
            r,
            ">= 0.8",
            r >= 0.8,
            range,
        );
    }
    if let Some(l) = get("invoke_hosted_inproc", 1) {
        let (r, range) = paired(l, wasm1, |w| w.p50_us);
        row(
            "invoke_hosted_inproc c=1 p50 / ideal_wasm",
            r,
            "<= 1.3",
            r <= 1.3,
            range,
        );
    }
    if let Some(l) = get("invoke_hosted_worker", 32) {
        let (r, range) = paired(l, wasm32, rps);
        row(
            "invoke_hosted_worker c=32 rps / ideal_wasm",
            r,
            ">= 0.5",
            r >= 0.5,
            range,
        );
    }
    let p50: fn(&Window) -> f64 = |w| w.p50_us;
    for (c, name, target, of, ok) in [
        (
            32,
            "invoke_hosted_nested c=32 rps / g alone",
            ">= 0.5",
            rps,
            0.5,
        ),
        (
            1,
            "invoke_hosted_nested c=1 p50 / g alone",
            "<= 2.0",
            p50,
            2.0,
        ),
    ] {
        if let (Some(fg), Some(g)) = (
            get("invoke_hosted_nested", c),
            get("invoke_hosted_inproc", c),
        ) {
            let (r, range) = paired(fg, g, of);
            let met = if c == 32 { r >= ok } else { r <= ok };
            row(name, r, target, met, range);
        }
    }
    if let Some(l) = get("invoke_remote", 32) {
        let (r, range) = paired(l, echo32, rps);
        row(
            "invoke_remote c=32 rps / ideal_echo",
            r,
            ">= 0.25",
            r >= 0.25,
            range,
        );
    }
    if let (Some(py), Some(rust)) = (get("invoke_remote_python", 32), get("invoke_remote", 32)) {
        let (r, range) = paired(py, rust, rps);
        row(
            "invoke_remote_python c=32 rps / Rust SDK's",
            r,
            ">= 0.25",
            r >= 0.25,
            range,
        );
    }
    if let (Some(sdk), Some(bare)) = (get("python_client_invoke", 1), get("python_httpx_ideal", 1))
    {
        let (r, range) = paired(sdk, bare, rps);
        row(
            "python_client_invoke rps / bare httpx, ideal",
            r,
            ">= 0.8",
            r >= 0.8,
            range,
        );
    }
    if let Some(l) = get("invoke_remote", 1) {
        row(
            "invoke_remote c=1 p50 (µs)",
            l.p50_us,
            "<= 250",
            l.p50_us <= 250.0,
            None,
        );
    }
    if let Some(l) = get("jobs_hosted", 32) {
        row(
            "jobs_hosted jobs/s",
            l.rps,
            ">= 5000",
            l.rps >= 5000.0,
            None,
        );
    }
    if let Some(l) = get("cold_start_after_worker_restart", 1) {
        row(
            "first call after a worker restart (ms)",
            l.p50_us / 1000.0,
            "<= 5",
            l.p50_us <= 5000.0,
            None,
        );
    }
    if let Some(mb) = get("idle_memory_server", 1).and_then(|l| l.rss_mb) {
        row("server RSS idle (MB)", mb, "<= 40", mb <= 40.0, None);
        if let Some(loaded) = get("idle_memory_1000_workers", 1).and_then(|l| l.rss_mb) {
            row(
                "+ RSS for 1,000 idle workers (MB)",
                loaded - mb,
                "<= 64",
                loaded - mb <= 64.0,
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(windows: &[(f64, f64)]) -> Line {
        let windows: Vec<Window> = windows
            .iter()
            .map(|&(rps, p50_us)| Window { rps, p50_us })
            .collect();
        let n = windows.len().max(1) as f64;
        Line {
            scenario: "s".into(),
            concurrency: 32,
            requests: 1,
            rps: windows.iter().map(|w| w.rps).sum::<f64>() / n,
            p50_us: windows.first().map_or(100.0, |w| w.p50_us),
            p99_us: 0.0,
            rss_mb: None,
            windows,
        }
    }

    #[test]
    fn a_ratio_is_the_median_of_the_rounds_paired_with_the_ideal() {
        // Round 2 saw a burst on the host that hit the platform's window only.
        let ideal = line(&[(100.0, 50.0), (100.0, 50.0), (200.0, 40.0)]);
        let platform = line(&[(80.0, 60.0), (20.0, 500.0), (170.0, 44.0)]);
        let (rps, range) = paired(&platform, &ideal, |w| w.rps);
        assert_eq!(rps, 0.8);
        assert_eq!(range, Some((0.2, 0.85)));
        let (p50, _) = paired(&platform, &ideal, |w| w.p50_us);
        assert!((p50 - 1.2).abs() < 1e-9, "{p50}");
    }

    #[test]
    fn without_rounds_the_ratio_is_of_the_whole_runs() {
        let (r, range) = paired(&line(&[]), &line(&[]), |w| w.p50_us);
        assert_eq!((r, range), (1.0, None));
        // Rounds that do not pair up are not compared one by one.
        let (r, range) = paired(
            &line(&[(50.0, 1.0)]),
            &line(&[(100.0, 1.0), (100.0, 1.0)]),
            |w| w.rps,
        );
        assert_eq!((r, range), (0.5, None));
    }
}
