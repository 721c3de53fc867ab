//! Adversarial programs against the runtime itself and what observes it: `Builder`'s
//! settings, `run` misuse, the mock clocks' deadlock report, far-future deadlines, fairness,
//! instruments in every shape a task can end in, `dump_tree` at awkward moments, names,
//! and the macros at run time.
//!
//! Each test names the promise it attacks. Time is virtual unless a test is about the real
//! clock; anything that could hang runs under a watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{
    DropCounter, HANG_LIMIT, OnDrop, PanicOnDrop, exit_of_test, is_test_child, panic_message,
    panic_message_of, poll_once, run_virtual, watchdog,
};
use trellis::instrument::{self, Instrument, ScopeInfo, TaskInfo, TaskOutcome};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    Builder, CancelReason, CancelScope, Event, Lock, Nursery, RuntimeHandle, cancel_scope, channel,
    move_on_after, move_on_at, nursery, shield, sleep, sleep_forever, sleep_until, to_thread,
    yield_now,
};

const SEC: Duration = Duration::from_secs(1);

// ---- helpers ------------------------------------------------------------------------

/// Every task event of every run, keyed by (run, task id): checks that each
/// `task_spawned` has exactly one `task_exited`, that polls pair up, and that nothing is
/// heard of a task after its exit (the order of the hooks in `Instrument`'s docs).
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<LedgerState>>);

#[derive(Default)]
struct LedgerState {
    runs: u64,
    after_runs: u64,
    /// (run, id) -> the task's name (or "-"), in spawn order.
    spawned: Vec<((u64, u64), String)>,
    exits: HashMap<(u64, u64), Vec<TaskOutcome>>,
    open_polls: HashMap<(u64, u64), i64>,
    problems: Vec<String>,
    last: Option<&'static str>,
}

impl Ledger {
    fn key(state: &LedgerState, t: &TaskInfo) -> (u64, u64) {
        (state.runs, t.id().as_u64())
    }

    fn event(&self, t: &TaskInfo, what: &'static str) {
        let mut s = self.0.lock().unwrap();
        let key = Self::key(&s, t);
        if s.exits.contains_key(&key) {
            s.problems.push(format!("{what} of {key:?} after its exit"));
        }
        if !s.spawned.iter().any(|(k, _)| *k == key) {
            s.problems.push(format!("{what} of {key:?}, never spawned"));
        }
        match what {
            "before_task_poll" => *s.open_polls.entry(key).or_default() += 1,
            "after_task_poll" => *s.open_polls.entry(key).or_default() -= 1,
            _ => {}
        }
        s.last = Some(what);
    }

    /// Panics unless the ledger balances; the outcome of every task, by name.
    fn outcomes(&self) -> Vec<(String, String)> {
        let s = self.0.lock().unwrap();
        let mut problems = s.problems.clone();
        if s.runs != s.after_runs {
            problems.push(format!("{} before_run, {} after_run", s.runs, s.after_runs));
        }
        for (key, n) in &s.open_polls {
            if *n != 0 {
                problems.push(format!("{key:?}: {n} before_task_poll without after"));
            }
        }
        let mut out = Vec::new();
        for (key, name) in &s.spawned {
            match s.exits.get(key).map(Vec::as_slice) {
                Some([outcome]) => out.push((name.clone(), outcome.to_string())),
                Some(many) => problems.push(format!("{key:?} {name}: exited {many:?}")),
                None => problems.push(format!("{key:?} {name}: never exited")),
            }
        }
        for key in s.exits.keys() {
            if !s.spawned.iter().any(|(k, _)| k == key) {
                problems.push(format!("{key:?} exited, never spawned"));
            }
        }
        assert!(
            problems.is_empty(),
            "the ledger does not balance: {problems:#?}"
        );
        out
    }

    fn outcome_of(&self, name: &str) -> String {
        let all = self.outcomes();
        let found: Vec<_> = all.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "one task named {name:?}: {all:?}");
        found[0].1.clone()
    }
}

impl Instrument for Ledger {
    fn before_run(&self) {
        let mut s = self.0.lock().unwrap();
        s.runs += 1;
        s.last = Some("before_run");
    }
    fn after_run(&self) {
        let mut s = self.0.lock().unwrap();
        s.after_runs += 1;
        s.last = Some("after_run");
    }
    fn task_spawned(&self, t: &TaskInfo) {
        let mut s = self.0.lock().unwrap();
        let key = Self::key(&s, t);
        if s.spawned.iter().any(|(k, _)| *k == key) {
            s.problems.push(format!("{key:?} spawned twice"));
        }
        let name = t.label().name().unwrap_or("-").to_owned();
        s.spawned.push((key, name));
        s.last = Some("task_spawned");
    }
    fn task_scheduled(&self, t: &TaskInfo) {
        self.event(t, "task_scheduled");
    }
    fn before_task_poll(&self, t: &TaskInfo) {
        self.event(t, "before_task_poll");
    }
    fn after_task_poll(&self, t: &TaskInfo) {
        self.event(t, "after_task_poll");
    }
    fn task_exited(&self, t: &TaskInfo, outcome: &TaskOutcome) {
        self.event(t, "task_exited");
        let mut s = self.0.lock().unwrap();
        let key = Self::key(&s, t);
        s.exits.entry(key).or_default().push(outcome.clone());
    }
}

/// Panics in the one hook it is named after, counting its calls.
struct BombIn(&'static str, Arc<AtomicUsize>);

impl BombIn {
    fn hit(&self, hook: &'static str) {
        if hook == self.0 {
            self.1.fetch_add(1, Ordering::SeqCst);
            panic!("bomb in {hook}");
        }
    }
}

impl Instrument for BombIn {
    fn before_run(&self) {
        self.hit("before_run");
    }
    fn after_run(&self) {
        self.hit("after_run");
    }
    fn task_spawned(&self, _: &TaskInfo) {
        self.hit("task_spawned");
    }
    fn task_scheduled(&self, _: &TaskInfo) {
        self.hit("task_scheduled");
    }
    fn before_task_poll(&self, _: &TaskInfo) {
        self.hit("before_task_poll");
    }
    fn after_task_poll(&self, _: &TaskInfo) {
        self.hit("after_task_poll");
    }
    fn task_exited(&self, _: &TaskInfo, _: &TaskOutcome) {
        self.hit("task_exited");
    }
    fn before_io_wait(&self, _: Option<Duration>) {
        self.hit("before_io_wait");
    }
    fn after_io_wait(&self, _: usize) {
        self.hit("after_io_wait");
    }
    fn scope_entered(&self, _: &ScopeInfo) {
        self.hit("scope_entered");
    }
    fn scope_exited(&self, _: &ScopeInfo) {
        self.hit("scope_exited");
    }
    fn scope_cancelled(&self, _: &ScopeInfo, _: &CancelReason) {
        self.hit("scope_cancelled");
    }
}

const EVERY_HOOK: [&str; 12] = [
    "before_run",
    "after_run",
    "task_spawned",
    "task_scheduled",
    "before_task_poll",
    "after_task_poll",
    "task_exited",
    "before_io_wait",
    "after_io_wait",
    "scope_entered",
    "scope_exited",
    "scope_cancelled",
];

/// Sends a value to a blocked worker the first time the runtime parks with no timeout:
/// at that point the executor has looked for a deadlock and found none (it does so just
/// before parking, `rt/executor.rs`), so whatever the worker does next happened while the
/// runtime was waiting for it.
#[derive(Clone, Default)]
struct ReleaseOnPark {
    tx: Arc<Mutex<Option<mpsc::Sender<u32>>>>,
    parks: Arc<AtomicUsize>,
}

impl ReleaseOnPark {
    fn channel(&self) -> mpsc::Receiver<u32> {
        let (tx, rx) = mpsc::channel();
        *self.tx.lock().unwrap() = Some(tx);
        rx
    }
}

impl Instrument for ReleaseOnPark {
    fn before_io_wait(&self, timeout: Option<Duration>) {
        if timeout.is_none() {
            self.parks.fetch_add(1, Ordering::SeqCst);
            if let Some(tx) = self.tx.lock().unwrap().take() {
                let _ = tx.send(42);
            }
        }
    }
}

// ---- run / Builder misuse ----------------------------------------------------------

/// Attacks `Builder::run`'s "# Panics: when a trellis runtime already runs on this thread"
/// and DESIGN.md "Running a runtime inside a runtime is a clear panic": a `run` attempted
/// from a child task, with instruments, a task tree and a seed of its own, must refuse
/// before it installs any of them, poll nothing, and leave the running runtime (its
/// clock, timers and instruments) exactly as it was.
#[test]
fn a_run_from_inside_a_child_task_is_refused_and_leaves_the_running_runtime_whole() {
    let outer = Ledger::default();
    let inner = Ledger::default();
    let (outer2, inner2) = (outer.clone(), inner.clone());
    let (elapsed, polled) = watchdog(HANG_LIMIT, move || {
        let polled = Arc::new(AtomicBool::new(false));
        let polled2 = polled.clone();
        let elapsed = Builder::new()
            .autojump()
            .instrument(outer2)
            .run(async move {
                let start = trellis::now();
                nursery(async |n| {
                    n.spawn_named("nester", async move {
                        sleep(SEC).await;
                        let message = panic_message_of(|| {
                            Builder::new()
                                .task_tree()
                                .shuffle_seed(3)
                                .instrument(inner2)
                                .run(async move { polled2.store(true, Ordering::SeqCst) })
                        });
                        assert!(message.contains("cannot be nested"), "{message}");
                        // Still on the outer runtime: its clock and timers work.
                        sleep(SEC).await;
                        assert_eq!(trellis::now() - start, 2 * SEC);
                    });
                    n.spawn_named("sibling", sleep(3 * SEC));
                })
                .await
                .unwrap();
                trellis::now() - start
            });
        (elapsed, polled.load(Ordering::SeqCst))
    });
    assert_eq!(elapsed, 3 * SEC);
    assert!(!polled, "the refused run polled its future");
    assert!(
        inner.outcomes().is_empty(),
        "the refused run's instrument heard something"
    );
    assert_eq!(inner.0.lock().unwrap().runs, 0);
    let outcomes = outer.outcomes();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|(_, o)| o == "returned"),
        "{outcomes:?}"
    );
}

