//! Cancel scopes: Trio's cancellation model on top of Rust's drop-based cancellation.
//!
//! This module holds the public face: [`CancelScope`] and the [`ScopeRun`] future that
//! runs a body inside one, [`shield`], [`cancelled`] and [`current_effective_deadline`].
//! The tree of running scopes they act on, with its state and invariants, is in
//! `tree.rs`; the timeouts built on scopes are in `timeout.rs`.
//!
//! # Units and the next suspension
//!
//! Every running [`CancelScope`] and every nursery owns a node of the scope tree, and
//! cancellation flows down that tree. A **unit** is what a cancellation drops as a whole:
//! the body of a scope, the body of a nursery, or one nursery child. Each unit is dropped
//! separately, at its next suspension, unless it holds an active shield (then it runs on,
//! and the cancellation completes when the shield has finished).
//!
//! # The delivery rule
//!
//! Cancellation is delivered at suspension points only; code that does not await is never
//! interrupted. One rule for every unit:
//!
//! - A unit that returns `Pending` while its scope is cancelled (and holds no shield) is
//!   dropped right there, without another poll.
//! - A unit that has not run yet runs to its first suspension, also when it starts inside
//!   a cancelled scope or past its deadline: a scope body, a nursery body, a child spawned
//!   into a cancelled nursery. A body that returns (or fails) before suspending is
//!   reported as if nothing had been cancelled.
//! - A unit that was already suspended when the cancellation arrived from elsewhere (a
//!   sibling, a deadline, a shield turned off) is polled once more if it may have been
//!   woken: a value that is ready in the same instant as the cancellation is kept, and a
//!   shield entered in that step is honoured. A scope's body shares its owner's waker, so a
//!   [`ScopeRun`] always grants that extra poll; a nursery grants it only to units whose
//!   waker fired.
//!
//! A scope whose body is gone has exited, whether or not it caught the cancellation: a
//! shield switched on by a destructor during the drop protects nothing.
//!
//! [`cancelled`] resolves only where a shield stops the cancellation: where the
//! cancellation reaches the caller, the caller's unit is dropped instead.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::scope::tree::{Stage, current_position};
// The scope tree's crate-internal API, under the path the nursery and the timer queue use.
pub(crate) use crate::scope::tree::{Position, ScopeNode, current_is_cancelled, enter};

pub use crate::instrument::reason::CancelReason;

/// A Trio cancel scope: a region of code that can be cancelled, by hand or by a deadline.
///
/// A `CancelScope` is a cheap, cloneable handle; any task of the runtime can cancel it or
/// move its deadline while another task runs code inside it. The code runs inside the
/// scope through [`run`](CancelScope::run), once.
///
/// Cancellation is level-triggered: once the scope is cancelled, every unit inside it (the
/// body, and each child of each nursery inside it) is dropped at its next suspension, except
/// units that hold an active [shield](CancelScope::set_shield), which finish first.
///
/// # Cancellation
///
/// - **Delivery at suspension points only.** Code that does not await is never
///   interrupted. Every unit — a scope body, a nursery body, a nursery child — runs to its
///   first suspension even when it starts inside a cancelled scope or past its deadline,
///   and is dropped there; one that returns (or fails) before suspending is reported as
///   usual. [`sleep(Duration::ZERO)`](crate::sleep) and [`yield_now`](crate::yield_now)
///   are such suspensions (Trio's checkpoints).
/// - A nursery that an enclosing scope cancels never completes with a value, even if its
///   body had returned one: the enclosing scope reports the cancellation.
/// - When nested scopes are both cancelled, the outermost cancelled one catches the
///   cancellation (its `run` gives `None` and [`cancelled_caught`](Self::cancelled_caught)
///   is true); the inner ones only drop their bodies.
/// - A scope's deadline and explicit [`cancel`](Self::cancel) act on the scope itself, also
///   when it is shielded: a shield only stops *enclosing* cancellations.
/// - Children of a nursery belong to the nursery's scopes, not to the scope in which
///   `spawn` was called.
/// - Dropping the [`ScopeRun`] future from outside drops the body at once, shields
///   included (a hard cancel).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::CancelScope;
///
/// trellis::Builder::new().autojump().run(async {
///     let scope = CancelScope::new();
///     let handle = scope.clone();
///     let out = trellis::nursery(async |n| {
///         n.spawn(async move {
///             trellis::sleep(Duration::from_secs(1)).await;
///             handle.cancel();
///         });
///         let finished = scope.run(trellis::sleep_forever()).await;
///         Ok::<_, ()>(finished)
///     })
///     .await
///     .unwrap();
///     assert_eq!(out, None); // the nursery finished; the scope was cancelled
/// });
/// ```
#[derive(Clone)]
pub struct CancelScope {
    node: Rc<ScopeNode>,
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelScope")
            .field("stage", &self.node.stage())
            .field("cancel_called", &self.node.cancel_called())
            .field("reason", &self.node.reason())
            .field("deadline", &self.node.deadline())
            .field("shield", &self.node.shield())
            .field("cancelled_caught", &self.node.caught())
            .finish()
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        CancelScope::new()
    }
}

