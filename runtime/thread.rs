//! Threads and the runtime: `to_thread`, a blocking call on a worker thread awaited by a
//! task (Trio's `to_thread.run_sync`), and `from_thread`, work other threads run on the
//! runtime through a [`RuntimeHandle`] (Trio's `TrioToken` with `from_thread.run` /
//! `run_sync`).
//!
//! # State
//!
//! A call and its future share a [`Slot`] (an `Arc<Mutex<..>>`): the result once the call
//! returned, the waker of the task that awaits it, and whether the future is gone. The
//! future submits the call to its runtime's pool (`rt/pool.rs`) at its first poll and
//! raises the runtime's `thread_work` then; the slot records that runtime, and a later poll
//! anywhere else panics (as a `Sleep`'s does), since no other runtime counts the call. The
//! count is lowered exactly once, under the slot's lock, by whoever takes `counter` first:
//! the worker, after it stored the result and woke the caller (so the executor never sees
//! the count lowered without the wake; it then wakes the runtime's root, since an executor
//! parked on the count needs telling), or the future's drop. So `thread_work` counts the
//! calls that a live future still waits for (a leaked future does not hold autojump back
//! forever), and a result that arrives after its future was dropped touches no runtime
//! state: the worker drops it. While a worker runs a call, `WORKER_OF` (thread-local) names
//! the runtime that submitted it, so that `from_thread` work the call sends back counts as
//! a callback (`rt/inbox.rs`, "Autojump").
//!
//! A `from_thread` call and its work share a [`ReplySlot`] (a mutex and a condition
//! variable): the caller blocks on it; the work's end, a [`Reply`], is captured by the job
//! (and for `run`, moved into the system task). It sends the outcome once, and a `Reply`
//! dropped unsent (a job dropped in the queue, a system task dropped at the runtime's end)
//! sends "gone" instead.
//!
//! # Invariants
//!
//! 1. A `from_thread` caller is released exactly once: by the work's outcome, or by the
//!    drop of its `Reply`, which the runtime's end guarantees (`rt/inbox.rs`, invariant 2).
//!    A caller on a runtime's thread is refused before anything is queued, so no runtime
//!    ever waits for itself.
//! 2. A panic in user code sent with `from_thread` is caught on the runtime's thread and
//!    travels back as the payload; the runtime never unwinds because of it.
//!
//! # Context variables
//!
//! A call runs in a copy of its caller's context, taken when `to_thread` is called (as a
//! spawn copies it): every value (`no_inherit` ones too, as in Python's `copy_context`;
//! the call acts for its caller, it is not a child task) is cloned into a `Send` box on
//! the caller's thread ([`send_snapshot`]) and made into a context on the worker for the
//! call. What the call sets stays in that copy and is dropped with it; the worker's own
//! context is put back for its next call. `from_thread` work runs in a copy of the
//! *calling thread's* context, made the same way (as Trio's `from_thread.run` runs in
//! the calling thread's context): a worker's values reach the runtime, and what the work
//! sets there does not come back.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::FusedFuture;

use crate::context::values::{enter_child, send_snapshot};
use crate::rt::inbox::{Mailbox, SystemTask};
use crate::rt::pool::Job;
use crate::rt::state::{RuntimeId, try_with_core, with_core};

/// What a call and its future share.
struct Slot<T> {
    /// `Some` once the call returned (`Err`: it panicked, with the payload).
    result: Option<Result<T, Box<dyn Any + Send>>>,
    /// The waker of the last poll.
    waker: Option<Waker>,
    /// The future is gone: nobody wants the result, and a call not started yet is skipped.
    abandoned: bool,
    /// The runtime's `thread_work`, while this call still counts in it, and the waker of
    /// the runtime's root, woken once the count is lowered.
    counter: Option<(Arc<AtomicUsize>, Waker)>,
    /// The runtime that submitted the call (set before the job is queued): while the call
    /// runs, the worker is marked as that runtime's ([`WORKER_OF`]).
    runtime: Option<RuntimeId>,
}

thread_local! {
    /// The runtime whose `to_thread` call this thread is running, if any: its
    /// `from_thread` work then counts as a callback (`rt/inbox.rs`, "Autojump").
    static WORKER_OF: Cell<Option<RuntimeId>> = const { Cell::new(None) };
}

