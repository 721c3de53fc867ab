//! The errors a nursery reports: [`ErrorGroup`] and its [`Failure`]s, [`JoinError`],
//! [`StartError`], and the [`TaskName`] each of them points at.
//!
//! Every one of them implements [`std::error::Error`] as soon as the task's error type `E`
//! is `Debug + Display` (a std error, `anyhow::Error`, `Box<dyn Error + Send + Sync>`,
//! `String`), so `?` takes them into `anyhow::Result` or `Box<dyn Error>`. Their `Display`
//! names the task and includes the task's error; so, following the guideline that an error
//! shows its cause either in `Display` or through `source()`, never both, their `source()`
//! is `None`. (A `source()` returning the task's error would need `E: Error`, which
//! `anyhow::Error` and `String` are not, and Rust cannot choose between two impls.) The
//! task's own error, and its chain of causes, stays reachable by value.

#![forbid(unsafe_code)]

use std::error::Error;
use std::fmt;

use crate::instrument::label::TaskLabel;
pub use crate::instrument::label::TaskName;

/// One error of an [`ErrorGroup`], with the task that returned it.
///
/// Its `Display` is `"<task> failed: <error>"`; `{:#}` shows the error with `{:#}` too
/// (the whole chain of an `anyhow::Error`). It implements [`Error`] when `E` is
/// `Debug + Display`, with no `source()`: the message already includes the error.
///
/// # Examples
///
/// ```
/// use trellis::TaskName;
///
/// let group = trellis::run(async {
///     trellis::nursery(async |n| {
///         n.spawn(async { Err::<(), _>("disk full") });
///         Ok(())
///     })
///     .await
///     .unwrap_err()
/// });
/// let failure = &group.failures()[0];
/// assert_eq!(failure.task(), TaskName::Child(1));
/// assert_eq!(failure.error(), &"disk full");
/// assert_eq!(failure.to_string(), "child 1 failed: disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<E> {
    task: TaskName,
    label: TaskLabel,
    error: E,
}

impl<E> Failure<E> {
    pub(crate) fn new(task: TaskName, label: TaskLabel, error: E) -> Failure<E> {
        Failure { task, label, error }
    }

    /// The task's name (if it was given one) and where it was spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn_named("fetch user", async { Err::<(), _>("404") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let failure = &group.failures()[0];
    /// assert_eq!(failure.label().name(), Some("fetch user"));
    /// assert_eq!(failure.to_string(), "child 1 \"fetch user\" failed: 404");
    /// ```
    pub fn label(&self) -> &TaskLabel {
        &self.label
    }

