//! Behaviour of the synchronisation primitives: `Event`, `Lock`, `Semaphore`,
//! `CapacityLimiter` and `Condition`.
//!
//! Most tests port a case of Trio's `src/trio/_tests/test_sync.py`, named in the test's
//! doc comment, into trellis's model. Where Trio calls `wait_all_tasks_blocked()`, these
//! tests call [`settle`]: on the autojump clock a sleep ends only once every other task is
//! blocked. Where Trio relies on `acquire` being a checkpoint, the port says so and yields
//! by hand (trellis's primitives do not suspend when they are free).
//!
//! Cancellation is a drop. A waiter is cancelled *while queued* by cancelling its scope; it
//! is cancelled *after it was handed the lock (a unit, a token, a notification) but before
//! it ran* by polling its future once by hand ([`poll_once`]) and dropping it after the
//! hand-off: inside a nursery, the delivery rule would poll a woken unit once more and let
//! it keep what it was given, so only a drop from outside reaches that point.
//!
//! Every test runs under the watchdog: a lost wake-up would hang, or on the autojump clock
//! panic with the deadlock report.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use common::{poll_once, run_virtual};
use trellis::{
    BorrowerId, CancelScope, CapacityLimiter, Condition, Event, LimiterError, LimiterToken, Lock,
    LockGuard, Semaphore, SemaphoreError, SemaphorePermit, cancel_scope, move_on_after, nursery,
    sleep, sleep_forever, yield_now,
};

/// Runs `test` on the autojump clock, under the watchdog.
fn virtual_test(test: impl AsyncFnOnce() + Send + 'static) {
    common::watchdog(common::HANG_LIMIT, move || run_virtual(test()));
}

/// Trio's `wait_all_tasks_blocked()`, on the autojump clock: virtual time moves (and this
/// sleep ends) only once every other task is blocked.
async fn settle() {
    sleep(Duration::from_secs(1)).await;
}

// ----- Event -----

/// Ports trio `test_Event`: a set event is waited for at once; two waiters are woken by
/// one `set`, after both went to sleep.
#[test]
fn event_wakes_every_waiter_when_set() {
    virtual_test(async || {
        let e = Event::new();
        assert!(!e.is_set());
        assert_eq!(e.waiting(), 0);
        e.set();
        assert!(e.is_set());
        e.wait().await;

        let e = Event::new();
        let record = RefCell::new(Vec::new());
        nursery(async |n| {
            for _ in 0..2 {
                n.spawn(async {
                    record.borrow_mut().push("sleeping");
                    e.wait().await;
                    record.borrow_mut().push("woken");
                });
            }
            settle().await;
            assert_eq!(*record.borrow(), ["sleeping", "sleeping"]);
            assert_eq!(e.waiting(), 2);
            e.set();
            settle().await;
            assert_eq!(*record.borrow(), ["sleeping", "sleeping", "woken", "woken"]);
        })
        .await
        .unwrap();
    });
}

/// A waiter cancelled while queued leaves the queue; one dropped after the event was set
/// (before it ran) takes nothing from the others: every other waiter still wakes.
#[test]
fn event_waiters_cancelled_before_or_after_the_set_lose_nothing() {
    virtual_test(async || {
        let e = Event::new();
        let woken = RefCell::new(Vec::new());
        nursery(async |n| {
            let scope = CancelScope::new();
            let cancelled = scope.clone();
            n.spawn(async {
                scope.run(e.wait()).await;
                woken.borrow_mut().push("cancelled one");
            });
            n.spawn(async {
                e.wait().await;
                woken.borrow_mut().push("other");
            });
            let dropped = poll_once(e.wait()).await;
            settle().await;
            assert_eq!(e.waiting(), 3);
            cancelled.cancel();
            settle().await;
            assert_eq!(e.waiting(), 2, "the cancelled waiter left the queue");
            e.set();
            drop(dropped);
            settle().await;
            assert_eq!(e.waiting(), 0);
        })
        .await
        .unwrap();
        assert_eq!(*woken.borrow(), ["cancelled one", "other"]);
    });
}

// ----- CapacityLimiter -----

