//! The child side of the harness: one measurement in one process, printed as
//! `order\tname\tvalue` lines. Both binaries run it: `trellis-bench` (counting allocator)
//! for the counting pass, `trellis-bench-timing` (system allocator) for the timing pass;
//! each refuses the pass it cannot run honestly.
//!
//! ```text
//! __child <workload> <runtime> <n> <cpu> <timing|counting>
//! __overhead <alloc|syscall|syscall-traced> <n> <cpu>
//! __build
//! ```

use std::process::ExitCode;

use crate::measure::{self, Pass, overhead};
use crate::{Runtime, Workload, alloc, profile};

/// The row order of the peak-RSS metric every counting child adds (after the report's own).
pub const PEAK_RSS_ORDER: usize = 1000;

/// Handles a child command line (without the program name); `None` if `args` is not one.
pub fn dispatch(args: &[String]) -> Option<ExitCode> {
    let (first, rest) = args.split_first()?;
    Some(match first.as_str() {
        "__child" => measure_one(rest),
        "__overhead" => overhead_one(rest),
        "__build" => {
            println!("{}", profile::BUILD_ID);
            println!("{}", profile::describe());
            println!("counting allocator: {}", alloc::counting_active());
            ExitCode::SUCCESS
        }
        _ => return None,
    })
}

fn pin(cpu: &str) -> Result<(), String> {
    let cpu: usize = cpu.parse().map_err(|e| format!("cpu {cpu:?}: {e}"))?;
    if let Err(e) = measure::pin_to_cpu(cpu) {
        eprintln!("warning: cannot pin to CPU {cpu}: {e}");
    }
    Ok(())
}

fn measure_one(args: &[String]) -> ExitCode {
    let [w, r, n, cpu, pass] = args else {
        eprintln!("__child needs: workload runtime n cpu pass");
        return ExitCode::FAILURE;
    };
    let (Some(w), Some(r), Ok(n), Some(pass)) = (
        Workload::from_name(w),
        Runtime::from_name(r),
        n.parse::<usize>(),
        Pass::from_name(pass),
    ) else {
        eprintln!("__child: bad arguments {args:?}");
        return ExitCode::FAILURE;
    };
    if let Err(e) = pin(cpu) {
        eprintln!("__child: {e}");
        return ExitCode::FAILURE;
    }
    // Each binary runs only the pass it is built for.
    let counting = alloc::counting_active();
    match (pass, counting) {
        (Pass::Timing, true) if std::env::var_os("TRELLIS_BENCH_TIME_WITH_COUNTERS").is_none() => {
            eprintln!("__child: the timing pass must not run under the counting allocator");
            return ExitCode::FAILURE;
        }
        (Pass::Counting, false) => {
            eprintln!("__child: the counting pass needs the counting allocator");
            return ExitCode::FAILURE;
        }
        _ => {}
    }
    match crate::run(w, r, n, pass) {
        None => println!("n/a"),
        Some(report) => {
            if pass == Pass::Timing && measure::syscall_counter_opened() {
                eprintln!("__child: the timing pass opened the syscall counter");
                return ExitCode::FAILURE;
            }
            for m in &report.metrics {
                println!("{}\t{}\t{}", m.order, m.name, m.value);
            }
            if pass == Pass::Counting {
                println!(
                    "{PEAK_RSS_ORDER}\tpeak RSS MB\t{}",
                    measure::peak_rss_bytes() as f64 / (1024.0 * 1024.0)
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn overhead_one(args: &[String]) -> ExitCode {
    let [what, n, cpu] = args else {
        eprintln!("__overhead needs: alloc|syscall|syscall-traced n cpu");
        return ExitCode::FAILURE;
    };
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("__overhead: bad n {n:?}");
        return ExitCode::FAILURE;
    };
    if let Err(e) = pin(cpu) {
        eprintln!("__overhead: {e}");
        return ExitCode::FAILURE;
    }
    let value = match what.as_str() {
        "alloc" => Some(overhead::alloc_free_ns(n)),
        "syscall" => overhead::syscall_ns(n, false),
        "syscall-traced" => overhead::syscall_ns(n, true),
        _ => {
            eprintln!("__overhead: unknown {what:?}");
            return ExitCode::FAILURE;
        }
    };
    match value {
        Some(v) => println!("{v}"),
        None => println!("n/a"),
    }
    ExitCode::SUCCESS
}
