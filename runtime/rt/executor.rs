//! The executor: drives one root future on the current thread and parks in the reactor.
//!
//! The runtime's state (`Core`, the thread's current runtime, the root's waker) is in
//! `state.rs`; this file holds the loop that drives it and the [`Builder`].
//!
//! # The loop
//!
//! Poll the root when woken; fire the timers that are due; when nothing is runnable, park
//! in the reactor until the nearest deadline (real clock) or jump to it (autojump). The
//! reactor is never entered while the root is runnable, except for a non-blocking look
//! every [`REACTOR_TICK`] polls when I/O sources are registered, so that a task that keeps
//! waking itself cannot starve I/O. When nothing is runnable, the waiters of
//! `testing::wait_all_tasks_blocked` (`idle.rs`) are woken first, and the loop goes round
//! again instead of parking, jumping time or declaring a deadlock. Work sent by other
//! threads through a `RuntimeHandle` (`inbox.rs`) runs after each root poll: jobs run and
//! woken system tasks are polled, beside the root; until a handle is made that costs one
//! `Cell` read per turn.
//!
//! # Deadlock
//!
//! On a mock clock the executor can prove that nothing will ever wake the root again:
//! without autojump when no I/O source is registered and no thread work is in flight
//! (time moves only by [`advance`](crate::advance), which only a running task can call,
//! so armed timers do not count); with autojump when, in addition, no timer is armed.
//! Then, instead of parking forever, it drops the root future and panics with the list of
//! what was blocked (`rt/deadlock.rs`).
//! The real clock is never declared deadlocked: another thread may always wake it.

#![forbid(unsafe_code)]

use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::FusedFuture;

use crate::instrument::hooks::{self, Instrument};
use crate::rt::clock::Clock;
use crate::rt::deadlock::{Deadlock, panic_deadlocked};
use crate::rt::inbox::SystemTask;
use crate::rt::pool::{self, Pool};
use crate::rt::reactor::Reactor;
use crate::rt::state::{Core, RootWake, enter, is_entered};
use crate::rt::timers::TimerAction;

/// Every this many root polls, a runnable runtime looks at the reactor without blocking.
const REACTOR_TICK: u32 = 61;

impl Core {
    /// Fires every timer whose deadline has passed. Timers are popped one at a time so
    /// that an action (waking a task, cancelling a scope) may arm or disarm others.
    pub(crate) fn fire_due_timers(&self) {
        if self.timers.borrow().len() == 0 {
            return;
        }
        let now = self.clock.recent();
        loop {
            let action = self.timers.borrow_mut().pop_due(now);
            match action {
                None => break,
                Some(TimerAction::Wake(waker)) => waker.wake(),
                Some(TimerAction::Expire(target)) => {
                    if let Some(target) = target.upgrade() {
                        target.expire();
                    }
                }
            }
        }
    }

    /// Whether anything is runnable: the root was woken, or work for the inbox (a job from
    /// another thread, a woken system task) is pending. While no `RuntimeHandle` was ever
    /// made, the second half is one `Cell` read (`rt/inbox.rs`, invariant 1).
    #[inline]
    fn runnable(&self) -> bool {
        self.root.woken.load(Ordering::SeqCst) || self.inbox.pending()
    }

    /// Whether thread work that the runtime waits for is in flight: `to_thread` calls,
    /// minus the workers blocked in `from_thread` work they sent back (those wait for the
    /// runtime, not the other way round: `rt/inbox.rs`, "Autojump").
    fn thread_work_in_flight(&self) -> bool {
        self.thread_work.load(Ordering::SeqCst) > self.inbox.callbacks()
    }

    /// Whether nothing can ever wake this runtime, given that the root is not woken.
    ///
    /// Never on the real clock (another thread may wake it at any time). On a mock clock,
    /// an I/O source may become ready and thread work may finish, so either keeps the
    /// runtime alive; with autojump, so does any armed timer.
    fn deadlock(&self) -> Option<Deadlock> {
        let Clock::Mock { autojump, .. } = &self.clock else {
            return None;
        };
        if self.reactor.has_sources()
            || self.thread_work_in_flight()
            || self.remote_handles.load(Ordering::Acquire) > 0
        {
            return None;
        }
        // A remote handle on another thread may have woken the root and then been dropped
        // since the loop last looked at `woken`. Its drop (a release, after the wake) is
        // what made the count above zero, so its wake is visible now: look again. (So for
        // a worker whose `from_thread` job raised `callbacks`: the job is pending.)
        if self.runnable() {
            return None;
        }
        if *autojump {
            self.timers
                .borrow_mut()
                .nearest()
                .is_none()
                .then_some(Deadlock::NoTimer)
        } else {
            Some(Deadlock::ManualClock {
                timers: self.timers.borrow().len(),
            })
        }
    }

