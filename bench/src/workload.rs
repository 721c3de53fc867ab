//! The workloads, the runtimes, and the dispatch from one to the other.

use crate::measure::{Delta, Pass, Report};

macro_rules! workloads {
    ($($variant:ident = $name:literal, $n:expr, $doc:literal;)*) => {
        /// One benchmark workload (see `BENCHMARKS.md` for what each exercises).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Workload {
            $(#[doc = $doc] $variant,)*
        }

        impl Workload {
            /// Every workload, in the order the suite runs them.
            pub const ALL: &'static [Workload] = &[$(Workload::$variant,)*];

            /// The name used on the command line and in the table.
            pub fn name(self) -> &'static str {
                match self { $(Workload::$variant => $name,)* }
            }

            /// The size the full suite uses (children, iterations or wakes).
            pub fn default_n(self) -> usize {
                match self { $(Workload::$variant => $n,)* }
            }

            /// One-line description.
            pub fn describe(self) -> &'static str {
                match self { $(Workload::$variant => $doc,)* }
            }
        }
    };
}

workloads! {
    SpawnAll = "spawn_all", 100_000, "N trivial children spawned into one nursery, joined";
    SpawnAllHandles = "spawn_all_handles", 100_000, "N trivial children spawned with join handles, each handle awaited";
    SpawnOne = "spawn_one", 100_000, "per request, inside a spawned task: a nursery with one child awaited through its handle, N times";
    SpawnOneRoot = "spawn_one_root", 100_000, "spawn_one with the loop in the root future";
    SpawnOneSoon = "spawn_one_soon", 100_000, "per request, inside a spawned task: a nursery with one child started without a handle (start_soon), N times";
    SpawnOneSoonRoot = "spawn_one_soon_root", 100_000, "spawn_one_soon with the loop in the root future";
    NurseryEmpty = "nursery_empty", 1_000_000, "per request, inside a spawned task: open and close an empty nursery, N times";
    NurseryEmptyRoot = "nursery_empty_root", 1_000_000, "nursery_empty with the loop in the root future";
    YieldMany = "yield_many", 100_000, "N children x 10 yields each";
    YieldAlone = "yield_alone", 1_000_000, "one task (the root future) yielding N times";
    YieldTask = "yield_task", 1_000_000, "one spawned child yielding N times, alone in its group";
    WakeOne = "wake_one", 100_000, "N parked children, woken one at a time";
    WakeOne10 = "wake_one_10", 100_000, "10 parked children, N wakes one at a time";
    DeepTree = "deep_tree", 100_000, "nursery spine of depth 20, fan-out 3; N leaf wakes in turn";
    DeepTree8 = "deep_tree_8", 100_000, "nursery spine of depth 8, fan-out 3; N leaf wakes in turn";
    TimerArmCancel = "timer_arm_cancel", 1_000_000, "per request, inside a spawned task: a 60 s sleep polled once then dropped, N times";
    TimerArmCancelRoot = "timer_arm_cancel_root", 1_000_000, "timer_arm_cancel with the loop in the root future";
    TimeoutNeverFires = "timeout_never_fires", 1_000_000, "per request, inside a spawned task: move_on_after(60 s) around a one-yield op vs the op alone, N times";
    TimeoutNeverFiresRoot = "timeout_never_fires_root", 1_000_000, "timeout_never_fires with the loop in the root future";
    TimersFire = "timers_fire", 100_000, "N sleeps with random deadlines within 10 ms (after set-up)";
    TimersSparse = "timers_sparse", 1_000, "N sleeps with random deadlines within 100 ms: timer precision without backlog";
    CancelMany = "cancel_many", 100_000, "cancel a nursery of N blocked children";
    IdleMemory1 = "idle_memory_1", 1_000_000, "N idle children with 1-byte futures";
    IdleMemory64 = "idle_memory_64", 1_000_000, "N idle children with 64-byte futures";
    IdleMemory256 = "idle_memory_256", 1_000_000, "N idle children with 256-byte futures";
    ContextvarGet = "contextvar_get", 1_000_000, "read a context variable N times";
    ContextvarSetReset = "contextvar_set_reset", 1_000_000, "set and reset a context variable N times";
    ContextvarSpawn = "contextvar_spawn", 100_000, "spawn N children that read an inherited context variable";
    Channel1Cap0 = "channel_1to1_cap0", 1_000_000, "N messages, 1 producer task -> 1 consumer task, rendezvous channel (capacity 0; tokio and async-channel have none: capacity 1)";
    Channel1Cap1 = "channel_1to1_cap1", 1_000_000, "N messages, 1 producer task -> 1 consumer task, capacity 1";
    Channel1Cap1024 = "channel_1to1_cap1024", 1_000_000, "N messages, 1 producer task -> 1 consumer task, capacity 1024";
    Channel8Cap0 = "channel_8to1_cap0", 1_000_000, "N messages, 8 producer tasks (N/8 each) -> 1 consumer task, rendezvous (capacity 0; tokio and async-channel have none: capacity 1)";
    Channel8Cap1 = "channel_8to1_cap1", 1_000_000, "N messages, 8 producer tasks (N/8 each) -> 1 consumer task, capacity 1";
    Channel8Cap1024 = "channel_8to1_cap1024", 1_000_000, "N messages, 8 producer tasks (N/8 each) -> 1 consumer task, capacity 1024";
    LockUncontended = "lock_uncontended", 1_000_000, "inside a spawned task: lock and unlock a free async mutex N times";
    LockContended = "lock_contended", 1_000_000, "8 tasks lock one async mutex N/8 times each, yielding once while holding it";
    ToThread = "to_thread", 50_000, "inside a spawned task: N sequential round trips of a trivial closure to a blocking thread";
}

