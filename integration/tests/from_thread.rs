//! Behaviour of `RuntimeHandle` (`from_thread`): other threads run closures and futures on
//! a runtime and get their values, panics come back to the caller, a call on a runtime's
//! own thread is refused, a runtime that ended says so instead of leaving the caller
//! blocked, and a `to_thread` worker can call back while its caller awaits it (on every
//! clock). Cases ported from Trio's `trio/_tests/test_threads.py` name the case they port.
//!
//! Every test runs under a watchdog: a lost wake would block a caller forever. Nothing
//! sleeps for real; threads wait on channels the test releases.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use trellis::{Builder, ContextVar, RuntimeHandle, nursery, sleep, sleep_forever, to_thread};

fn guarded<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    common::watchdog(common::HANG_LIMIT, test)
}

fn here() -> ThreadId {
    std::thread::current().id()
}

/// Ports `test_do_in_trio_thread` (and Trio's older `test_run_in_trio_thread`): a plain
/// `std::thread` with a handle runs a closure and a future on the runtime's thread and
/// gets their values back; a panic in either comes back to it.
#[test]
fn test_do_in_trio_thread_a_std_thread_runs_work_on_the_runtime() {
    guarded(|| {
        type Record = Arc<Mutex<Vec<(&'static str, ThreadId)>>>;
        let record: Record = Arc::default();
        let rec = record.clone();
        let (runtime_thread, results) = trellis::run(async move {
            let handle = RuntimeHandle::current();
            let rec2 = rec.clone();
            let child = std::thread::spawn(move || {
                let r = rec2.clone();
                let sync_value = handle.run_sync(move || {
                    r.lock().unwrap().push(("f", here()));
                    2
                });
                let r = rec2.clone();
                let async_value = handle.run(move || async move {
                    trellis::yield_now().await;
                    r.lock().unwrap().push(("afn", here()));
                    3
                });
                let sync_panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle.run_sync(|| -> u8 { panic!("ValueError") })
                }));
                let async_panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle.run(|| async {
                        trellis::yield_now().await;
                        panic!("KeyError")
                    })
                }));
                (
                    sync_value,
                    async_value,
                    common::panic_message(&*sync_panic.unwrap_err()),
                    common::panic_message(&*async_panic.unwrap_err()),
                )
            });
            // The runtime waits for the thread without blocking: joining is thread work.
            let results = to_thread(move || child.join().unwrap()).await;
            (here(), results)
        });
        assert_eq!(
            results,
            (Ok(2), Ok(3), "ValueError".to_owned(), "KeyError".to_owned())
        );
        assert_eq!(
            *record.lock().unwrap(),
            [("f", runtime_thread), ("afn", runtime_thread)],
            "both ran on the runtime's thread"
        );
    });
}

/// Ports `test_do_in_trio_thread_from_trio_thread` and `test_from_thread_inside_trio_thread`:
/// on the runtime's own thread both calls are refused (they would wait for themselves) and
/// the work is not run.
#[test]
fn test_from_thread_inside_trio_thread_is_refused() {
    guarded(|| {
        let ran = Arc::new(Mutex::new(false));
        let r = ran.clone();
        let (sync_err, async_err) = trellis::run(async move {
            let handle = RuntimeHandle::current();
            let r2 = r.clone();
            let sync_err = handle
                .run_sync(move || *r2.lock().unwrap() = true)
                .unwrap_err();
            let async_err = handle
                .run(move || async move { *r.lock().unwrap() = true })
                .unwrap_err();
            (sync_err, async_err)
        });
        assert!(!*ran.lock().unwrap(), "the work was not run");
        for (err, method) in [(sync_err, "run_sync"), (async_err, "run")] {
            assert!(err.is_on_runtime_thread(), "{err}");
            assert!(!err.is_runtime_gone());
            let message = err.to_string();
            assert!(message.contains(method), "{message}");
            assert!(message.contains("own thread"), "{message}");
        }
    });
}

/// A handle used on the thread of *another* runtime is refused too: it would block that
/// runtime.
#[test]
fn a_handle_used_on_another_runtimes_thread_is_refused() {
    guarded(|| {
        let a = trellis::run(async { RuntimeHandle::current() });
        let err = trellis::run(async move { a.run_sync(|| 1).unwrap_err() });
        // `a`'s runtime has ended too, but the thread check comes first.
        assert!(err.is_on_runtime_thread(), "{err}");
        assert!(err.to_string().contains("another trellis runtime"), "{err}");
    });
}

