//! Nurseries: task groups whose children are owned and polled by the nursery itself.
//!
//! # State
//!
//! - [`Shared`] holds what the nursery's handles and the nursery future share: the
//!   children (a slab of boxed `'env` futures), the ready queue, the failures and the first
//!   panic, and the nursery's cancel-scope node.
//! - The ready queue (`ready_queue.rs`) says which units to poll; only those are polled.
//! - While a child is being polled its future is taken out of its slot (`fut` is `None`),
//!   so the child may spawn siblings (which borrows the slab) during its own poll.
//! - A nursery that stops early because its poll budget ran out wakes itself.
//! - Cycles: a child spawned with `spawn_with` holds a handle, hence an `Rc` of `Shared`,
//!   which holds the child. The nursery future breaks the cycle by draining the children
//!   when it finishes or is dropped.
//!
//! # Failure and cancellation
//!
//! The first failure (an `Err` or a panic, of the body or a child) cancels the nursery's
//! scope. Cancellation is delivered at suspensions only (the rule in the `cancel` module
//! docs): units that are suspended and not woken are dropped at once; units already woken,
//! and units that have not run yet (a child spawned before or after the cancellation, the
//! body of a nursery entered in a cancelled scope), are polled once more and dropped if
//! they suspend. Units holding a shield run on.
//!
//! When an *enclosing* scope cancelled the nursery, it never completes with a value, even
//! if the body had returned one: once everything inside is gone it stays pending
//! (`abandoned`) until that scope's owner drops it, so the cancellation reaches the scope
//! that catches it. Errors are still returned (they are not lost to a cancellation).
//!
//! # Panics
//!
//! Every poll and every drop of a unit runs under `catch_unwind`; a panic is that unit's
//! failure (`panics`, in order). Once every unit is gone the first payload resumes
//! unchanged, and the failures beside it are written to stderr once (`take_panic`): a
//! payload must stay what the code panicked with, so it cannot carry them. A hard drop
//! resumes a caught panic at its end, unless the thread is already unwinding.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use crate::cancel::{CancelReason, CancelScope, Position, ScopeNode, enter};
use crate::context;
use crate::error::{ErrorGroup, Failure, StartError, TaskName};
use crate::join::{Child, JoinFailed, JoinHandle, JoinSender, JoinSlot};
use crate::output::{BodyOutput, TaskOutput};
pub(crate) use crate::ready_queue::UnitCell;
use crate::ready_queue::{BODY, Core, ReadyQueue};
use crate::slab::Slab;

/// How many units one poll of a nursery may poll before it yields to its parent, so that
/// a child that keeps waking itself cannot starve its siblings, the body or the reactor.
const POLL_BUDGET: usize = 256;

/// A type-erased child future; it reports its value through its join slot.
type ChildFuture<'env, E> = Pin<Box<dyn Future<Output = Result<(), E>> + 'env>>;

struct Task<'env, E> {
    /// `None` while the task is being polled.
    fut: Option<ChildFuture<'env, E>>,
    /// The child's waker cell, given at its first poll (a child that finishes in its first
    /// poll then hands it straight back to the spare list).
    unit: Option<Arc<UnitCell>>,
    /// The waker made from `unit` (a no-op one before the first poll).
    waker: Waker,
    number: u64,
    /// Tells the child's `JoinHandle` that it failed (`None`: spawned without a handle).
    join: Option<Rc<dyn JoinFailed + 'env>>,
    /// The child's own context: a copy of its spawner's at spawn time (`None`: empty so
    /// far). Moved into the thread's current context while the child is polled.
    context: Option<context::Context>,
    /// Where the child was spawned (`spawn`, `start_soon`, `spawn_with`, `start`), for
    /// reports such as the deadlock panic.
    location: &'static Location<'static>,
}

