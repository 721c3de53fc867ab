//! `Nursery::start`: start a child and wait until it says it is ready (Trio's
//! `nursery.start` / `task_status.started`), through its [`TaskStatus`].
//!
//! # State
//!
//! The child, its [`TaskStatus`] and the waiting `start` future share a [`Signal`] (the
//! value, the wakers and the child's cancel, independent of the error type) and an
//! [`Early`] slot.
//!
//! - Before `started`, the child's failure or panic is put in the slot for the starter, and
//!   the child stays (pending, its future gone) until the starter has taken it: were the
//!   starter dropped unread, the failure goes to the nursery from the child.
//!   The nursery then sees the child return (or, cancelled while it waits, be dropped);
//!   the signal keeps how it really ended for the instruments (`hidden_outcome`), which
//!   must not hear `returned` of a child that failed.
//! - After `started`, failures go to the nursery as for any child.
//! - `abandoned`: the `start` future was dropped before `started`. The child is then
//!   cancelled as by [`JoinHandle::cancel`](crate::JoinHandle::cancel) (its shields
//!   finish), a later `started` does nothing, and a later failure is the nursery's, as
//!   Trio's would come out of `start` into the caller.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::instrument::hooks::{self, TaskOutcome};
use crate::instrument::label::{TaskLabel, panic_text};
use crate::nursery::error::{StartError, TaskName};
use crate::nursery::handle::Nursery;
use crate::nursery::join::{ChildCancel, ChildTask, JoinFailed};
use crate::nursery::output::TaskOutput;
use crate::scope::cancel_scope::{ScopeNode, current_is_cancelled};
use crate::scope::unit::UnitCell;

/// How a start ended instead of `started`.
enum Early<E> {
    Failed(E),
    Panicked(Box<dyn Any + Send>),
    NotReady,
    Cancelled,
}

/// What the child, its [`TaskStatus`] and the starter share.
struct Signal<V> {
    /// The value passed to `started`, until the starter takes it.
    value: Option<V>,
    /// `started` was called: from now on the child belongs to the nursery.
    started: bool,
    /// The child's future ended before `started`; its outcome went to the `Early` slot.
    settled_early: bool,
    /// How the child's future ended when it failed or panicked before `started` and the
    /// failure is the starter's (not the nursery's): for the instruments' `task_exited`.
    hidden_outcome: Option<TaskOutcome>,
    /// The `start` future was dropped before `started`.
    abandoned: bool,
    /// The `start` future, waiting for an outcome.
    starter: Option<Waker>,
    /// The child, waiting for the starter to take its early outcome.
    child: Option<Waker>,
    /// Reaches the child where it runs, for a starter that goes away.
    cancel: ChildCancel,
}

impl<V> Signal<V> {
    fn is_settled(&self) -> bool {
        self.started || self.settled_early
    }

    fn wake_starter(&mut self) {
        if let Some(w) = self.starter.take() {
            w.wake();
        }
    }

    fn wake_child(&mut self) {
        if let Some(w) = self.child.take() {
            w.wake();
        }
    }
}

/// The nursery tells a starting child where it runs, for its cancel.
impl<V> JoinFailed for RefCell<Signal<V>> {
    fn failed(&self) {}

    fn started(&self, node: &Rc<ScopeNode>, unit: &Arc<UnitCell>) {
        self.borrow().cancel.started(node, unit);
    }

    fn name_if_unsuccessful(&self, _name: &str) {}

    fn hidden_outcome(&self) -> Option<TaskOutcome> {
        self.borrow().hidden_outcome.clone()
    }
}

type SharedSignal<V> = Rc<RefCell<Signal<V>>>;
type EarlySlot<E> = Rc<RefCell<Option<Early<E>>>>;

fn settle_early<V, E>(signal: &SharedSignal<V>, slot: &EarlySlot<E>, early: Early<E>) {
    let mut signal = signal.borrow_mut();
    if !signal.is_settled() {
        *slot.borrow_mut() = Some(early);
        signal.settled_early = true;
        signal.wake_starter();
    }
}

