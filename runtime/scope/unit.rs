//! Units: the separately woken futures of a task group (a nursery's body and children),
//! their wakers, and the ready queue the wakers push to.
//!
//! # State
//!
//! - [`ReadyQueue`] holds the indices of the units (children, and [`BODY`]) whose wakers
//!   fired, and the waker of whoever polls the nursery (its *parent*), in two halves:
//!   - the **local list**, for wakes on the thread that owns the queue (almost all of
//!     them): a plain `Vec` in that thread's `LOCAL_LISTS`, under a `RefCell`, so
//!     such a wake takes no lock and no locked instruction;
//!   - the **remote list**, behind a `Mutex`, for wakes from other threads (wakers are
//!     `Send + Sync`); `remote_len` and `has_remote_parent` mirror it (written under the
//!     lock, read without it), so the nursery sees that it is empty without locking;
//!   - before the local list, **one slot** in the queue itself (`local_one`, owner's
//!     thread only, loads and stores): an index pushed while nothing is queued locally
//!     and no parent needs waking (a spawn, a wake during the nursery's own poll) goes
//!     there, so the common push and pop of a per-request nursery skip the thread-local
//!     look-up. It is filled only while the local list is empty, so it is always the
//!     oldest local index and FIFO order holds; `local_len` counts it.
//!
//!   Each half has its own copy of the parent waker, since a remote waker cannot reach the
//!   owner's thread-local state. A queue is made on the thread whose nurseries use it (the
//!   pool of parts is thread-local) and stays there.
//! - A [`UnitCell`] is one unit's waker. Its `queued` flag is set when it is pushed and
//!   cleared just before the unit is polled, so a unit is in the queue at most once and a
//!   wake during its own poll re-queues it. Only queued units are polled: a wake costs one
//!   poll, however many children sleep. On the owner's thread the flag is tested and set
//!   with a load and a store: a remote wake racing with it can queue the unit twice, which
//!   costs one spurious poll and loses nothing.
//! - The parent is woken only when a list goes from empty to non-empty, only once it is
//!   registered (the nursery registers it with [`ReadyQueue::park`] just before it returns
//!   `Pending`), and not by a local wake while the nursery is inside its own poll
//!   (`polling`: it looks at the queue again before it suspends). `local_len`,
//!   `local_parent` and `polling` live in the queue itself (atomics used with loads and
//!   stores, on the owner's thread only), so questions that find nothing need no
//!   thread-local look-up. A wake that woke nobody is seen by `park`, which reports
//!   whether something is queued.
//! - `shields`, `retired` and `cancelled` of a cell are only read and written on the
//!   runtime's thread (by the scope tree and the nursery); they are atomics only because
//!   the cell is a waker, and are updated with a load and a store, never a locked
//!   read-modify-write.
//!
//! # Invariants
//!
//! - No waker is woken, cloned into user code or dropped while `LOCAL_LISTS` is borrowed
//!   (either may run arbitrary code, which may wake or drop another queue): wakers are
//!   moved out first.
//! - A queue's local list exists from its creation until its drop on the owner's thread.
//!   A queue dropped on another thread (its last reference was a waker there) leaves its
//!   entry behind, marked by the queue's serial so that nothing else ever reads it.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

use slab::Slab;

/// The ready-queue index of the nursery body.
pub(crate) const BODY: usize = usize::MAX;

/// `ReadyQueue::local_one` holds no index (no child key comes near it, and it is not
/// [`BODY`]).
const NO_INDEX: usize = usize::MAX - 1;

/// Serials of threads and queues: unique for the life of the process (0 is never given).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// What a thread keeps for the queues it owns (one thread-local, so a wake reaches it
/// with one look-up).
struct ThreadLists {
    /// This thread's serial, 0 until first asked.
    serial: Cell<u64>,
    /// The local lists of the queues this thread owns. `ManuallyDrop`, so that the
    /// thread-local has no destructor and its accesses (at every wake and every round of
    /// a nursery) need no state check; `DROP_LISTS_AT_EXIT`, registered when the first
    /// list is made, drops the lists (their parent wakers) when the thread ends.
    lists: RefCell<ManuallyDrop<Slab<LocalList>>>,
}

/// The destructor of `LOCAL_LISTS` (see `ThreadLists::lists`).
struct DropListsAtExit;

