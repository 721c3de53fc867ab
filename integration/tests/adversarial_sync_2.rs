//! Adversarial programs, second pass, against the promises of the synchronisation
//! primitives, the memory channels, the context variables, `finally` and
//! `testing::{wait_all_tasks_blocked, Sequencer}`.
//!
//! The first pass (`adversarial_sync.rs`, `adversarial_channel.rs`) attacked hand-offs with
//! storms and re-entrant wakers. This one reads the introspection the docs promise
//! (`waiting()`, `is_locked()`, `value()`, `borrowed_tokens()`, `available_tokens()`,
//! `is_set()`, `ChannelStatistics`, the `Debug` output, `Context::iter`) at every instant of
//! a scenario: before a wait, while it is queued, after it was handed what it waited for
//! but before it ran, after a hard drop in that state, and after it completed. Futures are
//! polled by hand with counting wakers where the instant matters (a hard drop from outside
//! is the only way to drop a waiter that was handed something before it ran), and tasks
//! run under several shuffle seeds where the order of a round could matter. Every value is
//! checked exactly.
//!
//! Time is virtual (autojump) everywhere, and every test runs under the watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use common::{
    Rng, catch_unwind, count_polls, ms, panic_message, secs, shuffled_test, virtual_test,
};
use futures::Stream;
use futures::future::FusedFuture;
use futures::stream::FusedStream;
use trellis::testing::{Sequencer, wait_all_tasks_blocked};
use trellis::{
    BorrowerId, CapacityLimiter, ChannelStatistics, Condition, Context, ContextVar, Event,
    LimiterError, Lock, LockGuard, RecvError, Semaphore, SemaphoreError, SendError, TryRecvError,
    TrySendError, channel, finally, move_on_after, now, nursery, sleep, sleep_forever, to_thread,
    yield_now,
};

/// The seeds every shuffled test runs under.
const SEEDS: [u64; 4] = [1, 7, 42, 9001];

/// Counts the wakes of a waker that is not a task's.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker that counts its wakes, and the counter.
fn counter() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    (count, waker)
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `fut` once with `waker` (not the task's).
fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut TaskContext::from_waker(waker))
}

/// Polls a stream once with `waker`.
fn poll_next_with<S: Stream + Unpin>(stream: &mut S, waker: &Waker) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut TaskContext::from_waker(waker))
}

/// A channel's counters as a tuple: (buffered, capacity, open senders, open receivers,
/// waiting senders, waiting receivers).
fn st(s: ChannelStatistics) -> (usize, usize, usize, usize, usize, usize) {
    (
        s.buffered,
        s.capacity,
        s.open_senders,
        s.open_receivers,
        s.waiting_senders,
        s.waiting_receivers,
    )
}

/// A value that records its drop, to tell a value delivered from one dropped.
struct Item {
    id: u32,
    dropped: Rc<RefCell<Vec<u32>>>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.dropped.borrow_mut().push(self.id);
    }
}

// ---------------------------------------------------------------------------------------
// Event

/// Attacks `Event::waiting` ("how many tasks wait"), `Event::set` ("wakes every task
/// waiting for it. Setting it again does nothing"), `Event::wait` ("when the event is
/// already set, the future completes at its first poll") and its `# Cancellation` ("dropping
/// the future takes its entry out of the queue"), at every instant: waits queued one by
/// one, one re-polled (no second entry), one dropped while queued (never woken), one
/// hard-dropped after the set woke it, a second `set`, polls after completion, a wait made
/// after the set. `Debug` shows the same counts.
#[test]
fn an_events_counts_and_wakes_are_exact_through_queued_dropped_and_late_waits() {
    virtual_test(async || {
        let event = Event::new();
        assert_eq!(format!("{event:?}"), "Event { is_set: false, waiting: 0 }");
        let counts: Vec<_> = (0..4).map(|_| counter()).collect();
        let mut waits: Vec<Option<Pin<Box<trellis::EventWait<'_>>>>> =
            (0..4).map(|_| Some(Box::pin(event.wait()))).collect();
        for (i, wait) in waits.iter_mut().enumerate() {
            let wait = wait.as_mut().unwrap();
            assert!(poll_with(wait.as_mut(), &counts[i].1).is_pending());
            assert_eq!(event.waiting(), i + 1);
        }
        // Polled again (with another waker): the same entry, not a second one.
        assert!(poll_with(waits[0].as_mut().unwrap().as_mut(), &counts[0].1).is_pending());
        assert_eq!(event.waiting(), 4);
        assert_eq!(
            format!("{:?}", waits[0].as_ref().unwrap()),
            "EventWait { event: Event { is_set: false, waiting: 4 }, queued: true, done: false }"
        );
        waits[1] = None; // dropped while queued
        assert_eq!(event.waiting(), 3);
        assert_eq!(counts.iter().map(|c| c.0.get()).sum::<usize>(), 0);

        event.set();
        assert!(event.is_set());
        assert_eq!(event.waiting(), 0, "every waiter was notified at once");
        let woken: Vec<usize> = counts.iter().map(|c| c.0.get()).collect();
        assert_eq!(
            woken,
            [1, 0, 1, 1],
            "each queued waiter once, the dropped one never"
        );

        waits[3] = None; // hard-dropped after it was woken, before it ran
        event.set(); // again: nothing
        let woken: Vec<usize> = counts.iter().map(|c| c.0.get()).collect();
        assert_eq!(woken, [1, 0, 1, 1]);
        assert_eq!(event.waiting(), 0);

        for i in [0, 2] {
            let wait = waits[i].as_mut().unwrap();
            assert!(!wait.is_terminated());
            assert!(poll_with(wait.as_mut(), &counts[i].1).is_ready());
            assert!(wait.is_terminated());
            assert!(
                poll_with(wait.as_mut(), &counts[i].1).is_ready(),
                "still ready"
            );
        }
        let mut late = pin!(event.wait());
        assert!(
            poll_with(late.as_mut(), &counts[1].1).is_ready(),
            "set: at the first poll"
        );
        assert_eq!(event.waiting(), 0, "a late wait never queues");
        assert_eq!(format!("{event:?}"), "Event { is_set: true, waiting: 0 }");
        let woken: Vec<usize> = counts.iter().map(|c| c.0.get()).collect();
        assert_eq!(woken, [1, 0, 1, 1], "nobody was woken twice");
    });
}

