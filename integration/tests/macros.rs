//! The macros' expansions run: errors map into the function's error type, panics propagate,
//! children borrow the annotated function's arguments, the test attribute picks the clock.
//!
//! The whole file is compiled under `deny(warnings)` and clippy's default lints, so an
//! expansion that warns fails the build.

#![deny(warnings, clippy::all)]

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use trellis::{ErrorGroup, Nursery, nursery, open_nursery, sleep, sleep_forever};

#[derive(Debug, PartialEq, Eq, Clone)]
struct Oops(&'static str);

/// A function-level error type that keeps every child's error.
#[derive(Debug, PartialEq, Eq)]
struct Many(Vec<Oops>);

impl From<Oops> for Many {
    fn from(oops: Oops) -> Self {
        Many(vec![oops])
    }
}

impl Many {
    fn from_group(group: ErrorGroup<Many>) -> Many {
        Many(group.into_errors().into_iter().flat_map(|m| m.0).collect())
    }
}

#[nursery]
async fn spawn_failures(n: Nursery, errors: &[&'static str]) -> Result<u32, Oops> {
    for (i, e) in errors.iter().enumerate() {
        let _child = n.spawn(async move {
            sleep(Duration::from_secs(i as u64)).await;
            Err::<(), _>(Oops(e))
        });
    }
    Ok(7)
}

#[trellis::test(autojump)]
async fn first_error_becomes_the_function_error() {
    assert_eq!(spawn_failures(&[]).await, Ok(7));
    assert_eq!(spawn_failures(&["a", "b"]).await, Err(Oops("a")));
}

#[nursery(map_err = Many::from_group)]
async fn all_fail(n: Nursery, errors: &[&'static str]) -> Result<(), Many> {
    for e in errors {
        // Shielded, so that the first failure does not cancel the others before they fail.
        let _child = n.spawn(trellis::shield(async move {
            trellis::yield_now().await;
            Err::<(), _>(Many::from(Oops(e)))
        }));
    }
    Ok(())
}

#[trellis::test]
async fn map_err_sees_every_error() {
    assert_eq!(
        all_fail(&["a", "b"]).await,
        Err(Many(vec![Oops("a"), Oops("b")]))
    );
}

fn parse(s: &str) -> Result<u32, Oops> {
    s.parse().map_err(|_| Oops("not a number"))
}

#[nursery]
async fn question_mark_in_body(n: Nursery, s: &str) -> Result<u32, Many> {
    let value = parse(s)?;
    let _child = n.spawn(async { Ok(()) });
    Ok(value * 2)
}

#[trellis::test]
async fn question_mark_converts_into_the_function_error() {
    assert_eq!(question_mark_in_body("21").await, Ok(42));
    assert_eq!(
        question_mark_in_body("x").await,
        Err(Many(vec![Oops("not a number")]))
    );
}

#[nursery]
async fn sum_in_children(n: Nursery, numbers: Vec<u64>, total: &Cell<u64>) {
    for x in &numbers {
        let _child = n.spawn(async move {
            sleep(Duration::from_secs(*x)).await;
            total.set(total.get() + x);
        });
    }
}

#[trellis::test(autojump)]
async fn children_borrow_arguments_of_the_annotated_fn() {
    let total = Cell::new(0);
    sum_in_children(vec![1, 2, 3], &total).await;
    assert_eq!(total.get(), 6);
}

fn n_is_valid() -> bool {
    true
}

#[nursery]
async fn panicking_child(n: Nursery) -> u32 {
    let _child = n.spawn(async {
        trellis::yield_now().await;
        if n_is_valid() {
            panic!("child panicked");
        }
    });
    1
}

#[test]
fn panics_in_children_propagate() {
    let caught = catch_unwind(AssertUnwindSafe(|| trellis::run(panicking_child())));
    let payload = caught.expect_err("the child's panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"child panicked"));
}

#[nursery]
async fn serve_forever(n: Nursery) -> Result<(), Oops> {
    let _child = n.spawn(sleep_forever());
    sleep_forever().await;
    Ok(())
}

/// A `#[nursery]` function has no cancel of its own: a scope around its call cancels it, and
/// that scope reports the cancellation.
#[trellis::test(autojump)]
async fn a_nursery_fn_is_cancelled_by_a_scope_around_its_call() {
    let out = trellis::move_on_after(std::time::Duration::from_secs(1), serve_forever()).await;
    assert_eq!(out, None);
}

#[nursery]
async fn tick_forever(n: Nursery, ticks: &Cell<u32>) -> ! {
    for _ in 0..2 {
        let _child = n.spawn(async {
            loop {
                sleep(Duration::from_secs(1)).await;
                ticks.set(ticks.get() + 1);
            }
        });
    }
    loop {
        sleep_forever().await;
    }
}

/// A `-> !` nursery fn runs its children until a scope around its call is cancelled; that
/// scope gives `None` (the call itself can give nothing).
#[test]
fn a_never_returning_nursery_fn_ends_when_a_scope_around_its_call_is_cancelled() {
    let (cancelled, ticks, elapsed) = common::watchdog(common::HANG_LIMIT, || {
        let ticks = Cell::new(0);
        let (cancelled, elapsed) = trellis::Builder::new().autojump().run(async {
            let start = trellis::now();
            let out =
                trellis::move_on_after(Duration::from_millis(3500), tick_forever(&ticks)).await;
            (out.is_none(), trellis::now() - start)
        });
        (cancelled, ticks.get(), elapsed)
    });
    assert!(cancelled);
    assert_eq!(ticks, 6, "two children ticked at 1 s, 2 s and 3 s");
    assert_eq!(elapsed, Duration::from_millis(3500));
}

#[nursery]
async fn worker_dies(n: Nursery, ticks: &Cell<u32>) -> ! {
    let _child = n.spawn(async {
        sleep(Duration::from_millis(1500)).await;
        if n_is_valid() {
            panic!("worker died");
        }
    });
    loop {
        sleep(Duration::from_secs(1)).await;
        ticks.set(ticks.get() + 1);
    }
}

/// A child's panic cancels the `-> !` fn's body and resumes from the call.
#[test]
fn a_panic_in_a_child_propagates_out_of_a_never_returning_nursery_fn() {
    let (message, ticks) = common::watchdog(common::HANG_LIMIT, || {
        let ticks = Cell::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            trellis::Builder::new().autojump().run(worker_dies(&ticks))
        }));
        let payload = caught.expect_err("the child's panic reaches the caller");
        (common::panic_message(&*payload), ticks.get())
    });
    assert_eq!(message, "worker died");
    // The body ticked at 1 s; the child panicked at 1.5 s and the body was dropped.
    assert_eq!(ticks, 1);
}

struct Counter {
    hits: Cell<u32>,
}

impl Counter {
    #[nursery]
    async fn hit_twice(&self, n: Nursery) -> u32 {
        let _child = n.spawn(async { self.hits.set(self.hits.get() + 1) });
        let _child = n.spawn(async { self.hits.set(self.hits.get() + 1) });
        self.hits.get()
    }
}

#[trellis::test]
async fn methods_spawn_children_borrowing_self() {
    let counter = Counter { hits: Cell::new(0) };
    assert_eq!(counter.hit_twice().await, 0);
    assert_eq!(counter.hits.get(), 2);
}

#[nursery(h)]
async fn named_in_attribute(log: &RefCell<Vec<&'static str>>) {
    let _child = h.spawn(async { log.borrow_mut().push("child") });
    log.borrow_mut().push("body");
}

#[trellis::test]
async fn the_handle_can_be_named_in_the_attribute() {
    let log = RefCell::new(Vec::new());
    named_in_attribute(&log).await;
    assert_eq!(*log.borrow(), ["body", "child"]);
}

#[trellis::test]
async fn open_nursery_returns_the_nursery_result() {
    let words = ["a", "b", "c"];
    let seen = Cell::new(0);
    let result = open_nursery! { |n| -> Result<usize, Oops>
        for _ in &words {
            let _child = n.spawn(async { seen.set(seen.get() + 1) });
        }
        Ok(words.len())
    };
    assert_eq!(result, Ok(3));
    assert_eq!(seen.get(), 3);

    let failed = open_nursery! { |n| let _child = n.spawn(async { Err::<(), _>(Oops("x")) }); Ok::<(), Oops>(()) };
    assert_eq!(failed.map_err(ErrorGroup::into_first), Err(Oops("x")));
}

#[trellis::test(autojump)]
async fn autojump_makes_a_one_day_timeout_instant() {
    let start = trellis::now();
    let woke = trellis::move_on_after(Duration::from_secs(86_400), sleep_forever()).await;
    assert_eq!(woke, None);
    assert_eq!(trellis::now() - start, Duration::from_secs(86_400));
}

#[trellis::test(mock_clock)]
async fn mock_clock_moves_only_when_advanced() {
    let start = trellis::now();
    trellis::advance(Duration::from_secs(5));
    assert_eq!(trellis::now() - start, Duration::from_secs(5));
}

#[trellis::test]
async fn tests_may_return_results() -> Result<(), Oops> {
    let value = parse("3")?;
    assert_eq!(value, 3);
    Ok(())
}

/// The unused-argument and nursery lints stay quiet for a nursery fn that ignores its handle.
#[nursery]
async fn ignores_its_handle(_n: Nursery) {}

#[trellis::test]
async fn a_nursery_fn_may_ignore_its_handle() {
    ignores_its_handle().await;
    // `nursery` the function is still reachable under the same name as the attribute.
    nursery(async |_n| {}).await.unwrap();
}

/// A deadlock under `#[trellis::test(autojump)]` names the test's file, not the macro's
/// helper inside trellis: the report says where the root future was run.
#[trellis::test(autojump)]
#[should_panic(expected = "the root future, run at integration/tests/macros.rs")]
async fn a_deadlock_under_the_test_macro_names_the_tests_file() {
    trellis::Event::new().wait().await;
}
