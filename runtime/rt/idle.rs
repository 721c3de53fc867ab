//! Waiting for the runtime to be idle: the engine side of
//! [`wait_all_tasks_blocked`](crate::testing::wait_all_tasks_blocked).
//!
//! # State
//!
//! `Core::idle` ([`IdleWaiters`]) holds the wakers of the futures waiting for the runtime
//! to be idle, each under an id, and an `epoch` that counts the times the executor found
//! the runtime idle with a waiter registered. A waiter records the epoch when it registers
//! and completes once the epoch has moved on.
//!
//! # The hook
//!
//! When the executor loop finds nothing woken (where it would look for a deadlock and
//! park, or jump the mock clock), it calls [`Core::wake_idle_waiters`] first. With no
//! waiter registered that returns `false` at once and the loop goes on unchanged. With
//! waiters, it looks at the reactor once without blocking (I/O that is already ready is
//! work, not idleness); if that woke nothing, it bumps the epoch, takes every waker and
//! wakes them all, and the loop polls again instead of parking, jumping or declaring a
//! deadlock. A dropped waiter removes its waker, so it never keeps the runtime busy.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_core::FusedFuture;

use crate::rt::state::{Core, with_core};

/// The futures waiting for the runtime to be idle.
#[derive(Debug, Default)]
pub(crate) struct IdleWaiters {
    /// How many times the runtime was found idle with waiters registered.
    epoch: u64,
    /// The next waiter's id.
    next_id: u64,
    /// The waiters' wakers, by id; emptied each time they are woken.
    wakers: Vec<(u64, Waker)>,
}

impl Core {
    /// Called by the executor when nothing is woken, before it looks for a deadlock and
    /// parks. Returns `false` (having done nothing) when no waiter is registered or when
    /// I/O already ready woke the root; otherwise wakes every waiter and returns `true`.
    pub(crate) fn wake_idle_waiters(&self) -> bool {
        if self.idle.borrow().wakers.is_empty() {
            return false;
        }
        if self.io_woke_the_root() {
            return false;
        }
        let wakers = {
            let mut idle = self.idle.borrow_mut();
            idle.epoch += 1;
            std::mem::take(&mut idle.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
        true
    }
}

/// Waits until every other task of the runtime is blocked (Trio's
/// `trio.testing.wait_all_tasks_blocked`).
///
/// "Blocked" is the runtime's view: nothing is woken, no timer is due, and no I/O source
/// is ready, the point where the executor would park, jump a mock clock with autojump to
/// the next deadline, or declare a deadlock. The future completes there, *before* time
/// jumps (so [`now`](crate::now) has not moved) and instead of a deadlock. Every waiter
/// registered at that point completes together (Trio: waiters with the same cushion wake
/// together). Trio's `cushion` argument is left out: the wait is for idleness now, not
/// for idleness lasting some time.
///
/// Work in flight elsewhere does not count as running: a task waiting for thread work
/// or for I/O that is not ready yet is blocked, so the waiter completes although a result
/// may come a moment later. On the real clock the same holds: the waiter completes
/// instead of parking, even with timers armed.
///
/// A task that awaits this in a loop keeps the runtime busy: it never parks and time
/// never jumps while it waits.
///
/// # Cancellation
///
/// Cancel-safe: a waiter dropped before the runtime was idle unregisters, so it neither
/// completes nor keeps the runtime from parking or from being declared deadlocked.
///
/// # Panics
///
/// Panics when first polled outside a trellis runtime.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use trellis::testing::wait_all_tasks_blocked;
///
/// let steps = Cell::new(0);
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     trellis::nursery(async |n| {
///         let child = n.spawn(async {
///             for _ in 0..3 {
///                 trellis::yield_now().await;
///                 steps.set(steps.get() + 1);
///             }
///             trellis::sleep_forever().await;
///         });
///         wait_all_tasks_blocked().await;
///         assert_eq!(steps.get(), 3, "the child ran until it blocked");
///         assert_eq!(trellis::now(), start, "before time jumps");
///         child.cancel();
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn wait_all_tasks_blocked() -> WaitAllTasksBlocked {
    WaitAllTasksBlocked {
        state: State::Unpolled,
    }
}

/// The future of [`wait_all_tasks_blocked`](crate::testing::wait_all_tasks_blocked)
/// (`FusedFuture`).
///
/// It is `!Send`: it belongs to the runtime that first polled it. Polling it again after
/// it completed panics.
#[must_use = "futures do nothing unless awaited"]
pub struct WaitAllTasksBlocked {
    state: State,
}

enum State {
    Unpolled,
    Waiting { core: Rc<Core>, id: u64, epoch: u64 },
    Done,
}

impl fmt::Debug for WaitAllTasksBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Unpolled => "unpolled",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("WaitAllTasksBlocked")
            .field("state", &state)
            .finish()
    }
}

impl Future for WaitAllTasksBlocked {
    type Output = ();

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.state {
            State::Done => panic!("`WaitAllTasksBlocked` polled after it completed"),
            State::Unpolled => {
                let core = with_core(Rc::clone);
                let (id, epoch) = {
                    let mut idle = core.idle.borrow_mut();
                    let id = idle.next_id;
                    idle.next_id += 1;
                    idle.wakers.push((id, cx.waker().clone()));
                    (id, idle.epoch)
                };
                self.state = State::Waiting { core, id, epoch };
                Poll::Pending
            }
            State::Waiting { core, id, epoch } => {
                let mut idle = core.idle.borrow_mut();
                if idle.epoch != *epoch {
                    // Woken (its waker was taken with the others); nothing to remove.
                    drop(idle);
                    self.state = State::Done;
                    return Poll::Ready(());
                }
                let replaced = match idle.wakers.iter_mut().find(|(i, _)| i == id) {
                    Some((_, waker)) if !waker.will_wake(cx.waker()) => {
                        Some(std::mem::replace(waker, cx.waker().clone()))
                    }
                    Some(_) => None,
                    None => {
                        idle.wakers.push((*id, cx.waker().clone()));
                        None
                    }
                };
                // A waker's drop may run a foreign executor's code: not under the borrow.
                drop(idle);
                drop(replaced);
                Poll::Pending
            }
        }
    }
}

impl FusedFuture for WaitAllTasksBlocked {
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

impl Drop for WaitAllTasksBlocked {
    fn drop(&mut self) {
        if let State::Waiting { core, id, .. } = &self.state {
            // A waiter dropped before the runtime was idle (a cancellation) unregisters,
            // so the executor does not wake it (nor loop again for it).
            // The waker is dropped after the borrow ends, as in `poll`.
            let removed = core.idle.try_borrow_mut().ok().and_then(|mut idle| {
                let at = idle.wakers.iter().position(|(i, _)| i == id)?;
                Some(idle.wakers.remove(at))
            });
            drop(removed);
        }
    }
}
