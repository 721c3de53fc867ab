//! Adversarial programs for one promise: every value handed to trellis is dropped exactly
//! once — never lost (its destructor never runs), never dropped twice. Each value carries
//! a drop counter (`common::DropCounter`, or `Counted`/`SendCounter` below for values
//! that cross threads or are cloned), and each test asserts the exact count after the
//! runtime returns, or at the moment the docs promise. Virtual time only.
//!
//! The one documented leak, a `mem::forget` of a started nursery future, is tested for
//! exactly what it leaks (everything the nursery owns, and nothing else breaks).

mod common;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use common::{
    DropCounter, HANG_LIMIT, catch_unwind, panic_message, poll_once, run_virtual, secs, watchdog,
};
use trellis::{
    Builder, CancelScope, ContextVar, Event, RuntimeHandle, SendError, TrySendError, channel,
    finally, interval, move_on_after, nursery, sleep, sleep_forever, to_thread, yield_now,
};

/// A drop counter whose guards are `Send`: for values that go to other threads.
#[derive(Clone, Default)]
struct SendCounter {
    dropped: Arc<AtomicUsize>,
    /// Told the thread of each drop, for a test to wait for a drop on another thread.
    notify: Option<Arc<Mutex<mpsc::Sender<ThreadId>>>>,
}

impl SendCounter {
    fn new() -> Self {
        Self::default()
    }

    /// A counter that also reports each drop (with its thread) on the returned receiver.
    fn notifying() -> (Self, mpsc::Receiver<ThreadId>) {
        let (tx, rx) = mpsc::channel();
        let counter = Self {
            dropped: Arc::default(),
            notify: Some(Arc::new(Mutex::new(tx))),
        };
        (counter, rx)
    }

    fn guard(&self) -> SendGuard {
        SendGuard(self.clone())
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

struct SendGuard(SendCounter);

impl Drop for SendGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
        if let Some(notify) = &self.0.notify {
            let _ = notify.lock().unwrap().send(std::thread::current().id());
        }
    }
}

/// A cloneable value that counts its clones and its drops (every copy a context makes).
struct Counted {
    made: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    id: u32,
}

impl Counted {
    fn new(id: u32) -> Self {
        Counted {
            made: Arc::new(AtomicUsize::new(1)),
            dropped: Arc::default(),
            id,
        }
    }

    /// Copies alive: made minus dropped.
    fn live(&self) -> usize {
        self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.made.fetch_add(1, Ordering::SeqCst);
        Counted {
            made: self.made.clone(),
            dropped: self.dropped.clone(),
            id: self.id,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker of our own, so that the test can count the clones trellis keeps of it.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let inner = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(inner.clone());
    (inner, waker)
}

/// Polls `fut` once with `waker` (not the task's): whatever trellis keeps of the waker is
/// a clone of `waker`, which the test can count.
fn poll_with<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------------------
// Children: returned, failed, panicked, cancelled, hard-dropped.

#[test]
fn a_childs_captures_and_returned_value_are_dropped_once_whether_or_not_it_is_awaited() {
    let captured = DropCounter::new();
    let returned = DropCounter::new();
    let awaited = DropCounter::new();
    run_virtual(async {
        nursery(async |n| {
            // Returns without suspending, its handle dropped at once.
            let g = captured.guard();
            let r = returned.guard();
            drop(n.spawn(async move {
                drop(g);
                Ok::<_, Infallible>(r)
            }));
            // Returns after a suspension, its handle kept and never awaited.
            let g = captured.guard();
            let r = returned.guard();
            let _kept = n.spawn(async move {
                sleep(secs(1)).await;
                let _g = g;
                Ok::<_, Infallible>(r)
            });
            // Its handle dropped before the child finished.
            let g = captured.guard();
            let r = returned.guard();
            drop(n.spawn(async move {
                let _g = g;
                sleep(secs(2)).await;
                Ok::<_, Infallible>(r)
            }));
            // Awaited: the value is the caller's.
            let a = awaited.guard();
            let h = n.spawn(async move {
                sleep(secs(1)).await;
                Ok::<_, Infallible>(a)
            });
            h.await.unwrap().finish();
            Ok::<_, Infallible>(())
        })
        .await
        .unwrap();
        assert_eq!(captured.dropped(), 3);
        assert_eq!(
            returned.dropped(),
            3,
            "unclaimed values die with the nursery"
        );
    });
    assert_eq!((captured.dropped(), captured.finished()), (3, 0));
    assert_eq!((returned.dropped(), returned.finished()), (3, 0));
    assert_eq!((awaited.dropped(), awaited.finished()), (0, 1));
}

#[test]
fn a_failing_childs_error_is_dropped_once_with_its_group_and_its_siblings_with_the_nursery() {
    let captured = DropCounter::new();
    let errors = DropCounter::new();
    let siblings = DropCounter::new();
    run_virtual(async {
        let group = nursery(async |n| {
            for i in 0..3 {
                let (g, e) = (captured.guard(), errors.guard());
                n.spawn(async move {
                    let _g = g;
                    sleep(secs(i)).await;
                    Err::<(), _>(e)
                });
            }
            for _ in 0..2 {
                let s = siblings.guard();
                n.spawn(async move {
                    let _s = s;
                    sleep_forever().await;
                    Ok(())
                });
            }
            Ok(())
        })
        .await
        .unwrap_err();
        // The first failure at t=0 cancelled the rest; the other two failers were
        // dropped suspended (their errors never made).
        assert_eq!(group.len(), 1);
        assert_eq!((captured.dropped(), siblings.dropped()), (3, 2));
        assert_eq!(
            errors.dropped(),
            2,
            "the two errors never returned drop with their futures"
        );
        let errors_inside: Vec<_> = group.into_errors();
        assert_eq!(errors.dropped(), 2);
        for e in errors_inside {
            e.finish();
        }
    });
    assert_eq!((errors.dropped(), errors.finished()), (2, 1));
    assert_eq!((captured.dropped(), siblings.dropped()), (3, 2));
}

#[test]
fn a_panicking_child_and_everything_beside_it_are_dropped_once() {
    let captured = DropCounter::new();
    let out = run_virtual(async {
        catch_unwind(nursery(async |n| {
            let body = captured.guard();
            let g = captured.guard();
            n.spawn(async move {
                let _g = g;
                sleep(secs(1)).await;
                panic!("child boom");
            });
            for _ in 0..3 {
                let g = captured.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep_forever().await;
                });
            }
            let _body = body;
            sleep_forever().await;
        }))
        .await
    });
    let payload = out.expect_err("the child's panic resumes");
    assert_eq!(panic_message(&*payload), "child boom");
    assert_eq!((captured.dropped(), captured.finished()), (5, 0));
}

