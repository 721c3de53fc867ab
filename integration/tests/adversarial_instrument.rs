//! Adversarial programs against the promises of instrumentation and of the error values:
//! every hook of `trellis::instrument::Instrument` (each task spawned and exited exactly
//! once, in order, with the right outcome, whatever way it ends; polls well nested; the
//! reactor's waits; scope hooks), instruments that panic, re-enter the runtime or change
//! the instrument list from a hook, runtimes on several threads, `dump_tree` parsed and
//! checked against what the instruments saw, the `tracing` instrument's spans, task names
//! and labels, and the messages of the error types.
//!
//! Trio's `test_instrument*` tests (test_run.py) are ported where they apply. Time is
//! virtual (autojump); nothing sleeps for real; anything that could hang runs under the
//! watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Rng, guarded, panic_message, panic_message_of, poll_once, run_virtual, secs};
use trellis::instrument::{self, Instrument, ScopeInfo, TaskId, TaskInfo, TaskOutcome};
use trellis::{CancelReason, CancelScope, ErrorGroup, TaskName, nursery, sleep, yield_now};

// ---- an instrument that keeps every event ---------------------------------------------

/// One hook call, as the instrument saw it.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    BeforeRun,
    AfterRun,
    Spawned {
        id: u64,
        parent: u64,
        nursery: u64,
        name: TaskName,
        label: Option<String>,
        line: u32,
    },
    Scheduled(u64),
    Before(u64),
    After(u64),
    Exited(u64, TaskOutcome),
    IoWait(Option<Duration>),
    IoEvents(usize),
    ScopeEntered(u64),
    ScopeExited(u64),
    ScopeCancelled(u64, String),
}

/// Keeps every event; `Send + Sync`, so it may be given to the `Builder`.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Ev>>>);

impl Events {
    fn push(&self, ev: Ev) {
        self.0.lock().unwrap().push(ev);
    }

    fn all(&self) -> Vec<Ev> {
        self.0.lock().unwrap().clone()
    }

    /// The exits, by task id.
    fn exits(&self) -> BTreeMap<u64, TaskOutcome> {
        let mut exits = BTreeMap::new();
        for ev in self.all() {
            if let Ev::Exited(id, outcome) = ev {
                assert!(
                    exits.insert(id, outcome).is_none(),
                    "task {id} exited twice"
                );
            }
        }
        exits
    }

    /// The spawned tasks, by id: (name, label name).
    fn spawned(&self) -> BTreeMap<u64, (TaskName, Option<String>)> {
        let mut spawned = BTreeMap::new();
        for ev in self.all() {
            if let Ev::Spawned {
                id, name, label, ..
            } = ev
            {
                assert!(
                    spawned.insert(id, (name, label)).is_none(),
                    "task {id} spawned twice"
                );
            }
        }
        spawned
    }

    /// The tasks spawned and not exited yet.
    fn live(&self) -> BTreeSet<u64> {
        let exits = self.exits();
        self.spawned()
            .into_keys()
            .filter(|id| !exits.contains_key(id))
            .collect()
    }

    /// The outcome of the task with label name `label`.
    fn outcome_of(&self, label: &str) -> TaskOutcome {
        let spawned = self.spawned();
        let ids: Vec<u64> = spawned
            .iter()
            .filter(|(_, (_, l))| l.as_deref() == Some(label))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids.len(), 1, "one task named {label:?}: {spawned:?}");
        self.exits()
            .get(&ids[0])
            .cloned()
            .unwrap_or_else(|| panic!("{label:?} never exited: {:?}", self.all()))
    }
}

impl Instrument for Events {
    fn before_run(&self) {
        self.push(Ev::BeforeRun);
    }
    fn after_run(&self) {
        self.push(Ev::AfterRun);
    }
    fn task_spawned(&self, t: &TaskInfo) {
        self.push(Ev::Spawned {
            id: t.id().as_u64(),
            parent: t.parent().as_u64(),
            nursery: t.nursery(),
            name: t.name(),
            label: t.label().name().map(str::to_owned),
            line: t.label().location().line(),
        });
    }
    fn task_scheduled(&self, t: &TaskInfo) {
        self.push(Ev::Scheduled(t.id().as_u64()));
    }
    fn before_task_poll(&self, t: &TaskInfo) {
        self.push(Ev::Before(t.id().as_u64()));
    }
    fn after_task_poll(&self, t: &TaskInfo) {
        self.push(Ev::After(t.id().as_u64()));
    }
    fn task_exited(&self, t: &TaskInfo, outcome: &TaskOutcome) {
        self.push(Ev::Exited(t.id().as_u64(), outcome.clone()));
    }
    fn before_io_wait(&self, timeout: Option<Duration>) {
        self.push(Ev::IoWait(timeout));
    }
    fn after_io_wait(&self, events: usize) {
        self.push(Ev::IoEvents(events));
    }
    fn scope_entered(&self, s: &ScopeInfo) {
        self.push(Ev::ScopeEntered(s.id()));
    }
    fn scope_exited(&self, s: &ScopeInfo) {
        self.push(Ev::ScopeExited(s.id()));
    }
    fn scope_cancelled(&self, s: &ScopeInfo, reason: &CancelReason) {
        self.push(Ev::ScopeCancelled(s.id(), reason.to_string()));
    }
}

/// Checks the documented order of the hooks over a whole run (`Instrument`, "Order of the
/// hooks"): `before_run` first and `after_run` last, once each; per task `task_spawned`
/// once, before anything else of it; every poll is `task_scheduled`, `before_task_poll`,
/// `after_task_poll`, and polls nest (a task's poll encloses the polls of the tasks of the
/// nurseries it runs); `task_exited` once, after its last poll and never during its own
/// poll; a task's parent is a task whose poll is under way when it is spawned (or the
/// root); io waits come in pairs outside every poll. Returns the outcomes by task id.
fn check_lifecycles(events: &[Ev]) -> BTreeMap<u64, TaskOutcome> {
    assert_eq!(events.first(), Some(&Ev::BeforeRun), "{events:?}");
    assert_eq!(events.last(), Some(&Ev::AfterRun), "{events:?}");
    assert_eq!(events.iter().filter(|e| **e == Ev::BeforeRun).count(), 1);
    assert_eq!(events.iter().filter(|e| **e == Ev::AfterRun).count(), 1);
    let mut spawned = BTreeSet::new();
    let mut exited = BTreeMap::new();
    let mut stack: Vec<u64> = Vec::new();
    let mut in_io_wait = false;
    for (i, ev) in events.iter().enumerate() {
        let known = |id: &u64| {
            assert!(
                spawned.contains(id),
                "event {i} {ev:?} before the spawn of task {id}"
            );
            assert!(
                !exited.contains_key(id),
                "event {i} {ev:?} after task {id} exited"
            );
        };
        match ev {
            Ev::Spawned { id, parent, .. } => {
                assert!(spawned.insert(*id), "task {id} spawned twice");
                assert!(
                    *parent == 0 || stack.contains(parent),
                    "task {id} spawned in task {parent}, which is not being polled: {stack:?}"
                );
            }
            Ev::Scheduled(id) => {
                known(id);
                assert_eq!(events.get(i + 1), Some(&Ev::Before(*id)), "at {i}");
            }
            Ev::Before(id) => {
                known(id);
                assert_eq!(events[i - 1], Ev::Scheduled(*id), "at {i}");
                assert!(!stack.contains(id), "task {id} polled inside its own poll");
                stack.push(*id);
            }
            Ev::After(id) => {
                known(id);
                assert_eq!(stack.pop(), Some(*id), "polls nest: at {i}");
            }
            Ev::Exited(id, outcome) => {
                known(id);
                assert!(!stack.contains(id), "task {id} exited during its own poll");
                exited.insert(*id, outcome.clone());
            }
            Ev::IoWait(_) => {
                assert!(stack.is_empty() && !in_io_wait, "io wait at {i}: {stack:?}");
                in_io_wait = true;
            }
            Ev::IoEvents(_) => {
                assert!(in_io_wait, "io events without a wait at {i}");
                in_io_wait = false;
            }
            _ => {}
        }
    }
    assert!(stack.is_empty(), "{stack:?}");
    let never: Vec<&u64> = spawned
        .iter()
        .filter(|id| !exited.contains_key(id))
        .collect();
    assert!(never.is_empty(), "spawned but never exited: {never:?}");
    exited
}

/// The task ids a dump lists, each line `task N: ...`.
fn dumped_ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("task ")?;
            let (id, _) = rest.split_once(": ")?;
            id.parse().ok()
        })
        .collect()
}

// ---- the lifecycle of every task ------------------------------------------------------

