//! Behaviour of cancel scopes: cancellation from everywhere, nesting, deadlines, shields,
//! nurseries and `start`, `cancelled()` and `current_effective_deadline()`.
//!
//! Each test ports the behaviour of a test of Trio (`src/trio/_core/_tests/test_run.py`)
//! or of CPython (`Lib/test/test_asyncio/test_taskgroups.py`), named in its doc comment,
//! into trellis's drop-based model: where Trio raises `Cancelled` at a checkpoint, trellis
//! drops the unit at its next suspension, and a [`DropCounter`] guard tells which units were
//! dropped and which finished. Everything runs on the mock clock with autojump.

mod common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use common::{DropCounter, OnDrop, catch_unwind, count_polls, panic_message, run_virtual, secs};
use trellis::{
    CancelReason, CancelScope, TaskName, cancelled, current_effective_deadline, move_on_after,
    move_on_at, now, nursery, shield, sleep, sleep_forever, yield_now,
};

#[derive(Debug, PartialEq, Eq, Clone)]
struct Oops(&'static str);

impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Counts seconds forever (until dropped).
async fn tick_every_second(ticks: &Cell<u32>) {
    loop {
        sleep(secs(1)).await;
        ticks.set(ticks.get() + 1);
    }
}

// ----- cancel before entering, from a sibling, from inside, after exit -----

/// Cancel before entering: a scope cancelled before `run` is first polled still runs its
/// body to the body's first suspension (delivery at suspension points), drops it there,
/// catches the cancellation and gives `None`; a body that never suspends returns its value.
/// Used inside a nursery child, the child ends at once, before its inner `fail_after` could
/// fire. Ports trio `test_cancel_unbound` ("Cancel before entry") and `test_cancel_points`
/// (`main3`).
#[test]
fn cancel_before_entering_runs_the_body_to_its_first_suspension() {
    let polls = Cell::new(0);
    let after_yield = Cell::new(false);
    run_virtual(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .clone()
            .run(count_polls(&polls, async {
                yield_now().await;
                after_yield.set(true);
            }))
            .await;
        assert_eq!(out, None);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Explicit));

        let scope = CancelScope::new();
        scope.cancel();
        assert_eq!(scope.clone().run(async { 1 }).await, Some(1));
        assert!(
            !scope.cancelled_caught(),
            "a body that never suspends is never interrupted"
        );

        let start = now();
        let scope = CancelScope::new();
        scope.cancel();
        let out = nursery(async |n| {
            let child = n.spawn(async move {
                let out = scope
                    .run(trellis::fail_after(secs(1), sleep_forever()))
                    .await;
                Ok(out.is_none())
            });
            child.await.map_err(|_| Oops("join"))
        })
        .await
        .unwrap();
        assert!(out, "the child's scope caught the cancellation");
        assert_eq!(
            now(),
            start,
            "the fail_after inside was dropped at its first suspension"
        );
    });
    assert_eq!(polls.get(), 1);
    assert!(!after_yield.get());
}

/// Cancel after entry, from a sibling: cancelling a scope whose body sleeps for an hour
/// ends it at once (virtual time moves only to the moment of the cancel). Ports trio
/// `test_cancel_unbound` ("Cancel after entry") and issue 3's "cancellation wakes what it
/// must".
#[test]
fn cancel_from_a_sibling_ends_an_hour_long_sleep_at_once() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new();
        let handle = scope.clone();
        let guard = counter.guard();
        let (out, ended_at) = nursery(async |n| {
            n.spawn(async move {
                sleep(secs(1)).await;
                handle.cancel();
            });
            let out = scope
                .clone()
                .run(async move {
                    sleep(secs(3600)).await;
                    guard.finish();
                })
                .await;
            Ok::<_, Oops>((out, now()))
        })
        .await
        .unwrap();
        assert_eq!(out, None);
        assert_eq!(ended_at - start, secs(1));
        assert_eq!(now() - start, secs(1));
        assert!(scope.cancelled_caught());
    });
    assert_eq!(counter.dropped(), 1);
    assert_eq!(counter.finished(), 0);
}

/// Cancel from inside: the body cancels its own scope (twice: idempotent); it is dropped
/// at its very next suspension, even one that is ready at once (`yield_now`), and the code
/// after it never runs. Ports trio `test_cancel_points` (`main2`) and
/// `test_cancel_edge_cases` (two cancels in a row).
#[test]
fn cancel_from_inside_drops_the_body_at_its_next_suspension() {
    let after = Cell::new(0);
    run_virtual(async {
        let scope = CancelScope::new();
        let inner = scope.clone();
        let out = scope
            .clone()
            .run(async {
                inner.cancel();
                inner.cancel();
                yield_now().await;
                after.set(after.get() + 1);
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());

        // The same through a sleep that would complete.
        let scope = CancelScope::new();
        let inner = scope.clone();
        let out = scope
            .clone()
            .run(async {
                inner.cancel();
                sleep(secs(1)).await;
                after.set(after.get() + 1);
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());
    });
    assert_eq!(after.get(), 0);
}

/// A body that cancels its own scope and then finishes without suspending keeps its value:
/// the cancellation was never delivered, so `cancelled_caught` is false. Ports trio
/// `test_cancel_scope_nesting` ("if a scope is pending, but then gets popped off the stack,
/// then it isn't delivered").
#[test]
fn a_cancel_that_is_never_delivered_is_not_caught() {
    run_virtual(async {
        let scope = CancelScope::new();
        let inner = scope.clone();
        let out = scope
            .clone()
            .run(async {
                inner.cancel();
                7
            })
            .await;
        assert_eq!(out, Some(7));
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
    });
}

/// Cancel after exit: cancelling a scope that has finished changes nothing — its outcome
/// stays, nothing is woken, `cancelled_caught` stays false — but `cancel_called` records
/// the call (as in Trio). Its deadline was disarmed at exit: time passing it later does not
/// cancel it. Ports trio `test_cancel_unbound` ("Can't reuse") and `test_basic_timeout`
/// (first part).
#[test]
fn cancel_after_exit_changes_nothing() {
    run_virtual(async {
        let scope = CancelScope::new().with_deadline(now() + secs(1));
        let out = scope.clone().run(async { 3 }).await;
        assert_eq!(out, Some(3));
        sleep(secs(2)).await;
        assert!(!scope.cancel_called(), "the deadline passed after exit");
        scope.cancel();
        yield_now().await;
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
    });
}

/// A scope runs once: running it a second time panics with a message that says what to do.
/// Ports trio `test_cancel_unbound` ("Can't reuse").
#[test]
#[should_panic(expected = "this CancelScope was already run; a scope runs once")]
fn running_a_scope_twice_panics_with_a_clear_message() {
    run_virtual(async {
        let scope = CancelScope::new();
        scope.clone().run(async {}).await;
        scope.run(async {}).await;
    });
}

/// Nor can a scope be entered from two tasks at once. Ports trio `test_cancel_unbound`
/// ("Can't enter from multiple tasks simultaneously").
#[test]
#[should_panic(expected = "this CancelScope was already run; a scope runs once")]
fn running_a_scope_from_two_tasks_panics() {
    run_virtual(async {
        let scope = CancelScope::new();
        let again = scope.clone();
        nursery(async |n| {
            n.spawn(async move {
                scope.run(sleep_forever()).await;
            });
            yield_now().await;
            again.run(async {}).await;
        })
        .await
        .unwrap();
    });
}

// ----- nesting -----

/// Nested scopes, both cancelled: the outer one wins. Only it catches the cancellation;
/// the inner one records `cancel_called` but not `cancelled_caught`; the scope around
/// both is untouched. Ports trio `test_cancel_scope_nesting` (first part) and CPython
/// `test_timeouts.py::test_nested_timeouts` ("only the topmost context manager").
#[test]
fn nested_scopes_both_cancelled_the_outer_one_catches() {
    let counter = DropCounter::new();
    run_virtual(async {
        let (s1, s2, s3) = (CancelScope::new(), CancelScope::new(), CancelScope::new());
        let (c2, c3) = (s2.clone(), s3.clone());
        let guard = counter.guard();
        let out = s1
            .clone()
            .run(s2.clone().run(s3.clone().run(async move {
                c3.cancel();
                c2.cancel();
                sleep_forever().await;
                guard.finish();
            })))
            .await;
        assert_eq!(out, Some(None), "s2 caught it, so s1's body finished");
        assert!(s3.cancel_called());
        assert!(!s3.cancelled_caught());
        assert!(s2.cancel_called());
        assert!(s2.cancelled_caught());
        assert!(!s1.cancel_called());
        assert!(!s1.cancelled_caught());
    });
    assert_eq!(counter.dropped(), 1);
}

/// Cancelling the outer scope cancels the inner one's body (which does not catch it);
/// the code between the two never runs. Ports trio `test_cancel_inheritance` (for scopes)
/// and `test_cancel_scope_nesting`.
#[test]
fn cancelling_the_outer_scope_cancels_the_inner_one() {
    let after_inner = Cell::new(false);
    run_virtual(async {
        let start = now();
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let handle = outer.clone();
        nursery(async |n| {
            n.spawn(async move {
                sleep(secs(2)).await;
                handle.cancel();
            });
            let out = outer
                .clone()
                .run(async {
                    inner.clone().run(sleep(secs(100))).await;
                    after_inner.set(true);
                })
                .await;
            assert_eq!(out, None);
        })
        .await
        .unwrap();
        assert_eq!(now() - start, secs(2));
        assert!(outer.cancelled_caught());
        assert!(!inner.cancel_called());
        assert!(!inner.cancelled_caught());
    });
    assert!(!after_inner.get());
}

/// Cancelling the inner scope leaves the outer one running: the outer body continues after
/// the inner scope returns `None`. Ports trio `test_cancel_scope_nesting` and CPython
/// `test_timeouts.py::test_nested_timeouts_loop_busy` (the inner timeout is caught by the
/// inner scope; the outer one goes on until its own deadline).
#[test]
fn cancelling_the_inner_scope_leaves_the_outer_one_running() {
    run_virtual(async {
        let start = now();
        let outer = CancelScope::new().with_deadline(start + secs(10));
        let inner = CancelScope::new();
        let c = inner.clone();
        let out = outer
            .clone()
            .run(async {
                let got = inner
                    .clone()
                    .run(async {
                        c.cancel();
                        sleep_forever().await;
                    })
                    .await;
                assert_eq!(got, None);
                let at = now();
                sleep(secs(100)).await; // interrupted by the outer deadline
                at
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(10));
        assert!(inner.cancelled_caught());
        assert!(outer.cancelled_caught());
        assert_eq!(outer.cancel_reason(), Some(CancelReason::Deadline));
    });
}

/// Level-triggered: once a scope is cancelled, every unit inside it is dropped at its next
/// suspension — here four leaves in two nested nurseries, cancelled through the scope
/// around the outer nursery. Ports trio `test_cancel_inheritance`.
#[test]
fn cancellation_reaches_every_leaf_of_nested_nurseries() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                for _ in 0..2 {
                    let counter = &counter;
                    n.spawn(async move {
                        nursery(async |inner| {
                            for _ in 0..2 {
                                let guard = counter.guard();
                                inner.spawn(async move {
                                    sleep_forever().await;
                                    guard.finish();
                                });
                            }
                        })
                        .await
                        .unwrap();
                    });
                }
                yield_now().await;
                scope.cancel();
            })
            .await
        })
        .await;
        // The scope around the nursery cancelled it, so the nursery never completes with
        // the body's `()` (it used to return `Ok(Some(()))`): the scope catches it.
        assert_eq!(out, None);
        assert_eq!(now(), start);
    });
    assert_eq!(counter.dropped(), 4);
}