impl Drop for DropListsAtExit {
    fn drop(&mut self) {
        // Taken out first and dropped outside the borrow (the invariants: dropping a waker
        // may run arbitrary code). A queue dropped after this finds no list to remove.
        let lists = LOCAL_LISTS.try_with(|local| {
            std::mem::replace(
                &mut *local.lists.borrow_mut(),
                ManuallyDrop::new(Slab::new()),
            )
        });
        if let Ok(lists) = lists {
            drop(ManuallyDrop::into_inner(lists));
        }
    }
}

thread_local! {
    static LOCAL_LISTS: ThreadLists = const {
        ThreadLists {
            serial: Cell::new(0),
            lists: RefCell::new(ManuallyDrop::new(Slab::new())),
        }
    };
    static DROP_LISTS_AT_EXIT: DropListsAtExit = const { DropListsAtExit };
}

impl ThreadLists {
    fn serial(&self) -> u64 {
        if self.serial.get() == 0 {
            self.serial.set(NEXT_SERIAL.fetch_add(1, Ordering::Relaxed));
        }
        self.serial.get()
    }
}

/// This thread's serial (0 during thread teardown, which matches no queue).
fn thread_serial() -> u64 {
    LOCAL_LISTS.try_with(ThreadLists::serial).unwrap_or(0)
}

/// The owner's-thread half of a ready queue.
#[derive(Debug)]
struct LocalList {
    /// The serial of the queue this list belongs to.
    queue: u64,
    /// In wake order from `head` on. A `Vec` rather than a `VecDeque`: a nursery almost
    /// always takes the whole list at once (its budget is larger than a round), and a
    /// push stays small enough to be inlined at every wake. A partial take moves `head`;
    /// the taken front is cut off once it is more than half the list, so a long queue
    /// costs amortised O(1) per index.
    ready: Vec<usize>,
    head: usize,
    parent: Option<Waker>,
}

impl LocalList {
    /// How many indices are queued.
    fn len(&self) -> usize {
        self.ready.len() - self.head
    }

    /// Moves the first queued indices into `batch` until it holds `max`.
    fn take_into(&mut self, batch: &mut Vec<usize>, max: usize) {
        // Copied, not swapped with an empty batch: a swap would move the buffers'
        // capacities between the pooled lists and batches, so that how often a later
        // nursery's pushes allocate would depend on its predecessors.
        let take = max.saturating_sub(batch.len()).min(self.len());
        if take == 1 {
            // The common round of a deep tree: one woken child; no `memcpy` call.
            batch.push(self.ready[self.head]);
        } else {
            batch.extend_from_slice(&self.ready[self.head..self.head + take]);
        }
        self.head += take;
        if self.head == self.ready.len() {
            self.ready.clear();
            self.head = 0;
        } else if self.head > self.ready.len() / 2 {
            self.ready.drain(..self.head);
            self.head = 0;
        }
    }
}

/// Sets a unit's `queued` flag on the owner's thread (a load and a store: see the module
/// docs); false when it was set already. A spawn has no flag: it is queued exactly once.
#[inline]
fn mark_queued(queued: Option<&AtomicBool>) -> bool {
    match queued {
        Some(queued) if queued.load(Ordering::Acquire) => false,
        Some(queued) => {
            queued.store(true, Ordering::Release);
            true
        }
        None => true,
    }
}

/// The ready queue shared by a nursery and the wakers of its units.
#[derive(Debug)]
pub(crate) struct ReadyQueue {
    /// The serial of the thread that owns the local list.
    thread: u64,
    serial: u64,
    /// The local list's key in the owner's `LOCAL_LISTS`.
    key: usize,
    remote: Mutex<RemoteList>,
    /// `remote.ready.len()`, stored under the lock.
    remote_len: AtomicUsize,
    /// `remote.parent.is_some()`, stored under the lock.
    has_remote_parent: AtomicBool,
    /// Mirrors of the local list, read and written on the owner's thread only (loads and
    /// stores): its length (counting `local_one`), and whether it holds the parent. They
    /// let a poll that finds nothing, and an empty nursery, skip the thread-local look-up.
    local_len: AtomicUsize,
    /// One index queued on the owner's thread without the thread-local list: taken when
    /// nothing else is queued locally and no parent needs waking (a spawn, or a wake
    /// during the nursery's own poll: the common case of a per-request nursery), so such
    /// a push and its pop are a few loads and stores. [`NO_INDEX`] when empty; when full it
    /// is older than everything in the list (it is only filled while the list is empty).
    /// (Owner's thread only.)
    local_one: AtomicUsize,
    local_parent: AtomicBool,
    /// The nursery is inside its own poll: a local wake need not wake the parent.
    /// (Owner's thread only.)
    polling: AtomicBool,
    /// After a round the nursery's poll budget cut short: how many indices at the front
    /// of the queue are that round's rest. The next take takes no more, so they run as a
    /// round of their own before the units polled since, which queued behind them: every
    /// ready unit still runs once per round, however `Builder::shuffle_seed` permutes one.
    /// 0 otherwise. (Owner's thread only.)
    round_left: AtomicUsize,
}

