//! A server that nobody scrapes must not keep every call's latency sample: the
//! recorder's pending histogram samples are folded into their buckets in the
//! background. Measured with an allocator that counts live bytes (its own test
//! binary, so no other test allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};
use swb_api::Outcome;
use swb_server::metrics::{FunctionMetrics, UPKEEP, handle};

struct Counting;

// A global allocator is unsafe to implement; this one only forwards to the system's.

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn latency_samples_do_not_pile_up_without_scrapes() {
    let _handle = handle();
    let metrics = FunctionMetrics::new(&"upkeep/test".parse().unwrap(), Default::default());
    let before = live();
    for _ in 0..200_000 {
        metrics.record(Outcome::OK, Duration::from_micros(50));
    }
    let pending = live() - before;
    // Each sample waits in the recorder first (at least its 8 bytes)…
    assert!(
        pending > 1_000_000,
        "only {pending} bytes pending after 200,000 samples"
    );
    // …and the upkeep folds them into the buckets; their memory is reclaimed as
    // calls go on (the recorder frees drained blocks once no reader can see them).
    let deadline = Instant::now() + UPKEEP * 3;
    while live() - before > 100_000 {
        metrics.record(Outcome::OK, Duration::from_micros(50));
        assert!(
            Instant::now() < deadline,
            "{} bytes still held {:?} after the samples",
            live() - before,
            UPKEEP * 3
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
