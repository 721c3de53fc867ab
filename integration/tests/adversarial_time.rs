//! Adversarial programs against every promise the docs make about time: `sleep`,
//! `sleep_until`, `sleep_forever`, intervals and their missed-tick policies, `now`,
//! `advance`, the mock clocks (manual and autojump), relative and absolute timeouts,
//! deadlines moved while something waits on them, `current_effective_deadline` and
//! `wait_all_tasks_blocked`. Shapes: durations of zero, one nanosecond and `Duration::MAX`,
//! deadlines in the past and at the end of representable time, equal deadlines, `advance`
//! called from children, destructors, wakers and other threads' jobs, two runtimes with
//! their own clocks, timers carried into another runtime.
//!
//! Time is virtual; nothing sleeps for real and nothing asserts a wall-clock duration.
//! Everything that could hang runs under the watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{
    OnDrop, count_polls, guarded, latest_instant, ms, panic_message_of, poll_once, run_virtual,
    secs,
};
use futures::StreamExt as _;
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    Builder, CancelReason, CancelScope, MissedTicks, RuntimeHandle, advance,
    current_effective_deadline, fail_after, fail_at, interval, move_on_after, move_on_at, now,
    nursery, shield, sleep, sleep_forever, sleep_until, to_thread, yield_now,
};

const NS: Duration = Duration::from_nanos(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Runs `fut` on a mock clock without autojump, under the watchdog.
fn manual<T: Send + 'static, F: Future<Output = T>>(fut: impl FnOnce() -> F + Send + 'static) -> T {
    guarded(move || Builder::new().mock_clock().run(fut()))
}

/// Polls `fut` once with the task's waker; whether it completed.
async fn polled_ready<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

// ---- sleep on the mock clocks ------------------------------------------------------------

/// `sleep`: "On the mock clocks a sleep ends exactly at its deadline." One nanosecond is a
/// real deadline: not reached by `advance(ZERO)` nor by a checkpoint, reached by
/// `advance(1 ns)`; `sleep(ZERO)` needs no advance at all ("a checkpoint").
#[test]
fn sleep_of_one_nanosecond_ends_exactly_one_nanosecond_later_and_zero_needs_no_advance() {
    let got = manual(|| async {
        let start = now();
        sleep(Duration::ZERO).await; // a checkpoint: completes without time moving
        assert_eq!(now(), start);
        let mut nap = sleep(NS);
        assert_eq!(nap.deadline(), Some(start + NS));
        assert!(!polled_ready(&mut nap).await, "armed");
        advance(Duration::ZERO);
        yield_now().await;
        assert!(
            !polled_ready(&mut nap).await,
            "advance(ZERO) reached a 1 ns deadline"
        );
        advance(NS);
        let done = polled_ready(&mut nap).await;
        (done, now() - start)
    });
    assert_eq!(got, (true, NS));
}

/// `sleep`'s "Precision": slack (up to `d / 256`, at most 1 ms) is a real-clock thing;
/// "on the mock clocks a sleep ends exactly at its deadline". A 300 ms sleep (1 ms of
/// slack on the real clock) followed 100 µs later by another (within that slack): on the
/// manual clock, the first ends at 300 ms and not a nanosecond before; the second does not
/// end with it, but exactly 100 µs later.
#[test]
fn slack_never_moves_a_sleep_on_the_manual_clock_early_or_late() {
    let got = manual(|| async {
        let start = now();
        let log = RefCell::new(Vec::new());
        nursery(async |n| {
            for (name, at) in [
                ("first", ms(300)),
                ("clustered", ms(300) + Duration::from_micros(100)),
            ] {
                let log = &log;
                n.spawn(async move {
                    sleep_until(start + at).await;
                    log.borrow_mut().push((name, now() - start));
                });
            }
            wait_all_tasks_blocked().await;
            advance(ms(300) - NS);
            wait_all_tasks_blocked().await;
            assert!(
                log.borrow().is_empty(),
                "a sleep ended early: {:?}",
                log.borrow()
            );
            advance(NS);
            wait_all_tasks_blocked().await;
            assert_eq!(
                log.borrow().len(),
                1,
                "the clustered sleep ended with the first"
            );
            advance(Duration::from_micros(100));
        })
        .await
        .unwrap();
        log.into_inner()
    });
    assert_eq!(
        got,
        [
            ("first", ms(300)),
            ("clustered", ms(300) + Duration::from_micros(100))
        ]
    );
}

/// `sleep`: "The deadline is taken when `sleep` is called, not when the future is first
/// polled"; `move_on_after`/`fail_after` "start at their first poll". Both made at 0, the
/// sleep awaited at 4 s ends at 10 s; the timeout, first polled then, ends at 10 + 10 s.
#[test]
fn a_sleep_counts_from_its_call_and_a_relative_timeout_from_its_first_poll() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let nap = sleep(secs(10));
            let timeout = fail_after(secs(10), sleep_forever());
            sleep(secs(4)).await;
            nap.await;
            let slept = now() - start;
            let err = timeout.await.unwrap_err();
            (slept, err.deadline() - start, now() - start)
        })
    });
    assert_eq!(got, (secs(10), secs(20), secs(20)));
}

/// `Sleep::deadline`: "`None` when it never does (its duration was too long for the
/// clock, as `Duration::MAX`)". The longest duration that still fits gives the last
/// representable instant, not `None`; one nanosecond more gives `None`.
#[test]
fn the_longest_representable_sleep_has_a_deadline_and_one_nanosecond_more_has_none() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let end = latest_instant(start);
            let longest = end - start;
            (
                sleep(longest).deadline() == Some(end),
                sleep(longest + NS).deadline(),
                sleep(Duration::MAX).deadline(),
            )
        })
    });
    assert_eq!(got, (true, None, None));
}

/// `advance`: "From then on, `sleep` and the relative timeouts treat every duration as
/// 'never' (adding it to `now` overflows)". Every *non-zero* duration: zero still adds, so
/// `sleep(ZERO)` stays a checkpoint and `move_on_after(ZERO, ..)` still fires.
#[test]
fn at_the_end_of_time_nonzero_durations_are_never_and_zero_is_still_a_checkpoint() {
    let got = manual(|| async {
        advance(Duration::MAX);
        let end = now();
        assert_eq!(end.checked_add(NS), None, "saturated at the last instant");
        let zero = sleep(Duration::ZERO);
        assert_eq!(zero.deadline(), Some(end));
        zero.await;
        assert_eq!(sleep(NS).deadline(), None);
        let fired = move_on_after(Duration::ZERO, sleep_forever()).await;
        let never = move_on_after(NS, yield_now()).await;
        let scope = CancelScope::new().with_timeout(NS);
        let handle = scope.clone();
        scope.run(yield_now()).await;
        let mut ticks = interval(NS);
        let first = ticks.tick().await;
        let mut second = ticks.tick();
        let second_ready = polled_ready(&mut second).await || polled_ready(&mut second).await;
        (
            fired,
            never,
            handle.deadline(),
            first == end,
            second_ready,
            now() == end,
        )
    });
    assert_eq!(got, (None, Some(()), None, true, false, true));
}

/// `sleep_until`: "A deadline already reached does not complete at the first poll: the
/// sleep suspends once ... and completes at the next poll", and it arms no timer: on the
/// manual clock nothing has to be advanced, at the last instant as well as long before
/// the runtime started.
#[test]
fn sleeping_until_past_instants_is_one_suspension_and_arms_nothing() {
    let polls = manual(|| async {
        let start = now();
        let polls = Cell::new(0);
        count_polls(&polls, sleep_until(start)).await;
        let past = start.checked_sub(secs(3600 * 24)).unwrap_or(start);
        count_polls(&polls, sleep_until(past)).await;
        advance(Duration::MAX);
        count_polls(&polls, sleep_until(now())).await;
        polls.get()
    });
    assert_eq!(polls, 6, "two polls each: a checkpoint, then done");
}

// ---- now, advance and the clocks ---------------------------------------------------------

