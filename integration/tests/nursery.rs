//! Behaviour of nurseries: ownership of children, failure handling, scheduling.

mod common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use common::{DropCounter, count_polls, run_virtual, secs};
use trellis::{TaskName, nursery, sleep, sleep_forever, yield_now};

#[derive(Debug, PartialEq, Eq, Clone)]
struct Oops(&'static str);

#[test]
fn waits_for_all_children() {
    let done = Cell::new(0);
    run_virtual(async {
        nursery(async |n| {
            for i in 0..5u64 {
                let done = &done;
                n.spawn(async move {
                    sleep(Duration::from_secs(i)).await;
                    done.set(done.get() + 1);
                });
            }
        })
        .await
        .unwrap();
        assert_eq!(done.get(), 5);
    });
}

#[test]
fn children_borrow_outer_data() {
    let names = vec![String::from("ada"), String::from("grace")];
    let seen = RefCell::new(Vec::new());
    trellis::run(async {
        nursery(async |n| {
            for name in &names {
                let seen = &seen;
                n.spawn(async move { seen.borrow_mut().push(name.as_str()) });
            }
        })
        .await
        .unwrap();
    });
    assert_eq!(*seen.borrow(), ["ada", "grace"]);
}

#[test]
fn children_returning_unit_need_no_ok_and_handles_give_values() {
    let out = trellis::run(async {
        nursery(async |n| {
            let unit = n.spawn(async {});
            let value = n.spawn(async { Ok(21) });
            unit.await.unwrap();
            Ok::<_, Oops>(value.await.unwrap() * 2)
        })
        .await
    });
    assert_eq!(out, Ok(42));
}

#[test]
fn nested_nurseries() {
    let order = RefCell::new(Vec::new());
    run_virtual(async {
        nursery(async |n| {
            let order = &order;
            n.spawn(async move {
                nursery(async |inner| {
                    inner.spawn(async move {
                        sleep(Duration::from_secs(2)).await;
                        order.borrow_mut().push("inner child");
                    });
                })
                .await
                .unwrap();
                order.borrow_mut().push("inner nursery done");
            });
            sleep(Duration::from_secs(1)).await;
            order.borrow_mut().push("outer body");
        })
        .await
        .unwrap();
    });
    assert_eq!(
        *order.borrow(),
        ["outer body", "inner child", "inner nursery done"]
    );
}

#[test]
fn siblings_spawned_from_a_child() {
    let count = Cell::new(0);
    run_virtual(async {
        nursery(async |n| {
            n.spawn_with(async |n| {
                for _ in 0..3 {
                    n.spawn_with(async |n| {
                        count.set(count.get() + 1);
                        n.spawn(async { count.set(count.get() + 1) });
                    });
                }
            });
        })
        .await
        .unwrap();
    });
    assert_eq!(count.get(), 6);
}

#[test]
fn first_error_cancels_siblings() {
    let counter = DropCounter::new();
    let result = run_virtual(async {
        nursery(async |n| {
            for _ in 0..10 {
                let guard = counter.guard();
                n.spawn(async move {
                    sleep(Duration::from_secs(3600)).await;
                    guard.finish();
                });
            }
            n.spawn(async {
                sleep(Duration::from_secs(1)).await;
                Err::<(), _>(Oops("first"))
            });
            sleep_forever().await;
            Ok(())
        })
        .await
    });
    let group = result.unwrap_err();
    assert_eq!(group.into_errors(), [Oops("first")]);
    assert_eq!(counter.dropped(), 10, "siblings must be dropped");
    assert_eq!(counter.finished(), 0, "no sibling may run to completion");
}

#[test]
fn first_error_cancels_without_advancing_virtual_time_to_the_sleepers() {
    run_virtual(async {
        let start = trellis::now();
        let result = nursery(async |n| {
            n.spawn(async { sleep(Duration::from_secs(3600)).await });
            n.spawn(async {
                sleep(Duration::from_secs(1)).await;
                Err::<(), _>(Oops("x"))
            });
            Ok(())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(trellis::now() - start, Duration::from_secs(1));
    });
}

#[test]
fn two_children_failing_in_the_same_poll_are_both_reported() {
    let group = trellis::run(async {
        nursery(async |n| {
            n.spawn(async {
                yield_now().await;
                Err::<(), _>(Oops("a"))
            });
            n.spawn(async {
                yield_now().await;
                Err::<(), _>(Oops("b"))
            });
            Ok(())
        })
        .await
        .unwrap_err()
    });
    assert_eq!(group.len(), 2);
    let tasks: Vec<_> = group.failures().iter().map(|f| f.task()).collect();
    assert_eq!(tasks, [TaskName::Child(1), TaskName::Child(2)]);
    assert_eq!(group.into_errors(), [Oops("a"), Oops("b")]);
}

#[test]
fn body_error_and_child_error_are_both_reported() {
    let group = trellis::run(async {
        nursery(async |n| {
            n.spawn(async {
                yield_now().await;
                Err::<(), _>(Oops("child"))
            });
            yield_now().await;
            // The child failed during this yield; the body was already woken, so it runs
            // to its next suspension (here: its return) and its error counts too.
            yield_now().await;
            Err::<(), _>(Oops("body"))
        })
        .await
        .unwrap_err()
    });
    let failures: Vec<_> = group
        .failures()
        .iter()
        .map(|f| (f.task(), f.error().clone()))
        .collect();
    assert_eq!(
        failures,
        [
            (TaskName::Child(1), Oops("child")),
            (TaskName::Body, Oops("body"))
        ]
    );
}

#[test]
fn error_group_display_names_each_task() {
    let group = trellis::run(async {
        nursery(async |n| {
            n.spawn(async { Err::<(), _>("disk full") });
            yield_now().await;
            Err::<(), _>("no config")
        })
        .await
        .unwrap_err()
    });
    assert_eq!(
        group.to_string(),
        "2 tasks failed: child 1 failed: disk full; the nursery body failed: no config"
    );
}

#[test]
fn panic_in_grandchild_reaches_caller_after_every_sibling_was_dropped() {
    let counter = DropCounter::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_virtual(async {
            nursery(async |n| {
                for _ in 0..3 {
                    let guard = counter.guard();
                    n.spawn(async move {
                        sleep_forever().await;
                        guard.finish();
                    });
                }
                let counter = &counter;
                n.spawn(async move {
                    nursery(async |inner| {
                        let guard = counter.guard();
                        inner.spawn(async move {
                            sleep_forever().await;
                            guard.finish();
                        });
                        inner.spawn(async {
                            sleep(Duration::from_secs(1)).await;
                            if true {
                                panic!("grandchild exploded");
                            }
                        });
                    })
                    .await
                    .unwrap();
                });
            })
            .await
            .unwrap();
        })
    }));
    let payload = caught.expect_err("the panic must reach the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"grandchild exploded"));
    assert_eq!(
        counter.dropped(),
        4,
        "every sibling at every level was dropped"
    );
}

#[test]
fn a_hundred_thousand_children_are_spawned_and_joined() {
    let sum = Cell::new(0u64);
    trellis::run(async {
        nursery(async |n| {
            for i in 0..100_000u64 {
                let sum = &sum;
                n.spawn(async move { sum.set(sum.get() + i) });
            }
        })
        .await
        .unwrap();
    });
    assert_eq!(sum.get(), (0..100_000u64).sum());
}

#[test]
fn one_wake_polls_one_child_among_a_hundred_thousand() {
    let polls = Cell::new(0);
    let wakers = RefCell::new(Vec::new());
    let woken_done = Cell::new(false);
    trellis::run(async {
        // The sleepers never end: the scope around the nursery stops them at the end.
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                for _ in 0..100_000 {
                    let (polls, wakers) = (&polls, &wakers);
                    n.spawn(count_polls(
                        polls,
                        std::future::poll_fn(move |cx| {
                            wakers.borrow_mut().push(cx.waker().clone());
                            std::task::Poll::<()>::Pending
                        }),
                    ));
                }
                let woken = &woken_done;
                n.spawn(async move {
                    yield_now().await; // every sleeper has been polled once by now
                    woken.set(true);
                });
                yield_now().await;
                yield_now().await;
                assert_eq!(polls.get(), 100_000, "each child polled once to start");
                polls.set(0);
                wakers.borrow()[500].wake_by_ref();
                yield_now().await;
                assert_eq!(polls.get(), 1, "one wake must poll exactly one child");
                scope.cancel();
            })
            .await
        })
        .await
    });
    assert!(woken_done.get());
}