    /// The task that failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::TaskName;
    ///
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async {}); // child 1 succeeds
    ///     n.spawn(async { Err::<(), _>("boom") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// assert_eq!(group.failures()[0].task(), TaskName::Child(2));
    /// ```
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The error it returned.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>(404) });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// assert_eq!(group.failures()[0].error(), &404);
    /// ```
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The error it returned, by value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    ///
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "no config")) });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let failure = group.into_failures().remove(0);
    /// let err: io::Error = failure.into_error(); // not `Clone`: taken by value
    /// assert_eq!(err.kind(), io::ErrorKind::NotFound);
    /// ```
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` reaches the error: an `anyhow::Error` then shows its whole chain.
        let task = self.task.described(self.label.name());
        if f.alternate() {
            write!(f, "{task} failed: {:#}", self.error)
        } else {
            write!(f, "{task} failed: {}", self.error)
        }
    }
}

/// No `source()`: the message already includes the error (see the module docs).
impl<E: fmt::Debug + fmt::Display> Error for Failure<E> {}

/// Every error that occurred in a nursery, in the order they occurred, each once.
///
/// The first failure cancelled the rest of the nursery; later entries are tasks that failed
/// before the cancellation reached them.
///
/// # As a `std::error::Error`
///
/// `ErrorGroup<E>` implements [`Error`] whenever `E: Debug + Display`: a std error,
/// `anyhow::Error`, `Box<dyn Error + Send + Sync>`, `String`, `&str`. So
/// `nursery(..).await?` works in a function returning `anyhow::Result` (or
/// `Result<_, Box<dyn Error>>`), and the message names every task that failed and how:
/// `"child 1 failed: disk full"`, or `"2 tasks failed: child 1 failed: ..; child 2 failed:
/// .."`. `{:#}` shows each error with `{:#}` (an `anyhow::Error` with its chain).
///
/// `source()` is `None`, because the message already includes every error: an error shows
/// its cause in `Display` or returns it from `source()`, not both, or reports print it
/// twice. Returning the first error as the source is not possible for every `E` anyway:
/// that needs `E: Error`, which `anyhow::Error` and `String` are not, and stable Rust
/// cannot have both impls. To keep the first error's own chain of causes, take it out:
/// [`into_first`](ErrorGroup::into_first) (`nursery(..).await.map_err(ErrorGroup::into_first)?`
/// keeps your error type), or read [`first`](ErrorGroup::first)`().source()`.
///
/// ```
/// use std::error::Error;
/// use std::fmt;
///
/// #[derive(Debug)]
/// struct Upload {
///     cause: std::io::Error,
/// }
/// impl fmt::Display for Upload {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str("upload failed")
///     }
/// }
/// impl Error for Upload {
///     fn source(&self) -> Option<&(dyn Error + 'static)> {
///         Some(&self.cause)
///     }
/// }
///
/// fn upload_all() -> Result<(), Box<dyn Error>> {
///     trellis::run(trellis::nursery(async |n| {
///         n.spawn(async {
///             let cause = std::io::Error::other("connection reset");
///             Err::<(), _>(Upload { cause })
///         });
///         Ok(())
///     }))?; // `ErrorGroup<Upload>` into `Box<dyn Error>`
///     Ok(())
/// }
///
/// let err = upload_all().unwrap_err();
/// assert_eq!(err.to_string(), "child 1 failed: upload failed");
/// assert!(err.source().is_none()); // the message has every error
///
/// let group = err.downcast::<trellis::ErrorGroup<Upload>>().unwrap();
/// let first = group.into_first(); // the child's own error, with its chain
/// assert_eq!(first.source().unwrap().to_string(), "connection reset");
/// ```
///
/// # Examples
///
/// ```
/// let group = trellis::run(async {
///     trellis::nursery(async |n| {
///         n.spawn(async { Err::<(), _>("disk full") });
///         n.spawn(async { Err::<(), _>("network down") });
///         Ok(())
///     })
///     .await
///     .unwrap_err()
/// });
/// assert_eq!(group.len(), 2);
/// assert_eq!(group.first(), &"disk full");
/// assert_eq!(group.to_string(), "2 tasks failed: child 1 failed: disk full; child 2 failed: network down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroup<E> {
    failures: Vec<Failure<E>>,
}

impl<E> ErrorGroup<E> {
    /// Invariant: `failures` is not empty.
    pub(crate) fn new(failures: Vec<Failure<E>>) -> ErrorGroup<E> {
        debug_assert!(!failures.is_empty());
        ErrorGroup { failures }
    }

