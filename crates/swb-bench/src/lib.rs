//! `swb bench`: a load generator, the ideal servers the platform is compared with,
//! and the suite that runs every scenario against real processes.

mod federation;
mod ideal;
mod load;
mod suite;

pub use federation::{FedLine, federation};
pub use ideal::{serve_ideal_echo, serve_ideal_wasm, serve_sdk_echo};
pub use load::{Load, LoadSpec, Window, run_load};
pub use suite::{Line, SuiteOptions, run_suite};
