//! Attacks on the guide's "Inside a tokio program": "Nurseries, cancel scopes, JoinHandles,
//! finally, remote cancels and context variables are plain futures: they run under any
//! executor, tokio's included ... What needs a trellis runtime is trellis's clock: sleep,
//! now, deadlines and timeouts ... panic with a message saying so."
//!
//! Every test drives trellis's futures with tokio's current-thread runtime (a `LocalSet`
//! where two tasks must interleave) or with `futures::executor`, never with a trellis
//! runtime, and never with real time: what waits, waits on a channel, an event or another
//! thread. Each runs under a watchdog, since a lost wake-up under a foreign executor is a
//! hang.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

use common::{DropCounter, HANG_LIMIT, panic_message, watchdog};
use futures::channel::oneshot;
use trellis::{
    CancelScope, Context, ContextVar, Event, Lock, cancel_scope, cancelled, channel,
    current_effective_deadline, finally, nursery, shield,
};

/// Suspends once, waking itself first: a yield for any executor.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Runs `fut` to completion on a tokio current-thread runtime inside a `LocalSet` (so
/// `spawn_local` works), on a watchdog thread.
fn on_tokio<T: Send + 'static, F: Future<Output = T> + 'static>(
    make: impl FnOnce() -> F + Send + 'static,
) -> T {
    watchdog(HANG_LIMIT, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        let local = tokio::task::LocalSet::new();
        rt.block_on(local.run_until(make()))
    })
}

/// The guide: a nursery's children run under tokio, the first failure cancels the siblings
/// and every error comes back, in the order of occurrence. (The two failing children fail in
/// their first poll, both in the round that starts them: tokio's `yield_now` wakes in the
/// reverse order, so failures after one would come in tokio's order.)
#[test]
fn a_nursery_under_tokio_cancels_siblings_at_the_first_failure_and_keeps_every_error() {
    let (errors, dropped) = on_tokio(|| async {
        let drops = DropCounter::new();
        let (tx, rx) = oneshot::channel::<()>();
        let out = nursery(async |n| {
            let guard = drops.guard();
            n.spawn(async move {
                let _guard = guard;
                // Waits for a message that never comes: only the cancellation ends it.
                let _ = rx.await;
                Ok(())
            });
            n.spawn(async { Err::<(), _>("first".to_string()) });
            n.spawn(async { Err::<(), _>("second".to_string()) });
            // Cancelled by the first failure before it can fail.
            n.spawn(async {
                tokio::task::yield_now().await;
                Err::<(), _>("third".to_string())
            });
            Ok(())
        })
        .await;
        drop(tx);
        (out.unwrap_err().into_errors(), drops.dropped())
    });
    assert_eq!(errors, ["first", "second"]);
    assert_eq!(dropped, 1);
}

/// "A panic in a child is resumed from the nursery" under tokio too, once the siblings are
/// gone (their destructors ran before the panic reaches the caller).
#[test]
fn a_child_panic_under_tokio_is_resumed_after_the_siblings_are_dropped() {
    let (message, dropped_before) = on_tokio(|| async {
        let drops = DropCounter::new();
        let seen = Cell::new(usize::MAX);
        let caught = common::catch_unwind(async {
            nursery(async |n| {
                let guard = drops.guard();
                n.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
                n.spawn(async {
                    tokio::task::yield_now().await;
                    panic!("child panicked under tokio");
                });
            })
            .await
        })
        .await;
        seen.set(drops.dropped());
        (panic_message(&*caught.unwrap_err()), seen.get())
    });
    assert_eq!(message, "child panicked under tokio");
    assert_eq!(dropped_before, 1);
}

/// "remote cancels ... run under any executor": a `RemoteCancel` used from another thread
/// must wake the tokio task that polls the scope (there is no trellis runtime to apply it
/// "at the runtime's next poll").
#[test]
fn a_remote_cancel_from_another_thread_wakes_a_scope_polled_by_tokio() {
    let (out, cancel_caught) = on_tokio(|| async {
        let scope = CancelScope::new();
        let remote = scope.remote();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let canceller = std::thread::spawn(move || {
            ready_rx.recv().expect("the scope started");
            remote.cancel();
        });
        let out = scope
            .clone()
            .run(async {
                ready_tx.send(()).expect("the canceller waits");
                std::future::pending::<u32>().await
            })
            .await;
        canceller.join().expect("the canceller");
        (out, scope.cancelled_caught())
    });
    assert_eq!(out, None);
    assert!(cancel_caught);
}

