//! [`Lock`]: Trio's fair async mutex, holding the value it protects.
//!
//! # State
//!
//! - `locked` is true while a [`LockGuard`] exists *or* the lock has been handed to a
//!   waiter that has not run yet.
//! - Invariant: waiters are queued only while `locked` is true. So taking a free lock
//!   never overtakes a waiter.
//! - Release is a **hand-off** (Trio's): when waiters are queued, the lock stays locked and
//!   passes to the oldest; `locked` goes false only when nobody waits. A task that
//!   releases and locks again therefore queues behind the others (FIFO fairness), and a
//!   waiter that was handed the lock but is dropped before it ran releases it again, to
//!   the next waiter.
//! - `value` is borrowed mutably only by the one [`LockGuard`]; the `RefCell` is how that
//!   is checked without `unsafe`.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_core::FusedFuture;

use crate::sync::waiters::{WaiterKey, Waiters};

/// An async mutex with Trio's semantics: FIFO-fair, with hand-off on release.
///
/// [`lock`](Self::lock) waits for the lock and gives a [`LockGuard`], through which the
/// protected value is reached; dropping the guard releases the lock. When tasks wait, the
/// release hands the lock to the one that has waited longest, so no task can take it twice
/// while another waits. `Lock<()>` (the default) is Trio's `Lock`, which protects no value.
///
/// The lock is not re-entrant: a task that awaits `lock` while it holds the guard waits
/// for itself forever (on the mock clocks the runtime reports the deadlock).
///
/// It is `!Send`: tasks of one runtime share it by reference or in an `Rc`.
///
/// # Examples
///
/// ```
/// use trellis::Lock;
///
/// let total = Lock::new(0);
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         for _ in 0..10 {
///             n.spawn(async {
///                 let mut sum = total.lock().await;
///                 let read = *sum;
///                 trellis::yield_now().await; // others run; none gets in
///                 *sum = read + 1;
///             });
///         }
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(total.into_inner(), 10);
/// ```
#[derive(Default)]
pub struct Lock<T = ()> {
    /// Held by a guard, or handed to a waiter that has not run yet.
    locked: Cell<bool>,
    /// The futures waiting for the lock (only while `locked`).
    waiters: RefCell<Waiters>,
    value: RefCell<T>,
}

impl<T> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl<T> Lock<T> {
    /// A free lock protecting `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = trellis::Lock::new(Vec::<String>::new());
    /// assert!(!names.is_locked());
    /// ```
    pub const fn new(value: T) -> Lock<T> {
        Lock {
            locked: Cell::new(false),
            waiters: RefCell::new(Waiters::new()),
            value: RefCell::new(value),
        }
    }

    /// Waits for the lock and gives its guard.
    ///
    /// A free lock is taken at the first poll, without suspending. Unlike Trio's
    /// `acquire`, that is not a checkpoint (as in tokio); write
    /// [`yield_now().await`](crate::yield_now) where a loop needs one. Otherwise the task
    /// queues, and the lock is handed to it when every task queued before it has released
    /// it.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe, and nothing is lost: dropping the future while it is queued takes it
    /// out of the queue; dropping it after the lock was handed to it, before it ran,
    /// passes the lock on to the next waiter (or frees it).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = trellis::Lock::new(1);
    /// trellis::run(async {
    ///     let mut guard = lock.lock().await;
    ///     *guard += 1;
    ///     assert!(lock.is_locked());
    /// });
    /// assert!(!lock.is_locked());
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn lock(&self) -> LockAcquire<'_, T> {
        LockAcquire {
            lock: self,
            key: None,
            done: false,
        }
    }

    /// Takes the lock if it is free, without waiting (Trio's `acquire_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryLockError`] when the lock is held, or has been handed to a waiting task that
    /// has not run yet (so a task cannot overtake the queue).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = trellis::Lock::new(());
    /// let guard = lock.try_lock().unwrap();
    /// assert!(lock.try_lock().is_err());
    /// drop(guard);
    /// assert!(lock.try_lock().is_ok());
    /// ```
    pub fn try_lock(&self) -> Result<LockGuard<'_, T>, TryLockError> {
        if self.locked.get() {
            return Err(TryLockError { _private: () });
        }
        self.locked.set(true);
        Ok(self.guard())
    }

    /// Whether the lock is held (or handed to a waiter that has not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = trellis::Lock::new(());
    /// let guard = lock.try_lock().unwrap();
    /// assert!(lock.is_locked());
    /// drop(guard);
    /// assert!(!lock.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.locked.get()
    }

    /// How many tasks wait for the lock (Trio's `statistics().tasks_waiting`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = trellis::Lock::new(());
    /// trellis::Builder::new().autojump().run(async {
    ///     let guard = lock.lock().await;
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             let _ = lock.lock().await;
    ///         });
    ///         trellis::yield_now().await; // the child runs and queues
    ///         assert_eq!(lock.waiting(), 1);
    ///         drop(guard); // hands the lock to the child
    ///         assert_eq!(lock.waiting(), 0);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// The protected value, for a lock no one can be waiting on.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = trellis::Lock::new(String::from("kept"));
    /// assert_eq!(lock.into_inner(), "kept");
    /// ```
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }

    /// The guard of a lock that has just become this caller's.
    fn guard(&self) -> LockGuard<'_, T> {
        let value = self
            .value
            .try_borrow_mut()
            .expect("trellis: a Lock's value is borrowed only by its one guard");
        LockGuard {
            lock: self,
            value: Some(value),
        }
    }

    /// Releases the lock: hands it to the oldest waiter, or frees it.
    pub(crate) fn release(&self) {
        let next = self.waiters.borrow_mut().notify_front();
        match next {
            // Stays locked: it now belongs to the waiter.
            Some((_, waker)) => waker.wake(),
            None => self.locked.set(false),
        }
    }

    /// Queues a waiter whose future is elsewhere (a `Condition` moving a notified task to
    /// this lock, as Trio's `repark`). A free lock is handed to it at once.
    pub(crate) fn enqueue(&self, waker: Waker) -> WaiterKey {
        let key = self.waiters.borrow_mut().push((), waker);
        if !self.locked.replace(true) {
            // It was free (a notify without the lock held): the new waiter is alone in the
            // queue and gets the lock.
            self.release();
        }
        key
    }

    /// Gives the queue entry `key` (queued, or already handed the lock) to another future,
    /// woken by `waker` from now on: a `Condition` passing the place of a notified waiter
    /// that was dropped to the next waiter, so that the successor is not queued behind
    /// tasks that asked for the lock after the notify (nor the lock, if it had been handed
    /// to the dropped one, given to them).
    pub(crate) fn transfer(&self, key: WaiterKey, waker: Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if waiters.is_notified(key) {
            drop(waiters);
            // The lock was handed to the entry: its new owner takes it when it runs.
            waker.wake();
        } else {
            waiters.set_waker(key, &waker);
        }
    }

    /// The future of [`lock`](Self::lock) for a waiter already queued under `key`.
    pub(crate) fn acquire_queued(&self, key: WaiterKey) -> LockAcquire<'_, T> {
        LockAcquire {
            lock: self,
            key: Some(key),
            done: false,
        }
    }
}