#[test]
fn a_panic_in_a_captured_values_destructor_still_drops_every_other_value_once() {
    let captured = DropCounter::new();
    let out = run_virtual(async {
        catch_unwind(nursery(async |n| {
            let g = captured.guard();
            let bomb = common::PanicOnDrop("destructor boom");
            n.spawn(async move {
                let _g = g;
                let _bomb = bomb;
                sleep(secs(1)).await;
            });
            for _ in 0..3 {
                let g = captured.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep(secs(5)).await;
                });
            }
        }))
        .await
    });
    let payload = out.expect_err("the destructor's panic resumes");
    assert_eq!(panic_message(&*payload), "destructor boom");
    assert_eq!(captured.dropped(), 4);
}

#[test]
fn cancelled_children_drop_their_captures_once_at_the_cancellation() {
    let one = DropCounter::new();
    let all = DropCounter::new();
    run_virtual(async {
        let out = move_on_after(
            secs(3),
            nursery(async |n| {
                let g = one.guard();
                let h = n.spawn(async move {
                    let _g = g;
                    sleep_forever().await;
                });
                sleep(secs(1)).await;
                h.cancel();
                assert!(h.await.unwrap_err().is_cancelled());
                assert_eq!(one.dropped(), 1, "dropped before its handle reports it");
                for _ in 0..4 {
                    let g = all.guard();
                    n.spawn(async move {
                        let _g = g;
                        sleep_forever().await;
                    });
                }
                let _body = all.guard();
                sleep_forever().await;
            }),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(all.dropped(), 5, "all dropped when the scope caught it");
    });
    assert_eq!((one.dropped(), all.dropped()), (1, 5));
}

#[test]
fn a_hard_dropped_nursery_drops_its_body_children_and_nested_nurseries_once() {
    let c = DropCounter::new();
    run_virtual(async {
        let c = &c;
        let fut = poll_once(nursery(async |n| {
            let _body = c.guard();
            for _ in 0..3 {
                let g = c.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep_forever().await;
                });
            }
            let g = c.guard();
            n.spawn_with(async move |n2| {
                let _g = g;
                let g2 = c.guard();
                n2.spawn(async move {
                    let _g2 = g2;
                    sleep_forever().await;
                });
                nursery(async |inner| {
                    let g3 = c.guard();
                    inner.spawn(async move {
                        let _g3 = g3;
                        sleep_forever().await;
                    });
                    sleep_forever().await;
                })
                .await
                .unwrap();
            });
            sleep_forever().await;
        }))
        .await;
        assert_eq!(c.dropped(), 0);
        drop(fut);
        // The body, three children, the spawn_with child, its child and its nursery's.
        assert_eq!(c.dropped(), 7);
    });
    assert_eq!((c.dropped(), c.finished()), (7, 0));
}

#[test]
fn a_hard_drop_after_every_unit_ran_drops_each_value_once() {
    let c = DropCounter::new();
    run_virtual(async {
        let c = &c;
        let mut fut = Box::pin(nursery(async |n| {
            let _body = c.guard();
            let g = c.guard();
            n.spawn_with(async move |n2| {
                let _g = g;
                let g2 = c.guard();
                n2.spawn(async move {
                    let _g2 = g2;
                    sleep_forever().await;
                });
                nursery(async |inner| {
                    let g3 = c.guard();
                    inner.spawn(async move {
                        let _g3 = g3;
                        sleep_forever().await;
                    });
                    sleep_forever().await;
                })
                .await
                .unwrap();
            });
            sleep_forever().await;
        }));
        // Poll it beside a sleep (not inside a scope, whose cancellation would reach
        // it) until everything inside is parked.
        let mut two = pin!(sleep(secs(2)));
        std::future::poll_fn(|cx| {
            assert!(fut.as_mut().poll(cx).is_pending());
            two.as_mut().poll(cx)
        })
        .await;
        assert_eq!(c.dropped(), 0);
        drop(fut);
        assert_eq!(c.dropped(), 4);
    });
    assert_eq!(c.dropped(), 4);
}

#[test]
fn children_spawned_into_a_cancelled_nursery_run_to_their_first_suspension_and_drop_once() {
    let c = DropCounter::new();
    let returned = DropCounter::new();
    let ran = Cell::new(0);
    run_virtual(async {
        let out = CancelScope::new()
            .run_with(async |scope| {
                nursery(async |n| {
                    scope.cancel();
                    for _ in 0..3 {
                        let (g, ran) = (c.guard(), &ran);
                        n.spawn(async move {
                            let _g = g;
                            ran.set(ran.get() + 1);
                            sleep(secs(1)).await;
                            unreachable!("cancelled at its first suspension");
                        });
                    }
                    // One that finishes without suspending: its value is unclaimed.
                    let r = returned.guard();
                    let _h = n.spawn(async move { Ok::<_, Infallible>(r) });
                    Ok::<_, Infallible>(())
                })
                .await
            })
            .await;
        assert!(out.is_none());
    });
    assert_eq!(ran.get(), 3);
    assert_eq!(c.dropped(), 3);
    assert_eq!(returned.dropped(), 1);
}

#[test]
fn a_bodys_value_returned_before_an_enclosing_cancellation_is_dropped_once() {
    let value = DropCounter::new();
    let child = DropCounter::new();
    run_virtual(async {
        let out = move_on_after(
            secs(1),
            nursery(async |n| {
                let g = child.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep(secs(10)).await;
                });
                Ok::<_, Infallible>(value.guard())
            }),
        )
        .await;
        assert!(
            out.is_none(),
            "an enclosing cancellation never completes with a value"
        );
        assert_eq!((value.dropped(), child.dropped()), (1, 1));
    });
    assert_eq!(
        (value.dropped(), value.finished(), child.dropped()),
        (1, 0, 1)
    );
}

// ---------------------------------------------------------------------------------------
// start, spawn_with.

#[test]
fn a_start_value_taken_by_the_starter_is_dropped_once_by_it() {
    let value = DropCounter::new();
    let captured = DropCounter::new();
    run_virtual(async {
        nursery(async |n| {
            let (v, g) = (value.guard(), captured.guard());
            let got = n
                .start(async move |_n, status| {
                    let _g = g;
                    status.started(v);
                    sleep(secs(1)).await;
                })
                .await
                .unwrap();
            assert_eq!(value.dropped(), 0);
            got.finish();
        })
        .await
        .unwrap();
    });
    assert_eq!((value.dropped(), value.finished()), (0, 1));
    assert_eq!(captured.dropped(), 1);
}

