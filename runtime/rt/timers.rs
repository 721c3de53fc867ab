//! The timer queue: every deadline of a runtime (sleeps, scope deadlines), nearest first.
//!
//! # State
//!
//! - The [`TimerQueue`] lives in user space, ordered by `(deadline, sequence)`. Arming is
//!   `O(1)`: a timer joins a pending list and moves into the heap (`O(log n)`) only when
//!   the executor needs the nearest deadline (to park, or to jump a mock clock) or the
//!   timer may be due, so a timer disarmed before then, as most timeouts are, never
//!   touches the heap. Cancelling is `O(1)` (amortised); the reactor only ever learns the
//!   nearest deadline, so a timer that is dropped before it fires costs no system call.
//! - Invariant: every live timer is either in the heap or in the pending list, never
//!   both; a pending one knows its index in the list (`Armed::place`), so disarming it is
//!   a swap-remove. The looks at the nearest deadlines ([`TimerQueue::nearest`],
//!   [`TimerQueue::wake_time`]) first move the pending ones into the heap, and so does
//!   [`TimerQueue::pop_due`] when one of them may be due (their earliest deadline is
//!   kept as a lower bound), so the order is `(deadline, sequence)` whichever way a
//!   timer came, and a timer whose task finishes before the runtime parks never reaches
//!   the heap, however many ticks it lived.
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
//! - Slack (real clock only): a timer armed for `d` may fire up to `d / 256` (≈ 0.4 %; at
//!   most 1 ms, tokio's timer granularity) after its deadline, never before it. A park ends at [`TimerQueue::wake_time`], the latest
//!   deadline every earlier timer can wait for within its slack, so a cluster of
//!   deadlines costs one wake-up instead of one each (each wake-up of a parked thread
//!   costs ≈ 10–20 µs of CPU on the VM of BENCHMARKS.md, far more than the work it
//!   does: "`timers_sparse`" there). A timer no other follows within its slack wakes the
//!   runtime at its own deadline, and a short one has little slack (a 10 ms sleep ≈ 39 µs,
//!   near the kernel's own 50 µs timer slack), so short sleeps keep their precision.
//!   Why `d / 256`: with `d / 1024` a cluster of sparse sleeps woke the runtime ≈ 2.6 times
//!   as often as tokio's 1 ms wheel, at 1.6× its CPU per timer; `d / 256` wakes about as
//!   often as tokio and is still half as late (BENCHMARKS.md, lever 23). The mock clocks ignore slack: there a deadline fires exactly on time.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Weak;
use std::task::Waker;
use std::time::{Duration, Instant};

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
/// the runtime's thread, from the executor loop, or from [`advance`](crate::advance),
/// which a task may call during its own poll (or a destructor during a cancellation):
/// `expire` must not assume that no unit is being polled.
pub(crate) trait Expire: std::fmt::Debug {
    /// The deadline passed (the timer that was armed for it is gone).
    fn expire(&self);
}

#[derive(Debug)]
struct Armed {
    seq: u64,
    deadline: Instant,
    /// Where the timer waits: [`IN_HEAP`], or its index in [`TimerQueue::pending`] (armed
    /// since the queue was last looked at, not in the heap yet).
    place: usize,
    /// The tick reading it was armed at, which its [`slack`] counts from (computed only
    /// when a park looks at the timer: computed at every arm, it cost `timer_arm_cancel`
    /// 83 instructions, ≈ 40 of them the `Instant` subtraction); used on the real clock
    /// only.
    armed_at: Option<Instant>,
    action: TimerAction,
}

/// [`Armed::place`] of a timer in the heap.
const IN_HEAP: usize = usize::MAX;

/// A timer armed for `d` may fire up to `d >> SLACK_SHIFT` (≈ 0.4 %) after its deadline
/// on the real clock, and never more than [`MAX_SLACK`].
pub(crate) const SLACK_SHIFT: u32 = 8;

/// The most a timer's slack can be: tokio's timer granularity, so coalescing never makes
/// a timer later than tokio's wheel would.
pub(crate) const MAX_SLACK: Duration = Duration::from_millis(1);

