//! The routing table: what an invoke of `ns/name[@version]` runs, with its schemas
//! compiled. Cached in memory so the hot path never touches the database; every
//! change to a function invalidates its entries.

use crate::config::Config;
use crate::error::store_error;
use crate::hub::Target;
use crate::metrics::FunctionMetrics;
use crate::secrets::Keyring;
use jsonschema::Validator;
use lru::LruCache;
use serde_json::Value;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use swb_api::protocol::{CallLimits, HostedCall};
use swb_api::{
    ApiError, ErrorCode, FunctionKind, FunctionRef, Namespace, SecretValues, VersionInfo,
};
use swb_store::Store;

const ENTRIES: usize = 10_000;

/// Everything an invoke needs, resolved once.
pub struct Route {
    pub version: VersionInfo,
    pub input: Option<Validator>,
    pub output: Option<Validator>,
    /// The call as a worker receives it.
    pub target: Target,
    pub metrics: FunctionMetrics,
}

/// Compiles a JSON Schema, naming where it sits in the deploy request on failure.
pub fn compile_schema(schema: &Value, pointer: &str) -> Result<Validator, ApiError> {
    jsonschema::validator_for(schema).map_err(|e| {
        ApiError::invalid_input(format!("invalid JSON Schema at {pointer}: {e}"))
            .with_details(serde_json::json!({ "pointer": pointer }))
    })
}

type Key = (FunctionRef, Option<u32>);

pub struct Routes {
    store: Arc<dyn Store>,
    cache: Mutex<LruCache<Key, Arc<Route>>>,
    /// Bumped by every invalidation; a lookup that raced one does not cache its result.
    generation: AtomicU64,
    stdout_bytes: u64,
    stderr_bytes: u64,
    /// Opens the secrets a version is granted, once per route.
    secrets: Arc<Keyring>,
    /// Calls per minute per function, kept across routes.
    pub stats: crate::metrics::CallStats,
}

impl Routes {
    pub fn new(store: Arc<dyn Store>, config: &Config, secrets: Arc<Keyring>) -> Self {
        Self {
            store,
            secrets,
            stats: Default::default(),
            cache: Mutex::new(LruCache::new(NonZeroUsize::new(ENTRIES).expect("non-zero"))),
            generation: AtomicU64::new(0),
            stdout_bytes: config.stdout_bytes,
            stderr_bytes: config.stderr_bytes,
        }
    }

    /// The active version (or the given one) of a function.
    pub async fn get(
        &self,
        function: &FunctionRef,
        version: Option<u32>,
    ) -> Result<Arc<Route>, ApiError> {
        let key = (function.clone(), version);
        if let Some(route) = self.cache.lock().expect("routes lock").get(&key) {
            return Ok(route.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let row = self
            .store
            .function(function)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("function {function}")))?;
        let number = version.unwrap_or(row.active_version);
        let info = self
            .store
            .version(function, number)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("version {number} of {function}")))?;
        let secrets = self
            .secrets
            .resolve(self.store.as_ref(), function, info.version, &info.secrets)
            .await?;
        let route = Arc::new(self.build(function, info, secrets)?);
        let mut cache = self.cache.lock().expect("routes lock");
        if self.generation.load(Ordering::Acquire) == generation {
            cache.put(key, route.clone());
        }
        Ok(route)
    }

    fn build(
        &self,
        function: &FunctionRef,
        version: VersionInfo,
        secrets: SecretValues,
    ) -> Result<Route, ApiError> {
        let schema = |s: &Option<Value>, at| {
            s.as_ref()
                .map(|s| compile_schema(s, at))
                .transpose()
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.message))
        };
        let input = schema(&version.interface.input, "/interface/input")?;
        let output = schema(&version.interface.output, "/interface/output")?;
        let limits = CallLimits {
            timeout_ms: version.limits.timeout_ms,
            memory_mb: version.limits.memory_mb,
            stdout_bytes: self.stdout_bytes,
            stderr_bytes: self.stderr_bytes,
        };
        let target = match (version.kind, version.artefact) {
            (FunctionKind::Hosted, Some(digest)) => Target::Hosted(Arc::new(HostedCall {
                digest,
                args: std::iter::once(function.to_string())
                    .chain(version.args.iter().cloned())
                    .collect(),
                env: version
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                limits,
                calls: !version.calls.is_empty(),
                secrets,
            })),
            (FunctionKind::Hosted, None) => {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    "hosted version without artefact",
                ));
            }
            (FunctionKind::Remote, _) => Target::Remote {
                function: function.clone(),
                limits,
                profile: None,
                invocation: None,
                traceparent: None,
                secrets,
            },
        };
        Ok(Route {
            version,
            input,
            output,
            target,
            metrics: FunctionMetrics::new(function, self.stats.of(function)),
        })
    }

    /// Drops every cached route (after a user and their functions are deleted).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.lock().expect("routes lock").clear();
    }

    /// Drops every cached route of a namespace's functions (after its secrets change).
    pub fn invalidate_namespace(&self, namespace: &Namespace) {
        self.invalidate_where(|f| f.namespace() == namespace);
    }

    /// Drops every cached route of a function (after deploy, rollback or delete).
    pub fn invalidate(&self, function: &FunctionRef) {
        self.invalidate_where(|f| f == function);
    }

    fn invalidate_where(&self, stale: impl Fn(&FunctionRef) -> bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut cache = self.cache.lock().expect("routes lock");
        let keys: Vec<Key> = cache
            .iter()
            .filter(|((f, _), _)| stale(f))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            cache.pop(&key);
        }
    }
}
