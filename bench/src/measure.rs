//! Measuring tools: wall and CPU clocks, allocation and syscall counters, RSS, pinning, and
//! the [`Report`] a workload returns.
//!
//! Every measurement is one of two **passes** ([`Pass`]), run as separate processes by the
//! harness:
//!
//! - the **timing** pass reads only clocks (wall time, and process CPU time outside the
//!   timed region). It runs in the `trellis-bench-timing` binary, whose global allocator is
//!   the plain system allocator, and it never opens the syscall tracepoint: no counter is
//!   on the timed path;
//! - the **counting** pass reads the allocation counters, the syscall tracepoint and RSS.
//!   It runs in the `trellis-bench` binary, whose global allocator counts. Its times are
//!   perturbed by the counters and are thrown away.
//!
//! A [`Report`] holds metrics of both kinds ([`Kind`]); [`crate::run`] keeps those of the
//! pass it ran.

use std::cell::{Cell, OnceCell};
use std::time::Instant;

use perf_event_open::config::{Cpu, Opts, Proc};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;

use crate::alloc;

/// Which counters a measurement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Clocks only: no allocation counter read, the syscall tracepoint never opened.
    Timing,
    /// Allocations, live heap bytes, syscalls, RSS; times are not kept.
    Counting,
}

impl Pass {
    /// Both passes, in the order the harness runs them.
    pub const ALL: [Pass; 2] = [Pass::Timing, Pass::Counting];

    /// The name used on the command line of a child.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Timing => "timing",
            Pass::Counting => "counting",
        }
    }

    /// Looks a pass up by name.
    pub fn from_name(name: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The kind of metric this pass reports.
    pub fn kind(self) -> Kind {
        match self {
            Pass::Timing => Kind::Time,
            Pass::Counting => Kind::Count,
        }
    }
}

thread_local! {
    static PASS: Cell<Pass> = const { Cell::new(Pass::Counting) };
}

/// The pass this thread is measuring (set by [`crate::run`]).
pub fn pass() -> Pass {
    PASS.with(Cell::get)
}

/// Sets the pass of this thread's measurements; returns the previous one.
pub fn set_pass(p: Pass) -> Pass {
    PASS.with(|c| c.replace(p))
}

/// What a metric measures, and so which pass reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A time (wall or CPU): from the timing pass.
    Time,
    /// A count or a size (allocations, bytes, syscalls, RSS): from the counting pass.
    Count,
}

/// One named value of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The name shown in the table (`ns/iter`, `allocs/child`, …).
    pub name: String,
    /// The value (lower is better for every metric).
    pub value: f64,
    /// Which pass measures it.
    pub kind: Kind,
    /// Its place in the workload's full report (the table's row order).
    pub order: usize,
}

/// What one run of one workload on one runtime measured: named values, the first one of
/// each kind being the workload's headline figure (lower is better for every one of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The metrics, in the order they were pushed.
    pub metrics: Vec<Metric>,
}

impl Report {
    /// Adds a time metric.
    pub fn time(&mut self, name: &str, value: f64) -> &mut Self {
        self.push(name, value, Kind::Time)
    }

    /// Adds a count metric.
    pub fn count(&mut self, name: &str, value: f64) -> &mut Self {
        self.push(name, value, Kind::Count)
    }

    /// Adds a metric of `kind`.
    pub fn push(&mut self, name: &str, value: f64, kind: Kind) -> &mut Self {
        let order = self.metrics.len();
        self.metrics.push(Metric {
            name: name.to_string(),
            value,
            kind,
            order,
        });
        self
    }

    /// Looks a metric up by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The first metric (the headline of the pass that produced this report).
    pub fn headline(&self) -> Option<&Metric> {
        self.metrics.first()
    }

    /// Keeps only the metrics of `kind`.
    pub fn retain_kind(&mut self, kind: Kind) {
        self.metrics.retain(|m| m.kind == kind);
    }
}