/// Attacks `Event::set` ("wakes every task waiting for it") and `Event::waiting` across many
/// events: twenty tasks, spawned in reverse, each waits for its event and sets the next
/// one after a millisecond, under four shuffle seeds. The chain runs in event order, one
/// millisecond a link, and while it runs every event not yet reached has exactly its one
/// waiter.
#[test]
fn a_chain_of_twenty_events_runs_in_order_under_every_shuffle() {
    for seed in SEEDS {
        let (log, elapsed, counts) = shuffled_test(seed, async || {
            let events: Vec<Event> = (0..21).map(|_| Event::new()).collect();
            let log = RefCell::new(Vec::new());
            let start = now();
            let mut counts = Vec::new();
            nursery(async |n| {
                for i in (0..20).rev() {
                    let (events, log) = (&events, &log);
                    n.spawn(async move {
                        events[i].wait().await;
                        log.borrow_mut().push(i);
                        sleep(ms(1)).await;
                        events[i + 1].set();
                    });
                }
                wait_all_tasks_blocked().await;
                counts.push(events.iter().map(Event::waiting).collect::<Vec<_>>());
                events[0].set();
                events[20].wait().await;
                counts.push(events.iter().map(Event::waiting).collect::<Vec<_>>());
            })
            .await
            .unwrap();
            assert!(events.iter().all(Event::is_set));
            (log.into_inner(), now() - start, counts)
        });
        assert_eq!(log, (0..20).collect::<Vec<_>>(), "seed {seed}");
        assert_eq!(elapsed, ms(20), "seed {seed}");
        let mut before = vec![1; 20];
        before.push(0);
        assert_eq!(counts, [before, vec![0; 21]], "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// Lock

/// Attacks `Lock::is_locked` ("held, or handed to a waiter that has not run yet"),
/// `Lock::waiting`, `Lock::try_lock` ("`TryLockError` when the lock is held, or has been
/// handed to a waiting task that has not run yet") and `LockAcquire`'s `# Cancellation`
/// ("dropped after the lock was handed to it, it passes the lock on to the next waiter"),
/// at every instant: three queued, the middle one dropped, the release handing to the first
/// (which is woken, the third not), a `try_lock` refused while the first has not run, the
/// first hard-dropped (the third woken, still refused), the third run, its guard dropped.
#[test]
fn a_locks_state_is_exact_through_queue_hand_off_and_a_hard_dropped_handed_waiter() {
    virtual_test(async || {
        let lock = Lock::new(0u32);
        let guard = lock.try_lock().unwrap();
        let counts: Vec<_> = (0..3).map(|_| counter()).collect();
        let mut acquires: Vec<Option<Pin<Box<trellis::LockAcquire<'_, u32>>>>> =
            (0..3).map(|_| Some(Box::pin(lock.lock()))).collect();
        for (i, acquire) in acquires.iter_mut().enumerate() {
            assert!(poll_with(acquire.as_mut().unwrap().as_mut(), &counts[i].1).is_pending());
            assert_eq!(lock.waiting(), i + 1);
        }
        assert_eq!(format!("{lock:?}"), "Lock { locked: true, waiting: 3, .. }");
        acquires[1] = None;
        assert_eq!((lock.is_locked(), lock.waiting()), (true, 2));

        drop(guard);
        assert_eq!(
            (lock.is_locked(), lock.waiting()),
            (true, 1),
            "handed, not freed"
        );
        assert_eq!(
            counts.iter().map(|c| c.0.get()).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        let refused = lock.try_lock().unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("the lock is held, or was handed")
        );
        assert_eq!(
            format!("{:?}", acquires[0].as_ref().unwrap()),
            "LockAcquire { lock: Lock { locked: true, waiting: 1, .. }, queued: true, done: false }"
        );

        acquires[0] = None; // handed the lock, dropped before it ran
        assert_eq!(
            (lock.is_locked(), lock.waiting()),
            (true, 0),
            "passed to the third"
        );
        assert_eq!(
            counts.iter().map(|c| c.0.get()).collect::<Vec<_>>(),
            [1, 0, 1]
        );
        assert!(lock.try_lock().is_err(), "the third has not run yet");

        let third = acquires[2].as_mut().unwrap();
        let Poll::Ready(mut guard) = poll_with(third.as_mut(), &counts[2].1) else {
            panic!("the third was handed the lock");
        };
        assert!(third.is_terminated());
        *guard += 1;
        assert_eq!((lock.is_locked(), lock.waiting()), (true, 0));
        drop(guard);
        assert_eq!((lock.is_locked(), lock.waiting()), (false, 0));
        assert_eq!(*lock.try_lock().unwrap(), 1);
        assert_eq!(
            counts.iter().map(|c| c.0.get()).collect::<Vec<_>>(),
            [1, 0, 1]
        );
    });
}

/// Attacks `LockGuard` ("dropping it releases the lock (to the oldest waiter, if any)")
/// with a guard that leaves its task: the acquirer sends it through a channel to a second
/// task, which holds it five seconds and drops it there; a third task queued meanwhile gets
/// the lock exactly then, and the value carries both writes. Under four shuffle seeds.
#[test]
fn a_guard_sent_to_another_task_and_dropped_there_hands_the_lock_to_the_oldest_waiter() {
    for seed in SEEDS {
        let (log, value) = shuffled_test(seed, async || {
            let lock = Lock::new(Vec::new());
            let (tx, rx) = channel::<LockGuard<'_, Vec<&str>>>(1);
            let log = RefCell::new(Vec::new());
            let start = now();
            nursery(async |n| {
                n.spawn(async {
                    let mut guard = lock.lock().await;
                    guard.push("acquirer");
                    tx.send(guard).await.unwrap();
                    log.borrow_mut().push(("sent", now() - start));
                });
                n.spawn(async {
                    let mut guard = rx.recv().await.unwrap();
                    sleep(secs(5)).await;
                    guard.push("holder");
                    log.borrow_mut().push(("holder drops", now() - start));
                });
                wait_all_tasks_blocked().await;
                assert_eq!((lock.is_locked(), lock.waiting()), (true, 0));
                n.spawn(async {
                    let mut guard = lock.lock().await;
                    guard.push("waiter");
                    log.borrow_mut().push(("waiter", now() - start));
                });
                wait_all_tasks_blocked().await;
                assert_eq!((lock.is_locked(), lock.waiting()), (true, 1));
            })
            .await
            .unwrap();
            assert!(!lock.is_locked());
            drop((tx, rx));
            (log.into_inner(), lock.into_inner())
        });
        assert_eq!(
            log,
            [
                ("sent", Duration::ZERO),
                ("holder drops", secs(5)),
                ("waiter", secs(5))
            ],
            "seed {seed}"
        );
        assert_eq!(value, ["acquirer", "holder", "waiter"], "seed {seed}");
    }
}

/// The primitives whose waiters queue for units, for the FIFO test.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Lock,
    Semaphore,
    Limiter,
    Condition,
}

/// Attacks the shared rule "Waiters are served in FIFO order, and a release hands what it
/// releases to the oldest waiter" with a mix of cancelled and completed waiters: eight
/// tasks queue one by one (each queued before the next is spawned) on a lock, a semaphore,
/// a capacity limiter and a condition; two are cancelled while queued, a third while
/// another holds the unit (on the condition: after the notify moved it into the lock's
/// queue). The rest get the unit in exactly their queue order, a millisecond each, under
/// four shuffle seeds, and the counts are exact before and after.
#[test]
fn fifo_order_is_exact_across_cancelled_and_completed_waiters_of_every_primitive() {
    for kind in [Kind::Lock, Kind::Semaphore, Kind::Limiter, Kind::Condition] {
        for seed in SEEDS {
            let (log, elapsed, counts) = shuffled_test(seed, async move || {
                let lock = Lock::new(());
                let sem = Semaphore::new(0);
                let lim = CapacityLimiter::new(1).unwrap();
                let cond = Condition::new(());
                let waiting = || match kind {
                    Kind::Lock => lock.waiting(),
                    Kind::Semaphore => sem.waiting(),
                    Kind::Limiter => lim.waiting(),
                    Kind::Condition => cond.waiting() + cond.as_lock().waiting(),
                };
                let log = RefCell::new(Vec::new());
                let mut counts = Vec::new();
                let mut start = now();
                nursery(async |n| {
                    let held = match kind {
                        Kind::Lock => Some(lock.try_lock().unwrap()),
                        _ => None,
                    };
                    let token = match kind {
                        Kind::Limiter => Some(lim.try_acquire().unwrap()),
                        _ => None,
                    };
                    let mut handles = Vec::new();
                    for i in 0..8 {
                        let (lock, sem, lim, cond, log) = (&lock, &sem, &lim, &cond, &log);
                        handles.push(n.spawn(async move {
                            match kind {
                                Kind::Lock => {
                                    let _g = lock.lock().await;
                                    log.borrow_mut().push(i);
                                    sleep(ms(1)).await;
                                }
                                Kind::Semaphore => {
                                    let _p = sem.acquire().await;
                                    log.borrow_mut().push(i);
                                    sleep(ms(1)).await;
                                }
                                Kind::Limiter => {
                                    let _t = lim.acquire().await;
                                    log.borrow_mut().push(i);
                                    sleep(ms(1)).await;
                                }
                                Kind::Condition => {
                                    let g = cond.lock().await;
                                    let _g = cond.wait(g).await;
                                    log.borrow_mut().push(i);
                                    sleep(ms(1)).await;
                                }
                            }
                        }));
                        wait_all_tasks_blocked().await;
                    }
                    counts.push(waiting());
                    handles[1].cancel();
                    handles[4].cancel();
                    wait_all_tasks_blocked().await;
                    counts.push(waiting());
                    start = now();
                    match kind {
                        Kind::Lock => drop(held),
                        Kind::Semaphore => sem.release().unwrap(),
                        Kind::Limiter => drop(token),
                        Kind::Condition => cond.notify_all(),
                    }
                    wait_all_tasks_blocked().await;
                    assert_eq!(*log.borrow(), [0], "the oldest got it");
                    counts.push(waiting());
                    handles[6].cancel();
                    wait_all_tasks_blocked().await;
                    counts.push(waiting());
                })
                .await
                .unwrap();
                assert_eq!(waiting(), 0);
                match kind {
                    Kind::Lock => assert!(!lock.is_locked()),
                    Kind::Semaphore => assert_eq!(sem.value(), 1),
                    Kind::Limiter => assert_eq!(lim.borrowed_tokens(), 0),
                    Kind::Condition => assert!(!cond.as_lock().is_locked()),
                }
                (log.into_inner(), now() - start, counts)
            });
            assert_eq!(log, [0, 2, 3, 5, 7], "{kind:?}, seed {seed}");
            assert_eq!(elapsed, ms(5), "{kind:?}, seed {seed}");
            assert_eq!(counts, [8, 6, 5, 4], "{kind:?}, seed {seed}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Semaphore

/// Attacks `Semaphore::with_max_value` and `release` ("an error when the semaphore is
/// bounded and the unit would take it past `max_value`, counting the units its permits
/// still hold ... Nothing changes then"), `value` ("0 while tasks wait"), `waiting`,
/// `try_acquire` ("also while units are being handed to waiters that have not run yet")
/// and the acquire's `# Cancellation`, at every instant, with the `Debug` output: a bound
/// of 2, one permit out, two waiters, a release by hand to the first, a second release
/// refused (the handed unit counts), the first hard-dropped (the second gets the unit),
/// permits dropped, `forget` and a release by hand.
#[test]
fn a_bounded_semaphores_value_and_bound_are_exact_at_every_instant_of_a_hand_off() {
    virtual_test(async || {
        let s = Semaphore::with_max_value(1, 2).unwrap();
        let p1 = s.try_acquire().unwrap();
        assert_eq!(s.value(), 0);
        let (ca, wa) = counter();
        let (cb, wb) = counter();
        let mut a = Some(Box::pin(s.acquire()));
        let mut b = Box::pin(s.acquire());
        assert!(poll_with(a.as_mut().unwrap().as_mut(), &wa).is_pending());
        assert!(poll_with(b.as_mut(), &wb).is_pending());
        assert_eq!(
            format!("{s:?}"),
            "Semaphore { value: 0, max_value: Some(2), waiting: 2 }"
        );

        s.release().unwrap(); // 0 free + 1 held < 2: handed to `a`
        assert_eq!((s.value(), s.waiting(), ca.get(), cb.get()), (0, 1, 1, 0));
        let err = s.release().unwrap_err(); // 0 free + 2 out (p1, a's) = the bound
        assert_eq!(
            err,
            SemaphoreError::ReleasedTooManyTimes { max_value: Some(2) }
        );
        assert_eq!(
            err.to_string(),
            "semaphore released too many times: its value would pass its max_value of 2 \
             (counting the units its permits hold); release only units taken with \
             `SemaphorePermit::forget`, once each"
        );
        assert_eq!(
            (s.value(), s.waiting(), ca.get(), cb.get()),
            (0, 1, 1, 0),
            "no change"
        );
        assert_eq!(s.try_acquire().unwrap_err(), SemaphoreError::WouldBlock);

        a = None; // handed a unit, dropped before it ran
        assert!(a.is_none());
        assert_eq!((s.value(), s.waiting(), ca.get(), cb.get()), (0, 0, 1, 1));
        assert_eq!(s.try_acquire().unwrap_err(), SemaphoreError::WouldBlock);
        let Poll::Ready(pb) = poll_with(b.as_mut(), &wb) else {
            panic!("b was handed the unit");
        };
        assert!(b.is_terminated());
        assert!(s.release().is_err(), "still 2 out");
        drop(p1);
        assert_eq!(s.value(), 1);
        drop(pb);
        assert_eq!(s.value(), 2);
        assert!(s.release().is_err(), "at the bound");
        s.try_acquire().unwrap().forget();
        assert_eq!(s.value(), 1);
        s.release().unwrap();
        assert_eq!(s.value(), 2);
        assert!(s.release().is_err());
        assert_eq!((s.value(), s.waiting()), (2, 0));
    });
}

/// Attacks `Semaphore::release` for an unbounded semaphore ("an error ... for an unbounded
/// semaphore whose value would overflow `usize`. Nothing changes then"): from
/// `usize::MAX - 1` one release succeeds, the next fails; with a permit out the release
/// fails one unit earlier, since the permit's unit comes back when it is dropped (the doc
/// says so; it said only "whose value would overflow").
#[test]
fn an_unbounded_semaphore_refuses_a_release_only_where_its_units_would_overflow() {
    virtual_test(async || {
        let s = Semaphore::new(usize::MAX - 1);
        assert_eq!(s.max_value(), None);
        s.release().unwrap();
        assert_eq!(s.value(), usize::MAX);
        let err = s.release().unwrap_err();
        assert_eq!(
            err,
            SemaphoreError::ReleasedTooManyTimes { max_value: None }
        );
        assert_eq!(
            err.to_string(),
            "semaphore released too many times: its value would overflow `usize`"
        );
        assert_eq!(s.value(), usize::MAX);
        let permit = s.try_acquire().unwrap();
        assert_eq!(s.value(), usize::MAX - 1);
        assert!(
            s.release().is_err(),
            "the permit's unit would overflow on its return"
        );
        assert_eq!(s.value(), usize::MAX - 1);
        drop(permit);
        assert_eq!(s.value(), usize::MAX);
    });
}

// ---------------------------------------------------------------------------------------
// CapacityLimiter

/// Attacks `CapacityLimiter::set_total_tokens` ("More tokens are handed to waiters at once,
/// oldest first; fewer take nothing back"), `borrowed_tokens` ("also those handed to
/// waiters that have not run yet"), `available_tokens` ("or 0 when the total was lowered
/// below what is borrowed"), `is_borrowing` ("one handed to it while it waited counts"),
/// `release_on_behalf_of` on a handed borrower, and the acquire's `# Cancellation`, at
/// every instant: one token out, three waiters (a token, a named borrower, a token), the
/// total raised to 3 (the first two handed, woken, the third not), lowered to 1 (nothing
/// taken back), the first token dropped (the third still waits: 2 out of 1), the handed
/// first waiter hard-dropped, the named one released before it ran (the third gets that
/// token), then everyone runs.
#[test]
fn a_limiters_counts_are_exact_while_its_total_is_raised_and_lowered_under_waiters() {
    virtual_test(async || {
        let lim = CapacityLimiter::new(1).unwrap();
        let t0 = lim.try_acquire().unwrap();
        let named = BorrowerId::new();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let (c3, w3) = counter();
        let mut first = Some(Box::pin(lim.acquire()));
        let mut second = Box::pin(lim.acquire_on_behalf_of(named));
        let mut third = Box::pin(lim.acquire());
        assert!(poll_with(first.as_mut().unwrap().as_mut(), &w1).is_pending());
        assert!(poll_with(second.as_mut(), &w2).is_pending());
        assert!(poll_with(third.as_mut(), &w3).is_pending());
        let counts = |lim: &CapacityLimiter| {
            (
                lim.total_tokens(),
                lim.borrowed_tokens(),
                lim.available_tokens(),
                lim.waiting(),
            )
        };
        assert_eq!(counts(&lim), (1, 1, 0, 3));
        assert!(!lim.is_borrowing(named), "waiting is not borrowing");
        assert_eq!(
            format!("{lim:?}"),
            "CapacityLimiter { total_tokens: 1, borrowed_tokens: 1, waiting: 3 }"
        );

        lim.set_total_tokens(3).unwrap();
        assert_eq!(counts(&lim), (3, 3, 0, 1));
        assert_eq!((c1.get(), c2.get(), c3.get()), (1, 1, 0));
        assert!(lim.is_borrowing(named), "handed, before it ran");

        lim.set_total_tokens(1).unwrap();
        assert_eq!(counts(&lim), (1, 3, 0, 1), "nothing taken back");
        drop(t0);
        assert_eq!(
            counts(&lim),
            (1, 2, 0, 1),
            "2 out of 1: the third still waits"
        );
        assert_eq!(c3.get(), 0);
        first = None; // handed a token, dropped before it ran
        assert!(first.is_none());
        assert_eq!(counts(&lim), (1, 1, 0, 1));
        assert_eq!(c3.get(), 0);
        lim.release_on_behalf_of(named).unwrap(); // before its acquire ran
        assert_eq!(
            counts(&lim),
            (1, 1, 0, 0),
            "released, then handed to the third"
        );
        assert_eq!(c3.get(), 1);
        assert!(!lim.is_borrowing(named));
        assert_eq!(
            lim.release_on_behalf_of(named),
            Err(LimiterError::NotBorrowing)
        );

        assert_eq!(poll_with(second.as_mut(), &w2), Poll::Ready(Ok(())));
        assert!(!lim.is_borrowing(named), "completed holding nothing");
        assert_eq!(counts(&lim), (1, 1, 0, 0));
        let Poll::Ready(token) = poll_with(third.as_mut(), &w3) else {
            panic!("the third was handed a token");
        };
        assert_eq!(counts(&lim), (1, 1, 0, 0));
        assert_eq!(lim.set_total_tokens(0), Err(LimiterError::ZeroTotalTokens));
        assert_eq!(counts(&lim), (1, 1, 0, 0), "nothing changed");
        drop(token);
        assert_eq!(counts(&lim), (1, 0, 1, 0));
        assert_eq!((c1.get(), c2.get(), c3.get()), (1, 1, 1));
    });
}

/// Attacks the borrower identity the limiter documents instead of Trio's per-task one ("the
/// `LimiterToken` *is* the borrower"; "acquiring for an id that holds (or waits for) a
/// token ... is a `LimiterError`"): one task takes two tokens without error (Trio would
/// raise), a third acquire in the same task waits and times out leaving nothing behind;
/// with ids, the same id twice fails at once even with no token free (the check comes
/// before the wait, and before `WouldBlock`), another id waits its turn.
#[test]
fn one_task_may_hold_two_tokens_but_one_borrower_id_only_one() {
    virtual_test(async || {
        let lim = CapacityLimiter::new(2).unwrap();
        let start = now();
        let a = lim.acquire().await;
        let b = lim.acquire().await;
        assert_eq!((lim.borrowed_tokens(), lim.available_tokens()), (2, 0));
        assert!(move_on_after(secs(1), lim.acquire()).await.is_none());
        assert_eq!(now() - start, secs(1));
        assert_eq!(
            (lim.borrowed_tokens(), lim.waiting()),
            (2, 0),
            "the timed-out one left"
        );
        drop(a);

        let me = BorrowerId::new();
        lim.acquire_on_behalf_of(me).await.unwrap();
        assert_eq!((lim.borrowed_tokens(), lim.available_tokens()), (2, 0));
        let again = lim.acquire_on_behalf_of(me).await;
        assert_eq!(again, Err(LimiterError::AlreadyBorrowing));
        assert_eq!(now() - start, secs(1), "refused without waiting");
        assert_eq!(
            LimiterError::AlreadyBorrowing.to_string(),
            "this borrower already holds a token of the capacity limiter, or waits for \
             one; release it first, or borrow on behalf of another `BorrowerId`"
        );
        assert_eq!(
            lim.try_acquire_on_behalf_of(me),
            Err(LimiterError::AlreadyBorrowing)
        );
        let other = BorrowerId::new();
        assert_eq!(
            lim.try_acquire_on_behalf_of(other),
            Err(LimiterError::WouldBlock)
        );
        assert_eq!((lim.borrowed_tokens(), lim.waiting()), (2, 0));
        nursery(async |n| {
            n.spawn(async {
                lim.acquire_on_behalf_of(other).await.unwrap();
                assert_eq!(now() - start, secs(3));
            });
            sleep(secs(2)).await;
            assert_eq!(lim.waiting(), 1);
            drop(b);
        })
        .await
        .unwrap();
        assert!(lim.is_borrowing(me) && lim.is_borrowing(other));
        lim.release_on_behalf_of(me).unwrap();
        lim.release_on_behalf_of(other).unwrap();
        assert_eq!((lim.borrowed_tokens(), lim.available_tokens()), (0, 2));
    });
}

// ---------------------------------------------------------------------------------------
// Condition

/// Attacks `Condition::wait` ("the lock is released at the first poll ... it gets the lock
/// back before `wait` returns"), `notify` ("queues them for the lock"; "With fewer
/// waiters, it wakes them all; with none, it does nothing"), `waiting` ("notified tasks
/// waiting for the lock count in the lock's `Lock::waiting`") and the `Debug` states, at
/// every instant: the notifier holds the lock while it notifies (the waiter is not woken
/// until the guard drops), `notify(5)` with one waiter, `notify(3)` with none, a notified
/// waiter handed the lock and hard-dropped (the lock is freed and the notification, with
/// nobody to pass it to, is gone: a later waiter is not woken by it).
#[test]
fn a_conditions_counts_are_exact_while_the_notifier_holds_the_lock() {
    virtual_test(async || {
        let c = Condition::new(Vec::<u32>::new());
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let (c3, w3) = counter();
        let counts =
            |c: &Condition<Vec<u32>>| (c.waiting(), c.as_lock().waiting(), c.as_lock().is_locked());
        let mut wait1 = Box::pin(c.wait(c.as_lock().try_lock().unwrap()));
        assert!(format!("{wait1:?}").ends_with("state: \"not started\" }"));
        assert_eq!(counts(&c), (0, 0, true), "not polled: still holds the lock");
        assert!(poll_with(wait1.as_mut(), &w1).is_pending());
        assert_eq!(counts(&c), (1, 0, false), "released at the first poll");
        assert!(format!("{wait1:?}").ends_with("state: \"waiting to be notified\" }"));
        let mut wait2 = Some(Box::pin(c.wait(c.as_lock().try_lock().unwrap())));
        assert!(poll_with(wait2.as_mut().unwrap().as_mut(), &w2).is_pending());
        assert_eq!(counts(&c), (2, 0, false));

        let notifier = c.as_lock().try_lock().unwrap();
        c.notify(1);
        assert_eq!(counts(&c), (1, 1, true), "moved into the lock's queue");
        assert_eq!(c1.get(), 0, "not woken while the notifier holds the lock");
        assert!(
            poll_with(wait1.as_mut(), &w1).is_pending(),
            "a spurious poll"
        );
        assert!(format!("{wait1:?}").ends_with("state: \"notified, waiting for the lock\" }"));
        drop(notifier);
        assert_eq!(counts(&c), (1, 0, true), "handed to the notified waiter");
        assert_eq!(c1.get(), 1);
        assert!(c.as_lock().try_lock().is_err());
        let Poll::Ready(mut guard) = poll_with(wait1.as_mut(), &w1) else {
            panic!("wait1 was handed the lock");
        };
        assert!(wait1.is_terminated());
        assert!(format!("{wait1:?}").ends_with("state: \"done\" }"));
        guard.push(1);

        c.notify(5); // one waiter
        assert_eq!(counts(&c), (0, 1, true));
        c.notify(3); // none: nothing
        assert_eq!(counts(&c), (0, 1, true));
        assert_eq!(c2.get(), 0);
        drop(guard);
        assert_eq!(counts(&c), (0, 0, true), "handed to wait2");
        assert_eq!(c2.get(), 1);
        wait2 = None; // handed the lock, hard-dropped before it ran
        assert!(wait2.is_none());
        assert_eq!(
            counts(&c),
            (0, 0, false),
            "freed: nobody waits for the lock"
        );

        let mut wait3 = Box::pin(c.wait(c.as_lock().try_lock().unwrap()));
        assert!(poll_with(wait3.as_mut(), &w3).is_pending());
        assert_eq!(counts(&c), (1, 0, false));
        assert_eq!(
            c3.get(),
            0,
            "the passed-on notification found nobody: not remembered"
        );
        c.notify(1); // the lock is free: handed at once
        assert_eq!(counts(&c), (0, 0, true));
        assert_eq!(c3.get(), 1);
        let Poll::Ready(guard) = poll_with(wait3.as_mut(), &w3) else {
            panic!("wait3 was handed the lock");
        };
        assert_eq!(*guard, [1]);
        drop(guard);
        assert_eq!(counts(&c), (0, 0, false));
        assert_eq!((c1.get(), c2.get(), c3.get()), (1, 1, 1));
    });
}

/// Attacks `ConditionWait`'s `# Cancellation` ("Dropped after it was notified but before it
/// had the lock again, it passes the notification on to the next waiter") in the state
/// after its poll saw the notify (waiting for the lock), and `notify`'s "before any task
/// that asks for the lock after the notify": three waiters, the notifier holding the lock
/// notifies one, a task then queues for the lock, the notified waiter is polled and
/// dropped. The second waiter takes its place ahead of the later locker; the third stays
/// parked; the lock goes second waiter, then the locker.
#[test]
fn a_notified_waiter_dropped_while_it_waits_for_the_lock_passes_its_place_ahead_of_lockers() {
    virtual_test(async || {
        let c = Condition::new(());
        let wakers: Vec<_> = (0..4).map(|_| counter()).collect();
        let mut waits: Vec<Option<Pin<Box<trellis::ConditionWait<'_, ()>>>>> = Vec::new();
        for (i, (_, waker)) in wakers.iter().take(3).enumerate() {
            let mut wait = Box::pin(c.wait(c.as_lock().try_lock().unwrap()));
            assert!(poll_with(wait.as_mut(), waker).is_pending());
            assert_eq!(c.waiting(), i + 1);
            waits.push(Some(wait));
        }
        let notifier = c.as_lock().try_lock().unwrap();
        c.notify(1);
        let mut locker = Box::pin(c.lock());
        assert!(poll_with(locker.as_mut(), &wakers[3].1).is_pending());
        assert_eq!((c.waiting(), c.as_lock().waiting()), (2, 2));
        assert!(poll_with(waits[0].as_mut().unwrap().as_mut(), &wakers[0].1).is_pending());
        waits[0] = None; // notified, waiting for the lock: dropped
        assert_eq!(
            (c.waiting(), c.as_lock().waiting()),
            (1, 2),
            "the second took the notification"
        );
        drop(notifier);
        let woken: Vec<usize> = wakers.iter().map(|(c, _)| c.get()).collect();
        assert_eq!(
            woken,
            [0, 1, 0, 0],
            "the second waiter, ahead of the locker"
        );
        let Poll::Ready(guard) = poll_with(waits[1].as_mut().unwrap().as_mut(), &wakers[1].1)
        else {
            panic!("the second waiter was handed the lock");
        };
        assert!(poll_with(locker.as_mut(), &wakers[3].1).is_pending());
        drop(guard);
        let woken: Vec<usize> = wakers.iter().map(|(c, _)| c.get()).collect();
        assert_eq!(woken, [0, 1, 0, 1]);
        let Poll::Ready(guard) = poll_with(locker.as_mut(), &wakers[3].1) else {
            panic!("the locker was handed the lock");
        };
        drop(guard);
        assert_eq!(
            (c.waiting(), c.as_lock().waiting()),
            (1, 0),
            "the third still parked"
        );
        assert!(!c.as_lock().is_locked());
        c.notify_all();
        let Poll::Ready(guard) = poll_with(waits[2].as_mut().unwrap().as_mut(), &wakers[2].1)
        else {
            panic!("the third waiter was handed the lock");
        };
        drop(guard);
        assert_eq!(
            (c.waiting(), c.as_lock().waiting(), c.as_lock().is_locked()),
            (0, 0, false)
        );
    });
}

/// Attacks `Condition::wait`'s `# Cancellation` ("Dropped after it was notified but before
/// it had the lock again, it passes the notification on to the next waiter, and the lock
/// too if it had been handed to it"): the notified waiter is handed the lock while a task
/// that asked after the notify queues behind it, and is hard-dropped before it ran. The
/// lock goes with the notification to the next condition waiter, not to the later locker,
/// which gets it only after that waiter.
#[test]
fn a_handed_waiter_dropped_passes_the_lock_to_the_next_condition_waiter_not_a_later_locker() {
    virtual_test(async || {
        let c = Condition::new(Vec::new());
        let wakers: Vec<_> = (0..3).map(|_| counter()).collect();
        let mut first = Some(Box::pin(c.wait(c.as_lock().try_lock().unwrap())));
        assert!(poll_with(first.as_mut().unwrap().as_mut(), &wakers[0].1).is_pending());
        let mut second = Box::pin(c.wait(c.as_lock().try_lock().unwrap()));
        assert!(poll_with(second.as_mut(), &wakers[1].1).is_pending());
        let notifier = c.as_lock().try_lock().unwrap();
        c.notify(1);
        let mut locker = Box::pin(c.lock());
        assert!(poll_with(locker.as_mut(), &wakers[2].1).is_pending());
        assert_eq!((c.waiting(), c.as_lock().waiting()), (1, 2));
        drop(notifier);
        assert_eq!(
            (c.waiting(), c.as_lock().waiting()),
            (1, 1),
            "handed to `first`"
        );
        first = None; // handed the lock, dropped before it ran
        assert!(first.is_none());
        let woken: Vec<usize> = wakers.iter().map(|(c, _)| c.get()).collect();
        assert_eq!(woken, [1, 1, 0], "the lock went with the notification");
        assert_eq!(
            (c.waiting(), c.as_lock().waiting(), c.as_lock().is_locked()),
            (0, 1, true)
        );
        let Poll::Ready(mut guard) = poll_with(second.as_mut(), &wakers[1].1) else {
            panic!("`second` was handed the lock");
        };
        guard.push("second");
        assert!(poll_with(locker.as_mut(), &wakers[2].1).is_pending());
        drop(guard);
        let Poll::Ready(mut guard) = poll_with(locker.as_mut(), &wakers[2].1) else {
            panic!("the locker was handed the lock");
        };
        guard.push("locker");
        drop(guard);
        assert_eq!(*c.as_lock().try_lock().unwrap(), ["second", "locker"]);
        assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 0));
    });
}

/// Attacks `Condition::wait` with a guard of another lock ("a guard of another `Lock`
/// works too, but that lock is only queued for when the task runs again, not at the
/// notify"): the notify wakes the waiter without queueing it anywhere (the other lock's
/// `waiting` stays 0 while its holder keeps it, the condition's own lock is untouched);
/// when it runs it queues for its lock behind a task that asked before it ran, and gets
/// it after that task.
#[test]
fn a_wait_on_another_locks_guard_queues_for_that_lock_only_when_it_runs() {
    virtual_test(async || {
        let c = Condition::new(Vec::new());
        let other = Lock::new(Vec::new());
        let (cw, ww) = counter();
        let (cl, wl) = counter();
        let mut wait = Box::pin(c.wait(other.try_lock().unwrap()));
        assert!(poll_with(wait.as_mut(), &ww).is_pending());
        assert_eq!((c.waiting(), other.is_locked()), (1, false));
        let mut holder = other.try_lock().unwrap();
        holder.push("holder");
        c.notify(1);
        assert_eq!(cw.get(), 1, "woken at once");
        assert_eq!(
            (c.waiting(), other.waiting(), c.as_lock().is_locked()),
            (0, 0, false)
        );
        let mut locker = Box::pin(other.lock());
        assert!(poll_with(locker.as_mut(), &wl).is_pending());
        assert!(
            poll_with(wait.as_mut(), &ww).is_pending(),
            "queues behind the locker"
        );
        assert_eq!(other.waiting(), 2);
        drop(holder);
        assert_eq!((cl.get(), cw.get()), (1, 1));
        let Poll::Ready(mut guard) = poll_with(locker.as_mut(), &wl) else {
            panic!("the locker was handed the lock");
        };
        guard.push("locker");
        drop(guard);
        assert_eq!(cw.get(), 2);
        let Poll::Ready(mut guard) = poll_with(wait.as_mut(), &ww) else {
            panic!("the waiter was handed its lock");
        };
        guard.push("waiter");
        drop(guard);
        drop((wait, locker));
        assert_eq!(other.into_inner(), ["holder", "locker", "waiter"]);
    });
}

// ---------------------------------------------------------------------------------------
// Channels

/// Attacks `ChannelStatistics` ("`buffered` ... including values already handed to a
/// waiting receive that has not run yet"; `waiting_senders`, `waiting_receivers`, the open
/// counts) and the rendezvous promises at every instant: a `try_send` with nobody waiting
/// is `Full`; a waiting send is taken by a `try_recv` (delivered though it never runs
/// again); a value handed to a waiting receive is not there for a `try_recv` of a clone,
/// is given back when that receive is hard-dropped and then taken by the clone; a claim
/// passed from one dropped receive to the next one waiting; the last receivers' closes fail
/// the waiting send with `Disconnected`.
#[test]
fn a_rendezvous_channels_statistics_are_exact_at_every_instant() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let rx2 = rx.clone();
        assert_eq!(st(tx.statistics()), (0, 0, 1, 2, 0, 0));
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
        let (cs, ws) = counter();
        let mut s1 = Box::pin(tx.send(1));
        assert!(poll_with(s1.as_mut(), &ws).is_pending());
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 1, 0));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(cs.get(), 1);
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 0, 0));
        drop(s1); // delivered: its drop changes nothing
        assert_eq!(rx2.try_recv(), Err(TryRecvError::Empty));

        let (cr, wr) = counter();
        let mut r1 = Box::pin(rx.recv());
        assert!(poll_with(r1.as_mut(), &wr).is_pending());
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 0, 1));
        tx.try_send(2).unwrap();
        assert_eq!(cr.get(), 1);
        assert_eq!(
            st(rx.statistics()),
            (1, 0, 1, 2, 0, 0),
            "handed: buffered, not waiting"
        );
        assert_eq!(rx2.try_recv(), Err(TryRecvError::Empty), "promised to r1");
        drop(r1);
        assert_eq!(
            st(rx.statistics()),
            (1, 0, 1, 2, 0, 0),
            "given back, still buffered"
        );
        assert_eq!(rx2.try_recv(), Ok(2));
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 0, 0));

        let (c2, w2) = counter();
        let (c3, w3) = counter();
        let mut r2 = Box::pin(rx.recv());
        let mut r3 = Box::pin(rx2.recv());
        assert!(poll_with(r2.as_mut(), &w2).is_pending());
        assert!(poll_with(r3.as_mut(), &w3).is_pending());
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 0, 2));
        tx.try_send(3).unwrap();
        assert_eq!((c2.get(), c3.get()), (1, 0), "the oldest receive");
        assert_eq!(st(rx.statistics()), (1, 0, 1, 2, 0, 1));
        drop(r2);
        assert_eq!((c2.get(), c3.get()), (1, 1), "its claim passed on");
        assert_eq!(st(rx.statistics()), (1, 0, 1, 2, 0, 0));
        let (c4, w4) = counter();
        let mut s2 = Box::pin(tx.send(4));
        assert!(
            poll_with(s2.as_mut(), &w4).is_pending(),
            "no receiver waits"
        );
        assert_eq!(st(rx.statistics()), (1, 0, 1, 2, 1, 0));
        assert_eq!(poll_with(r3.as_mut(), &w3), Poll::Ready(Ok(3)));
        assert_eq!(st(rx.statistics()), (0, 0, 1, 2, 1, 0));
        rx.close();
        assert_eq!(st(rx.statistics()), (0, 0, 1, 1, 1, 0));
        assert_eq!(c4.get(), 0, "another receiver is open");
        rx2.close();
        assert_eq!(st(rx.statistics()), (0, 0, 1, 0, 0, 0));
        assert_eq!(c4.get(), 1);
        match poll_with(s2.as_mut(), &w4) {
            Poll::Ready(Err(SendError::Disconnected(4))) => {}
            other => panic!("expected Disconnected(4), got {other:?}"),
        }
        tx.close();
        assert_eq!(st(tx.statistics()), (0, 0, 0, 0, 0, 0));
    });
}

