//! Test support: guest fixtures built from source, and a harness that runs the real
//! `swb` binary (server and worker processes on port 0) for integration tests.

pub mod guests;
mod process;
mod services;

pub use process::{START_DEADLINE, ServerProc, WorkerProc, connected, eventually};
pub use services::{TestDatabase, nats_url, postgres_url};

use bytes::Bytes;
use swb_api::{DeployRequest, DeployResponse, Digest, FunctionRef};
use swb_client::Client;

/// Uploads `module` if the server lacks it and deploys it with `configure` applied to
/// a default request.
pub async fn deploy(
    client: &Client,
    function: &str,
    module: Vec<u8>,
    configure: impl FnOnce(&mut DeployRequest),
) -> Result<DeployResponse, swb_client::ClientError> {
    let function: FunctionRef = function.parse().expect("valid function name");
    let digest = Digest::of(&module);
    if !client.missing(vec![digest]).await?.is_empty() {
        client
            .put_artefact(&digest, Bytes::from(module), |_| {})
            .await?;
    }
    let mut req: DeployRequest =
        serde_json::from_value(serde_json::json!({ "artefact": digest })).expect("valid request");
    configure(&mut req);
    client.deploy(&function, &req).await
}