    /// How many tasks failed (at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>("disk full") });
    ///     n.spawn(async { Err::<(), _>("network down") });
    ///     n.spawn(trellis::sleep_forever()); // cancelled by the first failure: no error
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// assert_eq!(group.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Always false: a group holds at least one error.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>("disk full") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// assert!(!group.is_empty());
    /// assert_eq!(group.len(), 1);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures, in the order they occurred.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Failure, TaskName};
    ///
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>("disk full") });
    ///     n.spawn(async {}); // succeeds: not in the group
    ///     n.spawn(async { Err::<(), _>("network down") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let tasks: Vec<TaskName> = group.failures().iter().map(Failure::task).collect();
    /// assert_eq!(tasks, [TaskName::Child(1), TaskName::Child(3)]);
    /// ```
    pub fn failures(&self) -> &[Failure<E>] {
        &self.failures
    }

    /// The errors, in the order they occurred.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>("disk full") });
    ///     n.spawn(async { Err::<(), _>("network down") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let errors: Vec<&str> = group.errors().copied().collect();
    /// assert_eq!(errors, ["disk full", "network down"]);
    /// ```
    pub fn errors(&self) -> impl Iterator<Item = &E> {
        self.failures.iter().map(Failure::error)
    }

    /// The first error: the one that cancelled the nursery.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let group = trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
    ///     n.spawn(async {
    ///         trellis::sleep(Duration::from_secs(1)).await; // cancelled before it fails
    ///         Err::<(), _>("slow")
    ///     });
    ///     n.spawn(async { Err::<(), _>("fast") });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// // First in time, not in spawn order; it cancelled the slow child.
    /// assert_eq!(group.first(), &"fast");
    /// assert_eq!(group.len(), 1);
    /// ```
    pub fn first(&self) -> &E {
        self.failures[0].error()
    }

    /// The first error, by value (the others are dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    ///
    /// // Keep the children's own error type instead of an `ErrorGroup`.
    /// fn load() -> io::Result<()> {
    ///     trellis::run(trellis::nursery(async |n| {
    ///         n.spawn(async { Err::<(), _>(io::Error::other("connection reset")) });
    ///         Ok(())
    ///     }))
    ///     .map_err(trellis::ErrorGroup::into_first)?;
    ///     Ok(())
    /// }
    ///
    /// assert_eq!(load().unwrap_err().to_string(), "connection reset");
    /// ```
    pub fn into_first(self) -> E {
        self.failures
            .into_iter()
            .next()
            .expect("an ErrorGroup holds at least one failure")
            .into_error()
    }

    /// The errors, by value, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>(String::from("disk full")) });
    ///     n.spawn(async { Err::<(), _>(String::from("network down")) });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let errors: Vec<String> = group.into_errors();
    /// assert_eq!(errors, ["disk full", "network down"]);
    /// ```
    pub fn into_errors(self) -> Vec<E> {
        self.failures.into_iter().map(Failure::into_error).collect()
    }

    /// The failures, by value, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::TaskName;
    ///
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     n.spawn(async { Err::<(), _>(String::from("disk full")) });
    ///     n.spawn(async { Err::<(), _>(String::from("network down")) });
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// let report: Vec<(TaskName, String)> = group
    ///     .into_failures()
    ///     .into_iter()
    ///     .map(|f| (f.task(), f.into_error()))
    ///     .collect();
    /// assert_eq!(report[1], (TaskName::Child(2), String::from("network down")));
    /// ```
    pub fn into_failures(self) -> Vec<Failure<E>> {
        self.failures
    }
}

impl<E> IntoIterator for ErrorGroup<E> {
    type Item = Failure<E>;
    type IntoIter = std::vec::IntoIter<Failure<E>>;
    fn into_iter(self) -> Self::IntoIter {
        self.failures.into_iter()
    }
}

impl<E: fmt::Display> fmt::Display for ErrorGroup<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.failures.as_slice() {
            return fmt::Display::fmt(only, f);
        }
        write!(f, "{} tasks failed: ", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            // Passes `{:#}` on to each failure.
            fmt::Display::fmt(failure, f)?;
        }
        Ok(())
    }
}

/// No `source()`: the message already includes every error (see the type's docs).
impl<E: fmt::Debug + fmt::Display> Error for ErrorGroup<E> {}

/// `?` from a nursery of I/O work in a function returning `io::Result`: the group becomes
/// one `io::Error` of the first error's kind (the failure that cancelled the rest), whose
/// message is the group's, and which carries the whole group: nothing is lost, `get_ref()`
/// or `into_inner()` downcasts back to it.
///
/// # Examples
///
/// ```
/// use std::io;
///
/// async fn serve() -> io::Result<()> {
///     trellis::nursery(async |n| {
///         n.spawn(async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) });
///         Ok(())
///     })
///     .await?; // ErrorGroup<io::Error> -> io::Error
///     Ok(())
/// }
///
/// let err = trellis::run(serve()).unwrap_err();
/// assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
/// assert_eq!(err.to_string(), "child 1 failed: connection reset");
/// let group = err.get_ref().unwrap().downcast_ref::<trellis::ErrorGroup<io::Error>>();
/// assert_eq!(group.map(|g| g.len()), Some(1));
/// ```
impl From<ErrorGroup<std::io::Error>> for std::io::Error {
    fn from(group: ErrorGroup<std::io::Error>) -> std::io::Error {
        std::io::Error::new(group.first().kind(), group)
    }
}

