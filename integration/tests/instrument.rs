//! Instruments (Trio's `abc.Instrument`), task names and the task tree.
//!
//! The hooks fire in the documented order with the documented arguments (snapshots of an
//! event log, on the mock clock so that they are the same at every run); `dump_tree` of
//! a known tree matches a snapshot with deadlines in virtual time; a panicking instrument
//! is removed and the program runs on; names reach errors and cancel reasons.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HANG_LIMIT, watchdog};
use trellis::instrument::{self, Instrument, ScopeInfo, TaskId, TaskInfo, TaskOutcome};
use trellis::{CancelReason, TaskName};

/// Writes every hook it sees as a line.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        let mut text = self.lines().join("\n");
        text.push('\n');
        text
    }
}

/// `task 3 (child 2 "b")`: how the log names a task.
fn who(t: &TaskInfo) -> String {
    match t.label().name() {
        Some(name) => format!("{} ({} {name:?})", t.id(), t.name()),
        None => format!("{} ({})", t.id(), t.name()),
    }
}

impl Instrument for Log {
    fn before_run(&self) {
        self.push("before_run".into());
    }
    fn after_run(&self) {
        self.push("after_run".into());
    }
    fn task_spawned(&self, t: &TaskInfo) {
        self.push(format!("spawned {} in {}", who(t), t.parent()));
    }
    fn task_scheduled(&self, t: &TaskInfo) {
        self.push(format!("scheduled {}", t.id()));
    }
    fn before_task_poll(&self, t: &TaskInfo) {
        self.push(format!("poll {}", t.id()));
    }
    fn after_task_poll(&self, t: &TaskInfo) {
        self.push(format!("polled {}", t.id()));
    }
    fn task_exited(&self, t: &TaskInfo, outcome: &TaskOutcome) {
        self.push(format!("exited {}: {outcome}", t.id()));
    }
    fn before_io_wait(&self, timeout: Option<Duration>) {
        self.push(format!("io wait {timeout:?}"));
    }
    fn after_io_wait(&self, events: usize) {
        self.push(format!("io events {events}"));
    }
    fn scope_cancelled(&self, _scope: &ScopeInfo, reason: &CancelReason) {
        self.push(format!("cancelled: {reason}"));
    }
}

/// Replaces every `spawned at <path>:<line>:<col>` with `spawned at HERE`, so that a
/// snapshot does not change when this file's lines move.
fn without_locations(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("spawned at ") {
        out.push_str(&rest[..at + "spawned at ".len()]);
        rest = &rest[at + "spawned at ".len()..];
        let end = rest.find([')', '\n']).unwrap_or(rest.len());
        out.push_str("HERE");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_hooks_fire_in_the_documented_order_on_a_scripted_program() {
    let log = Log::default();
    let out = trellis::Builder::new()
        .autojump()
        .instrument(log.clone())
        .run(trellis::nursery(async |n| {
            n.spawn_named("a", trellis::sleep(Duration::from_secs(1)));
            n.spawn_named("b", async {
                trellis::sleep(Duration::from_secs(2)).await;
                Err::<(), _>("boom")
            });
            n.spawn(trellis::sleep(Duration::from_secs(10)));
            Ok(())
        }));
    let err = out.unwrap_err();
    assert_eq!(err.to_string(), "child 2 \"b\" failed: boom");
    let expected = "\
before_run
spawned task 1 (the nursery body) in task 0
scheduled task 1
poll task 1
spawned task 2 (child 1 \"a\") in task 0
spawned task 3 (child 2 \"b\") in task 0
spawned task 4 (child 3) in task 0
polled task 1
exited task 1: returned
scheduled task 2
poll task 2
polled task 2
scheduled task 3
poll task 3
polled task 3
scheduled task 4
poll task 4
polled task 4
scheduled task 2
poll task 2
polled task 2
exited task 2: returned
scheduled task 3
poll task 3
polled task 3
cancelled: child 2 \"b\" failed
exited task 3: failed
exited task 4: cancelled
after_run
";
    assert_eq!(log.text(), expected);
}

#[test]
fn outcomes_name_panics_in_polls_and_in_destructors() {
    let log = Log::default();
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trellis::Builder::new()
            .autojump()
            .instrument(log.clone())
            .run(trellis::nursery(async |n| {
                n.spawn(async { panic!("in a poll") });
                n.spawn(async {
                    let _bomb = common::PanicOnDrop("in a destructor");
                    trellis::sleep_forever().await;
                });
            }))
    }))
    .unwrap_err();
    assert_eq!(common::panic_message(&*payload), "in a poll");
    let exits: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("exited"))
        .collect();
    assert_eq!(
        exits,
        [
            "exited task 1: returned",
            "exited task 2: panicked: \"in a poll\"",
            "exited task 3: panicked: \"in a destructor\"",
        ]
    );
    // The root panicked, and `after_run` still came last.
    assert_eq!(log.lines().last().unwrap(), "after_run");
}

