//! Adversarial programs against the promises of the synchronisation primitives (`Event`,
//! `Lock`, `Semaphore`, `CapacityLimiter`, `Condition`), the context variables
//! (`ContextVar`, `Context`), `finally`, and `testing::{wait_all_tasks_blocked,
//! Sequencer}`.
//!
//! Each test names, in its doc comment, the documented promise it tries to break. The
//! shapes: cancellation at the instant of a hand-off (inside a nursery the delivery rule
//! polls a woken unit once more, so it keeps what it was handed and drops it at its next
//! suspension), hard drops from outside (`poll_once` then `drop`: the only way to drop a
//! waiter that was handed something before it ran), storms of both under shuffled
//! schedules, destructors that panic or re-enter, wakers that re-enter the primitive that
//! wakes them, and state that crosses runtimes and threads. Every count is checked
//! exactly: a unit lost or made twice fails.
//!
//! Time is virtual (autojump) everywhere, and everything that could hang runs under the
//! watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::Duration;

use common::{
    HANG_LIMIT, OnDrop, PanicOnDrop, catch_unwind, ms, panic_message, panic_message_of, poll_once,
    run_virtual, secs, virtual_test, watchdog,
};
use trellis::testing::{Sequencer, wait_all_tasks_blocked};
use trellis::{
    BorrowerId, Builder, CancelScope, CapacityLimiter, Condition, Context, ContextVar, Event,
    LimiterError, Lock, Semaphore, SemaphoreError, cancelled, finally, move_on_after, now, nursery,
    sleep, sleep_forever, to_thread, yield_now,
};

/// Trio's `wait_all_tasks_blocked()` on the autojump clock, without relying on trellis's
/// own (tested separately below): a sleep ends only once every other task is blocked.
async fn settle() {
    sleep(secs(1)).await;
}

// ---------------------------------------------------------------------------------------
// Storms: Lock, Semaphore, CapacityLimiter under cancellation and hard drops

/// One of the three primitives that hand out units (as trio's `lock_factories`).
enum Units {
    Lock(Lock<()>),
    Semaphore(Semaphore),
    Limiter(CapacityLimiter),
}

/// What holding a unit of [`Units`] gives; dropping it puts the unit back.
#[allow(dead_code, reason = "held only for its drop")]
enum Held<'a> {
    Guard(trellis::LockGuard<'a, ()>),
    Permit(trellis::SemaphorePermit<'a>),
    Token(trellis::LimiterToken<'a>),
}

impl Units {
    fn capacity(&self) -> usize {
        match self {
            Units::Lock(_) => 1,
            Units::Semaphore(_) | Units::Limiter(_) => 3,
        }
    }

    fn make(kind: usize) -> Units {
        match kind {
            0 => Units::Lock(Lock::new(())),
            1 => Units::Semaphore(Semaphore::new(3)),
            _ => Units::Limiter(CapacityLimiter::new(3).unwrap()),
        }
    }

    async fn acquire(&self) -> Held<'_> {
        match self {
            Units::Lock(l) => Held::Guard(l.lock().await),
            Units::Semaphore(s) => Held::Permit(s.acquire().await),
            Units::Limiter(c) => Held::Token(c.acquire().await),
        }
    }

    fn try_acquire(&self) -> Option<Held<'_>> {
        match self {
            Units::Lock(l) => l.try_lock().ok().map(Held::Guard),
            Units::Semaphore(s) => s.try_acquire().ok().map(Held::Permit),
            Units::Limiter(c) => c.try_acquire().ok().map(Held::Token),
        }
    }

    /// Units free now (a lock: 1 when free).
    fn free(&self) -> usize {
        match self {
            Units::Lock(l) => usize::from(!l.is_locked()),
            Units::Semaphore(s) => s.value(),
            Units::Limiter(c) => c.available_tokens(),
        }
    }

    fn waiting(&self) -> usize {
        match self {
            Units::Lock(l) => l.waiting(),
            Units::Semaphore(s) => s.waiting(),
            Units::Limiter(c) => c.waiting(),
        }
    }
}

/// Counts the holders inside while it lives.
struct Inside<'a>(&'a Cell<usize>);