    /// Blocks until something may be runnable: an I/O event, a cross-thread wake, or the
    /// nearest deadline (which a mock clock with autojump reaches at once).
    fn park(&self) {
        let timeout = match &self.clock {
            Clock::Mock { autojump: true, .. } => {
                // Thread work in flight: wait for its result (which wakes the root) instead
                // of jumping, as Trio's autojump does, so that time never runs ahead of it.
                let in_flight = self.thread_work_in_flight();
                // A call that just finished woke the root before it lowered the count; a
                // worker that sent `from_thread` work raised `pending` before `callbacks`.
                if !in_flight && self.runnable() {
                    return;
                }
                let nearest = self.timers.borrow_mut().nearest();
                if let Some(deadline) = nearest.filter(|_| !in_flight) {
                    // Give I/O and other threads their chance before time moves, so that
                    // virtual time never runs ahead of work that is already done.
                    if self.io_woke_the_root() {
                        return;
                    }
                    self.clock.jump_to(deadline);
                    return;
                }
                None
            }
            Clock::Mock { .. } => None,
            // Until the latest deadline that every earlier one can wait for within its
            // slack (`rt/timers.rs`): one wake-up for a cluster of timers, none early.
            Clock::Real { .. } => self
                .real_clock_wake()
                .map(|d| d.saturating_duration_since(Instant::now())),
        };
        self.root.parked.store(true, Ordering::SeqCst);
        // Re-check after announcing the park: a wake that raced with us is not lost,
        // because either we see its flag here or it sees `parked` and notifies.
        let runnable = self.runnable();
        let waited = if runnable {
            Ok(())
        } else {
            self.reactor.wait_for_events(timeout)
        };
        // Not parked any more, before a single waker runs: the wakes of the ready sources
        // below come from this thread, and must not notify the poller (an eventfd write,
        // and a next wait that returns at once: 6 system calls per reactor wake, measured
        // in BENCHMARKS.md, "Issue 14"). A wake from another thread from here on only sets
        // `woken`, which the loop reads next.
        self.root.parked.store(false, Ordering::SeqCst);
        if let Err(e) = waited {
            reactor_failed(e);
        }
        if !runnable {
            self.reactor.wake_ready();
        }
    }

    /// Until when a park on the real clock blocks: the timer queue's wake time, the
    /// latest deadline every earlier timer can wait for within its slack (`rt/timers.rs`);
    /// `None` when no timer is armed.
    fn real_clock_wake(&self) -> Option<Instant> {
        self.timers.borrow_mut().wake_time()
    }

    /// Looks at the reactor without blocking, when I/O sources are registered; whether
    /// that (or anything else meanwhile) woke the root.
    pub(crate) fn io_woke_the_root(&self) -> bool {
        if !self.reactor.has_sources() {
            return false;
        }
        self.reactor_wait(Some(Duration::ZERO));
        self.runnable()
    }

    fn reactor_wait(&self, timeout: Option<Duration>) {
        if let Err(e) = self.reactor.wait(timeout) {
            reactor_failed(e);
        }
    }
}

/// Configures and starts a runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// // A test of a one-hour timeout that takes microseconds:
/// let fired = trellis::Builder::new().autojump().run(async {
///     trellis::move_on_after(Duration::from_secs(3600), trellis::sleep_forever()).await
/// });
/// assert_eq!(fired, None);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a Builder does nothing until `run` is called"]
pub struct Builder {
    clock: ClockChoice,
    /// The bound on `to_thread`'s worker threads; `None`: [`pool::default_limit`].
    thread_limit: Option<usize>,
    instruments: Instruments,
    system_tasks: SystemTasks,
    /// Keep a record per task for `dump_tree` (see `Builder::task_tree`).
    task_tree: bool,
    /// [`Builder::shuffle_seed`]: `None` runs ready units in FIFO order.
    shuffle_seed: Option<u64>,
}

