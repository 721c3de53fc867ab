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
//! scope. Units that are not ready are dropped at once; units already woken, and children
//! spawned before the cancellation that have not run yet, are polled once more (they were
//! ready: they run to their next suspension and may fail too) and dropped if still
//! pending. Units holding an active shield run on. A child spawned after the cancellation
//! is dropped unpolled.

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
    panic: RefCell<Option<Box<dyn Any + Send>>>,
    spawned: Cell<u64>,
    /// Cells of finished children that nobody else references, reused for new children
    /// so that a spawn costs no waker allocation in the steady state.
    spare_units: RefCell<Vec<(Arc<UnitCell>, Waker)>>,
    /// The indices being polled in the current round (kept to reuse its allocation).
    batch: RefCell<Vec<usize>>,
    /// Whether the nursery has finished; a spawn after that (only reachable by leaking a
    /// handle) drops the child unpolled.
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
        // Into a finished nursery (reachable only through a leaked handle) or a cancelled
        // one, the child is dropped unpolled. Children spawned before a cancellation still
        // get their first poll: they were ready, like a woken unit.
        if self.finished.get() || self.is_cancelled() {
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
            unit.index.store(index, Ordering::Relaxed);
            unit.queued.store(false, Ordering::Relaxed);
            unit.shields.store(0, Ordering::Relaxed);
            return (unit, waker);
        }
        let unit = UnitCell::new(index, &self.queue);
        let waker = Waker::from(unit.clone());
        (unit, waker)
    }

    /// Drops a finished or cancelled child, then keeps its cell for reuse when nothing
    /// else references it (a stale waker clone would wake the cell's next owner).
    fn retire(&self, task: Task<'env, E>, fut: Option<ChildFuture<'env, E>>) {
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
        drop((fut, slot_fut));
        drop(entered.leave());
        drop(join);
        let Some(unit) = unit else {
            return;
        };
        let mut spare = self.spare_units.borrow_mut();
        if Arc::strong_count(&unit) == 2 && spare.len() < MAX_SPARE {
            spare.push((unit, waker));
        }
    }

    fn record_failure(&self, task: TaskName, outcome: Result<E, Box<dyn Any + Send>>) {
        self.node.cancel(CancelReason::Failure {
            task: task.to_string(),
        });
        match outcome {
            Ok(error) => self.failures.borrow_mut().push(Failure::new(task, error)),
            Err(payload) => {
                let mut panic = self.panic.borrow_mut();
                if panic.is_none() {
                    *panic = Some(payload);
                }
            }
        }
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
        let number = task.number;
        if let (Some(join), true) = (&task.join, failure.is_some()) {
            join.failed();
        }
        self.retire(task, Some(fut));
        if let Some(outcome) = failure {
            self.record_failure(TaskName::Child(number), outcome);
        }
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
            self.retire(task, None);
        }
    }

    /// Lists the live units in the deadlock report, when the executor is collecting one
    /// (it drops a deadlocked root); does nothing otherwise. The guard indents the nurseries
    /// dropped inside this one until it is dropped.
    fn report_deadlock(&self, body_alive: bool) -> crate::executor::ReportSection {
        crate::executor::deadlock_report(|report| {
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

    /// Drops every child, ignoring shields (the nursery future itself is going away).
    fn drop_all_children(&self) {
        let all = self.tasks.borrow_mut().drain();
        drop(all);
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
    /// [`spawn_with`](Nursery::spawn_with). A child spawned into a cancelled nursery is
    /// dropped without being polled.
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
        // Not an `async fn`, so that `#[track_caller]` sees the caller. `start::start`
        // spawns at its first poll, synchronously after this block sets the location.
        let location = Location::caller();
        async move {
            START_LOCATION.set(Some(location));
            crate::start::start(self, f).await
        }
    }

    /// Cancels the nursery: the body and every child are dropped at their next suspension
    /// (shielded regions finish first). The nursery then returns `Ok(None)` unless
    /// something failed. Idempotent.
    pub fn cancel(&self) {
        self.shared.node.cancel(CancelReason::Explicit);
    }

    /// The nursery's cancel scope, to cancel it from elsewhere or give it a deadline.
    pub fn cancel_scope(&self) -> CancelScope {
        CancelScope::from_node(self.shared.node.clone())
    }

    /// Spawns a type-erased child and reports its number (used by `start`, which set
    /// the location of its caller just before).
    #[track_caller]
    pub(crate) fn spawn_erased(&self, fut: ChildFuture<'env, E>) -> u64 {
        let location = START_LOCATION.take().unwrap_or_else(Location::caller);
        self.shared.insert(fut, None, location)
    }

    pub(crate) fn fresh_handle(&self) -> Nursery<'env, 'env, E> {
        self.handle()
    }
}

pub use crate::start::Ready;

thread_local! {
    /// The caller of the `Nursery::start` whose first poll is running, for the one
    /// `spawn_erased` that this poll makes (`start::start` has no location parameter).
    static START_LOCATION: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
}

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
/// else, and the [`ErrorGroup`] holds every error that occurred, in order. A panic in any
/// task is resumed from here once every child is gone.
///
/// # Cancellation
///
/// When an enclosing scope is cancelled, each unit of the nursery (the body, each child) is
/// dropped at its next suspension unless it holds an active shield; the nursery future then
/// waits to be dropped by that scope. Dropping the nursery future from outside (a hard
/// cancel, as inside `futures::select!`) drops the body and every child at once, shields
/// included.
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
        panic: RefCell::new(None),
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
        body_polled: false,
        value: None,
        started: false,
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
        body_polled: bool,
        value: Option<<B::Output as BodyOutput>::Value>,
        started: bool,
    }

    impl<'env, B: Future, E> PinnedDrop for NurseryFuture<'env, B, E>
    where B::Output: BodyOutput<Error = E> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _report = this.shared.report_deadlock(this.body.is_some());
            this.body.set(None);
            this.shared.drop_all_children();
            this.shared.finished.set(true);
            this.shared.node.detach();
            ScopeNode::recycle(&this.shared.node);
            Core::put_back(Core {
                queue: this.shared.queue.clone(),
                body_unit: this.body_unit.clone(),
                body_waker: this.body_waker.clone(),
                spare_units: std::mem::take(&mut *this.shared.spare_units.borrow_mut()),
                batch: std::mem::take(&mut *this.shared.batch.borrow_mut()),
            });
        }
    }
}

