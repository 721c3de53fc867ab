//! The task tree's text: [`TaskTree`], and the per-task record a nursery keeps for it.
//!
//! The walk over the live tree is in `scope/dump.rs` (it reads the scope tree); this file
//! holds what it writes and how a line reads, so that the format is in one place.

#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use crate::instrument::hooks::{TaskId, TaskInfo, Wait};
use crate::instrument::label::{TaskLabel, TaskName};
use crate::instrument::reason::CancelReason;

/// The records a nursery keeps while the runtime records tasks: its body's, and its
/// children's under the keys of the nursery's own children. Boxed and made only when
/// recording, so a node that records nothing carries one pointer; emptied, not freed,
/// when the node is reused.
#[derive(Debug, Default)]
pub(crate) struct TaskRecords {
    pub(crate) body: Option<TaskRecord>,
    /// At index `key`, the record of the child at `key` (the nursery's keys are dense:
    /// at most as many as its children at their most).
    children: Vec<Option<TaskRecord>>,
}

impl TaskRecords {
    /// Keeps `record` as the record of the child at `key`.
    pub(crate) fn insert_child(&mut self, key: usize, record: TaskRecord) {
        if self.children.len() <= key {
            self.children.resize_with(key + 1, || None);
        }
        self.children[key] = Some(record);
    }

    pub(crate) fn child(&self, key: usize) -> Option<&TaskRecord> {
        self.children.get(key)?.as_ref()
    }

    pub(crate) fn child_mut(&mut self, key: usize) -> Option<&mut TaskRecord> {
        self.children.get_mut(key)?.as_mut()
    }

    pub(crate) fn remove_child(&mut self, key: usize) -> Option<TaskRecord> {
        self.children.get_mut(key)?.take()
    }

    /// The children's records, in key order.
    pub(crate) fn children(&self) -> impl Iterator<Item = (usize, &TaskRecord)> {
        let kept = self.children.iter().enumerate();
        kept.filter_map(|(key, r)| Some((key, r.as_ref()?)))
    }

    /// Forgets every record, keeping the storage.
    pub(crate) fn clear(&mut self) {
        self.body = None;
        self.children.clear();
    }
}

/// What a nursery keeps about one of its tasks (its body or a child) for the tree and the
/// instruments: kept next to the scope tree's node, so a walk reads it without touching
/// the task's future.
#[derive(Debug, Clone)]
pub(crate) struct TaskRecord {
    pub(crate) id: TaskId,
    pub(crate) name: TaskName,
    pub(crate) label: TaskLabel,
    /// The scheduler tick's reading when it was spawned.
    pub(crate) spawned: Instant,
    pub(crate) polls: u32,
    /// What its last poll parked on.
    pub(crate) wait: Wait,
}

impl TaskRecord {
    /// What an instrument is told about the task, whose nursery (the scope `nursery`)
    /// runs in task `parent`.
    pub(crate) fn info(&self, parent: TaskId, nursery: u64) -> TaskInfo {
        TaskInfo {
            id: self.id,
            parent,
            nursery,
            name: self.name,
            label: self.label.clone(),
        }
    }
}

/// A printable snapshot of a runtime's live tree: every nursery and cancel scope, with its
/// deadline, shield and cancellation, and every task in it, with its name, what it waits
/// on, its age and how often it was polled. Made by [`dump_tree`](crate::dump_tree).
///
/// Times are relative to the runtime's clock when the snapshot was taken (virtual time on
/// a mock clock, so a dump in a test is the same at every run).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
///     n.spawn_named("sleeper", trellis::sleep(Duration::from_secs(5)));
///     trellis::sleep(Duration::from_secs(1)).await;
///     let tree = trellis::dump_tree();
///     assert_eq!(tree.task_count(), 2);
///     let text = tree.to_string();
///     assert!(text.contains("child 1 \"sleeper\": waiting on a timer, due in 4s; age 1s, 1 poll"));
/// }));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskTree {
    text: String,
    tasks: usize,
}

impl TaskTree {
    /// How many tasks the tree holds (bodies and children, not the root future).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     assert_eq!(trellis::dump_tree().task_count(), 0); // only the root future
    /// });
    /// ```
    pub fn task_count(&self) -> usize {
        self.tasks
    }
}

