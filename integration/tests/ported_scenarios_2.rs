//! More scenarios ported from Trio's test suite (`src/trio/_core/_tests/test_run.py`,
//! `src/trio/_tests/test_timeouts.py`, `test_sync.py`, `test_threads.py`,
//! `test_signals.py`) and from CPython's (`Lib/test/test_asyncio/test_taskgroups.py`,
//! `Lib/test/test_context.py`): the ones that `ported_scenarios.rs` and the behaviour files
//! (`nursery.rs`, `cancel.rs`, `sync.rs`, `thread.rs`, `from_thread.rs`, `context.rs`, …)
//! do not have yet. Each test is named after the test it ports
//! (`trio_test_run__test_xxx`, `cpython_test_taskgroups__test_xxx`) and says in its doc
//! comment which file it comes from, and where trellis deliberately differs, how and why.
//!
//! How Python translates (as in `ported_scenarios.rs`):
//!
//! - Where Python raises `Cancelled` / `CancelledError` at an await, trellis drops the unit
//!   at its next suspension; an [`OnDrop`] guard records the drop (Python's `except
//!   CancelledError` / `finally`).
//! - An exception becomes an `Err` value; a `BaseException` that is not an `Exception`
//!   (`KeyboardInterrupt`, `MyBaseExc`) becomes a panic, which trellis resumes unchanged.
//! - `nursery.cancel_scope.cancel()` and `task.cancel()` become cancelling a scope run
//!   around the nursery (a trellis nursery has no cancel of its own).
//! - Time is virtual (the mock clock, with autojump unless the test moves it by hand);
//!   every test runs under the watchdog.

#![allow(
    non_snake_case,
    reason = "test names keep the original's name: `trio_test_sync__test_CapacityLimiter_inf`"
)]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use common::{
    HANG_LIMIT, OnDrop, PanicOnDrop, catch_unwind, count_polls, guarded, ms, panic_message,
    run_virtual, secs,
};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    BorrowerId, Builder, CancelReason, CancelScope, CapacityLimiter, Context, ContextVar,
    LimiterError, Lock, RuntimeHandle, TaskName, advance, cancel_scope, cancelled, move_on_after,
    now, nursery, shield, sleep, sleep_forever, to_thread, yield_now,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Oops(&'static str);

impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

// ----- Trio: test_run.py -----

/// Ports trio `test_run.py::test_nursery_main_block_error_basic` and
/// `test_nursery_explicit_exception`: an error raised by the nursery's body comes out of
/// the nursery in a group of its own, the very object raised (Trio checks `e is exc`:
/// here the same `Rc`).
#[test]
fn trio_test_run__test_nursery_main_block_error_basic() {
    guarded(|| {
        let exc = Rc::new(Oops("whoops"));
        let out = run_virtual(async {
            let exc = exc.clone();
            nursery(async move |_n| Err::<(), _>(exc)).await
        });
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1);
        assert_eq!(group.failures()[0].task(), TaskName::Body);
        assert!(Rc::ptr_eq(group.first(), &exc), "the very error raised");
        assert_eq!(group.to_string(), "the nursery body failed: whoops");
    });
}

/// Ports trio `test_run.py::test_child_crash_basic`: a child's error propagates out of the
/// nursery to its parent, the very object raised, and it is the only failure.
#[test]
fn trio_test_run__test_child_crash_basic() {
    guarded(|| {
        let my_exc = Rc::new(Oops("uh oh"));
        let out = run_virtual(async {
            let my_exc = my_exc.clone();
            nursery(async move |n| {
                n.start_soon(async move { Err::<(), _>(my_exc) });
                Ok(())
            })
            .await
        });
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1);
        assert_eq!(group.failures()[0].task(), TaskName::Child(1));
        assert!(Rc::ptr_eq(group.first(), &my_exc));
    });
}

/// The loopers of trio `test_basic_interleave`: record `(who, i)`, then checkpoint.
async fn looper(who: &'static str, record: &RefCell<Vec<(&'static str, i32)>>) {
    for i in 0..3 {
        record.borrow_mut().push((who, i));
        yield_now().await;
    }
}