/// `now`: "Panics when called outside a trellis runtime", also on a `to_thread` worker,
/// which runs no runtime; `advance` likewise; `sleep` reads `now` when called, so it
/// panics too, while `sleep_until` only panics when polled.
#[test]
fn now_advance_and_sleep_outside_a_runtime_panic_with_a_clear_message() {
    let outside = panic_message_of(now);
    assert!(outside.contains("needs a trellis runtime"), "{outside}");
    let advanced = panic_message_of(|| advance(secs(1)));
    assert!(advanced.contains("needs a trellis runtime"), "{advanced}");
    let slept = panic_message_of(|| sleep(secs(1)));
    assert!(slept.contains("needs a trellis runtime"), "{slept}");
    let made = sleep_until(Instant::now());
    let polled = panic_message_of(move || {
        let mut made = made;
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut made).poll(&mut cx);
    });
    assert!(polled.contains("needs a trellis runtime"), "{polled}");
    let on_worker = guarded(|| {
        run_virtual(to_thread(|| {
            std::panic::catch_unwind(now)
                .map_err(|p| common::panic_message(&*p))
                .unwrap_err()
        }))
    });
    assert!(on_worker.contains("needs a trellis runtime"), "{on_worker}");
}

/// `Builder::mock_clock`: "Virtual time starts at the real instant the runtime is built."
/// Also for the next runtime on the same thread: a year advanced in one is not inherited.
#[test]
fn virtual_time_starts_at_the_real_instant_each_runtime_is_built() {
    let before = Instant::now();
    let first = Builder::new().mock_clock().run(async {
        let start = now();
        advance(secs(365 * 24 * 3600));
        (start, now())
    });
    let between = Instant::now();
    let second = Builder::new().autojump().run(async { now() });
    let after = Instant::now();
    assert!(
        before <= first.0 && first.0 <= between,
        "{before:?} {first:?} {between:?}"
    );
    assert_eq!(first.1 - first.0, secs(365 * 24 * 3600));
    assert!(
        between <= second && second <= after,
        "the second runtime inherited virtual time"
    );
}

/// One runtime per thread: each mock clock is its own. Two runtimes advance in lock-step
/// (a barrier between every step), one by hours, one by seconds; each sees only its own.
#[test]
fn two_runtimes_on_two_threads_each_keep_their_own_mock_clock() {
    let got = guarded(|| {
        let barrier = Arc::new(Barrier::new(2));
        let run = |step: Duration, barrier: Arc<Barrier>| {
            std::thread::spawn(move || {
                Builder::new().mock_clock().run(async move {
                    let start = now();
                    let woke = Cell::new(None);
                    nursery(async |n| {
                        let woke = &woke;
                        n.spawn(async move {
                            sleep(step * 3).await;
                            woke.set(Some(now() - start));
                        });
                        for _ in 0..5 {
                            barrier.wait();
                            yield_now().await;
                            advance(step);
                        }
                    })
                    .await
                    .unwrap();
                    (now() - start, woke.get())
                })
            })
        };
        let hours = run(HOUR, barrier.clone());
        let seconds = run(secs(1), barrier);
        (hours.join().unwrap(), seconds.join().unwrap())
    });
    assert_eq!(got.0, (HOUR * 5, Some(HOUR * 3)));
    assert_eq!(got.1, (secs(5), Some(secs(3))));
}

/// `advance`: "Moves a mock clock forward by `by`, firing every timer that falls due",
/// from a child: the sibling's timer fires at the advance, and the sibling sees the
/// instant the clock has when it runs (after both advances of the same step).
/// `advance(ZERO)` moves nothing and fires nothing that is not due.
#[test]
fn advance_from_a_child_fires_a_siblings_timer_and_zero_fires_nothing() {
    let got = manual(|| async {
        let start = now();
        let woke = Cell::new(None);
        nursery(async |n| {
            let woke = &woke;
            n.spawn(async move {
                sleep(secs(5)).await;
                woke.set(Some(now() - start));
            });
            n.spawn(async move {
                yield_now().await;
                advance(Duration::ZERO);
                wait_all_tasks_blocked().await;
                assert_eq!((woke.get(), now()), (None, start));
                advance(secs(3));
                advance(secs(3));
            });
        })
        .await
        .unwrap();
        (woke.get(), now() - start)
    });
    assert_eq!(got, (Some(secs(6)), secs(6)));
}

/// A waker that calls `advance` when a timer wakes it.
struct AdvanceOnWake(Duration, Arc<AtomicUsize>);

impl Wake for AdvanceOnWake {
    fn wake(self: Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        advance(self.0);
    }
}

/// `advance` fires timers whose actions run code: a foreign waker that advances again when
/// its timer fires (a re-entrant `advance` inside the firing of timers) must fire the next
/// timer too, exactly once, and leave the queue whole.
#[test]
fn advance_from_a_waker_that_a_timer_wakes_fires_the_next_timer_too() {
    let got = manual(|| async {
        let start = now();
        let woke = Cell::new(None);
        let wakes = Arc::new(AtomicUsize::new(0));
        nursery(async |n| {
            let woke = &woke;
            n.spawn(async move {
                sleep(secs(2)).await;
                woke.set(Some(now() - start));
            });
            let mut nap = pin!(sleep(secs(1)));
            let waker = Waker::from(Arc::new(AdvanceOnWake(secs(1), wakes.clone())));
            assert!(
                nap.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            yield_now().await; // the child arms its timer
            advance(secs(1)); // fires `nap`, whose waker advances another second
            assert_eq!(now() - start, secs(2));
            nap.await;
        })
        .await
        .unwrap();
        (woke.get(), wakes.load(Ordering::SeqCst), now() - start)
    });
    assert_eq!(got, (Some(secs(2)), 1, secs(2)));
}

/// `advance` from a destructor that a cancellation runs (a child cancelled by its join
/// handle): the timers it fires (another child's timeout, a scope deadline) are delivered
/// exactly at the advanced instant, and the runtime is not found deadlocked.
#[test]
fn advance_from_a_destructor_during_a_cancellation_fires_another_childs_timeout() {
    let got = manual(|| async {
        let start = now();
        let timed_out = Cell::new(None);
        nursery(async |n| {
            let timed_out = &timed_out;
            n.spawn(async move {
                let out = move_on_after(secs(10), sleep_forever()).await;
                timed_out.set(Some((out, now() - start)));
            });
            let doomed = n.spawn(async {
                let _advance = OnDrop(|| advance(secs(10)));
                sleep_forever().await;
            });
            yield_now().await;
            doomed.cancel();
        })
        .await
        .unwrap();
        timed_out.get()
    });
    assert_eq!(got, Some((None, secs(10))));
}

/// `advance` from outside every task: a job a worker thread sends back with
/// `RuntimeHandle::run_sync` runs on the runtime's thread, so it may advance the manual
/// clock; the sleeping child wakes exactly then, and `now` there is the runtime's.
#[test]
fn advance_from_a_run_sync_job_moves_the_runtimes_clock() {
    let got = manual(|| async {
        let start = now();
        let woke = Cell::new(None);
        let seen = nursery(async |n| {
            let woke = &woke;
            n.spawn(async move {
                sleep(HOUR).await;
                woke.set(Some(now() - start));
            });
            let handle = RuntimeHandle::current();
            let seen = to_thread(move || {
                handle
                    .run_sync(|| {
                        advance(HOUR);
                        now()
                    })
                    .unwrap()
            })
            .await;
            Ok::<_, ()>(seen - start)
        })
        .await
        .unwrap();
        (seen, woke.get())
    });
    assert_eq!(got, (HOUR, Some(HOUR)));
}

// ---- autojump and what it waits for ------------------------------------------------------

/// `Builder::autojump`: "While `to_thread` work is in flight time does not jump: the
/// executor waits for the thread's result first." A worker that waits for another thread
/// (no real sleep) finishes inside a one-second timeout, and no virtual time passes.
#[test]
fn autojump_never_jumps_past_to_thread_work_in_flight() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<u32>();
            let helper = std::thread::spawn(move || {
                started_rx.recv().unwrap();
                for _ in 0..1000 {
                    std::thread::yield_now();
                }
                go_tx.send(7).unwrap();
            });
            let out = move_on_after(
                secs(1),
                to_thread(move || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap()
                }),
            )
            .await;
            helper.join().unwrap();
            (out, now() - start)
        })
    });
    assert_eq!(got, (Some(7), Duration::ZERO));
}

/// `Builder::autojump`: "A worker blocked in `RuntimeHandle::run` ... waits for the
/// runtime, so it is not waited for meanwhile (the work it sent may need time to move)."
/// The work it sends sleeps an hour; time must jump for it, not hang.
#[test]
fn autojump_jumps_for_work_a_worker_sent_back_while_it_blocks() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let handle = RuntimeHandle::current();
            let there = to_thread(move || {
                handle
                    .run(|| async {
                        sleep(HOUR).await;
                        now()
                    })
                    .unwrap()
            })
            .await;
            (there - start, now() - start)
        })
    });
    assert_eq!(got, (HOUR, HOUR));
}

