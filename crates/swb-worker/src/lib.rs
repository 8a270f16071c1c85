//! The Switchboard worker: runs remote calls in [`Handler`]s (the Rust SDK) and,
//! built with the `wasm` feature, hosted calls in wasmtime (`swb_runtime`), for one
//! server session at a time. Without the feature nothing of wasmtime is compiled:
//! a program serving its own functions builds in a fraction of the time.
//!
//! A session is a pair of channels carrying protocol messages, so the same code
//! serves the in-process worker of `swb up` and a remote worker dialling
//! `/v1/worker/connect` over a WebSocket ([`run`]).

mod exec;
mod handler;
pub mod sdk;
mod session;
#[cfg(feature = "wasm")]
mod wasm;
#[cfg(not(feature = "wasm"))]
#[path = "nowasm.rs"]
mod wasm;
mod ws;

pub use exec::{Exec, die_with_this_process};
pub use handler::{CallContext, Handler, Reply};
pub use session::{GUESTS_PER_CPU, SessionEnd, Worker, WorkerConfig, cpus};
pub use ws::{Backoff, RunError, run};
