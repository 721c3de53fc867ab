//! Adversarial programs: each test tries to break one promise of the docs (README.md,
//! ARCHITECTURE.md, the design notes and the API docs) in a shape the other behaviour
//! files do not already try: panics in destructors of every kind of value a nursery owns,
//! errors beside panics, timeouts racing shields and equal deadlines, wakers abused from
//! destructors and other threads, re-entrant destructors, hard drops, two runtimes, and
//! channels closed or cancelled at awkward moments.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{
    DropCounter, HANG_LIMIT, OnDrop, PanicOnDrop, panic_message, run_virtual, secs, watchdog,
};
use trellis::{
    CancelScope, RecvError, SendError, TryRecvError, channel, fail_after, fail_at, move_on_after,
    move_on_at, now, nursery, shield, sleep, sleep_forever, sleep_until, yield_now,
};

/// Runs `f` under `catch_unwind` and returns the message of the panic it must raise.
fn panic_of<T>(f: impl FnOnce() -> T) -> String {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but it returned"),
        Err(payload) => panic_message(&*payload),
    }
}

/// A future that parks once, handing its waker to `slot`, and completes at its next poll.
struct ParkOnce<'a> {
    slot: &'a RefCell<Option<Waker>>,
    parked: bool,
}

impl Future for ParkOnce<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        *self.slot.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn park_once(slot: &RefCell<Option<Waker>>) -> ParkOnce<'_> {
    ParkOnce {
        slot,
        parked: false,
    }
}

/// The waker of the current unit.
async fn current_waker() -> Waker {
    std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

// ----- panics in polls and destructors, of every value a nursery owns -----

/// A child whose shielded clean-up ends by dropping a value whose destructor panics: the
/// shield still runs to its end (the panic is raised there, not earlier), the panic is
/// that child's failure and resumes unchanged from the nursery once every unit is gone.
#[test]
fn a_destructor_panicking_at_the_end_of_a_shielded_child_resumes_after_the_shield() {
    let cleaned = Cell::new(false);
    let message = panic_of(|| {
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("cancels the shielded child")
                });
                n.spawn(async {
                    shield(async {
                        let _p = PanicOnDrop("shielded destructor");
                        sleep(secs(5)).await;
                        cleaned.set(true);
                    })
                    .await;
                    sleep_forever().await;
                    Ok(())
                });
                Ok(())
            })
            .await
        })
    });
    assert_eq!(message, "shielded destructor");
    assert!(cleaned.get(), "the shielded clean-up was cut short");
}

/// A child's *value* whose destructor panics, for a child nobody awaits (`start_soon`) and
/// for one whose handle was dropped: the panic is that child's failure, it cancels the
/// siblings and resumes from the nursery.
#[test]
fn a_childs_returned_value_panicking_when_dropped_is_that_childs_failure() {
    for with_handle in [false, true] {
        let sibling = DropCounter::new();
        let message = panic_of(|| {
            run_virtual(async {
                nursery(async |n| {
                    let guard = sibling.guard();
                    n.spawn(async move {
                        sleep_forever().await;
                        guard.finish();
                    });
                    let value = async {
                        sleep(secs(1)).await;
                        Ok(PanicOnDrop("a returned value"))
                    };
                    if with_handle {
                        drop(n.spawn(value));
                    } else {
                        n.start_soon(value);
                    }
                    Ok::<_, ()>(())
                })
                .await
            })
        });
        assert_eq!(message, "a returned value", "with a handle: {with_handle}");
        assert_eq!(sibling.dropped(), 1, "the sibling was not cancelled");
    }
}

/// A value held in a `JoinHandle` (the child finished, nobody took it) panics when the
/// body holding the handle is dropped by a sibling's failure: that is the body's failure;
/// the panic resumes and the sibling's error is not lost (it goes to stderr).
#[test]
fn a_join_handles_value_panicking_when_the_cancelled_body_drops_it_resumes() {
    let (status, stderr) =
        common::exit_of_test("child_process_a_join_handles_value_panics_in_the_body");
    assert!(status.success(), "the child process failed: {stderr}");
    assert!(
        stderr.contains(
            "trellis: a nursery resumes the panic of the nursery body; beside it, child 2 failed \
             with an error of type `&str`"
        ),
        "the sibling's error was lost: {stderr}"
    );
}

#[test]
#[ignore = "run as a child process by a_join_handles_value_panicking_when_the_cancelled_body_drops_it_resumes"]
fn child_process_a_join_handles_value_panics_in_the_body() {
    if !common::is_test_child() {
        return;
    }
    let message = panic_of(|| {
        run_virtual(async {
            nursery(async |n| {
                let handle = n.spawn(async { Ok(PanicOnDrop("a joined value")) });
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("the sibling's error")
                });
                yield_now().await;
                assert!(handle.is_finished());
                sleep_forever().await;
                drop(handle);
                Ok(())
            })
            .await
        })
    });
    assert_eq!(message, "a joined value");
}

/// A message whose destructor panics, dropped with the buffer when the last receiver goes:
/// the task that dropped the receiver fails with that panic (resumed from the nursery), and
/// a send that was waiting still gets its value back rather than hanging.
#[test]
fn a_buffered_message_panicking_when_the_last_receiver_drops_is_that_tasks_failure() {
    let (message, returned) = watchdog(HANG_LIMIT, || {
        let returned = Cell::new(false);
        let message = panic_of(|| {
            run_virtual(async {
                let (tx, rx) = channel::<Result<PanicOnDrop, u32>>(1);
                tx.try_send(Ok(PanicOnDrop("a buffered message"))).unwrap();
                let returned = &returned;
                let _ = nursery(async |n| {
                    n.spawn(async {
                        // Waits: the buffer is full.
                        let err = tx.send(Err(7)).await.unwrap_err();
                        assert!(matches!(err, SendError::Disconnected(Err(7))));
                        returned.set(true);
                        Ok(())
                    });
                    n.spawn(async move {
                        sleep(secs(1)).await;
                        drop(rx);
                        Ok::<_, ()>(())
                    });
                    Ok(())
                })
                .await;
            })
        });
        (message, returned.get())
    });
    assert_eq!(message, "a buffered message");
    assert!(returned, "the waiting send never got its value back");
}

// ----- errors are never lost beside panics -----

/// An error, a panic in a poll and a panic in a destructor in one nursery: the first panic
/// (in order of occurrence) resumes with its payload unchanged; the error and the second
/// panic are written to stderr once, naming their tasks.
#[test]
fn an_error_a_poll_panic_and_a_destructor_panic_are_all_accounted_for() {
    let (status, stderr) =
        common::exit_of_test("child_process_an_error_a_poll_panic_and_a_destructor_panic");
    assert!(status.success(), "the child process failed: {stderr}");
    assert!(
        stderr.contains(
            "trellis: a nursery resumes the panic of child 3; beside it, child 2 failed \
             with an error of type `&str`; child 1 panicked too: \"in a destructor\""
        ),
        "stderr was: {stderr}"
    );
    assert_eq!(stderr.matches("trellis: a nursery resumes").count(), 1);
}