#[test]
fn a_self_waking_child_does_not_starve_its_siblings_the_body_or_the_timers() {
    let spins = Cell::new(0u64);
    let stop = Cell::new(false);
    let body_ran = Cell::new(false);
    // A mock clock without autojump: time moves only when a task advances it, so the
    // timer below fires only if the executor services timers while a task is busy.
    trellis::Builder::new().mock_clock().run(async {
        nursery(async |n| {
            let (spins, stop) = (&spins, &stop);
            n.spawn(async move {
                while !stop.get() {
                    spins.set(spins.get() + 1);
                    yield_now().await;
                }
            });
            n.spawn(async move {
                sleep(Duration::from_millis(10)).await;
                stop.set(true);
            });
            n.spawn(async {
                for _ in 0..3 {
                    yield_now().await;
                }
                trellis::advance(Duration::from_millis(10));
            });
            for _ in 0..3 {
                yield_now().await;
            }
            body_ran.set(true);
        })
        .await
        .unwrap();
    });
    assert!(stop.get() && body_ran.get());
    assert!(spins.get() >= 3);
}

#[test]
fn ready_children_run_in_spawn_order() {
    let order = RefCell::new(Vec::new());
    trellis::run(async {
        nursery(async |n| {
            for i in 0..5 {
                let order = &order;
                n.spawn(async move {
                    order.borrow_mut().push(i);
                    yield_now().await;
                    order.borrow_mut().push(i + 10);
                });
            }
        })
        .await
        .unwrap();
    });
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
}

