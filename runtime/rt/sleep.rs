//! The sleeping futures: [`sleep`], [`sleep_until`], [`sleep_forever`] and [`Sleep`].
//!
//! - A [`Sleep`] is a checkpoint: its first poll never completes, even when the deadline
//!   has passed (it wakes itself and returns `Pending` once), so a cancelled unit is
//!   dropped there, as in Trio. A sleep whose deadline overflows the clock never completes.
//! - A sleep arms a timer in its runtime's queue at its first poll and disarms it when
//!   dropped (the queue's invariants are in `timers.rs`).
//!
//! # Deadlines and the delivery rule
//!
//! A scope's deadline that passes cancels the scope; like every cancellation it reaches
//! code only at its next suspension (the delivery rule in the docs of
//! `scope/cancel_scope.rs`): a unit that is busy without awaiting runs on until it
//! suspends, and one that starts past its deadline runs to its first suspension. A sleep
//! is such a suspension.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::FusedFuture;

use crate::instrument::hooks;
use crate::rt::clock::now;
use crate::rt::state::{try_with_core_inlined, with_core_inlined};
use crate::rt::timers::{TimerAction, TimerKey};

/// Waits until `duration` has passed.
///
/// Equivalent to `sleep_until(now() + duration)`, except that a duration too long for the
/// clock to represent (`Duration::MAX`) means "never": the sleep then ends only when it is
/// dropped, typically by a cancelled scope, and [`Sleep::deadline`] is `None`.
///
/// The deadline is taken when `sleep` is called, not when the future is first polled (as
/// in tokio); the relative timeouts [`move_on_after`](crate::move_on_after) and
/// [`fail_after`](crate::fail_after), by contrast, start at their first poll.
///
/// Like every sleep it suspends at least once: `sleep(Duration::ZERO)` is a checkpoint (as
/// in Trio) that lets every other ready task run before this one continues, and where a
/// unit whose scope is cancelled is dropped.
///
/// # Precision
///
/// A sleep never ends before its deadline. On the real clock it may end up to ≈ 0.4 % of
/// its length late (`duration / 256`, at most 1 ms: tokio's timer granularity), besides
/// the operating system's own lateness, when that lets one wake-up of the runtime end
/// several sleeps: a 300 ms sleep may wait up to 1 ms for another that ends just after
/// it, a 10 ms sleep ≈ 39 µs. A sleep that no other follows that closely ends at its own
/// deadline, as precisely as the operating system wakes. On the
/// mock clocks a sleep ends exactly at its deadline.
///
/// # Panics
///
/// Panics when called outside a trellis runtime (the deadline is read from its clock).
/// Polling the sleep panics in a runtime other than the one that armed its timer (see
/// [`Sleep`]).
///
/// # Cancellation
///
/// Cancel-safe: dropping the future removes its timer; nothing else is lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     trellis::sleep(Duration::from_millis(10)).await;
///     trellis::sleep(Duration::ZERO).await; // a checkpoint: suspends once
///     // A sleep that never ends, ended by a timeout:
///     let forever = trellis::move_on_after(Duration::from_secs(1), trellis::sleep(Duration::MAX));
///     assert_eq!(forever.await, None);
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: now().checked_add(duration),
        timer: None,
        suspended: false,
        done: false,
    }
}

/// Waits until the clock reaches `deadline`.
///
/// The timer is armed lazily, at the first poll that finds the deadline still ahead. A
/// deadline already reached does not complete at the first poll: the sleep suspends once
/// (a checkpoint, like `sleep(Duration::ZERO)`), so other ready tasks run and a cancelled
/// unit is dropped there, and completes at the next poll.
///
/// Never before `deadline`; on the real clock perhaps a little after it (≈ 0.4 % of the
/// time from its first poll to `deadline`, at most 1 ms: see [`sleep`]'s "Precision").
///
/// # Panics
///
/// Polling the sleep panics outside a trellis runtime, and in a runtime other than the one
/// that armed its timer (see [`Sleep`]).
///
/// # Cancellation
///
/// Cancel-safe: dropping the future removes its timer; nothing else is lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let deadline = trellis::now() + Duration::from_secs(1);
///     trellis::sleep_until(deadline).await;
///     assert!(trellis::now() >= deadline);
/// });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: Some(deadline),
        timer: None,
        suspended: false,
        done: false,
    }
}

