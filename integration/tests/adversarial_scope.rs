//! Adversarial programs against the promises of cancel scopes, timeouts, intervals, sleeps,
//! join handles and the error types: builders applied in odd orders, scopes run twice or
//! dropped half-way, shields toggled by other tasks while the body waits, intervals whose
//! schedule meets the end of the clock, join handles cancelled after the fact, and every
//! error's message in the shapes real programs produce (named tasks, nested groups, `?`
//! into boxed errors and anyhow).
//!
//! Time is virtual (autojump); nothing sleeps for real and nothing asserts a wall-clock
//! duration. Tests that could hang run under the watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::time::{Duration, Instant};

use common::{guarded, ms, panic_message, poll_once, run_virtual, secs};
use futures::StreamExt as _;
use futures::future::FusedFuture as _;
use trellis::{
    CancelReason, CancelScope, ErrorGroup, FromThreadError, JoinError, MissedTicks, RuntimeHandle,
    StartError, TaskName, TimedOut, cancelled, channel, fail_after, fail_at, interval,
    move_on_after, move_on_at, nursery, shield, sleep, sleep_forever, sleep_until, yield_now,
};

// ---- CancelScope builders and deadlines ------------------------------------------------

/// Attacks `CancelScope::with_deadline`: "cancelling itself at `deadline` (replacing any
/// deadline or timeout set before)". A relative timeout set first must not survive: the
/// scope fires at the absolute deadline only, and `deadline()` shows it before the start.
#[test]
fn with_deadline_after_with_timeout_replaces_the_timeout() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let scope = CancelScope::new()
                .with_timeout(secs(1))
                .with_deadline(start + secs(5));
            assert_eq!(scope.deadline(), Some(start + secs(5)));
            let handle = scope.clone();
            assert_eq!(scope.run(sleep_forever()).await, None);
            assert_eq!(
                trellis::now() - start,
                secs(5),
                "the 1 s timeout was replaced"
            );
            assert_eq!(handle.cancel_reason(), Some(CancelReason::Deadline));
        });
    });
}

/// Attacks `CancelScope::with_timeout`: "Replaces any deadline set before ... until the
/// scope starts, `deadline` is `None`", and the clock starts at the first poll. An
/// absolute deadline set first must be gone, and time spent before the first poll must
/// not count.
#[test]
fn with_timeout_after_with_deadline_replaces_it_and_starts_at_the_first_poll() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let scope = CancelScope::new()
                .with_deadline(start + secs(1))
                .with_timeout(secs(5));
            assert_eq!(
                scope.deadline(),
                None,
                "a timeout resolves when the scope starts"
            );
            sleep(secs(2)).await; // past the replaced absolute deadline
            let handle = scope.clone();
            assert_eq!(scope.run(sleep_forever()).await, None);
            assert_eq!(trellis::now() - start, secs(7));
            assert_eq!(handle.deadline(), Some(start + secs(7)));
        });
    });
}

/// Attacks `CancelScope::with_timeout`: "on a scope that already runs, the deadline is
/// `now() + timeout`", applied from inside the body through a clone of its own scope.
#[test]
fn with_timeout_on_a_running_scope_counts_from_now() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let out = CancelScope::new()
                .run_with(async |scope| {
                    sleep(secs(1)).await;
                    let same = scope.clone().with_timeout(secs(2));
                    assert_eq!(same.deadline(), Some(start + secs(3)));
                    sleep_forever().await;
                })
                .await;
            assert_eq!(out, None);
            assert_eq!(trellis::now() - start, secs(3));
        });
    });
}

/// Attacks `CancelScope::clear_deadline`: "Removes the deadline (and a relative timeout
/// not yet started)". Both kinds cleared before the start must never fire; nothing is
/// recorded as a cancellation.
#[test]
fn clear_deadline_before_the_start_removes_both_kinds_of_deadline() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let relative = CancelScope::new().with_timeout(secs(1));
            relative.clear_deadline();
            let absolute = CancelScope::new().with_deadline(start); // already due
            absolute.clear_deadline();
            let (r, a) = (relative.clone(), absolute.clone());
            assert_eq!(
                relative
                    .run(async {
                        sleep(secs(3)).await;
                        1
                    })
                    .await,
                Some(1)
            );
            assert_eq!(
                absolute
                    .run(async {
                        sleep(secs(3)).await;
                        2
                    })
                    .await,
                Some(2)
            );
            assert_eq!(trellis::now() - start, secs(6));
            for scope in [r, a] {
                assert_eq!(scope.deadline(), None);
                assert_eq!(scope.cancel_reason(), None);
                assert!(!scope.cancel_called());
                assert!(!scope.cancelled_caught());
            }
        });
    });
}

/// Attacks `CancelScope::cancel_reason` ("Why the scope was first cancelled") and
/// `cancel_called` ("or the deadline passed while the scope ran"): after a deadline fired,
/// an explicit cancel changes neither the reason nor `cancelled_caught`.
#[test]
fn a_deadline_that_fired_stays_the_reason_after_a_later_cancel() {
    guarded(|| {
        run_virtual(async {
            let scope = CancelScope::new().with_timeout(secs(1));
            let handle = scope.clone();
            assert_eq!(scope.run(sleep_forever()).await, None);
            assert!(handle.cancel_called(), "the deadline passed while it ran");
            assert!(handle.cancelled_caught());
            handle.cancel();
            handle.set_deadline(trellis::now() + secs(1)); // only recorded
            assert_eq!(handle.cancel_reason(), Some(CancelReason::Deadline));
            assert_eq!(
                handle.cancel_reason().unwrap().to_string(),
                "its deadline passed"
            );
            assert!(handle.cancelled_caught());
            let explicit = CancelScope::new();
            explicit.cancel();
            assert_eq!(
                explicit.cancel_reason().unwrap().to_string(),
                "cancelled explicitly"
            );
        });
    });
}

// ---- A scope runs once -----------------------------------------------------------------

/// Attacks `CancelScope::run`: "Panics (when polled) if this scope has already been run".
/// A `ScopeRun` created and dropped without a poll has not run the scope, so the scope
/// still runs afterwards, and its relative timeout starts only then.
#[test]
fn a_scope_run_dropped_before_its_first_poll_leaves_the_scope_runnable() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let scope = CancelScope::new().with_timeout(secs(2));
            drop(scope.clone().run(async { unreachable!("never polled") }));
            sleep(secs(5)).await;
            let handle = scope.clone();
            assert_eq!(scope.run(sleep_forever()).await, None);
            assert_eq!(trellis::now() - start, secs(7));
            assert!(handle.cancelled_caught());
        });
    });
}

/// Attacks `CancelScope::run`'s "# Panics ... a scope runs once" for a run that was cut
/// short: a scope polled once and then dropped from outside (a hard cancel) has run; a
/// second `run_with` panics with the documented message instead of running a body in a
/// scope that has exited.
#[test]
fn a_scope_hard_dropped_after_one_poll_refuses_a_second_run_with_a_clear_panic() {
    let message = guarded(|| {
        run_virtual(async {
            let scope = CancelScope::new();
            let first = poll_once(scope.clone().run(sleep_forever())).await;
            drop(first);
            let ran = Cell::new(false);
            let again = common::catch_unwind(scope.run_with(async |_| ran.set(true))).await;
            assert!(!ran.get(), "the body of a second run must not run");
            panic_message(&*again.expect_err("a second run panics"))
        })
    });
    assert!(
        message.contains("this CancelScope was already run; a scope runs once"),
        "{message}"
    );
}

