//! The runtime against well-behaved and hostile guests.

use bytes::Bytes;
use std::time::Duration;
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

async fn run_with(
    rt: &Runtime,
    wasm: &[u8],
    input: &'static [u8],
    limits: CallLimits,
) -> CallResult {
    let module = rt
        .prepare(Digest::of(wasm), wasm)
        .expect("fixture compiles");
    let request = CallRequest {
        input: Bytes::from_static(input),
        args: &["fixture".into()],
        env: &[],
        secrets: &[],
        limits,
        calls: None,
    };
    rt.call(&module, request).await
}

async fn run(wasm: &[u8], input: &'static [u8]) -> CallResult {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    run_with(&rt, wasm, input, LIMITS).await
}

/// A runtime with room for one instance: every call reuses the same slot, so a slot
/// left busy or dirty by one call shows in the next.
fn one_slot_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 1,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn error_code(r: &CallResult) -> ErrorCode {
    r.output.as_ref().expect_err("call should fail").code
}

#[tokio::test]
async fn echo_returns_its_input() {
    let big: &'static [u8] = Box::leak(vec![b'x'; 300_000].into_boxed_slice());
    let r = run(&guests::echo(), big).await;
    assert_eq!(r.output.unwrap().len(), 300_000);
    assert_eq!(run(&guests::echo(), b"").await.output.unwrap(), &b""[..]);
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let r = run(&guests::infinite_loop(), b"").await;
    assert_eq!(error_code(&r), ErrorCode::Timeout);
    assert!(
        r.duration.as_millis() >= 500 && r.duration.as_millis() < 3000,
        "{:?}",
        r.duration
    );
}

/// A guest asleep in a host call cannot be reached by epoch interruption; the
/// deadline still stops it.
#[tokio::test]
async fn a_guest_asleep_in_a_host_call_stops_at_its_deadline() {
    let r = run(&guests::sleeps(60_000), b"").await;
    assert_eq!(error_code(&r), ErrorCode::Timeout);
    assert!(r.duration.as_secs() < 5, "{:?}", r.duration);
    // A short sleep is an ordinary call.
    assert!(run(&guests::sleeps(10), b"").await.output.is_ok());
}

/// Dropping a call stops it and frees its instance: with room for one instance, the
/// next call runs.
#[tokio::test]
async fn dropping_a_call_stops_it() {
    let rt = one_slot_runtime();
    let limits = CallLimits {
        timeout_ms: 60_000,
        ..LIMITS
    };
    for wasm in [guests::infinite_loop(), guests::sleeps(60_000)] {
        let call = run_with(&rt, &wasm, b"", limits);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call)
                .await
                .is_err(),
            "still running"
        );
        let r = run_with(&rt, &guests::echo(), b"next", LIMITS).await;
        assert_eq!(r.output.unwrap(), &b"next"[..]);
    }
}

/// A reused instance slot starts as a fresh instance: nothing a call wrote, in any
/// page and in memory it grew, is seen by the next call, and data segments are
/// restored.
#[tokio::test]
async fn a_call_never_sees_what_an_earlier_call_wrote() {
    let rt = one_slot_runtime();
    let wasm = guests::leaves_traces();
    let fresh = [&[0u8; 12][..], b"init"].concat();
    for call in 0..3 {
        let r = run_with(&rt, &wasm, b"", LIMITS).await;
        assert_eq!(r.output.unwrap(), fresh, "call {call}");
    }
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let r = run(&guests::memory_bomb(), b"").await;
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(err.details["limit"], "memory");
}

#[tokio::test]
async fn stack_overflow_is_a_function_error() {
    let r = run(&guests::stack_overflow(), b"").await;
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::FunctionError);
    assert!(
        err.details["trap"].as_str().unwrap().contains("stack"),
        "{err:?}"
    );
}

#[tokio::test]
async fn non_zero_exit_carries_code_and_stderr() {
    let r = run(&guests::exits_3(), b"").await;
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

#[tokio::test]
async fn stdout_flood_hits_the_stdout_limit() {
    let r = run(&guests::stdout_flood(), b"").await;
    let err = r.output.unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(err.details["limit"], "stdout");
}

#[tokio::test]
async fn stderr_keeps_its_tail_without_failing_the_call() {
    let r = run(&guests::chatty_stderr(), b"").await;
    assert_eq!(r.output.unwrap(), &b"{}"[..]);
    assert_eq!(r.stderr_tail.len(), 4096);
    assert!(r.stderr_tail.ends_with(b"the last line\n"));
}

#[tokio::test]
async fn hostile_guests_leave_the_runtime_serving() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for wasm in [
        guests::infinite_loop(),
        guests::memory_bomb(),
        guests::stack_overflow(),
        guests::stdout_flood(),
    ] {
        assert!(run_with(&rt, &wasm, b"", LIMITS).await.output.is_err());
        assert_eq!(
            run_with(&rt, &guests::echo(), b"still here", LIMITS)
                .await
                .output
                .unwrap(),
            &b"still here"[..]
        );
    }
}

/// A call beyond the runtime's instances waits for a running one to end, rather
/// than failing for want of a pooled slot.
#[tokio::test]
async fn calls_beyond_the_instances_wait_for_one_to_end() {
    const NAP_MS: u64 = 300;
    let rt = one_slot_runtime();
    let nap = guests::sleeps(NAP_MS);
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        run_with(&rt, &nap, b"", LIMITS),
        run_with(&rt, &nap, b"", LIMITS)
    );
    assert!(a.output.is_ok() && b.output.is_ok(), "{a:?} {b:?}");
    assert!(started.elapsed() >= Duration::from_millis(2 * NAP_MS));
    assert!(
        Runtime::new(RuntimeConfig {
            max_instances: 0,
            ..RuntimeConfig::default()
        })
        .is_err()
    );
}

#[tokio::test]
async fn prepare_rejects_bad_modules_and_wrong_digests() {
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

#[tokio::test]
async fn disk_cache_makes_a_restart_warm() {
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
    let request = CallRequest {
        input: Bytes::from_static(b"warm"),
        args: &[],
        env: &[],
        secrets: &[],
        limits: LIMITS,
        calls: None,
    };
    let r = rt.call(&module, request).await;
    assert_eq!(r.output.unwrap(), &b"warm"[..]);
}