/// Ports trio `test_run.py::test_basic_interleave`: two tasks that checkpoint after each
/// step take turns: the record is the rounds `{a0, b0}`, `{a1, b1}`, `{a2, b2}` in any
/// order within a round (Trio's `check_sequence_matches`). On trellis's default FIFO
/// schedule the order within a round is fixed too (spawn order); under every shuffle seed
/// only the rounds are.
#[test]
fn trio_test_run__test_basic_interleave() {
    guarded(|| {
        let record = RefCell::new(Vec::new());
        run_virtual(async {
            nursery(async |n| {
                n.spawn(looper("a", &record));
                n.spawn(looper("b", &record));
            })
            .await
            .unwrap();
        });
        assert_eq!(
            record.into_inner(),
            [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
        );
        for seed in 0..16 {
            let record = RefCell::new(Vec::new());
            Builder::new().autojump().shuffle_seed(seed).run(async {
                nursery(async |n| {
                    n.spawn(looper("a", &record));
                    n.spawn(looper("b", &record));
                })
                .await
                .unwrap();
            });
            let record = record.into_inner();
            assert_eq!(record.len(), 6, "seed {seed}");
            for (round, pair) in record.chunks(2).enumerate() {
                let mut pair = pair.to_vec();
                pair.sort();
                let i = round as i32;
                assert_eq!(pair, [("a", i), ("b", i)], "seed {seed}: {record:?}");
            }
        }
    });
}

/// Ports trio `test_run.py::test_child_crash_wakes_parent`: a child crashes while the body
/// sleeps forever; the crash wakes (cancels) the body, and the group holds only the crash,
/// its message unchanged. No virtual time passes: nothing waits for a timer.
#[test]
fn trio_test_run__test_child_crash_wakes_parent() {
    guarded(|| {
        let body_dropped = Cell::new(false);
        let (out, elapsed) = run_virtual(async {
            let start = now();
            let out = nursery(async |n| {
                n.spawn(async { Err::<(), _>(Oops("this is a crash")) });
                let _on_drop = OnDrop(|| body_dropped.set(true));
                sleep_forever().await;
                Ok(())
            })
            .await;
            (out, now() - start)
        });
        let group = out.unwrap_err();
        assert_eq!(group.into_errors(), [Oops("this is a crash")]);
        assert!(body_dropped.get(), "the sleeping body was cancelled");
        assert_eq!(elapsed, Duration::ZERO);
    });
}

/// Ports trio `test_run.py::test_current_time_with_mock_clock`: on the mock clock
/// (`Builder::mock_clock`, Trio's `MockClock` without autojump) the time stands still
/// between reads and moves by exactly what is jumped (`advance`, Trio's `jump`).
#[test]
fn trio_test_run__test_current_time_with_mock_clock() {
    guarded(|| {
        Builder::new().mock_clock().run(async {
            let start = now();
            assert_eq!(now(), start);
            assert_eq!(now(), now());
            advance(ms(3150));
            assert_eq!(now(), start + ms(3150));
        });
    });
}

/// Ports trio `test_run.py::test_unshield_while_cancel_propagating`: `outer` is cancelled
/// while the body runs inside `inner`; the body's checkpoint delivers the cancellation,
/// and its `finally` (here a destructor run while the body is dropped) shields `inner`.
/// Shielding a scope whose body is already being cut off changes nothing: the
/// cancellation still belongs to `outer`, which catches it, and `inner` caught nothing.
#[test]
fn trio_test_run__test_unshield_while_cancel_propagating() {
    guarded(|| {
        let (outer, inner) = run_virtual(async {
            let outer = CancelScope::new();
            let inner = CancelScope::new();
            let (o, i) = (outer.clone(), inner.clone());
            let out = outer
                .clone()
                .run(inner.clone().run(async move {
                    o.cancel();
                    let _finally = OnDrop(move || i.set_shield(true));
                    yield_now().await;
                    unreachable!("the checkpoint delivers the cancellation");
                }))
                .await;
            assert_eq!(out, None);
            (outer, inner)
        });
        assert!(outer.cancelled_caught());
        assert!(!inner.cancelled_caught());
        assert!(inner.shield(), "the destructor ran");
    });
}

/// Ports trio `test_run.py::test_yield_briefly_checks_for_timeout`: a checkpoint inside a
/// scope whose deadline is in the future passes; after the clock is jumped past the
/// deadline (the manual mock clock: nothing fired in between), the next checkpoint
/// delivers the timeout.
#[test]
fn trio_test_run__test_yield_briefly_checks_for_timeout() {
    guarded(|| {
        let passed_first = Cell::new(false);
        let scope = Builder::new().mock_clock().run(async {
            let scope = CancelScope::new().with_deadline(now() + secs(5));
            let out = scope
                .clone()
                .run(async {
                    yield_now().await;
                    passed_first.set(true);
                    advance(secs(10));
                    yield_now().await;
                    unreachable!("the second checkpoint delivers the timeout");
                })
                .await;
            assert_eq!(out, None);
            scope
        });
        assert!(passed_first.get());
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
    });
}

/// Ports trio `test_run.py::test_cancel_scope_no_cancellederror`: a scope that is cancelled
/// but whose body raises something else (never reaching a checkpoint) lets that error
/// through and does not set `cancelled_caught`. Both shapes: a body returning the errors
/// itself, and (Trio's `ExceptionGroup` of two `RuntimeError`s) a nursery entered in the
/// cancelled scope whose two children fail before their first suspension: the group of
/// both comes out, as trellis documents ("Errors are still returned").
#[test]
fn trio_test_run__test_cancel_scope_no_cancellederror() {
    guarded(|| {
        run_virtual(async {
            let scope = CancelScope::new();
            let out = scope
                .clone()
                .run_with(async |s| {
                    s.cancel();
                    Err::<(), _>([Oops("test"), Oops("test")])
                })
                .await;
            assert_eq!(out, Some(Err([Oops("test"), Oops("test")])));
            assert!(scope.cancel_called());
            assert!(!scope.cancelled_caught());

            let scope = CancelScope::new();
            let out = scope
                .clone()
                .run_with(async |s| {
                    s.cancel();
                    nursery(async |n| {
                        n.spawn(async { Err::<(), _>(Oops("test")) });
                        n.spawn(async { Err::<(), _>(Oops("test")) });
                        Ok(())
                    })
                    .await
                })
                .await;
            let group = out.expect("the errors are not eaten").unwrap_err();
            assert_eq!(group.into_errors(), [Oops("test"), Oops("test")]);
            assert!(!scope.cancelled_caught());
        });
    });
}

/// Ports trio `test_run.py::test_trivial_yields` (its nursery cases), adapted where trellis
/// deliberately differs. In Trio, opening and closing a nursery in a cancelled scope does
/// not check for cancellation unless something inside does: an empty nursery, or one
/// whose only child returns at once, completes and the scope catches nothing. trellis
/// documents the opposite (`nursery`, "Cancellation": "When an *enclosing* scope cancels
/// the nursery, the nursery never completes with a value, even if the body had already
/// returned one"; `runtime/nursery/open.rs` says why: the caller's next line must not run
/// as if nothing had been cancelled), so awaiting a nursery in a cancelled scope acts as
/// a checkpoint: its body and the child still run to their first suspension (here to
/// their end), then the scope catches the cancellation. What Trio and trellis agree on: a
/// body that raises in a cancelled scope gets its error out.
#[test]
fn trio_test_run__test_trivial_yields() {
    guarded(|| {
        run_virtual(async {
            let cs = CancelScope::new();
            let out = cs
                .clone()
                .run_with(async |cs| {
                    cs.cancel();
                    nursery(async |_n| {}).await
                })
                .await;
            assert_eq!(out, None, "Trio: completes (Some(Ok(())))");
            assert!(cs.cancelled_caught(), "Trio: not caught");

            let ran = Cell::new(false);
            let cs = CancelScope::new();
            let out = cs
                .clone()
                .run_with(async |cs| {
                    cs.cancel();
                    nursery(async |n| {
                        n.spawn(async { ran.set(true) });
                    })
                    .await
                })
                .await;
            assert_eq!(out, None, "Trio: completes (Some(Ok(())))");
            assert!(ran.get(), "the child ran to its end");
            assert!(cs.cancelled_caught(), "Trio: not caught");

            let cs = CancelScope::new();
            let out = cs
                .clone()
                .run_with(async |cs| {
                    cs.cancel();
                    nursery(async |_n| Err::<(), _>(Oops("KeyError"))).await
                })
                .await;
            let group = out.expect("the error comes out").unwrap_err();
            assert_eq!(group.into_errors(), [Oops("KeyError")]);
        });
    });
}

/// `depth` scopes nested around `body`, each returning what the one inside returned.
fn nest(
    depth: usize,
    scopes: &mut Vec<CancelScope>,
    body: std::pin::Pin<Box<dyn Future<Output = ()>>>,
) -> std::pin::Pin<Box<dyn Future<Output = bool>>> {
    let mut fut: std::pin::Pin<Box<dyn Future<Output = bool>>> = Box::pin(async move {
        body.await;
        true
    });
    for _ in 0..depth {
        let scope = CancelScope::new();
        scopes.push(scope.clone());
        fut = Box::pin(async move { scope.run(fut).await.unwrap_or(false) });
    }
    fut
}

/// Ports trio `test_run.py::test_very_deep_cancel_scope_nesting` ("used to crash with a
/// RecursionError in CancelStatus.recalculate"): 5000 scopes nested inside an outermost
/// one, which is cancelled while the innermost body sleeps forever. The outermost catches
/// the cancellation; none of the 5000 does. (A Rust future tree this deep is polled
/// recursively, one frame per level, by any executor, so the test runs on a thread with
/// a large stack; what it checks is that trellis's cancellation itself copes.)
#[test]
fn trio_test_run__test_very_deep_cancel_scope_nesting() {
    guarded(|| {
        let worker = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(|| {
                run_virtual(async {
                    let outermost = CancelScope::new();
                    let mut scopes = Vec::new();
                    let o = outermost.clone();
                    let inner = nest(
                        5000,
                        &mut scopes,
                        Box::pin(async move {
                            o.cancel();
                            sleep_forever().await
                        }),
                    );
                    let out = outermost.clone().run(inner).await;
                    assert_eq!(out, None);
                    assert!(outermost.cancelled_caught());
                    assert!(scopes.iter().all(|s| !s.cancelled_caught()));
                    assert!(scopes.iter().all(|s| !s.cancel_called()));
                });
            })
            .unwrap();
        worker.join().unwrap();
    });
}

/// Ports trio `test_run.py::test_spawn_name`: a task's name is what it was given, else
/// something that identifies the code spawned (Trio: the function's name; trellis: the
/// spawn site, `TaskLabel`'s `Display`). The names show where a task's failure is
/// reported.
#[test]
fn trio_test_run__test_spawn_name() {
    guarded(|| {
        let group = run_virtual(async {
            nursery(async |n| {
                n.spawn(async { Err::<(), _>(Oops("func1")) });
                n.spawn_named("func3", async { Err::<(), _>(Oops("func3")) });
                n.spawn_named(String::from("object"), async { Err::<(), _>(Oops("obj")) });
                Ok(())
            })
            .await
            .unwrap_err()
        });
        let f = group.failures();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].label().name(), None);
        assert!(
            f[0].label()
                .location()
                .file()
                .ends_with("ported_scenarios_2.rs"),
            "{}",
            f[0].label()
        );
        assert!(f[0].label().to_string().starts_with("spawned at "));
        assert_eq!(f[1].label().name(), Some("func3"));
        assert_eq!(f[1].label().to_string(), "func3");
        assert_eq!(f[1].to_string(), "child 2 \"func3\" failed: func3");
        assert_eq!(f[2].label().name(), Some("object"));
    });
}