/// The same, when the scope is a nursery's enclosing scope and the cancelled children wait
/// on tokio's side: every child is dropped and the scope gives `None`.
#[test]
fn a_remote_cancel_from_another_thread_ends_a_nursery_whose_children_wait_under_tokio() {
    let (out, dropped) = on_tokio(|| async {
        let drops = DropCounter::new();
        let out = cancel_scope(async |scope| {
            let remote = scope.remote();
            nursery(async |n| {
                for _ in 0..3 {
                    let guard = drops.guard();
                    n.spawn(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                    });
                }
                n.spawn(async move {
                    tokio::task::yield_now().await;
                    std::thread::spawn(move || remote.cancel())
                        .join()
                        .expect("the canceller");
                    std::future::pending::<()>().await;
                });
            })
            .await
        })
        .await;
        (out.is_none(), drops.dropped())
    });
    assert!(out);
    assert_eq!(dropped, 3);
}

/// "What needs a trellis runtime is trellis's clock: ... deadlines and timeouts ... panic
/// with a message saying so."
#[test]
fn a_timeout_under_tokio_panics_saying_it_needs_a_trellis_runtime() {
    let message = on_tokio(|| async {
        let caught =
            common::catch_unwind(trellis::move_on_after(Duration::from_secs(1), async {})).await;
        panic_message(&*caught.unwrap_err())
    });
    assert!(
        message.contains("trellis runtime"),
        "the message says what is missing: {message}"
    );
}

/// The same panic from inside a child reaches the caller as the child's panic, and the
/// nursery under tokio still drops its siblings first.
#[test]
fn trellis_sleep_in_a_child_under_tokio_panics_through_the_nursery() {
    let (message, dropped) = on_tokio(|| async {
        let drops = DropCounter::new();
        let caught = common::catch_unwind(async {
            nursery(async |n| {
                let guard = drops.guard();
                n.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
                n.spawn(trellis::sleep(Duration::from_millis(1)));
            })
            .await
        })
        .await;
        (panic_message(&*caught.unwrap_err()), drops.dropped())
    });
    assert!(message.contains("trellis runtime"), "{message}");
    assert_eq!(dropped, 1);
}

/// Two tokio tasks on one thread each run a nursery; one cancels its own scope while the
/// other's children are suspended. The scope position is thread-local state, set around
/// each poll: the cancellation must stay in its own tree, and each tree must see its own
/// `cancelled()`.
#[test]
fn two_nurseries_in_two_tokio_tasks_interleave_without_sharing_cancellation() {
    let (a, b) = on_tokio(|| async {
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let a = tokio::task::spawn_local(async move {
            nursery(async |n| {
                let child = n.spawn(async move {
                    go_rx.await.expect("b sends");
                    // B's cancellation happened while this child was suspended. Through a
                    // shield, `cancelled()` tells whether anything enclosing is cancelled.
                    let in_cancelled_scope =
                        shield(async { futures::FutureExt::now_or_never(cancelled()) }).await;
                    Ok::<_, std::convert::Infallible>(in_cancelled_scope.is_some())
                });
                Ok::<_, std::convert::Infallible>(child.await.expect("the child finishes"))
            })
            .await
            .unwrap()
        });
        let b = tokio::task::spawn_local(async move {
            let out = cancel_scope(async |scope| {
                nursery(async |n| {
                    n.spawn(async move {
                        tokio::task::yield_now().await;
                        scope.cancel();
                        std::future::pending::<()>().await;
                    });
                })
                .await
            })
            .await;
            go_tx.send(()).expect("a waits");
            out.is_none()
        });
        (a.await.expect("task a"), b.await.expect("task b"))
    });
    assert!(!a, "task A saw task B's cancellation");
    assert!(b);
}

