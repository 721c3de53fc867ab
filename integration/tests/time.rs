//! Behaviour of time: the mock clock with autojump, the real clock, timer ordering, sleep
//! as a checkpoint, `Duration::MAX`, and timers that belong to the runtime that armed them.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{count_polls, run_virtual};
use trellis::{CancelScope, now, nursery, sleep, sleep_until};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

#[test]
fn sleeping_a_year_on_the_mock_clock_completes_at_once_and_moves_now_by_a_year() {
    let wall = Instant::now();
    let (start, end) = run_virtual(async {
        let start = now();
        sleep(YEAR).await;
        (start, now())
    });
    assert_eq!(end - start, YEAR);
    // Not a timing assertion: a year of virtual time must not have been slept for real.
    assert!(wall.elapsed() < YEAR);
}

#[test]
fn autojump_fires_timers_in_deadline_order_at_exactly_their_deadlines() {
    let fired = RefCell::new(Vec::new());
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            for secs in [5u64, 1, 3, 3, 2] {
                let fired = &fired;
                n.spawn(async move {
                    sleep(Duration::from_secs(secs)).await;
                    fired.borrow_mut().push((secs, now() - start));
                });
            }
        })
        .await
        .unwrap();
    });
    let got: Vec<_> = fired.borrow().clone();
    let secs = Duration::from_secs;
    assert_eq!(
        got,
        [
            (1, secs(1)),
            (2, secs(2)),
            (3, secs(3)),
            (3, secs(3)),
            (5, secs(5))
        ]
    );
}

/// Deadlines within each other's slack (on the real clock one wake-up would fire them
/// all): on the mock clock each still fires exactly at its own deadline.
#[test]
fn autojump_fires_clustered_deadlines_each_exactly_on_time() {
    let fired = RefCell::new(Vec::new());
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            for us in [0u64, 100, 200, 250, 900] {
                let fired = &fired;
                n.spawn(async move {
                    let after = Duration::from_secs(10) + Duration::from_micros(us);
                    sleep_until(start + after).await;
                    fired
                        .borrow_mut()
                        .push((us, now() - start - Duration::from_secs(10)));
                });
            }
        })
        .await
        .unwrap();
    });
    let us = Duration::from_micros;
    assert_eq!(
        *fired.borrow(),
        [
            (0, us(0)),
            (100, us(100)),
            (200, us(200)),
            (250, us(250)),
            (900, us(900))
        ]
    );
}

/// Timers armed in one scheduler tick wait in the queue's pending list until the
/// executor looks at its deadlines (`rt/timers.rs`): kept across the park, they still fire
/// exactly on time and, for one instant, in arming order, also after timers of that
/// instant armed in an earlier tick; the thousands armed and dropped in the same ticks
/// (timeouts that did not fire) change nothing.
#[test]
fn timers_armed_in_one_tick_fire_on_time_in_arming_order_beside_older_ones() {
    let fired = common::watchdog(common::HANG_LIMIT, || {
        let fired = RefCell::new(Vec::new());
        run_virtual(async {
            let start = now();
            let at = |ms: u64| start + Duration::from_millis(ms);
            let arm_and_drop = |n: u32| {
                for _ in 0..n {
                    let mut s = std::pin::pin!(sleep(Duration::from_secs(60)));
                    let waker = std::task::Waker::noop();
                    let polled = s.as_mut().poll(&mut std::task::Context::from_waker(waker));
                    assert!(polled.is_pending());
                }
            };
            nursery(async |n| {
                for (name, deadline, yields) in
                    [("a", 10, 0), ("b", 10, 1), ("c", 5, 1), ("d", 10, 2)]
                {
                    let fired = &fired;
                    n.spawn(async move {
                        for _ in 0..yields {
                            arm_and_drop(500);
                            trellis::yield_now().await;
                        }
                        arm_and_drop(500);
                        sleep_until(at(deadline)).await;
                        fired.borrow_mut().push((name, now() - start));
                    });
                }
            })
            .await
            .unwrap();
            assert_eq!(
                now(),
                at(10),
                "the dropped 60 s timers left nothing to jump to"
            );
        });
        fired.into_inner()
    });
    let ms = Duration::from_millis;
    assert_eq!(
        fired,
        [("c", ms(5)), ("a", ms(10)), ("b", ms(10)), ("d", ms(10))]
    );
}