/// Attacks `RuntimeHandle::run_sync`'s "# Panics: a panic in `f` is caught on the runtime's
/// thread (the runtime goes on) and resumed here": the work sent back is a nested `run`,
/// which must be the clear "cannot be nested" panic, delivered to the worker, with the
/// runtime going on. A runtime started on a worker thread of `to_thread` is a runtime of
/// its own (that thread runs none), with its own clock.
#[test]
fn a_run_sent_back_through_run_sync_is_refused_and_a_worker_may_run_its_own_runtime() {
    let (message, inner, outer_elapsed) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let start = trellis::now();
            let handle = RuntimeHandle::current();
            let message = to_thread(move || {
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle.run_sync(|| trellis::run(async { 1 }))
                }));
                panic_message(&*caught.expect_err("the nested run panics"))
            })
            .await;
            // A worker thread runs no runtime: a new one there is fine and independent.
            let inner = to_thread(|| {
                run_virtual(async {
                    let start = trellis::now();
                    sleep(3600 * SEC).await;
                    let from_its_pool = to_thread(|| 5).await;
                    (trellis::now() - start, from_its_pool)
                })
            })
            .await;
            sleep(SEC).await;
            (message, inner, trellis::now() - start)
        })
    });
    assert!(message.contains("cannot be nested"), "{message}");
    assert_eq!(inner, (3600 * SEC, 5));
    assert_eq!(
        outer_elapsed, SEC,
        "the worker's runtime moved only its own clock"
    );
}

/// Attacks DESIGN.md "Everything that belongs to a runtime ... used from another runtime it
/// panics with a clear message (or the types forbid it)" and `to_thread`'s "On a mock
/// clock a runtime with a call in flight is never declared deadlocked": a `ToThread` (it
/// is `Send`) submitted by one runtime and awaited in the next one on the same thread,
/// while its worker still works. Acceptable outcomes: its value, or a clear panic that
/// it belongs to another runtime; not a false deadlock report.
#[test]
fn a_to_thread_call_carried_into_the_next_runtime_is_not_reported_as_a_deadlock() {
    let outcome = watchdog(HANG_LIMIT, || {
        let (release_tx, release_rx) = mpsc::channel::<u32>();
        // Submitted (first polled) in this runtime, which then ends with the call running.
        let call = run_virtual(poll_once(to_thread(move || release_rx.recv().unwrap())));
        let release = ReleaseOnPark::default();
        let release_rx2 = release.channel();
        std::thread::spawn(move || {
            // Forward the release once the second runtime parks.
            if let Ok(v) = release_rx2.recv() {
                let _ = release_tx.send(v);
            }
        });
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Builder::new().autojump().instrument(release).run(call)
        }))
        .map_err(|p| panic_message(&*p))
    });
    match outcome {
        Ok(value) => assert_eq!(value, 42),
        Err(message) => assert!(
            !message.contains("deadlock") && message.contains("runtime"),
            "a false deadlock report, or an unclear panic: {message}"
        ),
    }
}

/// The drop side of the test above: `to_thread`'s "# Panics" says dropping a call carried
/// into another runtime is fine, and lowers only the count of calls in flight of the runtime
/// that submitted it (which has ended here). The later runtime's own call, in flight when
/// the carried one is dropped, still keeps it from a deadlock report; the carried call runs
/// to its end on its worker, which drops its result.
#[test]
fn a_to_thread_call_dropped_in_the_next_runtime_leaves_that_runtimes_count_alone() {
    watchdog(HANG_LIMIT, || {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        // Submitted in this runtime, which ends with the call running.
        let carried = run_virtual(poll_once(to_thread(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            OnDrop(move || {
                let _ = dropped_tx.send(());
            })
        })));
        // Running, not queued: a call dropped while queued is never started.
        started_rx.recv().unwrap();
        let (value, elapsed) = run_virtual(async move {
            let start = trellis::now();
            let own = poll_once(to_thread(|| {
                std::thread::sleep(Duration::from_millis(50));
                7
            }))
            .await;
            drop(carried);
            // Had the drop lowered this runtime's count, nothing would be in flight here:
            // the mock clock would report a deadlock instead of waiting for `own`.
            (own.await, trellis::now() - start)
        });
        assert_eq!(value, 7);
        assert_eq!(elapsed, Duration::ZERO, "no timer, so no jump");
        release_tx.send(()).unwrap();
        dropped_rx
            .recv_timeout(HANG_LIMIT)
            .expect("the abandoned call ran to its end and its result was dropped");
    });
}

/// Attacks `Builder::run`'s "# Panics: when a trellis runtime already runs on this thread"
/// from the other side: a thread that runs no trellis runtime but polls a trellis nursery
/// in another executor (the guide's "nurseries inside a tokio program"). A runtime started
/// from a child of that nursery, whose scope is cancelled, is a new, independent runtime:
/// its own nursery is not cancelled by the foreign one.
#[test]
fn a_runtime_started_inside_a_foreign_executors_cancelled_nursery_is_independent() {
    let (slept, inner_ok) = watchdog(HANG_LIMIT, || {
        let slept = Cell::new(Duration::ZERO);
        let inner_ok = Cell::new(false);
        let _ = futures::executor::block_on(cancel_scope(async |scope| {
            nursery(async |n| {
                scope.cancel();
                // Into a cancelled nursery: it runs to its first suspension, and `run` is
                // synchronous, so the whole inner runtime runs inside that first poll.
                n.spawn(async {
                    let result = run_virtual(async {
                        let start = trellis::now();
                        let r = nursery(async |m| {
                            m.spawn(sleep(SEC));
                        })
                        .await;
                        (r, trellis::now() - start)
                    });
                    inner_ok.set(result.0.is_ok());
                    slept.set(result.1);
                    yield_now().await;
                });
            })
            .await
            .unwrap();
        }));
        (slept.get(), inner_ok.get())
    });
    assert!(inner_ok);
    assert_eq!(slept, SEC);
}

// ---- the deadlock report -----------------------------------------------------------