// ----- deadlines -----

/// The earliest enclosing deadline wins, whichever scope holds it: an inner timeout never
/// extends an outer deadline, and an earlier inner one fires first while the outer scope
/// runs on. Ports trio `test_timeouts.py::test_move_on_after` and CPython
/// `test_timeouts.py::test_nested_timeouts_concurrent`.
#[test]
fn the_earliest_enclosing_deadline_wins() {
    run_virtual(async {
        let start = now();
        // Outer earlier: the inner 60 s timeout does not extend it.
        let out = move_on_after(secs(1), move_on_after(secs(60), sleep(secs(30)))).await;
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(1));

        // Inner earlier: it fires first; the outer scope goes on and finishes.
        let start = now();
        let out = move_on_after(secs(10), async {
            let inner = move_on_after(secs(2), sleep(secs(30))).await;
            (inner, now() - start)
        })
        .await;
        assert_eq!(out, Some((None, secs(2))));
    });
}

/// Moving the deadline of a running scope earlier fires it then: to a time still ahead it
/// fires at that time; into the past it fires at once. Ports trio `test_basic_timeout`
/// ("changing deadline").
#[test]
fn moving_a_deadline_earlier_fires_it() {
    run_virtual(async {
        for (new_deadline, expected_end) in [(7, 7), (1, 5)] {
            let start = now();
            let scope = CancelScope::new().with_deadline(start + secs(10));
            let handle = scope.clone();
            nursery(async |n| {
                n.spawn(async move {
                    sleep(secs(5)).await;
                    handle.set_deadline(start + secs(new_deadline));
                });
                assert_eq!(scope.clone().run(sleep(secs(100))).await, None);
                assert_eq!(now() - start, secs(expected_end));
            })
            .await
            .unwrap();
            assert!(scope.cancelled_caught());
            assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
        }
    });
}

/// Moving the deadline of a running scope later postpones it; clearing it removes it.
/// Ports CPython `test_timeouts.py::test_reschedule` and trio `test_basic_timeout`.
#[test]
fn moving_a_deadline_later_postpones_it_and_clearing_it_removes_it() {
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new().with_deadline(start + secs(10));
        let handle = scope.clone();
        let out = scope
            .clone()
            .run(async {
                sleep(secs(5)).await;
                handle.set_deadline(start + secs(20));
                assert_eq!(handle.deadline(), Some(start + secs(20)));
                sleep(secs(10)).await; // past the old deadline
                now() - start
            })
            .await;
        assert_eq!(out, Some(secs(15)));
        assert!(!scope.cancel_called());

        let start = now();
        let scope = CancelScope::new().with_deadline(start + secs(10));
        let handle = scope.clone();
        let out = scope
            .clone()
            .run(async {
                handle.clear_deadline();
                sleep(secs(50)).await;
                now() - start
            })
            .await;
        assert_eq!(out, Some(secs(50)));
        assert!(!scope.cancel_called());
        assert_eq!(scope.deadline(), None);
    });
}

/// A deadline already in the past when the scope is entered cancels it at once: the body
/// runs to its first suspension and is dropped there, and virtual time does not move; a
/// body that never suspends keeps its value. Ports trio `test_timeouts.py::test_sleep`
/// (`move_on_at(current_time())` cancels at the first checkpoint) and trio
/// `test_basic_timeout` (deadline passed while entered).
#[test]
fn a_deadline_in_the_past_cancels_at_the_first_suspension() {
    let polls = Cell::new(0);
    run_virtual(async {
        sleep(secs(10)).await;
        let start = now();
        let out = move_on_at(start, count_polls(&polls, yield_now())).await;
        assert_eq!(out, None);
        let out = move_on_at(start - secs(5), count_polls(&polls, async { 1 })).await;
        assert_eq!(out, Some(1));
        let scope = CancelScope::new();
        scope.set_deadline(start - secs(1));
        let out = scope.clone().run(count_polls(&polls, sleep(secs(1)))).await;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
        assert_eq!(now(), start);
    });
    assert_eq!(polls.get(), 3, "each body was polled exactly once");
}