#[test]
fn cancelling_the_scope_around_a_nursery_ends_it_early_and_cleanly() {
    let counter = DropCounter::new();
    let out = run_virtual(async {
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                for _ in 0..3 {
                    let guard = counter.guard();
                    n.spawn(async move {
                        sleep_forever().await;
                        guard.finish();
                    });
                }
                sleep(Duration::from_secs(1)).await;
                scope.cancel();
                sleep_forever().await;
                Ok::<_, Oops>(5)
            })
            .await
        })
        .await
    });
    assert_eq!(
        out, None,
        "the scope caught the cancellation: no value, no error"
    );
    assert_eq!(counter.dropped(), 3);
}

#[test]
fn awaiting_a_failed_child_drops_the_awaiter_and_reports_the_failure_once() {
    let after_await = Cell::new(false);
    let group = run_virtual(async {
        nursery(async |n| {
            let failing = n.spawn(async {
                yield_now().await;
                Err::<(), _>(Oops("f"))
            });
            // The body is cancelled with the nursery: it must not turn the child's
            // failure into an error of its own.
            failing.await.map_err(|_| Oops("body saw the join error"))?;
            after_await.set(true);
            Ok(())
        })
        .await
        .unwrap_err()
    });
    assert_eq!(group.into_errors(), [Oops("f")]);
    assert!(
        !after_await.get(),
        "the awaiting body must be dropped at the await"
    );
}

#[test]
fn a_shielded_awaiter_sees_join_errors() {
    let seen = RefCell::new(Vec::new());
    run_virtual(async {
        let group = nursery(async |n| {
            let failing = n.spawn(async {
                yield_now().await;
                Err::<(), _>(Oops("f"))
            });
            let sleeper = n.spawn(async { sleep_forever().await });
            trellis::shield(async {
                let failed = failing.await.unwrap_err();
                let cancelled = sleeper.await.unwrap_err();
                seen.borrow_mut().push((failed.is_failed(), failed.task()));
                seen.borrow_mut()
                    .push((cancelled.is_cancelled(), cancelled.task()));
            })
            .await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(group.len(), 1);
    });
    assert_eq!(
        *seen.borrow(),
        [(true, TaskName::Child(1)), (true, TaskName::Child(2))]
    );
}

#[test]
fn a_timeout_around_a_nursery_awaiting_a_handle_moves_on() {
    let out = run_virtual(async {
        trellis::move_on_after(
            Duration::from_secs(1),
            nursery(async |n| {
                let slow = n.spawn(async {
                    sleep(Duration::from_secs(60)).await;
                    Ok(1)
                });
                let v = slow.await.map_err(|_| Oops("join error leaked"))?;
                Ok::<_, Oops>(v)
            }),
        )
        .await
    });
    assert_eq!(
        out, None,
        "the timeout caught the cancellation: no value, no error"
    );
}

/// Delivery at suspension points: a child spawned into a cancelled nursery runs to its
/// first suspension and is dropped there; one that fails before suspending is reported.
#[test]
fn a_child_spawned_into_a_cancelled_nursery_runs_to_its_first_suspension() {
    let polls = Cell::new(0);
    let resumed = Cell::new(false);
    let group = trellis::run(async {
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                scope.cancel();
                n.spawn(count_polls(&polls, async {
                    yield_now().await;
                    resumed.set(true);
                    Ok(())
                }));
                n.spawn(async { Err::<(), _>("failed before suspending") });
                Ok(())
            })
            .await
        })
        .await
        .expect("an error is returned, not lost to the cancellation")
        .unwrap_err()
    });
    assert_eq!(polls.get(), 1);
    assert!(!resumed.get());
    assert_eq!(group.into_errors(), ["failed before suspending"]);
}

