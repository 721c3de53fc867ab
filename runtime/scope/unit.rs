//! Units: the separately woken futures of a task group (a nursery's body and children),
//! their wakers, and the ready queue the wakers push to.
//!
//! # State
//!
//! - [`ReadyQueue`] holds the indices of the units (children, and [`BODY`]) whose wakers
//!   fired, and the waker of whoever polls the nursery (its *parent*). It sits behind a
//!   `Mutex` because wakers are `Send + Sync` and may fire on any thread. `len` and
//!   `has_parent` mirror the locked state (written under the lock, read without it), so
//!   the nursery can see that there is nothing to pop, or nothing to forget, without
//!   taking the lock: an empty nursery, or a poll in which nothing was woken, takes no lock.
//! - A [`UnitCell`] is one unit's waker. Its `queued` flag is set when it is pushed and
//!   cleared just before the unit is polled, so a unit is in the queue at most once and a
//!   wake during its own poll re-queues it. Only queued units are polled: a wake costs one
//!   poll, however many children sleep.
//! - The parent is woken only when the queue goes from empty to non-empty, and only once
//!   it is registered: the nursery registers it ([`ReadyQueue::park`]) just before it
//!   returns `Pending`, and forgets it when it finishes. A push before the registration
//!   wakes nobody, which is why `park` reports whether something is queued.
//! - `shields`, `retired` and `cancelled` of a cell are only read and written on the
//!   runtime's thread (by the scope tree and the nursery); they are atomics only because
//!   the cell is a waker, and are updated with a load and a store, never a locked
//!   read-modify-write.

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
    /// `inner.ready.len()`, stored under the lock.
    len: AtomicUsize,
    /// `inner.parent.is_some()`, stored under the lock.
    has_parent: AtomicBool,
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
        self.len.store(q.ready.len(), Ordering::Release);
        if q.ready.len() == 1 {
            if let Some(parent) = &q.parent {
                // Woken under our lock, by reference (no waker clone). Locks are only ever
                // taken child first, then parent (a wake travels up the tree), and the
                // parent's waker never reaches this queue, so this cannot deadlock.
                parent.wake_by_ref();
            }
        }
    }

    /// Forgets every queued index and the parent's waker: for a nursery that finished,
    /// and for a queue being reused.
    pub(crate) fn clear(&self) {
        if self.len.load(Ordering::Acquire) == 0 && !self.has_parent.load(Ordering::Acquire) {
            return;
        }
        let parent = {
            let mut q = self.lock();
            q.ready.clear();
            self.len.store(0, Ordering::Release);
            self.has_parent.store(false, Ordering::Release);
            q.parent.take()
        };
        drop(parent); // outside the lock: dropping a waker may run arbitrary code
    }

    /// Moves up to `max` ready indices into `batch`, under one lock (none when the queue
    /// is empty). Returns whether indices are left in the queue.
    pub(crate) fn pop_batch(&self, batch: &mut Vec<usize>, max: usize) -> bool {
        // A push racing with this look is not lost: it wakes the registered parent, or,
        // before there is one, `park` sees it.
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut q = self.lock();
        while batch.len() < max {
            match q.ready.pop_front() {
                Some(index) => batch.push(index),
                None => break,
            }
        }
        self.len.store(q.ready.len(), Ordering::Release);
        !q.ready.is_empty()
    }

    /// Registers `parent` as the waker to wake when a unit becomes ready, just before the
    /// nursery returns `Pending`. `registered` is the nursery's note of the waker it last
    /// registered (compared as [`Waker::will_wake`] does, without the lock); when it is
    /// still the same, no lock is taken. Returns whether units are queued (pushed before
    /// the registration, so they woke nobody): the nursery must then be polled again.
    pub(crate) fn park(&self, parent: &Waker, registered: &std::cell::Cell<WakerKey>) -> bool {
        let key = WakerKey::of(parent);
        if registered.get() != key {
            let old = {
                let mut q = self.lock();
                self.has_parent.store(true, Ordering::Release);
                q.parent.replace(parent.clone())
            };
            drop(old);
            registered.set(key);
        }
        self.len.load(Ordering::Acquire) > 0
    }
}

/// What makes two wakers the same for [`Waker::will_wake`]: the data pointer and the
/// vtable. Kept as plain addresses, never turned back into pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WakerKey(usize, usize);

impl WakerKey {
    fn of(waker: &Waker) -> WakerKey {
        WakerKey(
            waker.data() as usize,
            std::ptr::from_ref(waker.vtable()) as usize,
        )
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
    shields: AtomicU32,
    /// The unit's future is gone; its shield count no longer reaches the nursery.
    retired: AtomicBool,
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

    /// Counts one more shield held inside the unit; returns whether it is the first.
    /// (Runtime thread only: a load and a store, see the module docs.)
    pub(crate) fn add_shield(&self) -> bool {
        let count = self.shields.load(Ordering::Relaxed);
        self.shields.store(count + 1, Ordering::Relaxed);
        count == 0
    }

    /// Counts one shield fewer; returns whether it was the last.
    pub(crate) fn remove_shield(&self) -> bool {
        let count = self.shields.load(Ordering::Relaxed);
        self.shields.store(count - 1, Ordering::Relaxed);
        count == 1
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the unit retired; returns whether it already was.
    pub(crate) fn retire(&self) -> bool {
        let was = self.is_retired();
        self.retired.store(true, Ordering::Relaxed);
        was
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
