//! The Switchboard worker: runs hosted calls in a [`swb_runtime::Runtime`] and remote
//! calls in [`Handler`]s, for one server session at a time.
//!
//! A session is a pair of channels carrying protocol messages, so the same code
//! serves the in-process worker of `swb up` and a remote worker dialling
//! `/v1/worker/connect` over a WebSocket ([`run`]).

mod exec;
mod handler;
pub mod sdk;
mod session;
mod ws;

pub use exec::{Exec, die_with_this_process};
pub use handler::{CallContext, Handler, Reply};
pub use session::{GUESTS_PER_CPU, SessionEnd, Worker, WorkerConfig, cpus};
pub use ws::{Backoff, RunError, run};