#[test]
#[ignore = "run as a child process by an_error_a_poll_panic_and_a_destructor_panic_are_all_accounted_for"]
fn child_process_an_error_a_poll_panic_and_a_destructor_panic() {
    if !common::is_test_child() {
        return;
    }
    let message = panic_of(|| {
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    let _p = PanicOnDrop("in a destructor");
                    sleep_forever().await;
                    Ok(())
                });
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("an error")
                });
                n.spawn(async {
                    sleep(secs(1)).await;
                    if true {
                        panic!("in a poll");
                    }
                    Ok(())
                });
                Ok(())
            })
            .await
        })
    });
    assert_eq!(message, "in a poll");
}

/// After a timeout cancelled a nursery from outside, a child's shielded clean-up fails:
/// the error is not lost to the cancellation (the docs: "Errors that occurred are still
/// returned as `Err(group)`"), for `move_on_after` and for `fail_after` alike.
#[test]
fn an_error_raised_in_a_shield_after_an_outer_timeout_is_still_returned() {
    run_virtual(async {
        let start = now();
        let body = || {
            nursery(async |n| {
                n.spawn(async {
                    shield(async {
                        sleep(secs(2)).await;
                        Err::<(), _>("clean-up failed")
                    })
                    .await
                });
                sleep_forever().await;
                Ok(())
            })
        };
        let out = move_on_after(secs(1), body()).await;
        let group = out.expect("the error must not be swallowed by the timeout");
        assert_eq!(group.unwrap_err().into_errors(), ["clean-up failed"]);
        assert_eq!(now() - start, secs(2));

        let out = fail_after(secs(1), body()).await;
        let group = out.expect("an error is not a timeout");
        assert_eq!(group.unwrap_err().into_errors(), ["clean-up failed"]);
    });
}

/// A body that has returned a value when a child fails: the nursery gives the error, and
/// the body's value is dropped exactly once (not leaked, not returned).
#[test]
fn a_returned_bodys_value_is_dropped_once_when_a_child_fails_afterwards() {
    let value = DropCounter::new();
    let out = run_virtual(async {
        nursery(async |n| {
            n.spawn(async {
                sleep(secs(1)).await;
                Err::<(), _>("late failure")
            });
            Ok(value.guard())
        })
        .await
        .map(|_guard| ())
    });
    assert_eq!(out.unwrap_err().into_errors(), ["late failure"]);
    assert_eq!(value.dropped(), 1);
}

/// A body that has returned, whose nursery an outer timeout cancels, while a child's
/// destructor panics in that cancellation: the panic reaches the caller through the
/// timeout (it is not turned into `None`).
#[test]
fn a_destructor_panic_during_an_outer_timeout_reaches_the_caller() {
    let message = panic_of(|| {
        run_virtual(async {
            move_on_after(
                secs(1),
                nursery(async |n| {
                    n.spawn(async {
                        let _p = PanicOnDrop("dropped by the timeout");
                        sleep_forever().await;
                    });
                    Ok::<_, ()>("the body returned")
                }),
            )
            .await
        })
    });
    assert_eq!(message, "dropped by the timeout");
}

// ----- timeouts are never reported as success -----

/// A timeout whose deadline passes while the body is shielded: the shield finishes, and the
/// body's next suspension reports the timeout (`None`, `TimedOut`) at the instant the shield
/// ended. A body that completes right after the shield, without suspending again, keeps its
/// value (delivery at suspensions only: `CancelScope::run`'s docs).
#[test]
fn a_deadline_passing_inside_a_shield_is_reported_at_the_next_suspension() {
    run_virtual(async {
        let start = now();
        let after_shield = Cell::new(false);
        let out = move_on_after(secs(1), async {
            shield(sleep(secs(3))).await;
            after_shield.set(true);
            sleep(Duration::ZERO).await;
            "not a success"
        })
        .await;
        assert_eq!(out, None);
        assert!(after_shield.get());
        assert_eq!(now() - start, secs(3));

        let start = now();
        let out = fail_after(secs(1), async {
            shield(sleep(secs(3))).await;
            yield_now().await;
            "not a success"
        })
        .await;
        assert_eq!(out.unwrap_err().deadline(), start + secs(1));
        assert_eq!(now() - start, secs(3));

        // No suspension after the shield: the cancellation was never delivered.
        let scope = CancelScope::new().with_timeout(secs(1));
        let handle = scope.clone();
        let out = scope
            .run(async {
                shield(sleep(secs(3))).await;
                7
            })
            .await;
        assert_eq!(out, Some(7));
        assert!(handle.cancel_called());
        assert!(!handle.cancelled_caught());
    });
}

