//! `GET /v1/worker/connect`: a worker's session over a WebSocket, one binary frame
//! per protocol message (see docs/protocol.md).

use crate::App;
use crate::auth::Caller;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};
use tokio::sync::mpsc;

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
    let (mut sink, mut stream) = socket.split();
    let (to_worker, mut outbox) = mpsc::unbounded_channel::<ServerMsg>();
    let (inbox, from_worker) = mpsc::channel::<WorkerMsg>(256);

    let writer = tokio::spawn(async move {
        while let Some(msg) = outbox.recv().await {
            let refused = matches!(msg, ServerMsg::Refused { .. });
            if sink.send(Message::Binary(msg.encode())).await.is_err() || refused {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let frame = match msg {
                Message::Binary(frame) => frame,
                Message::Close(_) => break,
                Message::Text(_) => {
                    tracing::warn!("worker sent a text frame; closing its session");
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match WorkerMsg::decode(frame) {
                Ok(msg) => {
                    if inbox.send(msg).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame from worker; closing its session");
                    break;
                }
            }
        }
    });
    app.worker_session(Some(caller), to_worker, from_worker)
        .await;
    reader.abort();
    let _ = writer.await;
}