impl Workload {
    /// Looks a workload up by exact name.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.iter().copied().find(|w| w.name() == name)
    }

    /// The workloads a command-line word selects: an exact name, or every workload whose
    /// name starts with it (`idle_memory`, `contextvar`, `wake_one`).
    pub fn select(word: &str) -> Vec<Workload> {
        if let Some(w) = Workload::from_name(word) {
            return vec![w];
        }
        Workload::ALL
            .iter()
            .copied()
            .filter(|w| w.name().starts_with(word))
            .collect()
    }

    /// Where the measured loop of a per-request workload runs; `None` for the others
    /// (each of which says where it runs).
    pub fn placement(self) -> Option<Placement> {
        match self {
            Workload::SpawnOne
            | Workload::SpawnOneSoon
            | Workload::NurseryEmpty
            | Workload::TimerArmCancel
            | Workload::TimeoutNeverFires => Some(Placement::Task),
            Workload::SpawnOneRoot
            | Workload::SpawnOneSoonRoot
            | Workload::NurseryEmptyRoot
            | Workload::TimerArmCancelRoot
            | Workload::TimeoutNeverFiresRoot => Some(Placement::Root),
            _ => None,
        }
    }

    /// The workload a `_root` twin is a placement of (itself for every other workload).
    pub fn base(self) -> Workload {
        match self {
            Workload::SpawnOneRoot => Workload::SpawnOne,
            Workload::SpawnOneSoonRoot => Workload::SpawnOneSoon,
            Workload::NurseryEmptyRoot => Workload::NurseryEmpty,
            Workload::TimerArmCancelRoot => Workload::TimerArmCancel,
            Workload::TimeoutNeverFiresRoot => Workload::TimeoutNeverFires,
            w => w,
        }
    }
}

/// Where a per-request workload's loop runs.
///
/// A server runs its per-request code inside a task it spawned for the connection, not in
/// the future handed to `block_on`; on tokio and smol the two differ (a wake of the root
/// future goes through the runtime's driver: tokio's `epoll_wait`, smol's
/// `Poller::wait`), so every per-request workload is measured both ways, on every runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Inside a spawned task: a trellis nursery child, a tokio `spawn_local` task in the
    /// `LocalSet`, a smol `LocalExecutor` task, the only future of a `FuturesUnordered`.
    Task,
    /// In the root future (`trellis::run`, `LocalSet::block_on`, `async_io::block_on`,
    /// `futures::executor::block_on`).
    Root,
}

/// A runtime under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// trellis.
    Trellis,
    /// trellis with a no-op instrument (issue 15): exactly the trellis workloads, every
    /// runtime built with `Builder::new().instrument(Noop)`, `Noop` overriding no hook.
    TrellisNoop,
    /// tokio's current-thread runtime with a `LocalSet`.
    Tokio,
    /// `async_executor::LocalExecutor` under `async_io::block_on`.
    Smol,
    /// `futures`: `FuturesUnordered` (and, as the floor of `nursery_empty`, `join!`)
    /// under `futures::executor::block_on`.
    Futures,
    /// `flume`'s channel on smol's `LocalExecutor` (the `channel_*` workloads only).
    Flume,
}

impl Runtime {
    /// Every runtime, in table order.
    pub const ALL: &'static [Runtime] = &[
        Runtime::Trellis,
        Runtime::TrellisNoop,
        Runtime::Tokio,
        Runtime::Smol,
        Runtime::Futures,
        Runtime::Flume,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Trellis => "trellis",
            Runtime::TrellisNoop => "trellis+noop",
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
            Runtime::Futures => "futures",
            Runtime::Flume => "flume",
        }
    }

    /// Looks a runtime up by name.
    pub fn from_name(name: &str) -> Option<Runtime> {
        Runtime::ALL.iter().copied().find(|r| r.name() == name)
    }
}

