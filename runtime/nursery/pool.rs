//! The parts of a nursery that can be recycled, and the thread-local pool they go back to.
//!
//! # Invariant
//!
//! [`Parts`] bundle what a nursery allocates regardless of its types (its scope-tree node,
//! the ready queue, the body's cell and waker, spare cells, the batch) in one box;
//! finished nurseries return the box to a thread-local pool. A box is reused only when
//! nothing outside it references its node, queue or body cell (checked with the strong
//! and weak counts), so a stale waker or position can never reach the next user.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use crate::scope::cancel_scope::ScopeNode;
use crate::scope::unit::{BODY, ReadyQueue, UnitCell};

/// The parts of a nursery that depend neither on its lifetimes nor on its error type,
/// recycled through a thread-local pool: opening a nursery is on the per-request path, and
/// these are most of its allocations. Boxed, so that taking, keeping and giving them back
/// moves one pointer.
pub(crate) struct Parts {
    /// The nursery's node; `Shared` holds a clone (an `Rc`: no locked instruction).
    pub(crate) node: Rc<ScopeNode>,
    pub(crate) queue: Arc<ReadyQueue>,
    /// `None` while a nursery uses the parts: its future holds the cell, to move it into
    /// the position at each poll of the body rather than clone it.
    pub(crate) body_unit: Option<Arc<UnitCell>>,
    pub(crate) body_waker: Waker,
    /// Cells of finished children that nobody else references, reused for new children
    /// so that a spawn costs no waker allocation in the steady state.
    pub(crate) spare_units: RefCell<Vec<(Arc<UnitCell>, Waker)>>,
    /// The indices being polled in the current round (kept to reuse its allocation).
    pub(crate) batch: RefCell<Vec<usize>>,
}

thread_local! {
    /// Parts of finished nurseries, put back when their nursery future is dropped
    /// (while that nursery's state still holds a clone of the node) and checked for
    /// exclusive ownership when taken. Boxes, not `Parts` (clippy's `vec_box`): a nursery
    /// keeps the box it took, so taking and giving back move a pointer, not the parts.
    #[allow(clippy::vec_box)]
    static SPARE_PARTS: RefCell<Vec<Box<Parts>>> = const { RefCell::new(Vec::new()) };
}

impl Parts {
    /// Parts for a new nursery: recycled ones that nothing else references, or new ones.
    pub(crate) fn take() -> Box<Parts> {
        // `try_with` (inlined) rather than `with` (called out of line for its panic path);
        // during thread teardown the pool is gone and the parts are new.
        let recycled = SPARE_PARTS
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                while let Some(parts) = pool.pop() {
                    if parts.is_exclusive() {
                        return Some(parts);
                    }
                }
                None
            })
            .ok()
            .flatten();
        match recycled {
            Some(parts) => parts.reset(),
            None => Parts::new(),
        }
    }

    #[cold]
    fn new() -> Box<Parts> {
        let queue = Arc::new(ReadyQueue::new());
        let body_unit = UnitCell::new(BODY, &queue);
        let body_waker = Waker::from(body_unit.clone());
        Box::new(Parts {
            node: ScopeNode::new(None, false),
            queue,
            body_unit: Some(body_unit),
            body_waker,
            spare_units: RefCell::default(),
            batch: RefCell::default(),
        })
    }

    /// Offers parts for reuse; the body's cell must be back in them.
    pub(crate) fn put_back(parts: Box<Parts>) {
        const MAX_SPARE_PARTS: usize = 64;
        debug_assert!(parts.body_unit.is_some());
        // During thread teardown the pool may be gone; the parts are then simply dropped.
        let _ = SPARE_PARTS.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < MAX_SPARE_PARTS {
                pool.push(parts);
            }
        });
    }

    /// Whether nothing outside these parts (a leaked waker, a leaked nursery handle, a
    /// position kept by a leaked scope) still references the node, the queue or the body
    /// cell: otherwise a stale wake could reach the next nursery to use them. (Every cell,
    /// the body's and the spare ones, holds one reference to the queue.)
    fn is_exclusive(&self) -> bool {
        let spare = self.spare_units.borrow().len();
        Rc::strong_count(&self.node) == 1
            && Rc::weak_count(&self.node) == 0
            && Arc::strong_count(&self.queue) == 2 + spare
            && self
                .body_unit
                .as_ref()
                .is_some_and(|unit| Arc::strong_count(unit) == 2)
    }

    /// Makes exclusive parts as new. A wake from a waker dropped since the parts went back
    /// may have queued an index: the queue is emptied.
    fn reset(self: Box<Self>) -> Box<Parts> {
        self.node.reset(None, false);
        self.queue.clear();
        if let Some(unit) = &self.body_unit {
            unit.recycle(BODY);
        }
        self
    }
}