#[test]
fn a_mock_clock_without_autojump_moves_only_by_advance() {
    let woke_at = trellis::Builder::new().mock_clock().run(async {
        let start = now();
        nursery(async |n| {
            let sleeper = n.spawn(async move {
                sleep(Duration::from_secs(10)).await;
                Ok(now() - start)
            });
            for _ in 0..10 {
                trellis::yield_now().await;
                assert_eq!(now(), start, "time must not move by itself");
            }
            trellis::advance(Duration::from_secs(4));
            trellis::advance(Duration::from_secs(6));
            Ok::<_, ()>(sleeper.await.unwrap())
        })
        .await
        .unwrap()
    });
    assert_eq!(woke_at, Duration::from_secs(10));
}

#[test]
fn a_deadline_in_the_past_completes_at_the_second_poll_without_moving_time() {
    run_virtual(async {
        let start = now();
        let polls = Cell::new(0);
        count_polls(&polls, sleep_until(start - Duration::from_secs(1))).await;
        assert_eq!(polls.get(), 2, "a past deadline suspends exactly once");
        polls.set(0);
        count_polls(&polls, sleep(Duration::ZERO)).await;
        assert_eq!(polls.get(), 2, "sleep(0) suspends exactly once");
        assert_eq!(now(), start);
    });
}

/// Two children doing `a; <checkpoint>; b` with the given checkpoint, in spawn order.
fn interleaving_of(checkpoint: fn(Instant) -> trellis::Sleep) -> Vec<&'static str> {
    let log = RefCell::new(Vec::new());
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            for (a, b) in [("a1", "b1"), ("a2", "b2")] {
                let log = &log;
                n.spawn(async move {
                    log.borrow_mut().push(a);
                    checkpoint(start).await;
                    log.borrow_mut().push(b);
                });
            }
        })
        .await
        .unwrap();
    });
    log.into_inner()
}

#[test]
fn sleep_zero_suspends_once_so_two_children_interleave() {
    assert_eq!(
        interleaving_of(|_| sleep(Duration::ZERO)),
        ["a1", "a2", "b1", "b2"]
    );
}

#[test]
fn a_past_deadline_suspends_once_so_two_children_interleave() {
    assert_eq!(
        interleaving_of(|start| sleep_until(start - Duration::from_secs(1))),
        ["a1", "a2", "b1", "b2"]
    );
}

#[test]
fn a_cancelled_child_is_dropped_at_sleep_zero() {
    let log = RefCell::new(Vec::new());
    run_virtual(async {
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let log = &log;
                n.spawn(async move {
                    log.borrow_mut().push("before");
                    sleep(Duration::ZERO).await;
                    log.borrow_mut().push("after the checkpoint");
                });
                // Spawned before the cancellation: the child runs to its first suspension.
                scope.cancel();
            })
            .await
        })
        .await;
        assert_eq!(out, None);
    });
    assert_eq!(log.into_inner(), ["before"]);
}

#[test]
fn a_cancelled_scope_drops_its_body_at_a_past_deadline() {
    let reached = Cell::new(false);
    let out = run_virtual(async {
        let scope = CancelScope::new();
        let handle = scope.clone();
        scope
            .run(async {
                handle.cancel();
                sleep_until(now() - Duration::from_secs(1)).await;
                reached.set(true);
            })
            .await
    });
    assert_eq!(out, None, "the scope caught its own cancellation");
    assert!(!reached.get(), "the body ran past the checkpoint");
}

#[test]
fn sleeping_for_duration_max_never_ends_by_itself_but_a_timeout_ends_it() {
    let (deadline, out, waited) = run_virtual(async {
        let start = now();
        let nap = sleep(Duration::MAX);
        let deadline = nap.deadline();
        let out = trellis::move_on_after(YEAR, nap).await;
        (deadline, out, now() - start)
    });
    assert_eq!(deadline, None, "an overflowing duration means never");
    assert_eq!(out, None, "only the timeout can end it");
    assert_eq!(waited, YEAR);
}