/// Ports `test_run_in_trio_thread_ki`: what interrupts the work on the runtime (there a
/// `KeyboardInterrupt`, here a panic) propagates back to the calling thread, for both
/// calls, and the runtime goes on running.
#[test]
fn test_run_in_trio_thread_ki_a_panic_in_the_work_resumes_in_the_caller() {
    guarded(|| {
        let (after, caught) = Builder::new().autojump().run(async {
            let handle = RuntimeHandle::current();
            let caught = to_thread(move || {
                let mut caught = Vec::new();
                for which in ["sync", "async"] {
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if which == "sync" {
                            handle.run_sync(|| std::panic::panic_any(17_u32)).unwrap();
                        } else {
                            handle
                                .run(|| async {
                                    sleep(Duration::from_secs(1)).await;
                                    std::panic::panic_any(18_u32)
                                })
                                .unwrap();
                        }
                    }));
                    caught.push(*out.unwrap_err().downcast::<u32>().unwrap());
                }
                caught
            })
            .await;
            // The runtime survived both.
            sleep(Duration::from_secs(1)).await;
            ("still running", caught)
        });
        assert_eq!(after, "still running");
        assert_eq!(caught, [17, 18]);
    });
}

/// Ports `test_await_in_trio_thread_while_main_exits`: a future sent with `run` that is
/// still pending when the root returns is dropped with the runtime, and its caller gets
/// the runtime-gone error instead of waiting forever.
#[test]
fn test_await_in_trio_thread_while_main_exits() {
    guarded(|| {
        let (started_tx, started_rx) = mpsc::channel();
        let (handle_tx, handle_rx) = mpsc::channel::<RuntimeHandle>();
        let dropped = Arc::new(Mutex::new(false));
        let d = dropped.clone();
        let thread = std::thread::spawn(move || {
            let handle = handle_rx.recv().unwrap();
            handle.run(move || async move {
                let _on_drop = common::OnDrop(move || *d.lock().unwrap() = true);
                started_tx.send(()).unwrap();
                sleep_forever().await
            })
        });
        trellis::run(async move {
            handle_tx.send(RuntimeHandle::current()).unwrap();
            // Wait (off the runtime's thread) until the future runs, then return.
            to_thread(move || started_rx.recv().unwrap()).await;
        });
        let err = thread.join().unwrap().unwrap_err();
        assert!(err.is_runtime_gone(), "{err}");
        assert!(*dropped.lock().unwrap(), "the future was dropped");
    });
}

/// Ports `test_from_thread_run_during_shutdown` (Trio's `RunFinishedError`): once the
/// runtime has finished, both calls fail at once with an error that says so.
#[test]
fn test_from_thread_run_during_shutdown_fails_once_the_runtime_finished() {
    guarded(|| {
        let handle = trellis::run(async { RuntimeHandle::current() });
        assert!(handle.is_finished());
        let err = handle.run_sync(|| 1).unwrap_err();
        assert!(err.is_runtime_gone());
        assert!(!err.is_on_runtime_thread());
        assert!(err.to_string().contains("has finished"), "{err}");
        assert!(handle.run(|| async { 1 }).unwrap_err().is_runtime_gone());
        // From another thread as well.
        let err = std::thread::spawn(move || handle.run_sync(|| ()).unwrap_err())
            .join()
            .unwrap();
        assert!(err.is_runtime_gone());
    });
}

/// Ports `test_trio_from_thread_token` and `test_trio_to_thread_run_sync_token`: the
/// handle a worker gets from code it runs on the runtime is the caller's; clones are
/// equal; another runtime's handle is not.
#[test]
fn test_trio_from_thread_token_is_the_same_runtime() {
    guarded(|| {
        let other = trellis::run(async { RuntimeHandle::current() });
        trellis::run(async move {
            let caller = RuntimeHandle::current();
            let h = caller.clone();
            let callee = to_thread(move || h.run_sync(RuntimeHandle::current).unwrap()).await;
            assert_eq!(callee, caller);
            assert_eq!(caller.clone(), caller);
            assert_ne!(caller, other);
            assert!(format!("{caller:?}").contains("RuntimeHandle"));
        });
    });
}

/// Ports `test_trio_from_thread_run` and `test_trio_from_thread_run_sync`: a `to_thread`
/// worker calls back into the runtime while its caller awaits it, the main use. On the
/// manual mock clock this is not a deadlock (the call is thread work in flight).
#[test]
fn test_trio_from_thread_run_a_worker_calls_back_while_its_caller_awaits_it() {
    guarded(|| {
        for clock in ["mock", "autojump", "real"] {
            let builder = match clock {
                "mock" => Builder::new().mock_clock(),
                "autojump" => Builder::new().autojump(),
                _ => Builder::new(),
            };
            let record = builder.run(async {
                let handle = RuntimeHandle::current();
                let start = trellis::now();
                to_thread(move || {
                    let mut record = vec!["in thread".to_owned()];
                    let elapsed = handle.run_sync(move || trellis::now() - start).unwrap();
                    record.push(format!("sync back in trellis at +{elapsed:?}"));
                    let line = handle
                        .run(|| async {
                            trellis::yield_now().await;
                            "back in trellis".to_owned()
                        })
                        .unwrap();
                    record.push(line);
                    record
                })
                .await
            });
            let expected_sync = match clock {
                "real" => record[1].clone(), // real time moved; its value is not asserted
                _ => "sync back in trellis at +0ns".to_owned(),
            };
            assert_eq!(
                record,
                [
                    "in thread".to_owned(),
                    expected_sync,
                    "back in trellis".to_owned()
                ],
                "{clock}"
            );
        }
    });
}

