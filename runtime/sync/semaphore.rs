//! [`Semaphore`]: Trio's counting semaphore, FIFO-fair, optionally bounded.
//!
//! # State
//!
//! - `value` is the number of units free right now. Invariant: waiters are queued only
//!   while `value` is 0, so taking a free unit never overtakes a waiter.
//! - Release is a hand-off: with waiters queued, the unit goes to the oldest (`value`
//!   stays 0); otherwise `value` grows. A waiter that was handed a unit but is dropped
//!   before it ran releases it again, the same way.
//! - `out` counts the units held by [`SemaphorePermit`]s (and handed to waiters that have
//!   not run yet). With a `max_value`, `value + out <= max_value` always: a
//!   [`release`](Semaphore::release) by hand that would break it is refused, so a permit's
//!   drop, which cannot fail, never passes the bound.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::FusedFuture;

use crate::sync::waiters::{WaiterKey, Waiters};

/// A counting semaphore with Trio's semantics: FIFO-fair, with hand-off on release.
///
/// [`acquire`](Self::acquire) takes one unit and gives a [`SemaphorePermit`], which puts
/// it back when dropped (Trio's `async with semaphore`). A unit can also be kept past its
/// permit ([`SemaphorePermit::forget`]) and put back by hand with
/// [`release`](Self::release), also by another task, as Trio's `acquire`/`release`.
///
/// A semaphore made with [`with_max_value`](Self::with_max_value) is bounded (Trio's
/// `max_value`): a `release` that would raise its value above the bound is an error, which
/// catches a unit released twice.
///
/// It is `!Send`: tasks of one runtime share it by reference or in an `Rc`.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::time::Duration;
/// use trellis::Semaphore;
///
/// let slots = Semaphore::new(2);
/// let (busy, most) = (Cell::new(0), Cell::new(0));
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         for _ in 0..6 {
///             n.spawn(async {
///                 let _permit = slots.acquire().await;
///                 busy.set(busy.get() + 1);
///                 most.set(most.get().max(busy.get()));
///                 trellis::sleep(Duration::from_secs(1)).await;
///                 busy.set(busy.get() - 1);
///             });
///         }
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(most.get(), 2);
/// ```
pub struct Semaphore {
    /// Units free right now (0 while anyone waits).
    value: Cell<usize>,
    /// Units held by permits or handed to waiters (for the bound).
    out: Cell<usize>,
    max_value: Option<usize>,
    waiters: RefCell<Waiters>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("max_value", &self.max_value)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` free units and no bound.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(3);
    /// assert_eq!(s.value(), 3);
    /// assert_eq!(s.max_value(), None);
    /// ```
    pub const fn new(value: usize) -> Semaphore {
        Semaphore {
            value: Cell::new(value),
            out: Cell::new(0),
            max_value: None,
            waiters: RefCell::new(Waiters::new()),
        }
    }

    /// A bounded semaphore: `value` free units, never more than `max_value`.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError`] when `max_value < value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::with_max_value(1, 1).unwrap();
    /// assert_eq!(s.max_value(), Some(1));
    /// assert!(trellis::Semaphore::with_max_value(2, 1).is_err());
    /// ```
    pub fn with_max_value(value: usize, max_value: usize) -> Result<Semaphore, SemaphoreError> {
        if max_value < value {
            return Err(SemaphoreError::MaxBelowValue { value, max_value });
        }
        Ok(Semaphore {
            max_value: Some(max_value),
            ..Semaphore::new(value)
        })
    }

    /// The number of units free right now (0 while tasks wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(1);
    /// let permit = s.try_acquire().unwrap();
    /// assert_eq!(s.value(), 0);
    /// drop(permit);
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn value(&self) -> usize {
        self.value.get()
    }

    /// The bound, for a semaphore made with [`with_max_value`](Self::with_max_value).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(trellis::Semaphore::with_max_value(0, 4).unwrap().max_value(), Some(4));
    /// ```
    pub fn max_value(&self) -> Option<usize> {
        self.max_value
    }

    /// How many tasks wait for a unit (Trio's `statistics().tasks_waiting`).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(0);
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             let _ = s.acquire().await;
    ///         });
    ///         trellis::yield_now().await; // the child runs and queues
    ///         assert_eq!(s.waiting(), 1);
    ///         s.release().unwrap(); // hands the unit to the child
    ///         assert_eq!(s.waiting(), 0);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Waits for a unit and gives its permit.
    ///
    /// A free unit is taken at the first poll, without suspending. Unlike Trio's
    /// `acquire`, that is not a checkpoint (as in tokio); write
    /// [`yield_now().await`](crate::yield_now) where a loop needs one. Otherwise the task
    /// queues, and units are handed to waiters in the order they queued.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe, and nothing is lost: dropping the future while it is queued takes it
    /// out of the queue; dropping it after a unit was handed to it, before it ran, passes
    /// the unit on to the next waiter (or back to the semaphore).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(1);
    /// trellis::run(async {
    ///     let permit = s.acquire().await;
    ///     assert_eq!(s.value(), 0);
    ///     drop(permit);
    /// });
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire {
            semaphore: self,
            key: None,
            done: false,
        }
    }

    /// Takes a unit if one is free, without waiting (Trio's `acquire_nowait`).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`] when no unit is free (also while units are being
    /// handed to waiters that have not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(1);
    /// let permit = s.try_acquire().unwrap();
    /// assert_eq!(s.try_acquire().unwrap_err(), trellis::SemaphoreError::WouldBlock);
    /// drop(permit);
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, SemaphoreError> {
        if self.take_free() {
            Ok(SemaphorePermit { semaphore: self })
        } else {
            Err(SemaphoreError::WouldBlock)
        }
    }

    /// Puts one unit back: hands it to the oldest waiter, or adds it to the value (Trio's
    /// `release`). Pair it with a unit taken by [`SemaphorePermit::forget`], or use it to
    /// raise an unbounded semaphore's value.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::ReleasedTooManyTimes`] when the semaphore is bounded and the unit
    /// would take it past `max_value`, counting the units its permits still hold (they
    /// come back when dropped); and for an unbounded semaphore whose value would overflow
    /// `usize`, counting those units too (a bound of `usize::MAX`: with a permit out, the
    /// release that would bring the value to `usize::MAX` is refused, since the permit's
    /// unit would overflow it on its return). Nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::with_max_value(1, 1).unwrap();
    /// assert!(s.release().is_err(), "already at its bound");
    /// s.try_acquire().unwrap().forget(); // keep the unit past its permit
    /// assert_eq!(s.value(), 0);
    /// s.release().unwrap(); // and put it back by hand
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let limit = self.max_value.unwrap_or(usize::MAX);
        let total = self.value.get().checked_add(self.out.get());
        if total.is_none_or(|total| total >= limit) {
            return Err(SemaphoreError::ReleasedTooManyTimes {
                max_value: self.max_value,
            });
        }
        self.hand_over();
        Ok(())
    }

    /// Takes a free unit if there is one and nobody waits.
    fn take_free(&self) -> bool {
        let value = self.value.get();
        if value == 0 {
            return false;
        }
        self.value.set(value - 1);
        self.out.set(self.out.get() + 1);
        true
    }

    /// Makes a unit that no permit holds available: hands it to the oldest waiter (it is
    /// then out, the waiter's) or adds it to the value.
    fn hand_over(&self) {
        let next = self.waiters.borrow_mut().notify_front();
        match next {
            Some((_, waker)) => {
                self.out.set(self.out.get() + 1);
                waker.wake();
            }
            None => self.value.set(self.value.get() + 1),
        }
    }

    /// A permit's unit comes back (also one handed to a waiter that was dropped).
    fn return_permit(&self) {
        self.out.set(self.out.get() - 1);
        self.hand_over();
    }
}