/// Why awaiting a [`JoinHandle`](crate::JoinHandle) gave no value: the child failed, was
/// cancelled, or its value was already taken.
///
/// Only code kept running by a [shield](crate::shield) sees one for a failed or cancelled
/// child (other code awaiting the handle is cancelled with the nursery). A failed child's
/// error is not in the `JoinError`: the nursery reports it, once, in its [`ErrorGroup`].
///
/// # Examples
///
/// ```
/// let err = trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         let sleeper = n.spawn(trellis::sleep_forever());
///         sleeper.cancel(); // this child alone
///         Ok::<_, ()>(sleeper.await.unwrap_err())
///     })
///     .await
///     .unwrap()
/// });
/// assert!(err.is_cancelled());
/// assert_eq!(err.task(), trellis::TaskName::Child(1));
/// assert_eq!(err.to_string(), "child 1 was cancelled before it finished");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    task: TaskName,
    /// The child's name, if it was given one (`None` for a value already taken).
    name: Option<Box<str>>,
    kind: JoinErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinErrorKind {
    Failed,
    Cancelled,
    Taken,
}

impl JoinError {
    pub(crate) fn failed(task: TaskName, name: Option<Box<str>>) -> JoinError {
        JoinError {
            task,
            name,
            kind: JoinErrorKind::Failed,
        }
    }

    pub(crate) fn cancelled(task: TaskName, name: Option<Box<str>>) -> JoinError {
        JoinError {
            task,
            name,
            kind: JoinErrorKind::Cancelled,
        }
    }

    pub(crate) fn taken(task: TaskName) -> JoinError {
        JoinError {
            task,
            name: None,
            kind: JoinErrorKind::Taken,
        }
    }

    /// The child this handle belonged to.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         let _first = n.spawn(async {});
    ///         let second = n.spawn(trellis::sleep_forever());
    ///         second.cancel();
    ///         Ok::<_, ()>(second.await.unwrap_err())
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert_eq!(err.task(), trellis::TaskName::Child(2));
    /// ```
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The name the child was given with [`Nursery::spawn_named`](crate::Nursery::spawn_named),
    /// if any; the message names it too. (`None` as well for a value already taken: that
    /// child succeeded, and its name was not kept.)
    ///
    /// # Examples
    ///
    /// ```
    /// let err = trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         let fetch = n.spawn_named("fetch user", trellis::sleep_forever());
    ///         fetch.cancel();
    ///         Ok::<_, ()>(fetch.await.unwrap_err())
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert_eq!(err.name(), Some("fetch user"));
    /// assert_eq!(err.to_string(), "child 1 \"fetch user\" was cancelled before it finished");
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The child failed (returned an error or panicked); the nursery reports the error.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
    ///     let child = n.spawn(async { Err::<u32, _>("boom") });
    ///     // The failure cancels the nursery; only shielded code gets to see the handle's result.
    ///     let err = trellis::shield(child).await.unwrap_err();
    ///     assert!(err.is_failed());
    ///     assert!(!err.is_cancelled());
    ///     Ok(())
    /// }));
    /// // The error itself is reported once, by the nursery.
    /// assert_eq!(group.unwrap_err().first(), &"boom");
    /// ```
    pub fn is_failed(&self) -> bool {
        self.kind == JoinErrorKind::Failed
    }

