//! Nurseries: task groups whose children are owned and polled by the nursery itself.
//!
//! This file holds [`nursery()`] and the future it returns, which polls the body and the
//! children; `handle.rs` the [`Nursery`] handle; `children.rs` the state they share (the
//! children, the failures) and how a child is polled and dropped.
//!
//! # State
//!
//! - The ready queue (`scope/unit.rs`) says which units to poll; only those are polled.
//! - A nursery that stops early because its poll budget ran out wakes itself.
//! - `abandoned`: an enclosing scope cancelled the nursery and everything inside is gone;
//!   the future stays pending until that scope's owner drops it.

//! # Failure and cancellation
//!
//! The first failure (an `Err` or a panic, of the body or a child) cancels the nursery's
//! scope. Cancellation is delivered at suspensions only (the rule in the docs of
//! `scope/cancel_scope.rs`): units that are suspended and not woken are dropped at once; units already woken,
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

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::children::{
    Shared, announce_spawn, before_poll_hooks, new_record, note_poll, poll_unit,
};
use super::handle::Nursery;
use super::pool::Parts;
use crate::instrument::hooks::{self, Exit};
use crate::instrument::label::TaskLabel;
use crate::nursery::error::{ErrorGroup, TaskName};
use crate::nursery::output::BodyOutput;
use crate::rt::shuffle;
use crate::scope::cancel_scope::ScopeNode;
use crate::scope::unit::{BODY, UnitCell};

/// How many units one poll of a nursery may poll before it yields to its parent, so that
/// a child that keeps waking itself cannot starve its siblings, the body or the reactor.
const POLL_BUDGET: usize = 256;

