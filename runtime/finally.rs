//! [`finally`]: async clean-up that runs however the work ends — Trio's `try: … finally:`
//! with a shielded clean-up.
//!
//! Rust has no async destructor, and trellis cancels by dropping the work at a suspension,
//! so code written after an `.await` does not run when a cancellation arrives there. The
//! clean-up therefore runs inside a shield, and the work beside it in a scope of its own
//! that mirrors the enclosing cancellation: a watcher child (seeing through the shield with
//! [`cancelled`]) cancels that scope when the outside is cancelled, so the work is cancelled
//! as a scope (its own shields finish first) rather than dropped mid-poll.

#![forbid(unsafe_code)]

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use crate::nursery::open::nursery;
use crate::scope::cancel_scope::{CancelScope, cancelled, current_effective_deadline, shield};

/// Runs `work`, then `cleanup`, however `work` ends: when it finishes, when it panics, and
/// when a scope around it is cancelled (Trio's `finally:` with a shielded clean-up).
///
/// Returns `work`'s output once `cleanup` has run. When an enclosing cancellation cut
/// `work` off, there is no output: after `cleanup` the cancellation goes on, and the scope
/// that was cancelled reports it (`None` from [`move_on_after`](crate::move_on_after),
/// `TimedOut` from [`fail_after`](crate::fail_after)), as Trio's `Cancelled` goes on after
/// a `finally:` block. `cleanup` runs shielded, so a cancellation cannot cut it short: give
/// it a deadline of its own (`move_on_after(d, cleanup)`) when it might hang. A panic in
/// `work` is resumed after `cleanup` has run.
///
/// `work` keeps the enclosing deadline ([`current_effective_deadline`] inside it is the
/// outside's), and is cancelled as a scope, so shields inside it finish first.
///
/// # Cancellation
///
/// Cancelling a scope around it cancels `work`, then runs `cleanup` to its end; then the
/// cancellation goes on and drops this future (it never returns). Dropping the
/// returned future from outside (a hard cancel, as in `futures::select!`) drops `work` and
/// `cleanup` at once: a destructor cannot await.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use std::time::Duration;
///
/// let log = RefCell::new(Vec::new());
/// trellis::Builder::new().autojump().run(async {
///     let work = async {
///         log.borrow_mut().push("working");
///         trellis::sleep(Duration::from_secs(60)).await;
///         log.borrow_mut().push("done"); // never: the deadline comes first
///     };
///     let cleanup = async {
///         trellis::sleep(Duration::from_secs(1)).await; // awaits, although cancelled
///         log.borrow_mut().push("cleaned up");
///     };
///     let out = trellis::move_on_after(Duration::from_secs(5), trellis::finally(work, cleanup));
///     assert_eq!(out.await, None); // the timeout caught its cancellation, not `Some(())`
/// });
/// assert_eq!(*log.borrow(), ["working", "cleaned up"]);
/// ```
pub async fn finally<W, C>(work: W, cleanup: C) -> W::Output
where
    W: Future,
    C: Future,
{
    let outside_deadline = current_effective_deadline();
    let finished = shield(async move {
        let outcome = CatchUnwind(pin!(run_mirroring_outside(work, outside_deadline))).await;
        cleanup.await;
        match outcome {
            Ok(output) => output,
            Err(panic) => resume_unwind(panic),
        }
    })
    .await;
    match finished {
        Some(output) => output,
        // `work` was cut off, so the outside is cancelled: the scope that was cancelled
        // drops this future at this suspension and reports the cancellation. Returning
        // instead would turn a timeout into a success.
        None => std::future::pending().await,
    }
}

/// Runs `work` (inside a shield) in a scope that is cancelled when the outside is, with the
/// outside's deadline.
async fn run_mirroring_outside<W: Future>(
    work: W,
    outside_deadline: Option<std::time::Instant>,
) -> Option<W::Output> {
    let scope = match outside_deadline {
        Some(deadline) => CancelScope::new().with_deadline(deadline),
        None => CancelScope::new(),
    };
    let outcome = nursery(async |n| {
        let watcher = n.spawn({
            let scope = scope.clone();
            async move {
                cancelled().await;
                scope.cancel();
            }
        });
        let output = scope.run(work).await;
        watcher.cancel();
        Ok::<_, Infallible>(output)
    })
    .await;
    match outcome {
        Ok(output) => output,
        Err(_) => unreachable!("neither the body nor the watcher can fail"),
    }
}

/// Polls a future, turning a panic in its poll into an `Err` (the payload).
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
