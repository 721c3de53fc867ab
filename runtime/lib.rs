//! # trellis: structured concurrency for Rust
//!
//! trellis brings Trio's model to Rust on a small single-threaded runtime: every task lives
//! in a [nursery](nursery()) that outlives it, cancellation is a [scope](CancelScope) with
//! a deadline rather than a flag, and errors are never lost. The compiler proves that no
//! task escapes its nursery.
//!
//! ## A tour
//!
//! - [`#[nursery]`](macro@nursery) turns an `async fn` with an `n: Nursery` parameter into
//!   a nursery; [`open_nursery!`] does the same for a block; [`#[trellis::main]`](main) and
//!   [`#[trellis::test]`](test) run a function on a runtime.
//! - [`run`] drives one root future on the current thread; [`Builder`] picks the clock
//!   (real, or mock with autojump so tests of hour-long timeouts take microseconds).
//! - [`nursery()`] opens a task group. Children ([`Nursery::spawn`],
//!   [`Nursery::start_soon`], [`Nursery::start`]) may borrow the caller's data; the first
//!   failure cancels the rest, and every error comes back in an [`ErrorGroup`]. A panic in
//!   a child is resumed from the nursery.
//! - [`CancelScope`], [`move_on_after`], [`fail_after`] and [`shield`] give Trio's
//!   cancellation: level-triggered, nested deadlines, shielded clean-up.
//! - [`ContextVar`] and [`Context`] are PEP 567 context variables: every child starts with
//!   a copy of its parent's values.
//! - [`sleep`], [`sleep_until`], [`interval`], [`now`] and [`yield_now`] are the time and
//!   scheduling primitives.
//! - [`Event`], [`Lock`], [`Semaphore`], [`CapacityLimiter`] and [`Condition`] are Trio's
//!   synchronisation primitives, FIFO-fair and `!Send`.
//! - [`to_thread`] runs blocking work on a bounded pool of worker threads without
//!   blocking the runtime (Trio's `to_thread.run_sync`); a [`RuntimeHandle`] lets any
//!   other thread run a closure or a future back on the runtime (Trio's `from_thread`).
//! - [`net`] has TCP, UDP and Unix sockets on the runtime's reactor, `futures-io` streams
//!   whose every read and write is cancel-safe.
//! - [`open_signal_receiver`] turns Unix signals into a stream of signal numbers
//!   ([`SignalReceiver`], Trio's `open_signal_receiver`), and [`ctrl_c`] waits for one
//!   `SIGINT`; the numbers are in [`signals`].
//! - Every task has a name ([`Nursery::spawn_named`], or its spawn site): [`dump_tree`]
//!   prints the live tree of nurseries, scopes and tasks with what each waits on, and an
//!   [`instrument::Instrument`] (Trio's) sees every task spawned, polled and exited, every
//!   reactor wait and every cancellation; the `tracing` feature reports to `tracing`.
//!
//! ```
//! use std::time::Duration;
//!
//! let greetings = vec!["hello", "bonjour", "hallo"];
//! let count = std::cell::Cell::new(0);
//! trellis::Builder::new().autojump().run(async {
//!     trellis::nursery(async |n| {
//!         for (i, g) in greetings.iter().enumerate() {
//!             let count = &count;
//!             n.spawn(async move {
//!                 trellis::sleep(Duration::from_secs(i as u64)).await;
//!                 println!("{g}");
//!                 count.set(count.get() + 1);
//!             });
//!         }
//!     })
//!     .await
//!     .unwrap();
//! });
//! assert_eq!(count.get(), 3);
//! ```
//!
//! The [`guide`] has recipes: graceful shutdown, `try`/`finally`, first success wins,
//! nested deadlines, use inside tokio.
//!
//! Everything cancellable documents what happens when it is dropped midway, under
//! `# Cancellation`.
//!
//! The examples of the `FusedFuture`, `Stream` and `FusedStream` impls name the traits
//! from the `futures-core` crate (`use futures_core::FusedFuture;`), which trellis does
//! not re-export: to copy them into your crate, add `futures-core` to its dependencies, or
//! use `futures` and write `futures::future::FusedFuture`.
//!
//! ## Threads
//!
//! A runtime runs on one thread, and what belongs to it stays there: [`CancelScope`],
//! [`Nursery`], [`JoinHandle`] and the futures of [`nursery()`] and [`CancelScope::run`]
//! are `!Send`, because they share the runtime's state without locks (that is what makes
//! spawning and cancelling cheap). To cancel from another thread, use
//! [`CancelScope::remote`], whose [`RemoteCancel`] is `Send + Sync`; to run work on the
//! runtime from another thread, use a [`RuntimeHandle`]. Wakers are
//! `Send + Sync` as std requires, and wake the runtime from any thread. A [`Sleep`] is
//! `Send`, but polling it in a runtime other than the one that armed it panics.

// `forbid` would stop the reactor from opting in; every module other than the reactor
// repeats `#![forbid(unsafe_code)]` itself.
#![deny(unsafe_code)]
#![doc(html_no_source)]

// Layers, lowest first; a module imports only from its own layer and the ones before it
// (ARCHITECTURE.md; `integration/tests/architecture.rs` checks it).
mod context;
pub mod instrument;
mod nursery;
mod rt;
mod scope;
mod sync;

// On top: built from the layers, imported by none of them.
mod finally;
pub mod guide;
pub mod net;
mod signal;
pub mod testing;
mod thread;

/// What the macros' expansions call; not a public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use context::values::{Context, ContextEntry, Run};
pub use context::values::{ContextVar, ResetError, Token};
pub use finally::finally;
pub use instrument::{TaskLabel, TaskTree};
pub use nursery::error::{ErrorGroup, Failure, JoinError, StartError, TaskName};
pub use nursery::handle::Nursery;
pub use nursery::join::JoinHandle;
pub use nursery::open::nursery;
pub use nursery::output::{BodyOutput, TaskOutput};
pub use nursery::start::TaskStatus;
pub use rt::clock::{advance, now};
pub use rt::executor::{Builder, YieldNow, run, yield_now};
pub use rt::interval::{Interval, IntervalTick, MissedTicks, interval};
pub use rt::sleep::{Sleep, sleep, sleep_forever, sleep_until};
pub use scope::cancel_scope::{
    CancelReason, CancelScope, Cancelled, ScopeRun, cancel_scope, cancelled,
    current_effective_deadline, shield,
};
pub use scope::dump::dump_tree;
pub use scope::remote::RemoteCancel;
pub use scope::timeout::{FailAt, TimedOut, fail_after, fail_at, move_on_after, move_on_at};
pub use signal::{SignalReceiver, SignalRecv, ctrl_c, open_signal_receiver, signals};
pub use sync::capacity_limiter::{
    BorrowerAcquire, BorrowerId, CapacityLimiter, LimiterAcquire, LimiterError, LimiterToken,
};
pub use sync::channel::{
    ChannelStatistics, Receiver, RecvError, RecvFuture, SendError, SendFuture, Sender,
    TryRecvError, TrySendError, channel,
};
pub use sync::condition::{Condition, ConditionWait};
pub use sync::event::{Event, EventWait};
pub use sync::lock::{Lock, LockAcquire, LockGuard, TryLockError};
pub use sync::semaphore::{Semaphore, SemaphoreAcquire, SemaphoreError, SemaphorePermit};
pub use thread::{FromThreadError, RuntimeHandle, ToThread, to_thread};
pub use trellis_macros::{main, nursery, open_nursery, test};

// The README's examples run as doctests, so the first code a user sees keeps working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
