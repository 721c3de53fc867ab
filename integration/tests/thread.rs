//! Behaviour of `to_thread`: results and panics come back, a cancelled caller abandons the
//! call without waiting for it, the pool is bounded, autojump waits for thread work, and
//! no worker thread outlives its runtime. Cases ported from Trio's
//! `trio/_tests/test_threads.py` name the case they port.
//!
//! The tests count the process's `trellis-thread` threads, so they run one at a time
//! (`serial`). Nothing here sleeps for real to wait for something: calls block on
//! channels and barriers that the test releases.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use trellis::{Builder, ContextVar, move_on_after, nursery, sleep, to_thread};

const HOUR: Duration = Duration::from_secs(3600);

/// One test at a time: they count the worker threads of the whole process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The live worker threads of every runtime of this process.
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists the process's threads")
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.ok()?.path().join("comm")).ok()?;
            (comm.trim_end() == "trellis-thread").then_some(())
        })
        .count()
}

/// Waits (spinning, not sleeping) until no worker thread is left. An ended runtime's idle
/// workers exit at once, far sooner than the 10 s idle timeout: it is the bound here, so
/// that a pool that only exits by the idle timeout fails.
fn assert_workers_exit() {
    let start = Instant::now();
    while worker_threads() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} worker threads are still alive after their runtime ended",
            worker_threads()
        );
        std::thread::yield_now();
    }
}

fn guarded<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let _serial = serial();
    common::watchdog(common::HANG_LIMIT, test)
}

/// Ports `test_run_in_worker_thread`: the call runs on another thread and its value comes
/// back.
#[test]
fn to_thread_runs_on_another_thread_and_returns_its_value() {
    guarded(|| {
        let here = std::thread::current().id();
        let (value, there) =
            trellis::run(async { to_thread(|| (42, std::thread::current().id())).await });
        assert_eq!(value, 42);
        assert_ne!(there, here);
        // Also on the autojump clock: the result arrives, time does not matter.
        let value = Builder::new()
            .autojump()
            .run(async { to_thread(|| 7).await });
        assert_eq!(value, 7);
    });
}

/// Ports `test_run_in_worker_thread_exception`: a panic in the call resumes in the caller,
/// with its payload, and the runtime stays usable for the caller's nursery.
#[test]
fn a_panic_in_the_call_resumes_in_the_caller() {
    guarded(|| {
        let caught = std::panic::catch_unwind(|| {
            trellis::run(async { to_thread(|| -> u8 { std::panic::panic_any(17_u32) }).await })
        });
        let payload = caught.expect_err("the panic resumes in the caller");
        assert_eq!(payload.downcast_ref::<u32>(), Some(&17));

        // In a nursery child: the panic is the nursery's, resumed from it unchanged.
        let caught = std::panic::catch_unwind(|| {
            trellis::run(async {
                nursery(async |n| {
                    n.spawn(async {
                        to_thread(|| -> () { panic!("from the thread") }).await;
                    });
                })
                .await
            })
        });
        let payload = caught.expect_err("the panic resumes from the nursery");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"from the thread"));
        assert_workers_exit();
    });
}

/// Ports `test_run_in_worker_thread_cancellation` (with `abandon_on_cancel=True`): a
/// cancelled caller abandons the call; the runtime does not wait for it, and the thread
/// still finishes the call.
#[test]
fn a_cancelled_caller_abandons_the_call_and_the_thread_still_finishes() {
    guarded(|| {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let out = trellis::run(async move {
            let scope = trellis::CancelScope::new();
            let cancel = scope.clone();
            scope
                .run(nursery(async |n| {
                    n.spawn(async move {
                        to_thread(move || {
                            started_tx.send(()).unwrap();
                            release_rx.recv().unwrap();
                            done_tx.send("finished").unwrap();
                        })
                        .await;
                        Ok::<(), ()>(())
                    });
                    // Cancelled once the call runs (a timeout could fire while the call
                    // is still queued on a loaded machine, and a queued call never starts).
                    to_thread(move || started_rx.recv())
                        .await
                        .expect("the call started");
                    cancel.cancel();
                    Ok(())
                }))
                .await
        });
        // The runtime ended while the call was blocked: it did not wait for it.
        assert!(out.is_none());
        assert!(done_rx.try_recv().is_err(), "the call is still blocked");
        release_tx.send(()).unwrap();
        assert_eq!(
            done_rx.recv(),
            Ok("finished"),
            "the thread finished its call"
        );
        assert_workers_exit();
    });
}