/// Attacks `Instrument::task_exited`: "A task is gone: it returned, failed, panicked or was
/// cancelled", and `TaskOutcome`'s variants, for one child of each kind in one nursery
/// (ported from Trio's `test_instruments` with the outcomes Trio's `task_exited` cannot
/// tell): each exit once, with its own outcome.
#[test]
fn each_way_a_child_ends_is_its_own_exact_outcome() {
    let events = Events::default();
    let ev = events.clone();
    let payload = std::panic::catch_unwind(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                n.spawn_named("returns", async { Ok(()) });
                n.spawn_named("fails", async {
                    sleep(secs(1)).await;
                    Err::<(), _>("no")
                });
                n.spawn_named("panics in a poll", async {
                    sleep(secs(2)).await;
                    panic!("poll boom")
                });
                n.spawn_named("panics in its destructor", async {
                    let _bomb = common::PanicOnDrop("drop boom");
                    trellis::sleep_forever().await;
                    Ok(())
                });
                n.spawn_named("cancelled", trellis::sleep_forever());
                let handle = n.spawn_named("cancelled by its handle", trellis::sleep_forever());
                handle.cancel();
                Ok(())
            }))
    })
    .unwrap_err();
    // The failure at 1 s cancels the rest: the poll panic at 2 s never happens, and the
    // destructor's panic is the one that resumes.
    assert_eq!(panic_message(&*payload), "drop boom");
    let outcomes = check_lifecycles(&events.all());
    assert_eq!(outcomes.len(), 7, "the body and six children");
    assert_eq!(events.outcome_of("returns"), TaskOutcome::Returned);
    assert_eq!(events.outcome_of("fails"), TaskOutcome::Failed);
    assert_eq!(
        events.outcome_of("panics in a poll"),
        TaskOutcome::Cancelled
    );
    assert_eq!(
        events.outcome_of("panics in its destructor"),
        TaskOutcome::Panicked("\"drop boom\"".into())
    );
    assert_eq!(events.outcome_of("cancelled"), TaskOutcome::Cancelled);
    assert_eq!(
        events.outcome_of("cancelled by its handle"),
        TaskOutcome::Cancelled
    );
    assert_eq!(outcomes[&1], TaskOutcome::Returned, "the body returned Ok");
}

/// Attacks `TaskOutcome::Panicked`: "It panicked, in a poll or in a destructor; the panic's
/// message" — with a payload that is not a string, and with a `String` payload.
#[test]
fn a_panic_outcome_describes_payloads_that_are_not_str() {
    let events = Events::default();
    let ev = events.clone();
    let payload = std::panic::catch_unwind(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                n.spawn_named("number", async { std::panic::panic_any(42_u32) });
                n.spawn_named("string", async {
                    std::panic::panic_any(String::from("owned"))
                });
            }))
    })
    .unwrap_err();
    assert_eq!(
        payload.downcast_ref::<u32>(),
        Some(&42),
        "the first panic resumes"
    );
    check_lifecycles(&events.all());
    assert_eq!(
        events.outcome_of("number"),
        TaskOutcome::Panicked("(a payload that is not a string)".into())
    );
    assert_eq!(
        events.outcome_of("string"),
        TaskOutcome::Panicked("\"owned\"".into())
    );
    assert_eq!(
        events.outcome_of("number").to_string(),
        "panicked: (a payload that is not a string)"
    );
}

/// Attacks `TaskOutcome::Panicked` with two panics in one task: its poll panics, and then
/// its destructor panics when the nursery drops it. The nursery resumes the poll's panic and
/// reports the destructor's beside it; the instrument must be told the same, first, panic.
/// (A hand-written future: an `async` block's state is dropped by the poll's unwind, so a
/// second panic there is an abort, whoever polls it.)
#[test]
fn a_child_whose_poll_and_then_destructor_panic_exits_with_the_polls_panic() {
    struct PanicsTwice;
    impl std::future::Future for PanicsTwice {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            panic!("poll boom")
        }
    }
    impl Drop for PanicsTwice {
        fn drop(&mut self) {
            panic!("drop boom")
        }
    }
    let events = Events::default();
    let ev = events.clone();
    let payload = std::panic::catch_unwind(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                n.spawn_named("two panics", PanicsTwice);
            }))
    })
    .unwrap_err();
    assert_eq!(panic_message(&*payload), "poll boom");
    check_lifecycles(&events.all());
    assert_eq!(
        events.outcome_of("two panics"),
        TaskOutcome::Panicked("\"poll boom\"".into())
    );
}

/// Attacks the body's lifecycle: "For each task (a nursery's body, or a child):
/// `task_spawned` once … `task_exited` once, with how it ended", for bodies that fail,
/// panic and are cancelled by an enclosing scope.
#[test]
fn a_nursery_body_exits_once_with_how_it_ended() {
    let events = Events::default();
    let ev = events.clone();
    let panicked = std::panic::catch_unwind(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(async {
                let failed = nursery(async |_n| Err::<(), _>("body error")).await;
                assert_eq!(
                    failed.unwrap_err().to_string(),
                    "the nursery body failed: body error"
                );
                let cancelled = trellis::move_on_after(
                    secs(1),
                    nursery(async |_n| {
                        trellis::sleep_forever().await;
                        Ok::<_, ()>(())
                    }),
                )
                .await;
                assert!(cancelled.is_none());
                let _ = nursery(async |_n| -> Result<(), ()> { panic!("body panic") }).await;
            })
    })
    .unwrap_err();
    assert_eq!(panic_message(&*panicked), "body panic");
    let outcomes = check_lifecycles(&events.all());
    let bodies: Vec<TaskOutcome> = outcomes.into_values().collect();
    assert_eq!(
        bodies,
        [
            TaskOutcome::Failed,
            TaskOutcome::Cancelled,
            TaskOutcome::Panicked("\"body panic\"".into()),
        ]
    );
}

/// Attacks "Dropping a nursery future from outside … is a hard cancel: everything drops at
/// once, shields included" with an instrument: every task of the dropped nursery, shielded
/// ones and grandchildren included, exits once as cancelled, and the nursery's scope exits.
#[test]
fn a_hard_dropped_nursery_reports_every_task_cancelled_once() {
    let events = Events::default();
    let ev = events.clone();
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(async {
            let fut = nursery(async |n| {
                n.spawn_named("sleeper", trellis::sleep_forever());
                n.spawn_named("shielded", trellis::shield(trellis::sleep_forever()));
                n.spawn_named("parent", async {
                    nursery(async |n| {
                        n.spawn_named("grandchild", trellis::sleep_forever());
                    })
                    .await
                    .unwrap();
                });
                trellis::sleep_forever().await;
                Ok::<_, ()>(())
            });
            let fut = poll_once(fut).await;
            drop(fut);
        });
    let outcomes = check_lifecycles(&events.all());
    // Two bodies, four children, all cancelled but the inner body (task 5), which had
    // returned at once.
    let cancelled = TaskOutcome::Cancelled;
    let expected: BTreeMap<u64, TaskOutcome> = [1, 2, 3, 4, 5, 6]
        .into_iter()
        .map(|id| {
            (
                id,
                if id == 5 {
                    TaskOutcome::Returned
                } else {
                    cancelled.clone()
                },
            )
        })
        .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(events.outcome_of("grandchild"), TaskOutcome::Cancelled);
    assert_eq!(events.outcome_of("shielded"), TaskOutcome::Cancelled);
    let all = events.all();
    let entered = all
        .iter()
        .filter(|e| matches!(e, Ev::ScopeEntered(_)))
        .count();
    let exited = all
        .iter()
        .filter(|e| matches!(e, Ev::ScopeExited(_)))
        .count();
    assert_eq!(
        (entered, exited),
        (3, 3),
        "two nurseries and the shield: {all:?}"
    );
}

/// Attacks `Nursery::start` under an instrument: a child that fails, panics or returns
/// before `started` exits once with how its own future ended (not `returned` for one that
/// failed: the failure went to the starter), and a child that fails after `started` is the
/// nursery's failure.
#[test]
fn start_children_exit_with_how_their_future_ended() {
    let events = Events::default();
    let ev = events.clone();
    let out = guarded(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                let failed: Result<(), _> = n
                    .start_named("fails early", async |_n, _s| Err::<(), _>("early"))
                    .await;
                assert_eq!(failed.unwrap_err().error(), Some(&"early"));
                let not_ready: Result<(), _> =
                    n.start_named("never ready", async |_n, _s| {}).await;
                assert!(not_ready.unwrap_err().is_not_ready());
                let panicked = common::catch_unwind(
                    n.start_named("panics early", async |_n, _s: trellis::TaskStatus<()>| {
                        panic!("early panic")
                    }),
                )
                .await;
                assert_eq!(panic_message(&*panicked.unwrap_err()), "early panic");
                let port = n
                    .start_named("fails late", async |_n, s| {
                        s.started(80_u16);
                        sleep(secs(1)).await;
                        Err::<(), _>("late")
                    })
                    .await
                    .unwrap();
                assert_eq!(port, 80);
                trellis::sleep_forever().await;
                Ok(())
            }))
    });
    assert_eq!(
        out.unwrap_err().to_string(),
        "child 4 \"fails late\" failed: late"
    );
    check_lifecycles(&events.all());
    assert_eq!(events.outcome_of("fails early"), TaskOutcome::Failed);
    assert_eq!(events.outcome_of("never ready"), TaskOutcome::Returned);
    assert_eq!(
        events.outcome_of("panics early"),
        TaskOutcome::Panicked("\"early panic\"".into())
    );
    assert_eq!(events.outcome_of("fails late"), TaskOutcome::Failed);
}

