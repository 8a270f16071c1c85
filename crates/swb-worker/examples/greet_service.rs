//! A remote function written with the Rust SDK: copy this file to start your own.
//!
//! ```sh
//! SWB_URL=http://127.0.0.1:7070 SWB_TOKEN=$(cat .swb/admin.token) \
//!   cargo run -p swb-worker --example greet_service
//! swb fn invoke admin/greet-remote '{"name":"Ada"}'
//! swb fn invoke admin/greet-remote-all '{"names":["Ada","Grace"]}'
//! ```
//!
//! The second function calls the first through the platform (`ctx.call`): a nested
//! call, declared, recorded under its caller (`swb inv tree`).
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

#[derive(Serialize, Deserialize, JsonSchema)]
struct GreetOut {
    greeting: String,
}

#[derive(Deserialize, JsonSchema)]
struct GreetAllIn {
    names: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let function = std::env::var("SWB_FUNCTION").unwrap_or_else(|_| "admin/greet-remote".into());
    let callee = function.clone();
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
        .function_calling(
            &format!("{function}-all"),
            "Greets everyone, one nested call each",
            &[&function],
            move |ctx, input: GreetAllIn| {
                let callee = callee.clone();
                async move {
                    let mut greetings = Vec::new();
                    for name in input.names {
                        let input = serde_json::json!({ "name": name }).to_string();
                        let out = ctx.call(&callee, input).await.map_err(|e| e.to_string())?;
                        let out: GreetOut =
                            serde_json::from_slice(&out).map_err(|e| e.to_string())?;
                        greetings.push(out.greeting);
                    }
                    Ok::<_, String>(greetings)
                }
            },
        )?
        .run_from_env()
        .await
}