#[test]
fn a_start_abandoned_before_started_drops_the_child_and_a_late_started_value_once() {
    let captured = DropCounter::new();
    let late = DropCounter::new();
    run_virtual(async {
        nursery(async |n| {
            // The starter gives up at 1 s; the child is cancelled as by its handle.
            let g = captured.guard();
            let out = move_on_after(
                secs(1),
                n.start(
                    async move |_n, _status: trellis::TaskStatus<common::Guard>| {
                        let _g = g;
                        sleep_forever().await;
                    },
                ),
            )
            .await;
            assert!(out.is_none());
            yield_now().await;
            assert_eq!(captured.dropped(), 1);

            // The starter is dropped unpolled again; the child's shield keeps it running
            // until it calls `started`, which does nothing then: the value is dropped.
            let (g, v) = (captured.guard(), late.guard());
            let starting = poll_once(n.start(async move |_n, status| {
                let _g = g;
                trellis::shield(sleep(secs(1))).await;
                status.started(v);
                sleep_forever().await;
            }))
            .await;
            drop(starting);
            sleep(secs(2)).await;
            assert_eq!(
                late.dropped(),
                1,
                "a `started` after abandonment drops its value"
            );
            assert_eq!(captured.dropped(), 2);
        })
        .await
        .unwrap();
    });
    assert_eq!(
        (captured.dropped(), late.dropped(), late.finished()),
        (2, 1, 0)
    );
}

#[test]
fn a_started_value_the_starter_never_took_is_dropped_once() {
    let value = DropCounter::new();
    run_virtual(async {
        nursery(async |n| {
            let v = value.guard();
            // Polled once: the child has not run yet. Then the child runs and calls
            // `started`, the value waiting for a starter that is then dropped unpolled.
            let starting = poll_once(n.start(async move |_n, status| {
                status.started(v);
                sleep(secs(1)).await;
            }))
            .await;
            yield_now().await;
            yield_now().await;
            drop(starting);
            sleep(secs(2)).await;
        })
        .await
        .unwrap();
    });
    assert_eq!((value.dropped(), value.finished()), (1, 0));
}

#[test]
fn a_childs_error_before_started_is_dropped_once_whether_the_starter_takes_it_or_not() {
    let errors = DropCounter::new();
    run_virtual(async {
        // Taken by the starter.
        let group = nursery(async |n| {
            let e = errors.guard();
            let err = n
                .start(async move |_n, _status: trellis::TaskStatus<()>| {
                    sleep(secs(1)).await;
                    Err::<(), _>(e)
                })
                .await
                .unwrap_err();
            err.into_error().expect("the child's error").finish();
            Ok::<_, common::Guard>(())
        })
        .await;
        assert!(group.is_ok());
        // The starter is gone before the child fails: the error is the nursery's.
        let group = nursery(async |n| {
            let e = errors.guard();
            let starting = poll_once(n.start(async move |_n, _status: trellis::TaskStatus<()>| {
                trellis::shield(sleep(secs(1))).await;
                Err::<(), _>(e)
            }))
            .await;
            drop(starting);
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(errors.dropped(), 0);
        for e in group.into_errors() {
            e.finish();
        }
    });
    assert_eq!((errors.dropped(), errors.finished()), (0, 2));
}

#[test]
fn spawn_with_children_and_the_siblings_they_spawn_drop_their_values_once() {
    let c = DropCounter::new();
    let returned = DropCounter::new();
    run_virtual(async {
        nursery(async |n| {
            for depth in 0..3u64 {
                let (g, r) = (c.guard(), returned.guard());
                let (c, returned) = (&c, &returned);
                let h = n.spawn_with(async move |n2| {
                    let _g = g;
                    for i in 0..depth {
                        let (g, r) = (c.guard(), returned.guard());
                        let _unawaited = n2.spawn(async move {
                            let _g = g;
                            sleep(secs(i)).await;
                            Ok::<_, Infallible>(r)
                        });
                    }
                    sleep(secs(depth)).await;
                    Ok::<_, Infallible>(r)
                });
                if depth == 0 {
                    h.await.unwrap().finish();
                }
            }
            Ok::<_, Infallible>(())
        })
        .await
        .unwrap();
    });
    // 3 spawn_with children and 0 + 1 + 2 siblings.
    assert_eq!(c.dropped(), 6);
    assert_eq!((returned.dropped(), returned.finished()), (5, 1));
}

// ---------------------------------------------------------------------------------------
// Scopes: a clone captured inside itself, a handle in a context variable, RemoteCancel.

#[test]
fn a_scope_captured_by_a_child_inside_that_scope_makes_no_cycle() {
    let sentinel = Rc::new(());
    let c = DropCounter::new();
    run_virtual(async {
        for round in 0..3 {
            let out = CancelScope::new()
                .with_timeout(secs(5))
                .run_with(async |scope| {
                    nursery(async |n| {
                        for _ in 0..3 {
                            let (scope, s, g) = (scope.clone(), sentinel.clone(), c.guard());
                            n.spawn(async move {
                                let _keep = (s, g, scope.remote());
                                sleep(secs(1)).await;
                                if round == 1 {
                                    scope.cancel();
                                }
                                sleep_forever().await;
                            });
                        }
                        // The body keeps a clone too, past the scope's end.
                        Ok::<_, Infallible>((scope.clone(), sentinel.clone()))
                    })
                    .await
                })
                .await;
            // Round 0 and 2 time out, round 1 is cancelled: no value either way.
            assert!(out.is_none());
            assert_eq!(Rc::strong_count(&sentinel), 1);
        }
    });
    assert_eq!(Rc::strong_count(&sentinel), 1);
    assert_eq!(c.dropped(), 9);
}

/// A scope's `Send` handle stored in a context variable (a `CancelScope` is `!Send`, so
/// it cannot be): inherited by children, copied to a worker, used through the variable.
#[test]
fn a_remote_cancel_in_a_context_variable_is_dropped_with_the_last_context() {
    static CANCEL: ContextVar<Arc<(trellis::RemoteCancel, Counted)>> = ContextVar::new("cancel");
    let probe = Counted::new(7);
    let p = probe.clone();
    run_virtual(async move {
        let out = CancelScope::new()
            .run_with(async move |scope| {
                let _token = CANCEL.set(Arc::new((scope.remote(), p)));
                nursery(async |n| {
                    for i in 0..3u64 {
                        n.spawn(async move {
                            sleep(secs(i + 1)).await;
                            if i == 2 {
                                let id = to_thread(|| CANCEL.get().map(|v| v.1.id)).await;
                                assert_eq!(id, Some(7));
                                CANCEL.with(|v| v.unwrap().0.cancel());
                            }
                            sleep_forever().await;
                        });
                    }
                })
                .await
            })
            .await;
        assert!(out.is_none(), "cancelled through the variable");
    });
    assert_eq!(probe.live(), 1, "copies left behind: {}", probe.live() - 1);
}

#[test]
fn a_remote_cancel_and_a_waker_outliving_their_runtime_on_another_thread_are_harmless() {
    watchdog(HANG_LIMIT, || {
        let c = DropCounter::new();
        let (handoff_tx, handoff_rx) = mpsc::channel::<(trellis::RemoteCancel, Waker)>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let (remote, waker) = handoff_rx.recv().unwrap();
            go_rx.recv().unwrap(); // the runtime has ended
            waker.wake_by_ref();
            remote.cancel();
            assert!(remote.is_cancelled());
            drop(remote);
            waker.wake();
        });
        run_virtual(async {
            let out = CancelScope::new()
                .run_with(async |scope| {
                    nursery(async |n| {
                        let g = c.guard();
                        let remote = scope.remote();
                        n.spawn(async move {
                            let _g = g;
                            let waker =
                                std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                            handoff_tx.send((remote, waker)).unwrap();
                            sleep(secs(1)).await;
                        });
                    })
                    .await
                })
                .await;
            assert_eq!(out, Some(Ok(())));
        });
        assert_eq!(c.dropped(), 1, "a waker held elsewhere keeps no task alive");
        go_tx.send(()).unwrap();
        other.join().unwrap();
        // The thread-locals are sound for the next runtime.
        let d = DropCounter::new();
        run_virtual(async {
            nursery(async |n| {
                let g = d.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep(secs(1)).await;
                });
            })
            .await
            .unwrap();
        });
        assert_eq!(d.dropped(), 1);
    });
}

