//! Instruments (Trio's `abc.Instrument`): hooks that observe the runtime.
//!
//! # State
//!
//! - `INSTRUMENTS` (thread-local): the instruments of the runtime running on this thread,
//!   set from the [`Builder`](crate::Builder) when `run` starts and emptied when it ends;
//!   [`add`] and [`remove`] change it while it runs.
//! - `ACTIVE` mirrors "the list is not empty", so that a hook site with no instrument
//!   costs one thread-local load and a branch, and never builds its arguments.
//! - A hook that panics is removed before the next event (Trio's rule: an instrument's
//!   failure is reported, never the program's).
//! - `LAST_WAIT` (thread-local): what the task being polled last parked on (a timer, a
//!   socket), recorded by `sleep` and the reactor, taken by the task's owner after the poll
//!   for the task tree's "waiting on" column: a store per park while `RECORDING`.
//! - `RECORDING`: nurseries opened now keep task records (an instrument is registered,
//!   or the runtime keeps its task tree); each nursery reads it once, when it opens.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::instrument::label::TaskLabel;
use crate::instrument::reason::CancelReason;

/// Observes a runtime: each method is a hook, called on the runtime's thread when the
/// event happens. Every method has an empty default, so an instrument implements only
/// the hooks it needs.
///
/// Register instruments with [`Builder::instrument`](crate::Builder::instrument) (several
/// may be), or while the runtime runs with [`add`] and [`remove`]. With none registered,
/// a hook site costs a thread-local load and a branch.
///
/// Hooks run inside the runtime: they must not block, and should be quick. An instrument
/// that panics is removed, and the panic is reported on stderr; the program runs on.
///
/// # Order of the hooks
///
/// - `before_run` first and `after_run` last (also when the root future panics).
/// - For each task (a nursery's body, or a child): `task_spawned` once; then, for every
///   poll, `task_scheduled` (the wake that made it ready was taken from its nursery's ready
///   queue), `before_task_poll`, `after_task_poll`; then `task_exited` once, with how it
///   ended. A body's `task_spawned` comes at the first poll of its nursery. A hook that
///   calls [`dump_tree`](crate::dump_tree) finds the task listed from its `task_spawned`
///   on, and no longer in its `task_exited`.
/// - `before_io_wait` / `after_io_wait` around each look into the I/O poller, including
///   the non-blocking ones (`timeout` `Some(ZERO)`).
/// - `scope_cancelled` when a scope (or a nursery's scope) is first cancelled.
///
/// # Examples
///
/// Count the polls of every task, Trio-style:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use trellis::instrument::{Instrument, TaskInfo};
///
/// #[derive(Default)]
/// struct Polls(AtomicUsize);
/// impl Instrument for Polls {
///     fn before_task_poll(&self, _task: &TaskInfo) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let polls = Arc::new(Polls::default());
/// trellis::Builder::new()
///     .instrument(polls.clone())
///     .run(trellis::nursery(async |n| {
///         n.spawn(trellis::yield_now());
///     }));
/// // the body once, the child twice (it yields once)
/// assert_eq!(polls.0.load(Ordering::Relaxed), 3);
/// ```
pub trait Instrument {
    /// The runtime starts, before its root future's first poll.
    fn before_run(&self) {}
    /// The runtime has finished (its root future completed or panicked).
    fn after_run(&self) {}
    /// A task was created: spawned into a nursery, or a nursery's body.
    fn task_spawned(&self, task: &TaskInfo) {
        let _ = task;
    }
    /// A task's wake was taken from its nursery's ready queue: it runs in this round.
    fn task_scheduled(&self, task: &TaskInfo) {
        let _ = task;
    }
    /// A task is about to be polled.
    fn before_task_poll(&self, task: &TaskInfo) {
        let _ = task;
    }
    /// A task's poll returned (or panicked; `task_exited` follows then).
    fn after_task_poll(&self, task: &TaskInfo) {
        let _ = task;
    }
    /// A task is gone: it returned, failed, panicked or was cancelled.
    fn task_exited(&self, task: &TaskInfo, outcome: &TaskOutcome) {
        let _ = (task, outcome);
    }
    /// The runtime is about to look for I/O events, blocking for at most `timeout`
    /// (`None`: until an event or a wake).
    fn before_io_wait(&self, timeout: Option<Duration>) {
        let _ = timeout;
    }
    /// The look for I/O events returned `events` events.
    fn after_io_wait(&self, events: usize) {
        let _ = events;
    }
    /// A cancel scope or a nursery's scope started running (at its first poll), inside
    /// the task `scope.task()`.
    fn scope_entered(&self, scope: &ScopeInfo) {
        let _ = scope;
    }
    /// The scope finished or was dropped; its id may be given to a later scope.
    fn scope_exited(&self, scope: &ScopeInfo) {
        let _ = scope;
    }
    /// `scope` was cancelled, for the first time (a scope may be cancelled before it is
    /// entered: it then starts cancelled).
    fn scope_cancelled(&self, scope: &ScopeInfo, reason: &CancelReason) {
        let _ = (scope, reason);
    }
}

