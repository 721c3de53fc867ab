//! [`Condition`]: Trio's condition variable, over a [`Lock`] it owns.
//!
//! # State
//!
//! - `waiters` queues the tasks in [`Condition::wait`], which released the lock to wait.
//! - [`notify`](Condition::notify) moves notified waiters straight into the lock's queue
//!   (Trio's `repark`): each entry records the key of the lock entry made for it, and the
//!   waiter, when it next runs, continues as a lock acquire under that key. So notified
//!   waiters get the lock back in the order they were notified, before any task that asks
//!   for the lock after the notify.
//! - A waiter whose guard came from another lock (not this condition's) is not moved: it
//!   is woken and queues for its own lock when it runs.
//! - Hand-off: a notified waiter dropped before it got the lock back passes its
//!   notification to the next waiter, so a `notify(1)` is never lost to a cancelled task.
//!   When both wait with a guard of this condition's lock, the successor takes over the
//!   dropped waiter's entry in the lock's queue ([`Lock::transfer`]): its place, and the
//!   lock if it had been handed it. Queueing it at the back instead would put it behind
//!   tasks that asked for the lock after the notify, and give them a lock handed to the
//!   dropped waiter. Otherwise (no successor, or one with another lock's guard) the entry
//!   is given up: the lock, if it had been handed it, goes to the lock's next waiter.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::FusedFuture;

use crate::sync::lock::{Lock, LockAcquire, LockGuard};
use crate::sync::waiters::{WaiterKey, Waiters};

/// A condition variable with Trio's semantics, over the [`Lock`] it owns.
///
/// A task holding the lock calls [`wait`](Self::wait) with its guard: the lock is
/// released, the task sleeps until notified, and it gets the lock back before `wait`
/// returns the guard. [`notify`](Self::notify) and [`notify_all`](Self::notify_all) wake
/// waiters in the order they started waiting, and queue them for the lock in that order.
/// As everywhere, check the condition in a loop: a waiter may be woken when it is not (yet)
/// true for it.
///
/// Trio raises an error when `notify` is called without holding the lock. Here the lock
/// is not needed: tasks switch only at awaits, so a notify cannot slip between a waiter's
/// check and its wait; notified waiters still get the lock one at a time.
///
/// It is `!Send`: tasks of one runtime share it by reference or in an `Rc`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::Condition;
///
/// let jobs = Condition::new(Vec::new());
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         n.spawn(async {
///             let mut queue = jobs.lock().await;
///             while queue.is_empty() {
///                 queue = jobs.wait(queue).await;
///             }
///             assert_eq!(queue.pop(), Some("job"));
///         });
///         trellis::sleep(Duration::from_secs(1)).await;
///         jobs.lock().await.push("job");
///         jobs.notify(1);
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Default)]
pub struct Condition<T = ()> {
    lock: Lock<T>,
    waiters: RefCell<Waiters<Parked>>,
}

/// A waiting task's entry.
#[derive(Debug, Clone, Copy)]
struct Parked {
    /// Its guard was of this condition's lock (so a notify moves it into that lock's
    /// queue).
    own_lock: bool,
    /// The lock entry made for it by the notify that moved it.
    lock_key: Option<WaiterKey>,
}

impl<T> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl<T> Condition<T> {
    /// A condition whose lock protects `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ready = trellis::Condition::new(false);
    /// assert!(!ready.as_lock().is_locked());
    /// ```
    pub const fn new(value: T) -> Condition<T> {
        Condition {
            lock: Lock::new(value),
            waiters: RefCell::new(Waiters::new()),
        }
    }

