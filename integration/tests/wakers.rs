//! The wakers of nursery units, woken from every thread and at every time: on the owner's
//! thread (the lock-free local list of `scope/unit.rs`), from other threads (the locked
//! remote list), while the nursery is inside its own poll, after the nursery, the runtime
//! or the owning thread are gone, and during thread teardown. A lost wake hangs (hence the
//! watchdogs); a wake that reaches the wrong unit shows as an extra poll.

mod common;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use common::{HANG_LIMIT, watchdog};
use trellis::{nursery, yield_now};

/// A future that hands its waker to `out` at its first poll and completes once `done`
/// says so (re-checked at every poll).
async fn wait_until(done: impl Fn() -> bool, out: impl FnOnce(Waker)) {
    let mut out = Some(out);
    std::future::poll_fn(|cx| {
        if let Some(out) = out.take() {
            out(cx.waker().clone());
        }
        if done() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

#[test]
fn a_child_woken_from_another_thread_while_its_nursery_is_parked_runs() {
    let got = watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let flag = Arc::new(AtomicUsize::new(0));
            let mut worker = None;
            nursery(async |n| {
                let (flag, worker) = (&flag, &mut worker);
                n.spawn(async move {
                    wait_until(
                        || flag.load(Ordering::SeqCst) == 1,
                        |waker| {
                            let flag = flag.clone();
                            *worker = Some(std::thread::spawn(move || {
                                flag.store(1, Ordering::SeqCst);
                                waker.wake();
                            }));
                        },
                    )
                    .await;
                });
            })
            .await
            .unwrap();
            worker.unwrap().join().unwrap();
            flag.load(Ordering::SeqCst)
        })
    });
    assert_eq!(got, 1);
}

/// A thread wakes a child thousands of times while the child's siblings keep the nursery
/// busy (so many wakes land while the nursery is inside its poll, and some while it
/// parks): the child completes only after it has seen the last one, so a lost wake hangs.
#[test]
fn wakes_from_another_thread_during_the_nursery_poll_are_not_lost() {
    const WAKES: usize = 5_000;
    let polls = watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let seen = Arc::new(AtomicUsize::new(0));
            let polls = Cell::new(0usize);
            let stop = Cell::new(false);
            let mut worker = None;
            nursery(async |n| {
                let (seen, polls, stop, worker) = (&seen, &polls, &stop, &mut worker);
                for _ in 0..3 {
                    n.spawn(async move {
                        while !stop.get() {
                            yield_now().await;
                        }
                    });
                }
                // The worker starts waking only once the child's first poll has looked
                // at `seen` (otherwise a fast worker could finish before that look, and
                // the child would be done in one poll).
                let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                n.spawn(async move {
                    wait_until(
                        || {
                            polls.set(polls.get() + 1);
                            let done = seen.load(Ordering::SeqCst) == WAKES;
                            armed.store(true, Ordering::SeqCst);
                            done
                        },
                        |waker| {
                            let (seen, armed) = (seen.clone(), armed.clone());
                            *worker = Some(std::thread::spawn(move || {
                                while !armed.load(Ordering::SeqCst) {
                                    std::thread::yield_now();
                                }
                                for i in 1..=WAKES {
                                    seen.store(i, Ordering::SeqCst);
                                    waker.wake_by_ref();
                                }
                            }));
                        },
                    )
                    .await;
                    stop.set(true);
                });
            })
            .await
            .unwrap();
            worker.unwrap().join().unwrap();
            polls.get()
        })
    });
    assert!(
        polls >= 2,
        "the child was woken and polled again ({polls} polls)"
    );
}

