//! Cancel scopes: Trio's cancellation model on top of Rust's drop-based cancellation.
//!
//! # The scope tree
//!
//! Every running [`CancelScope`] and every nursery owns a [`ScopeNode`]. A node's parent is
//! the *position* where it started running: the enclosing node plus, when that node is a
//! nursery, the *unit* (the nursery body or one child) it runs in. Cancellation flows down
//! the tree; "is anything inside still shielded?" flows up.
//!
//! A **unit** is what a cancellation drops as a whole: the body of a scope, the body of a
//! nursery, or one nursery child. Each unit is dropped separately, at its next suspension,
//! unless it holds an active shield (then it runs on, and the cancellation completes when
//! the shield has finished).
//!
//! "Next suspension" precisely: a unit that returns `Pending` while its scope is cancelled
//! (and holds no active shield) is dropped right there, without another poll. A unit that
//! was already suspended when the cancellation arrived from elsewhere (a sibling, a
//! deadline, a shield turned off) is polled once more if it may have been woken: a value
//! that is ready in the same instant as the cancellation is kept, and a shield entered in
//! that step is honoured. A scope's body shares its owner's waker, so a [`ScopeRun`] always
//! grants that one extra poll; a nursery grants it only to units whose waker fired.
//!
//! [`cancelled`] resolves only where a shield stops the cancellation: where the
//! cancellation reaches the caller, the caller's unit is dropped instead.
//!
//! # State and invariants
//!
//! - `cancel_called` only goes from `false` to `true` (level-triggered, idempotent).
//! - A node's effective cancellation is the *outermost* node with `cancel_called`, walking
//!   up from the node and stopping after the first shielded node. The owner of that node
//!   catches the cancellation (`cancelled_caught`); nodes below it only drop their units.
//! - `shields_inside` on a node, and `shields` on a nursery unit, count the shielded scopes
//!   running anywhere inside that scope body or unit. A shielded scope increments the
//!   counters on every position above it when it starts running and decrements them when it
//!   stops; when a counter returns to zero the owner is woken so it can drop what it held.
//! - `owner` is the waker of the future that polls the node's units (a scope's `run`
//!   future, or the nursery). Cancelling a node wakes its owner; when units below are held
//!   by shields, it also wakes every descendant's owner, so each drops its unshielded units.
//! - `CURRENT` (thread-local) is the position of the code being polled right now. Owners
//!   set it around every poll of a unit and restore it afterwards, also on unwind.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::executor::{try_with_core, with_core};
use crate::nursery::UnitCell;
use crate::slab::Slab;
use crate::time::{TimerAction, TimerKey};

/// Why a scope was first cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`CancelScope::cancel`] (or [`Nursery::cancel`](crate::Nursery::cancel)) was called.
    Explicit,
    /// The scope's deadline passed.
    Deadline,
    /// A task of the nursery that owns the scope failed.
    Failure {
        /// The task that failed, as the nursery names it (`"child 3"`, `"the body"`).
        task: String,
    },
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Explicit => f.write_str("cancelled explicitly"),
            CancelReason::Deadline => f.write_str("its deadline passed"),
            CancelReason::Failure { task } => write!(f, "{task} failed"),
        }
    }
}

/// Where code runs: a node and, inside a nursery, the unit within it.
#[derive(Debug, Clone)]
pub(crate) struct Position {
    pub(crate) node: Rc<ScopeNode>,
    /// The nursery unit (body or child); `None` when `node` is a scope whose body is the
    /// unit itself.
    pub(crate) unit: Option<Arc<UnitCell>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Position>> = const { RefCell::new(None) };
    /// Bumped whenever any node's effective cancellation may have changed (a cancel, a
    /// shield toggled), so owners can cache `cancel_source` between changes.
    static CANCEL_EPOCH: Cell<u64> = const { Cell::new(0) };
    /// Exited nodes offered for reuse (see [`ScopeNode::recycle`]).
    static SPARE_NODES: RefCell<Vec<Rc<ScopeNode>>> = const { RefCell::new(Vec::new()) };
}

fn bump_cancel_epoch() {
    CANCEL_EPOCH.with(|e| e.set(e.get() + 1));
}