/// Attacks `TaskInfo::parent`: "The task the nursery was opened in … the parent of its body
/// and of each of its children", for `spawn_with` children spawning siblings (which run
/// in the same nursery, so their parent is the nursery's task, not the spawner) and for a
/// nursery opened inside a `spawn_with` child. `TaskInfo::nursery` is the scope id the
/// nursery entered.
#[test]
fn spawn_with_children_and_their_siblings_have_the_nurserys_parent() {
    let events = Events::default();
    let ev = events.clone();
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(nursery(async |n| {
            n.spawn_with(async |n| {
                n.spawn_named("sibling", async {});
                nursery(async |inner| {
                    inner.spawn_named("nephew", async {});
                })
                .await
                .unwrap();
            });
        }))
        .unwrap();
    let all = events.all();
    check_lifecycles(&all);
    let spawns: Vec<(u64, u64, TaskName, Option<String>)> = all
        .iter()
        .filter_map(|e| match e {
            Ev::Spawned {
                id,
                parent,
                name,
                label,
                ..
            } => Some((*id, *parent, *name, label.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        spawns,
        [
            (1, 0, TaskName::Body, None),
            (2, 0, TaskName::Child(1), None),
            (3, 0, TaskName::Child(2), Some("sibling".into())),
            (4, 2, TaskName::Body, None),
            (5, 2, TaskName::Child(1), Some("nephew".into())),
        ]
    );
    // Each task's nursery is a scope entered before it, and the nephew's is another one.
    let nursery_of = |wanted: u64| {
        all.iter()
            .find_map(|e| match e {
                Ev::Spawned { id, nursery, .. } if *id == wanted => Some(*nursery),
                _ => None,
            })
            .unwrap()
    };
    let entered: Vec<u64> = all
        .iter()
        .filter_map(|e| match e {
            Ev::ScopeEntered(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(nursery_of(1), nursery_of(3));
    assert_ne!(nursery_of(1), nursery_of(5));
    assert!(entered.contains(&nursery_of(1)) && entered.contains(&nursery_of(5)));
}

/// Attacks "Every task has a name (its spawn site by default …)" for every way to spawn:
/// `spawn`, `spawn_named`, `spawn_with`, `start_soon`, `start`, `start_named`, and the
/// body (where the nursery was opened): each label's location is the line of its call.
#[test]
fn every_way_to_spawn_labels_the_task_with_its_own_call_site() {
    let events = Events::default();
    let ev = events.clone();
    let lines = RefCell::new(Vec::new());
    let l = &lines;
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(async move {
            l.borrow_mut().push(line!() + 1);
            nursery(async |n| {
                l.borrow_mut().push(line!() + 1);
                n.spawn(async {});
                l.borrow_mut().push(line!() + 1);
                n.spawn_named("named", async {});
                l.borrow_mut().push(line!() + 1);
                n.spawn_with(async |_n| {});
                l.borrow_mut().push(line!() + 1);
                n.start_soon(async {});
                l.borrow_mut().push(line!() + 1);
                let () = n.start(async |_n, s| s.started(())).await.unwrap();
                l.borrow_mut().push(line!() + 1);
                let started = n.start_named("s", async |_n, s| s.started(()));
                // The site is the call's, not the await's.
                let () = started.await.unwrap();
            })
            .await
            .unwrap();
        });
    let seen: Vec<u32> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            Ev::Spawned { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(seen, *lines.borrow());
}

/// Attacks "the function name for `#[nursery]` functions": the body of a `#[nursery]`
/// function is named after the function, in the instruments and in its failure.
#[test]
fn a_nursery_functions_body_is_named_after_the_function() {
    use trellis::Nursery;
    fn describe(group: ErrorGroup<String>) -> String {
        group.to_string()
    }
    #[trellis::nursery(map_err = describe)]
    async fn load_config(n: Nursery, fail: bool) -> Result<(), String> {
        n.spawn(async {});
        if fail {
            Err(String::from("bad config"))
        } else {
            Ok(())
        }
    }
    let events = Events::default();
    let ev = events.clone();
    let err = trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(async {
            load_config(false).await.unwrap();
            load_config(true).await.unwrap_err()
        });
    assert_eq!(
        err.to_string(),
        "the nursery body \"load_config\" failed: bad config"
    );
    let bodies: Vec<Option<String>> = events
        .spawned()
        .into_values()
        .filter(|(name, _)| *name == TaskName::Body)
        .map(|(_, label)| label)
        .collect();
    assert_eq!(
        bodies,
        [Some("load_config".into()), Some("load_config".into())]
    );
}

/// Attacks "A body's `task_spawned` comes at the first poll of its nursery": a nursery
/// future made but not polled yet has announced nothing.
#[test]
fn a_nursery_announces_its_body_only_when_first_polled() {
    let events = Events::default();
    let ev = events.clone();
    let ev2 = events.clone();
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(async move {
            let fut = nursery(async |n| {
                n.spawn(async {});
            });
            yield_now().await;
            assert_eq!(ev2.spawned().len(), 0, "made, not polled: {:?}", ev2.all());
            fut.await.unwrap();
            assert_eq!(ev2.spawned().len(), 2);
        });
}

/// Attacks the per-poll order (`task_scheduled`, `before_task_poll`, `after_task_poll`)
/// and "once" with a child that yields many times: the instrument counts exactly its
/// polls, and the task tree's poll count agrees with it.
#[test]
fn the_instruments_count_of_polls_is_the_tasks_and_the_trees() {
    let events = Events::default();
    let ev = events.clone();
    let polls = Cell::new(0);
    let tree = RefCell::new(String::new());
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(nursery(async |n| {
            let polls = &polls;
            n.spawn_named(
                "yielder",
                common::count_polls(polls, async {
                    for _ in 0..9 {
                        yield_now().await;
                    }
                    sleep(secs(5)).await;
                }),
            );
            sleep(secs(1)).await;
            *tree.borrow_mut() = trellis::dump_tree().to_string();
        }))
        .unwrap();
    let all = events.all();
    let outcomes = check_lifecycles(&all);
    assert_eq!(outcomes[&2], TaskOutcome::Returned);
    let before = all.iter().filter(|e| **e == Ev::Before(2)).count();
    let scheduled = all.iter().filter(|e| **e == Ev::Scheduled(2)).count();
    assert_eq!((before, scheduled), (polls.get(), polls.get()));
    assert_eq!(polls.get(), 11, "nine yields, the sleep, its end");
    let tree = tree.into_inner();
    assert!(
        tree.contains(
            "task 2: child 1 \"yielder\": waiting on a timer, due in 4s; age 1s, 10 polls"
        ),
        "{tree}"
    );
}

/// Random nursery trees (seeded): children that sleep, yield, open nurseries, fail, panic,
/// time out and dump the tree. Over every run the hooks keep their documented order
/// (`check_lifecycles`), and every dump lists exactly the tasks the instrument knows to be
/// live, each once (`dump_tree`: "the live tree of nurseries, scopes and tasks").
#[test]
fn random_trees_keep_the_hook_order_and_every_dump_lists_exactly_the_live_tasks() {
    guarded(|| {
        for seed in 0..40 {
            random_tree(seed);
        }
    });
}

struct World {
    rng: RefCell<Rng>,
    events: Events,
    dumps: Cell<usize>,
}

impl World {
    fn below(&self, n: u64) -> u64 {
        self.rng.borrow_mut().below(n)
    }

    /// The dump against the instrument's view: the same live tasks, each once, and the
    /// caller among them, running.
    fn check_dump(&self, seed: u64) {
        let tree = trellis::dump_tree();
        let text = tree.to_string();
        let ids = dumped_ids(&text);
        let listed: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            listed.len(),
            ids.len(),
            "seed {seed}: a task listed twice:\n{text}"
        );
        assert_eq!(tree.task_count(), ids.len(), "seed {seed}:\n{text}");
        assert_eq!(listed, self.events.live(), "seed {seed}:\n{text}");
        self.dumps.set(self.dumps.get() + 1);
    }
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

fn random_task<'a>(world: &'a World, seed: u64, depth: u32) -> Boxed<'a> {
    Box::pin(async move {
        for _ in 0..world.below(4) + 1 {
            match world.below(12) {
                0 | 1 => sleep(secs(world.below(3))).await,
                2 => yield_now().await,
                3 | 4 if depth < 3 => {
                    nursery(async |n| {
                        for _ in 0..world.below(3) + 1 {
                            n.spawn(random_task(world, seed, depth + 1));
                        }
                        random_task(world, seed, depth + 1).await
                    })
                    .await
                    .map_err(|group| group.to_string())?;
                }
                5 | 6 => world.check_dump(seed),
                7 if world.below(3) == 0 => return Err(String::from("random failure")),
                8 if world.below(6) == 0 => panic!("random panic"),
                9 => {
                    let _ = trellis::move_on_after(secs(1), sleep(secs(world.below(3)))).await;
                }
                10 => {
                    trellis::shield(async {
                        yield_now().await;
                        world.check_dump(seed);
                    })
                    .await;
                }
                _ => sleep(Duration::ZERO).await,
            }
        }
        Ok(())
    })
}

fn random_tree(seed: u64) {
    let world = World {
        rng: RefCell::new(Rng::new(seed)),
        events: Events::default(),
        dumps: Cell::new(0),
    };
    let ev = world.events.clone();
    let w = &world;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                for _ in 0..3 {
                    n.spawn(random_task(w, seed, 1));
                }
                random_task(w, seed, 1).await
            }))
    }));
    let outcomes = check_lifecycles(&world.events.all());
    assert!(outcomes.len() >= 4, "seed {seed}");
}

// ---- the reactor's waits and thread work ----------------------------------------------

