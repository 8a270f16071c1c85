//! The README's tour with the real example functions: built from source for
//! wasm32-wasip1 (as the README says), deployed with their schemas, and called.

mod common;

use common::{Cluster, assert_code};
use std::path::PathBuf;
use std::process::Command;
use swb_api::ErrorCode;
use swb_testkit::deploy;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/functions")
}

fn build_examples() -> PathBuf {
    let dir = examples();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        // Where the README says the modules are, whatever CARGO_TARGET_DIR says.
        .arg("--target-dir")
        .arg(dir.join("target"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the examples failed (is the wasm32-wasip1 target installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("target/wasm32-wasip1/release")
}

fn schema(path: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(examples().join(path)).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_functions_run_as_documented() {
    let built = build_examples();
    let c = Cluster::start(true, &[]).await;

    let echo = std::fs::read(built.join("echo.wasm")).unwrap();
    deploy(&c.client, "admin/echo", echo, |_| {}).await.unwrap();
    let out = c
        .client
        .invoke(&"admin/echo".parse().unwrap(), None, "any bytes at all")
        .await
        .unwrap();
    assert_eq!(&out.output[..], b"any bytes at all");

    let greet = std::fs::read(built.join("greet.wasm")).unwrap();
    deploy(&c.client, "admin/greet", greet, |r| {
        r.interface.input = Some(schema("greet/input.schema.json"));
        r.interface.output = Some(schema("greet/output.schema.json"));
    })
    .await
    .unwrap();
    let greet = "admin/greet".parse().unwrap();
    let out = c
        .client
        .invoke(&greet, None, r#"{"name":"Ada"}"#)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.output).unwrap();
    assert_eq!(value, serde_json::json!({ "greeting": "Hello, Ada." }));
    let e = c
        .client
        .invoke(&greet, None, r#"{"name":""}"#)
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::InvalidInput);
    assert_eq!(e.details["pointer"], "/name");

    // A stored profile reaches the hosted function as SWB_PROFILE.
    let salutation = serde_json::json!({ "salutation": "Hi" });
    c.client
        .put_profile(&greet, "casual", &salutation)
        .await
        .unwrap();
    let out = c
        .client
        .invoke_with_profile(&greet, "casual", r#"{"name":"Ada"}"#)
        .await
        .unwrap();
    assert_eq!(&out.output[..], br#"{"greeting":"Hi, Ada."}"#);

    // A hosted function calling another through the platform (swb-guest).
    let all = std::fs::read(built.join("greet-all.wasm")).unwrap();
    deploy(&c.client, "admin/greet-all", all, |r| {
        r.calls = vec!["admin/greet".parse().unwrap()];
    })
    .await
    .unwrap();
    let out = c
        .client
        .invoke(
            &"admin/greet-all".parse().unwrap(),
            None,
            r#"{"names":["Ada","Grace"]}"#,
        )
        .await
        .unwrap();
    assert_eq!(&out.output[..], br#"["Hello, Ada.","Hello, Grace."]"#);
    // … and a remote one, as the README shows (the greeter named by GREETER).
    let script = r#"import json, sys
print(json.dumps({"greeting": "Hi, " + json.load(sys.stdin)["name"] + "."}))"#;
    let _hi = c.serve("hi", "admin/hi", &[], &["python3", "-c", script]);
    swb_testkit::connected(&c.client, "hi").await;
    let all = std::fs::read(built.join("greet-all.wasm")).unwrap();
    deploy(&c.client, "admin/greet-all-hi", all, |r| {
        r.calls = vec!["admin/hi".parse().unwrap()];
        r.env.insert("GREETER".into(), "admin/hi".into());
    })
    .await
    .unwrap();
    let out = c
        .client
        .invoke(
            &"admin/greet-all-hi".parse().unwrap(),
            None,
            r#"{"names":["Ada"]}"#,
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.output), r#"["Hi, Ada."]"#);
    // A nested call failing (here: its input refused) is the guest's to report.
    let e = c
        .client
        .invoke(
            &"admin/greet-all".parse().unwrap(),
            None,
            r#"{"names":[""]}"#,
        )
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::FunctionError);
    assert!(
        e.details["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("invalid_input"),
        "{e:?}"
    );
}
