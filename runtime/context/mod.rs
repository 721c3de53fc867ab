//! PEP 567 context variables: [`Context`](values::Context), the current context and its
//! persistent maps (`values.rs`), and [`ContextVar`](values::ContextVar) (`var.rs`, a child
//! module of `values` so that it alone reaches the maps). The lowest layer: it knows
//! nothing of runtimes, and everything above may use it.

#![forbid(unsafe_code)]

pub(crate) mod values;