/// Marks this thread as running a call of `runtime` until dropped (also on unwind).
struct WorkerMark {
    prev: Option<RuntimeId>,
}

impl WorkerMark {
    fn enter(runtime: Option<RuntimeId>) -> WorkerMark {
        WorkerMark {
            prev: WORKER_OF.replace(runtime),
        }
    }
}

impl Drop for WorkerMark {
    fn drop(&mut self) {
        let _ = WORKER_OF.try_with(|w| w.set(self.prev));
    }
}

/// Lowers the runtime's `thread_work` (taken from the slot, so at most once), then wakes
/// the runtime: an executor that looked at the count before it was lowered may be parked
/// waiting for this call (autojump does not jump while thread work is in flight), and
/// nothing else would wake it — the caller's wake came before, and was already seen.
fn uncount(counter: Option<(Arc<AtomicUsize>, Waker)>) {
    if let Some((counter, runtime)) = counter {
        counter.fetch_sub(1, Ordering::SeqCst);
        runtime.wake();
    }
}

fn lock<T>(slot: &Mutex<Slot<T>>) -> MutexGuard<'_, Slot<T>> {
    // Nothing panics while the lock is held (the user's call runs outside it).
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a worker thread of the runtime and waits for its result, without blocking
/// the runtime: other tasks run meanwhile. Trio's `to_thread.run_sync`.
///
/// This is where blocking work goes. A blocking call made in a task itself (a sleep of
/// the thread, a synchronous read or lock, a long computation) stops every task
/// of the runtime until it returns, and nothing reports it: timers fire late on the real
/// clock, and on a mock clock the time it takes is invisible.
///
/// The call is submitted when the future is first polled. At most
/// [`Builder::thread_limit`](crate::Builder::thread_limit) calls run at once; the others
/// wait, in order, for a free thread. On a mock clock a runtime with a call in flight is
/// never declared deadlocked, and with autojump time does not jump until the call returns.
///
/// `f` runs in a copy of the caller's context, taken now: it reads the caller's context
/// variables, and what it sets stays on its thread (copy semantics, as Trio's
/// `to_thread.run_sync`). `no_inherit` variables are copied too: the call acts for its
/// caller, it is not a child task.
///
/// # Cancellation
///
/// Not cancel-safe for the result: dropping the future (a cancelled scope drops it)
/// abandons the call. A call already running runs to its end on its thread and its result
/// is dropped there; a call still queued is never started. The runtime never waits for an
/// abandoned call. When the runtime ends with calls in flight, their futures are dropped
/// with the tasks that awaited them: `run` returns at once, the threads finish their calls
/// and then exit.
///
/// # Panics
///
/// A panic in `f` is resumed in the task that awaits the future (with the same payload).
/// Polling the future outside a trellis runtime panics, and so does polling it again
/// after it completed.
///
/// The call belongs to the runtime that first polled the future (it submitted the call,
/// and counts it in flight): `ToThread` is `Send`, but polling it after that in another
/// runtime (one on another thread, or the next `run` on this thread after the first one
/// returned) or outside any runtime panics, even once the result is in: only the
/// submitting runtime waits for the call, so another one would report a false deadlock, or
/// jump its clock past the call. Await it in the runtime that first polled it, or call
/// `to_thread` anew. Dropping it anywhere is fine: the call is abandoned (see
/// Cancellation) and only the submitting runtime's count of calls in flight is lowered.
///
/// # Examples
///
/// ```
/// let total = trellis::run(async {
///     // A blocking computation, off the runtime's thread.
///     trellis::to_thread(|| (1..=100u64).sum::<u64>()).await
/// });
/// assert_eq!(total, 5050);
/// ```
///
/// A panic in the closure comes back in the caller:
///
/// ```
/// let caught = std::panic::catch_unwind(|| {
///     trellis::run(async { trellis::to_thread(|| -> u8 { panic!("boom") }).await })
/// });
/// let payload = caught.unwrap_err();
/// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
/// ```
#[doc(alias = "spawn_blocking")]
#[doc(alias = "run_sync")]
#[doc(alias = "unblock")]
pub fn to_thread<F, T>(f: F) -> ToThread<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
        abandoned: false,
        counter: None,
        runtime: None,
    }));
    let shared = slot.clone();
    // The caller's context, copied now (as a spawn copies it), for the call to run in.
    let context = send_snapshot();
    let job: Job = Box::new(move || {
        let runtime = {
            let slot = lock(&shared);
            if slot.abandoned {
                return;
            }
            slot.runtime
        };
        let mark = WorkerMark::enter(runtime);
        let entered = enter_child(context.into_context());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // What the call set stays here, and goes with its copy (copy semantics); the
        // worker's own context is back for the next call.
        drop(entered.leave());
        drop(mark);
        let mut guard = lock(&shared);
        if guard.abandoned {
            drop(guard);
            // Dropped here, on the worker, outside the lock: nobody wants it.
            drop(result);
            return;
        }
        guard.result = Some(result);
        let waker = guard.waker.take();
        let counter = guard.counter.take();
        drop(guard);
        if let Some(waker) = waker {
            waker.wake();
        }
        // After the wake: an executor that sees the count lowered also sees the wake.
        uncount(counter);
    });
    ToThread {
        slot,
        job: Some(job),
        done: false,
    }
}

