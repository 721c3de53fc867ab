//! `to_thread`: a blocking call on a worker thread, awaited by a task (Trio's
//! `to_thread.run_sync`).
//!
//! # State
//!
//! A call and its future share a [`Slot`] (an `Arc<Mutex<..>>`): the result once the call
//! returned, the waker of the task that awaits it, and whether the future is gone. The
//! future submits the call to its runtime's pool (`rt/pool.rs`) at its first poll and
//! raises the runtime's `thread_work` then. It is lowered exactly once, under the slot's
//! lock, by whoever takes `counter` first: the worker, after it stored the result and woke
//! the caller (so the executor never sees the count lowered without the wake; it then
//! wakes the runtime's root, since an executor parked on the count needs telling), or the
//! future's drop. So `thread_work` counts the calls that a live future still waits for
//! (a leaked future does not hold autojump back forever), and a result that arrives after
//! its future was dropped touches no runtime state: the worker drops it.
//!
//! # Context variables
//!
//! Not propagated: a [`Context`](crate::Context)'s values are `Rc`s (contexts are `!Send`,
//! which is what makes copying them cheap), so they cannot reach another thread. The
//! closure runs with an empty context; pass what it needs by moving it in.

#![forbid(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::FusedFuture;

use crate::rt::pool::Job;
use crate::rt::state::with_core;

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
/// The call is submitted when the future is first polled. At most
/// [`Builder::thread_limit`](crate::Builder::thread_limit) calls run at once; the others
/// wait, in order, for a free thread. On a mock clock a runtime with a call in flight is
/// never declared deadlocked, and with autojump time does not jump until the call returns.
///
/// `f` runs with an empty context: context variables are `!Send` and are not copied to
/// the thread (move what `f` needs into it).
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
    }));
    let shared = slot.clone();
    let job: Job = Box::new(move || {
        if lock(&shared).abandoned {
            return;
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
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
        if let Some(job) = this.job.take() {
            with_core(|core| {
                core.thread_work.fetch_add(1, Ordering::SeqCst);
                {
                    let mut slot = lock(&this.slot);
                    slot.waker = Some(cx.waker().clone());
                    let runtime = Waker::from(core.root.clone());
                    slot.counter = Some((core.thread_work.clone(), runtime));
                }
                core.pool.submit(job);
            });
            return Poll::Pending;
        }
        let mut slot = lock(&this.slot);
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
