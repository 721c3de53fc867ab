//! Behaviour of nurseries: ownership of children, failure handling, scheduling.

mod common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use common::{DropCounter, count_polls, run_virtual};
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
    assert_eq!(out, Ok(Some(42)));
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
            n.cancel();
        })
        .await
        .unwrap();
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
fn cancel_ends_the_nursery_early_and_cleanly() {
    let counter = DropCounter::new();
    let out = run_virtual(async {
        nursery(async |n| {
            for _ in 0..3 {
                let guard = counter.guard();
                n.spawn(async move {
                    sleep_forever().await;
                    guard.finish();
                });
            }
            sleep(Duration::from_secs(1)).await;
            n.cancel();
            sleep_forever().await;
            Ok::<_, Oops>(5)
        })
        .await
    });
    assert_eq!(out, Ok(None), "cancelled before the body returned a value");
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
        nursery(async |n| {
            n.cancel();
            n.spawn(count_polls(&polls, async {
                yield_now().await;
                resumed.set(true);
                Ok(())
            }));
            n.spawn(async { Err::<(), _>("failed before suspending") });
            Ok(())
        })
        .await
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