/// Ports trio `test_CapacityLimiter`: the counts, the errors of a double acquire and of a
/// release by a borrower that holds nothing, borrowing on behalf of another borrower, the
/// token form (`async with`), and fairness: a released token goes to the waiter, not to a
/// `try_acquire` that comes after it.
#[test]
fn capacity_limiter_counts_borrowers_and_rejects_double_borrows_and_foreign_releases() {
    virtual_test(async || {
        assert_eq!(
            CapacityLimiter::new(0).unwrap_err(),
            LimiterError::ZeroTotalTokens
        );
        let c = CapacityLimiter::new(2).unwrap();
        assert_eq!(
            (c.total_tokens(), c.borrowed_tokens(), c.available_tokens()),
            (2, 0, 2)
        );
        let me = BorrowerId::new();
        assert_eq!(c.release_on_behalf_of(me), Err(LimiterError::NotBorrowing));
        assert_eq!(c.borrowed_tokens(), 0);
        c.try_acquire_on_behalf_of(me).unwrap();
        assert_eq!((c.borrowed_tokens(), c.available_tokens()), (1, 1));
        assert!(c.is_borrowing(me));
        assert_eq!(c.waiting(), 0);

        // Can't re-acquire when we already have it.
        assert_eq!(
            c.try_acquire_on_behalf_of(me),
            Err(LimiterError::AlreadyBorrowing)
        );
        assert_eq!(
            c.acquire_on_behalf_of(me).await,
            Err(LimiterError::AlreadyBorrowing)
        );
        assert_eq!(c.borrowed_tokens(), 1);

        // We can acquire on behalf of someone else, though.
        let someone = BorrowerId::new();
        c.acquire_on_behalf_of(someone).await.unwrap();
        // But then we've run out of capacity.
        assert_eq!(c.borrowed_tokens(), 2);
        assert_eq!(
            c.try_acquire_on_behalf_of(BorrowerId::new()),
            Err(LimiterError::WouldBlock)
        );
        assert!(c.is_borrowing(me) && c.is_borrowing(someone));
        // Until we release one.
        c.release_on_behalf_of(me).unwrap();
        assert!(!c.is_borrowing(me) && c.is_borrowing(someone));
        c.release_on_behalf_of(someone).unwrap();
        assert_eq!(c.borrowed_tokens(), 0);
        {
            let _token = c.acquire().await;
            assert_eq!(c.borrowed_tokens(), 1);
        }
        assert_eq!(c.borrowed_tokens(), 0);

        let (v1, v2, v3) = (BorrowerId::new(), BorrowerId::new(), BorrowerId::new());
        nursery(async |n| {
            c.acquire_on_behalf_of(v1).await.unwrap();
            c.acquire_on_behalf_of(v2).await.unwrap();
            n.spawn(async { c.acquire_on_behalf_of(v3).await.unwrap() });
            settle().await;
            assert_eq!(c.borrowed_tokens(), 2);
            assert_eq!(c.waiting(), 1);
            c.release_on_behalf_of(v2).unwrap();
            // Fairness: the token went to v3 before it ran.
            assert_eq!(c.borrowed_tokens(), 2);
            assert!(c.is_borrowing(v3));
            assert_eq!(c.try_acquire().unwrap_err(), LimiterError::WouldBlock);
        })
        .await
        .unwrap();
        c.release_on_behalf_of(v3).unwrap();
        c.release_on_behalf_of(v1).unwrap();
        assert_eq!(c.borrowed_tokens(), 0);
    });
}

/// Ports trio `test_CapacityLimiter_change_total_tokens`: a total of 0 is refused; raising
/// the total hands tokens to the oldest waiters at once; lowering it takes nothing back,
/// and waiters then get tokens only once enough are released.
#[test]
fn capacity_limiter_total_tokens_changes_wake_waiters_in_order() {
    virtual_test(async || {
        let c = CapacityLimiter::new(2).unwrap();
        assert_eq!(c.set_total_tokens(0), Err(LimiterError::ZeroTotalTokens));
        assert_eq!(c.total_tokens(), 2);
        let ids: Vec<BorrowerId> = (0..5).map(|_| BorrowerId::new()).collect();
        let borrowers = |c: &CapacityLimiter| -> Vec<usize> {
            (0..5).filter(|&i| c.is_borrowing(ids[i])).collect()
        };
        nursery(async |n| {
            for &id in &ids {
                let c = &c;
                n.spawn(async move { c.acquire_on_behalf_of(id).await.unwrap() });
                settle().await;
            }
            assert_eq!(borrowers(&c), [0, 1]);
            assert_eq!(c.waiting(), 3);
            c.set_total_tokens(4).unwrap();
            assert_eq!(borrowers(&c), [0, 1, 2, 3]);
            assert_eq!(c.waiting(), 1);
            c.set_total_tokens(1).unwrap();
            assert_eq!((c.borrowed_tokens(), c.total_tokens()), (4, 1));
            assert_eq!(c.available_tokens(), 0);
            for &id in &ids[..3] {
                c.release_on_behalf_of(id).unwrap();
            }
            assert_eq!(borrowers(&c), [3]);
            assert_eq!(c.waiting(), 1);
            c.release_on_behalf_of(ids[3]).unwrap();
            assert_eq!(borrowers(&c), [4]);
            assert_eq!(c.waiting(), 0);
        })
        .await
        .unwrap();
        c.release_on_behalf_of(ids[4]).unwrap();
    });
}