/// How many heap entries [`TimerQueue::wake_time`] looks at before it gives up
/// coalescing (and wakes for the nearest deadline alone): bounds a park's work when
/// thousands of deadlines crowd the window.
const WAKE_TIME_BUDGET: usize = 128;

/// The slack of a timer armed at `armed_at` for `deadline` (see [`SLACK_SHIFT`]), in ns;
/// 0 when the arming time is unknown or not before the deadline.
pub(crate) fn slack(armed_at: Option<Instant>, deadline: Instant) -> u32 {
    let Some(armed_at) = armed_at else {
        return 0;
    };
    let armed_for = deadline.saturating_duration_since(armed_at).as_nanos();
    // At most `MAX_SLACK` (1 ms), so it fits.
    (armed_for >> SLACK_SHIFT).min(MAX_SLACK.as_nanos()) as u32
}

/// The runtime's timers, nearest deadline first.
///
/// A binary heap of `(deadline, sequence, slot)` over a slab of armed timers, and the
/// slots armed since the last look at the deadlines, which are not in the heap yet.
/// Disarming a pending timer removes it from both the slab and the list. Disarming one in
/// the heap removes the slab entry in O(1) and leaves the heap entry behind as stale: it is skipped
/// when it reaches the top, and the heap is compacted when stale entries outnumber live
/// ones, so memory stays proportional to the armed timers. Ties fire in arming order.
#[derive(Debug)]
pub(crate) struct TimerQueue {
    /// The runtime this queue belongs to; stamped on every key it issues.
    runtime: RuntimeId,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    armed: Slab<Armed>,
    /// The slots of the timers armed since the queue last looked at its deadlines, in
    /// no particular order (a disarm swaps the last one into the gap): they reach the
    /// heap only when someone asks for a deadline ([`flush`](TimerQueue::flush)), so a
    /// timer armed and disarmed in between (a timeout that does not fire, the common
    /// case) never touches the heap.
    pending: Vec<usize>,
    /// No pending timer is due before this (a lower bound: a disarm does not raise it;
    /// meaningless while nothing is pending). Popping the due timers moves the pending
    /// ones into the heap only when this is due, so a timer the runtime never parks for
    /// (its task finishes first, in a later tick) never reaches the heap either.
    pending_min: Instant,
    stale: usize,
    next_seq: u64,
    /// The entries [`wake_time`](TimerQueue::wake_time) takes off the heap and puts back,
    /// kept to reuse the allocation.
    scratch: Vec<Reverse<(Instant, u64, usize)>>,
}

impl TimerQueue {
    /// An empty queue for the runtime `runtime`.
    pub(crate) fn new(runtime: RuntimeId) -> TimerQueue {
        TimerQueue {
            runtime,
            heap: BinaryHeap::new(),
            armed: Slab::default(),
            pending: Vec::new(),
            pending_min: Instant::now(),
            stale: 0,
            next_seq: 0,
            scratch: Vec::new(),
        }
    }

    /// Arms a timer for `deadline`. Its slack ([`slack`]) counts from the current tick's
    /// clock reading (every caller has just read it to see that the deadline is not due;
    /// without one the slack is 0).
    pub(crate) fn arm(&mut self, deadline: Instant, action: TimerAction) -> TimerKey {
        self.arm_at(deadline, crate::rt::clock::tick_reading(), action)
    }

