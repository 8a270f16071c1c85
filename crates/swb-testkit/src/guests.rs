//! Guest modules for tests, built from source (WAT) at test time. Each is a WASI
//! preview 1 command module, some of them hostile on purpose.

const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; write(fd, ptr, len), trapping on failure
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)) (then (unreachable))))
"#;

fn module(body: &str) -> Vec<u8> {
    importing("", body)
}

/// A module with more imports than the prelude's (imports come first).
fn importing(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {imports} {PRELUDE} {body})")).expect("fixture WAT is valid")
}

/// Copies stdin to stdout.
pub fn echo() -> Vec<u8> {
    module(
        r#"(func (export "_start")
            (block $done (loop $again
              (i32.store (i32.const 16) (i32.const 1024))
              (i32.store (i32.const 20) (i32.const 64000))
              (if (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)) (then (unreachable)))
              (br_if $done (i32.eqz (i32.load (i32.const 24))))
              (call $write (i32.const 1) (i32.const 1024) (i32.load (i32.const 24)))
              (br $again))))"#,
    )
}

/// Calls `function` through the platform (`swb.call`) with its own input, into a
/// buffer of `cap` bytes (a larger answer is fetched with `swb.result`), and writes
/// the answer to stdout; a failed call's error (JSON) goes to stderr, exit code 1.
pub fn calls(function: &str, cap: u32) -> Vec<u8> {
    assert!(cap <= 64_000, "the fixture's buffer holds 64,000 bytes");
    let escaped: String = function.bytes().map(|b| format!("\\{b:02x}")).collect();
    importing(
        r#"(import "swb" "call" (func $call (param i32 i32 i32 i32 i32 i32) (result i64)))
           (import "swb" "result" (func $result (param i32 i32) (result i32)))"#,
        &format!(
            r#"(data (i32.const 65100) "{escaped}")
           (func (export "_start") (local $n i32) (local $got i32) (local $ret i64) (local $len i32)
             ;; the input, read whole to 1024
             (block $done (loop $again
               (i32.store (i32.const 16) (i32.add (i32.const 1024) (local.get $n)))
               (i32.store (i32.const 20) (i32.sub (i32.const 64000) (local.get $n)))
               (if (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)) (then (unreachable)))
               (local.set $got (i32.load (i32.const 24)))
               (br_if $done (i32.eqz (local.get $got)))
               (local.set $n (i32.add (local.get $n) (local.get $got)))
               (br $again)))
             (local.set $ret (call $call (i32.const 65100) (i32.const {name_len})
               (i32.const 1024) (local.get $n) (i32.const 66000) (i32.const {cap})))
             (local.set $len (i32.wrap_i64 (select (local.get $ret) (i64.sub (i64.const 0) (local.get $ret))
               (i64.ge_s (local.get $ret) (i64.const 0)))))
             (if (i32.gt_u (local.get $len) (i32.const {cap}))
               (then (if (i32.ne (call $result (i32.const 66000) (i32.const 64000)) (local.get $len))
                 (then (unreachable)))))
             (if (i64.ge_s (local.get $ret) (i64.const 0))
               (then (call $write (i32.const 1) (i32.const 66000) (local.get $len)))
               (else
                 (call $write (i32.const 2) (i32.const 66000) (local.get $len))
                 (call $proc_exit (i32.const 1)))))"#,
            name_len = function.len()
        ),
    )
}

/// Writes its environment to stdout (`K=V` strings, each ending in a NUL byte).
pub fn prints_env() -> Vec<u8> {
    importing(
        r#"(import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "environ_get" (func $environ (param i32 i32) (result i32)))"#,
        r#"(func (export "_start")
             ;; count at 32, bytes at 36; pointers at 1024, strings at 8192
             (if (call $sizes (i32.const 32) (i32.const 36)) (then (unreachable)))
             (if (call $environ (i32.const 1024) (i32.const 8192)) (then (unreachable)))
             (call $write (i32.const 1) (i32.const 8192) (i32.load (i32.const 36))))"#,
    )
}

/// Writes its environment to stdout backwards (the last byte first): a test sees
/// what the guest received without the value itself appearing in the output.
pub fn prints_env_reversed() -> Vec<u8> {
    importing(
        r#"(import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "environ_get" (func $environ (param i32 i32) (result i32)))"#,
        r#"(func (export "_start") (local $n i32) (local $i i32)
             ;; count at 32, bytes at 36; pointers at 1024, strings at 8192, output at 65536
             (if (call $sizes (i32.const 32) (i32.const 36)) (then (unreachable)))
             (if (call $environ (i32.const 1024) (i32.const 8192)) (then (unreachable)))
             (local.set $n (i32.load (i32.const 36)))
             (block $done (loop $next
               (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
               (i32.store8
                 (i32.add (i32.const 65536) (local.get $i))
                 (i32.load8_u (i32.add (i32.const 8191) (i32.sub (local.get $n) (local.get $i)))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $next)))
             (call $write (i32.const 1) (i32.const 65536) (local.get $n)))"#,
    )
}

/// Writes `text` to stdout and exits 0.
pub fn prints(text: &str) -> Vec<u8> {
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    module(&format!(
        r#"(data (i32.const 2048) "{escaped}")
           (func (export "_start") (call $write (i32.const 1) (i32.const 2048) (i32.const {})))"#,
        text.len()
    ))
}

/// Writes "boom" to stderr and exits with code 3.
pub fn exits_3() -> Vec<u8> {
    module(
        r#"(data (i32.const 2048) "boom: something went wrong\n")
           (func (export "_start")
             (call $write (i32.const 2) (i32.const 2048) (i32.const 27))
             (call $proc_exit (i32.const 3)))"#,
    )
}

/// Never returns.
pub fn infinite_loop() -> Vec<u8> {
    module(r#"(func (export "_start") (loop $l (br $l)))"#)
}

/// Sleeps for `ms` milliseconds in one `poll_oneoff` (a clock subscription): a guest
/// waiting in a host call, where epoch interruption cannot reach it.
pub fn sleeps(ms: u64) -> Vec<u8> {
    let ns = ms * 1_000_000;
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          ;; subscription at 0: tag 0 (clock) at 8, clock id 1 (monotonic) at 16,
          ;; relative timeout at 24; the event goes to 64, the count to 128
          (func (export "_start")
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const {ns}))
            (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))
              (then (unreachable)))))"#
    ))
    .expect("fixture WAT is valid")
}

