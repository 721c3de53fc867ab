//! The errors a nursery reports: [`ErrorGroup`] and its [`Failure`]s, [`JoinError`],
//! [`StartError`], and the [`TaskName`] each of them points at.

#![forbid(unsafe_code)]

use std::error::Error;
use std::fmt;

/// Which task of a nursery something happened to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskName {
    /// The nursery body (the closure given to [`nursery`](crate::nursery())).
    Body,
    /// A child, numbered from 1 in spawn order within its nursery.
    Child(u64),
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskName::Body => f.write_str("the nursery body"),
            TaskName::Child(n) => write!(f, "child {n}"),
        }
    }
}

/// One error of an [`ErrorGroup`], with the task that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<E> {
    task: TaskName,
    error: E,
}

impl<E> Failure<E> {
    pub(crate) fn new(task: TaskName, error: E) -> Failure<E> {
        Failure { task, error }
    }

    /// The task that failed.
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The error it returned.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The error it returned, by value.
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.task, self.error)
    }
}

/// Every error that occurred in a nursery, in the order they occurred, each once.
///
/// The first failure cancelled the rest of the nursery; later entries are tasks that failed
/// before the cancellation reached them.
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
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Always false: a group holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures, in the order they occurred.
    pub fn failures(&self) -> &[Failure<E>] {
        &self.failures
    }

    /// The errors, in the order they occurred.
    pub fn errors(&self) -> impl Iterator<Item = &E> {
        self.failures.iter().map(Failure::error)
    }

    /// The first error: the one that cancelled the nursery.
    pub fn first(&self) -> &E {
        self.failures[0].error()
    }

    /// The first error, by value (the others are dropped).
    pub fn into_first(self) -> E {
        self.failures
            .into_iter()
            .next()
            .expect("an ErrorGroup holds at least one failure")
            .into_error()
    }

    /// The errors, by value, in order.
    pub fn into_errors(self) -> Vec<E> {
        self.failures.into_iter().map(Failure::into_error).collect()
    }

    /// The failures, by value, in order.
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
            return write!(f, "{only}");
        }
        write!(f, "{} tasks failed: ", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

impl<E: Error + 'static> Error for ErrorGroup<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.first())
    }
}

/// Why awaiting a [`JoinHandle`](crate::JoinHandle) gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    task: TaskName,
    kind: JoinErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinErrorKind {
    Failed,
    Cancelled,
    Taken,
}

impl JoinError {
    pub(crate) fn failed(task: TaskName) -> JoinError {
        JoinError {
            task,
            kind: JoinErrorKind::Failed,
        }
    }

    pub(crate) fn cancelled(task: TaskName) -> JoinError {
        JoinError {
            task,
            kind: JoinErrorKind::Cancelled,
        }
    }

    pub(crate) fn taken(task: TaskName) -> JoinError {
        JoinError {
            task,
            kind: JoinErrorKind::Taken,
        }
    }

    /// The child this handle belonged to.
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The child failed (returned an error or panicked); the nursery reports the error.
    pub fn is_failed(&self) -> bool {
        self.kind == JoinErrorKind::Failed
    }

    /// The child was dropped by a cancellation before it finished.
    pub fn is_cancelled(&self) -> bool {
        self.kind == JoinErrorKind::Cancelled
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            JoinErrorKind::Failed => write!(
                f,
                "{} failed; its error is reported by the nursery's ErrorGroup",
                self.task
            ),
            JoinErrorKind::Cancelled => {
                write!(f, "{} was cancelled before it finished", self.task)
            }
            JoinErrorKind::Taken => write!(
                f,
                "the value of {} was already taken by an earlier await of its handle",
                self.task
            ),
        }
    }
}

impl Error for JoinError {}

/// Why [`Nursery::start`](crate::Nursery::start) gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError<E> {
    task: TaskName,
    kind: StartErrorKind<E>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StartErrorKind<E> {
    Failed(E),
    NotReady,
    Cancelled,
}

impl<E> StartError<E> {
    pub(crate) fn failed(task: TaskName, error: E) -> StartError<E> {
        StartError {
            task,
            kind: StartErrorKind::Failed(error),
        }
    }

    pub(crate) fn not_ready(task: TaskName) -> StartError<E> {
        StartError {
            task,
            kind: StartErrorKind::NotReady,
        }
    }

    pub(crate) fn cancelled(task: TaskName) -> StartError<E> {
        StartError {
            task,
            kind: StartErrorKind::Cancelled,
        }
    }

    /// The child that was being started.
    pub fn task(&self) -> TaskName {
        self.task
    }

    /// The error the child returned before it was ready, if that is what happened.
    pub fn error(&self) -> Option<&E> {
        match &self.kind {
            StartErrorKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The error the child returned before it was ready, by value.
    pub fn into_error(self) -> Option<E> {
        match self.kind {
            StartErrorKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The child finished without calling [`TaskStatus::started`](crate::TaskStatus::started).
    pub fn is_not_ready(&self) -> bool {
        matches!(self.kind, StartErrorKind::NotReady)
    }

    /// The child was cancelled (its nursery was cancelled) before it was ready.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, StartErrorKind::Cancelled)
    }
}

impl<E: fmt::Display> fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StartErrorKind::Failed(e) => {
                write!(f, "{} failed before it was ready: {e}", self.task)
            }
            StartErrorKind::NotReady => write!(
                f,
                "{} finished without calling `started`; a child given to `start` must call \
                 `status.started(value)` once it is ready",
                self.task
            ),
            StartErrorKind::Cancelled => {
                write!(f, "{} was cancelled before it was ready", self.task)
            }
        }
    }
}

impl<E: Error + 'static> Error for StartError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error().map(|e| e as &(dyn Error + 'static))
    }
}