#[test]
#[should_panic(expected = "no timer is armed")]
fn a_lone_sleep_for_duration_max_arms_no_timer_so_autojump_reports_a_deadlock() {
    common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async { sleep(Duration::MAX).await });
    });
}

#[test]
fn advancing_by_duration_max_fires_every_timer_and_saturates_the_clock() {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let woke = Cell::new(None);
    trellis::Builder::new().mock_clock().run(async {
        let start = now();
        nursery(async |n| {
            let woke = &woke;
            n.spawn(async move {
                sleep(CENTURY).await;
                woke.set(Some(now() - start));
            });
            trellis::yield_now().await; // the child arms its timer
            trellis::advance(Duration::MAX);
            let end = now();
            assert!(end > start + CENTURY);
            trellis::advance(Duration::MAX);
            trellis::advance(Duration::from_secs(1));
            assert_eq!(now(), end, "a saturated clock stays where it is");
            assert_eq!(
                sleep(Duration::from_secs(1)).deadline(),
                None,
                "past the end of representable time, every sleep is `never`"
            );
        })
        .await
        .unwrap();
    });
    assert!(woke.get().is_some_and(|d| d > CENTURY), "{woke:?}");
}

/// A year-long `Sleep`, polled once so that its timer is armed in the current runtime.
async fn armed_sleep() -> trellis::Sleep {
    let mut nap = sleep(YEAR);
    std::future::poll_fn(|cx| {
        assert!(Pin::new(&mut nap).poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    nap
}

/// A `Sleep` armed on a fresh autojump runtime: its timer is the runtime's first, so its
/// key's slot and sequence equal those of the first timer of any other fresh runtime.
fn sleep_armed_in_a_fresh_runtime() -> trellis::Sleep {
    run_virtual(armed_sleep())
}

/// On a fresh autojump runtime, a child arms a one-second timer (the runtime's first), then
/// `foreign` is dropped; the child must still wake at one second.
fn drop_foreign_sleep_beside_an_own_timer(foreign: trellis::Sleep) -> Duration {
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            n.spawn(async move {
                sleep(Duration::from_secs(1)).await;
            });
            trellis::yield_now().await; // the child arms its timer first
            drop(foreign);
        })
        .await
        .unwrap();
        now() - start
    })
}

/// Polls `foreign` in a fresh runtime and returns the panic message.
fn poll_foreign_sleep(mut foreign: trellis::Sleep) -> String {
    common::panic_message_of(move || {
        run_virtual(std::future::poll_fn(move |cx| {
            let _ = Pin::new(&mut foreign).poll(cx);
            Poll::Ready(())
        }))
    })
}

#[test]
fn a_sleep_dropped_in_another_runtime_on_another_thread_leaves_that_runtimes_timers_alone() {
    let waited = common::watchdog(common::HANG_LIMIT, || {
        // Runtime A is still running while its sleep is dropped in runtime B.
        run_virtual(async {
            let nap = armed_sleep().await;
            std::thread::spawn(move || drop_foreign_sleep_beside_an_own_timer(nap))
                .join()
                .expect("runtime B")
        })
    });
    assert_eq!(waited, Duration::from_secs(1));
}

#[test]
fn a_sleep_polled_in_another_runtime_on_another_thread_panics() {
    let message = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let nap = armed_sleep().await;
            std::thread::spawn(move || poll_foreign_sleep(nap))
                .join()
                .expect("runtime B")
        })
    });
    assert!(
        message.contains("polled in a runtime other than the one that armed its timer"),
        "{message}"
    );
}

#[test]
fn a_sleep_kept_from_a_finished_runtime_and_dropped_in_the_next_leaves_its_timers_alone() {
    let waited = common::watchdog(common::HANG_LIMIT, || {
        drop_foreign_sleep_beside_an_own_timer(sleep_armed_in_a_fresh_runtime())
    });
    assert_eq!(waited, Duration::from_secs(1));
}

