//! Periodic ticks: [`interval`], [`Interval`], its tick future [`IntervalTick`] and the
//! missed-tick policy [`MissedTicks`].
//!
//! # State
//!
//! - An [`Interval`] keeps the deadline of its next tick (`None`: never, the next deadline
//!   overflowed the clock) and at most one armed timer in its runtime's queue (the queue of
//!   `timers.rs`, armed and disarmed as a [`Sleep`](crate::rt::sleep::Sleep) does). The
//!   timer is armed while a tick waits for a deadline ahead, re-armed when the deadline
//!   moved (a [`reset`](Interval::reset)), and disarmed when the tick completes, when the
//!   waiting [`IntervalTick`] is dropped and when the interval is dropped. A `next()` of
//!   the [`Stream`] that is dropped leaves it armed (nothing tells the interval; see the
//!   `Stream` impl's docs).
//! - The deadline moves only when a tick completes (by the policy) or at `reset`: a tick
//!   future dropped before it completed leaves it alone, which is what makes
//!   [`Interval::tick`] cancel-safe.
//! - Like a sleep, every tick is a checkpoint: a tick whose deadline has passed suspends
//!   once (it wakes itself) before it completes, so other ready tasks run and a cancelled
//!   unit is dropped there. `suspended` records that this tick has suspended.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::{FusedFuture, FusedStream, Stream};

use crate::rt::clock::now;
use crate::rt::state::{try_with_core, with_core};
use crate::rt::timers::{TimerAction, TimerKey};

/// What an [`Interval`] does when ticks were missed: when a tick is taken at or after the
/// deadline of the tick that follows it (the task was busy, or did not call
/// [`tick`](Interval::tick) for a while, for at least a whole `period`).
///
/// The timelines below are for `interval(100ms)` started at 0, whose task is busy from
/// 150 ms to 350 ms, so that the ticks due at 200 ms and 300 ms are missed: the tick
/// taken at 350 ms is the one due at 200 ms. A tick late by less than a whole period
/// (nothing missed) never changes the schedule.
///
/// The default is [`Burst`](MissedTicks::Burst), tokio's default: no tick is ever lost,
/// which suits counting and rate accounting; choose `Delay` or `Skip` when a burst of
/// catch-up ticks would be wrong (say, polling a device).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::MissedTicks;
///
/// trellis::Builder::new().autojump().run(async {
///     let ticks = trellis::interval(Duration::from_secs(1))
///         .with_missed_tick_behavior(MissedTicks::Skip);
///     assert_eq!(ticks.missed_tick_behavior(), MissedTicks::Skip);
///     assert_eq!(MissedTicks::default(), MissedTicks::Burst);
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedTicks {
    /// Catch up: the missed ticks complete one after the other, as soon as they are
    /// awaited, each reporting the instant it was scheduled for, until the interval is back
    /// on its original schedule (tokio's `MissedTickBehavior::Burst`, the default).
    ///
    /// ```text
    /// scheduled: 0    100  200  300  400  500
    /// taken at:  0    100  350  350  400  500   (ticks 200 and 300 in a burst at 350)
    /// ```
    #[default]
    Burst,
    /// Start the schedule again from the late tick: the late tick completes at once, and
    /// the next one is due a whole `period` after the moment it was taken (tokio's
    /// `MissedTickBehavior::Delay`). The ticks missed in between are dropped.
    ///
    /// ```text
    /// scheduled: 0    100  200       450  550
    /// taken at:  0    100  350       450  550   (next due 350 + 100)
    /// ```
    ///
    /// Unlike tokio, which delays any tick later than 5 ms, trellis delays only when a
    /// whole tick was missed, so that the schedule is exact on the mock clock and does not
    /// drift by the scheduling latency of every tick.
    Delay,
    /// Keep the original schedule, dropping the missed ticks: the late tick completes at
    /// once, and the next one is due at the next multiple of `period` (counted from the
    /// start) after the moment it was taken (tokio's `MissedTickBehavior::Skip`).
    ///
    /// ```text
    /// scheduled: 0    100  200       400  500
    /// taken at:  0    100  350       400  500   (300 dropped, back on the grid at 400)
    /// ```
    Skip,
}