impl<'env, B: Future, E> NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    /// Polls the body once (or drops it unpolled when the nursery is already cancelled).
    fn poll_body(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.body_unit.queued.store(false, Ordering::Release);
        let shared = &**this.shared;
        if this.body.is_none() {
            return;
        }
        if !*this.body_polled && shared.is_cancelled() {
            this.body.set(None);
            return;
        }
        *this.body_polled = true;
        let body = this.body.as_mut().as_pin_mut().expect("checked above");
        let polled = poll_unit(&shared.node, this.body_unit, this.body_waker, body);
        match polled {
            Ok(Poll::Pending) => {
                if shared.is_cancelled() && !this.body_unit.is_shielded() {
                    this.body.set(None);
                }
            }
            Ok(Poll::Ready(out)) => {
                this.body.set(None);
                match out.into_result() {
                    Ok(v) => *this.value = Some(v),
                    Err(e) => shared.record_failure(TaskName::Body, Ok(e)),
                }
            }
            Err(payload) => {
                this.body.set(None);
                shared.record_failure(TaskName::Body, Err(payload));
            }
        }
    }

    fn drop_body_if_cancelled(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.body.is_some()
            && !this.body_unit.is_shielded()
            && (!*this.body_polled || !this.body_unit.queued.load(Ordering::Acquire))
        {
            this.body.set(None);
        }
    }
}

impl<'env, B: Future, E> Future for NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    type Output = Result<Option<<B::Output as BodyOutput>::Value>, ErrorGroup<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
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
        let outcome = if let Some(payload) = shared.panic.borrow_mut().take() {
            shared.finished.set(true);
            shared.node.detach();
            resume_unwind(payload);
        } else if !shared.failures.borrow().is_empty() {
            Err(ErrorGroup::new(std::mem::take(
                &mut *shared.failures.borrow_mut(),
            )))
        } else if let Some(v) = this.value.take() {
            Ok(Some(v))
        } else {
            // The body was dropped by a cancellation. Ours: we catch it. An enclosing
            // scope's: it drops us, so wait for that.
            match shared.node.cancel_source() {
                Some(source) if Rc::ptr_eq(&source, &shared.node) => Ok(None),
                _ => return Poll::Pending,
            }
        };
        shared.finished.set(true);
        shared.node.detach();
        Poll::Ready(outcome)
    }
}