#[derive(Debug, Default)]
struct RemoteList {
    ready: VecDeque<usize>,
    parent: Option<Waker>,
}

impl ReadyQueue {
    /// A queue owned by the current thread.
    pub(crate) fn new() -> ReadyQueue {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        // Registers the lists' destructor on this thread (once; a no-op afterwards). During
        // the thread's teardown it may be gone: a list made then is not dropped.
        let _ = DROP_LISTS_AT_EXIT.try_with(|_| ());
        let key = LOCAL_LISTS.with(|local| {
            local.lists.borrow_mut().insert(LocalList {
                queue: serial,
                ready: Vec::new(),
                head: 0,
                parent: None,
            })
        });
        ReadyQueue {
            thread: thread_serial(),
            serial,
            key,
            remote: Mutex::default(),
            remote_len: AtomicUsize::new(0),
            has_remote_parent: AtomicBool::new(false),
            local_len: AtomicUsize::new(0),
            local_one: AtomicUsize::new(NO_INDEX),
            local_parent: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            round_left: AtomicUsize::new(0),
        }
    }

    /// 1 when `local_one` holds an index, else 0. (Owner's thread only.)
    fn one_len(&self) -> usize {
        usize::from(self.local_one.load(Ordering::Relaxed) != NO_INDEX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RemoteList> {
        // A panic never happens while the lock is held; recover rather than propagate.
        self.remote.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn on_owner_thread(&self) -> bool {
        thread_serial() == self.thread
    }

    /// Runs `f` on this queue's local list; `None` off the owner's thread, during thread
    /// teardown, or (never in practice) when the list is gone.
    fn with_local<R>(&self, f: impl FnOnce(&mut LocalList) -> R) -> Option<R> {
        LOCAL_LISTS
            .try_with(|local| {
                if local.serial() != self.thread {
                    return None;
                }
                let mut lists = local.lists.borrow_mut();
                let list = lists.get_mut(self.key).filter(|l| l.queue == self.serial)?;
                Some(f(list))
            })
            .ok()
            .flatten()
    }

    /// Queues `index` (a spawn: it is queued exactly once until its first poll).
    pub(crate) fn push(&self, index: usize) {
        self.push_unless_queued(index, None);
    }

    /// Queues `index` unless `queued` (the unit's flag, when given) says it already is,
    /// and sets the flag. On the owner's thread the flag is a load and a store (see the
    /// module docs); elsewhere a swap.
    fn push_unless_queued(&self, index: usize, queued: Option<&AtomicBool>) {
        if self.local_len.load(Ordering::Relaxed) == 0
            && (self.polling.load(Ordering::Relaxed) || !self.local_parent.load(Ordering::Relaxed))
            && self.on_owner_thread()
        {
            // Nothing queued locally and nobody to wake: the index goes to the one slot.
            if mark_queued(queued) {
                self.local_one.store(index, Ordering::Relaxed);
                self.local_len.store(1, Ordering::Relaxed);
            }
            return;
        }
        // `Some(Some(parent))`: the list went non-empty with a parent to wake, moved out
        // so that it is woken outside the borrow.
        let pushed = self.with_local(|list| {
            if !mark_queued(queued) {
                return None;
            }
            list.ready.push(index);
            let len = list.len() + self.one_len();
            self.local_len.store(len, Ordering::Relaxed);
            if len == 1 && !self.polling.load(Ordering::Relaxed) {
                let parent = list.parent.take();
                self.local_parent.store(false, Ordering::Relaxed);
                parent
            } else {
                None
            }
        });
        match pushed {
            Some(None) => {}
            Some(Some(parent)) => {
                parent.wake_by_ref();
                self.put_back_parent(parent);
            }
            None => {
                if !queued.is_some_and(|q| q.swap(true, Ordering::AcqRel)) {
                    self.push_remote(index);
                }
            }
        }
    }

    /// Returns the local parent waker after a wake, unless a new one was registered
    /// meanwhile (then the old one is dropped, outside the borrow).
    fn put_back_parent(&self, parent: Waker) {
        let left = self
            .with_local(|list| match list.parent {
                None => {
                    list.parent = Some(parent);
                    self.local_parent.store(true, Ordering::Relaxed);
                    None
                }
                Some(_) => Some(parent),
            })
            .flatten();
        drop(left);
    }

    fn push_remote(&self, index: usize) {
        let mut q = self.lock();
        q.ready.push_back(index);
        self.remote_len.store(q.ready.len(), Ordering::Release);
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
    #[inline]
    pub(crate) fn clear(&self) {
        self.polling.store(false, Ordering::Relaxed);
        // Inline for a queue with nothing in it (a nursery that never suspended): four
        // loads.
        if self.has_ready()
            || self.local_parent.load(Ordering::Relaxed)
            || self.has_remote_parent.load(Ordering::Acquire)
        {
            self.empty_lists();
        }
    }

    #[inline(never)]
    fn empty_lists(&self) {
        self.local_one.store(NO_INDEX, Ordering::Relaxed);
        self.round_left.store(0, Ordering::Relaxed);
        if self.local_len.load(Ordering::Relaxed) > 0 || self.local_parent.load(Ordering::Relaxed) {
            let local_parent = self
                .with_local(|list| {
                    list.ready.clear();
                    list.head = 0;
                    self.local_len.store(0, Ordering::Relaxed);
                    self.local_parent.store(false, Ordering::Relaxed);
                    list.parent.take()
                })
                .flatten();
            drop(local_parent);
        }
        if self.remote_len.load(Ordering::Acquire) == 0
            && !self.has_remote_parent.load(Ordering::Acquire)
        {
            return;
        }
        let remote_parent = {
            let mut q = self.lock();
            q.ready.clear();
            self.remote_len.store(0, Ordering::Release);
            self.has_remote_parent.store(false, Ordering::Release);
            q.parent.take()
        };
        drop(remote_parent); // outside the lock: dropping a waker may run arbitrary code
    }

    /// The nursery starts a poll: local wakes from now on need not wake its parent.
    #[inline]
    pub(crate) fn begin_poll(&self) {
        self.polling.store(true, Ordering::Relaxed);
    }

    /// Whether any index is queued (two loads: the mirrors of both lists).
    #[inline]
    pub(crate) fn has_ready(&self) -> bool {
        self.local_len.load(Ordering::Relaxed) > 0 || self.remote_len.load(Ordering::Acquire) > 0
    }

    /// The round just taken was cut short by the poll budget: what is queued now is its
    /// rest (`round_left`).
    #[cold]
    pub(crate) fn cut_round(&self) {
        let queued =
            self.local_len.load(Ordering::Relaxed) + self.remote_len.load(Ordering::Acquire);
        self.round_left.store(queued, Ordering::Relaxed);
    }

    /// Moves up to `max` ready indices into `batch`, local ones first; the remote list is
    /// locked only when it is not empty. Returns whether indices are left.
    #[inline]
    pub(crate) fn pop_batch(&self, batch: &mut Vec<usize>, max: usize) -> bool {
        // Inlined for the poll that finds nothing (an empty nursery's first round): the
        // thread-local look-up and its function's frame are paid only when there is work.
        self.has_ready() && self.take_ready(batch, max)
    }

    #[inline(never)]
    fn take_ready(&self, batch: &mut Vec<usize>, max: usize) -> bool {
        let left = self.round_left.load(Ordering::Relaxed);
        let max = if left == 0 {
            max
        } else {
            self.round_left.store(0, Ordering::Relaxed);
            max.min(batch.len() + left)
        };
        // The one slot first: it is older than anything in the list.
        let one = self.local_one.load(Ordering::Relaxed);
        if one != NO_INDEX && batch.len() < max {
            batch.push(one);
            self.local_one.store(NO_INDEX, Ordering::Relaxed);
            let len = self.local_len.load(Ordering::Relaxed);
            self.local_len.store(len - 1, Ordering::Relaxed);
        }
        let in_list = self.local_len.load(Ordering::Relaxed) > self.one_len();
        let local_left = if in_list {
            self.with_local(|list| {
                list.take_into(batch, max);
                let len = list.len() + self.one_len();
                self.local_len.store(len, Ordering::Relaxed);
                len > 0
            })
            .unwrap_or(false)
        } else {
            self.one_len() > 0
        };
        // A remote push racing with this look is not lost: it wakes the registered
        // parent, or, before there is one, `park` sees it.
        if self.remote_len.load(Ordering::Acquire) == 0 {
            return local_left;
        }
        let mut q = self.lock();
        while batch.len() < max {
            match q.ready.pop_front() {
                Some(index) => batch.push(index),
                None => break,
            }
        }
        self.remote_len.store(q.ready.len(), Ordering::Release);
        local_left || !q.ready.is_empty()
    }

    /// Registers `parent` as the waker to wake when a unit becomes ready, just before the
    /// nursery returns `Pending`, and ends its poll. `registered` is the nursery's note of
    /// the waker it last registered (compared as [`Waker::will_wake`] does); while it is
    /// the same, this changes nothing and takes no lock. Returns whether units are queued
    /// (they woke nobody): the nursery must then be polled again.
    pub(crate) fn park(&self, parent: &Waker, registered: &Cell<WakerKey>) -> bool {
        let key = WakerKey::of(parent);
        let fresh = registered.get() != key;
        self.polling.store(false, Ordering::Relaxed);
        if fresh {
            let fresh_local = parent.clone(); // outside the borrow (the invariants)
            let old_local = self
                .with_local(|list| {
                    self.local_parent.store(true, Ordering::Relaxed);
                    list.parent.replace(fresh_local)
                })
                .flatten();
            drop(old_local);
            let old_remote = {
                let mut q = self.lock();
                self.has_remote_parent.store(true, Ordering::Release);
                q.parent.replace(parent.clone())
            };
            drop(old_remote);
            registered.set(key);
        }
        self.has_ready()
    }
}

impl Drop for ReadyQueue {
    fn drop(&mut self) {
        let list = if self.on_owner_thread() {
            LOCAL_LISTS
                .try_with(|local| {
                    let mut lists = local.lists.borrow_mut();
                    match lists.get(self.key) {
                        Some(list) if list.queue == self.serial => lists.try_remove(self.key),
                        _ => None,
                    }
                })
                .ok()
                .flatten()
        } else {
            None
        };
        drop(list); // its parent waker, outside the borrow
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

    #[inline]
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the unit retired; returns whether it already was.
    #[inline]
    pub(crate) fn retire(&self) -> bool {
        let was = self.is_retired();
        self.retired.store(true, Ordering::Relaxed);
        was
    }

    #[inline]
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
        self.queue
            .push_unless_queued(self.index.load(Ordering::Relaxed), Some(&self.queued));
    }

    #[inline]
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

#[cfg(test)]
mod tests {
    use super::LocalList;

    fn list() -> LocalList {
        LocalList {
            queue: 1,
            ready: Vec::new(),
            head: 0,
            parent: None,
        }
    }

    /// Against a plain FIFO: every interleaving of pushes and takes of every size keeps
    /// wake order, loses nothing and takes nothing twice (whole and partial takes, and
    /// the cut of the taken front).
    #[test]
    fn takes_keep_wake_order_through_swaps_partial_takes_and_cuts() {
        let mut model = std::collections::VecDeque::new();
        let mut list = list();
        let mut next = 0;
        // A fixed pseudo-random sequence (a linear congruential generator).
        let mut seed: u64 = 7;
        let mut roll = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..5_000 {
            for _ in 0..roll(12) {
                list.ready.push(next);
                model.push_back(next);
                next += 1;
            }
            let max = roll(10) as usize;
            let mut batch = Vec::with_capacity(4);
            if roll(3) == 0 {
                batch.push(usize::MAX); // a batch that already holds an index
            }
            let before = batch.len();
            list.take_into(&mut batch, max);
            let want: Vec<usize> = (0..max.saturating_sub(before).min(model.len()))
                .map(|_| model.pop_front().unwrap())
                .collect();
            assert_eq!(&batch[before..], &want[..]);
            assert_eq!(list.len(), model.len());
            assert!(list.head <= list.ready.len() / 2 || list.head == 0);
        }
    }
}