impl<I: Instrument + ?Sized> Instrument for Arc<I> {
    fn before_run(&self) {
        (**self).before_run();
    }
    fn after_run(&self) {
        (**self).after_run();
    }
    fn task_spawned(&self, task: &TaskInfo) {
        (**self).task_spawned(task);
    }
    fn task_scheduled(&self, task: &TaskInfo) {
        (**self).task_scheduled(task);
    }
    fn before_task_poll(&self, task: &TaskInfo) {
        (**self).before_task_poll(task);
    }
    fn after_task_poll(&self, task: &TaskInfo) {
        (**self).after_task_poll(task);
    }
    fn task_exited(&self, task: &TaskInfo, outcome: &TaskOutcome) {
        (**self).task_exited(task, outcome);
    }
    fn before_io_wait(&self, timeout: Option<Duration>) {
        (**self).before_io_wait(timeout);
    }
    fn after_io_wait(&self, events: usize) {
        (**self).after_io_wait(events);
    }
    fn scope_entered(&self, scope: &ScopeInfo) {
        (**self).scope_entered(scope);
    }
    fn scope_exited(&self, scope: &ScopeInfo) {
        (**self).scope_exited(scope);
    }
    fn scope_cancelled(&self, scope: &ScopeInfo, reason: &CancelReason) {
        (**self).scope_cancelled(scope, reason);
    }
}

/// A task's identity within its runtime: unique among the runtime's tasks, in creation
/// order. [`TaskId::ROOT`] is the root future given to `run`.
///
/// # Examples
///
/// ```
/// use trellis::instrument::TaskId;
///
/// assert_eq!(TaskId::ROOT.to_string(), "task 0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The root future given to [`run`](crate::run): the parent of the tasks of a
    /// nursery opened in it.
    pub const ROOT: TaskId = TaskId(0);

    /// The number, as a `u64` (0 for the root future, then 1, 2, … in creation order).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(trellis::instrument::TaskId::ROOT.as_u64(), 0);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// A fresh id, on the runtime's thread.
    pub(crate) fn next() -> TaskId {
        NEXT_TASK.with(|next| {
            let id = next.get() + 1;
            next.set(id);
            TaskId(id)
        })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// What an instrument is told about a task.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use trellis::instrument::{Instrument, TaskId, TaskInfo};
/// use trellis::TaskName;
///
/// struct Tree(Arc<Mutex<Vec<(TaskId, TaskId, TaskName)>>>);
/// impl Instrument for Tree {
///     fn task_spawned(&self, t: &TaskInfo) {
///         self.0.lock().unwrap().push((t.id(), t.parent(), t.name()));
///     }
/// }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// trellis::Builder::new()
///     .instrument(Tree(seen.clone()))
///     .run(trellis::nursery(async |n| {
///         n.spawn(async {});
///     }));
/// let seen = seen.lock().unwrap();
/// let (body, child) = (seen[0], seen[1]);
/// assert_eq!((body.1, body.2), (TaskId::ROOT, TaskName::Body));
/// assert_eq!((child.1, child.2), (TaskId::ROOT, TaskName::Child(1)));
/// ```
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub(crate) id: TaskId,
    pub(crate) parent: TaskId,
    pub(crate) nursery: u64,
    pub(crate) name: crate::instrument::label::TaskName,
    pub(crate) label: TaskLabel,
}

impl TaskInfo {
    /// The task's id.
    ///
    /// # Examples
    ///
    /// See [`TaskInfo`].
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, TaskInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn task_exited(&self, t: &TaskInfo, _: &trellis::instrument::TaskOutcome) {
    ///         assert!(t.id().as_u64() > 0);
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task the nursery was opened in ([`TaskId::ROOT`] for a nursery in the root
    /// future): the parent of its body and of each of its children. A task of a nursery
    /// that keeps no records has no id (an instrument [`add`]ed while that nursery runs,
    /// without the task tree): a nursery opened in one reports the nearest recorded task
    /// around it instead, or [`TaskId::ROOT`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, TaskId, TaskInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn task_spawned(&self, t: &TaskInfo) {
    ///         assert_eq!(t.parent(), TaskId::ROOT); // one nursery, in the root
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |n| { n.spawn(async {}); }));
    /// ```
    pub fn parent(&self) -> TaskId {
        self.parent
    }

