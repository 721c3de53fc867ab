//! trellis's leaf futures combine with the `futures` ecosystem: they implement
//! `futures_core::FusedFuture`, so `futures::select!` takes them without `.fuse()` (this
//! file does not compile without those impls), and `is_terminated` turns true exactly
//! when a future has completed, so a `select!` in a loop skips what already finished.

mod common;

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::time::Duration;

use common::run_virtual;
use futures::future::FusedFuture;
use futures::select;
use trellis::{
    CancelScope, cancelled, fail_after, move_on_after, now, nursery, shield, sleep, yield_now,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A `select!` loop over a sleep and a child's join handle, both reused across rounds: the
/// sleep wins the first round, the handle the second (the finished sleep is skipped, not
/// polled again), and the third finds both terminated and takes the `complete` branch.
#[test]
fn select_loops_over_a_sleep_and_a_join_handle_without_fuse() {
    let events = run_virtual(async {
        let events = std::cell::RefCell::new(Vec::new());
        nursery(async |n| {
            let start = now();
            let mut child = n.spawn(async {
                sleep(secs(2)).await;
                Ok(42)
            });
            let mut nap = sleep(secs(1));
            // Bounded: a future that stayed selectable after completing would fire again.
            for _round in 0..4 {
                select! {
                    () = nap => events.borrow_mut().push(("sleep", now() - start, 0)),
                    v = child => events.borrow_mut().push(("child", now() - start, v.unwrap())),
                    complete => break,
                }
            }
        })
        .await
        .unwrap();
        events.into_inner()
    });
    assert_eq!(
        events,
        [("sleep", secs(1), 0), ("child", secs(2), 42)],
        "each branch fires once, in deadline order"
    );
}

/// The graceful-stop loop inside a shield: `select!` over `cancelled()` and a tick, fresh
/// futures each round; the worker stops at the outer deadline after three ticks.
#[test]
fn select_over_cancelled_stops_a_shielded_loop_at_the_outer_deadline() {
    let ticks = Cell::new(0);
    let stopped_at = run_virtual(async {
        let start = now();
        move_on_after(Duration::from_millis(3500), async {
            shield(async {
                loop {
                    select! {
                        () = cancelled() => break,
                        () = sleep(secs(1)) => ticks.set(ticks.get() + 1),
                    }
                }
            })
            .await;
        })
        .await;
        now() - start
    });
    assert_eq!(ticks.get(), 3);
    assert_eq!(stopped_at, Duration::from_millis(3500));
}

/// Timeouts and `yield_now` go into `select!` as they are: the one that completes first
/// wins, with its own output.
#[test]
fn select_takes_timeouts_and_yield_now_without_fuse() {
    run_virtual(async {
        let start = now();
        let winner = select! {
            r = fail_after(secs(1), sleep(secs(5))) => r.map(|()| "slow").unwrap_or("timed out"),
            o = move_on_after(secs(2), sleep(secs(5))) => o.map_or("moved on", |()| "slow"),
        };
        assert_eq!((winner, now() - start), ("timed out", secs(1)));
        let winner = select! {
            () = yield_now() => "yield",
            () = sleep(secs(1)) => "sleep",
        };
        assert_eq!((winner, now() - start), ("yield", secs(1)));
    });
}

/// `is_terminated` is false until the future has returned `Ready` and true afterwards,
/// for every leaf future: a sleep (and never for one without a deadline), `yield_now`,
/// `cancelled`, a scope (both ways it ends), and both kinds of timeout.
#[test]
fn leaf_futures_are_terminated_exactly_once_they_completed() {
    run_virtual(async {
        let mut nap = sleep(secs(1));
        assert!(!nap.is_terminated());
        (&mut nap).await;
        assert!(nap.is_terminated());
        assert!(!sleep(Duration::MAX).is_terminated());

        let mut turn = yield_now();
        assert!(!turn.is_terminated());
        (&mut turn).await;
        assert!(turn.is_terminated());

        let mut quick = pin!(move_on_after(secs(1), yield_now()));
        assert!(!quick.is_terminated());
        assert_eq!(quick.as_mut().await, Some(()));
        assert!(quick.is_terminated(), "a scope that returned its value");
        let mut slow = pin!(move_on_after(secs(1), sleep(secs(5))));
        assert_eq!(slow.as_mut().await, None);
        assert!(slow.is_terminated(), "a scope that caught its own deadline");

        let mut ok = pin!(fail_after(secs(1), yield_now()));
        assert!(!ok.is_terminated());
        assert!(ok.as_mut().await.is_ok());
        assert!(ok.is_terminated());
        let mut late = pin!(fail_after(secs(1), sleep(secs(5))));
        assert!(late.as_mut().await.is_err());
        assert!(late.is_terminated(), "a timeout that gave `TimedOut`");

        let outer = CancelScope::new();
        let handle = outer.clone();
        outer
            .run(shield(async {
                handle.cancel();
                let mut stop = cancelled();
                assert!(!stop.is_terminated());
                (&mut stop).await;
                assert!(stop.is_terminated());
            }))
            .await;
    });
}

/// A scope whose body an enclosing cancellation dropped has not completed (it stays
/// pending until the enclosing scope's owner drops it), so it is not terminated: a
/// `select!` holding it must not treat it as finished.
#[test]
fn a_scope_dropped_by_an_enclosing_cancellation_is_not_terminated() {
    run_virtual(async {
        let mut inner = pin!(CancelScope::new().run(sleep(secs(5))));
        let outer = CancelScope::new();
        let handle = outer.clone();
        let caught = outer
            .run(poll_fn(|cx| {
                handle.cancel();
                inner.as_mut().poll(cx)
            }))
            .await;
        assert_eq!(caught, None, "the outer scope caught its cancellation");
        assert!(!inner.is_terminated());
    });
}

/// A join handle is terminated once it gave its result: the child's value, or the error a
/// shielded awaiter sees for a child that failed. While the child runs it is not.
#[test]
fn a_join_handle_is_terminated_once_it_gave_its_result() {
    run_virtual(async {
        let out = nursery(async |n| {
            let mut value = n.spawn(async {
                sleep(secs(1)).await;
                Ok(7)
            });
            let mut failing = n.spawn(async {
                sleep(secs(2)).await;
                Err::<(), _>("boom")
            });
            assert!(!value.is_terminated());
            assert_eq!((&mut value).await.unwrap(), 7);
            assert!(value.is_terminated(), "its value was taken");
            shield(async {
                assert!(!failing.is_terminated());
                assert!((&mut failing).await.unwrap_err().is_failed());
                assert!(failing.is_terminated(), "it gave its `JoinError`");
            })
            .await;
            Ok(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), ["boom"]);
    });
}
