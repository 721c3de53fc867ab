//! How a runtime waits when nothing is runnable: in `std::thread::park_timeout` until it
//! has an I/O source, then in the poller. A wake from another thread that races with the
//! runtime going to sleep ("about to park" against "woken") is never lost, in either way
//! of waiting. A lost wake leaves the runtime parked forever on the real clock (no timer
//! is armed), so every test runs under the watchdog.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use common::{HANG_LIMIT, watchdog};

/// Wake-ups per test: enough to hit the window between the executor's last look at its
/// flags and its park many times over (seen: with the executor's re-check removed, these
/// tests hang). Miri, valgrind and the sanitizers (`common::hang_scale`), 20-100× slower,
/// run fewer.
fn rounds() -> usize {
    if cfg!(miri) {
        40
    } else if common::hang_scale() > 1 {
        2_000
    } else {
        30_000
    }
}

/// Where the root leaves its waker for the waking thread, which spins on it (a blocking
/// channel would wake that thread through the kernel, microseconds late, long after the
/// runtime has parked: the race window is a few instructions wide).
#[derive(Default)]
struct Slot {
    waker: std::sync::Mutex<Option<Waker>>,
    /// A waker is in the slot: the waking thread spins on this, not on the lock, so that
    /// the root's unlock never has a sleeper to wake (a system call, which would delay the
    /// root past the window).
    full: AtomicBool,
    done: AtomicBool,
}

/// A thread that wakes every waker left in the slot, after a delay that varies from none
/// to sixty spins, so that the wakes land before, during and after the park.
fn waking_thread() -> (Arc<Slot>, std::thread::JoinHandle<usize>) {
    let slot = Arc::new(Slot::default());
    let shared = slot.clone();
    let thread = std::thread::spawn(move || {
        let mut woken = 0;
        loop {
            let waker = if shared.full.swap(false, Ordering::SeqCst) {
                shared.waker.lock().unwrap().take()
            } else {
                None
            };
            match waker {
                Some(waker) => {
                    let spins = if cfg!(miri) {
                        woken % 7
                    } else {
                        (woken * 7919) % 61
                    };
                    for _ in 0..spins {
                        std::hint::spin_loop();
                    }
                    waker.wake();
                    woken += 1;
                }
                None if shared.done.load(Ordering::SeqCst) => return woken,
                None if cfg!(miri) => std::thread::yield_now(),
                None => std::hint::spin_loop(),
            }
        }
    });
    (slot, thread)
}

/// Suspends the root `rounds()` times, each time leaving its waker in `slot` first, so that
/// only the other thread can wake it.
async fn suspend_and_get_woken_from_afar(slot: &Slot) {
    for _ in 0..rounds() {
        let mut sent = false;
        std::future::poll_fn(|cx| {
            if sent {
                return Poll::Ready(());
            }
            sent = true;
            *slot.waker.lock().unwrap() = Some(cx.waker().clone());
            slot.full.store(true, Ordering::SeqCst);
            Poll::Pending
        })
        .await;
    }
}

#[test]
fn a_wake_from_another_thread_reaches_a_runtime_parked_without_a_poller() {
    watchdog(HANG_LIMIT, || {
        let (tx, thread) = waking_thread();
        trellis::run(suspend_and_get_woken_from_afar(&tx));
        tx.done.store(true, Ordering::SeqCst);
        assert_eq!(thread.join().unwrap(), rounds());
    });
}

/// The same race once the runtime has a poller (a socket made it): the wake interrupts
/// `epoll_wait` with `Poller::notify`.
#[test]
#[cfg_attr(miri, ignore = "Miri has no sockets")]
fn a_wake_from_another_thread_reaches_a_runtime_parked_in_its_poller() {
    watchdog(HANG_LIMIT, || {
        let (tx, thread) = waking_thread();
        trellis::run(async {
            let _socket = trellis::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            suspend_and_get_woken_from_afar(&tx).await;
        });
        tx.done.store(true, Ordering::SeqCst);
        assert_eq!(thread.join().unwrap(), rounds());
    });
}

/// A runtime that registered a socket and then dropped it keeps its poller, and goes on
/// waiting in it (not in `park`), without losing a wake either.
#[test]
#[cfg_attr(miri, ignore = "Miri has no sockets")]
fn a_runtime_whose_last_socket_is_gone_still_gets_woken_from_afar() {
    watchdog(HANG_LIMIT, || {
        let (tx, thread) = waking_thread();
        trellis::run(async {
            drop(trellis::net::UdpSocket::bind("127.0.0.1:0").unwrap());
            suspend_and_get_woken_from_afar(&tx).await;
        });
        tx.done.store(true, Ordering::SeqCst);
        assert_eq!(thread.join().unwrap(), rounds());
    });
}

/// `to_thread` results and `from_thread` work wake a runtime parked without a poller:
/// the worker's wake unparks it, and so does a job sent through a `RuntimeHandle`.
#[test]
fn thread_work_and_from_thread_calls_reach_a_runtime_parked_without_a_poller() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let rounds = if cfg!(miri) { 5 } else { 200 };
            for i in 0..rounds {
                assert_eq!(trellis::to_thread(move || i * 2).await, i * 2);
            }
            let handle = trellis::RuntimeHandle::current();
            let doubled = trellis::to_thread(move || {
                (0..rounds)
                    .map(|i| handle.run_sync(move || i * 2).unwrap())
                    .sum::<usize>()
            })
            .await;
            assert_eq!(doubled, rounds * (rounds - 1));
        });
    });
}
