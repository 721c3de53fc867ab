//! Seeded scheduling (`Builder::shuffle_seed`, `#[trellis::test(shuffle)]`): on the mock
//! clock a seed is a deterministic simulation, the same seed giving the same poll order;
//! different seeds give different orders; a test that fails under a seed names it, and
//! replaying that seed reproduces the failure exactly.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use common::{HANG_LIMIT, is_test_child, watchdog};
use trellis::{Builder, Event, channel, nursery, sleep, yield_now};

/// A workload whose poll order depends on the schedule: children in two nested
/// nurseries that yield, sleep, wait on an event and pass values through a channel; each
/// step is logged. Returns the log and the virtual time it took.
fn trace(builder: Builder) -> (Vec<u32>, Duration) {
    let log = RefCell::new(Vec::new());
    let elapsed = builder.run(async {
        let start = trellis::now();
        let log = &log;
        let go = Event::new();
        let (tx, rx) = channel::<u32>(1);
        nursery(async |n| {
            for i in 0..4u32 {
                let go = &go;
                n.spawn(async move {
                    log.borrow_mut().push(i);
                    yield_now().await;
                    log.borrow_mut().push(10 + i);
                    go.wait().await;
                    log.borrow_mut().push(20 + i);
                    sleep(Duration::from_secs(1)).await;
                    log.borrow_mut().push(30 + i);
                });
            }
            for i in 0..3u32 {
                let tx = tx.clone();
                n.spawn(async move {
                    tx.send(100 + i).await.unwrap();
                    log.borrow_mut().push(40 + i);
                });
            }
            drop(tx);
            n.spawn(async move {
                while let Ok(v) = rx.recv().await {
                    log.borrow_mut().push(v);
                }
            });
            n.spawn_with(async |inner| {
                nursery(async |m| {
                    for i in 0..4u32 {
                        m.spawn(async move {
                            log.borrow_mut().push(200 + i);
                            yield_now().await;
                            log.borrow_mut().push(210 + i);
                        });
                    }
                })
                .await
                .unwrap();
                inner.spawn(async { log.borrow_mut().push(300) });
            });
            yield_now().await;
            go.set();
        })
        .await
        .unwrap();
        trellis::now() - start
    });
    (log.into_inner(), elapsed)
}

#[test]
fn without_a_seed_the_order_is_fifo() {
    let (log, _) = trace(Builder::new().autojump());
    // Spawn order first, then the round after the yields.
    assert_eq!(&log[..4], &[0, 1, 2, 3]);
    assert_eq!(&log[4..6], &[40, 100]);
    let (again, _) = trace(Builder::new().autojump());
    assert_eq!(log, again);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [0, 1, 42, u64::MAX] {
        let a = trace(Builder::new().autojump().shuffle_seed(seed));
        let b = trace(Builder::new().autojump().shuffle_seed(seed));
        assert_eq!(a, b, "seed {seed} replays");
    }
}

#[test]
fn different_seeds_give_different_orders_of_the_same_steps() {
    let (fifo, fifo_time) = trace(Builder::new().autojump());
    let mut sorted_fifo = fifo.clone();
    sorted_fifo.sort_unstable();
    let mut distinct = BTreeSet::new();
    for seed in 0..16 {
        let (log, elapsed) = trace(Builder::new().autojump().shuffle_seed(seed));
        let mut sorted = log.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted, sorted_fifo,
            "seed {seed}: every step ran exactly once"
        );
        assert_eq!(elapsed, fifo_time, "seed {seed}: the same virtual time");
        distinct.insert(log);
    }
    assert!(
        distinct.len() >= 12,
        "16 seeds gave only {} distinct orders",
        distinct.len()
    );
    assert!(
        !distinct.contains(&fifo) || distinct.len() > 1,
        "some seed departs from FIFO"
    );
    // The inner nursery is shuffled too: its children's first steps are not always in
    // spawn order.
    let inner_orders: BTreeSet<Vec<u32>> = (0..16)
        .map(|seed| {
            let (log, _) = trace(Builder::new().autojump().shuffle_seed(seed));
            log.into_iter().filter(|v| (200..204).contains(v)).collect()
        })
        .collect();
    assert!(
        inner_orders.len() > 1,
        "the inner nursery was never permuted"
    );
}

#[test]
fn a_seed_on_the_real_clock_still_runs_everything() {
    let (log, _) = trace(Builder::new().shuffle_seed(3));
    assert_eq!(log.len(), 4 * 4 + 3 + 3 + 4 * 2 + 1);
}

/// Holds under every order: the shuffle option runs it under each seed and it passes.
#[trellis::test(autojump, shuffle)]
async fn shuffle_test_that_holds_under_every_order() {
    let (log, _) = trace_inside().await;
    assert_eq!(log.len(), 4);
}

/// The same under a `Result`-returning test.
#[trellis::test(shuffle)]
async fn shuffle_test_returning_ok() -> Result<(), String> {
    let (log, _) = trace_inside().await;
    if log.len() == 4 {
        Ok(())
    } else {
        Err(format!("{log:?}"))
    }
}