/// Opens a nursery, runs `body` in it, and waits until the body and every child have
/// finished.
///
/// The body gets the [`Nursery`] handle by value and may spawn children that borrow
/// anything that outlives this call. The body's return type sets the error type: return
/// `()` for a nursery that cannot fail, or `Result<T, E>`.
///
/// Returns `Ok(value)` with the body's value once every child has finished, and
/// `Err(group)` when the body or any child failed: the first failure cancels everything
/// else, and the [`ErrorGroup`] holds every error that occurred, in order. So the common
/// case is one `?`.
///
/// # Cancelling a nursery
///
/// A nursery has no cancel of its own: to stop one early (first success wins, a graceful
/// shutdown, a deadline), run it in a scope and cancel that scope — from the body, from a
/// child that was given a clone of it, or from another thread through
/// [`CancelScope::remote`](crate::CancelScope::remote):
///
/// ```
/// use std::time::Duration;
///
/// let first = std::cell::Cell::new(None);
/// let out = trellis::Builder::new().autojump().run(async {
///     trellis::cancel_scope(async |scope| {
///         trellis::nursery(async |n| {
///             for (name, secs) in [("slow", 3), ("fast", 1)] {
///                 let (scope, first) = (scope.clone(), &first);
///                 n.spawn(async move {
///                     trellis::sleep(Duration::from_secs(secs)).await;
///                     first.set(Some(name));
///                     scope.cancel(); // the first to finish stops the others
///                 });
///             }
///         })
///         .await
///     })
///     .await
/// });
/// assert_eq!(out, None); // the scope caught its cancellation
/// assert_eq!(first.get(), Some("fast"));
/// ```
///
/// Why: a body cut off by a cancellation has no value to return. Were the nursery
/// cancellable from inside, every call would have to return an `Option` for that rare
/// case (`Ok(None)`), meaningless for the many bodies that return `()`. With the
/// cancellation in a scope around the nursery, the `Option` appears exactly where it can
/// happen, as for any scope: `cancel_scope(..)`, [`move_on_after`](crate::move_on_after)
/// give `None`, [`fail_after`](crate::fail_after) gives
/// [`TimedOut`](crate::TimedOut). One child alone is cancelled with
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel).
///
/// # Errors
///
/// [`ErrorGroup`] is a [`std::error::Error`] (for any `E: Debug + Display`), so `?` takes it
/// into `Box<dyn Error>` or `anyhow::Result` (the body then ends in `anyhow::Ok(())`), its
/// message naming each failed task:
///
/// ```
/// use std::error::Error;
///
/// async fn fetch_all(urls: &[&str]) -> Result<(), Box<dyn Error>> {
///     trellis::nursery(async |n| {
///         for url in urls {
///             n.spawn(async move {
///                 if !url.starts_with("https:") {
///                     return Err(format!("{url} is not https"));
///                 }
///                 Ok(())
///             });
///         }
///         Ok::<_, String>(()) // names the error type
///     })
///     .await?;
///     Ok(())
/// }
/// let err = trellis::run(fetch_all(&["https://a", "http://b"])).unwrap_err();
/// assert_eq!(err.to_string(), "child 2 failed: http://b is not https");
/// ```
///
/// To keep your own error type, take the first error, the one that cancelled the rest:
///
/// ```
/// #[derive(Debug, PartialEq)]
/// struct Timeout(u32);
///
/// async fn run_jobs() -> Result<(), Timeout> {
///     trellis::nursery(async |n| {
///         n.spawn(async { Err::<(), _>(Timeout(7)) });
///         Ok(())
///     })
///     .await
///     .map_err(trellis::ErrorGroup::into_first)?;
///     Ok(())
/// }
/// assert_eq!(trellis::run(run_jobs()), Err(Timeout(7)));
/// ```
///
/// Or go through every failure, each with its task:
///
/// ```
/// let group = trellis::run(trellis::nursery(async |n| {
///     n.spawn(async { Err::<(), _>("disk full") });
///     n.spawn(async { Err::<(), _>("network down") });
///     Ok(())
/// }))
/// .unwrap_err();
/// for failure in group.failures() {
///     eprintln!("{} failed: {}", failure.task(), failure.error());
/// }
/// assert_eq!(group.failures()[1].task(), trellis::TaskName::Child(2));
/// ```
///
/// `type annotations needed` at a child's `Ok(..)` means nothing names the error type
/// (the body returns a bare `Ok(())`, or its `?` only converts into it): name it in the
/// body, `Ok::<_, MyError>(())`, `anyhow::Ok(())`, or `async |n| -> Result<(), MyError>`.
///
/// # Cancellation
///
/// Cancellation is delivered at suspensions only (see [`CancelScope`](crate::CancelScope)):
/// each unit of the nursery (the body, each child) is dropped at its next suspension unless
/// it holds a shield, and a unit that starts inside a cancelled scope still runs to its
/// first one.
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
/// Forgetting it instead (`std::mem::forget` of a nursery future that was polled, or of a
/// box holding one) leaks: the body and the children are never polled again and never
/// dropped, nor is what they captured, and the nursery's scope node keeps the node of the
/// scope around it alive. Nothing dangles (children live in the forgotten allocation,
/// which is never freed), a timeout around the forgotten nursery still fires, and later
/// nurseries and runtimes on the thread work as before.
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
#[doc(alias = "TaskGroup")]
#[doc(alias = "JoinSet")]
#[track_caller]
pub fn nursery<'env, F, R, E>(body: F) -> impl Future<Output = Result<R::Value, ErrorGroup<E>>>
where
    F: for<'s> AsyncFnOnce(Nursery<'s, 'env, E>) -> R,
    R: BodyOutput<Error = E>,
    E: 'env,
{
    // Not an `async fn`, so that `#[track_caller]` sees the caller: the body's spawn site.
    nursery_labelled(body, TaskLabel::at(Location::caller()))
}

