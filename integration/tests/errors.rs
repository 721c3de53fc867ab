//! Errors that fit the ecosystem: every error type of a nursery is a `std::error::Error`
//! (for any task error that is `Debug + Display`), so `?` takes it into `anyhow::Result`
//! and boxed errors; each message says what happened and to which task; `source()` is
//! `None` because the message already includes the task's error, whose own chain stays
//! reachable through `into_first` / `first`.

mod common;

use std::error::Error;
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use common::run_virtual;
use trellis::{ErrorGroup, JoinError, StartError, TaskName, nursery, sleep, sleep_forever};

type BoxError = Box<dyn Error + Send + Sync>;

/// An error with a cause, to see where `source()` chains lead.
#[derive(Debug)]
struct Upload {
    cause: std::io::Error,
}

impl fmt::Display for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upload failed")
    }
}

impl Error for Upload {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

fn upload_error() -> Upload {
    Upload {
        cause: std::io::Error::other("connection reset"),
    }
}

/// The group a nursery returns when its only child fails with `error`.
fn group_of<E: 'static>(error: E) -> ErrorGroup<E> {
    trellis::run(nursery(async |n| {
        n.spawn(async { Err::<(), _>(error) });
        Ok(())
    }))
    .unwrap_err()
}

// ----- `?` into the ecosystem's error types -----

#[test]
fn question_mark_takes_a_group_of_anyhow_errors_into_anyhow_with_its_message() {
    // Compiles only because `ErrorGroup<anyhow::Error>` is an `Error` (anyhow's own error
    // type is not one, so an impl for `E: Error` alone would reject this).
    async fn fetch() -> anyhow::Result<()> {
        nursery(async |n| {
            n.spawn(async { Err::<(), _>(anyhow::anyhow!("disk full")) });
            anyhow::Ok(())
        })
        .await?;
        Ok(())
    }
    let err = trellis::run(fetch()).unwrap_err();
    assert_eq!(err.to_string(), "child 1 failed: disk full");
    let group = err.downcast_ref::<ErrorGroup<anyhow::Error>>().unwrap();
    assert_eq!(group.first().to_string(), "disk full");
}

#[test]
fn question_mark_takes_a_group_of_std_errors_into_anyhow() {
    async fn upload() -> anyhow::Result<()> {
        nursery(async |n| {
            n.spawn(async { Err::<(), _>(upload_error()) });
            Ok(())
        })
        .await?;
        Ok(())
    }
    let err = trellis::run(upload()).unwrap_err();
    assert_eq!(err.to_string(), "child 1 failed: upload failed");
    assert!(err.downcast_ref::<ErrorGroup<Upload>>().is_some());
}

#[test]
fn question_mark_takes_a_group_of_boxed_errors_into_a_boxed_error_and_into_anyhow() {
    async fn boxed() -> Result<(), BoxError> {
        nursery(async |n| {
            n.spawn(async { Err::<(), BoxError>("no route to host".into()) });
            Ok(())
        })
        .await?;
        Ok(())
    }
    async fn via_anyhow() -> anyhow::Result<()> {
        boxed_group().await?;
        Ok(())
    }
    async fn boxed_group() -> Result<(), ErrorGroup<BoxError>> {
        nursery(async |n| {
            n.spawn(async { Err::<(), BoxError>("no route to host".into()) });
            Ok(())
        })
        .await
        .map(drop)
    }
    let err = trellis::run(boxed()).unwrap_err();
    assert_eq!(err.to_string(), "child 1 failed: no route to host");
    assert!(err.downcast_ref::<ErrorGroup<BoxError>>().is_some());
    let err = trellis::run(via_anyhow()).unwrap_err();
    assert_eq!(err.to_string(), "child 1 failed: no route to host");
}

#[test]
fn a_group_of_strings_is_an_error_too() {
    fn check() -> anyhow::Result<()> {
        Err(group_of(String::from("bad input")))?;
        Ok(())
    }
    assert_eq!(
        check().unwrap_err().to_string(),
        "child 1 failed: bad input"
    );
}

