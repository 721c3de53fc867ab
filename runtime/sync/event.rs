//! [`Event`]: Trio's one-shot flag that tasks wait on.
//!
//! # State
//!
//! `set` goes from `false` to `true` once and never back (Trio removed `clear`: a new
//! `Event` is the way to wait again). While it is `false`, waiting futures are queued in
//! `waiters`; [`Event::set`] notifies them all at once. No entry is queued once `set` is
//! `true`.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::FusedFuture;

use crate::sync::waiters::{WaiterKey, Waiters, wake_all};

/// A flag that is set once and that any number of tasks wait for (Trio's `Event`).
///
/// Tasks share an `Event` by reference (children of a nursery borrow it) or in an `Rc`.
/// It is `!Send`: it belongs to the runtime's thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::Event;
///
/// let ready = Event::new();
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         for _ in 0..3 {
///             n.spawn(async { ready.wait().await });
///         }
///         trellis::sleep(Duration::from_secs(1)).await;
///         ready.set(); // wakes all three
///     })
///     .await
///     .unwrap();
/// });
/// assert!(ready.is_set());
/// ```
#[derive(Default)]
pub struct Event {
    /// Set once, never cleared.
    set: Cell<bool>,
    /// The futures waiting for `set`; empty once it is set.
    waiters: RefCell<Waiters>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Event {
    /// An event that is not set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = trellis::Event::new();
    /// assert!(!event.is_set());
    /// ```
    pub const fn new() -> Event {
        Event {
            set: Cell::new(false),
            waiters: RefCell::new(Waiters::new()),
        }
    }

    /// Whether [`set`](Self::set) has been called.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = trellis::Event::new();
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the event and wakes every task waiting for it. Setting it again does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = trellis::Event::new();
    /// event.set();
    /// event.set(); // idempotent
    /// trellis::run(async { event.wait().await }); // completes at once
    /// ```
    pub fn set(&self) {
        if self.set.replace(true) {
            return;
        }
        let wakers = self.waiters.borrow_mut().notify_all();
        wake_all(wakers);
    }

    /// How many tasks wait for the event (Trio's `statistics().tasks_waiting`).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = trellis::Event::new();
    /// trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         n.spawn(event.wait());
    ///         trellis::yield_now().await; // the child runs and waits
    ///         assert_eq!(event.waiting(), 1);
    ///         event.set();
    ///         assert_eq!(event.waiting(), 0);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Waits until the event is set.
    ///
    /// When the event is already set, the future completes at its first poll without
    /// suspending. Unlike Trio's `wait`, that is not a checkpoint (no trellis primitive
    /// suspends when it need not, as in tokio); write
    /// [`yield_now().await`](crate::yield_now) where a loop needs one.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropping the future takes its entry out of the queue; nothing else is
    /// lost, and the other waiters are woken as usual when the event is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let done = trellis::Event::new();
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             trellis::sleep(Duration::from_secs(5)).await;
    ///             done.set();
    ///         });
    ///         done.wait().await;
    ///         assert_eq!(trellis::now() - start, Duration::from_secs(5));
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            key: None,
            done: false,
        }
    }
}

/// The future returned by [`Event::wait`].
///
/// # Cancellation
///
/// Cancel-safe: dropping it takes its entry out of the event's queue.
#[must_use = "an EventWait does nothing unless awaited"]
pub struct EventWait<'a> {
    event: &'a Event,
    /// The queue entry, while the future waits.
    key: Option<WaiterKey>,
    /// It has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl fmt::Debug for EventWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWait")
            .field("event", self.event)
            .field("queued", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl Future for EventWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.event.set.get() {
            if let Some(key) = this.key.take() {
                this.event.waiters.borrow_mut().remove(key);
            }
            this.done = true;
            return Poll::Ready(());
        }
        let mut waiters = this.event.waiters.borrow_mut();
        match this.key {
            Some(key) => waiters.set_waker(key, cx.waker()),
            None => this.key = Some(waiters.push((), cx.waker().clone())),
        }
        Poll::Pending
    }
}

/// `futures::select!` and other `futures-core` combinators take an `EventWait` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let event = trellis::Event::new();
/// event.set();
/// trellis::run(async {
///     let mut wait = event.wait();
///     assert!(!wait.is_terminated());
///     (&mut wait).await;
///     assert!(wait.is_terminated());
/// });
/// ```
impl FusedFuture for EventWait<'_> {
    /// True once it has completed.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Nothing to pass on: a set event notifies every waiter.
            self.event.waiters.borrow_mut().remove(key);
        }
    }
}
