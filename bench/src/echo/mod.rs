//! Issue 14's loopback echo benchmark (`trellis-bench-echo`): one echo server per runtime,
//! each in its own process, driven by one tokio client in another process.
//!
//! - [`server`]: the servers, as their users write them. trellis: `trellis::run`, a
//!   nursery, an accept loop that spawns one child per connection; tokio: a current-thread
//!   runtime whose accept loop `tokio::spawn`s one task per connection; smol: a
//!   `LocalExecutor` under `async_io::block_on`, `Async<TcpListener>`, one spawned task
//!   per connection. Each echo reads up to 64 bytes and writes them back, `TCP_NODELAY` on.
//!   The multi-core servers: one trellis runtime per core on `SO_REUSEPORT` listeners, and
//!   tokio's multi-thread runtime with 2 workers.
//! - [`client`]: one tokio program for every server: connections in closed loops of a
//!   64-byte ping and its 64-byte pong, counted over a fixed window after a warm-up; or
//!   thousands of connections held idle, to read the server's RSS.
//! - [`harness`]: runs the children (the same binary re-executed with `__server` /
//!   `__client`), interleaves the runtimes over rounds, and prints medians and ratios.
//!
//! The shared pieces here: the list of servers and what a child reads of another
//! process in `/proc`.

#![forbid(unsafe_code)]

pub mod client;
pub mod harness;
pub mod server;

use std::path::Path;

/// The size of a ping and of the server's read buffer.
pub const MESSAGE: usize = 64;

/// One server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    /// trellis, edge-triggered registrations (the default where epoll has them).
    Trellis,
    /// trellis with `TRELLIS_REACTOR_ONESHOT=1`: oneshot registrations, re-armed with
    /// `epoll_ctl` at each park.
    TrellisOneshot,
    /// trellis, each connection's child started with `start_soon` (no `JoinHandle`)
    /// instead of `spawn`; not in the default list.
    TrellisSoon,
    /// The trellis server of another build (`--alt-exe`), to compare two builds of the
    /// runtime round by round; not in the default list.
    TrellisAlt,
    /// tokio's current-thread runtime, `tokio::spawn` per connection.
    Tokio,
    /// smol: `async-executor`'s `LocalExecutor` and `async-io`'s `Async<TcpListener>`.
    Smol,
    /// One trellis runtime per core (2 threads), each on its own `SO_REUSEPORT` listener.
    TrellisMulticore,
    /// tokio's multi-thread runtime with 2 workers, `tokio::spawn` per connection.
    TokioMulticore,
}

impl Server {
    /// Every server, in table order.
    pub const ALL: [Server; 8] = [
        Server::Trellis,
        Server::TrellisOneshot,
        Server::TrellisSoon,
        Server::TrellisAlt,
        Server::Tokio,
        Server::Smol,
        Server::TrellisMulticore,
        Server::TokioMulticore,
    ];

    /// The name on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Server::Trellis => "trellis",
            Server::TrellisOneshot => "trellis-oneshot",
            Server::TrellisSoon => "trellis-soon",
            Server::TrellisAlt => "trellis-alt",
            Server::Tokio => "tokio",
            Server::Smol => "smol",
            Server::TrellisMulticore => "trellis-mc",
            Server::TokioMulticore => "tokio-mc",
        }
    }

    /// Looks a server up by name.
    pub fn from_name(name: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the server runs on every core (unpinned) rather than on one.
    pub fn multicore(self) -> bool {
        matches!(self, Server::TrellisMulticore | Server::TokioMulticore)
    }

    /// Whether the server must run with `TRELLIS_REACTOR_ONESHOT=1`.
    pub fn oneshot(self) -> bool {
        self == Server::TrellisOneshot
    }
}

/// The CPU time (user + system, every thread) process `pid` has used, in nanoseconds: the
/// sum of each thread's `/proc/<pid>/task/<tid>/schedstat` run time (nanosecond
/// resolution), or `/proc/<pid>/stat`'s `utime + stime` (clock ticks, taken as 10 ms)
/// where schedstat is missing. `None` if the process is gone.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            sum += ns;
            any = true;
        }
    }
    if any {
        return Some(sum);
    }
    let (user, system) = process_user_system_ns(pid)?;
    Some(user + system)
}

/// The user and system CPU time of process `pid` (every thread), from `/proc/<pid>/stat`'s
/// `utime` and `stime`: clock ticks of 10 ms (`USER_HZ` is 100 in the kernel's ABI), so
/// only coarse over a short window.
pub fn process_user_system_ns(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the paren.
    let tick = 10_000_000;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user * tick, system * tick))
}

/// The time process `pid`'s threads have spent runnable but waiting for a CPU (the second
/// field of each thread's `/proc/<pid>/task/<tid>/schedstat`), in nanoseconds: how much
/// other load kept a server off its CPU. `None` where schedstat is missing.
pub fn process_runqueue_wait_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = None;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
        {
            *sum.get_or_insert(0) += ns;
        }
    }
    sum
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in bytes.
pub fn process_status_bytes(pid: u32, field: &str) -> Option<u64> {
    status_bytes(
        &Path::new("/proc").join(pid.to_string()).join("status"),
        field,
    )
}

fn status_bytes(path: &Path, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
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

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns the new soft
/// limit (the old one if it cannot be raised).
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    }
}

/// The hard `RLIMIT_NOFILE` of this process.
pub fn nofile_hard_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024)
}

/// Pins the calling thread (and the threads it starts afterwards) to `cpu`; `None` leaves
/// it unpinned. A failure is reported and the child goes on unpinned.
pub fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu
        && let Err(e) = crate::measure::pin_to_cpu(cpu)
    {
        eprintln!("warning: {e}");
    }
}

/// Parses a CPU argument: a number, or `-` for unpinned.
pub fn parse_cpu(arg: &str) -> Result<Option<usize>, String> {
    if arg == "-" {
        return Ok(None);
    }
    arg.parse()
        .map(Some)
        .map_err(|e| format!("cpu {arg:?}: {e}"))
}
