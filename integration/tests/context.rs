//! Behaviour of context variables: ports of CPython's `Lib/test/test_context.py` (the test
//! each one ports is named in its doc line) and of PEP 567's examples, plus the inheritance
//! rules of nurseries and cancellation.
//!
//! Every test uses its own variables: a test's thread context starts empty.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use trellis::{
    CancelScope, Context, ContextVar, Token, move_on_after, nursery, sleep, sleep_forever,
    yield_now,
};

fn run_virtual<F: Future>(fut: F) -> F::Output {
    trellis::Builder::new().autojump().run(fut)
}

// ---------------------------------------------------------------------------------------
// Defaults, set and reset.

/// `test_context_getset_1` (start) and `test_context_var_new_1`: no value, no default.
#[test]
fn unset_variable_without_default_reads_none() {
    static C: ContextVar<u32> = ContextVar::new("c");
    assert_eq!(C.name(), "c");
    assert_eq!(C.get(), None);
    assert!(C.with(|v| v.is_none()));
    assert!(!Context::current().contains(&C));
}

/// PEP 567 `ContextVar(name, *, default)`: the default is read when no value is set, and is
/// not stored in the context.
#[test]
fn default_value_is_read_when_unset_and_never_stored() {
    static LEVEL: ContextVar<String> = ContextVar::with_default("level", || "info".into());
    assert_eq!(LEVEL.get().as_deref(), Some("info"));
    assert!(Context::current().is_empty());
    let token = LEVEL.set("debug".into());
    assert_eq!(token.old_value(), None, "a default is not an old value");
    assert_eq!(LEVEL.get().as_deref(), Some("debug"));
    LEVEL.reset(token).unwrap();
    assert_eq!(LEVEL.get().as_deref(), Some("info"));
    assert!(Context::current().is_empty());
}

/// `test_context_getset_1`: tokens remember the old value; reset restores it; a snapshot
/// taken in between keeps its value.
#[test]
fn set_returns_token_and_reset_restores_previous_value() {
    static C: ContextVar<&str> = ContextVar::new("c");
    let t0 = C.set("42");
    assert_eq!(C.get(), Some("42"));
    assert_eq!(t0.old_value(), None); // Token.MISSING
    assert_eq!(t0.var_name(), "c");

    let t = C.set("spam");
    assert_eq!(C.get(), Some("spam"));
    assert_eq!(t.old_value(), Some(&"42"));
    C.reset(t).unwrap();
    assert_eq!(C.get(), Some("42"));

    C.set("spam2");
    // Python: `c.reset(t)` again raises "has already been used"; here `t` was moved into
    // the first `reset`, so a second one does not compile (see the `compile_fail` doctest
    // on `ContextVar::reset`).
    assert_eq!(C.get(), Some("spam2"));

    let ctx1 = Context::current();
    assert!(ctx1.contains(&C));
    C.reset(t0).unwrap();
    assert_eq!(C.get(), None);
    assert!(!Context::current().contains(&C));

    assert_eq!(ctx1.get(&C), Some("spam2"));
    assert_eq!(ctx1.len(), 1);
    let entries: Vec<_> = ctx1.iter().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name(), "c");
    assert_eq!(entries[0].downcast_ref::<&str>(), Some(&"spam2"));
}

/// A token of an older set still restores its own old value after newer sets (Python
/// only refuses tokens already used).
#[test]
fn reset_with_older_token_restores_its_old_value() {
    static C: ContextVar<u8> = ContextVar::new("c");
    let t1 = C.set(1);
    let t2 = C.set(2);
    C.reset(t1).unwrap();
    assert_eq!(C.get(), None);
    C.reset(t2).unwrap();
    assert_eq!(C.get(), Some(1));
}

/// `test_context_getset_2`: a token of another variable is refused, with a message
/// naming both variables and nothing changed.
#[test]
fn reset_with_token_of_another_var_is_an_error() {
    static V1: ContextVar<u32> = ContextVar::new("v1");
    static V2: ContextVar<u32> = ContextVar::new("v2");
    let t1 = V1.set(42);
    V2.set(7);
    let err = V2.reset(t1).unwrap_err();
    assert!(err.is_other_var());
    assert_eq!(err.var_name(), "v2");
    assert_eq!(
        err.to_string(),
        "cannot reset context variable `v2` with a token from a set of `v1`: pass the token \
         returned by `v2.set`"
    );
    assert_eq!((V1.get(), V2.get()), (Some(42), Some(7)));
}

