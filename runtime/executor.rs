//! The executor: drives one root future on the current thread and parks in the reactor.
//!
//! # State
//!
//! - `CORE` (thread-local): the runtime running on this thread, if any. Set for the whole
//!   of [`Builder::run`] and cleared when it returns or unwinds; a second `run` on the same
//!   thread finds it set and panics.
//! - [`RootWake`]: the root future's waker. `woken` says the root must be polled again;
//!   `parked` says the executor is (about to be) blocked in the reactor, so a waker on
//!   another thread must `notify` the poller. Wakes from the runtime's own thread never
//!   find `parked` set and so never make a system call.
//!
//! # The loop
//!
//! Poll the root when woken; fire the timers that are due; when nothing is runnable, park
//! in the reactor until the nearest deadline (real clock) or jump to it (autojump). The
//! reactor is never entered while the root is runnable, except for a non-blocking look
//! every [`REACTOR_TICK`] polls when I/O sources are registered, so that a task that keeps
//! waking itself cannot starve I/O.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;
use crate::time::{Clock, TimerAction, TimerQueue};

/// Every this many root polls, a runnable runtime looks at the reactor without blocking.
const REACTOR_TICK: u32 = 61;

thread_local! {
    static CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// The state of one runtime, shared by everything running on it.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) clock: Clock,
    pub(crate) timers: RefCell<TimerQueue>,
    pub(crate) reactor: Reactor,
    root: Arc<RootWake>,
}

impl Core {
    /// Fires every timer whose deadline has passed. Timers are popped one at a time so
    /// that an action (waking a task, cancelling a scope) may arm or disarm others.
    pub(crate) fn fire_due_timers(&self) {
        if self.timers.borrow().len() == 0 {
            return;
        }
        let now = self.clock.now();
        loop {
            let action = self.timers.borrow_mut().pop_due(now);
            match action {
                None => break,
                Some(TimerAction::Wake(waker)) => waker.wake(),
                Some(TimerAction::CancelScope(node)) => {
                    if let Some(node) = node.upgrade() {
                        node.deadline_fired();
                    }
                }
            }
        }
    }

    /// Blocks until something may be runnable: an I/O event, a cross-thread wake, or the
    /// nearest deadline (which a mock clock with autojump reaches at once).
    fn park(&self) {
        let nearest = self.timers.borrow_mut().nearest();
        let timeout = match &self.clock {
            Clock::Mock { autojump: true, .. } => {
                if let Some(deadline) = nearest {
                    // Give I/O and other threads their chance before time moves, so that
                    // virtual time never runs ahead of work that is already done.
                    if self.reactor.has_sources() {
                        self.reactor_wait(Some(Duration::ZERO));
                        if self.root.woken.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                    self.clock.jump_to(deadline);
                    return;
                }
                None
            }
            Clock::Mock { .. } => None,
            Clock::Real => nearest.map(|d| d.saturating_duration_since(Instant::now())),
        };
        self.root.parked.store(true, Ordering::SeqCst);
        // Re-check after announcing the park: a wake that raced with us is not lost,
        // because either we see its flag here or it sees `parked` and notifies.
        if !self.root.woken.load(Ordering::SeqCst) {
            self.reactor_wait(timeout);
        }
        self.root.parked.store(false, Ordering::SeqCst);
    }

    fn reactor_wait(&self, timeout: Option<Duration>) {
        if let Err(e) = self.reactor.wait(timeout) {
            panic!("trellis: the reactor failed to wait for events: {e}");
        }
    }
}

/// The root future's waker.
#[derive(Debug)]
struct RootWake {
    woken: AtomicBool,
    parked: AtomicBool,
    poller: Arc<polling::Poller>,
}

impl Wake for RootWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            // Only reachable from another thread: the runtime's own thread is never
            // parked while it runs code that could wake. A failed notify leaves the
            // runtime to wake at its next deadline; there is no caller to report it to.
            let _ = self.poller.notify();
        }
    }
}

/// Calls `f` with the runtime running on this thread.
///
/// # Panics
///
/// Panics when no trellis runtime runs on this thread.
#[track_caller]
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CORE.with(|slot| match &*slot.borrow() {
        Some(core) => f(core),
        None => panic!(
            "this needs a trellis runtime, but none is running on this thread; \
             call it from inside `trellis::run(async {{ ... }})` or a `#[trellis::main]` function"
        ),
    })
}

/// Calls `f` with the runtime running on this thread, if there is one.
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CORE.try_with(|slot| slot.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// Clears `CORE` when `run` ends, also by unwinding.
struct EnterGuard;

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CORE.with(|slot| slot.borrow_mut().take());
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
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Runs on a mock clock that moves only when [`advance`](crate::advance) is called.
    ///
    /// Virtual time starts at the real instant the runtime is built.
    pub fn mock_clock(mut self) -> Builder {
        self.clock = ClockChoice::Mock;
        self
    }

    /// Runs on a mock clock with autojump: whenever every task is blocked, virtual time
    /// jumps straight to the nearest deadline. Tests of long timeouts take microseconds.
    ///
    /// Work done by other threads is not waited for before time jumps (only I/O already
    /// signalled is); tests that mix threads with timeouts should use the real clock.
    pub fn autojump(mut self) -> Builder {
        self.clock = ClockChoice::Autojump;
        self
    }

    /// Runs `fut` to completion on a new runtime on this thread and returns its output.
    ///
    /// # Panics
    ///
    /// Panics when a trellis runtime already runs on this thread (use `.await` instead),
    /// when the operating system refuses to create a poller, and when `fut` panics.
    #[track_caller]
    pub fn run<F: Future>(self, fut: F) -> F::Output {
        let core = self.build_core();
        CORE.with(|slot| {
            let mut slot = slot.borrow_mut();
            assert!(
                slot.is_none(),
                "trellis::run was called inside a trellis runtime; a runtime cannot be \
                 nested — `.await` the future instead, or spawn it in a nursery"
            );
            *slot = Some(core.clone());
        });
        let _guard = EnterGuard;
        // The root task runs in a copy of the thread's context: what it sets stays inside.
        let entered = crate::context::enter_child(crate::context::snapshot());
        let out = drive(&core, fut);
        drop(entered.leave());
        out
    }

    #[track_caller]
    fn build_core(&self) -> Rc<Core> {
        let reactor =
            Reactor::new().unwrap_or_else(|e| panic!("trellis: cannot create the I/O poller: {e}"));
        let clock = match self.clock {
            ClockChoice::Real => Clock::Real,
            ClockChoice::Mock | ClockChoice::Autojump => Clock::Mock {
                now: std::cell::Cell::new(Instant::now()),
                autojump: self.clock == ClockChoice::Autojump,
            },
        };
        let root = Arc::new(RootWake {
            woken: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            poller: reactor.poller().clone(),
        });
        Rc::new(Core {
            clock,
            timers: RefCell::new(TimerQueue::default()),
            reactor,
            root,
        })
    }
}

fn drive<F: Future>(core: &Core, fut: F) -> F::Output {
    let waker = Waker::from(core.root.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut polls: u32 = 0;
    loop {
        if core.root.woken.swap(false, Ordering::SeqCst) {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            polls = polls.wrapping_add(1);
            if polls % REACTOR_TICK == 0 && core.reactor.has_sources() {
                core.reactor_wait(Some(Duration::ZERO));
            }
        }
        core.fire_due_timers();
        if !core.root.woken.load(Ordering::SeqCst) {
            core.park();
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
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "yield_now does nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