/// The current cancel epoch: while it is unchanged, no node's effective cancellation has
/// changed.
fn cancel_epoch() -> u64 {
    CANCEL_EPOCH.with(Cell::get)
}

/// Restores the previous position when dropped (also while unwinding from a panic).
#[derive(Debug)]
pub(crate) struct PositionGuard {
    previous: Option<Position>,
}

/// Makes `pos` the current position until the guard is dropped.
pub(crate) fn enter(pos: Position) -> PositionGuard {
    let previous = CURRENT.with(|c| c.replace(Some(pos)));
    PositionGuard { previous }
}

impl Drop for PositionGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Ignore the access error during thread teardown: nothing runs afterwards.
        let _ = CURRENT.try_with(|c| c.replace(previous));
    }
}

pub(crate) fn current_position() -> Option<Position> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Lifecycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Created, not yet running: changes are only recorded.
    Idle,
    /// Attached to the tree; its owner polls its units.
    Running,
    /// Finished: further changes do nothing.
    Exited,
}

/// One node of the scope tree (see the module docs for the invariants).
#[derive(Debug)]
pub(crate) struct ScopeNode {
    stage: Cell<Stage>,
    parent: RefCell<Option<Position>>,
    /// This node's key in its parent's `children`, while attached.
    child_key: Cell<Option<usize>>,
    children: RefCell<Slab<Weak<ScopeNode>>>,
    cancel_called: Cell<bool>,
    reason: RefCell<Option<CancelReason>>,
    caught: Cell<bool>,
    deadline: Cell<Option<Instant>>,
    timer: Cell<Option<TimerKey>>,
    shield: Cell<bool>,
    /// Whether this node's shield is counted in the ancestors' counters.
    shield_counted: Cell<bool>,
    shields_inside: Cell<u32>,
    /// `(cancel epoch, effectively cancelled)` from the last walk up the tree.
    cancel_cache: Cell<Option<(u64, bool)>>,
    owner: RefCell<Option<Waker>>,
    /// Tasks waiting in [`cancelled`] at this node.
    listeners: RefCell<Vec<Waker>>,
}