/// `test_context_getset_4`: a token made inside `ctx.run` is refused outside it.
#[test]
fn reset_with_token_from_another_context_is_an_error() {
    static C: ContextVar<u32> = ContextVar::with_default("c", || 42);
    let ctx = Context::new();
    let tok = ctx.run_sync(|| C.set(1));
    let err = C.reset(tok).unwrap_err();
    assert!(err.is_other_context());
    assert_eq!(
        err.to_string(),
        "cannot reset context variable `c`: the token was created in another context; reset \
         it in the task or `Context::run` that called `set`"
    );
    let _: &dyn std::error::Error = &err;
    assert_eq!(ctx.get(&C), Some(1));
    assert_eq!(C.get(), Some(42));
}

/// The same, across tasks: a child's token cannot reset the parent's value.
#[test]
fn reset_with_token_from_a_child_task_is_an_error() {
    static C: ContextVar<u32> = ContextVar::new("c");
    let token: RefCell<Option<Token<u32>>> = RefCell::new(None);
    run_virtual(async {
        C.set(1);
        nursery(async |n| {
            n.spawn(async { *token.borrow_mut() = Some(C.set(2)) });
        })
        .await
        .unwrap();
        let err = C.reset(token.take().unwrap()).unwrap_err();
        assert!(err.is_other_context());
        assert_eq!(C.get(), Some(1));
    });
}

/// `ContextVar::with` gives borrowing access and lets its closure set the variable.
#[test]
fn with_borrows_the_value_and_may_set_inside() {
    static NAMES: ContextVar<Vec<String>> = ContextVar::new("names");
    NAMES.set(vec!["ada".into()]);
    let len = NAMES.with(|v| {
        NAMES.set(Vec::new()); // no borrow is held while the closure runs
        v.unwrap().len()
    });
    assert_eq!(len, 1);
    assert_eq!(NAMES.get(), Some(Vec::new()));
}

// ---------------------------------------------------------------------------------------
// Context objects and `run`.

/// `test_context_run_4`: sets made inside `ctx1.run` stay in `ctx1`; `ctx2.run` nested in
/// it sees its own, empty, context.
#[test]
fn run_sets_stay_in_the_context_and_nest() {
    static VAR: ContextVar<&str> = ContextVar::new("var");
    let ctx1 = Context::new();
    let ctx2 = Context::new();
    let returned = ctx1.run_sync(|| {
        assert_eq!(VAR.get(), None);
        VAR.set("spam");
        ctx2.run_sync(|| assert_eq!(VAR.get(), None));
        assert_eq!(VAR.get(), Some("spam"));
        let cur = Context::current();
        assert_eq!(cur.len(), 1);
        assert_eq!(cur.get(&VAR), Some("spam"));
        cur
    });
    // `copy_context()` inside returned a copy, equal in content (Python compares maps).
    assert_eq!(returned.get(&VAR), Some("spam"));
    assert_eq!(ctx1.get(&VAR), Some("spam"));
    assert!(ctx1.contains(&VAR));
    assert!(ctx2.is_empty());
    assert_eq!(VAR.get(), None);
}

/// The async form of the same: `Context::run` futures nest, across suspensions.
#[test]
fn run_futures_nest_across_suspensions() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        VAR.set(0);
        let outer = Context::new();
        let inner = Context::current();
        outer
            .run(async {
                VAR.set(1);
                sleep(Duration::from_secs(1)).await;
                inner
                    .run(async {
                        assert_eq!(VAR.get(), Some(0));
                        VAR.set(2);
                        yield_now().await;
                        assert_eq!(VAR.get(), Some(2));
                    })
                    .await;
                assert_eq!(VAR.get(), Some(1));
            })
            .await;
        assert_eq!(VAR.get(), Some(0));
        assert_eq!(outer.get(&VAR), Some(1));
        assert_eq!(inner.get(&VAR), Some(2));
    });
}