#[test]
fn spawned_tasks_know_their_parent_task_across_nested_nurseries() {
    #[derive(Clone, Default)]
    struct Parents(Arc<Mutex<Vec<(TaskId, TaskId, TaskName)>>>);
    impl Instrument for Parents {
        fn task_spawned(&self, t: &TaskInfo) {
            self.0.lock().unwrap().push((t.id(), t.parent(), t.name()));
        }
    }
    let parents = Parents::default();
    let _ = trellis::Builder::new()
        .instrument(parents.clone())
        .run(trellis::nursery(async |n| {
            n.spawn(async {
                // A nursery opened inside child 1 (task 2), inside a cancel scope.
                trellis::cancel_scope(async |_| {
                    trellis::nursery(async |n| {
                        n.spawn(async {});
                    })
                    .await
                    .unwrap();
                })
                .await;
            });
        }));
    let seen = parents.0.lock().unwrap().clone();
    let id = TaskId::as_u64;
    let seen: Vec<(u64, u64, TaskName)> = seen.iter().map(|&(a, b, c)| (id(a), id(b), c)).collect();
    assert_eq!(
        seen,
        [
            (1, 0, TaskName::Body),
            (2, 0, TaskName::Child(1)),
            (3, 2, TaskName::Body),
            (4, 2, TaskName::Child(1)),
        ]
    );
}

#[test]
fn a_panicking_instrument_is_removed_and_the_program_runs_on() {
    struct Bad(Arc<Mutex<usize>>);
    impl Instrument for Bad {
        fn task_spawned(&self, _: &TaskInfo) {
            *self.0.lock().unwrap() += 1;
            panic!("a bug in the instrument");
        }
    }
    let calls = Arc::new(Mutex::new(0));
    let log = Log::default();
    let sum = trellis::Builder::new()
        .instrument(Bad(calls.clone()))
        .instrument(log.clone())
        .run(async {
            let sum = std::cell::Cell::new(0);
            for i in 0..3 {
                let sum = &sum;
                trellis::nursery(async |n| {
                    n.spawn(async move { sum.set(sum.get() + i) });
                })
                .await
                .unwrap();
            }
            sum.get()
        });
    assert_eq!(sum, 3);
    assert_eq!(*calls.lock().unwrap(), 1, "called once, then removed");
    // The other instrument saw everything: 3 bodies and 3 children.
    let spawned = log
        .lines()
        .iter()
        .filter(|l| l.starts_with("spawned"))
        .count();
    assert_eq!(spawned, 6);
}

#[test]
fn instruments_added_and_removed_while_running_see_exactly_their_window() {
    let log = Log::default();
    let log2 = log.clone();
    // The task tree is kept (as on a mock clock, or with an instrument on the Builder):
    // every task spawned while the instrument is registered is seen.
    let _ = trellis::Builder::new()
        .task_tree()
        .run(trellis::nursery(async move |n| {
            n.spawn_named("before", async {});
            trellis::yield_now().await;
            let key = instrument::add(log2);
            n.spawn_named("during", async {});
            trellis::yield_now().await;
            assert!(instrument::remove(key));
            n.spawn_named("after", async {});
        }));
    let spawned: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("spawned") || l.starts_with("exited"))
        .collect();
    assert_eq!(
        spawned,
        [
            "spawned task 3 (child 2 \"during\") in task 0",
            "exited task 3: returned"
        ]
    );
    // Not run-long: no `before_run`/`after_run` for an instrument added midway.
    assert!(!log.lines().contains(&"after_run".to_owned()));
}