/// Nested timeouts expiring at the same instant where the inner one is a shielded scope
/// with its own deadline: the outer cancellation cannot reach through the shield, so the
/// inner scope catches its own deadline; the outer one then reports at the next
/// suspension. Neither reports success.
#[test]
fn equal_deadlines_across_a_shield_are_each_caught_by_their_own_scope() {
    run_virtual(async {
        let d = now() + secs(1);
        let inner = CancelScope::new().with_shield(true).with_deadline(d);
        let inner_handle = inner.clone();
        let outer = CancelScope::new().with_deadline(d);
        let outer_handle = outer.clone();
        let between = Cell::new(None);
        let out = outer
            .run(async {
                let got = inner.run(sleep_forever()).await;
                between.set(Some(got));
                sleep(Duration::ZERO).await;
                "not reached"
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(
            between.get(),
            Some(None),
            "the inner scope caught its deadline"
        );
        assert!(inner_handle.cancelled_caught());
        assert!(outer_handle.cancelled_caught());
        assert_eq!(now(), d);
    });
}

/// Nested `move_on_at` inside `fail_at` with the same deadline: the outer one reports, the
/// inner one never returns (its caller is dropped). Then the reverse nesting: `fail_at`
/// inside `move_on_at`, where the `TimedOut` must not escape as a value either.
#[test]
fn equal_nested_deadlines_of_mixed_kinds_are_reported_by_the_outer_scope() {
    run_virtual(async {
        let after_inner = Cell::new(false);
        let d = now() + secs(1);
        let out = fail_at(d, async {
            let inner = move_on_at(d, sleep_forever()).await;
            after_inner.set(true);
            inner
        })
        .await;
        assert_eq!(out.unwrap_err().deadline(), d);
        assert!(!after_inner.get());

        let d = now() + secs(1);
        let out = move_on_at(d, async {
            let inner = fail_at(d, sleep_forever()).await;
            after_inner.set(true);
            inner
        })
        .await;
        assert_eq!(out, None);
        assert!(!after_inner.get());
        assert_eq!(now(), d);
    });
}

/// A deadline moved around while the body waits, several times in one step, from a
/// sibling: only the last one counts; neither an earlier timer nor a later one fires.
#[test]
fn a_deadline_moved_back_and_forth_in_one_step_fires_only_at_the_last() {
    run_virtual(async {
        let start = now();
        let scope = CancelScope::new().with_deadline(start + secs(10));
        let handle = scope.clone();
        let out = nursery(async |n| {
            n.spawn(async move {
                sleep(secs(1)).await;
                handle.set_deadline(now() + secs(1));
                handle.set_deadline(now() + secs(100));
                handle.clear_deadline();
                handle.set_deadline(now() + secs(3));
            });
            Ok::<_, ()>(scope.run(sleep(secs(50))).await)
        })
        .await
        .unwrap();
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(4));
    });
}

/// A deadline moved into the past by the body itself, while it is shielded inside: the
/// scope's own deadline acts on the scope even though an inner shield runs, so the body is
/// dropped at its first suspension after the shield.
#[test]
fn a_deadline_moved_into_the_past_from_inside_a_shield_fires_after_it() {
    run_virtual(async {
        let start = now();
        let out = CancelScope::new()
            .run_with(async |scope| {
                shield(async {
                    scope.set_deadline(start);
                    sleep(secs(2)).await;
                })
                .await;
                sleep(secs(5)).await;
                "not reached"
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now() - start, secs(2));
    });
}

/// A receive under a timeout that expires in the same instant as the value arrives: either
/// the receive got it, or it timed out and the value is still in the channel. The value is
/// never consumed by a receive that reports a timeout.
#[test]
fn a_receive_timing_out_as_the_value_arrives_consumes_nothing() {
    for capacity in [0, 1] {
        for body_first in [true, false] {
            let ((got, sent), left) = run_virtual(async {
                let (tx, rx) = channel::<u32>(capacity);
                let d = now() + secs(1);
                nursery(async |n| {
                    let recv = async { Ok::<_, ()>(fail_at(d, rx.recv()).await) };
                    let send = async {
                        sleep_until(d).await;
                        Ok::<_, ()>(tx.try_send(5).is_ok())
                    };
                    let (got, sent) = if body_first {
                        let sent = n.spawn(send);
                        let got = recv.await?;
                        (got, sent.await.unwrap())
                    } else {
                        let got = n.spawn(recv);
                        let sent = send.await?;
                        (got.await.unwrap(), sent)
                    };
                    let left = rx.try_recv();
                    Ok::<_, ()>(((got, sent), left))
                })
                .await
                .unwrap()
            });
            match got {
                Ok(v) => {
                    assert_eq!(v, Ok(5));
                    assert_eq!(left, Err(TryRecvError::Empty));
                }
                Err(_) => {
                    if sent {
                        assert_eq!(left, Ok(5), "the value was consumed by a timed-out receive");
                    }
                }
            }
        }
    }
}

// ----- wakers: woken many times, from other threads, from destructors, after their task -----

/// One waker woken twenty thousand times (by reference, by clone, and from four other
/// threads) polls its child once more, not once per wake: a wake marks the unit ready.
#[test]
fn a_waker_woken_thousands_of_times_polls_its_child_once_more() {
    watchdog(HANG_LIMIT, || {
        let polls = Cell::new(0);
        let slot = RefCell::new(None);
        run_virtual(async {
            nursery(async |n| {
                n.spawn(common::count_polls(&polls, park_once(&slot)));
                yield_now().await;
                let waker: Waker = slot.borrow_mut().take().expect("the child parked");
                for _ in 0..10_000 {
                    waker.wake_by_ref();
                    #[allow(
                        clippy::waker_clone_wake,
                        reason = "a clone woken by value, on purpose"
                    )]
                    waker.clone().wake();
                }
                let threads: Vec<_> = (0..4)
                    .map(|_| {
                        let w = waker.clone();
                        std::thread::spawn(move || {
                            for _ in 0..1_000 {
                                w.wake_by_ref();
                            }
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().unwrap();
                }
                drop(waker);
                for _ in 0..3 {
                    yield_now().await;
                }
            })
            .await
            .unwrap();
        });
        assert_eq!(polls.get(), 2);
    });
}

/// A child whose destructor wakes its own waker many times and stashes clones of it, while
/// it is being cancelled: nothing is polled for those wakes, not the dropped child and not
/// a child spawned after it; the stashed clones, woken later, reach nobody either.
#[test]
fn a_waker_woken_and_cloned_by_its_own_childs_destructor_reaches_nobody() {
    struct WakeOnDrop<'a> {
        waker: Option<Waker>,
        stash: &'a RefCell<Vec<Waker>>,
    }
    impl Drop for WakeOnDrop<'_> {
        fn drop(&mut self) {
            let waker = self.waker.take().expect("set before the first suspension");
            for _ in 0..100 {
                waker.wake_by_ref();
                self.stash.borrow_mut().push(waker.clone());
            }
            waker.wake();
        }
    }
    let stash = RefCell::new(Vec::new());
    let later_polls = Cell::new(0);
    let slot = RefCell::new(None);
    run_virtual(async {
        nursery(async |n| {
            let doomed = n.spawn(async {
                let _w = WakeOnDrop {
                    waker: Some(current_waker().await),
                    stash: &stash,
                };
                sleep_forever().await;
            });
            yield_now().await;
            doomed.cancel();
            assert!(doomed.await.unwrap_err().is_cancelled());
            assert_eq!(stash.borrow().len(), 100, "the destructor ran");
            n.spawn(common::count_polls(&later_polls, park_once(&slot)));
            yield_now().await;
            assert_eq!(later_polls.get(), 1);
            for w in stash.borrow_mut().drain(..) {
                w.wake();
            }
            yield_now().await;
            yield_now().await;
            assert_eq!(later_polls.get(), 1, "a stale waker polled a later child");
            slot.borrow_mut().take().unwrap().wake();
        })
        .await
        .unwrap();
    });
    assert_eq!(later_polls.get(), 2);
}

/// Another thread keeps waking a child's waker while the nursery that owns the child is
/// dropped from outside, and while the next nursery runs in its place: harmless, and the
/// next nursery's children are polled only for their own wakes.
#[test]
fn a_waker_hammered_from_another_thread_across_a_hard_drop_is_harmless() {
    watchdog(HANG_LIMIT, || {
        let shared: Arc<Mutex<Option<Waker>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let wakes = Arc::new(AtomicUsize::new(0));
        let hammer = {
            let (shared, stop, wakes) = (shared.clone(), stop.clone(), wakes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(w) = shared.lock().unwrap().as_ref() {
                        w.wake_by_ref();
                        wakes.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::yield_now();
                }
            })
        };
        let polls = Cell::new(0);
        let slot = RefCell::new(None);
        trellis::run(async {
            let fut = common::poll_once(nursery(async |n| {
                let shared = shared.clone();
                n.spawn(async move {
                    *shared.lock().unwrap() = Some(current_waker().await);
                    sleep_forever().await;
                });
                sleep_forever().await;
            }))
            .await;
            // Until the other thread has woken the child's waker a few times.
            while wakes.load(Ordering::Relaxed) < 100 {
                yield_now().await;
            }
            drop(fut);
            nursery(async |n| {
                n.spawn(common::count_polls(&polls, park_once(&slot)));
                let start = wakes.load(Ordering::Relaxed);
                while wakes.load(Ordering::Relaxed) < start + 100 {
                    yield_now().await;
                }
                assert_eq!(
                    polls.get(),
                    1,
                    "the hammered stale waker polled a new child"
                );
                slot.borrow_mut().take().unwrap().wake();
            })
            .await
            .unwrap();
        });
        stop.store(true, Ordering::Relaxed);
        hammer.join().unwrap();
        assert_eq!(polls.get(), 2);
    });
}