#[test]
fn map_err_into_first_keeps_the_own_error_type_and_its_whole_chain() {
    async fn load() -> anyhow::Result<()> {
        nursery(async |n| {
            n.spawn(async {
                Err::<(), _>(std::io::Error::other("file missing")).context("reading config")
            });
            Ok(())
        })
        .await
        .map_err(ErrorGroup::into_first)?;
        Ok(())
    }
    let err = trellis::run(load()).unwrap_err();
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    assert_eq!(chain, ["reading config", "file missing"]);
}

// ----- source(): none, since every message already includes the task's error -----

#[test]
fn a_group_has_no_source_and_its_first_error_keeps_its_own_chain() {
    let group = group_of(upload_error());
    assert!(
        group.source().is_none(),
        "the message already says `upload failed`; a source would repeat it"
    );
    assert_eq!(
        group.first().source().unwrap().to_string(),
        "connection reset"
    );
    let failure = &group.failures()[0];
    assert!(failure.source().is_none());
    // Reports that walk the chain print each error once.
    let report = format!("{:?}", anyhow::Error::from(group));
    assert_eq!(report.matches("upload failed").count(), 1, "{report}");
}

#[test]
fn a_start_error_has_no_source_and_gives_its_error_back() {
    run_virtual(async {
        nursery(async |n| {
            let started: Result<(), _> = n
                .start(async |_n, _ready| Err::<(), _>(upload_error()))
                .await;
            let err = started.unwrap_err();
            assert!(err.source().is_none());
            assert_eq!(
                err.to_string(),
                "child 1 failed before it was ready: upload failed"
            );
            let cause = err.into_error().unwrap().cause;
            assert_eq!(cause.to_string(), "connection reset");
            Ok::<_, Upload>(())
        })
        .await
        .unwrap();
    });
}

// ----- Display: lowercase, no trailing period, what happened and to which task -----

#[test]
fn task_names_read_as_the_task() {
    assert_eq!(TaskName::Body.to_string(), "the nursery body");
    assert_eq!(TaskName::Child(3).to_string(), "child 3");
}

#[test]
fn a_group_of_one_shows_its_failure_and_a_larger_group_counts_them() {
    let one = group_of("disk full");
    assert_eq!(one.to_string(), "child 1 failed: disk full");
    assert_eq!(one.failures()[0].to_string(), "child 1 failed: disk full");

    let two = trellis::run(nursery(async |n| {
        n.spawn(async { Err::<(), _>("disk full") });
        trellis::yield_now().await; // the child fails first
        Err::<(), _>("no config")
    }))
    .unwrap_err();
    assert_eq!(
        two.to_string(),
        "2 tasks failed: child 1 failed: disk full; the nursery body failed: no config"
    );
}

#[test]
fn the_alternate_form_of_a_group_shows_each_errors_alternate_form() {
    let group = group_of(anyhow::anyhow!("file missing").context("reading config"));
    assert_eq!(group.to_string(), "child 1 failed: reading config");
    assert_eq!(
        format!("{group:#}"),
        "child 1 failed: reading config: file missing"
    );
}

#[test]
fn join_errors_say_what_happened_to_which_child() {
    let seen = std::cell::RefCell::new(Vec::new());
    run_virtual(async {
        let _ = nursery(async |n| {
            let mut done = n.spawn(async {});
            let failing = n.spawn(async {
                sleep(Duration::from_secs(1)).await;
                Err::<(), _>("boom")
            });
            let sleeper = n.spawn(sleep_forever());
            (&mut done).await.unwrap();
            let taken: JoinError = (&mut done).await.unwrap_err();
            trellis::shield(async {
                let failed = failing.await.unwrap_err();
                let cancelled = sleeper.await.unwrap_err();
                for e in [taken, failed, cancelled] {
                    seen.borrow_mut().push(e.to_string());
                }
            })
            .await;
            Ok(())
        })
        .await;
    });
    assert_eq!(
        *seen.borrow(),
        [
            "the value of child 1 was already taken by an earlier await of its handle",
            "child 2 failed; its nursery reports the error (or resumes the panic)",
            "child 3 was cancelled before it finished",
        ]
    );
}