/// Attacks `before_io_wait` / `after_io_wait` ("around each look into the I/O poller") and
/// "The mock clock does not jump while thread work is in flight": a runtime with no
/// socket that waits for `to_thread` work parks with no timeout, reported as a wait of
/// `None` and 0 events, and no time passes; the task awaiting the work is one task, and
/// the worker none.
#[test]
fn waiting_for_thread_work_is_an_io_wait_without_timeout_and_no_task() {
    let events = Events::default();
    let ev = events.clone();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let release = Mutex::new(Some(release));
    /// Lets the worker finish only once the runtime announced its wait.
    struct Gate(Mutex<Option<std::sync::mpsc::Sender<()>>>);
    impl Instrument for Gate {
        fn before_io_wait(&self, _: Option<Duration>) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
    let waited = guarded(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(Gate(release))
            .instrument(ev)
            .run(nursery(async |n| {
                let waited = n.spawn_named("awaits the worker", async move {
                    let start = trellis::now();
                    trellis::to_thread(move || wait.recv().unwrap()).await;
                    Ok(trellis::now() - start)
                });
                trellis::sleep(Duration::ZERO).await;
                waited.await.map_err(|_| ())
            }))
    });
    assert_eq!(
        waited,
        Ok(Duration::ZERO),
        "no time passed while the work ran"
    );
    let all = events.all();
    let first_wait = all
        .iter()
        .position(|e| matches!(e, Ev::IoWait(_)))
        .expect("a wait");
    assert_eq!(all[first_wait], Ev::IoWait(None), "{all:?}");
    assert_eq!(all[first_wait + 1], Ev::IoEvents(0), "{all:?}");
    assert_eq!(
        events.spawned().len(),
        2,
        "the body and the awaiting child only"
    );
    assert_eq!(
        events.outcome_of("awaits the worker"),
        TaskOutcome::Returned
    );
}

/// Attacks `to_thread` under cancellation with an instrument: the awaiting task is
/// cancelled by a sibling's failure while its worker still runs; it exits once as
/// cancelled and the run ends without the worker (its result is abandoned).
#[test]
fn a_task_cancelled_while_its_thread_work_runs_exits_once_as_cancelled() {
    let events = Events::default();
    let ev = events.clone();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let err = guarded(move || {
        trellis::Builder::new()
            .autojump()
            .instrument(ev)
            .run(nursery(async |n| {
                n.spawn_named("blocked", async move {
                    trellis::to_thread(move || {
                        let _ = wait.recv();
                    })
                    .await;
                    Ok(())
                });
                n.spawn_named("fails", async {
                    yield_now().await;
                    Err::<(), _>("stop")
                });
                Ok(())
            }))
    });
    let _ = release.send(());
    assert_eq!(
        err.unwrap_err().to_string(),
        "child 2 \"fails\" failed: stop"
    );
    check_lifecycles(&events.all());
    assert_eq!(events.outcome_of("blocked"), TaskOutcome::Cancelled);
}

/// Attacks "`before_run` first and `after_run` last (also when the root future panics)"
/// and "task_exited once" for the mock clock's deadlock panic: the runtime drops the
/// deadlocked root to write its report; every task still exits once, as cancelled, and
/// `after_run` still comes last.
#[test]
fn a_deadlock_still_exits_every_task_once_and_ends_with_after_run() {
    let events = Events::default();
    let ev = events.clone();
    let message = guarded(move || {
        panic_message_of(move || {
            trellis::Builder::new()
                .autojump()
                .instrument(ev)
                .run(nursery(async |n| {
                    n.spawn_named("stuck", async {
                        trellis::Event::new().wait().await;
                    });
                    n.spawn_named("stuck too", async {
                        nursery(async |n| {
                            n.spawn_named("stuck inside", async {
                                trellis::Event::new().wait().await;
                            });
                        })
                        .await
                        .unwrap();
                    });
                    trellis::Event::new().wait().await;
                }))
        })
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    let outcomes = check_lifecycles(&events.all());
    let cancelled: Vec<u64> = outcomes
        .iter()
        .filter(|(_, o)| **o == TaskOutcome::Cancelled)
        .map(|(id, _)| *id)
        .collect();
    // The outer body, its two children, the inner body's child; the inner body returned.
    assert_eq!(cancelled, [1, 2, 3, 5], "{outcomes:?}");
    assert_eq!(outcomes[&4], TaskOutcome::Returned);
}

// ---- runtimes and threads -------------------------------------------------------------

/// Attacks "One runtime per thread … sharing nothing" for instruments: two runtimes on two
/// threads at once, each with its own instrument and a different program, and a third
/// runtime inside a `to_thread` worker of the first: each instrument sees its own tasks
/// only, numbered from 1 (`TaskId`: "unique among the runtime's tasks, in creation order").
#[test]
fn runtimes_on_other_threads_and_in_workers_have_their_own_instruments_and_ids() {
    guarded(|| {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let inner = Events::default();
        let run_with =
            |children: usize, barrier: Arc<std::sync::Barrier>, inner: Option<Events>| {
                let events = Events::default();
                let ev = events.clone();
                let thread = std::thread::spawn(move || {
                    trellis::Builder::new()
                        .autojump()
                        .instrument(ev)
                        .run(nursery(async |n| {
                            for _ in 0..children {
                                n.spawn(sleep(secs(1)));
                            }
                            // Both runtimes are live here at once.
                            let b = barrier.clone();
                            trellis::to_thread(move || {
                                b.wait();
                            })
                            .await;
                            if let Some(inner) = inner {
                                trellis::to_thread(move || {
                                    trellis::Builder::new()
                                        .autojump()
                                        .instrument(inner)
                                        .run(nursery(async |n| {
                                            n.spawn_named("inner", async {});
                                        }))
                                        .unwrap();
                                })
                                .await;
                            }
                            Ok::<_, ()>(())
                        }))
                        .unwrap();
                });
                (events, thread)
            };
        let (a, ta) = run_with(2, barrier.clone(), Some(inner.clone()));
        let (b, tb) = run_with(5, barrier, None);
        ta.join().unwrap();
        tb.join().unwrap();
        let ids = |e: &Events| e.spawned().into_keys().collect::<Vec<u64>>();
        assert_eq!(ids(&a), [1, 2, 3]);
        assert_eq!(ids(&b), [1, 2, 3, 4, 5, 6]);
        assert_eq!(ids(&inner), [1, 2]);
        assert_eq!(inner.spawned()[&2].1.as_deref(), Some("inner"));
        for e in [&a, &b, &inner] {
            check_lifecycles(&e.all());
        }
    });
}

/// Attacks "Running a runtime inside a runtime is a clear panic" from an instrument's
/// point of view: the nested `run` panics before it installs anything, so the outer
/// instrument is neither removed nor emptied, and sees the rest of the run.
#[test]
fn a_nested_run_panics_clearly_and_leaves_the_outer_instrument_in_place() {
    let events = Events::default();
    let ev = events.clone();
    let message = RefCell::new(String::new());
    trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(async {
            *message.borrow_mut() = panic_message_of(|| {
                trellis::Builder::new()
                    .instrument(Events::default())
                    .run(async {})
            });
            nursery(async |n| {
                n.spawn_named("after the nested run", async {});
            })
            .await
            .unwrap();
        });
    assert!(
        message
            .borrow()
            .contains("trellis::run was called inside a trellis runtime"),
        "{}",
        message.borrow()
    );
    check_lifecycles(&events.all());
    assert_eq!(
        events.outcome_of("after the nested run"),
        TaskOutcome::Returned
    );
}

// ---- hooks that misbehave or re-enter -------------------------------------------------

/// Attacks "An instrument that panics is removed, and the panic is reported on stderr; the
/// program runs on" when the hook panics while the thread is already unwinding: the root
/// future panics with a nursery alive, the unwind drops its children, and the instrument
/// panics in `task_exited` there. The process must not abort; the root's panic reaches the
/// caller.
#[test]
fn an_instrument_panicking_during_an_unwind_does_not_abort() {
    let (status, stderr) =
        common::exit_of_test("child_process_an_instrument_panics_during_an_unwind");
    assert!(status.success(), "status {status:?}, stderr: {stderr}");
    assert!(stderr.contains("root panic reached the caller"), "{stderr}");
    assert!(
        stderr.contains("trellis: an instrument panicked in `task_exited` and was removed"),
        "{stderr}"
    );
}

#[test]
#[ignore = "runs only as the child process of an_instrument_panicking_during_an_unwind_does_not_abort"]
fn child_process_an_instrument_panics_during_an_unwind() {
    if !common::is_test_child() {
        return;
    }
    struct PanicsOnExit(Arc<Mutex<usize>>);
    impl Instrument for PanicsOnExit {
        fn task_exited(&self, _: &TaskInfo, _: &TaskOutcome) {
            *self.0.lock().unwrap() += 1;
            panic!("instrument bug");
        }
    }
    let calls = Arc::new(Mutex::new(0));
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trellis::Builder::new()
            .autojump()
            .instrument(PanicsOnExit(calls.clone()))
            .run(async {
                let tasks = nursery(async |n| {
                    n.spawn(trellis::sleep_forever());
                    n.spawn(trellis::sleep_forever());
                    trellis::sleep_forever().await;
                    Ok::<_, ()>(())
                });
                let boom = async {
                    yield_now().await;
                    panic!("root panic");
                };
                let _ = futures::join!(tasks, boom);
            })
    }))
    .unwrap_err();
    assert_eq!(panic_message(&*payload), "root panic");
    assert_eq!(*calls.lock().unwrap(), 1, "removed after its first panic");
    eprintln!("root panic reached the caller");
}

