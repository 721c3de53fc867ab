//! Context variables with PEP 567 semantics (issue 4 fills this in).
//!
//! The nursery calls two hooks: [`inherit`] when a child is spawned (the child's context
//! is a copy of the spawner's) and [`enter`] around every poll of a child.

#![forbid(unsafe_code)]

use std::rc::Rc;

/// A snapshot of context variables.
#[derive(Debug, Clone, Default)]
pub struct Context {
    _map: Rc<()>,
}

/// The context a new child starts with: a copy of the current one.
pub(crate) fn inherit() -> Context {
    Context::default()
}

/// Makes `ctx` current until the guard drops.
pub(crate) fn enter(ctx: &Context) -> Entered {
    let _ = ctx;
    Entered
}

/// Restores the previous context when dropped (also on unwind).
#[derive(Debug)]
pub(crate) struct Entered;