    /// The child was dropped by a cancellation before it finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = trellis::Builder::new().autojump().run(async {
    ///     trellis::nursery(async |n| {
    ///         let child = n.spawn(trellis::sleep_forever());
    ///         child.cancel();
    ///         Ok::<_, ()>(child.await.unwrap_err())
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert!(err.is_cancelled());
    /// assert!(!err.is_failed());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.kind == JoinErrorKind::Cancelled
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = self.task.described(self.name.as_deref());
        match self.kind {
            JoinErrorKind::Failed => write!(
                f,
                "{task} failed; its nursery reports the error (or resumes the panic)"
            ),
            JoinErrorKind::Cancelled => {
                write!(f, "{task} was cancelled before it finished")
            }
            JoinErrorKind::Taken => write!(
                f,
                "the value of {task} was already taken by an earlier await of its handle"
            ),
        }
    }
}

impl Error for JoinError {}

/// Why [`Nursery::start`](crate::Nursery::start) gave no value: the child failed, finished
/// or was cancelled before it was ready.
///
/// It implements [`Error`] when `E` is `Debug + Display`. Its message includes the child's
/// error, so its `source()` is `None` (see the module docs);
/// [`into_error`](StartError::into_error) gives the error back.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     trellis::nursery(async |n| {
///         let started: Result<u16, _> = n
///             .start(async |_n, _ready| Err::<(), _>("port in use"))
///             .await;
///         let err = started.unwrap_err();
///         assert_eq!(err.to_string(), "child 1 failed before it was ready: port in use");
///         assert_eq!(err.into_error(), Some("port in use"));
///         Ok::<_, &str>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError<E> {
    task: TaskName,
    /// The name given with [`Nursery::start_named`](crate::Nursery::start_named), if any.
    name: Option<Box<str>>,
    kind: StartErrorKind<E>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StartErrorKind<E> {
    Failed(E),
    NotReady,
    Cancelled,
}

impl<E> StartError<E> {
    pub(crate) fn failed(task: TaskName, name: Option<Box<str>>, error: E) -> StartError<E> {
        StartError {
            task,
            name,
            kind: StartErrorKind::Failed(error),
        }
    }

    pub(crate) fn not_ready(task: TaskName, name: Option<Box<str>>) -> StartError<E> {
        StartError {
            task,
            name,
            kind: StartErrorKind::NotReady,
        }
    }

    pub(crate) fn cancelled(task: TaskName, name: Option<Box<str>>) -> StartError<E> {
        StartError {
            task,
            name,
            kind: StartErrorKind::Cancelled,
        }
    }

