//! Federation: joint statistics over several organisations' datasets, each kept by
//! its own server, with no party's rows or totals leaving it.
//!
//! Each party computes its local totals for a query ([`query::local`]), checked
//! first against its own disclosure rules; splits them into additive shares in a
//! prime field ([`field::split`]); sends one share to each other party and keeps
//! one; adds up the shares it holds; and the parties' sums, added up, are the joint
//! totals the result is made of ([`query::combine`]).

mod datasets;
pub mod field;
pub mod manifest;
pub mod query;
mod service;
pub mod table;

pub use service::{Fed, Options, mount};

#[cfg(test)]
mod tests;