/// The future returned by [`Semaphore::acquire`]; gives a [`SemaphorePermit`].
///
/// # Cancellation
///
/// Cancel-safe: dropped while queued, it leaves the queue; dropped after a unit was handed
/// to it, it passes the unit on to the next waiter (or back to the semaphore).
#[must_use = "a SemaphoreAcquire does nothing unless awaited"]
pub struct SemaphoreAcquire<'a> {
    semaphore: &'a Semaphore,
    key: Option<WaiterKey>,
    done: bool,
}

impl fmt::Debug for SemaphoreAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreAcquire")
            .field("semaphore", self.semaphore)
            .field("queued", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<'a> Future for SemaphoreAcquire<'a> {
    type Output = SemaphorePermit<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit<'a>> {
        let this = &mut *self;
        let semaphore = this.semaphore;
        match this.key {
            Some(key) => {
                let mut waiters = semaphore.waiters.borrow_mut();
                if !waiters.is_notified(key) {
                    waiters.set_waker(key, cx.waker());
                    return Poll::Pending;
                }
                // A unit was handed to us (already counted in `out`).
                waiters.remove(key);
                this.key = None;
            }
            None => {
                if !semaphore.take_free() {
                    let key = semaphore.waiters.borrow_mut().push((), cx.waker().clone());
                    this.key = Some(key);
                    return Poll::Pending;
                }
            }
        }
        this.done = true;
        Poll::Ready(SemaphorePermit { semaphore })
    }
}