/// A future that hands its waker to a thread the runtime does not know of, which wakes it
/// only when told to.
struct WokenByAForeignThread {
    waker_tx: Option<mpsc::Sender<Waker>>,
}

impl Future for WokenByAForeignThread {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(tx) = self.waker_tx.take() {
            tx.send(cx.waker().clone()).unwrap();
        }
        Poll::Pending
    }
}

/// `Builder::autojump`: "Other work done by threads the runtime does not know of is not
/// waited for": a task that only a foreign thread can wake is blocked, so time jumps to
/// the timeout, exactly.
#[test]
fn autojump_jumps_past_a_task_that_only_a_foreign_thread_wakes() {
    let got = guarded(|| {
        let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let foreign = std::thread::spawn(move || {
            let waker = waker_rx.recv().unwrap();
            release_rx.recv().unwrap();
            waker.wake();
        });
        let got = run_virtual(async {
            let start = now();
            let out = move_on_after(
                HOUR,
                WokenByAForeignThread {
                    waker_tx: Some(waker_tx),
                },
            )
            .await;
            (out, now() - start)
        });
        release_tx.send(()).unwrap();
        foreign.join().unwrap();
        got
    });
    assert_eq!(got, (None, HOUR));
}

/// `Builder::autojump`: "only I/O already signalled is [waited for]". A read with nothing
/// to read is blocked: time jumps to its timeout. A read whose bytes another task wrote
/// (synchronously, on the peer socket) before time would jump gets them at the same
/// instant, though a ten-second sleep is the nearest deadline.
#[test]
fn autojump_waits_for_io_already_signalled_and_not_for_silent_io() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let (mine, peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let mine = trellis::net::UnixStream::from_std(mine).unwrap();
            let mut buf = [0u8; 8];
            let silent = move_on_after(HOUR, mine.read(&mut buf)).await;
            let silent_at = now() - start;
            let (read, read_at) = nursery(async |n| {
                let reader = n.spawn(async {
                    let mut buf = [0u8; 8];
                    let out = move_on_after(HOUR, mine.read(&mut buf)).await;
                    Ok((out.map(|r| buf[..r.unwrap()].to_vec()), now() - start))
                });
                n.spawn(async {
                    wait_all_tasks_blocked().await; // the reader is parked on the socket
                    use std::io::Write as _;
                    (&peer).write_all(b"hi").unwrap();
                    sleep(secs(10)).await;
                });
                Ok::<_, ()>(reader.await.unwrap())
            })
            .await
            .unwrap();
            (silent.is_none(), silent_at, read, read_at - silent_at)
        })
    });
    assert_eq!(got, (true, HOUR, Some(b"hi".to_vec()), Duration::ZERO));
}

// ---- wait_all_tasks_blocked --------------------------------------------------------------

/// `wait_all_tasks_blocked`: "no I/O source is ready": I/O that is already signalled is
/// work, not idleness. The waiter completes only after the reader has taken the bytes
/// written before the wait.
#[test]
fn wait_all_tasks_blocked_lets_signalled_io_run_first() {
    let got = guarded(|| {
        Builder::new().mock_clock().run(async {
            let (mine, peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let mine = trellis::net::UnixStream::from_std(mine).unwrap();
            let got = RefCell::new(Vec::new());
            nursery(async |n| {
                n.spawn(async {
                    let mut buf = [0u8; 8];
                    let read = mine.read(&mut buf).await.unwrap();
                    got.borrow_mut().extend_from_slice(&buf[..read]);
                });
                wait_all_tasks_blocked().await;
                let before = got.borrow().clone();
                use std::io::Write as _;
                (&peer).write_all(b"ok").unwrap();
                wait_all_tasks_blocked().await;
                Ok::<_, ()>((before, got.borrow().clone()))
            })
            .await
            .unwrap()
        })
    });
    assert_eq!(got, (Vec::new(), b"ok".to_vec()));
}

/// `wait_all_tasks_blocked`: "A task that awaits this in a loop keeps the runtime busy: it
/// never parks and time never jumps while it waits." A hundred waits beside a one-second
/// sleeper: the sleeper never wakes and `now` never moves; the first real sleep of the
/// waiting task lets time jump to exactly the sleeper's deadline.
#[test]
fn a_loop_of_idle_waits_keeps_autojump_from_moving_time() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let woke = Cell::new(None);
            nursery(async |n| {
                let woke = &woke;
                n.spawn(async move {
                    sleep(secs(1)).await;
                    woke.set(Some(now() - start));
                });
                for _ in 0..100 {
                    wait_all_tasks_blocked().await;
                }
                assert_eq!((woke.get(), now()), (None, start));
                sleep(secs(2)).await;
            })
            .await
            .unwrap();
            (woke.get(), now() - start)
        })
    });
    assert_eq!(got, (Some(secs(1)), secs(2)));
}

// ---- timer order -------------------------------------------------------------------------

/// `timers.rs`: "Ties fire in arming order", and the nursery runs woken children in the
/// order they became ready (DESIGN: FIFO). Children spawned 0..5 arm the same instant in
/// the reverse order (each yields one time fewer than the one before): they must wake in
/// arming order, not spawn order.
#[test]
fn equal_deadlines_wake_in_arming_order_not_spawn_order() {
    let got = guarded(|| {
        run_virtual(async {
            let at = now() + secs(1);
            let order = RefCell::new(Vec::new());
            nursery(async |n| {
                for i in 0..5 {
                    let order = &order;
                    n.spawn(async move {
                        for _ in 0..(5 - i) {
                            yield_now().await;
                        }
                        sleep_until(at).await;
                        order.borrow_mut().push((i, now() == at));
                    });
                }
            })
            .await
            .unwrap();
            order.into_inner()
        })
    });
    assert_eq!(got, [(4, true), (3, true), (2, true), (1, true), (0, true)]);
}

/// Arming order, not first-seen order: a sleep that was armed, dropped and re-armed for
/// the same instant joins the back of the tie.
#[test]
fn a_sleep_disarmed_and_rearmed_for_the_same_instant_goes_to_the_back_of_the_tie() {
    let got = guarded(|| {
        run_virtual(async {
            let at = now() + secs(1);
            let order = RefCell::new(Vec::new());
            nursery(async |n| {
                for i in 0..3 {
                    let order = &order;
                    n.spawn(async move {
                        if i == 0 {
                            drop(poll_once(sleep_until(at)).await); // armed first, then gone
                            yield_now().await;
                        }
                        sleep_until(at).await;
                        order.borrow_mut().push(i);
                    });
                }
            })
            .await
            .unwrap();
            order.into_inner()
        })
    });
    assert_eq!(got, [1, 2, 0]);
}

// ---- a deadline and a sleep at the same instant ------------------------------------------

/// `CancelScope::run`: "a deadline and an operation completing at the same instant give
/// `Some`", whichever timer was armed first: the scope's deadline (armed at its start,
/// before the body's sleep) or the sleep (armed before another task sets the deadline).
#[test]
fn a_scope_deadline_and_a_sleep_at_the_same_instant_keep_the_value_in_either_order() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let at = start + secs(1);
            let deadline_first = move_on_at(at, async {
                sleep_until(at).await;
                "deadline armed first"
            })
            .await;
            let at = now() + secs(1);
            let scope = CancelScope::new();
            let handle = scope.clone();
            let sleep_first = nursery(async |n| {
                n.spawn(async move {
                    yield_now().await; // the body's sleep is armed by now
                    handle.set_deadline(at);
                });
                let out = scope
                    .run(async {
                        sleep_until(at).await;
                        "sleep armed first"
                    })
                    .await;
                Ok::<_, ()>(out)
            })
            .await
            .unwrap();
            (deadline_first, sleep_first, now() - start)
        })
    });
    assert_eq!(
        got,
        (
            Some("deadline armed first"),
            Some("sleep armed first"),
            secs(2)
        )
    );
}

