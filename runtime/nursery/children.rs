//! The children a nursery owns, and the failures it records.
//!
//! # State
//!
//! - [`Shared`] holds what the nursery's handles and the nursery future share: the
//!   children (a slab of boxed `'env` futures), the ready queue, the failures and the
//!   panics, and the nursery's cancel-scope node.
//! - While a child is being polled its future is taken out of its slot (`fut` is `None`),
//!   so the child may spawn siblings (which borrows the slab) during its own poll.
//! - A child is dropped only through [`Shared::retire`]: inside its own context, under
//!   `catch_unwind` (a panicking destructor is the child's failure), and with its unit
//!   retired from the scope tree's shield counts.
//! - Cycles: a child spawned with `spawn_with` holds a handle, hence an `Rc` of `Shared`,
//!   which holds the child. The nursery future breaks the cycle by draining the children
//!   when it finishes or is dropped; `finished` makes a spawn after that drop the new
//!   child at once.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use crate::context::values as context;
use crate::instrument::hooks::{self, Exit, TaskId, TaskOutcome};
use crate::instrument::label::{TaskLabel, panic_text};
use crate::instrument::tree::TaskRecord;
use crate::nursery::error::{Failure, TaskName};
use crate::nursery::join::ChildTask;
use crate::nursery::pool::Parts;
use crate::nursery::slots::Slots;
use crate::scope::cancel_scope::{CancelReason, Position, ScopeNode, enter};
use crate::scope::unit::{ReadyQueue, UnitCell, WakerKey};

/// A type-erased child future; it reports its value through its join slot.
pub(super) type ChildFuture<'env, E> = Pin<Box<dyn ChildTask<E> + 'env>>;

pub(super) struct Task<'env, E> {
    /// `None` while the task is being polled.
    pub(super) fut: Option<ChildFuture<'env, E>>,
    /// The child's waker cell, given at its first poll (a child that finishes in its first
    /// poll then hands it straight back to the spare list).
    pub(super) unit: Option<Arc<UnitCell>>,
    /// The waker made from `unit` (a no-op one before the first poll).
    pub(super) waker: Waker,
    pub(super) number: u64,
    /// The child's own context: a copy of its spawner's at spawn time (`None`: empty so
    /// far). Moved into the thread's current context while the child is polled.
    pub(super) context: Option<context::Context>,
    /// Its name and spawn site, for errors, cancel reasons and reports.
    pub(super) label: TaskLabel,
}

/// What the nursery future and every handle of the nursery share.
pub(super) struct Shared<'env, E> {
    pub(super) node: Rc<ScopeNode>,
    /// The nursery keeps a record per task in its node, for the instruments and the task
    /// tree (decided when it opens: see `hooks::recording`); the records then mirror the
    /// slab of children, key for key.
    pub(super) recording: bool,
    /// The body's name and where the nursery was opened.
    pub(super) body_label: TaskLabel,
    /// The node (again: `node` is its clone, read without the indirection), the queue,
    /// the body's waker, spare cells and the batch, from the pool; `None` only once the
    /// nursery future is dropped and gave them back for reuse.
    pub(super) parts: Option<Box<Parts>>,
    /// The parent waker last registered with the queue (see `ReadyQueue::park`).
    pub(super) registered_parent: Cell<WakerKey>,
    pub(super) tasks: RefCell<Slots<Task<'env, E>>>,
    pub(super) failures: RefCell<Vec<Failure<E>>>,
    /// Every panic caught in a poll or a destructor, in order: the first is resumed from
    /// the nursery, the others are reported on stderr beside it.
    pub(super) panics: RefCell<Vec<(String, Box<dyn Any + Send>)>>,
    pub(super) spawned: Cell<u64>,
    /// Whether the nursery has finished or is being dropped; a spawn after that (from a
    /// destructor of a child being dropped with it) drops the new child at once.
    pub(super) finished: Cell<bool>,
    /// `'env` is invariant: the slab stores `'env` futures through a shared handle.
    pub(super) _env: PhantomData<fn(&'env ()) -> &'env ()>,
}

