//! Behaviour of the executor itself: deadlocks on the mock clocks are reported instead of
//! hanging, misuse panics point at the caller's line, runtimes are independent.
//!
//! The panic-location tests install a process-wide panic hook (once). It records the
//! location only on a thread that asked for it (a thread-local flag) and forwards every
//! other panic to the previous hook, so tests running in parallel on other threads neither
//! disturb a capture nor lose their own panic output.

mod common;

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

use common::{HANG_LIMIT, panic_message_of, watchdog};
use trellis::{Builder, nursery, sleep, sleep_forever};

const HOUR: Duration = Duration::from_secs(3600);

/// `file:line:` as a panic location or a deadlock report prints it, for a line of this file.
fn here(line: u32) -> String {
    format!("{}:{line}:", file!())
}

#[test]
fn a_mock_clock_deadlock_panics_naming_the_root_and_where_every_blocked_child_was_spawned() {
    let message = watchdog(HANG_LIMIT, || {
        let lines: [Cell<u32>; 6] = Default::default();
        let message = panic_message_of(|| {
            lines[0].set(line!() + 1);
            Builder::new().mock_clock().run(async {
                nursery(async |n| {
                    lines[1].set(line!() + 1);
                    n.spawn(sleep(HOUR)); // armed, but nobody calls `advance`
                    lines[2].set(line!() + 1);
                    n.start_soon(sleep_forever());
                    lines[3].set(line!() + 1);
                    n.spawn_with(async |_n| sleep_forever().await);
                    lines[4].set(line!() + 2); // the location of a method call is its name
                    let _ = n
                        .start(async |_n, status| {
                            status.started(());
                            sleep_forever().await
                        })
                        .await;
                    nursery(async |inner| {
                        lines[5].set(line!() + 1);
                        inner.spawn(sleep_forever());
                        sleep_forever().await
                    })
                    .await
                    .unwrap();
                })
                .await
                .unwrap();
            })
        });
        for line in &lines[1..] {
            assert!(
                message.contains(&format!("spawned at {}", here(line.get()))),
                "the report must name the spawn at line {}:\n{message}",
                line.get()
            );
        }
        assert!(
            message.contains(&format!("the root future, run at {}", here(lines[0].get()))),
            "{message}"
        );
        message
    });
    assert!(message.contains("deadlock"), "{message}");
    assert!(
        message.contains("1 armed timer(s) will never fire"),
        "{message}"
    );
    assert!(message.contains("`Builder::autojump()`"), "{message}");
    assert!(message.contains("`trellis::advance`"), "{message}");
    assert!(
        message.contains("its body"),
        "live nursery bodies are listed:\n{message}"
    );
}

#[test]
fn an_autojump_deadlock_with_no_timer_armed_panics_naming_the_blocked_child() {
    let (message, line) = watchdog(HANG_LIMIT, || {
        let line = Cell::new(0);
        let message = panic_message_of(|| {
            common::run_virtual(async {
                nursery(async |n| {
                    line.set(line!() + 1);
                    n.spawn(std::future::pending::<()>()); // nothing will ever wake it
                })
                .await
                .unwrap();
            })
        });
        (message, line.get())
    });
    assert!(message.contains("deadlock"), "{message}");
    assert!(message.contains("no timer is armed"), "{message}");
    assert!(
        message.contains(&format!("child 1 (spawned at {}", here(line))),
        "{message}"
    );
    assert!(message.contains("autojump"), "{message}");
    assert!(message.contains("`trellis::advance`"), "{message}");
}

#[test]
fn the_tasks_of_a_deadlocked_runtime_are_dropped_before_the_panic() {
    let dropped = watchdog(HANG_LIMIT, || {
        let counter = common::DropCounter::new();
        panic_message_of(|| {
            common::run_virtual(async {
                nursery(async |n| {
                    let guard = counter.guard();
                    n.spawn(async move {
                        std::future::pending::<()>().await;
                        guard.finish();
                    });
                })
                .await
                .unwrap();
            })
        });
        counter.dropped()
    });
    assert_eq!(dropped, 1);
}

