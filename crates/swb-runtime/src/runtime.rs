use crate::capture::Capture;
use crate::host::{self, HasHost, HostState, NestedCalls};
use bytes::Bytes;
use futures_util::FutureExt;
use lru::LruCache;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swb_api::protocol::{CallLimits, HostedCall};
use swb_api::{ApiError, CacheStats, Digest, ErrorCode};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

/// How often the epoch advances: a running guest yields to the executor and its
/// deadline is checked at this grain.
const TICK: Duration = Duration::from_millis(2);
/// Largest memory any call may be granted (the pool reserves address space for it).
pub const MAX_MEMORY_MB: u32 = 4096;
/// Bytes of each pooled memory slot kept resident between calls.
const KEEP_RESIDENT: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled code is kept across restarts; `None` keeps it in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Guests that run at once (the pooling allocator's size); further calls wait
    /// for a running one to end.
    pub max_instances: u32,
    /// Modules kept ready in memory (least recently used are dropped).
    pub ready_modules: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 256,
            ready_modules: 128,
        }
    }
}

/// Instances kept for guests waiting in `swb.call`, per guest that may run: a call
/// tree this deep (the server's default depth) on every running guest fits.
const NESTED_RESERVE: u32 = 8;
/// … but never more than this many in all (each instance reserves address space).
const MAX_NESTED_INSTANCES: u32 = 1024;

/// Store data of one call.
struct CallState {
    wasi: WasiP1Ctx,
    memory: MemoryLimiter,
    host: HostState,
}

impl HasHost for CallState {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }
}

struct MemoryLimiter {
    max_bytes: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A call ran past its deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A module compiled and linked, ready to instantiate.
pub struct Prepared {
    digest: Digest,
    pre: InstancePre<CallState>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("digest", &self.digest)
            .finish()
    }
}

impl Prepared {
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// One call's input and settings.
pub struct CallRequest<'a> {
    pub input: Bytes,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    /// The version's secrets, added to the environment.
    pub secrets: &'a [(String, String)],
    pub limits: CallLimits,
    /// Who makes the guest's calls of other functions (`swb.call`); without it
    /// they fail with `forbidden`.
    pub calls: Option<Arc<dyn NestedCalls>>,
}

impl<'a> CallRequest<'a> {
    /// The request for a hosted call as the worker protocol carries it.
    pub fn hosted(hosted: &'a HostedCall, input: Bytes) -> Self {
        Self {
            input,
            args: &hosted.args,
            env: &hosted.env,
            secrets: hosted.secrets.as_slice(),
            limits: hosted.limits,
            calls: None,
        }
    }

    /// The same request, its guest's nested calls made by `calls`.
    pub fn with_calls(mut self, calls: Arc<dyn NestedCalls>) -> Self {
        self.calls = Some(calls);
        self
    }
}

impl CallResult {
    /// A call that did not run: `error` says why.
    pub fn failed(error: ApiError) -> Self {
        Self {
            output: Err(error),
            stderr_tail: Bytes::new(),
            duration: Duration::ZERO,
        }
    }
}