#[test]
fn a_sleep_kept_from_a_finished_runtime_panics_when_polled_in_the_next() {
    let message = common::watchdog(common::HANG_LIMIT, || {
        poll_foreign_sleep(sleep_armed_in_a_fresh_runtime())
    });
    assert!(
        message.contains("polled in a runtime other than the one that armed its timer"),
        "{message}"
    );
}

#[test]
fn real_clock_sleeps_never_return_early() {
    // The only real sleeps in the suite: a few milliseconds, asserting order, not duration.
    trellis::run(async {
        for ms in [1u64, 2, 3] {
            let deadline = Instant::now() + Duration::from_millis(ms);
            sleep_until(deadline).await;
            assert!(
                Instant::now() >= deadline,
                "a sleep returned before its deadline"
            );
            let before = now();
            sleep(Duration::from_millis(ms)).await;
            assert!(now() >= before + Duration::from_millis(ms));
        }
    });
}

/// Real deadlines a few microseconds apart share a wake-up (each within the others'
/// slack), and none of them is woken before its own deadline. A few ms of real time.
#[test]
fn clustered_real_clock_deadlines_never_fire_early() {
    trellis::run(async {
        let base = Instant::now() + Duration::from_millis(3);
        nursery(async |n| {
            for i in 0..8u64 {
                n.spawn(async move {
                    let deadline = base + Duration::from_micros(i);
                    sleep_until(deadline).await;
                    assert!(
                        Instant::now() >= deadline,
                        "a clustered sleep returned before its deadline"
                    );
                });
            }
        })
        .await
        .unwrap();
    });
}

#[test]
fn a_dropped_sleep_leaves_no_timer_behind() {
    run_virtual(async {
        let start = now();
        {
            let mut s = std::pin::pin!(sleep(YEAR));
            std::future::poll_fn(|cx| {
                assert!(s.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
        }
        // Had the year-long timer stayed armed, autojump would now jump to it.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(now() - start, Duration::from_secs(1));
    });
}

#[test]
#[should_panic(expected = "needs a trellis runtime")]
fn sleeping_outside_a_runtime_panics_with_a_clear_message() {
    drop(sleep(Duration::from_secs(1)));
}

#[test]
#[should_panic(expected = "needs a mock clock")]
fn advancing_the_real_clock_panics_with_a_clear_message() {
    trellis::run(async { trellis::advance(Duration::from_secs(1)) });
}

// Intervals: `trellis::interval`, its missed-tick policies, reset and cancellation.

const MS: Duration = Duration::from_millis(1);

/// The ticks `ticks` gives without time moving, as offsets from `start` in milliseconds:
/// a due tick completes at its second poll (the checkpoint), one ahead never does, so each
/// tick is polled up to three times (with a yield between) and then dropped.
async fn ticks_due_now(ticks: &mut trellis::Interval, start: Instant) -> Vec<u64> {
    let before = now();
    let mut got = Vec::new();
    loop {
        let mut tick = std::pin::pin!(ticks.tick());
        let mut out = None;
        for _ in 0..3 {
            let poll = std::future::poll_fn(|cx| Poll::Ready(tick.as_mut().poll(cx))).await;
            if let Poll::Ready(at) = poll {
                out = Some(at);
                break;
            }
            trellis::yield_now().await;
        }
        match out {
            Some(at) => got.push((at - start).as_millis() as u64),
            None => break,
        }
        assert!(got.len() < 100, "an interval ticks without end: {got:?}");
    }
    assert_eq!(now(), before, "time must not move while ticks are taken");
    got
}

/// `interval(100ms)` with `behavior` on a mock clock without autojump: the first tick,
/// then the tick due at 100 ms taken at 100 ms, then (busy from 150 ms to 350 ms) the
/// ticks due at 350 ms, and then what is due at each later instant of `later` (in ms).
fn missed_ticks_timeline(behavior: trellis::MissedTicks, later: &'static [u64]) -> Vec<Vec<u64>> {
    common::watchdog(common::HANG_LIMIT, move || {
        trellis::Builder::new().mock_clock().run(async move {
            let start = now();
            let mut ticks = trellis::interval(100 * MS).with_missed_tick_behavior(behavior);
            let mut timeline = vec![ticks_due_now(&mut ticks, start).await];
            for at in [100].iter().chain([350].iter()).chain(later) {
                trellis::advance(start + Duration::from_millis(*at) - now());
                timeline.push(ticks_due_now(&mut ticks, start).await);
            }
            timeline
        })
    })
}

#[test]
fn an_interval_ticks_first_at_once_then_every_period_at_the_scheduled_instants() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(10));
            let mut got = Vec::new();
            for _ in 0..4 {
                let at = ticks.tick().await;
                assert_eq!(at, now(), "a tick on time completes at its deadline");
                got.push((at - start).as_secs());
            }
            got
        })
    });
    assert_eq!(got, [0, 10, 20, 30]);
}