/// [`nursery()`] with its body's label given: the function's name, for `#[nursery]`.
pub(crate) async fn nursery_labelled<'env, F, R, E>(
    body: F,
    label: TaskLabel,
) -> Result<R::Value, ErrorGroup<E>>
where
    F: for<'s> AsyncFnOnce(Nursery<'s, 'env, E>) -> R,
    R: BodyOutput<Error = E>,
    E: 'env,
{
    let mut parts = Parts::take();
    let body_unit = parts.body_unit.take();
    let shared = Rc::new(Shared {
        node: parts.node.clone(),
        recording: hooks::recording(),
        body_label: label,
        parts: Some(parts),
        registered_parent: Cell::default(),
        tasks: RefCell::default(),
        failures: RefCell::new(Vec::new()),
        panics: RefCell::new(Vec::new()),
        spawned: Cell::new(0),
        finished: Cell::new(false),
        _env: PhantomData,
    });
    let handle = Nursery {
        shared: shared.clone(),
        _brand: PhantomData,
    };
    NurseryFuture {
        shared,
        body: Some(body(handle)),
        body_unit,
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
        // The body's cell, from the parts (its waker stays there); `None` only while the
        // body is polled, and once dropped (back to the pool).
        body_unit: Option<Arc<UnitCell>>,
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
            let shared = &**this.shared;
            // Before anything is dropped: the executor may be collecting a deadlock report.
            // Only a nursery with live units can be part of a deadlock (and only one with
            // live units encloses others), so a finished one skips the look-up.
            // (`as_pin_mut`, never `&Option<B>`: a shared reference over a suspended,
            // self-referential body invalidates its inner borrows; Miri reports it.)
            let body_live = this.body.as_mut().as_pin_mut().is_some();
            let live = body_live || !shared.tasks.borrow().is_empty();
            let _report = live.then(|| shared.report_deadlock(body_live));
            shared.finished.set(true);
            retire_body(
                this.body.as_mut(),
                shared,
                this.body_unit.as_deref(),
                Exit::Cancelled,
            );
            shared.drop_all_children();
            // Before a caught panic resumes below: the drop glue would drop the value
            // during that unwind, and a destructor panicking there aborts the process.
            drop_value_catching(this.value, shared);
            shared.node.detach();
            shared.queue().clear();
            let panic = shared.take_panic();
            drop(_report);
            give_back_parts(this.shared, this.body_unit.take());
            // A panic caught before this hard drop, or during it, is not lost: it resumes
            // now that everything is dropped (unless the thread is already unwinding, when
            // a second panic would abort; the hook has printed it).
            if let Some(payload) = panic {
                if !std::thread::panicking() {
                    resume_unwind(payload);
                }
            }
        }
    }
}

/// Returns a dropped nursery's parts to the pool, with the body's cell moved back rather
/// than cloned (a clone of an `Arc` is a locked instruction): only when no leaked handle
/// still shares the nursery's state.
fn give_back_parts<E>(shared: &mut Rc<Shared<'_, E>>, body_unit: Option<Arc<UnitCell>>) {
    let (Some(shared), Some(body_unit)) = (Rc::get_mut(shared), body_unit) else {
        return;
    };
    let Some(mut parts) = shared.parts.take() else {
        return;
    };
    parts.body_unit = Some(body_unit);
    Parts::put_back(parts);
}

impl<'env, B: Future, E> NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    /// Polls the body once; drops it when it suspends while cancelled and unshielded.
    fn poll_body(self: Pin<&mut Self>) {
        let mut this = self.project();
        let shared = &**this.shared;
        let Some(body) = this.body.as_mut().as_pin_mut() else {
            return;
        };
        let unit = this.body_unit.take().expect("a live body has its cell");
        unit.queued.store(false, Ordering::Release);
        if shared.recording && hooks::active() {
            before_body_poll(&shared.node);
        }
        let (polled, unit, wait) = poll_unit(
            &shared.node,
            unit,
            &shared.parts().body_waker,
            body,
            shared.recording,
        );
        if shared.recording {
            after_body_poll(&shared.node, wait);
        }
        let unit = &**this.body_unit.insert(unit);
        let (failure, exit) = match polled {
            Ok(Poll::Pending) if !shared.is_cancelled() || unit.is_shielded() => {
                return;
            }
            Ok(Poll::Pending) => (None, Exit::Cancelled),
            Ok(Poll::Ready(out)) => match out.into_result() {
                Ok(v) => {
                    *this.value = Some(v);
                    (None, Exit::Returned)
                }
                Err(e) => (Some(Ok(e)), Exit::Failed),
            },
            Err(payload) => (Some(Err(payload)), Exit::Panicked),
        };
        if let Some(outcome) = failure {
            shared.record_failure(TaskName::Body, &shared.body_label, outcome);
        }
        retire_body(this.body, shared, Some(unit), exit);
    }

    /// Drops the body if a cancellation reaches it now: it is suspended (not woken since)
    /// and holds no shield. A body that has not run yet is marked queued, so it runs first.
    fn drop_body_if_cancelled(self: Pin<&mut Self>) {
        let mut this = self.project();
        let unit = this.body_unit.as_deref();
        if this.body.as_mut().as_pin_mut().is_some()
            && unit.is_some_and(|u| !u.is_shielded() && !u.queued.load(Ordering::Acquire))
        {
            retire_body(this.body, this.shared, unit, Exit::Cancelled);
        }
    }
}

