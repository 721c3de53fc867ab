//! Behaviour of timeouts: `move_on_after` / `move_on_at`, `fail_after` / `fail_at`, their
//! nesting, and deadlines on the mock clock.
//!
//! Each test ports the behaviour of a test of Trio (`src/trio/_tests/test_timeouts.py`,
//! `src/trio/_core/_tests/test_run.py`) or of CPython
//! (`Lib/test/test_asyncio/test_timeouts.py`), named in its doc comment. On the mock clock
//! "takes about N seconds" becomes "virtual time moved by exactly N seconds".

mod common;

use std::cell::Cell;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use common::{DropCounter, catch_unwind, count_polls, ms, panic_message, run_virtual, secs};
use trellis::{
    CancelScope, advance, fail_after, fail_at, move_on_after, move_on_at, now, nursery, shield,
    sleep, sleep_forever, sleep_until, yield_now,
};

/// `fail_after` gives `Err(TimedOut)` exactly when its deadline passes, and the error
/// names that deadline; `fail_at` likewise. Ports trio `test_timeouts.py::test_fail` and
/// CPython `test_timeout_basic` / `test_timeout_at_basic` (`cm.when() == deadline`).
#[test]
fn fail_after_times_out_exactly_at_the_deadline() {
    run_virtual(async {
        let start = now();
        let err = fail_after(secs(1), sleep(secs(100))).await.unwrap_err();
        assert_eq!(now() - start, secs(1));
        assert_eq!(err.deadline(), start + secs(1));

        let start = now();
        let deadline = start + secs(3);
        let err = fail_at(deadline, sleep(secs(100))).await.unwrap_err();
        assert_eq!(now(), deadline);
        assert_eq!(err.deadline(), deadline);
        assert!(err.to_string().contains("timed out"), "{err}");
        let _: &dyn std::error::Error = &err;
    });
}

/// `move_on_after` gives `None` exactly when its deadline passes; `move_on_at` likewise.
/// Ports trio `test_timeouts.py::test_move_on_after` (`sleep(100)` inside
/// `move_on_after(TARGET)` takes `TARGET`).
#[test]
fn move_on_after_gives_none_exactly_at_the_deadline() {
    run_virtual(async {
        let start = now();
        assert_eq!(move_on_after(secs(1), sleep(secs(100))).await, None);
        assert_eq!(now() - start, secs(1));
        let start = now();
        assert_eq!(move_on_at(start + secs(2), sleep_forever()).await, None);
        assert_eq!(now() - start, secs(2));
    });
}

/// An operation that finishes first gives its value, and time moves only as far as the
/// operation needed. Ports CPython `test_timeout_not_called` and trio
/// `test_timeouts.py::test_fail` (`with fail_at(now + 100): await sleep(0)`).
#[test]
fn an_operation_that_finishes_first_keeps_its_value() {
    run_virtual(async {
        let start = now();
        assert_eq!(fail_after(secs(100), async { 7 }).await, Ok(7));
        assert_eq!(
            fail_at(start + secs(100), sleep(Duration::ZERO)).await,
            Ok(())
        );
        let got = move_on_after(secs(10), async {
            sleep(ms(10)).await;
            "done"
        })
        .await;
        assert_eq!(got, Some("done"));
        assert_eq!(now() - start, ms(10));
        // The unfired deadlines are gone: nothing is left to jump to.
        sleep(secs(1)).await;
        assert_eq!(now() - start, secs(1) + ms(10));
    });
}

