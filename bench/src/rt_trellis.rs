//! The workloads on trellis: `trellis::run` drives the root future; a nursery is
//! `trellis::nursery(async |n| ..)`; a child whose value nobody awaits is
//! `n.start_soon(fut)` (Trio's name; no `JoinHandle`), one that is awaited `n.spawn(fut)`;
//! a timeout is `move_on_after`, a cancellation `n.cancel()`.
//!
//! Context variables: a `static` `trellis::ContextVar<u64>`, as a user declares one.
//!
//! The per-request workloads run their loop inside a nursery child (as a trellis server
//! runs a connection's code) or, in their `_root` twins, in the root future.
//!
//! Two columns run this module (issue 15): `trellis`, every runtime built with
//! `Builder::new()` (what `trellis::run` does), and `trellis+noop`, every runtime built
//! with `Builder::new().instrument(Noop)`, where [`Noop`] overrides no hook: what an
//! instrument that does nothing costs. Every runtime of a workload is built by
//! `block_on`, which reads the column.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::time::Duration;

use trellis::instrument::Instrument;
use trellis::{nursery, yield_now};

use crate::measure::{Delta, Probe, Report, rss_bytes};
use crate::util::{self, DropCount, Idle, Lateness, WakeState};
use crate::workload::{self as wl, Placement, Workload};

/// Which trellis column runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `trellis`: no instrument registered.
    Plain,
    /// `trellis+noop`: one [`Noop`] instrument registered on every runtime.
    Noop,
}

/// An instrument that overrides no hook: every event reaches it and does nothing.
#[derive(Debug)]
pub struct Noop;

impl Instrument for Noop {}

thread_local! {
    /// The column of the workload running on this thread (set by [`run`]).
    static COLUMN: Cell<Column> = const { Cell::new(Column::Plain) };
}

/// Runs `fut` on a new trellis runtime built for the current column: `Builder::new()`
/// (exactly `trellis::run`) or `Builder::new().instrument(Noop)`.
fn block_on<F: Future>(fut: F) -> F::Output {
    let builder = trellis::Builder::new();
    match COLUMN.with(Cell::get) {
        Column::Plain => builder.run(fut),
        Column::Noop => builder.instrument(Noop).run(fut),
    }
}

/// Runs `body` where `p` says: inside a child (with a handle) of a nursery in the root
/// future, or as the root future itself.
fn placed<T>(p: Placement, body: impl Future<Output = T>) -> T {
    match p {
        Placement::Task => block_on(async {
            nursery(async move |nu| {
                let child = nu.spawn(async { Ok::<_, Infallible>(body.await) });
                Ok::<_, Infallible>(child.await.expect("child"))
            })
            .await
            .expect("nursery")
        }),
        Placement::Root => block_on(body),
    }
}

/// The placement of a per-request workload.
fn placement(w: Workload) -> Placement {
    w.placement().expect("a per-request workload")
}

/// The context variable of the `contextvar_*` workloads.
static VAR: trellis::ContextVar<u64> = trellis::ContextVar::new("bench");

/// Runs `w` at size `n` in `column` (see [`crate::workload::run`]); `None` while the API
/// it needs is not there.
pub fn run(w: Workload, n: usize, column: Column) -> Option<Report> {
    let before = COLUMN.with(|c| c.replace(column));
    let report = run_column(w, n);
    COLUMN.with(|c| c.set(before));
    Some(report)
}

