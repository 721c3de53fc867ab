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
//! - Every queue belongs to one runtime and knows its [`RuntimeId`]; every [`TimerKey`]
//!   carries the id of the queue that issued it. `disarm` and `update_waker` ignore a key
//!   from another runtime (a plain integer compare), so a timer owner moved to another
//!   runtime or thread can never remove or rewire that runtime's entries.
//! - Invariant: an entry is in the queue only while its owner (a [`Sleep`] or a cancel
//!   scope's deadline) is alive and armed; owners remove their entry when dropped. The one
//!   exception: an owner dropped outside its runtime (on another thread, or after its
//!   runtime moved on to another `run`) cannot reach its queue, so the entry stays until
//!   its deadline and then wakes a waker nobody waits on (an autojump runtime may jump to
//!   it; the wake is spurious and harmless).
//! - A [`Sleep`] is a checkpoint: its first poll never completes, even when the deadline
//!   has passed (it wakes itself and returns `Pending` once), so a cancelled unit is
//!   dropped there, as in Trio. A sleep whose deadline overflows the clock never completes.
//!
//! # Deadlines and the delivery rule
//!
//! A scope's deadline that passes cancels the scope; like every cancellation it reaches
//! code only at its next suspension (the delivery rule in the docs of `scope/cancel_scope.rs`): a
//! unit that is busy without awaiting runs on until it suspends, and one that starts past
//! its deadline runs to its first suspension. A sleep is such a suspension.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::FusedFuture;

use crate::rt::state::{RuntimeId, with_core};
use slab::Slab;

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
/// An advance past what [`Instant`] can represent (say `Duration::MAX`) saturates: the clock
/// moves to the latest representable instant and every armed timer fires. From then on,
/// [`sleep`] and the relative timeouts treat every duration as "never" (adding it to
/// [`now`] overflows), and a further `advance` changes nothing.
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
///     trellis::advance(Duration::MAX); // saturates instead of overflowing
///     assert!(trellis::now() > start + Duration::from_secs(100 * 365 * 24 * 3600));
/// });
/// ```
#[track_caller]
pub fn advance(by: Duration) {
    // The checks panic here, outside `with_core`'s closure, so that `#[track_caller]`
    // reports the caller's line.
    let core = with_core(Rc::clone);
    if !core.clock.is_mock() {
        panic!(
            "trellis::advance needs a mock clock; build the runtime with \
             `Builder::new().mock_clock()` or `.autojump()`"
        );
    }
    let now = core.clock.now();
    core.clock
        .jump_to(now.checked_add(by).unwrap_or_else(|| latest_instant(now)));
    core.fire_due_timers();
}

/// The latest instant that `Instant` can represent, at or after `from`.
///
/// std has no `Instant::MAX`; this bisects over the durations that can be added to `from`
/// (about a hundred `checked_add`s, only on the overflowing path of `advance`).
fn latest_instant(from: Instant) -> Instant {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let from_nanos = |n: u128| {
        // `n` never exceeds `Duration::MAX` in nanoseconds, so the seconds fit a `u64`.
        Duration::new((n / NANOS_PER_SEC) as u64, (n % NANOS_PER_SEC) as u32)
    };
    if let Some(latest) = from.checked_add(Duration::MAX) {
        return latest;
    }
    // Invariant: `from + ok` is representable, `from + overflows` is not.
    let (mut ok, mut overflows) = (0u128, Duration::MAX.as_nanos());
    while overflows - ok > 1 {
        let mid = ok + (overflows - ok) / 2;
        if from.checked_add(from_nanos(mid)).is_some() {
            ok = mid;
        } else {
            overflows = mid;
        }
    }
    from + from_nanos(ok)
}

/// Waits until `duration` has passed.
///
/// Equivalent to `sleep_until(now() + duration)`, except that a duration too long for the
/// clock to represent (`Duration::MAX`) means "never": the sleep then ends only when it is
/// dropped, typically by a cancelled scope, and [`Sleep::deadline`] is `None`.
///
/// The deadline is taken when `sleep` is called, not when the future is first polled (as
/// in tokio); the relative timeouts [`move_on_after`](crate::move_on_after) and
/// [`fail_after`](crate::fail_after), by contrast, start at their first poll.
///
/// Like every sleep it suspends at least once: `sleep(Duration::ZERO)` is a checkpoint (as
/// in Trio) that lets every other ready task run before this one continues, and where a
/// unit whose scope is cancelled is dropped.
///
/// # Panics
///
/// Panics when called outside a trellis runtime (the deadline is read from its clock).
/// Polling the sleep panics in a runtime other than the one that armed its timer (see
/// [`Sleep`]).
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
///     trellis::sleep(Duration::ZERO).await; // a checkpoint: suspends once
///     // A sleep that never ends, ended by a timeout:
///     let forever = trellis::move_on_after(Duration::from_secs(1), trellis::sleep(Duration::MAX));
///     assert_eq!(forever.await, None);
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: now().checked_add(duration),
        timer: None,
        suspended: false,
        done: false,
    }
}