#[test]
fn start_errors_say_what_happened_to_which_child() {
    let seen = std::cell::RefCell::new(Vec::new());
    run_virtual(async {
        trellis::cancel_scope(async |scope| {
            nursery(async |n| {
                n.spawn(async {});
                let failed: Result<(), StartError<&str>> = n
                    .start(async |_n, _ready| Err::<(), _>("port in use"))
                    .await;
                let not_ready: Result<(), _> = n.start(async |_n, _ready| Ok(())).await;
                let scope = scope.clone();
                n.spawn(async move {
                    sleep(Duration::from_secs(1)).await;
                    scope.cancel();
                });
                let cancelled: Result<(), _> = trellis::shield(n.start(async |_n, _ready| {
                    sleep_forever().await;
                    Ok(())
                }))
                .await;
                for e in [failed, not_ready, cancelled] {
                    seen.borrow_mut().push(e.unwrap_err().to_string());
                }
                Ok(())
            })
            .await
        })
        .await;
    });
    let seen = seen.borrow();
    assert_eq!(seen[0], "child 2 failed before it was ready: port in use");
    assert!(
        seen[1].starts_with("child 3 finished without calling "),
        "{}",
        seen[1]
    );
    assert_eq!(seen[2], "child 5 was cancelled before it was ready");
}

/// `?` from a nursery of I/O work into `io::Result`: the first error's kind (the one that
/// cancelled the rest), the group's message, and the whole group kept inside.
#[test]
fn an_io_error_group_converts_to_an_io_error_of_the_first_kind_keeping_the_group() {
    use std::io;
    async fn serve() -> io::Result<()> {
        nursery(async |n| {
            n.spawn(async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) });
            n.spawn(async { Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe)) });
            n.spawn(sleep_forever());
            Ok(())
        })
        .await?;
        Ok(())
    }
    let err = run_virtual(serve()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        err.to_string(),
        "2 tasks failed: child 1 failed: connection reset; child 2 failed: broken pipe"
    );
    let group = err
        .into_inner()
        .expect("the group is inside")
        .downcast::<ErrorGroup<io::Error>>()
        .expect("an ErrorGroup<io::Error>");
    let kinds: Vec<_> = group.errors().map(io::Error::kind).collect();
    assert_eq!(
        kinds,
        [io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe]
    );
}

/// `?` on a `start` of I/O work: a failure keeps its kind, a child that ends without calling
/// `started` or is cancelled is `Other`; the `StartError` is inside, and says which.
#[test]
fn an_io_start_error_converts_to_an_io_error_with_the_childs_kind_or_other() {
    use std::io;
    let errors = run_virtual(async {
        nursery(async |n| {
            let failed = n
                .start(async |_n, _ready: trellis::TaskStatus<u16>| {
                    Err::<(), _>(io::Error::from(io::ErrorKind::AddrInUse))
                })
                .await
                .map_err(io::Error::from)
                .unwrap_err();
            let not_ready = n
                .start(async |_n, _ready: trellis::TaskStatus<u16>| Ok::<(), io::Error>(()))
                .await
                .map_err(io::Error::from)
                .unwrap_err();
            Ok::<_, io::Error>((failed, not_ready))
        })
        .await
        .unwrap()
    });
    let (failed, not_ready) = errors;
    assert_eq!(failed.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        failed.to_string(),
        "child 1 failed before it was ready: address in use"
    );
    assert_eq!(not_ready.kind(), io::ErrorKind::Other);
    let inner = not_ready
        .get_ref()
        .and_then(|e| e.downcast_ref::<StartError<io::Error>>())
        .expect("the StartError is inside");
    assert!(inner.is_not_ready());
}