    /// The [id](ScopeInfo::id) of the task's nursery (its scope was
    /// [entered](Instrument::scope_entered) before the task was spawned).
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo, TaskInfo};
    /// # use std::sync::Mutex;
    /// #[derive(Default)]
    /// struct I(Mutex<Vec<u64>>);
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         self.0.lock().unwrap().push(s.id());
    ///     }
    ///     fn task_spawned(&self, t: &TaskInfo) {
    ///         assert!(self.0.lock().unwrap().contains(&t.nursery()));
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I::default()).run(trellis::nursery(async |n| { n.spawn(async {}); }));
    /// ```
    pub fn nursery(&self) -> u64 {
        self.nursery
    }

    /// Which task of its nursery it is: the body, or child *n*.
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, TaskInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn task_spawned(&self, t: &TaskInfo) {
    ///         println!("{} of its nursery", t.name());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn name(&self) -> crate::instrument::label::TaskName {
        self.name
    }

    /// Its name and spawn site.
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, TaskInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn task_spawned(&self, t: &TaskInfo) {
    ///         println!("{} at {}", t.label(), t.label().location());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn label(&self) -> &TaskLabel {
        &self.label
    }
}

/// What an instrument is told about a cancel scope or a nursery's scope.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use trellis::instrument::{Instrument, ScopeInfo};
///
/// struct Scopes(Arc<Mutex<Vec<String>>>);
/// impl Instrument for Scopes {
///     fn scope_entered(&self, s: &ScopeInfo) {
///         let kind = if s.is_nursery() { "nursery" } else { "scope" };
///         let nested = s.parent().is_some();
///         let timed = s.deadline().is_some();
///         self.0.lock().unwrap().push(format!("{kind} nested={nested} deadline={timed}"));
///     }
/// }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// trellis::Builder::new()
///     .autojump()
///     .instrument(Scopes(seen.clone()))
///     .run(trellis::nursery(async |_n| {
///         // In the nursery's body (a task): a timeout, and a shield inside it.
///         let in_shield = trellis::shield(trellis::sleep(Duration::from_secs(2)));
///         trellis::move_on_after(Duration::from_secs(1), in_shield).await;
///     }));
/// assert_eq!(
///     *seen.lock().unwrap(),
///     [
///         "nursery nested=false deadline=false",
///         "scope nested=false deadline=true",
///         "scope nested=true deadline=false",
///     ]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct ScopeInfo {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) task: TaskId,
    pub(crate) nursery: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) shield: bool,
}

impl ScopeInfo {
    /// The scope's id: unique among the scopes alive on this thread (a later scope may
    /// reuse it once this one has [exited](Instrument::scope_exited)).
    ///
    /// # Examples
    ///
    /// See [`ScopeInfo`]; a task's [`nursery`](TaskInfo::nursery) is such an id.
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_exited(&self, s: &ScopeInfo) {
    ///         println!("scope {} exited", s.id());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id of the enclosing scope in the same task, or `None` for the outermost scope of
    /// its task (which then runs directly in [`task`](ScopeInfo::task); the task is a
    /// child of its own nursery's scope, [`TaskInfo::nursery`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         // The nursery and the outer scope are the outermost of their tasks (the
    ///         // root, the body); the shield is inside the outer scope.
    ///         assert_eq!(s.parent().is_some(), s.is_shielded());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {
    /// #     trellis::cancel_scope(async |_| trellis::shield(async {}).await).await;
    /// # }));
    /// ```
    pub fn parent(&self) -> Option<u64> {
        self.parent
    }

    /// The task the scope runs in ([`TaskId::ROOT`] in the root future, and for a scope
    /// cancelled before it was entered, which runs nowhere yet).
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo, TaskId};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         assert_eq!(s.task(), TaskId::ROOT);
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// Whether this is a nursery's scope (rather than a [`cancel_scope`](crate::cancel_scope)
    /// or a timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         assert!(s.is_nursery());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn is_nursery(&self) -> bool {
        self.nursery
    }

    /// The scope's deadline when the hook fired, if it has one.
    ///
    /// # Examples
    ///
    /// See [`ScopeInfo`].
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         assert_eq!(s.deadline(), None);
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {}));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the scope shields what runs in it when the hook fired.
    ///
    /// # Examples
    ///
    /// ```
    /// # use trellis::instrument::{Instrument, ScopeInfo};
    /// # struct I;
    /// impl Instrument for I {
    ///     fn scope_entered(&self, s: &ScopeInfo) {
    ///         assert_eq!(s.is_shielded(), !s.is_nursery());
    ///     }
    /// }
    /// # trellis::Builder::new().instrument(I).run(trellis::nursery(async |_| {
    /// #     trellis::shield(async {}).await;
    /// # }));
    /// ```
    pub fn is_shielded(&self) -> bool {
        self.shield
    }
}