// ---- Shields toggled while the body waits ----------------------------------------------

/// Attacks `CancelScope::set_shield`: "Turns the shield on or off, also while the scope
/// runs." Turned on by a sibling task before the enclosing deadline, the shield protects
/// a body that is already asleep: it finishes, and its value comes out (as in the
/// `with_shield` example: `Some(Some(..))`).
#[test]
fn a_shield_turned_on_by_another_task_protects_a_body_already_asleep() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let (outer, inner) = (CancelScope::new().with_timeout(secs(1)), CancelScope::new());
            let (o, i) = (outer.clone(), inner.clone());
            let finished = Cell::new(false);
            let out = nursery(async |n| {
                n.spawn(async move {
                    sleep(ms(500)).await;
                    i.set_shield(true);
                });
                Ok::<_, ()>(
                    outer
                        .run(inner.run(async {
                            sleep(secs(3)).await;
                            finished.set(true);
                            "done"
                        }))
                        .await,
                )
            })
            .await
            .unwrap();
            assert!(finished.get());
            assert_eq!(out, Some(Some("done")));
            assert_eq!(
                trellis::now() - start,
                secs(3),
                "the deadline waited for the shield"
            );
            assert!(o.cancel_called());
            assert!(
                !o.cancelled_caught(),
                "the body finished: nothing was caught"
            );
        });
    });
}

/// Attacks `CancelScope::set_shield`: "Turning the shield off while an enclosing scope is
/// cancelled exposes the body: it is dropped at its next suspension", and `cancel`'s "the
/// owner is woken at once, so a body sleeping for an hour ends now". Unshielded by another
/// task while it sleeps for an hour, the body must end then, not an hour later.
#[test]
fn a_shield_turned_off_by_another_task_ends_an_hour_long_sleep_at_once() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let outer = CancelScope::new().with_timeout(secs(1));
            let inner = CancelScope::new().with_shield(true);
            let (o, i, inner_handle) = (outer.clone(), inner.clone(), inner.clone());
            let reached = Cell::new(false);
            let out = nursery(async |n| {
                n.spawn(async move {
                    sleep(secs(2)).await;
                    i.set_shield(false);
                });
                Ok::<_, ()>(
                    outer
                        .run(inner.run(async {
                            sleep(secs(3600)).await;
                            reached.set(true);
                        }))
                        .await,
                )
            })
            .await
            .unwrap();
            assert_eq!(out, None);
            assert!(!reached.get());
            assert_eq!(trellis::now() - start, secs(2), "not an hour");
            assert!(o.cancelled_caught());
            assert!(!inner_handle.cancelled_caught());
        });
    });
}

/// Attacks the shield rule "A scope's deadline and explicit `cancel` act on the scope
/// itself, also when it is shielded" together with `cancelled()`: "It resolves only where
/// a shield stops the cancellation. Where the cancellation reaches the caller ... the
/// caller's unit is dropped". A shielded scope that cancels itself must drop its body at
/// `cancelled()` and catch it, not let `cancelled()` resolve.
#[test]
fn cancelled_in_a_shielded_scope_that_cancels_itself_drops_the_body() {
    guarded(|| {
        run_virtual(async {
            let resolved = Cell::new(false);
            let scope = CancelScope::new().with_shield(true);
            let handle = scope.clone();
            let out = scope
                .run_with(async |scope| {
                    scope.cancel();
                    cancelled().await;
                    resolved.set(true);
                })
                .await;
            assert_eq!(out, None);
            assert!(
                !resolved.get(),
                "the scope's own cancel is not seen through a shield"
            );
            assert!(handle.cancelled_caught());
        });
    });
}

/// Attacks `cancelled()`: "Resolves when a scope that encloses the caller is cancelled,
/// looking through shields", with a shield that has a deadline of its own. When the outer
/// deadline comes first, `cancelled()` resolves and the clean-up runs on; when the
/// shield's own deadline comes first, that reaches the caller: the body is dropped and
/// `cancelled()` never resolves.
#[test]
fn cancelled_inside_a_shield_with_its_own_deadline_hears_only_the_outside() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let heard = Cell::new(None);
            let out = move_on_after(secs(1), async {
                CancelScope::new()
                    .with_shield(true)
                    .with_timeout(secs(5))
                    .run(async {
                        cancelled().await;
                        heard.set(Some(trellis::now() - start));
                        "cleaned up"
                    })
                    .await
            })
            .await;
            assert_eq!(heard.get(), Some(secs(1)));
            assert_eq!(out, Some(Some("cleaned up")));

            let start = trellis::now();
            let heard = Cell::new(false);
            let shield_scope = CancelScope::new().with_shield(true).with_timeout(secs(5));
            let s = shield_scope.clone();
            let out = move_on_after(secs(10), async {
                shield_scope
                    .run(async {
                        cancelled().await;
                        heard.set(true);
                    })
                    .await
            })
            .await;
            assert!(!heard.get());
            assert_eq!(out, Some(None), "the shield caught its own deadline");
            assert!(s.cancelled_caught());
            assert_eq!(trellis::now() - start, secs(5));
        });
    });
}

/// Attacks `shield`: "No scope can cancel it", with shields nested three deep under a
/// cancelled nursery whose sibling failed: the innermost clean-up runs to its end, its
/// value comes out through each shield, and the failure is still reported once.
#[test]
fn nested_shields_under_a_failing_nursery_finish_and_the_failure_is_kept() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let log = RefCell::new(Vec::new());
            let group = nursery(async |n| {
                n.spawn_named("crasher", async {
                    sleep(secs(1)).await;
                    Err::<(), _>("crashed")
                });
                let log = &log;
                n.spawn(async move {
                    let v = shield(async {
                        shield(async {
                            shield(async {
                                sleep(secs(3)).await;
                                log.borrow_mut().push("innermost");
                                7
                            })
                            .await
                                + 1
                        })
                        .await
                    })
                    .await;
                    log.borrow_mut()
                        .push(if v == 8 { "value kept" } else { "value lost" });
                    sleep(secs(1)).await;
                    log.borrow_mut().push("not reached: exposed again");
                });
                Ok(())
            })
            .await
            .unwrap_err();
            assert_eq!(*log.borrow(), ["innermost", "value kept"]);
            assert_eq!(trellis::now() - start, secs(3));
            assert_eq!(group.to_string(), "child 1 \"crasher\" failed: crashed");
        });
    });
}

// ---- Timeouts --------------------------------------------------------------------------

/// Attacks `fail_at`: "`fut` is polled at least once, even when `deadline` has already
/// passed", and `TimedOut::deadline`: "The deadline that passed". A past deadline reports
/// exactly that instant (not `now`), moves no time, and a future that completes without
/// suspending still gives `Ok`.
#[test]
fn fail_at_a_past_deadline_reports_that_deadline_and_moves_no_time() {
    guarded(|| {
        run_virtual(async {
            sleep(secs(10)).await; // so that there is a past to point at
            let now = trellis::now();
            let past = now - secs(5);
            let err = fail_at(past, sleep_forever()).await.unwrap_err();
            assert_eq!(err.deadline(), past);
            assert_eq!(trellis::now(), now);
            assert_eq!(fail_at(past, async { 3 }).await, Ok(3));
            let polled = Cell::new(0);
            let err = fail_at(past, async {
                polled.set(polled.get() + 1);
                yield_now().await;
                polled.set(polled.get() + 1);
            })
            .await
            .unwrap_err();
            assert_eq!((polled.get(), err.deadline()), (1, past));
            assert_eq!(move_on_at(past, async { 4 }).await, Some(4));
        });
    });
}

