//! The worker protocol (version 1), spoken over a WebSocket at `/v1/worker/connect`
//! or, inside `swb up`, over an in-memory channel carrying the same messages.
//!
//! Every WebSocket message is one binary frame:
//!
//! ```text
//! u32 (big endian) header length | header: JSON object with a "type" tag | payload bytes
//! ```
//!
//! The payload carries the bulk data of the messages that have any (module bytes,
//! call input, call output) so that it is never re-encoded. See docs/protocol.md.

use crate::{ApiError, CacheStats, Digest, FunctionRef, Interface, SecretValues};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: u32 = 1;

/// Largest header a peer accepts; payloads are bounded by the server's size limits.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// What one hello may announce; a server refuses a hello past any of these, naming
/// the field. A worker announces at most `MAX_CACHED` of its cached modules.
pub mod hello_limits {
    pub const MAX_CAPACITY: u32 = 10_000;
    pub const MAX_NAME_BYTES: usize = 128;
    pub const MAX_LABELS: usize = 64;
    /// Per key and per value.
    pub const MAX_LABEL_BYTES: usize = 256;
    pub const MAX_RUNTIMES: usize = 8;
    pub const MAX_CACHED: usize = 10_000;
    pub const MAX_FUNCTIONS: usize = 1_000;
}

/// A call's id, unique within one worker session.
pub type CallId = u64;

/// Limits the worker enforces for one hosted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLimits {
    pub timeout_ms: u64,
    pub memory_mb: u32,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// What a hosted call runs: a module by digest, with the version's static args and env.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostedCall {
    pub digest: Digest,
    /// argv[0] is conventionally the function's name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub limits: CallLimits,
    /// The version declares functions it calls: its guest may use `swb.call`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub calls: bool,
    /// The secrets granted to the version, added to the guest's environment.
    #[serde(default, skip_serializing_if = "SecretValues::is_empty")]
    pub secrets: SecretValues,
}

/// A remote function a worker serves, announced in its hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedFunction {
    pub function: FunctionRef,
    pub interface: Interface,
    /// Publish this interface as a new version when it differs from the active one
    /// (otherwise a difference is refused with `conflict`).
    #[serde(default)]
    pub replace: bool,
    /// Calls may be retried once on another worker if this one is lost.
    #[serde(default)]
    pub idempotent: bool,
    /// Deadline per call; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The functions this one may call (nested calls); any other is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<FunctionRef>,
    /// The namespace's secrets its calls receive, by name (granting them takes the
    /// right to deploy the function).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Invocation records keep each call's input and output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_io: bool,
}

/// Messages from the server to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to `Hello`: the session is open.
    Welcome {
        protocol: u32,
        worker_id: String,
        heartbeat_ms: u64,
    },
    /// Module bytes (payload) for the worker to compile and keep ready.
    Code {
        digest: Digest,
        #[serde(skip)]
        module: Bytes,
    },
    /// Run a call; payload is its input (stdin). The hosted call is shared with the
    /// route that made it, never copied to be sent.
    Invoke {
        call: CallId,
        #[serde(flatten)]
        hosted: std::sync::Arc<HostedCall>,
        #[serde(skip)]
        input: Bytes,
    },
    /// Run a call of a remote function the worker serves; payload is its input.
    Call {
        call: CallId,
        function: FunctionRef,
        limits: CallLimits,
        /// The stored profile (settings) the caller named, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<serde_json::Value>,
        /// The id of the call's invocation record (what `swb inv show` takes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invocation: Option<String>,
        /// A token for this call's nested calls (`SWB_TOKEN`), valid while the call
        /// runs and only to call what its version declared.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<crate::token::Secret>,
        /// W3C `traceparent` of this call: its tree's trace, its own span.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
        /// The secrets granted to the function's version (`secrets`).
        #[serde(default, skip_serializing_if = "SecretValues::is_empty")]
        secrets: SecretValues,
        #[serde(skip)]
        input: Bytes,
    },
    /// Abandon a call (its caller went away or its deadline passed).
    Cancel { call: CallId },
    /// The answer to a `nested_call`; payload is the callee's output.
    NestedDone {
        nested: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ApiError>,
        #[serde(skip)]
        output: Bytes,
    },
    /// The server ends the session; the worker should not retry with the same settings.
    Refused { error: ApiError },
}

