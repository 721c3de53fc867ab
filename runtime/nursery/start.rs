//! `Nursery::start`: start a child and wait until it says it is ready (Trio's
//! `nursery.start` / `task_status.started`), through its [`TaskStatus`].
//!
//! # State
//!
//! The child, its [`TaskStatus`] and the waiting `start` future share a [`Signal`] (the
//! value and the wakers, independent of the error type) and an [`Early`] slot. Before
//! `started`, the child's failure or panic is put in the slot and the nursery never sees
//! it; after `started`, failures go to the nursery as for any child. `abandoned` is set
//! when the `start` future is dropped before `started`: the child then ends at its next
//! poll.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::instrument::label::TaskLabel;
use crate::nursery::error::{StartError, TaskName};
use crate::nursery::handle::Nursery;
use crate::nursery::join::{ChildTask, JoinFailed};
use crate::nursery::output::TaskOutput;
use crate::scope::cancel_scope::current_is_cancelled;

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
    /// An early outcome is waiting in the `Early` slot.
    settled_early: bool,
    abandoned: bool,
    /// The `start` future, waiting for an outcome.
    starter: Option<Waker>,
    /// The child, to end it when the starter is abandoned.
    child: Option<Waker>,
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
/// If the `start` future is dropped first, the child ends at its next poll.
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
        if signal.is_settled() {
            return;
        }
        signal.value = Some(value);
        signal.started = true;
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
            // Dropped before being ready: the nursery cancelled it.
            settle_early(&this.signal, &this.early, Early::Cancelled);
        }
    }
}

/// No join slot: `start` hands the value over through its signal.
impl<F, V, E> ChildTask<E> for StartedChild<F, V, E>
where
    F: Future,
    F::Output: TaskOutput<E>,
{
    fn join_slot(&self) -> Option<&dyn JoinFailed> {
        None
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
        {
            let mut signal = this.signal.borrow_mut();
            if signal.abandoned && !signal.started {
                return Poll::Ready(Ok(()));
            }
            signal.child = Some(cx.waker().clone());
        }
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.poll(cx)));
        let started = this.signal.borrow().started;
        let early = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => match out.into_result() {
                Ok(_) => Early::NotReady,
                Err(e) if started => return Poll::Ready(Err(e)),
                Err(e) => Early::Failed(e),
            },
            // After `started` a panic is the nursery's, as for any child.
            Err(payload) if started => resume_unwind(payload),
            Err(payload) => Early::Panicked(payload),
        };
        settle_early(this.signal, this.early, early);
        Poll::Ready(Ok(()))
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
            return Poll::Ready(Err(early));
        }
        signal.starter = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<V, E> Drop for WaitStarted<V, E> {
    fn drop(&mut self) {
        let mut signal = self.signal.borrow_mut();
        if !signal.started {
            signal.abandoned = true;
            if let Some(w) = signal.child.take() {
                w.wake();
            }
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
        abandoned: false,
        starter: None,
        child: None,
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
