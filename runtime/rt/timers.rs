//! The timer queue: every deadline of a runtime (sleeps, scope deadlines), nearest first.
//!
//! # State
//!
//! - The [`TimerQueue`] lives in user space, ordered by `(deadline, sequence)`. Arming is
//!   `O(log n)`, cancelling `O(1)` (amortised); the reactor only ever learns the nearest
//!   deadline, so a timer that is dropped before it fires costs no system call.
//! - Every queue belongs to one runtime and knows its [`RuntimeId`]; every [`TimerKey`]
//!   carries the id of the queue that issued it. `disarm` and `update_waker` ignore a key
//!   from another runtime (a plain integer compare), so a timer owner moved to another
//!   runtime or thread can never remove or rewire that runtime's entries.
//! - Invariant: an entry is in the queue only while its owner (a `Sleep` or a cancel
//!   scope's deadline) is alive and armed; owners remove their entry when dropped. The one
//!   exception: an owner dropped outside its runtime (on another thread, or after its
//!   runtime moved on to another `run`) cannot reach its queue, so the entry stays until
//!   its deadline and then wakes a waker nobody waits on (an autojump runtime may jump to
//!   it; the wake is spurious and harmless).
//! - A timer's action is a waker or an [`Expire`] target: the engine knows nothing of
//!   what holds a deadline.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Weak;
use std::task::Waker;
use std::time::Instant;

use slab::Slab;

use crate::rt::state::RuntimeId;

/// Identifies one armed timer: the runtime whose queue armed it, its slot in the queue's
/// slab and the sequence number it was armed with (a slot is reused; the sequence number
/// tells a stale key from a live one, the runtime id a foreign key from an own one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    runtime: RuntimeId,
    slot: usize,
    seq: u64,
}

impl TimerKey {
    /// The runtime whose queue holds this timer.
    pub(crate) fn runtime(&self) -> RuntimeId {
        self.runtime
    }
}

/// What to do when a timer fires.
#[derive(Debug)]
pub(crate) enum TimerAction {
    /// Wake a task (a sleeping future).
    Wake(Waker),
    /// Tell a deadline holder (a cancel scope) that its deadline passed, if it still
    /// exists. A trait object, so that the engine knows nothing of what holds deadlines.
    Expire(Weak<dyn Expire>),
}

/// Something with a deadline on the runtime's timer queue, told when it passes. Called on
/// the runtime's thread, from the executor loop, never during a poll.
pub(crate) trait Expire: std::fmt::Debug {
    /// The deadline passed (the timer that was armed for it is gone).
    fn expire(&self);
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
#[derive(Debug)]
pub(crate) struct TimerQueue {
    /// The runtime this queue belongs to; stamped on every key it issues.
    runtime: RuntimeId,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    armed: Slab<Armed>,
    stale: usize,
    next_seq: u64,
}

impl TimerQueue {
    /// An empty queue for the runtime `runtime`.
    pub(crate) fn new(runtime: RuntimeId) -> TimerQueue {
        TimerQueue {
            runtime,
            heap: BinaryHeap::new(),
            armed: Slab::default(),
            stale: 0,
            next_seq: 0,
        }
    }

    pub(crate) fn arm(&mut self, deadline: Instant, action: TimerAction) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.armed.insert(Armed { seq, action });
        self.heap.push(Reverse((deadline, seq, slot)));
        TimerKey {
            runtime: self.runtime,
            slot,
            seq,
        }
    }

    /// Whether `key` was issued by this queue (by this runtime).
    fn owns(&self, key: TimerKey) -> bool {
        key.runtime == self.runtime
    }

    /// Removes the timer `key`, if it is still armed. A key from another runtime's queue is
    /// ignored: it names a slot of that queue, and removing our entry of the same slot and
    /// sequence would silently cancel an unrelated timer (disarm runs in destructors, which
    /// have no one to report the mistake to).
    pub(crate) fn disarm(&mut self, key: TimerKey) {
        if !self.owns(key) {
            return;
        }
        let TimerKey { slot, seq, .. } = key;
        if self.armed.get_mut(slot).is_some_and(|a| a.seq == seq) {
            self.armed.try_remove(slot);
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

    /// Replaces the waker of an armed timer, if it would wake a different task. A key from
    /// another runtime's queue is ignored, as in [`disarm`](TimerQueue::disarm).
    pub(crate) fn update_waker(&mut self, key: TimerKey, waker: &Waker) {
        if !self.owns(key) {
            return;
        }
        let TimerKey { slot, seq, .. } = key;
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
                return self.armed.try_remove(slot).map(|armed| armed.action);
            }
            self.stale = self.stale.saturating_sub(1);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn timers_pop_in_deadline_then_arming_order() {
        let base = Instant::now();
        let mut q = TimerQueue::new(RuntimeId::next());
        let w = Waker::noop();
        q.arm(base + Duration::from_secs(2), TimerAction::Wake(w.clone()));
        let a = q.arm(base + Duration::from_secs(1), TimerAction::Wake(w.clone()));
        let b = q.arm(base + Duration::from_secs(1), TimerAction::Wake(w.clone()));
        assert_eq!(q.nearest(), Some(base + Duration::from_secs(1)));
        assert!(a.seq < b.seq);
        assert!(q.pop_due(base).is_none());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_some());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_some());
        assert!(q.pop_due(base + Duration::from_secs(1)).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn disarmed_timer_never_fires() {
        let base = Instant::now();
        let mut q = TimerQueue::new(RuntimeId::next());
        let key = q.arm(base, TimerAction::Wake(Waker::noop().clone()));
        q.disarm(key);
        assert_eq!(q.len(), 0);
        assert!(q.pop_due(base + Duration::from_secs(10)).is_none());
        assert_eq!(q.nearest(), None);
    }

    #[test]
    fn many_disarmed_timers_are_compacted_away() {
        let base = Instant::now();
        let mut q = TimerQueue::new(RuntimeId::next());
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

    /// Two queues (two runtimes) issue the same slot and sequence for their first timer:
    /// a key must only ever act on the queue that issued it.
    #[test]
    fn a_key_from_another_runtime_never_disarms_or_rewires_a_timer() {
        let base = Instant::now();
        let mut a = TimerQueue::new(RuntimeId::next());
        let mut b = TimerQueue::new(RuntimeId::next());
        let key_a = a.arm(base, TimerAction::Wake(Waker::noop().clone()));
        let key_b = b.arm(base, TimerAction::Wake(Waker::noop().clone()));
        assert_eq!((key_a.slot, key_a.seq), (key_b.slot, key_b.seq));
        assert_ne!(key_a.runtime(), key_b.runtime());

        b.disarm(key_a);
        assert_eq!(b.len(), 1, "a foreign key disarmed this queue's timer");
        let flag = Arc::new(Flag::default());
        b.update_waker(key_a, &Waker::from(flag.clone()));
        match b.pop_due(base) {
            Some(TimerAction::Wake(waker)) => waker.wake(),
            other => panic!("expected the timer to fire, got {other:?}"),
        }
        assert!(
            !flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "a foreign key replaced this queue's waker"
        );
        a.disarm(key_a);
        assert_eq!(a.len(), 0, "the own key still disarms");
    }

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
