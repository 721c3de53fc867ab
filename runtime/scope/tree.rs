//! The scope tree: one [`ScopeNode`] for every running [`CancelScope`](crate::CancelScope)
//! and every nursery, and the position of the code being polled.
//!
//! A node's parent is the *position* where it started running: the enclosing node plus,
//! when that node is a nursery, the *unit* (the nursery body or one child; see the docs of
//! `cancel_scope.rs`) it runs in. Cancellation flows down the tree; "is anything inside still
//! shielded?" flows up.
//!
//! # State and invariants
//!
//! - `cancel_called` only goes from `false` to `true` (level-triggered, idempotent).
//! - A node's effective cancellation is the *outermost* node with `cancel_called`, walking
//!   up from the node and stopping after the first shielded node. The owner of that node
//!   catches the cancellation (`cancelled_caught`); nodes below it only drop their units.
//! - Shields are counted one level at a time. A running node *holds a shield* when it is
//!   shielded itself or `shielded_below > 0`; it then counts once (`counted`) in the
//!   position it runs in: in `shields` of its nursery unit, or in `shielded_below` of its
//!   parent scope. A nursery unit with `shields > 0` counts once in its nursery node's
//!   `shielded_below`. So a unit or scope body is kept alive by a cancellation exactly
//!   while some running scope inside it is shielded. A change travels up only while it
//!   changes whether the next level holds a shield, and stops at a node that has exited or
//!   a unit that is retired: both took their count away when they ended, so a shield left
//!   behind in a forgotten (`mem::forget`) future can keep at most its own unit alive, and
//!   no sequence of toggles, drops and cancels leaves a count that protects nothing. When
//!   a counter returns to zero the owner is woken so it can drop what the shield held.
//! - `owner` is the waker of the future that polls the node's units (a scope's `run`
//!   future, or the nursery). Cancelling a node wakes its owner; when units below are held
//!   by shields, it also wakes every descendant's owner, so each drops its unshielded units.
//! - `CURRENT` (thread-local) is the position of the code being polled right now. Owners
//!   set it around every poll of a unit and restore it afterwards, also on unwind.
//! - A nursery's node is *deferred* in its first poll ([`Stage::Deferred`]): it runs where
//!   its nursery future is polled from but is linked nowhere (no parent, no entry in the
//!   parent's children, no reference count taken on the parent's unit), since a nursery
//!   that finishes in its first poll never needs the link. It is attached the moment
//!   anything could need it: code in one of its units asks for the position (every scope,
//!   nursery, deadline or `cancelled()` below it goes through [`current_position`] or
//!   [`current_is_cancelled`]), or the nursery suspends. While a unit of a deferred node
//!   is polled, the position around it is kept in `CURRENT`'s `outer` (where the node
//!   attaches); between its units' polls it is the current one. Invariant: only the
//!   innermost node can be deferred — a nursery starting its first poll inside a unit of
//!   a deferred node attaches that node first (the position around it is reachable only
//!   then) — so every node that a walk up the tree can reach is attached.
//! - The cancel epoch (thread-local `CANCEL_EPOCH`) moves whenever any node's effective
//!   cancellation may have changed; a node's `cancel_cache` is valid only while the epoch
//!   is unchanged.
//! - `SPARE_NODES` (thread-local) holds exited nodes for reuse; a node is taken from it
//!   only when nothing else references it.

#![forbid(unsafe_code)]

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::mem::ManuallyDrop;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::instrument::hooks::{self, TaskId};
use crate::instrument::tree::{TaskRecord, TaskRecords};
use crate::rt::state::{RuntimeId, try_with_core, with_core};
use crate::rt::timers::{Expire, TimerAction, TimerKey};
use crate::scope::cancel_scope::CancelReason;
use crate::scope::remote::RemoteState;
use crate::scope::unit::{BODY, UnitCell};
use slab::Slab;

/// Where code runs: a node and, inside a nursery, the unit within it.
#[derive(Debug, Clone)]
pub(crate) struct Position {
    pub(crate) node: Rc<ScopeNode>,
    /// The nursery unit (body or child); `None` when `node` is a scope whose body is the
    /// unit itself.
    pub(crate) unit: Option<Arc<UnitCell>>,
}

/// The thread's position, the one around it, and the cached answer for the position
/// (one thread-local, so that entering and leaving a position is one look-up).
struct TreeLocal {
    /// `ManuallyDrop`, so that the thread-local has no destructor, and its accesses (two
    /// per poll of every unit) need no state check. Nothing is lost: the position is
    /// `None` whenever no poll is under way, in particular when the thread ends (every
    /// poll restores the position it replaced, also on unwind).
    current: RefCell<ManuallyDrop<Option<Position>>>,
    /// While a unit of a deferred node ([`Stage::Deferred`]) is polled: the position that
    /// was current when it was entered, where that node attaches when code inside the
    /// unit asks for its position (moved here and back, never cloned; the value it
    /// replaced waits in the unit's guard). Read only while `current` is such a unit. A
    /// `Cell`, moved in and out and never borrowed, so swapping it checks no flag.
    outer: Cell<ManuallyDrop<Option<Position>>>,
    /// `(epoch, answer)` of [`current_is_cancelled`] for the current position; forgotten
    /// whenever the position changes.
    current_cancelled: Cell<Option<(u64, bool)>>,
}

