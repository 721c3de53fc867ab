//! The clock of a runtime: real, or mock (virtual time moved by [`advance`] or by
//! autojump), and [`now`].
//!
//! # State
//!
//! - The [`Clock`] belongs to the runtime. A real clock reads [`Instant::now`]; a mock clock
//!   holds a virtual instant that only moves forward, by [`advance`] or, with autojump, by
//!   the executor when every task is blocked.
//! - A real clock remembers its latest reading in the current scheduler tick (`last`,
//!   forgotten by [`Clock::new_tick`], which the executor calls before each root poll and
//!   after each park). Deadlines are always computed from a fresh reading ([`Clock::now`],
//!   [`now`]); only the question "is this deadline due?" is answered with the latest
//!   reading ([`Clock::recent`]). That reading is never later than the true time, so a
//!   deadline is never reported due early; one that falls due after the reading is seen
//!   at the next tick (the executor re-reads the clock before it parks). This saves a
//!   clock read per sleep and per timeout (≈ 24–32 ns each on the VM of BENCHMARKS.md).

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::rt::state::{try_with_core, with_core, with_core_inlined};

thread_local! {
    /// The running runtime's latest reading of this tick (a real clock's `last`, a mock
    /// clock's `now`), beside the runtime's state so that [`recent`], asked at every spawn
    /// for the task tree, is one thread-local load. `None`: no reading yet this tick.
    static TICK_READING: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn mirror(reading: Option<Instant>) {
    let _ = TICK_READING.try_with(|tick| tick.set(reading));
}

/// The source of "now" for one runtime.
#[derive(Debug)]
pub(crate) enum Clock {
    /// Wall-clock time, read from the operating system.
    Real {
        /// The latest reading in this tick (see the module docs).
        last: Cell<Option<Instant>>,
    },
    /// Virtual time that moves only when told to.
    Mock {
        /// The current virtual instant.
        now: Cell<Instant>,
        /// Jump to the next deadline whenever every task is blocked.
        autojump: bool,
    },
}

impl Clock {
    /// A real clock that has not been read yet.
    pub(crate) fn real() -> Clock {
        Clock::Real {
            last: Cell::new(None),
        }
    }

    /// The time now: a fresh reading (which the rest of the tick then reuses).
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real { last } => {
                let now = Instant::now();
                last.set(Some(now));
                mirror(Some(now));
                now
            }
            Clock::Mock { now, .. } => now.get(),
        }
    }

    /// The latest reading of this tick, or a fresh one: for deciding whether a deadline
    /// is due, never for computing one (see the module docs).
    pub(crate) fn recent(&self) -> Instant {
        match self {
            Clock::Real { last } => match last.get() {
                Some(reading) => reading,
                None => self.now(),
            },
            Clock::Mock { now, .. } => now.get(),
        }
    }

    /// A new scheduler tick begins: the next question about the time reads the clock.
    pub(crate) fn new_tick(&self) {
        match self {
            Clock::Real { last } => {
                last.set(None);
                mirror(None);
            }
            Clock::Mock { now, .. } => mirror(Some(now.get())),
        }
    }

    /// The runtime has ended: its readings are no one's.
    pub(crate) fn forget_readings(&self) {
        mirror(None);
    }

    pub(crate) fn is_mock(&self) -> bool {
        matches!(self, Clock::Mock { .. })
    }

    /// Moves a mock clock to `to` (never backwards). Does nothing on the real clock.
    pub(crate) fn jump_to(&self, to: Instant) {
        if let Clock::Mock { now, .. } = self {
            if to > now.get() {
                now.set(to);
                mirror(Some(to));
            }
        }
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
    with_core_inlined(|core| core.clock.now())
}

/// Moves a mock clock forward by `by`, firing every timer that falls due.
///
/// An advance past what [`Instant`] can represent (say `Duration::MAX`) saturates: the clock
/// moves to the latest representable instant and every armed timer fires. From then on,
/// [`sleep`](crate::sleep) and the relative timeouts treat every non-zero duration as
/// "never" (adding it to [`now`] overflows; a zero duration still adds, so `sleep(ZERO)`
/// stays a checkpoint and a zero timeout still fires), an [`interval`](crate::interval)
/// made then ticks once and never again, and a further `advance` changes nothing.
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

/// The running runtime's latest reading of the current tick, if it has one (no clock
/// read): when a timer is armed, the instant its slack counts from.
pub(crate) fn tick_reading() -> Option<Instant> {
    TICK_READING.try_with(Cell::get).ok().flatten()
}

/// The latest reading of the current scheduler tick (a fresh one if the tick has none),
/// for records that need an approximate "when" (a task's spawn time); outside a runtime
/// (a nursery inside another executor), a fresh reading.
pub(crate) fn recent() -> Instant {
    match TICK_READING.try_with(Cell::get) {
        Ok(Some(reading)) => reading,
        _ => try_with_core(|core| core.clock.recent()).unwrap_or_else(Instant::now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_instant_is_representable_and_nothing_follows_it() {
        let from = Instant::now();
        let latest = latest_instant(from);
        assert!(latest > from);
        assert_eq!(latest.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(latest_instant(latest), latest);
    }
}