#[test]
fn a_real_clock_runtime_waits_for_a_wake_from_another_thread_instead_of_reporting_a_deadlock() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let (tx, rx) = std::sync::mpsc::channel::<std::task::Waker>();
            let waker_thread = std::thread::spawn(move || rx.recv().expect("a waker").wake());
            let mut sent = Some(tx);
            // Pending until the other thread wakes us: no timer, no I/O source, and on the
            // real clock that is not a deadlock.
            std::future::poll_fn(|cx| match sent.take() {
                Some(tx) => {
                    tx.send(cx.waker().clone()).expect("the thread waits");
                    Poll::Pending
                }
                None => Poll::Ready(()),
            })
            .await;
            waker_thread.join().expect("the waker thread");
        });
    });
}

#[test]
fn a_thread_runs_a_new_runtime_after_one_panicked_out_of_run() {
    let message = panic_message_of(|| trellis::run(async { panic!("boom") }));
    assert_eq!(message, "boom");
    assert_eq!(
        trellis::run(async { 7 }),
        7,
        "the first runtime was left entered"
    );
}

#[test]
fn two_mock_clocks_on_two_threads_move_independently() {
    let start_and_now = || {
        Builder::new().mock_clock().run(async {
            let start = trellis::now();
            trellis::advance(HOUR);
            trellis::now() - start
        })
    };
    let other = std::thread::spawn(move || {
        Builder::new().mock_clock().run(async {
            let start = trellis::now();
            trellis::yield_now().await;
            trellis::now() - start
        })
    });
    assert_eq!(start_and_now(), HOUR);
    assert_eq!(other.join().unwrap(), Duration::ZERO);
}

// ---- panic locations ----------------------------------------------------------------

thread_local! {
    /// `Some` while this thread captures the location of its next panic.
    static CAPTURED: RefCell<Option<Option<(String, u32)>>> = const { RefCell::new(None) };
}

/// Runs `f`, which must panic, and returns the file and line the panic was raised at and
/// its message.
fn panic_location<T>(f: impl FnOnce() -> T) -> (String, u32, String) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURED.with_borrow_mut(|slot| match slot {
                // Keep the first panic's location (a destructor might panic after it).
                Some(None) => {
                    *slot = Some(info.location().map(|l| (l.file().to_owned(), l.line())));
                    true
                }
                Some(Some(_)) => true,
                None => false,
            });
            if !captured {
                previous(info);
            }
        }));
    });
    CAPTURED.set(Some(None));
    let message = panic_message_of(f);
    let (file, line) = CAPTURED.take().flatten().expect("the hook saw the panic");
    (file, line, message)
}

#[test]
fn now_outside_a_runtime_panics_at_the_callers_line() {
    let (file, line, message) = panic_location(|| {
        trellis::now() // the line to report
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 2), "{message}");
    assert!(message.contains("needs a trellis runtime"), "{message}");
}

#[test]
fn sleep_outside_a_runtime_panics_at_the_callers_line() {
    let (file, line, message) = panic_location(|| {
        sleep(HOUR) // the line to report
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 2), "{message}");
    assert!(message.contains("needs a trellis runtime"), "{message}");
}

#[test]
fn advance_outside_a_runtime_panics_at_the_callers_line() {
    let (file, line, message) = panic_location(|| {
        trellis::advance(HOUR) // the line to report
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 2), "{message}");
    assert!(message.contains("needs a trellis runtime"), "{message}");
}

#[test]
fn advance_on_the_real_clock_panics_at_the_callers_line() {
    let (file, line, message) = panic_location(|| {
        trellis::run(async {
            trellis::advance(HOUR) // the line to report
        })
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 3), "{message}");
    assert!(message.contains("needs a mock clock"), "{message}");
}

#[test]
fn a_nested_run_panics_at_the_callers_line() {
    let (file, line, message) = panic_location(|| {
        trellis::run(async {
            trellis::run(async {}) // the line to report
        })
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 3), "{message}");
    assert!(message.contains("cannot be nested"), "{message}");
    let (file, line, _) = panic_location(|| {
        trellis::run(async {
            Builder::new().autojump().run(async {}) // the line to report
        })
    });
    assert_eq!((file.as_str(), line), (file!(), line!() - 3));
}

#[test]
fn a_deadlock_panics_at_the_run_call() {
    let ((file, line, message), expected) = watchdog(HANG_LIMIT, || {
        let got = panic_location(|| {
            Builder::new().autojump().run(sleep_forever()) // the line to report
        });
        (got, line!() - 2)
    });
    assert_eq!((file.as_str(), line), (file!(), expected), "{message}");
    assert!(message.contains("deadlock"), "{message}");
}