/// Waits until the clock reaches `deadline`.
///
/// The timer is armed lazily, at the first poll that finds the deadline still ahead. A
/// deadline already reached does not complete at the first poll: the sleep suspends once
/// (a checkpoint, like `sleep(Duration::ZERO)`), so other ready tasks run and a cancelled
/// unit is dropped there, and completes at the next poll.
///
/// # Panics
///
/// Polling the sleep panics outside a trellis runtime, and in a runtime other than the one
/// that armed its timer (see [`Sleep`]).
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
        deadline: Some(deadline),
        timer: None,
        suspended: false,
        done: false,
    }
}

/// Waits forever (until dropped, typically by a cancelled scope).
///
/// # Cancellation
///
/// This future never completes; cancellation is the only way out.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let out = trellis::move_on_after(Duration::from_secs(5), trellis::sleep_forever()).await;
///     assert_eq!(out, None);
/// });
/// ```
pub async fn sleep_forever() {
    std::future::pending::<()>().await
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// A `Sleep` is `Send`, but its timer belongs to the runtime that armed it (at the first
/// poll that found the deadline ahead).
///
/// # Panics
///
/// Polling a sleep panics outside a trellis runtime, and in a runtime other than the one
/// that armed its timer (a sleep moved to a thread that runs another runtime, or kept after
/// its `run` returned and polled in the next one). Dropping it is always fine: in another
/// runtime, the drop leaves that runtime's timers alone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     let nap = trellis::sleep(Duration::from_secs(2));
///     assert_eq!(nap.deadline(), Some(start + Duration::from_secs(2)));
///     nap.await;
///     assert_eq!(trellis::sleep(Duration::MAX).deadline(), None, "never");
/// });
/// ```
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    /// When the sleep completes; `None`: never (the duration overflowed the clock).
    deadline: Option<Instant>,
    /// The armed timer, once a poll found the deadline in the future. Its key names the
    /// runtime whose queue holds it.
    timer: Option<TimerKey>,
    /// Whether the sleep has returned `Pending` once. Until it has, it never completes,
    /// even past its deadline: every sleep is a checkpoint.
    suspended: bool,
    /// Whether the sleep has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl Sleep {
    /// The instant at which this sleep completes; `None` when it never does (its duration
    /// was too long for the clock, as `Duration::MAX`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let at = Instant::now() + Duration::from_secs(1);
    /// assert_eq!(trellis::sleep_until(at).deadline(), Some(at));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        with_core(|core| {
            if let Some(key) = this.timer {
                if key.runtime() != core.id {
                    polled_in_another_runtime();
                }
            }
            let Some(deadline) = this.deadline else {
                // Never: nothing will wake it; only a drop (a cancellation) ends it.
                return Poll::Pending;
            };
            if core.clock.now() >= deadline {
                if this.suspended {
                    if let Some(key) = this.timer.take() {
                        core.timers.borrow_mut().disarm(key);
                    }
                    this.done = true;
                    return Poll::Ready(());
                }
                // The checkpoint: suspend once even with nothing to wait for, so that the
                // other ready tasks run and a cancelled unit is dropped here.
                this.suspended = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.suspended = true;
            let mut timers = core.timers.borrow_mut();
            match this.timer {
                Some(key) => timers.update_waker(key, cx.waker()),
                None => {
                    let key = timers.arm(deadline, TimerAction::Wake(cx.waker().clone()));
                    this.timer = Some(key);
                }
            }
            Poll::Pending
        })
    }
}

#[cold]
fn polled_in_another_runtime() -> ! {
    panic!(
        "a trellis `Sleep` was polled in a runtime other than the one that armed its timer; \
         a timer belongs to the runtime it was first polled in — await the sleep inside that \
         runtime's `run`, or create a new one with `sleep`/`sleep_until` in this runtime"
    )
}

/// `futures::select!` and other `futures-core` combinators take a `Sleep` without `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let mut nap = trellis::sleep(Duration::from_secs(1));
///     assert!(!nap.is_terminated());
///     (&mut nap).await;
///     assert!(nap.is_terminated(), "terminated once it has completed");
///     assert!(!trellis::sleep(Duration::MAX).is_terminated(), "never");
/// });
/// ```
impl FusedFuture for Sleep {
    /// True once the sleep has completed; a sleep that never ends (`Duration::MAX`) never
    /// is.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            // The runtime may already be gone when a future outlives `run` (it was leaked
            // out, or is dropped during thread teardown): then there is no queue to clean.
            // On another thread's runtime, or a later runtime on this thread, `disarm`
            // ignores the foreign key; the entry stays in its own queue until it fires.
            crate::rt::state::try_with_core(|core| core.timers.borrow_mut().disarm(key));
        }
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

    #[test]
    fn the_latest_instant_is_representable_and_nothing_follows_it() {
        let from = Instant::now();
        let latest = latest_instant(from);
        assert!(latest > from);
        assert_eq!(latest.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(latest_instant(latest), latest);
    }
}