/// What the nursery future and every handle of the nursery share.
struct Shared<'env, E> {
    node: Rc<ScopeNode>,
    queue: Arc<ReadyQueue>,
    tasks: RefCell<Slab<Task<'env, E>>>,
    failures: RefCell<Vec<Failure<E>>>,
    /// Every panic caught in a poll or a destructor, in order: the first is resumed from
    /// the nursery, the others are reported on stderr beside it.
    panics: RefCell<Vec<(TaskName, Box<dyn Any + Send>)>>,
    spawned: Cell<u64>,
    /// Cells of finished children that nobody else references, reused for new children
    /// so that a spawn costs no waker allocation in the steady state.
    spare_units: RefCell<Vec<(Arc<UnitCell>, Waker)>>,
    /// The indices being polled in the current round (kept to reuse its allocation).
    batch: RefCell<Vec<usize>>,
    /// Whether the nursery has finished or is being dropped; a spawn after that (from a
    /// destructor of a child being dropped with it) drops the new child at once.
    finished: Cell<bool>,
    /// `'env` is invariant: the slab stores `'env` futures through a shared handle.
    _env: PhantomData<fn(&'env ()) -> &'env ()>,
}

impl<'env, E> Shared<'env, E> {
    fn insert(
        &self,
        fut: ChildFuture<'env, E>,
        join: Option<Rc<dyn JoinFailed + 'env>>,
        location: &'static Location<'static>,
    ) -> u64 {
        let number = self.spawned.get() + 1;
        self.spawned.set(number);
        // Into a nursery that is finished or being dropped (only a destructor of one of its
        // children can still spawn), the child is dropped unpolled, here. Into a cancelled
        // one, it is polled once like every unit: it runs to its first suspension.
        if self.finished.get() {
            return number;
        }
        let index = self.tasks.borrow_mut().insert(Task {
            fut: Some(fut),
            unit: None,
            waker: Waker::noop().clone(),
            number,
            join,
            context: context::inherit(),
            location,
        });
        // Spawn order is run order: the new child joins the back of the ready queue. It
        // is there exactly once until its first poll, so it needs no `queued` flag yet.
        self.queue.push(index);
        number
    }

    /// A unit cell for slot `index`: a spare one when there is one.
    fn unit_for(&self, index: usize) -> (Arc<UnitCell>, Waker) {
        if let Some((unit, waker)) = self.spare_units.borrow_mut().pop() {
            unit.recycle(index);
            return (unit, waker);
        }
        let unit = UnitCell::new(index, &self.queue);
        let waker = Waker::from(unit.clone());
        (unit, waker)
    }

    /// Drops a finished or cancelled child (inside its own context, catching a panic from
    /// its destructors), retires its unit, then keeps its cell for reuse when nothing else
    /// references it (a stale waker clone would wake the cell's next owner). Returns the
    /// payload of a panic raised while dropping.
    #[must_use = "a panic while dropping is the child's failure"]
    fn retire(
        &self,
        task: Task<'env, E>,
        fut: Option<ChildFuture<'env, E>>,
    ) -> Option<Box<dyn Any + Send>> {
        const MAX_SPARE: usize = 1024;
        let Task {
            fut: slot_fut,
            unit,
            waker,
            join,
            context,
            ..
        } = task;
        // Drop the child inside its own context: its destructors see its own variables.
        let entered = context::enter_child(context);
        let in_drop = drop_catching((fut, slot_fut, join));
        let in_context_drop = drop_catching(entered.leave());
        let Some(unit) = unit else {
            return in_drop.or(in_context_drop);
        };
        self.node.retire_unit(&unit);
        let mut spare = self.spare_units.borrow_mut();
        if Arc::strong_count(&unit) == 2 && spare.len() < MAX_SPARE {
            spare.push((unit, waker));
        }
        in_drop.or(in_context_drop)
    }

    /// Retires a child and records a panic from its destructors as its failure.
    fn retire_recording(&self, task: Task<'env, E>, fut: Option<ChildFuture<'env, E>>) {
        let name = TaskName::Child(task.number);
        if let Some(payload) = self.retire(task, fut) {
            self.record_failure(name, Err(payload));
        }
    }