impl<'a> Inside<'a> {
    fn enter(busy: &'a Cell<usize>, most: &Cell<usize>) -> Inside<'a> {
        busy.set(busy.get() + 1);
        most.set(most.get().max(busy.get()));
        Inside(busy)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What a storm ended with.
#[derive(Debug, PartialEq, Eq)]
struct StormEnd {
    /// Units free after it (all of them, or a unit was lost or made).
    free: usize,
    waiting: usize,
    /// Holders inside at the end (0: every holder's unit came back).
    inside: usize,
    /// Tasks that neither got a unit, nor were cancelled, nor dropped their acquire.
    unaccounted: usize,
    /// `try_` calls that got a unit while tasks waited.
    overtaken: usize,
}

/// Records whether it was woken: a waiter of these primitives is woken when (and only
/// when) a unit is handed to it.
struct WokenFlag(std::sync::atomic::AtomicBool);

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Forty tasks take a unit of `kind` under a shuffled schedule: some are cancelled by
/// their scope while queued, while holding, or in the very step a unit is handed to them;
/// some hard-drop an acquire they polled once (often after a unit was handed to it: the
/// second value returned counts those); and a `try_` caller keeps trying to overtake the
/// queue.
fn storm(kind: usize, seed: u64) -> (StormEnd, usize) {
    watchdog(HANG_LIMIT, move || {
        Builder::new().autojump().shuffle_seed(seed).run(async {
            let units = Units::make(kind);
            let capacity = units.capacity();
            let (busy, most) = (Cell::new(0), Cell::new(0));
            let overtaken = Cell::new(0);
            let handed_then_dropped = Cell::new(0);
            let accounted: Vec<Cell<bool>> = (0..40).map(|_| Cell::new(false)).collect();
            let scopes: Vec<CancelScope> = (0..40).map(|_| CancelScope::new()).collect();
            nursery(async |n| {
                for (i, scope) in scopes.iter().enumerate() {
                    let (units, busy, most) = (&units, &busy, &most);
                    let (done, handed_then_dropped) = (&accounted[i], &handed_then_dropped);
                    let scope = scope.clone();
                    n.spawn(async move {
                        scope
                            .run(async {
                                sleep(ms(i as u64 % 7)).await;
                                if i % 4 == 3 {
                                    // Queue with a waker of our own (the task is not
                                    // woken), sit while a unit may be handed over, and
                                    // drop the acquire without ever polling it again.
                                    let flag = Arc::new(WokenFlag(false.into()));
                                    let mut acquire = Box::pin(units.acquire());
                                    let _ = poll(acquire.as_mut(), &Waker::from(flag.clone()));
                                    sleep(ms(3 + i as u64 % 11)).await;
                                    if flag.0.load(Ordering::SeqCst) {
                                        handed_then_dropped.set(handed_then_dropped.get() + 1);
                                    }
                                    drop(acquire);
                                    done.set(true);
                                    return;
                                }
                                let _held = units.acquire().await;
                                let _inside = Inside::enter(busy, most);
                                done.set(true);
                                sleep(ms(1 + i as u64 % 5)).await;
                            })
                            .await;
                    });
                }
                // Someone who never queues: a `try_` must not get a unit while anyone
                // waits (no overtaking).
                n.spawn(async {
                    for _ in 0..80 {
                        let waiting = units.waiting();
                        if let Some(held) = units.try_acquire() {
                            if waiting > 0 {
                                overtaken.set(overtaken.get() + 1);
                            }
                            drop(held);
                        }
                        sleep(ms(1)).await;
                    }
                });
                for step in 0..40_usize {
                    sleep(ms(1)).await;
                    if step % 3 == 0 {
                        scopes[(step * 7) % 40].cancel();
                    }
                }
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
            assert!(most.get() <= capacity, "{} inside at once", most.get());
            let unaccounted = (0..40)
                .filter(|&i| !accounted[i].get() && !scopes[i].cancelled_caught())
                .count();
            let end = StormEnd {
                free: units.free(),
                waiting: units.waiting(),
                inside: busy.get(),
                unaccounted,
                overtaken: overtaken.get(),
            };
            (end, handed_then_dropped.get())
        })
    })
}

/// Runs the storm over several seeds: each must end with every unit back, and the seeds
/// together must have handed units to dropped acquires (the path under attack).
fn storms(kind: usize, capacity: usize) {
    let mut handed_then_dropped = 0;
    for seed in 0..6 {
        let (end, handed) = storm(kind, seed);
        handed_then_dropped += handed;
        assert_eq!(
            end,
            StormEnd {
                free: capacity,
                waiting: 0,
                inside: 0,
                unaccounted: 0,
                overtaken: 0
            },
            "seed {seed}"
        );
    }
    assert!(
        handed_then_dropped > 0,
        "no unit was ever handed to a dropped acquire"
    );
}

/// Attacks sync/mod.rs "A waiter dropped while queued (a cancelled task) loses nothing and
/// leaves no one starved: what it was given passes to the next waiter" and the `Lock::lock`
/// `# Cancellation` section, under shuffled schedules: after the storm the lock is free,
/// nobody waits, and no `try_lock` ever overtook a queued waiter ("taking a free lock never
/// overtakes a waiter", lock.rs).
#[test]
fn a_storm_of_cancelled_and_hard_dropped_lock_waiters_leaves_the_lock_free() {
    storms(0, 1);
}

/// Attacks `Semaphore::acquire` `# Cancellation` ("dropping it after a unit was handed to
/// it, before it ran, passes the unit on to the next waiter (or back to the semaphore)"):
/// after a storm of cancelled and hard-dropped acquires the value is exactly the initial 3.
#[test]
fn a_storm_of_cancelled_and_hard_dropped_acquires_restores_the_semaphores_exact_value() {
    storms(1, 3);
}

/// Attacks `CapacityLimiter::acquire` `# Cancellation` and the invariant "waiters are
/// queued only while `borrowed >= total`, so a new borrower never overtakes a waiter"
/// (capacity_limiter.rs): every token comes back, exactly.
#[test]
fn a_storm_of_cancelled_and_hard_dropped_borrowers_returns_every_token() {
    storms(2, 3);
}

// ---------------------------------------------------------------------------------------
// Semaphore

/// Attacks the hand-off rule "a waiter that was handed a unit but is dropped before it ran
/// releases it again, the same way" (semaphore.rs) along a chain: five acquires polled once
/// and dropped one after another each pass the same single unit down the queue; at no
/// point is more than one unit out, and a live waiter at the end gets it exactly once.
#[test]
fn one_unit_handed_down_a_chain_of_hard_dropped_acquires_is_neither_lost_nor_doubled() {
    let got = virtual_test(async || {
        let s = Semaphore::new(0);
        let got = Cell::new(0);
        nursery(async |n| {
            let mut dropped = Vec::new();
            for _ in 0..5 {
                dropped.push(poll_once(s.acquire()).await);
            }
            n.spawn(async {
                let _permit = s.acquire().await;
                got.set(got.get() + 1);
            });
            settle().await;
            assert_eq!(s.waiting(), 6);
            s.release().unwrap(); // to the first dropped acquire
            for (i, acquire) in dropped.into_iter().enumerate() {
                assert_eq!((s.value(), s.waiting()), (0, 5 - i));
                drop(acquire); // to the next
            }
            assert_eq!((s.value(), s.waiting()), (0, 0), "handed to the live child");
            assert!(s.try_acquire().is_err(), "the unit is the child's");
            settle().await;
            assert_eq!(s.value(), 1);
            Ok::<_, ()>(got.get())
        })
        .await
        .unwrap()
    });
    assert_eq!(got, 1);
}

/// Attacks `Semaphore::release` ("a `release` that would raise its value above the bound is
/// an error ... counting the units its permits still hold") through a unit released *by
/// hand* (after `forget`) to a waiter that is then dropped before it ran: the unit goes back
/// to the value, and the bound still refuses one release more.
#[test]
fn a_unit_released_by_hand_to_a_dropped_waiter_keeps_a_bounded_semaphores_bound() {
    virtual_test(async || {
        let s = Semaphore::with_max_value(2, 2).unwrap();
        s.try_acquire().unwrap().forget();
        let kept = s.acquire().await;
        assert_eq!(s.value(), 0);
        let handed = poll_once(s.acquire()).await;
        s.release().unwrap(); // the forgotten unit, to `handed`
        assert_eq!((s.value(), s.waiting()), (0, 0));
        assert_eq!(
            s.release(),
            Err(SemaphoreError::ReleasedTooManyTimes { max_value: Some(2) }),
            "both units are out: one with `kept`, one handed to `handed`"
        );
        drop(handed);
        assert_eq!(s.value(), 1);
        drop(kept);
        assert_eq!(s.value(), 2);
        assert!(s.release().is_err(), "at its bound");
    });
}

/// Attacks "dropping it after a unit was handed to it, before it ran, passes the unit on"
/// together with the delivery rule (a unit woken in the step its scope is cancelled is
/// polled once more): a waiter cancelled in the step it is handed the only unit takes it,
/// is dropped at its next suspension, and the unit reaches the next waiter once. Nobody
/// gets the unit twice and the value ends at 1.
#[test]
fn a_semaphore_waiter_cancelled_in_the_step_it_is_handed_the_unit_passes_it_on_once() {
    let log = virtual_test(async || {
        let s = Semaphore::new(1);
        let log = RefCell::new(Vec::new());
        nursery(async |n| {
            let permit = s.acquire().await;
            let scope = CancelScope::new();
            let cancel = scope.clone();
            let (s, log) = (&s, &log);
            n.spawn(async move {
                scope
                    .run(async {
                        let _p = s.acquire().await;
                        log.borrow_mut().push("a took it");
                        sleep_forever().await;
                    })
                    .await;
                log.borrow_mut().push("a ended");
            });
            n.spawn(async move {
                let _p = s.acquire().await;
                log.borrow_mut().push("b took it");
            });
            settle().await;
            assert_eq!(s.waiting(), 2);
            drop(permit); // handed to a
            cancel.cancel(); // in the same step
            settle().await;
            assert_eq!((s.value(), s.waiting()), (1, 0));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        log.into_inner()
    });
    assert_eq!(log, ["a took it", "a ended", "b took it"]);
}

// ---------------------------------------------------------------------------------------
// Lock

/// A value whose destructor panics, held beside a lock guard.
struct GuardBesidePanic<'a> {
    _panics: PanicOnDrop,
    _guard: trellis::LockGuard<'a, Vec<&'static str>>,
}

/// Attacks `LockGuard` ("dropping it releases the lock (to the oldest waiter, if any)") and
/// DESIGN.md "A panic in a child (in its poll or in its destructor) is caught, counts as
/// that child's failure ... No sequence of panics aborts the process": a guard dropped
/// while its owner's destructor panics still hands the lock on, so a waiter outside the
/// failing nursery gets it, and the panic reaches the caller.
#[test]
fn a_guard_dropped_inside_a_panicking_destructor_still_hands_the_lock_on() {
    let (message, contents) = virtual_test(async || {
        let lock = Lock::new(Vec::new());
        let message = RefCell::new(String::new());
        nursery(async |outer| {
            outer.spawn(async {
                settle().await; // the failing child holds the lock by now
                lock.lock().await.push("outer waiter");
            });
            let failed = catch_unwind(nursery(async |n| {
                let child = n.spawn(async {
                    let _held = GuardBesidePanic {
                        _panics: PanicOnDrop("destructor panics"),
                        _guard: lock.lock().await,
                    };
                    sleep_forever().await;
                });
                settle().await;
                settle().await; // the outer waiter queues
                assert_eq!(lock.waiting(), 1);
                child.cancel(); // dropped: its destructor panics, its guard releases
                Ok::<_, ()>(())
            }))
            .await;
            *message.borrow_mut() = panic_message(&*failed.unwrap_err());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        assert!(!lock.is_locked());
        (message.into_inner(), lock.into_inner())
    });
    assert_eq!(message, "destructor panics");
    assert_eq!(contents, ["outer waiter"]);
}

/// Hands every wake to `poke`, on the runtime's thread (a waker of a foreign executor that
/// runs arbitrary code when woken).
struct Reentrant<F: Fn() + Send + Sync + 'static>(F);

impl<F: Fn() + Send + Sync + 'static> Wake for Reentrant<F> {
    fn wake(self: Arc<Self>) {
        (self.0)();
    }
}

thread_local! {
    static REENTERED_LOCK: Lock<u32> = const { Lock::new(0) };
    static REENTERED_SEMAPHORE: Semaphore = const { Semaphore::new(0) };
    static REENTERED_CONDITION: Condition<()> = const { Condition::new(()) };
    static REENTERED_EVENT: Event = const { Event::new() };
    static POKES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn record(what: String) {
    POKES.with_borrow_mut(|p| p.push(what));
}

/// Attacks waiters.rs "Wakers are returned to the caller, not called here, so that
/// primitives can wake after their `RefCell` borrow ends: a waker that runs arbitrary code
/// ... cannot re-enter a primitive that is still borrowed", and lock.rs "taking a free lock
/// never overtakes a waiter": wakers that, when woken, call back into the very primitive
/// that wakes them (try to take it, read its statistics, notify) neither panic with a
/// borrow error nor take what was just handed to the woken waiter.
#[test]
fn wakers_that_reenter_the_primitive_waking_them_neither_panic_nor_overtake() {
    let pokes = watchdog(HANG_LIMIT, || {
        // Lock: the release hands the lock to the waiter, then wakes it.
        let lock_waker = Waker::from(Arc::new(Reentrant(|| {
            REENTERED_LOCK.with(|l| {
                record(format!("lock try_lock ok: {}", l.try_lock().is_ok()));
                record(format!("lock waiting: {}", l.waiting()));
            })
        })));
        REENTERED_LOCK.with(|l| {
            let guard = l.try_lock().unwrap();
            let mut acquire = Box::pin(async {
                *l.lock().await += 1;
            });
            assert!(!poll(acquire.as_mut(), &lock_waker));
            drop(guard); // wakes `lock_waker` inside the release
            assert!(poll(acquire.as_mut(), &lock_waker));
            assert!(!l.is_locked());
        });

        // Semaphore: `release` hands the unit over, then wakes.
        let semaphore_waker = Waker::from(Arc::new(Reentrant(|| {
            REENTERED_SEMAPHORE.with(|s| {
                record(format!(
                    "semaphore try_acquire ok: {}",
                    s.try_acquire().is_ok()
                ));
                record(format!("semaphore value: {}", s.value()));
            })
        })));
        REENTERED_SEMAPHORE.with(|s| {
            let mut acquire = Box::pin(async {
                s.acquire().await.forget();
            });
            assert!(!poll(acquire.as_mut(), &semaphore_waker));
            s.release().unwrap();
            assert!(poll(acquire.as_mut(), &semaphore_waker));
            assert_eq!(s.value(), 0, "the waiter kept (forgot) the one unit");
        });

        // Condition: a notify moves the waiter into the lock's queue and, the lock being
        // free, hands it the lock and wakes it; the waker notifies again.
        let condition_waker = Waker::from(Arc::new(Reentrant(|| {
            REENTERED_CONDITION.with(|c| {
                c.notify_all();
                record(format!(
                    "condition lock free: {}",
                    c.as_lock().try_lock().is_ok()
                ));
            })
        })));
        REENTERED_CONDITION.with(|c| {
            let mut wait = Box::pin(async {
                let guard = c.as_lock().try_lock().unwrap();
                drop(c.wait(guard).await);
            });
            assert!(!poll(wait.as_mut(), &condition_waker));
            c.notify(1);
            assert!(poll(wait.as_mut(), &condition_waker));
            assert!(!c.as_lock().is_locked());
        });

        // Event: `set` wakes every waiter; the waker waits again and reads the count.
        let event_waker = Waker::from(Arc::new(Reentrant(|| {
            REENTERED_EVENT.with(|e| {
                record(format!(
                    "event waiting: {} set: {}",
                    e.waiting(),
                    e.is_set()
                ));
            })
        })));
        REENTERED_EVENT.with(|e| {
            let mut waits: Vec<_> = (0..3).map(|_| Box::pin(e.wait())).collect();
            for w in &mut waits {
                assert!(!poll(w.as_mut(), &event_waker));
            }
            e.set();
            for w in &mut waits {
                assert!(poll(w.as_mut(), &event_waker));
            }
        });
        POKES.with_borrow(Clone::clone)
    });
    assert_eq!(
        pokes,
        [
            "lock try_lock ok: false",
            "lock waiting: 0",
            "semaphore try_acquire ok: false",
            "semaphore value: 0",
            "condition lock free: false",
            "event waiting: 0 set: true",
            "event waiting: 0 set: true",
            "event waiting: 0 set: true",
        ]
    );
}

/// Polls `fut` once with `waker`; whether it completed.
fn poll<F: std::future::Future + ?Sized>(fut: std::pin::Pin<&mut F>, waker: &Waker) -> bool {
    fut.poll(&mut TaskContext::from_waker(waker)).is_ready()
}

// ---------------------------------------------------------------------------------------
// CapacityLimiter

/// Attacks `set_total_tokens` ("More tokens are handed to waiters at once, oldest first;
/// fewer take nothing back: borrowers keep their tokens, and new ones wait until enough are
/// released") and `borrowed_tokens` ("also those handed to waiters that have not run yet"):
/// the total grows and shrinks while ten tasks wait, one waiter is cancelled, and at every
/// step the borrowed, available and waiting counts are exact; tokens go out in FIFO order.
#[test]
fn the_limiters_total_grown_and_shrunk_while_tasks_wait_keeps_every_count_exact() {
    let order = virtual_test(async || {
        let c = CapacityLimiter::new(2).unwrap();
        let done: Vec<Event> = (0..10).map(|_| Event::new()).collect();
        let order = RefCell::new(Vec::new());
        nursery(async |n| {
            let mut handles = Vec::new();
            for (i, done) in done.iter().enumerate() {
                let (c, order) = (&c, &order);
                handles.push(n.spawn(async move {
                    let _token = c.acquire().await;
                    order.borrow_mut().push(i);
                    done.wait().await;
                }));
                yield_now().await; // queue in spawn order
            }
            settle().await;
            let counts = || (c.borrowed_tokens(), c.available_tokens(), c.waiting());
            assert_eq!(counts(), (2, 0, 8));
            c.set_total_tokens(5).unwrap();
            assert_eq!(counts(), (5, 0, 5), "three handed at once");
            settle().await;
            assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);

            c.set_total_tokens(1).unwrap();
            assert_eq!(counts(), (5, 0, 5), "nothing taken back");
            assert_eq!(c.try_acquire().unwrap_err(), LimiterError::WouldBlock);
            for d in &done[0..4] {
                d.set();
            }
            settle().await;
            assert_eq!(counts(), (1, 0, 5), "still above the new total: nobody new");
            done[4].set();
            settle().await;
            assert_eq!(counts(), (1, 0, 4), "one token for the oldest waiter");
            assert_eq!(*order.borrow(), [0, 1, 2, 3, 4, 5]);

            handles[9].cancel(); // queued: leaves the queue
            settle().await;
            assert_eq!(counts(), (1, 0, 3));
            c.set_total_tokens(3).unwrap();
            assert_eq!(counts(), (3, 0, 1));
            for d in &done[5..] {
                d.set();
            }
            settle().await;
            assert_eq!(counts(), (0, 3, 0));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        order.into_inner()
    });
    assert_eq!(order, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
}

/// Attacks `set_total_tokens` handing tokens to waiters that are dropped before they run
/// (capacity_limiter.rs: "A waiter handed a token but dropped before it ran releases it, to
/// the next"): a grow hands tokens to two hard-dropped acquires and a named borrower; their
/// drops pass the tokens to the live waiter or back, and the named borrower holds nothing.
#[test]
fn tokens_handed_by_a_grow_to_waiters_that_are_then_dropped_come_back() {
    virtual_test(async || {
        let c = CapacityLimiter::new(1).unwrap();
        let named = BorrowerId::new();
        let got = Cell::new(0);
        nursery(async |n| {
            let held = c.acquire().await;
            let first = poll_once(c.acquire()).await;
            let second = poll_once(c.acquire_on_behalf_of(named)).await;
            n.spawn(async {
                let _token = c.acquire().await;
                got.set(got.get() + 1);
                settle().await;
            });
            settle().await;
            assert_eq!(c.waiting(), 3);
            c.set_total_tokens(3).unwrap(); // to `first` and `second`
            assert_eq!((c.borrowed_tokens(), c.waiting()), (3, 1));
            assert!(c.is_borrowing(named));
            drop(first); // to the child
            assert_eq!((c.borrowed_tokens(), c.waiting()), (3, 0));
            drop(second); // back: nobody waits
            assert!(!c.is_borrowing(named));
            assert_eq!(c.borrowed_tokens(), 2);
            drop(held);
            settle().await;
            settle().await;
            assert_eq!((c.borrowed_tokens(), c.available_tokens()), (0, 3));
            assert_eq!(got.get(), 1);
            assert_eq!(
                c.release_on_behalf_of(named),
                Err(LimiterError::NotBorrowing)
            );
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    });
}

/// Attacks `acquire_on_behalf_of` `# Errors` ("`AlreadyBorrowing` when `borrower` already
/// holds a token of this limiter, or waits for one"): the second acquire for a waiting
/// borrower fails at once and, dropped, does not take the first out of the queue nor out of
/// the books; the first then gets its token and keeps it past its future; releasing it
/// twice is `NotBorrowing` the second time.
#[test]
fn a_second_acquire_for_a_waiting_borrower_fails_without_disturbing_the_first() {
    virtual_test(async || {
        let c = CapacityLimiter::new(1).unwrap();
        let x = BorrowerId::new();
        nursery(async |n| {
            let held = c.acquire().await;
            let first = n.spawn(async { c.acquire_on_behalf_of(x).await.unwrap() });
            settle().await;
            assert_eq!(c.waiting(), 1);
            let mut second = Box::pin(c.acquire_on_behalf_of(x));
            assert_eq!((&mut second).await, Err(LimiterError::AlreadyBorrowing));
            drop(second);
            assert_eq!(
                c.try_acquire_on_behalf_of(x),
                Err(LimiterError::AlreadyBorrowing)
            );
            assert_eq!(c.waiting(), 1, "the first still queues");
            assert!(!c.is_borrowing(x));
            drop(held);
            assert_eq!(first.await.ok(), Some(()));
            assert!(c.is_borrowing(x), "kept past its future");
            assert_eq!(c.borrowed_tokens(), 1);
            assert_eq!(c.release_on_behalf_of(x), Ok(()));
            assert_eq!(c.release_on_behalf_of(x), Err(LimiterError::NotBorrowing));
            assert_eq!(c.borrowed_tokens(), 0);
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    });
}

/// Attacks `is_borrowing` ("one handed to it while it waited counts"), `release_on_behalf_of`
/// (which releases any borrower that holds a token) and `BorrowerAcquire`'s cancellation
/// ("dropped after a token was handed to it, the token is released again (to the next
/// waiter), and the borrower holds nothing"), with sync/mod.rs "Misuse is an error value
/// ..., never a panic": a token handed to a waiting borrower is released on its behalf
/// (legal: it holds it), then its acquire future is dropped. The drop must not release the
/// token a second time: `borrowed_tokens` must stay 0 (not underflow), and a borrow made in
/// between must survive.
#[test]
fn a_handed_token_released_on_behalf_of_its_borrower_is_not_released_again_by_the_drop() {
    let outcome = watchdog(HANG_LIMIT, || {
        std::panic::catch_unwind(|| {
            run_virtual(async {
                let c = CapacityLimiter::new(1).unwrap();
                let x = BorrowerId::new();
                let y = BorrowerId::new();
                let held = c.acquire().await;
                let waiting = poll_once(c.acquire_on_behalf_of(x)).await;
                drop(held); // handed to x
                assert!(c.is_borrowing(x));
                c.release_on_behalf_of(x).unwrap(); // x holds it: released
                assert_eq!(c.borrowed_tokens(), 0);
                c.try_acquire_on_behalf_of(y).unwrap(); // another borrower takes it
                drop(waiting); // x's old acquire: must release nothing
                (
                    c.borrowed_tokens(),
                    c.is_borrowing(y),
                    c.release_on_behalf_of(y),
                )
            })
        })
        .map_err(|p| panic_message(&*p))
    });
    assert_eq!(outcome, Ok((1, true, Ok(()))));
}

/// The same, with the borrower itself borrowing again in between (`release_on_behalf_of`:
/// "the token is released once, the acquire then completes with `Ok` holding nothing"):
/// neither the old acquire's drop nor its completion touches the new borrow.
#[test]
fn a_handed_then_released_acquire_leaves_its_borrowers_next_borrow_alone() {
    for poll_it in [false, true] {
        let (borrowed, borrowing, released, again) = watchdog(HANG_LIMIT, move || {
            run_virtual(async {
                let c = CapacityLimiter::new(1).unwrap();
                let x = BorrowerId::new();
                let held = c.acquire().await;
                let mut waiting = Box::pin(c.acquire_on_behalf_of(x));
                assert!(futures::poll!(waiting.as_mut()).is_pending());
                drop(held); // handed to x's waiting acquire
                c.release_on_behalf_of(x).unwrap();
                c.try_acquire_on_behalf_of(x).unwrap(); // x borrows anew
                if poll_it {
                    assert_eq!(waiting.await, Ok(()));
                } else {
                    drop(waiting);
                }
                let state = (c.borrowed_tokens(), c.is_borrowing(x));
                let released = c.release_on_behalf_of(x);
                (state.0, state.1, released, c.release_on_behalf_of(x))
            })
        });
        assert_eq!(
            (borrowed, borrowing, released, again),
            (1, true, Ok(()), Err(LimiterError::NotBorrowing)),
            "poll_it = {poll_it}"
        );
    }
}

/// Attacks `acquire_on_behalf_of` `# Cancellation` ("Once the future has completed, the
/// token is `borrower`'s until released by hand: a cancellation after that does not release
/// it") with the delivery rule: a named borrower whose scope is cancelled in the step it is
/// handed a token completes (it was woken) and keeps the token after its task is gone; the
/// token comes back only by hand, once.
#[test]
fn a_named_borrower_cancelled_in_the_step_it_is_handed_a_token_keeps_it_until_released() {
    let (completed, kept) = virtual_test(async || {
        let c = CapacityLimiter::new(1).unwrap();
        let x = BorrowerId::new();
        let completed = Cell::new(false);
        nursery(async |n| {
            let held = c.acquire().await;
            let scope = CancelScope::new();
            let cancel = scope.clone();
            let (c, completed) = (&c, &completed);
            n.spawn(async move {
                scope
                    .run(async {
                        c.acquire_on_behalf_of(x).await.unwrap();
                        completed.set(true);
                        sleep_forever().await;
                    })
                    .await;
            });
            settle().await;
            drop(held); // handed to x
            cancel.cancel(); // in the same step
            settle().await;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        let kept = (c.is_borrowing(x), c.borrowed_tokens());
        c.release_on_behalf_of(x).unwrap();
        assert_eq!(c.release_on_behalf_of(x), Err(LimiterError::NotBorrowing));
        assert_eq!(c.borrowed_tokens(), 0);
        (completed.get(), kept)
    });
    assert!(
        completed,
        "woken in the step of the cancel: polled once more"
    );
    assert_eq!(kept, (true, 1));
}

// ---------------------------------------------------------------------------------------
// Condition

/// Attacks `Condition::notify` ("with none, it does nothing (a notify is not remembered for
/// later waiters)"): notifies with nobody waiting wake nobody later, and leave the lock as
/// it was (free; not handed to anyone).
#[test]
fn notifies_with_no_waiters_are_not_remembered() {
    let woke = virtual_test(async || {
        let c = Condition::new(0);
        c.notify(3);
        c.notify_all();
        c.notify(0);
        assert!(!c.as_lock().is_locked());
        let guard = c.lock().await;
        let woke = move_on_after(secs(10), c.wait(guard)).await.is_some();
        assert!(
            !c.as_lock().is_locked(),
            "a cancelled wait leaves the lock free"
        );
        assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 0));
        woke
    });
    assert!(!woke, "an earlier notify woke a later waiter");
}

/// Attacks `notify_all` ("Wakes every waiter, and queues them for the lock in the order they
/// waited") with waiters cancelled before it: the cancelled ones are gone from both queues,
/// the rest get the lock in their order, each once.
#[test]
fn notify_all_after_some_waiters_were_cancelled_wakes_the_rest_in_order() {
    let got = virtual_test(async || {
        let c = Condition::new(Vec::new());
        let scopes: Vec<CancelScope> = (0..6).map(|_| CancelScope::new()).collect();
        nursery(async |n| {
            for (i, scope) in scopes.iter().enumerate() {
                let (c, scope) = (&c, scope.clone());
                n.spawn(async move {
                    scope
                        .run(async {
                            let guard = c.lock().await;
                            c.wait(guard).await.push(i);
                        })
                        .await;
                });
                yield_now().await;
            }
            settle().await;
            assert_eq!(c.waiting(), 6);
            for i in [1, 3, 4] {
                scopes[i].cancel();
            }
            settle().await;
            assert_eq!(c.waiting(), 3);
            let held = c.lock().await;
            c.notify_all();
            assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 3));
            drop(held);
            settle().await;
            assert!(!c.as_lock().is_locked());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        c.as_lock().try_lock().unwrap().clone()
    });
    assert_eq!(got, [0, 2, 5]);
}

/// Attacks `Condition::wait` `# Cancellation` ("Dropped after it was notified but before it
/// had the lock again, it passes the notification on to the next waiter, and the lock too
/// if it had been handed to it"): a waiter is notified, handed the lock, and hard-dropped
/// before it ran. The lock and the notification both pass on, once: the next waiter gets
/// the lock, and nobody holds it afterwards.
#[test]
fn a_waiter_handed_the_lock_then_hard_dropped_passes_lock_and_notification_once() {
    let got = virtual_test(async || {
        let c = Condition::new(Vec::new());
        nursery(async |n| {
            let guard = c.lock().await;
            let first = poll_once(c.wait(guard)).await;
            assert!(!c.as_lock().is_locked(), "waiting released the lock");
            n.spawn(async {
                let guard = c.lock().await;
                c.wait(guard).await.push("second");
            });
            settle().await;
            assert_eq!(c.waiting(), 2);
            let held = c.lock().await;
            c.notify(1); // `first` moves to the lock's queue
            assert_eq!((c.waiting(), c.as_lock().waiting()), (1, 1));
            drop(held); // the lock is handed to `first`, which never runs
            assert!(c.as_lock().is_locked());
            assert_eq!(c.as_lock().waiting(), 0);
            drop(first); // passes the lock (nobody queues for it) and the notification
            assert_eq!(c.waiting(), 0, "the notification went to the second waiter");
            settle().await;
            assert!(!c.as_lock().is_locked());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        c.as_lock().try_lock().unwrap().clone()
    });
    assert_eq!(got, ["second"]);
}

/// Attacks `Condition::wait` `# Cancellation` ("unlike Trio (whose cancelled `wait` takes
/// the lock back before it raises) the lock is then *not* held") in the state where the
/// waiter was notified and queues for the lock behind a holder: the timeout fires there;
/// the holder's release does not hand the lock to the gone waiter, its notification passes
/// to the next waiter, which gets the lock once.
#[test]
fn a_wait_timing_out_while_it_queues_for_the_lock_neither_holds_it_nor_loses_the_notify() {
    let got = virtual_test(async || {
        let c = Condition::new(Vec::new());
        let timed_out = Cell::new(false);
        nursery(async |n| {
            n.spawn(async {
                let guard = c.lock().await;
                let out = move_on_after(secs(5), async {
                    c.wait(guard).await.push("first");
                })
                .await;
                timed_out.set(out.is_none());
            });
            yield_now().await;
            n.spawn(async {
                let guard = c.lock().await;
                c.wait(guard).await.push("second");
            });
            settle().await;
            assert_eq!(c.waiting(), 2);
            let held = c.lock().await;
            c.notify(1); // the first queues for the lock behind `held`
            sleep(secs(10)).await; // its timeout fires while it queues
            assert!(timed_out.get());
            assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 1));
            drop(held); // to the second
            settle().await;
            assert!(!c.as_lock().is_locked());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        c.as_lock().try_lock().unwrap().clone()
    });
    assert_eq!(got, ["second"]);
}

// ---------------------------------------------------------------------------------------
// Event

/// Attacks `Event::set` ("Sets the event and wakes every task waiting for it. Setting it
/// again does nothing") and waiters.rs (wakers called after the borrow ends): the event is
/// set twice from the destructors of a cancelled task, and every waiter wakes once.
#[test]
fn an_event_set_twice_from_a_cancelled_tasks_destructors_wakes_each_waiter_once() {
    let woke = virtual_test(async || {
        let e = Event::new();
        let woke = Cell::new(0);
        nursery(async |n| {
            for _ in 0..3 {
                n.spawn(async {
                    e.wait().await;
                    woke.set(woke.get() + 1);
                });
            }
            let setter = n.spawn(async {
                let _first = OnDrop(|| e.set());
                let _second = OnDrop(|| {
                    e.set();
                    assert_eq!(e.waiting(), 0);
                });
                sleep_forever().await;
            });
            settle().await;
            assert_eq!(e.waiting(), 3);
            setter.cancel();
            settle().await;
            assert!(e.is_set());
            assert_eq!(e.waiting(), 0);
            // A wait after the set completes at once, even in a cancelled scope (not a
            // checkpoint, Event::wait).
            let scope = CancelScope::new();
            scope.cancel();
            assert_eq!(scope.run(e.wait()).await, Some(()));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        woke.get()
    });
    assert_eq!(woke, 3);
}

// ---------------------------------------------------------------------------------------
// Context variables

/// A context value that counts its live instances (clones included) in a counter of its
/// test's own: `Send + Clone`, as `ContextVar::set` requires.
#[derive(Debug)]
struct Tracked {
    live: &'static AtomicIsize,
    tag: u32,
}

impl Tracked {
    fn new(live: &'static AtomicIsize, tag: u32) -> Tracked {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked { live, tag }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Tracked {
        Tracked::new(self.live, self.tag)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (spinning on real time, a hang detector, not a timing assertion) until `done`;
/// worker threads drop their copies of a context on their own schedule.
fn spin_until(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10) * common::hang_scale(),
            "never happened: {what}"
        );
        std::thread::yield_now();
    }
}

/// Attacks `ContextVar` ("A child spawned into a nursery starts with a copy of its
/// spawner's context as it was at the spawn"), `to_thread` ("runs `f` with a copy of the
/// caller's context") and values.rs invariant 7 ("the cache is never a value's last
/// reference"): values set by the root, by children (some cancelled while they hold them,
/// one in a nursery hard-dropped from outside), and copied into `to_thread` calls are all
/// dropped, each instance once: the live count returns to zero.
#[test]
fn context_values_of_children_cancellations_hard_drops_and_threads_are_each_dropped_once() {
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    static V: ContextVar<Tracked> = ContextVar::new("tracked");
    static LOCAL: ContextVar<Tracked> = ContextVar::new("local").no_inherit();
    let seen = watchdog(HANG_LIMIT, || {
        let seen = run_virtual(async {
            V.set(Tracked::new(&LIVE, 0));
            LOCAL.set(Tracked::new(&LIVE, 100));
            let seen = RefCell::new(Vec::new());
            nursery(async |n| {
                let mut children = Vec::new();
                for i in 1..=8 {
                    let seen = &seen;
                    children.push(n.spawn(async move {
                        let inherited = V.with(|v| v.map(|v| v.tag));
                        assert_eq!(inherited, Some(0), "a copy of the spawner's");
                        assert!(LOCAL.with(|v| v.is_none()), "`no_inherit` stays behind");
                        V.set(Tracked::new(&LIVE, i));
                        let _read = V.get();
                        if i % 2 == 0 {
                            sleep_forever().await; // cancelled below, holding its value
                        }
                        let in_thread = to_thread(|| {
                            let before = V.get().map(|v| v.tag);
                            V.set(Tracked::new(&LIVE, 1000)); // stays on the thread
                            before
                        })
                        .await;
                        seen.borrow_mut()
                            .push((i, in_thread, V.get().map(|v| v.tag)));
                    }));
                }
                let hard = poll_once(nursery(async |m| {
                    m.spawn(async {
                        V.set(Tracked::new(&LIVE, 50));
                        sleep_forever().await;
                    });
                    sleep_forever().await;
                    Ok::<(), ()>(())
                }))
                .await;
                drop(hard);
                settle().await; // the calls are in flight: time moves once they are back
                for child in &children {
                    child.cancel(); // the sleepers, with their values
                }
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            let _last_read = V.get(); // cached right before the end
            let mut seen = seen.into_inner();
            seen.sort(); // the calls come back in the threads' order
            seen
        });
        spin_until("every context value dropped", || {
            LIVE.load(Ordering::SeqCst) == 0
        });
        seen
    });
    assert_eq!(
        seen,
        [1, 3, 5, 7].map(|i| (i, Some(i), Some(i))),
        "each call saw its caller's value, and its own set did not come back"
    );
}

/// Attacks values.rs invariant 7 ("the map still holds every value the cache does, so the
/// cache is never a value's last reference") at the edges of a task's life: a value read
/// as the last thing a child or the root does is dropped with that task's context, at once,
/// without waiting for some later switch of the thread's current context.
#[test]
fn a_value_read_as_the_last_act_of_a_task_is_dropped_when_the_task_ends() {
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    static V: ContextVar<Tracked> = ContextVar::new("read last");
    let (after_child, after_replace) = virtual_test(async || {
        nursery(async |n| {
            n.spawn(async {
                V.set(Tracked::new(&LIVE, 1));
                assert_eq!(V.with(|v| v.map(|v| v.tag)), Some(1));
            });
            settle().await;
            let after_child = LIVE.load(Ordering::SeqCst);
            V.set(Tracked::new(&LIVE, 2));
            assert_eq!(V.with(|v| v.map(|v| v.tag)), Some(2));
            V.set(Tracked::new(&LIVE, 3)); // the read value is replaced: dropped now
            let after_replace = LIVE.load(Ordering::SeqCst);
            assert_eq!(V.with(|v| v.map(|v| v.tag)), Some(3));
            Ok::<_, ()>((after_child, after_replace))
        })
        .await
        .unwrap()
    });
    assert_eq!((after_child, after_replace), (0, 1));
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "the root's last read kept its value"
    );
}

/// Attacks `Context::run` ("Two `run`s of one context in different tasks are allowed: they
/// take turns and share its values"; "Children that `fut` spawns copy this context"): a
/// child spawned inside `ctx.run` is a different task, and runs `ctx.run` itself while its
/// parent's `run` is suspended around the nursery.
#[test]
fn a_child_spawned_inside_a_context_run_may_run_the_same_context() {
    static V: ContextVar<u32> = ContextVar::new("shared");
    let outcome = watchdog(HANG_LIMIT, || {
        let ctx = Context::new();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_virtual(ctx.run(async {
                V.set(1);
                nursery(async |n| {
                    n.spawn(async {
                        assert_eq!(V.get(), Some(1), "a copy of ctx");
                        ctx.run(async { V.set(2) }).await;
                    });
                    Ok::<_, ()>(())
                })
                .await
                .unwrap();
            }))
        }));
        out.map(|()| ctx.get(&V)).map_err(|p| panic_message(&*p))
    });
    assert_eq!(outcome, Ok(Some(2)), "the child's run set ctx's value");
}

/// Attacks `Context::run_sync` `# Panics` with values.rs invariant 2 ("The guard puts back
/// what it replaced when dropped, also on unwind") and 5 (`running` is true exactly while a
/// run is inside): after a re-entrant `run_sync` panics, the caller's context is current
/// again, what the outer run set before the panic stays in `ctx` (PEP 567), and `ctx` can
/// be entered again, synchronously and in a task.
#[test]
fn a_refused_reentrant_run_leaves_both_contexts_usable() {
    static V: ContextVar<u32> = ContextVar::new("reentered");
    let (message, outside, inside, again) = watchdog(HANG_LIMIT, || {
        V.set(1);
        let ctx = Context::new();
        let message = panic_message_of(|| {
            ctx.run_sync(|| {
                V.set(8);
                ctx.run_sync(|| V.set(9));
            })
        });
        let outside = V.get();
        let inside = ctx.run_sync(|| V.get());
        let again = run_virtual(ctx.run(async {
            yield_now().await;
            V.get()
        }));
        (message, outside, inside, again)
    });
    assert!(message.contains("already entered"), "{message}");
    assert_eq!((outside, inside, again), (Some(1), Some(8), Some(8)));
}

/// Attacks `ContextVar::reset` `# Errors` ("when `token` was returned ... by a `set` made in
/// another context (another task, or inside a `Context::run`)") together with "A nursery
/// body runs in its caller's context": a token made before a nursery resets inside its
/// body, one handed to a child is refused there and changes nothing in the child; a token
/// made in one `ctx.run` resets in another `run` of the same context, by another task.
#[test]
fn tokens_reset_where_their_context_is_current_and_nowhere_else() {
    static V: ContextVar<u32> = ContextVar::new("v");
    let (in_child, after, in_ctx) = virtual_test(async || {
        V.set(1);
        let for_body = V.set(2);
        let for_child = V.set(3);
        let ctx = Context::new();
        let token = RefCell::new(None);
        let in_child = nursery(async |n| {
            let child = n.spawn(async move {
                let err = V.reset(for_child).unwrap_err();
                Ok::<_, ()>((err.is_other_context(), V.get()))
            });
            V.reset(for_body).unwrap(); // the body shares the caller's context
            n.spawn(ctx.run(async {
                *token.borrow_mut() = Some(V.set(10));
            }));
            n.spawn(ctx.run(async {
                settle().await;
                V.reset(token.take().unwrap()).unwrap();
            }));
            Ok::<_, ()>(child.await.unwrap())
        })
        .await
        .unwrap();
        (in_child, V.get(), ctx.contains(&V))
    });
    assert_eq!(
        in_child,
        (true, Some(3)),
        "refused, the child's copy unchanged"
    );
    assert_eq!(
        after,
        Some(1),
        "the body's reset restored the value before `for_body`"
    );
    assert!(!in_ctx, "the other run's reset removed the value");
}

/// Attacks `Token` ("a `Weak` keeps its allocation, so the address cannot be reused by
/// another context while the token lives") and `reset`'s `OtherContext` error: tokens of
/// contexts already dropped are refused in fresh contexts, however many are made, and the
/// fresh context is left untouched.
#[test]
fn a_token_of_a_dropped_context_is_refused_by_every_later_context() {
    static V: ContextVar<u32> = ContextVar::new("gone");
    for _ in 0..1000 {
        let ctx = Context::new();
        let token = ctx.run_sync(|| V.set(1));
        drop(ctx);
        let fresh = Context::new();
        let err = fresh.run_sync(|| V.reset(token)).unwrap_err();
        assert!(err.is_other_context());
        assert!(!fresh.contains(&V));
    }
}

/// A value whose destructor reads and sets context variables.
#[derive(Debug)]
struct Reenters(&'static AtomicIsize);

impl Clone for Reenters {
    fn clone(&self) -> Reenters {
        self.0.fetch_add(1, Ordering::SeqCst);
        Reenters(self.0)
    }
}

static NOTE: ContextVar<u32> = ContextVar::new("note");
static REENTERS: ContextVar<Reenters> = ContextVar::new("reenters");

impl Drop for Reenters {
    fn drop(&mut self) {
        let _ = NOTE.get();
        NOTE.set(7);
        let _ = REENTERS.with(|v| v.is_some());
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Attacks values.rs invariant 3 ("No `RefCell` borrow is held while user code runs (... a
/// value's `Clone` or `Drop`) ... User code may therefore read and set context variables
/// from anywhere, including destructors"): values whose destructors read and set variables
/// are dropped by a replacing set, a reset, a child's end, a cancelled child's drop, a
/// `scope`'s end and a dropped `Context`, without a borrow panic, each once.
#[test]
fn values_whose_destructors_use_context_variables_are_dropped_in_every_way() {
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    let make = || {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Reenters(&LIVE)
    };
    watchdog(HANG_LIMIT, move || {
        run_virtual(async move {
            REENTERS.set(make());
            REENTERS.set(make()); // drops the first
            let token = REENTERS.set(make());
            REENTERS.reset(token).unwrap(); // drops the third
            nursery(async |n| {
                n.spawn(async move {
                    REENTERS.set(make()); // dropped with the child's context
                });
                let sleeper = n.spawn(async move {
                    REENTERS.set(make());
                    sleep_forever().await;
                });
                settle().await;
                sleeper.cancel();
                REENTERS
                    .scope(make(), async {
                        yield_now().await;
                    })
                    .await;
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            let ctx = Context::new();
            ctx.run_sync(|| REENTERS.set(make()));
            drop(ctx);
        });
    });
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

/// Attacks ARCHITECTURE.md "One runtime per thread ... Everything the runtime owns is
/// `!Send`" and `ContextVar` ("Declare it in a `static`; every task sees its own value";
/// ids "assigned on first use" with a compare-exchange, var.rs): four threads start their
/// own runtimes at once, each first-using the same static variable and hammering its own
/// lock, semaphore, condition and event; each sees only its own values and exact counts,
/// and nothing leaks into the threads' own contexts.
#[test]
fn runtimes_on_four_threads_keep_their_primitives_and_context_values_apart() {
    static RACED: ContextVar<usize> = ContextVar::new("raced on first use");
    let results = watchdog(HANG_LIMIT, || {
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let inside = Builder::new().autojump().run(async move {
                        RACED.set(t);
                        let lock = Lock::new(0);
                        let semaphore = Semaphore::new(2);
                        let condition = Condition::new(0);
                        let event = Event::new();
                        let wrong = Cell::new(0);
                        nursery(async |n| {
                            for _ in 0..20 {
                                let (lock, semaphore, condition, event, wrong) =
                                    (&lock, &semaphore, &condition, &event, &wrong);
                                n.spawn(async move {
                                    event.wait().await;
                                    let _permit = semaphore.acquire().await;
                                    let mut sum = lock.lock().await;
                                    yield_now().await;
                                    *sum += 1;
                                    drop(sum);
                                    *condition.lock().await += 1;
                                    condition.notify_all();
                                    if RACED.get() != Some(t) {
                                        wrong.set(wrong.get() + 1);
                                    }
                                });
                            }
                            yield_now().await;
                            event.set();
                            let mut done = condition.lock().await;
                            while *done < 20 {
                                done = condition.wait(done).await;
                            }
                            Ok::<_, ()>(())
                        })
                        .await
                        .unwrap();
                        (
                            RACED.get(),
                            *lock.try_lock().unwrap(),
                            semaphore.value(),
                            wrong.get(),
                        )
                    });
                    (inside, RACED.get())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (t, result) in results.into_iter().enumerate() {
        assert_eq!(result, ((Some(t), 20, 2, 0), None), "thread {t}");
    }
}

// ---------------------------------------------------------------------------------------
// finally

/// Attacks `finally` `# Cancellation` ("Dropping the returned future from outside (a hard
/// cancel, as in `futures::select!`) drops `work` and `cleanup` at once: a destructor
/// cannot await") in its three shapes: dropped during the work (the clean-up never starts,
/// both are dropped once), dropped during the clean-up (the work's output and the clean-up
/// are dropped once, the clean-up is not finished), and a whole nursery with a `finally`
/// child dropped from outside.
#[test]
fn a_hard_dropped_finally_drops_work_and_cleanup_once_and_never_resumes_them() {
    use common::DropCounter;
    virtual_test(async || {
        // Dropped during the work.
        let (work, cleanup) = (DropCounter::new(), DropCounter::new());
        let started = Cell::new(false);
        let (work_guard, cleanup_guard) = (work.guard(), cleanup.guard());
        let fut = poll_once(finally(
            async move {
                let _g = work_guard;
                sleep_forever().await;
            },
            async {
                let _g = cleanup_guard;
                started.set(true);
            },
        ))
        .await;
        drop(fut);
        assert_eq!((work.dropped(), cleanup.dropped()), (1, 1));
        assert!(!started.get(), "a destructor cannot run the clean-up");

        // Dropped during the clean-up.
        let (output, cleanup) = (DropCounter::new(), DropCounter::new());
        let cleanup_guard = cleanup.guard();
        let fut = poll_once(finally(async { output.guard() }, async move {
            let g = cleanup_guard;
            sleep(secs(1)).await;
            g.finish();
        }))
        .await;
        assert_eq!(
            output.dropped(),
            0,
            "the work's output waits for the clean-up"
        );
        drop(fut);
        assert_eq!((output.dropped(), cleanup.dropped()), (1, 1));
        assert_eq!(cleanup.finished(), 0);

        // A nursery with a `finally` child, dropped from outside.
        let (work, cleanup) = (DropCounter::new(), DropCounter::new());
        let ran = Cell::new(0);
        let fut = poll_once(nursery(async |n| {
            n.spawn(finally(
                {
                    let g = work.guard();
                    async move {
                        let _g = g;
                        sleep_forever().await;
                    }
                },
                {
                    let g = cleanup.guard();
                    let ran = &ran;
                    async move {
                        let _g = g;
                        ran.set(ran.get() + 1);
                    }
                },
            ));
            sleep_forever().await;
        }))
        .await;
        drop(fut);
        assert_eq!((work.dropped(), cleanup.dropped(), ran.get()), (1, 1, 0));
    });
}

/// Attacks `finally` ("Runs `work`, then `cleanup`, however `work` ends ... A panic in
/// `work` is resumed after `cleanup` has run") and DESIGN.md "No sequence of panics aborts
/// the process": a clean-up that panics after a finished work drops the work's output
/// once and its panic reaches the caller; a clean-up that panics after a panicking work
/// reaches the caller with one panic, without an abort. (The docs do not say which panic
/// wins; as in Python, where an exception raised in `finally:` replaces the one in flight,
/// it is the clean-up's.)
#[test]
fn a_panicking_cleanup_reaches_the_caller_and_drops_the_works_output_once() {
    use common::DropCounter;
    let (after_ok, after_panic, output_drops) = virtual_test(async || {
        let output = DropCounter::new();
        let after_ok = catch_unwind(finally(async { output.guard() }, async {
            yield_now().await;
            panic!("cleanup after ok");
        }))
        .await;
        let Err(after_ok) = after_ok else {
            panic!("the clean-up panicked, so must `finally`")
        };
        let after_ok = panic_message(&*after_ok);
        let after_panic = catch_unwind(finally(
            async {
                yield_now().await;
                panic!("work");
            },
            async {
                panic!("cleanup after panic");
            },
        ))
        .await;
        // The work never returns: only a panic can come out.
        let Err(after_panic) = after_panic;
        let after_panic = panic_message(&*after_panic);
        (after_ok, after_panic, output.dropped())
    });
    assert_eq!(after_ok, "cleanup after ok");
    assert_eq!(after_panic, "cleanup after panic");
    assert_eq!(output_drops, 1);
}

/// Attacks `finally` ("Returns `work`'s output once `cleanup` has run. When an enclosing
/// cancellation cut `work` off, there is no output"): the work finishes, then the outer
/// deadline passes while the (shielded) clean-up runs. The clean-up runs to its end, the
/// work was not cut off, so its output comes back, and it is dropped exactly once.
#[test]
fn a_deadline_passing_during_the_cleanup_of_a_finished_work_loses_and_doubles_nothing() {
    use common::DropCounter;
    let (kept, cleaned, output_drops, elapsed) = virtual_test(async || {
        let output = DropCounter::new();
        let cleaned = Cell::new(0);
        let start = now();
        let out = move_on_after(
            secs(5),
            finally(async { output.guard() }, async {
                sleep(secs(10)).await;
                cleaned.set(cleaned.get() + 1);
            }),
        )
        .await;
        let kept = out.is_some();
        drop(out);
        (kept, cleaned.get(), output.dropped(), now() - start)
    });
    assert_eq!((cleaned, output_drops), (1, 1));
    assert_eq!(elapsed, secs(10), "the clean-up was not cut short");
    assert!(
        kept,
        "the work finished before the deadline: its output is returned"
    );
}

/// Attacks `finally` (clean-up "runs shielded, so a cancellation cannot cut it short") with
/// `cancelled` ("inside a shield it tells that the outside wants to stop"): a clean-up that
/// waits for the outside's cancellation sees it, then still runs to its end; nested
/// `finally`s clean up inner first, each once, and the outer timeout reports `None`.
#[test]
fn cleanups_see_the_outer_cancellation_through_cancelled_and_still_finish_inner_first() {
    let (out, log, elapsed) = virtual_test(async || {
        let log = RefCell::new(Vec::new());
        let start = now();
        let out = move_on_after(
            secs(5),
            finally(
                finally(sleep_forever(), async {
                    cancelled().await;
                    log.borrow_mut()
                        .push(("inner saw the cancel", now() - start));
                    sleep(secs(1)).await;
                    log.borrow_mut().push(("inner done", now() - start));
                }),
                async {
                    sleep(secs(1)).await;
                    log.borrow_mut().push(("outer done", now() - start));
                },
            ),
        )
        .await;
        (out.is_some(), log.into_inner(), now() - start)
    });
    assert!(!out);
    assert_eq!(
        log,
        [
            ("inner saw the cancel", secs(5)),
            ("inner done", secs(6)),
            ("outer done", secs(7))
        ]
    );
    assert_eq!(elapsed, secs(7));
}

// ---------------------------------------------------------------------------------------
// testing: Sequencer and wait_all_tasks_blocked

/// Attacks `Sequencer::block` `# Panics` ("The future panics when `n` was already asked
/// for on this sequencer") while the first asker still waits, and `# Cancellation` ("A
/// block whose wait is cancelled ... breaks the sequence"): the duplicate panics, the
/// panic reaches the caller, and the first waiter, cancelled by that failure, leaves the
/// sequence broken for later blocks.
#[test]
fn a_position_asked_for_twice_while_the_first_waits_panics_and_breaks_the_sequence() {
    let (message, later) = watchdog(HANG_LIMIT, || {
        let seq = Sequencer::new();
        let message = panic_message_of(|| {
            run_virtual(async {
                nursery(async |n| {
                    n.spawn(async {
                        let _ = seq.block(1).await;
                    });
                    settle().await;
                    n.spawn(async {
                        let _ = seq.block(1).await;
                    });
                    Ok::<_, ()>(())
                })
                .await
            })
        });
        let later = run_virtual(async { seq.block(0).await.map(|t| t.number()) });
        (message, later.map_err(|e| e.block()))
    });
    assert!(message.contains("block 1 was asked for twice"), "{message}");
    assert_eq!(later, Err(0));
}

/// Attacks `Sequencer::block` `# Cancellation` ("Dropping it before its first poll does
/// nothing (the number is not claimed)"): unpolled blocks dropped, their numbers are asked
/// for again and run, in order, and the sequence is not broken.
#[test]
fn blocks_dropped_before_their_first_poll_claim_nothing_and_break_nothing() {
    let log = virtual_test(async || {
        let seq = Sequencer::new();
        let log = RefCell::new(Vec::new());
        drop(seq.block(0));
        drop(seq.block(1));
        nursery(async |n| {
            for i in [1, 0] {
                let (seq, log) = (&seq, &log);
                n.spawn(async move {
                    let turn = seq.block(i).await.expect("not broken");
                    log.borrow_mut().push(turn.number());
                });
            }
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        log.into_inner()
    });
    assert_eq!(log, [0, 1]);
}

/// Attacks ARCHITECTURE.md "On the mock clocks, when every task is blocked and nothing can
/// wake the runtime ..., the runtime panics with a deadlock message and the task tree
/// instead of hanging", through a Sequencer script with a gap (block 1 never asked for):
/// block 2 waits forever, and the autojump runtime reports it.
#[test]
fn a_sequencer_script_with_a_gap_is_reported_as_a_deadlock_not_a_hang() {
    let message = watchdog(HANG_LIMIT, || {
        panic_message_of(|| {
            let seq = Sequencer::new();
            run_virtual(async {
                drop(seq.block(0).await.unwrap());
                let _ = seq.block(2).await;
            })
        })
    });
    assert!(message.contains("deadlock"), "{message}");
}

/// Attacks `wait_all_tasks_blocked` ("Waits until every other task of the runtime is
/// blocked ... The future completes there, *before* time jumps"): a lock and a semaphore
/// pass a hand-off along twenty queued tasks each, and a condition's `notify_all` wakes
/// twenty more; the wait ends only when all sixty have run through, with the clock unmoved.
#[test]
fn wait_all_tasks_blocked_waits_for_whole_hand_off_chains_before_time_moves() {
    let counts = virtual_test(async || {
        let lock = Lock::new(0);
        let semaphore = Semaphore::new(0);
        let condition = Condition::new(false);
        let (through_semaphore, through_condition) = (Cell::new(0), Cell::new(0));
        nursery(async |n| {
            let guard = lock.lock().await;
            for _ in 0..20 {
                let (lock, semaphore, condition) = (&lock, &semaphore, &condition);
                let (through_semaphore, through_condition) =
                    (&through_semaphore, &through_condition);
                n.spawn(async move {
                    let mut sum = lock.lock().await;
                    yield_now().await;
                    *sum += 1;
                });
                n.spawn(async move {
                    let _permit = semaphore.acquire().await;
                    yield_now().await;
                    through_semaphore.set(through_semaphore.get() + 1);
                });
                n.spawn(async move {
                    let mut go = condition.lock().await;
                    while !*go {
                        go = condition.wait(go).await;
                    }
                    drop(go);
                    yield_now().await;
                    through_condition.set(through_condition.get() + 1);
                });
            }
            wait_all_tasks_blocked().await;
            assert_eq!(
                (lock.waiting(), semaphore.waiting(), condition.waiting()),
                (20, 20, 20)
            );
            let start = now();
            drop(guard);
            semaphore.release().unwrap();
            *condition.lock().await = true;
            condition.notify_all();
            wait_all_tasks_blocked().await;
            assert_eq!(now(), start, "time did not move");
            Ok::<_, ()>((
                *lock.try_lock().unwrap(),
                through_semaphore.get(),
                through_condition.get(),
                semaphore.value(),
            ))
        })
        .await
        .unwrap()
    });
    assert_eq!(counts, (20, 20, 20, 1));
}

// ---------------------------------------------------------------------------------------
// Runtimes in sequence

/// Attacks sync/mod.rs ("Everything here is `!Send` and belongs to one runtime" — its
/// state lives in the primitive, not in the runtime) and the hand-off rule across runtime
/// boundaries: a guard taken in one runtime and kept past its end hands the lock to a waiter
/// of the next; a runtime that ends in a panic while a task waits on a semaphore leaves the
/// queue empty and the value exact; an event set in the first is set in the last.
#[test]
fn primitives_used_by_runtimes_in_sequence_keep_exact_state_across_them() {
    let (message, contents, value, waiting) = watchdog(HANG_LIMIT, || {
        let lock = Lock::new(Vec::new());
        let semaphore = Semaphore::new(2);
        let event = Event::new();
        let guard = run_virtual(async {
            event.set();
            let _permit = semaphore.acquire().await;
            let mut guard = lock.lock().await;
            guard.push("first runtime");
            guard
        });
        assert!(lock.is_locked());
        assert_eq!(semaphore.value(), 2);

        let message = panic_message_of(|| {
            run_virtual(async {
                let _a = semaphore.acquire().await;
                let _b = semaphore.acquire().await;
                nursery(async |n| {
                    n.spawn(async {
                        let _c = semaphore.acquire().await;
                        unreachable!("no unit is ever free for it");
                    });
                    settle().await;
                    assert_eq!(semaphore.waiting(), 1);
                    panic!("the second runtime fails");
                    #[allow(unreachable_code)]
                    Ok::<_, ()>(())
                })
                .await
            })
        });
        assert_eq!((semaphore.value(), semaphore.waiting()), (2, 0));

        run_virtual(async {
            event.wait().await;
            nursery(async |n| {
                n.spawn(async {
                    lock.lock().await.push("third runtime");
                });
                settle().await;
                assert_eq!(lock.waiting(), 1);
                drop(guard); // from the first runtime, to this one's waiter
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
        });
        assert!(!lock.is_locked());
        (
            message,
            lock.into_inner(),
            semaphore.value(),
            semaphore.waiting(),
        )
    });
    assert_eq!(message, "the second runtime fails");
    assert_eq!(contents, ["first runtime", "third runtime"]);
    assert_eq!((value, waiting), (2, 0));
}