/// A nursery whose tokio task is aborted is dropped from outside (a hard cancel): every
/// child is dropped with it, once, and nothing runs afterwards.
#[test]
fn a_nursery_in_an_aborted_tokio_task_drops_every_child_once() {
    let (dropped, finished) = on_tokio(|| async {
        let drops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let finished = std::rc::Rc::new(Cell::new(0));
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let task = {
            let (drops, finished) = (drops.clone(), finished.clone());
            tokio::task::spawn_local(async move {
                let _ = nursery(async |n| {
                    for _ in 0..4 {
                        let count = Count(drops.clone());
                        let finished = finished.clone();
                        n.spawn(async move {
                            let _count = count;
                            std::future::pending::<()>().await;
                            finished.set(finished.get() + 1);
                        });
                    }
                })
                .await;
            })
        };
        // Let the task start its children, then abort it.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let err = task.await.expect_err("the task was aborted");
        assert!(err.is_cancelled());
        (
            drops.load(std::sync::atomic::Ordering::SeqCst),
            finished.get(),
        )
    });
    assert_eq!(dropped, 4);
    assert_eq!(finished, 0);
}

/// A `JoinHandle` under `futures::executor`: awaited, it gives the child's value; cancelled,
/// a cancelled `JoinError`, and the nursery is not failed by it.
#[test]
fn join_handles_under_a_futures_executor_give_values_and_cancellations() {
    let (value, cancelled_err, nursery_ok) = watchdog(HANG_LIMIT, || {
        futures::executor::block_on(async {
            let mut value = 0;
            let mut cancelled_err = false;
            let out = nursery(async |n| {
                let quick = n.spawn(async {
                    yield_once().await;
                    Ok::<u32, std::convert::Infallible>(7)
                });
                let stuck =
                    n.spawn(std::future::pending::<Result<u32, std::convert::Infallible>>());
                value = quick.await.expect("the quick child");
                stuck.cancel();
                cancelled_err = stuck.await.expect_err("cancelled").is_cancelled();
            })
            .await;
            (value, cancelled_err, out.is_ok())
        })
    });
    assert_eq!(value, 7);
    assert!(cancelled_err);
    assert!(nursery_ok);
}

/// `finally` under tokio: the clean-up runs, to its end, when an enclosing scope cancels
/// the work, and the cancellation then goes on (the scope gives `None`).
#[test]
fn finally_under_tokio_runs_its_async_cleanup_when_the_scope_is_cancelled() {
    let (out, log) = on_tokio(|| async {
        let log = RefCell::new(Vec::new());
        let out = cancel_scope(async |scope| {
            finally(
                async {
                    log.borrow_mut().push("work");
                    scope.cancel();
                    std::future::pending::<u32>().await
                },
                async {
                    tokio::task::yield_now().await; // the clean-up may suspend
                    log.borrow_mut().push("cleanup");
                },
            )
            .await
        })
        .await;
        (out, log.into_inner())
    });
    assert_eq!(out, None);
    assert_eq!(log, ["work", "cleanup"]);
}

/// A shield under tokio keeps its body running through the enclosing cancellation, and the
/// cancellation takes effect when the shield's body is done: the value a tokio task sends
/// after the cancellation still reaches the shielded receive.
#[test]
fn a_shield_under_tokio_finishes_its_body_before_the_cancellation_lands() {
    let (out, shielded_got) = on_tokio(|| async {
        let shielded_got = Cell::new(None);
        let (tx, rx) = oneshot::channel::<u32>();
        let (cancelled_tx, cancelled_rx) = oneshot::channel::<()>();
        let sender = tokio::task::spawn_local(async move {
            cancelled_rx.await.expect("the scope is cancelled first");
            tokio::task::yield_now().await;
            tx.send(5).expect("the shield waits");
        });
        let out = cancel_scope(async |scope| {
            nursery(async |n| {
                n.spawn(async {
                    let v = shield(async { rx.await.expect("sent") }).await;
                    shielded_got.set(Some(v));
                    // Cancelled: dropped here.
                    tokio::task::yield_now().await;
                    shielded_got.set(None);
                });
                n.spawn(async move {
                    scope.cancel();
                    cancelled_tx.send(()).expect("the sender waits");
                });
            })
            .await
        })
        .await;
        sender.await.expect("the sender");
        (out.is_none(), shielded_got.get())
    });
    assert!(out);
    assert_eq!(shielded_got, Some(5));
}