/// A waker kept from a child of one runtime, woken from another thread while the next
/// runtime on the same thread runs (its nursery parts recycled from the same pool): it
/// never polls a child of the new runtime.
#[test]
fn a_waker_from_an_earlier_runtime_never_polls_a_child_of_the_next() {
    watchdog(HANG_LIMIT, || {
        let stale: Arc<Mutex<Option<Waker>>> = Arc::default();
        run_virtual(async {
            nursery(async |n| {
                let stale = stale.clone();
                n.spawn(async move {
                    *stale.lock().unwrap() = Some(current_waker().await);
                    yield_now().await;
                });
            })
            .await
            .unwrap();
        });
        let polls = Cell::new(0);
        let slot = RefCell::new(None);
        run_virtual(async {
            nursery(async |n| {
                n.spawn(common::count_polls(&polls, park_once(&slot)));
                yield_now().await;
                assert_eq!(polls.get(), 1);
                let waker = stale.lock().unwrap().take().unwrap();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        waker.wake_by_ref();
                    }
                })
                .join()
                .unwrap();
                yield_now().await;
                yield_now().await;
                assert_eq!(
                    polls.get(),
                    1,
                    "a waker of the earlier runtime polled this child"
                );
                slot.borrow_mut().take().unwrap().wake();
            })
            .await
            .unwrap();
        });
        assert_eq!(polls.get(), 2);
    });
}

// ----- two runtimes at once, one after another -----

/// Two runtimes on two threads at once, whose tasks wake each other's tasks: each task is
/// woken by the other runtime a hundred times, and every wake gets through.
#[test]
fn two_runtimes_on_two_threads_wake_each_others_tasks() {
    watchdog(HANG_LIMIT, || {
        const ROUNDS: usize = 100;
        // Each side publishes the waker of its waiting child and the round it waits for.
        type Mailbox = Arc<Mutex<Option<Waker>>>;
        let boxes: [Mailbox; 2] = Default::default();
        let counters: Arc<[AtomicUsize; 2]> = Arc::default();
        let side = |me: usize| {
            let boxes = boxes.clone();
            let counters = counters.clone();
            std::thread::spawn(move || {
                trellis::run(async {
                    nursery(async |n| {
                        for child in 0..3 {
                            let (boxes, counters) = (&boxes, &counters);
                            n.spawn(async move {
                                if child > 0 {
                                    // Bystanders that only sleep on the real clock's timers.
                                    move_on_after(Duration::from_millis(1), sleep_forever()).await;
                                    return;
                                }
                                for round in 0..ROUNDS {
                                    // Wait until the other side has reached this round.
                                    std::future::poll_fn(|cx| {
                                        if counters[1 - me].load(Ordering::SeqCst) >= round {
                                            Poll::Ready(())
                                        } else {
                                            *boxes[me].lock().unwrap() = Some(cx.waker().clone());
                                            // Checked again: the other side may have moved on
                                            // before it could see this waker.
                                            if counters[1 - me].load(Ordering::SeqCst) >= round {
                                                Poll::Ready(())
                                            } else {
                                                Poll::Pending
                                            }
                                        }
                                    })
                                    .await;
                                    counters[me].store(round + 1, Ordering::SeqCst);
                                    if let Some(w) = boxes[1 - me].lock().unwrap().take() {
                                        w.wake();
                                    }
                                    yield_now().await;
                                }
                            });
                        }
                    })
                    .await
                    .unwrap();
                });
            })
        };
        let (a, b) = (side(0), side(1));
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(counters[0].load(Ordering::SeqCst), ROUNDS);
        assert_eq!(counters[1].load(Ordering::SeqCst), ROUNDS);
    });
}

/// A nursery future polled in one runtime (a child sleeping on that runtime's timer) and
/// dropped inside the next runtime on the same thread leaves the new runtime's timers and
/// scopes alone (ARCHITECTURE.md: "What belongs to one runtime says so"); a sleep armed in
/// the first runtime and polled in the second panics with a clear message.
#[test]
fn a_nursery_left_behind_by_one_runtime_is_dropped_harmlessly_inside_the_next() {
    watchdog(HANG_LIMIT, || {
        let children = DropCounter::new();
        let (leftover, mut armed) = run_virtual(async {
            let children = children.clone();
            let fut = common::poll_once(nursery(async move |n| {
                for s in 1..=3 {
                    let guard = children.guard();
                    n.spawn(async move {
                        move_on_after(secs(s), sleep(secs(10 * s))).await;
                        guard.finish();
                    });
                }
                sleep(secs(7)).await;
            }))
            .await;
            let mut armed = Box::pin(sleep(secs(2)));
            common::poll_once(armed.as_mut()).await;
            (fut, armed)
        });
        let waited = run_virtual(async {
            let start = now();
            // The new runtime's own timers and scopes, armed before the drop.
            let mine = Box::pin(sleep(secs(5)));
            let mine = common::poll_once(mine).await;
            let out = move_on_after(secs(3), async {
                drop(leftover);
                sleep_forever().await;
            })
            .await;
            assert_eq!(out, None);
            assert_eq!(now() - start, secs(3));
            Pin::into_inner(mine).await;
            now() - start
        });
        assert_eq!(waited, secs(5));
        assert_eq!(
            children.dropped(),
            3,
            "the left-behind children were not dropped"
        );
        let message = panic_of(|| run_virtual(async { armed.as_mut().await }));
        assert!(
            message.contains("runtime"),
            "a foreign sleep's panic should say why: {message}"
        );
    });
}

// ----- no sequence of panics aborts the process -----

/// The body returned a value whose destructor panics, a child's destructor panics too, and
/// the nursery future is dropped from outside: the docs promise that no sequence of panics
/// aborts the process, and that the first caught panic resumes from the drop.
#[test]
fn a_hard_drop_with_a_panicking_child_and_a_panicking_returned_value_does_not_abort() {
    assert_resumed_beside_the_values_panic(
        "child_process_a_hard_drop_with_a_panicking_child_and_value",
        "a child's destructor",
    );
}

/// Runs `child` in a child process: it must exit normally having caught the panic
/// `resumed`, with the body's value's own panic reported beside it on stderr.
fn assert_resumed_beside_the_values_panic(child: &str, resumed: &str) {
    let (status, stderr) = common::exit_of_test(child);
    assert!(
        status.success(),
        "the process aborted ({status}); stderr: {stderr}"
    );
    assert!(stderr.contains(&format!("resumed: {resumed}")), "{stderr}");
    assert!(
        stderr.contains("the nursery body panicked too: \"the body's value\""),
        "the value's own panic was lost: {stderr}"
    );
}

