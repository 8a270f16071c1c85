//! Invocation records are written off the hot path: calls hand them to a task that
//! writes whatever has queued up in one transaction and keeps the table within its
//! bound.

use std::sync::Arc;
use swb_api::InvocationRecord;
use swb_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const QUEUE: usize = 10_000;
const BATCH: usize = 1_000;
/// How long a batch may wait for more records before it is written.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<InvocationRecord>,
}

impl Recorder {
    /// Starts the writer.
    pub fn spawn(store: Arc<dyn Store>, keep: u64) -> (Self, RecorderTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_loop(store, rx, stopped, keep));
        (Self { tx }, RecorderTask { stop, task })
    }

    /// Records from code that cannot wait (a destructor): dropped, and logged, if
    /// the queue is full.
    pub fn record_now(&self, record: InvocationRecord) {
        if self.tx.try_send(record).is_err() {
            tracing::error!("invocation recorder is full or stopped; record lost");
        }
    }

    pub async fn record(&self, record: InvocationRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("invocation recorder has stopped; record lost");
        }
    }
}

/// The writer task; [`RecorderTask::finish`] writes what is queued and stops it.
pub struct RecorderTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RecorderTask {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<InvocationRecord>,
    mut stop: oneshot::Receiver<()>,
    keep: u64,
) {
    let prune_every = (keep / 10).max(100);
    let mut since_prune = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                // Under load, gather a little longer: one transaction (one fsync)
                // per many records costs far less than one per few.
                if n > 0 && batch.len() < BATCH {
                    tokio::time::sleep(GATHER).await;
                    while batch.len() < BATCH && let Ok(r) = rx.try_recv() {
                        batch.push(r);
                    }
                }
                n == 0
            }
            _ = &mut stop => {
                rx.close();
                while rx.recv_many(&mut batch, usize::MAX).await > 0 {}
                true
            }
        };
        if batch.is_empty() && stopping {
            return;
        }
        if let Err(e) = store.record_invocations(&batch).await {
            tracing::error!(error = %e, lost = batch.len(), "could not write invocation records");
        }
        since_prune += batch.len() as u64;
        batch.clear();
        if stopping {
            return;
        }
        if since_prune >= prune_every {
            since_prune = 0;
            match store.prune_invocations(keep).await {
                Ok(n) if n > 0 => tracing::debug!(removed = n, "pruned invocation records"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "could not prune invocation records"),
            }
        }
    }
}