/// Drops the body's returned value, if it still holds one; a panic from its destructor is
/// the body's, reported beside the panic that resumes (or resumed, if it is the first).
fn drop_value_catching<V, E>(value: &mut Option<V>, shared: &Shared<'_, E>) {
    let Some(value) = value.take() else {
        return;
    };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(value))) {
        shared.record_failure(TaskName::Body, &shared.body_label, Err(payload));
    }
}

/// Drops the nursery body (a panic from its destructors is the body's failure), retires
/// its unit and its record.
#[inline]
fn retire_body<B, E>(
    mut body: Pin<&mut Option<B>>,
    shared: &Shared<'_, E>,
    unit: Option<&UnitCell>,
    mut exit: Exit,
) {
    if body.as_mut().as_pin_mut().is_none() {
        return;
    }
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| body.set(None))) {
        exit = Exit::Panicked;
        shared.record_failure(TaskName::Body, &shared.body_label, Err(payload));
    }
    if let Some(unit) = unit {
        shared.node.retire_unit(unit);
    }
    if shared.recording {
        retire_body_record(shared, exit);
    }
}

/// The body's record goes, and the instruments hear how the body ended.
#[cold]
fn retire_body_record<E>(shared: &Shared<'_, E>, exit: Exit) {
    let record = shared
        .node
        .records
        .borrow_mut()
        .as_mut()
        .and_then(|r| r.body.take());
    if let (true, Some(record)) = (hooks::active(), record) {
        let info = record.info(shared.node.task(), shared.node.scope_id());
        let outcome = shared.outcome(exit, &record);
        hooks::emit("task_exited", |i| i.task_exited(&info, &outcome));
    }
}

/// Makes the body's record when the nursery first runs (its parent is known only once
/// the node is attached).
fn start_body_record(node: &ScopeNode, label: TaskLabel) {
    node.start_records(new_record(TaskName::Body, label));
    announce_spawn(node, BODY);
}

#[cold]
fn before_body_poll(node: &ScopeNode) {
    before_poll_hooks(node, BODY);
}

fn after_body_poll(node: &ScopeNode, wait: hooks::Wait) {
    note_poll(node, BODY, wait);
}