    fn record_failure(&self, task: TaskName, outcome: Result<E, Box<dyn Any + Send>>) {
        self.node.cancel(CancelReason::Failure {
            task: task.to_string(),
        });
        match outcome {
            Ok(error) => self.failures.borrow_mut().push(Failure::new(task, error)),
            Err(payload) => self.panics.borrow_mut().push((task, payload)),
        }
    }

    /// The first panic, to resume; every other failure beside it is written to stderr
    /// once, since a panic payload cannot carry them (it must resume unchanged).
    #[inline]
    fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        if self.panics.borrow().is_empty() {
            return None; // every nursery asks as it finishes; keep that path short
        }
        self.take_panic_reporting_the_rest()
    }

    #[cold]
    fn take_panic_reporting_the_rest(&self) -> Option<Box<dyn Any + Send>> {
        let mut panics = std::mem::take(&mut *self.panics.borrow_mut()).into_iter();
        let (first_task, payload) = panics.next()?;
        let failures = std::mem::take(&mut *self.failures.borrow_mut());
        let mut lost: Vec<String> = failures
            .iter()
            .map(|f| {
                format!(
                    "{} failed with an error of type `{}`",
                    f.task(),
                    std::any::type_name::<E>()
                )
            })
            .collect();
        lost.extend(panics.map(|(task, p)| format!("{task} panicked too: {}", panic_text(&*p))));
        if !lost.is_empty() {
            eprintln!(
                "trellis: a nursery resumes the panic of {first_task}; beside it, {}",
                lost.join("; ")
            );
        }
        Some(payload)
    }

    fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// Polls child `index` once (or drops it unpolled when the nursery is cancelled and it
    /// never ran).
    fn poll_child(&self, index: usize) {
        let (mut fut, waker, unit, ctx) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.get_mut(index) else {
                return; // a stale wake of a finished child
            };
            if let Some(unit) = &task.unit {
                unit.queued.store(false, Ordering::Release);
            }
            let Some(fut) = task.fut.take() else {
                return;
            };
            // A child that never ran has no waker cell yet: its first poll gives it one.
            if task.unit.is_none() {
                let (unit, waker) = self.unit_for(index);
                task.unit = Some(unit);
                task.waker = waker;
            }
            let waker = std::mem::replace(&mut task.waker, Waker::noop().clone());
            let unit = task.unit.clone().expect("given at the first poll");
            (fut, waker, unit, task.context.take())
        };
        let polled = {
            let entered = context::enter_child(ctx);
            let polled = poll_unit(&self.node, &unit, &waker, fut.as_mut());
            (polled, entered.leave())
        };
        let (polled, ctx) = polled;
        let mut tasks = self.tasks.borrow_mut();
        let task = tasks
            .get_mut(index)
            .expect("a task stays in its slot while polled");
        task.waker = waker;
        task.context = ctx;
        let shielded = unit.is_shielded();
        drop(unit);
        let failure = match polled {
            Ok(Poll::Pending) if !self.is_cancelled() || shielded => {
                task.fut = Some(fut);
                return;
            }
            Ok(Poll::Pending | Poll::Ready(Ok(()))) => None,
            Ok(Poll::Ready(Err(error))) => Some(Ok(error)),
            Err(payload) => Some(Err(payload)),
        };
        let task = tasks.remove(index).expect("present");
        drop(tasks);
        if let Some(outcome) = failure {
            if let Some(join) = &task.join {
                join.failed();
            }
            self.record_failure(TaskName::Child(task.number), outcome);
        }
        self.retire_recording(task, Some(fut));
    }

    /// Drops every child that is neither about to be polled nor shielded (cancellation
    /// reaches units at their next suspension: for these, that is now).
    fn drop_cancelled_children(&self) {
        let doomed: Vec<Task<'env, E>> = {
            let mut tasks = self.tasks.borrow_mut();
            let keys: Vec<usize> = tasks
                .iter()
                .filter(|(_, t)| {
                    t.fut.is_some()
                        && t.unit
                            .as_ref()
                            .is_some_and(|u| !u.queued.load(Ordering::Acquire) && !u.is_shielded())
                })
                .map(|(k, _)| k)
                .collect();
            keys.into_iter().filter_map(|k| tasks.remove(k)).collect()
        };
        for task in doomed {
            self.retire_recording(task, None);
        }
    }

    /// Lists the live units in the deadlock report, when the executor is collecting one
    /// (it drops a deadlocked root); does nothing otherwise. The guard indents the nurseries
    /// dropped inside this one until it is dropped.
    fn report_deadlock(&self, body_alive: bool) -> crate::deadlock::ReportSection {
        crate::deadlock::deadlock_report(|report| {
            report.heading(format_args!("nursery:"));
            if body_alive {
                report.item(format_args!("its body"));
            }
            for (_, task) in self.tasks.borrow().iter() {
                report.item(format_args!(
                    "child #{}, spawned at {}",
                    task.number, task.location
                ));
            }
        })
    }

    /// Drops every child, ignoring shields (the nursery future itself is going away). A
    /// panicking destructor is recorded like any other and the rest are still dropped; a
    /// child spawned by one of these destructors is dropped too (`finished` is set, so
    /// `insert` drops it at once).
    fn drop_all_children(&self) {
        debug_assert!(self.finished.get());
        loop {
            let all = self.tasks.borrow_mut().drain();
            if all.is_empty() {
                return;
            }
            for task in all {
                self.retire_recording(task, None);
            }
        }
    }

    /// Whether a scope enclosing the nursery cancelled it (rather than its own scope).
    fn cancelled_from_outside(&self) -> bool {
        // `is_cancelled` is cached; the walk up the tree runs only for a cancelled nursery.
        self.is_cancelled()
            && self
                .node
                .cancel_source()
                .is_some_and(|source| !Rc::ptr_eq(&source, &self.node))
    }
}

