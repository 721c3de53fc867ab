//! Synchronisation between the tasks of one runtime, with Trio's names and semantics:
//! events, locks, semaphores, capacity limiters, conditions and memory channels.
//!
//! Everything here is `!Send` and belongs to one runtime: the state sits in `Cell`/`RefCell`,
//! with no atomics on the fast path. A waiter dropped while queued (a cancelled task)
//! loses nothing and leaves no one starved: what it was given passes to the next waiter.
//!
//! # A tour
//!
//! - [`Event`](crate::Event): set once, waited for by any number of tasks.
//! - [`Lock`](crate::Lock): an async mutex around a value, FIFO-fair: releasing hands the
//!   lock to the task that has waited longest.
//! - [`Semaphore`](crate::Semaphore): a counter of units, FIFO-fair, optionally bounded.
//! - [`CapacityLimiter`](crate::CapacityLimiter): at most `total_tokens` borrowers at once,
//!   with a total that can change at run time; a borrower is a token, or a
//!   [`BorrowerId`](crate::BorrowerId).
//! - [`Condition`](crate::Condition): wait until notified, over the lock it owns.
//! - [`channel`](crate::channel()): Trio's memory channels: cloneable senders and receivers,
//!   a buffer of fixed capacity (0 is a rendezvous), end-of-stream when the senders are gone.
//!
//! # Shared rules
//!
//! - Waiters are served in FIFO order, and a release *hands* what it releases to the
//!   oldest waiter (Trio's fairness): a task that releases and asks again queues behind.
//! - A primitive that is free is taken at the first poll, without suspending: unlike
//!   Trio, these are not checkpoints (as in tokio). Add
//!   [`yield_now().await`](crate::yield_now) where a loop needs one.
//! - Cancellation is a drop (see [`CancelScope`](crate::CancelScope)). Every waiting
//!   future documents under `# Cancellation` what its drop does; none loses anything: a
//!   queued waiter leaves the queue, one that was handed the lock (a unit, a token, a
//!   notification) before it ran passes it on.
//! - Misuse is an error value that says what to do (`try_` failures, a bounded semaphore
//!   released too often, a borrower that borrows twice), never a panic.
//!
//! ```
//! use std::time::Duration;
//! use trellis::{Event, Lock, Semaphore};
//!
//! let started = Event::new();
//! let log = Lock::new(Vec::new());
//! let slots = Semaphore::new(2);
//! trellis::Builder::new().autojump().run(async {
//!     trellis::nursery(async |n| {
//!         for i in 0..4 {
//!             let (started, log, slots) = (&started, &log, &slots);
//!             n.spawn(async move {
//!                 started.wait().await;
//!                 let _slot = slots.acquire().await;
//!                 trellis::sleep(Duration::from_secs(1)).await;
//!                 log.lock().await.push(i);
//!             });
//!         }
//!         started.set();
//!     })
//!     .await
//!     .unwrap();
//! });
//! assert_eq!(log.into_inner(), [0, 1, 2, 3]);
//! ```

#![forbid(unsafe_code)]

pub(crate) mod capacity_limiter;
pub(crate) mod channel;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod semaphore;
pub(crate) mod waiters;
