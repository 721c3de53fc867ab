//! Bad input, every public API (issue 16, part 5): each public function of notes/API.md
//! given its worst arguments — zero and `Duration::MAX` durations, instants far in the past
//! and the future, capacity 0, foreign tokens, values from another runtime, calls outside a
//! runtime, re-entrant calls from destructors — must give its documented answer: a value,
//! an error, or a panic whose message names the mistake. Never a hang (every case runs
//! under the watchdog), a lost error or an abort (an abort would end this process: the
//! harness reports it as a crash).
//!
//! One table, one test: every row is run and every wrong answer listed at once.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{HANG_LIMIT, panic_message, watchdog};
use trellis::{
    Builder, CancelScope, CapacityLimiter, Condition, ContextVar, Event, LimiterError, Lock,
    RuntimeHandle, Semaphore, SemaphoreError, channel, fail_after, fail_at, move_on_after,
    move_on_at, nursery, shield, sleep, sleep_until,
};

/// What a row expects.
enum Expect {
    /// The row's function returns normally (it asserts the documented value itself).
    Answer,
    /// A panic whose message contains this text.
    Panic(&'static str),
}

struct Row {
    /// The function and the bad input, as a reader would name them.
    what: &'static str,
    expect: Expect,
    run: fn(),
}

fn autojump<T>(fut: impl std::future::Future<Output = T>) -> T {
    Builder::new().autojump().run(fut)
}

/// A far-away instant that the clock can still represent.
fn far_future() -> Instant {
    trellis::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Blocks on `fut` outside any trellis runtime.
fn outside<T>(fut: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(fut)
}

static VAR_A: ContextVar<u32> = ContextVar::new("bad_input_a");
static VAR_B: ContextVar<u32> = ContextVar::new("bad_input_b");

const ROWS: &[Row] = &[
    // ---- Running ------------------------------------------------------------------------
    Row {
        what: "run inside a runtime",
        expect: Expect::Panic("cannot be nested"),
        run: || trellis::run(async { trellis::run(async {}) }),
    },
    Row {
        what: "Builder::thread_limit(0)",
        expect: Expect::Panic("at least 1"),
        run: || drop(Builder::new().thread_limit(0)),
    },
    Row {
        what: "Builder::shuffle_seed(u64::MAX)",
        expect: Expect::Answer,
        run: || assert_eq!(Builder::new().shuffle_seed(u64::MAX).run(async { 7 }), 7),
    },
    Row {
        what: "run from a destructor inside a runtime (re-entrant)",
        expect: Expect::Panic("cannot be nested"),
        run: || {
            struct RunsOnDrop;
            impl Drop for RunsOnDrop {
                fn drop(&mut self) {
                    trellis::run(async {});
                }
            }
            autojump(async {
                nursery(async |n| {
                    n.spawn(async {
                        let _d = RunsOnDrop;
                        trellis::sleep_forever().await;
                    });
                    n.spawn(async { Err::<(), _>("stop") });
                    Ok(())
                })
                .await
                .ok();
            });
        },
    },
    Row {
        what: "yield_now outside a runtime",
        expect: Expect::Answer,
        run: || outside(trellis::yield_now()),
    },
    // ---- Time ---------------------------------------------------------------------------
    Row {
        what: "now outside a runtime",
        expect: Expect::Panic("needs a trellis runtime"),
        run: || {
            let _ = trellis::now();
        },
    },
    Row {
        what: "sleep outside a runtime",
        expect: Expect::Panic("trellis runtime"),
        run: || outside(sleep(Duration::from_secs(1))),
    },
    Row {
        what: "sleep(Duration::ZERO)",
        expect: Expect::Answer,
        run: || {
            let waited = autojump(async {
                let start = trellis::now();
                sleep(Duration::ZERO).await;
                trellis::now() - start
            });
            assert_eq!(waited, Duration::ZERO);
        },
    },
    Row {
        what: "sleep(Duration::MAX) never ends by itself",
        expect: Expect::Answer,
        run: || {
            let out = autojump(async {
                assert_eq!(sleep(Duration::MAX).deadline(), None);
                move_on_after(Duration::from_secs(1), sleep(Duration::MAX)).await
            });
            assert_eq!(out, None);
        },
    },
    Row {
        what: "sleep_until(an instant far in the past)",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                let start = trellis::now();
                advance_by(Duration::from_secs(3600)).await;
                sleep_until(start).await;
            })
        },
    },
    Row {
        what: "sleep_until(an instant a century ahead)",
        expect: Expect::Answer,
        run: || {
            let out = autojump(async {
                move_on_after(Duration::from_secs(1), sleep_until(far_future())).await
            });
            assert_eq!(out, None);
        },
    },
    Row {
        what: "advance on the real clock",
        expect: Expect::Panic("mock clock"),
        run: || trellis::run(async { trellis::advance(Duration::from_secs(1)) }),
    },
    Row {
        what: "advance outside a runtime",
        expect: Expect::Panic("trellis runtime"),
        run: || trellis::advance(Duration::from_secs(1)),
    },
    Row {
        what: "advance(Duration::MAX) saturates",
        expect: Expect::Answer,
        run: || {
            Builder::new().mock_clock().run(async {
                let start = trellis::now();
                trellis::advance(Duration::MAX);
                assert!(trellis::now() > start);
                trellis::advance(Duration::MAX);
                // Timers armed after it still work (never due).
                assert_eq!(sleep(Duration::from_secs(1)).deadline(), None);
            })
        },
    },
    Row {
        what: "interval(Duration::ZERO)",
        expect: Expect::Panic("period"),
        run: || autojump(async { drop(trellis::interval(Duration::ZERO)) }),
    },
    Row {
        what: "interval(Duration::MAX) ticks once, then never",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                let mut ticks = trellis::interval(Duration::MAX);
                ticks.tick().await;
                assert!(
                    move_on_after(Duration::from_secs(10), ticks.tick())
                        .await
                        .is_none()
                );
            })
        },
    },
    // ---- Cancellation -------------------------------------------------------------------
    Row {
        what: "move_on_after(Duration::ZERO, ..)",
        expect: Expect::Answer,
        run: || {
            let out = autojump(move_on_after(Duration::ZERO, trellis::sleep_forever()));
            assert_eq!(out, None);
        },
    },
    Row {
        what: "move_on_after(Duration::MAX, ..) means never",
        expect: Expect::Answer,
        run: || {
            let out = autojump(move_on_after(Duration::MAX, async { 5 }));
            assert_eq!(out, Some(5));
        },
    },
    Row {
        what: "move_on_at(an instant far in the past)",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                let start = trellis::now();
                advance_by(Duration::from_secs(3600)).await;
                assert_eq!(move_on_at(start, trellis::sleep_forever()).await, None);
            })
        },
    },
    Row {
        what: "fail_after(Duration::ZERO, ..)",
        expect: Expect::Answer,
        run: || {
            let out = autojump(fail_after(Duration::ZERO, trellis::sleep_forever()));
            assert!(out.is_err());
        },
    },
    Row {
        what: "fail_after(Duration::MAX, ..)",
        expect: Expect::Answer,
        run: || {
            assert_eq!(
                autojump(fail_after(Duration::MAX, async { 1 })).ok(),
                Some(1)
            )
        },
    },
    Row {
        what: "fail_at(a century ahead)",
        expect: Expect::Answer,
        run: || {
            let out = autojump(async { fail_at(far_future(), async { 2 }).await });
            assert_eq!(out.ok(), Some(2));
        },
    },
    Row {
        what: "CancelScope::with_timeout(Duration::MAX): no deadline",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                let scope = CancelScope::new().with_timeout(Duration::MAX);
                let probe = scope.clone();
                assert_eq!(scope.run(async { 3 }).await, Some(3));
                assert_eq!(probe.deadline(), None);
            })
        },
    },
    Row {
        what: "CancelScope::set_deadline(far past) while running",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                let start = trellis::now();
                advance_by(Duration::from_secs(10)).await;
                let out = trellis::cancel_scope(async |s| {
                    s.set_deadline(start);
                    trellis::sleep_forever().await
                })
                .await;
                assert_eq!(out, None);
            })
        },
    },
    Row {
        what: "CancelScope run twice",
        expect: Expect::Panic("already run"),
        run: || {
            autojump(async {
                let scope = CancelScope::new();
                scope.clone().run(async {}).await;
                scope.run(async {}).await;
            })
        },
    },
    Row {
        what: "CancelScope: cancel, set_deadline, shield outside a runtime",
        expect: Expect::Answer,
        run: || {
            let scope = CancelScope::new();
            scope.cancel();
            scope.set_shield(true);
            assert!(scope.cancel_called());
            assert!(!scope.cancelled_caught());
        },
    },
    Row {
        what: "CancelScope::run outside a runtime (plain futures: any executor, the guide)",
        expect: Expect::Answer,
        run: || assert_eq!(outside(CancelScope::new().run(async { 1 })), Some(1)),
    },
    Row {
        what: "CancelScope::with_timeout run outside a runtime (trellis's clock)",
        expect: Expect::Panic("trellis runtime"),
        run: || {
            let scope = CancelScope::new().with_timeout(Duration::from_secs(1));
            let _ = outside(scope.run(async { 1 }));
        },
    },
    Row {
        what: "a scope with a deadline from another runtime, run in this one",
        expect: Expect::Answer,
        run: || {
            let scope = autojump(async {
                let s = CancelScope::new();
                s.set_deadline(trellis::now() + Duration::from_secs(5));
                s
            });
            let out = autojump(async { scope.run(sleep(Duration::from_secs(3600))).await });
            // Either the deadline (set against the other runtime's clock) applies here or
            // is dropped; the run must end, and not before this runtime's time moved.
            let _ = out;
        },
    },
    Row {
        what: "RemoteCancel of a finished runtime's scope",
        expect: Expect::Answer,
        run: || {
            let remote = autojump(async { CancelScope::new().remote() });
            remote.cancel();
            assert!(remote.is_cancelled());
        },
    },
    Row {
        what: "shield outside a runtime (any executor)",
        expect: Expect::Answer,
        run: || assert_eq!(outside(shield(async { 4 })), 4),
    },
    Row {
        what: "cancelled() outside any scope stays pending (documented)",
        expect: Expect::Answer,
        run: || {
            use futures::FutureExt as _;
            assert!(trellis::cancelled().now_or_never().is_none());
        },
    },
    Row {
        what: "current_effective_deadline outside a runtime",
        expect: Expect::Answer,
        run: || assert_eq!(trellis::current_effective_deadline(), None),
    },
    // ---- Nurseries ----------------------------------------------------------------------
    Row {
        what: "nursery outside a runtime (any executor)",
        expect: Expect::Answer,
        run: || {
            let ran = Cell::new(false);
            outside(nursery(async |n| {
                n.spawn(async { ran.set(true) });
            }))
            .unwrap();
            assert!(ran.get());
        },
    },
    Row {
        what: "a nursery child sleeping outside a runtime",
        expect: Expect::Panic("trellis runtime"),
        run: || {
            outside(nursery(async |n| {
                n.spawn(sleep(Duration::from_secs(1)));
            }))
            .unwrap();
        },
    },
    Row {
        what: "spawn from a destructor while the nursery drops its children (re-entrant)",
        expect: Expect::Answer,
        run: || {
            let ran = Rc::new(Cell::new(false));
            let dropped = Rc::new(Cell::new(0));
            let out = autojump(async {
                nursery(async |n| {
                    struct SpawnsOnDrop<'a, 's, 'env>(
                        &'a trellis::Nursery<'s, 'env, &'static str>,
                        Rc<Cell<bool>>,
                        Rc<Cell<u32>>,
                    );
                    impl Drop for SpawnsOnDrop<'_, '_, '_> {
                        fn drop(&mut self) {
                            let (ran, dropped) = (self.1.clone(), self.2.clone());
                            struct Count(Rc<Cell<u32>>);
                            impl Drop for Count {
                                fn drop(&mut self) {
                                    self.0.set(self.0.get() + 1);
                                }
                            }
                            let count = Count(dropped);
                            self.0.spawn(async move {
                                let _count = count;
                                ran.set(true);
                                Ok(())
                            });
                        }
                    }
                    n.spawn_with(async |n2| {
                        let _d = SpawnsOnDrop(&n2, ran.clone(), dropped.clone());
                        trellis::sleep_forever().await
                    });
                    n.spawn(async { Err::<(), _>("stop") });
                    Ok(())
                })
                .await
            });
            assert_eq!(out.unwrap_err().into_errors(), ["stop"]);
            assert_eq!(dropped.get(), 1, "the late child is dropped exactly once");
            let _ = ran.get(); // a child spawned into a cancelled nursery may run once
        },
    },
    Row {
        what: "JoinHandle::cancel twice and after the child finished",
        expect: Expect::Answer,
        run: || {
            autojump(async {
                nursery(async |n| {
                    let h = n.spawn(async { Ok::<_, ()>(1) });
                    trellis::yield_now().await;
                    h.cancel();
                    h.cancel();
                    assert_eq!(h.await.ok(), Some(1));
                    Ok::<_, ()>(())
                })
                .await
                .unwrap();
            })
        },
    },
    // ---- Context variables --------------------------------------------------------------
    Row {
        what: "ContextVar::reset with another variable's token",
        expect: Expect::Answer,
        run: || {
            trellis::run(async {
                let token = VAR_A.set(1);
                let err = VAR_B.reset(token).unwrap_err();
                assert!(err.is_other_var(), "{err}");
            })
        },
    },
    Row {
        what: "ContextVar::reset with a token from another context",
        expect: Expect::Answer,
        run: || {
            trellis::run(async {
                let ctx = trellis::Context::new();
                let token = ctx.run_sync(|| VAR_A.set(1));
                let err = VAR_A.reset(token).unwrap_err();
                assert!(err.is_other_context(), "{err}");
            })
        },
    },
    Row {
        what: "ContextVar::set and reset outside a runtime",
        expect: Expect::Answer,
        run: || {
            let token = VAR_A.set(9);
            assert_eq!(VAR_A.get(), Some(9));
            VAR_A.reset(token).unwrap();
            assert_eq!(VAR_A.get(), None);
        },
    },
    // ---- Synchronisation ----------------------------------------------------------------
    Row {
        what: "channel(0) is a rendezvous",
        expect: Expect::Answer,
        run: || {
            let (tx, rx) = channel::<u8>(0);
            assert!(tx.try_send(1).is_err(), "no receiver waiting: full");
            autojump(async {
                nursery(async |n| {
                    n.spawn(async { tx.send(2).await.unwrap() });
                    assert_eq!(rx.recv().await.unwrap(), 2);
                })
                .await
                .unwrap();
            });
        },
    },
    Row {
        what: "channel(usize::MAX) is unbounded",
        expect: Expect::Answer,
        run: || {
            let (tx, rx) = channel::<u32>(usize::MAX);
            for i in 0..10_000 {
                tx.try_send(i).unwrap();
            }
            assert_eq!(rx.try_recv().unwrap(), 0);
        },
    },
    Row {
        what: "send on a closed channel, recv after every sender dropped",
        expect: Expect::Answer,
        run: || {
            let (tx, rx) = channel::<u8>(1);
            drop(rx);
            assert_eq!(tx.try_send(3).unwrap_err().into_inner(), 3);
            let (tx, rx) = channel::<u8>(1);
            drop(tx);
            assert!(rx.try_recv().is_err());
            assert!(autojump(rx.recv()).is_err());
        },
    },
    Row {
        what: "Semaphore::with_max_value(value > max)",
        expect: Expect::Answer,
        run: || {
            assert!(matches!(
                Semaphore::with_max_value(5, 2),
                Err(SemaphoreError::MaxBelowValue { .. })
            ));
        },
    },
    Row {
        what: "Semaphore::release past its max",
        expect: Expect::Answer,
        run: || {
            let s = Semaphore::with_max_value(1, 1).unwrap();
            assert!(matches!(
                s.release(),
                Err(SemaphoreError::ReleasedTooManyTimes { .. })
            ));
        },
    },
    Row {
        what: "Semaphore::new(0): try_acquire would block, acquire waits (then a timeout)",
        expect: Expect::Answer,
        run: || {
            let s = Semaphore::new(0);
            assert!(s.try_acquire().is_err());
            let out = autojump(move_on_after(Duration::from_secs(1), s.acquire()));
            assert!(out.is_none());
        },
    },
    Row {
        what: "CapacityLimiter::new(0)",
        expect: Expect::Answer,
        run: || {
            assert_eq!(
                CapacityLimiter::new(0).err(),
                Some(LimiterError::ZeroTotalTokens)
            )
        },
    },
    Row {
        what: "CapacityLimiter::set_total_tokens(0)",
        expect: Expect::Answer,
        run: || {
            let l = CapacityLimiter::new(1).unwrap();
            let _ = l.set_total_tokens(0);
            assert_eq!(l.total_tokens(), 1, "refused: the total stays");
        },
    },
    Row {
        what: "CapacityLimiter: borrow twice, release without borrowing",
        expect: Expect::Answer,
        run: || {
            let l = CapacityLimiter::new(2).unwrap();
            let id = trellis::BorrowerId::new();
            l.try_acquire_on_behalf_of(id).unwrap();
            assert_eq!(
                l.try_acquire_on_behalf_of(id).err(),
                Some(LimiterError::AlreadyBorrowing)
            );
            let other = trellis::BorrowerId::new();
            assert_eq!(
                l.release_on_behalf_of(other).err(),
                Some(LimiterError::NotBorrowing)
            );
        },
    },
    Row {
        what: "Lock::try_lock while held",
        expect: Expect::Answer,
        run: || {
            let lock = Lock::new(1);
            let g = lock.try_lock().unwrap();
            assert!(lock.try_lock().is_err());
            drop(g);
            assert!(lock.try_lock().is_ok());
        },
    },
    Row {
        what: "Condition::notify(0) and notify_all with no waiter",
        expect: Expect::Answer,
        run: || {
            let c = Condition::new(());
            c.notify(0);
            c.notify_all();
            c.notify(usize::MAX);
            assert_eq!(c.waiting(), 0);
        },
    },
    Row {
        what: "Event::set twice, wait on a set event outside a runtime",
        expect: Expect::Answer,
        run: || {
            let e = Event::new();
            e.set();
            e.set();
            outside(e.wait());
        },
    },
    Row {
        what: "Sequencer block asked for twice",
        expect: Expect::Panic("asked for twice"),
        run: || {
            autojump(async {
                let seq = trellis::testing::Sequencer::new();
                let _a = seq.block(0).await.unwrap();
                let _ = seq.block(0).await;
            })
        },
    },
    Row {
        what: "Lock::lock while holding it (not re-entrant): a deadlock, reported",
        expect: Expect::Panic("deadlock"),
        run: || {
            autojump(async {
                let lock = Lock::new(());
                let _held = lock.lock().await;
                let _again = lock.lock().await;
            })
        },
    },
    Row {
        what: "wait_all_tasks_blocked outside a runtime",
        expect: Expect::Panic("trellis runtime"),
        run: || outside(trellis::testing::wait_all_tasks_blocked()),
    },
    Row {
        what: "a Sleep made in another runtime, awaited in this one",
        expect: Expect::Answer,
        run: || {
            #[allow(clippy::async_yields_async, reason = "the Sleep itself is taken out")]
            let stale = autojump(async { sleep(Duration::from_secs(2)) });
            autojump(async {
                // Its timer key belongs to the other runtime: it must not corrupt this
                // one's queue; it ends, or a timeout ends it.
                let _ = move_on_after(Duration::from_secs(10), stale).await;
                sleep(Duration::from_secs(1)).await;
            });
        },
    },
    Row {
        what: "UdpSocket send and recv with empty buffers",
        expect: Expect::Answer,
        run: || {
            trellis::run(async {
                let a = trellis::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let b = trellis::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                a.send_to(&[], b.local_addr().unwrap()).await.unwrap();
                let (n, from) = b.recv_from(&mut []).await.unwrap();
                assert_eq!((n, from), (0, a.local_addr().unwrap()));
            })
        },
    },
    // ---- Threads ------------------------------------------------------------------------
    Row {
        what: "to_thread outside a runtime",
        expect: Expect::Panic("trellis runtime"),
        run: || {
            let _ = outside(trellis::to_thread(|| 1));
        },
    },
    Row {
        what: "RuntimeHandle::current outside a runtime",
        expect: Expect::Panic("runtime"),
        run: || drop(RuntimeHandle::current()),
    },
    Row {
        what: "RuntimeHandle::run_sync on the runtime's own thread",
        expect: Expect::Answer,
        run: || {
            trellis::run(async {
                let err = RuntimeHandle::current().run_sync(|| 1).unwrap_err();
                assert!(err.is_on_runtime_thread(), "{err}");
            })
        },
    },
    Row {
        what: "RuntimeHandle of a finished runtime",
        expect: Expect::Answer,
        run: || {
            let handle = trellis::run(async { RuntimeHandle::current() });
            assert!(handle.is_finished());
            let err = handle.run_sync(|| 1).unwrap_err();
            assert!(err.is_runtime_gone(), "{err}");
            let err = handle.run(|| async { 1 }).unwrap_err();
            assert!(err.is_runtime_gone(), "{err}");
        },
    },
    // ---- Signals ------------------------------------------------------------------------
    Row {
        what: "open_signal_receiver: none, SIGKILL, 0, 65, outside a runtime",
        expect: Expect::Answer,
        run: || {
            use std::io::ErrorKind::InvalidInput;
            trellis::run(async {
                for bad in [
                    vec![],
                    vec![trellis::signals::SIGKILL],
                    vec![0],
                    vec![65],
                    vec![-1],
                ] {
                    let err = trellis::open_signal_receiver(bad.clone()).unwrap_err();
                    assert_eq!(err.kind(), InvalidInput, "{bad:?}: {err}");
                }
            });
            assert!(trellis::open_signal_receiver([trellis::signals::SIGUSR2]).is_err());
        },
    },
    // ---- Networking ---------------------------------------------------------------------
    Row {
        what: "TcpListener::bind outside a runtime",
        expect: Expect::Answer,
        run: || {
            let err = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap_err();
            assert!(err.to_string().contains("runtime"), "{err}");
        },
    },
    Row {
        what: "a listener from another runtime",
        expect: Expect::Answer,
        run: || {
            let listener =
                trellis::run(async { trellis::net::TcpListener::bind("127.0.0.1:0").unwrap() });
            let out =
                autojump(async { move_on_after(Duration::from_secs(1), listener.accept()).await });
            match out {
                Some(Err(e)) => assert!(e.to_string().contains("runtime"), "{e}"),
                other => panic!(
                    "a foreign listener accepted: {:?}",
                    other.map(|r| r.is_ok())
                ),
            }
        },
    },
    Row {
        what: "connect_happy_eyeballs with no address",
        expect: Expect::Answer,
        run: || {
            let err = trellis::run(trellis::net::connect_happy_eyeballs(
                Vec::<std::net::SocketAddr>::new(),
                Duration::ZERO,
            ))
            .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        },
    },
    Row {
        what: "open_tcp_stream_with_delay(Duration::MAX) to a closed loopback port",
        expect: Expect::Answer,
        run: || {
            // A port nobody listens on: bind one, take its number, close it.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let err = trellis::run(trellis::net::open_tcp_stream_with_delay(
                "127.0.0.1",
                port,
                Duration::MAX,
            ))
            .unwrap_err();
            assert!(!err.to_string().is_empty());
        },
    },
];

/// Lets time pass on the mock clock.
async fn advance_by(d: Duration) {
    sleep(d).await;
}

#[test]
fn every_public_function_answers_bad_input() {
    let mut wrong = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let run = row.run;
        let outcome = std::panic::catch_unwind(|| watchdog(HANG_LIMIT, run));
        let verdict = match (&row.expect, outcome) {
            (Expect::Answer, Ok(())) => None,
            (Expect::Answer, Err(p)) => Some(format!("panicked: {}", panic_message(&*p))),
            (Expect::Panic(_), Ok(())) => Some("returned instead of panicking".to_owned()),
            (Expect::Panic(text), Err(p)) => {
                let msg = panic_message(&*p);
                (!msg.contains(text)).then(|| format!("panicked with {msg:?}, not naming {text:?}"))
            }
        };
        if let Some(v) = verdict {
            wrong.push(format!("row {i}, {}: {v}", row.what));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