#[test]
fn dropping_a_nursery_future_drops_every_child_at_once() {
    let counter = DropCounter::new();
    trellis::run(async {
        let mut fut = Box::pin(nursery(async |n| {
            for _ in 0..4 {
                let guard = counter.guard();
                n.spawn(async move {
                    sleep_forever().await;
                    guard.finish();
                });
            }
            sleep_forever().await;
        }));
        std::future::poll_fn(|cx| {
            let _ = fut.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        drop(fut);
    });
    assert_eq!(counter.dropped(), 4);
}

#[test]
#[should_panic(expected = "cannot be nested")]
fn nested_run_panics_with_a_clear_message() {
    trellis::run(async {
        trellis::run(async {});
    });
}

#[test]
fn wakes_from_another_thread_reach_the_runtime() {
    let got = trellis::run(async {
        let (tx, rx) = std::sync::mpsc::channel::<std::task::Waker>();
        let worker = std::thread::spawn(move || {
            let waker = rx.recv().unwrap();
            waker.wake();
            7
        });
        let mut sent = false;
        std::future::poll_fn(|cx| {
            if sent {
                std::task::Poll::Ready(())
            } else {
                sent = true;
                tx.send(cx.waker().clone()).unwrap();
                std::task::Poll::Pending
            }
        })
        .await;
        worker.join().unwrap()
    });
    assert_eq!(got, 7);
}

// ----- an enclosing cancellation never completes a nursery with a value -----

/// Three sleepers (1, 2, 3 s) in a nursery whose body returned a value at once, under a
/// 1.5 s timeout: the timeout is what the caller sees, not the body's value.
fn sleepers_under_a_timeout<T>(
    finished: &Cell<usize>,
    dropped: &DropCounter,
    timeout: impl AsyncFnOnce(
        std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<&'static str, trellis::ErrorGroup<()>>>
                    + '_,
            >,
        >,
    ) -> T,
) -> T {
    run_virtual(async {
        let start = trellis::now();
        let fut = Box::pin(nursery(async |n| {
            for s in 1..=3 {
                let guard = dropped.guard();
                n.spawn(async move {
                    sleep(secs(s)).await;
                    finished.set(finished.get() + 1);
                    guard.finish();
                });
            }
            Ok::<_, ()>("v")
        }));
        let out = timeout(fut).await;
        assert_eq!(trellis::now() - start, Duration::from_millis(1500));
        out
    })
}

#[test]
fn a_fail_after_around_a_nursery_whose_body_returned_reports_the_timeout() {
    let (finished, dropped) = (Cell::new(0), DropCounter::new());
    let out = sleepers_under_a_timeout(&finished, &dropped, async |fut| {
        trellis::fail_after(Duration::from_millis(1500), fut).await
    });
    assert!(out.is_err(), "a timeout reported as {out:?}");
    assert_eq!((finished.get(), dropped.dropped()), (1, 2));
}

#[test]
fn a_move_on_after_around_a_nursery_whose_body_returned_gives_none() {
    let (finished, dropped) = (Cell::new(0), DropCounter::new());
    let out = sleepers_under_a_timeout(&finished, &dropped, async |fut| {
        trellis::move_on_after(Duration::from_millis(1500), fut).await
    });
    assert_eq!(out, None);
    assert_eq!((finished.get(), dropped.dropped()), (1, 2));
}

#[test]
fn a_scope_cancelling_a_nursery_whose_body_returned_catches_the_cancellation() {
    let (finished, dropped) = (Cell::new(0), DropCounter::new());
    let (out, scope) = sleepers_under_a_timeout(&finished, &dropped, async |fut| {
        let scope =
            trellis::CancelScope::new().with_deadline(trellis::now() + Duration::from_millis(1500));
        (scope.clone().run(fut).await, scope)
    });
    assert_eq!(out, None);
    assert!(
        scope.cancel_called() && scope.cancelled_caught(),
        "{scope:?}"
    );
}

/// A nursery cancelled by the failure of an outer sibling, whose last child finishes in
/// the same instant, does not return: the code after it never runs on half-done work.
#[test]
fn a_nursery_cancelled_by_an_outer_siblings_failure_never_returns() {
    let next_line_ran = Cell::new(false);
    let group = run_virtual(async {
        nursery(async |outer| {
            outer.spawn(async {
                sleep(secs(1)).await;
                Err::<(), _>("outer sibling failed")
            });
            outer.spawn(async {
                let inner = nursery(async |n| {
                    n.spawn(async { sleep(secs(1)).await });
                    Ok::<_, &str>("half done")
                })
                .await;
                next_line_ran.set(true);
                inner.map(drop).map_err(|g| g.into_first())
            });
            Ok(())
        })
        .await
        .unwrap_err()
    });
    assert!(!next_line_ran.get(), "the caller's next line ran");
    assert_eq!(group.into_errors(), ["outer sibling failed"]);
}

/// Delivery at suspension points, for a nursery body: entered inside a cancelled scope,
/// a body that fails before suspending is reported, one that suspends is dropped there
/// (and the nursery never completes), and a nested scope that never awaits keeps its value.
#[test]
fn a_nursery_entered_in_a_cancelled_scope_runs_its_body_to_the_first_suspension() {
    let (ran, resumed) = (Cell::new(false), Cell::new(false));
    run_virtual(async {
        let scope = trellis::CancelScope::new();
        scope.cancel();
        match scope.run(nursery(async |_n| Err::<(), _>("at once"))).await {
            Some(Err(group)) => assert_eq!(group.into_errors(), ["at once"]),
            other => panic!("the body's error was lost: {other:?}"),
        }

        let scope = trellis::CancelScope::new();
        scope.cancel();
        let out = scope
            .clone()
            .run(nursery(async |_n| {
                ran.set(true);
                yield_now().await;
                resumed.set(true);
            }))
            .await;
        assert!(out.is_none());
        assert!(scope.cancelled_caught());

        let scope = trellis::CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async { trellis::CancelScope::new().run(async { 7 }).await })
            .await;
        assert_eq!(out, Some(Some(7)));
    });
    assert!(ran.get() && !resumed.get());
}

// ----- panics: caught in polls and destructors, resumed unchanged, nothing else lost -----

#[derive(Debug, PartialEq)]
struct Payload(u32);

/// An `Err` from one child and a panic (with a payload of its own type) from another: the
/// panic resumes with its payload unchanged.
#[test]
fn a_panic_beside_an_error_resumes_with_its_payload_unchanged() {
    let caught = std::panic::catch_unwind(|| {
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async { Err::<(), _>("disk full") });
                n.spawn(async {
                    if true {
                        std::panic::panic_any(Payload(7));
                    }
                    Ok(())
                });
                Ok(())
            })
            .await
        })
    });
    let payload = caught.expect_err("the panic must resume");
    assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(7)));
}