/// Messages from a worker to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// First message of a session.
    Hello {
        protocol: u32,
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        capacity: u32,
        /// Execution engines the worker offers, e.g. `["wasm"]`.
        runtimes: Vec<String>,
        /// Digests already compiled in the worker's disk cache.
        #[serde(default)]
        cached: Vec<Digest>,
        /// Remote functions this worker serves.
        #[serde(default)]
        functions: Vec<ServedFunction>,
    },
    /// The worker is stopping: send it no new calls; it finishes those it has.
    Draining,
    Heartbeat {
        in_flight: u32,
        code_cache: CacheStats,
    },
    /// Outcome of compiling pushed or fetched code.
    Compiled {
        digest: Digest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The worker lacks the code of a call it received ("no code" round trip).
    NeedCode { digest: Digest },
    /// A running call (a hosted guest's `swb.call`) calls a catalog function:
    /// `nested` names it in the answer (`nested_done`); payload is its input.
    NestedCall {
        call: CallId,
        nested: u64,
        function: FunctionRef,
        #[serde(skip)]
        input: Bytes,
    },
    /// A call finished; payload is its stdout on success.
    Done {
        call: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ApiError>,
        #[serde(default)]
        stderr_tail: String,
        duration_us: u64,
        #[serde(skip)]
        output: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its header length")]
    Truncated,
    #[error("frame header of {0} bytes exceeds the limit")]
    HeaderTooLarge(usize),
    #[error("bad frame header: {0}")]
    Header(#[from] serde_json::Error),
}

/// A message that travels as one frame.
pub trait Frame: Sized + Serialize + for<'de> Deserialize<'de> {
    fn payload(&self) -> Option<&Bytes>;
    fn payload_mut(&mut self) -> Option<&mut Bytes>;

    /// Reads a header. serde reads a tagged enum by first copying every field into
    /// an intermediate tree; the messages sent once per call override this to read
    /// a header that starts with their tag (as [`Frame::encode`] writes it) straight
    /// into their fields.
    fn from_header(header: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(header)
    }

    fn encode(&self) -> Bytes {
        // The header is written in place after room for its length, then the length.
        let payload = self.payload().map_or(&[][..], |p| &p[..]);
        let mut buf = BytesMut::with_capacity(4 + 256 + payload.len()).writer();
        buf.get_mut().put_u32(0);
        serde_json::to_writer(&mut buf, self).expect("protocol messages always serialize");
        let mut buf = buf.into_inner();
        let header_len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&header_len.to_be_bytes());
        buf.put_slice(payload);
        buf.freeze()
    }

    fn decode(frame: Bytes) -> Result<Self, FrameError> {
        let len_bytes: [u8; 4] = frame
            .get(..4)
            .ok_or(FrameError::Truncated)?
            .try_into()
            .expect("four bytes");
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_HEADER_BYTES {
            return Err(FrameError::HeaderTooLarge(len));
        }
        if frame.len() < 4 + len {
            return Err(FrameError::Truncated);
        }
        let mut msg = Self::from_header(&frame[4..4 + len])?;
        if let Some(p) = msg.payload_mut() {
            *p = frame.slice(4 + len..);
        }
        Ok(msg)
    }
}

impl Frame for ServerMsg {
    fn from_header(header: &[u8]) -> serde_json::Result<Self> {
        if !header.starts_with(br#"{"type":"invoke","#) {
            return serde_json::from_slice(header);
        }
        // The fields of `Invoke` with its hosted call flattened ("type" is ignored).
        #[derive(Deserialize)]
        struct Invoke {
            call: CallId,
            digest: Digest,
            args: Vec<String>,
            env: Vec<(String, String)>,
            limits: CallLimits,
            #[serde(default)]
            calls: bool,
            #[serde(default)]
            secrets: SecretValues,
        }
        let m: Invoke = serde_json::from_slice(header)?;
        Ok(Self::Invoke {
            call: m.call,
            hosted: std::sync::Arc::new(HostedCall {
                digest: m.digest,
                args: m.args,
                env: m.env,
                limits: m.limits,
                calls: m.calls,
                secrets: m.secrets,
            }),
            input: Bytes::new(),
        })
    }
    fn payload(&self) -> Option<&Bytes> {
        match self {
            Self::Code { module, .. } => Some(module),
            Self::Invoke { input, .. } | Self::Call { input, .. } => Some(input),
            Self::NestedDone { output, .. } => Some(output),
            _ => None,
        }
    }
    fn payload_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            Self::Code { module, .. } => Some(module),
            Self::Invoke { input, .. } | Self::Call { input, .. } => Some(input),
            Self::NestedDone { output, .. } => Some(output),
            _ => None,
        }
    }
}