#[test]
fn without_the_task_tree_an_added_instrument_sees_the_nurseries_opened_after_it() {
    let log = Log::default();
    let log2 = log.clone();
    let _ = trellis::run(trellis::nursery(async move |n| {
        let key = instrument::add(log2);
        n.spawn_named("in the older nursery", async {}); // opened before: no records
        trellis::nursery(async |n| {
            n.spawn_named("in a newer one", async {});
        })
        .await
        .unwrap();
        instrument::remove(key);
    }));
    let spawned: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("spawned"))
        .collect();
    assert_eq!(
        spawned,
        [
            "spawned task 1 (the nursery body) in task 0",
            "spawned task 2 (child 1 \"in a newer one\") in task 0"
        ]
    );
}

#[test]
fn without_the_task_tree_the_dump_shows_nurseries_and_scopes_and_says_how_to_get_tasks() {
    let text = std::cell::RefCell::new(String::new());
    let _ = trellis::run(trellis::nursery(async |n| {
        n.spawn_named("idle", async {
            trellis::move_on_after(Duration::from_secs(60), trellis::sleep_forever()).await;
        });
        trellis::yield_now().await;
        *text.borrow_mut() = trellis::dump_tree().to_string();
        Err::<(), _>("stop")
    }));
    let text = text.into_inner();
    // The real clock moves: the deadline is a few microseconds under a minute away.
    assert!(
        text.starts_with(
            "task tree (the root future):\n  nursery (its tasks are not recorded: build the \
             runtime with `Builder::task_tree()`)\n    cancel scope, deadline in 59."
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
}

/// Two nurseries side by side in the root future, the second dumping the tree: with the
/// task tree kept, both are listed; without it, only the tree the caller runs in (the
/// runtime lists top-level trees only while it records, so that a request whose loop runs
/// in the root future pays nothing for it).
fn dump_beside_a_sibling_nursery(builder: trellis::Builder) -> String {
    let text = std::cell::RefCell::new(String::new());
    let done = trellis::Event::new();
    builder.run(async {
        let sibling = trellis::nursery(async |n| {
            n.spawn_named("sibling", done.wait());
        });
        let dumper = trellis::nursery(async |n| {
            n.spawn_named("dumper", async {
                trellis::yield_now().await;
                *text.borrow_mut() = trellis::dump_tree().to_string();
                done.set();
            });
        });
        let (a, b) = futures::join!(sibling, dumper);
        a.unwrap();
        b.unwrap();
    });
    text.into_inner()
}

#[test]
fn a_dump_lists_every_top_level_tree_with_the_task_tree_and_the_callers_without() {
    let kept = dump_beside_a_sibling_nursery(trellis::Builder::new().task_tree());
    assert_eq!(kept.matches("  nursery\n").count(), 2, "{kept}");
    assert!(kept.contains("child 1 \"sibling\": waiting;"), "{kept}");
    assert!(kept.contains("child 1 \"dumper\": running"), "{kept}");
    let unkept = dump_beside_a_sibling_nursery(trellis::Builder::new());
    assert_eq!(
        unkept,
        "task tree (the root future):\n  nursery (its tasks are not recorded: build the \
         runtime with `Builder::task_tree()`)\n"
    );
}

#[test]
fn instruments_do_not_outlive_their_run_nor_reach_another_thread() {
    let log = Log::default();
    let _ = trellis::Builder::new()
        .instrument(log.clone())
        .run(trellis::nursery(async |n| {
            n.spawn(async {});
        }));
    let seen = log.lines().len();
    // The next runtime on this thread, and one on another thread, have no instrument.
    let _ = trellis::run(trellis::nursery(async |n| {
        n.spawn(async {});
    }));
    let _ = std::thread::spawn(|| {
        trellis::run(trellis::nursery(async |n| {
            n.spawn(async {});
        }))
    })
    .join()
    .unwrap();
    assert_eq!(log.lines().len(), seen);
    // Two runtimes on two threads at once, each with its own instrument.
    let (a, b) = (Log::default(), Log::default());
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|log| {
            std::thread::spawn(move || {
                trellis::Builder::new()
                    .instrument(log)
                    .run(trellis::nursery(async |n| {
                        n.spawn(async {});
                    }))
            })
        })
        .collect();
    for t in threads {
        let _ = t.join().unwrap();
    }
    assert_eq!(a.lines(), b.lines());
    assert_eq!(a.lines().first().map(String::as_str), Some("before_run"));
}

#[test]
#[should_panic(expected = "trellis::instrument::add was called outside a runtime")]
fn adding_an_instrument_outside_a_runtime_is_a_clear_panic() {
    instrument::add(Log::default());
}

#[test]
fn io_waits_are_reported_with_their_timeout_and_event_count() {
    watchdog(HANG_LIMIT, || {
        let log = Log::default();
        trellis::Builder::new().instrument(log.clone()).run(async {
            let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            trellis::nursery(async |n| {
                n.spawn(async { listener.accept().await.map(|_| ()) });
                n.spawn(async move { trellis::net::TcpStream::connect(addr).await.map(|_| ()) });
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
        });
        let lines = log.lines();
        let waits: Vec<&String> = lines.iter().filter(|l| l.starts_with("io ")).collect();
        assert!(
            !waits.is_empty(),
            "the accept parks the runtime in the reactor"
        );
        for pair in waits.chunks(2) {
            assert!(pair[0].starts_with("io wait "), "{pair:?}");
            assert!(pair[1].starts_with("io events "), "{pair:?}");
        }
        assert!(
            waits
                .iter()
                .any(|l| l.starts_with("io events ") && *l != "io events 0"),
            "some wait returned events: {waits:?}"
        );
    });
}

#[test]
fn the_task_tree_of_a_known_program_matches_its_snapshot() {
    let tree = std::cell::RefCell::new(None);
    trellis::Builder::new()
        .autojump()
        .run(trellis::cancel_scope(async |scope| {
            trellis::nursery(async |n| {
                n.spawn_named("sleeper", trellis::sleep(Duration::from_secs(30)));
                n.spawn_named("guarded", async {
                    trellis::move_on_after(Duration::from_secs(5), async {
                        trellis::shield(trellis::sleep(Duration::from_secs(3))).await;
                    })
                    .await;
                });
                n.spawn_named("waiter", async {
                    let never = trellis::Event::new();
                    never.wait().await;
                });
                n.spawn_named("inner", async {
                    trellis::nursery(async |n| {
                        n.spawn(trellis::sleep(Duration::from_secs(7)));
                    })
                    .await
                    .unwrap();
                });
                n.spawn_named("late", std::future::pending::<()>());
                trellis::sleep(Duration::from_secs(2)).await;
                *tree.borrow_mut() = Some(trellis::dump_tree());
                scope.cancel();
            })
            .await
            .unwrap();
        }));
    let tree = tree.take().expect("dumped");
    let expected = "\
task tree (the root future):
  cancel scope
    nursery
      task 1: the nursery body (spawned at HERE): running; age 2s, 1 poll
      task 2: child 1 \"sleeper\": waiting on a timer, due in 28s; age 2s, 1 poll
      task 3: child 2 \"guarded\": waiting on a timer, due in 1s, in a shield; age 2s, 1 poll
        cancel scope, deadline in 3s
          cancel scope, shielded
      task 4: child 3 \"waiter\": waiting; age 2s, 1 poll
      task 5: child 4 \"inner\": waiting inside; age 2s, 1 poll
        nursery
          task 8: child 1 (spawned at HERE): waiting on a timer, due in 5s; age 2s, 1 poll
      task 6: child 5 \"late\": waiting; age 2s, 1 poll
";
    assert_eq!(without_locations(&tree.to_string()), expected);
    // The inner nursery's body (task 7) returned: a finished task leaves the tree.
    assert_eq!(tree.task_count(), 7);
}

#[test]
fn the_task_tree_shows_a_cancellation_held_off_by_a_shield() {
    let tree = std::cell::RefCell::new(None);
    trellis::Builder::new()
        .autojump()
        .run(trellis::cancel_scope(async |scope| {
            trellis::nursery(async |n| {
                n.spawn_named("cleanup", async {
                    trellis::shield(async {
                        trellis::sleep(Duration::from_secs(1)).await;
                        *tree.borrow_mut() = Some(trellis::dump_tree());
                    })
                    .await;
                });
                n.spawn_named("not yet run", async {});
                scope.cancel();
                trellis::sleep_forever().await;
            })
            .await
            .unwrap();
        }));
    let tree = tree.take().expect("dumped");
    let expected = "\
task tree (the root future):
  cancel scope, cancelled (cancelled explicitly)
    nursery
      task 2: child 1 \"cleanup\": running, in a shield, being cancelled; age 1s, 1 poll
        cancel scope, shielded
";
    assert_eq!(tree.to_string(), expected);
}

#[test]
fn the_deadlock_panic_prints_the_task_tree() {
    let message = common::panic_message_of(|| {
        trellis::Builder::new()
            .autojump()
            .run(trellis::nursery(async |n| {
                n.spawn_named("stuck", async {
                    trellis::Event::new().wait().await;
                });
                trellis::sleep(Duration::from_secs(1)).await;
            }))
    });
    assert!(message.contains("trellis: deadlock"), "{message}");
    assert!(
        message.contains("task tree (the root future):\n  nursery\n"),
        "{message}"
    );
    assert!(
        message.contains("task 2: child 1 \"stuck\": waiting; age 1s, 1 poll"),
        "{message}"
    );
}

#[test]
fn another_thread_dumps_the_tree_through_the_runtime_handle() {
    watchdog(HANG_LIMIT, || {
        trellis::Builder::new()
            .task_tree()
            .run(trellis::nursery(async |n| {
                let handle = trellis::RuntimeHandle::current();
                n.spawn_named("idle", trellis::sleep(Duration::from_secs(3600)));
                let tree = trellis::to_thread(move || handle.run_sync(trellis::dump_tree))
                    .await
                    .unwrap();
                let text = tree.to_string();
                assert!(
                    text.contains("child 1 \"idle\": waiting on a timer, due in "),
                    "{text}"
                );
                // Not "running": the dump ran beside the tasks, from another thread.
                assert!(text.contains("the nursery body (spawned at "), "{text}");
                assert!(!text.contains(": running"), "{text}");
                // The sleeper would keep the nursery open for an hour: stop it.
                Err::<(), _>("done")
            }))
            .unwrap_err();
    });
}

#[test]
fn a_task_blocked_on_a_socket_shows_its_descriptor_and_direction() {
    use std::os::fd::AsRawFd;
    watchdog(HANG_LIMIT, || {
        trellis::Builder::new().task_tree().run(async {
            let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let fd = server.into_std();
            let raw = fd.as_raw_fd();
            let server = trellis::net::TcpStream::from_std(fd).unwrap();
            trellis::cancel_scope(async |scope| {
                trellis::nursery(async |n| {
                    n.spawn_named("reader", async {
                        let mut buf = [0; 8];
                        let _ = server.read(&mut buf).await;
                    });
                    trellis::yield_now().await;
                    let text = trellis::dump_tree().to_string();
                    assert!(
                        text.contains(&format!(
                            "child 1 \"reader\": waiting on fd {raw} for reading"
                        )),
                        "{text}"
                    );
                    scope.cancel();
                })
                .await
                .unwrap();
            })
            .await;
            drop(client);
        });
    });
}

#[test]
fn dump_tree_outside_a_runtime_is_a_clear_panic() {
    let message = common::panic_message_of(trellis::dump_tree);
    assert!(
        message.contains("this needs a trellis runtime"),
        "{message}"
    );
}

#[test]
fn the_tree_is_printed_on_the_signal_the_builder_names() {
    let stderr = common::stderr_of_test("child_prints_its_tree_on_sigusr1");
    assert!(
        stderr.contains("task tree (the root future):"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("child 1 \"server\": ready (it yielded)"),
        "stderr: {stderr}"
    );
}

#[test]
#[ignore = "runs only as the child process of the_tree_is_printed_on_the_signal_the_builder_names"]
fn child_prints_its_tree_on_sigusr1() {
    if !common::is_test_child() {
        return;
    }
    trellis::Builder::new()
        .dump_tree_on_signal(signal_hook::consts::SIGUSR1)
        .run(trellis::nursery(async |n| {
            n.spawn_named("server", async {
                signal_hook::low_level::raise(signal_hook::consts::SIGUSR1).unwrap();
                // Stays running until the tree was printed: the printer runs beside the
                // root, woken by the signal's datagram.
                for _ in 0..1000 {
                    trellis::yield_now().await;
                }
            });
        }))
        .unwrap();
}

#[test]
#[should_panic(expected = "Builder::dump_tree_on_signal: cannot receive signal 9")]
fn a_signal_that_cannot_be_received_is_refused_with_its_reason() {
    let _ = trellis::Builder::new().dump_tree_on_signal(9);
}

#[test]
fn names_reach_the_report_of_failures_beside_a_panic() {
    let stderr = common::stderr_of_test("child_panics_beside_a_named_failure");
    assert!(
        stderr.contains(
            "a nursery resumes the panic of child 2 \"second\"; beside it, child 1 \"first\" \
             failed with an error of type `&str`"
        ),
        "stderr: {stderr}"
    );
}

#[test]
#[ignore = "runs only as the child process of names_reach_the_report_of_failures_beside_a_panic"]
fn child_panics_beside_a_named_failure() {
    if !common::is_test_child() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        trellis::run(trellis::nursery(async |n| {
            n.spawn_named("first", async { Err::<(), _>("no") });
            n.spawn_named("second", async { panic!("boom") });
            Ok(())
        }))
    });
}

/// What a shielded awaiter of each handle saw, as messages.
fn join_errors_of(
    run: impl AsyncFnOnce(&trellis::Nursery<'_, '_, &'static str>) -> Vec<String>,
) -> Vec<String> {
    let mut seen = Vec::new();
    let out = &mut seen;
    // The nursery's own error or panic is not what these tests look at.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trellis::Builder::new()
            .autojump()
            .run(trellis::nursery(async |n| {
                *out = run(&n).await;
                Ok(())
            }))
    }));
    seen
}