#[test]
#[ignore = "run as a child process by a_hard_drop_with_a_panicking_child_and_a_panicking_returned_value_does_not_abort"]
fn child_process_a_hard_drop_with_a_panicking_child_and_value() {
    if !common::is_test_child() {
        return;
    }
    let message = panic_of(|| {
        run_virtual(async {
            let fut = common::poll_once(nursery(async |n| {
                n.spawn(async {
                    let _p = PanicOnDrop("a child's destructor");
                    sleep_forever().await;
                });
                Ok::<_, ()>(PanicOnDrop("the body's value"))
            }))
            .await;
            drop(fut);
        })
    });
    eprintln!("resumed: {message}");
}

/// The body returned a value whose destructor panics, then a child panics: the child's
/// panic resumes from the nursery, and the body's value (never returned) must not turn it
/// into an abort.
#[test]
fn a_child_panic_after_the_body_returned_a_panicking_value_does_not_abort() {
    assert_resumed_beside_the_values_panic(
        "child_process_a_child_panic_after_a_panicking_value",
        "the child's panic",
    );
}

#[test]
#[ignore = "run as a child process by a_child_panic_after_the_body_returned_a_panicking_value_does_not_abort"]
fn child_process_a_child_panic_after_a_panicking_value() {
    if !common::is_test_child() {
        return;
    }
    let message = panic_of(|| {
        run_virtual(async {
            let _ = nursery(async |n| {
                n.spawn(async {
                    sleep(secs(1)).await;
                    if true {
                        panic!("the child's panic");
                    }
                });
                Ok::<_, ()>(PanicOnDrop("the body's value"))
            })
            .await;
        })
    });
    eprintln!("resumed: {message}");
}

// ----- re-entrancy: destructors that spawn, cancel, wake -----

/// A child's destructor spawns a sibling while a failure cancels the nursery: the late
/// child runs to its first suspension (a child spawned into a cancelled nursery does, as
/// every unit), is dropped there, and the failure is reported once.
#[test]
fn a_destructor_spawning_during_a_cancellation_runs_the_new_child_to_its_first_suspension() {
    let (errors, started, dropped, finished) = watchdog(HANG_LIMIT, || {
        let started = Cell::new(false);
        let late = DropCounter::new();
        let errors = run_virtual(async {
            nursery(async |n| {
                let (started, late) = (&started, &late);
                n.spawn_with(async move |n2| {
                    let _g = OnDrop(move || {
                        let guard = late.guard();
                        n2.spawn(async move {
                            started.set(true);
                            sleep_forever().await;
                            guard.finish();
                            Ok(())
                        });
                    });
                    sleep_forever().await;
                    Ok(())
                });
                n.spawn(async {
                    sleep(secs(1)).await;
                    Err::<(), _>("boom")
                });
                Ok(())
            })
            .await
            .unwrap_err()
            .into_errors()
        });
        (errors, started.get(), late.dropped(), late.finished())
    });
    assert_eq!(errors, ["boom"]);
    assert!(started, "the late child never ran");
    assert_eq!((dropped, finished), (1, 0));
}

/// A child's destructor cancels the scope around its own nursery, while the nursery drops
/// it (the child was cancelled alone): no re-entrant borrow panics; the scope catches the
/// cancellation and everything ends at that instant.
#[test]
fn a_destructor_cancelling_the_enclosing_scope_while_being_dropped_ends_everything() {
    let (out, caught, elapsed) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let scope = CancelScope::new();
            let handle = scope.clone();
            let out = scope
                .run_with(async |scope| {
                    nursery(async |n| {
                        let s = scope.clone();
                        let victim = n.spawn(async move {
                            let _g = OnDrop(move || s.cancel());
                            sleep_forever().await;
                        });
                        n.spawn(sleep(secs(100)));
                        sleep(secs(1)).await;
                        victim.cancel();
                        sleep(secs(100)).await;
                        Ok::<_, ()>(())
                    })
                    .await
                })
                .await;
            (out, handle.cancelled_caught(), now() - start)
        })
    });
    assert_eq!(out, None);
    assert!(caught);
    assert_eq!(elapsed, secs(1));
}

/// The body's destructor wakes the body's own (retired) waker, cancels a sibling through
/// its handle and moves the deadline of the scope around the nursery to now, all while a
/// sibling's failure drops it: no panic, no hang, and the failure is still returned.
#[test]
fn a_body_destructor_that_wakes_itself_cancels_a_sibling_and_moves_a_deadline() {
    let (out, sibling_dropped) = watchdog(HANG_LIMIT, || {
        let sibling = DropCounter::new();
        let out = run_virtual(async {
            CancelScope::new()
                .run_with(async |scope| {
                    nursery(async |n| {
                        let guard = sibling.guard();
                        let other = n.spawn(async move {
                            sleep_forever().await;
                            guard.finish();
                            Ok(())
                        });
                        n.spawn(async {
                            sleep(secs(1)).await;
                            Err::<(), _>("boom")
                        });
                        let waker = current_waker().await;
                        let _g = OnDrop(move || {
                            for _ in 0..10 {
                                waker.wake_by_ref();
                            }
                            other.cancel();
                            scope.set_deadline(now());
                        });
                        sleep_forever().await;
                        Ok(())
                    })
                    .await
                    .map_err(|g| g.into_errors())
                })
                .await
        });
        (out, sibling.dropped())
    });
    assert_eq!(out, Some(Err(vec!["boom"])));
    assert_eq!(sibling_dropped, 1);
}

/// A child cancels the scope enclosing its own nursery and then awaits: it is dropped at
/// that await (nothing after it runs), a shielded sibling finishes its clean-up first and
/// is dropped at its next suspension, and the scope (not the nursery) reports it.
#[test]
fn a_child_cancelling_its_nurserys_enclosing_scope_then_awaiting_is_dropped_there() {
    let (out, after, cleaned, after_shield, elapsed) = watchdog(HANG_LIMIT, || {
        let (after, cleaned, after_shield) = (Cell::new(false), Cell::new(false), Cell::new(false));
        let (out, elapsed) = run_virtual(async {
            let start = now();
            let out = trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    let (after, cleaned, after_shield) = (&after, &cleaned, &after_shield);
                    n.spawn(async {
                        shield(async {
                            sleep(secs(2)).await;
                            cleaned.set(true);
                        })
                        .await;
                        sleep(secs(1)).await;
                        after_shield.set(true);
                    });
                    let scope = &scope;
                    n.spawn(async move {
                        scope.cancel();
                        sleep(secs(1)).await;
                        after.set(true);
                    });
                    Ok::<_, ()>(7) // the body has returned
                })
                .await
            })
            .await;
            (out, now() - start)
        });
        (out, after.get(), cleaned.get(), after_shield.get(), elapsed)
    });
    assert_eq!(out, None, "a cancelled nursery completed with a value");
    assert!(!after, "code after the cancelling child's await ran");
    assert!(cleaned && !after_shield);
    assert_eq!(elapsed, secs(2));
}

