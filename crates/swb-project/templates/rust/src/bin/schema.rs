//! Prints the interface's JSON Schemas, generated from the Rust types (`swb deploy`
//! runs it: `[schemas] command` in switchboard.toml).

fn main() {
    let schemas = serde_json::json!({
        "input": schemars::schema_for!({{ident}}::Input),
        "output": schemars::schema_for!({{ident}}::Output),
    });
    println!("{schemas:#}");
}
