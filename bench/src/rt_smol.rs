//! The workloads on smol's stack: `async_executor::LocalExecutor` driven by
//! `async_io::block_on` (what `smol::block_on(ex.run(...))` is), with `async_io::Timer`.
//! A `Vec<Task>` is the nursery: awaiting each task joins it, dropping it cancels it.
//!
//! The per-request workloads run their loop inside a spawned task (as a smol server runs
//! a connection's code) or, in their `_root` twins, in the root future, where every wake
//! goes through `async_io::block_on`'s reactor poll.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use async_io::Timer;

use crate::measure::{Delta, Probe, Report, rss_bytes};
use crate::util::{self, DropCount, Idle, Lateness, WakeState, yield_now};
use crate::workload::{self as wl, Placement, Workload};

fn block_on<'a, T>(ex: &LocalExecutor<'a>, fut: impl Future<Output = T>) -> T {
    async_io::block_on(ex.run(fut))
}

/// Runs the future `body` makes where `p` says: inside a task spawned on the executor (the
/// root future only awaits it), or as the root future itself. `body` gets the executor, to
/// spawn on (an `Rc<LocalExecutor<'static>>`, as a task that spawns needs).
fn placed<F>(p: Placement, body: impl FnOnce(Rc<LocalExecutor<'static>>) -> F) -> F::Output
where
    F: Future + 'static,
{
    let ex = Rc::new(LocalExecutor::new());
    let fut = body(ex.clone());
    match p {
        Placement::Task => {
            let task = ex.spawn(fut);
            block_on(&ex, task)
        }
        Placement::Root => block_on(&ex, fut),
    }
}

/// The placement of a per-request workload.
fn placement(w: Workload) -> Placement {
    w.placement().expect("a per-request workload")
}

/// `smol::future::or`-style timeout: `Some` if `fut` finishes before `dur`.
async fn timeout<F: Future>(dur: Duration, fut: F) -> Option<F::Output> {
    let fut = pin!(fut);
    let timer = pin!(Timer::after(dur));
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// Runs `w` at size `n` (see [`crate::workload::run`]).
pub fn run(w: Workload, n: usize) -> Option<Report> {
    Some(match w.base() {
        // A `Task` is already a join handle: the same as `spawn_all`.
        Workload::SpawnAll | Workload::SpawnAllHandles => {
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let p = Probe::start();
                let tasks: Vec<Task<()>> = (0..n).map(|_| ex.spawn(async {})).collect();
                for t in tasks {
                    t.await;
                }
                wl::standard(w, &p.stop(), n)
            })
        }
        // A task awaited (smol has no nursery: the same code for both).
        Workload::SpawnOne | Workload::SpawnOneSoon => placed(placement(w), |ex| async move {
            let p = Probe::start();
            for _ in 0..n {
                ex.spawn(async {}).await;
            }
            wl::standard(w, &p.stop(), n)
        }),
        // A `LocalExecutor` has no group to open and close.
        Workload::NurseryEmpty => return None,
        Workload::YieldMany => {
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let p = Probe::start();
                let tasks: Vec<Task<()>> = (0..n)
                    .map(|_| {
                        ex.spawn(async {
                            for _ in 0..wl::YIELDS_PER_CHILD {
                                yield_now().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                wl::standard(w, &p.stop(), n * wl::YIELDS_PER_CHILD)
            })
        }
        Workload::YieldAlone => {
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let p = Probe::start();
                for _ in 0..n {
                    yield_now().await;
                }
                wl::standard(w, &p.stop(), n)
            })
        }
        Workload::YieldTask => {
            let ex = LocalExecutor::new();
            let task = ex.spawn(async move {
                let p = Probe::start();
                for _ in 0..n {
                    yield_now().await;
                }
                wl::standard(w, &p.stop(), n)
            });
            block_on(&ex, task)
        }
        Workload::WakeOne | Workload::WakeOne10 => {
            let parked = if w == Workload::WakeOne {
                n
            } else {
                wl::WAKE_FEW
            };
            let st = WakeState::new(parked);
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let tasks: Vec<Task<()>> = (0..parked).map(|i| ex.spawn(st.child(i))).collect();
                while !st.all_started() {
                    yield_now().await;
                }
                let p = Probe::start();
                st.drive(n).await;
                let d = p.stop();
                st.stop();
                for t in tasks {
                    t.await;
                }
                wl::standard(w, &d, n)
            })
        }
        Workload::DeepTree | Workload::DeepTree8 => {
            // A task that spawns needs the executor itself: `Rc<LocalExecutor<'static>>`.
            let depth = wl::deep_tree_depth(w);
            let st = Rc::new(WakeState::new(wl::deep_tree_leaves(depth)));
            let ex = Rc::new(LocalExecutor::new());
            block_on(&ex, async {
                let tree = ex.spawn(level(ex.clone(), st.clone(), depth, 1, 0));
                while !st.all_started() {
                    yield_now().await;
                }
                let p = Probe::start();
                st.drive(n).await;
                let d = p.stop();
                st.stop();
                tree.await;
                wl::standard(w, &d, n)
            })
        }
        Workload::TimerArmCancel => placed(placement(w), |_ex| async move {
            let p = Probe::start();
            for _ in 0..n {
                let s = pin!(Timer::after(Duration::from_secs(60)));
                util::poll_once(s).await;
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::TimeoutNeverFires => placed(placement(w), |_ex| async move {
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
                    timeout(Duration::from_secs(60), yield_now())
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
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let p = Probe::start();
                let base = lat.start;
                let lat = &lat;
                let tasks: Vec<Task<()>> = offsets
                    .iter()
                    .map(|&off| {
                        ex.spawn(async move {
                            let deadline = base + Duration::from_nanos(off);
                            let mut s = pin!(Timer::at(deadline));
                            let done = util::poll_once(s.as_mut()).await;
                            lat.arm(n);
                            if !done {
                                s.await;
                            }
                            lat.fire(deadline);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                wl::timers_report(&p.stop(), lat, n)
            })
        }
        Workload::CancelMany => {
            let started = Cell::new(0usize);
            let dropped = Cell::new(0usize);
            let ex = LocalExecutor::new();
            block_on(&ex, async {
                let tasks: Vec<Task<()>> = (0..n)
                    .map(|_| {
                        let (started, dropped) = (&started, &dropped);
                        ex.spawn(async move {
                            let _guard = DropCount(dropped);
                            started.set(started.get() + 1);
                            std::future::pending::<()>().await;
                        })
                    })
                    .collect();
                while started.get() < n {
                    yield_now().await;
                }
                let p = Probe::start();
                drop(tasks);
                while dropped.get() < n {
                    yield_now().await;
                }
                wl::standard(w, &p.stop(), n)
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
        Workload::ToThread => unblock(w, n),
        Workload::SpawnOneRoot
        | Workload::SpawnOneSoonRoot
        | Workload::NurseryEmptyRoot
        | Workload::TimerArmCancelRoot
        | Workload::TimeoutNeverFiresRoot => unreachable!("base() is never a _root twin"),
        Workload::IdleMemory1 => idle::<1>(n),
        Workload::IdleMemory64 => idle::<64>(n),
        Workload::IdleMemory256 => idle::<256>(n),
        Workload::ContextvarGet | Workload::ContextvarSetReset | Workload::ContextvarSpawn => {
            return None;
        }
    })
}

/// One level of the `deep_tree` spine (see the tokio version): a task holding its leaves'
/// and the next level's `Task`s. smol schedules every task directly.
fn level(
    ex: Rc<LocalExecutor<'static>>,
    st: Rc<WakeState>,
    max: usize,
    depth: usize,
    first_leaf: usize,
) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let leaves = if depth == max {
            wl::DEEP_TREE_FANOUT
        } else {
            wl::DEEP_TREE_FANOUT - 1
        };
        let mut tasks: Vec<Task<()>> = (0..leaves)
            .map(|i| {
                let st = st.clone();
                ex.spawn(async move { st.child(first_leaf + i).await })
            })
            .collect();
        if depth < max {
            tasks.push(ex.spawn(level(
                ex.clone(),
                st.clone(),
                max,
                depth + 1,
                first_leaf + leaves,
            )));
        }
        for t in tasks {
            t.await;
        }
    })
}

fn idle<const S: usize>(n: usize) -> Report {
    let ex = LocalExecutor::new();
    block_on(&ex, async {
        let polled = util::idle_polls();
        let rss = rss_bytes();
        let p = Probe::start();
        let tasks: Vec<Task<()>> = (0..n).map(|_| ex.spawn(Idle::<S>::new())).collect();
        while util::idle_polls() - polled < n as u64 {
            yield_now().await;
        }
        let d = p.stop();
        let report = wl::idle_report(&d, rss, rss_bytes(), n);
        drop(black_box(tasks));
        // Let the executor drop the cancelled futures before it goes.
        yield_now().await;
        report
    })
}

/// `channel_*`: `async-channel` (smol's `smol::channel`), the producers and the consumer
/// tasks of the executor. `async_channel::bounded` has no rendezvous (it panics on 0): the
/// `_cap0` workloads run it at capacity 1.
fn channel(w: Workload, n: usize) -> Report {
    let (producers, capacity) = wl::channel_shape(w).expect("a channel workload");
    let ex = LocalExecutor::new();
    block_on(&ex, async {
        let p = Probe::start();
        let (tx, rx) = async_channel::bounded::<u64>(capacity.max(1));
        let mut tasks: Vec<Task<()>> = Vec::new();
        for i in 0..producers {
            let tx = tx.clone();
            let k = wl::producer_share(n, producers, i);
            tasks.push(ex.spawn(async move {
                for j in 0..k {
                    tx.send(j as u64).await.expect("the consumer is there");
                }
            }));
        }
        drop(tx);
        tasks.push(ex.spawn(async move {
            let mut got = 0usize;
            while let Ok(v) = rx.recv().await {
                black_box(v);
                got += 1;
            }
            assert_eq!(got, n, "every message arrived");
        }));
        for t in tasks {
            t.await;
        }
        wl::standard(w, &p.stop(), n)
    })
}

/// `lock_uncontended`: a free `async_lock::Mutex` (smol's `smol::lock::Mutex`) taken and
/// released N times in a task.
fn lock_uncontended(w: Workload, n: usize) -> Report {
    placed(Placement::Task, |_ex| async move {
        let lock = async_lock::Mutex::new(0u64);
        let p = Probe::start();
        for _ in 0..n {
            *lock.lock().await += 1;
        }
        let d = p.stop();
        assert_eq!(lock.into_inner(), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `lock_contended`: `LOCK_TASKS` tasks share one `async_lock::Mutex`, each yielding once
/// while holding it.
fn lock_contended(w: Workload, n: usize) -> Report {
    let ex = LocalExecutor::new();
    block_on(&ex, async {
        let lock = Rc::new(async_lock::Mutex::new(0u64));
        let p = Probe::start();
        let tasks: Vec<Task<()>> = (0..wl::LOCK_TASKS)
            .map(|i| {
                let k = wl::lock_share(n, wl::LOCK_TASKS, i);
                let lock = lock.clone();
                ex.spawn(async move {
                    for _ in 0..k {
                        let mut guard = lock.lock().await;
                        yield_now().await;
                        *guard += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let d = p.stop();
        assert_eq!(*lock.try_lock().expect("free"), n as u64);
        wl::standard(w, &d, n)
    })
}

/// `to_thread`: N sequential `blocking::unblock(|| x).await` (smol's `smol::unblock`) in
/// a task, after one warm-up call.
fn unblock(w: Workload, n: usize) -> Report {
    placed(Placement::Task, |_ex| async move {
        blocking::unblock(|| 0u64).await;
        let p = Probe::start();
        let mut sum = 0u64;
        for i in 0..n as u64 {
            sum += blocking::unblock(move || black_box(i)).await;
        }
        let d = p.stop();
        assert_eq!(sum, (n as u64) * (n as u64).saturating_sub(1) / 2);
        wl::standard(w, &d, n)
    })
}