/// Runs `workload` on `runtime` at size `n`, in this process and on this thread, reading
/// the counters of `pass` only, and returns the metrics of that pass. `None` when the
/// workload does not apply to that runtime (or the API is not there yet).
pub fn run(workload: Workload, runtime: Runtime, n: usize, pass: Pass) -> Option<Report> {
    let before = crate::measure::set_pass(pass);
    let report = match runtime {
        Runtime::Trellis => crate::rt_trellis::run(workload, n, crate::rt_trellis::Column::Plain),
        Runtime::TrellisNoop => {
            crate::rt_trellis::run(workload, n, crate::rt_trellis::Column::Noop)
        }
        Runtime::Tokio => crate::rt_tokio::run(workload, n),
        Runtime::Smol => crate::rt_smol::run(workload, n),
        Runtime::Futures => crate::rt_futures::run(workload, n),
        Runtime::Flume => crate::rt_flume::run(workload, n),
    };
    crate::measure::set_pass(before);
    report.map(|mut r| {
        r.retain_kind(pass.kind());
        r
    })
}

/// Depth of the `deep_tree` spine.
pub const DEEP_TREE_DEPTH: usize = 20;
/// Depth of the `deep_tree_8` spine (issue 12's target).
pub const DEEP_TREE_8_DEPTH: usize = 8;
/// Children per level of the `deep_tree` spine (one continues the spine).
pub const DEEP_TREE_FANOUT: usize = 3;

/// The depth of a `deep_tree*` workload's spine.
pub fn deep_tree_depth(w: Workload) -> usize {
    if w == Workload::DeepTree8 {
        DEEP_TREE_8_DEPTH
    } else {
        DEEP_TREE_DEPTH
    }
}

/// Leaves of a spine of `depth`: `FANOUT - 1` per level above the last, `FANOUT` at it.
pub const fn deep_tree_leaves(depth: usize) -> usize {
    (depth - 1) * (DEEP_TREE_FANOUT - 1) + DEEP_TREE_FANOUT
}
/// Yields per child in `yield_many`.
pub const YIELDS_PER_CHILD: usize = 10;
/// Parked children in `wake_one_10`.
pub const WAKE_FEW: usize = 10;

/// The deterministic deadline offsets of `timers_fire` / `timers_sparse`, in ns from the
/// start of set-up: a margin for the set-up (spawning and arming every timer; 250 ms at
/// full size, the report shows how long the set-up really took and lateness counts from
/// its end if it ran over), then a random point within the window (10 ms for `timers_fire`,
/// 100 ms for `timers_sparse`; 1 ms and 10 ms at smoke-test sizes).
pub fn timer_offsets(w: Workload, n: usize) -> Vec<u64> {
    let full = n >= w.default_n();
    let margin = if full { 250_000_000 } else { 20_000_000 };
    let window = match (w, full) {
        (Workload::TimersSparse, true) => 100_000_000,
        (Workload::TimersSparse, false) => 10_000_000,
        (_, true) => 10_000_000,
        (_, false) => 1_000_000,
    };
    crate::util::timer_offsets(n, margin, window)
}

/// Producer tasks of the `channel_8to1_*` workloads.
pub const CHANNEL_PRODUCERS: usize = 8;
/// Tasks sharing the mutex in `lock_contended`.
pub const LOCK_TASKS: usize = 8;

/// The shape of a `channel_*` workload: (producer tasks, capacity); `None` for the others.
/// Capacity 0 is a rendezvous; a peer without one (tokio's `mpsc`, whose bound must be at
/// least 1) runs capacity 1 there and says so in its module docs.
pub fn channel_shape(w: Workload) -> Option<(usize, usize)> {
    let p = CHANNEL_PRODUCERS;
    Some(match w {
        Workload::Channel1Cap0 => (1, 0),
        Workload::Channel1Cap1 => (1, 1),
        Workload::Channel1Cap1024 => (1, 1024),
        Workload::Channel8Cap0 => (p, 0),
        Workload::Channel8Cap1 => (p, 1),
        Workload::Channel8Cap1024 => (p, 1024),
        _ => return None,
    })
}

/// How many messages producer `i` of `producers` sends, `n` in all.
pub fn producer_share(n: usize, producers: usize, i: usize) -> usize {
    n / producers + usize::from(i < n % producers)
}

