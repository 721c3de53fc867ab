//! The workloads on tokio's current-thread runtime (`enable_all`, as
//! `#[tokio::main(flavor = "current_thread")]` builds it), with a `LocalSet` so children
//! can be `!Send`, and `JoinSet` as the nearest thing to a nursery.
//!
//! The per-request workloads run their loop inside a `spawn_local` task (as a tokio
//! server runs a connection's code) or, in their `_root` twins, in the root future.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::{JoinSet, LocalSet, spawn_local, yield_now};

use crate::measure::{Delta, Probe, Report, rss_bytes};
use crate::util::{self, Idle, Lateness, RcDropCount, WakeState};
use crate::workload::{self as wl, Placement, Workload};

fn block_on<F: Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    LocalSet::new().block_on(&rt, fut)
}

/// Runs `body` where `p` says: inside a `spawn_local` task of the `LocalSet` (the root
/// future only awaits its `JoinHandle`), or as the root future itself.
fn placed<F>(p: Placement, body: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    match p {
        Placement::Task => block_on(async { spawn_local(body).await.expect("task") }),
        Placement::Root => block_on(body),
    }
}

/// The placement of a per-request workload.
fn placement(w: Workload) -> Placement {
    w.placement().expect("a per-request workload")
}

tokio::task_local! {
    static KEY: u64;
}