#[test]
fn join_errors_name_the_child_that_failed_or_was_cancelled() {
    let seen = watchdog(HANG_LIMIT, || {
        join_errors_of(async |n| {
            let failed = n.spawn_named("fetch user", async { Err::<(), _>("not found") });
            let panicked = n.spawn_named(String::from("parse"), async {
                if true {
                    panic!("bad byte")
                }
            });
            let unnamed = n.spawn(trellis::sleep_forever());
            let dropped = n.spawn_named("sleeper", trellis::sleep_forever());
            let mut seen = Vec::new();
            for handle in [failed, panicked] {
                let err = trellis::shield(handle).await.unwrap_err();
                seen.push(format!("{:?} {err}", err.name()));
            }
            // The failures cancel the nursery: the sleepers are dropped unfinished.
            for handle in [unnamed, dropped] {
                let err = trellis::shield(handle).await.unwrap_err();
                seen.push(format!("{:?} {err}", err.name()));
            }
            seen
        })
    });
    assert_eq!(
        seen,
        [
            "Some(\"fetch user\") child 1 \"fetch user\" failed; its nursery reports the error \
             (or resumes the panic)",
            "Some(\"parse\") child 2 \"parse\" failed; its nursery reports the error (or resumes \
             the panic)",
            "None child 3 was cancelled before it finished",
            "Some(\"sleeper\") child 4 \"sleeper\" was cancelled before it finished",
        ]
    );
}