    /// The child that was being started.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {}); // child 1
    ///         let started: Result<u16, _> = n
    ///             .start(async |_n, _status| Err::<(), _>("port in use"))
    ///             .await;
    ///         assert_eq!(started.unwrap_err().task(), trellis::TaskName::Child(2));
    ///         Ok::<_, &str>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The name the child was given with [`Nursery::start_named`](crate::Nursery::start_named),
    /// if any; the message names it too.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let started: Result<u16, _> = n
    ///             .start_named("listener", async |_n, _status| Err::<(), _>("port in use"))
    ///             .await;
    ///         let err = started.unwrap_err();
    ///         assert_eq!(err.name(), Some("listener"));
    ///         assert_eq!(
    ///             err.to_string(),
    ///             "child 1 \"listener\" failed before it was ready: port in use"
    ///         );
    ///         Ok::<_, &str>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The error the child returned before it was ready, if that is what happened.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let failed: Result<u16, _> = n
    ///             .start(async |_n, _status| Err::<(), _>("port in use"))
    ///             .await;
    ///         assert_eq!(failed.unwrap_err().error(), Some(&"port in use"));
    ///
    ///         let not_ready: Result<u16, _> = n.start(async |_n, _status| {}).await;
    ///         assert_eq!(not_ready.unwrap_err().error(), None); // no error to report
    ///         Ok::<_, &str>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn error(&self) -> Option<&E> {
        match &self.kind {
            StartErrorKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The error the child returned before it was ready, by value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    ///
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let in_use = io::Error::from(io::ErrorKind::AddrInUse);
    ///         let started: Result<u16, _> =
    ///             n.start(async |_n, _status| Err::<(), _>(in_use)).await;
    ///         let err: Option<io::Error> = started.unwrap_err().into_error();
    ///         assert_eq!(err.unwrap().kind(), io::ErrorKind::AddrInUse);
    ///         Ok::<_, io::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn into_error(self) -> Option<E> {
        match self.kind {
            StartErrorKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The child finished without calling [`TaskStatus::started`](crate::TaskStatus::started).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         // The child returns without calling `status.started(..)`.
    ///         let started: Result<u16, _> = n.start(async |_n, _status| {}).await;
    ///         let err = started.unwrap_err();
    ///         assert!(err.is_not_ready());
    ///         assert!(!err.is_cancelled());
    ///         Ok::<_, &str>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn is_not_ready(&self) -> bool {
        matches!(self.kind, StartErrorKind::NotReady)
    }

    /// The child was cancelled (its nursery was cancelled) before it was ready.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let group = trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
    ///     n.spawn(async {
    ///         trellis::sleep(Duration::from_secs(1)).await;
    ///         Err::<(), _>("crashed")
    ///     });
    ///     // The crash cancels the nursery while the server is still getting ready; the shield
    ///     // lets the body see how the start ended.
    ///     let started = trellis::shield(n.start(async |_n, status| {
    ///         trellis::sleep(Duration::from_secs(5)).await;
    ///         status.started(8080_u16);
    ///     }))
    ///     .await;
    ///     let err = started.unwrap_err();
    ///     assert!(err.is_cancelled());
    ///     assert!(!err.is_not_ready());
    ///     Ok(())
    /// }));
    /// assert_eq!(group.unwrap_err().first(), &"crashed");
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, StartErrorKind::Cancelled)
    }
}

impl<E: fmt::Display> fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = self.task.described(self.name.as_deref());
        match &self.kind {
            // `{:#}` reaches the error, as for a `Failure`.
            StartErrorKind::Failed(e) if f.alternate() => {
                write!(f, "{task} failed before it was ready: {e:#}")
            }
            StartErrorKind::Failed(e) => {
                write!(f, "{task} failed before it was ready: {e}")
            }
            StartErrorKind::NotReady => write!(
                f,
                "{task} finished without calling `started`; a child given to `start` must call \
                 `status.started(value)` once it is ready"
            ),
            StartErrorKind::Cancelled => {
                write!(f, "{task} was cancelled before it was ready")
            }
        }
    }
}

/// No `source()`: the message already includes the child's error (see the module docs).
impl<E: fmt::Debug + fmt::Display> Error for StartError<E> {}

/// `?` on a [`start`](crate::Nursery::start) of I/O work (a server binding its listeners) in
/// a function returning `io::Result`: an `io::Error` of the child's error's kind when it
/// failed, of kind `Other` when it finished without calling `started` or was cancelled,
/// with the start error's message; it carries the `StartError` (`get_ref()` downcasts to
/// it).
///
/// # Examples
///
/// ```
/// use std::io;
///
/// async fn bind() -> io::Result<u16> {
///     let port = trellis::nursery(async |n| {
///         let port: u16 = n
///             .start(async |_n, _ready| Err::<(), _>(io::Error::from(io::ErrorKind::AddrInUse)))
///             .await?; // StartError<io::Error> -> io::Error
///         Ok(port)
///     })
///     .await?; // ErrorGroup<io::Error> -> io::Error
///     Ok(port)
/// }
///
/// let err = trellis::run(bind()).unwrap_err();
/// assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
/// assert_eq!(err.to_string(), "the nursery body failed: child 1 failed before it was ready: address in use");
/// ```
impl From<StartError<std::io::Error>> for std::io::Error {
    fn from(error: StartError<std::io::Error>) -> std::io::Error {
        let kind = match &error.kind {
            StartErrorKind::Failed(e) => e.kind(),
            StartErrorKind::NotReady | StartErrorKind::Cancelled => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}