#[test]
#[should_panic(expected = "the original message")]
fn should_panic_expected_sees_the_original_message_beside_other_failures() {
    an_error_and_two_panics("the original message", "a second panic");
}

/// The failures beside a resumed panic are not dropped silently: they are written to
/// stderr, once, naming each task.
#[test]
fn the_failures_beside_a_resumed_panic_are_written_to_stderr() {
    let stderr = common::stderr_of_test("child_process_an_error_and_two_panics");
    assert!(
        stderr.contains(
            "trellis: a nursery resumes the panic of child 2; beside it, child 1 failed \
             with an error of type `&str`; child 3 panicked too: \"second\""
        ),
        "stderr was: {stderr}"
    );
    assert_eq!(stderr.matches("trellis: a nursery resumes").count(), 1);
}

#[test]
#[ignore = "run as a child process by the_failures_beside_a_resumed_panic_are_written_to_stderr"]
fn child_process_an_error_and_two_panics() {
    if !common::is_test_child() {
        return;
    }
    let _ = std::panic::catch_unwind(|| an_error_and_two_panics("first", "second"));
}

/// A nursery whose first child fails with an error, then two children panic.
fn an_error_and_two_panics(first: &'static str, second: &'static str) {
    let _ = run_virtual(async {
        nursery(async |n| {
            n.spawn(async { Err::<(), _>("an error first") });
            for message in [first, second] {
                n.spawn(async move {
                    if true {
                        panic!("{message}");
                    }
                    Ok(())
                });
            }
            Ok(())
        })
        .await
    });
}

