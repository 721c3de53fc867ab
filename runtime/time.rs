//! Time: the clock (real or mock), the timer queue, and the sleeping futures.
//!
//! # State
//!
//! - The [`Clock`] belongs to the runtime. A real clock reads [`Instant::now`]; a mock clock
//!   holds a virtual instant that only moves forward, by [`advance`] or, with autojump, by
//!   the executor when every task is blocked.
//! - The [`TimerQueue`] lives in user space, ordered by `(deadline, sequence)`. Arming is
//!   `O(log n)`, cancelling `O(1)` (amortised); the reactor only ever learns the nearest
//!   deadline, so a timer that is dropped before it fires costs no system call.
//! - Invariant: an entry is in the queue only while its owner (a [`Sleep`] or a cancel
//!   scope's deadline) is alive and armed; owners remove their entry when dropped.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Weak;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::cancel::ScopeNode;
use crate::executor::with_core;
use crate::slab::Slab;

/// The source of "now" for one runtime.
#[derive(Debug)]
pub(crate) enum Clock {
    /// Wall-clock time, read from the operating system.
    Real,
    /// Virtual time that moves only when told to.
    Mock {
        /// The current virtual instant.
        now: Cell<Instant>,
        /// Jump to the next deadline whenever every task is blocked.
        autojump: bool,
    },
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Mock { now, .. } => now.get(),
        }
    }

    pub(crate) fn is_mock(&self) -> bool {
        matches!(self, Clock::Mock { .. })
    }

    /// Moves a mock clock to `to` (never backwards). Does nothing on the real clock.
    pub(crate) fn jump_to(&self, to: Instant) {
        if let Clock::Mock { now, .. } = self {
            if to > now.get() {
                now.set(to);
            }
        }
    }
}

/// Identifies one armed timer: its slot in the queue's slab and the sequence number it was
/// armed with (a slot is reused; the sequence number tells a stale key from a live one).
pub(crate) type TimerKey = (usize, u64);

/// What to do when a timer fires.
#[derive(Debug)]
pub(crate) enum TimerAction {
    /// Wake a task (a sleeping future).
    Wake(Waker),
    /// Cancel a scope whose deadline passed.
    CancelScope(Weak<ScopeNode>),
}

#[derive(Debug)]
struct Armed {
    seq: u64,
    action: TimerAction,
}

/// The runtime's timers, nearest deadline first.
///
/// A binary heap of `(deadline, sequence, slot)` over a slab of armed timers. Disarming
/// removes the slab entry in O(1) and leaves the heap entry behind as stale: it is skipped
/// when it reaches the top, and the heap is compacted when stale entries outnumber live
/// ones, so memory stays proportional to the armed timers. Ties fire in arming order.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    armed: Slab<Armed>,
    stale: usize,
    next_seq: u64,
}

impl TimerQueue {
    pub(crate) fn arm(&mut self, deadline: Instant, action: TimerAction) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.armed.insert(Armed { seq, action });
        self.heap.push(Reverse((deadline, seq, slot)));
        (slot, seq)
    }

    pub(crate) fn disarm(&mut self, (slot, seq): TimerKey) {
        if self.armed.get_mut(slot).is_some_and(|a| a.seq == seq) {
            self.armed.remove(slot);
            self.stale += 1;
            if self.stale > 64 && self.stale > self.armed.len() {
                let armed = &mut self.armed;
                self.heap.retain(|Reverse((_, seq, slot))| {
                    armed.get_mut(*slot).is_some_and(|a| a.seq == *seq)
                });
                self.stale = 0;
            }
        }
    }

    /// Replaces the waker of an armed timer, if it would wake a different task.
    pub(crate) fn update_waker(&mut self, (slot, seq): TimerKey, waker: &Waker) {
        if let Some(Armed {
            seq: armed_seq,
            action: TimerAction::Wake(old),
        }) = self.armed.get_mut(slot)
        {
            if *armed_seq == seq && !old.will_wake(waker) {
                old.clone_from(waker);
            }
        }
    }

    /// Pops stale entries off the top, so that the top is live (or the heap empty).
    fn skip_stale(&mut self) {
        while let Some(Reverse((_, seq, slot))) = self.heap.peek() {
            if self.armed.get_mut(*slot).is_some_and(|a| a.seq == *seq) {
                return;
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
    }

    pub(crate) fn nearest(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((deadline, ..))| *deadline)
    }

    /// Removes and returns the earliest timer whose deadline is at or before `now`.
    ///
    /// Stale entries are skipped only once they are due: one not yet due ends the search
    /// at the cost of a peek (compaction bounds how many pile up).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerAction> {
        loop {
            let Reverse((deadline, seq, slot)) = *self.heap.peek()?;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if self.armed.get_mut(slot).is_some_and(|a| a.seq == seq) {
                return self.armed.remove(slot).map(|armed| armed.action);
            }
            self.stale = self.stale.saturating_sub(1);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}

/// Returns the current time of the running runtime's clock.
///
/// On a mock clock this is the virtual time, which starts at the instant the runtime was
/// built and moves only by [`advance`] or autojump.
///
/// # Panics
///
/// Panics when called outside a trellis runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     trellis::sleep(Duration::from_secs(3600)).await;
///     assert_eq!(trellis::now() - start, Duration::from_secs(3600));
/// });
/// ```
#[track_caller]
pub fn now() -> Instant {
    with_core(|core| core.clock.now())
}

/// Moves a mock clock forward by `by`, firing every timer that falls due.
///
/// # Panics
///
/// Panics outside a runtime, or when the runtime runs on the real clock (time there cannot
/// be moved).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().mock_clock().run(async {
///     let start = trellis::now();
///     trellis::advance(Duration::from_secs(5));
///     assert_eq!(trellis::now() - start, Duration::from_secs(5));
/// });
/// ```
#[track_caller]
pub fn advance(by: Duration) {
    with_core(|core| {
        assert!(
            core.clock.is_mock(),
            "trellis::advance needs a mock clock; build the runtime with \
             `Builder::new().mock_clock()` or `.autojump()`"
        );
        core.clock.jump_to(core.clock.now() + by);
        core.fire_due_timers();
    })
}

/// Waits until `duration` has passed.
///
/// Equivalent to `sleep_until(now() + duration)`. A sleep of zero still yields once, like
/// [`yield_now`](crate::yield_now).
///
/// # Cancellation
///
/// Cancel-safe: dropping the future removes its timer; nothing else is lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     trellis::sleep(Duration::from_millis(10)).await;
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(now() + duration)
}

