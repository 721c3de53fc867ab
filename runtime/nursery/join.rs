//! Where a child's value goes: the [`JoinHandle`] the body awaits, the slot it shares
//! with the child, and the [`Child`] wrapper the nursery stores.
//!
//! # State
//!
//! A [`JoinSlot`] moves from `Running` to `Done`, `Failed` or `Cancelled` exactly once
//! (the child finished, its error went to the nursery, or it was dropped first); awaiting
//! the handle takes a `Done` value out (`Taken`). The child's [`JoinSender`] marks the slot
//! cancelled if it is dropped while the slot is still `Running`.

#![forbid(unsafe_code)]

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use crate::instrument::hooks::TaskOutcome;
use crate::nursery::error::{JoinError, TaskName};
use crate::nursery::output::TaskOutput;
use crate::scope::cancel_scope::{ScopeNode, current_is_cancelled};
use crate::scope::unit::UnitCell;

/// What the nursery tells a child's join slot, whatever the child's value type.
pub(crate) trait JoinFailed {
    /// The child failed (its error went to the nursery).
    fn failed(&self);
    /// The child's first poll is about to run in `unit` of the nursery at `node`: from
    /// now on [`JoinHandle::cancel`] reaches it there. A cancel asked for before this
    /// takes effect now (the child still runs to its first suspension).
    fn started(&self, node: &Rc<ScopeNode>, unit: &Arc<UnitCell>);
    /// The child, named `name`, is being retired: if it did not deliver a value (it failed,
    /// or is about to be dropped unfinished), its handle's [`JoinError`] names it.
    fn name_if_unsuccessful(&self, name: &str);
    /// How the child's own future ended, when that is not what the nursery saw: a child
    /// of `start` whose failure before `started` went to its starter ends as returned
    /// (or is dropped while it waits for the starter to take it), yet the instruments must
    /// hear that it failed or panicked. Asked only when an instrument hears the exit.
    fn hidden_outcome(&self) -> Option<TaskOutcome> {
        None
    }
}

/// A cancel of one child alone, by whoever started it ([`JoinHandle::cancel`], a `start`
/// whose caller went away): the child is dropped at its next suspension, after its shields.
///
/// Invariant: `running_at` holds the child's unit only from its first poll until it is
/// retired (`finished`), so a cancel never reaches a unit cell reused by another child.
#[derive(Default)]
pub(crate) struct ChildCancel {
    /// Where the child runs, from its first poll until it finishes.
    running_at: RefCell<Option<(Rc<ScopeNode>, Arc<UnitCell>)>>,
    /// The cancel was asked for; one asked before the first poll takes effect there.
    asked: Cell<bool>,
}

impl ChildCancel {
    /// The child's first poll is about to run in `unit` of the nursery at `node`.
    pub(crate) fn started(&self, node: &Rc<ScopeNode>, unit: &Arc<UnitCell>) {
        if self.asked.get() {
            node.cancel_child_at_first_poll(unit);
        }
        *self.running_at.borrow_mut() = Some((node.clone(), unit.clone()));
    }

    /// Cancels the child (or, before its first poll, asks for it). Idempotent.
    pub(crate) fn cancel(&self) {
        self.asked.set(true);
        if let Some((node, unit)) = &*self.running_at.borrow() {
            node.cancel_child(unit);
        }
    }

    /// The child is gone: its unit is no longer its own.
    pub(crate) fn finished(&self) {
        self.running_at.borrow_mut().take();
    }
}

/// The state a child shares with its [`JoinHandle`].
pub(crate) struct JoinSlot<T> {
    state: RefCell<JoinState<T>>,
    waker: RefCell<Option<Waker>>,
    cancel: ChildCancel,
    /// The child's name, kept only once it failed or is dropped unfinished (so a
    /// successful named child costs no copy of its name).
    name: OnceCell<Box<str>>,
}

enum JoinState<T> {
    Running,
    Done(T),
    Failed,
    Cancelled,
    Taken,
}

impl<T> JoinSlot<T> {
    pub(crate) fn new() -> Rc<JoinSlot<T>> {
        Rc::new(JoinSlot {
            state: RefCell::new(JoinState::Running),
            waker: RefCell::new(None),
            cancel: ChildCancel::default(),
            name: OnceCell::new(),
        })
    }