#[test]
fn a_named_child_that_succeeded_keeps_no_name_for_a_second_await() {
    let seen = watchdog(HANG_LIMIT, || {
        join_errors_of(async |n| {
            let mut ok = n.spawn_named("quick", async { Ok(7) });
            assert_eq!((&mut ok).await.unwrap(), 7);
            let again = ok.await.unwrap_err();
            assert!(!again.is_failed() && !again.is_cancelled());
            vec![format!("{:?} {again}", again.name())]
        })
    });
    assert_eq!(
        seen,
        ["None the value of child 1 was already taken by an earlier await of its handle"]
    );
}

#[test]
fn start_errors_name_the_child_given_to_start_named() {
    let seen = watchdog(HANG_LIMIT, || {
        join_errors_of(async |n| {
            let mut seen = Vec::new();
            let failed: Result<u8, _> = n
                .start_named("listener", async |_n, _status| Err::<(), _>("port in use"))
                .await;
            let not_ready: Result<u8, _> = n
                .start_named(String::from("idle"), async |_n, _status| {})
                .await;
            let unnamed: Result<u8, _> = n.start(async |_n, _status| {}).await;
            for err in [failed, not_ready, unnamed].map(Result::unwrap_err) {
                seen.push(format!("{:?} {err}", err.name()));
            }
            // A sibling's failure cancels the nursery while the child is not ready yet;
            // the shielded `start` sees it dropped.
            n.spawn(async {
                trellis::sleep(Duration::from_secs(1)).await;
                Err::<(), _>("sibling failed")
            });
            let cancelled: Result<u8, _> = trellis::shield(
                n.start_named("slow", async |_n, _status| trellis::sleep_forever().await),
            )
            .await;
            let err = cancelled.unwrap_err();
            assert!(err.is_cancelled());
            seen.push(format!("{:?} {err}", err.name()));
            seen
        })
    });
    assert_eq!(
        seen,
        [
            "Some(\"listener\") child 1 \"listener\" failed before it was ready: port in use",
            "Some(\"idle\") child 2 \"idle\" finished without calling `started`; a child given \
             to `start` must call `status.started(value)` once it is ready",
            "None child 3 finished without calling `started`; a child given to `start` must \
             call `status.started(value)` once it is ready",
            "Some(\"slow\") child 5 \"slow\" was cancelled before it was ready",
        ]
    );
}