/// How a task ended, for [`Instrument::task_exited`].
///
/// # Examples
///
/// ```
/// use trellis::instrument::TaskOutcome;
///
/// assert_eq!(TaskOutcome::Returned.to_string(), "returned");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// It returned a value (for a fallible task: `Ok`).
    Returned,
    /// It returned `Err` (its nursery's `ErrorGroup` holds the error).
    Failed,
    /// It panicked, in a poll or in a destructor; the panic's message.
    Panicked(String),
    /// It was dropped before it finished: by a cancellation, or with its nursery.
    Cancelled,
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskOutcome::Returned => f.write_str("returned"),
            TaskOutcome::Failed => f.write_str("failed"),
            TaskOutcome::Panicked(message) => write!(f, "panicked: {message}"),
            TaskOutcome::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// How a task ended, as the nursery notes it on its hot path (no allocation); made a
/// [`TaskOutcome`] only for an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Returned,
    Failed,
    /// The message is the last panic the nursery recorded.
    Panicked,
    Cancelled,
}

/// Identifies an instrument added with [`add`], to [`remove`] it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstrumentKey(u64);

/// What a task parked on last, for the task tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Nothing recorded (an `Event`, a channel, a lock, a child of its own …).
    Other,
    /// A timer (a `sleep`, an interval) due at this instant.
    Timer(Instant),
    /// A socket or pipe, for reading (`false`) or writing (`true`).
    Io { fd: i32, write: bool },
    /// It yielded (`yield_now`): it is ready again.
    Yielded,
}

/// The registered instruments, in registration order.
type Instruments = Rc<[(InstrumentKey, Rc<dyn Instrument>)]>;

thread_local! {
    /// Shared with every `emit` under way, so that an event copies one `Rc`, and a hook
    /// that adds or removes an instrument replaces the list rather than changing it.
    static INSTRUMENTS: RefCell<Option<Instruments>> = const { RefCell::new(None) };
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// Nurseries opened now keep a record per task (for the instruments and the task
    /// tree): set while an instrument is registered or the runtime keeps its task tree.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    /// A runtime's `run` is under way on this thread (between `install` and its guard).
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    static NEXT_KEY: Cell<u64> = const { Cell::new(0) };
    static NEXT_TASK: Cell<u64> = const { Cell::new(0) };
    static LAST_WAIT: Cell<Wait> = const { Cell::new(Wait::Other) };
}

/// Whether nurseries opened now keep task records (see `RECORDING`).
#[inline]
pub(crate) fn recording() -> bool {
    RECORDING.try_with(Cell::get).unwrap_or(false)
}

/// Whether any instrument is registered on this thread. Hook sites test this first.
#[inline]
pub(crate) fn active() -> bool {
    ACTIVE.try_with(Cell::get).unwrap_or(false)
}

/// Adds an instrument to the running runtime; it sees the events from now on.
///
/// It stays registered until [`remove`]d or until the runtime's `run` returns, as the
/// instruments given to the [`Builder`](crate::Builder) do. It sees the tasks of the
/// nurseries opened from now on (and every task, when the runtime keeps its task tree:
/// a mock clock, [`Builder::task_tree`](crate::Builder::task_tree), or an instrument given
/// to the `Builder`); a nursery opened earlier without records is not seen.
///
/// # Panics
///
/// Outside a runtime (there is nothing to observe), with a message that says so.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use trellis::instrument::{self, Instrument, TaskInfo};
///
/// #[derive(Default)]
/// struct Spawns(AtomicUsize);
/// impl Instrument for Spawns {
///     fn task_spawned(&self, _: &TaskInfo) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let spawns = Arc::new(Spawns::default());
/// // `task_tree`: the nursery below keeps records, though it opens before the instrument.
/// trellis::Builder::new().task_tree().run(trellis::nursery(async |n| {
///     n.spawn(async {}); // before: not seen
///     let key = instrument::add(spawns.clone());
///     n.spawn(async {});
///     assert!(instrument::remove(key));
///     n.spawn(async {}); // after: not seen
/// }));
/// assert_eq!(spawns.0.load(Ordering::Relaxed), 1);
/// ```
#[track_caller]
pub fn add<I: Instrument + 'static>(instrument: I) -> InstrumentKey {
    if !RUNNING.try_with(Cell::get).unwrap_or(false) {
        panic!(
            "trellis::instrument::add was called outside a runtime; call it from a task, \
             or give the instrument to `Builder::instrument`"
        );
    }
    add_rc(Rc::new(instrument))
}