/// What makes the system tasks a [`Builder`]'s settings run beside the root.
type MakeSystemTask = Arc<dyn Fn() -> SystemTask + Send + Sync>;

#[derive(Clone, Default)]
struct SystemTasks(Vec<MakeSystemTask>);

impl std::fmt::Debug for SystemTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} system task(s)", self.0.len())
    }
}

/// The instruments a [`Builder`] installs (`Send + Sync`, so that the builder stays
/// `Send`).
#[derive(Clone, Default)]
struct Instruments(Vec<Arc<dyn Instrument + Send + Sync>>);

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} instrument(s)", self.0.len())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ClockChoice {
    #[default]
    Real,
    Mock,
    Autojump,
}

impl Builder {
    /// A builder for a runtime on the real clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let answer = trellis::Builder::new().run(async { 6 * 7 });
    /// assert_eq!(answer, 42);
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Runs on a mock clock that moves only when [`advance`](crate::advance) is called.
    ///
    /// Virtual time starts at the real instant the runtime is built.
    ///
    /// # Panics
    ///
    /// [`run`](Builder::run) panics instead of hanging when the runtime is deadlocked:
    /// every task is blocked, no I/O source is registered, no thread work is in flight and
    /// no [`RemoteCancel`](crate::RemoteCancel) that could still cancel (one not used yet,
    /// whose scope has not ended) is alive. Armed timers do not prevent it: time moves only by `advance`, and no task can run to
    /// call it. The message lists the root and where every live nursery child was spawned.
    /// A task woken by a thread the runtime does not know of (a waker handed to a
    /// `std::thread`) is not waited for; such tests belong on the real clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().mock_clock().run(async {
    ///     let start = trellis::now();
    ///     trellis::yield_now().await;
    ///     assert_eq!(trellis::now(), start, "time does not move by itself");
    ///     trellis::advance(Duration::from_secs(60));
    ///     assert_eq!(trellis::now() - start, Duration::from_secs(60));
    /// });
    /// ```
    ///
    /// A task that waits for a timer nobody advances to is a deadlock, reported at once
    /// (not run here: the behaviour tests check it under a watchdog):
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().mock_clock().run(async {
    ///     trellis::sleep(Duration::from_secs(1)).await; // panics: nobody calls `advance`
    /// });
    /// ```
    pub fn mock_clock(mut self) -> Builder {
        self.clock = ClockChoice::Mock;
        self
    }

    /// Runs on a mock clock with autojump: whenever every task is blocked, virtual time
    /// jumps straight to the nearest deadline. Tests of long timeouts take microseconds.
    ///
    /// While [`to_thread`](crate::to_thread) work is in flight time does not jump: the
    /// executor waits for the thread's result first (Trio's autojump does the same), so
    /// tests that mix `to_thread` with timeouts are deterministic. A worker blocked in
    /// [`RuntimeHandle::run`](crate::RuntimeHandle::run) or `run_sync` waits for the
    /// runtime, so it is not waited for meanwhile (the work it sent may need time to
    /// move). Other work done by
    /// threads the runtime does not know of is not waited for (only I/O already signalled
    /// is); such tests should use the real clock.
    ///
    /// # Panics
    ///
    /// [`run`](Builder::run) panics instead of hanging when the runtime is deadlocked:
    /// every task is blocked and no timer is armed (nothing to jump to), no I/O source is
    /// registered, no thread work is in flight and no [`RemoteCancel`](crate::RemoteCancel)
    /// that could still cancel (one not used yet, whose scope has not ended) is alive: such
    /// a handle may be on another thread, about to wake the runtime. The message lists the
    /// root and where every live nursery child was spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let timed_out = trellis::Builder::new().autojump().run(async {
    ///     trellis::move_on_after(Duration::from_secs(3600), trellis::sleep_forever()).await
    /// });
    /// assert_eq!(timed_out, None);
    /// ```
    ///
    /// Without the timeout nothing could ever end the wait; that is reported at once (not
    /// run here: the behaviour tests check it under a watchdog):
    ///
    /// ```no_run
    /// trellis::Builder::new().autojump().run(trellis::sleep_forever()); // panics: deadlock
    /// ```
    pub fn autojump(mut self) -> Builder {
        self.clock = ClockChoice::Autojump;
        self
    }

    /// Sets how many worker threads [`to_thread`](crate::to_thread) may use at once; further
    /// calls wait in a FIFO queue for a free thread. The default is the number of CPUs, at
    /// least 8. Threads are spawned on demand, exit after 10 seconds (real time) without
    /// work, and exit as soon as they are idle once the runtime has ended.
    ///
    /// # Panics
    ///
    /// Panics when `limit` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let sum = trellis::Builder::new().thread_limit(2).run(async {
    ///     let a = trellis::to_thread(|| 20);
    ///     let b = trellis::to_thread(|| 22);
    ///     a.await + b.await
    /// });
    /// assert_eq!(sum, 42);
    /// ```
    pub fn thread_limit(mut self, limit: usize) -> Builder {
        assert!(
            limit > 0,
            "Builder::thread_limit: the limit must be at least 1"
        );
        self.thread_limit = Some(limit);
        self
    }

    /// Registers an [`Instrument`]: its hooks see everything the runtime does, from
    /// `before_run` to `after_run`. Call it several times for several instruments (they
    /// are called in the order they were registered). Instruments that are not `Send`
    /// can be added from inside the runtime with [`instrument::add`](crate::instrument::add).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use trellis::instrument::{Instrument, TaskInfo, TaskOutcome};
    ///
    /// struct Log(Arc<Mutex<Vec<String>>>);
    /// impl Instrument for Log {
    ///     fn task_exited(&self, task: &TaskInfo, outcome: &TaskOutcome) {
    ///         self.0.lock().unwrap().push(format!("{}: {outcome}", task.name()));
    ///     }
    /// }
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// trellis::Builder::new()
    ///     .instrument(Log(log.clone()))
    ///     .run(trellis::nursery(async |n| {
    ///         n.spawn(async {});
    ///     }));
    /// assert_eq!(*log.lock().unwrap(), ["the nursery body: returned", "child 1: returned"]);
    /// ```
    pub fn instrument<I: Instrument + Send + Sync + 'static>(mut self, instrument: I) -> Builder {
        self.instruments.0.push(Arc::new(instrument));
        self
    }

    /// Keeps a record of every task (its name, spawn time, polls, what it waits on), so
    /// that [`dump_tree`](crate::dump_tree) lists the tasks of every nursery; without it,
    /// the tree shows the nurseries and scopes only, and spawning and polling record
    /// nothing (what a task costs stays the floor). On by default on the mock clocks (so a
    /// deadlock report lists the tasks) and whenever an instrument is given here;
    /// [`dump_tree_on_signal`](Builder::dump_tree_on_signal) turns it on.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::Builder::new().task_tree().run(trellis::nursery(async |n| {
    ///     n.spawn_named("worker", trellis::yield_now());
    ///     assert!(trellis::dump_tree().to_string().contains("child 1 \"worker\": ready"));
    /// }));
    /// ```
    pub fn task_tree(mut self) -> Builder {
        self.task_tree = true;
        self
    }

    /// Adds a system task that every runtime of this builder runs beside its root, outside
    /// every nursery, until the root completes (for settings of the layers above).
    pub(crate) fn with_system_task(mut self, make: MakeSystemTask) -> Builder {
        self.system_tasks.0.push(make);
        self
    }

    /// Permutes each round of ready tasks, in every nursery, with a generator seeded by
    /// `seed`, instead of running them in the order they became ready (FIFO, the default).
    ///
    /// For tests: a program that relies on an order the runtime does not promise (that a
    /// child spawned first runs first, that a woken task runs before another) fails under
    /// some seeds. On a mock clock ([`mock_clock`](Builder::mock_clock),
    /// [`autojump`](Builder::autojump)) a run is then a deterministic simulation: the same
    /// seed gives the same order, so a failing seed replays its failure exactly (with I/O
    /// or other threads the order of their events still varies).
    /// `#[trellis::test(shuffle)]` runs a test under many seeds and prints the one that
    /// fails. What is permuted is the order within a round; every ready task still runs
    /// once per round, so nothing starves.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    ///
    /// let order = |seed| {
    ///     let order = RefCell::new(Vec::new());
    ///     trellis::Builder::new().autojump().shuffle_seed(seed).run(async {
    ///         trellis::nursery(async |n| {
    ///             for i in 0..8 {
    ///                 let order = &order;
    ///                 n.spawn(async move { order.borrow_mut().push(i) });
    ///             }
    ///         })
    ///         .await
    ///         .unwrap();
    ///     });
    ///     order.into_inner()
    /// };
    /// assert_eq!(order(7), order(7), "a seed replays its order");
    /// let mut sorted = order(7);
    /// sorted.sort();
    /// assert_eq!(sorted, (0..8).collect::<Vec<_>>(), "every child ran once");
    /// ```
    pub fn shuffle_seed(mut self, seed: u64) -> Builder {
        self.shuffle_seed = Some(seed);
        self
    }

    /// Runs `fut` to completion on a new runtime on this thread and returns its output.
    ///
    /// # Panics
    ///
    /// Panics when a trellis runtime already runs on this thread (use `.await` instead),
    /// and when `fut` panics. (The I/O poller is made at the first socket; a failure to
    /// make it is that socket's error.) On a
    /// mock clock, panics when the runtime is deadlocked (see [`mock_clock`] and
    /// [`autojump`]) instead of waiting forever.
    ///
    /// [`mock_clock`]: Builder::mock_clock
    /// [`autojump`]: Builder::autojump
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // On the autojump clock an hour of virtual time passes at once.
    /// let waited = trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     trellis::sleep(Duration::from_secs(3600)).await;
    ///     trellis::now() - start
    /// });
    /// assert_eq!(waited, Duration::from_secs(3600));
    /// ```
    #[track_caller]
    pub fn run<F: Future>(self, fut: F) -> F::Output {
        // Checked here, not inside the thread-local's closure, so that the panic points at
        // the caller's line.
        if is_entered() {
            panic!(
                "trellis::run was called inside a trellis runtime; a runtime cannot be \
                 nested — `.await` the future instead, or spawn it in a nursery"
            );
        }
        // Dropped last: the thread's state from outside comes back once the run is over.
        let _outside = crate::rt::state::SET_ASIDE_THREAD_STATE
            .get()
            .map(|set_aside| set_aside());
        let core = self.build_core();
        let _entered = enter(core.clone());
        let _shuffle = crate::rt::shuffle::enter(self.shuffle_seed);
        // Dropped before `_entered`: `after_run` still runs inside the runtime.
        let _instruments = hooks::install(
            &self.instruments.0,
            self.task_tree || self.clock != ClockChoice::Real,
        );
        for make in &self.system_tasks.0 {
            core.inbox.start(make());
        }
        // Dropped before `_entered` (also on unwind): `from_thread` work still queued or
        // running is dropped while the runtime is current, and its callers are told.
        let _inbox = CloseInbox(&core);
        // The root task runs in a copy of the thread's context: what it sets stays inside.
        let entered = crate::context::values::enter_child(crate::context::values::snapshot());
        let out = drive(&core, fut, Location::caller());
        drop(entered.leave());
        out
    }

    #[track_caller]
    fn build_core(&self) -> Rc<Core> {
        // No poller yet: the reactor makes it at the first registration (`rt/reactor.rs`).
        let reactor = Reactor::new();
        let clock = match self.clock {
            ClockChoice::Real => Clock::real(),
            ClockChoice::Mock | ClockChoice::Autojump => Clock::Mock {
                now: std::cell::Cell::new(Instant::now()),
                autojump: self.clock == ClockChoice::Autojump,
            },
        };
        let root = Arc::new(RootWake::new(&reactor));
        let pool = Pool::new(self.thread_limit.unwrap_or_else(pool::default_limit));
        Rc::new(Core::new(clock, reactor, root, pool))
    }
}

/// Closes the runtime's inbox when `run` ends (`rt/inbox.rs`, invariant 2), and forgets
/// its clock's readings (a nursery run later on this thread outside any runtime reads
/// its own).
struct CloseInbox<'a>(&'a Core);