/// A snapshot of the counters of the current [`Pass`], taken at the start of a measured
/// region.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pass: Pass,
    wall: Instant,
    cpu_ns: u64,
    allocs: u64,
    live: i64,
    syscalls: Option<u64>,
}

/// The differences between two [`Probe`]s. Times are measured in the timing pass only
/// (0 in the counting pass), counts in the counting pass only (`None` in the timing pass).
#[derive(Debug, Clone, Copy)]
pub struct Delta {
    /// Wall-clock nanoseconds.
    pub wall_ns: f64,
    /// Process CPU nanoseconds.
    pub cpu_ns: f64,
    /// Allocation calls on this thread.
    pub allocs: Option<f64>,
    /// Live heap bytes gained.
    pub live_bytes: Option<f64>,
    /// System calls entered by this thread, if the counter is available.
    pub syscalls: Option<f64>,
}

impl Probe {
    /// Takes a snapshot now.
    pub fn start() -> Probe {
        let pass = pass();
        match pass {
            Pass::Timing => {
                // The process CPU clock is a real syscall: read it before the wall clock.
                let cpu_ns = cpu_time_ns();
                Probe {
                    pass,
                    wall: Instant::now(),
                    cpu_ns,
                    allocs: 0,
                    live: 0,
                    syscalls: None,
                }
            }
            Pass::Counting => {
                // Open the counter and calibrate it before the region starts.
                let _ = syscall_read_cost();
                let allocs = alloc::allocs();
                let live = alloc::live_bytes();
                let syscalls = syscalls();
                Probe {
                    pass,
                    wall: Instant::now(),
                    cpu_ns: 0,
                    allocs,
                    live,
                    syscalls,
                }
            }
        }
    }

    /// The differences since `self`.
    pub fn stop(&self) -> Delta {
        match self.pass {
            Pass::Timing => {
                let wall_ns = self.wall.elapsed().as_nanos() as f64;
                let cpu_ns = cpu_time_ns().saturating_sub(self.cpu_ns) as f64;
                Delta {
                    wall_ns,
                    cpu_ns,
                    allocs: None,
                    live_bytes: None,
                    syscalls: None,
                }
            }
            Pass::Counting => {
                let syscalls = match (self.syscalls, syscalls()) {
                    // One `read` of the counter is counted between two probes: take it out.
                    (Some(a), Some(b)) => {
                        Some(b.saturating_sub(a).saturating_sub(syscall_read_cost()) as f64)
                    }
                    _ => None,
                };
                let allocs = (alloc::allocs() - self.allocs) as f64;
                let live_bytes = (alloc::live_bytes() - self.live) as f64;
                Delta {
                    wall_ns: 0.0,
                    cpu_ns: 0.0,
                    allocs: Some(allocs),
                    live_bytes: Some(live_bytes),
                    syscalls,
                }
            }
        }
    }
}

/// Process CPU time in nanoseconds (every thread of the process), or 0 where the clock
/// cannot be read.
pub fn cpu_time_ns() -> u64 {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration().as_nanos() as u64)
        .unwrap_or(0)
}

/// Reads a `kB` field (`VmRSS`, `VmHWM`) of `/proc/self/status`, in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Current resident set size in bytes.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS").unwrap_or(0)
}

/// Peak resident set size (high-water mark) in bytes.
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM").unwrap_or(0)
}

/// Pins the calling thread (and the threads it starts afterwards) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "sched_setaffinity to CPU {cpu} failed"
        )))
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_else(|| vec![0])
}

thread_local! {
    /// This thread's `raw_syscalls:sys_enter` counter, or `None` when unavailable.
    static SYSCALL_COUNTER: OnceCell<Option<Counter>> = const { OnceCell::new() };
    static READ_COST: OnceCell<u64> = const { OnceCell::new() };
}

fn tracepoint_id() -> Option<u64> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|root| {
            let path = format!("{root}/events/raw_syscalls/sys_enter/id");
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        })
}