/// Returns an [`Interval`] that ticks first at once, then every `period`.
///
/// The first tick completes immediately: its deadline is [`now`](crate::now) at the call
/// (like tokio's `interval`); as every tick it is a checkpoint, so it suspends once but
/// lets no time pass. The following ticks are due at `start + period`, `start + 2 *
/// period`, …; what happens to ticks that were missed is the interval's [`MissedTicks`]
/// (by default [`Burst`](MissedTicks::Burst)).
///
/// A `period` too long for the clock to add (`Duration::MAX`) means "never again": the
/// first tick completes, the second never does (only a cancellation ends it).
///
/// # Panics
///
/// Panics when `period` is zero (as tokio's `interval`: an interval of zero would tick
/// forever without time passing), and when called outside a trellis runtime (the start
/// is read from its clock).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     let mut ticks = trellis::interval(Duration::from_secs(10));
///     assert_eq!(ticks.tick().await, start, "the first tick is immediate");
///     assert_eq!(ticks.tick().await, start + Duration::from_secs(10));
///     assert_eq!(ticks.tick().await, start + Duration::from_secs(20));
///     assert_eq!(trellis::now() - start, Duration::from_secs(20));
/// });
/// ```
///
/// A zero period panics:
///
/// ```should_panic
/// trellis::Builder::new().autojump().run(async {
///     let _ = trellis::interval(std::time::Duration::ZERO);
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    if period.is_zero() {
        zero_period();
    }
    Interval {
        next: Some(now()),
        period,
        missed: MissedTicks::default(),
        timer: None,
        suspended: false,
    }
}

#[cold]
#[track_caller]
fn zero_period() -> ! {
    panic!(
        "trellis::interval: the period must be non-zero (an interval of zero would tick \
         forever without time passing)"
    )
}

/// Ticks at a fixed period, made by [`interval`].
///
/// Await [`tick`](Interval::tick) in a loop, or use it as a [`Stream`] of the instants the
/// ticks were scheduled for (a stream that never ends). An `Interval` is `Send`, but its
/// timer belongs to the runtime it was created in.
///
/// # Panics
///
/// Ticking panics outside a trellis runtime, and in a runtime other than the one that
/// armed its timer, as a [`Sleep`](crate::Sleep) does.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let mut ticks = trellis::interval(Duration::from_millis(100));
///     let mut count = 0;
///     trellis::move_on_after(Duration::from_millis(450), async {
///         loop {
///             ticks.tick().await;
///             count += 1;
///         }
///     })
///     .await;
///     assert_eq!(count, 5, "at 0, 100, 200, 300 and 400 ms");
/// });
/// ```
#[derive(Debug)]
pub struct Interval {
    /// The deadline of the next tick; `None`: never (it overflowed the clock).
    next: Option<Instant>,
    period: Duration,
    missed: MissedTicks,
    /// The armed timer and the deadline it was armed for. Its key names the runtime whose
    /// queue holds it.
    timer: Option<(TimerKey, Instant)>,
    /// Whether the tick in progress has returned `Pending` once: until it has, it does not
    /// complete, even past its deadline (every tick is a checkpoint).
    suspended: bool,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for (not the
    /// instant it completed: a late tick reports its schedule).
    ///
    /// The first tick completes immediately (it is due at the instant [`interval`] was
    /// called; after a [`reset`](Interval::reset) the next tick is a whole period away).
    /// Every tick is a checkpoint: it suspends at least once, even when its deadline has
    /// passed, so other ready tasks run and a cancelled unit is dropped there.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropping the future before it completes loses no tick. The interval's
    /// schedule moves only when a tick completes, so the next call to `tick` returns the
    /// tick the dropped future was waiting for (at once, if its deadline passed meanwhile).
    ///
    /// # Panics
    ///
    /// Polling the future panics outside a trellis runtime, and in a runtime other than
    /// the one that armed the interval's timer.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let start = trellis::now();
    ///     let mut ticks = trellis::interval(Duration::from_secs(1));
    ///     ticks.tick().await; // immediate
    ///     // A tick cut short by a timeout is not lost: the next call returns it.
    ///     let cut = trellis::move_on_after(Duration::from_millis(300), ticks.tick()).await;
    ///     assert_eq!(cut, None);
    ///     assert_eq!(ticks.tick().await, start + Duration::from_secs(1));
    /// });
    /// ```
    pub fn tick(&mut self) -> IntervalTick<'_> {
        self.suspended = false;
        IntervalTick {
            interval: self,
            done: false,
        }
    }

