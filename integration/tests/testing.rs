//! Behaviour of `trellis::testing`: `wait_all_tasks_blocked` (ported from Trio's
//! `trio/_core/_tests/test_run.py`) and `Sequencer` (ported from Trio's
//! `trio/testing/_tests/test_sequencer.py`), on the mock clocks. Everything that could
//! hang runs under `common::watchdog`; nothing sleeps for real.

mod common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use common::{HANG_LIMIT, panic_message_of, run_virtual, watchdog};
use trellis::testing::{Sequencer, wait_all_tasks_blocked};
use trellis::{Builder, CancelScope, advance, now, nursery, sleep, sleep_forever, yield_now};

/// Ports `test_wait_all_tasks_blocked` (first half): a task that keeps checkpointing is
/// not blocked, and both waiters complete once it has finished.
#[test]
fn wait_all_tasks_blocked_waits_for_a_busy_task_and_wakes_every_waiter() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    for _ in 0..10 {
                        yield_now().await;
                    }
                    record.borrow_mut().push("busy bee exhausted");
                });
                for _ in 0..2 {
                    n.spawn(async {
                        wait_all_tasks_blocked().await;
                        record.borrow_mut().push("quiet at last!");
                    });
                }
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(
        record,
        ["busy bee exhausted", "quiet at last!", "quiet at last!"]
    );
}

/// Ports `test_wait_all_tasks_blocked` (second half, "check cancellation"): a waiter in a
/// cancelled nursery is dropped, and its scope catches the cancellation.
#[test]
fn wait_all_tasks_blocked_cancelled_while_waiting() {
    let (record, caught) = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        let caught = run_virtual(async {
            let scope = CancelScope::new();
            let s = &scope;
            let record = &record;
            let out = scope
                .clone()
                .run(async move {
                    nursery(async |n| {
                        n.spawn(async {
                            let _ok = common::OnDrop(|| record.borrow_mut().push("ok"));
                            wait_all_tasks_blocked().await;
                            record.borrow_mut().push("completed");
                        });
                        s.cancel();
                    })
                    .await
                    .unwrap();
                })
                .await;
            out.is_none()
        });
        (record.into_inner(), caught)
    });
    assert!(caught, "the cancelled scope catches the cancellation");
    assert_eq!(record, ["ok"], "dropped, never completed");
}

/// A waiter dropped by a cancellation unregisters: the runtime is then found deadlocked
/// as before, and reported, instead of looping for a waiter that is gone.
#[test]
fn a_cancelled_waiter_does_not_keep_a_deadlocked_runtime_alive() {
    let message = watchdog(HANG_LIMIT, || {
        panic_message_of(|| {
            Builder::new().mock_clock().run(async {
                let done = trellis::move_on_after(Duration::ZERO, wait_all_tasks_blocked());
                assert_eq!(
                    done.await,
                    None,
                    "the deadline passed before any idle point"
                );
                sleep_forever().await;
            })
        })
    });
    assert!(message.contains("deadlock"), "{message}");
}

/// Ports `test_wait_all_tasks_blocked_with_timeouts` (Trio's `mock_clock.jump` is
/// `advance` here): a sleeping task is blocked; once time moves, it runs and is blocked
/// again.
#[test]
fn wait_all_tasks_blocked_with_timeouts() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        Builder::new().mock_clock().run(async {
            nursery(async |n| {
                n.spawn(async {
                    record.borrow_mut().push("tt start");
                    sleep(Duration::from_secs(5)).await;
                    record.borrow_mut().push("tt finished");
                });
                wait_all_tasks_blocked().await;
                assert_eq!(*record.borrow(), ["tt start"]);
                advance(Duration::from_secs(10));
                wait_all_tasks_blocked().await;
                assert_eq!(*record.borrow(), ["tt start", "tt finished"]);
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(record, ["tt start", "tt finished"]);
}

/// On the autojump clock the waiter completes before time jumps: `now()` has not moved,
/// and the sleeping task has not run; only a later sleep moves time.
#[test]
fn wait_all_tasks_blocked_completes_before_autojump_moves_time() {
    watchdog(HANG_LIMIT, || {
        let woke = Cell::new(false);
        run_virtual(async {
            let start = now();
            nursery(async |n| {
                n.spawn(async {
                    sleep(Duration::from_secs(5)).await;
                    woke.set(true);
                });
                wait_all_tasks_blocked().await;
                assert_eq!(now(), start, "the waiter completes before time jumps");
                assert!(!woke.get());
                sleep(Duration::from_secs(10)).await;
                assert!(woke.get());
                assert_eq!(now() - start, Duration::from_secs(10));
            })
            .await
            .unwrap();
        });
    });
}

/// Two waiters registered at the same time complete at the same idle point: the second
/// completes before the first has run on through its yields (each yield is not an idle
/// point, since the runtime is busy).
#[test]
fn every_waiter_completes_at_the_same_idle_point() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    wait_all_tasks_blocked().await;
                    record.borrow_mut().push("a woke");
                    for _ in 0..3 {
                        yield_now().await;
                        record.borrow_mut().push("a yielded");
                    }
                });
                n.spawn(async {
                    wait_all_tasks_blocked().await;
                    record.borrow_mut().push("b woke");
                });
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(
        record,
        ["a woke", "b woke", "a yielded", "a yielded", "a yielded"]
    );
}