/// A cancelled child whose destructor panics: the panic is that child's failure, caught;
/// a shielded sibling still finishes its clean-up; the panic resumes afterwards.
#[test]
fn a_panicking_destructor_is_its_childs_failure_and_shielded_siblings_still_finish() {
    let cleaned = Cell::new(false);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("first failure")
                });
                n.spawn(async {
                    let _p = common::PanicOnDrop("destructor exploded");
                    sleep_forever().await;
                    Ok(())
                });
                n.spawn(async {
                    trellis::shield(async {
                        sleep(secs(5)).await;
                        cleaned.set(true);
                    })
                    .await;
                    Ok(())
                });
                Ok(())
            })
            .await
        })
    }));
    let payload = caught.expect_err("the destructor's panic must resume");
    assert_eq!(common::panic_message(&*payload), "destructor exploded");
    assert!(cleaned.get(), "the shielded clean-up was cut short");
}

/// Two destructors panicking, in a cancellation and in a hard drop, and a hard drop while
/// the thread already unwinds: the process never aborts, the first panic resumes.
#[test]
fn panicking_destructors_never_abort_the_process() {
    let caught = std::panic::catch_unwind(|| {
        run_virtual(async {
            nursery(async |n| {
                for msg in ["one", "two"] {
                    n.spawn(async move {
                        let _p = common::PanicOnDrop(msg);
                        sleep_forever().await;
                        Ok(())
                    });
                }
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("cancels them")
                });
                Ok(())
            })
            .await
        })
    });
    assert_eq!(common::panic_message(&*caught.unwrap_err()), "one");

    let caught = std::panic::catch_unwind(|| {
        run_virtual(async {
            let fut = common::poll_once(nursery(async |n| {
                for msg in ["hard one", "hard two"] {
                    n.spawn(async move {
                        let _p = common::PanicOnDrop(msg);
                        sleep_forever().await;
                    });
                }
                sleep_forever().await;
            }))
            .await;
            drop(fut);
        })
    });
    assert_eq!(common::panic_message(&*caught.unwrap_err()), "hard one");

    let caught = std::panic::catch_unwind(|| {
        run_virtual(async {
            let _fut = common::poll_once(nursery(async |n| {
                n.spawn(async {
                    let _p = common::PanicOnDrop("while unwinding");
                    sleep_forever().await;
                });
                sleep_forever().await;
            }))
            .await;
            panic!("the root panicked");
        })
    });
    assert_eq!(
        common::panic_message(&*caught.unwrap_err()),
        "the root panicked"
    );
}

/// The body's destructor panicking while a child's failure cancels it is the body's
/// failure, resumed once the children are gone.
#[test]
fn a_panicking_destructor_of_the_body_is_the_bodys_failure() {
    let caught = std::panic::catch_unwind(|| {
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async { Err::<(), _>("cancels the body") });
                let _p = common::PanicOnDrop("body destructor");
                sleep_forever().await;
                Ok(())
            })
            .await
        })
    });
    assert_eq!(
        common::panic_message(&*caught.unwrap_err()),
        "body destructor"
    );
}

/// A child spawned (with a handle of its own, hence a reference cycle) by a sibling's
/// destructor while the nursery future is being dropped is dropped too, not leaked.
#[test]
fn a_child_spawned_by_a_destructor_during_a_hard_drop_is_dropped() {
    let counter = DropCounter::new();
    trellis::run(async {
        let counter = &counter;
        let fut = common::poll_once(nursery(async |n| {
            n.spawn_with(async move |n2| {
                let _g = common::OnDrop(move || {
                    let guard = counter.guard();
                    n2.spawn_with(async move |_n3| {
                        sleep_forever().await;
                        guard.finish();
                    });
                });
                sleep_forever().await;
            });
            sleep_forever().await;
        }))
        .await;
        drop(fut);
    });
    assert_eq!(counter.dropped(), 1, "the late child was leaked");
}