static MULTITASK: ContextVar<&'static str> = ContextVar::with_default("test", || "hmmm");

/// Ports trio `test_run.py::test_contextvar_multitask`: a child's `set` is invisible to its
/// parent; the parent's later `set` is seen by a child spawned after it.
#[test]
fn trio_test_run__test_contextvar_multitask() {
    guarded(|| {
        let checked = Cell::new(0);
        run_virtual(async {
            let checked = &checked;
            nursery(async |n| {
                n.spawn(async move {
                    assert_eq!(MULTITASK.get(), Some("hmmm"));
                    let _token = MULTITASK.set("hmmmm");
                    assert_eq!(MULTITASK.get(), Some("hmmmm"));
                    checked.set(checked.get() + 1);
                });
                wait_all_tasks_blocked().await;
                assert_eq!(MULTITASK.get(), Some("hmmm"));
                let token = MULTITASK.set("hmmmm");
                n.spawn(async move {
                    assert_eq!(MULTITASK.get(), Some("hmmmm"));
                    checked.set(checked.get() + 1);
                });
                wait_all_tasks_blocked().await;
                MULTITASK.reset(token).unwrap();
            })
            .await
            .unwrap();
        });
        assert_eq!(checked.get(), 2);
    });
}

// ----- Trio: test_timeouts.py -----

/// Ports trio `test_timeouts.py::test_cannot_wake_sleep_forever`, adapted: Trio raises
/// `RuntimeError` when something reschedules a task sleeping in `sleep_forever`. trellis
/// has no reschedule; what reaches a future from outside is a wake, and a spurious wake
/// (here five, from a sibling) must not end the sleep: trellis documents that
/// `sleep_forever` "never completes; only a cancellation ends it". So the sleep is polled
/// again at each wake, stays pending, and ends only when its timeout cancels it, exactly
/// at 1 s.
#[test]
fn trio_test_timeouts__test_cannot_wake_sleep_forever() {
    guarded(|| {
        let polls = Cell::new(0);
        let (out, elapsed) = run_virtual(async {
            let start = now();
            let waker: RefCell<Option<Waker>> = RefCell::new(None);
            let waker = &waker;
            let out = move_on_after(
                secs(1),
                nursery(async |n| {
                    n.spawn(async move {
                        for _ in 0..5 {
                            yield_now().await;
                            if let Some(w) = waker.borrow().as_ref() {
                                w.wake_by_ref();
                            }
                        }
                    });
                    let mut sleeping = std::pin::pin!(count_polls(&polls, sleep_forever()));
                    std::future::poll_fn(|cx| {
                        *waker.borrow_mut() = Some(cx.waker().clone());
                        sleeping.as_mut().poll(cx)
                    })
                    .await;
                    unreachable!("sleep_forever woke up");
                }),
            )
            .await;
            (out, now() - start)
        });
        assert!(out.is_none());
        assert_eq!(elapsed, secs(1));
        assert!(
            polls.get() >= 6,
            "each spurious wake polled it: {}",
            polls.get()
        );
    });
}

