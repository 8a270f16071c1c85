//! The platform's own host functions, module `swb` (docs/guest-abi.md): a guest
//! calls another catalog function by name, bytes in and bytes out.
//!
//! `swb.call` suspends only the calling guest (an async host call on its own task),
//! and gives up the guest's share of the worker's CPUs while it waits, so that the
//! calls it waits on can run. A result larger than the guest's buffer stays here
//! until `swb.result` copies it, so nothing is called twice. The calls themselves
//! are made by whoever runs the guest ([`NestedCalls`]); a component-model version
//! of this interface would call the same trait.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use swb_api::{ApiError, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmparser::ValType;
use wasmtime::{Caller, Extern, Linker};

/// The import module of the host functions.
pub const MODULE: &str = "swb";
/// The host functions a guest may import from [`MODULE`].
pub const FUNCTIONS: &[&str] = &["call", "result"];

/// The type of a host function of [`FUNCTIONS`]: parameters, results, as written.
pub(crate) fn signature(name: &str) -> (&'static [ValType], &'static [ValType], &'static str) {
    use ValType::{I32, I64};
    match name {
        "call" => (
            &[I32, I32, I32, I32, I32, I32],
            &[I64],
            "(func (param i32 i32 i32 i32 i32 i32) (result i64))",
        ),
        _ => (&[I32, I32], &[I32], "(func (param i32 i32) (result i32))"),
    }
}

/// Makes the catalog calls of the guests of one call.
pub trait NestedCalls: Send + Sync {
    fn call(
        &self,
        function: String,
        input: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, ApiError>> + Send>>;
}

/// What one call's host functions hold.
pub(crate) struct HostState {
    pub calls: Option<Arc<dyn NestedCalls>>,
    /// A result too large for the guest's buffer, until `swb.result` takes it.
    pub pending: Option<Vec<u8>>,
    /// The guest's share of the CPUs: held while it runs, given up while it waits
    /// in `swb.call`.
    pub running: Option<OwnedSemaphorePermit>,
    pub cpus: Arc<Semaphore>,
}

/// Anything that has a call's host state.
pub(crate) trait HasHost: Send + 'static {
    fn host(&mut self) -> &mut HostState;
}

/// A guest's error: a trap, since only a broken guest passes such arguments.
fn bad(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("swb.call: {what}"))
}

fn read<T: HasHost>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let memory = match caller.get_export("memory") {
        Some(Extern::Memory(m)) => m,
        _ => return Err(bad("the module exports no memory")),
    };
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(&*caller)
        .get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad("a pointer outside the guest's memory"))
}

fn write<T: HasHost>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let memory = match caller.get_export("memory") {
        Some(Extern::Memory(m)) => m,
        _ => return Err(bad("the module exports no memory")),
    };
    memory
        .write(&mut *caller, ptr as u32 as usize, bytes)
        .map_err(|_| bad("a buffer outside the guest's memory"))
}

/// Adds `swb.call` and `swb.result` to a linker.
pub(crate) fn add_to_linker<T: HasHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        MODULE,
        "call",
        |mut caller: Caller<'_, T>,
         (name_ptr, name_len, in_ptr, in_len, out_ptr, out_cap): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let name = read(&mut caller, name_ptr, name_len)?;
                let input = Bytes::from(read(&mut caller, in_ptr, in_len)?);
                let result = match (String::from_utf8(name), caller.data_mut().host().calls.clone()) {
                    (Err(_), _) => Err(ApiError::invalid_input("the function's name is not UTF-8")),
                    (Ok(_), None) => Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "this call may make no nested calls: its version declares none (--calls)",
                    )),
                    (Ok(name), Some(calls)) => {
                        // Waiting is not running: the CPU share goes to others meanwhile.
                        let host = caller.data_mut().host();
                        drop(host.running.take());
                        let cpus = host.cpus.clone();
                        let result = calls.call(name, input).await;
                        let permit = cpus.acquire_owned().await.expect("never closed");
                        caller.data_mut().host().running = Some(permit);
                        result
                    }
                };
                let (code, bytes) = match result {
                    Ok(out) => (out.len() as i64, out.to_vec()),
                    Err(e) => {
                        let json = serde_json::to_vec(&e).expect("errors serialize");
                        (-(json.len() as i64), json)
                    }
                };
                if bytes.len() <= out_cap as u32 as usize {
                    write(&mut caller, out_ptr, &bytes)?;
                    caller.data_mut().host().pending = None;
                } else {
                    caller.data_mut().host().pending = Some(bytes);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "result",
        |mut caller: Caller<'_, T>, ptr: i32, cap: i32| -> wasmtime::Result<i32> {
            let Some(pending) = caller.data_mut().host().pending.take() else {
                return Ok(-1);
            };
            if pending.len() > cap as u32 as usize {
                caller.data_mut().host().pending = Some(pending);
                return Ok(-1);
            }
            write(&mut caller, ptr, &pending)?;
            Ok(pending.len() as i32)
        },
    )?;
    Ok(())
}