/// On autojump, a worker blocked in `run` does not hold time back: the future it sent
/// sleeps for an hour of virtual time, which passes at once, and the caller's deadlines
/// fire in order around it.
#[test]
fn a_worker_blocked_in_run_lets_autojump_move_time_for_the_work_it_sent() {
    guarded(|| {
        const HOUR: Duration = Duration::from_secs(3600);
        let (waited, ticks) = Builder::new().autojump().run(async {
            let handle = RuntimeHandle::current();
            let ticks = std::cell::Cell::new(0);
            let waited = nursery(async |n| {
                n.spawn(async {
                    for _ in 0..3 {
                        sleep(Duration::from_secs(1000)).await;
                        ticks.set(ticks.get() + 1);
                    }
                });
                let waited = to_thread(move || {
                    handle
                        .run(|| async {
                            let start = trellis::now();
                            sleep(HOUR).await;
                            trellis::now() - start
                        })
                        .unwrap()
                })
                .await;
                Ok::<_, ()>(waited)
            })
            .await
            .unwrap();
            (waited, ticks.get())
        });
        assert_eq!(waited, HOUR);
        assert_eq!(ticks, 3, "the sibling's deadlines fired meanwhile");
    });
}

/// On the manual mock clock, work sent back by a worker that can never complete (it
/// waits for a timer nobody advances to) is a deadlock, reported as a panic instead of a
/// hang; the blocked worker is released with the runtime-gone error.
#[test]
fn a_callback_that_can_never_complete_on_the_mock_clock_is_reported_as_a_deadlock() {
    guarded(|| {
        let (err_tx, err_rx) = mpsc::channel();
        let message = common::panic_message_of(move || {
            Builder::new().mock_clock().run(async move {
                let handle = RuntimeHandle::current();
                to_thread(move || {
                    let out = handle.run(|| sleep(Duration::from_secs(1)));
                    err_tx.send(out).unwrap();
                })
                .await
            })
        });
        assert!(message.contains("deadlock"), "{message}");
        assert!(
            message.contains("`RuntimeHandle::run` future sent from another thread"),
            "the report names the blocked system task: {message}"
        );
        let err = err_rx.recv().unwrap().unwrap_err();
        assert!(err.is_runtime_gone(), "{err}");
    });
}

/// Two runtimes on two threads: work sent with runtime A's handle runs on A (its thread,
/// its handle), even while runtime B runs meanwhile on another thread.
#[test]
fn a_handle_of_runtime_a_sends_work_to_a_while_runtime_b_runs() {
    guarded(|| {
        let (a_tx, a_rx) = mpsc::channel::<RuntimeHandle>();
        let (release_a_tx, release_a_rx) = mpsc::channel::<()>();
        let a = std::thread::spawn(move || {
            trellis::run(async move {
                a_tx.send(RuntimeHandle::current()).unwrap();
                to_thread(move || release_a_rx.recv().unwrap()).await;
                here()
            })
        });
        let handle_a = a_rx.recv().unwrap();
        let b = std::thread::spawn(move || {
            trellis::run(async move {
                let handle_b = RuntimeHandle::current();
                let b_thread = here();
                // From a worker of B, use A's handle.
                let (thread, same_as_a, same_as_b) = to_thread(move || {
                    let a2 = handle_a.clone();
                    handle_a
                        .run(move || async move {
                            let current = RuntimeHandle::current();
                            (here(), current == a2, current == handle_b)
                        })
                        .unwrap()
                })
                .await;
                (b_thread, thread, same_as_a, same_as_b)
            })
        });
        let (b_thread, ran_on, same_as_a, same_as_b) = b.join().unwrap();
        release_a_tx.send(()).unwrap();
        let a_thread = a.join().unwrap();
        assert_eq!(ran_on, a_thread, "the work ran on A's thread");
        assert_ne!(ran_on, b_thread);
        assert!(same_as_a && !same_as_b, "and in runtime A");
    });
}