/// Writes the scope hooks (and spawns, to place them), naming scopes by order of entry
/// (an id is forgotten when its scope exits: a later scope may reuse it).
#[derive(Clone, Default)]
struct Scopes {
    log: Log,
    ids: Arc<Mutex<Vec<u64>>>,
    start: Arc<Mutex<Option<std::time::Instant>>>,
}

impl Scopes {
    fn name(&self, id: Option<u64>) -> String {
        let mut ids = self.ids.lock().unwrap();
        let Some(id) = id else {
            return String::from("-");
        };
        let i = ids
            .iter()
            .position(|&known| known == id)
            .unwrap_or_else(|| {
                ids.push(id);
                ids.len() - 1
            });
        format!("s{}", i + 1)
    }

    fn forget(&self, id: u64) {
        for known in self.ids.lock().unwrap().iter_mut() {
            if *known == id {
                *known = u64::MAX;
            }
        }
    }

    fn describe(&self, s: &ScopeInfo) -> String {
        let start = self
            .start
            .lock()
            .unwrap()
            .expect("set when the body starts");
        let deadline = s
            .deadline()
            .map(|d| format!(" deadline +{:?}", d - start))
            .unwrap_or_default();
        format!(
            "{} in {} (parent {}){}{}{}",
            self.name(Some(s.id())),
            s.task(),
            self.name(s.parent()),
            if s.is_nursery() { " nursery" } else { "" },
            if s.is_shielded() { " shield" } else { "" },
            deadline,
        )
    }
}