/// `test_context_run_3` and `test_context_run_5`: a panic inside `run` propagates; what was
/// set in the context stays there, never in the caller's.
#[test]
fn panic_inside_run_leaves_callers_context_unchanged() {
    static VAR: ContextVar<&str> = ContextVar::new("var");
    let ctx = Context::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        ctx.run_sync(|| {
            VAR.set("spam");
            panic!("1 / 0");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(VAR.get(), None);
    assert_eq!(ctx.get(&VAR), Some("spam"));
    // The context was left on unwind: it can be entered again.
    ctx.run_sync(|| assert_eq!(VAR.get(), Some("spam")));
}

/// `test_context_run_6`: inside `run`, `ctx.get` and the variable agree; the default is not
/// in the context.
#[test]
fn context_get_sees_sets_made_inside_run() {
    static C: ContextVar<u32> = ContextVar::with_default("a", || 0);
    let ctx = Context::new();
    ctx.run_sync(|| {
        assert_eq!(C.get(), Some(0));
        assert_eq!(ctx.get(&C), None);
        C.set(42);
        assert_eq!(C.get(), Some(42));
        assert_eq!(ctx.get(&C), Some(42));
    });
}

/// `test_context_run_7`: entering a context that is already entered is refused.
#[test]
#[should_panic(expected = "cannot enter a context that is already entered")]
fn entering_an_entered_context_panics() {
    let ctx = Context::new();
    ctx.run_sync(|| ctx.run_sync(|| ()));
}

/// The async form: a `run` of a context polled inside a `run` of the same context.
#[test]
#[should_panic(expected = "already entered")]
fn polling_run_inside_run_of_the_same_context_panics() {
    let ctx = Context::new();
    run_virtual(ctx.run(async { ctx.run(async {}).await }));
}

/// A child is another task, so it may run the context its parent's `run` entered (the
/// parent's poll encloses the child's: a nursery polls its children itself), but not
/// twice over in itself; and once its run ends, the parent's still counts: the parent's
/// own re-entry is refused.
#[test]
fn a_child_runs_its_parents_entered_context_but_not_twice_and_the_parents_mark_stays() {
    let ctx = Context::new();
    let child_twice = Cell::new(None);
    let parent_again = Cell::new(None);
    run_virtual(ctx.run(async {
        nursery(async |n| {
            n.spawn(async {
                ctx.run(async {
                    let nested = catch_unwind(AssertUnwindSafe(|| ctx.run_sync(|| ())));
                    child_twice.set(Some(nested.is_err()));
                })
                .await;
            });
        })
        .await
        .unwrap();
        let again = catch_unwind(AssertUnwindSafe(|| ctx.run_sync(|| ())));
        parent_again.set(Some(again.is_err()));
    }));
    assert_eq!(child_twice.get(), Some(true), "the child's nested run");
    assert_eq!(
        parent_again.get(),
        Some(true),
        "the parent's re-entry after the child"
    );
}

/// `test_context_getset_3`: a reset to "no value" removes the variable from the context.
#[test]
fn reset_to_missing_removes_the_variable_from_the_context() {
    static C: ContextVar<u32> = ContextVar::with_default("c", || 42);
    let ctx = Context::new();
    ctx.run_sync(|| {
        assert_eq!(C.get(), Some(42));
        assert_eq!(ctx.get(&C), None);
        assert!(!ctx.contains(&C));
        assert_eq!(ctx.iter().count(), 0);
        let t = C.set(1);
        assert_eq!(ctx.iter().map(|e| e.name()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(ctx.get(&C), Some(1));
        C.reset(t).unwrap();
        assert_eq!(ctx.iter().count(), 0);
        assert_eq!(ctx.get(&C), None);
    });
}

/// `test_context_getset_5`: values are shared by reference; setting inside a copy does not
/// touch the caller's value.
#[test]
fn run_in_a_copy_does_not_change_the_caller() {
    // An `Arc<Mutex<..>>` where Python shares a list: values are `Send` (to reach threads).
    static C: ContextVar<std::sync::Arc<std::sync::Mutex<Vec<u32>>>> = ContextVar::new("c");
    C.set(Default::default());
    Context::current().run_sync(|| {
        C.set(Default::default());
        C.get().unwrap().lock().unwrap().push(42);
        assert_eq!(*C.get().unwrap().lock().unwrap(), [42]);
    });
    assert!(C.get().unwrap().lock().unwrap().is_empty());
}

/// `test_context_copy_1`: a copy is independent of its original, both ways.
#[test]
fn copies_are_independent() {
    static C: ContextVar<u32> = ContextVar::with_default("c", || 42);
    let ctx1 = Context::new();
    ctx1.run_sync(|| {
        C.set(10);
        let ctx2 = ctx1.copy();
        assert_eq!(ctx2.get(&C), Some(10));
        C.set(20);
        assert_eq!(ctx1.get(&C), Some(20));
        assert_eq!(ctx2.get(&C), Some(10));
        ctx2.run_sync(|| {
            assert_eq!(C.get(), Some(10));
            C.set(30);
            assert_eq!(C.get(), Some(30));
        });
        assert_eq!(ctx1.get(&C), Some(20));
        assert_eq!(ctx2.get(&C), Some(30));
    });
    assert!(!Context::ptr_eq(&ctx1, &ctx1.copy()));
    assert!(Context::ptr_eq(&ctx1, &ctx1.clone()));
}

/// PEP 567's `copy_context` example: a snapshot keeps the values of its moment.
#[test]
fn snapshot_keeps_values_of_its_moment() {
    static VAR: ContextVar<&str> = ContextVar::with_default("var", || "default");
    VAR.set("spam");
    let ctx = Context::current();
    VAR.set("ham");
    assert_eq!(ctx.get(&VAR), Some("spam"));
    assert_eq!(VAR.get(), Some("ham"));
}

/// `test_context_threads_1`: a new thread starts with an empty context; what it sets does
/// not reach the spawning thread.
#[test]
fn each_thread_has_its_own_context() {
    static VAR: ContextVar<u32> = ContextVar::with_default("var", || 0);
    VAR.set(1);
    std::thread::spawn(|| {
        assert_eq!(VAR.get(), Some(0));
        VAR.set(2);
        assert_eq!(VAR.get(), Some(2));
    })
    .join()
    .unwrap();
    assert_eq!(VAR.get(), Some(1));
}

/// `asyncio.run` runs the main task in a copy of the caller's context: values set before
/// `trellis::run` are seen by its root future, and what the root sets stays inside.
#[test]
fn root_future_runs_in_a_copy_of_the_thread_context() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    VAR.set(1);
    trellis::run(async {
        assert_eq!(VAR.get(), Some(1));
        VAR.set(2);
        assert_eq!(VAR.get(), Some(2));
    });
    assert_eq!(VAR.get(), Some(1));
}

/// Many variables (the HAMT tests of `test_context.py` exercise the same sizes): 1000
/// variables in one context, copied, read in a child, changed there without touching the
/// parent.
#[test]
fn many_variables_keep_their_own_values() {
    let vars: Vec<ContextVar<usize>> = (0..1000).map(|_| ContextVar::new("many")).collect();
    run_virtual(async {
        for (i, var) in vars.iter().enumerate() {
            var.set(i);
        }
        let snapshot = Context::current();
        assert_eq!(snapshot.len(), 1000);
        let vars = &vars;
        nursery(async |n| {
            n.spawn(async move {
                for (i, var) in vars.iter().enumerate() {
                    assert_eq!(var.get(), Some(i));
                    var.set(i * 2);
                }
                assert!(vars.iter().enumerate().all(|(i, v)| v.get() == Some(i * 2)));
            });
        })
        .await
        .unwrap();
        for (i, var) in vars.iter().enumerate() {
            assert_eq!(var.get(), Some(i));
            assert_eq!(snapshot.get(var), Some(i));
        }
        for (i, var) in vars.iter().enumerate().step_by(2) {
            var.set(i + 1);
        }
        assert_eq!(Context::current().len(), 1000);
        assert_eq!(snapshot.get(&vars[0]), Some(0));
        assert_eq!(vars[0].get(), Some(1));
    });
}

/// `Context::iter` lists each variable once, in first-use order, with its type.
#[test]
fn iteration_lists_variables_for_debugging() {
    static FIRST: ContextVar<u8> = ContextVar::new("first");
    static SECOND: ContextVar<String> = ContextVar::new("second").no_inherit();
    let _ = FIRST.get(); // first use assigns the id
    SECOND.set("x".into());
    FIRST.set(1);
    let ctx = Context::current();
    let listed: Vec<_> = ctx
        .iter()
        .map(|e| (e.name(), e.type_name(), e.is_inherited()))
        .collect();
    assert_eq!(
        listed,
        [
            ("first", "u8", true),
            ("second", "alloc::string::String", false)
        ]
    );
    assert_eq!(
        format!("{ctx:?}"),
        r#"{"first": "u8", "second": "alloc::string::String"}"#
    );
}

// ---------------------------------------------------------------------------------------
// Nurseries: copy at spawn, isolation.

/// PEP 567's asyncio example (`handle_request`): each task sets the client address once and
/// deep helpers read it without an argument.
#[test]
fn pep567_handle_request_example() {
    static CLIENT_ADDR: ContextVar<&str> = ContextVar::new("client_addr");
    fn render_goodbye() -> String {
        format!("Good bye, client @ {}", CLIENT_ADDR.get().unwrap())
    }
    let out = RefCell::new(Vec::new());
    run_virtual(async {
        nursery(async |n| {
            for (addr, delay) in [("10.0.0.1", 3), ("10.0.0.2", 1), ("10.0.0.3", 2)] {
                let out = &out;
                n.spawn(async move {
                    CLIENT_ADDR.set(addr);
                    sleep(Duration::from_secs(delay)).await;
                    out.borrow_mut().push(render_goodbye());
                });
            }
        })
        .await
        .unwrap();
    });
    assert_eq!(
        *out.borrow(),
        [
            "Good bye, client @ 10.0.0.2",
            "Good bye, client @ 10.0.0.3",
            "Good bye, client @ 10.0.0.1"
        ]
    );
}

/// A child starts with its parent's values at spawn time; a set by the parent after the
/// spawn is invisible to it, and its own sets are invisible to the parent.
#[test]
fn child_starts_with_a_copy_taken_at_spawn() {
    static VAR: ContextVar<&str> = ContextVar::new("var");
    run_virtual(async {
        VAR.set("before");
        nursery(async |n| {
            n.spawn(async {
                assert_eq!(VAR.get(), Some("before"));
                sleep(Duration::from_secs(1)).await;
                assert_eq!(
                    VAR.get(),
                    Some("before"),
                    "the parent's later set stays out"
                );
                VAR.set("child");
                sleep(Duration::from_secs(1)).await;
                assert_eq!(VAR.get(), Some("child"));
            });
            VAR.set("after");
            sleep(Duration::from_secs(2)).await;
            assert_eq!(VAR.get(), Some("after"));
        })
        .await
        .unwrap();
        assert_eq!(VAR.get(), Some("after"));
    });
}

/// Siblings never see each other's sets, however their polls interleave.
#[test]
fn siblings_are_isolated() {
    static ID: ContextVar<u32> = ContextVar::new("id");
    let checks = Cell::new(0);
    run_virtual(async {
        nursery(async |n| {
            for id in 0..10 {
                let checks = &checks;
                n.spawn(async move {
                    assert_eq!(ID.get(), None);
                    ID.set(id);
                    for round in 0..5 {
                        yield_now().await;
                        sleep(Duration::from_millis(u64::from((id * 7 + round) % 3))).await;
                        assert_eq!(ID.get(), Some(id));
                        checks.set(checks.get() + 1);
                    }
                });
            }
        })
        .await
        .unwrap();
        assert_eq!(ID.get(), None);
    });
    assert_eq!(checks.get(), 50);
}

/// The nursery body runs in its caller's context: its sets are visible after the nursery,
/// and children spawned after a set in the body see it.
#[test]
fn nursery_body_shares_its_callers_context() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        nursery(async |n| {
            VAR.set(1);
            n.spawn(async { assert_eq!(VAR.get(), Some(1)) });
        })
        .await
        .unwrap();
        assert_eq!(VAR.get(), Some(1));
    });
}

