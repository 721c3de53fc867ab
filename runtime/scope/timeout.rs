//! Timeouts: [`move_on_after`] / [`move_on_at`], which give `None` when time runs out, and
//! [`fail_after`] / [`fail_at`], which give [`TimedOut`]. Each runs the operation inside a
//! [`CancelScope`] with a deadline.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::FusedFuture;

use crate::scope::cancel_scope::{CancelScope, ScopeRun};

/// Runs `fut` for at most `duration`: `Some(output)`, or `None` when time ran out.
///
/// An inner timeout never extends an outer deadline. A timeout that does not fire costs no
/// system call. A `duration` too long to represent (`Duration::MAX`) means no deadline.
/// It never fires early; on the real clock it may fire a little late, as a
/// [`sleep`](crate::sleep) ends (≈ 0.4 % of `duration`, at most 1 ms: see its
/// "Precision"); on the mock clocks exactly on time.
///
/// # Cancellation
///
/// The clock starts at the first poll, not at the call (Trio's relative deadlines): a
/// timeout created and awaited later still gives `fut` the whole `duration`. Cancellation
/// is delivered at suspensions: `fut` is polled at least once, even with a zero
/// `duration`, and is dropped at the first suspension at or after the deadline. Dropping
/// the returned future drops `fut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let quick = trellis::move_on_after(Duration::from_secs(1), async { 7 }).await;
///     assert_eq!(quick, Some(7));
///     let slow = trellis::move_on_after(Duration::from_secs(1), trellis::sleep_forever()).await;
///     assert_eq!(slow, None);
/// });
/// ```
#[doc(alias = "timeout")]
#[doc(alias = "wait_for")]
pub fn move_on_after<F: Future>(duration: Duration, fut: F) -> ScopeRun<F> {
    CancelScope::new().with_timeout(duration).run(fut)
}

/// Runs `fut` until `deadline`: `Some(output)`, or `None` when the deadline passed first.
///
/// # Cancellation
///
/// `fut` is polled at least once, even when `deadline` has already passed, and is dropped
/// at its first suspension at or after the deadline. Dropping the returned future drops
/// `fut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let deadline = trellis::now() + Duration::from_secs(2);
///     let out = trellis::move_on_at(deadline, trellis::sleep(Duration::from_secs(5))).await;
///     assert_eq!(out, None);
///     assert_eq!(trellis::now(), deadline);
/// });
/// ```
pub fn move_on_at<F: Future>(deadline: Instant, fut: F) -> ScopeRun<F> {
    CancelScope::new().with_deadline(deadline).run(fut)
}

/// The error of [`fail_after`] and [`fail_at`]: the deadline passed before the operation
/// finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    deadline: Instant,
}

impl TimedOut {
    /// The deadline that passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let op = trellis::fail_after(Duration::from_secs(2), trellis::sleep_forever());
    ///     let err = op.await.unwrap_err();
    ///     assert_eq!(err.deadline(), start + Duration::from_secs(2));
    ///     assert_eq!(trellis::now(), err.deadline()); // it fired exactly then
    /// });
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation timed out: its deadline passed before it finished")
    }
}

impl std::error::Error for TimedOut {}

/// Runs `fut` for at most `duration`; `Err(TimedOut)` when time ran out.
///
/// # Errors
///
/// [`TimedOut`] when the deadline passed first. An operation that completes in the same
/// instant as the deadline is not lost.
///
/// # Cancellation
///
/// As [`move_on_after`]: the clock starts at the first poll, `fut` is polled at least
/// once, and a `duration` too long to represent (`Duration::MAX`) means no deadline.
/// Dropping the returned future drops `fut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let r = trellis::fail_after(Duration::from_secs(1), trellis::sleep_forever()).await;
///     assert!(r.is_err());
/// });
/// ```
#[doc(alias = "timeout")]
#[doc(alias = "wait_for")]
pub fn fail_after<F: Future>(duration: Duration, fut: F) -> FailAt<F> {
    FailAt {
        run: move_on_after(duration, fut),
    }
}

/// Runs `fut` until `deadline`; `Err(TimedOut)` when the deadline passed first.
///
/// # Errors
///
/// [`TimedOut`] when the deadline passed first.
///
/// # Cancellation
///
/// As [`move_on_at`]: `fut` is polled at least once. Dropping the returned future drops
/// `fut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let deadline = trellis::now() + Duration::from_secs(1);
///     let err = trellis::fail_at(deadline, trellis::sleep_forever()).await.unwrap_err();
///     assert_eq!(err.deadline(), deadline);
/// });
/// ```
pub fn fail_at<F: Future>(deadline: Instant, fut: F) -> FailAt<F> {
    FailAt {
        run: move_on_at(deadline, fut),
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`fail_after`] and [`fail_at`].
    ///
    /// # Cancellation
    ///
    /// Its own deadline gives `Err(TimedOut)`; an enclosing cancellation drops the
    /// operation and is caught by the enclosing scope (it is not a timeout); dropping the
    /// future drops the operation at once.
    #[must_use = "a timeout does nothing unless awaited"]
    #[derive(Debug)]
    pub struct FailAt<F> {
        #[pin]
        run: ScopeRun<F>,
    }
}

impl<F: Future> Future for FailAt<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut run = self.project().run;
        match run.as_mut().poll(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(Ok(out)),
            // Only the deadline can cancel this scope (nobody else holds it), so it is set.
            Poll::Ready(None) => Poll::Ready(Err(TimedOut {
                deadline: run.deadline().unwrap_or_else(crate::rt::clock::now),
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `futures::select!` and other `futures-core` combinators take a timeout without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let mut timeout = trellis::fail_after(Duration::from_secs(1), trellis::yield_now());
///     assert!(!timeout.is_terminated());
///     assert!((&mut timeout).await.is_ok());
///     assert!(timeout.is_terminated());
/// });
/// ```
impl<F: Future> FusedFuture for FailAt<F> {
    /// True once it has given its `Ok(output)` or `Err(TimedOut)`.
    fn is_terminated(&self) -> bool {
        self.run.is_terminated()
    }
}