/// Drops `value`, catching a panic from its destructor.
fn drop_catching<T>(value: T) -> Option<Box<dyn Any + Send>> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).err()
}

/// What a panic payload says, for the report of failures beside a resumed panic.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(s), _) => format!("{s:?}"),
        (None, Some(s)) => format!("{s:?}"),
        (None, None) => String::from("(a payload that is not a string)"),
    }
}

/// Polls one unit at `node`, with the unit as the current position, catching a panic.
fn poll_unit<F: Future + ?Sized>(
    node: &Rc<ScopeNode>,
    unit: &Arc<UnitCell>,
    waker: &Waker,
    fut: Pin<&mut F>,
) -> Result<Poll<F::Output>, Box<dyn Any + Send>> {
    let _pos = enter(Position {
        node: node.clone(),
        unit: Some(unit.clone()),
    });
    let mut cx = Context::from_waker(waker);
    catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)))
}

/// The handle of a running nursery, given to its body and to children started with
/// [`spawn_with`](Nursery::spawn_with).
///
/// `'s` is the scope brand: it is invariant and chosen by the nursery for each call, so
/// the handle (and every [`JoinHandle`] it makes) cannot leave the closure it was given to.
/// `'env` is what children may borrow: anything that outlives the `nursery(..)` call.
/// `E` is the error type of the body and of every child.
pub struct Nursery<'s, 'env, E> {
    shared: Rc<Shared<'env, E>>,
    _brand: PhantomData<fn(&'s ()) -> &'s ()>,
}

impl<E> fmt::Debug for Nursery<'_, '_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nursery")
            .field("children", &self.shared.tasks.borrow().len())
            .field("spawned", &self.shared.spawned.get())
            .field("scope", &CancelScope::from_node(self.shared.node.clone()))
            .finish()
    }
}