/// Ports trio `test_timeouts.py::test_context_shields_from_outer`, for both kinds of
/// timeout scope (relative, `with_timeout`, as `move_on_after`; absolute, `with_deadline`,
/// as `move_on_at`) with `shield=True`: the shielded scope protects its body from the
/// cancelled `outer` at a checkpoint; once the shield is turned off, the next checkpoint
/// delivers `outer`'s cancellation, which `outer` catches (not the timeout scope).
#[test]
fn trio_test_timeouts__test_context_shields_from_outer() {
    guarded(|| {
        for relative in [true, false] {
            let reached = Cell::new(false);
            let (outer, inner, elapsed) = run_virtual(async {
                let start = now();
                let outer = CancelScope::new();
                let inner = if relative {
                    CancelScope::new().with_timeout(secs(1))
                } else {
                    CancelScope::new().with_deadline(start + secs(1))
                }
                .with_shield(true);
                let (o, i, reached) = (outer.clone(), inner.clone(), &reached);
                let out = outer
                    .clone()
                    .run(inner.clone().run(async move {
                        o.cancel();
                        yield_now().await;
                        reached.set(true);
                        i.set_shield(false);
                        yield_now().await;
                        unreachable!("the unshielded checkpoint delivers the cancellation");
                    }))
                    .await;
                assert_eq!(out, None);
                (outer, inner, now() - start)
            });
            assert!(reached.get(), "relative {relative}: the shield didn't work");
            assert!(outer.cancelled_caught());
            assert!(!inner.cancelled_caught());
            assert_eq!(elapsed, Duration::ZERO);
        }
    });
}

/// Ports trio `test_timeouts.py::test_fail_after_fails_even_if_shielded`: a timeout scope
/// with `shield=True` inside a cancelled `outer` protects its body from `outer`, so the body
/// sleeps until the scope's own deadline, which then fires (the scope's own cancellation
/// is not shielded from itself): after exactly 1 s, with `CancelReason::Deadline`, which
/// is Trio's `TooSlowError` (trellis's `fail_after` takes no shield, so the scope is a
/// `CancelScope` with both, and "timed out" is its reason). Trio's `TooSlowError`
/// propagates through `outer` uncaught; here the timeout scope's `None` is the value of
/// `outer`'s body, which returns it without suspending again, so `outer` catches nothing.
#[test]
fn trio_test_timeouts__test_fail_after_fails_even_if_shielded() {
    guarded(|| {
        let (out, outer, inner, elapsed) = run_virtual(async {
            let start = now();
            let outer = CancelScope::new();
            let inner = CancelScope::new().with_timeout(secs(1)).with_shield(true);
            let (o, i) = (outer.clone(), inner.clone());
            let out = outer
                .clone()
                .run(async move {
                    o.cancel();
                    i.run(sleep_forever()).await
                })
                .await;
            (out, outer, inner, now() - start)
        });
        assert_eq!(out, Some(None));
        assert_eq!(elapsed, secs(1));
        assert!(inner.cancelled_caught());
        assert_eq!(inner.cancel_reason(), Some(CancelReason::Deadline));
        assert!(!outer.cancelled_caught());
    });
}

/// Ports trio `test_timeouts.py::test_invalid_access_unentered`, adapted: in Trio, reading
/// the `deadline` of a relative scope that was never entered raises `RuntimeError`, and so
/// does setting one ("nothing happened!"). trellis documents a relative timeout as
/// resolved "when the scope starts" and `deadline()` as `None` until then (`deadline`'s
/// example); `set_deadline` "sets or clears the deadline" and takes effect at once, so on
/// an unentered relative scope it replaces the timeout: the scope then fires at the
/// absolute deadline set, not 5 s after it starts.
#[test]
fn trio_test_timeouts__test_invalid_access_unentered() {
    guarded(|| {
        run_virtual(async {
            let start = now();
            let cs = CancelScope::new().with_timeout(secs(5));
            assert_eq!(cs.deadline(), None, "unentered: no absolute deadline yet");
            cs.set_deadline(start + secs(7));
            assert_eq!(cs.deadline(), Some(start + secs(7)));
            sleep(secs(1)).await;
            let out = cs.clone().run(sleep_forever()).await;
            assert_eq!(out, None);
            assert_eq!(
                now() - start,
                secs(7),
                "the absolute deadline, not 1 s + 5 s"
            );
            assert_eq!(cs.deadline(), Some(start + secs(7)));
        });
    });
}

// ----- Trio: test_sync.py -----

/// Ports trio `test_sync.py::test_CapacityLimiter_inf`: `usize::MAX` stands for `math.inf`.
/// Releasing what was never borrowed is an error (Trio's `RuntimeError`) and changes
/// nothing; a borrow counts. (Trio's `inf - 1` is still `inf`; here the available tokens
/// are `usize::MAX - 1`.)
#[test]
fn trio_test_sync__test_CapacityLimiter_inf() {
    guarded(|| {
        run_virtual(async {
            let c = CapacityLimiter::new(usize::MAX).unwrap();
            let _ = format!("{c:?}"); // smoke test, as Trio's repr
            assert_eq!(c.total_tokens(), usize::MAX);
            assert_eq!(c.borrowed_tokens(), 0);
            assert_eq!(c.available_tokens(), usize::MAX);
            assert_eq!(
                c.release_on_behalf_of(BorrowerId::new()),
                Err(LimiterError::NotBorrowing)
            );
            assert_eq!(c.borrowed_tokens(), 0);
            let token = c.try_acquire().unwrap();
            assert_eq!(c.borrowed_tokens(), 1);
            assert_eq!(c.available_tokens(), usize::MAX - 1);
            drop(token);
            assert_eq!(c.borrowed_tokens(), 0);
        });
    });
}