// ---------------------------------------------------------------------------------------
// Channels.

#[test]
fn buffered_messages_are_dropped_once_when_the_last_receiver_goes() {
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(8);
        let rx2 = rx.clone();
        for _ in 0..3 {
            tx.try_send(c.guard()).unwrap();
        }
        drop(rx);
        assert_eq!(c.dropped(), 0, "a receiver is still open");
        rx2.close();
        assert_eq!(
            c.dropped(),
            3,
            "the buffer is dropped when every receiver is closed"
        );
        match tx.try_send(c.guard()) {
            Err(TrySendError::Disconnected(v)) => v.finish(),
            _ => panic!("expected Disconnected"),
        }
        match tx.send(c.guard()).await {
            Err(SendError::Disconnected(v)) => v.finish(),
            _ => panic!("expected Disconnected"),
        }
        drop(rx2);
        drop(tx);
    });
    assert_eq!((c.dropped(), c.finished()), (3, 2));

    // Senders gone first, then the receivers: the buffer goes with the last receiver.
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(usize::MAX);
        for _ in 0..5 {
            tx.try_send(c.guard()).unwrap();
        }
        drop(tx);
        rx.recv().await.unwrap().finish();
        assert_eq!(c.dropped(), 0);
        drop(rx);
        assert_eq!(c.dropped(), 4);
    });
    assert_eq!((c.dropped(), c.finished()), (4, 1));
}

#[test]
fn messages_waiting_in_blocked_sends_are_dropped_once_when_the_tasks_are_cancelled() {
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(1);
        let out = move_on_after(
            secs(1),
            nursery(async |n| {
                for _ in 0..3 {
                    let (tx, g) = (tx.clone(), c.guard());
                    n.spawn(async move { tx.send(g).await.unwrap() });
                }
                sleep_forever().await;
            }),
        )
        .await;
        assert!(out.is_none());
        // One went into the buffer; the two blocked sends dropped their values.
        assert_eq!(c.dropped(), 2);
        rx.try_recv().unwrap().finish();
    });
    assert_eq!((c.dropped(), c.finished()), (2, 1));
}

#[test]
fn a_value_handed_to_a_cancelled_receive_goes_to_the_next_receive_not_twice_nor_nowhere() {
    let c = DropCounter::new();
    run_virtual(async {
        // A receive waits; a send hands it the value (and is dropped: delivered); the
        // receive is dropped before it is polled again.
        let (tx, rx) = channel(0);
        let recv = poll_once(rx.recv()).await;
        let send = poll_once(tx.send(c.guard())).await;
        drop(send);
        assert_eq!(c.dropped(), 0, "taken by the receive: delivered");
        drop(recv);
        assert_eq!(c.dropped(), 0, "passed back to the channel, not dropped");
        rx.try_recv().expect("the next receive gets it").finish();
        // Again, with the last sender gone while the value is promised, then the receive
        // and the last receiver.
        let recv = poll_once(rx.recv()).await;
        drop(poll_once(tx.send(c.guard())).await);
        drop(tx);
        drop(recv);
        assert_eq!(c.dropped(), 0, "kept for a next receive");
        drop(rx);
        assert_eq!(c.dropped(), 1, "dropped with the last receiver");
    });
    assert_eq!((c.dropped(), c.finished()), (1, 1));
}

#[test]
fn a_value_sent_on_a_closed_handle_comes_back_to_the_sender_once() {
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(0);
        nursery(async |n| {
            // Blocked on a rendezvous nobody takes, then its own handle is closed.
            let (tx1, g) = (&tx, c.guard());
            let blocked = n.spawn(async move {
                match tx1.send(g).await {
                    Err(SendError::Closed(v)) => v.finish(),
                    _ => panic!("expected Closed"),
                }
            });
            yield_now().await;
            tx.close();
            blocked.await.unwrap();
            match tx.send(c.guard()).await {
                Err(SendError::Closed(v)) => v.finish(),
                _ => panic!("expected Closed"),
            }
            match tx.try_send(c.guard()) {
                Err(TrySendError::Closed(v)) => v.finish(),
                _ => panic!("expected Closed"),
            }
            // A clone of a closed handle is closed.
            match tx.clone().try_send(c.guard()) {
                Err(e) => e.into_inner().finish(),
                Ok(()) => panic!("a clone of a closed handle sent"),
            }
        })
        .await
        .unwrap();
        drop(rx);
    });
    assert_eq!((c.dropped(), c.finished()), (0, 4));
}

// ---------------------------------------------------------------------------------------
// Context variables.

static VALUE: ContextVar<Counted> = ContextVar::new("value");

#[test]
fn context_values_across_children_sets_and_resets_leave_no_copy_behind() {
    let probe = Counted::new(1);
    let inner = Counted::new(2);
    let (p, i) = (probe.clone(), inner.clone());
    run_virtual(async move {
        let token = VALUE.set(p);
        let out = catch_unwind(nursery(async |n| {
            for k in 0..4u64 {
                let i = i.clone();
                n.spawn(async move {
                    assert_eq!(VALUE.with(|v| v.map(|v| v.id)), Some(1));
                    let t = VALUE.set(i);
                    sleep(secs(k)).await;
                    if k % 2 == 0 {
                        VALUE.reset(t).unwrap();
                    }
                    nursery(async |n2| {
                        n2.spawn(async {
                            sleep(secs(1)).await;
                        });
                    })
                    .await
                    .unwrap();
                    if k == 3 {
                        panic!("a child panics with values set");
                    }
                });
            }
        }))
        .await;
        assert!(out.is_err(), "the child's panic resumed");
        VALUE.reset(token).unwrap();
        drop(i);
    });
    assert_eq!(
        probe.live(),
        1,
        "copies of the outer value left: {}",
        probe.live() - 1
    );
    assert_eq!(
        inner.live(),
        1,
        "copies of the inner value left: {}",
        inner.live() - 1
    );
}