impl<'s, 'env, E: 'env> Nursery<'s, 'env, E> {
    fn handle<'c>(&self) -> Nursery<'c, 'env, E> {
        Nursery {
            shared: self.shared.clone(),
            _brand: PhantomData,
        }
    }

    /// Starts a child. It runs concurrently with the body and its siblings until it
    /// finishes, fails, or the nursery is cancelled.
    ///
    /// The child may borrow anything that outlives the `nursery(..)` call (`'env`), but not
    /// the handle nor locals of the body: a child that spawns siblings uses
    /// [`spawn_with`](Nursery::spawn_with).
    ///
    /// # Cancellation
    ///
    /// The child is dropped at its next suspension once the nursery (or an enclosing scope)
    /// is cancelled, unless it holds a shield. A child spawned into a cancelled nursery
    /// still runs to its first suspension, like every unit: code that does not await is
    /// never interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = vec!["ada", "grace"];
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         for name in &names {
    ///             n.spawn(async move { println!("hello, {name}") });
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F, O>(&self, fut: F) -> JoinHandle<'s, O::Value>
    where
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        let slot = JoinSlot::new();
        let child = Child::new(fut, JoinSender(slot.clone()));
        let number = self
            .shared
            .insert(Box::pin(child), Some(slot.clone()), Location::caller());
        JoinHandle::new(slot, number)
    }

    /// Starts a child without a [`JoinHandle`] (Trio's `start_soon`): for children whose
    /// value nobody awaits. It behaves exactly as [`spawn`](Nursery::spawn) otherwise, and
    /// costs one allocation less (the child's future is the only one in the steady state).
    ///
    /// # Examples
    ///
    /// ```
    /// let hits = std::cell::Cell::new(0);
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         for _ in 0..100 {
    ///             n.start_soon(async { hits.set(hits.get() + 1) });
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert_eq!(hits.get(), 100);
    /// ```
    #[track_caller]
    pub fn start_soon<F, O>(&self, fut: F)
    where
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
    {
        let child: Child<F, (), E> = Child::new(fut, ());
        self.shared
            .insert(Box::pin(child), None, Location::caller());
    }

    /// Starts a child that receives its own handle to this nursery, so that it can spawn
    /// siblings.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let count = std::cell::Cell::new(0);
    ///     trellis::nursery(async |n| {
    ///         n.spawn_with(async |n| {
    ///             count.set(count.get() + 1);
    ///             n.spawn(async { count.set(count.get() + 1) });
    ///         });
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(count.get(), 2);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_with<F, O>(&self, f: F) -> JoinHandle<'s, O::Value>
    where
        F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>) -> O + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        let handle: Nursery<'env, 'env, E> = self.handle();
        self.spawn(f(handle))
    }

    /// Starts a child and waits until it reports that it is ready (Trio's
    /// `nursery.start`): returns the value the child passes to [`Ready::ready`]; after
    /// that the child keeps running in this nursery.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the child fails or finishes before calling `ready`; a child's
    /// panic before `ready` is resumed here. Either way the nursery is not affected.
    ///
    /// # Cancellation
    ///
    /// Dropping the `start` future before the child is ready cancels the child (it was
    /// started on the caller's behalf); after `ready`, the child belongs to the nursery.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let port = n
    ///             .start(async |_n, ready| {
    ///                 ready.ready(8080_u16); // e.g. the port a server bound
    ///                 // ... serve ...
    ///                 Ok(())
    ///             })
    ///             .await
    ///             .map_err(|e| e.to_string())?;
    ///         assert_eq!(port, 8080);
    ///         Ok::<_, String>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn start<F, V, O>(&self, f: F) -> impl Future<Output = Result<V, StartError<E>>>
    where
        F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>, Ready<V>) -> O + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
        V: 'env,
    {
        // Not an `async fn`, so that `#[track_caller]` sees the caller.
        crate::start::start(self, f, Location::caller())
    }

    /// Cancels the nursery: the body and every child are dropped at their next suspension
    /// (shielded regions finish first). The nursery then returns `Ok(None)` (or
    /// `Ok(Some(value))` if the body had already returned) unless something failed.
    /// Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         n.spawn(trellis::sleep_forever());
    ///         n.cancel(); // the sleeper and the body end at their next suspension
    ///         trellis::sleep_forever().await;
    ///     })
    ///     .await
    /// });
    /// assert_eq!(out, Ok(None));
    /// ```
    pub fn cancel(&self) {
        self.shared.node.cancel(CancelReason::Explicit);
    }

    /// The nursery's cancel scope, to cancel it from elsewhere or give it a deadline.
    pub fn cancel_scope(&self) -> CancelScope {
        CancelScope::from_node(self.shared.node.clone())
    }

    /// Spawns a type-erased child, spawned at `location`, and reports its number (used
    /// by `start`).
    pub(crate) fn spawn_erased(
        &self,
        fut: ChildFuture<'env, E>,
        location: &'static Location<'static>,
    ) -> u64 {
        self.shared.insert(fut, None, location)
    }

    pub(crate) fn fresh_handle(&self) -> Nursery<'env, 'env, E> {
        self.handle()
    }
}

