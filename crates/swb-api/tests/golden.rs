//! The shared golden files in `testdata/` (the Python SDK's tests check them too):
//! protocol frames both peers read and write byte for byte, and the error codes with
//! their HTTP statuses.

use bytes::Bytes;
use serde_json::Value;
use std::path::Path;
use swb_api::ErrorCode;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};

fn testdata(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn every_golden_frame_decodes_and_encodes_byte_for_byte() {
    let doc = testdata("protocol/frames.json");
    let frames = doc["frames"].as_array().unwrap();
    assert!(frames.len() >= 9);
    for f in frames {
        let (name, header, payload) = (
            f["name"].as_str().unwrap(),
            f["header"].as_str().unwrap(),
            f["payload"].as_str().unwrap(),
        );
        let mut bytes = (header.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload.as_bytes());
        let bytes = Bytes::from(bytes);
        let encoded = match f["from"].as_str().unwrap() {
            "worker" => WorkerMsg::decode(bytes.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .encode(),
            "server" => ServerMsg::decode(bytes.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .encode(),
            other => panic!("{name}: from {other}"),
        };
        assert_eq!(
            String::from_utf8_lossy(&encoded),
            String::from_utf8_lossy(&bytes),
            "{name}"
        );
    }
}

#[test]
fn the_error_codes_file_lists_every_code_with_its_status() {
    let doc = testdata("error-codes.json");
    let listed: Vec<(String, u64)> = doc
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let mut expected: Vec<(String, u64)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), u64::from(c.http_status())))
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    expected.sort();
    assert_eq!(listed_sorted, expected);
}