#[derive(Debug)]
pub struct CallResult {
    /// stdout on success.
    pub output: Result<Bytes, ApiError>,
    /// The last bytes of stderr.
    pub stderr_tail: Bytes,
    pub duration: Duration,
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    ready: Mutex<LruCache<Digest, Arc<Prepared>>>,
    cache_dir: Option<PathBuf>,
    compiles: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    /// One permit per pooled instance, held by a call for its instance's life.
    instances: tokio::sync::Semaphore,
    /// The guests that run at once (`max_instances`): a guest waiting in `swb.call`
    /// gives its permit up and keeps its instance.
    running: Arc<tokio::sync::Semaphore>,
    _ticker: Ticker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        if config.max_instances == 0 {
            return Err(setup_err("max_instances must be at least 1"));
        }
        let instances = config.max_instances
            + (config.max_instances * NESTED_RESERVE).min(MAX_NESTED_INSTANCES);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .total_stacks(instances)
            .max_memory_size(MAX_MEMORY_MB as usize * 1024 * 1024)
            // Reset the first MiBs of a reused slot with memset instead of madvise:
            // typical guests (a Rust program starts with ~1 MiB) then cost neither page
            // faults nor cross-core TLB shootdowns per call.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            // … and only the pages the guest wrote (Linux 6.7+ reports them), not all
            // of its memory: an echo writes 1 of its 32 pages.
            .pagemap_scan(Enabled::Auto);
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&wasm).map_err(setup_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut CallState| &mut s.wasi)
            .map_err(setup_err)?;
        host::add_to_linker(&mut linker).map_err(setup_err)?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("swb-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(setup_err)?;
        }

        let cache_dir = match config.cache_dir {
            Some(dir) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut h);
                let dir = dir.join(format!("{:016x}", h.finish()));
                std::fs::create_dir_all(&dir).map_err(setup_err)?;
                Some(dir)
            }
            None => None,
        };
        Ok(Self {
            engine,
            linker,
            ready: Mutex::new(LruCache::new(
                NonZeroUsize::new(config.ready_modules.max(1)).expect("non-zero"),
            )),
            cache_dir,
            compiles: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            instances: tokio::sync::Semaphore::new(instances as usize),
            running: Arc::new(tokio::sync::Semaphore::new(config.max_instances as usize)),
            _ticker: Ticker(stop),
        })
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiles: self.compiles.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Digests with compiled code in the disk cache.
    pub fn cached_on_disk(&self) -> Vec<Digest> {
        let Some(dir) = &self.cache_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                format!("sha256:{}", name.strip_suffix(".cwasm")?)
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The module if it is ready in memory (never blocks).
    pub fn ready(&self, digest: &Digest) -> Option<Arc<Prepared>> {
        let module = self
            .ready
            .lock()
            .expect("ready lock")
            .get(digest)
            .cloned()?;
        self.memory_hits.fetch_add(1, Ordering::Relaxed);
        Some(module)
    }

    /// The module if it is ready in memory or can be loaded from the disk cache.
    /// May block on disk I/O: call it off the async runtime.
    pub fn lookup(&self, digest: &Digest) -> Option<Arc<Prepared>> {
        if let Some(p) = self.ready(digest) {
            return Some(p);
        }
        let path = self.cache_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: files in the cache directory are written only by `prepare` below
        // (atomically, via rename) from modules this engine compiled; wasmtime also
        // checks that the file was produced by a compatible engine.
        #[allow(unsafe_code)]
        let module = match unsafe { Module::deserialize_file(&self.engine, &path) } {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "dropping unusable cached module");
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        let prepared = self.link(*digest, &module).ok()?;
        self.disk_hits.fetch_add(1, Ordering::Relaxed);
        Some(self.keep(prepared))
    }

    /// Compiles `bytes` (unless cached) and keeps the result ready. CPU-heavy: call it
    /// off the async runtime.
    pub fn prepare(&self, digest: Digest, bytes: &[u8]) -> Result<Arc<Prepared>, String> {
        if let Some(p) = self.lookup(&digest) {
            return Ok(p);
        }
        if Digest::of(bytes) != digest {
            return Err(format!("module bytes do not hash to {digest}"));
        }
        crate::inspect(bytes).map_err(|e| e.to_string())?;
        let module =
            Module::from_binary(&self.engine, bytes).map_err(|e| format!("compile failed: {e}"))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let prepared = self.link(digest, &module)?;
        if let Some(path) = self.cache_path(&digest)
            && let Err(e) = write_atomically(&path, &module)
        {
            tracing::warn!(%digest, error = %e, "could not write compiled module to the disk cache");
        }
        Ok(self.keep(prepared))
    }

    fn link(&self, digest: Digest, module: &Module) -> Result<Prepared, String> {
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| format!("link failed: {e}"))?;
        Ok(Prepared { digest, pre })
    }

    fn keep(&self, prepared: Prepared) -> Arc<Prepared> {
        let prepared = Arc::new(prepared);
        self.ready
            .lock()
            .expect("ready lock")
            .put(prepared.digest, prepared.clone());
        prepared
    }

    fn cache_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(
            self.cache_dir
                .as_ref()?
                .join(format!("{}.cwasm", digest.hex())),
        )
    }

    /// Runs one call to completion on the calling task. The guest runs on a fiber
    /// stack of its own and yields to the executor at every tick, so it holds no
    /// thread for long and needs no thread hand-over; the deadline holds inside host
    /// calls too (a guest asleep in `poll_oneoff` is stopped at it). Dropping the
    /// future stops the call at once. A panic inside (a bug, never the guest's doing)
    /// fails this call only.
    pub async fn call(&self, module: &Prepared, req: CallRequest<'_>) -> CallResult {
        // Dropped after the call's instance (declared first, and the call's future
        // goes first when this one is dropped): a permit never outlives its slot.
        let _instance = self
            .instances
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        AssertUnwindSafe(self.run(module, req, running))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                CallResult::failed(ApiError::new(
                    ErrorCode::Internal,
                    "the call crashed (a bug in the runtime: see the log)",
                ))
            })
    }

    async fn run(
        &self,
        module: &Prepared,
        req: CallRequest<'_>,
        running: tokio::sync::OwnedSemaphorePermit,
    ) -> CallResult {
        let started = Instant::now();
        let stdout = Capture::head(req.limits.stdout_bytes as usize);
        let stderr = Capture::tail(req.limits.stderr_bytes as usize);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(req.input))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(req.args)
            .envs(req.env)
            .envs(req.secrets);
        let state = CallState {
            wasi: wasi.build_p1(),
            memory: MemoryLimiter {
                max_bytes: req.limits.memory_mb as usize * 1024 * 1024,
                denied: false,
            },
            host: HostState {
                calls: req.calls,
                pending: None,
                running: Some(running),
                cpus: self.running.clone(),
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        let deadline = started + Duration::from_millis(req.limits.timeout_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(DeadlineExceeded));
            }
            Ok(UpdateDeadline::Yield(1))
        });

        let run = async {
            let instance = module.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        // The epoch callback stops a guest that computes; this stops one waiting in
        // a host call. A finished guest returns before any timer is registered.
        let run = tokio::time::timeout_at(deadline.into(), run)
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlineExceeded)));
        let exit = match run {
            Ok(()) => Ok(()),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(code) if code.0 == 0 => Ok(()),
                _ => Err(e),
            },
        };
        let memory_denied = store.data().memory.denied;
        drop(store);
        let stderr_tail = stderr.take();
        let output = match exit {
            _ if stdout.overflowed() => Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "function wrote more than {} bytes to stdout",
                    req.limits.stdout_bytes
                ),
            )
            .with_details(
                serde_json::json!({"limit": "stdout", "limit_bytes": req.limits.stdout_bytes}),
            )),
            Ok(()) => Ok(stdout.take()),
            Err(e) => Err(classify(&e, memory_denied, &req.limits, &stderr_tail)),
        };
        CallResult {
            output,
            stderr_tail,
            duration: started.elapsed(),
        }
    }
}