static REQUEST: ContextVar<u32> = ContextVar::new("request");

/// Context variables under tokio: a nursery child starts with a copy of its spawner's
/// context and its sets stay in it, exactly as on trellis's runtime.
#[test]
fn context_variables_under_tokio_are_copied_into_children_and_stay_there() {
    let (seen_in_child, after) = on_tokio(|| async {
        Context::new()
            .run(async {
                REQUEST.set(1);
                let seen = nursery(async |n| {
                    let child = n.spawn(async {
                        let seen = REQUEST.get();
                        REQUEST.set(2);
                        tokio::task::yield_now().await;
                        Ok::<_, std::convert::Infallible>(seen)
                    });
                    Ok::<_, std::convert::Infallible>(child.await.expect("the child"))
                })
                .await
                .unwrap();
                (seen, REQUEST.get())
            })
            .await
    });
    assert_eq!(seen_in_child, Some(1));
    assert_eq!(after, Some(1));
}

/// "Code outside a runtime ... uses the thread's context" (ContextVar's docs): two tokio
/// tasks on one thread share it. The guide's recipe gives each its own with `Context::run`,
/// and then what one sets, the other never sees, across their interleaved suspensions.
#[test]
fn contexts_run_per_tokio_task_keep_two_interleaved_tasks_apart() {
    let seen = on_tokio(|| async {
        let task = |id: u32| {
            tokio::task::spawn_local(Context::new().run(async move {
                REQUEST.set(id);
                let mut seen = Vec::new();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    seen.push(REQUEST.get());
                }
                seen
            }))
        };
        let (a, b) = (task(10), task(20));
        (a.await.expect("a"), b.await.expect("b"))
    });
    assert_eq!(seen.0, [Some(10); 3]);
    assert_eq!(seen.1, [Some(20); 3]);
}

/// trellis's `Event` and `Lock` across two tokio tasks: the wakers are tokio's, and a set
/// or a release in one task wakes the other (FIFO for the lock).
#[test]
fn event_and_lock_wake_waiters_in_other_tokio_tasks() {
    let order = on_tokio(|| async {
        let event = std::rc::Rc::new(Event::new());
        let lock = std::rc::Rc::new(Lock::new(()));
        let order = std::rc::Rc::new(RefCell::new(Vec::new()));
        let held = lock.lock().await;
        let mut tasks = Vec::new();
        for id in 0..3 {
            let (event, lock, order) = (event.clone(), lock.clone(), order.clone());
            tasks.push(tokio::task::spawn_local(async move {
                event.wait().await;
                let _guard = lock.lock().await;
                order.borrow_mut().push(id);
                tokio::task::yield_now().await;
            }));
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        event.set();
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            task.await.expect("a waiter");
        }
        order.borrow().clone()
    });
    assert_eq!(order, [0, 1, 2]);
}