/// Attacks `FailAt`'s "# Cancellation: an enclosing cancellation drops the operation and
/// is caught by the enclosing scope (it is not a timeout)" in its most confusing shape:
/// a `fail_after` whose own deadline is *later* than an enclosing explicit cancel that a
/// sibling issues. The `fail_after` must not report `TimedOut`, and the code after it
/// must not run.
#[test]
fn an_enclosing_cancel_of_a_fail_after_is_never_reported_as_a_timeout() {
    guarded(|| {
        run_virtual(async {
            let outcome = RefCell::new(None);
            let scope = CancelScope::new();
            let (handle, caught) = (scope.clone(), scope.clone());
            nursery(async |n| {
                n.spawn(async move {
                    sleep(secs(1)).await;
                    handle.cancel();
                });
                scope
                    .run(async {
                        let r = fail_after(secs(5), sleep_forever()).await;
                        *outcome.borrow_mut() = Some(r);
                    })
                    .await;
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            assert_eq!(*outcome.borrow(), None, "no TimedOut for an outer cancel");
            assert!(caught.cancelled_caught());
        });
    });
}

/// Attacks `TimedOut`'s `Display` and the ecosystem promise (errors "fit the ecosystem"):
/// `?` into `Box<dyn Error>` and into `anyhow` keeps the message, and the error downcasts
/// back with its deadline.
#[test]
fn a_timed_out_error_keeps_its_message_and_deadline_through_question_mark() {
    async fn boxed() -> Result<(), Box<dyn Error + Send + Sync>> {
        fail_after(secs(2), sleep_forever()).await?;
        Ok(())
    }
    async fn via_anyhow() -> anyhow::Result<()> {
        fail_after(secs(2), sleep_forever()).await?;
        Ok(())
    }
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let err = boxed().await.unwrap_err();
            let text = "the operation timed out: its deadline passed before it finished";
            assert_eq!(err.to_string(), text);
            assert!(err.source().is_none());
            let timed_out = err.downcast::<TimedOut>().unwrap();
            assert_eq!(timed_out.deadline(), start + secs(2));
            let err = via_anyhow().await.unwrap_err();
            assert_eq!(err.to_string(), text);
            assert_eq!(err.chain().count(), 1);
            assert_eq!(
                err.downcast_ref::<TimedOut>().unwrap().deadline(),
                start + secs(4)
            );
        });
    });
}

// ---- Intervals -------------------------------------------------------------------------

/// Attacks `Interval::set_missed_tick_behavior`: "it applies from the next tick that
/// completes". Switched from `Burst` to `Skip` in the middle of a backlog, the tick that
/// completes next follows `Skip` (back on the grid), the one before it `Burst`.
#[test]
fn a_missed_tick_policy_changed_mid_backlog_applies_from_the_next_tick() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let mut ticks = interval(ms(100));
            assert_eq!(ticks.tick().await, start);
            sleep_until(start + ms(350)).await; // ticks due at 100, 200, 300 missed
            assert_eq!(
                ticks.tick().await,
                start + ms(100),
                "Burst: the backlog starts"
            );
            ticks.set_missed_tick_behavior(MissedTicks::Skip);
            assert_eq!(
                ticks.tick().await,
                start + ms(200),
                "still due: completes at once"
            );
            assert_eq!(trellis::now() - start, ms(350));
            // Skip decided after the 200 tick: 300 is dropped, back on the grid at 400.
            assert_eq!(ticks.tick().await, start + ms(400));
            assert_eq!(trellis::now() - start, ms(400));
            ticks.set_missed_tick_behavior(MissedTicks::Delay);
            sleep_until(start + ms(750)).await; // 500, 600, 700 missed
            assert_eq!(ticks.tick().await, start + ms(500));
            assert_eq!(ticks.tick().await, start + ms(850), "Delay: 750 + period");
        });
    });
}

/// Attacks `MissedTicks::Skip`: "the next one is due at the next multiple of `period`
/// (counted from the start) after the moment it was taken", with a period that has a
/// fraction of a second and does not divide the delay: every tick stays exactly on the
/// grid, to the nanosecond.
#[test]
fn skip_stays_on_the_grid_with_an_odd_sub_second_period() {
    guarded(|| {
        run_virtual(async {
            let period = Duration::new(1, 333_333_333);
            let start = trellis::now();
            let mut ticks = interval(period).with_missed_tick_behavior(MissedTicks::Skip);
            ticks.tick().await;
            for busy in [ms(4_100), ms(9_999), Duration::new(3, 777)] {
                sleep(busy).await;
                let late = ticks.tick().await; // due, completes at once
                let next = ticks.tick().await;
                let since = (next - start).as_nanos();
                assert_eq!(since % period.as_nanos(), 0, "off the grid: {since} ns");
                assert!(next > late + period, "a missed tick was not dropped");
                assert!(next - period < trellis::now(), "a grid point was skipped");
                assert_eq!(trellis::now(), next);
            }
        });
    });
}

/// Attacks `interval`: "A `period` too long for the clock to add ... means 'never again'"
/// and the `Interval` state docs ("`None`: never, the next deadline overflowed the
/// clock") for a period whose *second* addition overflows: the interval ticks at the
/// start and at `start + period` (the end of time, reached by autojump), then never; a
/// timeout ends the third tick, and an autojump runtime does not spin or panic.
#[test]
fn an_interval_whose_third_tick_overflows_the_clock_ticks_twice_then_never() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let span = common::latest_instant(start) - start;
            let period = span / 3 * 2;
            let mut ticks = interval(period);
            assert_eq!(ticks.tick().await, start);
            assert_eq!(ticks.tick().await, start + period);
            assert_eq!(trellis::now(), start + period);
            let third = move_on_after(secs(1), ticks.tick()).await;
            assert_eq!(third, None, "the third tick cannot be represented: never");
            assert_eq!(trellis::now(), start + period + secs(1));
        });
    });
}

/// Attacks `Interval::tick`'s "Cancellation: Cancel-safe ... the next call to `tick`
/// returns the tick the dropped future was waiting for", across the two ways of taking a
/// tick: a `tick()` dropped mid-wait by a timeout, then the `Stream` (`next()`), then a
/// `next()` dropped mid-wait, then `tick()` again: no tick lost, none doubled.
#[test]
fn ticks_dropped_mid_wait_alternating_tick_and_stream_lose_nothing() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let mut ticks = interval(secs(1));
            assert_eq!(ticks.next().await, Some(start));
            assert_eq!(move_on_after(ms(400), ticks.tick()).await, None);
            assert_eq!(ticks.next().await, Some(start + secs(1)));
            assert_eq!(move_on_after(ms(400), ticks.next()).await, None);
            assert_eq!(ticks.tick().await, start + secs(2));
            assert_eq!(trellis::now() - start, secs(2));
            let mut tick = ticks.tick();
            assert!(!tick.is_terminated());
            assert_eq!((&mut tick).await, start + secs(3));
            assert!(tick.is_terminated());
        });
    });
}