#[test]
fn a_context_copied_to_a_worker_is_dropped_with_the_call() {
    let probe = Counted::new(1);
    let set_there = Counted::new(2);
    let (p, s) = (probe.clone(), set_there.clone());
    run_virtual(async {
        let _token = VALUE.set(p);
        let before = probe.live();
        let seen = to_thread(move || {
            let id = VALUE.get().map(|v| v.id);
            let _t = VALUE.set(s); // stays in the call's copy, dropped with it
            id
        })
        .await;
        assert_eq!(seen, Some(1));
        assert_eq!(
            probe.live(),
            before,
            "the worker's copy is gone once the call returned"
        );
        assert_eq!(set_there.live(), 1, "what the call set went with its copy");
    });
    assert_eq!(probe.live(), 1);
    assert_eq!(set_there.live(), 1);
}

// ---------------------------------------------------------------------------------------
// Threads.

#[test]
fn a_to_thread_result_whose_caller_was_cancelled_is_dropped_once_on_the_worker() {
    watchdog(HANG_LIMIT, || {
        let (results, dropped_on) = SendCounter::notifying();
        let captured = SendCounter::new();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let runtime_thread = std::thread::current().id();
        let (r, g) = (results.clone(), captured.guard());
        let running = Arc::new(AtomicBool::new(false));
        let running2 = running.clone();
        run_virtual(async move {
            let out = CancelScope::new()
                .run_with(async |scope| {
                    nursery(async |n| {
                        n.spawn(async move {
                            to_thread(move || {
                                let _g = g;
                                running2.store(true, Ordering::SeqCst);
                                release_rx.recv().unwrap();
                                r.guard()
                            })
                            .await;
                            unreachable!("cancelled while the call runs");
                        });
                        // Until the call runs on its worker (a call abandoned before it
                        // started is never run; the next test is that one).
                        while !running.load(Ordering::SeqCst) {
                            yield_now().await;
                        }
                        scope.cancel();
                    })
                    .await
                })
                .await;
            assert!(out.is_none());
        });
        assert_eq!(
            (results.dropped(), captured.dropped()),
            (0, 0),
            "the call is still running"
        );
        release_tx.send(()).unwrap();
        let on = dropped_on
            .recv_timeout(HANG_LIMIT)
            .expect("the result is dropped");
        assert_ne!(on, runtime_thread, "dropped by the worker, nobody wants it");
        assert!(dropped_on.try_recv().is_err());
        assert_eq!(results.dropped(), 1);
        // The closure (and its capture) was consumed by the call, before the result.
        assert_eq!(captured.dropped(), 1);
    });
}

#[test]
fn a_queued_to_thread_call_abandoned_before_it_started_drops_its_closure_once_unrun() {
    watchdog(HANG_LIMIT, || {
        let (queued, dropped_on) = SendCounter::notifying();
        let ran = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (q, ran2) = (queued.guard(), ran.clone());
        Builder::new().autojump().thread_limit(1).run(async move {
            let out = CancelScope::new()
                .run_with(async |scope| {
                    nursery(async |n| {
                        n.spawn(to_thread(move || release_rx.recv().unwrap()));
                        n.spawn(to_thread(move || {
                            let _q = q;
                            ran2.store(true, Ordering::SeqCst);
                        }));
                        yield_now().await;
                        yield_now().await;
                        scope.cancel();
                    })
                    .await
                })
                .await;
            assert!(out.is_none());
        });
        // The first call may itself have been abandoned before its worker took it.
        let _ = release_tx.send(());
        dropped_on
            .recv_timeout(HANG_LIMIT)
            .expect("the queued closure is dropped");
        assert_eq!(queued.dropped(), 1);
        assert!(
            !ran.load(Ordering::SeqCst),
            "an abandoned queued call never starts"
        );
    });
}

#[test]
fn a_to_thread_result_that_arrived_for_a_future_never_polled_again_is_dropped_once() {
    watchdog(HANG_LIMIT, || {
        let results = SendCounter::new();
        let r = results.clone();
        Builder::new().autojump().thread_limit(1).run(async {
            let pending = poll_once(to_thread(move || r.guard())).await;
            // One worker: this call runs after the first stored its result.
            to_thread(|| ()).await;
            assert_eq!(results.dropped(), 0, "stored, waiting for its future");
            drop(pending);
            assert_eq!(results.dropped(), 1, "dropped with its future");
        });
        assert_eq!(results.dropped(), 1);
    });
}