/// How many times task `i` of `tasks` locks in `lock_contended`, `n` in all.
pub fn lock_share(n: usize, tasks: usize, i: usize) -> usize {
    producer_share(n, tasks, i)
}

/// The unit one operation of `workload` is counted in (for the table's metric names).
pub fn unit(workload: Workload) -> &'static str {
    match workload.base() {
        Workload::SpawnAll | Workload::SpawnAllHandles => "child",
        Workload::CancelMany | Workload::ContextvarSpawn => "child",
        Workload::IdleMemory1 | Workload::IdleMemory64 | Workload::IdleMemory256 => "child",
        Workload::SpawnOne | Workload::SpawnOneSoon => "iter",
        Workload::NurseryEmpty => "nursery",
        Workload::YieldMany | Workload::YieldAlone | Workload::YieldTask => "yield",
        Workload::WakeOne | Workload::WakeOne10 | Workload::DeepTree | Workload::DeepTree8 => {
            "wake"
        }
        Workload::TimersFire | Workload::TimersSparse => "timer",
        Workload::Channel1Cap0
        | Workload::Channel1Cap1
        | Workload::Channel1Cap1024
        | Workload::Channel8Cap0
        | Workload::Channel8Cap1
        | Workload::Channel8Cap1024 => "msg",
        Workload::LockUncontended | Workload::LockContended => "lock",
        Workload::ToThread => "call",
        _ => "op",
    }
}

/// A count the current pass did not measure: pushed anyway (and dropped with the other
/// kind's metrics), so a metric's place in the report is the same in both passes.
fn counted(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// The standard report: ns (timing pass), allocations and syscalls (counting pass) per
/// operation.
pub fn standard(workload: Workload, d: &Delta, ops: usize) -> Report {
    let u = unit(workload);
    let ops = ops.max(1) as f64;
    let mut r = Report::default();
    r.time(&format!("ns/{u}"), d.wall_ns / ops);
    r.count(&format!("allocs/{u}"), counted(d.allocs) / ops);
    // Last: where the tracepoint is refused there is no such row.
    if let Some(s) = d.syscalls {
        r.count(&format!("syscalls/{u}"), s / ops);
    }
    r
}

/// The report of `timeout_never_fires`: extra ns per timeout first.
pub fn timeout_report(alone: &Delta, with: &Delta, n: usize) -> Report {
    let n = n.max(1) as f64;
    let mut r = Report::default();
    r.time("extra ns/timeout", (with.wall_ns - alone.wall_ns) / n);
    r.time("ns/op with timeout", with.wall_ns / n);
    r.time("ns/op alone", alone.wall_ns / n);
    r.count(
        "extra allocs/timeout",
        (counted(with.allocs) - counted(alone.allocs)) / n,
    );
    if let (Some(a), Some(w)) = (alone.syscalls, with.syscalls) {
        r.count("extra syscalls/timeout", (w - a) / n);
    }
    r
}

/// The report of `timers_fire`: CPU ns per timer first, then wall time and lateness.
pub fn timers_report(d: &Delta, lateness: &crate::util::Lateness, n: usize) -> Report {
    let (p50, p99, max) = lateness.percentiles_us();
    let mut r = Report::default();
    r.time("cpu ns/timer", d.cpu_ns / n.max(1) as f64);
    r.time("wall ms total", d.wall_ns / 1e6);
    r.time("set-up ms", lateness.setup_ms());
    r.time("lateness p50 us", p50);
    r.time("lateness p99 us", p99);
    r.time("lateness max us", max);
    r.count("allocs/timer", counted(d.allocs) / n.max(1) as f64);
    r
}

/// The report of `idle_memory_*`: RSS bytes per child first.
pub fn idle_report(d: &Delta, rss_before: u64, rss_after: u64, n: usize) -> Report {
    let n = n.max(1) as f64;
    let mut r = Report::default();
    r.count(
        "rss B/child",
        rss_after.saturating_sub(rss_before) as f64 / n,
    );
    r.count("heap B/child", counted(d.live_bytes) / n);
    r.count("allocs/child", counted(d.allocs) / n);
    r.time("ns/child", d.wall_ns / n);
    r
}

/// Bytes of the idle future of an `idle_memory_*` workload.
pub fn idle_size(workload: Workload) -> Option<usize> {
    match workload {
        Workload::IdleMemory1 => Some(1),
        Workload::IdleMemory64 => Some(64),
        Workload::IdleMemory256 => Some(256),
        _ => None,
    }
}

/// Splits `n` operations into chunks of at most 1 000 (for alternating measurements).
pub fn chunks(n: usize) -> impl Iterator<Item = usize> {
    (0..n.div_ceil(1000)).map(move |i| (n - i * 1000).min(1000))
}