thread_local! {
    static CURRENT: TreeLocal = const {
        TreeLocal {
            current: RefCell::new(ManuallyDrop::new(None)),
            outer: Cell::new(ManuallyDrop::new(None)),
            current_cancelled: Cell::new(None),
        }
    };
    /// Bumped whenever any node's effective cancellation may have changed (a cancel, a
    /// child cancelled on its own, a shield toggled), so owners can cache their answer
    /// between changes.
    static CANCEL_EPOCH: Cell<u64> = const { Cell::new(0) };
    /// The running nodes that have no parent position (opened in the root future, or in
    /// a system task) while the runtime records its tasks: where a walk of the tree
    /// (`scope/dump.rs`) starts. (Not kept otherwise: two slab operations per request
    /// whose loop runs in the root future.)
    static TOP_NODES: RefCell<Slab<Weak<ScopeNode>>> = const { RefCell::new(Slab::new()) };
    /// Exited nodes offered for reuse (see [`ScopeNode::recycle`]).
    static SPARE_NODES: RefCell<Vec<Rc<ScopeNode>>> = const { RefCell::new(Vec::new()) };
}

fn bump_cancel_epoch() {
    let _ = CANCEL_EPOCH.try_with(|epoch| epoch.set(epoch.get() + 1));
}

/// The current cancel epoch: while it is unchanged, no node's effective cancellation has
/// changed. (Inline: one thread-local load, at every cached cancellation check; a call
/// costs more than the load.)
#[inline]
fn cancel_epoch() -> u64 {
    CANCEL_EPOCH.try_with(Cell::get).unwrap_or(0)
}

/// Makes `pos` the position in `slot` and returns the one it replaces.
#[inline]
fn replace(
    slot: &RefCell<ManuallyDrop<Option<Position>>>,
    pos: Option<Position>,
) -> Option<Position> {
    ManuallyDrop::into_inner(std::mem::replace(
        &mut *slot.borrow_mut(),
        ManuallyDrop::new(pos),
    ))
}

/// Makes `pos` the position in `t` and returns the one it replaces; the cached answer
/// for the old position is forgotten. For a unit of a deferred node, the position replaced
/// becomes `outer` and the `outer` replaced is returned instead (the node remembers it,
/// in `entered_deferred`, for [`pop_current`]: it may be attached before the unit is left).
#[inline]
fn push_current(t: &TreeLocal, pos: Position) -> Option<Position> {
    t.current_cancelled.set(None);
    if pos.node.stage.get() == Stage::Deferred {
        pos.node.entered_deferred.set(true);
        let replaced = replace(&t.current, Some(pos));
        return replace_outer(t, replaced);
    }
    replace(&t.current, Some(pos))
}

/// Undoes [`push_current`] with what it returned; returns the position left.
#[inline]
fn pop_current(t: &TreeLocal, saved: Option<Position>) -> Option<Position> {
    t.current_cancelled.set(None);
    let mut current = t.current.borrow_mut();
    let deferred = current
        .as_ref()
        .is_some_and(|left| left.node.entered_deferred.replace(false));
    let restored = if deferred {
        replace_outer(t, saved)
    } else {
        saved
    };
    ManuallyDrop::into_inner(std::mem::replace(
        &mut *current,
        ManuallyDrop::new(restored),
    ))
}

/// Restores the previous position when dropped (also while unwinding from a panic).
#[derive(Debug)]
pub(crate) struct PositionGuard {
    /// What [`push_current`] returned: the position replaced, or for a unit of a deferred
    /// node the `outer` one replaced.
    saved: Option<Position>,
}

/// Makes `pos` the current position until the guard is dropped.
pub(crate) fn enter(pos: Position) -> PositionGuard {
    // `try_with` (which cannot fail here: the thread-local has no destructor) is small
    // enough to be inlined; `with`, with its panic path, is called out of line.
    let saved = CURRENT
        .try_with(|t| push_current(t, pos))
        .unwrap_or_default();
    PositionGuard { saved }
}

impl PositionGuard {
    /// Restores the previous position now and hands back the unit of the position this
    /// guard entered, so a caller that moved its unit in gets it back without a refcount
    /// change. Guards nest like the polls that make them, so the position being left is
    /// this guard's.
    pub(crate) fn leave(mut self) -> Option<Arc<UnitCell>> {
        let saved = self.saved.take();
        let left = CURRENT
            .try_with(|t| pop_current(t, saved))
            .unwrap_or_default();
        std::mem::forget(self); // restored already; `saved` is taken, nothing leaks
        left.and_then(|pos| pos.unit)
    }
}

impl Drop for PositionGuard {
    fn drop(&mut self) {
        let saved = self.saved.take();
        let _ = CURRENT.try_with(|t| pop_current(t, saved));
    }
}

/// The running nodes opened outside every other (in the root future or a system task):
/// those listed while the runtime records its tasks, and the one enclosing the code being
/// polled (so that a dump without records still shows the tree it is called from).
pub(crate) fn top_nodes() -> Vec<Rc<ScopeNode>> {
    let mut nodes: Vec<Rc<ScopeNode>> = TOP_NODES
        .try_with(|top| {
            top.borrow()
                .iter()
                .filter_map(|(_, n)| n.upgrade())
                .collect()
        })
        .unwrap_or_default();
    let mut outermost = current_position().map(|pos| pos.node);
    while let Some(parent) = outermost.as_ref().and_then(|n| n.parent_position()) {
        outermost = Some(parent.node);
    }
    if let Some(node) = outermost {
        if !nodes.iter().any(|n| Rc::ptr_eq(n, &node)) {
            nodes.push(node);
        }
    }
    nodes
}

impl Position {
    /// The task this position is in: the nursery unit's task, or the task its scope runs
    /// in.
    pub(crate) fn task(&self) -> TaskId {
        let Some(unit) = &self.unit else {
            return self.node.task();
        };
        let index = unit.index.load(std::sync::atomic::Ordering::Relaxed);
        let id = self.node.record(index).map(|r| r.id);
        id.unwrap_or_else(|| self.node.task())
    }