impl<'env, E> Shared<'env, E> {
    pub(super) fn parts(&self) -> &Parts {
        self.parts
            .as_deref()
            .expect("the parts are given back only when the nursery future is dropped")
    }

    pub(super) fn queue(&self) -> &Arc<ReadyQueue> {
        &self.parts().queue
    }

    pub(super) fn insert(&self, fut: ChildFuture<'env, E>, label: TaskLabel) -> u64 {
        let number = self.spawned.get() + 1;
        self.spawned.set(number);
        // Into a nursery that is finished or being dropped (only a destructor of one of its
        // children can still spawn), the child is dropped unpolled, here. Into a cancelled
        // one, it is polled once like every unit: it runs to its first suspension.
        if self.finished.get() {
            return number;
        }
        let record_label = self.recording.then(|| label.clone());
        let index = self.tasks.borrow_mut().insert(Task {
            fut: Some(fut),
            unit: None,
            waker: Waker::noop().clone(),
            number,
            context: context::inherit(),
            label,
        });
        if let Some(label) = record_label {
            let record = new_record(TaskName::Child(number), label);
            if let Some(records) = self.node.records.borrow_mut().as_mut() {
                records.insert_child(index, record);
            }
            announce_spawn(&self.node, index);
        }
        // Spawn order is run order: the new child joins the back of the ready queue. It
        // is there exactly once until its first poll, so it needs no `queued` flag yet.
        self.queue().push(index);
        number
    }

    /// A unit cell for slot `index`: a spare one when there is one.
    pub(super) fn unit_for(&self, index: usize) -> (Arc<UnitCell>, Waker) {
        if let Some((unit, waker)) = self.parts().spare_units.borrow_mut().pop() {
            unit.recycle(index);
            return (unit, waker);
        }
        let unit = UnitCell::new(index, self.queue());
        let waker = Waker::from(unit.clone());
        (unit, waker)
    }

    /// Drops a finished or cancelled child (inside its own context, catching a panic from
    /// its destructors), retires its unit, then keeps its cell for reuse when nothing else
    /// references it (a stale waker clone would wake the cell's next owner). Returns the
    /// payload of a panic raised while dropping, and the child's label (moved out, to name
    /// that panic).
    #[must_use = "a panic while dropping is the child's failure"]
    fn retire(
        &self,
        task: Task<'env, E>,
        fut: Option<ChildFuture<'env, E>>,
    ) -> (Option<Box<dyn Any + Send>>, TaskLabel) {
        const MAX_SPARE: usize = 1024;
        let Task {
            fut: slot_fut,
            unit,
            waker,
            context,
            label,
            ..
        } = task;
        if let Some(name) = label.name() {
            let slot = fut.iter().chain(&slot_fut).find_map(|f| f.join_slot());
            if let Some(join) = slot {
                join.name_if_unsuccessful(name);
            }
        }
        // Drop the child inside its own context: its destructors see its own variables.
        let entered = context::enter_child(context);
        let in_drop = drop_catching((fut, slot_fut));
        // Separately: a panic from a context value's destructor while the future's panic
        // unwinds would abort. Most children have no context of their own.
        let in_context_drop = entered.leave().and_then(drop_catching);
        if let Some(unit) = unit {
            self.node.retire_unit(&unit);
            let mut spare = self.parts().spare_units.borrow_mut();
            if Arc::strong_count(&unit) == 2 && spare.len() < MAX_SPARE {
                spare.push((unit, waker));
            }
        }
        // A second panic from the same child (its context after its future) was printed by
        // the panic hook; the child's failure is the first.
        (in_drop.or(in_context_drop), label)
    }

