//! The `tracing` feature: `trellis::instrument::Tracing` opens a span per task, parented
//! to the span of the task its nursery runs in, entered around every poll, and emits an
//! event per cancellation with its reason. Checked with a subscriber that records
//! everything it is told.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// A span's or an event's fields, by name.
type FieldMap = HashMap<String, String>;

/// What the subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    /// Span id → (name, fields, parent id).
    spans: HashMap<u64, (String, FieldMap, Option<u64>)>,
    /// The entered spans, innermost last.
    stack: Vec<u64>,
    metadata: HashMap<u64, &'static Metadata<'static>>,
    /// Events: (message, fields, the span they belong to).
    events: Vec<(String, FieldMap, Option<u64>)>,
    /// Spans closed (their last handle dropped).
    closed: Vec<u64>,
}

#[derive(Clone, Default)]
struct Collect {
    seen: Arc<Mutex<Seen>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let mut seen = self.seen.lock().unwrap();
        let parent = match span.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if span.is_contextual() => seen.stack.last().copied(),
            None => None,
        };
        seen.spans
            .insert(id, (span.metadata().name().to_owned(), fields, parent));
        seen.metadata.insert(id, span.metadata());
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let mut seen = self.seen.lock().unwrap();
        let span = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if event.is_contextual() => seen.stack.last().copied(),
            None => None,
        };
        let message = fields.remove("message").unwrap_or_default();
        seen.events.push((message, fields, span));
    }
    fn current_span(&self) -> Current {
        let seen = self.seen.lock().unwrap();
        match seen.stack.last() {
            Some(id) => Current::new(Id::from_u64(*id), seen.metadata[id]),
            None => Current::none(),
        }
    }
    fn try_close(&self, span: Id) -> bool {
        self.seen.lock().unwrap().closed.push(span.into_u64());
        true
    }
    fn enter(&self, span: &Id) {
        self.seen.lock().unwrap().stack.push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut seen = self.seen.lock().unwrap();
        let top = seen.stack.pop();
        assert_eq!(
            top,
            Some(span.into_u64()),
            "spans exit in the order they entered"
        );
    }
}

#[test]
fn task_spans_nest_and_cancellations_carry_their_reason() {
    let collect = Collect::default();
    let out = tracing::subscriber::with_default(collect.clone(), || {
        let _request = tracing::info_span!("request").entered();
        trellis::Builder::new()
            .autojump()
            .instrument(trellis::instrument::Tracing::new())
            .run(async {
                trellis::nursery(async |n| {
                    n.spawn_named("handler", async {
                        tracing::info!("handling");
                        trellis::nursery(async |n| {
                            n.spawn_named("db query", async {
                                tracing::info!("querying");
                                trellis::sleep(Duration::from_secs(1)).await;
                                tracing::info!("queried");
                            });
                        })
                        .await
                        .unwrap();
                    });
                    let timed_out = trellis::move_on_after(
                        Duration::from_secs(5),
                        trellis::sleep(Duration::from_secs(9)),
                    )
                    .await;
                    Ok::<_, ()>(timed_out)
                })
                .await
            })
    });
    assert_eq!(out.unwrap(), None, "the timeout fired");
    let seen = collect.seen.lock().unwrap();
    let span_named = |task: &str| -> u64 {
        let found: Vec<u64> = seen
            .spans
            .iter()
            .filter(|(_, (_, fields, _))| fields.get("task.name").map(String::as_str) == Some(task))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(found.len(), 1, "one span for {task}: {:?}", seen.spans);
        found[0]
    };
    let (request, _) = seen
        .spans
        .iter()
        .find(|(_, (name, _, _))| name == "request")
        .map(|(id, s)| (*id, s))
        .unwrap();
    let handler = span_named("handler");
    let query = span_named("db query");
    let (name, fields, parent) = &seen.spans[&query];
    // tokio's `runtime.spawn` conventions.
    assert_eq!(name, "runtime.spawn");
    assert_eq!(fields["kind"], "task");
    assert!(fields["loc.file"].ends_with("tracing.rs"), "{fields:?}");
    assert!(fields.contains_key("task.id") && fields.contains_key("loc.line"));
    // The query's span is a child of its nursery's, a child of the handler's, a child of
    // the outer nursery's, a child of the request's (the span current when the runtime
    // started).
    let inner = parent.expect("the query's nursery");
    let (name, fields, above) = &seen.spans[&inner];
    assert_eq!(
        (name.as_str(), fields["kind"].as_str()),
        ("scope", "nursery")
    );
    assert_eq!(fields["deadline"], "false");
    assert_eq!(*above, Some(handler));
    let outer = seen.spans[&handler].2.expect("the handler's nursery");
    assert_eq!(seen.spans[&outer].1["kind"], "nursery");
    assert_eq!(seen.spans[&outer].2, Some(request));
    // What a task logs belongs to its span, at every poll (before and after its sleep).
    let span_of = |message: &str| {
        seen.events
            .iter()
            .find(|(m, _, _)| m == message)
            .unwrap_or_else(|| panic!("no event {message:?}: {:?}", seen.events))
            .2
    };
    assert_eq!(span_of("handling"), Some(handler));
    assert_eq!(span_of("querying"), Some(query));
    assert_eq!(span_of("queried"), Some(query));
    // The timeout is an event with its reason; every span entered was exited.
    let cancel = seen
        .events
        .iter()
        .find(|(m, _, _)| m == "scope cancelled")
        .expect("a cancellation event");
    assert_eq!(cancel.1["reason"], "its deadline passed");
    // It is in the timeout's own span: a cancel scope with a deadline, in the outer
    // nursery's body (a task of that nursery).
    let timeout = cancel.2.expect("in the timeout's span");
    let (name, fields, above) = &seen.spans[&timeout];
    assert_eq!(name, "scope");
    assert_eq!(fields["kind"], "cancel scope");
    assert_eq!(fields["deadline"], "true");
    let body = above.expect("in a task");
    assert_eq!(seen.spans[&body].1["task.name"], "the nursery body");
    assert_eq!(seen.spans[&body].2, Some(outer));
    assert!(seen.stack.is_empty(), "{:?}", seen.stack);
    // Every scope's span was closed when its scope ended.
    for (id, (name, _, _)) in &seen.spans {
        if name == "scope" {
            assert!(seen.closed.contains(id), "scope span {id} left open");
        }
    }
}

#[test]
fn a_failed_task_is_an_event_in_its_span_naming_the_outcome() {
    let collect = Collect::default();
    let out = tracing::subscriber::with_default(collect.clone(), || {
        trellis::Builder::new()
            .instrument(trellis::instrument::Tracing::new())
            .run(trellis::nursery(async |n| {
                n.spawn_named("fails", async { Err::<(), _>("no") });
                Ok(())
            }))
    });
    assert!(out.is_err());
    let seen = collect.seen.lock().unwrap();
    let exited: Vec<_> = seen
        .events
        .iter()
        .filter(|(m, _, _)| m == "task exited")
        .collect();
    assert_eq!(exited.len(), 1, "{:?}", seen.events);
    assert_eq!(exited[0].1["outcome"], "failed");
    let span = exited[0].2.expect("in the task's span");
    assert_eq!(seen.spans[&span].1["task.name"], "fails");
    let cancelled = seen
        .events
        .iter()
        .find(|(m, _, _)| m == "scope cancelled")
        .unwrap();
    assert_eq!(cancelled.1["reason"], "child 1 \"fails\" failed");
}