/// A future sent with `run` is a system task: it may open a nursery, spawn children and
/// use `to_thread` itself, and its caller gets the nursery's value.
#[test]
fn a_future_sent_with_run_may_open_a_nursery_and_use_to_thread() {
    guarded(|| {
        let total = Builder::new().autojump().run(async {
            let handle = RuntimeHandle::current();
            to_thread(move || {
                handle
                    .run(|| async {
                        let sum = std::cell::Cell::new(0);
                        nursery(async |n| {
                            for i in 1..=3u64 {
                                let sum = &sum;
                                n.spawn(async move {
                                    sleep(Duration::from_secs(i)).await;
                                    sum.set(sum.get() + to_thread(move || i * 10).await);
                                });
                            }
                        })
                        .await
                        .unwrap();
                        sum.get()
                    })
                    .unwrap()
            })
            .await
        });
        assert_eq!(total, 60);
    });
}

/// A caller of `to_thread` cancelled while its worker is blocked after a callback: the
/// runtime does not wait for the worker, and the worker's next call gets the runtime-gone
/// error instead of hanging. The worker itself cancels its caller (through a
/// `RemoteCancel`), so the order is fixed without real time.
#[test]
fn a_cancelled_caller_does_not_wait_for_a_worker_that_calls_back() {
    guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (out_tx, out_rx) = mpsc::channel();
        let cancelled = Builder::new().autojump().run(async move {
            let handle = RuntimeHandle::current();
            trellis::cancel_scope(async |scope| {
                let remote = scope.remote();
                to_thread(move || {
                    let first = handle.run_sync(|| 1);
                    remote.cancel();
                    release_rx.recv().unwrap();
                    // By now the runtime has ended.
                    let second = handle.run_sync(|| 2);
                    out_tx.send((first, second)).unwrap();
                })
                .await
            })
            .await
            .is_none()
        });
        assert!(cancelled);
        release_tx.send(()).unwrap();
        let (first, second) = out_rx.recv().unwrap();
        assert_eq!(first, Ok(1));
        assert!(second.unwrap_err().is_runtime_gone());
    });
}

static VAR: ContextVar<&'static str> = ContextVar::new("trio_test_contextvar");

/// Ports `test_trio_from_thread_run_sync_contextvars` and
/// `test_trio_from_thread_run_contextvars`: work sent back by a worker runs in a copy of
/// the worker's context (which is a copy of the caller's): it sees what the worker set,
/// and what it sets reaches neither the worker nor the caller.
#[test]
fn test_trio_from_thread_run_contextvars_work_runs_in_a_copy_of_the_threads_context() {
    guarded(|| {
        let (caller_after, record) = Builder::new().autojump().run(async {
            VAR.set("main");
            let handle = RuntimeHandle::current();
            let record = to_thread(move || {
                let parent = VAR.get();
                VAR.set("worker");
                let back_sync = handle
                    .run_sync(|| {
                        let seen = VAR.get();
                        VAR.set("back_in_main");
                        (seen, VAR.get())
                    })
                    .unwrap();
                let back_async = handle
                    .run(|| async {
                        let seen = VAR.get();
                        VAR.set("back_in_main");
                        trellis::yield_now().await;
                        (seen, VAR.get())
                    })
                    .unwrap();
                (parent, back_sync, back_async, VAR.get())
            })
            .await;
            (VAR.get(), record)
        });
        let (parent, back_sync, back_async, thread_after) = record;
        assert_eq!(caller_after, Some("main"));
        assert_eq!(parent, Some("main"));
        assert_eq!(back_sync, (Some("worker"), Some("back_in_main")));
        assert_eq!(back_async, (Some("worker"), Some("back_in_main")));
        assert_eq!(thread_after, Some("worker"));
    });
}

/// A plain thread's own context reaches the runtime with its work too.
#[test]
fn a_std_threads_context_reaches_the_work_it_sends() {
    guarded(|| {
        let seen = trellis::run(async {
            let handle = RuntimeHandle::current();
            let thread = std::thread::spawn(move || {
                VAR.set("from a std thread");
                handle.run_sync(|| VAR.get()).unwrap()
            });
            to_thread(move || thread.join().unwrap()).await
        });
        assert_eq!(seen, Some("from a std thread"));
    });
}

/// A panic in the destructor of a completed `run` future reaches the caller (as a
/// child's does its nursery), and the runtime goes on.
#[test]
fn a_panic_in_the_destructor_of_a_run_future_resumes_in_the_caller() {
    struct PanicsOnDrop;
    impl std::future::Future for PanicsOnDrop {
        type Output = u8;
        fn poll(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<u8> {
            std::task::Poll::Ready(5)
        }
    }
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("in drop");
        }
    }
    guarded(|| {
        let (message, after) = Builder::new().autojump().run(async {
            let handle = RuntimeHandle::current();
            let message =
                to_thread(move || common::panic_message_of(move || handle.run(|| PanicsOnDrop)))
                    .await;
            sleep(Duration::from_secs(1)).await;
            (message, "still running")
        });
        assert_eq!(message, "in drop");
        assert_eq!(after, "still running");
    });
}