/// A deadline set on an idle scope takes effect when it starts running; on the mock clock a
/// deadline fires exactly at its instant, never early. Ports trio `test_basic_timeout`
/// (`CancelScope(deadline=...)`) and `test_timekeeping` (on the mock clock).
#[test]
fn a_deadline_fires_exactly_at_its_instant() {
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new();
        scope.set_deadline(start + Duration::from_millis(1500));
        let last_tick = Cell::new(start);
        let out = scope
            .clone()
            .run(async {
                loop {
                    sleep(Duration::from_millis(100)).await;
                    last_tick.set(now());
                }
            })
            .await;
        assert_eq!(out, None::<()>);
        assert_eq!(now() - start, Duration::from_millis(1500));
        // The tick due at the deadline itself is not lost (same instant).
        assert_eq!(last_tick.get() - start, Duration::from_millis(1500));
    });
}

/// A nursery takes a deadline through the scope around it, set from the nursery's body:
/// body and children are dropped when it passes and that scope catches the cancellation
/// (`None`). Ports trio `test_cancel_scope_nesting` with `nursery.cancel_scope.deadline`.
#[test]
fn a_nursery_deadline_cancels_the_body_and_the_children() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new();
        let out = scope
            .clone()
            .run_with(async |scope| {
                nursery(async |n| {
                    scope.set_deadline(start + secs(3));
                    for _ in 0..3 {
                        let guard = counter.guard();
                        n.spawn(async move {
                            sleep(secs(60)).await;
                            guard.finish();
                        });
                    }
                    sleep_forever().await;
                    Ok::<_, Oops>(1)
                })
                .await
            })
            .await;
        // The deadline is the scope's around the nursery now, so that scope reports it
        // (`None`) where the nursery itself used to give `Ok(None)`.
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(3));
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
    });
    assert_eq!(counter.dropped(), 3);
}

// ----- shields -----

/// A shielded sleep inside a cancelled scope completes; then the scope ends (its body is
/// dropped at the next suspension after the shield, and it catches the cancellation).
/// Ports trio `test_cancel_shielding` (the shield protects from `outer`) and the shielded
/// `finally` idiom.
#[test]
fn a_shielded_sleep_in_a_cancelled_scope_completes_then_the_scope_ends() {
    let cleanup = DropCounter::new();
    let after = Cell::new(false);
    run_virtual(async {
        let start = now();
        let guard = cleanup.guard();
        let scope = CancelScope::new().with_deadline(start + secs(1));
        let out = scope
            .clone()
            .run(async {
                shield(async move {
                    sleep(secs(5)).await;
                    guard.finish();
                })
                .await;
                yield_now().await;
                after.set(true);
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(5));
        assert!(scope.cancelled_caught());
    });
    assert_eq!(cleanup.finished(), 1);
    assert!(
        !after.get(),
        "dropped at the first suspension after the shield"
    );
}

/// A shield does not protect from its own scope: a shielded scope with a deadline is
/// cancelled by that deadline, inside an outer scope that is cancelled too. Ports trio
/// `test_cancel_shielding` ("shield doesn't protect us from inner itself") and trio
/// `test_timeouts.py::test_move_on_after_moves_on_even_if_shielded`.
#[test]
fn a_shields_own_deadline_still_applies() {
    run_virtual(async {
        let start = now();
        let outer = CancelScope::new();
        let c = outer.clone();
        let inner = CancelScope::new().with_deadline(start + secs(2));
        inner.set_shield(true);
        let out = outer
            .clone()
            .run(async {
                c.cancel();
                let got = inner.clone().run(sleep(secs(10))).await;
                (got, now() - start)
            })
            .await;
        // The inner scope caught its own deadline; the outer body then finished without
        // suspending again, so the outer scope delivered nothing.
        assert_eq!(out, Some((None, secs(2))));
        assert!(inner.cancelled_caught());
        assert!(!outer.cancelled_caught());

        // fail_after inside a shield: TimedOut, not a hang.
        let start = now();
        let out = move_on_after(secs(1), async {
            let scope = CancelScope::new();
            scope.set_shield(true);
            scope
                .run(trellis::fail_after(secs(3), sleep_forever()))
                .await
        })
        .await;
        assert!(matches!(out, Some(Some(Err(_)))));
        assert_eq!(now() - start, secs(3));
    });
}

/// In a cancelled nursery, an unshielded child is dropped at once while a shielded one
/// finishes its shielded work; the nursery returns when the shield is done. Ports trio
/// `test_cancel_scope_exceptiongroup_filtering` (the shielded wait in a cancelled nursery)
/// and issue 3's granularity rule.
#[test]
fn an_unshielded_sibling_is_dropped_at_once_while_a_shielded_one_finishes() {
    let dropped_at = Cell::new(None);
    let finished_at = Cell::new(None);
    run_virtual(async {
        let start = now();
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let (dropped_at, finished_at) = (&dropped_at, &finished_at);
                n.spawn(async move {
                    shield(sleep(secs(5))).await;
                    finished_at.set(Some(now() - start));
                    sleep_forever().await;
                });
                n.spawn(async move {
                    let _guard = OnDrop(move || dropped_at.set(Some(now() - start)));
                    sleep(secs(100)).await;
                });
                sleep(secs(1)).await;
                scope.cancel();
                sleep_forever().await;
            })
            .await
        })
        .await;
        // Cancelled through the scope around it, the nursery gives nothing: that scope
        // reports the cancellation (`None`, where `n.cancel()` gave `Ok(None)`).
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(5));
    });
    assert_eq!(dropped_at.get(), Some(secs(1)));
    assert_eq!(finished_at.get(), Some(secs(5)));
}

/// Shields can be toggled while a scope runs: turning one on protects the body from an
/// outer cancellation; a scope inside the shield still cancels its own body; turning the
/// shield off exposes the body again, dropped at its next suspension, and the outer scope
/// catches it. Ports trio `test_cancel_shielding` and `test_cancel_scope_nesting`
/// ("shielding").
#[test]
fn toggling_a_shield_while_running() {
    let steps = RefCell::new(Vec::new());
    run_virtual(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let (o, i) = (outer.clone(), inner.clone());
        let steps = &steps;
        let out = outer
            .clone()
            .run(inner.clone().run(async move {
                i.set_shield(true);
                assert!(i.shield());
                o.cancel();
                sleep(secs(1)).await;
                steps.borrow_mut().push("shielded sleep done");
                let innermost = CancelScope::new();
                let c = innermost.clone();
                let got = innermost
                    .run(async move {
                        c.cancel();
                        sleep(secs(1)).await;
                    })
                    .await;
                assert_eq!(
                    got, None,
                    "the shield does not protect from a scope inside it"
                );
                steps.borrow_mut().push("innermost cancelled");
                i.set_shield(false);
                sleep(secs(1)).await;
                steps.borrow_mut().push("unreachable");
            }))
            .await;
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert!(!inner.cancelled_caught());
    });
    assert_eq!(
        *steps.borrow(),
        ["shielded sleep done", "innermost cancelled"]
    );
}

/// A nursery shielded (by a shielded scope around it) inside a cancelled scope runs its
/// children; unshielding it drops them at once (while the body, inside its own shield,
/// watches). Ports trio `test_cancel_shield_abort`.
#[test]
fn unshielding_a_nursery_drops_its_sleeping_children() {
    let record = RefCell::new(Vec::new());
    run_virtual(async {
        let outer = CancelScope::new();
        let c = outer.clone();
        let shielding = CancelScope::new().with_shield(true);
        let record = &record;
        let out = outer
            .clone()
            .run(shielding.clone().run_with(async |shielding| {
                nursery(async |n| {
                    c.cancel();
                    n.spawn(async move {
                        record.borrow_mut().push("sleeping");
                        let _g = OnDrop(move || record.borrow_mut().push("cancelled"));
                        sleep_forever().await;
                    });
                    sleep(secs(1)).await;
                    assert_eq!(*record.borrow(), ["sleeping"]);
                    shielding.set_shield(false);
                    shield(async {
                        yield_now().await;
                        assert_eq!(*record.borrow(), ["sleeping", "cancelled"]);
                    })
                    .await;
                })
                .await
            }))
            .await;
        // The body finished inside its shield, but the enclosing scope had cancelled the
        // nursery: it never completes with a value, and the enclosing scope catches it
        // (the shielding scope only lets the cancellation through).
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert!(!shielding.cancel_called());
        assert!(!shielding.cancelled_caught());
    });
    assert_eq!(*record.borrow(), ["sleeping", "cancelled"]);
}