/// A call still queued (every thread busy) when its caller is cancelled is never started.
#[test]
fn a_queued_call_whose_caller_is_cancelled_never_runs() {
    guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        Builder::new().thread_limit(1).run(async move {
            nursery(async |n| {
                n.spawn(async move {
                    to_thread(move || release_rx.recv().unwrap()).await;
                });
                trellis::yield_now().await;
                let queued = to_thread(move || r.store(1, Ordering::SeqCst));
                assert_eq!(move_on_after(Duration::from_millis(10), queued).await, None);
                release_tx.send(()).unwrap();
            })
            .await
            .unwrap();
        });
        assert_workers_exit();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "the abandoned call never ran"
        );
    });
}

/// A call abandoned by a cancelled caller no longer counts as thread work: on the autojump
/// clock, time jumps again at once although the abandoned call is still blocked.
#[test]
fn an_abandoned_call_no_longer_holds_autojump_back() {
    guarded(|| {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let slept = Builder::new().autojump().run(async move {
            let out = trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    n.spawn(async {
                        // The call is submitted at the body's first poll; once it runs on
                        // its thread (blocking the runtime's thread for that moment is the
                        // test's doing), cancel it.
                        trellis::yield_now().await;
                        started_rx.recv().expect("the call started");
                        scope.cancel();
                    });
                    to_thread(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                    })
                    .await
                })
                .await
            })
            .await;
            assert!(out.is_none(), "the call was cancelled");
            // Would wait for the blocked call forever if it still counted.
            let start = trellis::now();
            sleep(HOUR).await;
            trellis::now() - start
        });
        assert_eq!(slept, HOUR);
        release_tx.send(()).unwrap();
        assert_workers_exit();
    });
}

/// Trio's autojump clock waits for thread work (`test_threads.py`'s calls under the
/// autojump clock): time does not jump while a call is in flight, so a one-hour timeout
/// around a call that another thread releases does not fire.
#[test]
fn autojump_does_not_jump_while_thread_work_is_in_flight() {
    guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (tid_tx, tid_rx) = mpsc::channel();
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        // Releases the call only once the runtime's thread sleeps in its park (state `S`):
        // an executor that jumped time instead would have timed out by then.
        let releaser = std::thread::spawn(move || {
            let tid: String = tid_rx.recv().unwrap();
            let stat = format!("/proc/self/task/{tid}/stat");
            while done.load(Ordering::SeqCst) == 0 {
                let state = std::fs::read_to_string(&stat).unwrap_or_default();
                let state = state.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('S') {
                    let _ = release_tx.send(());
                    return;
                }
                std::thread::yield_now();
            }
        });
        let out = Builder::new().autojump().run(async move {
            let link = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = link.file_name().unwrap().to_string_lossy().into_owned();
            tid_tx.send(tid).unwrap();
            let start = trellis::now();
            let out = move_on_after(HOUR, to_thread(move || release_rx.recv().is_ok())).await;
            (out, trellis::now() - start)
        });
        finished.store(1, Ordering::SeqCst);
        releaser.join().unwrap();
        assert_eq!(out, (Some(true), Duration::ZERO), "time did not move");
        assert_workers_exit();
    });
}

/// Ports `test_run_in_worker_thread_limiter`: many concurrent calls, never more running at
/// once than the pool's bound, and the bound is reached.
#[test]
fn many_concurrent_calls_are_bounded_by_the_thread_limit() {
    guarded(|| {
        const LIMIT: usize = 3;
        const CALLS: usize = 20;
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // The first LIMIT calls meet here, so the bound is reached.
        let barrier = Arc::new(Barrier::new(LIMIT));
        let (r, m, b) = (running.clone(), most.clone(), barrier.clone());
        let sum = Builder::new().thread_limit(LIMIT).run(async move {
            let sum = std::cell::Cell::new(0);
            nursery(async |n| {
                for i in 0..CALLS {
                    let (r, m, b) = (r.clone(), m.clone(), b.clone());
                    let sum = &sum;
                    n.spawn(async move {
                        let v = to_thread(move || {
                            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(now, Ordering::SeqCst);
                            if i < LIMIT {
                                b.wait();
                            }
                            r.fetch_sub(1, Ordering::SeqCst);
                            i
                        })
                        .await;
                        sum.set(sum.get() + v);
                    });
                }
            })
            .await
            .unwrap();
            sum.get()
        });
        assert_eq!(sum, (0..CALLS).sum::<usize>());
        assert_eq!(most.load(Ordering::SeqCst), LIMIT);
        assert_workers_exit();
    });
}

static REQUEST: ContextVar<&'static str> = ContextVar::new("request");

static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();