/// An operation that completes in the same instant as the deadline is not lost, whichever
/// timer was armed first: the value wins over the timeout. Ports issue 3's "same instant"
/// rule (asyncio's `timeout` has the same race: CPython `test_timeout_not_called`).
#[test]
fn an_operation_completing_at_the_deadline_instant_is_not_lost() {
    run_virtual(async {
        // The scope's timer is armed first (the body's sleep arms at its first poll).
        let start = now();
        assert_eq!(move_on_after(secs(1), sleep(secs(1))).await, Some(()));
        assert_eq!(fail_after(secs(1), sleep(secs(1))).await, Ok(()));
        let d = now() + secs(1);
        assert_eq!(
            fail_at(d, async {
                sleep_until(d).await;
                42
            })
            .await,
            Ok(42)
        );
        assert_eq!(now() - start, secs(3));

        // The operation's timer is armed first (polled once before the scope starts).
        let d = now() + secs(1);
        let mut op = Box::pin(sleep_until(d));
        std::future::poll_fn(|cx| {
            assert!(op.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(fail_at(d, op).await, Ok(()));
        assert_eq!(now(), d);

        // In a nursery: a child whose sleep ends exactly at the deadline finishes.
        let finished = Cell::new(false);
        let d = now() + secs(2);
        let out = move_on_at(
            d,
            nursery(async |n| {
                let finished = &finished;
                n.spawn(async move {
                    sleep_until(d).await;
                    finished.set(true);
                });
            }),
        )
        .await;
        // The child's work at the deadline instant is not lost; the nursery itself, cancelled
        // from outside, gives no value (the timeout reports the cancellation).
        assert!(finished.get(), "finished at the deadline instant: not lost");
        assert_eq!(out, None);
    });
}

/// A zero timeout, or one whose deadline is already past, times out at the operation's
/// first suspension without moving time; an operation that completes without suspending
/// keeps its value (delivery at suspension points). Ports CPython `test_timeout_zero`,
/// `test_timeout_zero_sleep_zero`, `test_timeout_in_the_past_sleep_zero` and trio
/// `test_timeouts.py::test_sleep` (`move_on_at(current_time())` cancels `sleep(0)`).
#[test]
fn a_zero_or_past_timeout_fires_at_the_first_suspension() {
    let polls = Cell::new(0);
    run_virtual(async {
        sleep(secs(20)).await;
        let start = now();
        assert!(
            fail_after(Duration::ZERO, count_polls(&polls, sleep(secs(10))))
                .await
                .is_err()
        );
        assert!(
            fail_after(Duration::ZERO, count_polls(&polls, trellis::yield_now()))
                .await
                .is_err()
        );
        assert!(
            fail_after(Duration::ZERO, count_polls(&polls, sleep(Duration::ZERO)))
                .await
                .is_err(),
            "sleep(0) is a checkpoint"
        );
        let err = fail_at(start - secs(11), count_polls(&polls, sleep_forever()))
            .await
            .unwrap_err();
        assert_eq!(err.deadline(), start - secs(11));
        assert_eq!(
            move_on_at(start, count_polls(&polls, async { 1 })).await,
            Some(1)
        );
        assert_eq!(
            fail_after(Duration::ZERO, count_polls(&polls, async { 2 })).await,
            Ok(2)
        );
        assert_eq!(now(), start);
    });
    assert_eq!(polls.get(), 6, "each operation was polled exactly once");
}

/// Nested timeouts with the same deadline: only the outer one reports the timeout; the
/// inner one never returns (its body is dropped, and so is the code after it). Ports
/// CPython `test_nested_timeouts` and `test_waiter_cancelled` (the waiter is cancelled).
#[test]
fn nested_timeouts_with_the_same_deadline_only_the_outer_one_fires() {
    let waiter = DropCounter::new();
    let after_inner = Cell::new(false);
    run_virtual(async {
        let deadline = now() + ms(10);
        let guard = waiter.guard();
        let out = fail_at(deadline, async {
            let inner = fail_at(deadline, async move {
                sleep(secs(10)).await;
                guard.finish();
            })
            .await;
            after_inner.set(true);
            inner
        })
        .await;
        assert!(out.is_err(), "the outer timeout fired: {out:?}");
        assert_eq!(now(), deadline);
    });
    assert_eq!(waiter.dropped(), 1);
    assert!(!after_inner.get());
}

/// The inner timeout fires and is caught by the inner scope; the outer scope goes on and
/// its own, later deadline interrupts the next sleep. Ports CPython
/// `test_nested_timeouts_loop_busy` and `test_nested_timeouts_concurrent`.
#[test]
fn an_inner_timeout_is_caught_inside_and_the_outer_one_fires_later() {
    run_virtual(async {
        let start = now();
        let out = fail_after(ms(100), async {
            let inner = fail_after(ms(10), sleep(secs(1))).await;
            assert!(inner.is_err());
            assert_eq!(now() - start, ms(10));
            sleep(secs(10)).await;
        })
        .await;
        assert!(out.is_err());
        assert_eq!(out.unwrap_err().deadline(), start + ms(100));
        assert_eq!(now() - start, ms(100));
    });
}

/// An inner timeout never extends an outer deadline: an inner `fail_after(60 s)` inside an
/// outer `move_on_after(1 s)` ends at 1 s, and it is the outer scope that reports it.
/// Ports trio's deadline nesting (`test_cancel_scope_nesting`) and issue 3's rule.
#[test]
fn an_inner_timeout_never_extends_an_outer_deadline() {
    run_virtual(async {
        let start = now();
        let out = move_on_after(secs(1), fail_after(secs(60), sleep(secs(30)))).await;
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(1));
        let start = now();
        let out = move_on_after(secs(1), async {
            assert_eq!(trellis::current_effective_deadline(), Some(start + secs(1)));
            fail_after(secs(60), async {
                assert_eq!(trellis::current_effective_deadline(), Some(start + secs(1)));
            })
            .await
        })
        .await;
        assert_eq!(out, Some(Ok(())));
    });
}

/// An operation's own outcome passes through a timeout untouched: an `Err` of the operation
/// is `Ok(Err(..))`, not a timeout, and a panic propagates (and leaves the runtime usable
/// for later timeouts). Ports CPython `test_foreign_exception_passed` and
/// `test_foreign_exception_on_timeout`.
#[test]
fn the_operations_own_errors_and_panics_pass_through() {
    run_virtual(async {
        let out = fail_after(ms(10), async { Err::<(), _>("key error") }).await;
        assert_eq!(out, Ok(Err("key error")));

        let caught = catch_unwind(fail_after(ms(10), async {
            yield_now().await;
            panic!("zero division");
        }))
        .await;
        assert_eq!(panic_message(&*caught.unwrap_err()), "zero division");

        let start = now();
        assert!(fail_after(secs(1), sleep_forever()).await.is_err());
        assert_eq!(now() - start, secs(1));
    });
}

/// A timeout inside a child ends only that operation: the child goes on and the nursery is
/// not cancelled. Ports CPython `test_outer_task_is_not_cancelled`.
#[test]
fn a_timeout_in_a_child_does_not_cancel_the_nursery() {
    let sibling_done = Cell::new(false);
    run_virtual(async {
        let out = nursery(async |n| {
            let sibling_done = &sibling_done;
            let child = n.spawn(async {
                let timed_out = fail_after(ms(1), sleep(secs(10))).await.is_err();
                sleep(ms(5)).await;
                Ok(timed_out)
            });
            n.spawn(async move {
                sleep(ms(10)).await;
                sibling_done.set(true);
            });
            Ok::<_, ()>(child.await.unwrap())
        })
        .await;
        assert_eq!(out, Ok(true));
    });
    assert!(sibling_done.get());
}

/// Clean-up with its own timeout after an outer timeout fired: the shielded clean-up runs
/// until its own deadline, then the outer scope reports its timeout. Ports CPython
/// `test_nested_timeout_in_finally` (a `finally` becomes a shield in trellis).
#[test]
fn shielded_cleanup_with_its_own_timeout_after_the_outer_timeout() {
    let cleanup = Cell::new(None);
    run_virtual(async {
        let start = now();
        let out = fail_after(ms(10), async {
            sleep(ms(5)).await;
            let r = shield(fail_after(ms(15), sleep(secs(10)))).await;
            cleanup.set(Some((r.is_err(), now() - start)));
            sleep(secs(1)).await;
        })
        .await;
        assert!(out.is_err());
        assert_eq!(now() - start, ms(20));
    });
    assert_eq!(cleanup.get(), Some((true, ms(20))));
}

/// A cancelled scope around a timeout: the timeout never fires and the outer scope
/// catches the cancellation. Ports CPython `test_cancel_in_timeout_after_cancellation` /
/// `test_foreign_cancel_doesnt_timeout_if_not_expired`.
#[test]
fn an_outer_cancel_is_not_a_timeout() {
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new();
        let c = scope.clone();
        let out = scope
            .clone()
            .run(async move {
                let r = fail_after(secs(10), async {
                    sleep(secs(1)).await;
                    c.cancel();
                    sleep(secs(2)).await;
                })
                .await;
                Some(r)
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());
        assert_eq!(now() - start, secs(1));
    });
}

/// On a mock clock without autojump a deadline never fires early: it fires when
/// `advance` reaches it, exactly. Ports trio `test_basic_timeout` (`mock_clock.jump`) and
/// DESIGN.md "a deadline never fires early".
#[test]
fn a_deadline_never_fires_early_on_the_manual_mock_clock() {
    trellis::Builder::new().mock_clock().run(async {
        let fired_at = Cell::new(None);
        let start = now();
        nursery(async |n| {
            let fired_at = &fired_at;
            n.spawn(async move {
                let r = fail_after(secs(5), sleep_forever()).await;
                assert!(r.is_err());
                fired_at.set(Some(now() - start));
            });
            yield_now().await;
            advance(secs(5) - ms(1));
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(fired_at.get(), None, "fired early");
            advance(ms(1));
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(fired_at.get(), Some(secs(5)));
        })
        .await
        .unwrap();
    });
}

/// On the real clock, cancelling a scope whose body sleeps for an hour ends it at once,
/// without waiting for the timer. Ports issue 3's "on both clocks" (trio `test_cancel_unbound`,
/// "Cancel after entry"). Nothing here waits: if cancellation did not wake the scope, the
/// test would hang for an hour.
#[test]
fn cancelling_an_hour_long_sleep_on_the_real_clock_ends_it_at_once() {
    let wall = std::time::Instant::now();
    trellis::run(async {
        let scope = CancelScope::new();
        let handle = scope.clone();
        nursery(async |n| {
            n.spawn(async move {
                yield_now().await;
                handle.cancel();
            });
            assert_eq!(scope.clone().run(sleep(secs(3600))).await, None);
        })
        .await
        .unwrap();
        assert!(scope.cancelled_caught());
    });
    // Not a timing assertion: only that the hour was not slept.
    assert!(wall.elapsed() < secs(3600));
}

/// Timeouts that never fire leave nothing behind: their deadlines were disarmed when they
/// finished, so time passing them later cancels nothing, and virtual time does not move
/// for them. Ports trio `test_basic_timeout` (a deadline passing after the scope exited does
/// not set `cancel_called`) at scale; the "no system call" part of issue 3 is checked with
/// `strace`, not here.
#[test]
fn timeouts_that_do_not_fire_leave_no_timers_behind() {
    run_virtual(async {
        let start = now();
        let scopes: Vec<CancelScope> = (0..1000u64)
            .map(|i| CancelScope::new().with_deadline(start + ms(1 + i)))
            .collect();
        for (i, scope) in scopes.iter().enumerate() {
            assert_eq!(scope.clone().run(async { i }).await, Some(i));
            assert!(fail_after(ms(1), yield_now()).await.is_ok());
        }
        assert_eq!(now(), start);
        assert_eq!(move_on_after(secs(5), sleep_forever()).await, None);
        assert_eq!(now() - start, secs(5));
        assert!(scopes.iter().all(|s| !s.cancel_called()));
    });
}

/// Relative timeouts start when first polled (Trio 0.27's relative deadlines): created,
/// then awaited 3 s later, a 5 s timeout still gives the operation 5 s.
#[test]
fn a_relative_timeout_starts_at_its_first_poll() {
    run_virtual(async {
        let start = now();
        let moved_on = move_on_after(secs(5), async { sleep(secs(4)).await });
        let failed = fail_after(secs(5), sleep_forever());
        sleep(secs(3)).await;
        assert_eq!(moved_on.await, Some(()));
        assert_eq!(now() - start, secs(7));
        let err = failed.await.unwrap_err();
        assert_eq!(now() - start, secs(12));
        assert_eq!(err.deadline(), start + secs(12));
    });
}

/// `Duration::MAX` (or any duration past what `Instant` holds) means no deadline, not an
/// overflow panic.
#[test]
fn a_timeout_of_duration_max_never_fires() {
    run_virtual(async {
        let out = move_on_after(Duration::MAX, async {
            assert_eq!(trellis::current_effective_deadline(), None);
            sleep(secs(3600)).await;
            1
        })
        .await;
        assert_eq!(out, Some(1));
        assert_eq!(fail_after(Duration::MAX, async { 2 }).await, Ok(2));
    });
}
