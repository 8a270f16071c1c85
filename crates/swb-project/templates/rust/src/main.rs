//! The module's entry point (a WASI command): the input JSON on stdin, the output
//! JSON on stdout; what it writes to stderr is kept as the call's log.

use std::io::Read;

fn main() {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .expect("reading stdin");
    // The platform has checked the input against the schema already.
    let input = match serde_json::from_slice(&input) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("bad input: {e}");
            std::process::exit(2);
        }
    };
    let output = {{ident}}::handle(input);
    serde_json::to_writer(std::io::stdout().lock(), &output).expect("writing stdout");
}