impl<'env, B: Future, E> Future for NurseryFuture<'env, B, E>
where
    B::Output: BodyOutput<Error = E>,
{
    type Output = Result<<B::Output as BodyOutput>::Value, ErrorGroup<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Fields are read through the projection, never through `&Self` (`self.field`): a
        // shared reference over the suspended, self-referential body invalidates the
        // borrows it holds of itself (Miri's Stacked Borrows reports it).
        let this = self.as_mut().project();
        if *this.abandoned {
            return Poll::Pending;
        }
        let shared = this.shared.clone();
        let mut batch = std::mem::take(&mut *shared.parts().batch.borrow_mut());
        // What the code polling this nursery parked on is not its units' (each unit's poll
        // takes what it parked on, so the next one starts clean).
        if shared.recording {
            let _ = hooks::take_wait();
        }
        if !*this.started {
            *this.started = true;
            // A nursery before it is attached, so that `scope_entered` says so.
            shared.node.is_nursery.set(true);
            // Attached when first needed (`Stage::Deferred`): a nursery that finishes in
            // this poll, as a request's often does, is never linked into the tree. The
            // instruments hear of its scope when it starts, so with one registered it is
            // attached now.
            if hooks::active() {
                shared.node.attach();
            } else {
                shared.node.start_deferred();
            }
            if shared.recording {
                start_body_record(&shared.node, shared.body_label.clone());
            }
            // The body runs in the first round, without a trip through the queue (and its
            // lock). Marked queued until then, so a cancellation already here lets it run.
            if let Some(unit) = this.body_unit.as_deref() {
                unit.queued.store(true, Ordering::Release);
            }
            batch.push(BODY);
        }
        shared.node.check_remote(cx.waker());
        shared.queue().begin_poll();

        // Rounds of the units ready at the start of each round (FIFO, or permuted with
        // `Builder::shuffle_seed`; one lock per round), until none is ready or the budget is
        // spent. A unit woken during a round waits for the next one, so a self-waking child
        // gets one poll per round like everyone else. A round that woke nothing ends the
        // loop without another (empty) round: the look at the queue is two loads.
        let mut budget = POLL_BUDGET;
        let mut more = true;
        while more && budget > 0 {
            // A cancellation (or a shield lifted) during the last round reaches the units
            // that are not ready before the next round runs.
            if shared.is_cancelled() {
                shared.drop_cancelled_children();
                self.as_mut().drop_body_if_cancelled();
            }
            more = shared.queue().pop_batch(&mut batch, budget);
            budget = budget.saturating_sub(batch.len());
            if budget == 0 && more {
                shared.queue().cut_round();
            }
            if batch.len() > 1 {
                // `Builder::shuffle_seed`; without a seed this reads one thread-local.
                shuffle::permute(&mut batch);
            }
            for &index in &batch {
                match index {
                    BODY => self.as_mut().poll_body(),
                    index => shared.poll_child(index),
                }
            }
            more = more || shared.queue().has_ready();
            batch.clear();
        }
        *shared.parts().batch.borrow_mut() = batch;
        if shared.is_cancelled() {
            shared.drop_cancelled_children();
            self.as_mut().drop_body_if_cancelled();
        }
        let live = self.as_mut().project().body.as_pin_mut().is_some()
            || !shared.tasks.borrow().is_empty();
        if !live {
            return self.finish(&shared);
        }
        // Attached and registered only now, when the nursery suspends: one that finishes
        // in its first poll is never linked and never stores a waker. A unit queued before
        // the registration woke nobody.
        shared.node.attach_deferred();
        shared.node.set_owner(cx.waker());
        let queued = shared.queue().park(cx.waker(), &shared.registered_parent);
        if more || queued {
            // Budget spent with work left: let the parent (and the reactor) run first.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
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
    ) -> Poll<Result<<B::Output as BodyOutput>::Value, ErrorGroup<E>>> {
        let this = self.project();
        if shared.has_panicked() {
            // The value is never returned; dropped now, not by the unwind that resumes the
            // panic (a destructor panicking during an unwind aborts the process).
            drop_value_catching(this.value, shared);
        }
        if let Some(payload) = shared.take_panic() {
            shared.finished.set(true);
            shared.node.detach();
            resume_unwind(payload);
        }
        let outcome = if !shared.failures.borrow().is_empty() {
            Err(ErrorGroup::new(std::mem::take(
                &mut *shared.failures.borrow_mut(),
            )))
        } else {
            // The nursery's own scope is cancelled only by a failure, so without one the
            // body either returned its value or was dropped by an enclosing cancellation.
            // Then the nursery never completes, even if the body had returned a value: the
            // caller's next line must not run on half-done work, and the scope that
            // catches the cancellation drops us.
            let value = if shared.cancelled_from_outside() {
                None
            } else {
                this.value.take()
            };
            match value {
                Some(value) => Ok(value),
                None => {
                    *this.abandoned = true;
                    shared.finished.set(true);
                    shared.node.detach();
                    return Poll::Pending;
                }
            }
        };
        shared.finished.set(true);
        shared.node.detach();
        Poll::Ready(outcome)
    }
}