    /// Arms a timer for `deadline` whose slack counts from `armed_at` (the caller's clock
    /// reading of this tick, no later than the true time; `None`: no slack). The timer
    /// joins the pending list, not the heap (see [`pending`](TimerQueue::pending)).
    #[inline]
    pub(crate) fn arm_at(
        &mut self,
        deadline: Instant,
        armed_at: Option<Instant>,
        action: TimerAction,
    ) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.armed.insert(Armed {
            seq,
            deadline,
            place: self.pending.len(),
            armed_at,
            action,
        });
        if self.pending.is_empty() || deadline < self.pending_min {
            self.pending_min = deadline;
        }
        self.pending.push(slot);
        TimerKey {
            runtime: self.runtime,
            slot,
            seq,
        }
    }

    /// Moves the pending timers into the heap: before every look at the deadlines.
    #[inline]
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        for slot in self.pending.drain(..) {
            let armed = &mut self.armed[slot];
            armed.place = IN_HEAP;
            self.heap.push(Reverse((armed.deadline, armed.seq, slot)));
        }
    }

    /// Whether `key` was issued by this queue (by this runtime).
    fn owns(&self, key: TimerKey) -> bool {
        key.runtime == self.runtime
    }

    /// Removes the timer `key`, if it is still armed, and gives back its waker, if its action
    /// was one. A key from another runtime's queue is ignored: it names a slot of that queue,
    /// and removing our entry of the same slot and sequence would silently cancel an
    /// unrelated timer (disarm runs in destructors, which have no one to report the mistake
    /// to).
    ///
    /// The caller drops the waker once it no longer borrows the queue: dropping a waker
    /// runs code, which may reach this queue (a waker that owns a `Sleep`, as a foreign
    /// executor's task owns its future, disarms that sleep's timer when the last copy
    /// goes). Dropped here, under the caller's `borrow_mut`, that was a "RefCell already
    /// borrowed" panic out of `Sleep`'s destructor. An `Expire` action is dropped here: a
    /// `Weak`'s drop runs no code but the free of a node already gone. (A waker alone, not
    /// the whole action, so that the scopes' disarm, which has none, stays cheap.)
    pub(crate) fn disarm(&mut self, key: TimerKey) -> Option<Waker> {
        if !self.owns(key) {
            return None;
        }
        let TimerKey { slot, seq, .. } = key;
        let place = match self.armed.get(slot) {
            Some(a) if a.seq == seq => a.place,
            _ => return None,
        };
        let armed = self.armed.remove(slot);
        if place == IN_HEAP {
            self.stale += 1;
            if self.stale > 64 && self.stale > self.armed.len() {
                self.compact();
            }
        } else {
            // Still pending: out of the list, the last one moved into its place.
            self.pending.swap_remove(place);
            if let Some(&moved) = self.pending.get(place) {
                self.armed[moved].place = place;
            }
        }
        match armed.action {
            TimerAction::Wake(waker) => Some(waker),
            TimerAction::Expire(_) => None,
        }
    }

    #[cold]
    fn compact(&mut self) {
        let armed = &mut self.armed;
        self.heap
            .retain(|Reverse((_, seq, slot))| armed.get_mut(*slot).is_some_and(|a| a.seq == *seq));
        self.stale = 0;
    }

    /// Replaces the waker of an armed timer, if it would wake a different task, and gives
    /// back the old one, for the caller to drop once it no longer borrows the queue (as the
    /// action of [`disarm`](TimerQueue::disarm)). A key from another runtime's queue is
    /// ignored, as in `disarm`.
    pub(crate) fn update_waker(&mut self, key: TimerKey, waker: &Waker) -> Option<Waker> {
        if !self.owns(key) {
            return None;
        }
        let TimerKey { slot, seq, .. } = key;
        if let Some(Armed {
            seq: armed_seq,
            action: TimerAction::Wake(old),
            ..
        }) = self.armed.get_mut(slot)
        {
            if *armed_seq == seq && !old.will_wake(waker) {
                return Some(std::mem::replace(old, waker.clone()));
            }
        }
        None
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
        self.flush();
        self.skip_stale();
        self.heap.peek().map(|Reverse((deadline, ..))| *deadline)
    }

    /// When a park on the real clock should end: the latest deadline that every earlier
    /// timer can wait for within its slack, so that one wake-up fires them all; `None`
    /// when no timer is armed.
    ///
    /// Walks the timers in deadline order, keeping `limit`, the earliest
    /// `deadline + slack` so far, and stops at the first deadline after it: the answer is
    /// the last deadline taken, at or before `limit` (so no timer fires early, and none
    /// later than its slack after its deadline). A timer that no other follows within its
    /// slack wakes the runtime at its own deadline, as precisely as the operating system
    /// wakes. The walk pops the entries it looks at and pushes the live ones back
    /// (`O(k log n)` for `k` timers in the window); it stops after [`WAKE_TIME_BUDGET`]
    /// entries, which is still safe (the entries not looked at are not due before the
    /// answer).
    pub(crate) fn wake_time(&mut self) -> Option<Instant> {
        self.flush();
        let mut taken = std::mem::take(&mut self.scratch);
        let mut limit: Option<Instant> = None;
        let mut latest = None;
        let mut looked = 0;
        while looked < WAKE_TIME_BUDGET {
            let Some(&Reverse(entry)) = self.heap.peek() else {
                break;
            };
            let (deadline, seq, slot) = entry;
            if limit.is_some_and(|limit| deadline > limit) {
                break;
            }
            self.heap.pop();
            looked += 1;
            let Some(armed) = self.armed.get(slot).filter(|a| a.seq == seq) else {
                self.stale = self.stale.saturating_sub(1);
                continue;
            };
            let end = deadline
                .checked_add(Duration::from_nanos(slack(armed.armed_at, deadline).into()))
                .unwrap_or(deadline);
            limit = Some(limit.map_or(end, |limit| limit.min(end)));
            latest = Some(deadline);
            taken.push(Reverse(entry));
        }
        self.heap.extend(taken.drain(..));
        self.scratch = taken;
        latest
    }

    /// Removes and returns the earliest timer whose deadline is at or before `now`.
    ///
    /// Pending timers join the heap first if one of them may be due (see
    /// [`pending_min`](TimerQueue::pending_min)); then the heap's order is the order of
    /// them all.
    ///
    /// Stale entries are skipped only once they are due: one not yet due ends the search
    /// at the cost of a peek (compaction bounds how many pile up).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerAction> {
        // Only when a pending timer may be due: the others stay out of the heap.
        if !self.pending.is_empty() && self.pending_min <= now {
            self.flush_pending();
        }
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
            // A look moves it into the heap, so its disarm leaves a stale entry there.
            q.nearest();
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Arms a timer for `deadline` with `slack` (at most 1 ms): armed `2^SLACK_SHIFT` ×
    /// `slack` before its deadline.
    fn arm(q: &mut TimerQueue, deadline: Instant, slack: Duration) -> TimerKey {
        let armed_at = deadline - slack * (1 << SLACK_SHIFT);
        q.arm_at(
            deadline,
            Some(armed_at),
            TimerAction::Wake(Waker::noop().clone()),
        )
    }

    /// A base instant with room before it for `arm`'s arming times.
    fn base() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Slack is 1/256 (≈ 0.4 %) of how long the timer was armed for, at most 1 ms, and
    /// none when the arming time is unknown.
    #[test]
    fn slack_is_a_256th_of_the_armed_duration_at_most_a_millisecond() {
        let t = Instant::now();
        assert_eq!(slack(Some(t), t + ms(256)), 1_000_000);
        assert_eq!(slack(Some(t), t + ms(300)), 1_000_000, "capped at 1 ms");
        assert_eq!(slack(Some(t), t + ms(200)), 781_250);
        assert_eq!(slack(Some(t), t + ms(10)), 39_062);
        assert_eq!(slack(Some(t), t + Duration::from_secs(3600)), 1_000_000);
        assert_eq!(slack(Some(t), t + Duration::from_nanos(255)), 0);
        assert_eq!(slack(Some(t), t + Duration::from_nanos(256)), 1);
        assert_eq!(slack(Some(t + ms(5)), t), 0, "armed after its deadline");
        assert_eq!(slack(None, t + ms(300)), 0);
    }

    /// A timer that nothing follows within its slack is waited for until its own
    /// deadline: slack never makes a lone timer late.
    #[test]
    fn a_lone_timer_is_waited_for_until_its_own_deadline() {
        let t = base();
        let mut q = TimerQueue::new(RuntimeId::next());
        assert_eq!(q.wake_time(), None);
        arm(&mut q, t + ms(10), us(500));
        arm(&mut q, t + ms(11), us(500));
        assert_eq!(q.wake_time(), Some(t + ms(10)));
    }

    /// Timers within the slack of every earlier one share one wake-up, at the latest of
    /// them; the earliest `deadline + slack` bounds it, whichever timer it belongs to.
    #[test]
    fn timers_within_each_others_slack_share_one_wake_up() {
        let t = base();
        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + us(10_000), us(300));
        arm(&mut q, t + us(10_100), us(300));
        arm(&mut q, t + us(10_250), us(300));
        arm(&mut q, t + us(10_301), us(300)); // past the first one's slack
        assert_eq!(q.wake_time(), Some(t + us(10_250)));

        // A later timer with a smaller slack lowers the bound for those after it.
        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + us(10_000), us(300));
        arm(&mut q, t + us(10_100), us(50));
        arm(&mut q, t + us(10_140), us(300));
        arm(&mut q, t + us(10_200), us(300)); // within the first's slack, not the second's
        assert_eq!(q.wake_time(), Some(t + us(10_140)));

        // A timer without slack (armed at its deadline, or with no clock reading) is
        // waited for exactly, though an equal deadline joins it.
        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + us(10_000), us(300));
        arm(&mut q, t + us(10_050), Duration::ZERO);
        arm(&mut q, t + us(10_050), us(300));
        arm(&mut q, t + us(10_051), us(300));
        assert_eq!(q.wake_time(), Some(t + us(10_050)));
    }

    /// Looking for the wake time changes nothing: disarmed timers are not waited for, and
    /// the live ones still pop in deadline, then arming, order.
    #[test]
    fn the_wake_time_skips_disarmed_timers_and_keeps_the_order() {
        let t = base();
        let mut q = TimerQueue::new(RuntimeId::next());
        let gone = arm(&mut q, t + us(10_000), us(300));
        let a = arm(&mut q, t + us(10_100), us(300));
        let gone_too = arm(&mut q, t + us(10_200), us(300));
        let b = arm(&mut q, t + us(10_100), us(300));
        let c = arm(&mut q, t + us(10_500), us(300));
        q.disarm(gone);
        q.disarm(gone_too);
        assert_eq!(q.wake_time(), Some(t + us(10_100)));
        assert_eq!(
            q.wake_time(),
            Some(t + us(10_100)),
            "asking again, same answer"
        );
        assert_eq!(q.len(), 3);
        let mut order = Vec::new();
        let keys = [a, b, c];
        while let Some(Reverse((_, seq, _))) = q.heap.peek().copied() {
            if q.pop_due(t + ms(20)).is_none() {
                break;
            }
            order.push(keys.iter().position(|k| k.seq == seq).unwrap());
        }
        assert_eq!(order, [0, 1, 2]);
    }

    /// Random queues: the wake time is a live deadline, at or after the nearest, within
    /// the slack of every timer due by then (none fires early, none later than its slack)
    /// and as late as that allows (the next deadline would break some timer's slack), up
    /// to the budget of entries looked at.
    #[test]
    fn the_wake_time_is_the_latest_that_keeps_every_slack() {
        let t = base();
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..500 {
            let mut q = TimerQueue::new(RuntimeId::next());
            let mut live = Vec::new();
            let count = 1 + next(if round % 10 == 0 { 400 } else { 20 });
            for _ in 0..count {
                let deadline = t + us(next(3_000));
                let slack = us(next(400));
                let key = arm(&mut q, deadline, slack);
                if next(4) == 0 {
                    q.disarm(key);
                } else {
                    live.push((deadline, slack));
                }
            }
            let woken = q.wake_time();
            let Some(woken) = woken else {
                assert!(live.is_empty());
                continue;
            };
            live.sort();
            let nearest = live[0].0;
            assert!(
                woken >= nearest,
                "round {round}: before the nearest deadline"
            );
            assert!(live.iter().any(|&(d, _)| d == woken), "not a live deadline");
            for &(d, slack) in live.iter().filter(|&&(d, _)| d <= woken) {
                assert!(
                    woken <= d + slack,
                    "round {round}: a timer later than its slack"
                );
            }
            let due = live.iter().filter(|&&(d, _)| d <= woken).count();
            if due < WAKE_TIME_BUDGET {
                if let Some(&(later, _)) = live.iter().find(|&&(d, _)| d > woken) {
                    assert!(
                        live.iter()
                            .filter(|&&(d, _)| d <= later)
                            .any(|&(d, slack)| later > d + slack),
                        "round {round}: could have waited for {later:?}"
                    );
                }
            }
            assert_eq!(q.len(), live.len(), "wake_time lost or added a timer");
        }
    }

    /// Thousands of deadlines inside one slack: the search stops after its budget, at a
    /// deadline that still keeps every earlier timer's slack.
    #[test]
    fn a_crowded_window_costs_at_most_the_budget() {
        let t = base();
        let mut q = TimerQueue::new(RuntimeId::next());
        for i in 0..10_000 {
            arm(&mut q, t + Duration::from_nanos(i), ms(1));
        }
        let woken = q.wake_time().unwrap();
        assert_eq!(woken, t + Duration::from_nanos(WAKE_TIME_BUDGET as u64 - 1));
        assert_eq!(q.len(), 10_000);
        assert_eq!(q.heap.len(), 10_000);
    }

    /// A waker that logs its id when woken, to see the firing order.
    struct Logged(usize, Arc<std::sync::Mutex<Vec<usize>>>);

    impl std::task::Wake for Logged {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    fn logged(id: usize, log: &Arc<std::sync::Mutex<Vec<usize>>>) -> TimerAction {
        TimerAction::Wake(Waker::from(Arc::new(Logged(id, log.clone()))))
    }

    /// Fires everything due by `at`, in the queue's order.
    fn fire(q: &mut TimerQueue, at: Instant) {
        while let Some(action) = q.pop_due(at) {
            match action {
                TimerAction::Wake(w) => w.wake(),
                TimerAction::Expire(_) => unreachable!(),
            }
        }
    }

    /// Checks the pending list and the slab agree: every pending slot is live and knows
    /// its index; every other live timer is in the heap.
    fn assert_consistent(q: &TimerQueue) {
        for (i, &slot) in q.pending.iter().enumerate() {
            assert_eq!(q.armed[slot].place, i, "pending slot {slot} lost its index");
        }
        let in_heap = q.armed.iter().filter(|(_, a)| a.place == IN_HEAP).count();
        assert_eq!(in_heap + q.pending.len(), q.armed.len());
        if let Some(min) = q.pending.iter().map(|&slot| q.armed[slot].deadline).min() {
            assert!(q.pending_min <= min, "pending_min above a pending deadline");
        }
    }

    /// The common case of a timeout that does not fire: armed and disarmed before the
    /// queue's deadlines are looked at, it never touches the heap (no push, no stale
    /// entry left to skip or compact).
    #[test]
    fn a_timer_armed_and_disarmed_between_looks_never_reaches_the_heap() {
        let base = Instant::now();
        let mut q = TimerQueue::new(RuntimeId::next());
        for i in 0..1_000 {
            let key = q.arm(
                base + Duration::from_secs(60 + i),
                TimerAction::Wake(Waker::noop().clone()),
            );
            assert_eq!(q.pending.len(), 1);
            q.disarm(key);
        }
        assert_eq!(q.heap.len(), 0, "a pending timer was pushed to the heap");
        assert_eq!((q.stale, q.pending.len(), q.len()), (0, 0, 0));
        assert_eq!(q.nearest(), None);
    }

    /// Every look at the deadlines (the nearest, the wake time, the due timers) sees a
    /// timer armed since the last look; popping the due timers leaves the pending ones
    /// that are not due out of the heap.
    #[test]
    fn every_look_at_the_deadlines_sees_the_pending_timers() {
        let t = base();
        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + ms(5), Duration::ZERO);
        assert_eq!(q.nearest(), Some(t + ms(5)));

        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + ms(5), Duration::ZERO);
        assert_eq!(q.wake_time(), Some(t + ms(5)));

        let mut q = TimerQueue::new(RuntimeId::next());
        arm(&mut q, t + ms(5), Duration::ZERO);
        arm(&mut q, t + ms(9), Duration::ZERO);
        assert!(q.pop_due(t + ms(4)).is_none());
        assert_eq!(
            (q.heap.len(), q.pending.len()),
            (0, 2),
            "not due: still pending"
        );
        assert!(q.pop_due(t + ms(5)).is_some());
        assert!(q.pop_due(t + ms(5)).is_none());
        assert_eq!(q.len(), 1);
        assert!(q.pop_due(t + ms(9)).is_some());
        assert_eq!(q.len(), 0);

        // A disarm does not raise the bound: the pending one left is still seen when due.
        let mut q = TimerQueue::new(RuntimeId::next());
        let early = arm(&mut q, t + ms(5), Duration::ZERO);
        arm(&mut q, t + ms(9), Duration::ZERO);
        q.disarm(early);
        assert!(q.pop_due(t + ms(8)).is_none());
        assert!(q.pop_due(t + ms(9)).is_some());
    }

    /// Pending timers join the heap's order: deadline first, then arming order, also
    /// against timers of the same instant armed before the last look.
    #[test]
    fn pending_timers_fire_in_deadline_then_arming_order_beside_heap_timers() {
        let t = Instant::now();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut q = TimerQueue::new(RuntimeId::next());
        q.arm(t + ms(10), logged(0, &log));
        q.arm(t + ms(20), logged(1, &log));
        assert_eq!(q.nearest(), Some(t + ms(10)), "0 and 1 are in the heap now");
        assert!(q.pending.is_empty());
        q.arm(t + ms(10), logged(2, &log)); // same instant as 0, armed after it
        let gone = q.arm(t + ms(5), logged(3, &log));
        q.arm(t + ms(5), logged(4, &log));
        q.arm(t + ms(20), logged(5, &log));
        q.disarm(gone);
        assert_consistent(&q);
        fire(&mut q, t + ms(20));
        assert_eq!(*log.lock().unwrap(), [4, 0, 2, 1, 5]);
    }

    /// Arms, disarms (pending or in the heap, in any order) and looks, at random,
    /// against a model: the pending list stays consistent with the slab, and the timers
    /// fire in `(deadline, arming)` order, the disarmed ones never.
    #[test]
    fn random_arms_disarms_and_looks_match_a_model() {
        let t = Instant::now();
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut q = TimerQueue::new(RuntimeId::next());
            // (deadline in ms, id, key) of the live timers, in arming order.
            let mut live: Vec<(u64, usize, TimerKey)> = Vec::new();
            let mut id = 0;
            for _ in 0..next(300) {
                match next(10) {
                    0..=4 => {
                        let at = next(50);
                        let key = q.arm(t + ms(at), logged(id, &log));
                        live.push((at, id, key));
                        id += 1;
                    }
                    5..=7 if !live.is_empty() => {
                        let (_, _, key) = live.remove(next(live.len() as u64) as usize);
                        q.disarm(key);
                        q.disarm(key); // twice: harmless
                    }
                    8 => {
                        let nearest = live.iter().map(|&(at, ..)| t + ms(at)).min();
                        assert_eq!(q.nearest(), nearest, "round {round}");
                    }
                    9 if next(2) == 0 => {
                        // Fire what is due by a random instant, in the model's order.
                        let by = next(50);
                        let mut due: Vec<_> =
                            live.iter().filter(|&&(at, ..)| at <= by).copied().collect();
                        due.sort_by_key(|&(at, id, _)| (at, id));
                        live.retain(|&(at, ..)| at > by);
                        log.lock().unwrap().clear();
                        fire(&mut q, t + ms(by));
                        let expected: Vec<usize> = due.iter().map(|&(_, id, _)| id).collect();
                        assert_eq!(*log.lock().unwrap(), expected, "round {round}");
                        log.lock().unwrap().clear();
                    }
                    _ => assert_eq!(q.len(), live.len(), "round {round}"),
                }
                assert_consistent(&q);
            }
            live.sort_by_key(|&(at, id, _)| (at, id));
            fire(&mut q, t + ms(50));
            let expected: Vec<usize> = live.iter().map(|&(_, id, _)| id).collect();
            assert_eq!(*log.lock().unwrap(), expected, "round {round}");
            assert_eq!(q.len(), 0);
        }
    }

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
