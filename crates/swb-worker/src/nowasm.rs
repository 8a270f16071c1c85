//! A worker built without the `wasm` feature: it has no Wasm side, so this type
//! has no values and its methods are never called.

use crate::handler::Reply;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use swb_api::protocol::{CallId, HostedCall, WorkerMsg};
use swb_api::{ApiError, CacheStats, Digest};
use tokio::sync::mpsc;

pub(crate) enum Guests {}

#[derive(Default)]
pub(crate) struct NestedTable;

impl Guests {
    pub fn new(_: &crate::WorkerConfig, _: u32) -> anyhow::Result<Self> {
        anyhow::bail!("this build runs no Wasm: build swb-worker with the `wasm` feature")
    }

    pub fn stats(&self) -> CacheStats {
        match *self {}
    }

    pub fn cached_on_disk(&self) -> Vec<Digest> {
        match *self {}
    }

    pub async fn compile(&self, _: Digest, _: Bytes) -> Result<(), String> {
        match *self {}
    }

    pub async fn execute(
        &self,
        _: CallId,
        _: &HostedCall,
        _: Bytes,
        _: &mpsc::Sender<WorkerMsg>,
        _: &Arc<NestedTable>,
    ) -> Option<(Reply, Duration)> {
        match *self {}
    }
}

impl NestedTable {
    pub fn done(&self, _: u64, _: Result<Bytes, ApiError>) {}
}