    /// Waits for the condition's lock: [`Lock::lock`] on [`as_lock`](Self::as_lock).
    ///
    /// # Cancellation
    ///
    /// As [`Lock::lock`]: cancel-safe, a lock handed to a dropped future passes on.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = trellis::Condition::new(1);
    /// trellis::run(async {
    ///     let mut value = c.lock().await;
    ///     *value += 1;
    ///     assert!(c.as_lock().is_locked());
    /// });
    /// ```
    pub fn lock(&self) -> LockAcquire<'_, T> {
        self.lock.lock()
    }

    /// The lock, for [`Lock::try_lock`], [`Lock::is_locked`] and [`Lock::waiting`].
    ///
    /// # Examples
    ///
    /// ```
    /// let c = trellis::Condition::new(());
    /// let guard = c.as_lock().try_lock().unwrap();
    /// assert!(c.as_lock().is_locked());
    /// drop(guard);
    /// ```
    pub fn as_lock(&self) -> &Lock<T> {
        &self.lock
    }

    /// How many tasks wait to be notified (Trio's `statistics().tasks_waiting`); notified
    /// tasks waiting for the lock count in the lock's [`Lock::waiting`].
    ///
    /// # Examples
    ///
    /// ```
    /// let c = trellis::Condition::new(());
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             let guard = c.lock().await;
    ///             let _guard = c.wait(guard).await;
    ///         });
    ///         trellis::yield_now().await; // the child runs and waits
    ///         assert_eq!(c.waiting(), 1);
    ///         c.notify_all();
    ///         assert_eq!(c.waiting(), 0);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Releases the lock that `guard` holds, waits to be notified, takes the lock back and
    /// gives its guard again (Trio's `wait`).
    ///
    /// The lock is released at the first poll, and the task is then in the queue, in one
    /// step: a notify cannot be missed in between. Pass a guard of this condition's lock
    /// (from [`lock`](Self::lock)); a guard of another [`Lock`] works too, but that lock is
    /// only queued for when the task runs again, not at the notify.
    ///
    /// # Cancellation
    ///
    /// Dropping the future loses nothing, but unlike Trio (whose cancelled `wait` takes the
    /// lock back before it raises) the lock is then *not* held: the guard was given up.
    /// Dropped while waiting to be notified, the task leaves the queue. Dropped after it
    /// was notified but before it had the lock again, it passes the notification on to the
    /// next waiter, and the lock too if it had been handed to it; that waiter also takes
    /// its place in the lock's queue, ahead of tasks that asked for the lock after the
    /// notify (when both waited with guards of this condition's lock). Dropped before its
    /// first poll, it just drops the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::Condition;
    ///
    /// let count = Condition::new(0);
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         for _ in 0..3 {
    ///             n.spawn(async {
    ///                 *count.lock().await += 1;
    ///                 count.notify_all();
    ///             });
    ///         }
    ///         let mut seen = count.lock().await;
    ///         while *seen < 3 {
    ///             seen = count.wait(seen).await;
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn wait<'a>(&'a self, guard: LockGuard<'a, T>) -> ConditionWait<'a, T> {
        ConditionWait {
            condition: self,
            state: WaitState::Start(guard),
        }
    }

    /// Wakes up to `n` waiters, oldest first, and queues them for the lock (Trio's
    /// `notify`). With fewer waiters, it wakes them all; with none, it does nothing (a
    /// notify is not remembered for later waiters).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = trellis::Condition::new(());
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         for _ in 0..3 {
    ///             n.spawn(async {
    ///                 let guard = c.lock().await;
    ///                 let _guard = c.wait(guard).await;
    ///             });
    ///         }
    ///         trellis::yield_now().await; // the children wait
    ///         c.notify(2);
    ///         assert_eq!(c.waiting(), 1);
    ///         c.notify(1);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn notify(&self, n: usize) {
        for _ in 0..n {
            if !self.notify_one(None) {
                return;
            }
        }
    }

    /// Notifies the oldest waiter and queues it for the lock; false when nobody waits.
    ///
    /// `place` is the lock entry of a notified waiter that was dropped before it had the
    /// lock back (the hand-off of its notification): the new waiter takes it over, so it
    /// keeps that waiter's place in the lock's queue, and the lock if it had been handed
    /// it. Without a successor that can use it (none, or one waiting with another lock's
    /// guard) the place is given up.
    fn notify_one(&self, place: Option<WaiterKey>) -> bool {
        let next = self.waiters.borrow_mut().notify_front();
        let Some((key, waker)) = next else {
            if let Some(place) = place {
                // Leaves the lock's queue, passing the lock on if it had it.
                drop(self.lock.acquire_queued(place));
            }
            return false;
        };
        let own_lock = self.waiters.borrow_mut().data_mut(key).own_lock;
        match (own_lock, place) {
            (true, Some(place)) => {
                self.waiters.borrow_mut().data_mut(key).lock_key = Some(place);
                self.lock.transfer(place, waker);
            }
            (true, None) => {
                // Trio's repark: it now waits for the lock, under its own entry.
                let lock_key = self.lock.enqueue(waker);
                self.waiters.borrow_mut().data_mut(key).lock_key = Some(lock_key);
            }
            (false, place) => {
                if let Some(place) = place {
                    drop(self.lock.acquire_queued(place));
                }
                waker.wake();
            }
        }
        true
    }

    /// Wakes every waiter, and queues them for the lock in the order they waited (Trio's
    /// `notify_all`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = trellis::Condition::new(());
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         for _ in 0..3 {
    ///             n.spawn(async {
    ///                 let guard = c.lock().await;
    ///                 let _guard = c.wait(guard).await;
    ///             });
    ///         }
    ///         trellis::yield_now().await; // the children wait
    ///         let held = c.lock().await;
    ///         c.notify_all();
    ///         assert_eq!(c.as_lock().waiting(), 3, "they queue for the lock");
    ///         drop(held); // hands the lock to the first of them
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn notify_all(&self) {
        self.notify(usize::MAX);
    }
}

/// The future returned by [`Condition::wait`]; gives the lock's guard back.
///
/// # Cancellation
///
/// Loses nothing, but the lock is not held afterwards (see [`Condition::wait`]): a
/// notification it had received passes to the next waiter, with its place in the lock's
/// queue and the lock, if it had been handed to it (to the lock's next waiter when no
/// condition waiter can take them).
#[must_use = "a ConditionWait does nothing unless awaited (dropping it releases the lock)"]
pub struct ConditionWait<'a, T> {
    condition: &'a Condition<T>,
    state: WaitState<'a, T>,
}