impl Drop for CloseInbox<'_> {
    fn drop(&mut self) {
        self.0.inbox.close();
        self.0.clock.forget_readings();
    }
}

/// Polls the root whenever it is woken, fires timers, parks; panics on a deadlock.
///
/// `#[track_caller]`, so that a deadlock panic points at the `run` call.
#[track_caller]
fn drive<F: Future>(core: &Core, fut: F, run_at: &'static Location<'static>) -> F::Output {
    let waker = Waker::from(core.root.clone());
    let mut cx = Context::from_waker(&waker);
    // In an `Option` so that a deadlock can drop the root (collecting the report) before
    // panicking, without boxing it.
    let mut fut = pin!(Some(fut));
    let mut polls: u32 = 0;
    loop {
        core.clock.new_tick();
        if core.root.woken.swap(false, Ordering::SeqCst) {
            let root = fut
                .as_mut()
                .as_pin_mut()
                .expect("the root is only dropped to panic");
            if let Poll::Ready(out) = root.poll(&mut cx) {
                return out;
            }
            polls = polls.wrapping_add(1);
            if polls % REACTOR_TICK == 0 && core.reactor.has_sources() {
                core.reactor_wait(Some(Duration::ZERO));
            }
        }
        // Work other threads sent (`from_thread`); one `Cell` read while no handle exists.
        core.inbox.run();
        core.fire_due_timers();
        if !core.runnable() {
            // Idle: wake the `wait_all_tasks_blocked` waiters first, if any (`rt/idle.rs`),
            // before time jumps or a deadlock is declared.
            if core.wake_idle_waiters() {
                continue;
            }
            if let Some(deadlock) = core.deadlock() {
                panic_deadlocked(deadlock, fut, run_at, || core.inbox.close_for_report());
            }
            core.park();
            core.clock.new_tick();
            core.fire_due_timers();
        }
    }
}