/// Ports trio `test_sync.py::test_CapacityLimiter_zero_limit_tokens`, adapted: Trio 0.32
/// allows `total_tokens = 0` (nobody gets through until it is raised); trellis refuses a
/// total of 0 (`LimiterError::ZeroTotalTokens`, documented on `new` and
/// `set_total_tokens`: "nothing changes then"). So: 0 is refused both at construction and
/// as a change, the limiter keeps its 5 tokens, the five borrowers of Trio's test get them
/// at once and a sixth waits until one is released; and Trio's last check holds: a
/// nursery cancelled with a borrower still waiting leaves no borrower and no waiter
/// behind (Trio's `_pending_borrowers == {}`).
#[test]
fn trio_test_sync__test_CapacityLimiter_zero_limit_tokens() {
    guarded(|| {
        run_virtual(async {
            assert_eq!(
                CapacityLimiter::new(0).err(),
                Some(LimiterError::ZeroTotalTokens)
            );
            let c = CapacityLimiter::new(5).unwrap();
            assert_eq!(c.total_tokens(), 5);
            let ids: Vec<BorrowerId> = (0..8).map(|_| BorrowerId::new()).collect();
            let (c, ids) = (&c, &ids);
            cancel_scope(async |scope| {
                nursery(async |n| {
                    assert_eq!(c.set_total_tokens(0), Err(LimiterError::ZeroTotalTokens));
                    assert_eq!(c.total_tokens(), 5, "nothing changed");
                    for &id in &ids[..5] {
                        n.spawn(async move { c.acquire_on_behalf_of(id).await.unwrap() });
                        wait_all_tasks_blocked().await;
                    }
                    assert!(ids[..5].iter().all(|&id| c.is_borrowing(id)));
                    assert_eq!(c.waiting(), 0);
                    n.spawn(async move { c.acquire_on_behalf_of(ids[5]).await.unwrap() });
                    wait_all_tasks_blocked().await;
                    assert_eq!(c.waiting(), 1);
                    for &id in &ids[..5] {
                        c.release_on_behalf_of(id).unwrap();
                    }
                    assert_eq!(c.waiting(), 0);
                    assert!(c.is_borrowing(ids[5]));
                    // The lowest total trellis allows, with one borrower: the next waits.
                    c.set_total_tokens(1).unwrap();
                    n.spawn(async move { c.acquire_on_behalf_of(ids[6]).await.unwrap() });
                    wait_all_tasks_blocked().await;
                    assert_eq!(c.waiting(), 1);
                    scope.cancel();
                })
                .await
                .unwrap()
            })
            .await;
            assert_eq!(c.total_tokens(), 1);
            assert_eq!(c.waiting(), 0);
            assert!(
                !c.is_borrowing(ids[6]),
                "the cancelled waiter borrowed nothing"
            );
            c.release_on_behalf_of(ids[5]).unwrap();
            assert_eq!(c.borrowed_tokens(), 0);
        });
    });
}

/// Ports trio `test_sync.py::test_lock_acquire_unowned_lock`, adapted: in Trio a task that
/// exits holding a `Lock` breaks it, and the next `acquire` raises `BrokenResourceError`.
/// A trellis lock is held by its `LockGuard`, which the task's end drops, so an owner
/// cannot exit without releasing: the next `lock` succeeds at once. The only way to keep
/// it held past its owner is to leak the guard (`mem::forget`), and then the lock stays
/// held for good: a waiter waits (here until its timeout), no error breaks it.
#[test]
fn trio_test_sync__test_lock_acquire_unowned_lock() {
    guarded(|| {
        run_virtual(async {
            let lock = Lock::new(());
            nursery(async |n| {
                n.spawn(async {
                    let _guard = lock.lock().await;
                });
            })
            .await
            .unwrap();
            assert!(!lock.is_locked(), "the owner's end released it");
            drop(lock.try_lock().expect("free"));

            std::mem::forget(lock.lock().await);
            assert!(lock.is_locked());
            assert!(move_on_after(secs(1), lock.lock()).await.is_none());
            assert!(lock.is_locked());
            assert_eq!(lock.waiting(), 0, "the timed-out waiter left the queue");
        });
    });
}

/// Ports trio `test_sync.py::test_lock_multiple_acquire`, adapted as above: in Trio the
/// first task exits holding the lock and the second one's `acquire` raises
/// `BrokenResourceError`; in trellis each task's end releases its guard, so both take the
/// lock in turn and the nursery succeeds.
#[test]
fn trio_test_sync__test_lock_multiple_acquire() {
    guarded(|| {
        let taken = Cell::new(0);
        run_virtual(async {
            let (lock, taken) = (&Lock::new(()), &taken);
            nursery(async |n| {
                for _ in 0..2 {
                    n.spawn(async move {
                        let _guard = lock.lock().await;
                        taken.set(taken.get() + 1);
                    });
                }
            })
            .await
            .unwrap();
            assert!(!lock.is_locked());
        });
        assert_eq!(taken.get(), 2);
    });
}

/// Ports trio `test_sync.py::test_lock_handover`: the body holds the lock (Trio's
/// `acquire_nowait`), a child waits for it, and the body's release hands it over to the
/// child: from the release on the lock belongs to the child (it stays locked, nobody else
/// can take it, before the child has even run), and the child holds it until it ends.
#[test]
fn trio_test_sync__test_lock_handover() {
    guarded(|| {
        let got = Cell::new(false);
        run_virtual(async {
            let (lock, got) = (&Lock::new(()), &got);
            let guard = lock.try_lock().unwrap();
            nursery(async |n| {
                n.spawn(async move {
                    let _guard = lock.lock().await;
                    got.set(true);
                    yield_now().await;
                    assert!(lock.is_locked());
                });
                wait_all_tasks_blocked().await;
                assert_eq!(lock.waiting(), 1);
                drop(guard); // hand over to the child
                assert!(lock.is_locked(), "handed over, not free");
                assert!(lock.try_lock().is_err(), "it is the child's");
                assert!(!got.get(), "the child has not run yet");
            })
            .await
            .unwrap();
            assert!(!lock.is_locked());
        });
        assert!(got.get());
    });
}

// ----- Trio: test_threads.py -----

/// Ports trio `test_threads.py::test_recursive_to_thread`: a worker thread calls back into
/// the runtime (`from_thread.run`), and the work it sends there makes another `to_thread`
/// call, which runs on another worker thread than the first (that one is blocked waiting
/// for the work to finish).
#[test]
fn trio_test_threads__test_recursive_to_thread() {
    guarded(|| {
        let (outer, inner, runtime) = run_virtual(async {
            let handle = RuntimeHandle::current();
            let (outer, inner) = to_thread(move || {
                let outer = std::thread::current().id();
                let inner = handle
                    .run(|| to_thread(|| std::thread::current().id()))
                    .expect("the runtime runs the work");
                (outer, inner)
            })
            .await;
            (outer, inner, std::thread::current().id())
        });
        assert_ne!(outer, inner);
        assert_ne!(outer, runtime);
        assert_ne!(inner, runtime);
    });
}