/// `futures::select!` and other `futures-core` combinators take a `SemaphoreAcquire`
/// without `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let s = trellis::Semaphore::new(1);
/// trellis::run(async {
///     let mut acquire = s.acquire();
///     assert!(!acquire.is_terminated());
///     let _permit = (&mut acquire).await;
///     assert!(acquire.is_terminated());
/// });
/// ```
impl FusedFuture for SemaphoreAcquire<'_> {
    /// True once it has given the permit.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let removed = self.semaphore.waiters.borrow_mut().remove(key);
            if removed.notified {
                // Handed a unit but gone before it ran: pass it on.
                self.semaphore.return_permit();
            }
        }
    }
}

/// One unit of a [`Semaphore`]; dropping it puts the unit back (to the oldest waiter, if
/// any).
///
/// # Examples
///
/// ```
/// let s = trellis::Semaphore::new(1);
/// let permit = s.try_acquire().unwrap();
/// assert_eq!(s.value(), 0);
/// drop(permit);
/// assert_eq!(s.value(), 1);
/// ```
#[must_use = "the unit goes back as soon as the permit is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("semaphore", self.semaphore)
            .finish()
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the unit taken without a permit: the semaphore's value stays lower until
    /// [`Semaphore::release`] puts it back (Trio's manual `acquire`).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = trellis::Semaphore::new(1);
    /// s.try_acquire().unwrap().forget();
    /// assert_eq!(s.value(), 0);
    /// s.release().unwrap();
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn forget(self) {
        let semaphore = self.semaphore;
        std::mem::forget(self);
        semaphore.out.set(semaphore.out.get() - 1);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.semaphore.return_permit();
    }
}

/// What went wrong with a [`Semaphore`].
///
/// # Examples
///
/// ```
/// use trellis::{Semaphore, SemaphoreError};
///
/// let s = Semaphore::with_max_value(1, 1).unwrap();
/// let err = s.release().unwrap_err();
/// assert_eq!(err, SemaphoreError::ReleasedTooManyTimes { max_value: Some(1) });
/// println!("{err}"); // semaphore released too many times: ...
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// [`Semaphore::try_acquire`] found no free unit.
    WouldBlock,
    /// [`Semaphore::release`] would raise the value past `max_value` (or, unbounded,
    /// overflow `usize`), counting the units its permits hold.
    ReleasedTooManyTimes {
        /// The bound; `None` for an unbounded semaphore.
        max_value: Option<usize>,
    },
    /// [`Semaphore::with_max_value`] was given a bound below the initial value.
    MaxBelowValue {
        /// The initial value asked for.
        value: usize,
        /// The bound asked for.
        max_value: usize,
    },
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::WouldBlock => f.write_str(
                "the semaphore has no free unit; await `Semaphore::acquire` to queue for one",
            ),
            SemaphoreError::ReleasedTooManyTimes {
                max_value: Some(max),
            } => write!(
                f,
                "semaphore released too many times: its value would pass its max_value of \
                 {max} (counting the units its permits hold); release only units taken with \
                 `SemaphorePermit::forget`, once each"
            ),
            SemaphoreError::ReleasedTooManyTimes { max_value: None } => {
                f.write_str("semaphore released too many times: its value would overflow `usize`")
            }
            SemaphoreError::MaxBelowValue { value, max_value } => write!(
                f,
                "a semaphore's max_value must be >= its initial value, but {max_value} < \
                 {value}; raise max_value or lower the initial value"
            ),
        }
    }
}

impl std::error::Error for SemaphoreError {}