impl Frame for WorkerMsg {
    fn from_header(header: &[u8]) -> serde_json::Result<Self> {
        if !header.starts_with(br#"{"type":"done","#) {
            return serde_json::from_slice(header);
        }
        // The fields of `Done` ("type" is ignored).
        #[derive(Deserialize)]
        struct Done {
            call: CallId,
            #[serde(default)]
            error: Option<ApiError>,
            #[serde(default)]
            stderr_tail: String,
            duration_us: u64,
        }
        let m: Done = serde_json::from_slice(header)?;
        Ok(Self::Done {
            call: m.call,
            error: m.error,
            stderr_tail: m.stderr_tail,
            duration_us: m.duration_us,
            output: Bytes::new(),
        })
    }
    fn payload(&self) -> Option<&Bytes> {
        match self {
            Self::Done { output, .. } => Some(output),
            Self::NestedCall { input, .. } => Some(input),
            _ => None,
        }
    }
    fn payload_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            Self::Done { output, .. } => Some(output),
            Self::NestedCall { input, .. } => Some(input),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn invoke_round_trips_with_binary_payload() {
        let msg = ServerMsg::Invoke {
            call: 7,
            hosted: std::sync::Arc::new(HostedCall {
                digest: Digest::of(b"m"),
                args: vec!["echo".into()],
                env: vec![("K".into(), "V".into())],
                limits: CallLimits {
                    timeout_ms: 10,
                    memory_mb: 1,
                    stdout_bytes: 2,
                    stderr_bytes: 3,
                },
                calls: false,
                secrets: SecretValues::new(vec![("API_KEY".into(), "s3cr3t".into())]),
            }),
            input: Bytes::from_static(b"\x00\xffraw"),
        };
        let frame = msg.encode();
        assert_eq!(ServerMsg::decode(frame).unwrap(), msg);
    }

