//! The floors the platform is measured against, run as their own processes
//! (`swb bench ideal-echo|ideal-wasm`), and the SDK echo service of `invoke_remote`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use std::sync::Arc;
use swb_api::Digest;
use swb_api::protocol::CallLimits;
use swb_runtime::{CallRequest, Prepared, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

/// Binds with the same socket options as Switchboard's server (no Nagle delay).
async fn listen(
    addr: &str,
) -> anyhow::Result<axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)>> {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind(addr).await?;
    // The harness waits for this line, as it does for `swb up`.
    println!("listening on http://{}", listener.local_addr()?);
    Ok(listener.tap_io(nodelay as fn(&mut tokio::net::TcpStream)))
}

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// A bare axum server echoing the request body: one HTTP hop, nothing else.
pub async fn serve_ideal_echo(addr: &str) -> anyhow::Result<()> {
    // Any path: `swb bench invoke` can load it like a function.
    let app = Router::new().fallback(post(|body: Bytes| async move { body }));
    axum::serve(listen(addr).await?, app).await?;
    Ok(())
}

struct Wasm {
    runtime: Runtime,
    module: Arc<Prepared>,
}

/// A bare axum server running the echo module per request with the best wasmtime
/// setup (the same engine configuration Switchboard's workers use, the guest on the
/// request's own task): one HTTP hop and one instantiation, nothing else.
pub async fn serve_ideal_wasm(addr: &str) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let bytes = swb_testkit::guests::echo();
    let module = runtime
        .prepare(Digest::of(&bytes), &bytes)
        .map_err(anyhow::Error::msg)?;
    let state = Arc::new(Wasm { runtime, module });
    let app = Router::new()
        .fallback(post(|State(w): State<Arc<Wasm>>, body: Bytes| async move {
            let request = CallRequest {
                input: body,
                args: &[],
                env: &[],
                secrets: &[],
                limits: CallLimits {
                    timeout_ms: 10_000,
                    memory_mb: 128,
                    stdout_bytes: 8 << 20,
                    stderr_bytes: 64 << 10,
                },
                calls: None,
            };
            let result = w.runtime.call(&w.module, request).await;
            result.output.unwrap_or_default()
        }))
        .with_state(state);
    axum::serve(listen(addr).await?, app).await?;
    Ok(())
}

/// A remote echo function served with the Rust SDK (`SWB_URL`/`SWB_TOKEN`).
pub async fn serve_sdk_echo(function: &str) -> anyhow::Result<()> {
    swb_worker::sdk::Service::new("bench-echo")
        .capacity(64)
        .function(
            function,
            "echo (benchmark)",
            |v: serde_json::Value| async move { Ok::<_, String>(v) },
        )?
        .run_from_env()
        .await
}
