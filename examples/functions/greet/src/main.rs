//! A typed function. Switchboard checks the input against `input.schema.json` before
//! the call and the output against `output.schema.json` after it, so the code can
//! trust its input's shape. Logs go to stderr and show up in `swb logs`. A stored
//! profile named on the call arrives as the environment variable `SWB_PROFILE`:
//! `{"salutation":"Hi"}` changes the greeting.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Deserialize, Default)]
struct Profile {
    salutation: Option<String>,
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
    let profile: Profile = std::env::var("SWB_PROFILE")
        .ok()
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default();
    let salutation = profile.salutation.as_deref().unwrap_or("Hello");
    let mark = if input.excited { "!" } else { "." };
    let output = Output {
        greeting: format!("{salutation}, {}{mark}", input.name),
    };
    serde_json::to_writer(std::io::stdout(), &output).expect("write stdout");
}
