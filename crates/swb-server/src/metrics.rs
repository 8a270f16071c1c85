//! Prometheus metrics. Names are constants here so that the code and the docs agree.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use swb_api::timestamp::now_ms;
use swb_api::{CacheStats, FunctionCalls, FunctionRef, MinuteCalls, Outcome};

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
    minutes: Arc<Minutes>,
}

impl FunctionMetrics {
    pub fn new(function: &FunctionRef, minutes: Arc<Minutes>) -> Self {
        let label = function.to_string();
        Self {
            ok: metrics::counter!(INVOCATIONS, "function" => label.clone(), "outcome" => Outcome::OK.as_str()),
            seconds: metrics::histogram!(INVOCATION_SECONDS, "function" => label.clone()),
            label,
            minutes,
        }
    }

    pub fn record(&self, outcome: Outcome, elapsed: std::time::Duration) {
        self.minutes.record(matches!(outcome, Outcome::Ok(_)));
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

/// A function's calls per minute over the last hour, on this replica: what the
/// console's overview draws. A slot is reused when its minute comes round again.
pub struct Minutes {
    slots: [MinuteSlot; 60],
}

#[derive(Default)]
struct MinuteSlot {
    minute: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

impl Default for Minutes {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| MinuteSlot::default()),
        }
    }
}

impl Minutes {
    fn record(&self, ok: bool) {
        let minute = now_ms() as u64 / 60_000;
        let slot = &self.slots[(minute % 60) as usize];
        let seen = slot.minute.load(Ordering::Relaxed);
        if seen != minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.ok.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
        }
        let counter = if ok { &slot.ok } else { &slot.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The last hour's minutes that had calls, oldest first.
    pub fn last_hour(&self) -> Vec<MinuteCalls> {
        let now = now_ms() as u64 / 60_000;
        let mut minutes: Vec<MinuteCalls> = self
            .slots
            .iter()
            .filter_map(|s| {
                let minute = s.minute.load(Ordering::Relaxed);
                (minute + 60 > now && minute <= now).then(|| MinuteCalls {
                    at: (minute * 60_000) as i64,
                    ok: s.ok.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                })
            })
            .filter(|m| m.ok + m.errors > 0)
            .collect();
        minutes.sort_by_key(|m| m.at);
        minutes
    }
}

/// Each function's `Minutes`, kept across its routes (a deploy keeps its counts).
#[derive(Default)]
pub struct CallStats {
    by_function: Mutex<HashMap<FunctionRef, Arc<Minutes>>>,
}

impl CallStats {
    pub fn of(&self, function: &FunctionRef) -> Arc<Minutes> {
        let mut all = self.by_function.lock().expect("stats lock");
        all.entry(function.clone()).or_default().clone()
    }

    /// The functions `visible` picks, with their last hour.
    pub fn last_hour(&self, visible: impl Fn(&FunctionRef) -> bool) -> Vec<FunctionCalls> {
        let all: Vec<_> = {
            let all = self.by_function.lock().expect("stats lock");
            all.iter()
                .filter(|(f, _)| visible(f))
                .map(|(f, m)| (f.clone(), m.clone()))
                .collect()
        };
        let mut out: Vec<FunctionCalls> = all
            .into_iter()
            .map(|(function, m)| FunctionCalls {
                function,
                minutes: m.last_hour(),
            })
            .filter(|f| !f.minutes.is_empty())
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
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
        let stats = CallStats::default();
        let function: FunctionRef = "metrics/test".parse().unwrap();
        let m = FunctionMetrics::new(&function, stats.of(&function));
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
        // The minute's counts, for whom may see the function; a new route of the
        // same function adds to them.
        let again = FunctionMetrics::new(&function, stats.of(&function));
        again.record(Outcome::OK, ms);
        let hour = stats.last_hour(|_| true);
        let last = hour[0].minutes.last().unwrap();
        assert!(
            hour[0].function == function && last.ok >= 3 && last.errors >= 1,
            "{hour:?}"
        );
        assert!(stats.last_hour(|_| false).is_empty());
    }
}
