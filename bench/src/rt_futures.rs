//! The workloads on `futures::stream::FuturesUnordered`, driven by
//! `futures::executor::block_on`: intra-task concurrency, the structure trellis's nursery
//! also has (the nursery future owns and polls its children). No timers, no context: those
//! workloads are n/a here.
//!
//! The peers issue 12 names live here: `FuturesUnordered` of boxed futures for
//! `spawn_one`, and `join!` of two ready futures as the floor of `nursery_empty`. A
//! per-request workload "inside a task" runs as the only future of a `FuturesUnordered`
//! (there are no tasks here; that is where a child's code runs), its `_root` twin directly
//! under `block_on`.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;

use futures::StreamExt;
use futures::executor::block_on;
use futures::stream::FuturesUnordered;

use crate::measure::{Probe, Report, rss_bytes};
use crate::util::{self, DropCount, Idle, WakeState, yield_now};
use crate::workload::{self as wl, Placement, Workload};

/// Runs `body` where `p` says: as the only future of a `FuturesUnordered`, or directly as
/// the future `block_on` drives.
fn placed<F: Future>(p: Placement, body: F) -> F::Output {
    match p {
        Placement::Task => block_on(async {
            let mut fu = FuturesUnordered::new();
            fu.push(body);
            fu.next().await.expect("task")
        }),
        Placement::Root => block_on(body),
    }
}

/// The placement of a per-request workload.
fn placement(w: Workload) -> Placement {
    w.placement().expect("a per-request workload")
}

/// A boxed child, as a `FuturesUnordered` of heterogeneous children holds it.
type BoxedChild = Pin<Box<dyn Future<Output = ()>>>;

/// Runs `w` at size `n` (see [`crate::workload::run`]).
pub fn run(w: Workload, n: usize) -> Option<Report> {
    Some(match w.base() {
        Workload::SpawnAll => block_on(async {
            let p = Probe::start();
            let mut fu = FuturesUnordered::new();
            for _ in 0..n {
                fu.push(async {});
            }
            while fu.next().await.is_some() {}
            wl::standard(w, &p.stop(), n)
        }),
        // A fresh `FuturesUnordered` of boxed children per iteration, one child pushed
        // and drained: the peer issue 12 names ("`FuturesUnordered` boxed").
        Workload::SpawnOne | Workload::SpawnOneSoon => placed(placement(w), async move {
            let p = Probe::start();
            for _ in 0..n {
                let mut fu: FuturesUnordered<BoxedChild> = FuturesUnordered::new();
                fu.push(Box::pin(async {}));
                while fu.next().await.is_some() {}
            }
            wl::standard(w, &p.stop(), n)
        }),
        // The floor: `join!` of two ready futures (concurrency with nothing to allocate).
        Workload::NurseryEmpty => placed(placement(w), async move {
            let p = Probe::start();
            for _ in 0..n {
                let (a, b) = futures::join!(
                    std::future::ready(black_box(1u8)),
                    std::future::ready(black_box(2u8))
                );
                black_box((a, b));
            }
            wl::standard(w, &p.stop(), n)
        }),
        Workload::YieldMany => block_on(async {
            let p = Probe::start();
            let mut fu = FuturesUnordered::new();
            for _ in 0..n {
                fu.push(async {
                    for _ in 0..wl::YIELDS_PER_CHILD {
                        yield_now().await;
                    }
                });
            }
            while fu.next().await.is_some() {}
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
            let mut fu = FuturesUnordered::new();
            fu.push(async move {
                let p = Probe::start();
                for _ in 0..n {
                    yield_now().await;
                }
                wl::standard(w, &p.stop(), n)
            });
            fu.next().await.expect("child")
        }),
        Workload::WakeOne | Workload::WakeOne10 => {
            let parked = if w == Workload::WakeOne {
                n
            } else {
                wl::WAKE_FEW
            };
            let st = WakeState::new(parked);
            let fu: FuturesUnordered<_> = (0..parked).map(|i| st.child(i)).collect();
            block_on(async {
                let drain = async {
                    let mut fu = fu;
                    while fu.next().await.is_some() {}
                };
                let body = async {
                    while !st.all_started() {
                        yield_now().await;
                    }
                    let p = Probe::start();
                    st.drive(n).await;
                    let d = p.stop();
                    st.stop();
                    d
                };
                let (d, ()) = futures::future::join(body, drain).await;
                wl::standard(w, &d, n)
            })
        }
        Workload::DeepTree | Workload::DeepTree8 => {
            let depth = wl::deep_tree_depth(w);
            let st = WakeState::new(wl::deep_tree_leaves(depth));
            block_on(async {
                let body = async {
                    while !st.all_started() {
                        yield_now().await;
                    }
                    let p = Probe::start();
                    st.drive(n).await;
                    let d = p.stop();
                    st.stop();
                    d
                };
                let (d, ()) = futures::future::join(body, level(&st, depth, 1, 0)).await;
                wl::standard(w, &d, n)
            })
        }
        // `FuturesUnordered` gives no handles.
        Workload::SpawnAllHandles => return None,
        Workload::TimerArmCancel
        | Workload::TimeoutNeverFires
        | Workload::TimersFire
        | Workload::TimersSparse => {
            return None;
        }
        Workload::CancelMany => {
            let started = Cell::new(0usize);
            let dropped = Cell::new(0usize);
            block_on(async {
                let mut fu = FuturesUnordered::new();
                for _ in 0..n {
                    let (started, dropped) = (&started, &dropped);
                    fu.push(async move {
                        let _guard = DropCount(dropped);
                        started.set(started.get() + 1);
                        std::future::pending::<()>().await;
                    });
                }
                while started.get() < n {
                    util::poll_once(std::pin::pin!(fu.next())).await;
                }
                let p = Probe::start();
                drop(fu);
                let d = p.stop();
                assert_eq!(dropped.get(), n);
                wl::standard(w, &d, n)
            })
        }
        // Channels, locks and threads are measured on the executors their users run them
        // on (see `rt_smol`, `rt_flume`); not here.
        Workload::Channel1Cap0
        | Workload::Channel1Cap1
        | Workload::Channel1Cap1024
        | Workload::Channel8Cap0
        | Workload::Channel8Cap1
        | Workload::Channel8Cap1024
        | Workload::LockUncontended
        | Workload::LockContended
        | Workload::ToThread => return None,
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

/// One level of the `deep_tree` spine as nested `FuturesUnordered`: a wake travels up one
/// level at a time, as in a trellis nursery tree.
fn level(
    st: &WakeState,
    max: usize,
    depth: usize,
    first_leaf: usize,
) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let leaves = if depth == max {
            wl::DEEP_TREE_FANOUT
        } else {
            wl::DEEP_TREE_FANOUT - 1
        };
        let mut fu: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + '_>>> =
            FuturesUnordered::new();
        for i in 0..leaves {
            fu.push(Box::pin(st.child(first_leaf + i)));
        }
        if depth < max {
            fu.push(level(st, max, depth + 1, first_leaf + leaves));
        }
        while fu.next().await.is_some() {}
    })
}

fn idle<const S: usize>(n: usize) -> Report {
    block_on(async {
        let polled = util::idle_polls();
        let rss = rss_bytes();
        let p = Probe::start();
        let mut fu = FuturesUnordered::new();
        for _ in 0..n {
            fu.push(Idle::<S>::new());
        }
        while util::idle_polls() - polled < n as u64 {
            util::poll_once(std::pin::pin!(fu.next())).await;
        }
        let d = p.stop();
        let report = wl::idle_report(&d, rss, rss_bytes(), n);
        drop(black_box(fu));
        report
    })
}