impl ScopeNode {
    /// A fresh node: a recycled one when the pool holds one that nothing else references
    /// (timeouts and nurseries are on the per-request path; a node is ~300 bytes).
    pub(crate) fn new(deadline: Option<Instant>, shield: bool) -> Rc<ScopeNode> {
        let recycled = SPARE_NODES
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                while let Some(node) = pool.pop() {
                    if Rc::strong_count(&node) == 1 && Rc::weak_count(&node) == 0 {
                        return Some(node);
                    }
                }
                None
            })
            .ok()
            .flatten();
        if let Some(node) = recycled {
            node.reset(deadline, shield);
            return node;
        }
        Rc::new(ScopeNode {
            stage: Cell::new(Stage::Idle),
            parent: RefCell::new(None),
            child_key: Cell::new(None),
            children: RefCell::new(Slab::default()),
            cancel_called: Cell::new(false),
            reason: RefCell::new(None),
            caught: Cell::new(false),
            deadline: Cell::new(deadline),
            timer: Cell::new(None),
            shield: Cell::new(shield),
            shield_counted: Cell::new(false),
            shields_inside: Cell::new(0),
            cancel_cache: Cell::new(None),
            owner: RefCell::new(None),
            listeners: RefCell::new(Vec::new()),
        })
    }

    /// Offers an exited node to the pool. The owner calls this while it still holds its
    /// `Rc`; the node is reused only once every other handle is gone (checked in `new`).
    pub(crate) fn recycle(node: &Rc<ScopeNode>) {
        const MAX_SPARE_NODES: usize = 64;
        if node.stage.get() != Stage::Exited {
            return;
        }
        let _ = SPARE_NODES.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < MAX_SPARE_NODES {
                pool.push(node.clone());
            }
        });
    }

    /// Brings a recycled node back to the state `new` gives. Exited nodes have no parent
    /// link, timer, owner or listeners left (`detach` cleared them); children detached
    /// themselves before their parent could exit.
    fn reset(&self, deadline: Option<Instant>, shield: bool) {
        self.stage.set(Stage::Idle);
        self.parent.borrow_mut().take();
        self.child_key.set(None);
        debug_assert!(self.children.borrow().is_empty());
        self.cancel_called.set(false);
        self.reason.borrow_mut().take();
        self.caught.set(false);
        self.deadline.set(deadline);
        self.timer.set(None);
        self.shield.set(shield);
        self.shield_counted.set(false);
        self.shields_inside.set(0);
        self.cancel_cache.set(None);
        self.owner.borrow_mut().take();
        self.listeners.borrow_mut().clear();
    }

    /// Attaches the node below the current position and arms its deadline. Called by the
    /// owner at its first poll.
    pub(crate) fn attach(self: &Rc<Self>) {
        debug_assert_eq!(self.stage.get(), Stage::Idle);
        self.stage.set(Stage::Running);
        // The path upwards is about to change.
        self.cancel_cache.set(None);
        if let Some(parent) = current_position() {
            let key = parent
                .node
                .children
                .borrow_mut()
                .insert(Rc::downgrade(self));
            self.child_key.set(Some(key));
            *self.parent.borrow_mut() = Some(parent);
        }
        if self.shield.get() {
            self.count_shield(true);
        }
        self.arm_deadline();
    }

    /// Detaches the node when its owner finishes or is dropped.
    pub(crate) fn detach(&self) {
        if self.stage.replace(Stage::Exited) != Stage::Running {
            return;
        }
        self.disarm_deadline();
        if self.shield_counted.get() {
            self.count_shield(false);
        }
        if let (Some(parent), Some(key)) = (self.parent.borrow().as_ref(), self.child_key.take()) {
            parent.node.children.borrow_mut().remove(key);
        }
        self.owner.borrow_mut().take();
        self.listeners.borrow_mut().clear();
    }

    /// Records the waker of the future that polls this node's units.
    pub(crate) fn set_owner(&self, waker: &Waker) {
        let mut owner = self.owner.borrow_mut();
        match &*owner {
            Some(w) if w.will_wake(waker) => {}
            _ => *owner = Some(waker.clone()),
        }
    }

    fn wake_owner(&self) {
        if let Some(w) = self.owner.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Whether the node is effectively cancelled (`cancel_source().is_some()`), cached
    /// until the cancel epoch moves: owners ask on every poll, the answer rarely changes.
    pub(crate) fn is_cancelled(self: &Rc<Self>) -> bool {
        let epoch = cancel_epoch();
        if let Some((seen, cancelled)) = self.cancel_cache.get() {
            if seen == epoch {
                return cancelled;
            }
        }
        let cancelled = self.cancel_source().is_some();
        self.cancel_cache.set(Some((epoch, cancelled)));
        cancelled
    }

    /// The outermost cancelled node on the unshielded path from `self` upwards.
    pub(crate) fn cancel_source(self: &Rc<Self>) -> Option<Rc<ScopeNode>> {
        let mut found = None;
        let mut node = self.clone();
        loop {
            if node.cancel_called.get() {
                found = Some(node.clone());
            }
            if node.shield.get() {
                return found;
            }
            let parent = match node.parent.borrow().as_ref() {
                Some(p) => p.node.clone(),
                None => return found,
            };
            node = parent;
        }
    }

    /// Whether any node from here to the root has been cancelled, looking through shields.
    fn any_ancestor_cancelled(self: &Rc<Self>) -> bool {
        let mut node = self.clone();
        loop {
            if node.cancel_called.get() {
                return true;
            }
            let parent = match node.parent.borrow().as_ref() {
                Some(p) => p.node.clone(),
                None => return false,
            };
            node = parent;
        }
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        if self.cancel_called.get() {
            return;
        }
        // Recorded in every stage (as Trio's `cancel_called`); acted on only while running.
        self.cancel_called.set(true);
        bump_cancel_epoch();
        *self.reason.borrow_mut() = Some(reason);
        if self.stage.get() != Stage::Running {
            return;
        }
        self.disarm_deadline();
        self.wake_owner();
        self.wake_listeners();
        // Without shields inside, the owner drops the whole body at once and nobody below
        // needs to act. With shields, every owner below must drop its own unshielded units.
        if self.shields_inside.get() > 0 {
            self.wake_descendants();
        }
    }

    fn wake_listeners(&self) {
        for w in self.listeners.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn wake_descendants(&self) {
        let children: Vec<Rc<ScopeNode>> = self
            .children
            .borrow()
            .iter()
            .filter_map(|(_, child)| child.upgrade())
            .collect();
        for child in children {
            child.wake_owner();
            child.wake_listeners();
            child.wake_descendants();
        }
    }

    pub(crate) fn deadline_fired(&self) {
        self.timer.set(None);
        self.cancel(CancelReason::Deadline);
    }

    fn arm_deadline(self: &Rc<Self>) {
        let Some(deadline) = self.deadline.get() else {
            return;
        };
        if self.cancel_called.get() {
            return;
        }
        with_core(|core| {
            if core.clock.now() >= deadline {
                self.cancel(CancelReason::Deadline);
            } else {
                let key = core
                    .timers
                    .borrow_mut()
                    .arm(deadline, TimerAction::CancelScope(Rc::downgrade(self)));
                self.timer.set(Some(key));
            }
        });
    }

    fn disarm_deadline(&self) {
        if let Some(key) = self.timer.take() {
            try_with_core(|core| core.timers.borrow_mut().disarm(key));
        }
    }

    /// Adds (`true`) or removes this node's shield from the counters of every position
    /// above it, waking owners whose counter returns to zero.
    fn count_shield(&self, add: bool) {
        self.shield_counted.set(add);
        let mut pos = self.parent.borrow().clone();
        while let Some(p) = pos {
            if let Some(unit) = &p.unit {
                if add {
                    unit.shields.fetch_add(1, Ordering::Relaxed);
                } else if unit.shields.fetch_sub(1, Ordering::Relaxed) == 1 {
                    p.node.wake_owner();
                }
            }
            let count = p.node.shields_inside.get();
            if add {
                p.node.shields_inside.set(count + 1);
            } else {
                p.node.shields_inside.set(count - 1);
                if count == 1 {
                    p.node.wake_owner();
                }
            }
            pos = p.node.parent.borrow().clone();
        }
    }

    pub(crate) fn shields_inside(&self) -> u32 {
        self.shields_inside.get()
    }

    fn set_shield(&self, shield: bool) {
        if self.shield.replace(shield) == shield {
            return;
        }
        bump_cancel_epoch();
        if self.stage.get() == Stage::Running {
            self.count_shield(shield);
            // Dropping a shield may expose this node to an outer cancellation.
            self.wake_owner();
        }
    }

    fn set_deadline(self: &Rc<Self>, deadline: Option<Instant>) {
        self.deadline.set(deadline);
        if self.stage.get() == Stage::Running {
            self.disarm_deadline();
            self.arm_deadline();
        }
    }

    fn effective_deadline(self: &Rc<Self>) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut node = self.clone();
        loop {
            if node.cancel_called.get() {
                // Already cancelled: the deadline is now (Trio reports -inf).
                return Some(try_with_core(|c| c.clock.now()).unwrap_or_else(Instant::now));
            }
            if let Some(d) = node.deadline.get() {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
            }
            if node.shield.get() {
                return earliest;
            }
            let parent = match node.parent.borrow().as_ref() {
                Some(p) => p.node.clone(),
                None => return earliest,
            };
            node = parent;
        }
    }
}