/// A memory channel between a nursery child and a tokio task: every value arrives, in
/// order, and end-of-stream comes once the sender is gone.
#[test]
fn a_channel_between_a_nursery_child_and_a_tokio_task_delivers_everything() {
    let received = on_tokio(|| async {
        let (tx, rx) = channel::<u32>(1);
        let consumer = tokio::task::spawn_local(async move {
            let mut got = Vec::new();
            while let Ok(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        nursery(async |n| {
            n.spawn(async move {
                for v in 0..50 {
                    tx.send(v).await.expect("the consumer is there");
                }
            });
        })
        .await
        .unwrap();
        consumer.await.expect("the consumer")
    });
    assert_eq!(received, (0..50).collect::<Vec<_>>());
}

/// Without a deadline, `current_effective_deadline` needs no clock: under tokio it answers
/// `None` (no deadline anywhere), and a cancelled scope's body sees its cancellation.
#[test]
fn scope_queries_under_tokio_need_no_clock() {
    let (deadline, cancelled_seen) = on_tokio(|| async {
        let deadline = cancel_scope(async |_| current_effective_deadline())
            .await
            .expect("not cancelled");
        let scope = CancelScope::new();
        scope.cancel();
        let cancelled_seen = scope
            .clone()
            .run(shield(async {
                futures::FutureExt::now_or_never(cancelled()).is_some()
            }))
            .await;
        (deadline, cancelled_seen)
    });
    assert_eq!(deadline, None);
    // A scope cancelled before its first poll runs its body; inside a shield, `cancelled()`
    // is ready at once (the shield's body then returns, and the scope its value).
    assert_eq!(cancelled_seen, Some(true));
}

/// A child under tokio woken from another thread (a std thread completing a oneshot): the
/// child's waker is trellis's, and it must wake the tokio task that polls the nursery.
#[test]
fn a_child_under_tokio_woken_from_another_thread_finishes() {
    let values = on_tokio(|| async {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..8 {
            let (tx, rx) = oneshot::channel::<u32>();
            senders.push(tx);
            receivers.push(rx);
        }
        let thread = std::thread::spawn(move || {
            go_rx.recv().expect("the children are waiting");
            for (i, tx) in senders.into_iter().enumerate() {
                tx.send(i as u32).expect("the child waits");
            }
        });
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            for rx in receivers {
                let got = &got;
                n.spawn(async move {
                    let value = rx.await.expect("sent");
                    got.borrow_mut().push(value);
                });
            }
            n.spawn(async move {
                yield_once().await;
                go_tx.send(()).expect("the thread waits");
            });
        })
        .await
        .unwrap();
        thread.join().expect("the sender thread");
        let mut got = got.into_inner();
        got.sort_unstable();
        got
    });
    assert_eq!(values, (0..8).collect::<Vec<_>>());
}

/// Two nurseries polled side by side by one `FuturesUnordered` inside one tokio task (no
/// trellis scope around either): one is cancelled by its own scope, the other's children
/// keep running and finish, and neither sees the other's position.
#[test]
fn sibling_nurseries_in_one_futures_unordered_keep_their_own_trees() {
    let (cancelled_one, finished_other) = on_tokio(|| async {
        use futures::StreamExt;
        let finished = Cell::new(0);
        let (tx, rx) = oneshot::channel::<()>();
        let one = async {
            cancel_scope(async |scope| {
                nursery(async |n| {
                    n.spawn(async move {
                        yield_once().await;
                        scope.cancel();
                        let _ = tx.send(());
                        std::future::pending::<()>().await;
                    });
                })
                .await
            })
            .await
            .is_none()
        };
        let other = async {
            nursery(async |n| {
                for _ in 0..3 {
                    n.spawn(async {
                        yield_once().await;
                        finished.set(finished.get() + 1);
                    });
                }
                let _ = rx.await;
                // After the sibling's cancellation, this body still runs and spawns.
                n.spawn(async {
                    yield_once().await;
                    finished.set(finished.get() + 1);
                });
            })
            .await
            .is_ok()
        };
        let all = futures::stream::FuturesUnordered::new();
        all.push(futures::future::Either::Left(one));
        all.push(futures::future::Either::Right(other));
        let results: Vec<bool> = all.collect().await;
        (results.iter().all(|ok| *ok), finished.get())
    });
    assert!(cancelled_one);
    assert_eq!(finished_other, 4);
}

/// `to_thread`'s "# Panics: Polling the future outside a trellis runtime panics": under
/// tokio it is outside one (the worker pool is the runtime's), and the message says what to
/// do instead of hanging.
#[test]
fn to_thread_under_tokio_panics_saying_it_needs_a_trellis_runtime() {
    let message = on_tokio(|| async {
        let caught = common::catch_unwind(trellis::to_thread(|| 6 * 7)).await;
        panic_message(&*caught.expect_err("no trellis runtime runs here"))
    });
    assert!(message.contains("needs a trellis runtime"), "{message}");
}