    /// The period between two ticks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let ticks = trellis::interval(Duration::from_secs(3));
    ///     assert_eq!(ticks.period(), Duration::from_secs(3));
    /// });
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What the interval does with missed ticks (by default [`MissedTicks::Burst`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let ticks = trellis::interval(Duration::from_secs(1));
    ///     assert_eq!(ticks.missed_tick_behavior(), trellis::MissedTicks::Burst);
    /// });
    /// ```
    pub fn missed_tick_behavior(&self) -> MissedTicks {
        self.missed
    }

    /// Sets what the interval does with missed ticks; it applies from the next tick that
    /// completes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::MissedTicks;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let mut ticks = trellis::interval(Duration::from_secs(1));
    ///     ticks.set_missed_tick_behavior(MissedTicks::Delay);
    ///     assert_eq!(ticks.missed_tick_behavior(), MissedTicks::Delay);
    /// });
    /// ```
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTicks) {
        self.missed = behavior;
    }

    /// The interval with `behavior` for missed ticks, builder-style.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::MissedTicks;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let ticks = trellis::interval(Duration::from_secs(1))
    ///         .with_missed_tick_behavior(MissedTicks::Delay);
    ///     assert_eq!(ticks.missed_tick_behavior(), MissedTicks::Delay);
    /// });
    /// ```
    #[must_use = "`with_missed_tick_behavior` returns the interval"]
    pub fn with_missed_tick_behavior(mut self, behavior: MissedTicks) -> Interval {
        self.missed = behavior;
        self
    }

    /// Restarts the schedule from now: the next tick is due a whole `period` from now (not
    /// at once), and the ones after it every `period` from there.
    ///
    /// # Panics
    ///
    /// Panics outside a trellis runtime (the new start is read from its clock).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let mut ticks = trellis::interval(Duration::from_secs(10));
    ///     ticks.tick().await; // immediate
    ///     trellis::sleep(Duration::from_secs(4)).await;
    ///     let reset_at = trellis::now();
    ///     ticks.reset();
    ///     assert_eq!(ticks.tick().await, reset_at + Duration::from_secs(10));
    /// });
    /// ```
    #[track_caller]
    pub fn reset(&mut self) {
        self.next = now().checked_add(self.period);
        self.suspended = false;
        self.disarm();
    }

    /// Removes the armed timer, if any (and if the runtime is still there).
    fn disarm(&mut self) {
        if let Some((key, _)) = self.timer.take() {
            // As in `Sleep`'s drop: no runtime, or another runtime, leaves the queue alone,
            // and the waker given back is dropped after the queue's borrow ends.
            let released = try_with_core(|core| core.timers.borrow_mut().disarm(key));
            drop(released);
        }
    }

    /// The deadline after a tick due at `deadline` and taken at `now`, by the policy.
    fn following(&self, deadline: Instant, now: Instant) -> Option<Instant> {
        let scheduled = deadline.checked_add(self.period)?;
        if now < scheduled {
            // Nothing missed: the schedule stands, whatever the policy.
            return Some(scheduled);
        }
        match self.missed {
            MissedTicks::Burst => Some(scheduled),
            MissedTicks::Delay => now.checked_add(self.period),
            MissedTicks::Skip => {
                // The next multiple of `period` after `now`, counted from `deadline`.
                let late = (now - deadline).as_nanos() % self.period.as_nanos();
                let late =
                    Duration::new((late / 1_000_000_000) as u64, (late % 1_000_000_000) as u32);
                now.checked_add(self.period - late)
            }
        }
    }

    /// Polls for the next tick (shared by [`IntervalTick`] and the [`Stream`]).
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        with_core(|core| {
            if let Some((key, _)) = self.timer {
                if key.runtime() != core.id {
                    polled_in_another_runtime();
                }
            }
            let Some(deadline) = self.next else {
                // Never: nothing will wake it; only a drop (a cancellation) ends it.
                return Poll::Pending;
            };
            let now = core.clock.now();
            if now >= deadline {
                if !self.suspended {
                    // The checkpoint, as in `Sleep`.
                    self.suspended = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if let Some((key, _)) = self.timer.take() {
                    // Dropped after the queue's borrow ends (`TimerQueue::disarm`).
                    let released = core.timers.borrow_mut().disarm(key);
                    drop(released);
                }
                self.suspended = false;
                self.next = self.following(deadline, now);
                return Poll::Ready(deadline);
            }
            self.suspended = true;
            let mut timers = core.timers.borrow_mut();
            // The waker let go of is dropped after the queue's borrow (`TimerQueue::disarm`).
            let released = match self.timer {
                Some((key, armed_for)) if armed_for == deadline => {
                    timers.update_waker(key, cx.waker())
                }
                _ => {
                    let released = self.timer.take().and_then(|(key, _)| timers.disarm(key));
                    let key = timers.arm(deadline, TimerAction::Wake(cx.waker().clone()));
                    self.timer = Some((key, deadline));
                    released
                }
            };
            drop(timers);
            drop(released);
            Poll::Pending
        })
    }
}

#[cold]
fn polled_in_another_runtime() -> ! {
    panic!(
        "a trellis `Interval` was ticked in a runtime other than the one that armed its \
         timer; a timer belongs to the runtime it was first polled in — tick the interval \
         inside that runtime's `run`, or create a new one with `interval` in this runtime"
    )
}

impl Drop for Interval {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// An interval is a stream of the instants its ticks were scheduled for; it never ends.
/// Each item is a tick, as [`Interval::tick`], and as cancel-safe: a `next()` dropped
/// before it completes loses no tick.
///
/// A stream cannot tell a `next()` that was dropped from one that is polled again, so two
/// things differ from [`Interval::tick`] after a `next()` that waited and was dropped (say
/// by a timeout): the next item may complete at its first poll, without the checkpoint
/// (the tick already suspended once, in the dropped `next()`; `tick()` starts each call's
/// checkpoint afresh), and the dropped `next()`'s timer stays armed until the interval
/// ticks again, is [`reset`](Interval::reset) or dropped, so it may wake the task once,
/// spuriously, at that deadline (an autojump runtime jumps to it).
///
/// # Examples
///
/// ```
/// use futures_core::Stream;
/// use std::pin::Pin;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let start = trellis::now();
///     let mut ticks = trellis::interval(Duration::from_secs(1));
///     let next = std::future::poll_fn(|cx| Pin::new(&mut ticks).poll_next(cx)).await;
///     assert_eq!(next, Some(start));
/// });
/// ```
impl Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}

/// The stream never ends: it is never terminated.
///
/// # Examples
///
/// ```
/// use futures_core::FusedStream;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     assert!(!trellis::interval(Duration::from_secs(1)).is_terminated());
/// });
/// ```
impl FusedStream for Interval {
    /// Always false: an interval ticks forever.
    fn is_terminated(&self) -> bool {
        false
    }
}

/// The future of [`Interval::tick`]: the instant the tick was scheduled for.
///
/// # Cancellation
///
/// Cancel-safe: dropping it before it completes loses no tick (it only disarms the
/// interval's timer); the next [`Interval::tick`] returns the same tick.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let mut ticks = trellis::interval(Duration::from_secs(1));
///     let mut tick = ticks.tick();
///     assert!(!tick.is_terminated());
///     (&mut tick).await;
///     assert!(tick.is_terminated(), "terminated once it has completed");
/// });
/// ```
#[derive(Debug)]
#[must_use = "a tick does nothing unless awaited"]
pub struct IntervalTick<'a> {
    interval: &'a mut Interval,
    /// Whether the tick has completed (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl Future for IntervalTick<'_> {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let out = self.interval.poll_tick(cx);
        if out.is_ready() {
            self.done = true;
        }
        out
    }
}

/// `futures::select!` and other `futures-core` combinators take a tick without `.fuse()`.
impl FusedFuture for IntervalTick<'_> {
    /// True once the tick has completed.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for IntervalTick<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nobody waits for the deadline any more: leave no timer in the queue (an
            // autojump runtime would otherwise jump to it). The deadline itself stays.
            self.interval.disarm();
        }
    }
}