/// The end of a [`Nursery::start`] that its child holds (Trio's `task_status`): call
/// [`started`](TaskStatus::started) once the child is ready (a server has bound its port),
/// and `start` returns the value passed to it.
///
/// # Cancellation
///
/// If the child's nursery is cancelled before the child calls `started`, the child is
/// dropped and `start` gives [`StartError::is_cancelled`](crate::StartError::is_cancelled).
/// If the `start` future is dropped first (its caller was cancelled), the child is
/// cancelled as by [`JoinHandle::cancel`](crate::JoinHandle::cancel): dropped at its next
/// suspension, after any shielded part inside it has finished; a `started` from then on
/// does nothing, and a failure or panic from then on is the nursery's, since no `start`
/// is left to return it.
///
/// Dropping a `TaskStatus` without calling it does not end the child: `start` then waits
/// until the child finishes, and reports that it never became ready
/// ([`StartError::is_not_ready`](crate::StartError::is_not_ready)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         let port = n
///             .start(async |_n, status: trellis::TaskStatus<u16>| {
///                 trellis::sleep(Duration::from_secs(1)).await; // binding a socket
///                 status.started(8080);
///                 trellis::sleep(Duration::from_secs(1)).await; // serving
///             })
///             .await
///             .unwrap();
///         assert_eq!(port, 8080);
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub struct TaskStatus<V> {
    signal: SharedSignal<V>,
}

impl<V> fmt::Debug for TaskStatus<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStatus").finish_non_exhaustive()
    }
}

impl<V> TaskStatus<V> {
    /// Reports that the child is ready and hands `value` to the task waiting in `start`.
    /// From now on the child belongs to the nursery: its failures go to the nursery.
    ///
    /// # Cancellation
    ///
    /// After `started`, the child is cancelled with its nursery like any other child;
    /// dropping the `start` future no longer affects it.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let greeting = n
    ///             .start(async |_n, status| {
    ///                 status.started("listening");
    ///                 // From here on a failure goes to the nursery, not to `start`.
    ///             })
    ///             .await
    ///             .unwrap();
    ///         assert_eq!(greeting, "listening");
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn started(self, value: V) {
        let mut signal = self.signal.borrow_mut();
        if signal.is_settled() || signal.abandoned {
            return;
        }
        signal.value = Some(value);
        signal.started = true;
        // The child is the nursery's now: nothing will cancel it on the starter's behalf.
        signal.cancel.finished();
        signal.wake_starter();
    }
}

pin_project_lite::pin_project! {
    /// The child side: runs the user's future, diverting failures before `started` to the
    /// starter.
    struct StartedChild<F, V, E> {
        #[pin]
        fut: F,
        signal: SharedSignal<V>,
        early: EarlySlot<E>,
    }

    impl<F, V, E> PinnedDrop for StartedChild<F, V, E> {
        fn drop(this: Pin<&mut Self>) {
            // Retired: its unit may go to another child.
            this.signal.borrow().cancel.finished();
            // Dropped before being ready: the nursery cancelled it.
            settle_early(&this.signal, &this.early, Early::Cancelled);
        }
    }
}

/// No join slot: `start` hands the value over through its signal, which the nursery tells
/// where the child runs.
impl<F, V, E> ChildTask<E> for StartedChild<F, V, E>
where
    F: Future,
    F::Output: TaskOutput<E>,
{
    fn join_slot(&self) -> Option<&dyn JoinFailed> {
        Some(&*self.signal)
    }
}

impl<F, V, E> Future for StartedChild<F, V, E>
where
    F: Future,
    F::Output: TaskOutput<E>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.project();
        if this.signal.borrow().settled_early {
            return hand_over_early(this.signal, this.early, cx);
        }
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.poll(cx)));
        // After `started`, or once the starter is gone, a failure is the nursery's.
        let nurserys = {
            let signal = this.signal.borrow();
            signal.started || signal.abandoned
        };
        let early = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => match out.into_result() {
                Ok(_) => Early::NotReady,
                Err(e) if nurserys => return Poll::Ready(Err(e)),
                Err(e) => Early::Failed(e),
            },
            Err(payload) if nurserys => resume_unwind(payload),
            Err(payload) => Early::Panicked(payload),
        };
        let failed = !matches!(early, Early::NotReady);
        // Kept before the failure moves to the starter (a panic's payload is gone once it
        // resumes there); the message only when an instrument may ask for it.
        this.signal.borrow_mut().hidden_outcome = match &early {
            Early::Failed(_) => Some(TaskOutcome::Failed),
            Early::Panicked(payload) if hooks::active() => {
                Some(TaskOutcome::Panicked(panic_text(&**payload)))
            }
            _ => None,
        };
        settle_early(this.signal, this.early, early);
        if !failed {
            return Poll::Ready(Ok(()));
        }
        // A failure stays here until the starter has it: were the starter dropped first, it
        // would be lost with it.
        hand_over_early(this.signal, this.early, cx)
    }
}