/// Dropping a shielded future from outside (a hard cancel) drops it at once, shield
/// included. Ports the hard-cancel rule of DESIGN.md (no Trio equivalent).
#[test]
fn a_hard_drop_goes_through_shields() {
    let counter = DropCounter::new();
    run_virtual(async {
        let guard = counter.guard();
        let mut fut = Box::pin(shield(async move {
            sleep(secs(5)).await;
            guard.finish();
        }));
        std::future::poll_fn(|cx| {
            assert!(fut.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        drop(fut);
    });
    assert_eq!(counter.dropped(), 1);
}

// ----- cancelled() and current_effective_deadline() -----

/// `cancelled()` resolves inside a shield when the outside is cancelled, so a shielded loop
/// can stop gracefully; it resolves at once when the cancellation is already there. Ports
/// the use of `cancelled()` in trio's docs (no direct test) on the model of trio
/// `test_cancel_shielding`.
#[test]
fn cancelled_resolves_inside_a_shield_when_the_outside_is_cancelled() {
    let ticks = Cell::new(0);
    run_virtual(async {
        let start = now();
        let out = move_on_after(secs(3), async {
            shield(async {
                let out = trellis::cancel_scope(async |scope| {
                    nursery(async |n| {
                        let ticks = &ticks;
                        n.spawn(tick_every_second(ticks));
                        cancelled().await;
                        scope.cancel();
                    })
                    .await
                })
                .await;
                // Cancelled by the scope around it, the nursery never completes with the
                // body's `()` (it used to give `Ok(Some(()))`); that scope catches it.
                assert_eq!(out, None);
                now() - start
            })
            .await
        })
        .await;
        assert_eq!(out, Some(secs(3)));

        // Already cancelled: resolves at the first poll.
        let scope = CancelScope::new();
        let c = scope.clone();
        let got = scope
            .run(async move {
                c.cancel();
                shield(cancelled()).await;
                1
            })
            .await;
        assert_eq!(got, Some(1));
    });
    assert_eq!(ticks.get(), 3, "the tick due at the deadline is not lost");
}

/// `cancelled()` outside any cancelled scope stays pending.
#[test]
fn cancelled_stays_pending_while_nothing_is_cancelled() {
    run_virtual(async {
        let out = move_on_after(secs(5), cancelled()).await;
        assert_eq!(out, None);
        let out = nursery(async |n| {
            let h = n.spawn(async { Ok(move_on_after(secs(1), cancelled()).await.is_none()) });
            Ok::<_, Oops>(h.await.unwrap())
        })
        .await;
        assert_eq!(out, Ok(true));
    });
}

/// `current_effective_deadline()` is the earliest deadline of the enclosing scopes up to
/// the nearest shield (a shield's own deadline counts); `None` without any; "now" inside a
/// cancelled scope. Children see their nursery's scopes, not the scope where `spawn` was
/// called. Ports trio `test_timeouts.py` deadline nesting and the
/// `current_effective_deadline` tests of trio's `test_run.py`.
#[test]
fn current_effective_deadline_nests_and_stops_at_shields() {
    run_virtual(async {
        assert_eq!(current_effective_deadline(), None);
        let start = now();
        let outer = start + secs(5);
        move_on_at(outer, async {
            assert_eq!(current_effective_deadline(), Some(outer));
            move_on_after(secs(60), async {
                assert_eq!(current_effective_deadline(), Some(outer));
            })
            .await;
            move_on_after(secs(2), async {
                assert_eq!(current_effective_deadline(), Some(start + secs(2)));
            })
            .await;
            shield(async {
                assert_eq!(current_effective_deadline(), None);
            })
            .await;
            let s = CancelScope::new().with_deadline(start + secs(30));
            s.set_shield(true);
            s.run(async {
                assert_eq!(current_effective_deadline(), Some(start + secs(30)));
            })
            .await;
            let out = trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    scope.set_deadline(start + secs(4));
                    n.spawn(async move {
                        assert_eq!(current_effective_deadline(), Some(start + secs(4)));
                    });
                    assert_eq!(current_effective_deadline(), Some(start + secs(4)));
                })
                .await
            })
            .await;
            assert_eq!(out, Some(Ok(())));
            let c = CancelScope::new();
            let h = c.clone();
            c.run(async move {
                h.cancel();
                assert_eq!(current_effective_deadline(), Some(now()));
            })
            .await;
        })
        .await;
    });
}

/// Children belong to the nursery's scopes, not to the scope where `spawn` was called: a
/// `move_on_after` around a `spawn` does not limit the child. Ports the rule of DESIGN.md
/// (Trio: tasks inherit the nursery's cancel scope, `test_nursery_cancel_scope`-style).
#[test]
fn a_timeout_around_spawn_does_not_limit_the_child() {
    let done = Cell::new(None);
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            let done = &done;
            move_on_after(secs(1), async {
                n.spawn(async move {
                    assert_eq!(current_effective_deadline(), None);
                    sleep(secs(5)).await;
                    done.set(Some(now() - start));
                });
            })
            .await;
        })
        .await
        .unwrap();
    });
    assert_eq!(done.get(), Some(secs(5)));
}

// ----- nurseries -----

/// An error in one child cancels a sibling blocked in a long sleep, and the body: virtual
/// time never advances to that sleep's deadline; the errors of the children that failed
/// in the same instant are all reported, each once. Ports CPython
/// `test_taskgroups.py::test_cancel_children_on_child_error` and `test_taskgroup_04`.
#[test]
fn an_error_in_one_child_cancels_a_sibling_blocked_in_a_long_sleep() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        let out = nursery(async |n| {
            for _ in 0..3 {
                n.spawn(async {
                    sleep(Duration::from_millis(100)).await;
                    Err::<(), _>(Oops("zero division"))
                });
            }
            let guard = counter.guard();
            let sibling = n.spawn(async move {
                sleep(secs(5)).await;
                guard.finish();
            });
            let body_guard = counter.guard();
            sleep(secs(10)).await;
            body_guard.finish();
            sibling.await.ok();
            Ok(())
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.len(), 3);
        assert!(group.errors().all(|e| *e == Oops("zero division")));
        assert_eq!(group.failures()[0].task(), TaskName::Child(1));
        assert_eq!(now() - start, Duration::from_millis(100));
    });
    assert_eq!(counter.dropped(), 2, "the sibling and the body");
    assert_eq!(counter.finished(), 0);
}

/// An error in the body cancels the children; their join handles report cancellation.
/// Ports CPython `test_taskgroups.py::test_taskgroup_09` / `test_taskgroup_10`.
#[test]
fn an_error_in_the_body_cancels_the_children() {
    let cancelled_children = Cell::new(0);
    run_virtual(async {
        let start = now();
        let out = nursery(async |n| {
            for s in [1, 2] {
                let c = &cancelled_children;
                n.spawn(async move {
                    let _g = OnDrop(move || c.set(c.get() + 1));
                    sleep(secs(s)).await;
                    std::mem::forget(_g);
                });
            }
            sleep(Duration::from_millis(100)).await;
            Err::<(), _>(Oops("body"))
        })
        .await;
        assert_eq!(out.unwrap_err().failures()[0].task(), TaskName::Body);
        assert_eq!(now() - start, Duration::from_millis(100));
    });
    assert_eq!(cancelled_children.get(), 2);
}