/// Runs `w` at size `n` in the current column.
fn run_column(w: Workload, n: usize) -> Report {
    match w.base() {
        Workload::SpawnAll => block_on(async {
            let p = Probe::start();
            nursery(async |nu| {
                for _ in 0..n {
                    nu.start_soon(async {});
                }
            })
            .await
            .expect("nursery");
            wl::standard(w, &p.stop(), n)
        }),
        Workload::SpawnAllHandles => block_on(async {
            let p = Probe::start();
            nursery(async |nu| {
                let handles: Vec<_> = (0..n).map(|_| nu.spawn(async {})).collect();
                for h in handles {
                    h.await.expect("child");
                }
            })
            .await
            .expect("nursery");
            wl::standard(w, &p.stop(), n)
        }),
        Workload::SpawnOne => placed(placement(w), async {
            let p = Probe::start();
            for _ in 0..n {
                nursery(async |nu| {
                    nu.spawn(async {}).await.expect("child");
                })
                .await
                .expect("nursery");
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::SpawnOneSoon => placed(placement(w), async {
            let p = Probe::start();
            for _ in 0..n {
                nursery(async |nu| {
                    nu.start_soon(async {});
                })
                .await
                .expect("nursery");
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::NurseryEmpty => placed(placement(w), async {
            let p = Probe::start();
            for _ in 0..n {
                black_box(nursery(async |_nu| {}).await).expect("nursery");
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::YieldMany => block_on(async {
            let p = Probe::start();
            nursery(async |nu| {
                for _ in 0..n {
                    nu.start_soon(async {
                        for _ in 0..wl::YIELDS_PER_CHILD {
                            yield_now().await;
                        }
                    });
                }
            })
            .await
            .expect("nursery");
            wl::standard(w, &p.stop(), n * wl::YIELDS_PER_CHILD)
        }),
        Workload::YieldAlone => block_on(async {
            let p = Probe::start();
            for _ in 0..n {
                yield_now().await;
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::YieldTask => block_on(async {
            nursery(async |nu| {
                let child = nu.spawn(async {
                    let p = Probe::start();
                    for _ in 0..n {
                        yield_now().await;
                    }
                    Ok::<_, Infallible>(wl::standard(w, &p.stop(), n))
                });
                Ok::<_, Infallible>(child.await.expect("child"))
            })
            .await
            .expect("nursery")
        }),
        Workload::WakeOne | Workload::WakeOne10 => {
            let parked = if w == Workload::WakeOne {
                n
            } else {
                wl::WAKE_FEW
            };
            let st = WakeState::new(parked);
            block_on(async {
                let st = &st;
                nursery(async |nu| {
                    for i in 0..parked {
                        nu.start_soon(st.child(i));
                    }
                    Ok::<_, Infallible>(timed_wakes(st, w, n).await)
                })
                .await
                .expect("nursery")
            })
        }
        Workload::DeepTree | Workload::DeepTree8 => {
            let depth = wl::deep_tree_depth(w);
            let st = WakeState::new(wl::deep_tree_leaves(depth));
            block_on(async {
                let st = &st;
                nursery(async |nu| {
                    nu.start_soon(level(st, depth, 1, 0));
                    Ok::<_, Infallible>(timed_wakes(st, w, n).await)
                })
                .await
                .expect("nursery")
            })
        }
        Workload::TimerArmCancel => placed(placement(w), async {
            let p = Probe::start();
            for _ in 0..n {
                let s = pin!(trellis::sleep(Duration::from_secs(60)));
                util::poll_once(s).await;
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::TimeoutNeverFires => placed(placement(w), async {
            // Alone and with a timeout in alternating chunks, so drift cancels out.
            let (mut alone, mut with) = (Delta::zero(), Delta::zero());
            for chunk in wl::chunks(n) {
                let p = Probe::start();
                for _ in 0..chunk {
                    yield_now().await;
                }
                alone += p.stop();
                let p = Probe::start();
                for _ in 0..chunk {
                    trellis::move_on_after(Duration::from_secs(60), yield_now())
                        .await
                        .expect("no timeout");
                }
                with += p.stop();
            }
            wl::timeout_report(&alone, &with, n)
        }),
        Workload::TimersFire | Workload::TimersSparse => {
            let offsets = wl::timer_offsets(w, n);
            let lat = Lateness::new(n);
            block_on(async {
                let p = Probe::start();
                let base = lat.start;
                let lat = &lat;
                nursery(async |nu| {
                    for &off in &offsets {
                        nu.start_soon(async move {
                            let deadline = base + Duration::from_nanos(off);
                            let mut s = pin!(trellis::sleep_until(deadline));
                            let done = util::poll_once(s.as_mut()).await;
                            lat.arm(n);
                            if !done {
                                s.await;
                            }
                            lat.fire(deadline);
                        });
                    }
                })
                .await
                .expect("nursery");
                wl::timers_report(&p.stop(), lat, n)
            })
        }
        Workload::CancelMany => {
            let started = Cell::new(0usize);
            let dropped = Cell::new(0usize);
            let probe = Cell::new(None);
            block_on(async {
                let (started, dropped, probe) = (&started, &dropped, &probe);
                // A nursery is cancelled through a scope around it.
                let cancelled = trellis::cancel_scope(async |scope| {
                    nursery(async |nu| {
                        for _ in 0..n {
                            nu.start_soon(async move {
                                let _guard = DropCount(dropped);
                                started.set(started.get() + 1);
                                std::future::pending::<()>().await;
                            });
                        }
                        while started.get() < n {
                            yield_now().await;
                        }
                        probe.set(Some(Probe::start()));
                        scope.cancel();
                    })
                    .await
                })
                .await;
                assert!(cancelled.is_none(), "the scope caught the cancellation");
                let d = probe.get().expect("body reached cancel").stop();
                assert_eq!(dropped.get(), n);
                wl::standard(w, &d, n)
            })
        }
        Workload::Channel1Cap0
        | Workload::Channel1Cap1
        | Workload::Channel1Cap1024
        | Workload::Channel8Cap0
        | Workload::Channel8Cap1
        | Workload::Channel8Cap1024 => channel(w, n),
        Workload::LockUncontended => lock_uncontended(w, n),
        Workload::LockContended => lock_contended(w, n),
        Workload::ToThread => to_thread(w, n),
        Workload::SpawnOneRoot
        | Workload::SpawnOneSoonRoot
        | Workload::NurseryEmptyRoot
        | Workload::TimerArmCancelRoot
        | Workload::TimeoutNeverFiresRoot => unreachable!("base() is never a _root twin"),
        Workload::IdleMemory1 => idle::<1>(n),
        Workload::IdleMemory64 => idle::<64>(n),
        Workload::IdleMemory256 => idle::<256>(n),
        Workload::ContextvarGet => block_on(async {
            let token = VAR.set(7);
            let p = Probe::start();
            for _ in 0..n {
                black_box(VAR.get());
            }
            let d = p.stop();
            VAR.reset(token).expect("reset");
            wl::standard(w, &d, n)
        }),
        Workload::ContextvarSetReset => block_on(async {
            let p = Probe::start();
            for i in 0..n {
                let token = VAR.set(black_box(i as u64));
                VAR.reset(token).expect("reset");
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::ContextvarSpawn => block_on(async {
            let token = VAR.set(7);
            let p = Probe::start();
            nursery(async |nu| {
                for _ in 0..n {
                    nu.start_soon(async {
                        black_box(VAR.get());
                    });
                }
            })
            .await
            .expect("nursery");
            let d = p.stop();
            VAR.reset(token).expect("reset");
            wl::standard(w, &d, n)
        }),
    }
}

/// One level of the `deep_tree` spine: a child running its own nursery with `FANOUT - 1`
/// leaves and the next level (`FANOUT` leaves at the bottom). A leaf's wake travels up
/// through every enclosing nursery.
fn level(
    st: &WakeState,
    max: usize,
    depth: usize,
    first_leaf: usize,
) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        nursery(async |nu| {
            let leaves = if depth == max {
                wl::DEEP_TREE_FANOUT
            } else {
                wl::DEEP_TREE_FANOUT - 1
            };
            for i in 0..leaves {
                nu.start_soon(st.child(first_leaf + i));
            }
            if depth < max {
                nu.start_soon(level(st, max, depth + 1, first_leaf + leaves));
            }
        })
        .await
        .expect("level");
    })
}

fn idle<const S: usize>(n: usize) -> Report {
    block_on(async {
        let mut report = None;
        let out = &mut report;
        trellis::cancel_scope(async |scope| {
            nursery(async |nu| {
                let polled = util::idle_polls();
                let rss = rss_bytes();
                let p = Probe::start();
                for _ in 0..n {
                    nu.start_soon(Idle::<S>::new());
                }
                while util::idle_polls() - polled < n as u64 {
                    yield_now().await;
                }
                let d = p.stop();
                *out = Some(wl::idle_report(&d, rss, rss_bytes(), n));
                scope.cancel();
            })
            .await
        })
        .await;
        report.expect("body ran")
    })
}

/// Waits until every parked child has started, then times `n` wakes driven through `st`.
async fn timed_wakes(st: &WakeState, w: Workload, n: usize) -> Report {
    while !st.all_started() {
        yield_now().await;
    }
    let p = Probe::start();
    st.drive(n).await;
    let d = p.stop();
    st.stop();
    wl::standard(w, &d, n)
}

/// `channel_*`: `trellis::channel(capacity)` (capacity 0 is a rendezvous), the producers
/// and the consumer children of one nursery; the consumer reads until end-of-stream.
fn channel(w: Workload, n: usize) -> Report {
    let (producers, capacity) = wl::channel_shape(w).expect("a channel workload");
    block_on(async {
        let p = Probe::start();
        nursery(async |nu| {
            let (tx, rx) = trellis::channel::<u64>(capacity);
            for i in 0..producers {
                let tx = tx.clone();
                let k = wl::producer_share(n, producers, i);
                nu.start_soon(async move {
                    for j in 0..k {
                        tx.send(j as u64).await.expect("the consumer is there");
                    }
                });
            }
            drop(tx);
            nu.start_soon(async move {
                let mut got = 0usize;
                while let Ok(v) = rx.recv().await {
                    black_box(v);
                    got += 1;
                }
                assert_eq!(got, n, "every message arrived");
            });
        })
        .await
        .expect("nursery");
        wl::standard(w, &p.stop(), n)
    })
}

/// `lock_uncontended`: a free `trellis::Lock` taken and released N times in a child.
fn lock_uncontended(w: Workload, n: usize) -> Report {
    placed(Placement::Task, async {
        let lock = trellis::Lock::new(0u64);
        let p = Probe::start();
        for _ in 0..n {
            *lock.lock().await += 1;
        }
        let d = p.stop();
        assert_eq!(lock.into_inner(), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `lock_contended`: `LOCK_TASKS` children of a nursery share one `trellis::Lock`; each
/// yields once while holding it (the harness's runtime-neutral yield, a self-wake), so
/// the others queue and every release hands the lock to a waiter.
fn lock_contended(w: Workload, n: usize) -> Report {
    block_on(async {
        let lock = trellis::Lock::new(0u64);
        let lock = &lock;
        let p = Probe::start();
        nursery(async |nu| {
            for i in 0..wl::LOCK_TASKS {
                let k = wl::lock_share(n, wl::LOCK_TASKS, i);
                nu.start_soon(async move {
                    for _ in 0..k {
                        let mut guard = lock.lock().await;
                        util::yield_now().await;
                        *guard += 1;
                    }
                });
            }
        })
        .await
        .expect("nursery");
        let d = p.stop();
        assert_eq!(*lock.try_lock().expect("free"), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `to_thread`: N sequential `trellis::to_thread(|| x).await` in a child (after one
/// warm-up call, so the pool's thread exists).
fn to_thread(w: Workload, n: usize) -> Report {
    placed(Placement::Task, async {
        trellis::to_thread(|| 0u64).await;
        let p = Probe::start();
        let mut sum = 0u64;
        for i in 0..n as u64 {
            sum += trellis::to_thread(move || black_box(i)).await;
        }
        let d = p.stop();
        assert_eq!(sum, (n as u64) * (n as u64).saturating_sub(1) / 2);
        wl::standard(w, &d, n)
    })
}
