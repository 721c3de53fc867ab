//! Recipes: the shapes real programs need, each a doctest that runs.
//!
//! - [Graceful shutdown](#graceful-shutdown): stop the workers, let each clean up within
//!   a deadline of its own.
//! - [`try`/`finally`](#tryfinally): clean-up that runs however the work ends.
//! - [First success wins](#first-success-wins): race attempts, keep the first result,
//!   cancel the rest.
//! - [Deadlines for a whole job and for each step](#deadlines-for-a-whole-job-and-for-each-step).
//! - [Inside a tokio program](#inside-a-tokio-program): what works there and what does not.
//! - [What is `!Send`, and why](#what-is-send-and-why).
//!
//! The programs in `examples/` put these together: `job_runner` (per-job and overall
//! deadlines), `graceful_shutdown` and `request_id` (request-scoped logging with a context
//! variable).
//!
//! # Graceful shutdown
//!
//! Run the workers in a nursery inside a scope; to shut down, cancel the scope (from a
//! supervisor task, or from a signal thread through [`CancelScope::remote`]). Each worker
//! wraps its loop in [`finally`], so its clean-up runs when the cancellation arrives; the
//! clean-up is shielded, so give it a deadline of its own ([`move_on_after`]) in case it
//! hangs. The nursery returns once every clean-up has finished.
//!
//! ```
//! use std::cell::RefCell;
//! use std::time::Duration;
//!
//! use trellis::{finally, move_on_after, nursery, sleep};
//!
//! async fn serve(id: u32, log: &RefCell<Vec<String>>) {
//!     loop {
//!         sleep(Duration::from_secs(1)).await;
//!         log.borrow_mut().push(format!("worker {id} served"));
//!     }
//! }
//!
//! async fn flush(id: u32, log: &RefCell<Vec<String>>) {
//!     sleep(Duration::from_millis(100 * u64::from(id))).await; // worker 3 is too slow
//!     log.borrow_mut().push(format!("worker {id} flushed"));
//! }
//!
//! let log = RefCell::new(Vec::new());
//! trellis::Builder::new().autojump().run(async {
//!     let shutdown = trellis::cancel_scope(async |scope| {
//!         nursery(async |n| {
//!             for id in 1..=3 {
//!                 let log = &log;
//!                 n.spawn(async move {
//!                     let cleanup = move_on_after(Duration::from_millis(250), flush(id, log));
//!                     finally(serve(id, log), cleanup).await;
//!                 });
//!             }
//!             sleep(Duration::from_millis(2500)).await; // then the shutdown request
//!             scope.cancel(); // or `scope.remote()`, moved to a signal thread
//!         })
//!         .await
//!     });
//!     assert_eq!(shutdown.await, None); // the scope caught its own cancellation
//! });
//! let log = log.into_inner();
//! assert_eq!(log.iter().filter(|l| l.ends_with("served")).count(), 6); // 2 s × 3 workers
//! assert_eq!(log[6..], ["worker 1 flushed", "worker 2 flushed"]); // 3 hit its deadline
//! ```
//!
//! # `try`/`finally`
//!
//! trellis cancels by dropping the work at a suspension, and a destructor cannot await, so
//! code after an `.await` does not run when a cancellation arrives there. Synchronous
//! clean-up goes in a destructor (a guard value), as everywhere in Rust. Async clean-up
//! goes in [`finally`]: it runs after the work finished, failed, panicked or was cancelled
//! from outside, and a cancellation waits for it.
//!
//! ```
//! use std::cell::RefCell;
//! use std::time::Duration;
//!
//! struct Connection<'a>(&'a RefCell<Vec<&'static str>>);
//!
//! impl Connection<'_> {
//!     async fn query(&self) -> Result<u32, String> {
//!         trellis::sleep(Duration::from_secs(10)).await;
//!         Ok(7)
//!     }
//!     async fn close(&self) {
//!         trellis::sleep(Duration::from_millis(10)).await; // say goodbye to the server
//!         self.0.borrow_mut().push("closed");
//!     }
//! }
//!
//! let log = RefCell::new(Vec::new());
//! trellis::Builder::new().autojump().run(async {
//!     let conn = Connection(&log);
//!     // The query takes 10 s; the caller gives it 1 s. `close` still runs to its end.
//!     let out = trellis::fail_after(Duration::from_secs(1), trellis::finally(conn.query(), conn.close()));
//!     assert!(out.await.is_err()); // `TimedOut`
//! });
//! assert_eq!(*log.borrow(), ["closed"]);
//! ```
//!
//! For clean-up after work that is never cancelled halfway, plain sequence is enough; for
//! a block that must not be interrupted at all, [`shield`].
//!
//! # First success wins
//!
//! Race the attempts in a nursery inside a scope; the first to succeed records its result
//! and cancels the scope, which cancels the others. Failures that should not stop the race
//! are handled inside each attempt, so they never reach the nursery.
//!
//! ```
//! use std::cell::Cell;
//! use std::time::Duration;
//!
//! async fn fetch(mirror: &str, secs: u64) -> Result<String, String> {
//!     trellis::sleep(Duration::from_secs(secs)).await;
//!     if mirror == "down" { Err(format!("{mirror}: refused")) } else { Ok(format!("from {mirror}")) }
//! }
//!
//! let winner = Cell::new(None);
//! trellis::Builder::new().autojump().run(async {
//!     trellis::cancel_scope(async |scope| {
//!         trellis::nursery(async |n| {
//!             for (mirror, secs) in [("down", 1), ("far", 5), ("near", 2)] {
//!                 let (scope, winner) = (scope.clone(), &winner);
//!                 n.spawn(async move {
//!                     if let Ok(page) = fetch(mirror, secs).await {
//!                         winner.set(Some(page));
//!                         scope.cancel();
//!                     }
//!                 });
//!             }
//!         })
//!         .await
//!     })
//!     .await;
//! });
//! assert_eq!(winner.take().as_deref(), Some("from near"));
//! ```
//!
//! # Deadlines for a whole job and for each step
//!
//! Deadlines nest: an inner timeout never extends an outer one, so give each step its own
//! ([`fail_after`] to treat it as an error, [`move_on_after`] to skip it) and the whole job
//! one around them. [`current_effective_deadline`] tells a step how much time it really
//! has.
//!
//! ```
//! use std::time::Duration;
//! use trellis::{fail_after, sleep};
//!
//! let outcome = trellis::Builder::new().autojump().run(async {
//!     fail_after(Duration::from_secs(10), async {
//!         let mut done = Vec::new();
//!         for (step, secs) in [("fetch", 3), ("stuck", 60), ("store", 1)] {
//!             match fail_after(Duration::from_secs(5), sleep(Duration::from_secs(secs))).await {
//!                 Ok(()) => done.push(step),
//!                 Err(_) => continue, // this step timed out; the job goes on
//!             }
//!         }
//!         done
//!     })
//!     .await
//! });
//! // 3 s + 5 s (cut off) + 1 s: within the job's 10 s. Had the steps taken longer, the
//! // outer `fail_after` would have cut off the step running at 10 s and given `Err`.
//! assert_eq!(outcome.unwrap(), ["fetch", "store"]);
//! ```
//!
//! # Inside a tokio program
//!
//! Nurseries, cancel scopes, [`JoinHandle`](crate::JoinHandle)s, [`finally`], remote
//! cancels and context variables are plain futures: they run under any executor, tokio's
//! included, and children may await tokio's I/O and timers. What needs a trellis runtime
//! is trellis's clock: [`sleep`], [`now`], deadlines and timeouts ([`move_on_after`],
//! [`fail_after`], [`CancelScope::with_deadline`]) panic with a message saying so. Use
//! tokio's timers there, or run a trellis runtime on a thread of its own
//! (`std::thread::spawn(|| trellis::run(..))`, or tokio's `spawn_blocking`).
//!
//! This program is `integration/examples/inside_tokio.rs`, which the integration tests
//! run (trellis does not depend on tokio, so it is not a doctest here):
//!
//! ```ignore
//! use std::time::Duration;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let names = vec!["a", "b", "c"];
//!     let out = trellis::nursery(async |n| {
//!         for name in &names {
//!             n.spawn(async move {
//!                 tokio::time::sleep(Duration::from_millis(1)).await; // tokio's timer
//!                 if *name == "b" { Err(format!("{name} failed")) } else { Ok(()) }
//!             });
//!         }
//!         Ok(())
//!     })
//!     .await;
//!     assert_eq!(out.unwrap_err().to_string(), "child 2 failed: b failed");
//!
//!     // A trellis clock on its own thread:
//!     let ran = tokio::task::spawn_blocking(|| {
//!         trellis::Builder::new().autojump().run(trellis::move_on_after(
//!             Duration::from_secs(1),
//!             trellis::sleep_forever(),
//!         ))
//!     });
//!     assert_eq!(ran.await.unwrap(), None);
//! }
//! ```
//!
//! # What is `!Send`, and why
//!
//! One runtime runs on one thread, and the handles into it ([`CancelScope`],
//! [`Nursery`](crate::Nursery), [`JoinHandle`](crate::JoinHandle), the futures of
//! [`nursery()`](crate::nursery()) and [`CancelScope::run`]) share its state without
//! locks: that is what makes spawning, cancelling and timeouts cheap. The compiler stops a
//! handle from crossing threads. To cancel from another thread (a signal handler thread, a
//! worker pool), take a [`RemoteCancel`](crate::RemoteCancel), which is `Send + Sync`:
//!
//! ```
//! let out = trellis::run(trellis::cancel_scope(async |scope| {
//!     let remote = scope.remote();
//!     std::thread::spawn(move || remote.cancel()); // applied at the runtime's next poll
//!     trellis::sleep_forever().await
//! }));
//! assert_eq!(out, None);
//! ```
//!
//! To run code *on* the runtime from another thread (a callback of a foreign library's
//! thread, a [`to_thread`](crate::to_thread) worker that needs the runtime for a moment),
//! take a [`RuntimeHandle`](crate::RuntimeHandle), which is `Send + Sync + Clone`: its
//! `run_sync` and `run` block that thread until the work is done on the runtime.
//!
//! ```
//! let answer = trellis::run(async {
//!     let handle = trellis::RuntimeHandle::current();
//!     let factor = std::rc::Rc::new(21); // `!Send`: it stays on the runtime's thread
//!     // The worker blocks in `run_sync`; the runtime runs the closure meanwhile.
//!     let two = trellis::to_thread(move || handle.run_sync(|| 2).unwrap()).await;
//!     two * *factor
//! });
//! assert_eq!(answer, 42);
//! ```
//!
//! Children need not be `Send`: they may hold `Rc`s and `RefCell` borrows of the caller's
//! data. Context variables' values are `Send + Clone`, because `to_thread` copies them to
//! its worker.
//!
//! [`CancelScope`]: crate::CancelScope
//! [`CancelScope::remote`]: crate::CancelScope::remote
//! [`CancelScope::run`]: crate::CancelScope::run
//! [`CancelScope::with_deadline`]: crate::CancelScope::with_deadline
//! [`finally`]: crate::finally
//! [`move_on_after`]: crate::move_on_after
//! [`fail_after`]: crate::fail_after
//! [`shield`]: crate::shield
//! [`sleep`]: crate::sleep
//! [`now`]: crate::now
//! [`current_effective_deadline`]: crate::current_effective_deadline

#![forbid(unsafe_code)]