/// Attacks `Builder::autojump`'s "# Panics: ... panics instead of hanging when the runtime
/// is deadlocked ... The message lists the root and where every live nursery child was
/// spawned" and the README's "the live task tree ... in the deadlock panic": a deadlock
/// that holds a cancellation off (a shielded clean-up waiting for an event nobody sets)
/// is reported, naming the task and showing it in a shield, being cancelled.
#[test]
fn a_deadlocked_shielded_cleanup_is_reported_with_its_name_and_its_shield() {
    let message = watchdog(HANG_LIMIT, || {
        panic_message_of(|| {
            let never = Event::new();
            run_virtual(cancel_scope(async |scope| {
                nursery(async |n| {
                    n.spawn_named("cleanup", shield(never.wait()));
                    yield_now().await;
                    scope.cancel();
                    sleep_forever().await;
                })
                .await
                .unwrap();
            }))
        })
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    assert!(message.contains("no timer is armed"), "{message}");
    assert!(message.contains("child 1 \"cleanup\""), "{message}");
    assert!(
        // "waiting inside": the shield is a scope inside the task (the tree's snapshot in
        // integration/tests/instrument.rs shows the same for a task waiting in a scope).
        message.contains("child 1 \"cleanup\": waiting inside, in a shield, being cancelled"),
        "{message}"
    );
    assert!(message.contains("cancelled explicitly"), "{message}");
}

/// Attacks the same promise with a lock and a channel: one task holds a `Lock` and waits
/// to receive; the other would send but waits for the lock. Both are named in the report
/// and in its tree; nothing hangs.
#[test]
fn a_lock_and_channel_cycle_is_reported_as_a_deadlock_naming_both_tasks() {
    let message = watchdog(HANG_LIMIT, || {
        panic_message_of(|| {
            let lock = Lock::new(());
            let (tx, rx) = channel::<u8>(0);
            run_virtual(nursery(async |n| {
                n.spawn_named("holder", async {
                    let _guard = lock.lock().await;
                    let _ = rx.recv().await;
                });
                n.spawn_named("sender", async {
                    yield_now().await;
                    let _guard = lock.lock().await;
                    let _ = tx.send(1).await;
                });
            }))
        })
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    for name in ["holder", "sender"] {
        assert!(
            message.contains(&format!("\"{name}\"\n")),
            "{name}: {message}"
        );
        assert!(
            message.contains(&format!("\"{name}\": waiting")),
            "{name}: {message}"
        );
    }
}

/// Attacks `to_thread`'s "On a mock clock a runtime with a call in flight is never declared
/// deadlocked" and DESIGN.md "nothing can wake the runtime (no timer, no I/O source, no
/// thread work in flight)": everything else looks deadlocked (a lock held across a
/// receive, a waiter for the lock, a shielded wait in a cancelled scope), and the only
/// way out is a worker thread that is released only once the runtime parked. The runtime
/// must wait for it, and everything then finishes without time moving.
#[test]
fn a_knot_of_lock_channel_and_shield_waits_is_no_deadlock_while_a_worker_works() {
    let release = ReleaseOnPark::default();
    let parks = release.parks.clone();
    let worker_rx = release.channel();
    let elapsed = watchdog(HANG_LIMIT, move || {
        Builder::new()
            .autojump()
            .instrument(release)
            .run(async move {
                let lock = Lock::new(0u32);
                let (tx, rx) = channel::<u32>(0);
                let done = Event::new();
                let start = trellis::now();
                nursery(async |n| {
                    n.spawn_named("holder", async {
                        let mut guard = lock.lock().await;
                        *guard = rx.recv().await.unwrap();
                    });
                    n.spawn_named("locker", async {
                        yield_now().await;
                        assert_eq!(*lock.lock().await, 42);
                    });
                    n.spawn_named("shielded", async {
                        cancel_scope(async |scope| {
                            scope.cancel();
                            shield(done.wait()).await;
                        })
                        .await;
                    });
                    n.spawn_named("worker", async {
                        let value = to_thread(move || worker_rx.recv().unwrap()).await;
                        tx.send(value).await.unwrap();
                        done.set();
                    });
                })
                .await
                .unwrap();
                trellis::now() - start
            })
    });
    assert_eq!(elapsed, Duration::ZERO);
    assert!(
        parks.load(Ordering::SeqCst) >= 1,
        "the runtime parked for the worker"
    );
}

/// Attacks `Builder::autojump`'s "# Panics: [run] panics instead of hanging when the
/// runtime is deadlocked: every task is blocked and no timer is armed, no I/O source is
/// registered and no thread work is in flight": a `RemoteCancel` that has already
/// cancelled its scope, whose scope has finished, can never wake anything again (a second
/// `cancel` does nothing). Kept alive in a task blocked forever, it must not turn the
/// deadlock report into a hang.
#[test]
fn a_spent_remote_cancel_handle_does_not_turn_a_deadlock_into_a_hang() {
    let message = watchdog(Duration::from_secs(5), || {
        panic_message_of(|| {
            run_virtual(async {
                let scope = CancelScope::new();
                let remote = scope.remote();
                remote.cancel();
                assert_eq!(scope.run(sleep_forever()).await, None);
                // The scope is gone and the handle is spent; nothing can wake this.
                Event::new().wait().await;
                drop(remote);
            })
        })
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
}

/// Attacks `Builder::dump_tree_on_signal`'s "It is an I/O source, so on a mock clock a
/// runtime with this setting waits for the signal where it would otherwise report a
/// deadlock", together with autojump ("whenever every task is blocked, virtual time jumps
/// straight to the nearest deadline") and `wait_all_tasks_blocked` ("a task waiting ...
/// for I/O that is not ready yet is blocked"): the signal receiver must neither stop
/// time from jumping nor keep the idle waiter from completing.
#[test]
fn the_tree_signal_receiver_keeps_autojump_and_idle_waiters_working() {
    let (elapsed, blocked_at) = watchdog(HANG_LIMIT, || {
        Builder::new()
            .autojump()
            .dump_tree_on_signal(signal_hook::consts::SIGUSR2)
            .run(async {
                let start = trellis::now();
                let blocked_at = Cell::new(None);
                nursery(async |n| {
                    n.spawn(sleep(3600 * SEC));
                    n.spawn(async {
                        wait_all_tasks_blocked().await;
                        blocked_at.set(Some(trellis::now() - start));
                    });
                })
                .await
                .unwrap();
                (trellis::now() - start, blocked_at.get())
            })
    });
    assert_eq!(blocked_at, Some(Duration::ZERO), "before time jumps");
    assert_eq!(elapsed, 3600 * SEC);
}

/// Attacks the deadlock report's determinism under `Builder::shuffle_seed`: "On a mock
/// clock ... a run is then a deterministic simulation: the same seed gives the same order,
/// so a failing seed replays its failure exactly". A program that deadlocks with an order
/// of spawns, sleeps and events gives the same report, byte for byte, for the same seed.
#[test]
fn a_shuffled_deadlock_report_replays_exactly_for_its_seed() {
    let report = |seed| {
        watchdog(HANG_LIMIT, move || {
            panic_message_of(|| {
                let events: Vec<Event> = (0..6).map(|_| Event::new()).collect();
                Builder::new()
                    .autojump()
                    .shuffle_seed(seed)
                    .run(nursery(async |n| {
                        for i in 0..6 {
                            let events = &events;
                            n.spawn_named(format!("t{i}"), async move {
                                sleep(Duration::from_millis(10 * (i as u64 % 3))).await;
                                events[(i + 1) % 6].set();
                                events[i].wait().await;
                                // Everyone got here: now wait for what nobody sets.
                                Event::new().wait().await;
                            });
                        }
                    }))
            })
        })
    };
    for seed in [0, 1, u64::MAX] {
        let first = report(seed);
        assert!(first.contains("trellis: deadlock"), "{first}");
        assert_eq!(first, report(seed), "seed {seed} did not replay");
    }
}

// ---- the mock clock -----------------------------------------------------------------

/// Attacks `Builder::autojump`'s "While `to_thread` work is in flight time does not jump"
/// with calls queued behind `thread_limit(1)`, each inside a one-second timeout, beside a
/// ten-second sleeper: no timeout may fire (time must not jump while any call is running
/// or queued), and the sleeper still ends exactly at ten seconds.
#[test]
fn autojump_never_jumps_past_calls_queued_behind_the_thread_limit() {
    let release = ReleaseOnPark::default();
    let first_rx = release.channel();
    let (results, elapsed) = watchdog(HANG_LIMIT, move || {
        Builder::new()
            .autojump()
            .thread_limit(1)
            .instrument(release)
            .run(async move {
                let start = trellis::now();
                let results = RefCell::new(Vec::new());
                let first_rx = Mutex::new(Some(first_rx));
                nursery(async |n| {
                    for i in 0..3u32 {
                        let (results, first_rx) = (&results, &first_rx);
                        n.spawn(async move {
                            let rx = first_rx.lock().unwrap().take();
                            let call = to_thread(move || match rx {
                                // The first call blocks until the runtime has parked.
                                Some(rx) => rx.recv().unwrap() + i,
                                None => i,
                            });
                            let got = move_on_after(SEC, call).await;
                            results.borrow_mut().push((got, trellis::now() - start));
                        });
                    }
                    n.spawn(async move {
                        sleep(10 * SEC).await;
                        assert_eq!(trellis::now() - start, 10 * SEC);
                    });
                })
                .await
                .unwrap();
                (results.into_inner(), trellis::now() - start)
            })
    });
    let mut got: Vec<_> = results.iter().map(|(v, _)| *v).collect();
    got.sort();
    assert_eq!(got, [Some(1), Some(2), Some(42)], "{results:?}");
    assert!(
        results.iter().all(|(_, at)| *at == Duration::ZERO),
        "{results:?}"
    );
    assert_eq!(elapsed, 10 * SEC);
}

/// Attacks `sleep`'s "a duration too long for the clock to represent (`Duration::MAX`)
/// means never", `advance`'s "An advance past what `Instant` can represent ... saturates
/// ... From then on, `sleep` and the relative timeouts treat every duration as never",
/// and "A deadline never fires early; on the mock clock it fires exactly at the deadline":
/// deadlines at the very last representable instant, reached by autojump. No overflow
/// panic anywhere; at the end of time a zero sleep and a past deadline still complete.
#[test]
fn deadlines_at_the_last_representable_instant_fire_exactly_without_overflow() {
    let (at_end, effective, past, after) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let start = trellis::now();
            let end = common::latest_instant(start);
            assert_eq!(sleep(Duration::MAX).deadline(), None);
            let effective = Cell::new(None);
            // Nested deadlines at the end of time, and a shield with its own.
            let fired = move_on_at(end, async {
                trellis::fail_at(end, async {
                    effective.set(trellis::current_effective_deadline());
                    shield(sleep_until(end)).await;
                    sleep_forever().await;
                })
                .await
            })
            .await;
            assert_eq!(fired, None, "the outer of equal deadlines catches it");
            let at_end = trellis::now() == end;
            // Time cannot move on: a zero sleep is still a checkpoint that completes, a
            // deadline now past fires at the first suspension, and a timeout of any
            // length is "never" (so guard it with a past deadline).
            sleep(Duration::ZERO).await;
            let past = move_on_at(start, sleep_forever()).await;
            let after = move_on_at(end, move_on_after(SEC, sleep_forever())).await;
            (at_end, effective.get(), past, after)
        })
    });
    assert!(at_end, "autojump reached the last instant exactly");
    assert!(effective.is_some());
    assert_eq!(past, None);
    assert_eq!(after, None);
}

/// Attacks the real clock's park ("The reactor parks in `Poller::wait` with the timeout of
/// the nearest deadline") with a deadline at the last representable instant and an I/O
/// source registered, so that the park goes through the poller: the timeout handed to it
/// is enormous, and nothing may overflow. A hook on the park cancels the sleep through a
/// `RemoteCancel`, so no real time passes.
#[test]
fn a_real_clock_park_until_the_end_of_time_with_an_io_source_does_not_overflow() {
    #[derive(Clone, Default)]
    struct CancelOnPark {
        remote: Arc<Mutex<Option<trellis::RemoteCancel>>>,
        timeouts: Arc<Mutex<Vec<Option<Duration>>>>,
    }
    impl Instrument for CancelOnPark {
        fn before_io_wait(&self, timeout: Option<Duration>) {
            if timeout == Some(Duration::ZERO) {
                return;
            }
            self.timeouts.lock().unwrap().push(timeout);
            if let Some(remote) = self.remote.lock().unwrap().take() {
                remote.cancel();
            }
        }
    }
    let hook = CancelOnPark::default();
    let timeouts = hook.timeouts.clone();
    let out = watchdog(HANG_LIMIT, move || {
        let remote = hook.remote.clone();
        Builder::new().instrument(hook).run(async move {
            let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let end = common::latest_instant(trellis::now());
            let scope = CancelScope::new();
            *remote.lock().unwrap() = Some(scope.remote());
            let out = scope.run(sleep_until(end)).await;
            drop(listener);
            out
        })
    });
    assert_eq!(out, None, "cancelled from the park hook");
    let timeouts = timeouts.lock().unwrap();
    assert!(
        timeouts
            .iter()
            .any(|t| t.is_some_and(|t| t > Duration::from_secs(100 * 365 * 86_400))),
        "{timeouts:?}"
    );
}

/// Attacks `sleep_until`'s "A deadline already reached does not complete at the first
/// poll: the sleep suspends once ... and completes at the next poll", for an instant from
/// before the runtime was even built, on both mock clocks and the real clock: exactly two
/// polls, and no virtual time moves.
#[test]
fn sleeping_until_an_instant_before_the_runtime_existed_is_one_checkpoint() {
    let Some(long_ago) = Instant::now().checked_sub(86_400 * SEC) else {
        return; // a clock that started less than a day ago cannot name such an instant
    };
    for builder in [
        Builder::new(),
        Builder::new().mock_clock(),
        Builder::new().autojump(),
    ] {
        let (polls, moved) = watchdog(HANG_LIMIT, move || {
            builder.run(async move {
                let start = trellis::now();
                let polls = Cell::new(0);
                common::count_polls(&polls, sleep_until(long_ago)).await;
                (polls.get(), trellis::now() - start)
            })
        });
        assert_eq!(polls, 2);
        assert!(moved < SEC, "{moved:?}");
    }
}

/// Attacks `wait_all_tasks_blocked`'s "Work in flight elsewhere does not count as running:
/// a task waiting for thread work ... is blocked, so the waiter completes although a
/// result may come a moment later", with a call that cannot finish until the waiter has
/// completed (it releases the call): no hang, and the call's result still arrives.
#[test]
fn an_idle_waiter_completes_while_a_worker_is_held_and_then_releases_it() {
    let (order, elapsed) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let start = trellis::now();
            let (tx, rx) = mpsc::channel::<u32>();
            let order = RefCell::new(Vec::new());
            nursery(async |n| {
                n.spawn(async {
                    let v = to_thread(move || rx.recv().unwrap()).await;
                    order.borrow_mut().push(format!("call returned {v}"));
                });
                n.spawn(async {
                    wait_all_tasks_blocked().await;
                    order.borrow_mut().push("idle".to_owned());
                    tx.send(7).unwrap();
                });
            })
            .await
            .unwrap();
            (order.into_inner(), trellis::now() - start)
        })
    });
    assert_eq!(order, ["idle", "call returned 7"]);
    assert_eq!(elapsed, Duration::ZERO);
}

