//! Measuring tools: wall and CPU clocks, allocation and syscall counters, RSS, pinning, and
//! the [`Report`] a workload returns.

use std::cell::OnceCell;
use std::time::Instant;

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

/// Process CPU time in nanoseconds (every thread of the process).
pub fn cpu_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_ZERO/CPU_SET only write into
    // it; sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from a valid reference.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to_cpu`; sched_getaffinity writes at most the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The first fields of the kernel's `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`,
/// 64 bytes): enough to open a counting tracepoint event.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

thread_local! {
    /// This thread's `raw_syscalls:sys_enter` counter fd, or `None` when unavailable.
    static SYSCALL_FD: OnceCell<Option<i32>> = const { OnceCell::new() };
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

fn open_syscall_counter() -> Option<i32> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: tracepoint_id()?,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares; pid 0 / cpu -1
    // counts the calling thread on any CPU; no group fd; no flags.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0,
            -1,
            -1,
            0,
        )
    };
    if fd < 0 { None } else { Some(fd as i32) }
}

fn read_counter(fd: i32) -> Option<u64> {
    let mut value = 0u64;
    // SAFETY: reads at most 8 bytes into a valid, writable u64.
    let n = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
    if n == 8 { Some(value) } else { None }
}

/// System calls entered by this thread so far, counted by the kernel's
/// `raw_syscalls:sys_enter` tracepoint through `perf_event_open`; `None` where the kernel
/// refuses it (no tracefs, `perf_event_paranoid`, a container without the capability).
pub fn syscalls() -> Option<u64> {
    let fd = SYSCALL_FD.with(|c| *c.get_or_init(open_syscall_counter))?;
    read_counter(fd)
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