/// Grandchildren inherit from their parent child, not from the root.
#[test]
fn grandchildren_inherit_from_their_parent_task() {
    static DEPTH: ContextVar<u32> = ContextVar::with_default("depth", || 0);
    let seen = RefCell::new(Vec::new());
    run_virtual(async {
        let seen = &seen;
        nursery(async |n| {
            n.spawn(async move {
                DEPTH.set(1);
                nursery(async |n| {
                    n.spawn(async move {
                        seen.borrow_mut().push(DEPTH.get().unwrap());
                        DEPTH.set(2);
                    });
                })
                .await
                .unwrap();
                seen.borrow_mut().push(DEPTH.get().unwrap());
            });
        })
        .await
        .unwrap();
        seen.borrow_mut().push(DEPTH.get().unwrap());
    });
    assert_eq!(*seen.borrow(), [1, 1, 0]);
}

/// Children made by `spawn_with` and `start` inherit like plain spawns.
#[test]
fn spawn_with_and_start_children_inherit() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        VAR.set(1);
        nursery(async |n| {
            n.spawn_with(async |n2| {
                assert_eq!(VAR.get(), Some(1));
                VAR.set(2);
                n2.spawn(async { assert_eq!(VAR.get(), Some(2)) });
            });
            let seen = n
                .start(async |_n2, status| {
                    let seen = VAR.get();
                    VAR.set(3);
                    status.started(seen);
                })
                .await
                .unwrap();
            assert_eq!(seen, Some(1));
            assert_eq!(VAR.get(), Some(1));
        })
        .await
        .unwrap();
        assert_eq!(VAR.get(), Some(1));
    });
}