/// Attacks `interval`'s "# Panics: Panics when `period` is zero (as tokio's `interval`)"
/// with the message that says why, also for the smallest non-zero period, which must tick
/// (one nanosecond apart) rather than panic or spin without time passing.
#[test]
fn a_zero_period_panics_and_one_nanosecond_ticks_with_time_passing() {
    let message = guarded(|| {
        common::panic_message_of(|| {
            run_virtual(async {
                let _ = interval(Duration::ZERO);
            })
        })
    });
    assert!(message.contains("the period must be non-zero"), "{message}");
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let mut ticks = interval(Duration::from_nanos(1));
            for i in 0..1000u32 {
                assert_eq!(ticks.tick().await, start + Duration::from_nanos(i.into()));
            }
            assert_eq!(trellis::now() - start, Duration::from_nanos(999));
        });
    });
}

// ---- sleep_until -----------------------------------------------------------------------

/// Attacks `sleep_until`: a far-future deadline ends only by a cancellation; dropped by a
/// timeout, its timer goes with it ("Cancel-safe: dropping the future removes its timer"),
/// so autojump does not jump a century ahead afterwards. A past deadline is one
/// checkpoint that completes without moving time, and reports the deadline it was given.
#[test]
fn sleep_until_far_future_and_past_instants() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let century = start + secs(100 * 365 * 24 * 3600);
            let nap = sleep_until(century);
            assert_eq!(nap.deadline(), Some(century));
            assert_eq!(move_on_after(secs(1), nap).await, None);
            sleep(secs(1)).await;
            assert_eq!(trellis::now() - start, secs(2), "the dropped timer is gone");

            sleep(secs(10)).await;
            let past = trellis::now() - secs(10);
            let before = trellis::now();
            let mut nap = sleep_until(past);
            assert_eq!(nap.deadline(), Some(past));
            let other_ran = Cell::new(false);
            nursery(async |n| {
                n.spawn(async { other_ran.set(true) });
                (&mut nap).await;
                assert!(other_ran.get(), "a past deadline still suspends once");
            })
            .await
            .unwrap();
            assert!(nap.is_terminated());
            assert_eq!(trellis::now(), before);
        });
    });
}

// ---- JoinHandle ------------------------------------------------------------------------

/// Attacks `JoinHandle::cancel`: "Cancelling a child that has finished changes nothing".
/// The value is still there for the await, `is_finished` stays true, and a cancel after
/// the value was taken does not turn `Taken` into a cancellation.
#[test]
fn cancelling_a_finished_child_keeps_its_value() {
    guarded(|| {
        run_virtual(async {
            nursery(async |n| {
                let mut child = n.spawn(async { Ok(42) });
                yield_now().await;
                assert!(child.is_finished());
                child.cancel();
                child.cancel();
                assert!(child.is_finished());
                assert_eq!((&mut child).await.unwrap(), 42);
                child.cancel();
                let taken = (&mut child).await.unwrap_err();
                assert!(!taken.is_cancelled() && !taken.is_failed());
                assert_eq!(
                    taken.to_string(),
                    "the value of child 1 was already taken by an earlier await of its handle"
                );
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
        });
    });
}

/// Attacks `JoinHandle::cancel` for a child not yet run: "it runs to its first one if it
/// has not run yet", `is_finished` ("Whether the child has finished (with a value, a
/// failure or a cancellation)") and the `JoinError` of a cancel, awaited twice: the second
/// await says cancelled again, not `Taken` (no value was ever taken).
#[test]
fn a_child_cancelled_before_its_first_poll_runs_to_it_and_reports_cancelled_each_time() {
    guarded(|| {
        run_virtual(async {
            let ran_to = Cell::new(0);
            nursery(async |n| {
                let ran_to = &ran_to;
                let mut child = n.spawn_named("late", async move {
                    ran_to.set(1);
                    sleep(secs(1)).await;
                    ran_to.set(2);
                    Ok(5)
                });
                child.cancel();
                assert!(!child.is_finished(), "not run yet");
                let first: JoinError = (&mut child).await.unwrap_err();
                assert!(child.is_finished());
                assert!(child.is_terminated());
                let second = (&mut child).await.unwrap_err();
                for err in [first, second] {
                    assert!(err.is_cancelled(), "{err}");
                    assert_eq!(err.name(), Some("late"));
                    assert_eq!(
                        err.to_string(),
                        "child 1 \"late\" was cancelled before it finished"
                    );
                }
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            assert_eq!(ran_to.get(), 1);
        });
    });
}

/// Attacks `JoinHandle::cancel`: "dropped at its next suspension ..., after any shielded
/// part inside it has finished", and "A cancelled child is not a failure". The shield
/// finishes, the code after it does not run past the next suspension, the nursery is
/// `Ok` and the sibling runs on.
#[test]
fn a_cancelled_child_finishes_its_shield_then_stops_at_the_next_suspension() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let log = RefCell::new(Vec::new());
            let out = nursery(async |n| {
                let log = &log;
                let child = n.spawn(async move {
                    shield(async {
                        sleep(secs(2)).await;
                        log.borrow_mut().push("shield done");
                    })
                    .await;
                    log.borrow_mut().push("after shield, no await yet");
                    sleep(secs(1)).await;
                    log.borrow_mut().push("not reached");
                });
                let sibling = n.spawn(async {
                    sleep(secs(5)).await;
                    Ok(9)
                });
                sleep(ms(10)).await;
                child.cancel();
                let err = child.await.unwrap_err();
                assert!(err.is_cancelled());
                assert_eq!(trellis::now() - start, secs(2));
                Ok::<_, ()>(sibling.await.unwrap())
            })
            .await;
            assert_eq!(out, Ok(9));
            assert_eq!(*log.borrow(), ["shield done", "after shield, no await yet"]);
            assert_eq!(trellis::now() - start, secs(5));
        });
    });
}

