//! `GET /v1/worker/connect`: a worker's session over a WebSocket, one binary frame
//! per protocol message (see docs/protocol.md).

use crate::App;
use crate::auth::Caller;
use crate::error::AppError;
use crate::hub::refuse;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::StreamExt;
use std::sync::Arc;
use swb_api::ApiError;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};
use swb_api::writer::{OpenCalls, write_batches};
use tokio::sync::mpsc;

/// Largest message a worker may send (a call's output plus its header).
fn max_message(app: &App) -> usize {
    app.config.stdout_bytes as usize + (1 << 20)
}

pub async fn connect(
    State(app): State<Arc<App>>,
    caller: Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid_input(format!(
            "/v1/worker/connect is a WebSocket for workers: {}",
            e.body_text()
        ))
    })?;
    let max = max_message(&app);
    // Small buffers: most sessions are idle most of the time, and a thousand
    // connected workers should not cost a thousand 128 KiB read buffers.
    Ok(upgrade
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(app, caller, socket)))
}

async fn session(app: Arc<App>, caller: Caller, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let (to_worker, outbox) = mpsc::unbounded_channel::<ServerMsg>();
    let open = Arc::new(OpenCalls::default());
    let writer = tokio::spawn({
        let open = open.clone();
        async move { write_batches(outbox, sink, &open, Message::Binary).await }
    });
    // The session reads the socket itself: a message is decoded and handled by
    // the task that waits for it, with no hand-over.
    let from_worker = futures_util::stream::unfold(
        (stream, open, to_worker.clone()),
        |(mut stream, open, to_worker)| async move {
            loop {
                let frame = match stream.next().await? {
                    Ok(Message::Binary(frame)) => frame,
                    Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                    Ok(Message::Text(_)) => {
                        refuse(
                            &to_worker,
                            ApiError::invalid_input(
                                "the worker sent a text frame; protocol messages are binary",
                            ),
                        );
                        return None;
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                };
                return match WorkerMsg::decode(frame) {
                    Ok(msg) => {
                        open.worker_msg(&msg);
                        Some((msg, (stream, open, to_worker)))
                    }
                    Err(e) => {
                        refuse(
                            &to_worker,
                            ApiError::invalid_input(format!(
                                "the worker sent an undecodable message: {e}"
                            )),
                        );
                        None
                    }
                };
            }
        },
    );
    app.worker_session(Some(caller), to_worker, Box::pin(from_worker), None)
        .await;
    let _ = writer.await;
}