/// The delivery rule (`scope/cancel_scope.rs`): a unit "already suspended when the
/// cancellation arrived ... is polled once more if it may have been woken: a value that is
/// ready in the same instant as the cancellation is kept"; "a nursery grants it only to
/// units whose waker fired". A child whose sleep ends at the enclosing deadline runs on to
/// its next suspension; one whose sleep ends a nanosecond later is dropped unpolled; and
/// the nursery, cancelled from outside, never completes with a value. Both arming orders.
#[test]
fn a_child_whose_sleep_ends_at_the_enclosing_deadline_runs_to_its_next_suspension() {
    let run_case = |deadline_first: bool| {
        guarded(move || {
            run_virtual(async move {
                let start = now();
                let at = start + secs(1);
                let log = RefCell::new(Vec::new());
                let scope = if deadline_first {
                    CancelScope::new().with_deadline(at)
                } else {
                    CancelScope::new()
                };
                let handle = scope.clone();
                let out = scope
                    .run(nursery(async |n| {
                        let log = &log;
                        n.spawn(async move {
                            sleep_until(at).await;
                            log.borrow_mut().push("on time");
                            yield_now().await;
                            log.borrow_mut().push("after the next suspension");
                        });
                        n.spawn(async move {
                            sleep_until(at + NS).await;
                            log.borrow_mut().push("a nanosecond late");
                        });
                        yield_now().await; // both children have armed their sleeps
                        if !deadline_first {
                            handle.set_deadline(at);
                        }
                        Ok::<_, ()>("the body's value")
                    }))
                    .await;
                (out.is_none(), log.into_inner(), now() - start)
            })
        })
    };
    for deadline_first in [true, false] {
        let (out, log, at) = run_case(deadline_first);
        assert!(
            out,
            "deadline_first = {deadline_first}: the nursery completed with a value"
        );
        assert_eq!(log, ["on time"], "deadline_first = {deadline_first}");
        assert_eq!(at, secs(1), "deadline_first = {deadline_first}");
    }
}

// ---- deadlines moved while something waits -----------------------------------------------

/// A scope with a 10 s deadline whose body sleeps an hour; at 2 s another task calls
/// `adjust` on it. Gives the scope's result, the instant it ended and its reason.
fn with_deadline_moved_at_two_seconds(
    adjust: fn(&CancelScope, Instant),
) -> (Option<&'static str>, Duration, Option<CancelReason>) {
    guarded(move || {
        run_virtual(async move {
            let start = now();
            let scope = CancelScope::new().with_deadline(start + secs(10));
            let handle = scope.clone();
            let out = nursery(async |n| {
                let handle = handle.clone();
                n.spawn(async move {
                    sleep(secs(2)).await;
                    adjust(&handle, start);
                });
                let out = scope
                    .run(async {
                        sleep(HOUR).await;
                        "slept the hour"
                    })
                    .await;
                Ok::<_, ()>(out)
            })
            .await
            .unwrap();
            (out, now() - start, handle.cancel_reason())
        })
    })
}

/// `set_deadline`: "Takes effect at once, also while the scope runs: a deadline moved
/// earlier (or into the past) fires then; one moved later postpones it." And
/// `clear_deadline`: "the scope is then cancelled only by `cancel` or an enclosing scope";
/// a deadline at the last representable instant never fires on an hour's sleep.
#[test]
fn a_deadline_moved_while_the_body_sleeps_fires_exactly_at_its_new_instant() {
    const DEADLINE: Option<CancelReason> = Some(CancelReason::Deadline);
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| s.set_deadline(start + secs(5))),
        (None, secs(5), DEADLINE),
        "moved earlier"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| s.set_deadline(start + secs(20))),
        (None, secs(20), DEADLINE),
        "moved later"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| s.set_deadline(start)),
        (None, secs(2), DEADLINE),
        "moved into the past: fires at once"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| s.set_deadline(start + secs(2))),
        (None, secs(2), DEADLINE),
        "moved to now: fires at once"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, _| s.clear_deadline()),
        (Some("slept the hour"), HOUR, None),
        "cleared"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| s.set_deadline(latest_instant(start))),
        (Some("slept the hour"), HOUR, None),
        "moved to the end of time"
    );
    assert_eq!(
        with_deadline_moved_at_two_seconds(|s, start| {
            s.set_deadline(start + secs(3));
            s.set_deadline(start + secs(30));
            s.clear_deadline();
            s.set_deadline(start + secs(7));
        }),
        (None, secs(7), DEADLINE),
        "moved back and forth: only the last counts"
    );
}

/// `set_deadline`: "On a scope that is already cancelled or has finished, the new deadline
/// is only recorded." A deadline that fired while the body was inside a shield stays
/// fired when another task moves it far into the future: the body is dropped at its first
/// suspension after the shield, at 3 s.
#[test]
fn a_deadline_moved_later_after_it_fired_does_not_uncancel_the_scope() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let scope = CancelScope::new().with_deadline(start + secs(1));
            let handle = scope.clone();
            let out = nursery(async |n| {
                let handle = handle.clone();
                n.spawn(async move {
                    sleep(secs(2)).await;
                    handle.set_deadline(start + secs(100));
                });
                let out = scope
                    .run(async {
                        shield(sleep(secs(3))).await;
                        sleep(HOUR).await;
                        "not reached"
                    })
                    .await;
                Ok::<_, ()>(out)
            })
            .await
            .unwrap();
            (
                out,
                now() - start,
                handle.deadline() == Some(start + secs(100)),
                handle.cancel_reason(),
                handle.cancelled_caught(),
            )
        })
    });
    assert_eq!(
        got,
        (None, secs(3), true, Some(CancelReason::Deadline), true)
    );
}

/// `current_effective_deadline`: "the earliest deadline of the enclosing scopes up to the
/// nearest shield (a shielded scope's own deadline counts)"; "A scope on that path that is
/// already cancelled counts as a deadline of now". Followed through every kind of move.
#[test]
fn current_effective_deadline_follows_every_move_of_the_deadlines_and_the_shield() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let end = latest_instant(start);
            let seen = RefCell::new(Vec::new());
            let at = |d: Option<Instant>| d.map(|d| if d == end { None } else { Some(d - start) });
            move_on_at(start + secs(5), async {
                CancelScope::new()
                    .with_deadline(start + secs(10))
                    .run_with(async |s| {
                        let see = || seen.borrow_mut().push(at(current_effective_deadline()));
                        see();
                        s.set_deadline(start + secs(2));
                        see();
                        s.clear_deadline();
                        see();
                        s.set_deadline(end);
                        see();
                        s.set_shield(true);
                        see();
                        s.clear_deadline();
                        see();
                        s.set_shield(false);
                        sleep(secs(1)).await;
                        s.cancel();
                        see();
                    })
                    .await
            })
            .await;
            seen.into_inner()
        })
    });
    assert_eq!(
        got,
        [
            Some(Some(secs(5))),
            Some(Some(secs(2))),
            Some(Some(secs(5))),
            Some(Some(secs(5))),
            Some(None),          // shielded: its own deadline, the end of time
            None,                // shielded, no deadline of its own
            Some(Some(secs(1))), // cancelled: now
        ]
    );
}

/// DESIGN: "A scope body, a nursery body and a child each run to their first suspension
/// even when they start inside a cancelled scope (or a deadline already past)", and are
/// dropped there. A nursery body sets its enclosing scope's deadline 5 s ahead, then
/// spawns a child that sees it as its effective deadline and is stopped exactly then; a
/// second one sets the deadline in the past before spawning: the child runs to its first
/// suspension, is dropped there, and no time passes.
#[test]
fn a_deadline_set_from_a_nursery_body_before_it_suspends_binds_its_children() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let seen = Cell::new(None);
            let first = CancelScope::new()
                .run_with(async |s| {
                    nursery(async |n| {
                        s.set_deadline(start + secs(5));
                        let seen = &seen;
                        n.spawn(async move {
                            seen.set(current_effective_deadline().map(|d| d - start));
                            sleep_forever().await;
                        });
                        Ok::<_, ()>(7)
                    })
                    .await
                })
                .await;
            let first_at = now() - start;
            let reached = Cell::new(false);
            let second = CancelScope::new()
                .run_with(async |s| {
                    nursery(async |n| {
                        s.set_deadline(start);
                        let reached = &reached;
                        n.spawn(async move {
                            yield_now().await;
                            reached.set(true);
                        });
                        Ok::<_, ()>(8)
                    })
                    .await
                })
                .await;
            (
                first.is_none(),
                first_at,
                seen.get(),
                second.is_none(),
                reached.get(),
                now() - start,
            )
        })
    });
    assert_eq!(got, (true, secs(5), Some(secs(5)), true, false, secs(5)));
}

// ---- timeouts ----------------------------------------------------------------------------

