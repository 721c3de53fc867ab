//! The runtime's pool of worker threads, on which `to_thread` runs blocking calls.
//!
//! # State
//!
//! - One [`Pool`] per runtime, owned by its `Core`; the workers share a [`Shared`]: a FIFO
//!   queue of jobs, the number of live workers and of idle ones, under one mutex, and a
//!   condition variable the idle workers wait on.
//! - A worker is spawned when a job is submitted, no worker is idle and fewer than `limit`
//!   live; so at most `limit` jobs run at once and the others wait in the queue.
//! - An idle worker exits after [`IDLE_TIMEOUT`] of real time without a job.
//! - When the runtime ends (the `Pool` is dropped), `closed` is set: idle workers exit at
//!   once, busy ones when their call returns. Jobs still queued then are run first (each
//!   job decides for itself whether there is anything to do: one whose caller is gone
//!   returns at once without calling the user's closure).
//!
//! Jobs are boxed `FnOnce` closures; what they do with their result (hand it to a waiting
//! future and wake it) is the layer above's business.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle worker waits for a job before it exits.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of every worker thread (what `/proc/self/task/*/comm` shows).
pub(crate) const THREAD_NAME: &str = "trellis-thread";

/// A job for a worker thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// The default bound on worker threads: the number of CPUs, at least 8, so that a few
/// calls that block for long do not starve the others on a small machine.
///
/// Read once per process: `available_parallelism` reads the cgroup's files (21 system
/// calls on Linux), which were most of the cost of starting a runtime.
pub(crate) fn default_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(8)
            .max(8)
    })
}

struct State {
    queue: VecDeque<Job>,
    /// Live worker threads (idle or busy).
    live: usize,
    /// Workers waiting for a job.
    idle: usize,
    /// The runtime has ended: idle workers exit at once.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    available: Condvar,
    limit: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("live", &self.live)
            .field("idle", &self.idle)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and catch their own panics, so a poisoned mutex only
        // means a worker panicked between two plain field updates: the state is sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded pool of worker threads; closed when dropped.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("limit", &self.shared.limit)
            .field("state", &*self.shared.lock())
            .finish()
    }
}

impl Pool {
    /// A pool that runs at most `limit` jobs at once. Spawns no thread until a job comes.
    pub(crate) fn new(limit: usize) -> Pool {
        assert!(limit > 0, "a thread pool needs at least one thread");
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    live: 0,
                    idle: 0,
                    closed: false,
                }),
                available: Condvar::new(),
                limit,
            }),
        }
    }

    /// Queues `job`; an idle worker takes it, or a new one if the bound allows.
    ///
    /// # Panics
    ///
    /// Panics when the operating system refuses to create a thread and no worker is live
    /// to run the job (the job would otherwise never run).
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.shared.lock();
        state.queue.push_back(job);
        if state.idle >= state.queue.len() {
            drop(state);
            self.shared.available.notify_one();
            return;
        }
        if state.live >= self.shared.limit {
            return;
        }
        state.live += 1;
        drop(state);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || worker(&shared));
        if let Err(e) = spawned {
            let mut state = self.shared.lock();
            state.live -= 1;
            if state.live == 0 {
                panic!("trellis: cannot create a worker thread: {e}");
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        // Only idle workers wait on the condition variable (a busy one sees `closed` when
        // its call returns); std's `notify_all` makes a system call even with no waiter.
        if state.idle > 0 {
            self.shared.available.notify_all();
        }
    }
}

/// A worker's loop: take jobs until the pool is idle for [`IDLE_TIMEOUT`] or closed.
fn worker(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            // A job catches the user's panic itself; this one guards the pool's count.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = shared.lock();
            continue;
        }
        if state.closed {
            break;
        }
        state.idle += 1;
        let (next, timeout) = shared
            .available
            .wait_timeout(state, IDLE_TIMEOUT)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.live -= 1;
}