#[test]
fn from_thread_work_refused_or_dropped_at_the_runtimes_end_drops_its_captures_once() {
    watchdog(HANG_LIMIT, || {
        let c = SendCounter::new();
        let (handle_tx, handle_rx) = mpsc::channel::<RuntimeHandle>();
        let started = Arc::new(AtomicBool::new(false));
        let (c2, started2) = (c.clone(), started.clone());
        let caller = std::thread::spawn(move || {
            let handle = handle_rx.recv().unwrap();
            // A future that never ends: dropped at the runtime's end, the caller told.
            let g = c2.guard();
            let out = handle.run(move || async move {
                let _g = g;
                started2.store(true, Ordering::SeqCst);
                sleep_forever().await;
            });
            assert!(out.unwrap_err().is_runtime_gone());
            assert_eq!(c2.dropped(), 1);
            // After the end: refused, the closure dropped unrun.
            let g = c2.guard();
            let out = handle.run_sync(move || drop(g));
            assert!(out.unwrap_err().is_runtime_gone());
            assert_eq!(c2.dropped(), 2);
        });
        run_virtual(async move {
            handle_tx.send(RuntimeHandle::current()).unwrap();
            for _ in 0..100_000 {
                if started.load(Ordering::SeqCst) {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
            assert!(started.load(Ordering::SeqCst), "the work started");
        });
        caller.join().unwrap();
        assert_eq!(c.dropped(), 2);
    });
}

// ---------------------------------------------------------------------------------------
// finally, Sleep, Interval, wakers.

#[test]
fn finally_drops_work_and_cleanup_once_when_cancelled_or_panicking() {
    let c = DropCounter::new();
    run_virtual(async {
        // Cancelled from outside: work cut off, clean-up run (shielded), both dropped.
        let (w, cl) = (c.guard(), c.guard());
        let out = move_on_after(
            secs(1),
            finally(
                async move {
                    let _w = w;
                    sleep(secs(10)).await;
                },
                async move {
                    let _cl = cl;
                    sleep(secs(1)).await;
                },
            ),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(c.dropped(), 2);

        // The clean-up panics after the work finished.
        let (w, cl) = (c.guard(), c.guard());
        let out = catch_unwind(finally(
            async move {
                let _w = w;
                sleep(secs(1)).await;
            },
            async move {
                let _cl = cl;
                sleep(secs(1)).await;
                panic!("cleanup boom");
            },
        ))
        .await;
        assert_eq!(panic_message(&*out.unwrap_err()), "cleanup boom");
        assert_eq!(c.dropped(), 4);

        // The work panics, the clean-up is cut short by a deadline of its own.
        let (w, cl) = (c.guard(), c.guard());
        let out = catch_unwind(finally(
            async move {
                let _w = w;
                sleep(secs(1)).await;
                panic!("work boom");
            },
            move_on_after(secs(1), async move {
                let _cl = cl;
                sleep_forever().await;
            }),
        ))
        .await;
        assert_eq!(panic_message(&*out.unwrap_err()), "work boom");
        assert_eq!(c.dropped(), 6);

        // Hard-dropped in the middle of its clean-up.
        let (w, cl) = (c.guard(), c.guard());
        let fut = poll_once(finally(
            async move {
                let _w = w;
            },
            async move {
                let _cl = cl;
                sleep_forever().await;
            },
        ))
        .await;
        assert_eq!(c.dropped(), 7, "the work finished");
        drop(fut);
        assert_eq!(c.dropped(), 8);
    });
    assert_eq!(c.dropped(), 8);
}

#[test]
fn every_waker_trellis_keeps_is_released_when_its_future_is_dropped() {
    let (w, waker) = counting_waker();
    run_virtual(async {
        // A sleep, an interval tick, a channel receive and send, an event wait, a lock.
        let event = Event::new();
        let (tx, rx) = channel::<u32>(0);
        let lock = trellis::Lock::new(());
        let held = lock.try_lock().unwrap();
        let mut ticks = interval(secs(5));
        ticks.tick().await;
        {
            let mut s = pin!(sleep(secs(1)));
            let mut t = pin!(ticks.tick());
            let mut r = pin!(rx.recv());
            let mut e = pin!(event.wait());
            let mut l = pin!(lock.lock());
            assert!(poll_with(s.as_mut(), &waker).is_pending());
            assert!(poll_with(t.as_mut(), &waker).is_pending());
            assert!(poll_with(r.as_mut(), &waker).is_pending());
            assert!(poll_with(e.as_mut(), &waker).is_pending());
            assert!(poll_with(l.as_mut(), &waker).is_pending());
            assert!(Arc::strong_count(&w) > 1);
        }
        assert_eq!(Arc::strong_count(&w), 2, "only `waker` itself is left");
        {
            let mut s = pin!(tx.send(7));
            assert!(poll_with(s.as_mut(), &waker).is_pending());
        }
        assert_eq!(Arc::strong_count(&w), 2);
        drop(held);
        // A sleep that fired while its owner did not poll it: the waker was woken, then
        // the sleep is dropped.
        let mut s = Box::pin(sleep(secs(1)));
        assert!(poll_with(s.as_mut(), &waker).is_pending());
        sleep(secs(2)).await;
        assert_eq!(w.0.load(Ordering::SeqCst), 1, "the timer woke our waker");
        drop(s);
        assert_eq!(Arc::strong_count(&w), 2);
    });
    assert_eq!(Arc::strong_count(&w), 2);
    drop(waker);
    assert_eq!(Arc::strong_count(&w), 1);
}

#[test]
fn a_sleep_and_an_interval_outliving_their_runtime_release_their_wakers_and_drop_harmlessly() {
    let (w, waker) = counting_waker();
    let (s, i) = run_virtual(async {
        let mut s = Box::pin(sleep(secs(10)));
        assert!(poll_with(s.as_mut(), &waker).is_pending());
        let mut i = interval(secs(3));
        i.tick().await;
        {
            let mut t = pin!(i.tick());
            assert!(poll_with(t.as_mut(), &waker).is_pending());
        }
        (s, i)
    });
    // The runtime (its timer queue) is gone: nothing of it keeps our waker.
    assert_eq!(Arc::strong_count(&w), 2);
    // Dropped inside a second runtime, beside its own timers, which still fire on time.
    let c = DropCounter::new();
    let g = c.guard();
    run_virtual(async move {
        let start = trellis::now();
        nursery(async move |n| {
            n.spawn(async move {
                let _g = g;
                sleep(secs(2)).await;
            });
            sleep(secs(1)).await;
            drop(s);
            drop(i);
        })
        .await
        .unwrap();
        assert_eq!(trellis::now() - start, secs(2));
    });
    assert_eq!(c.dropped(), 1);
    drop(waker);
    assert_eq!(Arc::strong_count(&w), 1);
}

// ---------------------------------------------------------------------------------------
// A runtime that panics, and a forgotten nursery.

#[test]
fn a_deadlocked_runtime_drops_every_live_task_and_its_values_once_before_it_panics() {
    let c = DropCounter::new();
    let c2 = c.clone();
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Builder::new().mock_clock().run(async {
            let event = Event::new();
            let (tx, rx) = channel::<common::Guard>(4);
            tx.try_send(c2.guard()).unwrap();
            let _root_value = c2.guard();
            nursery(async |n| {
                for _ in 0..3 {
                    let (g, event) = (c2.guard(), &event);
                    n.spawn(async move {
                        let _g = g;
                        event.wait().await;
                    });
                }
                let g = c2.guard();
                let rx = &rx;
                n.spawn(async move {
                    let _g = g;
                    let _ = rx.recv().await;
                    let _ = rx.recv().await;
                });
                sleep_forever().await;
            })
            .await
            .unwrap();
        })
    }))
    .expect_err("a deadlock on the mock clock panics");
    assert!(
        panic_message(&*payload).contains("deadlock"),
        "{}",
        panic_message(&*payload)
    );
    // Three event waiters, the receiver, the root's value, the received message.
    assert_eq!((c.dropped(), c.finished()), (6, 0));
    // The thread is fit for the next runtime.
    let d = DropCounter::new();
    run_virtual(async {
        let g = d.guard();
        nursery(async |n| {
            n.spawn(async move {
                let _g = g;
                sleep(secs(1)).await;
            });
        })
        .await
        .unwrap();
    });
    assert_eq!(d.dropped(), 1);
}

#[test]
fn a_root_panicking_with_live_children_drops_them_and_their_values_once() {
    let c = DropCounter::new();
    let c2 = c.clone();
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_virtual(async {
            nursery(async |n| {
                for _ in 0..3 {
                    let g = c2.guard();
                    n.spawn(async move {
                        let _g = g;
                        sleep_forever().await;
                    });
                }
                sleep(secs(1)).await;
                panic!("the body panics");
            })
            .await
            .unwrap();
        })
    }))
    .expect_err("the panic resumes from run");
    assert_eq!(panic_message(&*payload), "the body panics");
    assert_eq!(c.dropped(), 3);
}

