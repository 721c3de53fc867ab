//! The timing binary: runs the timing pass of one measurement (`__child … timing`) for the
//! harness (`trellis-bench`). Its global allocator is the system allocator, unwrapped, and
//! it never opens the syscall tracepoint, so nothing but the clocks is on the timed path.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    trellis_bench::child::dispatch(&args).unwrap_or_else(|| {
        eprintln!(
            "trellis-bench-timing is run by the harness: `cargo run --release -p trellis-bench`"
        );
        ExitCode::FAILURE
    })
}
