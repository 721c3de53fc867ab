//! Behaviour of time: the mock clock with autojump, the real clock, timer ordering.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use common::run_virtual;
use trellis::{now, nursery, sleep, sleep_until};

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
    assert_eq!(woke_at, Some(Duration::from_secs(10)));
}

#[test]
fn a_deadline_in_the_past_completes_at_the_first_poll() {
    run_virtual(async {
        let start = now();
        sleep_until(start - Duration::from_secs(1)).await;
        sleep(Duration::ZERO).await;
        assert_eq!(now(), start);
    });
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