/// Attacks `JoinHandle`: "Dropping the handle does not affect the child." A child whose
/// handle is dropped at once still runs to its end, and one whose handle is dropped and
/// that fails still fails its nursery, named in the group.
#[test]
fn a_dropped_join_handle_neither_stops_its_child_nor_hides_its_failure() {
    guarded(|| {
        run_virtual(async {
            let finished = Cell::new(false);
            nursery(async |n| {
                let finished = &finished;
                drop(n.spawn(async move {
                    sleep(secs(1)).await;
                    finished.set(true);
                }));
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            assert!(finished.get());

            let group = nursery(async |n| {
                drop(n.spawn_named("orphan", async {
                    sleep(secs(1)).await;
                    Err::<(), _>("orphan failed")
                }));
                Ok(())
            })
            .await
            .unwrap_err();
            assert_eq!(
                group.to_string(),
                "child 1 \"orphan\" failed: orphan failed"
            );
            assert_eq!(group.failures()[0].label().name(), Some("orphan"));
        });
    });
}

/// Attacks `JoinError`'s messages for named children, as a shielded awaiter sees them:
/// "the child failed ... the nursery reports the error" names the failed child, a sibling
/// dropped by that failure is "cancelled", each with its name; and the nursery reports the
/// failure once.
#[test]
fn join_errors_of_named_children_name_them_and_say_what_happened() {
    guarded(|| {
        run_virtual(async {
            let seen = RefCell::new(Vec::new());
            let group = nursery(async |n| {
                let db = n.spawn_named("db", async {
                    sleep(secs(1)).await;
                    Err::<u8, _>("connection refused")
                });
                let cache = n.spawn_named(String::from("cache warmer"), sleep_forever());
                shield(async {
                    let failed = db.await.unwrap_err();
                    let cancelled = cache.await.unwrap_err();
                    assert!(failed.is_failed() && cancelled.is_cancelled());
                    assert_eq!(failed.task(), TaskName::Child(1));
                    assert_eq!(cancelled.name(), Some("cache warmer"));
                    seen.borrow_mut().push(failed.to_string());
                    seen.borrow_mut().push(cancelled.to_string());
                })
                .await;
                Ok(())
            })
            .await
            .unwrap_err();
            assert_eq!(
                *seen.borrow(),
                [
                    "child 1 \"db\" failed; its nursery reports the error (or resumes the panic)",
                    "child 2 \"cache warmer\" was cancelled before it finished",
                ]
            );
            assert_eq!(group.len(), 1);
            assert_eq!(
                group.to_string(),
                "child 1 \"db\" failed: connection refused"
            );
        });
    });
}

// ---- Error groups in realistic shapes --------------------------------------------------

/// Attacks `ErrorGroup`'s `Display` ("the message names every task that failed and how")
/// for nested nurseries: a group inside a group reads as a path from the outer task to
/// the inner one, `{:#}` reaches the innermost anyhow chain, and `into_first` /
/// `failures()` / `into_errors` give the inner group back by value.
#[test]
fn nested_error_groups_read_as_a_path_and_come_apart_by_value() {
    guarded(|| {
        run_virtual(async {
            let group: ErrorGroup<ErrorGroup<anyhow::Error>> = nursery(async |n| {
                n.spawn_named("worker", async {
                    nursery(async |inner| {
                        inner.spawn(async { Ok::<_, anyhow::Error>(()) });
                        inner.spawn_named("db", async {
                            Err::<(), _>(
                                anyhow::anyhow!("connection refused").context("opening the db"),
                            )
                        });
                        Ok(())
                    })
                    .await
                });
                Ok(())
            })
            .await
            .unwrap_err();
            assert_eq!(
                group.to_string(),
                "child 1 \"worker\" failed: child 2 \"db\" failed: opening the db"
            );
            assert_eq!(
                format!("{group:#}"),
                "child 1 \"worker\" failed: child 2 \"db\" failed: opening the db: \
                 connection refused"
            );
            let outer = &group.failures()[0];
            assert_eq!(outer.task(), TaskName::Child(1));
            assert_eq!(outer.error().failures()[0].task(), TaskName::Child(2));
            let inner = group.into_first();
            assert_eq!(inner.failures()[0].label().name(), Some("db"));
            let errors = inner.into_errors();
            let chain: Vec<String> = errors[0].chain().map(ToString::to_string).collect();
            assert_eq!(chain, ["opening the db", "connection refused"]);
        });
    });
}

/// Attacks `ErrorGroup`'s order promise ("in the order they occurred") and the labels of
/// `Failure` ("The task's name (if it was given one) and where it was spawned"): a body
/// error and named and unnamed children failing at different instants; each failure
/// points at its own spawn site in this file, and `Display` counts and lists them in order.
#[test]
fn a_mixed_group_lists_failures_in_time_order_with_their_spawn_sites() {
    guarded(|| {
        run_virtual(async {
            let group = nursery(async |n| {
                n.spawn(async { Err::<(), _>(String::from("unnamed")) });
                n.spawn_named("slow", async {
                    shield(sleep(secs(2))).await;
                    Err::<(), _>(String::from("late but shielded"))
                });
                Err::<(), _>(String::from("body"))
            })
            .await
            .unwrap_err();
            let tasks: Vec<TaskName> = group.failures().iter().map(|f| f.task()).collect();
            assert_eq!(
                tasks,
                [TaskName::Body, TaskName::Child(1), TaskName::Child(2)]
            );
            assert_eq!(
                group.to_string(),
                "3 tasks failed: the nursery body failed: body; child 1 failed: unnamed; \
                 child 2 \"slow\" failed: late but shielded"
            );
            for failure in group.failures() {
                assert_eq!(failure.label().location().file(), file!(), "{failure}");
            }
            assert_eq!(
                group.failures()[1].label().to_string().split(':').next(),
                Some(concat!("spawned at ", file!()))
            );
            assert_eq!(group.first(), "body");
            assert_eq!(
                group.into_errors(),
                ["body", "unnamed", "late but shielded"]
            );
        });
    });
}

/// Attacks `StartError`'s messages for named children: each kind (failed, not ready,
/// cancelled) names the child given to `start_named`, and only `Failed` gives an error
/// back; as a `std::error::Error` the message survives `?` into a boxed error.
#[test]
fn start_errors_of_named_children_name_them_in_every_kind() {
    guarded(|| {
        run_virtual(async {
            let seen = RefCell::new(Vec::new());
            trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    let failed: Result<u16, StartError<&str>> = n
                        .start_named("binder", async |_n, _status| Err::<(), _>("port in use"))
                        .await;
                    let not_ready: Result<u16, _> =
                        n.start_named("forgetful", async |_n, _status| Ok(())).await;
                    let stop = scope.clone();
                    n.spawn(async move {
                        sleep(secs(1)).await;
                        stop.cancel();
                    });
                    let cancelled: Result<u16, _> =
                        shield(n.start_named("slowpoke", async |_n, _status| {
                            sleep_forever().await;
                            Ok(())
                        }))
                        .await;
                    for r in [failed, not_ready, cancelled] {
                        let err = r.unwrap_err();
                        let boxed: Box<dyn Error> = Box::new(err.clone());
                        assert_eq!(boxed.to_string(), err.to_string());
                        seen.borrow_mut().push((err.to_string(), err.into_error()));
                    }
                    Ok(())
                })
                .await
            })
            .await;
            let seen = seen.borrow();
            assert_eq!(
                seen[0],
                (
                    String::from("child 1 \"binder\" failed before it was ready: port in use"),
                    Some("port in use")
                )
            );
            assert!(
                seen[1]
                    .0
                    .starts_with("child 2 \"forgetful\" finished without calling `started`"),
                "{}",
                seen[1].0
            );
            assert!(
                seen[1].0.contains("status.started(value)"),
                "what to do: {}",
                seen[1].0
            );
            assert_eq!(seen[1].1, None);
            assert_eq!(
                seen[2],
                (
                    String::from("child 4 \"slowpoke\" was cancelled before it was ready"),
                    None
                )
            );
        });
    });
}