impl CancelScope {
    /// A new scope with no deadline and no shield. Configure it with the `with_*` methods.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let scope = CancelScope::new().with_timeout(Duration::from_secs(1));
    ///     assert_eq!(scope.run(trellis::sleep_forever()).await, None);
    /// });
    /// ```
    pub fn new() -> CancelScope {
        CancelScope {
            node: ScopeNode::new(None, false),
        }
    }

    /// This scope, cancelling itself at `deadline` (replacing any deadline or timeout set
    /// before).
    ///
    /// # Cancellation
    ///
    /// As [`set_deadline`](Self::set_deadline): a deadline already past when the scope
    /// starts cancels it at once, and the body runs to its first suspension.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let deadline = trellis::now() + Duration::from_secs(5);
    ///     let scope = CancelScope::new().with_deadline(deadline);
    ///     assert_eq!(scope.deadline(), Some(deadline));
    ///     assert_eq!(scope.run(trellis::sleep_forever()).await, None);
    ///     assert_eq!(trellis::now(), deadline);
    /// });
    /// ```
    #[track_caller]
    pub fn with_deadline(self, deadline: Instant) -> CancelScope {
        self.set_deadline(deadline);
        self
    }

    /// This scope, cancelling itself `timeout` after it starts running (Trio's relative
    /// deadline): the clock starts at the scope's first poll, not here. A `timeout` too
    /// long for the clock (`Duration::MAX`) means no deadline. Replaces any deadline set
    /// before; on a scope that already runs, the deadline is `now() + timeout`.
    ///
    /// # Cancellation
    ///
    /// The deadline, once resolved, acts as one given to
    /// [`with_deadline`](Self::with_deadline); until the scope starts,
    /// [`deadline`](Self::deadline) is `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let scope = CancelScope::new().with_timeout(Duration::from_secs(2));
    ///     trellis::sleep(Duration::from_secs(1)).await; // not counted: not started yet
    ///     assert_eq!(scope.run(trellis::sleep_forever()).await, None);
    ///     assert_eq!(trellis::now() - start, Duration::from_secs(3));
    /// });
    /// ```
    #[track_caller]
    pub fn with_timeout(self, timeout: Duration) -> CancelScope {
        if self.node.stage() == Stage::Idle {
            self.node.set_timeout(timeout);
        } else {
            self.node
                .set_deadline(crate::rt::clock::now().checked_add(timeout));
        }
        self
    }