/// Attacks `Sender::try_send` ("a value cannot take room that a waiting send is owed"),
/// `Receiver::try_recv` ("A value already promised to a waiting receiver ... is not there
/// for `try_recv`"), and the send's `# Cancellation` ("Once the value was taken ... the
/// send is delivered, even if the future is dropped before it is polled again"; "Dropping
/// the future before a receiver took the value drops the value with it") on a channel of
/// capacity 1, with the statistics and the drops of every value checked at each step.
#[test]
fn try_send_and_try_recv_interleaved_with_blocked_sends_and_receives_keep_exact_order() {
    virtual_test(async || {
        let dropped = Rc::new(RefCell::new(Vec::new()));
        let item = |id| Item {
            id,
            dropped: dropped.clone(),
        };
        let (tx, rx) = channel::<Item>(1);
        tx.try_send(item(0)).unwrap();
        assert_eq!(st(tx.statistics()), (1, 1, 1, 1, 0, 0));
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let mut s1 = Some(Box::pin(tx.send(item(1))));
        let mut s2 = Some(Box::pin(tx.send(item(2))));
        assert!(poll_with(s1.as_mut().unwrap().as_mut(), &w1).is_pending());
        assert!(poll_with(s2.as_mut().unwrap().as_mut(), &w2).is_pending());
        assert_eq!(st(tx.statistics()), (1, 1, 1, 1, 2, 0));
        let refused = tx.try_send(item(9)).unwrap_err();
        assert!(matches!(&refused, TrySendError::Full(v) if v.id == 9));
        drop(refused);
        assert_eq!(*dropped.borrow(), [9]);

        assert_eq!(rx.try_recv().map(|v| v.id), Ok(0));
        assert_eq!(
            (c1.get(), c2.get()),
            (1, 0),
            "the first waiting send moved in"
        );
        assert_eq!(st(tx.statistics()), (1, 1, 1, 1, 1, 0));
        assert!(
            tx.try_send(item(10)).is_err(),
            "full again: no room for a newcomer"
        );
        s1 = None; // delivered; dropped before it ran again
        assert!(s1.is_none());
        s2 = None; // still waiting: its value goes with it
        assert!(s2.is_none());
        assert_eq!(*dropped.borrow(), [9, 0, 10, 2]);
        assert_eq!(st(tx.statistics()), (1, 1, 1, 1, 0, 0));
        assert_eq!(
            rx.try_recv().map(|v| v.id),
            Ok(1),
            "the dropped send was delivered"
        );
        assert_eq!(rx.try_recv().map(|v| v.id), Err(TryRecvError::Empty));

        let (c3, w3) = counter();
        let mut r = Box::pin(rx.recv());
        assert!(poll_with(r.as_mut(), &w3).is_pending());
        assert_eq!(st(tx.statistics()), (0, 1, 1, 1, 0, 1));
        tx.try_send(item(4)).unwrap(); // promised to `r`
        assert_eq!(c3.get(), 1);
        tx.try_send(item(5)).unwrap(); // unclaimed room: the claimed one does not count
        assert_eq!(st(tx.statistics()), (2, 1, 1, 1, 0, 0));
        assert!(tx.try_send(item(6)).is_err());
        assert_eq!(rx.try_recv().map(|v| v.id), Ok(5), "4 is promised to `r`");
        assert_eq!(rx.try_recv().map(|v| v.id), Err(TryRecvError::Empty));
        match poll_with(r.as_mut(), &w3) {
            Poll::Ready(Ok(v)) => assert_eq!(v.id, 4),
            _ => panic!("`r` was handed 4"),
        }
        assert_eq!(*dropped.borrow(), [9, 0, 10, 2, 1, 6, 5, 4]);
        assert_eq!(st(tx.statistics()), (0, 1, 1, 1, 0, 0));
    });
}