pub(crate) fn add_rc(instrument: Rc<dyn Instrument>) -> InstrumentKey {
    let key = NEXT_KEY.with(|next| {
        let key = next.get() + 1;
        next.set(key);
        InstrumentKey(key)
    });
    INSTRUMENTS.with(|list| {
        let mut list = list.borrow_mut();
        let mut new: Vec<_> = list.as_deref().unwrap_or_default().to_vec();
        new.push((key, instrument));
        *list = Some(new.into());
    });
    ACTIVE.with(|active| active.set(true));
    RECORDING.with(|recording| recording.set(true));
    key
}

/// Removes an instrument added with [`add`]; whether it was still registered (one that
/// panicked was removed already).
///
/// # Examples
///
/// ```
/// use trellis::instrument::{self, Instrument};
///
/// struct Quiet;
/// impl Instrument for Quiet {}
///
/// trellis::run(async {
///     let key = instrument::add(Quiet);
///     assert!(instrument::remove(key));
///     assert!(!instrument::remove(key)); // gone already
/// });
/// ```
pub fn remove(key: InstrumentKey) -> bool {
    INSTRUMENTS.with(|list| {
        let mut list = list.borrow_mut();
        let old = list.as_deref().unwrap_or_default();
        let new: Vec<_> = old.iter().filter(|(k, _)| *k != key).cloned().collect();
        let removed = new.len() != old.len();
        ACTIVE.with(|active| active.set(!new.is_empty()));
        *list = (!new.is_empty()).then(|| new.into());
        removed
    })
}

/// Calls `hook` on every instrument; removes (and reports) one that panics. The list is
/// shared, not borrowed, while the hooks run, so a hook may add or remove instruments
/// (seen from the next event).
#[cold]
#[inline(never)]
pub(crate) fn emit(hook: &'static str, call: impl Fn(&dyn Instrument)) {
    let Ok(Some(list)) = INSTRUMENTS.try_with(|list| list.borrow().clone()) else {
        return; // none, or thread teardown
    };
    for (key, instrument) in list.iter() {
        let key = *key;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| call(&**instrument))) {
            remove(key);
            eprintln!(
                "trellis: an instrument panicked in `{hook}` and was removed (the program \
                 runs on): {}",
                crate::instrument::label::panic_text(&*payload)
            );
        }
    }
}

/// Installs a runtime's instruments on this thread for the length of its `run`, and
/// whether its nurseries keep task records (`record`: the task tree was asked for); the
/// guard empties the list again (also on unwind) after calling `after_run`.
pub(crate) fn install(
    instruments: &[Arc<dyn Instrument + Send + Sync>],
    record: bool,
) -> Installed {
    for instrument in instruments {
        add_rc(Rc::new(instrument.clone()));
    }
    RECORDING.with(|recording| recording.set(record || !instruments.is_empty()));
    NEXT_TASK.with(|next| next.set(0));
    RUNNING.with(|running| running.set(true));
    if active() {
        emit("before_run", |i| i.before_run());
    }
    Installed(())
}

/// Ends a run's instruments (see [`install`]).
#[derive(Debug)]
pub(crate) struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        if active() {
            emit("after_run", |i| i.after_run());
        }
        let _ = INSTRUMENTS.try_with(|list| list.borrow_mut().take());
        let _ = ACTIVE.try_with(|active| active.set(false));
        let _ = RUNNING.try_with(|running| running.set(false));
        let _ = RECORDING.try_with(|recording| recording.set(false));
    }
}

/// Records what the task being polled parks on (the last record of a poll wins), when
/// nurseries keep records.
#[inline]
pub(crate) fn record_wait(wait: Wait) {
    if recording() {
        let _ = LAST_WAIT.try_with(|last| last.set(wait));
    }
}

/// What the task just polled parked on, forgetting it for the next poll.
#[inline]
pub(crate) fn take_wait() -> Wait {
    LAST_WAIT
        .try_with(|last| last.replace(Wait::Other))
        .unwrap_or(Wait::Other)
}