/// Ports trio `test_threads.py::test_from_thread_host_cancelled`, its `abandon_on_cancel=True`
/// cases (the only kind of `to_thread` trellis has: a dropped call is abandoned). A worker
/// cancels the scope of the task waiting for it (through the runtime, as Trio's
/// `from_thread_run_sync(cancel_scope.cancel)`); the scope catches the cancellation, and
/// the worker's next call back into the runtime still works and is not cancelled: a sync
/// one returns its value, and so does an async one that never checkpoints.
///
/// Trio's last case (`async_time_bomb`: the work sent back cancels the host scope, then
/// sleeps under `fail_after(10)`) differs by design: Trio runs `from_thread.run` work in
/// the host task, under the cancelled scope, so the bomb is cancelled at once. trellis runs
/// it "outside every task and scope" (`RuntimeHandle`), so only the waiting task is
/// cancelled, at once (no virtual time passes); the work is not, and the runtime's end
/// releases the worker with `is_runtime_gone`.
#[test]
fn trio_test_threads__test_from_thread_host_cancelled() {
    guarded(|| {
        for asynchronous in [false, true] {
            run_virtual(async {
                let (tx, rx) = std::sync::mpsc::channel();
                let handle = RuntimeHandle::current();
                let scope = CancelScope::new();
                let remote = scope.remote();
                let out = scope
                    .clone()
                    .run(to_thread(move || {
                        handle.run_sync(move || remote.cancel()).unwrap();
                        let next = if asynchronous {
                            handle.run(|| async { false })
                        } else {
                            handle.run_sync(|| false)
                        };
                        tx.send(next.is_ok_and(|cancelled| !cancelled)).unwrap();
                    }))
                    .await;
                assert_eq!(out, None);
                assert!(scope.cancelled_caught());
                let not_cancelled = to_thread(move || rx.recv_timeout(HANG_LIMIT).unwrap()).await;
                assert!(not_cancelled, "async: {asynchronous}");
            });
        }

        let (tx, rx) = std::sync::mpsc::channel();
        let (caught, elapsed) = run_virtual(async {
            let start = now();
            let handle = RuntimeHandle::current();
            let scope = CancelScope::new();
            let remote = scope.remote();
            let out = scope
                .clone()
                .run(to_thread(move || {
                    let bomb = handle.run(move || async move {
                        remote.cancel();
                        trellis::fail_after(secs(10), sleep_forever()).await
                    });
                    tx.send(bomb.map_err(|e| e.is_runtime_gone())).unwrap();
                }))
                .await;
            assert_eq!(out, None);
            (scope.cancelled_caught(), now() - start)
        });
        assert!(caught);
        assert_eq!(elapsed, Duration::ZERO);
        let bomb = rx.recv_timeout(HANG_LIMIT).expect("the worker is released");
        assert_eq!(bomb.err(), Some(true), "released by the runtime's end");
    });
}

/// Ports trio `test_threads.py::test_reentry_doesnt_deadlock` (a regression test of a
/// hang): four tasks loop on `to_thread` calls that call back into the runtime to sleep 0.
/// Trio bounds the loop with `move_on_after(2)`; on trellis's autojump clock thread work in
/// flight holds the clock back (documented on `to_thread`), so virtual time would hardly
/// move: the bound is a count of rounds instead, and the watchdog catches a hang.
#[test]
fn trio_test_threads__test_reentry_doesnt_deadlock() {
    guarded(|| {
        let rounds = Cell::new(0);
        run_virtual(async {
            let rounds = &rounds;
            let handle = RuntimeHandle::current();
            nursery(async |n| {
                for _ in 0..4 {
                    let handle = handle.clone();
                    n.spawn(async move {
                        for _ in 0..25 {
                            let handle = handle.clone();
                            to_thread(move || handle.run(|| sleep(Duration::ZERO)))
                                .await
                                .unwrap();
                            rounds.set(rounds.get() + 1);
                        }
                    });
                }
            })
            .await
            .unwrap();
        });
        assert_eq!(rounds.get(), 100);
    });
}

/// Ports trio `test_threads.py::test_from_thread_no_token`: a thread that was not given a
/// handle to the runtime cannot reach it (Trio's `RuntimeError`): `try_current` is `None`
/// and `current` panics. This also holds on a `to_thread` worker, where Trio finds the
/// token by itself: trellis's `RuntimeHandle::current` means "the runtime running on this
/// thread", so a worker is given the handle by its caller (as the tests above do).
#[test]
fn trio_test_threads__test_from_thread_no_token() {
    guarded(|| {
        assert!(RuntimeHandle::try_current().is_none());
        let on_worker = run_virtual(async {
            let plain = std::thread::spawn(|| {
                let none = RuntimeHandle::try_current().is_none();
                let panics = std::panic::catch_unwind(RuntimeHandle::current).is_err();
                none && panics
            })
            .join()
            .unwrap();
            assert!(plain, "a plain thread has no runtime");
            to_thread(|| RuntimeHandle::try_current().is_none()).await
        });
        assert!(on_worker, "a worker has no runtime of its own either");
    });
}

// ----- Trio: test_signals.py -----

/// Signals are the process's: one signal test at a time.
fn signal_test() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

use signal_hook::consts::signal::{SIGPIPE, SIGUSR1, SIGUSR2};
use signal_hook::low_level::raise;
use trellis::open_signal_receiver;

/// Ports trio `test_signals.py::test_open_signal_receiver_restore_handler_after_one_bad_signal`:
/// a receiver asked for a good signal and an invalid one fails (Trio's `ValueError`,
/// trellis's `InvalidInput`) and leaves the good one as it was. SIGPIPE, which Rust
/// programs ignore: raised afterwards it is still ignored (the process lives), and a new
/// receiver gets exactly the one delivery made while it exists.
#[test]
fn trio_test_signals__test_open_signal_receiver_restore_handler_after_one_bad_signal() {
    guarded(|| {
        let _serial = signal_test();
        run_virtual(async {
            let err = open_signal_receiver([SIGPIPE, 1234567]).err().unwrap();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            raise(SIGPIPE).unwrap(); // still ignored
            let mut receiver = open_signal_receiver([SIGPIPE]).unwrap();
            assert!(move_on_after(secs(1), receiver.recv()).await.is_none());
            raise(SIGPIPE).unwrap();
            assert_eq!(receiver.recv().await.unwrap(), SIGPIPE);
            assert!(move_on_after(secs(1), receiver.recv()).await.is_none());
            drop(receiver);
            raise(SIGPIPE).unwrap(); // ignored again
        });
    });
}

