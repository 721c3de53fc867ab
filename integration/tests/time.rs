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