/// Runs `w` at size `n` (see [`crate::workload::run`]).
pub fn run(w: Workload, n: usize) -> Option<Report> {
    Some(match w.base() {
        Workload::SpawnAll => block_on(async {
            let p = Probe::start();
            let mut set = JoinSet::new();
            for _ in 0..n {
                set.spawn_local(async {});
            }
            while set.join_next().await.is_some() {}
            wl::standard(w, &p.stop(), n)
        }),
        Workload::SpawnAllHandles => block_on(async {
            let p = Probe::start();
            let handles: Vec<_> = (0..n).map(|_| spawn_local(async {})).collect();
            for h in handles {
                h.await.expect("child");
            }
            wl::standard(w, &p.stop(), n)
        }),
        // A `LocalSet` task awaited through its `JoinHandle` (tokio has no `start_soon`:
        // the same code for both).
        Workload::SpawnOne | Workload::SpawnOneSoon => placed(placement(w), async move {
            let p = Probe::start();
            for _ in 0..n {
                spawn_local(async {}).await.expect("child");
            }
            wl::standard(w, &p.stop(), n)
        }),
        // `JoinSet::new()` + drop, the peer issue 12 names.
        Workload::NurseryEmpty => placed(placement(w), async move {
            let p = Probe::start();
            for _ in 0..n {
                let set: JoinSet<()> = JoinSet::new();
                drop(black_box(set));
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::YieldMany => block_on(async {
            let p = Probe::start();
            let mut set = JoinSet::new();
            for _ in 0..n {
                set.spawn_local(async {
                    for _ in 0..wl::YIELDS_PER_CHILD {
                        yield_now().await;
                    }
                });
            }
            while set.join_next().await.is_some() {}
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
            spawn_local(async move {
                let p = Probe::start();
                for _ in 0..n {
                    yield_now().await;
                }
                wl::standard(w, &p.stop(), n)
            })
            .await
            .expect("child")
        }),
        Workload::WakeOne | Workload::WakeOne10 => {
            let parked = if w == Workload::WakeOne {
                n
            } else {
                wl::WAKE_FEW
            };
            let st = Rc::new(WakeState::new(parked));
            block_on(async {
                let mut set = JoinSet::new();
                for i in 0..parked {
                    let st = st.clone();
                    set.spawn_local(async move { st.child(i).await });
                }
                while !st.all_started() {
                    yield_now().await;
                }
                let p = Probe::start();
                st.drive(n).await;
                let d = p.stop();
                st.stop();
                while set.join_next().await.is_some() {}
                wl::standard(w, &d, n)
            })
        }
        Workload::DeepTree | Workload::DeepTree8 => {
            let depth = wl::deep_tree_depth(w);
            let st = Rc::new(WakeState::new(wl::deep_tree_leaves(depth)));
            block_on(async {
                let tree = spawn_local(level(st.clone(), depth, 1, 0));
                while !st.all_started() {
                    yield_now().await;
                }
                let p = Probe::start();
                st.drive(n).await;
                let d = p.stop();
                st.stop();
                tree.await.expect("tree");
                wl::standard(w, &d, n)
            })
        }
        Workload::TimerArmCancel => placed(placement(w), async move {
            let p = Probe::start();
            for _ in 0..n {
                let s = pin!(tokio::time::sleep(Duration::from_secs(60)));
                util::poll_once(s).await;
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::TimeoutNeverFires => placed(placement(w), async move {
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
                    tokio::time::timeout(Duration::from_secs(60), yield_now())
                        .await
                        .expect("no timeout");
                }
                with += p.stop();
            }
            wl::timeout_report(&alone, &with, n)
        }),
        Workload::TimersFire | Workload::TimersSparse => {
            let offsets = wl::timer_offsets(w, n);
            let lat = Rc::new(Lateness::new(n));
            block_on(async {
                let p = Probe::start();
                let base = tokio::time::Instant::from_std(lat.start);
                let mut set = JoinSet::new();
                for &off in &offsets {
                    let lat = lat.clone();
                    set.spawn_local(async move {
                        let deadline = base + Duration::from_nanos(off);
                        let mut s = pin!(tokio::time::sleep_until(deadline));
                        let done = util::poll_once(s.as_mut()).await;
                        lat.arm(n);
                        if !done {
                            s.await;
                        }
                        lat.fire(deadline.into_std());
                    });
                }
                while set.join_next().await.is_some() {}
                wl::timers_report(&p.stop(), &lat, n)
            })
        }
        Workload::CancelMany => block_on(async {
            let started = Rc::new(Cell::new(0usize));
            let dropped = Rc::new(Cell::new(0usize));
            let mut set = JoinSet::new();
            for _ in 0..n {
                let (started, dropped) = (started.clone(), dropped.clone());
                set.spawn_local(async move {
                    let _guard = RcDropCount(dropped);
                    started.set(started.get() + 1);
                    std::future::pending::<()>().await;
                });
            }
            while started.get() < n {
                yield_now().await;
            }
            let p = Probe::start();
            set.abort_all();
            while set.join_next().await.is_some() {}
            let d = p.stop();
            assert_eq!(dropped.get(), n);
            wl::standard(w, &d, n)
        }),
        Workload::Channel1Cap0
        | Workload::Channel1Cap1
        | Workload::Channel1Cap1024
        | Workload::Channel8Cap0
        | Workload::Channel8Cap1
        | Workload::Channel8Cap1024 => channel(w, n),
        Workload::LockUncontended => lock_uncontended(w, n),
        Workload::LockContended => lock_contended(w, n),
        Workload::ToThread => spawn_blocking(w, n),
        Workload::SpawnOneRoot
        | Workload::SpawnOneSoonRoot
        | Workload::NurseryEmptyRoot
        | Workload::TimerArmCancelRoot
        | Workload::TimeoutNeverFiresRoot => unreachable!("base() is never a _root twin"),
        Workload::IdleMemory1 => idle::<1>(n),
        Workload::IdleMemory64 => idle::<64>(n),
        Workload::IdleMemory256 => idle::<256>(n),
        Workload::ContextvarGet => block_on(KEY.scope(7, async {
            let p = Probe::start();
            for _ in 0..n {
                black_box(KEY.get());
            }
            wl::standard(w, &p.stop(), n)
        })),
        Workload::ContextvarSetReset => block_on(KEY.scope(7, async {
            let p = Probe::start();
            for i in 0..n {
                KEY.sync_scope(black_box(i as u64), || black_box(()));
            }
            wl::standard(w, &p.stop(), n)
        })),
        Workload::ContextvarSpawn => block_on(KEY.scope(7, async {
            let p = Probe::start();
            let mut set = JoinSet::new();
            for _ in 0..n {
                let inherited = KEY.get();
                set.spawn_local(KEY.scope(inherited, async {
                    black_box(KEY.get());
                }));
            }
            while set.join_next().await.is_some() {}
            wl::standard(w, &p.stop(), n)
        })),
    })
}

/// One level of the `deep_tree` spine: a task holding a `JoinSet` with `FANOUT - 1` leaves
/// and the next level (or `FANOUT` leaves at the bottom). tokio schedules every task
/// directly, so depth costs it nothing on a wake.
fn level(
    st: Rc<WakeState>,
    max: usize,
    depth: usize,
    first_leaf: usize,
) -> std::pin::Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let mut set = JoinSet::new();
        let leaves = if depth == max {
            wl::DEEP_TREE_FANOUT
        } else {
            wl::DEEP_TREE_FANOUT - 1
        };
        for i in 0..leaves {
            let st = st.clone();
            set.spawn_local(async move { st.child(first_leaf + i).await });
        }
        if depth < max {
            set.spawn_local(level(st.clone(), max, depth + 1, first_leaf + leaves));
        }
        while set.join_next().await.is_some() {}
    })
}

fn idle<const S: usize>(n: usize) -> Report {
    block_on(async {
        let polled = util::idle_polls();
        let rss = rss_bytes();
        let p = Probe::start();
        let mut set = JoinSet::new();
        for _ in 0..n {
            set.spawn_local(Idle::<S>::new());
        }
        while util::idle_polls() - polled < n as u64 {
            yield_now().await;
        }
        let d = p.stop();
        let report = wl::idle_report(&d, rss, rss_bytes(), n);
        set.abort_all();
        while set.join_next().await.is_some() {}
        report
    })
}

/// `channel_*`: `tokio::sync::mpsc::channel(capacity)`, the producers and the consumer
/// `spawn_local` tasks of a `JoinSet`. tokio's bounded `mpsc` has no rendezvous (its
/// bound must be at least 1): the `_cap0` workloads run it at capacity 1.
fn channel(w: Workload, n: usize) -> Report {
    let (producers, capacity) = wl::channel_shape(w).expect("a channel workload");
    block_on(async move {
        let p = Probe::start();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(capacity.max(1));
        let mut set = JoinSet::new();
        for i in 0..producers {
            let tx = tx.clone();
            let k = wl::producer_share(n, producers, i);
            set.spawn_local(async move {
                for j in 0..k {
                    tx.send(j as u64).await.expect("the consumer is there");
                }
            });
        }
        drop(tx);
        set.spawn_local(async move {
            let mut got = 0usize;
            while let Some(v) = rx.recv().await {
                black_box(v);
                got += 1;
            }
            assert_eq!(got, n, "every message arrived");
        });
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        wl::standard(w, &p.stop(), n)
    })
}

/// `lock_uncontended`: a free `tokio::sync::Mutex` taken and released N times in a
/// `spawn_local` task.
fn lock_uncontended(w: Workload, n: usize) -> Report {
    placed(Placement::Task, async move {
        let lock = tokio::sync::Mutex::new(0u64);
        let p = Probe::start();
        for _ in 0..n {
            *lock.lock().await += 1;
        }
        let d = p.stop();
        assert_eq!(lock.into_inner(), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `lock_contended`: `LOCK_TASKS` `spawn_local` tasks share one `tokio::sync::Mutex`,
/// each yielding once (the runtime-neutral self-wake) while holding it.
fn lock_contended(w: Workload, n: usize) -> Report {
    block_on(async move {
        let lock = Rc::new(tokio::sync::Mutex::new(0u64));
        let p = Probe::start();
        let mut set = JoinSet::new();
        for i in 0..wl::LOCK_TASKS {
            let k = wl::lock_share(n, wl::LOCK_TASKS, i);
            let lock = lock.clone();
            set.spawn_local(async move {
                for _ in 0..k {
                    let mut guard = lock.lock().await;
                    util::yield_now().await;
                    *guard += 1;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        let d = p.stop();
        assert_eq!(*lock.try_lock().expect("free"), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `to_thread`: N sequential `tokio::task::spawn_blocking(|| x).await` in a `spawn_local`
/// task (after one warm-up call, so the blocking pool's thread exists).
fn spawn_blocking(w: Workload, n: usize) -> Report {
    placed(Placement::Task, async move {
        tokio::task::spawn_blocking(|| 0u64).await.expect("call");
        let p = Probe::start();
        let mut sum = 0u64;
        for i in 0..n as u64 {
            sum += tokio::task::spawn_blocking(move || black_box(i))
                .await
                .expect("call");
        }
        let d = p.stop();
        assert_eq!(sum, (n as u64) * (n as u64).saturating_sub(1) / 2);
        wl::standard(w, &d, n)
    })
}