/// A Trio cancel scope: a region of code that can be cancelled, by hand or by a deadline.
///
/// A `CancelScope` is a cheap, cloneable handle; any task of the runtime can cancel it or
/// move its deadline while another task runs code inside it. The code runs inside the
/// scope through [`run`](CancelScope::run), once.
///
/// Cancellation is level-triggered: once the scope is cancelled, every unit inside it (the
/// body, and each child of each nursery inside it) is dropped at its next suspension, except
/// units that hold an active [shield](CancelScope::set_shield), which finish first.
///
/// # Cancellation
///
/// - When nested scopes are both cancelled, the outermost cancelled one catches the
///   cancellation (its `run` gives `None` and [`cancelled_caught`](Self::cancelled_caught)
///   is true); the inner ones only drop their bodies.
/// - A scope's deadline and explicit [`cancel`](Self::cancel) act on the scope itself, also
///   when it is shielded: a shield only stops *enclosing* cancellations.
/// - Children of a nursery belong to the nursery's scopes, not to the scope in which
///   `spawn` was called.
/// - Dropping the [`ScopeRun`] future from outside drops the body at once, shields
///   included (a hard cancel).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::CancelScope;
///
/// trellis::Builder::new().autojump().run(async {
///     let scope = CancelScope::new();
///     let handle = scope.clone();
///     let out = trellis::nursery(async |n| {
///         n.spawn(async move {
///             trellis::sleep(Duration::from_secs(1)).await;
///             handle.cancel();
///         });
///         let finished = scope.run(trellis::sleep_forever()).await;
///         Ok::<_, ()>(finished)
///     })
///     .await
///     .unwrap();
///     assert_eq!(out, Some(None)); // the nursery finished; the scope was cancelled
/// });
/// ```
#[derive(Clone)]
pub struct CancelScope {
    node: Rc<ScopeNode>,
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelScope")
            .field("stage", &self.node.stage.get())
            .field("cancel_called", &self.node.cancel_called.get())
            .field("reason", &self.node.reason.borrow())
            .field("deadline", &self.node.deadline.get())
            .field("shield", &self.node.shield.get())
            .field("cancelled_caught", &self.node.caught.get())
            .finish()
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        CancelScope::new()
    }
}

