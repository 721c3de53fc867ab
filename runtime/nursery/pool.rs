//! The parts of a nursery that can be recycled, and the thread-local pool they go back to.
//!
//! # Invariant
//!
//! [`Parts`] bundle what a nursery allocates regardless of its types (queue, body cell,
//! spare cells); finished nurseries return them to a thread-local pool. Parts or a cell are
//! reused only when nothing outside references them (checked with `Arc::strong_count`),
//! so a stale waker can never reach the next user.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::sync::Arc;
use std::task::Waker;

use crate::scope::unit::{BODY, ReadyQueue, UnitCell};

/// The parts of a nursery that depend neither on its lifetimes nor on its error type,
/// recycled through a thread-local pool: opening a nursery is on the per-request path, and
/// these are most of its allocations.
pub(crate) struct Parts {
    pub(crate) queue: Arc<ReadyQueue>,
    pub(crate) body_unit: Arc<UnitCell>,
    pub(crate) body_waker: Waker,
    pub(crate) spare_units: Vec<(Arc<UnitCell>, Waker)>,
    pub(crate) batch: Vec<usize>,
}

thread_local! {
    /// Parts of finished nurseries, put back when their nursery future is dropped
    /// (while that future still holds clones) and checked for exclusive ownership when taken.
    static SPARE_PARTS: RefCell<Vec<Parts>> = const { RefCell::new(Vec::new()) };
}

impl Parts {
    /// Parts for a new nursery: recycled ones that nothing else references, or new ones.
    pub(crate) fn take() -> Parts {
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
            None => {
                let queue = Arc::new(ReadyQueue::new());
                let body_unit = UnitCell::new(BODY, &queue);
                let body_waker = Waker::from(body_unit.clone());
                Parts {
                    queue,
                    body_unit,
                    body_waker,
                    spare_units: Vec::new(),
                    batch: Vec::new(),
                }
            }
        }
    }

    pub(crate) fn put_back(parts: Parts) {
        const MAX_SPARE_PARTS: usize = 64;
        // During thread teardown the pool may be gone; the parts are then simply dropped.
        let _ = SPARE_PARTS.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < MAX_SPARE_PARTS {
                pool.push(parts);
            }
        });
    }

    /// Whether nothing outside these parts (a leaked waker, a leaked nursery handle) still
    /// references its queue or body cell: otherwise a stale wake could reach the next
    /// nursery to use it.
    fn is_exclusive(&self) -> bool {
        Arc::strong_count(&self.queue) == 2 + self.spare_units.len()
            && Arc::strong_count(&self.body_unit) == 2
    }

    fn reset(self) -> Parts {
        self.queue.clear();
        self.body_unit.recycle(BODY);
        self
    }
}