/// Ports trio `test_CapacityLimiter_memleak_548`: a waiter whose nursery is cancelled
/// leaves nothing behind in the limiter.
#[test]
fn capacity_limiter_cancelled_waiter_leaves_the_queue() {
    virtual_test(async || {
        let limiter = CapacityLimiter::new(1).unwrap();
        let _token = limiter.acquire().await;
        let out = cancel_scope(async |scope| {
            nursery(async |n| {
                n.spawn(async {
                    let _ = limiter.acquire().await;
                });
                n.spawn(async {
                    let _ = limiter.acquire_on_behalf_of(BorrowerId::new()).await;
                });
                settle().await;
                assert_eq!(limiter.waiting(), 2);
                scope.cancel();
            })
            .await
        })
        .await;
        assert!(out.is_none());
        assert_eq!(limiter.waiting(), 0);
        assert_eq!(limiter.borrowed_tokens(), 1);
    });
}

/// A borrower handed a token but dropped before it ran passes the token on, both for a
/// token and for a named borrower (which then holds nothing); with nobody left waiting,
/// the token goes back to the limiter.
#[test]
fn capacity_limiter_token_handed_to_a_dropped_waiter_passes_to_the_next() {
    virtual_test(async || {
        let c = CapacityLimiter::new(1).unwrap();
        let got = RefCell::new(Vec::new());
        let named = BorrowerId::new();
        nursery(async |n| {
            let token = c.acquire().await;
            let dropped_token = poll_once(c.acquire()).await;
            let dropped_named = poll_once(c.acquire_on_behalf_of(named)).await;
            n.spawn(async {
                let _token = c.acquire().await;
                got.borrow_mut().push("last");
            });
            settle().await;
            assert_eq!(c.waiting(), 3);
            drop(token); // handed to `dropped_token`
            assert_eq!((c.waiting(), c.borrowed_tokens()), (2, 1));
            drop(dropped_token); // passed to `dropped_named`
            assert!(c.is_borrowing(named), "handed to the named borrower");
            drop(dropped_named); // passed to the child
            assert!(!c.is_borrowing(named), "a dropped borrower holds nothing");
            assert_eq!((c.waiting(), c.borrowed_tokens()), (0, 1));
            settle().await;
            assert_eq!(*got.borrow(), ["last"]);
            assert_eq!(c.borrowed_tokens(), 0);

            // Nobody waits: the token goes back.
            let token = c.acquire().await;
            let dropped = poll_once(c.acquire_on_behalf_of(named)).await;
            drop(token);
            assert!(c.is_borrowing(named));
            drop(dropped);
            assert_eq!((c.borrowed_tokens(), c.available_tokens()), (0, 1));
            c.release_on_behalf_of(named).unwrap_err();
        })
        .await
        .unwrap();
    });
}

/// A borrower that waits counts as borrowing for the double-acquire check (a second
/// acquire on its behalf is an error, not a second place in the queue), but not for
/// release.
#[test]
fn capacity_limiter_waiting_borrower_cannot_queue_twice_nor_release() {
    virtual_test(async || {
        let c = CapacityLimiter::new(1).unwrap();
        let id = BorrowerId::new();
        let token = c.acquire().await;
        let waiting = poll_once(c.acquire_on_behalf_of(id)).await;
        assert_eq!(c.waiting(), 1);
        assert_eq!(
            c.acquire_on_behalf_of(id).await,
            Err(LimiterError::AlreadyBorrowing)
        );
        assert_eq!(c.release_on_behalf_of(id), Err(LimiterError::NotBorrowing));
        drop(waiting);
        drop(token);
        assert_eq!(c.borrowed_tokens(), 0);
        assert!(
            LimiterError::AlreadyBorrowing
                .to_string()
                .contains("release it first")
        );
    });
}

// ----- Semaphore -----