#[test]
fn the_first_tick_completes_without_time_moving_but_suspends_once() {
    common::watchdog(common::HANG_LIMIT, || {
        trellis::Builder::new().mock_clock().run(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(3600));
            let polls = Cell::new(0);
            let at = count_polls(&polls, ticks.tick()).await;
            assert_eq!(at, start);
            assert_eq!(now(), start, "the first tick is immediate");
            assert_eq!(
                polls.get(),
                2,
                "every tick is a checkpoint: it suspends once"
            );
            assert_eq!(ticks_due_now(&mut ticks, start).await, [] as [u64; 0]);
        })
    });
}

#[test]
fn a_tick_is_a_checkpoint_so_two_children_interleave() {
    let log = RefCell::new(Vec::new());
    common::watchdog(common::HANG_LIMIT, move || {
        run_virtual(async {
            nursery(async |n| {
                for (a, b) in [("a1", "b1"), ("a2", "b2")] {
                    let log = &log;
                    n.spawn(async move {
                        let mut ticks = trellis::interval(Duration::from_secs(1));
                        log.borrow_mut().push(a);
                        ticks.tick().await;
                        log.borrow_mut().push(b);
                    });
                }
            })
            .await
            .unwrap();
        });
        assert_eq!(log.into_inner(), ["a1", "a2", "b1", "b2"]);
    });
}

#[test]
fn a_cancelled_child_is_dropped_at_its_first_tick() {
    let log = common::watchdog(common::HANG_LIMIT, || {
        let log = RefCell::new(Vec::new());
        run_virtual(async {
            let out = trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    let log = &log;
                    n.spawn(async move {
                        let mut ticks = trellis::interval(Duration::from_secs(1));
                        log.borrow_mut().push("before");
                        ticks.tick().await;
                        log.borrow_mut().push("after the tick");
                    });
                    scope.cancel();
                })
                .await
            })
            .await;
            assert_eq!(out, None);
        });
        log.into_inner()
    });
    assert_eq!(log, ["before"]);
}

#[test]
fn missed_ticks_burst_catches_up_every_missed_tick_then_keeps_the_schedule() {
    assert_eq!(
        missed_ticks_timeline(trellis::MissedTicks::Burst, &[399, 400, 500]),
        [
            vec![0],
            vec![100],
            vec![200, 300],
            vec![],
            vec![400],
            vec![500]
        ]
    );
}

#[test]
fn burst_is_the_default_missed_tick_behavior() {
    let behavior = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async { trellis::interval(MS).missed_tick_behavior() })
    });
    assert_eq!(behavior, trellis::MissedTicks::Burst);
}

#[test]
fn missed_ticks_delay_restarts_the_schedule_a_period_after_the_late_tick() {
    assert_eq!(
        missed_ticks_timeline(trellis::MissedTicks::Delay, &[400, 449, 450, 550]),
        [
            vec![0],
            vec![100],
            vec![200],
            vec![],
            vec![],
            vec![450],
            vec![550]
        ]
    );
}