// ----- one child cancelled on its own -----

/// Cancelling one child drops it at its next suspension; the nursery and the siblings run
/// on, nothing fails, and the handle says the child was cancelled.
#[test]
fn cancelling_one_child_leaves_the_nursery_and_its_siblings_running() {
    let (dropped, sibling_done) = (DropCounter::new(), Cell::new(false));
    let out = run_virtual(async {
        let start = trellis::now();
        let out = nursery(async |n| {
            let guard = dropped.guard();
            let slow = n.spawn(async move {
                sleep(secs(3600)).await;
                guard.finish();
            });
            n.spawn(async {
                sleep(secs(2)).await;
                sibling_done.set(true);
            });
            sleep(secs(1)).await;
            slow.cancel();
            let err = slow.await.unwrap_err();
            assert!(err.is_cancelled(), "{err}");
            Ok::<_, ()>("body done")
        })
        .await;
        assert_eq!(trellis::now() - start, secs(2));
        out
    });
    assert_eq!(out, Ok("body done"));
    assert_eq!(dropped.dropped(), 1);
    assert!(sibling_done.get());
}

/// A child cancelled before its first poll still runs to its first suspension (the
/// delivery rule); cancelling a finished child changes nothing.
#[test]
fn a_child_cancelled_before_it_ran_runs_to_its_first_suspension() {
    let (ran, resumed) = (Cell::new(false), Cell::new(false));
    run_virtual(async {
        nursery(async |n| {
            let child = n.spawn(async {
                ran.set(true);
                yield_now().await;
                resumed.set(true);
            });
            child.cancel();
            child.cancel(); // idempotent
            assert!(child.await.unwrap_err().is_cancelled());

            let done = n.spawn(async { Ok(5) });
            yield_now().await;
            done.cancel();
            assert_eq!(done.await.unwrap(), 5);
        })
        .await
        .unwrap();
    });
    assert!(ran.get() && !resumed.get());
}