/// A child whose future failed before `started`: done once the starter took the failure;
/// if the starter was dropped without it, the failure is the nursery's.
fn hand_over_early<V, E>(
    signal: &SharedSignal<V>,
    slot: &EarlySlot<E>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), E>> {
    let mut signal = signal.borrow_mut();
    let mut slot = slot.borrow_mut();
    if !signal.abandoned {
        if slot.is_none() {
            return Poll::Ready(Ok(()));
        }
        signal.child = Some(cx.waker().clone());
        return Poll::Pending;
    }
    // Abandoned: a failure still here is the nursery's after all, which then sees how the
    // child ended. (A starter that took the failure is dropped too, abandoning nothing.)
    match slot.take() {
        Some(Early::Failed(e)) => {
            signal.hidden_outcome = None;
            Poll::Ready(Err(e))
        }
        Some(Early::Panicked(payload)) => {
            signal.hidden_outcome = None;
            drop((signal, slot));
            resume_unwind(payload)
        }
        _ => Poll::Ready(Ok(())),
    }
}

/// The starter side: waits for an outcome; abandons the child if dropped first.
struct WaitStarted<V, E> {
    signal: SharedSignal<V>,
    early: EarlySlot<E>,
}

impl<V, E> Future for WaitStarted<V, E> {
    type Output = Result<V, Early<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut signal = self.signal.borrow_mut();
        if let Some(v) = signal.value.take() {
            return Poll::Ready(Ok(v));
        }
        let mut early = self.early.borrow_mut();
        // A child cancelled before `started` means its nursery is cancelled; a starter in
        // that nursery's scope is being cancelled too and is dropped here (as an awaited
        // `JoinHandle` is). Only a shielded starter hears of it.
        if matches!(*early, Some(Early::Cancelled)) && current_is_cancelled() {
            return Poll::Pending;
        }
        if let Some(early) = early.take() {
            // The child waits until its failure is taken.
            signal.wake_child();
            return Poll::Ready(Err(early));
        }
        signal.starter = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<V, E> Drop for WaitStarted<V, E> {
    fn drop(&mut self) {
        let mut signal = self.signal.borrow_mut();
        if signal.started {
            return;
        }
        signal.abandoned = true;
        if signal.settled_early {
            // A failure it did not take goes to the nursery from the child.
            signal.wake_child();
        } else {
            signal.cancel.cancel();
        }
    }
}

pub(crate) async fn start<'s, 'env, F, V, O, E>(
    nursery: &Nursery<'s, 'env, E>,
    f: F,
    label: TaskLabel,
) -> Result<V, StartError<E>>
where
    F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>, TaskStatus<V>) -> O + 'env,
    O: TaskOutput<E>,
    O::Value: 'env,
    V: 'env,
    E: 'env,
{
    let signal = Rc::new(RefCell::new(Signal {
        value: None,
        started: false,
        settled_early: false,
        hidden_outcome: None,
        abandoned: false,
        starter: None,
        child: None,
        cancel: ChildCancel::default(),
    }));
    let early = Rc::new(RefCell::new(None));
    let child = StartedChild {
        fut: f(
            nursery.fresh_handle(),
            TaskStatus {
                signal: signal.clone(),
            },
        ),
        signal: signal.clone(),
        early: early.clone(),
    };
    // Kept for the error (a `start` is once per service, not per request).
    let name = label.name().map(Box::from);
    let task = TaskName::Child(nursery.spawn_erased(Box::pin(child), label));
    match (WaitStarted { signal, early }).await {
        Ok(v) => Ok(v),
        Err(Early::Failed(e)) => Err(StartError::failed(task, name, e)),
        Err(Early::Panicked(payload)) => resume_unwind(payload),
        Err(Early::NotReady) => Err(StartError::not_ready(task, name)),
        Err(Early::Cancelled) => Err(StartError::cancelled(task, name)),
    }
}