#[test]
fn missed_ticks_skip_drops_the_missed_ticks_and_stays_on_the_grid() {
    assert_eq!(
        missed_ticks_timeline(trellis::MissedTicks::Skip, &[399, 400, 500]),
        [vec![0], vec![100], vec![200], vec![], vec![400], vec![500]]
    );
}

#[test]
fn skip_after_a_tick_taken_exactly_on_the_grid_waits_for_the_next_grid_point() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        trellis::Builder::new().mock_clock().run(async {
            let start = now();
            let mut ticks = trellis::interval(100 * MS);
            ticks.set_missed_tick_behavior(trellis::MissedTicks::Skip);
            let mut got = ticks_due_now(&mut ticks, start).await;
            trellis::advance(300 * MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            trellis::advance(99 * MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            trellis::advance(MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            got
        })
    });
    assert_eq!(got, [0, 100, 400]);
}

#[test]
fn a_tick_late_by_less_than_a_period_keeps_the_schedule_whatever_the_policy() {
    use trellis::MissedTicks::{Burst, Delay, Skip};
    for behavior in [Burst, Delay, Skip] {
        let got = common::watchdog(common::HANG_LIMIT, move || {
            trellis::Builder::new().mock_clock().run(async move {
                let start = now();
                let mut ticks = trellis::interval(100 * MS).with_missed_tick_behavior(behavior);
                let mut got = ticks_due_now(&mut ticks, start).await;
                trellis::advance(190 * MS); // the tick due at 100 ms, late by 90 ms
                got.extend(ticks_due_now(&mut ticks, start).await);
                trellis::advance(10 * MS); // 200 ms: the next tick is on schedule
                got.extend(ticks_due_now(&mut ticks, start).await);
                got
            })
        });
        assert_eq!(got, [0, 100, 200], "{behavior:?}");
    }
}

#[test]
fn missed_ticks_burst_under_autojump_delivers_every_tick_to_a_slow_consumer() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(1));
            let mut got = Vec::new();
            for _ in 0..5 {
                let at = ticks.tick().await;
                got.push((
                    (at - start).as_millis() as u64,
                    (now() - start).as_millis() as u64,
                ));
                sleep(Duration::from_millis(2500)).await; // slower than the period
            }
            got
        })
    });
    // Scheduled at 0, 1, 2, 3, 4 s; taken at 0, 2.5, 5, 7.5, 10 s: none lost.
    assert_eq!(
        got,
        [
            (0, 0),
            (1000, 2500),
            (2000, 5000),
            (3000, 7500),
            (4000, 10000)
        ]
    );
}

#[test]
fn reset_moves_the_next_tick_a_whole_period_from_now_and_drops_a_backlog() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        trellis::Builder::new().mock_clock().run(async {
            let start = now();
            let mut ticks = trellis::interval(100 * MS);
            let mut got = ticks_due_now(&mut ticks, start).await;
            trellis::advance(350 * MS); // three ticks due (Burst)
            ticks.reset();
            got.extend(ticks_due_now(&mut ticks, start).await);
            trellis::advance(99 * MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            trellis::advance(MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            trellis::advance(100 * MS);
            got.extend(ticks_due_now(&mut ticks, start).await);
            got
        })
    });
    assert_eq!(got, [0, 450, 550]);
}

#[test]
fn reset_while_a_tick_waits_rearms_its_timer_for_the_new_deadline() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(10));
            ticks.tick().await;
            // A tick that armed its timer for 10 s, cut at 4 s; then a reset at 4 s.
            assert_eq!(
                trellis::move_on_after(Duration::from_secs(4), ticks.tick()).await,
                None
            );
            ticks.reset();
            let at = ticks.tick().await;
            ((at - start).as_secs(), (now() - start).as_secs())
        })
    });
    assert_eq!(got, (14, 14));
}