/// Every permutation of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}

/// How a modelled send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Delivered,
    Closed,
    Disconnected,
}

/// Attacks the closing rules of `channel` ("Closing is per handle ... Its own waiting sends
/// fail with `SendError::Closed` ... other clones go on as before"; "once every receive
/// handle is closed or dropped, the buffered values are dropped and every send fails with
/// `SendError::Disconnected`"; end-of-stream after the buffered values) over all 24 orders
/// of closing two senders and two receivers, with a full buffer and three waiting sends
/// (two on one handle), a `try_recv` on the first open receiver after each close, against
/// a model of those rules: every received value, every send's end, every drop and every
/// statistic after each step match it exactly.
#[test]
fn clones_of_both_ends_closed_in_every_order_give_exactly_the_modelled_results() {
    virtual_test(async || {
        for order in permutations(4) {
            let dropped = Rc::new(RefCell::new(Vec::new()));
            let item = |id| Item {
                id,
                dropped: dropped.clone(),
            };
            let (t0, r0) = channel::<Item>(2);
            let (t1, r1) = (t0.clone(), r0.clone());
            t0.try_send(item(10)).unwrap();
            t1.try_send(item(11)).unwrap();
            let mut sends = [
                Box::pin(t0.send(item(20))),
                Box::pin(t1.send(item(21))),
                Box::pin(t0.send(item(22))),
            ];
            for s in &mut sends {
                assert!(poll_with(s.as_mut(), Waker::noop()).is_pending());
            }
            // The model.
            let mut buffer: VecDeque<u32> = VecDeque::from([10, 11]);
            let mut waiting: VecDeque<(usize, u32)> = VecDeque::from([(0, 20), (1, 21), (0, 22)]);
            let mut ends: [Option<Sent>; 3] = [None, None, None];
            let slot = |value: u32| (value - 20) as usize;
            let mut open_tx = [true, true];
            let mut open_rx = [true, true];
            let mut model_dropped: Vec<u32> = Vec::new();
            let mut received = Vec::new();
            let mut model_received = Vec::new();
            for &step in &order {
                match step {
                    0 | 1 => {
                        [&t0, &t1][step].close();
                        open_tx[step] = false;
                        waiting.retain(|&(tx, v)| {
                            if tx == step {
                                ends[slot(v)] = Some(Sent::Closed);
                            }
                            tx != step
                        });
                    }
                    _ => {
                        [&r0, &r1][step - 2].close();
                        open_rx[step - 2] = false;
                        if !open_rx.contains(&true) {
                            for (_, v) in waiting.drain(..) {
                                ends[slot(v)] = Some(Sent::Disconnected);
                            }
                            model_dropped.extend(buffer.drain(..));
                        }
                    }
                }
                if let Some(r) = open_rx.iter().position(|&open| open) {
                    let got = [&r0, &r1][r].try_recv().map(|v| {
                        let id = v.id;
                        std::mem::forget(v);
                        id
                    });
                    received.push(got);
                    let expected = match buffer.pop_front() {
                        Some(v) => {
                            if let Some((_, next)) = waiting.pop_front() {
                                ends[slot(next)] = Some(Sent::Delivered);
                                buffer.push_back(next);
                            }
                            Ok(v)
                        }
                        None if open_tx.contains(&true) => Err(TryRecvError::Empty),
                        None => Err(TryRecvError::Disconnected),
                    };
                    model_received.push(expected);
                }
                let senders = open_tx.iter().filter(|&&o| o).count();
                let receivers = open_rx.iter().filter(|&&o| o).count();
                assert_eq!(
                    st(t0.statistics()),
                    (buffer.len(), 2, senders, receivers, waiting.len(), 0),
                    "order {order:?}, after closing {step}"
                );
            }
            assert_eq!(received, model_received, "order {order:?}");
            assert_eq!(*dropped.borrow(), model_dropped, "order {order:?}: dropped");
            for (i, s) in sends.iter_mut().enumerate() {
                let end = match poll_with(s.as_mut(), Waker::noop()) {
                    Poll::Ready(Ok(())) => Sent::Delivered,
                    Poll::Ready(Err(SendError::Closed(v))) => {
                        assert_eq!(v.id, 20 + i as u32);
                        std::mem::forget(v);
                        Sent::Closed
                    }
                    Poll::Ready(Err(SendError::Disconnected(v))) => {
                        assert_eq!(v.id, 20 + i as u32);
                        std::mem::forget(v);
                        Sent::Disconnected
                    }
                    Poll::Ready(Err(_)) => panic!("an unknown send error"),
                    Poll::Pending => panic!("order {order:?}: send {i} still waits"),
                };
                assert_eq!(Some(end), ends[i], "order {order:?}: send {i}");
            }
            assert_eq!(r0.try_recv().map(|_| ()), Err(TryRecvError::Closed));
            assert!(matches!(
                t1.try_send(item(99)),
                Err(TrySendError::Closed(_))
            ));
        }
    });
}