pub use crate::start::Ready;

/// Opens a nursery, runs `body` in it, and waits until the body and every child have
/// finished.
///
/// The body gets the [`Nursery`] handle by value and may spawn children that borrow
/// anything that outlives this call. The body's return type sets the error type: return
/// `()` for a nursery that cannot fail, or `Result<T, E>`.
///
/// Returns `Ok(Some(value))` with the body's value, `Ok(None)` when the nursery was
/// cancelled through its own scope ([`Nursery::cancel`]) before the body returned, and
/// `Err(group)` when the body or any child failed: the first failure cancels everything
/// else, and the [`ErrorGroup`] holds every error that occurred, in order.
///
/// # Cancellation
///
/// Cancellation is delivered at suspensions only (see [`CancelScope`]): each unit of the
/// nursery (the body, each child) is dropped at its next suspension unless it holds a
/// shield, and a unit that starts inside a cancelled scope still runs to its first one.
///
/// When an *enclosing* scope cancels the nursery, the nursery never completes with a
/// value, even if the body had already returned one: it waits, once everything inside is
/// gone, to be dropped by that scope, which reports the cancellation (`None` from
/// [`move_on_after`](crate::move_on_after), [`TimedOut`](crate::TimedOut) from
/// [`fail_after`](crate::fail_after), the failure of an outer nursery). So the code after
/// the `.await` never runs on half-done work. Errors that occurred are still returned as
/// `Err(group)`.
///
/// Dropping the nursery future from outside (a hard cancel, as inside `futures::select!`)
/// drops the body and every child at once, shields included.
///
/// # Panics
///
/// A panic in any task, in a poll or in a destructor, is caught and counts as that task's
/// failure: it cancels the rest, shielded clean-up still finishes, and once every child is
/// gone the first panic resumes from here with its payload unchanged (so downcasts and
/// `#[should_panic(expected = ..)]` work as in sequential code). The failures beside it
/// (other errors, further panics) cannot travel in that payload; they are written to
/// stderr once, naming each task, the way the standard panic hook reports a panic. No
/// sequence of panics aborts the process: after a hard drop the first caught panic resumes
/// from the drop, unless the thread is already unwinding.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Boom;
///
/// let words = ["a", "b", "c"];
/// let result = trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         for w in &words {
///             n.spawn(async move {
///                 trellis::sleep(Duration::from_secs(1)).await;
///                 println!("{w}");
///             });
///         }
///         n.spawn(async { Err::<(), _>(Boom) }); // cancels the sleepers
///         Ok(())
///     })
///     .await
/// });
/// let group = result.unwrap_err();
/// assert_eq!(group.len(), 1);
/// ```
pub async fn nursery<'env, F, R, E>(body: F) -> Result<Option<R::Value>, ErrorGroup<E>>
where
    F: for<'s> AsyncFnOnce(Nursery<'s, 'env, E>) -> R,
    R: BodyOutput<Error = E>,
    E: 'env,
{
    let core = Core::take();
    let shared = Rc::new(Shared {
        node: ScopeNode::new(None, false),
        queue: core.queue,
        tasks: RefCell::new(Slab::default()),
        failures: RefCell::new(Vec::new()),
        panics: RefCell::new(Vec::new()),
        spawned: Cell::new(0),
        spare_units: RefCell::new(core.spare_units),
        batch: RefCell::new(core.batch),
        finished: Cell::new(false),
        _env: PhantomData,
    });
    let handle = Nursery {
        shared: shared.clone(),
        _brand: PhantomData,
    };
    core.body_waker.wake_by_ref();
    NurseryFuture {
        shared,
        body: Some(body(handle)),
        body_unit: core.body_unit,
        body_waker: core.body_waker,
        value: None,
        started: false,
        abandoned: false,
    }
    .await
}