// ---- fairness -----------------------------------------------------------------------

/// Attacks `yield_now`'s "Lets every other ready task run once before this one continues"
/// and ARCHITECTURE.md "the executor ... fire[s] timers that are due" each turn: on the
/// real clock, a task that never stops yielding (and a raw future that wakes itself) must
/// not keep a one-millisecond timer from firing; the timer's task stops them.
#[test]
fn a_task_that_never_stops_yielding_does_not_starve_a_real_timer() {
    let (spins, raw) = watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let stop = Cell::new(false);
            let spins = Cell::new(0u64);
            let raw = Cell::new(0u64);
            nursery(async |n| {
                n.spawn(async {
                    while !stop.get() {
                        spins.set(spins.get() + 1);
                        yield_now().await;
                    }
                });
                n.spawn(std::future::poll_fn(|cx| {
                    if stop.get() {
                        return Poll::Ready(());
                    }
                    raw.set(raw.get() + 1);
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }));
                n.spawn(async {
                    sleep(Duration::from_millis(1)).await;
                    stop.set(true);
                });
            })
            .await
            .unwrap();
            (spins.get(), raw.get())
        })
    });
    assert!(spins > 0 && raw > 0);
}

/// Attacks the same on a mock clock without autojump: a spinning task moves the clock with
/// `advance` ("firing every timer that falls due") and keeps yielding; the sleeper whose
/// deadline passed must run and stop it, and a sibling doing a chain of event hand-offs
/// makes progress meanwhile (each ready task runs once per round).
#[test]
fn a_due_timer_and_a_hand_off_chain_run_beside_a_spinning_task_on_the_mock_clock() {
    let (spins, hops) = watchdog(HANG_LIMIT, || {
        Builder::new().mock_clock().run(async {
            let stop = Cell::new(false);
            let spins = Cell::new(0u64);
            let hops = Cell::new(0u32);
            let events: Vec<Event> = (0..50).map(|_| Event::new()).collect();
            nursery(async |n| {
                n.spawn(async {
                    // Once the sleeper below has armed its timer: then past it.
                    yield_now().await;
                    trellis::advance(SEC);
                    while !stop.get() {
                        spins.set(spins.get() + 1);
                        yield_now().await;
                    }
                });
                n.spawn(async {
                    sleep(SEC).await;
                    // Wait for the chain, still beside the spinner.
                    events[0].wait().await;
                    stop.set(true);
                });
                for i in 0..50 {
                    let (events, hops) = (&events, &hops);
                    n.spawn(async move {
                        // Backwards against spawn order: one hop per round.
                        if i < 49 {
                            events[i + 1].wait().await;
                        }
                        hops.set(hops.get() + 1);
                        events[i].set();
                    });
                }
            })
            .await
            .unwrap();
            (spins.get(), hops.get())
        })
    });
    assert_eq!(hops, 50);
    assert!(
        spins >= 50,
        "the chain needed rounds beside the spinner: {spins}"
    );
}