/// `move_on_after` / `fail_after` with durations of 0 and 1 ns, and absolute deadlines in
/// the past and at the end of time: "`fut` is polled at least once, even with a zero
/// `duration`"; `TimedOut::deadline` is "The deadline that passed" and "it fired exactly
/// then"; "`Duration::MAX` means no deadline".
#[test]
fn timeouts_of_zero_one_nanosecond_the_past_and_the_end_of_time() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let ready_at_zero = move_on_after(Duration::ZERO, async { 1 }).await;
            let sleeping_at_zero = move_on_after(Duration::ZERO, sleep_forever()).await;
            let zero_err = fail_after(Duration::ZERO, sleep_forever())
                .await
                .unwrap_err();
            assert_eq!((zero_err.deadline(), now()), (start, start));
            let ns_err = fail_after(NS, sleep_forever()).await.unwrap_err();
            assert_eq!((ns_err.deadline(), now()), (start + NS, start + NS));
            let past = fail_at(start, async { 2 }).await;
            let past_sleeping = fail_at(start, yield_now()).await.unwrap_err();
            assert_eq!(
                past_sleeping.deadline(),
                start,
                "the deadline given, not now"
            );
            let end = latest_instant(start);
            let at_the_end = fail_at(end, async {
                (
                    current_effective_deadline() == Some(end),
                    sleep(secs(1)).await,
                )
                    .0
            })
            .await;
            let max = fail_after(Duration::MAX, async {
                (current_effective_deadline(), sleep(secs(1)).await).0
            })
            .await;
            (
                ready_at_zero,
                sleeping_at_zero,
                past,
                at_the_end,
                max,
                now() - start,
            )
        })
    });
    assert_eq!(
        got,
        (Some(1), None, Ok(2), Ok(true), Ok(None), NS + secs(2))
    );
}

/// `fail_after`: "An operation that completes in the same instant as the deadline is not
/// lost", also through two nested timeouts of the same duration around a sleep of exactly
/// that duration (three timers at one instant: two deadlines and the sleep).
#[test]
fn a_fail_after_around_a_sleep_of_exactly_its_duration_keeps_the_value() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let direct = fail_after(secs(1), async {
                sleep(secs(1)).await;
                "direct"
            })
            .await;
            let nested = fail_after(secs(1), async {
                fail_after(secs(1), sleep(secs(1))).await.is_ok()
            })
            .await;
            (direct, nested, now() - start)
        })
    });
    assert_eq!(got, (Ok("direct"), Ok(true), secs(2)));
}

// ---- intervals ---------------------------------------------------------------------------

/// The ticks an interval gives without time moving, as (scheduled, taken) offsets in ms.
async fn ticks_due(ticks: &mut trellis::Interval, start: Instant) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    loop {
        let mut tick = ticks.tick();
        let mut done = None;
        for _ in 0..2 {
            if let Some(at) = std::future::poll_fn(|cx| {
                Poll::Ready(match Pin::new(&mut tick).poll(cx) {
                    Poll::Ready(at) => Some(at),
                    Poll::Pending => None,
                })
            })
            .await
            {
                done = Some(at);
                break;
            }
        }
        match done {
            Some(at) => got.push((
                (at - start).as_millis() as u64,
                (now() - start).as_millis() as u64,
            )),
            None => return got,
        }
    }
}

/// `interval(100ms)` on the manual clock: the first tick, then `late` ms in one advance,
/// then the ticks that are due at once, then `then` more ms and the ticks due then.
fn late_consumer(policy: MissedTicks, late: u64, then: u64) -> Vec<Vec<(u64, u64)>> {
    manual(move || async move {
        let start = now();
        let mut ticks = interval(ms(100)).with_missed_tick_behavior(policy);
        let mut got = vec![ticks_due(&mut ticks, start).await];
        advance(ms(late));
        got.push(ticks_due(&mut ticks, start).await);
        advance(ms(then));
        got.push(ticks_due(&mut ticks, start).await);
        got
    })
}

/// `MissedTicks`: ticks are missed "when a tick is taken at or after the deadline of the
/// tick that follows it"; "A tick late by less than a whole period (nothing missed) never
/// changes the schedule". At the edges: the tick due at 100 taken at 199 (nothing missed,
/// every policy keeps 200), at exactly 200 (missed: Burst gives 200 at once, Delay and
/// Skip 300), and at 250 (Burst 200 at once then 300; Delay 350; Skip back on the grid at
/// 300).
#[test]
fn each_missed_tick_policy_at_the_edges_of_a_missed_tick() {
    for policy in [MissedTicks::Burst, MissedTicks::Delay, MissedTicks::Skip] {
        assert_eq!(
            late_consumer(policy, 199, 1),
            [vec![(0, 0)], vec![(100, 199)], vec![(200, 200)]],
            "{policy:?}, late by less than a period"
        );
    }
    assert_eq!(
        late_consumer(MissedTicks::Burst, 200, 100),
        [vec![(0, 0)], vec![(100, 200), (200, 200)], vec![(300, 300)]]
    );
    assert_eq!(
        late_consumer(MissedTicks::Delay, 200, 100),
        [vec![(0, 0)], vec![(100, 200)], vec![(300, 300)]]
    );
    assert_eq!(
        late_consumer(MissedTicks::Skip, 200, 100),
        [vec![(0, 0)], vec![(100, 200)], vec![(300, 300)]]
    );
    assert_eq!(
        late_consumer(MissedTicks::Burst, 250, 50),
        [vec![(0, 0)], vec![(100, 250), (200, 250)], vec![(300, 300)]]
    );
    assert_eq!(
        late_consumer(MissedTicks::Delay, 250, 99),
        [vec![(0, 0)], vec![(100, 250)], vec![]],
        "Delay: next due at 350, not 349"
    );
    assert_eq!(
        late_consumer(MissedTicks::Delay, 250, 100),
        [vec![(0, 0)], vec![(100, 250)], vec![(350, 350)]]
    );
    assert_eq!(
        late_consumer(MissedTicks::Skip, 250, 50),
        [vec![(0, 0)], vec![(100, 250)], vec![(300, 300)]]
    );
}

/// `MissedTicks::Burst`: "the missed ticks complete one after the other, as soon as they
/// are awaited, each reporting the instant it was scheduled for": a consumer ten periods
/// late gets ten ticks at once, in order, then the schedule continues.
#[test]
fn burst_delivers_every_missed_tick_of_a_very_late_consumer_in_order() {
    let got = late_consumer(MissedTicks::Burst, 1_000, 100);
    let burst: Vec<(u64, u64)> = (1..=10).map(|i| (i * 100, 1_000)).collect();
    assert_eq!(got, [vec![(0, 0)], burst, vec![(1_100, 1_100)]]);
}

/// An interval dropped while its tick waits, and a new one made: the new schedule starts
/// at its own call ("The first tick completes immediately"), and the dropped interval's
/// timer wakes nobody ("disarmed ... when the interval is dropped").
#[test]
fn an_interval_dropped_while_waiting_and_remade_starts_afresh_and_leaves_no_timer() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let mut old = interval(HOUR);
            old.tick().await;
            // Armed through the stream (a tick future would borrow it), then dropped.
            let mut next = old.next();
            assert!(!polled_ready(&mut next).await);
            drop(next);
            drop(old);
            sleep(secs(5)).await;
            let mut new = interval(secs(2));
            let first = new.tick().await - start;
            let second = new.tick().await - start;
            let polls = Cell::new(0);
            let out = count_polls(&polls, move_on_after(2 * HOUR, sleep_forever())).await;
            (first, second, out, polls.get(), now() - start)
        })
    });
    // A timer left behind would wake the last task at one hour: a third poll.
    assert_eq!(got, (secs(5), secs(7), None, 2, secs(7) + 2 * HOUR));
}

/// The `Stream` of an interval: "a `next()` dropped before it completes loses no tick",
/// and the tick it waited for comes at its own instant.
#[test]
fn a_stream_next_dropped_by_a_timeout_loses_no_tick() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let mut ticks = interval(secs(1));
            let first = ticks.next().await.map(|at| at - start);
            let cut = move_on_after(ms(300), ticks.next()).await;
            let second = ticks.next().await.map(|at| at - start);
            (first, cut, second, now() - start)
        })
    });
    assert_eq!(got, (Some(Duration::ZERO), None, Some(secs(1)), secs(1)));
}

/// `Interval::reset`: "the next tick is due a whole `period` from now (not at once)", also
/// with a backlog of missed ticks, and at the end of time (where `now + period`
/// overflows: the next tick never comes).
#[test]
fn reset_drops_a_backlog_and_at_the_end_of_time_the_next_tick_never_comes() {
    let got = manual(|| async {
        let start = now();
        let mut ticks = interval(secs(1));
        ticks.tick().await;
        advance(secs(10)); // nine ticks missed
        ticks.reset();
        let mut next = ticks.tick();
        let at_once = polled_ready(&mut next).await || polled_ready(&mut next).await;
        drop(next);
        advance(secs(1));
        let after_reset = ticks.tick().await - start;
        advance(Duration::MAX);
        ticks.reset();
        let mut never = ticks.tick();
        let ended = polled_ready(&mut never).await || polled_ready(&mut never).await;
        (at_once, after_reset, ended)
    });
    assert_eq!(got, (false, secs(11), false));
}

