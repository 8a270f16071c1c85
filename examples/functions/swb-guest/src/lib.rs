//! Call other catalog functions from a hosted (Wasm) function, through the
//! platform: `swb_guest::call("alice/add", br#"{"a":1,"b":2}"#)`.
//!
//! The function's version must declare what it calls (`swb fn deploy --calls
//! alice/add`). The call is part of this call's tree: it acts for this call's
//! caller, has no more time than this call has left, and is cancelled with it.
//! Only this guest waits while it runs. Its failure is a value ([`Error`]), never a
//! trap. The ABI (module `swb`, functions `call` and `result`) is in
//! docs/guest-abi.md.

use serde::Deserialize;

/// A failed call, as the platform's error table describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Error {
    /// The error code: `forbidden`, `timeout`, `call_depth_exceeded`, …
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(target_family = "wasm")]
#[link(wasm_import_module = "swb")]
unsafe extern "C" {
    #[link_name = "call"]
    fn swb_call(
        name: *const u8,
        name_len: usize,
        input: *const u8,
        input_len: usize,
        out: *mut u8,
        out_cap: usize,
    ) -> i64;
    #[link_name = "result"]
    fn swb_result(out: *mut u8, out_cap: usize) -> i32;
}

/// The answer most calls fit in; a larger one is fetched whole, without calling again.
const FIRST_BUFFER: usize = 64 << 10;

/// Calls `function` (`namespace/name`) with `input`; returns its output.
#[cfg(target_family = "wasm")]
pub fn call(function: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; FIRST_BUFFER];
    // SAFETY: every pointer is valid for its length for the duration of the call.
    let ret = unsafe {
        swb_call(
            function.as_ptr(),
            function.len(),
            input.as_ptr(),
            input.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    let len = ret.unsigned_abs() as usize;
    if len > out.len() {
        out = vec![0u8; len];
        // SAFETY: as above; the host copies exactly `len` bytes.
        let copied = unsafe { swb_result(out.as_mut_ptr(), out.len()) };
        assert_eq!(copied as usize, len, "swb.result returned another length");
    }
    out.truncate(len);
    if ret >= 0 {
        Ok(out)
    } else {
        Err(serde_json::from_slice(&out).unwrap_or_else(|_| Error {
            code: "internal".into(),
            message: String::from_utf8_lossy(&out).into_owned(),
            details: serde_json::Value::Null,
        }))
    }
}

/// Outside WebAssembly there is no platform to call.
#[cfg(not(target_family = "wasm"))]
pub fn call(function: &str, _input: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error {
        code: "forbidden".into(),
        message: format!("{function}: nested calls need the Switchboard runtime"),
        details: serde_json::Value::Null,
    })
}