/// The largest lead, in steps, that any of `tasks` yielding tasks had over the slowest one
/// at any moment, on a runtime from `builder`.
fn worst_lead(builder: Builder, tasks: usize, steps: u32) -> u32 {
    builder.run(async {
        let done: Vec<Cell<u32>> = (0..tasks).map(|_| Cell::new(0)).collect();
        let worst = Cell::new(0u32);
        nursery(async |n| {
            for i in 0..tasks {
                let (done, worst) = (&done, &worst);
                n.spawn(async move {
                    for _ in 0..steps {
                        let mine = done[i].get() + 1;
                        done[i].set(mine);
                        let min = done.iter().map(Cell::get).min().unwrap();
                        worst.set(worst.get().max(mine - min));
                        yield_now().await;
                    }
                });
            }
        })
        .await
        .unwrap();
        assert!(done.iter().all(|s| s.get() == steps));
        worst.get()
    })
}

/// Attacks DESIGN.md "within a nursery, ready children run in the order they became ready
/// (FIFO)" and `yield_now`'s "Lets every other ready task run once before this one
/// continues", with more yielding children than a nursery polls at once (256): at any
/// moment no task is more than one step ahead of any other.
#[test]
fn without_a_seed_yielding_tasks_beyond_the_poll_budget_stay_within_one_step() {
    for tasks in [100, 300] {
        let worst = watchdog(HANG_LIMIT, move || {
            worst_lead(Builder::new().autojump(), tasks, 20)
        });
        assert!(worst <= 1, "{tasks} tasks: one got {worst} steps ahead");
    }
}

/// Attacks `Builder::shuffle_seed`'s "What is permuted is the order within a round; every
/// ready task still runs once per round, so nothing starves": with every task yielding at
/// every step (so always ready), no task should get more than one step ahead of another,
/// whatever the seed. The nursery's poll budget (256 units) cuts rounds short, and the
/// next poll permutes the cut round's leftovers together with tasks that already ran.
#[test]
fn under_every_seed_yielding_tasks_stay_within_one_step_of_each_other() {
    for seed in [0, 1, 2, 7, 1234, u64::MAX] {
        let worst = watchdog(HANG_LIMIT, move || {
            worst_lead(Builder::new().autojump().shuffle_seed(seed), 100, 60)
        });
        assert!(worst <= 1, "seed {seed}: a task got {worst} steps ahead");
    }
}

// ---- instruments --------------------------------------------------------------------

/// Attacks `Instrument`'s "For each task ...: `task_spawned` once; then, for every poll,
/// `task_scheduled`, `before_task_poll`, `after_task_poll`; then `task_exited` once, with
/// how it ended" and `TaskOutcome`'s variants, in every shape a task can end in: returned,
/// failed, panicked in a poll, panicked in its destructor, cancelled by a failure, by its
/// handle, as a grandchild, spawned by a destructor during a cancellation, started, failed
/// before it was ready, finished without being ready, abandoned by its `start`.
#[test]
fn every_task_spawned_exits_exactly_once_whichever_way_it_ends() {
    let ledger = Ledger::default();
    let ledger2 = ledger.clone();
    watchdog(HANG_LIMIT, move || {
        Builder::new().autojump().instrument(ledger2).run(async {
            // Failures, a destructor panic, cancellations.
            let failed = common::catch_unwind(nursery(async |n| {
                n.spawn_named("returns", async { Ok::<(), &str>(()) });
                n.spawn_named("fails", async {
                    sleep(SEC).await;
                    Err::<(), _>("no")
                });
                n.spawn_named("drop-panics", async {
                    let _bomb = PanicOnDrop("bang in a destructor");
                    sleep_forever().await;
                    Ok(())
                });
                n.spawn_named("cancelled", async {
                    sleep_forever().await;
                    Ok(())
                });
                let handle = n.spawn_named("handle-cancelled", async {
                    sleep_forever().await;
                    Ok(())
                });
                handle.cancel();
                n.spawn_named("with", async move {
                    // The inner nursery is cancelled by its own child's failure (not hard
                    // dropped), so a child its body spawns while being dropped is kept and
                    // runs to its first suspension.
                    let inner = nursery(async |m| {
                        m.spawn_named("grandchild", sleep_forever());
                        m.spawn_named("inner-fails", async {
                            yield_now().await;
                            Err::<(), _>("inner")
                        });
                        let _spawner = OnDrop(|| {
                            m.spawn_named("from-a-destructor", yield_now());
                        });
                        sleep_forever().await;
                        Ok(())
                    })
                    .await;
                    assert_eq!(inner.unwrap_err().into_errors(), ["inner"]);
                    sleep_forever().await;
                    Ok(())
                });
                Ok(())
            }))
            .await;
            let payload = failed.expect_err("the destructor's panic resumes");
            assert_eq!(panic_message(&*payload), "bang in a destructor");
            // A panic in a poll.
            let panicked = common::catch_unwind(nursery(async |n| {
                n.spawn_named("poll-panics", async {
                    yield_now().await;
                    panic!("bang in a poll")
                });
            }))
            .await;
            assert!(panicked.is_err());
            // `start` in its shapes.
            let _ = nursery(async |n| {
                let ok: Result<u8, _> = n
                    .start_named("started", async |_n, status| {
                        status.started(1);
                        sleep(SEC).await;
                        Ok::<(), &str>(())
                    })
                    .await;
                assert_eq!(ok.unwrap(), 1);
                let early: Result<u8, _> = n
                    .start_named("fails-early", async |_n, _status| Err::<(), _>("early"))
                    .await;
                assert!(early.is_err());
                let unready: Result<u8, _> = n
                    .start_named("never-ready", async |_n, _status| Ok::<(), &str>(()))
                    .await;
                assert!(unready.unwrap_err().is_not_ready());
                let abandoned = poll_once(n.start_named(
                    "abandoned",
                    async |_n, _status: trellis::TaskStatus<u8>| {
                        sleep_forever().await;
                        Ok::<(), &str>(())
                    },
                ))
                .await;
                drop(abandoned);
                Ok::<(), &str>(())
            })
            .await;
        });
    });
    for (name, outcome) in [
        ("returns", "returned"),
        ("fails", "failed"),
        ("drop-panics", "panicked: \"bang in a destructor\""),
        ("cancelled", "cancelled"),
        ("handle-cancelled", "cancelled"),
        ("grandchild", "cancelled"),
        ("inner-fails", "failed"),
        ("from-a-destructor", "cancelled"),
        ("with", "cancelled"),
        ("poll-panics", "panicked: \"bang in a poll\""),
        ("started", "returned"),
        ("abandoned", "cancelled"),
    ] {
        assert_eq!(ledger.outcome_of(name), outcome, "{name}");
    }
    for name in ["fails-early", "never-ready"] {
        let _ = ledger.outcome_of(name); // exactly one exit, whatever it is called
    }
}

/// Attacks `TaskOutcome`'s "`Returned`: It returned a value (for a fallible task: `Ok`)",
/// "`Failed`: It returned `Err`" and "`Panicked`: It panicked, in a poll or in a
/// destructor", for children given to `start` that fail or panic before `started`: their
/// failure comes out of `start` (not the nursery), but the instrument should still hear
/// that the task failed or panicked, not that it returned.
#[test]
fn a_start_child_failing_before_it_is_ready_is_not_reported_as_returned() {
    let ledger = Ledger::default();
    let ledger2 = ledger.clone();
    watchdog(HANG_LIMIT, move || {
        Builder::new().autojump().instrument(ledger2).run(async {
            let _ = nursery(async |n| {
                let early: Result<u8, _> = n
                    .start_named("fails-early", async |_n, _status| Err::<(), _>("early"))
                    .await;
                assert_eq!(early.unwrap_err().into_error(), Some("early"));
                let panicked = common::catch_unwind(n.start_named(
                    "panics-early",
                    async |_n, _status: trellis::TaskStatus<u8>| -> Result<(), &str> {
                        panic!("early panic")
                    },
                ))
                .await;
                assert!(panicked.is_err(), "the panic comes out of start");
                Ok::<(), &str>(())
            })
            .await;
        });
    });
    assert_eq!(ledger.outcome_of("fails-early"), "failed");
    assert_eq!(
        ledger.outcome_of("panics-early"),
        "panicked: \"early panic\""
    );
}

