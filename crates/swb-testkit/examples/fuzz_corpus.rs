//! Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/) from sources
//! in the repository: protocol messages built here, modules from the test fixtures'
//! WAT, tokens in their format. Run it again when those change:
//! `cargo run -p swb-testkit --example fuzz_corpus`.

use bytes::Bytes;
use std::path::Path;
use swb_api::protocol::{Frame, PROTOCOL_VERSION, ServerMsg, WorkerMsg};
use swb_api::{ApiError, Digest, ErrorCode};
use swb_testkit::guests;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let digest = Digest::of(b"m");
    let worker = [
        WorkerMsg::Hello {
            protocol: PROTOCOL_VERSION,
            name: "w1".into(),
            labels: [("gpu".to_owned(), "a100".to_owned())].into(),
            capacity: 8,
            runtimes: vec!["wasm".into()],
            cached: vec![digest],
            functions: vec![],
        },
        WorkerMsg::NeedCode { digest },
        WorkerMsg::Compiled {
            digest,
            error: None,
        },
        WorkerMsg::Done {
            call: 1,
            error: Some(ApiError::new(ErrorCode::Timeout, "slow")),
            stderr_tail: "log".into(),
            duration_us: 5,
            output: Bytes::from_static(b"{\"ok\":true}"),
        },
        WorkerMsg::Draining,
    ];
    for (i, msg) in worker.iter().enumerate() {
        write("worker_protocol", &format!("worker-{i}"), &msg.encode());
    }
    let server = [
        ServerMsg::Cancel { call: 3 },
        ServerMsg::Code {
            digest,
            module: Bytes::from(guests::echo()),
        },
        ServerMsg::Refused {
            error: ApiError::new(ErrorCode::Conflict, "no"),
        },
    ];
    for (i, msg) in server.iter().enumerate() {
        write("worker_protocol", &format!("server-{i}"), &msg.encode());
    }
    let modules = [
        ("echo.wasm", guests::echo()),
        ("no_start.wasm", guests::no_start()),
        ("bad_import.wasm", guests::bad_import()),
        ("sleeps.wasm", guests::sleeps(5)),
    ];
    for (name, module) in modules {
        write("module_inspector", name, &module);
    }
    for (i, token) in [
        "swb_0123456789abcdef_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "swb__",
        "swb_a_b_c",
    ]
    .iter()
    .enumerate()
    {
        write("token_parser", &format!("token-{i}"), token.as_bytes());
    }
}
