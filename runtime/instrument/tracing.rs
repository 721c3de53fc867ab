//! [`Tracing`]: an [`Instrument`] that reports to `tracing` (the `tracing` feature).
//!
//! # State
//!
//! - `spans`: the span of every live task, by id: opened at `task_spawned`, entered
//!   around each poll, closed at `task_exited` (dropping the span closes it). A task's
//!   span is a child of the span of the task its nursery was opened in (so the body and
//!   the children of one nursery are siblings, as they are in the nursery), or of `root`,
//!   the span current when the runtime started, for the tasks of a nursery in the root
//!   future.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use crate::instrument::hooks::{Instrument, TaskId, TaskInfo, TaskOutcome};
use crate::instrument::label::TaskName;
use crate::instrument::reason::CancelReason;

/// Reports a runtime to [`tracing`](https://docs.rs/tracing): a span per task, an event per
/// cancellation and per task that did not return. Needs the `tracing` feature.
///
/// Spans follow tokio's conventions for `runtime.spawn` spans, so that tools written for
/// them recognise trellis's tasks: target `trellis::task`, name `runtime.spawn`, level
/// `TRACE`, fields `kind = "task"`, `task.name` (the task's name, or `child 3`, `the
/// nursery body`), `task.id`, `loc.file`, `loc.line`, `loc.col`. A task's span is entered
/// during each of its polls, so what the task logs nests under it, and under the spans of
/// the tasks it runs in: the logs of one request nest under the request's task.
///
/// Events (target `trellis::cancel`, level `DEBUG`): `scope cancelled` with the `reason`
/// (`its deadline passed` for a timeout), and `task exited` with the `outcome`, for tasks
/// that failed, panicked or were cancelled.
///
/// # Examples
///
/// ```
/// trellis::Builder::new()
///     .instrument(trellis::instrument::Tracing::new())
///     .run(trellis::nursery(async |n| {
///         n.spawn_named("fetch user", async {
///             tracing::info!("inside the task's span");
///         });
///     }));
/// ```
#[derive(Debug)]
pub struct Tracing {
    spans: Mutex<HashMap<TaskId, tracing::Span>>,
    /// The parent of the tasks of nurseries opened in the root future: the span current
    /// when the runtime started (or when the instrument was made, if added later).
    root: Mutex<tracing::Span>,
}

impl Default for Tracing {
    fn default() -> Tracing {
        Tracing {
            spans: Mutex::default(),
            root: Mutex::new(tracing::Span::current()),
        }
    }
}

impl Tracing {
    /// An instrument that reports to the current `tracing` subscriber; the span current
    /// when the runtime starts is the parent of the tasks opened in its root future.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = trellis::Builder::new().instrument(trellis::instrument::Tracing::new());
    /// builder.run(async {});
    /// ```
    pub fn new() -> Tracing {
        Tracing::default()
    }

    fn with_span(&self, task: TaskId, f: impl FnOnce(&tracing::Span)) {
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = spans.get(&task) {
            f(span);
        }
    }
}

impl Instrument for Tracing {
    fn before_run(&self) {
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = tracing::Span::current();
    }

    fn task_spawned(&self, task: &TaskInfo) {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let parent = match spans.get(&task.parent()) {
            Some(span) => span.id(),
            None => self.root.lock().unwrap_or_else(|e| e.into_inner()).id(),
        };
        let location = task.label().location();
        let name = match (task.label().name(), task.name()) {
            (Some(name), _) => name.to_owned(),
            (None, TaskName::Body) => String::from("the nursery body"),
            (None, child) => child.to_string(),
        };
        let span = tracing::trace_span!(
            target: "trellis::task",
            parent: parent,
            "runtime.spawn",
            kind = "task",
            task.name = %name,
            task.id = task.id().as_u64(),
            loc.file = location.file(),
            loc.line = location.line(),
            loc.col = location.column(),
        );
        spans.insert(task.id(), span);
    }

    fn before_task_poll(&self, task: &TaskInfo) {
        self.with_span(task.id(), |span| {
            span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
        });
    }

    fn after_task_poll(&self, task: &TaskInfo) {
        self.with_span(task.id(), |span| {
            span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
        });
    }

    fn task_exited(&self, task: &TaskInfo, outcome: &TaskOutcome) {
        let span = self
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task.id());
        if *outcome != TaskOutcome::Returned {
            let parent = span.as_ref().and_then(tracing::Span::id);
            let id = task.id().as_u64();
            tracing::debug!(
                target: "trellis::cancel",
                parent: parent,
                { task.id = id, outcome = %outcome },
                "task exited"
            );
        }
    }

    fn scope_cancelled(&self, reason: &CancelReason) {
        tracing::debug!(target: "trellis::cancel", reason = %reason, "scope cancelled");
    }
}
