//! The state of a runtime, and which runtime runs on this thread.
//!
//! # State
//!
//! - `CORE` (thread-local): the runtime running on this thread, if any. Set for the whole
//!   of `Builder::run` ([`enter`]) and cleared when it returns or unwinds (by the guard
//!   `enter` returns); a second `run` on the same thread finds it set ([`is_entered`]) and
//!   panics. Its contents are `ManuallyDrop`, so that the thread-local has no destructor
//!   and its accesses (every timer, clock read and registration) need no state check:
//!   nothing is lost, since no thread ends inside `run` without unwinding through the
//!   guard.
//! - [`RootWake`]: the root future's waker. `woken` says the root must be polled again;
//!   `parked` says the executor is (about to be) blocked in the reactor, so a waker on
//!   another thread must interrupt it: `notify` the poller if the runtime has one
//!   (`rt/reactor.rs` makes it at the first registration), else `unpark` the runtime's
//!   thread, which then waits in `std::thread::park_timeout`. Wakes from the runtime's
//!   own thread never find `parked` set and so never make a system call.
//! - [`RuntimeId`]: every [`Core`] gets a process-unique id. What belongs to one runtime
//!   (a timer key, an I/O registration, a scope's deadline) carries the id and compares
//!   it with the current runtime's before touching any state, so that a value moved into
//!   another runtime never corrupts that runtime's queues.
//! - `Core::inbox`: work other threads send through a `RuntimeHandle` (`rt/inbox.rs`); the
//!   executor looks at it only once a handle was made.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Wake;

use crate::rt::clock::Clock;

/// Thread state of a layer above the engine that a new runtime must start without, as
/// the scope tree's position when `run` is called inside a nursery that another executor
/// polls (the new runtime's nurseries would link under that foreign unit). The layer sets
/// this the first time it makes such state; `run` calls it and holds what it returns,
/// which puts the state back when dropped, for the whole run. (A function pointer set from
/// above: the engine cannot name the layers on top of it.)
pub(crate) static SET_ASIDE_THREAD_STATE: std::sync::OnceLock<fn() -> Box<dyn std::any::Any>> =
    std::sync::OnceLock::new();
use crate::rt::idle::IdleWaiters;
use crate::rt::inbox::Inbox;
use crate::rt::pool::Pool;
use crate::rt::reactor::{Reactor, SharedPoller};
use crate::rt::timers::TimerQueue;

thread_local! {
    static CORE: RefCell<ManuallyDrop<Option<Rc<Core>>>> =
        const { RefCell::new(ManuallyDrop::new(None)) };
}

/// Identifies one runtime among all the runtimes of the process, past and present.
///
/// Ids come from a global counter and are never reused, so an id compare (a plain integer
/// compare) tells whether something armed or registered in some runtime belongs to the
/// one running now. Non-zero, so that `Option<TimerKey>` costs no extra word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuntimeId(NonZeroU64);

impl RuntimeId {
    /// A fresh id, different from every id handed out before in this process.
    pub(crate) fn next() -> RuntimeId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: the ids only need to be distinct, not ordered with anything else.
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        RuntimeId(NonZeroU64::new(id).expect("more than 2^64 runtimes were built"))
    }
}

/// The state of one runtime, shared by everything running on it.
#[derive(Debug)]
pub(crate) struct Core {
    /// This runtime's id; compared with the id carried by timer keys, registrations and
    /// scope deadlines before they touch this runtime's state.
    pub(crate) id: RuntimeId,
    pub(crate) clock: Clock,
    pub(crate) timers: RefCell<TimerQueue>,
    pub(crate) reactor: Reactor,
    /// Work handed to other threads whose result will wake a task of this runtime (thread
    /// work in flight). While it is non-zero a mock clock is not deadlocked: the result
    /// may still come. Counted on the runtime's own thread (submitted, result received).
    /// Raised when `to_thread` submits a call; lowered once, by the worker after it stored
    /// the result and woke the caller (so whoever sees it lowered also sees the wake), or
    /// by the future's drop if that comes first (the runtime no longer waits for it). An
    /// atomic because the worker lowers it; a leaked future does not keep it raised.
    pub(crate) thread_work: Arc<AtomicUsize>,
    /// The worker threads of `to_thread`; closed when the runtime ends.
    pub(crate) pool: Pool,
    /// Live [`RemoteCancel`](crate::RemoteCancel) handles of scopes of this runtime: each
    /// may be on another thread and wake the runtime, so a mock clock is not deadlocked
    /// while any exists.
    pub(crate) remote_handles: Arc<AtomicUsize>,
    pub(crate) root: Arc<RootWake>,
    /// The futures of `wait_all_tasks_blocked` waiting for the runtime to be idle
    /// (`rt/idle.rs`); empty unless a test uses it.
    pub(crate) idle: RefCell<IdleWaiters>,
    /// Work sent by other threads through a `RuntimeHandle`, and the system tasks it
    /// started (`rt/inbox.rs`); untouched unless a handle is made.
    pub(crate) inbox: Inbox,
}