/// Attacks the module promise of `nursery/error.rs` ("`?` takes them into
/// `anyhow::Result` or `Box<dyn Error>`") for every error type a program meets on one
/// path: `TimedOut` inside a child, the group around it, a `JoinError`, channel errors;
/// each keeps its exact message through `?`, and a group of `TimedOut`s names the task
/// that timed out.
#[test]
fn errors_keep_their_messages_through_question_mark_into_box_and_anyhow() {
    async fn group_of_timeouts() -> Result<(), ErrorGroup<TimedOut>> {
        nursery(async |n| {
            n.spawn_named("fetch", async {
                fail_after(secs(1), sleep_forever()).await?;
                Ok(())
            });
            Ok(())
        })
        .await
    }
    async fn boxed() -> Result<(), Box<dyn Error>> {
        group_of_timeouts().await?;
        Ok(())
    }
    async fn via_anyhow() -> anyhow::Result<()> {
        group_of_timeouts().await?;
        Ok(())
    }
    async fn channel_errors() -> anyhow::Result<()> {
        let (tx, rx) = channel::<u8>(1);
        drop(rx);
        tx.send(1).await?;
        Ok(())
    }
    guarded(|| {
        run_virtual(async {
            let text = "child 1 \"fetch\" failed: the operation timed out: its deadline \
                        passed before it finished";
            assert_eq!(boxed().await.unwrap_err().to_string(), text);
            let err = via_anyhow().await.unwrap_err();
            assert_eq!(err.to_string(), text);
            assert_eq!(
                format!("{err:#}"),
                text,
                "no source chain repeats the message"
            );
            let group = err.downcast::<ErrorGroup<TimedOut>>().unwrap();
            assert_eq!(group.failures()[0].label().name(), Some("fetch"));
            assert_eq!(
                channel_errors().await.unwrap_err().to_string(),
                "sending on a channel whose receivers are all closed"
            );
            let (tx, rx) = channel::<u8>(1);
            drop(tx);
            let recv: anyhow::Result<u8> = async { Ok(rx.recv().await?) }.await;
            assert_eq!(
                recv.unwrap_err().to_string(),
                "receiving on a channel whose senders are all closed"
            );
        });
    });
}

/// Attacks `FromThreadError`: "the message says what happened ... and what to do", in its
/// three realistic shapes: a handle used after its runtime ended, on the runtime's own
/// thread, and on the thread of another runtime (a worker that runs its own runtime). Each
/// names the method called and is a `std::error::Error` that `?` takes into anyhow.
#[test]
fn from_thread_errors_name_the_method_and_the_situation() {
    let (gone_sync, gone_run) = guarded(|| {
        let handle = trellis::run(async { RuntimeHandle::current() });
        (
            handle.run_sync(|| 1).unwrap_err(),
            handle.run(|| async {}).unwrap_err(),
        )
    });
    assert!(gone_sync.is_runtime_gone() && gone_run.is_runtime_gone());
    assert!(
        gone_sync
            .to_string()
            .starts_with("RuntimeHandle::run_sync: "),
        "{gone_sync}"
    );
    assert!(
        gone_run.to_string().starts_with("RuntimeHandle::run: "),
        "{gone_run}"
    );
    assert!(
        gone_sync.to_string().contains("has finished"),
        "{gone_sync}"
    );

    let (own, other) = guarded(|| {
        trellis::Builder::new().autojump().run(async {
            let own = RuntimeHandle::current().run_sync(|| 1).unwrap_err();
            let handle = RuntimeHandle::current();
            let other = trellis::to_thread(move || {
                trellis::run(async move { handle.run(|| async { 2 }).unwrap_err() })
            })
            .await;
            (own, other)
        })
    });
    assert!(own.is_on_runtime_thread() && !own.is_runtime_gone());
    assert!(other.is_on_runtime_thread());
    let own_text = own.to_string();
    let other_text = other.to_string();
    assert!(own_text.contains("runtime's own thread"), "{own_text}");
    assert!(own_text.contains("to_thread"), "what to do: {own_text}");
    assert!(
        other_text.starts_with("RuntimeHandle::run was called"),
        "{other_text}"
    );
    assert!(
        other_text.contains("another trellis runtime"),
        "{other_text}"
    );
    fn into_anyhow(e: FromThreadError) -> anyhow::Result<()> {
        Err(e)?;
        Ok(())
    }
    assert_eq!(into_anyhow(other).unwrap_err().to_string(), other_text);
}

/// Attacks the errors' shared style (integration/tests/errors.rs: "Display: lowercase, no
/// trailing period, what happened"; `nursery/error.rs`: "Every one of them implements
/// `std::error::Error`"): every error value of every type, made the way a program makes
/// it, is an `Error + Send + Sync + 'static` with no `source()`, a non-empty message that
/// ends without a period and starts in lower case (or with a code name), and the same
/// message through `Box<dyn Error>` and anyhow.
#[test]
fn every_error_type_is_a_std_error_with_a_message_in_the_house_style() {
    fn check<E: Error + Send + Sync + 'static>(what: &str, e: E, bad: &mut Vec<String>) {
        let text = e.to_string();
        let first = text.chars().next();
        if text.is_empty()
            || text.ends_with('.')
            || text.ends_with(' ')
            || first.is_some_and(|c| c.is_uppercase()) && !text.starts_with("RuntimeHandle::")
        {
            bad.push(format!("{what}: {text:?}"));
        }
        if e.source().is_some() {
            bad.push(format!("{what}: has a source"));
        }
        let via_anyhow = anyhow::Error::new(e);
        if via_anyhow.to_string() != text {
            bad.push(format!("{what}: anyhow changed {text:?}"));
        }
        let boxed: Box<dyn Error + Send + Sync> = via_anyhow.into();
        if boxed.to_string() != text {
            bad.push(format!("{what}: boxing changed {text:?}"));
        }
    }
    let mut bad = Vec::new();
    let gone = trellis::run(async { RuntimeHandle::current() })
        .run_sync(|| ())
        .unwrap_err();
    check("FromThreadError (gone)", gone, &mut bad);
    let (group, timed_out, joins) = guarded(|| {
        run_virtual(async {
            let group = nursery(async |n| {
                n.spawn(async { Err::<(), _>(std::io::Error::other("disk full")) });
                Ok(())
            })
            .await
            .unwrap_err();
            let timed_out = fail_after(secs(1), sleep_forever()).await.unwrap_err();
            let joins = nursery(async |n| {
                let mut done = n.spawn(async {});
                let cancelled = n.spawn(sleep_forever());
                cancelled.cancel();
                (&mut done).await.unwrap();
                let taken = (&mut done).await.unwrap_err();
                Ok::<_, ()>(vec![taken, cancelled.await.unwrap_err()])
            })
            .await
            .unwrap();
            (group, timed_out, joins)
        })
    });
    let strings = group_of_strings();
    check("Failure", strings.failures()[0].clone(), &mut bad);
    check("ErrorGroup<String>", strings, &mut bad);
    check("ErrorGroup", group, &mut bad);
    check("TimedOut", timed_out, &mut bad);
    for (i, e) in joins.into_iter().enumerate() {
        check(&format!("JoinError {i}"), e, &mut bad);
    }
    let (tx, rx) = channel::<u8>(0);
    check("TrySendError::Full", tx.try_send(1).unwrap_err(), &mut bad);
    check("TryRecvError::Empty", rx.try_recv().unwrap_err(), &mut bad);
    rx.close();
    check(
        "TrySendError::Disconnected",
        tx.try_send(1).unwrap_err(),
        &mut bad,
    );
    check("TryRecvError::Closed", rx.try_recv().unwrap_err(), &mut bad);
    tx.close();
    check(
        "TrySendError::Closed",
        tx.try_send(1).unwrap_err(),
        &mut bad,
    );
    let lock = trellis::Lock::new(());
    let _held = lock.try_lock().unwrap();
    check("TryLockError", lock.try_lock().unwrap_err(), &mut bad);
    let semaphore = trellis::Semaphore::with_max_value(1, 1).unwrap();
    check(
        "SemaphoreError::ReleasedTooManyTimes",
        semaphore.release().unwrap_err(),
        &mut bad,
    );
    check(
        "SemaphoreError::MaxBelowValue",
        trellis::Semaphore::with_max_value(2, 1).unwrap_err(),
        &mut bad,
    );
    let limiter = trellis::CapacityLimiter::new(1).unwrap();
    check(
        "LimiterError::NotBorrowing",
        limiter
            .release_on_behalf_of(trellis::BorrowerId::new())
            .unwrap_err(),
        &mut bad,
    );
    check(
        "LimiterError::ZeroTotalTokens",
        trellis::CapacityLimiter::new(0).unwrap_err(),
        &mut bad,
    );
    static A: trellis::ContextVar<u8> = trellis::ContextVar::new("a");
    static B: trellis::ContextVar<u8> = trellis::ContextVar::new("b");
    check("ResetError", B.reset(A.set(1)).unwrap_err(), &mut bad);
    assert!(
        bad.is_empty(),
        "messages off the house style:\n{}",
        bad.join("\n")
    );
}

