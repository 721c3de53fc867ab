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
//! - [`sleep`], [`sleep_until`], [`now`] and [`yield_now`] are the time and scheduling
//!   primitives.
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
//! ## Threads
//!
//! A runtime runs on one thread, and what belongs to it stays there: [`CancelScope`],
//! [`Nursery`], [`JoinHandle`] and the futures of [`nursery()`] and [`CancelScope::run`]
//! are `!Send`, because they share the runtime's state without locks (that is what makes
//! spawning and cancelling cheap). To cancel from another thread, use
//! [`CancelScope::remote`], whose [`RemoteCancel`] is `Send + Sync`. Wakers are
//! `Send + Sync` as std requires, and wake the runtime from any thread. A [`Sleep`] is
//! `Send`, but polling it in a runtime other than the one that armed it panics.

// `forbid` would stop the reactor from opting in; every module other than the reactor
// repeats `#![forbid(unsafe_code)]` itself.
#![deny(unsafe_code)]
#![doc(html_no_source)]

// Moved into layer folders; the `#[path]`s keep the module names until the next commit.
#[path = "scope/cancel_scope.rs"]
mod cancel;
#[path = "context/values.rs"]
mod context;
#[path = "rt/deadlock.rs"]
mod deadlock;
#[path = "nursery/error.rs"]
mod error;
#[path = "rt/executor.rs"]
mod executor;
mod finally;
pub mod guide;
#[path = "nursery/join.rs"]
mod join;
#[path = "nursery/open.rs"]
mod nursery;
#[path = "nursery/output.rs"]
mod output;
#[path = "scope/unit.rs"]
mod ready_queue;
#[path = "scope/remote.rs"]
mod remote;
#[path = "scope/tree.rs"]
mod scope_tree;
#[path = "rt/slab.rs"]
mod slab;
#[path = "nursery/start.rs"]
mod start;
#[path = "rt/time.rs"]
mod time;
#[path = "scope/timeout.rs"]
mod timeout;

/// What the macros' expansions call; not a public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The one module that may use `unsafe`: registration with `polling`.
#[path = "rt/reactor.rs"]
mod reactor;

pub use cancel::{
    CancelReason, CancelScope, Cancelled, ScopeRun, cancel_scope, cancelled,
    current_effective_deadline, shield,
};
pub use context::{Context, ContextEntry, ContextVar, ResetError, Run, Token};
pub use error::{ErrorGroup, Failure, JoinError, StartError, TaskName};
pub use executor::{Builder, YieldNow, run, yield_now};
pub use finally::finally;
pub use join::JoinHandle;
pub use nursery::{Nursery, TaskStatus, nursery};
pub use output::{BodyOutput, TaskOutput};
pub use remote::RemoteCancel;
pub use time::{Sleep, advance, now, sleep, sleep_forever, sleep_until};
pub use timeout::{FailAt, TimedOut, fail_after, fail_at, move_on_after, move_on_at};
pub use trellis_macros::{main, nursery, open_nursery, test};

// The README's examples run as doctests, so the first code a user sees keeps working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