/// Clones of a child's waker outlive the child, the nursery and the runtime; waking and
/// dropping them afterwards, on this thread and another, does nothing.
#[test]
fn a_waker_that_outlives_its_nursery_and_its_runtime_is_harmless() {
    let kept: RefCell<Vec<Waker>> = RefCell::new(Vec::new());
    trellis::run(async {
        nursery(async |n| {
            let kept = &kept;
            n.spawn(async move {
                std::future::poll_fn(|cx| {
                    kept.borrow_mut().push(cx.waker().clone());
                    kept.borrow_mut().push(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
            });
        })
        .await
        .unwrap();
        // The nursery is gone; its queue lives on in the wakers.
        for w in kept.borrow().iter() {
            w.wake_by_ref();
        }
    });
    let mut kept = kept.into_inner();
    let remote = kept.pop().unwrap();
    kept[0].wake_by_ref();
    std::thread::spawn(move || {
        remote.wake_by_ref();
        drop(remote);
    })
    .join()
    .unwrap();
    drop(kept);
    // The thread's next nursery (which may reuse the parts) is unaffected.
    let polls = Cell::new(0);
    trellis::run(nursery(async |n| {
        n.spawn(async {
            polls.set(polls.get() + 1);
            yield_now().await;
            polls.set(polls.get() + 1);
        });
    }))
    .unwrap();
    assert_eq!(polls.get(), 2);
}

/// The thread that owned a queue exits while a waker of it lives on elsewhere: the waker
/// is then woken and dropped (the queue with it) on another thread.
#[test]
fn a_waker_woken_and_dropped_after_its_owning_thread_exited_is_harmless() {
    let waker = std::thread::spawn(|| {
        let mut kept = None;
        trellis::run(nursery(async |n| {
            let kept = &mut kept;
            n.spawn(async move {
                std::future::poll_fn(|cx| {
                    *kept = Some(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
            });
        }))
        .unwrap();
        kept.unwrap()
    })
    .join()
    .unwrap();
    waker.wake_by_ref();
    waker.wake();
}

thread_local! {
    /// Holds a unit's waker until thread teardown, then wakes it from its destructor.
    static WAKE_AT_TEARDOWN: RefCell<Option<WakeOnDrop>> = const { RefCell::new(None) };
}

struct WakeOnDrop(Waker);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake_by_ref();
    }
}

/// A waker woken and dropped by a thread-local destructor, in whatever order the thread's
/// locals are torn down, neither panics nor aborts.
#[test]
fn a_waker_woken_during_thread_teardown_is_harmless() {
    std::thread::spawn(|| {
        trellis::run(nursery(async |n| {
            n.spawn(async {
                std::future::poll_fn(|cx| {
                    let waker = WakeOnDrop(cx.waker().clone());
                    WAKE_AT_TEARDOWN.with(|slot| *slot.borrow_mut() = Some(waker));
                    Poll::Ready(())
                })
                .await;
            });
        }))
        .unwrap();
    })
    .join()
    .expect("the thread ends cleanly");
}

/// A finished child's waker kept by someone keeps its unit from being reused, so a late
/// wake through it never polls the child spawned after it.
#[test]
fn a_stale_wake_never_polls_a_later_child() {
    let stale: RefCell<Option<Waker>> = RefCell::new(None);
    let later: RefCell<Option<Waker>> = RefCell::new(None);
    let later_polls = Cell::new(0);
    let release = Cell::new(false);
    watchdog_free_run(async {
        nursery(async |n| {
            let (stale, later, later_polls, release) = (&stale, &later, &later_polls, &release);
            n.spawn(async move {
                std::future::poll_fn(|cx| {
                    *stale.borrow_mut() = Some(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
            });
            yield_now().await; // the first child has run and finished
            n.spawn(async move {
                std::future::poll_fn(|cx| {
                    later_polls.set(later_polls.get() + 1);
                    if release.get() {
                        Poll::Ready(())
                    } else {
                        *later.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
            });
            yield_now().await; // the later child has suspended
            stale.borrow().as_ref().unwrap().wake_by_ref();
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(later_polls.get(), 1, "a stale wake polled the later child");
            release.set(true);
            later.borrow_mut().take().unwrap().wake();
        })
        .await
        .unwrap();
    });
    assert_eq!(later_polls.get(), 2);
}

/// Runs `fut` on the autojump clock (it cannot hang: a deadlock panics).
fn watchdog_free_run<F: std::future::Future>(fut: F) -> F::Output {
    trellis::Builder::new().autojump().run(fut)
}