/// A `no_inherit` variable stays with the task that set it: children see its default.
#[test]
fn no_inherit_variable_is_not_copied_into_children() {
    static CONN: ContextVar<u32> = ContextVar::with_default("conn", || 0).no_inherit();
    static USER: ContextVar<u32> = ContextVar::new("user");
    assert!(!CONN.is_inherited());
    run_virtual(async {
        CONN.set(5);
        USER.set(9);
        nursery(async |n| {
            n.spawn(async {
                assert_eq!((CONN.get(), USER.get()), (Some(0), Some(9)));
                CONN.set(6);
            });
        })
        .await
        .unwrap();
        assert_eq!(CONN.get(), Some(5));
        // A snapshot is explicit, so it keeps the variable.
        assert_eq!(Context::current().get(&CONN), Some(5));
    });
}

/// A child's values are dropped when the child finishes; the parent's are not.
#[test]
fn childs_values_are_dropped_with_the_child() {
    use std::sync::Arc;
    static VAR: ContextVar<Arc<()>> = ContextVar::new("var");
    let parents = Arc::new(());
    let childs = Arc::new(());
    run_virtual(async {
        VAR.set(parents.clone());
        nursery(async |n| {
            n.spawn(async {
                VAR.set(childs.clone());
            });
        })
        .await
        .unwrap();
        assert_eq!(Arc::strong_count(&childs), 1);
        assert_eq!(Arc::strong_count(&parents), 2);
    });
}