/// `Interval`: "Ticking panics ... in a runtime other than the one that armed its timer,
/// as a `Sleep` does", with its own message; dropping it there is fine.
#[test]
fn an_interval_ticked_in_another_runtime_panics_with_a_clear_message() {
    let message = guarded(|| {
        let mut ticks = run_virtual(async {
            let mut ticks = interval(HOUR);
            ticks.tick().await;
            let mut next = ticks.next();
            assert!(!polled_ready(&mut next).await); // armed here
            drop(next);
            ticks
        });
        panic_message_of(move || {
            run_virtual(async move {
                let _ = ticks.tick().await;
            })
        })
    });
    assert!(
        message.contains("`Interval` was ticked in a runtime other than the one that armed"),
        "{message}"
    );
}

/// An hour-long sleep, polled once so that its timer is armed in the current runtime.
async fn armed_hour_long_sleep() -> trellis::Sleep {
    let mut nap = sleep(HOUR);
    assert!(!polled_ready(&mut nap).await);
    nap
}

/// `Sleep`: "Polling a sleep panics ... in a runtime other than the one that armed its
/// timer (a sleep moved to a thread that runs another runtime ...)": the other runtime is
/// on a mock clock of its own, and the panic reaches it as a child's failure, not as a
/// corrupted timer queue: the runtime's own sleep still ends exactly on time.
#[test]
fn a_foreign_sleep_polled_in_a_child_fails_that_child_and_spares_the_queue() {
    let got = guarded(|| {
        let foreign = run_virtual(armed_hour_long_sleep());
        std::thread::spawn(move || {
            run_virtual(async move {
                let start = now();
                let out = nursery(async |n| {
                    n.spawn(async move {
                        sleep(secs(1)).await;
                    });
                    n.spawn(async move {
                        foreign.await;
                    });
                    Ok::<_, ()>(())
                });
                let caught = common::catch_unwind(out).await;
                let message = common::panic_message(&*caught.unwrap_err());
                sleep(secs(1)).await;
                (message, now() - start)
            })
        })
        .join()
        .unwrap()
    });
    assert!(
        got.0
            .contains("polled in a runtime other than the one that armed its timer"),
        "{}",
        got.0
    );
    assert_eq!(
        got.1,
        secs(1),
        "the own sleep was cut short by the failure, then 1 s"
    );
}

/// `sleep_forever`: "This future never completes; cancellation is the only way out" — by
/// a deadline, exactly, and by another task's cancel, exactly when it comes; on the manual
/// clock alone it is a deadlock, reported instead of a hang.
#[test]
fn sleep_forever_ends_only_by_cancellation_and_alone_is_a_deadlock() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let by_deadline = move_on_after(HOUR, sleep_forever()).await;
            let at = now() - start;
            let scope = CancelScope::new();
            let handle = scope.clone();
            let by_cancel = nursery(async |n| {
                n.spawn(async move {
                    sleep(secs(3)).await;
                    handle.cancel();
                });
                Ok::<_, ()>(scope.run(sleep_forever()).await)
            })
            .await
            .unwrap();
            (by_deadline, at, by_cancel, now() - start)
        })
    });
    assert_eq!(got, (None, HOUR, None, HOUR + secs(3)));
    let message = guarded(|| panic_message_of(|| Builder::new().mock_clock().run(sleep_forever())));
    assert!(message.contains("deadlock"), "{message}");
}

/// `Builder::mock_clock`: "Armed timers do not prevent [the deadlock]: time moves only by
/// `advance`, and no task can run to call it." A sleep of one nanosecond on the manual
/// clock, with nobody to advance, is reported, and the report says timers are armed.
#[test]
fn a_manual_clock_with_an_armed_timer_and_nobody_to_advance_is_a_deadlock() {
    let message = guarded(|| {
        panic_message_of(|| {
            Builder::new().mock_clock().run(async {
                sleep(NS).await;
            })
        })
    });
    assert!(message.contains("deadlock"), "{message}");
    assert!(message.contains("without autojump"), "{message}");
}

/// A relative timeout resolves at its first poll (`with_timeout`: "the clock starts at the
/// scope's first poll, not here"), so a `CancelScope` made with a timeout and kept for a
/// while has no deadline until it runs, and then exactly `timeout` from that poll; a
/// timeout of `Duration::MAX` resolves to none.
#[test]
fn a_kept_relative_timeout_resolves_at_its_first_poll() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let scope = CancelScope::new().with_timeout(secs(2));
            let never = CancelScope::new().with_timeout(Duration::MAX);
            let (handle, never_handle) = (scope.clone(), never.clone());
            sleep(secs(5)).await;
            assert_eq!(handle.deadline(), None, "not resolved before the start");
            let out = scope.run(sleep_forever()).await;
            let resolved = handle.deadline().map(|d| d - start);
            let kept = never.run(sleep(secs(1))).await;
            (out, resolved, kept, never_handle.deadline(), now() - start)
        })
    });
    assert_eq!(got, (None, Some(secs(7)), Some(()), None, secs(8)));
}

/// Many timers (a thousand children) at a few equal deadlines, half of them cancelled
/// before they fire: every survivor wakes exactly at its deadline, grouped in arming order,
/// and no cancelled one wakes.
#[test]
fn a_thousand_sleeps_at_equal_deadlines_half_cancelled_wake_exactly_in_order() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let log = RefCell::new(Vec::new());
            let woke_cancelled = Cell::new(0);
            nursery(async |n| {
                let mut handles = Vec::new();
                for i in 0..1000u64 {
                    let (log, woke_cancelled) = (&log, &woke_cancelled);
                    let at = start + secs(1 + i % 3);
                    handles.push(n.spawn(async move {
                        sleep_until(at).await;
                        if i % 2 == 1 {
                            woke_cancelled.set(woke_cancelled.get() + 1);
                        }
                        log.borrow_mut().push((i, now() == at));
                    }));
                }
                yield_now().await;
                for handle in handles.iter().skip(1).step_by(2) {
                    handle.cancel();
                }
            })
            .await
            .unwrap();
            (log.into_inner(), woke_cancelled.get())
        })
    });
    let mut expected: Vec<(u64, bool)> = Vec::new();
    for group in 0..3 {
        expected.extend(
            (0..1000)
                .filter(|i| i % 2 == 0 && i % 3 == group)
                .map(|i| (i, true)),
        );
    }
    assert_eq!(got.1, 0);
    assert_eq!(got.0, expected);
}

/// `CancelScope`: "any task of the runtime can cancel it or move its deadline while
/// another task runs code inside it", with the handle the body got from `run_with`: the
/// other task sees the relative timeout resolved at the scope's first poll, and a deadline
/// it sets one nanosecond ahead fires exactly then.
#[test]
fn a_handle_taken_from_inside_a_running_scope_moves_its_deadline_from_another_task() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let scope = CancelScope::new().with_timeout(HOUR);
            let shared = RefCell::new(None::<CancelScope>);
            let (out, resolved) = nursery(async |n| {
                let shared = &shared;
                let mover = n.spawn(async move {
                    yield_now().await;
                    let handle = shared.borrow().clone().expect("the body shared it");
                    let resolved = handle.deadline().map(|d| d - start);
                    handle.set_deadline(now() + NS);
                    Ok(resolved)
                });
                let out = scope
                    .run_with(async |s| {
                        *shared.borrow_mut() = Some(s.clone());
                        sleep_forever().await;
                    })
                    .await;
                Ok::<_, ()>((out, mover.await.unwrap()))
            })
            .await
            .unwrap();
            (out, resolved, now() - start)
        })
    });
    assert_eq!(got, (None, Some(HOUR), NS));
}

// ---- wakers that own timers --------------------------------------------------------------

/// A waker that owns a sleep of the same runtime: dropping the last copy of the waker drops
/// the sleep, whose destructor disarms its timer (a foreign executor's task that owns its
/// future has this shape: its waker is a reference to the task).
struct OwnsASleep {
    _owned: std::sync::Mutex<trellis::Sleep>,
}

impl Wake for OwnsASleep {
    fn wake(self: Arc<Self>) {}
}

/// An armed hour-long sleep inside a waker that the caller holds the only copy of.
async fn waker_owning_an_armed_sleep() -> Waker {
    let mut owned = sleep(HOUR);
    assert!(!polled_ready(&mut owned).await, "armed");
    Waker::from(Arc::new(OwnsASleep {
        _owned: std::sync::Mutex::new(owned),
    }))
}