    /// Retires the child at `index` and records a panic from its destructors as its
    /// failure; then its record goes, and the instruments hear how it ended.
    pub(super) fn retire_recording(
        &self,
        index: usize,
        task: Task<'env, E>,
        fut: Option<ChildFuture<'env, E>>,
        exit: Exit,
    ) {
        let name = TaskName::Child(task.number);
        let mut exit = exit;
        // Out of the records before the drop, as the task is out of its slot: a destructor
        // that spawns a sibling reuses the key, and the records must stay keyed as the
        // children are (found by tests/bad_input.rs).
        let record = if self.recording {
            self.exit_record(index, [fut.as_ref(), task.fut.as_ref()])
        } else {
            None
        };
        if let (Some(payload), label) = self.retire(task, fut) {
            exit = Exit::Panicked;
            self.record_failure(name, &label, Err(payload));
        }
        // The record first: a nursery keeping none does not look at the instruments.
        let Some((record, hidden)) = record else {
            return;
        };
        if hooks::active() {
            let info = record.info(self.node.task(), self.node.scope_id());
            // A panic in its destructor is the nursery's, and the last word on how it ended.
            let outcome = match hidden {
                Some(hidden) if exit != Exit::Panicked => hidden,
                _ => self.outcome(exit, &record),
            };
            hooks::emit("task_exited", |i| i.task_exited(&info, &outcome));
        }
    }

    /// Takes the record of the child at `index` as it exits, with how its own future ended
    /// if its wrapper hid that from the nursery (see
    /// [`JoinFailed::hidden_outcome`](crate::nursery::join::JoinFailed::hidden_outcome));
    /// `futs` is where the child's future may be (taken out for its poll, or in its slot).
    /// Asked before the future is dropped, and only when an instrument will hear the exit.
    /// Out of line, so that a nursery keeping no records pays nothing for it.
    #[inline(never)]
    fn exit_record(
        &self,
        index: usize,
        futs: [Option<&ChildFuture<'env, E>>; 2],
    ) -> Option<(TaskRecord, Option<TaskOutcome>)> {
        let record = self
            .node
            .records
            .borrow_mut()
            .as_mut()?
            .remove_child(index)?;
        let hidden = if hooks::active() {
            futs.into_iter()
                .find_map(|f| f?.join_slot()?.hidden_outcome())
        } else {
            None
        };
        Some((record, hidden))
    }

    /// Records the failure of `task`, whose label is `label`.
    pub(super) fn record_failure(
        &self,
        task: TaskName,
        label: &TaskLabel,
        outcome: Result<E, Box<dyn Any + Send>>,
    ) {
        let described = task.described(label.name()).to_string();
        self.node.cancel(CancelReason::Failure {
            task: described.clone(),
        });
        match outcome {
            Ok(error) => self
                .failures
                .borrow_mut()
                .push(Failure::new(task, label.clone(), error)),
            Err(payload) => self.panics.borrow_mut().push((described, payload)),
        }
    }

    /// What an instrument is told of the exit of the task `record` is of: for a panic, the
    /// message of the task's first one (a panic in a poll, not the destructor's after it,
    /// which is reported beside it, as the nursery resumes the first). Found by the task's
    /// description, which `record_failure` gives each panic and which is unique in a nursery
    /// (its number, or "the nursery body"), so the hot paths keep no index for it.
    #[cold]
    pub(super) fn outcome(&self, exit: Exit, record: &TaskRecord) -> TaskOutcome {
        match exit {
            Exit::Returned => TaskOutcome::Returned,
            Exit::Failed => TaskOutcome::Failed,
            Exit::Cancelled => TaskOutcome::Cancelled,
            Exit::Panicked => {
                let described = record.name.described(record.label.name()).to_string();
                let panics = self.panics.borrow();
                let own = panics.iter().find(|(d, _)| *d == described);
                let own = own.or(panics.last());
                TaskOutcome::Panicked(own.map(|(_, p)| panic_text(&**p)).unwrap_or_default())
            }
        }
    }

    /// A panic was caught and waits to resume.
    pub(super) fn has_panicked(&self) -> bool {
        !self.panics.borrow().is_empty()
    }

    /// The first panic, to resume; every other failure beside it is written to stderr
    /// once, since a panic payload cannot carry them (it must resume unchanged).
    #[inline]
    pub(super) fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        if !self.has_panicked() {
            return None; // every nursery asks as it finishes; keep that path short
        }
        self.take_panic_reporting_the_rest()
    }