/// Ports trio `test_Semaphore`: the value, `release` raising it, `try_acquire`
/// (`acquire_nowait`), the permit form (`async with`), and fairness: a unit released while
/// a task waits goes to that task, not to a `try_acquire` that comes after.
#[test]
fn semaphore_counts_and_hands_units_to_waiters_first() {
    virtual_test(async || {
        let s = Semaphore::new(1);
        assert_eq!((s.value(), s.max_value()), (1, None));
        s.release().unwrap();
        assert_eq!(s.value(), 2);
        assert_eq!(s.waiting(), 0);
        s.try_acquire().unwrap().forget();
        assert_eq!(s.value(), 1);
        s.acquire().await.forget();
        assert_eq!(s.value(), 0);
        assert_eq!(s.try_acquire().unwrap_err(), SemaphoreError::WouldBlock);
        s.release().unwrap();
        assert_eq!(s.value(), 1);
        {
            let _permit = s.acquire().await;
            assert_eq!(s.value(), 0);
        }
        assert_eq!(s.value(), 1);
        s.try_acquire().unwrap().forget();

        let record = RefCell::new(Vec::new());
        nursery(async |n| {
            n.spawn(async {
                record.borrow_mut().push("started");
                s.acquire().await.forget();
                record.borrow_mut().push("finished");
            });
            settle().await;
            assert_eq!(*record.borrow(), ["started"]);
            assert_eq!(s.value(), 0);
            s.release().unwrap();
            // Fairness:
            assert_eq!(s.value(), 0);
            assert_eq!(s.try_acquire().unwrap_err(), SemaphoreError::WouldBlock);
        })
        .await
        .unwrap();
        assert_eq!(*record.borrow(), ["started", "finished"]);
    });
}

/// Ports trio `test_Semaphore_bounded`: a bound below the value is refused; a release past
/// the bound is an error that changes nothing. Beyond Trio: units held by permits count
/// toward the bound, so a stray `release` cannot push the value past it later.
#[test]
fn bounded_semaphore_refuses_a_release_past_its_max_value() {
    assert_eq!(
        Semaphore::with_max_value(2, 1).unwrap_err(),
        SemaphoreError::MaxBelowValue {
            value: 2,
            max_value: 1
        }
    );
    let bs = Semaphore::with_max_value(1, 1).unwrap();
    assert_eq!(bs.max_value(), Some(1));
    let too_many = SemaphoreError::ReleasedTooManyTimes { max_value: Some(1) };
    assert_eq!(bs.release(), Err(too_many.clone()));
    assert!(
        too_many
            .to_string()
            .starts_with("semaphore released too many times")
    );
    assert_eq!(bs.value(), 1);
    bs.try_acquire().unwrap().forget();
    assert_eq!(bs.value(), 0);
    bs.release().unwrap();
    assert_eq!(bs.value(), 1);

    let permit = bs.try_acquire().unwrap();
    assert_eq!(bs.release(), Err(too_many), "the permit's unit counts");
    drop(permit);
    assert_eq!(bs.value(), 1);
}

// ----- Lock -----

/// Ports trio `test_Lock_and_StrictFIFOLock`: locked while a guard lives, `try_lock`
/// (`acquire_nowait`) fails while it is held (also by the same task: Trio's "already own
/// the lock"), a holder blocked forever keeps it, a second holder queues, and cancelling
/// them all leaves the lock free with nobody waiting. (Trio's "release a lock you do not
/// own" cannot be written: only the guard releases.)
#[test]
fn lock_is_held_by_its_guard_and_freed_when_its_holders_are_cancelled() {
    virtual_test(async || {
        let l = Lock::new(());
        assert!(!l.is_locked());
        {
            let _guard = l.lock().await;
            assert!(l.is_locked());
        }
        assert!(!l.is_locked());
        let guard = l.try_lock().unwrap();
        assert!(l.is_locked());
        drop(guard);
        assert!(!l.is_locked());
        let guard = l.lock().await;
        assert!(l.is_locked());
        assert!(l.try_lock().is_err(), "already own the lock");
        drop(guard);
        assert!(!l.is_locked());

        let out = cancel_scope(async |scope| {
            nursery(async |n| {
                let holder = async || {
                    let _guard = l.lock().await;
                    sleep_forever().await;
                };
                n.spawn(holder());
                settle().await;
                assert!(l.is_locked());
                assert!(l.try_lock().is_err());
                assert_eq!(l.waiting(), 0);
                n.spawn(holder());
                settle().await;
                assert_eq!(l.waiting(), 1);
                scope.cancel();
            })
            .await
        })
        .await;
        assert!(out.is_none());
        assert!(!l.is_locked());
        assert_eq!(l.waiting(), 0);
    });
}