/// On the mock clock without autojump a blocked runtime is a deadlock; a waiter turns it
/// into an idle point instead, and the test goes on.
#[test]
fn a_waiter_completes_where_the_mock_clock_would_report_a_deadlock() {
    watchdog(HANG_LIMIT, || {
        Builder::new().mock_clock().run(async {
            nursery(async |n| {
                let child = n.spawn(sleep_forever());
                wait_all_tasks_blocked().await;
                child.cancel();
            })
            .await
            .unwrap();
        });
    });
}

/// On the real clock the waiter completes instead of parking until the armed timer is
/// due (an hour away: a regression hangs, and the watchdog fails it).
#[test]
fn on_the_real_clock_a_waiter_completes_without_waiting_for_an_armed_timer() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            nursery(async |n| {
                let child = n.spawn(sleep(Duration::from_secs(3600)));
                wait_all_tasks_blocked().await;
                child.cancel();
            })
            .await
            .unwrap();
        });
    });
}

/// Ports `test_Sequencer`: two tasks interleave their blocks by number, block 5 is the
/// nursery body's, and a number used twice is an error (a panic here).
#[test]
fn test_sequencer() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        let t = |v: (&'static str, usize)| record.borrow_mut().push(v);
        let seq = Sequencer::new();
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    for i in [1, 3, 4] {
                        let _turn = seq.block(i).await.unwrap();
                        t(("f1", i));
                    }
                });
                n.spawn(async {
                    for i in [0, 2] {
                        let _turn = seq.block(i).await.unwrap();
                        t(("f2", i));
                    }
                });
                let _turn = seq.block(5).await.unwrap();
                wait_all_tasks_blocked().await;
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(
        record,
        [("f2", 0), ("f1", 1), ("f2", 2), ("f1", 3), ("f1", 4)]
    );
    let message = watchdog(HANG_LIMIT, || {
        panic_message_of(|| {
            let seq = Sequencer::new();
            run_virtual(async {
                drop(seq.block(0).await.unwrap());
                let _ = seq.block(0).await;
            })
        })
    });
    assert!(message.contains("block 0 was asked for twice"), "{message}");
}

/// Ports `test_Sequencer_cancel`: a block whose wait is cancelled breaks the sequence;
/// the blocks waiting then and the ones asked for later get `SequenceBroken`.
#[test]
fn test_sequencer_cancel() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        let seq = Sequencer::new();
        run_virtual(async {
            nursery(async |n| {
                for i in [1, 2, 4] {
                    let (seq, record) = (&seq, &record);
                    n.spawn(async move {
                        let scope = CancelScope::new();
                        if i == 4 {
                            scope.cancel();
                        }
                        let out = scope.run(seq.block(i)).await;
                        record.borrow_mut().push(match out {
                            None => format!("seq({i}) cancelled"),
                            Some(Ok(_)) => format!("seq({i}) ran"),
                            Some(Err(e)) => format!("seq({}) SequenceBroken", e.block()),
                        });
                    });
                    wait_all_tasks_blocked().await;
                }
            })
            .await
            .unwrap();
            assert!(
                seq.block(0).await.is_err(),
                "later blocks see the break too"
            );
        });
        let mut record = record.into_inner();
        record.sort();
        record
    });
    assert_eq!(
        record,
        [
            "seq(1) SequenceBroken",
            "seq(2) SequenceBroken",
            "seq(4) cancelled"
        ]
    );
}

/// Blocks run in number order however the tasks were spawned: here in reverse.
#[test]
fn sequencer_blocks_run_in_order_when_spawned_in_reverse() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        let seq = Sequencer::new();
        run_virtual(async {
            nursery(async |n| {
                for i in (0..10).rev() {
                    let (seq, record) = (&seq, &record);
                    n.spawn(async move {
                        let turn = seq.block(i).await.unwrap();
                        record.borrow_mut().push(turn.number());
                        // A block may suspend: the next one still waits for its end.
                        sleep(Duration::from_secs(1)).await;
                        record.borrow_mut().push(100 + i);
                    });
                }
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    let expected: Vec<usize> = (0..10).flat_map(|i| [i, 100 + i]).collect();
    assert_eq!(record, expected);
}

/// A turn dropped by a cancellation ends its block normally: the next block runs.
#[test]
fn a_cancelled_turn_lets_the_next_block_run() {
    let record = watchdog(HANG_LIMIT, || {
        let record = RefCell::new(Vec::new());
        let seq = Sequencer::new();
        run_virtual(async {
            nursery(async |n| {
                n.spawn(async {
                    let _turn = seq.block(1).await.unwrap();
                    record.borrow_mut().push("1 ran");
                });
                let out = trellis::move_on_after(Duration::from_secs(1), async {
                    let _turn = seq.block(0).await.unwrap();
                    record.borrow_mut().push("0 holds its turn");
                    sleep_forever().await;
                })
                .await;
                assert_eq!(out, None);
            })
            .await
            .unwrap();
        });
        record.into_inner()
    });
    assert_eq!(record, ["0 holds its turn", "1 ran"]);
}