fn tail_text(stderr: &[u8]) -> String {
    const SHOWN: usize = 2048;
    String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(SHOWN)..]).into_owned()
}

/// Maps a failed run to the error a caller sees.
fn classify(
    e: &wasmtime::Error,
    memory_denied: bool,
    limits: &CallLimits,
    stderr: &[u8],
) -> ApiError {
    if e.is::<DeadlineExceeded>() {
        return ApiError::new(
            ErrorCode::Timeout,
            format!("function did not finish within {} ms", limits.timeout_ms),
        )
        .with_details(serde_json::json!({"timeout_ms": limits.timeout_ms}));
    }
    if memory_denied {
        return ApiError::new(
            ErrorCode::LimitExceeded,
            format!("function tried to use more than {} MiB of memory", limits.memory_mb),
        )
        .with_details(serde_json::json!({"limit": "memory", "limit_mb": limits.memory_mb, "stderr_tail": tail_text(stderr)}));
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ApiError::new(
            ErrorCode::FunctionError,
            format!("function exited with code {}", exit.0),
        )
        .with_details(serde_json::json!({"exit_code": exit.0, "stderr_tail": tail_text(stderr)}));
    }
    let trap = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    ApiError::new(
        ErrorCode::FunctionError,
        format!("function trapped: {trap}"),
    )
    .with_details(serde_json::json!({"trap": trap, "stderr_tail": tail_text(stderr)}))
}

fn write_atomically(path: &Path, module: &Module) -> std::io::Result<()> {
    let bytes = module.serialize().map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Failure to set up the runtime (engine, linker, cache directory).
#[derive(Debug, thiserror::Error)]
#[error("wasm runtime setup failed: {0}")]
pub struct RuntimeError(String);

fn setup_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError(e.to_string())
}
