//! Measuring tools: wall and CPU clocks, allocation and syscall counters, RSS, pinning, and
//! the [`Report`] a workload returns.

use std::cell::OnceCell;
use std::time::Instant;

use perf_event_open::config::{Cpu, Opts, Proc};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;

use crate::alloc;

/// What one run of one workload on one runtime measured: named values, the first one being
/// the workload's headline figure (lower is better for every one of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// `(metric name, value)`, headline first.
    pub metrics: Vec<(String, f64)>,
}

impl Report {
    /// Adds a metric.
    pub fn push(&mut self, name: &str, value: f64) -> &mut Self {
        self.metrics.push((name.to_string(), value));
        self
    }

    /// Looks a metric up by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// A snapshot of every counter, taken at the start of a measured region.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    wall: Instant,
    cpu_ns: u64,
    allocs: u64,
    live: i64,
    syscalls: Option<u64>,
}

/// The differences between two [`Probe`]s.
#[derive(Debug, Clone, Copy)]
pub struct Delta {
    /// Wall-clock nanoseconds.
    pub wall_ns: f64,
    /// Process CPU nanoseconds.
    pub cpu_ns: f64,
    /// Allocation calls on this thread.
    pub allocs: f64,
    /// Live heap bytes gained on this thread.
    pub live_bytes: f64,
    /// System calls entered by this thread, if the counter is available.
    pub syscalls: Option<f64>,
}

impl Probe {
    /// Takes a snapshot now.
    pub fn start() -> Probe {
        // Open the counter and calibrate it before the region starts.
        let _ = syscall_read_cost();
        // The process CPU clock is a real syscall: read it outside the counted region.
        let cpu_ns = cpu_time_ns();
        let allocs = alloc::allocs();
        let live = alloc::live_bytes();
        let syscalls = syscalls();
        Probe {
            wall: Instant::now(),
            cpu_ns,
            allocs,
            live,
            syscalls,
        }
    }

    /// The differences since `self`.
    pub fn stop(&self) -> Delta {
        let wall_ns = self.wall.elapsed().as_nanos() as f64;
        let syscalls = match (self.syscalls, syscalls()) {
            // One `read` of the counter is counted between two probes: take it out.
            (Some(a), Some(b)) => {
                Some(b.saturating_sub(a).saturating_sub(syscall_read_cost()) as f64)
            }
            _ => None,
        };
        let allocs = (alloc::allocs() - self.allocs) as f64;
        let live_bytes = (alloc::live_bytes() - self.live) as f64;
        let cpu_ns = cpu_time_ns().saturating_sub(self.cpu_ns) as f64;
        Delta {
            wall_ns,
            cpu_ns,
            allocs,
            live_bytes,
            syscalls,
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
/// refuses it (no tracefs, `perf_event_paranoid`, a container without the capability).
pub fn syscalls() -> Option<u64> {
    SYSCALL_COUNTER.with(|c| {
        let counter = c.get_or_init(open_syscall_counter).as_ref()?;
        counter.stat().ok().map(|stat| stat.count)
    })
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

/// Whether syscalls can be counted on this machine.
pub fn syscalls_available() -> bool {
    syscalls().is_some()
}

impl Delta {
    /// Nothing measured yet (the sum's starting point).
    pub const ZERO: Delta = Delta {
        wall_ns: 0.0,
        cpu_ns: 0.0,
        allocs: 0.0,
        live_bytes: 0.0,
        syscalls: Some(0.0),
    };
}

impl std::ops::AddAssign for Delta {
    fn add_assign(&mut self, o: Delta) {
        self.wall_ns += o.wall_ns;
        self.cpu_ns += o.cpu_ns;
        self.allocs += o.allocs;
        self.live_bytes += o.live_bytes;
        self.syscalls = match (self.syscalls, o.syscalls) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
}
