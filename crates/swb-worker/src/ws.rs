//! A remote worker's connection loop: dial `/v1/worker/connect`, run a session, and
//! when the server goes away, fail over to the next server given (replicas of one
//! cluster), backing off exponentially with jitter once every server has failed.

use crate::{SessionEnd, Worker};
use futures_util::StreamExt;
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};
use swb_api::writer::{OpenCalls, write_batches};
use swb_api::{ApiError, ErrorBody};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// Largest frame accepted from the server (module bytes or a call's input).
const MAX_MESSAGE: usize = 256 << 20;

/// Exponential backoff with equal jitter: each delay is half the current step plus a
/// random part of the other half, and the step doubles up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            step: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let half = self.step / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=half);
        self.step = (self.step * 2).min(self.max);
        half + jitter
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the server refused this worker: {0}")]
    Refused(ApiError),
    #[error("bad server URL {0:?}: use http://host:port")]
    BadUrl(String),
    #[error("no server URL given")]
    NoServer,
}

/// Serves until `shutdown` resolves, connected to one of `servers` at a time. A lost
/// or failed connection moves on to the next server at once; after a whole round of
/// failures it waits (`backoff`) before the next round. A refusal (bad token,
/// protocol mismatch) ends the loop with an error.
pub async fn run(
    worker: &Worker,
    servers: &[String],
    token: &str,
    mut backoff: Backoff,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let urls = servers
        .iter()
        .map(|s| ws_url(s))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(RunError::NoServer);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Failures since the last session that was welcomed.
    let mut failures = 0usize;
    let mut turn = 0usize;
    loop {
        let (url, server) = (&urls[turn % urls.len()], &servers[turn % urls.len()]);
        turn += 1;
        let attempt = async {
            match connect(url, token).await {
                Ok(socket) => Ok(serve(worker, socket, server, stopped(stop_rx.clone())).await),
                Err(e) => Err(e),
            }
        };
        let mut attempt = std::pin::pin!(attempt);
        let result = tokio::select! {
            r = &mut attempt => r,
            _ = &mut shutdown => {
                // Let the session drain: it stops taking calls and ends when the
                // calls it has are answered.
                let _ = stop_tx.send(true);
                let _ = attempt.await;
                return Ok(());
            }
        };
        failures += 1;
        match result {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Refused(e)) | Err(ConnectError::Refused(e)) => {
                return Err(RunError::Refused(e));
            }
            Ok(SessionEnd::Closed { welcomed }) => {
                if welcomed {
                    backoff.reset();
                    failures = 0;
                }
                tracing::warn!(server, "lost the connection to the server");
            }
            Err(ConnectError::Failed(e)) => {
                tracing::warn!(server, error = %e, "cannot reach the server");
            }
        }
        // The next server is tried at once until a whole round has failed.
        if failures == 0 || !failures.is_multiple_of(urls.len()) {
            continue;
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

fn ws_url(server: &str) -> Result<String, RunError> {
    let base = server.trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| RunError::BadUrl(server.into()))?;
    Ok(format!("{rest}/v1/worker/connect"))
}

enum ConnectError {
    Refused(ApiError),
    Failed(String),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Failed(e.to_string()))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnectError::Failed("the token contains invalid characters".into()))?;
    request.headers_mut().insert("authorization", auth);
    let config = WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) if response.status().is_client_error() => {
            let error = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok())
                .map(|b| b.error)
                .unwrap_or_else(|| {
                    ApiError::new(
                        swb_api::ErrorCode::Unauthenticated,
                        format!("server answered {}", response.status()),
                    )
                });
            Err(ConnectError::Refused(error))
        }
        Err(e) => Err(ConnectError::Failed(e.to_string())),
    }
}

/// Bridges a WebSocket to a session's channels.
async fn serve(
    worker: &Worker,
    socket: Socket,
    server: &str,
    shutdown: impl Future<Output = ()>,
) -> SessionEnd {
    let (sink, stream) = socket.split();
    let (out, outbox) = mpsc::channel::<WorkerMsg>(256);
    let open = Arc::new(OpenCalls::default());
    let writer = tokio::spawn({
        let open = open.clone();
        async move { write_batches(outbox, sink, &open, Message::Binary).await }
    });
    // The session reads the socket itself (no hand-over between tasks).
    let from_server =
        futures_util::stream::unfold((stream, open), |(mut stream, open)| async move {
            loop {
                match stream.next().await? {
                    Ok(Message::Binary(frame)) => match ServerMsg::decode(frame) {
                        Ok(msg) => {
                            open.server_msg(&msg);
                            return Some((msg, (stream, open)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable frame from the server");
                            return None;
                        }
                    },
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        });
    let end = worker
        .session(out, std::pin::pin!(from_server), shutdown, Some(server))
        .await;
    let _ = writer.await;
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[5] >= Duration::from_millis(500) && delays[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn urls_map_to_the_connect_endpoint() {
        assert_eq!(
            ws_url("http://127.0.0.1:7070/").unwrap(),
            "ws://127.0.0.1:7070/v1/worker/connect"
        );
        assert!(ws_url("127.0.0.1:7070").is_err());
    }
}