/// The future returned by [`to_thread`]: the result of the call.
#[must_use = "to_thread does nothing unless awaited"]
pub struct ToThread<T> {
    slot: Arc<Mutex<Slot<T>>>,
    /// The call, until the first poll submits it.
    job: Option<Job>,
    /// It has returned `Ready`.
    done: bool,
}

impl<T> fmt::Debug for ToThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToThread")
            .field("submitted", &self.job.is_none())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> Future for ToThread<T> {
    type Output = T;

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        assert!(
            !this.done,
            "a ToThread future was polled after it completed"
        );
        if this.job.is_some() {
            with_core(|core| {
                // Taken only inside a runtime: outside one, `with_core` panics first and
                // the call stays unsubmitted, so a later poll in a runtime still submits it.
                let job = this.job.take().expect("checked above");
                core.thread_work.fetch_add(1, Ordering::SeqCst);
                {
                    let mut slot = lock(&this.slot);
                    slot.waker = Some(cx.waker().clone());
                    let runtime = Waker::from(core.root.clone());
                    slot.counter = Some((core.thread_work.clone(), runtime));
                    slot.runtime = Some(core.id);
                }
                core.pool.submit(job);
            });
            return Poll::Pending;
        }
        // Submitted: the call counts in the `thread_work` of the runtime that submitted it,
        // and only that runtime knows to wait for it. Polled anywhere else, nothing keeps
        // the runtime polling it from a false deadlock report (or autojump from jumping
        // past the call), so refuse, as `Sleep` does, before touching the slot. Checked on
        // every poll, also once the result is in, so the outcome does not depend on how
        // fast the worker was.
        let here = try_with_core(|core| core.id);
        let mut slot = lock(&this.slot);
        if here != slot.runtime {
            // Not under the lock: the drop that follows the panic takes it.
            drop(slot);
            polled_elsewhere(here.is_some());
        }
        match slot.result.take() {
            Some(result) => {
                drop(slot);
                this.done = true;
                match result {
                    Ok(value) => Poll::Ready(value),
                    Err(payload) => std::panic::resume_unwind(payload),
                }
            }
            None => {
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

#[cold]
fn polled_elsewhere(in_a_runtime: bool) -> ! {
    if in_a_runtime {
        panic!(
            "a trellis `ToThread` (the future of `to_thread`) was polled in a runtime other \
             than the one that submitted its call; a call belongs to the runtime it was first \
             polled in, which alone waits for it — await it inside that runtime's `run`, or \
             call `to_thread` again in this runtime"
        )
    }
    panic!(
        "a trellis `ToThread` (the future of `to_thread`) was polled outside any trellis \
         runtime after its call was submitted; a call belongs to the runtime it was first \
         polled in — await it inside that runtime's `run`"
    )
}

impl<T> Drop for ToThread<T> {
    fn drop(&mut self) {
        let (unwanted, counter) = {
            let mut slot = lock(&self.slot);
            slot.abandoned = true;
            slot.waker = None;
            (slot.result.take(), slot.counter.take())
        };
        // A result that arrived but was never taken is dropped here, outside the lock.
        drop(unwanted);
        // The counter is the submitting runtime's own (an `Arc`), so a drop in another
        // runtime, or after the submitter ended, lowers the count that was raised, never
        // the current runtime's; waking a finished runtime's root does nothing.
        uncount(counter);
    }
}

/// `futures::select!` and other `futures-core` combinators take a `ToThread` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// trellis::run(async {
///     let mut call = trellis::to_thread(|| 1);
///     assert!(!call.is_terminated());
///     assert_eq!((&mut call).await, 1);
///     assert!(call.is_terminated());
/// });
/// ```
impl<T> FusedFuture for ToThread<T> {
    /// True once it has completed.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

// ---------------------------------------------------------------------------------------
// from_thread

/// A handle to a running runtime, with which other threads run work on it: Trio's
/// `TrioToken` with `trio.from_thread.run` / `run_sync`.
///
/// Take it inside the runtime with [`RuntimeHandle::current`] and move it (or a clone) to
/// any thread: a [`to_thread`] worker, a `std::thread`, a foreign library's callback
/// thread. There, [`run_sync`](RuntimeHandle::run_sync) runs a closure on the runtime's
/// thread and [`run`](RuntimeHandle::run) runs a future there; both block the calling
/// thread until the work is done, and return its value. The runtime is not blocked
/// meanwhile: the work is queued, the runtime is woken (even from a park in the reactor)
/// and runs it beside its tasks.
///
/// `Send + Sync + Clone`; clones are handles to the same runtime and compare equal (two
/// handles are equal exactly when they belong to the same runtime). A handle outlives its
/// runtime harmlessly: once the runtime has ended, every call returns
/// [`FromThreadError`] at once ([`is_runtime_gone`](FromThreadError::is_runtime_gone)).
///
/// # Where the work runs
///
/// On the runtime's thread, outside every task: a `run_sync` closure runs between two
/// polls of the root; a `run` future is a *system task* (as in Trio), polled by the
/// executor beside the root, not in any nursery or cancel scope. So no enclosing scope
/// cancels it; it ends when it completes, or is dropped when the runtime ends (its
/// caller then gets the runtime-gone error). It may open nurseries and scopes of its own
/// and use everything a task uses (timers, `to_thread`, context variables).
///
/// The work runs in a copy of the *calling thread's* [`Context`](crate::Context) (Trio's
/// `from_thread` does the same): in a `to_thread` worker, that is the caller's context as
/// the call received it, with what the call set since. What the work sets stays in its
/// copy and is dropped with it; it never reaches the calling thread.
///
/// # On a mock clock
///
/// A handle does not keep a mock-clock runtime alive: work that a thread will send later
/// is not waited for (the deadlock report may come first), as for other wakes from threads
/// the runtime does not know of. The main use, a [`to_thread`] worker calling back while
/// its caller awaits it, is covered: the call in flight keeps the runtime alive. While the
/// worker is blocked in `run`/`run_sync`, autojump does not wait for it (the work it sent
/// may need time to move); it waits again once the worker is released.
///
/// # Examples
///
/// A worker thread asks the runtime for a value only the runtime's thread has:
///
/// ```
/// use std::cell::Cell;
/// use trellis::RuntimeHandle;
///
/// thread_local! { static ON_RUNTIME: Cell<bool> = const { Cell::new(false) }; }
///
/// let seen = trellis::run(async {
///     ON_RUNTIME.set(true);
///     let handle = RuntimeHandle::current();
///     trellis::to_thread(move || handle.run_sync(|| ON_RUNTIME.get()).unwrap()).await
/// });
/// assert!(seen);
/// ```
#[derive(Clone)]
pub struct RuntimeHandle {
    mailbox: Arc<Mailbox>,
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("finished", &self.mailbox.is_closed())
            .finish_non_exhaustive()
    }
}

impl PartialEq for RuntimeHandle {
    /// Whether both handles belong to the same runtime.
    fn eq(&self, other: &RuntimeHandle) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox)
    }
}

impl Eq for RuntimeHandle {}

/// What a blocked caller and the work it sent share.
struct ReplySlot<T> {
    outcome: Mutex<Option<Outcome<T>>>,
    ready: Condvar,
}

enum Outcome<T> {
    Done(T),
    Panicked(Box<dyn Any + Send>),
    /// The work was dropped before it completed (the runtime ended).
    Gone,
}

/// The work's end of a [`ReplySlot`]: sends the outcome once, and [`Outcome::Gone`] when
/// dropped without sending (the job or system task was dropped), so no caller waits
/// forever.
struct Reply<T> {
    slot: Option<Arc<ReplySlot<T>>>,
}

impl<T> Reply<T> {
    fn send(mut self, outcome: Outcome<T>) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, outcome);
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, Outcome::Gone);
        }
    }
}

