//! `trellis-bench`: side-by-side benchmarks of trellis against tokio's current-thread
//! runtime, smol's `LocalExecutor` (`async-executor` under `async_io::block_on`) and
//! `futures::stream::FuturesUnordered`; for the channel, lock and thread workloads (issue
//! 13) also against `async-channel`, `async-lock` and `blocking` (smol's own) and `flume`
//! (its own column, on smol's executor).
//!
//! The library holds the workloads, one module per runtime, and the measuring tools (a
//! counting global allocator, a per-thread syscall counter, RSS and CPU-time readers). The
//! binaries are the harness: `trellis-bench` (`src/main.rs`) runs every measurement in its
//! own pinned child process and prints medians and ratios; timing passes run in
//! `trellis-bench-timing` (system allocator, no syscall tracepoint), counting passes in
//! `trellis-bench` itself (counting allocator, tracepoint). The smoke test
//! (`tests/smoke.rs`) runs every workload in-process at tiny sizes.
//!
//! No `unsafe` here: the counting allocator, the syscall counter, CPU time and pinning come
//! from well-kept crates (`densa-alloc`, `stats_alloc`, `perf-event-open`, `cpu-time`,
//! `core_affinity`). The library does not install the counting allocator: the binaries and
//! tests that count do (see [`alloc`]).

#![forbid(unsafe_code)]

pub mod alloc;
pub mod child;
pub mod echo;
pub mod measure;
pub mod profile;
pub mod rt_flume;
pub mod rt_futures;
pub mod rt_smol;
pub mod rt_tokio;
pub mod rt_trellis;
pub mod util;
pub mod workload;

pub use measure::{Kind, Pass, Report};
pub use workload::{Placement, Runtime, Workload, run};