// ----- hard drops: select!, dropping after one poll -----

/// `futures::select!` drops a nursery whose child's destructor panics, beside a shielded
/// child: the hard drop goes through the shield (documented), and the destructor's panic
/// resumes from the drop rather than being lost.
#[test]
fn select_dropping_a_nursery_resumes_a_destructor_panic_and_ignores_shields() {
    use futures::FutureExt;
    let (message, dropped, finished) = watchdog(HANG_LIMIT, || {
        let cleanup = DropCounter::new();
        let message = panic_of(|| {
            run_virtual(async {
                let cleanup = &cleanup;
                let work = nursery(async |n| {
                    n.spawn(async {
                        let _p = PanicOnDrop("hard-dropped destructor");
                        sleep_forever().await;
                    });
                    n.spawn(async move {
                        let guard = cleanup.guard();
                        shield(sleep(secs(10))).await;
                        guard.finish();
                    });
                    sleep_forever().await;
                })
                .fuse();
                let mut work = std::pin::pin!(work);
                futures::select! {
                    _ = work => unreachable!("the nursery never finishes"),
                    () = sleep(secs(1)) => {}
                }
            })
        });
        (message, cleanup.dropped(), cleanup.finished())
    });
    assert_eq!(message, "hard-dropped destructor");
    assert_eq!((dropped, finished), (1, 0));
}

/// A nursery dropped from outside after one poll while its children hold a lock, wait in
/// a receive and wait in a send: the lock is free again, the dropped receive claimed
/// nothing, the dropped send's value was dropped undelivered, and the channel works on.
#[test]
fn a_hard_drop_releases_locks_and_channel_waiters_and_loses_nothing_else() {
    let (received, leftover) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let lock = trellis::Lock::new(());
            let (tx, rx) = channel::<u32>(0);
            let (full_tx, full_rx) = channel::<u32>(1);
            full_tx.try_send(1).unwrap();
            let fut = common::poll_once(nursery(async |n| {
                n.spawn(async {
                    let _g = lock.lock().await;
                    sleep_forever().await;
                });
                n.spawn(async {
                    let _ = rx.recv().await;
                });
                n.spawn(async {
                    let _ = full_tx.send(2).await;
                });
                sleep_forever().await;
            }))
            .await;
            assert!(lock.is_locked());
            assert_eq!(rx.statistics().waiting_receivers, 1);
            drop(fut);
            assert!(!lock.is_locked(), "the lock was not released");
            assert_eq!(rx.statistics().waiting_receivers, 0);
            assert_eq!(full_rx.statistics().waiting_senders, 0);
            // A rendezvous with nobody waiting: the dropped receive must not take it.
            assert!(tx.try_send(9).is_err());
            let received = nursery(async |n| {
                n.spawn(async {
                    tx.send(10).await.unwrap();
                });
                Ok::<_, ()>(rx.recv().await)
            })
            .await
            .unwrap();
            let leftover = (full_rx.try_recv(), full_rx.try_recv());
            (received, leftover)
        })
    });
    assert_eq!(received, Ok(10));
    assert_eq!(leftover, (Ok(1), Err(TryRecvError::Empty)));
}

/// A timeout dropped from outside (by `select!`) before its deadline: its timer never
/// fires into anything later, and a later scope with the same deadline is unaffected.
#[test]
fn a_timeout_dropped_by_select_before_its_deadline_leaves_nothing_behind() {
    use futures::FutureExt;
    watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let start = now();
            let d = start + secs(5);
            let dropped = Cell::new(false);
            {
                let timed = move_on_at(d, async {
                    let _g = OnDrop(|| dropped.set(true));
                    sleep_forever().await;
                });
                futures::select! {
                    _ = timed.fuse() => unreachable!(),
                    () = sleep(secs(1)) => {}
                }
            }
            assert!(dropped.get());
            // The same deadline, on a scope whose body finishes just after it.
            let later = CancelScope::new().with_deadline(d + secs(1));
            let handle = later.clone();
            let out = later
                .run(async {
                    sleep_until(d).await;
                    sleep(Duration::ZERO).await;
                    "fine"
                })
                .await;
            assert_eq!(out, Some("fine"));
            assert!(!handle.cancel_called());
            assert_eq!(now(), d);
        });
    });
}

// ----- channels: closes and drops in every order, cancelled receives take nothing -----

/// Polls `fut` once, where it must suspend.
async fn suspend_once<F: Future>(fut: Pin<&mut F>) {
    let mut fut = fut;
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "it should wait");
        Poll::Ready(())
    })
    .await;
}

/// Closing a sending handle while its own send waits (the buffer is full) returns that
/// value as `Closed`; a clone's waiting send is untouched and is delivered next, in order.
#[test]
fn closing_a_handle_during_its_blocked_send_returns_the_value_and_spares_the_clone() {
    let (closed, got) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let (tx, rx) = channel::<u32>(1);
            let clone = tx.clone();
            tx.try_send(0).unwrap();
            nursery(async |n| {
                let first = n.spawn(async { Ok::<_, ()>(tx.send(1).await) });
                n.spawn(async {
                    clone.send(2).await.unwrap();
                    drop(clone);
                });
                sleep(secs(1)).await;
                assert_eq!(rx.statistics().waiting_senders, 2);
                tx.close();
                let closed = first.await.unwrap();
                let mut got = Vec::new();
                while let Ok(v) = rx.recv().await {
                    got.push(v);
                }
                Ok::<_, ()>((closed, got))
            })
            .await
            .unwrap()
        })
    });
    assert!(matches!(closed, Err(SendError::Closed(1))), "{closed:?}");
    assert_eq!(got, [0, 2]);
}

/// A value handed to a waiting receive, then the last sender closes, then that receive is
/// dropped before it ran: the value must not be lost behind an end-of-stream. Either the
/// other waiting receive gets it, or end-of-stream comes only after it (the `channel` docs:
/// "receivers then take what is buffered, then see end-of-stream"; "nothing is lost").
#[test]
fn a_value_handed_to_a_dropped_receive_after_the_last_sender_closed_is_not_lost() {
    let (second, then) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let (tx, rx) = channel::<u32>(0);
            let other = rx.clone();
            let mut first = Box::pin(rx.recv());
            suspend_once(first.as_mut()).await;
            let mut second = Box::pin(other.recv());
            suspend_once(second.as_mut()).await;
            tx.try_send(5).unwrap(); // handed to `first`, which has not run since
            drop(tx); // the last sender
            drop(first); // gives its value up
            let second = second.await;
            (second, other.try_recv())
        })
    });
    match second {
        Ok(v) => {
            assert_eq!(v, 5);
            assert_eq!(then, Err(TryRecvError::Disconnected));
        }
        Err(e) => panic!(
            "the waiting receive saw {e:?} while the value was still in the channel \
             (a later try_recv gives {then:?}): a `while let Ok(v) = rx.recv().await` loop \
             would end and lose it"
        ),
    }
}