/// Cancelling a nursery (through the scope around it) with children in flight: every child
/// is dropped and the cancellation is no failure — the scope reports it as `None`, never
/// `Some(Err(_))`, whether the body had returned or not. Ports trio
/// `test_cancel_inheritance` and CPython `test_taskgroups.py::test_taskgroup_03`
/// (cancelling is not a failure).
#[test]
fn cancelling_a_nursery_with_children_in_flight_is_no_failure() {
    let counter = DropCounter::new();
    run_virtual(async {
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                for _ in 0..5 {
                    let guard = counter.guard();
                    n.spawn(async move {
                        sleep(secs(5)).await;
                        guard.finish();
                    });
                }
                sleep(secs(1)).await;
                scope.cancel();
                sleep(secs(1)).await;
                Ok::<_, Oops>("never")
            })
            .await
        })
        .await;
        // Was `Ok(None)` from the nursery's own scope; the scope around reports it now.
        assert_eq!(out, None);

        // The body returned first; a child cancels the nursery later.
        let start = now();
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let guard = counter.guard();
                n.spawn(async move {
                    sleep(secs(60)).await;
                    guard.finish();
                });
                let scope = scope.clone();
                n.spawn(async move {
                    sleep(secs(2)).await;
                    scope.cancel();
                });
                Ok::<_, Oops>(42)
            })
            .await
        })
        .await;
        // Was `Ok(Some(42))`: a nursery cancelled from outside never completes with a
        // value, even one its body had already returned, so the caller's next line does
        // not run on half-done work; the scope around it catches the cancellation.
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(2));
    });
    assert_eq!(counter.dropped(), 6);
    assert_eq!(counter.finished(), 0);
}

/// Cancellation of a nursery from an enclosing scope drops all its children (and the body);
/// the enclosing scope catches it, the nursery's own scope does not (as the nursery's
/// `Debug` output shows, taken when the body is dropped: its own scope is not reachable any
/// more). Ports CPython `test_taskgroups.py::test_cancellation` / `test_taskgroup_07` (the
/// task running the group is cancelled from outside) and trio
/// `test_cancel_scope_exceptiongroup_filtering`.
#[test]
fn cancelling_an_enclosing_scope_drops_every_child_of_the_nursery() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        let own = RefCell::new(None);
        let out = move_on_after(
            Duration::from_millis(100),
            nursery(async |n| {
                let (own, n) = (&own, &n);
                let _seen = OnDrop(move || *own.borrow_mut() = Some(format!("{n:?}")));
                for _ in 0..5 {
                    let guard = counter.guard();
                    n.spawn(async move {
                        sleep(secs(5)).await;
                        guard.finish();
                    });
                }
                let guard = counter.guard();
                sleep(secs(10)).await;
                guard.finish();
            }),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(now() - start, Duration::from_millis(100));
        let own = own.borrow_mut().take().expect("the body was dropped");
        assert!(own.contains("cancel_called: false"), "{own}");
        assert!(own.contains("reason: None"), "{own}");
        assert!(own.contains("cancelled_caught: false"), "{own}");
    });
    assert_eq!(counter.dropped(), 6);
}

/// A failure records why the nursery was cancelled, and the first reason stays when a
/// second task fails later. The nursery's own scope is not reachable any more, so this is
/// read where it shows: the `Debug` output of the `Nursery` handle, which includes that
/// scope (taken from the body, kept running by a shield). Ports trio's cancel-reason
/// debugging (`CancelScope.__repr__` / `test_cancel_scope_repr`).
#[test]
fn a_nursery_shows_why_it_was_cancelled_in_its_debug_output() {
    run_virtual(async {
        let seen = RefCell::new(Vec::new());
        let out = nursery(async |n| {
            n.spawn(async { Err::<(), _>(Oops("x")) });
            n.spawn(async {
                shield(sleep(secs(1))).await;
                Err::<(), _>(Oops("y"))
            });
            shield(async {
                sleep(Duration::from_millis(500)).await; // child 1 has failed
                seen.borrow_mut().push(format!("{n:?}"));
                sleep(secs(2)).await; // child 2 has failed too
                seen.borrow_mut().push(format!("{n:?}"));
            })
            .await;
            sleep_forever().await;
            Ok(())
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.errors().collect::<Vec<_>>(), [&Oops("x"), &Oops("y")]);
        let first = format!(
            "reason: {:?}",
            Some(CancelReason::Failure {
                task: "child 1".into()
            })
        );
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 2);
        for debug in &seen {
            assert!(debug.contains("cancel_called: true"), "{debug}");
            assert!(debug.contains(&first), "{debug}");
        }
        // The first reason stays.
        assert!(!seen[1].contains("child 2"), "{}", seen[1]);
    });
}

/// Children spawned before and after a cancellation each run to their first suspension
/// (delivery at suspension points), and are dropped there. Ports trio
/// `test_precancelled_task` (a task started in a cancelled nursery still runs until its
/// first checkpoint).
#[test]
fn children_spawned_into_a_cancelled_nursery_run_to_their_first_suspension() {
    let record = RefCell::new(Vec::new());
    run_virtual(async {
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let record = &record;
                n.spawn(async move {
                    record.borrow_mut().push("before");
                    sleep_forever().await;
                });
                scope.cancel();
                n.spawn(async move {
                    record.borrow_mut().push("after");
                    yield_now().await;
                    record.borrow_mut().push("after resumed");
                });
            })
            .await
        })
        .await;
        // Cancelled by the scope around it, the nursery never completes with the body's
        // `()` (it used to give `Ok(Some(()))`); that scope catches the cancellation.
        assert_eq!(out, None);
    });
    assert_eq!(*record.borrow(), ["before", "after"]);
}

// ----- start -----

/// `start` returns the value the child passes to `started`, at the moment it does; the
/// child keeps running in the nursery, which waits for it. Ports trio `test_nursery_start`
/// (happy path, timing on the autojump clock).
#[test]
fn start_returns_the_started_value_and_the_child_keeps_running() {
    run_virtual(async {
        for seconds in [1u64, 2] {
            let t0 = now();
            nursery(async |n| {
                let got = n
                    .start(async move |_n, status| {
                        sleep(secs(seconds)).await;
                        status.started(seconds);
                        sleep(secs(seconds)).await;
                    })
                    .await
                    .unwrap();
                assert_eq!(got, seconds);
                assert_eq!(now() - t0, secs(seconds));
            })
            .await
            .unwrap();
            assert_eq!(now() - t0, secs(2 * seconds));
        }
    });
}

/// A child that fails before `started`: the error comes out of `start`, and the nursery is
/// not affected. Ports trio `test_nursery_start` ("child crashes before calling started").
#[test]
fn a_failure_before_started_surfaces_from_start() {
    run_virtual(async {
        let out = nursery(async |n| {
            let err = n
                .start(async |_n, _status: trellis::TaskStatus<u16>| {
                    sleep(secs(1)).await;
                    Err::<(), _>(Oops("bind failed"))
                })
                .await
                .unwrap_err();
            assert_eq!(err.error(), Some(&Oops("bind failed")));
            assert_eq!(err.task(), TaskName::Child(1));
            assert!(!err.is_not_ready() && !err.is_cancelled());
            Ok::<_, Oops>("the nursery goes on")
        })
        .await;
        assert_eq!(out, Ok("the nursery goes on"));
    });
}

/// A child that finishes without calling `started` is a clear error from `start`. Ports
/// trio `test_nursery_start` ("child exiting cleanly before calling started").
#[test]
fn a_child_that_finishes_without_started_is_a_clear_error() {
    run_virtual(async {
        nursery(async |n| {
            let err = n
                .start(async |_n, _status: trellis::TaskStatus<()>| Ok(()))
                .await
                .unwrap_err();
            assert!(err.is_not_ready());
            let msg = err.to_string();
            assert!(
                msg.contains("finished without calling `started`"),
                "unclear message: {msg}"
            );
            Ok::<_, Oops>(())
        })
        .await
        .unwrap();
    });
}