    #[cold]
    pub(super) fn take_panic_reporting_the_rest(&self) -> Option<Box<dyn Any + Send>> {
        let mut panics = std::mem::take(&mut *self.panics.borrow_mut()).into_iter();
        let (first_task, payload) = panics.next()?;
        let failures = std::mem::take(&mut *self.failures.borrow_mut());
        let mut lost: Vec<String> = failures
            .iter()
            .map(|f| {
                format!(
                    "{} failed with an error of type `{}`",
                    f.task().described(f.label().name()),
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

    pub(super) fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// Polls child `index` once; drops it if it suspends while cancelled (with its nursery,
    /// or on its own) and unshielded.
    #[inline]
    pub(super) fn poll_child(&self, index: usize) {
        // One test per poll; the poll itself is compiled twice, so that a nursery that
        // keeps no records tests no hook or record site at all (≈ 20 Ir a poll, measured
        // against a build with the hooks compiled out).
        if self.recording {
            self.poll_child_as::<true>(index);
        } else {
            self.poll_child_as::<false>(index);
        }
    }

    /// [`poll_child`](Self::poll_child), with `RECORDING` this nursery's `recording`.
    fn poll_child_as<const RECORDING: bool>(&self, index: usize) {
        let (mut fut, waker, unit, ctx) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.get_mut(index) else {
                return; // a stale wake of a finished child
            };
            if let Some(unit) = &task.unit {
                if !unit.queued.load(Ordering::Acquire) {
                    // Not queued: a stale wake, for an earlier child whose slot this is now
                    // (every wake of a unit sets its flag first; only a never-polled child
                    // is queued without one).
                    return;
                }
                unit.queued.store(false, Ordering::Release);
            }
            let Some(fut) = task.fut.take() else {
                return;
            };
            // A child that never ran has no waker cell yet: its first poll gives it one.
            if task.unit.is_none() {
                let (unit, waker) = self.unit_for(index);
                if let Some(join) = fut.join_slot() {
                    join.started(&self.node, &unit);
                }
                task.unit = Some(unit);
                task.waker = waker;
            }
            // Moved out for the poll (the slot keeps no clone): nothing reads a polled
            // task's cell or waker, since its `fut` is `None`.
            let waker = std::mem::replace(&mut task.waker, Waker::noop().clone());
            let unit = task.unit.take().expect("given at the first poll");
            (fut, waker, unit, task.context.take())
        };
        if RECORDING && hooks::active() {
            self.before_poll(index);
        }
        let entered = context::enter_child(ctx);
        let (polled, unit, wait) = poll_unit(&self.node, unit, &waker, fut.as_mut(), RECORDING);
        let ctx = entered.leave();
        if RECORDING {
            self.after_poll(index, wait);
        }
        let mut tasks = self.tasks.borrow_mut();
        let task = tasks
            .get_mut(index)
            .expect("a task stays in its slot while polled");
        let keep = matches!(polled, Ok(Poll::Pending))
            && (unit.is_shielded() || !(unit.is_cancelled() || self.is_cancelled()));
        task.waker = waker;
        task.unit = Some(unit);
        task.context = ctx;
        let (failure, exit) = match polled {
            // Suspended: it runs on unless a cancellation reaches it here.
            Ok(Poll::Pending) if keep => {
                task.fut = Some(fut);
                return;
            }
            Ok(Poll::Pending) => (None, Exit::Cancelled),
            Ok(Poll::Ready(Ok(()))) => (None, Exit::Returned),
            Ok(Poll::Ready(Err(error))) => (Some(Ok(error)), Exit::Failed),
            Err(payload) => (Some(Err(payload)), Exit::Panicked),
        };
        let task = tasks.try_remove(index).expect("polled just now");
        drop(tasks);
        if let Some(outcome) = failure {
            if let Some(join) = fut.join_slot() {
                join.failed();
            }
            self.record_failure(TaskName::Child(task.number), &task.label, outcome);
        }
        self.retire_recording(index, task, Some(fut), exit);
    }

    /// The instruments' hooks before a child's poll; the child's info, for the hook after.
    #[cold]
    fn before_poll(&self, index: usize) {
        before_poll_hooks(&self.node, index);
    }

    /// Counts a child's poll and keeps what it parked on; the instruments' hook after it.
    fn after_poll(&self, index: usize, wait: hooks::Wait) {
        note_poll(&self.node, index, wait);
    }

    /// Drops every child that is neither about to be polled nor shielded (cancellation
    /// reaches units at their next suspension: for these, that is now).
    pub(super) fn drop_cancelled_children(&self) {
        let doomed: Vec<(usize, Task<'env, E>)> = {
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
            keys.into_iter()
                .filter_map(|k| Some((k, tasks.try_remove(k)?)))
                .collect()
        };
        for (index, task) in doomed {
            self.retire_recording(index, task, None, Exit::Cancelled);
        }
    }

    /// Lists the live units in the deadlock report, when the executor is collecting one
    /// (it drops a deadlocked root); does nothing otherwise. The guard indents the nurseries
    /// dropped inside this one until it is dropped.
    pub(super) fn report_deadlock(&self, body_alive: bool) -> crate::rt::deadlock::ReportSection {
        crate::rt::deadlock::deadlock_report(|report| {
            report.heading(format_args!("nursery:"));
            if body_alive {
                report.item(format_args!("its body"));
            }
            for (_, task) in self.tasks.borrow().iter() {
                let name = TaskName::Child(task.number);
                report.item(format_args!("{}", task.label.describing(name)));
            }
        })
    }

    /// Drops every child, ignoring shields (the nursery future itself is going away). A
    /// panicking destructor is recorded like any other and the rest are still dropped; a
    /// child spawned by one of these destructors is dropped too (`finished` is set, so
    /// `insert` drops it at once).
    pub(super) fn drop_all_children(&self) {
        debug_assert!(self.finished.get());
        while !self.tasks.borrow().is_empty() {
            let all: Vec<(usize, Task<'env, E>)> = {
                let mut tasks = self.tasks.borrow_mut();
                let keys: Vec<usize> = tasks.iter().map(|(k, _)| k).collect();
                keys.into_iter()
                    .filter_map(|k| Some((k, tasks.try_remove(k)?)))
                    .collect()
            };
            for (index, task) in all {
                self.retire_recording(index, task, None, Exit::Cancelled);
            }
        }
    }

    /// Whether a scope enclosing the nursery cancelled it (rather than its own scope).
    pub(super) fn cancelled_from_outside(&self) -> bool {
        // `is_cancelled` is cached; the walk up the tree runs only for a cancelled nursery.
        self.is_cancelled()
            && self
                .node
                .cancel_source()
                .is_some_and(|source| !source.is(&self.node))
    }
}

/// The record of a new task of a nursery (its body or a child); the nursery keeps it, then
/// [`announce_spawn`]s it.
pub(super) fn new_record(name: TaskName, label: TaskLabel) -> TaskRecord {
    TaskRecord {
        id: TaskId::next(),
        name,
        label,
        spawned: crate::rt::clock::recent(),
        polls: 0,
        wait: hooks::Wait::Other,
    }
}

/// Tells the instruments of the new task at `index` (`BODY` or a child's key) of the
/// nursery at `node`, once its record is kept: a hook that dumps the tree lists the task
/// from its `task_spawned` on, as it no longer lists it from its `task_exited` (it was
/// announced before its record was kept, so a dump in `task_spawned` missed it; found by
/// tests/adversarial_instrument.rs).
pub(super) fn announce_spawn(node: &ScopeNode, index: usize) {
    if !hooks::active() {
        return;
    }
    // The record is let go before the hook runs (it may read the records).
    let info = node
        .record(index)
        .map(|record| record.info(node.task(), node.scope_id()));
    if let Some(info) = info {
        hooks::emit("task_spawned", |i| i.task_spawned(&info));
    }
}

/// The instruments' hooks before the poll of the task at `index` (`BODY` or a child's key;
/// only called while some are registered).
#[cold]
pub(super) fn before_poll_hooks(node: &ScopeNode, index: usize) {
    // The info is made and the record let go before any hook runs: a hook is user code,
    // and may read the records (`dump_tree`) or, through it, anything else.
    let info = node
        .record(index)
        .map(|record| record.info(node.task(), node.scope_id()));
    if let Some(info) = info {
        hooks::emit("task_scheduled", |i| i.task_scheduled(&info));
        hooks::emit("before_task_poll", |i| i.before_task_poll(&info));
    }
}

/// Counts the poll of the task at `index` (`BODY` or a child's key) in its record, if
/// kept, and keeps what it parked on; then the instruments' hook after the poll. (The
/// task's info is made again rather than kept across the poll, so an uninstrumented poll
/// carries nothing.)
pub(super) fn note_poll(node: &ScopeNode, index: usize, wait: hooks::Wait) {
    {
        let Some(mut record) = node.record_mut(index) else {
            return;
        };
        record.polls = record.polls.saturating_add(1);
        record.wait = wait;
    }
    // The record is let go first: the hook may read it (`dump_tree` from
    // `after_task_poll` found it still mutably borrowed, panicked, and the instrument was
    // removed).
    if hooks::active() {
        after_poll_hook(node, index);
    }
}

#[cold]
fn after_poll_hook(node: &ScopeNode, index: usize) {
    let info = node
        .record(index)
        .map(|record| record.info(node.task(), node.scope_id()));
    if let Some(info) = info {
        hooks::emit("after_task_poll", |i| i.after_task_poll(&info));
    }
}

/// Drops `value`, catching a panic from its destructor.
pub(super) fn drop_catching<T>(value: T) -> Option<Box<dyn Any + Send>> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).err()
}

/// One poll of a unit: its result, or the payload of the panic it raised.
pub(super) type Polled<T> = Result<Poll<T>, Box<dyn Any + Send>>;

/// Polls one unit at `node`, with the unit as the current position, catching a panic;
/// also returns what the unit parked on (for the task tree: the nursery forgets what was
/// recorded before its own poll, and each unit's poll takes its record, so the next unit
/// starts clean; a nursery that keeps no records, `recording` false, asks nothing). The
/// unit's cell is moved into the position and handed back, so a poll changes no reference
/// count.
#[inline]
pub(super) fn poll_unit<F: Future + ?Sized>(
    node: &Rc<ScopeNode>,
    unit: Arc<UnitCell>,
    waker: &Waker,
    fut: Pin<&mut F>,
    recording: bool,
) -> (Polled<F::Output>, Arc<UnitCell>, hooks::Wait) {
    let position = enter(Position {
        node: node.clone(),
        unit: Some(unit),
    });
    let mut cx = Context::from_waker(waker);
    let polled = catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)));
    let unit = position
        .leave()
        .expect("the position entered here holds the unit");
    let wait = if recording {
        match hooks::take_wait() {
            // Woken during its own poll (a `yield_now`, or a wake of itself): ready again.
            // Told here, from the unit's flag, so that a yield itself records nothing.
            hooks::Wait::Other if unit.queued.load(Ordering::Acquire) => hooks::Wait::Yielded,
            wait => wait,
        }
    } else {
        hooks::Wait::Other
    };
    (polled, unit, wait)
}