/// Ports `test_trio_to_thread_run_sync_contextvars`: the call runs in a copy of the
/// caller's context; what it sets stays on its thread, and the caller keeps its value.
#[test]
fn test_trio_to_thread_run_sync_contextvars_the_call_sees_a_copy_of_the_callers_context() {
    guarded(|| {
        let (seen, inner, after) = trellis::run(async {
            let _token = REQUEST.set("main");
            let seen = to_thread(|| REQUEST.get()).await;
            let inner = to_thread(|| {
                let parent = REQUEST.get();
                REQUEST.set("worker");
                (parent, REQUEST.get())
            })
            .await;
            (seen, inner, REQUEST.get())
        });
        assert_eq!(seen, Some("main"));
        assert_eq!(inner, (Some("main"), Some("worker")));
        assert_eq!(after, Some("main"), "the worker's set did not come back");
    });
}

/// The copy is taken when `to_thread` is called (as a spawn copies), and it includes
/// `no_inherit` variables: the call acts for its caller, it is not a child task.
#[test]
fn the_callers_context_is_copied_at_the_call_no_inherit_variables_included() {
    guarded(|| {
        let seen = trellis::run(async {
            REQUEST.set("at the call");
            CONN.set(7);
            let call = to_thread(|| (REQUEST.get(), CONN.get()));
            REQUEST.set("later");
            call.await
        });
        assert_eq!(seen, (Some("at the call"), Some(7)));
    });
}

/// What one call set does not leak into the next call on the same worker, nor does a
/// caller's context reach a call made from a task that has none.
#[test]
fn a_calls_sets_do_not_leak_into_the_next_call_on_the_same_worker() {
    guarded(|| {
        let (first, second) = Builder::new().thread_limit(1).run(async {
            let first = to_thread(|| {
                let before = REQUEST.get();
                REQUEST.set("set by the first call");
                before
            })
            .await;
            let second = to_thread(|| REQUEST.get()).await;
            (first, second)
        });
        assert_eq!(first, None);
        assert_eq!(second, None, "the first call's set stayed with its copy");
        assert_workers_exit();
    });
}

/// A cancelled caller with a context variable: the call still sees the value and runs to
/// its end on its thread, and the runtime does not wait for it.
#[test]
fn a_cancelled_callers_call_still_sees_its_context_and_finishes() {
    guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (seen_tx, seen_rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let out = Builder::new().autojump().run(async move {
            REQUEST.set("r-7");
            trellis::cancel_scope(async |scope| {
                let remote = scope.remote();
                to_thread(move || {
                    started_tx.send(REQUEST.get()).unwrap();
                    remote.cancel();
                    release_rx.recv().unwrap();
                    seen_tx.send(REQUEST.get()).unwrap();
                })
                .await
            })
            .await
        });
        assert_eq!(out, None, "the caller was cancelled and the runtime ended");
        assert_eq!(started_rx.recv().unwrap(), Some("r-7"));
        release_tx.send(()).unwrap();
        assert_eq!(seen_rx.recv().unwrap(), Some("r-7"), "the call finished");
        assert_workers_exit();
    });
}

/// A call whose future was leaked (polled once, then forgotten, never dropped) stops
/// counting as thread work when its result arrives: autojump is not held back forever.
#[test]
fn a_leaked_call_stops_holding_autojump_back_once_it_returns() {
    guarded(|| {
        let slept = Builder::new().autojump().run(async {
            common::forget_after_one_poll(to_thread(|| 5)).await;
            let start = trellis::now();
            sleep(HOUR).await;
            trellis::now() - start
        });
        assert_eq!(slept, HOUR);
        assert_workers_exit();
    });
}

/// A mock clock without autojump is not deadlocked while a call is in flight.
#[test]
fn a_mock_clock_waits_for_thread_work_instead_of_reporting_a_deadlock() {
    guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let releaser = std::thread::spawn(move || release_tx.send(()));
        let out = Builder::new()
            .mock_clock()
            .run(async move { to_thread(move || release_rx.recv().is_ok()).await });
        assert!(out);
        releaser.join().unwrap().ok();
    });
}

/// No worker thread outlives its runtime: idle workers exit as soon as it ends.
#[test]
fn no_worker_thread_is_left_after_the_runtimes_end() {
    guarded(|| {
        assert_workers_exit();
        for _ in 0..3 {
            let n = Builder::new().thread_limit(4).run(async {
                let mut total = 0;
                for i in 0..10 {
                    total += to_thread(move || i).await;
                }
                total
            });
            assert_eq!(n, 45);
            assert_workers_exit();
        }
    });
}