/// Waits forever (until dropped, typically by a cancelled scope).
///
/// # Cancellation
///
/// This future never completes; cancellation is the only way out.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let out = trellis::move_on_after(Duration::from_secs(5), trellis::sleep_forever()).await;
///     assert_eq!(out, None);
/// });
/// ```
pub async fn sleep_forever() {
    std::future::pending::<()>().await
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// A `Sleep` is `Send`, but its timer belongs to the runtime that armed it (at the first
/// poll that found the deadline ahead).
///
/// # Panics
///
/// Polling a sleep panics outside a trellis runtime, and in a runtime other than the one
/// that armed its timer (a sleep moved to a thread that runs another runtime, or kept after
/// its `run` returned and polled in the next one). Dropping it is always fine: in another
/// runtime, the drop leaves that runtime's timers alone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     let nap = trellis::sleep(Duration::from_secs(2));
///     assert_eq!(nap.deadline(), Some(start + Duration::from_secs(2)));
///     nap.await;
///     assert_eq!(trellis::sleep(Duration::MAX).deadline(), None, "never");
/// });
/// ```
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    /// When the sleep completes; `None`: never (the duration overflowed the clock).
    deadline: Option<Instant>,
    /// The armed timer, once a poll found the deadline in the future. Its key names the
    /// runtime whose queue holds it.
    timer: Option<TimerKey>,
    /// Whether the sleep has returned `Pending` once. Until it has, it never completes,
    /// even past its deadline: every sleep is a checkpoint.
    suspended: bool,
    /// Whether the sleep has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl Sleep {
    /// The instant at which this sleep completes; `None` when it never does (its duration
    /// was too long for the clock, as `Duration::MAX`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let at = Instant::now() + Duration::from_secs(1);
    /// assert_eq!(trellis::sleep_until(at).deadline(), Some(at));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        with_core_inlined(|core| {
            if let Some(key) = this.timer {
                if key.runtime() != core.id {
                    polled_in_another_runtime();
                }
            }
            let Some(deadline) = this.deadline else {
                // Never: nothing will wake it; only a drop (a cancellation) ends it.
                return Poll::Pending;
            };
            let now = core.clock.recent();
            if now >= deadline {
                if this.suspended {
                    if let Some(key) = this.timer.take() {
                        // Dropped after the queue's borrow ends (`TimerQueue::disarm`).
                        let released = core.timers.borrow_mut().disarm(key);
                        drop(released);
                    }
                    this.done = true;
                    return Poll::Ready(());
                }
                // The checkpoint: suspend once even with nothing to wait for, so that the
                // other ready tasks run and a cancelled unit is dropped here.
                this.suspended = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.suspended = true;
            hooks::record_wait(hooks::Wait::Timer(deadline));
            let mut timers = core.timers.borrow_mut();
            match this.timer {
                Some(key) => {
                    let released = timers.update_waker(key, cx.waker());
                    // The old waker goes after the queue's borrow (`TimerQueue::disarm`).
                    drop(timers);
                    drop(released);
                }
                None => {
                    // The slack counts from this tick's reading, just taken or reused.
                    let key =
                        timers.arm_at(deadline, Some(now), TimerAction::Wake(cx.waker().clone()));
                    this.timer = Some(key);
                }
            }
            Poll::Pending
        })
    }
}

#[cold]
fn polled_in_another_runtime() -> ! {
    panic!(
        "a trellis `Sleep` was polled in a runtime other than the one that armed its timer; \
         a timer belongs to the runtime it was first polled in — await the sleep inside that \
         runtime's `run`, or create a new one with `sleep`/`sleep_until` in this runtime"
    )
}

/// `futures::select!` and other `futures-core` combinators take a `Sleep` without `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let mut nap = trellis::sleep(Duration::from_secs(1));
///     assert!(!nap.is_terminated());
///     (&mut nap).await;
///     assert!(nap.is_terminated(), "terminated once it has completed");
///     assert!(!trellis::sleep(Duration::MAX).is_terminated(), "never");
/// });
/// ```
impl FusedFuture for Sleep {
    /// True once the sleep has completed; a sleep that never ends (`Duration::MAX`) never
    /// is.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            // The runtime may already be gone when a future outlives `run` (it was leaked
            // out, or is dropped during thread teardown): then there is no queue to clean.
            // On another thread's runtime, or a later runtime on this thread, `disarm`
            // ignores the foreign key; the entry stays in its own queue until it fires.
            // The waker it gives back is dropped here, after the closure has released the
            // queue: its drop may disarm other timers (`TimerQueue::disarm`).
            let released = try_with_core_inlined(|core| core.timers.borrow_mut().disarm(key));
            drop(released);
        }
    }
}