/// The future returned by [`Lock::lock`]; gives the [`LockGuard`].
///
/// # Cancellation
///
/// Cancel-safe: dropped while queued, it leaves the queue; dropped after the lock was
/// handed to it, it passes the lock on to the next waiter (or frees it).
#[must_use = "a LockAcquire does nothing unless awaited"]
pub struct LockAcquire<'a, T> {
    lock: &'a Lock<T>,
    /// The queue entry, while the future waits.
    key: Option<WaiterKey>,
    /// It has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl<'a, T> LockAcquire<'a, T> {
    /// The lock this future acquires.
    pub(crate) fn lock_of(&self) -> &'a Lock<T> {
        self.lock
    }

    /// Takes the queue entry out of the future (for [`Lock::transfer`]): the future then
    /// drops without leaving the queue or passing the lock on.
    pub(crate) fn into_key(mut self) -> Option<WaiterKey> {
        self.key.take()
    }
}

impl<T> fmt::Debug for LockAcquire<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockAcquire")
            .field("lock", self.lock)
            .field("queued", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<'a, T> Future for LockAcquire<'a, T> {
    type Output = LockGuard<'a, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard<'a, T>> {
        let this = &mut *self;
        let lock = this.lock;
        match this.key {
            Some(key) => {
                let mut waiters = lock.waiters.borrow_mut();
                if !waiters.is_notified(key) {
                    waiters.set_waker(key, cx.waker());
                    return Poll::Pending;
                }
                // The lock was handed to us; it stayed locked.
                waiters.remove(key);
                this.key = None;
            }
            None => {
                if lock.locked.replace(true) {
                    let key = lock.waiters.borrow_mut().push((), cx.waker().clone());
                    this.key = Some(key);
                    return Poll::Pending;
                }
            }
        }
        this.done = true;
        Poll::Ready(lock.guard())
    }
}

/// `futures::select!` and other `futures-core` combinators take a `LockAcquire` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let lock = trellis::Lock::new(());
/// trellis::run(async {
///     let mut acquire = lock.lock();
///     assert!(!acquire.is_terminated());
///     let _guard = (&mut acquire).await;
///     assert!(acquire.is_terminated());
/// });
/// ```
impl<T> FusedFuture for LockAcquire<'_, T> {
    /// True once it has given the guard.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for LockAcquire<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let removed = self.lock.waiters.borrow_mut().remove(key);
            if removed.notified {
                // Handed the lock but gone before it ran: pass it on.
                self.lock.release();
            }
        }
    }
}

/// Proof that the lock is held, and the way to its value; dropping it releases the lock
/// (to the oldest waiter, if any).
///
/// It is `!Send`, but it may leave the task that acquired it for another task of the
/// runtime (through a channel, say): the lock is held until the guard is dropped, wherever
/// that is, and released the same way then.
///
/// # Examples
///
/// ```
/// let lock = trellis::Lock::new(vec![1, 2]);
/// trellis::run(async {
///     let mut list = lock.lock().await; // a LockGuard
///     list.push(3);
///     assert_eq!(*list, [1, 2, 3]);
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
    /// `Some` until the guard is dropped (taken first, so the value is free before the
    /// lock passes on).
    value: Option<RefMut<'a, T>>,
}

impl<'a, T> LockGuard<'a, T> {
    /// The lock this guard holds.
    pub(crate) fn lock_of(&self) -> &'a Lock<T> {
        self.lock
    }
}

impl<T: fmt::Debug> fmt::Debug for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockGuard").field(&**self).finish()
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until drop")
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("present until drop")
    }
}

impl<T> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.value.take());
        self.lock.release();
    }
}

/// The error of [`Lock::try_lock`]: the lock is not free.
///
/// # Examples
///
/// ```
/// let lock = trellis::Lock::new(());
/// let _held = lock.try_lock().unwrap();
/// let err = lock.try_lock().unwrap_err();
/// assert!(err.to_string().starts_with("the lock is held"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryLockError {
    _private: (),
}

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the lock is held, or was handed to a waiting task that has not run yet; \
             await `Lock::lock` to queue for it",
        )
    }
}

impl std::error::Error for TryLockError {}