/// Attacks the `Stream` impl of `Receiver` ("A `poll_next` that returned `Pending` ...
/// keeps its place in the queue until the next `poll_next`, a `recv` or `try_recv` on this
/// handle (which get a value handed to it in the meantime)"; it "ends ... when this handle
/// is closed"; `FusedStream`) and `waiting_receivers` ("a stream's pending `poll_next`
/// included"): a pending `poll_next` counts as waiting; a value handed to it is not there
/// for a clone's `try_recv` but is for this handle's; closing the handle ends the stream at
/// once and for good, while the clone goes on.
#[test]
fn a_pending_poll_next_is_a_waiting_receiver_until_its_handle_takes_or_closes_it() {
    virtual_test(async || {
        let (tx, mut rx) = channel::<u32>(4);
        let rx2 = rx.clone();
        let (c, w) = counter();
        assert!(poll_next_with(&mut rx, &w).is_pending());
        assert_eq!(st(tx.statistics()), (0, 4, 1, 2, 0, 1));
        assert!(poll_next_with(&mut rx, &w).is_pending(), "the same place");
        assert_eq!(st(tx.statistics()), (0, 4, 1, 2, 0, 1));
        tx.try_send(7).unwrap();
        assert_eq!(c.get(), 1);
        assert_eq!(st(tx.statistics()), (1, 4, 1, 2, 0, 0));
        assert_eq!(
            rx2.try_recv(),
            Err(TryRecvError::Empty),
            "promised to the stream"
        );
        assert_eq!(poll_next_with(&mut rx, &w), Poll::Ready(Some(7)));

        assert!(poll_next_with(&mut rx, &w).is_pending());
        tx.try_send(8).unwrap();
        assert_eq!(c.get(), 2);
        assert_eq!(
            rx.try_recv(),
            Ok(8),
            "this handle takes what its stream was handed"
        );
        assert_eq!(st(tx.statistics()), (0, 4, 1, 2, 0, 0));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        assert!(poll_next_with(&mut rx, &w).is_pending());
        assert_eq!(st(tx.statistics()), (0, 4, 1, 2, 0, 1));
        rx.close();
        assert_eq!(c.get(), 3, "closing wakes the pending stream");
        assert_eq!(st(tx.statistics()), (0, 4, 1, 1, 0, 0));
        assert!(!rx.is_terminated());
        assert_eq!(poll_next_with(&mut rx, &w), Poll::Ready(None));
        assert!(rx.is_terminated());
        assert_eq!(poll_next_with(&mut rx, &w), Poll::Ready(None));
        tx.try_send(9).unwrap();
        assert_eq!(
            poll_next_with(&mut rx, &w),
            Poll::Ready(None),
            "ended for good"
        );
        assert_eq!(rx2.try_recv(), Ok(9));
        drop(tx);
        assert_eq!(rx2.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    });
}

/// Attacks the order of the send errors ("`TrySendError::Closed` when this handle is
/// closed, `TrySendError::Disconnected` when every receiver is gone") when both hold, and
/// the "`usize::MAX` is, in practice, unbounded" capacity: a closed handle on a channel with
/// no receivers reports `Closed` (as Trio, whose closed check comes first), an open clone
/// `Disconnected`; ten thousand values enter an unbounded channel without a wait and come
/// out in order.
#[test]
fn a_closed_handle_reports_closed_before_disconnected_and_an_unbounded_channel_never_waits() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(3);
        let open = tx.clone();
        tx.close();
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
        assert!(matches!(tx.send(2).await, Err(SendError::Closed(2))));
        assert!(matches!(
            open.try_send(3),
            Err(TrySendError::Disconnected(3))
        ));
        assert!(matches!(
            open.send(4).await,
            Err(SendError::Disconnected(4))
        ));
        assert_eq!(st(open.statistics()), (0, 3, 1, 0, 0, 0));

        let (tx, rx) = channel::<u32>(usize::MAX);
        assert_eq!(tx.capacity(), usize::MAX);
        let start = now();
        for i in 0..10_000 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(st(rx.statistics()), (10_000, usize::MAX, 1, 1, 0, 0));
        drop(tx);
        let mut got = Vec::new();
        while let Ok(v) = rx.recv().await {
            got.push(v);
        }
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        assert_eq!(now(), start);
        assert_eq!(rx.recv().await, Err(RecvError::Disconnected));
    });
}