/// Attacks the panicking-instrument rule in `before_run` and `after_run`: removed at once,
/// the run and the other instruments unaffected, and the caller gets the root's value.
#[test]
fn an_instrument_panicking_in_before_run_or_after_run_changes_nothing_else() {
    struct Bad {
        at_start: bool,
        calls: Arc<Mutex<Vec<&'static str>>>,
    }
    impl Instrument for Bad {
        fn before_run(&self) {
            self.calls.lock().unwrap().push("before_run");
            if self.at_start {
                panic!("bad start");
            }
        }
        fn task_spawned(&self, _: &TaskInfo) {
            self.calls.lock().unwrap().push("task_spawned");
        }
        fn after_run(&self) {
            self.calls.lock().unwrap().push("after_run");
            panic!("bad end");
        }
    }
    let (first, second) = (Arc::default(), Arc::default());
    let events = Events::default();
    let out = trellis::Builder::new()
        .autojump()
        .instrument(Bad {
            at_start: true,
            calls: Arc::clone(&first),
        })
        .instrument(Bad {
            at_start: false,
            calls: Arc::clone(&second),
        })
        .instrument(events.clone())
        .run(nursery(async |n| {
            n.spawn(async {});
            Ok::<_, ()>(7)
        }));
    assert_eq!(out, Ok(7));
    assert_eq!(*first.lock().unwrap(), ["before_run"]);
    assert_eq!(
        *second.lock().unwrap(),
        ["before_run", "task_spawned", "task_spawned", "after_run"]
    );
    check_lifecycles(&events.all());
}

/// Attacks `dump_tree`'s "cheap enough to call from a task at any time" from inside every
/// hook: an instrument that dumps the tree in each hook is never removed (a dump that
/// panicked there would remove it), so it sees `after_run`; and in `task_exited` the task
/// that exits is no longer listed, in `task_spawned` the new task is ("A hook that calls
/// `dump_tree` finds the task listed from its `task_spawned` on, and no longer in its
/// `task_exited`"; a body or child was announced before its record was kept).
#[test]
fn an_instrument_may_dump_the_tree_from_every_hook() {
    struct Dumper {
        events: Events,
        problems: Arc<Mutex<Vec<String>>>,
    }
    impl Dumper {
        fn dump(&self) -> Vec<u64> {
            dumped_ids(&trellis::dump_tree().to_string())
        }
    }
    impl Instrument for Dumper {
        fn before_run(&self) {
            self.dump();
            self.events.before_run();
        }
        fn after_run(&self) {
            self.dump();
            self.events.after_run();
        }
        fn task_spawned(&self, t: &TaskInfo) {
            let ids = self.dump();
            if !ids.contains(&t.id().as_u64()) {
                self.problems
                    .lock()
                    .unwrap()
                    .push(format!("spawned {} not listed: {ids:?}", t.id()));
            }
            self.events.task_spawned(t);
        }
        fn task_scheduled(&self, t: &TaskInfo) {
            self.dump();
            self.events.task_scheduled(t);
        }
        fn before_task_poll(&self, t: &TaskInfo) {
            self.dump();
            self.events.before_task_poll(t);
        }
        fn after_task_poll(&self, t: &TaskInfo) {
            self.dump();
            self.events.after_task_poll(t);
        }
        fn task_exited(&self, t: &TaskInfo, o: &TaskOutcome) {
            let ids = self.dump();
            if ids.contains(&t.id().as_u64()) {
                self.problems
                    .lock()
                    .unwrap()
                    .push(format!("exited {} still listed: {ids:?}", t.id()));
            }
            self.events.task_exited(t, o);
        }
        fn scope_entered(&self, s: &ScopeInfo) {
            self.dump();
            self.events.scope_entered(s);
        }
        fn scope_exited(&self, s: &ScopeInfo) {
            self.dump();
            self.events.scope_exited(s);
        }
        fn scope_cancelled(&self, s: &ScopeInfo, r: &CancelReason) {
            self.dump();
            self.events.scope_cancelled(s, r);
        }
    }
    let events = Events::default();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let out = guarded({
        let (events, problems) = (events.clone(), problems.clone());
        move || {
            trellis::Builder::new()
                .autojump()
                .instrument(Dumper { events, problems })
                .run(nursery(async |n| {
                    n.spawn(sleep(secs(1)));
                    n.spawn(trellis::shield(sleep(secs(2))));
                    n.spawn(async {
                        trellis::move_on_after(secs(1), trellis::sleep_forever()).await;
                        Err::<(), _>("late")
                    });
                    nursery(async |n| {
                        n.spawn(yield_now());
                    })
                    .await
                    .map_err(|_| "inner")?;
                    Ok(())
                }))
        }
    });
    assert_eq!(out.unwrap_err().to_string(), "child 3 failed: late");
    check_lifecycles(&events.all());
    assert!(
        problems.lock().unwrap().is_empty(),
        "{:?}",
        problems.lock().unwrap()
    );
}

/// Attacks `scope_cancelled` together with the dump's promise that a scope shows why it
/// was first cancelled ("A scope remembers why it was first cancelled … shown in debug
/// output and the task-tree dump"): a dump taken from the hook itself, when the
/// cancellation is being announced, already shows the reason.
#[test]
fn a_dump_from_scope_cancelled_shows_the_reason_being_announced() {
    #[derive(Clone, Default)]
    struct DumpOnCancel(Arc<Mutex<Vec<String>>>);
    impl Instrument for DumpOnCancel {
        fn scope_cancelled(&self, _: &ScopeInfo, reason: &CancelReason) {
            let text = trellis::dump_tree().to_string();
            self.0.lock().unwrap().push(format!("{reason} => {text}"));
        }
    }
    let seen = DumpOnCancel::default();
    let _ = trellis::Builder::new()
        .autojump()
        .instrument(seen.clone())
        .run(nursery(async |n| {
            n.spawn_named("worker", async {
                trellis::move_on_after(secs(1), trellis::sleep_forever()).await;
                Err::<(), _>("worker failed")
            });
            trellis::sleep_forever().await;
            Ok(())
        }));
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with("its deadline passed => "),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("cancel scope, deadline 0ns ago, cancelled (its deadline passed)"),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains("nursery, cancelled (child 1 \"worker\" failed)"),
        "{}",
        seen[1]
    );
}

/// Attacks `add` and `remove` from inside a hook: "a hook may add or remove instruments
/// (seen from the next event)". An instrument that adds another at the first spawn and
/// removes itself at the third: the added one sees from the second spawn on, the remover
/// nothing after its removal.
#[test]
fn a_hook_adding_and_removing_instruments_takes_effect_from_the_next_event() {
    struct Juggler {
        seen: Rc<RefCell<Vec<String>>>,
        added: Events,
        key: Rc<Cell<Option<instrument::InstrumentKey>>>,
        spawns: Cell<usize>,
    }
    impl Instrument for Juggler {
        fn task_spawned(&self, t: &TaskInfo) {
            self.seen.borrow_mut().push(format!("spawned {}", t.id()));
            self.spawns.set(self.spawns.get() + 1);
            match self.spawns.get() {
                1 => {
                    instrument::add(self.added.clone());
                }
                3 => {
                    let key = self.key.get().expect("known");
                    assert!(instrument::remove(key));
                }
                _ => {}
            }
        }
        fn task_exited(&self, t: &TaskInfo, _: &TaskOutcome) {
            self.seen.borrow_mut().push(format!("exited {}", t.id()));
        }
    }
    let seen = Rc::new(RefCell::new(Vec::new()));
    let added = Events::default();
    let (s, a) = (seen.clone(), added.clone());
    trellis::Builder::new().task_tree().run(async move {
        let key = Rc::new(Cell::new(None));
        key.set(Some(instrument::add(Juggler {
            seen: s,
            added: a,
            key: key.clone(),
            spawns: Cell::new(0),
        })));
        nursery(async |n| {
            n.spawn(async {});
            n.spawn(async {});
            n.spawn(async {});
        })
        .await
        .unwrap();
    });
    assert_eq!(
        *seen.borrow(),
        ["spawned task 1", "spawned task 2", "spawned task 3"]
    );
    let spawned: Vec<u64> = added.spawned().into_keys().collect();
    assert_eq!(spawned, [2, 3, 4]);
    assert_eq!(added.exits().len(), 4, "it saw the body exit too");
}

/// Attacks `add`: "it sees the events from now on" — an instrument added while tasks run
/// sees the exits of tasks spawned before it (Trio's rule too), each once, and every event
/// of the tasks spawned after.
#[test]
fn an_instrument_added_midway_sees_the_exits_of_older_tasks_once() {
    let added = Events::default();
    let a = added.clone();
    trellis::Builder::new()
        .autojump()
        .run(nursery(async move |n| {
            n.spawn_named("older", sleep(secs(2)));
            sleep(secs(1)).await;
            let key = instrument::add(a);
            n.spawn_named("newer", sleep(secs(2)));
            sleep(secs(5)).await;
            assert!(instrument::remove(key));
        }))
        .unwrap();
    let all = added.all();
    let exits = added.exits();
    assert_eq!(exits.len(), 2, "the older child and the newer: {all:?}");
    assert_eq!(exits[&2], TaskOutcome::Returned, "the older child, task 2");
    assert_eq!(exits[&3], TaskOutcome::Returned);
    assert_eq!(
        added.spawned().len(),
        1,
        "only the newer was spawned in its window"
    );
}

