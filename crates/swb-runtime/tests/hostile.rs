//! The runtime against well-behaved and hostile guests.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use swb_api::protocol::CallLimits;
use swb_api::{Digest, ErrorCode};
use swb_runtime::{CallRequest, CallResult, Runtime, RuntimeConfig};
use swb_testkit::guests;

const LIMITS: CallLimits = CallLimits {
    timeout_ms: 500,
    memory_mb: 32,
    stdout_bytes: 1 << 20,
    stderr_bytes: 4096,
};

fn run_with(
    rt: &Runtime,
    wasm: &[u8],
    input: &'static [u8],
    limits: CallLimits,
    cancel: Option<Arc<AtomicBool>>,
) -> CallResult {
    let module = rt
        .prepare(Digest::of(wasm), wasm)
        .expect("fixture compiles");
    rt.call(
        &module,
        CallRequest {
            input: Bytes::from_static(input),
            args: &["fixture".into()],
            env: &[],
            limits,
            cancel,
        },
    )
}

fn run(wasm: &[u8], input: &'static [u8]) -> CallResult {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    run_with(&rt, wasm, input, LIMITS, None)
}

fn error_code(r: &CallResult) -> ErrorCode {
    r.output.as_ref().expect_err("call should fail").code
}

#[test]
fn echo_returns_its_input() {
    let big: &'static [u8] = Box::leak(vec![b'x'; 300_000].into_boxed_slice());
    let r = run(&guests::echo(), big);
    assert_eq!(r.output.unwrap().len(), 300_000);
    assert_eq!(run(&guests::echo(), b"").output.unwrap(), &b""[..]);
}

#[test]
fn infinite_loop_times_out() {
    let r = run(&guests::infinite_loop(), b"");
    assert_eq!(error_code(&r), ErrorCode::Timeout);
    assert!(
        r.duration.as_millis() >= 500 && r.duration.as_millis() < 3000,
        "{:?}",
        r.duration
    );
}

#[test]
fn cancel_stops_a_running_call() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let limits = CallLimits {
        timeout_ms: 60_000,
        ..LIMITS
    };
    let r = run_with(&rt, &guests::infinite_loop(), b"", limits, Some(cancel));
    stopper.join().unwrap();
    let err = r.output.unwrap_err();
    assert_eq!(err.message, "call cancelled");
    assert!(r.duration.as_secs() < 5);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let r = run(&guests::memory_bomb(), b"");
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(err.details["limit"], "memory");
}

#[test]
fn stack_overflow_is_a_function_error() {
    let r = run(&guests::stack_overflow(), b"");
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::FunctionError);
    assert!(
        err.details["trap"].as_str().unwrap().contains("stack"),
        "{err:?}"
    );
}

#[test]
fn non_zero_exit_carries_code_and_stderr() {
    let r = run(&guests::exits_3(), b"");
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::FunctionError);
    assert_eq!(err.details["exit_code"], 3);
    assert!(
        err.details["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("boom")
    );
    assert!(String::from_utf8_lossy(&r.stderr_tail).contains("boom"));
}

#[test]
fn stdout_flood_hits_the_stdout_limit() {
    let r = run(&guests::stdout_flood(), b"");
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(err.details["limit"], "stdout");
}

#[test]
fn stderr_keeps_its_tail_without_failing_the_call() {
    let r = run(&guests::chatty_stderr(), b"");
    assert_eq!(r.output.unwrap(), &b"{}"[..]);
    assert_eq!(r.stderr_tail.len(), 4096);
    assert!(r.stderr_tail.ends_with(b"the last line\n"));
}

#[test]
fn hostile_guests_leave_the_runtime_serving() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for wasm in [
        guests::infinite_loop(),
        guests::memory_bomb(),
        guests::stack_overflow(),
        guests::stdout_flood(),
    ] {
        assert!(run_with(&rt, &wasm, b"", LIMITS, None).output.is_err());
        assert_eq!(
            run_with(&rt, &guests::echo(), b"still here", LIMITS, None)
                .output
                .unwrap(),
            &b"still here"[..]
        );
    }
}

#[test]
fn prepare_rejects_bad_modules_and_wrong_digests() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let bad = guests::bad_import();
    assert!(
        rt.prepare(Digest::of(&bad), &bad)
            .unwrap_err()
            .contains("env::open_socket")
    );
    let echo = guests::echo();
    assert!(
        rt.prepare(Digest::of(b"other"), &echo)
            .unwrap_err()
            .contains("do not hash")
    );
}

#[test]
fn disk_cache_makes_a_restart_warm() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeConfig::default()
    };
    let echo = guests::echo();
    let digest = Digest::of(&echo);
    {
        let rt = Runtime::new(config.clone()).unwrap();
        assert!(rt.lookup(&digest).is_none());
        rt.prepare(digest, &echo).unwrap();
        assert_eq!(rt.stats().compiles, 1);
        assert!(rt.lookup(&digest).is_some());
        assert_eq!(rt.stats().memory_hits, 1);
    }
    let rt = Runtime::new(config).unwrap();
    assert_eq!(rt.cached_on_disk(), vec![digest]);
    let module = rt.lookup(&digest).expect("loaded from disk");
    assert_eq!(rt.stats().compiles, 0);
    assert_eq!(rt.stats().disk_hits, 1);
    let r = rt.call(
        &module,
        CallRequest {
            input: Bytes::from_static(b"warm"),
            args: &[],
            env: &[],
            limits: LIMITS,
            cancel: None,
        },
    );
    assert_eq!(r.output.unwrap(), &b"warm"[..]);
}
