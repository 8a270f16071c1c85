//! The worker-protocol decoder, at both ends: any frame is a message or an error,
//! and a decoded message re-encodes to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use swb_api::protocol::{Frame, ServerMsg, WorkerMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WorkerMsg::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(WorkerMsg::decode(msg.encode()).unwrap(), msg);
    }
    if let Ok(msg) = ServerMsg::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(ServerMsg::decode(msg.encode()).unwrap(), msg);
    }
});