// ---------------------------------------------------------------------------------------
// Cancellation.

/// A variable set inside a cancelled `scope` does not leak out of it.
#[test]
fn set_inside_cancelled_scope_does_not_leak() {
    static VAR: ContextVar<&str> = ContextVar::new("var");
    static OTHER: ContextVar<&str> = ContextVar::new("other");
    run_virtual(async {
        VAR.set("outer");
        let out = move_on_after(
            Duration::from_secs(5),
            VAR.scope("inner", async {
                assert_eq!(VAR.get(), Some("inner"));
                OTHER.set("inner too");
                sleep_forever().await
            }),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(VAR.get(), Some("outer"));
        assert_eq!(OTHER.get(), None);
    });
}

/// The same with an explicit context and a `CancelScope` cancelled by a sibling.
#[test]
fn set_inside_cancelled_context_run_does_not_leak() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        let scope = CancelScope::new();
        let handle = scope.clone();
        let observer = scope.clone();
        nursery(async |n| {
            n.spawn(async move {
                sleep(Duration::from_secs(1)).await;
                handle.cancel();
            });
            let ran = scope
                .run(Context::current().run(async {
                    VAR.set(1);
                    sleep_forever().await;
                }))
                .await;
            assert_eq!(ran, None);
            assert_eq!(VAR.get(), None);
        })
        .await
        .unwrap();
        assert!(observer.cancelled_caught());
    });
}

/// A child cancelled with its nursery takes its sets with it.
#[test]
fn set_in_a_cancelled_child_does_not_leak() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        let out = move_on_after(
            Duration::from_secs(1),
            nursery(async |n| {
                n.spawn(async {
                    VAR.set(1);
                    sleep_forever().await;
                });
            }),
        )
        .await;
        // The deadline cancelled the child (it sleeps forever); how the nursery reports
        // that is the nursery's business.
        drop(out);
        assert_eq!(VAR.get(), None);
    });
}

/// A plain `set` belongs to the task, not to a scope: cancelling the scope does not undo
/// it (as in Trio, where only `reset` or a `Context.run` would). `scope` is the tool when
/// the value must not outlive a block.
#[test]
fn plain_set_inside_a_cancelled_scope_stays_in_the_task() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    run_virtual(async {
        let out = move_on_after(Duration::from_secs(1), async {
            let token = VAR.set(1);
            sleep_forever().await;
            VAR.reset(token).unwrap(); // never reached
        })
        .await;
        assert!(out.is_none());
        assert_eq!(VAR.get(), Some(1));
    });
}

/// Dropping a `Context::run` midway drops its future inside the context, so destructors
/// see the values they ran with.
#[test]
fn destructors_of_a_cancelled_run_see_its_context() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    struct Probe<'a>(&'a Cell<Option<u32>>);
    impl Drop for Probe<'_> {
        fn drop(&mut self) {
            self.0.set(VAR.get());
        }
    }
    let seen = Cell::new(None);
    run_virtual(async {
        VAR.set(1);
        let seen = &seen;
        move_on_after(
            Duration::from_secs(1),
            VAR.scope(2, async move {
                let _probe = Probe(seen);
                sleep_forever().await
            }),
        )
        .await;
        assert_eq!(VAR.get(), Some(1));
    });
    assert_eq!(seen.get(), Some(2));
}

// ---------------------------------------------------------------------------------------
// The read cache: the last value read on a thread is remembered, and must never be served
// after the context or its values changed.

/// A value read, then the variable set and reset: each read sees the latest value.
#[test]
fn reads_after_set_and_reset_see_the_new_value() {
    static V: ContextVar<u32> = ContextVar::with_default("v", || 0);
    assert_eq!(V.get(), Some(0)); // the absence is what a cache would remember
    let first = V.set(1);
    assert_eq!(V.get(), Some(1));
    let second = V.set(2);
    assert_eq!(V.get(), Some(2));
    V.reset(second).unwrap();
    assert_eq!(V.get(), Some(1));
    V.reset(first).unwrap();
    assert_eq!(V.get(), Some(0));
}