/// Attacks the same ledger for nurseries that go away from outside: "Dropping a nursery
/// future from outside ... is a hard cancel: everything drops at once, shields included",
/// and the deadlock report, which drops the deadlocked root. Every task heard of is
/// heard to exit once, `after_run` comes last also when `run` panics.
#[test]
fn hard_dropped_and_deadlocked_tasks_each_exit_once_and_after_run_comes_last() {
    let ledger = Ledger::default();
    let ledger2 = ledger.clone();
    let message = watchdog(HANG_LIMIT, move || {
        panic_message_of(|| {
            Builder::new().autojump().instrument(ledger2).run(async {
                let hard = poll_once(nursery(async |n| {
                    n.spawn_named("hard-plain", sleep_forever());
                    n.spawn_named("hard-shielded", shield(sleep(SEC)));
                    n.spawn_named("hard-with", async {
                        let _ = nursery(async |m| {
                            m.spawn_named("hard-grandchild", sleep_forever());
                            // Spawns into a nursery being dropped: never polled.
                            let _spawner = OnDrop(|| {
                                m.spawn_named("hard-from-a-destructor", yield_now());
                            });
                            sleep_forever().await;
                        })
                        .await;
                    });
                    // Polled (and finished) in the nursery's one poll, before the drop.
                    n.spawn_named("quick", async {});
                    sleep_forever().await;
                }))
                .await;
                yield_now().await;
                drop(hard);
                // Then a deadlock: the report drops these.
                let never = Event::new();
                nursery(async |n| {
                    n.spawn_named("deadlocked", never.wait());
                    n.spawn_with(async |m| {
                        m.spawn_named("deadlocked-grandchild", sleep_forever());
                        sleep_forever().await;
                    });
                    sleep_forever().await;
                })
                .await
                .unwrap();
            })
        })
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    let outcomes = ledger.outcomes();
    for (name, outcome) in &outcomes {
        if name.starts_with("hard-") || name.starts_with("deadlocked") {
            assert_eq!(outcome, "cancelled", "{name}: {outcomes:?}");
        }
    }
    assert!(
        outcomes.iter().any(|(n, _)| n == "deadlocked-grandchild"),
        "{outcomes:?}"
    );
    assert_eq!(ledger.outcome_of("quick"), "returned");
    // Spawned into a nursery being hard-dropped: dropped unpolled, and never announced.
    assert!(
        !outcomes.iter().any(|(n, _)| n == "hard-from-a-destructor"),
        "{outcomes:?}"
    );
    assert_eq!(ledger.0.lock().unwrap().last, Some("after_run"));
}

/// Attacks `Instrument`'s "An instrument that panics is removed, and the panic is reported
/// on stderr; the program runs on", for a panic in each of the twelve hooks: every bomb
/// goes off once, the program's result is unchanged, and a well-behaved instrument beside
/// them still balances.
#[test]
fn an_instrument_panicking_in_any_hook_goes_off_once_and_the_program_runs_on() {
    let ledger = Ledger::default();
    let counts: Vec<Arc<AtomicUsize>> = EVERY_HOOK.iter().map(|_| Arc::default()).collect();
    let mut builder = Builder::new().autojump();
    for (hook, count) in EVERY_HOOK.iter().zip(&counts) {
        builder = builder.instrument(BombIn(hook, count.clone()));
    }
    let builder = builder.instrument(ledger.clone());
    let release = ReleaseOnPark::default();
    let rx = release.channel();
    let builder = builder.instrument(release);
    let out = watchdog(HANG_LIMIT, move || {
        builder.run(async move {
            // A park (the io hooks), a cancellation, a failure, nested scopes.
            let from_thread = to_thread(move || rx.recv().unwrap()).await;
            let timed_out = move_on_after(SEC, sleep_forever()).await;
            let failed = nursery(async |n| {
                n.spawn(async { Err::<(), _>("child failed") });
                n.spawn(sleep_forever());
                Ok(())
            })
            .await;
            (from_thread, timed_out, failed.unwrap_err().into_errors())
        })
    });
    assert_eq!(out, (42, None, vec!["child failed"]));
    for (hook, count) in EVERY_HOOK.iter().zip(&counts) {
        assert_eq!(count.load(Ordering::SeqCst), 1, "the bomb in {hook}");
    }
    assert_eq!(ledger.outcomes().len(), 3);
}

/// Attacks "No sequence of panics aborts the process" (DESIGN.md) and "An instrument never
/// fails the program" (ARCHITECTURE.md): instruments that panic in `task_exited`,
/// `scope_exited` and `after_run` while the thread is already unwinding (the root panics
/// with a live nursery inside it, which is dropped by the unwind). The process must not
/// abort, and the root's own panic must come out of `run`.
#[test]
fn instruments_panicking_while_the_root_unwinds_do_not_abort() {
    let (status, stderr) = exit_of_test("child_instruments_panic_during_an_unwind");
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("CHILD OK"), "{stderr}");
    for hook in ["task_exited", "after_run"] {
        assert!(
            stderr.contains(&format!(
                "an instrument panicked in `{hook}` and was removed"
            )),
            "{hook}: {stderr}"
        );
    }
}

#[test]
#[ignore = "runs only as the child process of instruments_panicking_while_the_root_unwinds_do_not_abort"]
fn child_instruments_panic_during_an_unwind() {
    if !is_test_child() {
        return;
    }
    let hit = Arc::new(AtomicUsize::new(0));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Builder::new()
            .autojump()
            .instrument(BombIn("task_exited", hit.clone()))
            .instrument(BombIn("scope_exited", hit.clone()))
            .instrument(BombIn("after_run", hit.clone()))
            .run(async {
                let mut live = pin!(nursery(async |n| {
                    n.spawn(sleep_forever());
                    sleep_forever().await;
                }));
                std::future::poll_fn(|cx| {
                    let _ = live.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
                panic!("the root panics with a live nursery");
            })
    }));
    let payload = caught.expect_err("the root's panic comes out of run");
    assert_eq!(
        panic_message(&*payload),
        "the root panics with a live nursery"
    );
    eprintln!("CHILD OK after {} bomb(s)", hit.load(Ordering::SeqCst));
}