    /// The deadline code at this position runs under: now if the nursery child it is in
    /// was cancelled on its own (`JoinHandle::cancel`), else its node's.
    pub(crate) fn effective_deadline(&self) -> Option<Instant> {
        if self.unit.as_ref().is_some_and(|u| u.is_cancelled()) {
            return Some(deadline_now());
        }
        self.node.effective_deadline()
    }
}

/// The deadline of code that is cancelled already: now (Trio reports -inf).
fn deadline_now() -> Instant {
    try_with_core(|c| c.clock.now()).unwrap_or_else(Instant::now)
}

/// The position of the code being polled (its node attached first, if it was deferred:
/// whoever asks may link something to it or walk up from it).
pub(crate) fn current_position() -> Option<Position> {
    CURRENT
        .try_with(|t| {
            attach_current_if_deferred(t);
            Option::clone(&t.current.borrow())
        })
        .unwrap_or_default()
}

/// Makes `pos` the position in `t.outer` and returns the one it replaces.
#[inline]
fn replace_outer(t: &TreeLocal, pos: Option<Position>) -> Option<Position> {
    ManuallyDrop::into_inner(t.outer.replace(ManuallyDrop::new(pos)))
}

/// The thread's positions, set aside while a runtime started inside a poll of a unit by
/// another executor runs (`rt::state::SET_ASIDE_THREAD_STATE`), and put back when dropped.
struct SetAside {
    current: Option<Position>,
    outer: Option<Position>,
}

fn set_aside_positions() -> Box<dyn std::any::Any> {
    let (current, outer) = CURRENT
        .try_with(|t| {
            t.current_cancelled.set(None);
            (replace(&t.current, None), replace_outer(t, None))
        })
        .unwrap_or_default();
    Box::new(SetAside { current, outer })
}

impl Drop for SetAside {
    fn drop(&mut self) {
        let (current, outer) = (self.current.take(), self.outer.take());
        let _ = CURRENT.try_with(|t| {
            t.current_cancelled.set(None);
            // The run restored every position it entered: `None` is replaced.
            let _ = (replace(&t.current, current), replace_outer(t, outer));
        });
    }
}

/// A copy of `t.outer` (taken out and put back: no code runs in between).
fn outer_position(t: &TreeLocal) -> Option<Position> {
    let outer = ManuallyDrop::into_inner(t.outer.take());
    let copy = outer.clone();
    t.outer.set(ManuallyDrop::new(outer));
    copy
}

/// Attaches the current position's node where it runs, `outer`, if its attachment was
/// deferred: code inside one of its units is asking for the position.
#[inline]
fn attach_current_if_deferred(t: &TreeLocal) {
    let current = t.current.borrow();
    if let Some(pos) = current
        .as_ref()
        .filter(|p| p.node.stage.get() == Stage::Deferred)
    {
        attach_where_deferred(t, &pos.node);
    }
}

#[cold]
fn attach_where_deferred(t: &TreeLocal, node: &Rc<ScopeNode>) {
    node.attach_to(outer_position(t));
}

/// Whether the code being polled is itself being cancelled (it will be dropped at its next
/// suspension).
pub(crate) fn current_is_cancelled() -> bool {
    // Asked at every suspension of a channel or lock operation: cached until the position
    // or the epoch changes.
    let epoch = cancel_epoch();
    CURRENT
        .try_with(|t| {
            if let Some((at, answer)) = t.current_cancelled.get() {
                if at == epoch {
                    return answer;
                }
            }
            attach_current_if_deferred(t);
            let answer = t.current.borrow().as_ref().is_some_and(|pos| {
                pos.unit.as_ref().is_some_and(|u| u.is_cancelled()) || pos.node.is_cancelled()
            });
            // `is_cancelled` may not move the epoch (it only reads), so the answer is valid
            // for the epoch read before it.
            t.current_cancelled.set(Some((epoch, answer)));
            answer
        })
        .unwrap_or(false)
}

/// Where a cancellation comes from: a scope (a `CancelScope` or a nursery), or a nursery
/// child cancelled on its own ([`JoinHandle::cancel`](crate::JoinHandle::cancel)).
#[derive(Debug)]
pub(crate) enum CancelSource {
    Scope(Rc<ScopeNode>),
    Child,
}

impl CancelSource {
    /// Whether the cancellation is `node`'s own.
    pub(crate) fn is(&self, node: &Rc<ScopeNode>) -> bool {
        matches!(self, CancelSource::Scope(source) if Rc::ptr_eq(source, node))
    }
}

/// Lifecycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Created, not yet running: changes are only recorded.
    Idle,
    /// A nursery in its first poll, not yet attached: attaching costs a link in the
    /// parent's position (a locked reference count), which a nursery that finishes in
    /// its first poll never needs. Its parent is where it is polled from (see
    /// [`ScopeNode::start_deferred`]).
    Deferred,
    /// Attached to the tree; its owner polls its units.
    Running,
    /// Finished: further changes do nothing.
    Exited,
}