/// FIFO fairness, asserted: tasks that queue for a held lock get it in the order they
/// queued, and a task that releases while others wait cannot take it straight back.
#[test]
fn lock_serves_waiters_in_the_order_they_queued() {
    virtual_test(async || {
        let l = Lock::new(Vec::new());
        nursery(async |n| {
            let guard = l.lock().await;
            for i in 0..5 {
                let l = &l;
                n.spawn(async move { l.lock().await.push(i) });
                settle().await;
            }
            assert_eq!(l.waiting(), 5);
            drop(guard);
            assert!(l.is_locked(), "handed to the first waiter");
            assert!(l.try_lock().is_err(), "no overtaking");
        })
        .await
        .unwrap();
        assert_eq!(l.into_inner(), [0, 1, 2, 3, 4]);
    });
}

/// A waiter cancelled while queued leaves the queue and the others keep their order; a
/// waiter handed the lock but dropped before it ran passes it to the next one; with no one
/// left, the lock is free again. Nothing lost, nobody starved.
#[test]
fn lock_waiters_cancelled_while_queued_or_after_the_hand_off_lose_nothing() {
    virtual_test(async || {
        let l = Lock::new(Vec::new());
        nursery(async |n| {
            let guard = l.lock().await;
            let handed = poll_once(l.lock()).await;
            let scopes: Vec<CancelScope> = (0..4).map(|_| CancelScope::new()).collect();
            for (i, scope) in scopes.iter().enumerate() {
                let (l, scope) = (&l, scope.clone());
                n.spawn(async move {
                    scope.run(async { l.lock().await.push(i) }).await;
                });
                settle().await;
            }
            assert_eq!(l.waiting(), 5);
            scopes[1].cancel();
            scopes[2].cancel();
            settle().await;
            assert_eq!(l.waiting(), 3, "cancelled waiters left the queue");
            drop(guard); // handed to `handed`, which never runs
            assert_eq!(l.waiting(), 2);
            drop(handed); // passes the lock to child 0
            settle().await;
            assert!(!l.is_locked());

            // Nobody waits: a lock handed to a dropped waiter is freed.
            let guard = l.lock().await;
            let handed = poll_once(l.lock()).await;
            drop(guard);
            assert!(l.is_locked());
            drop(handed);
            assert!(!l.is_locked());
        })
        .await
        .unwrap();
        assert_eq!(l.into_inner(), [0, 3]);
    });
}

// ----- the generic lock tests: Lock, Semaphore(1), CapacityLimiter(1) -----

/// The three primitives that can serve as a lock, as in trio's `lock_factories`.
enum LockLike {
    Lock(Lock),
    Semaphore(Semaphore),
    Limiter(CapacityLimiter),
}

