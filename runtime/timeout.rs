//! Timeouts: [`move_on_after`] / [`move_on_at`], which give `None` when time runs out, and
//! [`fail_after`] / [`fail_at`], which give [`TimedOut`]. Each runs the operation inside a
//! [`CancelScope`] with a deadline.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::cancel::{CancelScope, ScopeRun};

/// Runs `fut` for at most `duration`: `Some(output)`, or `None` when time ran out.
///
/// An inner timeout never extends an outer deadline. A timeout that does not fire costs no
/// system call.
///
/// # Cancellation
///
/// Dropping it drops `fut`.
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
#[track_caller]
pub fn move_on_after<F: Future>(duration: Duration, fut: F) -> ScopeRun<F> {
    move_on_at(crate::now() + duration, fut)
}

/// Runs `fut` until `deadline`: `Some(output)`, or `None` when the deadline passed first.
///
/// # Cancellation
///
/// Dropping it drops `fut`.
pub fn move_on_at<F: Future>(deadline: Instant, fut: F) -> ScopeRun<F> {
    CancelScope::with_deadline(deadline).run(fut)
}

/// The error of [`fail_after`] and [`fail_at`]: the deadline passed before the operation
/// finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    deadline: Instant,
}

impl TimedOut {
    /// The deadline that passed.
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
/// Dropping it drops `fut`.
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
#[track_caller]
pub fn fail_after<F: Future>(duration: Duration, fut: F) -> FailAt<F> {
    fail_at(crate::now() + duration, fut)
}

/// Runs `fut` until `deadline`; `Err(TimedOut)` when the deadline passed first.
///
/// # Errors
///
/// [`TimedOut`] when the deadline passed first.
///
/// # Cancellation
///
/// Dropping it drops `fut`.
pub fn fail_at<F: Future>(deadline: Instant, fut: F) -> FailAt<F> {
    FailAt {
        deadline,
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
        deadline: Instant,
        #[pin]
        run: ScopeRun<F>,
    }
}

impl<F: Future> Future for FailAt<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let deadline = *this.deadline;
        this.run
            .poll(cx)
            .map(|out| out.ok_or(TimedOut { deadline }))
    }
}