/// One node of the scope tree (see the module docs for the invariants).
#[derive(Debug)]
pub(crate) struct ScopeNode {
    stage: Cell<Stage>,
    /// One of this node's units is being polled, entered while the node was deferred: the
    /// position around it is in the thread's `outer` until the unit is left.
    entered_deferred: Cell<bool>,
    parent: RefCell<Option<Position>>,
    /// This node's key in its parent's `children`, while attached.
    child_key: Cell<Option<usize>>,
    children: RefCell<Slab<Weak<ScopeNode>>>,
    cancel_called: Cell<bool>,
    reason: RefCell<Option<CancelReason>>,
    caught: Cell<bool>,
    deadline: Cell<Option<Instant>>,
    /// A relative deadline not yet resolved (the node has not started).
    timeout: Cell<Option<Duration>>,
    timer: Cell<Option<TimerKey>>,
    /// The runtime the node runs in (set when it attaches): its timer is in that queue.
    runtime: Cell<Option<RuntimeId>>,
    shield: Cell<bool>,
    /// Whether this node holds a shield and is counted for it in its parent position.
    counted: Cell<bool>,
    /// How many direct sub-positions hold a shield: child scopes running in this scope's
    /// body, or (for a nursery) units with `shields > 0`.
    shielded_below: Cell<u32>,
    /// `(cancel epoch, effectively cancelled)` from the last walk up the tree.
    cancel_cache: Cell<Option<(u64, bool)>>,
    owner: RefCell<Option<Waker>>,
    /// Tasks waiting in [`cancelled`](crate::cancelled) at this node.
    listeners: RefCell<Vec<Waker>>,
    /// Shared with the node's [`RemoteCancel`](crate::RemoteCancel) handles, if any.
    remote: RefCell<Option<Arc<RemoteState>>>,
    /// `remote` is set (checked on every poll of the owner, so kept apart).
    has_remote: Cell<bool>,
    /// The node is a nursery's (the rest are cancel scopes'), for the task tree.
    pub(crate) is_nursery: Cell<bool>,
    /// The node is a nursery that keeps a record of each of its tasks, in `records`.
    keeps_records: Cell<bool>,
    /// A nursery's tasks, for the task tree and the instruments: made the first time the
    /// node is a recording nursery and kept, emptied, when it is recycled (so that an
    /// instrument costs no allocation per nursery); `None` while the runtime never
    /// recorded, so the node's reset is one test.
    pub(crate) records: RefCell<Option<Box<TaskRecords>>>,
}

impl Expire for ScopeNode {
    fn expire(&self) {
        self.timer.set(None);
        self.cancel(CancelReason::Deadline);
    }
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
        // Positions exist on a thread only once a node was made: from then on, a runtime
        // started inside another executor's poll of a unit sets them aside.
        if crate::rt::state::SET_ASIDE_THREAD_STATE.get().is_none() {
            let _ = crate::rt::state::SET_ASIDE_THREAD_STATE.set(set_aside_positions);
        }
        Rc::new(ScopeNode {
            stage: Cell::new(Stage::Idle),
            entered_deferred: Cell::new(false),
            parent: RefCell::new(None),
            child_key: Cell::new(None),
            children: RefCell::new(Slab::default()),
            cancel_called: Cell::new(false),
            reason: RefCell::new(None),
            caught: Cell::new(false),
            deadline: Cell::new(deadline),
            timeout: Cell::new(None),
            timer: Cell::new(None),
            runtime: Cell::new(None),
            shield: Cell::new(shield),
            counted: Cell::new(false),
            shielded_below: Cell::new(0),
            cancel_cache: Cell::new(None),
            owner: RefCell::new(None),
            listeners: RefCell::new(Vec::new()),
            remote: RefCell::new(None),
            has_remote: Cell::new(false),
            is_nursery: Cell::new(false),
            keeps_records: Cell::new(false),
            records: RefCell::new(None),
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

    /// Whether the node is a nursery that keeps a record of each of its tasks.
    pub(crate) fn keeps_records(&self) -> bool {
        self.keeps_records.get()
    }

    /// The record of the nursery's task at `index` (`BODY` or a child's key), if kept.
    pub(crate) fn record(&self, index: usize) -> Option<Ref<'_, TaskRecord>> {
        Ref::filter_map(self.records.borrow(), |r| {
            let r = r.as_deref()?;
            match index {
                BODY => r.body.as_ref(),
                child => r.child(child),
            }
        })
        .ok()
    }

    /// [`record`](Self::record), to update.
    pub(crate) fn record_mut(&self, index: usize) -> Option<RefMut<'_, TaskRecord>> {
        RefMut::filter_map(self.records.borrow_mut(), |r| {
            let r = r.as_deref_mut()?;
            match index {
                BODY => r.body.as_mut(),
                child => r.child_mut(child),
            }
        })
        .ok()
    }

    /// Makes the node keep task records, starting with `body`'s (its nursery's body).
    pub(crate) fn start_records(&self, body: TaskRecord) {
        self.keeps_records.set(true);
        let mut records = self.records.borrow_mut();
        records.get_or_insert_with(Box::default).body = Some(body);
    }

    /// Out of line: only a node that recorded its tasks has records to empty.
    #[cold]
    fn clear_records(&self) {
        if let Some(records) = self.records.borrow_mut().as_mut() {
            records.clear();
        }
    }

    /// Brings a recycled node, exited or never attached and referenced by nothing else,
    /// back to the state `new` gives (the spare nodes here, and a nursery's recycled
    /// parts). Exited nodes have no parent link, timer, owner or listeners left (`detach`
    /// cleared them); children detached themselves before their parent could exit.
    pub(crate) fn reset(&self, deadline: Option<Instant>, shield: bool) {
        self.stage.set(Stage::Idle);
        // Exited nodes let go of their links in `leave_tree`; deferred and idle ones had none.
        debug_assert!(self.parent.borrow().is_none() && self.child_key.get().is_none());
        debug_assert!(self.children.borrow().is_empty());
        self.cancel_called.set(false);
        self.reason.borrow_mut().take();
        self.caught.set(false);
        self.deadline.set(deadline);
        self.timeout.set(None);
        self.timer.set(None);
        self.runtime.set(None);
        self.shield.set(shield);
        self.counted.set(false);
        self.shielded_below.set(0);
        self.cancel_cache.set(None);
        self.owner.borrow_mut().take();
        self.listeners.borrow_mut().clear();
        self.drop_remote();
        self.is_nursery.set(false);
        if self.keeps_records.replace(false) {
            self.clear_records();
        }
    }

