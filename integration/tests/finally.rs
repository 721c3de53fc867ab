//! `trellis::finally`: the clean-up runs however the work ends (finished, failed, panicked,
//! cancelled by a deadline, by a scope, by a sibling's failure), it runs to its end
//! although the outside is cancelled, and the work is cancelled as a scope (its shields
//! finish first). Trio's `try: … finally:` with a shielded clean-up
//! (`test_cancel_shield_abort`, `test_basic_timeout` in `src/trio/_core/_tests/test_run.py`).

mod common;

use std::cell::RefCell;
use std::time::Duration;

use common::{HANG_LIMIT, catch_unwind, panic_message, run_virtual, watchdog};
use trellis::{
    CancelScope, current_effective_deadline, finally, move_on_after, now, nursery, shield, sleep,
    sleep_forever,
};

type Log = RefCell<Vec<String>>;

fn push(log: &Log, what: impl Into<String>) {
    log.borrow_mut().push(what.into());
}

/// A clean-up that needs a second of (virtual) time, so it proves it was not cut short.
async fn slow_cleanup(log: &Log) {
    sleep(Duration::from_secs(1)).await;
    push(log, format!("cleanup done at {:?}", secs_since_start()));
}

thread_local! {
    static START: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

fn mark_start() {
    START.with(|s| s.set(Some(now())));
}

fn secs_since_start() -> u64 {
    (now() - START.with(|s| s.get()).expect("marked")).as_secs()
}

#[test]
fn a_finished_work_gives_its_value_then_the_cleanup_runs() {
    let log = Log::default();
    let out = run_virtual(async {
        mark_start();
        finally(
            async {
                sleep(Duration::from_secs(2)).await;
                push(&log, "work done");
                42
            },
            slow_cleanup(&log),
        )
        .await
    });
    assert_eq!(out, 42);
    assert_eq!(*log.borrow(), ["work done", "cleanup done at 3"]);
}

#[test]
fn a_failed_work_gives_its_error_and_the_cleanup_still_runs() {
    let log = Log::default();
    let out = run_virtual(async {
        mark_start();
        finally(async { Err::<(), _>("refused") }, slow_cleanup(&log)).await
    });
    assert_eq!(out, Err("refused"));
    assert_eq!(*log.borrow(), ["cleanup done at 1"]);
}

#[test]
fn a_deadline_around_it_cancels_the_work_and_waits_for_the_whole_cleanup() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        let out = run_virtual(async {
            mark_start();
            move_on_after(Duration::from_secs(5), async {
                finally(
                    async {
                        sleep(Duration::from_secs(60)).await;
                        push(&log, "work done");
                    },
                    slow_cleanup(&log),
                )
                .await;
                push(
                    &log,
                    "never: a cut-off work has no output, finally does not return",
                );
            })
            .await
        });
        assert_eq!(out, None, "the timeout caught its cancellation");
        assert_eq!(
            *log.borrow(),
            ["cleanup done at 6"],
            "the cleanup took its second after the 5 s deadline"
        );
    });
}

#[test]
fn a_fail_after_around_it_reports_the_timeout_not_a_success() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        let out = run_virtual(async {
            mark_start();
            trellis::fail_after(
                Duration::from_secs(2),
                finally(sleep(Duration::from_secs(3)), slow_cleanup(&log)),
            )
            .await
        });
        assert!(out.is_err(), "a work cut off by the deadline gave {out:?}");
        assert_eq!(*log.borrow(), ["cleanup done at 3"]);
    });
}

#[test]
fn an_explicit_cancel_of_an_outer_scope_runs_the_cleanup() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        let out = run_virtual(async {
            mark_start();
            trellis::cancel_scope(async |scope| {
                nursery(async |n| {
                    n.spawn(async {
                        finally(sleep_forever(), slow_cleanup(&log)).await;
                    });
                    sleep(Duration::from_secs(3)).await;
                    scope.cancel();
                })
                .await
            })
            .await
        });
        assert_eq!(out, None);
        assert_eq!(*log.borrow(), ["cleanup done at 4"]);
    });
}

#[test]
fn a_siblings_failure_runs_the_cleanup_and_the_error_is_kept() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        let out = run_virtual(async {
            mark_start();
            nursery(async |n| {
                n.spawn(async {
                    finally(sleep_forever(), slow_cleanup(&log)).await;
                    Ok(())
                });
                n.spawn(async {
                    sleep(Duration::from_secs(2)).await;
                    Err::<(), _>("sibling failed")
                });
                Ok(())
            })
            .await
        });
        let group = out.expect_err("the sibling's failure");
        assert_eq!(group.into_errors(), ["sibling failed"]);
        assert_eq!(*log.borrow(), ["cleanup done at 3"]);
    });
}

#[test]
fn a_panicking_work_runs_the_cleanup_and_then_resumes_the_panic() {
    let log = Log::default();
    let out = run_virtual(async {
        mark_start();
        catch_unwind(finally(
            async {
                sleep(Duration::from_secs(1)).await;
                panic!("work exploded");
            },
            slow_cleanup(&log),
        ))
        .await
    });
    let payload = out.expect_err("the panic is resumed");
    assert_eq!(panic_message(&*payload), "work exploded");
    assert_eq!(*log.borrow(), ["cleanup done at 2"]);
}

#[test]
fn a_cancellation_that_came_before_it_still_runs_the_cleanup() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        run_virtual(async {
            mark_start();
            trellis::cancel_scope(async |scope| {
                scope.cancel();
                finally(
                    async {
                        push(&log, "work runs to its first suspension");
                        sleep(Duration::from_secs(1)).await;
                        push(&log, "never");
                    },
                    slow_cleanup(&log),
                )
                .await;
            })
            .await;
        });
        assert_eq!(
            *log.borrow(),
            ["work runs to its first suspension", "cleanup done at 1"]
        );
    });
}

#[test]
fn the_work_is_cancelled_as_a_scope_so_its_shields_finish_first() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        run_virtual(async {
            mark_start();
            move_on_after(Duration::from_secs(1), async {
                finally(
                    async {
                        shield(async {
                            sleep(Duration::from_secs(2)).await;
                            push(&log, format!("inner shield done at {}", secs_since_start()));
                        })
                        .await;
                        sleep(Duration::ZERO).await;
                        push(&log, "never: cancelled after the shield");
                    },
                    slow_cleanup(&log),
                )
                .await;
            })
            .await;
        });
        assert_eq!(
            *log.borrow(),
            ["inner shield done at 2", "cleanup done at 3"]
        );
    });
}

#[test]
fn the_work_sees_the_outside_deadline_and_the_cleanup_sees_none() {
    let seen = RefCell::new(Vec::new());
    run_virtual(async {
        let deadline = now() + Duration::from_secs(10);
        CancelScope::new()
            .with_deadline(deadline)
            .run(finally(
                async { seen.borrow_mut().push(current_effective_deadline()) },
                async { seen.borrow_mut().push(current_effective_deadline()) },
            ))
            .await;
        assert_eq!(*seen.borrow(), [Some(deadline), None]);
    });
}

#[test]
fn a_cleanup_with_a_deadline_of_its_own_ends_at_that_deadline() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        run_virtual(async {
            mark_start();
            move_on_after(Duration::from_secs(1), async {
                finally(sleep_forever(), async {
                    let flushed = move_on_after(Duration::from_secs(2), sleep_forever()).await;
                    push(
                        &log,
                        format!("flush gave {flushed:?} at {}", secs_since_start()),
                    );
                })
                .await;
            })
            .await;
        });
        assert_eq!(*log.borrow(), ["flush gave None at 3"]);
    });
}