/// Tracks which values were dropped without being consumed.
struct Tracked<'a> {
    id: u32,
    dropped: &'a RefCell<Vec<u32>>,
}

impl Tracked<'_> {
    fn consume(self) -> u32 {
        let this = std::mem::ManuallyDrop::new(self);
        this.id
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.dropped.borrow_mut().push(self.id);
    }
}

/// Both receivers dropped, in either order, while two sends wait and a value is buffered;
/// then both senders dropped, in either order, while two receives wait: the waits continue
/// until the last handle of the other side goes; then every waiting send gets its own value
/// back, the buffered value is dropped once, and every receive sees end-of-stream.
#[test]
fn handles_dropped_in_every_order_while_the_other_side_waits_lose_and_duplicate_nothing() {
    for order in [[0, 1], [1, 0]] {
        watchdog(HANG_LIMIT, move || {
            let dropped = RefCell::new(Vec::new());
            let back = RefCell::new(Vec::new());
            run_virtual(async {
                let track = |id| Tracked {
                    id,
                    dropped: &dropped,
                };
                let (tx, rx) = channel::<Tracked<'_>>(1);
                let tx2 = tx.clone();
                tx.try_send(track(0)).unwrap();
                let mut receivers = [Some(rx.clone()), Some(rx)];
                nursery(async |n| {
                    for (s, id) in [(&tx, 1), (&tx2, 2)] {
                        let (back, v) = (&back, track(id));
                        n.spawn(async move {
                            match s.send(v).await {
                                Err(SendError::Disconnected(v)) => {
                                    back.borrow_mut().push(v.consume())
                                }
                                other => {
                                    panic!("{:?}", other.map_err(|e| e.into_inner().consume()))
                                }
                            }
                        });
                    }
                    sleep(secs(1)).await;
                    receivers[order[0]].take();
                    sleep(secs(1)).await;
                    assert_eq!(tx.statistics().waiting_senders, 2, "one receiver is left");
                    assert!(back.borrow().is_empty());
                    receivers[order[1]].take();
                })
                .await
                .unwrap();
                assert_eq!(
                    *dropped.borrow(),
                    [0],
                    "the buffered value is dropped, once"
                );
                let mut back = back.borrow().clone();
                back.sort();
                assert_eq!(back, [1, 2], "each waiting send got its own value back");

                let (tx, rx) = channel::<Tracked<'_>>(0);
                let mut senders = [Some(tx.clone()), Some(tx)];
                let ends = nursery(async |n| {
                    let waiting: Vec<_> = (0..2)
                        .map(|_| {
                            let rx = rx.clone();
                            n.spawn(
                                async move { Ok::<_, ()>(rx.recv().await.map(Tracked::consume)) },
                            )
                        })
                        .collect();
                    sleep(secs(1)).await;
                    senders[order[0]].take();
                    sleep(secs(1)).await;
                    assert_eq!(rx.statistics().waiting_receivers, 2, "one sender is left");
                    senders[order[1]].take();
                    let mut ends = Vec::new();
                    for w in waiting {
                        ends.push(w.await.unwrap());
                    }
                    Ok::<_, ()>(ends)
                })
                .await
                .unwrap();
                assert_eq!(
                    ends,
                    [Err(RecvError::Disconnected), Err(RecvError::Disconnected)]
                );
            });
        });
    }
}

/// Receives cancelled in every way a nursery cancels (a sibling's failure in an inner
/// nursery, `JoinHandle::cancel`, a timeout, an outer scope cancelled from a sibling),
/// while a producer that is never cancelled sends 0..300 on channels of several
/// capacities: every value is received exactly once, counting what is left at the end.
#[test]
fn cancelled_receives_in_every_shape_never_consume_or_duplicate_a_message() {
    for capacity in [0, 1, 3] {
        watchdog(HANG_LIMIT, move || {
            const N: u32 = 300;
            let got = RefCell::new(Vec::new());
            let rounds = Cell::new(0u64);
            run_virtual(async {
                let (tx, rx) = channel::<u32>(capacity);
                nursery(async |n| {
                    let (got, rounds) = (&got, &rounds);
                    n.spawn(async move {
                        for i in 0..N {
                            tx.send(i).await.unwrap();
                            sleep(Duration::from_millis(u64::from(i % 3))).await;
                        }
                    });
                    for shape in 0..4u64 {
                        let rx = rx.clone();
                        n.spawn(async move {
                            let ended = Cell::new(false);
                            let recv_into = async || match rx.recv().await {
                                Ok(v) => got.borrow_mut().push(v),
                                Err(_) => ended.set(true),
                            };
                            let mut round = 0u64;
                            while !ended.get() {
                                round += 1;
                                rounds.set(rounds.get() + 1);
                                let ms = Duration::from_millis((round * 7 + shape) % 4);
                                match shape {
                                    // A sibling fails `ms` later, cancelling the receive.
                                    0 => {
                                        let _ = nursery(async |inner| {
                                            inner.spawn(async move {
                                                sleep(ms).await;
                                                Err::<(), _>("stop")
                                            });
                                            recv_into().await;
                                            Ok(())
                                        })
                                        .await;
                                    }
                                    // The receive's task is cancelled through its handle.
                                    1 => nursery(async |inner| {
                                        let h = inner.spawn(recv_into());
                                        sleep(ms).await;
                                        h.cancel();
                                        let _ = h.await;
                                    })
                                    .await
                                    .unwrap(),
                                    // A plain timeout.
                                    2 => {
                                        let _ = move_on_after(ms, recv_into()).await;
                                    }
                                    // An outer scope, cancelled by a sibling of the receive.
                                    _ => {
                                        let _ = CancelScope::new()
                                            .run_with(async |scope| {
                                                nursery(async |inner| {
                                                    inner.spawn(async move {
                                                        sleep(ms).await;
                                                        scope.cancel();
                                                    });
                                                    recv_into().await;
                                                })
                                                .await
                                                .unwrap();
                                            })
                                            .await;
                                    }
                                }
                            }
                        });
                    }
                })
                .await
                .unwrap();
                while let Ok(v) = rx.try_recv() {
                    got.borrow_mut().push(v);
                }
            });
            assert!(
                rounds.get() > u64::from(N) + 20,
                "capacity {capacity}: too few receives were cancelled ({} rounds)",
                rounds.get()
            );
            let mut got = got.into_inner();
            got.sort_unstable();
            let expected: Vec<u32> = (0..N).collect();
            assert_eq!(
                got, expected,
                "capacity {capacity}: lost or duplicated values"
            );
        });
    }
}

// ----- more races at one instant, `start`, context in destructors -----