/// Attacks cancellation from a hook: an instrument added in a task (`add` takes any
/// `'static` instrument, so one may hold a `CancelScope`) cancels a scope when it sees a
/// spawn. The scope's `scope_cancelled` comes from inside that hook, the scope is
/// cancelled explicitly, and its body still runs to its first suspension.
#[test]
fn a_hook_that_cancels_a_scope_cancels_it_with_every_hook_in_order() {
    struct Canceller {
        scope: CancelScope,
        log: Rc<RefCell<Vec<String>>>,
    }
    impl Instrument for Canceller {
        fn task_spawned(&self, t: &TaskInfo) {
            self.log.borrow_mut().push(format!("spawned {}", t.name()));
            if t.label().name() == Some("trigger") {
                self.scope.cancel();
                self.log.borrow_mut().push("cancel returned".into());
            }
        }
        fn scope_cancelled(&self, _: &ScopeInfo, reason: &CancelReason) {
            self.log.borrow_mut().push(format!("cancelled: {reason}"));
        }
    }
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let out = trellis::Builder::new().autojump().run(async move {
        let scope = CancelScope::new();
        let key = instrument::add(Canceller {
            scope: scope.clone(),
            log: l.clone(),
        });
        let reached = Cell::new(false);
        let out = scope
            .clone()
            .run(nursery(async |n| {
                n.spawn_named("trigger", async {});
                reached.set(true);
                trellis::sleep_forever().await;
            }))
            .await;
        instrument::remove(key);
        (out.is_none(), reached.get(), scope.cancelled_caught())
    });
    assert_eq!(out, (true, true, true));
    assert_eq!(
        *log.borrow(),
        [
            "spawned the nursery body",
            "spawned child 1",
            "cancelled: cancelled explicitly",
            "cancel returned"
        ]
    );
}

// ---- dump_tree --------------------------------------------------------------------------

/// Attacks `dump_tree` in a deep tree: six nurseries nested through children, each level
/// with a sleeper beside it; the dump lists every live task once at its depth (indented
/// one step per level below its nursery), and the nurseries' bodies that returned are gone.
#[test]
fn a_deep_tree_lists_every_live_task_once_at_its_depth() {
    type Level<'a> = Pin<Box<dyn Future<Output = Result<(), ()>> + 'a>>;
    fn level(depth: u32, text: &RefCell<String>) -> Level<'_> {
        Box::pin(async move {
            nursery(async |n| {
                n.spawn_named(format!("sleeper {depth}"), trellis::sleep_forever());
                if depth < 6 {
                    n.spawn_named(format!("level {}", depth + 1), level(depth + 1, text));
                } else {
                    n.spawn_named("dumper", async {
                        sleep(secs(1)).await;
                        *text.borrow_mut() = trellis::dump_tree().to_string();
                        Err::<(), _>(())
                    });
                }
                Ok(())
            })
            .await
            .map_err(|_| ())
        })
    }
    let text = RefCell::new(String::new());
    // The dumper's failure then goes up level by level.
    let out = trellis::Builder::new().autojump().run(level(1, &text));
    assert_eq!(out, Err(()));
    let text = text.into_inner();
    let task_lines: Vec<&str> = text.lines().filter(|l| !dumped_ids(l).is_empty()).collect();
    // Per level a sleeper and the next level (the last: the dumper); the bodies returned.
    assert_eq!(task_lines.len(), 12, "{text}");
    for depth in 1..=6 {
        let sleeper = format!("\"sleeper {depth}\": waiting");
        let line = task_lines
            .iter()
            .find(|l| l.contains(&sleeper))
            .unwrap_or_else(|| panic!("no sleeper {depth}:\n{text}"));
        let indent = line.len() - line.trim_start().len();
        // The root line, then nursery (2), tasks (4); each level adds a task and a nursery.
        assert_eq!(indent, 4 * depth as usize, "{line:?}\n{text}");
    }
    assert!(
        !text.contains("the nursery body"),
        "every body had returned:\n{text}"
    );
    assert!(text.contains("child 2 \"dumper\": running"), "{text}");
    assert_eq!(
        text.matches(": running").count(),
        6,
        "the dumper and the levels above:\n{text}"
    );
}

/// Attacks the dump's text with hostile names: a newline, unicode and a name of 10 000
/// characters stay on their task's one line (quoted as the errors quote them), so a
/// line-based reader still finds each task once, and the long name is not cut.
#[test]
fn hostile_task_names_stay_on_their_own_line_of_the_dump() {
    let long = "x".repeat(10_000);
    let text = RefCell::new(String::new());
    let long2 = long.clone();
    let err = trellis::Builder::new()
        .autojump()
        .run(nursery(async |n| {
            n.spawn_named("two\nlines\ntask 99: fake", trellis::sleep_forever());
            n.spawn_named("naïve ☃ 名前", trellis::sleep_forever());
            n.spawn_named(long2, trellis::sleep_forever());
            n.spawn_named("", trellis::sleep_forever());
            yield_now().await;
            *text.borrow_mut() = trellis::dump_tree().to_string();
            Err::<(), _>("stop")
        }))
        .unwrap_err();
    let text = text.into_inner();
    assert_eq!(dumped_ids(&text), [1, 2, 3, 4, 5], "{text}");
    assert_eq!(
        text.lines().count(),
        7,
        "the root, the nursery, five tasks:\n{text}"
    );
    assert!(
        text.contains("child 1 \"two\\nlines\\ntask 99: fake\": waiting;"),
        "{text}"
    );
    assert!(
        text.contains("child 2 \"naïve ☃ 名前\": waiting;"),
        "{text}"
    );
    assert!(text.contains(&format!("child 3 \"{long}\": waiting;")));
    assert!(text.contains("child 4 \"\": waiting;"), "{text}");
    assert_eq!(err.to_string(), "the nursery body failed: stop");
}