/// `Sleep`: "Dropping it is always fine"; "Cancel-safe: dropping the future removes its
/// timer". A sleep whose timer holds the last copy of a waker that owns another sleep:
/// dropping the first drops the waker, whose sleep removes its own timer from the same
/// queue. Neither may panic, and neither timer may be left behind to wake the task.
#[test]
fn dropping_a_sleep_whose_waker_owns_another_sleep_removes_both_timers() {
    let polls = guarded(|| {
        run_virtual(async {
            let waker = waker_owning_an_armed_sleep().await;
            let mut nap = sleep(HOUR);
            assert!(
                Pin::new(&mut nap)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            drop(waker); // the queue's copy is the last one
            drop(nap);
            let polls = Cell::new(0);
            let out = count_polls(&polls, move_on_after(2 * HOUR, sleep_forever())).await;
            assert_eq!(out, None);
            polls.get()
        })
    });
    assert_eq!(polls, 2, "a timer was left behind and woke the task");
}

/// The same through the other way a timer's waker is let go: a sleep first polled with
/// the owning waker, then polled by its task (its timer's waker is replaced, the old one
/// dropped), then completed.
#[test]
fn a_sleep_repolled_by_its_task_lets_go_of_a_waker_that_owns_another_sleep() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let waker = waker_owning_an_armed_sleep().await;
            let mut nap = sleep(secs(1));
            assert!(
                Pin::new(&mut nap)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            drop(waker);
            nap.await; // re-polled with the task's waker: the owning waker goes
            now() - start
        })
    });
    assert_eq!(got, secs(1));
}

/// `Interval`: the timer is "disarmed when the tick completes, when the waiting
/// `IntervalTick` is dropped and when the interval is dropped"; the same waker that owns a
/// sleep, held only by an interval's timer, let go on each of those paths and on a
/// `reset` while the tick waits.
#[test]
fn an_interval_lets_go_of_a_waker_that_owns_a_sleep_on_every_path() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let mut done = Vec::new();
            for path in ["completed", "tick dropped", "interval dropped", "repolled"] {
                let mut ticks = interval(secs(1));
                ticks.tick().await;
                let waker = waker_owning_an_armed_sleep().await;
                let mut tick = ticks.tick();
                assert!(
                    Pin::new(&mut tick)
                        .poll(&mut Context::from_waker(&waker))
                        .is_pending()
                );
                drop(waker);
                match path {
                    "completed" | "repolled" => {
                        tick.await;
                    }
                    "tick dropped" => drop(tick),
                    _ => {
                        drop(tick);
                        drop(ticks);
                    }
                }
                done.push(path);
            }
            (done, now() - start)
        })
    });
    assert_eq!(
        got,
        (
            vec!["completed", "tick dropped", "interval dropped", "repolled"],
            secs(2)
        )
    );
}

// ---- a sleep moved between tasks ---------------------------------------------------------

/// A `Sleep` armed by one task and awaited by another (handed over through a cell) wakes
/// the task that waits on it now, exactly at its deadline (the timer's waker follows the
/// last poll).
#[test]
fn a_sleep_armed_by_one_child_and_awaited_by_another_wakes_the_second_on_time() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let handed = RefCell::new(None::<trellis::Sleep>);
            let woke = Cell::new(None);
            nursery(async |n| {
                let (handed, woke) = (&handed, &woke);
                n.spawn(async move {
                    let mut nap = sleep(secs(3));
                    assert!(
                        !polled_ready(&mut nap).await,
                        "armed with this child's waker"
                    );
                    *handed.borrow_mut() = Some(nap);
                    // Still alive (its task could be woken) until after the deadline.
                    move_on_after(secs(5), sleep_forever()).await;
                });
                n.spawn(async move {
                    yield_now().await;
                    let nap = handed.borrow_mut().take().expect("handed over");
                    nap.await;
                    woke.set(Some(now() - start));
                });
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            woke.get()
        })
    });
    assert_eq!(got, Some(secs(3)));
}

/// `wait_all_tasks_blocked`: "a task waiting for thread work ... is blocked, so the waiter
/// completes although a result may come a moment later", and before time moves; the
/// result then arrives without time moving either (autojump waits for it).
#[test]
fn an_idle_waiter_completes_while_thread_work_is_in_flight_and_time_stays() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let (go_tx, go_rx) = mpsc::channel::<u32>();
            let got = Cell::new(None);
            nursery(async |n| {
                let got = &got;
                n.spawn(async move {
                    got.set(Some(to_thread(move || go_rx.recv().unwrap()).await));
                });
                wait_all_tasks_blocked().await;
                let before = (got.get(), now() - start);
                go_tx.send(5).unwrap();
                let out = move_on_after(HOUR, async {
                    while got.get().is_none() {
                        yield_now().await;
                    }
                })
                .await;
                Ok::<_, ()>((before, out, got.get(), now() - start))
            })
            .await
            .unwrap()
        })
    });
    assert_eq!(
        got,
        ((None, Duration::ZERO), Some(()), Some(5), Duration::ZERO)
    );
}

// ---- ports of Trio's and CPython's tests -------------------------------------------------

/// Ports Trio's `test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0`: autojump does
/// not interfere with `wait_all_tasks_blocked` (the waiter wakes before time jumps), and
/// then time jumps to each deadline in turn.
#[test]
fn trio_autojump_and_wait_all_tasks_blocked() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let record = RefCell::new(Vec::new());
            nursery(async |n| {
                let record = &record;
                n.spawn(async move {
                    sleep(secs(100)).await;
                    record.borrow_mut().push(("yawn", now() - start));
                });
                n.spawn(async move {
                    wait_all_tasks_blocked().await;
                    record.borrow_mut().push(("waiter woke", now() - start));
                    sleep(secs(1000)).await;
                    record.borrow_mut().push(("waiter done", now() - start));
                });
            })
            .await
            .unwrap();
            record.into_inner()
        })
    });
    assert_eq!(
        got,
        [
            ("waiter woke", Duration::ZERO),
            ("yawn", secs(100)),
            ("waiter done", secs(1000))
        ]
    );
}

/// Ports the end of Trio's `test_sleep`: "`sleep(0)`" is a checkpoint (`assert_checkpoints`:
/// it suspends), and "the trivial `move_on_at(current_time())`" cancels a `sleep(0)`
/// inside it; and Trio's `test_fail`: `fail_after(100)` around `sleep(0)` does not fail.
#[test]
fn trio_sleep_zero_is_a_checkpoint_and_move_on_at_now_cancels_it() {
    let got = guarded(|| {
        run_virtual(async {
            let polls = Cell::new(0);
            count_polls(&polls, sleep(Duration::ZERO)).await;
            let cancelled = move_on_at(now(), sleep(Duration::ZERO)).await;
            let kept = fail_after(secs(100), sleep(Duration::ZERO)).await;
            (polls.get(), cancelled, kept)
        })
    });
    assert_eq!(got, (2, None, Ok(())));
}

/// Ports Trio's `test_timeout_deadline_on_entry` (relative deadlines, Trio 0.27): a
/// `move_on_after(5)` made before the clock jumps 3 resolves to entry + 5; setting the
/// deadline inside replaces it; a relative timeout set on the running scope counts from
/// now.
#[test]
fn trio_timeout_deadline_on_entry() {
    let got = manual(|| async {
        let scope = CancelScope::new().with_timeout(secs(5));
        assert_eq!(scope.deadline(), None);
        advance(secs(3));
        let entry = now();
        scope
            .run_with(async |s| {
                let resolved = s.deadline().map(|d| d - entry);
                s.set_deadline(entry + secs(3));
                let set = s.deadline().map(|d| d - entry);
                advance(secs(1));
                let relative = s
                    .clone()
                    .with_timeout(secs(4))
                    .deadline()
                    .map(|d| d - entry);
                (resolved, set, relative)
            })
            .await
    });
    assert_eq!(got, Some((Some(secs(5)), Some(secs(3)), Some(secs(5)))));
}

