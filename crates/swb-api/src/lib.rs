//! Wire types shared by every Switchboard process: REST bodies, the error table,
//! validated identifiers and the worker protocol (with the writer both ends send
//! its messages through). This crate depends on nothing internal; a type here is
//! a promise to clients and workers, so change it with care.

mod error;
mod identity;
mod ids;
mod jobs;
pub mod protocol;
mod quiet;
mod rest;
mod secrets;
pub mod token;
pub mod trace;
pub mod writer;

pub use error::{ApiError, ErrorBody, ErrorCode};
pub use identity::*;
pub use ids::{
    Digest, FunctionRef, IdError, Namespace, cert_fingerprint, v7_first, v7_last, valid_name,
};
pub use jobs::*;
pub use rest::*;
pub use secrets::*;

/// Response headers that carry an invocation's metadata next to the function's output.
pub mod headers {
    pub const INVOCATION_ID: &str = "swb-invocation-id";
    pub const VERSION: &str = "swb-version";
    pub const WORKER: &str = "swb-worker";
    pub const DURATION_US: &str = "swb-duration-us";
    /// W3C trace context: accepted from callers, carried to every call of the tree.
    pub const TRACEPARENT: &str = "traceparent";
}