impl Instrument for Scopes {
    fn task_spawned(&self, t: &TaskInfo) {
        let nursery = self.name(Some(t.nursery()));
        self.log
            .push(format!("spawned {} ({}) in {nursery}", t.id(), t.name()));
    }
    fn scope_entered(&self, s: &ScopeInfo) {
        let line = format!("entered {}", self.describe(s));
        self.log.push(line);
    }
    fn scope_exited(&self, s: &ScopeInfo) {
        let line = format!("exited {}", self.describe(s));
        self.forget(s.id());
        self.log.push(line);
    }
    fn scope_cancelled(&self, s: &ScopeInfo, reason: &CancelReason) {
        let line = format!("cancelled {}: {reason}", self.describe(s));
        self.log.push(line);
    }
}

#[test]
fn scope_hooks_report_each_scope_with_its_parent_task_and_deadline() {
    let scopes = Scopes::default();
    let (log, start) = (scopes.log.clone(), scopes.start.clone());
    let outcome = watchdog(HANG_LIMIT, move || {
        // The clock is virtual and does not move before the first sleep: deadlines are
        // exact offsets from the reading taken here.
        trellis::Builder::new()
            .autojump()
            .instrument(scopes)
            .run(async {
                *start.lock().unwrap() = Some(trellis::now());
                trellis::nursery(async |n| {
                    n.spawn_named("worker", async {
                        // A timeout that fires, around a shield.
                        trellis::move_on_after(Duration::from_secs(2), async {
                            trellis::shield(trellis::sleep(Duration::from_secs(1))).await;
                            trellis::sleep_forever().await;
                        })
                        .await;
                    });
                    // A scope cancelled before it is entered starts cancelled.
                    let early = trellis::CancelScope::new();
                    early.cancel();
                    early.run(trellis::sleep_forever()).await;
                })
                .await
            })
    });
    assert!(outcome.is_ok(), "no task failed");
    assert_eq!(
        log.text(),
        "\
entered s1 in task 0 (parent -) nursery
spawned task 1 (the nursery body) in s1
spawned task 2 (child 1) in s1
cancelled s2 in task 0 (parent -): cancelled explicitly
entered s2 in task 1 (parent -)
exited s2 in task 1 (parent -)
entered s3 in task 2 (parent -) deadline +2s
entered s4 in task 2 (parent s3) shield
exited s4 in task 2 (parent s3) shield
cancelled s3 in task 2 (parent -) deadline +2s: its deadline passed
exited s3 in task 2 (parent -) deadline +2s
exited s1 in task 0 (parent -) nursery
"
    );
}
