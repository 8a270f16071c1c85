//! A remote function written with the Rust SDK: copy this file to start your own.
//!
//! ```sh
//! SWB_URL=http://127.0.0.1:7070 SWB_TOKEN=$(cat .swb/admin.token) \
//!   cargo run -p swb-worker --example greet_service
//! swb fn invoke admin/greet-remote '{"name":"Ada"}'
//! ```
//!
//! The function's JSON Schemas are generated from the input and output types, so the
//! server rejects bad input before it reaches the handler. Set `SWB_FUNCTION` to serve
//! under another name (a namespace your token may `serve`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct GreetIn {
    /// Who to greet.
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize, JsonSchema)]
struct GreetOut {
    greeting: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let function = std::env::var("SWB_FUNCTION").unwrap_or_else(|_| "admin/greet-remote".into());
    swb_worker::sdk::Service::new("greet-service")
        .function(
            &function,
            "Greets someone, from a Rust worker",
            |input: GreetIn| async move {
                if input.name.trim().is_empty() {
                    return Err("name must not be blank");
                }
                let mark = if input.excited { "!" } else { "." };
                Ok(GreetOut {
                    greeting: format!("Hello, {}{mark}", input.name),
                })
            },
        )?
        .run_from_env()
        .await
}
