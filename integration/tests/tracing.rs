//! The `tracing` feature: `trellis::instrument::Tracing` opens a span per task, parented
//! to the span of the task its nursery runs in, entered around every poll, and emits an
//! event per cancellation with its reason. Checked with a subscriber that records
//! everything it is told.

mod common;

use std::time::Duration;

use common::collect::Collect;

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
    assert_eq!(seen.bad_exits, 0, "spans exit in the order they entered");
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
    assert_eq!(seen.bad_exits, 0, "spans exit in the order they entered");
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