/// Ports CPython's `test_reschedule` (asyncio.timeout): a running deadline read back after
/// each reschedule, `None` once cleared; then an explicit cancel is not an expiry (its
/// reason is `Explicit`, not `Deadline`).
#[test]
fn cpython_reschedule_then_cancel_is_not_expired() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let deadline1 = start + secs(10);
            let deadline2 = deadline1 + secs(20);
            let scope = CancelScope::new().with_deadline(deadline1);
            let handle = scope.clone();
            let seen = RefCell::new(Vec::new());
            let out = nursery(async |n| {
                let (handle, seen) = (handle.clone(), &seen);
                n.spawn(async move {
                    yield_now().await;
                    seen.borrow_mut().push(handle.deadline() == Some(deadline1));
                    handle.set_deadline(deadline2);
                    seen.borrow_mut().push(handle.deadline() == Some(deadline2));
                    handle.clear_deadline();
                    seen.borrow_mut().push(handle.deadline().is_none());
                    sleep(secs(40)).await;
                    handle.cancel();
                });
                Ok::<_, ()>(scope.run(sleep(secs(50))).await)
            })
            .await
            .unwrap();
            (
                out,
                seen.into_inner(),
                handle.cancel_reason(),
                now() - start,
            )
        })
    });
    assert_eq!(
        got,
        (
            None,
            vec![true, true, true],
            Some(CancelReason::Explicit),
            secs(40)
        )
    );
}

/// Ports CPython's `test_nested_timeouts_loop_busy`: the inner timeout interrupts a sleep;
/// then busy work (here: `advance`, time passing without a suspension) runs past the outer
/// deadline, and the outer timeout stops the next sleep at once.
#[test]
fn cpython_nested_timeouts_loop_busy() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let inner_at = Cell::new(None);
            let outer = fail_after(ms(100), async {
                let inner = fail_after(ms(10), sleep(secs(10))).await;
                inner_at.set(Some((inner.is_err(), now() - start)));
                advance(ms(100)); // the expensive operation
                sleep(secs(10)).await;
            })
            .await;
            (
                inner_at.get(),
                outer.map_err(|e| e.deadline() - start),
                now() - start,
            )
        })
    });
    assert_eq!(got, (Some((true, ms(10))), Err(ms(100)), ms(110)));
}

/// Trio's `test_cancel_scope_deadline_duplicates` in spirit: a deadline moved two hundred
/// times, each time after the timer queue has looked at it (a sleep of 1 ns between), so
/// that stale heap entries pile up and are compacted; only the last deadline fires,
/// exactly, once.
#[test]
fn a_deadline_moved_two_hundred_times_fires_once_at_the_last() {
    let got = guarded(|| {
        run_virtual(async {
            let start = now();
            let scope = CancelScope::new().with_deadline(start + HOUR);
            let handle = scope.clone();
            let out = nursery(async |n| {
                let handle = handle.clone();
                n.spawn(async move {
                    for i in 0..200u32 {
                        let far = if i % 2 == 0 { HOUR * 2 } else { HOUR };
                        handle.set_deadline(now() + far + NS * i);
                        sleep(NS).await;
                    }
                    handle.set_deadline(now() + secs(1));
                });
                Ok::<_, ()>(scope.run(sleep_forever()).await)
            })
            .await
            .unwrap();
            (out, handle.cancel_reason(), now() - start)
        })
    });
    assert_eq!(
        got,
        (None, Some(CancelReason::Deadline), NS * 200 + secs(1))
    );
}

/// The delivery rule with a deadline passed by `advance`: a scope body that advances past
/// its own deadline and returns without suspending keeps its value ("A body that cancels
/// its own scope and then finishes without suspending also gives `Some`"), though
/// `cancel_called` ("or the deadline passed while the scope ran") is true; a nursery child
/// that does the same to its nursery's enclosing timeout finishes, but the nursery, cancelled
/// from outside, never completes with a value.
#[test]
fn advancing_past_the_own_deadline_without_suspending_keeps_the_value() {
    let got = manual(|| async {
        let start = now();
        let scope = CancelScope::new().with_timeout(secs(10));
        let handle = scope.clone();
        let own = scope
            .run(async {
                advance(secs(10));
                "kept"
            })
            .await;
        let own_flags = (
            handle.cancel_called(),
            handle.cancelled_caught(),
            handle.cancel_reason(),
        );
        let child_ran = Cell::new(false);
        let nursery_out = move_on_after(
            secs(10),
            nursery(async |n| {
                let child_ran = &child_ran;
                let child = n.spawn(async move {
                    advance(secs(10));
                    child_ran.set(true);
                    Ok::<_, ()>(42)
                });
                Ok::<_, ()>(child.await)
            }),
        )
        .await;
        (
            own,
            own_flags,
            child_ran.get(),
            nursery_out.is_none(),
            now() - start,
        )
    });
    assert_eq!(
        got,
        (
            Some("kept"),
            (true, false, Some(CancelReason::Deadline)),
            true,
            true,
            secs(20)
        )
    );
}

// ---- the interval's stream and its checkpoints -------------------------------------------

/// `Interval::tick`: "Every tick is a checkpoint: it suspends at least once, even when its
/// deadline has passed", also after an earlier tick future waited and was dropped. The
/// stream is documented differently (its `Stream` impl): a stream cannot tell a dropped
/// `next()` from one polled again, so after a `next()` that waited and was dropped, the
/// next one may complete at its first poll, and the dropped one's timer stays armed
/// until the interval is ticked (an autojump runtime jumps to it and wakes the task once).
#[test]
fn a_tick_after_a_dropped_tick_is_a_checkpoint_and_the_stream_is_as_documented() {
    let got = guarded(|| {
        run_virtual(async {
            let mut ticks = interval(secs(1));
            ticks.tick().await;
            assert_eq!(move_on_after(ms(300), ticks.tick()).await, None);
            sleep(secs(2)).await;
            let tick_polls = Cell::new(0);
            count_polls(&tick_polls, ticks.tick()).await;

            let mut stream = interval(HOUR);
            stream.next().await;
            assert_eq!(move_on_after(ms(300), stream.next()).await, None);
            // The dropped `next()`'s timer (at one hour) wakes this task once on the way.
            let wait_polls = Cell::new(0);
            count_polls(&wait_polls, move_on_after(2 * HOUR, sleep_forever())).await;
            let next_polls = Cell::new(0);
            count_polls(&next_polls, stream.next()).await;
            (tick_polls.get(), wait_polls.get(), next_polls.get())
        })
    });
    assert_eq!(got, (2, 3, 1));
}

/// `to_thread`: "The runtime never waits for an abandoned call." A call cancelled while in
/// flight (running and blocked, or not yet started by a worker) no longer holds time
/// back: the next sleep jumps at once, and the worker is released only after `run`.
#[test]
fn autojump_does_not_wait_for_an_abandoned_thread_call() {
    let got = guarded(|| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let got = run_virtual(async move {
            let start = now();
            let scope = CancelScope::new();
            let handle = scope.clone();
            let out = nursery(async |n| {
                n.spawn(async move {
                    wait_all_tasks_blocked().await; // the call is in flight, blocked
                    handle.cancel();
                });
                Ok::<_, ()>(
                    scope
                        .run(to_thread(move || release_rx.recv().is_ok()))
                        .await,
                )
            })
            .await
            .unwrap();
            sleep(HOUR).await;
            (out, now() - start)
        });
        // Fails when the call was abandoned before a worker started it (a queued call is
        // never started: its closure, and the receiver in it, are dropped unrun).
        let _ = release_tx.send(());
        got
    });
    assert_eq!(got, (None, HOUR));
}

/// A child's sleep ends in the instant the nursery body cancels it through its
/// `JoinHandle` (the body's own sleep, armed before or after the child's, ends then too).
/// The delivery rule keeps a value ready in the same instant as the cancellation (a unit
/// "polled once more if it may have been woken"), in both orders, and the handle gives it.
#[test]
fn a_child_cancelled_in_the_instant_its_sleep_ends_keeps_its_value_in_either_order() {
    let run_case = |body_first: bool| {
        guarded(move || {
            run_virtual(async move {
                let start = now();
                let at = start + secs(1);
                let ran = Cell::new(false);
                let joined = nursery(async |n| {
                    let ran = &ran;
                    let mut nap = sleep_until(at);
                    if body_first {
                        assert!(!polled_ready(&mut nap).await, "the body's timer first");
                    }
                    let child = n.spawn(async move {
                        sleep_until(at).await;
                        ran.set(true);
                        Ok::<_, ()>(7u32)
                    });
                    if !body_first {
                        yield_now().await; // the child arms its timer first
                    }
                    nap.await;
                    child.cancel();
                    Ok::<_, ()>(child.await.map_err(|e| e.to_string()))
                })
                .await
                .unwrap();
                (joined, ran.get(), now() - start)
            })
        })
    };
    for body_first in [true, false] {
        assert_eq!(
            run_case(body_first),
            (Ok(7), true, secs(1)),
            "body_first = {body_first}"
        );
    }
}