/// A child that panics before `started`: the panic is resumed from `start` (as if the code
/// were sequential), not from the nursery. Ports trio `test_nursery_start` (a crash before
/// `started` comes out of `start`).
#[test]
fn a_panic_before_started_is_resumed_from_start() {
    run_virtual(async {
        let out = nursery(async |n| {
            let caught =
                catch_unwind(n.start(async |_n, _status: trellis::TaskStatus<()>| -> () {
                    yield_now().await;
                    panic!("boom before started");
                }))
                .await;
            let payload = caught.expect_err("the panic comes out of start");
            assert_eq!(panic_message(&*payload), "boom before started");
            Ok::<_, Oops>(1)
        })
        .await;
        assert_eq!(out, Ok(1));
    });
}

/// After `started`, the child belongs to the nursery: its later failure goes to the nursery.
/// Ports trio `test_nursery_start` and the `start` contract of issue 3.
#[test]
fn a_failure_after_started_goes_to_the_nursery() {
    run_virtual(async {
        let out = nursery(async |n| {
            let v = n
                .start(async |_n, status| {
                    status.started(5);
                    sleep(secs(1)).await;
                    Err::<(), _>(Oops("later"))
                })
                .await
                .unwrap();
            assert_eq!(v, 5);
            sleep_forever().await;
            Ok(())
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1);
        assert_eq!(group.first(), &Oops("later"));
    });
}

/// Abandoning a `start` before the child is ready (here by a timeout) cancels the child:
/// it was started on the caller's behalf. The nursery ends then, not when the child would
/// have. Ports trio `test_nursery_start` (cancelled `start`).
#[test]
fn abandoning_start_before_ready_cancels_the_child() {
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            let guard = counter.guard();
            let out = move_on_after(
                secs(1),
                n.start(async move |_n, status| {
                    sleep(secs(10)).await;
                    status.started(());
                    guard.finish();
                }),
            )
            .await;
            assert!(out.is_none());
        })
        .await
        .unwrap();
        assert_eq!(now() - start, secs(1));
    });
    assert_eq!(counter.dropped(), 1);
}

/// A `start` abandoned before its child's first poll: the child still runs to its first
/// suspension (code that does not await is never interrupted) and is dropped there, and a
/// `started` it calls before that suspension does nothing (nobody waits for it).
#[test]
fn a_start_abandoned_before_its_childs_first_poll_runs_it_to_its_first_suspension() {
    let ran = Cell::new(0);
    let counter = DropCounter::new();
    run_virtual(async {
        let start = now();
        nursery(async |n| {
            let guard = counter.guard();
            let ran = &ran;
            let out = move_on_after(
                Duration::ZERO,
                n.start(async move |_n, status: trellis::TaskStatus<()>| {
                    ran.set(1);
                    status.started(());
                    sleep(secs(1)).await;
                    ran.set(2);
                    guard.finish();
                }),
            )
            .await;
            assert!(out.is_none());
        })
        .await
        .unwrap();
        assert_eq!(
            now() - start,
            Duration::ZERO,
            "the sleep was never waited for"
        );
    });
    assert_eq!((ran.get(), counter.dropped()), (1, 1));
}

/// Abandoning a `start` cancels its child as `JoinHandle::cancel` does: a shielded part
/// finishes first, and what the child fails with after it is the nursery's (no `start` is
/// left to return it). Ports trio `test_nursery_start` ("the child keeps executing under
/// start()").
#[test]
fn an_abandoned_starts_child_finishes_its_shield_and_its_failure_is_the_nurserys() {
    let result = run_virtual(async {
        let start = now();
        let result = nursery(async |n| {
            let out = move_on_after(
                secs(1),
                n.start(async |_n, _status: trellis::TaskStatus<()>| {
                    shield(sleep(secs(5))).await;
                    Err::<(), _>(format!("after the shield, at {:?}", now() - start))
                }),
            )
            .await;
            assert!(out.is_none());
            Ok(())
        })
        .await;
        assert_eq!(now() - start, secs(5));
        result
    });
    assert_eq!(
        result.unwrap_err().into_errors(),
        [format!("after the shield, at {:?}", secs(5))]
    );
}

/// When the nursery is cancelled (through the scope around it) before the child is ready,
/// `start` says so (seen here from a shielded body); a child started into a cancelled
/// nursery runs to its first suspension: ready before it, `start` succeeds; suspended
/// first, `start` fails the same way. Ports trio `test_nursery_start_with_cancelled_nursery`.
#[test]
fn start_in_a_cancelled_nursery_reports_cancellation() {
    run_virtual(async {
        let start = now();
        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let scope = scope.clone();
                n.spawn(async move {
                    sleep(secs(1)).await;
                    scope.cancel();
                });
                shield(async {
                    let err = n
                        .start(async |_n, status| {
                            sleep(secs(10)).await;
                            status.started(());
                        })
                        .await
                        .unwrap_err();
                    assert!(err.is_cancelled(), "{err}");
                    assert_eq!(now() - start, secs(1));
                    n.start(async |_n, status| status.started(()))
                        .await
                        .expect("ready before the first suspension");
                    let err = n
                        .start(async |_n, status| {
                            yield_now().await;
                            status.started(());
                        })
                        .await
                        .unwrap_err();
                    assert!(err.is_cancelled(), "{err}");
                })
                .await;
            })
            .await
        })
        .await;
        // Cancelled by the scope around it, the nursery never completes with the body's
        // `()` (it used to give `Ok(Some(()))`); that scope catches the cancellation.
        assert_eq!(out, None);
    });
}

// ----- shields never stay counted for nothing -----

/// A scope whose body, when it is dropped, switches the scope's own shield on.
async fn shielded_by_its_own_destructor() {
    let inner = CancelScope::new();
    let handle = inner.clone();
    inner
        .run(async move {
            let _g = OnDrop(move || handle.set_shield(true));
            sleep_forever().await;
        })
        .await;
}

/// A shield switched on by a destructor while the cancellation drops its scope's body
/// protects nothing: the enclosing timeout still ends (it used to hang forever), for a
/// scope body and for a nursery child.
#[test]
fn a_shield_switched_on_by_a_destructor_during_a_cancellation_protects_nothing() {
    common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let out = move_on_after(secs(1), shielded_by_its_own_destructor()).await;
            assert_eq!(out, None);
            assert_eq!(now() - start, secs(1));

            let start = now();
            let out = move_on_after(
                secs(1),
                nursery(async |n| {
                    n.spawn(shielded_by_its_own_destructor());
                    sleep_forever().await;
                }),
            )
            .await;
            assert!(out.is_none());
            assert_eq!(now() - start, secs(1));
        })
    });
}

/// A started `shield()` that is forgotten keeps at most its own unit alive: once that unit
/// ends, the enclosing timeout fires on time, whatever is toggled on the forgotten scope.
#[test]
fn a_forgotten_shield_keeps_at_most_its_own_unit_alive() {
    common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            // In a nursery child that then ends.
            let start = now();
            let out = trellis::fail_after(
                secs(1),
                nursery(async |n| {
                    n.spawn(common::forget_after_one_poll(shield(sleep_forever())));
                    sleep_forever().await;
                }),
            )
            .await;
            assert!(out.is_err());
            assert_eq!(now() - start, secs(1));

            // In a scope body that then ends, toggled afterwards through a handle.
            let start = now();
            let out = move_on_after(secs(1), async {
                let forgotten = CancelScope::new();
                forgotten.set_shield(true);
                move_on_after(
                    secs(10),
                    common::forget_after_one_poll(forgotten.clone().run(sleep_forever())),
                )
                .await;
                for on in [false, true, false, true] {
                    forgotten.set_shield(on);
                }
                sleep_forever().await;
            })
            .await;
            assert_eq!(out, None);
            assert_eq!(now() - start, secs(1));

            // Still inside its unit, it keeps that unit (and only that) running.
            let start = now();
            let ticks = Cell::new(0);
            let out = move_on_after(secs(1), async {
                common::forget_after_one_poll(shield(sleep_forever())).await;
                for _ in 0..3 {
                    sleep(secs(1)).await;
                    ticks.set(ticks.get() + 1);
                }
            })
            .await;
            assert_eq!(out, Some(()), "the unit ran to its end");
            assert_eq!((ticks.get(), now() - start), (3, secs(3)));
        })
    });
}