/// Reads its input, writes it to stderr, sleeps `ms` milliseconds, then writes it to
/// stdout: an echo that takes time and leaves its input in the call's record.
pub fn echo_after(ms: u64) -> Vec<u8> {
    let ns = ms * 1_000_000;
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          ;; the input at 1024 (up to 64000 bytes), its length in $len
          (func $emit (param $fd i32) (param $len i32)
            (i32.store (i32.const 200) (i32.const 1024))
            (i32.store (i32.const 204) (local.get $len))
            (if (call $write (local.get $fd) (i32.const 200) (i32.const 1) (i32.const 208))
              (then (unreachable))))
          (func (export "_start") (local $len i32)
            (block $done (loop $again
              (i32.store (i32.const 216) (i32.add (i32.const 1024) (local.get $len)))
              (i32.store (i32.const 220) (i32.sub (i32.const 64000) (local.get $len)))
              (if (call $read (i32.const 0) (i32.const 216) (i32.const 1) (i32.const 224))
                (then (unreachable)))
              (br_if $done (i32.eqz (i32.load (i32.const 224))))
              (local.set $len (i32.add (local.get $len) (i32.load (i32.const 224))))
              (br $again)))
            (call $emit (i32.const 2) (local.get $len))
            ;; subscription at 0: tag 0 (clock) at 8, clock id 1 (monotonic) at 16,
            ;; relative timeout at 24; the event goes to 64, the count to 128
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const {ns}))
            (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))
              (then (unreachable)))
            (call $emit (i32.const 1) (local.get $len))))"#
    ))
    .expect("fixture WAT is valid")
}

/// Prints what it finds where it writes (16 bytes: words in its first page, its
/// second page and a page it grows, then its data segment "init"), then overwrites
/// all four: a call that sees anything but zeros and "init" saw an earlier call.
pub fn leaves_traces() -> Vec<u8> {
    module(
        r#"(data (i32.const 3000) "init")
           (func (export "_start")
             (drop (memory.grow (i32.const 1)))
             (i32.store (i32.const 4096) (i32.load (i32.const 2048)))
             (i32.store (i32.const 4100) (i32.load (i32.const 65636)))
             (i32.store (i32.const 4104) (i32.load (i32.const 131172)))
             (i32.store (i32.const 4108) (i32.load (i32.const 3000)))
             (call $write (i32.const 1) (i32.const 4096) (i32.const 16))
             (i32.store (i32.const 2048) (i32.const -1))
             (i32.store (i32.const 65636) (i32.const -1))
             (i32.store (i32.const 131172) (i32.const -1))
             (i32.store (i32.const 3000) (i32.const -1)))"#,
    )
}

/// Grows memory a page at a time until refused, then traps.
pub fn memory_bomb() -> Vec<u8> {
    module(
        r#"(func (export "_start")
             (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
             (unreachable))"#,
    )
}

/// Recurses without end.
pub fn stack_overflow() -> Vec<u8> {
    module(
        r#"(func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))
           (func (export "_start") (drop (call $f (i32.const 0))))"#,
    )
}

/// Writes to stdout forever.
pub fn stdout_flood() -> Vec<u8> {
    module(
        r#"(func (export "_start") (loop $l (call $write (i32.const 1) (i32.const 1024) (i32.const 65536)) (br $l)))"#,
    )
}

/// Writes 100 KiB to stderr, ending in a known line, then succeeds with `{}`.
pub fn chatty_stderr() -> Vec<u8> {
    module(
        r#"(data (i32.const 2048) "{}") (data (i32.const 2100) "the last line\n")
           (func (export "_start") (local $i i32)
             (loop $l
               (call $write (i32.const 2) (i32.const 1024) (i32.const 1024))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
             (call $write (i32.const 2) (i32.const 2100) (i32.const 14))
             (call $write (i32.const 1) (i32.const 2048) (i32.const 2)))"#,
    )
}

/// Valid Wasm importing a host function that WASI preview 1 does not have.
pub fn bad_import() -> Vec<u8> {
    wat::parse_str(
        r#"(module (import "env" "open_socket" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .expect("fixture WAT is valid")
}

/// Valid Wasm without `_start` (a library, not a command).
pub fn no_start() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "run")))"#)
        .expect("fixture WAT is valid")
}