impl CancelScope {
    /// A new scope with no deadline and no shield.
    pub fn new() -> CancelScope {
        CancelScope {
            node: ScopeNode::new(None, false),
        }
    }

    /// A new scope that cancels itself at `deadline`.
    pub fn with_deadline(deadline: Instant) -> CancelScope {
        CancelScope {
            node: ScopeNode::new(Some(deadline), false),
        }
    }

    pub(crate) fn from_node(node: Rc<ScopeNode>) -> CancelScope {
        CancelScope { node }
    }

    /// Runs `fut` inside this scope: `Some(output)` when it completes, `None` when the
    /// scope was cancelled first (then `cancelled_caught()` is true).
    ///
    /// A scope cancelled before `run` is first polled (explicitly, or by a deadline that
    /// has already passed) never polls `fut`. An output that is ready in the same poll as
    /// the cancellation is kept: a deadline and an operation completing at the same instant
    /// give `Some`. A body that cancels its own scope and then finishes without suspending
    /// also gives `Some` (the cancellation was never delivered; `cancelled_caught` stays
    /// false).
    ///
    /// # Panics
    ///
    /// Panics (when polled) if this scope has already been run: a scope runs once.
    ///
    /// # Cancellation
    ///
    /// When this scope is cancelled, the body is dropped at its next suspension (see the
    /// module docs for the exact rule) unless it holds an active shield; then it runs until
    /// the shield is gone. When an *enclosing* scope is cancelled, this scope does not
    /// catch it: its body is dropped (unless shielded) and the future stays pending until
    /// the enclosing owner drops it. Dropping the future from outside drops the body at
    /// once, shields included.
    pub fn run<F: Future>(self, fut: F) -> ScopeRun<F> {
        ScopeRun {
            node: self.node,
            body: Some(fut),
            polled: false,
            started: false,
        }
    }