    /// Attaches the node below the current position and arms its deadline. Called by the
    /// owner at its first poll.
    pub(crate) fn attach(self: &Rc<Self>) {
        debug_assert_eq!(self.stage.get(), Stage::Idle);
        self.attach_to(current_position());
    }

    /// Starts a nursery's node without attaching it (see [`Stage::Deferred`]): it is
    /// attached where it runs as soon as anything needs the link — code inside one of its
    /// units asks for its position ([`current_position`], [`current_is_cancelled`]: to
    /// open a scope or a nursery below it, to wait for a cancellation, to read a deadline),
    /// or the nursery suspends ([`attach_deferred`](Self::attach_deferred)). Until then it
    /// runs where its owner is being polled: the current position, or, while one of its
    /// units is polled, the one around it.
    ///
    /// So that only the innermost node can be deferred, the node of the current position
    /// is attached first if it is deferred itself (a nursery opened in the first poll of
    /// another): the position around it is reachable only now.
    pub(crate) fn start_deferred(&self) {
        debug_assert_eq!(self.stage.get(), Stage::Idle);
        let _ = CURRENT.try_with(attach_current_if_deferred);
        self.stage.set(Stage::Deferred);
        self.cancel_cache.set(None);
    }

    /// Attaches a deferred node below the current position: its owner is about to suspend,
    /// and from then on cancellations and shields must reach it through the tree.
    #[inline]
    pub(crate) fn attach_deferred(self: &Rc<Self>) {
        if self.stage.get() == Stage::Deferred {
            self.attach_to(current_position());
        }
    }

    /// Calls `f` with the position a deferred node runs in: the current one while its
    /// owner is polled, the one around it while one of its units is (see
    /// [`start_deferred`](Self::start_deferred)).
    fn with_deferred_parent<R>(&self, f: impl FnOnce(Option<&Position>) -> R) -> R {
        debug_assert_eq!(self.stage.get(), Stage::Deferred);
        CURRENT
            .try_with(|t| {
                let current = t.current.borrow();
                match current.as_ref() {
                    Some(pos) if std::ptr::eq(Rc::as_ptr(&pos.node), self) => {
                        f(outer_position(t).as_ref())
                    }
                    pos => f(pos),
                }
            })
            .expect("the position's thread-local has no destructor, so it is always there")
    }

    /// Calls `f` with the position this node runs in: its parent, or where it runs while
    /// deferred.
    fn with_parent<R>(&self, f: impl FnOnce(Option<&Position>) -> R) -> R {
        match self.parent.borrow().as_ref() {
            None if self.stage.get() == Stage::Deferred => self.with_deferred_parent(f),
            parent => f(parent),
        }
    }

    /// One step up: the parent node, and whether the nursery child between them (if any)
    /// was cancelled on its own.
    fn step_up(&self) -> Option<(Rc<ScopeNode>, bool)> {
        self.with_parent(|p| {
            p.map(|p| {
                let child_cancelled = p.unit.as_ref().is_some_and(|u| u.is_cancelled());
                (p.node.clone(), child_cancelled)
            })
        })
    }

    fn attach_to(self: &Rc<Self>, parent: Option<Position>) {
        debug_assert!(matches!(self.stage.get(), Stage::Idle | Stage::Deferred));
        self.stage.set(Stage::Running);
        // The path upwards is about to change.
        self.cancel_cache.set(None);
        match parent {
            Some(parent) => {
                // Polled by its parent, so it runs in the parent's runtime (no look-up).
                self.runtime.set(parent.node.runtime.get());
                let key = parent
                    .node
                    .children
                    .borrow_mut()
                    .insert(Rc::downgrade(self));
                self.child_key.set(Some(key));
                *self.parent.borrow_mut() = Some(parent);
            }
            None => {
                self.runtime.set(try_with_core(|core| core.id));
                // Only where the runtime keeps its task tree: a dump without records finds
                // the tree it is called from through its own position (`scope/dump.rs`).
                if hooks::recording() {
                    self.register_top();
                }
            }
        }
        if self.shield.get() {
            self.update_count();
        }
        self.arm_deadline();
        if hooks::active() {
            let info = self.scope_info();
            hooks::emit("scope_entered", |i| i.scope_entered(&info));
        }
    }

    /// Lists a node opened outside every other among the top nodes, where a dump of the
    /// whole tree (and the deadlock report, which it registers) starts.
    #[cold]
    fn register_top(self: &Rc<Self>) {
        crate::rt::deadlock::register_tree_dump(crate::scope::dump::tree_text);
        let key = TOP_NODES.try_with(|top| top.borrow_mut().insert(Rc::downgrade(self)));
        self.child_key.set(key.ok());
    }

    /// Detaches the node when its owner finishes or is dropped. A deferred node was never
    /// linked anywhere: nothing counts it, waits on it or woke it (each of those attaches
    /// it first), so it has nothing to undo.
    #[inline]
    pub(crate) fn detach(&self) {
        // Inline for the second call (a finished nursery's drop): one test.
        if self.stage.replace(Stage::Exited) == Stage::Running {
            self.leave_tree();
        }
    }

