//! Task groups on scopes: [`nursery()`](open::nursery) and the future that polls body and
//! children (`open.rs`), the [`Nursery`](handle::Nursery) handle, the children's shared
//! state, join handles, `start`, what tasks may return, and the errors of a group.

#![forbid(unsafe_code)]

mod children;
pub(crate) mod error;
pub(crate) mod handle;
pub(crate) mod join;
pub(crate) mod open;
pub(crate) mod output;
mod pool;
mod slots;
pub(crate) mod start;