/// What holding a [`LockLike`] gives (dropping it releases).
#[allow(dead_code, reason = "held only for its drop")]
enum Held<'a> {
    Guard(LockGuard<'a, ()>),
    Permit(SemaphorePermit<'a>),
    Token(LimiterToken<'a>),
}

impl LockLike {
    fn all() -> [(&'static str, LockLike); 3] {
        [
            ("Lock", LockLike::Lock(Lock::new(()))),
            ("Semaphore(1)", LockLike::Semaphore(Semaphore::new(1))),
            (
                "CapacityLimiter(1)",
                LockLike::Limiter(CapacityLimiter::new(1).unwrap()),
            ),
        ]
    }

    async fn acquire(&self) -> Held<'_> {
        match self {
            LockLike::Lock(l) => Held::Guard(l.lock().await),
            LockLike::Semaphore(s) => Held::Permit(s.acquire().await),
            LockLike::Limiter(c) => Held::Token(c.acquire().await),
        }
    }

    fn try_acquire(&self) -> Option<Held<'_>> {
        match self {
            LockLike::Lock(l) => l.try_lock().ok().map(Held::Guard),
            LockLike::Semaphore(s) => s.try_acquire().ok().map(Held::Permit),
            LockLike::Limiter(c) => c.try_acquire().ok().map(Held::Token),
        }
    }
}

/// Ports trio `test_generic_lock_exclusion`: five workers take the lock ten times each and
/// yield twice inside; only one is ever inside.
#[test]
fn generic_lock_admits_one_task_at_a_time() {
    virtual_test(async || {
        for (name, lock_like) in LockLike::all() {
            let inside = std::cell::Cell::new(false);
            let acquires = std::cell::Cell::new(0);
            nursery(async |n| {
                for _ in 0..5 {
                    n.spawn(async {
                        for _ in 0..10 {
                            let _held = lock_like.acquire().await;
                            acquires.set(acquires.get() + 1);
                            assert!(!inside.replace(true), "{name}: two tasks inside");
                            yield_now().await;
                            yield_now().await;
                            assert!(inside.replace(false));
                        }
                    });
                }
            })
            .await
            .unwrap();
            assert_eq!(acquires.get(), 50, "{name}");
        }
    });
}

/// Ports trio `test_generic_lock_fifo_fairness`: three tasks loop on the lock; after the
/// first round they take it in the same order every round. Trio's `acquire` is a
/// checkpoint; trellis's is not when the lock is free, so each task yields inside (where
/// Trio's would have yielded in `acquire`), letting the others queue.
#[test]
fn generic_lock_is_taken_round_robin_by_tasks_that_loop_on_it() {
    virtual_test(async || {
        for (name, lock_like) in LockLike::all() {
            let initial_order = RefCell::new(Vec::new());
            let record = RefCell::new(Vec::new());
            nursery(async |n| {
                for task in 1..=3 {
                    let (lock_like, initial_order, record) = (&lock_like, &initial_order, &record);
                    n.spawn(async move {
                        initial_order.borrow_mut().push(task);
                        for _ in 0..5 {
                            let _held = lock_like.acquire().await;
                            record.borrow_mut().push(task);
                            yield_now().await;
                        }
                    });
                }
            })
            .await
            .unwrap();
            let initial = initial_order.borrow().clone();
            for round in record.borrow().chunks(3) {
                assert_eq!(round, initial, "{name}: {:?}", record.borrow());
            }
        }
    });
}

/// Ports trio `test_generic_lock_acquire_nowait_blocks_acquire`: a lock taken with
/// `try_acquire` blocks a task that awaits it, until released.
#[test]
fn generic_lock_taken_without_waiting_blocks_a_waiting_task() {
    virtual_test(async || {
        for (name, lock_like) in LockLike::all() {
            let record = RefCell::new(Vec::new());
            nursery(async |n| {
                let held = lock_like.try_acquire().expect("free");
                n.spawn(async {
                    record.borrow_mut().push("started");
                    drop(lock_like.acquire().await);
                    record.borrow_mut().push("finished");
                });
                settle().await;
                assert_eq!(*record.borrow(), ["started"], "{name}");
                drop(held);
            })
            .await
            .unwrap();
            assert_eq!(*record.borrow(), ["started", "finished"], "{name}");
        }
    });
}

// ----- Semaphore: fairness and cancellation -----

/// FIFO fairness, asserted: units released one at a time go to the waiters in the order
/// they queued.
#[test]
fn semaphore_serves_waiters_in_the_order_they_queued() {
    virtual_test(async || {
        let s = Semaphore::new(0);
        let order = RefCell::new(Vec::new());
        nursery(async |n| {
            for i in 0..5 {
                let (s, order) = (&s, &order);
                n.spawn(async move {
                    s.acquire().await.forget();
                    order.borrow_mut().push(i);
                });
                settle().await;
            }
            for _ in 0..5 {
                s.release().unwrap();
                assert_eq!(s.value(), 0, "the unit went to a waiter");
                settle().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
    });
}

/// A waiter cancelled while queued leaves the queue; a waiter handed a unit but dropped
/// before it ran passes it to the next; with no one left, the unit goes back to the
/// semaphore. Nothing lost, nobody starved.
#[test]
fn semaphore_waiters_cancelled_while_queued_or_after_the_hand_off_lose_nothing() {
    virtual_test(async || {
        let s = Semaphore::new(0);
        let order = RefCell::new(Vec::new());
        nursery(async |n| {
            let handed = poll_once(s.acquire()).await;
            let scopes: Vec<CancelScope> = (0..3).map(|_| CancelScope::new()).collect();
            for (i, scope) in scopes.iter().enumerate() {
                let (s, order, scope) = (&s, &order, scope.clone());
                n.spawn(async move {
                    scope
                        .run(async {
                            let _permit = s.acquire().await;
                            order.borrow_mut().push(i);
                        })
                        .await;
                });
                settle().await;
            }
            scopes[1].cancel();
            settle().await;
            assert_eq!(s.waiting(), 3);
            s.release().unwrap(); // handed to `handed`
            drop(handed); // passed to child 0, whose permit then goes to child 2
            settle().await;
            assert_eq!(*order.borrow(), [0, 2]);
            assert_eq!((s.value(), s.waiting()), (1, 0));

            let permit = s.acquire().await;
            let handed = poll_once(s.acquire()).await;
            drop(permit);
            assert_eq!(s.value(), 0);
            drop(handed);
            assert_eq!(s.value(), 1, "nobody waits: the unit went back");
        })
        .await
        .unwrap();
    });
}

/// A permit handed to a dropped waiter counts toward a bounded semaphore's bound as it
/// passes on: the bound still holds afterwards.
#[test]
fn bounded_semaphore_keeps_its_bound_through_a_hand_off_to_a_dropped_waiter() {
    virtual_test(async || {
        let s = Semaphore::with_max_value(1, 1).unwrap();
        let permit = s.acquire().await;
        let handed = poll_once(s.acquire()).await;
        drop(permit);
        assert!(s.release().is_err(), "the unit is out, handed to a waiter");
        drop(handed);
        assert_eq!(s.value(), 1);
        assert!(s.release().is_err());
    });
}

// ----- Condition -----

/// Ports trio `test_Condition`: the lock (`acquire`, `acquire_nowait` twice), `notify`
/// waking one waiter and `notify_all` the rest, and `notify(2)` moving two waiters into
/// the lock's queue, the lock's release handing it to the first. (Trio's errors for
/// waiting without the lock cannot be written here: `wait` takes the guard; notifying
/// without the lock is allowed, see `Condition`.)
#[test]
fn condition_notify_wakes_waiters_in_order_and_queues_them_for_the_lock() {
    virtual_test(async || {
        let c = Condition::new(());
        assert!(!c.as_lock().is_locked());
        let guard = c.lock().await;
        assert!(c.as_lock().is_locked());
        assert!(c.as_lock().try_lock().is_err());
        drop(guard);

        let finished = RefCell::new(BTreeSet::new());
        let waiter = async |i: u32| {
            let guard = c.lock().await;
            drop(c.wait(guard).await);
            finished.borrow_mut().insert(i);
        };
        nursery(async |n| {
            for i in 0..3 {
                n.spawn(waiter(i));
                settle().await;
            }
            {
                let _guard = c.lock().await;
                c.notify(1);
            }
            assert!(c.as_lock().is_locked(), "handed to the notified waiter");
            settle().await;
            assert_eq!(*finished.borrow(), BTreeSet::from([0]));
            {
                let _guard = c.lock().await;
                c.notify_all();
            }
            settle().await;
            assert_eq!(*finished.borrow(), BTreeSet::from([0, 1, 2]));
        })
        .await
        .unwrap();

        finished.borrow_mut().clear();
        nursery(async |n| {
            for i in 0..3 {
                n.spawn(waiter(i));
                settle().await;
            }
            {
                let _guard = c.lock().await;
                c.notify(2);
                assert_eq!(c.waiting(), 1);
                assert_eq!(c.as_lock().waiting(), 2);
            }
            // Releasing handed the lock to the first notified waiter.
            assert_eq!(c.as_lock().waiting(), 1);
            settle().await;
            assert_eq!(*finished.borrow(), BTreeSet::from([0, 1]));
            let _guard = c.lock().await;
            c.notify_all();
        })
        .await
        .unwrap();
        assert_eq!(*finished.borrow(), BTreeSet::from([0, 1, 2]));
    });
}

/// Notified waiters get the lock back before a task that asks for it after the notify
/// (Trio's repark), and in the order they waited.
#[test]
fn condition_notified_waiters_get_the_lock_before_later_lockers() {
    virtual_test(async || {
        let c = Condition::new(Vec::new());
        nursery(async |n| {
            for i in 0..3 {
                let c = &c;
                n.spawn(async move {
                    let guard = c.lock().await;
                    c.wait(guard).await.push(i);
                });
                settle().await;
            }
            let guard = c.lock().await;
            c.notify_all();
            n.spawn(async { c.lock().await.push(99) });
            settle().await;
            drop(guard);
        })
        .await
        .unwrap();
        assert_eq!(c.as_lock().try_lock().unwrap().as_slice(), [0, 1, 2, 99]);
    });
}

/// Trio's last case of `test_Condition` ("after being cancelled still hold the lock"),
/// in drop terms: a `wait` cancelled while it waits gives up the lock with its guard, and
/// leaves the queue.
#[test]
fn condition_wait_cancelled_while_waiting_leaves_the_lock_free() {
    virtual_test(async || {
        let c = Condition::new(());
        let out = move_on_after(Duration::from_secs(5), async {
            let guard = c.lock().await;
            let _guard = c.wait(guard).await;
        })
        .await;
        assert!(out.is_none());
        assert!(!c.as_lock().is_locked());
        assert_eq!(c.waiting(), 0);
        // A wait dropped before its first poll just drops the guard.
        drop(c.wait(c.lock().await));
        assert!(!c.as_lock().is_locked());
    });
}

/// A notified waiter dropped before it had the lock again passes its notification to the
/// next waiter: whether it was still queued for the lock, or had been handed it. A
/// `notify(1)` is never lost to a cancelled task.
#[test]
fn condition_notification_passes_on_from_a_dropped_waiter() {
    virtual_test(async || {
        for handed_the_lock in [false, true] {
            let c = Condition::new(());
            let done = RefCell::new(false);
            nursery(async |n| {
                let guard = c.lock().await;
                let dropped = poll_once(c.wait(guard)).await;
                n.spawn(async {
                    let guard = c.lock().await;
                    drop(c.wait(guard).await);
                    *done.borrow_mut() = true;
                });
                settle().await;
                assert_eq!(c.waiting(), 2);
                let guard = c.lock().await;
                c.notify(1);
                assert_eq!((c.waiting(), c.as_lock().waiting()), (1, 1));
                if handed_the_lock {
                    drop(guard);
                    assert!(c.as_lock().is_locked(), "handed to the dropped waiter");
                    drop(dropped);
                } else {
                    drop(dropped);
                    assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 1));
                    drop(guard);
                }
                settle().await;
                assert!(*done.borrow(), "handed_the_lock: {handed_the_lock}");
                assert!(!c.as_lock().is_locked());
            })
            .await
            .unwrap();
        }
    });
}

/// A waiter of a condition may hold a guard of another lock: it is woken by the notify,
/// and takes that lock back when it runs.
#[test]
fn condition_wait_works_with_a_guard_of_another_lock() {
    virtual_test(async || {
        let c = Condition::new(0);
        let other = Lock::new(0);
        nursery(async |n| {
            n.spawn(async {
                let guard = other.lock().await;
                *c.wait(guard).await += 1;
            });
            settle().await;
            assert!(!other.is_locked(), "released while waiting");
            c.notify(1);
        })
        .await
        .unwrap();
        assert_eq!(other.into_inner(), 1);
    });
}

/// A waiter with a guard of another lock that was notified, ran, and queued for its lock
/// passes its notification on when it is cancelled there.
#[test]
fn condition_notification_passes_on_from_a_waiter_cancelled_while_it_waits_for_its_lock() {
    virtual_test(async || {
        let c = Condition::new(());
        let other = Lock::new(());
        let record = RefCell::new(Vec::new());
        nursery(async |n| {
            let scope = CancelScope::new();
            let cancel = scope.clone();
            for (name, scope) in [("a", Some(scope)), ("b", None)] {
                let (c, other, record) = (&c, &other, &record);
                n.spawn(async move {
                    let wait = async {
                        let guard = other.lock().await;
                        drop(c.wait(guard).await);
                        record.borrow_mut().push(name);
                    };
                    match scope {
                        Some(scope) => drop(scope.run(wait).await),
                        None => wait.await,
                    }
                });
                settle().await;
            }
            assert_eq!(c.waiting(), 2);
            let held = other.lock().await;
            c.notify(1);
            settle().await;
            assert_eq!(
                (c.waiting(), other.waiting()),
                (1, 1),
                "a waits for `other`"
            );
            cancel.cancel();
            settle().await;
            assert_eq!(
                (c.waiting(), other.waiting()),
                (0, 1),
                "b was notified instead"
            );
            drop(held);
        })
        .await
        .unwrap();
        assert_eq!(*record.borrow(), ["b"]);
    });
}

/// The delivery rule meets the hand-off: a waiter handed the lock in the same step as its
/// scope is cancelled was woken, so it is polled once more and takes the lock (a value
/// ready in the same instant as the cancellation is kept), runs to its next suspension,
/// and is dropped there with its guard, which hands the lock on. Nothing is lost either
/// way.
#[test]
fn lock_handed_to_a_waiter_whose_scope_is_cancelled_in_the_same_step_is_used_then_passed_on() {
    virtual_test(async || {
        let l = Lock::new(Vec::new());
        nursery(async |n| {
            let guard = l.lock().await;
            let scope = CancelScope::new();
            let cancel = scope.clone();
            let l = &l;
            n.spawn(async move {
                scope
                    .run(async {
                        let mut list = l.lock().await;
                        list.push("cancelled, but it had the lock");
                        sleep_forever().await;
                    })
                    .await;
            });
            n.spawn(async move { l.lock().await.push("next") });
            settle().await;
            assert_eq!(l.waiting(), 2);
            drop(guard);
            cancel.cancel();
        })
        .await
        .unwrap();
        assert!(!l.is_locked());
        assert_eq!(l.into_inner(), ["cancelled, but it had the lock", "next"]);
    });
}