/// Attacks `dump_tree`'s "cheap enough to call from a task at any time" and `Instrument`'s
/// "Hooks run inside the runtime" (so on its thread, where `dump_tree` works): an
/// instrument that dumps the tree in every hook. If any dump panics, the instrument is
/// removed and its counts stop pairing up.
#[test]
fn an_instrument_may_dump_the_tree_from_every_hook() {
    #[derive(Clone, Default)]
    struct Dumper(Arc<Mutex<HashMap<&'static str, usize>>>);
    impl Dumper {
        fn dump(&self, hook: &'static str) {
            let text = trellis::dump_tree().to_string();
            assert!(text.starts_with("task tree"), "{text}");
            *self.0.lock().unwrap().entry(hook).or_default() += 1;
        }
        fn count(&self, hook: &str) -> usize {
            self.0.lock().unwrap().get(hook).copied().unwrap_or(0)
        }
    }
    impl Instrument for Dumper {
        fn task_spawned(&self, _: &TaskInfo) {
            self.dump("task_spawned");
        }
        fn task_scheduled(&self, _: &TaskInfo) {
            self.dump("task_scheduled");
        }
        fn before_task_poll(&self, _: &TaskInfo) {
            self.dump("before_task_poll");
        }
        fn after_task_poll(&self, _: &TaskInfo) {
            self.dump("after_task_poll");
        }
        fn task_exited(&self, _: &TaskInfo, _: &TaskOutcome) {
            self.dump("task_exited");
        }
        fn scope_entered(&self, _: &ScopeInfo) {
            self.dump("scope_entered");
        }
        fn scope_exited(&self, _: &ScopeInfo) {
            self.dump("scope_exited");
        }
        fn scope_cancelled(&self, _: &ScopeInfo, _: &CancelReason) {
            self.dump("scope_cancelled");
        }
    }
    let dumper = Dumper::default();
    let d2 = dumper.clone();
    watchdog(HANG_LIMIT, move || {
        Builder::new().autojump().instrument(d2).run(async {
            let _ = nursery(async |n| {
                n.spawn_named("sleeper", sleep(SEC));
                n.spawn_named("failer", async {
                    sleep(2 * SEC).await;
                    Err::<(), _>("stop")
                });
                n.spawn_named("cancelled", async {
                    move_on_after(SEC / 2, sleep_forever()).await;
                });
                sleep_forever().await;
                Ok(())
            })
            .await;
        });
    });
    assert_eq!(
        dumper.count("before_task_poll"),
        dumper.count("after_task_poll"),
        "a dump failed in a hook"
    );
    for hook in [
        "task_spawned",
        "before_task_poll",
        "task_exited",
        "scope_cancelled",
    ] {
        assert!(dumper.count(hook) > 0, "{hook} never dumped");
    }
    assert_eq!(dumper.count("task_spawned"), dumper.count("task_exited"));
    assert_eq!(dumper.count("scope_entered"), dumper.count("scope_exited"));
}

// ---- dump_tree ------------------------------------------------------------------------

/// Attacks `dump_tree`'s "cheap enough to call from a task at any time" and its "# Panics:
/// Outside a runtime" (so: nowhere else) at the awkward moments of a cancellation: from
/// the destructor of a child a failure is dropping, of a child a hard drop is dropping,
/// and of a task the deadlock report is dropping (the report must stay a deadlock
/// report, with no destructor panic mentioned).
#[test]
fn dump_tree_works_from_destructors_during_cancellations_hard_drops_and_deadlocks() {
    struct DumpOnDrop<'a>(&'a RefCell<Vec<String>>, &'static str);
    impl Drop for DumpOnDrop<'_> {
        fn drop(&mut self) {
            let text = trellis::dump_tree().to_string();
            self.0.borrow_mut().push(format!("{}: {text}", self.1));
        }
    }
    let (dumps, message) = watchdog(HANG_LIMIT, || {
        let dumps = RefCell::new(Vec::new());
        let message = panic_message_of(|| {
            run_virtual(async {
                let dumps = &dumps;
                let _ = nursery(async |n| {
                    n.spawn_named("victim", async move {
                        let _d = DumpOnDrop(dumps, "cancelled");
                        sleep_forever().await;
                    });
                    n.spawn_named("bystander", shield(sleep(SEC)));
                    n.spawn_named("failer", async { Err::<(), _>("stop") });
                    Ok(())
                })
                .await;
                let hard = poll_once(nursery(async |n| {
                    n.spawn_named("hard-victim", async move {
                        let _d = DumpOnDrop(dumps, "hard");
                        sleep_forever().await;
                    });
                    sleep_forever().await;
                }))
                .await;
                drop(hard);
                nursery(async |n| {
                    n.spawn_named("stuck", async move {
                        let _d = DumpOnDrop(dumps, "deadlock");
                        Event::new().wait().await;
                    });
                })
                .await
                .unwrap();
            })
        });
        (dumps.into_inner(), message)
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    assert!(!message.contains("a destructor panicked"), "{message}");
    assert_eq!(dumps.len(), 3, "{dumps:#?}");
    assert!(dumps[0].starts_with("cancelled: task tree"), "{dumps:#?}");
    assert!(
        dumps[0].contains("\"bystander\""),
        "the shielded sibling is still there: {dumps:#?}"
    );
    assert!(dumps[1].starts_with("hard: task tree"), "{dumps:#?}");
    assert!(dumps[2].starts_with("deadlock: task tree"), "{dumps:#?}");
}

/// Attacks "`dump_tree` ... From another thread, run it on the runtime with
/// `RuntimeHandle::run_sync`" and the tree's "being cancelled" state, while a cancellation
/// is held off by a shield whose task itself waits for that other thread: the tree shows
/// the cancelled scope with its reason, the shielded task being cancelled, and the name
/// of the child whose failure cancelled it.
#[test]
fn a_tree_dumped_from_another_thread_during_a_held_cancellation_shows_it() {
    let text = watchdog(HANG_LIMIT, || {
        Builder::new().task_tree().run(async {
            let handle = RuntimeHandle::current();
            let text = RefCell::new(String::new());
            let _ = nursery(async |n| {
                n.spawn_named("saver", async {
                    shield(async {
                        // Wait until the failure below has cancelled the nursery.
                        trellis::cancelled().await;
                        let tree = to_thread(move || handle.run_sync(trellis::dump_tree))
                            .await
                            .unwrap();
                        *text.borrow_mut() = tree.to_string();
                    })
                    .await;
                });
                n.spawn_named("broken disk", async {
                    yield_now().await;
                    Err::<(), _>("disk full")
                });
                Ok(())
            })
            .await;
            text.into_inner()
        })
    });
    assert!(
        text.contains("nursery, cancelled (child 2 \"broken disk\" failed)"),
        "{text}"
    );
    assert!(
        text.contains("child 1 \"saver\": waiting inside, in a shield, being cancelled"),
        "{text}"
    );
}

/// Attacks "every task has a name ... shown in errors (a `JoinError`'s and a
/// `StartError`'s too) and cancel reasons; the live task tree" with names a program might
/// really compute: an owned `String`, an empty one, quotes, a newline and non-ASCII. The
/// tree and errors quote them (`{name:?}`), so a name cannot forge a line of the tree.
#[test]
fn odd_task_names_are_quoted_in_the_tree_errors_and_cancel_reasons() {
    let (tree, group, join) = watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let tree = RefCell::new(String::new());
            let join = RefCell::new(String::new());
            let group = nursery(async |n| {
                let owned = format!("worker #{}", 7);
                n.spawn_named(owned, sleep(10 * SEC));
                n.spawn_named("", sleep(10 * SEC));
                let forger = n.spawn_named("x\"\n      task 99: forged", sleep_forever());
                n.spawn_named("ünï ☃", async {
                    sleep(SEC).await;
                    Err::<(), _>("snow")
                });
                yield_now().await;
                *tree.borrow_mut() = trellis::dump_tree().to_string();
                let err = shield(forger).await.unwrap_err();
                *join.borrow_mut() = err.to_string();
                Ok(())
            })
            .await;
            (
                tree.into_inner(),
                group.unwrap_err().to_string(),
                join.into_inner(),
            )
        })
    });
    assert!(
        tree.contains("child 1 \"worker #7\": waiting on a timer"),
        "{tree}"
    );
    assert!(tree.contains("child 2 \"\": waiting on a timer"), "{tree}");
    assert!(
        tree.contains(r#"child 3 "x\"\n      task 99: forged""#),
        "{tree}"
    );
    assert!(
        !tree.contains("\n      task 99: forged"),
        "a name forged a line: {tree}"
    );
    assert!(tree.contains("child 4 \"ünï ☃\""), "{tree}");
    assert_eq!(group, "child 4 \"ünï ☃\" failed: snow");
    assert_eq!(
        join,
        r#"child 3 "x\"\n      task 99: forged" was cancelled before it finished"#
    );
}

// ---- the macros at run time ------------------------------------------------------------

mod entry_points {
    use std::time::Duration;

    /// `#[trellis::main]` on a function of a module (not the crate's `main`).
    #[trellis::main(autojump)]
    pub(super) async fn main() -> Result<Duration, String> {
        let start = trellis::now();
        trellis::sleep(Duration::from_secs(86_400)).await;
        let parsed: u32 = "12".parse().map_err(|_| "not a number".to_owned())?;
        if parsed != 12 {
            return Err("wrong".into());
        }
        let _: u32 = "twelve"
            .parse()
            .map_err(|_| format!("failed after {:?}", trellis::now() - start))?;
        Ok(trellis::now() - start)
    }
}

/// Attacks `#[trellis::main]`'s "may return ... `Result<(), E>` (any type `fn main` may
/// return)" with options and `?`, and its expansion `trellis::Builder::new().run(async
/// move { BODY })`: the error comes back from the function, virtual time jumped; and called
/// from inside a runtime it is the clear nested-runtime panic, not a hang.
#[test]
fn a_main_function_returns_its_error_and_refuses_to_run_inside_a_runtime() {
    assert_eq!(
        entry_points::main(),
        Err(format!("failed after {:?}", Duration::from_secs(86_400)))
    );
    let message = panic_message_of(|| trellis::run(async { entry_points::main() }));
    assert!(message.contains("cannot be nested"), "{message}");
}

/// Attacks `#[trellis::test(autojump)]` together with `#[should_panic]`: the attribute
/// keeps the user's other attributes, and the deadlock panic of the mock clock surfaces
/// as the test's panic ("[run] panics instead of hanging when the runtime is
/// deadlocked").
#[trellis::test(autojump)]
#[should_panic(expected = "trellis: deadlock")]
async fn a_deadlocked_autojump_test_fails_with_the_deadlock_panic() {
    let never = Event::new();
    nursery(async |n| {
        n.spawn(async { never.wait().await });
    })
    .await
    .unwrap();
}