/// Every order of shield toggles, a cancel of the shielded scope itself and a shield
/// switched on by a destructor, while an enclosing timeout waits for that shield: the
/// timeout ends at the first moment nothing shields the body any more, never later (no
/// count is left behind) and never earlier.
#[test]
fn no_order_of_toggles_drops_and_cancels_leaves_a_shield_counted() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Step {
        ShieldOn,
        ShieldOff,
        CancelInner,
        ShieldFromDestructor,
    }
    fn orders(left: &[Step]) -> Vec<Vec<Step>> {
        if left.is_empty() {
            return vec![vec![]];
        }
        let mut all = Vec::new();
        for (i, first) in left.iter().enumerate() {
            let rest: Vec<Step> = left
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| *s)
                .collect();
            for tail in orders(&rest) {
                all.push([vec![*first], tail].concat());
            }
        }
        all
    }
    /// When the body stops being protected: the first step after which the scope is
    /// cancelled itself or unshielded (steps at 1 s, 2 s, …; the final unshield after them).
    fn expected_end(order: &[Step]) -> u64 {
        let mut shielded = true;
        for (i, step) in order.iter().enumerate() {
            match step {
                Step::ShieldOn => shielded = true,
                Step::ShieldOff => shielded = false,
                Step::CancelInner => return i as u64 + 1,
                Step::ShieldFromDestructor => {}
            }
            if !shielded {
                return i as u64 + 1;
            }
        }
        order.len() as u64 + 1
    }
    let all = orders(&[
        Step::ShieldOn,
        Step::ShieldOff,
        Step::CancelInner,
        Step::ShieldFromDestructor,
    ]);
    assert_eq!(all.len(), 24);
    common::watchdog(common::HANG_LIMIT, move || {
        for order in all {
            let ended = Cell::new(None);
            run_virtual(async {
                let start = now();
                let inner = CancelScope::new();
                inner.set_shield(true);
                let destructor_shields = Cell::new(false);
                let (ended, destructor_shields) = (&ended, &destructor_shields);
                let (runner, actor) = (inner.clone(), inner);
                let order = &order;
                nursery(async |n| {
                    n.spawn(async move {
                        move_on_after(Duration::from_millis(500), async move {
                            let handle = runner.clone();
                            runner
                                .run(async move {
                                    let _g = OnDrop(move || {
                                        if destructor_shields.get() {
                                            handle.set_shield(true);
                                        }
                                    });
                                    sleep_forever().await;
                                })
                                .await;
                            sleep_forever().await;
                        })
                        .await;
                        ended.set(Some(now() - start));
                    });
                    n.spawn(async move {
                        for step in order {
                            sleep(secs(1)).await;
                            match step {
                                Step::ShieldOn => actor.set_shield(true),
                                Step::ShieldOff => actor.set_shield(false),
                                Step::CancelInner => actor.cancel(),
                                Step::ShieldFromDestructor => destructor_shields.set(true),
                            }
                        }
                        sleep(secs(1)).await;
                        actor.set_shield(false);
                    });
                })
                .await
                .unwrap();
            });
            assert_eq!(ended.get(), Some(secs(expected_end(&order))), "{order:?}");
        }
    });
}

/// A scope belongs to the runtime it runs in: a started scope left behind by one runtime
/// cannot move its deadline in the next one on the same thread (a clear panic), and
/// cancelling, shielding or dropping it there leaves the new runtime's timers alone.
#[test]
fn a_scope_left_behind_by_one_runtime_never_touches_the_next_ones_timers() {
    common::watchdog(common::HANG_LIMIT, || {
        let (scope, leaked) = run_virtual(async {
            let scope = CancelScope::new().with_deadline(now() + secs(10));
            let leaked = common::poll_once(scope.clone().run(sleep_forever())).await;
            (scope, leaked)
        });
        run_virtual(async {
            let start = now();
            let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scope.set_deadline(now() + secs(1));
            }));
            let message = panic_message(&*moved.expect_err("moving the deadline must panic"));
            assert!(
                message.contains("running in another trellis runtime"),
                "{message}"
            );
            scope.cancel();
            scope.set_shield(true);
            drop(leaked);
            let out = move_on_after(secs(3), sleep(secs(5))).await;
            assert_eq!(out, None);
            assert_eq!(now() - start, secs(3));
        });
    });
}

// ----- cancelling from another thread -----

#[test]
fn a_remote_handle_is_send_and_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<trellis::RemoteCancel>();
}

/// A thread cancels a scope whose body sleeps forever, while the runtime runs or is
/// parked (both orders happen); the cancellation wakes the runtime and is caught by the
/// scope. On the autojump clock the live handle also keeps the runtime from being declared
/// deadlocked while it waits.
#[test]
fn a_remote_handle_cancels_a_scope_from_another_thread() {
    common::watchdog(common::HANG_LIMIT, || {
        for _ in 0..20 {
            run_virtual(async {
                let scope = CancelScope::new();
                let remote = scope.remote();
                let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
                let canceller = std::thread::spawn(move || {
                    go_rx.recv().unwrap();
                    remote.cancel();
                });
                go_tx.send(()).unwrap();
                let out = scope.clone().run(sleep_forever()).await;
                canceller.join().unwrap();
                assert_eq!(out, None);
                assert!(scope.cancelled_caught());
                assert_eq!(scope.cancel_reason(), Some(CancelReason::Explicit));
            });
        }
    });
}

/// A remote cancel before the scope runs is applied when it starts (the body runs to its
/// first suspension); one after the scope finished changes nothing. The scope around a
/// nursery can be cancelled remotely too: it gives `None`.
#[test]
fn a_remote_cancel_applies_when_the_scope_starts_and_not_after_it_ends() {
    let (ran, resumed) = (Cell::new(false), Cell::new(false));
    run_virtual(async {
        let scope = CancelScope::new();
        scope.remote().cancel();
        let out = scope
            .clone()
            .run(async {
                ran.set(true);
                yield_now().await;
                resumed.set(true);
            })
            .await;
        assert_eq!(out, None);

        let scope = CancelScope::new();
        let remote = scope.remote();
        assert_eq!(scope.clone().run(async { 1 }).await, Some(1));
        remote.cancel();
        assert!(remote.is_cancelled());
        assert!(!scope.cancelled_caught());

        let out = trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                let remote = scope.remote();
                n.spawn(sleep_forever());
                n.spawn(async move {
                    sleep(secs(1)).await;
                    std::thread::spawn(move || remote.cancel()).join().unwrap();
                });
                sleep_forever().await;
            })
            .await
        })
        .await;
        // The scope around the nursery catches it (the nursery's own scope gave `Ok(None)`).
        assert_eq!(out, None);
    });
    assert!(ran.get() && !resumed.get());
}

/// A handle keeps an autojump runtime waiting only while it could still cancel: once its
/// scope has ended (without a cancel), or once it cancelled, a deadlock is reported, also
/// with clones made after that alive. (A live, unused handle keeps it waiting: above.)
#[test]
fn a_remote_handle_that_can_no_longer_cancel_does_not_hide_a_deadlock() {
    for cancel_first in [false, true] {
        let message = common::watchdog(common::HANG_LIMIT, move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_virtual(async {
                    let scope = CancelScope::new();
                    let remote = scope.remote();
                    if cancel_first {
                        remote.cancel();
                    }
                    let _ = scope.run(yield_now()).await;
                    let _clone = remote.clone();
                    trellis::Event::new().wait().await;
                    drop(remote);
                })
            }));
            panic_message(&*out.expect_err("a deadlock, not a return"))
        });
        assert!(
            message.contains("trellis: deadlock"),
            "cancel_first = {cancel_first}: {message}"
        );
    }
}

// ----- building scopes, and bodies that reach their own scope -----

