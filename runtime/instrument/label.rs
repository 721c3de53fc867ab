//! What a task is called, in errors, cancel reasons, instruments and dumps: [`TaskName`]
//! (which task of its nursery) and [`TaskLabel`] (its name and spawn site).

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;

/// Which task of a nursery something happened to.
///
/// # Examples
///
/// ```
/// use trellis::TaskName;
///
/// assert_eq!(TaskName::Body.to_string(), "the nursery body");
/// assert_eq!(TaskName::Child(2).to_string(), "child 2");
/// ```
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

impl TaskName {
    /// `child 2`, or `child 2 "fetch user"` when the task was given a name: how errors and
    /// cancel reasons name a task (without the spawn site, so that messages do not change
    /// when code moves).
    pub(crate) fn described(self, name: Option<&str>) -> impl fmt::Display + '_ {
        struct Described<'a>(TaskName, Option<&'a str>);
        impl fmt::Display for Described<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.1 {
                    Some(name) => write!(f, "{} {name:?}", self.0),
                    None => write!(f, "{}", self.0),
                }
            }
        }
        Described(self, name)
    }
}

/// A task's name and where it was spawned.
///
/// Every task has one: the name given to [`Nursery::spawn_named`](crate::Nursery::spawn_named)
/// (or the function's name, for the body of a [`#[nursery]`](macro@crate::nursery) function),
/// otherwise none, and always the source location of the `spawn` call (or of the
/// `nursery` call, for a body). Its `Display` is the name when there is one, else
/// `spawned at <file>:<line>:<column>`.
///
/// # Examples
///
/// ```
/// use trellis::instrument::{Instrument, TaskInfo};
/// use std::sync::{Arc, Mutex};
///
/// struct Names(Arc<Mutex<Vec<String>>>);
/// impl Instrument for Names {
///     fn task_spawned(&self, task: &TaskInfo) {
///         self.0.lock().unwrap().push(task.label().to_string());
///     }
/// }
///
/// let names = Arc::new(Mutex::new(Vec::new()));
/// trellis::Builder::new()
///     .instrument(Names(names.clone()))
///     .run(trellis::nursery(async |n| {
///         n.spawn_named("fetch user", async {});
///     }));
/// let names = names.lock().unwrap();
/// assert!(names[0].starts_with("spawned at ")); // the nursery's body
/// assert_eq!(names[1], "fetch user");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TaskLabel {
    /// `None`: named by its location only. Boxed, so that the label is two words in every
    /// task (a name costs one small allocation, unnamed tasks nothing).
    name: Option<Box<Cow<'static, str>>>,
    location: &'static Location<'static>,
}

impl TaskLabel {
    /// A task named only by where it was spawned.
    pub(crate) fn at(location: &'static Location<'static>) -> TaskLabel {
        TaskLabel {
            name: None,
            location,
        }
    }

    /// A task with a name.
    pub(crate) fn named(
        name: impl Into<Cow<'static, str>>,
        location: &'static Location<'static>,
    ) -> TaskLabel {
        TaskLabel {
            name: Some(Box::new(name.into())),
            location,
        }
    }

    /// The name given to the task, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::instrument::{Instrument, TaskInfo};
    /// use std::sync::{Arc, Mutex};
    ///
    /// struct Named(Arc<Mutex<Vec<Option<String>>>>);
    /// impl Instrument for Named {
    ///     fn task_spawned(&self, task: &TaskInfo) {
    ///         let name = task.label().name().map(str::to_owned);
    ///         self.0.lock().unwrap().push(name);
    ///     }
    /// }
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// trellis::Builder::new()
    ///     .instrument(Named(seen.clone()))
    ///     .run(trellis::nursery(async |n| {
    ///         n.spawn(async {});
    ///         n.spawn_named("worker", async {});
    ///     }));
    /// assert_eq!(*seen.lock().unwrap(), [None, None, Some("worker".to_owned())]);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|name| &**name)
    }

    /// Where the task was spawned (for a nursery's body: where the nursery was opened).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::instrument::{Instrument, TaskInfo};
    /// use std::sync::{Arc, Mutex};
    ///
    /// struct Lines(Arc<Mutex<Vec<u32>>>);
    /// impl Instrument for Lines {
    ///     fn task_spawned(&self, task: &TaskInfo) {
    ///         self.0.lock().unwrap().push(task.label().location().line());
    ///     }
    /// }
    ///
    /// let lines = Arc::new(Mutex::new(Vec::new()));
    /// trellis::Builder::new()
    ///     .instrument(Lines(lines.clone()))
    ///     .run(trellis::nursery(async |n| {
    ///         n.spawn(async {}); let here = line!();
    ///         assert_eq!(here, here);
    ///     }));
    /// let lines = lines.lock().unwrap();
    /// assert_eq!(lines[1], lines[0] + 1); // the spawn is on the line after `nursery(`
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Display for TaskLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "spawned at {}", self.location),
        }
    }
}

impl TaskLabel {
    /// `name` with this label, as reports write a task: `child 1 "waiter"` when it has a
    /// name, `child 2 (spawned at src/main.rs:6:15)` when it has none (the task tree, the
    /// deadlock report).
    pub(crate) fn describing(&self, name: TaskName) -> impl fmt::Display + '_ {
        struct Describing<'a>(TaskName, &'a TaskLabel);
        impl fmt::Display for Describing<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.1.name() {
                    Some(name) => write!(f, "{} {name:?}", self.0),
                    None => write!(f, "{} (spawned at {})", self.0, self.1.location),
                }
            }
        }
        Describing(name, self)
    }
}

impl fmt::Debug for TaskLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLabel")
            .field("name", &self.name())
            .field("location", &format_args!("{}", self.location))
            .finish()
    }
}

/// What a panic payload says, for reports.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(s), _) => format!("{s:?}"),
        (None, Some(s)) => format!("{s:?}"),
        (None, None) => String::from("(a payload that is not a string)"),
    }
}