/// The group of a nursery whose two children fail with strings.
fn group_of_strings() -> ErrorGroup<String> {
    trellis::run(nursery(async |n| {
        n.spawn_named("parser", async { Err::<(), _>(String::from("bad input")) });
        n.spawn(async { Err::<(), _>(String::from("no config")) });
        Ok(())
    }))
    .unwrap_err()
}

// ---- Remote cancels and recycled scopes ------------------------------------------------

/// Attacks the scope tree's reuse of exited nodes (`scope/tree.rs`: "a node is taken from
/// [the pool] only when nothing else references it") against `CancelScope::remote`: a
/// remote handle of a scope that has finished (every `CancelScope` clone dropped) must not
/// cancel a new, unrelated scope that may reuse the finished one's memory.
#[test]
fn a_remote_handle_of_a_finished_scope_never_cancels_a_later_scope() {
    guarded(|| {
        run_virtual(async {
            let mut remotes = Vec::new();
            for _ in 0..80 {
                let scope = CancelScope::new();
                remotes.push(scope.remote());
                assert_eq!(scope.run(async { 1 }).await, Some(1));
            }
            for _ in 0..80 {
                let scope = CancelScope::new().with_timeout(secs(1));
                let handle = scope.clone();
                for remote in &remotes {
                    remote.cancel();
                }
                let out = scope
                    .run(async {
                        sleep(ms(10)).await;
                        "finished"
                    })
                    .await;
                assert_eq!(
                    out,
                    Some("finished"),
                    "a stale remote cancelled a new scope"
                );
                assert!(!handle.cancel_called());
            }
        });
    });
}

/// Attacks `fail_after`/`move_on_after`'s "Dropping the returned future drops `fut`" and
/// the `FusedFuture` promise ("True once it has given its `Ok(output)` or
/// `Err(TimedOut)`"): a timeout polled once then dropped from outside leaves no timer
/// that would move autojump's clock to its deadline, and one that timed out is terminated.
#[test]
fn timeouts_dropped_after_one_poll_leave_no_deadline_behind() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            drop(poll_once(fail_after(secs(3600), sleep_forever())).await);
            drop(poll_once(move_on_at(start + secs(7200), sleep_forever())).await);
            sleep(secs(1)).await;
            assert_eq!(trellis::now() - start, secs(1));
            let mut timeout = std::pin::pin!(fail_after(secs(1), sleep_forever()));
            assert!(!timeout.is_terminated());
            assert!(timeout.as_mut().await.is_err());
            assert!(timeout.is_terminated());
        });
    });
}

// ---- More shapes ------------------------------------------------------------------------

/// Attacks `CancelScope::with_timeout` on a running scope: "A `timeout` too long for the
/// clock (`Duration::MAX`) means no deadline. Replaces any deadline set before; on a scope
/// that already runs, the deadline is `now() + timeout`". The overflowing timeout must
/// clear the earlier deadline, not keep it and not panic.
#[test]
fn an_overflowing_timeout_on_a_running_scope_clears_its_deadline() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let out = CancelScope::new()
                .with_timeout(secs(1))
                .run_with(async |scope| {
                    let _ = scope.clone().with_timeout(Duration::MAX);
                    assert_eq!(scope.deadline(), None);
                    let just_past = common::latest_instant(trellis::now()) - trellis::now();
                    let _ = scope
                        .clone()
                        .with_timeout(just_past + Duration::from_nanos(1));
                    assert_eq!(
                        scope.deadline(),
                        None,
                        "one nanosecond too far is never too"
                    );
                    sleep(secs(3)).await;
                    "finished"
                })
                .await;
            assert_eq!(out, Some("finished"));
            assert_eq!(trellis::now() - start, secs(3));
        });
    });
}

/// Attacks `JoinHandle::cancel` ("everything inside it is cancelled as by a scope of its
/// own") together with `cancelled()` ("Resolves when a scope that encloses the caller is
/// cancelled, looking through shields"): a child that serves inside a shield until it is
/// asked to stop (`shield(cancelled())`, the graceful-stop pattern of the docs) must hear
/// a cancel of its handle, finish its clean-up and end, rather than wait forever.
/// (Returning right after the shield, it keeps its value: see the comment below.)
#[test]
fn cancelled_inside_a_shield_hears_the_cancel_of_its_own_join_handle() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let log = RefCell::new(Vec::new());
            nursery(async |n| {
                let log = &log;
                let worker = n.spawn(async move {
                    shield(async {
                        cancelled().await;
                        log.borrow_mut().push("asked to stop");
                        sleep(secs(1)).await;
                        log.borrow_mut().push("flushed");
                    })
                    .await;
                });
                sleep(secs(2)).await;
                worker.cancel();
                // The child returns right after its shield, without suspending again: by
                // the delivery rule ("a value that is ready in the same instant as the
                // cancellation is kept", `scope/cancel_scope.rs`) it finished, as a
                // shielded scope body gives `Some` in `CancelScope::with_shield`'s example.
                assert_eq!(worker.await, Ok(()));
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            assert_eq!(*log.borrow(), ["asked to stop", "flushed"]);
            assert_eq!(trellis::now() - start, secs(3));
        });
    });
}

/// Attacks `current_effective_deadline`: "A scope on that path that is already cancelled
/// counts as a deadline of now", with `JoinHandle::cancel`'s "everything inside it is
/// cancelled as by a scope of its own". In a child cancelled through its handle and kept
/// running by a shield, the shield's own deadline applies inside it (none); once the
/// shield is gone, the child's cancellation applies: the deadline is now, as it is for a
/// child whose nursery was cancelled (checked first, for contrast), also inside a scope
/// opened there. Reported instead: the enclosing 60 s deadline (or none at all), as if
/// the child were not cancelled.
#[test]
fn current_effective_deadline_in_a_child_cancelled_by_its_handle_is_now() {
    guarded(|| {
        run_virtual(async {
            // Contrast: a child whose nursery is cancelled (a sibling failed) sees `now`.
            let seen = RefCell::new(Vec::new());
            let _ = move_on_after(secs(60), async {
                let _ = nursery(async |n| {
                    let seen = &seen;
                    n.spawn(async move {
                        shield(sleep(secs(1))).await;
                        seen.borrow_mut()
                            .push(trellis::current_effective_deadline());
                        sleep_forever().await;
                    });
                    n.spawn(async { Err::<(), _>("sibling failed") });
                    Ok(())
                })
                .await;
            })
            .await;
            assert_eq!(*seen.borrow(), [Some(trellis::now())]);

            // The same child, cancelled through its handle.
            let seen = RefCell::new(Vec::new());
            move_on_after(secs(60), async {
                nursery(async |n| {
                    let seen = &seen;
                    let child = n.spawn(async move {
                        shield(async {
                            sleep(secs(1)).await; // cancelled meanwhile
                            seen.borrow_mut()
                                .push(trellis::current_effective_deadline());
                        })
                        .await;
                        seen.borrow_mut()
                            .push(trellis::current_effective_deadline());
                        CancelScope::new()
                            .run(async {
                                seen.borrow_mut()
                                    .push(trellis::current_effective_deadline());
                            })
                            .await;
                        sleep_forever().await;
                    });
                    yield_now().await;
                    child.cancel();
                    Ok::<_, ()>(())
                })
                .await
                .unwrap();
            })
            .await
            .unwrap();
            let now = trellis::now();
            assert_eq!(
                *seen.borrow(),
                [None, Some(now), Some(now)],
                "inside the shield: its own (none); outside it: cancelled, so now"
            );
        });
    });
}