    #[inline(never)]
    fn leave_tree(&self) {
        if hooks::active() {
            let info = self.scope_info();
            hooks::emit("scope_exited", |i| i.scope_exited(&info));
        }
        self.disarm_deadline();
        // Exited: whatever is left below (a forgotten shield) no longer counts above.
        if self.counted.get() {
            self.update_count();
        }
        // The link goes now, not when the node is reused: an exited node kept in a pool
        // must not keep its parent's unit (and so that nursery's pooled parts) referenced,
        // or whether parts can be reused would depend on which nodes happened to attach.
        let parent = self.parent.borrow_mut().take();
        match (parent.as_ref(), self.child_key.take()) {
            (Some(parent), Some(key)) => {
                parent.node.children.borrow_mut().try_remove(key);
            }
            (None, Some(key)) => {
                let _ = TOP_NODES.try_with(|top| top.borrow_mut().try_remove(key));
            }
            (_, None) => {}
        }
        self.owner.borrow_mut().take();
        self.listeners.borrow_mut().clear();
        self.drop_remote();
        drop(parent);
    }

    /// Records the waker of the future that polls this node's units.
    ///
    /// Owners call this at every poll, so it is also where a cancel from another thread
    /// (a [`RemoteCancel`](crate::RemoteCancel)) is applied, on the runtime's thread.
    #[inline]
    pub(crate) fn set_owner(&self, waker: &Waker) {
        // Inline for the common case, the same waker as last time: two compares.
        let same = matches!(&*self.owner.borrow(), Some(w) if w.will_wake(waker));
        if !same {
            self.replace_owner(waker);
        }
        self.check_remote(waker);
    }

    #[inline(never)]
    fn replace_owner(&self, waker: &Waker) {
        let old = self.owner.borrow_mut().replace(waker.clone());
        drop(old); // outside the borrow: dropping a waker may run arbitrary code
    }

    /// Applies a cancel from another thread, for an owner that registers its waker only
    /// when it suspends ([`set_owner`](Self::set_owner) does this too).
    #[inline]
    pub(crate) fn check_remote(&self, waker: &Waker) {
        if self.has_remote.get() {
            self.sync_remote(waker);
        }
    }

    /// Gives the remote handles the owner's waker, and applies a remote cancel.
    #[cold]
    fn sync_remote(&self, waker: &Waker) {
        let remote_cancelled = match &*self.remote.borrow() {
            None => return,
            Some(remote) => {
                remote.set_owner(waker);
                remote.is_cancelled()
            }
        };
        if remote_cancelled {
            self.cancel(CancelReason::Explicit);
        }
    }

    /// Lets go of the remote handles' state: a later remote cancel has nothing to wake.
    #[inline]
    fn drop_remote(&self) {
        // `has_remote` is set exactly while `remote` is: most nodes never had handles.
        if self.has_remote.replace(false) {
            self.forget_remote();
        }
    }

    #[cold]
    fn forget_remote(&self) {
        if let Some(remote) = self.remote.borrow_mut().take() {
            remote.forget_owner();
        }
    }

    /// The state shared with this node's remote handles (made at the first call).
    pub(crate) fn remote_state(&self) -> Arc<RemoteState> {
        let mut remote = self.remote.borrow_mut();
        let state = remote.get_or_insert_with(Default::default).clone();
        self.has_remote.set(true);
        if let Some(owner) = &*self.owner.borrow() {
            state.set_owner(owner);
        }
        state
    }