#[test]
fn a_tick_dropped_by_a_timeout_is_not_lost() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(1));
            let mut got = vec![(ticks.tick().await - start).as_millis() as u64];
            for _ in 0..3 {
                // Cut short while waiting (300 ms in), then resumed: same tick.
                let cut = trellis::move_on_after(Duration::from_millis(300), ticks.tick()).await;
                assert_eq!(cut, None);
                got.push((ticks.tick().await - start).as_millis() as u64);
            }
            assert_eq!(now() - start, Duration::from_secs(3));
            got
        })
    });
    assert_eq!(got, [0, 1000, 2000, 3000]);
}

#[test]
fn a_tick_dropped_at_its_checkpoint_after_its_deadline_is_not_lost() {
    let got = common::watchdog(common::HANG_LIMIT, || {
        trellis::Builder::new().mock_clock().run(async {
            let start = now();
            let mut ticks = trellis::interval(100 * MS);
            let mut got = ticks_due_now(&mut ticks, start).await;
            trellis::advance(100 * MS);
            for _ in 0..3 {
                // Polled once (it suspends at the checkpoint), then dropped.
                drop(common::poll_once(ticks.tick()).await);
            }
            got.extend(ticks_due_now(&mut ticks, start).await);
            got
        })
    });
    assert_eq!(got, [0, 100]);
}

#[test]
fn a_dropped_tick_leaves_no_timer_behind_to_wake_its_task() {
    let polls = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let mut ticks = trellis::interval(YEAR);
            ticks.tick().await;
            drop(common::poll_once(ticks.tick()).await); // armed for a year, then dropped
            let polls = Cell::new(0);
            let out = count_polls(
                &polls,
                trellis::move_on_after(2 * YEAR, trellis::sleep_forever()),
            )
            .await;
            assert_eq!(out, None);
            polls.get()
        })
    });
    // A timer left behind would wake this task at one year: a third poll.
    assert_eq!(polls, 2, "a dropped tick's timer woke its task");
}

#[test]
fn an_interval_of_duration_max_ticks_once_then_never() {
    let (first, out) = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::MAX);
            let first = ticks.tick().await - start;
            (first, trellis::move_on_after(YEAR, ticks.tick()).await)
        })
    });
    assert_eq!(first, Duration::ZERO);
    assert_eq!(out, None, "only the timeout ends the second tick");
}

#[test]
fn an_interval_of_zero_panics_with_a_clear_message() {
    let message = common::watchdog(common::HANG_LIMIT, || {
        common::panic_message_of(|| run_virtual(async { trellis::interval(Duration::ZERO) }))
    });
    assert!(message.contains("period must be non-zero"), "{message}");
}

#[test]
fn an_interval_is_a_stream_of_its_scheduled_instants() {
    use futures::Stream;
    let got = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let mut ticks = trellis::interval(Duration::from_secs(2));
            assert_eq!(ticks.period(), Duration::from_secs(2));
            let mut got = Vec::new();
            for _ in 0..3 {
                let next = std::future::poll_fn(|cx| Pin::new(&mut ticks).poll_next(cx)).await;
                got.push(next.map(|at| (at - start).as_secs()));
            }
            got
        })
    });
    assert_eq!(got, [Some(0), Some(2), Some(4)]);
}

/// The real clock answers "is this deadline due?" with the latest reading of the current
/// tick (`rt/clock.rs`), which is never later than the true time: so no sleep and no
/// timeout may end before its deadline, even when the reading that computed one deadline
/// is reused to check another. Ordering only, never a duration.
#[test]
fn on_the_real_clock_no_deadline_is_reported_due_early() {
    common::watchdog(Duration::from_secs(20), || {
        trellis::run(async {
            for micros in [0, 1, 50, 200, 1000] {
                let d = Duration::from_micros(micros);
                let deadline = now() + d;
                sleep(d).await;
                assert!(now() >= deadline, "sleep({d:?}) ended before its deadline");
                let start = now();
                let timed_out = trellis::move_on_after(d, sleep(Duration::from_secs(10)))
                    .await
                    .is_none();
                assert!(timed_out);
                assert!(now() >= start + d, "move_on_after({d:?}) fired early");
                let deadline = now() + d;
                sleep_until(deadline).await;
                assert!(now() >= deadline);
            }
        });
    });
}