fn deliver<T>(slot: &ReplySlot<T>, outcome: Outcome<T>) {
    *slot.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    slot.ready.notify_one();
}

/// A reply channel: the work's end and the caller's.
fn reply<T>() -> (Reply<T>, Arc<ReplySlot<T>>) {
    let slot = Arc::new(ReplySlot {
        outcome: Mutex::new(None),
        ready: Condvar::new(),
    });
    (
        Reply {
            slot: Some(slot.clone()),
        },
        slot,
    )
}

/// Blocks until the work's outcome arrives.
fn wait<T>(slot: &ReplySlot<T>) -> Outcome<T> {
    let mut outcome = slot.outcome.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(outcome) = outcome.take() {
            return outcome;
        }
        outcome = slot.ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
    }
}

/// The system task of [`RuntimeHandle::run`]: polls the user's future (in its context)
/// and sends its output, or the payload of a panic in its poll or its destructor, to the
/// caller.
struct FromThreadTask<F: Future> {
    /// `None` once it completed (dropped before the reply is sent, so that a panic in its
    /// destructor reaches the caller, as a child's does its nursery).
    fut: Option<Pin<Box<crate::context::values::Run<F>>>>,
    reply: Option<Reply<F::Output>>,
}

impl<F: Future> Future for FromThreadTask<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        let mut outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Outcome::Done(value),
            Err(payload) => Outcome::Panicked(payload),
        };
        let fut = this.fut.take();
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fut))) {
            // The first panic wins, as in a nursery; a second one was printed by the hook.
            if let Outcome::Done(_) = outcome {
                outcome = Outcome::Panicked(payload);
            }
        }
        if let Some(reply) = this.reply.take() {
            reply.send(outcome);
        }
        Poll::Ready(())
    }
}