    /// This scope, shielded (or not) from enclosing cancellations; see
    /// [`set_shield`](Self::set_shield).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     // Clean-up that an enclosing timeout cannot cut short, bounded by its own.
    ///     let cleaned = trellis::move_on_after(Duration::from_secs(1), async {
    ///         let cleanup = CancelScope::new()
    ///             .with_shield(true)
    ///             .with_timeout(Duration::from_secs(5));
    ///         cleanup.run(trellis::sleep(Duration::from_secs(2))).await
    ///     })
    ///     .await;
    ///     assert_eq!(cleaned, Some(Some(())));
    /// });
    /// ```
    pub fn with_shield(self, shield: bool) -> CancelScope {
        self.set_shield(shield);
        self
    }

    pub(crate) fn from_node(node: Rc<ScopeNode>) -> CancelScope {
        CancelScope { node }
    }

    /// Runs `fut` inside this scope: `Some(output)` when it completes, `None` when the
    /// scope was cancelled first (then `cancelled_caught()` is true).
    ///
    /// Cancellation is delivered at suspensions only: a scope cancelled before `run` is
    /// first polled (explicitly, or by a deadline that has already passed) still polls
    /// `fut` once, and drops it at its first suspension; a `fut` that completes without
    /// suspending gives `Some`. An output that is ready in the same poll as the
    /// cancellation is kept: a deadline and an operation completing at the same instant
    /// give `Some`. A body that cancels its own scope and then finishes without suspending
    /// also gives `Some` (the cancellation was never delivered; `cancelled_caught` stays
    /// false).
    ///
    /// # Panics
    ///
    /// Panics (when polled) if this scope has already been run: a scope runs once.
    ///
    /// # Cancellation
    ///
    /// When this scope is cancelled, the body is dropped at its next suspension unless it
    /// holds a shield; then it runs until the shield is gone. When an *enclosing* scope is
    /// cancelled, this scope does not catch it: its body is dropped (unless shielded) and
    /// the future stays pending until the enclosing owner drops it. Either way the scope
    /// has exited once its body is dropped. Dropping the future from outside drops the body
    /// at once, shields included.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let fast = CancelScope::new().with_timeout(Duration::from_secs(5));
    ///     let out = fast.run(async {
    ///         trellis::sleep(Duration::from_secs(1)).await;
    ///         7
    ///     });
    ///     assert_eq!(out.await, Some(7));
    ///
    ///     let slow = CancelScope::new().with_timeout(Duration::from_secs(5));
    ///     let handle = slow.clone(); // `run` takes the scope
    ///     assert_eq!(slow.run(trellis::sleep(Duration::from_secs(10))).await, None);
    ///     assert!(handle.cancelled_caught());
    /// });
    /// ```
    pub fn run<F: Future>(self, fut: F) -> ScopeRun<F> {
        ScopeRun {
            node: self.node,
            body: Some(fut),
            started: false,
            done: false,
        }
    }