    fn wake_owner(&self) {
        if let Some(w) = self.owner.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Whether the node is effectively cancelled (`cancel_source().is_some()`), cached
    /// until the cancel epoch moves: owners ask on every poll, the answer rarely changes.
    #[inline]
    pub(crate) fn is_cancelled(self: &Rc<Self>) -> bool {
        // The cached answer inline (a thread-local load and a compare, at every round and
        // child poll of every nursery); the step up the tree out of line.
        match self.cancel_cache.get() {
            Some((seen, cancelled)) if seen == cancel_epoch() => cancelled,
            _ => self.is_cancelled_now(),
        }
    }

    /// [`is_cancelled`](Self::is_cancelled) when the epoch moved since the cached answer.
    #[inline(never)]
    fn is_cancelled_now(self: &Rc<Self>) -> bool {
        let epoch = cancel_epoch();
        // `cancel_source().is_some()`, one level at a time: the parent's answer is usually
        // cached for this epoch already (its owner asked while polling us), so a fresh
        // node costs one step rather than a walk to the root.
        let parent_cancelled = |p: Option<&Position>| {
            p.is_some_and(|p| {
                p.unit.as_ref().is_some_and(|u| u.is_cancelled()) || p.node.is_cancelled()
            })
        };
        let cancelled =
            self.cancel_called.get() || (!self.shield.get() && self.with_parent(parent_cancelled));
        // Every debug run of the tests checks the one-level answer against the walk.
        debug_assert_eq!(cancelled, self.cancel_source().is_some());
        self.cancel_cache.set(Some((epoch, cancelled)));
        cancelled
    }

    /// The nodes from `self` up to the root, `self` first, each with whether the nursery
    /// child it runs in (the unit between it and its parent) was cancelled on its own.
    fn path_up(self: &Rc<Self>) -> impl Iterator<Item = (Rc<ScopeNode>, bool)> {
        let mut next = Some(self.clone());
        std::iter::from_fn(move || {
            let node = next.take()?;
            let (parent, child_cancelled) = match node.step_up() {
                Some((parent, child_cancelled)) => (Some(parent), child_cancelled),
                None => (None, false),
            };
            next = parent;
            Some((node, child_cancelled))
        })
    }

    /// The nodes from `self` up to and including the first shielded one: the nodes whose
    /// deadlines reach `self`.
    fn unshielded_path_up(self: &Rc<Self>) -> impl Iterator<Item = Rc<ScopeNode>> {
        let mut past_shield = false;
        self.path_up()
            .map(|(node, _)| node)
            .take_while(move |node| {
                let take = !past_shield;
                past_shield = node.shield.get();
                take
            })
    }

    /// The outermost cancellation on the unshielded path from `self` upwards.
    pub(crate) fn cancel_source(self: &Rc<Self>) -> Option<CancelSource> {
        // A plain loop rather than iterator adaptors: owners ask this whenever the cancel
        // epoch has moved, on the per-request path.
        let mut source = None;
        let mut node = self.clone();
        loop {
            if node.cancel_called.get() {
                source = Some(CancelSource::Scope(node.clone()));
            }
            if node.shield.get() {
                return source;
            }
            let Some((parent, child_cancelled)) = node.step_up() else {
                return source;
            };
            if child_cancelled {
                source = Some(CancelSource::Child);
            }
            node = parent;
        }
    }

    /// Whether anything from here to the root has been cancelled, looking through shields.
    pub(crate) fn any_ancestor_cancelled(self: &Rc<Self>) -> bool {
        self.path_up()
            .any(|(node, child_cancelled)| node.cancel_called.get() || child_cancelled)
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        if self.cancel_called.get() {
            return;
        }
        // Recorded in every stage (as Trio's `cancel_called`); acted on only while running.
        self.cancel_called.set(true);
        bump_cancel_epoch();
        // The reason is kept before the hook runs: a hook is user code and may dump the
        // tree, which must show the scope cancelled *with* its reason (a dump taken in
        // `scope_cancelled` showed it without; tests/adversarial_instrument.rs). Cloned only
        // for an instrument.
        let announce = hooks::active().then(|| reason.clone());
        *self.reason.borrow_mut() = Some(reason);
        if let Some(reason) = announce {
            let info = self.scope_info();
            hooks::emit("scope_cancelled", |i| i.scope_cancelled(&info, &reason));
        }
        if self.stage.get() != Stage::Running {
            return;
        }
        self.disarm_deadline();
        self.wake_owner();
        self.wake_listeners();
        // Without shields inside, the owner drops the whole body at once and nobody below
        // needs to act. With shields, every owner below must drop its own unshielded units.
        if self.shielded_below.get() > 0 {
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

    fn arm_deadline(self: &Rc<Self>) {
        if self.deadline.get().is_none() && self.timeout.get().is_none() {
            return;
        }
        with_core(|core| {
            if let Some(timeout) = self.timeout.take() {
                // Resolved when the node starts (Trio's relative deadlines). Too long for
                // `Instant` (`Duration::MAX`) means no deadline at all.
                self.deadline.set(core.clock.now().checked_add(timeout));
            }
            let Some(deadline) = self.deadline.get() else {
                return;
            };
            if self.cancel_called.get() {
                return;
            }
            let reading = core.clock.recent();
            if reading >= deadline {
                self.cancel(CancelReason::Deadline);
            } else {
                // Armed with the reading just compared against (the timer's slack counts
                // from it), not a second look-up.
                let key = core.timers.borrow_mut().arm_at(
                    deadline,
                    Some(reading),
                    TimerAction::Expire(Rc::downgrade(self) as Weak<dyn Expire>),
                );
                self.timer.set(Some(key));
            }
        });
    }

    fn disarm_deadline(&self) {
        if let Some(key) = self.timer.take() {
            try_with_core(|core| core.timers.borrow_mut().disarm(key));
        }
    }

    /// Whether this node holds a shield that protects something: it runs, and it is
    /// shielded itself or something below it is.
    pub(crate) fn holds_shield(&self) -> bool {
        self.stage.get() == Stage::Running && (self.shield.get() || self.shielded_below.get() > 0)
    }

    /// Brings this node's count in its parent position in line with `holds_shield`, and
    /// carries the change up as far as it changes anything (see the module docs).
    fn update_count(&self) {
        let holds = self.holds_shield();
        if self.counted.replace(holds) == holds {
            return;
        }
        let Some(parent) = self.parent.borrow().clone() else {
            return;
        };
        match &parent.unit {
            Some(unit) => parent.node.count_in_unit(unit, holds),
            None => parent.node.count_below(holds),
        }
    }

    /// Counts a shield held (`true`) or released (`false`) in one of this nursery's units.
    fn count_in_unit(&self, unit: &UnitCell, add: bool) {
        if unit.is_retired() {
            return; // its count left this node when it retired
        }
        let changed = if add {
            unit.add_shield()
        } else {
            unit.remove_shield()
        };
        if changed {
            if !add && unit.is_cancelled() {
                // A child cancelled on its own, no longer shielded: it is dropped at its
                // next suspension, so it must be polled.
                unit.schedule();
            }
            self.count_below(add);
        }
    }

    /// Counts a shield held or released directly below this node.
    fn count_below(&self, add: bool) {
        if self.stage.get() == Stage::Exited {
            return; // its count left the parent when it exited
        }
        let count = self.shielded_below.get();
        if add {
            self.shielded_below.set(count + 1);
        } else {
            self.shielded_below.set(count - 1);
            if count == 1 {
                // What the shield held may now be dropped.
                self.wake_owner();
            }
        }
        self.update_count();
    }

    /// Cancels one child of this nursery on its own (not the nursery): the child's unit
    /// counts as a cancelled level between this node and the scopes inside the child. The
    /// child is polled once more and dropped at its next suspension; scopes inside it that
    /// are held by a shield are woken so that their owners drop what is not shielded.
    pub(crate) fn cancel_child(&self, unit: &UnitCell) {
        if unit.is_cancelled() || unit.is_retired() {
            return;
        }
        unit.set_cancelled();
        bump_cancel_epoch();
        unit.schedule();
        if unit.is_shielded() {
            let inside: Vec<Rc<ScopeNode>> = self
                .children
                .borrow()
                .iter()
                .filter_map(|(_, child)| child.upgrade())
                .filter(|child| {
                    child.parent.borrow().as_ref().is_some_and(|p| {
                        p.unit
                            .as_ref()
                            .is_some_and(|u| std::ptr::eq(Arc::as_ptr(u), unit))
                    })
                })
                .collect();
            for node in inside {
                node.wake_owner();
                node.wake_listeners();
                node.wake_descendants();
            }
        }
    }

    /// [`cancel_child`](Self::cancel_child) for a child whose first poll is about to run
    /// (it is being polled: no need to queue it).
    pub(crate) fn cancel_child_at_first_poll(&self, unit: &UnitCell) {
        unit.set_cancelled();
        bump_cancel_epoch();
    }

    /// Retires `unit` of this nursery (its future is gone): whatever shield is still
    /// counted in it (only a forgotten one can be) stops counting here.
    #[inline]
    pub(crate) fn retire_unit(&self, unit: &UnitCell) {
        if !unit.retire() && unit.is_shielded() {
            self.count_below(false);
        }
    }

    /// How many direct sub-positions of this node hold a shield (0: nothing inside is
    /// shielded).
    pub(crate) fn shields_inside(&self) -> u32 {
        self.shielded_below.get()
    }

    pub(crate) fn stage(&self) -> Stage {
        self.stage.get()
    }

    pub(crate) fn cancel_called(&self) -> bool {
        self.cancel_called.get()
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.reason.borrow().clone()
    }

    /// Whether this node's owner caught the cancellation (see the module docs).
    pub(crate) fn caught(&self) -> bool {
        self.caught.get()
    }

    pub(crate) fn set_caught(&self, caught: bool) {
        self.caught.set(caught);
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get()
    }

    pub(crate) fn shield(&self) -> bool {
        self.shield.get()
    }

    /// The node's id for instruments: its address, unique among live nodes (a pooled node
    /// is reused only after it exited).
    pub(crate) fn scope_id(&self) -> u64 {
        std::ptr::from_ref(self) as usize as u64
    }

    /// What an instrument is told about this node.
    #[cold]
    pub(crate) fn scope_info(&self) -> hooks::ScopeInfo {
        hooks::ScopeInfo {
            id: self.scope_id(),
            // Within the same task only: a position in a nursery's unit is in a task of
            // that nursery, which is then this scope's parent.
            parent: self
                .parent
                .borrow()
                .as_ref()
                .filter(|p| p.unit.is_none())
                .map(|p| p.node.scope_id()),
            task: self.task(),
            nursery: self.is_nursery.get(),
            deadline: self.deadline.get(),
            shield: self.shield.get(),
        }
    }

    /// The task this node runs in: the parent of a nursery's tasks. Found by walking up
    /// (asked only by instruments and the task tree, so nothing is kept for it).
    pub(crate) fn task(&self) -> TaskId {
        self.with_parent(|parent| parent.map_or(TaskId::ROOT, Position::task))
    }

    /// The running nodes directly below this one, each with the nursery unit it runs in
    /// (`None` in a scope's body).
    pub(crate) fn running_children(&self) -> Vec<(Rc<ScopeNode>, Option<usize>)> {
        self.children
            .borrow()
            .iter()
            .filter_map(|(_, child)| child.upgrade())
            .map(|child| {
                let unit = child.parent_unit();
                (child, unit)
            })
            .collect()
    }

    fn parent_unit(&self) -> Option<usize> {
        let parent = self.parent.borrow();
        let unit = parent.as_ref()?.unit.as_ref()?;
        Some(unit.index.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The position this node runs in.
    pub(crate) fn parent_position(&self) -> Option<Position> {
        self.with_parent(|parent| parent.cloned())
    }

    /// Registers a task waiting in [`cancelled`](crate::cancelled) at this node, once per
    /// waker.
    pub(crate) fn add_listener(&self, waker: &Waker) {
        let mut listeners = self.listeners.borrow_mut();
        if !listeners.iter().any(|w| w.will_wake(waker)) {
            listeners.push(waker.clone());
        }
    }

    pub(crate) fn set_shield(&self, shield: bool) {
        if self.shield.replace(shield) == shield {
            return;
        }
        bump_cancel_epoch();
        if self.stage.get() == Stage::Running {
            self.update_count();
            // Dropping a shield may expose this node to an outer cancellation.
            self.wake_owner();
        }
    }

    /// A relative deadline for a node that has not started: `timeout` after it attaches.
    pub(crate) fn set_timeout(&self, timeout: Duration) {
        debug_assert_eq!(self.stage.get(), Stage::Idle);
        self.deadline.set(None);
        self.timeout.set(Some(timeout));
    }

    /// # Panics
    ///
    /// Panics when the node runs in a runtime other than the current one (or in one that
    /// has finished): its timer belongs to the runtime it runs in.
    #[track_caller]
    pub(crate) fn set_deadline(self: &Rc<Self>, deadline: Option<Instant>) {
        if self.stage.get() == Stage::Running {
            let current = try_with_core(|core| core.id);
            assert!(
                current == self.runtime.get(),
                "this CancelScope is running in another trellis runtime (or in one that has \
                 finished), so its deadline cannot be moved from here; a scope, like its \
                 timer, belongs to the runtime it runs in"
            );
        }
        self.deadline.set(deadline);
        self.timeout.set(None);
        if self.stage.get() == Stage::Running {
            self.disarm_deadline();
            self.arm_deadline();
        }
    }

    pub(crate) fn effective_deadline(self: &Rc<Self>) -> Option<Instant> {
        if self.is_cancelled() {
            return Some(deadline_now());
        }
        self.unshielded_path_up()
            .filter_map(|node| node.deadline.get())
            .min()
    }
}