// ---------------------------------------------------------------------------------------
// Context variables

/// Attacks `ContextVar::scope` ("Runs `fut` in a copy of the current context ... The copy
/// is taken now, like a spawn"; "Nothing `fut` sets ... escapes it"): scopes built inline
/// as arguments take their copies before the outer one applies its value (so the inner
/// future does not see it: the doc now says so), nested in an `async` block they see both;
/// a set between the call and the await is not seen; an early `?` return leaks nothing;
/// a token from inside a scope is refused outside, with the documented message.
#[test]
fn scopes_copy_at_the_call_so_inline_nesting_misses_the_outer_value() {
    static A: ContextVar<u32> = ContextVar::new("adv2_scope_a");
    static B: ContextVar<u32> = ContextVar::new("adv2_scope_b");
    virtual_test(async || {
        A.set(0);
        let inline = B.scope(1, A.scope(2, async { (A.get(), B.get()) }));
        assert_eq!(
            inline.await,
            (Some(2), None),
            "the inner copy was taken first"
        );
        let nested = B.scope(1, async { A.scope(2, async { (A.get(), B.get()) }).await });
        assert_eq!(nested.await, (Some(2), Some(1)));

        let early = A.scope(5, async { (A.get(), B.get()) });
        B.set(9);
        assert_eq!(
            early.await,
            (Some(5), None),
            "copied at the call, before B was set"
        );
        assert_eq!((A.get(), B.get()), (Some(0), Some(9)));

        let out: Result<u32, &str> = A
            .scope(7, async {
                B.set(100);
                let token = A.set(8);
                yield_now().await;
                A.reset(token).unwrap();
                assert_eq!((A.get(), B.get()), (Some(7), Some(100)));
                Err("early")?;
                Ok(1)
            })
            .await;
        assert_eq!(out, Err("early"));
        assert_eq!((A.get(), B.get()), (Some(0), Some(9)), "nothing escaped");

        let token = A.scope(3, async { A.set(4) }).await;
        assert_eq!(token.old_value(), Some(&3));
        let err = A.reset(token).unwrap_err();
        assert!(err.is_other_context() && !err.is_other_var());
        assert_eq!(
            err.to_string(),
            "cannot reset context variable `adv2_scope_a`: the token was created in another \
             context; reset it in the task or `Context::run` that called `set`"
        );
        assert_eq!(A.get(), Some(0));
    });
}