    /// Runs `body` inside this scope, giving it a handle to the scope (no clone to make
    /// first): `Some(output)`, or `None` when the scope was cancelled. Otherwise as
    /// [`run`](Self::run).
    ///
    /// # Cancellation
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let out = trellis::Builder::new().autojump().run(async {
    ///     trellis::CancelScope::new()
    ///         .with_timeout(Duration::from_secs(60))
    ///         .run_with(async |scope| {
    ///             // The body can see and move its own deadline.
    ///             scope.set_deadline(trellis::now() + Duration::from_secs(1));
    ///             trellis::sleep_forever().await;
    ///         })
    ///         .await
    /// });
    /// assert_eq!(out, None);
    /// ```
    pub fn run_with<B, T>(self, body: B) -> impl futures_core::FusedFuture<Output = Option<T>>
    where
        B: AsyncFnOnce(CancelScope) -> T,
    {
        let handle = self.clone();
        self.run(body(handle))
    }

    /// Cancels the scope. Idempotent; the first reason is kept.
    ///
    /// # Cancellation
    ///
    /// Before the scope runs, the cancel is recorded: the body will run to its first
    /// suspension and be dropped there. While it runs, every unit inside is dropped at its
    /// next suspension (unless shielded); the owner is woken at once, so a body sleeping
    /// for an hour ends now. After the scope finished, the call is only recorded
    /// ([`cancel_called`](Self::cancel_called) becomes true, as in Trio) and changes
    /// nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let scope = CancelScope::new();
    ///     let out = trellis::nursery(async |n| {
    ///         let handle = scope.clone();
    ///         n.spawn(async move {
    ///             trellis::sleep(Duration::from_secs(1)).await;
    ///             handle.cancel();
    ///         });
    ///         Ok::<_, ()>(scope.run(trellis::sleep(Duration::from_secs(3600))).await)
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(out, None);
    ///     assert_eq!(trellis::now() - start, Duration::from_secs(1)); // not an hour
    /// });
    /// ```
    pub fn cancel(&self) {
        self.node.cancel(CancelReason::Explicit);
    }

    /// Whether [`cancel`](CancelScope::cancel) was called (at any time, also after the
    /// scope finished) or the deadline passed while the scope ran.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::new();
    ///     let handle = scope.clone();
    ///     assert_eq!(scope.run(async { 1 }).await, Some(1));
    ///     assert!(!handle.cancel_called());
    ///
    ///     handle.cancel(); // after the scope finished: only recorded
    ///     assert!(handle.cancel_called());
    ///     assert!(!handle.cancelled_caught());
    /// });
    /// ```
    pub fn cancel_called(&self) -> bool {
        self.node.cancel_called()
    }

    /// Why the scope was first cancelled, if it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::{CancelReason, CancelScope};
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let timed = CancelScope::new().with_timeout(Duration::from_secs(1));
    ///     assert_eq!(timed.cancel_reason(), None);
    ///     let handle = timed.clone();
    ///     timed.run(trellis::sleep_forever()).await;
    ///     assert_eq!(handle.cancel_reason(), Some(CancelReason::Deadline));
    ///
    ///     // An explicit cancel before the deadline: the first reason is kept.
    ///     let scope = CancelScope::new().with_timeout(Duration::from_secs(1));
    ///     let handle = scope.clone();
    ///     scope
    ///         .run_with(async |scope| {
    ///             scope.cancel();
    ///             trellis::sleep_forever().await;
    ///         })
    ///         .await;
    ///     assert_eq!(handle.cancel_reason(), Some(CancelReason::Explicit));
    /// });
    /// ```
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.node.reason()
    }

    /// Whether this scope caught a cancellation: it was the outermost cancelled scope and
    /// its body was dropped. False for a scope whose body finished anyway, and for a scope
    /// that was dropped by a cancellation of an enclosing scope.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let (outer, inner) = (CancelScope::new(), CancelScope::new());
    ///     let (o, i) = (outer.clone(), inner.clone());
    ///     let out = outer
    ///         .run(async {
    ///             inner
    ///                 .run(async {
    ///                     i.cancel();
    ///                     o.cancel();
    ///                     trellis::sleep_forever().await;
    ///                 })
    ///                 .await
    ///         })
    ///         .await;
    ///     assert_eq!(out, None);
    ///     // Both were cancelled; the outermost one caught it.
    ///     assert!(o.cancelled_caught());
    ///     assert!(!i.cancelled_caught());
    ///     assert!(i.cancel_called());
    /// });
    /// ```
    pub fn cancelled_caught(&self) -> bool {
        self.node.caught()
    }

    /// The scope's own deadline (not the effective one; see
    /// [`current_effective_deadline`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let scope = CancelScope::new().with_timeout(Duration::from_secs(2));
    ///     assert_eq!(scope.deadline(), None); // a timeout resolves when the scope starts
    ///     trellis::move_on_after(Duration::from_secs(1), async {
    ///         scope
    ///             .run_with(async |scope| {
    ///                 assert_eq!(scope.deadline(), Some(start + Duration::from_secs(2)));
    ///                 // Its own deadline, not the enclosing, earlier one:
    ///                 let effective = trellis::current_effective_deadline();
    ///                 assert_eq!(effective, Some(start + Duration::from_secs(1)));
    ///             })
    ///             .await
    ///     })
    ///     .await;
    /// });
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.node.deadline()
    }

