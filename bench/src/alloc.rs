//! Allocation counters, from two well-kept crates rather than a hand-written (and `unsafe`)
//! `GlobalAlloc`:
//!
//! - [`densa_alloc`] counts allocation calls **per thread**, so concurrent tests and the
//!   helper threads of some runtimes (async-io's driver thread) do not disturb a count taken
//!   on the benchmark's own thread; the smoke test checks these counts exactly.
//! - [`stats_alloc`], wrapped by it, tracks allocated and freed bytes, from which the live
//!   heap bytes follow. Its counters are process-wide: in a benchmark child process only the
//!   measured thread does work, so they describe that thread.
//!
//! The library does **not** install this allocator: a global allocator cannot be switched
//! off at run time without a hand-written (and `unsafe`) `GlobalAlloc`, and this one costs
//! on every allocation (a thread-local update and two `SeqCst` atomic adds in `alloc`, the
//! same in `dealloc`; `--overhead` measures it). So the counting binary (`trellis-bench`,
//! the harness, which runs the counting pass) and the smoke test install it with
//! `#[global_allocator]`, and the timing binary (`trellis-bench-timing`) does not: its
//! allocator is the system's, unwrapped.

use densa_alloc::CountingAllocator;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

/// The counting global allocator: the system allocator, instrumented by `stats_alloc`
/// (bytes) inside `densa_alloc` (per-thread calls).
pub type Counting = CountingAllocator<&'static StatsAlloc<System>>;

/// The allocator value to install with `#[global_allocator]`.
pub const COUNTING: Counting = CountingAllocator::new(&INSTRUMENTED_SYSTEM);

/// Whether the counting allocator is this binary's global allocator (one tiny allocation).
pub fn counting_active() -> bool {
    densa_alloc::is_active()
}

/// Allocation calls (alloc, alloc_zeroed, realloc) made so far on this thread.
pub fn allocs() -> u64 {
    let stats = densa_alloc::thread_stats();
    stats.allocs + stats.reallocs
}

/// Bytes allocated minus bytes freed so far in the process (may go down when memory
/// allocated before a measurement is freed during it).
pub fn live_bytes() -> i64 {
    let s = INSTRUMENTED_SYSTEM.stats();
    // `stats_alloc` books a realloc's growth as allocated and its shrinking as freed.
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}