impl Core {
    /// A runtime's state: its clock, its reactor, and the waker of its root future.
    pub(crate) fn new(clock: Clock, reactor: Reactor, root: Arc<RootWake>, pool: Pool) -> Core {
        let id = RuntimeId::next();
        Core {
            id,
            clock,
            timers: RefCell::new(TimerQueue::new(id)),
            reactor,
            thread_work: Arc::new(AtomicUsize::new(0)),
            pool,
            remote_handles: Arc::new(AtomicUsize::new(0)),
            inbox: Inbox::new(id, root.clone()),
            root,
            idle: RefCell::new(IdleWaiters::default()),
        }
    }
}

/// The root future's waker.
#[derive(Debug)]
pub(crate) struct RootWake {
    pub(crate) woken: AtomicBool,
    pub(crate) parked: AtomicBool,
    /// The runtime's poller once it has one (`rt/reactor.rs`).
    poller: SharedPoller,
    /// The runtime's thread, unparked by a wake from another thread while the runtime
    /// has no poller.
    thread: std::thread::Thread,
}

impl RootWake {
    /// The waker of a root that must be polled first, for a runtime running on this
    /// thread whose reactor is `reactor`.
    pub(crate) fn new(reactor: &Reactor) -> RootWake {
        RootWake {
            woken: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            poller: reactor.shared_poller().clone(),
            thread: std::thread::current(),
        }
    }

    /// Interrupts the executor if it is parked; call after raising the flag that says
    /// what to do (`woken`, the inbox's `pending`).
    ///
    /// Never loses a wake: the executor stores `parked` and then re-reads the flags before
    /// it blocks, this reads `parked` after the flag was raised (both `SeqCst`), so either
    /// the executor sees the flag or this sees `parked`. And never calls into the system
    /// from the runtime's own thread, which is never parked while it runs code that could
    /// wake (`parked` is cleared before the reactor's wakes run, `rt/executor.rs`'s
    /// `park`). The way the executor blocks cannot change while it is parked: only its own
    /// thread makes the poller, while running; so a `parked` seen here pairs with the
    /// poller seen here (a stale `parked`, from a park that has ended, costs one spurious
    /// wake-up of a later park, and its flag was seen by the executor's loop).
    pub(crate) fn unpark(&self) {
        if !self.parked.load(Ordering::SeqCst) {
            return;
        }
        match self.poller.get() {
            // A failed notify leaves the runtime to wake at its next deadline; there is
            // no caller to report it to.
            Some(poller) => drop(poller.notify()),
            None => self.thread.unpark(),
        }
    }
}

impl Wake for RootWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.unpark();
    }
}

/// Calls `f` with the runtime running on this thread.
///
/// # Panics
///
/// Panics when no trellis runtime runs on this thread. The panic is raised here, outside
/// the thread-local's closure, so that `#[track_caller]` reports the user's line (a panic
/// inside the closure would be located in this file).
#[track_caller]
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    match try_with_core(f) {
        Some(out) => out,
        None => no_runtime(),
    }
}

#[cold]
#[track_caller]
fn no_runtime() -> ! {
    panic!(
        "this needs a trellis runtime, but none is running on this thread; \
         call it from inside `trellis::run(async {{ ... }})` or a `#[trellis::main]` function"
    )
}

/// Calls `f` with the runtime running on this thread, if there is one.
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CORE.try_with(|slot| slot.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// [`with_core`], inlined into its caller: for the few hot paths that run once per
/// timer or clock read (`sleep`, `Sleep`'s poll and drop, `now`), where the call costs
/// ≈ 10 % of `timer_arm_cancel`. Inlined everywhere, it made `spawn_one` slower
/// (BENCHMARKS.md, issue 12's lever 12).
#[inline(always)]
#[track_caller]
pub(crate) fn with_core_inlined<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    match try_with_core_inlined(f) {
        Some(out) => out,
        None => no_runtime(),
    }
}

/// [`try_with_core`], inlined into its caller (see [`with_core_inlined`]). The same body
/// as `try_with_core`, written twice: `try_with_core` calling this one changed how the
/// compiler inlines it elsewhere (+10 to +20 Ir on the nursery paths, measured).
#[inline(always)]
pub(crate) fn try_with_core_inlined<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CORE.try_with(|slot| slot.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// Clears `CORE` when `run` ends, also by unwinding.
pub(crate) struct EnterGuard;

impl Drop for EnterGuard {
    fn drop(&mut self) {
        // Taken out, then dropped outside the borrow: the core's drop (its timers' wakers,
        // the reactor's sources) may run code that looks for a runtime.
        let core = CORE.with(|slot| slot.borrow_mut().take());
        drop(core);
    }
}

/// Whether a runtime runs on this thread.
pub(crate) fn is_entered() -> bool {
    CORE.with(|slot| slot.borrow().is_some())
}

/// Makes `core` this thread's runtime until the returned guard is dropped (also by
/// unwinding).
pub(crate) fn enter(core: Rc<Core>) -> EnterGuard {
    CORE.with(|slot| **slot.borrow_mut() = Some(core));
    EnterGuard
}
