//! [`RemoteCancel`]: a `Send + Sync` handle that cancels a [`CancelScope`] from any thread.
//!
//! # State
//!
//! - A [`RemoteState`] is shared by a scope node (which holds it once
//!   [`CancelScope::remote`] was called) and every handle. `cancelled` goes from `false`
//!   to `true` once, from any thread; `owner` is the waker of the scope's owner, refreshed
//!   by the node on the runtime's thread at every poll of the owner.
//! - A cancel from another thread only sets the flag and wakes the owner (that waker
//!   travels up the task tree and reaches a parked runtime through `Poller::notify`). The
//!   scope itself is cancelled on the runtime's thread, when its owner next runs and finds
//!   the flag: the scope tree is never touched from another thread.
//! - `live` (the runtime's count of remote handles that can still wake it) tells the mock
//!   clock's deadlock check that another thread may still wake the runtime. A handle
//!   counts there from its making until it is dropped or its state is *spent*: the scope
//!   was cancelled through a handle (a second cancel does nothing, so wakes nothing) or
//!   exited (its owner's waker is gone). `armed` is how many of this state's handles
//!   count; spending takes them all off at once, and only after the cancel's wake, so a
//!   deadlock check that sees the count drop also sees that wake.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Waker;

#[cfg(doc)]
use crate::scope::cancel_scope::CancelScope;

/// What a scope node and its remote handles share.
#[derive(Debug, Default)]
pub(crate) struct RemoteState {
    cancelled: AtomicBool,
    owner: Mutex<Option<Waker>>,
    /// The runtime's count of live handles, from the first handle made inside a runtime.
    live: OnceLock<Arc<AtomicUsize>>,
    /// How many handles count in `live` (0 once spent).
    armed: AtomicUsize,
    /// Cancelled through a handle, or the scope exited: no handle can wake anything.
    spent: AtomicBool,
}

impl RemoteState {
    /// Whether a remote handle cancelled the scope (to be applied on the runtime's thread).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The scope has exited: drops the owner's waker, and the handles no longer keep the
    /// runtime waiting (a later cancel has nothing to wake).
    pub(crate) fn forget_owner(&self) {
        self.owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A cancel already under way spends the state itself, after its wake.
        if !self.is_cancelled() {
            self.spend();
        }
    }

    /// Takes every handle off the runtime's count (see the module docs).
    fn spend(&self) {
        self.spent.store(true, Ordering::Release);
        let armed = self.armed.swap(0, Ordering::AcqRel);
        if let (Some(live), 1..) = (self.live.get(), armed) {
            // Release: a deadlock check that sees this also sees the wake before it.
            live.fetch_sub(armed, Ordering::Release);
        }
    }

    /// Counts a new handle in `live`, unless the state is spent; whether it counts.
    fn arm(&self, live: Option<&Arc<AtomicUsize>>) -> bool {
        let Some(live) = live.map(|live| self.live.get_or_init(|| live.clone())) else {
            return false;
        };
        if self.spent.load(Ordering::Acquire) {
            return false;
        }
        // A spend in between leaves this one counted until its drop: too long, never too
        // short (the deadlock check only waits longer).
        self.armed.fetch_add(1, Ordering::AcqRel);
        live.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A counted handle goes: off the count, unless a spend took it off already.
    fn disarm(&self) {
        let taken = self
            .armed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if let (Ok(_), Some(live)) = (taken, self.live.get()) {
            // Release: a deadlock check that sees this drop also sees every wake this
            // handle made before it (`rt/executor.rs`, `Core::deadlock`).
            live.fetch_sub(1, Ordering::Release);
        }
    }

    /// Records the waker of the scope's owner, which a remote cancel wakes.
    pub(crate) fn set_owner(&self, waker: &Waker) {
        let mut owner = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        match &*owner {
            Some(w) if w.will_wake(waker) => {}
            _ => *owner = Some(waker.clone()),
        }
    }
}

/// A handle that cancels a [`CancelScope`] from any thread: a signal thread, a worker,
/// another runtime. Made by [`CancelScope::remote`]; cheap to clone.
///
/// `CancelScope` itself is `!Send`: a scope belongs to the single-threaded runtime it runs
/// in, and its state is touched without locks. This handle carries only a flag and a
/// waker, both thread-safe.
///
/// # Cancellation
///
/// [`cancel`](Self::cancel) takes effect on the scope's runtime, at the next poll of the
/// scope's owner, which the call wakes (through the reactor's notify if the runtime is
/// parked); from then on it is the same as [`CancelScope::cancel`], with
/// [`CancelReason::Explicit`](crate::CancelReason::Explicit). A cancel before the scope
/// runs is applied when it starts; after it finished, it does nothing.
///
/// # Examples
///
/// ```
/// use trellis::CancelScope;
///
/// let finished = trellis::run(async {
///     let scope = CancelScope::new();
///     let remote = scope.remote();
///     let worker = std::thread::spawn(move || remote.cancel());
///     let out = scope.run(trellis::sleep_forever()).await;
///     worker.join().unwrap();
///     out
/// });
/// assert_eq!(finished, None);
/// ```
pub struct RemoteCancel {
    state: Arc<RemoteState>,
    /// This handle counts in the state's `live` (see the module docs).
    counted: bool,
}

impl RemoteCancel {
    pub(crate) fn new(state: Arc<RemoteState>, live: Option<Arc<AtomicUsize>>) -> RemoteCancel {
        let counted = state.arm(live.as_ref());
        RemoteCancel { state, counted }
    }

    /// Cancels the scope, from any thread. Idempotent.
    ///
    /// # Cancellation
    ///
    /// See the type's docs: the scope is cancelled on its runtime at the next poll of its
    /// owner, and its units are dropped at their next suspension.
    ///
    /// # Examples
    ///
    /// ```
    /// let scope = trellis::CancelScope::new();
    /// let remote = scope.remote();
    /// remote.cancel();
    /// remote.cancel(); // idempotent
    /// let out = trellis::run(scope.run(trellis::sleep_forever()));
    /// assert_eq!(out, None);
    /// ```
    pub fn cancel(&self) {
        if self.state.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let owner = self
            .state
            .owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(owner) = owner {
            owner.wake();
        }
        self.state.spend();
    }

    /// Whether [`cancel`](Self::cancel) was called through any handle of this scope.
    ///
    /// # Examples
    ///
    /// ```
    /// let remote = trellis::CancelScope::new().remote();
    /// assert!(!remote.is_cancelled());
    /// remote.cancel();
    /// assert!(remote.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }
}

impl Clone for RemoteCancel {
    fn clone(&self) -> RemoteCancel {
        // The state knows the runtime's count once a handle was made inside one.
        RemoteCancel::new(self.state.clone(), self.state.live.get().cloned())
    }
}

impl Drop for RemoteCancel {
    fn drop(&mut self) {
        if self.counted {
            self.state.disarm();
        }
    }
}

impl fmt::Debug for RemoteCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