/// Ports trio `test_signals.py::test_open_signal_receiver_restore_handler_after_duplicate_signal`:
/// a signal named twice is watched once (`signals()` lists it once) and its disposition is
/// restored correctly once the receiver is gone (SIGPIPE is ignored again: raising it does
/// not end the process).
#[test]
fn trio_test_signals__test_open_signal_receiver_restore_handler_after_duplicate_signal() {
    guarded(|| {
        let _serial = signal_test();
        run_virtual(async {
            let mut receiver = open_signal_receiver([SIGPIPE, SIGPIPE]).unwrap();
            assert_eq!(receiver.signals(), [SIGPIPE]);
            raise(SIGPIPE).unwrap();
            raise(SIGPIPE).unwrap();
            assert_eq!(receiver.recv().await.unwrap(), SIGPIPE);
            assert!(
                move_on_after(secs(1), receiver.recv()).await.is_none(),
                "coalesced: one report"
            );
            drop(receiver);
            raise(SIGPIPE).unwrap();
        });
    });
}

/// Ports trio `test_signals.py::test_open_signal_receiver_no_starvation`: two signals are
/// pending at every read; the receiver alternates between them instead of reporting the
/// same one over and over (trellis: coalescing, and distinct signals in delivery order).
/// At the end the pending one is drained, before the receiver goes (SIGUSR1 and SIGUSR2
/// would end the process without it).
#[test]
fn trio_test_signals__test_open_signal_receiver_no_starvation() {
    guarded(|| {
        let _serial = signal_test();
        let got = run_virtual(async {
            let mut receiver = open_signal_receiver([SIGUSR1, SIGUSR2]).unwrap();
            let mut got = Vec::new();
            for _ in 0..10 {
                raise(SIGUSR1).unwrap();
                raise(SIGUSR2).unwrap();
                got.push(receiver.recv().await.unwrap());
            }
            while let Some(signal) = move_on_after(secs(1), receiver.recv()).await {
                got.push(signal.unwrap());
            }
            got
        });
        assert_eq!(got.len(), 11, "{got:?}");
        assert_eq!(got[0], SIGUSR1);
        for pair in got.windows(2) {
            assert_ne!(pair[0], pair[1], "{got:?}");
        }
    });
}

// ----- CPython: test_taskgroups.py -----

