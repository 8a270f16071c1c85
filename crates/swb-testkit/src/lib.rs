//! Test support: guest fixtures built from source, and a harness that runs the real
//! `swb` binary (server and worker processes on port 0) for integration tests.

pub mod guests;