    fn set(&self, state: JoinState<T>) {
        *self.state.borrow_mut() = state;
        // Finished: nothing left to cancel, and the unit's cell may be reused.
        self.cancel.finished();
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

impl<T> JoinFailed for JoinSlot<T> {
    fn failed(&self) {
        self.set(JoinState::Failed);
    }

    fn started(&self, node: &Rc<ScopeNode>, unit: &Arc<UnitCell>) {
        self.cancel.started(node, unit);
    }

    fn name_if_unsuccessful(&self, name: &str) {
        if matches!(*self.state.borrow(), JoinState::Running | JoinState::Failed) {
            let _ = self.name.set(name.into());
        }
    }
}

/// The child's end of a join slot: marks the child cancelled if dropped before it finished.
pub(crate) struct JoinSender<T>(pub(crate) Rc<JoinSlot<T>>);

impl<T> Drop for JoinSender<T> {
    fn drop(&mut self) {
        if matches!(*self.0.state.borrow(), JoinState::Running) {
            self.0.set(JoinState::Cancelled);
        }
    }
}

pin_project_lite::pin_project! {
    /// A child as the nursery stores it: the user's future, and where its value goes.
    /// Hand-written rather than an `async` block, which would hold the future twice (as the
    /// captured value and as the awaited one) and double the memory of every idle child.
    /// `join` receives the value (`()` for `start_soon`: nobody awaits it).
    pub(crate) struct Child<F, J, E> {
        #[pin]
        fut: F,
        join: Option<J>,
        _error: PhantomData<fn() -> E>,
    }
}

/// A child future as its nursery holds it (type-erased): polled to its end, and asked for
/// its join slot. The slot lives in the child's own allocation, so a task needs no second
/// pointer to it.
pub(crate) trait ChildTask<E>: Future<Output = Result<(), E>> {
    /// The slot of the child's [`JoinHandle`], until the child delivers its value (`None`
    /// for a child spawned without one).
    fn join_slot(&self) -> Option<&dyn JoinFailed>;
}

/// Where a child's value goes when it finishes.
pub(crate) trait Deliver<T> {
    fn deliver(self, value: T);
    /// The join slot the value goes to, if any.
    fn slot(&self) -> Option<&dyn JoinFailed>;
}

impl<T> Deliver<T> for () {
    fn deliver(self, _value: T) {}
    fn slot(&self) -> Option<&dyn JoinFailed> {
        None
    }
}

impl<T> Deliver<T> for JoinSender<T> {
    fn deliver(self, value: T) {
        self.0.set(JoinState::Done(value));
    }
    fn slot(&self) -> Option<&dyn JoinFailed> {
        Some(&*self.0)
    }
}

impl<F, J, E> Child<F, J, E> {
    /// Wraps `fut`; its value goes to `join`.
    pub(crate) fn new(fut: F, join: J) -> Self {
        Child {
            fut,
            join: Some(join),
            _error: PhantomData,
        }
    }
}

impl<F, J, E> Future for Child<F, J, E>
where
    F: Future,
    F::Output: TaskOutput<E>,
    J: Deliver<<F::Output as TaskOutput<E>>::Value>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.project();
        let value = match this.fut.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(out) => out.into_result()?,
        };
        if let Some(join) = this.join.take() {
            join.deliver(value);
        }
        Poll::Ready(Ok(()))
    }
}

impl<F, J, E> ChildTask<E> for Child<F, J, E>
where
    F: Future,
    F::Output: TaskOutput<E>,
    J: Deliver<<F::Output as TaskOutput<E>>::Value>,
{
    fn join_slot(&self) -> Option<&dyn JoinFailed> {
        self.join.as_ref().and_then(Deliver::slot)
    }
}

/// A handle to a nursery child, awaitable inside the nursery's scope.
///
/// Awaiting it yields the child's value. Dropping the handle does not affect the child.
/// The brand `'s` keeps the handle inside the nursery body.
///
/// # Cancellation
///
/// Cancel-safe: dropping the await leaves the value in place for a later await.
///
/// A child that failed or was cancelled means its nursery is cancelled, and so is the code
/// awaiting the handle in that nursery: the await does not complete, and that code is
/// dropped at this suspension (the failure is reported once, by the nursery's
/// [`ErrorGroup`](crate::ErrorGroup), not turned into a second error). Code kept running
/// by a [shield](crate::shield) gets a [`JoinError`] saying what happened instead.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     let sum = trellis::nursery(async |n| {
///         let a = n.spawn(async { Ok(20) });
///         let b = n.spawn(async { Ok(22) });
///         Ok::<_, std::io::Error>(a.await.unwrap() + b.await.unwrap())
///     })
///     .await
///     .unwrap();
///     assert_eq!(sum, 42);
/// });
/// ```
pub struct JoinHandle<'s, T> {
    slot: Rc<JoinSlot<T>>,
    number: u64,
    /// This handle has returned `Ready` (for `FusedFuture`).
    done: bool,
    _brand: PhantomData<fn(&'s ()) -> &'s ()>,
}