/// The body of `cancel_scope` / `run_with` gets its scope: it can cancel it or move its
/// deadline without a clone made beforehand, and siblings still cancel through a clone.
#[test]
fn a_scope_body_reaches_its_own_scope() {
    run_virtual(async {
        let start = now();
        let out = trellis::cancel_scope(async |scope| {
            scope.set_deadline(now() + secs(2));
            sleep_forever().await;
        })
        .await;
        assert_eq!((out, now() - start), (None, secs(2)));

        let scope = CancelScope::new();
        let sibling = scope.clone();
        let out = nursery(async |n| {
            n.spawn(async move {
                sleep(secs(1)).await;
                sibling.cancel();
            });
            let out = scope
                .run_with(async |me| {
                    assert!(!me.cancel_called());
                    sleep_forever().await;
                })
                .await;
            Ok::<_, ()>(out)
        })
        .await;
        assert_eq!(out, Ok(None));
    });
}

/// Built with `with_deadline`, `with_timeout` and `with_shield`: the last deadline given
/// wins, a timeout starts at the first poll, `clear_deadline` removes a pending timeout, and
/// the shield keeps an enclosing timeout out while its own timeout still applies.
#[test]
fn scopes_are_built_with_a_deadline_a_timeout_and_a_shield() {
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new()
            .with_timeout(secs(60))
            .with_deadline(start + secs(1));
        assert_eq!(scope.deadline(), Some(start + secs(1)));
        assert_eq!(scope.run(sleep_forever()).await, None);
        assert_eq!(now() - start, secs(1));

        let scope = CancelScope::new()
            .with_deadline(start + secs(100))
            .with_timeout(secs(3));
        assert_eq!(
            scope.deadline(),
            None,
            "a relative timeout is resolved when it starts"
        );
        sleep(secs(1)).await;
        let begun = now();
        assert_eq!(scope.run(sleep_forever()).await, None);
        assert_eq!(now() - begun, secs(3));

        let scope = CancelScope::new().with_timeout(secs(1));
        scope.clear_deadline();
        assert_eq!(scope.run(sleep(secs(5))).await, Some(()));

        let begun = now();
        let out = move_on_after(secs(1), async {
            CancelScope::new()
                .with_shield(true)
                .with_timeout(secs(4))
                .run(sleep_forever())
                .await
        })
        .await;
        // The shield's own timeout ended it at 4 s; the body then returned without
        // suspending, so the enclosing cancellation was never delivered (Trio's rule).
        assert_eq!(out, Some(None));
        assert_eq!(now() - begun, secs(4));
    });
}

// ---------------------------------------------------------------------------------------
// A nursery is linked into the scope tree only when something needs the link (issue 12's
// deferred attachment): in its first poll it runs where it is polled from. Each test
// below reaches the enclosing scopes from inside such a first poll, in one of the ways
// that must attach it there, and fails if the nursery were attached anywhere else or not
// at all.

/// The deadline around a nursery is seen from its body, from a child's first poll, and
/// from two levels of nurseries opened in first polls.
#[test]
fn the_deadline_around_a_nursery_reaches_every_level_of_its_first_poll() {
    let seen = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let outer = now() + secs(5);
            let seen = RefCell::new(Vec::new());
            move_on_at(outer, async {
                nursery(async |n| {
                    seen.borrow_mut()
                        .push(current_effective_deadline() == Some(outer));
                    n.spawn(async {
                        seen.borrow_mut()
                            .push(current_effective_deadline() == Some(outer));
                        nursery(async |inner| {
                            inner.spawn(async {
                                let here = current_effective_deadline();
                                seen.borrow_mut().push(here == Some(outer));
                            });
                        })
                        .await
                        .unwrap();
                    });
                })
                .await
                .unwrap();
            })
            .await
            .expect("nothing waited for the deadline");
            seen.into_inner()
        })
    });
    assert_eq!(seen, [true, true, true]);
}

/// A cancel of the enclosing scope from a nursery's first poll reaches its children:
/// those that suspend are dropped, the nursery never completes, and the scope catches
/// the cancellation.
#[test]
fn a_cancel_of_the_enclosing_scope_from_a_first_poll_drops_the_children() {
    let (caught, dropped, finished) = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let dropped = DropCounter::new();
            let finished = Cell::new(0);
            let scope = CancelScope::new();
            let canceller = scope.clone();
            let caught = scope
                .run(async {
                    nursery(async |n| {
                        for _ in 0..2 {
                            let guard = dropped.guard();
                            n.spawn(async {
                                let _guard = guard;
                                sleep(secs(60)).await;
                                finished.set(finished.get() + 1);
                            });
                        }
                        canceller.cancel();
                    })
                    .await
                    .unwrap();
                    finished.set(finished.get() + 100); // never: the nursery is abandoned
                })
                .await;
            (caught.is_none(), dropped.dropped(), finished.get())
        })
    });
    assert!(caught, "the scope caught its cancellation");
    assert_eq!((dropped, finished), (2, 0));
}

/// A shield opened in a nursery's first poll, inside a scope that is already cancelled,
/// protects its body (the shield's count goes up through the nursery), and an unshielded
/// sibling is dropped at its first suspension.
#[test]
fn a_shield_in_a_first_poll_protects_inside_a_cancelled_scope() {
    let (shielded_done, plain_done) = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let (shielded_done, plain_done) = (Cell::new(false), Cell::new(false));
            let scope = CancelScope::new();
            scope.cancel();
            scope
                .run(async {
                    nursery(async |n| {
                        n.spawn(async {
                            sleep(secs(1)).await;
                            plain_done.set(true);
                        });
                        shield(async {
                            sleep(secs(2)).await;
                            shielded_done.set(true);
                        })
                        .await;
                    })
                    .await
                    .unwrap();
                })
                .await;
            (shielded_done.get(), plain_done.get())
        })
    });
    assert_eq!((shielded_done, plain_done), (true, false));
}

/// `cancelled()` inside a shield opened in a child's first poll hears a later cancel of
/// the scope around the nursery: the wake travels down through the nursery, which was
/// attached (with the shield's count) when the shield opened.
#[test]
fn cancelled_in_a_shield_from_a_first_poll_hears_the_scope_around_the_nursery() {
    let (caught, order) = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let order = RefCell::new(Vec::new());
            let scope = CancelScope::new();
            let canceller = scope.clone();
            let caught = scope
                .run(async {
                    nursery(async |n| {
                        n.spawn(shield(async {
                            cancelled().await;
                            order.borrow_mut().push("heard");
                        }));
                        n.spawn(async {
                            sleep(secs(1)).await;
                            order.borrow_mut().push("cancel");
                            canceller.cancel();
                        });
                    })
                    .await
                    .unwrap();
                })
                .await;
            (caught.is_none(), order.into_inner())
        })
    });
    assert!(caught, "the scope caught its cancellation");
    assert_eq!(order, ["cancel", "heard"]);
}

/// A child cancelled on its own (`JoinHandle::cancel`) from the body's first poll, while
/// a shield opened in the child's first poll holds it: the shielded part finishes, the
/// code after the shield is never reached, and the nursery's other child runs on (the
/// shield opens inside the nursery's first poll, which attaches the nursery: the shield's
/// count goes up through it).
#[test]
fn a_child_cancelled_from_a_first_poll_keeps_its_shield_and_stops_after_it() {
    let steps = common::watchdog(common::HANG_LIMIT, || {
        run_virtual(async {
            let steps = RefCell::new(Vec::new());
            nursery(async |n| {
                let shielded = n.spawn(async {
                    shield(async {
                        sleep(secs(1)).await;
                        steps.borrow_mut().push("shielded part done");
                    })
                    .await;
                    sleep(secs(1)).await;
                    steps.borrow_mut().push("after the shield");
                });
                n.spawn(async {
                    sleep(secs(3)).await;
                    steps.borrow_mut().push("sibling done");
                });
                shielded.cancel();
                assert!(shielded.await.is_err(), "the cancelled child has no value");
            })
            .await
            .unwrap();
            steps.into_inner()
        })
    });
    assert_eq!(steps, ["shielded part done", "sibling done"]);
}