/// Runs `fut` to completion on a new runtime with the real clock.
///
/// Like `asyncio.run`: the future is the root task; everything else runs in nurseries it
/// opens.
///
/// # Panics
///
/// Panics when called inside a trellis runtime (a runtime cannot be nested), and when
/// `fut` panics.
///
/// # Examples
///
/// ```
/// let answer = trellis::run(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
#[track_caller]
pub fn run<F: Future>(fut: F) -> F::Output {
    Builder::new().run(fut)
}

/// Lets every other ready task run once before this one continues.
///
/// # Cancellation
///
/// Cancel-safe: it holds nothing.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     for _ in 0..3 {
///         trellis::yield_now().await;
///     }
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow {
        yielded: false,
        done: false,
    }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "yield_now does nothing unless awaited"]
pub struct YieldNow {
    /// It has returned `Pending` once; the next poll completes.
    yielded: bool,
    /// It has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            self.done = true;
            return Poll::Ready(());
        }
        self.yielded = true;
        // The task tree tells a yield from the unit being woken during its own poll
        // (`nursery/children.rs`, `poll_unit`): nothing to record here.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// `futures::select!` and other `futures-core` combinators take a `YieldNow` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// trellis::run(async {
///     let mut turn = trellis::yield_now();
///     assert!(!turn.is_terminated());
///     (&mut turn).await;
///     assert!(turn.is_terminated());
/// });
/// ```
impl FusedFuture for YieldNow {
    /// True once it has completed.
    fn is_terminated(&self) -> bool {
        self.done
    }
}
#[cold]
fn reactor_failed(e: std::io::Error) -> ! {
    panic!("trellis: the reactor failed to wait for events: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::sleep::sleep_until;
    use crate::rt::state::with_core;

    /// On the real clock a park waits for the latest deadline within every earlier
    /// timer's slack (one wake-up for the cluster), not for the nearest one; no real time
    /// passes: the sleeps are polled once and dropped.
    #[test]
    fn a_real_clock_park_waits_for_a_cluster_of_deadlines_at_once() {
        run(async {
            let start = crate::rt::clock::now();
            let ms = Duration::from_millis;
            // Armed in this tick: 300 ms ahead, so 1 ms of slack each (the cap).
            let mut first = pin!(sleep_until(start + ms(300)));
            let mut within = pin!(sleep_until(start + ms(300) + Duration::from_micros(100)));
            let mut beyond = pin!(sleep_until(start + ms(302)));
            std::future::poll_fn(|cx| {
                assert!(first.as_mut().poll(cx).is_pending());
                assert!(within.as_mut().poll(cx).is_pending());
                assert!(beyond.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            with_core(|core| {
                assert_eq!(core.timers.borrow_mut().nearest(), Some(start + ms(300)));
                assert_eq!(
                    core.real_clock_wake(),
                    Some(start + ms(300) + Duration::from_micros(100))
                );
            });
        });
    }
}