    /// Cancels the scope. Idempotent; the first reason is kept.
    ///
    /// # Cancellation
    ///
    /// Before the scope runs, the cancel is recorded and the body will never be polled.
    /// While it runs, every unit inside is dropped at its next suspension (unless
    /// shielded); the owner is woken at once, so a body sleeping for an hour ends now.
    /// After the scope finished, the call is only recorded
    /// ([`cancel_called`](Self::cancel_called) becomes true, as in Trio) and changes
    /// nothing else.
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit);
    }

    /// Whether [`cancel`](CancelScope::cancel) was called (at any time, also after the
    /// scope finished) or the deadline passed while the scope ran.
    pub fn cancel_called(&self) -> bool {
        self.node.cancel_called.get()
    }

    /// Why the scope was first cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.node.reason.borrow().clone()
    }

    /// Whether this scope caught a cancellation: it was the outermost cancelled scope and
    /// its body was dropped. False for a scope whose body finished anyway, and for a scope
    /// that was dropped by a cancellation of an enclosing scope.
    pub fn cancelled_caught(&self) -> bool {
        self.node.caught.get()
    }

    /// The scope's own deadline (not the effective one; see
    /// [`current_effective_deadline`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.node.deadline.get()
    }

    /// Sets or clears the deadline. Takes effect at once, also while the scope runs: a
    /// deadline moved earlier (or into the past) fires then; one moved later postpones it.
    ///
    /// # Cancellation
    ///
    /// A deadline that passes while the scope runs cancels it as [`cancel`](Self::cancel)
    /// would, with [`CancelReason::Deadline`]. On a scope that is already cancelled or has
    /// finished, the new deadline is only recorded. A deadline never fires early; on the
    /// mock clock it fires exactly at its instant.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.node.set_deadline(deadline);
    }

    /// Whether the scope shields its body from enclosing cancellations.
    pub fn shield(&self) -> bool {
        self.node.shield.get()
    }

    /// Turns the shield on or off, also while the scope runs.
    ///
    /// # Cancellation
    ///
    /// A shielded scope's body is not dropped by the cancellation of an enclosing scope;
    /// the enclosing cancellation completes when the shielded body finishes. The scope's
    /// own `cancel` and deadline still apply. Turning the shield off while an enclosing
    /// scope is cancelled exposes the body: it is dropped at its next suspension, and so
    /// is every unshielded unit below it.
    pub fn set_shield(&self, shield: bool) {
        self.node.set_shield(shield);
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`CancelScope::run`].
    ///
    /// # Cancellation
    ///
    /// See [`CancelScope::run`]: its own scope's cancellation gives `None`; an enclosing
    /// one leaves it pending until dropped; dropping it drops the body at once, shields
    /// included.
    #[must_use = "a scope does nothing unless awaited"]
    #[project = ScopeRunProj]
    pub struct ScopeRun<F> {
        node: Rc<ScopeNode>,
        #[pin]
        body: Option<F>,
        polled: bool,
        started: bool,
    }

    impl<F> PinnedDrop for ScopeRun<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // Drop the body first: scopes inside it detach while their parents exist.
            this.body.set(None);
            if *this.started {
                this.node.detach();
                ScopeNode::recycle(this.node);
            }
        }
    }
}

impl<F> fmt::Debug for ScopeRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeRun")
            .field("scope", &CancelScope::from_node(self.node.clone()))
            .field("finished", &self.body.is_none())
            .finish()
    }
}

