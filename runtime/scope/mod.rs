//! Cancel scopes on the engine: the scope tree (nodes for scopes, units for separately
//! woken futures), [`CancelScope`](cancel_scope::CancelScope) and shields, remote cancels,
//! and the timeouts built on them.
//!
//! Units live here, not with the nurseries that create them, because the scope tree keeps
//! its per-unit state in them (shields held inside, a per-child cancel).

#![forbid(unsafe_code)]

pub(crate) mod cancel_scope;
pub(crate) mod dump;
pub(crate) mod remote;
pub(crate) mod timeout;
pub(crate) mod tree;
pub(crate) mod unit;