/// A value read, then another context entered and left: reads inside see that context,
/// reads after it the caller's again.
#[test]
fn reads_follow_the_context_entered() {
    static V: ContextVar<u32> = ContextVar::new("v");
    V.set(1);
    assert_eq!(V.get(), Some(1));
    let other = Context::new();
    other.run_sync(|| {
        assert_eq!(V.get(), None);
        V.set(2);
        assert_eq!(V.get(), Some(2));
    });
    assert_eq!(V.get(), Some(1));
    other.run_sync(|| assert_eq!(V.get(), Some(2)));
    assert_eq!(V.with(|v| v.copied()), Some(1));
}

/// Two variables read in turn, each after the other was read: no value of one is served
/// for the other.
#[test]
fn reads_of_two_variables_in_turn_keep_their_own_values() {
    static A: ContextVar<u32> = ContextVar::new("a");
    static B: ContextVar<u32> = ContextVar::new("b").no_inherit();
    A.set(1);
    B.set(2);
    for _ in 0..3 {
        assert_eq!((A.get(), B.get()), (Some(1), Some(2)));
    }
    let ctx = Context::current();
    assert_eq!((ctx.get(&A), ctx.get(&B)), (Some(1), Some(2)));
}

/// Tasks that read a variable in turn across suspensions each see their own value, and the
/// parent's reads between their polls see the parent's.
#[test]
fn reads_in_tasks_taking_turns_see_their_own_values() {
    static V: ContextVar<u32> = ContextVar::new("v");
    run_virtual(async {
        V.set(100);
        assert_eq!(V.get(), Some(100));
        nursery(async |n| {
            for id in 0..3 {
                n.start_soon(async move {
                    assert_eq!(V.get(), Some(100)); // inherited, read before the set
                    V.set(id);
                    for _ in 0..3 {
                        assert_eq!(V.get(), Some(id));
                        yield_now().await;
                        assert_eq!(V.get(), Some(id));
                    }
                });
            }
            for _ in 0..3 {
                assert_eq!(V.get(), Some(100));
                yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(V.get(), Some(100));
    });
}

/// A value that is read and then replaced is dropped when it is replaced: reading does not
/// keep it alive.
#[test]
fn a_value_read_then_replaced_is_dropped_at_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone)]
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    static V: ContextVar<Counted> = ContextVar::new("v");
    let drops = Arc::new(AtomicUsize::new(0));
    let token = V.set(Counted(drops.clone()));
    assert!(V.with(|v| v.is_some()));
    drop(V.get()); // a clone, dropped here
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    V.reset(token).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2); // the stored value, at the reset

    let ctx = Context::new();
    ctx.run_sync(|| {
        V.set(Counted(drops.clone()));
        assert!(V.with(|v| v.is_some()));
    });
    drop(ctx);
    assert_eq!(drops.load(Ordering::SeqCst), 3); // with its context, after a read in it
}