impl RuntimeHandle {
    /// A handle to the runtime running on this thread (Trio's `current_trio_token`).
    ///
    /// # Panics
    ///
    /// Panics when no trellis runtime runs on this thread (see
    /// [`try_current`](RuntimeHandle::try_current)).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// trellis::run(async {
    ///     let a = RuntimeHandle::current();
    ///     let b = RuntimeHandle::current();
    ///     assert_eq!(a, b); // the same runtime
    /// });
    /// ```
    #[track_caller]
    pub fn current() -> RuntimeHandle {
        with_core(|core| RuntimeHandle {
            mailbox: core.inbox.mailbox(),
        })
    }

    /// A handle to the runtime running on this thread, or `None` outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// assert!(RuntimeHandle::try_current().is_none());
    /// trellis::run(async { assert!(RuntimeHandle::try_current().is_some()) });
    /// ```
    pub fn try_current() -> Option<RuntimeHandle> {
        try_with_core(|core| RuntimeHandle {
            mailbox: core.inbox.mailbox(),
        })
    }

    /// Whether the runtime has ended; then every `run` and `run_sync` fails at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// let handle = trellis::run(async {
    ///     let handle = RuntimeHandle::current();
    ///     assert!(!handle.is_finished());
    ///     handle
    /// });
    /// assert!(handle.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Runs `f` on the runtime's thread and blocks this thread until it returns; its value
    /// (Trio's `from_thread.run_sync`). `f` runs between two polls of the runtime's tasks,
    /// so it may use everything that needs the runtime ([`now`](crate::now),
    /// `RuntimeHandle::current`, the runtime thread's thread-locals), but it must not
    /// block: the runtime waits for it. `f` is `Send`, so it cannot take a `!Send` value
    /// of the runtime such as a [`CancelScope`](crate::CancelScope) or an
    /// [`Event`](crate::Event); to cancel a scope from a thread, move its
    /// [`RemoteCancel`](crate::RemoteCancel) there instead.
    ///
    /// # Errors
    ///
    /// - [`is_on_runtime_thread`](FromThreadError::is_on_runtime_thread): called on the
    ///   thread of a trellis runtime (this one's, which would wait for itself forever, or
    ///   another's, which would be blocked); `f` is not run. Trio raises `RuntimeError`.
    /// - [`is_runtime_gone`](FromThreadError::is_runtime_gone): the runtime has ended, or
    ///   ended before `f` ran; `f` did not run.
    ///
    /// # Panics
    ///
    /// A panic in `f` is caught on the runtime's thread (the runtime goes on) and resumed
    /// here, in the calling thread, with the same payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// let (time_there, err) = trellis::Builder::new().autojump().run(async {
    ///     let handle = RuntimeHandle::current();
    ///     // On the runtime's own thread it would deadlock, so it is refused:
    ///     let err = handle.run_sync(|| ()).unwrap_err();
    ///     // From a worker thread it runs on the runtime and returns its value:
    ///     let time_there = trellis::to_thread(move || handle.run_sync(trellis::now).unwrap()).await;
    ///     (time_there, err)
    /// });
    /// assert!(err.is_on_runtime_thread());
    /// # let _ = time_there;
    /// ```
    pub fn run_sync<F, T>(&self, f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.check_thread("run_sync")?;
        let (reply, slot) = reply();
        let context = send_snapshot();
        let job: crate::rt::inbox::Job = Box::new(move || {
            let ctx = context.into_context().unwrap_or_default();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run_sync(f)));
            reply.send(match out {
                Ok(value) => Outcome::Done(value),
                Err(payload) => Outcome::Panicked(payload),
            });
            None
        });
        self.send(job, "run_sync", &slot)
    }

    /// Calls `f` on the runtime's thread and runs the future it returns there to
    /// completion, blocking this thread until then; the future's output (Trio's
    /// `from_thread.run`). The future need not be `Send`: it is made on the runtime's
    /// thread. It runs as a system task, beside the runtime's tasks and outside their
    /// scopes (see [Where the work runs](RuntimeHandle#where-the-work-runs)).
    ///
    /// # Errors
    ///
    /// - [`is_on_runtime_thread`](FromThreadError::is_on_runtime_thread): called on the
    ///   thread of a trellis runtime; `f` is not called.
    /// - [`is_runtime_gone`](FromThreadError::is_runtime_gone): the runtime ended before
    ///   the future completed (it was dropped at the runtime's end, or never made). Trio's
    ///   `from_thread.run` raises `Cancelled` there.
    ///
    /// # Panics
    ///
    /// A panic in `f` or in a poll of its future is caught on the runtime's thread (the
    /// future is dropped, the runtime goes on) and resumed here with the same payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::RuntimeHandle;
    ///
    /// let waited = trellis::Builder::new().autojump().run(async {
    ///     let handle = RuntimeHandle::current();
    ///     trellis::to_thread(move || {
    ///         // Back on the runtime: sleep there (virtual time jumps), then return.
    ///         handle
    ///             .run(|| async {
    ///                 let start = trellis::now();
    ///                 trellis::sleep(Duration::from_secs(60)).await;
    ///                 trellis::now() - start
    ///             })
    ///             .unwrap()
    ///     })
    ///     .await
    /// });
    /// assert_eq!(waited, Duration::from_secs(60));
    /// ```
    pub fn run<F, Fut>(&self, f: F) -> Result<Fut::Output, FromThreadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        self.check_thread("run")?;
        let (reply, slot) = reply();
        let context = send_snapshot();
        let job: crate::rt::inbox::Job = Box::new(move || {
            let ctx = context.into_context().unwrap_or_default();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run_sync(f))) {
                Ok(fut) => {
                    let task: SystemTask = Box::pin(FromThreadTask {
                        fut: Some(Box::pin(ctx.run(fut))),
                        reply: Some(reply),
                    });
                    Some(task)
                }
                Err(payload) => {
                    reply.send(Outcome::Panicked(payload));
                    None
                }
            }
        });
        self.send(job, "run", &slot)
    }

    /// Refuses to block the thread of a runtime (Trio's "this is a blocking function;
    /// call it from a thread").
    fn check_thread(&self, method: &'static str) -> Result<(), FromThreadError> {
        match try_with_core(|core| core.id) {
            None => Ok(()),
            Some(id) => Err(FromThreadError {
                method,
                kind: ErrorKind::OnRuntimeThread {
                    same: id == self.mailbox.id(),
                },
            }),
        }
    }

    /// Queues `job` and blocks until its outcome.
    fn send<T>(
        &self,
        job: crate::rt::inbox::Job,
        method: &'static str,
        slot: &ReplySlot<T>,
    ) -> Result<T, FromThreadError> {
        let gone = FromThreadError {
            method,
            kind: ErrorKind::RuntimeGone,
        };
        let from_worker = WORKER_OF.get() == Some(self.mailbox.id());
        if let Err(job) = self.mailbox.submit(job, from_worker) {
            drop(job);
            return Err(gone);
        }
        match wait(slot) {
            Outcome::Done(value) => Ok(value),
            Outcome::Panicked(payload) => std::panic::resume_unwind(payload),
            Outcome::Gone => Err(gone),
        }
    }
}