    /// Sets or clears the deadline. Takes effect at once, also while the scope runs: a
    /// deadline moved earlier (or into the past) fires then; one moved later postpones it.
    ///
    /// # Cancellation
    ///
    /// A deadline that passes while the scope runs cancels it as [`cancel`](Self::cancel)
    /// would, with [`CancelReason::Deadline`]. On a scope that is already cancelled or has
    /// finished, the new deadline is only recorded. A deadline never fires early; on the
    /// mock clock it fires exactly at its instant, on the real clock perhaps a little
    /// after it (as a [`sleep`](crate::sleep) ends: see its "Precision").
    ///
    /// # Panics
    ///
    /// Panics when the scope is running in another trellis runtime than the current one
    /// (one that ran earlier on this thread and left the scope's future behind): a scope
    /// and its timer belong to the runtime they run in.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let out = CancelScope::new()
    ///         .with_timeout(Duration::from_secs(60))
    ///         .run_with(async |scope| {
    ///             scope.set_deadline(trellis::now() + Duration::from_secs(2)); // sooner
    ///             trellis::sleep_forever().await;
    ///         })
    ///         .await;
    ///     assert_eq!((out, trellis::now() - start), (None, Duration::from_secs(2)));
    /// });
    /// ```
    #[track_caller]
    pub fn set_deadline(&self, deadline: Instant) {
        self.node.set_deadline(Some(deadline));
    }

    /// Removes the deadline (and a relative timeout not yet started): the scope is then
    /// cancelled only by [`cancel`](Self::cancel) or an enclosing scope.
    ///
    /// # Panics
    ///
    /// As [`set_deadline`](Self::set_deadline), from another runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let out = CancelScope::new()
    ///         .with_timeout(Duration::from_secs(1))
    ///         .run_with(async |scope| {
    ///             scope.clear_deadline();
    ///             trellis::sleep(Duration::from_secs(5)).await;
    ///             "finished"
    ///         })
    ///         .await;
    ///     assert_eq!(out, Some("finished"));
    /// });
    /// ```
    #[track_caller]
    pub fn clear_deadline(&self) {
        self.node.set_deadline(None);
    }

    /// A `Send + Sync` handle that cancels this scope from any thread (a signal thread, a
    /// worker). See [`RemoteCancel`](crate::scope::remote::RemoteCancel).
    ///
    /// # Cancellation
    ///
    /// A cancel through the handle takes effect on this scope's runtime at the next poll
    /// of the scope's owner, which it wakes; then as [`cancel`](Self::cancel).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A worker thread decides when the runtime's loop stops.
    /// let ticks = trellis::run(async {
    ///     let scope = trellis::CancelScope::new();
    ///     let stop = scope.remote();
    ///     let (tick_tx, tick_rx) = std::sync::mpsc::channel::<()>();
    ///     let worker = std::thread::spawn(move || {
    ///         for _ in 0..3 {
    ///             tick_rx.recv().unwrap();
    ///         }
    ///         stop.cancel();
    ///     });
    ///     let mut ticks = 0;
    ///     scope
    ///         .run(async {
    ///             loop {
    ///                 ticks += 1;
    ///                 let _ = tick_tx.send(());
    ///                 trellis::sleep(Duration::from_millis(1)).await;
    ///             }
    ///         })
    ///         .await;
    ///     worker.join().unwrap();
    ///     ticks
    /// });
    /// assert!(ticks >= 3);
    /// ```
    pub fn remote(&self) -> crate::scope::remote::RemoteCancel {
        let live = crate::rt::state::try_with_core(|core| core.remote_handles.clone());
        crate::scope::remote::RemoteCancel::new(self.node.remote_state(), live)
    }