impl fmt::Display for TaskTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The state of a task, as a line of the tree says it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskState {
    /// Its poll is on the stack: it is the caller of the dump, or encloses it.
    pub(crate) running: bool,
    /// A shield is held inside it.
    pub(crate) shielded: bool,
    /// A cancellation reached its scope; a shield keeps it.
    pub(crate) cancelled: bool,
    /// Scopes or nurseries run inside it (what it waits in, when nothing else is known).
    pub(crate) nested: bool,
}

/// Writes a [`TaskTree`], one line per scope and per task, indented by depth.
#[derive(Debug)]
pub(crate) struct TreeWriter {
    now: Instant,
    depth: usize,
    tree: TaskTree,
}

impl TreeWriter {
    pub(crate) fn new(now: Instant) -> TreeWriter {
        let mut tree = TaskTree::default();
        tree.text.push_str("task tree (the root future):\n");
        TreeWriter {
            now,
            depth: 1,
            tree,
        }
    }

    pub(crate) fn finish(self) -> TaskTree {
        self.tree
    }

    /// A scope or nursery line; the lines written inside `inside` are indented below it.
    pub(crate) fn scope(
        &mut self,
        heading: fmt::Arguments<'_>,
        deadline: Option<Instant>,
        shield: bool,
        cancelled: Option<&CancelReason>,
        inside: impl FnOnce(&mut TreeWriter),
    ) {
        let mut line = heading.to_string();
        if let Some(deadline) = deadline {
            let _ = write!(line, ", {}", self.due(deadline, "deadline"));
        }
        if shield {
            line.push_str(", shielded");
        }
        if let Some(reason) = cancelled {
            let _ = write!(line, ", cancelled ({reason})");
        }
        self.line(&line);
        self.depth += 1;
        inside(self);
        self.depth -= 1;
    }

    /// A task's line; the scopes inside it go in `inside`.
    pub(crate) fn task(
        &mut self,
        record: &TaskRecord,
        state: TaskState,
        inside: impl FnOnce(&mut TreeWriter),
    ) {
        self.tree.tasks += 1;
        let mut line = format!("{}: {}: ", record.id, record.label.describing(record.name));
        line.push_str(&self.doing(record, state));
        if state.shielded {
            line.push_str(", in a shield");
        }
        if state.cancelled {
            line.push_str(", being cancelled");
        }
        let age = rounded(self.now.saturating_duration_since(record.spawned));
        let polls = match record.polls {
            1 => String::from("1 poll"),
            n => format!("{n} polls"),
        };
        let _ = write!(line, "; age {age:?}, {polls}");
        self.line(&line);
        self.depth += 1;
        inside(self);
        self.depth -= 1;
    }

    fn doing(&self, record: &TaskRecord, state: TaskState) -> String {
        if state.running {
            return String::from("running");
        }
        if record.polls == 0 {
            return String::from("ready");
        }
        match record.wait {
            Wait::Timer(due) => format!("waiting on a timer, {}", self.due(due, "due")),
            Wait::Io { fd, write } => {
                let dir = if write { "writing" } else { "reading" };
                format!("waiting on fd {fd} for {dir}")
            }
            Wait::Yielded => String::from("ready (it yielded)"),
            Wait::Other if state.nested => String::from("waiting inside"),
            Wait::Other => String::from("waiting"),
        }
    }

    fn due(&self, at: Instant, what: &str) -> String {
        match at.checked_duration_since(self.now) {
            Some(d) if d > Duration::ZERO => format!("{what} in {:?}", rounded(d)),
            _ => format!(
                "{what} {:?} ago",
                rounded(self.now.saturating_duration_since(at))
            ),
        }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(
            self.tree.text,
            "{:indent$}{text}",
            "",
            indent = 2 * self.depth
        );
    }
}

/// A duration to the millisecond (to the microsecond below one): enough for a reader, and
/// exact on the mock clocks' whole seconds.
fn rounded(d: Duration) -> Duration {
    if d >= Duration::from_millis(1) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