/// Attacks `JoinError::is_failed` ("The child failed (returned an error or panicked)")
/// and its message "its nursery reports the error (or resumes the panic)": a panicking
/// child, awaited from a shield, is a failed `JoinError`, and the panic resumes from the
/// nursery with its payload unchanged.
#[test]
fn a_panicking_childs_handle_says_failed_and_the_panic_resumes_unchanged() {
    let (seen, payload) = guarded(|| {
        let seen = std::rc::Rc::new(RefCell::new(None));
        let inner = seen.clone();
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            run_virtual(async {
                let _ = nursery(async |n| {
                    let child = n.spawn_named("parser", async {
                        yield_now().await;
                        panic!("parser exploded");
                    });
                    let err = shield(child).await.unwrap_err();
                    *inner.borrow_mut() = Some((err.is_failed(), err.to_string()));
                    Ok::<_, ()>(())
                })
                .await;
            })
        }))
        .expect_err("the panic resumes");
        let seen = seen.borrow_mut().take();
        (seen, panic_message(&*payload))
    });
    assert_eq!(payload, "parser exploded");
    assert_eq!(
        seen,
        Some((
            true,
            String::from(
                "child 1 \"parser\" failed; its nursery reports the error (or resumes the panic)"
            )
        ))
    );
}

/// Attacks `StartError`'s `Display`: "`{:#}` reaches the error, as for a `Failure`": the
/// alternate form of a start that failed with an anyhow chain shows the whole chain, the
/// plain form only the outer context.
#[test]
fn a_start_errors_alternate_form_shows_the_whole_chain() {
    guarded(|| {
        run_virtual(async {
            nursery(async |n| {
                let started: Result<u16, _> = n
                    .start_named("listener", async |_n, _status| {
                        Err::<(), _>(anyhow::anyhow!("address in use").context("binding :8080"))
                    })
                    .await;
                let err = started.unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "child 1 \"listener\" failed before it was ready: binding :8080"
                );
                assert_eq!(
                    format!("{err:#}"),
                    "child 1 \"listener\" failed before it was ready: binding :8080: \
                     address in use"
                );
                anyhow::Ok(())
            })
            .await
            .unwrap();
        });
    });
}

/// Attacks the delivery rule's "a value that is ready in the same instant as the
/// cancellation is kept" for an interval tick: a tick due exactly at a scope's deadline
/// completes (`Some`), and it is not delivered a second time by the next `tick`.
#[test]
fn a_tick_due_at_the_deadline_instant_is_kept_once() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let mut ticks = interval(secs(1));
            ticks.tick().await;
            let at_deadline = move_on_at(start + secs(1), ticks.tick()).await;
            assert_eq!(at_deadline, Some(start + secs(1)));
            assert_eq!(ticks.tick().await, start + secs(2), "not delivered twice");
        });
    });
}

/// Attacks `FailAt`'s "Its own deadline gives `Err(TimedOut)`" inside a shield that an
/// outer cancellation waits for: the shielded `fail_after` still times out by its own
/// deadline (a shield only stops enclosing cancellations), the clean-up sees the
/// `TimedOut`, and the outer scope then catches its own cancellation.
#[test]
fn a_fail_after_inside_a_shield_times_out_by_its_own_deadline_during_an_outer_cancel() {
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let seen = Cell::new(None);
            let outer = CancelScope::new().with_timeout(secs(1));
            let handle = outer.clone();
            let out = outer
                .run(async {
                    shield(async {
                        let r = fail_after(secs(3), sleep_forever()).await;
                        seen.set(Some(r.map_err(|e| e.deadline())));
                    })
                    .await;
                    sleep(secs(1)).await;
                    unreachable!("exposed again after the shield");
                })
                .await;
            assert_eq!(out, None);
            assert_eq!(seen.get(), Some(Err(start + secs(3))));
            assert_eq!(trellis::now() - start, secs(3));
            assert!(handle.cancelled_caught());
        });
    });
}

/// Attacks "When nested scopes are both cancelled, the outermost cancelled one catches
/// the cancellation" and "An inner timeout never extends an outer deadline" on a deep
/// tower: 200 nested timeouts, the innermost the earliest, each level sleeping forever
/// after the level below it returns. Each level catches its own deadline in turn, inside
/// out, exactly on time; none is skipped or caught twice.
#[test]
fn a_tower_of_two_hundred_timeouts_fires_inside_out_exactly_on_time() {
    const LEVELS: u64 = 200;
    fn level<'a>(
        i: u64,
        start: Instant,
        caught: &'a RefCell<Vec<(u64, Duration)>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        Box::pin(async move {
            // Level `i` (0 = outermost) has its deadline at `LEVELS - i` seconds.
            let out = move_on_at(start + secs(LEVELS - i), async {
                if i + 1 < LEVELS {
                    level(i + 1, start, caught).await;
                }
                sleep_forever().await;
            })
            .await;
            assert_eq!(out, None);
            caught.borrow_mut().push((i, trellis::now() - start));
        })
    }
    guarded(|| {
        run_virtual(async {
            let start = trellis::now();
            let caught = RefCell::new(Vec::new());
            level(0, start, &caught).await;
            let expected: Vec<(u64, Duration)> =
                (0..LEVELS).rev().map(|i| (i, secs(LEVELS - i))).collect();
            assert_eq!(*caught.borrow(), expected);
        });
    });
}

/// Attacks `JoinHandle::cancel`'s "A cancelled child is not a failure" against "Errors are
/// never lost" (README): a child cancelled through its handle that fails in its shielded
/// clean-up *is* a failure: the nursery reports it under the child's name, and a shielded
/// awaiter is told the child failed, not that it was cancelled.
#[test]
fn a_child_failing_in_its_cleanup_after_a_handle_cancel_is_a_failure() {
    guarded(|| {
        run_virtual(async {
            let seen = RefCell::new(None);
            let group = nursery(async |n| {
                let child = n.spawn_named("uploader", async {
                    shield(sleep(secs(1))).await;
                    Err::<(), _>("flush failed")
                });
                yield_now().await;
                child.cancel();
                let err = shield(child).await.unwrap_err();
                *seen.borrow_mut() = Some((err.is_failed(), err.is_cancelled()));
                Ok(())
            })
            .await
            .unwrap_err();
            assert_eq!(*seen.borrow(), Some((true, false)));
            assert_eq!(
                group.to_string(),
                "child 1 \"uploader\" failed: flush failed"
            );
        });
    });
}
