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
//! - [Why did this not compile?](#why-did-this-not-compile): the compiler's errors about
//!   nurseries, the rule behind each, and what to write instead.
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
//! Race the attempts in a nursery inside a scope; one that succeeds records its result and
//! cancels the scope, which cancels the others. Failures that should not stop the race
//! are handled inside each attempt, so they never reach the nursery. (Two that succeed in
//! the same instant both run to their `cancel`, since cancellation is delivered at
//! suspensions only: keep the first with `if winner.get().is_none()` where that matters.)
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
//! [`fail_after`], [`CancelScope::with_deadline`]) panic with a message saying so, as
//! does [`to_thread`](crate::to_thread) (its workers are the runtime's). Use
//! tokio's timers there, or run a trellis runtime on a thread of its own
//! (`std::thread::spawn(|| trellis::run(..))`, or tokio's `spawn_blocking`).
//!
//! A nursery child gets its own copy of the context variables, under any executor; code
//! outside nursery children is outside a trellis runtime and uses the thread's context,
//! which every tokio task on that thread shares. To give a tokio task a context of its
//! own, spawn it as `tokio::task::spawn_local(trellis::Context::new().run(fut))` (or
//! `Context::current().run(fut)`, a copy of the spawner's values).
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
//! # Why did this not compile?
//!
//! A nursery's handle, and every [`JoinHandle`](crate::JoinHandle) it makes, is only valid
//! inside the nursery's body: the compiler enforces it with a lifetime (the handle's brand)
//! that no code outside the body can name, and with `!Send`. `#[nursery]` and
//! [`open_nursery!`](crate::open_nursery) recognise the common escapes and say so in
//! their own words (for example "a child cannot use the nursery's handle `n`: ... give the
//! child its own with `n.spawn_with(async |n| ..)`"); with the plain
//! [`nursery()`](crate::nursery()) function, or a shape the macros do not recognise, the
//! compiler reports the borrow checker's error instead. Each entry below is one such error,
//! the rule behind it, and the fix.
//!
//! ## E0373 "async block may outlive the current function, but it borrows `local`" (or `n`)
//!
//! **Rule**: a child may borrow only what outlives the `nursery(..)` call, not the body's
//! locals and not the handle (both are dropped when the body returns, while children may
//! still run). **Fix**: a child that spawns siblings takes a handle of its own with
//! [`spawn_with`](crate::Nursery::spawn_with); data a child borrows is declared before the
//! nursery.
//!
//! ```compile_fail,E0373
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         let local = String::from("dies with the body");
//!         n.spawn(async { println!("{local}") }); // declare `local` before `nursery(..)`
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! The fix, for a child that spawns:
//!
//! ```
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         n.spawn_with(async |n| n.start_soon(async {}));
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## E0505 "cannot move out of `n` because it is borrowed"
//!
//! **Rule**: the handle belongs to the body; `async move` would move it into a child, which
//! is stored inside the very nursery the handle refers to. **Fix**: as above,
//! `n.spawn_with(async |n| ..)`; to move other values into a child, move references to
//! them (`let data = &data;`) and leave the handle out.
//!
//! ```compile_fail,E0505
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         n.spawn(async move {
//!             n.spawn(async {});
//!         });
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## E0521 "borrowed data escapes outside of closure"
//!
//! **Rule**: a reference to the handle, or a `JoinHandle`, moved into a child escapes the
//! body (a `JoinHandle` carries the handle's brand, so a sibling cannot await it either).
//! **Fix**: for the handle, `spawn_with`; to pass a child's result to a sibling, use a
//! channel or a [`Cell`](std::cell::Cell) declared outside the nursery, or await the
//! `JoinHandle` in the body.
//!
//! ```compile_fail,E0521
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         let first = n.spawn(async {});
//!         n.spawn(async move {
//!             let _ = first.await;
//!         });
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## E0597 "`names` does not live long enough", where `names` is a local of the body
//!
//! **Rule**: the same as for E0373, when the child borrows a body local through a
//! reference it was given (`for name in &names { n.spawn(async move { .. name .. }) }`):
//! the child may run after the body has returned and dropped `names`; the note "lifetime
//! `'1` appears in the type of `n`" points at the handle's brand. **Fix**: declare the
//! data before `nursery(..)`, or move the data itself into the child.
//!
//! ```compile_fail,E0597
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         let names = vec!["ada", "grace"]; // declare it before `nursery(..)`
//!         for name in &names {
//!             n.spawn(async move { println!("{name}") });
//!         }
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## E0597 "`n` does not live long enough"
//!
//! **Rule**: a `spawn_with` (or `start`) child gets its own handle; capturing the outer one
//! still borrows the body's handle past the body. **Fix**: use the handle the closure
//! receives.
//!
//! ```compile_fail,E0597
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         let outer = &n;
//!         n.spawn_with(async move |_own| {
//!             outer.spawn(async {}); // write `async move |n| n.spawn(..)`
//!         });
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## "lifetime may not live long enough"
//!
//! **Rule**: the handle and its `JoinHandle`s cannot leave the body: not returned, not
//! stored in a variable or parameter declared outside it (the error points at the whole
//! body and says "returning this value requires that `'1` must outlive `'2`"; the
//! "mutable references are invariant" note that may follow is about the place the handle
//! was stored in). **Fix**: return a value computed with the handle, await `JoinHandle`s
//! in the body, and let code that must spawn into the nursery later receive it as a
//! parameter (`&Nursery<'_, '_, E>`) of a function the body calls.
//!
//! ```compile_fail
//! trellis::run(async {
//!     let mut stash = None;
//!     trellis::nursery(async |n| {
//!         stash = Some(n);
//!     })
//!     .await
//!     .unwrap();
//!     drop(stash);
//! });
//! ```
//!
//! The fix: the body passes its handle down.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use trellis::Nursery;
//!
//! fn start_workers(n: &Nursery<'_, '_, Infallible>, count: usize) {
//!     for _ in 0..count {
//!         n.start_soon(async {});
//!     }
//! }
//!
//! trellis::run(async {
//!     trellis::nursery(async |n| start_workers(&n, 3)).await.unwrap();
//! });
//! ```
//!
//! ## E0277 "`Rc<...Shared...>` cannot be sent between threads safely"
//!
//! **Rule**: a nursery belongs to one task on one thread (see [What is `!Send`, and
//! why](#what-is-send-and-why)); the error names a private `Rc` inside the handle (or
//! inside a [`CancelScope`]) and then "required because it appears within the type
//! `Nursery`". `tokio::spawn` fails the same way; a `'static` box (`Box<dyn Trait>`
//! without a lifetime) fails with a lifetime error instead, since the handle is not
//! `'static`.
//! **Fix**: keep the spawning on the runtime's thread; give a thread plain data
//! ([`to_thread`](crate::to_thread) runs a closure on a worker and returns its value), a
//! [`RemoteCancel`](crate::RemoteCancel) to cancel from there, or a
//! [`RuntimeHandle`](crate::RuntimeHandle) to run code back on the runtime.
//!
//! ```compile_fail,E0277
//! trellis::run(async {
//!     trellis::nursery(async |n| {
//!         std::thread::spawn(move || drop(n));
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```
//!
//! ## Errors about what children and bodies return
//!
//! These come with a message of trellis's own (`#[diagnostic::on_unimplemented]` on
//! [`TaskOutput`](crate::TaskOutput) and [`BodyOutput`](crate::BodyOutput)): "a nursery
//! child must return `()`, `Result<_, E>` or `!`", "a nursery body must return `()`,
//! `Result<_, _>` or `!`". When a child returns `Ok(..)` and nothing names the error type,
//! the compiler says E0282 "type annotations needed": name it in the body's return type
//! (`async |n| -> Result<(), MyError>`), as the `# Errors` section of
//! [`nursery()`](crate::nursery()) shows.
//!
//! ```compile_fail,E0277
//! trellis::run(async {
//!     let _ = trellis::nursery(async |n| {
//!         n.spawn(async { 42 }); // a child returns `()`, `Result` or `!`: `Ok(42)`
//!     })
//!     .await;
//! });
//! ```
//!
//! ## E0271 "type mismatch resolving `<() as BodyOutput>::Error == ...`", and "`?` couldn't convert the error to `Infallible`"
//!
//! **Rule**: the body's return type fixes the nursery's error type; a body that returns
//! `()` makes it [`Infallible`](std::convert::Infallible), so no child may fail. **Fix**:
//! return `Ok(())` from the body (`Ok::<_, MyError>(())` or `async |n| -> Result<(),
//! MyError>`) when children can fail.
//!
//! ```compile_fail,E0271
//! trellis::run(async {
//!     let _ = trellis::nursery(async |n| {
//!         n.spawn(async { Err::<(), _>(std::fmt::Error) });
//!         // add `Ok::<_, std::fmt::Error>(())` here
//!     })
//!     .await;
//! });
//! ```
//!
//! ```compile_fail,E0277
//! fn read_config() -> std::io::Result<()> {
//!     Ok(())
//! }
//! trellis::run(async {
//!     let _ = trellis::nursery(async |n| {
//!         n.spawn(async {
//!             read_config()?; // `?` converts into the nursery's error type: `Infallible`
//!             Ok(())
//!         });
//!     })
//!     .await;
//! });
//! ```
//!
//! ## E0308 "expected `Result<(), E>`, found `()`" on a `#[nursery]` function
//!
//! **Rule**: the body of a `#[nursery]` function is checked as an async closure's body
//! with the declared return type, so a body returning a `Result` ends in `Ok(..)`, as a
//! function's does. The notes that follow the error ("no two async blocks, even if
//! identical, have the same type", "consider pinning your async block") are about that
//! closure and do not apply. **Fix**: end the body with `Ok(())`.
//!
//! ```compile_fail,E0308
//! use trellis::{Nursery, nursery};
//!
//! #[nursery]
//! async fn jobs(n: Nursery) -> Result<(), String> {
//!     n.spawn(async { Err::<(), _>("failed".to_string()) });
//!     // add `Ok(())` here
//! }
//! ```
//!
//! ## E0308 "expected `!`, found `()`" on a `#[nursery]` function
//!
//! **Rule**: a `-> !` nursery body must not be able to finish. **Fix**: end it with
//! `loop { sleep_forever().await }`, or return `()` / `Result` if it can finish.
//!
//! ```compile_fail,E0308
//! use trellis::{Nursery, nursery};
//!
//! #[nursery]
//! async fn serve(n: Nursery, stop: bool) -> ! {
//!     loop {
//!         n.start_soon(async {});
//!         if stop {
//!             break; // the body can finish: return `()` instead of `!`
//!         }
//!     }
//! }
//! ```
//!
//! ## E0658 "attributes on expressions are experimental"
//!
//! **Rule**: `#[nursery]` goes on an `async fn`, not on a closure. **Fix**: inside async
//! code, write [`open_nursery! { |n| .. }`](crate::open_nursery).
//!
//! ```compile_fail,E0658
//! use trellis::nursery;
//!
//! trellis::run(async {
//!     let _body = #[nursery] async |n| {}; // write `open_nursery! { |n| }`
//! });
//! ```
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