impl<F: Future> Future for ScopeRun<F> {
    type Output = Option<F::Output>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let mut this = self.project();
        if !*this.started {
            assert!(
                this.node.stage.get() == Stage::Idle,
                "this CancelScope was already run; a scope runs once — create a new one \
                 with `CancelScope::new()`"
            );
            *this.started = true;
            this.node.attach();
        }
        if this.body.is_none() {
            // Dropped by an enclosing cancellation; that scope's owner drops us.
            return Poll::Pending;
        }
        this.node.set_owner(cx.waker());
        if this.node.is_cancelled() && this.node.shields_inside() == 0 && !*this.polled {
            // Cancelled before the body ever ran: it is never polled.
            return this.finish_cancelled();
        }
        // A body cancelled since its last poll is polled once more: it may have been woken
        // already, and a value that is ready now is not lost to a cancellation arriving in
        // the same instant (nor is a shield it enters in this step).
        *this.polled = true;
        let polled = {
            let _pos = enter(Position {
                node: this.node.clone(),
                unit: None,
            });
            this.body.as_mut().as_pin_mut().map(|b| b.poll(cx)).unwrap()
        };
        match polled {
            Poll::Ready(v) => {
                this.body.set(None);
                this.node.detach();
                Poll::Ready(Some(v))
            }
            // Suspended while cancelled and not shielded: dropped at this suspension.
            Poll::Pending
                if this.node.is_cancelled() && this.node.shields_inside() == 0 =>
            {
                this.finish_cancelled()
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future> ScopeRunProj<'_, F> {
    /// Drops the body of a cancelled scope. The scope catches the cancellation when it is
    /// the outermost cancelled one on its unshielded path; otherwise the enclosing owner
    /// that catches it drops this future, which stays pending until then.
    fn finish_cancelled(&mut self) -> Poll<Option<F::Output>> {
        self.body.set(None);
        let caught = self
            .node
            .cancel_source()
            .is_some_and(|s| Rc::ptr_eq(&s, self.node));
        self.node.caught.set(caught);
        if caught {
            self.node.detach();
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Runs `fut` shielded from every enclosing cancellation and returns its output.
///
/// An enclosing scope that is cancelled while `fut` runs waits for it to finish before it
/// drops the code around it: this is how async clean-up is written (Trio's shielded
/// `finally`). Use [`CancelScope::set_shield`] for a shield with its own deadline.
///
/// # Cancellation
///
/// No scope can cancel it. Dropping it from outside (a hard cancel, as when a nursery
/// future is dropped inside `futures::select!`) drops it at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let finished = trellis::Builder::new().autojump().run(async {
///     let cleanup_done = std::cell::Cell::new(false);
///     trellis::move_on_after(Duration::from_secs(1), async {
///         trellis::shield(async {
///             trellis::sleep(Duration::from_secs(5)).await;
///             cleanup_done.set(true);
///         })
///         .await;
///     })
///     .await;
///     cleanup_done.get()
/// });
/// assert!(finished);
/// ```
pub async fn shield<F: Future>(fut: F) -> F::Output {
    let scope = CancelScope::new();
    scope.set_shield(true);
    match scope.run(fut).await {
        Some(v) => v,
        // Nothing else holds the scope, so nothing can cancel it.
        None => unreachable!("a shield with no handle and no deadline cannot be cancelled"),
    }
}

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

/// Resolves when a scope that encloses the caller is cancelled, looking through shields:
/// inside a shield it tells that the outside wants to stop.
///
/// It resolves only where a shield stops the cancellation. Where the cancellation reaches
/// the caller (no shield in between), the caller's unit is dropped at this suspension
/// instead, so `move_on_after(d, cancelled())` gives `None`. Outside any scope, or while
/// nothing enclosing is cancelled, it stays pending.
///
/// # Cancellation
///
/// Cancel-safe: it holds nothing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     trellis::move_on_after(Duration::from_secs(1), async {
///         trellis::shield(async {
///             // Keep serving until the outside asks us to stop, then finish cleanly.
///             trellis::cancelled().await;
///         })
///         .await;
///     })
///     .await;
/// });
/// ```
pub fn cancelled() -> Cancelled {
    Cancelled { _private: () }
}

/// The future returned by [`cancelled`].
///
/// # Cancellation
///
/// Cancel-safe: dropping it loses nothing.
#[derive(Debug)]
#[must_use = "cancelled() does nothing unless awaited"]
pub struct Cancelled {
    _private: (),
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(pos) = current_position() else {
            return Poll::Pending;
        };
        // Where the cancellation reaches the caller (no shield in between), the caller's
        // unit is dropped at this suspension: resolving would let it run on instead.
        if pos.node.cancel_source().is_none() && pos.node.any_ancestor_cancelled() {
            return Poll::Ready(());
        }
        let mut listeners = pos.node.listeners.borrow_mut();
        if !listeners.iter().any(|w| w.will_wake(cx.waker())) {
            listeners.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The deadline that applies where this is called: the earliest deadline of the enclosing
/// scopes up to the nearest shield (a shielded scope's own deadline counts), or `None` when
/// there is none. Inside a nursery child, the enclosing scopes are the nursery's, not those
/// around the `spawn` call.
///
/// # Cancellation
///
/// A scope on that path that is already cancelled counts as a deadline of now (Trio
/// reports `-inf`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     assert_eq!(trellis::current_effective_deadline(), None);
///     let outer = trellis::now() + Duration::from_secs(5);
///     trellis::move_on_at(outer, async {
///         trellis::move_on_after(Duration::from_secs(60), async {
///             // The inner timeout does not extend the outer deadline.
///             assert_eq!(trellis::current_effective_deadline(), Some(outer));
///         })
///         .await;
///     })
///     .await;
/// });
/// ```
pub fn current_effective_deadline() -> Option<Instant> {
    current_position().and_then(|pos| pos.node.effective_deadline())
}