    /// Whether the scope shields its body from enclosing cancellations.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// let scope = CancelScope::new();
    /// assert!(!scope.shield());
    /// scope.set_shield(true);
    /// assert!(scope.shield());
    /// assert!(CancelScope::new().with_shield(true).shield());
    /// ```
    pub fn shield(&self) -> bool {
        self.node.shield()
    }

    /// Turns the shield on or off, also while the scope runs.
    ///
    /// # Cancellation
    ///
    /// A shielded scope's body is not dropped by the cancellation of an enclosing scope;
    /// the enclosing cancellation completes when the shielded body finishes. The scope's
    /// own `cancel` and deadline still apply. Turning the shield off while an enclosing
    /// scope is cancelled exposes the body: it is dropped at its next suspension, and so
    /// is every unshielded unit below it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let out = trellis::move_on_after(Duration::from_secs(1), async {
    ///         CancelScope::new()
    ///             .run_with(async |scope| {
    ///                 scope.set_shield(true);
    ///                 trellis::sleep(Duration::from_secs(3)).await; // the timeout waits for this
    ///                 scope.set_shield(false);
    ///                 trellis::sleep(Duration::from_secs(3)).await; // exposed: dropped here
    ///                 "not reached"
    ///             })
    ///             .await
    ///     })
    ///     .await;
    ///     assert_eq!(out, None);
    ///     assert_eq!(trellis::now() - start, Duration::from_secs(3));
    /// });
    /// ```
    pub fn set_shield(&self, shield: bool) {
        self.node.set_shield(shield);
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`CancelScope::run`].
    ///
    /// # Cancellation
    ///
    /// See [`CancelScope::run`]: its own scope's cancellation gives `None`; an enclosing
    /// one leaves it pending until dropped; dropping it drops the body at once, shields
    /// included.
    #[must_use = "a scope does nothing unless awaited"]
    #[project = ScopeRunProj]
    pub struct ScopeRun<F> {
        node: Rc<ScopeNode>,
        #[pin]
        body: Option<F>,
        started: bool,
        // It returned `Ready` (for `FusedFuture`). A body dropped by an enclosing
        // cancellation leaves it pending, not done: that owner drops it.
        done: bool,
    }

    impl<F> PinnedDrop for ScopeRun<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // Drop the body first: scopes inside it detach while their parents exist.
            this.body.set(None);
            if *this.started {
                this.node.detach();
                ScopeNode::recycle(this.node);
            }
        }
    }
}

impl<F> ScopeRun<F> {
    /// The scope's deadline (resolved at the first poll for a relative timeout).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.node.deadline()
    }
}

impl<F> fmt::Debug for ScopeRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeRun")
            .field("scope", &CancelScope::from_node(self.node.clone()))
            .field("finished", &self.body.is_none())
            .finish()
    }
}