pin_project_lite::pin_project! {
    struct NurseryFuture<'env, B: Future, E> where B::Output: BodyOutput<Error = E> {
        shared: Rc<Shared<'env, E>>,
        #[pin]
        body: Option<B>,
        body_unit: Arc<UnitCell>,
        body_waker: Waker,
        value: Option<<B::Output as BodyOutput>::Value>,
        started: bool,
        // An enclosing scope cancelled the nursery and everything in it is gone: it never
        // completes, and waits for that scope's owner to drop it.
        abandoned: bool,
    }

    impl<'env, B: Future, E> PinnedDrop for NurseryFuture<'env, B, E>
    where B::Output: BodyOutput<Error = E> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let shared = this.shared.clone();
            // Before anything is dropped: the executor may be collecting a deadlock report.
            // Only a nursery with live units can be part of a deadlock (and only one with
            // live units encloses others), so a finished one skips the look-up.
            let live = this.body.is_some() || !shared.tasks.borrow().is_empty();
            let _report = live.then(|| shared.report_deadlock(this.body.is_some()));
            shared.finished.set(true);
            retire_body(this.body.as_mut(), &shared, this.body_unit);
            shared.drop_all_children();
            shared.node.detach();
            ScopeNode::recycle(&shared.node);
            Core::put_back(Core {
                queue: shared.queue.clone(),
                body_unit: this.body_unit.clone(),
                body_waker: this.body_waker.clone(),
                spare_units: std::mem::take(&mut *shared.spare_units.borrow_mut()),
                batch: std::mem::take(&mut *shared.batch.borrow_mut()),
            });
            // A panic caught before this hard drop, or during it, is not lost: it resumes
            // now that everything is dropped (unless the thread is already unwinding, when
            // a second panic would abort; the hook has printed it).
            if let Some(payload) = shared.take_panic() {
                if !std::thread::panicking() {
                    resume_unwind(payload);
                }
            }
        }
    }
}

impl<'env, B: Future, E> NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    /// Polls the body once; drops it when it suspends while cancelled and unshielded.
    fn poll_body(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.body_unit.queued.store(false, Ordering::Release);
        let shared = &**this.shared;
        let Some(body) = this.body.as_mut().as_pin_mut() else {
            return;
        };
        let failure = match poll_unit(&shared.node, this.body_unit, this.body_waker, body) {
            Ok(Poll::Pending) if !shared.is_cancelled() || this.body_unit.is_shielded() => {
                return;
            }
            Ok(Poll::Pending) => None,
            Ok(Poll::Ready(out)) => match out.into_result() {
                Ok(v) => {
                    *this.value = Some(v);
                    None
                }
                Err(e) => Some(Ok(e)),
            },
            Err(payload) => Some(Err(payload)),
        };
        if let Some(outcome) = failure {
            shared.record_failure(TaskName::Body, outcome);
        }
        retire_body(this.body, shared, this.body_unit);
    }

    /// Drops the body if a cancellation reaches it now: it is suspended (not woken since)
    /// and holds no shield. A body that has not run yet is queued, so it runs first.
    fn drop_body_if_cancelled(self: Pin<&mut Self>) {
        let this = self.project();
        if this.body.is_some()
            && !this.body_unit.is_shielded()
            && !this.body_unit.queued.load(Ordering::Acquire)
        {
            retire_body(this.body, this.shared, this.body_unit);
        }
    }
}