/// Attacks `ContextVar::reset` ("Restores the value that the `set` which returned `token`
/// replaced (removing the variable from the context when it had no value)") with tokens
/// used out of order (allowed, as in PEP 567: each restores exactly what its own set
/// replaced), a token of another variable (refused, nothing changed), and `Context::iter`
/// ("in the order the variables were first used in the process"), `len` and `contains` at
/// every step, with a `no_inherit` variable among them.
#[test]
fn tokens_reset_out_of_order_restore_what_each_set_replaced_and_iter_follows_every_step() {
    static P: ContextVar<u32> = ContextVar::new("adv2_p");
    static Q: ContextVar<&'static str> = ContextVar::new("adv2_q");
    static L: ContextVar<u32> = ContextVar::new("adv2_l").no_inherit();
    fn listing(ctx: &Context) -> Vec<(&'static str, bool, String)> {
        ctx.iter()
            .map(|e| {
                let value = match (e.downcast_ref::<u32>(), e.downcast_ref::<&str>()) {
                    (Some(n), _) => n.to_string(),
                    (_, Some(s)) => (*s).to_owned(),
                    _ => String::from("?"),
                };
                (e.name(), e.is_inherited(), value)
            })
            .collect()
    }
    virtual_test(async || {
        let ctx = Context::new();
        ctx.run(async {
            // First uses, in this order: P, Q, L.
            assert_eq!((P.get(), Q.get(), L.get()), (None, None, None));
            let l1 = L.set(1);
            let q1 = Q.set("q");
            let p1 = P.set(1);
            let p2 = P.set(2);
            let p3 = P.set(3);
            let now = Context::current();
            assert_eq!(
                listing(&now),
                [
                    ("adv2_p", true, "3".into()),
                    ("adv2_q", true, "q".into()),
                    ("adv2_l", false, "1".into())
                ]
            );
            P.reset(p1).unwrap(); // the first set's: P had no value
            assert_eq!(P.get(), None);
            assert!(!Context::current().contains(&P));
            assert_eq!(Context::current().len(), 2);
            assert_eq!(listing(&now).len(), 3, "a snapshot keeps its moment");
            P.reset(p3).unwrap(); // the third set had replaced 2
            assert_eq!(P.get(), Some(2));
            P.reset(p2).unwrap(); // the second had replaced 1
            assert_eq!(P.get(), Some(1));
            let err = P.reset(l1).unwrap_err();
            assert!(err.is_other_var());
            assert_eq!(err.var_name(), "adv2_p");
            assert_eq!(
                err.to_string(),
                "cannot reset context variable `adv2_p` with a token from a set of \
                 `adv2_l`: pass the token returned by `adv2_p.set`"
            );
            assert_eq!((P.get(), L.get()), (Some(1), Some(1)), "nothing changed");
            Q.reset(q1).unwrap();
            assert_eq!(
                listing(&Context::current()),
                [("adv2_p", true, "1".into()), ("adv2_l", false, "1".into())]
            );
            Q.set("again");
        })
        .await;
        assert_eq!(
            listing(&ctx),
            [
                ("adv2_p", true, "1".into()),
                ("adv2_q", true, "again".into()),
                ("adv2_l", false, "1".into())
            ],
            "the run's sets stayed in `ctx`, listed in first-use order"
        );
        assert_eq!(ctx.len(), 3);
        assert_eq!(
            (P.get(), Q.get(), L.get()),
            (None, None, None),
            "the caller's is untouched"
        );
    });
}

/// Attacks `ContextVar::set` ("The value stays until set again or reset, for the rest of
/// the task (it is not undone when a block or a cancelled future ends)") through `finally`:
/// the work's set is seen by the cleanup, and both stay in the task after `finally`
/// returns, also when a timeout cut the work off (the cleanup's set, made after the
/// cancellation, stays); in a child, and inside `ContextVar::scope`, nothing reaches the
/// caller.
#[test]
fn a_variable_set_in_a_finally_cleanup_stays_in_the_task_after_success_and_cancellation() {
    static W: ContextVar<u32> = ContextVar::new("adv2_finally_work");
    static C: ContextVar<u32> = ContextVar::new("adv2_finally_cleanup");
    virtual_test(async || {
        let start = now();
        let out = finally(
            async {
                W.set(1);
                sleep(secs(1)).await;
                W.get()
            },
            async {
                C.set(W.get().unwrap() + 10);
            },
        )
        .await;
        assert_eq!(out, Some(1));
        assert_eq!((W.get(), C.get()), (Some(1), Some(11)));

        let cut = move_on_after(
            secs(1),
            finally(
                async {
                    W.set(2);
                    sleep_forever().await;
                },
                async {
                    sleep(secs(1)).await;
                    C.set(W.get().unwrap() + 20);
                },
            ),
        )
        .await;
        assert_eq!(cut, None);
        assert_eq!(now() - start, secs(3));
        assert_eq!((W.get(), C.get()), (Some(2), Some(22)));

        nursery(async |n| {
            n.spawn(async {
                finally(async { W.set(3) }, async { C.set(33) }).await;
                assert_eq!((W.get(), C.get()), (Some(3), Some(33)));
            });
        })
        .await
        .unwrap();
        assert_eq!(
            (W.get(), C.get()),
            (Some(2), Some(22)),
            "the child's stayed in it"
        );

        W.scope(
            4,
            finally(async { C.set(44) }, async {
                assert_eq!((W.get(), C.get()), (Some(4), Some(44)));
                W.set(5);
            }),
        )
        .await;
        assert_eq!(
            (W.get(), C.get()),
            (Some(2), Some(22)),
            "nothing left the scope"
        );
    });
}

/// Attacks `ContextVar::no_inherit` ("children spawned into a nursery start without its
/// value ... Snapshots keep it"), `ContextVar::scope` ("It is `Context::run` on a copy")
/// and `to_thread` ("`f` runs in a copy of the caller's context taken at the call (every
/// variable, `no_inherit` ones too); what `f` sets stays on the thread"): a `no_inherit`
/// value given by a scope is seen inside it, not by a child spawned there; the child's own
/// set reaches its `to_thread` call (taken at the call, not at the first poll); the
/// thread's set comes back to nobody.
#[test]
fn a_no_inherit_value_reaches_scopes_and_threads_but_not_children() {
    static N: ContextVar<u32> = ContextVar::with_default("adv2_local", || 0).no_inherit();
    virtual_test(async || {
        N.set(1);
        let seen = RefCell::new(Vec::new());
        N.scope(2, async {
            seen.borrow_mut().push(("scope", N.get()));
            nursery(async |n| {
                n.spawn(async {
                    seen.borrow_mut().push(("child", N.get()));
                    N.set(3);
                    let call = to_thread(|| {
                        let before = N.get();
                        N.set(4);
                        before
                    });
                    N.set(30); // after the call: not in its copy
                    let in_thread = call.await;
                    seen.borrow_mut().push(("thread", in_thread));
                    seen.borrow_mut().push(("child after", N.get()));
                });
            })
            .await
            .unwrap();
            seen.borrow_mut().push(("scope after", N.get()));
        })
        .await;
        assert_eq!(
            seen.into_inner(),
            [
                ("scope", Some(2)),
                ("child", Some(0)),
                ("thread", Some(3)),
                ("child after", Some(30)),
                ("scope after", Some(2)),
            ]
        );
        assert_eq!(N.get(), Some(1));
    });
}

// ---------------------------------------------------------------------------------------
// testing: Sequencer, wait_all_tasks_blocked

/// Attacks `Sequencer::block` ("waits until blocks `0..n` have finished"; "Block 0 does not
/// wait, but its future still suspends once"; "The future panics when `n` was already asked
/// for") with blocks spawned out of order under four shuffle seeds, each holding its turn
/// across a sleep: they run in number order, each starting when the one before it dropped
/// its turn; block 0's future is polled exactly twice; asking for a finished number panics
/// with the documented message and leaves the sequence usable for the next number.
#[test]
fn sequencer_blocks_spawned_out_of_order_run_in_number_order_and_a_finished_number_panics() {
    for seed in SEEDS {
        let (log, polls, message, next) = shuffled_test(seed, async || {
            let seq = Sequencer::new();
            let log = RefCell::new(Vec::new());
            let polls = Cell::new(0);
            let start = now();
            nursery(async |n| {
                for i in [3, 0, 4, 1, 2] {
                    let (seq, log, polls) = (&seq, &log, &polls);
                    n.spawn(async move {
                        let turn = if i == 0 {
                            count_polls(polls, seq.block(0)).await
                        } else {
                            seq.block(i).await
                        }
                        .unwrap();
                        assert_eq!(turn.number(), i);
                        log.borrow_mut().push((i, now() - start));
                        sleep(ms(i as u64 + 1)).await;
                        drop(turn);
                    });
                }
            })
            .await
            .unwrap();
            let again = catch_unwind(seq.block(2)).await;
            let message = panic_message(&*again.expect_err("block 2 was asked for twice"));
            let next = seq.block(5).await.map(|turn| turn.number());
            (log.into_inner(), polls.get(), message, next)
        });
        assert_eq!(
            log,
            [(0, ms(0)), (1, ms(1)), (2, ms(3)), (3, ms(6)), (4, ms(10))],
            "seed {seed}"
        );
        assert_eq!(polls, 2, "seed {seed}: block 0 suspends once");
        assert_eq!(
            message, "trellis::testing::Sequencer: block 2 was asked for twice",
            "seed {seed}"
        );
        assert_eq!(next, Ok(5), "seed {seed}");
    }
}