/// A child fails at exactly the instant a timeout around its nursery expires: the failure
/// is not lost to the timeout (`nursery()` docs: "Errors that occurred are still returned
/// as `Err(group)`"), whichever timer was armed first.
#[test]
fn a_child_failing_at_the_instant_an_outer_timeout_expires_is_not_lost() {
    for child_armed_first in [false, true] {
        let out = watchdog(HANG_LIMIT, move || {
            run_virtual(async {
                let d = now() + secs(1);
                let work = || {
                    nursery(async |n| {
                        n.spawn(async move {
                            sleep_until(d).await;
                            Err::<(), _>("failed at the deadline")
                        });
                        sleep_forever().await;
                        Ok(())
                    })
                };
                let out = if child_armed_first {
                    let mut w = Box::pin(work());
                    suspend_once(w.as_mut()).await;
                    move_on_at(d, w).await
                } else {
                    move_on_at(d, work()).await
                };
                out.map(|r| r.map_err(|g| g.into_errors()))
            })
        });
        assert_eq!(
            out,
            Some(Err(vec!["failed at the deadline"])),
            "child armed first: {child_armed_first}"
        );
    }
}

/// A shield that ends exactly at the deadline: the body that returns right after it keeps
/// its value; one that suspends once more times out. Neither hangs past the deadline.
#[test]
fn a_shield_ending_at_the_exact_deadline_keeps_the_value_only_without_a_later_suspension() {
    run_virtual(async {
        let d = now() + secs(1);
        let out = fail_at(d, async {
            shield(sleep_until(d)).await;
            5
        })
        .await;
        assert_eq!(out, Ok(5));
        assert_eq!(now(), d);

        let d = now() + secs(1);
        let out = fail_at(d, async {
            shield(sleep_until(d)).await;
            yield_now().await;
            5
        })
        .await;
        assert_eq!(out.unwrap_err().deadline(), d);
        assert_eq!(now(), d);
    });
}

/// A child's own `fail_at` and the `move_on_at` around its nursery expire at the same
/// instant, with the inner timer armed before the outer one and after it: the outermost
/// cancelled scope catches it (`CancelScope` docs), so the child's `TimedOut` never
/// becomes a failure of the nursery and the outer timeout gives `None`.
#[test]
fn an_inner_timeout_in_a_child_expiring_with_the_outer_one_is_no_failure() {
    for inner_first in [false, true] {
        let out = watchdog(HANG_LIMIT, move || {
            run_virtual(async {
                let d = now() + secs(1);
                let outer = if inner_first {
                    CancelScope::new()
                } else {
                    CancelScope::new().with_deadline(d)
                };
                outer
                    .run_with(async |scope| {
                        nursery(async |n| {
                            n.spawn(async move { fail_at(d, sleep_forever()).await });
                            yield_now().await; // the child armed its deadline
                            if inner_first {
                                scope.set_deadline(d);
                            }
                            sleep_forever().await;
                            Ok(())
                        })
                        .await
                        .map_err(|g| g.into_errors())
                    })
                    .await
            })
        });
        assert_eq!(out, None, "inner armed first: {inner_first}");
    }
}

/// A `start` abandoned (its future dropped, as `select_biased!` does) while the child
/// holds a value whose destructor panics: the child ends, and the panic is not lost: it
/// resumes from the nursery.
#[test]
fn an_abandoned_start_whose_child_panics_in_its_destructor_resumes_from_the_nursery() {
    let message = watchdog(HANG_LIMIT, || {
        panic_of(|| {
            run_virtual(async {
                nursery(async |n| {
                    let out = move_on_after(
                        secs(1),
                        n.start(async |_n, _status: trellis::TaskStatus<()>| {
                            let _p = PanicOnDrop("an abandoned starter's child");
                            sleep_forever().await;
                        }),
                    )
                    .await;
                    assert!(out.is_none());
                    sleep(secs(1)).await;
                    Ok::<_, ()>(())
                })
                .await
            })
        })
    });
    assert_eq!(message, "an abandoned starter's child");
}

/// A child fails (or panics) before `started` in the same instant as the `start` future is
/// dropped by a `select_biased!` whose other branch wins: the failure went to the `start`
/// slot, which nobody reads any more. "Errors are never lost": it must still surface (from
/// the nursery).
#[test]
fn a_failure_before_started_is_not_lost_when_the_start_future_is_dropped_in_that_instant() {
    use futures::FutureExt;
    for panics in [false, true] {
        let (outcome, reached) = watchdog(HANG_LIMIT, move || {
            let reached = Cell::new(false);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_virtual(async {
                    let d = now() + secs(1);
                    let reached = &reached;
                    nursery(async |n| {
                        let start = n
                            .start(async move |_n, _status: trellis::TaskStatus<()>| {
                                sleep_until(d).await;
                                reached.set(true);
                                if panics {
                                    panic!("panicked before started");
                                }
                                Err::<(), _>("failed before started")
                            })
                            .fuse();
                        let mut start = std::pin::pin!(start);
                        suspend_once(start.as_mut()).await; // spawns the child
                        yield_now().await; // the child arms its timer first
                        futures::select_biased! {
                            () = sleep_until(d).fuse() => {}
                            r = start => {
                                return Ok(if r.is_err() { "start reported it" } else { "started" });
                            }
                        }
                        Ok("dropped the start")
                    })
                    .await
                    .map_err(|g| g.into_errors())
                })
            }))
            .map_err(|p| panic_message(&*p));
            (outcome, reached.get())
        });
        assert!(
            reached,
            "the child did not reach its failure: the race was not run"
        );
        match (panics, outcome) {
            (true, Err(message)) => assert_eq!(message, "panicked before started"),
            (false, Ok(Err(errors))) => assert_eq!(errors.len(), 1, "{errors:?}"),
            (false, Ok(Ok("start reported it"))) => {}
            (panics, outcome) => panic!("panics: {panics}: the failure was lost: {outcome:?}"),
        }
    }
}

static WHO: trellis::ContextVar<&'static str> = trellis::ContextVar::new("who");

/// A cancelled child's destructor runs in the child's own context (children.rs: "Drop the
/// child inside its own context: its destructors see its own variables"), also when it is
/// dropped by a sibling's failure or a hard drop; the body's context is untouched after.
#[test]
fn a_cancelled_childs_destructor_sees_its_own_context_variables() {
    let seen = RefCell::new(Vec::new());
    run_virtual(async {
        let _t = WHO.set("body");
        let seen = &seen;
        let out = nursery(async |n| {
            for name in ["first", "second"] {
                n.spawn(async move {
                    let _t = WHO.set(name);
                    let _g = OnDrop(move || seen.borrow_mut().push(WHO.get()));
                    sleep_forever().await;
                    Ok(())
                });
            }
            n.spawn(async {
                let _t = WHO.set("failing");
                sleep(secs(1)).await;
                Err::<(), _>("stop")
            });
            Ok(())
        })
        .await;
        assert!(out.is_err());
        assert_eq!(WHO.get(), Some("body"));
        let fut = common::poll_once(nursery(async |n| {
            n.spawn(async move {
                let _t = WHO.set("hard");
                let _g = OnDrop(move || seen.borrow_mut().push(WHO.get()));
                sleep_forever().await;
            });
            sleep_forever().await;
        }))
        .await;
        drop(fut);
        assert_eq!(WHO.get(), Some("body"));
    });
    assert_eq!(
        *seen.borrow(),
        [Some("first"), Some("second"), Some("hard")]
    );
}