impl<F: Future> Future for ScopeRun<F> {
    type Output = Option<F::Output>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let mut this = self.project();
        if !*this.started {
            this.start();
        }
        if this.body.as_mut().as_pin_mut().is_none() {
            // Dropped by an enclosing cancellation; that scope's owner drops us.
            return Poll::Pending;
        }
        this.node.set_owner(cx.waker());
        // The body is polled even when the scope is already cancelled (before its first
        // poll, or since its last one): cancellation is delivered at suspensions only, so
        // code that does not await runs on, a value that is ready in the same instant as
        // the cancellation is kept, and a shield entered in this step is honoured.
        let polled = {
            let _pos = enter(Position {
                node: this.node.clone(),
                unit: None,
            });
            this.body.as_mut().as_pin_mut().map(|b| b.poll(cx)).unwrap()
        };
        match polled {
            Poll::Ready(v) => {
                this.body.set(None);
                this.node.detach();
                *this.done = true;
                Poll::Ready(Some(v))
            }
            // Suspended while cancelled and not shielded: dropped at this suspension.
            Poll::Pending if this.node.is_cancelled() && this.node.shields_inside() == 0 => {
                this.finish_cancelled()
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `futures::select!` and other `futures-core` combinators take a scope (and so
/// [`move_on_after`](crate::move_on_after) and [`move_on_at`](crate::move_on_at)) without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let nap = trellis::sleep(Duration::from_secs(5));
///     let mut timeout = trellis::move_on_after(Duration::from_secs(1), nap);
///     assert!(!timeout.is_terminated());
///     assert_eq!((&mut timeout).await, None);
///     assert!(timeout.is_terminated());
/// });
/// ```
impl<F: Future> futures_core::FusedFuture for ScopeRun<F> {
    /// True once the scope has returned its `Some(output)` or caught its own cancellation
    /// (`None`). A scope whose body an enclosing cancellation dropped is not terminated: it
    /// stays pending until that scope's owner drops it.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<F: Future> ScopeRunProj<'_, F> {
    /// Attaches the scope where it is first polled (a relative timeout is resolved
    /// against the clock then: the time spent before the first poll does not count).
    #[track_caller]
    fn start(&mut self) {
        assert!(
            self.node.stage() == Stage::Idle,
            "this CancelScope was already run; a scope runs once — create a new one \
             with `CancelScope::new()`"
        );
        *self.started = true;
        self.node.attach();
    }

    /// Drops the body of a cancelled scope. The scope catches the cancellation when it is
    /// the outermost cancelled one on its unshielded path; otherwise the enclosing owner
    /// that catches it drops this future, which stays pending until then. Either way the
    /// scope has exited: with no body left, nothing it does (a shield turned on by a
    /// destructor, a cancel) can protect or hold anything.
    fn finish_cancelled(&mut self) -> Poll<Option<F::Output>> {
        self.body.set(None);
        let caught = self
            .node
            .cancel_source()
            .is_some_and(|source| source.is(self.node));
        self.node.set_caught(caught);
        self.node.detach();
        if caught {
            *self.done = true;
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Runs `body` in a new cancel scope, giving it the scope (Trio's
/// `with CancelScope() as cs:`): `Some(output)`, or `None` when the scope was cancelled.
/// The same as `CancelScope::new().run_with(body)`; configure the scope first
/// (`CancelScope::new().with_timeout(..).run_with(..)`) for a deadline or a shield.
///
/// # Cancellation
///
/// As [`CancelScope::run`]: the body is dropped at its next suspension once the scope is
/// cancelled (it runs to its first one even if cancelled at once); a cancellation of an
/// enclosing scope is not caught here.
///
/// # Examples
///
/// ```
/// let out = trellis::run(async {
///     trellis::cancel_scope(async |scope| {
///         scope.cancel(); // cancelled, but code that does not await runs on
///         trellis::yield_now().await; // ... until here
///         unreachable!("dropped at the suspension above");
///     })
///     .await
/// });
/// assert_eq!(out, None::<()>);
/// ```
pub fn cancel_scope<B, T>(body: B) -> impl futures_core::FusedFuture<Output = Option<T>>
where
    B: AsyncFnOnce(CancelScope) -> T,
{
    CancelScope::new().run_with(body)
}

/// Runs `fut` shielded from every enclosing cancellation and returns its output.
///
/// An enclosing scope that is cancelled while `fut` runs waits for it to finish before it
/// drops the code around it: this is how async clean-up is written (Trio's shielded
/// `finally`). Use [`CancelScope::set_shield`] for a shield with its own deadline.
///
/// # Cancellation
///
/// No scope can cancel it. Dropping it from outside (a hard cancel, as when a nursery
/// future is dropped inside `futures::select!`) drops it at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let finished = trellis::Builder::new().autojump().run(async {
///     let cleanup_done = std::cell::Cell::new(false);
///     trellis::move_on_after(Duration::from_secs(1), async {
///         trellis::shield(async {
///             trellis::sleep(Duration::from_secs(5)).await;
///             cleanup_done.set(true);
///         })
///         .await;
///     })
///     .await;
///     cleanup_done.get()
/// });
/// assert!(finished);
/// ```
pub async fn shield<F: Future>(fut: F) -> F::Output {
    let scope = CancelScope::new();
    scope.set_shield(true);
    match scope.run(fut).await {
        Some(v) => v,
        // Nothing else holds the scope, so nothing can cancel it.
        None => unreachable!("a shield with no handle and no deadline cannot be cancelled"),
    }
}

/// Resolves when a scope that encloses the caller is cancelled, looking through shields:
/// inside a shield it tells that the outside wants to stop.
///
/// It resolves only where a shield stops the cancellation. Where the cancellation reaches
/// the caller (no shield in between), the caller's unit is dropped at this suspension
/// instead, so `move_on_after(d, cancelled())` gives `None`. Outside any scope, or while
/// nothing enclosing is cancelled, it stays pending.
///
/// # Cancellation
///
/// Cancel-safe: it holds nothing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let out = trellis::move_on_after(Duration::from_secs(1), async {
///         trellis::shield(async {
///             // Keep serving until the outside asks us to stop, then finish cleanly.
///             trellis::cancelled().await;
///         })
///         .await;
///     })
///     .await;
///     // Nothing suspends after the shield, so its block finishes and the value is kept
///     // (`None` needs another suspension there, where the cancellation is delivered).
///     assert_eq!(out, Some(()));
/// });
/// ```
pub fn cancelled() -> Cancelled {
    Cancelled { done: false }
}

/// The future returned by [`cancelled`].
///
/// # Cancellation
///
/// Cancel-safe: dropping it loses nothing.
#[derive(Debug)]
#[must_use = "cancelled() does nothing unless awaited"]
pub struct Cancelled {
    /// It has returned `Ready` (for `FusedFuture`).
    done: bool,
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(pos) = current_position() else {
            return Poll::Pending;
        };
        // Where the cancellation reaches the caller (no shield in between), the caller's
        // unit is dropped at this suspension: resolving would let it run on instead.
        if pos.node.cancel_source().is_none() && pos.node.any_ancestor_cancelled() {
            self.done = true;
            return Poll::Ready(());
        }
        pos.node.add_listener(cx.waker());
        Poll::Pending
    }
}

/// `futures::select!` and other `futures-core` combinators take a `Cancelled` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// trellis::run(async {
///     let caught = trellis::CancelScope::new();
///     let scope = caught.clone();
///     caught
///         .run(trellis::shield(async move {
///             scope.cancel();
///             let mut stop = trellis::cancelled();
///             assert!(!stop.is_terminated());
///             (&mut stop).await;
///             assert!(stop.is_terminated());
///         }))
///         .await;
/// });
/// ```
impl futures_core::FusedFuture for Cancelled {
    /// True once it has resolved.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

/// The deadline that applies where this is called: the earliest deadline of the enclosing
/// scopes up to the nearest shield (a shielded scope's own deadline counts), or `None` when
/// there is none. Inside a nursery child, the enclosing scopes are the nursery's, not those
/// around the `spawn` call.
///
/// # Cancellation
///
/// A scope on that path that is already cancelled counts as a deadline of now (Trio
/// reports `-inf`), and so does a nursery child on it cancelled on its own
/// ([`JoinHandle::cancel`](crate::JoinHandle::cancel)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     assert_eq!(trellis::current_effective_deadline(), None);
///     let outer = trellis::now() + Duration::from_secs(5);
///     trellis::move_on_at(outer, async {
///         trellis::move_on_after(Duration::from_secs(60), async {
///             // The inner timeout does not extend the outer deadline.
///             assert_eq!(trellis::current_effective_deadline(), Some(outer));
///         })
///         .await;
///     })
///     .await;
/// });
/// ```
pub fn current_effective_deadline() -> Option<Instant> {
    current_position().and_then(|pos| pos.effective_deadline())
}
