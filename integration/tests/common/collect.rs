//! A `tracing` subscriber that records everything it is told: spans with their fields and
//! parents, events, the stack of entered spans and the threads they were entered on, the
//! spans closed, and exits that were not of the innermost entered span (`bad_exits`), so
//! that a test can check every task's span was opened, entered in order and closed once.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// A span's or an event's fields, by name.
pub type FieldMap = HashMap<String, String>;

/// What the subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Span id → (name, fields, parent id).
    pub spans: HashMap<u64, (String, FieldMap, Option<u64>)>,
    /// The entered spans, innermost last.
    pub stack: Vec<u64>,
    pub metadata: HashMap<u64, &'static Metadata<'static>>,
    /// Events: (message, fields, the span they belong to).
    pub events: Vec<(String, FieldMap, Option<u64>)>,
    /// Spans closed (their last handle dropped).
    pub closed: Vec<u64>,
    /// Exits of a span that was not the innermost entered one (spans exit in the order
    /// they entered: a test asserts this stays 0).
    pub bad_exits: usize,
    /// The threads spans were entered on.
    pub entered_on: Vec<std::thread::ThreadId>,
}

#[derive(Clone, Default)]
pub struct Collect {
    pub seen: Arc<Mutex<Seen>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut FieldMap);

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
        let mut seen = self.seen.lock().unwrap();
        seen.stack.push(span.into_u64());
        seen.entered_on.push(std::thread::current().id());
    }
    fn exit(&self, span: &Id) {
        let mut seen = self.seen.lock().unwrap();
        if seen.stack.pop() != Some(span.into_u64()) {
            seen.bad_exits += 1;
        }
    }
}
