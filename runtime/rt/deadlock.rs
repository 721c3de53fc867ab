//! The deadlock report: when a runtime on a mock clock can never be woken again, the
//! executor drops the root future and panics with what was blocked, instead of hanging.
//!
//! # State
//!
//! - `DEADLOCK_REPORT` (thread-local): `Some` only while the executor drops a deadlocked
//!   root future; every nursery dropped meanwhile writes its live units into it through
//!   [`deadlock_report`], and the guard it returns indents the nurseries inside it.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;

thread_local! {
    /// The report of a deadlock, while the executor drops the deadlocked root.
    static DEADLOCK_REPORT: RefCell<Option<Report>> = const { RefCell::new(None) };
    /// Writes the live task tree (`scope/dump.rs`, registered from above when the first
    /// scope or nursery runs outside every other): printed by the deadlock panic.
    static TREE_DUMP: Cell<Option<fn() -> String>> = const { Cell::new(None) };
}

/// Registers the function that writes the task tree for the deadlock panic.
pub(crate) fn register_tree_dump(dump: fn() -> String) {
    let _ = TREE_DUMP.try_with(|slot| slot.set(Some(dump)));
}

/// Why a runtime on a mock clock can never be woken again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadlock {
    /// A mock clock without autojump: only `advance` moves time, and no task can run to
    /// call it. `timers` are armed but will never fire.
    ManualClock { timers: usize },
    /// Autojump, but no timer is armed: there is no deadline to jump to.
    NoTimer,
}

/// Adds lines to the deadlock report, if one is being collected on this thread; does
/// nothing (and does not call `write`) otherwise.
///
/// Called by every nursery future at the top of its destructor. While the executor drops
/// a deadlocked root, each nursery lists its live units; the returned guard indents the
/// lines of the nurseries dropped inside it (its body's and children's) one level deeper,
/// until it is dropped at the end of the destructor. Costs one thread-local look-up when
/// no report is being collected.
pub(crate) fn deadlock_report(write: impl FnOnce(&mut ReportWriter<'_>)) -> ReportSection {
    let collected = DEADLOCK_REPORT.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        let report = slot.as_mut()?;
        write(&mut ReportWriter { report });
        report.depth += 1;
        Some(())
    });
    ReportSection {
        active: matches!(collected, Ok(Some(()))),
    }
}

/// A deadlock report under construction: the blocked units, one per line.
#[derive(Debug, Default)]
struct Report {
    text: String,
    /// How many nursery sections enclose the next lines.
    depth: usize,
}

/// Writes a nursery's section of a deadlock report.
#[derive(Debug)]
pub(crate) struct ReportWriter<'a> {
    report: &'a mut Report,
}

impl ReportWriter<'_> {
    /// A heading line (a nursery).
    pub(crate) fn heading(&mut self, line: fmt::Arguments<'_>) {
        self.write(4 + 2 * self.report.depth, line);
    }

    /// A line under the current heading (one unit of the nursery).
    pub(crate) fn item(&mut self, line: fmt::Arguments<'_>) {
        self.write(6 + 2 * self.report.depth, line);
    }

    fn write(&mut self, indent: usize, line: fmt::Arguments<'_>) {
        // Writing to a `String` cannot fail.
        let _ = writeln!(self.report.text, "{:indent$}{line}", "");
    }
}

/// Ends a nursery's section of the deadlock report when dropped.
#[derive(Debug)]
#[must_use = "the section ends when this guard is dropped"]
pub(crate) struct ReportSection {
    active: bool,
}

impl Drop for ReportSection {
    fn drop(&mut self) {
        if self.active {
            let _ = DEADLOCK_REPORT.try_with(|slot| {
                if let Some(report) = slot.borrow_mut().as_mut() {
                    report.depth = report.depth.saturating_sub(1);
                }
            });
        }
    }
}

/// Drops the deadlocked root, then calls `drop_others` (which drops the system tasks of
/// `from_thread`, each under a heading of its own), collecting what each nursery held, and
/// panics with it.
#[cold]
#[track_caller]
pub(crate) fn panic_deadlocked<F>(
    deadlock: Deadlock,
    mut root: Pin<&mut Option<F>>,
    run_at: &'static Location<'static>,
    drop_others: impl FnOnce(),
) -> ! {
    // The live tree first, while every task is still there to be described.
    let tree = TREE_DUMP
        .try_with(Cell::get)
        .ok()
        .flatten()
        .map(|dump| std::panic::catch_unwind(dump).unwrap_or_default())
        .unwrap_or_default();
    let mut report = Report::default();
    let _ = writeln!(report.text, "  the root future, run at {run_at}");
    DEADLOCK_REPORT.with(|slot| *slot.borrow_mut() = Some(report));
    // The runtime is still entered, so the tasks' destructors find it (timers disarm,
    // registrations delete themselves). A destructor that panics must not hide the
    // deadlock: its panic is caught and mentioned.
    let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| {
        root.set(None);
        drop_others();
    }));
    let report = DEADLOCK_REPORT
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_default();
    let why = match deadlock {
        Deadlock::ManualClock { timers } => format!(
            "the runtime runs on a mock clock without autojump, whose time moves only when a \
             task calls `trellis::advance`, and no task can run to call it ({timers} armed \
             timer(s) will never fire); no I/O source is registered and no thread work is in \
             flight"
        ),
        Deadlock::NoTimer => String::from(
            "the runtime runs on a mock clock with autojump, but no timer is armed, so there \
             is no deadline to jump to; no I/O source is registered and no thread work is in \
             flight",
        ),
    };
    let fix = match deadlock {
        Deadlock::ManualClock { .. } => {
            "build the runtime with `Builder::autojump()` so that time jumps to the next \
             deadline when every task is blocked, or call `trellis::advance` from a task that \
             stays runnable; otherwise find what the tasks above wait for that never comes"
        }
        Deadlock::NoTimer => {
            "find what the tasks above wait for that never comes (an event nobody sets, a \
             `sleep(Duration::MAX)` or `sleep_forever()` with no timeout around it); a \
             timeout (`move_on_after`, `fail_after`) gives autojump a deadline to jump to, \
             and `trellis::advance` moves the clock by hand"
        }
    };
    let destructor = if dropped.is_err() {
        "\n(a destructor panicked while the blocked tasks were dropped; its message is above)"
    } else {
        ""
    };
    panic!(
        "trellis: deadlock: every task is blocked and nothing can ever wake one: {why}.\n\
         blocked (each nursery lists its live units; nurseries inside them follow, indented):\n\
         {}{tree}to fix it: {fix}{destructor}",
        report.text
    )
}