/// Drops the nursery body (a panic from its destructors is the body's failure) and
/// retires its unit.
fn retire_body<B, E>(mut body: Pin<&mut Option<B>>, shared: &Shared<'_, E>, unit: &UnitCell) {
    if body.is_none() {
        return;
    }
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| body.set(None))) {
        shared.record_failure(TaskName::Body, Err(payload));
    }
    shared.node.retire_unit(unit);
}

impl<'env, B: Future, E> Future for NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    type Output = Result<Option<<B::Output as BodyOutput>::Value>, ErrorGroup<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.abandoned {
            return Poll::Pending;
        }
        let shared = self.shared.clone();
        if !self.started {
            *self.as_mut().project().started = true;
            shared.node.attach();
        }
        shared.node.set_owner(cx.waker());

        // Rounds of the units ready at the start of each round (FIFO, one lock per round),
        // until none is ready or the budget is spent. A unit woken during a round waits for
        // the next one, so a self-waking child gets one poll per round like everyone else.
        let mut batch = std::mem::take(&mut *shared.batch.borrow_mut());
        let mut budget = POLL_BUDGET;
        let mut more = true;
        while more && budget > 0 {
            // A cancellation (or a shield lifted) during the last round reaches the units
            // that are not ready before the next round runs.
            if shared.is_cancelled() {
                shared.drop_cancelled_children();
                self.as_mut().drop_body_if_cancelled();
            }
            more = shared.queue.pop_batch(&mut batch, budget, cx.waker());
            budget -= batch.len();
            for &index in &batch {
                match index {
                    BODY => self.as_mut().poll_body(),
                    index => shared.poll_child(index),
                }
            }
            more |= !batch.is_empty();
            batch.clear();
        }
        *shared.batch.borrow_mut() = batch;
        if shared.is_cancelled() {
            shared.drop_cancelled_children();
            self.as_mut().drop_body_if_cancelled();
        }
        if more {
            // Budget spent with work left: let the parent (and the reactor) run first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.body.is_some() || !shared.tasks.borrow().is_empty() {
            return Poll::Pending;
        }
        self.finish(&shared)
    }
}

impl<'env, B: Future, E> NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    /// Produces the outcome once the body and every child are gone.
    #[allow(clippy::type_complexity)]
    fn finish(
        self: Pin<&mut Self>,
        shared: &Shared<'env, E>,
    ) -> Poll<Result<Option<<B::Output as BodyOutput>::Value>, ErrorGroup<E>>> {
        let this = self.project();
        if let Some(payload) = shared.take_panic() {
            shared.finished.set(true);
            shared.node.detach();
            resume_unwind(payload);
        }
        let outcome = if !shared.failures.borrow().is_empty() {
            Err(ErrorGroup::new(std::mem::take(
                &mut *shared.failures.borrow_mut(),
            )))
        } else if shared.cancelled_from_outside() {
            // Never complete with a value when an enclosing scope cancelled us, even if the
            // body had returned one: the caller's next line must not run on half-done
            // work. The scope that catches the cancellation drops us.
            *this.abandoned = true;
            shared.finished.set(true);
            shared.node.detach();
            return Poll::Pending;
        } else {
            // `None`: our own scope's cancellation dropped the body before it returned.
            Ok(this.value.take())
        };
        shared.finished.set(true);
        shared.node.detach();
        Poll::Ready(outcome)
    }
}