/// Attacks `wait_all_tasks_blocked` ("completes once the runtime has nothing runnable ...
/// before a mock clock with autojump jumps") while tasks wait on every primitive: an
/// event, a lock, a semaphore, a capacity limiter, a condition, a rendezvous send and a
/// receive. At the idle point time has not moved and every count shows exactly one waiter;
/// everything is then released in one step (each handed, none run yet: the counts say
/// so), and the next idle point finds every task done, every primitive free, and time
/// still not moved. Under four shuffle seeds.
#[test]
fn wait_all_tasks_blocked_sees_one_waiter_on_each_primitive_then_all_of_them_done() {
    for seed in SEEDS {
        let log = shuffled_test(seed, async || {
            let event = Event::new();
            let lock = Lock::new(());
            let sem = Semaphore::new(0);
            let lim = CapacityLimiter::new(1).unwrap();
            let cond = Condition::new(());
            let (tx, rx) = channel::<u32>(0);
            let (tx2, rx2) = channel::<u32>(0);
            let log = RefCell::new(Vec::new());
            let start = now();
            nursery(async |n| {
                let guard = lock.try_lock().unwrap();
                let token = lim.try_acquire().unwrap();
                let log = &log;
                n.spawn(async {
                    event.wait().await;
                    log.borrow_mut().push("event");
                });
                n.spawn(async {
                    let _g = lock.lock().await;
                    log.borrow_mut().push("lock");
                });
                n.spawn(async {
                    let _p = sem.acquire().await;
                    log.borrow_mut().push("semaphore");
                });
                n.spawn(async {
                    let _t = lim.acquire().await;
                    log.borrow_mut().push("limiter");
                });
                n.spawn(async {
                    let g = cond.lock().await;
                    let _g = cond.wait(g).await;
                    log.borrow_mut().push("condition");
                });
                n.spawn(async {
                    tx.send(1).await.unwrap();
                    log.borrow_mut().push("send");
                });
                n.spawn(async {
                    assert_eq!(rx2.recv().await, Ok(2));
                    log.borrow_mut().push("recv");
                });
                wait_all_tasks_blocked().await;
                assert_eq!(now(), start);
                assert!(log.borrow().is_empty());
                let counts = || {
                    (
                        event.waiting(),
                        lock.waiting(),
                        sem.waiting(),
                        lim.waiting(),
                        cond.waiting() + cond.as_lock().waiting(),
                        tx.statistics().waiting_senders,
                        rx2.statistics().waiting_receivers,
                    )
                };
                assert_eq!(counts(), (1, 1, 1, 1, 1, 1, 1));
                event.set();
                drop(guard);
                sem.release().unwrap();
                drop(token);
                cond.notify(1);
                assert_eq!(rx.try_recv(), Ok(1));
                tx2.try_send(2).unwrap();
                assert_eq!(counts(), (0, 0, 0, 0, 0, 0, 0));
                assert_eq!(
                    (
                        lock.is_locked(),
                        sem.value(),
                        lim.borrowed_tokens(),
                        cond.as_lock().is_locked(),
                        rx2.statistics().buffered
                    ),
                    (true, 0, 1, true, 1),
                    "handed, not yet run"
                );
                wait_all_tasks_blocked().await;
                assert_eq!(now(), start);
                assert_eq!(
                    (
                        lock.is_locked(),
                        sem.value(),
                        lim.borrowed_tokens(),
                        cond.as_lock().is_locked(),
                        rx2.statistics().buffered
                    ),
                    (false, 1, 0, false, 0)
                );
            })
            .await
            .unwrap();
            let mut log = log.into_inner();
            log.sort_unstable();
            log
        });
        assert_eq!(
            log,
            [
                "condition",
                "event",
                "limiter",
                "lock",
                "recv",
                "semaphore",
                "send"
            ],
            "seed {seed}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The invariants, at every scheduling point

/// Attacks the state invariants the docs state (lock.rs: "waiters are queued only while
/// `locked` is true"; semaphore.rs: "waiters are queued only while `value` is 0", "`value`
/// is 0 while tasks wait"; capacity_limiter.rs: "waiters are queued only while
/// `borrowed >= total`"; channel.rs: "if a receive waiter is queued ... no send waiter is queued; if
/// a send waiter is queued, the unclaimed values fill the capacity") and the bounds (one
/// lock holder, three permits, two tokens, tokens held never above `borrowed_tokens`), read
/// through the public counts by every task before and after every await of a storm: twelve
/// tasks, each doing thirty random operations under random timeouts, under eight seeds.
/// At the end everything is free and nothing waits.
#[test]
fn the_documented_invariants_hold_at_every_scheduling_point_of_a_shuffled_storm() {
    for seed in 0..8u64 {
        let checks = shuffled_test(seed, async move || {
            let lock = Lock::new(());
            let sem = Semaphore::new(3);
            let lim = CapacityLimiter::new(2).unwrap();
            let (tx, rx) = channel::<u64>(2);
            let (in_lock, in_sem, in_lim) = (Cell::new(0), Cell::new(0), Cell::new(0));
            let checks = Cell::new(0u64);
            let check = || {
                checks.set(checks.get() + 1);
                assert!(in_lock.get() <= 1);
                assert!(
                    lock.waiting() == 0 || lock.is_locked(),
                    "a lock waiter, lock free"
                );
                assert!(in_lock.get() == 0 || lock.is_locked());
                assert!(in_sem.get() + sem.value() <= 3, "more than 3 permits");
                assert!(
                    sem.waiting() == 0 || sem.value() == 0,
                    "a unit free, waiters"
                );
                assert!(in_lim.get() <= lim.borrowed_tokens());
                assert!(lim.borrowed_tokens() <= 2);
                assert_eq!(lim.available_tokens(), 2 - lim.borrowed_tokens());
                assert!(
                    lim.waiting() == 0 || lim.available_tokens() == 0,
                    "tokens free"
                );
                let s = tx.statistics();
                assert!(
                    s.waiting_receivers == 0 || s.waiting_senders == 0,
                    "both wait"
                );
                assert!(
                    s.waiting_senders == 0 || s.buffered >= 2,
                    "a sender waits, room"
                );
            };
            nursery(async |n| {
                for w in 0..12u64 {
                    let (lock, sem, lim, tx, rx) = (&lock, &sem, &lim, &tx, &rx);
                    let (in_lock, in_sem, in_lim, check) = (&in_lock, &in_sem, &in_lim, &check);
                    n.spawn(async move {
                        let mut rng = Rng::new(seed * 1000 + w);
                        for _ in 0..30 {
                            check();
                            let timeout = ms(rng.below(3));
                            let hold = ms(rng.below(2));
                            match rng.below(5) {
                                0 => {
                                    if let Some(g) = move_on_after(timeout, lock.lock()).await {
                                        in_lock.set(in_lock.get() + 1);
                                        check();
                                        sleep(hold).await;
                                        check();
                                        in_lock.set(in_lock.get() - 1);
                                        drop(g);
                                    }
                                }
                                1 => {
                                    if let Some(p) = move_on_after(timeout, sem.acquire()).await {
                                        in_sem.set(in_sem.get() + 1);
                                        check();
                                        sleep(hold).await;
                                        check();
                                        in_sem.set(in_sem.get() - 1);
                                        drop(p);
                                    }
                                }
                                2 => {
                                    if let Some(t) = move_on_after(timeout, lim.acquire()).await {
                                        in_lim.set(in_lim.get() + 1);
                                        check();
                                        sleep(hold).await;
                                        check();
                                        in_lim.set(in_lim.get() - 1);
                                        drop(t);
                                    }
                                }
                                3 => {
                                    let _ = move_on_after(timeout, tx.send(w)).await;
                                }
                                _ => {
                                    let _ = move_on_after(timeout, rx.recv()).await;
                                }
                            }
                            check();
                            if rng.below(2) == 0 {
                                yield_now().await;
                            }
                        }
                    });
                }
            })
            .await
            .unwrap();
            check();
            assert_eq!((lock.is_locked(), lock.waiting()), (false, 0));
            assert_eq!((sem.value(), sem.waiting()), (3, 0));
            assert_eq!((lim.borrowed_tokens(), lim.waiting()), (0, 0));
            let s = tx.statistics();
            assert_eq!((s.waiting_senders, s.waiting_receivers), (0, 0));
            assert!(s.buffered <= 2);
            checks.get()
        });
        assert!(checks > 12 * 30 * 2, "seed {seed}: {checks} checks");
    }
}

/// Attacks the condition's hand-off (condition.rs: "the successor takes over the dropped
/// waiter's entry in the lock's queue ... its place, and the lock if it had been handed
/// it") and `Lock`'s exclusion under it: ten tasks loop on waits cut off by random timeouts
/// (some with a guard of another lock), lockers and notifiers with random counts, under
/// eight seeds. Nobody ever holds the condition's lock beside another holder, a notified
/// waiter that returns holds it, and at the end nothing waits and both locks are free.
#[test]
fn a_storm_of_cancelled_condition_waits_keeps_the_lock_exclusive_and_loses_nothing() {
    for seed in 0..8u64 {
        let returned = shuffled_test(seed, async move || {
            let c = Condition::new(0u32);
            let other = Lock::new(0u32);
            let inside = Cell::new(0);
            let returned = Cell::new(0u32);
            nursery(async |n| {
                for w in 0..10u64 {
                    let (c, other, inside, returned) = (&c, &other, &inside, &returned);
                    n.spawn(async move {
                        let mut rng = Rng::new(seed * 77 + w);
                        for _ in 0..25 {
                            let timeout = ms(rng.below(4));
                            match rng.below(4) {
                                0 => {
                                    let _ = move_on_after(timeout, async {
                                        let guard = c.wait(c.lock().await).await;
                                        returned.set(returned.get() + 1);
                                        assert_eq!(inside.get(), 0, "two holders");
                                        inside.set(1);
                                        // Cut off at the yield too: leave either way.
                                        let _leave = common::OnDrop(|| inside.set(0));
                                        yield_now().await;
                                        drop(_leave);
                                        drop(guard);
                                    })
                                    .await;
                                }
                                1 => {
                                    let _ = move_on_after(timeout, async {
                                        let mut guard = c.wait(other.lock().await).await;
                                        *guard += 1;
                                    })
                                    .await;
                                }
                                2 => {
                                    let guard = c.lock().await;
                                    assert_eq!(inside.get(), 0, "two holders");
                                    inside.set(1);
                                    c.notify(rng.below(3) as usize);
                                    sleep(ms(rng.below(2))).await;
                                    inside.set(0);
                                    drop(guard);
                                }
                                _ => {
                                    c.notify(rng.below(3) as usize);
                                    sleep(ms(1)).await;
                                }
                            }
                        }
                    });
                }
            })
            .await
            .unwrap();
            assert_eq!((c.waiting(), c.as_lock().waiting()), (0, 0));
            assert!(!c.as_lock().is_locked() && !other.is_locked());
            assert_eq!(other.waiting(), 0);
            returned.get()
        });
        assert!(returned > 0, "seed {seed}: no wait ever returned");
    }
}