    #[test]
    fn done_round_trips_and_header_is_tagged_json() {
        let msg = WorkerMsg::Done {
            call: 1,
            error: Some(ApiError::new(ErrorCode::Timeout, "slow")),
            stderr_tail: "oops".into(),
            duration_us: 5,
            output: Bytes::new(),
        };
        let frame = msg.encode();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&frame[4..4 + len]).unwrap();
        assert_eq!(header["type"], "done");
        assert_eq!(WorkerMsg::decode(frame).unwrap(), msg);
    }

    /// A frame whose header is not laid out as `encode` writes it (tag last, spaces)
    /// decodes to the same message as one that is.
    #[test]
    fn per_call_messages_decode_whatever_the_field_order() {
        let frame = |header: &str, payload: &[u8]| {
            let mut f = (header.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(header.as_bytes());
            f.extend_from_slice(payload);
            Bytes::from(f)
        };
        let d = Digest::of(b"m");
        let hosted = format!(
            r#""call":7,"digest":"{d}","args":["echo"],"env":[["K","V"]],"limits":{{"timeout_ms":10,"memory_mb":1,"stdout_bytes":2,"stderr_bytes":3}}"#
        );
        let fast = ServerMsg::decode(frame(&format!(r#"{{"type":"invoke",{hosted}}}"#), b"in"));
        let slow = ServerMsg::decode(frame(&format!(r#"{{{hosted}, "type": "invoke"}}"#), b"in"));
        assert_eq!(fast.unwrap(), slow.unwrap());
        let done = r#""call":1,"error":{"code":"timeout","message":"slow"},"stderr_tail":"x","duration_us":5"#;
        let fast = WorkerMsg::decode(frame(&format!(r#"{{"type":"done",{done}}}"#), b"out"));
        let slow = WorkerMsg::decode(frame(&format!(r#"{{{done},"type":"done"}}"#), b"out"));
        let fast = fast.unwrap();
        assert_eq!(fast, slow.unwrap());
        assert!(matches!(&fast, WorkerMsg::Done { output, .. } if output == &b"out"[..]));
        // A malformed per-call header is an error, not a panic.
        assert!(WorkerMsg::decode(frame(r#"{"type":"done","call":"x"}"#, b"")).is_err());
    }

    #[test]
    fn garbage_frames_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"\x00\x00",
            b"\x00\x00\x00\x09{}",
            b"\x00\x00\x00\x02{}",
            b"\xff\xff\xff\xff",
        ] {
            assert!(WorkerMsg::decode(Bytes::copy_from_slice(bad)).is_err());
        }
    }

    /// Valid frames of each kind of message, the starting points for mutations: the
    /// fuzz target's seed corpus (`cargo run -p swb-testkit --example fuzz_corpus`).
    pub(crate) fn sample_frames() -> Vec<Bytes> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/worker_protocol"
        );
        let frames: Vec<Bytes> = std::fs::read_dir(dir)
            .expect("the seed corpus")
            .map(|e| Bytes::from(std::fs::read(e.unwrap().path()).unwrap()))
            .collect();
        assert!(frames.len() >= 8, "seeds of every kind of message");
        frames
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = WorkerMsg::decode(Bytes::from(bytes.clone()));
            let _ = ServerMsg::decode(Bytes::from(bytes));
        }

        /// Valid frames with bytes changed, cut short or extended: every outcome is
        /// a message or an error, and a message decoded once re-encodes to itself.
        #[test]
        fn mutated_frames_decode_or_fail_without_panicking(
            pick in proptest::num::usize::ANY,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..8),
            cut in proptest::option::of(proptest::num::usize::ANY),
        ) {
            let frames = sample_frames();
            let mut frame = frames[pick % frames.len()].to_vec();
            for (at, byte) in edits {
                let at = at % frame.len();
                frame[at] = byte;
            }
            if let Some(cut) = cut {
                frame.truncate(cut % (frame.len() + 1));
            }
            if let Ok(msg) = WorkerMsg::decode(Bytes::from(frame.clone())) {
                proptest::prop_assert_eq!(WorkerMsg::decode(msg.encode()).unwrap(), msg);
            }
            if let Ok(msg) = ServerMsg::decode(Bytes::from(frame)) {
                proptest::prop_assert_eq!(ServerMsg::decode(msg.encode()).unwrap(), msg);
            }
        }

        #[test]
        fn hellos_round_trip(
            name in ".{0,64}",
            labels in proptest::collection::btree_map(".{0,16}", ".{0,16}", 0..8),
            capacity in proptest::num::u32::ANY,
        ) {
            let msg = WorkerMsg::Hello {
                protocol: PROTOCOL_VERSION,
                name,
                labels,
                capacity,
                runtimes: vec![],
                cached: vec![],
                functions: vec![],
            };
            proptest::prop_assert_eq!(WorkerMsg::decode(msg.encode()).unwrap(), msg);
        }
    }
}