/// Attacks "nothing is reported twice" and the names in errors for the same hostile
/// names: the failure's `Display` quotes a name with a newline on one line, and
/// `Failure::label` gives it back unchanged.
#[test]
fn hostile_task_names_in_errors_are_quoted_and_kept_exactly() {
    let group = run_virtual(nursery(async |n| {
        n.spawn_named("a\nb \"quoted\"", async { Err::<(), _>("first") });
        n.spawn_named("ünï", async { Err::<(), _>("second") });
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(
        group.to_string(),
        "2 tasks failed: child 1 \"a\\nb \\\"quoted\\\"\" failed: first; child 2 \"ünï\" failed: \
         second"
    );
    assert_eq!(group.to_string().lines().count(), 1);
    assert_eq!(group.failures()[0].label().name(), Some("a\nb \"quoted\""));
    assert_eq!(group.failures()[1].label().to_string(), "ünï");
}

/// Attacks the dump during a cancellation: a child's destructor that dumps the tree while
/// the child is being dropped by its nursery's cancellation. The dying child is no longer
/// listed (it has left the nursery), its siblings are, each once, and the nursery shows the
/// failure that cancelled it.
#[test]
fn a_dump_from_a_destructor_during_cancellation_lists_the_survivors() {
    let text = Rc::new(RefCell::new(String::new()));
    let t = text.clone();
    let err = trellis::Builder::new()
        .autojump()
        .run(nursery(async move |n| {
            n.spawn_named("dumps when dropped", async move {
                let _dump = common::OnDrop(move || {
                    *t.borrow_mut() = trellis::dump_tree().to_string();
                });
                trellis::sleep_forever().await;
            });
            n.spawn_named("cleanup", trellis::shield(sleep(secs(3))));
            n.spawn_named("fails", async {
                sleep(secs(1)).await;
                Err::<(), _>("failure")
            });
            Ok(())
        }))
        .unwrap_err();
    assert_eq!(err.to_string(), "child 3 \"fails\" failed: failure");
    let text = text.borrow().clone();
    assert!(
        text.contains("nursery, cancelled (child 3 \"fails\" failed)"),
        "{text}"
    );
    assert!(!text.contains("dumps when dropped"), "{text}");
    assert_eq!(text.matches("\"cleanup\"").count(), 1, "{text}");
    assert_eq!(
        dumped_ids(&text).len(),
        1,
        "only the shielded cleanup:\n{text}"
    );
}

/// Attacks the dump after tasks finished, across the reuse of pooled nursery parts: a
/// nursery that finished, then a new one (which may reuse its node and records), dumped
/// from inside: only the new nursery's tasks, never a stale record of the old one.
#[test]
fn a_dump_after_finished_nurseries_shows_no_stale_task() {
    let text = RefCell::new(String::new());
    trellis::Builder::new().autojump().run(async {
        for round in 0..3 {
            nursery(async |n| {
                for i in 0..4 {
                    n.spawn_named(format!("round {round} child {i}"), sleep(secs(i)));
                }
            })
            .await
            .unwrap();
        }
        nursery(async |n| {
            n.spawn_named("fresh", sleep(secs(2)));
            sleep(secs(1)).await;
            *text.borrow_mut() = trellis::dump_tree().to_string();
        })
        .await
        .unwrap();
    });
    let text = text.into_inner();
    assert!(!text.contains("round "), "{text}");
    assert_eq!(text.matches("  nursery").count(), 1, "{text}");
    assert_eq!(
        dumped_ids(&text).len(),
        2,
        "the body and \"fresh\":\n{text}"
    );
    assert!(
        text.contains("child 1 \"fresh\": waiting on a timer, due in 1s"),
        "{text}"
    );
}

// ---- tracing ------------------------------------------------------------------------------

/// Attacks the `tracing` feature's spans ("a span per task … entered during each of its
/// polls … closed at `task_exited`") with tasks that panic in a poll, are cancelled and are
/// hard-dropped: every task's span is opened once, entered and exited in order (a panicking
/// poll included: "`after_task_poll`: A task's poll returned (or panicked …)"), and closed
/// once; a `task exited` event names each non-returned outcome.
#[test]
fn every_task_span_is_closed_once_even_for_panics_and_hard_drops() {
    let collect = common::collect::Collect::default();
    let out = tracing::subscriber::with_default(collect.clone(), || {
        std::panic::catch_unwind(|| {
            trellis::Builder::new()
                .autojump()
                .instrument(trellis::instrument::Tracing::new())
                .run(async {
                    let dropped = nursery(async |n| {
                        n.spawn_named("hard dropped", trellis::sleep_forever());
                        trellis::sleep_forever().await;
                        Ok::<_, ()>(())
                    });
                    drop(poll_once(dropped).await);
                    nursery(async |n| {
                        n.spawn_named("sleeper", trellis::sleep_forever());
                        n.spawn(async {
                            sleep(secs(1)).await;
                            tracing::info!("about to panic");
                            panic!("traced panic")
                        });
                        Ok::<_, ()>(())
                    })
                    .await
                })
        })
    });
    assert_eq!(panic_message(&*out.unwrap_err()), "traced panic");
    let seen = collect.seen.lock().unwrap();
    assert_eq!(seen.bad_exits, 0, "spans exit in the order they entered");
    assert!(seen.stack.is_empty(), "left entered: {:?}", seen.stack);
    let tasks: Vec<(&u64, &String)> = seen
        .spans
        .iter()
        .filter(|(_, (name, _, _))| name == "runtime.spawn")
        .map(|(id, (_, fields, _))| (id, &fields["task.name"]))
        .collect();
    assert_eq!(tasks.len(), 5, "two bodies, three children: {tasks:?}");
    for (id, name) in &tasks {
        let closes = seen.closed.iter().filter(|c| c == id).count();
        assert_eq!(closes, 1, "span of {name} closed {closes} times");
    }
    let mut names: Vec<&str> = tasks.iter().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "child 2",
            "hard dropped",
            "sleeper",
            "the nursery body",
            "the nursery body"
        ]
    );
    let mut outcomes: Vec<String> = seen
        .events
        .iter()
        .filter(|(m, _, _)| m == "task exited")
        .map(|(_, f, _)| f["outcome"].clone())
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "cancelled",
            "cancelled",
            "cancelled",
            "panicked: \"traced panic\""
        ],
        "the first body, its child, the sleeper, the panicking child (the second body returned)"
    );
    let logged = seen
        .events
        .iter()
        .find(|(m, _, _)| m == "about to panic")
        .unwrap();
    let span = logged.2.expect("inside the task's span");
    assert_eq!(seen.spans[&span].1["task.name"], "child 2");
}

/// Attacks the `Tracing` instrument on two threads at once: one `Tracing` value per
/// runtime, each thread with its own subscriber; each subscriber sees its own runtime's
/// tasks only.
#[test]
fn tracing_instruments_on_two_threads_keep_to_their_own_subscriber() {
    guarded(|| {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = [2_usize, 4]
            .into_iter()
            .map(|children| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let collect = common::collect::Collect::default();
                    tracing::subscriber::with_default(collect.clone(), || {
                        trellis::Builder::new()
                            .autojump()
                            .instrument(trellis::instrument::Tracing::new())
                            .run(nursery(async |n| {
                                for i in 0..children {
                                    n.spawn_named(format!("t{i}"), yield_now());
                                }
                                let b = barrier.clone();
                                trellis::to_thread(move || {
                                    b.wait();
                                })
                                .await;
                            }))
                            .unwrap();
                    });
                    let seen = collect.seen.lock().unwrap();
                    seen.spans
                        .values()
                        .filter(|(name, _, _)| name == "runtime.spawn")
                        .count()
                })
            })
            .collect();
        let counts: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(counts, [3, 5]);
    });
}

/// Attacks the `Tracing` instrument shared by two runtimes (`Builder::instrument` takes any
/// `Send + Sync` instrument, and `Arc<I>` is one: the natural way to give one `Tracing` to
/// the runtime of every core, as in examples/multicore_echo.rs). Task ids are per runtime
/// (both start at 1), so the instrument must keep each runtime's spans apart: every span a
/// subscriber sees entered is entered on its own thread, every task span closed once, and
/// each runtime's top-level tasks are children of the span current when *it* started.
#[test]
fn one_tracing_instrument_shared_by_two_runtimes_keeps_their_spans_apart() {
    guarded(|| {
        let shared = Arc::new(trellis::instrument::Tracing::new());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = [2_usize, 4]
            .into_iter()
            .map(|children| {
                let (barrier, shared) = (barrier.clone(), shared.clone());
                std::thread::spawn(move || {
                    let collect = common::collect::Collect::default();
                    tracing::subscriber::with_default(collect.clone(), || {
                        let _outer = tracing::info_span!("server", children).entered();
                        trellis::Builder::new()
                            .autojump()
                            .instrument(shared)
                            .run(nursery(async |n| {
                                for i in 0..children {
                                    // Sleeping until the other runtime has spawned too.
                                    n.spawn_named(format!("t{i}"), async {
                                        sleep(secs(1)).await;
                                        tracing::info!("logged");
                                    });
                                }
                                let b = barrier.clone();
                                trellis::to_thread(move || {
                                    b.wait();
                                })
                                .await;
                                tracing::info!("body logged");
                            }))
                            .unwrap();
                    });
                    let me = std::thread::current().id();
                    let seen = collect.seen.lock().unwrap();
                    let foreign = seen.entered_on.iter().filter(|t| **t != me).count();
                    let tasks: Vec<u64> = seen
                        .spans
                        .iter()
                        .filter(|(_, (name, _, _))| name == "runtime.spawn")
                        .map(|(id, _)| *id)
                        .collect();
                    let unclosed = tasks
                        .iter()
                        .filter(|id| seen.closed.iter().filter(|c| c == id).count() != 1)
                        .count();
                    let server = seen
                        .spans
                        .iter()
                        .find(|(_, (name, _, _))| name == "server")
                        .map(|(id, _)| *id);
                    let nursery_span = seen
                        .spans
                        .iter()
                        .find(|(_, (name, f, _))| name == "scope" && f["kind"] == "nursery")
                        .map(|(_, (_, _, parent))| *parent);
                    let logged_in_task = seen
                        .events
                        .iter()
                        .filter(|(m, _, span)| {
                            m == "logged"
                                && span.is_some_and(|s| {
                                    seen.spans[&s]
                                        .1
                                        .get("task.name")
                                        .is_some_and(|n| n.starts_with('t'))
                                })
                        })
                        .count();
                    (
                        tasks.len(),
                        foreign,
                        unclosed,
                        nursery_span == Some(server),
                        logged_in_task,
                    )
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results, [(3, 0, 0, true, 2), (5, 0, 0, true, 4)]);
    });
}

// ---- error values -----------------------------------------------------------------------

/// Attacks `ErrorGroup`: "Every error that occurred in a nursery, in the order they
/// occurred, each once" against the instruments' own account: the group's failures are
/// the tasks whose exit was `failed`, in the order of those exits, for many children
/// failing at different virtual times and some in the same round.
#[test]
fn a_groups_failures_are_the_failed_exits_in_their_order() {
    let events = Events::default();
    let ev = events.clone();
    let group = trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(nursery(async |n| {
            for i in 0..12_u64 {
                n.spawn_named(format!("c{i}"), async move {
                    // Odd children fail at once (in the first round), even ones later and
                    // so are cancelled by the first failure.
                    if i % 2 == 0 {
                        sleep(secs(1 + i)).await;
                    }
                    Err::<(), _>(format!("e{i}"))
                });
            }
            Ok(())
        }))
        .unwrap_err();
    let spawned = events.spawned();
    let failed_in_order: Vec<String> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Exited(id, TaskOutcome::Failed) => spawned[&id].1.clone(),
            _ => None,
        })
        .collect();
    let in_group: Vec<String> = group
        .failures()
        .iter()
        .map(|f| f.label().name().unwrap().to_owned())
        .collect();
    assert_eq!(in_group, failed_in_order);
    assert_eq!(in_group, ["c1", "c3", "c5", "c7", "c9", "c11"]);
    assert_eq!(group.len(), 6);
    let errors: Vec<String> = group.clone().into_errors();
    assert_eq!(errors, ["e1", "e3", "e5", "e7", "e9", "e11"]);
    assert_eq!(group.first(), "e1");
    assert!(
        group
            .to_string()
            .starts_with("6 tasks failed: child 2 \"c1\" failed: e1; ")
    );
    assert_eq!(group.clone().into_first(), "e1");
    let tasks: Vec<TaskName> = group.into_iter().map(|f| f.task()).collect();
    assert_eq!(
        tasks,
        [2, 4, 6, 8, 10, 12].map(TaskName::Child),
        "children numbered from 1 in spawn order"
    );
}

/// Attacks "the nursery returns `Err(ErrorGroup)` holding every error that occurred, in
/// order of occurrence" with the delivery rule: the body fails in its first poll after
/// spawning a child that fails in its own first poll (it still runs, to its first
/// suspension, in the cancelled nursery); both are kept, the body's first.
#[test]
fn a_body_and_a_child_failing_in_one_round_are_both_kept_in_order() {
    let group = run_virtual(nursery(async |n| {
        n.spawn_named("child", async { Err::<(), _>("child error") });
        Err::<(), _>("body error")
    }))
    .unwrap_err();
    assert_eq!(
        group.to_string(),
        "2 tasks failed: the nursery body failed: body error; child 1 \"child\" failed: child \
         error"
    );
    let tasks: Vec<TaskName> = group.failures().iter().map(|f| f.task()).collect();
    assert_eq!(tasks, [TaskName::Body, TaskName::Child(1)]);
    assert_eq!(group.failures()[0].label().name(), None);
}

/// Attacks "`TaskInfo::parent`: The task the nursery was opened in" where that task has no
/// record: an instrument added while a nursery without records runs sees a nursery opened
/// inside one of its children; the task it was opened in has no id, and the parent is
/// then the task that nursery runs in (here the root), as the docs say.
#[test]
fn a_nursery_inside_an_unrecorded_task_reports_the_nearest_recorded_parent() {
    let added = Events::default();
    let a = added.clone();
    trellis::run(nursery(async move |n| {
        n.spawn(async move {
            let key = instrument::add(a);
            nursery(async |n| {
                n.spawn_named("seen", async {});
            })
            .await
            .unwrap();
            instrument::remove(key);
        });
    }))
    .unwrap();
    let parents: Vec<(u64, u64)> = added
        .all()
        .iter()
        .filter_map(|e| match e {
            Ev::Spawned { id, parent, .. } => Some((*id, *parent)),
            _ => None,
        })
        .collect();
    assert_eq!(parents, [(1, 0), (2, 0)]);
}

/// Attacks `TaskName`: "A child, numbered from 1 in spawn order within its nursery" and
/// the spawn site as the default name, for tasks spawned in a loop: each failure names its
/// own number, all share one spawn site (the loop's line), and none has a name.
#[test]
fn tasks_spawned_in_a_loop_are_told_apart_by_number_and_share_their_site() {
    let spawn_line = Cell::new(0);
    let group = run_virtual(nursery(async |n| {
        n.spawn(async {}); // child 1 succeeds
        for i in 0..5_u32 {
            spawn_line.set(line!() + 1);
            n.spawn(async move { if i % 2 == 0 { Err(i) } else { Ok(()) } });
        }
        Ok(())
    }))
    .unwrap_err();
    let report: Vec<String> = group.failures().iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [
            "child 2 failed: 0",
            "child 4 failed: 2",
            "child 6 failed: 4"
        ]
    );
    for failure in group.failures() {
        assert_eq!(failure.label().name(), None);
        assert_eq!(failure.label().location().line(), spawn_line.get());
        assert_eq!(failure.label().location().file(), file!());
        assert_eq!(
            failure.label().to_string(),
            format!("spawned at {}", failure.label().location())
        );
    }
}