/// A cancelled child's shielded clean-up finishes first, while everything unshielded inside
/// the child — a nursery inside it included — is dropped at once, and `cancelled()` inside
/// the shield resolves; the code after the inner nursery never runs.
#[test]
fn cancelling_a_child_reaches_everything_inside_it_but_its_shields() {
    let record = common::watchdog(common::HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        run_virtual(async {
            let start = trellis::now();
            let record = &record;
            nursery(async |n| {
                let child = n.spawn(async move {
                    let inner = nursery(async |inner| {
                        inner.spawn(async move {
                            let _g = common::OnDrop(move || {
                                record.borrow_mut().push("grandchild dropped")
                            });
                            sleep_forever().await;
                        });
                        inner.spawn(trellis::shield(async move {
                            trellis::cancelled().await;
                            record.borrow_mut().push("shield saw the cancel");
                            sleep(secs(5)).await;
                            record.borrow_mut().push("shielded clean-up done");
                        }));
                        Ok::<_, ()>(())
                    })
                    .await;
                    record.borrow_mut().push("after the inner nursery");
                    inner.ok();
                });
                sleep(secs(1)).await;
                child.cancel();
                assert!(child.await.unwrap_err().is_cancelled());
                assert_eq!(trellis::now() - start, secs(6));
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(
        record,
        [
            "grandchild dropped",
            "shield saw the cancel",
            "shielded clean-up done"
        ]
    );
}

// ----- children and bodies that never return (their output type is `!`) -----

/// Names the output type of a future, for the types a nursery task may return. With
/// several impls the bound does not pick one, exactly as `TaskOutput` does not, so the
/// type is the one the never-type fallback chooses.
trait OutputName {
    const NAME: &'static str;
}
impl OutputName for () {
    const NAME: &'static str = "()";
}
impl OutputName for <fn() -> ! as HasOutput>::Output {
    const NAME: &'static str = "!";
}
trait HasOutput {
    type Output;
}
impl<O> HasOutput for fn() -> O {
    type Output = O;
}
fn output_name<F: std::future::Future>(_: &F) -> &'static str
where
    F::Output: OutputName,
{
    <F::Output as OutputName>::NAME
}

#[test]
fn a_loop_that_never_ends_has_output_never_in_edition_2024() {
    // Edition 2021 would give `()` here (its fallback for a diverging type).
    assert_eq!(
        output_name(&async {
            loop {
                yield_now().await
            }
        }),
        "!"
    );
    assert_eq!(output_name(&async { panic!("boom") }), "!");
    assert_eq!(output_name(&async { yield_now().await }), "()");
}

/// `!` for the tests' type checks (`Never` is how stable Rust names it).
type Never = <fn() -> ! as HasOutput>::Output;

#[test]
fn a_worker_that_loops_forever_is_a_child_and_a_failing_sibling_cancels_it() {
    let ticks = Cell::new(0);
    let drops = DropCounter::new();
    let out = run_virtual(async {
        nursery(async |n| {
            n.spawn(async {
                let _guard = drops.guard();
                loop {
                    sleep(secs(1)).await;
                    ticks.set(ticks.get() + 1);
                }
            });
            n.spawn(async {
                sleep(Duration::from_millis(3500)).await;
                Err::<(), _>(Oops("sibling"))
            });
            Ok(())
        })
        .await
    });
    assert_eq!(out.unwrap_err().into_errors(), [Oops("sibling")]);
    assert_eq!(ticks.get(), 3, "the worker ran until the sibling failed");
    assert_eq!(
        drops.dropped(),
        1,
        "the worker was dropped by the cancellation"
    );
}

#[test]
fn a_spawn_with_child_that_loops_forever_spawns_until_the_nursery_is_cancelled() {
    let spawned = Cell::new(0);
    let out = run_virtual(async {
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                n.spawn_with(async |n| {
                    loop {
                        n.spawn(async { spawned.set(spawned.get() + 1) });
                        sleep(secs(1)).await;
                    }
                });
                sleep(Duration::from_millis(3500)).await;
                scope.cancel();
            })
            .await
        })
        .await
    });
    assert!(
        out.is_none(),
        "the scope around caught the cancellation; nothing failed"
    );
    assert_eq!(spawned.get(), 4, "one spawn at 0 s, 1 s, 2 s and 3 s");
}

#[test]
fn a_body_that_ends_in_panic_resumes_its_panic_after_dropping_the_children() {
    let drops = DropCounter::new();
    let message = common::panic_message_of(|| {
        run_virtual(nursery(async |n| {
            n.spawn(async {
                let _guard = drops.guard();
                loop {
                    sleep(secs(1)).await;
                }
            });
            sleep(secs(2)).await;
            panic!("the body gave up")
        }))
    });
    assert_eq!(message, "the body gave up");
    assert_eq!(drops.dropped(), 1, "the looping child was dropped first");
}

#[test]
fn the_handle_of_a_child_that_never_returns_yields_never_and_reports_its_cancellation() {
    fn yields_never(_: &trellis::JoinHandle<'_, Never>) {}
    let seen = Cell::new(None);
    let group = run_virtual(async {
        nursery(async |n| {
            let forever = n.spawn(async {
                loop {
                    sleep(secs(1)).await;
                }
            });
            yields_never(&forever);
            n.spawn(async {
                sleep(secs(1)).await;
                Err::<(), _>(Oops("stop"))
            });
            trellis::shield(async {
                let Err(e) = forever.await;
                seen.set(Some((e.is_cancelled(), e.task())));
            })
            .await;
            Ok(())
        })
        .await
        .unwrap_err()
    });
    assert_eq!(group.len(), 1);
    assert_eq!(seen.get(), Some((true, TaskName::Child(1))));
}

#[test]
fn a_started_child_that_never_returns_serves_after_it_is_ready() {
    let served = Cell::new(0);
    let port = Cell::new(None);
    let out = run_virtual(async {
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                port.set(Some(
                    n.start(async |_n, status| {
                        status.started(8080_u16);
                        loop {
                            sleep(secs(1)).await;
                            served.set(served.get() + 1);
                        }
                    })
                    .await
                    .unwrap(),
                ));
                sleep(Duration::from_millis(2500)).await;
                scope.cancel();
                Ok::<_, Oops>(())
            })
            .await
        })
        .await
    });
    assert_eq!(out, None, "stopped by the scope around it");
    assert_eq!(port.get(), Some(8080));
    assert_eq!(served.get(), 2);
}