/// A reset keeps the allocation of the value it removes for the next set of that type:
/// values of other types, and values still shared with a child or a snapshot, are left
/// alone.
#[test]
fn sets_after_resets_keep_every_value_apart() {
    static NUM: ContextVar<u64> = ContextVar::new("num");
    static TEXT: ContextVar<String> = ContextVar::new("text");
    for i in 0..3 {
        let t = NUM.set(i);
        NUM.reset(t).unwrap();
        let t = TEXT.set(format!("t{i}")); // another type: a fresh allocation
        assert_eq!((NUM.get(), TEXT.get()), (None, Some(format!("t{i}"))));
        TEXT.reset(t).unwrap();
        let t = NUM.set(i + 10);
        assert_eq!(NUM.get(), Some(i + 10));
        NUM.reset(t).unwrap();
    }

    let t = NUM.set(1);
    let snapshot = Context::current(); // shares the value
    NUM.reset(t).unwrap();
    let t = NUM.set(2);
    assert_eq!((snapshot.get(&NUM), NUM.get()), (Some(1), Some(2)));
    NUM.reset(t).unwrap();

    run_virtual(async {
        let t = NUM.set(3);
        nursery(async |n| {
            n.start_soon(async {
                yield_now().await;
                assert_eq!(NUM.get(), Some(3)); // its copy, taken at the spawn
            });
            NUM.reset(t).unwrap();
            let t = NUM.set(4);
            yield_now().await;
            assert_eq!(NUM.get(), Some(4));
            NUM.reset(t).unwrap();
        })
        .await
        .unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Costs: `cargo test --release -p trellis-integration --test context -- --ignored --nocapture`.

#[test]
#[ignore = "a measurement; run in release mode with --nocapture"]
fn measure_costs() {
    use std::hint::black_box;
    use std::time::Instant;

    static A: ContextVar<u64> = ContextVar::new("a");
    let extra: Vec<ContextVar<u64>> = (0..9).map(|_| ContextVar::new("extra")).collect();
    const N: u32 = 2_000_000;

    let per = |start: Instant, n: u32| start.elapsed().as_nanos() as f64 / f64::from(n);

    A.set(1);
    for v in &extra {
        v.set(2);
    }
    let start = Instant::now();
    let mut sum = 0;
    for _ in 0..N {
        sum += black_box(&A).get().unwrap();
    }
    black_box(sum);
    println!(
        "get (10 vars in context):           {:6.1} ns",
        per(start, N)
    );

    let start = Instant::now();
    for i in 0..N {
        let t = A.set(u64::from(i));
        A.reset(t).unwrap();
    }
    println!(
        "set + reset (map not shared):       {:6.1} ns",
        per(start, N)
    );

    let _snapshot = Context::current(); // now the map is shared: the first set copies it
    let start = Instant::now();
    for i in 0..N / 10 {
        let snapshot = Context::current();
        let t = A.set(u64::from(i));
        A.reset(t).unwrap();
        black_box(snapshot);
    }
    println!(
        "snapshot + set + reset (copies 10): {:6.1} ns",
        per(start, N / 10)
    );

    let start = Instant::now();
    for _ in 0..N {
        black_box(Context::current());
    }
    println!(
        "Context::current (O(1) copy):       {:6.1} ns",
        per(start, N)
    );

    let ctx = Context::current();
    let start = Instant::now();
    for _ in 0..N {
        ctx.run_sync(|| black_box(()));
    }
    println!(
        "enter + leave (run_sync):           {:6.1} ns",
        per(start, N)
    );

    // Spawn cost with an empty context and with 10 inherited variables.
    const CHILDREN: u32 = 100_000;
    for vars in [0usize, 10] {
        let ctx = Context::new();
        ctx.run_sync(|| {
            if vars > 0 {
                A.set(1);
                for v in &extra {
                    v.set(2);
                }
            }
        });
        let start = Instant::now();
        trellis::run(ctx.run(async {
            nursery(async |n| {
                for _ in 0..CHILDREN {
                    n.start_soon(async {
                        black_box(A.get());
                    });
                }
            })
            .await
            .unwrap();
        }));
        println!(
            "spawn + run a child reading a var, {vars:2} vars inherited: {:6.1} ns",
            per(start, CHILDREN)
        );
    }
}

/// A value whose every copy holds one reference to the test's `Arc`: once they are all
/// dropped, the count is back to 1.
#[derive(Clone)]
struct Held {
    _counted: std::sync::Arc<()>,
}

static HELD: ContextVar<Held> = ContextVar::new("held");

/// What a thread's context keeps (the thread's own values, the cache of the last read, the
/// spare allocation a reset leaves) is dropped when the thread ends, in each way it can be
/// kept: set outside a runtime and read, set and reset inside one, and set by the root
/// task (which runs in a copy, so that stays inside).
#[test]
fn a_threads_context_values_are_dropped_when_the_thread_ends() {
    let shapes: [fn(&std::sync::Arc<()>); 3] = [
        |arc| {
            HELD.set(Held {
                _counted: arc.clone(),
            });
            assert!(HELD.get().is_some()); // cached
        },
        |arc| {
            trellis::run(trellis::nursery(async |n| {
                let arc = arc.clone();
                n.spawn(async move {
                    let token = HELD.set(Held { _counted: arc });
                    assert!(HELD.get().is_some());
                    HELD.reset(token).unwrap(); // leaves a spare
                });
            }))
            .unwrap();
            HELD.set(Held {
                _counted: arc.clone(),
            });
        },
        |arc| {
            trellis::run(async {
                HELD.set(Held {
                    _counted: arc.clone(),
                });
            });
            assert!(HELD.get().is_none(), "the root's sets stay in its copy");
            HELD.set(Held {
                _counted: arc.clone(),
            });
        },
    ];
    for shape in shapes {
        let arc = std::sync::Arc::new(());
        let inside = arc.clone();
        std::thread::spawn(move || shape(&inside)).join().unwrap();
        assert_eq!(
            std::sync::Arc::strong_count(&arc),
            1,
            "a copy outlived its thread"
        );
    }
}