/// Opens and enables a counter of the calling thread's `raw_syscalls:sys_enter` events.
fn open_syscall_counter() -> Option<Counter> {
    let event = Tracepoint {
        id: tracepoint_id()?,
    };
    let counter = Counter::new(event, (Proc::CURRENT, Cpu::ALL), Opts::default()).ok()?;
    counter.enable().ok()?;
    Some(counter)
}

/// System calls entered by this thread so far, counted by the kernel's
/// `raw_syscalls:sys_enter` tracepoint through `perf_event_open`; `None` where the kernel
/// refuses it (no tracefs mounted, `perf_event_paranoid`, a container without the
/// capability). The first call opens the counter for this thread; the timing pass never
/// calls it.
pub fn syscalls() -> Option<u64> {
    SYSCALL_COUNTER.with(|c| {
        let counter = c.get_or_init(open_syscall_counter).as_ref()?;
        counter.stat().ok().map(|stat| stat.count)
    })
}

/// Whether this thread has opened (or tried to open) its syscall counter: never true in
/// a timing pass (the smoke test checks it).
pub fn syscall_counter_opened() -> bool {
    SYSCALL_COUNTER.with(|c| c.get().is_some())
}

/// How many syscalls one reading of the counter itself adds (normally 1).
fn syscall_read_cost() -> u64 {
    READ_COST.with(|c| {
        *c.get_or_init(|| {
            let mut best = u64::MAX;
            for _ in 0..5 {
                if let (Some(a), Some(b)) = (syscalls(), syscalls()) {
                    best = best.min(b - a);
                }
            }
            if best == u64::MAX { 0 } else { best }
        })
    })
}

/// Whether syscalls can be counted on this machine (opens this thread's counter).
pub fn syscalls_available() -> bool {
    syscalls().is_some()
}

impl Delta {
    /// Nothing measured yet (the sum's starting point) in the current pass.
    pub fn zero() -> Delta {
        match pass() {
            Pass::Timing => Delta {
                wall_ns: 0.0,
                cpu_ns: 0.0,
                allocs: None,
                live_bytes: None,
                syscalls: None,
            },
            Pass::Counting => Delta {
                wall_ns: 0.0,
                cpu_ns: 0.0,
                allocs: Some(0.0),
                live_bytes: Some(0.0),
                syscalls: syscalls().map(|_| 0.0),
            },
        }
    }
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

impl std::ops::AddAssign for Delta {
    fn add_assign(&mut self, o: Delta) {
        self.wall_ns += o.wall_ns;
        self.cpu_ns += o.cpu_ns;
        self.allocs = add(self.allocs, o.allocs);
        self.live_bytes = add(self.live_bytes, o.live_bytes);
        self.syscalls = add(self.syscalls, o.syscalls);
    }
}

/// What the counters cost: the figures of `--overhead` (see `BENCHMARKS.md`).
pub mod overhead {
    use std::hint::black_box;
    use std::time::Instant;

    /// Nanoseconds per `Box::new` + drop of a 32-byte value, over `n` of them, with
    /// whatever global allocator this binary has.
    pub fn alloc_free_ns(n: usize) -> f64 {
        let start = Instant::now();
        for i in 0..n {
            drop(black_box(Box::new([i as u8; 32])));
        }
        start.elapsed().as_nanos() as f64 / n.max(1) as f64
    }

    /// Nanoseconds per `getpid` system call (`std::process::id`; glibc does not cache
    /// it), over `n` of them, with the syscall tracepoint opened for this thread first
    /// when `traced` (`None` if it cannot be opened).
    pub fn syscall_ns(n: usize, traced: bool) -> Option<f64> {
        if traced {
            super::syscalls()?;
        }
        let start = Instant::now();
        for _ in 0..n {
            black_box(std::process::id());
        }
        Some(start.elapsed().as_nanos() as f64 / n.max(1) as f64)
    }
}