impl<T> fmt::Debug for JoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.slot.state.borrow() {
            JoinState::Running => "running",
            JoinState::Done(_) => "done",
            JoinState::Failed => "failed",
            JoinState::Cancelled => "cancelled",
            JoinState::Taken => "taken",
        };
        f.debug_struct("JoinHandle")
            .field("task", &TaskName::Child(self.number))
            .field("state", &state)
            .finish()
    }
}

impl<T> JoinHandle<'_, T> {
    pub(crate) fn new(slot: Rc<JoinSlot<T>>, number: u64) -> Self {
        JoinHandle {
            slot,
            number,
            done: false,
            _brand: PhantomData,
        }
    }

    /// Whether the child has finished (with a value, a failure or a cancellation).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let child = n.spawn(async { Ok(7) });
    ///         assert!(!child.is_finished()); // spawned, not run yet
    ///         trellis::yield_now().await;
    ///         assert!(child.is_finished());
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        !matches!(*self.slot.state.borrow(), JoinState::Running)
    }

    /// Cancels this child alone, not its nursery (tokio's `abort`, Trio's per-task scope).
    ///
    /// The child is dropped at its next suspension (it runs to its first one if it has not
    /// run yet), after any shielded part inside it has finished; everything inside it is
    /// cancelled as by a scope of its own (a nursery inside it included). A cancelled
    /// child is not a failure: the nursery and the siblings run on, and awaiting this
    /// handle gives a [`JoinError`] whose [`is_cancelled`](JoinError::is_cancelled) is
    /// true. Cancelling a child that has finished changes nothing. Idempotent.
    ///
    /// A child already woken when the cancel comes (its sleep ended in the same instant,
    /// its event was set) is polled once more, by the delivery rule (a value ready in the
    /// same instant as a cancellation is kept): if it finishes in that poll, the handle
    /// gives its value, not a `JoinError`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         let slow = n.spawn(trellis::sleep(Duration::from_secs(3600)));
    ///         let quick = n.spawn(async { Ok(42) });
    ///         slow.cancel();
    ///         assert!(slow.await.unwrap_err().is_cancelled());
    ///         assert_eq!(quick.await.unwrap(), 42);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn cancel(&self) {
        if self.is_finished() {
            return;
        }
        self.slot.cancel.cancel();
    }
}

impl<T> JoinHandle<'_, T> {
    /// The handle's poll; [`Future::poll`] adds the `done` bookkeeping.
    fn poll_slot(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let task = TaskName::Child(self.number);
        let name = || self.slot.name.get().cloned();
        let mut state = self.slot.state.borrow_mut();
        match &*state {
            JoinState::Running => {
                *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // A failed or cancelled child means the nursery is cancelled; an awaiter in its
            // scope is being cancelled too and is dropped at this suspension, rather than
            // turning the sibling's failure into a second error. Only an awaiter that a
            // shield keeps running sees these errors.
            JoinState::Failed | JoinState::Cancelled if current_is_cancelled() => {
                return Poll::Pending;
            }
            JoinState::Failed => return Poll::Ready(Err(JoinError::failed(task, name()))),
            JoinState::Cancelled => return Poll::Ready(Err(JoinError::cancelled(task, name()))),
            JoinState::Taken => return Poll::Ready(Err(JoinError::taken(task))),
            JoinState::Done(_) => {}
        }
        match std::mem::replace(&mut *state, JoinState::Taken) {
            JoinState::Done(v) => Poll::Ready(Ok(v)),
            _ => unreachable!("checked above"),
        }
    }
}

impl<T> Future for JoinHandle<'_, T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = self.poll_slot(cx);
        self.done |= polled.is_ready();
        polled
    }
}

/// `futures::select!` and other `futures-core` combinators take a `JoinHandle` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// trellis::run(async {
///     trellis::nursery(async |n| {
///         let mut child = n.spawn(async { Ok(7) });
///         assert!(!child.is_terminated());
///         assert_eq!((&mut child).await.unwrap(), 7);
///         assert!(child.is_terminated(), "its value was taken");
///     })
///     .await
///     .unwrap();
/// });
/// ```
impl<T> futures_core::FusedFuture for JoinHandle<'_, T> {
    /// True once this handle has given its result (the child's value, or a [`JoinError`]
    /// to a shielded awaiter).
    fn is_terminated(&self) -> bool {
        self.done
    }
}
