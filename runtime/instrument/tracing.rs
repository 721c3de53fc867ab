//! [`Tracing`]: an [`Instrument`] that reports to `tracing` (the `tracing` feature).
//!
//! # State
//!
//! - `spans`: the span of every live task, by its runtime's thread and its id (ids are
//!   per runtime, and one `Tracing` may serve the runtimes of several threads through an
//!   `Arc`: keyed by id alone, a runtime entered and closed another's spans; found by
//!   tests/adversarial_instrument.rs): opened at `task_spawned`, entered
//!   around each poll, closed at `task_exited` (dropping the span closes it). A task's
//!   span is a child of the span of the task its nursery was opened in (so the body and
//!   the children of one nursery are siblings, as they are in the nursery), or of `root`,
//!   the span current when the runtime started, for the tasks of a nursery in the root
//!   future (`root`: one per thread whose runtime runs, set at `before_run`).
//! - `scopes`: the span of every live scope (nurseries' and cancel scopes), by scope id:
//!   opened at `scope_entered`, closed at `scope_exited`, a child of the enclosing scope's
//!   span, else of its task's span, else `root`. A task's span is a child of its nursery's
//!   span, so the tree of spans is the tree of nurseries, scopes and tasks.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use crate::instrument::hooks::{Instrument, ScopeInfo, TaskId, TaskInfo, TaskOutcome};
use crate::instrument::label::TaskName;
use crate::instrument::reason::CancelReason;

/// Reports a runtime to [`tracing`](https://docs.rs/tracing): a span per task and per
/// scope, an event per cancellation and per task that did not return. Needs the `tracing`
/// feature.
///
/// Task spans follow tokio's conventions for `runtime.spawn` spans, so that tools written
/// for them recognise trellis's tasks: target `trellis::task`, name `runtime.spawn`, level
/// `TRACE`, fields `kind = "task"`, `task.name` (the task's name, or `child 3`, `the
/// nursery body`), `task.id`, `loc.file`, `loc.line`, `loc.col`. A task's span is entered
/// during each of its polls, so what the task logs nests under it, and under the spans of
/// the tasks it runs in: the logs of one request nest under the request's task.
///
/// Scope spans (target `trellis::scope`, name `scope`, level `TRACE`, fields `kind =
/// "nursery"` or `"cancel scope"`, `scope.id`, `shield`, `deadline` (whether it has one)):
/// one per nursery and cancel scope (timeouts included), open while the scope runs. A
/// task's span is a child of its nursery's span, and a scope's span of the enclosing
/// scope's (or of its task's): the spans form the tree of nurseries, scopes and tasks.
/// Scope spans are not entered (a task's poll enters its task's span only), so logs nest
/// under tasks, not under the scopes inside them.
///
/// One `Tracing` may serve the runtimes of several threads (an `Arc<Tracing>` given to
/// each one's `Builder`): each runtime's tasks get their own spans, under the span current
/// when that runtime started.
///
/// Events (target `trellis::cancel`, level `DEBUG`): `scope cancelled` with the `reason`
/// (`its deadline passed` for a timeout), in the cancelled scope's span, and `task exited`
/// with the `outcome`, for tasks that failed, panicked or were cancelled.
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
    spans: Mutex<HashMap<(ThreadId, TaskId), tracing::Span>>,
    /// By address: unique among the live scopes of every thread.
    scopes: Mutex<HashMap<u64, tracing::Span>>,
    /// The parent of the tasks of nurseries opened in the root future, per runtime (by its
    /// thread): the span current when the runtime started.
    roots: Mutex<HashMap<ThreadId, tracing::Span>>,
    /// The parent for a runtime the instrument was added to while it ran (no `before_run`):
    /// the span current when the instrument was made.
    made_in: tracing::Span,
}

impl Default for Tracing {
    fn default() -> Tracing {
        Tracing {
            spans: Mutex::default(),
            scopes: Mutex::default(),
            roots: Mutex::default(),
            made_in: tracing::Span::current(),
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

    /// The span of scope `scope` if it is known, else of task `task`, else the root's.
    fn parent_span(&self, scope: Option<u64>, task: TaskId) -> Option<tracing::Id> {
        let scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = scope.and_then(|id| scopes.get(&id)) {
            return span.id();
        }
        drop(scopes);
        let here = thread::current().id();
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = spans.get(&(here, task)) {
            return span.id();
        }
        drop(spans);
        let roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        roots.get(&here).unwrap_or(&self.made_in).id()
    }

    fn with_span(&self, task: TaskId, f: impl FnOnce(&tracing::Span)) {
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = spans.get(&(thread::current().id(), task)) {
            f(span);
        }
    }
}

impl Instrument for Tracing {
    fn before_run(&self) {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        roots.insert(thread::current().id(), tracing::Span::current());
    }

    fn after_run(&self) {
        let here = thread::current().id();
        self.roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&here);
        // Every task has exited; nothing of this runtime is left (a later one on this
        // thread numbers its tasks from 1 again).
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.retain(|(thread, _), _| *thread != here);
    }

    fn task_spawned(&self, task: &TaskInfo) {
        let parent = self.parent_span(Some(task.nursery()), task.parent());
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
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.insert((thread::current().id(), task.id()), span);
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
            .remove(&(thread::current().id(), task.id()));
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

    fn scope_entered(&self, scope: &ScopeInfo) {
        let parent = self.parent_span(scope.parent(), scope.task());
        let kind = if scope.is_nursery() {
            "nursery"
        } else {
            "cancel scope"
        };
        let span = tracing::trace_span!(
            target: "trellis::scope",
            parent: parent,
            "scope",
            kind = kind,
            scope.id = scope.id(),
            shield = scope.is_shielded(),
            deadline = scope.deadline().is_some(),
        );
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes.insert(scope.id(), span);
    }

    fn scope_exited(&self, scope: &ScopeInfo) {
        let span = self
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&scope.id());
        drop(span);
    }

    fn scope_cancelled(&self, scope: &ScopeInfo, reason: &CancelReason) {
        let span = self
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&scope.id())
            .and_then(tracing::Span::id);
        match span {
            Some(span) => tracing::debug!(
                target: "trellis::cancel",
                parent: span,
                { reason = %reason },
                "scope cancelled"
            ),
            // Cancelled before it was entered: in the canceller's span.
            None => tracing::debug!(target: "trellis::cancel", reason = %reason, "scope cancelled"),
        }
    }
}
