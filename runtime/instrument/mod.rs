//! Observing a runtime: task names, [`Instrument`] hooks (Trio's), and the task tree.
//!
//! Every task has a [`TaskLabel`] (a name, if it was given one with
//! [`Nursery::spawn_named`](crate::Nursery::spawn_named), and its spawn site) and a
//! [`TaskId`]. An [`Instrument`] registered with
//! [`Builder::instrument`](crate::Builder::instrument) or [`add`] sees tasks spawned,
//! scheduled, polled and exited, the reactor's waits and scope cancellations.
//! [`dump_tree`](crate::dump_tree) prints the live tree of nurseries, scopes and tasks.
//!
//! This layer sits right above `context/`: the engine and the nursery call its hooks, so
//! it knows nothing of either (the tree's walk is in `scope/`).

#![forbid(unsafe_code)]

pub(crate) mod hooks;
pub(crate) mod label;
pub(crate) mod reason;
#[cfg(feature = "tracing")]
pub(crate) mod tracing;
pub(crate) mod tree;

pub use hooks::{Instrument, InstrumentKey, ScopeInfo, TaskId, TaskInfo, TaskOutcome, add, remove};
pub use label::TaskLabel;
#[cfg(feature = "tracing")]
pub use tracing::Tracing;
pub use tree::TaskTree;