/// Four children log their number; returns the log and the elapsed virtual time.
async fn trace_inside() -> (Vec<u32>, Duration) {
    let log = RefCell::new(Vec::new());
    let start = trellis::now();
    nursery(async |n| {
        for i in 0..4u32 {
            let log = &log;
            n.spawn(async move {
                yield_now().await;
                log.borrow_mut().push(i);
            });
        }
    })
    .await
    .unwrap();
    (log.into_inner(), trellis::now() - start)
}

/// The order assumption the failing tests make: child 3 never runs first (false under
/// about a quarter of the seeds).
fn assumption_holds(log: &[u32]) -> bool {
    log.first() != Some(&3)
}

/// Fails on purpose under the seeds that run child 3 first (only as the child process of
/// `a_failing_seed_is_named_and_replays_exactly`).
#[trellis::test(autojump, shuffle)]
#[ignore = "fails on purpose; run by a_failing_seed_is_named_and_replays_exactly"]
async fn fails_on_purpose_unless_fifo() {
    if !is_test_child() {
        return;
    }
    let (log, _) = trace_inside().await;
    assert!(
        assumption_holds(&log),
        "assumed child 3 is not first; got trace {log:?}"
    );
}

/// The same failure as an `Err` of a `Result` test.
#[trellis::test(autojump, shuffle)]
#[ignore = "fails on purpose; run by a_failing_seed_is_named_and_replays_exactly"]
async fn fails_on_purpose_with_err() -> Result<(), String> {
    if !is_test_child() {
        return Ok(());
    }
    let (log, _) = trace_inside().await;
    if assumption_holds(&log) {
        Ok(())
    } else {
        Err(format!("trace {log:?}"))
    }
}

/// Runs test `name` of this binary as a child with `envs`; its stderr and whether it
/// passed.
fn run_child(name: &str, envs: &[(&str, String)]) -> (String, bool) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--include-ignored", "--test-threads=1"])
        .env("TRELLIS_TEST_CHILD", "1")
        .env_remove("TRELLIS_SHUFFLE_SEED")
        .env_remove("TRELLIS_SHUFFLE_SEEDS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (all, out.status.success())
}

/// The seed named by the report line, and the line that carries the failure's trace.
fn seed_and_trace(output: &str) -> (u64, String) {
    let seed = output
        .split("failed under shuffle seed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed named in:\n{output}"))
        .parse()
        .unwrap();
    let trace = output
        .lines()
        .find(|l| l.contains("trace "))
        .unwrap_or_else(|| panic!("no trace in:\n{output}"))
        .to_owned();
    (seed, trace)
}

#[test]
fn a_failing_seed_is_named_and_replays_exactly() {
    watchdog(HANG_LIMIT, || {
        for name in ["fails_on_purpose_unless_fifo", "fails_on_purpose_with_err"] {
            let (out, passed) = run_child(name, &[("TRELLIS_SHUFFLE_SEEDS", "64".into())]);
            assert!(!passed, "{name} fails under some seed of 64:\n{out}");
            assert!(
                out.contains("replay it alone with TRELLIS_SHUFFLE_SEED="),
                "{out}"
            );
            let (seed, trace) = seed_and_trace(&out);
            assert!(seed > 0, "seed 0 happens to pass: the search went past it");
            // Replaying the seed alone fails the same way, with the same trace.
            let (again, passed) = run_child(name, &[("TRELLIS_SHUFFLE_SEED", seed.to_string())]);
            assert!(!passed, "{name} fails again under seed {seed}:\n{again}");
            let (seed_again, trace_again) = seed_and_trace(&again);
            assert_eq!(seed_again, seed);
            assert!(again.contains("(1 of 1 seeds run)"), "{again}");
            assert_eq!(trace_again, trace, "the replay is exact");
            // And in this process, through the builder: the same order.
            let order = Builder::new()
                .autojump()
                .shuffle_seed(seed)
                .run(async { trace_inside().await.0 });
            assert!(
                trace.contains(&format!("{order:?}")),
                "{trace} vs {order:?}"
            );
            // Seeds before it passed: the first failing seed is the one named.
            for earlier in 0..seed {
                let order = Builder::new()
                    .autojump()
                    .shuffle_seed(earlier)
                    .run(async { trace_inside().await.0 });
                assert!(assumption_holds(&order), "seed {earlier} passed");
            }
        }
    });
}

#[test]
fn a_bad_seed_variable_is_named() {
    watchdog(HANG_LIMIT, || {
        let (out, passed) = run_child(
            "shuffle_test_that_holds_under_every_order",
            &[("TRELLIS_SHUFFLE_SEEDS", "lots".into())],
        );
        assert!(!passed);
        assert!(
            out.contains("TRELLIS_SHUFFLE_SEEDS must be a number of seeds"),
            "{out}"
        );
        let (out, passed) = run_child(
            "shuffle_test_that_holds_under_every_order",
            &[("TRELLIS_SHUFFLE_SEEDS", "0".into())],
        );
        assert!(!passed);
        assert!(out.contains("TRELLIS_SHUFFLE_SEEDS=0"), "{out}");
        let (out, passed) = run_child(
            "shuffle_test_that_holds_under_every_order",
            &[("TRELLIS_SHUFFLE_SEED", "-1".into())],
        );
        assert!(!passed);
        assert!(
            out.contains("TRELLIS_SHUFFLE_SEED must be one shuffle seed"),
            "{out}"
        );
    });
}