/// Attacks `#[trellis::test]`'s "returns `()` or `Result<(), E>`" at run time: a test
/// returning `Err` must fail (the harness reports the error), in a child process.
#[test]
fn a_trellis_test_returning_err_fails() {
    let (status, stderr) = exit_of_test("child_a_trellis_test_that_returns_err");
    assert!(!status.success(), "the test passed: {stderr}");
    assert!(stderr.contains("the error it returned"), "{stderr}");
}

#[trellis::test(autojump)]
#[ignore = "runs only as the child process of a_trellis_test_returning_err_fails"]
async fn child_a_trellis_test_that_returns_err() -> Result<(), String> {
    if !is_test_child() {
        return Ok(());
    }
    sleep(SEC).await;
    Err("the error it returned".into())
}

static SHUFFLED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Attacks `#[trellis::test(shuffle)]`'s "runs the test once per seed ... on a fresh
/// runtime", with `autojump`: every run starts with a fresh clock and a fresh nursery,
/// and all (default 8, or `TRELLIS_SHUFFLE_SEEDS`) run when none fails.
#[trellis::test(autojump, shuffle)]
async fn a_shuffled_autojump_test_gets_a_fresh_runtime_per_seed() {
    SHUFFLED_RUNS.fetch_add(1, Ordering::SeqCst);
    let start = trellis::now();
    let order = RefCell::new(Vec::new());
    nursery(async |n| {
        for i in 0..4u64 {
            let order = &order;
            n.spawn(async move {
                sleep(SEC * (i as u32 % 2)).await;
                order.borrow_mut().push(i);
            });
        }
    })
    .await
    .unwrap();
    let mut sorted = order.into_inner();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2, 3]);
    assert_eq!(trellis::now() - start, SEC, "a fresh clock, jumped once");
}

/// A generic `#[nursery]` function with a `where` clause, an explicit lifetime, borrowed
/// arguments of two kinds and `?` in its body.
#[trellis::nursery]
async fn checked_sum<'a, T>(
    n: Nursery,
    items: &'a [T],
    limit: u64,
    total: &'a Cell<u64>,
    dropped: &'a DropCounter,
) -> Result<u64, String>
where
    T: Copy + Into<u64> + std::fmt::Debug,
{
    total.set(0);
    for (i, item) in items.iter().enumerate() {
        let guard = dropped.guard();
        let _child = n.spawn(async move {
            sleep(SEC * i as u32).await;
            total.set(total.get() + (*item).into());
            guard.finish();
            if total.get() > limit {
                return Err(format!("{item:?} went over {limit}"));
            }
            Ok(())
        });
    }
    // `?` in the body: fails the nursery (cancelling the children) before they finish.
    let first: u64 = items.first().map(|&i| i.into()).ok_or("no items")?;
    if first == 0 {
        Err::<(), _>(String::from("starts at zero"))?;
    }
    Ok(first)
}

/// Attacks `#[nursery]`'s "children may borrow the function's arguments", "the function
/// returns only when every child has finished", "**`Result<T, E>`** ... `?` works in it
/// ... the function returns **the first error**", on a generic function: an early `?`
/// returns the body's error only after every child was dropped; a child's failure
/// cancels the others; the body's value comes back only when all children succeed.
#[trellis::test(autojump)]
async fn a_generic_nursery_fn_with_question_marks_waits_for_every_child() {
    let dropped = DropCounter::new();
    let total = Cell::new(0);
    assert_eq!(
        checked_sum::<u8>(&[], 10, &total, &dropped).await,
        Err("no items".into())
    );
    assert_eq!(
        checked_sum(&[0u32, 5], 10, &total, &dropped).await,
        Err("starts at zero".into())
    );
    assert_eq!(
        dropped.dropped(),
        2,
        "the early `?` dropped both children first"
    );
    let start = trellis::now();
    assert_eq!(
        checked_sum(&[4u16, 4, 4, 4], 10, &total, &dropped).await,
        Err("4 went over 10".into())
    );
    assert_eq!(
        trellis::now() - start,
        2 * SEC,
        "the third child failed at 2 s"
    );
    assert_eq!((dropped.finished(), dropped.dropped()), (3, 3));
    assert_eq!(checked_sum(&[1u8, 2, 3], 10, &total, &dropped).await, Ok(1));
    assert_eq!(dropped.finished(), 6);
}

/// A `#[nursery]` method of a generic type, returning `io::Result`.
struct Pool<T> {
    items: Vec<T>,
    seen: RefCell<Vec<String>>,
}

impl<T: std::fmt::Display> Pool<T> {
    #[trellis::nursery]
    async fn visit(&self, n: Nursery, fail_at: usize) -> std::io::Result<usize> {
        for (i, item) in self.items.iter().enumerate() {
            let _child = n.spawn_named(format!("visit {i}"), async move {
                yield_now().await;
                if i == fail_at {
                    return Err(std::io::Error::other(format!("bad item {item}")));
                }
                self.seen.borrow_mut().push(item.to_string());
                Ok(())
            });
        }
        Ok(self.items.len())
    }
}

/// Attacks `#[nursery]` on a method of a generic `impl` ("the function's name, for
/// `#[nursery]` functions" names the body; children borrow `self`), with an `io::Result`
/// ("any type whose last path segment is `Result`"): the first error comes back as the
/// function's error, after the siblings that had not finished were cancelled.
#[trellis::test]
async fn a_generic_nursery_method_returns_io_errors_and_borrows_self() {
    let pool = Pool {
        items: vec!["a", "b", "c"],
        seen: RefCell::new(Vec::new()),
    };
    assert_eq!(pool.visit(usize::MAX).await.unwrap(), 3);
    assert_eq!(*pool.seen.borrow(), ["a", "b", "c"]);
    pool.seen.borrow_mut().clear();
    let err = pool.visit(0).await.unwrap_err();
    assert_eq!(err.to_string(), "bad item a");
    assert!(pool.seen.borrow().len() <= 2);
}

/// Attacks "the function name for `#[nursery]` functions" (DESIGN.md "Instrumentation":
/// "Every task has a name ... used in errors, cancel reasons and dumps"): the body of a
/// `#[nursery]` function carries the function's name in the tree and to an instrument.
#[test]
fn a_nursery_fns_body_is_named_after_the_function_in_the_tree_and_instruments() {
    #[trellis::nursery]
    async fn named_server(n: Nursery, tree: &RefCell<String>) {
        let _child = n.spawn_named("conn", sleep(SEC));
        yield_now().await;
        *tree.borrow_mut() = trellis::dump_tree().to_string();
    }
    let ledger = Ledger::default();
    let tree = watchdog(HANG_LIMIT, {
        let ledger = ledger.clone();
        move || {
            Builder::new().autojump().instrument(ledger).run(async {
                let tree = RefCell::new(String::new());
                named_server(&tree).await;
                tree.into_inner()
            })
        }
    });
    assert!(tree.contains("the nursery body \"named_server\""), "{tree}");
    assert_eq!(ledger.outcome_of("named_server"), "returned");
    assert_eq!(ledger.outcome_of("conn"), "returned");
}

/// Attacks `instrument::add`'s "It stays registered until `remove`d or until the
/// runtime's `run` returns" and "a hook may add or remove instruments (seen from the next
/// event)": an instrument added from inside another's hook, in the first `task_spawned`;
/// the next runtime on the thread starts without it.
#[test]
fn an_instrument_added_from_a_hook_sees_the_next_events_and_not_the_next_run() {
    #[derive(Clone, Default)]
    struct Adder {
        added: Arc<AtomicBool>,
        late: Ledger,
    }
    // `instrument::add` takes any `'static` instrument; this one adds a clone of `late`.
    impl Instrument for Adder {
        fn task_spawned(&self, _: &TaskInfo) {
            if !self.added.swap(true, Ordering::SeqCst) {
                instrument::add(self.late.clone());
            }
        }
    }
    let adder = Adder::default();
    let late = adder.late.clone();
    watchdog(HANG_LIMIT, move || {
        Builder::new()
            .autojump()
            .instrument(adder)
            .run(nursery(async |n| {
                n.spawn_named("seen", sleep(SEC));
            }))
            .unwrap();
        run_virtual(nursery(async |n| {
            n.spawn_named("next run", async {});
        }))
        .unwrap();
    });
    let s = late.0.lock().unwrap();
    let names: Vec<&str> = s.spawned.iter().map(|(_, n)| n.as_str()).collect();
    // It was added in the body's `task_spawned`: it hears the child from its spawn on.
    assert_eq!(names, ["seen"], "{names:?}");
    assert_eq!(s.exits.len(), 2, "the body's exit and the child's");
    assert_eq!(s.runs, 0, "added midway: no before_run");
}
