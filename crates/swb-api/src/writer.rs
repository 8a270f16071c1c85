//! The writing half of a worker session's WebSocket, the same at both ends: a task
//! that sends whatever has queued up, one flush per batch.

use crate::protocol::{Frame, ServerMsg, WorkerMsg};
use crate::quiet::QuietSink;
use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Most messages written to the socket before a flush.
const WRITE_BATCH: usize = 64;

/// Calls open on one session: sent by the server and neither answered nor cancelled.
/// Both ends count the messages that pass through their socket, so that a writer
/// knows whether other calls are running, whose messages could join its batch.
#[derive(Debug, Default)]
pub struct OpenCalls(AtomicUsize);

impl OpenCalls {
    /// Counts a server message, written (server) or read (worker).
    pub fn server_msg(&self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Invoke { .. } | ServerMsg::Call { .. } => self.opened(),
            ServerMsg::Cancel { .. } => self.closed(),
            _ => {}
        }
    }

    /// Counts a worker message, read (server) or written (worker).
    pub fn worker_msg(&self, msg: &WorkerMsg) {
        if let WorkerMsg::Done { .. } = msg {
            self.closed();
        }
    }

    fn opened(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A call closed; never below zero (a cancellation and its call's answer may
    /// cross, and the count heals the next time the session is idle).
    fn closed(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    fn several(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 1
    }
}

/// The queue a session's messages wait in for the writer.
pub trait Outbox<M>: Send {
    fn recv_many(&mut self, batch: &mut Vec<M>, limit: usize)
    -> impl Future<Output = usize> + Send;
    fn try_recv(&mut self) -> Option<M>;
}

impl<M: Send> Outbox<M> for mpsc::Receiver<M> {
    fn recv_many(
        &mut self,
        batch: &mut Vec<M>,
        limit: usize,
    ) -> impl Future<Output = usize> + Send {
        mpsc::Receiver::recv_many(self, batch, limit)
    }
    fn try_recv(&mut self) -> Option<M> {
        mpsc::Receiver::try_recv(self).ok()
    }
}

impl<M: Send> Outbox<M> for mpsc::UnboundedReceiver<M> {
    fn recv_many(
        &mut self,
        batch: &mut Vec<M>,
        limit: usize,
    ) -> impl Future<Output = usize> + Send {
        mpsc::UnboundedReceiver::recv_many(self, batch, limit)
    }
    fn try_recv(&mut self) -> Option<M> {
        mpsc::UnboundedReceiver::try_recv(self).ok()
    }
}

/// A message a session writes.
pub trait Outgoing: Frame {
    /// Counts the message on its way out.
    fn count(&self, open: &OpenCalls);
    /// Nothing is written after it.
    fn is_last(&self) -> bool;
}

impl Outgoing for ServerMsg {
    fn count(&self, open: &OpenCalls) {
        open.server_msg(self);
    }
    fn is_last(&self) -> bool {
        matches!(self, ServerMsg::Refused { .. })
    }
}

impl Outgoing for WorkerMsg {
    fn count(&self, open: &OpenCalls) {
        open.worker_msg(self);
    }
    fn is_last(&self) -> bool {
        false
    }
}

/// Writes the outbox's messages to `sink` (each as the binary frame `binary` makes
/// of its bytes) until the outbox closes, the socket fails or a last message is
/// written; then closes the socket.
///
/// Whatever has queued up goes out in one write: under load, one flush (one system
/// call) carries many calls. While other calls are open on the session, the writer
/// first lets the tasks that are ready run, so that the messages they are about to
/// send join the batch (without it, most writes carried one call: a task that wakes
/// the writer hands it its thread first). With one call open there is nothing to
/// wait for, and yielding would cost more than it gathers: tokio marks a thread
/// whose only work is a yielded task as searching, and such a thread wakes a
/// sleeping sibling when it resumes the task.
pub async fn write_batches<M, T, S>(
    mut outbox: impl Outbox<M>,
    sink: S,
    open: &OpenCalls,
    binary: fn(Bytes) -> T,
) where
    M: Outgoing,
    S: Sink<T> + Unpin,
{
    // The writer is woken by its own writes only, not by every frame received.
    let mut sink = QuietSink::new(sink);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    'write: while outbox.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        if open.several() {
            tokio::task::yield_now().await;
        }
        while batch.len() < WRITE_BATCH
            && let Some(msg) = outbox.try_recv()
        {
            batch.push(msg);
        }
        for msg in batch.drain(..) {
            msg.count(open);
            let last = msg.is_last();
            if sink.feed(binary(msg.encode())).await.is_err() || last {
                break 'write;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiError, ErrorCode};

    fn cancel(call: u64) -> ServerMsg {
        ServerMsg::Cancel { call }
    }

    #[test]
    fn open_calls_never_go_below_zero() {
        let open = OpenCalls::default();
        let call = ServerMsg::Call {
            call: 1,
            function: "a/b".parse().unwrap(),
            limits: crate::protocol::CallLimits {
                timeout_ms: 1,
                memory_mb: 1,
                stdout_bytes: 1,
                stderr_bytes: 1,
            },
            profile: None,
            invocation: None,
            token: None,
            traceparent: None,
            secrets: Default::default(),
            input: Bytes::new(),
        };
        open.server_msg(&call);
        open.server_msg(&call);
        assert!(open.several());
        // A cancellation crossing its call's answer closes it twice.
        open.server_msg(&cancel(1));
        open.worker_msg(&WorkerMsg::Done {
            call: 1,
            error: None,
            stderr_tail: String::new(),
            duration_us: 0,
            output: Bytes::new(),
        });
        open.server_msg(&cancel(1));
        assert_eq!(open.0.load(Ordering::Relaxed), 0);
        open.server_msg(&call);
        assert!(!open.several());
    }

    #[tokio::test]
    async fn writes_in_order_and_stops_after_a_refusal() {
        let (tx, rx) = mpsc::unbounded_channel();
        for call in 1..=3 {
            tx.send(cancel(call)).unwrap();
        }
        tx.send(ServerMsg::Refused {
            error: ApiError::new(ErrorCode::Unauthenticated, "revoked"),
        })
        .unwrap();
        tx.send(cancel(4)).unwrap();
        let mut written = Vec::new();
        write_batches(rx, &mut written, &OpenCalls::default(), |b: Bytes| b).await;
        let calls: Vec<_> = written
            .into_iter()
            .map(|frame| match ServerMsg::decode(frame).unwrap() {
                ServerMsg::Cancel { call } => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(calls, [Some(1), Some(2), Some(3), None]);
    }

    #[tokio::test]
    async fn ends_when_the_outbox_closes() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(WorkerMsg::Draining).await.unwrap();
        drop(tx);
        let mut written: Vec<Bytes> = Vec::new();
        write_batches(rx, &mut written, &OpenCalls::default(), |b| b).await;
        assert_eq!(written.len(), 1);
    }
}
