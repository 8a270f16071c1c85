//! A typed function. Switchboard checks the input against `input.schema.json` before
//! the call and the output against `output.schema.json` after it, so the code can
//! trust its input's shape. Logs go to stderr and show up in `swb logs`.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn main() {
    let input: Input = serde_json::from_reader(std::io::stdin()).unwrap_or_else(|e| {
        eprintln!("bad input: {e}");
        std::process::exit(2);
    });
    eprintln!("greeting {}", input.name);
    let mark = if input.excited { "!" } else { "." };
    let output = Output {
        greeting: format!("Hello, {}{mark}", input.name),
    };
    serde_json::to_writer(std::io::stdout(), &output).expect("write stdout");
}