/// Runs `fut` in a scope that a sibling cancels after `after` (CPython's
/// `r = create_task(runner()); await sleep(after); r.cancel()`); gives what the scope gave
/// and the virtual time it took.
async fn cancelled_after<F: Future>(after: Duration, fut: F) -> (Option<F::Output>, Duration) {
    let start = now();
    let scope = CancelScope::new();
    let canceller = scope.clone();
    let out = nursery(async |n| {
        n.spawn(async move {
            sleep(after).await;
            canceller.cancel();
        });
        Ok::<_, std::convert::Infallible>(scope.run(fut).await)
    })
    .await
    .unwrap();
    (out, now() - start)
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_01`: two children return 42 after
/// 0.1 s and 11 after 0.2 s; the group waits for both (0.2 s) and their handles give the
/// values.
#[test]
fn cpython_test_taskgroups__test_taskgroup_01() {
    guarded(|| {
        let (out, elapsed) = run_virtual(async {
            let start = now();
            let out = nursery(async |g| {
                let t1 = g.spawn(async {
                    sleep(ms(100)).await;
                    Ok(42)
                });
                let t2 = g.spawn(async {
                    sleep(ms(200)).await;
                    Ok(11)
                });
                Ok::<_, Oops>((t1.await.unwrap(), t2.await.unwrap()))
            })
            .await;
            (out, now() - start)
        });
        assert_eq!(out, Ok((42, 11)));
        assert_eq!(elapsed, ms(200));
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_02`: the second child is created
/// 0.15 s in, after the first has been running: both values come back, at 0.35 s.
#[test]
fn cpython_test_taskgroups__test_taskgroup_02() {
    guarded(|| {
        let (out, elapsed) = run_virtual(async {
            let start = now();
            let out = nursery(async |g| {
                let t1 = g.spawn(async {
                    sleep(ms(100)).await;
                    Ok(42)
                });
                sleep(ms(150)).await;
                let t2 = g.spawn(async {
                    sleep(ms(200)).await;
                    Ok(11)
                });
                Ok::<_, Oops>((t1.await.unwrap(), t2.await.unwrap()))
            })
            .await;
            (out, now() - start)
        });
        assert_eq!(out, Ok((42, 11)));
        assert_eq!(elapsed, ms(350));
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_17`: the task running a group with no
/// children is cancelled at 0.1 s while the body sleeps; the body's `except
/// CancelledError` (a destructor) runs once (`NUM == 10`) and the cancellation comes out
/// (`None`), not an error.
#[test]
fn cpython_test_taskgroups__test_taskgroup_17() {
    guarded(|| {
        let num = Cell::new(0);
        let (out, elapsed) = run_virtual(cancelled_after(
            ms(100),
            nursery(async |_g| {
                let _except = OnDrop(|| num.set(num.get() + 10));
                sleep(secs(10)).await;
            }),
        ));
        assert!(out.is_none());
        assert_eq!(elapsed, ms(100));
        assert_eq!(num.get(), 10);
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_18`: cancelled as in `_17`, the body
/// answers the cancellation by raising `MyExc` (here: a shielded wait for the cancellation,
/// then an `Err`). The group reports it (CPython: an `ExceptionGroup` of `MyExc`): trellis
/// returns the errors of a cancelled nursery ("Errors are still returned"), so the
/// scope gives the group instead of `None`.
#[test]
fn cpython_test_taskgroups__test_taskgroup_18() {
    guarded(|| {
        let num = Cell::new(0);
        let (out, elapsed) = run_virtual(cancelled_after(
            ms(100),
            nursery(async |_g| {
                shield(move_on_after(secs(10), cancelled())).await;
                num.set(num.get() + 10);
                Err::<(), _>(Oops("MyExc"))
            }),
        ));
        let group = out.expect("the error is not eaten").unwrap_err();
        assert_eq!(group.into_errors(), [Oops("MyExc")]);
        assert_eq!(elapsed, ms(100));
        assert_eq!(num.get(), 10);
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_20` and `test_taskgroup_20a`: a child
/// crashes (`1 / 0`) while the body sleeps in `nested()`, whose `finally` raises a
/// `BaseException` (`KeyboardInterrupt`, `MyBaseExc`): in trellis a panic, here in a
/// destructor run as the crash cancels the body. The panic resumes from the nursery with
/// its payload unchanged, as `KeyboardInterrupt` comes out of CPython's group; CPython's
/// `BaseExceptionGroup` for `MyBaseExc` also holds the `ZeroDivisionError`, which
/// trellis, whose panic must stay what the code panicked with, writes to stderr instead
/// (documented on `nursery`: "the failures beside it go to stderr once").
#[test]
fn cpython_test_taskgroups__test_taskgroup_20_and_20a() {
    guarded(|| {
        for base_exc in ["KeyboardInterrupt", "MyBaseExc"] {
            let out = run_virtual(catch_unwind(nursery(async |g| {
                g.spawn(async {
                    sleep(ms(100)).await;
                    Err::<(), _>(Oops("ZeroDivisionError"))
                });
                let _finally = PanicOnDrop(base_exc);
                sleep(secs(10)).await;
                Ok(())
            })));
            let Err(payload) = out else {
                panic!("the panic resumes")
            };
            assert_eq!(panic_message(&*payload), base_exc);
        }
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_21a`: the child raises a
/// `BaseException` (a panic) while the body's `finally` raises `TypeError` (an `Err` after
/// a shielded wait for the cancellation). The panic resumes unchanged; CPython's
/// `BaseExceptionGroup` also holds the `TypeError`, which trellis writes to stderr beside
/// the resumed panic (as in `_20a`).
#[test]
fn cpython_test_taskgroups__test_taskgroup_21a() {
    guarded(|| {
        let body_cleaned_up = Cell::new(false);
        let out = run_virtual(catch_unwind(nursery(async |g| {
            g.spawn(async {
                sleep(ms(100)).await;
                panic!("MyBaseExc");
            });
            shield(move_on_after(secs(10), cancelled())).await;
            body_cleaned_up.set(true);
            Err::<(), _>(Oops("TypeError"))
        })));
        let Err(payload) = out else {
            panic!("the panic resumes")
        };
        assert_eq!(panic_message(&*payload), "MyBaseExc");
        assert!(body_cleaned_up.get());
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_22`: the task running a group whose
/// children sleep 1 s and 2 s is cancelled at 0.05 s: the cancellation comes out at once,
/// and no error.
#[test]
fn cpython_test_taskgroups__test_taskgroup_22() {
    guarded(|| {
        let (out, elapsed) = run_virtual(cancelled_after(
            ms(50),
            nursery(async |g| {
                g.spawn(async {
                    sleep(secs(1)).await;
                    Ok(42)
                });
                g.spawn(async {
                    sleep(secs(2)).await;
                    Ok(11)
                });
                Ok::<_, Oops>(())
            }),
        ));
        assert!(out.is_none());
        assert_eq!(elapsed, ms(50));
    });
}

/// Ports CPython `test_taskgroups.py::test_taskgroup_task_name`: a task created with a name
/// keeps it (`get_name() == "yolo"`); trellis shows it where the task is reported: its
/// `JoinError` (here of a cancelled child) and its failure.
#[test]
fn cpython_test_taskgroups__test_taskgroup_task_name() {
    guarded(|| {
        let group = run_virtual(async {
            nursery(async |g| {
                let t = g.spawn_named("yolo", sleep(Duration::ZERO));
                t.cancel();
                let err = t.await.unwrap_err();
                assert_eq!(err.name(), Some("yolo"));
                assert!(err.is_cancelled());
                g.spawn_named("yolo", async { Err::<(), _>(Oops("failed")) });
                Ok(())
            })
            .await
            .unwrap_err()
        });
        assert_eq!(group.failures()[0].label().name(), Some("yolo"));
        assert_eq!(group.failures()[0].task(), TaskName::Child(2));
    });
}

static TASK_CVAR: ContextVar<i32> = ContextVar::new("cvar");

/// Ports CPython `test_taskgroups.py::test_taskgroup_task_context`: a task created with
/// `context=ctx` (trellis: a child running `ctx.run(..)`) sets its variable in `ctx`
/// itself; after each task, `ctx` holds what it set, and the group's own context does not.
#[test]
fn cpython_test_taskgroups__test_taskgroup_task_context() {
    guarded(|| {
        run_virtual(async {
            nursery(async |g| {
                let ctx = Context::current().copy();
                assert_eq!(ctx.get(&TASK_CVAR), None);
                for val in [1, 2] {
                    let t = g.spawn(ctx.run(async move {
                        yield_now().await;
                        let _token = TASK_CVAR.set(val);
                    }));
                    t.await.unwrap();
                    assert_eq!(ctx.get(&TASK_CVAR), Some(val));
                }
                assert_eq!(TASK_CVAR.get(), None);
            })
            .await
            .unwrap();
        });
    });
}

// ----- CPython: test_context.py -----

static CM_VAR: ContextVar<&'static str> = ContextVar::with_default("cvar", || "initial");

/// Ports CPython `test_context.py::test_context_manager_enter_again_after_exit` (the
/// context manager is `Context::run_sync`): a copy entered, set and left keeps its value;
/// the caller's stays `initial`; entered again, the copy still has `updated`.
#[test]
fn cpython_test_context__test_context_manager_enter_again_after_exit() {
    guarded(|| {
        assert_eq!(CM_VAR.get(), Some("initial"));
        let ctx = Context::current().copy();
        ctx.run_sync(|| {
            let _token = CM_VAR.set("updated");
            assert_eq!(CM_VAR.get(), Some("updated"));
        });
        assert_eq!(CM_VAR.get(), Some("initial"));
        ctx.run_sync(|| assert_eq!(CM_VAR.get(), Some("updated")));
        assert_eq!(CM_VAR.get(), Some("initial"));
    });
}

/// Ports CPython `test_context.py::test_context_manager_nested`: a copy taken inside an
/// entered copy starts with its values, and what is set in each stays in it; leaving both
/// brings back the default.
#[test]
fn cpython_test_context__test_context_manager_nested() {
    guarded(|| {
        static NESTED: ContextVar<&'static str> = ContextVar::with_default("cvar", || "default");
        let outer_ctx = Context::current().copy();
        outer_ctx.run_sync(|| {
            let _outer = NESTED.set("outer");
            let inner_ctx = Context::current().copy();
            assert!(!Context::ptr_eq(&outer_ctx, &inner_ctx));
            inner_ctx.run_sync(|| {
                assert_eq!(NESTED.get(), Some("outer"));
                let _inner = NESTED.set("inner");
                assert_eq!(outer_ctx.get(&NESTED), Some("outer"));
                assert_eq!(NESTED.get(), Some("inner"));
            });
            assert_eq!(NESTED.get(), Some("outer"));
        });
        assert_eq!(NESTED.get(), Some("default"));
    });
}