/// Attacks "Errors are values that explain themselves … to which task": a failure inside a
/// `spawn_with` child's own nursery, passed up through two levels of groups, reads as the
/// path of tasks from the outside in, and each level gives its inner group back by value.
#[test]
fn a_failure_two_nurseries_down_reads_as_its_path() {
    let group = run_virtual(nursery(async |n| {
        n.spawn_named("service", async {
            nursery(async |inner| {
                inner.spawn_with(async |n| {
                    n.spawn_named("db", async { Err::<(), _>("connection refused") });
                });
                Ok(())
            })
            .await
        });
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(
        group.to_string(),
        "child 1 \"service\" failed: child 2 \"db\" failed: connection refused"
    );
    let inner: ErrorGroup<&str> = group.into_first();
    assert_eq!(inner.failures()[0].task(), TaskName::Child(2));
    assert_eq!(inner.into_first(), "connection refused");
}

/// Attacks "A panic … is resumed … Other failures beside it are not silently dropped (the
/// docs say where they go)": two panics and two errors in one nursery; the first panic
/// resumes unchanged and stderr names every other failure, each once.
#[test]
fn panics_beside_errors_lose_nothing() {
    let stderr = common::stderr_of_test("child_process_two_panics_and_two_errors");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("trellis: a nursery resumes the panic of"))
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert_eq!(
        line,
        "trellis: a nursery resumes the panic of child 2 \"p1\"; beside it, child 1 \"e1\" \
         failed with an error of type `&str`; child 3 \"e2\" failed with an error of type \
         `&str`; child 4 \"p2\" panicked too: \"second\""
    );
    assert!(stderr.contains("resumed: first"), "{stderr}");
}

#[test]
#[ignore = "runs only as the child process of panics_beside_errors_lose_nothing"]
fn child_process_two_panics_and_two_errors() {
    if !common::is_test_child() {
        return;
    }
    let payload = std::panic::catch_unwind(|| {
        run_virtual(nursery(async |n| {
            n.spawn_named("e1", async { Err::<(), _>("one") });
            n.spawn_named("p1", async { panic!("first") });
            n.spawn_named("e2", async { Err::<(), _>("two") });
            n.spawn_named("p2", async { panic!("second") });
            Ok(())
        }))
    })
    .unwrap_err();
    eprintln!("resumed: {}", panic_message(&*payload));
}

/// Attacks "Every error type implements std::error::Error and Display" and the
/// module's "their `source()` is `None`": one value of each error type of the nursery and
/// timeout layers, made by a real program, says what happened and to which task, and has
/// no source (the message already holds the cause).
#[test]
fn every_error_value_names_its_task_and_has_no_source() {
    let messages = RefCell::new(Vec::<(String, bool)>::new());
    let m = &messages;
    let note = |e: &dyn Error| m.borrow_mut().push((e.to_string(), e.source().is_some()));
    let _ = run_virtual(nursery(async |n| {
        let cancelled = n.spawn_named("sleeper", trellis::sleep_forever());
        cancelled.cancel();
        note(&cancelled.await.unwrap_err());
        let failed: Result<(), _> = n
            .start_named("server", async |_n, _s| Err::<(), _>("bind"))
            .await;
        note(&failed.unwrap_err());
        let timed_out = trellis::fail_after(secs(1), trellis::sleep_forever()).await;
        note(&timed_out.unwrap_err());
        let group = nursery(async |n| {
            n.spawn_named("inner", async { Err::<(), _>("oops") });
            Ok(())
        })
        .await
        .unwrap_err();
        note(&group);
        note(&group.failures()[0]);
        Err::<(), _>("end")
    }));
    assert_eq!(
        *messages.borrow(),
        [
            (
                "child 1 \"sleeper\" was cancelled before it finished".into(),
                false
            ),
            (
                "child 2 \"server\" failed before it was ready: bind".into(),
                false
            ),
            (
                "the operation timed out: its deadline passed before it finished".into(),
                false
            ),
            ("child 1 \"inner\" failed: oops".into(), false),
            ("child 1 \"inner\" failed: oops".into(), false),
        ]
    );
}

/// Attacks `TaskId`'s and `TaskOutcome`'s `Display` and `TaskInfo::name` as the dump and
/// the errors show them: the same id and name in the instrument, the dump's line and the
/// task's failure.
#[test]
fn ids_and_names_agree_between_instrument_dump_and_error() {
    let events = Events::default();
    let ev = events.clone();
    let text = RefCell::new(String::new());
    let group = trellis::Builder::new()
        .autojump()
        .instrument(ev)
        .run(nursery(async |n| {
            n.spawn(async {});
            n.spawn_named("victim", async {
                sleep(secs(2)).await;
                Err::<(), _>("gone")
            });
            sleep(secs(1)).await;
            *text.borrow_mut() = trellis::dump_tree().to_string();
            Ok(())
        }))
        .unwrap_err();
    let (id, (name, label)) = events
        .spawned()
        .into_iter()
        .find(|(_, (_, l))| l.as_deref() == Some("victim"))
        .unwrap();
    assert_eq!(
        (id, name, label.as_deref()),
        (3, TaskName::Child(2), Some("victim"))
    );
    assert!(
        text.borrow().contains(&format!(
            "{}: {} \"victim\": waiting on a timer, due in 1s",
            TaskId::ROOT.to_string().replace('0', &id.to_string()),
            name
        )),
        "{}",
        text.borrow()
    );
    assert_eq!(group.failures()[0].task(), name);
    assert_eq!(group.to_string(), format!("{name} \"victim\" failed: gone"));
    assert_eq!(events.exits()[&id].to_string(), "failed");
    assert_eq!(TaskOutcome::Cancelled.to_string(), "cancelled");
}