/// The error of [`RuntimeHandle::run`] and [`RuntimeHandle::run_sync`]: the work could
/// not run to its end on the runtime.
///
/// # Examples
///
/// ```
/// use trellis::RuntimeHandle;
///
/// let handle = trellis::run(async { RuntimeHandle::current() });
/// let err = handle.run_sync(|| 1).unwrap_err(); // the runtime has ended
/// assert!(err.is_runtime_gone());
/// println!("{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromThreadError {
    method: &'static str,
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    RuntimeGone,
    /// `same`: the runtime of this thread is the handle's own.
    OnRuntimeThread {
        same: bool,
    },
}

impl FromThreadError {
    /// Whether the runtime had ended, or ended before the work completed (Trio's
    /// `RunFinishedError`, and `Cancelled` for a `run` cut short).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// let handle = trellis::run(async { RuntimeHandle::current() });
    /// assert!(handle.run(|| async {}).unwrap_err().is_runtime_gone());
    /// ```
    pub fn is_runtime_gone(&self) -> bool {
        self.kind == ErrorKind::RuntimeGone
    }

    /// Whether the call was made on the thread of a trellis runtime, where blocking is
    /// refused (Trio's `RuntimeError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::RuntimeHandle;
    ///
    /// trellis::run(async {
    ///     let err = RuntimeHandle::current().run_sync(|| 1).unwrap_err();
    ///     assert!(err.is_on_runtime_thread());
    /// });
    /// ```
    pub fn is_on_runtime_thread(&self) -> bool {
        matches!(self.kind, ErrorKind::OnRuntimeThread { .. })
    }
}

impl fmt::Display for FromThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.method;
        match self.kind {
            ErrorKind::RuntimeGone => write!(
                f,
                "RuntimeHandle::{method}: the trellis runtime of this handle has finished (its \
                 root future returned, or it panicked), so the work did not run to its end; \
                 send work only while the runtime runs, e.g. from a `to_thread` call it awaits"
            ),
            ErrorKind::OnRuntimeThread { same: true } => write!(
                f,
                "RuntimeHandle::{method} was called on the runtime's own thread, where it would \
                 wait for itself forever; call the function (or await the future) directly, \
                 or call `{method}` from another thread such as a `trellis::to_thread` worker"
            ),
            ErrorKind::OnRuntimeThread { same: false } => write!(
                f,
                "RuntimeHandle::{method} was called on the thread of another trellis runtime, \
                 which it would block; call it from a `trellis::to_thread` worker instead"
            ),
        }
    }
}

impl Error for FromThreadError {}
