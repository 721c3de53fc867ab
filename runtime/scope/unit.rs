//! Units: the separately woken futures of a task group (a nursery's body and children),
//! their wakers, and the ready queue the wakers push to.
//!
//! # State
//!
//! - [`ReadyQueue`] holds the indices of the units (children, and [`BODY`]) whose wakers
//!   fired, and the waker of whoever polls the nursery. It sits behind a `Mutex` because
//!   wakers are `Send + Sync` and may fire on any thread.
//! - A [`UnitCell`] is one unit's waker. Its `queued` flag is set when it is pushed and
//!   cleared just before the unit is polled, so a unit is in the queue at most once and a
//!   wake during its own poll re-queues it. Only queued units are polled: a wake costs one
//!   poll, however many children sleep.
//! - The parent is woken only when the queue goes from empty to non-empty.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

/// The ready-queue index of the nursery body.
pub(crate) const BODY: usize = usize::MAX;

/// The ready queue shared by a nursery and the wakers of its units.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    inner: Mutex<QueueInner>,
}

#[derive(Debug, Default)]
struct QueueInner {
    ready: VecDeque<usize>,
    /// The waker of whoever polls the nursery.
    parent: Option<Waker>,
}

impl ReadyQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        // A panic never happens while the lock is held; recover rather than propagate.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, index: usize) {
        let mut q = self.lock();
        q.ready.push_back(index);
        if q.ready.len() == 1 {
            if let Some(parent) = &q.parent {
                // Woken under our lock, by reference (no waker clone). Locks are only ever
                // taken child first, then parent (a wake travels up the tree), and the
                // parent's waker never reaches this queue, so this cannot deadlock.
                parent.wake_by_ref();
            }
        }
    }

    /// Forgets every queued index and the parent's waker, for a queue being reused.
    pub(crate) fn clear(&self) {
        let mut q = self.lock();
        q.ready.clear();
        q.parent = None;
    }

    /// Moves up to `max` ready indices into `batch` and records the parent's waker, under
    /// one lock. Returns whether indices are left in the queue.
    pub(crate) fn pop_batch(&self, batch: &mut Vec<usize>, max: usize, parent: &Waker) -> bool {
        let mut q = self.lock();
        match &q.parent {
            Some(w) if w.will_wake(parent) => {}
            _ => q.parent = Some(parent.clone()),
        }
        while batch.len() < max {
            match q.ready.pop_front() {
                Some(index) => batch.push(index),
                None => return false,
            }
        }
        !q.ready.is_empty()
    }
}

/// One unit of a nursery (its body or a child): its waker, and the count of shields held
/// inside it (maintained by the scope tree).
#[derive(Debug)]
pub(crate) struct UnitCell {
    /// The unit's slot in the nursery (changes when a spare cell is reused).
    pub(crate) index: AtomicUsize,
    pub(crate) queued: AtomicBool,
    /// Scopes running directly in this unit that hold a shield.
    pub(crate) shields: AtomicU32,
    /// The unit's future is gone; its shield count no longer reaches the nursery.
    pub(crate) retired: AtomicBool,
    /// This child alone was cancelled ([`JoinHandle::cancel`](crate::JoinHandle::cancel)):
    /// it is dropped at its next suspension, like a unit of a cancelled nursery.
    cancelled: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl UnitCell {
    pub(crate) fn new(index: usize, queue: &Arc<ReadyQueue>) -> Arc<UnitCell> {
        Arc::new(UnitCell {
            index: AtomicUsize::new(index),
            queued: AtomicBool::new(false),
            shields: AtomicU32::new(0),
            retired: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            queue: queue.clone(),
        })
    }

    /// Makes a spare cell (referenced by nothing else) the cell of a new unit at `index`.
    pub(crate) fn recycle(&self, index: usize) {
        self.index.store(index, Ordering::Relaxed);
        self.queued.store(false, Ordering::Relaxed);
        self.shields.store(0, Ordering::Relaxed);
        self.retired.store(false, Ordering::Relaxed);
        self.cancelled.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Marks the child cancelled (the scope tree makes it known: see
    /// `ScopeNode::cancel_child`).
    pub(crate) fn set_cancelled(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Queues the unit to be polled (what its waker does).
    pub(crate) fn schedule(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.index.load(Ordering::Relaxed));
        }
    }

    pub(crate) fn is_shielded(&self) -> bool {
        self.shields.load(Ordering::Relaxed) > 0
    }
}

impl Wake for UnitCell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}