/// `mem::forget` of a started nursery future leaks it and everything it owns (its body
/// and children with their captures, never dropped), and nothing else: the enclosing
/// timeout still fires on time, later nurseries on the same runtime and the next runtime
/// work and drop their values.
#[test]
fn a_forgotten_nursery_leaks_exactly_what_it_owns_and_nothing_else_breaks() {
    watchdog(HANG_LIMIT, || {
        let leaked = DropCounter::new();
        let later = DropCounter::new();
        run_virtual(async {
            let start = trellis::now();
            let out = move_on_after(secs(3), async {
                common::forget_after_one_poll(nursery(async |n| {
                    let _body = leaked.guard();
                    for k in 0..3u64 {
                        let g = leaked.guard();
                        n.spawn(async move {
                            let _g = g;
                            // Wakes at 1 s: a wake into a forgotten nursery.
                            sleep(secs(1)).await;
                            let _never = trellis::shield(sleep(secs(k))).await;
                            sleep_forever().await;
                        });
                    }
                    sleep_forever().await;
                }))
                .await;
                nursery(async |n| {
                    let g = later.guard();
                    n.spawn(async move {
                        let _g = g;
                        sleep(secs(2)).await;
                    });
                })
                .await
                .unwrap();
                assert_eq!(later.dropped(), 1);
                sleep_forever().await;
            })
            .await;
            assert_eq!(out, None);
            assert_eq!(trellis::now() - start, secs(3), "the timeout fired on time");
        });
        assert_eq!(
            leaked.dropped(),
            0,
            "what a forgotten nursery owns is never dropped"
        );
        run_virtual(async {
            nursery(async |n| {
                let g = later.guard();
                n.spawn(async move {
                    let _g = g;
                    sleep(secs(1)).await;
                });
            })
            .await
            .unwrap();
        });
        assert_eq!((leaked.dropped(), later.dropped()), (0, 2));
    });
}

// ---------------------------------------------------------------------------------------
// Panic payloads are values too.

#[test]
fn panic_payloads_of_several_children_are_each_dropped_once() {
    let payloads = SendCounter::new();
    let out = run_virtual(async {
        catch_unwind(nursery(async |n| {
            for _ in 0..3 {
                let p = payloads.guard();
                n.spawn(async move {
                    sleep(secs(1)).await;
                    std::panic::panic_any(p);
                });
            }
            sleep_forever().await;
        }))
        .await
    });
    let payload = out.expect_err("the first panic resumes");
    assert!(payload.is::<SendGuard>(), "resumed unchanged");
    assert_eq!(
        payloads.dropped(),
        2,
        "the others were reported and dropped"
    );
    drop(payload);
    assert_eq!(payloads.dropped(), 3);
}

#[test]
fn a_panic_payload_in_a_hard_dropped_nursery_is_dropped_once() {
    let payloads = SendCounter::new();
    let p = payloads.clone();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_virtual(async {
            let fut = poll_once(nursery(async |n| {
                let p = p.guard();
                // Panics in its destructor, when the hard drop drops it.
                n.spawn(async move {
                    let _bomb = OnDropPanic(Some(p));
                    sleep_forever().await;
                });
                sleep_forever().await;
            }))
            .await;
            drop(fut); // resumes the destructor's panic
        })
    }));
    let payload = out.expect_err("the caught panic resumes from the drop");
    assert!(payload.is::<SendGuard>());
    assert_eq!(payloads.dropped(), 0);
    drop(payload);
    assert_eq!(payloads.dropped(), 1);
}

/// Panics with its guard as the payload when dropped.
struct OnDropPanic(Option<SendGuard>);

impl Drop for OnDropPanic {
    fn drop(&mut self) {
        std::panic::panic_any(self.0.take().expect("dropped once"));
    }
}

#[test]
fn a_to_thread_panic_payload_is_dropped_once_whether_or_not_the_caller_is_there() {
    watchdog(HANG_LIMIT, || {
        // The caller is there: the payload resumes in it.
        let payloads = SendCounter::new();
        let p = payloads.guard();
        let out = run_virtual(catch_unwind(to_thread(move || std::panic::panic_any(p))));
        let payload = out.expect_err("resumed in the caller");
        assert!(payload.is::<SendGuard>());
        drop(payload);
        assert_eq!(payloads.dropped(), 1);

        // The caller is gone before the call panics: dropped on the worker.
        let (payloads, dropped_on) = SendCounter::notifying();
        let p = payloads.guard();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let running = Arc::new(AtomicBool::new(false));
        let running2 = running.clone();
        run_virtual(async move {
            let call = poll_once(to_thread(move || {
                running2.store(true, Ordering::SeqCst);
                release_rx.recv().unwrap();
                std::panic::panic_any(p)
            }))
            .await;
            while !running.load(Ordering::SeqCst) {
                yield_now().await;
            }
            drop(call);
        });
        release_tx.send(()).unwrap();
        dropped_on
            .recv_timeout(HANG_LIMIT)
            .expect("the payload is dropped");
        assert_eq!(payloads.dropped(), 1);
    });
}

#[test]
fn a_from_thread_panic_payload_reaches_the_caller_and_is_dropped_once() {
    watchdog(HANG_LIMIT, || {
        let payloads = SendCounter::new();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let p = payloads.clone();
        run_virtual(async move {
            let handle = RuntimeHandle::current();
            let caller = std::thread::spawn(move || {
                let g = p.guard();
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle.run_sync(move || std::panic::panic_any(g))
                }));
                let payload = out.expect_err("the panic resumes in the caller");
                assert!(payload.is::<SendGuard>());
                assert_eq!(p.dropped(), 0);
                drop(payload);
                assert_eq!(p.dropped(), 1);
                done_tx.send(()).unwrap();
            });
            // Serve the inbox until the caller is done (autojump moves virtual time).
            for _ in 0..100_000 {
                if done_rx.try_recv().is_ok() {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
            caller.join().unwrap();
        });
        assert_eq!(payloads.dropped(), 1);
    });
}

// ---------------------------------------------------------------------------------------
// More shapes: contexts of dropped tasks, streams, sends in cancelled scopes, awaiters.

#[test]
fn what_a_hard_dropped_child_or_scope_set_in_its_context_is_dropped_with_it() {
    let probe = Counted::new(3);
    let p = probe.clone();
    run_virtual(async {
        let fut = poll_once(nursery(async |n| {
            for _ in 0..3 {
                let p = p.clone();
                n.spawn(async move {
                    let _t = VALUE.set(p);
                    sleep_forever().await;
                });
            }
            sleep_forever().await;
        }))
        .await;
        assert_eq!(
            probe.live(),
            5,
            "the probe, `p` and three children's values"
        );
        drop(fut);
        assert_eq!(probe.live(), 2);
        // `ContextVar::scope` dropped before its first poll, and after it.
        let unpolled = VALUE.scope(p.clone(), sleep_forever());
        assert_eq!(probe.live(), 3);
        drop(unpolled);
        assert_eq!(probe.live(), 2);
        let polled = poll_once(VALUE.scope(p.clone(), sleep_forever())).await;
        drop(polled);
        assert_eq!(probe.live(), 2);
        assert!(VALUE.get().is_none(), "nothing escaped");
        drop(p);
    });
    assert_eq!(probe.live(), 1);
}

