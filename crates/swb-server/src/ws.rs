//! `GET /v1/worker/connect`: a worker's session over a WebSocket, one binary frame
//! per protocol message (see docs/protocol.md).

use crate::App;
use crate::auth::Caller;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use swb_api::QuietSink;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};
use tokio::sync::mpsc;

/// Most messages written to a worker's socket before a flush.
const WRITE_BATCH: usize = 64;

/// Largest message a worker may send (a call's output plus its header).
fn max_message(app: &App) -> usize {
    app.config.stdout_bytes as usize + (1 << 20)
}

pub async fn connect(
    State(app): State<Arc<App>>,
    caller: Caller,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = max_message(&app);
    // Small buffers: most sessions are idle most of the time, and a thousand
    // connected workers should not cost a thousand 128 KiB read buffers.
    upgrade
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(app, caller, socket))
}

async fn session(app: Arc<App>, caller: Caller, socket: WebSocket) {
    let (sink, stream) = socket.split();
    // The writer is woken by its own writes only, not by every frame the worker sends.
    let mut sink = QuietSink::new(sink);
    let (to_worker, mut outbox) = mpsc::unbounded_channel::<ServerMsg>();

    let writer = tokio::spawn(async move {
        // Whatever has queued up goes out in one write: under load, one flush (one
        // syscall) carries many calls. Before writing, the writer lets the tasks
        // that are ready run first, so the calls they are about to send join the
        // batch (without it, most writes carried one call).
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        'write: while outbox.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            tokio::task::yield_now().await;
            while batch.len() < WRITE_BATCH
                && let Ok(msg) = outbox.try_recv()
            {
                batch.push(msg);
            }
            for msg in batch.drain(..) {
                let refused = matches!(msg, ServerMsg::Refused { .. });
                if sink.feed(Message::Binary(msg.encode())).await.is_err() || refused {
                    break 'write;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    // The session reads the socket itself: a message is decoded and handled by
    // the task that waits for it, with no hand-over.
    let from_worker = futures_util::stream::unfold(stream, |mut stream| async move {
        loop {
            let frame = match stream.next().await? {
                Ok(Message::Binary(frame)) => frame,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Text(_)) => {
                    tracing::warn!("worker sent a text frame; closing its session");
                    return None;
                }
                Ok(Message::Close(_)) | Err(_) => return None,
            };
            return match WorkerMsg::decode(frame) {
                Ok(msg) => Some((msg, stream)),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame from worker; closing its session");
                    None
                }
            };
        }
    });
    app.worker_session(Some(caller), to_worker, Box::pin(from_worker), None)
        .await;
    let _ = writer.await;
}