enum WaitState<'a, T> {
    /// Not polled yet: it still holds the lock.
    Start(LockGuard<'a, T>),
    /// Released the lock and waits in the condition's queue.
    Parked {
        lock: &'a Lock<T>,
        key: WaiterKey,
    },
    /// Notified: waits for the lock again.
    Locking(LockAcquire<'a, T>),
    Done,
}

impl<T> fmt::Debug for ConditionWait<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WaitState::Start(_) => "not started",
            WaitState::Parked { .. } => "waiting to be notified",
            WaitState::Locking(_) => "notified, waiting for the lock",
            WaitState::Done => "done",
        };
        f.debug_struct("ConditionWait")
            .field("condition", self.condition)
            .field("state", &state)
            .finish()
    }
}

impl<'a, T> Future for ConditionWait<'a, T> {
    type Output = LockGuard<'a, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard<'a, T>> {
        let this = &mut *self;
        let condition = this.condition;
        loop {
            match std::mem::replace(&mut this.state, WaitState::Done) {
                WaitState::Start(guard) => {
                    let lock = guard.lock_of();
                    let own_lock = std::ptr::eq(lock, &condition.lock);
                    let parked = Parked {
                        own_lock,
                        lock_key: None,
                    };
                    let key = condition
                        .waiters
                        .borrow_mut()
                        .push(parked, cx.waker().clone());
                    this.state = WaitState::Parked { lock, key };
                    // Released after queueing: handing the lock on wakes another task,
                    // which runs only after this poll.
                    drop(guard);
                    return Poll::Pending;
                }
                WaitState::Parked { lock, key } => {
                    let mut waiters = condition.waiters.borrow_mut();
                    if !waiters.is_notified(key) {
                        waiters.set_waker(key, cx.waker());
                        this.state = WaitState::Parked { lock, key };
                        return Poll::Pending;
                    }
                    let parked = waiters.remove(key).data;
                    drop(waiters);
                    let acquire = match parked.lock_key {
                        Some(lock_key) => lock.acquire_queued(lock_key),
                        None => lock.lock(),
                    };
                    this.state = WaitState::Locking(acquire);
                }
                WaitState::Locking(mut acquire) => match Pin::new(&mut acquire).poll(cx) {
                    Poll::Ready(guard) => return Poll::Ready(guard),
                    Poll::Pending => {
                        this.state = WaitState::Locking(acquire);
                        return Poll::Pending;
                    }
                },
                WaitState::Done => return Poll::Pending,
            }
        }
    }
}

/// `futures::select!` and other `futures-core` combinators take a `ConditionWait` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let c = trellis::Condition::new(());
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         n.spawn(async {
///             let mut wait = c.wait(c.lock().await);
///             assert!(!wait.is_terminated());
///             let _guard = (&mut wait).await;
///             assert!(wait.is_terminated());
///         });
///         trellis::yield_now().await;
///         c.notify(1);
///     })
///     .await
///     .unwrap();
/// });
/// ```
impl<T> FusedFuture for ConditionWait<'_, T> {
    /// True once it has given the guard back.
    fn is_terminated(&self) -> bool {
        matches!(self.state, WaitState::Done)
    }
}

impl<T> Drop for ConditionWait<'_, T> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, WaitState::Done) {
            WaitState::Start(guard) => drop(guard),
            WaitState::Parked { key, .. } => {
                let removed = self.condition.waiters.borrow_mut().remove(key);
                if removed.notified {
                    // The notification passes on, with the place in the lock's queue the
                    // notify gave it (only for this condition's lock).
                    self.condition.notify_one(removed.data.lock_key);
                }
            }
            WaitState::Locking(acquire) => {
                let place = if std::ptr::eq(acquire.lock_of(), &self.condition.lock) {
                    acquire.into_key()
                } else {
                    // Another lock's queue: leave it (passing that lock on if handed).
                    drop(acquire);
                    None
                };
                self.condition.notify_one(place);
            }
            WaitState::Done => {}
        }
    }
}