#[test]
fn a_value_promised_to_a_pending_stream_poll_is_passed_on_when_its_handle_goes() {
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(0);
        let rx2 = rx.clone();
        let mut rx = Box::pin(rx);
        let (w, waker) = counting_waker();
        assert!(poll_with_stream(rx.as_mut(), &waker).is_pending());
        // The stream's place is first in the queue: the send hands it the value.
        let send = poll_once(tx.send(c.guard())).await;
        drop(send);
        assert_eq!(
            w.0.load(Ordering::SeqCst),
            1,
            "the pending poll_next was woken"
        );
        drop(rx); // its handle goes without polling again
        assert_eq!(c.dropped(), 0, "passed on, not dropped");
        rx2.try_recv().expect("the other handle gets it").finish();
        // The last receive handle closed, then dropped, with a value promised to its stream.
        let mut rx2 = Box::pin(rx2);
        assert!(poll_with_stream(rx2.as_mut(), &waker).is_pending());
        drop(poll_once(tx.send(c.guard())).await);
        rx2.close();
        // The stream's place keeps its claim until the handle drops (channel.rs,
        // `close_receiver`: served waiters of closed handles keep their values).
        assert_eq!(c.dropped(), 0);
        drop(rx2);
        assert_eq!(
            c.dropped(),
            1,
            "no receiver left: dropped once, with the handle"
        );
    });
    assert_eq!((c.dropped(), c.finished()), (1, 1));
}

fn poll_with_stream<S: futures::Stream + ?Sized>(
    s: std::pin::Pin<&mut S>,
    waker: &Waker,
) -> Poll<Option<S::Item>> {
    s.poll_next(&mut Context::from_waker(waker))
}

#[test]
fn a_send_first_polled_in_a_cancelled_scope_drops_its_value_once_and_delivers_nothing() {
    let c = DropCounter::new();
    run_virtual(async {
        let (tx, rx) = channel(4);
        let out = CancelScope::new()
            .run_with(async |scope| {
                scope.cancel();
                tx.send(c.guard()).await.unwrap();
                unreachable!("a send in a cancelled scope is dropped there");
            })
            .await;
        assert!(out.is_none());
        assert_eq!(c.dropped(), 1);
        assert!(rx.try_recv().is_err(), "nothing was delivered");
    });
    assert_eq!(c.dropped(), 1);
}

#[test]
fn a_finished_childs_value_whose_awaiter_is_cancelled_is_dropped_once_with_the_nursery() {
    let value = DropCounter::new();
    run_virtual(async {
        let out = move_on_after(
            secs(2),
            nursery(async |n| {
                let v = value.guard();
                let h = n.spawn(async move {
                    sleep(secs(1)).await;
                    Ok::<_, Infallible>(v)
                });
                n.spawn(async {
                    sleep(secs(1)).await;
                });
                // The child finished at 1 s; its value waits in the handle's slot, and
                // the awaiter is cancelled before it takes it.
                sleep(secs(3)).await;
                h.await.unwrap().finish();
                Ok::<_, Infallible>(())
            }),
        )
        .await;
        assert!(out.is_none());
        assert_eq!(value.dropped(), 1);
    });
    assert_eq!((value.dropped(), value.finished()), (1, 0));
}

/// A destructor that spawns while its nursery is dropped, a child that holds a handle to
/// that same nursery (a potential `Rc` cycle: the nursery owns the child, which owns the
/// handle): the new child is dropped too, its captures once.
#[test]
fn a_child_spawned_with_a_handle_by_a_destructor_during_a_hard_drop_is_dropped_once() {
    let c = DropCounter::new();
    let sentinel = Rc::new(());
    run_virtual(async {
        let (c, sentinel) = (&c, &sentinel);
        let fut = poll_once(nursery(async |n| {
            n.spawn_with(async move |n2| {
                let (g, s) = (c.guard(), sentinel.clone());
                let _spawner = common::OnDrop(move || {
                    let (g, s) = (c.guard(), s.clone());
                    n2.spawn_with(async move |n3| {
                        let _keep = (g, s);
                        let g = c.guard();
                        n3.spawn(async move {
                            let _g = g;
                            sleep_forever().await;
                        });
                        sleep_forever().await;
                    });
                });
                let _g = g;
                sleep_forever().await;
            });
            sleep_forever().await;
        }))
        .await;
        assert_eq!(Rc::strong_count(sentinel), 2);
        drop(fut);
        assert_eq!(
            Rc::strong_count(sentinel),
            1,
            "nothing holds the nursery's parts"
        );
    });
    // The first child's guard and the late child's (never polled: its own child never made).
    assert_eq!(c.dropped(), 2);
    assert_eq!(Rc::strong_count(&sentinel), 1);
}

/// Values set in a thread's own context (outside any runtime), and the context of a
/// thread that ran runtimes, are dropped when the thread ends: the thread-locals without
/// a destructor (`context/values.rs`) hand what must be dropped to one that has one.
#[test]
fn values_left_in_a_threads_context_are_dropped_when_the_thread_ends() {
    let probe = Counted::new(4);
    let p = probe.clone();
    std::thread::spawn(move || {
        let _t = VALUE.set(p.clone());
        run_virtual(async {
            assert_eq!(VALUE.get().map(|v| v.id), Some(4));
            let _inner = VALUE.set(p.clone());
            nursery(async |n| {
                n.spawn(async {
                    sleep(secs(1)).await;
                });
            })
            .await
            .unwrap();
        });
        let _scope = CancelScope::new();
        drop(p);
        assert!(VALUE.get().is_some(), "still set in the thread's context");
    })
    .join()
    .unwrap();
    assert_eq!(probe.live(), 1, "copies left behind: {}", probe.live() - 1);
}

/// `started(value)` and then a failure in the same step: the failure cancels the nursery
/// and the body waiting in `start`; the value, taken or not, is dropped once.
#[test]
fn a_value_started_by_a_child_that_then_fails_at_once_is_dropped_once() {
    let value = DropCounter::new();
    let errors = DropCounter::new();
    run_virtual(async {
        let group = nursery(async |n| {
            let (v, e) = (value.guard(), errors.guard());
            let got = n
                .start(async move |_n, status| {
                    status.started(v);
                    Err::<(), _>(e)
                })
                .await;
            // Polled once more (it was woken before the cancellation): it has the value.
            let _held = got.map_err(|_| "no value");
            sleep_forever().await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(value.dropped(), 1);
        assert_eq!(group.len(), 1);
        drop(group);
        assert_eq!(errors.dropped(), 1);
    });
    assert_eq!((value.dropped(), errors.dropped()), (1, 1));
}
