//! The narrow wasmtime wrapper: it turns module bytes into ready-to-run code and runs
//! one call of a WASI preview 1 command module under limits. It knows no HTTP and no
//! database.
//!
//! Hot path: one [`wasmtime::Engine`] with the pooling allocator and copy-on-write
//! memory images, an `InstancePre` kept per digest in a bounded LRU, and a fresh `Store`
//! per call. Compiled code is cached on disk keyed by digest and engine fingerprint, so
//! a restarted worker starts warm.

mod capture;
mod host;
mod inspect;
mod runtime;

pub use host::NestedCalls;
pub use inspect::{InvalidModule, inspect};
pub use runtime::{
    CallRequest, CallResult, MAX_MEMORY_MB, Prepared, Runtime, RuntimeConfig, RuntimeError,
};
