//! Prometheus metrics. Names are constants here so that the code and the docs agree.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use swb_api::{CacheStats, FunctionRef, Outcome};

pub const INVOCATIONS: &str = "swb_invocations_total";
pub const INVOCATION_SECONDS: &str = "swb_invocation_duration_seconds";
pub const WORKERS_CONNECTED: &str = "swb_workers_connected";
pub const CODE_COMPILES: &str = "swb_code_cache_compiles_total";
pub const CODE_DISK_HITS: &str = "swb_code_cache_disk_hits_total";
pub const CODE_MEMORY_HITS: &str = "swb_code_cache_memory_hits_total";

/// How often histogram samples are folded into their buckets.
pub const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(INVOCATION_SECONDS.into()), LATENCY_BUCKETS)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed when embedded (tests); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            metrics::describe_counter!(INVOCATIONS, "Invocations by function and outcome");
            metrics::describe_histogram!(INVOCATION_SECONDS, "End-to-end invocation latency");
            metrics::describe_gauge!(WORKERS_CONNECTED, "Workers with an open session");
            metrics::describe_counter!(CODE_COMPILES, "Modules compiled by workers");
            metrics::describe_counter!(CODE_DISK_HITS, "Modules loaded from workers' disk caches");
            metrics::describe_counter!(
                CODE_MEMORY_HITS,
                "Calls that found their module ready in a worker's memory"
            );
            // Present from the start, so dashboards see zeros rather than gaps.
            metrics::gauge!(WORKERS_CONNECTED).set(0.0);
            for counter in [CODE_COMPILES, CODE_DISK_HITS, CODE_MEMORY_HITS] {
                metrics::counter!(counter).absolute(0);
            }
            // Histogram samples wait in the recorder until they are folded into their
            // buckets: by a scrape, or here. Without it a server nobody scrapes would
            // keep every call's sample (about 20 bytes a call, without bound).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("swb-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("the metrics upkeep thread starts");
            handle
        })
        .clone()
}

/// A function's invocation metrics. Routes hold them so that a successful call
/// neither formats its labels nor looks its series up in the registry.
pub struct FunctionMetrics {
    label: String,
    ok: metrics::Counter,
    seconds: metrics::Histogram,
}

impl FunctionMetrics {
    pub fn new(function: &FunctionRef) -> Self {
        let label = function.to_string();
        Self {
            ok: metrics::counter!(INVOCATIONS, "function" => label.clone(), "outcome" => Outcome::OK.as_str()),
            seconds: metrics::histogram!(INVOCATION_SECONDS, "function" => label.clone()),
            label,
        }
    }

    pub fn record(&self, outcome: Outcome, elapsed: std::time::Duration) {
        match outcome {
            Outcome::Ok(_) => self.ok.increment(1),
            Outcome::Error(_) => metrics::counter!(
                INVOCATIONS, "function" => self.label.clone(), "outcome" => outcome.as_str()
            )
            .increment(1),
        }
        self.seconds.record(elapsed.as_secs_f64());
    }
}

/// Adds what a worker's cache counters grew by since its last report.
pub fn count_cache(before: CacheStats, now: CacheStats) {
    metrics::counter!(CODE_COMPILES).increment(now.compiles.saturating_sub(before.compiles));
    metrics::counter!(CODE_DISK_HITS).increment(now.disk_hits.saturating_sub(before.disk_hits));
    metrics::counter!(CODE_MEMORY_HITS)
        .increment(now.memory_hits.saturating_sub(before.memory_hits));
}

#[cfg(test)]
mod tests {
    use super::*;
    use swb_api::ErrorCode;

    #[test]
    fn function_metrics_count_outcomes_and_time_every_call() {
        let handle = handle();
        let m = FunctionMetrics::new(&"metrics/test".parse().unwrap());
        let ms = std::time::Duration::from_millis(1);
        m.record(Outcome::OK, ms);
        m.record(Outcome::OK, ms);
        m.record(Outcome::Error(ErrorCode::Timeout), ms);
        let text = handle.render();
        for line in [
            r#"swb_invocations_total{function="metrics/test",outcome="ok"} 2"#,
            r#"swb_invocations_total{function="metrics/test",outcome="timeout"} 1"#,
            r#"swb_invocation_duration_seconds_count{function="metrics/test"} 3"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
