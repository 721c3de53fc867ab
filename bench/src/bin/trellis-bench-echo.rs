//! Issue 14's loopback echo benchmark: `cargo run --release -p trellis-bench --bin
//! trellis-bench-echo -- [--mode echo|idle|multicore|syscalls|callgrind] [--rounds N]
//! [--secs S] [--runtimes LIST]`.
//!
//! Every server runs in its own child process (this binary re-executed with `__server`),
//! pinned to one CPU, and one tokio client (`__client`) drives it from another process
//! pinned to the other CPU: 100 connections, each a closed loop of a 64-byte ping and its
//! pong, counted over a fixed window after a warm-up. The servers are interleaved over
//! rounds (trellis, tokio, smol, trellis-oneshot, trellis, …) and the medians are printed
//! as Markdown tables with the ratios of trellis to each peer. Modes: `echo` (req/s and
//! server CPU per request), `syscalls` (a separate, untimed pass counting the server's
//! syscalls with `perf stat`), `idle` (the server's RSS per idle connection, 10 000 of
//! them), `multicore` (one trellis runtime per core on `SO_REUSEPORT` listeners against
//! tokio's two-worker runtime, client and server sharing both cores) and `callgrind`
//! (instructions per request in the server). See `bench/src/echo/` and BENCHMARKS.md.
//! Built with the system allocator: no counter is on the timed path.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use trellis_bench::echo::{client, harness, server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((first, rest)) if first == "__server" => server::main(rest),
        Some((first, rest)) if first == "__client" => client::main(rest),
        _ => harness::main(&args),
    }
}
