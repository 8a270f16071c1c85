//! {{function}}: what the function does, as a plain Rust function of typed values.
//! Its input and output types are its interface: `swb deploy` publishes their JSON
//! Schemas (printed by `src/bin/schema.rs`), and the platform checks every call
//! against them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a call takes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Who to greet.
    pub name: String,
}

/// What a call returns.
#[derive(Debug, PartialEq, Serialize, JsonSchema)]
pub struct Output {
    pub greeting: String,
}

pub fn handle(input: Input) -> Output {
    Output {
        greeting: format!("Hello, {}.", input.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name() {
        let input: Input = serde_json::from_str(r#"{"name":"Ada"}"#).unwrap();
        assert_eq!(handle(input).greeting, "Hello, Ada.");
    }
}
