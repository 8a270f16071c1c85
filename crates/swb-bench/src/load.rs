//! A closed-loop load generator: `concurrency` callers, each sending its next request
//! when the previous one is answered, for a fixed duration after a short warm-up;
//! several windows (of several servers, in turns) may be summarised together.

use bytes::Bytes;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub url: String,
    pub token: Option<String>,
    pub body: Bytes,
    pub concurrency: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    pub concurrency: usize,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Why the first failed call failed (its status and body, or the transport error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Each measured window on its own, when there were several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// One measured window: its rate and median latency.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Window {
    pub rps: f64,
    pub p50_us: f64,
}

const WARMUP: Duration = Duration::from_millis(300);

pub async fn run_load(spec: &LoadSpec) -> anyhow::Result<Load> {
    let mut samples = Samples::default();
    samples.run(spec).await?;
    Ok(samples.load(spec.concurrency, spec.duration))
}

/// The latencies and errors of one or more measured windows.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    windows: Vec<Window>,
}

impl Samples {
    /// Runs one window (warm-up, then `spec.duration` measured) and keeps its samples.
    pub async fn run(&mut self, spec: &LoadSpec) -> anyhow::Result<()> {
        let client = swb_client::tls::builder()
            .pool_max_idle_per_host(spec.concurrency)
            .build()?;
        let warmup_end = Instant::now() + WARMUP;
        let end = warmup_end + spec.duration;
        let tasks: Vec<_> = (0..spec.concurrency)
            .map(|_| {
                let (client, spec) = (client.clone(), spec.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(1 << 14);
                    let mut errors = 0u64;
                    let mut first_error = None;
                    loop {
                        let started = Instant::now();
                        if started >= end {
                            break;
                        }
                        let mut req = client.post(&spec.url).body(spec.body.clone());
                        if let Some(t) = &spec.token {
                            req = req.bearer_auth(t);
                        }
                        let outcome = match req.send().await {
                            Ok(r) if r.status().is_success() => {
                                r.bytes().await.map(drop).map_err(Failure::Transport)
                            }
                            Ok(r) => Err(Failure::Status(r.status(), r.bytes().await)),
                            Err(e) => Err(Failure::Transport(e)),
                        };
                        match outcome {
                            Ok(()) if started >= warmup_end => {
                                latencies.push(started.elapsed().as_micros() as u32)
                            }
                            Ok(()) => {}
                            Err(e) => {
                                errors += u64::from(started >= warmup_end);
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (latencies, errors, first_error)
                })
            })
            .collect();
        let mut window = Vec::new();
        for t in tasks {
            let (l, e, first) = t.await?;
            window.extend(l);
            self.errors += e;
            if self.first_error.is_none() {
                self.first_error = first;
            }
        }
        window.sort_unstable();
        self.windows.push(Window {
            rps: window.len() as f64 / spec.duration.as_secs_f64(),
            p50_us: percentile(&window, 0.50),
        });
        self.latencies.extend(window);
        Ok(())
    }

    /// Keeps a window measured elsewhere (a loop in another language): its calls'
    /// latencies in microseconds, `duration` long.
    pub fn add_window(&mut self, mut latencies: Vec<u32>, duration: Duration) {
        latencies.sort_unstable();
        self.windows.push(Window {
            rps: latencies.len() as f64 / duration.as_secs_f64(),
            p50_us: percentile(&latencies, 0.50),
        });
        self.latencies.extend(latencies);
    }

    /// The summary of every window kept, `measured` long in all (with each window's
    /// own figures when there were several).
    pub fn load(mut self, concurrency: usize, measured: Duration) -> Load {
        let all = &mut self.latencies;
        all.sort_unstable();
        Load {
            concurrency,
            requests: all.len() as u64,
            errors: self.errors,
            rps: all.len() as f64 / measured.as_secs_f64(),
            p50_us: percentile(all, 0.50),
            p99_us: percentile(all, 0.99),
            first_error: self.first_error,
            windows: if self.windows.len() > 1 {
                self.windows
            } else {
                Vec::new()
            },
        }
    }
}

/// The value at fraction `p` of sorted samples (0 when there are none).
pub(crate) fn percentile<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n - 1) as f64 * p) as usize].into(),
    }
}

/// A failed call, described only for the first one of a caller.
enum Failure {
    Status(reqwest::StatusCode, reqwest::Result<Bytes>),
    Transport(reqwest::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, Ok(body)) => {
                let body = String::from_utf8_lossy(&body[..body.len().min(500)]);
                write!(f, "HTTP {status}: {}", body.trim())
            }
            Self::Status(status, Err(e)) => write!(f, "HTTP {status} (body unreadable: {e})"),
            Self::Transport(e) => {
                // reqwest's message names the URL; its causes say what went wrong.
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}