/// Waits until the clock reaches `deadline`.
///
/// A deadline in the past completes at the first poll. The timer is armed lazily, at the
/// first poll that finds the deadline still ahead.
///
/// # Cancellation
///
/// Cancel-safe: dropping the future removes its timer; nothing else is lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let deadline = trellis::now() + Duration::from_secs(1);
///     trellis::sleep_until(deadline).await;
///     assert!(trellis::now() >= deadline);
/// });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
    }
}

/// Waits forever (until dropped, typically by a cancelled scope).
///
/// # Cancellation
///
/// This future never completes; cancellation is the only way out.
pub async fn sleep_forever() {
    std::future::pending::<()>().await
}

/// The future returned by [`sleep`] and [`sleep_until`].
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The armed timer, once the first poll found the deadline in the future.
    timer: Option<TimerKey>,
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        with_core(|core| {
            if core.clock.now() >= self.deadline {
                if let Some(key) = self.timer.take() {
                    core.timers.borrow_mut().disarm(key);
                }
                return Poll::Ready(());
            }
            let mut timers = core.timers.borrow_mut();
            match self.timer {
                Some(key) => timers.update_waker(key, cx.waker()),
                None => {
                    let key = timers.arm(self.deadline, TimerAction::Wake(cx.waker().clone()));
                    self.timer = Some(key);
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            // The runtime may already be gone when a future outlives `run` (it was leaked
            // out, or is dropped during thread teardown): then there is no queue to clean.
            crate::executor::try_with_core(|core| core.timers.borrow_mut().disarm(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_pop_in_deadline_then_arming_order() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        let w = Waker::noop();
        q.arm(base + Duration::from_secs(2), TimerAction::Wake(w.clone()));
        let a = q.arm(base + Duration::from_secs(1), TimerAction::Wake(w.clone()));
        let b = q.arm(base + Duration::from_secs(1), TimerAction::Wake(w.clone()));
        assert_eq!(q.nearest(), Some(base + Duration::from_secs(1)));
        assert!(a.1 < b.1);
        assert!(q.pop_due(base).is_none());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_some());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_some());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn disarmed_timer_never_fires() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        let key = q.arm(base, TimerAction::Wake(Waker::noop().clone()));
        q.disarm(key);
        assert_eq!(q.len(), 0);
        assert!(q.pop_due(base + Duration::from_secs(10)).is_none());
        assert_eq!(q.nearest(), None);
    }

    #[test]
    fn many_disarmed_timers_are_compacted_away() {
        let base = Instant::now();
        let mut q = TimerQueue::default();
        let keep = q.arm(
            base + Duration::from_secs(5),
            TimerAction::Wake(Waker::noop().clone()),
        );
        for i in 0..10_000 {
            let key = q.arm(
                base + Duration::from_secs(i),
                TimerAction::Wake(Waker::noop().clone()),
            );
            q.disarm(key);
        }
        assert_eq!(q.len(), 1);
        assert!(
            q.heap.len() < 200,
            "stale entries must not pile up: {}",
            q.heap.len()
        );
        assert_eq!(q.nearest(), Some(base + Duration::from_secs(5)));
        q.disarm(keep);
        q.disarm(keep); // a second disarm of the same key is harmless
        assert_eq!(q.nearest(), None);
    }
}
